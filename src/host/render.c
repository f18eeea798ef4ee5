#include "host/render.h"

#include "host/sysfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int render_scan(const char *sysroot, struct render_node **out, size_t *n, char *err,
                size_t errsz)
{
    *out = NULL;
    *n = 0;
    char **names = sysfs_list(sysroot, true, "/dev/dri");
    if (!names) {
        snprintf(err, errsz, "cannot list /dev/dri: %s", strerror(errno));
        return -1;
    }
    size_t m = sysfs_names_count(names);
    struct render_node *v = calloc(m ? m : 1, sizeof(*v));
    if (!v) {
        sysfs_names_free(names);
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < m; i++) {
        const char *name = names[i];
        if (strncmp(name, "renderD", 7) != 0 || strlen(name) >= sizeof(v->name))
            continue;
        struct render_node *r = &v[(*n)++];
        snprintf(r->name, sizeof(r->name), "%s", name);
        snprintf(r->path, sizeof(r->path), "/dev/dri/%s", name);
        char dev[64];
        if (sysfs_link_name(sysroot, dev, sizeof(dev), "/sys/class/drm/%s/device",
                            name) == 0 &&
            pcidev_addr_parse(dev, r->pci, sizeof(r->pci)) < 0)
            r->pci[0] = 0;
        sysfs_link_name(sysroot, r->driver, sizeof(r->driver),
                        "/sys/class/drm/%s/device/driver", name);
    }
    sysfs_names_free(names);
    *out = v;
    return 0;
}

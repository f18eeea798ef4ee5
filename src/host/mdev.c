#include "host/mdev.h"

#include "host/sysfs.h"
#include "util/fs.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mdev_types_free(struct mdev_type *v)
{
    free(v);
}

int mdev_scan(const char *sysroot, struct mdev_type **out, size_t *n, char *err,
              size_t errsz)
{
    *out = NULL;
    *n = 0;
    /* parents: /sys/class/mdev_bus holds one link per device that can make mdevs */
    char **parents = sysfs_list(sysroot, true, "/sys/class/mdev_bus");
    if (!parents) {
        snprintf(err, errsz, "cannot list /sys/class/mdev_bus: %s", strerror(errno));
        return -1;
    }
    size_t cap = 0;
    struct mdev_type *v = NULL;
    for (char **p = parents; *p; p++) {
        char parent[PCIDEV_ADDR_SIZE];
        if (pcidev_addr_parse(*p, parent, sizeof(parent)) < 0)
            continue;
        char **types = sysfs_list(sysroot, true,
                                  "/sys/class/mdev_bus/%s/mdev_supported_types", parent);
        for (char **t = types; t && *t; t++) {
            if (strlen(*t) >= sizeof(v->type))
                continue;
            if (*n == cap) {
                cap = cap ? cap * 2 : 8;
                struct mdev_type *bigger = realloc(v, cap * sizeof(*v));
                if (!bigger) {
                    sysfs_names_free(types);
                    sysfs_names_free(parents);
                    free(v);
                    snprintf(err, errsz, "out of memory");
                    return -1;
                }
                v = bigger;
            }
            struct mdev_type *m = &v[(*n)++];
            memset(m, 0, sizeof(*m));
            const char *dir = "/sys/class/mdev_bus/%s/mdev_supported_types/%s/%s";
            snprintf(m->parent, sizeof(m->parent), "%s", parent);
            snprintf(m->type, sizeof(m->type), "%s", *t);
            sysfs_read(sysroot, m->name, sizeof(m->name), dir, parent, *t, "name");
            sysfs_read(sysroot, m->device_api, sizeof(m->device_api), dir, parent, *t,
                       "device_api");
            long long avail =
                sysfs_read_num(sysroot, 0, 10, dir, parent, *t, "available_instances");
            m->available = avail > 0 ? (unsigned)avail : 0;
            char **made = sysfs_list(sysroot, true, dir, parent, *t, "devices");
            m->instances = (unsigned)sysfs_names_count(made);
            sysfs_names_free(made);
            char path[PATH_MAX];
            char *text = NULL;
            if (sysfs_path(path, sizeof(path), sysroot, dir, parent, *t, "description") ==
                0)
                text = fs_read_file(path, 4096, NULL);
            if (text) {
                /* one line: "low_gm_size: 128MB, high_gm_size: 512MB, ..." */
                size_t len = strlen(text);
                while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
                    text[--len] = 0;
                size_t o = 0;
                for (size_t i = 0; text[i] && o + 3 < sizeof(m->description); i++) {
                    if (text[i] == '\n') {
                        m->description[o++] = ',';
                        m->description[o++] = ' ';
                    } else
                        m->description[o++] = text[i];
                }
                m->description[o] = 0;
                free(text);
            }
        }
        sysfs_names_free(types);
    }
    sysfs_names_free(parents);
    *out = v;
    return 0;
}

bool mdev_type_matches(const struct mdev_type *m, const char *want)
{
    if (!want[0] || !strcmp(m->type, want))
        return true;
    /* "GVTg_V5_4" names "i915-GVTg_V5_4": the type without its driver's prefix */
    const char *dash = strchr(m->type, '-');
    return dash && !strcmp(dash + 1, want);
}

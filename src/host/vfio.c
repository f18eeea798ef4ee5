#include "host/vfio.h"

#include "host/hostw.h"
#include "host/pcidev.h"
#include "host/sysfs.h"
#include "util/log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int vfio_available(const char *sysroot, char *err, size_t errsz)
{
    if (sysfs_exists(sysroot, "/sys/bus/pci/drivers/vfio-pci"))
        return 0;
    snprintf(err, errsz,
             "vfio-pci is not loaded: run 'modprobe vfio-pci' (and 'qdesk host "
             "cmdline --gpu ADDR --apply' to load it at every boot)");
    return -1;
}

void vfio_holders_free(struct vfio_holders *h)
{
    if (!h)
        return;
    free(h->v);
    *h = (struct vfio_holders){0};
}

/* Reads which process holds which vfio node open (each node once). */
static void read_holders(const char *sysroot, struct vfio_holders *h)
{
    h->read = true;
    char **pids = sysfs_list(sysroot, true, "/proc");
    for (char **p = pids; p && *p; p++) {
        if (strspn(*p, "0123456789") != strlen(*p))
            continue;
        char **fds = sysfs_list(sysroot, true, "/proc/%s/fd", *p);
        for (char **f = fds; f && *f; f++) {
            char path[PATH_MAX], target[64];
            if (sysfs_path(path, sizeof(path), sysroot, "/proc/%s/fd/%s", *p, *f) < 0)
                continue;
            ssize_t len = readlink(path, target, sizeof(target) - 1);
            if (len < 0)
                continue;
            target[len] = 0;
            if (strncmp(target, "/dev/vfio/", 10) != 0)
                continue;
            struct vfio_holder *grown = realloc(h->v, (h->n + 1) * sizeof(*grown));
            if (!grown)
                break;
            h->v = grown;
            struct vfio_holder *e = &h->v[h->n++];
            char comm[32];
            sysfs_read(sysroot, comm, sizeof(comm), "/proc/%s/comm", *p);
            snprintf(e->node, sizeof(e->node), "%s", target);
            snprintf(e->who, sizeof(e->who), "process %s (%s)", *p, comm[0] ? comm : "?");
        }
        sysfs_names_free(fds);
    }
    sysfs_names_free(pids);
}

bool vfio_device_user(const char *sysroot, const char *addr, struct vfio_holders *h,
                      char *who, size_t whosz)
{
    char nodes[2][64], name[32];
    size_t n = 0;
    who[0] = 0;
    if (sysfs_link_name(sysroot, name, sizeof(name), "/sys/bus/pci/devices/%s/driver",
                        addr) < 0 ||
        strcmp(name, "vfio-pci"))
        return false; /* only vfio-pci hands devices to processes */
    if (sysfs_link_name(sysroot, name, sizeof(name),
                        "/sys/bus/pci/devices/%s/iommu_group", addr) == 0)
        snprintf(nodes[n++], sizeof(nodes[0]), "/dev/vfio/%s", name);
    char **cdev = sysfs_list(sysroot, true, "/sys/bus/pci/devices/%s/vfio-dev", addr);
    if (cdev && cdev[0])
        snprintf(nodes[n++], sizeof(nodes[0]), "/dev/vfio/devices/%s", cdev[0]);
    sysfs_names_free(cdev);
    if (n && !h->read)
        read_holders(sysroot, h);
    for (size_t i = 0; i < h->n && !who[0]; i++)
        for (size_t k = 0; k < n; k++)
            if (!strcmp(h->v[i].node, nodes[k]))
                snprintf(who, whosz, "%s", h->v[i].who);
    return who[0] != 0;
}

static int dev_path(char *out, size_t outsz, const char *addr, const char *attr)
{
    int n = snprintf(out, outsz, "/sys/bus/pci/devices/%s/%s", addr, attr);
    return n < 0 || (size_t)n >= outsz ? -1 : 0;
}

int vfio_bind(const char *sysroot, const char *addr, char *orig, size_t origsz, char *err,
              size_t errsz)
{
    struct pcidev d;
    char path[PATH_MAX];
    orig[0] = 0;
    int rc = pcidev_read(sysroot, addr, &d);
    if (rc < 0) {
        snprintf(err, errsz, "%s: no such PCI device (%s)", addr, strerror(-rc));
        return -1;
    }
    snprintf(orig, origsz, "%s", d.driver);
    if (!strcmp(d.driver, "vfio-pci"))
        return 0;
    if (vfio_available(sysroot, err, errsz) < 0)
        return -1;
    if (d.driver[0]) {
        snprintf(path, sizeof(path), "/sys/bus/pci/drivers/%s/unbind", d.driver);
        if (hostw_write(sysroot, path, addr, err, errsz) < 0)
            return -1;
    }
    dev_path(path, sizeof(path), addr, "driver_override");
    if (hostw_write(sysroot, path, "vfio-pci", err, errsz) < 0)
        goto undo;
    if (hostw_write(sysroot, "/sys/bus/pci/drivers_probe", addr, err, errsz) < 0)
        goto undo;
    if (d.has_reset) {
        char why[512];
        dev_path(path, sizeof(path), addr, "reset");
        if (hostw_write(sysroot, path, "1", why, sizeof(why)) < 0)
            log_warn("%s: the reset failed (%s); vfio resets it when the guest starts",
                     addr, why);
    }
    char now[64];
    sysfs_link_name(sysroot, now, sizeof(now), "/sys/bus/pci/devices/%s/driver", addr);
    if (strcmp(now, "vfio-pci") != 0) {
        snprintf(err, errsz, "%s (%s) did not bind to vfio-pci (its driver is now %s)",
                 addr, d.name, now[0] ? now : "none");
        goto undo;
    }
    return 0;
undo:;
    char ignored[512];
    vfio_unbind(sysroot, addr, orig, ignored, sizeof(ignored));
    return -1;
}

int vfio_unbind(const char *sysroot, const char *addr, const char *orig, char *err,
                size_t errsz)
{
    struct pcidev d;
    char path[PATH_MAX];
    if (!strcmp(orig, "vfio-pci"))
        return 0;
    int rc = pcidev_read(sysroot, addr, &d);
    if (rc == -ENOENT)
        return 0; /* gone (its VFs were removed): nothing to give back */
    if (rc < 0) {
        snprintf(err, errsz, "%s: %s", addr, strerror(-rc));
        return -1;
    }
    if (!strcmp(d.driver, "vfio-pci")) {
        if (hostw_write(sysroot, "/sys/bus/pci/drivers/vfio-pci/unbind", addr, err,
                        errsz) < 0)
            return -1;
    }
    if (d.override[0]) {
        dev_path(path, sizeof(path), addr, "driver_override");
        if (hostw_write(sysroot, path, "", err, errsz) < 0)
            return -1;
    }
    if (!orig[0])
        return 0;
    char now[64];
    sysfs_link_name(sysroot, now, sizeof(now), "/sys/bus/pci/devices/%s/driver", addr);
    if (now[0])
        return 0; /* already bound again (to orig, or someone else chose) */
    if (hostw_write(sysroot, "/sys/bus/pci/drivers_probe", addr, err, errsz) < 0)
        return -1;
    sysfs_link_name(sysroot, now, sizeof(now), "/sys/bus/pci/devices/%s/driver", addr);
    if (strcmp(now, orig) != 0)
        log_warn("%s: given back, but %s did not take it again (its driver is %s)", addr,
                 orig, now[0] ? now : "none");
    return 0;
}

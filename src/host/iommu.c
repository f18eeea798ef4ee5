#include "host/iommu.h"

#include "host/sysfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void iommu_groups_free(struct iommu_groups *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++)
        free(g->v[i].addrs);
    free(g->v);
    g->v = NULL;
    g->n = 0;
}

static int addr_cmp(const void *a, const void *b)
{
    return strcmp(a, b); /* fixed-width hex */
}

int iommu_scan(const char *sysroot, struct iommu_groups *out, char *err, size_t errsz)
{
    out->v = NULL;
    out->n = 0;
    char **ids = sysfs_list(sysroot, true, "/sys/kernel/iommu_groups");
    if (!ids) {
        snprintf(err, errsz, "cannot list /sys/kernel/iommu_groups: %s", strerror(errno));
        return -1;
    }
    size_t n = sysfs_names_count(ids);
    out->v = calloc(n ? n : 1, sizeof(*out->v));
    if (!out->v)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        char *end;
        long id = strtol(ids[i], &end, 10);
        if (*end || id < 0 || id >= 1 << 30)
            continue;
        struct iommu_group *g = &out->v[out->n];
        g->id = (int)id;
        sysfs_read(sysroot, g->type, sizeof(g->type), "/sys/kernel/iommu_groups/%ld/type",
                   id);
        char **devs =
            sysfs_list(sysroot, true, "/sys/kernel/iommu_groups/%ld/devices", id);
        if (!devs)
            goto nomem;
        size_t m = sysfs_names_count(devs);
        g->addrs = calloc(m ? m : 1, sizeof(*g->addrs));
        if (!g->addrs) {
            sysfs_names_free(devs);
            goto nomem;
        }
        for (size_t j = 0; j < m; j++) {
            char canon[PCIDEV_ADDR_SIZE];
            if (pcidev_addr_parse(devs[j], canon, sizeof(canon)) == 0)
                memcpy(g->addrs[g->n++], canon, sizeof(canon));
        }
        sysfs_names_free(devs);
        qsort(g->addrs, g->n, sizeof(*g->addrs), addr_cmp);
        out->n++;
    }
    sysfs_names_free(ids);
    return 0;
nomem:
    sysfs_names_free(ids);
    iommu_groups_free(out);
    snprintf(err, errsz, "out of memory");
    return -1;
}

const struct iommu_group *iommu_group_find(const struct iommu_groups *g, int id)
{
    for (size_t i = 0; i < g->n; i++)
        if (g->v[i].id == id)
            return &g->v[i];
    return NULL;
}

void iommu_check(const struct iommu_group *g, const struct pcidev_list *devs,
                 char (*claimed)[PCIDEV_ADDR_SIZE], size_t n_claimed,
                 struct iommu_verdict *v)
{
    memset(v, 0, sizeof(*v));
    v->viable = true;
    for (size_t i = 0; i < g->n; i++) {
        const struct pcidev *d = pcidev_find(devs, g->addrs[i]);
        if (!d || pcidev_is_bridge(d) || pcidev_driver_vfio_safe(d->driver))
            continue;
        bool mine = false;
        for (size_t j = 0; j < n_claimed && !mine; j++)
            mine = !strcmp(claimed[j], d->addr);
        if (mine)
            continue;
        v->viable = false;
        if (v->n_blockers < IOMMU_MAX_BLOCKERS)
            memcpy(v->blockers[v->n_blockers++], d->addr, PCIDEV_ADDR_SIZE);
        size_t len = strlen(v->why);
        snprintf(v->why + len, sizeof(v->why) - len, "%s%s (%s) is bound to %s",
                 len ? "; " : "", d->addr, d->name, d->driver);
    }
}

void iommu_group_verdict(const struct iommu_group *g, const struct pcidev_list *devs,
                         struct iommu_verdict *v)
{
    char claimed[32][PCIDEV_ADDR_SIZE];
    size_t n = 0;
    bool gpu = false;
    for (size_t i = 0; i < g->n && n < 32; i++) {
        const struct pcidev *d = pcidev_find(devs, g->addrs[i]);
        if (d && pcidev_is_display(d)) {
            gpu = true;
            n += pcidev_companions(devs, d, claimed + n, 32 - n);
        }
    }
    iommu_check(g, devs, claimed, n, v);
    v->gpu = gpu;
    if (gpu)
        return;
    /* no GPU: the group would go whole, each device with it */
    v->viable = true;
    v->n_blockers = 0;
    v->why[0] = 0;
    for (size_t i = 0; i < g->n; i++) {
        const struct pcidev *d = pcidev_find(devs, g->addrs[i]);
        size_t len = strlen(v->host_drivers);
        if (d && d->driver[0] && !pcidev_is_bridge(d))
            snprintf(v->host_drivers + len, sizeof(v->host_drivers) - len, "%s%s %s",
                     len ? ", " : "", d->addr, d->driver);
    }
}

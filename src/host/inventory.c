#include "host/inventory.h"

#include "host/gpu.h"
#include "host/iommu.h"
#include "host/mdev.h"
#include "host/render.h"
#include "host/usb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct units {
    struct inventory_unit *v;
    size_t n, cap;
};

static struct inventory_unit *add(struct units *u, enum inventory_kind kind)
{
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 16;
        struct inventory_unit *bigger = realloc(u->v, cap * sizeof(*bigger));
        if (!bigger)
            return NULL;
        u->v = bigger;
        u->cap = cap;
    }
    struct inventory_unit *x = &u->v[u->n++];
    memset(x, 0, sizeof(*x));
    x->kind = kind;
    x->capacity = 1;
    x->usable = true;
    return x;
}

static int list_pci(const char *sysroot, enum inventory_kind kind, bool allow_console,
                    struct units *u, char *err, size_t errsz)
{
    struct pcidev_list devs;
    struct iommu_groups groups = {0};
    int rc = -1;
    if (pcidev_scan(sysroot, &devs, err, errsz) < 0)
        return -1;
    if (iommu_scan(sysroot, &groups, err, errsz) < 0)
        goto cleanup;
    for (size_t i = 0; i < devs.n; i++) {
        const struct pcidev *d = &devs.v[i];
        if (!pcidev_is_display(d) || d->physfn[0])
            continue;
        if (kind == INVENTORY_GPU) {
            char fns[GPU_MAX_FUNCTIONS][PCIDEV_ADDR_SIZE];
            size_t n_fn;
            struct inventory_unit *x = add(u, kind);
            if (!x) {
                snprintf(err, errsz, "out of memory");
                goto cleanup;
            }
            snprintf(x->id, sizeof(x->id), "pci:%s", d->addr);
            snprintf(x->label, sizeof(x->label), "%s (%s)", d->name, d->addr);
            x->usable = gpu_passthrough_check(sysroot, &devs, &groups, d, allow_console,
                                              fns, &n_fn, x->why, sizeof(x->why));
            if (x->usable)
                x->why[0] = 0;
            continue;
        }
        for (int k = 0; d->sriov_total > 0 && k < d->sriov_total; k++) {
            char addr[PCIDEV_ADDR_SIZE];
            if (gpu_vf_addr(sysroot, d, (unsigned)k, addr, sizeof(addr)) < 0)
                break;
            const struct pcidev *vf = pcidev_find(&devs, addr);
            struct inventory_unit *x = add(u, kind);
            if (!x) {
                snprintf(err, errsz, "out of memory");
                goto cleanup;
            }
            snprintf(x->id, sizeof(x->id), "vf:%s", addr);
            snprintf(x->parent, sizeof(x->parent), "%s", d->addr);
            snprintf(x->label, sizeof(x->label), "VF %d of %s (%s)%s", k + 1, d->name,
                     addr,
                     vf             ? ""
                     : d->sriov_num ? " (not enabled)"
                                    : " (created on use)");
            if (!vf && d->sriov_num > 0) {
                x->usable = false;
                snprintf(x->why, sizeof(x->why), "%s has only %d VFs enabled", d->addr,
                         d->sriov_num);
            } else if (vf && vf->driver[0] && strcmp(vf->driver, "vfio-pci") &&
                       strcmp(vf->driver, d->driver)) {
                x->usable = false;
                snprintf(x->why, sizeof(x->why), "the host uses it (bound to %s)",
                         vf->driver);
            }
        }
    }
    rc = 0;
cleanup:
    pcidev_list_free(&devs);
    iommu_groups_free(&groups);
    return rc;
}

static int list_mdev(const char *sysroot, struct units *u, char *err, size_t errsz)
{
    struct mdev_type *types;
    size_t n;
    if (mdev_scan(sysroot, &types, &n, err, errsz) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct inventory_unit *x = add(u, INVENTORY_MDEV);
        if (!x) {
            mdev_types_free(types);
            snprintf(err, errsz, "out of memory");
            return -1;
        }
        snprintf(x->id, sizeof(x->id), "mdev:%s/%s", types[i].parent, types[i].type);
        snprintf(x->parent, sizeof(x->parent), "%s", types[i].parent);
        snprintf(x->label, sizeof(x->label), "%s on %s (%s)", types[i].type,
                 types[i].parent, types[i].description);
        x->capacity = types[i].available;
        x->used = types[i].instances;
        x->usable = types[i].available + types[i].instances > 0;
        if (!x->usable)
            snprintf(x->why, sizeof(x->why), "%s has no room for this type",
                     types[i].parent);
    }
    mdev_types_free(types);
    return 0;
}

static int list_render(const char *sysroot, struct units *u, char *err, size_t errsz)
{
    struct render_node *nodes;
    size_t n;
    if (render_scan(sysroot, &nodes, &n, err, errsz) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        struct inventory_unit *x = add(u, INVENTORY_RENDER);
        if (!x) {
            snprintf(err, errsz, "out of memory");
            rc = -1;
            break;
        }
        snprintf(x->id, sizeof(x->id), "render:%s", nodes[i].name);
        snprintf(x->parent, sizeof(x->parent), "%s", nodes[i].pci);
        snprintf(x->label, sizeof(x->label), "%s (%s%s%s)", nodes[i].path,
                 nodes[i].driver[0] ? nodes[i].driver : "no driver",
                 nodes[i].pci[0] ? " on " : "", nodes[i].pci);
        x->capacity = 0;
    }
    free(nodes);
    return rc;
}

static int list_usb(const char *sysroot, struct units *u, char *err, size_t errsz)
{
    struct usb_list l;
    if (usb_scan(sysroot, &l, err, errsz) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < l.n; i++) {
        const struct usbdev *d = &l.v[i];
        struct inventory_unit *x = add(u, INVENTORY_USB);
        if (!x) {
            snprintf(err, errsz, "out of memory");
            rc = -1;
            break;
        }
        snprintf(x->id, sizeof(x->id), "usb:%s", d->port);
        snprintf(x->label, sizeof(x->label), "%s (%04x:%04x on %s)", d->name, d->vendor,
                 d->product, d->port);
        x->usable = usb_assignable(d, x->why, sizeof(x->why));
    }
    usb_list_free(&l);
    return rc;
}

int inventory_list(const char *sysroot, enum inventory_kind kind, bool allow_console,
                   struct inventory_unit **out, size_t *n, char *err, size_t errsz)
{
    struct units u = {0};
    int rc;
    switch (kind) {
    case INVENTORY_GPU:
    case INVENTORY_VF:
        rc = list_pci(sysroot, kind, allow_console, &u, err, errsz);
        break;
    case INVENTORY_MDEV:
        rc = list_mdev(sysroot, &u, err, errsz);
        break;
    case INVENTORY_RENDER:
        rc = list_render(sysroot, &u, err, errsz);
        break;
    case INVENTORY_USB:
        rc = list_usb(sysroot, &u, err, errsz);
        break;
    default:
        snprintf(err, errsz, "inventory: unknown kind %d", (int)kind);
        rc = -1;
    }
    if (rc < 0) {
        free(u.v);
        *out = NULL;
        *n = 0;
        return -1;
    }
    *out = u.v;
    *n = u.n;
    return 0;
}

/* vf: an SR-IOV virtual function of a GPU (Intel Xe/Arc iGPUs with SR-IOV, AMD MxGPU,
 * NVIDIA vGPU on SR-IOV cards) given to one guest through vfio-pci. The physical
 * function stays with the host. */
#include "host/gpu.h"
#include "host/hostw.h"
#include "host/sysfs.h"
#include "host/vfio.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

int gpu_vf_addr(const char *sysroot, const struct pcidev *pf, unsigned index, char *out,
                size_t outsz)
{
    char link[64];
    if (pf->sriov_total <= 0 || index >= (unsigned)pf->sriov_total)
        return -1;
    if (sysfs_link_name(sysroot, link, sizeof(link), "/sys/bus/pci/devices/%s/virtfn%u",
                        pf->addr, index) == 0)
        return pcidev_addr_parse(link, out, outsz);
    /* not created yet: the routing ID is the PF's plus offset + index * stride */
    long long offset =
        sysfs_read_num(sysroot, -1, 10, "/sys/bus/pci/devices/%s/sriov_offset", pf->addr);
    long long stride =
        sysfs_read_num(sysroot, -1, 10, "/sys/bus/pci/devices/%s/sriov_stride", pf->addr);
    unsigned dom, bus, slot, fn;
    if (offset < 0 || stride < 0 ||
        sscanf(pf->addr, "%x:%x:%x.%x", &dom, &bus, &slot, &fn) != 4)
        return -1;
    unsigned long rid = (bus << 8 | slot << 3 | fn) + (unsigned long)offset +
                        (unsigned long)index * (unsigned long)stride;
    if (rid > 0xffff)
        return -1;
    snprintf(out, outsz, "%04x:%02lx:%02lx.%lx", dom, rid >> 8, (rid >> 3) & 0x1f,
             rid & 7);
    return 0;
}

int gpu_vf_enable(const char *sysroot, const char *pf, unsigned n, char *err,
                  size_t errsz)
{
    struct pcidev d;
    char path[PATH_MAX], value[16];
    if (pcidev_read(sysroot, pf, &d) < 0) {
        snprintf(err, errsz, "vf: there is no PCI device %s", pf);
        return -1;
    }
    if (d.sriov_total <= 0) {
        snprintf(
            err, errsz, "vf: %s (%s) cannot make SR-IOV VFs%s", pf, d.name,
            d.sriov_total == 0 && d.vendor == 0x8086
                ? " yet: its driver needs i915.max_vfs (qdesk host cmdline --gpu ADDR)"
                : "");
        return -1;
    }
    if (n == 0)
        n = (unsigned)d.sriov_total;
    if (n > (unsigned)d.sriov_total) {
        snprintf(err, errsz, "vf: %s supports at most %d VFs, not %u", pf, d.sriov_total,
                 n);
        return -1;
    }
    if ((unsigned)d.sriov_num == n)
        return 0;
    if (d.sriov_num != 0) {
        snprintf(err, errsz,
                 "vf: %s already has %d VFs; changing that to %u would remove "
                 "VFs guests may be using (write 0 to its sriov_numvfs first, "
                 "when no guest uses them)",
                 pf, d.sriov_num, n);
        return -1;
    }
    if (d.sriov_autoprobe >= 0) {
        snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/sriov_drivers_autoprobe",
                 pf);
        if (hostw_write(sysroot, path, "0", err, errsz) < 0)
            return -1;
    }
    snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/sriov_numvfs", pf);
    snprintf(value, sizeof(value), "%u", n);
    if (hostw_write(sysroot, path, value, err, errsz) < 0)
        return -1;
    if (!sysfs_exists(sysroot, "/sys/bus/pci/devices/%s/virtfn%u", pf, n - 1)) {
        snprintf(err, errsz, "vf: %s did not create its VFs (%s/virtfn%u is missing)", pf,
                 path, n - 1);
        return -1;
    }
    return 0;
}

static int unit_addr(const char *unit, char *out, size_t outsz)
{
    if (!strncmp(unit, "vf:", 3))
        unit += 3;
    return pcidev_addr_parse(unit, out, outsz);
}

static int vf_plan(const char *sysroot, const struct gpu_request *req,
                   struct gpu_grant *g, char *err, size_t errsz)
{
    struct pcidev_list devs;
    char want[PCIDEV_ADDR_SIZE] = "", addr[PCIDEV_ADDR_SIZE];
    const struct pcidev *pf = NULL, *vf = NULL;
    unsigned index = 0;
    size_t n_pf = 0;
    memset(g, 0, sizeof(*g));
    if (req->unit[0] && unit_addr(req->unit, want, sizeof(want)) < 0) {
        snprintf(err, errsz, "vf: '%s' is not a PCI address", req->unit);
        return -1;
    }
    if (pcidev_scan(sysroot, &devs, err, errsz) < 0)
        return -1;
    int len = snprintf(err, errsz, "vf: no free VF:");
    for (size_t i = 0; i < devs.n && !pf; i++) {
        const struct pcidev *d = &devs.v[i];
        if (!pcidev_is_display(d) || d->physfn[0] || d->sriov_total <= 0)
            continue;
        n_pf++;
        for (unsigned k = 0; k < (unsigned)d->sriov_total && !pf; k++) {
            if (gpu_vf_addr(sysroot, d, k, addr, sizeof(addr)) < 0)
                break;
            const struct pcidev *v = pcidev_find(&devs, addr);
            if (want[0]) {
                if (strcmp(addr, want) != 0)
                    continue;
                if (!v && d->sriov_num > 0) {
                    snprintf(err, errsz, "vf: %s is not enabled: %s has %d VFs", want,
                             d->addr, d->sriov_num);
                    goto fail;
                }
            } else if (v ? !strcmp(v->driver, "vfio-pci") ||
                               (v->driver[0] && strcmp(v->driver, d->driver) != 0)
                         : d->sriov_num > 0)
                continue;
            pf = d;
            vf = v;
            index = k;
        }
        if (!pf && !want[0] && len >= 0 && (size_t)len < errsz)
            len += snprintf(err + len, errsz - (size_t)len,
                            " %s (%s) has %d VFs, every one bound to vfio-pci or a host "
                            "driver;",
                            d->addr, d->name, d->sriov_num);
    }
    if (!pf) {
        if (want[0])
            snprintf(err, errsz, "vf: %s is not a virtual function of an SR-IOV GPU",
                     want);
        else if (!n_pf)
            snprintf(err, errsz,
                     "vf: this host has no SR-IOV capable GPU (qdesk host check "
                     "lists what it has)");
        else {
            if (len > 0 && (size_t)len < errsz && err[len - 1] == ';')
                err[len - 1] = 0;
            pcidev_list_free(&devs);
            return -EBUSY;
        }
        goto fail;
    }
    g->kind = GPU_KIND_VF;
    snprintf(g->unit, sizeof(g->unit), "vf:%s", want[0] ? want : addr);
    snprintf(g->fn[0].addr, sizeof(g->fn[0].addr), "%s", want[0] ? want : addr);
    snprintf(g->fn[0].orig_driver, sizeof(g->fn[0].orig_driver), "%s",
             vf ? vf->driver : "");
    g->n_fn = 1;
    g->rombar = false;
    snprintf(g->pf, sizeof(g->pf), "%s", pf->addr);
    if (pf->sriov_num == 0) {
        g->vfs_create = req->vfs ? req->vfs : (unsigned)pf->sriov_total;
        if (index >= g->vfs_create) {
            snprintf(err, errsz, "vf: %s would not exist with %u VFs", g->fn[0].addr,
                     g->vfs_create);
            goto fail;
        }
    }
    pcidev_list_free(&devs);
    return 0;
fail:
    pcidev_list_free(&devs);
    return -1;
}

static int vf_prepare(const char *sysroot, struct gpu_grant *g, char *err, size_t errsz)
{
    if (g->vfs_create && gpu_vf_enable(sysroot, g->pf, g->vfs_create, err, errsz) < 0)
        return -1;
    char why[1024];
    if (vfio_bind(sysroot, g->fn[0].addr, g->fn[0].orig_driver,
                  sizeof(g->fn[0].orig_driver), why, sizeof(why)) < 0) {
        snprintf(err, errsz, "vf: %s", why);
        return -1;
    }
    return 0;
}

/* The VF goes back to how it was (unbound, with autoprobe off); the VFs stay for the
 * next guest. */
static int vf_release(const char *sysroot, const struct gpu_grant *g, char *err,
                      size_t errsz)
{
    char why[1024];
    if (g->n_fn &&
        vfio_unbind(sysroot, g->fn[0].addr, g->fn[0].orig_driver, why, sizeof(why)) < 0) {
        snprintf(err, errsz, "vf: %s", why);
        return -1;
    }
    return 0;
}

const struct gpu_ops gpu_vf_ops = {"vf", vf_plan, vf_prepare, vf_release};

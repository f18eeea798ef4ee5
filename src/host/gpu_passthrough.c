/* passthrough: a whole graphics card — the GPU and the functions of its slot that
 * belong to it — given to one guest through vfio-pci. */
#include "host/gpu.h"
#include "host/iommu.h"
#include "host/vfio.h"

#include "util/fs.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

bool gpu_passthrough_check(const char *sysroot, const struct pcidev_list *devs,
                           const struct iommu_groups *groups, const struct pcidev *d,
                           bool allow_console, char (*fns)[PCIDEV_ADDR_SIZE],
                           size_t *n_fn, char *why, size_t whysz)
{
    *n_fn = 0;
    if (!pcidev_is_display(d)) {
        snprintf(why, whysz, "it is not a display controller");
        return false;
    }
    if (d->physfn[0]) {
        snprintf(why, whysz, "it is a virtual function of %s (ask for --gpu vf)",
                 d->physfn);
        return false;
    }
    if (d->sriov_num > 0) {
        snprintf(why, whysz,
                 "its %d SR-IOV VFs are enabled (guests get those with --gpu "
                 "vf; the card itself goes only without them)",
                 d->sriov_num);
        return false;
    }
    const struct iommu_group *g =
        d->iommu_group >= 0 ? iommu_group_find(groups, d->iommu_group) : NULL;
    if (!g) {
        snprintf(why, whysz,
                 "it has no IOMMU group: the IOMMU is off (qdesk host check "
                 "says how to turn it on)");
        return false;
    }
    *n_fn = pcidev_companions(devs, d, fns, GPU_MAX_FUNCTIONS);
    struct iommu_verdict v;
    iommu_check(g, devs, fns, *n_fn, &v);
    if (!v.viable) {
        snprintf(why, whysz,
                 "its IOMMU group %d is not viable: %s (every device in the "
                 "group must go to the guest or be unbound from its host "
                 "driver)",
                 g->id, v.why);
        return false;
    }
    if (!allow_console && pcidev_drives_console(sysroot, d)) {
        snprintf(why, whysz,
                 "it shows the host console (boot VGA, driven by %s); the "
                 "operator may allow taking it",
                 d->driver[0] ? d->driver : "the firmware framebuffer");
        return false;
    }
    return true;
}

/* Accepts "pci:ADDR" or a bare address, with or without the domain. */
static int unit_addr(const char *unit, char *out, size_t outsz)
{
    if (!strncmp(unit, "pci:", 4))
        unit += 4;
    return pcidev_addr_parse(unit, out, outsz);
}

static int passthrough_plan(const char *sysroot, const struct gpu_request *req,
                            struct gpu_grant *g, char *err, size_t errsz)
{
    struct pcidev_list devs;
    struct iommu_groups groups = {0};
    char want[PCIDEV_ADDR_SIZE] = "";
    int rc = -1;
    memset(g, 0, sizeof(*g));
    if (req->unit[0] && unit_addr(req->unit, want, sizeof(want)) < 0) {
        snprintf(err, errsz, "passthrough: '%s' is not a PCI address", req->unit);
        return -1;
    }
    if (pcidev_scan(sysroot, &devs, err, errsz) < 0)
        return -1;
    if (iommu_scan(sysroot, &groups, err, errsz) < 0)
        goto cleanup;

    char fns[GPU_MAX_FUNCTIONS][PCIDEV_ADDR_SIZE], why[1400];
    size_t n_fn = 0, tried = 0;
    const struct pcidev *chosen = NULL;
    int len = snprintf(err, errsz, "passthrough: no GPU can be given to a guest:");
    for (size_t i = 0; i < devs.n && !chosen; i++) {
        const struct pcidev *d = &devs.v[i];
        if (want[0] ? strcmp(d->addr, want) != 0 : !pcidev_is_display(d) || d->physfn[0])
            continue;
        tried++;
        if (gpu_passthrough_check(sysroot, &devs, &groups, d, req->allow_console, fns,
                                  &n_fn, why, sizeof(why)))
            chosen = d;
        else if (want[0])
            snprintf(err, errsz, "passthrough: %s (%s) cannot be given to a guest: %s",
                     d->addr, d->name, why);
        else if (len >= 0 && (size_t)len < errsz)
            len += snprintf(err + len, errsz - (size_t)len, " %s (%s): %s;", d->addr,
                            d->name, why);
    }
    if (!chosen) {
        if (want[0] && !tried)
            snprintf(err, errsz, "passthrough: there is no PCI device %s", want);
        else if (!tried)
            snprintf(err, errsz, "passthrough: this host has no GPU");
        else if (!want[0] && len > 0 && (size_t)len < errsz && err[len - 1] == ';')
            err[len - 1] = 0;
        goto cleanup;
    }
    g->kind = GPU_KIND_PASSTHROUGH;
    snprintf(g->unit, sizeof(g->unit), "pci:%s", chosen->addr);
    for (size_t i = 0; i < n_fn; i++) {
        const struct pcidev *f = pcidev_find(&devs, fns[i]);
        snprintf(g->fn[i].addr, sizeof(g->fn[i].addr), "%s", fns[i]);
        snprintf(g->fn[i].orig_driver, sizeof(g->fn[i].orig_driver), "%s",
                 f ? f->driver : "");
    }
    g->n_fn = n_fn;
    g->multifunction = n_fn > 1;
    g->x_vga = req->seabios && (chosen->class_code >> 8) == 0x0300;
    g->rombar = true;
    if (req->rom_dir[0]) { /* the operator's ROM for this card, if any */
        char rom[PATH_MAX], path[PATH_MAX];
        snprintf(rom, sizeof(rom), "%s/%s.rom", req->rom_dir, chosen->addr);
        if (strlen(rom) < sizeof(g->romfile) &&
            fs_join(path, sizeof(path), sysroot, rom) == 0 && fs_exists(path))
            snprintf(g->romfile, sizeof(g->romfile), "%s", rom);
    }
    g->hide_kvm = gpu_nvidia_consumer(chosen);
    if (g->hide_kvm)
        snprintf(g->hv_vendor_id, sizeof(g->hv_vendor_id), "%s", GPU_HV_VENDOR_ID);
    rc = 0;
cleanup:
    pcidev_list_free(&devs);
    iommu_groups_free(&groups);
    return rc;
}

static int passthrough_release(const char *sysroot, const struct gpu_grant *g, char *err,
                               size_t errsz)
{
    int rc = 0;
    /* in reverse: the audio function goes back before the GPU, as it came */
    for (size_t i = g->n_fn; i-- > 0;) {
        char why[1024];
        if (vfio_unbind(sysroot, g->fn[i].addr, g->fn[i].orig_driver, why, sizeof(why)) <
            0) {
            if (rc == 0)
                snprintf(err, errsz, "passthrough: %s", why);
            rc = -1;
        }
    }
    return rc;
}

static int passthrough_prepare(const char *sysroot, struct gpu_grant *g, char *err,
                               size_t errsz)
{
    char why[1024];
    for (size_t i = 0; i < g->n_fn; i++) {
        if (vfio_bind(sysroot, g->fn[i].addr, g->fn[i].orig_driver,
                      sizeof(g->fn[i].orig_driver), why, sizeof(why)) < 0) {
            snprintf(err, errsz, "passthrough: %s", why);
            struct gpu_grant done = *g;
            done.n_fn = i;
            char ignored[1024];
            passthrough_release(sysroot, &done, ignored, sizeof(ignored));
            return -1;
        }
    }
    return 0;
}

const struct gpu_ops gpu_passthrough_ops = {"passthrough", passthrough_plan,
                                            passthrough_prepare, passthrough_release};

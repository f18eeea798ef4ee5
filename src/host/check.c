#include "host/check.h"

#include "host/cpu.h"
#include "host/gpu.h"
#include "host/hugepages.h"
#include "host/kcmdline.h"
#include "host/mdev.h"
#include "host/pcidev.h"
#include "host/render.h"
#include "host/sysfs.h"
#include "qemu/accel.h"
#include "util/fs.h"

#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

/* What one check needs to know about the host. */
struct host {
    const struct config *cfg;
    const char *root;
    char vendor[16];
    bool intel, amd;
    char cmdline[4096];
    struct pcidev_list devs;
    size_t n_groups;
};

static struct check_item *item(struct check_report *r, const char *feature,
                               enum check_status status)
{
    struct check_item *it = &r->item[r->n < CHECK_MAX ? r->n++ : CHECK_MAX - 1];
    memset(it, 0, sizeof(*it));
    snprintf(it->feature, sizeof(it->feature), "%s", feature);
    it->status = status;
    return it;
}

static void put(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void put(char *buf, size_t size, const char *fmt, ...)
{
    size_t len = strlen(buf);
    if (len >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, size - len, fmt, ap);
    va_end(ap);
}

static const char *iommu_param(const struct host *h)
{
    return h->amd ? "amd_iommu=on iommu=pt" : "intel_iommu=on iommu=pt";
}

static void check_kvm(const struct host *h, struct check_report *r)
{
    char arch[32] = "x86_64", why[512];
    struct utsname u;
    if (!h->intel && !h->amd && uname(&u) == 0)
        snprintf(arch, sizeof(arch), "%s", u.machine);
    if (accel_kvm_usable(h->root, arch, why, sizeof(why))) {
        const char *user = config_qemu_user(h->cfg);
        if (user[0] && !accel_kvm_allows_user(h->root, user, why, sizeof(why))) {
            /* the service may open /dev/kvm, the QEMU it starts may not */
            struct check_item *it = item(r, "kvm", CHECK_FAIL);
            snprintf(it->detail, sizeof(it->detail),
                     "KVM can run guests, but not as [qemu] qemu_user %s: %s", user, why);
            snprintf(it->fix, sizeof(it->fix), "adduser %s kvm", user);
            return;
        }
        struct check_item *it = item(r, "kvm", CHECK_OK);
        snprintf(it->detail, sizeof(it->detail), "KVM can run guests%s%s%s",
                 h->intel ? " (Intel VT-x)"
                 : h->amd ? " (AMD-V)"
                          : "",
                 user[0] ? ", also as " : "", user);
        return;
    }
    struct check_item *it = item(r, "kvm", CHECK_FAIL);
    snprintf(it->detail, sizeof(it->detail),
             "%s; guests run under TCG, many times slower", why);
    snprintf(it->fix, sizeof(it->fix),
             "enable %s in the firmware setup, then modprobe %s "
             "(QEMU: apt install qemu-system-x86)",
             h->amd ? "AMD-V (SVM)" : "VT-x (Intel Virtualization Technology)",
             h->amd ? "kvm_amd" : "kvm_intel");
}

/* Lists /sys/class/iommu ("dmar0, dmar1") into out; returns the count. */
static size_t iommu_units(const char *root, char *out, size_t outsz)
{
    char **units = sysfs_list(root, true, "/sys/class/iommu");
    size_t n = sysfs_names_count(units);
    out[0] = 0;
    for (size_t i = 0; i < n; i++)
        put(out, outsz, "%s%s", i ? ", " : "", units[i]);
    sysfs_names_free(units);
    return n;
}

static bool iommu_on(const struct host *h)
{
    return h->n_groups > 0;
}

static void check_iommu(const struct host *h, struct check_report *r)
{
    char units[256], type[32] = "", value[64];
    size_t n_units = iommu_units(h->root, units, sizeof(units));
    const char *hw = !strncmp(units, "dmar", 4)   ? "Intel VT-d"
                     : !strncmp(units, "ivhd", 4) ? "AMD-Vi"
                     : h->amd                     ? "AMD-Vi"
                     : h->intel                   ? "Intel VT-d"
                                                  : "the IOMMU";
    bool table =
        sysfs_exists(h->root, "/sys/firmware/acpi/tables/%s", h->amd ? "IVRS" : "DMAR");
    if (iommu_on(h)) {
        struct check_item *it = item(r, "iommu", CHECK_OK);
        char **groups = sysfs_list(h->root, true, "/sys/kernel/iommu_groups");
        if (groups && groups[0])
            sysfs_read(h->root, type, sizeof(type), "/sys/kernel/iommu_groups/%s/type",
                       groups[0]);
        sysfs_names_free(groups);
        bool pt = !strcmp(type, "identity") ||
                  (!type[0] && kcmdline_get(h->cmdline, "iommu", value, sizeof(value)) &&
                   !strcmp(value, "pt"));
        snprintf(it->detail, sizeof(it->detail), "%s is on (%s), %zu IOMMU groups, ", hw,
                 n_units ? units : "no units listed", h->n_groups);
        if (pt)
            put(it->detail, sizeof(it->detail),
                "passthrough mode (iommu=pt: host devices skip translation)");
        else
            put(it->detail, sizeof(it->detail),
                "translated mode (%s%s; iommu=pt spares host devices the translation)",
                type[0] ? "DMA domains: " : "", type[0] ? type : "DMA remapping");
        return;
    }
    struct check_item *it = item(r, "iommu", CHECK_FAIL);
    const char *off = h->amd ? "amd_iommu" : "intel_iommu";
    if (kcmdline_get(h->cmdline, off, value, sizeof(value)) && !strcmp(value, "off")) {
        snprintf(it->detail, sizeof(it->detail),
                 "off: the kernel command line says %s=off", off);
        snprintf(it->fix, sizeof(it->fix),
                 "replace %s=off by %s (qdesk host cmdline --gpu "
                 "ADDR --apply), then update-grub and reboot",
                 off, iommu_param(h));
    } else if (!table) {
        snprintf(it->detail, sizeof(it->detail),
                 "off: the firmware has no %s table, so "
                 "%s is disabled in its setup",
                 h->amd ? "IVRS" : "DMAR", hw);
        snprintf(it->fix, sizeof(it->fix),
                 "enable %s in the firmware setup, and add %s to "
                 "the kernel command line",
                 h->amd ? "IOMMU / AMD-Vi" : "VT-d", iommu_param(h));
    } else {
        snprintf(it->detail, sizeof(it->detail),
                 "off: the firmware offers %s (%s table) but "
                 "the kernel did not turn it on",
                 hw, h->amd ? "IVRS" : "DMAR");
        snprintf(it->fix, sizeof(it->fix),
                 "add %s to GRUB_CMDLINE_LINUX_DEFAULT (qdesk host "
                 "cmdline --gpu ADDR --apply), then update-grub and "
                 "reboot",
                 iommu_param(h));
    }
}

static void check_intremap(const struct host *h, struct check_report *r)
{
    char value[64], units[256], lacking[256] = "";
    const char *unsafe_fix =
        "vfio refuses devices without it unless 'options "
        "vfio_iommu_type1 allow_unsafe_interrupts=1' (unsafe: a guest "
        "could then send the host interrupts)";
    if (!iommu_on(h)) {
        struct check_item *it = item(r, "interrupt-remapping", CHECK_FAIL);
        snprintf(it->detail, sizeof(it->detail), "needs the IOMMU, which is off");
        snprintf(it->fix, sizeof(it->fix), "turn the IOMMU on (see iommu)");
        return;
    }
    if (kcmdline_get(h->cmdline, "nointremap", NULL, 0) ||
        (kcmdline_get(h->cmdline, "intremap", value, sizeof(value)) &&
         !strcmp(value, "off"))) {
        struct check_item *it = item(r, "interrupt-remapping", CHECK_FAIL);
        snprintf(it->detail, sizeof(it->detail), "turned off on the kernel command line");
        snprintf(it->fix, sizeof(it->fix),
                 "remove intremap=off / nointremap from "
                 "GRUB_CMDLINE_LINUX_DEFAULT, update-grub, reboot");
        return;
    }
    struct check_item *it;
    size_t n = iommu_units(h->root, units, sizeof(units));
    char **names = sysfs_list(h->root, true, "/sys/class/iommu");
    size_t checked = 0;
    for (size_t i = 0; names && names[i]; i++) {
        char ecap[64];
        if (sysfs_read(h->root, ecap, sizeof(ecap),
                       "/sys/class/iommu/%s/intel-iommu/ecap", names[i]) < 0)
            continue;
        unsigned long long bits = strtoull(ecap, NULL, 16);
        checked++;
        if (!(bits & (1ULL << 3))) /* ECAP.IR */
            put(lacking, sizeof(lacking), "%s%s", lacking[0] ? ", " : "", names[i]);
    }
    sysfs_names_free(names);
    if (lacking[0]) {
        it = item(r, "interrupt-remapping", CHECK_FAIL);
        snprintf(it->detail, sizeof(it->detail), "not supported by %s", lacking);
        snprintf(it->fix, sizeof(it->fix), "%s", unsafe_fix);
    } else if (checked) {
        it = item(r, "interrupt-remapping", CHECK_OK);
        snprintf(it->detail, sizeof(it->detail),
                 "on: every VT-d unit remaps interrupts (%s)", units);
    } else if (h->amd || !strncmp(units, "ivhd", 4)) {
        it = item(r, "interrupt-remapping", CHECK_OK);
        snprintf(it->detail, sizeof(it->detail), "on: AMD-Vi remaps interrupts (%s)",
                 n ? units : "no units listed");
    } else {
        it = item(r, "interrupt-remapping", CHECK_WARN);
        snprintf(it->detail, sizeof(it->detail), "unknown: this IOMMU does not say");
    }
    char unsafe[8];
    if (sysfs_read(h->root, unsafe, sizeof(unsafe),
                   "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts") ==
            0 &&
        unsafe[0] == 'Y') {
        if (it->status == CHECK_OK)
            it->status = CHECK_WARN;
        put(it->detail, sizeof(it->detail),
            "; vfio_iommu_type1 allow_unsafe_interrupts=Y "
            "lets guests send the host interrupts");
        snprintf(it->fix, sizeof(it->fix),
                 "remove allow_unsafe_interrupts from "
                 "/etc/modprobe.d when the hardware remaps "
                 "interrupts");
    }
}

static void check_vfio(const struct host *h, struct check_report *r)
{
    bool pci = sysfs_exists(h->root, "/sys/module/vfio_pci") ||
               sysfs_exists(h->root, "/sys/bus/pci/drivers/vfio-pci");
    bool type1 = sysfs_exists(h->root, "/sys/module/vfio_iommu_type1");
    if (pci && type1) {
        struct check_item *it = item(r, "vfio", CHECK_OK);
        snprintf(it->detail, sizeof(it->detail),
                 "vfio_pci and vfio_iommu_type1 are loaded");
        return;
    }
    struct check_item *it = item(r, "vfio", CHECK_FAIL);
    snprintf(it->detail, sizeof(it->detail),
             "%s%s%s not loaded: passthrough and VFs need "
             "them",
             pci ? "" : "vfio_pci", !pci && !type1 ? " and " : "",
             type1 ? "" : "vfio_iommu_type1");
    snprintf(it->fix, sizeof(it->fix),
             "modprobe vfio-pci vfio_iommu_type1; qdesk host "
             "cmdline --gpu ADDR --apply loads them at every boot "
             "(%s)",
             KCMDLINE_MODULES);
}

/* Guests get hugepages through memfd (memory-backend-memfd,hugetlb=on), which draws
 * on the kernel's pool of each page size directly: what matters is that the pool of
 * each size exists, not where hugetlbfs is mounted. */
static void check_hugepages(const struct host *h, struct check_report *r)
{
    struct hugepages_pool pools[8];
    char err[256];
    int n = hugepages_pools(h->root, pools, 8, err, sizeof(err));
    if (n <= 0) {
        struct check_item *it = item(r, "hugepages", CHECK_WARN);
        snprintf(it->detail, sizeof(it->detail),
                 "this kernel offers no huge pages "
                 "(/sys/kernel/mm/hugepages)");
        snprintf(it->fix, sizeof(it->fix),
                 "use a kernel with hugetlbfs (Debian's has it)");
        return;
    }
    struct check_item *it = item(r, "hugepages", CHECK_OK);
    bool giant = false;
    for (int i = 0; i < n && i < 8; i++) {
        char size[16];
        hugepages_size_name(pools[i].size_kb, size, sizeof(size));
        put(it->detail, sizeof(it->detail), "%s%s: %lu reserved, %lu free", i ? "; " : "",
            size, pools[i].nr, pools[i].free);
        giant |= pools[i].size_kb == HUGEPAGES_1G;
    }
    if (!giant)
        put(it->detail, sizeof(it->detail),
            "; no 1G pool (%s), so machines with hugepages = 1G cannot start here",
            (h->intel || h->amd) && !cpu_has_flag(h->root, "pdpe1gb")
                ? "this CPU has no 1G pages"
                : "this kernel offers none");
}

static void check_firmware(const struct host *h, struct check_report *r, const char *what,
                           const char *code, const char *vars, const char *package,
                           enum check_status missing)
{
    char pc[PATH_MAX], pv[PATH_MAX];
    bool ok = code[0] && vars[0] && fs_join(pc, sizeof(pc), h->root, code) == 0 &&
              fs_join(pv, sizeof(pv), h->root, vars) == 0 && fs_exists(pc) &&
              fs_exists(pv);
    struct check_item *it = item(r, what, ok ? CHECK_OK : missing);
    if (ok) {
        snprintf(it->detail, sizeof(it->detail), "UEFI firmware for %s guests: %s",
                 !strcmp(what, "ovmf") ? "x86_64" : "aarch64", code);
        return;
    }
    snprintf(it->detail, sizeof(it->detail), "no UEFI firmware for %s guests (%s)",
             !strcmp(what, "ovmf") ? "x86_64" : "aarch64",
             code[0] ? code : "not configured");
    snprintf(it->fix, sizeof(it->fix),
             "apt install %s (or set [qemu] %s_code and %s_vars)", package, what, what);
}

static void check_virgl(const struct host *h, struct check_report *r)
{
    struct render_node *nodes = NULL;
    size_t n = 0;
    char err[256];
    render_scan(h->root, &nodes, &n, err, sizeof(err));
    bool gl =
        sysfs_exists(h->root,
                     "/usr/lib/x86_64-linux-gnu/qemu/hw-display-virtio-gpu-gl.so") ||
        sysfs_exists(h->root,
                     "/usr/lib/aarch64-linux-gnu/qemu/hw-display-virtio-gpu-gl.so");
    struct check_item *it = item(r, "virgl", n && gl ? CHECK_OK : CHECK_WARN);
    if (!n) {
        snprintf(it->detail, sizeof(it->detail),
                 "no render node (/dev/dri/renderD*): virgl "
                 "guests get plain virtio-vga without 3D");
        snprintf(it->fix, sizeof(it->fix),
                 "load the GPU's DRM driver (i915, amdgpu, "
                 "nouveau)");
    }
    for (size_t i = 0; i < n; i++) {
        const struct pcidev *d =
            nodes[i].pci[0] ? pcidev_find(&h->devs, nodes[i].pci) : NULL;
        put(it->detail, sizeof(it->detail), "%s%s (%s%s%s)", i ? ", " : "render nodes ",
            nodes[i].path, nodes[i].driver[0] ? nodes[i].driver : "no driver",
            d ? " on " : "", d ? d->name : "");
    }
    if (!gl) {
        put(it->detail, sizeof(it->detail), "; QEMU's virtio-vga-gl is not installed");
        put(it->fix, sizeof(it->fix), "%sapt install qemu-system-gui",
            it->fix[0] ? "; " : "");
    }
    free(nodes);
}

static void check_sriov(const struct host *h, struct check_report *r)
{
    struct check_item *it = item(r, "sr-iov", CHECK_INFO);
    for (size_t i = 0; i < h->devs.n; i++) {
        const struct pcidev *d = &h->devs.v[i];
        if (!pcidev_is_display(d) || d->physfn[0] || d->sriov_total <= 0)
            continue;
        it->status = CHECK_OK;
        put(it->detail, sizeof(it->detail), "%s%s (%s): %d of %d VFs enabled%s",
            it->detail[0] ? "; " : "", d->addr, d->name, d->sriov_num, d->sriov_total,
            d->sriov_num == 0         ? " (qdesk creates them on first use)"
            : d->sriov_autoprobe == 0 ? ", autoprobe off"
                                      : ", autoprobe on (host drivers may take them)");
    }
    if (it->status == CHECK_INFO)
        snprintf(it->detail, sizeof(it->detail),
                 "no GPU here offers SR-IOV VFs (Intel "
                 "iGPUs from Alder Lake on do, with "
                 "i915.enable_guc=3 i915.max_vfs=7)");
}

static void check_mdev(const struct host *h, struct check_report *r)
{
    struct mdev_type *types = NULL;
    size_t n = 0;
    char err[256];
    mdev_scan(h->root, &types, &n, err, sizeof(err));
    struct check_item *it = item(r, "mdev", n ? CHECK_OK : CHECK_INFO);
    for (size_t i = 0; i < n; i++)
        put(it->detail, sizeof(it->detail), "%s%s (%u free)",
            i == 0                                         ? ""
            : strcmp(types[i].parent, types[i - 1].parent) ? "; "
                                                           : ", ",
            types[i].type, types[i].available);
    if (n) {
        char head[64];
        snprintf(head, sizeof(head), "%s: ", types[0].parent);
        size_t hl = strlen(head), dl = strlen(it->detail);
        if (hl + dl < sizeof(it->detail)) {
            memmove(it->detail + hl, it->detail, dl + 1);
            memcpy(it->detail, head, hl);
        }
    }
    mdev_types_free(types);
    if (n)
        return;
    for (size_t i = 0; i < h->devs.n; i++)
        if (gpu_gvt_capable(&h->devs.v[i])) {
            it->status = CHECK_WARN;
            snprintf(it->detail, sizeof(it->detail),
                     "%s (%s) can be shared with GVT-g, "
                     "which is off",
                     h->devs.v[i].addr, h->devs.v[i].name);
            snprintf(it->fix, sizeof(it->fix),
                     "i915.enable_gvt=1 and the kvmgt module (qdesk "
                     "host cmdline --gpu %s --apply)",
                     h->devs.v[i].addr);
            return;
        }
    snprintf(it->detail, sizeof(it->detail), "no GPU here makes mediated devices");
}

void check_run(const struct config *cfg, struct check_report *r)
{
    struct host h = {.cfg = cfg, .root = cfg->sysroot};
    char err[256];
    memset(r, 0, sizeof(*r));
    cpu_vendor(h.root, h.vendor, sizeof(h.vendor));
    h.intel = !strcmp(h.vendor, "GenuineIntel");
    h.amd = !strcmp(h.vendor, "AuthenticAMD");
    kcmdline_read(h.root, h.cmdline, sizeof(h.cmdline));
    if (pcidev_scan(h.root, &h.devs, err, sizeof(err)) < 0)
        h.devs.n = 0;
    char **groups = sysfs_list(h.root, true, "/sys/kernel/iommu_groups");
    h.n_groups = sysfs_names_count(groups);
    sysfs_names_free(groups);

    check_kvm(&h, r);
    check_iommu(&h, r);
    check_intremap(&h, r);
    check_vfio(&h, r);
    check_hugepages(&h, r);
    check_firmware(&h, r, "ovmf", cfg->ovmf_code, cfg->ovmf_vars, "ovmf", CHECK_FAIL);
    check_firmware(&h, r, "aavmf", cfg->aavmf_code, cfg->aavmf_vars, "qemu-efi-aarch64",
                   CHECK_WARN);
    check_virgl(&h, r);
    check_sriov(&h, r);
    check_mdev(&h, r);
    pcidev_list_free(&h.devs);
}

const char *check_status_name(enum check_status s)
{
    switch (s) {
    case CHECK_OK:
        return "ok";
    case CHECK_INFO:
        return "info";
    case CHECK_WARN:
        return "warn";
    case CHECK_FAIL:
        return "fail";
    }
    return "?";
}

bool check_failed(const struct check_report *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->item[i].status == CHECK_FAIL)
            return true;
    return false;
}

void check_print(const struct check_report *r, FILE *f)
{
    for (size_t i = 0; i < r->n; i++) {
        const struct check_item *it = &r->item[i];
        fprintf(f, "%-5s %-20s %s\n", check_status_name(it->status), it->feature,
                it->detail);
        if (it->fix[0])
            fprintf(f, "%-5s %-20s fix: %s\n", "", "", it->fix);
    }
}

json_t *check_json(const struct check_report *r)
{
    json_t *list = json_array();
    for (size_t i = 0; i < r->n; i++) {
        const struct check_item *it = &r->item[i];
        json_array_append_new(list,
                              json_pack("{s:s, s:s, s:s, s:s}", "feature", it->feature,
                                        "status", check_status_name(it->status), "detail",
                                        it->detail, "fix", it->fix));
    }
    return json_pack("{s:b, s:o}", "ok", !check_failed(r), "checks", list);
}

#include "qemu/cmdline.h"

#include "host/hugepages.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Node and device names used across sections. */
#define FW_CODE "fw-code"
#define FW_VARS "fw-vars"

_Static_assert((int)GPU_KIND_NONE == (int)SPEC_GPU_NONE &&
                   (int)GPU_KINDS == (int)SPEC_GPU_KINDS &&
                   (int)GPU_KIND_VF == (int)SPEC_GPU_VF &&
                   (int)GPU_KIND_PASSTHROUGH == (int)SPEC_GPU_PASSTHROUGH &&
                   (int)GPU_KIND_MDEV == (int)SPEC_GPU_MDEV &&
                   (int)GPU_KIND_VIRGL == (int)SPEC_GPU_VIRGL,
               "enum gpu_kind and enum spec_gpu must agree");

static bool is_arm(const struct vm_spec *s)
{
    return strcmp(s->arch, "aarch64") == 0;
}

static bool has_vfio(const struct vm_spec *s)
{
    return s->gpu_grant.n_fn > 0 || s->gpu_grant.mdev_sysfsdev[0];
}

/* Adds "flag RUNDIR/file"-style option values: a path inside the run directory. */
static void rundir_path(const struct vm_spec *s, const char *file, char *out,
                        size_t outsz)
{
    snprintf(out, outsz, "%s/%s", s->rundir, file);
}

static int build_name(struct argv *a, const struct vm_spec *s)
{
    struct qopt o = {0};
    argv_add(a, s->qemu);
    qopt_add(&o, "guest", s->name);
    qopt_word(&o, "debug-threads=on");
    argv_add_qopt(a, "-name", &o);
    argv_add(a, "-no-user-config");
    argv_add(a, "-nodefaults");
    return argv_status(a);
}

static int build_machine(struct argv *a, const struct vm_spec *s)
{
    struct qopt o = {0};
    qopt_word(&o, s->machine_type);
    if (is_arm(s))
        qopt_word(&o, "gic-version=max");
    else
        qopt_word(&o, "usb=off");
    qopt_word(&o, "dump-guest-core=off");
    if (s->uefi) {
        qopt_word(&o, "pflash0=" FW_CODE);
        qopt_word(&o, "pflash1=" FW_VARS);
    }
    if (s->hugepages_kb)
        qopt_word(&o, "memory-backend=mem0");
    argv_add_qopt(a, "-machine", &o);
    argv_add(a, "-accel");
    argv_add(a, s->kvm ? "kvm" : "tcg");
    return argv_status(a);
}

static int build_cpu(struct argv *a, const struct vm_spec *s)
{
    struct qopt o = {0};
    qopt_word(&o, s->kvm ? "host" : "max");
    if (s->gpu_grant.hide_kvm) {
        /* Consumer NVIDIA drivers refuse to run when they see KVM: kvm=off hides its
         * signature, and the Hyper-V leaves name another vendor. hv-vendor-id alone
         * changes nothing (QEMU's hyperv.rst: it is not an enlightenment), so the
         * enlightenments Windows guests want anyway come with it. */
        qopt_word(&o, "kvm=off");
        qopt_word(&o, "hv-relaxed");
        qopt_word(&o, "hv-vapic");
        qopt_word(&o, "hv-spinlocks=0x1fff");
        qopt_word(&o, "hv-time");
        qopt_add(&o, "hv-vendor-id",
                 s->gpu_grant.hv_vendor_id[0] ? s->gpu_grant.hv_vendor_id
                                              : GPU_HV_VENDOR_ID);
    }
    argv_add_qopt(a, "-cpu", &o);
    argv_add(a, "-smp");
    argv_addf(a, "%u,sockets=%u,cores=%u,threads=%u", s->cpus, s->sockets, s->cores,
              s->threads);
    return argv_status(a);
}

static int build_memory(struct argv *a, const struct vm_spec *s)
{
    argv_add(a, "-m");
    argv_addf(a, "size=%lluM", (unsigned long long)s->memory_mb);
    if (s->hugepages_kb) {
        /* Guest RAM from the hugepages reserved for this session: a memfd draws on
         * the kernel's pool of exactly that page size (a hugetlbfs mount has one page
         * size, usually 2M), and prealloc touches every page at start so a shortage
         * shows now rather than as a guest crash later. */
        struct qopt o = {0};
        char size[16];
        hugepages_size_name(s->hugepages_kb, size, sizeof(size));
        qopt_word(&o, "memory-backend-memfd");
        qopt_word(&o, "id=mem0");
        qopt_addf(&o, "size", "%lluM", (unsigned long long)s->memory_mb);
        qopt_word(&o, "hugetlb=on");
        qopt_add(&o, "hugetlbsize", size);
        qopt_word(&o, "prealloc=on");
        argv_add_qopt(a, "-object", &o);
    }
    return argv_status(a);
}

/* Adds a file node and a format node on top of it. backing is the node below (NULL
 * for none); it is given only for formats that can have one, and an empty value
 * then stops QEMU from opening any backing file the image names. */
static void add_blockdev(struct argv *a, const char *node, const char *path,
                         const char *format, bool read_only, const char *backing)
{
    struct qopt o = {0};
    char file_node[48];
    snprintf(file_node, sizeof(file_node), "%s-file", node);
    qopt_word(&o, "driver=file");
    qopt_add(&o, "filename", path);
    qopt_add(&o, "node-name", file_node);
    if (read_only)
        qopt_word(&o, "read-only=on");
    argv_add_qopt(a, "-blockdev", &o);

    qopt_add(&o, "driver", format);
    qopt_add(&o, "file", file_node);
    qopt_add(&o, "node-name", node);
    if (read_only)
        qopt_word(&o, "read-only=on");
    bool has_backing =
        !strcmp(format, "qcow2") || !strcmp(format, "qed") || !strcmp(format, "vmdk");
    if (has_backing)
        qopt_add(&o, "backing", backing ? backing : "");
    argv_add_qopt(a, "-blockdev", &o);
}

static int build_firmware(struct argv *a, const struct vm_spec *s)
{
    if (!s->uefi)
        return 0; /* SeaBIOS is QEMU's default for x86 */
    char vars[4200];
    rundir_path(s, RUNDIR_VARS, vars, sizeof(vars));
    add_blockdev(a, FW_CODE, s->fw_code, "raw", true, NULL);
    add_blockdev(a, FW_VARS, vars, "raw", false, NULL);
    return argv_status(a);
}

/* Adds the guest-visible device for a hard disk node. */
static void add_disk_device(struct argv *a, const struct vm_spec *s, const char *node,
                            int unit, int bootindex)
{
    struct qopt o = {0};
    if (strcmp(s->disk_bus, "virtio") == 0) {
        qopt_word(&o, "virtio-blk-pci");
    } else {
        qopt_word(&o, "ide-hd");
        /* q35's built-in AHCI and pc's PIIX IDE both name their ports ide.N; a
         * SATA disk on pc hangs off the AHCI controller build_disks() adds. */
        bool ahci_on_pc = !strcmp(s->disk_bus, "sata") && !strcmp(s->machine_type, "pc");
        qopt_addf(&o, "bus", ahci_on_pc ? "sata0.%d" : "ide.%d", unit);
    }
    qopt_add(&o, "drive", node);
    qopt_addf(&o, "id", "%s-dev", node);
    if (bootindex > 0)
        qopt_addf(&o, "bootindex", "%d", bootindex);
    argv_add_qopt(a, "-device", &o);
}

static int build_disks(struct argv *a, const struct vm_spec *s)
{
    char path[4200], node[32], below[32];
    struct qopt o = {0};

    /* The catalogue image and its backing files, read-only, bottom first. */
    for (size_t i = s->n_chain; i-- > 0;) {
        snprintf(node, sizeof(node), "base%zu", i);
        snprintf(below, sizeof(below), "base%zu", i + 1);
        add_blockdev(a, node, s->chain[i].path, s->chain[i].format, true,
                     i + 1 < s->n_chain ? below : NULL);
    }
    if (!strcmp(s->disk_bus, "sata") && !strcmp(s->machine_type, "pc")) {
        qopt_word(&o, "ahci");
        qopt_word(&o, "id=sata0");
        argv_add_qopt(a, "-device", &o);
    }

    if (s->n_chain > 0 && !s->cdrom) {
        /* The session writes only to its throw-away overlay. */
        rundir_path(s, RUNDIR_OVERLAY, path, sizeof(path));
        add_blockdev(a, "disk0", path, "qcow2", false, "base0");
        add_disk_device(a, s, "disk0", 0, 1);
    }
    if (s->cdrom) {
        if (is_arm(s)) {
            qopt_word(&o, "virtio-scsi-pci");
            qopt_word(&o, "id=scsi0");
            argv_add_qopt(a, "-device", &o);
            qopt_word(&o, "scsi-cd");
            qopt_word(&o, "bus=scsi0.0");
        } else {
            qopt_word(&o, "ide-cd");
            qopt_word(&o, "bus=ide.1");
        }
        qopt_word(&o, "drive=base0");
        qopt_word(&o, "id=cd0");
        qopt_word(&o, "bootindex=1");
        argv_add_qopt(a, "-device", &o);

        rundir_path(s, RUNDIR_DATA, path, sizeof(path));
        add_blockdev(a, "data0", path, "qcow2", false, NULL);
        add_disk_device(a, s, "data0", 0, 2);
    }
    if (s->kernel[0]) {
        argv_add(a, "-kernel");
        argv_add(a, s->kernel);
        if (s->initrd[0]) {
            argv_add(a, "-initrd");
            argv_add(a, s->initrd);
        }
        if (s->append[0]) {
            argv_add(a, "-append");
            argv_add(a, s->append);
        }
    }
    return argv_status(a);
}

static int build_network(struct argv *a, const struct vm_spec *s)
{
    struct qopt o = {0};
    switch (s->net) {
    case SPEC_NET_NONE:
        return 0;
    case SPEC_NET_USER:
        /* passt, started by qdesk, on the other end of a socketpair (net/usernet.h):
         * the guest gets the outside world, never the host */
        qopt_word(&o, "stream");
        qopt_word(&o, "id=net0");
        qopt_word(&o, "server=off");
        qopt_word(&o, "addr.type=fd");
        qopt_addf(&o, "addr.str", "%d", USERNET_FD);
        break;
    case SPEC_NET_BRIDGE:
        /* The privileged step made the tap and passes it; QEMU's sandbox forbids
         * spawning qemu-bridge-helper. */
        qopt_word(&o, "tap");
        qopt_word(&o, "id=net0");
        qopt_addf(&o, "fd", "%d", s->tap_fd);
        break;
    }
    argv_add_qopt(a, "-netdev", &o);
    /* Guests whose disks are not virtio (typically Windows) get an Intel NIC they
     * have a driver for. */
    if (!strcmp(s->disk_bus, "virtio") || is_arm(s))
        qopt_word(&o, "virtio-net-pci");
    else
        qopt_word(&o, !strcmp(s->machine_type, "q35") ? "e1000e" : "e1000");
    qopt_word(&o, "netdev=net0");
    qopt_word(&o, "id=net0-dev");
    qopt_add(&o, "mac", s->mac);
    argv_add_qopt(a, "-device", &o);
    return argv_status(a);
}

static const char *video_device(const struct vm_spec *s)
{
    static const struct {
        const char *name, *x86, *arm, *no_vga;
    } table[] = {
        {"vga", "VGA", NULL, "bochs-display"},
        {"virtio", "virtio-vga", "virtio-gpu-pci", "virtio-gpu-pci"},
        {"bochs", "bochs-display", "bochs-display", "bochs-display"},
        {"qxl", "qxl-vga", NULL, "qxl"},
        {"cirrus", "cirrus-vga", NULL, "bochs-display"},
        {"ramfb", "ramfb", "ramfb", "ramfb"},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strcmp(s->video, table[i].name))
            continue;
        if (is_arm(s))
            return table[i].arm;
        /* A passed-through card that takes the legacy VGA ranges (x-vga) leaves no
         * room for an emulated VGA device: the viewer gets a display without. */
        return s->gpu_grant.x_vga ? table[i].no_vga : table[i].x86;
    }
    return NULL;
}

static int build_display(struct argv *a, const struct vm_spec *s)
{
    char path[4200];
    struct qopt o = {0};
    const struct gpu_grant *g = &s->gpu_grant;
    bool virgl = g->kind == GPU_KIND_VIRGL && (s->virgl_sdl || g->render_node[0]);
    if (virgl && s->virgl_sdl) {
        qopt_word(&o, "sdl,gl=on"); /* an X display with OpenGL (Mesa), for hosts
                                       without a render node */
    } else if (virgl) {
        qopt_word(&o, "egl-headless"); /* 3D on the render node; frames go to VNC */
        qopt_add(&o, "rendernode", g->render_node);
    } else {
        qopt_word(&o, "none");
    }
    argv_add_qopt(a, "-display", &o);
    /* VNC on a unix socket in the run directory only: never a TCP port. */
    rundir_path(s, RUNDIR_VNC, path, sizeof(path));
    char value[4300];
    snprintf(value, sizeof(value), "unix:%s", path);
    qopt_value(&o, value);
    /* Control and view-only viewers share one display; no viewer can ask QEMU to
     * disconnect the others. */
    qopt_word(&o, "share=force-shared");
    argv_add_qopt(a, "-vnc", &o);

    const char *dev;
    if (g->kind == GPU_KIND_VIRGL)
        dev = is_arm(s) ? (virgl ? "virtio-gpu-gl-pci" : "virtio-gpu-pci")
                        : (virgl ? "virtio-vga-gl" : "virtio-vga");
    else
        dev = video_device(s);
    if (!dev) {
        argv_fail(a, "video: '%s' is not available for %s guests", s->video, s->arch);
        return -1;
    }
    qopt_word(&o, dev);
    qopt_word(&o, "id=video0");
    argv_add_qopt(a, "-device", &o);
    return argv_status(a);
}

/* PCI functions and mediated devices through vfio-pci. The functions of one card
 * go into one guest slot, as on the host, behind a PCIe root port (q35, virt) or at
 * a fixed slot of the PCI bus (pc). */
static int build_gpu(struct argv *a, const struct vm_spec *s)
{
    const struct gpu_grant *g = &s->gpu_grant;
    struct qopt o = {0};
    if (g->mdev_sysfsdev[0]) {
        qopt_word(&o, "vfio-pci");
        qopt_add(&o, "sysfsdev", g->mdev_sysfsdev);
        qopt_word(&o, "id=hostdev0");
        qopt_word(&o, "display=off");
        argv_add_qopt(a, "-device", &o);
        return argv_status(a);
    }
    if (g->n_fn == 0)
        return 0;
    bool root_port = strcmp(s->machine_type, "pc") != 0;
    if (root_port) {
        qopt_word(&o, "pcie-root-port");
        qopt_word(&o, "id=gpu-port");
        qopt_word(&o, "chassis=16");
        qopt_word(&o, "slot=16");
        argv_add_qopt(a, "-device", &o);
    }
    for (size_t i = 0; i < g->n_fn; i++) {
        qopt_word(&o, "vfio-pci");
        qopt_add(&o, "host", g->fn[i].addr);
        qopt_addf(&o, "id", "hostdev%zu", i);
        if (root_port)
            qopt_word(&o, "bus=gpu-port");
        qopt_addf(&o, "addr", root_port ? "00.%zu" : "10.%zu", i);
        if (i == 0 && g->multifunction)
            qopt_word(&o, "multifunction=on");
        if (i == 0 && g->x_vga)
            qopt_word(&o, "x-vga=on");
        if (i == 0 && g->romfile[0])
            qopt_add(&o, "romfile", g->romfile);
        else if (!g->rombar)
            qopt_word(&o, "rombar=0");
        argv_add_qopt(a, "-device", &o);
    }
    return argv_status(a);
}

static int build_input(struct argv *a, const struct vm_spec *s)
{
    struct qopt o = {0};
    qopt_word(&o, "qemu-xhci");
    qopt_word(&o, "id=usb");
    argv_add_qopt(a, "-device", &o);
    /* An absolute pointer, so the guest's cursor follows the viewer's exactly. */
    qopt_word(&o, "usb-tablet");
    qopt_word(&o, "id=input0");
    qopt_word(&o, "bus=usb.0");
    argv_add_qopt(a, "-device", &o);
    if (is_arm(s)) { /* virt has no PS/2 keyboard */
        qopt_word(&o, "usb-kbd");
        qopt_word(&o, "id=input1");
        qopt_word(&o, "bus=usb.0");
        argv_add_qopt(a, "-device", &o);
    }
    /* USB devices: host ones by port (a device plugged in again keeps its place), or
     * emulated ones. */
    for (size_t i = 0; i < s->n_usb; i++) {
        char id[48];
        if (s->usb[i].emulated[0]) {
            qopt_word(&o, s->usb[i].emulated); /* one of spec_usb_emulated()'s names */
            qopt_word(&o, "bus=usb.0");
            qemu_usb_id(&s->usb[i], id, sizeof(id));
            qopt_add(&o, "id", id);
            argv_add_qopt(a, "-device", &o);
            continue;
        }
        qopt_word(&o, "usb-host");
        qopt_word(&o, "bus=usb.0");
        qopt_addf(&o, "hostbus", "%u", s->usb[i].bus);
        qopt_add(&o, "hostport", s->usb[i].devpath);
        qemu_usb_id(&s->usb[i], id, sizeof(id));
        qopt_add(&o, "id", id);
        argv_add_qopt(a, "-device", &o);
    }
    return argv_status(a);
}

void qemu_usb_id(const struct vm_usb *u, char *out, size_t outsz)
{
    if (u->emulated[0])
        snprintf(out, outsz, "%s-%u", u->emulated, u->index);
    else
        snprintf(out, outsz, "usb-%u-%s", u->bus, u->devpath);
}

static int build_balloon(struct argv *a, const struct vm_spec *s)
{
    /* Memory that vfio pins or hugepages back cannot be ballooned back. */
    if (has_vfio(s) || s->hugepages_kb)
        return 0;
    struct qopt o = {0};
    qopt_word(&o, "virtio-balloon-pci");
    qopt_word(&o, "id=balloon0");
    argv_add_qopt(a, "-device", &o);
    return argv_status(a);
}

static int build_serial(struct argv *a, const struct vm_spec *s)
{
    char path[4200];
    struct qopt o = {0};
    rundir_path(s, RUNDIR_SERIAL, path, sizeof(path));
    qopt_word(&o, "file");
    qopt_word(&o, "id=serial0");
    qopt_add(&o, "path", path);
    argv_add_qopt(a, "-chardev", &o);
    argv_add(a, "-serial");
    argv_add(a, "chardev:serial0");
    return argv_status(a);
}

static int build_qmp(struct argv *a, const struct vm_spec *s)
{
    char path[4200];
    struct qopt o = {0};
    rundir_path(s, RUNDIR_QMP, path, sizeof(path));
    qopt_word(&o, "socket");
    qopt_word(&o, "id=qmp");
    qopt_add(&o, "path", path);
    qopt_word(&o, "server=on");
    qopt_word(&o, "wait=off");
    argv_add_qopt(a, "-chardev", &o);
    argv_add(a, "-mon");
    argv_add(a, "chardev=qmp,mode=control");
    return argv_status(a);
}

static int build_process(struct argv *a, const struct vm_spec *s)
{
    char path[4200];
    rundir_path(s, RUNDIR_PID, path, sizeof(path));
    argv_add(a, "-pidfile");
    argv_add(a, path);
    argv_add(a, "-sandbox");
    argv_add(a,
             "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
    argv_add(a, "-msg");
    argv_add(a, "timestamp=on");
    return argv_status(a);
}

int qemu_build_cmdline(struct argv *a, const struct vm_spec *s)
{
    if (build_name(a, s) < 0)
        return -1;
    if (build_machine(a, s) < 0)
        return -1;
    if (build_cpu(a, s) < 0)
        return -1;
    if (build_memory(a, s) < 0)
        return -1;
    if (build_firmware(a, s) < 0)
        return -1;
    if (build_disks(a, s) < 0)
        return -1;
    if (build_network(a, s) < 0)
        return -1;
    if (build_display(a, s) < 0)
        return -1;
    if (build_gpu(a, s) < 0)
        return -1;
    if (build_input(a, s) < 0)
        return -1;
    if (build_balloon(a, s) < 0)
        return -1;
    if (build_serial(a, s) < 0)
        return -1;
    if (build_qmp(a, s) < 0)
        return -1;
    if (build_process(a, s) < 0)
        return -1;
    return 0;
}

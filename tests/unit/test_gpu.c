/* GPU kinds on captured machines: what each plans, the exact sysfs writes of prepare
 * and release (with a fake kernel reacting to them), refusals, VF hand-out and
 * return, and a grant released from its JSON record as after a service restart. */
#include "host/gpu.h"
#include "host/hostw.h"
#include "host/sysfs.h"
#include "util/log.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "../sysfs/fixture.h"

static char err[2048];

#define UUID_A "5d3f8a2e-6b1c-4e7d-9a0f-2c4b6e8d1a3f"
#define UUID_B "0b7e2c94-3f1a-4d6b-8e25-9c0d7a4f1b68"

/* A request as the allocator makes it (a mediated device gets its UUID from it). */
static struct gpu_request request(enum gpu_kind kind, const char *unit)
{
    struct gpu_request r;
    memset(&r, 0, sizeof(r));
    r.kind = kind;
    snprintf(r.unit, sizeof(r.unit), "%s", unit ? unit : "");
    if (kind == GPU_KIND_MDEV)
        snprintf(r.mdev_uuid, sizeof(r.mdev_uuid), UUID_A);
    return r;
}

/* modprobe vfio-pci, as far as sysfs shows it */
static void load_vfio(const char *root)
{
    char path[PATH_MAX];
    fs_join(path, sizeof(path), root, "/sys/bus/pci/drivers/vfio-pci");
    fs_mkdir_p(path, 0755);
    fx_put(root, "/sys/bus/pci/drivers/vfio-pci/bind", "");
    fx_put(root, "/sys/bus/pci/drivers/vfio-pci/unbind", "");
}

static void passthrough_plans_the_whole_card(void **state)
{
    (void)state;
    struct gpu_grant g;
    struct gpu_request r = request(GPU_KIND_PASSTHROUGH, NULL);
    snprintf(r.rom_dir, sizeof(r.rom_dir), "/etc/qdesk/roms");
    assert_int_equal(gpu_plan(fx_tree("nvidia-passthrough"), &r, &g, err, sizeof(err)),
                     0);
    assert_int_equal(g.kind, GPU_KIND_PASSTHROUGH);
    assert_string_equal(g.romfile, ""); /* no ROM for this card: its own */
    assert_string_equal(g.unit, "pci:0000:01:00.0");
    assert_int_equal(g.n_fn, 2);
    assert_string_equal(g.fn[0].addr, "0000:01:00.0");
    assert_string_equal(g.fn[0].orig_driver, "nvidia");
    assert_string_equal(g.fn[1].addr, "0000:01:00.1");
    assert_string_equal(g.fn[1].orig_driver, "snd_hda_intel");
    assert_true(g.multifunction);
    assert_true(g.rombar);
    assert_false(g.x_vga);   /* UEFI guest */
    assert_true(g.hide_kvm); /* GeForce */
    assert_string_equal(g.hv_vendor_id, GPU_HV_VENDOR_ID);
    assert_string_equal(g.render_node, "");

    r.seabios = true;
    assert_int_equal(gpu_plan(fx_tree("nvidia-passthrough"), &r, &g, err, sizeof(err)),
                     0);
    assert_true(g.x_vga);

    /* a short address names the same card */
    r = request(GPU_KIND_PASSTHROUGH, "01:00.0");
    assert_int_equal(gpu_plan(fx_tree("nvidia-passthrough"), &r, &g, err, sizeof(err)),
                     0);
    assert_string_equal(g.unit, "pci:0000:01:00.0");
}

static void passthrough_refuses_a_group_that_is_not_viable(void **state)
{
    (void)state;
    struct gpu_grant g;
    struct gpu_request r = request(GPU_KIND_PASSTHROUGH, "pci:0000:04:00.0");
    r.allow_console = true; /* so the group is the only reason */
    assert_int_equal(gpu_plan(fx_tree("nvidia-passthrough"), &r, &g, err, sizeof(err)),
                     -1);
    assert_string_equal(
        err,
        "passthrough: 0000:04:00.0 (Advanced Micro Devices, Inc. [AMD/ATI] Lexa PRO "
        "[Radeon 540/540X/550/550X / RX 540X/550/550X]) cannot be given to a guest: its "
        "IOMMU group 3 is not viable: 0000:05:00.0 (Intel Corporation I210 Gigabit "
        "Network Connection) is bound to igb (every device in the group must go to the "
        "guest or be unbound from its host driver)");
    r = request(GPU_KIND_PASSTHROUGH, "0000:06:00.0");
    assert_int_equal(gpu_plan(fx_tree("nvidia-passthrough"), &r, &g, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "it is not a display controller"));
    r = request(GPU_KIND_PASSTHROUGH, "0000:09:00.0");
    assert_int_equal(gpu_plan(fx_tree("nvidia-passthrough"), &r, &g, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "passthrough: there is no PCI device 0000:09:00.0");
    r = request(GPU_KIND_PASSTHROUGH, "nonsense");
    assert_int_equal(gpu_plan(fx_tree("nvidia-passthrough"), &r, &g, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "passthrough: 'nonsense' is not a PCI address");
}

static void passthrough_refuses_the_host_console_unless_allowed(void **state)
{
    (void)state;
    struct gpu_grant g;
    struct gpu_request r = request(GPU_KIND_PASSTHROUGH, NULL);
    assert_int_equal(gpu_plan(fx_tree("gvtg"), &r, &g, err, sizeof(err)), -1);
    assert_string_equal(
        err, "passthrough: no GPU can be given to a guest: 0000:00:02.0 (Intel "
             "Corporation CoffeeLake-S GT2 [UHD Graphics 630]): it shows the "
             "host console (boot VGA, driven by i915); the operator may allow "
             "taking it");
    r.allow_console = true;
    r.seabios = true;
    snprintf(r.rom_dir, sizeof(r.rom_dir), "/etc/qdesk/roms");
    assert_int_equal(gpu_plan(fx_tree("gvtg"), &r, &g, err, sizeof(err)), 0);
    assert_string_equal(g.unit, "pci:0000:00:02.0");
    /* the operator dumped this iGPU's option ROM */
    assert_string_equal(g.romfile, "/etc/qdesk/roms/0000:00:02.0.rom");
    assert_true(g.rombar);
    assert_int_equal(g.n_fn, 1);
    assert_false(g.multifunction);
    assert_true(g.x_vga);
    assert_false(g.hide_kvm);

    /* an iGPU with its VFs enabled is not passed whole */
    r = request(GPU_KIND_PASSTHROUGH, "0000:00:02.0");
    r.allow_console = true;
    assert_int_equal(gpu_plan(fx_tree("intel-sriov"), &r, &g, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "its 7 SR-IOV VFs are enabled"));
    r = request(GPU_KIND_PASSTHROUGH, "0000:00:02.3");
    assert_int_equal(gpu_plan(fx_tree("intel-sriov"), &r, &g, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "it is a virtual function of 0000:00:02.0"));
}

static const char bind_nvidia[] =
    "echo 0000:01:00.0 > /sys/bus/pci/drivers/nvidia/unbind\n"
    "echo vfio-pci > /sys/bus/pci/devices/0000:01:00.0/driver_override\n"
    "echo 0000:01:00.0 > /sys/bus/pci/drivers_probe\n"
    "echo 0000:01:00.1 > /sys/bus/pci/drivers/snd_hda_intel/unbind\n"
    "echo vfio-pci > /sys/bus/pci/devices/0000:01:00.1/driver_override\n"
    "echo 0000:01:00.1 > /sys/bus/pci/drivers_probe\n";

static const char release_nvidia[] =
    "echo 0000:01:00.1 > /sys/bus/pci/drivers/vfio-pci/unbind\n"
    "echo > /sys/bus/pci/devices/0000:01:00.1/driver_override\n"
    "echo 0000:01:00.1 > /sys/bus/pci/drivers_probe\n"
    "echo 0000:01:00.0 > /sys/bus/pci/drivers/vfio-pci/unbind\n"
    "echo > /sys/bus/pci/devices/0000:01:00.0/driver_override\n"
    "echo 0000:01:00.0 > /sys/bus/pci/drivers_probe\n";

static void passthrough_binds_and_restores(void **state)
{
    (void)state;
    char *root = fx_copy("nvidia-passthrough");
    struct fx_kernel k;
    struct gpu_grant g;
    struct gpu_request r = request(GPU_KIND_PASSTHROUGH, "pci:0000:01:00.0");
    assert_int_equal(gpu_plan(root, &r, &g, err, sizeof(err)), 0);

    /* this host has not loaded vfio-pci: nothing is unbound */
    fx_kernel_start(&k);
    assert_int_equal(gpu_prepare(root, &g, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "passthrough: vfio-pci is not loaded: run 'modprobe vfio-pci' "
                        "(and 'qdesk host cmdline --gpu ADDR --apply' to load it at "
                        "every boot)");
    assert_string_equal(hostw_recorded(), "");
    assert_string_equal(fx_link(root, "/sys/bus/pci/devices/0000:01:00.0/driver"),
                        "nvidia");

    load_vfio(root);
    hostw_record(true);
    assert_int_equal(gpu_prepare(root, &g, err, sizeof(err)), 0);
    assert_string_equal(hostw_recorded(), bind_nvidia);
    assert_string_equal(fx_link(root, "/sys/bus/pci/devices/0000:01:00.0/driver"),
                        "vfio-pci");
    assert_string_equal(fx_link(root, "/sys/bus/pci/devices/0000:01:00.1/driver"),
                        "vfio-pci");
    assert_string_equal(g.fn[0].orig_driver, "nvidia");

    hostw_record(true);
    assert_int_equal(gpu_release(root, &g, err, sizeof(err)), 0);
    assert_string_equal(hostw_recorded(), release_nvidia);
    assert_string_equal(fx_link(root, "/sys/bus/pci/devices/0000:01:00.0/driver"),
                        "nvidia");
    assert_string_equal(fx_link(root, "/sys/bus/pci/devices/0000:01:00.1/driver"),
                        "snd_hda_intel");
    assert_string_equal(fx_get(root, "/sys/bus/pci/devices/0000:01:00.0/driver_override"),
                        "(null)");

    /* released twice (a crash between release and the store's note): nothing to do */
    hostw_record(true);
    assert_int_equal(gpu_release(root, &g, err, sizeof(err)), 0);
    assert_string_equal(hostw_recorded(), "");
    fx_kernel_stop();
    fx_drop(root);
}

static void release_after_a_restart_needs_only_the_record(void **state)
{
    (void)state;
    char *root = fx_copy("nvidia-passthrough");
    struct fx_kernel k;
    struct gpu_grant g, back;
    struct gpu_request r = request(GPU_KIND_PASSTHROUGH, NULL);
    load_vfio(root);
    assert_int_equal(gpu_plan(root, &r, &g, err, sizeof(err)), 0);
    fx_kernel_start(&k);
    assert_int_equal(gpu_prepare(root, &g, err, sizeof(err)), 0);

    /* the store keeps the grant as text; the service restarts and reads it back */
    json_t *j = gpu_grant_to_json(&g);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    memset(&g, 0xa5, sizeof(g));
    json_error_t jerr;
    j = json_loads(text, 0, &jerr);
    free(text);
    assert_int_equal(gpu_grant_from_json(j, &back, err, sizeof(err)), 0);
    json_decref(j);
    assert_string_equal(back.unit, "pci:0000:01:00.0");
    assert_true(back.hide_kvm);
    assert_true(back.multifunction);

    hostw_record(true);
    assert_int_equal(gpu_release(root, &back, err, sizeof(err)), 0);
    assert_string_equal(hostw_recorded(), release_nvidia);
    assert_string_equal(fx_link(root, "/sys/bus/pci/devices/0000:01:00.0/driver"),
                        "nvidia");
    fx_kernel_stop();
    fx_drop(root);
}

/* A second function that will not bind: the first goes back to its driver too. */
static void failed_bind_is_undone(void **state)
{
    (void)state;
    char *root = fx_copy("nvidia-passthrough");
    struct fx_kernel k;
    struct gpu_grant g;
    struct gpu_request r = request(GPU_KIND_PASSTHROUGH, NULL);
    load_vfio(root);
    assert_int_equal(gpu_plan(root, &r, &g, err, sizeof(err)), 0);
    /* vfio-pci will not take the audio function: its driver_override cannot be set */
    char path[PATH_MAX];
    fs_join(path, sizeof(path), root,
            "/sys/bus/pci/devices/0000:01:00.1/driver_override");
    unlink(path);
    fx_kernel_start(&k);
    assert_int_equal(gpu_prepare(root, &g, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "echo vfio-pci > /sys/bus/pci/devices/0000:01:00.1/"
                                "driver_override: No such file or directory"));
    assert_string_equal(
        hostw_recorded(),
        "echo 0000:01:00.0 > /sys/bus/pci/drivers/nvidia/unbind\n"
        "echo vfio-pci > /sys/bus/pci/devices/0000:01:00.0/driver_override\n"
        "echo 0000:01:00.0 > /sys/bus/pci/drivers_probe\n"
        "echo 0000:01:00.1 > /sys/bus/pci/drivers/snd_hda_intel/unbind\n"
        "echo vfio-pci > /sys/bus/pci/devices/0000:01:00.1/driver_override\n"
        "echo 0000:01:00.1 > /sys/bus/pci/drivers_probe\n"
        "echo 0000:01:00.0 > /sys/bus/pci/drivers/vfio-pci/unbind\n"
        "echo > /sys/bus/pci/devices/0000:01:00.0/driver_override\n"
        "echo 0000:01:00.0 > /sys/bus/pci/drivers_probe\n");
    assert_string_equal(fx_link(root, "/sys/bus/pci/devices/0000:01:00.0/driver"),
                        "nvidia");
    assert_string_equal(fx_link(root, "/sys/bus/pci/devices/0000:01:00.1/driver"),
                        "snd_hda_intel");
    fx_kernel_stop();
    fx_drop(root);
}

static void vf_binds_one_and_returns_it(void **state)
{
    (void)state;
    char *root = fx_copy("intel-sriov");
    struct fx_kernel k;
    struct gpu_grant g;
    struct gpu_request r = request(GPU_KIND_VF, NULL);
    assert_int_equal(gpu_plan(root, &r, &g, err, sizeof(err)), 0);
    assert_string_equal(g.unit, "vf:0000:00:02.1");
    assert_string_equal(g.pf, "0000:00:02.0");
    assert_int_equal(g.n_fn, 1);
    assert_string_equal(g.fn[0].addr, "0000:00:02.1");
    assert_false(g.rombar);
    assert_false(g.x_vga);
    assert_false(g.multifunction);
    assert_int_equal(g.vfs_create, 0);

    fx_kernel_start(&k);
    assert_int_equal(gpu_prepare(root, &g, err, sizeof(err)), 0);
    assert_string_equal(
        hostw_recorded(),
        "echo vfio-pci > /sys/bus/pci/devices/0000:00:02.1/driver_override\n"
        "echo 0000:00:02.1 > /sys/bus/pci/drivers_probe\n"
        "echo 1 > /sys/bus/pci/devices/0000:00:02.1/reset\n");
    assert_string_equal(fx_link(root, "/sys/bus/pci/devices/0000:00:02.1/driver"),
                        "vfio-pci");

    /* the QEMU user gets the group node */
    hostw_record(true);
    assert_int_equal(gpu_grant_chown(root, &g, getuid(), getgid(), err, sizeof(err)), 0);
    char line[64];
    snprintf(line, sizeof(line), "chown %u:%u /dev/vfio/8\n", (unsigned)getuid(),
             (unsigned)getgid());
    assert_string_equal(hostw_recorded(), line);

    hostw_record(true);
    assert_int_equal(gpu_release(root, &g, err, sizeof(err)), 0);
    assert_string_equal(hostw_recorded(),
                        "echo 0000:00:02.1 > /sys/bus/pci/drivers/vfio-pci/unbind\n"
                        "echo > /sys/bus/pci/devices/0000:00:02.1/driver_override\n");
    assert_string_equal(fx_link(root, "/sys/bus/pci/devices/0000:00:02.1/driver"), "");
    /* the PF keeps driving the host's display */
    assert_string_equal(fx_link(root, "/sys/bus/pci/devices/0000:00:02.0/driver"),
                        "i915");
    fx_kernel_stop();
    fx_drop(root);
}

static void seven_vfs_are_handed_out_once_each(void **state)
{
    (void)state;
    char *root = fx_copy("intel-sriov");
    struct fx_kernel k;
    struct gpu_grant g[8];
    struct gpu_request r = request(GPU_KIND_VF, NULL);
    fx_kernel_start(&k);
    for (int i = 0; i < 7; i++) {
        char want[32];
        assert_int_equal(gpu_plan(root, &r, &g[i], err, sizeof(err)), 0);
        snprintf(want, sizeof(want), "vf:0000:00:02.%d", i + 1);
        assert_string_equal(g[i].unit, want);
        assert_int_equal(gpu_prepare(root, &g[i], err, sizeof(err)), 0);
    }
    assert_int_equal(gpu_plan(root, &r, &g[7], err, sizeof(err)), -EBUSY);
    assert_string_equal(err,
                        "vf: no free VF: 0000:00:02.0 (Intel Corporation Raptor Lake-P "
                        "[Iris Xe Graphics]) has 7 VFs, every one bound to vfio-pci or "
                        "a host driver");
    /* one comes back and is the next one handed out */
    assert_int_equal(gpu_release(root, &g[3], err, sizeof(err)), 0);
    assert_int_equal(gpu_plan(root, &r, &g[7], err, sizeof(err)), 0);
    assert_string_equal(g[7].unit, "vf:0000:00:02.4");
    for (int i = 0; i < 7; i++)
        assert_int_equal(gpu_release(root, &g[i], err, sizeof(err)), 0);
    for (int i = 1; i <= 7; i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/0000:00:02.%d/driver", i);
        assert_string_equal(fx_link(root, rel), "");
    }
    /* the allocator may name the VF it chose */
    r = request(GPU_KIND_VF, "vf:0000:00:02.6");
    assert_int_equal(gpu_plan(root, &r, &g[0], err, sizeof(err)), 0);
    assert_string_equal(g[0].fn[0].addr, "0000:00:02.6");
    r = request(GPU_KIND_VF, "0000:00:14.0");
    assert_int_equal(gpu_plan(root, &r, &g[0], err, sizeof(err)), -1);
    assert_string_equal(err,
                        "vf: 0000:00:14.0 is not a virtual function of an SR-IOV GPU");
    fx_kernel_stop();
    fx_drop(root);
}

#define PF "/sys/bus/pci/devices/0000:00:02.0"

static void vfs_are_created_with_autoprobe_off(void **state)
{
    (void)state;
    char *root = fx_copy("intel-sriov");
    struct fx_kernel k;
    struct gpu_grant g;
    fx_kernel_start(&k);
    /* the operator turns the VFs off, and i915's autoprobe back on (its default) */
    assert_int_equal(hostw_write(root, PF "/sriov_numvfs", "0", err, sizeof(err)), 0);
    assert_int_equal(
        hostw_write(root, PF "/sriov_drivers_autoprobe", "1", err, sizeof(err)), 0);
    assert_false(sysfs_exists(root, PF "/virtfn0"));
    assert_false(sysfs_exists(root, "/sys/bus/pci/devices/0000:00:02.1"));

    /* the kernel hands new VFs to i915 while autoprobe is on, and refuses another
     * count while VFs exist */
    assert_int_equal(hostw_write(root, PF "/sriov_numvfs", "2", err, sizeof(err)), 0);
    assert_string_equal(fx_link(root, "/sys/bus/pci/devices/0000:00:02.2/driver"),
                        "i915");
    assert_int_equal(hostw_write(root, PF "/sriov_numvfs", "3", err, sizeof(err)),
                     -EBUSY);
    assert_string_equal(fx_get(root, PF "/sriov_numvfs"), "2");
    assert_int_equal(hostw_write(root, PF "/sriov_numvfs", "0", err, sizeof(err)), 0);
    assert_false(sysfs_exists(root, "/sys/bus/pci/devices/0000:00:02.1"));

    /* a PF without VFs: qdesk plans the first VF it will make */
    struct gpu_request r = request(GPU_KIND_VF, NULL);
    assert_int_equal(gpu_plan(root, &r, &g, err, sizeof(err)), 0);
    assert_int_equal(g.vfs_create, 7);
    assert_string_equal(g.unit, "vf:0000:00:02.1");
    assert_string_equal(g.fn[0].orig_driver, "");
    hostw_record(true);
    assert_int_equal(gpu_prepare(root, &g, err, sizeof(err)), 0);
    assert_string_equal(
        hostw_recorded(),
        "echo 0 > /sys/bus/pci/devices/0000:00:02.0/sriov_drivers_autoprobe\n"
        "echo 7 > /sys/bus/pci/devices/0000:00:02.0/sriov_numvfs\n"
        "echo vfio-pci > /sys/bus/pci/devices/0000:00:02.1/driver_override\n"
        "echo 0000:00:02.1 > /sys/bus/pci/drivers_probe\n"
        "echo 1 > /sys/bus/pci/devices/0000:00:02.1/reset\n");
    /* seven VFs; the guest's on vfio-pci, and i915 took none of the others */
    assert_string_equal(fx_get(root, PF "/sriov_numvfs"), "7");
    assert_string_equal(fx_link(root, "/sys/bus/pci/devices/0000:00:02.1/driver"),
                        "vfio-pci");
    for (int i = 2; i <= 7; i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/0000:00:02.%d/driver", i);
        assert_string_equal(fx_link(root, rel), "");
    }
    assert_false(sysfs_exists(root, "/sys/bus/pci/devices/0000:00:03.0"));

    /* enabling again is a no-op; another count would destroy VFs in use */
    hostw_record(true);
    assert_int_equal(gpu_vf_enable(root, "0000:00:02.0", 7, err, sizeof(err)), 0);
    assert_string_equal(hostw_recorded(), "");
    assert_int_equal(gpu_vf_enable(root, "0000:00:02.0", 3, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "already has 7 VFs"));
    assert_int_equal(gpu_vf_enable(root, "0000:00:02.0", 8, err, sizeof(err)), -1);
    assert_string_equal(err, "vf: 0000:00:02.0 supports at most 7 VFs, not 8");
    assert_int_equal(gpu_vf_enable(root, "0000:00:14.0", 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot make SR-IOV VFs"));

    /* release gives the VF back unbound; the VFs stay for the next guest */
    assert_int_equal(gpu_release(root, &g, err, sizeof(err)), 0);
    assert_string_equal(fx_link(root, "/sys/bus/pci/devices/0000:00:02.1/driver"), "");
    assert_string_equal(fx_get(root, PF "/sriov_numvfs"), "7");

    /* before the VFs exist their addresses come from sriov_offset and sriov_stride */
    struct pcidev pf;
    char addr[PCIDEV_ADDR_SIZE];
    assert_int_equal(hostw_write(root, PF "/sriov_numvfs", "0", err, sizeof(err)), 0);
    assert_int_equal(pcidev_read(root, "0000:00:02.0", &pf), 0);
    assert_int_equal(pf.sriov_num, 0);
    assert_int_equal(gpu_vf_addr(root, &pf, 6, addr, sizeof(addr)), 0);
    assert_string_equal(addr, "0000:00:02.7");
    assert_int_equal(gpu_vf_addr(root, &pf, 7, addr, sizeof(addr)), -1);
    fx_kernel_stop();
    fx_drop(root);
}

static void mdev_is_created_and_removed(void **state)
{
    (void)state;
    char *root = fx_copy("gvtg");
    struct fx_kernel k;
    struct gpu_grant g;
    struct gpu_request r = request(GPU_KIND_MDEV, NULL);
    snprintf(r.mdev_type, sizeof(r.mdev_type), "GVTg_V5_8");
    assert_int_equal(gpu_plan(root, &r, &g, err, sizeof(err)), 0);
    assert_string_equal(g.unit, "mdev:0000:00:02.0/i915-GVTg_V5_8");
    assert_string_equal(g.mdev_parent, "0000:00:02.0");
    assert_string_equal(g.mdev_type, "i915-GVTg_V5_8");
    assert_string_equal(g.mdev_uuid, UUID_A);
    char want[256];
    snprintf(want, sizeof(want), "/sys/bus/mdev/devices/%s", g.mdev_uuid);
    assert_string_equal(g.mdev_sysfsdev, want);
    assert_int_equal(g.n_fn, 0);

    fx_kernel_start(&k);
    assert_int_equal(gpu_prepare(root, &g, err, sizeof(err)), 0);
    snprintf(want, sizeof(want),
             "echo %s > /sys/class/mdev_bus/0000:00:02.0/"
             "mdev_supported_types/i915-GVTg_V5_8/create\n",
             g.mdev_uuid);
    assert_string_equal(hostw_recorded(), want);
    const char *avail = "/sys/class/mdev_bus/0000:00:02.0/mdev_supported_types/"
                        "i915-GVTg_V5_8/available_instances";
    assert_string_equal(fx_get(root, avail), "4");

    hostw_record(true);
    assert_int_equal(gpu_grant_chown(root, &g, getuid(), getgid(), err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "chown %u:%u /dev/vfio/100\n", (unsigned)getuid(),
             (unsigned)getgid());
    assert_string_equal(hostw_recorded(), want);

    hostw_record(true);
    assert_int_equal(gpu_release(root, &g, err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "echo 1 > /sys/bus/mdev/devices/%s/remove\n",
             g.mdev_uuid);
    assert_string_equal(hostw_recorded(), want);
    assert_string_equal(fx_get(root, avail), "5");
    hostw_record(true);
    assert_int_equal(gpu_release(root, &g, err, sizeof(err)),
                     0); /* gone: nothing to do */
    assert_string_equal(hostw_recorded(), "");

    /* two creations get two devices, and the type is full */
    struct gpu_grant a, b;
    r = request(GPU_KIND_MDEV, "mdev:0000:00:02.0/i915-GVTg_V5_4");
    assert_int_equal(gpu_plan(root, &r, &a, err, sizeof(err)), 0);
    assert_int_equal(gpu_prepare(root, &a, err, sizeof(err)), 0);
    snprintf(r.mdev_uuid, sizeof(r.mdev_uuid), UUID_B);
    assert_int_equal(gpu_plan(root, &r, &b, err, sizeof(err)), 0);
    assert_int_equal(gpu_prepare(root, &b, err, sizeof(err)), 0);
    assert_int_equal(gpu_plan(root, &r, &g, err, sizeof(err)), -EBUSY);
    assert_string_equal(err, "mdev: i915-GVTg_V5_4 on 0000:00:02.0 has no free instance");
    assert_string_equal(g.unit, "mdev:0000:00:02.0/i915-GVTg_V5_4");
    /* a grant planned while one was left loses the race to the kernel's count */
    hostw_record(true);
    g = b;
    snprintf(g.mdev_uuid, sizeof(g.mdev_uuid), "%s",
             "7a1e4c2b-9d3f-4b8a-8c6e-1f2a3b4c5d6e");
    snprintf(g.mdev_sysfsdev, sizeof(g.mdev_sysfsdev), "/sys/bus/mdev/devices/%s",
             g.mdev_uuid);
    assert_int_equal(gpu_prepare(root, &g, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "i915-GVTg_V5_4/create: Too many users"));
    assert_false(sysfs_exists(root, "%s", g.mdev_sysfsdev));
    assert_int_equal(gpu_release(root, &a, err, sizeof(err)), 0);
    assert_int_equal(gpu_release(root, &b, err, sizeof(err)), 0);
    fx_kernel_stop();
    fx_drop(root);
}

static void mdev_refusals_name_what_exists(void **state)
{
    (void)state;
    struct gpu_grant g;
    struct gpu_request r = request(GPU_KIND_MDEV, NULL);
    snprintf(r.mdev_type, sizeof(r.mdev_type), "i915-GVTg_V5_1");
    assert_int_equal(gpu_plan(fx_tree("gvtg"), &r, &g, err, sizeof(err)), -1);
    assert_string_equal(err, "mdev: no type i915-GVTg_V5_1; this host has i915-GVTg_V5_4 "
                             "(2 free), i915-GVTg_V5_8 (5 free)");
    r.mdev_type[0] = 0;
    assert_int_equal(gpu_plan(fx_tree("intel-sriov"), &r, &g, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "mdev: no device on this host makes mediated devices"));
    r = request(GPU_KIND_MDEV, "mdev:junk");
    assert_int_equal(gpu_plan(fx_tree("gvtg"), &r, &g, err, sizeof(err)), -1);
    assert_string_equal(err, "mdev: 'mdev:junk' is not PARENT/TYPE");
}

static void virgl_finds_a_render_node_or_warns(void **state)
{
    (void)state;
    struct gpu_grant g;
    struct gpu_request r = request(GPU_KIND_VIRGL, NULL);
    assert_int_equal(gpu_plan(fx_tree("intel-sriov"), &r, &g, err, sizeof(err)), 0);
    assert_string_equal(g.render_node, "/dev/dri/renderD128");
    assert_string_equal(g.unit, "render:renderD128");
    assert_string_equal(g.warning, "");
    r = request(GPU_KIND_VIRGL, "render:renderD129");
    assert_int_equal(gpu_plan(fx_tree("nvidia-passthrough"), &r, &g, err, sizeof(err)),
                     0);
    assert_string_equal(g.render_node, "/dev/dri/renderD129");
    r = request(GPU_KIND_VIRGL, "renderD130");
    assert_int_equal(gpu_plan(fx_tree("nvidia-passthrough"), &r, &g, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "virgl: there is no render node /dev/dri/renderD130");

    /* no render node: plain virtio-vga, and the user is told */
    r = request(GPU_KIND_VIRGL, NULL);
    assert_int_equal(gpu_plan(fx_tree("usb"), &r, &g, err, sizeof(err)), 0);
    assert_int_equal(g.kind, GPU_KIND_VIRGL);
    assert_string_equal(g.render_node, "");
    assert_string_equal(g.unit, "");
    assert_non_null(strstr(g.warning, "no 3D: this host has no GPU render node"));
    assert_int_equal(gpu_prepare(fx_tree("usb"), &g, err, sizeof(err)), 0);
    assert_int_equal(gpu_release(fx_tree("usb"), &g, err, sizeof(err)), 0);

    r = request(GPU_KIND_NONE, NULL);
    assert_int_equal(gpu_plan(fx_tree("usb"), &r, &g, err, sizeof(err)), 0);
    assert_int_equal(g.kind, GPU_KIND_NONE);
    assert_int_equal(gpu_prepare(fx_tree("usb"), &g, err, sizeof(err)), 0);
}

static void kinds_share_one_shape(void **state)
{
    (void)state;
    enum gpu_kind k;
    char type[64];
    for (int i = 0; i < GPU_KINDS; i++) {
        const struct gpu_ops *ops = gpu_ops_for((enum gpu_kind)i);
        assert_non_null(ops);
        assert_string_equal(ops->name, gpu_kind_name((enum gpu_kind)i));
        assert_non_null(ops->plan);
        /* the kinds that change the host undo it; none and virgl change nothing */
        bool changes =
            i == GPU_KIND_VF || i == GPU_KIND_PASSTHROUGH || i == GPU_KIND_MDEV;
        assert_true((ops->prepare != NULL) == changes);
        assert_true((ops->release != NULL) == changes);
        if (!changes) {
            struct gpu_grant g = {.kind = (enum gpu_kind)i};
            char why[64];
            assert_int_equal(gpu_prepare("/nonexistent", &g, why, sizeof(why)), 0);
            assert_int_equal(gpu_release("/nonexistent", &g, why, sizeof(why)), 0);
        }
        assert_int_equal(gpu_kind_parse(ops->name, &k, type, sizeof(type)), 0);
        assert_int_equal(k, i);
    }
    assert_null(gpu_ops_for(GPU_KINDS));
    assert_int_equal(gpu_kind_parse("mdev:i915-GVTg_V5_4", &k, type, sizeof(type)), 0);
    assert_int_equal(k, GPU_KIND_MDEV);
    assert_string_equal(type, "i915-GVTg_V5_4");
    assert_int_equal(gpu_kind_parse("vgpu", &k, type, sizeof(type)), -1);
    /* a kind name alone, as spec_gpu_parse() wants it */
    assert_int_equal(gpu_kind_parse("mdev", &k, NULL, 0), 0);
    assert_int_equal(k, GPU_KIND_MDEV);
    assert_int_equal(gpu_kind_parse("mdev:i915-GVTg_V5_4", &k, NULL, 0), -1);
    assert_string_equal(gpu_kind_name(GPU_KINDS), "?");
}

static void consumer_nvidia_rule(void **state)
{
    (void)state;
    struct pcidev d;
    memset(&d, 0, sizeof(d));
    d.vendor = 0x10de;
    d.class_code = 0x030000;
    snprintf(d.device_name, sizeof(d.device_name), "GA104 [GeForce RTX 3070]");
    assert_true(gpu_nvidia_consumer(&d));
    snprintf(d.device_name, sizeof(d.device_name), "GP107GL [Quadro P1000]");
    assert_false(gpu_nvidia_consumer(&d));
    snprintf(d.device_name, sizeof(d.device_name), "GA102GL [RTX A6000]");
    assert_false(gpu_nvidia_consumer(&d));
    snprintf(d.device_name, sizeof(d.device_name), "GA100 [A100 PCIe 40GB]");
    d.class_code = 0x030200; /* 3D controller: datacenter */
    assert_false(gpu_nvidia_consumer(&d));
    d.vendor = 0x1002;
    d.class_code = 0x030000;
    assert_false(gpu_nvidia_consumer(&d));
}

static void grant_json_is_checked(void **state)
{
    (void)state;
    struct gpu_grant g;
    static const struct {
        const char *json, *err;
    } bad[] = {
        {"{\"kind\":\"passthrough\",\"functions\":[{\"address\":\"../../../etc\","
         "\"driver\":\"\"}]}",
         "gpu grant: functions[0].address '../../../etc' is not a PCI address"},
        {"{\"kind\":\"passthrough\",\"functions\":[{\"address\":\"0000:01:00.0\","
         "\"driver\":\"../x\"}]}",
         "gpu grant: functions[0].driver '../x' is not a driver name"},
        {"{\"kind\":\"mdev\",\"mdev\":{\"parent\":\"0000:00:02.0\",\"type\":\"t\","
         "\"uuid\":\"x/../../y\"}}",
         "gpu grant: mdev.uuid 'x/../../y' is not a UUID"},
        {"{\"kind\":\"virgl\",\"render_node\":\"/etc/passwd\"}",
         "gpu grant: render_node '/etc/passwd' is not a render node"},
        {"{\"kind\":\"bogus\"}", "gpu grant: kind 'bogus' is not a GPU kind"},
        {"[]", "gpu grant: not a JSON object"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_error_t jerr;
        json_t *j = json_loads(bad[i].json, 0, &jerr);
        assert_non_null(j);
        assert_int_equal(gpu_grant_from_json(j, &g, err, sizeof(err)), -1);
        assert_string_equal(err, bad[i].err);
        json_decref(j);
    }
    /* every kind survives the trip */
    struct gpu_request r = request(GPU_KIND_MDEV, NULL);
    struct gpu_grant a, b;
    assert_int_equal(gpu_plan(fx_tree("gvtg"), &r, &a, err, sizeof(err)), 0);
    json_t *j = gpu_grant_to_json(&a);
    assert_int_equal(gpu_grant_from_json(j, &b, err, sizeof(err)), 0);
    json_decref(j);
    assert_memory_equal(&a, &b, sizeof(a));
    r = request(GPU_KIND_VF, NULL);
    assert_int_equal(gpu_plan(fx_tree("intel-sriov"), &r, &a, err, sizeof(err)), 0);
    j = gpu_grant_to_json(&a);
    assert_int_equal(gpu_grant_from_json(j, &b, err, sizeof(err)), 0);
    json_decref(j);
    assert_memory_equal(&a, &b, sizeof(a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(passthrough_plans_the_whole_card),
        cmocka_unit_test(passthrough_refuses_a_group_that_is_not_viable),
        cmocka_unit_test(passthrough_refuses_the_host_console_unless_allowed),
        cmocka_unit_test(passthrough_binds_and_restores),
        cmocka_unit_test(release_after_a_restart_needs_only_the_record),
        cmocka_unit_test(failed_bind_is_undone),
        cmocka_unit_test(vf_binds_one_and_returns_it),
        cmocka_unit_test(seven_vfs_are_handed_out_once_each),
        cmocka_unit_test(vfs_are_created_with_autoprobe_off),
        cmocka_unit_test(mdev_is_created_and_removed),
        cmocka_unit_test(mdev_refusals_name_what_exists),
        cmocka_unit_test(virgl_finds_a_render_node_or_warns),
        cmocka_unit_test(kinds_share_one_shape),
        cmocka_unit_test(consumer_nvidia_rule),
        cmocka_unit_test(grant_json_is_checked),
    };
    return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}

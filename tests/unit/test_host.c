/* `qdesk host ...` as a user runs it, on captured machines: the text and JSON reports,
 * cmdline with and without --apply, and bad usage. */
#include "host/host.h"
#include "util/log.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../sysfs/fixture.h"

static char *out_text, *err_text;

/* Runs "qdesk host ARGS..." on root; the output lands in out_text and err_text. */
static int host(const char *root, ...)
{
    char *argv[16] = {"host"};
    int argc = 1;
    va_list ap;
    va_start(ap, root);
    for (char *a; (a = va_arg(ap, char *)) && argc < 15;)
        argv[argc++] = a;
    va_end(ap);
    struct config c;
    config_defaults(&c);
    snprintf(c.sysroot, sizeof(c.sysroot), "%s", root);
    free(out_text);
    free(err_text);
    size_t n;
    FILE *out = open_memstream(&out_text, &n), *errf = open_memstream(&err_text, &n);
    int rc = host_command(&c, argc, argv, out, errf);
    fclose(out);
    fclose(errf);
    fx_ids(); /* --pci-ids may have changed them */
    return rc;
}

static json_t *parsed(void)
{
    json_error_t e;
    json_t *j = json_loads(out_text, 0, &e);
    if (!j)
        fail_msg("not JSON (%s): %s", e.text, out_text);
    return j;
}

static void gpus_report(void **state)
{
    (void)state;
    assert_int_equal(host(fx_tree("nvidia-passthrough"), "gpus", NULL), 0);
    assert_string_equal(
        out_text,
        "0000:01:00.0 NVIDIA Corporation GA104 [GeForce RTX 3070] [10de:2484]\n"
        "  driver nvidia, IOMMU group 2\n"
        "  passthrough: yes, with 0000:01:00.1 (KVM hidden from the guest: a consumer "
        "NVIDIA card)\n"
        "  virgl: /dev/dri/renderD129\n"
        "0000:04:00.0 Advanced Micro Devices, Inc. [AMD/ATI] Lexa PRO "
        "[Radeon 540/540X/550/550X / RX 540X/550/550X] [1002:699f]\n"
        "  driver amdgpu, IOMMU group 3, boot VGA (shows the host console)\n"
        "  passthrough: no: its IOMMU group 3 is not viable: 0000:05:00.0 (Intel "
        "Corporation "
        "I210 Gigabit Network Connection) is bound to igb (every device in the group "
        "must go "
        "to the guest or be unbound from its host driver)\n"
        "  virgl: /dev/dri/renderD128\n");
    assert_string_equal(err_text, "");

    assert_int_equal(host(fx_tree("intel-sriov"), "gpus", "--json", NULL), 0);
    json_t *j = parsed(), *gpus = json_object_get(j, "gpus");
    assert_int_equal(json_array_size(gpus), 1); /* VFs are listed under their PF */
    json_t *g = json_array_get(gpus, 0);
    assert_string_equal(json_string_value(json_object_get(g, "address")), "0000:00:02.0");
    assert_true(json_is_true(json_object_get(g, "console")));
    json_t *sriov = json_object_get(g, "sriov");
    assert_int_equal(json_integer_value(json_object_get(sriov, "total")), 7);
    assert_true(json_is_false(json_object_get(sriov, "autoprobe")));
    json_t *vfs = json_object_get(sriov, "vfs");
    assert_int_equal(json_array_size(vfs), 7);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(vfs, 6), "address")),
        "0000:00:02.7");
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(vfs, 6), "iommu_group")), 14);
    assert_true(
        json_is_false(json_object_get(json_object_get(g, "passthrough"), "possible")));
    assert_string_equal(json_string_value(json_object_get(g, "render_node")),
                        "/dev/dri/renderD128");
    json_decref(j);

    assert_int_equal(host(fx_tree("gvtg"), "gpus", "--json", NULL), 0);
    j = parsed();
    g = json_array_get(json_object_get(j, "gpus"), 0);
    json_t *types = json_object_get(g, "mdev_types");
    assert_int_equal(json_array_size(types), 2);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(types, 1), "available")), 5);
    assert_true(json_is_null(json_object_get(g, "sriov")));
    json_decref(j);

    assert_int_equal(host(fx_tree("usb"), "gpus", NULL), 0);
    assert_string_equal(out_text, "no GPU (PCI display controller) on this host\n");
}

static void iommu_report(void **state)
{
    (void)state;
    assert_int_equal(host(fx_tree("nvidia-passthrough"), "iommu", NULL), 0);
    assert_non_null(strstr(
        out_text, "IOMMU group 2: viable\n"
                  "  0000:00:01.0 Host bridge [0600]: Advanced Micro Devices, Inc. "
                  "[AMD] Starship/Matisse PCIe Dummy Host Bridge [1022:1482] (no "
                  "driver)\n"
                  "  0000:00:01.1 PCI bridge [0604]: Advanced Micro Devices, Inc. "
                  "[AMD] Starship/Matisse GPP Bridge [1022:1483] (driver pcieport)\n"
                  "  0000:01:00.0 VGA compatible controller [0300]: NVIDIA "
                  "Corporation GA104 [GeForce RTX 3070] [10de:2484] (driver "
                  "nvidia)\n"
                  "  0000:01:00.1 Audio device [0403]: NVIDIA Corporation GA104 High "
                  "Definition Audio Controller [10de:228b] (driver snd_hda_intel)\n"
                  "IOMMU group 3: not viable: 0000:05:00.0 (Intel Corporation I210 "
                  "Gigabit Network Connection) is bound to igb\n"));
    /* an NVMe alone in its group does not block itself */
    assert_non_null(strstr(out_text, "IOMMU group 5: viable, no GPU (isolated; on the "
                                     "host now: 0000:06:00.0 nvme)\n"));

    assert_int_equal(host(fx_tree("nvidia-passthrough"), "iommu", "--json", NULL), 0);
    json_t *j = parsed(), *groups = json_object_get(j, "groups");
    assert_true(json_is_true(json_object_get(j, "iommu")));
    assert_int_equal(json_array_size(groups), 7);
    json_t *g3 = json_array_get(groups, 3);
    assert_int_equal(json_integer_value(json_object_get(g3, "group")), 3);
    assert_true(json_is_false(json_object_get(g3, "viable")));
    assert_true(json_is_true(json_object_get(g3, "gpu")));
    json_t *g5 = json_array_get(groups, 5);
    assert_true(json_is_true(json_object_get(g5, "viable")));
    assert_true(json_is_false(json_object_get(g5, "gpu")));
    assert_string_equal(json_string_value(json_object_get(g5, "host_drivers")),
                        "0000:06:00.0 nvme");
    json_t *blockers = json_object_get(g3, "blockers");
    assert_int_equal(json_array_size(blockers), 1);
    assert_string_equal(json_string_value(json_array_get(blockers, 0)), "0000:05:00.0");
    /* the root port, the switch and its two ports, the Radeon and its audio, the
     * NIC */
    assert_int_equal(json_array_size(json_object_get(g3, "devices")), 7);
    json_t *nic = json_array_get(json_object_get(g3, "devices"), 6);
    assert_string_equal(json_string_value(json_object_get(nic, "driver")), "igb");
    assert_string_equal(json_string_value(json_object_get(nic, "class_name")),
                        "Ethernet controller");
    assert_string_equal(json_string_value(json_object_get(nic, "subsystem")),
                        "8086:0001");
    json_decref(j);

    /* the IOMMU is off: say so, and fail */
    assert_int_equal(host(fx_tree("usb"), "iommu", NULL), 1);
    assert_string_equal(out_text,
                        "no IOMMU groups: the IOMMU is off (qdesk host check says "
                        "how to turn it on)\n");
}

static void usb_report(void **state)
{
    (void)state;
    assert_int_equal(host(fx_tree("usb"), "usb", NULL), 0);
    assert_string_equal(
        out_text,
        "usb1     1d6b:0002  480M   Hub                     Linux Foundation 2.0 root "
        "hub  "
        "(not assignable: a root hub (the host controller's own ports))\n"
        "1-1      05e3:0610  480M   Hub                     Genesys Logic, Inc. Hub  "
        "(not "
        "assignable: a hub; give the devices on it instead)\n"
        "1-1.1    046d:c31c  1.5M   Human Interface Device  Logitech, Inc. Keyboard "
        "K120\n"
        "1-1.2    0781:5567  480M   Mass Storage            SanDisk Corp. Cruzer Blade\n"
        "1-2      046d:0825  480M   Video                   Logitech, Inc. Webcam C270\n"
        "1-3      0781:5567  480M   Mass Storage            SanDisk Corp. Cruzer Blade\n"
        "usb2     1d6b:0003  10G    Hub                     Linux Foundation 3.0 root "
        "hub  "
        "(not assignable: a root hub (the host controller's own ports))\n");
    assert_int_equal(host(fx_tree("usb"), "usb", "--json", NULL), 0);
    json_t *j = parsed(), *devs = json_object_get(j, "devices");
    assert_int_equal(json_array_size(devs), 7);
    json_t *kb = json_array_get(devs, 2);
    assert_string_equal(json_string_value(json_object_get(kb, "port")), "1-1.1");
    assert_true(json_is_true(json_object_get(kb, "assignable")));
    assert_true(json_real_value(json_object_get(kb, "speed_mbps")) == 1.5);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(devs, 3), "speed_mbps")), 480);
    assert_string_equal(json_string_value(json_object_get(kb, "class_name")),
                        "Human Interface Device");
    json_decref(j);
    assert_int_equal(host(fx_tree("gvtg"), "usb", NULL), 0);
    assert_string_equal(out_text, "no USB devices on this host\n");
}

static const char amd_cmdline[] =
    "# kernel command line (GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub):\n"
    "amd_iommu=on iommu=pt vfio-pci.ids=10de:2484,10de:228b kvm.ignore_msrs=1\n"
    "\n"
    "# /etc/modules-load.d/vfio.conf\n"
    "vfio\n"
    "vfio_iommu_type1\n"
    "vfio_pci\n"
    "\n"
    "# /etc/modprobe.d/vfio.conf\n"
    "softdep nvidia pre: vfio-pci\n"
    "softdep nouveau pre: vfio-pci\n"
    "softdep snd_hda_intel pre: vfio-pci\n"
    "\n"
    "# /etc/initramfs-tools/modules (vfio-pci takes the card before its driver can)\n"
    "vfio\n"
    "vfio_iommu_type1\n"
    "vfio_pci\n"
    "\n"
    "# then (qdesk host cmdline --gpu ... --apply writes the files above):\n"
    "update-initramfs -u\n"
    "update-grub\n"
    "reboot\n";

static void cmdline_report_and_apply(void **state)
{
    (void)state;
    assert_int_equal(
        host(fx_tree("nvidia-passthrough"), "cmdline", "--gpu", "01:00.0", NULL), 0);
    assert_string_equal(out_text, amd_cmdline);
    assert_int_equal(host(fx_tree("nvidia-passthrough"), "cmdline", "--gpu=0000:01:00.0",
                          "--json", NULL),
                     0);
    json_t *j = parsed();
    assert_string_equal(json_string_value(json_object_get(j, "cmdline")),
                        "amd_iommu=on iommu=pt vfio-pci.ids=10de:2484,10de:228b "
                        "kvm.ignore_msrs=1");
    json_decref(j);
    /* --gpu A B: several devices */
    assert_int_equal(host(fx_tree("intel-sriov"), "cmdline", "--gpu", "0000:00:02.1",
                          "0000:00:02.2", NULL),
                     0);
    assert_non_null(strstr(out_text, "\nintel_iommu=on iommu=pt kvm.ignore_msrs=1 "
                                     "i915.enable_guc=3 i915.max_vfs=7\n"));

    char *root = fx_copy("nvidia-passthrough");
    log_set_level(LOG_ERROR);
    assert_int_equal(host(root, "cmdline", "--gpu", "01:00.0", "--apply", NULL), 0);
    char want[PATH_MAX];
    snprintf(want, sizeof(want),
             "(below the sysroot %s)\n/etc/default/grub: "
             "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet amd_iommu=on iommu=pt "
             "vfio-pci.ids=10de:2484,10de:228b kvm.ignore_msrs=1\"",
             root);
    assert_memory_equal(out_text, want, strlen(want));
    assert_non_null(strstr(out_text, "now run update-initramfs -u and update-grub, then "
                                     "reboot\n"));
    assert_int_equal(host(root, "cmdline", "--gpu", "01:00.0", "--apply", NULL), 0);
    assert_non_null(strstr(out_text, "nothing changed"));
    fx_drop(root);

    assert_int_equal(host(fx_tree("nvidia-passthrough"), "cmdline", NULL), 2);
    assert_string_equal(err_text, "qdesk: host cmdline needs --gpu ADDR (qdesk host gpus "
                                  "lists them)\n");
    assert_int_equal(
        host(fx_tree("nvidia-passthrough"), "cmdline", "--gpu", "0000:09:00.0", NULL), 1);
    assert_string_equal(err_text, "qdesk: cmdline: there is no PCI device 0000:09:00.0 "
                                  "(qdesk host gpus lists the GPUs)\n");
}

static void check_exit_status(void **state)
{
    (void)state;
    /* a copy whose /dev/kvm QEMU's user may open, as on the machine (root:kvm 0660,
     * the user in kvm; the captured file is 0644) */
    char *root = fx_copy("intel-sriov"), kvm[PATH_MAX];
    snprintf(kvm, sizeof(kvm), "%s/dev/kvm", root);
    assert_int_equal(chmod(kvm, 0666), 0);
    assert_int_equal(host(root, "check", NULL), 0);
    fx_drop(root);
    assert_memory_equal(out_text, "ok    kvm                  KVM can run guests (Intel VT-x)",
                        56);
    assert_int_equal(host(fx_tree("nvidia-passthrough"), "check", NULL), 1);
    assert_non_null(strstr(out_text,
                           "fail  vfio                 vfio_pci and vfio_iommu_type1 "
                           "not loaded: passthrough and VFs need them\n"
                           "                           fix: modprobe vfio-pci "));
    assert_int_equal(host(fx_tree("nvidia-passthrough"), "check", "--json", NULL), 1);
    json_t *j = parsed();
    assert_true(json_is_false(json_object_get(j, "ok")));
    assert_int_equal(json_array_size(json_object_get(j, "checks")), 10);
    json_decref(j);
}

static void bad_usage(void **state)
{
    (void)state;
    assert_int_equal(host(fx_tree("usb"), NULL), 2);
    assert_non_null(strstr(err_text, "usage: qdesk host check"));
    assert_int_equal(host(fx_tree("usb"), "--help", NULL), 0);
    assert_non_null(strstr(out_text, "usage: qdesk host check"));
    assert_int_equal(host(fx_tree("usb"), "frobnicate", NULL), 2);
    assert_non_null(strstr(err_text, "qdesk: host: 'frobnicate' is not a report"));
    assert_int_equal(host(fx_tree("usb"), "usb", "--yaml", NULL), 2);
    assert_non_null(strstr(err_text, "qdesk: host usb: unknown option '--yaml'"));
    assert_int_equal(host(fx_tree("usb"), "iommu", "--gpu", "01:00.0", NULL), 2);
    assert_string_equal(err_text, "qdesk: --gpu and --apply belong to host cmdline\n");
    assert_int_equal(host(fx_tree("usb"), "cmdline", "--gpu", NULL), 2);
    assert_int_equal(host(fx_tree("usb"), "usb", "--pci-ids", NULL), 2);
    /* another name database */
    assert_int_equal(host(fx_tree("nvidia-passthrough"), "gpus", "--pci-ids",
                          "/nonexistent/pci.ids", NULL),
                     0);
    assert_memory_equal(out_text, "0000:01:00.0 Device 10de:2484 [10de:2484]\n", 42);
}

static int setup(void **state)
{
    (void)state;
    log_set_level(LOG_ERROR);
    fx_ids();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(out_text);
    free(err_text);
    ids_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gpus_report),       cmocka_unit_test(iommu_report),
        cmocka_unit_test(usb_report),        cmocka_unit_test(cmdline_report_and_apply),
        cmocka_unit_test(check_exit_status), cmocka_unit_test(bad_usage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

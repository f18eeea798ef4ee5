/* `qdesk host check` verdicts on captured machines, and the fix for each problem. */
#include "host/check.h"

#include <limits.h>
#include <setjmp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../sysfs/fixture.h"

static struct check_report report;

static const struct check_item *run_as(const char *root, const char *qemu_user)
{
    struct config c;
    config_defaults(&c);
    snprintf(c.sysroot, sizeof(c.sysroot), "%s", root);
    snprintf(c.qemu_user, sizeof(c.qemu_user), "%s", qemu_user);
    check_run(&c, &report);
    assert_int_equal(report.n, 10);
    return report.item;
}

static const struct check_item *run(const char *root)
{
    return run_as(root, "");
}

/* Checks a copy of the captured machine NAME with the default QEMU user (as root:
 * qdesk-qemu), whose /dev/kvm that user may open as on the machine itself (Debian
 * makes it root:kvm 0660, with QEMU's user in kvm; the captured file is 0644). */
static const struct check_item *run_machine(const char *name)
{
    char *root = fx_copy(name), kvm[PATH_MAX];
    snprintf(kvm, sizeof(kvm), "%s/dev/kvm", root);
    if (access(kvm, F_OK) == 0)
        assert_int_equal(chmod(kvm, 0666), 0);
    run_as(root, "");
    fx_drop(root);
    return report.item;
}

/* The detail of an OK KVM verdict of run_machine(): the default QEMU user may use it too. */
static const char *kvm_ok(const char *vendor)
{
    static char detail[128];
    struct config c;
    config_defaults(&c);
    const char *user = config_qemu_user(&c);
    snprintf(detail, sizeof(detail), "KVM can run guests (%s)%s%s", vendor,
             user[0] ? ", also as " : "", user);
    return detail;
}

static const struct check_item *find(const char *feature)
{
    for (size_t i = 0; i < report.n; i++)
        if (!strcmp(report.item[i].feature, feature))
            return &report.item[i];
    fail_msg("no verdict for %s", feature);
    return NULL;
}

static void assert_status(const char *feature, enum check_status s)
{
    const struct check_item *it = find(feature);
    if (it->status != s)
        fail_msg("%s: %s (%s), not %s", feature, check_status_name(it->status),
                 it->detail, check_status_name(s));
}

static void intel_sriov_is_ready(void **state)
{
    (void)state;
    run_machine("intel-sriov");
    static const char *const order[] = {"kvm",   "iommu",     "interrupt-remapping",
                                        "vfio",  "hugepages", "ovmf",
                                        "aavmf", "virgl",     "sr-iov",
                                        "mdev"};
    for (size_t i = 0; i < 10; i++)
        assert_string_equal(report.item[i].feature, order[i]);
    assert_status("kvm", CHECK_OK);
    assert_string_equal(find("kvm")->detail, kvm_ok("Intel VT-x"));
    assert_status("iommu", CHECK_OK);
    assert_string_equal(
        find("iommu")->detail,
        "Intel VT-d is on (dmar0, dmar1), 15 IOMMU groups, passthrough mode "
        "(iommu=pt: host devices skip translation)");
    assert_status("interrupt-remapping", CHECK_OK);
    assert_status("vfio", CHECK_OK);
    assert_status("hugepages", CHECK_OK);
    assert_string_equal(find("hugepages")->detail,
                        "2M: 0 reserved, 0 free; 1G: 0 reserved, 0 free");
    assert_status("ovmf", CHECK_OK);
    assert_status("aavmf", CHECK_WARN);
    assert_string_equal(find("aavmf")->fix, "apt install qemu-efi-aarch64 (or set [qemu] "
                                            "aavmf_code and aavmf_vars)");
    assert_status("virgl", CHECK_OK);
    assert_string_equal(find("virgl")->detail,
                        "render nodes /dev/dri/renderD128 (i915 on "
                        "Intel Corporation Raptor Lake-P [Iris Xe "
                        "Graphics])");
    assert_status("sr-iov", CHECK_OK);
    assert_string_equal(
        find("sr-iov")->detail,
        "0000:00:02.0 (Intel Corporation Raptor Lake-P [Iris Xe Graphics]): 7 "
        "of 7 VFs enabled, autoprobe off");
    assert_status("mdev", CHECK_INFO);
    assert_false(check_failed(&report));
    for (size_t i = 0; i < report.n; i++)
        if (report.item[i].status == CHECK_OK)
            assert_string_equal(report.item[i].fix, "");
}

static void amd_host_without_vfio_or_ovmf(void **state)
{
    (void)state;
    run_machine("nvidia-passthrough");
    assert_status("kvm", CHECK_OK);
    assert_string_equal(find("kvm")->detail, kvm_ok("AMD-V"));
    assert_status("iommu", CHECK_OK);
    assert_non_null(strstr(find("iommu")->detail,
                           "AMD-Vi is on (ivhd0), 7 IOMMU groups, "
                           "translated mode (DMA domains: DMA-FQ"));
    assert_status("interrupt-remapping", CHECK_OK);
    assert_status("vfio", CHECK_FAIL);
    assert_string_equal(find("vfio")->detail, "vfio_pci and vfio_iommu_type1 not loaded: "
                                              "passthrough and VFs need them");
    assert_non_null(strstr(find("vfio")->fix, "modprobe vfio-pci vfio_iommu_type1"));
    assert_status("ovmf", CHECK_FAIL);
    assert_string_equal(find("ovmf")->fix,
                        "apt install ovmf (or set [qemu] ovmf_code and "
                        "ovmf_vars)");
    assert_status("hugepages", CHECK_OK);
    assert_string_equal(find("hugepages")->detail,
                        "2M: 1024 reserved, 1024 free; 1G: 0 reserved, 0 free");
    assert_status("virgl", CHECK_OK);
    assert_status("sr-iov", CHECK_INFO);
    assert_true(check_failed(&report));

    json_t *j = check_json(&report);
    assert_true(json_is_false(json_object_get(j, "ok")));
    json_t *first = json_array_get(json_object_get(j, "checks"), 3);
    assert_string_equal(json_string_value(json_object_get(first, "feature")), "vfio");
    assert_string_equal(json_string_value(json_object_get(first, "status")), "fail");
    json_decref(j);
}

static void gvtg_host(void **state)
{
    (void)state;
    run_machine("gvtg");
    assert_status("mdev", CHECK_OK);
    assert_string_equal(find("mdev")->detail,
                        "0000:00:02.0: i915-GVTg_V5_4 (2 free), i915-GVTg_V5_8 (5 free)");
    /* no hugetlbfs is mounted: guests get their pages through memfd all the same */
    assert_status("hugepages", CHECK_OK);
    assert_string_equal(find("hugepages")->detail,
                        "2M: 0 reserved, 0 free; 1G: 0 reserved, 0 free");
    assert_status("virgl", CHECK_WARN);
    assert_string_equal(find("virgl")->fix, "apt install qemu-system-gui");

    /* GVT-g off: the device id says it could be on */
    char *root = fx_copy("gvtg");
    char path[PATH_MAX];
    fs_join(path, sizeof(path), root, "/sys/class/mdev_bus");
    fs_remove_tree(path);
    run(root);
    assert_status("mdev", CHECK_WARN);
    assert_string_equal(find("mdev")->fix,
                        "i915.enable_gvt=1 and the kvmgt module (qdesk "
                        "host cmdline --gpu 0000:00:02.0 --apply)");

    /* a kernel without the 1G pool: 1G machines cannot start */
    fx_rmtree(root, "/sys/kernel/mm/hugepages/hugepages-1048576kB");
    run(root);
    assert_status("hugepages", CHECK_OK);
    assert_string_equal(find("hugepages")->detail,
                        "2M: 0 reserved, 0 free; no 1G pool (this kernel offers none), "
                        "so machines with hugepages = 1G cannot start here");
    fx_drop(root);
}

static void iommu_off_says_why(void **state)
{
    (void)state;
    char *root = fx_copy("nvidia-passthrough");
    char path[PATH_MAX];
    fs_join(path, sizeof(path), root, "/sys/kernel/iommu_groups");
    fs_remove_tree(path);
    fs_join(path, sizeof(path), root, "/sys/class/iommu");
    fs_remove_tree(path);
    run(root);
    assert_status("iommu", CHECK_FAIL);
    assert_string_equal(find("iommu")->detail,
                        "off: the firmware offers AMD-Vi (IVRS table) "
                        "but the kernel did not turn it on");
    assert_string_equal(find("iommu")->fix,
                        "add amd_iommu=on iommu=pt to "
                        "GRUB_CMDLINE_LINUX_DEFAULT (qdesk host cmdline "
                        "--gpu ADDR --apply), then update-grub and reboot");
    assert_status("interrupt-remapping", CHECK_FAIL);
    assert_string_equal(find("interrupt-remapping")->detail,
                        "needs the IOMMU, which is off");

    fs_join(path, sizeof(path), root, "/sys/firmware/acpi/tables/IVRS");
    unlink(path);
    run(root);
    assert_string_equal(find("iommu")->detail, "off: the firmware has no IVRS table, so "
                                               "AMD-Vi is disabled in its setup");
    assert_non_null(
        strstr(find("iommu")->fix, "enable IOMMU / AMD-Vi in the firmware setup"));

    fx_put(root, "/proc/cmdline", "BOOT_IMAGE=/vmlinuz ro amd_iommu=off\n");
    run(root);
    assert_string_equal(find("iommu")->detail, "off: the kernel command line says "
                                               "amd_iommu=off");
    fx_drop(root);
}

static void interrupt_remapping_problems(void **state)
{
    (void)state;
    char *root = fx_copy("intel-sriov");
    fx_put(root, "/sys/class/iommu/dmar1/intel-iommu/ecap", "f050d2\n");
    run(root);
    assert_status("interrupt-remapping", CHECK_FAIL);
    assert_string_equal(find("interrupt-remapping")->detail, "not supported by dmar1");
    assert_non_null(
        strstr(find("interrupt-remapping")->fix, "allow_unsafe_interrupts=1"));
    fx_put(root, "/sys/class/iommu/dmar1/intel-iommu/ecap", "f050da\n");
    fx_put(root, "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
           "Y\n");
    run(root);
    assert_status("interrupt-remapping", CHECK_WARN);
    fx_put(root, "/proc/cmdline", "ro quiet intel_iommu=on intremap=off\n");
    run(root);
    assert_status("interrupt-remapping", CHECK_FAIL);
    assert_string_equal(find("interrupt-remapping")->detail,
                        "turned off on the kernel command line");
    fx_drop(root);
}

static void kvm_for_the_service_but_not_for_qemus_user(void **state)
{
    (void)state;
    char *root = fx_copy("intel-sriov");
    char kvm[PATH_MAX];
    snprintf(kvm, sizeof(kvm), "%s/dev/kvm", root);
    assert_int_equal(chown(kvm, 0, 0), 0);
    assert_int_equal(chmod(kvm, 0660), 0); /* root:root: nobody is not let in */
    run_as(root, "nobody");
    assert_status("kvm", CHECK_FAIL);
    assert_non_null(strstr(find("kvm")->detail,
                           "KVM can run guests, but not as [qemu] qemu_user "
                           "nobody"));
    assert_string_equal(find("kvm")->fix, "adduser nobody kvm");
    assert_int_equal(chmod(kvm, 0666), 0);
    run_as(root, "nobody");
    assert_status("kvm", CHECK_OK);
    assert_string_equal(find("kvm")->detail,
                        "KVM can run guests (Intel VT-x), also as nobody");
    fx_drop(root);
}

static void no_kvm(void **state)
{
    (void)state;
    run_machine("usb");
    assert_status("kvm", CHECK_FAIL);
    assert_non_null(strstr(find("kvm")->detail, "/dev/kvm cannot be opened"));
    assert_status("virgl", CHECK_WARN);
    assert_non_null(strstr(find("virgl")->detail, "no render node"));
    assert_status("hugepages", CHECK_WARN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(intel_sriov_is_ready),
        cmocka_unit_test(amd_host_without_vfio_or_ovmf),
        cmocka_unit_test(gvtg_host),
        cmocka_unit_test(iommu_off_says_why),
        cmocka_unit_test(interrupt_remapping_problems),
        cmocka_unit_test(kvm_for_the_service_but_not_for_qemus_user),
        cmocka_unit_test(no_kvm),
    };
    return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}

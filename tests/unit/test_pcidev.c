/* PCI inventory read from captured machines: ids, classes, drivers, IOMMU groups,
 * SR-IOV links, the boot VGA device, names from pci.ids, and the sysfs helpers. */
#include "host/pcidev.h"
#include "host/sysfs.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../sysfs/fixture.h"

static char err[512];

static void addresses_are_canonical(void **state)
{
    (void)state;
    char a[PCIDEV_ADDR_SIZE];
    assert_int_equal(pcidev_addr_parse("01:00.0", a, sizeof(a)), 0);
    assert_string_equal(a, "0000:01:00.0");
    assert_int_equal(pcidev_addr_parse("0000:00:1F.3", a, sizeof(a)), 0);
    assert_string_equal(a, "0000:00:1f.3");
    assert_int_equal(pcidev_addr_parse("10000:00:02.0", a, sizeof(a)), -1);
    static const char *const bad[] = {"",
                                      "x",
                                      "00:02",
                                      "0000:00:20.0",
                                      "0000:00:02.8",
                                      "0000:00:02.0 ",
                                      "0000:00:02.0/..",
                                      "../0000:00:02.0",
                                      "0000:00:02",
                                      "0000:000:02.0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(pcidev_addr_parse(bad[i], a, sizeof(a)), -1);
    assert_true(pcidev_same_slot("0000:01:00.0", "0000:01:00.1"));
    assert_false(pcidev_same_slot("0000:01:00.0", "0000:02:00.0"));
}

static void intel_sriov_machine(void **state)
{
    (void)state;
    struct pcidev_list l;
    assert_int_equal(pcidev_scan(fx_tree("intel-sriov"), &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 19);
    /* in address order */
    for (size_t i = 1; i < l.n; i++)
        assert_true(strcmp(l.v[i - 1].addr, l.v[i].addr) < 0);
    assert_string_equal(l.v[l.n - 1].addr, "0000:56:00.0");

    const struct pcidev *gpu = pcidev_find(&l, "0000:00:02.0");
    assert_non_null(gpu);
    assert_int_equal(gpu->vendor, 0x8086);
    assert_int_equal(gpu->device, 0xa7a0);
    assert_int_equal(gpu->class_code, 0x030000);
    assert_int_equal(gpu->subvendor, 0x8086);
    assert_int_equal(gpu->subdevice, 0x3004);
    assert_string_equal(gpu->driver, "i915");
    assert_string_equal(gpu->override, "");
    assert_int_equal(gpu->iommu_group, 0);
    assert_int_equal(gpu->boot_vga, 1);
    assert_int_equal(gpu->sriov_total, 7);
    assert_int_equal(gpu->sriov_num, 7);
    assert_int_equal(gpu->sriov_autoprobe, 0);
    assert_true(gpu->has_reset);
    assert_false(gpu->has_mdev_types);
    assert_true(pcidev_is_display(gpu));
    assert_false(pcidev_is_bridge(gpu));
    assert_string_equal(gpu->name, "Intel Corporation Raptor Lake-P [Iris Xe Graphics]");
    assert_string_equal(gpu->vendor_name, "Intel Corporation");
    assert_true(pcidev_drives_console(fx_tree("intel-sriov"), gpu));

    const struct pcidev *vf = pcidev_find(&l, "0000:00:02.5");
    assert_non_null(vf);
    assert_string_equal(vf->physfn, "0000:00:02.0");
    assert_string_equal(vf->driver, "");
    assert_int_equal(vf->iommu_group, 12);
    assert_int_equal(vf->boot_vga, 0);
    assert_int_equal(vf->sriov_total, -1);
    assert_false(pcidev_drives_console(fx_tree("intel-sriov"), vf));

    assert_int_equal(gpu->sriov_num, 7);
    assert_int_equal(gpu->sriov_total, 7);
    assert_string_equal(pcidev_find(&l, "0000:00:02.7")->physfn, "0000:00:02.0");

    /* the VFs share the PF's slot but are not its companions */
    char fns[8][PCIDEV_ADDR_SIZE];
    assert_int_equal(pcidev_companions(&l, gpu, fns, 8), 1);

    const struct pcidev *port = pcidev_find(&l, "0000:00:06.0");
    assert_true(pcidev_is_bridge(port));
    assert_string_equal(port->name, "Intel Corporation Device a74d"); /* not in pci.ids */
    const struct pcidev *host = pcidev_find(&l, "0000:00:00.0");
    assert_false(pcidev_is_bridge(host)); /* a host bridge is an endpoint to vfio */
    assert_int_equal(pcidev_find(&l, "0000:01:00.0")->iommu_group, 6);
    assert_null(pcidev_find(&l, "0000:02:00.0"));
    pcidev_list_free(&l);
    pcidev_list_free(NULL);
}

static void nvidia_card_and_its_audio(void **state)
{
    (void)state;
    struct pcidev_list l;
    assert_int_equal(pcidev_scan(fx_tree("nvidia-passthrough"), &l, err, sizeof(err)), 0);
    const struct pcidev *gpu = pcidev_find(&l, "0000:01:00.0");
    assert_string_equal(gpu->name, "NVIDIA Corporation GA104 [GeForce RTX 3070]");
    assert_string_equal(gpu->driver, "nvidia");
    assert_int_equal(gpu->boot_vga, 0);
    assert_false(gpu->has_reset); /* two functions on the bus and no FLR */
    assert_false(pcidev_drives_console(fx_tree("nvidia-passthrough"), gpu));
    char fns[8][PCIDEV_ADDR_SIZE];
    assert_int_equal(pcidev_companions(&l, gpu, fns, 8), 2);
    assert_string_equal(fns[0], "0000:01:00.0");
    assert_string_equal(fns[1], "0000:01:00.1");
    /* the Radeon goes with its HDMI audio; the NIC beside it is no part of it */
    const struct pcidev *radeon = pcidev_find(&l, "0000:04:00.0");
    assert_int_equal(pcidev_companions(&l, radeon, fns, 8), 2);
    assert_string_equal(fns[1], "0000:04:00.1");
    assert_true(pcidev_drives_console(fx_tree("nvidia-passthrough"), radeon));
    assert_true(pcidev_driver_vfio_safe(""));
    assert_true(pcidev_driver_vfio_safe("vfio-pci"));
    assert_true(pcidev_driver_vfio_safe("pci-stub"));
    assert_false(pcidev_driver_vfio_safe("igb"));
    pcidev_list_free(&l);
}

static void console_on_a_firmware_framebuffer(void **state)
{
    (void)state;
    char *root = fx_copy("gvtg");
    struct pcidev d;
    assert_int_equal(pcidev_read(root, "0000:00:02.0", &d), 0);
    assert_true(pcidev_drives_console(root, &d));
    /* unbound, but efifb still scans out of it */
    d.driver[0] = 0;
    fx_put(root, "/proc/fb", "0 EFI VGA\n");
    assert_true(pcidev_drives_console(root, &d));
    fx_put(root, "/proc/fb", "");
    assert_false(pcidev_drives_console(root, &d));
    snprintf(d.driver, sizeof(d.driver), "vfio-pci");
    assert_false(pcidev_drives_console(root, &d));
    assert_int_equal(pcidev_read(root, "0000:00:09.0", &d), -ENOENT);
    assert_int_equal(pcidev_read(root, "../../etc", &d), -EINVAL);
    fx_drop(root);
}

static void sysfs_helpers(void **state)
{
    (void)state;
    assert_true(sysfs_name_cmp("renderD9", "renderD10") < 0);
    assert_true(sysfs_name_cmp("1-1.2", "1-1.10") < 0);
    assert_true(sysfs_name_cmp("usb1", "usb1") == 0);
    assert_true(sysfs_name_cmp("cpu2", "cpu10") < 0);
    unsigned long bits[2];
    assert_int_equal(sysfs_parse_cpulist("0-3,8,10-11\n", bits, 128), 7);
    assert_int_equal(bits[0], 0xd0fUL);
    assert_int_equal(sysfs_parse_cpulist("0,8", bits, 128), 2);
    assert_int_equal(sysfs_parse_cpulist("3-1", bits, 128), -1);
    assert_int_equal(sysfs_parse_cpulist("200", bits, 128), -1);
    assert_int_equal(sysfs_parse_cpulist("a", bits, 128), -1);
    char out[64];
    assert_int_equal(sysfs_link_name(fx_tree("intel-sriov"), out, sizeof(out),
                                     "/sys/bus/pci/devices/%s/driver", "0000:00:02.0"),
                     0);
    assert_string_equal(out, "i915");
    assert_int_equal(sysfs_link_name(fx_tree("intel-sriov"), out, sizeof(out),
                                     "/sys/bus/pci/devices/0000:00:02.0/class"),
                     -EINVAL);
    assert_int_equal(sysfs_read_num(fx_tree("intel-sriov"), -1, 16,
                                    "/sys/bus/pci/devices/0000:00:02.0/device"),
                     0xa7a0);
    assert_int_equal(sysfs_read_num(fx_tree("intel-sriov"), -7, 10, "/nothing"), -7);
    char **names = sysfs_list(fx_tree("intel-sriov"), false, "/sys/kernel/iommu_groups");
    assert_non_null(names);
    assert_int_equal(sysfs_names_count(names), 15);
    assert_string_equal(names[2], "2");
    assert_string_equal(names[10], "10"); /* numeric order */
    sysfs_names_free(names);
    names = sysfs_list(fx_tree("usb"), true, "/sys/kernel/iommu_groups");
    assert_non_null(names);
    assert_int_equal(sysfs_names_count(names), 0);
    sysfs_names_free(names);
    assert_null(sysfs_list(fx_tree("usb"), false, "/sys/kernel/iommu_groups"));
}

static void names_from_the_id_databases(void **state)
{
    (void)state;
    char v[128], d[128], n[256];
    ids_pci(0x10de, 0x2484, v, sizeof(v), d, sizeof(d), n, sizeof(n));
    assert_string_equal(n, "NVIDIA Corporation GA104 [GeForce RTX 3070]");
    assert_string_equal(d, "GA104 [GeForce RTX 3070]");
    ids_pci(0x1234, 0x5678, v, sizeof(v), d, sizeof(d), n, sizeof(n));
    assert_string_equal(n, "Device 1234:5678");
    assert_string_equal(v, "");
    ids_pci_class(0x030000, n, sizeof(n));
    assert_string_equal(n, "VGA compatible controller");
    ids_pci_class(0x040300, n, sizeof(n));
    assert_string_equal(n, "Audio device");
    ids_usb(0x0781, 0x5567, v, sizeof(v), d, sizeof(d));
    assert_string_equal(v, "SanDisk Corp.");
    assert_string_equal(d, "Cruzer Blade");
    ids_usb(0x0781, 0x9999, v, sizeof(v), d, sizeof(d));
    assert_string_equal(v, "SanDisk Corp.");
    assert_string_equal(d, "");
    ids_usb(0xffff, 0x0001, v, sizeof(v), d, sizeof(d));
    assert_string_equal(v, "");
    /* without the databases, numbers */
    ids_set_files("/nonexistent/pci.ids", "/nonexistent/usb.ids");
    ids_pci(0x10de, 0x2484, v, sizeof(v), d, sizeof(d), n, sizeof(n));
    assert_string_equal(n, "Device 10de:2484");
    ids_pci_class(0x030000, n, sizeof(n));
    assert_string_equal(n, "Class 0300");
    ids_usb(0x0781, 0x5567, v, sizeof(v), d, sizeof(d));
    assert_string_equal(v, "");
    fx_ids();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(addresses_are_canonical),
        cmocka_unit_test(intel_sriov_machine),
        cmocka_unit_test(nvidia_card_and_its_audio),
        cmocka_unit_test(console_on_a_firmware_framebuffer),
        cmocka_unit_test(sysfs_helpers),
        cmocka_unit_test(names_from_the_id_databases),
    };
    return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}

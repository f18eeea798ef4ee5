/* The units the session layer allocates, with identifiers that stay put. */
#include "host/inventory.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../sysfs/fixture.h"

static char err[512];

static struct inventory_unit *list(const char *root, enum inventory_kind kind,
                                   bool allow_console, size_t *n)
{
    struct inventory_unit *u;
    assert_int_equal(inventory_list(root, kind, allow_console, &u, n, err, sizeof(err)),
                     0);
    return u;
}

static void vfs_of_the_intel_igpu(void **state)
{
    (void)state;
    size_t n;
    struct inventory_unit *u = list(fx_tree("intel-sriov"), INVENTORY_VF, false, &n);
    assert_int_equal(n, 7);
    for (size_t i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "vf:0000:00:02.%zu", i + 1);
        assert_string_equal(u[i].id, id);
        assert_string_equal(u[i].parent, "0000:00:02.0");
        assert_int_equal(u[i].capacity, 1);
        assert_true(u[i].usable);
        assert_int_equal(u[i].kind, INVENTORY_VF);
    }
    assert_string_equal(u[0].label, "VF 1 of Intel Corporation Raptor Lake-P [Iris Xe "
                                    "Graphics] (0000:00:02.1)");
    free(u);

    /* before the VFs exist, the same units: prepare creates them */
    char *root = fx_copy("intel-sriov");
    fx_put(root, "/sys/bus/pci/devices/0000:00:02.0/sriov_numvfs", "0\n");
    for (int i = 0; i < 7; i++) {
        char rel[64], path[PATH_MAX];
        snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/0000:00:02.0/virtfn%d", i);
        fs_join(path, sizeof(path), root, rel);
        unlink(path);
    }
    u = list(root, INVENTORY_VF, false, &n);
    assert_int_equal(n, 7);
    assert_string_equal(u[6].id, "vf:0000:00:02.7");
    assert_true(u[6].usable);
    free(u);
    fx_drop(root);

    u = list(fx_tree("nvidia-passthrough"), INVENTORY_VF, false, &n);
    assert_int_equal(n, 0);
    free(u);
}

static void whole_gpus(void **state)
{
    (void)state;
    size_t n;
    struct inventory_unit *u =
        list(fx_tree("nvidia-passthrough"), INVENTORY_GPU, true, &n);
    assert_int_equal(n, 2);
    assert_string_equal(u[0].id, "pci:0000:01:00.0");
    assert_true(u[0].usable);
    assert_string_equal(u[0].why, "");
    assert_string_equal(u[1].id, "pci:0000:04:00.0");
    assert_false(u[1].usable);
    assert_non_null(strstr(u[1].why,
                           "0000:05:00.0 (Intel Corporation I210 Gigabit Network "
                           "Connection) is bound to igb"));
    free(u);
    u = list(fx_tree("gvtg"), INVENTORY_GPU, false, &n);
    assert_int_equal(n, 1);
    assert_false(u[0].usable);
    assert_non_null(strstr(u[0].why, "host console"));
    free(u);
    u = list(fx_tree("gvtg"), INVENTORY_GPU, true, &n);
    assert_true(u[0].usable);
    free(u);
    u = list(fx_tree("intel-sriov"), INVENTORY_GPU, true, &n);
    assert_int_equal(n, 1); /* the VFs are not whole GPUs */
    assert_false(u[0].usable);
    free(u);
}

static void mdev_types_render_nodes_and_usb(void **state)
{
    (void)state;
    size_t n;
    struct inventory_unit *u = list(fx_tree("gvtg"), INVENTORY_MDEV, false, &n);
    assert_int_equal(n, 2);
    assert_string_equal(u[0].id, "mdev:0000:00:02.0/i915-GVTg_V5_4");
    assert_int_equal(u[0].capacity, 2);
    assert_string_equal(u[1].id, "mdev:0000:00:02.0/i915-GVTg_V5_8");
    assert_int_equal(u[1].capacity, 5);
    assert_non_null(strstr(u[1].label, "resolution: 1024x768"));
    free(u);

    u = list(fx_tree("nvidia-passthrough"), INVENTORY_RENDER, false, &n);
    assert_int_equal(n, 2);
    assert_string_equal(u[0].id, "render:renderD128");
    assert_string_equal(u[0].parent, "0000:04:00.0");
    assert_string_equal(u[0].label, "/dev/dri/renderD128 (amdgpu on 0000:04:00.0)");
    assert_int_equal(u[0].capacity, 0); /* shared */
    assert_string_equal(u[1].id, "render:renderD129");
    free(u);

    u = list(fx_tree("usb"), INVENTORY_USB, false, &n);
    assert_int_equal(n, 7);
    assert_string_equal(u[1].id, "usb:1-1");
    assert_false(u[1].usable);
    assert_string_equal(u[3].id, "usb:1-1.2");
    assert_true(u[3].usable);
    assert_string_equal(u[3].label, "SanDisk Corp. Cruzer Blade (0781:5567 on 1-1.2)");
    free(u);

    struct inventory_unit *none;
    assert_int_equal(inventory_list(fx_tree("usb"), INVENTORY_KINDS, false, &none, &n,
                                    err, sizeof(err)),
                     -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vfs_of_the_intel_igpu),
        cmocka_unit_test(whole_gpus),
        cmocka_unit_test(mdev_types_render_nodes_and_usb),
    };
    return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}

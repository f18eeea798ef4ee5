/* Hugepage reservations: the exact writes, the check that the pages exist, the
 * rollback when the kernel finds too few, and the release. */
#include "host/hugepages.h"
#include "util/log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../sysfs/fixture.h"

static char err[512];
static const char *const nr2m = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
static const char *const free2m =
    "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";

static void pools_are_read(void **state)
{
    (void)state;
    struct hugepages_pool p[4];
    assert_int_equal(
        hugepages_pools(fx_tree("nvidia-passthrough"), p, 4, err, sizeof(err)), 2);
    assert_int_equal(p[0].size_kb, 2048);
    assert_int_equal(p[0].nr, 1024);
    assert_int_equal(p[0].free, 1024);
    assert_int_equal(p[1].size_kb, 1048576);
    assert_int_equal(p[1].nr, 0);
    assert_int_equal(hugepages_pools(fx_tree("usb"), p, 4, err, sizeof(err)), 0);
    assert_int_equal(hugepages_count(4096, HUGEPAGES_2M), 2048);
    assert_int_equal(hugepages_count(4096, HUGEPAGES_1G), 4);
    assert_int_equal(hugepages_count(1025, HUGEPAGES_1G), 2);
}

static void reserve_and_release(void **state)
{
    (void)state;
    char *root = fx_copy("intel-sriov");
    struct fx_kernel k;
    fx_kernel_start(&k);
    assert_int_equal(hugepages_reserve(root, HUGEPAGES_2M, 1024, err, sizeof(err)), 0);
    assert_int_equal(hugepages_reserve(root, HUGEPAGES_2M, 512, err, sizeof(err)), 0);
    assert_string_equal(fx_get(root, nr2m), "1536");
    assert_string_equal(fx_get(root, free2m), "1536");
    assert_int_equal(hugepages_release(root, HUGEPAGES_2M, 1024, err, sizeof(err)), 0);
    assert_int_equal(hugepages_release(root, HUGEPAGES_2M, 512, err, sizeof(err)), 0);
    assert_string_equal(
        hostw_recorded(),
        "echo 1024 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages\n"
        "echo 1536 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages\n"
        "echo 512 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages\n"
        "echo 0 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages\n");
    assert_string_equal(fx_get(root, nr2m), "0");
    /* never below zero */
    hostw_record(true);
    assert_int_equal(hugepages_release(root, HUGEPAGES_2M, 8, err, sizeof(err)), 0);
    assert_string_equal(
        hostw_recorded(),
        "echo 0 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages\n");
    fx_kernel_stop();
    fx_drop(root);
}

static void too_few_pages_are_given_back(void **state)
{
    (void)state;
    char *root = fx_copy("intel-sriov");
    struct fx_kernel k;
    fx_kernel_start(&k);
    k.hugepages_limit = 3; /* fragmented: the kernel finds three 1G pages */
    assert_int_equal(hugepages_reserve(root, HUGEPAGES_1G, 4, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "hugepages: the kernel found only 3 of 4 free 1G pages (memory "
                        "is fragmented; reserve them at boot with the kernel parameters "
                        "hugepagesz=1G hugepages=N)");
    assert_string_equal(
        hostw_recorded(),
        "echo 4 > /sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages\n"
        "echo 0 > /sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages\n");
    assert_string_equal(fx_get(root, "/sys/kernel/mm/hugepages/hugepages-1048576kB/"
                                     "nr_hugepages"),
                        "0");
    fx_kernel_stop();
    fx_drop(root);
}

static void unknown_sizes_are_named(void **state)
{
    (void)state;
    assert_int_equal(
        hugepages_reserve(fx_tree("intel-sriov"), 16384, 1, err, sizeof(err)), -1);
    assert_string_equal(err, "hugepages: this host has no 16M pages (it has 2M, 1G)");
    assert_int_equal(hugepages_reserve(fx_tree("usb"), HUGEPAGES_2M, 1, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "hugepages: this host has no 2M pages (it has none)");
}

static int setup(void **state)
{
    (void)state;
    log_set_level(LOG_ERROR);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pools_are_read),
        cmocka_unit_test(reserve_and_release),
        cmocka_unit_test(too_few_pages_are_given_back),
        cmocka_unit_test(unknown_sizes_are_named),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}

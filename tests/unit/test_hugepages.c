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
    unsigned long grown;
    assert_int_equal(
        hugepages_reserve(root, HUGEPAGES_2M, 1024, 0, &grown, err, sizeof(err)), 0);
    assert_int_equal(grown, 1024);
    /* the 1024 free pages are the first session's: the pool grows again */
    assert_int_equal(
        hugepages_reserve(root, HUGEPAGES_2M, 512, 1024, &grown, err, sizeof(err)), 0);
    assert_int_equal(grown, 512);
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
    unsigned long grown = 99;
    assert_int_equal(
        hugepages_reserve(root, HUGEPAGES_1G, 4, 0, &grown, err, sizeof(err)), -1);
    assert_int_equal(grown, 0);
    assert_string_equal(
        err, "hugepages: 4 1G pages are needed, 0 were free in the pool and the "
             "kernel found only 3 of the 4 more it was asked for (memory is "
             "fragmented; reserve them at boot with the kernel parameters "
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

/* 1G pages come from a pool reserved at boot (hugepagesz=1G hugepages=4): sessions
 * take them without a write, as long as they are not promised to another. */
static void pages_reserved_at_boot_are_used_first(void **state)
{
    (void)state;
    char *root = fx_copy("intel-sriov");
    static const char *const nr1g = "/sys/kernel/mm/hugepages/hugepages-1048576kB/"
                                    "nr_hugepages";
    static const char *const free1g = "/sys/kernel/mm/hugepages/hugepages-1048576kB/"
                                      "free_hugepages";
    fx_put(root, nr1g, "4\n");
    fx_put(root, free1g, "4\n");
    struct fx_kernel k;
    fx_kernel_start(&k);
    k.hugepages_limit = 4; /* the kernel finds no more 1G pages at run time */
    unsigned long grown = 99;
    assert_int_equal(
        hugepages_reserve(root, HUGEPAGES_1G, 2, 0, &grown, err, sizeof(err)), 0);
    assert_int_equal(grown, 0);
    assert_int_equal(
        hugepages_reserve(root, HUGEPAGES_1G, 2, 2, &grown, err, sizeof(err)), 0);
    assert_int_equal(grown, 0);
    assert_string_equal(hostw_recorded(), ""); /* nothing to write */
    /* all four are promised: a third session needs more than the kernel has */
    assert_int_equal(
        hugepages_reserve(root, HUGEPAGES_1G, 2, 4, &grown, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "2 1G pages are needed, 0 were free in the pool"));
    assert_string_equal(fx_get(root, nr1g), "4");
    /* a page another program holds is not spare: one taken, one grown */
    k.hugepages_limit = -1;
    fx_put(root, free1g, "1\n");
    hostw_record(true);
    assert_int_equal(
        hugepages_reserve(root, HUGEPAGES_1G, 2, 0, &grown, err, sizeof(err)), 0);
    assert_int_equal(grown, 1);
    assert_string_equal(
        hostw_recorded(),
        "echo 5 > /sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages\n");
    fx_kernel_stop();
    fx_drop(root);
}

static void unknown_sizes_are_named(void **state)
{
    (void)state;
    unsigned long grown;
    assert_int_equal(
        hugepages_reserve(fx_tree("intel-sriov"), 16384, 1, 0, &grown, err, sizeof(err)),
        -1);
    assert_string_equal(err, "hugepages: this host has no 16M pages (it has 2M, 1G)");
    assert_int_equal(
        hugepages_reserve(fx_tree("usb"), HUGEPAGES_2M, 1, 0, &grown, err, sizeof(err)),
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
        cmocka_unit_test(pages_reserved_at_boot_are_used_first),
        cmocka_unit_test(unknown_sizes_are_named),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}

/* IOMMU groups and whether a guest can have them, on captured machines. */
#include "host/iommu.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../sysfs/fixture.h"

static char err[512];

struct machine {
    struct pcidev_list devs;
    struct iommu_groups groups;
};

static void load(const char *tree, struct machine *m)
{
    assert_int_equal(pcidev_scan(fx_tree(tree), &m->devs, err, sizeof(err)), 0);
    assert_int_equal(iommu_scan(fx_tree(tree), &m->groups, err, sizeof(err)), 0);
}

static void unload(struct machine *m)
{
    pcidev_list_free(&m->devs);
    iommu_groups_free(&m->groups);
}

static void card_audio_and_root_port_share_a_viable_group(void **state)
{
    (void)state;
    struct machine m;
    load("nvidia-passthrough", &m);
    assert_int_equal(m.groups.n, 7);
    const struct iommu_group *g = iommu_group_find(&m.groups, 2);
    assert_non_null(g);
    assert_string_equal(g->type, "DMA-FQ");
    assert_int_equal(g->n, 4);
    assert_string_equal(g->addrs[0], "0000:00:01.0");
    assert_string_equal(g->addrs[1], "0000:00:01.1");
    assert_string_equal(g->addrs[2], "0000:01:00.0");
    assert_string_equal(g->addrs[3], "0000:01:00.1");
    struct iommu_verdict v;
    iommu_group_verdict(g, &m.devs, &v);
    assert_true(v.viable);
    assert_int_equal(v.n_blockers, 0);
    /* claiming only the GPU leaves its audio bound to the host: not viable */
    char gpu[1][PCIDEV_ADDR_SIZE] = {"0000:01:00.0"};
    iommu_check(g, &m.devs, gpu, 1, &v);
    assert_false(v.viable);
    assert_string_equal(v.why, "0000:01:00.1 (NVIDIA Corporation GA104 High Definition "
                               "Audio Controller) is bound to snd_hda_intel");
    unload(&m);
}

static void a_nic_blocks_the_group_it_shares(void **state)
{
    (void)state;
    struct machine m;
    struct iommu_verdict v;
    load("nvidia-passthrough", &m);
    iommu_group_verdict(iommu_group_find(&m.groups, 3), &m.devs, &v);
    assert_false(v.viable);
    assert_int_equal(v.n_blockers, 1);
    assert_string_equal(v.blockers[0], "0000:05:00.0");
    assert_string_equal(v.why, "0000:05:00.0 (Intel Corporation I210 Gigabit Network "
                               "Connection) is bound to igb");
    /* a device the host lets go does not block */
    struct pcidev *nic = (struct pcidev *)pcidev_find(&m.devs, "0000:05:00.0");
    snprintf(nic->driver, sizeof(nic->driver), "vfio-pci");
    iommu_group_verdict(iommu_group_find(&m.groups, 3), &m.devs, &v);
    assert_true(v.viable);
    nic->driver[0] = 0;
    iommu_group_verdict(iommu_group_find(&m.groups, 3), &m.devs, &v);
    assert_true(v.viable);
    assert_true(v.gpu);
    assert_string_equal(v.host_drivers, "");
    unload(&m);

    /* a GPU among other devices: those that are not its own functions block */
    load("intel-sriov", &m);
    struct pcidev *audio = (struct pcidev *)pcidev_find(&m.devs, "0000:00:1f.3");
    audio->class_code = 0x030000;
    iommu_group_verdict(iommu_group_find(&m.groups, 5), &m.devs, &v);
    assert_false(v.viable);
    assert_true(v.gpu);
    assert_int_equal(v.n_blockers, 1);
    assert_string_equal(v.blockers[0], "0000:00:1f.4");
    assert_string_equal(v.why, "0000:00:1f.4 (Intel Corporation Alder Lake PCH-P SMBus "
                               "Host Controller) is bound to i801_smbus");
    iommu_group_verdict(iommu_group_find(&m.groups, 8), &m.devs, &v);
    assert_true(v.viable); /* a VF alone in its group */
    assert_null(iommu_group_find(&m.groups, 15));
    unload(&m);
}

/* A group without a GPU goes to a guest whole: its devices do not block it, and the
 * drivers the host has on them are shown apart. */
static void groups_without_a_gpu_are_isolated(void **state)
{
    (void)state;
    struct machine m;
    struct iommu_verdict v;
    load("nvidia-passthrough", &m);
    iommu_group_verdict(iommu_group_find(&m.groups, 5), &m.devs, &v); /* an NVMe */
    assert_true(v.viable);
    assert_false(v.gpu);
    assert_int_equal(v.n_blockers, 0);
    assert_string_equal(v.why, "");
    assert_string_equal(v.host_drivers, "0000:06:00.0 nvme");
    unload(&m);

    load("intel-sriov", &m);
    iommu_group_verdict(iommu_group_find(&m.groups, 7), &m.devs, &v); /* a NIC */
    assert_true(v.viable);
    assert_string_equal(v.host_drivers, "0000:56:00.0 igc");
    iommu_group_verdict(iommu_group_find(&m.groups, 5), &m.devs, &v); /* the chipset */
    assert_true(v.viable);
    assert_string_equal(v.host_drivers,
                        "0000:00:1f.3 snd_hda_intel, 0000:00:1f.4 i801_smbus, "
                        "0000:00:1f.5 intel-spi");
    unload(&m);
}

static void iommu_off_means_no_groups(void **state)
{
    (void)state;
    struct iommu_groups g;
    assert_int_equal(iommu_scan(fx_tree("usb"), &g, err, sizeof(err)), 0);
    assert_int_equal(g.n, 0);
    iommu_groups_free(&g);
    iommu_groups_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(card_audio_and_root_port_share_a_viable_group),
        cmocka_unit_test(a_nic_blocks_the_group_it_shares),
        cmocka_unit_test(groups_without_a_gpu_are_isolated),
        cmocka_unit_test(iommu_off_means_no_groups),
    };
    return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}

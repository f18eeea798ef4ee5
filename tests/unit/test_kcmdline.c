/* The kernel command line and modules for chosen GPUs on each captured machine, and
 * writing them into the boot configuration once, with a backup. */
#include "host/kcmdline.h"
#include "util/log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../sysfs/fixture.h"

static char err[1024];

static char *joined(char (*list)[256], size_t n)
{
    static char out[4096];
    out[0] = 0;
    for (size_t i = 0; i < n; i++)
        snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s", i ? " " : "",
                 list[i]);
    return out;
}

static void plan(const char *tree, const char *addr, struct kcmdline_plan *p)
{
    char *addrs[] = {(char *)addr};
    assert_int_equal(kcmdline_plan(fx_tree(tree), addrs, 1, p, err, sizeof(err)), 0);
}

static void passthrough_on_amd(void **state)
{
    (void)state;
    struct kcmdline_plan p;
    plan("nvidia-passthrough", "01:00.0", &p);
    assert_string_equal(p.vendor, "AuthenticAMD");
    assert_string_equal(joined(p.params, p.n_params),
                        "amd_iommu=on iommu=pt vfio-pci.ids=10de:2484,10de:228b "
                        "kvm.ignore_msrs=1");
    assert_int_equal(p.n_modules, 3);
    assert_string_equal(p.modules[0], "vfio");
    assert_string_equal(p.modules[1], "vfio_iommu_type1");
    assert_string_equal(p.modules[2], "vfio_pci");
    assert_int_equal(p.n_modprobe, 3);
    assert_string_equal(p.modprobe[0], "softdep nvidia pre: vfio-pci");
    assert_string_equal(p.modprobe[1], "softdep nouveau pre: vfio-pci");
    assert_string_equal(p.modprobe[2], "softdep snd_hda_intel pre: vfio-pci");
    /* nvidia and nouveau load from the initramfs: vfio-pci must be there first */
    assert_int_equal(p.n_initramfs, 3);
    assert_string_equal(p.initramfs[2], "vfio_pci");
    assert_int_equal(p.n_notes, 0);

    /* the non-viable group: the NIC would go too, and the console GPU is named; the
     * switch's ports stay with the host */
    plan("nvidia-passthrough", "0000:04:00.0", &p);
    assert_string_equal(
        joined(p.params, p.n_params),
        "amd_iommu=on iommu=pt vfio-pci.ids=1002:699f,1002:aae0,8086:1533 "
        "kvm.ignore_msrs=1");
    assert_int_equal(p.n_notes, 2);
    assert_string_equal(p.notes[0],
                        "warning: IOMMU group 3 also holds 0000:05:00.0 (Intel "
                        "Corporation I210 Gigabit Network Connection, bound to "
                        "igb): vfio-pci.ids takes it from the host too");
    assert_non_null(strstr(p.notes[1], "0000:04:00.0 shows the host console"));

    /* both cards: one list of ids */
    char *both[] = {"0000:01:00.0", "0000:01:00.1"};
    assert_int_equal(
        kcmdline_plan(fx_tree("nvidia-passthrough"), both, 2, &p, err, sizeof(err)), 0);
    assert_string_equal(p.params[2], "vfio-pci.ids=10de:2484,10de:228b");

    char *bad[] = {"0000:07:00.0"};
    assert_int_equal(
        kcmdline_plan(fx_tree("nvidia-passthrough"), bad, 1, &p, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "cmdline: there is no PCI device 0000:07:00.0 (qdesk host gpus "
                        "lists the GPUs)");
    char *junk[] = {"gpu0"};
    assert_int_equal(
        kcmdline_plan(fx_tree("nvidia-passthrough"), junk, 1, &p, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "cmdline: 'gpu0' is not a PCI address (such as 0000:01:00.0)");
}

static void sriov_and_gvt_on_intel(void **state)
{
    (void)state;
    struct kcmdline_plan p;
    plan("intel-sriov", "0000:00:02.0", &p);
    assert_string_equal(p.vendor, "GenuineIntel");
    assert_string_equal(joined(p.params, p.n_params),
                        "intel_iommu=on iommu=pt kvm.ignore_msrs=1 i915.enable_guc=3 "
                        "i915.max_vfs=7");
    assert_int_equal(p.n_modules, 3);
    assert_int_equal(p.n_modprobe, 0);
    assert_int_equal(p.n_initramfs, 0); /* VFs are bound at session start */
    assert_int_equal(p.n_notes, 1);
    /* a VF stands for its PF */
    plan("intel-sriov", "0000:00:02.4", &p);
    assert_string_equal(joined(p.params, p.n_params),
                        "intel_iommu=on iommu=pt kvm.ignore_msrs=1 i915.enable_guc=3 "
                        "i915.max_vfs=7");
    /* the xe driver has its own parameter */
    char *root = fx_copy("intel-sriov");
    char path[PATH_MAX];
    fs_join(path, sizeof(path), root, "/sys/bus/pci/drivers/xe");
    fs_mkdir_p(path, 0755);
    fs_join(path, sizeof(path), root, "/sys/bus/pci/devices/0000:00:02.0/driver");
    unlink(path);
    assert_int_equal(symlink("../../../bus/pci/drivers/xe", path), 0);
    char *addrs[] = {"0000:00:02.0"};
    assert_int_equal(kcmdline_plan(root, addrs, 1, &p, err, sizeof(err)), 0);
    assert_string_equal(joined(p.params, p.n_params),
                        "intel_iommu=on iommu=pt kvm.ignore_msrs=1 xe.max_vfs=7");
    fx_drop(root);

    plan("gvtg", "0000:00:02.0", &p);
    assert_string_equal(joined(p.params, p.n_params),
                        "intel_iommu=on iommu=pt kvm.ignore_msrs=1 i915.enable_gvt=1");
    assert_int_equal(p.n_modules, 3);
    assert_string_equal(p.modules[0], "kvmgt");
    assert_string_equal(p.modules[1], "vfio_iommu_type1");
    assert_string_equal(p.modules[2], "mdev");
    /* GVT-g that is still off is recognised by the device id */
    root = fx_copy("gvtg");
    fs_join(path, sizeof(path), root,
            "/sys/devices/pci0000:00/0000:00:02.0/"
            "mdev_supported_types");
    fs_remove_tree(path);
    assert_int_equal(kcmdline_plan(root, addrs, 1, &p, err, sizeof(err)), 0);
    assert_string_equal(p.params[3], "i915.enable_gvt=1");
    fx_drop(root);
}

static void merging_never_duplicates(void **state)
{
    (void)state;
    struct kcmdline_plan p;
    char out[1024];
    plan("nvidia-passthrough", "01:00.0", &p);
    assert_int_equal(kcmdline_merge("quiet amd_iommu=on", &p, out, sizeof(out)), 0);
    assert_string_equal(out,
                        "quiet amd_iommu=on iommu=pt vfio-pci.ids=10de:2484,10de:228b "
                        "kvm.ignore_msrs=1");
    char again[1024];
    assert_int_equal(kcmdline_merge(out, &p, again, sizeof(again)), 0);
    assert_string_equal(again, out);
    assert_int_equal(kcmdline_merge("iommu=soft  vfio-pci.ids=1002:699f,10de:228b splash",
                                    &p, out, sizeof(out)),
                     0);
    assert_string_equal(out, "iommu=pt vfio-pci.ids=1002:699f,10de:228b,10de:2484 splash "
                             "amd_iommu=on kvm.ignore_msrs=1");
    assert_int_equal(kcmdline_merge("", &p, out, 16), -1);

    char v[64];
    const char *line = "BOOT_IMAGE=/vmlinuz ro quiet intel_iommu=on iommu=pt nointremap "
                       "iommu=off";
    assert_true(kcmdline_get(line, "iommu", v, sizeof(v)));
    assert_string_equal(v, "off"); /* the last one counts */
    assert_true(kcmdline_get(line, "nointremap", v, sizeof(v)));
    assert_string_equal(v, "");
    assert_true(kcmdline_get(line, "intel_iommu", v, sizeof(v)));
    assert_string_equal(v, "on");
    assert_false(kcmdline_get(line, "intel", v, sizeof(v)));
    assert_false(kcmdline_get(line, "amd_iommu", v, sizeof(v)));
}

static const char grub_after[] =
    "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet amd_iommu=on iommu=pt "
    "vfio-pci.ids=10de:2484,10de:228b kvm.ignore_msrs=1\"";

static void apply_writes_once_with_a_backup(void **state)
{
    (void)state;
    char *root = fx_copy("nvidia-passthrough");
    char msg[2048], path[PATH_MAX];
    struct kcmdline_plan p;
    struct fx_kernel k;
    char *addrs[] = {"0000:01:00.0"};
    assert_int_equal(kcmdline_plan(root, addrs, 1, &p, err, sizeof(err)), 0);
    fs_join(path, sizeof(path), root, KCMDLINE_GRUB);
    char *before = fs_read_file(path, 1 << 20, NULL);
    assert_non_null(before);

    fx_kernel_start(&k);
    time_t now = 1704164645; /* 2024-01-02 03:04:05 UTC */
    assert_int_equal(kcmdline_apply(root, &p, now, msg, sizeof(msg), err, sizeof(err)),
                     0);
    assert_string_equal(hostw_recorded(),
                        "cp /etc/default/grub /etc/default/grub.qdesk-20240102-030405\n"
                        "write /etc/default/grub\n"
                        "write /etc/modules-load.d/vfio.conf\n"
                        "write /etc/modprobe.d/vfio.conf\n"
                        "cp /etc/initramfs-tools/modules "
                        "/etc/initramfs-tools/modules.qdesk-20240102-030405\n"
                        "write /etc/initramfs-tools/modules\n");
    char *after = fs_read_file(path, 1 << 20, NULL);
    assert_non_null(strstr(after, grub_after));
    assert_null(strstr(after, "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet amd_iommu=on\""));
    assert_non_null(strstr(after, "GRUB_CMDLINE_LINUX=\"\"\n")); /* the rest is kept */
    assert_int_equal(strlen(after), strlen(before) + strlen(grub_after) -
                                        strlen("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet "
                                               "amd_iommu=on\""));
    fs_join(path, sizeof(path), root, "/etc/default/grub.qdesk-20240102-030405");
    char *backup = fs_read_file(path, 1 << 20, NULL);
    assert_string_equal(backup, before);
    fs_join(path, sizeof(path), root, KCMDLINE_MODULES);
    char *modules = fs_read_file(path, 4096, NULL);
    assert_string_equal(modules, "# vfio for GPUs given to guests; written by qdesk host "
                                 "cmdline --apply\nvfio\nvfio_iommu_type1\nvfio_pci\n");
    fs_join(path, sizeof(path), root, KCMDLINE_MODPROBE);
    char *modprobe = fs_read_file(path, 4096, NULL);
    assert_string_equal(modprobe,
                        "# vfio for GPUs given to guests; written by qdesk host "
                        "cmdline --apply\nsoftdep nvidia pre: vfio-pci\n"
                        "softdep nouveau pre: vfio-pci\n"
                        "softdep snd_hda_intel pre: vfio-pci\n");
    /* the vfio modules go into the initramfs, after Debian's own lines */
    fs_join(path, sizeof(path), root, KCMDLINE_INITRAMFS);
    char *initramfs = fs_read_file(path, 4096, NULL);
    assert_non_null(strstr(initramfs, "# raid1\n# sd_mod\nvfio\nvfio_iommu_type1\n"
                                      "vfio_pci\n"));
    free(initramfs);
    assert_non_null(
        strstr(msg, "now run update-initramfs -u and update-grub, then reboot"));
    assert_non_null(strstr(msg, "/etc/default/grub.qdesk-20240102-030405"));
    assert_non_null(strstr(msg, "/etc/initramfs-tools/modules: vfio-pci is in the "
                                "initramfs, to take the card before its driver does (the "
                                "old file is /etc/initramfs-tools/modules.qdesk-"
                                "20240102-030405)\n"));

    /* a second run changes nothing */
    hostw_record(true);
    assert_int_equal(
        kcmdline_apply(root, &p, now + 60, msg, sizeof(msg), err, sizeof(err)), 0);
    assert_string_equal(hostw_recorded(), "");
    assert_string_equal(msg, "the boot configuration already has all of this; nothing "
                             "changed\n");

    /* lines someone added stay; only missing ones are appended, after a backup */
    fx_put(root, KCMDLINE_MODULES, "# mine\nvfio_pci\n");
    hostw_record(true);
    assert_int_equal(
        kcmdline_apply(root, &p, now + 120, msg, sizeof(msg), err, sizeof(err)), 0);
    assert_string_equal(hostw_recorded(),
                        "cp /etc/modules-load.d/vfio.conf "
                        "/etc/modules-load.d/vfio.conf.qdesk-20240102-030605\n"
                        "write /etc/modules-load.d/vfio.conf\n");
    fs_join(path, sizeof(path), root,
            "/etc/modules-load.d/vfio.conf.qdesk-20240102-030605");
    free(modules);
    modules = fs_read_file(path, 4096, NULL);
    assert_string_equal(modules, "# mine\nvfio_pci\n");
    free(modules);
    fs_join(path, sizeof(path), root, KCMDLINE_MODULES);
    modules = fs_read_file(path, 4096, NULL);
    assert_string_equal(modules, "# mine\nvfio_pci\nvfio\nvfio_iommu_type1\n");
    fx_kernel_stop();
    free(before);
    free(after);
    free(backup);
    free(modules);
    free(modprobe);
    fx_drop(root);
}

static void apply_without_grub(void **state)
{
    (void)state;
    char *root = fx_copy("intel-sriov");
    char msg[1024], path[PATH_MAX];
    struct kcmdline_plan p;
    char *addrs[] = {"0000:00:02.0"};
    assert_int_equal(kcmdline_plan(root, addrs, 1, &p, err, sizeof(err)), 0);
    /* no GRUB_CMDLINE_LINUX_DEFAULT line: one is added */
    fx_put(root, KCMDLINE_GRUB, "GRUB_DEFAULT=0");
    assert_int_equal(kcmdline_apply(root, &p, 0, msg, sizeof(msg), err, sizeof(err)), 0);
    fs_join(path, sizeof(path), root, KCMDLINE_GRUB);
    char *text = fs_read_file(path, 4096, NULL);
    assert_string_equal(text,
                        "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"intel_iommu=on "
                        "iommu=pt kvm.ignore_msrs=1 i915.enable_guc=3 "
                        "i915.max_vfs=7\"\n");
    free(text);
    unlink(path);
    assert_int_equal(kcmdline_apply(root, &p, 0, msg, sizeof(msg), err, sizeof(err)), -1);
    assert_string_equal(err,
                        "cannot read /etc/default/grub (No such file or directory): "
                        "without GRUB, add the kernel parameters to your boot loader by "
                        "hand");
    fx_drop(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(passthrough_on_amd),
        cmocka_unit_test(sriov_and_gvt_on_intel),
        cmocka_unit_test(merging_never_duplicates),
        cmocka_unit_test(apply_writes_once_with_a_backup),
        cmocka_unit_test(apply_without_grub),
    };
    return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}

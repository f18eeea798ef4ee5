/* hostw: every privileged change is an `echo VALUE > PATH` below the sysroot,
 * recorded in order, reported with the command that failed, and seen by observers. */
#include "host/hostw.h"
#include "util/log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "../sysfs/fixture.h"

static char dir[64], err[1024];

static int setup(void **state)
{
    (void)state;
    log_set_level(LOG_ERROR);
    snprintf(dir, sizeof(dir), "/tmp/qdesk-hostw-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/sys/bus/pci/devices/0000:01:00.0", dir);
    assert_int_equal(fs_mkdir_p(path, 0755), 0);
    fx_put(dir, "/sys/bus/pci/devices/0000:01:00.0/driver_override", "(null)\n");
    fx_put(dir, "/sys/bus/pci/drivers_probe", "");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hostw_record(false);
    hostw_observe(NULL, NULL);
    fs_remove_tree(dir);
    return 0;
}

static void writes_like_echo(void **state)
{
    (void)state;
    char text[64];
    const char *attr = "/sys/bus/pci/devices/0000:01:00.0/driver_override";
    assert_int_equal(hostw_write(dir, attr, "vfio-pci", err, sizeof(err)), 0);
    char path[PATH_MAX];
    fs_join(path, sizeof(path), dir, attr);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = 0;
    assert_string_equal(text, "vfio-pci\n"); /* the whole file: truncated, then written */
    assert_int_equal(hostw_write(dir, attr, "", err, sizeof(err)), 0);
    assert_string_equal(fx_get(dir, attr), "");
}

static void records_in_order_and_reports_failures(void **state)
{
    (void)state;
    hostw_record(true);
    assert_int_equal(hostw_write(dir, "/sys/bus/pci/devices/0000:01:00.0/driver_override",
                                 "vfio-pci", err, sizeof(err)),
                     0);
    assert_int_equal(
        hostw_write(dir, "/sys/bus/pci/drivers_probe", "0000:01:00.0", err, sizeof(err)),
        0);
    /* attributes are never created */
    assert_int_equal(hostw_write(dir, "/sys/bus/pci/drivers/vfio-pci/bind",
                                 "0000:01:00.0", err, sizeof(err)),
                     -ENOENT);
    assert_string_equal(err, "echo 0000:01:00.0 > /sys/bus/pci/drivers/vfio-pci/bind: No "
                             "such file or directory");
    char path[PATH_MAX];
    fs_join(path, sizeof(path), dir, "/sys/bus/pci/drivers/vfio-pci/bind");
    assert_false(fs_exists(path));
    assert_string_equal(
        hostw_recorded(),
        "echo vfio-pci > /sys/bus/pci/devices/0000:01:00.0/driver_override\n"
        "echo 0000:01:00.0 > /sys/bus/pci/drivers_probe\n"
        "echo 0000:01:00.0 > /sys/bus/pci/drivers/vfio-pci/bind\n");
    hostw_record(true);
    assert_string_equal(hostw_recorded(), "");
    hostw_record(false);
    assert_int_equal(
        hostw_write(dir, "/sys/bus/pci/drivers_probe", "x", err, sizeof(err)), 0);
    assert_string_equal(hostw_recorded(), "");
}

struct seen {
    int n;
    char path[256], value[64];
};

static int observer(const char *sysroot, const char *path, const char *value, void *data)
{
    struct seen *s = data;
    assert_string_equal(sysroot, dir);
    s->n++;
    snprintf(s->path, sizeof(s->path), "%s", path);
    snprintf(s->value, sizeof(s->value), "%s", value ? value : "(file)");
    /* an attribute that refuses a value, as sriov_numvfs does while VFs exist */
    return value && !strcmp(value, "refused") ? -EBUSY : 0;
}

static void observers_see_successful_changes(void **state)
{
    (void)state;
    struct seen s = {0};
    hostw_observe(observer, &s);
    assert_int_equal(
        hostw_write(dir, "/sys/bus/pci/drivers_probe", "0000:01:00.0", err, sizeof(err)),
        0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.path, "/sys/bus/pci/drivers_probe");
    assert_string_equal(s.value, "0000:01:00.0");
    assert_int_equal(hostw_write(dir, "/sys/nothing", "1", err, sizeof(err)), -ENOENT);
    assert_int_equal(s.n, 1);
    /* the kernel's refusal is the write's failure, recorded and reported once */
    hostw_record(true);
    assert_int_equal(
        hostw_write(dir, "/sys/bus/pci/drivers_probe", "refused", err, sizeof(err)),
        -EBUSY);
    assert_int_equal(s.n, 2);
    assert_string_equal(err, "echo refused > /sys/bus/pci/drivers_probe: Device or "
                             "resource busy");
    assert_string_equal(hostw_recorded(), "echo refused > /sys/bus/pci/drivers_probe\n");
    hostw_record(false);
    hostw_observe(NULL, NULL);
}

static void files_are_replaced_copied_and_chowned(void **state)
{
    (void)state;
    hostw_record(true);
    const char *text = "vfio\nvfio_pci\n";
    assert_int_equal(hostw_replace_file(dir, "/etc/modules-load.d/vfio.conf", text,
                                        strlen(text), 0644, err, sizeof(err)),
                     0);
    assert_string_equal(fx_get(dir, "/etc/modules-load.d/vfio.conf"), "vfio");
    assert_int_equal(hostw_copy_file(dir, "/etc/modules-load.d/vfio.conf",
                                     "/etc/modules-load.d/vfio.conf.bak", err,
                                     sizeof(err)),
                     0);
    assert_int_equal(hostw_copy_file(dir, "/etc/modules-load.d/vfio.conf",
                                     "/etc/modules-load.d/vfio.conf.bak", err,
                                     sizeof(err)),
                     -EEXIST); /* a backup is never overwritten */
    fx_put(dir, "/dev_vfio_8", "");
    assert_int_equal(
        hostw_chown(dir, "/dev_vfio_8", getuid(), getgid(), err, sizeof(err)), 0);
    char want[512];
    snprintf(want, sizeof(want),
             "write /etc/modules-load.d/vfio.conf\n"
             "cp /etc/modules-load.d/vfio.conf /etc/modules-load.d/vfio.conf.bak\n"
             "cp /etc/modules-load.d/vfio.conf /etc/modules-load.d/vfio.conf.bak\n"
             "chown %u:%u /dev_vfio_8\n",
             (unsigned)getuid(), (unsigned)getgid());
    assert_string_equal(hostw_recorded(), want);
    hostw_record(false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(writes_like_echo),
        cmocka_unit_test(records_in_order_and_reports_failures),
        cmocka_unit_test(observers_see_successful_changes),
        cmocka_unit_test(files_are_replaced_copied_and_chowned),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

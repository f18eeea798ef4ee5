/* The machine catalogue, read from a real directory with real qemu-img. */
#include "catalog/catalog.h"
#include "util/fs.h"
#include "util/proc.h"

#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

static char dir[64], outside[64], qemu_img[PATH_MAX];

static void sh_qemu_img(const char *const *args)
{
    char *argv[16] = {qemu_img};
    size_t n = 1;
    for (size_t i = 0; args[i]; i++)
        argv[n++] = (char *)args[i];
    struct proc_spawn s = {.argv = argv, .stdout_fd = -1, .stderr_fd = -1};
    char err[256];
    assert_int_equal(proc_run(&s, 10000, NULL, 0, err, sizeof(err)), 0);
}

static void put(const char *name, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(fs_write_file(path, text, strlen(text), 0644), 0);
}

static void image(const char *name, const char *format)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    const char *args[] = {"create", "-q", "-f", format, path, "16M", NULL};
    sh_qemu_img(args);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(proc_find_exe("qemu-img", qemu_img, sizeof(qemu_img)), 0);
    snprintf(dir, sizeof(dir), "/tmp/qdesk-catalog-XXXXXX");
    snprintf(outside, sizeof(outside), "/tmp/qdesk-outside-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_non_null(mkdtemp(outside));
    char path[PATH_MAX], opt[PATH_MAX + 32];

    image("debian.qcow2", "qcow2");
    put("debian.conf", "# Debian\ndescription = Debian 12, GNOME\ncpus = 2\nmemory = 2G\n"
                       "firmware = uefi\ngpu = virgl, passthrough\nsockets = 2\n");
    image("disguised.img", "qcow2");
    image("plain.raw", "raw");
    image("old.vhd", "vpc");
    image("fake.iso", "raw");
    image("real.iso", "raw");
    snprintf(path, sizeof(path), "%s/real.iso", dir);
    int fd = open(path, O_WRONLY);
    assert_int_equal(pwrite(fd, "CD001", 5, 16 * 2048 + 1), 5);
    close(fd);

    /* escapes */
    snprintf(path, sizeof(path), "%s/base.raw", outside);
    const char *mk[] = {"create", "-q", "-f", "raw", path, "16M", NULL};
    sh_qemu_img(mk);
    char evil[PATH_MAX];
    snprintf(evil, sizeof(evil), "%s/evil.qcow2", dir);
    const char *ev[] = {"create", "-q", "-f", "qcow2", "-F",
                        "raw",    "-b", path, evil,    NULL};
    sh_qemu_img(ev);
    snprintf(evil, sizeof(evil), "%s/link.qcow2", dir);
    assert_int_equal(symlink(path, evil), 0);
    snprintf(opt, sizeof(opt), "data_file=%s/data.bin", outside);
    snprintf(evil, sizeof(evil), "%s/datafile.qcow2", dir);
    const char *df[] = {"create", "-q", "-f", "qcow2", "-o", opt, evil, "16M", NULL};
    sh_qemu_img(df);
    /* a chain that stays inside is fine */
    snprintf(path, sizeof(path), "%s/debian.qcow2", dir);
    snprintf(evil, sizeof(evil), "%s/child.qcow2", dir);
    const char *ch[] = {"create", "-q", "-f", "qcow2", "-F",
                        "qcow2",  "-b", path, evil,    NULL};
    sh_qemu_img(ch);

    image("dup.qcow2", "qcow2");
    image("dup.raw", "raw");
    image("badconf.qcow2", "qcow2");
    put("badconf.conf", "description = x\nfirmware = coreboot\n");
    image("arm.qcow2", "qcow2");
    put("arm.conf", "arch = aarch64\nfirmware = bios\n");
    put("tiny.conf",
        "description = kernel only\nkernel = tiny.vmlinuz\nappend = quiet\n");
    put("tiny.vmlinuz", "not really a kernel");
    put("oddtopo.conf", "kernel = tiny.vmlinuz\ncpus = 3\nthreads = 2\n");
    put("bigtopo.conf", "kernel = tiny.vmlinuz\nthreads = 9\n");
    snprintf(path, sizeof(path), "%s/escape.vmlinuz", dir);
    assert_int_equal(symlink("/etc/hostname", path), 0);
    put("escape.conf", "kernel = escape.vmlinuz\n");
    image("has space.qcow2", "qcow2");
    image(".hidden.qcow2", "qcow2");
    put("notes.txt", "ignored");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fs_remove_tree(dir);
    fs_remove_tree(outside);
    return 0;
}

static const struct catalog_machine *get(const struct catalog *c, const char *name)
{
    const struct catalog_machine *m = catalog_find(c, name);
    if (!m)
        fail_msg("machine %s missing", name);
    return m;
}

static void formats_come_from_the_file(void **state)
{
    (void)state;
    char err[256];
    struct catalog *c = catalog_load(dir, qemu_img, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(get(c, "debian")->chain[0].format, "qcow2");
    assert_string_equal(get(c, "disguised")->chain[0].format, "qcow2");
    assert_string_equal(get(c, "plain")->chain[0].format, "raw");
    assert_string_equal(get(c, "old")->chain[0].format, "vpc");
    assert_int_equal(get(c, "debian")->virtual_size, 16 << 20);
    assert_int_equal(get(c, "real")->media, CATALOG_MEDIA_CDROM);
    assert_string_equal(get(c, "real")->refused, "");
    assert_non_null(strstr(get(c, "fake")->refused, "not an ISO 9660 image"));
    const struct catalog_machine *child = get(c, "child");
    assert_string_equal(child->refused, "");
    assert_int_equal(child->n_chain, 2);
    assert_non_null(strstr(child->chain[1].path, "/debian.qcow2"));
    assert_null(catalog_find(c, ".hidden"));
    assert_null(catalog_find(c, "notes"));
    /* sorted by name */
    for (size_t i = 1; i < c->n; i++)
        assert_true(strcmp(c->machines[i - 1].name, c->machines[i].name) < 0);
    catalog_free(c);
}

static void escapes_are_refused(void **state)
{
    (void)state;
    char err[256];
    struct catalog *c = catalog_load(dir, qemu_img, err, sizeof(err));
    assert_non_null(strstr(get(c, "evil")->refused, "backing file"));
    assert_non_null(strstr(get(c, "evil")->refused, "outside the catalogue"));
    assert_non_null(strstr(get(c, "link")->refused, "image"));
    assert_non_null(strstr(get(c, "link")->refused, "outside the catalogue"));
    assert_non_null(strstr(get(c, "datafile")->refused, "data file"));
    assert_non_null(strstr(get(c, "escape")->refused, "kernel"));
    assert_non_null(strstr(get(c, "escape")->refused, "outside the catalogue"));
    catalog_free(c);
}

static void sidecars(void **state)
{
    (void)state;
    char err[256];
    struct catalog *c = catalog_load(dir, qemu_img, err, sizeof(err));
    const struct catalog_machine *d = get(c, "debian");
    assert_string_equal(d->description, "Debian 12, GNOME");
    assert_int_equal(d->cpus, 2);
    assert_int_equal(d->sockets, 2);
    assert_int_equal(d->threads, 0); /* unset: one */
    assert_non_null(strstr(get(c, "oddtopo")->refused,
                           "cpus: 3 is not a multiple of sockets x threads (1 x 2 = 2)"));
    assert_non_null(strstr(get(c, "bigtopo")->refused,
                           "threads: '9' must be a whole number from 1 to 8"));
    assert_int_equal(d->memory_mb, 2048);
    assert_string_equal(d->firmware, "uefi");
    assert_string_equal(d->machine_type, "q35");
    assert_int_equal(d->gpus,
                     (1 << 0) | (1 << 1) | (1 << 3)); /* none, virgl, passthrough */
    assert_non_null(
        strstr(get(c, "badconf")->refused, "badconf.conf:2: firmware: 'coreboot'"));
    assert_non_null(strstr(get(c, "arm")->refused, "aarch64 guests boot with uefi"));
    const struct catalog_machine *t = get(c, "tiny");
    assert_string_equal(t->refused, "");
    assert_int_equal(t->media, CATALOG_MEDIA_NONE);
    assert_non_null(strstr(t->kernel, "/tiny.vmlinuz"));
    assert_non_null(strstr(get(c, "dup")->refused, "more than one image"));
    assert_non_null(strstr(get(c, "has space")->refused, "the name may hold only"));
    catalog_free(c);
}

static void json_listing(void **state)
{
    (void)state;
    char err[256];
    struct catalog *c = catalog_load(dir, qemu_img, err, sizeof(err));
    json_t *j = catalog_machine_json(get(c, "debian"));
    assert_string_equal(json_string_value(json_object_get(j, "format")), "qcow2");
    assert_string_equal(json_string_value(json_object_get(j, "description")),
                        "Debian 12, GNOME");
    assert_int_equal(json_array_size(json_object_get(j, "gpus")), 3);
    assert_null(json_object_get(j, "refused"));
    json_decref(j);
    catalog_free(c);
    assert_null(catalog_load("/nonexistent/machines", qemu_img, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/machines"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(formats_come_from_the_file),
        cmocka_unit_test(escapes_are_refused),
        cmocka_unit_test(sidecars),
        cmocka_unit_test(json_listing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

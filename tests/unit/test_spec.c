/* Requests and their resolution: what a user may ask for, and what they get. */
#include "catalog/catalog.h"
#include "config.h"
#include "qemu/spec.h"
#include "util/fs.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

static char err[1024];

static void host_and_limits(struct spec_host *h, struct spec_limits *l)
{
    memset(h, 0, sizeof(*h));
    snprintf(h->arch, sizeof(h->arch), "x86_64");
    h->cores = 4;
    h->memory_mb = 8192;
    snprintf(h->accel, sizeof(h->accel), "auto");
    h->qemu_x86_64 = (struct spec_file){"/usr/bin/qemu-system-x86_64", true};
    h->ovmf_code = (struct spec_file){"/fw/code.fd", true};
    h->ovmf_vars = (struct spec_file){"/fw/vars.fd", true};
    *l = (struct spec_limits){.min_memory_mb = 128,
                              .default_memory_mb = 1024,
                              .default_cpus = 1,
                              .default_lifetime_s = 3600,
                              .min_lifetime_s = 60,
                              .max_lifetime_s = 86400,
                              .default_disk_gb = 8,
                              .max_disk_gb = 100};
}

static void disk_machine(struct catalog_machine *m, const char *name)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "%s", name);
    m->media = CATALOG_MEDIA_DISK;
    m->n_chain = 1;
    snprintf(m->chain[0].path, sizeof(m->chain[0].path), "/m/%s.qcow2", name);
    snprintf(m->chain[0].format, sizeof(m->chain[0].format), "qcow2");
    assert_int_equal(catalog_finish(m, err, sizeof(err)), 0);
}

static void request_fields(void **state)
{
    (void)state;
    struct spec_request r = {.source = SPEC_FROM_CLI};
    assert_int_equal(spec_request_set(&r, "gpu", "mdev:i915-GVTg_V5_4", err, sizeof(err)),
                     0);
    assert_int_equal(r.gpu, SPEC_GPU_MDEV);
    assert_string_equal(r.gpu_type, "i915-GVTg_V5_4");
    assert_int_equal(spec_request_set(&r, "gpu", "vf:x", err, sizeof(err)), -1);
    assert_string_equal(err, "--gpu: 'vf:x' is not one of " SPEC_GPU_NAMES);
    assert_int_equal(spec_request_set(&r, "gpu", "mdev:", err, sizeof(err)), -1);
    /* the command line takes sizes and durations */
    assert_int_equal(spec_request_set(&r, "memory", "2G", err, sizeof(err)), 0);
    assert_int_equal(r.memory_mb, 2048);
    assert_int_equal(spec_request_set(&r, "memory", "12X", err, sizeof(err)), -1);
    assert_string_equal(err, "--memory: '12X' must be a size such as 512M or 4G");
    assert_int_equal(spec_request_set(&r, "lifetime", "1h30m", err, sizeof(err)), 0);
    assert_int_equal(r.lifetime_s, 5400);
    assert_int_equal(spec_request_set(&r, "memory_mb", "2048", err, sizeof(err)), -1);
    assert_string_equal(err, "'memory_mb' is not a session field");
    assert_int_equal(spec_request_set(&r, "net", "bridge=br0", err, sizeof(err)), 0);
    assert_int_equal(r.net, SPEC_NET_BRIDGE);
    assert_string_equal(r.bridge, "br0");
    assert_int_equal(
        spec_request_set(&r, "net", "bridge=averyveryverylongname", err, sizeof(err)),
        -1);
    assert_int_equal(spec_request_set(&r, "colour", "red", err, sizeof(err)), -1);
    assert_string_equal(err, "'colour' is not a session field");

    /* the API takes MiB and seconds */
    struct spec_request a = {0};
    assert_int_equal(spec_request_set(&a, "memory_mb", "2G", err, sizeof(err)), -1);
    assert_string_equal(err, "memory_mb: '2G' must be a whole number of MiB");
    assert_int_equal(spec_request_set(&a, "lifetime_s", "5400", err, sizeof(err)), 0);
    assert_int_equal(a.lifetime_s, 5400);
    assert_int_equal(spec_request_set(&a, "memory", "2G", err, sizeof(err)), -1);
    assert_string_equal(err, "'memory' is not a session field");
}

static void usb_and_mount_lists(void **state)
{
    (void)state;
    struct spec_request r = {0};
    const char *ok[] = {"046d:c52b", "1-2", "3-1.4.2", "0BDA:8153"};
    const char *bad[] = {"046d:c52", "1-", "-2", "1-2..3", "046d-c52b", "usb1"};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(spec_request_set(&r, "usb", ok[i], err, sizeof(err)), 0);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(spec_request_set(&r, "usb", bad[i], err, sizeof(err)), -1);
    assert_int_equal(r.n_usb, 4);
    for (size_t i = 4; i < SPEC_MAX_USB; i++)
        assert_int_equal(spec_request_set(&r, "usb", "1-1", err, sizeof(err)), 0);
    assert_int_equal(spec_request_set(&r, "usb", "1-1", err, sizeof(err)), -1);
    assert_string_equal(err, "usb: at most 8 devices");

    assert_int_equal(spec_request_set(&r, "mounts", "/srv/data", err, sizeof(err)), 0);
    assert_int_equal(spec_request_set(&r, "mounts", "/srv/a\nb", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "mounts: control characters"));
    struct spec_request c = {.source = SPEC_FROM_CLI};
    assert_int_equal(spec_request_set(&c, "mount", "data", err, sizeof(err)), -1);
    assert_string_equal(err, "--mount: 'data' must be an absolute path");
    assert_int_equal(spec_request_set(&c, "mount", "/srv/../etc", err, sizeof(err)), -1);
}

/* One check, two vocabularies: the command line's options and the API's fields, each
 * with the range allowed. */
static void errors_name_the_field_as_its_source_does(void **state)
{
    (void)state;
    struct spec_host h;
    struct spec_limits l;
    struct catalog_machine m;
    struct vm_spec s;
    host_and_limits(&h, &l);
    disk_machine(&m, "desk");
    static const struct {
        const char *field, *value, *cli, *api_field, *api_value, *api;
    } cases[] = {
        {"cpus", "0", "--cpus: 0 is out of range (allowed 1..4)", "cpus", "0",
         "cpus: 0 is out of range (allowed 1..4)"},
        {"cpus", "9", "--cpus: 9 is more than this host's 4 cores (allowed 1..4)", "cpus",
         "9", "cpus: 9 is more than this host's 4 cores (allowed 1..4)"},
        {"memory", "64M", "--memory: 64 MiB is out of range (allowed 128..8192 MiB)",
         "memory_mb", "64", "memory_mb: 64 MiB is out of range (allowed 128..8192 MiB)"},
        {"memory", "100K", "--memory: 0 MiB is out of range (allowed 128..8192 MiB)",
         "memory_mb", "0", "memory_mb: 0 MiB is out of range (allowed 128..8192 MiB)"},
        {"lifetime", "30d", "--lifetime: 30d is out of range (allowed 1m..1d)",
         "lifetime_s", "2592000",
         "lifetime_s: 2592000 seconds is out of range (allowed 1m..1d)"},
        {"lifetime", "0s", "--lifetime: 0s is out of range (allowed 1m..1d)",
         "lifetime_s", "0", "lifetime_s: 0 seconds is out of range (allowed 1m..1d)"},
        {"disk", "4", "--disk: only machines that boot from an ISO get a data disk",
         "disk_gb", "4", "disk_gb: only machines that boot from an ISO get a data disk"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct spec_request c = {.source = SPEC_FROM_CLI}, a = {0};
        assert_int_equal(
            spec_request_set(&c, cases[i].field, cases[i].value, err, sizeof(err)), 0);
        assert_int_equal(
            spec_resolve(&c, &m, &h, &l, "a", "/run/a", &s, err, sizeof(err)), -1);
        assert_string_equal(err, cases[i].cli);
        assert_int_equal(spec_request_set(&a, cases[i].api_field, cases[i].api_value, err,
                                          sizeof(err)),
                         0);
        assert_int_equal(
            spec_resolve(&a, &m, &h, &l, "a", "/run/a", &s, err, sizeof(err)), -1);
        assert_string_equal(err, cases[i].api);
    }
    /* a zero nobody gave is a default */
    struct spec_request none = {.source = SPEC_FROM_CLI};
    assert_int_equal(spec_resolve(&none, &m, &h, &l, "a", "/run/a", &s, err, sizeof(err)),
                     0);
    assert_int_equal(s.cpus, 1);
    assert_int_equal(s.lifetime_s, 3600);
}

static void request_beats_sidecar_beats_service(void **state)
{
    (void)state;
    struct spec_host h;
    struct spec_limits l;
    struct catalog_machine m;
    struct vm_spec s;
    struct spec_request r = {0};
    host_and_limits(&h, &l);
    disk_machine(&m, "desk");
    assert_int_equal(spec_resolve(&r, &m, &h, &l, "a", "/run/a", &s, err, sizeof(err)),
                     0);
    assert_int_equal(s.cpus, 1);
    assert_int_equal(s.memory_mb, 1024);
    m.cpus = 2;
    m.memory_mb = 2048;
    assert_int_equal(spec_resolve(&r, &m, &h, &l, "a", "/run/a", &s, err, sizeof(err)),
                     0);
    assert_int_equal(s.cpus, 2);
    assert_int_equal(s.memory_mb, 2048);
    r.cpus = 3;
    r.memory_mb = 4096;
    assert_int_equal(spec_resolve(&r, &m, &h, &l, "a", "/run/a", &s, err, sizeof(err)),
                     0);
    assert_int_equal(s.cpus, 3);
    assert_int_equal(s.memory_mb, 4096);
    /* a service maximum below the host's memory wins */
    l.max_memory_mb = 2048;
    assert_int_equal(spec_resolve(&r, &m, &h, &l, "a", "/run/a", &s, err, sizeof(err)),
                     -1);
    assert_string_equal(err,
                        "memory_mb: 4096 MiB is out of range (allowed 128..2048 MiB)");
}

static void accelerator_choice(void **state)
{
    (void)state;
    struct spec_host h;
    struct spec_limits l;
    struct catalog_machine m;
    struct vm_spec s;
    struct spec_request r = {0};
    host_and_limits(&h, &l);
    disk_machine(&m, "desk");
    h.kvm_usable = false;
    snprintf(h.kvm_why, sizeof(h.kvm_why), "the CPU has no vmx or svm flag");
    assert_int_equal(spec_resolve(&r, &m, &h, &l, "a", "/run/a", &s, err, sizeof(err)),
                     0);
    assert_false(s.kvm);
    assert_string_equal(s.accel_why, "the CPU has no vmx or svm flag");
    h.kvm_usable = true;
    assert_int_equal(spec_resolve(&r, &m, &h, &l, "a", "/run/a", &s, err, sizeof(err)),
                     0);
    assert_true(s.kvm);
    snprintf(h.arch, sizeof(h.arch), "aarch64");
    assert_int_equal(spec_resolve(&r, &m, &h, &l, "a", "/run/a", &s, err, sizeof(err)),
                     0);
    assert_false(s.kvm);
    assert_string_equal(s.accel_why, "KVM runs only aarch64 guests on this host");
    snprintf(h.arch, sizeof(h.arch), "x86_64");
    snprintf(h.accel, sizeof(h.accel), "tcg");
    assert_int_equal(spec_resolve(&r, &m, &h, &l, "a", "/run/a", &s, err, sizeof(err)),
                     0);
    assert_false(s.kvm);
    assert_string_equal(s.accel_why, "[qemu] accel = tcg");
    /* forcing KVM on a host where it cannot run guests is the operator's call */
    h.kvm_usable = false;
    snprintf(h.accel, sizeof(h.accel), "kvm");
    assert_int_equal(spec_resolve(&r, &m, &h, &l, "a", "/run/a", &s, err, sizeof(err)),
                     0);
    assert_true(s.kvm);
}

/* With a QEMU user configured, KVM is chosen only when that user may open /dev/kvm;
 * otherwise the reason names the user and the fix. */
static void kvm_only_for_a_qemu_user_that_may_open_it(void **state)
{
    (void)state;
    char root[] = "/tmp/qdesk-accel-XXXXXX", path[PATH_MAX];
    assert_non_null(mkdtemp(root));
    snprintf(path, sizeof(path), "%s/proc", root);
    assert_int_equal(fs_mkdir_p(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/proc/cpuinfo", root);
    const char *cpuinfo = "processor\t: 0\nflags\t\t: fpu vmx sse2\n";
    assert_int_equal(fs_write_file(path, cpuinfo, strlen(cpuinfo), 0644), 0);
    snprintf(path, sizeof(path), "%s/dev", root);
    assert_int_equal(fs_mkdir_p(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/dev/kvm", root);
    assert_int_equal(fs_write_file(path, "", 0, 0600), 0);

    struct config cfg;
    struct spec_host h;
    config_defaults(&cfg);
    snprintf(cfg.sysroot, sizeof(cfg.sysroot), "%s", root);
    assert_int_equal(spec_host_probe(&cfg, &h, err, sizeof(err)), 0);
    if (geteuid() == 0) { /* QEMU never runs as root: it is qdesk-qemu's to open */
        assert_false(h.kvm_usable);
        assert_non_null(strstr(h.kvm_why, "QEMU's user qdesk-qemu"));
    } else {
        assert_true(h.kvm_usable); /* the service's own user runs QEMU */
    }
    snprintf(cfg.qemu_user, sizeof(cfg.qemu_user), "nobody");
    spec_host_probe(&cfg, &h, err, sizeof(err));
    assert_false(h.kvm_usable);
    assert_non_null(strstr(h.kvm_why, "QEMU's user nobody ([qemu] qemu_user) may not "
                                      "open"));
    assert_non_null(strstr(h.kvm_why, "(mode 600, group"));
    assert_int_equal(chmod(path, 0666), 0);
    spec_host_probe(&cfg, &h, err, sizeof(err));
    assert_true(h.kvm_usable);
    snprintf(cfg.qemu_user, sizeof(cfg.qemu_user), "no-such-user");
    spec_host_probe(&cfg, &h, err, sizeof(err));
    assert_false(h.kvm_usable);
    assert_string_equal(h.kvm_why,
                        "[qemu] qemu_user: user 'no-such-user' does not exist");
    assert_int_equal(fs_remove_tree(root), 0);
}

/* QEMU never runs as root: not by default, not by configuration. */
static void the_qemu_user_is_never_root(void **state)
{
    (void)state;
    struct config cfg;
    struct vm_user u;
    config_defaults(&cfg);
    snprintf(cfg.qemu_user, sizeof(cfg.qemu_user), "root");
    assert_int_equal(spec_qemu_user(&cfg, &u, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "'root' is root, and QEMU never runs as root"));
    assert_false(u.set);
    snprintf(cfg.qemu_user, sizeof(cfg.qemu_user), "nobody");
    assert_int_equal(spec_qemu_user(&cfg, &u, err, sizeof(err)), 0);
    assert_true(u.set && u.uid != 0);
    assert_string_equal(u.name, "nobody");
    snprintf(cfg.qemu_user, sizeof(cfg.qemu_user), "no-such-user");
    assert_int_equal(spec_qemu_user(&cfg, &u, err, sizeof(err)), -1);
    assert_string_equal(err, "[qemu] qemu_user: user 'no-such-user' does not exist");
    cfg.qemu_user[0] = 0;
    assert_string_equal(config_qemu_user(&cfg), geteuid() == 0 ? "qdesk-qemu" : "");
}

/* [usernet] keys are checked when the host is probed, naming the key. */
static void usernet_keys_are_checked(void **state)
{
    (void)state;
    struct config cfg;
    struct spec_host h;
    config_defaults(&cfg);
    snprintf(cfg.sysroot, sizeof(cfg.sysroot), "/nonexistent");
    snprintf(cfg.dns, sizeof(cfg.dns), "9.9.9.9, 2620:fe::fe");
    assert_int_equal(spec_host_probe(&cfg, &h, err, sizeof(err)), 0);
    assert_int_equal(h.n_usernet_dns, 2);
    assert_string_equal(h.usernet_dns[1], "2620:fe::fe");
    assert_string_equal(h.firewall_table, "qdesk");
    snprintf(cfg.dns, sizeof(cfg.dns), "9.9.9.9 resolver.example");
    assert_int_equal(spec_host_probe(&cfg, &h, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "[usernet] dns: 'resolver.example' is not an IPv4 or IPv6 address");
    cfg.dns[0] = 0;
    snprintf(cfg.firewall_table, sizeof(cfg.firewall_table), "qdesk; flush ruleset");
    assert_int_equal(spec_host_probe(&cfg, &h, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "[usernet] firewall_table: 'qdesk; flush ruleset' must be"));
}

static void macs_are_stable_and_distinct(void **state)
{
    (void)state;
    struct spec_host h;
    struct spec_limits l;
    struct catalog_machine m;
    struct vm_spec a, b, c;
    struct spec_request r = {0};
    host_and_limits(&h, &l);
    disk_machine(&m, "desk");
    assert_int_equal(spec_resolve(&r, &m, &h, &l, "s-1", "/run/1", &a, err, sizeof(err)),
                     0);
    assert_int_equal(spec_resolve(&r, &m, &h, &l, "s-2", "/run/2", &b, err, sizeof(err)),
                     0);
    assert_int_equal(spec_resolve(&r, &m, &h, &l, "s-1", "/run/1", &c, err, sizeof(err)),
                     0);
    assert_string_not_equal(a.mac, b.mac);
    assert_string_equal(a.mac, c.mac);
    assert_memory_equal(a.mac, "52:54:00:", 9);
}

static void iso_gets_a_data_disk(void **state)
{
    (void)state;
    struct spec_host h;
    struct spec_limits l;
    struct catalog_machine m;
    struct vm_spec s;
    struct spec_request r = {0};
    host_and_limits(&h, &l);
    disk_machine(&m, "live");
    m.media = CATALOG_MEDIA_CDROM;
    assert_int_equal(spec_resolve(&r, &m, &h, &l, "a", "/run/a", &s, err, sizeof(err)),
                     0);
    assert_true(s.cdrom);
    assert_int_equal(s.data_disk_gb, 8);
    r.disk_gb = 101;
    assert_int_equal(spec_resolve(&r, &m, &h, &l, "a", "/run/a", &s, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "disk_gb: 101 GiB is more than allowed (1..100)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_fields),
        cmocka_unit_test(usb_and_mount_lists),
        cmocka_unit_test(errors_name_the_field_as_its_source_does),
        cmocka_unit_test(request_beats_sidecar_beats_service),
        cmocka_unit_test(accelerator_choice),
        cmocka_unit_test(kvm_only_for_a_qemu_user_that_may_open_it),
        cmocka_unit_test(the_qemu_user_is_never_root),
        cmocka_unit_test(usernet_keys_are_checked),
        cmocka_unit_test(macs_are_stable_and_distinct),
        cmocka_unit_test(iso_gets_a_data_disk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

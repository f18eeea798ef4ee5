/* Admission control: each limit refuses with a message naming it. */
#include "session/admission.h"
#include "util/fs.h"

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

static char root[64];

/* A fake /proc with the given load and MemAvailable. */
static void fake_proc(const char *loadavg, long avail_kb)
{
    char path[PATH_MAX], text[256];
    snprintf(path, sizeof(path), "%s/proc", root);
    fs_mkdir_p(path, 0755);
    snprintf(path, sizeof(path), "%s/proc/loadavg", root);
    fs_write_file(path, loadavg, strlen(loadavg), 0644);
    snprintf(text, sizeof(text),
             "MemTotal:       16384000 kB\nMemFree:  100 kB\n"
             "MemAvailable:   %ld kB\n",
             avail_kb);
    snprintf(path, sizeof(path), "%s/proc/meminfo", root);
    fs_write_file(path, text, strlen(text), 0644);
}

static void setup_cfg(struct config *c, struct spec_host *h)
{
    config_defaults(c);
    snprintf(c->sysroot, sizeof(c->sysroot), "%s", root);
    c->max_sessions = 10;
    c->max_sessions_per_user = 2;
    c->user_cpu_fraction = 0.5;
    c->user_memory_fraction = 0.5;
    c->max_load_per_core = 2.0;
    c->min_mem_available_mb = 1024;
    memset(h, 0, sizeof(*h));
    h->cores = 8;
    h->memory_mb = 16000;
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/qdesk-admission-XXXXXX");
    assert_non_null(mkdtemp(root));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fs_remove_tree(root);
    return 0;
}

static void each_limit(void **state)
{
    (void)state;
    struct config c;
    struct spec_host h;
    char msg[512];
    setup_cfg(&c, &h);
    fake_proc("1.00 0.50 0.25 1/100 1234\n", 8 * 1024 * 1024);
    struct admission_usage u = {0};
    assert_int_equal(admission_check(&c, &h, &u, 2, 2048, msg, sizeof(msg)), ADMIT_OK);

    u = (struct admission_usage){.sessions = 10};
    assert_int_equal(admission_check(&c, &h, &u, 1, 512, msg, sizeof(msg)),
                     ADMIT_MAX_SESSIONS);
    assert_non_null(strstr(msg, "max_sessions) is 10"));

    u = (struct admission_usage){.sessions = 3, .user_sessions = 2};
    assert_int_equal(admission_check(&c, &h, &u, 1, 512, msg, sizeof(msg)),
                     ADMIT_MAX_SESSIONS_PER_USER);
    assert_non_null(strstr(msg, "you already have 2 sessions"));

    u = (struct admission_usage){.sessions = 1, .user_sessions = 1, .user_cpus = 3};
    assert_int_equal(admission_check(&c, &h, &u, 2, 512, msg, sizeof(msg)),
                     ADMIT_USER_CPUS);
    assert_non_null(strstr(msg, "5 of this host's 8 cores"));
    assert_int_equal(admission_check(&c, &h, &u, 1, 512, msg, sizeof(msg)), ADMIT_OK);

    u = (struct admission_usage){
        .sessions = 1, .user_sessions = 1, .user_memory_mb = 7000};
    assert_int_equal(admission_check(&c, &h, &u, 1, 2000, msg, sizeof(msg)),
                     ADMIT_USER_MEMORY);
    assert_non_null(strstr(msg, "user_memory_fraction"));

    u = (struct admission_usage){0};
    fake_proc("24.00 10.00 5.00 1/100 1234\n", 8 * 1024 * 1024);
    assert_int_equal(admission_check(&c, &h, &u, 1, 512, msg, sizeof(msg)), ADMIT_LOAD);
    assert_non_null(strstr(msg, "3.00 per core"));

    fake_proc("0.10 0.10 0.10 1/100 1234\n", 2 * 1024 * 1024); /* 2 GiB available */
    assert_int_equal(admission_check(&c, &h, &u, 1, 1024, msg, sizeof(msg)), ADMIT_OK);
    assert_int_equal(admission_check(&c, &h, &u, 1, 1025, msg, sizeof(msg)),
                     ADMIT_MEM_AVAILABLE);
    assert_non_null(strstr(msg, "1025 MiB asked, 2048 MiB available"));
    assert_string_equal(admission_reason_name(ADMIT_MEM_AVAILABLE),
                        "min_mem_available_mb");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(each_limit)};
    return cmocka_run_group_tests(tests, setup, teardown);
}

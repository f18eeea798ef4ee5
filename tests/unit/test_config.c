/* The service config: defaults, typed keys, and errors naming file:line. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

static char *write_conf(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/qdesk-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void zero_config(void **state)
{
    (void)state;
    struct config c;
    char err[256];
    config_defaults(&c);
    assert_int_equal(config_load(&c, "/nonexistent/qdesk.conf", false, err, sizeof(err)),
                     0);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_string_equal(c.auth, "none");
    assert_string_equal(c.machines, "machines");
    /* but a file the user named must exist */
    assert_int_equal(config_load(&c, "/nonexistent/qdesk.conf", true, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "/nonexistent/qdesk.conf"));
}

static void typed_values(void **state)
{
    (void)state;
    struct config c;
    char err[256];
    config_defaults(&c);
    char *path = write_conf("[server]\nlisten = 0.0.0.0:9000\n[auth]\nauth = local\n"
                            "[sessions]\nmax_lifetime_s = 2d\nmax_memory_mb = 8G\n"
                            "[limits]\nuser_cpu_fraction = 0.5\nmax_sessions = 10\n"
                            "[qemu]\nstop_grace_s = 90s\n");
    assert_int_equal(config_load(&c, path, true, err, sizeof(err)), 0);
    unlink(path);
    assert_string_equal(c.listen, "0.0.0.0:9000");
    assert_string_equal(c.auth, "local");
    assert_int_equal(c.max_lifetime_s, 172800);
    assert_int_equal(c.max_memory_mb, 8192);
    assert_int_equal(c.max_sessions, 10);
    assert_int_equal(c.stop_grace_s, 90);
    assert_true(c.user_cpu_fraction > 0.49 && c.user_cpu_fraction < 0.51);
}

static void bad_values_name_the_line(void **state)
{
    (void)state;
    struct config c;
    char err[512];
    config_defaults(&c);
    char *path = write_conf("[auth]\nauth = kerberos\n");
    assert_int_equal(config_load(&c, path, true, err, sizeof(err)), -1);
    assert_non_null(
        strstr(err, ":2: [auth] auth = 'kerberos' must be one of none|local|pam"));
    unlink(path);
    path = write_conf("[server]\n\nlisen = 1.2.3.4:80\n");
    assert_int_equal(config_load(&c, path, true, err, sizeof(err)), -1);
    assert_non_null(strstr(err, ":3: [server] lisen is not a known setting"));
    unlink(path);
    path = write_conf("[limits]\nmax_sessions = -3\n");
    assert_int_equal(config_load(&c, path, true, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "must be a whole number"));
    unlink(path);
}

static void named_sections_are_kept_for_their_modules(void **state)
{
    (void)state;
    struct config c;
    char err[512];
    config_defaults(&c);
    char *path = write_conf("[network lab]\nbridge = qdbr-lab\ncidr = 10.1.0.0/24\n"
                            "[limits]\nmax_sessions = 5\n[limits.physics]\n"
                            "max_sessions_per_user = 2\n[network lan]\nbridge = br0\n"
                            "[network lab]\nnat = yes\n");
    assert_int_equal(config_load(&c, path, true, err, sizeof(err)), -1);
    assert_non_null(strstr(err, ":11: [network lab] is given twice"));
    unlink(path);
    config_free(&c);
    config_defaults(&c);
    path = write_conf("[network lab]\nbridge = qdbr-lab\ncidr = 10.1.0.0/24\n"
                      "[limits]\nmax_sessions = 5\n[limits.physics]\n"
                      "max_sessions_per_user = 2\n[network lan]\nbridge = br0\n"
                      "bridge = br1\n");
    assert_int_equal(config_load(&c, path, true, err, sizeof(err)), 0);
    unlink(path);
    assert_int_equal(c.max_sessions, 5); /* [limits] stays a plain section */
    const struct config_named *lab = config_named_next(&c, "network", NULL);
    assert_non_null(lab);
    assert_string_equal(lab->name, "lab");
    assert_int_equal(lab->line, 2); /* its first key: the header has none */
    int line = 0;
    assert_string_equal(config_named_get(lab, "cidr", &line), "10.1.0.0/24");
    assert_int_equal(line, 3);
    assert_null(config_named_get(lab, "nat", NULL));
    const struct config_named *lan = config_named_next(&c, "network", lab);
    assert_string_equal(lan->name, "lan");
    assert_string_equal(config_named_get(lan, "bridge", NULL), "br1"); /* the last */
    assert_null(config_named_next(&c, "network", lan));
    const struct config_named *g = config_named_find(&c, "limits", "physics");
    assert_non_null(g);
    assert_string_equal(config_named_get(g, "max_sessions_per_user", NULL), "2");
    assert_null(config_named_find(&c, "mount", "physics"));
    config_free(&c);
    config_free(NULL);

    config_defaults(&c);
    path = write_conf("[server]\nlisten = 127.0.0.1:1\n[netwrk lab]\nbridge = x\n");
    assert_int_equal(config_load(&c, path, true, err, sizeof(err)), -1);
    assert_non_null(strstr(err, ":4: [netwrk lab]: 'netwrk' is not a kind of named "
                            "section (allowed: network, mount, limits, runner)"));
    unlink(path);
    config_free(&c);
    config_defaults(&c);
    path = write_conf("[mount my data]\npath = /srv\n");
    assert_int_equal(config_load(&c, path, true, err, sizeof(err)), -1);
    assert_non_null(strstr(err, ":2: [mount my data]: the name must be 1 to 63 letters"));
    unlink(path);
    config_free(&c);
}

static void example_shows_the_defaults(void **state)
{
    (void)state;
    struct config defaults, example;
    char err[512];
    config_defaults(&defaults);
    config_defaults(&example);
    /* the example documents the defaults: loading it changes nothing */
    assert_int_equal(
        config_load(&example, SOURCE_ROOT "/qdesk.conf.example", true, err, sizeof(err)),
        0);
    assert_memory_equal(&defaults, &example, sizeof(defaults));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(zero_config),
        cmocka_unit_test(typed_values),
        cmocka_unit_test(bad_values_name_the_line),
        cmocka_unit_test(named_sections_are_kept_for_their_modules),
        cmocka_unit_test(example_shows_the_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

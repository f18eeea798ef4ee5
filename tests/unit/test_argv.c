/* The argv builder: QEMU option escaping and shell quoting. */
#include "util/argv.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static void commas_are_doubled(void **state)
{
    (void)state;
    struct argv a;
    struct qopt o = {0};
    argv_init(&a);
    qopt_word(&o, "driver=file");
    qopt_add(&o, "filename", "/srv/a,b,,c.qcow2");
    argv_add_qopt(&a, "-blockdev", &o);
    assert_int_equal(argv_status(&a), 0);
    assert_string_equal(a.v[1], "driver=file,filename=/srv/a,,b,,,,c.qcow2");
    argv_free(&a);
}

static void injected_options_stay_inside_the_value(void **state)
{
    (void)state;
    struct argv a;
    struct qopt o = {0};
    argv_init(&a);
    /* A path that tries to add its own option must stay one value. */
    qopt_add(&o, "path", "/tmp/x,server=on,wait=off");
    argv_add_qopt(&a, "-chardev", &o);
    assert_string_equal(a.v[1], "path=/tmp/x,,server=on,,wait=off");
    argv_free(&a);
}

static void control_characters_are_refused_once(void **state)
{
    (void)state;
    struct argv a;
    struct qopt o = {0};
    argv_init(&a);
    qopt_add(&o, "filename", "/srv/evil\nname");
    qopt_add(&o, "other", "x\ty");
    argv_add_qopt(&a, "-blockdev", &o);
    argv_add(&a, "-m");
    assert_int_equal(argv_status(&a), -1);
    /* the first error is the one reported, naming the key */
    assert_non_null(strstr(a.err, "filename"));
    assert_non_null(strstr(a.err, "0x0a"));
    argv_fail(&a, "later error");
    assert_null(strstr(a.err, "later"));
    argv_free(&a);
}

static void implied_value_is_escaped(void **state)
{
    (void)state;
    struct argv a;
    struct qopt o = {0};
    argv_init(&a);
    qopt_value(&o, "unix:/run/a,b/vnc.sock");
    qopt_word(&o, "share=force-shared");
    argv_add_qopt(&a, "-vnc", &o);
    assert_string_equal(a.v[1], "unix:/run/a,,b/vnc.sock,share=force-shared");
    argv_free(&a);
}

static void format_is_shell_pasteable(void **state)
{
    (void)state;
    struct argv a;
    argv_init(&a);
    argv_add(&a, "/usr/bin/qemu");
    argv_add(&a, "-name");
    argv_add(&a, "guest=x");
    argv_add(&a, "-append");
    argv_add(&a, "console=ttyS0 it's $HOME");
    argv_add(&a, "-nodefaults");
    char *text = argv_format(&a);
    assert_string_equal(text, "/usr/bin/qemu \\\n-name guest=x \\\n"
                              "-append 'console=ttyS0 it'\\''s $HOME' \\\n-nodefaults\n");
    free(text);
    argv_free(&a);
}

static void empty_word_is_quoted(void **state)
{
    (void)state;
    char out[16] = "";
    assert_int_equal(argv_shell_quote("", out, sizeof(out)), 0);
    assert_string_equal(out, "''");
    char tiny[4] = "";
    assert_int_equal(argv_shell_quote("abcdef", tiny, sizeof(tiny)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(commas_are_doubled),
        cmocka_unit_test(injected_options_stay_inside_the_value),
        cmocka_unit_test(control_characters_are_refused_once),
        cmocka_unit_test(implied_value_is_escaped),
        cmocka_unit_test(format_is_shell_pasteable),
        cmocka_unit_test(empty_word_is_quoted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

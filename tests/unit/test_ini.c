/* INI files: sections, comments, line numbers in errors. */
#include "util/ini.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

static void sections_keys_comments(void **state)
{
    (void)state;
    char err[256];
    struct ini *ini = ini_parse("top = 1\n# comment\n; other\n\n[server]\n  listen = "
                                "0.0.0.0:80  \nauth=local\n[paths]\nmachines = /srv/m\n"
                                "[server]\nauth = pam\n",
                                "t.conf", err, sizeof(err));
    assert_non_null(ini);
    assert_string_equal(ini_get(ini, "", "top"), "1");
    assert_string_equal(ini_get(ini, "server", "listen"), "0.0.0.0:80");
    assert_string_equal(ini_get(ini, "server", "auth"), "pam"); /* the last one wins */
    assert_string_equal(ini_get(ini, "paths", "machines"), "/srv/m");
    assert_null(ini_get(ini, "paths", "listen"));
    assert_int_equal(ini->entries[1].line, 6);
    ini_free(ini);
}

static void errors_name_file_and_line(void **state)
{
    (void)state;
    char err[256];
    assert_null(ini_parse("a = 1\n\nno equals sign\n", "x.conf", err, sizeof(err)));
    assert_string_equal(err, "x.conf:3: expected 'key = value'");
    assert_null(ini_parse("[open\n", "y.conf", err, sizeof(err)));
    assert_string_equal(err, "y.conf:1: a section header must look like [name]");
    assert_null(ini_parse(" = value\n", "z.conf", err, sizeof(err)));
    assert_string_equal(err, "z.conf:1: missing key before '='");
}

static void values_keep_inner_equals(void **state)
{
    (void)state;
    char err[256];
    struct ini *ini =
        ini_parse("append = console=ttyS0 root=/dev/vda1\n", "k", err, sizeof(err));
    assert_string_equal(ini_get(ini, "", "append"), "console=ttyS0 root=/dev/vda1");
    ini_free(ini);
    ini_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sections_keys_comments),
        cmocka_unit_test(errors_name_file_and_line),
        cmocka_unit_test(values_keep_inner_equals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Durations and sizes as users type them. */
#include "util/units.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void durations_users_type(void **state)
{
    (void)state;
    uint64_t s;
    assert_int_equal(units_parse_duration("90m", &s), 0);
    assert_int_equal(s, 5400);
    assert_int_equal(units_parse_duration("4h", &s), 0);
    assert_int_equal(s, 14400);
    assert_int_equal(units_parse_duration("2d", &s), 0);
    assert_int_equal(s, 172800);
    assert_int_equal(units_parse_duration("1h30m", &s), 0);
    assert_int_equal(s, 5400);
    assert_int_equal(units_parse_duration("45s", &s), 0);
    assert_int_equal(s, 45);
}

static void durations_refused(void **state)
{
    (void)state;
    uint64_t s = 7;
    const char *bad[] = {
        "", "90", "m", "1.5h", "-1h", "1w", "1h 30m", "h1", "99999999999999999999s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(units_parse_duration(bad[i], &s), -1);
    assert_int_equal(s, 7); /* untouched on error */
}

static void duration_round_trip(void **state)
{
    (void)state;
    char buf[32];
    uint64_t values[] = {0, 1, 59, 60, 5400, 86400, 90061};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        uint64_t back;
        units_format_duration(values[i], buf, sizeof(buf));
        assert_int_equal(units_parse_duration(buf, &back), 0);
        assert_int_equal(back, values[i]);
    }
    units_format_duration(5400, buf, sizeof(buf));
    assert_string_equal(buf, "1h30m");
}

static void sizes(void **state)
{
    (void)state;
    uint64_t b;
    const uint64_t MiB = 1ULL << 20;
    assert_int_equal(units_parse_size("512", MiB, &b), 0);
    assert_int_equal(b, 512 * MiB);
    assert_int_equal(units_parse_size("512M", 1, &b), 0);
    assert_int_equal(b, 512 * MiB);
    assert_int_equal(units_parse_size("2G", 1, &b), 0);
    assert_int_equal(b, 2048 * MiB);
    assert_int_equal(units_parse_size("2GiB", 1, &b), 0);
    assert_int_equal(b, 2048 * MiB);
    assert_int_equal(units_parse_size("2gb", 1, &b), 0);
    assert_int_equal(b, 2048 * MiB);
    assert_int_equal(units_parse_size("1T", 1, &b), 0);
    assert_int_equal(b, 1ULL << 40);
    assert_int_equal(units_parse_size("4096B", MiB, &b), 0);
    assert_int_equal(b, 4096);
}

static void sizes_refused(void **state)
{
    (void)state;
    uint64_t b;
    const char *bad[] = {"",    "G",   "12X",   "1.5G",        "-1G",
                         "2 G", "2Gi", "2GiBs", "99999999999T"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(units_parse_size(bad[i], 1, &b), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(durations_users_type), cmocka_unit_test(durations_refused),
        cmocka_unit_test(duration_round_trip),  cmocka_unit_test(sizes),
        cmocka_unit_test(sizes_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

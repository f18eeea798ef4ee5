/* The SQLite store: sessions survive reopening; allocations are exclusive. */
#include "session/session.h"
#include "session/store.h"
#include "util/fs.h"

#include <limits.h>
#include <sqlite3.h>
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

static char dir[64], db[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/qdesk-store-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof(db), "%s/state.db", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fs_remove_tree(dir);
    return 0;
}

static struct session *loaded[8];
static int n_loaded;

static void collect(struct session *s, void *arg)
{
    (void)arg;
    loaded[n_loaded++] = s;
}

static void sessions_round_trip(void **state)
{
    (void)state;
    char err[256];
    struct store *st = store_open(db, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(store_schema_version(st), 2);
    struct stat sb;
    assert_int_equal(stat(db, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600); /* it holds share tokens */

    struct session s = {.state = SESSION_RUNNING,
                        .cpus = 2,
                        .memory_mb = 2048,
                        .created_at = 100,
                        .expires_at = 200,
                        .oneshot = true,
                        .pid = 4242,
                        .start_time = 987654321,
                        .net_pid = 4243,
                        .net_start_time = 987654322,
                        .viewers_total = 1};
    snprintf(s.id, sizeof(s.id), "0123456789abcdef");
    snprintf(s.machine, sizeof(s.machine), "demo");
    snprintf(s.owner, sizeof(s.owner), "alice");
    snprintf(s.control_token, sizeof(s.control_token), "c-token");
    snprintf(s.view_token, sizeof(s.view_token), "v-token");
    snprintf(s.rundir, sizeof(s.rundir), "/state/run/0123456789abcdef");
    snprintf(s.gpu, sizeof(s.gpu), "virgl");
    assert_int_equal(store_session_save(st, &s), 0);
    s.state = SESSION_STOPPING; /* a second save replaces */
    assert_int_equal(store_session_save(st, &s), 0);
    store_close(st);

    st = store_open(db, err, sizeof(err));
    n_loaded = 0;
    assert_int_equal(store_sessions_load(st, collect, NULL), 1);
    struct session *l = loaded[0];
    assert_string_equal(l->id, s.id);
    assert_int_equal(l->state, SESSION_STOPPING);
    assert_string_equal(l->owner, "alice");
    assert_int_equal(l->pid, 4242);
    assert_int_equal(l->start_time, 987654321);
    assert_int_equal(l->net_pid, 4243); /* its network helper, killed with it */
    assert_int_equal(l->net_start_time, 987654322);
    assert_true(l->oneshot);
    assert_int_equal(l->viewers_total, 1);
    assert_string_equal(l->gpu, "virgl");
    free(l);

    /* ended sessions are purged once old */
    s.ended_at = 150;
    s.state = SESSION_STOPPED;
    store_session_save(st, &s);
    assert_int_equal(store_sessions_purge(st, 140), 0);
    n_loaded = 0;
    assert_int_equal(store_sessions_load(st, collect, NULL), 1);
    free(loaded[0]);
    assert_int_equal(store_sessions_purge(st, 160), 0);
    n_loaded = 0;
    assert_int_equal(store_sessions_load(st, collect, NULL), 0);
    store_close(st);
}

static void allocations_are_exclusive(void **state)
{
    (void)state;
    char err[256];
    struct store *st = store_open(db, err, sizeof(err));
    assert_int_equal(store_alloc_claim(st, "vf", "0000:00:02.1", "s1", NULL), 1);
    assert_int_equal(store_alloc_claim(st, "vf", "0000:00:02.1", "s2", NULL), 0);
    assert_int_equal(store_alloc_claim(st, "vf", "0000:00:02.2", "s2", NULL), 1);
    assert_int_equal(store_alloc_release(st, "s1"), 0);
    assert_int_equal(store_alloc_claim(st, "vf", "0000:00:02.1", "s2", NULL), 1);
    store_close(st);
}

static void users_and_logins(void **state)
{
    (void)state;
    char err[256];
    struct store *st = store_open(db, err, sizeof(err));
    struct store_user u = {.admin = true, .created_at = 5};
    snprintf(u.name, sizeof(u.name), "bob");
    snprintf(u.hash, sizeof(u.hash), "$argon2id$v=19$m=65536,t=2,p=1$x$y");
    assert_int_equal(store_user_put(st, &u), 0);
    struct store_user got;
    assert_int_equal(store_user_get(st, "bob", &got), 1);
    assert_true(got.admin);
    assert_string_equal(got.hash, u.hash);
    assert_int_equal(store_user_get(st, "eve", &got), 0);

    struct store_login l = {.expires_at = 1000};
    snprintf(l.token_hash, sizeof(l.token_hash), "ab12");
    snprintf(l.user, sizeof(l.user), "bob");
    snprintf(l.csrf, sizeof(l.csrf), "csrf");
    assert_int_equal(store_login_put(st, &l), 0);
    struct store_login lg;
    assert_int_equal(store_login_get(st, "ab12", 999, &lg), 1);
    assert_string_equal(lg.user, "bob");
    assert_int_equal(store_login_get(st, "ab12", 1000, &lg), 0); /* expired */
    /* deleting the user logs them out */
    assert_int_equal(store_user_delete(st, "bob"), 1);
    assert_int_equal(store_login_get(st, "ab12", 1, &lg), 0);
    assert_int_equal(store_user_delete(st, "bob"), 0);
    store_close(st);
}

/* Runs one SQL statement on the database file behind the store's back and returns
 * the first column of its first row (or ""). */
static void sql(const char *statement, char *out, size_t outsz)
{
    sqlite3 *h;
    sqlite3_stmt *q;
    out[0] = 0;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, statement, -1, &q, NULL), SQLITE_OK);
    if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_text(q, 0))
        snprintf(out, outsz, "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    sqlite3_close(h);
}

static void database_is_wal_and_refuses_a_newer_schema(void **state)
{
    (void)state;
    char err[256], got[64];
    struct store *st = store_open(db, err, sizeof(err));
    assert_non_null(st);
    store_close(st);
    /* WAL: a killed service loses no committed write, readers never block it */
    sql("PRAGMA journal_mode", got, sizeof(got));
    assert_string_equal(got, "wal");
    sql("SELECT group_concat(name) FROM (SELECT name FROM sqlite_master WHERE type = "
        "'table' ORDER BY name)",
        got, sizeof(got));
    assert_string_equal(got, "allocations,logins,sessions,users");

    /* a database from a newer qdesk is left alone, with a message saying so */
    sql("PRAGMA user_version = 99", got, sizeof(got));
    assert_null(store_open(db, err, sizeof(err)));
    assert_string_equal(err,
                        "the state database has schema 99, newer than this qdesk (2)");
    sql("PRAGMA user_version", got, sizeof(got));
    assert_string_equal(got, "99");
}

static void logging_a_user_out_ends_every_login(void **state)
{
    (void)state;
    char err[256];
    struct store *st = store_open(db, err, sizeof(err));
    struct store_login l = {.expires_at = 1000};
    snprintf(l.user, sizeof(l.user), "dave");
    snprintf(l.csrf, sizeof(l.csrf), "csrf");
    snprintf(l.token_hash, sizeof(l.token_hash), "one");
    assert_int_equal(store_login_put(st, &l), 0);
    snprintf(l.token_hash, sizeof(l.token_hash), "two");
    assert_int_equal(store_login_put(st, &l), 0);
    snprintf(l.user, sizeof(l.user), "erin");
    snprintf(l.token_hash, sizeof(l.token_hash), "three");
    assert_int_equal(store_login_put(st, &l), 0);

    assert_int_equal(store_user_logout(st, "dave"), 0);
    struct store_login got;
    assert_int_equal(store_login_get(st, "one", 1, &got), 0);
    assert_int_equal(store_login_get(st, "two", 1, &got), 0);
    assert_int_equal(store_login_get(st, "three", 1, &got), 1); /* only dave's */
    store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sessions_round_trip),
        cmocka_unit_test(allocations_are_exclusive),
        cmocka_unit_test(users_and_logins),
        cmocka_unit_test(logging_a_user_out_ends_every_login),
        cmocka_unit_test(
            database_is_wal_and_refuses_a_newer_schema), /* leaves it at 99 */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

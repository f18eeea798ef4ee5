#include "session/store.h"

#include "session/session.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct store {
    sqlite3 *db;
};

/* Migrations, in order; the schema version is the number applied. Never edit one
 * that has shipped: add the next. */
static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE sessions ("
    "  id TEXT PRIMARY KEY,"
    "  state TEXT NOT NULL,"
    "  machine TEXT NOT NULL,"
    "  owner TEXT NOT NULL,"
    "  cpus INTEGER NOT NULL,"
    "  memory_mb INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL,"
    "  ended_at INTEGER NOT NULL DEFAULT 0,"
    "  control_token TEXT NOT NULL UNIQUE,"
    "  view_token TEXT NOT NULL UNIQUE,"
    "  oneshot INTEGER NOT NULL DEFAULT 0,"
    "  persistent INTEGER NOT NULL DEFAULT 0,"
    "  rundir TEXT NOT NULL,"
    "  pid INTEGER NOT NULL DEFAULT 0,"
    "  start_time INTEGER NOT NULL DEFAULT 0,"
    "  error TEXT NOT NULL DEFAULT '',"
    "  gpu TEXT NOT NULL DEFAULT 'none',"
    "  admitted INTEGER NOT NULL DEFAULT 0,"
    "  warning TEXT NOT NULL DEFAULT '',"
    "  pin_cpus INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE users ("
    "  name TEXT PRIMARY KEY,"
    "  hash TEXT NOT NULL,"
    "  admin INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE logins ("
    "  token_hash TEXT PRIMARY KEY,"
    "  user TEXT NOT NULL,"
    "  csrf TEXT NOT NULL,"
    "  admin INTEGER NOT NULL DEFAULT 0,"
    "  expires_at INTEGER NOT NULL);"
    "CREATE TABLE allocations ("
    "  kind TEXT NOT NULL,"
    "  unit TEXT NOT NULL,"
    "  session_id TEXT NOT NULL,"
    "  data TEXT NOT NULL DEFAULT '',"
    "  PRIMARY KEY (kind, unit));",
    /* 2: the network helper (passt) of a session on the default network */
    "ALTER TABLE sessions ADD COLUMN net_pid INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sessions ADD COLUMN net_start_time INTEGER NOT NULL DEFAULT 0;",
};

static int exec(struct store *st, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_error("store: %s", msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int store_schema_version(struct store *st)
{
    sqlite3_stmt *q;
    int v = -1;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    return v;
}

/* Brings the schema up to date. The version is read inside the write transaction,
 * so two processes opening a new database at once migrate it once. */
static int migrate(struct store *st, char *err, size_t errsz)
{
    int want = (int)(sizeof(migrations) / sizeof(migrations[0]));
    if (exec(st, "BEGIN IMMEDIATE") < 0) {
        snprintf(err, errsz, "cannot lock the state database to check its schema");
        return -1;
    }
    int have = store_schema_version(st);
    if (have > want) {
        exec(st, "ROLLBACK");
        snprintf(err, errsz,
                 "the state database has schema %d, newer than this qdesk (%d)", have,
                 want);
        return -1;
    }
    for (int v = have; v < want; v++) {
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", v + 1);
        if (exec(st, migrations[v]) < 0 || exec(st, pragma) < 0) {
            exec(st, "ROLLBACK");
            snprintf(err, errsz, "cannot migrate the state database to schema %d", v + 1);
            return -1;
        }
        log_info("store: schema migrated to version %d", v + 1);
    }
    return exec(st, "COMMIT");
}

struct store *store_open(const char *path, char *err, size_t errsz)
{
    if (errsz)
        err[0] = 0;
    struct store *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    /* Create the file 0600 ourselves: it holds share tokens. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errsz, "%s: %s", path, strerror(errno));
        free(st);
        return NULL;
    }
    close(fd);
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, errsz, "%s: %s", path, sqlite3_errmsg(st->db));
        store_close(st);
        return NULL;
    }
    sqlite3_busy_timeout(st->db, 5000);
    if (exec(st, "PRAGMA journal_mode = WAL") < 0 ||
        exec(st, "PRAGMA synchronous = NORMAL") < 0 ||
        exec(st, "PRAGMA foreign_keys = ON") < 0 || migrate(st, err, errsz) < 0) {
        if (!err[0])
            snprintf(err, errsz, "%s: cannot set up the database", path);
        store_close(st);
        return NULL;
    }
    return st;
}

void store_close(struct store *st)
{
    if (!st)
        return;
    sqlite3_close(st->db);
    free(st);
}

/* Prepares sql; logs and returns NULL on failure. */
static sqlite3_stmt *prepare(struct store *st, const char *sql)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(st->db, sql, -1, &q, NULL) != SQLITE_OK) {
        log_error("store: %s: %s", sql, sqlite3_errmsg(st->db));
        return NULL;
    }
    return q;
}

/* Steps a statement that returns no rows and finalizes it. */
static int finish(struct store *st, sqlite3_stmt *q)
{
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) {
        log_error("store: %s", sqlite3_errmsg(st->db));
        return -1;
    }
    return 0;
}

static void text(sqlite3_stmt *q, int col, char *out, size_t outsz)
{
    const unsigned char *t = sqlite3_column_text(q, col);
    snprintf(out, outsz, "%s", t ? (const char *)t : "");
}

int store_session_save(struct store *st, const struct session *s)
{
    sqlite3_stmt *q = prepare(
        st,
        "INSERT OR REPLACE INTO sessions (id, state, machine, owner, cpus, memory_mb, "
        "created_at, expires_at, ended_at, control_token, view_token, oneshot, "
        "persistent, "
        "rundir, pid, start_time, error, gpu, admitted, warning, pin_cpus, net_pid, "
        "net_start_time) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, session_state_name(s->state), -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, s->machine, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, s->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 5, s->cpus);
    sqlite3_bind_int64(q, 6, (sqlite3_int64)s->memory_mb);
    sqlite3_bind_int64(q, 7, s->created_at);
    sqlite3_bind_int64(q, 8, s->expires_at);
    sqlite3_bind_int64(q, 9, s->ended_at);
    sqlite3_bind_text(q, 10, s->control_token, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 11, s->view_token, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 12, s->oneshot);
    sqlite3_bind_int(q, 13, s->persistent);
    sqlite3_bind_text(q, 14, s->rundir, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 15, s->pid);
    sqlite3_bind_int64(q, 16, (sqlite3_int64)s->start_time);
    sqlite3_bind_text(q, 17, s->error, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 18, s->gpu, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 19, s->viewers_total);
    sqlite3_bind_text(q, 20, s->warning, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 21, s->pin_cpus);
    sqlite3_bind_int64(q, 22, s->net_pid);
    sqlite3_bind_int64(q, 23, (sqlite3_int64)s->net_start_time);
    return finish(st, q);
}

int store_session_delete(struct store *st, const char *id)
{
    sqlite3_stmt *q = prepare(st, "DELETE FROM sessions WHERE id = ?");
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    return finish(st, q);
}

int store_sessions_load(struct store *st, void (*cb)(struct session *s, void *arg),
                        void *arg)
{
    sqlite3_stmt *q = prepare(
        st, "SELECT id, state, machine, owner, cpus, memory_mb, created_at, expires_at, "
            "ended_at, control_token, view_token, oneshot, persistent, rundir, pid, "
            "start_time, error, gpu, admitted, warning, pin_cpus, net_pid, "
            "net_start_time FROM sessions "
            "ORDER BY created_at, id");
    if (!q)
        return -1;
    int n = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        struct session *s = calloc(1, sizeof(*s));
        if (!s)
            break;
        char state[32];
        text(q, 0, s->id, sizeof(s->id));
        text(q, 1, state, sizeof(state));
        int parsed = session_state_parse(state);
        s->state = parsed < 0 ? SESSION_FAILED : (enum session_state)parsed;
        text(q, 2, s->machine, sizeof(s->machine));
        text(q, 3, s->owner, sizeof(s->owner));
        s->cpus = (unsigned)sqlite3_column_int64(q, 4);
        s->memory_mb = (uint64_t)sqlite3_column_int64(q, 5);
        s->created_at = sqlite3_column_int64(q, 6);
        s->expires_at = sqlite3_column_int64(q, 7);
        s->ended_at = sqlite3_column_int64(q, 8);
        text(q, 9, s->control_token, sizeof(s->control_token));
        text(q, 10, s->view_token, sizeof(s->view_token));
        s->oneshot = sqlite3_column_int(q, 11) != 0;
        s->persistent = sqlite3_column_int(q, 12) != 0;
        text(q, 13, s->rundir, sizeof(s->rundir));
        s->pid = (int)sqlite3_column_int64(q, 14);
        s->start_time = (uint64_t)sqlite3_column_int64(q, 15);
        text(q, 16, s->error, sizeof(s->error));
        text(q, 17, s->gpu, sizeof(s->gpu));
        s->viewers_total = (unsigned)sqlite3_column_int64(q, 18);
        text(q, 19, s->warning, sizeof(s->warning));
        s->pin_cpus = sqlite3_column_int(q, 20) != 0;
        s->net_pid = (int)sqlite3_column_int64(q, 21);
        s->net_start_time = (uint64_t)sqlite3_column_int64(q, 22);
        s->pidfd = s->net_pidfd = -1;
        cb(s, arg);
        n++;
    }
    sqlite3_finalize(q);
    return n;
}

int store_sessions_purge(struct store *st, int64_t before)
{
    sqlite3_stmt *q =
        prepare(st, "DELETE FROM sessions WHERE ended_at > 0 AND ended_at < ?");
    if (!q)
        return -1;
    sqlite3_bind_int64(q, 1, before);
    return finish(st, q);
}

int store_user_get(struct store *st, const char *name, struct store_user *u)
{
    sqlite3_stmt *q =
        prepare(st, "SELECT name, hash, admin, created_at FROM users WHERE name = ?");
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    int found = 0;
    if (sqlite3_step(q) == SQLITE_ROW) {
        text(q, 0, u->name, sizeof(u->name));
        text(q, 1, u->hash, sizeof(u->hash));
        u->admin = sqlite3_column_int(q, 2) != 0;
        u->created_at = sqlite3_column_int64(q, 3);
        found = 1;
    }
    sqlite3_finalize(q);
    return found;
}

int store_user_put(struct store *st, const struct store_user *u)
{
    sqlite3_stmt *q =
        prepare(st, "INSERT OR REPLACE INTO users (name, hash, admin, created_at) "
                    "VALUES (?,?,?,?)");
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, u->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, u->hash, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 3, u->admin);
    sqlite3_bind_int64(q, 4, u->created_at);
    return finish(st, q);
}

int store_user_delete(struct store *st, const char *name)
{
    sqlite3_stmt *q = prepare(st, "DELETE FROM users WHERE name = ?");
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    if (finish(st, q) < 0)
        return -1;
    if (sqlite3_changes(st->db) == 0)
        return 0;
    return store_user_logout(st, name) < 0 ? -1 : 1; /* logged out everywhere */
}

int store_user_logout(struct store *st, const char *name)
{
    sqlite3_stmt *q = prepare(st, "DELETE FROM logins WHERE user = ?");
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    return finish(st, q);
}

int store_users_list(struct store *st, void (*cb)(const struct store_user *u, void *arg),
                     void *arg)
{
    sqlite3_stmt *q =
        prepare(st, "SELECT name, hash, admin, created_at FROM users ORDER BY name");
    if (!q)
        return -1;
    int n = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        struct store_user u;
        text(q, 0, u.name, sizeof(u.name));
        text(q, 1, u.hash, sizeof(u.hash));
        u.admin = sqlite3_column_int(q, 2) != 0;
        u.created_at = sqlite3_column_int64(q, 3);
        cb(&u, arg);
        n++;
    }
    sqlite3_finalize(q);
    return n;
}

int store_login_put(struct store *st, const struct store_login *l)
{
    sqlite3_stmt *q =
        prepare(st, "INSERT OR REPLACE INTO logins (token_hash, user, csrf, admin, "
                    "expires_at) VALUES (?,?,?,?,?)");
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, l->token_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, l->user, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, l->csrf, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 4, l->admin);
    sqlite3_bind_int64(q, 5, l->expires_at);
    int rc = finish(st, q);
    /* Expired logins go whenever a new one comes. */
    q = prepare(st, "DELETE FROM logins WHERE expires_at < ?");
    if (q) {
        sqlite3_bind_int64(q, 1, l->expires_at - 30 * 86400);
        finish(st, q);
    }
    return rc;
}

int store_login_get(struct store *st, const char *token_hash, int64_t now,
                    struct store_login *l)
{
    sqlite3_stmt *q =
        prepare(st, "SELECT token_hash, user, csrf, admin, expires_at FROM logins "
                    "WHERE token_hash = ? AND expires_at > ?");
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, token_hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, now);
    int found = 0;
    if (sqlite3_step(q) == SQLITE_ROW) {
        text(q, 0, l->token_hash, sizeof(l->token_hash));
        text(q, 1, l->user, sizeof(l->user));
        text(q, 2, l->csrf, sizeof(l->csrf));
        l->admin = sqlite3_column_int(q, 3) != 0;
        l->expires_at = sqlite3_column_int64(q, 4);
        found = 1;
    }
    sqlite3_finalize(q);
    return found;
}

int store_login_delete(struct store *st, const char *token_hash)
{
    sqlite3_stmt *q = prepare(st, "DELETE FROM logins WHERE token_hash = ?");
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, token_hash, -1, SQLITE_STATIC);
    return finish(st, q);
}

int store_alloc_claim(struct store *st, const char *kind, const char *unit,
                      const char *session_id, const char *data)
{
    sqlite3_stmt *q =
        prepare(st, "INSERT INTO allocations (kind, unit, session_id, data) "
                    "VALUES (?,?,?,?)");
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, unit, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, session_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, data ? data : "", -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc == SQLITE_DONE)
        return 1;
    if (rc == SQLITE_CONSTRAINT)
        return 0;
    log_error("store: claim %s %s: %s", kind, unit, sqlite3_errmsg(st->db));
    return -1;
}

int store_alloc_update(struct store *st, const char *kind, const char *unit,
                       const char *data)
{
    sqlite3_stmt *q =
        prepare(st, "UPDATE allocations SET data = ? WHERE kind = ? AND unit = ?");
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, data, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, unit, -1, SQLITE_STATIC);
    return finish(st, q);
}

int store_alloc_release_unit(struct store *st, const char *kind, const char *unit)
{
    sqlite3_stmt *q = prepare(st, "DELETE FROM allocations WHERE kind = ? AND unit = ?");
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, unit, -1, SQLITE_STATIC);
    return finish(st, q);
}

int store_alloc_release(struct store *st, const char *session_id)
{
    sqlite3_stmt *q = prepare(st, "DELETE FROM allocations WHERE session_id = ?");
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, session_id, -1, SQLITE_STATIC);
    return finish(st, q);
}

int store_alloc_list(struct store *st,
                     void (*cb)(const char *kind, const char *unit,
                                const char *session_id, const char *data, void *arg),
                     void *arg)
{
    sqlite3_stmt *q = prepare(
        st, "SELECT kind, unit, session_id, data FROM allocations ORDER BY kind, unit");
    if (!q)
        return -1;
    int n = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        cb((const char *)sqlite3_column_text(q, 0),
           (const char *)sqlite3_column_text(q, 1),
           (const char *)sqlite3_column_text(q, 2),
           (const char *)sqlite3_column_text(q, 3), arg);
        n++;
    }
    sqlite3_finalize(q);
    return n;
}

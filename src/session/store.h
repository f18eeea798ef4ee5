/* store: the service's state in one SQLite database (WAL, schema version,
 * migrations): sessions, local user accounts, login cookies and device
 * allocations. Every write is immediate, so a killed service loses nothing. */
#ifndef QDESK_SESSION_STORE_H
#define QDESK_SESSION_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;
struct session;

/* Opens (creating and migrating as needed) the database at path, mode 0600.
 * Returns NULL with err. */
struct store *store_open(const char *path, char *err, size_t errsz);
void store_close(struct store *st);
/* The schema version the database is at. */
int store_schema_version(struct store *st);

/* Inserts or replaces the persistent fields of s. Returns 0 or -1 (logged). */
int store_session_save(struct store *st, const struct session *s);
int store_session_delete(struct store *st, const char *id);
/* Calls cb for every stored session, oldest first; cb receives a freshly filled
 * session (runtime fields zero) that it takes ownership of. Returns the count. */
int store_sessions_load(struct store *st, void (*cb)(struct session *s, void *arg),
                        void *arg);
/* Deletes ended sessions that ended before `before` (unix seconds). */
int store_sessions_purge(struct store *st, int64_t before);

struct store_user {
    char name[64];
    char hash[160]; /* argon2id, crypto_pwhash_str format */
    bool admin;
    int64_t created_at;
};
/* Returns 1 and fills u when the user exists, 0 when not, -1 on error. */
int store_user_get(struct store *st, const char *name, struct store_user *u);
int store_user_put(struct store *st, const struct store_user *u);
/* Returns 1 when a user was deleted (and logged out), 0 when there was none, -1 on
 * error. */
int store_user_delete(struct store *st, const char *name);
/* Ends every login of the user (a new password, a changed admin flag). Returns 0 or
 * -1. */
int store_user_logout(struct store *st, const char *name);
int store_users_list(struct store *st, void (*cb)(const struct store_user *u, void *arg),
                     void *arg);

struct store_login {
    char token_hash[65]; /* hex SHA-256 of the cookie value: the cookie itself is not kept
                          */
    char user[64];
    char csrf[64];
    bool admin;
    int64_t expires_at;
};
int store_login_put(struct store *st, const struct store_login *l);
/* Returns 1 and fills l for a login that has not expired, 0 otherwise. */
int store_login_get(struct store *st, const char *token_hash, int64_t now,
                    struct store_login *l);
int store_login_delete(struct store *st, const char *token_hash);

/* Device allocations: unit is unique per kind; a second claim fails. */
/* Returns 1 when claimed, 0 when the unit is held by another session, -1 on error. */
int store_alloc_claim(struct store *st, const char *kind, const char *unit,
                      const char *session_id, const char *data);
/* Replaces what a claim records (data) once the unit is prepared. */
int store_alloc_update(struct store *st, const char *kind, const char *unit,
                       const char *data);
/* Releases every unit a session holds. */
int store_alloc_release(struct store *st, const char *session_id);
/* Releases one unit. */
int store_alloc_release_unit(struct store *st, const char *kind, const char *unit);
/* Calls cb for every allocation. */
int store_alloc_list(struct store *st,
                     void (*cb)(const char *kind, const char *unit,
                                const char *session_id, const char *data, void *arg),
                     void *arg);

#endif

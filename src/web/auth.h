/* auth: who is asking. Logins (cookies backed by the store), login rate limits,
 * and the password backends, which all have one shape:
 *
 *   int auth_NAME_authenticate(struct auth_attempt *a);
 *
 * run on a worker thread (they may block on PAM, a directory or a mail server),
 * filling a->ok, a->admin and, on refusal, a->why for the log (users only ever
 * see "wrong user name or password"). */
#ifndef QDESK_WEB_AUTH_H
#define QDESK_WEB_AUTH_H

#include "web/http.h"

#include <stdbool.h>

struct auth_attempt {
    const struct config *cfg;
    struct store *store;
    char user[64];
    char password[1024];
    bool ok;
    bool admin;
    char why[256];
};

/* Local accounts in the store, argon2id (auth_local.c). */
int auth_local_authenticate(struct auth_attempt *a);
/* PAM service cfg->pam_service; admins are members of cfg->admin_group (auth_pam.c). */
int auth_pam_authenticate(struct auth_attempt *a);

struct auth;
struct auth *auth_new(void);
void auth_free(struct auth *a);

/* Fills r->who from the login cookie (or, with auth none, as the local admin). */
void auth_identify(struct http_request *r);

/* POST /api/v1/login {user, password} → {user, admin, csrf} and the cookie. */
enum MHD_Result auth_login(struct http_request *r);
/* POST /api/v1/logout */
enum MHD_Result auth_logout(struct http_request *r);
/* GET /api/v1/me → {auth, user, admin, csrf} (user null when not logged in) */
enum MHD_Result auth_me(struct http_request *r);

/* Hashes a password for the store (argon2id, interactive limits). Returns 0 or -1. */
int auth_local_hash(const char *password, char *out, size_t outsz);
/* `qdesk user add|del|passwd|list`: local accounts, straight in the store. */
int auth_local_main(const struct config *cfg, int argc, char **argv);

#endif

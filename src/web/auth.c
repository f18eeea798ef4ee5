#include "web/auth.h"

#include "session/store.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/work.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOGIN_COOKIE "qdesk_login"
#define WINDOW_MS    60000 /* rate limits count attempts in the last minute */
#define TRACKED      4096  /* addresses and names remembered for rate limits */

/* Attempts by one client address or user name in the current window. */
struct counter {
    char key[72];
    uint64_t window_start;
    unsigned attempts;
};

struct auth {
    struct counter counters[TRACKED];
};

struct backend {
    const char *name;
    int (*authenticate)(struct auth_attempt *a);
};

static const struct backend backends[] = {
    {"local", auth_local_authenticate},
    {"pam", auth_pam_authenticate},
};

struct auth *auth_new(void)
{
    if (sodium_init() < 0)
        return NULL;
    return calloc(1, sizeof(struct auth));
}

void auth_free(struct auth *a)
{
    free(a);
}

/* Counts one attempt for key; returns the seconds to wait when over the limit,
 * else 0. */
static unsigned rate_limit(struct auth *a, const char *key, unsigned limit)
{
    uint64_t now = loop_now();
    struct counter *slot = NULL, *oldest = &a->counters[0];
    for (size_t i = 0; i < TRACKED; i++) {
        struct counter *c = &a->counters[i];
        if (!strcmp(c->key, key)) {
            slot = c;
            break;
        }
        if (c->window_start < oldest->window_start)
            oldest = c;
    }
    if (!slot) {
        slot = oldest; /* forget the stalest entry */
        snprintf(slot->key, sizeof(slot->key), "%s", key);
        slot->window_start = now;
        slot->attempts = 0;
    }
    if (now - slot->window_start >= WINDOW_MS) {
        slot->window_start = now;
        slot->attempts = 0;
    }
    if (++slot->attempts > limit)
        return (unsigned)((slot->window_start + WINDOW_MS - now) / 1000) + 1;
    return 0;
}

static void hash_token(const char *token, char *hex, size_t hexsz)
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
    sodium_bin2hex(hex, hexsz, h, sizeof(h));
}

void auth_identify(struct http_request *r)
{
    const struct config *cfg = r->web->cfg;
    if (!strcmp(cfg->auth, "none")) {
        r->who.known = r->who.admin = true;
        snprintf(r->who.user, sizeof(r->who.user), "local");
        return;
    }
    const char *cookie = http_cookie(r, LOGIN_COOKIE);
    if (!cookie || strlen(cookie) > 64)
        return;
    struct store_login l;
    char hex[65];
    hash_token(cookie, hex, sizeof(hex));
    if (store_login_get(r->web->store, hex, (int64_t)time(NULL), &l) != 1)
        return;
    r->who.known = true;
    r->who.admin = l.admin;
    snprintf(r->who.user, sizeof(r->who.user), "%s", l.user);
    snprintf(r->who.csrf, sizeof(r->who.csrf), "%s", l.csrf);
    snprintf(r->who.login, sizeof(r->who.login), "%s", hex);
}

static json_t *me_json(struct http_request *r, const struct identity *who)
{
    return json_pack("{s:s, s:o, s:b, s:s}", "auth", r->web->cfg->auth, "user",
                     who->known ? json_string(who->user) : json_null(), "admin",
                     who->admin, "csrf", who->csrf);
}

enum MHD_Result auth_me(struct http_request *r)
{
    return http_reply_json(r, MHD_HTTP_OK, me_json(r, &r->who));
}

struct login_job {
    struct http_request *r;
    struct auth_attempt attempt;
    const struct backend *backend;
};

static void login_run(void *arg)
{
    struct login_job *j = arg;
    j->backend->authenticate(&j->attempt);
}

static void login_done(void *arg)
{
    struct login_job *j = arg;
    struct http_request *r = j->r;
    struct auth_attempt *a = &j->attempt;
    sodium_memzero(a->password, sizeof(a->password));
    if (!a->ok) {
        log_info("login refused for '%s' from %s: %s", a->user, r->client, a->why);
        http_resume(r, MHD_HTTP_UNAUTHORIZED,
                    http_json_response(json_pack("{s:{s:s, s:s}}", "error", "code",
                                                 "bad_credentials", "message",
                                                 "wrong user name or password")));
        return;
    }
    unsigned char raw[32];
    char token[64], csrf[64];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(token, sizeof(token), raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(csrf, sizeof(csrf), raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    struct store_login l = {.admin = a->admin,
                            .expires_at = (int64_t)time(NULL) +
                                          (int64_t)r->web->cfg->login_lifetime_s};
    hash_token(token, l.token_hash, sizeof(l.token_hash));
    snprintf(l.user, sizeof(l.user), "%s", a->user);
    snprintf(l.csrf, sizeof(l.csrf), "%s", csrf);
    if (store_login_put(r->web->store, &l) < 0) {
        http_resume(
            r, MHD_HTTP_INTERNAL_SERVER_ERROR,
            http_json_response(json_pack("{s:{s:s, s:s}}", "error", "code", "internal",
                                         "message", "cannot record the login")));
        return;
    }
    log_info("login: %s%s from %s", a->user, a->admin ? " (admin)" : "", r->client);
    struct identity who = {.known = true, .admin = a->admin};
    snprintf(who.user, sizeof(who.user), "%s", a->user);
    snprintf(who.csrf, sizeof(who.csrf), "%s", csrf);
    struct MHD_Response *resp = http_json_response(me_json(r, &who));
    char cookie[256];
    snprintf(cookie, sizeof(cookie),
             LOGIN_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; "
                          "Max-Age=%llu%s",
             token, (unsigned long long)r->web->cfg->login_lifetime_s,
             r->tls ? "; Secure" : "");
    if (resp)
        http_add_header(resp, "Set-Cookie", cookie);
    http_resume(r, MHD_HTTP_OK, resp);
}

enum MHD_Result auth_login(struct http_request *r)
{
    const struct config *cfg = r->web->cfg;
    if (!strcmp(cfg->auth, "none"))
        return auth_me(r);
    json_error_t jerr;
    json_t *body = r->body ? json_loads(r->body, 0, &jerr) : NULL;
    const char *user = json_string_value(json_object_get(body, "user"));
    const char *password = json_string_value(json_object_get(body, "password"));
    if (!user || !password || !*user || strlen(user) >= 64 || strlen(password) >= 1024 ||
        strcspn(user, "\r\n\t:/") != strlen(user)) {
        json_decref(body);
        return http_reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_field",
                                "user and password: send {\"user\": NAME, \"password\": "
                                "SECRET} (a name of 1 to 63 characters)");
    }
    char key[80];
    unsigned wait;
    snprintf(key, sizeof(key), "ip:%s", r->client);
    wait = rate_limit(r->web->auth, key, (unsigned)cfg->login_attempts_per_minute);
    snprintf(key, sizeof(key), "user:%s", user);
    unsigned wait_user =
        rate_limit(r->web->auth, key, (unsigned)cfg->login_attempts_per_minute);
    if (wait_user > wait)
        wait = wait_user;
    if (wait) {
        json_decref(body);
        log_warn("login rate limit hit for '%s' from %s", user, r->client);
        char after[16];
        snprintf(after, sizeof(after), "%u", wait);
        struct MHD_Response *resp = http_json_response(json_pack(
            "{s:{s:s, s:s}}", "error", "code", "rate_limited", "message",
            "too many login attempts; wait a minute (login_attempts_per_minute)"));
        if (resp)
            http_add_header(resp, "Retry-After", after);
        return http_reply(r, MHD_HTTP_TOO_MANY_REQUESTS, resp);
    }

    struct login_job *j = calloc(1, sizeof(*j));
    if (!j) {
        json_decref(body);
        return MHD_NO;
    }
    j->r = r;
    j->attempt.cfg = cfg;
    j->attempt.store = r->web->store;
    snprintf(j->attempt.user, sizeof(j->attempt.user), "%s", user);
    snprintf(j->attempt.password, sizeof(j->attempt.password), "%s", password);
    json_decref(body);
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
        if (!strcmp(backends[i].name, cfg->auth))
            j->backend = &backends[i];
    if (!j->backend) {
        free(j);
        return http_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                                "auth backend %s is not available", cfg->auth);
    }
    r->job = j;
    r->job_free = free;
    if (workq_submit(r->web->work, login_run, login_done, j) < 0)
        return MHD_NO;
    return http_suspend(r);
}

enum MHD_Result auth_logout(struct http_request *r)
{
    if (r->who.login[0])
        store_login_delete(r->web->store, r->who.login);
    struct MHD_Response *resp = http_json_response(json_pack("{s:b}", "ok", 1));
    if (resp)
        http_add_header(resp, "Set-Cookie",
                        LOGIN_COOKIE "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    return http_reply(r, MHD_HTTP_OK, resp);
}

#include "web/http.h"

#include "util/fs.h"
#include "util/log.h"
#include "util/loop.h"
#include "web/api.h"
#include "web/auth.h"
#include "web/viewer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

typedef enum MHD_Result (*http_handler)(struct http_request *r);

/* PUBLIC: anyone; USER: logged in; ADMIN: an administrator; SCRAPER: an
 * administrator, a client on this host, or one with [server] metrics_token. */
enum access { PUBLIC, USER, ADMIN, SCRAPER };

struct route {
    const char *method;
    const char *pattern; /* '*' matches one path segment */
    http_handler handler;
    enum access access;
};

static const struct route routes[] = {
    {"GET", "/healthz", api_healthz, PUBLIC},
    {"GET", "/metrics", api_metrics, SCRAPER},
    {"POST", "/api/v1/login", auth_login, PUBLIC},
    {"POST", "/api/v1/logout", auth_logout, PUBLIC},
    {"GET", "/api/v1/me", auth_me, PUBLIC},
    {"GET", "/api/v1/machines", api_machines, USER},
    {"GET", "/api/v1/host", api_host, USER},
    {"GET", "/api/v1/sessions", api_sessions_list, USER},
    {"POST", "/api/v1/sessions", api_session_create, USER},
    {"DELETE", "/api/v1/sessions", api_sessions_stop_all, ADMIN},
    {"GET", "/api/v1/sessions/*", api_session_get, USER},
    {"DELETE", "/api/v1/sessions/*", api_session_stop, USER},
    {"POST", "/api/v1/sessions/*/extend", api_session_extend, USER},
    {"GET", "/api/v1/sessions/*/serial", api_session_serial, USER},
    {"GET", "/api/v1/sessions/*/screenshot", api_session_screenshot, USER},
    {"POST", "/api/v1/sessions/*/usb", api_session_usb_attach, USER},
    {"DELETE", "/api/v1/sessions/*/usb/*", api_session_usb_detach, USER},
    {"GET", "/s/*", viewer_page, PUBLIC},
    {"GET", "/s/*/info", viewer_info, PUBLIC},
    {"GET", "/s/*/qr.svg", viewer_qr, PUBLIC},
    {"GET", "/ws/*", viewer_websocket, PUBLIC},
};

struct listener {
    struct http *h;
    struct MHD_Daemon *d;
    int epfd;
    bool control;
    bool tls;
};

struct http {
    struct web *web;
    struct listener pub, ctl;
    struct loop_timer *timer;
    char *tls_key, *tls_cert;
    char control_path[PATH_MAX];
};

/* ---- driving libmicrohttpd from the loop ----------------------------------- */

static void run_all(struct http *h);

static void on_timer(struct loop *l, void *arg)
{
    (void)l;
    struct http *h = arg;
    h->timer = NULL;
    run_all(h);
}

/* Runs both daemons and re-arms the timer for their next timeout. */
static void run_all(struct http *h)
{
    uint64_t next = UINT64_MAX;
    struct listener *ls[] = {&h->pub, &h->ctl};
    for (int i = 0; i < 2; i++) {
        if (!ls[i]->d)
            continue;
        MHD_run(ls[i]->d);
        MHD_UNSIGNED_LONG_LONG t;
        if (MHD_get_timeout(ls[i]->d, &t) == MHD_YES && t < next)
            next = t;
    }
    loop_timer_cancel(h->web->loop, h->timer);
    h->timer = NULL;
    if (next != UINT64_MAX)
        h->timer = loop_timer_add(h->web->loop, next, on_timer, h);
}

static void on_epoll(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    struct listener *ls = arg;
    run_all(ls->h);
}

/* ---- responses ------------------------------------------------------------- */

void http_add_header(struct MHD_Response *resp, const char *name, const char *value)
{
    MHD_add_response_header(resp, name, value);
}

enum MHD_Result http_reply(struct http_request *r, unsigned status,
                           struct MHD_Response *resp)
{
    if (!resp)
        return MHD_NO;
    /* Viewer URLs carry capabilities: never leak them in a Referer. */
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(
        resp, "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self' "
        "'unsafe-inline'; connect-src 'self' ws: wss:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
    if (r->tls)
        MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
    enum MHD_Result rc;
    if (r->suspended) {
        r->pending = resp;
        r->pending_status = status;
        return MHD_YES;
    }
    rc = MHD_queue_response(r->con, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

enum MHD_Result http_reply_data(struct http_request *r, unsigned status, const char *type,
                                const void *data, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    return http_reply(r, status, resp);
}

struct MHD_Response *http_json_response(json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    text[n] = '\n'; /* one line per document, for curl users */
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(n + 1, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    return resp;
}

enum MHD_Result http_reply_json(struct http_request *r, unsigned status, json_t *body)
{
    return http_reply(r, status, http_json_response(body));
}

enum MHD_Result http_reply_error(struct http_request *r, unsigned status,
                                 const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:s, s:s}", "code", code, "message", msg);
    /* Messages about a field start with its name ("cpus: ..."): say it apart too,
     * so a form can put the message beside the right control. */
    size_t n = strspn(msg, "abcdefghijklmnopqrstuvwxyz_");
    if (!strcmp(code, "invalid_field") && n > 0 && msg[n] == ':')
        json_object_set_new(e, "field", json_stringn(msg, n));
    return http_reply_json(r, status, json_pack("{s:o}", "error", e));
}

enum MHD_Result http_reply_file(struct http_request *r, const char *path,
                                const char *type)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return http_reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", "%s was not found",
                                r->path);
    }
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
    if (!resp) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    return http_reply(r, MHD_HTTP_OK, resp);
}

enum MHD_Result http_suspend(struct http_request *r)
{
    r->suspended = true;
    MHD_suspend_connection(r->con);
    return MHD_YES;
}

void http_resume(struct http_request *r, unsigned status, struct MHD_Response *resp)
{
    http_reply(r, status, resp); /* parks the response in r->pending */
    MHD_resume_connection(r->con);
    run_all(r->web->http);
}

/* ---- requests ---------------------------------------------------------------- */

const char *http_header(struct http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->con, MHD_HEADER_KIND, name);
}

const char *http_cookie(struct http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->con, MHD_COOKIE_KIND, name);
}

void http_base_url(struct http_request *r, char *out, size_t outsz)
{
    const struct config *cfg = r->web->cfg;
    if (cfg->base_url[0]) {
        snprintf(out, outsz, "%s", cfg->base_url);
    } else {
        const char *host = r->control ? NULL : http_header(r, "Host");
        /* Only a plain host[:port] may become part of a link. */
        if (!host || !*host ||
            strspn(host, "abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") != strlen(host))
            host = cfg->listen;
        snprintf(out, outsz, "%s://%s", r->web->http->pub.tls ? "https" : "http", host);
    }
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '/')
        out[--n] = 0;
}

/* Matches path against pattern; fills r->args with the '*' segments. */
static bool match(struct http_request *r, const char *pattern, const char *path)
{
    char *arg = r->argbuf;
    size_t left = sizeof(r->argbuf);
    int n = 0;
    while (*pattern && *path) {
        if (*pattern == '*') {
            size_t seg = strcspn(path, "/");
            if (seg == 0 || seg >= left || n == 3)
                return false;
            memcpy(arg, path, seg);
            arg[seg] = 0;
            r->args[n++] = arg;
            arg += seg + 1;
            left -= seg + 1;
            path += seg;
            pattern++;
            continue;
        }
        if (*pattern++ != *path++)
            return false;
    }
    return *pattern == 0 && *path == 0;
}

static const char *content_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".json", "application/json"},
        {".woff2", "font/woff2"},
        {".map", "application/json"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(dot, types[i].ext))
            return types[i].type;
    return "application/octet-stream";
}

/* Serves the portal's files: "/" is index.html, "/monitor" monitor.html, and so
 * on; nothing outside the www directory is ever opened. */
static enum MHD_Result serve_static(struct http_request *r)
{
    const char *p = r->path;
    char rel[1100];
    if (!strcmp(p, "/"))
        p = "/index.html";
    bool clean = p[0] == '/' && !strstr(p, "..") && !strstr(p, "//") &&
                 strspn(p + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789._-/") == strlen(p + 1);
    if (!clean)
        return http_reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", "not found");
    snprintf(rel, sizeof(rel), "%s%s", p, strchr(strrchr(p, '/'), '.') ? "" : ".html");
    char path[PATH_MAX + 1100];
    snprintf(path, sizeof(path), "%s%s", r->web->cfg->www, rel);
    return http_reply_file(r, path, content_type(rel));
}

/* Identifies the caller of a control-socket request by its unix credentials. */
static void identify_control(struct http_request *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->con, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct ucred cred;
    socklen_t len = sizeof(cred);
    r->control = true;
    snprintf(r->client, sizeof(r->client), "control");
    if (!ci || getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return;
    if (cred.uid == 0 || cred.uid == geteuid()) {
        r->who.known = r->who.admin = r->who.via_control = true;
        struct passwd *pw = getpwuid(cred.uid);
        snprintf(r->who.user, sizeof(r->who.user), "%s",
                 pw              ? pw->pw_name
                 : cred.uid == 0 ? "root"
                                 : "qdesk");
    }
}

static void client_address(struct http_request *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    r->client[0] = 0;
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct in_addr *a = &((const struct sockaddr_in *)sa)->sin_addr;
        inet_ntop(AF_INET, a, r->client, sizeof(r->client));
        r->loopback = ntohl(a->s_addr) >> 24 == 127;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        inet_ntop(AF_INET6, a, r->client, sizeof(r->client));
        r->loopback =
            IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
}

/* A Prometheus scraper elsewhere presents [server] metrics_token as a bearer token. */
static bool bearer_ok(struct http_request *r)
{
    const char *want = r->web->cfg->metrics_token,
               *auth = http_header(r, "Authorization");
    if (!want[0] || !auth || strncmp(auth, "Bearer ", 7) != 0)
        return false;
    size_t n = strlen(want);
    return strlen(auth + 7) == n && sodium_memcmp(auth + 7, want, n) == 0;
}

static enum MHD_Result dispatch(struct http_request *r)
{
    bool path_known = false;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *rt = &routes[i];
        if (!match(r, rt->pattern, r->path))
            continue;
        path_known = true;
        if (strcmp(rt->method, r->method) != 0)
            continue;
        if (rt->access == SCRAPER && !r->who.admin && !r->loopback && !bearer_ok(r))
            return http_reply_error(r, MHD_HTTP_UNAUTHORIZED, "unauthorized",
                                    "metrics are for administrators, clients on this "
                                    "host, and scrapers that send \"Authorization: "
                                    "Bearer\" with [server] metrics_token");
        if (rt->access != PUBLIC && rt->access != SCRAPER && !r->who.known)
            return http_reply_error(r, MHD_HTTP_UNAUTHORIZED, "unauthorized",
                                    "log in first (POST /api/v1/login)");
        if (rt->access == ADMIN && !r->who.admin)
            return http_reply_error(r, MHD_HTTP_FORBIDDEN, "forbidden",
                                    "only administrators may do this");
        /* Browsers send a custom header only from our own pages (a cross-site
         * request with one needs a CORS preflight we never grant); with a login it
         * must also carry that login's token. */
        bool changes = strcmp(r->method, "GET") && strcmp(r->method, "HEAD");
        if (changes && !r->control) {
            const char *csrf = http_header(r, "X-CSRF-Token");
            if (!csrf || (r->who.csrf[0] && strcmp(csrf, r->who.csrf) != 0))
                return http_reply_error(r, MHD_HTTP_FORBIDDEN, "csrf",
                                        "the X-CSRF-Token header is missing or stale; "
                                        "reload the page");
        }
        if (r->body_too_large)
            return http_reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "too_large",
                                    "the request body is larger than %llu KiB",
                                    (unsigned long long)r->web->cfg->max_body_kb);
        return rt->handler(r);
    }
    if (path_known)
        return http_reply_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                                "%s is not allowed on %s", r->method, r->path);
    if (!strncmp(r->path, "/api/", 5) || r->control)
        return http_reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no API at %s",
                                r->path);
    if (strcmp(r->method, "GET") && strcmp(r->method, "HEAD"))
        return http_reply_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                                "%s is not allowed on %s", r->method, r->path);
    return serve_static(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **ctx)
{
    struct listener *ls = cls;
    struct http_request *r = *ctx;
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r)
            return MHD_NO;
        r->web = ls->h->web;
        r->con = con;
        r->method = method;
        r->version = version;
        r->tls = ls->tls;
        snprintf(r->path, sizeof(r->path), "%s", url);
        *ctx = r;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t max = r->web->cfg->max_body_kb * 1024;
        if (!r->body_too_large && r->body_len + *upload_size <= max) {
            char *grown = realloc(r->body, r->body_len + *upload_size + 1);
            if (!grown)
                return MHD_NO;
            r->body = grown;
            memcpy(r->body + r->body_len, upload, *upload_size);
            r->body_len += *upload_size;
            r->body[r->body_len] = 0;
        } else {
            r->body_too_large = true;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->pending) { /* resumed after http_suspend() */
        enum MHD_Result rc = MHD_queue_response(con, r->pending_status, r->pending);
        MHD_destroy_response(r->pending);
        r->pending = NULL;
        return rc;
    }
    if (r->suspended)
        return MHD_YES;
    if (ls->control)
        identify_control(r);
    else {
        client_address(r);
        auth_identify(r);
    }
    return dispatch(r);
}

static void on_completed(void *cls, struct MHD_Connection *con, void **ctx,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)con;
    (void)toe;
    struct http_request *r = *ctx;
    if (!r)
        return;
    if (r->pending)
        MHD_destroy_response(r->pending);
    if (r->job_free)
        r->job_free(r->job);
    free(r->body);
    free(r);
    *ctx = NULL;
}

/* ---- listeners --------------------------------------------------------------- */

/* Parses "host:port" or "[v6]:port" into sa. Returns 0 or -1. */
static int parse_listen(const char *listen, struct sockaddr_storage *sa, socklen_t *len,
                        bool *loopback)
{
    char host[128];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen)
        return -1;
    snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535)
        return -1;
    memset(sa, 0, sizeof(*sa));
    if (host[0] == '[') {
        size_t n = strlen(host);
        if (n < 3 || host[n - 1] != ']')
            return -1;
        host[n - 1] = 0;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
            return -1;
        *len = sizeof(*s6);
        *loopback = IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
        return 0;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    if (!strcmp(host, "localhost"))
        snprintf(host, sizeof(host), "127.0.0.1");
    if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
        return -1;
    *len = sizeof(*s4);
    *loopback = (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
    return 0;
}

/* libmicrohttpd's own complaints (a client that speaks plain HTTP to the TLS port,
 * a broken connection) go to our log, one line each. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = 0;
    log_info("http: %s", line);
}

static int start_listener(struct http *h, struct listener *ls, unsigned flags,
                          struct MHD_OptionItem *opts, char *err, size_t errsz)
{
    ls->h = h;
    ls->d = MHD_start_daemon(flags | MHD_USE_EPOLL | MHD_ALLOW_UPGRADE |
                                 MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
                             0, NULL, NULL, on_request, ls, MHD_OPTION_EXTERNAL_LOGGER,
                             mhd_log, NULL, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!ls->d) {
        snprintf(err, errsz,
                 "cannot start the HTTP%s listener on %s (in use? bad TLS files?)",
                 ls->tls ? "S" : "", ls->control ? h->control_path : h->web->cfg->listen);
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(ls->d, MHD_DAEMON_INFO_EPOLL_FD);
    ls->epfd = di ? di->epoll_fd : -1;
    if (ls->epfd < 0 || loop_add_fd(h->web->loop, ls->epfd, EPOLLIN, on_epoll, ls) < 0) {
        snprintf(err, errsz, "cannot watch the HTTP listener");
        return -1;
    }
    return 0;
}

/* Creates the control socket: a unix socket only root and the service's own user
 * can connect to (mode 0600, in the state directory). */
static int control_socket(struct http *h, char *err, size_t errsz)
{
    const struct config *cfg = h->web->cfg;
    if (cfg->control_socket[0])
        snprintf(h->control_path, sizeof(h->control_path), "%s", cfg->control_socket);
    else
        snprintf(h->control_path, sizeof(h->control_path), "%s/control.sock", cfg->state);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(h->control_path) >= sizeof(sa.sun_path)) {
        snprintf(err, errsz, "control socket path too long: %s", h->control_path);
        return -1;
    }
    memcpy(sa.sun_path, h->control_path, strlen(h->control_path) + 1);
    unlink(h->control_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    mode_t old = umask(0177);
    int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc < 0 || listen(fd, 64) < 0) {
        snprintf(err, errsz, "control socket %s: %s", h->control_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

struct http *http_new(struct web *web, char *err, size_t errsz)
{
    const struct config *cfg = web->cfg;
    struct http *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    h->web = web;
    web->http = h;

    struct sockaddr_storage sa;
    socklen_t salen;
    bool loopback;
    if (parse_listen(cfg->listen, &sa, &salen, &loopback) < 0) {
        snprintf(err, errsz, "[server] listen = '%s' must be HOST:PORT or [V6]:PORT",
                 cfg->listen);
        goto fail;
    }
    if (!strcmp(cfg->auth, "none") && !loopback && !cfg->allow_remote_none) {
        snprintf(
            err, errsz,
            "[auth] auth = none on the non-loopback address %s would let anyone on the "
            "network start VMs; choose local or pam, or set allow_remote_none = true",
            cfg->listen);
        goto fail;
    }
    unsigned flags = sa.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0;
    if (cfg->tls_cert[0] || cfg->tls_key[0]) {
        h->tls_cert = fs_read_file(cfg->tls_cert, 1 << 20, NULL);
        h->tls_key = fs_read_file(cfg->tls_key, 1 << 20, NULL);
        if (!h->tls_cert || !h->tls_key) {
            snprintf(err, errsz,
                     "[server] tls_cert and tls_key must both name readable PEM "
                     "files (%s)",
                     strerror(errno));
            goto fail;
        }
        flags |= MHD_USE_TLS;
        h->pub.tls = true;
    }
    struct MHD_OptionItem pub_opts[] = {
        {MHD_OPTION_SOCK_ADDR, 0, &sa},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, 1000, NULL},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, 100, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, 60, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, 64 * 1024, NULL},
        {h->pub.tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, h->tls_key},
        {h->pub.tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, h->tls_cert},
        {MHD_OPTION_END, 0, NULL},
    };
    if (start_listener(h, &h->pub, flags, pub_opts, err, errsz) < 0)
        goto fail;

    int cfd = control_socket(h, err, errsz);
    if (cfd < 0)
        goto fail;
    h->ctl.control = true;
    struct MHD_OptionItem ctl_opts[] = {
        {MHD_OPTION_LISTEN_SOCKET, cfd, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, 60, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    if (start_listener(h, &h->ctl, 0, ctl_opts, err, errsz) < 0) {
        close(cfd);
        goto fail;
    }
    run_all(h);
    return h;
fail:
    http_free(h);
    return NULL;
}

void http_free(struct http *h)
{
    if (!h)
        return;
    struct listener *ls[] = {&h->pub, &h->ctl};
    for (int i = 0; i < 2; i++) {
        if (ls[i]->epfd > 0)
            loop_del_fd(h->web->loop, ls[i]->epfd);
        if (ls[i]->d)
            MHD_stop_daemon(ls[i]->d);
    }
    if (h->control_path[0])
        unlink(h->control_path);
    loop_timer_cancel(h->web->loop, h->timer);
    free(h->tls_cert);
    free(h->tls_key);
    free(h);
}

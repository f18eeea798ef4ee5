/* qdesk proxy: a standalone WebSocket-to-VNC proxy on one TCP port, for
 * benchmarks and as a drop-in replacement for websockify. It accepts connections,
 * reads one strict HTTP/1.1 Upgrade request from each, answers it, and hands the
 * socket to the same proxy core the service uses. */
#include "web/wsproxy.h"

#include "util/log.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQUEST_MAX     8192  /* bytes of request header accepted */
#define REQUEST_TIMEOUT 10000 /* ms to send it */
#define PENDING_MAX     256   /* connections still sending their request */
#define HEADERS_MAX     64

/* --- the request parser -------------------------------------------------------- */

static bool is_tchar(int c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int refuse(int *status, int code, char *err, size_t errsz, const char *msg)
{
    *status = code;
    snprintf(err, errsz, "%s", msg);
    return -1;
}

/* Copies a header value into dst; false when it does not fit. */
static bool copy_value(char *dst, size_t dstsz, const char *v, size_t n)
{
    if (n >= dstsz)
        return false;
    memcpy(dst, v, n);
    dst[n] = 0;
    return true;
}

int wsproxy_parse_request(const char *buf, size_t len, struct wsproxy_request *out,
                          int *status, char *err, size_t errsz)
{
    memset(out, 0, sizeof(*out));
    *status = 400;
    if (len >= 4 && memcmp(buf, "GET ", 4))
        return refuse(status, 405, err, errsz, "only GET can be upgraded");
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t hlen = (size_t)(end - buf) + 4;
    if (memchr(buf, 0, hlen))
        return refuse(status, 400, err, errsz, "NUL byte in the request");

    /* request line: GET SP path SP HTTP/1.1 */
    const char *line = buf, *eol = memmem(line, hlen, "\r\n", 2);
    const char *path = line + 4, *sp = memchr(path, ' ', (size_t)(eol - path));
    if (!sp || sp == path || *path != '/' || (size_t)(sp - path) >= sizeof(out->path))
        return refuse(status, 400, err, errsz, "malformed request line");
    for (const char *c = path; c < sp; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
            return refuse(status, 400, err, errsz, "malformed request path");
    if ((size_t)(eol - sp - 1) != 8 || memcmp(sp + 1, "HTTP/1.1", 8))
        return refuse(status, 400, err, errsz, "the request must be HTTP/1.1");
    memcpy(out->path, path, (size_t)(sp - path));

    bool upgrade = false, connection = false, have_key = false, have_version = false;
    int headers = 0;
    for (line = eol + 2; line < end + 2; line = eol + 2) {
        eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        if (++headers > HEADERS_MAX)
            return refuse(status, 400, err, errsz, "too many header fields");
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (!colon || colon == line)
            return refuse(status, 400, err, errsz, "malformed header field");
        for (const char *c = line; c < colon; c++)
            if (!is_tchar((unsigned char)*c))
                return refuse(status, 400, err, errsz, "malformed header field name");
        size_t nlen = (size_t)(colon - line);
        const char *v = colon + 1, *vend = eol;
        while (v < vend && (*v == ' ' || *v == '\t'))
            v++;
        while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        for (const char *c = v; c < vend; c++)
            if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
                return refuse(status, 400, err, errsz, "control character in a header");
        size_t vlen = (size_t)(vend - v);
        char value[1024];
        if (vlen >= sizeof(value))
            return refuse(status, 400, err, errsz, "header field value too long");
        memcpy(value, v, vlen);
        value[vlen] = 0;
#define IS(name) (nlen == strlen(name) && !strncasecmp(line, name, nlen))
        if (IS("Upgrade")) {
            upgrade = upgrade || wsproxy_list_has(value, "websocket", true);
        } else if (IS("Connection")) {
            connection = connection || wsproxy_list_has(value, "upgrade", true);
        } else if (IS("Sec-WebSocket-Key")) {
            if (have_key || !copy_value(out->key, sizeof(out->key), v, vlen))
                return refuse(status, 400, err, errsz, "Sec-WebSocket-Key: malformed");
            have_key = true;
        } else if (IS("Sec-WebSocket-Version")) {
            if (have_version || !copy_value(out->version, sizeof(out->version), v, vlen))
                return refuse(status, 426, err, errsz,
                              "Sec-WebSocket-Version: malformed");
            have_version = true;
        } else if (IS("Sec-WebSocket-Protocol")) {
            size_t used = strlen(out->protocols);
            if (used + vlen + 3 > sizeof(out->protocols))
                return refuse(status, 400, err, errsz,
                              "Sec-WebSocket-Protocol: too long");
            if (used) {
                memcpy(out->protocols + used, ", ", 2);
                used += 2;
            }
            memcpy(out->protocols + used, value, vlen + 1);
        }
#undef IS
    }
    if (!upgrade)
        return refuse(status, 400, err, errsz,
                      "not a WebSocket upgrade (Upgrade: websocket)");
    if (!connection)
        return refuse(status, 400, err, errsz, "Connection: must contain \"upgrade\"");
    if (!have_key)
        return refuse(status, 400, err, errsz, "Sec-WebSocket-Key: missing");
    if (!have_version)
        return refuse(status, 426, err, errsz, "Sec-WebSocket-Version: missing");
    out->header_len = hlen;
    return 1;
}

/* --- the server ---------------------------------------------------------------- */

struct server {
    struct loop *loop;
    struct wsproxy *proxy;
    const char *vnc_path;
    bool view_only;
    int lfd, sigfd;
    struct conn *conns; /* connections still in their HTTP request */
    size_t n_conns;
};

struct conn {
    struct server *s;
    struct conn *next;
    int fd;
    struct loop_timer *timer;
    size_t len;
    char buf[REQUEST_MAX];
};

/* Forgets a connection in its HTTP phase; closes its socket unless keep_fd. */
static void conn_end(struct conn *c, bool keep_fd)
{
    struct server *s = c->s;
    for (struct conn **pp = &s->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    s->n_conns--;
    loop_timer_cancel(s->loop, c->timer);
    loop_del_fd(s->loop, c->fd);
    if (!keep_fd)
        close(c->fd);
    free(c);
}

static void send_all(int fd, const char *text, size_t len)
{
    /* a fresh socket takes a short answer whole; a partial one is not retried */
    if (send(fd, text, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("proxy: answer not sent: %s", strerror(errno));
}

static void answer_error(struct conn *c, int status, const char *msg)
{
    const char *text = status == 405   ? "Method Not Allowed"
                       : status == 426 ? "Upgrade Required"
                       : status == 431 ? "Request Header Fields Too Large"
                                       : "Bad Request";
    char out[1024];
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n%s%s\r\n%s\n",
                     status, text, strlen(msg) + 1,
                     status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "",
                     status == 405 ? "Allow: GET\r\n" : "", msg);
    send_all(c->fd, out, (size_t)n < sizeof(out) ? (size_t)n : sizeof(out) - 1);
    log_info("proxy: refused a request: %d %s", status, msg);
    conn_end(c, false);
}

static void viewer_closed(void *ctx, int fd, const char *reason)
{
    (void)ctx;
    log_info("proxy: viewer closed: %s", reason);
    close(fd);
}

/* The request is complete: answer 101 and hand the socket to the proxy. */
static void upgrade(struct conn *c, const struct wsproxy_request *req)
{
    struct server *s = c->s;
    struct wsproxy_accept acc;
    char err[256];
    if (wsproxy_handshake(req->key, req->version, req->protocols, &acc, err,
                          sizeof(err)) < 0) {
        answer_error(c, acc.status, err);
        return;
    }
    char out[512];
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                     acc.accept, acc.protocol ? "Sec-WebSocket-Protocol: " : "",
                     acc.protocol ? acc.protocol : "", acc.protocol ? "\r\n" : "");
    if (send(c->fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
        conn_end(c, false);
        return;
    }
    int fd = c->fd;
    const char *extra = c->buf + req->header_len;
    size_t extra_len = c->len - req->header_len;
    char copy[REQUEST_MAX];
    memcpy(copy, extra, extra_len);
    conn_end(c, true);
    if (wsproxy_attach(s->proxy, fd, copy, extra_len, s->vnc_path, s->view_only,
                       viewer_closed, NULL, err, sizeof(err)) < 0) {
        log_error("proxy: %s", err);
        close(fd);
    }
}

static void on_conn(struct loop *l, int fd, uint32_t events, void *data)
{
    struct conn *c = data;
    (void)l, (void)events;
    ssize_t r = recv(fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (r <= 0) {
        conn_end(c, false);
        return;
    }
    c->len += (size_t)r;
    struct wsproxy_request req;
    int status;
    char err[256];
    int rc = wsproxy_parse_request(c->buf, c->len, &req, &status, err, sizeof(err));
    if (rc < 0)
        answer_error(c, status, err);
    else if (rc > 0)
        upgrade(c, &req);
    else if (c->len == sizeof(c->buf))
        answer_error(c, 431, "the request header is too long");
}

static void on_conn_timeout(struct loop *l, void *data)
{
    struct conn *c = data;
    (void)l;
    c->timer = NULL;
    conn_end(c, false);
}

static void on_accept(struct loop *l, int fd, uint32_t events, void *data)
{
    struct server *s = data;
    (void)events;
    for (;;) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                log_warn("proxy: accept: %s", strerror(errno));
            return;
        }
        struct conn *c = s->n_conns < PENDING_MAX ? malloc(sizeof(*c)) : NULL;
        if (!c) {
            close(cfd);
            continue;
        }
        c->s = s;
        c->fd = cfd;
        c->len = 0;
        c->timer = loop_timer_add(l, REQUEST_TIMEOUT, on_conn_timeout, c);
        if (!c->timer || loop_add_fd(l, cfd, EPOLLIN, on_conn, c) < 0) {
            loop_timer_cancel(l, c->timer);
            close(cfd);
            free(c);
            continue;
        }
        c->next = s->conns;
        s->conns = c;
        s->n_conns++;
    }
}

static void on_signal(struct loop *l, int fd, uint32_t events, void *data)
{
    struct signalfd_siginfo si;
    (void)events, (void)data;
    if (read(fd, &si, sizeof(si)) > 0)
        loop_stop(l);
}

/* Opens a listening TCP socket on "HOST:PORT" ("[::1]:PORT", ":PORT" for all). */
static int listen_on(const char *spec, char *err, size_t errsz)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || !colon[1] || (size_t)(colon - spec) >= sizeof(host)) {
        snprintf(err, errsz, "%s: want LISTEN_ADDR:PORT", spec);
        return -1;
    }
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = 0;
    char *h = host;
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = 0;
        h++;
    }
    struct addrinfo hints = {.ai_flags = AI_PASSIVE, .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(*h && strcmp(h, "*") ? h : NULL, colon + 1, &hints, &ai);
    if (rc) {
        snprintf(err, errsz, "%s: %s", spec, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
        snprintf(err, errsz, "%s: %s", spec, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static const char proxy_usage[] =
    "usage: qdesk proxy [--view-only] LISTEN_ADDR:PORT UNIX_SOCKET_PATH\n"
    "  Proxies WebSocket clients (noVNC) on LISTEN_ADDR:PORT to the VNC server on\n"
    "  UNIX_SOCKET_PATH; --view-only drops every input message.\n";

int wsproxy_main(int argc, char **argv)
{
    struct server s = {.lfd = -1, .sigfd = -1};
    const char *pos[2];
    int npos = 0, rc = 1;
    char err[512];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--view-only")) {
            s.view_only = true;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(proxy_usage, stdout);
            return 0;
        } else if (argv[i][0] == '-' || npos == 2) {
            fputs(proxy_usage, stderr);
            return 2;
        } else {
            pos[npos++] = argv[i];
        }
    }
    if (npos != 2) {
        fputs(proxy_usage, stderr);
        return 2;
    }
    s.vnc_path = pos[1];

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    s.loop = loop_new();
    s.proxy = s.loop ? wsproxy_new(s.loop, NULL) : NULL;
    if (!s.proxy) {
        fprintf(stderr, "qdesk proxy: out of memory\n");
        goto cleanup;
    }
    s.lfd = listen_on(pos[0], err, sizeof(err));
    if (s.lfd < 0) {
        fprintf(stderr, "qdesk proxy: %s\n", err);
        goto cleanup;
    }
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ||
        (s.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
        loop_add_fd(s.loop, s.sigfd, EPOLLIN, on_signal, &s) < 0 ||
        loop_add_fd(s.loop, s.lfd, EPOLLIN, on_accept, &s) < 0) {
        fprintf(stderr, "qdesk proxy: %s\n", strerror(errno));
        goto cleanup;
    }
    log_info("proxy: listening on %s for %s%s", pos[0], s.vnc_path,
             s.view_only ? " (view only)" : "");
    rc = loop_run(s.loop) < 0 ? 1 : 0;

cleanup:
    while (s.conns)
        conn_end(s.conns, false);
    wsproxy_free(s.proxy);
    if (s.lfd >= 0) {
        loop_del_fd(s.loop, s.lfd);
        close(s.lfd);
    }
    if (s.sigfd >= 0) {
        loop_del_fd(s.loop, s.sigfd);
        close(s.sigfd);
    }
    loop_free(s.loop);
    return rc;
}

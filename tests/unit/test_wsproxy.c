/* The display proxy end to end: browsers (WebSocket clients on socketpairs that
 * mask their frames as browsers do) and a VNC server stub on a real unix socket,
 * all driven from this one thread through the proxy's event loop. */
#include "web/wsproxy.h"

#include "util/loop.h"
#include "web/rfb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#define MAX_BROWSERS 4

/* Growing byte buffer. */
struct bytes {
    uint8_t *b;
    size_t n, cap;
};

static void bytes_put(struct bytes *s, const void *p, size_t n)
{
    if (s->n + n > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->n + n)
            cap *= 2;
        s->b = realloc(s->b, cap);
        assert_non_null(s->b);
        s->cap = cap;
    }
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

static void bytes_consume(struct bytes *s, size_t n)
{
    memmove(s->b, s->b + n, s->n - n);
    s->n -= n;
}

struct session {
    int closes;
};

struct browser {
    struct env *e;
    struct session own, *session; /* the ctx given to the proxy */
    int fd;                       /* the browser's end */
    int proxy_fd;                 /* the end handed to the proxy */
    int vnc;    /* the stub's end of this viewer's VNC connection, or -1 */
    bool drain; /* pump() collects what reaches the stub into vnc_in */
    bool vnc_eof;
    struct bytes vnc_in, rx;
    int closes;
    char reason[256];
};

struct env {
    struct loop *loop;
    struct wsproxy *proxy;
    char dir[64], sock[128];
    int lfd;
    struct browser *browsers[MAX_BROWSERS];
    int n_browsers;
};

static struct env *current_env; /* for on_close, which has only the socket */
static pid_t proxy_child;       /* a running `qdesk proxy`, ended by the teardown */

static void on_close(void *ctx, int fd, const char *reason)
{
    struct session *s = ctx;
    s->closes++;
    /* find the viewer by its socket */
    for (int i = 0; i < current_env->n_browsers; i++) {
        struct browser *b = current_env->browsers[i];
        if (b->proxy_fd == fd) {
            b->closes++;
            snprintf(b->reason, sizeof(b->reason), "%s", reason);
        }
    }
    close(fd);
}

static void env_init(struct env *e, const struct wsproxy_opts *opts)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/qdesk-wsproxy-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->sock, sizeof(e->sock), "%s/vnc.sock", e->dir);
    e->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", e->sock);
    assert_int_equal(bind(e->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(e->lfd, 16), 0);
    e->loop = loop_new();
    e->proxy = wsproxy_new(e->loop, opts);
    assert_non_null(e->proxy);
    current_env = e;
}

/* Frees the proxy (which ends every viewer still open) and checks that every
 * viewer was reported closed exactly once. */
static void env_done(struct env *e)
{
    wsproxy_free(e->proxy);
    for (int i = 0; i < e->n_browsers; i++) {
        struct browser *b = e->browsers[i];
        assert_int_equal(b->closes, 1);
        close(b->fd);
        if (b->vnc >= 0)
            close(b->vnc);
        free(b->vnc_in.b);
        free(b->rx.b);
    }
    loop_free(e->loop);
    close(e->lfd);
    unlink(e->sock);
    rmdir(e->dir);
    current_env = NULL;
}

static void set_nonblock(int fd)
{
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

/* Reads what reached the stub for browsers that drain. */
static void drain_vnc(struct env *e)
{
    for (int i = 0; i < e->n_browsers; i++) {
        struct browser *b = e->browsers[i];
        while (b->drain && b->vnc >= 0 && !b->vnc_eof) {
            uint8_t buf[65536];
            ssize_t r = read(b->vnc, buf, sizeof(buf));
            if (r > 0)
                bytes_put(&b->vnc_in, buf, (size_t)r);
            else {
                if (r == 0)
                    b->vnc_eof = true;
                break;
            }
        }
    }
}

/* Runs the loop for about ms milliseconds. */
static void pump(struct env *e, int ms)
{
    uint64_t end = loop_now() + (uint64_t)ms;
    do {
        assert_int_equal(loop_run_once(e->loop, 1), 0);
        drain_vnc(e);
    } while (loop_now() < end);
}

/* Attaches a new viewer of session (NULL: a session of its own); with a reachable
 * VNC server, accepts its connection. */
static void open_session_viewer(struct env *e, struct browser *b, struct session *session,
                                bool view_only, const char *path, const void *extra,
                                size_t extra_len)
{
    memset(b, 0, sizeof(*b));
    b->e = e;
    b->session = session ? session : &b->own;
    b->vnc = -1;
    b->drain = true;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    b->fd = sv[0];
    b->proxy_fd = sv[1];
    set_nonblock(b->fd);
    assert_true(e->n_browsers < MAX_BROWSERS);
    e->browsers[e->n_browsers++] = b;
    char err[256];
    assert_int_equal(wsproxy_attach(e->proxy, sv[1], extra, extra_len,
                                    path ? path : e->sock, view_only, on_close,
                                    b->session, err, sizeof(err)),
                     0);
    assert_int_equal(b->closes, 0); /* never from inside attach */
    if (!path) {
        b->vnc = accept4(e->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        assert_true(b->vnc >= 0);
    }
}

static void open_viewer(struct env *e, struct browser *b, bool view_only,
                        const char *path, const void *extra, size_t extra_len)
{
    open_session_viewer(e, b, NULL, view_only, path, extra, extra_len);
}

/* Writes all of buf from the browser, running the loop while its socket is full. */
static void browser_write(struct browser *b, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t r = write(b->fd, p, len);
        if (r > 0) {
            p += r;
            len -= (size_t)r;
        } else {
            assert_true(r < 0 && errno == EAGAIN);
            pump(b->e, 2);
        }
    }
}

/* Builds a frame as a browser does (masked) or as a broken client might. */
static void build_frame(struct bytes *out, int fin, int rsv, int opcode, bool masked,
                        const void *payload, size_t len)
{
    uint8_t h[14];
    size_t n = 0;
    h[n++] = (uint8_t)((fin ? 0x80 : 0) | rsv << 4 | opcode);
    uint8_t m = masked ? 0x80 : 0;
    if (len < 126) {
        h[n++] = (uint8_t)(m | len);
    } else if (len < 65536) {
        h[n++] = m | 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = m | 127;
        for (int i = 7; i >= 0; i--)
            h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    if (masked) {
        memcpy(h + n, key, 4);
        n += 4;
    }
    bytes_put(out, h, n);
    size_t start = out->n;
    bytes_put(out, payload, len);
    if (masked)
        for (size_t i = 0; i < len; i++)
            out->b[start + i] ^= key[i % 4];
}

static void send_frame(struct browser *b, int fin, int opcode, const void *payload,
                       size_t len)
{
    struct bytes f = {0};
    build_frame(&f, fin, 0, opcode, true, payload, len);
    browser_write(b, f.b, f.n);
    free(f.b);
}

struct frame {
    int opcode;
    bool fin;
    uint8_t *data;
    size_t len;
};

/* Reads one frame from the proxy within timeout_ms; false when none came. */
static bool read_frame(struct browser *b, struct frame *f, int timeout_ms)
{
    uint64_t end = loop_now() + (uint64_t)timeout_ms;
    for (;;) {
        uint8_t buf[65536];
        ssize_t r;
        while ((r = read(b->fd, buf, sizeof(buf))) > 0)
            bytes_put(&b->rx, buf, (size_t)r);
        if (b->rx.n >= 2) {
            const uint8_t *p = b->rx.b;
            assert_int_equal(p[1] & 0x80, 0); /* server frames are never masked */
            size_t hl = 2;
            uint64_t len = p[1] & 0x7f;
            if (len == 126) {
                hl = 4;
                len = b->rx.n >= 4 ? (uint64_t)p[2] << 8 | p[3] : UINT64_MAX;
            } else if (len == 127) {
                hl = 10;
                len = 0;
                for (int i = 0; i < 8 && b->rx.n >= 10; i++)
                    len = len << 8 | p[2 + i];
                if (b->rx.n < 10)
                    len = UINT64_MAX;
            }
            if (len != UINT64_MAX && b->rx.n >= hl + len) {
                f->fin = p[0] & 0x80;
                f->opcode = p[0] & 0x0f;
                f->len = (size_t)len;
                f->data = malloc(f->len + 1);
                memcpy(f->data, p + hl, f->len);
                f->data[f->len] = 0;
                bytes_consume(&b->rx, hl + f->len);
                return true;
            }
        }
        if (loop_now() >= end)
            return false;
        pump(b->e, 1);
    }
}

/* Reads binary frames until n payload bytes have come; returns them (to free). */
static uint8_t *read_data(struct browser *b, size_t n)
{
    struct bytes got = {0};
    while (got.n < n) {
        struct frame f;
        assert_true(read_frame(b, &f, 3000));
        assert_int_equal(f.opcode, 2);
        bytes_put(&got, f.data, f.len);
        free(f.data);
    }
    assert_int_equal(got.n, n);
    return got.b;
}

/* Reads frames until a close; returns its status code and copies its reason. */
static int read_close(struct browser *b, char *reason, size_t reasonsz)
{
    for (;;) {
        struct frame f;
        if (!read_frame(b, &f, 3000))
            fail_msg("no close frame came");
        if (f.opcode == 8) {
            int code = f.len >= 2 ? f.data[0] << 8 | f.data[1] : 0;
            if (reason)
                snprintf(reason, reasonsz, "%s", f.len > 2 ? (char *)f.data + 2 : "");
            free(f.data);
            return code;
        }
        free(f.data);
    }
}

static void send_close(struct browser *b, int code)
{
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    send_frame(b, 1, 8, p, code ? 2 : 0);
}

/* Runs the loop until the stub has at least n bytes from b (or timeout_ms). */
static size_t vnc_collect(struct browser *b, size_t n, int timeout_ms)
{
    uint64_t end = loop_now() + (uint64_t)timeout_ms;
    while (b->vnc_in.n < n && loop_now() < end && !b->vnc_eof)
        pump(b->e, 1);
    return b->vnc_in.n;
}

static void vnc_write(struct browser *b, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t r = write(b->vnc, p, len);
        if (r > 0) {
            p += r;
            len -= (size_t)r;
        } else {
            pump(b->e, 1);
        }
    }
}

static void wait_closed(struct browser *b, int timeout_ms)
{
    uint64_t end = loop_now() + (uint64_t)timeout_ms;
    while (b->closes == 0 && loop_now() < end)
        pump(b->e, 1);
    assert_int_equal(b->closes, 1);
}

#define HANDSHAKE "RFB 003.008\n\x01\x00"
static const uint8_t fbur[10] = {3, 1, 0, 0, 0, 0, 7, 128, 4, 56};
static const uint8_t key_a[8] = {4, 1, 0, 0, 0, 0, 0, 'a'};

/* --- handshake and request parsing --------------------------------------------- */

static void the_handshake_answers_as_rfc6455_says(void **state)
{
    (void)state;
    struct wsproxy_accept a;
    char err[256];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_int_equal(wsproxy_handshake(key, "13", NULL, &a, err, sizeof(err)), 0);
    assert_string_equal(a.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_null(a.protocol);
    assert_int_equal(wsproxy_handshake(key, "13", "base64, binary", &a, err, sizeof(err)),
                     0);
    assert_string_equal(a.protocol, "binary");
    assert_int_equal(wsproxy_handshake(key, "13", "base64", &a, err, sizeof(err)), -1);
    assert_int_equal(a.status, 400);
    assert_non_null(strstr(err, "Sec-WebSocket-Protocol"));
    assert_int_equal(wsproxy_handshake(key, "8", NULL, &a, err, sizeof(err)), -1);
    assert_int_equal(a.status, 426);
    assert_int_equal(wsproxy_handshake(key, NULL, NULL, &a, err, sizeof(err)), -1);
    assert_int_equal(a.status, 426);
    assert_int_equal(wsproxy_handshake("abc", "13", NULL, &a, err, sizeof(err)), -1);
    assert_int_equal(a.status, 400);
    assert_non_null(strstr(err, "Sec-WebSocket-Key"));
    assert_int_equal(
        wsproxy_handshake("dGhlIHNhbXBsZSBub25jZQ=A", "13", NULL, &a, err, sizeof(err)),
        -1);
    assert_int_equal(wsproxy_handshake(NULL, "13", NULL, &a, err, sizeof(err)), -1);
}

static void upgrade_requests_are_parsed_strictly(void **state)
{
    (void)state;
    struct wsproxy_request r;
    int status;
    char err[256];
    const char *ok = "GET /websockify HTTP/1.1\r\nHost: 127.0.0.1:6080\r\n"
                     "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n"
                     "sec-websocket-protocol: base64\r\n\r\n\x82\x80";
    size_t len = strlen(ok);
    assert_int_equal(wsproxy_parse_request(ok, len, &r, &status, err, sizeof(err)), 1);
    assert_string_equal(r.path, "/websockify");
    assert_string_equal(r.key, "dGhlIHNhbXBsZSBub25jZQ==");
    assert_string_equal(r.version, "13");
    assert_string_equal(r.protocols, "binary, base64");
    assert_int_equal(r.header_len, len - 2); /* the frame bytes after it are extra */
    for (size_t cut = 0; cut < len - 2; cut++)
        assert_int_equal(wsproxy_parse_request(ok, cut, &r, &status, err, sizeof(err)),
                         0);

    struct {
        const char *req;
        int status;
        const char *err;
    } bad[] = {
        {"POST / HTTP/1.1\r\n\r\n", 405, "GET"},
        {"GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n", 400, "HTTP/1.1"},
        {"GET / HTTP/1.1\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x\r\n\r\n", 400,
         "Upgrade: websocket"},
        {"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 400, "Connection"},
        {"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
         426, "Version"},
        {"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n",
         400, "Key: missing"},
        {"GET / HTTP/1.1\r\nUpgrade: websocket\r\n folded\r\n\r\n", 400, "header"},
        {"GET nopath HTTP/1.1\r\n\r\n", 400, "request line"},
        {"GET / HTTP/1.1\r\nX: a\x01"
         "b\r\n\r\n",
         400, "control character"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(wsproxy_parse_request(bad[i].req, strlen(bad[i].req), &r,
                                               &status, err, sizeof(err)),
                         -1);
        assert_int_equal(status, bad[i].status);
        if (!strstr(err, bad[i].err))
            fail_msg("case %zu: \"%s\" does not mention \"%s\"", i, err, bad[i].err);
    }
}

/* --- what reaches QEMU --------------------------------------------------------- */

static void a_view_only_key_never_reaches_the_vnc_socket(void **state)
{
    (void)state;
    struct env e;
    struct browser b;
    env_init(&e, NULL);
    open_viewer(&e, &b, true, NULL, NULL, 0);
    struct bytes m = {0}, want = {0};
    bytes_put(&m, HANDSHAKE, 14);
    bytes_put(&m, fbur, 10);
    bytes_put(&m, key_a, 8);
    bytes_put(&m, "\x05\x01\x00\x10\x00\x10", 6); /* pointer */
    bytes_put(&m, fbur, 10);
    /* two frames, split inside the key event */
    send_frame(&b, 1, 2, m.b, 27);
    send_frame(&b, 1, 2, m.b + 27, m.n - 27);
    bytes_put(&want, "RFB 003.008\n\x01\x01", 14);
    bytes_put(&want, fbur, 10);
    bytes_put(&want, fbur, 10);
    /* wait for more than can come: nothing but the requests arrives */
    assert_int_equal(vnc_collect(&b, want.n + 1, 300), want.n);
    assert_memory_equal(b.vnc_in.b, want.b, want.n);
    struct wsproxy_stats st;
    wsproxy_stats(e.proxy, &st);
    assert_int_equal(st.messages_dropped, 2);
    assert_int_equal(st.viewers, 1);
    assert_int_equal(st.bytes_to_vnc, want.n);
    assert_int_equal(b.closes, 0);
    free(m.b);
    free(want.b);
    env_done(&e);
}

static void a_control_viewers_input_arrives_byte_exact(void **state)
{
    (void)state;
    struct env e;
    struct browser b;
    env_init(&e, NULL);
    open_viewer(&e, &b, false, NULL, NULL, 0);
    send_frame(&b, 1, 1, HANDSHAKE, 14); /* a text frame, as old clients send */
    /* a key event in a fragmented message, with a ping between the fragments */
    send_frame(&b, 0, 2, key_a, 3);
    send_frame(&b, 1, 9, "abc", 3);
    send_frame(&b, 1, 0, key_a + 3, 5);
    assert_int_equal(vnc_collect(&b, 22, 2000), 22);
    assert_memory_equal(b.vnc_in.b, "RFB 003.008\n\x01\x01", 14);
    assert_memory_equal(b.vnc_in.b + 14, key_a, 8);
    struct frame f;
    assert_true(read_frame(&b, &f, 2000));
    assert_int_equal(f.opcode, 10); /* pong, same payload */
    assert_string_equal((char *)f.data, "abc");
    free(f.data);

    /* and the server's bytes come back in binary frames, unchanged */
    uint8_t out[100000];
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (uint8_t)(i * 7 + i / 256);
    vnc_write(&b, out, sizeof(out));
    uint8_t *got = read_data(&b, sizeof(out));
    assert_memory_equal(got, out, sizeof(out));
    free(got);
    struct wsproxy_stats st;
    wsproxy_stats(e.proxy, &st);
    assert_int_equal(st.bytes_to_browser, sizeof(out));
    env_done(&e);
}

/* The bytes the HTTP layer read past the request are the start of the stream. */
static void bytes_read_with_the_request_are_not_lost(void **state)
{
    (void)state;
    struct env e;
    struct browser b;
    struct bytes extra = {0};
    build_frame(&extra, 1, 0, 2, true, HANDSHAKE, 14);
    build_frame(&extra, 1, 0, 2, true, key_a, 8);
    env_init(&e, NULL);
    open_viewer(&e, &b, false, NULL, extra.b, extra.n);
    assert_int_equal(vnc_collect(&b, 22, 2000), 22);
    assert_memory_equal(b.vnc_in.b + 14, key_a, 8);
    free(extra.b);
    env_done(&e);
}

/* --- errors close one viewer only ---------------------------------------------- */

static void an_rfb_error_closes_that_viewer_and_not_the_other(void **state)
{
    (void)state;
    static const struct {
        const char *stream;
        size_t len;
        const char *reason;
    } cases[] = {
        {HANDSHAKE "\x07", 15, "unknown client message type 7"},
        {HANDSHAKE "\x06\x00\x00\x00\x00\x20\x00\x00", 22, "ClientCutText of 2097152"},
        {"RFB 003.009\n", 12, "RFB 003.009"},
        {"RFB 003.008\n\x02", 13, "security type 2"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env e;
        struct browser bad, good;
        env_init(&e, NULL);
        open_viewer(&e, &bad, false, NULL, NULL, 0);
        open_viewer(&e, &good, false, NULL, NULL, 0);
        send_frame(&good, 1, 2, HANDSHAKE, 14);
        send_frame(&bad, 1, 2, cases[i].stream, cases[i].len);
        char reason[256];
        assert_int_equal(read_close(&bad, reason, sizeof(reason)), 1008);
        if (!strstr(reason, cases[i].reason))
            fail_msg("close reason \"%s\" lacks \"%s\"", reason, cases[i].reason);
        send_close(&bad, 1008); /* as a browser answers */
        wait_closed(&bad, 2000);
        assert_non_null(strstr(bad.reason, cases[i].reason));
        /* the bad message never reached QEMU; its connection was closed */
        vnc_collect(&bad, 1 << 20, 200);
        assert_true(bad.vnc_eof);
        assert_true(bad.vnc_in.n <= 14);

        /* the other viewer of the same VNC server goes on */
        send_frame(&good, 1, 2, key_a, 8);
        assert_int_equal(vnc_collect(&good, 22, 2000), 22);
        assert_memory_equal(good.vnc_in.b + 14, key_a, 8);
        vnc_write(&good, "still here", 10);
        uint8_t *got = read_data(&good, 10);
        assert_memory_equal(got, "still here", 10);
        free(got);
        assert_int_equal(good.closes, 0);
        struct wsproxy_stats st;
        wsproxy_stats(e.proxy, &st);
        assert_int_equal(st.viewers, 1);
        assert_int_equal(st.viewers_failed, 1);
        env_done(&e);
    }
}

static void malformed_frames_are_refused_with_1002(void **state)
{
    (void)state;
    uint8_t big[126] = {0};
    static const struct {
        int fin, rsv, opcode;
        bool masked;
        size_t len;
        const char *reason;
    } cases[] = {
        {1, 0, 2, false, 14, "unmasked"},   {1, 0, 3, true, 4, "opcode"},
        {1, 0, 0, true, 4, "continuation"}, {1, 4, 2, true, 4, "reserved bits"},
        {1, 0, 9, true, 126, "malformed"}, /* control frame over 125 bytes */
        {0, 0, 9, true, 4, "malformed"},   /* fragmented control frame */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env e;
        struct browser b;
        env_init(&e, NULL);
        open_viewer(&e, &b, false, NULL, NULL, 0);
        struct bytes f = {0};
        memcpy(big, HANDSHAKE, 14);
        build_frame(&f, cases[i].fin, cases[i].rsv, cases[i].opcode, cases[i].masked, big,
                    cases[i].len);
        browser_write(&b, f.b, f.n);
        free(f.b);
        assert_int_equal(read_close(&b, NULL, 0), 1002);
        close(b.fd); /* the browser goes away */
        b.fd = -1;
        wait_closed(&b, 2000);
        if (!strstr(b.reason, cases[i].reason))
            fail_msg("case %zu: reason \"%s\" lacks \"%s\"", i, b.reason,
                     cases[i].reason);
        vnc_collect(&b, 1, 200);
        assert_int_equal(b.vnc_in.n, 0); /* nothing of the frame was forwarded */
        assert_true(b.vnc_eof);
        b.fd = open("/dev/null", O_RDONLY); /* for env_done */
        env_done(&e);
    }
}

/* A frame larger than the proxy's buffer flows through as it arrives. */
static void a_frame_larger_than_the_buffer_is_streamed(void **state)
{
    (void)state;
    struct env e;
    struct browser b;
    env_init(&e, NULL);
    open_viewer(&e, &b, false, NULL, NULL, 0);
    size_t body = RFB_MAX_CUT_TEXT;
    struct bytes m = {0}, f = {0};
    bytes_put(&m, HANDSHAKE, 14);
    bytes_put(&m, "\x06\x00\x00\x00\x00\x10\x00\x00", 8);
    for (size_t i = 0; i < body; i++) {
        uint8_t c = (uint8_t)('a' + i % 26);
        bytes_put(&m, &c, 1);
    }
    build_frame(&f, 1, 0, 2, true, m.b, m.n);
    size_t first = 600 << 10;
    browser_write(&b, f.b, first);
    /* the frame is not complete, yet most of it has reached QEMU */
    assert_true(vnc_collect(&b, 500 << 10, 3000) >= 500 << 10);
    browser_write(&b, f.b + first, f.n - first);
    assert_int_equal(vnc_collect(&b, m.n, 3000), m.n);
    m.b[13] = 1;
    assert_memory_equal(b.vnc_in.b, m.b, m.n);
    assert_int_equal(b.closes, 0);
    free(m.b);
    free(f.b);
    env_done(&e);
}

/* --- backpressure -------------------------------------------------------------- */

static int sndbuf(int fd)
{
    int v = 0;
    socklen_t l = sizeof(v);
    getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &l);
    return v;
}

/* Counts loop rounds in ms: an idle loop sleeps, a busy one spins. */
static int rounds_in(struct env *e, int ms)
{
    int n = 0;
    uint64_t end = loop_now() + (uint64_t)ms;
    while (loop_now() < end) {
        loop_run_once(e->loop, 50);
        n++;
    }
    return n;
}

static uint64_t buffered(struct env *e)
{
    struct wsproxy_stats st;
    wsproxy_stats(e->proxy, &st);
    return st.bytes_buffered;
}

static void a_browser_that_stops_reading_stops_the_vnc_reads(void **state)
{
    (void)state;
    struct env e;
    struct browser b;
    env_init(&e, NULL);
    open_viewer(&e, &b, false, NULL, NULL, 0);
    static uint8_t chunk[65536];
    uint64_t sent = 0, most = 0;
    /* the VNC server writes as fast as it can; the browser reads nothing */
    uint64_t last_progress = loop_now();
    bool blocked = false;
    while (loop_now() - last_progress < 300) {
        for (size_t i = 0; i < sizeof(chunk); i++)
            chunk[i] = (uint8_t)((sent + i) % 251);
        ssize_t r = write(b.vnc, chunk, sizeof(chunk));
        if (r > 0) {
            sent += (uint64_t)r;
            last_progress = loop_now();
        } else {
            blocked = errno == EAGAIN;
        }
        pump(&e, 1);
        if (buffered(&e) > most)
            most = buffered(&e);
    }
    /* its writes block: the proxy holds at most its buffer, and the rest is in
     * the two sockets (whose limits the kernel counts with overhead) */
    assert_true(blocked);
    if (most > 256u << 10)
        fail_msg("the proxy held %llu bytes", (unsigned long long)most);
    assert_true(most > 0);
    uint64_t bound =
        (256u << 10) + 2 * ((uint64_t)sndbuf(b.vnc) + (uint64_t)sndbuf(b.proxy_fd));
    if (sent > bound)
        fail_msg("%llu bytes went out with the browser not reading (bound %llu)",
                 (unsigned long long)sent, (unsigned long long)bound);
    /* and the proxy is not spinning while it waits */
    int rounds = rounds_in(&e, 300);
    if (rounds > 20)
        fail_msg("the loop ran %d rounds in 300 ms while blocked", rounds);

    /* the browser reads: everything flows again, in order */
    uint64_t received = 0, total = sent + (4u << 20);
    while (received < total) {
        if (sent < total) {
            size_t n =
                (size_t)(total - sent < sizeof(chunk) ? total - sent : sizeof(chunk));
            for (size_t i = 0; i < n; i++)
                chunk[i] = (uint8_t)((sent + i) % 251);
            ssize_t r = write(b.vnc, chunk, n);
            if (r > 0)
                sent += (uint64_t)r;
        }
        struct frame f;
        if (!read_frame(&b, &f, 3000))
            fail_msg("the stream stopped at %llu bytes", (unsigned long long)received);
        assert_int_equal(f.opcode, 2);
        for (size_t i = 0; i < f.len; i++)
            if (f.data[i] != (uint8_t)((received + i) % 251))
                fail_msg("byte %llu is wrong", (unsigned long long)(received + i));
        received += f.len;
        free(f.data);
    }
    assert_int_equal(b.closes, 0);
    env_done(&e);
}

static void a_vnc_server_that_stops_reading_stops_the_browser_reads(void **state)
{
    (void)state;
    struct env e;
    struct browser b;
    env_init(&e, NULL);
    open_viewer(&e, &b, false, NULL, NULL, 0);
    b.drain = false; /* QEMU is stuck */
    send_frame(&b, 1, 2, HANDSHAKE, 14);
    /* frames of 6553 update requests each */
    struct bytes m = {0}, f = {0};
    for (int i = 0; i < 6553; i++)
        bytes_put(&m, fbur, 10);
    build_frame(&f, 1, 0, 2, true, m.b, m.n);
    uint64_t written = 0, last_progress = loop_now(), most = 0;
    size_t off = 0;
    bool blocked = false;
    while (loop_now() - last_progress < 300) {
        ssize_t r = write(b.fd, f.b + off, f.n - off);
        if (r > 0) {
            written += (uint64_t)r;
            off = (off + (size_t)r) % f.n;
            last_progress = loop_now();
        } else {
            blocked = errno == EAGAIN;
        }
        pump(&e, 1);
        if (buffered(&e) > most)
            most = buffered(&e);
    }
    assert_true(blocked);
    if (most > 256u << 10)
        fail_msg("the proxy held %llu bytes", (unsigned long long)most);
    uint64_t bound =
        (256u << 10) + 2 * ((uint64_t)sndbuf(b.fd) + (uint64_t)sndbuf(b.proxy_fd));
    if (written > bound)
        fail_msg("%llu bytes went in with QEMU not reading (bound %llu)",
                 (unsigned long long)written, (unsigned long long)bound);
    assert_true(rounds_in(&e, 300) <= 20);
    /* QEMU reads again: every whole frame written so far arrives, payload only */
    b.drain = true;
    size_t frames = (size_t)(written / f.n);
    vnc_collect(&b, 14 + frames * m.n, 3000);
    assert_true(b.vnc_in.n >= 14 + frames * m.n);
    for (size_t i = 14; i + 10 <= b.vnc_in.n; i += 10)
        assert_memory_equal(b.vnc_in.b + i, fbur, 10);
    assert_int_equal(b.closes, 0);
    free(m.b);
    free(f.b);
    env_done(&e);
}

/* --- endings ------------------------------------------------------------------- */

static void when_the_vnc_server_closes_the_browser_gets_a_close_frame(void **state)
{
    (void)state;
    struct env e;
    struct browser b;
    env_init(&e, NULL);
    open_viewer(&e, &b, false, NULL, NULL, 0);
    vnc_write(&b, "RFB 003.008\n", 12);
    close(b.vnc);
    b.vnc = -1;
    uint8_t *got = read_data(&b, 12); /* what was sent before the end arrives first */
    assert_memory_equal(got, "RFB 003.008\n", 12);
    free(got);
    assert_int_equal(read_close(&b, NULL, 0), 1000);
    send_close(&b, 1000);
    wait_closed(&b, 2000);
    assert_non_null(strstr(b.reason, "display closed"));
    pump(&e, 50);
    assert_int_equal(b.closes, 1);
    env_done(&e);
}

static void an_unreachable_vm_display_is_close_1011(void **state)
{
    (void)state;
    struct env e;
    struct browser b;
    char path[160], reason[128];
    env_init(&e, NULL);
    snprintf(path, sizeof(path), "%s/gone.sock", e.dir);
    open_viewer(&e, &b, false, path, NULL, 0);
    assert_int_equal(read_close(&b, reason, sizeof(reason)), 1011);
    assert_string_equal(reason, "VM display unavailable");
    close(b.fd); /* the browser leaves without answering */
    b.fd = open("/dev/null", O_RDONLY);
    wait_closed(&b, 2000);
    /* the owner's log names the socket and why */
    assert_non_null(strstr(b.reason, path));
    assert_non_null(strstr(b.reason, "unavailable: No such file or directory"));
    struct wsproxy_stats st;
    wsproxy_stats(e.proxy, &st);
    assert_int_equal(st.viewers, 0);
    assert_int_equal(st.viewers_failed, 1);
    env_done(&e);
}

static void the_browsers_close_is_echoed(void **state)
{
    (void)state;
    struct env e;
    struct browser b;
    env_init(&e, NULL);
    open_viewer(&e, &b, false, NULL, NULL, 0);
    send_frame(&b, 1, 2, HANDSHAKE, 14);
    uint8_t p[5] = {0x03, 0xe8, 'b', 'y', 'e'};
    send_frame(&b, 1, 8, p, sizeof(p));
    assert_int_equal(read_close(&b, NULL, 0), 1000);
    wait_closed(&b, 2000); /* without the browser closing its socket */
    assert_non_null(strstr(b.reason, "browser closed the connection (1000)"));
    vnc_collect(&b, 1 << 20, 200);
    assert_true(b.vnc_eof);
    env_done(&e);
}

static void pings_are_answered_and_a_silent_browser_is_dropped(void **state)
{
    (void)state;
    struct env e;
    struct browser quiet, alive;
    struct wsproxy_opts o = {.ping_interval_ms = 100, .idle_timeout_ms = 400};
    env_init(&e, &o);
    open_viewer(&e, &quiet, false, NULL, NULL, 0);
    open_viewer(&e, &alive, false, NULL, NULL, 0);
    send_frame(&quiet, 1, 9, "hi", 2);
    struct frame f;
    assert_true(read_frame(&quiet, &f, 1000));
    assert_int_equal(f.opcode, 10);
    assert_string_equal((char *)f.data, "hi");
    free(f.data);
    /* quiet answers nothing more; alive answers every ping */
    int pings = 0;
    uint64_t end = loop_now() + 1200;
    while (loop_now() < end) {
        if (read_frame(&alive, &f, 5)) {
            if (f.opcode == 9) {
                pings++;
                send_frame(&alive, 1, 10, f.data, f.len);
            }
            free(f.data);
        }
    }
    assert_true(pings >= 2);
    assert_int_equal(quiet.closes, 1);
    assert_non_null(strstr(quiet.reason, "answered nothing"));
    assert_int_equal(alive.closes, 0);
    env_done(&e);
}

static void closing_a_session_ends_its_viewers_only(void **state)
{
    (void)state;
    struct env e;
    struct browser a1, a2, other;
    struct session s = {0};
    env_init(&e, NULL);
    open_session_viewer(&e, &a1, &s, true, NULL, NULL, 0);
    open_viewer(&e, &other, false, NULL, NULL, 0);
    open_session_viewer(&e, &a2, &s, false, NULL, NULL, 0);
    pump(&e, 20);
    assert_int_equal(wsproxy_count_ctx(e.proxy, &s), 2);

    assert_int_equal(wsproxy_close_ctx(e.proxy, &s, "session stopped"), 2);
    assert_int_equal(s.closes, 2); /* before close_ctx returned */
    assert_int_equal(a1.closes, 1);
    assert_int_equal(a2.closes, 1);
    char reason[128];
    assert_int_equal(read_close(&a1, reason, sizeof(reason)), 1001);
    assert_string_equal(reason, "session stopped");
    assert_int_equal(read_close(&a2, NULL, 0), 1001);
    assert_int_equal(wsproxy_count_ctx(e.proxy, &s), 0);
    vnc_collect(&a1, 1, 200);
    assert_true(a1.vnc_eof);
    /* the other session's viewer goes on, until the service stops */
    assert_int_equal(other.closes, 0);
    send_frame(&other, 1, 2, HANDSHAKE, 14);
    assert_int_equal(vnc_collect(&other, 14, 2000), 14);
    int other_fd = dup(other.fd);
    env_done(&e);
    other.fd = other_fd;
    other.e = NULL;
    uint8_t buf[64];
    ssize_t n = read(other_fd, buf, sizeof(buf)); /* the proxy's last words: close 1001 */
    assert_true(n >= 4);
    assert_int_equal(buf[0], 0x88);
    assert_int_equal(buf[2] << 8 | buf[3], 1001);
    close(other_fd);
}

/* --- qdesk proxy ------------------------------------------------------------------- */

static int tcp_connect(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < 200; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            struct timeval tv = {.tv_sec = 3};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            return fd;
        }
        close(fd);
        usleep(10000);
    }
    fail_msg("qdesk proxy does not listen on port %d", port);
    return -1;
}

/* Sends a request and returns the answer's header (to free). */
static char *http(int fd, const char *req, size_t len)
{
    assert_int_equal(write(fd, req, len), (ssize_t)len);
    char *buf = calloc(1, 4096);
    size_t n = 0;
    while (!strstr(buf, "\r\n\r\n")) {
        ssize_t r = read(fd, buf + n, 1); /* no further: the frames follow */
        if (r <= 0)
            break;
        n += (size_t)r;
        assert_true(n < 4095);
    }
    return buf;
}

static void qdesk_proxy_serves_browsers_on_a_tcp_port(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, NULL);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
    int port = ntohs(sa.sin_port);
    close(s);
    char listen_on[64];
    snprintf(listen_on, sizeof(listen_on), "127.0.0.1:%d", port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    proxy_child = pid;
    if (pid == 0) {
        char *argv[] = {"proxy", listen_on, e.sock, NULL};
        _exit(wsproxy_main(3, argv));
    }

    /* a browser: the request with its first frame in the same packet */
    struct bytes req = {0};
    const char *head =
        "GET /websockify HTTP/1.1\r\nHost: localhost\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n";
    bytes_put(&req, head, strlen(head));
    build_frame(&req, 1, 0, 2, true, HANDSHAKE, 14);
    int fd = tcp_connect(port);
    char *answer = http(fd, (const char *)req.b, req.n);
    assert_non_null(strstr(answer, "HTTP/1.1 101 Switching Protocols\r\n"));
    assert_non_null(
        strstr(answer, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert_non_null(strstr(answer, "Sec-WebSocket-Protocol: binary\r\n"));
    free(answer);
    free(req.b);
    struct pollfd pf = {e.lfd, POLLIN, 0};
    assert_int_equal(poll(&pf, 1, 3000), 1);
    int vnc = accept4(e.lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(vnc >= 0);
    uint8_t got[14];
    for (size_t n = 0; n < sizeof(got);) {
        ssize_t r = read(vnc, got + n, sizeof(got) - n);
        assert_true(r > 0);
        n += (size_t)r;
    }
    assert_memory_equal(got, "RFB 003.008\n\x01\x01", 14);
    assert_int_equal(write(vnc, "hello", 5), 5);
    uint8_t frame[7];
    for (size_t n = 0; n < sizeof(frame);) {
        ssize_t r = read(fd, frame + n, sizeof(frame) - n);
        assert_true(r > 0);
        n += (size_t)r;
    }
    assert_memory_equal(frame, "\x82\x05hello", 7);

    /* what is not a WebSocket upgrade is refused */
    int bad = tcp_connect(port);
    const char *plain = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    answer = http(bad, plain, strlen(plain));
    assert_non_null(strstr(answer, "HTTP/1.1 400 Bad Request\r\n"));
    free(answer);
    close(bad);
    bad = tcp_connect(port);
    const char *old = "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 8\r\n\r\n";
    answer = http(bad, old, strlen(old));
    assert_non_null(strstr(answer, "HTTP/1.1 426 Upgrade Required\r\n"));
    assert_non_null(strstr(answer, "Sec-WebSocket-Version: 13\r\n"));
    free(answer);
    close(bad);

    /* SIGTERM ends it cleanly, telling the browser */
    int status;
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    proxy_child = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    uint8_t closing[4];
    assert_int_equal(read(fd, closing, 4), 4);
    assert_int_equal(closing[0], 0x88);
    assert_int_equal(closing[2] << 8 | closing[3], 1001);
    close(fd);
    close(vnc);
    env_done(&e);
}

/* After a failed test: end its proxy process and remove its socket directory
 * (env_done() did not run). */
static int leftovers(void **state)
{
    (void)state;
    if (proxy_child > 0) {
        kill(proxy_child, SIGKILL);
        waitpid(proxy_child, NULL, 0);
        proxy_child = 0;
    }
    if (current_env) {
        unlink(current_env->sock);
        rmdir(current_env->dir);
        current_env = NULL;
    }
    return 0;
}

#define TEST(f) cmocka_unit_test_teardown(f, leftovers)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(the_handshake_answers_as_rfc6455_says),
        TEST(upgrade_requests_are_parsed_strictly),
        TEST(a_view_only_key_never_reaches_the_vnc_socket),
        TEST(a_control_viewers_input_arrives_byte_exact),
        TEST(bytes_read_with_the_request_are_not_lost),
        TEST(an_rfb_error_closes_that_viewer_and_not_the_other),
        TEST(malformed_frames_are_refused_with_1002),
        TEST(a_frame_larger_than_the_buffer_is_streamed),
        TEST(a_browser_that_stops_reading_stops_the_vnc_reads),
        TEST(a_vnc_server_that_stops_reading_stops_the_browser_reads),
        TEST(when_the_vnc_server_closes_the_browser_gets_a_close_frame),
        TEST(an_unreachable_vm_display_is_close_1011),
        TEST(the_browsers_close_is_echoed),
        TEST(pings_are_answered_and_a_silent_browser_is_dropped),
        TEST(closing_a_session_ends_its_viewers_only),
        TEST(qdesk_proxy_serves_browsers_on_a_tcp_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

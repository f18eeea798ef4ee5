/* Fuzzes the display proxy from the browser's side: the input is what a browser
 * sends on one proxied connection (WebSocket frames carrying RFB), delivered in
 * fuzzer-chosen pieces while a stub VNC server on a unix socket in /tmp talks
 * back. The loop runs until the connection has ended, which must happen exactly
 * once, without leaks or sanitizer reports. The same bytes also go through the
 * standalone proxy's HTTP Upgrade parser and the handshake check.
 *
 * Input: byte 0 holds flags (bit 0 view-only, bit 1 the first piece comes as
 * bytes the HTTP layer read past the request, bit 2 the VNC server closes
 * first, bit 3 the browser closes its socket at the end, else the service ends
 * the session), byte 1 seeds the piece sizes, the rest is the stream. */
#include "web/wsproxy.h"

#include "util/log.h"
#include "util/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct loop *loop;
static struct wsproxy *proxy;
static int lfd = -1;
static char dir[] = "/tmp/qdesk-fuzz-ws-XXXXXX", sock_path[108];
static int closes;

static void check(int cond)
{
    if (!cond)
        abort();
}

static void on_close(void *ctx, int fd, const char *reason)
{
    (void)ctx;
    check(reason && reason[0]);
    closes++;
    close(fd);
}

static void cleanup(void)
{
    unlink(sock_path);
    rmdir(dir);
}

static void setup(void)
{
    log_set_level(LOG_ERROR);
    check(mkdtemp(dir) != NULL);
    snprintf(sock_path, sizeof(sock_path), "%s/vnc.sock", dir);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
    check(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    check(listen(lfd, 64) == 0);
    atexit(cleanup);
    loop = loop_new();
    /* small buffers and short timeouts so that every path is reached quickly */
    struct wsproxy_opts o = {.buffer_size = 16 << 10,
                             .ping_interval_ms = 5,
                             .idle_timeout_ms = 1000,
                             .close_timeout_ms = 20};
    proxy = wsproxy_new(loop, &o);
    check(loop && proxy);
}

static void drain(int fd)
{
    uint8_t buf[65536];
    while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!loop)
        setup();
    if (size < 2)
        return 0;

    /* the HTTP side sees the same bytes */
    struct wsproxy_request req;
    struct wsproxy_accept acc;
    int status;
    char err[256];
    if (wsproxy_parse_request((const char *)data, size, &req, &status, err, sizeof(err)) >
        0)
        wsproxy_handshake(req.key, req.version, req.protocols, &acc, err, sizeof(err));

    uint8_t flags = data[0];
    uint32_t seed = data[1];
    data += 2;
    size -= 2;
    int sv[2];
    check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == 0);
    size_t extra = flags & 2 ? size / 3 : 0;
    int before = closes;
    static int session;
    check(wsproxy_attach(proxy, sv[1], data, extra, sock_path, flags & 1, on_close,
                         &session, err, sizeof(err)) == 0);
    int vnc = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    check(vnc >= 0);
    static const char hello[] = "RFB 003.008\n\x00\x00\x00\x01\x01\x00\x00\x00\x00";
    check(write(vnc, hello, sizeof(hello) - 1) > 0);

    for (size_t i = extra; i < size && closes == before;) {
        seed = seed * 1103515245u + 12345u;
        size_t n = 1 + (seed >> 16) % 300;
        if (n > size - i)
            n = size - i;
        ssize_t r = write(sv[0], data + i, n);
        if (r > 0)
            i += (size_t)r;
        else if (errno != EAGAIN)
            break;
        loop_run_once(loop, 0);
        drain(vnc);
        drain(sv[0]);
        if ((flags & 4) && vnc >= 0 && i > size / 2) {
            close(vnc);
            vnc = -1;
        }
    }
    /* let the proxy act on everything, then end the connection one way or the
     * other: the browser leaves, or the service ends the session */
    for (int round = 0; round < 8 && closes == before; round++) {
        loop_run_once(loop, 0);
        drain(vnc);
        drain(sv[0]);
    }
    if (flags & 8) {
        close(sv[0]);
        sv[0] = -1;
        for (int round = 0; round < 100 && closes == before; round++)
            loop_run_once(loop, 1);
    }
    if (closes == before)
        wsproxy_close_ctx(proxy, &session, "fuzz round over");
    check(closes == before + 1);
    check(wsproxy_count_ctx(proxy, &session) == 0);
    if (vnc >= 0)
        close(vnc);
    if (sv[0] >= 0)
        close(sv[0]);
    return 0;
}

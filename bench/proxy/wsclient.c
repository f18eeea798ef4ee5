/* wsclient: a load client for display proxies.
 *
 *   wsclient throughput SECONDS TARGET [--hold S]
 *   wsclient latency ROUNDS TARGET [--hold S]
 *
 * TARGET is ws://HOST:PORT/PATH (through a WebSocket proxy, frames masked as a
 * browser masks them, subprotocol "binary") or unix:PATH (RFB straight to the VNC
 * socket: the baseline). After the RFB 3.8 handshake (security None, shared):
 *   throughput: keeps two whole-screen FramebufferUpdateRequests in flight for
 *               SECONDS and reports the pixel bytes received per second;
 *   latency:    ROUNDS times, asks for a 64x64 update and waits for all of it,
 *               reporting round-trip percentiles (after 200 warm-up rounds).
 * Results are one line of key=value pairs on stdout. --hold keeps the connection
 * open S seconds after the result (so that a harness can sample the proxy's CPU
 * while the connection still exists). */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RBUF (4u << 20)

struct conn {
    int fd;
    int ws;
    uint8_t *buf;
    size_t off, len;     /* raw bytes buffered: buf[off .. off+len) */
    uint64_t frame_left; /* ws: payload bytes left in the current frame */
};

static void die(const char *msg)
{
    fprintf(stderr, "wsclient: %s%s%s\n", msg, errno ? ": " : "",
            errno ? strerror(errno) : "");
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads more raw bytes. */
static void fill(struct conn *c)
{
    if (c->off + c->len == RBUF) {
        memmove(c->buf, c->buf + c->off, c->len);
        c->off = 0;
    }
    ssize_t r;
    do
        r = read(c->fd, c->buf + c->off + c->len, RBUF - c->off - c->len);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        if (r == 0)
            errno = 0;
        die("connection closed");
    }
    c->len += (size_t)r;
}

static void ensure(struct conn *c, size_t n)
{
    while (c->len < n)
        fill(c);
}

/* Returns the next span of RFB payload (at most max bytes) and consumes it. */
static size_t payload(struct conn *c, const uint8_t **p, size_t max)
{
    for (;;) {
        if (c->ws && c->frame_left == 0) {
            ensure(c, 2);
            const uint8_t *h = c->buf + c->off;
            size_t hl = 2;
            uint64_t n = h[1] & 0x7f;
            if (n == 126)
                hl = 4;
            else if (n == 127)
                hl = 10;
            ensure(c, hl);
            h = c->buf + c->off;
            if (n == 126)
                n = (uint64_t)h[2] << 8 | h[3];
            else if (n == 127) {
                n = 0;
                for (int i = 0; i < 8; i++)
                    n = n << 8 | h[2 + i];
            }
            int opcode = h[0] & 0x0f;
            c->off += hl;
            c->len -= hl;
            if (opcode == 8) {
                errno = 0;
                die("the proxy sent a close frame");
            }
            if (opcode != 0 && opcode != 1 && opcode != 2) { /* ping/pong: skip */
                ensure(c, (size_t)n);
                c->off += n;
                c->len -= n;
                continue;
            }
            c->frame_left = n;
            continue;
        }
        if (c->len == 0)
            fill(c);
        size_t n = c->len < max ? c->len : max;
        if (c->ws && n > c->frame_left)
            n = (size_t)c->frame_left;
        *p = c->buf + c->off;
        c->off += n;
        c->len -= n;
        if (c->ws)
            c->frame_left -= n;
        if (c->len == 0)
            c->off = 0;
        return n;
    }
}

static void read_exact(struct conn *c, void *out, size_t n)
{
    uint8_t *o = out;
    while (n) {
        const uint8_t *p;
        size_t got = payload(c, &p, n);
        if (o) {
            memcpy(o, p, got);
            o += got;
        }
        n -= got;
    }
}

static void write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("write");
        p += r;
        n -= (size_t)r;
    }
}

/* Sends RFB bytes, in one masked binary frame when through a WebSocket. */
static void send_rfb(struct conn *c, const uint8_t *msg, size_t n)
{
    if (!c->ws) {
        write_all(c->fd, msg, n);
        return;
    }
    uint8_t f[14 + 256];
    const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    if (n > 125)
        die("message too long");
    f[0] = 0x82;
    f[1] = (uint8_t)(0x80 | n);
    memcpy(f + 2, key, 4);
    for (size_t i = 0; i < n; i++)
        f[6 + i] = msg[i] ^ key[i % 4];
    write_all(c->fd, f, 6 + n);
}

static void connect_target(struct conn *c, const char *target)
{
    c->buf = malloc(RBUF);
    if (!c->buf)
        die("malloc");
    if (!strncmp(target, "unix:", 5)) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", target + 5);
        c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            die(target);
        return;
    }
    char host[256], port[16], path[512] = "/";
    if (sscanf(target, "ws://%255[^:]:%15[0-9]%511s", host, port, path) < 2)
        die("TARGET must be ws://HOST:PORT/PATH or unix:PATH");
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, port, &hints, &ai))
        die("getaddrinfo");
    c->fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (c->fd < 0 || connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0)
        die(target);
    freeaddrinfo(ai);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char req[1024];
    int n =
        snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n"
                 "Origin: http://%s:%s\r\n\r\n",
                 path, host, port, host, port);
    write_all(c->fd, req, (size_t)n);
    for (;;) {
        fill(c);
        uint8_t *end = memmem(c->buf + c->off, c->len, "\r\n\r\n", 4);
        if (!end)
            continue;
        if (c->len < 12 || memcmp(c->buf + c->off + 9, "101", 3)) {
            errno = 0;
            die("the proxy refused the upgrade");
        }
        size_t hl = (size_t)(end + 4 - (c->buf + c->off));
        c->off += hl;
        c->len -= hl;
        break;
    }
    c->ws = 1;
}

static void rfb_handshake(struct conn *c, uint16_t *w, uint16_t *h)
{
    uint8_t b[64];
    read_exact(c, b, 12);
    if (memcmp(b, "RFB 003.", 8)) {
        errno = 0;
        die("not an RFB server");
    }
    send_rfb(c, (const uint8_t *)"RFB 003.008\n", 12);
    read_exact(c, b, 1);
    read_exact(c, b + 1, b[0]);
    send_rfb(c, (const uint8_t *)"\x01", 1);
    read_exact(c, b, 4);                     /* SecurityResult */
    send_rfb(c, (const uint8_t *)"\x01", 1); /* ClientInit, shared */
    read_exact(c, b, 24);
    *w = (uint16_t)(b[0] << 8 | b[1]);
    *h = (uint16_t)(b[2] << 8 | b[3]);
    uint32_t nl = (uint32_t)b[20] << 24 | (uint32_t)b[21] << 16 | b[22] << 8 | b[23];
    read_exact(c, NULL, nl);
    /* raw only */
    send_rfb(c, (const uint8_t *)"\x02\x00\x00\x01\x00\x00\x00\x00", 8);
}

static void request(struct conn *c, uint16_t w, uint16_t h)
{
    uint8_t m[10] = {
        3, 0, 0, 0, 0, 0, (uint8_t)(w >> 8), (uint8_t)w, (uint8_t)(h >> 8), (uint8_t)h};
    send_rfb(c, m, sizeof(m));
}

/* Reads one FramebufferUpdate; returns its pixel bytes. */
static uint64_t read_update(struct conn *c)
{
    uint8_t b[16];
    read_exact(c, b, 4);
    if (b[0] != 0) {
        errno = 0;
        die("unexpected server message");
    }
    uint64_t total = 0;
    for (unsigned n = (unsigned)(b[2] << 8 | b[3]); n; n--) {
        read_exact(c, b, 12);
        uint64_t bytes = (uint64_t)(b[4] << 8 | b[5]) * (b[6] << 8 | b[7]) * 4;
        total += bytes;
        while (bytes) {
            const uint8_t *p;
            bytes -= payload(c, &p, (size_t)bytes);
        }
    }
    return total;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: wsclient throughput SECONDS TARGET [--hold S]\n"
                        "       wsclient latency ROUNDS TARGET [--hold S]\n");
        return 2;
    }
    double arg = atof(argv[2]);
    int hold = argc == 6 ? atoi(argv[5]) : 0;
    struct conn c = {0};
    uint16_t w, h;
    connect_target(&c, argv[3]);
    rfb_handshake(&c, &w, &h);

    if (!strcmp(argv[1], "throughput")) {
        request(&c, w, h);
        request(&c, w, h);
        read_update(&c); /* warm-up */
        request(&c, w, h);
        uint64_t bytes = 0, updates = 0;
        double start = now(), t;
        while ((t = now()) - start < arg) {
            bytes += read_update(&c);
            updates++;
            request(&c, w, h);
        }
        printf("throughput_MBps=%.1f bytes=%llu updates=%llu seconds=%.3f\n",
               (double)bytes / (t - start) / 1e6, (unsigned long long)bytes,
               (unsigned long long)updates, t - start);
    } else if (!strcmp(argv[1], "latency")) {
        int rounds = (int)arg, warm = 200;
        double *us = malloc(sizeof(double) * (size_t)rounds);
        for (int i = -warm; i < rounds; i++) {
            double t0 = now();
            request(&c, 64, 64);
            if (read_update(&c) != 64 * 64 * 4) {
                errno = 0;
                die("short update");
            }
            if (i >= 0)
                us[i] = (now() - t0) * 1e6;
        }
        qsort(us, (size_t)rounds, sizeof(double), cmp_double);
        double sum = 0;
        for (int i = 0; i < rounds; i++)
            sum += us[i];
        printf("p50_us=%.1f p95_us=%.1f p99_us=%.1f mean_us=%.1f rounds=%d\n",
               us[rounds / 2], us[rounds * 95 / 100], us[rounds * 99 / 100], sum / rounds,
               rounds);
        free(us);
    } else {
        fprintf(stderr, "wsclient: unknown mode %s\n", argv[1]);
        return 2;
    }
    fflush(stdout);
    if (hold)
        sleep((unsigned)hold);
    close(c.fd);
    free(c.buf);
    return 0;
}

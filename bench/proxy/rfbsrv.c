/* rfbsrv: a synthetic VNC server for benchmarking display proxies.
 *
 *   rfbsrv SOCKET_PATH [WIDTH HEIGHT]     (default 1920 1080)
 *
 * Listens on a unix socket, speaks RFB 3.8 with security None, and answers every
 * FramebufferUpdateRequest at once with one raw rectangle of exactly the area
 * asked for (clipped to the screen), 32 bits per pixel. A client that asks for the
 * whole screen gets the streaming load (1920x1080x4 bytes per update); one that
 * asks for 64x64 gets the small-update load. Each connection is served by its own
 * child process, so the server is never the proxy's bottleneck on a second core. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static uint16_t width = 1920, height = 1080;
static uint8_t *pixels; /* the whole screen, 4 bytes a pixel */

static void die(const char *what)
{
    fprintf(stderr, "rfbsrv: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int read_all(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_iov(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t r = writev(fd, iov, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (n > 0 && (size_t)r >= iov->iov_len) {
            r -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + r;
            iov->iov_len -= (size_t)r;
        }
    }
    return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    return write_iov(fd, &iov, 1);
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* One raw rectangle; full-width rectangles come straight from the screen. */
static int send_update(int fd, uint16_t x, uint16_t y, uint16_t w, uint16_t h)
{
    if (x >= width || y >= height)
        w = h = 0;
    if (w > width - x)
        w = (uint16_t)(width - x);
    if (h > height - y)
        h = (uint16_t)(height - y);
    uint8_t hdr[16] = {0, 0, 0, 1};
    put16(hdr + 4, x);
    put16(hdr + 6, y);
    put16(hdr + 8, w);
    put16(hdr + 10, h);
    /* encoding 0: raw */
    struct iovec iov[2] = {{hdr, 16},
                           {pixels + ((size_t)y * width + x) * 4, (size_t)w * h * 4}};
    return write_iov(fd, iov, 2);
}

static void serve(int fd)
{
    uint8_t buf[64];
    if (write_all(fd, "RFB 003.008\n", 12) < 0 || read_all(fd, buf, 12) < 0)
        return;
    if (memcmp(buf, "RFB 003.00", 10))
        return;
    if (write_all(fd, "\x01\x01", 2) < 0 || read_all(fd, buf, 1) < 0 || buf[0] != 1)
        return;
    if (write_all(fd, "\0\0\0\0", 4) < 0 || read_all(fd, buf, 1) < 0) /* result, init */
        return;
    static const char name[] = "rfbsrv";
    uint8_t init[24 + sizeof(name) - 1] = {0};
    put16(init, width);
    put16(init + 2, height);
    /* 32 bpp, depth 24, little endian, true colour, 255/255/255, shifts 16/8/0 */
    const uint8_t pf[16] = {32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0};
    memcpy(init + 4, pf, 16);
    init[23] = sizeof(name) - 1;
    memcpy(init + 24, name, sizeof(name) - 1);
    if (write_all(fd, init, sizeof(init)) < 0)
        return;
    for (;;) {
        if (read_all(fd, buf, 1) < 0)
            return;
        switch (buf[0]) {
        case 0: /* SetPixelFormat: only 32 bpp is served, whatever is asked */
            if (read_all(fd, buf, 19) < 0)
                return;
            break;
        case 2: { /* SetEncodings */
            if (read_all(fd, buf, 3) < 0)
                return;
            for (unsigned n = be16(buf + 1); n; n--)
                if (read_all(fd, buf, 4) < 0)
                    return;
            break;
        }
        case 3: /* FramebufferUpdateRequest */
            if (read_all(fd, buf, 9) < 0 || send_update(fd, be16(buf + 1), be16(buf + 3),
                                                        be16(buf + 5), be16(buf + 7)) < 0)
                return;
            break;
        case 4: /* KeyEvent */
            if (read_all(fd, buf, 7) < 0)
                return;
            break;
        case 5: /* PointerEvent */
            if (read_all(fd, buf, 5) < 0)
                return;
            break;
        case 6: { /* ClientCutText */
            if (read_all(fd, buf, 7) < 0)
                return;
            uint32_t n =
                (uint32_t)buf[3] << 24 | (uint32_t)buf[4] << 16 | buf[5] << 8 | buf[6];
            for (; n; n--)
                if (read_all(fd, buf, 1) < 0)
                    return;
            break;
        }
        default:
            fprintf(stderr, "rfbsrv: unknown client message %u\n", buf[0]);
            return;
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 4) {
        fprintf(stderr, "usage: rfbsrv SOCKET_PATH [WIDTH HEIGHT]\n");
        return 2;
    }
    if (argc == 4) {
        width = (uint16_t)atoi(argv[2]);
        height = (uint16_t)atoi(argv[3]);
    }
    size_t size = (size_t)width * height * 4;
    pixels = malloc(size);
    if (!pixels)
        die("malloc");
    for (size_t i = 0; i < size; i++)
        pixels[i] = (uint8_t)(i * 131 + (i >> 12));
    signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(argv[1]) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "rfbsrv: socket path too long\n");
        return 2;
    }
    strcpy(sa.sun_path, argv[1]);
    unlink(argv[1]);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(lfd, 16) < 0)
        die(argv[1]);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            die("accept");
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(lfd);
            serve(fd);
            _exit(0);
        }
        close(fd);
    }
}

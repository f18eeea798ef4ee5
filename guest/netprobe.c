/* netprobe: the demo guest's network probe (guest/README.md, "Network probe").
 *
 *   netprobe tcp:HOST:PORT[,tcp:HOST:PORT...] [TIMEOUT_MS]
 *
 * Tries a TCP connection to every target at once and prints one line per target on
 * standard output (the serial console), in the order given, each written at once:
 *
 *   QDESK-PROBE tcp:HOST:PORT open|refused|timeout|unreachable|error
 *
 * HOST is an IPv4 address or an IPv6 address in brackets ([fd00::1]); names are not
 * resolved. A target that does not parse is reported as "error". Static, no
 * dependencies beyond libc: it runs from the initramfs. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_TARGETS 32

struct target {
    char text[96];
    int fd;
    const char *result;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Parses "tcp:HOST:PORT" into sa. Returns its length, or 0. */
static socklen_t parse(const char *text, struct sockaddr_storage *sa)
{
    char host[64];
    unsigned port;
    int n = 0;
    if (strncmp(text, "tcp:", 4) != 0)
        return 0;
    text += 4;
    if (text[0] == '[' ? sscanf(text, "[%63[0-9a-fA-F:.]]:%u%n", host, &port, &n) != 2
                       : sscanf(text, "%63[0-9.]:%u%n", host, &port, &n) != 2)
        return 0;
    if (text[n] || port == 0 || port > 65535)
        return 0;
    memset(sa, 0, sizeof(*sa));
    struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((unsigned short)port);
        return sizeof(*v4);
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((unsigned short)port);
        return sizeof(*v6);
    }
    return 0;
}

static const char *outcome(int err)
{
    switch (err) {
    case 0:
        return "open";
    case ECONNREFUSED:
    case ECONNRESET:
        return "refused";
    case ETIMEDOUT:
        return "timeout";
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EACCES:
    case EPERM:
        return "unreachable";
    default:
        return "error";
    }
}

/* Starts a non-blocking connect for t. */
static void start(struct target *t)
{
    struct sockaddr_storage sa;
    socklen_t len = parse(t->text, &sa);
    t->fd = -1;
    if (!len) {
        t->result = "error";
        return;
    }
    t->fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (t->fd < 0) {
        t->result = outcome(errno);
        return;
    }
    if (connect(t->fd, (struct sockaddr *)&sa, len) == 0)
        t->result = "open";
    else if (errno != EINPROGRESS)
        t->result = outcome(errno);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: netprobe tcp:HOST:PORT[,...] [TIMEOUT_MS]\n");
        return 2;
    }
    long timeout = argc == 3 ? strtol(argv[2], NULL, 10) : 3000;
    struct target t[MAX_TARGETS];
    size_t n = 0;
    char list[2048];
    snprintf(list, sizeof(list), "%s", argv[1]);
    for (char *save, *tok = strtok_r(list, ",", &save); tok && n < MAX_TARGETS;
         tok = strtok_r(NULL, ",", &save)) {
        memset(&t[n], 0, sizeof(t[n]));
        snprintf(t[n].text, sizeof(t[n].text), "%s", tok);
        start(&t[n++]);
    }

    long long deadline = now_ms() + timeout;
    for (;;) {
        struct pollfd p[MAX_TARGETS];
        size_t waiting = 0;
        for (size_t i = 0; i < n; i++)
            p[i] = (struct pollfd){t[i].result ? -1 : t[i].fd, POLLOUT, 0};
        for (size_t i = 0; i < n; i++)
            waiting += !t[i].result;
        long long left = deadline - now_ms();
        if (!waiting || left <= 0)
            break;
        if (poll(p, n, (int)left) < 0 && errno != EINTR)
            break;
        for (size_t i = 0; i < n; i++) {
            if (t[i].result || !p[i].revents)
                continue;
            int soerr = 0;
            socklen_t l = sizeof(soerr);
            getsockopt(t[i].fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
            t[i].result = outcome(soerr);
        }
    }
    for (size_t i = 0; i < n; i++) {
        char line[160];
        int len = snprintf(line, sizeof(line), "QDESK-PROBE %s %s\n", t[i].text,
                           t[i].result ? t[i].result : "timeout");
        if (write(STDOUT_FILENO, line, (size_t)len) < 0)
            return 1;
        if (t[i].fd >= 0)
            close(t[i].fd);
    }
    return 0;
}

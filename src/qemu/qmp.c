#include "qemu/qmp.h"

#include "util/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define QMP_LINE_MAX                                                                     \
    (16u << 20)             /* query replies can be large; anything above is garbage */
#define QMP_EVENTS_MAX 1024 /* queued events beyond this are dropped, oldest first */

struct qmp {
    int fd;
    char *buf; /* received bytes not yet parsed */
    size_t len, cap;
    json_t *events;  /* array, oldest first */
    json_t *replies; /* replies read while waiting for another id */
    json_t *waiting; /* object: the ids whose replies a caller will take */
    bool greeted;    /* the greeting (the one reply without an id) was taken */
    unsigned long next_id;
};

json_t *qmp_parse_line(const char *line, size_t len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (msg && !json_is_object(msg)) {
        json_decref(msg);
        return NULL;
    }
    return msg;
}

/* Files a parsed message as an event or a reply. Replies nobody waits for (to a
 * command sent without an id, or whose caller gave up) are dropped. */
static void file_message(struct qmp *q, json_t *msg)
{
    const char *id = json_string_value(json_object_get(msg, "id"));
    if (json_object_get(msg, "event")) {
        if (json_array_size(q->events) >= QMP_EVENTS_MAX)
            json_array_remove(q->events, 0);
        json_array_append_new(q->events, msg);
    } else if (id ? json_object_get(q->waiting, id) != NULL : !q->greeted) {
        json_array_append_new(q->replies, msg);
    } else {
        json_decref(msg);
    }
}

/* Parses every complete line in the buffer. Returns -1 on a line that is not JSON. */
static int parse_lines(struct qmp *q)
{
    size_t start = 0;
    int rc = 0;
    for (;;) {
        char *nl = memchr(q->buf + start, '\n', q->len - start);
        if (!nl)
            break;
        size_t n = (size_t)(nl - (q->buf + start));
        if (n > 0 && !(n == 1 && q->buf[start] == '\r')) {
            json_t *msg = qmp_parse_line(q->buf + start, n);
            if (!msg) {
                rc = -1;
                break;
            }
            file_message(q, msg);
        }
        start += n + 1;
    }
    memmove(q->buf, q->buf + start, q->len - start);
    q->len -= start;
    return rc;
}

int qmp_read(struct qmp *q)
{
    for (;;) {
        if (q->cap - q->len < 4096) {
            if (q->cap >= QMP_LINE_MAX)
                return -1;
            size_t cap = q->cap ? q->cap * 2 : 8192;
            char *p = realloc(q->buf, cap);
            if (!p)
                return -1;
            q->buf = p;
            q->cap = cap;
        }
        ssize_t r = recv(q->fd, q->buf + q->len, q->cap - q->len, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (r <= 0)
            return -1;
        q->len += (size_t)r;
        if (parse_lines(q) < 0)
            return -1;
    }
}

/* Waits until fd is readable or the deadline passes. Returns 1, 0 on timeout. */
static int wait_readable(int fd, uint64_t deadline)
{
    for (;;) {
        uint64_t now = proc_now_ms();
        if (now >= deadline)
            return 0;
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return 0;
    }
}

/* Removes and returns the reply that matches id ("" matches a reply without one,
 * such as the greeting), or NULL. */
json_t *qmp_take_reply(struct qmp *q, const char *id)
{
    size_t i;
    json_t *msg;
    json_array_foreach(q->replies, i, msg)
    {
        const char *mid = json_string_value(json_object_get(msg, "id"));
        if (strcmp(mid ? mid : "", id) == 0) {
            json_incref(msg);
            json_array_remove(q->replies, i);
            json_object_del(q->waiting, id);
            return msg;
        }
    }
    return NULL;
}

void qmp_forget(struct qmp *q, const char *id)
{
    json_decref(qmp_take_reply(q, id));
    json_object_del(q->waiting, id);
}

static int send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

int qmp_send(struct qmp *q, const char *command, json_t *args, char *id, size_t idsz)
{
    char own[48];
    snprintf(own, sizeof(own), "qdesk-%lu", ++q->next_id);
    if (id) {
        snprintf(id, idsz, "%s", own);
        json_object_set_new(q->waiting, own, json_true());
    }
    json_t *msg = json_pack("{s:s, s:s}", "execute", command, "id", own);
    if (args)
        json_object_set(msg, "arguments", args);
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!text)
        return -1;
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps leaves room only for the NUL: send it as newline */
    int rc = send_all(q->fd, text, n + 1);
    free(text);
    return rc;
}

int qmp_execute(struct qmp *q, const char *command, json_t *args, int timeout_ms,
                json_t **ret, char *err, size_t errsz)
{
    char id[48];
    if (qmp_send(q, command, args, id, sizeof(id)) < 0) {
        snprintf(err, errsz, "%s: QMP connection lost: %s", command, strerror(errno));
        return -1;
    }

    uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
    json_t *reply;
    for (;;) {
        if ((reply = qmp_take_reply(q, id)))
            break;
        if (!wait_readable(q->fd, deadline)) {
            snprintf(err, errsz, "%s: no reply from QEMU within %d ms", command,
                     timeout_ms);
            qmp_forget(q, id);
            return -1;
        }
        if (qmp_read(q) < 0) {
            if ((reply = qmp_take_reply(q, id)))
                break;
            snprintf(err, errsz, "%s: QEMU closed the QMP connection", command);
            return -1;
        }
    }
    json_t *error = json_object_get(reply, "error");
    if (error) {
        const char *class = json_string_value(json_object_get(error, "class")),
                   *desc = json_string_value(json_object_get(error, "desc"));
        snprintf(err, errsz, "%s: %s: %s", command, class ? class : "Error",
                 desc ? desc : "no description");
        json_decref(reply);
        return -1;
    }
    if (ret) {
        *ret = json_object_get(reply, "return");
        json_incref(*ret);
    }
    json_decref(reply);
    return 0;
}

struct qmp *qmp_new(int fd)
{
    struct qmp *q = calloc(1, sizeof(*q));
    if (!q) {
        close(fd);
        return NULL;
    }
    q->fd = fd;
    q->events = json_array();
    q->replies = json_array();
    q->waiting = json_object();
    return q;
}

int qmp_greeted(struct qmp *q)
{
    json_t *greeting = qmp_take_reply(q, "");
    if (!greeting)
        return 0;
    q->greeted = true;
    bool ok = json_object_get(greeting, "QMP") != NULL;
    json_decref(greeting);
    return ok ? 1 : -1;
}

struct qmp *qmp_attach(int fd, int timeout_ms, char *err, size_t errsz)
{
    struct qmp *q = qmp_new(fd);
    if (!q) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
    int greeted;
    while ((greeted = qmp_greeted(q)) == 0) {
        if (!wait_readable(fd, deadline) || qmp_read(q) < 0) {
            if ((greeted = qmp_greeted(q)) != 0)
                break;
            snprintf(err, errsz, "QMP: no greeting from QEMU within %d ms", timeout_ms);
            qmp_close(q);
            return NULL;
        }
    }
    if (greeted < 0) {
        snprintf(err, errsz, "QMP: the peer did not greet as QEMU does");
        qmp_close(q);
        return NULL;
    }
    if (qmp_execute(q, "qmp_capabilities", NULL, timeout_ms, NULL, err, errsz) < 0) {
        qmp_close(q);
        return NULL;
    }
    return q;
}

struct qmp *qmp_connect(const char *path, int timeout_ms, char *err, size_t errsz)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errsz, "QMP socket path too long: %s", path);
        return NULL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        snprintf(err, errsz, "QMP: cannot connect to %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    return qmp_attach(fd, timeout_ms, err, errsz);
}

int qmp_fd(const struct qmp *q)
{
    return q->fd;
}

json_t *qmp_next_event(struct qmp *q)
{
    if (json_array_size(q->events) == 0)
        return NULL;
    json_t *ev = json_array_get(q->events, 0);
    json_incref(ev);
    json_array_remove(q->events, 0);
    return ev;
}

void qmp_close(struct qmp *q)
{
    if (!q)
        return;
    if (q->fd >= 0)
        close(q->fd);
    free(q->buf);
    json_decref(q->events);
    json_decref(q->replies);
    json_decref(q->waiting);
    free(q);
}

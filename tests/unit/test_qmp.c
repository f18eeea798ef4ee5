/* QMP framing and matching, against a scripted peer on a socketpair. */
#include "qemu/qmp.h"

#include <jansson.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

struct peer {
    int fd;
    const char *greeting;
    pthread_t thread;
    char late_id[64]; /* the id of the last "late" command */
};

/* Writes len bytes of text to the client; a client that has closed the connection
 * (its test is over: the STOP event after the last reply) is no error. */
static void say_n(int fd, const char *text, size_t len)
{
    ssize_t n = send(fd, text, len, MSG_NOSIGNAL);
    assert_true(n == (ssize_t)len || (n < 0 && errno == EPIPE));
}

static void say(int fd, const char *text)
{
    say_n(fd, text, strlen(text));
}

/* Answers commands like QEMU does; "slow" gets no answer, "late" an answer after
 * 200 ms, "bye" closes. */
static void *peer_main(void *arg)
{
    struct peer *p = arg;
    char buf[4096];
    size_t len = 0;
    say(p->fd, p->greeting);
    for (;;) {
        ssize_t r = read(p->fd, buf + len, sizeof(buf) - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
        buf[len] = 0;
        char *nl;
        while ((nl = strchr(buf, '\n'))) {
            *nl = 0;
            json_t *cmd = json_loads(buf, 0, NULL);
            const char *name = json_string_value(json_object_get(cmd, "execute"));
            const char *id = json_string_value(json_object_get(cmd, "id"));
            char out[1024];
            if (!strcmp(name, "qmp_capabilities") || !strcmp(name, "system_powerdown")) {
                snprintf(out, sizeof(out), "{\"return\": {}, \"id\": \"%s\"}\r\n", id);
                say(p->fd, out);
            } else if (!strcmp(name, "query-status")) {
                /* an event first, then the reply in two pieces, CRLF-terminated */
                say(p->fd, "{\"event\": \"RESET\", \"data\": {\"guest\": true}, "
                           "\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n");
                snprintf(out, sizeof(out),
                         "{\"return\": {\"status\": \"running\", "
                         "\"running\": true}, \"id\": \"%s\"}\r\n",
                         id);
                size_t half = strlen(out) / 2;
                say_n(p->fd, out, half);
                usleep(20000);
                say(p->fd, out + half);
                say(p->fd, "{\"event\": \"STOP\", \"timestamp\": {}}\r\n");
            } else if (!strcmp(name, "bad")) {
                snprintf(out, sizeof(out),
                         "{\"error\": {\"class\": \"CommandNotFound\", "
                         "\"desc\": \"The command bad has not been found\"}, \"id\": "
                         "\"%s\"}\n",
                         id);
                say(p->fd, out);
            } else if (!strcmp(name, "late")) {
                snprintf(p->late_id, sizeof(p->late_id), "%s", id);
                usleep(200000);
                snprintf(out, sizeof(out), "{\"return\": {}, \"id\": \"%s\"}\n", id);
                say(p->fd, out);
            } else if (!strcmp(name, "bye")) {
                close(p->fd);
                json_decref(cmd);
                return NULL;
            } else if (!strcmp(name, "garbage")) {
                say(p->fd, "this is not json\n");
            }
            json_decref(cmd);
            len -= (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, len + 1);
        }
    }
    close(p->fd);
    return NULL;
}

static const char qemu_greeting[] =
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, "
    "\"capabilities\": [\"oob\"]}}\r\n";

static struct qmp *start(struct peer *p, const char *greeting, char *err, size_t errsz)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    p->fd = sv[1];
    p->greeting = greeting;
    pthread_create(&p->thread, NULL, peer_main, p);
    return qmp_attach(sv[0], 1000, err, errsz);
}

static void commands_events_and_split_replies(void **state)
{
    (void)state;
    struct peer p;
    char err[256];
    struct qmp *q = start(&p, qemu_greeting, err, sizeof(err));
    assert_non_null(q);
    json_t *ret = NULL;
    assert_int_equal(qmp_execute(q, "query-status", NULL, 2000, &ret, err, sizeof(err)),
                     0);
    assert_string_equal(json_string_value(json_object_get(ret, "status")), "running");
    json_decref(ret);
    /* the RESET that came before the reply is queued; the STOP after it arrives
     * with the next read */
    json_t *ev = qmp_next_event(q);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "event")), "RESET");
    json_decref(ev);
    usleep(50000);
    assert_int_equal(qmp_read(q), 0);
    ev = qmp_next_event(q);
    assert_string_equal(json_string_value(json_object_get(ev, "event")), "STOP");
    json_decref(ev);
    assert_null(qmp_next_event(q));

    assert_int_equal(qmp_execute(q, "bad", NULL, 2000, NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "bad: CommandNotFound: The command bad has not been found");
    assert_int_equal(
        qmp_execute(q, "system_powerdown", NULL, 2000, NULL, err, sizeof(err)), 0);
    assert_int_equal(qmp_execute(q, "slow", NULL, 100, NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "slow: no reply from QEMU within 100 ms");
    assert_int_equal(qmp_execute(q, "bye", NULL, 1000, NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "bye: QEMU closed the QMP connection");
    qmp_close(q);
    pthread_join(p.thread, NULL);
}

/* A reply that comes after its caller gave up is dropped, not kept for ever. The
 * peer answers in order, so once query-status is answered, the late reply before
 * it has been read. */
static void late_replies_do_not_pile_up(void **state)
{
    (void)state;
    struct peer p;
    char err[256], id[48];
    struct qmp *q = start(&p, qemu_greeting, err, sizeof(err));
    assert_non_null(q);
    assert_int_equal(qmp_execute(q, "late", NULL, 50, NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "late: no reply from QEMU within 50 ms");
    assert_int_equal(qmp_execute(q, "query-status", NULL, 2000, NULL, err, sizeof(err)),
                     0);
    assert_null(qmp_take_reply(q, p.late_id));

    /* an event loop's caller gives up with qmp_forget() */
    assert_int_equal(qmp_send(q, "late", NULL, id, sizeof(id)), 0);
    qmp_forget(q, id);
    assert_int_equal(qmp_execute(q, "query-status", NULL, 2000, NULL, err, sizeof(err)),
                     0);
    assert_null(qmp_take_reply(q, id));

    /* a reply still wanted is kept until taken, once */
    assert_int_equal(qmp_send(q, "late", NULL, id, sizeof(id)), 0);
    assert_int_equal(qmp_execute(q, "query-status", NULL, 2000, NULL, err, sizeof(err)),
                     0);
    json_t *reply = qmp_take_reply(q, id);
    assert_non_null(reply);
    json_decref(reply);
    assert_null(qmp_take_reply(q, id));
    qmp_close(q);
    pthread_join(p.thread, NULL);
}

static void garbage_is_an_error(void **state)
{
    (void)state;
    struct peer p;
    char err[256];
    struct qmp *q = start(&p, qemu_greeting, err, sizeof(err));
    assert_non_null(q);
    assert_int_equal(qmp_execute(q, "garbage", NULL, 1000, NULL, err, sizeof(err)), -1);
    qmp_close(q);
    pthread_join(p.thread, NULL);
}

static void a_peer_that_is_not_qemu(void **state)
{
    (void)state;
    struct peer p;
    char err[256];
    assert_null(start(&p, "{\"hello\": 1}\n", err, sizeof(err)));
    assert_string_equal(err, "QMP: the peer did not greet as QEMU does");
    pthread_join(p.thread, NULL);
}

static void line_parser(void **state)
{
    (void)state;
    json_t *m = qmp_parse_line("{\"return\": {}}", 14);
    assert_non_null(m);
    json_decref(m);
    assert_null(qmp_parse_line("[1, 2]", 6));
    assert_null(qmp_parse_line("{\"a\": 1, \"a\": 2}", 16)); /* duplicate keys */
    assert_null(qmp_parse_line("{\"a\"", 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(commands_events_and_split_replies),
        cmocka_unit_test(late_replies_do_not_pile_up),
        cmocka_unit_test(garbage_is_an_error),
        cmocka_unit_test(a_peer_that_is_not_qemu),
        cmocka_unit_test(line_parser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

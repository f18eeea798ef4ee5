/* The event loop: descriptors, timers, and deletion from inside callbacks. */
#include "util/loop.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

struct pair {
    int fds[2];
    int reads;
    int other_fd; /* deleted from inside the callback */
};

static void on_read(struct loop *l, int fd, uint32_t events, void *data)
{
    struct pair *p = data;
    char c;
    assert_true(events & EPOLLIN);
    assert_int_equal(read(fd, &c, 1), 1);
    p->reads++;
    if (p->other_fd >= 0) {
        loop_del_fd(l, p->other_fd);
        p->other_fd = -1;
    }
}

static void descriptors_and_deletion_in_callbacks(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    struct pair a = {.other_fd = -1}, b = {.other_fd = -1};
    assert_int_equal(pipe(a.fds), 0);
    assert_int_equal(pipe(b.fds), 0);
    assert_int_equal(loop_add_fd(l, a.fds[0], EPOLLIN, on_read, &a), 0);
    assert_int_equal(loop_add_fd(l, b.fds[0], EPOLLIN, on_read, &b), 0);
    assert_int_equal(loop_add_fd(l, a.fds[0], EPOLLIN, on_read, &a), -17); /* EEXIST */
    /* both readable in one round; whichever runs first deletes the other, which
     * must then not be called */
    a.other_fd = b.fds[0];
    b.other_fd = a.fds[0];
    assert_int_equal(write(a.fds[1], "x", 1), 1);
    assert_int_equal(write(b.fds[1], "y", 1), 1);
    assert_int_equal(loop_run_once(l, 1000), 0);
    assert_int_equal(a.reads + b.reads, 1);
    loop_free(l);
    for (int i = 0; i < 2; i++) {
        close(a.fds[i]);
        close(b.fds[i]);
    }
}

static void fired(struct loop *l, void *data)
{
    int *order = data;
    static int seq;
    *order = ++seq;
    (void)l;
}

static void stop_cb(struct loop *l, void *data)
{
    (void)data;
    loop_stop(l);
}

static void timers_fire_in_order_and_cancel(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    int first = 0, second = 0, cancelled = 0;
    loop_timer_add(l, 40, fired, &second);
    loop_timer_add(l, 10, fired, &first);
    struct loop_timer *t = loop_timer_add(l, 20, fired, &cancelled);
    loop_timer_add(l, 60, stop_cb, NULL);
    loop_timer_cancel(l, t);
    uint64_t start = loop_now();
    assert_int_equal(loop_run(l), 0);
    assert_true(loop_now() - start >= 60);
    assert_true(first > 0 && second > first);
    assert_int_equal(cancelled, 0);
    loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(descriptors_and_deletion_in_callbacks),
        cmocka_unit_test(timers_fire_in_order_and_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

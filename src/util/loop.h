/* loop: the service's single-threaded event loop (epoll, plus one-shot timers).
 *
 * Everything the service does — HTTP, display proxying, QMP, reaping — runs in
 * callbacks from one loop, so no state needs locks. Callbacks must not block for
 * long. */
#ifndef QDESK_UTIL_LOOP_H
#define QDESK_UTIL_LOOP_H

#include <stdint.h>
#include <sys/epoll.h>

struct loop;
struct loop_timer;

/* Called with the epoll events (EPOLLIN, EPOLLOUT, EPOLLHUP, EPOLLERR, ...). */
typedef void (*loop_fd_cb)(struct loop *l, int fd, uint32_t events, void *data);
typedef void (*loop_timer_cb)(struct loop *l, void *data);

/* Returns a new loop, or NULL. */
struct loop *loop_new(void);
/* Frees the loop; watched descriptors are not closed. Accepts NULL. */
void loop_free(struct loop *l);

/* Watches fd for events (EPOLLIN | EPOLLOUT ...). One watch per fd. Returns 0 or
 * -errno. */
int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_cb cb, void *data);
/* Changes the events watched on fd. Returns 0 or -errno. */
int loop_mod_fd(struct loop *l, int fd, uint32_t events);
/* Stops watching fd (call before closing it). Safe inside callbacks: no callback
 * for fd runs after this returns. */
void loop_del_fd(struct loop *l, int fd);

/* Calls cb once, after delay_ms. Returns the timer (valid until it fires or is
 * cancelled), or NULL. */
struct loop_timer *loop_timer_add(struct loop *l, uint64_t delay_ms, loop_timer_cb cb,
                                  void *data);
/* Cancels a timer that has not fired yet. Accepts NULL. */
void loop_timer_cancel(struct loop *l, struct loop_timer *t);

/* Runs until loop_stop(). Returns 0, or -errno when epoll fails. */
int loop_run(struct loop *l);
/* Runs one round: waits at most timeout_ms (-1: until something happens) and
 * dispatches what is ready. Returns 0 or -errno. */
int loop_run_once(struct loop *l, int timeout_ms);
void loop_stop(struct loop *l);

/* Monotonic milliseconds, as the timers count them. */
uint64_t loop_now(void);

#endif

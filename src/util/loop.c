#include "util/loop.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct watch {
    int fd;
    loop_fd_cb cb;
    void *data;
    bool dead;
    struct watch *next; /* in the loop's list of dead watches */
};

struct loop_timer {
    uint64_t when;
    loop_timer_cb cb;
    void *data;
    struct loop_timer *next; /* sorted by when */
};

struct loop {
    int epfd;
    bool stop;
    struct watch **by_fd; /* live watches, indexed by descriptor */
    size_t n_by_fd;
    struct watch *dead; /* deleted watches, freed when no dispatch can see them */
    struct loop_timer *timers;
    int dispatching; /* dead watches are freed only outside dispatch */
};

uint64_t loop_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct loop *loop_new(void)
{
    struct loop *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        free(l);
        return NULL;
    }
    return l;
}

static void reap_watches(struct loop *l)
{
    while (l->dead) {
        struct watch *w = l->dead;
        l->dead = w->next;
        free(w);
    }
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n_by_fd; i++)
        free(l->by_fd[i]);
    reap_watches(l);
    while (l->timers) {
        struct loop_timer *t = l->timers;
        l->timers = t->next;
        free(t);
    }
    close(l->epfd);
    free(l->by_fd);
    free(l);
}

static struct watch *find_watch(struct loop *l, int fd)
{
    return fd >= 0 && (size_t)fd < l->n_by_fd ? l->by_fd[fd] : NULL;
}

int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_cb cb, void *data)
{
    if (fd < 0)
        return -EBADF;
    if ((size_t)fd >= l->n_by_fd) {
        size_t n = l->n_by_fd ? l->n_by_fd : 64;
        while (n <= (size_t)fd)
            n *= 2;
        struct watch **grown = realloc(l->by_fd, n * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        for (size_t i = l->n_by_fd; i < n; i++)
            grown[i] = NULL;
        l->by_fd = grown;
        l->n_by_fd = n;
    }
    if (l->by_fd[fd])
        return -EEXIST;
    struct watch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    *w = (struct watch){.fd = fd, .cb = cb, .data = data};
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int rc = -errno;
        free(w);
        return rc;
    }
    l->by_fd[fd] = w;
    return 0;
}

int loop_mod_fd(struct loop *l, int fd, uint32_t events)
{
    struct watch *w = find_watch(l, fd);
    if (!w)
        return -ENOENT;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

void loop_del_fd(struct loop *l, int fd)
{
    struct watch *w = find_watch(l, fd);
    if (!w)
        return;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    w->dead = true;
    l->by_fd[fd] = NULL;
    w->next = l->dead;
    l->dead = w;
    if (!l->dispatching)
        reap_watches(l);
}

struct loop_timer *loop_timer_add(struct loop *l, uint64_t delay_ms, loop_timer_cb cb,
                                  void *data)
{
    struct loop_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    *t = (struct loop_timer){.when = loop_now() + delay_ms, .cb = cb, .data = data};
    struct loop_timer **p = &l->timers;
    while (*p && (*p)->when <= t->when)
        p = &(*p)->next;
    t->next = *p;
    *p = t;
    return t;
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
    for (struct loop_timer **p = &l->timers; t && *p; p = &(*p)->next)
        if (*p == t) {
            *p = t->next;
            free(t);
            return;
        }
}

/* Fires every timer that is due; a callback may add or cancel timers. */
static void run_timers(struct loop *l)
{
    uint64_t now = loop_now();
    while (l->timers && l->timers->when <= now) {
        struct loop_timer *t = l->timers;
        l->timers = t->next;
        loop_timer_cb cb = t->cb;
        void *data = t->data;
        free(t);
        cb(l, data);
    }
}

int loop_run_once(struct loop *l, int timeout_ms)
{
    if (l->timers) {
        uint64_t now = loop_now();
        int until = l->timers->when > now ? (int)(l->timers->when - now) : 0;
        if (timeout_ms < 0 || until < timeout_ms)
            timeout_ms = until;
    }
    struct epoll_event events[64];
    int n = epoll_wait(l->epfd, events, 64, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    l->dispatching++;
    for (int i = 0; i < n; i++) {
        struct watch *w = events[i].data.ptr;
        if (!w->dead)
            w->cb(l, w->fd, events[i].events, w->data);
    }
    l->dispatching--;
    if (!l->dispatching)
        reap_watches(l);
    run_timers(l);
    return 0;
}

int loop_run(struct loop *l)
{
    l->stop = false;
    while (!l->stop) {
        int rc = loop_run_once(l, -1);
        if (rc < 0)
            return rc;
    }
    return 0;
}

void loop_stop(struct loop *l)
{
    l->stop = true;
}

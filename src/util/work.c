#include "util/work.h"

#include "util/loop.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct job {
    void (*run)(void *arg);
    void (*done)(void *arg);
    void *arg;
    struct job *next;
};

struct workq {
    struct loop *loop;
    int efd;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct job *todo, *todo_tail;
    struct job *finished;
    bool quit;
    unsigned n_threads;
    pthread_t threads[8];
};

static void *worker(void *arg)
{
    struct workq *q = arg;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (!q->todo && !q->quit)
            pthread_cond_wait(&q->wake, &q->lock);
        if (!q->todo && q->quit)
            break;
        struct job *j = q->todo;
        q->todo = j->next;
        if (!q->todo)
            q->todo_tail = NULL;
        pthread_mutex_unlock(&q->lock);
        j->run(j->arg);
        pthread_mutex_lock(&q->lock);
        j->next = q->finished;
        q->finished = j;
        uint64_t one = 1;
        if (write(q->efd, &one, sizeof(one)) < 0) {
            /* the counter cannot overflow in practice; the loop drains it */
        }
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

static void on_finished(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)events;
    struct workq *q = arg;
    uint64_t n;
    if (read(fd, &n, sizeof(n)) < 0) {
        /* spurious wake-up: nothing to drain */
    }
    pthread_mutex_lock(&q->lock);
    struct job *done = q->finished;
    q->finished = NULL;
    pthread_mutex_unlock(&q->lock);
    while (done) {
        struct job *j = done;
        done = j->next;
        j->done(j->arg);
        free(j);
    }
}

struct workq *workq_new(struct loop *loop, unsigned threads)
{
    struct workq *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->loop = loop;
    q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->wake, NULL);
    if (q->efd < 0 || loop_add_fd(loop, q->efd, EPOLLIN, on_finished, q) < 0) {
        workq_free(q);
        return NULL;
    }
    if (threads > 8)
        threads = 8;
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&q->threads[i], NULL, worker, q) != 0)
            break;
        q->n_threads++;
    }
    if (q->n_threads == 0) {
        workq_free(q);
        return NULL;
    }
    return q;
}

int workq_submit(struct workq *q, void (*run)(void *arg), void (*done)(void *arg),
                 void *arg)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return -1;
    *j = (struct job){.run = run, .done = done, .arg = arg};
    pthread_mutex_lock(&q->lock);
    if (q->todo_tail)
        q->todo_tail->next = j;
    else
        q->todo = j;
    q->todo_tail = j;
    pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

void workq_free(struct workq *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->lock);
    q->quit = true;
    pthread_cond_broadcast(&q->wake);
    pthread_mutex_unlock(&q->lock);
    for (unsigned i = 0; i < q->n_threads; i++)
        pthread_join(q->threads[i], NULL);
    if (q->efd >= 0) {
        loop_del_fd(q->loop, q->efd);
        close(q->efd);
    }
    while (q->finished) {
        struct job *j = q->finished;
        q->finished = j->next;
        free(j);
    }
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->wake);
    free(q);
}

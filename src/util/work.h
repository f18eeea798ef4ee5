/* work: runs blocking jobs (PAM, password hashing, LDAP, mail servers) on worker
 * threads and reports their end back on the event loop, so the loop never waits
 * on them. The job function must touch only its own argument. */
#ifndef QDESK_UTIL_WORK_H
#define QDESK_UTIL_WORK_H

struct loop;
struct workq;

/* Starts threads workers reporting to loop. Returns NULL on failure. */
struct workq *workq_new(struct loop *loop, unsigned threads);
/* Runs run(arg) on a worker, then done(arg) on the loop's thread. Returns 0, or -1
 * when the job cannot be queued (done is not called). */
int workq_submit(struct workq *q, void (*run)(void *arg), void (*done)(void *arg),
                 void *arg);
/* Finishes queued jobs, joins the workers and frees q; done callbacks of jobs that
 * finish after this are not called. Accepts NULL. */
void workq_free(struct workq *q);

#endif

#include "session/session.h"

#include "catalog/catalog.h"
#include "qemu/cmdline.h"
#include "session/admission.h"
#include "session/alloc.h"
#include "session/store.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/proc.h"
#include "util/units.h"
#include "util/work.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_POLL_MS  20 /* how often to look for the QMP socket */
#define PURGE_EVERY_MS 3600000

struct qmp_call {
    char id[48];
    struct session *s;
    sessions_qmp_cb cb;
    void *arg;
    struct loop_timer *timeout;
    struct qmp_call *next;
};

struct sessions {
    const struct config *cfg;
    struct loop *loop;
    struct store *store;
    struct workq *work; /* prepares new sessions' disks off the loop */
    struct catalog *catalog;
    struct timespec catalog_mtime;
    struct spec_host host;
    struct spec_limits limits;
    char qemu_img[PATH_MAX];
    struct vm_user user;
    char runbase[PATH_MAX];
    struct session *list; /* newest first */
    struct sessions_stats stats;
    void (*observer)(struct session *s, void *arg);
    void *observer_arg;
    struct loop_timer *purge; /* hourly: forgets sessions that ended a day ago */
};

static const char *const state_names[SESSION_STATES] = {"creating", "starting", "running",
                                                        "stopping", "stopped",  "failed"};

const char *session_state_name(enum session_state st)
{
    return st < SESSION_STATES ? state_names[st] : "?";
}

int session_state_parse(const char *name)
{
    for (int i = 0; i < SESSION_STATES; i++)
        if (!strcmp(name, state_names[i]))
            return i;
    return -1;
}

bool session_state_live(enum session_state st)
{
    return st <= SESSION_STOPPING;
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

void session_refuse(struct session_error *e, enum session_refusal kind, const char *code,
                    const char *fmt, ...)
{
    e->kind = kind;
    snprintf(e->code, sizeof(e->code), "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

/* Persists s and tells the observer. */
static void changed(struct sessions *ss, struct session *s)
{
    store_session_save(ss->store, s);
    if (ss->observer)
        ss->observer(s, ss->observer_arg);
}

static void set_state(struct sessions *ss, struct session *s, enum session_state st)
{
    if (s->state == st)
        return;
    s->state = st;
    changed(ss, s);
}

/* ---- catalogue ------------------------------------------------------------ */

/* Reloads the catalogue when its directory changed (an image added or removed). */
static void refresh_catalog(struct sessions *ss)
{
    struct stat st;
    if (stat(ss->cfg->machines, &st) == 0 && ss->catalog &&
        st.st_mtim.tv_sec == ss->catalog_mtime.tv_sec &&
        st.st_mtim.tv_nsec == ss->catalog_mtime.tv_nsec)
        return;
    char err[512];
    struct catalog *c = catalog_load(ss->cfg->machines, ss->qemu_img, err, sizeof(err));
    if (!c) {
        log_error("%s", err);
        return;
    }
    catalog_free(ss->catalog);
    ss->catalog = c;
    ss->catalog_mtime = st.st_mtim;
}

const struct catalog *sessions_catalog(struct sessions *ss)
{
    refresh_catalog(ss);
    return ss->catalog;
}

const struct spec_host *sessions_host(struct sessions *ss)
{
    return &ss->host;
}

/* ---- life and death of the QEMU process ----------------------------------- */

static void start_poll(struct loop *l, void *arg);
static void stop_poll(struct loop *l, void *arg);
static void forget_ended(struct sessions *ss);

/* Everything a session held is given back; the session becomes ended. */
static void end_call(struct sessions *ss, struct qmp_call *c, json_t *ret,
                     const char *error)
{
    for (struct qmp_call **p = &c->s->calls; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    loop_timer_cancel(ss->loop, c->timeout);
    if (c->s->vm.qmp) /* a reply that comes after all is dropped, not kept */
        qmp_forget(c->s->vm.qmp, c->id);
    c->cb(c->s, ret, error, c->arg);
    free(c);
}

/* Stops watching a process descriptor and closes it. */
static void unwatch(struct sessions *ss, int *fd)
{
    if (*fd < 0)
        return;
    loop_del_fd(ss->loop, *fd);
    close(*fd);
    *fd = -1;
}

static void finish(struct sessions *ss, struct session *s, enum session_state st,
                   const char *error)
{
    while (s->calls)
        end_call(ss, s->calls, NULL, "the session ended");
    unwatch(ss, &s->pidfd);
    unwatch(ss, &s->net_pidfd);
    if (s->vm.qmp)
        loop_del_fd(ss->loop, qmp_fd(s->vm.qmp));
    loop_timer_cancel(ss->loop, s->expiry);
    loop_timer_cancel(ss->loop, s->poll);
    s->expiry = s->poll = NULL;
    vm_cleanup(&s->vm);
    if (s->rundir[0])
        fs_remove_tree(s->rundir);
    alloc_release(ss->store, ss->cfg, s->id);
    s->pid = s->net_pid = 0;
    s->ended_at = now_s();
    if (error && !s->error[0])
        snprintf(s->error, sizeof(s->error), "%s", error);
    forget_ended(ss); /* this one ends now: it stays */
    if (st == SESSION_FAILED) {
        ss->stats.failures++;
        log_warn("session %s: failed: %s", s->id, s->error);
    } else {
        log_info("session %s: stopped%s%s", s->id, error ? ": " : "", error ? error : "");
    }
    set_state(ss, s, st);
}

/* How a stopping session ends: failed when it was stopped because it went wrong
 * (QEMU never answered), else stopped. */
static enum session_state stop_outcome(const struct session *s)
{
    return s->error[0] ? SESSION_FAILED : SESSION_STOPPED;
}

/* QEMU has exited: decide whether that was a stop or a failure. */
static void exited(struct sessions *ss, struct session *s)
{
    int status = s->vm.exit_status;
    char why[600] = "";
    if (s->state == SESSION_STOPPING) {
        finish(ss, s, stop_outcome(s), NULL);
        return;
    }
    if (s->vm.child && WIFSIGNALED(status)) {
        snprintf(why, sizeof(why), "QEMU was killed by signal %d", WTERMSIG(status));
    } else if (s->vm.child && WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        char line[512];
        vm_last_log_line(s->rundir, line, sizeof(line));
        snprintf(why, sizeof(why), "QEMU exited with status %d: %s", WEXITSTATUS(status),
                 line[0] ? line : "see qemu.log");
    } else if (s->guest_shutdown) {
        finish(ss, s, SESSION_STOPPED, "the guest powered off");
        return;
    } else if (s->vm.child) {
        snprintf(why, sizeof(why), "QEMU exited without the guest powering off");
    } else {
        snprintf(why, sizeof(why), "QEMU exited unexpectedly");
    }
    finish(ss, s, SESSION_FAILED, why);
}

static void on_pidfd(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    struct session *s = arg;
    if (!vm_alive(&s->vm))
        exited(s->mgr, s);
}

/* The network helper ended while QEMU runs on: the guest has lost its network. */
static void on_net_exit(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    struct session *s = arg;
    if (vm_net_alive(&s->vm))
        return;
    unwatch(s->mgr, &s->net_pidfd);
    s->net_pid = 0;
    char line[300];
    vm_net_last_log_line(s->rundir, line, sizeof(line));
    snprintf(s->warning, sizeof(s->warning),
             "the network helper (passt) exited%s%s; the guest has no network",
             line[0] ? ": " : "", line);
    log_warn("session %s: %s", s->id, s->warning);
    changed(s->mgr, s);
}

/* Watches pid with fd, calling cb when it ends. Returns 0, or -1. */
static int watch_pid(struct sessions *ss, struct session *s, pid_t pid, int *fd,
                     void (*cb)(struct loop *, int, uint32_t, void *))
{
    *fd = proc_pidfd(pid);
    if (*fd < 0)
        return -1;
    if (loop_add_fd(ss->loop, *fd, EPOLLIN, cb, s) < 0) {
        close(*fd);
        *fd = -1;
        return -1;
    }
    return 0;
}

/* Watches the QEMU process so its end is noticed at once, child or not, and its
 * network helper, whose end takes the guest's network with it. */
static int watch_process(struct sessions *ss, struct session *s)
{
    s->net_pid = s->vm.net_pid;
    s->net_start_time = s->vm.net_start_time;
    if (s->vm.net_pid > 0)
        watch_pid(ss, s, s->vm.net_pid, &s->net_pidfd, on_net_exit);
    return watch_pid(ss, s, s->vm.pid, &s->pidfd, on_pidfd);
}

static void log_event(struct session *s, json_t *ev)
{
    const char *name = json_string_value(json_object_get(ev, "event"));
    json_t *data = json_object_get(ev, "data");
    if (!name)
        return;
    if (!strcmp(name, "SHUTDOWN")) {
        const char *reason = json_string_value(json_object_get(data, "reason"));
        s->guest_shutdown = reason && !strcmp(reason, "guest-shutdown");
        log_info("session %s: QEMU shut down (%s)", s->id, reason ? reason : "?");
    } else if (!strcmp(name, "RESET") || !strcmp(name, "STOP") ||
               !strcmp(name, "RESUME") || !strcmp(name, "GUEST_PANICKED") ||
               !strcmp(name, "POWERDOWN")) {
        log_info("session %s: QEMU event %s", s->id, name);
    }
}

/* Pins the vCPU threads QMP reported to the CPUs the session holds. */
static void pin_vcpus(struct session *s, json_t *ret, const char *error, void *arg)
{
    (void)arg;
    int tids[512];
    size_t n = 0, i;
    json_t *cpu;
    char err[512];
    json_array_foreach(ret, i, cpu) if (n < 512) tids[n++] =
        (int)json_integer_value(json_object_get(cpu, "thread-id"));
    if (error || n == 0 ||
        alloc_pin(s->mgr->store, s->id, s->pid, tids, n, err, sizeof(err)) < 0)
        log_warn("session %s: vCPUs not pinned: %s", s->id, error ? error : err);
    else
        log_info("session %s: %zu vCPUs pinned", s->id, n);
}

static void on_qmp(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)events;
    struct session *s = arg;
    struct sessions *ss = s->mgr;
    struct qmp *q = s->vm.qmp;
    bool broken = qmp_read(q) < 0;

    if (s->qmp_caps_id[0] == 0) {
        int greeted = qmp_greeted(q);
        if (greeted > 0 && qmp_send(q, "qmp_capabilities", NULL, s->qmp_caps_id,
                                    sizeof(s->qmp_caps_id)) < 0)
            broken = true;
        if (greeted < 0)
            broken = true;
    } else if (strcmp(s->qmp_caps_id, "done") != 0) {
        json_t *reply = qmp_take_reply(q, s->qmp_caps_id);
        if (reply) {
            json_decref(reply);
            snprintf(s->qmp_caps_id, sizeof(s->qmp_caps_id), "done");
            if (s->state == SESSION_STARTING) {
                loop_timer_cancel(l, s->poll);
                s->poll = NULL;
                log_info("session %s: running (pid %d)", s->id, s->pid);
                set_state(ss, s, SESSION_RUNNING);
                if (s->pin_cpus)
                    sessions_qmp(ss, s, "query-cpus-fast", NULL, 5000, pin_vcpus, NULL);
            } else if (s->state == SESSION_STOPPING && s->vm.stop_phase == VM_STOP_NONE) {
                /* reattached while stopping: carry on */
                vm_stop_escalate(&s->vm, (int)ss->cfg->stop_grace_s * 1000);
                s->poll = loop_timer_add(l, 100, stop_poll, s);
            }
        }
    }
    for (struct qmp_call *c = s->calls, *next; c; c = next) {
        next = c->next;
        json_t *reply = qmp_take_reply(q, c->id);
        if (!reply)
            continue;
        json_t *error = json_object_get(reply, "error");
        end_call(ss, c, error ? NULL : json_object_get(reply, "return"),
                 error ? json_string_value(json_object_get(error, "desc")) : NULL);
        json_decref(reply);
    }
    json_t *ev;
    while ((ev = qmp_next_event(q))) {
        log_event(s, ev);
        json_decref(ev);
    }
    if (broken) {
        while (s->calls)
            end_call(ss, s->calls, NULL, "QEMU closed its QMP connection");
        /* QEMU is exiting, or is not QEMU: the pidfd tells which. */
        loop_del_fd(l, fd);
        qmp_close(q);
        s->vm.qmp = NULL;
    }
}

/* Connects to the QMP socket without blocking; the handshake continues in
 * on_qmp(). Returns 0 when connected, -1 when the socket is not there yet. */
static int connect_qmp(struct sessions *ss, struct session *s)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/%s", s->rundir, RUNDIR_QMP);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -1;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    s->vm.qmp = qmp_new(fd);
    s->qmp_caps_id[0] = 0;
    if (!s->vm.qmp || loop_add_fd(ss->loop, fd, EPOLLIN, on_qmp, s) < 0) {
        qmp_close(s->vm.qmp);
        s->vm.qmp = NULL;
        return -1;
    }
    return 0;
}

/* While starting (or after a reattach): look for QMP until it answers. */
static void start_poll(struct loop *l, void *arg)
{
    struct session *s = arg;
    struct sessions *ss = s->mgr;
    s->poll = NULL;
    if (!session_state_live(s->state) || !strcmp(s->qmp_caps_id, "done"))
        return;
    if (!s->vm.qmp)
        connect_qmp(ss, s);
    if (proc_now_ms() > s->start_deadline) {
        snprintf(s->error, sizeof(s->error),
                 "QEMU did not answer on QMP within %llu s ([qemu] start_timeout_s)",
                 (unsigned long long)ss->cfg->start_timeout_s);
        log_warn("session %s: %s; stopping it", s->id, s->error);
        sessions_stop(ss, s, "it did not start");
        vm_stop_escalate(&s->vm, 0); /* no guest to ask: quit at once */
        return;
    }
    s->poll = loop_timer_add(l, START_POLL_MS, start_poll, s);
}

/* While stopping: escalate from power button to quit to SIGKILL. */
static void stop_poll(struct loop *l, void *arg)
{
    struct session *s = arg;
    s->poll = NULL;
    int wait = vm_stop_tick(&s->vm);
    if (wait >= 0)
        s->poll = loop_timer_add(l, (uint64_t)(wait > 0 ? wait : 1), stop_poll, s);
}

static void on_expiry(struct loop *l, void *arg)
{
    (void)l;
    struct session *s = arg;
    s->expiry = NULL;
    sessions_stop(s->mgr, s, "its lifetime ended");
}

static void arm_expiry(struct sessions *ss, struct session *s)
{
    loop_timer_cancel(ss->loop, s->expiry);
    int64_t left = s->expires_at - now_s();
    s->expiry =
        loop_timer_add(ss->loop, left > 0 ? (uint64_t)left * 1000 : 0, on_expiry, s);
}

/* ---- the manager ------------------------------------------------------------ */

static void free_session(struct sessions *ss, struct session *s);

/* Forgets sessions that ended more than [sessions] keep_ended_s ago, in memory and
 * in the store. Nothing refers to them any more: their viewers, timers and QMP
 * calls ended with them. */
static void forget_ended(struct sessions *ss)
{
    int64_t before = now_s() - (int64_t)ss->cfg->keep_ended_s;
    for (struct session **p = &ss->list; *p;) {
        struct session *s = *p;
        if (!session_state_live(s->state) && s->ended_at && s->ended_at < before) {
            *p = s->next;
            free_session(ss, s);
        } else {
            p = &s->next;
        }
    }
    store_sessions_purge(ss->store, before);
}

static void purge(struct loop *l, void *arg)
{
    struct sessions *ss = arg;
    forget_ended(ss);
    ss->purge = loop_timer_add(l, PURGE_EVERY_MS, purge, ss);
}

struct sessions *sessions_new(const struct config *cfg, struct loop *loop,
                              struct store *store, struct workq *work, char *err,
                              size_t errsz)
{
    struct sessions *ss = calloc(1, sizeof(*ss));
    if (!ss) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    ss->cfg = cfg;
    ss->loop = loop;
    ss->store = store;
    ss->work = work;
    if (sodium_init() < 0) {
        snprintf(err, errsz, "libsodium cannot initialise");
        goto fail;
    }
    if (cfg->qemu_img[0])
        snprintf(ss->qemu_img, sizeof(ss->qemu_img), "%s", cfg->qemu_img);
    if ((cfg->qemu_img[0] && access(ss->qemu_img, X_OK) < 0) ||
        (!cfg->qemu_img[0] &&
         proc_find_exe("qemu-img", ss->qemu_img, sizeof(ss->qemu_img)) < 0)) {
        snprintf(err, errsz, "qemu-img%s%s is not installed (Debian package qemu-utils)",
                 cfg->qemu_img[0] ? " at " : "", cfg->qemu_img);
        goto fail;
    }
    if (spec_qemu_user(cfg, &ss->user, err, errsz) < 0)
        goto fail;
    snprintf(ss->runbase, sizeof(ss->runbase), "%s/run", cfg->state);
    int rc = fs_mkdir_p(ss->runbase, 0755);
    if (rc < 0) {
        snprintf(err, errsz, "cannot create %s: %s", ss->runbase, strerror(-rc));
        goto fail;
    }
    if (vm_check_runbase(&ss->user, ss->runbase, err, errsz) < 0)
        goto fail;
    if (spec_host_probe(cfg, &ss->host, err, errsz) < 0)
        goto fail;
    spec_limits_from_config(cfg, &ss->limits);
    refresh_catalog(ss);
    if (!ss->catalog) {
        snprintf(err, errsz, "cannot read the machine catalogue %s", cfg->machines);
        goto fail;
    }
    ss->purge = loop_timer_add(loop, PURGE_EVERY_MS, purge, ss);
    return ss;
fail:
    catalog_free(ss->catalog);
    free(ss);
    return NULL;
}

static void free_session(struct sessions *ss, struct session *s)
{
    unwatch(ss, &s->pidfd);
    unwatch(ss, &s->net_pidfd);
    if (s->vm.qmp) {
        loop_del_fd(ss->loop, qmp_fd(s->vm.qmp));
        qmp_close(s->vm.qmp);
    }
    loop_timer_cancel(ss->loop, s->expiry);
    loop_timer_cancel(ss->loop, s->poll);
    free(s);
}

void sessions_free(struct sessions *ss)
{
    if (!ss)
        return;
    loop_timer_cancel(ss->loop, ss->purge);
    while (ss->list) {
        struct session *s = ss->list;
        ss->list = s->next;
        free_session(ss, s);
    }
    catalog_free(ss->catalog);
    free(ss);
}

void sessions_set_observer(struct sessions *ss, void (*cb)(struct session *s, void *arg),
                           void *arg)
{
    ss->observer = cb;
    ss->observer_arg = arg;
}

static void add(struct sessions *ss, struct session *s)
{
    s->mgr = ss;
    s->next = ss->list;
    ss->list = s;
}

static void random_token(char *out, size_t outsz)
{
    unsigned char raw[32];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(out, outsz, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void random_id(char *out, size_t outsz)
{
    unsigned char raw[8];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(out, outsz, raw, sizeof(raw));
}

static void usage_of(struct sessions *ss, const char *owner, struct admission_usage *u)
{
    memset(u, 0, sizeof(*u));
    for (struct session *s = ss->list; s; s = s->next) {
        if (!session_state_live(s->state))
            continue;
        u->sessions++;
        u->stopping += s->state == SESSION_STOPPING;
        if (strcmp(s->owner, owner) != 0)
            continue;
        u->user_sessions++;
        u->user_stopping += s->state == SESSION_STOPPING;
        u->user_cpus += s->cpus;
        u->user_memory_mb += s->memory_mb;
    }
}

/* A session being created: what the worker prepares and the loop then starts. */
struct create_job {
    struct sessions *ss;
    struct session *s;
    struct vm_spec spec;
    struct argv argv;
    char qemu_img[PATH_MAX];
    struct vm_user user;
    int rc;
    char err[1024];
    sessions_created_cb done;
    void *arg;
};

static void create_job_free(struct create_job *j)
{
    argv_free(&j->argv);
    free(j->s);
    free(j);
}

/* On a worker: the overlay, the data disk, the firmware variables (qemu-img and
 * file copies, which may take a while on a busy host). Touches only the job. */
static void prepare_run(void *arg)
{
    struct create_job *j = arg;
    j->rc = vm_prepare(&j->spec, j->qemu_img, &j->user, j->err, sizeof(j->err));
}

static void unlink_session(struct sessions *ss, struct session *s)
{
    for (struct session **p = &ss->list; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            return;
        }
}

/* Back on the loop: spawn QEMU, or undo everything the session was given. */
static void prepare_done(void *arg)
{
    struct create_job *j = arg;
    struct sessions *ss = j->ss;
    struct session *s = j->s;
    struct session_error e = {0};
    if (s->state == SESSION_STOPPING) { /* stopped while it was being prepared */
        j->s = NULL;
        finish(ss, s, SESSION_STOPPED, NULL);
        j->done(s, NULL, j->arg);
        create_job_free(j);
        return;
    }
    if (j->rc < 0 ||
        vm_spawn(&s->vm, &j->spec, &j->argv, &ss->user, j->err, sizeof(j->err)) < 0) {
        log_error("session %s: cannot start: %s", s->id, j->err);
        session_refuse(&e, SESSION_INTERNAL, "start_failed", "%s", j->err);
        vm_cleanup(&s->vm);
        fs_remove_tree(s->rundir);
        alloc_release(ss->store, ss->cfg, s->id);
        store_session_delete(ss->store, s->id);
        unlink_session(ss, s);
        j->done(NULL, &e, j->arg);
        create_job_free(j);
        return;
    }
    j->s = NULL;
    s->pid = s->vm.pid;
    s->start_time = s->vm.start_time;
    watch_process(ss, s);
    arm_expiry(ss, s);
    s->start_deadline = proc_now_ms() + ss->cfg->start_timeout_s * 1000;
    s->poll = loop_timer_add(ss->loop, START_POLL_MS, start_poll, s);
    char life[32];
    units_format_duration((uint64_t)(s->expires_at - s->created_at), life, sizeof(life));
    log_info("session %s: created by %s: machine %s, %u cpu, %llu MiB, lifetime %s%s, "
             "pid %d",
             s->id, s->owner, s->machine, s->cpus, (unsigned long long)s->memory_mb, life,
             s->oneshot ? ", one-shot" : "", s->pid);
    set_state(ss, s, SESSION_STARTING);
    j->done(s, NULL, j->arg);
    create_job_free(j);
}

int sessions_create(struct sessions *ss, const char *owner,
                    const struct spec_request *req, sessions_created_cb done, void *arg,
                    struct session_error *e)
{
    char err[1024];
    refresh_catalog(ss);
    const struct catalog_machine *m =
        catalog_lookup(ss->catalog, req->machine, err, sizeof(err));
    if (!m) {
        session_refuse(e, SESSION_BAD_REQUEST, "invalid_field", "%s", err);
        return -1;
    }
    struct create_job *j = calloc(1, sizeof(*j));
    struct session *s = j ? calloc(1, sizeof(*s)) : NULL;
    if (!s) {
        free(j);
        session_refuse(e, SESSION_INTERNAL, "internal", "out of memory");
        return -1;
    }
    *j =
        (struct create_job){.ss = ss, .s = s, .done = done, .arg = arg, .user = ss->user};
    argv_init(&j->argv);
    snprintf(j->qemu_img, sizeof(j->qemu_img), "%s", ss->qemu_img);
    s->pidfd = s->net_pidfd = -1;
    random_id(s->id, sizeof(s->id));
    snprintf(s->rundir, sizeof(s->rundir), "%s/%s", ss->runbase, s->id);

    struct vm_spec *spec = &j->spec;
    if (spec_resolve(req, m, &ss->host, &ss->limits, s->id, s->rundir, spec, err,
                     sizeof(err)) < 0) {
        session_refuse(e, SESSION_BAD_REQUEST, "invalid_field", "%s", err);
        create_job_free(j);
        return -1;
    }
    struct admission_usage usage;
    usage_of(ss, owner, &usage);
    enum admission_reason why = admission_check(ss->cfg, &ss->host, &usage, spec->cpus,
                                                spec->memory_mb, err, sizeof(err));
    if (why != ADMIT_OK) {
        ss->stats.refusals[why]++;
        log_info("session refused for %s: %s: %s", owner, admission_reason_name(why),
                 err);
        session_refuse(e, SESSION_FULL, admission_reason_name(why), "%s", err);
        create_job_free(j);
        return -1;
    }

    if (alloc_acquire(ss->store, ss->cfg, s->id, req, spec, &ss->user, e) < 0) {
        log_info("session refused for %s: %s", owner, e->message);
        create_job_free(j);
        return -1;
    }
    if (qemu_build_cmdline(&j->argv, spec) < 0) {
        session_refuse(e, SESSION_BAD_REQUEST, "invalid_field", "%s", j->argv.err);
        alloc_release(ss->store, ss->cfg, s->id);
        create_job_free(j);
        return -1;
    }
    spec_warnings(spec, s->warning, sizeof(s->warning));
    s->pin_cpus = spec->pin_cpus;

    snprintf(s->machine, sizeof(s->machine), "%s", m->name);
    snprintf(s->owner, sizeof(s->owner), "%s", owner);
    snprintf(s->gpu, sizeof(s->gpu), "%s%s%s", spec_gpu_name(req->gpu),
             req->gpu_type[0] ? ":" : "", req->gpu_type);
    s->cpus = spec->cpus;
    s->memory_mb = spec->memory_mb;
    s->created_at = now_s();
    s->expires_at =
        s->created_at +
        (int64_t)(req->lifetime_s ? req->lifetime_s : ss->limits.default_lifetime_s);
    s->oneshot = req->oneshot;
    s->persistent = req->persistent;
    random_token(s->control_token, sizeof(s->control_token));
    random_token(s->view_token, sizeof(s->view_token));
    s->state = SESSION_CREATING;
    if (workq_submit(ss->work, prepare_run, prepare_done, j) < 0) {
        session_refuse(e, SESSION_INTERNAL, "internal",
                       "cannot queue the session's set-up");
        alloc_release(ss->store, ss->cfg, s->id);
        create_job_free(j);
        return -1;
    }
    /* From here the session is listed as creating; prepare_done() either starts it
     * or removes everything made for it: the run directory, the row, the claims. */
    add(ss, s);
    store_session_save(ss->store, s);
    ss->stats.creates++;
    return 0;
}

/* A stored live session after a restart: reattach or clean up. */
static void reconcile_one(struct session *s, void *arg)
{
    struct sessions *ss = arg;
    add(ss, s);
    if (!session_state_live(s->state))
        return;
    int net_pid = s->net_pid;
    if (s->pid > 0 &&
        vm_adopt(&s->vm, s->rundir, s->pid, s->start_time, s->net_pid,
                 s->net_start_time) == 0 &&
        watch_process(ss, s) == 0) {
        if (net_pid > 0 && s->vm.net_pid <= 0)
            log_warn("session %s: its network helper (pid %d) ended while the service "
                     "was down",
                     s->id, net_pid);
        log_info("session %s: reattached to pid %d (%s)", s->id, s->pid,
                 session_state_name(s->state));
        arm_expiry(ss, s);
        s->start_deadline = proc_now_ms() + ss->cfg->start_timeout_s * 1000;
        s->poll = loop_timer_add(ss->loop, 0, start_poll, s);
        /* A one-shot link whose viewer was connected has been used: that viewer's
         * connection died with the old service, so the session ends. */
        if (s->oneshot && s->viewers_total > 0)
            sessions_stop(ss, s, "its one-shot viewer left");
        return;
    }
    finish(ss, s, s->state == SESSION_STOPPING ? stop_outcome(s) : SESSION_FAILED,
           s->state == SESSION_STOPPING ? NULL : "QEMU ended while the service was down");
}

static bool is_live(const char *id, void *arg)
{
    struct session *s = sessions_find(arg, id);
    return s && session_state_live(s->state);
}

int sessions_reconcile(struct sessions *ss)
{
    store_sessions_purge(ss->store, now_s() - (int64_t)ss->cfg->keep_ended_s);
    store_sessions_load(ss->store, reconcile_one, ss);
    alloc_reconcile(ss->store, ss->cfg, is_live, ss);
    int n = 0;
    for (struct session *s = ss->list; s; s = s->next)
        n += session_state_live(s->state);
    /* Run directories no session owns are leftovers of a crash: remove them. */
    DIR *d = opendir(ss->runbase);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.' || sessions_find(ss, de->d_name))
            continue;
        char path[PATH_MAX + 300];
        snprintf(path, sizeof(path), "%s/%s", ss->runbase, de->d_name);
        log_warn("removing %s: no session owns it", path);
        fs_remove_tree(path);
    }
    if (d)
        closedir(d);
    return n;
}

struct session *sessions_find(struct sessions *ss, const char *id)
{
    for (struct session *s = ss->list; s; s = s->next)
        if (!strcmp(s->id, id))
            return s;
    return NULL;
}

struct session *sessions_by_token(struct sessions *ss, const char *token, bool ended,
                                  bool *view_only)
{
    size_t n = strlen(token);
    if (n != SESSION_TOKEN_LEN - 1)
        return NULL;
    for (struct session *s = ss->list; s; s = s->next) {
        if (!ended && !session_state_live(s->state))
            continue;
        if (sodium_memcmp(s->control_token, token, n) == 0) {
            *view_only = false;
            return s;
        }
        if (sodium_memcmp(s->view_token, token, n) == 0) {
            *view_only = true;
            return s;
        }
    }
    return NULL;
}

int sessions_stop(struct sessions *ss, struct session *s, const char *why)
{
    if (!session_state_live(s->state) || s->state == SESSION_STOPPING)
        return s->state == SESSION_STOPPING ? 0 : -1;
    log_info("session %s: stopping: %s", s->id, why);
    if (s->state == SESSION_CREATING) { /* its set-up ends the stop (prepare_done) */
        set_state(ss, s, SESSION_STOPPING);
        return 0;
    }
    loop_timer_cancel(ss->loop, s->expiry);
    loop_timer_cancel(ss->loop, s->poll);
    s->expiry = s->poll = NULL;
    set_state(ss, s, SESSION_STOPPING);
    if (!vm_alive(&s->vm)) {
        finish(ss, s, stop_outcome(s), NULL);
        return 0;
    }
    vm_stop_escalate(&s->vm, (int)ss->cfg->stop_grace_s * 1000);
    s->poll = loop_timer_add(ss->loop, 100, stop_poll, s);
    return 0;
}

int sessions_stop_all(struct sessions *ss, const char *why)
{
    int n = 0;
    for (struct session *s = ss->list; s; s = s->next)
        if (session_state_live(s->state) && s->state != SESSION_STOPPING)
            n += sessions_stop(ss, s, why) == 0;
    return n;
}

int sessions_extend(struct sessions *ss, struct session *s, uint64_t seconds,
                    struct session_error *e)
{
    if (!session_state_live(s->state) || s->state == SESSION_STOPPING) {
        session_refuse(e, SESSION_BAD_REQUEST, "not_running", "session %s is %s", s->id,
                       session_state_name(s->state));
        return -1;
    }
    int64_t base = s->expires_at > now_s() ? s->expires_at : now_s();
    uint64_t total = (uint64_t)(base - s->created_at) + seconds;
    if (seconds == 0 || total > ss->limits.max_lifetime_s) {
        char max[32], want[32];
        units_format_duration(ss->limits.max_lifetime_s, max, sizeof(max));
        units_format_duration(total, want, sizeof(want));
        session_refuse(e, SESSION_BAD_REQUEST, "invalid_field",
                       seconds == 0
                           ? "seconds: must be at least 1"
                           : "seconds: the session would live %s, more than the limit "
                             "(max_lifetime_s) of %s",
                       want, max);
        return -1;
    }
    s->expires_at = base + (int64_t)seconds;
    arm_expiry(ss, s);
    log_info("session %s: extended by %llus", s->id, (unsigned long long)seconds);
    changed(ss, s);
    return 0;
}

bool sessions_viewer_open(struct sessions *ss, struct session *s)
{
    if (s->state != SESSION_RUNNING || (s->oneshot && s->viewers_total > 0))
        return false;
    s->viewers++;
    s->viewers_total++;
    store_session_save(ss->store, s);
    return true;
}

void sessions_viewer_cancel(struct sessions *ss, struct session *s)
{
    if (s->viewers > 0)
        s->viewers--;
    if (s->viewers_total > 0)
        s->viewers_total--;
    store_session_save(ss->store, s);
}

void sessions_viewer_closed(struct sessions *ss, struct session *s)
{
    if (s->viewers > 0)
        s->viewers--;
    if (s->oneshot && s->viewers == 0)
        sessions_stop(ss, s, "its one-shot viewer left");
}

static void on_call_timeout(struct loop *l, void *arg)
{
    (void)l;
    struct qmp_call *c = arg;
    c->timeout = NULL;
    end_call(c->s->mgr, c, NULL, "QEMU did not answer in time");
}

int sessions_qmp(struct sessions *ss, struct session *s, const char *command,
                 json_t *args, unsigned timeout_ms, sessions_qmp_cb cb, void *arg)
{
    if (!s->vm.qmp || strcmp(s->qmp_caps_id, "done") != 0)
        return -1;
    struct qmp_call *c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    *c = (struct qmp_call){.s = s, .cb = cb, .arg = arg};
    if (qmp_send(s->vm.qmp, command, args, c->id, sizeof(c->id)) < 0) {
        free(c);
        return -1;
    }
    c->timeout = loop_timer_add(ss->loop, timeout_ms, on_call_timeout, c);
    c->next = s->calls;
    s->calls = c;
    return 0;
}

/* Hot-plug bookkeeping: a host device's claim is given back when QEMU refuses it. */
struct usb_plug {
    char unit[48];
    sessions_qmp_cb cb;
    void *arg;
};

static struct usb_plug *new_plug(sessions_qmp_cb cb, void *arg, struct session_error *e)
{
    struct usb_plug *p = calloc(1, sizeof(*p));
    if (!p) {
        session_refuse(e, SESSION_INTERNAL, "internal", "out of memory");
        return NULL;
    }
    p->cb = cb;
    p->arg = arg;
    return p;
}

static void usb_plugged(struct session *s, json_t *ret, const char *error, void *arg)
{
    struct usb_plug *p = arg;
    if (error && p->unit[0]) {
        struct session_error e;
        struct vm_usb dev;
        alloc_usb_detach(s->mgr->store, s->mgr->cfg, s->id, p->unit, &dev, &e);
    }
    if (error)
        log_warn("session %s: USB %s refused: %s", s->id, p->unit[0] ? p->unit : "device",
                 error);
    else
        log_info("session %s: USB %s plugged in", s->id, p->unit[0] ? p->unit : "device");
    p->cb(s, ret, error, p->arg);
    free(p);
}

int sessions_usb_attach(struct sessions *ss, struct session *s, const char *device,
                        char *out_id, sessions_qmp_cb cb, void *arg,
                        struct session_error *e)
{
    char err[512];
    struct spec_request probe = {0};
    if (spec_request_set(&probe, "usb", device, err, sizeof(err)) < 0) {
        session_refuse(e, SESSION_BAD_REQUEST, "invalid_field", "%s", err);
        return -1;
    }
    if (s->state != SESSION_RUNNING) {
        session_refuse(e, SESSION_BAD_REQUEST, "not_running", "session %s is %s", s->id,
                       session_state_name(s->state));
        return -1;
    }
    struct vm_usb dev = {0};
    if (alloc_usb_attach(ss->store, ss->cfg, s->id, device, &ss->user, &dev, e) < 0)
        return -1;
    struct usb_plug *p = new_plug(cb, arg, e);
    if (!p)
        return -1;
    dev.index = randombytes_uniform(1u << 20); /* unique among the session's devices */
    qemu_usb_id(&dev, out_id, 48);
    json_t *args = json_pack("{s:s, s:s, s:s}", "driver",
                             dev.emulated[0] ? dev.emulated : "usb-host", "bus", "usb.0",
                             "id", out_id);
    if (!dev.emulated[0]) {
        json_object_set_new(args, "hostbus", json_integer(dev.bus));
        json_object_set_new(args, "hostport", json_string(dev.devpath));
        snprintf(p->unit, sizeof(p->unit), "%u-%s", dev.bus, dev.devpath);
    }
    int rc = sessions_qmp(ss, s, "device_add", args, 10000, usb_plugged, p);
    json_decref(args);
    if (rc < 0) {
        if (p->unit[0])
            alloc_usb_detach(ss->store, ss->cfg, s->id, p->unit, &dev, e);
        free(p);
        session_refuse(e, SESSION_BAD_REQUEST, "not_running",
                       "session %s has no QMP connection", s->id);
        return -1;
    }
    return 0;
}

/* A host device being unplugged: its claim is given back once QEMU has let go. */
static void usb_unplugged(struct session *s, json_t *ret, const char *error, void *arg)
{
    struct usb_plug *p = arg;
    if (!error && p->unit[0]) {
        struct session_error e;
        struct vm_usb dev;
        if (alloc_usb_detach(s->mgr->store, s->mgr->cfg, s->id, p->unit, &dev, &e) < 0)
            log_warn("session %s: USB %s: %s", s->id, p->unit, e.message);
    }
    if (error)
        log_warn("session %s: USB %s not unplugged: %s", s->id,
                 p->unit[0] ? p->unit : "device", error);
    else
        log_info("session %s: USB %s unplugged", s->id, p->unit[0] ? p->unit : "device");
    p->cb(s, ret, error, p->arg);
    free(p);
}

int sessions_usb_detach(struct sessions *ss, struct session *s, const char *device,
                        sessions_qmp_cb cb, void *arg, struct session_error *e)
{
    char id[64];
    unsigned bus;
    char path[32];
    struct vm_usb dev = {0};
    /* a host device: by the id attach gave (usb-BUS-PATH), its port or VID:PID */
    if (sscanf(device, "usb-%u-%31[0-9.]", &bus, path) == 2) {
        char port[48];
        snprintf(port, sizeof(port), "%u-%s", bus, path);
        if (alloc_usb_find(ss->store, s->id, port, &dev, e) < 0)
            return -1;
    } else if (strncmp(device, "usb-", 4) != 0) {
        if (alloc_usb_find(ss->store, s->id, device, &dev, e) < 0)
            return -1;
    } else if (strspn(device, "abcdefghijklmnopqrstuvwxyz0123456789-") !=
                   strlen(device) ||
               strlen(device) >= sizeof(id)) {
        session_refuse(e, SESSION_BAD_REQUEST, "invalid_field",
                       "device: '%s' is not a device id", device);
        return -1;
    }
    struct usb_plug *p = new_plug(cb, arg, e);
    if (!p)
        return -1;
    if (dev.bus) {
        qemu_usb_id(&dev, id, sizeof(id));
        snprintf(p->unit, sizeof(p->unit), "%u-%s", dev.bus, dev.devpath);
    } else {
        snprintf(id, sizeof(id), "%s", device); /* an emulated device's id */
    }
    json_t *args = json_pack("{s:s}", "id", id);
    int rc = sessions_qmp(ss, s, "device_del", args, 10000, usb_unplugged, p);
    json_decref(args);
    if (rc < 0) {
        free(p);
        session_refuse(e, SESSION_BAD_REQUEST, "not_running",
                       "session %s has no QMP connection", s->id);
    }
    return rc;
}

void sessions_foreach(struct sessions *ss, void (*cb)(struct session *s, void *arg),
                      void *arg)
{
    for (struct session *s = ss->list; s; s = s->next)
        cb(s, arg);
}

void sessions_vnc_path(const struct session *s, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%s", s->rundir, RUNDIR_VNC);
}

void sessions_get_stats(struct sessions *ss, struct sessions_stats *out)
{
    *out = ss->stats;
    memset(out->by_state, 0, sizeof(out->by_state));
    out->viewers = 0;
    for (struct session *s = ss->list; s; s = s->next) {
        out->by_state[s->state]++;
        out->viewers += s->viewers;
    }
}

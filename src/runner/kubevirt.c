#include "runner/kubevirt.h"

#include "config.h"
#include "runner/k8s.h"
#include "runner/vmi.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/work.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SELECTOR       RUNNER_LABEL_MANAGED "%3Dqdesk" /* app.kubernetes.io/managed-by=qdesk */
#define WATCH_TIMEOUT  300 /* s: the server ends a watch after this; it is resumed */
#define BACKOFF_MAX_MS 30000
#define QUOTA_EVERY_MS 30000

struct kv_runner;

/* One VMI of one session. */
struct runner_vm {
    struct kv_runner *r;
    char session_id[24];
    char name[64];
    char ns[64];
    char uid[64];
    char node[128];
    struct runner_events ev;
    struct kv_objects obj;       /* what prepare creates (freed after) */
    json_t *seen;                /* the last VMI the watch reported, before start */
    bool started;                /* start() or reattach(): report states */
    bool created;                /* prepare made it, or it was found again */
    bool stopping;               /* qdesk asked for it to go */
    bool vanished;               /* the cluster no longer has it */
    bool final;                  /* a final state was reported */
    int last_state;              /* -1 none yet */
    char last_msg[512];
    uint64_t created_ms;         /* loop time prepare finished (list races) */
    uint64_t unschedulable_since; /* loop time; 0 while schedulable */
    struct loop_timer *recheck;  /* schedule_timeout running out */
    struct runner_vm *next;
};

/* A display bridge: a thread carrying one WebSocket to one socketpair end. */
struct bridge {
    pthread_t thread;
    struct k8s_ws *ws;
    int fd;
    volatile bool cancel;
    volatile bool done;
    char name[64];
    struct bridge *next;
};

struct kv_runner {
    struct runner base;
    struct loop *loop;
    struct kv_config cfg;
    struct k8s *k8s;
    struct workq *work;
    struct runner_vm *vms;
    struct job *jobs; /* submitted, their done not yet run */
    struct bridge *bridges;
    pthread_mutex_t lock; /* bridges list only */

    pthread_t watcher;
    bool watching;
    volatile bool stop;
    int notes[2]; /* watch thread -> loop: pointers to struct note */
    int wake[2];  /* loop -> watch thread: wake from a back-off */

    bool (*live)(const char *id, void *arg); /* which sessions are live (sweep) */
    void *live_arg;

    struct runner_capacity cap;
    struct loop_timer *quota_timer;
};

/* What the watch thread tells the loop. */
struct note {
    enum { NOTE_OBJECT, NOTE_DELETED, NOTE_SYNCED } kind;
    json_t *obj;       /* the VMI (NOTE_SYNCED: the list's names) */
    uint64_t list_ms;  /* NOTE_SYNCED: when the list was asked for */
};

static struct kv_runner *kv_of(struct runner *r)
{
    return (struct kv_runner *)r;
}

static struct runner_vm *find_vm(struct kv_runner *r, const char *name)
{
    for (struct runner_vm *v = r->vms; v; v = v->next)
        if (!strcmp(v->name, name))
            return v;
    return NULL;
}

static const char *vmi_name(json_t *vmi)
{
    return json_string_value(json_object_get(json_object_get(vmi, "metadata"), "name"));
}

/* ---- phases --------------------------------------------------------------------- */

/* The condition of type in the VMI's status, or NULL. */
static json_t *condition(json_t *vmi, const char *type)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(json_object_get(vmi, "status"), "conditions"), i, c)
    {
        const char *t = json_string_value(json_object_get(c, "type"));
        if (t && !strcmp(t, type))
            return c;
    }
    return NULL;
}

int kubevirt_vmi_state(json_t *vmi, bool *unschedulable, char *msg, size_t msgsz)
{
    json_t *status = json_object_get(vmi, "status");
    const char *phase = json_string_value(json_object_get(status, "phase"));
    phase = phase ? phase : "";
    msg[0] = 0;
    *unschedulable = false;
    json_t *sched = condition(vmi, "PodScheduled");
    const char *sched_reason = json_string_value(json_object_get(sched, "reason"));
    const char *sched_status = json_string_value(json_object_get(sched, "status"));
    const char *sched_msg = json_string_value(json_object_get(sched, "message"));
    if (!strcmp(phase, "Running"))
        return RUNNER_RUNNING;
    if (!strcmp(phase, "Succeeded")) {
        snprintf(msg, msgsz, "the guest powered off");
        return RUNNER_STOPPED;
    }
    if (!strcmp(phase, "Failed")) {
        /* the most telling message: a False Ready/Synchronized condition's, the
         * status reason, else the phase */
        const char *why = NULL;
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(status, "conditions"), i, c)
        {
            const char *cs = json_string_value(json_object_get(c, "status"));
            const char *cm = json_string_value(json_object_get(c, "message"));
            if (cs && !strcmp(cs, "False") && cm && cm[0] && !why)
                why = cm;
        }
        const char *reason = json_string_value(json_object_get(status, "reason"));
        snprintf(msg, msgsz, "the VMI failed%s%s", why || reason ? ": " : "",
                 why ? why : reason ? reason : "");
        return RUNNER_FAILED;
    }
    if (!strcmp(phase, "Unknown"))
        return -1;
    if (sched_status && !strcmp(sched_status, "False") && sched_reason &&
        !strcmp(sched_reason, "Unschedulable")) {
        *unschedulable = true;
        snprintf(msg, msgsz, "no node can take it: %s",
                 sched_msg && sched_msg[0] ? sched_msg : "the scheduler gave no reason");
        return RUNNER_STARTING;
    }
    if (phase[0])
        snprintf(msg, msgsz, "%s on the cluster", phase);
    return RUNNER_STARTING;
}

/* Reports st to the layer above once per change; a final state only once. */
static void report(struct runner_vm *vm, enum runner_state st, const char *msg)
{
    if (vm->final || !vm->started)
        return;
    if (vm->last_state == (int)st && !strcmp(vm->last_msg, msg))
        return;
    vm->last_state = (int)st;
    snprintf(vm->last_msg, sizeof(vm->last_msg), "%s", msg);
    vm->final = st == RUNNER_STOPPED || st == RUNNER_FAILED;
    if (vm->final) {
        loop_timer_cancel(vm->r->loop, vm->recheck);
        vm->recheck = NULL;
    }
    vm->ev.state(vm, st, msg, vm->ev.arg);
}

static void apply(struct runner_vm *vm, json_t *vmi);

static void recheck(struct loop *l, void *arg)
{
    (void)l;
    struct runner_vm *vm = arg;
    vm->recheck = NULL;
    if (vm->seen)
        apply(vm, vm->seen);
}

/* A VMI as the watch or a GET saw it. */
static void apply(struct runner_vm *vm, json_t *vmi)
{
    if (vmi != vm->seen) {
        json_decref(vm->seen);
        vm->seen = json_incref(vmi);
    }
    if (!vm->started || vm->final)
        return;
    const char *uid =
        json_string_value(json_object_get(json_object_get(vmi, "metadata"), "uid"));
    if (uid && vm->uid[0] && strcmp(uid, vm->uid) != 0) {
        report(vm, RUNNER_FAILED, "its VMI was replaced by another of the same name");
        return;
    }
    const char *node =
        json_string_value(json_object_get(json_object_get(vmi, "status"), "nodeName"));
    if (node)
        snprintf(vm->node, sizeof(vm->node), "%s", node);
    bool unsched;
    char msg[512];
    int st = kubevirt_vmi_state(vmi, &unsched, msg, sizeof(msg));
    if (st < 0)
        return;
    if (st == RUNNER_STARTING && unsched && !vm->stopping) {
        uint64_t now = loop_now(), limit = vm->r->cfg.schedule_timeout_s * 1000;
        if (!vm->unschedulable_since)
            vm->unschedulable_since = now;
        if (now - vm->unschedulable_since >= limit) {
            char why[600];
            snprintf(why, sizeof(why), "the cluster cannot place it: %s",
                     strchr(msg, ':') + 2);
            report(vm, RUNNER_FAILED, why);
            return;
        }
        if (!vm->recheck)
            vm->recheck = loop_timer_add(vm->r->loop,
                                         limit - (now - vm->unschedulable_since), recheck,
                                         vm);
    } else if (!unsched) {
        vm->unschedulable_since = 0;
    }
    if (!vm->stopping)
        report(vm, (enum runner_state)st, msg);
    else if (st == RUNNER_FAILED || st == RUNNER_STOPPED) /* it ends as asked */
        report(vm, RUNNER_STOPPED, "");
}

/* The VMI is gone from the cluster. */
static void gone(struct runner_vm *vm)
{
    vm->vanished = true;
    if (!vm->started)
        return;
    report(vm, vm->stopping ? RUNNER_STOPPED : RUNNER_FAILED,
           vm->stopping ? "" : "its VMI was deleted on the cluster");
}

/* ---- jobs on the runner's workers ------------------------------------------------ */

/* A request made off the loop: what it needs is copied in, so it outlives the VM. */
struct job {
    struct kv_runner *r;
    char name[64];
    char ns[64];
    int rc;
    unsigned grace;
    char err[600];
    struct k8s_response resp;
    struct k8s_response resp2; /* sweep: the Secrets */
    /* screenshot / display */
    void *cb;
    void *cb_arg;
    struct k8s_ws *ws;
    struct job *next; /* the runner's jobs in flight */
};

/* Ends a job on the loop: unlinks and frees it with what it still holds. */
static void job_free(struct job *j)
{
    for (struct job **p = &j->r->jobs; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            break;
        }
    k8s_response_free(&j->resp);
    k8s_response_free(&j->resp2);
    k8s_ws_close(j->ws);
    free(j);
}

static int submit(struct kv_runner *r, struct runner_vm *vm, void (*run)(void *),
                  void (*done)(void *), unsigned grace, void *cb, void *cb_arg)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return -1;
    *j = (struct job){.r = r, .grace = grace, .cb = cb, .cb_arg = cb_arg};
    snprintf(j->name, sizeof(j->name), "%s", vm->name);
    snprintf(j->ns, sizeof(j->ns), "%s", vm->ns);
    if (workq_submit(r->work, run, done, j) < 0) {
        free(j);
        return -1;
    }
    j->next = r->jobs;
    r->jobs = j;
    return 0;
}

static void vmi_path(const char *ns, const char *name, char *out, size_t outsz)
{
    snprintf(out, outsz, "/apis/kubevirt.io/v1/namespaces/%s/virtualmachineinstances%s%s",
             ns, name ? "/" : "", name ? name : "");
}

static void secret_path(const char *ns, const char *name, char *out, size_t outsz)
{
    snprintf(out, outsz, "/api/v1/namespaces/%s/secrets%s%s", ns, name ? "/" : "",
             name ? name : "");
}

/* DELETE of a VMI and its Secret: a missing one is no error. */
static void delete_run(void *arg)
{
    struct job *j = arg;
    char path[512];
    json_t *opts = json_pack("{s:s, s:s, s:I, s:s}", "kind", "DeleteOptions",
                             "apiVersion", "v1", "gracePeriodSeconds",
                             (json_int_t)j->grace, "propagationPolicy", "Background");
    vmi_path(j->ns, j->name, path, sizeof(path));
    j->rc = k8s_request(j->r->k8s, "DELETE", path, opts, NULL, &j->resp, j->err,
                        sizeof(j->err));
    if (j->rc == 0 && j->resp.status >= 300 && j->resp.status != 404) {
        k8s_error(&j->resp, j->err, sizeof(j->err));
        j->rc = -1;
    }
    struct k8s_response sr;
    secret_path(j->ns, j->name, path, sizeof(path));
    if (k8s_request(j->r->k8s, "DELETE", path, NULL, NULL, &sr, j->err + strlen(j->err),
                    0) == 0)
        k8s_response_free(&sr);
    json_decref(opts);
}

static void delete_done(void *arg)
{
    struct job *j = arg;
    struct runner_vm *vm = find_vm(j->r, j->name);
    if (j->rc < 0)
        log_warn("kubevirt %s: deleting %s/%s: %s", j->r->cfg.name, j->ns, j->name, j->err);
    else if (vm && j->resp.status == 404)
        gone(vm); /* it was gone already: no watch event will come */
    job_free(j);
}

/* ---- the watch thread ------------------------------------------------------------ */

static void post(struct kv_runner *r, int kind, json_t *obj, uint64_t list_ms)
{
    struct note *n = malloc(sizeof(*n));
    if (!n) {
        json_decref(obj);
        return;
    }
    *n = (struct note){.kind = kind, .obj = obj, .list_ms = list_ms};
    if (fs_write_all(r->notes[1], &n, sizeof(n)) < 0) {
        json_decref(obj);
        free(n);
    }
}

struct watch_state {
    struct kv_runner *r;
    char rv[64];
    bool gone;   /* 410: list again */
    bool failed; /* an ERROR event: back off, then watch again */
};

static int on_event(const char *type, json_t *obj, void *arg)
{
    struct watch_state *w = arg;
    const char *rv = json_string_value(
        json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
    if (!strcmp(type, "ERROR")) {
        long code = (long)json_integer_value(json_object_get(obj, "code"));
        const char *m = json_string_value(json_object_get(obj, "message"));
        if (code == 410) {
            w->gone = true;
            return 1;
        }
        log_warn("kubevirt %s: the watch reported: %s", w->r->cfg.name, m ? m : "an error");
        w->failed = true;
        return 1;
    }
    if (rv)
        snprintf(w->rv, sizeof(w->rv), "%s", rv);
    if (!strcmp(type, "BOOKMARK"))
        return 0;
    post(w->r, strcmp(type, "DELETED") ? NOTE_OBJECT : NOTE_DELETED, json_incref(obj), 0);
    return 0;
}

/* Lists the runner's VMIs: each is posted, then the names. Returns 0 with the list's
 * resourceVersion in rv, or -1. */
static int list(struct kv_runner *r, char *rv, size_t rvsz)
{
    char path[600], err[600];
    uint64_t started = loop_now();
    snprintf(path, sizeof(path),
             "/apis/kubevirt.io/v1/namespaces/%s/virtualmachineinstances?labelSelector=%s",
             r->cfg.ns, SELECTOR);
    struct k8s_response resp;
    if (k8s_request(r->k8s, "GET", path, NULL, NULL, &resp, err, sizeof(err)) < 0) {
        log_warn("kubevirt %s: %s", r->cfg.name, err);
        return -1;
    }
    if (resp.status != 200) {
        k8s_error(&resp, err, sizeof(err));
        log_warn("kubevirt %s: listing VMIs: %s", r->cfg.name, err);
        k8s_response_free(&resp);
        return -1;
    }
    json_t *names = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(resp.body, "items"), i, item)
    {
        if (vmi_name(item))
            json_array_append_new(names, json_string(vmi_name(item)));
        post(r, NOTE_OBJECT, json_incref(item), 0);
    }
    post(r, NOTE_SYNCED, names, started);
    snprintf(rv, rvsz, "%s",
             json_string_value(json_object_get(json_object_get(resp.body, "metadata"),
                                               "resourceVersion"))
                 ?: "");
    k8s_response_free(&resp);
    return 0;
}

/* Waits ms unless the runner stops first. */
static void pause_ms(struct kv_runner *r, int ms)
{
    struct pollfd p = {r->wake[0], POLLIN, 0};
    poll(&p, 1, ms);
}

static void *watch_main(void *arg)
{
    struct kv_runner *r = arg;
    struct watch_state w = {.r = r};
    int backoff = 500;
    bool listed = false;
    while (!r->stop) {
        if (!listed || w.gone) {
            w.gone = false;
            if (list(r, w.rv, sizeof(w.rv)) < 0) {
                pause_ms(r, backoff);
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
                continue;
            }
            listed = true;
        }
        char path[800], err[600];
        long status;
        snprintf(path, sizeof(path),
                 "/apis/kubevirt.io/v1/namespaces/%s/virtualmachineinstances?watch=true"
                 "&labelSelector=%s&resourceVersion=%s&allowWatchBookmarks=true"
                 "&timeoutSeconds=%d",
                 r->cfg.ns, SELECTOR, w.rv, WATCH_TIMEOUT);
        int rc = k8s_watch(r->k8s, path, on_event, &w, &r->stop, &status, err,
                           sizeof(err));
        if (status == 410)
            w.gone = true;
        if (w.gone) {
            log_info("kubevirt %s: resourceVersion %s is gone (410): listing again",
                     r->cfg.name, w.rv);
            continue;
        }
        if ((rc < 0 || w.failed) && !r->stop) {
            w.failed = false;
            log_warn("kubevirt %s: %s; resuming from resourceVersion %s", r->cfg.name, err,
                     w.rv);
            pause_ms(r, backoff);
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        } else {
            backoff = 500;
        }
    }
    return NULL;
}

/* On the loop: what the watch thread saw. */
static void on_notes(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)events;
    struct kv_runner *r = arg;
    struct note *n;
    while (read(fd, &n, sizeof(n)) == (ssize_t)sizeof(n)) {
        const char *name = n->kind == NOTE_SYNCED ? NULL : vmi_name(n->obj);
        struct runner_vm *vm = name ? find_vm(r, name) : NULL;
        if (n->kind == NOTE_OBJECT && vm)
            apply(vm, n->obj);
        else if (n->kind == NOTE_DELETED && vm)
            gone(vm);
        else if (n->kind == NOTE_SYNCED) {
            /* a VM made before the list was asked for and not in it has gone */
            for (struct runner_vm *v = r->vms; v; v = v->next) {
                bool listed = false;
                size_t i;
                json_t *s;
                json_array_foreach(n->obj, i, s) listed |= !strcmp(json_string_value(s),
                                                                   v->name);
                if (!listed && v->created && v->created_ms && v->created_ms < n->list_ms)
                    gone(v);
            }
        }
        json_decref(n->obj);
        free(n);
    }
}

/* ---- entry points ----------------------------------------------------------------- */

static void forget(struct runner_vm *vm);

static struct runner_vm *new_vm(struct kv_runner *r, const char *session_id,
                                const struct runner_events *ev)
{
    struct runner_vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return NULL;
    vm->r = r;
    vm->ev = *ev;
    vm->last_state = -1;
    snprintf(vm->session_id, sizeof(vm->session_id), "%s", session_id);
    kv_vmi_name(session_id, vm->name, sizeof(vm->name));
    snprintf(vm->ns, sizeof(vm->ns), "%s", r->cfg.ns);
    vm->next = r->vms;
    r->vms = vm;
    return vm;
}

static struct runner_vm *kv_plan(struct runner *rr, const struct runner_launch *l,
                                 const struct runner_events *ev, char *err, size_t errsz)
{
    struct kv_runner *r = kv_of(rr);
    struct kv_objects o;
    if (kv_vmi_build(&r->cfg, l, &o, err, errsz) < 0)
        return NULL;
    struct runner_vm *vm = new_vm(r, l->session_id, ev);
    if (!vm) {
        kv_objects_free(&o);
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    vm->obj = o;
    return vm;
}

/* On a worker: the Secret, the VMI, then the Secret's owner (so the cluster removes
 * it with the VMI even when qdesk never comes back). Touches only vm's own fields. */
static int kv_prepare(struct runner_vm *vm, char *err, size_t errsz)
{
    struct k8s *k = vm->r->k8s;
    char path[512], why[600];
    struct k8s_response resp;
    if (vm->obj.secret) {
        secret_path(vm->ns, NULL, path, sizeof(path));
        if (k8s_request(k, "POST", path, vm->obj.secret, NULL, &resp, err, errsz) < 0)
            return -1;
        if (resp.status != 201) {
            k8s_error(&resp, why, sizeof(why));
            snprintf(err, errsz, "the cluster refused the cloud-init Secret: %s", why);
            k8s_response_free(&resp);
            return -1;
        }
        k8s_response_free(&resp);
    }
    vmi_path(vm->ns, NULL, path, sizeof(path));
    int rc = k8s_request(k, "POST", path, vm->obj.vmi, NULL, &resp, err, errsz);
    if (rc == 0 && resp.status != 201) {
        k8s_error(&resp, why, sizeof(why));
        snprintf(err, errsz, "the cluster refused the VMI: %s", why);
        rc = -1;
    }
    if (rc == 0) {
        const char *uid = json_string_value(
            json_object_get(json_object_get(resp.body, "metadata"), "uid"));
        snprintf(vm->uid, sizeof(vm->uid), "%s", uid ? uid : "");
    }
    k8s_response_free(&resp);
    if (vm->obj.secret) {
        secret_path(vm->ns, vm->name, path, sizeof(path));
        if (rc < 0) {
            if (k8s_request(k, "DELETE", path, NULL, NULL, &resp, why, sizeof(why)) == 0)
                k8s_response_free(&resp);
        } else {
            json_t *patch = json_pack(
                "{s:{s:[{s:s, s:s, s:s, s:s}]}}", "metadata", "ownerReferences",
                "apiVersion", "kubevirt.io/v1", "kind", "VirtualMachineInstance", "name",
                vm->name, "uid", vm->uid);
            if (k8s_request(k, "PATCH", path, patch, "application/merge-patch+json",
                            &resp, why, sizeof(why)) == 0) {
                if (resp.status != 200)
                    k8s_error(&resp, why, sizeof(why));
                k8s_response_free(&resp);
            }
            json_decref(patch);
        }
    }
    return rc;
}

static int kv_start(struct runner_vm *vm, char *err, size_t errsz)
{
    (void)err;
    (void)errsz;
    vm->created = true;
    vm->created_ms = loop_now();
    vm->started = true;
    kv_objects_free(&vm->obj);
    report(vm, RUNNER_STARTING, "submitted to the cluster");
    if (vm->seen)
        apply(vm, vm->seen);
    return 0;
}

static void kv_stop(struct runner_vm *vm, unsigned grace_s, bool hurry)
{
    if (vm->final || (vm->stopping && !hurry))
        return;
    vm->stopping = true;
    if (submit(vm->r, vm, delete_run, delete_done, hurry ? 0 : grace_s, NULL, NULL) < 0)
        log_warn("kubevirt %s: cannot queue the deletion of %s", vm->r->cfg.name,
                 vm->name);
}

static void kv_release(struct runner_vm *vm)
{
    if (!vm)
        return;
    struct kv_runner *r = vm->r;
    /* a VMI that failed, powered off (Succeeded) or never ran is still there */
    if (vm->created && !vm->vanished)
        submit(r, vm, delete_run, delete_done, 0, NULL, NULL);
    forget(vm);
}

/* Frees vm without touching the cluster. */
static void forget(struct runner_vm *vm)
{
    struct kv_runner *r = vm->r;
    for (struct runner_vm **p = &r->vms; *p; p = &(*p)->next)
        if (*p == vm) {
            *p = vm->next;
            break;
        }
    loop_timer_cancel(r->loop, vm->recheck);
    kv_objects_free(&vm->obj);
    json_decref(vm->seen);
    free(vm);
}

/* reattach: GET the VMI; its state (or its absence) is reported when it comes. */
static void get_run(void *arg)
{
    struct job *j = arg;
    char path[512];
    vmi_path(j->ns, j->name, path, sizeof(path));
    j->rc = k8s_request(j->r->k8s, "GET", path, NULL, NULL, &j->resp, j->err,
                        sizeof(j->err));
}

static void get_done(void *arg)
{
    struct job *j = arg;
    struct runner_vm *vm = find_vm(j->r, j->name);
    if (vm && j->rc == 0 && j->resp.status == 200)
        apply(vm, j->resp.body);
    else if (vm && j->rc == 0 && j->resp.status == 404)
        gone(vm);
    else if (vm)
        log_warn("kubevirt %s: cannot read %s: %s", j->r->cfg.name, j->name,
                 j->rc < 0 ? j->err : "the cluster refused");
    job_free(j);
}

static struct runner_vm *kv_reattach(struct runner *rr, const struct runner_placement *p,
                                     const struct runner_events *ev, char *why,
                                     size_t whysz)
{
    struct kv_runner *r = kv_of(rr);
    char ns[64], name[64], uid[64];
    if (sscanf(p->ref, "%63[^/]/%63s %63s", ns, name, uid) != 3 ||
        strncmp(name, "qdesk-", 6) != 0) {
        snprintf(why, whysz, "the stored placement '%s' is not a VMI", p->ref);
        return NULL;
    }
    struct runner_vm *vm = new_vm(r, name + 6, ev);
    if (!vm) {
        snprintf(why, whysz, "out of memory");
        return NULL;
    }
    snprintf(vm->ns, sizeof(vm->ns), "%s", ns);
    snprintf(vm->uid, sizeof(vm->uid), "%s", strcmp(uid, "-") ? uid : "");
    snprintf(vm->node, sizeof(vm->node), "%s", p->node);
    vm->created = vm->started = true;
    if (submit(r, vm, get_run, get_done, 0, NULL, NULL) < 0) {
        kv_release(vm);
        snprintf(why, whysz, "cannot queue a request");
        return NULL;
    }
    return vm;
}

/* Deletes the labelled VMIs (and their Secrets) no live session owns. */
static void sweep_now(struct kv_runner *r, json_t *names)
{
    size_t i;
    json_t *s;
    json_array_foreach(names, i, s)
    {
        const char *name = json_string_value(s);
        bool twice = false; /* a VMI and its Secret share the name */
        for (size_t k = 0; k < i && !twice; k++)
            twice = !strcmp(json_string_value(json_array_get(names, k)), name);
        if (twice || strncmp(name, "qdesk-", 6) != 0 || find_vm(r, name) ||
            r->live(name + 6, r->live_arg))
            continue;
        log_warn("kubevirt %s: removing %s/%s: no session owns it", r->cfg.name,
                 r->cfg.ns, name);
        struct runner_vm tmp = {.r = r};
        snprintf(tmp.name, sizeof(tmp.name), "%s", name);
        snprintf(tmp.ns, sizeof(tmp.ns), "%s", r->cfg.ns);
        submit(r, &tmp, delete_run, delete_done, 0, NULL, NULL);
    }
}

/* The labelled VMIs now, for the sweep. */
static void sweep_run(void *arg)
{
    struct job *j = arg;
    char path[512];
    snprintf(path, sizeof(path),
             "/apis/kubevirt.io/v1/namespaces/%s/virtualmachineinstances?labelSelector=%s",
             j->ns, SELECTOR);
    j->rc = k8s_request(j->r->k8s, "GET", path, NULL, NULL, &j->resp, j->err,
                        sizeof(j->err));
    if (j->rc == 0 && j->resp.status != 200) {
        k8s_error(&j->resp, j->err, sizeof(j->err));
        j->rc = -1;
    }
    /* a Secret whose VMI was never made (qdesk died between the two) */
    secret_path(j->ns, NULL, path, sizeof(path));
    snprintf(path + strlen(path), sizeof(path) - strlen(path), "?labelSelector=%s",
             SELECTOR);
    char err[256];
    if (j->rc == 0 &&
        k8s_request(j->r->k8s, "GET", path, NULL, NULL, &j->resp2, err, sizeof(err)) < 0)
        memset(&j->resp2, 0, sizeof(j->resp2));
}

static void sweep_done(void *arg)
{
    struct job *j = arg;
    struct kv_runner *r = j->r;
    if (j->rc < 0) {
        log_warn("kubevirt %s: listing VMIs to sweep: %s", r->cfg.name, j->err);
    } else {
        json_t *names = json_array();
        size_t i;
        json_t *item;
        for (int k = 0; k < 2; k++) {
            json_t *items = json_object_get((k ? &j->resp2 : &j->resp)->body, "items");
            json_array_foreach(items, i, item)
            {
                if (vmi_name(item))
                    json_array_append_new(names, json_string(vmi_name(item)));
            }
        }
        sweep_now(r, names);
        json_decref(names);
    }
    job_free(j);
}

static void kv_sweep(struct runner *rr, bool (*live)(const char *session_id, void *arg),
                     void *arg)
{
    struct kv_runner *r = kv_of(rr);
    r->live = live;
    r->live_arg = arg;
    struct runner_vm tmp = {.r = r};
    snprintf(tmp.ns, sizeof(tmp.ns), "%s", r->cfg.ns);
    if (submit(r, &tmp, sweep_run, sweep_done, 0, NULL, NULL) < 0)
        log_warn("kubevirt %s: cannot queue the sweep", r->cfg.name);
}

/* ---- display ------------------------------------------------------------------------- */

static void *bridge_main(void *arg)
{
    struct bridge *b = arg;
    char err[300];
    if (k8s_ws_bridge(b->ws, b->fd, &b->cancel, err, sizeof(err)) < 0)
        log_info("display of %s ended: %s", b->name, err);
    k8s_ws_close(b->ws);
    b->ws = NULL;
    close(b->fd);
    b->done = true;
    return NULL;
}

/* Joins the bridges that have ended (all of them, cancelled, when all is true). */
static void reap_bridges(struct kv_runner *r, bool all)
{
    pthread_mutex_lock(&r->lock);
    for (struct bridge **p = &r->bridges; *p;) {
        struct bridge *b = *p;
        if (all)
            b->cancel = true;
        if (all || b->done) {
            *p = b->next;
            pthread_join(b->thread, NULL);
            free(b);
        } else {
            p = &b->next;
        }
    }
    pthread_mutex_unlock(&r->lock);
}

static void ws_run(void *arg)
{
    struct job *j = arg;
    char path[512];
    snprintf(path, sizeof(path),
             "/apis/subresources.kubevirt.io/v1/namespaces/%s/virtualmachineinstances/%s/vnc",
             j->ns, j->name);
    j->ws = k8s_ws_open(j->r->k8s, path, "plain.kubevirt.io", j->err, sizeof(j->err));
}

static void ws_done(void *arg)
{
    struct job *j = arg;
    struct kv_runner *r = j->r;
    struct runner_vm *vm = find_vm(r, j->name);
    runner_display_cb cb = (runner_display_cb)j->cb;
    int sv[2] = {-1, -1};
    struct bridge *b = NULL;
    reap_bridges(r, false);
    if (!vm) { /* released meanwhile: nobody to hand it to (job_free closes it) */
    } else if (!j->ws) {
        cb(vm, -1, j->err, j->cb_arg);
    } else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
               !(b = calloc(1, sizeof(*b)))) {
        if (sv[0] >= 0) {
            close(sv[0]);
            close(sv[1]);
        }
        cb(vm, -1, "out of resources for the display bridge", j->cb_arg);
    } else {
        *b = (struct bridge){.ws = j->ws, .fd = sv[1]};
        j->ws = NULL; /* the bridge has it */
        snprintf(b->name, sizeof(b->name), "%s", j->name);
        pthread_mutex_lock(&r->lock);
        if (pthread_create(&b->thread, NULL, bridge_main, b) != 0) {
            pthread_mutex_unlock(&r->lock);
            k8s_ws_close(b->ws);
            close(sv[0]);
            close(sv[1]);
            free(b);
            cb(vm, -1, "cannot start the display bridge", j->cb_arg);
        } else {
            b->next = r->bridges;
            r->bridges = b;
            pthread_mutex_unlock(&r->lock);
            cb(vm, sv[0], NULL, j->cb_arg);
        }
    }
    job_free(j);
}

/* Queues a job that needs the VM running (display, screenshot). */
static int submit_running(struct runner_vm *vm, void (*run)(void *), void (*done)(void *),
                          void *cb, void *arg, const char *what, char *err, size_t errsz)
{
    if (vm->last_state != RUNNER_RUNNING || vm->final) {
        snprintf(err, errsz, "the VMI %s is not running", vm->name);
        return -1;
    }
    if (submit(vm->r, vm, run, done, 0, cb, arg) < 0) {
        snprintf(err, errsz, "cannot queue the %s", what);
        return -1;
    }
    return 0;
}

static int kv_open_display(struct runner_vm *vm, runner_display_cb cb, void *arg, char *err,
                           size_t errsz)
{
    return submit_running(vm, ws_run, ws_done, (void *)cb, arg, "display connection", err,
                          errsz);
}

static void shot_run(void *arg)
{
    struct job *j = arg;
    char path[512];
    snprintf(path, sizeof(path),
             "/apis/subresources.kubevirt.io/v1/namespaces/%s/virtualmachineinstances/%s/"
             "vnc/screenshot?moveCursor=false",
             j->ns, j->name);
    j->rc = k8s_request(j->r->k8s, "GET", path, NULL, NULL, &j->resp, j->err,
                        sizeof(j->err));
    if (j->rc == 0 && (j->resp.status != 200 || j->resp.len < 8 ||
                       memcmp(j->resp.raw, "\x89PNG", 4) != 0)) {
        if (j->resp.status == 200)
            snprintf(j->err, sizeof(j->err), "the cluster's screenshot is not a PNG");
        else
            k8s_error(&j->resp, j->err, sizeof(j->err));
        j->rc = -1;
    }
}

static void shot_done(void *arg)
{
    struct job *j = arg;
    struct runner_vm *vm = find_vm(j->r, j->name);
    runner_screenshot_cb cb = (runner_screenshot_cb)j->cb;
    if (vm && j->rc == 0) {
        cb(vm, j->resp.raw, j->resp.len, NULL, j->cb_arg);
        j->resp.raw = NULL; /* the callee owns it */
    } else if (vm) {
        cb(vm, NULL, 0, j->err, j->cb_arg);
    }
    job_free(j);
}

static int kv_screenshot(struct runner_vm *vm, runner_screenshot_cb cb, void *arg,
                         char *err, size_t errsz)
{
    return submit_running(vm, shot_run, shot_done, (void *)cb, arg, "screenshot", err,
                          errsz);
}

/* ---- capacity: the namespace's ResourceQuota -------------------------------------------- */

int kubevirt_quantity_milli(const char *q, uint64_t *out)
{
    char *end;
    double v = strtod(q, &end);
    if (end == q || !(v >= 0 && v < 1e15))
        return -1;
    double mult = 1000;
    if (!strcmp(end, "m"))
        mult = 1;
    else if (end[0])
        return -1;
    *out = (uint64_t)(v * mult + 0.5);
    return 0;
}

int kubevirt_quantity_bytes(const char *q, uint64_t *out)
{
    static const char *const suffix[] = {"Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
                                         "k",  "M",  "G",  "T",  "P",  "E", ""};
    static const double mult[] = {0x1p10, 0x1p20, 0x1p30, 0x1p40, 0x1p50, 0x1p60,
                                  1e3,    1e6,    1e9,    1e12,   1e15,   1e18, 1};
    char *end;
    double v = strtod(q, &end);
    if (end == q || !(v >= 0 && v < 1e19))
        return -1;
    for (size_t i = 0; i < sizeof(mult) / sizeof(mult[0]); i++)
        if (!strcmp(end, suffix[i])) {
            double b = v * mult[i];
            if (b > 1.8e19)
                return -1;
            *out = (uint64_t)(b + 0.5);
            return 0;
        }
    return -1;
}

static void quota_run(void *arg)
{
    struct job *j = arg;
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/resourcequotas", j->ns);
    j->rc = k8s_request(j->r->k8s, "GET", path, NULL, NULL, &j->resp, j->err,
                        sizeof(j->err));
}

/* The tightest room left over every quota: hard minus used of requests.cpu (or cpu)
 * and requests.memory (or memory). */
static void quota_done(void *arg);
static void quota_tick(struct loop *l, void *arg)
{
    (void)l;
    struct kv_runner *r = arg;
    r->quota_timer = NULL;
    struct runner_vm tmp = {.r = r};
    snprintf(tmp.ns, sizeof(tmp.ns), "%s", r->cfg.ns);
    if (submit(r, &tmp, quota_run, quota_done, 0, NULL, NULL) < 0)
        r->quota_timer = loop_timer_add(r->loop, QUOTA_EVERY_MS, quota_tick, r);
}

static bool room(json_t *st, const char *a, const char *b, bool cpu, uint64_t *left)
{
    json_t *hard = json_object_get(st, "hard"), *used = json_object_get(st, "used");
    const char *key = json_object_get(hard, a) ? a : json_object_get(hard, b) ? b : NULL;
    uint64_t h, u = 0;
    if (!key)
        return false;
    const char *hs = json_string_value(json_object_get(hard, key));
    const char *us = json_string_value(json_object_get(used, key));
    int (*parse)(const char *, uint64_t *) =
        cpu ? kubevirt_quantity_milli : kubevirt_quantity_bytes;
    if (!hs || parse(hs, &h) < 0 || (us && parse(us, &u) < 0))
        return false;
    *left = h > u ? h - u : 0;
    return true;
}

static void quota_done(void *arg)
{
    struct job *j = arg;
    struct kv_runner *r = j->r;
    struct runner_capacity c = {0};
    if (j->rc == 0 && j->resp.status == 200) {
        uint64_t cpu = UINT64_MAX, mem = UINT64_MAX, left;
        size_t i;
        json_t *q;
        json_array_foreach(json_object_get(j->resp.body, "items"), i, q)
        {
            json_t *st = json_object_get(q, "status");
            if (room(st, "requests.cpu", "cpu", true, &left) && left < cpu)
                cpu = left;
            if (room(st, "requests.memory", "memory", false, &left) && left < mem)
                mem = left;
        }
        c.known = cpu != UINT64_MAX || mem != UINT64_MAX;
        c.cpus_free = cpu == UINT64_MAX ? UINT32_MAX : (unsigned)(cpu / 1000);
        c.memory_free_mb = mem == UINT64_MAX ? UINT64_MAX : mem >> 20;
        if (c.known)
            snprintf(c.why, sizeof(c.why), "the ResourceQuota of namespace %s",
                     r->cfg.ns);
    } else if (j->rc < 0 || j->resp.status != 403) {
        log_warn("kubevirt %s: reading the namespace's quota: %s", r->cfg.name,
                 j->rc < 0 ? j->err : "refused");
    }
    r->cap = c;
    job_free(j);
    r->quota_timer = loop_timer_add(r->loop, QUOTA_EVERY_MS, quota_tick, r);
}

static int kv_capacity(struct runner *rr, struct runner_capacity *out, char *err,
                       size_t errsz)
{
    (void)err;
    (void)errsz;
    *out = kv_of(rr)->cap;
    return 0;
}

static void kv_placement(const struct runner_vm *vm, struct runner_placement *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->runner, sizeof(out->runner), "%s", vm->r->base.name);
    snprintf(out->ref, sizeof(out->ref), "%s/%s %s", vm->ns, vm->name,
             vm->uid[0] ? vm->uid : "-");
    snprintf(out->node, sizeof(out->node), "%s", vm->node);
}

static void kv_free(struct runner *rr)
{
    struct kv_runner *r = kv_of(rr);
    if (!r)
        return;
    r->stop = true;
    if (r->wake[1] >= 0 && write(r->wake[1], "x", 1) < 0)
        log_warn("kubevirt %s: cannot wake the watch", r->cfg.name);
    if (r->watching)
        pthread_join(r->watcher, NULL);
    reap_bridges(r, true);
    workq_free(r->work); /* runs what is queued; their done callbacks never come */
    while (r->jobs)
        job_free(r->jobs);
    if (r->notes[0] >= 0) {
        loop_del_fd(r->loop, r->notes[0]);
        struct note *n;
        while (read(r->notes[0], &n, sizeof(n)) == (ssize_t)sizeof(n)) {
            json_decref(n->obj);
            free(n);
        }
    }
    for (int i = 0; i < 2; i++) {
        if (r->notes[i] >= 0)
            close(r->notes[i]);
        if (r->wake[i] >= 0)
            close(r->wake[i]);
    }
    while (r->vms)
        forget(r->vms); /* the VMIs stay for the next start of the service */
    loop_timer_cancel(r->loop, r->quota_timer);
    k8s_free(r->k8s);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

const struct runner_ops kubevirt_runner_ops = {
    .kind = "kubevirt",
    .caps = RUNNER_CAP_SCREENSHOT,
    .plan = kv_plan,
    .prepare = kv_prepare,
    .start = kv_start,
    .stop = kv_stop,
    .release = kv_release,
    .reattach = kv_reattach,
    .sweep = kv_sweep,
    .open_display = kv_open_display,
    .screenshot = kv_screenshot,
    .capacity = kv_capacity,
    .placement = kv_placement,
    .free = kv_free,
};

struct runner *kubevirt_runner_new(const struct config *cfg,
                                   const struct config_named *sec, struct loop *loop,
                                   char *err, size_t errsz)
{
    struct kv_runner *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    r->notes[0] = r->notes[1] = r->wake[0] = r->wake[1] = -1;
    pthread_mutex_init(&r->lock, NULL);
    r->base.ops = &kubevirt_runner_ops;
    r->base.priv = r;
    r->loop = loop;
    snprintf(r->base.name, sizeof(r->base.name), "%s", sec->name);
    if (kv_config_parse(sec, cfg->stop_grace_s, &r->cfg, err, errsz) < 0)
        goto fail;
    char dir[PATH_MAX + 80];
    snprintf(dir, sizeof(dir), "%s/runner-%s", cfg->state, sec->name);
    int rc = fs_mkdir_p(dir, 0700);
    if (rc < 0) {
        snprintf(err, errsz, "cannot create %s: %s", dir, strerror(-rc));
        goto fail;
    }
    struct k8s_opts o = {.kubeconfig = r->cfg.kubeconfig,
                         .context = r->cfg.context,
                         .private_dir = dir};
    char why[600];
    if (!(r->k8s = k8s_new(&o, why, sizeof(why)))) {
        snprintf(err, errsz, "%s:%d: [runner %s]: %s", sec->file, sec->line, sec->name,
                 why);
        goto fail;
    }
    if (!r->cfg.ns[0])
        snprintf(r->cfg.ns, sizeof(r->cfg.ns), "%s", k8s_namespace(r->k8s));
    if (pipe2(r->notes, O_CLOEXEC) < 0 || pipe2(r->wake, O_CLOEXEC) < 0 ||
        fcntl(r->notes[0], F_SETFL, O_NONBLOCK) < 0 ||
        loop_add_fd(loop, r->notes[0], EPOLLIN, on_notes, r) < 0 ||
        !(r->work = workq_new(loop, 2))) {
        snprintf(err, errsz, "[runner %s]: cannot set up its threads: %s", sec->name,
                 strerror(errno));
        goto fail;
    }
    if (pthread_create(&r->watcher, NULL, watch_main, r) != 0) {
        snprintf(err, errsz, "[runner %s]: cannot start its watch", sec->name);
        goto fail;
    }
    r->watching = true;
    quota_tick(loop, r);
    log_info("kubevirt %s: %s, namespace %s", sec->name, k8s_server(r->k8s), r->cfg.ns);
    return &r->base;
fail:
    kv_free(&r->base);
    return NULL;
}

#include "web/api.h"

#include "catalog/catalog.h"
#include "host/load.h"
#include "qemu/cmdline.h"
#include "session/admission.h"
#include "session/alloc.h"
#include "session/session.h"
#include "session/store.h"
#include "util/fs.h"
#include "util/loop.h"
#include "web/viewer.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define SERIAL_TAIL (1u << 20) /* the serial endpoint returns at most the last MiB */

/* A session the caller may see: their own, or any for an admin. */
static struct session *visible(struct http_request *r, const char *id)
{
    struct session *s = sessions_find(r->web->sessions, id);
    if (s && (r->who.admin || !strcmp(s->owner, r->who.user)))
        return s;
    return NULL;
}

static enum MHD_Result not_found(struct http_request *r, const char *id)
{
    return http_reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no session '%s'", id);
}

json_t *api_session_json(struct http_request *r, const struct session *s)
{
    char base[512], url[700], view[700], qr[720];
    http_base_url(r, base, sizeof(base));
    snprintf(url, sizeof(url), "%s/s/%s", base, s->control_token);
    snprintf(view, sizeof(view), "%s/s/%s", base, s->view_token);
    snprintf(qr, sizeof(qr), "%s/qr.svg", url);
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:I, s:b, s:b, s:s, s:i}", "id",
                  s->id, "state", session_state_name(s->state), "machine", s->machine,
                  "owner", s->owner, "cpus", (int)s->cpus, "memory_mb",
                  (json_int_t)s->memory_mb, "created_at", (json_int_t)s->created_at,
                  "expires_at", (json_int_t)s->expires_at, "oneshot", s->oneshot,
                  "persistent", s->persistent, "gpu", s->gpu, "viewers", (int)s->viewers);
    if (session_state_live(s->state)) {
        json_object_set_new(o, "url", json_string(url));
        json_object_set_new(o, "view_url", json_string(view));
        json_object_set_new(o, "qr_svg_url", json_string(qr));
    } else {
        json_object_set_new(o, "ended_at", json_integer(s->ended_at));
    }
    if (s->error[0])
        json_object_set_new(o, "error", json_string(s->error));
    if (s->warning[0])
        json_object_set_new(o, "warning", json_string(s->warning));
    return o;
}

static unsigned refusal_status(enum session_refusal kind)
{
    switch (kind) {
    case SESSION_OK:
        return MHD_HTTP_OK;
    case SESSION_BAD_REQUEST:
        return MHD_HTTP_BAD_REQUEST;
    case SESSION_NOT_FOUND:
        return MHD_HTTP_NOT_FOUND;
    case SESSION_FORBIDDEN:
        return MHD_HTTP_FORBIDDEN;
    case SESSION_BUSY:
        return MHD_HTTP_CONFLICT;
    case SESSION_FULL:
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    case SESSION_INTERNAL:
        break;
    }
    return MHD_HTTP_INTERNAL_SERVER_ERROR;
}

enum MHD_Result api_healthz(struct http_request *r)
{
    /* the loop answers (or this would not run); what else a session needs: */
    const char *problem = NULL;
    if (store_schema_version(r->web->store) < 1)
        problem = "the state database cannot be read";
    else if (access(r->web->cfg->machines, R_OK | X_OK) < 0)
        problem = "the machine catalogue directory cannot be read";
    if (problem)
        return http_reply_json(
            r, MHD_HTTP_SERVICE_UNAVAILABLE,
            json_pack("{s:s, s:s}", "status", "failing", "problem", problem));
    return http_reply_json(r, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
}

enum MHD_Result api_machines(struct http_request *r)
{
    const struct catalog *c = sessions_catalog(r->web->sessions);
    unsigned host_kinds = alloc_gpu_kinds(r->web->cfg);
    json_t *list = json_array();
    for (size_t i = 0; c && i < c->n; i++) {
        if (c->machines[i].refused[0] && !r->who.admin)
            continue;
        /* offer only the GPU kinds this host can also give */
        struct catalog_machine m = c->machines[i];
        m.gpus &= host_kinds;
        json_array_append_new(list, catalog_machine_json(&m));
    }
    return http_reply_json(r, MHD_HTTP_OK, list);
}

struct usage_ctx {
    const char *user;
    unsigned cpus;
    uint64_t memory_mb;
};

static void add_usage(struct session *s, void *arg)
{
    struct usage_ctx *u = arg;
    if (session_state_live(s->state) && !strcmp(s->owner, u->user)) {
        u->cpus += s->cpus;
        u->memory_mb += s->memory_mb;
    }
}

/* What a request may ask for: the bounds and defaults of each field, and what the
 * caller's sessions leave of their share of the host. */
static json_t *bounds_json(struct http_request *r)
{
    const struct config *cfg = r->web->cfg;
    const struct spec_host *h = sessions_host(r->web->sessions);
    uint64_t max_mem = cfg->max_memory_mb && cfg->max_memory_mb < h->memory_mb
                           ? cfg->max_memory_mb
                           : h->memory_mb;
    struct usage_ctx u = {.user = r->who.user};
    sessions_foreach(r->web->sessions, add_usage, &u);
    double cpu_share = cfg->user_cpu_fraction * h->cores;
    double mem_share = cfg->user_memory_fraction * (double)h->memory_mb;
    return json_pack(
        "{s:{s:i, s:i, s:i}, s:{s:I, s:I, s:I}, s:{s:I, s:I, s:I}, s:{s:I, s:I},"
        " s:{s:f, s:f}}",
        "cpus", "min", 1, "max", (int)h->cores, "default", (int)cfg->default_cpus,
        "memory_mb", "min", (json_int_t)cfg->min_memory_mb, "max", (json_int_t)max_mem,
        "default", (json_int_t)cfg->default_memory_mb, "lifetime_s", "min",
        (json_int_t)cfg->min_lifetime_s, "max", (json_int_t)cfg->max_lifetime_s,
        "default", (json_int_t)cfg->default_lifetime_s, "disk_gb", "max",
        (json_int_t)cfg->max_disk_gb, "default", (json_int_t)cfg->default_disk_gb,
        "yours_left", "cpus", cpu_share - u.cpus, "memory_mb",
        mem_share - (double)u.memory_mb);
}

enum MHD_Result api_host(struct http_request *r)
{
    const struct spec_host *h = sessions_host(r->web->sessions);
    const struct config *cfg = r->web->cfg;
    struct sessions_stats st;
    double load[3] = {-1, -1, -1};
    sessions_get_stats(r->web->sessions, &st);
    load_average(cfg->sysroot, load);
    json_t *states = json_object();
    for (int i = 0; i < SESSION_STATES; i++)
        json_object_set_new(states, session_state_name((enum session_state)i),
                            json_integer(st.by_state[i]));
    bool kvm =
        strcmp(h->accel, "kvm") == 0 || (strcmp(h->accel, "auto") == 0 && h->kvm_usable);
    json_t *o = json_pack(
        "{s:i, s:I, s:I, s:[f,f,f], s:{s:s, s:s}, s:o, s:i, s:{s:I, s:I, s:f, s:f, s:f}}",
        "cores", (int)h->cores, "memory_mb", (json_int_t)h->memory_mb, "mem_available_mb",
        (json_int_t)load_meminfo_mb(cfg->sysroot, "MemAvailable"), "load", load[0],
        load[1], load[2], "accel", "mode", kvm ? "kvm" : "tcg", "why",
        kvm ? "" : h->kvm_why, "sessions", states, "viewers", (int)st.viewers, "limits",
        "max_sessions", (json_int_t)cfg->max_sessions, "max_sessions_per_user",
        (json_int_t)cfg->max_sessions_per_user, "user_cpu_fraction",
        cfg->user_cpu_fraction, "user_memory_fraction", cfg->user_memory_fraction,
        "max_load_per_core", cfg->max_load_per_core);
    json_object_update_new(o, alloc_inventory_json(r->web->store, cfg, r->who.admin));
    json_object_set_new(o, "bounds", bounds_json(r));
    return http_reply_json(r, MHD_HTTP_OK, o);
}

struct list_ctx {
    struct http_request *r;
    json_t *list;
};

static void list_one(struct session *s, void *arg)
{
    struct list_ctx *c = arg;
    if (c->r->who.admin || !strcmp(s->owner, c->r->who.user))
        json_array_append_new(c->list, api_session_json(c->r, s));
}

enum MHD_Result api_sessions_list(struct http_request *r)
{
    struct list_ctx c = {r, json_array()};
    sessions_foreach(r->web->sessions, list_one, &c);
    return http_reply_json(r, MHD_HTTP_OK, c.list);
}

/* Reads one JSON field into the request through the same checks the command line
 * uses. Returns 0, or -1 with err naming the field. */
static int set_field(struct spec_request *req, const char *key, json_t *v, char *err,
                     size_t errsz)
{
    static const char *const numbers[] = {"cpus", "memory_mb", "lifetime_s", "disk_gb"};
    static const char *const strings[] = {"machine", "gpu", "net", "script"};
    static const char *const lists[] = {"usb", "mounts"};
    char text[64];
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
        if (strcmp(key, numbers[i]))
            continue;
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            snprintf(err, errsz, "%s: must be a whole number", key);
            return -1;
        }
        snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return spec_request_set(req, key, text, err, errsz);
    }
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        if (strcmp(key, strings[i]))
            continue;
        if (!json_is_string(v)) {
            snprintf(err, errsz, "%s: must be a string", key);
            return -1;
        }
        return spec_request_set(req, key, json_string_value(v), err, errsz);
    }
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        if (strcmp(key, lists[i]))
            continue;
        size_t j;
        json_t *item;
        if (!json_is_array(v)) {
            snprintf(err, errsz, "%s: must be a list of strings", key);
            return -1;
        }
        json_array_foreach(v, j, item)
        {
            if (!json_is_string(item)) {
                snprintf(err, errsz, "%s: must be a list of strings", key);
                return -1;
            }
            if (spec_request_set(req, key, json_string_value(item), err, errsz) < 0)
                return -1;
        }
        return 0;
    }
    if (!strcmp(key, "oneshot") || !strcmp(key, "persistent")) {
        if (!json_is_boolean(v)) {
            snprintf(err, errsz, "%s: must be true or false", key);
            return -1;
        }
        *(key[0] == 'o' ? &req->oneshot : &req->persistent) = json_is_true(v);
        return 0;
    }
    snprintf(err, errsz,
             "'%s' is not a session field; use machine, cpus, memory_mb, lifetime_s, "
             "disk_gb, gpu, usb, net, mounts, script, oneshot or persistent",
             key);
    return -1;
}

/* The outcome of a create: 201 with the session, or the reason it did not start. */
static void created(struct session *s, const struct session_error *e, void *arg)
{
    struct http_request *r = arg;
    if (!s) {
        http_resume(r, refusal_status(e->kind),
                    http_json_response(json_pack("{s:{s:s, s:s}}", "error", "code",
                                                 e->code, "message", e->message)));
        return;
    }
    struct MHD_Response *resp = http_json_response(api_session_json(r, s));
    char location[64];
    snprintf(location, sizeof(location), "/api/v1/sessions/%s", s->id);
    if (resp)
        http_add_header(resp, "Location", location);
    http_resume(r, MHD_HTTP_CREATED, resp);
}

enum MHD_Result api_session_create(struct http_request *r)
{
    json_error_t jerr;
    json_t *body = r->body ? json_loads(r->body, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!json_is_object(body)) {
        json_decref(body);
        return http_reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_json",
                                "the body must be a JSON object such as "
                                "{\"machine\": \"demo\"}");
    }
    struct spec_request req = {0};
    char err[1024];
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        if (set_field(&req, key, v, err, sizeof(err)) < 0) {
            json_decref(body);
            return http_reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_field", "%s", err);
        }
    }
    json_decref(body);
    if (!req.machine[0])
        return http_reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_field",
                                "machine: required (see GET /api/v1/machines)");
    struct session_error e = {0};
    if (sessions_create(r->web->sessions, r->who.user, &req, created, r, &e) < 0)
        return http_reply_error(r, refusal_status(e.kind), e.code, "%s", e.message);
    return http_suspend(r); /* until its disks are ready and QEMU is spawned */
}

enum MHD_Result api_sessions_stop_all(struct http_request *r)
{
    int n = sessions_stop_all(r->web->sessions, "an administrator stopped all sessions");
    return http_reply_json(r, MHD_HTTP_OK, json_pack("{s:i}", "stopping", n));
}

enum MHD_Result api_session_get(struct http_request *r)
{
    struct session *s = visible(r, r->args[0]);
    if (!s)
        return not_found(r, r->args[0]);
    return http_reply_json(r, MHD_HTTP_OK, api_session_json(r, s));
}

enum MHD_Result api_session_stop(struct http_request *r)
{
    struct session *s = visible(r, r->args[0]);
    if (!s)
        return not_found(r, r->args[0]);
    char why[128];
    snprintf(why, sizeof(why), "%s asked", r->who.user);
    sessions_stop(r->web->sessions, s, why);
    return http_reply_json(r,
                           session_state_live(s->state) ? MHD_HTTP_ACCEPTED : MHD_HTTP_OK,
                           api_session_json(r, s));
}

enum MHD_Result api_session_extend(struct http_request *r)
{
    struct session *s = visible(r, r->args[0]);
    if (!s)
        return not_found(r, r->args[0]);
    json_error_t jerr;
    json_t *body = r->body ? json_loads(r->body, 0, &jerr) : NULL;
    json_t *sec = json_object_get(body, "seconds");
    json_int_t n = json_is_integer(sec) ? json_integer_value(sec) : -1;
    json_decref(body);
    if (n <= 0)
        return http_reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_field",
                                "seconds: send {\"seconds\": N} with N at least 1");
    struct session_error e = {0};
    if (sessions_extend(r->web->sessions, s, (uint64_t)n, &e) < 0)
        return http_reply_error(r, refusal_status(e.kind), e.code, "%s", e.message);
    return http_reply_json(r, MHD_HTTP_OK, api_session_json(r, s));
}

enum MHD_Result api_session_serial(struct http_request *r)
{
    struct session *s = visible(r, r->args[0]);
    if (!s)
        return not_found(r, r->args[0]);
    if (!session_state_live(s->state))
        return http_reply_error(r, MHD_HTTP_GONE, "ended",
                                "session %s has ended; its console log went with it",
                                s->id);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/%s", s->rundir, RUNDIR_SERIAL);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return http_reply_data(r, MHD_HTTP_OK, "text/plain; charset=utf-8", "", 0);
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > (off_t)SERIAL_TAIL ? size - (off_t)SERIAL_TAIL : 0;
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(
        (uint64_t)(size - from), fd, (uint64_t)from);
    if (!resp) {
        close(fd);
        return MHD_NO;
    }
    http_add_header(resp, "Content-Type", "text/plain; charset=utf-8");
    http_add_header(resp, "Cache-Control", "no-store");
    return http_reply(r, MHD_HTTP_OK, resp);
}

struct screenshot {
    struct http_request *r;
    char path[PATH_MAX + 64];
};

static void screenshot_taken(struct session *s, json_t *ret, const char *error, void *arg)
{
    (void)s;
    (void)ret;
    struct screenshot *j = arg;
    size_t len = 0;
    char *png = error ? NULL : fs_read_file(j->path, 64 << 20, &len);
    unlink(j->path);
    if (!png) {
        http_resume(j->r, MHD_HTTP_CONFLICT,
                    http_json_response(
                        json_pack("{s:{s:s, s:s}}", "error", "code", "no_screenshot",
                                  "message", error ? error : "QEMU wrote no picture")));
        return;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, png, MHD_RESPMEM_MUST_FREE);
    if (resp) {
        http_add_header(resp, "Content-Type", "image/png");
        http_add_header(resp, "Cache-Control", "no-store");
    } else {
        free(png);
    }
    http_resume(j->r, MHD_HTTP_OK, resp);
}

enum MHD_Result api_session_screenshot(struct http_request *r)
{
    struct session *s = visible(r, r->args[0]);
    if (!s)
        return not_found(r, r->args[0]);
    static unsigned seq;
    struct screenshot *j = calloc(1, sizeof(*j));
    if (!j)
        return MHD_NO;
    j->r = r;
    snprintf(j->path, sizeof(j->path), "%s/screenshot-%u.png", s->rundir, ++seq);
    json_t *args = json_pack("{s:s, s:s}", "filename", j->path, "format", "png");
    int rc =
        sessions_qmp(r->web->sessions, s, "screendump", args, 10000, screenshot_taken, j);
    json_decref(args);
    if (rc < 0) {
        free(j);
        return http_reply_error(r, MHD_HTTP_CONFLICT, "not_running", "session %s is %s",
                                s->id, session_state_name(s->state));
    }
    r->job = j;
    r->job_free = free;
    return http_suspend(r);
}

struct usb_job {
    struct http_request *r;
    char id[48];
};

static void usb_done(struct session *s, json_t *ret, const char *error, void *arg)
{
    (void)ret;
    struct usb_job *j = arg;
    if (error)
        http_resume(j->r, MHD_HTTP_CONFLICT,
                    http_json_response(json_pack("{s:{s:s, s:s}}", "error", "code",
                                                 "device_failed", "message", error)));
    else
        http_resume(j->r, MHD_HTTP_OK,
                    http_json_response(
                        json_pack("{s:s, s:s}", "session", s->id, "device", j->id)));
}

static enum MHD_Result usb_change(struct http_request *r, bool attach)
{
    struct session *s = visible(r, r->args[0]);
    if (!s)
        return not_found(r, r->args[0]);
    const char *device = attach ? NULL : r->args[1];
    json_t *body = NULL;
    if (attach) {
        json_error_t jerr;
        body = r->body ? json_loads(r->body, 0, &jerr) : NULL;
        device = json_string_value(json_object_get(body, "device"));
        if (!device) {
            json_decref(body);
            return http_reply_error(
                r, MHD_HTTP_BAD_REQUEST, "invalid_field",
                "device: send {\"device\": \"VID:PID\"} (or BUS-PORT, "
                "or " SPEC_USB_EMULATED ")");
        }
    }
    struct usb_job *j = calloc(1, sizeof(*j));
    if (!j) {
        json_decref(body);
        return MHD_NO;
    }
    j->r = r;
    snprintf(j->id, sizeof(j->id), "%s", device);
    struct session_error e = {0};
    int rc =
        attach ? sessions_usb_attach(r->web->sessions, s, device, j->id, usb_done, j, &e)
               : sessions_usb_detach(r->web->sessions, s, device, usb_done, j, &e);
    json_decref(body);
    if (rc < 0) {
        free(j);
        return http_reply_error(r, refusal_status(e.kind), e.code, "%s", e.message);
    }
    r->job = j;
    r->job_free = free;
    return http_suspend(r);
}

enum MHD_Result api_session_usb_attach(struct http_request *r)
{
    return usb_change(r, true);
}

enum MHD_Result api_session_usb_detach(struct http_request *r)
{
    return usb_change(r, false);
}

/* ---- metrics ----------------------------------------------------------------- */

static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return;
        }
        char *grown = realloc(*buf, *cap * 2 + (size_t)n);
        if (!grown)
            return;
        *buf = grown;
        *cap = *cap * 2 + (size_t)n;
    }
}

enum MHD_Result api_metrics(struct http_request *r)
{
    struct sessions_stats st;
    sessions_get_stats(r->web->sessions, &st);
    struct viewer_counters pc = {0};
    viewer_proxy_counters(r->web, &pc);
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    if (!buf)
        return MHD_NO;
    buf[0] = 0;
    append(&buf, &len, &cap,
           "# HELP qdesk_sessions Sessions by state.\n"
           "# TYPE qdesk_sessions gauge\n");
    for (int i = 0; i < SESSION_STATES; i++)
        append(&buf, &len, &cap, "qdesk_sessions{state=\"%s\"} %u\n",
               session_state_name((enum session_state)i), st.by_state[i]);
    append(&buf, &len, &cap,
           "# HELP qdesk_session_creates_total Sessions created.\n"
           "# TYPE qdesk_session_creates_total counter\n"
           "qdesk_session_creates_total %" PRIu64 "\n"
           "# HELP qdesk_session_failures_total Sessions that failed.\n"
           "# TYPE qdesk_session_failures_total counter\n"
           "qdesk_session_failures_total %" PRIu64 "\n"
           "# HELP qdesk_session_refusals_total Requests refused by admission control.\n"
           "# TYPE qdesk_session_refusals_total counter\n",
           st.creates, st.failures);
    for (int i = 1; i < ADMIT_REASONS; i++)
        append(&buf, &len, &cap,
               "qdesk_session_refusals_total{reason=\"%s\"} %" PRIu64 "\n",
               admission_reason_name((enum admission_reason)i), st.refusals[i]);
    append(&buf, &len, &cap,
           "# HELP qdesk_viewers Viewers connected now.\n"
           "# TYPE qdesk_viewers gauge\n"
           "qdesk_viewers %u\n"
           "# HELP qdesk_proxy_bytes_total Bytes the display proxy carried.\n"
           "# TYPE qdesk_proxy_bytes_total counter\n"
           "qdesk_proxy_bytes_total{direction=\"to_browser\"} %" PRIu64 "\n"
           "qdesk_proxy_bytes_total{direction=\"to_vm\"} %" PRIu64 "\n",
           st.viewers, pc.bytes_to_browser, pc.bytes_to_vm);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long size = 0, pages = 0;
    char statm[128];
    if (fs_read_line("/proc/self/statm", statm, sizeof(statm)) == 0 &&
        sscanf(statm, "%ld %ld", &size, &pages) != 2)
        pages = 0;
    append(&buf, &len, &cap,
           "# HELP process_cpu_seconds_total CPU time of the service.\n"
           "# TYPE process_cpu_seconds_total counter\n"
           "process_cpu_seconds_total %.3f\n"
           "# HELP process_resident_memory_bytes Resident memory of the service.\n"
           "# TYPE process_resident_memory_bytes gauge\n"
           "process_resident_memory_bytes %ld\n"
           "# HELP qdesk_uptime_seconds Seconds since the service started.\n"
           "# TYPE qdesk_uptime_seconds gauge\n"
           "qdesk_uptime_seconds %" PRIu64 "\n",
           (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6,
           pages * sysconf(_SC_PAGESIZE), (loop_now() - r->web->started_ms) / 1000);
    enum MHD_Result rc = http_reply_data(
        r, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", buf, len);
    free(buf);
    return rc;
}

#include "session/alloc.h"

#include "host/cpu.h"
#include "host/gpu.h"
#include "host/hostw.h"
#include "host/hugepages.h"
#include "host/inventory.h"
#include "host/usb.h"
#include "net/tap.h"
#include "qemu/cmdline.h"
#include "session/store.h"
#include "util/log.h"

#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kinds of claim in the store. */
#define K_GPU       "gpu"
#define K_USB       "usb"
#define K_HUGEPAGES "hugepages"
#define K_CPU       "cpu"
#define K_CPUPLAN   "cpuplan"

/* A mediated device's UUID follows from the session's name, so the same session
 * always names the same device and `qdesk args` is reproducible. */
static void mdev_uuid_for(const char *name, char *out, size_t outsz)
{
    unsigned char h[crypto_hash_sha256_BYTES];
    char seed[128];
    snprintf(seed, sizeof(seed), "qdesk-mdev:%s", name);
    crypto_hash_sha256(h, (const unsigned char *)seed, strlen(seed));
    h[6] = (h[6] & 0x0f) | 0x40; /* version 4 layout, variant 1 */
    h[8] = (h[8] & 0x3f) | 0x80;
    snprintf(out, outsz,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", h[0],
             h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12],
             h[13], h[14], h[15]);
}

static void gpu_request_for(const struct config *cfg, const struct spec_request *req,
                            const struct vm_spec *spec, const char *unit,
                            struct gpu_request *gr)
{
    memset(gr, 0, sizeof(*gr));
    gr->kind = (enum gpu_kind)req->gpu;
    snprintf(gr->unit, sizeof(gr->unit), "%s", unit ? unit : "");
    snprintf(gr->mdev_type, sizeof(gr->mdev_type), "%s", req->gpu_type);
    mdev_uuid_for(spec->name, gr->mdev_uuid, sizeof(gr->mdev_uuid));
    gr->vfs = (unsigned)cfg->vfs;
    gr->seabios = !spec->uefi;
    gr->allow_console = cfg->allow_host_console;
}

/* Plans the GPU for one unit (or the first suitable one when unit is NULL). */
static int plan_gpu(const struct config *cfg, const struct spec_request *req,
                    struct vm_spec *spec, const char *unit, char *err, size_t errsz)
{
    struct gpu_request gr;
    gpu_request_for(cfg, req, spec, unit, &gr);
    struct gpu_grant *g = &spec->gpu_grant;
    char why[1024];
    if (gpu_plan(cfg->sysroot, &gr, g, why, sizeof(why)) < 0) {
        snprintf(err, errsz, "gpu: %s", why);
        return -1;
    }
    if (g->kind == GPU_KIND_VIRGL && spec->virgl_sdl)
        g->warning[0] = 0; /* the X display renders: no render node needed */
    return 0;
}

static int plan_usb(const struct config *cfg, const struct spec_request *req,
                    struct vm_spec *spec, char *err, size_t errsz)
{
    struct usb_list list = {0};
    bool scanned = false;
    char why[512];
    int rc = 0;
    for (size_t i = 0; i < req->n_usb && rc == 0; i++) {
        struct vm_usb *u = &spec->usb[spec->n_usb];
        memset(u, 0, sizeof(*u));
        u->index = (unsigned)i;
        if (spec_usb_emulated(req->usb[i])) {
            snprintf(u->emulated, sizeof(u->emulated), "%s", req->usb[i]);
            spec->n_usb++;
            continue;
        }
        const struct usbdev *d;
        if ((!scanned && usb_scan(cfg->sysroot, &list, why, sizeof(why)) < 0) ||
            usb_resolve(&list, req->usb[i], &d, why, sizeof(why)) < 0) {
            snprintf(err, errsz, "%s%s", strncmp(why, "usb:", 4) ? "usb: " : "", why);
            rc = -1;
            break;
        }
        scanned = true;
        for (size_t j = 0; j < spec->n_usb && rc == 0; j++)
            if (spec->usb[j].bus == d->bus && !strcmp(spec->usb[j].devpath, d->devpath)) {
                snprintf(err, errsz, "usb: %s names %s a second time", req->usb[i],
                         d->port);
                rc = -1;
            }
        u->bus = d->bus;
        snprintf(u->devpath, sizeof(u->devpath), "%s", d->devpath);
        spec->n_usb += rc == 0;
    }
    usb_list_free(&list);
    return rc;
}

/* A host-matched topology for pinned vCPUs; busy are CPUs other sessions hold. */
static int plan_cpus(const struct config *cfg, struct vm_spec *spec,
                     const cpu_set_t *busy, struct cpu_plan *plan, char *err,
                     size_t errsz)
{
    struct cpu_topology t = {0};
    char why[512];
    if (cpu_topology_read(cfg->sysroot, &t, why, sizeof(why)) < 0 ||
        cpu_plan_make(&t, spec->cpus, busy, plan, why, sizeof(why)) < 0) {
        cpu_topology_free(&t);
        snprintf(err, errsz, "cpus: %s", why);
        return -1;
    }
    cpu_topology_free(&t);
    spec->sockets = plan->sockets;
    spec->cores = plan->cores;
    spec->threads = plan->threads;
    return 0;
}

int alloc_plan(const struct config *cfg, const struct spec_request *req,
               struct vm_spec *spec, char *err, size_t errsz)
{
    if (spec->net == SPEC_NET_BRIDGE &&
        tap_bridge_check(cfg->sysroot, spec->bridge, err, errsz) < 0)
        return -1;
    if (req->gpu != SPEC_GPU_NONE && plan_gpu(cfg, req, spec, NULL, err, errsz) < 0)
        return -1;
    if (plan_usb(cfg, req, spec, err, errsz) < 0)
        return -1;
    if (spec->pin_cpus) {
        struct cpu_plan plan;
        cpu_set_t none;
        CPU_ZERO(&none);
        if (plan_cpus(cfg, spec, &none, &plan, err, errsz) < 0)
            return -1;
    }
    return 0;
}

/* ---- claims ------------------------------------------------------------------ */

struct claim_list {
    const char *session; /* NULL: every claim */
    struct claim {
        char kind[16];
        char unit[96];
        char session[SESSION_ID_LEN];
        char *data;
    } * v;
    size_t n;
};

static void collect(const char *kind, const char *unit, const char *session,
                    const char *data, void *arg)
{
    struct claim_list *l = arg;
    if (l->session && strcmp(l->session, session))
        return;
    struct claim *grown = realloc(l->v, (l->n + 1) * sizeof(*grown));
    if (!grown)
        return;
    l->v = grown;
    struct claim *c = &l->v[l->n++];
    snprintf(c->kind, sizeof(c->kind), "%s", kind);
    snprintf(c->unit, sizeof(c->unit), "%s", unit);
    snprintf(c->session, sizeof(c->session), "%s", session);
    c->data = strdup(data ? data : "");
}

static void claims_free(struct claim_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].data);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static const char *holder(const struct claim_list *l, const char *kind, const char *unit)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].kind, kind) && !strcmp(l->v[i].unit, unit))
            return l->v[i].session;
    return NULL;
}

/* Undoes one claim's effect on the host (not the claim itself). */
static void undo(const struct config *cfg, const struct claim *c)
{
    char err[1024];
    json_error_t jerr;
    json_t *data = json_loads(c->data, 0, &jerr);
    if (!strcmp(c->kind, K_GPU)) {
        struct gpu_grant g;
        if (gpu_grant_from_json(data, &g, err, sizeof(err)) < 0 ||
            gpu_grant_chown(cfg->sysroot, &g, 0, 0, err, sizeof(err)) < 0 ||
            gpu_release(cfg->sysroot, &g, err, sizeof(err)) < 0)
            log_error("session %s: cannot give back %s: %s", c->session, c->unit, err);
        else
            log_info("session %s: gave back %s", c->session, c->unit);
    } else if (!strcmp(c->kind, K_USB)) {
        char path[64];
        snprintf(path, sizeof(path), "/dev/bus/usb/%03d/%03d",
                 (int)json_integer_value(json_object_get(data, "bus")),
                 (int)json_integer_value(json_object_get(data, "devnum")));
        if (json_is_true(json_object_get(data, "chowned")) &&
            hostw_chown(cfg->sysroot, path, 0, 0, err, sizeof(err)) < 0)
            log_warn("session %s: %s", c->session, err);
    } else if (!strcmp(c->kind, K_HUGEPAGES)) {
        unsigned long size =
            (unsigned long)json_integer_value(json_object_get(data, "size_kb"));
        unsigned long count =
            (unsigned long)json_integer_value(json_object_get(data, "count"));
        if (hugepages_release(cfg->sysroot, size, count, err, sizeof(err)) < 0)
            log_error("session %s: %s", c->session, err);
    }
    json_decref(data);
}

void alloc_release(struct store *st, const struct config *cfg, const char *id)
{
    struct claim_list l = {.session = id};
    store_alloc_list(st, collect, &l);
    for (size_t i = 0; i < l.n; i++)
        undo(cfg, &l.v[i]);
    if (l.n)
        store_alloc_release(st, id);
    claims_free(&l);
}

void alloc_reconcile(struct store *st, const struct config *cfg,
                     bool (*live)(const char *id, void *arg), void *arg)
{
    struct claim_list l = {0};
    store_alloc_list(st, collect, &l);
    for (size_t i = 0; i < l.n; i++)
        if (!live(l.v[i].session, arg)) {
            /* the first claim of the session releases them all; later ones of the
             * same session find nothing left */
            log_warn("session %s is gone but holds %s: giving it back", l.v[i].session,
                     l.v[i].unit);
            alloc_release(st, cfg, l.v[i].session);
        }
    claims_free(&l);
}

static int claim_json(struct store *st, const char *kind, const char *unit,
                      const char *id, json_t *data)
{
    char *text = json_dumps(data, JSON_COMPACT);
    json_decref(data);
    int rc = store_alloc_claim(st, kind, unit, id, text ? text : "{}");
    free(text);
    return rc;
}

/* Claims a GPU: tries the suitable units in order; the first claim that sticks
 * wins. */
static int acquire_gpu(struct store *st, const struct config *cfg, const char *id,
                       const struct spec_request *req, struct vm_spec *spec,
                       const struct vm_user *user, struct session_error *e)
{
    char err[1024];
    enum inventory_kind ik;
    switch (req->gpu) {
    case SPEC_GPU_VF:
        ik = INVENTORY_VF;
        break;
    case SPEC_GPU_PASSTHROUGH:
        ik = INVENTORY_GPU;
        break;
    default:
        /* virgl shares the render node; an mdev's instances are counted by the
         * kernel, and the device itself is claimed under its UUID */
        if (plan_gpu(cfg, req, spec, NULL, err, sizeof(err)) < 0) {
            bool full = strstr(err, "no free instance") != NULL;
            session_refuse(e, full ? SESSION_BUSY : SESSION_BAD_REQUEST,
                           full ? "device_busy" : "invalid_field", "%s", err);
            return -1;
        }
        if (req->gpu == SPEC_GPU_VIRGL)
            return 0;
        char unit[96];
        snprintf(unit, sizeof(unit), "mdev:%s", spec->gpu_grant.mdev_uuid);
        if (claim_json(st, K_GPU, unit, id, gpu_grant_to_json(&spec->gpu_grant)) != 1) {
            session_refuse(e, SESSION_BUSY, "device_busy", "gpu: %s is in use", unit);
            return -1;
        }
        goto prepare;
    }

    struct inventory_unit *units = NULL;
    size_t n = 0, usable = 0;
    if (inventory_list(cfg->sysroot, ik, cfg->allow_host_console, &units, &n, err,
                       sizeof(err)) < 0) {
        session_refuse(e, SESSION_INTERNAL, "host", "gpu: %s", err);
        return -1;
    }
    char why[1024] = "";
    bool got = false;
    for (size_t i = 0; i < n && !got; i++) {
        if (!units[i].usable) {
            snprintf(why, sizeof(why), "%s", units[i].why);
            continue;
        }
        usable++;
        if (plan_gpu(cfg, req, spec, units[i].id, err, sizeof(err)) < 0) {
            snprintf(why, sizeof(why), "%s", err);
            continue;
        }
        int c =
            claim_json(st, K_GPU, units[i].id, id, gpu_grant_to_json(&spec->gpu_grant));
        if (c < 0) {
            free(units);
            session_refuse(e, SESSION_INTERNAL, "store",
                           "gpu: the claim could not be recorded");
            return -1;
        }
        got = c == 1;
    }
    free(units);
    if (!got) {
        if (usable)
            session_refuse(
                e, SESSION_BUSY, "device_busy",
                "gpu: every %s on this host is in use (%zu of %zu); try again later",
                req->gpu == SPEC_GPU_VF ? "VF" : "GPU that can be passed through", usable,
                usable);
        else
            session_refuse(
                e, SESSION_BAD_REQUEST, "invalid_field", "gpu: this host has no %s%s%s",
                req->gpu == SPEC_GPU_VF ? "SR-IOV VF" : "GPU that can be passed through",
                why[0] ? ": " : "", why);
        return -1;
    }
prepare:;
    struct gpu_grant *g = &spec->gpu_grant;
    if (gpu_prepare(cfg->sysroot, g, err, sizeof(err)) < 0 ||
        (user && user->set &&
         gpu_grant_chown(cfg->sysroot, g, user->uid, user->gid, err, sizeof(err)) < 0)) {
        session_refuse(e, SESSION_INTERNAL, "device_failed", "%s", err);
        return -1; /* the caller releases the claim */
    }
    /* Record the drivers prepare found, which release restores. */
    json_t *j = gpu_grant_to_json(g);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    char unit[96];
    snprintf(unit, sizeof(unit), "%s%s", g->kind == GPU_KIND_MDEV ? "mdev:" : "",
             g->kind == GPU_KIND_MDEV ? g->mdev_uuid : g->unit);
    store_alloc_update(st, K_GPU, unit, text ? text : "{}");
    free(text);
    log_info("session %s: holds %s", id, unit);
    return 0;
}

/* Claims one USB device; the device node goes to QEMU's user. */
static int acquire_usb(struct store *st, const struct config *cfg, const char *id,
                       const char *request, const struct vm_user *user,
                       struct vm_usb *out, struct session_error *e)
{
    if (spec_usb_emulated(request)) { /* QEMU's own: nothing on the host to claim */
        snprintf(out->emulated, sizeof(out->emulated), "%s", request);
        return 0;
    }
    struct usb_list list = {0};
    const struct usbdev *d;
    char why[512];
    if (usb_scan(cfg->sysroot, &list, why, sizeof(why)) < 0 ||
        usb_resolve(&list, request, &d, why, sizeof(why)) < 0) {
        usb_list_free(&list);
        session_refuse(e, SESSION_BAD_REQUEST, "invalid_field", "%s%s",
                       strncmp(why, "usb:", 4) ? "usb: " : "", why);
        return -1;
    }
    char unit[64], path[64];
    snprintf(unit, sizeof(unit), "usb:%s", d->port);
    snprintf(path, sizeof(path), "/dev/bus/usb/%03u/%03u", d->bus, d->devnum);
    bool chown = user && user->set;
    int c = claim_json(st, K_USB, unit, id,
                       json_pack("{s:i, s:i, s:s, s:b, s:s}", "bus", (int)d->bus,
                                 "devnum", (int)d->devnum, "devpath", d->devpath,
                                 "chowned", chown, "request", request));
    if (c != 1) {
        session_refuse(e, c == 0 ? SESSION_BUSY : SESSION_INTERNAL, "device_busy",
                       "usb: %s (%s) is in use by another session", d->port, d->name);
        usb_list_free(&list);
        return -1;
    }
    out->bus = d->bus;
    snprintf(out->devpath, sizeof(out->devpath), "%s", d->devpath);
    usb_list_free(&list);
    if (chown &&
        hostw_chown(cfg->sysroot, path, user->uid, user->gid, why, sizeof(why)) < 0) {
        session_refuse(e, SESSION_INTERNAL, "device_failed", "usb: %s", why);
        store_alloc_release_unit(st, K_USB, unit);
        return -1;
    }
    return 0;
}

static void busy_cpus(struct store *st, cpu_set_t *busy)
{
    struct claim_list l = {0};
    store_alloc_list(st, collect, &l);
    CPU_ZERO(busy);
    for (size_t i = 0; i < l.n; i++)
        if (!strcmp(l.v[i].kind, K_CPU))
            CPU_SET(atoi(l.v[i].unit + 4), busy);
    claims_free(&l);
}

static int acquire_cpus(struct store *st, const struct config *cfg, const char *id,
                        struct vm_spec *spec, struct session_error *e)
{
    cpu_set_t busy;
    struct cpu_plan plan;
    char err[512];
    busy_cpus(st, &busy);
    if (plan_cpus(cfg, spec, &busy, &plan, err, sizeof(err)) < 0) {
        session_refuse(e, SESSION_BUSY, "device_busy", "%s", err);
        return -1;
    }
    json_t *cpus = json_array(), *emu = json_array();
    for (unsigned i = 0; i < plan.vcpus; i++) {
        char unit[16];
        snprintf(unit, sizeof(unit), "cpu:%d", plan.vcpu_cpu[i]);
        if (claim_json(st, K_CPU, unit, id, json_pack("{s:i}", "vcpu", (int)i)) != 1) {
            json_decref(cpus);
            json_decref(emu);
            session_refuse(e, SESSION_BUSY, "device_busy",
                           "cpus: host CPU %d is pinned already", plan.vcpu_cpu[i]);
            return -1;
        }
        json_array_append_new(cpus, json_integer(plan.vcpu_cpu[i]));
    }
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &plan.emulator))
            json_array_append_new(emu, json_integer(c));
    char unit[64];
    snprintf(unit, sizeof(unit), "cpuplan:%s", id);
    claim_json(st, K_CPUPLAN, unit, id,
               json_pack("{s:o, s:o}", "vcpus", cpus, "emulator", emu));
    return 0;
}

int alloc_acquire(struct store *st, const struct config *cfg, const char *id,
                  const struct spec_request *req, struct vm_spec *spec,
                  const struct vm_user *user, struct session_error *e)
{
    char why[256];
    if (spec->net == SPEC_NET_BRIDGE &&
        tap_bridge_check(cfg->sysroot, spec->bridge, why, sizeof(why)) < 0) {
        session_refuse(e, SESSION_BAD_REQUEST, "invalid_field", "%s", why);
        return -1;
    }
    if (req->gpu != SPEC_GPU_NONE && acquire_gpu(st, cfg, id, req, spec, user, e) < 0)
        goto fail;
    for (size_t i = 0; i < req->n_usb; i++) {
        spec->usb[spec->n_usb].index = (unsigned)i;
        if (acquire_usb(st, cfg, id, req->usb[i], user, &spec->usb[spec->n_usb], e) < 0)
            goto fail;
        spec->n_usb++;
    }
    if (spec->hugepages_kb) {
        unsigned long count = hugepages_count(spec->memory_mb, spec->hugepages_kb);
        char err[512], unit[64];
        if (hugepages_reserve(cfg->sysroot, spec->hugepages_kb, count, err, sizeof(err)) <
            0) {
            session_refuse(e, SESSION_FULL, "hugepages", "hugepages: %s", err);
            goto fail;
        }
        snprintf(unit, sizeof(unit), "hugepages:%s", id);
        claim_json(st, K_HUGEPAGES, unit, id,
                   json_pack("{s:I, s:I}", "size_kb", (json_int_t)spec->hugepages_kb,
                             "count", (json_int_t)count));
    }
    if (spec->pin_cpus && acquire_cpus(st, cfg, id, spec, e) < 0)
        goto fail;
    return 0;
fail:
    alloc_release(st, cfg, id);
    return -1;
}

int alloc_pin(struct store *st, const char *id, int pid, const int *vcpu_tids,
              size_t n_vcpus, char *err, size_t errsz)
{
    struct claim_list l = {.session = id};
    store_alloc_list(st, collect, &l);
    json_t *plan = NULL;
    for (size_t i = 0; i < l.n && !plan; i++)
        if (!strcmp(l.v[i].kind, K_CPUPLAN))
            plan = json_loads(l.v[i].data, 0, NULL);
    claims_free(&l);
    if (!plan)
        return 0; /* nothing to pin */
    struct cpu_plan p = {.vcpus =
                             (unsigned)json_array_size(json_object_get(plan, "vcpus"))};
    CPU_ZERO(&p.emulator);
    for (unsigned i = 0; i < p.vcpus && i < CPU_PLAN_MAX; i++)
        p.vcpu_cpu[i] =
            (int)json_integer_value(json_array_get(json_object_get(plan, "vcpus"), i));
    size_t k;
    json_t *c;
    json_array_foreach(json_object_get(plan, "emulator"), k, c)
        CPU_SET((int)json_integer_value(c), &p.emulator);
    json_decref(plan);
    /* QEMU's other threads: every task of the process that is not a vCPU. */
    pid_t tids[CPU_PLAN_MAX], others[256];
    size_t n_other = 0;
    for (size_t i = 0; i < n_vcpus && i < CPU_PLAN_MAX; i++)
        tids[i] = vcpu_tids[i];
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/task", pid);
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) && n_other < 256) {
        pid_t t = (pid_t)atoi(de->d_name);
        bool vcpu = false;
        for (size_t i = 0; i < n_vcpus; i++)
            vcpu = vcpu || vcpu_tids[i] == t;
        if (t > 0 && !vcpu)
            others[n_other++] = t;
    }
    if (d)
        closedir(d);
    return cpu_pin_plan(&p, tids, n_vcpus, others, n_other, err, errsz);
}

int alloc_usb_attach(struct store *st, const struct config *cfg, const char *id,
                     const char *request, const struct vm_user *user, struct vm_usb *dev,
                     struct session_error *e)
{
    return acquire_usb(st, cfg, id, request, user, dev, e);
}

int alloc_usb_detach(struct store *st, const struct config *cfg, const char *id,
                     const char *request, struct vm_usb *dev, struct session_error *e)
{
    struct claim_list l = {.session = id};
    store_alloc_list(st, collect, &l);
    int rc = -1;
    for (size_t i = 0; i < l.n && rc < 0; i++) {
        if (strcmp(l.v[i].kind, K_USB))
            continue;
        json_t *data = json_loads(l.v[i].data, 0, NULL);
        char vidpid[16] = "";
        const char *port = l.v[i].unit + 4;
        /* the request names it by port, or by the VID:PID it was attached with */
        const char *asked = json_string_value(json_object_get(data, "request"));
        snprintf(vidpid, sizeof(vidpid), "%s", asked ? asked : "");
        if (!strcmp(request, port) || !strcmp(request, vidpid)) {
            dev->bus = (unsigned)json_integer_value(json_object_get(data, "bus"));
            snprintf(dev->devpath, sizeof(dev->devpath), "%s",
                     json_string_value(json_object_get(data, "devpath")) ?: "");
            undo(cfg, &l.v[i]);
            store_alloc_release_unit(st, K_USB, l.v[i].unit);
            rc = 0;
        }
        json_decref(data);
    }
    claims_free(&l);
    if (rc < 0)
        session_refuse(e, SESSION_NOT_FOUND, "not_found",
                       "usb: session %s holds no device %s", id, request);
    return rc;
}

/* Adds the units of one inventory kind, each with who holds it. */
static void inventory_kind(json_t *out, const char *key, enum inventory_kind kind,
                           const struct config *cfg, const struct claim_list *claims,
                           bool admin)
{
    struct inventory_unit *units = NULL;
    size_t n = 0;
    char err[512];
    json_t *list = json_array();
    if (inventory_list(cfg->sysroot, kind, cfg->allow_host_console, &units, &n, err,
                       sizeof(err)) == 0) {
        for (size_t i = 0; i < n; i++) {
            const char *who =
                holder(claims, kind == INVENTORY_USB ? K_USB : K_GPU, units[i].id);
            json_t *u = json_pack("{s:s, s:s, s:b, s:i, s:b}", "id", units[i].id, "label",
                                  units[i].label, "usable", units[i].usable, "capacity",
                                  (int)units[i].capacity, "in_use", who != NULL);
            if (!units[i].usable)
                json_object_set_new(u, "why", json_string(units[i].why));
            if (units[i].parent[0])
                json_object_set_new(u, "parent", json_string(units[i].parent));
            if (who && admin)
                json_object_set_new(u, "session", json_string(who));
            json_array_append_new(list, u);
        }
    }
    free(units);
    json_object_set_new(out, key, list);
}

json_t *alloc_inventory_json(struct store *st, const struct config *cfg, bool admin)
{
    struct claim_list claims = {0};
    store_alloc_list(st, collect, &claims);
    json_t *out = json_object();
    inventory_kind(out, "gpus", INVENTORY_GPU, cfg, &claims, admin);
    inventory_kind(out, "vfs", INVENTORY_VF, cfg, &claims, admin);
    inventory_kind(out, "mdev_types", INVENTORY_MDEV, cfg, &claims, admin);
    inventory_kind(out, "render_nodes", INVENTORY_RENDER, cfg, &claims, admin);
    inventory_kind(out, "usb", INVENTORY_USB, cfg, &claims, admin);
    struct hugepages_pool pools[4];
    char err[256];
    json_t *hp = json_array();
    int n = hugepages_pools(cfg->sysroot, pools, 4, err, sizeof(err));
    for (int i = 0; i < n; i++)
        json_array_append_new(hp, json_pack("{s:I, s:I, s:I}", "size_kb",
                                            (json_int_t)pools[i].size_kb, "total",
                                            (json_int_t)pools[i].nr, "free",
                                            (json_int_t)pools[i].free));
    json_object_set_new(out, "hugepages", hp);
    claims_free(&claims);
    return out;
}

unsigned alloc_gpu_kinds(const struct config *cfg)
{
    static const struct {
        enum inventory_kind inv;
        enum spec_gpu gpu;
    } kinds[] = {
        {INVENTORY_RENDER, SPEC_GPU_VIRGL},
        {INVENTORY_VF, SPEC_GPU_VF},
        {INVENTORY_GPU, SPEC_GPU_PASSTHROUGH},
        {INVENTORY_MDEV, SPEC_GPU_MDEV},
    };
    unsigned mask = 1u << SPEC_GPU_NONE;
    if (!strcmp(cfg->virgl_display, "sdl"))
        mask |= 1u << SPEC_GPU_VIRGL;
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        struct inventory_unit *units = NULL;
        size_t n = 0;
        char err[256];
        if (inventory_list(cfg->sysroot, kinds[k].inv, cfg->allow_host_console, &units,
                           &n, err, sizeof(err)) == 0)
            for (size_t i = 0; i < n; i++)
                if (units[i].usable)
                    mask |= 1u << kinds[k].gpu;
        free(units);
    }
    return mask;
}

#include "session/alloc.h"

#include "host/cpu.h"
#include "host/gpu.h"
#include "host/hostw.h"
#include "host/hugepages.h"
#include "host/inventory.h"
#include "host/usb.h"
#include "host/vfio.h"
#include "net/tap.h"
#include "qemu/cmdline.h"
#include "session/store.h"
#include "util/log.h"
#include "util/proc.h"

#include <dirent.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kinds of claim in the store, and their units:
 *   gpu       a device held whole: "pci:ADDR" (a card), "vf:ADDR",
 *             "mdev:PARENT/TYPE/UUID"
 *   share     "ADDR/SESSION": the session uses the device at ADDR without holding it
 *             (the PF of its VF, the parent of its mediated device, the card of its
 *             render node), so no session may take that device whole meanwhile
 *   usb       "usb:BUS-PORT"; hugepages, cpu, cpuplan: one per session or CPU */
#define K_GPU       "gpu"
#define K_SHARE     "share"
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
    snprintf(gr->rom_dir, sizeof(gr->rom_dir), "%s", cfg->rom_dir);
}

/* Plans the GPU for one unit (or the first suitable one when unit is NULL). Returns
 * 0, or gpu_plan()'s -EBUSY or -1 with err. */
static int plan_gpu(const struct config *cfg, const struct spec_request *req,
                    struct vm_spec *spec, const char *unit, char *err, size_t errsz)
{
    struct gpu_request gr;
    gpu_request_for(cfg, req, spec, unit, &gr);
    struct gpu_grant *g = &spec->gpu_grant;
    char why[1024];
    int rc = gpu_plan(cfg->sysroot, &gr, g, why, sizeof(why));
    if (rc < 0) {
        snprintf(err, errsz, "gpu: %s", why);
        return rc;
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
        char unit[160];
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

static int pin_emulators(struct store *st, char *err, size_t errsz);

/* Undoes one claim's effect on the host (not the claim itself). */
static void undo(const struct config *cfg, const struct claim *c)
{
    char err[1024] = "";
    json_error_t jerr;
    json_t *data = json_loads(c->data, 0, &jerr);
    if (!strcmp(c->kind, K_GPU)) {
        struct gpu_grant g;
        char why[1024];
        /* the vfio nodes go back to root where they exist (a mediated device that
         * was never made has none); the device goes back in any case */
        if (gpu_grant_from_json(data, &g, err, sizeof(err)) == 0 &&
            gpu_grant_chown(cfg->sysroot, &g, 0, 0, why, sizeof(why)) < 0)
            log_info("session %s: %s", c->session, why);
        if (err[0] || gpu_release(cfg->sysroot, &g, err, sizeof(err)) < 0)
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
        json_t *grown = json_object_get(data, "grown"); /* what it added to the pool */
        unsigned long count = (unsigned long)json_integer_value(
            grown ? grown : json_object_get(data, "count"));
        if (hugepages_release(cfg->sysroot, size, count, err, sizeof(err)) < 0)
            log_error("session %s: %s", c->session, err);
    }
    json_decref(data);
}

void alloc_release(struct store *st, const struct config *cfg, const char *id)
{
    struct claim_list l = {.session = id};
    bool pinned = false;
    char err[256];
    store_alloc_list(st, collect, &l);
    for (size_t i = 0; i < l.n; i++) {
        undo(cfg, &l.v[i]);
        pinned |= !strcmp(l.v[i].kind, K_CPUPLAN);
    }
    if (l.n)
        store_alloc_release(st, id);
    claims_free(&l);
    /* the CPUs it leaves are free for the other sessions' emulator threads */
    if (pinned && pin_emulators(st, err, sizeof(err)) < 0)
        log_warn("pinning after session %s: %s", id, err);
}

void alloc_reconcile(struct store *st, const struct config *cfg,
                     bool (*live)(const char *id, void *arg), void *arg)
{
    struct claim_list l = {0};
    store_alloc_list(st, collect, &l);
    const char *released = "";
    for (size_t i = 0; i < l.n; i++)
        if (strcmp(l.v[i].session, released) && !live(l.v[i].session, arg)) {
            log_warn("session %s is gone but holds %s: giving it back", l.v[i].session,
                     l.v[i].unit);
            alloc_release(st, cfg, l.v[i].session); /* all its claims at once */
            released = l.v[i].session;
        }
    claims_free(&l);
}

/* ---- who has a device ---------------------------------------------------------- */

/* The device a whole-device claim names (the ADDR of "pci:ADDR" or "vf:ADDR"), or
 * NULL. */
static const char *held_device(const struct claim *c)
{
    if (strcmp(c->kind, K_GPU))
        return NULL;
    if (!strncmp(c->unit, "pci:", 4))
        return c->unit + 4;
    return strncmp(c->unit, "vf:", 3) ? NULL : c->unit + 3;
}

/* The session other than self that holds the device at addr whole, or NULL. */
static const char *holder_of(const struct claim_list *l, const char *addr,
                             const char *self)
{
    for (size_t i = 0; i < l->n; i++) {
        const char *d = held_device(&l->v[i]);
        if (d && !strcmp(d, addr) && strcmp(l->v[i].session, self))
            return l->v[i].session;
    }
    return NULL;
}

/* Appends to out the sessions other than self that use the device at addr without
 * holding it, each with what it uses ("session 0123456789abcdef (VF 0000:00:02.1)").
 * Returns how many. */
static size_t users_of(const struct claim_list *l, const char *addr, const char *self,
                       char *out, size_t outsz)
{
    size_t n = 0, alen = strlen(addr);
    for (size_t i = 0; i < l->n; i++) {
        const struct claim *c = &l->v[i];
        if (strcmp(c->kind, K_SHARE) || strncmp(c->unit, addr, alen) ||
            c->unit[alen] != '/' || !strcmp(c->session, self))
            continue;
        json_t *data = json_loads(c->data, 0, NULL);
        const char *use = json_string_value(json_object_get(data, "use"));
        size_t len = strlen(out);
        snprintf(out + len, outsz - len, "%ssession %s (%s)", len ? ", " : "", c->session,
                 use ? use : "shared");
        json_decref(data);
        n++;
    }
    return n;
}

/* Whether the device at addr (a card, or a VF of pf; pf "" otherwise) is taken for
 * session self: held or used by another session, its PF passed through, or held
 * through vfio by a process outside qdesk (vh: who holds vfio nodes, read once). When
 * it is, writes who has it into why. */
static bool device_taken(const struct config *cfg, const struct claim_list *l,
                         struct vfio_holders *vh, const char *addr, const char *pf,
                         const char *self, char *why, size_t whysz)
{
    const char *s = holder_of(l, addr, self);
    char users[320] = "";
    if (s)
        snprintf(why, whysz, "session %s", s);
    else if (pf[0] && (s = holder_of(l, pf, self)))
        snprintf(why, whysz, "its PF %s is passed through to session %s", pf, s);
    else if (users_of(l, addr, self, users, sizeof(users)))
        snprintf(why, whysz, "shared by %s", users);
    else if (vfio_device_user(cfg->sysroot, addr, vh, users, sizeof(users)))
        snprintf(why, whysz, "bound to vfio-pci by something else: %s holds it", users);
    else
        return false;
    return true;
}

/* The units a refusal names, each with who has it, as long as they fit. */
struct busy {
    char text[400];
    size_t left; /* units that did not fit */
};

static void busy_add(struct busy *b, const char *unit, const char *why)
{
    size_t len = strlen(b->text);
    int n = snprintf(b->text + len, sizeof(b->text) - len, "%s%s (%s)", len ? ", " : "",
                     unit, why);
    if (n < 0 || (size_t)n >= sizeof(b->text) - len) {
        b->text[len] = 0;
        b->left++;
    }
}

/* The sessions holding instances of a mediated type (unit "mdev:PARENT/TYPE"), in
 * out ("session A, session B"). Returns how many. */
static size_t mdev_holders(const struct claim_list *l, const char *unit, char *out,
                           size_t outsz)
{
    size_t n = 0, ulen = strlen(unit);
    out[0] = 0;
    for (size_t i = 0; i < l->n; i++) {
        const struct claim *c = &l->v[i];
        if (strcmp(c->kind, K_GPU) || strncmp(c->unit, unit, ulen) ||
            c->unit[ulen] != '/')
            continue;
        size_t len = strlen(out);
        snprintf(out + len, outsz - len, "%ssession %s", len ? ", " : "", c->session);
        n++;
    }
    return n;
}

/* ---- claiming a GPU ------------------------------------------------------------- */

/* The hugepages of size_kb that sessions' reservations hold. */
static unsigned long hugepages_promised(struct store *st, unsigned long size_kb)
{
    struct claim_list l = {0};
    unsigned long n = 0;
    store_alloc_list(st, collect, &l);
    for (size_t i = 0; i < l.n; i++) {
        if (strcmp(l.v[i].kind, K_HUGEPAGES) != 0)
            continue;
        json_t *d = json_loads(l.v[i].data, 0, NULL);
        if ((unsigned long)json_integer_value(json_object_get(d, "size_kb")) == size_kb)
            n += (unsigned long)json_integer_value(json_object_get(d, "count"));
        json_decref(d);
    }
    claims_free(&l);
    return n;
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

static void reload(struct store *st, struct claim_list *l)
{
    claims_free(l);
    store_alloc_list(st, collect, l);
}

/* The store's unit for a grant: its inventory id, or for a mediated device the
 * device itself below its type ("mdev:PARENT/TYPE/UUID"). */
static void grant_claim_unit(const struct gpu_grant *g, char *out, size_t outsz)
{
    if (g->kind == GPU_KIND_MDEV)
        snprintf(out, outsz, "%s/%s", g->unit, g->mdev_uuid);
    else
        snprintf(out, outsz, "%s", g->unit);
}

/* Claims the use of the device at addr without holding it. */
static int claim_share(struct store *st, const char *id, const char *addr,
                       const char *use)
{
    char unit[96];
    snprintf(unit, sizeof(unit), "%s/%s", addr, id);
    return claim_json(st, K_SHARE, unit, id, json_pack("{s:s}", "use", use));
}

static void unclaim_share(struct store *st, const char *id, const char *addr)
{
    char unit[96];
    snprintf(unit, sizeof(unit), "%s/%s", addr, id);
    store_alloc_release_unit(st, K_SHARE, unit);
}

/* 409 for a full mediated type (unit "mdev:PARENT/TYPE"), naming who holds it. */
static void refuse_mdev_full(struct store *st, const char *unit, const char *why,
                             struct session_error *e)
{
    struct claim_list l = {0};
    char who[400];
    store_alloc_list(st, collect, &l);
    size_t n = mdev_holders(&l, unit, who, sizeof(who));
    claims_free(&l);
    session_refuse(e, SESSION_BUSY, "device_busy", "%s%s%s%s; try again later", why,
                   n ? " (held by " : "", who, n ? ")" : "");
}

/* A whole device (vf, passthrough): tries the host's units in order. Every claim is
 * made first and checked after — the device's own (pci:/vf:) and, for a VF, the use
 * of its PF —, so of two racing requests for the same device, or for a card and a VF
 * of it, at least one sees the other and steps back. Returns 0, or -1 with e: 409
 * naming each unit and who has it when all are taken. */
static int claim_device(struct store *st, const struct config *cfg, const char *id,
                        const struct spec_request *req, struct vm_spec *spec,
                        struct session_error *e)
{
    bool vf = req->gpu == SPEC_GPU_VF;
    const char *what = vf ? "SR-IOV VF" : "GPU that can be passed through";
    struct inventory_unit *units = NULL;
    size_t n = 0, usable = 0;
    char err[1024], why[1024] = "", held[480];
    if (inventory_list(cfg->sysroot, vf ? INVENTORY_VF : INVENTORY_GPU,
                       cfg->allow_host_console, &units, &n, err, sizeof(err)) < 0) {
        session_refuse(e, SESSION_INTERNAL, "host", "gpu: %s", err);
        return -1;
    }
    struct claim_list l = {0};
    struct vfio_holders vh = {0};
    struct busy busy = {0};
    int rc = -1;
    bool failed = false;
    store_alloc_list(st, collect, &l);
    for (size_t i = 0; i < n && rc < 0; i++) {
        const struct inventory_unit *u = &units[i];
        const char *addr = strchr(u->id, ':') + 1, *pf = vf ? u->parent : "";
        if (!u->usable) {
            snprintf(why, sizeof(why), "%s", u->why);
            continue;
        }
        usable++;
        if (device_taken(cfg, &l, &vh, addr, pf, id, held, sizeof(held))) {
            busy_add(&busy, addr, held);
            continue;
        }
        if (plan_gpu(cfg, req, spec, u->id, err, sizeof(err)) < 0) {
            snprintf(why, sizeof(why), "%s", err);
            continue;
        }
        int c = claim_json(st, K_GPU, u->id, id, gpu_grant_to_json(&spec->gpu_grant));
        if (c == 1 && pf[0]) {
            char use[64];
            snprintf(use, sizeof(use), "VF %s", addr);
            if (claim_share(st, id, pf, use) < 0) {
                store_alloc_release_unit(st, K_GPU, u->id);
                c = -1;
            }
        }
        if (c < 0) {
            session_refuse(e, SESSION_INTERNAL, "store",
                           "gpu: the claim could not be recorded");
            failed = true;
            break;
        }
        reload(st, &l);
        if (c == 1 && !device_taken(cfg, &l, &vh, addr, pf, id, held, sizeof(held))) {
            rc = 0;
            break;
        }
        if (c == 1) { /* taken meanwhile: step back */
            store_alloc_release_unit(st, K_GPU, u->id);
            if (pf[0])
                unclaim_share(st, id, pf);
            reload(st, &l);
        }
        if (!device_taken(cfg, &l, &vh, addr, pf, id, held, sizeof(held)))
            snprintf(held, sizeof(held), "claimed by another request just now");
        busy_add(&busy, addr, held);
    }
    claims_free(&l);
    vfio_holders_free(&vh);
    free(units);
    if (rc == 0 || failed)
        return rc;
    if (busy.text[0] || busy.left) {
        char more[32] = "";
        if (busy.left)
            snprintf(more, sizeof(more), " and %zu more", busy.left);
        session_refuse(e, SESSION_BUSY, "device_busy",
                       "gpu: every %s is in use: %s%s; try again later", what, busy.text,
                       more);
    } else if (!usable)
        session_refuse(e, SESSION_BAD_REQUEST, "invalid_field",
                       "gpu: this host has no %s%s%s", what, why[0] ? ": " : "", why);
    else
        session_refuse(e, SESSION_BAD_REQUEST, "invalid_field", "%s", why);
    return -1;
}

/* A device used without being held (virgl's render node, a mediated device's
 * parent): claims that use of the card it is on, then checks that no session holds
 * the card whole. A mediated device is also claimed itself. Returns 0, or -1 with e. */
static int claim_use(struct store *st, const struct config *cfg, const char *id,
                     const struct spec_request *req, struct vm_spec *spec,
                     struct session_error *e)
{
    char err[1024], card[PCIDEV_ADDR_SIZE] = "", use[96], unit[160];
    struct gpu_grant *g = &spec->gpu_grant;
    int rc = plan_gpu(cfg, req, spec, NULL, err, sizeof(err));
    if (rc == -EBUSY) {
        refuse_mdev_full(st, g->unit, err, e);
        return -1;
    }
    if (rc < 0) {
        session_refuse(e, SESSION_BAD_REQUEST, "invalid_field", "%s", err);
        return -1;
    }
    if (g->kind == GPU_KIND_MDEV) {
        snprintf(card, sizeof(card), "%s", g->mdev_parent);
        snprintf(use, sizeof(use), "mediated device %s", g->mdev_type);
    } else if (g->render_node[0] && !spec->virgl_sdl) {
        struct inventory_unit *nodes = NULL;
        size_t n = 0;
        inventory_list(cfg->sysroot, INVENTORY_RENDER, false, &nodes, &n, err,
                       sizeof(err));
        for (size_t i = 0; i < n; i++)
            if (!strcmp(nodes[i].id, g->unit))
                snprintf(card, sizeof(card), "%s", nodes[i].parent);
        free(nodes);
        snprintf(use, sizeof(use), "render node %s", g->unit + strlen("render:"));
    }
    if (!card[0])
        return 0; /* 3D in an X display, or no render node: nothing on the host */
    grant_claim_unit(g, unit, sizeof(unit));
    int c = claim_share(st, id, card, use);
    if (c == 1 && g->kind == GPU_KIND_MDEV)
        c = claim_json(st, K_GPU, unit, id, gpu_grant_to_json(g));
    if (c != 1) {
        session_refuse(e, c < 0 ? SESSION_INTERNAL : SESSION_BUSY,
                       c < 0 ? "store" : "device_busy", "gpu: %s could not be claimed",
                       unit);
        return -1; /* the caller gives back what was claimed */
    }
    struct claim_list l = {0};
    store_alloc_list(st, collect, &l);
    const char *s = holder_of(&l, card, id);
    if (s)
        session_refuse(e, SESSION_BUSY, "device_busy",
                       "gpu: %s, which the %s is on, is passed through to session %s; "
                       "try again later",
                       card, use, s);
    claims_free(&l);
    return s ? -1 : 0;
}

/* Claims a GPU of the kind asked for and prepares it. */
static int acquire_gpu(struct store *st, const struct config *cfg, const char *id,
                       const struct spec_request *req, struct vm_spec *spec,
                       const struct vm_user *user, struct session_error *e)
{
    char err[1024], unit[160];
    struct gpu_grant *g = &spec->gpu_grant;
    bool whole = req->gpu == SPEC_GPU_VF || req->gpu == SPEC_GPU_PASSTHROUGH;
    if ((whole ? claim_device(st, cfg, id, req, spec, e)
               : claim_use(st, cfg, id, req, spec, e)) < 0)
        return -1;
    if (g->kind == GPU_KIND_VIRGL || g->kind == GPU_KIND_NONE)
        return 0; /* shared: nothing to prepare */
    grant_claim_unit(g, unit, sizeof(unit));
    if (gpu_prepare(cfg->sysroot, g, err, sizeof(err)) < 0) {
        /* the kernel counts mediated instances: a request that planned the last one
         * may lose it to another that made it first */
        struct gpu_grant now;
        struct gpu_request gr;
        gpu_request_for(cfg, req, spec, g->unit, &gr);
        char why[1024];
        if (g->kind == GPU_KIND_MDEV &&
            gpu_plan(cfg->sysroot, &gr, &now, why, sizeof(why)) == -EBUSY) {
            char full[1100];
            snprintf(full, sizeof(full), "gpu: %s", why);
            refuse_mdev_full(st, g->unit, full, e);
        } else
            session_refuse(e, SESSION_INTERNAL, "device_failed", "%s", err);
        return -1; /* the caller releases the claim */
    }
    if (user && user->set &&
        gpu_grant_chown(cfg->sysroot, g, user->uid, user->gid, err, sizeof(err)) < 0) {
        session_refuse(e, SESSION_INTERNAL, "device_failed", "%s", err);
        return -1;
    }
    /* Record the drivers prepare found, which release restores. */
    json_t *j = gpu_grant_to_json(g);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
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

static void json_to_cpus(const json_t *list, cpu_set_t *set)
{
    size_t k;
    json_t *c;
    CPU_ZERO(set);
    json_array_foreach(list, k, c)
    {
        json_int_t cpu = json_integer_value(c);
        if (cpu >= 0 && cpu < CPU_SETSIZE)
            CPU_SET((size_t)cpu, set);
    }
}

static json_t *cpus_to_json(const cpu_set_t *set)
{
    json_t *list = json_array();
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, set))
            json_array_append_new(list, json_integer(c));
    return list;
}

/* Claims a host CPU per vCPU, and records the plan: the vCPUs' CPUs and every host
 * CPU the plan was made among, from which alloc_pin() gives QEMU's other threads
 * those no vCPU holds. */
static int acquire_cpus(struct store *st, const struct config *cfg, const char *id,
                        struct vm_spec *spec, struct session_error *e)
{
    cpu_set_t busy, host;
    struct cpu_plan plan;
    char err[512];
    busy_cpus(st, &busy);
    if (plan_cpus(cfg, spec, &busy, &plan, err, sizeof(err)) < 0) {
        session_refuse(e, SESSION_BUSY, "device_busy", "%s", err);
        return -1;
    }
    json_t *cpus = json_array();
    CPU_OR(&host, &busy, &plan.emulator);
    for (unsigned i = 0; i < plan.vcpus; i++) {
        char unit[16];
        snprintf(unit, sizeof(unit), "cpu:%d", plan.vcpu_cpu[i]);
        if (claim_json(st, K_CPU, unit, id, json_pack("{s:i}", "vcpu", (int)i)) != 1) {
            json_decref(cpus);
            session_refuse(e, SESSION_BUSY, "device_busy",
                           "cpus: host CPU %d is pinned already", plan.vcpu_cpu[i]);
            return -1;
        }
        json_array_append_new(cpus, json_integer(plan.vcpu_cpu[i]));
        CPU_SET((size_t)plan.vcpu_cpu[i], &host);
    }
    char unit[64];
    snprintf(unit, sizeof(unit), "cpuplan:%s", id);
    if (claim_json(st, K_CPUPLAN, unit, id,
                   json_pack("{s:o, s:o}", "vcpus", cpus, "host_cpus",
                             cpus_to_json(&host))) != 1) {
        session_refuse(e, SESSION_INTERNAL, "store",
                       "cpus: the pinning plan could not be recorded");
        return -1;
    }
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
        unsigned long count = hugepages_count(spec->memory_mb, spec->hugepages_kb), grown;
        char err[512], unit[64];
        if (hugepages_reserve(cfg->sysroot, spec->hugepages_kb, count,
                              hugepages_promised(st, spec->hugepages_kb), &grown, err,
                              sizeof(err)) < 0) {
            session_refuse(e, SESSION_FULL, "hugepages", "%s", err);
            goto fail;
        }
        snprintf(unit, sizeof(unit), "hugepages:%s", id);
        if (claim_json(st, K_HUGEPAGES, unit, id,
                       json_pack("{s:I, s:I, s:I}", "size_kb",
                                 (json_int_t)spec->hugepages_kb, "count",
                                 (json_int_t)count, "grown", (json_int_t)grown)) != 1) {
            /* unrecorded, no release would give them back: give them back now */
            if (hugepages_release(cfg->sysroot, spec->hugepages_kb, grown, err,
                                  sizeof(err)) < 0)
                log_error("session %s: %s", id, err);
            session_refuse(e, SESSION_INTERNAL, "store",
                           "hugepages: the reservation could not be recorded");
            goto fail;
        }
    }
    if (spec->pin_cpus && acquire_cpus(st, cfg, id, spec, e) < 0)
        goto fail;
    return 0;
fail:
    alloc_release(st, cfg, id);
    return -1;
}

/* Pins the threads of process pid that are not vCPUs (QEMU's main loop, I/O threads,
 * iothreads) to set. Returns 0, or -1 with err. */
static int pin_others(pid_t pid, const json_t *vcpu_tids, const cpu_set_t *set, char *err,
                      size_t errsz)
{
    struct cpu_plan p = {.vcpus = 0, .emulator = *set};
    pid_t others[256];
    size_t n_other = 0;
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) && n_other < 256) {
        pid_t t = (pid_t)atoi(de->d_name);
        bool vcpu = false;
        size_t k;
        json_t *v;
        json_array_foreach(vcpu_tids, k, v) vcpu = vcpu || json_integer_value(v) == t;
        if (t > 0 && !vcpu)
            others[n_other++] = t;
    }
    if (d)
        closedir(d);
    return cpu_pin_plan(&p, NULL, 0, others, n_other, err, errsz);
}

/* QEMU's other threads of every pinned session that still runs go to the host CPUs
 * no vCPU holds (a session's own vCPUs' when none is left). Run whenever a session
 * pins or gives its CPUs back: a later session may have taken the CPUs an earlier
 * one's emulator threads ran on, or freed some. Returns 0, or -1 with err (the
 * first failure). */
static int pin_emulators(struct store *st, char *err, size_t errsz)
{
    struct claim_list l = {0};
    cpu_set_t host, vcpus, spare;
    int rc = 0;
    store_alloc_list(st, collect, &l);
    CPU_ZERO(&host);
    CPU_ZERO(&vcpus);
    for (size_t i = 0; i < l.n; i++) {
        json_t *data = json_loads(l.v[i].data, 0, NULL);
        cpu_set_t set;
        if (!strcmp(l.v[i].kind, K_CPUPLAN)) {
            json_to_cpus(json_object_get(data, "host_cpus"), &set);
            CPU_OR(&host, &host, &set);
        } else if (!strcmp(l.v[i].kind, K_CPU))
            CPU_SET((size_t)atoi(l.v[i].unit + 4), &vcpus);
        json_decref(data);
    }
    CPU_XOR(&spare, &host, &vcpus);
    CPU_AND(&spare, &spare, &host);
    for (size_t i = 0; i < l.n; i++) {
        json_t *data = json_loads(l.v[i].data, 0, NULL);
        json_int_t pid = json_integer_value(json_object_get(data, "pid"));
        uint64_t start = (uint64_t)json_integer_value(json_object_get(data, "start"));
        char why[256];
        if (!strcmp(l.v[i].kind, K_CPUPLAN) && pid > 0 &&
            proc_is_same((pid_t)pid, start)) {
            cpu_set_t own;
            json_to_cpus(json_object_get(data, "vcpus"), &own);
            if (pin_others((pid_t)pid, json_object_get(data, "vcpu_tids"),
                           CPU_COUNT(&spare) ? &spare : &own, why, sizeof(why)) < 0 &&
                rc == 0) {
                snprintf(err, errsz, "%s", why);
                rc = -1;
            }
        }
        json_decref(data);
    }
    claims_free(&l);
    return rc;
}

int alloc_pin(struct store *st, const char *id, int pid, const int *vcpu_tids,
              size_t n_vcpus, char *err, size_t errsz)
{
    struct claim_list l = {.session = id};
    store_alloc_list(st, collect, &l);
    json_t *plan = NULL;
    char unit[160] = "";
    for (size_t i = 0; i < l.n && !plan; i++)
        if (!strcmp(l.v[i].kind, K_CPUPLAN)) {
            plan = json_loads(l.v[i].data, 0, NULL);
            snprintf(unit, sizeof(unit), "%s", l.v[i].unit);
        }
    claims_free(&l);
    if (!plan)
        return 0; /* nothing to pin */
    const json_t *cpus = json_object_get(plan, "vcpus");
    if (n_vcpus > json_array_size(cpus)) {
        snprintf(err, errsz, "pinning: %zu vCPU threads but the plan has %zu vCPUs",
                 n_vcpus, json_array_size(cpus));
        json_decref(plan);
        return -1;
    }
    /* each vCPU on its own CPU */
    json_t *tids = json_array();
    int rc = 0;
    for (size_t i = 0; i < n_vcpus && rc == 0; i++) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET((size_t)json_integer_value(json_array_get(cpus, i)), &one);
        rc = cpu_pin(vcpu_tids[i], &one, err, errsz);
        json_array_append_new(tids, json_integer(vcpu_tids[i]));
    }
    /* the process, so that its other threads follow the CPUs vCPUs leave free */
    uint64_t start = 0;
    proc_start_time("/proc", pid, &start);
    json_object_set_new(plan, "pid", json_integer(pid));
    json_object_set_new(plan, "start", json_integer((json_int_t)start));
    json_object_set_new(plan, "vcpu_tids", tids);
    char *text = json_dumps(plan, JSON_COMPACT);
    json_decref(plan);
    if (!text || store_alloc_update(st, K_CPUPLAN, unit, text) < 0) {
        free(text);
        snprintf(err, errsz, "pinning: the plan could not be recorded");
        return -1;
    }
    free(text);
    return rc < 0 ? -1 : pin_emulators(st, err, errsz);
}

int alloc_usb_attach(struct store *st, const struct config *cfg, const char *id,
                     const char *request, const struct vm_user *user, struct vm_usb *dev,
                     struct session_error *e)
{
    return acquire_usb(st, cfg, id, request, user, dev, e);
}

/* The USB claim of session id that request names (its port, or the VID:PID it was
 * attached with), into c; fills dev from it. Returns 0, or -1 with e (404). */
static int find_usb(struct store *st, const char *id, const char *request,
                    struct claim *c, struct vm_usb *dev, struct session_error *e)
{
    struct claim_list l = {.session = id};
    store_alloc_list(st, collect, &l);
    int rc = -1;
    for (size_t i = 0; i < l.n && rc < 0; i++) {
        if (strcmp(l.v[i].kind, K_USB))
            continue;
        json_t *data = json_loads(l.v[i].data, 0, NULL);
        const char *asked = json_string_value(json_object_get(data, "request"));
        const char *devpath = json_string_value(json_object_get(data, "devpath"));
        if (!strcmp(request, l.v[i].unit + 4) || (asked && !strcmp(request, asked))) {
            dev->bus = (unsigned)json_integer_value(json_object_get(data, "bus"));
            snprintf(dev->devpath, sizeof(dev->devpath), "%s", devpath ? devpath : "");
            *c = l.v[i];
            c->data = strdup(l.v[i].data);
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

int alloc_usb_find(struct store *st, const char *id, const char *request,
                   struct vm_usb *dev, struct session_error *e)
{
    struct claim c = {0};
    int rc = find_usb(st, id, request, &c, dev, e);
    free(c.data);
    return rc;
}

int alloc_usb_detach(struct store *st, const struct config *cfg, const char *id,
                     const char *request, struct vm_usb *dev, struct session_error *e)
{
    struct claim c = {0};
    if (find_usb(st, id, request, &c, dev, e) < 0)
        return -1;
    undo(cfg, &c);
    store_alloc_release_unit(st, K_USB, c.unit);
    free(c.data);
    return 0;
}

/* ---- what is free ---------------------------------------------------------------- */

/* What one unit of the host's inventory is doing now, from the claims and the host. */
static json_t *unit_json(const struct config *cfg, const struct claim_list *claims,
                         struct vfio_holders *vh, const struct inventory_unit *u,
                         bool admin, bool *free_now)
{
    json_t *j = json_pack("{s:s, s:s, s:b, s:i}", "id", u->id, "label", u->label,
                          "usable", u->usable, "capacity", (int)u->capacity);
    const char *addr = strchr(u->id, ':') + 1, *who = NULL;
    char held[480] = "", users[400] = "";
    bool in_use = false;
    size_t n;
    switch (u->kind) {
    case INVENTORY_GPU:
    case INVENTORY_VF:
        in_use = u->usable && device_taken(cfg, claims, vh, addr,
                                           u->kind == INVENTORY_VF ? u->parent : "", "",
                                           held, sizeof(held));
        who = holder_of(claims, addr, "");
        break;
    case INVENTORY_MDEV:
        /* capacity: instances the kernel can still make; used: those that exist */
        n = mdev_holders(claims, u->id, users, sizeof(users));
        json_object_set_new(j, "used", json_integer(u->used));
        in_use = u->capacity == 0 && u->used > 0;
        if (u->used > n)
            snprintf(held, sizeof(held), "%s%s%u made by something else", users,
                     n ? ", " : "", u->used - (unsigned)n);
        else
            snprintf(held, sizeof(held), "%s", users);
        break;
    case INVENTORY_RENDER:
        json_object_set_new(j, "users",
                            json_integer((json_int_t)users_of(claims, u->parent, "",
                                                              users, sizeof(users))));
        snprintf(held, sizeof(held), "%s", users);
        break;
    default:
        for (size_t i = 0; i < claims->n && !who; i++)
            if (!strcmp(claims->v[i].kind, K_USB) && !strcmp(claims->v[i].unit, u->id))
                who = claims->v[i].session;
        in_use = who != NULL;
    }
    json_object_set_new(j, "in_use", json_boolean(in_use));
    if (!u->usable)
        json_object_set_new(j, "why", json_string(u->why));
    if (u->parent[0])
        json_object_set_new(j, "parent", json_string(u->parent));
    if (admin && who)
        json_object_set_new(j, "session", json_string(who));
    if (admin && held[0])
        json_object_set_new(j, "held_by", json_string(held));
    if (free_now)
        *free_now = u->usable && !in_use;
    return j;
}

/* Counts of one GPU kind: units the host has for it, and those free now. */
struct kind_count {
    unsigned total, free;
};

/* Lists the units of one inventory kind (into list when not NULL) with what each is
 * doing, and counts them into c. claims NULL: only what exists, not what is free. */
static void survey(const struct config *cfg, const struct claim_list *claims,
                   struct vfio_holders *vh, enum inventory_kind kind, bool admin,
                   json_t *list, struct kind_count *c)
{
    struct inventory_unit *units = NULL;
    size_t n = 0;
    char err[512];
    memset(c, 0, sizeof(*c));
    if (inventory_list(cfg->sysroot, kind, cfg->allow_host_console, &units, &n, err,
                       sizeof(err)) < 0)
        log_warn("host inventory: %s", err);
    for (size_t i = 0; i < n; i++) {
        const struct inventory_unit *u = &units[i];
        bool free_now = u->usable;
        if (claims) {
            json_t *j = unit_json(cfg, claims, vh, u, admin, &free_now);
            if (list)
                json_array_append_new(list, j);
            else
                json_decref(j);
        }
        /* a mediated type counts its instances, a shared render node once */
        c->total += kind == INVENTORY_MDEV ? u->capacity + u->used : u->usable;
        c->free += kind == INVENTORY_MDEV ? u->capacity : free_now;
    }
    free(units);
}

static const struct {
    enum inventory_kind inv;
    enum spec_gpu gpu;
} gpu_inventory[] = {
    {INVENTORY_RENDER, SPEC_GPU_VIRGL},
    {INVENTORY_VF, SPEC_GPU_VF},
    {INVENTORY_GPU, SPEC_GPU_PASSTHROUGH},
    {INVENTORY_MDEV, SPEC_GPU_MDEV},
};
#define GPU_INVENTORY (sizeof(gpu_inventory) / sizeof(gpu_inventory[0]))

/* The GPU kinds a host can give, from counts per kind: those with units (free ones
 * when free_only). virgl renders in an X display without a render node. */
static unsigned kinds_mask(const struct config *cfg, const struct kind_count *counts,
                           bool free_only)
{
    unsigned mask = 1u << SPEC_GPU_NONE;
    if (!strcmp(cfg->virgl_display, "sdl"))
        mask |= 1u << SPEC_GPU_VIRGL;
    for (size_t k = 0; k < GPU_INVENTORY; k++)
        if (free_only ? counts[k].free : counts[k].total)
            mask |= 1u << gpu_inventory[k].gpu;
    return mask;
}

json_t *alloc_inventory_json(struct store *st, const struct config *cfg, bool admin)
{
    static const char *const keys[INVENTORY_KINDS] = {"gpus", "vfs", "mdev_types",
                                                      "render_nodes", "usb"};
    struct claim_list claims = {0};
    struct vfio_holders vh = {0}; /* read at most once for every unit */
    store_alloc_list(st, collect, &claims);
    json_t *out = json_object(), *kinds = json_object();
    struct kind_count counts[GPU_INVENTORY], usb;
    for (size_t k = 0; k < GPU_INVENTORY; k++) {
        json_t *list = json_array();
        survey(cfg, &claims, &vh, gpu_inventory[k].inv, admin, list, &counts[k]);
        json_object_set_new(out, keys[gpu_inventory[k].inv], list);
    }
    json_t *list = json_array();
    survey(cfg, &claims, &vh, INVENTORY_USB, admin, list, &usb);
    json_object_set_new(out, keys[INVENTORY_USB], list);
    /* per GPU kind: whether a session can get one now, and how many are free (a
     * render node is shared: every virgl session can use it) */
    unsigned offered = kinds_mask(cfg, counts, true);
    for (size_t k = 0; k < GPU_INVENTORY; k++) {
        enum spec_gpu g = gpu_inventory[k].gpu;
        json_t *o = json_pack("{s:b, s:i, s:i}", "offered", (offered >> g) & 1, "total",
                              (int)counts[k].total, "free", (int)counts[k].free);
        if (g == SPEC_GPU_VIRGL)
            json_object_set_new(o, "shared", json_true());
        json_object_set_new(kinds, spec_gpu_name(g), o);
    }
    json_object_set_new(out, "gpu_kinds", kinds);
    struct hugepages_pool pools[4];
    char err[256];
    json_t *hp = json_array();
    int n = hugepages_pools(cfg->sysroot, pools, 4, err, sizeof(err));
    for (int i = 0; i < n && i < 4; i++)
        json_array_append_new(hp, json_pack("{s:I, s:I, s:I}", "size_kb",
                                            (json_int_t)pools[i].size_kb, "total",
                                            (json_int_t)pools[i].nr, "free",
                                            (json_int_t)pools[i].free));
    json_object_set_new(out, "hugepages", hp);
    claims_free(&claims);
    vfio_holders_free(&vh);
    return out;
}

unsigned alloc_gpu_kinds(const struct config *cfg)
{
    struct kind_count counts[GPU_INVENTORY];
    for (size_t k = 0; k < GPU_INVENTORY; k++)
        survey(cfg, NULL, NULL, gpu_inventory[k].inv, false, NULL, &counts[k]);
    return kinds_mask(cfg, counts, false);
}

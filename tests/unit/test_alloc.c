/* Device allocation on captured machines, with the fake kernel reacting.
 *
 * 50 simultaneous requests for an SR-IOV VF on the 7-VF Intel iGPU tree — each with
 * its own connection to one store, as separate processes would have — get exactly 7
 * VFs, bound to vfio-pci; the other 43 are told which VF each session holds;
 * releasing the sessions gives all 7 back. After a restart, what dead sessions held
 * goes back to its driver and what live ones hold stays. Kinds exclude each other (a
 * card is not passed through while its VFs or its render node are in use, nor the
 * other way round), a device another process holds through vfio is busy, and
 * mediated instances are counted by the kernel and named when none is left. */
#include "catalog/catalog.h"
#include "session/alloc.h"
#include "session/store.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../sysfs/fixture.h"

#define REQUESTS 50
#define PF       "/sys/bus/pci/devices/0000:00:02.0"

static pthread_mutex_t kernel_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fx_kernel kernel;

/* The fake kernel is one kernel: it reacts to one write at a time. */
static int serialized_kernel(const char *sysroot, const char *path, const char *value,
                             void *data)
{
    pthread_mutex_lock(&kernel_lock);
    int rc = fx_kernel_react(sysroot, path, value, data);
    pthread_mutex_unlock(&kernel_lock);
    return rc;
}

/* A copy of a captured machine with a store of its own. */
struct bench {
    char *tree;
    char db[PATH_MAX];
    struct config cfg;
    struct store *st;
};

static int bench_open(void **state, const char *name)
{
    char err[256];
    struct bench *b = calloc(1, sizeof(*b));
    b->tree = fx_copy(name);
    snprintf(b->db, sizeof(b->db), "%s/state.db", b->tree);
    config_defaults(&b->cfg);
    snprintf(b->cfg.sysroot, sizeof(b->cfg.sysroot), "%s", b->tree);
    b->st = store_open(b->db, err, sizeof(err));
    assert_non_null(b->st);
    *state = b;
    return 0;
}

/* Each test's machine, as cmocka set-ups: the test finds its bench in *state. */
static int on_intel_sriov(void **state)
{
    return bench_open(state, "intel-sriov");
}

static int on_gvtg(void **state)
{
    return bench_open(state, "gvtg");
}

static int on_nvidia_passthrough(void **state)
{
    return bench_open(state, "nvidia-passthrough");
}

static int on_usb(void **state)
{
    return bench_open(state, "usb");
}

static int bench_close(void **state)
{
    struct bench *b = *state;
    store_close(b->st);
    fx_drop(b->tree);
    free(b);
    return 0;
}

/* Session id asks for req, its VM (a UEFI one) resolved into spec already. */
static int acquire(struct store *st, const struct config *cfg, const char *id,
                   const struct spec_request *req, struct vm_spec *spec,
                   struct session_error *e)
{
    snprintf(spec->name, sizeof(spec->name), "%s", id);
    spec->uefi = true;
    memset(e, 0, sizeof(*e));
    return alloc_acquire(st, cfg, id, req, spec, NULL, e);
}

/* Session id asks for a GPU of kind gpu (and mediated type) on st. */
static int ask(struct store *st, const struct config *cfg, const char *id,
               enum spec_gpu gpu, const char *type, struct vm_spec *spec,
               struct session_error *e)
{
    struct spec_request req = {.gpu = gpu};
    snprintf(req.gpu_type, sizeof(req.gpu_type), "%s", type ? type : "");
    memset(spec, 0, sizeof(*spec));
    return acquire(st, cfg, id, &req, spec, e);
}

/* Session id's request for a GPU of kind gpu is refused as busy, with message want. */
static void assert_busy(const struct bench *b, const char *id, enum spec_gpu gpu,
                        const char *want)
{
    struct vm_spec spec;
    struct session_error e;
    assert_int_equal(ask(b->st, &b->cfg, id, gpu, NULL, &spec, &e), -1);
    assert_int_equal(e.kind, SESSION_BUSY);
    assert_string_equal(e.message, want);
}

static const char *driver_of(const struct bench *b, const char *addr)
{
    char rel[128];
    snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/%s/driver", addr);
    return fx_link(b->tree, rel);
}

/* The unit with id in the list key of the host inventory. */
static json_t *unit_in(json_t *inv, const char *key, const char *id)
{
    size_t i;
    json_t *u;
    json_array_foreach(json_object_get(inv, key), i, u)
    {
        if (!strcmp(json_string_value(json_object_get(u, "id")), id))
            return u;
    }
    fail_msg("%s has no %s", key, id);
    return NULL;
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static long long num(json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

struct request {
    const struct bench *b;
    char id[SESSION_ID_LEN];
    enum spec_gpu gpu;
    const char *type;
    pthread_barrier_t *start_line;
    int rc;
    struct session_error e;
    struct vm_spec spec;
};

/* One request from its own connection, as another process of the service would. */
static void *request_thread(void *arg)
{
    struct request *r = arg;
    char err[256];
    struct store *st = store_open(r->b->db, err, sizeof(err));
    assert_non_null(st);
    pthread_barrier_wait(r->start_line);
    r->rc = ask(st, &r->b->cfg, r->id, r->gpu, r->type, &r->spec, &r->e);
    store_close(st);
    return NULL;
}

static void race(struct request *reqs, size_t n)
{
    pthread_t threads[REQUESTS];
    pthread_barrier_t start_line;
    pthread_barrier_init(&start_line, NULL, (unsigned)n);
    for (size_t i = 0; i < n; i++) {
        reqs[i].start_line = &start_line;
        pthread_create(&threads[i], NULL, request_thread, &reqs[i]);
    }
    for (size_t i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start_line);
}

static void fifty_requests_seven_vfs(void **state)
{
    struct bench *b = *state;
    static struct request reqs[REQUESTS];
    for (int i = 0; i < REQUESTS; i++) {
        reqs[i] = (struct request){.b = b, .gpu = SPEC_GPU_VF};
        snprintf(reqs[i].id, sizeof(reqs[i].id), "%016x", 0x1000 + i);
    }
    race(reqs, REQUESTS);

    int granted = 0, busy = 0;
    const char *holder[8] = {0}; /* VF 0000:00:02.N -> the session holding it */
    for (int i = 0; i < REQUESTS; i++) {
        if (reqs[i].rc == 0) {
            const char *vf = reqs[i].spec.gpu_grant.fn[0].addr;
            int f = vf[11] - '0';
            assert_null(holder[f]); /* never handed out twice */
            holder[f] = reqs[i].id;
            assert_string_equal(driver_of(b, vf), "vfio-pci");
            granted++;
        } else {
            assert_int_equal(reqs[i].e.kind, SESSION_BUSY);
            busy++;
        }
    }
    assert_int_equal(granted, 7);
    assert_int_equal(busy, 43);
    /* every refusal names each VF and the session holding it */
    char want[600];
    int len = snprintf(want, sizeof(want), "gpu: every SR-IOV VF is in use: ");
    for (int f = 1; f <= 7; f++)
        len += snprintf(want + len, sizeof(want) - (size_t)len,
                        "%s0000:00:02.%d (session %s)", f > 1 ? ", " : "", f, holder[f]);
    snprintf(want + len, sizeof(want) - (size_t)len, "; try again later");
    for (int i = 0; i < REQUESTS; i++)
        if (reqs[i].rc != 0)
            assert_string_equal(reqs[i].e.message, want);

    /* the host view: every VF in use and by whom; vf is no longer offered, though
     * the host has it */
    json_t *inv = alloc_inventory_json(b->st, &b->cfg, true);
    for (int f = 1; f <= 7; f++) {
        char id[32];
        snprintf(id, sizeof(id), "vf:0000:00:02.%d", f);
        json_t *u = unit_in(inv, "vfs", id);
        assert_true(json_is_true(json_object_get(u, "in_use")));
        assert_string_equal(str(u, "session"), holder[f]);
    }
    json_t *vf = json_object_get(json_object_get(inv, "gpu_kinds"), "vf");
    assert_false(json_is_true(json_object_get(vf, "offered")));
    assert_int_equal(num(vf, "total"), 7);
    assert_int_equal(num(vf, "free"), 0);
    json_decref(inv);
    inv = alloc_inventory_json(b->st, &b->cfg, false); /* users see no session ids */
    assert_null(json_object_get(unit_in(inv, "vfs", "vf:0000:00:02.1"), "session"));
    json_decref(inv);
    assert_true(alloc_gpu_kinds(&b->cfg) &
                (1u << SPEC_GPU_VF)); /* machines still allow it */

    /* the sessions end: every VF comes back, unbound from vfio-pci */
    for (int i = 0; i < REQUESTS; i++)
        if (reqs[i].rc == 0)
            alloc_release(b->st, &b->cfg, reqs[i].id);
    for (int f = 1; f <= 7; f++) {
        char addr[16];
        snprintf(addr, sizeof(addr), "0000:00:02.%d", f);
        assert_string_equal(driver_of(b, addr), "");
    }
    inv = alloc_inventory_json(b->st, &b->cfg, true);
    size_t k;
    json_t *u;
    json_array_foreach(json_object_get(inv, "vfs"), k, u)
        assert_false(json_is_true(json_object_get(u, "in_use")));
    vf = json_object_get(json_object_get(inv, "gpu_kinds"), "vf");
    assert_true(json_is_true(json_object_get(vf, "offered")));
    assert_int_equal(num(vf, "free"), 7);
    json_decref(inv);

    /* and a new request gets one again */
    struct vm_spec spec;
    struct session_error e;
    assert_int_equal(
        ask(b->st, &b->cfg, "00000000000000ff", SPEC_GPU_VF, NULL, &spec, &e), 0);
    alloc_release(b->st, &b->cfg, "00000000000000ff");
}

static bool nobody_lives(const char *id, void *arg)
{
    (void)id;
    (void)arg;
    return false;
}

static void release_survives_a_restart(void **state)
{
    struct bench *b = *state;
    /* a session holds a VF; the service dies; the next one finds the session gone
     * and gives the VF back from what the store recorded */
    struct vm_spec spec;
    struct session_error e;
    char err[256];
    assert_int_equal(
        ask(b->st, &b->cfg, "deadbeefdeadbeef", SPEC_GPU_VF, NULL, &spec, &e), 0);
    const char *vf = spec.gpu_grant.fn[0].addr;
    assert_string_equal(driver_of(b, vf), "vfio-pci");
    store_close(b->st);

    b->st = store_open(b->db, err, sizeof(err));
    alloc_reconcile(b->st, &b->cfg, nobody_lives, NULL);
    assert_string_equal(driver_of(b, vf), "");
    json_t *inv = alloc_inventory_json(b->st, &b->cfg, true);
    size_t k;
    json_t *u;
    json_array_foreach(json_object_get(inv, "vfs"), k, u)
        assert_false(json_is_true(json_object_get(u, "in_use")));
    json_decref(inv);
}

static bool only_live(const char *id, void *arg)
{
    return !strcmp(id, arg);
}

/* After a restart: the session that still runs keeps its VF on vfio-pci and its
 * claim; the one that died has its VF given back to the driver it had (i915). */
static void reconcile_keeps_what_live_sessions_hold(void **state)
{
    struct bench *b = *state;
    struct vm_spec live, dead;
    struct session_error e;
    char err[256];
    /* VFs that i915 took when they were made (autoprobe on) */
    assert_int_equal(hostw_write(b->tree, PF "/sriov_numvfs", "0", err, sizeof(err)), 0);
    assert_int_equal(
        hostw_write(b->tree, PF "/sriov_drivers_autoprobe", "1", err, sizeof(err)), 0);
    assert_int_equal(hostw_write(b->tree, PF "/sriov_numvfs", "7", err, sizeof(err)), 0);
    assert_string_equal(driver_of(b, "0000:00:02.1"), "i915");
    assert_int_equal(
        ask(b->st, &b->cfg, "1111111111111111", SPEC_GPU_VF, NULL, &live, &e), 0);
    assert_int_equal(
        ask(b->st, &b->cfg, "2222222222222222", SPEC_GPU_VF, NULL, &dead, &e), 0);
    assert_string_equal(live.gpu_grant.fn[0].addr, "0000:00:02.1");
    assert_string_equal(dead.gpu_grant.fn[0].addr, "0000:00:02.2");
    assert_string_equal(driver_of(b, "0000:00:02.2"), "vfio-pci");
    store_close(b->st);

    b->st = store_open(b->db, err, sizeof(err));
    hostw_record(true);
    alloc_reconcile(b->st, &b->cfg, only_live, "1111111111111111");
    /* only the dead session's VF was touched */
    assert_string_equal(hostw_recorded(),
                        "chown 0:0 /dev/vfio/9\n"
                        "echo 0000:00:02.2 > /sys/bus/pci/drivers/vfio-pci/unbind\n"
                        "echo > /sys/bus/pci/devices/0000:00:02.2/driver_override\n"
                        "echo 0000:00:02.2 > /sys/bus/pci/drivers_probe\n");
    hostw_record(false);
    assert_string_equal(driver_of(b, "0000:00:02.1"), "vfio-pci");
    assert_string_equal(driver_of(b, "0000:00:02.2"), "i915");
    json_t *inv = alloc_inventory_json(b->st, &b->cfg, true);
    json_t *u = unit_in(inv, "vfs", "vf:0000:00:02.1");
    assert_true(json_is_true(json_object_get(u, "in_use")));
    assert_string_equal(str(u, "session"), "1111111111111111");
    assert_false(
        json_is_true(json_object_get(unit_in(inv, "vfs", "vf:0000:00:02.2"), "in_use")));
    json_decref(inv);
    /* the live session ends later: its VF goes back to i915 too */
    alloc_release(b->st, &b->cfg, "1111111111111111");
    assert_string_equal(driver_of(b, "0000:00:02.1"), "i915");
}

#define SESSION_A "aaaaaaaaaaaaaaaa"
#define SESSION_B "bbbbbbbbbbbbbbbb"

/* An iGPU without VFs is one card: passed through whole, or shared out as VFs, never
 * both — however the requests interleave (a request's claims are made before its
 * checks, so one in flight is seen). */
static void a_card_and_its_vfs_exclude_each_other(void **state)
{
    struct bench *b = *state;
    struct vm_spec spec;
    struct session_error e;
    char err[256];
    b->cfg.allow_host_console = true; /* the iGPU shows the console */
    assert_int_equal(hostw_write(b->tree, PF "/sriov_numvfs", "0", err, sizeof(err)), 0);

    /* A's VF request has claimed its VF and its use of the PF, and not made VFs yet */
    assert_int_equal(store_alloc_claim(b->st, "gpu", "vf:0000:00:02.1", SESSION_A, "{}"),
                     1);
    assert_int_equal(store_alloc_claim(b->st, "share", "0000:00:02.0/" SESSION_A,
                                       SESSION_A, "{\"use\":\"VF 0000:00:02.1\"}"),
                     1);
    hostw_record(true);
    assert_busy(b, SESSION_B, SPEC_GPU_PASSTHROUGH,
                "gpu: every GPU that can be passed through is in use: 0000:00:02.0 "
                "(shared by session " SESSION_A " (VF 0000:00:02.1)); try again later");
    assert_string_equal(hostw_recorded(), ""); /* i915 keeps the card */
    assert_string_equal(driver_of(b, "0000:00:02.0"), "i915");
    store_alloc_release(b->st, SESSION_A);

    /* B's passthrough request has claimed the card: A's VF request makes no VFs */
    assert_int_equal(store_alloc_claim(b->st, "gpu", "pci:0000:00:02.0", SESSION_B, "{}"),
                     1);
    assert_int_equal(ask(b->st, &b->cfg, SESSION_A, SPEC_GPU_VF, NULL, &spec, &e), -1);
    assert_int_equal(e.kind, SESSION_BUSY);
    assert_non_null(strstr(e.message,
                           "gpu: every SR-IOV VF is in use: 0000:00:02.1 (its "
                           "PF 0000:00:02.0 is passed through to session " SESSION_B
                           "), 0000:00:02.2 (its PF"));
    assert_non_null(strstr(e.message, " more; try again later"));
    assert_string_equal(hostw_recorded(), "");
    assert_string_equal(fx_get(b->tree, PF "/sriov_numvfs"), "0");
    hostw_record(false);
    store_alloc_release(b->st, SESSION_B);

    /* the two at once, again and again: never both */
    for (int round = 0; round < 8; round++) {
        struct request reqs[2] = {{.b = b, .id = SESSION_A, .gpu = SPEC_GPU_VF},
                                  {.b = b, .id = SESSION_B, .gpu = SPEC_GPU_PASSTHROUGH}};
        race(reqs, 2);
        assert_false(reqs[0].rc == 0 && reqs[1].rc == 0);
        /* the loser is told the other has it (or, when the VFs were made before the
         * card was looked at, that a card with VFs is not passed whole) */
        for (int i = 0; i < 2; i++)
            if (reqs[i].rc)
                assert_true(reqs[i].e.kind == SESSION_BUSY ||
                            (i == 1 && strstr(reqs[i].e.message, "VFs are enabled")));
        assert_string_equal(driver_of(b, "0000:00:02.0"),
                            reqs[1].rc == 0 ? "vfio-pci" : "i915");
        alloc_release(b->st, &b->cfg, SESSION_A);
        alloc_release(b->st, &b->cfg, SESSION_B);
        assert_int_equal(hostw_write(b->tree, PF "/sriov_numvfs", "0", err, sizeof(err)),
                         0);
    }

    /* one after the other: the VF session makes the VFs, and the card is then not a
     * card to pass through */
    assert_int_equal(ask(b->st, &b->cfg, SESSION_A, SPEC_GPU_VF, NULL, &spec, &e), 0);
    assert_string_equal(fx_get(b->tree, PF "/sriov_numvfs"), "7");
    assert_int_equal(
        ask(b->st, &b->cfg, SESSION_B, SPEC_GPU_PASSTHROUGH, NULL, &spec, &e), -1);
    assert_non_null(strstr(e.message, "its 7 SR-IOV VFs are enabled"));
    alloc_release(b->st, &b->cfg, SESSION_A);
}

/* virgl sessions render on the iGPU's render node: the card is not passed through
 * under them, and a render node on a card passed through is not handed out. */
static void a_render_node_in_use_keeps_its_card(void **state)
{
    struct bench *b = *state;
    struct vm_spec spec;
    struct session_error e;
    char err[256];
    b->cfg.allow_host_console = true;
    assert_int_equal(hostw_write(b->tree, PF "/sriov_numvfs", "0", err, sizeof(err)), 0);
    assert_int_equal(ask(b->st, &b->cfg, SESSION_A, SPEC_GPU_VIRGL, NULL, &spec, &e), 0);
    assert_string_equal(spec.gpu_grant.render_node, "/dev/dri/renderD128");
    assert_busy(b, SESSION_B, SPEC_GPU_PASSTHROUGH,
                "gpu: every GPU that can be passed through is in use: 0000:00:02.0 "
                "(shared by session " SESSION_A " (render node renderD128)); try again "
                "later");
    json_t *inv = alloc_inventory_json(b->st, &b->cfg, true);
    json_t *node = unit_in(inv, "render_nodes", "render:renderD128");
    assert_int_equal(num(node, "users"), 1);
    assert_false(json_is_true(json_object_get(node, "in_use"))); /* shared */
    assert_true(json_is_true(
        json_object_get(unit_in(inv, "gpus", "pci:0000:00:02.0"), "in_use")));
    json_decref(inv);

    alloc_release(b->st, &b->cfg, SESSION_A);
    assert_int_equal(
        ask(b->st, &b->cfg, SESSION_B, SPEC_GPU_PASSTHROUGH, NULL, &spec, &e), 0);
    assert_string_equal(driver_of(b, "0000:00:02.0"), "vfio-pci");
    assert_busy(b, SESSION_A, SPEC_GPU_VIRGL,
                "gpu: 0000:00:02.0, which the render node renderD128 is on, is passed "
                "through to session " SESSION_B "; try again later");
    alloc_release(b->st, &b->cfg, SESSION_B);
    assert_string_equal(driver_of(b, "0000:00:02.0"), "i915");
}

/* A VF that another tool bound to vfio-pci and a process holds is busy; one bound to
 * vfio-pci that nobody holds (vfio-pci.ids= at boot) is there to use, and stays bound
 * after. */
static void vfio_devices_held_elsewhere_are_busy(void **state)
{
    struct bench *b = *state;
    struct vm_spec spec;
    struct session_error e;
    char path[PATH_MAX];
    fx_bind(b->tree, "0000:00:02.1", "vfio-pci");
    fx_bind(b->tree, "0000:00:02.2", "vfio-pci");
    /* process 4242 has the first one's group open */
    fs_join(path, sizeof(path), b->tree, "/proc/4242/fd");
    fs_mkdir_p(path, 0755);
    fx_put(b->tree, "/proc/4242/comm", "qemu-system-x86\n");
    fx_symlink(b->tree, "/proc/4242/fd/17", "/dev/vfio/8");

    assert_int_equal(ask(b->st, &b->cfg, SESSION_A, SPEC_GPU_VF, NULL, &spec, &e), 0);
    assert_string_equal(spec.gpu_grant.fn[0].addr, "0000:00:02.2");
    assert_string_equal(spec.gpu_grant.fn[0].orig_driver, "vfio-pci");
    json_t *inv = alloc_inventory_json(b->st, &b->cfg, true);
    json_t *u = unit_in(inv, "vfs", "vf:0000:00:02.1");
    assert_true(json_is_true(json_object_get(u, "in_use")));
    assert_null(json_object_get(u, "session"));
    assert_string_equal(str(u, "held_by"), "bound to vfio-pci by something else: "
                                           "process 4242 (qemu-system-x86) holds it");
    assert_int_equal(
        num(json_object_get(json_object_get(inv, "gpu_kinds"), "vf"), "free"), 5);
    json_decref(inv);
    alloc_release(b->st, &b->cfg, SESSION_A);
    assert_string_equal(driver_of(b, "0000:00:02.2"), "vfio-pci");
    assert_string_equal(driver_of(b, "0000:00:02.1"), "vfio-pci");

    /* when it is the last one, the refusal says who holds it */
    for (int f = 2; f <= 7; f++) {
        char unit[32];
        snprintf(unit, sizeof(unit), "vf:0000:00:02.%d", f);
        assert_int_equal(store_alloc_claim(b->st, "gpu", unit, SESSION_B, "{}"), 1);
    }
    assert_int_equal(ask(b->st, &b->cfg, SESSION_A, SPEC_GPU_VF, NULL, &spec, &e), -1);
    assert_int_equal(e.kind, SESSION_BUSY);
    assert_non_null(strstr(
        e.message, "gpu: every SR-IOV VF is in use: 0000:00:02.1 (bound "
                   "to vfio-pci by something else: process 4242 "
                   "(qemu-system-x86) holds it), 0000:00:02.2 (session " SESSION_B ")"));
}

/* The kernel counts mediated instances. The host view says how many each type has
 * made and for whom; a request for a full type is 409 naming the sessions holding
 * it — also when two requests race for the last instance and one loses to the
 * kernel's count. */
static void mdev_instances_are_counted_and_named(void **state)
{
    struct bench *b = *state;
    struct vm_spec spec;
    struct session_error e;
    assert_int_equal(
        ask(b->st, &b->cfg, SESSION_A, SPEC_GPU_MDEV, "GVTg_V5_4", &spec, &e), 0);
    assert_int_equal(
        ask(b->st, &b->cfg, SESSION_B, SPEC_GPU_MDEV, "GVTg_V5_4", &spec, &e), 0);
    assert_int_equal(
        ask(b->st, &b->cfg, "cccccccccccccccc", SPEC_GPU_MDEV, "GVTg_V5_4", &spec, &e),
        -1);
    assert_int_equal(e.kind, SESSION_BUSY);
    /* named in the order of their devices' UUIDs */
    assert_non_null(strstr(e.message, "gpu: mdev: i915-GVTg_V5_4 on 0000:00:02.0 has no "
                                      "free instance (held by session "));
    assert_non_null(strstr(e.message, "session " SESSION_A));
    assert_non_null(strstr(e.message, "session " SESSION_B));
    assert_non_null(strstr(e.message, "); try again later"));
    json_t *inv = alloc_inventory_json(b->st, &b->cfg, true);
    json_t *t = unit_in(inv, "mdev_types", "mdev:0000:00:02.0/i915-GVTg_V5_4");
    assert_true(json_is_true(json_object_get(t, "usable")));
    assert_true(json_is_true(json_object_get(t, "in_use")));
    assert_int_equal(num(t, "capacity"), 0);
    assert_int_equal(num(t, "used"), 2);
    assert_int_equal(strlen(str(t, "held_by")), 2 * strlen("session " SESSION_A) + 2);
    assert_non_null(strstr(str(t, "held_by"), SESSION_A));
    assert_non_null(strstr(str(t, "held_by"), SESSION_B));
    json_t *kind = json_object_get(json_object_get(inv, "gpu_kinds"), "mdev");
    assert_int_equal(num(kind, "total"), 7);
    assert_int_equal(num(kind, "free"), 5);
    json_decref(inv);
    alloc_release(b->st, &b->cfg, SESSION_B);

    /* two requests for the last instance, again and again: one gets it, the other is
     * told it is busy, never that the device failed */
    for (int round = 0; round < 8; round++) {
        struct request reqs[2];
        for (int i = 0; i < 2; i++) {
            reqs[i] = (struct request){.b = b, .gpu = SPEC_GPU_MDEV, .type = "GVTg_V5_4"};
            snprintf(reqs[i].id, sizeof(reqs[i].id), "%016x", 0x2000 + round * 2 + i);
        }
        race(reqs, 2);
        assert_int_equal((reqs[0].rc == 0) + (reqs[1].rc == 0), 1);
        struct request *won = reqs[0].rc == 0 ? &reqs[0] : &reqs[1];
        struct request *lost = reqs[0].rc == 0 ? &reqs[1] : &reqs[0];
        assert_int_equal(lost->e.kind, SESSION_BUSY);
        assert_non_null(
            strstr(lost->e.message, "has no free instance (held by session "));
        assert_non_null(strstr(lost->e.message, SESSION_A));
        assert_non_null(strstr(lost->e.message, won->id));
        alloc_release(b->st, &b->cfg, won->id);
    }
    alloc_release(b->st, &b->cfg, SESSION_A);
    assert_string_equal(fx_get(b->tree, "/sys/class/mdev_bus/0000:00:02.0/"
                                        "mdev_supported_types/i915-GVTg_V5_4/"
                                        "available_instances"),
                        "2");
}

/* Hugepages the store could not record are given back at once: no release would
 * find them later. */
static void hugepages_are_reserved_only_when_recorded(void **state)
{
    struct bench *b = *state;
    const char *nr = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
    struct spec_request none = {0};
    struct vm_spec spec = {.hugepages_kb = 2048, .memory_mb = 512};
    struct session_error e;
    /* this host reserved 1024 2M pages at boot: 256 of them are taken as they are */
    assert_int_equal(acquire(b->st, &b->cfg, SESSION_A, &none, &spec, &e), 0);
    assert_string_equal(fx_get(b->tree, nr), "1024");
    /* 2048 more than the 768 still spare: the pool grows by the 1280 missing */
    struct vm_spec big = {.hugepages_kb = 2048, .memory_mb = 4096};
    assert_int_equal(acquire(b->st, &b->cfg, SESSION_B, &none, &big, &e), 0);
    assert_string_equal(fx_get(b->tree, nr), "2304");
    alloc_release(b->st, &b->cfg, SESSION_B); /* what it added goes */
    assert_string_equal(fx_get(b->tree, nr), "1024");
    alloc_release(b->st, &b->cfg, SESSION_A); /* the boot pool stays */
    assert_string_equal(fx_get(b->tree, nr), "1024");

    /* the store already has a reservation under that name: this one is not kept */
    assert_int_equal(store_alloc_claim(b->st, "hugepages", "hugepages:" SESSION_B,
                                       SESSION_A, "{\"size_kb\":2048,\"count\":0}"),
                     1);
    assert_int_equal(acquire(b->st, &b->cfg, SESSION_B, &none, &spec, &e), -1);
    assert_int_equal(e.kind, SESSION_INTERNAL);
    assert_string_equal(e.message, "hugepages: the reservation could not be recorded");
    assert_string_equal(fx_get(b->tree, nr), "1024");
}

/* A USB device stays the session's while QEMU unplugs it: finding it gives nothing
 * back; detaching (once device_del is done) does. */
static void usb_devices_are_found_then_given_back(void **state)
{
    struct bench *b = *state;
    struct spec_request webcam = {.usb = {"046d:0825"}, .n_usb = 1};
    struct vm_spec spec = {0};
    struct session_error e;
    assert_int_equal(acquire(b->st, &b->cfg, SESSION_A, &webcam, &spec, &e), 0);
    struct vm_usb dev = {0};
    assert_int_equal(alloc_usb_find(b->st, SESSION_A, "046d:0825", &dev, &e), 0);
    assert_int_equal(dev.bus, 1);
    assert_string_equal(dev.devpath, "2");
    json_t *inv = alloc_inventory_json(b->st, &b->cfg, true);
    json_t *u = unit_in(inv, "usb", "usb:1-2");
    assert_true(json_is_true(json_object_get(u, "in_use")));
    assert_string_equal(str(u, "session"), SESSION_A);
    json_decref(inv);
    memset(&dev, 0, sizeof(dev));
    assert_int_equal(alloc_usb_detach(b->st, &b->cfg, SESSION_A, "1-2", &dev, &e), 0);
    assert_string_equal(dev.devpath, "2");
    assert_int_equal(alloc_usb_find(b->st, SESSION_A, "1-2", &dev, &e), -1);
    assert_int_equal(e.kind, SESSION_NOT_FOUND);
    assert_string_equal(e.message, "usb: session " SESSION_A " holds no device 1-2");
    inv = alloc_inventory_json(b->st, &b->cfg, true);
    assert_false(json_is_true(json_object_get(unit_in(inv, "usb", "usb:1-2"), "in_use")));
    json_decref(inv);
}

static int setup(void **state)
{
    (void)state;
    fx_ids();
    log_set_level(LOG_ERROR);
    fx_kernel_start(&kernel);
    hostw_record(false); /* the record is one list: threads would tangle it */
    hostw_observe(serialized_kernel, &kernel);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fx_kernel_stop();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(fifty_requests_seven_vfs, on_intel_sriov,
                                        bench_close),
        cmocka_unit_test_setup_teardown(release_survives_a_restart, on_intel_sriov,
                                        bench_close),
        cmocka_unit_test_setup_teardown(reconcile_keeps_what_live_sessions_hold,
                                        on_intel_sriov, bench_close),
        cmocka_unit_test_setup_teardown(a_card_and_its_vfs_exclude_each_other,
                                        on_intel_sriov, bench_close),
        cmocka_unit_test_setup_teardown(a_render_node_in_use_keeps_its_card,
                                        on_intel_sriov, bench_close),
        cmocka_unit_test_setup_teardown(vfio_devices_held_elsewhere_are_busy,
                                        on_intel_sriov, bench_close),
        cmocka_unit_test_setup_teardown(mdev_instances_are_counted_and_named, on_gvtg,
                                        bench_close),
        cmocka_unit_test_setup_teardown(hugepages_are_reserved_only_when_recorded,
                                        on_nvidia_passthrough, bench_close),
        cmocka_unit_test_setup_teardown(usb_devices_are_found_then_given_back, on_usb,
                                        bench_close),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

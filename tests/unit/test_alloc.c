/* Device allocation: 50 simultaneous requests for an SR-IOV VF on the captured
 * 7-VF Intel iGPU tree — each with its own connection to one store, as separate
 * processes would have — get exactly 7 VFs, bound to vfio-pci; the other 43 are
 * told the VFs are busy; releasing the sessions gives all 7 back. */
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

static char *tree;
static char db[PATH_MAX];
static struct config cfg;
static pthread_mutex_t kernel_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t start_line;
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

struct request {
    char id[SESSION_ID_LEN];
    int rc;
    struct session_error e;
    struct vm_spec spec;
};

static void *ask_for_vf(void *arg)
{
    struct request *r = arg;
    char err[256];
    struct store *st = store_open(db, err, sizeof(err));
    assert_non_null(st);
    struct spec_request req = {.gpu = SPEC_GPU_VF};
    snprintf(r->spec.name, sizeof(r->spec.name), "%s", r->id);
    r->spec.uefi = true;
    pthread_barrier_wait(&start_line);
    r->rc = alloc_acquire(st, &cfg, r->id, &req, &r->spec, NULL, &r->e);
    store_close(st);
    return NULL;
}

static void fifty_requests_seven_vfs(void **state)
{
    (void)state;
    static struct request reqs[REQUESTS];
    pthread_t threads[REQUESTS];
    pthread_barrier_init(&start_line, NULL, REQUESTS);
    for (int i = 0; i < REQUESTS; i++) {
        snprintf(reqs[i].id, sizeof(reqs[i].id), "%016x", 0x1000 + i);
        pthread_create(&threads[i], NULL, ask_for_vf, &reqs[i]);
    }
    for (int i = 0; i < REQUESTS; i++)
        pthread_join(threads[i], NULL);

    int granted = 0, busy = 0;
    char seen[8][PCIDEV_ADDR_SIZE] = {{0}};
    for (int i = 0; i < REQUESTS; i++) {
        if (reqs[i].rc == 0) {
            const char *vf = reqs[i].spec.gpu_grant.fn[0].addr;
            for (int j = 0; j < granted; j++)
                assert_string_not_equal(seen[j], vf); /* never handed out twice */
            snprintf(seen[granted++], sizeof(seen[0]), "%s", vf);
            char rel[128];
            snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/%s/driver", vf);
            assert_string_equal(fx_link(tree, rel), "vfio-pci");
        } else {
            assert_int_equal(reqs[i].e.kind, SESSION_BUSY);
            assert_non_null(strstr(reqs[i].e.message, "in use"));
            busy++;
        }
    }
    assert_int_equal(granted, 7);
    assert_int_equal(busy, 43);

    /* the sessions end: every VF comes back, unbound from vfio-pci */
    char err[256];
    struct store *st = store_open(db, err, sizeof(err));
    for (int i = 0; i < REQUESTS; i++)
        if (reqs[i].rc == 0)
            alloc_release(st, &cfg, reqs[i].id);
    for (int j = 0; j < 7; j++) {
        char rel[128];
        snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/%s/driver", seen[j]);
        assert_string_equal(fx_link(tree, rel), "");
    }
    json_t *inv = alloc_inventory_json(st, &cfg, true);
    json_t *vfs = json_object_get(inv, "vfs");
    assert_int_equal(json_array_size(vfs), 7);
    size_t k;
    json_t *vf;
    json_array_foreach(vfs, k, vf)
        assert_false(json_is_true(json_object_get(vf, "in_use")));
    json_decref(inv);

    /* and a new request gets one again */
    struct request again = {.id = "00000000000000ff", .spec.uefi = true};
    struct spec_request req = {.gpu = SPEC_GPU_VF};
    assert_int_equal(alloc_acquire(st, &cfg, again.id, &req, &again.spec, NULL, &again.e),
                     0);
    alloc_release(st, &cfg, again.id);
    store_close(st);
}

static bool nobody_lives(const char *id, void *arg)
{
    (void)id;
    (void)arg;
    return false;
}

static void release_survives_a_restart(void **state)
{
    (void)state;
    /* a session holds a VF; the service dies; the next one finds the session gone
     * and gives the VF back from what the store recorded */
    char err[256];
    struct store *st = store_open(db, err, sizeof(err));
    struct vm_spec spec = {.uefi = true};
    struct spec_request req = {.gpu = SPEC_GPU_VF};
    struct session_error e;
    snprintf(spec.name, sizeof(spec.name), "deadbeefdeadbeef");
    assert_int_equal(alloc_acquire(st, &cfg, "deadbeefdeadbeef", &req, &spec, NULL, &e),
                     0);
    char rel[128];
    snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/%s/driver",
             spec.gpu_grant.fn[0].addr);
    assert_string_equal(fx_link(tree, rel), "vfio-pci");
    store_close(st);

    st = store_open(db, err, sizeof(err));
    alloc_reconcile(st, &cfg, nobody_lives, NULL);
    assert_string_equal(fx_link(tree, rel), "");
    json_t *inv = alloc_inventory_json(st, &cfg, true);
    size_t k;
    json_t *vf;
    json_array_foreach(json_object_get(inv, "vfs"), k, vf)
        assert_false(json_is_true(json_object_get(vf, "in_use")));
    json_decref(inv);
    store_close(st);
}

static int setup(void **state)
{
    (void)state;
    fx_ids();
    tree = fx_copy("intel-sriov");
    snprintf(db, sizeof(db), "%s/state.db", tree);
    config_defaults(&cfg);
    snprintf(cfg.sysroot, sizeof(cfg.sysroot), "%s", tree);
    fx_kernel_start(&kernel);
    hostw_record(false); /* the record is one list: threads would tangle it */
    hostw_observe(serialized_kernel, &kernel);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fx_kernel_stop();
    fx_drop(tree);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fifty_requests_seven_vfs),
        cmocka_unit_test(release_survives_a_restart),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

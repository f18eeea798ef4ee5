/* CPU topology of captured machines, pinning plans that keep sibling threads
 * together, and pinning real threads of this process. */
#include "host/cpu.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <cmocka.h>

#include "../sysfs/fixture.h"

static char err[512];

static void topologies(void **state)
{
    (void)state;
    struct cpu_topology t;
    assert_int_equal(cpu_topology_read(fx_tree("intel-sriov"), &t, err, sizeof(err)), 0);
    assert_int_equal(t.n, 16);
    assert_int_equal(t.sockets, 1);
    assert_int_equal(t.cores, 12); /* 4 P-cores with two threads, 8 E-cores with one */
    assert_int_equal(t.threads, 2);
    assert_int_equal(t.v[3].core, 4);
    assert_int_equal(t.v[9].core, 17);
    cpu_topology_free(&t);
    assert_int_equal(
        cpu_topology_read(fx_tree("nvidia-passthrough"), &t, err, sizeof(err)), 0);
    assert_int_equal(t.n, 16);
    assert_int_equal(t.cores, 8);
    assert_int_equal(t.threads, 2);
    assert_int_equal(t.v[8].core, 0); /* cpu8 is cpu0's sibling */
    cpu_topology_free(&t);
    assert_int_equal(cpu_topology_read(fx_tree("gvtg"), &t, err, sizeof(err)), 0);
    assert_int_equal(t.n, 8);
    assert_int_equal(t.cores, 8);
    assert_int_equal(t.threads, 1);
    cpu_topology_free(&t);
    assert_int_equal(cpu_topology_read(fx_tree("usb"), &t, err, sizeof(err)), -1);
    cpu_topology_free(NULL);
}

static void assert_plan(const struct cpu_plan *p, const int *cpus, unsigned n,
                        unsigned cores, unsigned threads)
{
    assert_int_equal(p->vcpus, n);
    assert_int_equal(p->sockets, 1);
    assert_int_equal(p->cores, cores);
    assert_int_equal(p->threads, threads);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(p->vcpu_cpu[i], cpus[i]);
}

static void plans_keep_siblings_together(void **state)
{
    (void)state;
    struct cpu_topology t;
    struct cpu_plan p;
    assert_int_equal(
        cpu_topology_read(fx_tree("nvidia-passthrough"), &t, err, sizeof(err)), 0);
    /* two guest cores of two threads: both threads of host cores 0 and 1 */
    assert_int_equal(cpu_plan_make(&t, 4, NULL, &p, err, sizeof(err)), 0);
    assert_plan(&p, (const int[]){0, 8, 1, 9}, 4, 2, 2);
    assert_int_equal(CPU_COUNT(&p.emulator), 12);
    assert_false(CPU_ISSET(8, &p.emulator));
    assert_true(CPU_ISSET(2, &p.emulator));
    /* an odd count: one vCPU per core, no two on one core */
    assert_int_equal(cpu_plan_make(&t, 3, NULL, &p, err, sizeof(err)), 0);
    assert_plan(&p, (const int[]){0, 1, 2}, 3, 3, 1);
    /* another session holds cpu0: its core is not whole, so pairs start at core 1 */
    cpu_set_t busy;
    CPU_ZERO(&busy);
    CPU_SET(0, &busy);
    assert_int_equal(cpu_plan_make(&t, 4, &busy, &p, err, sizeof(err)), 0);
    assert_plan(&p, (const int[]){1, 9, 2, 10}, 4, 2, 2);
    assert_false(CPU_ISSET(0, &p.emulator));
    assert_int_equal(cpu_plan_make(&t, 16, &busy, &p, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "cpus: 16 vCPUs need 16 free host CPUs to pin them; 15 of 16 "
                        "are free");
    cpu_topology_free(&t);

    /* hybrid: pairs on P-cores; more than they hold goes one per core */
    assert_int_equal(cpu_topology_read(fx_tree("intel-sriov"), &t, err, sizeof(err)), 0);
    assert_int_equal(cpu_plan_make(&t, 8, NULL, &p, err, sizeof(err)), 0);
    assert_plan(&p, (const int[]){0, 1, 2, 3, 4, 5, 6, 7}, 8, 4, 2);
    assert_int_equal(cpu_plan_make(&t, 10, NULL, &p, err, sizeof(err)), 0);
    assert_plan(&p, (const int[]){0, 2, 4, 6, 8, 9, 10, 11, 12, 13}, 10, 10, 1);
    assert_int_equal(cpu_plan_make(&t, 0, NULL, &p, err, sizeof(err)), -1);
    cpu_topology_free(&t);

    /* no SMT, every CPU used: QEMU's other threads float over the vCPUs' CPUs */
    assert_int_equal(cpu_topology_read(fx_tree("gvtg"), &t, err, sizeof(err)), 0);
    assert_int_equal(cpu_plan_make(&t, 8, NULL, &p, err, sizeof(err)), 0);
    assert_plan(&p, (const int[]){0, 1, 2, 3, 4, 5, 6, 7}, 8, 8, 1);
    assert_int_equal(CPU_COUNT(&p.emulator), 8);
    cpu_topology_free(&t);
}

struct worker {
    pthread_t thread;
    pid_t tid;
    pthread_mutex_t *lock;
    pthread_cond_t *cond;
    int *ready, *done;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    pthread_mutex_lock(w->lock);
    w->tid = (pid_t)syscall(SYS_gettid);
    (*w->ready)++;
    pthread_cond_broadcast(w->cond);
    while (!*w->done)
        pthread_cond_wait(w->cond, w->lock);
    pthread_mutex_unlock(w->lock);
    return NULL;
}

static void pins_real_threads(void **state)
{
    (void)state;
    cpu_set_t allowed, mine;
    assert_int_equal(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
    mine = allowed;
    int cpus[2] = {-1, -1};
    for (int c = 0, k = 0; c < CPU_SETSIZE && k < 2; c++)
        if (CPU_ISSET(c, &allowed))
            cpus[k++] = c;
    if (cpus[1] < 0)
        cpus[1] = cpus[0];

    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    int ready = 0, done = 0;
    struct worker w[2];
    for (int i = 0; i < 2; i++) {
        w[i] =
            (struct worker){.lock = &lock, .cond = &cond, .ready = &ready, .done = &done};
        assert_int_equal(pthread_create(&w[i].thread, NULL, work, &w[i]), 0);
    }
    pthread_mutex_lock(&lock);
    while (ready < 2)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);

    struct cpu_plan p;
    memset(&p, 0, sizeof(p));
    p.vcpus = 2;
    p.vcpu_cpu[0] = cpus[1];
    p.vcpu_cpu[1] = cpus[0];
    CPU_ZERO(&p.emulator);
    CPU_SET(cpus[0], &p.emulator);
    pid_t vcpus[2] = {w[0].tid, w[1].tid}, self = (pid_t)syscall(SYS_gettid);
    assert_int_equal(cpu_pin_plan(&p, vcpus, 2, &self, 1, err, sizeof(err)), 0);
    for (int i = 0; i < 2; i++) {
        cpu_set_t got;
        assert_int_equal(sched_getaffinity(w[i].tid, sizeof(got), &got), 0);
        assert_int_equal(CPU_COUNT(&got), 1);
        assert_true(CPU_ISSET(p.vcpu_cpu[i], &got));
    }
    cpu_set_t got;
    assert_int_equal(sched_getaffinity(self, sizeof(got), &got), 0);
    assert_true(CPU_EQUAL(&got, &p.emulator));
    assert_int_equal(cpu_pin_plan(&p, vcpus, 3, NULL, 0, err, sizeof(err)), -1);
    /* a thread that does not exist */
    assert_int_equal(cpu_pin(999999999, &p.emulator, err, sizeof(err)), -1);
    assert_string_equal(err, "pinning thread 999999999: No such process");

    pthread_mutex_lock(&lock);
    done = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < 2; i++)
        pthread_join(w[i].thread, NULL);
    assert_int_equal(sched_setaffinity(0, sizeof(mine), &mine), 0);
}

static void vendor_and_flags(void **state)
{
    (void)state;
    char v[32];
    assert_int_equal(cpu_vendor(fx_tree("intel-sriov"), v, sizeof(v)), 0);
    assert_string_equal(v, "GenuineIntel");
    assert_int_equal(cpu_vendor(fx_tree("nvidia-passthrough"), v, sizeof(v)), 0);
    assert_string_equal(v, "AuthenticAMD");
    assert_int_equal(cpu_vendor(fx_tree("usb"), v, sizeof(v)), -ENOENT);
    assert_true(cpu_has_flag(fx_tree("intel-sriov"), "vmx"));
    assert_false(cpu_has_flag(fx_tree("intel-sriov"), "svm"));
    assert_false(cpu_has_flag(fx_tree("intel-sriov"), "vm"));
    assert_true(cpu_has_flag(fx_tree("nvidia-passthrough"), "svm"));
    assert_true(cpu_has_flag(fx_tree("nvidia-passthrough"), "pdpe1gb"));
    assert_true(cpu_has_flag(fx_tree("nvidia-passthrough"), "fsrm")); /* the last one */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(topologies),
        cmocka_unit_test(plans_keep_siblings_together),
        cmocka_unit_test(pins_real_threads),
        cmocka_unit_test(vendor_and_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* cpu: the host's CPU topology (/sys/devices/system/cpu/cpuN/topology), a guest
 * topology and pinning plan that match it, and pinning threads with
 * sched_setaffinity().
 *
 * A plan keeps the two threads of a host core together: a guest with threads=2 gets
 * both hyperthreads of a core for each of its cores, so what the guest schedules as
 * siblings really shares a core. */
#ifndef QDESK_HOST_CPU_H
#define QDESK_HOST_CPU_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct cpu_thread {
    int cpu;     /* the logical CPU number */
    int package; /* physical_package_id */
    int core;    /* core_id (unique within the package) */
};

struct cpu_topology {
    struct cpu_thread *v; /* online CPUs by number */
    size_t n;
    unsigned sockets; /* packages */
    unsigned cores;   /* cores in the largest package */
    unsigned threads; /* threads of the largest core (2 with SMT, 1 without) */
};

/* Reads the online CPUs of sysroot. Returns 0, or -1 with err. Free with
 * cpu_topology_free(). */
int cpu_topology_read(const char *sysroot, struct cpu_topology *t, char *err,
                      size_t errsz);
void cpu_topology_free(struct cpu_topology *t);

#define CPU_PLAN_MAX 512

struct cpu_plan {
    unsigned vcpus; /* -smp vcpus,sockets=,cores=,threads= */
    unsigned sockets, cores, threads;
    int vcpu_cpu[CPU_PLAN_MAX]; /* the host CPU for vCPU i */
    cpu_set_t emulator;         /* QEMU's other threads (main loop, I/O, iothreads):
                                   the free CPUs the vCPUs do not use, or the vCPUs'
                                   own when none are left */
};

/* Plans vcpus vCPUs on t's CPUs that are not in busy (NULL: none busy; put other
 * sessions' CPUs and the host's reserved ones there). With SMT and an even count,
 * vCPUs come in sibling pairs on whole free cores (threads=2); otherwise one vCPU per
 * free core first, then the remaining free threads (threads=1). Returns 0, or -1 with
 * err when fewer CPUs are free than asked for. */
int cpu_plan_make(const struct cpu_topology *t, unsigned vcpus, const cpu_set_t *busy,
                  struct cpu_plan *p, char *err, size_t errsz);

/* Pins the thread tid (a vCPU thread id from QMP query-cpus-fast, or any thread) to
 * set. Returns 0, or -1 with err. */
int cpu_pin(pid_t tid, const cpu_set_t *set, char *err, size_t errsz);

/* Pins vcpu_tids[i] to p->vcpu_cpu[i] (n at most p->vcpus) and every other_tids[j]
 * (emulator and iothreads) to p->emulator. Returns 0, or -1 with err naming the
 * thread. */
int cpu_pin_plan(const struct cpu_plan *p, const pid_t *vcpu_tids, size_t n,
                 const pid_t *other_tids, size_t n_other, char *err, size_t errsz);

/* Reads vendor_id from sysroot's /proc/cpuinfo ("GenuineIntel", "AuthenticAMD"; ""
 * when it has none, as on ARM). Returns 0, or -errno. */
int cpu_vendor(const char *sysroot, char *out, size_t outsz);

/* Returns true when the first CPU in sysroot's /proc/cpuinfo lists flag. */
bool cpu_has_flag(const char *sysroot, const char *flag);

#endif

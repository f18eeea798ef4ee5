#include "host/cpu.h"

#include "host/sysfs.h"
#include "util/fs.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CPUS 4096

void cpu_topology_free(struct cpu_topology *t)
{
    if (!t)
        return;
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

int cpu_topology_read(const char *sysroot, struct cpu_topology *t, char *err,
                      size_t errsz)
{
    char list[1024];
    unsigned long bits[MAX_CPUS / (sizeof(unsigned long) * CHAR_BIT)];
    const size_t w = sizeof(unsigned long) * CHAR_BIT;
    memset(t, 0, sizeof(*t));
    if (sysfs_read(sysroot, list, sizeof(list), "/sys/devices/system/cpu/online") < 0 ||
        sysfs_parse_cpulist(list, bits, MAX_CPUS) <= 0) {
        snprintf(err, errsz,
                 "cannot read the online CPUs (/sys/devices/system/cpu/online)");
        return -1;
    }
    t->v = calloc(MAX_CPUS, sizeof(*t->v));
    if (!t->v) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    for (int c = 0; c < MAX_CPUS; c++) {
        if (!(bits[(size_t)c / w] & (1UL << ((size_t)c % w))))
            continue;
        struct cpu_thread *th = &t->v[t->n++];
        const char *dir = "/sys/devices/system/cpu/cpu%d/topology/%s";
        th->cpu = c;
        th->package = (int)sysfs_read_num(sysroot, 0, 10, dir, c, "physical_package_id");
        th->core = (int)sysfs_read_num(sysroot, c, 10, dir, c, "core_id");
    }
    /* sockets, the most cores in a package, the most threads in a core */
    struct {
        int package, core;
        unsigned threads;
    } *cores = calloc(t->n, sizeof(*cores));
    int *packages = calloc(t->n, sizeof(*packages));
    unsigned *per_pkg = calloc(t->n, sizeof(*per_pkg));
    if (!cores || !packages || !per_pkg) {
        free(cores);
        free(packages);
        free(per_pkg);
        cpu_topology_free(t);
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    size_t n_cores = 0, n_pkg = 0;
    for (size_t i = 0; i < t->n; i++) {
        size_t c = 0, p = 0;
        while (c < n_cores &&
               (cores[c].package != t->v[i].package || cores[c].core != t->v[i].core))
            c++;
        while (p < n_pkg && packages[p] != t->v[i].package)
            p++;
        if (p == n_pkg)
            packages[n_pkg++] = t->v[i].package;
        if (c == n_cores) {
            cores[n_cores].package = t->v[i].package;
            cores[n_cores++].core = t->v[i].core;
            per_pkg[p]++;
        }
        if (++cores[c].threads > t->threads)
            t->threads = cores[c].threads;
        if (per_pkg[p] > t->cores)
            t->cores = per_pkg[p];
    }
    t->sockets = (unsigned)n_pkg;
    free(cores);
    free(packages);
    free(per_pkg);
    return 0;
}

/* One host core: its threads in CPU order. */
struct core {
    int package, core;
    int cpus[8];
    unsigned n, n_free;
};

static bool is_free(const cpu_set_t *busy, int cpu)
{
    return !busy || !CPU_ISSET((size_t)cpu, busy);
}

int cpu_plan_make(const struct cpu_topology *t, unsigned vcpus, const cpu_set_t *busy,
                  struct cpu_plan *p, char *err, size_t errsz)
{
    memset(p, 0, sizeof(*p));
    if (vcpus == 0 || vcpus > CPU_PLAN_MAX) {
        snprintf(err, errsz, "cpus: %u vCPUs cannot be pinned (1..%d)", vcpus,
                 CPU_PLAN_MAX);
        return -1;
    }
    struct core *cores = calloc(t->n ? t->n : 1, sizeof(*cores));
    if (!cores) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    size_t n_cores = 0;
    unsigned n_free = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct cpu_thread *th = &t->v[i];
        if (th->cpu >= CPU_SETSIZE)
            continue;
        struct core *c = NULL;
        for (size_t j = 0; j < n_cores && !c; j++)
            if (cores[j].package == th->package && cores[j].core == th->core)
                c = &cores[j];
        if (!c) {
            c = &cores[n_cores++];
            c->package = th->package;
            c->core = th->core;
        }
        if (c->n < 8)
            c->cpus[c->n++] = th->cpu;
        if (is_free(busy, th->cpu)) {
            c->n_free++;
            n_free++;
        }
    }
    if (n_free < vcpus) {
        snprintf(err, errsz,
                 "cpus: %u vCPUs need %u free host CPUs to pin them; %u of %zu "
                 "are free",
                 vcpus, vcpus, n_free, t->n);
        free(cores);
        return -1;
    }
    cpu_set_t used;
    CPU_ZERO(&used);
    unsigned k = 0, tpc = t->threads > 1 ? t->threads : 1;
    /* whole free cores with every thread, in sibling groups */
    size_t whole = 0;
    for (size_t j = 0; j < n_cores; j++)
        whole += cores[j].n == tpc && cores[j].n_free == tpc;
    bool smt = tpc > 1 && vcpus % tpc == 0 && whole >= vcpus / tpc;
    if (smt) {
        for (size_t j = 0; j < n_cores && k < vcpus; j++)
            if (cores[j].n == tpc && cores[j].n_free == tpc)
                for (unsigned x = 0; x < tpc; x++) {
                    p->vcpu_cpu[k++] = cores[j].cpus[x];
                    CPU_SET((size_t)cores[j].cpus[x], &used);
                }
        p->threads = tpc;
    } else {
        /* one vCPU per core first, so no two vCPUs share a core unless they must */
        for (int pass = 0; pass < 2 && k < vcpus; pass++)
            for (size_t j = 0; j < n_cores && k < vcpus; j++)
                for (unsigned x = 0; x < cores[j].n && k < vcpus; x++) {
                    int cpu = cores[j].cpus[x];
                    if (!is_free(busy, cpu) || CPU_ISSET((size_t)cpu, &used))
                        continue;
                    p->vcpu_cpu[k++] = cpu;
                    CPU_SET((size_t)cpu, &used);
                    if (pass == 0)
                        break;
                }
        p->threads = 1;
    }
    /* sockets: as many as the packages the plan spans, when they divide it evenly */
    unsigned packages = 0;
    for (size_t j = 0; j < n_cores; j++) {
        bool counted = false, in_plan = false;
        for (unsigned x = 0; x < cores[j].n; x++)
            in_plan |= CPU_ISSET((size_t)cores[j].cpus[x], &used);
        for (size_t i = 0; i < j && in_plan && !counted; i++)
            for (unsigned x = 0; x < cores[i].n && !counted; x++)
                counted = cores[i].package == cores[j].package &&
                          CPU_ISSET((size_t)cores[i].cpus[x], &used);
        packages += in_plan && !counted;
    }
    unsigned guest_cores = vcpus / p->threads;
    p->sockets = packages > 1 && guest_cores % packages == 0 ? packages : 1;
    p->cores = guest_cores / p->sockets;
    p->vcpus = vcpus;
    CPU_ZERO(&p->emulator);
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].cpu < CPU_SETSIZE && is_free(busy, t->v[i].cpu) &&
            !CPU_ISSET((size_t)t->v[i].cpu, &used))
            CPU_SET((size_t)t->v[i].cpu, &p->emulator);
    if (CPU_COUNT(&p->emulator) == 0)
        p->emulator = used;
    free(cores);
    return 0;
}

int cpu_pin(pid_t tid, const cpu_set_t *set, char *err, size_t errsz)
{
    if (sched_setaffinity(tid, sizeof(*set), set) < 0) {
        snprintf(err, errsz, "pinning thread %d: %s", (int)tid, strerror(errno));
        return -1;
    }
    return 0;
}

int cpu_pin_plan(const struct cpu_plan *p, const pid_t *vcpu_tids, size_t n,
                 const pid_t *other_tids, size_t n_other, char *err, size_t errsz)
{
    if (n > p->vcpus) {
        snprintf(err, errsz, "pinning: %zu vCPU threads but the plan has %u vCPUs", n,
                 p->vcpus);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET((size_t)p->vcpu_cpu[i], &one);
        if (cpu_pin(vcpu_tids[i], &one, err, errsz) < 0)
            return -1;
    }
    for (size_t i = 0; i < n_other; i++)
        if (cpu_pin(other_tids[i], &p->emulator, err, errsz) < 0)
            return -1;
    return 0;
}

/* Returns the value of the first "key : value" line of cpuinfo, or NULL; the value
 * runs to the end of the line. */
static const char *cpuinfo_value(const char *cpuinfo, const char *key, size_t *len)
{
    size_t klen = strlen(key);
    for (const char *line = cpuinfo; line && *line;) {
        if (!strncmp(line, key, klen) &&
            (line[klen] == ' ' || line[klen] == '\t' || line[klen] == ':')) {
            const char *colon = strchr(line, ':');
            const char *end = strchr(line, '\n');
            if (colon && (!end || colon < end)) {
                colon++;
                while (*colon == ' ' || *colon == '\t')
                    colon++;
                *len = end ? (size_t)(end - colon) : strlen(colon);
                return colon;
            }
        }
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    return NULL;
}

static char *read_cpuinfo(const char *sysroot)
{
    char path[PATH_MAX];
    if (fs_join(path, sizeof(path), sysroot, "/proc/cpuinfo") < 0)
        return NULL;
    return fs_read_file(path, 16 << 20, NULL);
}

int cpu_vendor(const char *sysroot, char *out, size_t outsz)
{
    out[0] = 0;
    char *info = read_cpuinfo(sysroot);
    if (!info)
        return -errno;
    size_t len;
    const char *v = cpuinfo_value(info, "vendor_id", &len);
    if (v)
        snprintf(out, outsz, "%.*s", (int)len, v);
    free(info);
    return 0;
}

bool cpu_has_flag(const char *sysroot, const char *flag)
{
    char *info = read_cpuinfo(sysroot);
    if (!info)
        return false;
    size_t len, flen = strlen(flag);
    const char *v = cpuinfo_value(info, "flags", &len);
    bool found = false;
    for (const char *p = v; p && p < v + len && !found;) {
        size_t wl = strcspn(p, " \t\n");
        found = wl == flen && !strncmp(p, flag, flen);
        p += wl;
        p += strspn(p, " \t");
    }
    free(info);
    return found;
}

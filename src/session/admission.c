#include "session/admission.h"

#include "host/load.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *admission_reason_name(enum admission_reason r)
{
    static const char *const names[ADMIT_REASONS] = {
        "ok",
        "max_sessions",
        "max_sessions_per_user",
        "user_cpu_fraction",
        "user_memory_fraction",
        "max_load_per_core",
        "min_mem_available_mb",
    };
    return r < ADMIT_REASONS ? names[r] : "?";
}

enum admission_reason admission_check(const struct config *cfg,
                                      const struct spec_host *host,
                                      const struct admission_usage *u, unsigned cpus,
                                      uint64_t memory_mb, char *msg, size_t msgsz)
{
    char stopping[64] = "";
    if (u->sessions >= cfg->max_sessions) {
        if (u->stopping)
            snprintf(stopping, sizeof(stopping), " (%u of them stopping)", u->stopping);
        snprintf(
            msg, msgsz,
            "the host is full: %u sessions run%s and the limit (max_sessions) is %llu",
            u->sessions, stopping, (unsigned long long)cfg->max_sessions);
        return ADMIT_MAX_SESSIONS;
    }
    if (u->user_sessions >= cfg->max_sessions_per_user) {
        if (u->user_stopping)
            snprintf(stopping, sizeof(stopping),
                     " (%u of them stopping: try again in a "
                     "moment)",
                     u->user_stopping);
        snprintf(
            msg, msgsz,
            "you already have %u sessions%s; the limit (max_sessions_per_user) is %llu",
            u->user_sessions, stopping, (unsigned long long)cfg->max_sessions_per_user);
        return ADMIT_MAX_SESSIONS_PER_USER;
    }
    double cpu_limit = cfg->user_cpu_fraction * host->cores;
    if (u->user_cpus + cpus > cpu_limit + 1e-9) {
        snprintf(msg, msgsz,
                 "your sessions would hold %u of this host's %u cores; the limit "
                 "(user_cpu_fraction %.2f) allows %.0f",
                 u->user_cpus + cpus, host->cores, cfg->user_cpu_fraction, cpu_limit);
        return ADMIT_USER_CPUS;
    }
    double mem_limit = cfg->user_memory_fraction * (double)host->memory_mb;
    if ((double)(u->user_memory_mb + memory_mb) > mem_limit) {
        snprintf(msg, msgsz,
                 "your sessions would hold %llu MiB of this host's %llu MiB; the limit "
                 "(user_memory_fraction %.2f) allows %.0f MiB",
                 (unsigned long long)(u->user_memory_mb + memory_mb),
                 (unsigned long long)host->memory_mb, cfg->user_memory_fraction,
                 mem_limit);
        return ADMIT_USER_MEMORY;
    }
    double load[3];
    if (load_average(cfg->sysroot, load) == 0 &&
        load[0] / host->cores > cfg->max_load_per_core) {
        snprintf(msg, msgsz,
                 "the host is busy: its load is %.2f per core, above the limit "
                 "(max_load_per_core) %.2f; try again in a few minutes",
                 load[0] / host->cores, cfg->max_load_per_core);
        return ADMIT_LOAD;
    }
    long long avail = load_meminfo_mb(cfg->sysroot, "MemAvailable");
    if (avail >= 0 &&
        (long long)memory_mb + (long long)cfg->min_mem_available_mb > avail) {
        snprintf(
            msg, msgsz,
            "the host has too little free memory: %llu MiB asked, %lld MiB available "
            "and %llu MiB kept free (min_mem_available_mb)",
            (unsigned long long)memory_mb, avail,
            (unsigned long long)cfg->min_mem_available_mb);
        return ADMIT_MEM_AVAILABLE;
    }
    return ADMIT_OK;
}

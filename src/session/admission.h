/* admission: whether the host and the user can take one more session, decided
 * before any work is done, with a refusal that names the limit. */
#ifndef QDESK_SESSION_ADMISSION_H
#define QDESK_SESSION_ADMISSION_H

#include "config.h"
#include "qemu/spec.h"

#include <stddef.h>
#include <stdint.h>

enum admission_reason {
    ADMIT_OK,
    ADMIT_MAX_SESSIONS,
    ADMIT_MAX_SESSIONS_PER_USER,
    ADMIT_USER_CPUS,
    ADMIT_USER_MEMORY,
    ADMIT_LOAD,
    ADMIT_MEM_AVAILABLE,
    ADMIT_REASONS
};

/* The config key that sets the limit ("max_sessions", ...), used in messages and
 * as the reason label in metrics. */
const char *admission_reason_name(enum admission_reason r);

/* What is held now by live sessions, in total and by the requesting user. */
struct admission_usage {
    unsigned sessions;
    unsigned stopping; /* of sessions: still holding resources while they stop */
    unsigned user_sessions;
    unsigned user_stopping;
    unsigned user_cpus;
    uint64_t user_memory_mb;
};

/* Checks one more session of cpus and memory_mb against the config's limits, the
 * host's 1-minute load and its MemAvailable (read under cfg->sysroot). Returns
 * ADMIT_OK, or the reason with a message for the user in msg. */
enum admission_reason admission_check(const struct config *cfg,
                                      const struct spec_host *host,
                                      const struct admission_usage *usage, unsigned cpus,
                                      uint64_t memory_mb, char *msg, size_t msgsz);

#endif

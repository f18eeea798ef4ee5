/* proc: spawn programs with an explicit argv, a clean environment and closed
 * descriptors; identify processes across restarts by pid and start time. */
#ifndef QDESK_UTIL_PROC_H
#define QDESK_UTIL_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#define PROC_GROUPS_MAX 64 /* supplementary groups a spawned child may keep */

struct proc_spawn {
    char *const *argv;   /* argv[0] must be an absolute path */
    char *const *env;    /* NULL: PATH=/usr/sbin:/usr/bin:/sbin:/bin only */
    const int *pass_fds; /* descriptors the child keeps, as 3, 4, ... in order */
    size_t n_pass_fds;
    int stdout_fd;        /* -1: /dev/null */
    int stderr_fd;        /* -1: /dev/null */
    const char *cwd;      /* NULL: "/" */
    bool new_session;     /* setsid(): survives the parent and its terminal */
    bool drop_privileges; /* switch to uid, gid and groups before exec */
    uid_t uid;
    gid_t gid;
    const gid_t *groups; /* supplementary groups (proc_user_groups()); none: gid only */
    size_t n_groups;
    uint64_t limit_as;      /* RLIMIT_AS in bytes; 0: unchanged */
    uint64_t limit_cpu;     /* RLIMIT_CPU in seconds; 0: unchanged */
    uint64_t limit_memlock; /* RLIMIT_MEMLOCK in bytes; 0: unchanged */
};

/* Starts a child as described. Returns its pid, or -1 with the reason (including
 * a failed exec in the child) in err. */
pid_t proc_spawn(const struct proc_spawn *s, char *err, size_t errsz);

/* Makes s drop to uid and gid with the groups of that account (what a login would
 * give: kvm, render, ...), kept in groups (room for PROC_GROUPS_MAX), which must
 * live as long as s. Returns 0, or -1 when the account is in more groups. */
int proc_spawn_as(struct proc_spawn *s, uid_t uid, gid_t gid, gid_t *groups);

/* Looks up a user by name for spawn's privilege drop. Returns 0, or -1 with err. */
int proc_lookup_user(const char *name, uid_t *uid, gid_t *gid, char *err, size_t errsz);

/* Fills groups (room for max) with the groups a process of the user uid has after
 * a login (what initgroups() would set): gid, its primary group, and every group
 * the group database lists the user in. A uid without a passwd entry has gid
 * alone. Returns the number of groups, or -1 when the user has more than max. */
int proc_user_groups(uid_t uid, gid_t gid, gid_t *groups, size_t max);

/* Returns true when a process running as uid with groups may open a file with st's
 * owner, group and permission bits for reading and writing: root always may;
 * otherwise the owner's, the group's or the others' bits decide, whichever class
 * the process falls in first. POSIX ACLs are not read. */
bool proc_may_read_write(const struct stat *st, uid_t uid, const gid_t *groups,
                         size_t n_groups);

/* Returns true when a process running as uid (with the groups the account has)
 * may reach path and use it as mode says (R_OK, W_OK, X_OK bits of access(2), by
 * the same rules): every directory above it must be searchable. Otherwise fills
 * why with the directory or file in the way, its mode and owner. */
bool proc_user_may(const char *path, uid_t uid, gid_t gid, int mode, char *why,
                   size_t whysz);

/* Runs argv to completion within timeout_ms, capturing at most max_out bytes of its
 * standard output into a newly allocated *out (the caller frees it; may be NULL
 * when not wanted). Returns the exit status (0..255), or -1 with the reason in err
 * (spawn failure, timeout, killed by a signal); on a non-zero exit err holds the
 * first line of the program's standard error. */
int proc_run(const struct proc_spawn *s, int timeout_ms, char **out, size_t max_out,
             char *err, size_t errsz);

/* Reads the start time of pid (clock ticks since boot, /proc/PID/stat field 22)
 * from proc_root ("/proc" normally). Returns 0, or -errno. */
int proc_start_time(const char *proc_root, pid_t pid, uint64_t *ticks);

/* Returns true when pid is alive and still the process that started at ticks
 * (a recycled pid is not the same process). */
bool proc_is_same(pid_t pid, uint64_t ticks);

/* Finds an executable by name in the standard system directories. Returns 0 and
 * the absolute path in out, or -1. */
int proc_find_exe(const char *name, char *out, size_t outsz);

/* Returns a pidfd for pid (pidfd_open), or -errno. */
int proc_pidfd(pid_t pid);

/* Returns the monotonic clock in milliseconds. */
uint64_t proc_now_ms(void);

#endif

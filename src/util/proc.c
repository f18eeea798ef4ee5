#include "util/proc.h"

#include "util/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char *const default_env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};

/* In the child: reports errno and the failed step to the parent, then exits. */
static _Noreturn void child_fail(int report_fd, const char *step)
{
    char msg[160];
    int n = snprintf(msg, sizeof(msg), "%s: %s", step, strerror(errno));
    if (n > 0 && write(report_fd, msg, (size_t)n) < 0) {
        /* nothing more can be done */
    }
    _exit(127);
}

/* Arranges the child's descriptors: /dev/null or the given fds as 0, 1, 2; the
 * descriptors to pass as 3, 4, ...; the report pipe right after them; everything
 * else closed. Every kept descriptor is first lifted above the target range so no
 * move clobbers another. Returns the report pipe's new number. */
static int child_fds(const struct proc_spawn *s, int report_fd)
{
    if (s->n_pass_fds > 64) {
        errno = EMFILE;
        child_fail(report_fd, "too many descriptors to pass");
    }
    int floor = 4 + (int)s->n_pass_fds, lifted[64];
    int devnull = open("/dev/null", O_RDWR);
    int null_fd = devnull >= 0 ? fcntl(devnull, F_DUPFD, floor) : -1;
    int out = fcntl(s->stdout_fd >= 0 ? s->stdout_fd : null_fd, F_DUPFD, floor);
    int err = fcntl(s->stderr_fd >= 0 ? s->stderr_fd : null_fd, F_DUPFD, floor);
    int report = fcntl(report_fd, F_DUPFD_CLOEXEC, floor);
    if (null_fd < 0 || out < 0 || err < 0 || report < 0)
        child_fail(report_fd, "arrange standard descriptors");
    for (size_t i = 0; i < s->n_pass_fds; i++)
        if ((lifted[i] = fcntl(s->pass_fds[i], F_DUPFD, floor)) < 0)
            child_fail(report, "lift passed descriptor");
    if (dup2(null_fd, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        child_fail(report, "dup2 standard descriptors");
    for (size_t i = 0; i < s->n_pass_fds; i++)
        if (dup2(lifted[i], 3 + (int)i) < 0)
            child_fail(report, "dup2 passed descriptor");
    int placed = floor - 1;
    if (dup3(report, placed, O_CLOEXEC) < 0)
        child_fail(report, "dup3 report pipe");
    if (syscall(SYS_close_range, floor, ~0U, 0) < 0)
        child_fail(placed, "close_range");
    return placed;
}

pid_t proc_spawn(const struct proc_spawn *s, char *err, size_t errsz)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        snprintf(err, errsz, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errsz, "fork: %s", strerror(errno));
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (pid == 0) {
        int report = pipefd[1];
        close(pipefd[0]);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int sig = 1; sig < NSIG; sig++)
            signal(sig, SIG_DFL);
        if (s->new_session && setsid() < 0)
            child_fail(report, "setsid");
        report = child_fds(s, report);
        if (chdir(s->cwd ? s->cwd : "/") < 0)
            child_fail(report, "chdir");
        if (s->limit_as) {
            struct rlimit rl = {s->limit_as, s->limit_as};
            if (setrlimit(RLIMIT_AS, &rl) < 0)
                child_fail(report, "setrlimit(RLIMIT_AS)");
        }
        if (s->limit_cpu) {
            struct rlimit rl = {s->limit_cpu, s->limit_cpu};
            if (setrlimit(RLIMIT_CPU, &rl) < 0)
                child_fail(report, "setrlimit(RLIMIT_CPU)");
        }
        if (s->limit_memlock) {
            struct rlimit rl = {s->limit_memlock, s->limit_memlock};
            if (setrlimit(RLIMIT_MEMLOCK, &rl) < 0)
                child_fail(report, "setrlimit(RLIMIT_MEMLOCK)");
        }
        if (s->drop_privileges) {
            if (setgroups(s->n_groups ? s->n_groups : 1,
                          s->n_groups ? s->groups : &s->gid) < 0)
                child_fail(report, "setgroups");
            if (setresgid(s->gid, s->gid, s->gid) < 0)
                child_fail(report, "setresgid");
            if (setresuid(s->uid, s->uid, s->uid) < 0)
                child_fail(report, "setresuid");
            if (s->uid != 0 && setuid(0) == 0) {
                errno = EPERM;
                child_fail(report, "privileges could be regained");
            }
        }
        execve(s->argv[0], s->argv, s->env ? s->env : default_env);
        child_fail(report, s->argv[0]);
    }
    close(pipefd[1]);
    char msg[200];
    ssize_t n;
    do
        n = read(pipefd[0], msg, sizeof(msg) - 1);
    while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n > 0) {
        msg[n] = 0;
        snprintf(err, errsz, "%s", msg);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

int proc_spawn_as(struct proc_spawn *s, uid_t uid, gid_t gid, gid_t *groups)
{
    int n = proc_user_groups(uid, gid, groups, PROC_GROUPS_MAX);
    if (n < 0)
        return -1;
    s->drop_privileges = true;
    s->uid = uid;
    s->gid = gid;
    s->groups = groups;
    s->n_groups = (size_t)n;
    return 0;
}

int proc_lookup_user(const char *name, uid_t *uid, gid_t *gid, char *err, size_t errsz)
{
    struct passwd pw, *found = NULL;
    char buf[4096];
    int rc = getpwnam_r(name, &pw, buf, sizeof(buf), &found);
    if (rc != 0 || !found) {
        snprintf(err, errsz, "user '%s' does not exist%s%s", name, rc ? ": " : "",
                 rc ? strerror(rc) : "");
        return -1;
    }
    *uid = found->pw_uid;
    *gid = found->pw_gid;
    return 0;
}

int proc_user_groups(uid_t uid, gid_t gid, gid_t *groups, size_t max)
{
    struct passwd pw, *found = NULL;
    char buf[4096];
    if (max == 0)
        return -1;
    if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) != 0 || !found) {
        groups[0] = gid;
        return 1;
    }
    int n = max > INT_MAX ? INT_MAX : (int)max;
    return getgrouplist(found->pw_name, gid, groups, &n) < 0 ? -1 : n;
}

/* The permission check of access(2) for mode (R_OK | W_OK | X_OK bits), from st's
 * owner, group and bits alone. */
static bool may(const struct stat *st, uid_t uid, const gid_t *groups, size_t n_groups,
                int mode)
{
    mode_t want = (mode_t)(mode & 7);
    if (uid == 0)
        return true;
    if (st->st_uid == uid)
        return ((st->st_mode >> 6) & want) == want;
    for (size_t i = 0; i < n_groups; i++)
        if (groups[i] == st->st_gid)
            return ((st->st_mode >> 3) & want) == want;
    return (st->st_mode & want) == want;
}

bool proc_may_read_write(const struct stat *st, uid_t uid, const gid_t *groups,
                         size_t n_groups)
{
    return may(st, uid, groups, n_groups, R_OK | W_OK);
}

bool proc_user_may(const char *path, uid_t uid, gid_t gid, int mode, char *why,
                   size_t whysz)
{
    gid_t groups[PROC_GROUPS_MAX];
    int n = proc_user_groups(uid, gid, groups, PROC_GROUPS_MAX);
    char part[PATH_MAX];
    struct stat st;
    if (n < 0)
        n = 0;
    if (snprintf(part, sizeof(part), "%s", path) >= (int)sizeof(part)) {
        snprintf(why, whysz, "%s: path too long", path);
        return false;
    }
    /* each directory from the root down, then the path itself */
    for (char *slash = part; slash;) {
        slash = strchr(slash + 1, '/');
        if (slash)
            *slash = 0;
        bool last = !slash;
        int want = last ? mode : X_OK;
        if (part[0] && stat(part, &st) < 0) {
            snprintf(why, whysz, "%s: %s", part, strerror(errno));
            return false;
        }
        if (part[0] && !may(&st, uid, groups, (size_t)n, want)) {
            snprintf(why, whysz, "%s (mode %04o, owner %u:%u) does not let it %s", part,
                     (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
                     (unsigned)st.st_gid,
                     !last || !(want & (R_OK | W_OK)) ? "enter"
                     : want & W_OK                    ? "write"
                                                      : "read");
            return false;
        }
        if (slash)
            *slash = '/';
    }
    return true;
}

uint64_t proc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Appends what is readable on fd to *buf (bounded by max; the rest is drained and
 * dropped). Returns 0 on EOF, 1 when more may come. */
static int drain(int fd, char **buf, size_t *len, size_t max)
{
    char chunk[4096];
    ssize_t r = read(fd, chunk, sizeof(chunk));
    if (r < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : 0;
    if (r == 0)
        return 0;
    size_t take = *len + (size_t)r > max ? max - *len : (size_t)r;
    if (take > 0) {
        char *p = realloc(*buf, *len + take + 1);
        if (p) {
            memcpy(p + *len, chunk, take);
            *len += take;
            p[*len] = 0;
            *buf = p;
        }
    }
    return 1;
}

int proc_run(const struct proc_spawn *s, int timeout_ms, char **out, size_t max_out,
             char *err, size_t errsz)
{
    int opipe[2], epipe[2];
    if (pipe2(opipe, O_CLOEXEC) < 0) {
        snprintf(err, errsz, "pipe: %s", strerror(errno));
        return -1;
    }
    if (pipe2(epipe, O_CLOEXEC) < 0) {
        snprintf(err, errsz, "pipe: %s", strerror(errno));
        close(opipe[0]);
        close(opipe[1]);
        return -1;
    }
    struct proc_spawn run = *s;
    run.stdout_fd = opipe[1];
    run.stderr_fd = epipe[1];
    pid_t pid = proc_spawn(&run, err, errsz);
    close(opipe[1]);
    close(epipe[1]);
    if (pid < 0) {
        close(opipe[0]);
        close(epipe[0]);
        return -1;
    }

    char *obuf = NULL, *ebuf = NULL;
    size_t olen = 0, elen = 0;
    struct pollfd pfd[2] = {{opipe[0], POLLIN, 0}, {epipe[0], POLLIN, 0}};
    uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
    bool timed_out = false;
    while (pfd[0].fd >= 0 || pfd[1].fd >= 0) {
        uint64_t now = proc_now_ms();
        if (now >= deadline) {
            timed_out = true;
            break;
        }
        int r = poll(pfd, 2, (int)(deadline - now));
        if (r < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (pfd[i].fd < 0 || !pfd[i].revents)
                continue;
            int more = i == 0 ? drain(pfd[i].fd, &obuf, &olen, max_out)
                              : drain(pfd[i].fd, &ebuf, &elen, 4096);
            if (!more) {
                close(pfd[i].fd);
                pfd[i].fd = -1;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (pfd[i].fd >= 0)
            close(pfd[i].fd);
    if (timed_out)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;

    int rc;
    if (timed_out) {
        snprintf(err, errsz, "%s did not finish within %d ms", s->argv[0], timeout_ms);
        rc = -1;
    } else if (WIFSIGNALED(status)) {
        snprintf(err, errsz, "%s was killed by signal %d", s->argv[0], WTERMSIG(status));
        rc = -1;
    } else {
        rc = WEXITSTATUS(status);
        if (rc != 0)
            snprintf(err, errsz, "%s", ebuf ? ebuf : "");
        err[strcspn(err, "\n")] = 0;
    }
    free(ebuf);
    if (out && rc >= 0)
        *out = obuf ? obuf : strdup("");
    else
        free(obuf);
    return rc;
}

int proc_start_time(const char *proc_root, pid_t pid, uint64_t *ticks)
{
    char path[256], rel[64];
    snprintf(rel, sizeof(rel), "/%d/stat", (int)pid);
    if (fs_join(path, sizeof(path), proc_root, rel) < 0)
        return -ENAMETOOLONG;
    char *stat = fs_read_file(path, 4096, NULL);
    if (!stat)
        return -errno;
    /* The command name may hold spaces and parentheses: fields resume after the
     * last ')'. Field 3 (state) follows it; start time is field 22. */
    char *p = strrchr(stat, ')');
    int rc = -EINVAL;
    if (p) {
        p++;
        for (int field = 3; field < 22 && p; field++)
            p = strchr(p + 1, ' ');
        unsigned long long t;
        if (p && sscanf(p, " %llu", &t) == 1) {
            *ticks = t;
            rc = 0;
        }
    }
    free(stat);
    return rc;
}

bool proc_is_same(pid_t pid, uint64_t ticks)
{
    uint64_t now;
    if (pid <= 0 || proc_start_time("/proc", pid, &now) < 0)
        return false;
    if (now != ticks)
        return false;
    /* A zombie is not alive. */
    char path[64], state[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (fs_read_line(path, state, sizeof(state)) < 0)
        return false;
    char *p = strrchr(state, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

int proc_find_exe(const char *name, char *out, size_t outsz)
{
    static const char *const dirs[] = {"/usr/bin", "/usr/sbin", "/usr/libexec",
                                       "/bin",     "/sbin",     "/usr/local/bin"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if (snprintf(out, outsz, "%s/%s", dirs[i], name) >= (int)outsz)
            return -1;
        if (access(out, X_OK) == 0)
            return 0;
    }
    return -1;
}

int proc_pidfd(pid_t pid)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : fd;
}

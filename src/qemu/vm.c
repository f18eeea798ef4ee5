#include "qemu/vm.h"

#include "net/tap.h"
#include "net/usernet.h"
#include "qemu/cmdline.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void path_in(const char *rundir, const char *file, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%s", rundir, file);
}

static int give_to(const struct vm_user *user, const char *path, char *err, size_t errsz)
{
    if (!user || !user->set || chown(path, user->uid, user->gid) == 0)
        return 0;
    snprintf(err, errsz, "chown %s: %s", path, strerror(errno));
    return -1;
}

int vm_check_runbase(const struct vm_user *user, const char *runbase, char *err,
                     size_t errsz)
{
    char why[PATH_MAX + 100];
    if (!user->set || proc_user_may(runbase, user->uid, user->gid, X_OK, why, sizeof(why)))
        return 0;
    snprintf(err, errsz,
             "the QEMU user %s cannot reach its run directories in %s: %s; let it enter "
             "every directory above (chmod o+x), or set [paths] state elsewhere",
             user->name, runbase, why);
    return -1;
}

/* Checks that QEMU, running as user, may read a file it is given (what names it). */
static int user_reads(const struct vm_user *user, const char *what, const char *path,
                      char *err, size_t errsz)
{
    char why[PATH_MAX + 100];
    if (!user->set || !path[0] ||
        proc_user_may(path, user->uid, user->gid, R_OK, why, sizeof(why)))
        return 0;
    snprintf(err, errsz,
             "%s %s is not readable by the QEMU user %s: %s; make it readable by that "
             "user or its group",
             what, path, user->name, why);
    return -1;
}

/* Makes s run as user (when set), with the user's groups. Returns 0, or -1 with
 * err. */
static int as_user(struct proc_spawn *s, const struct vm_user *user, gid_t *groups,
                   char *err, size_t errsz)
{
    if (!user->set || proc_spawn_as(s, user->uid, user->gid, groups) == 0)
        return 0;
    snprintf(err, errsz, "the QEMU user %s ([qemu] qemu_user) is in more than %d groups",
             user->name, PROC_GROUPS_MAX);
    return -1;
}

/* Runs qemu-img as user with argv (NULL-terminated, after the program name). */
static int run_qemu_img(const char *qemu_img, const struct vm_user *user,
                        const char *const *args, char *err, size_t errsz)
{
    char *argv[16] = {(char *)qemu_img};
    size_t n = 1;
    for (size_t i = 0; args[i] && n < 15; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    struct proc_spawn s = {.argv = argv,
                           .stdout_fd = -1,
                           .stderr_fd = -1,
                           .limit_as = 1ULL << 30,
                           .limit_cpu = 30};
    gid_t groups[PROC_GROUPS_MAX];
    char why[512] = "";
    if (as_user(&s, user, groups, err, errsz) < 0)
        return -1;
    int rc = proc_run(&s, 30000, NULL, 0, why, sizeof(why));
    if (rc != 0) {
        snprintf(err, errsz, "qemu-img %s failed: %s", args[0], why[0] ? why : "unknown");
        return -1;
    }
    return 0;
}

int vm_prepare(const struct vm_spec *s, const char *qemu_img, const struct vm_user *user,
               char *err, size_t errsz)
{
    char path[PATH_MAX + 32];
    if (!qemu_img || !qemu_img[0] || access(qemu_img, X_OK) < 0) {
        snprintf(err, errsz, "qemu-img is not installed (Debian package qemu-utils)");
        return -1;
    }
    for (size_t i = 0; i < s->n_chain; i++)
        if (user_reads(user, "image", s->chain[i].path, err, errsz) < 0)
            return -1;
    if (user_reads(user, "kernel", s->kernel, err, errsz) < 0 ||
        user_reads(user, "initrd", s->initrd, err, errsz) < 0 ||
        (s->uefi && user_reads(user, "firmware", s->fw_code, err, errsz) < 0))
        return -1;
    /* made (or made again) before every guest on the default network starts */
    if (s->net == SPEC_NET_USER && !user->set) {
        snprintf(err, errsz,
                 "net: the firewall that keeps guests off the host matches the QEMU user, "
                 "and QEMU has none of its own here ([qemu] qemu_user)");
        return -1;
    }
    if (s->net == SPEC_NET_USER && usernet_firewall(&s->usernet, user->uid, err, errsz) < 0)
        return -1;
    if (mkdir(s->rundir, 0700) < 0) {
        snprintf(err, errsz, "cannot create run directory %s: %s", s->rundir,
                 strerror(errno));
        return -1;
    }
    if (give_to(user, s->rundir, err, errsz) < 0)
        goto fail;

    if (s->n_chain > 0 && !s->cdrom) {
        path_in(s->rundir, RUNDIR_OVERLAY, path, sizeof(path));
        const char *args[] = {
            "create",         "-q", "-f", "qcow2", "-F", s->chain[0].format, "-b",
            s->chain[0].path, path, NULL};
        if (run_qemu_img(qemu_img, user, args, err, errsz) < 0)
            goto fail;
    }
    if (s->cdrom) {
        char size[32];
        snprintf(size, sizeof(size), "%uG", s->data_disk_gb);
        path_in(s->rundir, RUNDIR_DATA, path, sizeof(path));
        const char *args[] = {"create", "-q", "-f", "qcow2", path, size, NULL};
        if (run_qemu_img(qemu_img, user, args, err, errsz) < 0)
            goto fail;
    }
    if (s->uefi) {
        path_in(s->rundir, RUNDIR_VARS, path, sizeof(path));
        int rc = fs_copy_file(s->fw_vars, path, 0600);
        if (rc < 0) {
            snprintf(err, errsz, "cannot copy UEFI variables %s: %s (Debian package %s)",
                     s->fw_vars, strerror(-rc),
                     strcmp(s->arch, "aarch64") ? "ovmf" : "qemu-efi-aarch64");
            goto fail;
        }
        if (give_to(user, path, err, errsz) < 0)
            goto fail;
    }
    return 0;

fail:
    fs_remove_tree(s->rundir);
    return -1;
}

/* Ends the network helper (when it runs and is still the process started) and reaps
 * it. */
static void stop_net(struct vm *vm)
{
    if (vm->net_pid <= 0)
        return;
    if (vm->net_child) {
        kill(vm->net_pid, SIGKILL);
        while (waitpid(vm->net_pid, NULL, 0) < 0 && errno == EINTR)
            ;
    } else if (proc_is_same(vm->net_pid, vm->net_start_time)) {
        kill(vm->net_pid, SIGKILL);
        for (int i = 0; i < 100 && proc_is_same(vm->net_pid, vm->net_start_time); i++)
            usleep(10000); /* not ours to reap: init does, soon */
    }
    vm->net_pid = 0;
}

/* Starts passt for s as user, in a session of its own, with one end of a new
 * socketpair as its descriptor 3. Returns the other end (close-on-exec) for QEMU, or
 * -1 with err. */
static int spawn_net(struct vm *vm, const struct vm_spec *s, const struct vm_user *user,
                     char *err, size_t errsz)
{
    int sv[2], logfd = -1, rc = -1;
    char path[PATH_MAX + 32];
    struct argv a;
    argv_init(&a);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        snprintf(err, errsz, "socketpair for the network helper: %s", strerror(errno));
        return -1;
    }
    path_in(s->rundir, USERNET_LOG, path, sizeof(path));
    if ((logfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0) {
        snprintf(err, errsz, "cannot create %s: %s", path, strerror(errno));
        goto cleanup;
    }
    if (usernet_build_argv(&a, &s->usernet) < 0) {
        snprintf(err, errsz, "%s", a.err);
        goto cleanup;
    }
    struct proc_spawn sp = {.argv = a.v,
                            .pass_fds = &sv[0],
                            .n_pass_fds = 1,
                            .stdout_fd = logfd,
                            .stderr_fd = logfd,
                            .cwd = s->rundir,
                            .new_session = true};
    gid_t groups[PROC_GROUPS_MAX];
    char why[256] = "";
    pid_t pid = -1;
    if (as_user(&sp, user, groups, err, errsz) == 0 &&
        (pid = proc_spawn(&sp, why, sizeof(why))) < 0)
        snprintf(err, errsz, "the network helper %s did not start: %s", s->usernet.passt,
                 why);
    if (pid < 0)
        goto cleanup;
    vm->net_pid = pid;
    vm->net_child = true;
    if (proc_start_time("/proc", pid, &vm->net_start_time) < 0)
        vm->net_start_time = 0;
    rc = sv[1];
    sv[1] = -1;
cleanup:
    close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    if (logfd >= 0)
        close(logfd);
    argv_free(&a);
    return rc;
}

int vm_spawn(struct vm *vm, const struct vm_spec *s, const struct argv *a,
             const struct vm_user *user, char *err, size_t errsz)
{
    char display[48];
    snprintf(display, sizeof(display), "DISPLAY=%s", s->x_display);
    /* SDL asks libdbus for a session bus, which would fork dbus-launch — and the
     * sandbox kills QEMU for spawning. There is no bus to find: say so. */
    char *const x_env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", display,
                           "DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent", NULL};
    char path[PATH_MAX + 32];
    memset(vm, 0, sizeof(*vm));
    snprintf(vm->rundir, sizeof(vm->rundir), "%s", s->rundir);
    if (access(s->qemu, X_OK) < 0) {
        snprintf(err, errsz, "%s is not installed (Debian package %s)", s->qemu,
                 strcmp(s->arch, "aarch64") ? "qemu-system-x86" : "qemu-system-arm");
        return -1;
    }
    /* Keep the command line beside the VM for whoever debugs it. */
    char *text = argv_format(a);
    path_in(s->rundir, "cmdline", path, sizeof(path));
    if (text)
        fs_write_file(path, text, strlen(text), 0600);
    free(text);

    /* Descriptor 3 of QEMU: the tap (bridge) or its end of the socketpair to passt
     * (user), as the builder's -netdev says. */
    int net_fd = -1;
    char tap_name[IFNAMSIZ];
    if (s->net == SPEC_NET_BRIDGE &&
        (net_fd = tap_open(s->bridge, tap_name, sizeof(tap_name), err, errsz)) < 0)
        return -1;
    if (s->net == SPEC_NET_USER && (net_fd = spawn_net(vm, s, user, err, errsz)) < 0)
        return -1;
    path_in(s->rundir, RUNDIR_LOG, path, sizeof(path));
    int logfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0) {
        snprintf(err, errsz, "cannot create %s: %s", path, strerror(errno));
        goto fail;
    }
    struct proc_spawn sp = {
        .argv = a->v,
        .env = s->virgl_sdl ? x_env : NULL,
        .pass_fds = &net_fd,
        .n_pass_fds = net_fd >= 0 ? 1 : 0,
        .stdout_fd = logfd,
        .stderr_fd = logfd,
        .cwd = s->rundir,
        .new_session = true,
        /* vfio pins all guest memory (plus QEMU's own) */
        .limit_memlock = s->gpu_grant.n_fn || s->gpu_grant.mdev_sysfsdev[0]
                             ? (s->memory_mb + 1024) << 20
                             : 0,
    };
    /* QEMU keeps its user's groups (kvm, render, ...), as a login would. */
    gid_t groups[PROC_GROUPS_MAX];
    pid_t pid = as_user(&sp, user, groups, err, errsz) < 0 ? -1 : proc_spawn(&sp, err, errsz);
    close(logfd);
    if (pid < 0)
        goto fail;
    /* QEMU holds it now: the tap lives as long as QEMU, and passt quits when QEMU's
     * end of the socket closes */
    close(net_fd);
    if (s->net == SPEC_NET_BRIDGE)
        log_info("%s: tap %s on bridge %s", s->name, tap_name, s->bridge);
    vm->pid = pid;
    vm->child = true;
    if (proc_start_time("/proc", pid, &vm->start_time) < 0)
        vm->start_time = 0;
    return 0;

fail:
    if (net_fd >= 0)
        close(net_fd);
    stop_net(vm);
    return -1;
}

int vm_adopt(struct vm *vm, const char *rundir, pid_t pid, uint64_t start_time,
             pid_t net_pid, uint64_t net_start_time)
{
    memset(vm, 0, sizeof(*vm));
    snprintf(vm->rundir, sizeof(vm->rundir), "%s", rundir);
    if (net_pid > 0 && proc_is_same(net_pid, net_start_time)) {
        vm->net_pid = net_pid;
        vm->net_start_time = net_start_time;
    }
    if (!proc_is_same(pid, start_time))
        return -1;
    vm->pid = pid;
    vm->start_time = start_time;
    return 0;
}

bool vm_net_alive(struct vm *vm)
{
    if (vm->net_pid <= 0)
        return false;
    if (vm->net_child) {
        pid_t r = waitpid(vm->net_pid, NULL, WNOHANG);
        if (r == vm->net_pid || (r < 0 && errno == ECHILD)) {
            vm->net_pid = 0;
            return false;
        }
        return true;
    }
    if (!proc_is_same(vm->net_pid, vm->net_start_time))
        vm->net_pid = 0;
    return vm->net_pid > 0;
}

bool vm_alive(struct vm *vm)
{
    if (vm->pid <= 0)
        return false;
    if (vm->child) {
        int status;
        pid_t r = waitpid(vm->pid, &status, WNOHANG);
        if (r == vm->pid || (r < 0 && errno == ECHILD)) {
            vm->exit_status = r == vm->pid ? status : 0;
            vm->pid = 0;
            return false;
        }
        return true;
    }
    if (!proc_is_same(vm->pid, vm->start_time)) {
        vm->pid = 0;
        return false;
    }
    return true;
}

bool vm_wait_exit(struct vm *vm, int timeout_ms)
{
    if (!vm_alive(vm))
        return true;
    int pidfd = proc_pidfd(vm->pid);
    uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
    while (vm_alive(vm)) {
        uint64_t now = proc_now_ms();
        if (now >= deadline)
            break;
        if (pidfd >= 0) {
            struct pollfd p = {pidfd, POLLIN, 0};
            poll(&p, 1, (int)(deadline - now));
        } else {
            usleep(20000);
        }
    }
    if (pidfd >= 0)
        close(pidfd);
    return !vm_alive(vm);
}

int vm_connect(struct vm *vm, int timeout_ms, char *err, size_t errsz)
{
    char path[PATH_MAX + 32];
    path_in(vm->rundir, RUNDIR_QMP, path, sizeof(path));
    uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (!vm_alive(vm)) {
            char line[400];
            vm_last_log_line(vm->rundir, line, sizeof(line));
            snprintf(err, errsz, "QEMU exited while starting: %s",
                     line[0] ? line : "it gave no reason (see qemu.log)");
            return -1;
        }
        if (fs_exists(path)) {
            char why[256];
            vm->qmp = qmp_connect(path, 2000, why, sizeof(why));
            if (vm->qmp)
                return 0;
        }
        if (proc_now_ms() >= deadline) {
            snprintf(err, errsz, "QEMU did not open its QMP socket within %d ms",
                     timeout_ms);
            return -1;
        }
        vm_wait_exit(vm, 10);
    }
}

/* Sends SIGKILL only to the very process we started. */
static void kill_vm(struct vm *vm)
{
    if (vm_alive(vm) && (vm->child || proc_is_same(vm->pid, vm->start_time)))
        kill(vm->pid, SIGKILL);
}

void vm_stop_escalate(struct vm *vm, int grace_ms)
{
    if (!vm_alive(vm))
        return;
    uint64_t now = proc_now_ms();
    switch (vm->stop_phase) {
    case VM_STOP_NONE:
        vm->stop_phase = VM_STOP_POWERDOWN;
        vm->stop_deadline = now + (uint64_t)grace_ms;
        if (vm->qmp && qmp_send(vm->qmp, "system_powerdown", NULL, NULL, 0) == 0)
            return;
        /* without QMP the power button cannot be pressed */
        __attribute__((fallthrough));
    case VM_STOP_POWERDOWN:
        vm->stop_phase = VM_STOP_QUIT;
        vm->stop_deadline = now + VM_QUIT_TIMEOUT_MS;
        if (vm->qmp && qmp_send(vm->qmp, "quit", NULL, NULL, 0) == 0)
            return;
        __attribute__((fallthrough));
    case VM_STOP_QUIT:
    case VM_STOP_KILL:
        vm->stop_phase = VM_STOP_KILL;
        vm->stop_deadline = now + VM_QUIT_TIMEOUT_MS;
        kill_vm(vm);
        return;
    }
}

int vm_stop_tick(struct vm *vm)
{
    if (vm->stop_phase == VM_STOP_NONE || !vm_alive(vm))
        return -1;
    uint64_t now = proc_now_ms();
    if (now >= vm->stop_deadline) {
        if (vm->stop_phase == VM_STOP_KILL) {
            log_error("%s: QEMU (pid %d) survives SIGKILL", vm->rundir, (int)vm->pid);
            return -1;
        }
        vm_stop_escalate(vm, 0);
        now = proc_now_ms();
    }
    return vm->stop_deadline > now ? (int)(vm->stop_deadline - now) : 0;
}

void vm_cleanup(struct vm *vm)
{
    kill_vm(vm);
    vm_wait_exit(vm, 5000);
    stop_net(vm);
    qmp_close(vm->qmp);
    vm->qmp = NULL;
    if (vm->rundir[0]) {
        int rc = fs_remove_tree(vm->rundir);
        if (rc < 0)
            log_warn("cannot remove %s: %s", vm->rundir, strerror(-rc));
    }
}

/* Copies the last non-empty line of RUNDIR/file into out. */
static void last_line(const char *rundir, const char *file, char *out, size_t outsz)
{
    char path[PATH_MAX + 32];
    path_in(rundir, file, path, sizeof(path));
    out[0] = 0;
    char *log = fs_read_file(path, 1 << 20, NULL);
    if (!log)
        return;
    char *end = log + strlen(log);
    while (end > log && (end[-1] == '\n' || end[-1] == ' '))
        *--end = 0;
    char *start = strrchr(log, '\n');
    start = start ? start + 1 : log;
    /* QEMU prefixes messages with a timestamp (-msg timestamp=on): drop it. */
    char *sp = strchr(start, ' ');
    if (sp && start[0] >= '0' && start[0] <= '9' && sp - start >= 20 && sp[-1] == 'Z')
        start = sp + 1;
    snprintf(out, outsz, "%s", start);
    free(log);
}

void vm_last_log_line(const char *rundir, char *out, size_t outsz)
{
    last_line(rundir, RUNDIR_LOG, out, outsz);
}

void vm_net_last_log_line(const char *rundir, char *out, size_t outsz)
{
    last_line(rundir, USERNET_LOG, out, outsz);
}

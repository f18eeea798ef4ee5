/* vm: one QEMU process and its run directory — prepare, spawn, watch, stop,
 * clean up.
 *
 * QEMU runs in its own session so it outlives a restart of the service; the pid
 * and the process start time identify it afterwards (a recycled pid is never
 * mistaken for it). */
#ifndef QDESK_QEMU_VM_H
#define QDESK_QEMU_VM_H

#include "qemu/qmp.h"
#include "qemu/spec.h"
#include "util/argv.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define RUNDIR_LOG "qemu.log" /* QEMU's standard error */

/* How long QEMU has to quit when told to, before it is killed. */
#define VM_QUIT_TIMEOUT_MS 5000

enum vm_stop_phase {
    VM_STOP_NONE,      /* not stopping */
    VM_STOP_POWERDOWN, /* the ACPI power button was pressed; the guest shuts down */
    VM_STOP_QUIT,      /* QEMU was told to quit */
    VM_STOP_KILL,      /* SIGKILL was sent */
};

struct vm {
    char rundir[PATH_MAX];
    pid_t pid;           /* 0: not running */
    uint64_t start_time; /* clock ticks since boot, from /proc/PID/stat */
    bool child;          /* started by this process: reaped with waitpid() */
    int exit_status;     /* after the child was reaped: waitpid() status */
    /* the network helper (passt, net = user), identified the same way */
    pid_t net_pid; /* 0: none */
    uint64_t net_start_time;
    bool net_child;
    struct qmp *qmp;
    enum vm_stop_phase stop_phase;
    uint64_t stop_deadline; /* monotonic ms when the phase escalates */
};

/* Checks that user (when set) may enter runbase, where the run directories are
 * made. Returns 0, or -1 with err naming the directory in the way and the fix. */
int vm_check_runbase(const struct vm_user *user, const char *runbase, char *err,
                     size_t errsz);

/* Creates s's run directory (mode 0700, owned by user) with what QEMU opens there:
 * the qcow2 overlay over the image (explicit backing format), the blank data disk
 * beside an ISO, the per-session copy of the UEFI variables. qemu_img is an
 * absolute path; it runs as user, who must be able to read every file QEMU opens
 * read-only (the image chain, kernel, initrd, firmware). On failure nothing is
 * left behind. Returns 0, or -1 with err. */
int vm_prepare(const struct vm_spec *s, const char *qemu_img, const struct vm_user *user,
               char *err, size_t errsz);

/* Starts the argv a (built for s) in a new session with a clean environment (PATH,
 * and DISPLAY for a virgl guest that renders in X), as user; QEMU's standard error
 * goes to RUNDIR/qemu.log. A bridged guest gets its tap device, made here and
 * passed as descriptor 3; a guest on the default network gets passt, started here
 * first (as user, in a session of its own, its errors in RUNDIR/passt.log), and
 * its end of their socketpair as descriptor 3. A guest with vfio devices may lock
 * all its memory. Fills vm. Returns 0, or -1 with err, leaving no process. */
int vm_spawn(struct vm *vm, const struct vm_spec *s, const struct argv *a,
             const struct vm_user *user, char *err, size_t errsz);

/* Waits at most timeout_ms for QMP to answer. Fails early, with QEMU's last
 * complaint from qemu.log in err, when QEMU exits first. Returns 0, or -1. */
int vm_connect(struct vm *vm, int timeout_ms, char *err, size_t errsz);

/* Takes over a QEMU started earlier (by a previous run of the service): checks
 * that pid is still the process that started at start_time, and takes its network
 * helper (net_pid, 0 for none) when that still runs too, so that vm_cleanup() ends
 * it even when QEMU is gone. Does not connect QMP. Returns 0, or -1 when QEMU is
 * gone. */
int vm_adopt(struct vm *vm, const char *rundir, pid_t pid, uint64_t start_time,
             pid_t net_pid, uint64_t net_start_time);

/* Returns true while the network helper runs (false when there is none); reaps it
 * when it is our child and has exited. */
bool vm_net_alive(struct vm *vm);

/* Copies the last line of the network helper's log (RUNDIR/passt.log) into out
 * ("" when none). */
void vm_net_last_log_line(const char *rundir, char *out, size_t outsz);

/* Returns true while QEMU runs; reaps it when it is our child and has exited. */
bool vm_alive(struct vm *vm);

/* Waits at most timeout_ms for QEMU to exit. Returns true when it has. */
bool vm_wait_exit(struct vm *vm, int timeout_ms);

/* Starts or hurries a graceful stop without waiting: the first call presses the
 * ACPI power button and allows grace_ms; each further call moves on at once to
 * "quit" (allowing VM_QUIT_TIMEOUT_MS), then to SIGKILL. Without QMP the phases
 * that need it are skipped. vm->stop_phase says where the stop is. */
void vm_stop_escalate(struct vm *vm, int grace_ms);

/* Escalates a stop whose phase has outlived its deadline. Returns the ms until the
 * next deadline, or -1 when no stop is under way or QEMU is gone. Call it when
 * that time has passed. */
int vm_stop_tick(struct vm *vm);

/* Kills QEMU and its network helper if they still run, reaps them, closes QMP and
 * removes the run directory with everything in it. Safe to call more than once. */
void vm_cleanup(struct vm *vm);

/* Copies the last non-empty line of RUNDIR/qemu.log into out ("" when none). */
void vm_last_log_line(const char *rundir, char *out, size_t outsz);

#endif

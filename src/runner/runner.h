/* runner: where a session's VM runs. session/ knows a VM only through this
 * interface, so it never assumes a local child process; each runner is one
 * struct runner_ops with the same entry points, like the GPU kinds and the auth
 * backends.
 *
 *   local     QEMU on this host (qemu/): a run directory, an overlay, a process in
 *             its own session, QMP, a VNC unix socket. The first implementation; it
 *             wraps what session.c does today without changing it.
 *   kubevirt  a VirtualMachineInstance on a Kubernetes cluster running KubeVirt
 *             (runner/kubevirt.c, the API client in runner/k8s.c, the VMI in
 *             runner/vmi.c). [runner kubevirt] in the config.
 *
 * The life of one VM through the seam, and where each step runs:
 *
 *   plan       loop    checks the resolved VM (qemu/spec.c's struct vm_spec) against
 *                      what this runner can give, builds what start needs (local: the
 *                      argv; kubevirt: the VMI JSON) and returns the runner_vm.
 *                      Refusals are the user's (400, naming the field): nothing is
 *                      made yet, so nothing needs undoing.
 *   prepare    worker  the slow, blocking part, touching only the runner_vm (local:
 *                      run directory, overlay, UEFI vars; kubevirt: the cloud-init
 *                      Secret and the POST of the VMI). On failure it undoes itself.
 *   start      loop    makes it run and starts watching (local: spawn, pidfd, QMP;
 *                      kubevirt: the shared VMI watch now reports this VMI).
 *   events     loop    the runner calls runner_events.state() as the VM moves:
 *                      STARTING (with a message while the cluster schedules it, e.g.
 *                      "waiting for a node with nvidia.com/gpu"), RUNNING, and one
 *                      final STOPPED (the guest powered off, or the stop finished) or
 *                      FAILED (QEMU crashed, the VMI failed, it was unschedulable:
 *                      the message says why, for the user).
 *   stop       loop    a graceful stop within grace_s (local: power button, quit,
 *                      SIGKILL; kubevirt: DELETE with gracePeriodSeconds, which
 *                      KubeVirt turns into an ACPI shutdown then a kill). Ends with
 *                      one STOPPED or FAILED event. hurry moves on at once.
 *   release    loop    gives back what the VM held outside the session store (local:
 *                      the run directory; kubevirt: the Secret, a VMI still there)
 *                      and frees the runner_vm. Safe after any step above.
 *
 *   reattach   loop    after a restart of the service: from the placement the store
 *                      kept, finds the VM again (local: same pid and start time;
 *                      kubevirt: GET the VMI, same metadata.uid) or says it is gone.
 *   sweep      loop    after reattaching: what the runner holds that no live session
 *                      owns (local: run directories; kubevirt: VMIs and Secrets with
 *                      qdesk's labels) is cleaned up, or listed for the caller.
 *
 * While it runs:
 *   open_display  a connected stream the proxy reads RFB from and writes RFB to,
 *                 exactly as it does vnc.sock today (local: connect(vnc.sock);
 *                 kubevirt: one end of a socketpair whose other end a bridge thread
 *                 carries over the VMI's VNC subresource WebSocket). Asynchronous:
 *                 the cluster's TLS and Upgrade take round trips. The proxy's
 *                 view-only filter and continuous updates are unchanged: they parse
 *                 the RFB on this stream, whatever is behind it.
 *   screenshot    PNG bytes (local: QMP screendump; kubevirt: vnc/screenshot).
 *   serial        the console so far (local: serial.log; kubevirt: not yet — the
 *                 VMI's console subresource is a WebSocket like vnc, which the same
 *                 bridge can carry into a log).
 *   usb_attach/detach  hot-plug (local: QMP device_add/device_del; KubeVirt has no
 *                 host-device hot-plug for VMIs, so not offered).
 *   capacity      what admission may still place: local reads the host (load,
 *                 MemAvailable) as admission.c does today; kubevirt reads the
 *                 namespace's ResourceQuota (namespaced: no cluster-wide RBAC).
 *
 * caps tell the layers above what a runner offers, so the web layer answers "not
 * offered by this runner" (409) instead of failing late. In particular KubeVirt
 * admits ONE VNC connection per VMI: a second one closes the first (virt-handler,
 * pkg/virt-handler/rest/console.go newStopChan, kubevirt v1.9.0). A runner without
 * RUNNER_CAP_SHARED_DISPLAY needs the proxy to fan one display stream out to its
 * viewers (or to refuse a second viewer); see README, "Sessions on a cluster".
 *
 * Placement: every VM records which runner runs it and a reference the runner
 * alone reads back (struct runner_placement), kept with the session in the store.
 *
 * Threads: every entry point except prepare runs on the loop's thread, and every
 * callback is called there, never from inside the call that asked for it. A
 * runner's own threads (the kubevirt watch, display bridges) hand their results
 * to the loop through a descriptor the loop watches. */
#ifndef QDESK_RUNNER_RUNNER_H
#define QDESK_RUNNER_RUNNER_H

#include "qemu/spec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct config;
struct runner;
struct runner_vm;

enum runner_cap {
    RUNNER_CAP_SHARED_DISPLAY = 1u << 0, /* open_display may be called for many viewers
                                            at once */
    RUNNER_CAP_SCREENSHOT = 1u << 1,
    RUNNER_CAP_SERIAL = 1u << 2,
    RUNNER_CAP_USB_HOTPLUG = 1u << 3,
    RUNNER_CAP_QMP = 1u << 4, /* vCPU pinning after start, QMP events */
};

/* Where a VM runs, as the store keeps it. */
struct runner_placement {
    char runner[64]; /* the [runner NAME] that placed it: "local", "kubevirt", ... */
    char ref[512];   /* the runner's own reference: local "PID START_TIME RUNDIR",
                        kubevirt "NAMESPACE/NAME UID"; opaque to everyone else */
    char node[128];  /* where it landed, for people: this host, or the cluster node
                        ("" until the cluster has scheduled it) */
};

enum runner_state {
    RUNNER_STARTING, /* accepted; not running yet (message: what it waits for) */
    RUNNER_RUNNING,  /* the guest runs and its display can be opened */
    RUNNER_STOPPED,  /* final: the guest powered off, or a stop finished */
    RUNNER_FAILED,   /* final: it crashed or could not be placed; message says why */
};

/* What the layer above hears from a VM, on the loop. After a final state nothing
 * more is reported for vm; the caller then calls release. */
struct runner_events {
    void (*state)(struct runner_vm *vm, enum runner_state st, const char *message,
                  void *arg);
    void *arg;
};

/* What plan is given: the resolved VM and what the resolved VM does not carry. */
struct runner_launch {
    const char *session_id;    /* 16 hex characters; names and labels the VM */
    const char *owner;         /* the user, for labels and logs */
    const struct vm_spec *spec; /* resolved by spec_resolve() (and alloc for local) */
    const struct catalog_machine *machine; /* its sidecar: kubevirt_disk, ... */
    const char *gpu_type;      /* the mdev type asked for ("" any) */
    const char *const *usb;    /* the USB devices asked for, as the user wrote them */
    size_t n_usb;
    const char *user_data;     /* cloud-init #cloud-config, or NULL for no seed */
    const char *network_config; /* cloud-init network-config v2, or NULL */
    bool seed_has_secret;      /* user_data holds a password: keep it in a Secret */
};

struct runner_capacity {
    bool known;          /* false: the runner cannot tell (no quota): admit, and let
                            placement fail with its reason */
    unsigned cpus_free;  /* vCPUs that may still be requested */
    uint64_t memory_free_mb;
    char why[256];       /* when something is exhausted: what, for the refusal */
};

/* Called once with the stream, or with -1 and the reason. The callee owns fd. */
typedef void (*runner_display_cb)(struct runner_vm *vm, int fd, const char *err,
                                  void *arg);
/* Called once with PNG bytes (owned by the callee, free()), or NULL and the reason. */
typedef void (*runner_screenshot_cb)(struct runner_vm *vm, void *png, size_t len,
                                     const char *err, void *arg);

struct runner_ops {
    const char *kind; /* "local", "kubevirt" */
    unsigned caps;    /* enum runner_cap */

    /* Returns the VM for l (nothing is created yet), or NULL with err naming the
     * field and what is allowed. */
    struct runner_vm *(*plan)(struct runner *r, const struct runner_launch *l,
                              const struct runner_events *ev, char *err, size_t errsz);
    /* On a worker thread. Returns 0, or -1 with err (and nothing left behind). */
    int (*prepare)(struct runner_vm *vm, char *err, size_t errsz);
    /* Returns 0 (events follow), or -1 with err. */
    int (*start)(struct runner_vm *vm, char *err, size_t errsz);
    void (*stop)(struct runner_vm *vm, unsigned grace_s, bool hurry);
    /* After release no callback of vm's (events, display, screenshot) is called. */
    void (*release)(struct runner_vm *vm);

    /* Returns the VM found again from p (events follow, starting with its state now),
     * or NULL with why when it is gone. */
    struct runner_vm *(*reattach)(struct runner *r, const struct runner_placement *p,
                                  const struct runner_events *ev, char *why,
                                  size_t whysz);
    /* Removes what the runner holds for sessions that live() says are not live
     * (logging each). It may do so later (kubevirt: when its list of the cluster's
     * VMIs comes back), so live and arg must stay valid while r lives. */
    void (*sweep)(struct runner *r, bool (*live)(const char *session_id, void *arg),
                  void *arg);

    /* Returns 0 (cb follows), or -1 with err (cb not called). */
    int (*open_display)(struct runner_vm *vm, runner_display_cb cb, void *arg, char *err,
                        size_t errsz);
    int (*screenshot)(struct runner_vm *vm, runner_screenshot_cb cb, void *arg,
                      char *err, size_t errsz);
    /* Fills *out (malloc'd, the caller frees) with at most max bytes of the console's
     * end. Returns 0, or -1 with err. */
    int (*serial)(struct runner_vm *vm, char **out, size_t *len, size_t max, char *err,
                  size_t errsz);
    int (*capacity)(struct runner *r, struct runner_capacity *out, char *err,
                    size_t errsz);

    void (*placement)(const struct runner_vm *vm, struct runner_placement *out);
    void (*free)(struct runner *r);
};

/* One configured runner: its ops and its own state. */
struct runner {
    const struct runner_ops *ops;
    char name[64]; /* its [runner NAME] */
    void *priv;
};

#define RUNNER_LABEL_SESSION "qdesk.io/session" /* label value: the session id */
#define RUNNER_LABEL_OWNER   "qdesk.io/owner"
#define RUNNER_LABEL_MANAGED "app.kubernetes.io/managed-by" /* value "qdesk" */

#endif

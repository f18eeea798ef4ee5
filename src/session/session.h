/* session: the life of one desktop, from a user's request to a cleaned-up run
 * directory. This is the spine of qdesk; read it after README's source tour.
 *
 *   request (web/api.c, cli) ─► sessions_create()
 *       admission  — refuses politely, before any work, when the host or the user
 *                    is at a limit (admission.c)
 *       resolve    — spec_resolve(): every field checked (qemu/spec.c)
 *       allocate   — exclusive devices, recorded in the store
 *       prepare    — run directory, overlay, firmware vars (qemu/vm.c), on a
 *                    worker thread: the loop keeps serving viewers meanwhile
 *       spawn      — QEMU in its own session, pid + start time recorded
 *
 *   creating ─► starting ─► running ─► stopping ─► stopped
 *       └───────────┴───────────┴──────────┴──────► failed
 *
 *   starting → running when QMP answers; running → stopping on DELETE, expiry,
 *   the last viewer of a one-shot link leaving, or service stop-all; a QEMU that
 *   exits on its own makes the session stopped (the guest powered off) or failed
 *   (it crashed), and everything it held is freed at once.
 *
 * The service keeps every live session in memory (struct sessions) and writes
 * each change through to the store (store.c), so `kill -9` of the service loses
 * nothing: on start, sessions_reconcile() reattaches every VM that still runs
 * (same pid and start time, QMP answers) and cleans up those that died.
 *
 * Viewers reach a session by token: the control token (full input) or the view
 * token (the proxy drops all input). Tokens are 256-bit random capabilities. */
#ifndef QDESK_SESSION_H
#define QDESK_SESSION_H

#include "config.h"
#include "qemu/spec.h"
#include "qemu/vm.h"

#include <stdbool.h>
#include <stdint.h>

#define SESSION_ID_LEN    17 /* 16 hex characters */
#define SESSION_TOKEN_LEN 44 /* 43 base64url characters: 256 random bits */

enum session_state {
    SESSION_CREATING,
    SESSION_STARTING,
    SESSION_RUNNING,
    SESSION_STOPPING,
    SESSION_STOPPED,
    SESSION_FAILED,
    SESSION_STATES
};

const char *session_state_name(enum session_state st);
/* Returns the state for a name, or -1. */
int session_state_parse(const char *name);
/* True for creating, starting, running and stopping: the session holds resources. */
bool session_state_live(enum session_state st);

struct loop_timer;
struct qmp_call;

struct session {
    /* persistent: written through to the store */
    char id[SESSION_ID_LEN];
    enum session_state state;
    char machine[SPEC_NAME_MAX];
    char owner[64];
    unsigned cpus;
    uint64_t memory_mb;
    int64_t created_at; /* unix seconds */
    int64_t expires_at;
    int64_t ended_at; /* 0 while live */
    char control_token[SESSION_TOKEN_LEN];
    char view_token[SESSION_TOKEN_LEN];
    bool oneshot;
    bool persistent;
    char rundir[PATH_MAX];
    int pid;
    uint64_t start_time;
    int net_pid; /* the network helper (passt) beside QEMU; 0: none */
    uint64_t net_start_time;
    char error[512];        /* why it failed, for the user */
    char gpu[80];           /* what the user asked for, e.g. "virgl" */
    unsigned viewers_total; /* connections ever admitted (a one-shot link admits one) */
    char warning[512];      /* something the user should know (virgl without 3D) */
    bool pin_cpus;

    /* runtime */
    struct sessions *mgr; /* the manager that owns it */
    struct vm vm;
    int pidfd;
    int net_pidfd; /* the network helper's: its end is noticed and told */
    struct loop_timer *expiry; /* stops the session at expires_at */
    struct loop_timer *poll;   /* start-up: waits for QMP; stopping: escalates */
    uint64_t start_deadline;   /* monotonic ms: QMP must answer by then */
    char qmp_caps_id[48];      /* the capabilities command awaiting its reply */
    unsigned viewers;          /* connected now */
    bool guest_shutdown;       /* QMP said the guest powered itself off */
    struct qmp_call *calls;    /* QMP commands awaiting their replies */
    struct session *next;
};

/* Why a request was refused; the HTTP layer maps kind to a status. */
enum session_refusal {
    SESSION_OK,
    SESSION_BAD_REQUEST, /* 400: a field; the message names it and what is allowed */
    SESSION_NOT_FOUND,   /* 404 */
    SESSION_FORBIDDEN,   /* 403 */
    SESSION_BUSY,        /* 409: a device is held by another session */
    SESSION_FULL,        /* 503: a host or user limit; the message names it */
    SESSION_INTERNAL,    /* 500: the host failed us (disk full, QEMU missing) */
};

struct session_error {
    enum session_refusal kind;
    char code[32];     /* machine-readable: "invalid_field", "host_full", ... */
    char message[600]; /* for people: names the field or the limit */
};

/* Fills e (for the modules that refuse on the session layer's behalf). */
void session_refuse(struct session_error *e, enum session_refusal kind, const char *code,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

struct sessions;
struct store;
struct loop;
struct workq;

/* Counters for /metrics. */
struct sessions_stats {
    unsigned by_state[SESSION_STATES];
    uint64_t creates;
    uint64_t failures;
    uint64_t refusals[8]; /* indexed by enum admission_reason (admission.h) */
    unsigned viewers;
};

/* Creates the session manager; it loads the catalogue and probes the host, and
 * prepares new sessions' disks on work's threads. Returns NULL with err. */
struct sessions *sessions_new(const struct config *cfg, struct loop *loop,
                              struct store *store, struct workq *work, char *err,
                              size_t errsz);
/* Frees the manager without touching the VMs: they keep running for the next
 * start of the service. */
void sessions_free(struct sessions *ss);

/* Loads the stored sessions: reattaches every live VM that still runs, cleans up
 * those that died while the service was away. Returns the number reattached. */
int sessions_reconcile(struct sessions *ss);

/* Called once a create has an outcome: s (owned by the manager) is starting, or
 * stopped when it was stopped while being created; or s is NULL and e says why it
 * could not start (then nothing of it is left). */
typedef void (*sessions_created_cb)(struct session *s, const struct session_error *e,
                                    void *arg);
/* Creates and starts a session for owner. Everything that can be refused (fields,
 * admission, devices) is checked now: returns -1 with the refusal in e, leaving
 * nothing behind. Otherwise returns 0 with the session listed as creating; its
 * disks and firmware are prepared on a worker thread (the loop goes on), then QEMU
 * is spawned, and done(s, e, arg) runs on the loop, never from inside this call. */
int sessions_create(struct sessions *ss, const char *owner,
                    const struct spec_request *req, sessions_created_cb done, void *arg,
                    struct session_error *e);

struct session *sessions_find(struct sessions *ss, const char *id);
/* Finds the session a viewer token opens (only a live one unless ended is true),
 * and whether it is the view-only token. Comparison is constant-time. */
struct session *sessions_by_token(struct sessions *ss, const char *token, bool ended,
                                  bool *view_only);

/* Starts stopping a live session (graceful: power button, then quit, then kill).
 * Returns 0, or -1 when it is not live. */
int sessions_stop(struct sessions *ss, struct session *s, const char *why);
/* Stops every live session; returns how many. */
int sessions_stop_all(struct sessions *ss, const char *why);
/* Moves the expiry of a live session by seconds, within the lifetime limit.
 * Returns 0, or -1 with e. */
int sessions_extend(struct sessions *ss, struct session *s, uint64_t seconds,
                    struct session_error *e);

/* A viewer connects: returns false (and admits nobody) when a one-shot link was
 * used already or the session is not running. */
bool sessions_viewer_open(struct sessions *ss, struct session *s);
/* An admitted viewer never connected (the browser left before its WebSocket was
 * upgraded): the admission is undone, and a one-shot link can be used again. */
void sessions_viewer_cancel(struct sessions *ss, struct session *s);
/* A viewer left; a one-shot session ends with its viewer. */
void sessions_viewer_closed(struct sessions *ss, struct session *s);

/* Called with a QMP command's "return" value (borrowed), or with NULL and the
 * reason when it failed, timed out or the session ended first. */
typedef void (*sessions_qmp_cb)(struct session *s, json_t *ret, const char *error,
                                void *arg);
/* Sends a QMP command to a running session's QEMU without waiting; cb runs on the
 * loop when the reply comes, exactly once. Returns 0, or -1 (cb not called) when
 * the session has no QMP connection. args is borrowed. */
int sessions_qmp(struct sessions *ss, struct session *s, const char *command,
                 json_t *args, unsigned timeout_ms, sessions_qmp_cb cb, void *arg);

/* Hot-plugs a USB device into a running session: a host device (VID:PID or
 * BUS-PORT, claimed like at start) or an emulated one (usb-kbd, usb-mouse,
 * usb-tablet). cb gets QEMU's answer; on success out_id (at least 48 bytes, owned
 * by the caller until cb runs) names the device for detaching. Returns 0, or -1
 * with e (cb not called). */
int sessions_usb_attach(struct sessions *ss, struct session *s, const char *device,
                        char *out_id, sessions_qmp_cb cb, void *arg,
                        struct session_error *e);
/* Unplugs a device by the id attach gave, or by the VID:PID / BUS-PORT it was
 * attached with. Returns 0, or -1 with e. */
int sessions_usb_detach(struct sessions *ss, struct session *s, const char *device,
                        sessions_qmp_cb cb, void *arg, struct session_error *e);

/* Calls cb for every session the manager knows (live and recently ended). */
void sessions_foreach(struct sessions *ss, void (*cb)(struct session *s, void *arg),
                      void *arg);
/* The VNC socket of a running session. */
void sessions_vnc_path(const struct session *s, char *out, size_t outsz);
void sessions_get_stats(struct sessions *ss, struct sessions_stats *out);
const struct catalog *sessions_catalog(struct sessions *ss);
const struct spec_host *sessions_host(struct sessions *ss);

/* Called whenever a session changes state (the HTTP layer closes its viewers when
 * it stops). */
void sessions_set_observer(struct sessions *ss, void (*cb)(struct session *s, void *arg),
                           void *arg);

#endif

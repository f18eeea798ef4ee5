/* alloc: the host devices a session holds — a GPU (whole card, SR-IOV VF, mediated
 * device, shared render node), USB devices, hugepages, pinned CPUs.
 *
 * Every exclusive unit is claimed in the store before it is touched: the store's
 * primary key makes a claim succeed for one session only, however many requests
 * race for it. The claim's record holds what release needs (the GPU grant with the
 * drivers to restore, the USB device, the hugepage count), so release works from
 * the store alone — after a restart of the service too. */
#ifndef QDESK_SESSION_ALLOC_H
#define QDESK_SESSION_ALLOC_H

#include "config.h"
#include "qemu/spec.h"
#include "qemu/vm.h"
#include "session/session.h"

#include <jansson.h>

struct store;

/* Fills spec's GPU grant, USB devices and CPU topology for req, reading the host
 * (under cfg->sysroot) without claiming or changing anything — what `qdesk args`
 * prints. Returns 0, or -1 with err naming the field. */
int alloc_plan(const struct config *cfg, const struct spec_request *req,
               struct vm_spec *spec, char *err, size_t errsz);

/* Claims and prepares everything req asks for, for the session called id, and
 * fills spec accordingly. Kinds exclude each other: a card passed through is not
 * also shared out as VFs, mediated devices or a render node, nor the other way round;
 * a device bound to vfio-pci that another process holds is taken. When every unit is
 * taken the refusal is 409, naming each unit and who has it; a request this host
 * cannot meet is 400. On failure everything taken is given back. Returns 0, or -1
 * with e. */
int alloc_acquire(struct store *st, const struct config *cfg, const char *id,
                  const struct spec_request *req, struct vm_spec *spec,
                  const struct vm_user *user, struct session_error *e);

/* Gives back everything session id holds, as the store recorded it. */
void alloc_release(struct store *st, const struct config *cfg, const char *id);

/* After a restart: releases what sessions that are no longer live still hold.
 * live(id) says whether a session id is live. */
void alloc_reconcile(struct store *st, const struct config *cfg,
                     bool (*live)(const char *id, void *arg), void *arg);

/* Pins a running session's vCPU threads (thread ids from QMP query-cpus-fast) and
 * QEMU's other threads as its claimed CPUs say. Returns 0, or -1 with err. */
int alloc_pin(struct store *st, const char *id, int pid, const int *vcpu_tids,
              size_t n_vcpus, char *err, size_t errsz);

/* What the host has and what is free, for GET /api/v1/host: {gpus: [...],
 * vfs: [...], mdev_types: [...], render_nodes: [...], usb: [...], gpu_kinds: {...},
 * hugepages: [...]}. Each unit has "id", "label", "usable" (and "why" not),
 * "capacity", "in_use" (held by a session, or through vfio by something else) and,
 * for admins, "session" (the holder) and "held_by" (who has it, in words); a mediated
 * type also "used" (instances made; capacity is those the kernel can still make), a
 * render node "users" (virgl sessions on it). gpu_kinds has per GPU kind (virgl, vf,
 * passthrough, mdev) {"offered": a session can get one now, "total", "free"}; virgl
 * also "shared": true. New reference. */
json_t *alloc_inventory_json(struct store *st, const struct config *cfg, bool admin);

/* The GPU kinds this host has, as a mask of (1 << enum spec_gpu): none always, virgl
 * with a render node (or an X display to render in), vf, passthrough and mdev when a
 * usable unit exists, whether or not sessions hold them all now (what is free now is
 * alloc_inventory_json()'s gpu_kinds). */
unsigned alloc_gpu_kinds(const struct config *cfg);

/* Claims and prepares one more USB device for a running session (hot-plug), filling
 * dev. Returns 0, or -1 with e. */
int alloc_usb_attach(struct store *st, const struct config *cfg, const char *id,
                     const char *request, const struct vm_user *user, struct vm_usb *dev,
                     struct session_error *e);
/* Finds the USB device of session id that request names (its port, or the VID:PID it
 * was attached with) and fills dev, giving nothing back: the device stays the
 * session's until QEMU has let go of it (device_del done). Returns 0, or -1 with e
 * (404) when the session holds none such. */
int alloc_usb_find(struct store *st, const char *id, const char *request,
                   struct vm_usb *dev, struct session_error *e);
/* Gives back one USB device of a session (its node to root, its claim), once QEMU no
 * longer has it. Returns 0, or -1 with e (404) when it holds none such. */
int alloc_usb_detach(struct store *st, const struct config *cfg, const char *id,
                     const char *request, struct vm_usb *dev, struct session_error *e);

#endif

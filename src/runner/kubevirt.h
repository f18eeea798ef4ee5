/* kubevirt: the runner that places sessions on a Kubernetes cluster as KubeVirt
 * VirtualMachineInstances (runner.h describes the seam; vmi.c builds the VMI;
 * k8s.c talks to the API server).
 *
 * One runner keeps one watch on the VMIs it labelled in its namespace
 * (GET .../virtualmachineinstances?watch=true&labelSelector=...&resourceVersion=RV
 * &allowWatchBookmarks=true), on a thread of its own: a dropped connection is
 * resumed from the last resourceVersion seen, and a resourceVersion the server no
 * longer has (410 Gone, as an HTTP status or as an ERROR event holding a Status)
 * makes it list again and carry on from the list's resourceVersion
 * (kubernetes.io/docs/reference/using-api/api-concepts/, "Efficient detection of
 * changes"). Changes reach the loop through a pipe.
 *
 * VMI phases (kubevirt.io/api/core/v1 types.go, v1.9.0) become runner states:
 *   "" Pending Scheduling Scheduled  -> STARTING ("waiting for a node: ..." while the
 *                                      PodScheduled condition is False/Unschedulable;
 *                                      after [runner] schedule_timeout the session
 *                                      fails with the scheduler's message)
 *   Running                          -> RUNNING (status.nodeName is the placement)
 *   Succeeded                        -> STOPPED (the guest powered off)
 *   Failed                           -> FAILED (the reason from its conditions)
 *   deleted                          -> STOPPED when qdesk stopped it, else FAILED
 *   Unknown                          -> no change (the node is out of touch) */
#ifndef QDESK_RUNNER_KUBEVIRT_H
#define QDESK_RUNNER_KUBEVIRT_H

#include "runner/runner.h"

#include <jansson.h>

struct config;
struct config_named;
struct loop;

extern const struct runner_ops kubevirt_runner_ops;

/* Starts the runner of section sec (kind = kubevirt): reads its keys, its
 * credentials, and starts watching. Private files (embedded certificates) go to
 * STATE/runner-NAME. Returns NULL with err naming FILE:LINE or the credential. */
struct runner *kubevirt_runner_new(const struct config *cfg,
                                   const struct config_named *sec, struct loop *loop,
                                   char *err, size_t errsz);

/* The state a VMI object (borrowed) is in, as the runner reports it: fills msg
 * (for STARTING: what it waits for, "" when nothing in particular; for FAILED:
 * why) and *unschedulable. Returns -1 for a phase that changes nothing (Unknown). */
int kubevirt_vmi_state(json_t *vmi, bool *unschedulable, char *msg, size_t msgsz);

/* Parses a Kubernetes quantity ("500m", "4", "16Gi", "1.5G", "2e3") into
 * thousandths of its unit (milli-CPUs; milli-bytes are not useful, so memory is
 * read with kubevirt_quantity_bytes). Returns 0, or -1. */
int kubevirt_quantity_milli(const char *q, uint64_t *out);
int kubevirt_quantity_bytes(const char *q, uint64_t *out);

#endif

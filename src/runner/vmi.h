/* vmi: the [runner NAME] section of a KubeVirt runner, and the
 * VirtualMachineInstance (kubevirt.io/v1) a session becomes on the cluster.
 *
 * kv_vmi_build() is a pure function of the resolved VM, the machine's sidecar and
 * the section, as qemu_build_cmdline() is of the VM alone: the golden tests in
 * tests/kubevirt/ print what it makes, and every VMI it makes is checked against
 * KubeVirt's published OpenAPI schema (tests/kubevirt/schema/).
 *
 * The fields relied on are those of KubeVirt v1.9.0's api/openapi-spec/swagger.json
 * (github.com/kubevirt/kubevirt, tag v1.9.0) and its user guide
 * (github.com/kubevirt/user-guide, docs/compute/host-devices.md,
 * dedicated_cpu_resources.md, hugepages.md, docs/storage/disks_and_volumes.md,
 * docs/network/interfaces_and_networks.md). */
#ifndef QDESK_RUNNER_VMI_H
#define QDESK_RUNNER_VMI_H

#include "runner/runner.h"

#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#define KV_MAX_MAPS 32

/* One "KIND.KEY = VALUE" mapping of the section: a qdesk name to the cluster's. */
struct kv_map {
    char key[80];    /* "vf", "mdev", "mdev.nvidia-222"; "046d:c52b"; "br0" */
    char value[256]; /* a resource name, or a NetworkAttachmentDefinition */
};

/* [runner NAME] with kind = kubevirt. */
struct kv_config {
    char name[64];
    char kubeconfig[PATH_MAX]; /* "": the pod's service account (in-cluster) */
    char context[128];         /* "": the kubeconfig's current-context */
    char ns[64];               /* "": the context's namespace, else "default" */
    char cpu_model[64];        /* spec.domain.cpu.model; "": KubeVirt's default */
    uint64_t schedule_timeout_s; /* how long a VMI may wait for a node before the
                                    session fails with the scheduler's reason */
    uint64_t stop_grace_s;     /* terminationGracePeriodSeconds ([qemu] stop_grace_s) */
    struct kv_map gpu[KV_MAX_MAPS];    /* gpu.KIND[.TYPE] = RESOURCE */
    size_t n_gpu;
    struct kv_map usb[KV_MAX_MAPS];    /* usb.VID:PID = RESOURCE */
    size_t n_usb;
    struct kv_map bridge[KV_MAX_MAPS]; /* bridge.NAME = [NAMESPACE/]NETWORK */
    size_t n_bridge;
};

/* Reads a [runner NAME] section whose kind = kubevirt into out (stop_grace_s comes
 * from the caller's [qemu] stop_grace_s). Returns 0, or -1 with err as
 * "FILE:LINE: [runner NAME] KEY ...", naming what is allowed. */
struct config_named;
int kv_config_parse(const struct config_named *sec, uint64_t stop_grace_s,
                    struct kv_config *out, char *err, size_t errsz);

/* The name of the session's VMI (and of its Secret): "qdesk-" and the session id. */
void kv_vmi_name(const char *session_id, char *out, size_t outsz);

/* What the builder makes: the VMI, and the Secret that holds the cloud-init seed
 * when it holds a password (NULL otherwise). New references. */
struct kv_objects {
    json_t *vmi;
    json_t *secret;
};

/* Builds the VMI for l on the cluster c. Refuses, with err naming the field and
 * what is allowed, what the cluster cannot give: a GPU kind or USB device the
 * section maps to no resource, virgl (no shared 3D on KubeVirt), a bridge with no
 * network, a USB port (a cluster has no such thing), an ISO or a kernel-only
 * machine, a machine without kubevirt_disk. Returns 0, or -1. */
int kv_vmi_build(const struct kv_config *c, const struct runner_launch *l,
                 struct kv_objects *out, char *err, size_t errsz);

void kv_objects_free(struct kv_objects *o);

#endif

#include "runner/vmi.h"

#include "catalog/catalog.h"
#include "config.h"
#include "util/units.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECTION_KEYS                                                                     \
    "kind, kubeconfig, context, namespace, cpu_model, schedule_timeout, gpu.vf, "        \
    "gpu.passthrough, gpu.mdev, gpu.mdev.TYPE, usb.VID:PID, bridge.NAME"

/* A DNS-1123 label (namespaces, network names): [a-z0-9-], 1..63, alphanumeric at
 * both ends. */
static bool dns_label(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n > 0 && n <= max && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n &&
           isalnum((unsigned char)s[0]) && isalnum((unsigned char)s[n - 1]);
}

/* An extended resource name as device plugins advertise them: DOMAIN/NAME, e.g.
 * nvidia.com/TU104GL_Tesla_T4 or intel.com/sriov-gpu (Kubernetes' qualified name:
 * a DNS subdomain, '/', then [A-Za-z0-9_.-] up to 63). */
static bool resource_name(const char *s)
{
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || strchr(slash + 1, '/'))
        return false;
    size_t dn = (size_t)(slash - s), nn = strlen(slash + 1);
    if (dn > 253 || nn == 0 || nn > 63)
        return false;
    for (size_t i = 0; i < dn; i++)
        if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) &&
            s[i] != '-' && s[i] != '.')
            return false;
    return strspn(slash + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "0123456789_.-") == nn &&
           isalnum((unsigned char)slash[1]) && isalnum((unsigned char)s[strlen(s) - 1]);
}

static bool usb_id(const char *s)
{
    return strlen(s) == 9 && s[4] == ':' && strspn(s, "0123456789abcdef:") == 9;
}

/* Adds key = value to the map list of kind ("gpu", "usb", "bridge"); the last of a
 * repeated key wins. Returns 0, or -1 with why when the list is full. */
static int map_put(struct kv_map *list, size_t *n, const char *kind, const char *key,
                   const char *value, char *why, size_t whysz)
{
    size_t i = 0;
    while (i < *n && strcmp(list[i].key, key) != 0)
        i++;
    if (i == *n) {
        if (*n == KV_MAX_MAPS) {
            snprintf(why, whysz, "more than %d %s.* keys", KV_MAX_MAPS, kind);
            return -1;
        }
        (*n)++;
    }
    snprintf(list[i].key, sizeof(list[i].key), "%s", key);
    snprintf(list[i].value, sizeof(list[i].value), "%s", value);
    return 0;
}

static const char *map_get(const struct kv_map *list, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i].key, key))
            return list[i].value;
    return NULL;
}

/* Checks one key of the section; fills why (without the FILE:LINE prefix). */
static int parse_key(struct kv_config *c, const char *key, const char *v, char *why,
                     size_t whysz)
{
    size_t n = strlen(v);
    if (!strcmp(key, "kind")) {
        if (strcmp(v, "kubevirt") != 0) {
            snprintf(why, whysz, "kind = '%s': this section is a kubevirt runner", v);
            return -1;
        }
        return 0;
    }
    if (!strcmp(key, "kubeconfig") || !strcmp(key, "context") ||
        !strcmp(key, "cpu_model")) {
        char *field = key[0] == 'k' ? c->kubeconfig : key[1] == 'o' ? c->context
                                                                    : c->cpu_model;
        size_t size = key[0] == 'k'   ? sizeof(c->kubeconfig)
                      : key[1] == 'o' ? sizeof(c->context)
                                      : sizeof(c->cpu_model);
        bool ok = n > 0 && n < size;
        for (size_t i = 0; i < n && ok; i++)
            ok = isprint((unsigned char)v[i]) && (key[0] == 'k' || v[i] != ' ');
        if (!ok) {
            snprintf(why, whysz, "%s = '%s' must be 1 to %zu printable characters", key,
                     v, size - 1);
            return -1;
        }
        if (key[0] == 'k' && v[0] != '/') {
            snprintf(why, whysz, "kubeconfig = '%s' must be an absolute path", v);
            return -1;
        }
        memcpy(field, v, n + 1);
        return 0;
    }
    if (!strcmp(key, "namespace")) {
        if (!dns_label(v, 63)) {
            snprintf(why, whysz,
                     "namespace = '%s' must be a namespace name: 1 to 63 lower-case "
                     "letters, digits and '-'",
                     v);
            return -1;
        }
        memcpy(c->ns, v, n + 1);
        return 0;
    }
    if (!strcmp(key, "schedule_timeout")) {
        if (units_parse_duration(v, &c->schedule_timeout_s) < 0) {
            snprintf(why, whysz,
                     "schedule_timeout = '%s' must be a duration such as 0s, 90s or 5m",
                     v);
            return -1;
        }
        return 0;
    }
    if (!strncmp(key, "gpu.", 4)) {
        const char *kind = key + 4;
        bool ok = !strcmp(kind, "vf") || !strcmp(kind, "passthrough") ||
                  !strcmp(kind, "mdev") ||
                  (!strncmp(kind, "mdev.", 5) && kind[5] &&
                   strspn(kind + 5, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789_-") == strlen(kind + 5));
        if (!ok) {
            snprintf(why, whysz,
                     "%s: the GPU kinds a cluster offers are gpu.vf, gpu.passthrough, "
                     "gpu.mdev and gpu.mdev.TYPE (virgl has no KubeVirt equivalent)",
                     key);
            return -1;
        }
        if (!resource_name(v)) {
            snprintf(why, whysz,
                     "%s = '%s' must be a resource name as the cluster's "
                     "permittedHostDevices or device plugin advertise it, such as "
                     "nvidia.com/TU104GL_Tesla_T4",
                     key, v);
            return -1;
        }
        return map_put(c->gpu, &c->n_gpu, "gpu", kind, v, why, whysz);
    }
    if (!strncmp(key, "usb.", 4)) {
        if (!usb_id(key + 4)) {
            snprintf(why, whysz,
                     "%s: a USB device is named by its lower-case VID:PID, such as "
                     "usb.046d:c52b",
                     key);
            return -1;
        }
        if (!resource_name(v)) {
            snprintf(why, whysz,
                     "%s = '%s' must be the resource name of the cluster's "
                     "permittedHostDevices usb entry, such as kubevirt.io/storage",
                     key, v);
            return -1;
        }
        return map_put(c->usb, &c->n_usb, "usb", key + 4, v, why, whysz);
    }
    if (!strncmp(key, "bridge.", 7)) {
        const char *slash = strchr(v, '/');
        char ns[64] = "";
        const char *net = v;
        if (slash && (size_t)(slash - v) < sizeof(ns)) {
            snprintf(ns, sizeof(ns), "%.*s", (int)(slash - v), v);
            net = slash + 1;
        }
        if (strlen(key + 7) == 0 || strlen(key + 7) >= 16 || (slash && !dns_label(ns, 63)) ||
            !dns_label(net, 253)) {
            snprintf(why, whysz,
                     "%s = '%s': a qdesk bridge maps to a NetworkAttachmentDefinition, "
                     "NAME or NAMESPACE/NAME",
                     key, v);
            return -1;
        }
        return map_put(c->bridge, &c->n_bridge, "bridge", key + 7, v, why, whysz);
    }
    snprintf(why, whysz, "'%s' is not a kubevirt runner setting; use %s", key,
             SECTION_KEYS);
    return -1;
}

int kv_config_parse(const struct config_named *sec, uint64_t stop_grace_s,
                    struct kv_config *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%s", sec->name);
    out->stop_grace_s = stop_grace_s;
    for (size_t i = 0; i < sec->n; i++) {
        char why[512];
        if (parse_key(out, sec->entries[i].key, sec->entries[i].value, why,
                      sizeof(why)) < 0) {
            snprintf(err, errsz, "%s:%d: [runner %s] %s", sec->file, sec->entries[i].line,
                     sec->name, why);
            return -1;
        }
    }
    return 0;
}

void kv_vmi_name(const char *session_id, char *out, size_t outsz)
{
    snprintf(out, outsz, "qdesk-%s", session_id);
}

void kv_objects_free(struct kv_objects *o)
{
    if (!o)
        return;
    json_decref(o->vmi);
    json_decref(o->secret);
    o->vmi = o->secret = NULL;
}

/* A Kubernetes quantity in MiB ("1024Mi"), which the API reads exactly. */
static json_t *mebibytes(uint64_t mb)
{
    char q[32];
    snprintf(q, sizeof(q), "%lluMi", (unsigned long long)mb);
    return json_string(q);
}

/* spec.domain.cpu: the topology, dedicated pCPUs for a pinned machine.
 * dedicated_cpu_resources.md: the vCPU count comes from the topology; the CPU
 * manager pins only a Guaranteed pod, which KubeVirt makes from limits.memory. */
static json_t *build_cpu(const struct kv_config *c, const struct vm_spec *s)
{
    json_t *cpu = json_pack("{s:I, s:I, s:I}", "sockets", (json_int_t)s->sockets, "cores",
                            (json_int_t)s->cores, "threads", (json_int_t)s->threads);
    if (s->pin_cpus)
        json_object_set_new(cpu, "dedicatedCpuPlacement", json_true());
    if (c->cpu_model[0])
        json_object_set_new(cpu, "model", json_string(c->cpu_model));
    return cpu;
}

/* spec.domain.memory and resources: what the guest sees, what the pod asks for;
 * hugepages.md: pageSize 2Mi or 1Gi backs all guest RAM. */
static void build_memory(json_t *domain, const struct vm_spec *s)
{
    json_t *mem = json_pack("{s:o}", "guest", mebibytes(s->memory_mb));
    if (s->hugepages_kb)
        json_object_set_new(mem, "hugepages",
                            json_pack("{s:s}", "pageSize",
                                      s->hugepages_kb == 2048 ? "2Mi" : "1Gi"));
    json_object_set_new(domain, "memory", mem);
    json_t *res = json_object();
    /* pinned CPUs need a Guaranteed pod: limits (KubeVirt copies them to requests) */
    json_object_set_new(res, s->pin_cpus ? "limits" : "requests",
                        json_pack("{s:o}", "memory", mebibytes(s->memory_mb)));
    json_object_set_new(domain, "resources", res);
}

/* The machine's disk: a container disk, or a PVC read-only under an ephemeral
 * copy-on-write overlay that is dropped when the VMI ends (disks_and_volumes.md,
 * "ephemeral"): the cluster's form of qdesk's throw-away overlay. */
static int build_disk(const struct runner_launch *l, json_t *disks, json_t *volumes,
                      char *err, size_t errsz)
{
    const struct catalog_machine *m = l->machine;
    const struct vm_spec *s = l->spec;
    if (!m->kubevirt_disk[0]) {
        snprintf(err, errsz,
                 "machine: '%s' has no kubevirt_disk in its sidecar (%s.conf): say "
                 "where the cluster finds its image, containerdisk:REGISTRY/IMAGE or "
                 "pvc:NAME",
                 m->name, m->name);
        return -1;
    }
    if (s->cdrom) {
        snprintf(err, errsz,
                 "machine: '%s' boots from an ISO, which the kubevirt runner does not "
                 "offer; give the cluster a disk image",
                 m->name);
        return -1;
    }
    if (s->kernel[0]) {
        snprintf(err, errsz,
                 "machine: '%s' boots a kernel from the catalogue directory, which the "
                 "cluster cannot read; use a disk image",
                 m->name);
        return -1;
    }
    const char *bus = !strcmp(s->disk_bus, "ide") ? "sata" : s->disk_bus;
    json_array_append_new(disks, json_pack("{s:s, s:{s:s}, s:i}", "name", "disk0", "disk",
                                           "bus", bus, "bootOrder", 1));
    json_t *vol;
    if (!strncmp(m->kubevirt_disk, "pvc:", 4))
        vol = json_pack("{s:s, s:{s:{s:s, s:b}}}", "name", "disk0", "ephemeral",
                        "persistentVolumeClaim", "claimName", m->kubevirt_disk + 4,
                        "readOnly", 1);
    else
        vol = json_pack("{s:s, s:{s:s}}", "name", "disk0", "containerDisk", "image",
                        m->kubevirt_disk + strlen("containerdisk:"));
    json_array_append_new(volumes, vol);
    return 0;
}

/* The cloud-init NoCloud seed: inline, or from a Secret when it holds a password
 * (the VMI is readable by whoever may list VMIs; the Secret only by its owner).
 * KubeVirt reads the keys "userdata" and "networkdata" of a secretRef
 * (pkg/cloud-init/cloud-init.go, resolveNoCloudSecrets, v1.9.0). */
static void build_seed(const struct runner_launch *l, const char *name, json_t *disks,
                       json_t *volumes, struct kv_objects *out)
{
    if (!l->user_data && !l->network_config)
        return;
    json_array_append_new(disks, json_pack("{s:s, s:{s:s}}", "name", "cloudinit", "disk",
                                           "bus", "virtio"));
    json_t *src = json_object();
    if (l->seed_has_secret) {
        json_t *data = json_object();
        if (l->user_data) {
            json_object_set_new(data, "userdata", json_string(l->user_data));
            json_object_set_new(src, "secretRef", json_pack("{s:s}", "name", name));
        }
        if (l->network_config) {
            json_object_set_new(data, "networkdata", json_string(l->network_config));
            json_object_set_new(src, "networkDataSecretRef",
                                json_pack("{s:s}", "name", name));
        }
        out->secret = json_pack(
            "{s:s, s:s, s:{s:s, s:{s:s, s:s}}, s:s, s:o}", "apiVersion", "v1", "kind",
            "Secret", "metadata", "name", name, "labels", RUNNER_LABEL_SESSION,
            l->session_id, RUNNER_LABEL_MANAGED, "qdesk", "type", "Opaque", "stringData",
            data);
    } else {
        if (l->user_data)
            json_object_set_new(src, "userData", json_string(l->user_data));
        if (l->network_config)
            json_object_set_new(src, "networkData", json_string(l->network_config));
    }
    json_array_append_new(volumes,
                          json_pack("{s:s, s:o}", "name", "cloudinit", "cloudInitNoCloud",
                                    src));
}

/* Networks: qdesk's user networking is the pod network behind KubeVirt's masquerade
 * (NAT, like QEMU's user net); a bridge is a Multus network joined with the bridge
 * binding; none leaves the guest without a NIC. */
static int build_net(const struct kv_config *c, const struct vm_spec *s, json_t *devices,
                     json_t *spec, char *err, size_t errsz)
{
    json_t *ifaces = json_array(), *nets = json_array();
    if (s->net == SPEC_NET_USER) {
        json_array_append_new(ifaces, json_pack("{s:s, s:{}, s:s}", "name", "default",
                                                "masquerade", "macAddress", s->mac));
        json_array_append_new(nets, json_pack("{s:s, s:{}}", "name", "default", "pod"));
    } else if (s->net == SPEC_NET_BRIDGE) {
        const char *nad = map_get(c->bridge, c->n_bridge, s->bridge);
        if (!nad) {
            snprintf(err, errsz,
                     "net: bridge '%s' is not a network of the cluster; [runner %s] "
                     "maps bridge.NAME to a NetworkAttachmentDefinition%s",
                     s->bridge, c->name, c->n_bridge ? " (it maps:" : "");
            for (size_t i = 0; i < c->n_bridge; i++)
                snprintf(err + strlen(err), errsz - strlen(err), " %s%s",
                         c->bridge[i].key, i + 1 < c->n_bridge ? "," : ")");
            json_decref(ifaces);
            json_decref(nets);
            return -1;
        }
        json_array_append_new(ifaces, json_pack("{s:s, s:{}, s:s}", "name", "bridge",
                                                "bridge", "macAddress", s->mac));
        json_array_append_new(nets, json_pack("{s:s, s:{s:s}}", "name", "bridge",
                                              "multus", "networkName", nad));
    } else {
        json_object_set_new(devices, "autoattachPodInterface", json_false());
    }
    json_object_set_new(devices, "interfaces", ifaces);
    json_object_set_new(spec, "networks", nets);
    return 0;
}

/* GPUs and USB devices by the resource names the section maps qdesk's names to
 * (host-devices.md: gpus[].deviceName and hostDevices[].deviceName are the names
 * in permittedHostDevices or of an external device plugin). */
static int build_devices(const struct kv_config *c, const struct runner_launch *l,
                         json_t *devices, char *err, size_t errsz)
{
    const struct vm_spec *s = l->spec;
    if (s->gpu == SPEC_GPU_VIRGL) {
        snprintf(err, errsz,
                 "gpu: virgl (shared 3D) is not available on the cluster ([runner %s]); "
                 "use vf, passthrough or mdev where the cluster maps them, or none",
                 c->name);
        return -1;
    }
    if (s->gpu != SPEC_GPU_NONE) {
        char key[80];
        const char *type = l->gpu_type ? l->gpu_type : "";
        snprintf(key, sizeof(key), "%s%s%s", spec_gpu_name(s->gpu), type[0] ? "." : "",
                 type);
        /* a mediated type asked for by name is never swapped for another */
        const char *res = map_get(c->gpu, c->n_gpu, key);
        if (!res) {
            snprintf(err, errsz,
                     "gpu: the cluster offers no %s%s%s: [runner %s] has no gpu.%s = "
                     "RESOURCE",
                     spec_gpu_name(s->gpu), type[0] ? ":" : "", type, c->name, key);
            return -1;
        }
        json_object_set_new(devices, "gpus",
                            json_pack("[{s:s, s:s}]", "name", "gpu0", "deviceName", res));
    }
    json_t *host = json_array(), *inputs = json_array();
    int rc = 0;
    for (size_t i = 0; i < l->n_usb && rc == 0; i++) {
        const char *u = l->usb[i];
        char name[32], low[16];
        if (spec_usb_emulated(u)) {
            /* KubeVirt emulates a tablet and a keyboard (v1.Input) */
            const char *type = !strcmp(u, "usb-tablet") ? "tablet"
                               : !strcmp(u, "usb-kbd")  ? "keyboard"
                                                        : NULL;
            if (!type) {
                snprintf(err, errsz,
                         "usb: '%s' is not emulated on the cluster; use usb-tablet or "
                         "usb-kbd",
                         u);
                rc = -1;
                break;
            }
            snprintf(name, sizeof(name), "input%zu", i);
            json_array_append_new(inputs, json_pack("{s:s, s:s, s:s}", "name", name,
                                                    "type", type, "bus", "usb"));
            continue;
        }
        snprintf(low, sizeof(low), "%.9s", u);
        for (char *p = low; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        const char *res = usb_id(low) ? map_get(c->usb, c->n_usb, low) : NULL;
        if (!res) {
            snprintf(err, errsz,
                     usb_id(low)
                         ? "usb: the cluster offers no device %s: [runner %s] has no "
                           "usb.%s = RESOURCE"
                         : "usb: '%s' names a port of this host; on the cluster "
                           "([runner %s]) name a device by VID:PID%s",
                     u, c->name, usb_id(low) ? low : "");
            rc = -1;
            break;
        }
        snprintf(name, sizeof(name), "usb%zu", i);
        json_array_append_new(host, json_pack("{s:s, s:s}", "name", name, "deviceName", res));
    }
    if (rc == 0 && json_array_size(host))
        json_object_set(devices, "hostDevices", host);
    if (rc == 0 && json_array_size(inputs))
        json_object_set(devices, "inputs", inputs);
    json_decref(host);
    json_decref(inputs);
    return rc;
}

int kv_vmi_build(const struct kv_config *c, const struct runner_launch *l,
                 struct kv_objects *out, char *err, size_t errsz)
{
    const struct vm_spec *s = l->spec;
    char name[64];
    kv_vmi_name(l->session_id, name, sizeof(name));
    memset(out, 0, sizeof(*out));
    if (strcmp(s->arch, "x86_64") != 0) {
        snprintf(err, errsz, "machine: '%s' is %s; the kubevirt runner places x86_64 "
                 "guests", l->machine->name, s->arch);
        return -1;
    }
    json_t *disks = json_array(), *volumes = json_array();
    json_t *devices = json_pack("{s:o}", "disks", disks);
    json_t *domain = json_pack("{s:o, s:{s:s}}", "cpu", build_cpu(c, s), "machine",
                               "type", s->machine_type);
    json_t *spec = json_pack("{s:o, s:I}", "domain", domain,
                             "terminationGracePeriodSeconds",
                             (json_int_t)c->stop_grace_s);
    build_memory(domain, s);
    /* firmware: UEFI without Secure Boot (which needs SMM and signed guests) */
    if (s->uefi)
        json_object_set_new(domain, "firmware",
                            json_pack("{s:{s:{s:b}}}", "bootloader", "efi", "secureBoot",
                                      0));
    json_object_set_new(domain, "devices", devices);
    if (build_disk(l, disks, volumes, err, errsz) < 0 ||
        build_net(c, s, devices, spec, err, errsz) < 0 ||
        build_devices(c, l, devices, err, errsz) < 0) {
        json_decref(spec);
        json_decref(volumes);
        return -1;
    }
    build_seed(l, name, disks, volumes, out);
    json_object_set_new(spec, "volumes", volumes);
    /* labels carry only what label values may hold; the owner goes in an annotation */
    out->vmi = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s}}, s:o}",
                         "apiVersion", "kubevirt.io/v1", "kind", "VirtualMachineInstance",
                         "metadata", "name", name, "namespace", c->ns[0] ? c->ns : "default",
                         "labels", RUNNER_LABEL_SESSION, l->session_id,
                         RUNNER_LABEL_MANAGED, "qdesk", "annotations", RUNNER_LABEL_OWNER,
                         l->owner ? l->owner : "", "qdesk.io/machine", l->machine->name,
                         "spec", spec);
    if (out->secret)
        json_object_set_new(json_object_get(out->secret, "metadata"), "namespace",
                            json_string(c->ns[0] ? c->ns : "default"));
    return 0;
}

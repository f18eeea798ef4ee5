/* gpu: the kinds' common parts (dispatch, the grant as JSON, vfio node ownership) and
 * the kind without a GPU. Each other kind lives in gpu_KIND.c. */
#include "host/gpu.h"

#include "host/hostw.h"
#include "host/sysfs.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[GPU_KINDS] = {"none", "virgl", "vf", "passthrough",
                                                  "mdev"};

const char *gpu_kind_name(enum gpu_kind kind)
{
    return (unsigned)kind < GPU_KINDS ? kind_names[kind] : "?";
}

int gpu_kind_parse(const char *s, enum gpu_kind *kind, char *type, size_t typesz)
{
    if (typesz)
        type[0] = 0;
    if (!strncmp(s, "mdev:", 5) && s[5]) {
        if (strlen(s + 5) >= typesz)
            return -1;
        *kind = GPU_KIND_MDEV;
        snprintf(type, typesz, "%s", s + 5);
        return 0;
    }
    for (int k = 0; k < GPU_KINDS; k++)
        if (!strcmp(s, kind_names[k])) {
            *kind = (enum gpu_kind)k;
            return 0;
        }
    return -1;
}

/* --- none ------------------------------------------------------------------------ */

static int none_plan(const char *sysroot, const struct gpu_request *req,
                     struct gpu_grant *g, char *err, size_t errsz)
{
    (void)sysroot;
    (void)req;
    (void)err;
    (void)errsz;
    memset(g, 0, sizeof(*g));
    g->kind = GPU_KIND_NONE;
    return 0;
}

/* Nothing to prepare or release. */
const struct gpu_ops gpu_none_ops = {"none", none_plan, NULL, NULL};

/* --- dispatch -------------------------------------------------------------------- */

const struct gpu_ops *gpu_ops_for(enum gpu_kind kind)
{
    switch (kind) {
    case GPU_KIND_NONE:
        return &gpu_none_ops;
    case GPU_KIND_VIRGL:
        return &gpu_virgl_ops;
    case GPU_KIND_VF:
        return &gpu_vf_ops;
    case GPU_KIND_PASSTHROUGH:
        return &gpu_passthrough_ops;
    case GPU_KIND_MDEV:
        return &gpu_mdev_ops;
    default:
        return NULL;
    }
}

int gpu_plan(const char *sysroot, const struct gpu_request *req, struct gpu_grant *g,
             char *err, size_t errsz)
{
    const struct gpu_ops *ops = gpu_ops_for(req->kind);
    if (!ops) {
        snprintf(err, errsz, "gpu: unknown kind %d", (int)req->kind);
        return -1;
    }
    return ops->plan(sysroot, req, g, err, errsz);
}

int gpu_prepare(const char *sysroot, struct gpu_grant *g, char *err, size_t errsz)
{
    const struct gpu_ops *ops = gpu_ops_for(g->kind);
    if (!ops) {
        snprintf(err, errsz, "gpu: unknown kind %d", (int)g->kind);
        return -1;
    }
    return ops->prepare ? ops->prepare(sysroot, g, err, errsz) : 0;
}

int gpu_release(const char *sysroot, const struct gpu_grant *g, char *err, size_t errsz)
{
    const struct gpu_ops *ops = gpu_ops_for(g->kind);
    if (!ops) {
        snprintf(err, errsz, "gpu: unknown kind %d", (int)g->kind);
        return -1;
    }
    return ops->release ? ops->release(sysroot, g, err, errsz) : 0;
}

/* --- shared rules ---------------------------------------------------------------- */

bool gpu_nvidia_consumer(const struct pcidev *d)
{
    static const char *const pro[] = {"Quadro", "RTX A", "Tesla", "NVS", "GRID"};
    if (d->vendor != 0x10de || (d->class_code >> 8) != 0x0300)
        return false;
    for (size_t i = 0; i < sizeof(pro) / sizeof(pro[0]); i++)
        if (strstr(d->device_name, pro[i]))
            return false;
    return true;
}

bool gpu_gvt_capable(const struct pcidev *d)
{
    static const unsigned gens[] = {0x16, 0x19, 0x59, 0x3e, 0x87, 0x9b};
    if (d->vendor != 0x8086 || !pcidev_is_display(d) || strcmp(d->addr + 4, ":00:02.0"))
        return false;
    for (size_t i = 0; i < sizeof(gens) / sizeof(gens[0]); i++)
        if ((unsigned)(d->device >> 8) == gens[i])
            return true;
    return false;
}

int gpu_grant_chown(const char *sysroot, const struct gpu_grant *g, uid_t uid, gid_t gid,
                    char *err, size_t errsz)
{
    char group[32], node[64];
    int done[GPU_MAX_FUNCTIONS + 1];
    size_t n_done = 0;
    for (size_t i = 0; i <= g->n_fn; i++) {
        int rc;
        if (i < g->n_fn)
            rc = sysfs_link_name(sysroot, group, sizeof(group),
                                 "/sys/bus/pci/devices/%s/iommu_group", g->fn[i].addr);
        else if (g->kind == GPU_KIND_MDEV && g->mdev_uuid[0])
            rc = sysfs_link_name(sysroot, group, sizeof(group),
                                 "/sys/bus/mdev/devices/%s/iommu_group", g->mdev_uuid);
        else
            break;
        char *end;
        long id = rc == 0 ? strtol(group, &end, 10) : -1;
        if (rc < 0 || *end || id < 0) {
            snprintf(err, errsz, "%s has no IOMMU group",
                     i < g->n_fn ? g->fn[i].addr : g->mdev_uuid);
            return -1;
        }
        bool seen = false;
        for (size_t j = 0; j < n_done; j++)
            seen |= done[j] == (int)id;
        if (seen)
            continue;
        done[n_done++] = (int)id;
        snprintf(node, sizeof(node), "/dev/vfio/%ld", id);
        if (hostw_chown(sysroot, node, uid, gid, err, errsz) < 0)
            return -1;
    }
    return 0;
}

/* --- the grant as JSON ----------------------------------------------------------- */

json_t *gpu_grant_to_json(const struct gpu_grant *g)
{
    json_t *fns = json_array();
    for (size_t i = 0; i < g->n_fn; i++)
        json_array_append_new(fns, json_pack("{s:s, s:s}", "address", g->fn[i].addr,
                                             "driver", g->fn[i].orig_driver));
    return json_pack(
        "{s:s, s:s, s:o, s:b, s:b, s:b, s:s, s:b, s:s, s:s, s:i, s:{s:s, s:s, s:s, s:s},"
        " s:s, s:s}",
        "kind", gpu_kind_name(g->kind), "unit", g->unit, "functions", fns,
        "multifunction", g->multifunction, "x_vga", g->x_vga, "rombar", g->rombar,
        "romfile", g->romfile, "hide_kvm", g->hide_kvm, "hv_vendor_id", g->hv_vendor_id,
        "pf", g->pf, "vfs_create", (int)g->vfs_create, "mdev", "parent", g->mdev_parent,
        "type", g->mdev_type, "uuid", g->mdev_uuid, "sysfsdev", g->mdev_sysfsdev,
        "render_node", g->render_node, "warning", g->warning);
}

/* A driver, mdev type or unit name: letters, digits and _ - . : / only. */
static bool plain_name(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_-.:/", *s))
            return false;
    return true;
}

static bool uuid_ok(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++)
        if (i == 8 || i == 13 || i == 18 || i == 23 ? s[i] != '-'
                                                    : !isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

static int get_str(const json_t *j, const char *key, char *out, size_t outsz, char *err,
                   size_t errsz)
{
    const json_t *v = json_object_get(j, key);
    out[0] = 0;
    if (!v)
        return 0;
    if (!json_is_string(v) || json_string_length(v) >= outsz) {
        snprintf(err, errsz, "gpu grant: %s must be a string of at most %zu bytes", key,
                 outsz - 1);
        return -1;
    }
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

int gpu_grant_from_json(const json_t *j, struct gpu_grant *g, char *err, size_t errsz)
{
    memset(g, 0, sizeof(*g));
    char kind[32], type[8];
    const json_t *mdev = json_object_get(j, "mdev");
    if (!json_is_object(j)) {
        snprintf(err, errsz, "gpu grant: not a JSON object");
        return -1;
    }
    if (get_str(j, "kind", kind, sizeof(kind), err, errsz) < 0)
        return -1;
    if (gpu_kind_parse(kind, &g->kind, type, sizeof(type)) < 0 || type[0]) {
        snprintf(err, errsz, "gpu grant: kind '%s' is not a GPU kind", kind);
        return -1;
    }
    if (get_str(j, "unit", g->unit, sizeof(g->unit), err, errsz) < 0 ||
        get_str(j, "romfile", g->romfile, sizeof(g->romfile), err, errsz) < 0 ||
        get_str(j, "hv_vendor_id", g->hv_vendor_id, sizeof(g->hv_vendor_id), err, errsz) <
            0 ||
        get_str(j, "pf", g->pf, sizeof(g->pf), err, errsz) < 0 ||
        get_str(j, "render_node", g->render_node, sizeof(g->render_node), err, errsz) <
            0 ||
        get_str(j, "warning", g->warning, sizeof(g->warning), err, errsz) < 0)
        return -1;
    if (mdev &&
        (get_str(mdev, "parent", g->mdev_parent, sizeof(g->mdev_parent), err, errsz) <
             0 ||
         get_str(mdev, "type", g->mdev_type, sizeof(g->mdev_type), err, errsz) < 0 ||
         get_str(mdev, "uuid", g->mdev_uuid, sizeof(g->mdev_uuid), err, errsz) < 0))
        return -1;
    g->multifunction = json_is_true(json_object_get(j, "multifunction"));
    g->x_vga = json_is_true(json_object_get(j, "x_vga"));
    g->rombar = json_is_true(json_object_get(j, "rombar"));
    g->hide_kvm = json_is_true(json_object_get(j, "hide_kvm"));
    json_int_t vfs = json_integer_value(json_object_get(j, "vfs_create"));
    if (vfs < 0 || vfs > 4096) {
        snprintf(err, errsz, "gpu grant: vfs_create %lld is out of range",
                 (long long)vfs);
        return -1;
    }
    g->vfs_create = (unsigned)vfs;

    const json_t *fns = json_object_get(j, "functions");
    if (fns && (!json_is_array(fns) || json_array_size(fns) > GPU_MAX_FUNCTIONS)) {
        snprintf(err, errsz, "gpu grant: functions must be a list of at most %d",
                 GPU_MAX_FUNCTIONS);
        return -1;
    }
    for (size_t i = 0; fns && i < json_array_size(fns); i++) {
        const json_t *f = json_array_get(fns, i);
        char addr[64];
        struct gpu_function *fn = &g->fn[g->n_fn++];
        if (get_str(f, "address", addr, sizeof(addr), err, errsz) < 0 ||
            get_str(f, "driver", fn->orig_driver, sizeof(fn->orig_driver), err, errsz) <
                0)
            return -1;
        if (pcidev_addr_parse(addr, fn->addr, sizeof(fn->addr)) < 0) {
            snprintf(err, errsz,
                     "gpu grant: functions[%zu].address '%s' is not a PCI "
                     "address",
                     i, addr);
            return -1;
        }
        if (!plain_name(fn->orig_driver) || strchr(fn->orig_driver, '/')) {
            snprintf(err, errsz,
                     "gpu grant: functions[%zu].driver '%s' is not a driver "
                     "name",
                     i, fn->orig_driver);
            return -1;
        }
    }
    char canon[PCIDEV_ADDR_SIZE];
    if (g->pf[0] &&
        (pcidev_addr_parse(g->pf, canon, sizeof(canon)) < 0 || strcmp(canon, g->pf))) {
        snprintf(err, errsz, "gpu grant: pf '%s' is not a PCI address", g->pf);
        return -1;
    }
    if (g->mdev_parent[0] &&
        (pcidev_addr_parse(g->mdev_parent, canon, sizeof(canon)) < 0 ||
         strcmp(canon, g->mdev_parent))) {
        snprintf(err, errsz, "gpu grant: mdev.parent '%s' is not a PCI address",
                 g->mdev_parent);
        return -1;
    }
    if (!plain_name(g->mdev_type) || strchr(g->mdev_type, '/') || !plain_name(g->unit)) {
        snprintf(err, errsz,
                 "gpu grant: mdev.type or unit holds characters a name cannot");
        return -1;
    }
    if (g->mdev_uuid[0] && !uuid_ok(g->mdev_uuid)) {
        snprintf(err, errsz, "gpu grant: mdev.uuid '%s' is not a UUID", g->mdev_uuid);
        return -1;
    }
    if (g->mdev_uuid[0])
        snprintf(g->mdev_sysfsdev, sizeof(g->mdev_sysfsdev), "/sys/bus/mdev/devices/%s",
                 g->mdev_uuid);
    if (g->render_node[0] &&
        (strncmp(g->render_node, "/dev/dri/renderD", 16) || !g->render_node[16] ||
         strspn(g->render_node + 16, "0123456789") != strlen(g->render_node + 16))) {
        snprintf(err, errsz, "gpu grant: render_node '%s' is not a render node",
                 g->render_node);
        return -1;
    }
    return 0;
}

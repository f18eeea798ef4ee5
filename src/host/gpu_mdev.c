/* mdev: a mediated device — a slice of a GPU that its host driver shares out (Intel
 * GVT-g, NVIDIA vGPU before SR-IOV). The parent lists the types it can make under
 * mdev_supported_types; writing a fresh UUID to TYPE/create makes one, which QEMU
 * opens as vfio-pci,sysfsdev=/sys/bus/mdev/devices/UUID; writing 1 to its remove
 * attribute destroys it. */
#include "host/gpu.h"
#include "host/hostw.h"
#include "host/mdev.h"
#include "host/sysfs.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

static int mdev_plan(const char *sysroot, const struct gpu_request *req,
                     struct gpu_grant *g, char *err, size_t errsz)
{
    struct mdev_type *types;
    size_t n;
    char parent[PCIDEV_ADDR_SIZE] = "", want[64];
    memset(g, 0, sizeof(*g));
    if (strlen(req->mdev_uuid) != 36) {
        snprintf(err, errsz, "mdev: the mediated device needs a UUID");
        return -1;
    }
    snprintf(want, sizeof(want), "%s", req->mdev_type);
    if (req->unit[0]) {
        /* "mdev:PARENT/TYPE" */
        const char *u = strncmp(req->unit, "mdev:", 5) ? req->unit : req->unit + 5;
        const char *slash = strchr(u, '/');
        char addr[64];
        snprintf(addr, sizeof(addr), "%.*s", slash ? (int)(slash - u) : (int)strlen(u),
                 u);
        if (!slash || pcidev_addr_parse(addr, parent, sizeof(parent)) < 0) {
            snprintf(err, errsz, "mdev: '%s' is not PARENT/TYPE", req->unit);
            return -1;
        }
        snprintf(want, sizeof(want), "%s", slash + 1);
    }
    if (mdev_scan(sysroot, &types, &n, err, errsz) < 0)
        return -1;
    const struct mdev_type *chosen = NULL, *full = NULL;
    size_t known = 0;
    for (size_t i = 0; i < n && !chosen; i++) {
        if (parent[0] && strcmp(types[i].parent, parent))
            continue;
        if (!mdev_type_matches(&types[i], want))
            continue;
        known++;
        if (types[i].available > 0)
            chosen = &types[i];
        else
            full = &types[i];
    }
    if (!chosen) {
        if (!n)
            snprintf(err, errsz,
                     "mdev: no device on this host makes mediated devices "
                     "(Intel GVT-g needs i915.enable_gvt=1 and the kvmgt "
                     "module: qdesk host cmdline --gpu ADDR)");
        else if (!known) {
            int len = snprintf(err, errsz, "mdev: no type %s; this host has", want);
            for (size_t i = 0; i < n && len >= 0 && (size_t)len < errsz; i++)
                len += snprintf(err + len, errsz - (size_t)len, "%s %s (%u free)",
                                i ? "," : "", types[i].type, types[i].available);
        } else {
            snprintf(err, errsz, "mdev: %s on %s has no free instance", full->type,
                     full->parent);
            snprintf(g->unit, sizeof(g->unit), "mdev:%s/%s", full->parent, full->type);
            mdev_types_free(types);
            return -EBUSY;
        }
        mdev_types_free(types);
        return -1;
    }
    g->kind = GPU_KIND_MDEV;
    snprintf(g->unit, sizeof(g->unit), "mdev:%s/%s", chosen->parent, chosen->type);
    snprintf(g->mdev_parent, sizeof(g->mdev_parent), "%s", chosen->parent);
    snprintf(g->mdev_type, sizeof(g->mdev_type), "%s", chosen->type);
    mdev_types_free(types);
    snprintf(g->mdev_uuid, sizeof(g->mdev_uuid), "%s", req->mdev_uuid);
    snprintf(g->mdev_sysfsdev, sizeof(g->mdev_sysfsdev), "/sys/bus/mdev/devices/%s",
             g->mdev_uuid);
    return 0;
}

static int mdev_prepare(const char *sysroot, struct gpu_grant *g, char *err, size_t errsz)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "/sys/class/mdev_bus/%s/mdev_supported_types/%s/create",
             g->mdev_parent, g->mdev_type);
    if (hostw_write(sysroot, path, g->mdev_uuid, err, errsz) < 0)
        return -1;
    if (!sysfs_exists(sysroot, "%s", g->mdev_sysfsdev)) {
        snprintf(err, errsz, "mdev: writing %s did not create %s", path,
                 g->mdev_sysfsdev);
        return -1;
    }
    return 0;
}

static int mdev_release(const char *sysroot, const struct gpu_grant *g, char *err,
                        size_t errsz)
{
    char path[PATH_MAX];
    if (!g->mdev_uuid[0] ||
        !sysfs_exists(sysroot, "/sys/bus/mdev/devices/%s", g->mdev_uuid))
        return 0; /* never made, or gone already */
    snprintf(path, sizeof(path), "/sys/bus/mdev/devices/%s/remove", g->mdev_uuid);
    return hostw_write(sysroot, path, "1", err, errsz) < 0 ? -1 : 0;
}

const struct gpu_ops gpu_mdev_ops = {"mdev", mdev_plan, mdev_prepare, mdev_release};

/* gpu: the ways a guest gets a GPU, one shape for every kind.
 *
 * Each kind (none, virgl, vf, passthrough, mdev) is a struct gpu_ops with the same
 * three entry points:
 *
 *   plan     reads the host and decides, without changing anything, what the guest
 *            gets: a struct gpu_grant, the plain description the QEMU command-line
 *            builder turns into options (qdesk args prints it; nothing is bound);
 *   prepare  makes the host match the grant (binds vfio-pci, creates VFs or the
 *            mediated device) and records in the grant what it found, so that
 *   release  can undo it from the grant alone — after a restart of the service too:
 *            the session store keeps gpu_grant_to_json() and gives release
 *            gpu_grant_from_json() and the sysroot, nothing else.
 *
 * Every change goes through hostw. qdesk never emits QEMU options here. */
#ifndef QDESK_HOST_GPU_H
#define QDESK_HOST_GPU_H

#include "host/pcidev.h"

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The same order as enum spec_gpu in qemu/spec.h, so one casts to the other. */
enum gpu_kind {
    GPU_KIND_NONE,
    GPU_KIND_VIRGL,       /* shared 3D through a render node */
    GPU_KIND_VF,          /* an SR-IOV virtual function through vfio-pci */
    GPU_KIND_PASSTHROUGH, /* a whole card (all its functions) through vfio-pci */
    GPU_KIND_MDEV,        /* a mediated device (GVT-g, vGPU) */
    GPU_KINDS
};

/* The one list of GPU kind names: "none", "virgl", "vf", "passthrough", "mdev" ("?"
 * for another value). */
const char *gpu_kind_name(enum gpu_kind kind);
/* Parses "none", "virgl", "vf", "passthrough", "mdev" or "mdev:TYPE" (TYPE goes to
 * type, "" without one). With typesz 0 (type may be NULL) only a bare kind name is
 * accepted. Returns 0, or -1. */
int gpu_kind_parse(const char *s, enum gpu_kind *kind, char *type, size_t typesz);

#define GPU_MAX_FUNCTIONS 8
#define GPU_HV_VENDOR_ID  "qdesk"

/* One PCI function handed to the guest through vfio-pci. */
struct gpu_function {
    char addr[PCIDEV_ADDR_SIZE];
    char orig_driver[32]; /* its driver before prepare ("" none): release restores it */
};

/* What a guest gets: everything the command-line builder needs, nothing it must look
 * up. Paths are the host's own (no sysroot). */
struct gpu_grant {
    enum gpu_kind kind;
    char unit[64]; /* the allocation it holds, an inventory id:
                      "pci:0000:01:00.0", "vf:0000:00:02.1",
                      "mdev:0000:00:02.0/i915-GVTg_V5_4", "render:renderD128";
                      "" for none (and virgl without a render node) */

    /* vf and passthrough: -device vfio-pci,host=ADDR for each, function 0 first */
    struct gpu_function fn[GPU_MAX_FUNCTIONS];
    size_t n_fn;
    bool multifunction;     /* the functions of one card: put them in one guest slot as
                               functions 0..n-1, multifunction=on on the first */
    bool x_vga;             /* x-vga=on: a VGA card that is the display of a SeaBIOS
                               guest (UEFI guests use the card's GOP instead) */
    bool rombar;            /* rombar=1 (QEMU's default); false: rombar=0 (VFs have no
                               option ROM) */
    char romfile[PATH_MAX]; /* romfile= (request.rom_dir/ADDR.rom); "" none */
    bool hide_kvm;          /* a consumer NVIDIA card: -cpu ...,kvm=off, Hyper-V
                               enlightenments and hv-vendor-id=GPU_HV_VENDOR_ID (see
                               gpu_nvidia_consumer) */
    char hv_vendor_id[13];

    char pf[PCIDEV_ADDR_SIZE]; /* vf: its physical function */
    unsigned vfs_create;       /* vf: prepare first creates this many VFs on pf (0: they
                                  exist) */

    char mdev_parent[PCIDEV_ADDR_SIZE]; /* mdev */
    char mdev_type[64];
    char mdev_uuid[37];
    char mdev_sysfsdev[64]; /* /sys/bus/mdev/devices/UUID: vfio-pci,sysfsdev= */

    char render_node[32]; /* virgl: /dev/dri/renderD128; "" means plain virtio-vga */
    char warning[512];    /* something the user must see (virgl without 3D) */
};

/* What the caller wants. unit, when set, is the inventory id the allocator chose
 * (a bare PCI address or render node name also works, for the command line). */
struct gpu_request {
    enum gpu_kind kind;
    char unit[64];          /* "" : the first suitable one */
    char mdev_type[64];     /* mdev: "i915-GVTg_V5_4" or "GVTg_V5_4"; "" any with room */
    char mdev_uuid[37];     /* mdev: the UUID to make the device with (the allocator
                               derives it from the session, so one session always names
                               one device) */
    unsigned vfs;           /* vf: how many VFs to create on a PF that has none (0: as
                               many as it supports) */
    bool seabios;           /* the guest boots with SeaBIOS (x-vga for a VGA card) */
    bool allow_console;     /* the operator allows taking the GPU that shows the host
                               console (never a user's choice) */
    char rom_dir[PATH_MAX]; /* passthrough: where the operator keeps option ROMs; the
                               card at ADDR gets DIR/ADDR.rom when it exists */
};

struct gpu_ops {
    const char *name;
    /* Fills g for req, reading only. Returns 0; -EBUSY when the host has units of
     * the kind but none is free now (every VF bound, no mediated instance left; err
     * names them, and g->unit the full mediated type); or -1 with err naming the device
     * and why (a non-viable group names the devices that block it). */
    int (*plan)(const char *sysroot, const struct gpu_request *req, struct gpu_grant *g,
                char *err, size_t errsz);
    /* Makes the host match g and records original drivers in g. On failure undoes
     * what it did. Returns 0, or -1 with err. NULL: nothing to do (none, virgl). */
    int (*prepare)(const char *sysroot, struct gpu_grant *g, char *err, size_t errsz);
    /* Undoes prepare from g alone. Safe to repeat and after a partial prepare.
     * Returns 0, or -1 with err. NULL: nothing to do. */
    int (*release)(const char *sysroot, const struct gpu_grant *g, char *err,
                   size_t errsz);
};

extern const struct gpu_ops gpu_none_ops;
extern const struct gpu_ops gpu_virgl_ops;
extern const struct gpu_ops gpu_vf_ops;
extern const struct gpu_ops gpu_passthrough_ops;
extern const struct gpu_ops gpu_mdev_ops;

/* The ops of kind, or NULL for an unknown kind. */
const struct gpu_ops *gpu_ops_for(enum gpu_kind kind);

/* Dispatch on req->kind / g->kind. */
int gpu_plan(const char *sysroot, const struct gpu_request *req, struct gpu_grant *g,
             char *err, size_t errsz);
int gpu_prepare(const char *sysroot, struct gpu_grant *g, char *err, size_t errsz);
int gpu_release(const char *sysroot, const struct gpu_grant *g, char *err, size_t errsz);

/* Gives the vfio group nodes of g (/dev/vfio/N of each function, or of the mediated
 * device) to uid:gid, so an unprivileged QEMU can open them (after prepare; call with
 * 0, 0 after release to give them back to root). Returns 0, or -1 with err. */
int gpu_grant_chown(const char *sysroot, const struct gpu_grant *g, uid_t uid, gid_t gid,
                    char *err, size_t errsz);

/* The grant as JSON for the session store: a new reference (json_decref() it). */
json_t *gpu_grant_to_json(const struct gpu_grant *g);
/* Reads a grant written by gpu_grant_to_json(), checking every field that release
 * turns into a path. Returns 0, or -1 with err naming the field. */
int gpu_grant_from_json(const json_t *j, struct gpu_grant *g, char *err, size_t errsz);

/* The rule for hiding KVM: an NVIDIA card (vendor 10de) of class VGA (0x0300) whose
 * name is not a professional line (Quadro, RTX A..., Tesla, NVS, GRID). Datacenter
 * cards are class 0x0302 (3D controller). GeForce drivers before 465 refused to run
 * when they saw a hypervisor (error 43); hiding it costs nothing on newer ones. */
bool gpu_nvidia_consumer(const struct pcidev *d);

/* An Intel iGPU that i915 can share with GVT-g (Broadwell to Comet Lake: device ids
 * 0x16xx, 0x19xx, 0x59xx, 0x3exx, 0x87xx, 0x9bxx at 00:02.0), whether or not GVT-g is
 * on. */
bool gpu_gvt_capable(const struct pcidev *d);

/* Whether the display device d can be passed through as a whole card: fills fns with
 * its functions (pcidev_companions()) and returns true, or returns false with why
 * (IOMMU off, a group that is not viable — naming the devices that block it —, the
 * host console unless allow_console, a VF, a PF with VFs enabled). */
struct iommu_groups;
bool gpu_passthrough_check(const char *sysroot, const struct pcidev_list *devs,
                           const struct iommu_groups *groups, const struct pcidev *d,
                           bool allow_console, char (*fns)[PCIDEV_ADDR_SIZE],
                           size_t *n_fn, char *why, size_t whysz);

/* Writes the address of virtual function index (0-based) of pf into out, from the
 * virtfnN link or, before the VFs exist, from sriov_offset and sriov_stride. Returns
 * 0, or -1. */
int gpu_vf_addr(const char *sysroot, const struct pcidev *pf, unsigned index, char *out,
                size_t outsz);

/* Creates n VFs on pf (0: sriov_totalvfs) the way Intel's SR-IOV scripts do: first
 * sriov_drivers_autoprobe=0, so the host driver does not take them, then
 * sriov_numvfs=n. Nothing to do when pf already has n; refuses to change a non-zero
 * count (that would destroy VFs guests may use). Returns 0, or -1 with err. */
int gpu_vf_enable(const char *sysroot, const char *pf, unsigned n, char *err,
                  size_t errsz);

#endif

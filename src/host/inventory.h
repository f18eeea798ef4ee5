/* inventory: the units of each kind that sessions can be given, with identifiers that
 * stay the same while the hardware does, so the session store can record exclusive
 * allocations and the allocator can hand a chosen one to gpu_plan() (as
 * gpu_request.unit) or to the USB resolver.
 *
 *   gpu     "pci:0000:01:00.0"                 a whole card for passthrough
 *   vf      "vf:0000:00:02.1"                  an SR-IOV VF (listed before it exists:
 *                                              prepare creates the PF's VFs)
 *   mdev    "mdev:0000:00:02.0/i915-GVTg_V5_4" a mediated type; capacity = free
 *                                              instances, used = made ones
 *   render  "render:renderD128"                a render node, shared (capacity 0)
 *   usb     "usb:1-1.2"                        a USB device by its port
 *
 * The store, not the host, knows which units sessions hold: usable says only whether
 * the host allows handing the unit out at all. */
#ifndef QDESK_HOST_INVENTORY_H
#define QDESK_HOST_INVENTORY_H

#include "host/pcidev.h"

#include <stdbool.h>
#include <stddef.h>

enum inventory_kind {
    INVENTORY_GPU,
    INVENTORY_VF,
    INVENTORY_MDEV,
    INVENTORY_RENDER,
    INVENTORY_USB,
    INVENTORY_KINDS
};

struct inventory_unit {
    enum inventory_kind kind;
    char id[64];
    char label[256];               /* for people: "NVIDIA Corporation GA104 [GeForce RTX
                                      3070] (0000:01:00.0)" */
    char parent[PCIDEV_ADDR_SIZE]; /* vf: its PF; mdev: its parent */
    unsigned capacity;             /* sessions that can hold it at once: 1 (exclusive),
                                      free instances (mdev), 0 (shared: render) */
    unsigned used;                 /* mdev: instances that exist (made by qdesk or
                                      not) */
    bool usable;
    char why[512]; /* why not usable */
};

/* Lists the units of kind into a newly allocated array (free() it), in a stable
 * order. allow_console: the operator lets the GPU that shows the host console be
 * passed through. Returns 0, or -1 with err. */
int inventory_list(const char *sysroot, enum inventory_kind kind, bool allow_console,
                   struct inventory_unit **out, size_t *n, char *err, size_t errsz);

#endif

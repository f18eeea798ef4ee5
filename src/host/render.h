/* render: DRM render nodes (/dev/dri/renderD*), the GPUs that virgl can share. */
#ifndef QDESK_HOST_RENDER_H
#define QDESK_HOST_RENDER_H

#include "host/pcidev.h"

#include <stddef.h>

struct render_node {
    char name[16];              /* renderD128 */
    char path[32];              /* /dev/dri/renderD128, as the host names it */
    char pci[PCIDEV_ADDR_SIZE]; /* its PCI device; "" for one without (vgem, virtio) */
    char driver[32];            /* i915, amdgpu, nouveau, ... */
};

/* Lists the render nodes in sysroot's /dev/dri, in minor order, into a newly
 * allocated array (free() it). No /dev/dri is an empty list. Returns 0, or -1 with
 * err. */
int render_scan(const char *sysroot, struct render_node **out, size_t *n, char *err,
                size_t errsz);

#endif

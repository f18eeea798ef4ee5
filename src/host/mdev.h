/* mdev: the mediated-device types a host offers (/sys/class/mdev_bus/PARENT/
 * mdev_supported_types/TYPE). The gpu mdev kind makes and removes the devices. */
#ifndef QDESK_HOST_MDEV_H
#define QDESK_HOST_MDEV_H

#include "host/pcidev.h"

#include <stdbool.h>
#include <stddef.h>

struct mdev_type {
    char parent[PCIDEV_ADDR_SIZE]; /* 0000:00:02.0 */
    char type[64];                 /* i915-GVTg_V5_4 */
    char name[64];                 /* GVTg_V5_4 */
    char device_api[16];           /* vfio-pci */
    unsigned available;            /* available_instances: how many more can be made */
    unsigned instances;            /* how many exist (its devices directory) */
    char description[256];         /* its lines joined by ", " */
};

/* Lists every type of every parent, in parent then type order, into a newly
 * allocated array (free with mdev_types_free()). None is an empty list. Returns 0,
 * or -1 with err. */
int mdev_scan(const char *sysroot, struct mdev_type **out, size_t *n, char *err,
              size_t errsz);
void mdev_types_free(struct mdev_type *v);

/* Returns true when want ("" for any) names m: its directory name ("i915-GVTg_V5_4")
 * or that name without the driver's prefix ("GVTg_V5_4"). */
bool mdev_type_matches(const struct mdev_type *m, const char *want);

#endif

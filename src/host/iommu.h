/* iommu: IOMMU groups (/sys/kernel/iommu_groups/N/devices) and whether a group can be
 * given to a guest.
 *
 * vfio hands a guest whole groups: every endpoint in the group must be bound to
 * vfio-pci or pci-stub or to no driver (PCI bridges do not count), or the host would
 * share memory with a device it still drives. */
#ifndef QDESK_HOST_IOMMU_H
#define QDESK_HOST_IOMMU_H

#include "host/pcidev.h"

#include <stdbool.h>
#include <stddef.h>

struct iommu_group {
    int id;
    char type[16];                   /* identity, DMA, DMA-FQ, ...; "" when unknown */
    char (*addrs)[PCIDEV_ADDR_SIZE]; /* its devices, sorted */
    size_t n;
};

struct iommu_groups {
    struct iommu_group *v; /* sorted by id */
    size_t n;
};

/* Reads every group. No groups (the IOMMU is off) is not an error. Returns 0, or -1
 * with err. Free with iommu_groups_free(). */
int iommu_scan(const char *sysroot, struct iommu_groups *out, char *err, size_t errsz);
void iommu_groups_free(struct iommu_groups *g);
const struct iommu_group *iommu_group_find(const struct iommu_groups *g, int id);

#define IOMMU_MAX_BLOCKERS 16

struct iommu_verdict {
    bool viable;
    size_t n_blockers;
    char blockers[IOMMU_MAX_BLOCKERS][PCIDEV_ADDR_SIZE];
    /* "0000:05:00.0 (Intel Corporation I210 Gigabit Network Connection) is bound to
     * igb", several joined by "; " */
    char why[1024];
    bool gpu; /* iommu_group_verdict(): the group holds a display device */
    /* iommu_group_verdict() of a group without a display device: the host drivers its
     * devices have now, which they leave when the group goes to a guest whole
     * ("0000:01:00.0 nvme"; "" when none) */
    char host_drivers[512];
};

/* Decides whether g can go to a guest once qdesk has bound the claimed devices to
 * vfio-pci: every other endpoint must already be vfio-safe. */
void iommu_check(const struct iommu_group *g, const struct pcidev_list *devs,
                 char (*claimed)[PCIDEV_ADDR_SIZE], size_t n_claimed,
                 struct iommu_verdict *v);

/* The verdict shown in reports: as iommu_check() with every display device of the
 * group and its companion functions (pcidev_companions()) claimed, since those are
 * what qdesk passes through. A group without a display device is isolated: it can go
 * to a guest whole, so it is viable, and the drivers that hold its devices now are in
 * host_drivers (a device never blocks its own group). */
void iommu_group_verdict(const struct iommu_group *g, const struct pcidev_list *devs,
                         struct iommu_verdict *v);

#endif

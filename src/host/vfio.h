/* vfio: handing PCI devices to vfio-pci and giving them back to their drivers.
 *
 * Binding goes through driver_override, as libvirt and driverctl do: unbind from the
 * current driver, write "vfio-pci" to driver_override, ask the kernel to probe the
 * device again (drivers_probe), then reset it where the kernel can. Giving back
 * reverses it from what was recorded: unbind from vfio-pci, clear driver_override and
 * probe again so the original driver takes the device. Every write goes through
 * hostw. */
#ifndef QDESK_HOST_VFIO_H
#define QDESK_HOST_VFIO_H

#include <stdbool.h>
#include <stddef.h>

/* Binds the device at addr (canonical) to vfio-pci and writes the driver it had
 * ("" for none, "vfio-pci" when it already was) into orig. On failure the device is
 * given back. Returns 0, or -1 with err. */
int vfio_bind(const char *sysroot, const char *addr, char *orig, size_t origsz, char *err,
              size_t errsz);

/* Gives the device at addr back: unbinds it from vfio-pci, clears driver_override and,
 * when orig names a driver, has the kernel probe it again. Does nothing when orig is
 * "vfio-pci" (it was bound before qdesk came), and succeeds for a device that no
 * longer exists, so it may be repeated. Returns 0, or -1 with err. */
int vfio_unbind(const char *sysroot, const char *addr, const char *orig, char *err,
                size_t errsz);

/* The processes holding /dev/vfio nodes open, as sysroot's /proc/PID/fd shows. Read
 * once, when vfio_device_user() first needs it (a walk over every process's
 * descriptors), and then asked for any number of devices. Start it zeroed. */
struct vfio_holders {
    bool read;
    size_t n;
    struct vfio_holder {
        char node[64]; /* "/dev/vfio/12", "/dev/vfio/devices/vfio0" */
        char who[64];  /* "process 4242 (qemu-system-x86)" */
    } * v;
};
void vfio_holders_free(struct vfio_holders *h);

/* Whether some process holds the device at addr through vfio: its IOMMU group's node
 * (/dev/vfio/N) or its vfio device node (/dev/vfio/devices/vfioN) is open. On true,
 * who says which. A device bound to vfio-pci that nobody holds (vfio-pci.ids= at
 * boot) is free to use; one bound to another driver is not held through vfio (and
 * costs no look at /proc). */
bool vfio_device_user(const char *sysroot, const char *addr, struct vfio_holders *h,
                      char *who, size_t whosz);

/* Returns 0 when vfio-pci is loaded (sysroot has /sys/bus/pci/drivers/vfio-pci), or
 * -1 with err saying how to load it. */
int vfio_available(const char *sysroot, char *err, size_t errsz);

#endif

/* pcidev: the PCI devices of a host, from /sys/bus/pci/devices below a sysroot.
 *
 * A device is named by its address in the kernel's form, "0000:01:00.0" (domain,
 * bus, slot, function; lowercase hex). Everything else is read from the device's
 * attributes and links: class, ids, the bound driver, its IOMMU group, whether it is
 * the boot VGA device, its SR-IOV state and mediated-device types. */
#ifndef QDESK_HOST_PCIDEV_H
#define QDESK_HOST_PCIDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCIDEV_ADDR_SIZE 16

struct pcidev {
    char addr[PCIDEV_ADDR_SIZE]; /* 0000:01:00.0 */
    uint32_t class_code;         /* 24 bits: 0x030000 is a VGA-compatible controller */
    uint16_t vendor, device, subvendor, subdevice;
    char driver[32];   /* the bound driver, "" when none */
    char override[32]; /* driver_override, "" when unset */
    int iommu_group;   /* -1: no IOMMU group (the IOMMU is off) */
    int boot_vga;      /* 1 or 0; -1 when the attribute is absent */
    int sriov_total;   /* -1: not SR-IOV capable */
    int sriov_num;
    int sriov_autoprobe;           /* -1 when absent */
    char physfn[PCIDEV_ADDR_SIZE]; /* a virtual function: its physical function */
    bool has_reset;      /* a "reset" attribute: the kernel can reset it alone */
    bool has_mdev_types; /* mdev_supported_types: a mediated-device parent */
    char vendor_name[96];
    char device_name[128];
    char name[232]; /* "NVIDIA Corporation GA104 [GeForce RTX 3070]" */
};

struct pcidev_list {
    struct pcidev *v;
    size_t n;
};

/* Writes the canonical address ("0000:01:00.0") of s into out (of at least
 * PCIDEV_ADDR_SIZE bytes). s may omit the domain ("01:00.0") and use either case.
 * Returns 0, or -1 when s is not a PCI address. */
int pcidev_addr_parse(const char *s, char *out, size_t outsz);

/* Reads one device. Returns 0, -ENOENT when sysroot has no such device, or another
 * -errno. addr must be canonical. */
int pcidev_read(const char *sysroot, const char *addr, struct pcidev *d);

/* Reads every device, sorted by address (a host without PCI has none). Returns 0,
 * or -1 with err. Free the list
 * with pcidev_list_free(). */
int pcidev_scan(const char *sysroot, struct pcidev_list *out, char *err, size_t errsz);
void pcidev_list_free(struct pcidev_list *l);

/* Returns the device at addr (canonical) in l, or NULL. */
const struct pcidev *pcidev_find(const struct pcidev_list *l, const char *addr);

/* A display controller: class 0x03xxxx (VGA, XGA, 3D, other). */
bool pcidev_is_display(const struct pcidev *d);
/* A PCI-to-PCI or CardBus bridge (root ports, switch ports): vfio does not need them
 * bound to it, so they never block an IOMMU group. Host bridges are not bridges in
 * this sense. */
bool pcidev_is_bridge(const struct pcidev *d);
/* The functions of one device share domain, bus and slot: "0000:01:00.0" and
 * "0000:01:00.1". */
bool pcidev_same_slot(const char *a, const char *b);

/* Writes into out (up to max addresses, function 0 first) the functions that are
 * passed to a guest together with the GPU at gpu: the GPU itself and the functions in
 * its slot that belong to a graphics card (display, audio, USB and serial-bus
 * controllers, such as an NVIDIA card's HDMI audio and USB-C controller). Other
 * functions in the slot are not taken. Returns the number written. */
size_t pcidev_companions(const struct pcidev_list *l, const struct pcidev *gpu,
                         char (*out)[PCIDEV_ADDR_SIZE], size_t max);

/* Returns true when the driver leaves an IOMMU group usable by vfio: none, vfio-pci
 * or pci-stub. */
bool pcidev_driver_vfio_safe(const char *driver);

/* Returns true when the device at d drives the host console: it is the boot VGA
 * device and a host driver is bound to it, or no driver is bound but a firmware
 * framebuffer (efifb, vesafb, simpledrm) still shows the console on it. */
bool pcidev_drives_console(const char *sysroot, const struct pcidev *d);

#endif

/* ids: device names from the PCI id database (pci.ids, through libpci) and the USB
 * id database (usb.ids, read directly).
 *
 * The files are the host's (/usr/share/misc/pci.ids and usb.ids, Debian packages
 * pci.ids and usb.ids) even when qdesk reads a captured sysroot: names come from the
 * database, not from the machine. Tests point them at fixed copies so names in
 * expectations do not change with the installed files. */
#ifndef QDESK_HOST_IDS_H
#define QDESK_HOST_IDS_H

#include <stddef.h>
#include <stdint.h>

#define IDS_PCI_DEFAULT "/usr/share/misc/pci.ids"
#define IDS_USB_DEFAULT "/usr/share/misc/usb.ids"

/* Uses these files for later lookups; NULL keeps the current one. A missing file is
 * not an error: names then fall back to numbers. */
void ids_set_files(const char *pci_ids, const char *usb_ids);

/* Writes the vendor and device names of a PCI device into vendor/device (each ""
 * when unknown) and the name lspci prints into name: "NVIDIA Corporation GA104
 * [GeForce RTX 3070]", "Intel Corporation Device a706", "Device 1234:5678". */
void ids_pci(uint16_t vendor, uint16_t device, char *vendor_name, size_t vsz,
             char *device_name, size_t dsz, char *name, size_t nsz);

/* Writes the name of a PCI class ("VGA compatible controller") from the 24-bit class
 * code, falling back to the base class ("Display controller") and then to
 * "Class 0300". */
void ids_pci_class(uint32_t class_code, char *out, size_t outsz);

/* Writes the usb.ids vendor and product names (each "" when unknown). */
void ids_usb(uint16_t vendor, uint16_t product, char *vendor_name, size_t vsz,
             char *product_name, size_t psz);

/* Frees the loaded databases (they are reloaded on the next lookup). */
void ids_cleanup(void);

#endif

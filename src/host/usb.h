/* usb: USB devices (/sys/bus/usb/devices) and the resolution of a user's request
 * ("VID:PID" or "BUS-PORT") to one device that can be given to a guest. */
#ifndef QDESK_HOST_USB_H
#define QDESK_HOST_USB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct usbdev {
    char port[32];    /* the kernel's name, bus-port: "1-1.2"; a root hub: "usb1" */
    unsigned bus;     /* busnum */
    unsigned devnum;  /* the address on the bus; changes when it is plugged again */
    char devpath[24]; /* the port path on the bus: "1.2"; "0" for a root hub */
    uint16_t vendor, product;
    char manufacturer[64]; /* the device's own strings, "" when it has none */
    char product_str[64];
    char serial[64];
    char vendor_name[96]; /* from usb.ids, "" when unknown */
    char product_name[128];
    char name[200];    /* "SanDisk Corp. Cruzer Blade" */
    char speed[8];     /* Mb/s as the kernel writes it: 1.5, 12, 480, 5000, ... */
    uint8_t dev_class; /* bDeviceClass */
    uint8_t cls;       /* the class that describes it: bDeviceClass, or its first
                          interface's class when that is 0 or 0xef */
    bool hub;
    bool root_hub;
};

struct usb_list {
    struct usbdev *v; /* by bus, then port path */
    size_t n;
};

/* Reads every USB device (not interfaces). No USB is an empty list. Returns 0, or -1
 * with err. Free with usb_list_free(). */
int usb_scan(const char *sysroot, struct usb_list *out, char *err, size_t errsz);
void usb_list_free(struct usb_list *l);

/* The usb.ids name of a class ("Mass Storage"), or "Class XX" written into buf. */
const char *usb_class_name(uint8_t cls, char *buf, size_t bufsz);

/* Returns true when d may be given to a guest; false with why ("a hub", "a root hub")
 * otherwise. */
bool usb_assignable(const struct usbdev *d, char *why, size_t whysz);

/* Finds the one device a request names: "VID:PID" (hex, such as 0781:5567) or
 * "BUS-PORT" (such as 1-1.2). Refuses a request that matches no device, matches a hub,
 * or (VID:PID) matches several devices, naming them so the user can pick one by port.
 * Returns 0 and the device in *out, or -1 with err. */
int usb_resolve(const struct usb_list *l, const char *request, const struct usbdev **out,
                char *err, size_t errsz);

#endif

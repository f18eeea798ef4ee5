#include "host/usb.h"

#include "host/ids.h"
#include "host/sysfs.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const base = "/sys/bus/usb/devices";

/* Copies s without its leading and trailing blanks (devices pad their strings). */
static void trimmed(char *out, size_t outsz, const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    snprintf(out, outsz, "%.*s", (int)len, s);
}

static int read_device(const char *sysroot, const char *port, struct usbdev *d)
{
    char buf[128];
    memset(d, 0, sizeof(*d));
    if (sysfs_read(sysroot, buf, sizeof(buf), "%s/%s/idVendor", base, port) < 0)
        return -1;
    snprintf(d->port, sizeof(d->port), "%s", port);
    d->vendor = (uint16_t)strtoul(buf, NULL, 16);
    d->product = (uint16_t)sysfs_read_num(sysroot, 0, 16, "%s/%s/idProduct", base, port);
    d->bus = (unsigned)sysfs_read_num(sysroot, 0, 10, "%s/%s/busnum", base, port);
    d->devnum = (unsigned)sysfs_read_num(sysroot, 0, 10, "%s/%s/devnum", base, port);
    sysfs_read(sysroot, d->devpath, sizeof(d->devpath), "%s/%s/devpath", base, port);
    sysfs_read(sysroot, d->speed, sizeof(d->speed), "%s/%s/speed", base, port);
    if (sysfs_read(sysroot, buf, sizeof(buf), "%s/%s/manufacturer", base, port) == 0)
        trimmed(d->manufacturer, sizeof(d->manufacturer), buf);
    if (sysfs_read(sysroot, buf, sizeof(buf), "%s/%s/product", base, port) == 0)
        trimmed(d->product_str, sizeof(d->product_str), buf);
    if (sysfs_read(sysroot, buf, sizeof(buf), "%s/%s/serial", base, port) == 0)
        trimmed(d->serial, sizeof(d->serial), buf);
    d->dev_class =
        (uint8_t)sysfs_read_num(sysroot, 0, 16, "%s/%s/bDeviceClass", base, port);
    d->root_hub = !strncmp(port, "usb", 3);
    d->hub = d->dev_class == 0x09;
    d->cls = d->dev_class;
    if (d->cls == 0x00 || d->cls == 0xef) {
        /* the class is given per interface: the first one of the active configuration */
        long cfg =
            (long)sysfs_read_num(sysroot, 1, 10, "%s/%s/bConfigurationValue", base, port);
        long long c = sysfs_read_num(sysroot, -1, 16, "%s/%s:%ld.0/bInterfaceClass", base,
                                     port, cfg);
        if (c >= 0)
            d->cls = (uint8_t)c;
    }
    ids_usb(d->vendor, d->product, d->vendor_name, sizeof(d->vendor_name),
            d->product_name, sizeof(d->product_name));
    const char *v = d->vendor_name[0] ? d->vendor_name : d->manufacturer;
    const char *p = d->product_name[0] ? d->product_name : d->product_str;
    if (*v || *p)
        snprintf(d->name, sizeof(d->name), "%s%s%s", v, *v && *p ? " " : "", p);
    else
        snprintf(d->name, sizeof(d->name), "Device %04x:%04x", d->vendor, d->product);
    return 0;
}

static int usb_cmp(const void *pa, const void *pb)
{
    const struct usbdev *a = pa, *b = pb;
    if (a->bus != b->bus)
        return a->bus < b->bus ? -1 : 1;
    if (a->root_hub != b->root_hub)
        return a->root_hub ? -1 : 1;
    return sysfs_name_cmp(a->devpath, b->devpath);
}

int usb_scan(const char *sysroot, struct usb_list *out, char *err, size_t errsz)
{
    out->v = NULL;
    out->n = 0;
    char **names = sysfs_list(sysroot, true, "%s", base);
    if (!names) {
        snprintf(err, errsz, "cannot list %s: %s", base, strerror(errno));
        return -1;
    }
    size_t m = sysfs_names_count(names);
    out->v = calloc(m ? m : 1, sizeof(*out->v));
    if (!out->v) {
        sysfs_names_free(names);
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < m; i++)
        if (!strchr(names[i], ':') && strlen(names[i]) < sizeof(out->v->port) &&
            read_device(sysroot, names[i], &out->v[out->n]) == 0)
            out->n++;
    sysfs_names_free(names);
    qsort(out->v, out->n, sizeof(*out->v), usb_cmp);
    return 0;
}

void usb_list_free(struct usb_list *l)
{
    if (!l)
        return;
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

const char *usb_class_name(uint8_t cls, char *buf, size_t bufsz)
{
    static const struct {
        uint8_t cls;
        const char *name;
    } names[] = {
        {0x00, "(Defined at Interface level)"},
        {0x01, "Audio"},
        {0x02, "Communications"},
        {0x03, "Human Interface Device"},
        {0x05, "Physical Interface Device"},
        {0x06, "Imaging"},
        {0x07, "Printer"},
        {0x08, "Mass Storage"},
        {0x09, "Hub"},
        {0x0a, "CDC Data"},
        {0x0b, "Chip/SmartCard"},
        {0x0d, "Content Security"},
        {0x0e, "Video"},
        {0x0f, "Personal Healthcare"},
        {0x10, "Audio/Video"},
        {0x11, "Billboard"},
        {0x12, "Type-C Bridge"},
        {0xdc, "Diagnostic"},
        {0xe0, "Wireless"},
        {0xef, "Miscellaneous Device"},
        {0xfe, "Application Specific Interface"},
        {0xff, "Vendor Specific Class"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].cls == cls)
            return names[i].name;
    snprintf(buf, bufsz, "Class %02x", cls);
    return buf;
}

bool usb_assignable(const struct usbdev *d, char *why, size_t whysz)
{
    if (d->root_hub)
        snprintf(why, whysz, "a root hub (the host controller's own ports)");
    else if (d->hub)
        snprintf(why, whysz, "a hub; give the devices on it instead");
    else {
        if (whysz)
            why[0] = 0;
        return true;
    }
    return false;
}

static bool is_vid_pid(const char *s)
{
    if (strlen(s) != 9 || s[4] != ':')
        return false;
    for (int i = 0; i < 9; i++)
        if (i != 4 && !isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

static bool is_bus_port(const char *s)
{
    const char *p = s;
    if (!isdigit((unsigned char)*p))
        return false;
    while (isdigit((unsigned char)*p))
        p++;
    if (*p++ != '-')
        return false;
    for (;;) {
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
        if (!*p)
            return true;
        if (*p++ != '.')
            return false;
    }
}

int usb_resolve(const struct usb_list *l, const char *request, const struct usbdev **out,
                char *err, size_t errsz)
{
    *out = NULL;
    const struct usbdev *found = NULL;
    char why[128];
    if (is_vid_pid(request)) {
        uint16_t vid = (uint16_t)strtoul(request, NULL, 16);
        uint16_t pid = (uint16_t)strtoul(request + 5, NULL, 16);
        const struct usbdev *match[16];
        size_t n = 0;
        for (size_t i = 0; i < l->n; i++)
            if (l->v[i].vendor == vid && l->v[i].product == pid && n < 16)
                match[n++] = &l->v[i];
        if (n == 0) {
            snprintf(err, errsz,
                     "usb: no device %04x:%04x is plugged in (qdesk host usb "
                     "lists them)",
                     vid, pid);
            return -1;
        }
        if (n > 1) {
            int len =
                snprintf(err, errsz, "usb: %04x:%04x is ambiguous: %zu devices match (",
                         vid, pid, n);
            for (size_t i = 0; i < n && len >= 0 && (size_t)len < errsz; i++)
                len += snprintf(err + len, errsz - (size_t)len, "%s%s %s",
                                i == 0       ? ""
                                : i + 1 == n ? " and "
                                             : ", ",
                                match[i]->port, match[i]->name);
            if (len >= 0 && (size_t)len < errsz)
                snprintf(err + len, errsz - (size_t)len,
                         "); ask for one by its port (BUS-PORT), such as %s",
                         match[0]->port);
            return -1;
        }
        found = match[0];
    } else if (is_bus_port(request)) {
        for (size_t i = 0; i < l->n && !found; i++)
            if (!strcmp(l->v[i].port, request))
                found = &l->v[i];
        if (!found) {
            snprintf(err, errsz,
                     "usb: nothing is plugged into port %s (qdesk host usb "
                     "lists the devices)",
                     request);
            return -1;
        }
    } else {
        snprintf(err, errsz,
                 "usb: '%s' is neither VID:PID (such as 0781:5567) nor "
                 "BUS-PORT (such as 1-1.2)",
                 request);
        return -1;
    }
    if (!usb_assignable(found, why, sizeof(why))) {
        snprintf(err, errsz, "usb: %s (%s) cannot be given to a guest: it is %s",
                 found->port, found->name, why);
        return -1;
    }
    *out = found;
    return 0;
}

#include "host/pcidev.h"

#include "host/ids.h"
#include "host/sysfs.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pcidev_addr_parse(const char *s, char *out, size_t outsz)
{
    unsigned dom = 0, bus, slot, fn;
    int used = 0;
    if (!s || outsz < PCIDEV_ADDR_SIZE)
        return -1;
    for (const char *p = s; *p; p++)
        if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
            return -1;
    size_t colons = 0;
    for (const char *p = s; *p; p++)
        colons += *p == ':';
    if (colons == 2) {
        if (sscanf(s, "%4x:%2x:%2x.%1x%n", &dom, &bus, &slot, &fn, &used) != 4)
            return -1;
    } else if (colons == 1) {
        if (sscanf(s, "%2x:%2x.%1x%n", &bus, &slot, &fn, &used) != 3)
            return -1;
    } else
        return -1;
    if (s[used] || slot > 0x1f || fn > 7)
        return -1;
    snprintf(out, outsz, "%04x:%02x:%02x.%x", dom, bus, slot, fn);
    return 0;
}

static bool addr_ok(const char *addr)
{
    char canon[PCIDEV_ADDR_SIZE];
    return pcidev_addr_parse(addr, canon, sizeof(canon)) == 0 && !strcmp(canon, addr);
}

int pcidev_read(const char *sysroot, const char *addr, struct pcidev *d)
{
    memset(d, 0, sizeof(*d));
    if (!addr_ok(addr))
        return -EINVAL;
    const char *base = "/sys/bus/pci/devices";
    char buf[64];
    int rc = sysfs_read(sysroot, buf, sizeof(buf), "%s/%s/vendor", base, addr);
    if (rc < 0)
        return rc;
    snprintf(d->addr, sizeof(d->addr), "%s", addr);
    d->vendor = (uint16_t)strtoul(buf, NULL, 16);
    d->device = (uint16_t)sysfs_read_num(sysroot, 0, 16, "%s/%s/device", base, addr);
    d->subvendor =
        (uint16_t)sysfs_read_num(sysroot, 0, 16, "%s/%s/subsystem_vendor", base, addr);
    d->subdevice =
        (uint16_t)sysfs_read_num(sysroot, 0, 16, "%s/%s/subsystem_device", base, addr);
    d->class_code = (uint32_t)sysfs_read_num(sysroot, 0, 16, "%s/%s/class", base, addr);
    sysfs_link_name(sysroot, d->driver, sizeof(d->driver), "%s/%s/driver", base, addr);
    sysfs_read(sysroot, d->override, sizeof(d->override), "%s/%s/driver_override", base,
               addr);
    if (!strcmp(d->override, "(null)"))
        d->override[0] = 0;
    d->iommu_group = -1;
    if (sysfs_link_name(sysroot, buf, sizeof(buf), "%s/%s/iommu_group", base, addr) ==
        0) {
        char *end;
        long g = strtol(buf, &end, 10);
        if (!*end && g >= 0 && g < 1 << 30)
            d->iommu_group = (int)g;
    }
    d->boot_vga = (int)sysfs_read_num(sysroot, -1, 10, "%s/%s/boot_vga", base, addr);
    d->sriov_total =
        (int)sysfs_read_num(sysroot, -1, 10, "%s/%s/sriov_totalvfs", base, addr);
    d->sriov_num = (int)sysfs_read_num(sysroot, 0, 10, "%s/%s/sriov_numvfs", base, addr);
    d->sriov_autoprobe =
        (int)sysfs_read_num(sysroot, -1, 10, "%s/%s/sriov_drivers_autoprobe", base, addr);
    if (sysfs_link_name(sysroot, buf, sizeof(buf), "%s/%s/physfn", base, addr) == 0 &&
        addr_ok(buf))
        snprintf(d->physfn, sizeof(d->physfn), "%s", buf);
    d->has_reset = sysfs_exists(sysroot, "%s/%s/reset", base, addr);
    d->has_mdev_types = sysfs_exists(sysroot, "%s/%s/mdev_supported_types", base, addr);
    ids_pci(d->vendor, d->device, d->vendor_name, sizeof(d->vendor_name), d->device_name,
            sizeof(d->device_name), d->name, sizeof(d->name));
    return 0;
}

static int addr_cmp(const void *a, const void *b)
{
    /* canonical addresses are fixed-width hex: byte order is address order */
    return strcmp(((const struct pcidev *)a)->addr, ((const struct pcidev *)b)->addr);
}

int pcidev_scan(const char *sysroot, struct pcidev_list *out, char *err, size_t errsz)
{
    out->v = NULL;
    out->n = 0;
    char **names = sysfs_list(sysroot, true, "/sys/bus/pci/devices"); /* none: no PCI */
    if (!names) {
        snprintf(err, errsz, "cannot list %s/sys/bus/pci/devices: %s",
                 strcmp(sysroot, "/") ? sysroot : "", strerror(errno));
        return -1;
    }
    size_t n = sysfs_names_count(names);
    out->v = calloc(n ? n : 1, sizeof(*out->v));
    if (!out->v) {
        sysfs_names_free(names);
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (addr_ok(names[i]) && pcidev_read(sysroot, names[i], &out->v[out->n]) == 0)
            out->n++;
    sysfs_names_free(names);
    qsort(out->v, out->n, sizeof(*out->v), addr_cmp);
    return 0;
}

void pcidev_list_free(struct pcidev_list *l)
{
    if (!l)
        return;
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

const struct pcidev *pcidev_find(const struct pcidev_list *l, const char *addr)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].addr, addr))
            return &l->v[i];
    return NULL;
}

bool pcidev_is_display(const struct pcidev *d)
{
    return (d->class_code >> 16) == 0x03;
}

bool pcidev_is_bridge(const struct pcidev *d)
{
    unsigned cls = d->class_code >> 8;
    return cls == 0x0604 || cls == 0x0607 || cls == 0x0609;
}

bool pcidev_same_slot(const char *a, const char *b)
{
    const char *da = strrchr(a, '.'), *db = strrchr(b, '.');
    return da && db && da - a == db - b && !strncmp(a, b, (size_t)(da - a));
}

/* A function that belongs to a graphics card: display, audio (HDMI/DP), USB (VirtualLink)
 * or serial bus (USB-C UCSI) controllers. */
static bool card_function(const struct pcidev *d)
{
    unsigned base = d->class_code >> 16, cls = d->class_code >> 8;
    return base == 0x03 || cls == 0x0403 || cls == 0x0c03 || cls == 0x0c80;
}

size_t pcidev_companions(const struct pcidev_list *l, const struct pcidev *gpu,
                         char (*out)[PCIDEV_ADDR_SIZE], size_t max)
{
    size_t n = 0;
    /* the list is sorted, so function 0 comes first */
    for (size_t i = 0; i < l->n && n < max; i++) {
        const struct pcidev *d = &l->v[i];
        if (!pcidev_same_slot(d->addr, gpu->addr) || d->physfn[0])
            continue;
        if (d == gpu || !strcmp(d->addr, gpu->addr) || card_function(d))
            snprintf(out[n++], PCIDEV_ADDR_SIZE, "%s", d->addr);
    }
    return n;
}

bool pcidev_driver_vfio_safe(const char *driver)
{
    return !driver[0] || !strcmp(driver, "vfio-pci") || !strcmp(driver, "pci-stub");
}

bool pcidev_drives_console(const char *sysroot, const struct pcidev *d)
{
    if (d->boot_vga != 1)
        return false;
    if (d->driver[0])
        return strcmp(d->driver, "vfio-pci") && strcmp(d->driver, "pci-stub");
    /* unbound: a firmware framebuffer may still be scanning out of its memory */
    char fb[256], path[4096];
    if (sysfs_path(path, sizeof(path), sysroot, "/proc/fb") < 0)
        return false;
    FILE *f = fopen(path, "re");
    bool found = false;
    while (f && !found && fgets(fb, sizeof(fb), f)) { /* "N name" per framebuffer */
        const char *name = fb + strspn(fb, "0123456789 ");
        found = !strncmp(name, "EFI VGA", 7) || !strncmp(name, "VESA VGA", 8) ||
                !strncmp(name, "simple", 6) || !strncmp(name, "efifb", 5) ||
                !strncmp(name, "vesafb", 6);
    }
    if (f)
        fclose(f);
    return found;
}

#include "host/ids.h"

#include "util/fs.h"
#include "util/log.h"

#include <limits.h>
#include <pci/pci.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    char pci_file[PATH_MAX];
    char usb_file[PATH_MAX];
    struct pci_access *pacc;
    char *usb_text; /* usb.ids, loaded once */
    bool usb_loaded;
} ids = {IDS_PCI_DEFAULT, IDS_USB_DEFAULT, NULL, NULL, false};

/* libpci's handle and its name cache are one per process: the allocator may look
 * names up from several threads, so every entry point takes this lock. */
static pthread_mutex_t ids_lock = PTHREAD_MUTEX_INITIALIZER;

static void pci_quiet(char *msg, ...)
{
    (void)msg;
}

static void pci_fatal(char *msg, ...) __attribute__((noreturn));
static void pci_fatal(char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    vfprintf(stderr, msg, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void cleanup_locked(void)
{
    if (ids.pacc)
        pci_cleanup(ids.pacc);
    ids.pacc = NULL;
    free(ids.usb_text);
    ids.usb_text = NULL;
    ids.usb_loaded = false;
}

void ids_cleanup(void)
{
    pthread_mutex_lock(&ids_lock);
    cleanup_locked();
    pthread_mutex_unlock(&ids_lock);
}

void ids_set_files(const char *pci_ids, const char *usb_ids)
{
    pthread_mutex_lock(&ids_lock);
    cleanup_locked();
    if (pci_ids)
        snprintf(ids.pci_file, sizeof(ids.pci_file), "%s", pci_ids);
    if (usb_ids)
        snprintf(ids.usb_file, sizeof(ids.usb_file), "%s", usb_ids);
    pthread_mutex_unlock(&ids_lock);
}

static struct pci_access *pacc(void)
{
    if (ids.pacc)
        return ids.pacc;
    struct pci_access *a = pci_alloc();
    if (!a)
        return NULL;
    a->error = pci_fatal;
    a->warning = pci_quiet;
    a->debug = pci_quiet;
    /* libpci keeps the pointer; to_be_freed=0 because ids owns the string */
    pci_set_name_list_path(a, ids.pci_file, 0);
    ids.pacc = a;
    return a;
}

static const int LOOKUP = PCI_LOOKUP_NO_NUMBERS | PCI_LOOKUP_NO_HWDB;

void ids_pci(uint16_t vendor, uint16_t device, char *vendor_name, size_t vsz,
             char *device_name, size_t dsz, char *name, size_t nsz)
{
    char vbuf[256], dbuf[256];
    const char *v = NULL, *d = NULL;
    pthread_mutex_lock(&ids_lock);
    struct pci_access *a = pacc();
    if (a) {
        v = pci_lookup_name(a, vbuf, sizeof(vbuf), PCI_LOOKUP_VENDOR | LOOKUP, vendor);
        d = pci_lookup_name(a, dbuf, sizeof(dbuf), PCI_LOOKUP_DEVICE | LOOKUP, vendor,
                            device);
    }
    pthread_mutex_unlock(&ids_lock);
    snprintf(vendor_name, vsz, "%s", v ? v : "");
    snprintf(device_name, dsz, "%s", d ? d : "");
    if (v && d)
        snprintf(name, nsz, "%s %s", v, d);
    else if (v)
        snprintf(name, nsz, "%s Device %04x", v, device);
    else
        snprintf(name, nsz, "Device %04x:%04x", vendor, device);
}

void ids_pci_class(uint32_t class_code, char *out, size_t outsz)
{
    char buf[256];
    const char *c = NULL;
    pthread_mutex_lock(&ids_lock);
    struct pci_access *a = pacc();
    if (a)
        c = pci_lookup_name(a, buf, sizeof(buf), PCI_LOOKUP_CLASS | LOOKUP,
                            (int)(class_code >> 8));
    pthread_mutex_unlock(&ids_lock);
    if (c)
        snprintf(out, outsz, "%s", c);
    else
        snprintf(out, outsz, "Class %04x", (unsigned)(class_code >> 8));
}

static const char *next_line(const char *p)
{
    p = strchr(p, '\n');
    return p ? p + 1 : NULL;
}

/* Returns the name on the line "ID  NAME" (ID: four hex digits) at q, or NULL when
 * the line holds another id. */
static const char *usb_match(const char *q, const char *key, size_t *len)
{
    if (strncmp(q, key, 4) != 0 || q[4] != ' ' || q[5] != ' ')
        return NULL;
    *len = strcspn(q + 6, "\n");
    return q + 6;
}

/* Finds the vendor line for vendor, then its product line; usb.ids lists vendors
 * first, each followed by its products indented by one tab. */
static void usb_lookup(const char *text, uint16_t vendor, uint16_t product, char *vname,
                       size_t vsz, char *pname, size_t psz)
{
    char vkey[8], pkey[8];
    snprintf(vkey, sizeof(vkey), "%04x", vendor);
    snprintf(pkey, sizeof(pkey), "%04x", product);
    size_t len;
    const char *p, *name = NULL;
    for (p = text; p && *p; p = next_line(p)) {
        if (p[0] == 'C' && p[1] == ' ')
            return; /* the class section follows the vendors */
        if (p[0] != '#' && p[0] != '\t' && (name = usb_match(p, vkey, &len)))
            break;
    }
    if (!name)
        return;
    snprintf(vname, vsz, "%.*s", (int)len, name);
    for (p = next_line(p); p && (p[0] == '\t' || p[0] == '#'); p = next_line(p))
        if (p[0] == '\t' && p[1] != '\t' && (name = usb_match(p + 1, pkey, &len))) {
            snprintf(pname, psz, "%.*s", (int)len, name);
            return;
        }
}

void ids_usb(uint16_t vendor, uint16_t product, char *vendor_name, size_t vsz,
             char *product_name, size_t psz)
{
    vendor_name[0] = product_name[0] = 0;
    pthread_mutex_lock(&ids_lock);
    if (!ids.usb_loaded) {
        ids.usb_loaded = true;
        ids.usb_text = fs_read_file(ids.usb_file, 16 << 20, NULL);
        if (!ids.usb_text)
            log_debug("ids: %s cannot be read; USB devices are shown by number",
                      ids.usb_file);
    }
    if (ids.usb_text)
        usb_lookup(ids.usb_text, vendor, product, vendor_name, vsz, product_name, psz);
    pthread_mutex_unlock(&ids_lock);
}

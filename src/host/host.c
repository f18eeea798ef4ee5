#include "host/host.h"

#include "host/check.h"
#include "host/gpu.h"
#include "host/ids.h"
#include "host/iommu.h"
#include "host/kcmdline.h"
#include "host/mdev.h"
#include "host/pcidev.h"
#include "host/render.h"
#include "host/usb.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: qdesk host check [--json]        is this host ready? one verdict per "
    "feature\n"
    "       qdesk host iommu [--json]        IOMMU groups and whether guests can have "
    "them\n"
    "       qdesk host gpus [--json]         GPUs and what each can give guests\n"
    "       qdesk host usb [--json]          USB devices\n"
    "       qdesk host cmdline --gpu ADDR... [--apply] [--json]\n"
    "                                        kernel parameters and modules for those "
    "GPUs;\n"
    "                                        --apply writes them to /etc/default/grub,\n"
    "                                        /etc/modules-load.d, /etc/modprobe.d and\n"
    "                                        /etc/initramfs-tools/modules (keeping "
    "backups)\n"
    "options: --pci-ids FILE, --usb-ids FILE  the device name databases\n";

struct opts {
    bool json, apply;
    char *gpus[32];
    size_t n_gpus;
};

static void emit_json(json_t *j, FILE *out)
{
    json_dumpf(j, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', out);
    json_decref(j);
}

/* --- check ----------------------------------------------------------------------- */

static int cmd_check(const struct config *cfg, const struct opts *o, FILE *out)
{
    struct check_report *r = malloc(sizeof(*r));
    if (!r)
        return 1;
    check_run(cfg, r);
    if (o->json)
        emit_json(check_json(r), out);
    else
        check_print(r, out);
    int rc = check_failed(r) ? 1 : 0;
    free(r);
    return rc;
}

/* --- iommu ----------------------------------------------------------------------- */

static json_t *device_json(const struct pcidev *d)
{
    char cls[128], hex[8], vid[8], did[8], sub[16];
    ids_pci_class(d->class_code, cls, sizeof(cls));
    snprintf(hex, sizeof(hex), "%04x", (unsigned)(d->class_code >> 8));
    snprintf(vid, sizeof(vid), "%04x", d->vendor);
    snprintf(did, sizeof(did), "%04x", d->device);
    snprintf(sub, sizeof(sub), "%04x:%04x", d->subvendor, d->subdevice);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "address",
                     d->addr, "class", hex, "class_name", cls, "vendor", vid, "device",
                     did, "subsystem", sub, "vendor_name", d->vendor_name, "device_name",
                     d->device_name, "name", d->name, "driver", d->driver, "bridge",
                     pcidev_is_bridge(d));
}

/* lspci -nn style: "0000:01:00.0 VGA compatible controller [0300]: NVIDIA Corporation
 * GA104 [GeForce RTX 3070] [10de:2484]". */
static void device_line(const struct pcidev *d, FILE *out)
{
    char cls[128];
    ids_pci_class(d->class_code, cls, sizeof(cls));
    fprintf(out, "%s %s [%04x]: %s [%04x:%04x]", d->addr, cls,
            (unsigned)(d->class_code >> 8), d->name, d->vendor, d->device);
}

static int cmd_iommu(const struct config *cfg, const struct opts *o, FILE *out,
                     FILE *errf)
{
    struct pcidev_list devs;
    struct iommu_groups groups = {0};
    char err[512];
    int rc = 1;
    if (pcidev_scan(cfg->sysroot, &devs, err, sizeof(err)) < 0 ||
        iommu_scan(cfg->sysroot, &groups, err, sizeof(err)) < 0) {
        fprintf(errf, "qdesk: %s\n", err);
        goto cleanup;
    }
    if (o->json) {
        json_t *list = json_array();
        for (size_t i = 0; i < groups.n; i++) {
            const struct iommu_group *g = &groups.v[i];
            struct iommu_verdict v;
            iommu_group_verdict(g, &devs, &v);
            json_t *members = json_array(), *blockers = json_array();
            for (size_t j = 0; j < g->n; j++) {
                const struct pcidev *d = pcidev_find(&devs, g->addrs[j]);
                if (d)
                    json_array_append_new(members, device_json(d));
            }
            for (size_t j = 0; j < v.n_blockers; j++)
                json_array_append_new(blockers, json_string(v.blockers[j]));
            json_array_append_new(
                list, json_pack("{s:i, s:s, s:b, s:o, s:s, s:b, s:s, s:o}", "group",
                                g->id, "type", g->type, "viable", v.viable, "blockers",
                                blockers, "why", v.why, "gpu", v.gpu, "host_drivers",
                                v.host_drivers, "devices", members));
        }
        emit_json(json_pack("{s:b, s:o}", "iommu", groups.n > 0, "groups", list), out);
    } else {
        if (!groups.n)
            fprintf(out,
                    "no IOMMU groups: the IOMMU is off (qdesk host check says how to "
                    "turn it on)\n");
        for (size_t i = 0; i < groups.n; i++) {
            const struct iommu_group *g = &groups.v[i];
            struct iommu_verdict v;
            iommu_group_verdict(g, &devs, &v);
            if (v.gpu)
                fprintf(out, "IOMMU group %d: %s%s\n", g->id,
                        v.viable ? "viable" : "not viable: ", v.why);
            else
                fprintf(out, "IOMMU group %d: viable, no GPU (isolated%s%s)\n", g->id,
                        v.host_drivers[0] ? "; on the host now: " : "", v.host_drivers);
            for (size_t j = 0; j < g->n; j++) {
                const struct pcidev *d = pcidev_find(&devs, g->addrs[j]);
                if (!d)
                    continue;
                fprintf(out, "  ");
                device_line(d, out);
                fprintf(out, " (%s%s)\n", d->driver[0] ? "driver " : "no driver",
                        d->driver);
            }
        }
    }
    rc = groups.n ? 0 : 1;
cleanup:
    pcidev_list_free(&devs);
    iommu_groups_free(&groups);
    return rc;
}

/* --- gpus ------------------------------------------------------------------------ */

struct inventory {
    struct pcidev_list devs;
    struct iommu_groups groups;
    struct mdev_type *types;
    size_t n_types;
    struct render_node *nodes;
    size_t n_nodes;
};

static void inventory_free(struct inventory *inv)
{
    pcidev_list_free(&inv->devs);
    iommu_groups_free(&inv->groups);
    mdev_types_free(inv->types);
    free(inv->nodes);
}

static const struct render_node *node_of(const struct inventory *inv, const char *addr)
{
    for (size_t i = 0; i < inv->n_nodes; i++)
        if (!strcmp(inv->nodes[i].pci, addr))
            return &inv->nodes[i];
    return NULL;
}

static json_t *gpu_json(const char *sysroot, const struct inventory *inv,
                        const struct pcidev *d)
{
    char fns[GPU_MAX_FUNCTIONS][PCIDEV_ADDR_SIZE], why[1400];
    size_t n_fn;
    bool ok = gpu_passthrough_check(sysroot, &inv->devs, &inv->groups, d, false, fns,
                                    &n_fn, why, sizeof(why));
    json_t *functions = json_array();
    for (size_t i = 0; ok && i < n_fn; i++)
        json_array_append_new(functions, json_string(fns[i]));
    json_t *j = device_json(d);
    json_object_set_new(j, "iommu_group", json_integer(d->iommu_group));
    json_object_set_new(j, "boot_vga", json_boolean(d->boot_vga == 1));
    json_object_set_new(j, "console", json_boolean(pcidev_drives_console(sysroot, d)));
    json_object_set_new(j, "passthrough",
                        json_pack("{s:b, s:o, s:s, s:b}", "possible", ok, "functions",
                                  functions, "why", ok ? "" : why, "hide_kvm",
                                  gpu_nvidia_consumer(d)));
    if (d->sriov_total > 0) {
        json_t *vfs = json_array();
        for (unsigned k = 0; k < (unsigned)d->sriov_num; k++) {
            char addr[PCIDEV_ADDR_SIZE];
            if (gpu_vf_addr(sysroot, d, k, addr, sizeof(addr)) < 0)
                break;
            const struct pcidev *vf = pcidev_find(&inv->devs, addr);
            json_array_append_new(vfs,
                                  json_pack("{s:s, s:s, s:i}", "address", addr, "driver",
                                            vf ? vf->driver : "", "iommu_group",
                                            vf ? vf->iommu_group : -1));
        }
        json_object_set_new(j, "sriov",
                            json_pack("{s:i, s:i, s:b, s:o}", "total", d->sriov_total,
                                      "enabled", d->sriov_num, "autoprobe",
                                      d->sriov_autoprobe != 0, "vfs", vfs));
    } else
        json_object_set_new(j, "sriov", json_null());
    json_t *types = json_array();
    for (size_t i = 0; i < inv->n_types; i++) {
        const struct mdev_type *t = &inv->types[i];
        if (!strcmp(t->parent, d->addr))
            json_array_append_new(
                types, json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", t->type, "name",
                                 t->name, "available", (int)t->available, "description",
                                 t->description, "device_api", t->device_api));
    }
    json_object_set_new(j, "mdev_types", types);
    const struct render_node *node = node_of(inv, d->addr);
    json_object_set_new(j, "render_node", json_string(node ? node->path : ""));
    return j;
}

static void gpu_text(const char *sysroot, const struct inventory *inv,
                     const struct pcidev *d, FILE *out)
{
    char fns[GPU_MAX_FUNCTIONS][PCIDEV_ADDR_SIZE], why[1400];
    size_t n_fn;
    fprintf(out, "%s %s [%04x:%04x]\n", d->addr, d->name, d->vendor, d->device);
    fprintf(out, "  driver %s, ", d->driver[0] ? d->driver : "none");
    if (d->iommu_group >= 0)
        fprintf(out, "IOMMU group %d", d->iommu_group);
    else
        fprintf(out, "no IOMMU group");
    if (d->boot_vga == 1)
        fprintf(out, ", boot VGA%s",
                pcidev_drives_console(sysroot, d) ? " (shows the host console)" : "");
    fprintf(out, "\n");
    if (gpu_passthrough_check(sysroot, &inv->devs, &inv->groups, d, false, fns, &n_fn,
                              why, sizeof(why))) {
        fprintf(out, "  passthrough: yes");
        for (size_t i = 1; i < n_fn; i++)
            fprintf(out, "%s%s", i == 1 ? ", with " : ", ", fns[i]);
        if (gpu_nvidia_consumer(d))
            fprintf(out, " (KVM hidden from the guest: a consumer NVIDIA card)");
        fprintf(out, "\n");
    } else
        fprintf(out, "  passthrough: no: %s\n", why);
    if (d->sriov_total > 0) {
        fprintf(out, "  vf: %d of %d VFs enabled%s", d->sriov_num, d->sriov_total,
                d->sriov_num ? ":" : " (qdesk creates them on first use)");
        for (unsigned k = 0; k < (unsigned)d->sriov_num; k++) {
            char addr[PCIDEV_ADDR_SIZE];
            if (gpu_vf_addr(sysroot, d, k, addr, sizeof(addr)) < 0)
                break;
            const struct pcidev *vf = pcidev_find(&inv->devs, addr);
            fprintf(out, "%s %s (%s)", k ? "," : "", addr,
                    vf && vf->driver[0] ? vf->driver : "no driver");
        }
        fprintf(out, "\n");
    }
    bool first = true;
    for (size_t i = 0; i < inv->n_types; i++) {
        const struct mdev_type *t = &inv->types[i];
        if (strcmp(t->parent, d->addr))
            continue;
        fprintf(out, "%s %s (%u free: %s)", first ? "  mdev:" : ",", t->type,
                t->available, t->description);
        first = false;
    }
    if (!first)
        fprintf(out, "\n");
    const struct render_node *node = node_of(inv, d->addr);
    if (node)
        fprintf(out, "  virgl: %s\n", node->path);
}

static int cmd_gpus(const struct config *cfg, const struct opts *o, FILE *out, FILE *errf)
{
    struct inventory inv = {0};
    char err[512];
    int rc = 1;
    if (pcidev_scan(cfg->sysroot, &inv.devs, err, sizeof(err)) < 0 ||
        iommu_scan(cfg->sysroot, &inv.groups, err, sizeof(err)) < 0 ||
        mdev_scan(cfg->sysroot, &inv.types, &inv.n_types, err, sizeof(err)) < 0 ||
        render_scan(cfg->sysroot, &inv.nodes, &inv.n_nodes, err, sizeof(err)) < 0) {
        fprintf(errf, "qdesk: %s\n", err);
        goto cleanup;
    }
    json_t *list = o->json ? json_array() : NULL;
    size_t n = 0;
    for (size_t i = 0; i < inv.devs.n; i++) {
        const struct pcidev *d = &inv.devs.v[i];
        if (!pcidev_is_display(d) || d->physfn[0])
            continue;
        if (list)
            json_array_append_new(list, gpu_json(cfg->sysroot, &inv, d));
        else
            gpu_text(cfg->sysroot, &inv, d, out);
        n++;
    }
    if (list)
        emit_json(json_pack("{s:o}", "gpus", list), out);
    else if (!n)
        fprintf(out, "no GPU (PCI display controller) on this host\n");
    rc = 0;
cleanup:
    inventory_free(&inv);
    return rc;
}

/* --- usb ------------------------------------------------------------------------- */

static void speed_text(const char *mbps, char *out, size_t outsz)
{
    double v = strtod(mbps, NULL);
    if (v >= 1000)
        snprintf(out, outsz, "%gG", v / 1000);
    else
        snprintf(out, outsz, "%sM", mbps[0] ? mbps : "?");
}

/* Mb/s as a number: 480, or 1.5 for low speed. */
static json_t *speed_json(const char *mbps)
{
    double v = strtod(mbps, NULL);
    return v == (double)(long long)v ? json_integer((json_int_t)v) : json_real(v);
}

static int cmd_usb(const struct config *cfg, const struct opts *o, FILE *out, FILE *errf)
{
    struct usb_list l;
    char err[512];
    if (usb_scan(cfg->sysroot, &l, err, sizeof(err)) < 0) {
        fprintf(errf, "qdesk: %s\n", err);
        return 1;
    }
    json_t *list = o->json ? json_array() : NULL;
    for (size_t i = 0; i < l.n; i++) {
        const struct usbdev *d = &l.v[i];
        char why[128], buf[16], speed[16], vid[8], pid[8], cls[4];
        bool ok = usb_assignable(d, why, sizeof(why));
        const char *cname = usb_class_name(d->cls, buf, sizeof(buf));
        if (list) {
            snprintf(vid, sizeof(vid), "%04x", d->vendor);
            snprintf(pid, sizeof(pid), "%04x", d->product);
            snprintf(cls, sizeof(cls), "%02x", d->cls);
            json_array_append_new(
                list,
                json_pack(
                    "{s:s, s:i, s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o,"
                    " s:s, s:s, s:b, s:b, s:b, s:s}",
                    "port", d->port, "bus", (int)d->bus, "device", (int)d->devnum,
                    "devpath", d->devpath, "vendor", vid, "product", pid, "name", d->name,
                    "vendor_name", d->vendor_name, "product_name", d->product_name,
                    "manufacturer", d->manufacturer, "product_string", d->product_str,
                    "serial", d->serial, "speed_mbps", speed_json(d->speed), "class", cls,
                    "class_name", cname, "hub", d->hub, "root_hub", d->root_hub,
                    "assignable", ok, "why", why));
            continue;
        }
        speed_text(d->speed, speed, sizeof(speed));
        fprintf(out, "%-8s %04x:%04x  %-6s %-23s %s", d->port, d->vendor, d->product,
                speed, cname, d->name);
        if (ok)
            fprintf(out, "\n");
        else
            fprintf(out, "  (not assignable: %s)\n", why);
    }
    if (list)
        emit_json(json_pack("{s:o}", "devices", list), out);
    else if (!l.n)
        fprintf(out, "no USB devices on this host\n");
    usb_list_free(&l);
    return 0;
}

/* --- cmdline --------------------------------------------------------------------- */

static int cmd_cmdline(const struct config *cfg, const struct opts *o, FILE *out,
                       FILE *errf)
{
    struct kcmdline_plan *p = malloc(sizeof(*p));
    char err[1024], msg[2048];
    int rc = 1;
    if (!p)
        return 1;
    if (!o->n_gpus) {
        fprintf(errf,
                "qdesk: host cmdline needs --gpu ADDR (qdesk host gpus lists them)\n");
        rc = 2;
        goto cleanup;
    }
    if (kcmdline_plan(cfg->sysroot, o->gpus, o->n_gpus, p, err, sizeof(err)) < 0) {
        fprintf(errf, "qdesk: %s\n", err);
        goto cleanup;
    }
    if (o->json)
        emit_json(kcmdline_plan_json(p), out);
    else if (!o->apply)
        kcmdline_print(p, out);
    if (o->apply) {
        if (kcmdline_apply(cfg->sysroot, p, time(NULL), msg, sizeof(msg), err,
                           sizeof(err)) < 0) {
            fprintf(errf, "qdesk: %s\n", err);
            goto cleanup;
        }
        if (strcmp(cfg->sysroot, "/") && cfg->sysroot[0])
            fprintf(o->json ? errf : out, "(below the sysroot %s)\n", cfg->sysroot);
        fputs(msg, o->json ? errf : out);
    }
    rc = 0;
cleanup:
    free(p);
    return rc;
}

/* --- dispatch -------------------------------------------------------------------- */

int host_command(const struct config *cfg, int argc, char **argv, FILE *out, FILE *errf)
{
    struct opts o = {0};
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (!sub || !strcmp(sub, "-h") || !strcmp(sub, "--help")) {
        fputs(usage, sub ? out : errf);
        return sub ? 0 : 2;
    }
    bool in_gpus = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json"))
            o.json = true;
        else if (!strcmp(a, "--apply"))
            o.apply = true;
        else if (!strcmp(a, "--gpu") || !strncmp(a, "--gpu=", 6)) {
            in_gpus = true;
            const char *v = a[5] == '=' ? a + 6 : i + 1 < argc ? argv[++i] : NULL;
            if (!v || !v[0] || v[0] == '-') {
                fprintf(errf, "qdesk: --gpu needs a PCI address\n");
                return 2;
            }
            if (o.n_gpus < 32)
                o.gpus[o.n_gpus++] = (char *)v;
        } else if (!strcmp(a, "--pci-ids") || !strcmp(a, "--usb-ids")) {
            if (i + 1 >= argc) {
                fprintf(errf, "qdesk: %s needs a file\n", a);
                return 2;
            }
            ids_set_files(a[2] == 'p' ? argv[i + 1] : NULL,
                          a[2] == 'u' ? argv[i + 1] : NULL);
            i++;
        } else if (in_gpus && a[0] != '-') {
            if (o.n_gpus < 32)
                o.gpus[o.n_gpus++] = argv[i]; /* --gpu A B C */
        } else {
            fprintf(errf, "qdesk: host %s: unknown option '%s'\n\n%s", sub, a, usage);
            return 2;
        }
    }
    if ((o.apply || o.n_gpus) && strcmp(sub, "cmdline")) {
        fprintf(errf, "qdesk: --gpu and --apply belong to host cmdline\n");
        return 2;
    }
    if (!strcmp(sub, "check"))
        return cmd_check(cfg, &o, out);
    if (!strcmp(sub, "iommu"))
        return cmd_iommu(cfg, &o, out, errf);
    if (!strcmp(sub, "gpus"))
        return cmd_gpus(cfg, &o, out, errf);
    if (!strcmp(sub, "usb"))
        return cmd_usb(cfg, &o, out, errf);
    if (!strcmp(sub, "cmdline"))
        return cmd_cmdline(cfg, &o, out, errf);
    fprintf(errf, "qdesk: host: '%s' is not a report\n\n%s", sub, usage);
    return 2;
}

int host_main(const struct config *cfg, int argc, char **argv)
{
    int rc = host_command(cfg, argc, argv, stdout, stderr);
    fflush(stdout);
    return rc;
}

#include "host/kcmdline.h"

#include "host/cpu.h"
#include "host/gpu.h"
#include "host/hostw.h"
#include "host/iommu.h"
#include "host/pcidev.h"
#include "util/fs.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- reading command lines ------------------------------------------------------- */

bool kcmdline_get(const char *cmdline, const char *key, char *value, size_t valuesz)
{
    size_t klen = strlen(key);
    bool found = false;
    const char *p = cmdline;
    while (*p) {
        p += strspn(p, " \t\n");
        size_t len = strcspn(p, " \t\n");
        if (len >= klen && !strncmp(p, key, klen) && (len == klen || p[klen] == '=')) {
            found = true;
            if (valuesz) {
                size_t vlen = len > klen ? len - klen - 1 : 0;
                snprintf(value, valuesz, "%.*s", (int)vlen, p + klen + (len > klen));
            }
        }
        p += len;
    }
    return found;
}

int kcmdline_read(const char *sysroot, char *out, size_t outsz)
{
    char path[PATH_MAX];
    out[0] = 0;
    if (fs_join(path, sizeof(path), sysroot, "/proc/cmdline") < 0)
        return -ENAMETOOLONG;
    int rc = fs_read_line(path, out, outsz);
    if (rc < 0)
        out[0] = 0;
    return rc;
}

/* --- planning -------------------------------------------------------------------- */

static void add_unique(char (*list)[256], size_t *n, const char *s)
{
    for (size_t i = 0; i < *n; i++)
        if (!strcmp(list[i], s))
            return;
    if (*n < KCMDLINE_MAX)
        snprintf(list[(*n)++], 256, "%s", s);
}

static void add_module(char (*list)[32], size_t *n, const char *m)
{
    for (size_t i = 0; i < *n; i++)
        if (!strcmp(list[i], m))
            return;
    if (*n < KCMDLINE_MAX)
        snprintf(list[(*n)++], 32, "%s", m);
}

static void add_softdep(struct kcmdline_plan *p, const char *driver)
{
    char line[128];
    snprintf(line, sizeof(line), "softdep %s pre: vfio-pci", driver);
    for (size_t i = 0; i < p->n_modprobe; i++)
        if (!strcmp(p->modprobe[i], line))
            return;
    if (p->n_modprobe < KCMDLINE_MAX)
        snprintf(p->modprobe[p->n_modprobe++], sizeof(p->modprobe[0]), "%s", line);
}

static void note(struct kcmdline_plan *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(struct kcmdline_plan *p, const char *fmt, ...)
{
    if (p->n_notes >= KCMDLINE_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->notes[p->n_notes++], sizeof(p->notes[0]), fmt, ap);
    va_end(ap);
}

/* The drivers a vendor's cards may come up with: each gets a softdep on vfio-pci. */
static void softdeps_for(struct kcmdline_plan *p, const struct pcidev *d)
{
    if (d->driver[0] && !pcidev_driver_vfio_safe(d->driver))
        add_softdep(p, d->driver);
    if (!pcidev_is_display(d))
        return;
    if (d->vendor == 0x10de) {
        add_softdep(p, "nouveau");
        add_softdep(p, "nvidia");
    } else if (d->vendor == 0x1002) {
        add_softdep(p, "amdgpu");
        add_softdep(p, "radeon");
    } else if (d->vendor == 0x8086)
        add_softdep(p, "i915");
}

int kcmdline_plan(const char *sysroot, char *const *addrs, size_t n,
                  struct kcmdline_plan *p, char *err, size_t errsz)
{
    struct pcidev_list devs;
    struct iommu_groups groups = {0};
    char ids[KCMDLINE_MAX][256], claimed[64][PCIDEV_ADDR_SIZE];
    size_t n_ids = 0, n_claimed = 0;
    char gpu_params[KCMDLINE_MAX][256];
    size_t n_gpu_params = 0;
    bool vfio = false, gvt = false;
    int rc = -1;
    memset(p, 0, sizeof(*p));
    cpu_vendor(sysroot, p->vendor, sizeof(p->vendor));
    if (pcidev_scan(sysroot, &devs, err, errsz) < 0)
        return -1;
    if (iommu_scan(sysroot, &groups, err, errsz) < 0)
        goto cleanup;

    for (size_t a = 0; a < n; a++) {
        char addr[PCIDEV_ADDR_SIZE];
        if (pcidev_addr_parse(addrs[a], addr, sizeof(addr)) < 0) {
            snprintf(err, errsz,
                     "cmdline: '%s' is not a PCI address (such as 0000:01:00.0)",
                     addrs[a]);
            goto cleanup;
        }
        const struct pcidev *d = pcidev_find(&devs, addr);
        if (!d) {
            snprintf(err, errsz,
                     "cmdline: there is no PCI device %s (qdesk host gpus lists "
                     "the GPUs)",
                     addr);
            goto cleanup;
        }
        if (d->physfn[0] && pcidev_find(&devs, d->physfn))
            d = pcidev_find(&devs, d->physfn); /* a VF: what matters is its PF */
        if (pcidev_is_display(d) && d->sriov_total > 0) {
            char param[256];
            vfio = true;
            if (!strcmp(d->driver, "xe")) {
                snprintf(param, sizeof(param), "xe.max_vfs=%d", d->sriov_total);
                add_unique(gpu_params, &n_gpu_params, param);
            } else if (d->vendor == 0x8086) {
                add_unique(gpu_params, &n_gpu_params, "i915.enable_guc=3");
                snprintf(param, sizeof(param), "i915.max_vfs=%d", d->sriov_total);
                add_unique(gpu_params, &n_gpu_params, param);
            }
            note(p,
                 "%s (%s) shares itself as up to %d SR-IOV VFs: qdesk creates them and "
                 "binds one to vfio-pci per session, so no vfio-pci.ids (the VFs have "
                 "the same ids as the GPU the host keeps)",
                 d->addr, d->name, d->sriov_total);
            continue;
        }
        if (d->has_mdev_types || gpu_gvt_capable(d)) {
            gvt = true;
            add_unique(gpu_params, &n_gpu_params, "i915.enable_gvt=1");
            note(p,
                 "%s (%s) is shared with GVT-g: i915 makes mediated devices of it and "
                 "keeps driving it",
                 d->addr, d->name);
            continue;
        }
        /* a whole card: it and the other endpoints of its IOMMU group go to vfio-pci */
        vfio = true;
        char fns[GPU_MAX_FUNCTIONS][PCIDEV_ADDR_SIZE];
        size_t n_fn = pcidev_companions(&devs, d, fns, GPU_MAX_FUNCTIONS);
        const struct iommu_group *g =
            d->iommu_group >= 0 ? iommu_group_find(&groups, d->iommu_group) : NULL;
        if (!g)
            note(p,
                 "the IOMMU is off, so the IOMMU group of %s is not known yet: run this "
                 "again after rebooting with these parameters",
                 d->addr);
        size_t members = g ? g->n : n_fn;
        for (size_t i = 0; i < members; i++) {
            const struct pcidev *m = pcidev_find(&devs, g ? g->addrs[i] : fns[i]);
            if (!m || (m->class_code >> 16) == 0x06)
                continue; /* bridges stay with the host */
            bool companion = false;
            for (size_t j = 0; j < n_fn; j++)
                companion |= !strcmp(fns[j], m->addr);
            if (!companion && m->driver[0] && !pcidev_driver_vfio_safe(m->driver))
                note(p,
                     "warning: IOMMU group %d also holds %s (%s, bound to %s): "
                     "vfio-pci.ids takes it from the host too",
                     g->id, m->addr, m->name, m->driver);
            char id[16];
            snprintf(id, sizeof(id), "%04x:%04x", m->vendor, m->device);
            add_unique(ids, &n_ids, id);
            if (n_claimed < 64)
                snprintf(claimed[n_claimed++], PCIDEV_ADDR_SIZE, "%s", m->addr);
            softdeps_for(p, m);
        }
        if (pcidev_drives_console(sysroot, d))
            note(p,
                 "%s shows the host console now; with vfio-pci.ids the host boots "
                 "without it (give the host another GPU, or add video=efifb:off if "
                 "its screen stays lit)",
                 d->addr);
    }
    /* vfio-pci.ids binds every device with those ids, not only the chosen ones */
    for (size_t i = 0; i < devs.n; i++) {
        char id[16];
        snprintf(id, sizeof(id), "%04x:%04x", devs.v[i].vendor, devs.v[i].device);
        bool mine = false, listed = false;
        for (size_t j = 0; j < n_claimed; j++)
            mine |= !strcmp(claimed[j], devs.v[i].addr);
        for (size_t j = 0; j < n_ids; j++)
            listed |= !strcmp(ids[j], id);
        if (listed && !mine)
            note(p, "warning: vfio-pci.ids=%s also takes %s (%s), which was not chosen",
                 id, devs.v[i].addr, devs.v[i].name);
    }

    if (!strcmp(p->vendor, "GenuineIntel"))
        add_unique(p->params, &p->n_params, "intel_iommu=on");
    else if (!strcmp(p->vendor, "AuthenticAMD"))
        add_unique(p->params, &p->n_params, "amd_iommu=on");
    else
        note(p, "the CPU vendor (%s) needs no IOMMU parameter that qdesk knows",
             p->vendor[0] ? p->vendor : "unknown");
    add_unique(p->params, &p->n_params, "iommu=pt");
    if (n_ids) {
        char param[256];
        int len = snprintf(param, sizeof(param), "vfio-pci.ids=");
        for (size_t i = 0; i < n_ids && len >= 0 && (size_t)len < sizeof(param); i++)
            len += snprintf(param + len, sizeof(param) - (size_t)len, "%s%s",
                            i ? "," : "", ids[i]);
        add_unique(p->params, &p->n_params, param);
    }
    add_unique(p->params, &p->n_params, "kvm.ignore_msrs=1");
    for (size_t i = 0; i < n_gpu_params; i++)
        add_unique(p->params, &p->n_params, gpu_params[i]);
    static const char *const vfio_modules[] = {"vfio", "vfio_iommu_type1", "vfio_pci"};
    for (size_t i = 0; i < 3; i++) {
        if (vfio)
            add_module(p->modules, &p->n_modules, vfio_modules[i]);
        /* a whole card: vfio-pci must take it in the initramfs, where its driver
         * loads too */
        if (n_ids)
            add_module(p->initramfs, &p->n_initramfs, vfio_modules[i]);
    }
    if (gvt) {
        add_module(p->modules, &p->n_modules, "kvmgt");
        add_module(p->modules, &p->n_modules, "vfio_iommu_type1");
        add_module(p->modules, &p->n_modules, "mdev");
    }
    rc = 0;
cleanup:
    pcidev_list_free(&devs);
    iommu_groups_free(&groups);
    return rc;
}

/* --- showing --------------------------------------------------------------------- */

static const char *const commands[] = {"update-initramfs -u", "update-grub", "reboot"};

void kcmdline_print(const struct kcmdline_plan *p, FILE *f)
{
    fprintf(f, "# kernel command line (GRUB_CMDLINE_LINUX_DEFAULT in %s):\n",
            KCMDLINE_GRUB);
    for (size_t i = 0; i < p->n_params; i++)
        fprintf(f, "%s%s", i ? " " : "", p->params[i]);
    fprintf(f, "\n");
    if (p->n_modules) {
        fprintf(f, "\n# %s\n", KCMDLINE_MODULES);
        for (size_t i = 0; i < p->n_modules; i++)
            fprintf(f, "%s\n", p->modules[i]);
    }
    if (p->n_modprobe) {
        fprintf(f, "\n# %s\n", KCMDLINE_MODPROBE);
        for (size_t i = 0; i < p->n_modprobe; i++)
            fprintf(f, "%s\n", p->modprobe[i]);
    }
    if (p->n_initramfs) {
        fprintf(f, "\n# %s (vfio-pci takes the card before its driver can)\n",
                KCMDLINE_INITRAMFS);
        for (size_t i = 0; i < p->n_initramfs; i++)
            fprintf(f, "%s\n", p->initramfs[i]);
    }
    if (p->n_notes) {
        fprintf(f, "\n");
        for (size_t i = 0; i < p->n_notes; i++)
            fprintf(f, "# %s\n", p->notes[i]);
    }
    fprintf(f,
            "\n# then (qdesk host cmdline --gpu ... --apply writes the files above):\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "%s\n", commands[i]);
}

json_t *kcmdline_plan_json(const struct kcmdline_plan *p)
{
    json_t *params = json_array(), *modules = json_array(), *modprobe = json_array(),
           *initramfs = json_array(), *notes = json_array(), *cmds = json_array();
    char line[KCMDLINE_MAX * 257] = "";
    size_t len = 0;
    for (size_t i = 0; i < p->n_params; i++) {
        json_array_append_new(params, json_string(p->params[i]));
        len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s", i ? " " : "",
                                p->params[i]);
    }
    for (size_t i = 0; i < p->n_modules; i++)
        json_array_append_new(modules, json_string(p->modules[i]));
    for (size_t i = 0; i < p->n_modprobe; i++)
        json_array_append_new(modprobe, json_string(p->modprobe[i]));
    for (size_t i = 0; i < p->n_initramfs; i++)
        json_array_append_new(initramfs, json_string(p->initramfs[i]));
    for (size_t i = 0; i < p->n_notes; i++)
        json_array_append_new(notes, json_string(p->notes[i]));
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        json_array_append_new(cmds, json_string(commands[i]));
    return json_pack("{s:s, s:o, s:s, s:o, s:o, s:o, s:o, s:o}", "vendor", p->vendor,
                     "params", params, "cmdline", line, "modules", modules, "modprobe",
                     modprobe, "initramfs", initramfs, "notes", notes, "commands", cmds);
}

/* --- applying -------------------------------------------------------------------- */

/* Joins two comma-separated id lists without repeating an id. */
static void join_ids(const char *a, const char *b, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s", a);
    char copy[256];
    snprintf(copy, sizeof(copy), "%s", b);
    for (char *save, *id = strtok_r(copy, ",", &save); id;
         id = strtok_r(NULL, ",", &save)) {
        bool have = false;
        char mine[256];
        snprintf(mine, sizeof(mine), "%s", a);
        for (char *s2, *x = strtok_r(mine, ",", &s2); x && !have;
             x = strtok_r(NULL, ",", &s2))
            have = !strcmp(x, id);
        if (!have) {
            size_t len = strlen(out);
            snprintf(out + len, outsz - len, "%s%s", len ? "," : "", id);
        }
    }
}

int kcmdline_merge(const char *current, const struct kcmdline_plan *p, char *out,
                   size_t outsz)
{
    char words[128][256];
    size_t n = 0;
    for (const char *s = current; *s;) {
        if (n == 128 && s[strspn(s, " \t")])
            return -1;
        s += strspn(s, " \t");
        size_t len = strcspn(s, " \t");
        if (len >= 256)
            return -1; /* never drop a parameter we cannot hold */
        if (len) {
            memcpy(words[n], s, len);
            words[n++][len] = 0;
        }
        s += len;
    }
    for (size_t i = 0; i < p->n_params; i++) {
        const char *param = p->params[i];
        size_t klen = strcspn(param, "=");
        size_t j = 0;
        while (j < n && !(strlen(words[j]) >= klen && !strncmp(words[j], param, klen) &&
                          (words[j][klen] == '=' || !words[j][klen])))
            j++;
        if (j == n) {
            if (n == 128)
                return -1;
            snprintf(words[n++], 256, "%s", param);
        } else if (!strncmp(param, "vfio-pci.ids=", 13) && words[j][klen] == '=') {
            char joined[256];
            join_ids(words[j] + klen + 1, param + klen + 1, joined, sizeof(joined));
            snprintf(words[j], 256, "vfio-pci.ids=%s", joined);
        } else
            snprintf(words[j], 256, "%s", param);
    }
    size_t len = 0;
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(out + len, outsz - len, "%s%s", i ? " " : "", words[i]);
        if (w < 0 || (size_t)w >= outsz - len)
            return -1;
        len += (size_t)w;
    }
    return 0;
}

/* Finds the last GRUB_CMDLINE_LINUX_DEFAULT= line; sets its start and end offsets, its
 * quote character ('"' when it has none) and its unquoted value. Returns false when
 * there is none. */
static bool grub_line(const char *text, size_t *start, size_t *end, char *quote,
                      char *value, size_t valuesz)
{
    bool found = false;
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        const char *s = line + strspn(line, " \t");
        if (!strncmp(s, "GRUB_CMDLINE_LINUX_DEFAULT=", 27)) {
            const char *v = s + 27;
            size_t vlen = (size_t)(line + len - v);
            *quote = '"';
            if (vlen && (*v == '"' || *v == '\'')) {
                *quote = *v;
                const char *close = memchr(v + 1, *v, vlen - 1);
                vlen = close ? (size_t)(close - v - 1) : vlen - 1;
                v++;
            } else
                vlen = strcspn(v, " \t#\n");
            snprintf(value, valuesz, "%.*s", (int)vlen, v);
            *start = (size_t)(line - text);
            *end = *start + len;
            found = true;
        }
        line = nl ? nl + 1 : NULL;
    }
    return found;
}

/* Copies the file at path to PATH.qdesk-STAMP, its name written into backup, before
 * it is changed. Returns 0, or -1 with err. */
static int backup_file(const char *sysroot, const char *path, const char *stamp,
                       char *backup, size_t backupsz, char *err, size_t errsz)
{
    snprintf(backup, backupsz, "%s.qdesk-%s", path, stamp);
    return hostw_copy_file(sysroot, path, backup, err, errsz) < 0 ? -1 : 0;
}

/* Appends the lines missing from the file at path (creating it with a header, or
 * first backing it up): want holds n strings, width bytes apart. Sets *changed, and
 * backup to the old file's copy ("" for none). Returns 0, or -1 with err. */
static int add_lines(const char *sysroot, const char *path, const char *want, size_t n,
                     size_t width, const char *stamp, bool *changed, char *backup,
                     size_t backupsz, char *err, size_t errsz)
{
    char full[PATH_MAX];
    *changed = false;
    backup[0] = 0;
    if (!n)
        return 0;
    if (fs_join(full, sizeof(full), sysroot, path) < 0) {
        snprintf(err, errsz, "%s: path too long", path);
        return -1;
    }
    char *old = fs_read_file(full, 1 << 20, NULL);
    if (!old && errno != ENOENT) {
        snprintf(err, errsz, "reading %s: %s", full, strerror(errno));
        return -1;
    }
    size_t cap = (old ? strlen(old) : 0) + n * (width + 1) + 128, len = 0;
    char *text = malloc(cap);
    if (!text) {
        free(old);
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    len = (size_t)snprintf(text, cap, "%s",
                           old ? old
                               : "# vfio for GPUs given to guests; written by qdesk "
                                 "host cmdline --apply\n");
    if (len && text[len - 1] != '\n') {
        text[len++] = '\n';
        text[len] = 0;
    }
    for (size_t i = 0; i < n; i++) {
        const char *w = want + i * width;
        bool have = false;
        for (const char *line = text; line && *line && !have;) {
            size_t l = strcspn(line, "\n");
            have = l == strlen(w) && !strncmp(line, w, l);
            line = line[l] ? line + l + 1 : NULL;
        }
        if (!have) {
            len += (size_t)snprintf(text + len, cap - len, "%s\n", w);
            *changed = true;
        }
    }
    int rc = 0;
    if (*changed && old)
        rc = backup_file(sysroot, path, stamp, backup, backupsz, err, errsz);
    if (rc == 0 && (*changed || !old))
        rc = hostw_replace_file(sysroot, path, text, len, 0644, err, errsz);
    *changed |= !old;
    free(old);
    free(text);
    return rc < 0 ? -1 : 0;
}

int kcmdline_apply(const char *sysroot, const struct kcmdline_plan *p, time_t now,
                   char *msg, size_t msgsz, char *err, size_t errsz)
{
    char path[PATH_MAX], value[4096], merged[4096];
    size_t start = 0, end = 0, mlen = 0;
    char *text = NULL, *out = NULL;
    int rc = -1;
    msg[0] = 0;
    if (fs_join(path, sizeof(path), sysroot, KCMDLINE_GRUB) < 0 ||
        !(text = fs_read_file(path, 1 << 20, NULL))) {
        snprintf(err, errsz,
                 "cannot read %s (%s): without GRUB, add the kernel parameters "
                 "to your boot loader by hand",
                 KCMDLINE_GRUB, strerror(errno));
        return -1;
    }
    char q = '"';
    value[0] = 0;
    bool has_line = grub_line(text, &start, &end, &q, value, sizeof(value));
    if (kcmdline_merge(value, p, merged, sizeof(merged)) < 0) {
        snprintf(err, errsz, "%s: GRUB_CMDLINE_LINUX_DEFAULT is too long", KCMDLINE_GRUB);
        goto cleanup;
    }
    bool grub_changed = !has_line || strcmp(merged, value) != 0;
    char backup[PATH_MAX], stamp[32];
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
    if (grub_changed) {
        if (backup_file(sysroot, KCMDLINE_GRUB, stamp, backup, sizeof(backup), err,
                        errsz) < 0)
            goto cleanup;
        size_t tlen = strlen(text), cap = tlen + strlen(merged) + 64;
        if (!(out = malloc(cap))) {
            snprintf(err, errsz, "out of memory");
            goto cleanup;
        }
        size_t olen;
        if (has_line)
            olen = (size_t)snprintf(out, cap, "%.*sGRUB_CMDLINE_LINUX_DEFAULT=%c%s%c%s",
                                    (int)start, text, q, merged, q, text + end);
        else
            olen = (size_t)snprintf(out, cap, "%s%sGRUB_CMDLINE_LINUX_DEFAULT=\"%s\"\n",
                                    text, tlen && text[tlen - 1] != '\n' ? "\n" : "",
                                    merged);
        if (hostw_replace_file(sysroot, KCMDLINE_GRUB, out, olen, 0644, err, errsz) < 0)
            goto cleanup;
        mlen += (size_t)snprintf(msg + mlen, msgsz - mlen,
                                 "%s: GRUB_CMDLINE_LINUX_DEFAULT=\"%s\" (the old file is "
                                 "%s)\n",
                                 KCMDLINE_GRUB, merged, backup);
    }
    const struct {
        const char *path, *lines, *what;
        size_t n, width;
    } files[] = {
        {KCMDLINE_MODULES, p->modules[0], "modules loaded at boot", p->n_modules,
         sizeof(p->modules[0])},
        {KCMDLINE_MODPROBE, p->modprobe[0], "vfio-pci loads before the GPU drivers",
         p->n_modprobe, sizeof(p->modprobe[0])},
        {KCMDLINE_INITRAMFS, p->initramfs[0],
         "vfio-pci is in the initramfs, to take the card before its driver does",
         p->n_initramfs, sizeof(p->initramfs[0])},
    };
    bool changed = grub_changed;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        bool file_changed;
        if (add_lines(sysroot, files[i].path, files[i].lines, files[i].n, files[i].width,
                      stamp, &file_changed, backup, sizeof(backup), err, errsz) < 0)
            goto cleanup;
        changed |= file_changed;
        if (file_changed && mlen < msgsz)
            mlen += (size_t)snprintf(
                msg + mlen, msgsz - mlen, "%s: %s%s%s%s\n", files[i].path, files[i].what,
                backup[0] ? " (the old file is " : "", backup, backup[0] ? ")" : "");
    }
    if (mlen < msgsz) {
        if (changed)
            snprintf(msg + mlen, msgsz - mlen,
                     "now run update-initramfs -u and update-grub, "
                     "then reboot\n");
        else
            snprintf(msg, msgsz,
                     "the boot configuration already has all of this; nothing "
                     "changed\n");
    }
    rc = 0;
cleanup:
    free(text);
    free(out);
    return rc;
}

#include "qemu/spec.h"

#include "catalog/catalog.h"
#include "config.h"
#include "host/load.h"
#include "qemu/accel.h"
#include "util/argv.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/units.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <unistd.h>

/* The kinds share their names and numbers with host/gpu.c's (cmdline.c asserts the
 * numbers agree). */
int spec_gpu_parse(const char *name)
{
    enum gpu_kind k;
    return gpu_kind_parse(name, &k, NULL, 0) == 0 ? (int)k : -1;
}

const char *spec_gpu_name(enum spec_gpu kind)
{
    return gpu_kind_name((enum gpu_kind)kind);
}

/* Parses a whole decimal number in [min, max]. */
static int parse_count(const char *value, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)value[0]))
        return -1;
    errno = 0;
    unsigned long long n = strtoull(value, &end, 10);
    if (errno || *end || n < min || n > max)
        return -1;
    *out = n;
    return 0;
}

bool spec_usb_emulated(const char *name)
{
    return !strcmp(name, "usb-kbd") || !strcmp(name, "usb-mouse") ||
           !strcmp(name, "usb-tablet");
}

static bool usb_id_ok(const char *s)
{
    if (spec_usb_emulated(s))
        return true;
    /* VID:PID, four hex digits each */
    if (strlen(s) == 9 && s[4] == ':') {
        for (int i = 0; i < 9; i++)
            if (i != 4 && !isxdigit((unsigned char)s[i]))
                return false;
        return true;
    }
    /* BUS-PORT[.PORT...], as in /sys/bus/usb/devices */
    size_t n = strspn(s, "0123456789");
    if (n == 0 || s[n] != '-' || !isdigit((unsigned char)s[n + 1]))
        return false;
    for (const char *p = s + n + 1; *p; p++)
        if (!isdigit((unsigned char)*p) && !(*p == '.' && isdigit((unsigned char)p[1])))
            return false;
    return strlen(s) < 32;
}

static bool ifname_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 16 &&
           strspn(s,
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") ==
               n;
}

/* Checks a host path given by a user: absolute, printable, no ".." component. */
static int host_path_ok(const char *field, const char *value, size_t max, char *err,
                        size_t errsz)
{
    if (value[0] != '/') {
        snprintf(err, errsz, "%s: '%s' must be an absolute path", field, value);
        return -1;
    }
    if (qopt_bad_char(value)) {
        snprintf(err, errsz, "%s: control characters (such as a newline) are not allowed",
                 field);
        return -1;
    }
    if (strstr(value, "/../") ||
        (strlen(value) >= 3 && !strcmp(value + strlen(value) - 3, "/.."))) {
        snprintf(err, errsz, "%s: '..' is not allowed in a path", field);
        return -1;
    }
    if (strlen(value) >= max) {
        snprintf(err, errsz, "%s: longer than %zu characters", field, max - 1);
        return -1;
    }
    return 0;
}

/* The fields by source: the API's JSON names and the command line's options. */
static const char *const field_names[][SPEC_FIELDS] = {
    [SPEC_FROM_API] = {"machine", "cpus", "memory_mb", "lifetime_s", "disk_gb", "gpu",
                       "usb", "net", "mounts", "script", "persistent"},
    [SPEC_FROM_CLI] = {"machine", "--cpus", "--memory", "--lifetime", "--disk", "--gpu",
                       "--usb", "--net", "--mount", "--script", "--persistent"},
};

const char *spec_field_name(enum spec_source source, enum spec_field field)
{
    return field_names[source == SPEC_FROM_CLI][field];
}

/* Returns the field source calls name (a command-line option without its dashes),
 * or -1. Persistent is a flag that callers set directly. */
static int field_of(enum spec_source source, const char *name)
{
    for (int f = 0; f < SPEC_FIELD_PERSISTENT; f++) {
        const char *known = spec_field_name(source, (enum spec_field)f);
        if (strcmp(name, known + (strncmp(known, "--", 2) ? 0 : 2)) == 0)
            return f;
    }
    return -1;
}

/* Reads a number field of r: cpus and disk are counts in both sources; memory and
 * lifetime are MiB and seconds in the API, a size and a duration on the command
 * line. */
static int set_number(struct spec_request *r, enum spec_field f, const char *name,
                      const char *value, char *err, size_t errsz)
{
    bool cli = r->source == SPEC_FROM_CLI;
    uint64_t n = 0;
    const char *form;
    int rc;
    switch (f) {
    case SPEC_FIELD_MEMORY:
        form = cli ? "a size such as 512M or 4G" : "a whole number of MiB";
        rc = cli ? units_parse_size(value, 1ULL << 20, &n)
                 : parse_count(value, 0, UINT64_MAX >> 20, &n);
        n = cli ? n >> 20 : n;
        break;
    case SPEC_FIELD_LIFETIME:
        form =
            cli ? "a duration such as 90m, 4h, 2d or 1h30m" : "a whole number of seconds";
        rc =
            cli ? units_parse_duration(value, &n) : parse_count(value, 0, UINT64_MAX, &n);
        break;
    default:
        form = f == SPEC_FIELD_DISK ? "a whole number of GiB" : "a whole number";
        rc = parse_count(value, 0, UINT_MAX, &n);
        break;
    }
    if (rc < 0) {
        snprintf(err, errsz, "%s: '%s' must be %s", name, value, form);
        return -1;
    }
    if (f == SPEC_FIELD_CPUS)
        r->cpus = (unsigned)n;
    else if (f == SPEC_FIELD_MEMORY)
        r->memory_mb = n;
    else if (f == SPEC_FIELD_LIFETIME)
        r->lifetime_s = n;
    else
        r->disk_gb = (unsigned)n;
    return 0;
}

int spec_request_set(struct spec_request *r, const char *field, const char *value,
                     char *err, size_t errsz)
{
    int f = field_of(r->source, field);
    if (f < 0) {
        snprintf(err, errsz, "'%s' is not a session field", field);
        return -1;
    }
    const char *name = spec_field_name(r->source, (enum spec_field)f);
    r->given |= 1u << f;
    switch ((enum spec_field)f) {
    case SPEC_FIELD_MACHINE:
        if (catalog_name_ok(value) < 0) {
            snprintf(
                err, errsz,
                "machine: '%s' is not a machine name (letters, digits, '.', '_', '-')",
                value);
            return -1;
        }
        snprintf(r->machine, sizeof(r->machine), "%s", value);
        return 0;
    case SPEC_FIELD_CPUS:
    case SPEC_FIELD_MEMORY:
    case SPEC_FIELD_LIFETIME:
    case SPEC_FIELD_DISK:
        return set_number(r, (enum spec_field)f, name, value, err, errsz);
    case SPEC_FIELD_GPU: {
        char kind[32];
        const char *colon = strchr(value, ':');
        snprintf(kind, sizeof(kind), "%.*s", colon ? (int)(colon - value) : 31, value);
        int k = spec_gpu_parse(kind);
        if (k < 0 || (colon && k != SPEC_GPU_MDEV)) {
            snprintf(err, errsz, "%s: '%s' is not one of %s", name, value,
                     SPEC_GPU_NAMES);
            return -1;
        }
        if (colon && (!colon[1] || strlen(colon + 1) >= sizeof(r->gpu_type) ||
                      catalog_name_ok(colon + 1) < 0)) {
            snprintf(err, errsz, "%s: '%s' is not a mediated device type name", name,
                     colon + 1);
            return -1;
        }
        r->gpu = (enum spec_gpu)k;
        snprintf(r->gpu_type, sizeof(r->gpu_type), "%s", colon ? colon + 1 : "");
        return 0;
    }
    case SPEC_FIELD_USB:
        if (!usb_id_ok(value)) {
            snprintf(err, errsz,
                     "%s: '%s' must be VID:PID (such as 046d:c52b), BUS-PORT "
                     "(such as 1-2.3) or one of " SPEC_USB_EMULATED,
                     name, value);
            return -1;
        }
        if (r->n_usb == SPEC_MAX_USB) {
            snprintf(err, errsz, "%s: at most %d devices", name, SPEC_MAX_USB);
            return -1;
        }
        snprintf(r->usb[r->n_usb++], sizeof(r->usb[0]), "%s", value);
        return 0;
    case SPEC_FIELD_NET:
        if (strcmp(value, "user") == 0 || strcmp(value, "none") == 0) {
            r->net = value[0] == 'u' ? SPEC_NET_USER : SPEC_NET_NONE;
            return 0;
        }
        if (strncmp(value, "bridge=", 7) == 0 && ifname_ok(value + 7)) {
            r->net = SPEC_NET_BRIDGE;
            snprintf(r->bridge, sizeof(r->bridge), "%s", value + 7);
            return 0;
        }
        snprintf(err, errsz,
                 "%s: '%s' must be user, none or bridge=NAME (an interface "
                 "name of up to 15 letters, digits, '_', '.', '-')",
                 name, value);
        return -1;
    case SPEC_FIELD_MOUNTS:
        if (host_path_ok(name, value, sizeof(r->mounts[0]), err, errsz) < 0)
            return -1;
        if (r->n_mounts == SPEC_MAX_MOUNTS) {
            snprintf(err, errsz, "%s: at most %d mounts", name, SPEC_MAX_MOUNTS);
            return -1;
        }
        snprintf(r->mounts[r->n_mounts++], sizeof(r->mounts[0]), "%s", value);
        return 0;
    case SPEC_FIELD_SCRIPT:
        if (host_path_ok(name, value, sizeof(r->script), err, errsz) < 0)
            return -1;
        snprintf(r->script, sizeof(r->script), "%s", value);
        return 0;
    default: /* field_of() returns no other */
        return -1;
    }
}

void spec_limits_from_config(const struct config *cfg, struct spec_limits *lim)
{
    lim->min_memory_mb = cfg->min_memory_mb;
    lim->max_memory_mb = cfg->max_memory_mb;
    lim->default_memory_mb = cfg->default_memory_mb;
    lim->default_cpus = (unsigned)cfg->default_cpus;
    lim->default_lifetime_s = cfg->default_lifetime_s;
    lim->min_lifetime_s = cfg->min_lifetime_s;
    lim->max_lifetime_s = cfg->max_lifetime_s;
    lim->default_disk_gb = (unsigned)cfg->default_disk_gb;
    lim->max_disk_gb = (unsigned)cfg->max_disk_gb;
}

/* Returns true when f was found; otherwise false with err saying that what (QEMU,
 * UEFI) for arch is not installed, where [qemu] key looked for it, and the Debian
 * package that brings it. */
static bool installed(const struct spec_file *f, const char *field, const char *key,
                      const char *arch, const char *what, const char *package, char *err,
                      size_t errsz)
{
    if (f->found)
        return true;
    if (f->path[0])
        snprintf(err, errsz,
                 "%s: %s for %s is not installed: %s ([qemu] %s) is missing (Debian "
                 "package %s)",
                 field, what, arch, f->path, key, package);
    else
        snprintf(err, errsz, "%s: %s for %s is not installed (Debian package %s)", field,
                 what, arch, package);
    return false;
}

/* Returns true when req asks for field f (whose value is v) rather than leaving it
 * to a default: a value other than zero, or a zero it was given. */
static bool asked(const struct spec_request *req, enum spec_field f, uint64_t v)
{
    return v || (req->given & (1u << f));
}

/* Copies src into dst of size n; refuses what QEMU cannot carry or what does not
 * fit, naming field. */
static int copy_checked(char *dst, size_t n, const char *src, const char *field,
                        char *err, size_t errsz)
{
    int bad = qopt_bad_char(src);
    if (bad) {
        snprintf(
            err, errsz,
            "%s: the value holds control character 0x%02x (such as a newline), which "
            "QEMU cannot carry",
            field, bad);
        return -1;
    }
    if (strlen(src) >= n) {
        snprintf(err, errsz, "%s: longer than %zu characters", field, n - 1);
        return -1;
    }
    memcpy(dst, src, strlen(src) + 1);
    return 0;
}

/* The default network: passt, and the firewall that keeps the guest off the host.
 * Where that cannot be had, a guest that did not ask for a network gets none (and
 * a warning); one that asked for it is refused. */
static int resolve_usernet(const struct spec_request *req, const struct spec_host *host,
                           struct vm_spec *out, char *err, size_t errsz)
{
    const char *field = spec_field_name(req->source, SPEC_FIELD_NET);
    if (!host->usernet_isolated) {
        if (req->given & (1u << SPEC_FIELD_NET)) {
            snprintf(err, errsz, "%s: 'user' cannot keep guests off this host: %s; use none",
                     field, host->usernet_why);
            return -1;
        }
        out->net = SPEC_NET_NONE;
        snprintf(out->net_warning, sizeof(out->net_warning), "the guest has no network: %s",
                 host->usernet_why);
        return 0;
    }
    if (!host->passt.found) {
        snprintf(err, errsz, "%s: user networking needs passt, which is not installed%s%s%s "
                 "(Debian package passt)",
                 field, host->passt.path[0] ? ": " : "", host->passt.path,
                 host->passt.path[0] ? " ([usernet] passt) is missing" : "");
        return -1;
    }
    if (!host->nft.found) {
        snprintf(err, errsz,
                 "%s: user networking keeps guests off the host with nftables, which is "
                 "not installed (Debian package nftables)",
                 field);
        return -1;
    }
    struct usernet *u = &out->usernet;
    snprintf(u->passt, sizeof(u->passt), "%s", host->passt.path);
    snprintf(u->nft, sizeof(u->nft), "%s", host->nft.path);
    snprintf(u->table, sizeof(u->table), "%s", host->firewall_table);
    memcpy(u->dns, host->usernet_dns, sizeof(u->dns));
    u->n_dns = host->n_usernet_dns;
    return 0;
}

void spec_warnings(const struct vm_spec *s, char *out, size_t outsz)
{
    const char *gpu = s->gpu_grant.warning, *net = s->net_warning;
    snprintf(out, outsz, "%s%s%s", gpu, gpu[0] && net[0] ? "; " : "", net);
}

int spec_resolve(const struct spec_request *req, const struct catalog_machine *m,
                 const struct spec_host *host, const struct spec_limits *lim,
                 const char *name, const char *rundir, struct vm_spec *out, char *err,
                 size_t errsz)
{
    memset(out, 0, sizeof(*out));
    if (m->refused[0]) {
        snprintf(err, errsz, "machine: '%s' cannot be started: %s", m->name, m->refused);
        return -1;
    }
    if (catalog_name_ok(name) < 0) {
        snprintf(err, errsz, "name: '%s' must be letters, digits, '.', '_' or '-'", name);
        return -1;
    }
    snprintf(out->name, sizeof(out->name), "%s", name);
    if (copy_checked(out->rundir, sizeof(out->rundir), rundir, "rundir", err, errsz) < 0)
        return -1;
    /* QEMU's sockets live in the run directory; a unix socket path has a fixed limit. */
    size_t max_rundir = sizeof(((struct sockaddr_un *)0)->sun_path) - sizeof("/qmp.sock");
    if (strlen(rundir) > max_rundir) {
        snprintf(
            err, errsz,
            "rundir: '%s' is longer than the %zu characters a unix socket path allows; "
            "set [paths] state to a shorter directory",
            rundir, max_rundir);
        return -1;
    }

    /* Arch, machine type, firmware and accelerator. */
    bool arm = strcmp(m->arch, "aarch64") == 0;
    snprintf(out->arch, sizeof(out->arch), "%s", m->arch);
    snprintf(out->machine_type, sizeof(out->machine_type), "%s", m->machine_type);
    if (!installed(arm ? &host->qemu_aarch64 : &host->qemu_x86_64, "machine",
                   arm ? "qemu_aarch64" : "qemu_x86_64", m->arch, "QEMU",
                   arm ? "qemu-system-arm" : "qemu-system-x86", err, errsz))
        return -1;
    snprintf(out->qemu, sizeof(out->qemu), "%s",
             arm ? host->qemu_aarch64.path : host->qemu_x86_64.path);
    out->uefi = strcmp(m->firmware, "uefi") == 0;
    if (out->uefi) {
        const char *package = arm ? "qemu-efi-aarch64" : "ovmf";
        const struct spec_file *code = arm ? &host->aavmf_code : &host->ovmf_code;
        const struct spec_file *vars = arm ? &host->aavmf_vars : &host->ovmf_vars;
        if (!installed(code, "firmware", arm ? "aavmf_code" : "ovmf_code", m->arch,
                       "UEFI", package, err, errsz) ||
            !installed(vars, "firmware", arm ? "aavmf_vars" : "ovmf_vars", m->arch,
                       "UEFI", package, err, errsz))
            return -1;
        snprintf(out->fw_code, sizeof(out->fw_code), "%s", code->path);
        snprintf(out->fw_vars, sizeof(out->fw_vars), "%s", vars->path);
    }
    bool same_arch = strcmp(host->arch, m->arch) == 0;
    if (strcmp(host->accel, "kvm") == 0) {
        if (!same_arch) {
            snprintf(err, errsz, "accel: KVM cannot run %s guests on this %s host",
                     m->arch, host->arch);
            return -1;
        }
        out->kvm = true;
    } else {
        out->kvm = strcmp(host->accel, "auto") == 0 && same_arch && host->kvm_usable;
    }
    if (!out->kvm && strcmp(host->accel, "tcg") == 0)
        snprintf(out->accel_why, sizeof(out->accel_why), "[qemu] accel = tcg");
    else if (!out->kvm && !same_arch)
        snprintf(out->accel_why, sizeof(out->accel_why),
                 "KVM runs only %s guests on this host", host->arch);
    else if (!out->kvm)
        snprintf(out->accel_why, sizeof(out->accel_why), "%s", host->kvm_why);

    /* CPUs, memory and lifetime: what the request asks for (a zero it was given
     * too), else the machine's default, else the service's. */
    const char *field = spec_field_name(req->source, SPEC_FIELD_CPUS);
    unsigned cpus = asked(req, SPEC_FIELD_CPUS, req->cpus) ? req->cpus
                    : m->cpus                              ? m->cpus
                                                           : lim->default_cpus;
    if (cpus > host->cores) {
        snprintf(err, errsz, "%s: %u is more than this host's %u cores (allowed 1..%u)",
                 field, cpus, host->cores, host->cores);
        return -1;
    }
    if (cpus < 1) {
        snprintf(err, errsz, "%s: %u is out of range (allowed 1..%u)", field, cpus,
                 host->cores);
        return -1;
    }
    /* The machine's topology: vCPUs come in steps of one core in each socket. */
    unsigned sockets = m->sockets ? m->sockets : 1, threads = m->threads ? m->threads : 1;
    unsigned step = sockets * threads;
    if (cpus % step) {
        if (step > host->cores)
            snprintf(
                err, errsz,
                "%s: machine '%s' needs a multiple of its sockets x threads (%u x %u "
                "= %u) vCPUs, more than this host's %u cores",
                field, m->name, sockets, threads, step, host->cores);
        else
            snprintf(err, errsz,
                     "%s: %u is not a multiple of sockets x threads (%u x %u = %u) of "
                     "machine '%s' (allowed %u..%u in steps of %u)",
                     field, cpus, sockets, threads, step, m->name, step,
                     host->cores / step * step, step);
        return -1;
    }
    out->cpus = cpus;
    out->sockets = sockets;
    out->threads = threads;
    out->cores = cpus / step;
    uint64_t mem = asked(req, SPEC_FIELD_MEMORY, req->memory_mb) ? req->memory_mb
                   : m->memory_mb                                ? m->memory_mb
                                                                 : lim->default_memory_mb;
    uint64_t max_mem = lim->max_memory_mb ? lim->max_memory_mb : host->memory_mb;
    uint64_t min_mem = lim->min_memory_mb ? lim->min_memory_mb : 1;
    if (max_mem > host->memory_mb)
        max_mem = host->memory_mb;
    if (mem < min_mem || mem > max_mem) {
        snprintf(err, errsz, "%s: %llu MiB is out of range (allowed %llu..%llu MiB)",
                 spec_field_name(req->source, SPEC_FIELD_MEMORY), (unsigned long long)mem,
                 (unsigned long long)min_mem, (unsigned long long)max_mem);
        return -1;
    }
    out->memory_mb = mem;

    uint64_t life = asked(req, SPEC_FIELD_LIFETIME, req->lifetime_s)
                        ? req->lifetime_s
                        : lim->default_lifetime_s;
    uint64_t min_life = lim->min_lifetime_s ? lim->min_lifetime_s : 1;
    if (life < min_life || life > lim->max_lifetime_s) {
        char value[48], lo[32], hi[32];
        if (req->source == SPEC_FROM_CLI)
            units_format_duration(life, value, sizeof(value));
        else
            snprintf(value, sizeof(value), "%llu seconds", (unsigned long long)life);
        units_format_duration(min_life, lo, sizeof(lo));
        units_format_duration(lim->max_lifetime_s, hi, sizeof(hi));
        snprintf(err, errsz, "%s: %s is out of range (allowed %s..%s)",
                 spec_field_name(req->source, SPEC_FIELD_LIFETIME), value, lo, hi);
        return -1;
    }
    out->lifetime_s = life;

    /* Boot media. */
    out->cdrom = m->media == CATALOG_MEDIA_CDROM;
    for (size_t i = 0; i < m->n_chain && i < sizeof(out->chain) / sizeof(out->chain[0]);
         i++) {
        if (copy_checked(out->chain[i].path, sizeof(out->chain[i].path), m->chain[i].path,
                         "image", err, errsz) < 0)
            return -1;
        snprintf(out->chain[i].format, sizeof(out->chain[i].format), "%s",
                 m->chain[i].format);
        out->n_chain++;
    }
    snprintf(out->disk_bus, sizeof(out->disk_bus), "%s", m->disk_bus);
    field = spec_field_name(req->source, SPEC_FIELD_DISK);
    bool disk_asked = asked(req, SPEC_FIELD_DISK, req->disk_gb);
    if (disk_asked && !out->cdrom) {
        snprintf(err, errsz, "%s: only machines that boot from an ISO get a data disk",
                 field);
        return -1;
    }
    if (out->cdrom) {
        out->data_disk_gb = disk_asked ? req->disk_gb : lim->default_disk_gb;
        if (out->data_disk_gb > lim->max_disk_gb) {
            snprintf(err, errsz, "%s: %u GiB is more than allowed (1..%u)", field,
                     out->data_disk_gb, lim->max_disk_gb);
            return -1;
        }
        if (out->data_disk_gb < 1) {
            snprintf(err, errsz, "%s: %u GiB is out of range (allowed 1..%u)", field,
                     out->data_disk_gb, lim->max_disk_gb);
            return -1;
        }
    }
    if (copy_checked(out->kernel, sizeof(out->kernel), m->kernel, "kernel", err, errsz) <
            0 ||
        copy_checked(out->initrd, sizeof(out->initrd), m->initrd, "initrd", err, errsz) <
            0 ||
        copy_checked(out->append, sizeof(out->append), m->append, "append", err, errsz) <
            0)
        return -1;

    /* Devices. */
    snprintf(out->video, sizeof(out->video), "%s", m->video);
    if (!(m->gpus & (1u << req->gpu))) {
        snprintf(err, errsz, "%s: machine '%s' does not allow gpu '%s'",
                 spec_field_name(req->source, SPEC_FIELD_GPU), m->name,
                 spec_gpu_name(req->gpu));
        return -1;
    }
    out->gpu = req->gpu;
    out->gpu_grant.kind = GPU_KIND_NONE;
    out->virgl_sdl = req->gpu == SPEC_GPU_VIRGL && host->virgl_sdl;
    snprintf(out->x_display, sizeof(out->x_display), "%s", host->x_display);
    out->hugepages_kb = m->hugepages_kb;
    out->pin_cpus = m->pin_cpus;
    /* Not in this version: say so rather than start a guest without them. */
    if (req->n_mounts || req->script[0] || req->persistent) {
        snprintf(err, errsz, "%s: not available in this version of qdesk",
                 spec_field_name(req->source, req->n_mounts    ? SPEC_FIELD_MOUNTS
                                              : req->script[0] ? SPEC_FIELD_SCRIPT
                                                               : SPEC_FIELD_PERSISTENT));
        return -1;
    }
    out->net = req->net;
    snprintf(out->bridge, sizeof(out->bridge), "%s", req->bridge);
    out->tap_fd = req->net == SPEC_NET_BRIDGE ? 3 : -1;
    if (out->net == SPEC_NET_USER && resolve_usernet(req, host, out, err, errsz) < 0)
        return -1;
    /* A locally administered MAC in QEMU's 52:54:00 range, from a hash of the name
     * (FNV-1a), so two guests on one bridge never share one. */
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    snprintf(out->mac, sizeof(out->mac), "52:54:00:%02x:%02x:%02x", (h >> 16) & 0xff,
             (h >> 8) & 0xff, h & 0xff);
    return 0;
}

/* Fills f with the configured path (which must be there for mode, R_OK or X_OK), or,
 * when none is configured and program is not NULL, with where program is found. */
static void find_file(struct spec_file *f, const char *configured, const char *program,
                      int mode)
{
    snprintf(f->path, sizeof(f->path), "%s", configured);
    if (configured[0])
        f->found = access(configured, mode) == 0;
    else if (program && proc_find_exe(program, f->path, sizeof(f->path)) == 0)
        f->found = true;
    else
        f->path[0] = 0;
}

int spec_qemu_user(const struct config *cfg, struct vm_user *user, char *err,
                   size_t errsz)
{
    memset(user, 0, sizeof(*user));
    const char *name = config_qemu_user(cfg);
    if (!name[0])
        return 0; /* the service's own user, not root */
    char why[300];
    if (proc_lookup_user(name, &user->uid, &user->gid, why, sizeof(why)) < 0) {
        if (cfg->qemu_user[0])
            snprintf(err, errsz, "[qemu] qemu_user: %s", why);
        else
            snprintf(err, errsz,
                     "[qemu] qemu_user is empty and qdesk runs as root, so QEMU would run "
                     "as %s, but %s; create it with scripts/deps (useradd --system "
                     "--user-group --no-create-home --shell /usr/sbin/nologin %s) or set "
                     "[qemu] qemu_user to an unprivileged user",
                     name, why, name);
        return -1;
    }
    if (user->uid == 0) {
        snprintf(err, errsz,
                 "[qemu] qemu_user: '%s' is root, and QEMU never runs as root; name an "
                 "unprivileged user (scripts/deps creates %s)",
                 name, CONFIG_QEMU_USER);
        return -1;
    }
    user->set = true;
    snprintf(user->name, sizeof(user->name), "%s", name);
    return 0;
}

/* The default network's facts: passt and nft, the [usernet] keys, and whether a
 * firewall rule can keep guests off this host. */
static int probe_usernet(const struct config *cfg, struct spec_host *host, char *err,
                         size_t errsz)
{
    struct usernet u = {0};
    find_file(&host->passt, cfg->passt, "passt", X_OK);
    find_file(&host->nft, "", "nft", X_OK);
    char why[PATH_MAX + 200];
    if (usernet_parse_dns(&u, cfg->dns, why, sizeof(why)) < 0) {
        snprintf(err, errsz, "[usernet] %s", why);
        return -1;
    }
    if (!usernet_table_ok(cfg->firewall_table)) {
        snprintf(err, errsz,
                 "[usernet] firewall_table: '%s' must be letters, digits and '_' (up to "
                 "31, starting with a letter)",
                 cfg->firewall_table);
        return -1;
    }
    memcpy(host->usernet_dns, u.dns, sizeof(u.dns));
    host->n_usernet_dns = u.n_dns;
    snprintf(host->firewall_table, sizeof(host->firewall_table), "%s",
             cfg->firewall_table);
    /* root installs the rule; a QEMU user of its own is what it matches */
    host->usernet_isolated = geteuid() == 0 && config_qemu_user(cfg)[0];
    if (!host->usernet_isolated)
        snprintf(host->usernet_why, sizeof(host->usernet_why),
                 "qdesk does not run as root, so it cannot install the firewall rule "
                 "that keeps guests off the host");
    if (!u.n_dns && !usernet_host_dns_usable(cfg->sysroot, why, sizeof(why)))
        log_warn("guests on the default network get no DNS resolver: %s", why);
    return 0;
}

int spec_host_probe(const struct config *cfg, struct spec_host *host, char *err,
                    size_t errsz)
{
    memset(host, 0, sizeof(*host));
    struct utsname u;
    snprintf(host->arch, sizeof(host->arch), "%s", uname(&u) == 0 ? u.machine : "x86_64");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    host->cores = cores > 0 ? (unsigned)cores : 1;
    long long total = load_meminfo_mb(cfg->sysroot, "MemTotal");
    host->memory_mb = total > 0 ? (uint64_t)total : 0;
    snprintf(host->accel, sizeof(host->accel), "%s", cfg->accel);
    host->kvm_usable = accel_kvm_usable(cfg->sysroot, host->arch, host->kvm_why,
                                        sizeof(host->kvm_why)) &&
                       (!config_qemu_user(cfg)[0] ||
                        accel_kvm_allows_user(cfg->sysroot, config_qemu_user(cfg),
                                              host->kvm_why, sizeof(host->kvm_why)));
    if (!host->kvm_usable && strcmp(cfg->accel, "auto") == 0)
        log_info("accel: guests run under TCG because %s", host->kvm_why);

    find_file(&host->qemu_x86_64, cfg->qemu_x86_64, "qemu-system-x86_64", X_OK);
    find_file(&host->qemu_aarch64, cfg->qemu_aarch64, "qemu-system-aarch64", X_OK);
    find_file(&host->ovmf_code, cfg->ovmf_code, NULL, R_OK);
    find_file(&host->ovmf_vars, cfg->ovmf_vars, NULL, R_OK);
    find_file(&host->aavmf_code, cfg->aavmf_code, NULL, R_OK);
    find_file(&host->aavmf_vars, cfg->aavmf_vars, NULL, R_OK);
    host->virgl_sdl = strcmp(cfg->virgl_display, "sdl") == 0;
    snprintf(host->x_display, sizeof(host->x_display), "%s", cfg->virgl_x_display);
    return probe_usernet(cfg, host, err, errsz);
}

#include "catalog/catalog.h"

#include "qemu/spec.h"
#include "util/argv.h"
#include "util/fs.h"
#include "util/ini.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/units.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Extensions of files looked at as images. The format itself is read from the file. */
static const char *const image_exts[] = {"qcow2", "img",  "raw", "vmdk", "vdi",
                                         "vhd",   "vhdx", "vpc", "qed",  "iso"};

/* Formats qdesk boots; anything else qemu-img recognises (dmg, parallels, ...) is
 * refused by name. */
static const char *const known_formats[] = {"qcow2", "raw",  "vmdk", "vdi",
                                            "vpc",   "vhdx", "qed"};

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

static bool one_of(const char *value, const char *allowed)
{
    size_t n = strlen(value);
    for (const char *p = allowed; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0)
            return true;
        p += len + (bar ? 1 : 0);
    }
    return false;
}

int catalog_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= CATALOG_NAME_MAX || name[0] == '.' || name[0] == '-')
        return -1;
    return strspn(name,
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") ==
                   n
               ? 0
               : -1;
}

/* Resolves a sidecar path (relative to dir) into out, refusing absolute paths and
 * ".." components; catalog_load() checks again with links resolved. */
static int sidecar_path(const char *dir, const char *key, const char *value, char *out,
                        size_t outsz, char *err, size_t errsz)
{
    bool dotdot = false;
    for (const char *p = value; *p && !dotdot; p += strcspn(p, "/"), p += *p == '/')
        dotdot = strncmp(p, "..", 2) == 0 && (p[2] == '/' || p[2] == 0);
    if (value[0] == '/' || dotdot) {
        snprintf(err, errsz,
                 "%s: '%s' must be a file name inside the catalogue directory", key,
                 value);
        return -1;
    }
    if (snprintf(out, outsz, "%s/%s", dir, value) >= (int)outsz) {
        snprintf(err, errsz, "%s: path too long", key);
        return -1;
    }
    return 0;
}

static int set_text(char *field, size_t size, const char *key, const char *value,
                    const char *allowed, char *err, size_t errsz)
{
    if (allowed && !one_of(value, allowed)) {
        snprintf(err, errsz, "%s: '%s' is not allowed; use one of %s", key, value,
                 allowed);
        return -1;
    }
    if (qopt_bad_char(value)) {
        snprintf(err, errsz, "%s: control characters are not allowed", key);
        return -1;
    }
    if (strlen(value) >= size) {
        snprintf(err, errsz, "%s: longer than %zu characters", key, size - 1);
        return -1;
    }
    memcpy(field, value, strlen(value) + 1);
    return 0;
}

static int set_count(unsigned *field, const char *key, const char *value, unsigned max,
                     char *err, size_t errsz)
{
    char *end;
    unsigned long n = strtoul(value, &end, 10);
    if (!isdigit((unsigned char)value[0]) || *end || n < 1 || n > max) {
        snprintf(err, errsz, "%s: '%s' must be a whole number from 1 to %u", key, value,
                 max);
        return -1;
    }
    *field = (unsigned)n;
    return 0;
}

/* A DNS-1123 subdomain, as Kubernetes names objects: lower-case letters, digits,
 * '-' and '.', starting and ending with a letter or digit, at most 253 characters. */
static bool k8s_name_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= 253 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-.") == n &&
           isalnum((unsigned char)s[0]) && isalnum((unsigned char)s[n - 1]);
}

/* Where the machine runs when it is not this host: runner = NAME (a [runner NAME]
 * section, checked when the service reads its config) and kubevirt_disk =
 * containerdisk:REGISTRY/IMAGE[:TAG|@DIGEST] or pvc:NAME (the cluster's copy of the
 * image: a container disk, or a PersistentVolumeClaim used read-only under an
 * ephemeral overlay). */
static int set_cluster_key(struct catalog_machine *m, const char *key, const char *value,
                           char *err, size_t errsz)
{
    if (key[0] == 'r') {
        size_t n = strlen(value);
        if (n == 0 || n >= sizeof(m->runner) ||
            strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") !=
                n) {
            snprintf(err, errsz,
                     "runner: '%s' must name a runner: local, or a [runner NAME] section",
                     value);
            return -1;
        }
        memcpy(m->runner, value, n + 1);
        return 0;
    }
    const char *image = strncmp(value, "containerdisk:", 14) == 0 ? value + 14 : NULL;
    const char *pvc = strncmp(value, "pvc:", 4) == 0 ? value + 4 : NULL;
    /* an image reference: registry host[:port]/path[:tag][@sha256:hex], no blanks */
    bool image_ok = image && image[0] && strlen(image) < 400 &&
                    strspn(image, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789-._/:@") == strlen(image) &&
                    image[0] != '/' && image[0] != ':' && !strstr(image, "//");
    if ((!image && !pvc) || (image && !image_ok) || (pvc && !k8s_name_ok(pvc))) {
        snprintf(err, errsz,
                 "kubevirt_disk: '%s' must be containerdisk:REGISTRY/IMAGE[:TAG] or "
                 "pvc:NAME (a PersistentVolumeClaim name: lower-case letters, digits, "
                 "'-' and '.')",
                 value);
        return -1;
    }
    snprintf(m->kubevirt_disk, sizeof(m->kubevirt_disk), "%s", value);
    return 0;
}

int catalog_set(struct catalog_machine *m, const char *dir, const char *key,
                const char *value, char *err, size_t errsz)
{
    if (strcmp(key, "description") == 0)
        return set_text(m->description, sizeof(m->description), key, value, NULL, err,
                        errsz);
    if (strcmp(key, "arch") == 0)
        return set_text(m->arch, sizeof(m->arch), key, value, "x86_64|aarch64", err,
                        errsz);
    if (strcmp(key, "firmware") == 0)
        return set_text(m->firmware, sizeof(m->firmware), key, value, "bios|uefi", err,
                        errsz);
    if (strcmp(key, "machine") == 0)
        return set_text(m->machine_type, sizeof(m->machine_type), key, value,
                        "q35|pc|virt", err, errsz);
    if (strcmp(key, "disk_bus") == 0)
        return set_text(m->disk_bus, sizeof(m->disk_bus), key, value, "virtio|sata|ide",
                        err, errsz);
    if (strcmp(key, "video") == 0)
        return set_text(m->video, sizeof(m->video), key, value,
                        "vga|virtio|bochs|qxl|cirrus|ramfb", err, errsz);
    if (strcmp(key, "append") == 0)
        return set_text(m->append, sizeof(m->append), key, value, NULL, err, errsz);
    if (strcmp(key, "kernel") == 0)
        return sidecar_path(dir, key, value, m->kernel, sizeof(m->kernel), err, errsz);
    if (strcmp(key, "initrd") == 0)
        return sidecar_path(dir, key, value, m->initrd, sizeof(m->initrd), err, errsz);
    if (strcmp(key, "cpus") == 0)
        return set_count(&m->cpus, key, value, 1024, err, errsz);
    if (strcmp(key, "sockets") == 0)
        return set_count(&m->sockets, key, value, 64, err, errsz);
    if (strcmp(key, "threads") == 0)
        return set_count(&m->threads, key, value, 8, err, errsz);
    if (strcmp(key, "memory") == 0) {
        uint64_t bytes;
        if (units_parse_size(value, 1ULL << 20, &bytes) < 0 || bytes < (1ULL << 20)) {
            snprintf(err, errsz, "memory: '%s' must be a size such as 512M or 4G", value);
            return -1;
        }
        m->memory_mb = bytes >> 20;
        return 0;
    }
    if (strcmp(key, "hugepages") == 0) {
        if (!strcmp(value, "2M") || !strcmp(value, "1G") || !strcmp(value, "none")) {
            m->hugepages_kb = value[0] == '2' ? 2048 : value[0] == '1' ? 1048576 : 0;
            return 0;
        }
        snprintf(err, errsz, "hugepages: '%s' is not allowed; use 2M, 1G or none", value);
        return -1;
    }
    if (strcmp(key, "pin_cpus") == 0) {
        if (!strcmp(value, "yes") || !strcmp(value, "no") || !strcmp(value, "true") ||
            !strcmp(value, "false")) {
            m->pin_cpus = value[0] == 'y' || value[0] == 't';
            return 0;
        }
        snprintf(err, errsz, "pin_cpus: '%s' must be yes or no", value);
        return -1;
    }
    if (strcmp(key, "runner") == 0 || strcmp(key, "kubevirt_disk") == 0)
        return set_cluster_key(m, key, value, err, errsz);
    if (strcmp(key, "gpu") == 0) {
        unsigned mask = 0;
        char list[256];
        snprintf(list, sizeof(list), "%s", value);
        for (char *save, *tok = strtok_r(list, ", ", &save); tok;
             tok = strtok_r(NULL, ", ", &save)) {
            int kind = spec_gpu_parse(tok);
            if (kind < 0) {
                snprintf(err, errsz, "gpu: '%s' is not a GPU kind; use a list of %s", tok,
                         SPEC_GPU_NAMES);
                return -1;
            }
            mask |= 1u << kind;
        }
        m->gpus = mask | 1u << SPEC_GPU_NONE;
        return 0;
    }
    snprintf(
        err, errsz,
        "'%s' is not a machine setting; use description, arch, firmware, machine, cpus, "
        "sockets, threads, memory, kernel, initrd, append, gpu, disk_bus, video, "
        "hugepages, pin_cpus, runner or kubevirt_disk",
        key);
    return -1;
}

int catalog_finish(struct catalog_machine *m, char *err, size_t errsz)
{
    if (!m->arch[0])
        snprintf(m->arch, sizeof(m->arch), "x86_64");
    bool arm = strcmp(m->arch, "aarch64") == 0;
    if (!m->firmware[0])
        snprintf(m->firmware, sizeof(m->firmware), arm ? "uefi" : "bios");
    if (!m->machine_type[0])
        snprintf(m->machine_type, sizeof(m->machine_type), arm ? "virt" : "q35");
    if (!m->disk_bus[0])
        snprintf(m->disk_bus, sizeof(m->disk_bus), "virtio");
    if (!m->video[0])
        snprintf(m->video, sizeof(m->video), arm ? "virtio" : "vga");
    if (!m->gpus)
        m->gpus = (1u << SPEC_GPU_KINDS) - 1;

    if (arm && strcmp(m->machine_type, "virt") != 0) {
        snprintf(err, errsz, "machine: aarch64 guests use the 'virt' machine, not '%s'",
                 m->machine_type);
        return -1;
    }
    if (!arm && strcmp(m->machine_type, "virt") == 0) {
        snprintf(err, errsz, "machine: x86_64 guests use q35 or pc, not 'virt'");
        return -1;
    }
    if (arm && strcmp(m->firmware, "uefi") != 0) {
        snprintf(err, errsz, "firmware: aarch64 guests boot with uefi (AAVMF) only");
        return -1;
    }
    if (m->pin_cpus && (m->sockets || m->threads)) {
        snprintf(err, errsz,
                 "sockets, threads: not with pin_cpus, which gives the guest the host's "
                 "own topology");
        return -1;
    }
    /* vCPUs come in steps of one core in each socket */
    unsigned step = (m->sockets ? m->sockets : 1) * (m->threads ? m->threads : 1);
    if (!m->cpus && step > 1)
        m->cpus = step;
    if (m->cpus % step) {
        snprintf(err, errsz,
                 "cpus: %u is not a multiple of sockets x threads (%u x %u = %u)",
                 m->cpus, m->sockets ? m->sockets : 1, m->threads ? m->threads : 1, step);
        return -1;
    }
    if (m->initrd[0] && !m->kernel[0]) {
        snprintf(err, errsz, "initrd: set without a kernel");
        return -1;
    }
    if (m->append[0] && !m->kernel[0]) {
        snprintf(err, errsz, "append: set without a kernel");
        return -1;
    }
    if (m->media == CATALOG_MEDIA_NONE && !m->kernel[0] && !m->kubevirt_disk[0]) {
        snprintf(err, errsz, "no image and no kernel: nothing to boot");
        return -1;
    }
    /* a machine that exists only on the cluster cannot run here */
    if (m->media == CATALOG_MEDIA_NONE && !m->kernel[0] &&
        (!m->runner[0] || !strcmp(m->runner, "local"))) {
        snprintf(err, errsz,
                 "kubevirt_disk without an image here: set runner to the cluster's "
                 "[runner NAME]");
        return -1;
    }
    if (m->media == CATALOG_MEDIA_DISK && strcmp(m->disk_bus, "ide") == 0 &&
        strcmp(m->machine_type, "q35") == 0) {
        snprintf(err, errsz, "disk_bus: q35 has no IDE controller; use sata or virtio");
        return -1;
    }
    if (arm &&
        (strcmp(m->disk_bus, "virtio") != 0 || !one_of(m->video, "virtio|ramfb"))) {
        snprintf(err, errsz,
                 "aarch64 guests use disk_bus virtio and video virtio or ramfb");
        return -1;
    }
    return 0;
}

/* Returns true when the file holds an ISO 9660 primary volume descriptor
 * signature ("CD001" at byte 32769). */
static bool has_iso9660_signature(const char *path)
{
    char sig[5];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t r = pread(fd, sig, sizeof(sig), 16 * 2048 + 1);
    close(fd);
    return r == (ssize_t)sizeof(sig) && memcmp(sig, "CD001", 5) == 0;
}

/* Refuses a file the chain refers to unless it lies inside dir. */
static int check_inside(const char *dir, const char *what, const char *path, char *why,
                        size_t whysz)
{
    if (strncmp(path, "json:", 5) == 0 || strstr(path, "://")) {
        snprintf(why, whysz, "its %s '%s' is not a plain file", what, path);
        return -1;
    }
    int inside = fs_path_inside(dir, path);
    if (inside < 0) {
        snprintf(why, whysz, "its %s '%s' cannot be opened: %s", what, path,
                 strerror(-inside));
        return -1;
    }
    if (!inside) {
        snprintf(why, whysz, "its %s '%s' is outside the catalogue directory %s", what,
                 path, dir);
        return -1;
    }
    return 0;
}

/* Reads one layer of `qemu-img info --backing-chain` output into m->chain. */
static int read_layer(struct catalog_machine *m, const char *dir, json_t *info, char *why,
                      size_t whysz)
{
    const char *file = json_string_value(json_object_get(info, "filename"));
    const char *format = json_string_value(json_object_get(info, "format"));
    if (!file || !format) {
        snprintf(why, whysz, "qemu-img info gave no file name or format");
        return -1;
    }
    if (!in_list(format, known_formats,
                 sizeof(known_formats) / sizeof(known_formats[0]))) {
        snprintf(why, whysz, "'%s' has format %s, which qdesk does not boot", file,
                 format);
        return -1;
    }
    if (check_inside(dir, m->n_chain ? "backing file" : "image", file, why, whysz) < 0)
        return -1;
    if (m->n_chain == CATALOG_CHAIN_MAX) {
        snprintf(why, whysz, "its backing chain is longer than %d images",
                 CATALOG_CHAIN_MAX);
        return -1;
    }
    /* Files a layer reads besides its backing file: qcow2 external data files and
     * the extents of a vmdk descriptor. */
    json_t *data = json_object_get(json_object_get(info, "format-specific"), "data");
    const char *data_file = json_string_value(json_object_get(data, "data-file"));
    if (data_file && check_inside(dir, "data file", data_file, why, whysz) < 0)
        return -1;
    size_t i;
    json_t *extent;
    json_array_foreach(json_object_get(data, "extents"), i, extent)
    {
        const char *f = json_string_value(json_object_get(extent, "filename"));
        if (f && check_inside(dir, "vmdk extent", f, why, whysz) < 0)
            return -1;
    }
    struct catalog_layer *l = &m->chain[m->n_chain++];
    snprintf(l->path, sizeof(l->path), "%s", file);
    snprintf(l->format, sizeof(l->format), "%s", format);
    return 0;
}

/* Fills the image facts of m from qemu-img. Returns 0, or -1 with why. */
static int probe_image(struct catalog_machine *m, const char *dir, const char *path,
                       const char *ext, const char *qemu_img, char *why, size_t whysz)
{
    char *const argv[] = {
        (char *)qemu_img, "info", "--output=json", "--backing-chain", "-U",
        (char *)path,     NULL};
    /* qemu-img parses untrusted headers: bound it as OpenStack does. */
    struct proc_spawn s = {.argv = argv,
                           .stdout_fd = -1,
                           .stderr_fd = -1,
                           .limit_as = 1ULL << 30,
                           .limit_cpu = 30};
    char *out = NULL, err[512] = "";
    int rc = proc_run(&s, 30000, &out, 1 << 20, err, sizeof(err));
    if (rc != 0) {
        snprintf(why, whysz, "qemu-img info failed: %s",
                 err[0] ? err : "no reason given");
        free(out);
        return -1;
    }
    json_error_t jerr;
    json_t *chain = json_loads(out, 0, &jerr);
    free(out);
    if (!json_is_array(chain) || json_array_size(chain) == 0) {
        snprintf(why, whysz, "qemu-img info printed no image");
        json_decref(chain);
        return -1;
    }
    rc = 0;
    size_t i;
    json_t *info;
    json_array_foreach(chain, i, info)
    {
        if ((rc = read_layer(m, dir, info, why, whysz)) < 0)
            break;
    }
    if (rc == 0) {
        json_t *top = json_array_get(chain, 0);
        m->virtual_size =
            (uint64_t)json_integer_value(json_object_get(top, "virtual-size"));
        m->file_size = (uint64_t)json_integer_value(json_object_get(top, "actual-size"));
    }
    json_decref(chain);
    if (rc < 0)
        return -1;

    bool iso_ext = strcasecmp(ext, "iso") == 0;
    bool iso_sig = has_iso9660_signature(path);
    if (iso_ext && (strcmp(m->chain[0].format, "raw") != 0 || !iso_sig)) {
        snprintf(why, whysz, "it is named .iso but is not an ISO 9660 image (format %s)",
                 m->chain[0].format);
        return -1;
    }
    m->media = iso_ext ? CATALOG_MEDIA_CDROM : CATALOG_MEDIA_DISK;
    return 0;
}

/* Reads NAME.conf (when present) into m. */
static void read_sidecar(struct catalog_machine *m, const char *dir)
{
    char path[PATH_MAX], err[600];
    if (snprintf(path, sizeof(path), "%s/%s.conf", dir, m->name) >= (int)sizeof(path) ||
        !fs_exists(path))
        return;
    struct ini *ini = ini_load(path, err, sizeof(err));
    if (!ini) {
        snprintf(m->refused, sizeof(m->refused), "%s", err);
        return;
    }
    for (size_t i = 0; i < ini->n && !m->refused[0]; i++) {
        char why[512];
        if (catalog_set(m, dir, ini->entries[i].key, ini->entries[i].value, why,
                        sizeof(why)) < 0)
            snprintf(m->refused, sizeof(m->refused), "%s:%d: %s", path,
                     ini->entries[i].line, why);
    }
    ini_free(ini);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(((const struct catalog_machine *)a)->name,
                  ((const struct catalog_machine *)b)->name);
}

static struct catalog_machine *add_machine(struct catalog *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->machines[i].name, name) == 0)
            return &c->machines[i];
    struct catalog_machine *m = realloc(c->machines, (c->n + 1) * sizeof(*m));
    if (!m)
        return NULL;
    c->machines = m;
    m = &c->machines[c->n++];
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "%s", name);
    m->media = CATALOG_MEDIA_NONE;
    return m;
}

/* Splits "name.ext"; returns false for files that are not images or sidecars. */
static bool split_name(const char *file, char *name, size_t namesz, const char **ext)
{
    const char *dot = strrchr(file, '.');
    if (!dot || dot == file || file[0] == '.')
        return false;
    *ext = dot + 1;
    bool wanted = strcmp(*ext, "conf") == 0;
    for (size_t i = 0; i < sizeof(image_exts) / sizeof(image_exts[0]) && !wanted; i++)
        wanted = strcasecmp(*ext, image_exts[i]) == 0;
    if (!wanted || (size_t)(dot - file) >= namesz)
        return false;
    snprintf(name, namesz, "%.*s", (int)(dot - file), file);
    return true;
}

/* Checks the paths a sidecar added once links can be resolved. */
static void check_boot_files(struct catalog_machine *m, const char *dir)
{
    const char *files[] = {m->kernel, m->initrd};
    const char *what[] = {"kernel", "initrd"};
    for (int i = 0; i < 2 && !m->refused[0]; i++)
        if (files[i][0])
            check_inside(dir, what[i], files[i], m->refused, sizeof(m->refused));
}

struct catalog *catalog_load(const char *dir, const char *qemu_img, char *err,
                             size_t errsz)
{
    struct catalog *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    if (!realpath(dir, c->dir)) {
        snprintf(err, errsz, "machine catalogue %s: %s", dir, strerror(errno));
        free(c);
        return NULL;
    }
    DIR *d = opendir(c->dir);
    if (!d) {
        snprintf(err, errsz, "machine catalogue %s: %s", c->dir, strerror(errno));
        free(c);
        return NULL;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        char name[CATALOG_NAME_MAX], path[PATH_MAX];
        const char *ext;
        if (!split_name(de->d_name, name, sizeof(name), &ext))
            continue;
        struct catalog_machine *m = add_machine(c, name);
        if (!m)
            break;
        if (strcmp(ext, "conf") == 0)
            continue;
        if (m->media != CATALOG_MEDIA_NONE || m->refused[0]) {
            snprintf(m->refused, sizeof(m->refused),
                     "more than one image is called '%s'; rename one", name);
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", c->dir, de->d_name);
        if (probe_image(m, c->dir, path, ext, qemu_img, m->refused, sizeof(m->refused)) <
            0)
            m->n_chain = 0;
    }
    closedir(d);

    for (size_t i = 0; i < c->n; i++) {
        struct catalog_machine *m = &c->machines[i];
        if (catalog_name_ok(m->name) < 0 && !m->refused[0])
            snprintf(m->refused, sizeof(m->refused),
                     "the name may hold only letters, digits, '.', '_' and '-'");
        if (!m->refused[0])
            read_sidecar(m, c->dir);
        if (!m->refused[0])
            check_boot_files(m, c->dir);
        if (!m->refused[0]) {
            char why[400];
            if (catalog_finish(m, why, sizeof(why)) < 0)
                snprintf(m->refused, sizeof(m->refused), "%s.conf: %s", m->name, why);
        }
        if (m->refused[0])
            log_info("machine %s refused: %s", m->name, m->refused);
    }
    qsort(c->machines, c->n, sizeof(c->machines[0]), compare_names);
    return c;
}

const struct catalog_machine *catalog_find(const struct catalog *c, const char *name)
{
    for (size_t i = 0; c && i < c->n; i++)
        if (strcmp(c->machines[i].name, name) == 0)
            return &c->machines[i];
    return NULL;
}

const struct catalog_machine *catalog_lookup(const struct catalog *c, const char *name,
                                             char *err, size_t errsz)
{
    const struct catalog_machine *m = catalog_find(c, name);
    if (!m)
        snprintf(err, errsz,
                 "machine: '%s' is not in the catalogue %s (see qdesk machines)", name,
                 c->dir);
    return m;
}

void catalog_free(struct catalog *c)
{
    if (!c)
        return;
    free(c->machines);
    free(c);
}

json_t *catalog_machine_json(const struct catalog_machine *m)
{
    static const char *const media[] = {"disk", "cdrom", "kernel"};
    json_t *gpus = json_array();
    for (int k = 0; k < SPEC_GPU_KINDS; k++)
        if (m->gpus & (1u << k))
            json_array_append_new(gpus, json_string(spec_gpu_name((enum spec_gpu)k)));
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:o}", "name", m->name, "format",
        m->n_chain ? m->chain[0].format : "", "media", media[m->media], "virtual_size",
        (json_int_t)m->virtual_size, "file_size", (json_int_t)m->file_size, "arch",
        m->arch, "firmware", m->firmware, "machine", m->machine_type, "description",
        m->description, "gpus", gpus);
    if (m->cpus)
        json_object_set_new(o, "cpus", json_integer(m->cpus));
    if (m->memory_mb)
        json_object_set_new(o, "memory_mb", json_integer((json_int_t)m->memory_mb));
    json_object_set_new(o, "video", json_string(m->video));
    if (m->runner[0])
        json_object_set_new(o, "runner", json_string(m->runner));
    if (m->refused[0])
        json_object_set_new(o, "refused", json_string(m->refused));
    return o;
}

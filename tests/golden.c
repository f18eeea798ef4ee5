/* Golden argv tests, libvirt style: every NAME.json in a directory (a request as
 * `qdesk args` takes it, or with "source": "api" as the HTTP API does; catalogue
 * machines; faked host facts) is resolved and built by the same code that
 * `qdesk args`, `qdesk run` and the service use, and the result must equal
 * NAME.args (the command line, after a "# warning: ..." line when the user is
 * warned of something) or NAME.err (the error), byte for byte.
 *
 * Machines are faked ("machines": image facts and sidecar keys, read through the
 * catalogue's sidecar code), or, for what only the image files can show (backing
 * chains leaving the catalogue), made: "catalogue" lists images that qemu-img
 * creates in a temporary directory, which catalog_load() then reads.
 *
 *   golden DIR                 check, printing TAP
 *   QDESK_REGENERATE=1 golden DIR   rewrite NAME.args / NAME.err from the code
 *
 * A file in DIR that no NAME.json uses fails the suite, so stale outputs cannot
 * pile up. No host fact is read from this machine. */
#include "catalog/catalog.h"
#include "config.h"
#include "host/ids.h"
#include "net/usernet.h"
#include "qemu/cmdline.h"
#include "session/alloc.h"
#include "qemu/spec.h"
#include "runner/vmi.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/proc.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Where faked machines live; a case's real catalogue (built with qemu-img in a
 * temporary directory) reads as if it were here too. */
#define CATALOG_DIR "/srv/qdesk/machines"

static const char *str_or(json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

static const char *str_or_value(json_t *v)
{
    const char *s = json_string_value(v);
    return s ? s : "";
}

static json_int_t int_or(json_t *o, const char *key, json_int_t dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

/* A program or firmware file at the case's path for key (or dflt); it is there
 * unless "missing" lists key. */
static void fake_file(json_t *h, const char *key, const char *dflt, struct spec_file *f)
{
    snprintf(f->path, sizeof(f->path), "%s", str_or(h, key, dflt));
    f->found = true;
    size_t i;
    json_t *missing;
    json_array_foreach(json_object_get(h, "missing"), i, missing)
    {
        if (!strcmp(json_string_value(missing) ?: "", key))
            f->found = false;
    }
}

static void fake_host(json_t *h, struct spec_host *host)
{
    memset(host, 0, sizeof(*host));
    snprintf(host->arch, sizeof(host->arch), "%s", str_or(h, "arch", "x86_64"));
    host->cores = (unsigned)int_or(h, "cores", 8);
    host->memory_mb = (uint64_t)int_or(h, "memory_mb", 16384);
    snprintf(host->accel, sizeof(host->accel), "%s", str_or(h, "accel", "auto"));
    host->kvm_usable = json_is_true(json_object_get(h, "kvm_usable")) ||
                       !json_object_get(h, "kvm_usable");
    fake_file(h, "qemu_x86_64", "/usr/bin/qemu-system-x86_64", &host->qemu_x86_64);
    fake_file(h, "qemu_aarch64", "/usr/bin/qemu-system-aarch64", &host->qemu_aarch64);
    fake_file(h, "ovmf_code", "/usr/share/OVMF/OVMF_CODE_4M.fd", &host->ovmf_code);
    fake_file(h, "ovmf_vars", "/usr/share/OVMF/OVMF_VARS_4M.fd", &host->ovmf_vars);
    fake_file(h, "aavmf_code", "/usr/share/AAVMF/AAVMF_CODE.fd", &host->aavmf_code);
    fake_file(h, "aavmf_vars", "/usr/share/AAVMF/AAVMF_VARS.fd", &host->aavmf_vars);
    host->virgl_sdl = json_is_true(json_object_get(h, "virgl_sdl"));
    snprintf(host->x_display, sizeof(host->x_display), "%s", str_or(h, "x_display", ""));
    /* the default network: passt and nft installed, guests kept off the host (a
     * service running as root) unless "usernet_isolated": false says otherwise */
    fake_file(h, "passt", "/usr/bin/passt", &host->passt);
    fake_file(h, "nft", "/usr/sbin/nft", &host->nft);
    host->usernet_isolated = !json_is_false(json_object_get(h, "usernet_isolated"));
    if (!host->usernet_isolated)
        snprintf(host->usernet_why, sizeof(host->usernet_why),
                 "qdesk does not run as root, so it cannot install the firewall rule "
                 "that keeps guests off the host");
    snprintf(host->firewall_table, sizeof(host->firewall_table), "qdesk");
    size_t i;
    json_t *dns;
    json_array_foreach(json_object_get(h, "usernet_dns"), i, dns)
    {
        if (host->n_usernet_dns < USERNET_MAX_DNS)
            snprintf(host->usernet_dns[host->n_usernet_dns++],
                     sizeof(host->usernet_dns[0]), "%s", str_or_value(dns));
    }
}

/* The device facts come from a captured tree, tests/sysfs/NAME ("host": {"sysroot":
 * NAME}); without one the case asks for no devices. */
static void fake_config(json_t *h, const char *dir, struct config *cfg)
{
    config_defaults(cfg);
    const char *tree = str_or(h, "sysroot", NULL);
    if (tree)
        snprintf(cfg->sysroot, sizeof(cfg->sysroot), "%s/../sysfs/%s", dir, tree);
    else
        snprintf(cfg->sysroot, sizeof(cfg->sysroot), "/nonexistent");
    cfg->allow_host_console = json_is_true(json_object_get(h, "allow_host_console"));
}

static void fake_limits(json_t *l, struct spec_limits *lim)
{
    lim->min_memory_mb = (uint64_t)int_or(l, "min_memory_mb", 128);
    lim->max_memory_mb = (uint64_t)int_or(l, "max_memory_mb", 0);
    lim->default_memory_mb = (uint64_t)int_or(l, "default_memory_mb", 1024);
    lim->default_cpus = (unsigned)int_or(l, "default_cpus", 1);
    lim->default_lifetime_s = (uint64_t)int_or(l, "default_lifetime_s", 14400);
    lim->min_lifetime_s = (uint64_t)int_or(l, "min_lifetime_s", 60);
    lim->max_lifetime_s = (uint64_t)int_or(l, "max_lifetime_s", 604800);
    lim->default_disk_gb = (unsigned)int_or(l, "default_disk_gb", 8);
    lim->max_disk_gb = (unsigned)int_or(l, "max_disk_gb", 256);
}

/* Builds the catalogue machine from its faked image facts and sidecar keys, through
 * the catalogue's own sidecar code. Returns 0, or -1 with err. */
static int fake_machine(json_t *j, struct catalog_machine *m, char *err, size_t errsz)
{
    static const char *const media[] = {"disk", "cdrom", "kernel"};
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "%s", str_or(j, "name", "machine"));
    const char *kind = str_or(j, "media", "disk");
    m->media = CATALOG_MEDIA_NONE;
    for (int i = 0; i < 3; i++)
        if (!strcmp(kind, media[i]))
            m->media = (enum catalog_media)i;
    size_t i;
    json_t *layer;
    json_array_foreach(json_object_get(j, "chain"), i, layer)
    {
        if (m->n_chain == CATALOG_CHAIN_MAX)
            break;
        snprintf(m->chain[m->n_chain].path, sizeof(m->chain[0].path), "%s/%s",
                 CATALOG_DIR, str_or(layer, "file", "?"));
        snprintf(m->chain[m->n_chain].format, sizeof(m->chain[0].format), "%s",
                 str_or(layer, "format", "raw"));
        m->n_chain++;
    }
    const char *key;
    json_t *value;
    json_object_foreach(json_object_get(j, "conf"), key, value)
    {
        if (catalog_set(m, CATALOG_DIR, key, json_string_value(value), err, errsz) < 0)
            return -1;
    }
    return catalog_finish(m, err, errsz);
}

/* Fills the catalogue with the faked machines. */
static int fake_catalog(json_t *list, struct catalog *c, char *err, size_t errsz)
{
    c->n = json_array_size(list);
    c->machines = calloc(c->n ? c->n : 1, sizeof(*c->machines));
    for (size_t i = 0; i < c->n; i++)
        if (fake_machine(json_array_get(list, i), &c->machines[i], err, errsz) < 0)
            return -1;
    return 0;
}

/* Makes one image of a real catalogue with qemu-img: {"file", "format", "size",
 * "backing", "backing_format"}, paths relative to root. Returns 0, or -1 with err. */
static int make_image(const char *qemu_img, const char *root, json_t *image, char *err,
                      size_t errsz)
{
    char path[PATH_MAX], backing[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", root, str_or(image, "file", "?"));
    char *dir = strrchr(path, '/');
    *dir = 0;
    int rc = fs_mkdir_p(path, 0755);
    *dir = '/';
    char *argv[12] = {(char *)qemu_img, "create", "-q", "-f",
                      (char *)str_or(image, "format", "raw")};
    size_t n = 5;
    if (json_object_get(image, "backing")) {
        snprintf(backing, sizeof(backing), "%s/%s", root, str_or(image, "backing", "?"));
        argv[n++] = "-b";
        argv[n++] = backing;
        argv[n++] = "-F";
        argv[n++] = (char *)str_or(image, "backing_format", "raw");
    }
    argv[n++] = path;
    argv[n++] = (char *)str_or(image, "size", "1M");
    struct proc_spawn sp = {.argv = argv, .stdout_fd = -1, .stderr_fd = -1};
    if (rc < 0 || proc_run(&sp, 30000, NULL, 0, err, errsz) != 0) {
        snprintf(err + strlen(err), errsz - strlen(err), " (making %s)", path);
        return -1;
    }
    return 0;
}

/* Builds the case's real catalogue ("catalogue": a list of images for make_image())
 * under a new temporary directory, root (the machines in root/machines; the caller
 * removes root), and loads it as qdesk does. Returns the catalogue, or NULL with
 * err. */
static struct catalog *real_catalog(json_t *images, char root[PATH_MAX], char *err,
                                    size_t errsz)
{
    char tmp[] = "/tmp/qdesk-golden-XXXXXX", qemu_img[PATH_MAX], dir[PATH_MAX + 16];
    if (!mkdtemp(tmp)) {
        snprintf(err, errsz, "cannot make a temporary directory: %s", strerror(errno));
        return NULL;
    }
    if (!realpath(tmp, root))
        snprintf(root, PATH_MAX, "%s", tmp);
    if (proc_find_exe("qemu-img", qemu_img, sizeof(qemu_img)) < 0) {
        snprintf(err, errsz, "qemu-img is not installed (Debian package qemu-utils)");
        return NULL;
    }
    size_t i;
    json_t *image;
    json_array_foreach(images, i, image)
    {
        if (make_image(qemu_img, root, image, err, errsz) < 0)
            return NULL;
    }
    snprintf(dir, sizeof(dir), "%s/machines", root);
    return catalog_load(dir, qemu_img, err, errsz);
}

/* Returns s with every from replaced by to, newly allocated. */
static char *replace_all(const char *s, const char *from, const char *to)
{
    size_t n = 0, flen = strlen(from), tlen = strlen(to);
    for (const char *p = s; (p = strstr(p, from)); p += flen)
        n++;
    char *out = malloc(strlen(s) + n * tlen + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = s, *hit; *p; p = hit + flen) {
        hit = strstr(p, from);
        size_t keep = hit ? (size_t)(hit - p) : strlen(p);
        memcpy(o, p, keep);
        o += keep;
        if (!hit)
            break;
        memcpy(o, to, tlen);
        o += tlen;
    }
    *o = 0;
    return out;
}

/* Applies the request's fields in order, named as source names them ("cli": the
 * options of `qdesk args`, "api": the HTTP API's fields); arrays set a repeated
 * field. */
static int fake_request(json_t *r, const char *source, struct spec_request *req,
                        char *err, size_t errsz)
{
    memset(req, 0, sizeof(*req));
    req->source = strcmp(source, "api") ? SPEC_FROM_CLI : SPEC_FROM_API;
    const char *key;
    json_t *value;
    json_object_foreach(r, key, value)
    {
        size_t i;
        json_t *item;
        if (json_is_array(value)) {
            json_array_foreach(value, i, item)
            {
                if (spec_request_set(req, key, json_string_value(item), err, errsz) < 0)
                    return -1;
            }
        } else if (spec_request_set(req, key, json_string_value(value), err, errsz) < 0) {
            return -1;
        }
    }
    return 0;
}

/* [runner NAME] as the case gives it ("runner": {"key": "value", ...}), read by
 * the runner's own section code as if it stood at line 1 of qdesk.conf. */
static int fake_runner(json_t *keys, struct kv_config *kv, char *err, size_t errsz)
{
    struct config_named sec = {.kind = "runner", .name = "cluster", .file = "qdesk.conf"};
    sec.n = json_object_size(keys);
    sec.entries = calloc(sec.n ? sec.n : 1, sizeof(*sec.entries));
    const char *key;
    json_t *value;
    size_t i = 0;
    json_object_foreach(keys, key, value)
    {
        sec.entries[i].key = (char *)key;
        sec.entries[i].value = (char *)json_string_value(value);
        sec.entries[i].line = (int)i + 2; /* after the [runner cluster] header */
        i++;
    }
    int rc = kv_config_parse(&sec, 30, kv, err, errsz);
    free(sec.entries);
    return rc;
}

/* The VMI (and the Secret, when one is made) for a resolved case: "session",
 * "owner", "cloud_init": {"user_data", "network_config", "secret"}. */
static char *kubevirt_case(json_t *j, const struct spec_request *req,
                           const struct catalog_machine *m, const struct vm_spec *spec,
                           char **secret, char *err, size_t errsz)
{
    static struct kv_config kv;
    if (fake_runner(json_object_get(j, "runner"), &kv, err, errsz) < 0)
        return NULL;
    json_t *ci = json_object_get(j, "cloud_init");
    const char *usb[SPEC_MAX_USB];
    for (size_t i = 0; i < req->n_usb; i++)
        usb[i] = req->usb[i];
    struct runner_launch l = {
        .session_id = str_or(j, "session", "0123456789abcdef"),
        .owner = str_or(j, "owner", "alice"),
        .spec = spec,
        .machine = m,
        .gpu_type = req->gpu_type,
        .usb = usb,
        .n_usb = req->n_usb,
        .user_data = str_or(ci, "user_data", NULL),
        .network_config = str_or(ci, "network_config", NULL),
        .seed_has_secret = json_is_true(json_object_get(ci, "secret")),
    };
    struct kv_objects o;
    if (kv_vmi_build(&kv, &l, &o, err, errsz) < 0)
        return NULL;
    char *vmi = json_dumps(o.vmi, JSON_INDENT(2) | JSON_SORT_KEYS);
    *secret = o.secret ? json_dumps(o.secret, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    kv_objects_free(&o);
    char *out = NULL;
    if (vmi && asprintf(&out, "%s\n", vmi) < 0)
        out = NULL;
    free(vmi);
    if (*secret) {
        char *with_nl = NULL;
        if (asprintf(&with_nl, "%s\n", *secret) < 0)
            with_nl = NULL;
        free(*secret);
        *secret = with_nl;
    }
    return out;
}

/* Returns the newly allocated output for one case: the shell-quoted command line
 * (kubevirt: the VMI, and in *secret its Secret or NULL), or the error message and
 * a newline. Sets *is_err. */
static char *run_case(const char *dir, const char *path, bool kubevirt, bool *is_err,
                      char **secret)
{
    char err[2048] = "";
    json_error_t jerr;
    *secret = NULL;
    json_t *j = json_load_file(path, JSON_PRESERVE_ORDER, &jerr);
    if (!j) {
        fprintf(stderr, "%s:%d: %s\n", path, jerr.line, jerr.text);
        return NULL;
    }
    struct spec_host host;
    struct spec_limits lim;
    struct catalog cat = {.dir = CATALOG_DIR}, *real = NULL;
    const struct catalog_machine *m = NULL;
    json_t *images = json_object_get(j, "catalogue");
    char root[PATH_MAX] = "";
    struct spec_request req;
    struct vm_spec spec;
    struct config cfg;
    struct argv a;
    argv_init(&a);
    fake_host(json_object_get(j, "host"), &host);
    fake_config(json_object_get(j, "host"), dir, &cfg);
    fake_limits(json_object_get(j, "limits"), &lim);
    const char *name = str_or(j, "name", "s1");
    char rundir[PATH_MAX];
    snprintf(rundir, sizeof(rundir), "%s", str_or(j, "rundir", "/run/qdesk/s1"));

    char *out = NULL;
    bool resolved =
        !(images ? !(real = real_catalog(images, root, err, sizeof(err)))
                 : fake_catalog(json_object_get(j, "machines"), &cat, err, sizeof(err)) <
                       0) &&
        fake_request(json_object_get(j, "request"), str_or(j, "source", "cli"), &req, err,
                     sizeof(err)) == 0 &&
        (m = catalog_lookup(real ? real : &cat, req.machine, err, sizeof(err))) &&
        spec_resolve(&req, m, &host, &lim, name, rundir, &spec, err, sizeof(err)) == 0;
    if (resolved && kubevirt) {
        out = kubevirt_case(j, &req, m, &spec, secret, err, sizeof(err));
        *is_err = !out;
    } else if (!resolved || alloc_plan(&cfg, &req, &spec, err, sizeof(err)) < 0 ||
               qemu_build_cmdline(&a, &spec) < 0) {
        if (!err[0])
            snprintf(err, sizeof(err), "%s", a.err);
        *is_err = true;
    } else {
        /* what the user is told beside the command line, and the network helper
         * qdesk starts first, as shell comments (as qdesk args prints the latter) */
        char *args = argv_format(&a), warning[600];
        char *net = spec.net == SPEC_NET_USER ? usernet_format(&spec.usernet) : NULL;
        spec_warnings(&spec, warning, sizeof(warning));
        *is_err = false;
        if (args && asprintf(&out, "%s%s%s%s%s%s", warning[0] ? "# warning: " : "",
                             warning, warning[0] ? "\n" : "",
                             net ? "# network helper: " : "", net ? net : "",
                             net ? "\n" : "") >= 0) {
            char *all = NULL;
            if (asprintf(&all, "%s%s", out, args) < 0)
                all = NULL;
            free(out);
            out = all;
        }
        free(args);
        free(net);
    }
    if (*is_err && asprintf(&out, "%s\n", err) < 0)
        out = NULL;
    argv_free(&a);
    free(cat.machines);
    catalog_free(real);
    json_decref(j);
    if (root[0]) {
        /* Outputs never hold the temporary directory: it reads as /srv/qdesk. */
        char *fixed = out ? replace_all(out, root, "/srv/qdesk") : NULL;
        free(out);
        out = fixed;
        fs_remove_tree(root);
    }
    return out;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The outputs a case may have besides NAME.json and NAME.err. */
static const char *const qemu_outputs[] = {".args", NULL};
static const char *const kubevirt_outputs[] = {".vmi.json", ".secret.json", NULL};

/* Splits f into its case name and suffix (".json", ".err" or an output's); returns
 * the suffix, or NULL for a file that is none of them. */
static const char *split_file(const char *f, const char *const *outputs, char *base,
                              size_t basesz)
{
    const char *known[8] = {".err"};
    size_t n = 1;
    for (size_t i = 0; outputs[i]; i++)
        known[n++] = outputs[i];
    known[n++] = ".json"; /* last: ".vmi.json" ends with it too */
    size_t len = strlen(f);
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(known[i]);
        if (len > k && !strcmp(f + len - k, known[i])) {
            snprintf(base, basesz, "%.*s", (int)(len - k), f);
            return known[i];
        }
    }
    return NULL;
}

/* Compares (or with regenerate writes) one output file; a NULL want_text means the
 * case must not have that file. Returns true when it matches. */
static bool check_output(const char *path, const char *text, bool regenerate,
                         const char *base, char *why, size_t whysz)
{
    if (regenerate) {
        if (text)
            fs_write_file(path, text, strlen(text), 0644);
        else
            unlink(path);
        return true;
    }
    char *want = fs_read_file(path, 1 << 20, NULL);
    bool ok = true;
    if (!text && want) {
        snprintf(why, whysz, "%s: the code gives no %s, but it exists", base, path);
        ok = false;
    } else if (text && !want) {
        snprintf(why, whysz, "%s: %s does not exist; the code gives:\n# %s", base, path,
                 text);
        ok = false;
    } else if (text && strcmp(want, text) != 0) {
        snprintf(why, whysz, "%s differs from %s\n# got:\n%s", base, path, text);
        ok = false;
    }
    free(want);
    return ok;
}

int main(int argc, char **argv)
{
    bool kubevirt = argc == 3 && !strcmp(argv[1], "--kubevirt");
    if (argc != 2 && !kubevirt) {
        fprintf(stderr, "usage: golden [--kubevirt] DIR\n");
        return 2;
    }
    const char *dir = argv[argc - 1];
    const char *const *outputs = kubevirt ? kubevirt_outputs : qemu_outputs;
    bool regenerate = getenv("QDESK_REGENERATE") && getenv("QDESK_REGENERATE")[0] == '1';
    log_set_level(LOG_WARN); /* a refused machine is a case's output, not news */
    char pci_ids[PATH_MAX], usb_ids[PATH_MAX];
    snprintf(pci_ids, sizeof(pci_ids), "%s/../sysfs/ids/pci.ids", dir);
    snprintf(usb_ids, sizeof(usb_ids), "%s/../sysfs/ids/usb.ids", dir);
    ids_set_files(pci_ids, usb_ids);
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "%s: %s\n", dir, strerror(errno));
        return 2;
    }
    char **files = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') {
            files = realloc(files, (n + 1) * sizeof(*files));
            files[n++] = strdup(de->d_name);
        }
    closedir(d);
    qsort(files, n, sizeof(*files), compare_names);

    int failed = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        const char *f = files[i];
        char json[PATH_MAX], base[256];
        const char *suffix = split_file(f, outputs, base, sizeof(base));
        snprintf(json, sizeof(json), "%s/%s.json", dir, base);
        if (!suffix || (strcmp(suffix, ".json") && !fs_exists(json))) {
            printf("not ok %d - %s is a data file that no test uses\n", ++total, f);
            failed++;
            continue;
        }
        if (strcmp(suffix, ".json"))
            continue;

        bool is_err;
        char *secret = NULL;
        char *out = run_case(dir, json, kubevirt, &is_err, &secret);
        total++;
        if (!out) {
            printf("not ok %d - %s: cannot read the case\n", total, base);
            failed++;
            free(secret);
            continue;
        }
        /* every file the case may have: the error, or its outputs */
        const char *texts[4] = {is_err ? out : NULL, is_err ? NULL : out,
                                is_err ? NULL : secret};
        const char *exts[4] = {".err", outputs[0], outputs[1]};
        bool ok = true;
        char why[8192] = "";
        for (size_t k = 0; k < 3 && ok; k++) {
            if (!exts[k])
                continue;
            char path[PATH_MAX];
            snprintf(path, sizeof(path), "%s/%s%s", dir, base, exts[k]);
            ok = check_output(path, texts[k], regenerate, base, why, sizeof(why));
        }
        if (regenerate)
            printf("ok %d - %s (regenerated)\n", total, base);
        else if (ok)
            printf("ok %d - %s\n", total, base);
        else {
            printf("not ok %d - %s", total, why);
            if (why[strlen(why) - 1] != '\n')
                printf("\n");
            failed++;
        }
        free(out);
        free(secret);
    }
    printf("1..%d\n", total);
    for (size_t i = 0; i < n; i++)
        free(files[i]);
    free(files);
    return failed ? 1 : 0;
}

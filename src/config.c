#include "config.h"

#include "util/ini.h"
#include "util/units.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum key_type { K_STR, K_BOOL, K_DURATION, K_MB, K_GB, K_COUNT, K_FRACTION };

struct key {
    const char *section, *name;
    enum key_type type;
    size_t offset, size;
    const char *allowed; /* for K_STR: "a|b|c" or NULL for free text */
};

#define STR(sec, field, allowed)                                                         \
    {                                                                                    \
        sec, #field, K_STR, offsetof(struct config, field),                              \
            sizeof(((struct config *)0)->field), allowed                                 \
    }
#define NUM(sec, field, type)                                                            \
    {                                                                                    \
        sec, #field, type, offsetof(struct config, field), 0, NULL                       \
    }

static const struct key keys[] = {
    STR("server", listen, NULL),
    STR("server", base_url, NULL),
    STR("server", tls_cert, NULL),
    STR("server", tls_key, NULL),
    STR("server", control_socket, NULL),
    STR("server", www, NULL),
    NUM("server", max_body_kb, K_COUNT),
    STR("server", metrics_token, NULL),
    STR("auth", auth, "none|local|pam"),
    NUM("auth", allow_remote_none, K_BOOL),
    STR("auth", pam_service, NULL),
    STR("auth", admin_group, NULL),
    NUM("auth", login_lifetime_s, K_DURATION),
    NUM("auth", login_attempts_per_minute, K_COUNT),
    STR("paths", machines, NULL),
    STR("paths", state, NULL),
    STR("paths", sysroot, NULL),
    STR("qemu", accel, "auto|kvm|tcg"),
    STR("qemu", qemu_user, NULL),
    STR("qemu", qemu_x86_64, NULL),
    STR("qemu", qemu_aarch64, NULL),
    STR("qemu", qemu_img, NULL),
    STR("qemu", ovmf_code, NULL),
    STR("qemu", ovmf_vars, NULL),
    STR("qemu", aavmf_code, NULL),
    STR("qemu", aavmf_vars, NULL),
    NUM("qemu", start_timeout_s, K_DURATION),
    NUM("qemu", stop_grace_s, K_DURATION),
    STR("usernet", passt, NULL),
    STR("usernet", dns, NULL),
    STR("usernet", firewall_table, NULL),
    NUM("gpu", allow_host_console, K_BOOL),
    NUM("gpu", vfs, K_COUNT),
    STR("gpu", virgl_display, "egl-headless|sdl"),
    STR("gpu", virgl_x_display, NULL),
    STR("gpu", rom_dir, NULL),
    NUM("sessions", default_cpus, K_COUNT),
    NUM("sessions", default_memory_mb, K_MB),
    NUM("sessions", default_lifetime_s, K_DURATION),
    NUM("sessions", min_lifetime_s, K_DURATION),
    NUM("sessions", keep_ended_s, K_DURATION),
    NUM("sessions", max_lifetime_s, K_DURATION),
    NUM("sessions", min_memory_mb, K_MB),
    NUM("sessions", max_memory_mb, K_MB),
    NUM("sessions", default_disk_gb, K_GB),
    NUM("sessions", max_disk_gb, K_GB),
    NUM("limits", max_sessions, K_COUNT),
    NUM("limits", max_sessions_per_user, K_COUNT),
    NUM("limits", user_cpu_fraction, K_FRACTION),
    NUM("limits", user_memory_fraction, K_FRACTION),
    NUM("limits", max_load_per_core, K_FRACTION),
    NUM("limits", min_mem_available_mb, K_MB),
};

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->listen, sizeof(c->listen), "127.0.0.1:8080");
    snprintf(c->auth, sizeof(c->auth), "none");
    snprintf(c->pam_service, sizeof(c->pam_service), "qdesk");
    snprintf(c->admin_group, sizeof(c->admin_group), "qdesk-admin");
    snprintf(c->www, sizeof(c->www), "www");
    c->max_body_kb = 64;
    c->login_lifetime_s = 12 * 3600;
    c->login_attempts_per_minute = 10;
    snprintf(c->machines, sizeof(c->machines), "machines");
    snprintf(c->state, sizeof(c->state), "state");
    snprintf(c->sysroot, sizeof(c->sysroot), "/");
    snprintf(c->accel, sizeof(c->accel), "auto");
    snprintf(c->ovmf_code, sizeof(c->ovmf_code), "/usr/share/OVMF/OVMF_CODE_4M.fd");
    snprintf(c->ovmf_vars, sizeof(c->ovmf_vars), "/usr/share/OVMF/OVMF_VARS_4M.fd");
    snprintf(c->aavmf_code, sizeof(c->aavmf_code), "/usr/share/AAVMF/AAVMF_CODE.fd");
    snprintf(c->aavmf_vars, sizeof(c->aavmf_vars), "/usr/share/AAVMF/AAVMF_VARS.fd");
    c->start_timeout_s = 30;
    c->stop_grace_s = 30;
    snprintf(c->firewall_table, sizeof(c->firewall_table), "qdesk");
    snprintf(c->virgl_display, sizeof(c->virgl_display), "egl-headless");
    snprintf(c->rom_dir, sizeof(c->rom_dir), "/etc/qdesk/roms");
    c->default_cpus = 1;
    c->default_memory_mb = 1024;
    c->default_lifetime_s = 4 * 3600;
    c->min_lifetime_s = 60;
    c->keep_ended_s = 86400;
    c->max_lifetime_s = 7 * 86400;
    c->min_memory_mb = 128;
    c->default_disk_gb = 8;
    c->max_disk_gb = 256;
    c->max_sessions = 64;
    c->max_sessions_per_user = 4;
    c->user_cpu_fraction = 1.0;
    c->user_memory_fraction = 0.75;
    c->max_load_per_core = 4.0;
    c->min_mem_available_mb = 256;
}

static int parse_value(const struct key *k, void *field, const char *value, char *why,
                       size_t whysz)
{
    uint64_t n;
    char *end;
    switch (k->type) {
    case K_STR:
        if (k->allowed) {
            char list[128];
            snprintf(list, sizeof(list), "%s", k->allowed);
            bool found = false;
            for (char *save, *tok = strtok_r(list, "|", &save); tok && !found;
                 tok = strtok_r(NULL, "|", &save))
                found = strcmp(tok, value) == 0;
            if (!found) {
                snprintf(why, whysz, "must be one of %s", k->allowed);
                return -1;
            }
        }
        if (strlen(value) >= k->size) {
            snprintf(why, whysz, "is longer than %zu characters", k->size - 1);
            return -1;
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case K_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 ||
            strcmp(value, "1") == 0)
            *(bool *)field = true;
        else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 ||
                 strcmp(value, "0") == 0)
            *(bool *)field = false;
        else {
            snprintf(why, whysz, "must be true or false");
            return -1;
        }
        return 0;
    case K_DURATION:
        if (units_parse_duration(value, &n) < 0) {
            snprintf(why, whysz, "must be a duration such as 30s, 90m, 4h or 2d");
            return -1;
        }
        *(uint64_t *)field = n;
        return 0;
    case K_MB:
    case K_GB:
        if (units_parse_size(value, k->type == K_MB ? 1ULL << 20 : 1ULL << 30, &n) < 0) {
            snprintf(why, whysz, "must be a size such as 512M or 4G");
            return -1;
        }
        *(uint64_t *)field = n >> (k->type == K_MB ? 20 : 30);
        return 0;
    case K_COUNT:
        errno = 0;
        n = strtoull(value, &end, 10);
        if (errno || end == value || *end || value[0] == '-') {
            snprintf(why, whysz, "must be a whole number");
            return -1;
        }
        *(uint64_t *)field = n;
        return 0;
    case K_FRACTION: {
        errno = 0;
        double d = strtod(value, &end);
        if (errno || end == value || *end || d < 0) {
            snprintf(why, whysz, "must be a number such as 0.5");
            return -1;
        }
        *(double *)field = d;
        return 0;
    }
    }
    return -1;
}

int config_set(struct config *c, const char *section, const char *key, const char *value,
               char *err, size_t errsz)
{
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (strcmp(keys[i].section, section) != 0 || strcmp(keys[i].name, key) != 0)
            continue;
        char why[160];
        if (parse_value(&keys[i], (char *)c + keys[i].offset, value, why, sizeof(why)) <
            0) {
            snprintf(err, errsz, "[%s] %s = '%s' %s", section, key, value, why);
            return -1;
        }
        return 0;
    }
    snprintf(err, errsz, "[%s] %s is not a known setting (see qdesk.conf.example)",
             section, key);
    return -1;
}

/* Splits a section header "KIND NAME" or "KIND.NAME" into kind and name. Returns 1
 * for a named section, 0 for a plain one, -1 (with why) for a malformed one. */
static int split_named(const char *section, char *kind, size_t kindsz, char *name,
                       size_t namesz, char *why, size_t whysz)
{
    size_t k = strcspn(section, " \t.");
    if (!section[k])
        return 0;
    const char *n = section + k + 1;
    while (*n == ' ' || *n == '\t')
        n++;
    if (k >= kindsz) {
        snprintf(why, whysz, "[%s] is not a known section (see qdesk.conf.example)",
                 section);
        return -1;
    }
    memcpy(kind, section, k);
    kind[k] = 0;
    char kinds[] = CONFIG_NAMED_KINDS;
    bool known = false;
    for (char *save, *tok = strtok_r(kinds, ", ", &save); tok && !known;
         tok = strtok_r(NULL, ", ", &save))
        known = !strcmp(tok, kind);
    if (!known) {
        snprintf(why, whysz,
                 "[%s]: '%s' is not a kind of named section (allowed: " CONFIG_NAMED_KINDS
                 ")",
                 section, kind);
        return -1;
    }
    size_t len = strlen(n);
    if (len == 0 || len >= namesz || strspn(n, "abcdefghijklmnopqrstuvwxyz"
                                              "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789-_") != len) {
        snprintf(why, whysz,
                 "[%s]: the name must be 1 to %zu letters, digits, '-' or '_'", section,
                 namesz - 1);
        return -1;
    }
    memcpy(name, n, len + 1);
    return 1;
}

/* Adds e to the named section kind/name, opening it at e's line when it is new. */
static int add_named(struct config *c, const char *path, const char *kind,
                     const char *name, const struct ini_entry *e)
{
    struct config_named *s = (struct config_named *)config_named_find(c, kind, name);
    if (!s) {
        struct config_named *grown = realloc(c->named, (c->n_named + 1) * sizeof(*grown));
        if (!grown)
            return -1;
        c->named = grown;
        s = &c->named[c->n_named++];
        memset(s, 0, sizeof(*s));
        snprintf(s->kind, sizeof(s->kind), "%s", kind);
        snprintf(s->name, sizeof(s->name), "%s", name);
        snprintf(s->file, sizeof(s->file), "%s", path);
        s->line = e->line;
    }
    struct config_entry *grown = realloc(s->entries, (s->n + 1) * sizeof(*grown));
    if (!grown)
        return -1;
    s->entries = grown;
    struct config_entry *ce = &s->entries[s->n];
    ce->key = strdup(e->key);
    ce->value = strdup(e->value);
    ce->line = e->line;
    s->n++;
    return ce->key && ce->value ? 0 : -1;
}

int config_load(struct config *c, const char *path, bool required, char *err,
                size_t errsz)
{
    if (!required && access(path, F_OK) < 0 && errno == ENOENT)
        return 0;
    struct ini *ini = ini_load(path, err, errsz);
    if (!ini)
        return -1;
    int rc = 0;
    const char *open_section = NULL; /* the header seen last, for "given twice" */
    for (size_t i = 0; i < ini->n && rc == 0; i++) {
        const struct ini_entry *e = &ini->entries[i];
        char why[512], kind[16], name[64];
        int named = split_named(e->section, kind, sizeof(kind), name, sizeof(name), why,
                                sizeof(why));
        if (named > 0) {
            bool fresh = !open_section || strcmp(open_section, e->section);
            if (fresh && config_named_find(c, kind, name)) {
                snprintf(why, sizeof(why), "[%s] is given twice", e->section);
                named = -1;
            } else if (add_named(c, path, kind, name, e) < 0) {
                snprintf(why, sizeof(why), "out of memory");
                named = -1;
            }
            open_section = e->section;
        }
        if (named == 0)
            rc = config_set(c, e->section, e->key, e->value, why, sizeof(why));
        if (named < 0)
            rc = -1;
        if (rc < 0)
            snprintf(err, errsz, "%s:%d: %s", path, e->line, why);
    }
    ini_free(ini);
    return rc;
}

void config_free(struct config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_named; i++) {
        for (size_t j = 0; j < c->named[i].n; j++) {
            free(c->named[i].entries[j].key);
            free(c->named[i].entries[j].value);
        }
        free(c->named[i].entries);
    }
    free(c->named);
    c->named = NULL;
    c->n_named = 0;
}

const struct config_named *config_named_next(const struct config *c, const char *kind,
                                             const struct config_named *prev)
{
    size_t i = prev ? (size_t)(prev - c->named) + 1 : 0;
    for (; i < c->n_named; i++)
        if (!strcmp(c->named[i].kind, kind))
            return &c->named[i];
    return NULL;
}

const struct config_named *config_named_find(const struct config *c, const char *kind,
                                             const char *name)
{
    for (size_t i = 0; i < c->n_named; i++)
        if (!strcmp(c->named[i].kind, kind) && !strcmp(c->named[i].name, name))
            return &c->named[i];
    return NULL;
}

const char *config_named_get(const struct config_named *s, const char *key, int *line)
{
    for (size_t i = s->n; i-- > 0;)
        if (!strcmp(s->entries[i].key, key)) {
            if (line)
                *line = s->entries[i].line;
            return s->entries[i].value;
        }
    return NULL;
}

const char *config_qemu_user(const struct config *c)
{
    if (c->qemu_user[0])
        return c->qemu_user;
    return geteuid() == 0 ? CONFIG_QEMU_USER : "";
}

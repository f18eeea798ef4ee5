/* config: the service's one INI file. Every key is optional; zero config listens
 * on 127.0.0.1:8080, reads machines from ./machines and keeps state in ./state.
 * qdesk.conf.example in the repository documents every key. */
#ifndef QDESK_CONFIG_H
#define QDESK_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_DEFAULT_PATH "/etc/qdesk/qdesk.conf"

/* A named section, [KIND NAME] or [KIND.NAME]: one managed network, one shared
 * folder, one group's limits, one runner. config_load() checks only that KIND is
 * one of CONFIG_NAMED_KINDS, that NAME is a name and that no section is given
 * twice, and keeps the entries in file order; the module that owns the kind reads
 * and checks its keys, naming FILE:LINE in its errors. */
#define CONFIG_NAMED_KINDS "network, mount, limits, runner"

struct config_entry {
    char *key;
    char *value;
    int line;
};

struct config_named {
    char kind[16];
    char name[64]; /* letters, digits, '-', '_' */
    char file[PATH_MAX];
    int line; /* of its first key */
    struct config_entry *entries;
    size_t n;
};

struct config {
    /* [server] */
    char listen[128];        /* host:port */
    char base_url[256];      /* public URL prefix of links; "" derives it from listen */
    char tls_cert[PATH_MAX]; /* HTTPS and WSS when both are set */
    char tls_key[PATH_MAX];
    char control_socket[PATH_MAX]; /* "" = STATE/control.sock */
    char www[PATH_MAX];            /* the portal's files */
    uint64_t max_body_kb;          /* largest request body accepted */
    char metrics_token[128];       /* bearer token for /metrics from elsewhere */

    /* [auth] */
    char auth[16];          /* none | local | pam (and later backends) */
    bool allow_remote_none; /* auth none on a non-loopback address */
    char pam_service[64];
    char admin_group[64]; /* PAM users in this group are admins */
    uint64_t login_lifetime_s;
    uint64_t login_attempts_per_minute; /* per client address and per user name */

    /* [paths] */
    char machines[PATH_MAX];
    char state[PATH_MAX];
    char sysroot[PATH_MAX];

    /* [qemu] */
    char accel[8];      /* auto | kvm | tcg */
    char qemu_user[64]; /* "" = do not switch user */
    char qemu_x86_64[PATH_MAX];
    char qemu_aarch64[PATH_MAX];
    char qemu_img[PATH_MAX];
    char ovmf_code[PATH_MAX];
    char ovmf_vars[PATH_MAX];
    char aavmf_code[PATH_MAX];
    char aavmf_vars[PATH_MAX];
    uint64_t start_timeout_s; /* spawn to QMP answering */
    uint64_t stop_grace_s;    /* powerdown to quit */

    /* [usernet]: the default guest network (net = user), see net/usernet.h */
    char passt[PATH_MAX];    /* the helper; "" = looked up */
    char dns[256];           /* resolvers guests are offered; "" = the host's */
    char firewall_table[32]; /* the nftables table that keeps guests off the host */

    /* [gpu] */
    bool allow_host_console;  /* passthrough may take the GPU showing the host console */
    uint64_t vfs;             /* VFs to create on an SR-IOV GPU that has none (0: all) */
    char virgl_display[16];   /* egl-headless (a render node) | sdl (an X display) */
    char virgl_x_display[32]; /* DISPLAY for virgl_display = sdl */
    char rom_dir[PATH_MAX];   /* option ROMs for passthrough: DIR/ADDR.rom */

    /* [sessions] */
    uint64_t default_cpus;
    uint64_t default_memory_mb;
    uint64_t default_lifetime_s;
    uint64_t min_lifetime_s;
    uint64_t keep_ended_s; /* ended sessions stay listed this long */
    uint64_t max_lifetime_s;
    uint64_t min_memory_mb;
    uint64_t max_memory_mb; /* 0 = the host's memory */
    uint64_t default_disk_gb;
    uint64_t max_disk_gb;

    /* [limits]: admission control */
    uint64_t max_sessions;
    uint64_t max_sessions_per_user;
    double user_cpu_fraction;    /* of the host's cores one user may hold */
    double user_memory_fraction; /* of the host's memory one user may hold */
    double max_load_per_core;    /* 1-minute load average / cores */
    uint64_t min_mem_available_mb;

    /* the named sections, in file order (owned; config_free() releases them) */
    struct config_named *named;
    size_t n_named;
};

/* Fills c with the built-in defaults. */
void config_defaults(struct config *c);

/* Reads path over the defaults already in c. A missing file is an error only when
 * required. Unknown sections/keys and bad values are errors naming file:line.
 * Returns 0, or -1 with err. */
int config_load(struct config *c, const char *path, bool required, char *err,
                size_t errsz);

/* Frees what config_load() allocated (the named sections). Accepts NULL. */
void config_free(struct config *c);

/* Returns the next named section of kind after prev (NULL: the first), or NULL. */
const struct config_named *config_named_next(const struct config *c, const char *kind,
                                             const struct config_named *prev);
/* Returns the named section kind/name, or NULL. */
const struct config_named *config_named_find(const struct config *c, const char *kind,
                                             const char *name);
/* Returns the value of key in s (the last one given), or NULL; line gets its line
 * when not NULL. */
const char *config_named_get(const struct config_named *s, const char *key, int *line);

/* The user QEMU and its network helper run as, by name: [qemu] qemu_user, else,
 * when qdesk runs as root, CONFIG_QEMU_USER (QEMU never runs as root; scripts/deps
 * creates that account), else "" (the service's own user, which is not root). */
#define CONFIG_QEMU_USER "qdesk-qemu"
const char *config_qemu_user(const struct config *c);

/* Sets one "section.key" (as a command-line override would). Returns 0 or -1. */
int config_set(struct config *c, const char *section, const char *key, const char *value,
               char *err, size_t errsz);

#endif

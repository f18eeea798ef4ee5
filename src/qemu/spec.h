/* spec: what a user asks for (struct spec_request), the facts of the host it runs
 * on (struct spec_host), and the resolved, validated VM that the command-line
 * builder turns into an argv (struct vm_spec).
 *
 * Every user-settable field is checked here and only here, whether it came from
 * the command line or the HTTP API; errors name the field and what is allowed. */
#ifndef QDESK_QEMU_SPEC_H
#define QDESK_QEMU_SPEC_H

#include "host/gpu.h"
#include "net/usernet.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SPEC_NAME_MAX   64
#define SPEC_MAX_USB    8
#define SPEC_MAX_MOUNTS 8

enum spec_gpu {
    SPEC_GPU_NONE,
    SPEC_GPU_VIRGL,       /* shared 3D: virtio-vga-gl on the host's render node */
    SPEC_GPU_VF,          /* an SR-IOV virtual function */
    SPEC_GPU_PASSTHROUGH, /* a whole device through vfio-pci */
    SPEC_GPU_MDEV,        /* a mediated device (GVT-g, vGPU) */
    SPEC_GPU_KINDS
};
#define SPEC_GPU_NAMES "none, virgl, vf, passthrough, mdev[:TYPE]"

enum spec_net { SPEC_NET_USER, SPEC_NET_BRIDGE, SPEC_NET_NONE };

/* Returns the enum spec_gpu for a kind name ("mdev", not "mdev:TYPE"), or -1. */
int spec_gpu_parse(const char *name);
const char *spec_gpu_name(enum spec_gpu kind);

/* Where a request comes from. Its fields are named, and read, as users there know
 * them; every check is the same. */
enum spec_source {
    SPEC_FROM_API, /* JSON fields: memory_mb (MiB), lifetime_s (seconds), disk_gb */
    SPEC_FROM_CLI, /* options: --memory SIZE, --lifetime DURATION, --disk GB */
};

/* The fields a user sets. */
enum spec_field {
    SPEC_FIELD_MACHINE,
    SPEC_FIELD_CPUS,
    SPEC_FIELD_MEMORY,
    SPEC_FIELD_LIFETIME,
    SPEC_FIELD_DISK,
    SPEC_FIELD_GPU,
    SPEC_FIELD_USB,
    SPEC_FIELD_NET,
    SPEC_FIELD_MOUNTS,
    SPEC_FIELD_SCRIPT,
    SPEC_FIELD_PERSISTENT,
    SPEC_FIELDS
};

/* Returns the name users of source know field by, as error messages give it:
 * "memory_mb" in the API, "--memory" on the command line. */
const char *spec_field_name(enum spec_source source, enum spec_field field);

/* A user's choices. Zero or empty fields take the machine's or the service's
 * default, unless spec_request_set() was given the zero (which is then refused
 * with the allowed range). */
struct spec_request {
    enum spec_source source;
    unsigned given; /* bit (1 << enum spec_field) for each field set */
    char machine[SPEC_NAME_MAX];
    unsigned cpus;
    uint64_t memory_mb;
    uint64_t lifetime_s;
    unsigned disk_gb; /* blank data disk beside an ISO */
    enum spec_gpu gpu;
    char gpu_type[64];          /* mdev type, e.g. i915-GVTg_V5_4 */
    char usb[SPEC_MAX_USB][32]; /* VID:PID, BUS-PORT or an emulated device */
    size_t n_usb;
    enum spec_net net;
    char bridge[16];
    char mounts[SPEC_MAX_MOUNTS][PATH_MAX];
    size_t n_mounts;
    char script[PATH_MAX];
    bool oneshot;
    bool persistent;
};

/* Sets one field of r from its text form, as r->source names and writes it: an
 * HTTP API field ("cpus", "memory_mb", "lifetime_s", "disk_gb", "gpu", "usb",
 * "net", "mounts", "script", "machine") or a command-line option without its
 * dashes ("memory" takes a size, "lifetime" a duration, "disk", "mount", ...);
 * repeated fields (usb, mounts) append. Checks the form only: ranges, which depend
 * on the host and the machine, are spec_resolve()'s. Returns 0, or -1 with err
 * naming the field and what is allowed. */
int spec_request_set(struct spec_request *r, const char *field, const char *value,
                     char *err, size_t errsz);

/* Service-wide bounds and defaults (from the config). */
struct spec_limits {
    uint64_t min_memory_mb;
    uint64_t max_memory_mb; /* 0: the host's memory */
    uint64_t default_memory_mb;
    unsigned default_cpus;
    uint64_t default_lifetime_s;
    uint64_t min_lifetime_s;
    uint64_t max_lifetime_s;
    unsigned default_disk_gb;
    unsigned max_disk_gb;
};

/* A program or firmware file QEMU is given: where it is, or where the config said it
 * would be. */
struct spec_file {
    char path[PATH_MAX]; /* "": not configured, and not found where looked for */
    bool found;
};

/* Facts about the host. Probed by spec_host_probe(), or faked by the tests. */
struct spec_host {
    char arch[16]; /* the host's own arch: KVM runs only same-arch guests */
    unsigned cores;
    uint64_t memory_mb;
    char accel[8];     /* config: auto | kvm | tcg */
    bool kvm_usable;   /* /dev/kvm opens and can run ordinary guests */
    char kvm_why[256]; /* why KVM is not usable */
    struct spec_file qemu_x86_64, qemu_aarch64; /* [qemu] keys of the same names */
    struct spec_file ovmf_code, ovmf_vars, aavmf_code, aavmf_vars;
    bool virgl_sdl;     /* virgl renders in an X display (SDL), not egl-headless */
    char x_display[32]; /* that X display */
    /* net = user: passt and nft, and whether guests can be kept off the host (a
     * firewall rule for the QEMU user needs root and a QEMU user of its own) */
    struct spec_file passt, nft;
    bool usernet_isolated;
    char usernet_why[256]; /* why not */
    char usernet_dns[USERNET_MAX_DNS][48]; /* [usernet] dns */
    size_t n_usernet_dns;
    char firewall_table[32]; /* [usernet] firewall_table */
};

/* One block device layer as the builder emits it. */
struct vm_layer {
    char path[PATH_MAX];
    char format[16];
};

/* A USB device on the guest's xHCI controller: a host device (usb-host), or one
 * QEMU emulates (usb-kbd, usb-mouse, usb-tablet). */
struct vm_usb {
    unsigned bus;
    char devpath[24];  /* the port path on the bus: "1.2" */
    char emulated[16]; /* "" for a host device, else QEMU's device name */
    unsigned index;    /* distinguishes emulated devices of one session */
};
#define SPEC_USB_EMULATED "usb-kbd, usb-mouse, usb-tablet"

/* Returns true for the names of USB devices QEMU emulates. */
bool spec_usb_emulated(const char *name);

/* A resolved VM: everything the command-line builder needs, nothing it must
 * decide or check. */
struct vm_spec {
    char name[SPEC_NAME_MAX]; /* -name guest=... */
    char rundir[PATH_MAX];    /* qmp.sock, vnc.sock, serial.log, overlay, vars */
    char qemu[PATH_MAX];      /* the emulator binary */
    char arch[16];
    char machine_type[16];
    bool uefi;
    char fw_code[PATH_MAX]; /* UEFI firmware; fw_vars is the template copied */
    char fw_vars[PATH_MAX]; /*   per session into RUNDIR/vars.fd */
    bool kvm;
    char accel_why[256]; /* why TCG rather than KVM (kvm false) */
    unsigned cpus, sockets, cores, threads;
    uint64_t memory_mb;
    uint64_t lifetime_s;

    bool cdrom;               /* chain[0] is an ISO */
    struct vm_layer chain[8]; /* base image and its backing files, top first */
    size_t n_chain;           /* 0: no image (direct kernel boot only) */
    char disk_bus[8];
    unsigned data_disk_gb; /* ISO only: blank qcow2 data disk */
    char kernel[PATH_MAX];
    char initrd[PATH_MAX];
    char append[1024];

    char video[16];
    enum spec_gpu gpu;          /* what was asked for; the grant says what is given */
    struct gpu_grant gpu_grant; /* filled by the allocator (session/alloc.c) */
    bool virgl_sdl;
    char x_display[32];
    struct vm_usb usb[SPEC_MAX_USB];
    size_t n_usb;
    unsigned long hugepages_kb; /* guest RAM from hugepages of this size; 0: none */
    bool pin_cpus;              /* vCPUs get host CPUs of their own */
    enum spec_net net;
    char bridge[16];
    char mac[18]; /* derived from the name: stable, unique per VM */
    int tap_fd;   /* bridge: the tap's descriptor number in QEMU */
    struct usernet usernet; /* net = user: the helper and the firewall */
    char net_warning[300];  /* no network was asked for, and the default one cannot
                               keep guests off this host: why the guest has none */
};

/* Fills out with what the user should know about s (the GPU grant's and the
 * network's warnings, joined), "" when nothing. */
void spec_warnings(const struct vm_spec *s, char *out, size_t outsz);

/* The unprivileged user QEMU (and everything started for a guest: its network
 * helper, qemu-img on its images) runs as; set = false keeps the service's own,
 * which is then not root. */
struct vm_user {
    bool set;
    uid_t uid;
    gid_t gid;
    char name[64];
};

/* Looks up the QEMU user config_qemu_user() names. Refuses root and a missing
 * account (never falling back to root), with err naming [qemu] qemu_user and the
 * fix. Returns 0, or -1 with err. */
struct config;
int spec_qemu_user(const struct config *cfg, struct vm_user *user, char *err,
                   size_t errsz);

/* Checks req against the machine, the host and the limits, and fills out with the
 * resolved VM for name, running in rundir. Returns 0, or -1 with err naming the
 * field and what is allowed. */
struct catalog_machine;
int spec_resolve(const struct spec_request *req, const struct catalog_machine *m,
                 const struct spec_host *host, const struct spec_limits *lim,
                 const char *name, const char *rundir, struct vm_spec *out, char *err,
                 size_t errsz);

/* Fills host with this machine's facts: cores, memory, QEMU binaries, firmware,
 * whether KVM can run guests (reading sysroot's /dev/kvm and /proc/cpuinfo; the
 * QEMU user must be allowed to open /dev/kvm too), passt and nft, and whether
 * guests on the default network can be kept off the host. accel is the configured
 * mode (auto | kvm | tcg). Returns 0, or -1 with err for a bad [usernet] key. */
int spec_host_probe(const struct config *cfg, struct spec_host *host, char *err,
                    size_t errsz);

/* Fills lim from the config. */
void spec_limits_from_config(const struct config *cfg, struct spec_limits *lim);

#endif

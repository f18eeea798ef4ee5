/* catalog: the directory of machine images users choose from.
 *
 * Every image (qcow2, raw/img, vmdk, vdi, vhd, vhdx, qed, iso) becomes a machine
 * named after its file; NAME.conf beside it describes it (see README). The format
 * is what `qemu-img info` reads from the file; the extension only decides which
 * files are looked at, and ".iso" must be confirmed by an ISO 9660 signature. A
 * machine whose image, backing chain, data file or kernel leaves the directory is
 * listed as refused, with the reason, and can never be started. */
#ifndef QDESK_CATALOG_H
#define QDESK_CATALOG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CATALOG_NAME_MAX  64
#define CATALOG_CHAIN_MAX 8

enum catalog_media {
    CATALOG_MEDIA_DISK,  /* a hard disk image: booted through a qcow2 overlay */
    CATALOG_MEDIA_CDROM, /* an ISO: a read-only CD-ROM plus a blank data disk */
    CATALOG_MEDIA_NONE,  /* kernel and initrd only, from the sidecar */
};

struct catalog_layer {
    char path[PATH_MAX];
    char format[16];
};

struct catalog_machine {
    char name[CATALOG_NAME_MAX];
    enum catalog_media media;
    /* chain[0] is the image itself, then its backing files, top to bottom. */
    struct catalog_layer chain[CATALOG_CHAIN_MAX];
    size_t n_chain;
    uint64_t virtual_size; /* bytes the guest sees */
    uint64_t file_size;    /* bytes the image holds on the host */

    /* From NAME.conf; catalog_finish() fills unset keys with the defaults for the
     * machine's arch. */
    char description[256];
    char arch[16];         /* x86_64 | aarch64 */
    char firmware[8];      /* bios | uefi */
    char machine_type[16]; /* q35 | pc | virt */
    unsigned cpus;         /* default vCPUs; 0 = service default */
    unsigned sockets;      /* topology: vCPUs = sockets x cores x threads, cores */
    unsigned threads;      /*   following from the vCPUs; 0 = 1 */
    uint64_t memory_mb;    /* default memory; 0 = service default */
    char kernel[PATH_MAX]; /* direct boot; absolute, inside the directory */
    char initrd[PATH_MAX];
    char append[1024];
    unsigned gpus;              /* allowed GPU kinds: bit (1 << enum spec_gpu) */
    char disk_bus[8];           /* virtio | sata | ide */
    char video[16];             /* vga | virtio | bochs | qxl | cirrus | ramfb */
    unsigned long hugepages_kb; /* guest RAM from 2M or 1G hugepages; 0: none */
    bool pin_cpus;              /* each vCPU gets a host CPU of its own */
    char runner[64];            /* the [runner NAME] it runs on; "" the default */
    char kubevirt_disk[512];    /* on KubeVirt: "containerdisk:IMAGE" or "pvc:NAME" */

    char refused[512]; /* non-empty: the machine cannot be started, and why */
};

struct catalog {
    char dir[PATH_MAX]; /* absolute, symbolic links resolved */
    struct catalog_machine *machines;
    size_t n;
};

/* Scans dir, running qemu_img (an absolute path) on every image. Returns a newly
 * allocated catalogue sorted by name (free with catalog_free()), or NULL with err
 * when dir cannot be read. Problems with single machines do not fail the load:
 * they are recorded in the machine's refused field. */
struct catalog *catalog_load(const char *dir, const char *qemu_img, char *err,
                             size_t errsz);

/* Returns the machine called name, or NULL. */
const struct catalog_machine *catalog_find(const struct catalog *c, const char *name);

/* Returns the machine called name, or NULL with err saying it is not in the
 * catalogue. */
const struct catalog_machine *catalog_lookup(const struct catalog *c, const char *name,
                                             char *err, size_t errsz);

void catalog_free(struct catalog *c);

/* Returns m as a JSON object (name, format, media, sizes, arch, firmware, machine,
 * description, cpus, memory_mb, gpus, refused) — a new reference. The CLI's --json
 * output and the HTTP API share it. */
struct json_t;
struct json_t *catalog_machine_json(const struct catalog_machine *m);

/* Applies one sidecar key to m; dir is the catalogue directory that relative
 * kernel/initrd paths are read from. Returns 0, or -1 with err naming the key and
 * what is allowed. */
int catalog_set(struct catalog_machine *m, const char *dir, const char *key,
                const char *value, char *err, size_t errsz);

/* Completes a machine once its image facts and sidecar keys are set: fills what
 * the sidecar left unset with the defaults of its arch (x86_64: q35, bios, vga;
 * aarch64: virt, uefi, virtio) and checks the keys against each other. Returns 0,
 * or -1 with err. */
int catalog_finish(struct catalog_machine *m, char *err, size_t errsz);

/* Returns 0 when name is a valid machine or session name ([A-Za-z0-9._-], 1..63
 * characters, not starting with '.' or '-'), else -1. */
int catalog_name_ok(const char *name);

#endif

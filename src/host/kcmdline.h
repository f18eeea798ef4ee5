/* kcmdline: the kernel command line and module configuration a host needs before it
 * can give GPUs to guests, for the devices the operator chooses (qdesk host cmdline
 * --gpu ADDR...), and writing it into the boot configuration (--apply).
 *
 * What it asks for depends on the CPU vendor and on each device: the IOMMU on
 * (intel_iommu=on or amd_iommu=on) in passthrough mode (iommu=pt), kvm.ignore_msrs=1,
 * and per device
 *   a card to pass through      vfio-pci.ids=VVVV:DDDD,... for it and the other
 *                               endpoints of its IOMMU group (bridges skipped),
 *                               softdeps, and the vfio modules in the initramfs, so
 *                               vfio-pci claims them before their drivers (amdgpu,
 *                               nouveau, i915 load from the initramfs too)
 *   an SR-IOV GPU (PF or a VF)  i915.enable_guc=3 i915.max_vfs=N (xe.max_vfs=N for
 *                               xe); qdesk binds the VFs itself at session start
 *   a GVT-g capable Intel iGPU  i915.enable_gvt=1 and the kvmgt and mdev modules. */
#ifndef QDESK_HOST_KCMDLINE_H
#define QDESK_HOST_KCMDLINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#define KCMDLINE_MAX 32

#define KCMDLINE_GRUB      "/etc/default/grub"
#define KCMDLINE_MODULES   "/etc/modules-load.d/vfio.conf"
#define KCMDLINE_MODPROBE  "/etc/modprobe.d/vfio.conf"
#define KCMDLINE_INITRAMFS "/etc/initramfs-tools/modules"

struct kcmdline_plan {
    char vendor[16];                /* GenuineIntel, AuthenticAMD */
    char params[KCMDLINE_MAX][256]; /* kernel parameters, in order */
    size_t n_params;
    char modules[KCMDLINE_MAX][32]; /* lines of KCMDLINE_MODULES */
    size_t n_modules;
    char modprobe[KCMDLINE_MAX][128]; /* lines of KCMDLINE_MODPROBE */
    size_t n_modprobe;
    char initramfs[KCMDLINE_MAX][32]; /* lines of KCMDLINE_INITRAMFS */
    size_t n_initramfs;
    char notes[KCMDLINE_MAX][512]; /* what the operator should know */
    size_t n_notes;
};

/* Plans for the devices at addrs (PCI addresses; "01:00.0" works). Returns 0, or -1
 * with err naming an address that is not a device of this host. */
int kcmdline_plan(const char *sysroot, char *const *addrs, size_t n,
                  struct kcmdline_plan *p, char *err, size_t errsz);

/* Prints the plan: the parameters, the files' lines, the notes and the commands that
 * make it take effect. */
void kcmdline_print(const struct kcmdline_plan *p, FILE *f);

/* {"vendor", "params": [...], "cmdline": "...", "modules": [...], "modprobe": [...],
 * "initramfs": [...], "notes": [...], "commands": [...]}: a new reference. */
json_t *kcmdline_plan_json(const struct kcmdline_plan *p);

/* Merges the plan's parameters into the command line current: a parameter already
 * there with the same value stays, one with another value is replaced (lists of
 * vfio-pci.ids are joined), the others are appended. Never duplicates a parameter.
 * Returns 0, or -1 when out is too small. */
int kcmdline_merge(const char *current, const struct kcmdline_plan *p, char *out,
                   size_t outsz);

/* Writes the plan into sysroot's boot configuration: GRUB_CMDLINE_LINUX_DEFAULT in
 * KCMDLINE_GRUB and the lines missing from KCMDLINE_MODULES, KCMDLINE_MODPROBE and
 * KCMDLINE_INITRAMFS. Each file it changes that existed is first copied to
 * FILE.qdesk-YYYYMMDD-HHMMSS (time now in UTC; a name modprobe, systemd and GRUB do
 * not read). A second run changes nothing. Runs no command: msg tells what changed,
 * where the old files are and what to run (update-initramfs -u, update-grub, reboot).
 * Returns 0, or -1 with err. */
int kcmdline_apply(const char *sysroot, const struct kcmdline_plan *p, time_t now,
                   char *msg, size_t msgsz, char *err, size_t errsz);

/* Finds parameter key in a kernel command line; writes its value ("" for a bare flag
 * such as nointremap) into value. Returns true when present (the last one counts). */
bool kcmdline_get(const char *cmdline, const char *key, char *value, size_t valuesz);

/* Reads sysroot's /proc/cmdline. Returns 0, or -errno (out is then ""). */
int kcmdline_read(const char *sysroot, char *out, size_t outsz);

#endif

/* hostw: the one place qdesk changes the host.
 *
 * Every privileged change — sysfs attributes (driver_override, bind/unbind,
 * drivers_probe, reset, sriov_numvfs, mdev create/remove, nr_hugepages), boot
 * configuration files, ownership of device nodes — goes through these few functions,
 * so there is one small, audited step that needs root (Firecracker's habit). Each
 * change is logged as the shell command that would make it ("echo vfio-pci >
 * /sys/bus/pci/devices/0000:01:00.0/driver_override"), so an operator can read or
 * replay what qdesk did.
 *
 * Paths are the kernel's own ("/sys/..."), joined to a sysroot. On a captured tree
 * the writes really go to the tree's files; no kernel reacts, so a test may install
 * an observer that plays the kernel's part (creating the driver link after a bind,
 * refusing a value the kernel would refuse).
 * Tests can also record the exact sequence of changes and compare it as text. */
#ifndef QDESK_HOST_HOSTW_H
#define QDESK_HOST_HOSTW_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Writes value and a newline to the existing attribute sysroot + path with one
 * write(), as `echo VALUE > PATH` does (an empty value clears attributes such as
 * driver_override). Never creates files. Returns 0, or -errno with err naming the
 * command and the reason. */
int hostw_write(const char *sysroot, const char *path, const char *value, char *err,
                size_t errsz);

/* Replaces the file sysroot + path with len bytes of data atomically (temporary file,
 * fsync, rename), creating missing parent directories. Returns 0, or -errno with err. */
int hostw_replace_file(const char *sysroot, const char *path, const char *data,
                       size_t len, mode_t mode, char *err, size_t errsz);

/* Copies the regular file sysroot + src to the new file sysroot + dst (a backup).
 * Returns 0, or -errno with err. */
int hostw_copy_file(const char *sysroot, const char *src, const char *dst, char *err,
                    size_t errsz);

/* Changes the owner of sysroot + path (a /dev/vfio/N group node for the unprivileged
 * QEMU user). Returns 0, or -errno with err. */
int hostw_chown(const char *sysroot, const char *path, uid_t uid, gid_t gid, char *err,
                size_t errsz);

/* Recording for tests: hostw_record(true) starts a new record (forgetting the last),
 * false stops. hostw_recorded() returns every change made while recording, one
 * command per line in order ("echo 0000:01:00.0 > /sys/bus/pci/drivers_probe",
 * "write /etc/default/grub", "cp /etc/default/grub /etc/default/grub.qdesk-...",
 * "chown 64055:64055 /dev/vfio/2"), failed attempts included; the string belongs to
 * hostw and stays valid until the next change or hostw_record() call. */
void hostw_record(bool on);
const char *hostw_recorded(void);

/* Installs fn to be called after every successful change with the sysroot, the
 * kernel path and the value written (NULL for files and ownership); NULL removes it.
 * Tests use it to play the kernel, whose attributes can refuse a value: fn returns 0,
 * or -errno to make the change fail with that error (restoring what the attribute
 * held is then its business). */
typedef int (*hostw_observer)(const char *sysroot, const char *path, const char *value,
                              void *data);
void hostw_observe(hostw_observer fn, void *data);

#endif

/* accel: whether KVM can run ordinary guests on this host. */
#ifndef QDESK_QEMU_ACCEL_H
#define QDESK_QEMU_ACCEL_H

#include <stdbool.h>
#include <stddef.h>

/* Returns true when sysroot's /dev/kvm opens read-write and, on x86, the CPU
 * advertises vmx or svm in /proc/cpuinfo (a /dev/kvm without them cannot run
 * ordinary guests). Otherwise returns false with the reason in why. */
bool accel_kvm_usable(const char *sysroot, const char *host_arch, char *why,
                      size_t whysz);

/* Returns true when the user QEMU runs as (a name, [qemu] qemu_user) may open
 * sysroot's /dev/kvm for reading and writing, judged by the device's owner, group
 * and mode against the user's uid and every group it is in. Otherwise returns false
 * with the reason, and the fix, in why. */
bool accel_kvm_allows_user(const char *sysroot, const char *user, char *why,
                           size_t whysz);

#endif

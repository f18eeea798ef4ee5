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

#endif

#include "qemu/accel.h"

#include "host/cpu.h"
#include "util/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool accel_kvm_usable(const char *sysroot, const char *host_arch, char *why, size_t whysz)
{
    char path[PATH_MAX];
    fs_join(path, sizeof(path), sysroot, "/dev/kvm");
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whysz, "%s cannot be opened (%s)", path, strerror(errno));
        return false;
    }
    close(fd);
    if (strcmp(host_arch, "x86_64") != 0)
        return true;
    bool ok = cpu_has_flag(sysroot, "vmx") || cpu_has_flag(sysroot, "svm");
    if (!ok)
        snprintf(why, whysz,
                 "/dev/kvm opens but the CPU has no vmx or svm flag, so KVM cannot run "
                 "ordinary guests (enable virtualisation in the firmware, or nested "
                 "virtualisation on the hypervisor)");
    return ok;
}

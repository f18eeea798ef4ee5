#include "qemu/accel.h"

#include "host/cpu.h"
#include "util/fs.h"
#include "util/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

bool accel_kvm_allows_user(const char *sysroot, const char *user, char *why, size_t whysz)
{
    char path[PATH_MAX], err[256];
    uid_t uid;
    gid_t gid, groups[PROC_GROUPS_MAX];
    struct stat st;
    fs_join(path, sizeof(path), sysroot, "/dev/kvm");
    if (proc_lookup_user(user, &uid, &gid, err, sizeof(err)) < 0) {
        snprintf(why, whysz, "[qemu] qemu_user: %s", err);
        return false;
    }
    if (stat(path, &st) < 0) {
        snprintf(why, whysz, "%s cannot be read (%s)", path, strerror(errno));
        return false;
    }
    int n = proc_user_groups(uid, gid, groups, PROC_GROUPS_MAX);
    if (n >= 0 && proc_may_read_write(&st, uid, groups, (size_t)n))
        return true;
    struct group gr, *found = NULL;
    char buf[4096], group[64];
    if (getgrgid_r(st.st_gid, &gr, buf, sizeof(buf), &found) == 0 && found)
        snprintf(group, sizeof(group), "%s", found->gr_name);
    else
        snprintf(group, sizeof(group), "%u", (unsigned)st.st_gid);
    if ((st.st_mode & (S_IRGRP | S_IWGRP)) == (S_IRGRP | S_IWGRP))
        snprintf(why, whysz,
                 "QEMU's user %s ([qemu] qemu_user) may not open %s (mode %03o, group "
                 "%s); add it to that group: usermod -aG %s %s",
                 user, path, (unsigned)(st.st_mode & 0777), group, group, user);
    else
        snprintf(why, whysz,
                 "QEMU's user %s ([qemu] qemu_user) may not open %s (mode %03o, group "
                 "%s); give a group read and write access to it (Debian's udev rule "
                 "makes it group kvm, mode 660) and add the user to that group",
                 user, path, (unsigned)(st.st_mode & 0777), group);
    return false;
}

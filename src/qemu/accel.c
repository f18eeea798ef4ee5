#include "qemu/accel.h"

#include "util/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Returns true when the first "flags" line of cpuinfo lists flag as a word (the
 * first CPU speaks for all). */
static bool cpu_has_flag(const char *cpuinfo, const char *flag)
{
    const char *line = cpuinfo;
    while (line && strncmp(line, "flags", 5) != 0) {
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    if (!line)
        return false;
    size_t len = strcspn(line, "\n");
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return false;
    char flags[8192];
    snprintf(flags, sizeof(flags), "%.*s", (int)(line + len - colon - 1), colon + 1);
    for (char *save, *tok = strtok_r(flags, " \t", &save); tok;
         tok = strtok_r(NULL, " \t", &save))
        if (strcmp(tok, flag) == 0)
            return true;
    return false;
}

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
    fs_join(path, sizeof(path), sysroot, "/proc/cpuinfo");
    char *cpuinfo = fs_read_file(path, 16 << 20, NULL);
    if (!cpuinfo) {
        snprintf(why, whysz, "%s cannot be read (%s)", path, strerror(errno));
        return false;
    }
    bool ok = cpu_has_flag(cpuinfo, "vmx") || cpu_has_flag(cpuinfo, "svm");
    free(cpuinfo);
    if (!ok)
        snprintf(why, whysz,
                 "/dev/kvm opens but the CPU has no vmx or svm flag, so KVM cannot run "
                 "ordinary guests (enable virtualisation in the firmware, or nested "
                 "virtualisation on the hypervisor)");
    return ok;
}

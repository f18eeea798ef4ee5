#include "host/load.h"

#include "util/fs.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int load_average(const char *sysroot, double load[3])
{
    char path[PATH_MAX], line[128];
    double l[3];
    if (fs_join(path, sizeof(path), sysroot, "/proc/loadavg") < 0 ||
        fs_read_line(path, line, sizeof(line)) < 0 ||
        sscanf(line, "%lf %lf %lf", &l[0], &l[1], &l[2]) != 3)
        return -1;
    memcpy(load, l, sizeof(l));
    return 0;
}

long long load_meminfo_mb(const char *sysroot, const char *field)
{
    char path[PATH_MAX], key[64];
    if (fs_join(path, sizeof(path), sysroot, "/proc/meminfo") < 0)
        return -1;
    char *info = fs_read_file(path, 1 << 16, NULL);
    if (!info)
        return -1;
    snprintf(key, sizeof(key), "%s:", field);
    long long kb = -1;
    for (const char *line = info; line && kb < 0;
         line = strchr(line, '\n'), line = line ? line + 1 : NULL)
        if (!strncmp(line, key, strlen(key)))
            kb = strtoll(line + strlen(key), NULL, 10);
    free(info);
    return kb < 0 ? -1 : kb / 1024;
}

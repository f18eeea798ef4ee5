/* load: how busy the host is — load average and memory — read under a sysroot. */
#ifndef QDESK_HOST_LOAD_H
#define QDESK_HOST_LOAD_H

/* Reads the 1, 5 and 15 minute load averages. Returns 0, or -1 (load untouched). */
int load_average(const char *sysroot, double load[3]);

/* Returns a /proc/meminfo field ("MemTotal", "MemAvailable") in MiB, or -1. */
long long load_meminfo_mb(const char *sysroot, const char *field);

#endif

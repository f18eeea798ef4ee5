#include "host/hugepages.h"

#include "host/hostw.h"
#include "host/sysfs.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const pool_dir = "/sys/kernel/mm/hugepages/hugepages-%lukB/%s";

void hugepages_size_name(unsigned long size_kb, char *out, size_t outsz)
{
    if (size_kb >= 1048576 && size_kb % 1048576 == 0)
        snprintf(out, outsz, "%luG", size_kb / 1048576);
    else if (size_kb >= 1024 && size_kb % 1024 == 0)
        snprintf(out, outsz, "%luM", size_kb / 1024);
    else
        snprintf(out, outsz, "%luK", size_kb);
}

int hugepages_pools(const char *sysroot, struct hugepages_pool *out, size_t max,
                    char *err, size_t errsz)
{
    char **names = sysfs_list(sysroot, true, "/sys/kernel/mm/hugepages");
    if (!names) {
        snprintf(err, errsz, "cannot list /sys/kernel/mm/hugepages: %s", strerror(errno));
        return -1;
    }
    int n = 0;
    for (char **p = names; *p; p++) {
        unsigned long kb;
        char tail[8];
        if (sscanf(*p, "hugepages-%lukB%7s", &kb, tail) != 1)
            continue;
        if ((size_t)n < max) {
            struct hugepages_pool *h = &out[n];
            h->size_kb = kb;
            h->nr = (unsigned long)sysfs_read_num(sysroot, 0, 10, pool_dir, kb,
                                                  "nr_hugepages");
            h->free = (unsigned long)sysfs_read_num(sysroot, 0, 10, pool_dir, kb,
                                                    "free_hugepages");
            h->resv = (unsigned long)sysfs_read_num(sysroot, 0, 10, pool_dir, kb,
                                                    "resv_hugepages");
            h->surplus = (unsigned long)sysfs_read_num(sysroot, 0, 10, pool_dir, kb,
                                                       "surplus_hugepages");
        }
        n++;
    }
    sysfs_names_free(names);
    return n;
}

unsigned long hugepages_count(uint64_t memory_mb, unsigned long size_kb)
{
    uint64_t kb = memory_mb * 1024;
    return size_kb ? (unsigned long)((kb + size_kb - 1) / size_kb) : 0;
}

static int set_nr(const char *sysroot, unsigned long size_kb, unsigned long nr, char *err,
                  size_t errsz)
{
    char path[PATH_MAX], value[32];
    snprintf(path, sizeof(path), pool_dir, size_kb, "nr_hugepages");
    snprintf(value, sizeof(value), "%lu", nr);
    return hostw_write(sysroot, path, value, err, errsz);
}

int hugepages_reserve(const char *sysroot, unsigned long size_kb, unsigned long count,
                      unsigned long promised, unsigned long *grown, char *err,
                      size_t errsz)
{
    char size[16];
    hugepages_size_name(size_kb, size, sizeof(size));
    *grown = 0;
    long long before = sysfs_read_num(sysroot, -1, 10, pool_dir, size_kb, "nr_hugepages");
    if (before < 0) {
        struct hugepages_pool pools[8];
        int n = hugepages_pools(sysroot, pools, 8, err, errsz);
        int len =
            snprintf(err, errsz, "hugepages: this host has no %s pages (it has", size);
        for (int i = 0; i < n && i < 8 && len >= 0 && (size_t)len < errsz; i++) {
            char s[16];
            hugepages_size_name(pools[i].size_kb, s, sizeof(s));
            len += snprintf(err + len, errsz - (size_t)len, "%s %s", i ? "," : "", s);
        }
        if (len >= 0 && (size_t)len < errsz)
            snprintf(err + len, errsz - (size_t)len, "%s)", n > 0 ? "" : " none");
        return -1;
    }
    if (count == 0)
        return 0;
    /* Pages already in the pool that no other reservation has promised (and that
     * nothing else has taken) are used first: 1G pages are had by reserving them
     * at boot. The pool grows by what is missing. */
    long long nfree = sysfs_read_num(sysroot, 0, 10, pool_dir, size_kb, "free_hugepages");
    long long resv = sysfs_read_num(sysroot, 0, 10, pool_dir, size_kb, "resv_hugepages");
    long long spare = before - (long long)promised;
    if (nfree - resv < spare)
        spare = nfree - resv;
    unsigned long take = spare <= 0                     ? 0
                         : (unsigned long)spare < count ? (unsigned long)spare
                                                        : count;
    unsigned long grow = count - take;
    if (grow == 0)
        return 0;
    if (set_nr(sysroot, size_kb, (unsigned long)before + grow, err, errsz) < 0)
        return -1;
    long long after = sysfs_read_num(sysroot, -1, 10, pool_dir, size_kb, "nr_hugepages");
    nfree = sysfs_read_num(sysroot, -1, 10, pool_dir, size_kb, "free_hugepages");
    if (after < before + (long long)grow || nfree - resv < (long long)count) {
        char ignored[256];
        set_nr(sysroot, size_kb, (unsigned long)before, ignored, sizeof(ignored));
        long long got = after - before < (long long)grow ? after - before
                                                         : nfree - resv - (long long)take;
        snprintf(err, errsz,
                 "hugepages: %lu %s pages are needed, %lu were free in the pool and the "
                 "kernel found only %lld of the %lu more it was asked for (memory is "
                 "fragmented; reserve them at boot with the kernel parameters "
                 "hugepagesz=%s hugepages=N)",
                 count, size, take, got < 0 ? 0 : got, grow, size);
        return -1;
    }
    *grown = grow;
    return 0;
}

int hugepages_release(const char *sysroot, unsigned long size_kb, unsigned long count,
                      char *err, size_t errsz)
{
    long long nr = sysfs_read_num(sysroot, -1, 10, pool_dir, size_kb, "nr_hugepages");
    if (nr < 0) {
        snprintf(err, errsz, "hugepages: this host has no %lu kB pages", size_kb);
        return -1;
    }
    if (count == 0)
        return 0;
    unsigned long left = (unsigned long)nr > count ? (unsigned long)nr - count : 0;
    return set_nr(sysroot, size_kb, left, err, errsz) < 0 ? -1 : 0;
}

/* sysfs: reading kernel attribute files and links below a sysroot.
 *
 * Every path is the kernel's own ("/sys/bus/pci/devices/%s/class"), formatted
 * printf-style and joined to the sysroot ("/" on a real host, a captured tree in the
 * tests), so callers never build sysroot paths by hand. Reading only: writes go
 * through hostw. */
#ifndef QDESK_HOST_SYSFS_H
#define QDESK_HOST_SYSFS_H

#include <stdbool.h>
#include <stddef.h>

#define SYSFS_FMT(n) __attribute__((format(printf, n, n + 1)))

/* Writes sysroot + the formatted kernel path into out. Returns 0, or -ENAMETOOLONG. */
int sysfs_path(char *out, size_t outsz, const char *sysroot, const char *fmt, ...)
    SYSFS_FMT(4);

/* Reads the first line of an attribute into out, without the newline and trailing
 * blanks. Returns 0, or -errno (out is then ""). */
int sysfs_read(const char *sysroot, char *out, size_t outsz, const char *fmt, ...)
    SYSFS_FMT(4);

/* Reads an attribute holding a number ("0x10de", "7", "-1") in base (0: C rules).
 * Returns it, or dflt when the attribute is missing or not a number. */
long long sysfs_read_num(const char *sysroot, long long dflt, int base, const char *fmt,
                         ...) SYSFS_FMT(4);

/* Writes the last component of what a symbolic link resolves to into out (the driver
 * name of ".../driver", the group number of ".../iommu_group"). Returns 0, -EINVAL
 * when the path is not a link, or another -errno (out is then ""). */
int sysfs_link_name(const char *sysroot, char *out, size_t outsz, const char *fmt, ...)
    SYSFS_FMT(4);

/* Returns true when the formatted path exists below sysroot (links are followed). */
bool sysfs_exists(const char *sysroot, const char *fmt, ...) SYSFS_FMT(2);

/* Returns the names in a directory below sysroot that do not start with '.', sorted
 * with sysfs_name_cmp(), as a newly allocated NULL-terminated array (free it with
 * sysfs_names_free()), or NULL with errno set. A missing directory gives an empty
 * array when missing_ok. */
char **sysfs_list(const char *sysroot, bool missing_ok, const char *fmt, ...)
    SYSFS_FMT(3);
void sysfs_names_free(char **names);
size_t sysfs_names_count(char *const *names);

/* Orders names as people count: runs of digits compare as numbers ("renderD9" before
 * "renderD10", "1-1.2" before "1-1.10"). Not for hex names: PCI addresses sort with
 * strcmp(). */
int sysfs_name_cmp(const char *a, const char *b);

/* Parses a kernel cpulist ("0-3,8,10-11") into a bitmap of max bits (an array of
 * unsigned long). Returns the number of CPUs set, or -1 when s is not a cpulist or
 * names a CPU >= max. */
int sysfs_parse_cpulist(const char *s, unsigned long *bits, size_t max);

#endif

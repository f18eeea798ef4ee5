#include "host/sysfs.h"

#include "util/fs.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int vpath(char *out, size_t outsz, const char *sysroot, const char *fmt,
                 va_list ap)
{
    char rel[PATH_MAX];
    int n = vsnprintf(rel, sizeof(rel), fmt, ap);
    if (n < 0 || (size_t)n >= sizeof(rel))
        return -ENAMETOOLONG;
    return fs_join(out, outsz, sysroot, rel);
}

int sysfs_path(char *out, size_t outsz, const char *sysroot, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vpath(out, outsz, sysroot, fmt, ap);
    va_end(ap);
    return rc;
}

int sysfs_read(const char *sysroot, char *out, size_t outsz, const char *fmt, ...)
{
    char path[PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    int rc = vpath(path, sizeof(path), sysroot, fmt, ap);
    va_end(ap);
    out[0] = 0;
    if (rc == 0)
        rc = fs_read_line(path, out, outsz);
    if (rc < 0) {
        out[0] = 0;
        return rc;
    }
    size_t len = strlen(out);
    while (len > 0 && isspace((unsigned char)out[len - 1]))
        out[--len] = 0;
    return 0;
}

long long sysfs_read_num(const char *sysroot, long long dflt, int base, const char *fmt,
                         ...)
{
    char path[PATH_MAX], text[64];
    va_list ap;
    va_start(ap, fmt);
    int rc = vpath(path, sizeof(path), sysroot, fmt, ap);
    va_end(ap);
    if (rc < 0 || fs_read_line(path, text, sizeof(text)) < 0)
        return dflt;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, base);
    if (errno || end == text || (*end && !isspace((unsigned char)*end)))
        return dflt;
    return v;
}

int sysfs_link_name(const char *sysroot, char *out, size_t outsz, const char *fmt, ...)
{
    char path[PATH_MAX], target[PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    int rc = vpath(path, sizeof(path), sysroot, fmt, ap);
    va_end(ap);
    out[0] = 0;
    if (rc < 0)
        return rc;
    struct stat st;
    if (lstat(path, &st) < 0)
        return -errno;
    if (!S_ISLNK(st.st_mode))
        return -EINVAL;
    /* resolved, since the kernel's links are relative ("../../../0000:00:02.0") */
    if (!realpath(path, target))
        return -errno;
    const char *base = strrchr(target, '/');
    base = base ? base + 1 : target;
    if (strlen(base) >= outsz)
        return -ENAMETOOLONG;
    memcpy(out, base, strlen(base) + 1);
    return 0;
}

bool sysfs_exists(const char *sysroot, const char *fmt, ...)
{
    char path[PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    int rc = vpath(path, sizeof(path), sysroot, fmt, ap);
    va_end(ap);
    return rc == 0 && access(path, F_OK) == 0;
}

int sysfs_name_cmp(const char *a, const char *b)
{
    while (*a && *b) {
        if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
            char *ea, *eb;
            unsigned long long na = strtoull(a, &ea, 10), nb = strtoull(b, &eb, 10);
            if (na != nb)
                return na < nb ? -1 : 1;
            a = ea;
            b = eb;
            continue;
        }
        if (*a != *b)
            return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
        a++;
        b++;
    }
    return *a ? 1 : *b ? -1 : 0;
}

static int name_qsort_cmp(const void *a, const void *b)
{
    return sysfs_name_cmp(*(char *const *)a, *(char *const *)b);
}

void sysfs_names_free(char **names)
{
    if (!names)
        return;
    for (char **p = names; *p; p++)
        free(*p);
    free(names);
}

size_t sysfs_names_count(char *const *names)
{
    size_t n = 0;
    while (names && names[n])
        n++;
    return n;
}

char **sysfs_list(const char *sysroot, bool missing_ok, const char *fmt, ...)
{
    char path[PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    int rc = vpath(path, sizeof(path), sysroot, fmt, ap);
    va_end(ap);
    if (rc < 0) {
        errno = -rc;
        return NULL;
    }
    size_t n = 0, cap = 16;
    char **names = calloc(cap + 1, sizeof(*names));
    if (!names)
        return NULL;
    DIR *d = opendir(path);
    if (!d) {
        if (errno == ENOENT && missing_ok)
            return names;
        int saved = errno;
        free(names);
        errno = saved;
        return NULL;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            char **bigger = realloc(names, (cap * 2 + 1) * sizeof(*names));
            if (!bigger)
                goto fail;
            names = bigger;
            cap *= 2;
        }
        if (!(names[n] = strdup(e->d_name)))
            goto fail;
        names[++n] = NULL;
    }
    closedir(d);
    qsort(names, n, sizeof(*names), name_qsort_cmp);
    return names;
fail:
    closedir(d);
    sysfs_names_free(names);
    errno = ENOMEM;
    return NULL;
}

int sysfs_parse_cpulist(const char *s, unsigned long *bits, size_t max)
{
    const size_t w = sizeof(unsigned long) * CHAR_BIT;
    memset(bits, 0, (max + w - 1) / w * sizeof(unsigned long));
    int count = 0;
    while (*s && *s != '\n') {
        char *end;
        if (!isdigit((unsigned char)*s))
            return -1;
        unsigned long lo = strtoul(s, &end, 10), hi = lo;
        s = end;
        if (*s == '-') {
            if (!isdigit((unsigned char)s[1]))
                return -1;
            hi = strtoul(s + 1, &end, 10);
            s = end;
        }
        if (hi < lo || hi >= max)
            return -1;
        for (unsigned long c = lo; c <= hi; c++) {
            if (!(bits[c / w] & (1UL << (c % w))))
                count++;
            bits[c / w] |= 1UL << (c % w);
        }
        if (*s == ',')
            s++;
        else if (*s && *s != '\n')
            return -1;
    }
    return count;
}

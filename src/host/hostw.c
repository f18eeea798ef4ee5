#include "host/hostw.h"

#include "util/fs.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
    bool on;
    char *text;
    size_t len, cap;
    hostw_observer observer;
    void *observer_data;
} rec;

void hostw_record(bool on)
{
    rec.on = on;
    if (on) {
        free(rec.text);
        rec.text = NULL;
        rec.len = rec.cap = 0;
    }
}

const char *hostw_recorded(void)
{
    return rec.text ? rec.text : "";
}

void hostw_observe(hostw_observer fn, void *data)
{
    rec.observer = fn;
    rec.observer_data = data;
}

/* Logs one change (as a shell command) and appends it to the record. */
static void note(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(int rc, const char *fmt, ...)
{
    char line[PATH_MAX * 2 + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (rc < 0)
        log_warn("host: %s: %s", line, strerror(-rc));
    else
        log_info("host: %s", line);
    if (!rec.on)
        return;
    size_t n = strlen(line);
    if (rec.len + n + 2 > rec.cap) {
        size_t cap = (rec.len + n + 2) * 2;
        char *bigger = realloc(rec.text, cap);
        if (!bigger)
            return;
        rec.text = bigger;
        rec.cap = cap;
    }
    memcpy(rec.text + rec.len, line, n);
    rec.len += n;
    rec.text[rec.len++] = '\n';
    rec.text[rec.len] = 0;
}

/* The observer's say on a change that succeeded (rc 0); rc itself otherwise. */
static int observe(int rc, const char *sysroot, const char *path, const char *value)
{
    if (rc == 0 && rec.observer)
        return rec.observer(sysroot, path, value, rec.observer_data);
    return rc;
}

int hostw_write(const char *sysroot, const char *path, const char *value, char *err,
                size_t errsz)
{
    char full[PATH_MAX], buf[512];
    int n = snprintf(buf, sizeof(buf), "%s\n", value);
    int rc = 0;
    if (n < 0 || (size_t)n >= sizeof(buf))
        rc = -EINVAL;
    else if (fs_join(full, sizeof(full), sysroot, path) < 0)
        rc = -ENAMETOOLONG;
    if (rc == 0) {
        int fd = open(full, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (fd < 0)
            rc = -errno;
        else {
            ssize_t w;
            do
                w = write(fd, buf, (size_t)n);
            while (w < 0 && errno == EINTR);
            if (w < 0)
                rc = -errno;
            else if (w != n)
                rc = -EIO;
            if (close(fd) < 0 && rc == 0 && errno != EINTR)
                rc = -errno;
        }
    }
    rc = observe(rc, sysroot, path, value);
    char cmd[PATH_MAX + 600];
    snprintf(cmd, sizeof(cmd), "echo %s%s> %s", value, value[0] ? " " : "", path);
    note(rc, "%s", cmd);
    if (rc < 0) {
        snprintf(err, errsz, "%s: %s%s", cmd, strerror(-rc),
                 rc == -EACCES || rc == -EPERM ? " (qdesk must run as root to do this)"
                                               : "");
        return rc;
    }
    return 0;
}

int hostw_replace_file(const char *sysroot, const char *path, const char *data,
                       size_t len, mode_t mode, char *err, size_t errsz)
{
    char full[PATH_MAX], dir[PATH_MAX];
    int rc = fs_join(full, sizeof(full), sysroot, path);
    if (rc == 0) {
        snprintf(dir, sizeof(dir), "%s", full);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = 0;
            rc = fs_mkdir_p(dir, 0755);
        }
    }
    if (rc == 0)
        rc = fs_write_file(full, data, len, mode);
    rc = observe(rc, sysroot, path, NULL);
    note(rc, "write %s", path);
    if (rc < 0) {
        snprintf(err, errsz, "writing %s: %s", full, strerror(-rc));
        return rc;
    }
    return 0;
}

int hostw_copy_file(const char *sysroot, const char *src, const char *dst, char *err,
                    size_t errsz)
{
    char fsrc[PATH_MAX], fdst[PATH_MAX];
    int rc = fs_join(fsrc, sizeof(fsrc), sysroot, src);
    if (rc == 0)
        rc = fs_join(fdst, sizeof(fdst), sysroot, dst);
    if (rc == 0)
        rc = fs_copy_file(fsrc, fdst, 0644);
    rc = observe(rc, sysroot, dst, NULL);
    note(rc, "cp %s %s", src, dst);
    if (rc < 0) {
        snprintf(err, errsz, "copying %s to %s: %s", src, dst, strerror(-rc));
        return rc;
    }
    return 0;
}

int hostw_chown(const char *sysroot, const char *path, uid_t uid, gid_t gid, char *err,
                size_t errsz)
{
    char full[PATH_MAX];
    int rc = fs_join(full, sizeof(full), sysroot, path);
    if (rc == 0 && chown(full, uid, gid) < 0)
        rc = -errno;
    rc = observe(rc, sysroot, path, NULL);
    note(rc, "chown %u:%u %s", (unsigned)uid, (unsigned)gid, path);
    if (rc < 0) {
        snprintf(err, errsz, "chown %u:%u %s: %s", (unsigned)uid, (unsigned)gid, path,
                 strerror(-rc));
        return rc;
    }
    return 0;
}

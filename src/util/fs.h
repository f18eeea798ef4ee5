/* fs: small file-system helpers with explicit sizes and errno-style results. */
#ifndef QDESK_UTIL_FS_H
#define QDESK_UTIL_FS_H

#include <stddef.h>
#include <sys/types.h>

/* Reads a whole file of at most max bytes. Returns a newly allocated buffer with a
 * terminating NUL (the caller frees it with free()) and its length in *len (may be
 * NULL), or NULL with errno set (EFBIG when the file is larger than max). */
char *fs_read_file(const char *path, size_t max, size_t *len);

/* Reads the first line of a small file such as a sysfs attribute into out, without
 * the trailing newline. Returns 0, or -errno. */
int fs_read_line(const char *path, char *out, size_t outsz);

/* Writes all len bytes of data to fd, resuming after short writes and EINTR.
 * Returns 0, or -errno (-EPIPE when the reader of a pipe went away). */
int fs_write_all(int fd, const void *data, size_t len);

/* Replaces path atomically with data (a temporary file in the same directory,
 * fsync, rename). Returns 0, or -errno. */
int fs_write_file(const char *path, const void *data, size_t len, mode_t mode);

/* Creates path and its missing parents. Returns 0, or -errno. */
int fs_mkdir_p(const char *path, mode_t mode);

/* Removes path and everything below it without following symbolic links.
 * A missing path is not an error. Returns 0, or -errno. */
int fs_remove_tree(const char *path);

/* Copies the regular file src to a new file dst (which must not exist).
 * Returns 0, or -errno; a partial dst is removed. */
int fs_copy_file(const char *src, const char *dst, mode_t mode);

/* Writes root followed by rel into out ("" or "/" as root means rel itself).
 * Returns 0, or -ENAMETOOLONG. */
int fs_join(char *out, size_t outsz, const char *root, const char *rel);

/* Returns 1 when path, with every symbolic link resolved, lies inside dir (also
 * resolved), 0 when it does not, -errno when either cannot be resolved. */
int fs_path_inside(const char *dir, const char *path);

/* Returns 1 when path exists, else 0. */
int fs_exists(const char *path);

#endif

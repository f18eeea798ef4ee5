/* ini: "key = value" files with optional [section] headers and # or ; comments. */
#ifndef QDESK_UTIL_INI_H
#define QDESK_UTIL_INI_H

#include <stddef.h>

struct ini_entry {
    char *section; /* "" before the first [section] header */
    char *key;
    char *value; /* surrounding blanks removed */
    int line;
};

struct ini {
    char *name; /* the file name, for messages */
    struct ini_entry *entries;
    size_t n;
};

/* Parses text; name is used in error messages ("NAME:LINE: ..."). Returns a newly
 * allocated ini (free with ini_free()) or NULL with the reason in err. */
struct ini *ini_parse(const char *text, const char *name, char *err, size_t errsz);

/* Reads and parses the file at path (at most 1 MiB). */
struct ini *ini_load(const char *path, char *err, size_t errsz);

/* Returns the value of the last entry for section/key, or NULL. */
const char *ini_get(const struct ini *ini, const char *section, const char *key);

void ini_free(struct ini *ini);

#endif

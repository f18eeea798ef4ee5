#include "util/ini.h"

#include "util/fs.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    return s;
}

static int add_entry(struct ini *ini, const char *section, const char *key,
                     const char *value, int line)
{
    struct ini_entry *e = realloc(ini->entries, (ini->n + 1) * sizeof(*e));
    if (!e)
        return -1;
    ini->entries = e;
    e = &ini->entries[ini->n];
    e->section = strdup(section);
    e->key = strdup(key);
    e->value = strdup(value);
    e->line = line;
    ini->n++;
    return e->section && e->key && e->value ? 0 : -1;
}

struct ini *ini_parse(const char *text, const char *name, char *err, size_t errsz)
{
    struct ini *ini = calloc(1, sizeof(*ini));
    char *copy = strdup(text);
    char section[128] = "";
    if (!ini || !copy || !(ini->name = strdup(name)))
        goto nomem;

    int line = 0;
    char *save = NULL;
    /* strtok_r would merge empty lines and break line numbers: split by hand. */
    for (char *p = copy; p; p = save) {
        save = strchr(p, '\n');
        if (save)
            *save++ = 0;
        line++;
        char *s = trim(p);
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end || end[1]) {
                snprintf(err, errsz, "%s:%d: a section header must look like [name]",
                         name, line);
                goto fail;
            }
            *end = 0;
            if (snprintf(section, sizeof(section), "%s", trim(s + 1)) >=
                (int)sizeof(section)) {
                snprintf(err, errsz, "%s:%d: section name too long", name, line);
                goto fail;
            }
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errsz, "%s:%d: expected 'key = value'", name, line);
            goto fail;
        }
        *eq = 0;
        char *key = trim(s);
        if (!*key) {
            snprintf(err, errsz, "%s:%d: missing key before '='", name, line);
            goto fail;
        }
        if (add_entry(ini, section, key, trim(eq + 1), line) < 0)
            goto nomem;
    }
    free(copy);
    return ini;

nomem:
    snprintf(err, errsz, "%s: out of memory", name);
fail:
    free(copy);
    ini_free(ini);
    return NULL;
}

struct ini *ini_load(const char *path, char *err, size_t errsz)
{
    char *text = fs_read_file(path, 1 << 20, NULL);
    if (!text) {
        snprintf(err, errsz, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct ini *ini = ini_parse(text, path, err, errsz);
    free(text);
    return ini;
}

const char *ini_get(const struct ini *ini, const char *section, const char *key)
{
    for (size_t i = ini->n; i-- > 0;)
        if (strcmp(ini->entries[i].section, section) == 0 &&
            strcmp(ini->entries[i].key, key) == 0)
            return ini->entries[i].value;
    return NULL;
}

void ini_free(struct ini *ini)
{
    if (!ini)
        return;
    for (size_t i = 0; i < ini->n; i++) {
        free(ini->entries[i].section);
        free(ini->entries[i].key);
        free(ini->entries[i].value);
    }
    free(ini->entries);
    free(ini->name);
    free(ini);
}

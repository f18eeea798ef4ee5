#include "util/argv.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void argv_init(struct argv *a)
{
    memset(a, 0, sizeof(*a));
}

void argv_free(struct argv *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    argv_init(a);
}

void argv_fail(struct argv *a, const char *fmt, ...)
{
    if (a->err[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->err, sizeof(a->err), fmt, ap);
    va_end(ap);
}

int argv_status(const struct argv *a)
{
    return a->err[0] ? -1 : 0;
}

/* Takes ownership of word (which may be NULL after a failed allocation). */
static void argv_take(struct argv *a, char *word)
{
    if (!word) {
        argv_fail(a, "out of memory building a command line");
        return;
    }
    if (a->n + 2 > a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 32;
        char **v = realloc(a->v, cap * sizeof(*v));
        if (!v) {
            free(word);
            argv_fail(a, "out of memory building a command line");
            return;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = word;
    a->v[a->n] = NULL;
}

void argv_add(struct argv *a, const char *word)
{
    argv_take(a, strdup(word));
}

void argv_addf(struct argv *a, const char *fmt, ...)
{
    char *word = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&word, fmt, ap) < 0)
        word = NULL;
    va_end(ap);
    argv_take(a, word);
}

static bool shell_safe(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("_-=,./:@+%", c) != NULL;
}

/* Appends s to the string in out (of size outsz). Returns 0, or -1 when it does not
 * fit (out is then unchanged). */
static int append(char *out, size_t outsz, const char *s)
{
    size_t len = strlen(out), n = strlen(s);
    if (len + n + 1 > outsz)
        return -1;
    memcpy(out + len, s, n + 1);
    return 0;
}

int argv_shell_quote(const char *s, char *out, size_t outsz)
{
    size_t len = strlen(out);
    bool plain = *s != 0;
    for (const char *p = s; *p; p++)
        plain = plain && shell_safe(*p);
    if (plain)
        return append(out, outsz, s);
    /* 'it'\''s' */
    if (len + 1 >= outsz)
        return -1;
    out[len++] = '\'';
    for (const char *p = s; *p; p++) {
        const char *piece = *p == '\'' ? "'\\''" : NULL;
        size_t plen = piece ? 4 : 1;
        if (len + plen + 2 > outsz)
            return -1;
        if (piece)
            memcpy(out + len, piece, plen);
        else
            out[len] = *p;
        len += plen;
    }
    out[len++] = '\'';
    out[len] = 0;
    return 0;
}

char *argv_format(const struct argv *a)
{
    size_t size = 64;
    for (size_t i = 0; i < a->n; i++)
        size += strlen(a->v[i]) * 4 + 8;
    char *out = calloc(1, size);
    if (!out)
        return NULL;
    int rc = 0;
    for (size_t i = 0; i < a->n && rc == 0; i++) {
        /* an option starts a line of its own; its value follows it */
        if (i > 0)
            rc = append(out, size, a->v[i][0] == '-' ? " \\\n" : " ");
        if (rc == 0)
            rc = argv_shell_quote(a->v[i], out, size);
    }
    if (rc < 0 || append(out, size, "\n") < 0) {
        free(out);
        return NULL;
    }
    return out;
}

static void qopt_append(struct qopt *o, const char *s, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 64;
        while (cap < o->len + n + 1)
            cap *= 2;
        char *p = realloc(o->s, cap);
        if (!p) {
            snprintf(o->err, sizeof(o->err), "out of memory building an option");
            return;
        }
        o->s = p;
        o->cap = cap;
    }
    memcpy(o->s + o->len, s, n);
    o->len += n;
    o->s[o->len] = 0;
}

int qopt_bad_char(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return *p;
    return 0;
}

void qopt_word(struct qopt *o, const char *word)
{
    if (o->len)
        qopt_append(o, ",", 1);
    qopt_append(o, word, strlen(word));
}

/* Appends value with every comma doubled, or records an error naming what when the
 * value holds a character QEMU cannot carry. */
static void qopt_escaped(struct qopt *o, const char *what, const char *value)
{
    int bad = qopt_bad_char(value);
    if (bad) {
        if (!o->err[0])
            snprintf(o->err, sizeof(o->err),
                     "%s: the value contains control character 0x%02x, which QEMU "
                     "cannot carry in an option",
                     what, bad);
        return;
    }
    for (const char *p = value; *p; p++) {
        qopt_append(o, p, 1);
        if (*p == ',')
            qopt_append(o, ",", 1); /* QEMU reads ",," as one literal comma */
    }
}

void qopt_value(struct qopt *o, const char *value)
{
    if (o->len)
        qopt_append(o, ",", 1);
    qopt_escaped(o, "value", value);
}

void qopt_add(struct qopt *o, const char *key, const char *value)
{
    if (o->len)
        qopt_append(o, ",", 1);
    qopt_append(o, key, strlen(key));
    qopt_append(o, "=", 1);
    qopt_escaped(o, key, value);
}

void qopt_addf(struct qopt *o, const char *key, const char *fmt, ...)
{
    char *value = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&value, fmt, ap) < 0)
        value = NULL;
    va_end(ap);
    if (!value) {
        snprintf(o->err, sizeof(o->err), "out of memory building an option");
        return;
    }
    qopt_add(o, key, value);
    free(value);
}

void argv_add_qopt(struct argv *a, const char *flag, struct qopt *o)
{
    if (o->err[0])
        argv_fail(a, "%s", o->err);
    argv_add(a, flag);
    argv_add(a, o->s ? o->s : "");
    free(o->s);
    memset(o, 0, sizeof(*o));
}

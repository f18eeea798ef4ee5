/* argv: a command line under construction that records its first error.
 *
 * Builders add words without checking results; the first failure (a value QEMU
 * cannot carry, an allocation failure) is kept in the argv and reported once by
 * whoever consumes it, libvirt style. */
#ifndef QDESK_UTIL_ARGV_H
#define QDESK_UTIL_ARGV_H

#include <stddef.h>

struct argv {
    char **v; /* NULL-terminated array of words */
    size_t n, cap;
    char err[512]; /* the first error; empty when there is none */
};

void argv_init(struct argv *a);
/* Frees the words; the argv may be reused after argv_init(). Accepts NULL. */
void argv_free(struct argv *a);

void argv_add(struct argv *a, const char *word);
void argv_addf(struct argv *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Records fmt as the argv's error unless one is already recorded. */
void argv_fail(struct argv *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Returns -1 when an error is recorded, else 0. */
int argv_status(const struct argv *a);

/* Returns the command line shell-quoted, one option (a word starting with '-' and
 * the words up to the next one) per line, joined by " \\\n", ready to paste into
 * a shell. Newly allocated; the caller frees it with free(). */
char *argv_format(const struct argv *a);

/* Appends s to out (of size outsz) quoted for a POSIX shell. Returns -1 when it
 * does not fit. */
int argv_shell_quote(const char *s, char *out, size_t outsz);

/* qopt: one QEMU option value such as "virtio-blk-pci,drive=disk0,bootindex=1".
 *
 * Values are escaped the way QEMU's option parser reads them: every comma is
 * doubled. A value with a character QEMU cannot carry (a control character such
 * as a newline) is refused: the error names the key and is passed on to the
 * argv by argv_add_qopt(). */
struct qopt {
    char *s;
    size_t len, cap;
    char err[256];
};

/* Appends a bare word (a driver name, a flag like "server=on" built from
 * constants). Words are trusted program constants and are not escaped. */
void qopt_word(struct qopt *o, const char *word);
/* Appends a value without a key (the implied first value of options such as
 * -vnc), escaped. */
void qopt_value(struct qopt *o, const char *value);
/* Appends ",key=value" with value escaped. */
void qopt_add(struct qopt *o, const char *key, const char *value);
/* Appends ",key=value" where value is formatted from fmt, then escaped. */
void qopt_addf(struct qopt *o, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Adds "flag" and the option string to a, moves o's error to a, and frees o. */
void argv_add_qopt(struct argv *a, const char *flag, struct qopt *o);

/* Returns the first character of s that QEMU cannot carry in an option value
 * (control characters, DEL), or 0 when s is safe. */
int qopt_bad_char(const char *s);

#endif

#include "util/units.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Reads a run of decimal digits; returns the number of digits read (0 on none or
 * on overflow). */
static size_t read_number(const char *s, uint64_t *value)
{
    size_t i = 0;
    uint64_t v = 0;
    while (isdigit((unsigned char)s[i])) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
        i++;
    }
    *value = v;
    return i;
}

int units_parse_duration(const char *s, uint64_t *seconds)
{
    uint64_t total = 0;
    if (!s || !*s)
        return -1;
    while (*s) {
        uint64_t n, mult;
        size_t digits = read_number(s, &n);
        if (digits == 0)
            return -1;
        s += digits;
        switch (*s) {
        case 's':
            mult = 1;
            break;
        case 'm':
            mult = 60;
            break;
        case 'h':
            mult = 3600;
            break;
        case 'd':
            mult = 86400;
            break;
        default:
            return -1;
        }
        s++;
        if (n > (UINT64_MAX - total) / mult)
            return -1;
        total += n * mult;
    }
    *seconds = total;
    return 0;
}

int units_parse_size(const char *s, uint64_t unit, uint64_t *bytes)
{
    uint64_t n, mult;
    if (!s)
        return -1;
    size_t digits = read_number(s, &n);
    if (digits == 0)
        return -1;
    const char *suffix = s + digits, *rest = suffix + 1;
    switch (toupper((unsigned char)*suffix)) {
    case 0:
        mult = unit, rest = suffix;
        break;
    case 'B':
        mult = 1;
        break;
    case 'K':
        mult = 1ULL << 10;
        break;
    case 'M':
        mult = 1ULL << 20;
        break;
    case 'G':
        mult = 1ULL << 30;
        break;
    case 'T':
        mult = 1ULL << 40;
        break;
    default:
        return -1;
    }
    /* "512M", "512MB" and "512MiB" all mean 512 MiB. */
    if (mult > 1 && rest != suffix &&
        (strcasecmp(rest, "B") == 0 || strcasecmp(rest, "iB") == 0))
        rest += strlen(rest);
    if (*rest)
        return -1;
    if (mult && n > UINT64_MAX / mult)
        return -1;
    *bytes = n * mult;
    return 0;
}

void units_format_duration(uint64_t seconds, char *out, size_t outsz)
{
    static const struct {
        uint64_t size;
        char unit;
    } parts[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
    size_t len = 0;
    out[0] = 0;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        uint64_t n = seconds / parts[i].size;
        seconds %= parts[i].size;
        if (n == 0 || len >= outsz)
            continue;
        int w = snprintf(out + len, outsz - len, "%llu%c", (unsigned long long)n,
                         parts[i].unit);
        if (w > 0)
            len += (size_t)w;
    }
    if (!out[0])
        snprintf(out, outsz, "0s");
}

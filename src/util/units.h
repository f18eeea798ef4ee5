/* units: durations ("90m", "4h", "1h30m") and sizes ("512M", "2G"). */
#ifndef QDESK_UTIL_UNITS_H
#define QDESK_UTIL_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* Parses a duration made of one or more NUMBER UNIT pairs, units s, m, h, d (for
 * example "90m", "4h", "2d", "1h30m"). Returns 0 and the total in *seconds, or -1
 * when s is not such a duration or overflows. */
int units_parse_duration(const char *s, uint64_t *seconds);

/* Parses a size: a whole number with an optional binary suffix K, M, G or T
 * (optionally followed by "iB" or "B"), case-insensitive. A bare number is counted
 * in unit bytes (for example 1 << 20 to read "512" as 512 MiB). Returns 0 and the
 * size in bytes in *bytes, or -1 when s is not a size or overflows. */
int units_parse_size(const char *s, uint64_t unit, uint64_t *bytes);

/* Formats seconds as the shortest duration units_parse_duration() reads back,
 * such as "1h30m" or "0s". */
void units_format_duration(uint64_t seconds, char *out, size_t outsz);

#endif

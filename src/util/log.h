/* log: one line per event on stderr, with a level and a timestamp. */
#ifndef QDESK_UTIL_LOG_H
#define QDESK_UTIL_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Sets the most verbose level that is printed (default LOG_INFO). */
void log_set_level(enum log_level level);

/* Prints one line "TIME LEVEL message" to stderr; a trailing newline in fmt is
 * not needed. */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif

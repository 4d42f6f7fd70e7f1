/*
 * log.h - leveled logs, one line per event, key=value, to stderr.
 *
 * Callers write the event as key=value pairs starting with a short event
 * name: log_info("listening addr=%s threads=%d", ...). Each line is written
 * with one stdio call, so lines from different threads never interleave.
 * Any thread may log; the level is an atomic read (set by the main thread).
 * Nothing is logged per message at info: per-message detail is debug.
 */
#ifndef PARLEY_LOG_H
#define PARLEY_LOG_H

enum log_level {
	LOG_ERROR = 0,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

/* Parse "error", "warn", "info", "debug". Returns 0, or -1 if unknown. */
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level level);

void log_set_level(enum log_level level);

/*
 * Main thread: append the log to path from now on (created 0640), or go
 * back to the standard error parleyd started with when path is NULL.
 * Called at start for --log-file and on every SIGHUP (logrotate). On
 * failure it logs, keeps the current destination and returns -1.
 */
int log_reopen(const char *path);
int log_enabled(enum log_level level);

/* One line to stderr; line breaks inside the message become spaces. */
void log_write(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { if (log_enabled(LOG_DEBUG)) log_write(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ck_pr.h>

#include "log.h"

static const char *const level_names[] = { "error", "warn", "info", "debug" };

/* Read by every thread, written by the main thread: an atomic int. */
static int current_level = LOG_INFO;

int
log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

const char *
log_level_name(enum log_level level)
{
	return level_names[level];
}

void
log_set_level(enum log_level level)
{
	ck_pr_store_int(&current_level, (int)level);
}

int
log_enabled(enum log_level level)
{
	return (int)level <= ck_pr_load_int(&current_level);
}

void
log_write(enum log_level level, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	if (!log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
	    "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One event, one line: values (libpq's errors among them) may hold
	 * line breaks. */
	for (char *c = line + n; *c != '\0'; c++)
		if (*c == '\n' || *c == '\r')
			*c = ' ';
	/* One fputs per line: stdio's lock keeps lines whole across threads. */
	fprintf(stderr, "%s\n", line);
}

/* Main thread: the standard error parleyd started with, once redirected. */
static int saved_stderr = -1;

int
log_reopen(const char *path)
{
	int fd;

	if (path == NULL) {
		if (saved_stderr >= 0)
			dup2(saved_stderr, STDERR_FILENO);
		return 0;
	}
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		log_error("log_file_unopenable file=%s error=\"%s\"", path, strerror(errno));
		return -1;
	}
	if (saved_stderr < 0)
		saved_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	/*
	 * dup2 swaps fd 2 in one step: a thread writing a line at this moment
	 * writes it whole to the old file or to the new one.
	 */
	if (dup2(fd, STDERR_FILENO) < 0) {
		log_error("log_file_unopenable file=%s error=\"%s\"", path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

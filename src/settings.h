/*
 * settings.h - parleyd's settings: command line (getopt_long), config file,
 * defaults and validation, all from one table of options.
 *
 * Owner: the main thread fills a struct settings before any other thread
 * starts; afterwards nobody writes it. SIGHUP makes a new one on the main
 * thread (see reload.h) rather than change the one workers read.
 *
 * The config file holds "key = value" lines with the long option names as
 * keys, '#' comments, and true/false for switches; values given on the
 * command line win over the file (PROTOCOL.md section 8).
 */
#ifndef PARLEY_SETTINGS_H
#define PARLEY_SETTINGS_H

#include <stdint.h>
#include <stdio.h>

struct settings {
	char *listen_host;          /* --listen host part ("0.0.0.0", "::1", a name) */
	uint16_t listen_port;
	unsigned threads;           /* 0 = number of online CPUs */
	char *db;                   /* libpq conninfo, NULL = in memory */
	char *jwt_secret_file;
	char *jwt_issuer;
	char *jwt_audience;
	int allow_anonymous;
	char *tls_cert;
	char *tls_key;
	uint64_t max_connections;   /* 0 = derived from the open-files limit */
	uint64_t max_body;
	uint64_t max_frame;
	uint64_t heartbeat;         /* seconds */
	uint64_t out_limit;         /* bytes of pending output per connection */
	uint64_t rate;              /* sequenced requests per second; 0 = unlimited */
	uint64_t burst;
	uint64_t signal_rate;       /* typing and read requests per second */
	uint64_t signal_burst;
	uint64_t room_idle;         /* seconds an empty room is kept */
	uint64_t room_history;      /* events a room keeps in memory */
	uint64_t batch_max;
	uint64_t batch_delay;       /* milliseconds */
	uint64_t backlog;
	char *config_file;
	int log_level;              /* enum log_level */
	char *log_file;             /* NULL: standard error */
	int check_config;           /* --check-config: print the settings, exit */

	uint64_t set_on_cmdline;    /* bit i: option i came from argv (file must not override) */
	uint64_t set_explicitly;    /* bit i: option i came from argv or the file */
};

enum settings_result {
	SETTINGS_OK = 0,
	SETTINGS_EXIT = 1,   /* --help or --version was printed: exit 0 */
	SETTINGS_ERROR = 2,  /* err holds the message: exit 2 */
};

void settings_init(struct settings *cfg);
void settings_free(struct settings *cfg);

/*
 * Parse the command line, then the config file it names (if any). On
 * SETTINGS_ERROR, err holds "--flag: what is wrong" (or "file:line: ...").
 */
enum settings_result settings_parse(struct settings *cfg, int argc, char **argv,
    char *err, size_t errsz);

/* Apply one setting by its long name, as the config file does. */
enum settings_result settings_set(struct settings *cfg, const char *name,
    const char *value, char *err, size_t errsz);

/* Read a config file; keys given on the command line are validated, not applied. */
enum settings_result settings_load_file(struct settings *cfg, const char *path,
    char *err, size_t errsz);

/*
 * Checks that involve several settings (run after parsing). A default that
 * conflicts with an explicit setting follows it (--max-frame 1024 alone
 * lowers the default --max-body); two explicit settings that conflict are
 * an error.
 */
enum settings_result settings_validate(struct settings *cfg, char *err,
    size_t errsz);

void settings_usage(FILE *out);

/*
 * Print the effective settings as a config file parleyd would accept, each
 * key with a comment saying whether SIGHUP applies it (--check-config).
 */
void settings_print(const struct settings *cfg, FILE *out);

/*
 * Call fn for every setting whose value differs between a and b, with
 * live = 1 when SIGHUP applies it and 0 when it needs a restart.
 * Returns how many differ.
 */
unsigned settings_diff(const struct settings *a, const struct settings *b,
    void (*fn)(const char *name, const char *old_value, const char *new_value,
    int live, void *arg), void *arg);

/* A deep copy (strings duplicated), for a reload to compare against. */
void settings_copy(struct settings *dst, const struct settings *src);

/*
 * Copy into dst the values of the settings SIGHUP applies, from src. The
 * defaults of max-body and out-limit that src did not set follow dst's
 * max-frame (the running one), not src's.
 */
void settings_apply_live(struct settings *dst, const struct settings *src);

#endif

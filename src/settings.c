#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "settings.h"
#include "log.h"
#include "xmalloc.h"

enum opt_type {
	OPT_STRING,
	OPT_UINT,
	OPT_BOOL,
	OPT_LISTEN,
	OPT_LOGLEVEL,
	OPT_ACTION,        /* --help, --version, --config: handled by settings_parse */
};

struct option_def {
	const char *name;
	int short_name;    /* 0: long only */
	enum opt_type type;
	size_t offset;     /* into struct settings */
	uint64_t min, max; /* OPT_UINT */
	const char *arg;   /* argument name in --help */
	const char *help;
	int live;          /* SIGHUP applies a new value; 0: needs a restart */
};

#define OFF(field) offsetof(struct settings, field)

/* The order here is the order of --help and of the bits in set_on_cmdline. */
static const struct option_def options[] = {
	{ "listen", 'l', OPT_LISTEN, OFF(listen_host), 0, 0, "HOST:PORT",
	  "address to serve (default 0.0.0.0:8080; [::1]:8080 for IPv6)", 0 },
	{ "threads", 't', OPT_UINT, OFF(threads), 1, 256, "N",
	  "I/O worker threads (default: number of online CPUs)", 0 },
	{ "db", 'd', OPT_STRING, OFF(db), 0, 0, "CONNINFO",
	  "PostgreSQL conninfo or URI (default: in-memory mode)", 0 },
	{ "jwt-secret-file", 0, OPT_STRING, OFF(jwt_secret_file), 0, 0, "FILE",
	  "HS256 secret (default: env PARLEY_JWT_SECRET)", 1 },
	{ "jwt-issuer", 0, OPT_STRING, OFF(jwt_issuer), 0, 0, "S",
	  "require this iss claim", 1 },
	{ "jwt-audience", 0, OPT_STRING, OFF(jwt_audience), 0, 0, "S",
	  "require this aud claim", 1 },
	{ "allow-anonymous", 0, OPT_BOOL, OFF(allow_anonymous), 0, 0, NULL,
	  "hello may carry a name instead of a token", 1 },
	{ "tls-cert", 0, OPT_STRING, OFF(tls_cert), 0, 0, "FILE",
	  "TLS certificate chain (PEM)" " [later: refuses to start]", 0 },
	{ "tls-key", 0, OPT_STRING, OFF(tls_key), 0, 0, "FILE",
	  "TLS private key (PEM)" " [see --tls-cert]", 0 },
	{ "max-connections", 0, OPT_UINT, OFF(max_connections), 1, 100000000, "N",
	  "client connections; beyond get HTTP 503 (default: from the open-files limit)", 1 },
	{ "max-body", 0, OPT_UINT, OFF(max_body), 1, 1048576, "BYTES",
	  "largest message body (default 4000)", 1 },
	{ "max-frame", 0, OPT_UINT, OFF(max_frame), 256, 16777216, "BYTES",
	  "largest WebSocket message (default 65536)", 0 },
	{ "heartbeat", 0, OPT_UINT, OFF(heartbeat), 1, 3600, "SECONDS",
	  "ping interval; silent for twice this: close 1001 (default 30)", 1 },
	{ "out-limit", 0, OPT_UINT, OFF(out_limit), 4096, 1073741824, "BYTES",
	  "pending output per connection before close 1013 (default 1048576)", 1 },
	{ "rate", 0, OPT_UINT, OFF(rate), 0, 1000000, "N",
	  "sequenced requests per second per connection, 0 = unlimited (default 20)", 1 },
	{ "burst", 0, OPT_UINT, OFF(burst), 1, 1000000, "N",
	  "rate-limit burst (default 40)", 1 },
	{ "signal-rate", 0, OPT_UINT, OFF(signal_rate), 1, 1000000, "N",
	  "typing and read requests per second per connection, each its own bucket (default 5)", 1 },
	{ "signal-burst", 0, OPT_UINT, OFF(signal_burst), 1, 1000000, "N",
	  "burst of the typing and read buckets (default 10)", 1 },
	{ "room-idle", 0, OPT_UINT, OFF(room_idle), 1, 86400, "SECONDS",
	  "an empty room is freed after this long (default 60)", 1 },
	{ "room-history", 0, OPT_UINT, OFF(room_history), 1024, 10000000, "N",
	  "latest events each room keeps in memory for replay and history (default 10000)", 0 },
	{ "batch-max", 0, OPT_UINT, OFF(batch_max), 1, 100000, "ROWS",
	  "persistence batch size (default 1000)", 0 },
	{ "batch-delay", 0, OPT_UINT, OFF(batch_delay), 0, 10000, "MS",
	  "persistence batch delay (default 2)", 0 },
	{ "backlog", 0, OPT_UINT, OFF(backlog), 1, 100000000, "N",
	  "events held while the database is unreachable (default 100000)", 0 },
	{ "config", 'c', OPT_ACTION, OFF(config_file), 0, 0, "FILE",
	  "config file: key = value lines with these long names", 0 },
	{ "log-level", 0, OPT_LOGLEVEL, OFF(log_level), 0, 0, "LEVEL",
	  "error, warn, info or debug (default info)", 1 },
	{ "log-file", 0, OPT_STRING, OFF(log_file), 0, 0, "FILE",
	  "append the log here, reopened on SIGHUP (default: standard error)", 1 },
	{ "check-config", 0, OPT_ACTION, 0, 0, 0, NULL,
	  "validate the settings, print the effective ones as a config file, exit", 0 },
	{ "help", 'h', OPT_ACTION, 0, 0, 0, NULL, "print this help and exit", 0 },
	{ "version", 'V', OPT_ACTION, 0, 0, 0, NULL, "print the version and exit", 0 },
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))

void
settings_init(struct settings *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->listen_host = xstrdup("0.0.0.0");
	cfg->listen_port = 8080;
	cfg->max_body = 4000;
	cfg->max_frame = 65536;
	cfg->heartbeat = 30;
	cfg->out_limit = 1048576;
	cfg->rate = 20;
	cfg->burst = 40;
	cfg->signal_rate = 5;
	cfg->signal_burst = 10;
	cfg->room_idle = 60;
	cfg->room_history = 10000;
	cfg->batch_max = 1000;
	cfg->batch_delay = 2;
	cfg->backlog = 100000;
	cfg->log_level = LOG_INFO;
}

static char **
string_field(struct settings *cfg, const struct option_def *o)
{
	return (char **)((char *)cfg + o->offset);
}

void
settings_free(struct settings *cfg)
{
	for (size_t i = 0; i < NOPTIONS; i++) {
		const struct option_def *o = &options[i];

		if (o->type == OPT_STRING || o->type == OPT_LISTEN ||
		    (o->type == OPT_ACTION && o->offset != 0)) {
			free(*string_field(cfg, o));
			*string_field(cfg, o) = NULL;
		}
	}
}

static const struct option_def *
option_by_name(const char *name)
{
	for (size_t i = 0; i < NOPTIONS; i++)
		if (strcmp(options[i].name, name) == 0)
			return &options[i];
	return NULL;
}

static int
parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int
parse_bool(const char *s, int *out)
{
	if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0 || strcmp(s, "1") == 0)
		*out = 1;
	else if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0 || strcmp(s, "0") == 0)
		*out = 0;
	else
		return -1;
	return 0;
}

/* HOST:PORT, [V6]:PORT. The host is resolved when the listeners open. */
static int
parse_listen(const char *s, char **host, uint16_t *port)
{
	const char *colon, *h = s;
	size_t hlen;
	uint64_t p;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':')
			return -1;
		h = s + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
			return -1;
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen > 253 || parse_uint(colon + 1, 1, 65535, &p) != 0)
		return -1;
	for (size_t i = 0; i < hlen; i++)
		if (!isalnum((unsigned char)h[i]) && strchr(".-:_%", h[i]) == NULL)
			return -1;
	free(*host);
	*host = xstrndup(h, hlen);
	*port = (uint16_t)p;
	return 0;
}

static enum settings_result
set_option(struct settings *cfg, const struct option_def *o, const char *value,
    char *err, size_t errsz)
{
	void *field = (char *)cfg + o->offset;
	enum log_level level;
	uint64_t v;

	cfg->set_explicitly |= 1ull << (o - options);

	switch (o->type) {
	case OPT_STRING:
	case OPT_ACTION:
		if (value[0] == '\0') {
			snprintf(err, errsz, "--%s: must not be empty", o->name);
			return SETTINGS_ERROR;
		}
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return SETTINGS_OK;
	case OPT_UINT:
		if (parse_uint(value, o->min, o->max, &v) != 0) {
			snprintf(err, errsz, "--%s: '%s' is not a whole number from %llu to %llu",
			    o->name, value, (unsigned long long)o->min,
			    (unsigned long long)o->max);
			return SETTINGS_ERROR;
		}
		if (o->offset == OFF(threads))
			cfg->threads = (unsigned)v;
		else
			*(uint64_t *)field = v;
		return SETTINGS_OK;
	case OPT_BOOL:
		if (parse_bool(value, (int *)field) != 0) {
			snprintf(err, errsz, "--%s: '%s' is not true or false", o->name, value);
			return SETTINGS_ERROR;
		}
		return SETTINGS_OK;
	case OPT_LISTEN:
		if (parse_listen(value, &cfg->listen_host, &cfg->listen_port) != 0) {
			snprintf(err, errsz, "--%s: '%s' is not HOST:PORT (port 1-65535, IPv6 as [addr]:port)",
			    o->name, value);
			return SETTINGS_ERROR;
		}
		return SETTINGS_OK;
	case OPT_LOGLEVEL:
		if (log_level_parse(value, &level) != 0) {
			snprintf(err, errsz, "--%s: '%s' is not error, warn, info or debug",
			    o->name, value);
			return SETTINGS_ERROR;
		}
		cfg->log_level = (int)level;
		return SETTINGS_OK;
	}
	return SETTINGS_ERROR;
}

enum settings_result
settings_set(struct settings *cfg, const char *name, const char *value, char *err,
    size_t errsz)
{
	const struct option_def *o = option_by_name(name);

	if (o == NULL || (o->type == OPT_ACTION)) {
		snprintf(err, errsz, "unknown setting '%s'", name);
		return SETTINGS_ERROR;
	}
	return set_option(cfg, o, value, err, errsz);
}

static char *
trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' ||
	    end[-1] == '\n'))
		*--end = '\0';
	return s;
}

enum settings_result
settings_load_file(struct settings *cfg, const char *path, char *err, size_t errsz)
{
	char line[4096], msg[512];
	enum settings_result r = SETTINGS_OK;
	unsigned lineno = 0;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errsz, "%s: %s", path, strerror(errno));
		return SETTINGS_ERROR;
	}
	while (r == SETTINGS_OK && fgets(line, sizeof(line), f) != NULL) {
		char *key, *value, *eq;
		const struct option_def *o;
		struct settings scratch;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(err, errsz, "%s:%u: line too long", path, lineno);
			r = SETTINGS_ERROR;
			break;
		}
		key = trim(line);
		if (*key == '\0' || *key == '#')
			continue;
		if ((eq = strchr(key, '=')) == NULL) {
			snprintf(err, errsz, "%s:%u: expected 'key = value'", path, lineno);
			r = SETTINGS_ERROR;
			break;
		}
		*eq = '\0';
		key = trim(key);
		value = trim(eq + 1);
		o = option_by_name(key);
		if (o == NULL || o->type == OPT_ACTION) {
			snprintf(err, errsz, "%s:%u: unknown setting '%s'", path, lineno, key);
			r = SETTINGS_ERROR;
			break;
		}
		/* A key the command line set is still validated, into a scratch copy. */
		if (cfg->set_on_cmdline & (1ull << (o - options))) {
			settings_init(&scratch);
			r = set_option(&scratch, o, value, msg, sizeof(msg));
			settings_free(&scratch);
		} else {
			r = set_option(cfg, o, value, msg, sizeof(msg));
		}
		if (r != SETTINGS_OK)
			snprintf(err, errsz, "%s:%u: %s", path, lineno, msg + 2);
	}
	fclose(f);
	return r;
}

static void
build_long_options(struct option *longopts, char *shortopts)
{
	char *s = shortopts;

	*s++ = ':';     /* report a missing argument as ':' */
	for (size_t i = 0; i < NOPTIONS; i++) {
		const struct option_def *o = &options[i];
		int has_arg = o->arg != NULL ? required_argument : no_argument;

		longopts[i] = (struct option){ o->name, has_arg, NULL, (int)(256 + i) };
		if (o->short_name != 0) {
			*s++ = (char)o->short_name;
			if (has_arg == required_argument)
				*s++ = ':';
		}
	}
	longopts[NOPTIONS] = (struct option){ NULL, 0, NULL, 0 };
	*s = '\0';
}

static const struct option_def *
option_from_getopt(int c)
{
	if (c >= 256 && c < 256 + (int)NOPTIONS)
		return &options[c - 256];
	for (size_t i = 0; i < NOPTIONS; i++)
		if (options[i].short_name == c)
			return &options[i];
	return NULL;
}

enum settings_result
settings_parse(struct settings *cfg, int argc, char **argv, char *err, size_t errsz)
{
	struct option longopts[NOPTIONS + 1];
	char shortopts[2 * NOPTIONS + 2];
	enum settings_result r;
	int c;

	build_long_options(longopts, shortopts);
	opterr = 0;
	optind = 0;   /* 0, not 1: glibc then starts afresh (SIGHUP parses again) */
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		const struct option_def *o = option_from_getopt(c);

		if (c == '?' || c == ':') {
			const char *what = optind > 0 && optind <= argc ? argv[optind - 1] : "?";

			snprintf(err, errsz, c == ':' ? "%s: needs a value" :
			    "%s: unknown option (see --help)", what);
			return SETTINGS_ERROR;
		}
		if (strcmp(o->name, "help") == 0) {
			settings_usage(stdout);
			return SETTINGS_EXIT;
		}
		if (strcmp(o->name, "version") == 0) {
			printf("parleyd %s\n", PACKAGE_VERSION);
			return SETTINGS_EXIT;
		}
		if (strcmp(o->name, "check-config") == 0) {
			cfg->check_config = 1;
			continue;
		}
		r = set_option(cfg, o, o->arg != NULL ? optarg : "true", err, errsz);
		if (r != SETTINGS_OK)
			return r;
		cfg->set_on_cmdline |= 1ull << (o - options);
	}
	if (optind < argc) {
		snprintf(err, errsz, "%s: unexpected argument (see --help)", argv[optind]);
		return SETTINGS_ERROR;
	}
	if (cfg->config_file != NULL &&
	    (r = settings_load_file(cfg, cfg->config_file, err, errsz)) != SETTINGS_OK)
		return r;
	return settings_validate(cfg, err, errsz);
}

static int
explicit(const struct settings *cfg, const char *name)
{
	return (cfg->set_explicitly & (1ull << (option_by_name(name) - options))) != 0;
}

enum settings_result
settings_validate(struct settings *cfg, char *err, size_t errsz)
{
	if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
		snprintf(err, errsz, "--tls-cert and --tls-key go together");
		return SETTINGS_ERROR;
	}
	if (cfg->max_body > cfg->max_frame && !explicit(cfg, "max-body"))
		cfg->max_body = cfg->max_frame;
	if (cfg->max_body > cfg->max_frame) {
		snprintf(err, errsz, "--max-body (%llu) must not exceed --max-frame (%llu)",
		    (unsigned long long)cfg->max_body, (unsigned long long)cfg->max_frame);
		return SETTINGS_ERROR;
	}
	if (cfg->out_limit < cfg->max_frame && !explicit(cfg, "out-limit"))
		cfg->out_limit = cfg->max_frame;
	if (cfg->out_limit < cfg->max_frame) {
		snprintf(err, errsz, "--out-limit (%llu) must be at least --max-frame (%llu)",
		    (unsigned long long)cfg->out_limit, (unsigned long long)cfg->max_frame);
		return SETTINGS_ERROR;
	}
	return SETTINGS_OK;
}

void
settings_usage(FILE *out)
{
	fprintf(out, "usage: parleyd [options]\n\n"
	    "A WebSocket chat broker (parley protocol v1). Options, also valid in\n"
	    "the --config file by their long names (key = value):\n\n");
	for (size_t i = 0; i < NOPTIONS; i++) {
		const struct option_def *o = &options[i];
		char flag[64];

		if (o->short_name != 0)
			snprintf(flag, sizeof(flag), "-%c, --%s%s%s", o->short_name,
			    o->name, o->arg ? " " : "", o->arg ? o->arg : "");
		else
			snprintf(flag, sizeof(flag), "    --%s%s%s", o->name,
			    o->arg ? " " : "", o->arg ? o->arg : "");
		fprintf(out, "  %-28s %s%s\n", flag, o->help, o->live ? " [SIGHUP]" : "");
	}
	fprintf(out, "\nSIGHUP rereads the config file and applies the settings marked\n"
	    "[SIGHUP]; a change to any other is logged and waits for a restart.\n");
	fprintf(out, "\nTLS is not served yet: parleyd refuses to start with --tls-cert\n"
	    "rather than serve plaintext.\n"
	    "\nSIGTERM/SIGINT: stop accepting; commit, deliver and ack what was\n"
	    "accepted; close clients with 1001; exit 0. See parleyd(8).\n");
}

/* One setting's value as the config file spells it; "" when unset. */
static void
format_value(const struct settings *cfg, const struct option_def *o, char *buf,
    size_t len)
{
	const void *field = (const char *)cfg + o->offset;
	const char *str;

	switch (o->type) {
	case OPT_STRING:
	case OPT_ACTION:
		str = *(char *const *)field;
		snprintf(buf, len, "%s", str != NULL ? str : "");
		break;
	case OPT_UINT:
		snprintf(buf, len, "%llu", o->offset == OFF(threads) ?
		    (unsigned long long)cfg->threads :
		    (unsigned long long)*(const uint64_t *)field);
		break;
	case OPT_BOOL:
		snprintf(buf, len, "%s", *(const int *)field ? "true" : "false");
		break;
	case OPT_LISTEN:
		snprintf(buf, len, strchr(cfg->listen_host, ':') != NULL ?
		    "[%s]:%u" : "%s:%u", cfg->listen_host, cfg->listen_port);
		break;
	case OPT_LOGLEVEL:
		snprintf(buf, len, "%s", log_level_name((enum log_level)cfg->log_level));
		break;
	}
}

/* Settings a config file may hold: not --help, --version, --config. */
static int
is_setting(const struct option_def *o)
{
	return o->type != OPT_ACTION;
}

/*
 * The database conninfo as it may be shown: every password in it becomes
 * ********, the rest stays as written. Both of libpq's forms: keyword =
 * value pairs (spaces allowed around '=', values quoted with '' or not),
 * and URIs, where it may sit in the user info (user:secret@host) or in the
 * query (?password=secret&...).
 */
struct shown {
	char *buf;
	size_t len, o;
};

static void
put(struct shown *sh, const char *s, size_t n)
{
	if (n > sh->len - 1 - sh->o)
		n = sh->len - 1 - sh->o;
	memcpy(sh->buf + sh->o, s, n);
	sh->o += n;
	sh->buf[sh->o] = '\0';
}

/*
 * Where a keyword's value ends, as libpq reads it: after its closing quote,
 * or at white space; a backslash escapes the next character in both.
 */
static const char *
value_end(const char *p)
{
	int quoted = *p == '\'';

	for (p += quoted; *p != '\0'; p++) {
		if (*p == '\\' && p[1] != '\0')
			p++;
		else if (quoted ? *p == '\'' : isspace((unsigned char)*p) != 0)
			break;
	}
	return quoted && *p == '\'' ? p + 1 : p;
}

static void
redact_keywords(const char *p, struct shown *sh)
{
	while (*p != '\0') {
		size_t blank = strspn(p, " \t\n\r\f\v"), klen;
		const char *key = p + blank, *eq, *val, *end;

		klen = strcspn(key, "= \t\n\r\f\v");
		eq = key + klen + strspn(key + klen, " \t\n\r\f\v");
		if (*eq != '=') {   /* not keyword = value: as it was */
			put(sh, p, (size_t)(eq - p) + (*eq != '\0'));
			p = eq + (*eq != '\0');
			continue;
		}
		val = eq + 1 + strspn(eq + 1, " \t\n\r\f\v");
		end = value_end(val);
		put(sh, p, (size_t)(val - p));
		if (klen == 8 && strncmp(key, "password", 8) == 0)
			put(sh, "********", 8);
		else
			put(sh, val, (size_t)(end - val));
		p = end;
	}
}

static void
redact_uri(const char *v, struct shown *sh)
{
	const char *auth = strstr(v, "://") + 3, *end = auth + strcspn(auth, "/?");
	const char *at = memchr(auth, '@', (size_t)(end - auth)), *colon, *p;

	colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	if (colon != NULL) {
		put(sh, v, (size_t)(colon + 1 - v));
		put(sh, "********", 8);
		p = at;
	} else {
		p = v;
	}
	if ((end = strchr(p, '?')) == NULL) {
		put(sh, p, strlen(p));
		return;
	}
	put(sh, p, (size_t)(end + 1 - p));
	for (p = end + 1; *p != '\0';) {
		size_t n = strcspn(p, "&");

		if (strncmp(p, "password=", 9) == 0 && n >= 9) {
			put(sh, p, 9);
			put(sh, "********", 8);
		} else {
			put(sh, p, n);
		}
		p += n;
		if (*p == '&')
			put(sh, p++, 1);
	}
}

static void
redact_conninfo(char *v, size_t len)
{
	char out[4096];
	struct shown sh = { out, sizeof(out), 0 };

	out[0] = '\0';
	if (strncmp(v, "postgresql://", 13) == 0 || strncmp(v, "postgres://", 11) == 0)
		redact_uri(v, &sh);
	else
		redact_keywords(v, &sh);
	snprintf(v, len, "%s", out);
}

static void
format_shown(const struct settings *cfg, const struct option_def *o, char *buf,
    size_t len)
{
	format_value(cfg, o, buf, len);
	if (o->offset == OFF(db))
		redact_conninfo(buf, len);
}

/* One "key = value" line, or a comment when the setting is unset. */
static void
print_setting(const struct settings *cfg, const struct option_def *o, FILE *out)
{
	char value[4096];

	format_shown(cfg, o, value, sizeof(value));
	if (o->offset == OFF(threads) && cfg->threads == 0)
		fprintf(out, "# %s = (one per online CPU)\n", o->name);
	else if (o->offset == OFF(max_connections) && cfg->max_connections == 0)
		fprintf(out, "# %s = (from the open-files limit)\n", o->name);
	else if (value[0] == '\0')
		fprintf(out, "# %s = (unset)\n", o->name);
	else
		fprintf(out, "%s = %s\n", o->name, value);
}

void
settings_print(const struct settings *cfg, FILE *out)
{
	fprintf(out, "# parleyd %s: the effective settings (command line%s%s)\n",
	    PACKAGE_VERSION, cfg->config_file != NULL ? ", then " : "",
	    cfg->config_file != NULL ? cfg->config_file : "");
	for (int live = 0; live <= 1; live++) {
		fprintf(out, live ? "\n# SIGHUP applies these:\n" :
		    "\n# These need a restart:\n");
		for (size_t i = 0; i < NOPTIONS; i++)
			if (is_setting(&options[i]) && options[i].live == live)
				print_setting(cfg, &options[i], out);
	}
}

unsigned
settings_diff(const struct settings *a, const struct settings *b,
    void (*fn)(const char *, const char *, const char *, int, void *), void *arg)
{
	char va[4096], vb[4096];
	unsigned n = 0;

	for (size_t i = 0; i < NOPTIONS; i++) {
		const struct option_def *o = &options[i];

		if (!is_setting(o))
			continue;
		format_value(a, o, va, sizeof(va));
		format_value(b, o, vb, sizeof(vb));
		if (strcmp(va, vb) != 0) {
			format_shown(a, o, va, sizeof(va));
			format_shown(b, o, vb, sizeof(vb));
			fn(o->name, va, vb, o->live, arg);
			n++;
		}
	}
	return n;
}

static int explicit(const struct settings *cfg, const char *name);

/*
 * The defaults of max-body and out-limit follow max-frame (settings_validate):
 * on a reload they follow the running max-frame, dst's, not the file's,
 * which waits for a restart.
 */
static void
follow_max_frame(struct settings *dst, const struct settings *src)
{
	struct settings def;

	settings_init(&def);
	if (!explicit(src, "max-body"))
		dst->max_body = def.max_body < dst->max_frame ? def.max_body : dst->max_frame;
	if (!explicit(src, "out-limit"))
		dst->out_limit = def.out_limit > dst->max_frame ? def.out_limit : dst->max_frame;
	settings_free(&def);
}

void
settings_apply_live(struct settings *dst, const struct settings *src)
{
	for (size_t i = 0; i < NOPTIONS; i++) {
		const struct option_def *o = &options[i];
		char *const *from;

		if (!o->live)
			continue;
		switch (o->type) {
		case OPT_STRING:
			from = (char *const *)((const char *)src + o->offset);
			free(*string_field(dst, o));
			*string_field(dst, o) = *from != NULL ? xstrdup(*from) : NULL;
			break;
		case OPT_UINT:
			*(uint64_t *)((char *)dst + o->offset) =
			    *(const uint64_t *)((const char *)src + o->offset);
			break;
		case OPT_BOOL:
		case OPT_LOGLEVEL:
			*(int *)((char *)dst + o->offset) =
			    *(const int *)((const char *)src + o->offset);
			break;
		default:
			break;   /* no live setting has another type */
		}
	}
	follow_max_frame(dst, src);
}

void
settings_copy(struct settings *dst, const struct settings *src)
{
	*dst = *src;
	for (size_t i = 0; i < NOPTIONS; i++) {
		const struct option_def *o = &options[i];

		if (o->type == OPT_STRING || o->type == OPT_LISTEN ||
		    (o->type == OPT_ACTION && o->offset != 0)) {
			char *const *from = (char *const *)((const char *)src + o->offset);

			*string_field(dst, o) = *from != NULL ? xstrdup(*from) : NULL;
		}
	}
}

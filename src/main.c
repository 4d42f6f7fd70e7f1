/*
 * parleyd - the parley WebSocket chat broker.
 *
 * main() parses the settings, builds the server and runs it on the main
 * thread, which afterwards only handles signals (SIGHUP reloads) and talks
 * to systemd.
 */
#include "config.h"

#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "live.h"
#include "log.h"
#include "notify.h"
#include "server.h"
#include "settings.h"

/*
 * --check-config: what parsing checks, plus what start would read (the JWT
 * secret); then the effective settings on stdout. Exit 0, or 2.
 */
/* Could the log file be opened for appending? Without creating it. */
static int
log_file_writable(const char *path)
{
	char dir[PATH_MAX];
	const char *slash;
	int fd;

	if ((fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)) >= 0) {
		close(fd);
		return 1;
	}
	if (errno != ENOENT)
		return 0;
	slash = strrchr(path, '/');
	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash == path ? 1 : slash - path), path);
	return access(dir, W_OK | X_OK) == 0;
}

static int
check_config(struct settings *cfg)
{
	struct live *l;

	log_set_level(LOG_WARN);
	if (cfg->tls_cert != NULL) {
		fprintf(stderr, "parleyd: --tls-cert: TLS is not served in this version; "
		    "parleyd refuses to start with it (put a TLS proxy in front)\n");
		settings_free(cfg);
		return 2;
	}
	if (cfg->log_file != NULL && !log_file_writable(cfg->log_file)) {
		fprintf(stderr, "parleyd: --log-file: %s: %s\n", cfg->log_file, strerror(errno));
		settings_free(cfg);
		return 2;
	}
	if ((l = live_new(cfg, UINT64_MAX, 0)) == NULL) {
		settings_free(cfg);
		return 2;
	}
	live_unref(l);
	settings_print(cfg, stdout);
	settings_free(cfg);
	return 0;
}

int
main(int argc, char **argv)
{
	struct settings cfg;
	struct server srv;
	char err[512];
	int status;

	/* A reload before the signal loop runs must not kill us (the default). */
	signal(SIGHUP, SIG_IGN);
	settings_init(&cfg);
	switch (settings_parse(&cfg, argc, argv, err, sizeof(err))) {
	case SETTINGS_OK:
		break;
	case SETTINGS_EXIT:
		settings_free(&cfg);
		return 0;
	default:
		fprintf(stderr, "parleyd: %s\n", err);
		settings_free(&cfg);
		return 2;
	}
	if (cfg.check_config)
		return check_config(&cfg);
	log_set_level((enum log_level)cfg.log_level);
	if (cfg.log_file != NULL && log_reopen(cfg.log_file) != 0) {
		settings_free(&cfg);
		return 1;
	}
	log_info("starting version=%s", PACKAGE_VERSION);
	(void)notify_init();   /* logs a bad NOTIFY_SOCKET; parleyd runs anyway */
	if (cfg.tls_cert != NULL) {
		log_error("tls_unavailable reason=\"TLS serving is not in this version; refusing to serve plaintext on a TLS configuration\"");
		settings_free(&cfg);
		return 1;
	}
	if (server_init(&srv, &cfg, argc, argv) != 0) {
		server_free(&srv);
		settings_free(&cfg);
		return 1;
	}
	status = server_run(&srv);
	server_free(&srv);
	settings_free(&cfg);
	return status;
}

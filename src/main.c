/*
 * parleyd - the parley WebSocket chat broker.
 *
 * main() parses the settings, builds the server and runs it on the main
 * thread, which afterwards only handles signals.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "server.h"
#include "settings.h"

int
main(int argc, char **argv)
{
	struct settings cfg;
	struct server srv;
	char err[512];
	int status;

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
	log_set_level((enum log_level)cfg.log_level);
	log_info("starting version=%s", PACKAGE_VERSION);
	if (cfg.tls_cert != NULL) {
		log_error("tls_unavailable reason=\"TLS serving is not in this version; refusing to serve plaintext on a TLS configuration\"");
		settings_free(&cfg);
		return 1;
	}
	if (server_init(&srv, &cfg) != 0) {
		server_free(&srv);
		settings_free(&cfg);
		return 1;
	}
	status = server_run(&srv);
	server_free(&srv);
	settings_free(&cfg);
	return status;
}

/*
 * test_settings.c - command line, config file and validation.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "unit.h"

#include "log.h"
#include "settings.h"

static char err[512];

static enum settings_result
parse(struct settings *cfg, const char *const *args)
{
	char *argv[64];
	int argc = 0;

	argv[argc++] = "parleyd";
	for (; *args != NULL; args++)
		argv[argc++] = (char *)*args;
	argv[argc] = NULL;
	settings_init(cfg);
	err[0] = '\0';
	return settings_parse(cfg, argc, argv, err, sizeof(err));
}

static void
test_defaults(void)
{
	struct settings cfg;
	const char *args[] = { NULL };

	CU_ASSERT_EQUAL(parse(&cfg, args), SETTINGS_OK);
	CU_ASSERT_STRING_EQUAL(cfg.listen_host, "0.0.0.0");
	CU_ASSERT_EQUAL(cfg.listen_port, 8080);
	CU_ASSERT_EQUAL(cfg.threads, 0);
	CU_ASSERT_PTR_NULL(cfg.db);
	CU_ASSERT_EQUAL(cfg.max_body, 4000);
	CU_ASSERT_EQUAL(cfg.max_frame, 65536);
	CU_ASSERT_EQUAL(cfg.heartbeat, 30);
	CU_ASSERT_EQUAL(cfg.out_limit, 1048576);
	CU_ASSERT_EQUAL(cfg.rate, 20);
	CU_ASSERT_EQUAL(cfg.burst, 40);
	CU_ASSERT_EQUAL(cfg.batch_max, 1000);
	CU_ASSERT_EQUAL(cfg.batch_delay, 2);
	CU_ASSERT_EQUAL(cfg.backlog, 100000);
	CU_ASSERT_EQUAL(cfg.allow_anonymous, 0);
	CU_ASSERT_EQUAL(cfg.log_level, LOG_INFO);
	settings_free(&cfg);
}

static void
test_every_flag(void)
{
	struct settings cfg;
	const char *args[] = { "-l", "127.0.0.1:9000", "-t", "3", "-d", "dbname=x",
	    "--jwt-secret-file", "/tmp/s", "--jwt-issuer", "iss", "--jwt-audience", "aud",
	    "--allow-anonymous", "--max-connections", "500", "--max-body", "2000",
	    "--max-frame", "8192", "--heartbeat", "5", "--out-limit", "65536",
	    "--rate", "0", "--burst", "7", "--batch-max", "100", "--batch-delay", "9",
	    "--backlog", "77", "--log-level", "debug", NULL };

	CU_ASSERT_EQUAL_FATAL(parse(&cfg, args), SETTINGS_OK);
	CU_ASSERT_STRING_EQUAL(cfg.listen_host, "127.0.0.1");
	CU_ASSERT_EQUAL(cfg.listen_port, 9000);
	CU_ASSERT_EQUAL(cfg.threads, 3);
	CU_ASSERT_STRING_EQUAL(cfg.db, "dbname=x");
	CU_ASSERT_STRING_EQUAL(cfg.jwt_secret_file, "/tmp/s");
	CU_ASSERT_STRING_EQUAL(cfg.jwt_issuer, "iss");
	CU_ASSERT_STRING_EQUAL(cfg.jwt_audience, "aud");
	CU_ASSERT_EQUAL(cfg.allow_anonymous, 1);
	CU_ASSERT_EQUAL(cfg.max_connections, 500);
	CU_ASSERT_EQUAL(cfg.max_body, 2000);
	CU_ASSERT_EQUAL(cfg.max_frame, 8192);
	CU_ASSERT_EQUAL(cfg.heartbeat, 5);
	CU_ASSERT_EQUAL(cfg.out_limit, 65536);
	CU_ASSERT_EQUAL(cfg.rate, 0);
	CU_ASSERT_EQUAL(cfg.burst, 7);
	CU_ASSERT_EQUAL(cfg.batch_max, 100);
	CU_ASSERT_EQUAL(cfg.batch_delay, 9);
	CU_ASSERT_EQUAL(cfg.backlog, 77);
	CU_ASSERT_EQUAL(cfg.log_level, LOG_DEBUG);
	settings_free(&cfg);
}

static void
expect_error(const char *const *args, const char *needle)
{
	struct settings cfg;

	CU_ASSERT_EQUAL(parse(&cfg, args), SETTINGS_ERROR);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, needle));
	if (strstr(err, needle) == NULL)
		fprintf(stderr, "\n  error was: %s (wanted %s)\n", err, needle);
	settings_free(&cfg);
}

static void
test_bad_values(void)
{
	expect_error((const char *[]){ "-t", "0", NULL }, "--threads");
	expect_error((const char *[]){ "-t", "abc", NULL }, "--threads");
	expect_error((const char *[]){ "-t", "-1", NULL }, "--threads");
	expect_error((const char *[]){ "-t", "2x", NULL }, "--threads");
	expect_error((const char *[]){ "--listen", "nohost", NULL }, "--listen");
	expect_error((const char *[]){ "--listen", "1.2.3.4:0", NULL }, "--listen");
	expect_error((const char *[]){ "--listen", "1.2.3.4:65536", NULL }, "--listen");
	expect_error((const char *[]){ "--listen", ":80", NULL }, "--listen");
	expect_error((const char *[]){ "--listen", "::1:80", NULL }, "--listen");
	expect_error((const char *[]){ "--max-frame", "99999999999999999999999", NULL }, "--max-frame");
	expect_error((const char *[]){ "--heartbeat", "0", NULL }, "--heartbeat");
	expect_error((const char *[]){ "--log-level", "loud", NULL }, "--log-level");
	expect_error((const char *[]){ "--tls-cert", "/x", NULL }, "--tls-key");
	expect_error((const char *[]){ "--max-body", "9000", "--max-frame", "8192", NULL }, "--max-body");
	expect_error((const char *[]){ "--out-limit", "5000", "--max-frame", "8192", NULL }, "--out-limit");
	expect_error((const char *[]){ "--nope", NULL }, "unknown option");
	expect_error((const char *[]){ "--threads", NULL }, "needs a value");
	expect_error((const char *[]){ "stray", NULL }, "unexpected argument");
	expect_error((const char *[]){ "--db", "", NULL }, "--db");
}

static void
test_listen_forms(void)
{
	struct settings cfg;

	CU_ASSERT_EQUAL(parse(&cfg, (const char *[]){ "-l", "[::1]:8081", NULL }), SETTINGS_OK);
	CU_ASSERT_STRING_EQUAL(cfg.listen_host, "::1");
	CU_ASSERT_EQUAL(cfg.listen_port, 8081);
	settings_free(&cfg);
	CU_ASSERT_EQUAL(parse(&cfg, (const char *[]){ "--listen=localhost:1", NULL }), SETTINGS_OK);
	CU_ASSERT_STRING_EQUAL(cfg.listen_host, "localhost");
	CU_ASSERT_EQUAL(cfg.listen_port, 1);
	settings_free(&cfg);
}

static void
test_defaults_follow_explicit(void)
{
	struct settings cfg;

	/* A small --max-frame alone lowers the default --max-body to fit. */
	CU_ASSERT_EQUAL(parse(&cfg, (const char *[]){ "--max-frame", "1024", NULL }), SETTINGS_OK);
	CU_ASSERT_EQUAL(cfg.max_body, 1024);
	CU_ASSERT_EQUAL(cfg.out_limit, 1048576);
	settings_free(&cfg);
	/* A large --max-frame alone raises the default --out-limit to fit. */
	CU_ASSERT_EQUAL(parse(&cfg, (const char *[]){ "--max-frame", "4194304", NULL }), SETTINGS_OK);
	CU_ASSERT_EQUAL(cfg.out_limit, 4194304);
	CU_ASSERT_EQUAL(cfg.max_body, 4000);
	settings_free(&cfg);
}

static char *
write_file(const char *text)
{
	static char path[64];
	int fd;

	strcpy(path, "/tmp/parley-test-conf-XXXXXX");
	fd = mkstemp(path);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void
test_config_file(void)
{
	struct settings cfg;
	char *path = write_file("# a comment\n\n  heartbeat = 7\nmax-body=100  \n"
	    "allow-anonymous = true\nlisten = 127.0.0.1:7000\nrate = 5 # not a comment\n");
	const char *args[] = { "-c", path, "--heartbeat", "9", NULL };

	/* '#' only starts a comment at the start of a line: "5 # not..." is bad. */
	CU_ASSERT_EQUAL(parse(&cfg, args), SETTINGS_ERROR);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, ":7: rate"));
	settings_free(&cfg);
	unlink(path);

	path = write_file("# a comment\n\n  heartbeat = 7\nmax-body=100  \n"
	    "allow-anonymous = true\nlisten = 127.0.0.1:7000\n");
	args[1] = path;
	CU_ASSERT_EQUAL_FATAL(parse(&cfg, args), SETTINGS_OK);
	CU_ASSERT_EQUAL(cfg.heartbeat, 9);    /* the command line wins */
	CU_ASSERT_EQUAL(cfg.max_body, 100);
	CU_ASSERT_EQUAL(cfg.allow_anonymous, 1);
	CU_ASSERT_EQUAL(cfg.listen_port, 7000);
	settings_free(&cfg);
	unlink(path);
}

static void
test_config_file_errors(void)
{
	struct settings cfg;
	struct { const char *text, *needle; } cases[] = {
		{ "bogus = 1\n", ":1: unknown setting 'bogus'" },
		{ "heartbeat\n", ":1: expected 'key = value'" },
		{ "\nheartbeat = zero\n", ":2: heartbeat" },
		{ "allow-anonymous = maybe\n", "allow-anonymous" },
		{ "config = /etc/x\n", "unknown setting 'config'" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *path = write_file(cases[i].text);
		const char *args[] = { "--config", path, NULL };

		CU_ASSERT_EQUAL(parse(&cfg, args), SETTINGS_ERROR);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].needle));
		if (strstr(err, cases[i].needle) == NULL)
			fprintf(stderr, "\n  error was: %s (wanted %s)\n", err, cases[i].needle);
		settings_free(&cfg);
		unlink(path);
	}
	CU_ASSERT_EQUAL(parse(&cfg, (const char *[]){ "-c", "/nonexistent/parley.conf", NULL }),
	    SETTINGS_ERROR);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "No such file"));
	settings_free(&cfg);
	/* A bad value for a key the command line overrides is still an error. */
	{
		char *path = write_file("heartbeat = nope\n");
		const char *args[] = { "-c", path, "--heartbeat", "3", NULL };

		CU_ASSERT_EQUAL(parse(&cfg, args), SETTINGS_ERROR);
		settings_free(&cfg);
		unlink(path);
	}
}

int
main(void)
{
	static const struct unit_test tests[] = {
		{ "defaults", test_defaults },
		{ "every flag", test_every_flag },
		{ "bad values are named", test_bad_values },
		{ "listen forms", test_listen_forms },
		{ "defaults follow explicit settings", test_defaults_follow_explicit },
		{ "config file, command line wins", test_config_file },
		{ "config file errors", test_config_file_errors },
	};

	return UNIT_RUN("settings", tests);
}

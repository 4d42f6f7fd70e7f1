/*
 * harness.h - start and stop the real parleyd for integration tests, and a
 * raw HTTP/1.1 connection that exposes response heads (pipelining, headers).
 *
 * The binary is $PARLEYD, or ./parleyd when unset. Every wait is bounded.
 */
#ifndef PARLEY_HARNESS_H
#define PARLEY_HARNESS_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include <CUnit/CUnit.h>
#include <jansson.h>

#define HARNESS_PATH 256

struct server {
	pid_t pid;              /* 0 when not running */
	int port;               /* 127.0.0.1:port */
	char log[HARNESS_PATH]; /* the server's stdout and stderr */
};

/* The binary under test: $PARLEYD or "./parleyd". */
const char *harness_binary(void);

/* A TCP port on 127.0.0.1 that was free a moment ago, or -1. */
int harness_free_port(void);

/*
 * Run the server with "-l 127.0.0.1:<port> --log-level debug" and the
 * NULL-terminated extra_args (may be NULL), and wait up to 5 s for GET
 * /healthz to answer 200. Retries on a new port when the port was taken.
 * Returns 0, or -1 (the log is dumped to stderr).
 */
int server_start(struct server *s, const char *const extra_args[]);

/*
 * Send sig (0: send nothing, only wait) and wait up to timeout_ms for the
 * process to exit. Returns its exit status (0-255), 128 + the signal that
 * killed it, or -1 when it had to be killed with SIGKILL after the timeout
 * (or was not running).
 */
int server_stop(struct server *s, int sig, int timeout_ms);

/* 1 while the process has not exited (reaps it if it has). */
int server_alive(struct server *s);

/* Fetch /metrics and read the sample "name value". 0 on success, else -1. */
int server_metric(struct server *s, const char *name, double *value);

/* Print the server's log to stderr (for failures). */
void server_dump_log(const struct server *s, const char *why);

/* Remove the log file. */
void server_remove_log(struct server *s);

/* ---- raw HTTP ------------------------------------------------------- */

#define HTTP_BUF (256 * 1024)

struct http_conn {
	int fd;
	size_t len;             /* bytes buffered in buf */
	char *buf;              /* HTTP_BUF bytes, malloc'd by http_open */
};

struct http_resp {
	int status;
	char head[16384];       /* status line and headers, NUL-terminated */
	char *body;             /* malloc'd, NUL-terminated; free with http_resp_free */
	size_t body_len;
};

/* Connect to 127.0.0.1:port. 0, or -1. */
int http_open(struct http_conn *hc, int port, int timeout_ms);
int http_send(struct http_conn *hc, const void *buf, size_t len, int timeout_ms);
/*
 * Read one response (Content-Length body, or up to EOF when the response
 * has none and says Connection: close or is HTTP/1.0). Returns the status,
 * or -1 on timeout, EOF before a full response or a malformed response.
 */
int http_read(struct http_conn *hc, struct http_resp *r, int timeout_ms);
/* 1 if the server closed the connection within timeout_ms (buffered data dropped). */
int http_wait_eof(struct http_conn *hc, int timeout_ms);
void http_close(struct http_conn *hc);

/* Open, send req, read one response, close. Returns the status or -1. */
int http_request(int port, const char *req, size_t len, struct http_resp *r,
    int timeout_ms);
/* GET path on a new connection: the status, or -1. */
int http_get_status(int port, const char *path, int timeout_ms);
/* A header value of a response; 1 if found. */
int http_header(const struct http_resp *r, const char *name, char *out,
    size_t outsz);
void http_resp_free(struct http_resp *r);

/* ---- reading server frames ---- */

/* A string field, or NULL when absent or not a string. */
const char *jstr(const json_t *o, const char *k);
/* 1 if the field is the string v. */
int jstreq(const json_t *o, const char *k, const char *v);
/* An integer field, or -1 when absent or not an integer. */
long long jint(const json_t *o, const char *k);

/* ---- running programs, the private PostgreSQL ---- */

/*
 * Run argv (execvp) with stdout into *out and, when err is not NULL, stderr
 * into *err (both malloc'd, NUL-terminated, never NULL on return >= 0; out
 * may be NULL to drop stdout); with err NULL stderr passes through. Reads
 * until the child exits (not until EOF: a daemon it starts may hold the
 * pipe). Returns the exit status (128 + signal when killed), or -1 on
 * timeout (its process group is killed) or when it could not be run.
 */
int harness_exec(const char *const argv[], char **out, char **err, int timeout_ms);

/*
 * A throw-away PostgreSQL cluster run by tests/pg-private.sh, found from
 * $PARLEY_SRCDIR, PARLEY_TOP_SRCDIR (when the program defines it), ../tests
 * or tests.
 */
struct pg_cluster {
	char script[PATH_MAX];
	char dir[64];            /* its directory under /tmp while it runs, else "" */
	char conninfo[256];      /* "host=127.0.0.1 port=N dbname=parley user=parley" */
};

/* Start one in a new directory. 0, or -1 with the reason said and nothing left. */
int pg_cluster_start(struct pg_cluster *pg);

/* pg-private.sh pause or resume on it: the exit status, a failure said. */
int pg_cluster_run(struct pg_cluster *pg, const char *verb);

/* Stop it and remove its directory; a no-op when none runs. 0, or -1. */
int pg_cluster_stop(struct pg_cluster *pg);

/*
 * An assertion that also leaves the test by "goto out" (no
 * CU_ASSERT_FATAL: the test's cleanup after out: runs).
 */
#define REQUIRE(cond)                                                   \
	do {                                                            \
		int ok_ = (cond) ? 1 : 0;                               \
		CU_assertImplementation(ok_ ? CU_TRUE : CU_FALSE,        \
		    (unsigned)__LINE__, #cond, __FILE__, "", CU_FALSE); \
		if (!ok_)                                               \
			goto out;                                       \
	} while (0)

/* ---- the CUnit main of integration test programs ---- */

/* A table of tests, ended by { NULL, NULL }. */
struct test_def {
	const char *name;
	CU_TestFunc fn;
};

/* Check that the server binary runs, ignore SIGPIPE, start the registry.
 * Returns 0, or 1 (the exit status) after printing why. */
int harness_begin(const char *prog);

/* Suite init: start the suite's server s with args. 0, or -1 (log dumped). */
int harness_suite_start(struct server *s, const char *const args[]);

/* Suite cleanup: stop s if a test did not (SIGTERM), remove its log.
 * 0, or -1 when it did not exit 0. */
int harness_suite_cleanup(struct server *s);

/* The last test of a suite: SIGTERM must give exit status 0. */
void harness_test_stop(struct server *s);

/* Register a suite; -1 on failure. */
int harness_add_suite(const char *name, CU_InitializeFunc init,
    CU_CleanupFunc cleanup, const struct test_def *t);

/* Run every suite (or those whose name contains PARLEY_TEST_SUITES),
 * verbosely, and clean up. Returns the exit status: 1 on any failure. */
int harness_run(void);

#endif

/*
 * harness.c - start/stop the real parleyd and talk raw HTTP to it.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "harness.h"
#include "wsclient.h"

#define START_TIMEOUT_MS 5000
#define START_ATTEMPTS 5

const char *
harness_binary(void)
{
	const char *p = getenv("PARLEYD");

	return p != NULL && *p != '\0' ? p : "./parleyd";
}

int
harness_free_port(void)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd, port;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
		close(fd);
		return -1;
	}
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

void
server_dump_log(const struct server *s, const char *why)
{
	char buf[4096];
	size_t n;
	FILE *f;

	fprintf(stderr, "\n---- parleyd log (%s) %s ----\n", why ? why : "",
	    s->log);
	f = fopen(s->log, "r");
	if (f == NULL) {
		fprintf(stderr, "(cannot open: %s)\n", strerror(errno));
		return;
	}
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stderr);
	fclose(f);
	fprintf(stderr, "---- end of log ----\n");
}

void
server_remove_log(struct server *s)
{
	if (s->log[0] != '\0')
		unlink(s->log);
	s->log[0] = '\0';
}

/* Does the log say the listen address was taken? */
static int
log_says_in_use(const struct server *s)
{
	char buf[65536];
	size_t n;
	FILE *f = fopen(s->log, "r");

	if (f == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strcasestr(buf, "in use") != NULL ||
	    strcasestr(buf, "EADDRINUSE") != NULL;
}

static int
status_of(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return -1;
}

static pid_t
spawn(struct server *s, const char *const extra_args[])
{
	const char *argv[64];
	char listen[64];
	int argc = 0, i, fd;
	pid_t pid;

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", s->port);
	argv[argc++] = harness_binary();
	argv[argc++] = "-l";
	argv[argc++] = listen;
	argv[argc++] = "--log-level";
	argv[argc++] = "debug";
	argv[argc++] = "--allow-anonymous";
	for (i = 0; extra_args != NULL && extra_args[i] != NULL &&
	    argc < 63; i++)
		argv[argc++] = extra_args[i];
	argv[argc] = NULL;

	fd = open(s->log, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		close(fd);
		return -1;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		/* Never outlive a crashed test program. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		signal(SIGPIPE, SIG_DFL);
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fd);
	fprintf(stderr, "[harness] started pid %d:", (int)pid);
	for (i = 0; i < argc; i++)
		fprintf(stderr, " %s", argv[i]);
	fprintf(stderr, " (log %s)\n", s->log);
	return pid;
}

int
server_alive(struct server *s)
{
	int wstatus;

	if (s->pid <= 0)
		return 0;
	if (waitpid(s->pid, &wstatus, WNOHANG) == s->pid) {
		fprintf(stderr, "[harness] pid %d exited early, status %d\n",
		    (int)s->pid, status_of(wstatus));
		s->pid = 0;
		return 0;
	}
	return 1;
}

static int
healthz(int port)
{
	static const char req[] = "GET /healthz HTTP/1.1\r\n"
	    "Host: 127.0.0.1\r\nConnection: close\r\n\r\n";
	struct http_resp r;
	int st;

	st = http_request(port, req, sizeof(req) - 1, &r, 1000);
	http_resp_free(&r);
	return st;
}

int
server_start(struct server *s, const char *const extra_args[])
{
	int attempt, fd;
	int64_t deadline;

	memset(s, 0, sizeof(*s));
	snprintf(s->log, sizeof(s->log), "/tmp/parleyd-test-XXXXXX");
	fd = mkstemp(s->log);
	if (fd < 0)
		return -1;
	close(fd);

	for (attempt = 0; attempt < START_ATTEMPTS; attempt++) {
		s->port = harness_free_port();
		if (s->port < 0)
			return -1;
		s->pid = spawn(s, extra_args);
		if (s->pid < 0) {
			s->pid = 0;
			return -1;
		}
		deadline = wsc_now_ms() + START_TIMEOUT_MS;
		while (wsc_now_ms() < deadline) {
			if (healthz(s->port) == 200)
				return 0;
			if (!server_alive(s))
				break;
			wsc_sleep_ms(25);
		}
		if (s->pid > 0) {
			fprintf(stderr, "[harness] /healthz not 200 within "
			    "%d ms\n", START_TIMEOUT_MS);
			server_stop(s, SIGKILL, 1000);
			server_dump_log(s, "start timeout");
			return -1;
		}
		if (!log_says_in_use(s)) {
			server_dump_log(s, "exited during start");
			return -1;
		}
		fprintf(stderr, "[harness] port %d taken, retrying\n", s->port);
	}
	server_dump_log(s, "no free port");
	return -1;
}

int
server_stop(struct server *s, int sig, int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	int wstatus;
	pid_t r;

	if (s->pid <= 0)
		return -1;
	if (sig != 0)
		kill(s->pid, sig);
	for (;;) {
		r = waitpid(s->pid, &wstatus, WNOHANG);
		if (r == s->pid) {
			s->pid = 0;
			return status_of(wstatus);
		}
		if (r < 0 && errno != EINTR) {
			s->pid = 0;
			return -1;
		}
		if (wsc_now_ms() >= deadline)
			break;
		wsc_sleep_ms(10);
	}
	fprintf(stderr, "[harness] pid %d did not exit within %d ms after "
	    "signal %d: SIGKILL\n", (int)s->pid, timeout_ms, sig);
	kill(s->pid, SIGKILL);
	while (waitpid(s->pid, &wstatus, 0) < 0 && errno == EINTR)
		;
	s->pid = 0;
	return -1;
}

int
server_metric(struct server *s, const char *name, double *value)
{
	static const char req[] = "GET /metrics HTTP/1.1\r\n"
	    "Host: 127.0.0.1\r\nConnection: close\r\n\r\n";
	struct http_resp r;
	size_t nlen = strlen(name);
	const char *line;
	char *end;
	int rc = -1;

	if (http_request(s->port, req, sizeof(req) - 1, &r, 3000) != 200) {
		http_resp_free(&r);
		return -1;
	}
	for (line = r.body; line != NULL && *line != '\0';
	    line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		if (*line == '#')
			continue;
		if (strncmp(line, name, nlen) == 0 && line[nlen] == ' ') {
			*value = strtod(line + nlen + 1, &end);
			if (end != line + nlen + 1)
				rc = 0;
			break;
		}
	}
	http_resp_free(&r);
	return rc;
}

/* ---- raw HTTP ------------------------------------------------------- */

int
http_open(struct http_conn *hc, int port, int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	struct sockaddr_in sa;
	socklen_t sl = sizeof(int);
	int err = 0;

	hc->len = 0;
	hc->buf = malloc(HTTP_BUF);
	hc->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (hc->buf == NULL || hc->fd < 0)
		goto err;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(hc->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return 0;
	if (errno != EINPROGRESS || wsc_wait_fd(hc->fd, POLLOUT, deadline) != 1 ||
	    getsockopt(hc->fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0 || err)
		goto err;
	return 0;
err:
	http_close(hc);
	return -1;
}

int
http_send(struct http_conn *hc, const void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = send(hc->fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wsc_wait_fd(hc->fd, POLLOUT, deadline) != 1)
				return -1;
		} else {
			return -1;
		}
	}
	return 0;
}

/* Read more into hc->buf: >0 bytes, 0 timeout, -1 EOF/error/full. */
static int
http_fill(struct http_conn *hc, int64_t deadline)
{
	ssize_t n;
	int r;

	if (hc->len >= HTTP_BUF - 1)
		return -1;
	for (;;) {
		n = recv(hc->fd, hc->buf + hc->len, HTTP_BUF - 1 - hc->len, 0);
		if (n > 0) {
			hc->len += (size_t)n;
			hc->buf[hc->len] = '\0';
			return (int)n;
		}
		if (n == 0)
			return -1;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		r = wsc_wait_fd(hc->fd, POLLIN, deadline);
		if (r != 1)
			return r;
	}
}

int
http_header(const struct http_resp *r, const char *name, char *out,
    size_t outsz)
{
	return wsc_head_header(r->head, name, out, outsz);
}

int
http_read(struct http_conn *hc, struct http_resp *r, int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	char tmp[64], *end;
	size_t headlen, clen = 0, have;
	int has_cl = 0, to_eof = 0, status, f;

	memset(r, 0, sizeof(*r));
	r->status = -1;
	if (hc->fd < 0)
		return -1;
	hc->buf[hc->len] = '\0';
	while ((end = strstr(hc->buf, "\r\n\r\n")) == NULL)
		if (http_fill(hc, deadline) <= 0)
			return -1;
	headlen = (size_t)(end - hc->buf) + 4;
	if (headlen >= sizeof(r->head))
		return -1;
	memcpy(r->head, hc->buf, headlen);
	r->head[headlen] = '\0';
	if (sscanf(r->head, "HTTP/1.%*1[01] %3d", &status) != 1)
		return -1;
	if (wsc_head_header(r->head, "Content-Length", tmp, sizeof(tmp))) {
		has_cl = 1;
		clen = strtoul(tmp, NULL, 10);
	} else if ((wsc_head_header(r->head, "Connection", tmp, sizeof(tmp)) &&
	    strcasestr(tmp, "close") != NULL) ||
	    strncmp(r->head, "HTTP/1.0", 8) == 0) {
		to_eof = 1;
	}
	if (status == 204 || status == 304 || status / 100 == 1)
		has_cl = 1, clen = 0, to_eof = 0;
	for (;;) {
		have = hc->len - headlen;
		if (has_cl && have >= clen)
			break;
		if (!has_cl && !to_eof)
			break;
		f = http_fill(hc, deadline);
		if (f < 0 && to_eof)
			break;
		if (f <= 0)
			return -1;
	}
	have = hc->len - headlen;
	if (has_cl && have > clen)
		have = clen;
	r->body = malloc(have + 1);
	if (r->body == NULL)
		return -1;
	memcpy(r->body, hc->buf + headlen, have);
	r->body[have] = '\0';
	r->body_len = have;
	memmove(hc->buf, hc->buf + headlen + have, hc->len - headlen - have);
	hc->len -= headlen + have;
	hc->buf[hc->len] = '\0';
	r->status = status;
	return status;
}

int
http_wait_eof(struct http_conn *hc, int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	int r;

	for (;;) {
		hc->len = 0;
		r = http_fill(hc, deadline);
		if (r < 0)
			return 1;
		if (r == 0)
			return 0;
	}
}

void
http_close(struct http_conn *hc)
{
	if (hc->fd >= 0)
		close(hc->fd);
	hc->fd = -1;
	free(hc->buf);
	hc->buf = NULL;
	hc->len = 0;
}

int
http_request(int port, const char *req, size_t len, struct http_resp *r,
    int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	struct http_conn hc;
	int st;

	memset(r, 0, sizeof(*r));
	r->status = -1;
	if (http_open(&hc, port, timeout_ms) < 0)
		return -1;
	/* The server may answer (and close) before reading everything. */
	(void)http_send(&hc, req, len, wsc_remaining_ms(deadline));
	st = http_read(&hc, r, wsc_remaining_ms(deadline));
	http_close(&hc);
	return st;
}

int
http_get_status(int port, const char *path, int timeout_ms)
{
	char req[512];
	struct http_resp r;
	int st;

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Connection: close\r\n\r\n", path);
	st = http_request(port, req, strlen(req), &r, timeout_ms);
	http_resp_free(&r);
	return st;
}

void
http_resp_free(struct http_resp *r)
{
	free(r->body);
	r->body = NULL;
}

/* ---- the CUnit main ---------------------------------------------------- */

int
harness_begin(const char *prog)
{
	const char *bin = harness_binary();

	if (access(bin, X_OK) != 0) {
		fprintf(stderr, "%s: FAIL: server binary %s is not executable (%s); "
		    "set PARLEYD\n", prog, bin, strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	return CU_initialize_registry() == CUE_SUCCESS ? 0 : 1;
}

int
harness_suite_start(struct server *s, const char *const args[])
{
	if (server_start(s, args) < 0) {
		/* server_start already printed the log. */
		fprintf(stderr, "cannot start %s\n", harness_binary());
		server_remove_log(s);
		return -1;
	}
	return 0;
}

int
harness_suite_cleanup(struct server *s)
{
	int st = 0;

	/* Normally the suite's stop test already stopped it. */
	if (s->pid > 0) {
		st = server_stop(s, SIGTERM, 5000);
		if (st != 0)
			server_dump_log(s, "cleanup: bad exit status");
	}
	server_remove_log(s);
	return st == 0 ? 0 : -1;
}

void
harness_test_stop(struct server *s)
{
	int st;

	CU_ASSERT_FATAL(s->pid > 0);
	st = server_stop(s, SIGTERM, 5000);
	if (st != 0) {
		fprintf(stderr, "exit status after SIGTERM: %d\n", st);
		server_dump_log(s, "exit status after SIGTERM");
	}
	CU_ASSERT_EQUAL(st, 0);
}

int
harness_add_suite(const char *name, CU_InitializeFunc init,
    CU_CleanupFunc cleanup, const struct test_def *t)
{
	CU_pSuite s = CU_add_suite(name, init, cleanup);

	if (s == NULL)
		return -1;
	for (; t->name != NULL; t++)
		if (CU_add_test(s, t->name, t->fn) == NULL)
			return -1;
	return 0;
}

int
harness_run(void)
{
	const char *only = getenv("PARLEY_TEST_SUITES");
	unsigned failures;

	CU_basic_set_mode(CU_BRM_VERBOSE);
	if (only != NULL && *only != '\0') {
		/* For debugging: run the suites whose name contains it. */
		for (CU_pSuite s = CU_get_registry()->pSuite; s != NULL; s = s->pNext)
			if (strstr(s->pName, only) != NULL)
				CU_basic_run_suite(s);
	} else {
		CU_basic_run_tests();
	}
	failures = CU_get_number_of_failures() +
	    CU_get_number_of_suites_failed() + CU_get_number_of_tests_failed();
	CU_cleanup_registry();
	return failures ? 1 : 0;
}

/* ---- reading server frames ---- */

const char *
jstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

int
jstreq(const json_t *o, const char *k, const char *v)
{
	const char *s = jstr(o, k);

	return s != NULL && v != NULL && strcmp(s, v) == 0;
}

long long
jint(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);

	return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

/* ---- running programs, the private PostgreSQL ------------------------------ */

struct obuf {
	char *p;
	size_t len, cap;
};

/* Read what fd has now: 1 read something, 0 nothing yet, -1 EOF or error. */
static int
obuf_read(struct obuf *b, int fd)
{
	char tmp[4096], *np;
	ssize_t n = read(fd, tmp, sizeof(tmp));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return -1;
	if (b->len + (size_t)n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 8192;

		while (cap < b->len + (size_t)n + 1)
			cap *= 2;
		if ((np = realloc(b->p, cap)) == NULL)
			return -1;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, tmp, (size_t)n);
	b->len += (size_t)n;
	b->p[b->len] = '\0';
	return 1;
}

int
harness_exec(const char *const argv[], char **out, char **err, int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	int po[2] = { -1, -1 }, pe[2] = { -1, -1 }, wstatus = 0, st = -1;
	struct obuf b[2] = { { NULL, 0, 0 }, { NULL, 0, 0 } };
	int open_[2], done = 0;
	pid_t pid;

	if (out != NULL)
		*out = NULL;
	if (err != NULL)
		*err = NULL;
	if (pipe2(po, O_CLOEXEC) < 0 || (err != NULL && pipe2(pe, O_CLOEXEC) < 0))
		goto fail;
	fflush(NULL);
	if ((pid = fork()) < 0)
		goto fail;
	if (pid == 0) {
		setpgid(0, 0);
		dup2(po[1], 1);
		if (err != NULL)
			dup2(pe[1], 2);
		signal(SIGPIPE, SIG_DFL);
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(po[1]);
	po[1] = -1;
	if (pe[1] >= 0)
		close(pe[1]);
	pe[1] = -1;
	fcntl(po[0], F_SETFL, O_NONBLOCK);
	if (pe[0] >= 0)
		fcntl(pe[0], F_SETFL, O_NONBLOCK);
	open_[0] = 1;
	open_[1] = pe[0] >= 0;
	for (;;) {
		struct pollfd pfd[2];
		nfds_t k = 0;
		int got = 0;

		for (int i = 0; i < 2; i++) {
			int r;

			if (!open_[i])
				continue;
			while ((r = obuf_read(&b[i], i == 0 ? po[0] : pe[0])) > 0)
				got = 1;
			if (r < 0)
				open_[i] = 0;
		}
		if (done && !got)
			break;   /* exited, and nothing more is waiting */
		if (!done && waitpid(pid, &wstatus, WNOHANG) == pid) {
			done = 1;
			continue;   /* one more pass for what it wrote last */
		}
		if (done)
			continue;
		if (wsc_now_ms() >= deadline) {
			fprintf(stderr, "[harness] %s did not finish in %d ms: killed\n",
			    argv[0], timeout_ms);
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
				;
			goto fail;
		}
		for (int i = 0; i < 2; i++)
			if (open_[i]) {
				pfd[k].fd = i == 0 ? po[0] : pe[0];
				pfd[k++].events = POLLIN;
			}
		(void)poll(pfd, k, 20);
	}
	if (WIFEXITED(wstatus))
		st = WEXITSTATUS(wstatus);
	else if (WIFSIGNALED(wstatus))
		st = 128 + WTERMSIG(wstatus);
	if (out != NULL) {
		*out = b[0].p != NULL ? b[0].p : strdup("");
		b[0].p = NULL;
	}
	if (err != NULL) {
		*err = b[1].p != NULL ? b[1].p : strdup("");
		b[1].p = NULL;
	}
fail:
	for (int i = 0; i < 2; i++) {
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
	}
	free(b[0].p);
	free(b[1].p);
	return st;
}

/* tests/pg-private.sh into path. 0, or -1 (said). */
static int
pg_script_find(char path[PATH_MAX])
{
	const char *env = getenv("PARLEY_SRCDIR");
	char cand[4][PATH_MAX / 2];
	int n = 0;

	if (env != NULL && *env != '\0')
		snprintf(cand[n++], sizeof(cand[0]), "%s/tests/pg-private.sh", env);
#ifdef PARLEY_TOP_SRCDIR
	snprintf(cand[n++], sizeof(cand[0]), "%s/tests/pg-private.sh", PARLEY_TOP_SRCDIR);
#endif
	snprintf(cand[n++], sizeof(cand[0]), "../tests/pg-private.sh");
	snprintf(cand[n++], sizeof(cand[0]), "tests/pg-private.sh");
	for (int i = 0; i < n; i++)
		if (access(cand[i], X_OK) == 0) {
			if (realpath(cand[i], path) == NULL)
				memcpy(path, cand[i], strlen(cand[i]) + 1);
			return 0;
		}
	fprintf(stderr, "[harness] FAIL: tests/pg-private.sh not found "
	    "(set PARLEY_SRCDIR to the source tree)\n");
	return -1;
}

/* pg-private.sh VERB DIR, its stdout into *out when not NULL; 60 s at most. */
static int
pg_script_run(const struct pg_cluster *pg, const char *verb, char **out)
{
	const char *argv[] = { pg->script, verb, pg->dir, NULL };
	int st = harness_exec(argv, out, NULL, 60000);

	if (st != 0)
		fprintf(stderr, "[harness] %s %s %s: status %d\n", pg->script, verb,
		    pg->dir, st);
	return st;
}

int
pg_cluster_start(struct pg_cluster *pg)
{
	char *out = NULL, *nl;
	int fd;

	memset(pg, 0, sizeof(*pg));
	if (pg_script_find(pg->script) != 0)
		return -1;
	/* A unique name; the script makes the directory. */
	snprintf(pg->dir, sizeof(pg->dir), "/tmp/parley-test-pg.XXXXXX");
	if ((fd = mkstemp(pg->dir)) < 0) {
		pg->dir[0] = '\0';
		return -1;
	}
	close(fd);
	unlink(pg->dir);
	if (pg_script_run(pg, "start", &out) != 0 || out == NULL ||
	    strncmp(out, "host=", 5) != 0) {
		fprintf(stderr, "[harness] FAIL: cannot start a private PostgreSQL "
		    "with %s (is PostgreSQL installed? Debian: postgresql-15; or set "
		    "PG_BINDIR); it said: %s\n", pg->script, out != NULL ? out : "");
		free(out);
		(void)pg_cluster_stop(pg);
		return -1;
	}
	if ((nl = strchr(out, '\n')) != NULL)
		*nl = '\0';
	snprintf(pg->conninfo, sizeof(pg->conninfo), "%s", out);
	free(out);
	fprintf(stderr, "[harness] private PostgreSQL in %s: %s\n", pg->dir,
	    pg->conninfo);
	return 0;
}

int
pg_cluster_run(struct pg_cluster *pg, const char *verb)
{
	return pg_script_run(pg, verb, NULL);
}

int
pg_cluster_stop(struct pg_cluster *pg)
{
	int st = 0;

	if (pg->dir[0] != '\0')
		st = pg_script_run(pg, "stop", NULL);
	pg->dir[0] = '\0';
	return st == 0 ? 0 : -1;
}

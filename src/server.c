#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include <ck_pr.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "log.h"
#include "persist.h"
#include "server.h"
#include "session.h"
#include "settings.h"
#include "worker.h"
#include "xmalloc.h"

#define LISTEN_BACKLOG 4096

uint64_t
server_reserved_fds(unsigned nworkers)
{
	/*
	 * Per worker: listener, eventfd, epoll, accept reserve, and room for a
	 * database connection; for the process: stdio, logs, the main loop's
	 * signal pipe and epoll, the persistence connection, and some slack.
	 */
	return 32 + 8 * (uint64_t)nworkers;
}

static int
raise_nofile(uint64_t *limit)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t want = rl.rlim_max;

		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_warn("nofile_raise_failed want=%llu error=\"%s\"",
			    (unsigned long long)want, strerror(errno));
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	*limit = rl.rlim_cur == RLIM_INFINITY ? 1048576 : rl.rlim_cur;
	return 0;
}

static int
open_listener(const struct settings *cfg)
{
	struct addrinfo hints, *res = NULL;
	char port[8];
	int fd = -1, one = 1, r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(port, sizeof(port), "%u", cfg->listen_port);
	if ((r = getaddrinfo(cfg->listen_host, port, &hints, &res)) != 0) {
		log_error("listen_failed addr=%s:%u error=\"%s\"", cfg->listen_host,
		    cfg->listen_port, gai_strerror(r));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
	    listen(fd, LISTEN_BACKLOG) != 0) {
		log_error("listen_failed addr=%s:%u error=\"%s\"", cfg->listen_host,
		    cfg->listen_port, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

static unsigned
online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned)n : 1;
}

/*
 * The HS256 secret: the file's content without a trailing newline, or
 * PARLEY_JWT_SECRET. Without one no token verifies; say so at start.
 */
static int
load_jwt_secret(struct server *srv, const struct settings *cfg)
{
	const char *env = getenv("PARLEY_JWT_SECRET");
	char buf[4097];
	size_t n = 0;

	if (cfg->jwt_secret_file != NULL) {
		FILE *f = fopen(cfg->jwt_secret_file, "r");

		if (f == NULL) {
			log_error("jwt_secret_unreadable file=%s error=\"%s\"",
			    cfg->jwt_secret_file, strerror(errno));
			return -1;
		}
		n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		if (n == sizeof(buf)) {
			log_error("jwt_secret_too_long file=%s max_bytes=4096", cfg->jwt_secret_file);
			return -1;
		}
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			n--;
	} else if (env != NULL) {
		n = strlen(env);
		if (n >= sizeof(buf)) {
			log_error("jwt_secret_too_long source=env max_bytes=4096");
			return -1;
		}
		memcpy(buf, env, n);
	}
	if (n == 0) {
		if (cfg->allow_anonymous)
			log_info("jwt_secret_absent tokens=refused anonymous=allowed");
		else
			log_warn("jwt_secret_absent tokens=refused anonymous=refused "
			    "hint=\"set --jwt-secret-file, PARLEY_JWT_SECRET or --allow-anonymous\"");
	} else {
		srv->jwt_secret = xmalloc(n);
		memcpy(srv->jwt_secret, buf, n);
		srv->jwt_secret_len = n;
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	srv->verifier.secret = srv->jwt_secret;
	srv->verifier.secret_len = srv->jwt_secret_len;
	srv->verifier.issuer = cfg->jwt_issuer;
	srv->verifier.audience = cfg->jwt_audience;
	srv->verifier.leeway_s = JWT_DEFAULT_LEEWAY;
	return 0;
}

/* Session ids: a random prefix per process run, then worker and counter. */
static void
session_prefix(struct server *srv)
{
	unsigned char r[4];

	if (RAND_bytes(r, sizeof(r)) != 1)
		memset(r, 0, sizeof(r));
	snprintf(srv->session_prefix, sizeof(srv->session_prefix), "%02x%02x%02x%02x",
	    r[0], r[1], r[2], r[3]);
}

/* Rooms tell the persistence thread's commits to their home worker. */
static void
persist_post(void *ctx, unsigned w, struct mailbox_msg *msg)
{
	struct server *srv = ctx;

	worker_post(srv->workers[w], msg);
}

static int
server_persist_new(struct server *srv, const struct settings *cfg)
{
	struct persist_config pc;

	memset(&pc, 0, sizeof(pc));
	pc.conninfo = cfg->db;
	pc.batch_max = (unsigned)cfg->batch_max;
	pc.batch_delay_ms = (unsigned)cfg->batch_delay;
	pc.backlog = cfg->backlog;
	pc.committed_kind = WORKER_MSG_COMMITTED;
	pc.post = persist_post;
	pc.ctx = srv;
	srv->persist = persist_new(&pc);
	return srv->persist == NULL ? -1 : 0;
}

int
server_db_ready(const struct server *srv)
{
	return srv->persist == NULL || persist_ready(srv->persist);
}

int
server_init(struct server *srv, const struct settings *cfg)
{
	memset(srv, 0, sizeof(*srv));
	srv->cfg = cfg;
	srv->nworkers = cfg->threads ? cfg->threads : online_cpus();
	if (raise_nofile(&srv->nofile) != 0) {
		log_error("nofile_unknown error=\"%s\"", strerror(errno));
		return -1;
	}
	if (srv->nofile <= server_reserved_fds(srv->nworkers) + 16) {
		log_error("nofile_too_low nofile=%llu needed_at_least=%llu",
		    (unsigned long long)srv->nofile,
		    (unsigned long long)server_reserved_fds(srv->nworkers) + 16);
		return -1;
	}
	srv->capacity = srv->nofile - server_reserved_fds(srv->nworkers);
	srv->max_connections = srv->capacity;
	if (cfg->max_connections != 0 && cfg->max_connections < srv->capacity)
		srv->max_connections = cfg->max_connections;
	else if (cfg->max_connections > srv->capacity)
		log_warn("max_connections_capped requested=%llu capacity=%llu",
		    (unsigned long long)cfg->max_connections,
		    (unsigned long long)srv->capacity);
	log_info("capacity nofile=%llu reserved=%llu connections=%llu max_connections=%llu",
	    (unsigned long long)srv->nofile,
	    (unsigned long long)server_reserved_fds(srv->nworkers),
	    (unsigned long long)srv->capacity, (unsigned long long)srv->max_connections);

	if (load_jwt_secret(srv, cfg) != 0)
		return -1;
	session_prefix(srv);
	if (cfg->db != NULL && server_persist_new(srv, cfg) != 0)
		return -1;

	srv->workers = xcalloc(srv->nworkers, sizeof(*srv->workers));
	for (unsigned i = 0; i < srv->nworkers; i++) {
		int fd = open_listener(cfg);

		if (fd < 0)
			return -1;
		if ((srv->workers[i] = worker_new(srv, i, fd)) == NULL) {
			close(fd);
			return -1;
		}
	}
	return 0;
}

int
server_stopping(const struct server *srv)
{
	return ck_pr_load_int(&srv->stopping);
}

static void
begin_shutdown(struct server *srv, int sig)
{
	if (server_stopping(srv))
		return;
	log_info("shutdown signal=%s connections=%d", strsignal(sig),
	    ck_pr_load_int(&srv->nconns));
	ck_pr_store_int(&srv->stopping, 1);
	for (unsigned i = 0; i < srv->nworkers; i++) {
		struct mailbox_msg *m = xcalloc(1, sizeof(*m));

		m->kind = WORKER_MSG_SHUTDOWN;
		worker_post(srv->workers[i], m);
	}
	/* The main loop's job is done; workers finish on their own. */
	event_base_loopbreak(srv->base);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;

	if (sig == SIGHUP) {
		log_info("sighup action=none reason=\"reload lands with the operations work\"");
		return;
	}
	begin_shutdown(srv, (int)sig);
}

int
server_run(struct server *srv)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	struct event *sev[3] = { NULL, NULL, NULL };
	int status = 0;

	signal(SIGPIPE, SIG_IGN);
	if ((srv->base = event_base_new()) == NULL) {
		log_error("event_base_failed");
		return 1;
	}
	for (int i = 0; i < 3; i++) {
		sev[i] = evsignal_new(srv->base, sigs[i], signal_cb, srv);
		if (sev[i] == NULL || event_add(sev[i], NULL) != 0) {
			log_error("signal_setup_failed signal=%d", sigs[i]);
			status = 1;
			goto out;
		}
	}
	if (srv->persist != NULL && (errno = persist_start(srv->persist)) != 0) {
		log_error("persist_start_failed error=\"%s\"", strerror(errno));
		status = 1;
		goto out;
	}
	for (unsigned i = 0; i < srv->nworkers; i++) {
		int err = worker_start(srv->workers[i]);

		if (err != 0) {
			log_error("worker_start_failed worker=%u error=\"%s\"", i, strerror(err));
			status = 1;
			begin_shutdown(srv, SIGTERM);
			break;
		}
	}
	if (status == 0) {
		log_info("listening addr=%s:%u threads=%u", srv->cfg->listen_host,
		    srv->cfg->listen_port, srv->nworkers);
		event_base_dispatch(srv->base);
	}
out:
	for (unsigned i = 0; i < srv->nworkers; i++)
		worker_join(srv->workers[i]);
	for (int i = 0; i < 3; i++)
		if (sev[i] != NULL)
			event_free(sev[i]);
	log_info("stopped status=%d", status);
	return status;
}

void
server_free(struct server *srv)
{
	if (srv->workers != NULL) {
		for (unsigned i = 0; i < srv->nworkers; i++)
			if (srv->workers[i] != NULL)
				worker_join(srv->workers[i]);
		for (unsigned i = 0; i < srv->nworkers; i++)
			if (srv->workers[i] == NULL)
				goto free_workers;   /* init failed part-way: nothing ran */
		for (unsigned i = 0; i < srv->nworkers; i++)
			worker_close_conns(srv->workers[i]);
		worker_quiesce(srv->workers, srv->nworkers);
		if (srv->persist != NULL) {
			/* Whatever is still queued is committed before we go. */
			persist_stop(srv->persist, 0);
			worker_quiesce(srv->workers, srv->nworkers);
		}
free_workers:
		for (unsigned i = 0; i < srv->nworkers; i++)
			if (srv->workers[i] != NULL)
				worker_free(srv->workers[i]);
		free(srv->workers);
	}
	if (srv->persist != NULL) {
		persist_stop(srv->persist, 1);   /* init failed part-way: nothing was acked */
		persist_free(srv->persist);
	}
	if (srv->base != NULL)
		event_base_free(srv->base);
	if (srv->jwt_secret != NULL) {
		OPENSSL_cleanse(srv->jwt_secret, srv->jwt_secret_len);
		free(srv->jwt_secret);
	}
	memset(srv, 0, sizeof(*srv));
}

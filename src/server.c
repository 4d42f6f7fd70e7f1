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

#include "live.h"
#include "log.h"
#include "monotime.h"
#include "notify.h"
#include "persist.h"
#include "reload.h"
#include "server.h"
#include "session.h"
#include "settings.h"
#include "worker.h"
#include "xmalloc.h"

#define LISTEN_BACKLOG 4096
#define NOTIFY_TICK_MS 250        /* readiness poll, liveness pings */
#define NOTIFY_STATUS_MS 2000     /* STATUS= refresh */
#define WORKER_STALL_MS 5000      /* a ping unanswered this long is logged */

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
server_init(struct server *srv, const struct settings *cfg, int argc, char **argv)
{
	memset(srv, 0, sizeof(*srv));
	srv->cfg = cfg;
	srv->argc = argc;
	srv->argv = argv;
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
	if ((srv->live = live_new(cfg, srv->capacity, 1)) == NULL)
		return -1;
	log_info("capacity nofile=%llu reserved=%llu connections=%llu max_connections=%llu",
	    (unsigned long long)srv->nofile,
	    (unsigned long long)server_reserved_fds(srv->nworkers),
	    (unsigned long long)srv->capacity,
	    (unsigned long long)srv->live->max_connections);
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
	notify_send("STOPPING=1\nSTATUS=stopping: draining %d connections",
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
		log_info("sighup action=reload");
		(void)server_reload(srv);   /* logs what it did */
		return;
	}
	begin_shutdown(srv, (int)sig);
}

static void
notify_status(struct server *srv)
{
	notify_send("STATUS=%d connections, database %s",
	    ck_pr_load_int(&srv->nconns),
	    srv->persist == NULL ? "not used (in memory)" :
	    server_db_ready(srv) ? "up" : "unavailable");
}

/*
 * Liveness for the watchdog: a ping goes to every worker, and the next one
 * only once all have answered (stored its number in their pong). So a
 * worker stuck in a loop stops the keep-alives and systemd restarts the
 * service; a worker busy for a moment only delays them. Returns 1 when the
 * workers answered within the last max_age_ms.
 */
static int
workers_alive(struct server *srv, int64_t now, int64_t max_age_ms)
{
	for (unsigned i = 0; i < srv->nworkers; i++) {
		if (ck_pr_load_64(&srv->workers[i]->pong) == srv->ping_seq)
			continue;
		if (now - srv->ping_ms > WORKER_STALL_MS && !srv->stall_logged) {
			log_warn("worker_stalled worker=%u waited_ms=%lld action=\"watchdog withheld\"",
			    i, (long long)(now - srv->ping_ms));
			srv->stall_logged = 1;
		}
		return now - srv->alive_ms <= max_age_ms;
	}
	if (srv->stall_logged)
		log_info("worker_recovered waited_ms=%lld", (long long)(now - srv->ping_ms));
	srv->stall_logged = 0;
	srv->alive_ms = now;
	srv->ping_ms = now;
	srv->ping_seq++;
	for (unsigned i = 0; i < srv->nworkers; i++) {
		struct worker_ping_msg *m = xcalloc(1, sizeof(*m));

		m->base.kind = WORKER_MSG_PING;
		m->seq = srv->ping_seq;
		worker_post(srv->workers[i], &m->base);
	}
	return 1;
}

/*
 * Main thread, every NOTIFY_TICK_MS: READY=1 once the listeners are open
 * and the database (with --db) has its schema and answers; the watchdog
 * keep-alive and the status line from the start, so "systemctl status"
 * shows a start waiting for the database as such.
 */
static void
notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	int64_t every = (int64_t)(notify_watchdog_usec() / 2000);   /* ms: half the interval */
	int64_t now = mono_ms();

	if (!srv->ready_sent && server_db_ready(srv)) {
		srv->ready_sent = 1;
		log_info("ready max_connections=%llu database=%s",
		    (unsigned long long)srv->live->max_connections,
		    srv->persist != NULL ? "up" : "none");
		notify_send("READY=1\nMAINPID=%ld", (long)getpid());
		notify_status(srv);
		srv->status_ms = now;
	}
	if (workers_alive(srv, now, every) && every > 0 &&
	    now - srv->watchdog_ms >= every) {
		notify_send("WATCHDOG=1");
		srv->watchdog_ms = now;
	}
	if (now - srv->status_ms >= NOTIFY_STATUS_MS) {
		notify_status(srv);
		srv->status_ms = now;
	}
}

static int
start_notify(struct server *srv)
{
	struct timeval tv = { 0, NOTIFY_TICK_MS * 1000 };

	srv->notify_ev = event_new(srv->base, -1, EV_PERSIST, notify_cb, srv);
	if (srv->notify_ev == NULL || event_add(srv->notify_ev, &tv) != 0)
		return -1;
	return 0;
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
	if (status == 0 && start_notify(srv) != 0) {
		log_error("notify_timer_failed");
		status = 1;
		begin_shutdown(srv, SIGTERM);
	}
	if (status == 0) {
		log_info("listening addr=%s:%u threads=%u", srv->cfg->listen_host,
		    srv->cfg->listen_port, srv->nworkers);
		notify_cb(-1, 0, srv);   /* READY=1 now, not a tick later */
		event_base_dispatch(srv->base);
	}
out:
	for (unsigned i = 0; i < srv->nworkers; i++)
		worker_join(srv->workers[i]);
	for (int i = 0; i < 3; i++)
		if (sev[i] != NULL)
			event_free(sev[i]);
	if (srv->notify_ev != NULL)
		event_free(srv->notify_ev);
	srv->notify_ev = NULL;
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
	live_unref(srv->live);
	notify_close();
	memset(srv, 0, sizeof(*srv));
}

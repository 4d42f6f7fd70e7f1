#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include <ck_pr.h>

#include "log.h"
#include "server.h"
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
			if (srv->workers[i] != NULL)
				worker_free(srv->workers[i]);
		free(srv->workers);
	}
	if (srv->base != NULL)
		event_base_free(srv->base);
	memset(srv, 0, sizeof(*srv));
}

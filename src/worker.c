#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include <ck_pr.h>

#include "conn.h"
#include "live.h"
#include "log.h"
#include "persist.h"
#include "reader.h"
#include "rooms.h"
#include "server.h"
#include "settings.h"
#include "worker.h"
#include "xmalloc.h"

#define ACCEPT_BUDGET 64        /* accepts per wake-up: new clients cannot starve old ones */
#define MAILBOX_BUDGET 1024     /* messages per wake-up, then yield to I/O */
#define READ_SCRATCH (64 * 1024)
#define SHUTDOWN_GRACE_MS 3000  /* clients get this long to answer our 1001 */

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t
worker_clock_ms64(const struct worker *w)
{
	return (uint64_t)(mono_ms() - w->mono_origin_ms);
}

uint32_t
worker_clock_ms(const struct worker *w)
{
	return (uint32_t)worker_clock_ms64(w);
}

uint32_t
worker_clock_tick(const struct worker *w)
{
	return (uint32_t)(worker_clock_ms64(w) / WHEEL_TICK_MS);
}

int64_t
worker_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
worker_want_flush(struct worker *w)
{
	/*
	 * Activated from a callback, the flush event joins the tail of the
	 * active queue, behind every socket event of this iteration: all the
	 * output they produce is written by one pass.
	 */
	if (w->flush_head == NULL && w->close_head == NULL)
		event_active(w->flush_ev, EV_WRITE, 0);
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct conn *c;

	/* Until both lists are empty: a flush may queue a close and back. */
	while (w->close_head != NULL || w->flush_head != NULL) {
		while ((c = w->close_head) != NULL) {
			conn_close_unlink(c);
			conn_run_async_close(c);
		}
		while ((c = w->flush_head) != NULL) {
			conn_flush_unlink(c);
			conn_flush(c);   /* may destroy c: it is already off the list */
		}
	}
}

/* EMFILE: the listen queue would spin. Give up our spare descriptor to
 * accept and drop one connection, then take the spare back. */
static void
shed_one(struct worker *w)
{
	int fd;

	if (w->reserve_fd < 0)
		return;
	close(w->reserve_fd);
	fd = accept(w->listen_fd, NULL, NULL);
	if (fd >= 0)
		close(fd);
	w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct worker *w = arg;
	struct server *srv = w->srv;

	for (int i = 0; i < ACCEPT_BUDGET; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int refused;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE) {
				log_warn("accept_failed worker=%u error=\"%s\" action=shed",
				    w->id, strerror(errno));
				shed_one(w);
			} else if (errno != EAGAIN) {
				log_warn("accept_failed worker=%u error=\"%s\"", w->id,
				    strerror(errno));
			}
			return;
		}
		/* One shared counter, touched per accept and close only. */
		refused = ck_pr_faa_int(&srv->nconns, 1) >= (int)w->live->max_connections;
		if (refused)
			ck_pr_dec_int(&srv->nconns);
		else
			metrics_raise_peak(&srv->nconns_peak,
			    ck_pr_load_int(&srv->nconns));
		METRIC_INC(&w->metrics, connections_accepted);
		if (refused)
			METRIC_INC(&w->metrics, connections_refused);
		conn_new(w, fd, refused);
	}
}

static void
worker_close_listener(struct worker *w)
{
	if (w->listen_fd < 0)
		return;
	event_del(w->listen_ev);
	close(w->listen_fd);
	w->listen_fd = -1;
}

/*
 * Stopping: leave once no connection is left on any worker. Rooms homed
 * here still owe replies to other workers' clients until then.
 */
void
worker_maybe_exit(struct worker *w)
{
	if (w->stopping && w->conns == NULL && ck_pr_load_int(&w->srv->nconns) == 0)
		event_base_loopbreak(w->base);
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct persist *p = w->srv->persist;

	/*
	 * Events accepted before the signal are committed, delivered and
	 * acked before anyone is dropped: while the database still holds
	 * some, keep waiting (systemd's stop timeout is the last word).
	 */
	if (p != NULL && persist_inflight(p) > 0) {
		struct timeval again = { 1, 0 };

		if (w->waiting_logged++ % 5 == 0)
			log_warn("shutdown_waiting_for_db worker=%u records=%llu", w->id,
			    (unsigned long long)persist_inflight(p));
		event_add(w->stop_ev, &again);
		return;
	}
	/* Grace period over: whoever has not answered our 1001 is dropped. */
	while (w->conns != NULL)
		conn_destroy(w->conns, 1);
	event_base_loopbreak(w->base);
}

static void
worker_begin_shutdown(struct worker *w)
{
	struct timeval grace = { SHUTDOWN_GRACE_MS / 1000, (SHUTDOWN_GRACE_MS % 1000) * 1000 };
	struct conn *c, *next;

	if (w->stopping)
		return;
	w->stopping = 1;
	worker_close_listener(w);
	for (c = w->conns; c != NULL; c = next) {
		next = c->next;
		conn_shutdown(c);   /* may destroy c */
	}
	event_add(w->stop_ev, &grace);
	worker_maybe_exit(w);
}

/* New settings from SIGHUP: from the next event on, everything reads them. */
static void
worker_reload(struct worker *w, struct worker_reload_msg *m)
{
	live_unref(w->live);
	w->live = m->live;
	free(m);
	rooms_apply_live(w);
}

void
worker_drop_msg(struct mailbox_msg *m)
{
	if (m->kind == WORKER_MSG_RELOAD)
		live_unref(((struct worker_reload_msg *)m)->live);
	free(m);
}

static void
mailbox_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct mailbox_msg *m;
	int n = 0;

	/* Clear first: a push racing with the takes below writes it again. */
	mailbox_clear_wakeup(&w->mb);
	(void)mailbox_pending(&w->mb);   /* takes in what was pushed: the depth */
	METRIC_SET(&w->metrics, mailbox_depth, w->mb.queued);
	while (n < MAILBOX_BUDGET && (m = mailbox_take(&w->mb)) != NULL) {
		n++;
		switch (m->kind) {
		case WORKER_MSG_SHUTDOWN:
			free(m);
			worker_begin_shutdown(w);
			break;
		case WORKER_MSG_RELOAD:
			worker_reload(w, (struct worker_reload_msg *)m);
			break;
		case WORKER_MSG_PING:
			ck_pr_store_64(&w->pong, ((struct worker_ping_msg *)m)->seq);
			free(m);
			break;
		default:
			if (rooms_handle(w, m))
				break;
			log_error("mailbox_unknown worker=%u kind=%d", w->id, m->kind);
			free(m);
			break;
		}
	}
	METRIC_ADD(&w->metrics, mailbox_messages, n);
	METRIC_MAX(&w->metrics, mailbox_high_water, w->mb.high_water);
	/* Budget spent with work left: run again after this iteration's I/O. */
	if (mailbox_pending(&w->mb))
		event_active(w->mb_ev, EV_READ, 0);
}

void
worker_post(struct worker *w, struct mailbox_msg *msg)
{
	mailbox_push(&w->mb, msg);
}

static void
wheel_run_slot(struct worker *w, uint32_t tick)
{
	struct conn *c = w->wheel[tick % WHEEL_SLOTS], *next;

	for (; c != NULL; c = next) {
		next = c->wheel_next;
		if (c->deadline <= tick)
			conn_timeout(c);   /* reschedules or destroys c */
	}
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint32_t now = worker_clock_tick(w);

	/* Catch up on every slot since the last tick; one lap covers them all. */
	if (now - w->wheel_done > WHEEL_SLOTS)
		w->wheel_done = now - WHEEL_SLOTS;
	while (w->wheel_done < now) {
		w->wheel_done++;
		wheel_run_slot(w, w->wheel_done);
	}
	rooms_tick(w);
	worker_maybe_exit(w);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	sigset_t all;

	/* Signals belong to the main thread's loop. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	rooms_bind_thread(w);
	log_debug("worker_started worker=%u", w->id);
	event_base_dispatch(w->base);
	log_debug("worker_stopped worker=%u", w->id);
	return NULL;
}

static int
worker_events(struct worker *w)
{
	struct timeval tick = { 0, WHEEL_TICK_MS * 1000 };

	w->listen_ev = event_new(w->base, w->listen_fd, EV_READ | EV_PERSIST, accept_cb, w);
	w->mb_ev = event_new(w->base, w->mb.efd, EV_READ | EV_PERSIST, mailbox_cb, w);
	w->flush_ev = event_new(w->base, -1, 0, flush_cb, w);
	w->tick_ev = event_new(w->base, -1, EV_PERSIST, tick_cb, w);
	w->stop_ev = event_new(w->base, -1, 0, stop_cb, w);
	if (w->listen_ev == NULL || w->mb_ev == NULL || w->flush_ev == NULL ||
	    w->tick_ev == NULL || w->stop_ev == NULL)
		return -1;
	if (event_add(w->listen_ev, NULL) != 0 || event_add(w->mb_ev, NULL) != 0 ||
	    event_add(w->tick_ev, &tick) != 0)
		return -1;
	return 0;
}

struct worker *
worker_new(struct server *srv, unsigned id, int listen_fd)
{
	struct worker *w;
	struct event_config *ec;

	if (posix_memalign((void **)&w, 64, sizeof(*w)) != 0)
		return NULL;
	memset(w, 0, sizeof(*w));
	w->id = id;
	w->srv = srv;
	live_ref(srv->live);
	w->live = srv->live;
	w->listen_fd = listen_fd;
	w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	w->rbuf_size = READ_SCRATCH;
	w->rbuf = xmalloc(w->rbuf_size);
	w->mono_origin_ms = mono_ms();
	w->mb.efd = -1;

	/* Only this worker's thread ever touches its base: no locks. */
	if ((ec = event_config_new()) == NULL)
		goto fail;
	event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
	w->base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (w->base != NULL && srv->persist != NULL)
		w->reader = db_reader_new(w->base, srv->cfg->db, id, &srv->persist->schema_ready);
	if (w->base == NULL || mailbox_init(&w->mb) != 0 || worker_events(w) != 0 ||
	    (srv->persist != NULL && w->reader == NULL) || rooms_init(w) != 0)
		goto fail;
	return w;
fail:
	log_error("worker_init_failed worker=%u error=\"%s\"", id, strerror(errno));
	w->listen_fd = -1;   /* the caller still owns it */
	worker_free(w);
	return NULL;
}

int
worker_start(struct worker *w)
{
	int err = pthread_create(&w->thread, NULL, worker_main, w);

	w->started = err == 0;
	return err;
}

void
worker_join(struct worker *w)
{
	if (w->started)
		pthread_join(w->thread, NULL);
	w->started = 0;
}

void
worker_close_conns(struct worker *w)
{
	rooms_bind_thread(w);
	while (w->conns != NULL)
		conn_destroy(w->conns, 1);
	rooms_bind_thread(NULL);
}

void
worker_free(struct worker *w)
{
	struct mailbox_msg *m;

	worker_close_conns(w);
	db_reader_free(w->reader);   /* first: queries name rooms */
	w->reader = NULL;
	rooms_free(w);
	if (w->mb.efd >= 0)
		while ((m = mailbox_take(&w->mb)) != NULL)
			worker_drop_msg(m);
	if (w->listen_ev != NULL)
		worker_close_listener(w);
	else if (w->listen_fd >= 0)
		close(w->listen_fd);
	if (w->listen_ev) event_free(w->listen_ev);
	if (w->mb_ev) event_free(w->mb_ev);
	if (w->flush_ev) event_free(w->flush_ev);
	if (w->tick_ev) event_free(w->tick_ev);
	if (w->stop_ev) event_free(w->stop_ev);
	mailbox_destroy(&w->mb);
	live_unref(w->live);
	w->live = NULL;
	if (w->base)
		event_base_free(w->base);
	if (w->reserve_fd >= 0)
		close(w->reserve_fd);
	free(w->rbuf);
	free(w);
}

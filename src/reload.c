#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "live.h"
#include "log.h"
#include "monotime.h"
#include "notify.h"
#include "reload.h"
#include "server.h"
#include "settings.h"
#include "worker.h"
#include "xmalloc.h"

struct reload_count {
	unsigned applied, restart;
};

/* Keys that take their new value (the file's, or a default following it). */
static void
log_applied(const char *name, const char *running, const char *wanted, int live,
    void *arg)
{
	struct reload_count *n = arg;

	log_info("reload_applied key=%s old=\"%s\" new=\"%s\"", name, running, wanted);
	n->applied++;
}

/* Keys the file changes that keep their running value until a restart. */
static void
log_restart(const char *name, const char *running, const char *wanted, int live,
    void *arg)
{
	struct reload_count *n = arg;

	if (live)
		return;   /* said by log_applied */
	log_warn("reload_needs_restart key=%s running=\"%s\" file=\"%s\"",
	    name, running, wanted);
	n->restart++;
}

/* Hand every worker its reference to the new snapshot. */
static void
post_snapshot(struct server *srv, struct live *l)
{
	for (unsigned i = 0; i < srv->nworkers; i++) {
		struct worker_reload_msg *m = xcalloc(1, sizeof(*m));

		m->base.kind = WORKER_MSG_RELOAD;
		live_ref(l);
		m->live = l;
		worker_post(srv->workers[i], &m->base);
	}
}

/*
 * Parse again: a fresh struct settings from the same command line and the
 * file as it is now. The command line still wins over the file.
 */
static int
parse_again(const struct server *srv, struct settings *fresh)
{
	char err[512];

	settings_init(fresh);
	if (settings_parse(fresh, srv->argc, srv->argv, err, sizeof(err)) != SETTINGS_OK) {
		log_error("reload_failed error=\"%s\" action=\"kept the running settings\"", err);
		settings_free(fresh);
		return -1;
	}
	return 0;
}

/*
 * The file's live values checked against the running restart-only ones:
 * a file that raises max-frame and max-body together gets the new body
 * limit only with the frame limit, at the next restart.
 */
static int
check_against_running(const struct settings *next)
{
	if (next->max_body > next->max_frame) {
		log_error("reload_failed error=\"max-body %llu exceeds the running max-frame %llu\" "
		    "action=\"kept the running settings\"",
		    (unsigned long long)next->max_body, (unsigned long long)next->max_frame);
		return -1;
	}
	if (next->out_limit < next->max_frame) {
		log_error("reload_failed error=\"out-limit %llu is below the running max-frame %llu\" "
		    "action=\"kept the running settings\"",
		    (unsigned long long)next->out_limit, (unsigned long long)next->max_frame);
		return -1;
	}
	return 0;
}

int
server_reload(struct server *srv)
{
	struct reload_count n = { 0, 0 };
	struct settings fresh, next;
	struct live *l;
	int rc = -1;

	/* Before READY=1, a reload must not tell systemd the start is over. */
	if (srv->ready_sent)
		notify_send("RELOADING=1\nMONOTONIC_USEC=%llu",
		    (unsigned long long)mono_us());
	if (srv->cfg->config_file == NULL)
		log_info("reload config=none action=\"reopen the log file, read the JWT secret again\"");
	if (parse_again(srv, &fresh) != 0)
		goto done;
	/* Restart-only keys keep their running values. */
	settings_copy(&next, &srv->live->cfg);
	settings_apply_live(&next, &fresh);
	if (check_against_running(&next) != 0) {
		settings_free(&next);
		settings_free(&fresh);
		goto done;
	}
	l = live_new(&next, srv->capacity, 0);
	settings_free(&next);
	if (l == NULL) {
		log_error("reload_failed error=\"the JWT secret could not be read\" action=\"kept the running settings\"");
		settings_free(&fresh);
		goto done;
	}
	/* Only now, when it will happen, say what changes: the new snapshot
	 * against the running one (live keys only differ), and the file's
	 * restart-only keys against their running values. */
	settings_diff(&srv->live->cfg, &l->cfg, log_applied, &n);
	settings_diff(&srv->live->cfg, &fresh, log_restart, &n);
	settings_free(&fresh);
	/* On failure log_reopen logs it and the old file stays: the rest applies. */
	(void)log_reopen(l->cfg.log_file);
	log_set_level((enum log_level)l->cfg.log_level);
	post_snapshot(srv, l);
	live_unref(srv->live);
	srv->live = l;
	log_info("reload_done applied=%u needs_restart=%u", n.applied, n.restart);
	rc = 0;
done:
	if (rc != 0)   /* logrotate moved the file all the same */
		(void)log_reopen(srv->live->cfg.log_file);
	if (srv->ready_sent)
		notify_send("READY=1");
	return rc;
}

#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <ck_pr.h>
#include <openssl/crypto.h>

#include "live.h"
#include "log.h"
#include "xmalloc.h"

#define JWT_SECRET_MAX 4096

/*
 * The HS256 secret: the file's content without a trailing newline, or
 * PARLEY_JWT_SECRET. Returns its length (0: none), or -1 after logging.
 */
static ssize_t
read_jwt_secret(const struct settings *cfg, char buf[JWT_SECRET_MAX + 1])
{
	const char *env = getenv("PARLEY_JWT_SECRET");
	size_t n = 0;

	if (cfg->jwt_secret_file != NULL) {
		FILE *f = fopen(cfg->jwt_secret_file, "r");

		if (f == NULL) {
			log_error("jwt_secret_unreadable file=%s error=\"%s\"",
			    cfg->jwt_secret_file, strerror(errno));
			return -1;
		}
		n = fread(buf, 1, JWT_SECRET_MAX + 1, f);
		fclose(f);
		if (n > JWT_SECRET_MAX) {
			log_error("jwt_secret_too_long file=%s max_bytes=%d",
			    cfg->jwt_secret_file, JWT_SECRET_MAX);
			return -1;
		}
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			n--;
	} else if (env != NULL) {
		n = strlen(env);
		if (n > JWT_SECRET_MAX) {
			log_error("jwt_secret_too_long source=env max_bytes=%d", JWT_SECRET_MAX);
			return -1;
		}
		memcpy(buf, env, n);
	}
	return (ssize_t)n;
}

struct live *
live_new(const struct settings *cfg, uint64_t capacity, int announce)
{
	char buf[JWT_SECRET_MAX + 1];
	struct live *l;
	ssize_t n;

	if ((n = read_jwt_secret(cfg, buf)) < 0) {
		OPENSSL_cleanse(buf, sizeof(buf));
		return NULL;
	}
	l = xcalloc(1, sizeof(*l));
	l->refs = 1;
	settings_copy(&l->cfg, cfg);
	if (n > 0) {
		l->jwt_secret = xmalloc((size_t)n);
		memcpy(l->jwt_secret, buf, (size_t)n);
		l->jwt_secret_len = (size_t)n;
	} else if (!announce) {
		/* Said at start; a reload would only repeat it. */
	} else if (cfg->allow_anonymous) {
		log_info("jwt_secret_absent tokens=refused anonymous=allowed");
	} else {
		log_warn("jwt_secret_absent tokens=refused anonymous=refused "
		    "hint=\"set --jwt-secret-file, PARLEY_JWT_SECRET or --allow-anonymous\"");
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	l->max_connections = capacity;
	if (cfg->max_connections != 0 && cfg->max_connections < capacity)
		l->max_connections = cfg->max_connections;
	else if (cfg->max_connections > capacity)
		log_warn("max_connections_capped requested=%llu capacity=%llu",
		    (unsigned long long)cfg->max_connections,
		    (unsigned long long)capacity);
	l->verifier.secret = l->jwt_secret;
	l->verifier.secret_len = l->jwt_secret_len;
	l->verifier.issuer = l->cfg.jwt_issuer;
	l->verifier.audience = l->cfg.jwt_audience;
	l->verifier.leeway_s = JWT_DEFAULT_LEEWAY;
	return l;
}

void
live_ref(struct live *l)
{
	ck_pr_inc_uint(&l->refs);
}

void
live_unref(struct live *l)
{
	bool zero;

	if (l == NULL)
		return;
	/* Our reads of the snapshot happen before our decrement is seen... */
	ck_pr_fence_release();
	ck_pr_dec_uint_zero(&l->refs, &zero);
	if (!zero)
		return;
	/* ...and the last holder frees only after seeing every decrement. */
	ck_pr_fence_acquire();
	if (l->jwt_secret != NULL) {
		OPENSSL_cleanse(l->jwt_secret, l->jwt_secret_len);
		free(l->jwt_secret);
	}
	settings_free(&l->cfg);
	free(l);
}

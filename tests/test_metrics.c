/*
 * test_metrics.c - GET /metrics of the real parleyd, parsed whole.
 *
 * A small strict parser of the Prometheus text exposition format 0.0.4
 * (struct expo) reads every line: each is a HELP, a TYPE, a comment or a
 * sample; a family has exactly one HELP and one TYPE, both before its
 * samples, and its lines form one group; names and label names are valid,
 * label values correctly escaped, values floats; counters end in _total and
 * are not negative; histogram buckets are cumulative in increasing le order
 * with +Inf equal to _count and a _sum; no series appears twice; the body
 * ends with a newline and has no empty line. Then specific values are
 * checked against the traffic the test made.
 *
 *   suite "metrics-parser"  the parser rejects what it should (a test of
 *                           the test), accepts a valid exposition
 *   suite "metrics"         parleyd in memory mode: hello, join, sends,
 *                           five kinds of error frames and two of HTTP
 *                           errors; events, deliveries, errors by code,
 *                           connection counts and peak as made
 *   suite "metrics-db"      parleyd --db on a private PostgreSQL
 *                           (tests/pg-private.sh): after acked sends, the
 *                           batch size and commit latency histograms count
 *                           every committed batch
 *
 * Every wait is bounded; the suites' cleanup stops parleyd and the cluster.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <jansson.h>

#include "harness.h"
#include "wsclient.h"

#define HOST "127.0.0.1"
#define T_IO 5000               /* ms: one ordinary exchange */

/* ---- the exposition parser ------------------------------------------------ */

#define EXPO_NAME 200

struct expo_family {
	char name[EXPO_NAME];
	char type[16];               /* "" until its TYPE line */
	int help;                    /* HELP lines seen */
	int closed;                  /* another family's lines came after it */
	unsigned nsamples;
};

struct expo_sample {
	char name[EXPO_NAME];
	char labels[512];            /* canonical: k="v" sorted by k, ',' between */
	char nole[512];              /* the same without le */
	char le[64];                 /* the le label's value, "" without one */
	double v;
	size_t fam;
	unsigned line;
};

struct expo {
	struct expo_family *fam;
	size_t nfam, capfam;
	struct expo_sample *s;
	size_t ns, caps;
	char err[512];               /* why parsing failed, with the line number */
};

static int expo_fail(struct expo *e, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
expo_fail(struct expo *e, unsigned line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (e->err[0] != '\0')
		return -1;
	n = snprintf(e->err, sizeof(e->err), "line %u: ", line);
	va_start(ap, fmt);
	vsnprintf(e->err + n, sizeof(e->err) - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static void
expo_free(struct expo *e)
{
	free(e->fam);
	free(e->s);
	memset(e, 0, sizeof(*e));
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* for metric names (colon 0), label names (colon 1: none). */
static size_t
name_len(const char *p, int label)
{
	size_t n = 0;

	for (;; n++) {
		char c = p[n];
		int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		    (c == ':' && !label);

		if (alpha || (n > 0 && c >= '0' && c <= '9'))
			continue;
		return n;
	}
}

static struct expo_family *
family_find(struct expo *e, const char *name)
{
	for (size_t i = 0; i < e->nfam; i++)
		if (strcmp(e->fam[i].name, name) == 0)
			return &e->fam[i];
	return NULL;
}

static struct expo_family *
family_get(struct expo *e, const char *name)
{
	struct expo_family *f = family_find(e, name);

	if (f != NULL)
		return f;
	if (e->nfam == e->capfam) {
		e->capfam = e->capfam ? e->capfam * 2 : 64;
		e->fam = realloc(e->fam, e->capfam * sizeof(*e->fam));
		if (e->fam == NULL)
			abort();
	}
	f = &e->fam[e->nfam++];
	memset(f, 0, sizeof(*f));
	snprintf(f->name, sizeof(f->name), "%s", name);
	return f;
}

/* A line of family f: lines of one family form a single group. */
static int
family_enter(struct expo *e, unsigned line, struct expo_family *f,
    struct expo_family **cur)
{
	if (*cur == f)
		return 0;
	if (f->closed)
		return expo_fail(e, line, "family %s continues after another family", f->name);
	if (*cur != NULL)
		(*cur)->closed = 1;
	*cur = f;
	return 0;
}

/* A float as the format writes it: NaN, +Inf, -Inf, or a decimal number. */
static int
parse_float(const char *tok, size_t len, double *v)
{
	char buf[64], *end;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, tok, len);
	buf[len] = '\0';
	if (strcmp(buf, "NaN") == 0) {
		*v = NAN;
		return 0;
	}
	if (strcmp(buf, "+Inf") == 0 || strcmp(buf, "-Inf") == 0) {
		*v = buf[0] == '+' ? INFINITY : -INFINITY;
		return 0;
	}
	/* strtod alone would take hex, "inf", "nan" and leading spaces. */
	if (strspn(buf, "0123456789.eE+-") != len)
		return -1;
	errno = 0;
	*v = strtod(buf, &end);
	return *end == '\0' && errno == 0 ? 0 : -1;
}

/* A HELP docstring may escape only backslash and newline. */
static int
check_help(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] == '\\' && (i + 1 >= len || (p[i + 1] != '\\' && p[i + 1] != 'n')))
			return -1;
		else if (p[i] == '\\')
			i++;
	return 0;
}

static int
parse_meta(struct expo *e, unsigned line, const char *p, size_t len,
    struct expo_family **cur)
{
	int help = strncmp(p, "# HELP ", 7) == 0;
	int type = strncmp(p, "# TYPE ", 7) == 0;
	static const char *const types[] = { "counter", "gauge", "histogram",
	    "summary", "untyped", NULL };
	char name[EXPO_NAME];
	struct expo_family *f;
	size_t n;
	const char *rest;

	if (!help && !type)
		return 0;   /* a comment */
	n = name_len(p + 7, 0);
	if (n == 0 || n >= sizeof(name) || (7 + n < len && p[7 + n] != ' '))
		return expo_fail(e, line, "bad metric name in %.*s", (int)len, p);
	memcpy(name, p + 7, n);
	name[n] = '\0';
	rest = 7 + n < len ? p + 7 + n + 1 : p + len;
	f = family_get(e, name);
	if (family_enter(e, line, f, cur) != 0)
		return -1;
	if (f->nsamples > 0)
		return expo_fail(e, line, "%s of %s after its samples", help ? "HELP" :
		    "TYPE", name);
	if (help) {
		if (f->help++)
			return expo_fail(e, line, "second HELP for %s", name);
		if (check_help(rest, (size_t)(p + len - rest)) != 0)
			return expo_fail(e, line, "bad escape in the HELP of %s", name);
		return 0;
	}
	if (f->type[0] != '\0')
		return expo_fail(e, line, "second TYPE for %s", name);
	for (int i = 0; types[i] != NULL; i++)
		if ((size_t)(p + len - rest) == strlen(types[i]) &&
		    memcmp(rest, types[i], strlen(types[i])) == 0)
			snprintf(f->type, sizeof(f->type), "%s", types[i]);
	if (f->type[0] == '\0')
		return expo_fail(e, line, "unknown TYPE for %s: %.*s", name,
		    (int)(p + len - rest), rest);
	return 0;
}

/*
 * Labels at p ('{' already passed) into sorted pairs; *pp past the '}'.
 * Label values keep their escapes (each checked).
 */
struct label {
	char name[EXPO_NAME];
	char value[256];
};

static int
parse_labels(struct expo *e, unsigned line, const char **pp, const char *end,
    struct label *lab, size_t *nlab, size_t maxlab)
{
	const char *p = *pp;

	*nlab = 0;
	while (p < end && *p != '}') {
		size_t n = name_len(p, 1), v = 0;
		struct label *l;

		if (n == 0 || n >= sizeof(lab->name) || p + n >= end || p[n] != '=' ||
		    p[n + 1] != '"')
			return expo_fail(e, line, "bad label");
		if (n >= 2 && p[0] == '_' && p[1] == '_')
			return expo_fail(e, line, "reserved label name");
		if (*nlab == maxlab)
			return expo_fail(e, line, "too many labels");
		l = &lab[(*nlab)++];
		memcpy(l->name, p, n);
		l->name[n] = '\0';
		for (size_t i = 0; i + 1 < *nlab; i++)
			if (strcmp(lab[i].name, l->name) == 0)
				return expo_fail(e, line, "label %s twice", l->name);
		p += n + 2;
		for (;;) {
			if (p >= end)
				return expo_fail(e, line, "unterminated label value");
			if (*p == '"')
				break;
			if (*p == '\\') {
				if (p + 1 >= end || (p[1] != '\\' && p[1] != '"' && p[1] != 'n'))
					return expo_fail(e, line, "bad escape in a label value");
				if (v + 2 >= sizeof(l->value))
					return expo_fail(e, line, "label value too long");
				l->value[v++] = *p++;
			}
			if (v + 1 >= sizeof(l->value))
				return expo_fail(e, line, "label value too long");
			l->value[v++] = *p++;
		}
		l->value[v] = '\0';
		p++;
		if (p < end && *p == ',')
			p++;
		else if (p >= end || *p != '}')
			return expo_fail(e, line, "expected , or } after a label");
	}
	if (p >= end)
		return expo_fail(e, line, "unterminated label set");
	*pp = p + 1;
	/* Sorted by name, so the same series always reads the same. */
	for (size_t i = 1; i < *nlab; i++)
		for (size_t j = i; j > 0 && strcmp(lab[j - 1].name, lab[j].name) > 0; j--) {
			struct label t = lab[j];

			lab[j] = lab[j - 1];
			lab[j - 1] = t;
		}
	return 0;
}

static int
ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The family a sample name belongs to, or NULL. */
static struct expo_family *
sample_family(struct expo *e, const char *name, const char **suffix)
{
	static const char *const sfx[] = { "_bucket", "_sum", "_count", NULL };
	struct expo_family *f = family_find(e, name);
	char base[EXPO_NAME];

	*suffix = "";
	if (f != NULL && strcmp(f->type, "histogram") != 0)
		return f;
	for (int i = 0; sfx[i] != NULL; i++) {
		size_t n = strlen(name), k = strlen(sfx[i]);

		if (!ends_with(name, sfx[i]))
			continue;
		memcpy(base, name, n - k);
		base[n - k] = '\0';
		f = family_find(e, base);
		if (f != NULL && (strcmp(f->type, "histogram") == 0 ||
		    (strcmp(f->type, "summary") == 0 && i > 0))) {
			*suffix = sfx[i];
			return f;
		}
	}
	f = family_find(e, name);
	return f != NULL && strcmp(f->type, "summary") == 0 ? f : NULL;
}

static int
parse_sample(struct expo *e, unsigned line, const char *p, size_t len,
    struct expo_family **cur)
{
	const char *end = p + len, *q, *suffix;
	struct label lab[8];
	struct expo_sample *s;
	struct expo_family *f;
	size_t n = name_len(p, 0), nlab = 0;
	char name[EXPO_NAME];
	int has_le = 0;

	if (n == 0 || n >= sizeof(name))
		return expo_fail(e, line, "not a sample: %.*s", (int)len, p);
	memcpy(name, p, n);
	name[n] = '\0';
	q = p + n;
	if (q < end && *q == '{') {
		q++;
		if (parse_labels(e, line, &q, end, lab, &nlab, 8) != 0)
			return -1;
	}
	if (q >= end || *q != ' ')
		return expo_fail(e, line, "no value after %s", name);
	q++;
	if (e->ns == e->caps) {
		e->caps = e->caps ? e->caps * 2 : 256;
		e->s = realloc(e->s, e->caps * sizeof(*e->s));
		if (e->s == NULL)
			abort();
	}
	s = &e->s[e->ns];
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->line = line;
	{
		const char *sp = memchr(q, ' ', (size_t)(end - q));
		const char *vend = sp != NULL ? sp : end;

		if (parse_float(q, (size_t)(vend - q), &s->v) != 0)
			return expo_fail(e, line, "bad value %.*s", (int)(vend - q), q);
		if (sp != NULL) {   /* a timestamp: an integer, then the end */
			const char *t = sp + 1;

			if (*t == '-')
				t++;
			if (t >= end || strspn(t, "0123456789") < (size_t)(end - t))
				return expo_fail(e, line, "bad timestamp");
		}
	}
	for (size_t i = 0; i < nlab; i++) {
		size_t o = strlen(s->labels), on = strlen(s->nole);

		snprintf(s->labels + o, sizeof(s->labels) - o, "%s%s=\"%s\"",
		    o ? "," : "", lab[i].name, lab[i].value);
		if (strcmp(lab[i].name, "le") == 0) {
			has_le = 1;
			snprintf(s->le, sizeof(s->le), "%s", lab[i].value);
		} else {
			snprintf(s->nole + on, sizeof(s->nole) - on, "%s%s=\"%s\"",
			    on ? "," : "", lab[i].name, lab[i].value);
		}
	}
	f = sample_family(e, name, &suffix);
	if (f == NULL)
		return expo_fail(e, line, "sample %s of no declared family", name);
	if (!f->help || f->type[0] == '\0')
		return expo_fail(e, line, "sample %s before the HELP and TYPE of %s",
		    name, f->name);
	if (family_enter(e, line, f, cur) != 0)
		return -1;
	s->fam = (size_t)(f - e->fam);
	if (isnan(s->v) && strcmp(f->type, "gauge") != 0 && strcmp(f->type, "untyped") != 0)
		return expo_fail(e, line, "%s is NaN", name);
	if (strcmp(f->type, "counter") == 0) {
		if (!ends_with(f->name, "_total"))
			return expo_fail(e, line, "counter %s does not end in _total", f->name);
		if (s->v < 0)
			return expo_fail(e, line, "counter %s is negative", name);
	}
	if (strcmp(f->type, "histogram") == 0) {
		int bucket = strcmp(suffix, "_bucket") == 0;

		if (bucket != has_le)
			return expo_fail(e, line, "%s %s an le label", name,
			    bucket ? "without" : "with");
		if (strcmp(suffix, "_sum") != 0 &&
		    (s->v < 0 || s->v != floor(s->v) || isinf(s->v)))
			return expo_fail(e, line, "%s is not a count", name);
		if (bucket) {
			double le;

			if (parse_float(s->le, strlen(s->le), &le) != 0 || isnan(le))
				return expo_fail(e, line, "bad le \"%s\"", s->le);
		}
	}
	for (size_t i = 0; i < e->ns; i++)
		if (strcmp(e->s[i].name, s->name) == 0 &&
		    strcmp(e->s[i].labels, s->labels) == 0)
			return expo_fail(e, line, "series %s{%s} again (line %u)", name,
			    s->labels, e->s[i].line);
	f->nsamples++;
	e->ns++;
	return 0;
}

/* Every bucket series of histogram f with labels nole: cumulative, +Inf == _count. */
static int
check_histogram_series(struct expo *e, size_t fi, const char *nole)
{
	const char *name = e->fam[fi].name;
	double last_le = -INFINITY, last_v = 0, count = -1, inf = -1;
	int have_sum = 0;
	unsigned nb = 0;
	char want[EXPO_NAME + 16];

	for (size_t i = 0; i < e->ns; i++) {
		const struct expo_sample *s = &e->s[i];
		double le;

		if (s->fam != fi || strcmp(s->nole, nole) != 0)
			continue;
		snprintf(want, sizeof(want), "%s_bucket", name);
		if (strcmp(s->name, want) == 0) {
			(void)parse_float(s->le, strlen(s->le), &le);
			if (le <= last_le)
				return expo_fail(e, s->line, "%s: le %s not above the one before",
				    name, s->le);
			if (s->v < last_v)
				return expo_fail(e, s->line, "%s: bucket le=%s (%g) below the one "
				    "before (%g): not cumulative", name, s->le, s->v, last_v);
			last_le = le;
			last_v = s->v;
			nb++;
			if (isinf(le) && le > 0)
				inf = s->v;
			continue;
		}
		snprintf(want, sizeof(want), "%s_count", name);
		if (strcmp(s->name, want) == 0)
			count = s->v;
		snprintf(want, sizeof(want), "%s_sum", name);
		if (strcmp(s->name, want) == 0)
			have_sum = 1;
	}
	if (nb == 0 || inf < 0)
		return expo_fail(e, 0, "%s{%s}: no le=\"+Inf\" bucket", name, nole);
	if (count < 0 || !have_sum)
		return expo_fail(e, 0, "%s{%s}: no _count or no _sum", name, nole);
	if (count != inf)
		return expo_fail(e, 0, "%s{%s}: +Inf bucket %g != _count %g", name, nole,
		    inf, count);
	return 0;
}

/* Parse a whole exposition. 0, or -1 with e->err set. */
static int
expo_parse(struct expo *e, const char *text, size_t len)
{
	struct expo_family *cur = NULL;
	const char *p = text, *end = text + len;
	unsigned line = 0;

	memset(e, 0, sizeof(*e));
	if (len == 0 || text[len - 1] != '\n')
		return expo_fail(e, 0, "the body does not end with a newline");
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)(nl - p);
		int rc;

		line++;
		if (n == 0)
			return expo_fail(e, line, "empty line");
		if (memchr(p, '\r', n) != NULL || memchr(p, '\0', n) != NULL)
			return expo_fail(e, line, "CR or NUL in a line");
		rc = p[0] == '#' ? parse_meta(e, line, p, n, &cur) :
		    parse_sample(e, line, p, n, &cur);
		if (rc != 0)
			return -1;
		p = nl + 1;
	}
	for (size_t i = 0; i < e->nfam; i++) {
		const struct expo_family *f = &e->fam[i];

		if (f->help != 1 || f->type[0] == '\0')
			return expo_fail(e, line, "family %s without HELP or TYPE", f->name);
		if (f->nsamples == 0)
			return expo_fail(e, line, "family %s without samples", f->name);
		if (strcmp(f->type, "histogram") != 0)
			continue;
		for (size_t j = 0; j < e->ns; j++) {
			int seen = 0;

			if (e->s[j].fam != i)
				continue;
			for (size_t k = 0; k < j && !seen; k++)
				seen = e->s[k].fam == i && strcmp(e->s[k].nole, e->s[j].nole) == 0;
			if (!seen && check_histogram_series(e, i, e->s[j].nole) != 0)
				return -1;
		}
	}
	return 0;
}

/* The value of series name{labels} (canonical labels, "" for none), or NAN. */
static double
expo_get(const struct expo *e, const char *name, const char *labels)
{
	for (size_t i = 0; i < e->ns; i++)
		if (strcmp(e->s[i].name, name) == 0 && strcmp(e->s[i].labels, labels) == 0)
			return e->s[i].v;
	return NAN;
}

/* The type a family was declared with, or NULL. */
static const char *
expo_type(const struct expo *e, const char *name)
{
	for (size_t i = 0; i < e->nfam; i++)
		if (strcmp(e->fam[i].name, name) == 0)
			return e->fam[i].type;
	return NULL;
}

/* The sum of every series of family name. */
static double
expo_family_sum(const struct expo *e, const char *name)
{
	double t = 0;

	for (size_t i = 0; i < e->ns; i++)
		if (strcmp(e->s[i].name, name) == 0)
			t += e->s[i].v;
	return t;
}

/* ---- the parser, tested ------------------------------------------------------ */

static int
parses(const char *text)
{
	struct expo e;
	int rc = expo_parse(&e, text, strlen(text));

	expo_free(&e);
	return rc == 0;
}

static void
test_parser_accepts(void)
{
	static const char ok[] =
	    "# A comment.\n"
	    "# HELP a_total A counter, \\\\ and \\n escaped.\n"
	    "# TYPE a_total counter\n"
	    "a_total{code=\"x\\\"y\\\\z\\n\"} 3\n"
	    "a_total{code=\"b\",way=\"in\",} 1.5e3 1700000000000\n"
	    "# TYPE g gauge\n"
	    "# HELP g A gauge.\n"
	    "g -2.5\n"
	    "# HELP h A histogram.\n"
	    "# TYPE h histogram\n"
	    "h_bucket{le=\"0.5\"} 1\n"
	    "h_bucket{le=\"1\"} 3\n"
	    "h_bucket{le=\"+Inf\"} 4\n"
	    "h_sum 3.25\n"
	    "h_count 4\n";
	struct expo e;

	CU_ASSERT_EQUAL(expo_parse(&e, ok, sizeof(ok) - 1), 0);
	if (e.err[0] != '\0')
		fprintf(stderr, "parser: %s\n", e.err);
	CU_ASSERT_EQUAL(expo_get(&e, "a_total", "code=\"b\",way=\"in\""), 1500);
	CU_ASSERT_EQUAL(expo_get(&e, "h_count", ""), 4);
	CU_ASSERT_EQUAL(expo_get(&e, "g", ""), -2.5);
	expo_free(&e);
}

static void
test_parser_rejects(void)
{
	static const char *const bad[] = {
		/* no TYPE */
		"# HELP a_total x\na_total 1\n",
		/* no HELP */
		"# TYPE a_total counter\na_total 1\n",
		/* TYPE after the samples */
		"# HELP a_total x\na_total 1\n# TYPE a_total counter\n",
		/* two TYPE lines */
		"# HELP a_total x\n# TYPE a_total counter\n# TYPE a_total counter\na_total 1\n",
		/* a counter not ending in _total */
		"# HELP a x\n# TYPE a counter\na 1\n",
		/* a negative counter */
		"# HELP a_total x\n# TYPE a_total counter\na_total -1\n",
		/* the same series twice, labels in another order */
		"# HELP a_total x\n# TYPE a_total counter\na_total{x=\"1\",y=\"2\"} 1\n"
		"a_total{y=\"2\",x=\"1\"} 2\n",
		/* a family split in two groups */
		"# HELP a_total x\n# TYPE a_total counter\na_total{x=\"1\"} 1\n"
		"# HELP b x\n# TYPE b gauge\nb 1\na_total{x=\"2\"} 1\n",
		/* a sample of no family */
		"# HELP a_total x\n# TYPE a_total counter\nb_total 1\n",
		/* bad names, bad values, bad escapes */
		"# HELP 1a x\n# TYPE 1a gauge\n1a 1\n",
		"# HELP a x\n# TYPE a gauge\na 1.0.0\n",
		"# HELP a x\n# TYPE a gauge\na 0x10\n",
		"# HELP a x\n# TYPE a gauge\na{x=\"\\q\"} 1\n",
		"# HELP a x\n# TYPE a gauge\na{x=1} 1\n",
		"# HELP a x\n# TYPE a gauge\na{__x=\"1\"} 1\n",
		"# HELP a x\n# TYPE a gauge\na  1\n",
		"# HELP a x \\t\n# TYPE a gauge\na 1\n",
		"# HELP a x\n# TYPE a gauge\na 1 12x\n",
		"# HELP a x\n# TYPE a gauge\n\na 1\n",
		"# HELP a x\n# TYPE a gauge\na 1",
		"# HELP a x\n# TYPE a wobbly\na 1\n",
		/* histograms: not cumulative, +Inf != _count, no +Inf, no _sum */
		"# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"2\"} 3\n"
		"h_bucket{le=\"+Inf\"} 5\nh_sum 1\nh_count 5\n",
		"# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\n"
		"h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
		"# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
		"# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
		"# HELP h x\n# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\n"
		"h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
		"# HELP h x\n# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n",
		NULL
	};

	for (int i = 0; bad[i] != NULL; i++) {
		int accepted = parses(bad[i]);

		if (accepted)
			fprintf(stderr, "parser accepted bad input %d:\n%s\n", i, bad[i]);
		CU_ASSERT_FALSE(accepted);
	}
}

/* ---- /metrics of a running parleyd ------------------------------------------- */

static struct server srv;

/*
 * GET /metrics, parsed whole into e. 0, or -1 (the reason printed, with the
 * body when the parser refused it).
 */
static int
fetch_metrics(struct expo *e)
{
	static const char req[] = "GET /metrics HTTP/1.1\r\n"
	    "Host: 127.0.0.1\r\nConnection: close\r\n\r\n";
	struct http_resp r;
	char ctype[128];
	int st = http_request(srv.port, req, sizeof(req) - 1, &r, T_IO), rc = 0;

	memset(e, 0, sizeof(*e));
	if (st != 200 || r.body == NULL) {
		fprintf(stderr, "GET /metrics: status %d\n", st);
		http_resp_free(&r);
		return -1;
	}
	if (!http_header(&r, "Content-Type", ctype, sizeof(ctype)) ||
	    strcmp(ctype, "text/plain; version=0.0.4; charset=utf-8") != 0) {
		fprintf(stderr, "GET /metrics: Content-Type \"%s\"\n", ctype);
		rc = -1;
	}
	if (expo_parse(e, r.body, r.body_len) != 0) {
		fprintf(stderr, "/metrics does not parse: %s\n---- body ----\n%s---- end ----\n",
		    e->err, r.body);
		rc = -1;
	}
	http_resp_free(&r);
	return rc;
}

/* Assert series name{labels} == want (printing both when not). */
#define CHECK_EQ(e, name, labels, want) do {                                   \
	double v_ = expo_get((e), (name), (labels));                            \
	if (!(v_ == (double)(want)))                                            \
		fprintf(stderr, "%s{%s} = %g, want %g\n", (name), (labels), v_, \
		    (double)(want));                                            \
	CU_ASSERT(v_ == (double)(want));                                        \
} while (0)

#define CHECK_GE(e, name, labels, want) do {                                   \
	double v_ = expo_get((e), (name), (labels));                            \
	if (!(v_ >= (double)(want)))                                            \
		fprintf(stderr, "%s{%s} = %g, want >= %g\n", (name), (labels),  \
		    v_, (double)(want));                                        \
	CU_ASSERT(v_ >= (double)(want));                                        \
} while (0)

/* A chat client: the next text frame as JSON, answering pings. */
static json_t *
recv_json(struct wsc *c, int timeout_ms, int *closed)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	struct wsc_frame f;
	json_error_t err;

	*closed = 0;
	for (;;) {
		int r = wsc_recv_data(c, &f, wsc_remaining_ms(deadline));

		if (r <= 0) {
			*closed = r < 0;
			return NULL;
		}
		if (f.opcode == 8) {
			*closed = f.close_code;
			return NULL;
		}
		if (f.opcode == 1)
			return json_loadb((const char *)f.payload, f.len, 0, &err);
	}
}

/* The next frame of this type (and code, for errors), passing over others. */
static int
await(struct wsc *c, const char *type, const char *code, const char *ref)
{
	int64_t deadline = wsc_now_ms() + T_IO;
	int closed;

	for (;;) {
		json_t *j = recv_json(c, wsc_remaining_ms(deadline), &closed);
		int match;

		if (j == NULL) {
			fprintf(stderr, "waiting for %s %s: %s\n", type, code ? code : "",
			    closed ? "closed" : "timeout");
			return -1;
		}
		match = jstreq(j, "type", type) && (code == NULL || jstreq(j, "code", code)) &&
		    (ref == NULL || jstreq(j, "ref", ref));
		if (!match && jstreq(j, "type", "error")) {
			fprintf(stderr, "waiting for %s %s, got error %s\n", type,
			    code ? code : "", jstr(j, "code"));
			json_decref(j);
			return -1;
		}
		json_decref(j);
		if (match)
			return 0;
	}
}

static int
client_open(struct wsc *c, const char *user)
{
	char hello[96];

	if (wsc_connect(c, HOST, srv.port, NULL, "/ws", NULL, 0, T_IO) != 101) {
		fprintf(stderr, "[%s] no upgrade\n", user);
		return -1;
	}
	snprintf(hello, sizeof(hello), "{\"type\":\"hello\",\"name\":\"%s\"}", user);
	if (wsc_send_text(c, hello) != 0)
		return -1;
	return await(c, "welcome", NULL, NULL);
}

static int
client_join(struct wsc *c, const char *room)
{
	char buf[128];

	snprintf(buf, sizeof(buf), "{\"type\":\"join\",\"room\":\"%s\",\"ref\":\"j\"}", room);
	if (wsc_send_text(c, buf) != 0)
		return -1;
	return await(c, "joined", NULL, "j");
}

/* Send text, expect an error frame with this code. 0, or -1. */
static int
provoke(struct wsc *c, const char *text, const char *code)
{
	if (wsc_send_text(c, text) != 0)
		return -1;
	return await(c, "error", code, NULL);
}

/* ---- suite "metrics": memory mode ------------------------------------------------ */

#define M_SENDS_A 5             /* a's sends to m1: a and b get each */
#define M_SENDS_C 2             /* c's sends to m2: only c is there */

static int
init_memory(void)
{
	static const char *const a[] = { "-t", "2", "--rate", "0", NULL };

	return harness_suite_start(&srv, a);
}

static int
cleanup_server(void)
{
	return harness_suite_cleanup(&srv);
}

static const struct {
	const char *text;
	int status;
} http_reqs[] = {
	{ "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404 },
	{ "GET /nope2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404 },
	{ "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
	    "Connection: close\r\n\r\n", 405 },
	{ NULL, 0 }
};

static void
test_traffic(void)
{
	struct wsc a, b, c, d;
	struct expo e;
	char buf[5000];
	int opened = 0, http = 0, open_a = 0, open_b = 0, open_c = 0;
	struct http_resp r;
	double errors, peak, open;

	memset(&e, 0, sizeof(e));
	a.fd = b.fd = c.fd = d.fd = -1;
	CU_ASSERT_FATAL(client_open(&a, "aa") == 0);
	open_a = 1;
	CU_ASSERT_FATAL(client_open(&b, "bb") == 0);
	open_b = 1;
	CU_ASSERT_FATAL(client_open(&c, "cc") == 0);
	open_c = 1;
	opened = 3;
	CU_ASSERT_FATAL(client_join(&a, "m1") == 0);
	CU_ASSERT_FATAL(client_join(&b, "m1") == 0);
	CU_ASSERT_FATAL(client_join(&c, "m2") == 0);

	/* Sequenced traffic: every member gets each event; wait until they have. */
	for (int i = 0; i < M_SENDS_A; i++) {
		snprintf(buf, sizeof(buf), "{\"type\":\"send\",\"room\":\"m1\",\"body\":\"a%d\","
		    "\"ref\":\"s%d\"}", i, i);
		CU_ASSERT(wsc_send_text(&a, buf) == 0);
		CU_ASSERT(await(&a, "ack", NULL, NULL) == 0);
	}
	for (int i = 0; i < M_SENDS_A; i++)
		CU_ASSERT(await(&b, "message", NULL, NULL) == 0);
	for (int i = 0; i < M_SENDS_C; i++) {
		snprintf(buf, sizeof(buf), "{\"type\":\"send\",\"room\":\"m2\",\"body\":\"c%d\"}", i);
		CU_ASSERT(wsc_send_text(&c, buf) == 0);
		CU_ASSERT(await(&c, "ack", NULL, NULL) == 0);
	}

	/* Error frames of five codes, from the session and from a room. */
	CU_ASSERT(provoke(&a, "not json", "bad_request") == 0);
	CU_ASSERT(provoke(&a, "{\"type\":\"nope\"}", "bad_request") == 0);
	CU_ASSERT(provoke(&b, "{\"type\":\"join\"}", "bad_request") == 0);
	CU_ASSERT(provoke(&b, "{\"type\":\"send\",\"room\":\"m2\",\"body\":\"x\"}",
	    "not_member") == 0);
	CU_ASSERT(provoke(&b, "{\"type\":\"history\",\"room\":\"m2\"}", "not_member") == 0);
	CU_ASSERT(provoke(&c, "{\"type\":\"join\",\"room\":\"dm:aa:bb\"}", "forbidden") == 0);
	/* A body of 4100 bytes: over --max-body (4000). */
	snprintf(buf, sizeof(buf), "{\"type\":\"send\",\"room\":\"m1\",\"body\":\"%0*d\"}",
	    4100, 7);
	CU_ASSERT(provoke(&a, buf, "too_large") == 0);
	/* Before hello: unauthorized, and the connection is closed. */
	CU_ASSERT(wsc_connect(&d, HOST, srv.port, NULL, "/ws", NULL, 0, T_IO) == 101);
	opened++;
	CU_ASSERT(provoke(&d, "{\"type\":\"join\",\"room\":\"m1\"}", "unauthorized") == 0);
	CU_ASSERT(wsc_recv_close(&d, T_IO) == 1008);
	CU_ASSERT(wsc_send_frame(&d, 8, 1, "\x03\xf0", 2, 0) == 0);   /* close 1008 back */
	CU_ASSERT(wsc_wait_eof(&d, T_IO) == 1);
	wsc_close(&d);

	/* HTTP errors. */
	for (int i = 0; http_reqs[i].text != NULL; i++) {
		CU_ASSERT_EQUAL(http_request(srv.port, http_reqs[i].text,
		    strlen(http_reqs[i].text), &r, T_IO), http_reqs[i].status);
		http_resp_free(&r);
		http++;
	}

	CU_ASSERT_FATAL(fetch_metrics(&e) == 0);
	opened += http + 1;

	/* Events and deliveries as made. */
	CHECK_EQ(&e, "parley_events_total", "", M_SENDS_A + M_SENDS_C);
	CHECK_EQ(&e, "parley_deliveries_total", "", 2 * M_SENDS_A + M_SENDS_C);
	CHECK_EQ(&e, "parley_frames_sent_total", "type=\"message\"", 2 * M_SENDS_A + M_SENDS_C);
	CHECK_EQ(&e, "parley_frames_sent_total", "type=\"ack\"", M_SENDS_A + M_SENDS_C);
	/* Requests by type, the refused ones included (decoded as far as they go). */
	CHECK_EQ(&e, "parley_requests_total", "type=\"send\"", M_SENDS_A + M_SENDS_C + 2);
	CHECK_EQ(&e, "parley_requests_total", "type=\"hello\"", 3);
	CHECK_EQ(&e, "parley_requests_total", "type=\"join\"", 6);
	CHECK_EQ(&e, "parley_requests_total", "type=\"history\"", 1);
	CHECK_EQ(&e, "parley_requests_total", "type=\"unknown\"", 2);

	/* Errors by code: exactly what was provoked, nothing else. */
	CHECK_EQ(&e, "parley_errors_total", "code=\"bad_request\"", 3);
	CHECK_EQ(&e, "parley_errors_total", "code=\"not_member\"", 2);
	CHECK_EQ(&e, "parley_errors_total", "code=\"forbidden\"", 1);
	CHECK_EQ(&e, "parley_errors_total", "code=\"too_large\"", 1);
	CHECK_EQ(&e, "parley_errors_total", "code=\"unauthorized\"", 1);
	CHECK_EQ(&e, "parley_errors_total", "code=\"other\"", 0);
	errors = expo_family_sum(&e, "parley_errors_total");
	CU_ASSERT_EQUAL(errors, 8);
	/* Every error frame sent went through a counting point. */
	CHECK_EQ(&e, "parley_frames_sent_total", "type=\"error\"", errors);
	CU_ASSERT_STRING_EQUAL(expo_type(&e, "parley_errors_total"), "counter");
	CHECK_EQ(&e, "parley_http_errors_total", "code=\"not_found\"", 2);
	CHECK_EQ(&e, "parley_http_errors_total", "code=\"method_not_allowed\"", 1);
	CU_ASSERT_EQUAL(expo_family_sum(&e, "parley_http_errors_total"), 3);

	/* Connections: accepted covers every one made, the peak the open ones. */
	CHECK_GE(&e, "parley_connections_accepted_total", "", opened);
	CHECK_EQ(&e, "parley_connections_refused_total", "", 0);
	CHECK_EQ(&e, "parley_websockets", "", 3);
	open = expo_get(&e, "parley_connections", "");
	peak = expo_get(&e, "parley_connections_peak", "");
	CU_ASSERT(open >= 4);   /* a, b, c and this request */
	if (!(peak >= open && peak >= 4))
		fprintf(stderr, "peak %g, open %g\n", peak, open);
	CU_ASSERT(peak >= open);
	CU_ASSERT(peak >= 4);   /* a, b, c and d were open at once */
	CU_ASSERT_STRING_EQUAL(expo_type(&e, "parley_connections_peak"), "gauge");
	CHECK_EQ(&e, "parley_rooms_active", "", 2);
	CHECK_GE(&e, "parley_rooms", "", 2);
	CHECK_EQ(&e, "parley_slow_consumer_closes_total", "", 0);
	CHECK_GE(&e, "parley_mailbox_depth_max", "", 1);
	/* Depth at the last wake-up, summed over the 2 workers: present, a
	 * gauge, within each worker's high water. */
	CU_ASSERT_STRING_EQUAL(expo_type(&e, "parley_mailbox_depth"), "gauge");
	CU_ASSERT(expo_get(&e, "parley_mailbox_depth", "") >= 0);
	CU_ASSERT(expo_get(&e, "parley_mailbox_depth", "") <=
	    2 * expo_get(&e, "parley_mailbox_depth_max", ""));
	/* No database: no persistence families. */
	CU_ASSERT_PTR_NULL(expo_type(&e, "parley_persist_batch_rows"));
	expo_free(&e);

	/* Counters only grow; a second read parses as well. */
	CU_ASSERT_FATAL(fetch_metrics(&e) == 0);
	CHECK_GE(&e, "parley_connections_accepted_total", "", opened + 1);
	CHECK_EQ(&e, "parley_events_total", "", M_SENDS_A + M_SENDS_C);
	expo_free(&e);

	if (open_a)
		wsc_close(&a);
	if (open_b)
		wsc_close(&b);
	if (open_c)
		wsc_close(&c);
}

static void
test_stop(void)
{
	harness_test_stop(&srv);
}

/* ---- suite "metrics-db": a private PostgreSQL ------------------------------------ */

static struct pg_cluster pg;    /* the private cluster */

static int
init_db(void)
{
	const char *args[] = { "--db", pg.conninfo, "-t", "2", "--rate", "0", NULL };

	if (pg_cluster_start(&pg) != 0)
		return -1;
	return harness_suite_start(&srv, args);
}

static int
cleanup_db(void)
{
	int st = harness_suite_cleanup(&srv);

	if (pg_cluster_stop(&pg) != 0)
		st = -1;
	return st;
}

#define D_SENDS 40              /* acked one by one, then D_BURST at once */
#define D_BURST 60

/* /readyz 200 within timeout_ms: the database is connected and migrated. */
static int
wait_ready(int timeout_ms)
{
	static const char req[] = "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	int64_t deadline = wsc_now_ms() + timeout_ms;

	while (wsc_now_ms() < deadline) {
		struct http_resp r;
		int st = http_request(srv.port, req, sizeof(req) - 1, &r, 1000);

		http_resp_free(&r);
		if (st == 200)
			return 0;
		wsc_sleep_ms(50);
	}
	return -1;
}

static void
test_persist_histograms(void)
{
	static const char *const hists[] = { "parley_persist_batch_rows",
	    "parley_persist_commit_latency_seconds", NULL };
	struct wsc a;
	struct expo e;
	char buf[160], name[EXPO_NAME];
	double batches, rows, pending = -1;
	int64_t deadline;

	memset(&e, 0, sizeof(e));
	CU_ASSERT_FATAL(wait_ready(10000) == 0);
	CU_ASSERT_FATAL(client_open(&a, "dba") == 0);
	CU_ASSERT_FATAL(client_join(&a, "dbroom") == 0);
	/* One by one: a batch each. Then a burst, which batches together. */
	for (int i = 0; i < D_SENDS; i++) {
		snprintf(buf, sizeof(buf), "{\"type\":\"send\",\"room\":\"dbroom\","
		    "\"body\":\"one %d\",\"ref\":\"o%d\"}", i, i);
		CU_ASSERT(wsc_send_text(&a, buf) == 0);
		CU_ASSERT(await(&a, "ack", NULL, NULL) == 0);
	}
	for (int i = 0; i < D_BURST; i++) {
		snprintf(buf, sizeof(buf), "{\"type\":\"send\",\"room\":\"dbroom\","
		    "\"body\":\"burst %d\"}", i);
		CU_ASSERT(wsc_send_text(&a, buf) == 0);
	}
	for (int i = 0; i < D_BURST; i++)
		CU_ASSERT(await(&a, "ack", NULL, NULL) == 0);

	/* The ack goes out as the batch is done; its places are freed just after. */
	deadline = wsc_now_ms() + 3000;
	for (;;) {
		expo_free(&e);
		CU_ASSERT_FATAL(fetch_metrics(&e) == 0);
		pending = expo_get(&e, "parley_persist_pending", "");
		if (pending == 0 || wsc_now_ms() >= deadline)
			break;
		wsc_sleep_ms(20);
	}
	CU_ASSERT_EQUAL(pending, 0);

	CHECK_EQ(&e, "parley_db_up", "", 1);
	CHECK_EQ(&e, "parley_events_total", "", D_SENDS + D_BURST);
	batches = expo_get(&e, "parley_persist_batches_total", "");
	rows = expo_get(&e, "parley_persist_rows_total", "");
	CU_ASSERT(batches >= 1);
	CU_ASSERT(batches <= D_SENDS + D_BURST);
	CU_ASSERT(rows >= D_SENDS + D_BURST);
	for (int i = 0; hists[i] != NULL; i++) {
		CU_ASSERT_STRING_EQUAL(expo_type(&e, hists[i]), "histogram");
		snprintf(name, sizeof(name), "%s_count", hists[i]);
		CHECK_EQ(&e, name, "", batches);
		snprintf(name, sizeof(name), "%s_bucket", hists[i]);
		CHECK_EQ(&e, name, "le=\"+Inf\"", batches);
	}
	/* Rows: the sum is every row; the one-by-one sends were batches of 1. */
	CHECK_EQ(&e, "parley_persist_batch_rows_sum", "", rows);
	CHECK_GE(&e, "parley_persist_batch_rows_bucket", "le=\"1\"", 1);
	CHECK_EQ(&e, "parley_persist_batch_rows_bucket", "le=\"5000\"", batches);
	/* Latency: the same time as the commit-seconds counter, and not zero. */
	{
		double sum = expo_get(&e, "parley_persist_commit_latency_seconds_sum", "");
		double total = expo_get(&e, "parley_persist_commit_seconds_total", "");

		CU_ASSERT(sum > 0);
		if (!(fabs(sum - total) < 1e-5))
			fprintf(stderr, "latency sum %g, commit seconds %g\n", sum, total);
		CU_ASSERT(fabs(sum - total) < 1e-5);
		CU_ASSERT(expo_get(&e, "parley_persist_commit_latency_seconds_bucket",
		    "le=\"5\"") == batches);   /* none over the 5 s commit timeout */
	}
	expo_free(&e);
	wsc_close(&a);
}

/* ---- main ------------------------------------------------------------------------ */

static const struct test_def parser_tests[] = {
	{ "the parser accepts a valid exposition", test_parser_accepts },
	{ "the parser rejects malformed expositions", test_parser_rejects },
	{ NULL, NULL }
};

static const struct test_def memory_tests[] = {
	{ "/metrics parses whole; counts match the traffic and errors", test_traffic },
	{ "SIGTERM: exit 0", test_stop },
	{ NULL, NULL }
};

static const struct test_def db_tests[] = {
	{ "--db: batch size and commit latency histograms count every batch",
	    test_persist_histograms },
	{ "SIGTERM: exit 0", test_stop },
	{ NULL, NULL }
};

int
main(void)
{
	if (harness_begin("test_metrics") != 0)
		return 1;
	if (harness_add_suite("metrics-parser", NULL, NULL, parser_tests) ||
	    harness_add_suite("metrics", init_memory, cleanup_server, memory_tests) ||
	    harness_add_suite("metrics-db", init_db, cleanup_db, db_tests)) {
		CU_cleanup_registry();
		return 1;
	}
	return harness_run();
}

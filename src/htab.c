#include "config.h"

#include <stdlib.h>

#include "htab.h"
#include "xmalloc.h"

void
htab_init(struct htab *t, size_t buckets)
{
	t->buckets = xcalloc(buckets, sizeof(*t->buckets));
	t->mask = buckets - 1;
	t->count = 0;
}

void
htab_free(struct htab *t)
{
	free(t->buckets);
	t->buckets = NULL;
	t->mask = 0;
	t->count = 0;
}

struct hnode *
htab_find(const struct htab *t, uint64_t hash, htab_eq_fn *eq, const void *key)
{
	struct hnode *n;

	for (n = t->buckets[hash & t->mask]; n != NULL; n = n->next)
		if (n->hash == hash && eq(n, key))
			return n;
	return NULL;
}

static void
htab_grow(struct htab *t)
{
	size_t nb = (t->mask + 1) * 2;
	struct hnode **b = xcalloc(nb, sizeof(*b));

	for (size_t i = 0; i <= t->mask; i++) {
		struct hnode *n = t->buckets[i], *next;

		for (; n != NULL; n = next) {
			next = n->next;
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->mask = nb - 1;
}

void
htab_insert(struct htab *t, struct hnode *n, uint64_t hash)
{
	struct hnode **b;

	if (t->count > t->mask)
		htab_grow(t);
	n->hash = hash;
	b = &t->buckets[hash & t->mask];
	n->next = *b;
	*b = n;
	t->count++;
}

void
htab_remove(struct htab *t, struct hnode *n)
{
	struct hnode **pp = &t->buckets[n->hash & t->mask];

	while (*pp != NULL && *pp != n)
		pp = &(*pp)->next;
	if (*pp == n) {
		*pp = n->next;
		t->count--;
	}
	n->next = NULL;
}

void
htab_each(struct htab *t, void (*fn)(struct hnode *n, void *arg), void *arg)
{
	for (size_t i = 0; i <= t->mask; i++) {
		struct hnode *n = t->buckets[i], *next;

		for (; n != NULL; n = next) {
			next = n->next;
			fn(n, arg);
		}
	}
}

uint64_t
htab_hash(const void *data, size_t len, uint64_t seed)
{
	const unsigned char *p = data;
	uint64_t h = 14695981039346656037ULL ^ seed;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	/* FNV's low bits are weak for short keys; mix before masking. */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

/*
 * htab.h - an intrusive chained hash table, for maps owned by one thread
 * (a worker's room registry, a room's users, ids and reactions).
 *
 * No locking: the owner of the table is the only caller. Nodes are embedded
 * in the caller's structs and carry their hash; the table never allocates a
 * node and never frees one. It doubles its bucket array at load factor 1.
 */
#ifndef PARLEY_HTAB_H
#define PARLEY_HTAB_H

#include <stddef.h>
#include <stdint.h>

struct hnode {
	struct hnode *next;
	uint64_t hash;
};

struct htab {
	struct hnode **buckets;
	size_t mask;              /* buckets - 1 (a power of two) */
	size_t count;
};

/* Equality of a stored node with the key being looked up. */
typedef int htab_eq_fn(const struct hnode *n, const void *key);

void htab_init(struct htab *t, size_t buckets);   /* buckets: a power of two */
void htab_free(struct htab *t);                   /* the bucket array only */

struct hnode *htab_find(const struct htab *t, uint64_t hash, htab_eq_fn *eq,
    const void *key);
void htab_insert(struct htab *t, struct hnode *n, uint64_t hash);
void htab_remove(struct htab *t, struct hnode *n);

/* Call fn on every node; fn may remove (and free) the node it is given. */
void htab_each(struct htab *t, void (*fn)(struct hnode *n, void *arg), void *arg);

/* A 64-bit hash of bytes (FNV-1a with a final mix): fast on short keys. */
uint64_t htab_hash(const void *data, size_t len, uint64_t seed);

#endif

/*
 * xmalloc.h - allocation that cannot fail silently.
 *
 * parleyd cannot do anything useful when the heap is exhausted, so these
 * wrappers log and abort instead of returning NULL; callers never carry
 * NULL checks for memory. Thread-safe (they only call malloc and friends).
 */
#ifndef PARLEY_XMALLOC_H
#define PARLEY_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Zeroed memory aligned to align (a power of two >= sizeof(void *)). */
void *xcalloc_aligned(size_t align, size_t nmemb, size_t size);

#endif

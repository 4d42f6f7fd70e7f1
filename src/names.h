/*
 * names.h - the shapes of user and room names (PROTOCOL.md sections 2, 4).
 *
 * Pure functions on bytes, callable from any thread.
 *   user name: 1-32 bytes of [A-Za-z0-9._-]
 *   room name: 1-64 bytes of [A-Za-z0-9._-], or a direct-message room
 *              "dm:A:B" with A and B valid user names and A < B bytewise
 */
#ifndef PARLEY_NAMES_H
#define PARLEY_NAMES_H

#include <stddef.h>

#define NAMES_USER_MAX 32
#define NAMES_ROOM_MAX 64
/* The longest room string: "dm:" + user + ":" + user. */
#define NAMES_ROOM_STR_MAX (3 + NAMES_USER_MAX + 1 + NAMES_USER_MAX)

int names_valid_user(const char *s, size_t len);

/* A public or private room name (not a dm). */
int names_valid_plain_room(const char *s, size_t len);

/*
 * 1 if s is "dm:A:B" with A < B both valid users; then a/b point into s and
 * alen/blen are their lengths. 0 otherwise (a dm: prefix with anything
 * wrong, or not a dm at all).
 */
int names_parse_dm(const char *s, size_t len, const char **a, size_t *alen,
    const char **b, size_t *blen);

/* 1 if s names a room: a plain room name or a well-formed dm room. */
int names_valid_room(const char *s, size_t len);

/* 1 if user may enter dm room s (s must be a valid dm name). */
int names_dm_admits(const char *room, size_t room_len, const char *user);

#endif

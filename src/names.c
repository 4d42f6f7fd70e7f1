#include "config.h"

#include <string.h>

#include "names.h"

static int
name_byte(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
}

static int
name_bytes(const char *s, size_t len, size_t max)
{
	if (len == 0 || len > max)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!name_byte((unsigned char)s[i]))
			return 0;
	return 1;
}

int
names_valid_user(const char *s, size_t len)
{
	return name_bytes(s, len, NAMES_USER_MAX);
}

int
names_valid_plain_room(const char *s, size_t len)
{
	return name_bytes(s, len, NAMES_ROOM_MAX);
}

int
names_parse_dm(const char *s, size_t len, const char **a, size_t *alen,
    const char **b, size_t *blen)
{
	const char *colon;
	size_t la, lb, common;
	int cmp;

	if (len < 3 || memcmp(s, "dm:", 3) != 0)
		return 0;
	s += 3;
	len -= 3;
	if ((colon = memchr(s, ':', len)) == NULL)
		return 0;
	la = (size_t)(colon - s);
	lb = len - la - 1;
	if (!names_valid_user(s, la) || !names_valid_user(colon + 1, lb))
		return 0;
	/* Ascending byte order, a prefix sorting first; dm:A:A is not a pair. */
	common = la < lb ? la : lb;
	cmp = memcmp(s, colon + 1, common);
	if (cmp > 0 || (cmp == 0 && la >= lb))
		return 0;
	*a = s;
	*alen = la;
	*b = colon + 1;
	*blen = lb;
	return 1;
}

int
names_valid_room(const char *s, size_t len)
{
	const char *a, *b;
	size_t la, lb;

	if (len >= 3 && memcmp(s, "dm:", 3) == 0)
		return names_parse_dm(s, len, &a, &la, &b, &lb);
	return names_valid_plain_room(s, len);
}

int
names_dm_admits(const char *room, size_t room_len, const char *user)
{
	const char *a, *b;
	size_t la, lb, lu = strlen(user);

	if (!names_parse_dm(room, room_len, &a, &la, &b, &lb))
		return 0;
	return (lu == la && memcmp(user, a, la) == 0) ||
	    (lu == lb && memcmp(user, b, lb) == 0);
}

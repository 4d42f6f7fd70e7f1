/*
 * wsclient.c - WebSocket (RFC 6455) and HTTP/1.1 test client; see wsclient.h.
 *
 * The socket is kept non-blocking and every wait goes through poll() with a
 * deadline, so no call can block longer than the timeout it was given (sends
 * use WSC_SEND_TIMEOUT_MS): a broken server fails a test, it never hangs it.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "wsclient.h"

/* How long one send may wait for room in the socket buffer. */
#define WSC_SEND_TIMEOUT_MS 2000
/* The receive buffer never grows past this (a test never needs more). */
#define WSC_IN_MAX (64u * 1024 * 1024)

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* ---- pure codec ---------------------------------------------------- */

size_t
wsc_encode(uint8_t *out, int opcode, int fin, const void *payload, size_t len,
    uint32_t mask_key, unsigned flags)
{
	const uint8_t *p = payload;
	uint8_t mask[4];
	size_t n = 0, i;
	int masked = !(flags & WSC_UNMASKED);

	out[n++] = (uint8_t)((fin ? 0x80u : 0) | (flags & 0x70u) |
	    ((unsigned)opcode & 0x0fu));
	if (len < 126) {
		out[n++] = (uint8_t)((masked ? 0x80u : 0) | len);
	} else if (len <= 0xffff) {
		out[n++] = (uint8_t)((masked ? 0x80u : 0) | 126);
		out[n++] = (uint8_t)(len >> 8);
		out[n++] = (uint8_t)len;
	} else {
		out[n++] = (uint8_t)((masked ? 0x80u : 0) | 127);
		for (i = 0; i < 8; i++)
			out[n++] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
	}
	if (!masked) {
		if (len > 0)
			memcpy(out + n, p, len);
		return n + len;
	}
	mask[0] = (uint8_t)(mask_key >> 24);
	mask[1] = (uint8_t)(mask_key >> 16);
	mask[2] = (uint8_t)(mask_key >> 8);
	mask[3] = (uint8_t)mask_key;
	memcpy(out + n, mask, 4);
	n += 4;
	for (i = 0; i < len; i++)
		out[n + i] = p[i] ^ mask[i & 3];
	return n + len;
}

ssize_t
wsc_parse(const uint8_t *buf, size_t len, struct wsc_frame *f)
{
	size_t hdr = 2, plen;
	uint64_t l64 = 0;
	int i;

	if (len < 2)
		return 0;
	f->fin = (buf[0] & 0x80) != 0;
	f->rsv = (buf[0] >> 4) & 0x07;
	f->opcode = buf[0] & 0x0f;
	f->masked = (buf[1] & 0x80) != 0;
	plen = buf[1] & 0x7f;
	if (plen == 126) {
		hdr = 4;
		if (len < hdr)
			return 0;
		plen = ((size_t)buf[2] << 8) | buf[3];
	} else if (plen == 127) {
		hdr = 10;
		if (len < hdr)
			return 0;
		for (i = 0; i < 8; i++)
			l64 = (l64 << 8) | buf[2 + i];
		/* The most significant bit must be 0 (RFC 6455 5.2). */
		if (l64 >> 63 || l64 > (uint64_t)WSC_IN_MAX)
			return -1;
		plen = (size_t)l64;
	}
	if (f->masked)
		hdr += 4;
	if (len < hdr || len - hdr < plen)
		return 0;
	f->payload = buf + hdr;
	f->len = plen;
	f->close_code = 0;
	if (f->opcode == 8)
		f->close_code = plen >= 2 ?
		    (uint16_t)((f->payload[0] << 8) | f->payload[1]) : 1005;
	return (ssize_t)(hdr + plen);
}

void
wsc_make_key(char key[25])
{
	unsigned char raw[16];
	size_t i;

	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		/* Test code: any 16 bytes make a valid key. */
		for (i = 0; i < sizeof(raw); i++)
			raw[i] = (unsigned char)rand();
	}
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
	key[24] = '\0';
}

void
wsc_expected_accept(const char *key, char accept[29])
{
	unsigned char md[SHA_DIGEST_LENGTH];
	char buf[128 + sizeof(ws_guid)];
	int n;

	n = snprintf(buf, sizeof(buf), "%.128s%s", key, ws_guid);
	SHA1((const unsigned char *)buf, (size_t)n, md);
	EVP_EncodeBlock((unsigned char *)accept, md, sizeof(md));
	accept[28] = '\0';
}

/* ---- helpers -------------------------------------------------------- */

int64_t
wsc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
wsc_remaining_ms(int64_t deadline)
{
	int64_t left = deadline - wsc_now_ms();

	return left < 0 ? 0 : (int)left;
}

void
wsc_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int
wsc_wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd;
	int r;

	for (;;) {
		pfd.fd = fd;
		pfd.events = events;
		pfd.revents = 0;
		r = poll(&pfd, 1, wsc_remaining_ms(deadline));
		if (r < 0 && errno == EINTR) {
			if (wsc_now_ms() >= deadline)
				return 0;
			continue;
		}
		if (r < 0)
			return -1;
		return r > 0 ? 1 : 0;
	}
}

/* Case-insensitive substring search (strcasestr is a GNU extension). */
static const char *
ci_find(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	for (; *hay != '\0'; hay++)
		if (strncasecmp(hay, needle, n) == 0)
			return hay;
	return NULL;
}

static int
send_all(int fd, const void *buf, size_t len, int64_t deadline)
{
	const uint8_t *p = buf;
	ssize_t n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wsc_wait_fd(fd, POLLOUT, deadline) != 1)
				return -1;
			continue;
		}
		return -1;
	}
	return 0;
}

/* Connect a non-blocking TCP socket; returns the fd or -1. */
static int
tcp_connect(const char *host, int port, const char *src, int rcvbuf,
    int64_t deadline)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(int);
	int fd, one = 1, err = 0;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (rcvbuf > 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) < 0)
		goto err;
	if (src != NULL) {
		memset(&sa, 0, sizeof(sa));
		sa.sin_family = AF_INET;
		if (inet_pton(AF_INET, src, &sa.sin_addr) != 1)
			goto err;
#ifdef IP_BIND_ADDRESS_NO_PORT
		/* Pick the port at connect time: many sources share the range. */
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof(one));
#endif
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			goto err;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		goto err;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	if (errno != EINPROGRESS)
		goto err;
	if (wsc_wait_fd(fd, POLLOUT, deadline) != 1)
		goto err;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0 || err != 0)
		goto err;
	return fd;
err:
	close(fd);
	return -1;
}

/* Make room for at least want more bytes in c->in. */
static int
in_reserve(struct wsc *c, size_t want)
{
	size_t cap;
	uint8_t *p;

	if (c->in_off > 0 && c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
	if (c->in_cap - c->in_len >= want)
		return 0;
	if (c->in_off > 0) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
		if (c->in_cap - c->in_len >= want)
			return 0;
	}
	cap = c->in_cap ? c->in_cap : 4096;
	while (cap - c->in_len < want)
		cap *= 2;
	if (cap > WSC_IN_MAX)
		return -1;
	p = realloc(c->in, cap);
	if (p == NULL)
		return -1;
	c->in = p;
	c->in_cap = cap;
	return 0;
}

/* Read once into c->in. >0 bytes read, 0 timeout, -1 EOF or error. */
static int
in_fill(struct wsc *c, int64_t deadline)
{
	ssize_t n;
	int r;

	if (in_reserve(c, 16384) < 0)
		return -1;
	for (;;) {
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
		if (n > 0) {
			c->in_len += (size_t)n;
			return (int)n;
		}
		if (n == 0)
			return -1;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		r = wsc_wait_fd(c->fd, POLLIN, deadline);
		if (r != 1)
			return r;
	}
}

/* ---- blocking client ------------------------------------------------ */

int
wsc_connect(struct wsc *c, const char *host, int port, const char *src,
    const char *path, const char *extra_headers, int rcvbuf, int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	char key[25], accept[29], got[128], *req, *end;
	size_t reqsz, headlen, extra;
	int n, status;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->status = -1;
	c->rng = (uint32_t)wsc_now_ms() ^ (uint32_t)(uintptr_t)c ^ 0x9e3779b9u;
	if (RAND_bytes((unsigned char *)&c->rng, sizeof(c->rng)) != 1 ||
	    c->rng == 0)
		c->rng = 0x12345678u;

	c->fd = tcp_connect(host, port, src, rcvbuf, deadline);
	if (c->fd < 0)
		return -1;

	wsc_make_key(key);
	extra = extra_headers ? strlen(extra_headers) : 0;
	reqsz = strlen(path) + strlen(host) + extra + 512;
	req = malloc(reqsz);
	if (req == NULL)
		goto err;
	n = snprintf(req, reqsz,
	    "GET %s HTTP/1.1\r\n"
	    "Host: %s:%d\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\n"
	    "%s%s%s\r\n",
	    path, host, port, key,
	    extra_headers && ci_find(extra_headers, "Sec-WebSocket-Version:") ?
	    "" : "Sec-WebSocket-Version: 13\r\n",
	    extra_headers && ci_find(extra_headers, "Sec-WebSocket-Protocol:") ?
	    "" : "Sec-WebSocket-Protocol: parley.v1\r\n",
	    extra_headers ? extra_headers : "");
	if (n < 0 || (size_t)n >= reqsz) {
		free(req);
		goto err;
	}
	if (send_all(c->fd, req, (size_t)n, deadline) < 0) {
		free(req);
		goto err;
	}
	free(req);

	/* Read the response head; what follows it stays in c->in. */
	for (;;) {
		if (c->in_len >= 4) {
			c->in[c->in_len] = '\0';
			end = strstr((char *)c->in, "\r\n\r\n");
			if (end != NULL)
				break;
		}
		if (c->in_len >= sizeof(c->head) - 1)
			goto err;
		if (in_reserve(c, 1) < 0 || in_fill(c, deadline) <= 0)
			goto err;
		if (in_reserve(c, 1) < 0) /* room for the NUL above */
			goto err;
		/* The head may contain no NUL; a stray one only hides it. */
	}
	headlen = (size_t)(end - (char *)c->in) + 4;
	if (headlen >= sizeof(c->head))
		goto err;
	memcpy(c->head, c->in, headlen);
	c->head[headlen] = '\0';
	c->in_off = headlen;
	if (sscanf(c->head, "HTTP/1.%*1[01] %3d", &status) != 1)
		goto err;
	c->status = status;
	if (status != 101)
		return status;
	wsc_expected_accept(key, accept);
	if (!wsc_response_header(c, "Sec-WebSocket-Accept", got, sizeof(got)) ||
	    strcmp(got, accept) != 0)
		goto err;
	return 101;
err:
	wsc_close(c);
	return -1;
}

int
wsc_response_header(const struct wsc *c, const char *name, char *out,
    size_t outsz)
{
	return wsc_head_header(c->head, name, out, outsz);
}

int
wsc_head_header(const char *head, const char *name, char *out, size_t outsz)
{
	const char *line = strstr(head, "\r\n"), *v, *e;
	size_t nlen = strlen(name), vlen;

	while (line != NULL && line[2] != '\0' && line[2] != '\r') {
		line += 2;
		e = strstr(line, "\r\n");
		if (e == NULL)
			break;
		if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
			v = line + nlen + 1;
			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			vlen = (size_t)(e - v);
			if (outsz > 0) {
				if (vlen >= outsz)
					vlen = outsz - 1;
				memcpy(out, v, vlen);
				out[vlen] = '\0';
			}
			return 1;
		}
		line = strstr(line, "\r\n");
	}
	return 0;
}

static uint32_t
next_mask(struct wsc *c)
{
	/* xorshift32: masks need not be strong in a test client. */
	uint32_t x = c->rng;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	c->rng = x;
	return x;
}

int
wsc_send_frame(struct wsc *c, int opcode, int fin, const void *payload,
    size_t len, unsigned flags)
{
	uint8_t stackbuf[512], *buf = stackbuf;
	size_t n;
	int r;

	if (c->fd < 0)
		return -1;
	if (len + WSC_MAX_HEADER > sizeof(stackbuf)) {
		buf = malloc(len + WSC_MAX_HEADER);
		if (buf == NULL)
			return -1;
	}
	n = wsc_encode(buf, opcode, fin, payload, len, next_mask(c), flags);
	r = send_all(c->fd, buf, n, wsc_now_ms() + WSC_SEND_TIMEOUT_MS);
	if (buf != stackbuf)
		free(buf);
	return r;
}

int
wsc_send_text(struct wsc *c, const char *s)
{
	return wsc_send_frame(c, 1, 1, s, strlen(s), 0);
}

int
wsc_vsend_textf(struct wsc *c, const char *fmt, va_list ap)
{
	char buf[WSC_TEXTF_MAX];
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);

	if (n < 0 || (size_t)n >= sizeof(buf))
		return -1;
	return wsc_send_text(c, buf);
}

int
wsc_send_textf(struct wsc *c, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = wsc_vsend_textf(c, fmt, ap);
	va_end(ap);
	return r;
}

int
wsc_send_raw(struct wsc *c, const void *buf, size_t len)
{
	if (c->fd < 0)
		return -1;
	return send_all(c->fd, buf, len, wsc_now_ms() + WSC_SEND_TIMEOUT_MS);
}

int
wsc_recv(struct wsc *c, struct wsc_frame *f, int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	ssize_t n;
	int r;

	/* The previous frame's payload may be released now. */
	if (c->in_off > 0) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	for (;;) {
		n = wsc_parse(c->in, c->in_len, f);
		if (n < 0)
			return -1;
		if (n > 0) {
			c->in_off = (size_t)n;
			return 1;
		}
		if (c->fd < 0)
			return -1;
		r = in_fill(c, deadline);
		if (r <= 0)
			return r;
	}
}

int
wsc_recv_data(struct wsc *c, struct wsc_frame *f, int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	uint8_t p[125];
	size_t n;
	int r;

	for (;;) {
		if ((r = wsc_recv(c, f, wsc_remaining_ms(deadline))) != 1)
			return r;
		if (f->opcode == 9) {
			/* f->payload lives until the next call on c: copy it first. */
			n = f->len < sizeof(p) ? f->len : sizeof(p);
			memcpy(p, f->payload, n);
			(void)wsc_send_frame(c, 10, 1, p, n, 0);
		} else if (f->opcode != 10) {
			return 1;
		}
	}
}

int
wsc_recv_close(struct wsc *c, int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	struct wsc_frame f;

	for (;;) {
		if (wsc_recv(c, &f, wsc_remaining_ms(deadline)) != 1)
			return -1;
		if (f.opcode == 8)
			return f.close_code;
	}
}

int
wsc_wait_eof(struct wsc *c, int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	uint8_t buf[16384];
	ssize_t n;

	if (c->fd < 0)
		return 1;
	c->in_off = c->in_len = 0;
	for (;;) {
		n = recv(c->fd, buf, sizeof(buf), 0);
		if (n == 0)
			return 1;
		if (n > 0)
			continue;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return 1;       /* reset: closed as well */
		if (wsc_wait_fd(c->fd, POLLIN, deadline) != 1)
			return 0;
	}
}

void
wsc_close(struct wsc *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->in);
	c->in = NULL;
	c->in_len = c->in_cap = c->in_off = 0;
}

int
wsc_http(const char *host, int port, const char *request, char *body,
    size_t bodysz, int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	struct wsc c;
	char *end, tmp[64];
	size_t headlen, clen = 0, have;
	int status = -1, has_cl = 0, to_eof = 0, r;

	memset(&c, 0, sizeof(c));
	if (body != NULL && bodysz > 0)
		body[0] = '\0';
	c.fd = tcp_connect(host, port, NULL, 0, deadline);
	if (c.fd < 0)
		return -1;
	if (send_all(c.fd, request, strlen(request), deadline) < 0)
		goto out;
	for (;;) {
		if (c.in_len >= 4) {
			c.in[c.in_len] = '\0';
			end = strstr((char *)c.in, "\r\n\r\n");
			if (end != NULL)
				break;
		}
		if (c.in_len > 65536)
			goto out;
		if (in_reserve(&c, 1) < 0 || in_fill(&c, deadline) <= 0)
			goto out;
		if (in_reserve(&c, 1) < 0)
			goto out;
	}
	headlen = (size_t)(end - (char *)c.in) + 4;
	if (sscanf((char *)c.in, "HTTP/1.%*1[01] %3d", &status) != 1) {
		status = -1;
		goto out;
	}
	memcpy(c.head, c.in, headlen < sizeof(c.head) ? headlen :
	    sizeof(c.head) - 1);
	c.head[headlen < sizeof(c.head) ? headlen : sizeof(c.head) - 1] = '\0';
	if (wsc_response_header(&c, "Content-Length", tmp, sizeof(tmp))) {
		has_cl = 1;
		clen = strtoul(tmp, NULL, 10);
	} else if (wsc_response_header(&c, "Connection", tmp, sizeof(tmp)) &&
	    ci_find(tmp, "close") != NULL) {
		to_eof = 1;
	} else if (strncmp(c.head, "HTTP/1.0", 8) == 0) {
		to_eof = 1;
	}
	if (status == 204 || status == 304 || status / 100 == 1)
		has_cl = 1, clen = 0, to_eof = 0;
	for (;;) {
		have = c.in_len - headlen;
		if (has_cl && have >= clen)
			break;
		if (!has_cl && !to_eof)
			break;
		if (have > 16u * 1024 * 1024) {
			status = -1;
			goto out;
		}
		r = in_fill(&c, deadline);
		if (r < 0 && to_eof)
			break;
		if (r <= 0) {
			status = -1;
			goto out;
		}
	}
	have = c.in_len - headlen;
	if (has_cl && have > clen)
		have = clen;
	if (body != NULL && bodysz > 0) {
		if (have >= bodysz)
			have = bodysz - 1;
		memcpy(body, c.in + headlen, have);
		body[have] = '\0';
	}
out:
	wsc_close(&c);
	return status;
}

/*
 * idle_conns.c - open many idle WebSocket connections to parleyd and hold
 * them, answering the server's pings, so tests/idle-rss.sh can measure the
 * server's memory per connection.
 *
 *   idle_conns -p PORT -n N [-s SRC] [-t HOLD_SECONDS] [-H HOST] [-T TIMEOUT]
 *
 * Non-blocking sockets on one epoll set; at most MAX_PENDING handshakes in
 * flight. Prints "connected N failed F seconds S" once every connection is
 * up or has failed (or TIMEOUT seconds passed, default 120), holds them HOLD
 * seconds (default 3600) or until SIGTERM/SIGINT, closes them all and
 * prints "closed N dropped D". Exits 0 when no connection failed or dropped.
 * Several processes with different source addresses (-s 127.0.0.2, ...) let
 * one client machine exceed one address's ephemeral port range.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "wsclient.h"

#define MAX_PENDING 500
#define IN_START 1024           /* receive buffer per connection */
#define IN_MAX (1024 * 1024)

enum conn_state {
	C_FREE,                 /* not started */
	C_CONNECTING,           /* TCP connect in progress */
	C_HANDSHAKE,            /* request sent, reading the 101 */
	C_OPEN,                 /* upgraded, idle */
	C_DONE                  /* failed, dropped or closed; fd closed */
};

struct conn {
	int fd;
	uint8_t state;          /* enum conn_state */
	char key[25];           /* Sec-WebSocket-Key sent */
	uint8_t *in;            /* received, not yet parsed */
	size_t in_len, in_cap;
};

static volatile sig_atomic_t stop_flag;
static struct conn *conns;
static int nconns, epfd, pending, n_connected, n_failed, n_dropped;
static struct sockaddr_in dst, src;
static int use_src;
static uint32_t rng = 0x2545f491u;

static void
on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint32_t
next_mask(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

static void
usage(void)
{
	fprintf(stderr, "usage: idle_conns -p PORT -n N [-s SRC_ADDR] "
	    "[-t HOLD_SECONDS] [-H HOST] [-T CONNECT_TIMEOUT]\n");
	exit(2);
}

static void
conn_end(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);       /* also removes it from the epoll set */
	c->fd = -1;
	free(c->in);
	c->in = NULL;
	c->in_len = c->in_cap = 0;
	c->state = C_DONE;
}

static void
conn_fail(struct conn *c)
{
	if (c->state == C_CONNECTING || c->state == C_HANDSHAKE) {
		pending--;
		n_failed++;
	} else if (c->state == C_OPEN) {
		n_dropped++;
	}
	conn_end(c);
}

static int
send_small(int fd, const void *buf, size_t len)
{
	ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

	/* A fresh or idle socket always has room for a few hundred bytes. */
	return n == (ssize_t)len ? 0 : -1;
}

static void
conn_start(int i)
{
	struct conn *c = &conns[i];
	struct epoll_event ev;
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->state = C_CONNECTING;
	pending++;
	if (c->fd < 0) {
		perror("socket");
		conn_fail(c);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (use_src) {
#ifdef IP_BIND_ADDRESS_NO_PORT
		setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof(one));
#endif
		if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
			perror("bind");
			conn_fail(c);
			return;
		}
	}
	if (connect(c->fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 &&
	    errno != EINPROGRESS) {
		if (n_failed < 5)
			perror("connect");
		conn_fail(c);
		return;
	}
	ev.events = EPOLLOUT | EPOLLIN;
	ev.data.u32 = (uint32_t)i;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
		perror("epoll_ctl");
		conn_fail(c);
	}
}

static void
conn_connected(int i, const char *host, int port)
{
	struct conn *c = &conns[i];
	struct epoll_event ev;
	socklen_t sl = sizeof(int);
	char req[512];
	int err = 0, n;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0 || err) {
		if (n_failed < 5)
			fprintf(stderr, "connect: %s\n", strerror(err));
		conn_fail(c);
		return;
	}
	wsc_make_key(c->key);
	n = snprintf(req, sizeof(req), "GET /ws HTTP/1.1\r\n"
	    "Host: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Protocol: parley.v1\r\n\r\n", host, port, c->key);
	if (send_small(c->fd, req, (size_t)n) < 0) {
		conn_fail(c);
		return;
	}
	c->state = C_HANDSHAKE;
	ev.events = EPOLLIN;
	ev.data.u32 = (uint32_t)i;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		conn_fail(c);
}

/* An idle chat client has said hello (the server needs --allow-anonymous). */
static int
say_hello(struct conn *c)
{
	uint8_t out[WSC_MAX_HEADER + 64];
	char hello[64];
	int len = snprintf(hello, sizeof(hello),
	    "{\"type\":\"hello\",\"name\":\"idle%d\"}", c->fd);

	return send_small(c->fd, out, wsc_encode(out, 1, 1, hello, (size_t)len,
	    next_mask(), 0));
}

/* Check the 101 head in c->in; 1 done, 0 need more, -1 bad. */
static int
check_head(struct conn *c)
{
	char accept[29], *end, *h, *v;
	size_t headlen;

	c->in[c->in_len] = '\0';
	end = strstr((char *)c->in, "\r\n\r\n");
	if (end == NULL)
		return c->in_len + 1 >= c->in_cap ? -1 : 0;
	*end = '\0';
	if (strncmp((char *)c->in, "HTTP/1.1 101", 12) != 0) {
		if (n_failed < 5)
			fprintf(stderr, "upgrade refused: %.60s\n",
			    (char *)c->in);
		return -1;
	}
	wsc_expected_accept(c->key, accept);
	for (h = strstr((char *)c->in, "\r\n"); h != NULL;
	    h = strstr(h + 2, "\r\n")) {
		if (strncasecmp(h + 2, "Sec-WebSocket-Accept:", 21) != 0)
			continue;
		v = h + 2 + 21;
		while (*v == ' ' || *v == '\t')
			v++;
		if (strncmp(v, accept, 28) != 0)
			return -1;
		headlen = (size_t)(end - (char *)c->in) + 4;
		memmove(c->in, c->in + headlen, c->in_len - headlen);
		c->in_len -= headlen;
		return 1;
	}
	return -1;
}

/* Handle complete frames in c->in; -1 when the connection ended. */
static int
handle_frames(struct conn *c)
{
	uint8_t out[WSC_MAX_HEADER + 125];
	struct wsc_frame f;
	size_t off = 0, n;
	ssize_t r;

	while ((r = wsc_parse(c->in + off, c->in_len - off, &f)) > 0) {
		off += (size_t)r;
		if (f.opcode == 9) {
			n = wsc_encode(out, 10, 1, f.payload,
			    f.len > 125 ? 125 : f.len, next_mask(), 0);
			if (send_small(c->fd, out, n) < 0)
				return -1;
		} else if (f.opcode == 8) {
			n = wsc_encode(out, 8, 1, f.payload,
			    f.len >= 2 ? 2 : 0, next_mask(), 0);
			(void)send_small(c->fd, out, n);
			if (n_dropped < 5)
				fprintf(stderr, "server closed a connection "
				    "(%d)\n", f.close_code);
			return -1;
		}
	}
	if (r < 0)
		return -1;
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
	return 0;
}

static void
conn_readable(struct conn *c)
{
	uint8_t *p;
	ssize_t n;
	int r;

	for (;;) {
		if (c->in == NULL) {
			c->in = malloc(IN_START);
			if (c->in == NULL) {
				conn_fail(c);
				return;
			}
			c->in_cap = IN_START;
		}
		if (c->in_cap - c->in_len < 2) {
			if (c->in_cap >= IN_MAX) {
				conn_fail(c);
				return;
			}
			p = realloc(c->in, c->in_cap * 2);
			if (p == NULL) {
				conn_fail(c);
				return;
			}
			c->in = p;
			c->in_cap *= 2;
		}
		/* Keep one byte for check_head's NUL. */
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1,
		    0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			conn_fail(c);
			return;
		}
		c->in_len += (size_t)n;
		if (c->state == C_HANDSHAKE) {
			r = check_head(c);
			if (r < 0) {
				conn_fail(c);
				return;
			}
			if (r == 0)
				continue;
			c->state = C_OPEN;
			pending--;
			n_connected++;
			if (say_hello(c) < 0) {
				conn_fail(c);
				return;
			}
		}
		if (handle_frames(c) < 0) {
			conn_fail(c);
			return;
		}
	}
}

static void
run_events(int timeout_ms, const char *host, int port)
{
	struct epoll_event evs[256];
	struct conn *c;
	int n, k;

	n = epoll_wait(epfd, evs, 256, timeout_ms);
	for (k = 0; k < n; k++) {
		c = &conns[evs[k].data.u32];
		if (c->state == C_CONNECTING) {
			if (evs[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
				conn_connected((int)evs[k].data.u32, host,
				    port);
		} else if (c->state == C_HANDSHAKE || c->state == C_OPEN) {
			if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				conn_readable(c);
		}
	}
}

int
main(int argc, char **argv)
{
	const char *host = "127.0.0.1", *srcaddr = NULL;
	int port = 0, hold = 3600, timeout = 120, opt, i, next = 0;
	uint8_t out[WSC_MAX_HEADER + 2];
	double t0, deadline, hold_end;
	struct sigaction sa;
	struct rlimit rl;
	int closed = 0;
	size_t n;

	while ((opt = getopt(argc, argv, "p:n:s:t:H:T:h")) != -1) {
		switch (opt) {
		case 'p': port = atoi(optarg); break;
		case 'n': nconns = atoi(optarg); break;
		case 's': srcaddr = optarg; break;
		case 't': hold = atoi(optarg); break;
		case 'H': host = optarg; break;
		case 'T': timeout = atoi(optarg); break;
		default: usage();
		}
	}
	if (port <= 0 || port > 65535 || nconns <= 0 || hold < 0 ||
	    timeout <= 0)
		usage();

	memset(&dst, 0, sizeof(dst));
	dst.sin_family = AF_INET;
	dst.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &dst.sin_addr) != 1)
		usage();
	if (srcaddr != NULL) {
		memset(&src, 0, sizeof(src));
		src.sin_family = AF_INET;
		if (inet_pton(AF_INET, srcaddr, &src.sin_addr) != 1)
			usage();
		use_src = 1;
	}

	/* One fd per connection: raise the soft limit to the hard one. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			perror("setrlimit");
		if (rl.rlim_cur != RLIM_INFINITY &&
		    (rlim_t)nconns + 20 > rl.rlim_cur)
			fprintf(stderr, "warning: %d connections but only %llu "
			    "files allowed\n", nconns,
			    (unsigned long long)rl.rlim_cur);
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;     /* no SA_RESTART: epoll_wait wakes up */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	conns = calloc((size_t)nconns, sizeof(*conns));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (conns == NULL || epfd < 0) {
		perror("setup");
		return 1;
	}
	for (i = 0; i < nconns; i++)
		conns[i].fd = -1;

	t0 = now_s();
	deadline = t0 + timeout;
	while (!stop_flag && n_connected + n_failed + n_dropped < nconns &&
	    now_s() < deadline) {
		while (next < nconns && pending < MAX_PENDING)
			conn_start(next++);
		run_events(100, host, port);
	}
	/* Whatever has not completed by now counts as failed. */
	for (i = 0; i < nconns; i++) {
		if (conns[i].state == C_FREE) {
			conns[i].state = C_DONE;
			n_failed++;
		} else if (conns[i].state == C_CONNECTING ||
		    conns[i].state == C_HANDSHAKE) {
			conn_fail(&conns[i]);
		}
	}
	printf("connected %d failed %d seconds %.2f\n", n_connected, n_failed,
	    now_s() - t0);
	fflush(stdout);

	hold_end = now_s() + hold;
	while (!stop_flag && now_s() < hold_end)
		run_events(200, host, port);

	for (i = 0; i < nconns; i++) {
		if (conns[i].state != C_OPEN)
			continue;
		n = wsc_encode(out, 8, 1, "\x03\xe8", 2, next_mask(), 0);
		(void)send_small(conns[i].fd, out, n);
		conn_end(&conns[i]);
		closed++;
	}
	printf("closed %d dropped %d\n", closed, n_dropped);
	fflush(stdout);
	close(epfd);
	free(conns);
	return n_failed == 0 && n_dropped == 0 ? 0 : 1;
}

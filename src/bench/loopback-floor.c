/*
 * loopback-floor: what the kernel alone charges for one fan-out delivery
 * over loopback TCP on this machine, right now.
 *
 * It does the system-call work of parleyd's fan-out and nothing else: C
 * accepted connections in R rooms, and per event one send() of a small
 * frame to every member of one room, paced open-loop at --rate deliveries
 * per second. A child process (pinned to --reader-cpu) holds the other ends
 * in epoll and reads, as parley-bench does. The writer's own CPU time per
 * send() is the floor under parleyd's "server CPU per delivery": on
 * loopback the sender also pays for the receiver's TCP input, its ACK and
 * its wakeup. Each frame carries the time its event began, so the reader
 * also gives the floor under the send-to-delivery latency: the spread of
 * writing a room one send() at a time. make bench prints both next to
 * parleyd's numbers, measured minutes apart on the same noisy machine.
 *
 * Single-threaded, bounded by --duration; prints one JSON object.
 */
#define _GNU_SOURCE
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FRAME_LEN 110   /* a chat message frame as parley-bench gets it */

struct opts {
	int conns, rooms, reader_cpu;
	double rate, duration;
	size_t frame;
};

static void
die(const char *what)
{
	fprintf(stderr, "loopback-floor: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static void
pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		die("sched_setaffinity");
}

/*
 * Latencies of the frames that start in buf (a frame split across reads
 * keeps its place in *off and is not timed: rare, and it would be late).
 */
static size_t
take_latencies(const char *buf, size_t len, size_t *off, size_t frame,
    uint64_t now, uint64_t *lat, size_t nlat, size_t cap)
{
	size_t p = *off ? frame - *off : 0;

	if (p > len) {
		*off += len;
		return nlat;
	}
	for (; p + frame <= len; p += frame) {
		uint64_t sent;

		memcpy(&sent, buf + p + 2, sizeof(sent));
		if (nlat < cap && now >= sent)
			lat[nlat++] = now - sent;
	}
	*off = (len - p) % frame;
	return nlat;
}

/*
 * The reader: connect every client from 127.0.0.x sources (ephemeral
 * ports never run short), then read whatever comes until the writer closes.
 */
static void
reader(const struct opts *o, in_port_t port, int ready_fd, int result_fd)
{
	struct epoll_event ev, evs[256];
	char buf[65536];
	int ep, i, open;
	size_t nlat = 0, cap = (size_t)(o->rate * (o->duration + 1)) + 1024;
	uint64_t *lat = malloc(cap * sizeof(*lat));
	/* Bytes of the frame in progress per fd: frames are fixed-length. */
	size_t *off = calloc((size_t)o->conns + 1024, sizeof(*off));

	pin(o->reader_cpu);
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1");
	for (i = 0; i < o->conns; i++) {
		struct sockaddr_in src = { .sin_family = AF_INET }, dst = src;
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

		if (fd < 0)
			die("socket");
		src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(i % 200));
		dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		dst.sin_port = port;
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0 ||
		    connect(fd, (struct sockaddr *)&dst, sizeof(dst)) != 0)
			die("connect");
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		ev.events = EPOLLIN;
		ev.data.fd = fd;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
			die("epoll_ctl");
	}
	if (lat == NULL || off == NULL)
		die("malloc");
	if (write(ready_fd, "r", 1) != 1)
		die("write");
	close(ready_fd);
	for (open = o->conns; open > 0;) {
		int n = epoll_wait(ep, evs, 256, 10000);

		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		if (n == 0)
			break;   /* the writer is gone: never hang */
		for (i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			ssize_t r = recv(fd, buf, sizeof(buf), 0);
			uint64_t t = now_ns();

			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				close(fd);
				open--;
				continue;
			}
			nlat = take_latencies(buf, r > 0 ? (size_t)r : 0,
			    &off[fd], o->frame, t, lat, nlat, cap);
		}
	}
	qsort(lat, nlat, sizeof(*lat), cmp_u64);
	dprintf(result_fd, "%zu %.3f %.3f %.3f\n", nlat,
	    nlat ? (double)lat[nlat / 2] / 1e6 : 0.0,
	    nlat ? (double)lat[nlat * 99 / 100] / 1e6 : 0.0,
	    nlat ? (double)lat[nlat - 1] / 1e6 : 0.0);
	_exit(0);
}

/* Send one frame to every member of one room; returns the sends that took. */
static long
fan_out(const int *fds, int first, int count, const char *frame, size_t len)
{
	long sent = 0;

	for (int i = 0; i < count; i++)
		if (send(fds[first + i], frame, len, MSG_DONTWAIT | MSG_NOSIGNAL) ==
		    (ssize_t)len)
			sent++;
	return sent;
}

static void
run(const struct opts *o)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t alen = sizeof(addr);
	int lfd, pipefd[2], respipe[2], *fds, per_room = o->conns / o->rooms, one = 1;
	char frame[FRAME_LEN], c;
	long events = 0, sent = 0, failed = 0;
	double t0, c0, t, dt, end, interval;
	pid_t child;
	int status;

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
	    listen(lfd, 4096) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&addr, &alen) != 0)
		die("listen");
	if (pipe2(pipefd, O_CLOEXEC) != 0 || pipe2(respipe, O_CLOEXEC) != 0)
		die("pipe");
	if ((child = fork()) < 0)
		die("fork");
	if (child == 0) {
		close(pipefd[0]);
		close(respipe[0]);
		reader(o, addr.sin_port, pipefd[1], respipe[1]);
	}
	close(pipefd[1]);
	close(respipe[1]);
	if ((fds = calloc((size_t)o->conns, sizeof(*fds))) == NULL)
		die("calloc");
	for (int i = 0; i < o->conns; i++) {
		if ((fds[i] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
			die("accept");
		setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (read(pipefd[0], &c, 1) != 1) {
		errno = EPIPE;
		die("the reader did not connect");
	}
	memset(frame, 'x', sizeof(frame));
	frame[0] = (char)0x81;   /* looks like a text frame; nobody parses it */
	frame[1] = (char)(o->frame - 2);

	interval = per_room / o->rate;   /* one event reaches per_room members */
	t0 = now_s();
	c0 = cpu_s();
	end = t0 + o->duration;
	for (t = t0; t < end; t += interval) {
		double wait = t - now_s();

		if (wait > 0) {
			struct timespec ts = { (time_t)wait,
			    (long)((wait - (double)(time_t)wait) * 1e9) };
			nanosleep(&ts, NULL);
		}
		uint64_t start = now_ns();

		memcpy(frame + 2, &start, sizeof(start));
		long ok = fan_out(fds, (int)(events % o->rooms) * per_room,
		    per_room, frame, o->frame);
		sent += ok;
		failed += per_room - ok;
		events++;
	}
	dt = now_s() - t0;
	double cpu = cpu_s() - c0;

	for (int i = 0; i < o->conns; i++)
		close(fds[i]);
	free(fds);
	char res[256] = "";
	ssize_t rn = read(respipe[0], res, sizeof(res) - 1);
	size_t nlat = 0;
	double p50 = 0, p99 = 0, max = 0;

	if (rn > 0)
		res[rn] = '\0';
	waitpid(child, &status, 0);
	if (rn <= 0 || sscanf(res, "%zu %lf %lf %lf", &nlat, &p50, &p99, &max) != 4 ||
	    !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		failed++;
	printf("{\"ok\":%s,\"conns\":%d,\"rooms\":%d,\"frame_bytes\":%zu,"
	    "\"target_sends_per_s\":%.0f,\"sends_per_s\":%.0f,\"failed\":%ld,"
	    "\"cpu_pct\":%.1f,\"us_per_send\":%.2f,\"timed\":%zu,"
	    "\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}}\n",
	    failed == 0 ? "true" : "false", o->conns, o->rooms, o->frame,
	    o->rate, (double)sent / dt, failed, 100.0 * cpu / dt,
	    sent > 0 ? cpu * 1e6 / (double)sent : 0.0, nlat, p50, p99, max);
}

static void
usage(void)
{
	fprintf(stderr, "usage: loopback-floor [-c conns] [-r rooms] "
	    "[--rate sends/s] [-d seconds] [--reader-cpu N]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "conns", required_argument, NULL, 'c' },
		{ "rooms", required_argument, NULL, 'r' },
		{ "rate", required_argument, NULL, 'R' },
		{ "duration", required_argument, NULL, 'd' },
		{ "reader-cpu", required_argument, NULL, 'P' },
		{ NULL, 0, NULL, 0 }
	};
	struct opts o = { 10000, 100, -1, 20000, 10, FRAME_LEN };
	int ch;

	while ((ch = getopt_long(argc, argv, "c:r:d:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o.conns = atoi(optarg); break;
		case 'r': o.rooms = atoi(optarg); break;
		case 'R': o.rate = atof(optarg); break;
		case 'd': o.duration = atof(optarg); break;
		case 'P': o.reader_cpu = atoi(optarg); break;
		default: usage();
		}
	}
	if (o.frame < 2 + sizeof(uint64_t))
		usage();
	if (optind != argc || o.conns < 1 || o.rooms < 1 || o.rooms > o.conns ||
	    o.conns > 18000 || !(o.rate > 0) || !(o.duration > 0) ||
	    o.duration > 600)
		usage();
	signal(SIGPIPE, SIG_IGN);
	run(&o);
	return 0;
}

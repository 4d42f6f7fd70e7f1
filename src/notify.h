/*
 * notify.h - the systemd notification protocol (sd_notify(3)) without
 * libsystemd: one datagram per message to the socket in $NOTIFY_SOCKET.
 *
 * Owner: the main thread only. Outside systemd (no NOTIFY_SOCKET) every
 * call is a no-op, so parleyd runs the same by hand.
 */
#ifndef PARLEY_NOTIFY_H
#define PARLEY_NOTIFY_H

#include <stdint.h>

/*
 * Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, and remove them
 * from the environment so nothing parleyd starts inherits them. Returns 0,
 * or -1 after logging (an unusable NOTIFY_SOCKET: parleyd goes on).
 */
int notify_init(void);

/* "KEY=value" lines, sent as one datagram. Failures are logged once. */
void notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The watchdog interval systemd asked for in microseconds; 0: none. */
uint64_t notify_watchdog_usec(void);

void notify_close(void);

#endif

/*
 * reload.h - SIGHUP: read the config file again and apply what can change
 * while running.
 *
 * Owner: the main thread (called from its signal callback). It parses the
 * command line and the file into a fresh struct settings, logs each change
 * (applied, or waiting for a restart), makes a new live snapshot (live.h)
 * and posts it to every worker. The log file is reopened on every SIGHUP,
 * changed or not, which is what logrotate needs.
 */
#ifndef PARLEY_RELOAD_H
#define PARLEY_RELOAD_H

struct server;

/* Main thread. Returns 0, or -1 when the file was refused (nothing changed). */
int server_reload(struct server *srv);

#endif

/*
 * router.h - maps an HTTP request to its handler: the health and metrics
 * endpoints, the WebSocket upgrade, and JSON errors for everything else.
 *
 * Called on the worker thread that owns the connection. Handlers answer
 * through conn_http_respond()/conn_http_error() or upgrade the connection.
 */
#ifndef PARLEY_ROUTER_H
#define PARLEY_ROUTER_H

#include <stddef.h>

struct conn;
struct http_request;

void router_dispatch(struct conn *c, const struct http_request *req,
    const char *body, size_t body_len);

#endif

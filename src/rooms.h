/*
 * rooms.h - the worker side of room actors: the registry shard of rooms
 * homed on a worker, their run list and timers, and the routing of what
 * rooms send (deliveries and member events) to the right worker.
 *
 * Owner: the worker; every function runs on its thread, except
 * worker_schedule_room() and worker_current() (any thread, worker.h) and
 * worker_quiesce() (main thread, after the workers stopped).
 */
#ifndef PARLEY_ROOMS_H
#define PARLEY_ROOMS_H

#include <stdint.h>

struct worker;
struct mailbox_msg;

/* Set up the registry, run list and room environment (worker_new). */
int rooms_init(struct worker *w);

/* Worker thread: take room-idle and out-limit from w->live (start, SIGHUP). */
void rooms_apply_live(struct worker *w);

/* Free every room homed here (teardown, after worker_quiesce). */
void rooms_free(struct worker *w);

/* Mark the calling thread as w's (worker thread start). */
void rooms_bind_thread(struct worker *w);

/*
 * Handle a room-related mailbox message (ROOM_RUN, ROOM_OPEN, DELIVER,
 * MEMBER). Returns 0 when msg was not one of them.
 */
int rooms_handle(struct worker *w, struct mailbox_msg *msg);

/* Typing expiry and idle rooms, from the worker's timer. */
void rooms_tick(struct worker *w);

#endif

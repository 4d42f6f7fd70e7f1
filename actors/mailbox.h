/*
 * mailbox.h - a multi-producer, single-consumer message queue with an
 * eventfd wake-up, the hand-off between threads.
 *
 * Ownership: any thread may mailbox_push(); exactly one thread, the owner,
 * may call mailbox_take() and mailbox_wait_fd() users read the eventfd.
 * Messages are owned by the mailbox from push until take, then by the
 * consumer.
 *
 * Built on ck_stack (a Treiber stack): a push is one CAS and never fails,
 * so producers (room actors, the persistence thread) never block or drop;
 * the consumer takes the whole stack with one atomic swap and reverses it,
 * which gives FIFO order per producer. The producer whose push finds the
 * stack empty is the one, and the only one, that writes the eventfd: a busy
 * mailbox costs no system call per message.
 */
#ifndef PARLEY_MAILBOX_H
#define PARLEY_MAILBOX_H

#include <stddef.h>
#include <stdint.h>

#include <ck_stack.h>

/* Embed this as the first member of every message type. */
struct mailbox_msg {
	ck_stack_entry_t entry;
	struct mailbox_msg *next;   /* consumer-private FIFO link after take */
	int kind;                   /* the receiver's enum of message kinds */
};

struct mailbox {
	ck_stack_t stack;           /* shared: producers push, the owner swaps */
	int efd;                    /* eventfd, EFD_NONBLOCK; the owner polls it */
	uint64_t wakeups;           /* eventfd writes (shared, for tests/metrics) */

	/* owner-only: taken but not yet handed out, in FIFO order */
	struct mailbox_msg *head, *tail;
	uint32_t queued;            /* owner-only: messages in head..tail */
	uint32_t high_water;        /* owner-only: most ever seen queued at once */
};

/* 0 on success, -1 with errno if the eventfd cannot be created. */
int mailbox_init(struct mailbox *mb);
/*
 * A mailbox without an eventfd (a room's: descriptors are scarce). Its
 * push returns 1 on empty -> non-empty and the caller schedules the owner.
 */
void mailbox_init_quiet(struct mailbox *mb);

/* Owner, after producers have stopped. Messages still queued are returned
 * through mailbox_take() first; destroy only closes the eventfd. */
void mailbox_destroy(struct mailbox *mb);

/*
 * Any thread. Returns 1 when this push made the mailbox non-empty (it then
 * wrote the eventfd), else 0.
 */
int mailbox_push(struct mailbox *mb, struct mailbox_msg *msg);

/*
 * Owner only. Returns the next message in FIFO-per-producer order, or NULL
 * when none is queued. Does not read the eventfd: the owner's event
 * callback drains it (mailbox_clear_wakeup) before taking messages, so a
 * push that races with the take writes it again and is never missed.
 */
struct mailbox_msg *mailbox_take(struct mailbox *mb);

/* Owner only: consume the eventfd's pending wake-ups. */
void mailbox_clear_wakeup(struct mailbox *mb);

/* Owner only: 1 if mailbox_take() would return a message now. */
int mailbox_pending(struct mailbox *mb);

#endif

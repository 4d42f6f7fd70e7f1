#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <ck_pr.h>

#include "mailbox.h"

void
mailbox_init_quiet(struct mailbox *mb)
{
	ck_stack_init(&mb->stack);
	mb->head = mb->tail = NULL;
	mb->wakeups = 0;
	mb->queued = mb->high_water = 0;
	mb->efd = -1;
}

int
mailbox_init(struct mailbox *mb)
{
	mailbox_init_quiet(mb);
	mb->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return mb->efd < 0 ? -1 : 0;
}

void
mailbox_destroy(struct mailbox *mb)
{
	if (mb->efd >= 0)
		close(mb->efd);
	mb->efd = -1;
}

int
mailbox_push(struct mailbox *mb, struct mailbox_msg *msg)
{
	ck_stack_entry_t *head = ck_pr_load_ptr(&mb->stack.head);
	uint64_t one = 1;
	ssize_t n;

	/*
	 * ck_stack_push_upmc, keeping the head we replaced in a local: once the
	 * CAS succeeds the consumer may take and free msg at any moment, so msg
	 * must not be read again. The store fence publishes the message body
	 * and its link before the CAS makes it reachable.
	 */
	do {
		msg->entry.next = head;
		ck_pr_fence_store();
	} while (!ck_pr_cas_ptr_value(&mb->stack.head, head, &msg->entry, &head));
	if (head != NULL)
		return 0;   /* not empty before: its first producer woke the owner */
	if (mb->efd < 0)
		return 1;   /* quiet: the caller schedules the owner */
	ck_pr_inc_64(&mb->wakeups);
	do
		n = write(mb->efd, &one, sizeof(one));
	while (n < 0 && errno == EINTR);
	/* EAGAIN means the counter is saturated: the owner is awake anyway. */
	return 1;
}

/* Move everything pushed so far into the owner's FIFO list. */
static void
mailbox_refill(struct mailbox *mb)
{
	ck_stack_entry_t *e = ck_stack_batch_pop_upmc(&mb->stack);
	struct mailbox_msg *rev = NULL, *last;
	uint32_t n = 0;

	if (e == NULL)
		return;
	/* The stack hands them newest first: the newest is our new tail. */
	last = (struct mailbox_msg *)e;
	while (e != NULL) {
		struct mailbox_msg *m = (struct mailbox_msg *)e;

		e = e->next;
		m->next = rev;
		rev = m;
		n++;
	}
	mb->queued += n;
	if (mb->queued > mb->high_water)
		mb->high_water = mb->queued;
	if (mb->tail != NULL)
		mb->tail->next = rev;
	else
		mb->head = rev;
	mb->tail = last;
}

struct mailbox_msg *
mailbox_take(struct mailbox *mb)
{
	struct mailbox_msg *m;

	if (mb->head == NULL)
		mailbox_refill(mb);
	if ((m = mb->head) == NULL)
		return NULL;
	mb->head = m->next;
	mb->queued--;
	if (mb->head == NULL)
		mb->tail = NULL;
	m->next = NULL;
	return m;
}

void
mailbox_clear_wakeup(struct mailbox *mb)
{
	uint64_t v;

	while (read(mb->efd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
}

int
mailbox_pending(struct mailbox *mb)
{
	if (mb->head == NULL)
		mailbox_refill(mb);
	return mb->head != NULL;
}

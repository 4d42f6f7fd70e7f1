/*
 * test_mailbox.c - the worker mailbox: wake-up on the empty to non-empty
 * transition only, FIFO order, and per-producer order under 4 concurrent
 * producer threads with a consumer that sleeps on the eventfd.
 */
#include "config.h"

#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "unit.h"
#include <ck_pr.h>

#include "mailbox.h"

struct tmsg {
	struct mailbox_msg base;   /* first: the mailbox hands back this pointer */
	unsigned producer;
	uint64_t seq;
};

static struct tmsg *
tmsg_new(unsigned producer, uint64_t seq)
{
	struct tmsg *m = calloc(1, sizeof(*m));

	m->producer = producer;
	m->seq = seq;
	return m;
}

static void
test_wakeup_only_on_empty(void)
{
	struct mailbox mb;
	struct mailbox_msg *m;
	uint64_t seen = 0;

	CU_ASSERT_FATAL(mailbox_init(&mb) == 0);
	CU_ASSERT_PTR_NULL(mailbox_take(&mb));
	CU_ASSERT_EQUAL(mailbox_push(&mb, &tmsg_new(0, 1)->base), 1);
	CU_ASSERT_EQUAL(mailbox_push(&mb, &tmsg_new(0, 2)->base), 0);
	CU_ASSERT_EQUAL(mailbox_push(&mb, &tmsg_new(0, 3)->base), 0);
	CU_ASSERT_EQUAL(mb.wakeups, 1);
	mailbox_clear_wakeup(&mb);
	for (uint64_t want = 1; want <= 3; want++) {
		m = mailbox_take(&mb);
		CU_ASSERT_PTR_NOT_NULL_FATAL(m);
		CU_ASSERT_EQUAL(((struct tmsg *)m)->seq, want);
		free(m);
		seen++;
	}
	CU_ASSERT_EQUAL(seen, 3);
	CU_ASSERT_PTR_NULL(mailbox_take(&mb));
	CU_ASSERT_FALSE(mailbox_pending(&mb));
	/* Empty again: the next push owns the wake-up. */
	CU_ASSERT_EQUAL(mailbox_push(&mb, &tmsg_new(0, 4)->base), 1);
	CU_ASSERT_TRUE(mailbox_pending(&mb));
	free(mailbox_take(&mb));
	mailbox_destroy(&mb);
}

static void
test_interleaved_take_keeps_fifo(void)
{
	struct mailbox mb;
	uint64_t next = 1, pushed = 0;

	CU_ASSERT_FATAL(mailbox_init(&mb) == 0);
	/* Pushes landing while the owner holds a partly taken batch go after it. */
	for (int round = 0; round < 50; round++) {
		for (int i = 0; i < round % 7 + 1; i++)
			mailbox_push(&mb, &tmsg_new(0, ++pushed)->base);
		for (int i = 0; i < round % 3 + 1; i++) {
			struct mailbox_msg *m = mailbox_take(&mb);

			if (m == NULL)
				break;
			CU_ASSERT_EQUAL(((struct tmsg *)m)->seq, next);
			next++;
			free(m);
		}
	}
	for (struct mailbox_msg *m; (m = mailbox_take(&mb)) != NULL; next++) {
		CU_ASSERT_EQUAL(((struct tmsg *)m)->seq, next);
		free(m);
	}
	CU_ASSERT_EQUAL(next, pushed + 1);
	mailbox_destroy(&mb);
}

#define PRODUCERS 4
#define PER_PRODUCER 200000

struct producer_arg {
	struct mailbox *mb;
	unsigned id;
	uint64_t wakes;
};

static void *
producer_main(void *p)
{
	struct producer_arg *a = p;

	for (uint64_t s = 1; s <= PER_PRODUCER; s++)
		a->wakes += (uint64_t)mailbox_push(a->mb, &tmsg_new(a->id, s)->base);
	return NULL;
}

static void
test_four_producers_order(void)
{
	struct mailbox mb;
	pthread_t th[PRODUCERS];
	struct producer_arg args[PRODUCERS];
	uint64_t last[PRODUCERS] = { 0 }, total = 0, wakes = 0, sleeps = 0;
	int order_ok = 1;

	CU_ASSERT_FATAL(mailbox_init(&mb) == 0);
	for (unsigned i = 0; i < PRODUCERS; i++) {
		args[i] = (struct producer_arg){ &mb, i, 0 };
		CU_ASSERT_FATAL(pthread_create(&th[i], NULL, producer_main, &args[i]) == 0);
	}
	/* The consumer behaves like a worker: sleep on the eventfd, clear, drain. */
	while (total < (uint64_t)PRODUCERS * PER_PRODUCER) {
		struct pollfd pfd = { mb.efd, POLLIN, 0 };
		struct mailbox_msg *m;

		if (!mailbox_pending(&mb)) {
			int r = poll(&pfd, 1, 5000);

			CU_ASSERT_FATAL(r == 1);   /* a lost wake-up would time out here */
			sleeps++;
		}
		mailbox_clear_wakeup(&mb);
		while ((m = mailbox_take(&mb)) != NULL) {
			struct tmsg *t = (struct tmsg *)m;

			if (t->producer >= PRODUCERS || t->seq != last[t->producer] + 1)
				order_ok = 0;
			else
				last[t->producer] = t->seq;
			total++;
			free(t);
		}
	}
	for (unsigned i = 0; i < PRODUCERS; i++) {
		pthread_join(th[i], NULL);
		wakes += args[i].wakes;
		CU_ASSERT_EQUAL(last[i], PER_PRODUCER);
	}
	CU_ASSERT_TRUE(order_ok);
	CU_ASSERT_EQUAL(total, (uint64_t)PRODUCERS * PER_PRODUCER);
	CU_ASSERT_PTR_NULL(mailbox_take(&mb));
	/* Wake-ups are per empty->non-empty transition, not per message. */
	CU_ASSERT_EQUAL(wakes, ck_pr_load_64(&mb.wakeups));
	CU_ASSERT_TRUE(wakes >= 1 && wakes < total);
	CU_ASSERT_TRUE(sleeps <= wakes);
	mailbox_destroy(&mb);
}

int
main(void)
{
	static const struct unit_test tests[] = {
		{ "wake-up only on empty to non-empty", test_wakeup_only_on_empty },
		{ "FIFO with takes interleaved with pushes", test_interleaved_take_keeps_fifo },
		{ "4 producers, per-producer order, no lost wake-up", test_four_producers_order },
	};

	return UNIT_RUN("mailbox", tests);
}

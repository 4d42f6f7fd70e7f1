/*
 * monotime.h - the monotonic clock in milliseconds and microseconds, for
 * deadlines and durations that a wall-clock jump must not bend. Any thread.
 * (Workers stamp reads with the cheaper coarse clock: worker_clock_ms.)
 */
#ifndef PARLEY_MONOTIME_H
#define PARLEY_MONOTIME_H

#include <stdint.h>
#include <time.h>

static inline int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

#endif

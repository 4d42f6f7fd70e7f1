#include "config.h"

#include "ratelimit.h"

void
rate_init(struct rate_bucket *b, uint32_t burst, uint32_t now_ms)
{
	b->tokens = (float)burst;
	b->last_ms = now_ms;
}

uint32_t
rate_take(struct rate_bucket *b, uint32_t rate, uint32_t burst, uint32_t now_ms)
{
	uint32_t elapsed = now_ms - b->last_ms;   /* wrap-safe */
	float need;

	if (rate == 0)
		return 0;
	b->last_ms = now_ms;
	b->tokens += (float)elapsed * (float)rate / 1000.0f;
	if (b->tokens > (float)burst)
		b->tokens = (float)burst;
	if (b->tokens >= 1.0f) {
		b->tokens -= 1.0f;
		return 0;
	}
	need = (1.0f - b->tokens) * 1000.0f / (float)rate;
	return need < 1.0f ? 1 : (uint32_t)need + 1;
}

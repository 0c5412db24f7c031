/*
 * schedq.h - the delivery scheduler's timetable: which message (or
 * destination queue) is due next.
 *
 * A binary min-heap of items keyed by their due time, each item knowing
 * its own position so that it can be rescheduled or removed in O(log n).
 * With a million deferred messages the scheduler looks only at the top of
 * the heap each tick: no full scans.  Plus the retry policy: exponential
 * backoff with jitter, bounded, and the queue lifetime.
 *
 * Must never: lose or duplicate an item on reschedule; let a retry time
 * overflow.
 */
#ifndef OMBUD_SCHEDQ_H
#define OMBUD_SCHEDQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCHEDQ_NONE ((size_t)-1)

struct schedq_item {
	int64_t	 due;		/* milliseconds, any monotonic base */
	size_t	 pos;		/* index in the heap; SCHEDQ_NONE if out */
	void	*data;
};

struct schedq {
	struct schedq_item	**v;
	size_t			  n, cap;
};

void schedq_init(struct schedq *q);
void schedq_free(struct schedq *q);	/* does not free the items */
static inline size_t schedq_len(const struct schedq *q) { return q->n; }

/* Insert it with due time due, or move it there if already queued. */
void schedq_set(struct schedq *q, struct schedq_item *it, int64_t due);
void schedq_remove(struct schedq *q, struct schedq_item *it);
/* The earliest item, or NULL. */
struct schedq_item *schedq_peek(const struct schedq *q);
/* Remove and return the earliest item if it is due at now, else NULL. */
struct schedq_item *schedq_pop_due(struct schedq *q, int64_t now);

struct retry_policy {
	int64_t	min_backoff;	/* seconds before the 1st retry (300) */
	int64_t	max_backoff;	/* cap of the interval (4000) */
	int64_t	lifetime;	/* seconds in queue before bouncing (5 d) */
};

/*
 * Seconds from now until attempt number attempts+1, after `attempts`
 * failed attempts (attempts >= 1): min_backoff * 2^(attempts-1), spread
 * uniformly over [75 %, 125 %] of that by rnd (any 32-bit random value)
 * so that a burst of failures does not come back as a burst, and never
 * above max_backoff (at the cap: [75 %, 100 %] of it).  Never below 1.
 */
int64_t retry_delay(const struct retry_policy *p, unsigned attempts,
    uint32_t rnd);

/* True when a message that arrived at `arrival` (unix s) has outlived the
 * policy at `now` and must be bounced instead of retried. */
bool retry_expired(const struct retry_policy *p, int64_t arrival,
    int64_t now);

#endif

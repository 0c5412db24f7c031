/*
 * test_schedq.c - the scheduler's heap against a brute-force model under
 * random operations, and the retry policy's bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <time.h>

#include "mta/schedq.h"

#define N 2000

static uint64_t rng = 88172645463325252ULL;

static uint32_t
xr(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

/* The earliest due time among queued items, by brute force. */
static int64_t
model_min(struct schedq_item *items, const int *in)
{
	int64_t m = INT64_MAX;

	for (int i = 0; i < N; i++)
		if (in[i] && items[i].due < m)
			m = items[i].due;
	return m;
}

static void
test_random_ops(void **state)
{
	struct schedq q;
	struct schedq_item *items = calloc(N, sizeof(*items));
	int *in = calloc(N, sizeof(*in));
	size_t count = 0;

	schedq_init(&q);
	for (int i = 0; i < N; i++)
		items[i].pos = SCHEDQ_NONE;
	for (int op = 0; op < 200000; op++) {
		int i = (int)(xr() % N);
		switch (xr() % 4) {
		case 0:
		case 1:	/* insert or reschedule */
			if (!in[i])
				count++;
			schedq_set(&q, &items[i], (int64_t)(xr() % 100000));
			in[i] = 1;
			break;
		case 2:	/* remove */
			if (in[i])
				count--;
			schedq_remove(&q, &items[i]);
			in[i] = 0;
			assert_int_equal(items[i].pos, SCHEDQ_NONE);
			break;
		case 3: {	/* pop what is due */
			int64_t now = (int64_t)(xr() % 100000);
			int64_t m = model_min(items, in);
			struct schedq_item *it = schedq_pop_due(&q, now);
			if (m > now) {
				assert_null(it);
			} else {
				assert_non_null(it);
				assert_int_equal(it->due, m);
				in[it - items] = 0;
				count--;
			}
			break;
		}
		}
		assert_int_equal(schedq_len(&q), count);
		if (count)
			assert_int_equal(schedq_peek(&q)->due,
			    model_min(items, in));
	}
	/* drain in order */
	int64_t last = INT64_MIN;
	struct schedq_item *it;
	while ((it = schedq_pop_due(&q, INT64_MAX)) != NULL) {
		assert_true(it->due >= last);
		last = it->due;
		count--;
	}
	assert_int_equal(count, 0);
	schedq_free(&q);
	free(items);
	free(in);
}

static void
test_retry_delay(void **state)
{
	struct retry_policy p = { 300, 4000, 5 * 86400 };

	/* attempt 1: 300 s +-25 % */
	for (int i = 0; i < 1000; i++) {
		int64_t d = retry_delay(&p, 1, xr());
		assert_true(d >= 225 && d <= 375);
	}
	/* doubling: 600, 1200, 2400, then capped at 4000 */
	assert_int_equal(retry_delay(&p, 2, 0), 450);	/* 600 * 0.75 */
	assert_int_equal(retry_delay(&p, 3, 0), 900);
	assert_int_equal(retry_delay(&p, 4, 0), 1800);
	assert_int_equal(retry_delay(&p, 5, 0), 3000);	/* 4000 * 0.75 */
	assert_int_equal(retry_delay(&p, 5, 1000), 4000);	/* the cap */
	assert_int_equal(retry_delay(&p, 4, 1200), 3000);	/* 2400 * 1.25 */
	/* no overflow however many attempts */
	for (unsigned a = 1; a < 100000; a += 997) {
		int64_t d = retry_delay(&p, a, xr());
		assert_true(d >= 1 && d <= 4000);	/* never above max */
	}
	/* degenerate policies still give a positive delay */
	struct retry_policy z = { 0, 0, 0 };
	assert_true(retry_delay(&z, 1, xr()) >= 1);
	assert_true(retry_delay(&z, 50, xr()) >= 1);
}

/*
 * A million deferred messages: a tick that finds nothing due, and one
 * that takes the few due items, touch the top of the heap only.  Counted
 * in heap operations' time: 10,000 ticks must cost far less than one
 * pass over a million items would (a full scan per tick is what this
 * structure exists to avoid).
 */
static void
test_million_deferred(void **state)
{
	enum { M = 1000000 };
	struct schedq_item *items = calloc(M, sizeof(*items));
	struct schedq q;
	struct timespec t0, t1;
	int64_t now = 1000, prev = INT64_MIN;
	size_t popped = 0;
	double ms;

	assert_non_null(items);
	schedq_init(&q);
	for (size_t i = 0; i < M; i++) {
		items[i].pos = SCHEDQ_NONE;
		/* due over the next ~5 days, in ms */
		schedq_set(&q, &items[i], now + 1 + (int64_t)(xr() %
		    (5u * 86400u * 1000u)));
	}
	assert_int_equal(schedq_len(&q), M);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int tick = 0; tick < 10000; tick++) {
		struct schedq_item *it;

		now += 1000;	/* a tick per second of queue time */
		while ((it = schedq_pop_due(&q, now)) != NULL) {
			assert_true(it->due <= now);
			assert_true(it->due >= prev);
			prev = it->due;
			popped++;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	/* ~23,000 due in 10,000 s of 5 days: popped in order, the rest
	 * untouched */
	assert_true(popped > 10000 && popped < 40000);
	assert_int_equal(schedq_len(&q), M - popped);
	/* generous for ASan on a busy 2-core machine: a scan per tick
	 * would be 10^10 item visits */
	assert_true(ms < 2000.0);
	schedq_free(&q);
	free(items);
}

static void
test_expired(void **state)
{
	struct retry_policy p = { 300, 4000, 5 * 86400 };

	assert_false(retry_expired(&p, 1000, 1000 + 5 * 86400 - 1));
	assert_true(retry_expired(&p, 1000, 1000 + 5 * 86400));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_ops),
		cmocka_unit_test(test_retry_delay),
		cmocka_unit_test(test_million_deferred),
		cmocka_unit_test(test_expired),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

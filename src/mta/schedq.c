/*
 * schedq.c - a position-tracking binary min-heap and the retry policy.
 * See schedq.h.
 */
#include "mta/schedq.h"
#include "common/log.h"
#include "common/util.h"

#include <stdlib.h>

void
schedq_init(struct schedq *q)
{
	q->v = NULL;
	q->n = q->cap = 0;
}

void
schedq_free(struct schedq *q)
{
	for (size_t i = 0; i < q->n; i++)
		q->v[i]->pos = SCHEDQ_NONE;
	free(q->v);
	schedq_init(q);
}

static void
schedq_put(struct schedq *q, size_t i, struct schedq_item *it)
{
	q->v[i] = it;
	it->pos = i;
}

static void
schedq_up(struct schedq *q, size_t i)
{
	struct schedq_item *it = q->v[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (q->v[parent]->due <= it->due)
			break;
		schedq_put(q, i, q->v[parent]);
		i = parent;
	}
	schedq_put(q, i, it);
}

static void
schedq_down(struct schedq *q, size_t i)
{
	struct schedq_item *it = q->v[i];

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		int64_t mdue = it->due;

		if (l < q->n && q->v[l]->due < mdue) {
			m = l;
			mdue = q->v[l]->due;
		}
		if (r < q->n && q->v[r]->due < mdue)
			m = r;
		if (m == i)
			break;
		schedq_put(q, i, q->v[m]);
		i = m;
	}
	schedq_put(q, i, it);
}

void
schedq_set(struct schedq *q, struct schedq_item *it, int64_t due)
{
	if (it->pos != SCHEDQ_NONE) {
		if (it->pos >= q->n || q->v[it->pos] != it)
			fatalx("schedq_set: item not in this queue");
		it->due = due;
		schedq_up(q, it->pos);
		schedq_down(q, it->pos);
		return;
	}
	if (q->n == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 64;
		q->v = xrealloc(q->v, q->cap * sizeof(*q->v));
	}
	it->due = due;
	schedq_put(q, q->n++, it);
	schedq_up(q, it->pos);
}

void
schedq_remove(struct schedq *q, struct schedq_item *it)
{
	struct schedq_item *moved;
	size_t i = it->pos;

	if (i == SCHEDQ_NONE)
		return;
	if (i >= q->n || q->v[i] != it)
		fatalx("schedq_remove: item not in this queue");
	it->pos = SCHEDQ_NONE;
	if (i == --q->n)
		return;
	moved = q->v[q->n];
	schedq_put(q, i, moved);
	schedq_up(q, i);		/* it moves one way or the other */
	schedq_down(q, moved->pos);
}

struct schedq_item *
schedq_peek(const struct schedq *q)
{
	return q->n ? q->v[0] : NULL;
}

struct schedq_item *
schedq_pop_due(struct schedq *q, int64_t now)
{
	struct schedq_item *it = schedq_peek(q);

	if (it == NULL || it->due > now)
		return NULL;
	schedq_remove(q, it);
	return it;
}

int64_t
retry_delay(const struct retry_policy *p, unsigned attempts, uint32_t rnd)
{
	int64_t d = p->min_backoff > 0 ? p->min_backoff : 1;
	int64_t max = p->max_backoff > d ? p->max_backoff : d;
	int64_t spread;

	for (unsigned i = 1; i < attempts && d < max; i++)
		d = d > max / 2 ? max : d * 2;
	if (d >= max) {
		/* at the cap: uniform in [0.75 max, max], never above it */
		spread = max / 4;
		d = max - spread + (int64_t)(rnd % (uint64_t)(spread + 1));
		return d < 1 ? 1 : d;
	}
	/* uniform in [0.75 d, 1.25 d], but not above the cap */
	spread = d / 2;
	d = d - d / 4 + (spread > 0 ? (int64_t)(rnd % (uint64_t)(spread + 1)) :
	    0);
	if (d > max)
		d = max;
	return d < 1 ? 1 : d;
}

bool
retry_expired(const struct retry_policy *p, int64_t arrival, int64_t now)
{
	return now - arrival >= p->lifetime;
}

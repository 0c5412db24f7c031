/*
 * meter.c - counting accepted mail for the bill (see meter.h): records
 * made on the loop thread, batched, written by one worker thread in one
 * store transaction per batch (group commit: while one batch is written
 * the next one fills), then the batch's messages go to the scheduler.
 * A failed batch is retried every second; its messages wait in the spool
 * (accepted, durable, not delivered) until it succeeds.
 *
 * Must never: run SQL on the loop thread while the server runs (only
 * before it starts and at shutdown); enqueue a billable message whose
 * count is not committed.
 */
#include "billing/meter.h"
#include "billing/billing.h"
#include "common/log.h"
#include "common/util.h"
#include "common/workq.h"
#include "conf/conf.h"
#include "mta/scheduler.h"
#include "queue/envelope.h"
#include "queue/spool.h"
#include "tenant/tenant.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#define METER_RETRY_SEC		1
/* A batch starts at least this long after the one before, so under load
 * the store commits (each an fsync of the WAL) at most 100 times a second
 * however many messages arrive, and a quiet server still counts a lone
 * message at once.  The price: a message may wait this long more before
 * its delivery is scheduled. */
#define METER_GAP_MSEC		10
#define METER_RECOVER_CHUNK	10000

/* Records waiting for the store, with what the scheduler needs. */
struct meter_queue {
	struct meter_rec	*recs;
	int64_t			*created;
	size_t			 n, cap;
};

struct meter_batch {
	struct meter		*m;
	struct meter_queue	 q;
	int			 rc;
	size_t			 added, late;
	int64_t			 cpu;		/* the worker's, usec */
	char			 err[256];
};

struct meter {
	bool			 on;
	struct scheduler	*sched;
	struct store		*st;		/* the worker's (one at a time) */
	struct workq		*wq;		/* one thread */
	struct event		*ev_retry;
	struct event		*ev_gap;	/* the next batch's start */
	int64_t			 started;	/* the last batch's, ms */
	struct meter_queue	 pending;
	struct meter_batch	*inflight;
	bool			 closing;
	bool			 named;		/* the worker's, by it */
	struct billing_day	 day;		/* cache */
	struct meter_stats	 stats;
};

static void meter_kick(struct meter *m);

/* CPU time of the calling thread (user + system), usec. */
static int64_t
thread_cpu_usec(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		return 0;
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A timer's callback gets (fd, events, arg): meter_kick itself, cast,
 * would take the fd for the meter. */
static void
meter_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	meter_kick(arg);
}

static void
meter_queue_add(struct meter_queue *q, const struct meter_rec *r,
    int64_t created)
{
	if (q->n == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 64;
		q->recs = xrealloc(q->recs, q->cap * sizeof(*q->recs));
		q->created = xrealloc(q->created, q->cap *
		    sizeof(*q->created));
	}
	q->recs[q->n] = *r;
	q->created[q->n++] = created;
}

static void
meter_queue_free(struct meter_queue *q)
{
	free(q->recs);
	free(q->created);
	memset(q, 0, sizeof(*q));
}

static bool
meter_is_gmail(const char *addr)
{
	const char *dom = tenant_addr_domain(addr);

	return dom != NULL && (ascii_strcasecmp(dom, "gmail.com") == 0 ||
	    ascii_strcasecmp(dom, "googlemail.com") == 0);
}

bool
meter_rec_make(const struct tenants *t, const struct envelope *e,
    struct billing_day *cache, struct meter_rec *r)
{
	const struct company *co;
	const struct tenant_user *tu;
	const char *dom;
	struct billing_day day;
	int64_t at;
	size_t i;

	/* a bounce ombud made itself */
	if (e->mail_from[0] == '\0' && strcmp(e->peer, "local") == 0)
		return false;
	if ((co = tenants_company(t, e->tenant)) == NULL ||
	    !route_is_platform(tenants_route(t, co, e->mail_from, &tu)))
		return false;
	at = billing_clock_fixed() ? billing_now() : e->created;
	if (cache != NULL && at >= cache->start && at < cache->end)
		day = *cache;
	else {
		billing_day_of(at, &day);
		if (cache != NULL)
			*cache = day;
	}
	memset(r, 0, sizeof(*r));
	if (!strlcpy_ok(r->qid, e->id, sizeof(r->qid)) ||
	    !strlcpy_ok(r->company, co->id, sizeof(r->company)))
		fatalx("meter: queue id or company id too long");
	r->day = day.day;
	if ((dom = tenant_addr_domain(e->mail_from)) != NULL) {
		for (i = 0; dom[i] != '\0' && i < sizeof(r->sender_domain) - 1;
		    i++)
			r->sender_domain[i] = (dom[i] >= 'A' && dom[i] <= 'Z') ?
			    (char)(dom[i] - 'A' + 'a') : dom[i];
		r->sender_domain[i] = '\0';
	}
	r->emails = (uint32_t)e->nrcpt;
	for (i = 0; i < e->nrcpt; i++)
		if (meter_is_gmail(e->rcpt[i].addr))
			r->gmail++;
	return true;
}

struct meter *
meter_new(struct event_base *base, const struct conf *c,
    struct scheduler *sched, char *err, size_t errlen)
{
	struct meter *m = xcalloc(1, sizeof(*m));

	m->on = c->metering;
	m->sched = sched;
	if (!m->on)
		return m;
	if ((m->st = store_open(c->store, NULL, err, errlen)) == NULL)
		goto fail;
	if (store_durable(m->st) != STORE_OK) {
		snprintf(err, errlen, "meter: %s", store_error(m->st));
		goto fail;
	}
	m->ev_retry = evtimer_new(base, meter_timer_cb, m);
	m->ev_gap = evtimer_new(base, meter_timer_cb, m);
	m->wq = workq_new(base, 1);
	return m;
fail:
	if (m->st != NULL)
		store_close(m->st);
	free(m);
	return NULL;
}

static void
meter_work(void *arg)
{
	struct meter_batch *b = arg;
	struct meter *m = b->m;
	int64_t t0 = thread_cpu_usec();

	if (!m->named) {	/* its own name in top -H and /proc (bench) */
		(void)pthread_setname_np(pthread_self(), "ombud-meter");
		m->named = true;
	}
	b->rc = store_meter_add(m->st, b->q.recs, b->q.n, &b->added,
	    &b->late);
	if (b->rc != STORE_OK)
		snprintf(b->err, sizeof(b->err), "%s", store_error(m->st));
	b->cpu = thread_cpu_usec() - t0;
}

static void
meter_log_batch(struct meter *m, size_t n, size_t added, size_t late)
{
	char a[32], d[32], l[32];

	m->stats.batches++;
	m->stats.counted += added;
	m->stats.late += late;
	m->stats.duplicates += n - added - late;
	if (late == 0)
		return;
	snprintf(a, sizeof(a), "%zu", added);
	snprintf(d, sizeof(d), "%zu", n - added - late);
	snprintf(l, sizeof(l), "%zu", late);
	log_event(LOG_LVL_WARN, "meter.late", "counted", a, "duplicates", d,
	    "closed_month", l, "reason", "usage of a month whose invoices "
	    "are closed is not added", NULL);
}

static void
meter_done(void *arg)
{
	struct meter_batch *b = arg;
	struct meter *m = b->m;
	struct timeval tv = { METER_RETRY_SEC, 0 };

	m->inflight = NULL;
	m->stats.cpu_usec += (uint64_t)b->cpu;
	if (b->rc != STORE_OK) {
		m->stats.failures++;
		log_event(LOG_LVL_WARN, "meter.failed", "messages", NULL,
		    "error", b->err, "retry", "1s", NULL);
		/* back in front of what came meanwhile, in order */
		for (size_t i = 0; i < m->pending.n; i++)
			meter_queue_add(&b->q, &m->pending.recs[i],
			    m->pending.created[i]);
		meter_queue_free(&m->pending);
		m->pending = b->q;
		free(b);
		if (!m->closing)
			evtimer_add(m->ev_retry, &tv);
		return;
	}
	meter_log_batch(m, b->q.n, b->added, b->late);
	for (size_t i = 0; i < b->q.n; i++)
		scheduler_enqueue(m->sched, b->q.recs[i].qid, b->q.created[i]);
	meter_queue_free(&b->q);
	free(b);
	meter_kick(m);
}

/* Start the next batch unless one is in flight or a retry waits. */
static void
meter_kick(struct meter *m)
{
	struct meter_batch *b;
	int64_t now, wait;

	if (m->closing || m->inflight != NULL || m->pending.n == 0 ||
	    evtimer_pending(m->ev_retry, NULL) ||
	    evtimer_pending(m->ev_gap, NULL))
		return;
	now = now_msec_mono();
	if ((wait = m->started + METER_GAP_MSEC - now) > 0) {
		struct timeval tv = { 0, (suseconds_t)wait * 1000 };

		evtimer_add(m->ev_gap, &tv);
		return;
	}
	m->started = now;
	b = xcalloc(1, sizeof(*b));
	b->m = m;
	b->q = m->pending;
	memset(&m->pending, 0, sizeof(m->pending));
	m->inflight = b;
	workq_push(m->wq, meter_work, meter_done, b);
}

void
meter_accept(struct meter *m, const struct tenants *t,
    const struct envelope *e)
{
	struct meter_rec r;

	if (!m->on || !meter_rec_make(t, e, &m->day, &r)) {
		scheduler_enqueue(m->sched, e->id, e->created);
		return;
	}
	meter_queue_add(&m->pending, &r, e->created);
	meter_kick(m);
}

/* Write q on this thread, in chunks; 0 or -1 (logged). */
static int
meter_write_now(struct meter *m, const struct meter_queue *q)
{
	size_t added, late, n;

	for (size_t i = 0; i < q->n; i += n) {
		n = q->n - i < METER_RECOVER_CHUNK ? q->n - i :
		    METER_RECOVER_CHUNK;
		if (store_meter_add(m->st, q->recs + i, n, &added, &late) !=
		    STORE_OK) {
			m->stats.failures++;
			log_event(LOG_LVL_WARN, "meter.failed", "error",
			    store_error(m->st), NULL);
			return -1;
		}
		meter_log_batch(m, n, added, late);
	}
	return 0;
}

struct meter_scan {
	struct meter		*m;
	const struct tenants	*t;
	struct meter_queue	 q;
};

static int
meter_recover_cb(void *arg, const struct envelope *e)
{
	struct meter_scan *sc = arg;
	struct meter_rec r;

	/* tried once: it went through meter_accept, counted then */
	if (e->attempts == 0 && meter_rec_make(sc->t, e, &sc->m->day, &r))
		meter_queue_add(&sc->q, &r, e->created);
	return 0;
}

int
meter_recover(struct meter *m, struct spool *sp, const struct tenants *t)
{
	struct meter_scan sc = { .m = m, .t = t };
	uint64_t before = m->stats.counted;
	char n[32], c[32];
	int rc = 0;

	if (!m->on)
		return 0;
	if (spool_foreach(sp, meter_recover_cb, &sc) != 0)
		log_warn("meter: reading the spool (some messages not seen)");
	if (sc.q.n > 0)
		rc = meter_write_now(m, &sc.q);
	snprintf(n, sizeof(n), "%zu", sc.q.n);
	snprintf(c, sizeof(c), "%llu", (unsigned long long)(m->stats.counted -
	    before));
	log_event(LOG_LVL_INFO, "meter.recovered", "untried", n, "counted", c,
	    NULL);
	meter_queue_free(&sc.q);
	return rc;
}

void
meter_free(struct meter *m)
{
	if (m == NULL)
		return;
	m->closing = true;
	if (m->wq != NULL)
		workq_free(m->wq);	/* the batch in flight completes */
	if (m->ev_retry != NULL)
		event_free(m->ev_retry);
	if (m->ev_gap != NULL)
		event_free(m->ev_gap);
	/* what is pending is written now; were it not, the restart's
	 * recovery would count it (those messages were never tried) */
	if (m->pending.n > 0)
		(void)meter_write_now(m, &m->pending);
	meter_queue_free(&m->pending);
	if (m->on) {
		char c[32], d[32], b[32], f[32], u[32];

		snprintf(c, sizeof(c), "%llu", (unsigned long long)
		    m->stats.counted);
		snprintf(d, sizeof(d), "%llu", (unsigned long long)
		    m->stats.duplicates);
		snprintf(b, sizeof(b), "%llu", (unsigned long long)
		    m->stats.batches);
		snprintf(f, sizeof(f), "%llu", (unsigned long long)
		    m->stats.failures);
		snprintf(u, sizeof(u), "%llu", (unsigned long long)
		    m->stats.cpu_usec);
		log_event(LOG_LVL_INFO, "meter.stopped", "counted", c,
		    "duplicates", d, "batches", b, "failures", f,
		    "worker_cpu_us", u, NULL);
	}
	if (m->st != NULL)
		store_close(m->st);
	free(m);
}

size_t
meter_backlog(const struct meter *m)
{
	if (m == NULL)
		return 0;
	return m->pending.n + (m->inflight != NULL ? m->inflight->q.n : 0);
}

void
meter_stats(const struct meter *m, struct meter_stats *out)
{
	*out = m->stats;
}

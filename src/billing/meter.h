/*
 * meter.h - usage metering in the server: every recipient accepted for
 * delivery on a platform route (platform-relay, platform-smarthost) is
 * counted as one email for its company, on the local day (and month) of
 * its acceptance in billing_timezone, once per message whatever happens
 * to it afterwards.
 *
 * The count is derived from the spool, which is the durable truth: a
 * message is counted after spool_submit made it durable (the 250 is not
 * delayed), on a worker thread that adds a whole batch of messages to the
 * store in one transaction keyed by queue id (idempotent), and the
 * message is handed to the scheduler only once its count is committed.
 * So a message is never delivered (and removed from the spool) before it
 * is counted; after a crash, every queued message never tried
 * (attempts == 0) is counted again at start, before delivery starts, and
 * the queue id key drops those counted already.  Neither lost nor
 * doubled.
 *
 * The route is decided at acceptance by the scheduler's own rule
 * (tenants_route); mail without a company (the configuration's
 * default_route), of a company on own-server or none, and the bounces
 * ombud makes itself (null sender, peer "local") are not counted.
 *
 * Must never: block the event loop on SQL; enqueue a billable message
 * before its count is committed; count a message twice.
 */
#ifndef OMBUD_METER_H
#define OMBUD_METER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct conf;
struct envelope;
struct event_base;
struct meter;
struct scheduler;
struct spool;
struct tenants;

/* Reads c's metering settings (a change needs a restart); opens its own
 * store handle when metering is on.  NULL with err on failure. */
struct meter *meter_new(struct event_base *base, const struct conf *c,
    struct scheduler *sched, char *err, size_t errlen);
/* Before scheduler_rebuild: count the queued messages never tried that
 * are not counted yet.  0, or -1 (logged; the server must not start
 * delivering uncounted mail). */
int meter_recover(struct meter *m, struct spool *sp,
    const struct tenants *t);
/* e was just made durable: count it if it is billable, then enqueue it
 * with the scheduler (at once if it is not billable). */
void meter_accept(struct meter *m, const struct tenants *t,
    const struct envelope *e);
/* Finish the batch in flight and write what is pending (on this thread;
 * at shutdown nothing is enqueued any more).  Before scheduler_free. */
void meter_free(struct meter *m);
/* Messages accepted whose count is not written yet (queued and in the
 * batch being written). */
size_t meter_backlog(const struct meter *m);

/*
 * The meter record of e under snapshot t, or false if e is not billable
 * (see above).  cache may be NULL; else it keeps the last local day seen
 * (most messages fall in the same day: no localtime call).
 */
struct billing_day;
bool meter_rec_make(const struct tenants *t, const struct envelope *e,
    struct billing_day *cache, struct meter_rec *r);

struct meter_stats {
	uint64_t	counted;	/* messages counted (new queue ids) */
	uint64_t	duplicates;	/* counted before: skipped */
	uint64_t	late;		/* of a closed month: skipped */
	uint64_t	batches;	/* transactions */
	uint64_t	failures;	/* failed ones (retried) */
	uint64_t	cpu_usec;	/* the worker thread's CPU time */
};
void meter_stats(const struct meter *m, struct meter_stats *out);

#endif

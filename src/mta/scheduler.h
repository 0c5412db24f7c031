/*
 * scheduler.h - the delivery engine: takes queued messages from the spool
 * and gets them to their destinations.
 *
 * Each queued message is a small entry (id, arrival, attempts, next
 * attempt) in a hash table and, unless held, in a timetable heap
 * (schedq): a tick only looks at the top of the heap, so a million
 * deferred messages cost nothing per tick.  A due message is loaded from
 * the spool, its undelivered recipients are grouped by destination (the
 * recipient domain's MX hosts, or a configured smart-host route) and
 * handed to that destination's queue as jobs.  A destination has its own
 * connections (limit, rate, reuse for several messages) made by
 * mta_client after DNS (MX, then addresses, falling through the MX list).
 * When every job of a message has a result, the message's new state goes
 * to the spool (a STATE record) or, when every recipient is final, the
 * message is removed; recipients that failed permanently (or outlived
 * queue_lifetime) get one RFC 3464 report, itself queued as a message
 * with the null sender.
 *
 * Must never: mark a recipient delivered before the remote 2xx after the
 * dot; bounce a message with the null sender; remove a message before
 * the bounce that replaces it is durable; block the loop.
 */
#ifndef OMBUD_SCHEDULER_H
#define OMBUD_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conf;
struct event_base;
struct spool;
struct scheduler;
struct tenants;

/* c must stay valid until scheduler_reconfigure or scheduler_free.
 * NULL with err filled on failure (DNS or TLS set-up). */
struct scheduler *scheduler_new(struct event_base *base, struct spool *sp,
    const struct conf *c, char *err, size_t errlen);
/* Cancels everything in flight (their recipients are tried again after a
 * restart: at-least-once), cancels pending spool callbacks.  Before
 * spool_close. */
void scheduler_free(struct scheduler *s);

/* A new configuration (after SIGHUP).  Jobs in flight keep going. */
int scheduler_reconfigure(struct scheduler *s, const struct conf *c,
    char *err, size_t errlen);

/* A new snapshot of the tenant database (how each company's mail
 * leaves); held platform-relay mail whose domain now passes SPF and DKIM
 * is released.  The scheduler takes a reference. */
void scheduler_set_tenants(struct scheduler *s, struct tenants *t);

/* Load every live message from the spool (at start). */
int scheduler_rebuild(struct scheduler *s);

/* A message that just became durable: deliver it now. */
void scheduler_enqueue(struct scheduler *s, const char *id, int64_t created);

/* Control: -1 with errno ENOENT when the id is not queued. */
int scheduler_flush(struct scheduler *s, const char *id); /* NULL: all */
int scheduler_hold(struct scheduler *s, const char *id, bool hold);
int scheduler_delete(struct scheduler *s, const char *id);

/* Stop starting deliveries (SIGTERM): attempts in flight finish (a
 * connection not yet up gives up at once, deferring), and idle_cb(arg)
 * runs when the last one ended.  What still runs at scheduler_free is
 * cut (tried again after a restart). */
void scheduler_stop(struct scheduler *s, void (*idle_cb)(void *),
    void *arg);
size_t scheduler_inflight(const struct scheduler *s);
/* The scheduler's resolver (shared by the domain checks). */
struct dns *scheduler_dns(struct scheduler *s);

struct scheduler_stats {
	size_t		queued;		/* messages known */
	size_t		inflight;	/* messages being delivered */
	size_t		connections;	/* outbound, all states */
	size_t		destinations;
	uint64_t	delivered;	/* recipients */
	uint64_t	deferred;
	uint64_t	bounced;
	uint64_t	dsns;		/* reports queued */
};
void scheduler_stats(const struct scheduler *s, struct scheduler_stats *out);

#endif

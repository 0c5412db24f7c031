/*
 * domain_watch.c - domain checks written to the store, and the server's
 * periodic re-check of every domain (see domain_watch.h).
 *
 * The server walks the domains one after another (a check is a handful
 * of DNS lookups; one at a time keeps the DNS load of thousands of
 * domains flat), then waits the interval.  The writes are a few small
 * rows per domain per interval on the loop thread's store handle: the tenant
 * snapshot reload then carries the new state to sessions and delivery.
 *
 * Must never: write a verdict from a check that hit a DNS failure, or
 * keep a key active that the rotation retired.
 */
#include "tenant/domain_watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/util.h"

struct dw_keys {
	struct dkim_keyrec	*keys;
	size_t			 max, n;
};

static int
dw_key_cb(void *arg, const struct dkim_keyrec *k)
{
	struct dw_keys *c = arg;

	if (c->n >= c->max)
		return 1;
	c->keys[c->n] = *k;
	c->keys[c->n++].private_pem = NULL;
	return 0;
}

int
domain_watch_keys(struct store *st, const char *domain,
    struct dkim_keyrec *keys, size_t max, size_t *n)
{
	struct dw_keys c = { .keys = keys, .max = max };
	int rc = store_dkim_list(st, domain, false, dw_key_cb, &c);

	*n = c.n;
	return rc;
}

int
domain_watch_apply(struct store *st, const struct domain_check_result *r,
    struct dkim_keyrec *keys, size_t n, int64_t now, int64_t grace,
    bool *dkim_ok)
{
	struct dkim_keyrec before[DKIMKEYS_MAX_PER_DOMAIN];
	char *detail = NULL;
	int rc = STORE_OK;

	if (n > DKIMKEYS_MAX_PER_DOMAIN || n != r->nkeys)
		fatalx("domain watch: %zu keys, the check had %zu", n,
		    r->nkeys);
	memcpy(before, keys, n * sizeof(*keys));
	dkimkey_rotate(keys, n, r->published, now, grace);
	*dkim_ok = domain_check_dkim_ok(keys, n, r->published);
	for (size_t i = 0; i < n; i++) {
		if (keys[i].state == before[i].state &&
		    keys[i].published_at == before[i].published_at)
			continue;
		if ((rc = store_dkim_update(st, &keys[i], "ombud")) !=
		    STORE_OK)
			goto fail;
		if (keys[i].state != before[i].state)
			log_event(LOG_LVL_INFO, "dkim.key_state", "domain",
			    r->domain, "selector", keys[i].selector, "from",
			    dkim_key_state_name(before[i].state), "to",
			    dkim_key_state_name(keys[i].state), NULL);
	}
	if (r->temperror)
		goto fail;		/* the verdicts stay as they were */
	json_object_set_new(r->report, "dkim_ok", json_boolean(*dkim_ok));
	json_object_set_new(r->report, "ok", json_boolean(r->spf_ok &&
	    *dkim_ok && r->dmarc_ok));
	if ((detail = json_dumps(r->report, JSON_COMPACT)) == NULL)
		fatalx("domain watch: json_dumps");
	rc = store_domain_set_check(st, r->domain, r->spf_ok, *dkim_ok,
	    r->dmarc_ok, now, detail);
fail:
	free(detail);
	return rc;
}

/* ---- the server's periodic checks -------------------------------------- */

struct domain_watch {
	struct event_base	*base;
	struct dns		*dns;
	struct store		*st;
	const struct conf	*conf;
	struct event		*ev;
	char			(*names)[STORE_HOST_MAX + 1];	/* this round */
	size_t			 nnames, cnames, next;
	struct domain_check	*dc;
	struct dkim_keyrec	 keys[DKIMKEYS_MAX_PER_DOMAIN];
	size_t			 nkeys;
};

static void dw_next(struct domain_watch *w);

static void
dw_arm(struct domain_watch *w, uint64_t secs)
{
	struct timeval tv = { (time_t)secs, 0 };

	evtimer_add(w->ev, &tv);
}

static int
dw_name_cb(void *arg, const struct domain *d)
{
	struct domain_watch *w = arg;

	if (w->nnames == w->cnames) {
		w->cnames = w->cnames ? w->cnames * 2 : 64;
		if (w->cnames > SIZE_MAX / sizeof(*w->names))
			fatalx("domain watch: too many domains");
		w->names = xrealloc(w->names, w->cnames * sizeof(*w->names));
	}
	strlcpy_ok(w->names[w->nnames++], d->name, sizeof(w->names[0]));
	return 0;
}

static void
dw_checked(void *arg, const struct domain_check_result *r)
{
	struct domain_watch *w = arg;
	bool dkim_ok = false;

	w->dc = NULL;
	if (domain_watch_apply(w->st, r, w->keys, w->nkeys, (int64_t)time(NULL),
	    (int64_t)w->conf->dkim_rotation_grace, &dkim_ok) != STORE_OK)
		log_event(LOG_LVL_WARN, "domain.check_failed", "domain",
		    r->domain, "error", store_error(w->st), NULL);
	else
		log_event(r->spf_ok && dkim_ok && r->dmarc_ok ?
		    LOG_LVL_INFO : LOG_LVL_WARN, "domain.checked", "domain",
		    r->domain, "spf", r->spf_ok ? "pass" : "fail", "dkim",
		    dkim_ok ? "pass" : "fail", "dmarc", r->dmarc_ok ? "pass" :
		    "fail", "temperror", r->temperror ? "yes" : "no", NULL);
	dw_next(w);
}

/* Check the next domain of the round, or start the next round. */
static void
dw_next(struct domain_watch *w)
{
	uint64_t interval = w->conf->domain_check_interval;

	while (w->next < w->nnames) {
		const char *name = w->names[w->next++];

		if (domain_watch_keys(w->st, name, w->keys, nitems(w->keys),
		    &w->nkeys) != STORE_OK)
			continue;	/* removed since the round began */
		w->dc = domain_check_start(w->dns, w->conf, name, w->keys,
		    w->nkeys, dw_checked, w);
		return;
	}
	if (interval > 0)
		dw_arm(w, interval);
}

static void
dw_round(evutil_socket_t fd, short what, void *arg)
{
	struct domain_watch *w = arg;

	free(w->names);
	w->names = NULL;
	w->nnames = w->cnames = w->next = 0;
	if (store_domain_list(w->st, NULL, dw_name_cb, w) != STORE_OK) {
		log_event(LOG_LVL_WARN, "domain.check_failed", "error",
		    store_error(w->st), NULL);
		w->nnames = 0;
	}
	dw_next(w);
}

struct domain_watch *
domain_watch_new(struct event_base *base, struct dns *d, struct store *st,
    const struct conf *c)
{
	struct domain_watch *w = xcalloc(1, sizeof(*w));

	w->base = base;
	w->dns = d;
	w->st = st;
	w->conf = c;
	if ((w->ev = evtimer_new(base, dw_round, w)) == NULL)
		fatalx("domain watch: evtimer_new");
	if (c->domain_check_interval > 0)
		dw_arm(w, 1);		/* a first round soon after start */
	return w;
}

void
domain_watch_set_conf(struct domain_watch *w, const struct conf *c)
{
	w->conf = c;
	if (c->domain_check_interval > 0 && w->dc == NULL &&
	    !evtimer_pending(w->ev, NULL))
		dw_arm(w, c->domain_check_interval);
}

void
domain_watch_free(struct domain_watch *w)
{
	if (w == NULL)
		return;
	if (w->dc != NULL)
		domain_check_cancel(w->dc);
	event_free(w->ev);
	free(w->names);
	free(w);
}

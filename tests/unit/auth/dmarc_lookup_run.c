/*
 * dmarc_lookup_run.c - runs dmarc_lookup() for test_dmarc_lookup.py.
 *
 * What it does: argv[1] is the DNS server ("127.0.0.1:port"), every
 * further argument a From domain, looked up with a fresh resolver each
 * and answered with one line
 * "domain<TAB>status<TAB>where<TAB>at_org<TAB>p<TAB>sp<TAB>pct<TAB>
 * fallback<TAB>reason".  "cancel:<domain>" starts a lookup, cancels it at
 * once and prints "domain<TAB>cancelled" when no callback follows within
 * half a second.  A callback from inside dmarc_lookup() or after
 * dmarc_cancel() makes it exit 3.
 *
 * Must never: talk to a DNS server other than the one it is given.
 */
#include "auth/dmarc.h"
#include "dns/dns.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

struct run {
	const char		*domain;
	bool			 inside;	/* within dmarc_lookup() */
	bool			 cancelled;
	int			 calls;
	struct event_base	*base;
};

static void
run_cb(void *arg, const struct dmarc_lookup_result *r)
{
	struct run *o = arg;
	static const char *const st[] = { "found", "none", "temperror" };

	if (o->inside || o->cancelled) {
		fprintf(stderr, "%s: callback %s\n", o->domain,
		    o->inside ? "inside dmarc_lookup()" : "after cancel");
		exit(3);
	}
	o->calls++;
	printf("%s\t%s\t%s\t%d\t%s\t%s\t%u\t%d\t%s\n", o->domain,
	    st[r->status], r->domain, r->at_org,
	    r->status == DMARC_LOOKUP_FOUND ? dmarc_policy_str(r->rec.p) : "-",
	    r->status == DMARC_LOOKUP_FOUND ? dmarc_policy_str(r->rec.sp) :
	    "-", r->status == DMARC_LOOKUP_FOUND ? r->rec.pct : 0,
	    r->rec.p_fallback, r->reason);
	fflush(stdout);
	event_base_loopbreak(o->base);
}

static void
run_timeout(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

/* Runs the loop until a callback breaks it or ms have passed. */
static void
run_loop(struct event_base *base, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	struct event *t = evtimer_new(base, run_timeout, base);

	if (t == NULL || evtimer_add(t, &tv) != 0)
		exit(1);
	event_base_dispatch(base);
	event_free(t);
}

int
main(int argc, char **argv)
{
	struct dns_opts opts = { .timeout_ms = 500, .tries = 1 };
	struct event_base *base;
	struct dmarc_req *req;
	struct dns *d;
	struct run o;
	char err[256];
	int i;

	if (argc < 2)
		return 2;
	opts.servers = argv[1];
	if ((base = event_base_new()) == NULL)
		return 1;
	for (i = 2; i < argc; i++) {
		bool cancel = strncmp(argv[i], "cancel:", 7) == 0;

		if ((d = dns_new(base, &opts, err, sizeof(err))) == NULL) {
			fprintf(stderr, "dns_new: %s\n", err);
			return 1;
		}
		memset(&o, 0, sizeof(o));
		o.base = base;
		o.domain = cancel ? argv[i] + 7 : argv[i];
		o.inside = true;
		req = dmarc_lookup(d, o.domain, run_cb, &o);
		o.inside = false;
		if (cancel) {
			dmarc_cancel(req);
			o.cancelled = true;
			run_loop(base, 500);
			printf("%s\tcancelled\n", o.domain);
		} else {
			/* Two queries of 500 ms at the most. */
			run_loop(base, 5000);
			if (o.calls != 1) {
				fprintf(stderr, "%s: %d callbacks\n",
				    o.domain, o.calls);
				return 3;
			}
		}
		dns_free(d);
	}
	event_base_free(base);
	return 0;
}

/*
 * domain_watch.h - keeping the domains' authentication state true: the
 * outcome of a domain check written to the store (DKIM keys rotated,
 * spf_ok/dkim_ok/dmarc_ok and the report), for `ombud domain check` and
 * for the server, which re-checks every domain every
 * domain_check_interval so that a domain whose records break is marked
 * (and its platform-relay mail held from authentication_required_from
 * on) and a newly published DKIM key starts signing.
 *
 * What it must never do: turn a DNS failure into a verdict (a temperror
 * leaves the domain's state as it was), or check one domain twice at
 * once.
 */
#ifndef OMBUD_DOMAIN_WATCH_H
#define OMBUD_DOMAIN_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/domain_check.h"
#include "store/store.h"

struct event_base;
struct dns;
struct domain_watch;

/* The keys of domain (no private keys), at most max.  A store rc. */
int domain_watch_keys(struct store *st, const char *domain,
    struct dkim_keyrec *keys, size_t max, size_t *n);

/*
 * Write r (for keys[0..n-1], as read by domain_watch_keys) to the store:
 * rotate the keys by what is published (grace: dkim_rotation_grace),
 * write the changed keys, and, unless r->temperror, the verdicts and the
 * report.  *dkim_ok gets the DKIM verdict after the rotation.  A store
 * rc.
 */
int domain_watch_apply(struct store *st, const struct domain_check_result *r,
    struct dkim_keyrec *keys, size_t n, int64_t now, int64_t grace,
    bool *dkim_ok);

/* The server's periodic checks (nothing when the interval is 0). */
struct domain_watch *domain_watch_new(struct event_base *base,
    struct dns *d, struct store *st, const struct conf *c);
void domain_watch_set_conf(struct domain_watch *w, const struct conf *c);
void domain_watch_free(struct domain_watch *w);

#endif

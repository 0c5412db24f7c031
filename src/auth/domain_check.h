/*
 * domain_check.h - domain onboarding: which DNS records a customer must
 * publish for the platform to send as its domain, what is published now,
 * and pass or fail per record with the reason.
 *
 * What it does: for one domain, at once and asynchronously on the DNS
 * layer: the SPF audit (spf_audit: one record, the platform's include
 * reached, check_host() passing for every egress address, at most ten
 * lookups, no +all), the TXT record of each DKIM key that is not retired
 * (compared with the key), and the DMARC policy (dmarc_lookup: a valid
 * record with p=none or stronger).  The result is a report (JSON, the
 * same data the HTTP API will serve) and the three verdicts; which DKIM
 * records are published feeds the key rotation (dkimkey_rotate).
 *
 * What it must never do: pass a record it did not see, treat a DNS
 * failure as a verdict (temperror keeps the previous state), or write
 * anything itself: the caller stores the outcome.
 */
#ifndef OMBUD_DOMAIN_CHECK_H
#define OMBUD_DOMAIN_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <jansson.h>

#include "auth/dkim_keys.h"
#include "conf/conf.h"
#include "dns/dns.h"

struct domain_check_result {
	const char		*domain;
	bool			 spf_ok, dkim_ok, dmarc_ok;
	bool			 temperror;	/* some DNS lookup failed:
						   verdicts unreliable */
	/* per key given: its record seen in DNS and matching */
	const bool		*published;
	size_t			 nkeys;
	json_t			*report;	/* borrowed: the records, what
						   is published, status and
						   reasons */
};

typedef void (*domain_check_cb)(void *arg,
    const struct domain_check_result *r);

struct domain_check;

/*
 * Check domain with the platform settings of c (spf_domain, egress
 * addresses) and keys (n, not retired ones are looked up; the array is
 * read during this call only).  cb runs once, never from inside this
 * call.  dkim_ok is judged on the keys' states as given: the caller
 * rotates with `published` and judges again (domain_check_dkim_ok).
 */
struct domain_check *domain_check_start(struct dns *d, const struct conf *c,
    const char *domain, const struct dkim_keyrec *keys, size_t n,
    domain_check_cb cb, void *arg);
void domain_check_cancel(struct domain_check *dc);

/* DKIM passes: at least one active key, and every active key's record
 * is published (published[i] for keys[i]). */
bool domain_check_dkim_ok(const struct dkim_keyrec *keys, size_t n,
    const bool *published);

#endif

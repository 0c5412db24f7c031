/*
 * dkim_dns.h - DKIM verification of a whole message with its keys fetched
 * from DNS (RFC 6376 3.6.2: the TXT record of s._domainkey.d).
 *
 * What it does: finds the message's DKIM-Signature fields (at most
 * DKIM_MAX_SIGS, top first, the same ones dkim_verify examines), takes
 * their s= and d= with a tolerant tag scan, asks the dns layer for every
 * distinct key record at once, then runs dkim_verify against a table of
 * the answers and hands the results to the caller.  No record is "no key
 * record" (permerror), DNS trouble is a temperror.
 *
 * Must never: call the callback synchronously from dkim_dns_verify() or
 * after dkim_dns_cancel(); decide a signature's validity itself (that is
 * dkim_verify's job: the scan here only chooses what to look up); look
 * up more than DKIM_MAX_SIGS names for one message.
 */
#ifndef OMBUD_DKIM_DNS_H
#define OMBUD_DKIM_DNS_H

#include <stddef.h>
#include <time.h>

#include "auth/dkim.h"

struct dns;
struct dkim_dns_req;

#define DKIM_ALG_MAX	32

/* What the tag scan saw in one DKIM-Signature field.  Any tag may be
 * empty when absent or unreadable. */
struct dkim_sigref {
	char	domain[DKIM_DOMAIN_MAX + 1];	/* d=, lower case */
	char	selector[DKIM_SELECTOR_MAX + 1];	/* s=, lower case */
	char	alg[DKIM_ALG_MAX + 1];		/* a= */
};

/*
 * The DKIM-Signature fields of msg's header section (top first, at most
 * max): how many, or -1 when the header section cannot be split into
 * fields.  Pure; bounded by len, DKIM_MAX_HEADERS and DKIM_MAX_FIELD.
 */
int dkim_dns_sigs(const char *msg, size_t len, struct dkim_sigref *out,
    size_t max);

/*
 * nres: what dkim_verify returned (0: unsigned, -1: the header could not
 * be parsed); res[i] belongs to sigs[i].  Valid during the callback.
 */
typedef void (*dkim_dns_cb)(void *arg, int nres,
    const struct dkim_result *res, const struct dkim_sigref *sigs);

/*
 * Start verifying msg[0..len) (CRLF line ends).  msg must stay valid
 * until the callback has run or the request was cancelled.  now is the
 * time signatures' x= is compared with.  Never NULL.
 */
struct dkim_dns_req *dkim_dns_verify(struct dns *d, const char *msg,
    size_t len, time_t now, dkim_dns_cb cb, void *arg);
void dkim_dns_cancel(struct dkim_dns_req *r);

#endif

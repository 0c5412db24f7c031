/*
 * dkim_dns.c - DKIM verification with keys from DNS (see dkim_dns.h).
 *
 * The header section is split into fields with the same rules as
 * dkim_verify's (a continuation line starts with a blank, a field is a
 * name, optional blanks and ':'), so that the n-th DKIM-Signature seen
 * here is the n-th one dkim_verify reports.  From each, d=, s= and a= are
 * picked out of the tag-list (blanks and folds dropped, lower-cased for
 * d= and s=); the distinct (s, d) pairs are looked up concurrently.  When
 * the last answer is in, dkim_verify runs with a lookup function that
 * reads the table of answers.
 *
 * Must never: call the callback from inside dkim_dns_verify() (an
 * unsigned message is answered from a zero timer on the dns loop), or
 * touch a request after its callback or dkim_dns_cancel().
 */
#include "auth/dkim_dns.h"
#include "dns/dns.h"
#include "common/log.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

struct dkim_dns_key {
	struct dkim_dns_req	*r;
	char			 selector[DKIM_SELECTOR_MAX + 1];
	char			 domain[DKIM_DOMAIN_MAX + 1];
	struct dns_req		*q;		/* NULL once answered */
	int			 rc;		/* DKIM_LOOKUP_* */
	struct buf		 txt;
};

struct dkim_dns_req {
	struct dns		*d;
	const char		*msg;
	size_t			 len;
	time_t			 now;
	dkim_dns_cb		 cb;
	void			*arg;
	int			 nsigs;		/* -1: unparsable header */
	struct dkim_sigref	 sigs[DKIM_MAX_SIGS];
	size_t			 nkeys;
	struct dkim_dns_key	 keys[DKIM_MAX_SIGS];
	size_t			 pending;
	struct event		*ev;		/* the zero timer */
};

static bool
dkim_dns_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool
dkim_dns_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char
dkim_dns_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/*
 * Copy the value v[0..n) without its blanks and folds into out (cap
 * bytes with the NUL), lower-cased if asked.  An over-long value leaves
 * out empty.
 */
static void
dkim_dns_tagval(const char *v, size_t n, char *out, size_t cap, bool lower)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (dkim_dns_fws(v[i]))
			continue;
		if (o + 1 >= cap) {
			out[0] = '\0';
			return;
		}
		out[o++] = lower ? dkim_dns_lower(v[i]) : v[i];
	}
	out[o] = '\0';
}

/* The tags of one field's value v[0..n) that the lookups need. */
static void
dkim_dns_scan_tags(const char *v, size_t n, struct dkim_sigref *sr)
{
	size_t i = 0;

	while (i < n) {
		size_t ts = i, te, vs, ve;

		while (i < n && v[i] != ';')
			i++;
		ve = i;
		if (i < n)
			i++;		/* the ';' */
		while (ts < ve && dkim_dns_fws(v[ts]))
			ts++;
		for (te = ts; te < ve && v[te] != '=' && !dkim_dns_fws(v[te]);
		    te++)
			;
		vs = te;
		while (vs < ve && dkim_dns_fws(v[vs]))
			vs++;
		if (vs >= ve || v[vs] != '=')
			continue;	/* not a tag=value: dkim_verify judges */
		vs++;
		if (te - ts != 1)
			continue;
		switch (v[ts]) {
		case 'd':
			dkim_dns_tagval(v + vs, ve - vs, sr->domain,
			    sizeof(sr->domain), true);
			break;
		case 's':
			dkim_dns_tagval(v + vs, ve - vs, sr->selector,
			    sizeof(sr->selector), true);
			break;
		case 'a':
			dkim_dns_tagval(v + vs, ve - vs, sr->alg,
			    sizeof(sr->alg), false);
			break;
		default:
			break;
		}
	}
}

int
dkim_dns_sigs(const char *msg, size_t len, struct dkim_sigref *out,
    size_t max)
{
	size_t i = 0, nfields = 0, nsigs = 0;

	while (i < len) {
		size_t start = i, end, nl;

		if (msg[i] == '\n' || (msg[i] == '\r' && i + 1 < len &&
		    msg[i + 1] == '\n'))
			break;		/* the empty line */
		if (dkim_dns_wsp(msg[i]))
			goto fail;	/* a continuation without a field */
		for (;;) {
			const char *p = memchr(msg + i, '\n', len - i);

			if (p == NULL) {
				end = i = len;
				break;
			}
			end = (size_t)(p - msg);
			i = end + 1;
			if (i >= len || !dkim_dns_wsp(msg[i]))
				break;
		}
		if (end > start && msg[end - 1] == '\r' && end < len)
			end--;
		if (end - start > DKIM_MAX_FIELD ||
		    ++nfields > DKIM_MAX_HEADERS)
			goto fail;
		for (nl = 0; start + nl < end && msg[start + nl] > 0x20 &&
		    msg[start + nl] < 0x7f && msg[start + nl] != ':'; nl++)
			;
		{
			size_t k = nl;

			if (nl == 0)
				goto fail;
			while (start + k < end && dkim_dns_wsp(msg[start + k]))
				k++;
			if (start + k >= end || msg[start + k] != ':')
				goto fail;
			if (nl != 14 || ascii_strncasecmp(msg + start,
			    "DKIM-Signature", 14) != 0 || nsigs >= max ||
			    nsigs >= DKIM_MAX_SIGS)
				continue;
			memset(&out[nsigs], 0, sizeof(out[nsigs]));
			dkim_dns_scan_tags(msg + start + k + 1,
			    end - (start + k + 1), &out[nsigs]);
			nsigs++;
		}
	}
	return (int)nsigs;
fail:
	return -1;
}

/* dkim_verify's lookup: the answers gathered before it ran. */
static int
dkim_dns_table(void *arg, const char *selector, const char *domain,
    struct buf *txt)
{
	struct dkim_dns_req *r = arg;

	for (size_t i = 0; i < r->nkeys; i++) {
		struct dkim_dns_key *k = &r->keys[i];

		if (ascii_strcasecmp(k->selector, selector) != 0 ||
		    ascii_strcasecmp(k->domain, domain) != 0)
			continue;
		if (k->rc == DKIM_LOOKUP_FOUND)
			buf_add(txt, k->txt.data, k->txt.len);
		return k->rc;
	}
	/* the scan read the tags differently: never a permanent verdict */
	log_warnx("dkim: no lookup was made for %s._domainkey.%s", selector,
	    domain);
	return DKIM_LOOKUP_TEMPFAIL;
}

static void
dkim_dns_free(struct dkim_dns_req *r)
{
	for (size_t i = 0; i < r->nkeys; i++) {
		if (r->keys[i].q != NULL)
			dns_cancel(r->keys[i].q);
		buf_free(&r->keys[i].txt);
	}
	if (r->ev != NULL)
		event_free(r->ev);
	free(r);
}

static void
dkim_dns_finish(struct dkim_dns_req *r)
{
	struct dkim_result res[DKIM_MAX_SIGS];
	int n = -1;

	memset(res, 0, sizeof(res));
	if (r->nsigs >= 0)
		n = dkim_verify(r->msg, r->len, dkim_dns_table, r, r->now, res,
		    nitems(res));
	r->cb(r->arg, n, res, r->sigs);
	dkim_dns_free(r);
}

static void
dkim_dns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	dkim_dns_finish(arg);
}

/*
 * One key record: the first TXT record that starts as a DKIM key record
 * does (v=DKIM1), else the first one (RFC 6376 3.6.2.2 lets a verifier
 * choose; v= is optional in a key record).
 */
static void
dkim_dns_txt_cb(void *arg, const struct dns_txt_result *res)
{
	struct dkim_dns_key *k = arg;
	struct dkim_dns_req *r = k->r;
	size_t pick = 0;

	k->q = NULL;
	switch (res->status) {
	case DNS_OK:
		if (res->ntxt == 0) {
			k->rc = DKIM_LOOKUP_NOTFOUND;
			break;
		}
		for (size_t i = 0; i < res->ntxt; i++) {
			const char *t = res->txt[i];
			size_t o = 0;

			while (o < res->len[i] && dkim_dns_fws(t[o]))
				o++;
			if (res->len[i] - o >= 7 &&
			    strncmp(t + o, "v=DKIM1", 7) == 0) {
				pick = i;
				break;
			}
		}
		buf_add(&k->txt, res->txt[pick], res->len[pick]);
		k->rc = DKIM_LOOKUP_FOUND;
		break;
	case DNS_TEMPFAIL:
		k->rc = DKIM_LOOKUP_TEMPFAIL;
		break;
	default:	/* NXDOMAIN, NODATA, BADNAME */
		k->rc = DKIM_LOOKUP_NOTFOUND;
		break;
	}
	if (--r->pending == 0)
		dkim_dns_finish(r);
}

/* Queue the lookup of s._domainkey.d unless it is already queued. */
static void
dkim_dns_want(struct dkim_dns_req *r, const struct dkim_sigref *sr)
{
	char name[DNS_NAME_MAX + 1];
	struct dkim_dns_key *k;
	int n;

	if (sr->selector[0] == '\0' || sr->domain[0] == '\0')
		return;		/* dkim_verify reports the missing tag */
	for (size_t i = 0; i < r->nkeys; i++)
		if (strcmp(r->keys[i].selector, sr->selector) == 0 &&
		    strcmp(r->keys[i].domain, sr->domain) == 0)
			return;
	if (r->nkeys >= nitems(r->keys))
		fatalx("dkim_dns: more keys than signatures");
	k = &r->keys[r->nkeys++];
	k->r = r;
	buf_init(&k->txt);
	memcpy(k->selector, sr->selector, sizeof(k->selector));
	memcpy(k->domain, sr->domain, sizeof(k->domain));
	n = snprintf(name, sizeof(name), "%s._domainkey.%s", k->selector,
	    k->domain);
	if (n < 0 || (size_t)n >= sizeof(name)) {
		/* too long for a DNS name: there is no such record */
		k->rc = DKIM_LOOKUP_NOTFOUND;
		return;
	}
	r->pending++;
	k->q = dns_lookup_txt(r->d, name, dkim_dns_txt_cb, k);
}

struct dkim_dns_req *
dkim_dns_verify(struct dns *d, const char *msg, size_t len, time_t now,
    dkim_dns_cb cb, void *arg)
{
	struct dkim_dns_req *r;

	if (cb == NULL)
		fatalx("dkim_dns_verify: no callback");
	r = xcalloc(1, sizeof(*r));
	r->d = d;
	r->msg = msg;
	r->len = len;
	r->now = now;
	r->cb = cb;
	r->arg = arg;
	r->nsigs = dkim_dns_sigs(msg, len, r->sigs, nitems(r->sigs));
	for (int i = 0; i < r->nsigs; i++)
		dkim_dns_want(r, &r->sigs[i]);
	if (r->pending == 0) {
		struct timeval now0 = { 0, 0 };

		/* nothing to wait for: answer from the loop, not from here */
		r->ev = evtimer_new(dns_base(d), dkim_dns_timer_cb, r);
		if (r->ev == NULL)
			fatalx("dkim_dns_verify: evtimer_new");
		if (evtimer_add(r->ev, &now0) != 0)
			fatalx("dkim_dns_verify: evtimer_add");
	}
	return r;
}

void
dkim_dns_cancel(struct dkim_dns_req *r)
{
	if (r != NULL)
		dkim_dns_free(r);
}

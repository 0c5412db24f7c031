/*
 * domain_check.c - one domain's SPF, DKIM and DMARC records against what
 * the platform needs (see domain_check.h).
 *
 * The three parts run at once; a counter of pending lookups (held at one
 * while they are started, so that answers from the DNS cache cannot end
 * the check early) ends it, and the caller's callback is fired from the
 * event loop, never from inside domain_check_start.
 *
 * Must never: report pass for a record it has not seen, or report a DNS
 * failure as the customer's mistake (it is a temperror).
 */
#include "auth/domain_check.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "auth/dmarc.h"
#include "auth/spf.h"
#include "common/log.h"
#include "common/util.h"

#define DC_SPF_LOOKUP_MAX	10	/* RFC 7208 4.6.4 */

struct dc_key {
	struct domain_check	*dc;
	size_t			 i;
	struct dns_req		*req;
	json_t			*entry;
};

struct domain_check {
	struct dns		*d;
	struct event_base	*base;
	char			 domain[DNS_NAME_MAX + 1];
	struct spf_audit_req	*spf;
	struct dmarc_req	*dmarc;
	struct dkim_keyrec	*keys;		/* copies, no private keys */
	struct dc_key		*kq;
	bool			*published;
	size_t			 n;
	int			 pending;
	bool			 spf_ok, dmarc_ok, temperror, fired;
	json_t			*report;
	json_t			*records;	/* report.records */
	json_t			*spf_entry, *dmarc_entry;
	struct event		*done_ev;
	domain_check_cb		 cb;
	void			*arg;
};

bool
domain_check_dkim_ok(const struct dkim_keyrec *keys, size_t n,
    const bool *published)
{
	size_t active = 0;

	for (size_t i = 0; i < n; i++)
		if (keys[i].state == DKIMKEY_ACTIVE) {
			if (!published[i])
				return false;
			active++;
		}
	return active > 0;
}

static void
dc_free(struct domain_check *dc)
{
	if (dc->spf != NULL)
		spf_audit_cancel(dc->spf);
	if (dc->dmarc != NULL)
		dmarc_cancel(dc->dmarc);
	for (size_t i = 0; i < dc->n; i++)
		if (dc->kq[i].req != NULL)
			dns_cancel(dc->kq[i].req);
	if (dc->done_ev != NULL)
		event_free(dc->done_ev);
	json_decref(dc->report);
	free(dc->keys);
	free(dc->kq);
	free(dc->published);
	free(dc);
}

void
domain_check_cancel(struct domain_check *dc)
{
	if (dc != NULL)
		dc_free(dc);
}

/* The loop fires the end: the verdicts, then the caller. */
static void
dc_fire(evutil_socket_t fd, short what, void *arg)
{
	struct domain_check *dc = arg;
	struct domain_check_result r;
	bool dkim_ok = domain_check_dkim_ok(dc->keys, dc->n, dc->published);

	memset(&r, 0, sizeof(r));
	r.domain = dc->domain;
	r.spf_ok = dc->spf_ok;
	r.dkim_ok = dkim_ok;
	r.dmarc_ok = dc->dmarc_ok;
	r.temperror = dc->temperror;
	r.published = dc->published;
	r.nkeys = dc->n;
	json_object_set_new(dc->report, "spf_ok", json_boolean(dc->spf_ok));
	json_object_set_new(dc->report, "dkim_ok", json_boolean(dkim_ok));
	json_object_set_new(dc->report, "dmarc_ok", json_boolean(dc->dmarc_ok));
	json_object_set_new(dc->report, "temperror",
	    json_boolean(dc->temperror));
	json_object_set_new(dc->report, "ok", json_boolean(dc->spf_ok &&
	    dkim_ok && dc->dmarc_ok));
	r.report = dc->report;
	dc->cb(dc->arg, &r);
	dc_free(dc);
}

static void
dc_done_one(struct domain_check *dc)
{
	struct timeval tv = { 0, 0 };

	if (--dc->pending > 0 || dc->fired)
		return;
	dc->fired = true;
	if ((dc->done_ev = evtimer_new(dc->base, dc_fire, dc)) == NULL)
		fatalx("domain check: evtimer_new");
	evtimer_add(dc->done_ev, &tv);
}

/* A record entry of the report. */
static json_t *
dc_entry(struct domain_check *dc, const char *type, const char *name)
{
	json_t *e = json_pack("{s:s, s:s, s:s, s:[]}", "type", type, "name",
	    name, "status", "fail", "reasons");

	if (e == NULL)
		fatalx("domain check: json");
	json_array_append_new(dc->records, e);
	return e;
}

static void
dc_reason(json_t *e, const char *fmt, ...) __attribute__((format(printf, 2,
    3)));

static void
dc_reason(json_t *e, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	json_array_append_new(json_object_get(e, "reasons"),
	    json_string(line));
}

static void
dc_status(json_t *e, const char *status)
{
	json_object_set_new(e, "status", json_string(status));
}

/* ---- SPF ---------------------------------------------------------------- */

/* What the customer's record should be: theirs with the include added
 * after "v=spf1", or a new one. */
static void
dc_spf_expected(const char *have, const char *incl, char *out, size_t len)
{
	if (have == NULL)
		snprintf(out, len, "v=spf1 include:%s ~all", incl);
	else if (strncasecmp(have, "v=spf1", 6) == 0)
		snprintf(out, len, "v=spf1 include:%s%s", incl, have + 6);
	else
		snprintf(out, len, "%s", have);
}

static void
dc_spf_done(void *arg, const struct spf_audit *a)
{
	struct domain_check *dc = arg;
	json_t *e = dc->spf_entry, *eg = json_array();
	const char *incl = json_string_value(json_object_get(e, "include"));
	char expected[1024];

	dc->spf = NULL;
	json_object_set_new(e, "published", a->record ?
	    json_string(a->record) : json_null());
	json_object_set_new(e, "records_found", json_integer(
	    (json_int_t)a->nrecords));
	json_object_set_new(e, "lookups", json_integer(a->lookups));
	if (incl != NULL) {
		if (a->include_found && a->record != NULL)
			snprintf(expected, sizeof(expected), "%s", a->record);
		else
			dc_spf_expected(a->record, incl, expected,
			    sizeof(expected));
		json_object_set_new(e, "expected", json_string(expected));
	}
	for (size_t i = 0; i < a->negress; i++) {
		char ip[INET6_ADDRSTRLEN];
		const struct sockaddr_storage *ss = &a->egress[i].addr;

		inet_ntop(ss->ss_family, ss->ss_family == AF_INET ?
		    (const void *)&((const struct sockaddr_in *)ss)->sin_addr :
		    (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr,
		    ip, sizeof(ip));
		json_array_append_new(eg, json_pack("{s:s, s:s}", "address",
		    ip, "result", spf_result_str(a->egress[i].result)));
	}
	json_object_set_new(e, "egress", eg);
	for (size_t i = 0; i < a->nfindings; i++)
		dc_reason(e, "%s", a->findings[i]);
	if (a->lookups > DC_SPF_LOOKUP_MAX && !a->lookups_partial) {
		/* the audit's ok allows it when the include comes first;
		 * receivers stop at ten and then fail the whole record */
		bool said = false;

		for (size_t i = 0; i < a->nfindings; i++)
			said |= strstr(a->findings[i], "lookups") != NULL;
		if (!said)
			dc_reason(e, "too many DNS lookups (%d > %d): "
			    "permerror", a->lookups, DC_SPF_LOOKUP_MAX);
	}
	if (a->temperror) {
		dc->temperror = true;
		dc_status(e, "temperror");
	} else if (a->ok && a->negress > 0 &&
	    a->lookups <= DC_SPF_LOOKUP_MAX) {
		dc->spf_ok = true;
		dc_status(e, "pass");
	}
	dc_done_one(dc);
}

static void
dc_spf_start(struct domain_check *dc, const struct conf *c)
{
	struct sockaddr_storage eg[SPF_AUDIT_EGRESS];
	size_t n = 0;
	json_t *e = dc->spf_entry = dc_entry(dc, "SPF", dc->domain);

	if (c->spf_domain != NULL)
		json_object_set_new(e, "include", json_string(c->spf_domain));
	for (size_t i = 0; i < c->negress && n < SPF_AUDIT_EGRESS; i++) {
		struct sockaddr_storage *ss = &eg[n++];

		memset(ss, 0, sizeof(*ss));
		ss->ss_family = (sa_family_t)c->egress[i].family;
		if (c->egress[i].family == AF_INET)
			memcpy(&((struct sockaddr_in *)ss)->sin_addr,
			    c->egress[i].addr, 4);
		else
			memcpy(&((struct sockaddr_in6 *)ss)->sin6_addr,
			    c->egress[i].addr, 16);
	}
	if (n == 0 || c->spf_domain == NULL) {
		dc_status(e, "unknown");
		dc_reason(e, "the platform's egress_addresses and spf_domain "
		    "are not configured: SPF cannot be judged");
	}
	dc->pending++;
	dc->spf = spf_audit(dc->d, dc->domain, c->spf_domain, eg, n,
	    dc_spf_done, dc);
}

/* ---- DKIM --------------------------------------------------------------- */

static void
dc_key_done(void *arg, const struct dns_txt_result *r)
{
	struct dc_key *q = arg;
	struct domain_check *dc = q->dc;
	const struct dkim_keyrec *k = &dc->keys[q->i];
	json_t *e = q->entry, *pub = json_array();
	bool match = false;

	q->req = NULL;
	for (size_t i = 0; r->status == DNS_OK && i < r->ntxt; i++) {
		json_array_append_new(pub, json_stringn(r->txt[i], r->len[i]));
		match |= dkimkey_published_matches(k, r->txt[i], r->len[i]);
	}
	json_object_set_new(e, "published", pub);
	dc->published[q->i] = match;
	if (match)
		dc_status(e, "pass");
	else if (r->status == DNS_TEMPFAIL) {
		dc->temperror = true;
		dc_status(e, "temperror");
		dc_reason(e, "the DNS lookup failed: %s",
		    dns_status_str(r->status));
	} else if (r->status != DNS_OK || r->ntxt == 0) {
		dc_status(e, k->state == DKIMKEY_PENDING ? "pending" : "fail");
		dc_reason(e, "no record at the selector: publish the "
		    "expected TXT record%s", k->state == DKIMKEY_PENDING ?
		    " (the key signs once it is seen)" : "");
	} else {
		dc_status(e, "fail");
		dc_reason(e, "DKIM key mismatch: the published record is not "
		    "this key's (another key, k= or p=, or a revoked key)");
	}
	if (k->state == DKIMKEY_RETIRING && match)
		dc_reason(e, "retiring: keep it published until the retire "
		    "time, then it may be removed");
	dc_done_one(dc);
}

static void
dc_dkim_start(struct domain_check *dc, const struct dkim_keyrec *keys,
    size_t n)
{
	size_t live = 0;

	dc->n = n;
	dc->keys = xcalloc(n ? n : 1, sizeof(*dc->keys));
	dc->kq = xcalloc(n ? n : 1, sizeof(*dc->kq));
	dc->published = xcalloc(n ? n : 1, sizeof(*dc->published));
	for (size_t i = 0; i < n; i++) {
		char name[DNS_NAME_MAX + 1];
		struct dc_key *q = &dc->kq[i];
		json_t *e;

		dc->keys[i] = keys[i];
		dc->keys[i].private_pem = NULL;
		if (keys[i].state == DKIMKEY_RETIRED)
			continue;
		live++;
		if (snprintf(name, sizeof(name), "%s._domainkey.%s",
		    keys[i].selector, dc->domain) >= (int)sizeof(name))
			continue;
		e = q->entry = dc_entry(dc, "DKIM", name);
		json_object_set_new(e, "selector",
		    json_string(keys[i].selector));
		json_object_set_new(e, "algorithm",
		    json_string(keys[i].algorithm));
		json_object_set_new(e, "state",
		    json_string(dkim_key_state_name(keys[i].state)));
		json_object_set_new(e, "expected", json_string(keys[i].record));
		q->dc = dc;
		q->i = i;
		dc->pending++;
		q->req = dns_lookup_txt(dc->d, name, dc_key_done, q);
	}
	if (live == 0) {
		json_t *e = dc_entry(dc, "DKIM", dc->domain);

		dc_reason(e, "no DKIM key: run `ombud dkim keygen %s` and "
		    "publish the records it prints", dc->domain);
	}
}

/* ---- DMARC -------------------------------------------------------------- */

static const char *
dc_policy_name(enum dmarc_policy p)
{
	return p == DMARC_POLICY_REJECT ? "reject" :
	    p == DMARC_POLICY_QUARANTINE ? "quarantine" : "none";
}

static void
dc_dmarc_done(void *arg, const struct dmarc_lookup_result *r)
{
	struct domain_check *dc = arg;
	json_t *e = dc->dmarc_entry;
	char pub[512];

	dc->dmarc = NULL;
	json_object_set_new(e, "found_at", json_string(r->domain));
	switch (r->status) {
	case DMARC_LOOKUP_FOUND:
		snprintf(pub, sizeof(pub), "v=DMARC1; p=%s%s%s; pct=%u%s%s",
		    dc_policy_name(r->rec.p), r->rec.sp_set ? "; sp=" : "",
		    r->rec.sp_set ? dc_policy_name(r->rec.sp) : "", r->rec.pct,
		    r->rec.nrua > 0 ? "; rua=" : "",
		    r->rec.nrua > 0 ? r->rec.rua[0].uri : "");
		json_object_set_new(e, "published", json_string(pub));
		json_object_set_new(e, "policy",
		    json_string(dc_policy_name(r->rec.p)));
		dc->dmarc_ok = true;
		dc_status(e, "pass");
		if (r->at_org)
			dc_reason(e, "the policy of the organizational domain "
			    "%s applies", r->domain);
		if (r->rec.p_fallback)
			dc_reason(e, "p= is missing or invalid: read as "
			    "p=none (RFC 7489 6.6.3)");
		if (r->rec.p == DMARC_POLICY_NONE)
			dc_reason(e, "p=none monitors only; p=quarantine or "
			    "p=reject once reports show all mail aligned");
		break;
	case DMARC_LOOKUP_NONE:
		json_object_set_new(e, "published", json_null());
		dc_reason(e, "no DMARC record (or several, or an invalid "
		    "one) at _dmarc.%s: publish at least p=none", dc->domain);
		break;
	case DMARC_LOOKUP_TEMPERROR:
		dc->temperror = true;
		dc_status(e, "temperror");
		dc_reason(e, "the DNS lookup of the DMARC record failed");
		break;
	}
	dc_done_one(dc);
}

static void
dc_dmarc_start(struct domain_check *dc)
{
	char name[DNS_NAME_MAX + 16], expected[DNS_NAME_MAX + 64];

	snprintf(name, sizeof(name), "_dmarc.%s", dc->domain);
	dc->dmarc_entry = dc_entry(dc, "DMARC", name);
	snprintf(expected, sizeof(expected), "v=DMARC1; p=none; "
	    "rua=mailto:dmarc-reports@%s", dc->domain);
	json_object_set_new(dc->dmarc_entry, "expected",
	    json_string(expected));
	dc->pending++;
	dc->dmarc = dmarc_lookup(dc->d, dc->domain, dc_dmarc_done, dc);
}

struct domain_check *
domain_check_start(struct dns *d, const struct conf *c, const char *domain,
    const struct dkim_keyrec *keys, size_t n, domain_check_cb cb, void *arg)
{
	struct domain_check *dc = xcalloc(1, sizeof(*dc));
	json_t *rp;

	dc->d = d;
	dc->base = dns_base(d);
	dc->cb = cb;
	dc->arg = arg;
	strlcpy_ok(dc->domain, domain, sizeof(dc->domain));
	dc->report = json_pack("{s:s, s:[]}", "domain", dc->domain,
	    "records");
	if (dc->report == NULL)
		fatalx("domain check: json");
	dc->records = json_object_get(dc->report, "records");
	dc->pending = 1;	/* held while the lookups start */
	dc_spf_start(dc, c);
	dc_dkim_start(dc, keys, n);
	dc_dmarc_start(dc);
	rp = dc_entry(dc, "return-path", dc->domain);
	dc_status(rp, "optional");
	dc_reason(rp, "bounces go to the envelope sender at your own domain "
	    "(the SPF record above covers it): no record needed");
	dc_done_one(dc);
	return dc;
}

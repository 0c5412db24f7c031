/*
 * spf.h - SPF (RFC 7208) check_host(), asynchronous on the dns layer.
 *
 * What it does: fetches and parses the SPF record of a domain, evaluates
 * its mechanisms and modifiers (include, redirect, exp evaluated) with
 * macro expansion, within the RFC's DNS limits, and reports one result
 * with a human-readable reason.
 *
 * Must never: call the callback synchronously from spf_check() or after
 * spf_cancel(); make more DNS lookups than RFC 7208 4.6.4 allows; trust
 * record text beyond its length.
 */
#ifndef OMBUD_SPF_H
#define OMBUD_SPF_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct dns;
struct spf_req;

enum spf_result {
	SPF_NONE = 0,
	SPF_NEUTRAL,
	SPF_PASS,
	SPF_FAIL,
	SPF_SOFTFAIL,
	SPF_TEMPERROR,
	SPF_PERMERROR,
};

const char *spf_result_str(enum spf_result r);

/* reason: which mechanism decided, or why the error.  exp: the expanded
 * exp= explanation of a fail, NULL if none.  Valid during the callback. */
typedef void (*spf_cb)(void *arg, enum spf_result res, const char *reason,
    const char *exp);

/* ip: AF_INET or AF_INET6 (IPv4-mapped addresses are checked as IPv4).
 * domain: the domain checked; sender: the MAIL FROM address, or
 * "postmaster@<helo>" for a HELO check; helo: the HELO/EHLO name. */
struct spf_req *spf_check(struct dns *d, const struct sockaddr *ip,
    const char *domain, const char *sender, const char *helo, spf_cb cb,
    void *arg);

/* What an evaluation did, for diagnostics: the terms that caused DNS
 * lookups (RFC 7208 4.6.4, at most 10) and the void lookups counted,
 * and a trace, one line per record fetched and term evaluated (indented
 * by include depth, printable ASCII, bounded), ending with the result. */
struct spf_info {
	int		 lookups;
	int		 voids;
	const char	*trace;
};
typedef void (*spf_info_cb)(void *arg, enum spf_result res,
    const char *reason, const char *exp, const struct spf_info *info);
/* spf_check() with the trace; info is valid during the callback. */
struct spf_req *spf_check_info(struct dns *d, const struct sockaddr *ip,
    const char *domain, const char *sender, const char *helo,
    spf_info_cb cb, void *arg);
/* Either kind of request; no callback runs afterwards. */
void spf_cancel(struct spf_req *r);

/*
 * Domain onboarding audit (`ombud domain check`): may the platform send
 * for a customer's domain?  spf_audit() fetches the domain's SPF
 * record(s), walks the include/redirect tree statically (without
 * evaluating: every term of every record reached, macros not expanded),
 * and runs check_host() for each egress address (as
 * postmaster@<domain>, HELO <domain>).  The callback gets one struct
 * spf_audit, valid during the callback only; it never runs from inside
 * spf_audit() nor after spf_audit_cancel().
 *
 * ok = exactly one SPF record, no "+all"/"all", and every egress address
 * evaluates to pass.  findings holds one human-readable line per problem
 * ("no SPF record at example.com", "include:_spf.example.net is
 * missing", "2 SPF records at example.com: permerror", "too many DNS
 * lookups (12 > 10): permerror", "+all authorises the whole Internet",
 * "192.0.2.1: fail (-all matched in example.com)", ...), in that order.
 */
#define SPF_AUDIT_FINDINGS	24	/* lines at most; the last says so */
#define SPF_AUDIT_FINDING_MAX	320	/* bytes of a line */
#define SPF_AUDIT_EGRESS	64	/* addresses checked at most */

struct spf_audit_egress {
	struct sockaddr_storage	 addr;
	enum spf_result		 result;
	const char		*reason;
};

struct spf_audit {
	const char	*domain;
	size_t		 nrecords;	/* SPF records at domain; 1 is right */
	const char	*record;	/* the first one, NULL if none */
	bool		 include_found;	/* include:<include_domain> anywhere
					   in the tree (not asked: false) */
	int		 lookups;	/* DNS-mechanism terms in the tree
					   (include, a, mx, ptr, exists,
					   redirect; RFC 7208 4.6.4) */
	bool		 lookups_partial; /* some of the tree not followed:
					   macros, DNS failures, loops */
	bool		 all_pass;	/* the record has "+all" or "all" */
	bool		 all_neutral;	/* the record has "?all" */
	bool		 temperror;	/* a DNS failure: ask again later */
	size_t		 negress;
	const struct spf_audit_egress *egress;
	size_t		 nfindings;
	const char	*findings[SPF_AUDIT_FINDINGS];
	bool		 ok;
};

struct spf_audit_req;
/* include_domain: the platform's spf_domain (NULL or "": not looked
 * for).  egress: negress addresses (at most SPF_AUDIT_EGRESS; a CIDR
 * prefix is represented by its first address), copied. */
struct spf_audit_req *spf_audit(struct dns *d, const char *domain,
    const char *include_domain, const struct sockaddr_storage *egress,
    size_t negress, void (*cb)(void *arg, const struct spf_audit *a),
    void *arg);
void spf_audit_cancel(struct spf_audit_req *r);

/*
 * The platform's own SPF record (what `ombud spf platform-record`
 * prints): the mechanisms ("ip4:192.0.2.0/24", "ip6:2001:db8::/32")
 * into "v=spf1 ... -all" records of at most SPF_PUBLISH_MAX octets (RFC
 * 7208 3.4's advice to stay within 450): the first at domain, and when
 * they do not fit, chained by "include:_spf1.<domain>",
 * "include:_spf2.<domain>"... at the end of the one before.  A customer's
 * include:<domain> then costs *nout DNS lookups of their 10.  0 with
 * out[0..*nout), or -1 with err set (no mechanism, a name over 253
 * octets, more than SPF_PUBLISH_RECS records).
 */
#define SPF_PUBLISH_MAX		450
#define SPF_PUBLISH_RECS	8
#define SPF_NAME_MAX		253
struct spf_pubrec {
	char	name[SPF_NAME_MAX + 1];
	char	txt[SPF_PUBLISH_MAX + 1];
};
int spf_publish(const char *domain, const char *const *mechs, size_t nmech,
    struct spf_pubrec out[SPF_PUBLISH_RECS], size_t *nout, char *err,
    size_t errlen);

/* Pure helpers, exposed for tests and fuzzing.  spf_record_check()
 * parses a record ("v=spf1 ...") and returns 0, or -1 with err set. */
int spf_record_check(const char *txt, char *err, size_t errlen);

/* The fields macros expand to; NULL ones expand to "unknown". */
struct spf_macro_env {
	const char	*s, *l, *o, *d, *i, *p, *v, *h, *c, *r, *t;
};
/* Expands a macro-string; exp allows c, r and t.  Returns the length,
 * or -1 on a syntax error or if out (outlen) is too small. */
int spf_macro_expand(const struct spf_macro_env *env, const char *in,
    int exp, char *out, size_t outlen);

#endif

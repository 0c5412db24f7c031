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
void spf_cancel(struct spf_req *r);

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

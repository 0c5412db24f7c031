/*
 * spf.c - SPF (RFC 7208) check_host(), asynchronous on the dns layer.
 *
 * What it does: looks up the TXT records of a domain, selects the one
 * SPF record ("v=spf1" then a space or the end; several -> permerror),
 * parses the whole record first (any syntax error -> permerror), then
 * evaluates the terms left to right.  include and redirect push or
 * replace a frame on a small stack; each DNS answer resumes the
 * evaluation where it stopped.  Limits (4.6.4): 10 terms that cause DNS
 * lookups (include, a, mx, ptr, exists, redirect), 2 void lookups,
 * 10 MX names (more -> permerror), 10 PTR names (the rest ignored).
 * Macros (section 7) with transformers and delimiters; %{p} is the
 * validated PTR name, looked up only when a macro asks for it; %{r} is
 * "unknown".  exp= is evaluated for a fail of the outermost record.
 * Type SPF (99) records are not looked at (RFC 7208 3.1).
 *
 * Must never: run the callback synchronously or after spf_cancel();
 * exceed the lookup limits; read record text or expansions beyond
 * their bounds (every buffer is bounded, every overflow is an error).
 */
#include "auth/spf.h"
#include "dns/dns.h"
#include "common/log.h"
#include "common/util.h"

#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>

#define SPF_MAX_LOOKUPS	10
#define SPF_MAX_VOID	2
#define SPF_MAX_MX	10
#define SPF_MAX_PTR	10
#define SPF_MAX_DEPTH	(SPF_MAX_LOOKUPS + 2)
#define SPF_EXP_MAX	1024	/* an expansion */
#define SPF_VAL_MAX	512	/* a macro's value before transformers */
#define SPF_PARTS_MAX	(SPF_VAL_MAX + 1)
#define SPF_LOCAL_MAX	256
#define SPF_TRACE_MAX	16384	/* bytes of trace, then "..." */

enum spf_mech {
	SPF_M_ALL, SPF_M_INCLUDE, SPF_M_A, SPF_M_MX, SPF_M_PTR, SPF_M_IP4,
	SPF_M_IP6, SPF_M_EXISTS,
};

static const char *const spf_mech_names[] = {
	"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists",
};

struct spf_term {
	enum spf_mech	 mech;
	enum spf_result	 qual;
	const char	*spec;		/* domain-spec, NULL = <domain> */
	const char	*text;		/* the term as written */
	int		 cidr4, cidr6;
	unsigned char	 ip[16];
};

struct spf_rec {
	char		*buf;		/* the terms, NUL-separated */
	char		*orig;		/* the terms as written */
	struct spf_term	*t;
	size_t		 n;
	const char	*redirect;
	const char	*exp;
	bool		 has_all;
};

struct spf_frame {
	char		 domain[DNS_NAME_MAX + 1];
	struct spf_rec	 rec;
	bool		 loaded;
	bool		 included;	/* by include: none -> permerror */
	bool		 redirected;	/* by redirect: none -> permerror */
	size_t		 cur;
};

/* The exp= of a fail: not asked, its domain (after %{p} if it needs
 * it), its text (after %{p} if it needs it), done. */
enum { SPF_EXP_NO, SPF_EXP_DOMAIN, SPF_EXP_TEXT, SPF_EXP_P, SPF_EXP_DONE };

enum spf_op {
	SPF_OP_NONE, SPF_OP_TXT, SPF_OP_A, SPF_OP_MX, SPF_OP_MXADDR,
	SPF_OP_PTR, SPF_OP_PTRADDR, SPF_OP_EXISTS, SPF_OP_EXP,
};

struct spf_req {
	struct dns		*d;
	struct event		*ev;
	spf_cb			 cb;
	spf_info_cb		 icb;	/* instead of cb: with a trace */
	void			*arg;
	struct buf		 trace;
	struct dns_req		*q;
	enum spf_op		 op;
	int			 family;
	unsigned char		 ip[16];
	char			 sender[SPF_LOCAL_MAX + DNS_NAME_MAX + 2];
	char			 local[SPF_LOCAL_MAX + 1];
	char			 odomain[DNS_NAME_MAX + 1];
	char			 helo[DNS_NAME_MAX + 1];
	char			 istr[80];
	char			 cstr[INET6_ADDRSTRLEN];
	char			 tstr[24];
	char			 pstr[DNS_NAME_MAX + 1];
	char			 target[DNS_NAME_MAX + 1];
	struct spf_frame	 fr[SPF_MAX_DEPTH];
	int			 depth;
	int			 lookups, voids;
	int			 pstate;	/* 0 not yet, 1 running, 2 done */
	bool			 ptr_void;
	char			*ptrn[SPF_MAX_PTR];
	size_t			 nptrn, iptr;
	char			*valid[SPF_MAX_PTR];
	size_t			 nvalid;
	char			*mxn[SPF_MAX_MX];
	size_t			 nmx, imx;
	bool			 done;
	int			 exp_stage;	/* SPF_EXP_* */
	char			*exp_txt;	/* waiting for %{p} */
	enum spf_result		 res;
	char			 reason[512];
	char			*exp;
};

const char *
spf_result_str(enum spf_result r)
{
	switch (r) {
	case SPF_NONE:		return "none";
	case SPF_NEUTRAL:	return "neutral";
	case SPF_PASS:		return "pass";
	case SPF_FAIL:		return "fail";
	case SPF_SOFTFAIL:	return "softfail";
	case SPF_TEMPERROR:	return "temperror";
	case SPF_PERMERROR:	return "permerror";
	}
	return "?";
}

/* -- macros (RFC 7208 7) ----------------------------------------------- */

static bool
spf_is_delim(char c)
{
	return c != '\0' && strchr(".-+,/_=", c) != NULL;
}

static const char *
spf_macro_value(const struct spf_macro_env *env, char letter, int exp)
{
	const char *v = NULL;

	switch (letter) {
	case 's': v = env->s; break;
	case 'l': v = env->l; break;
	case 'o': v = env->o; break;
	case 'd': v = env->d; break;
	case 'i': v = env->i; break;
	case 'p': v = env->p; break;
	case 'v': v = env->v; break;
	case 'h': v = env->h; break;
	case 'c': if (exp) v = env->c; else return NULL; break;
	case 'r': if (exp) v = env->r; else return NULL; break;
	case 't': if (exp) v = env->t; else return NULL; break;
	default: return NULL;
	}
	return v != NULL ? v : "unknown";
}

static bool
spf_out(char *out, size_t outlen, size_t *o, const char *s, size_t n)
{
	if (n >= outlen - *o)
		return false;
	memcpy(out + *o, s, n);
	*o += n;
	out[*o] = '\0';
	return true;
}

/* One %{...} at in (after "%{"); *used gets its length up to '}'. */
static bool
spf_macro_one(const struct spf_macro_env *env, const char *in, int exp,
    char *out, size_t outlen, size_t *o, size_t *used)
{
	char letter, delims[8], buf[SPF_VAL_MAX + 1], tmp[SPF_EXP_MAX];
	const char *v, *p = in;
	size_t st[SPF_PARTS_MAX], ln[SPF_PARTS_MAX];
	size_t np = 0, nd = 0, i, vl, first, t = 0;
	unsigned long keep = 0;
	bool rev = false, upper;

	delims[0] = '\0';
	letter = *p++;
	upper = isupper((unsigned char)letter) != 0;
	v = spf_macro_value(env, (char)tolower((unsigned char)letter), exp);
	if (v == NULL)
		return false;
	if (isdigit((unsigned char)*p)) {
		while (isdigit((unsigned char)*p)) {
			keep = keep * 10 + (unsigned long)(*p - '0');
			if (keep > 1000)
				return false;
			p++;
		}
		if (keep == 0)
			return false;
	}
	if (*p == 'r' || *p == 'R') {
		rev = true;
		p++;
	}
	while (spf_is_delim(*p)) {
		if (nd < sizeof(delims) - 1 && strchr(delims, *p) == NULL)
			delims[nd++] = *p;
		delims[nd] = '\0';
		p++;
	}
	if (*p != '}')
		return false;
	*used = (size_t)(p - in) + 1;
	vl = strnlen(v, SPF_VAL_MAX + 1);
	if (vl > SPF_VAL_MAX)
		return false;
	memcpy(buf, v, vl);
	buf[vl] = '\0';
	if (nd == 0) {
		delims[0] = '.';
		delims[1] = '\0';
		nd = 1;
	}
	/* Split. */
	st[0] = 0;
	for (i = 0; i <= vl; i++) {
		if (i == vl || strchr(delims, buf[i]) != NULL) {
			ln[np] = i - st[np];
			np++;
			if (i < vl)
				st[np] = i + 1;
		}
	}
	if (rev)
		for (i = 0; i < np / 2; i++) {
			size_t a = st[i], b = ln[i];

			st[i] = st[np - 1 - i];
			ln[i] = ln[np - 1 - i];
			st[np - 1 - i] = a;
			ln[np - 1 - i] = b;
		}
	first = (keep > 0 && keep < np) ? np - keep : 0;
	tmp[0] = '\0';
	for (i = first; i < np; i++) {
		if (i > first && !spf_out(tmp, sizeof(tmp), &t, ".", 1))
			return false;
		if (!spf_out(tmp, sizeof(tmp), &t, buf + st[i], ln[i]))
			return false;
	}
	if (!upper)
		return spf_out(out, outlen, o, tmp, t);
	for (i = 0; i < t; i++) {
		unsigned char c = (unsigned char)tmp[i];
		char hx[4];

		if (isalnum(c) || c == '-' || c == '.' || c == '_' ||
		    c == '~') {
			if (!spf_out(out, outlen, o, tmp + i, 1))
				return false;
			continue;
		}
		(void)snprintf(hx, sizeof(hx), "%%%02X", c);
		if (!spf_out(out, outlen, o, hx, 3))
			return false;
	}
	return true;
}

int
spf_macro_expand(const struct spf_macro_env *env, const char *in, int exp,
    char *out, size_t outlen)
{
	size_t o = 0, used;
	const char *p;

	if (outlen == 0 || in == NULL)
		return -1;
	out[0] = '\0';
	for (p = in; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c != '%') {
			if ((c < 0x21 && !(exp && c == ' ')) || c > 0x7e)
				goto fail;
			if (!spf_out(out, outlen, &o, p, 1))
				goto fail;
			continue;
		}
		p++;
		if (*p == '%') {
			if (!spf_out(out, outlen, &o, "%", 1))
				goto fail;
		} else if (*p == '_') {
			if (!spf_out(out, outlen, &o, " ", 1))
				goto fail;
		} else if (*p == '-') {
			if (!spf_out(out, outlen, &o, "%20", 3))
				goto fail;
		} else if (*p == '{') {
			if (!spf_macro_one(env, p + 1, exp, out, outlen, &o,
			    &used))
				goto fail;
			p += used;
		} else
			goto fail;
	}
	return (int)o;
fail:
	out[0] = '\0';
	return -1;
}

/* -- record parsing ------------------------------------------------------ */

/* CIDR length: "0" or no leading zero, at most max. */
static bool
spf_cidr(const char *s, int max, int *out)
{
	int v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
		return false;
	for (; *s != '\0'; s++) {
		if (!isdigit((unsigned char)*s))
			return false;
		v = v * 10 + (*s - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

/* A strict dotted quad: four decimal octets, no leading zeros. */
static bool
spf_ip4(const char *s, unsigned char out[4])
{
	int i, v, nd;

	for (i = 0; i < 4; i++) {
		v = 0;
		nd = 0;
		while (isdigit((unsigned char)*s)) {
			if (nd > 0 && v == 0)
				return false;
			v = v * 10 + (*s++ - '0');
			if (++nd > 3 || v > 255)
				return false;
		}
		if (nd == 0)
			return false;
		out[i] = (unsigned char)v;
		if (i < 3 && *s++ != '.')
			return false;
	}
	return *s == '\0';
}

static bool
spf_toplabel(const char *s, size_t n)
{
	size_t i;
	bool alpha = false, dash = false;

	if (n == 0 || !isalnum((unsigned char)s[0]) ||
	    !isalnum((unsigned char)s[n - 1]))
		return false;
	for (i = 0; i < n; i++) {
		if (isalpha((unsigned char)s[i]))
			alpha = true;
		else if (s[i] == '-')
			dash = true;
		else if (!isdigit((unsigned char)s[i]))
			return false;
	}
	return alpha || dash;
}

/* domain-spec = macro-string domain-end (RFC 7208 7.1). */
static bool
spf_domspec_ok(const char *s)
{
	static const struct spf_macro_env env = { 0 };
	char tmp[SPF_EXP_MAX];
	size_t n = strlen(s);
	const char *dot;

	if (n == 0 || spf_macro_expand(&env, s, 0, tmp, sizeof(tmp)) < 0)
		return false;
	if (s[n - 1] == '}')
		return true;
	if (s[n - 1] == '.')
		n--;
	if (n == 0)
		return false;
	dot = memrchr(s, '.', n);
	if (dot == NULL)
		return false;
	return spf_toplabel(dot + 1, n - (size_t)(dot + 1 - s));
}

static void
spf_rec_free(struct spf_rec *rec)
{
	free(rec->buf);
	free(rec->orig);
	free(rec->t);
	memset(rec, 0, sizeof(*rec));
}

/* Splits "/n" and "//n" off the end of s (in place). */
/* Non-empty and nothing but ASCII digits. */
static bool
spf_all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

static bool
spf_dual_cidr(char *s, struct spf_term *t)
{
	char *p;

	/* A dual-cidr-length is digits after the last '/' (and '//') at
	 * the very end; any other '/' belongs to the domain-spec, which
	 * may hold any visible character but '%' (RFC 7208 7.1). */
	if ((p = strstr(s, "//")) != NULL && spf_all_digits(p + 2)) {
		if (!spf_cidr(p + 2, 128, &t->cidr6))
			return false;
		*p = '\0';
	}
	if ((p = strrchr(s, '/')) != NULL && spf_all_digits(p + 1)) {
		if (!spf_cidr(p + 1, 32, &t->cidr4))
			return false;
		*p = '\0';
	}
	return true;
}

static int
spf_term_parse(struct spf_rec *rec, char *tok, char *err, size_t errlen)
{
	struct spf_term *t = &rec->t[rec->n];
	char *p = tok, *arg, *rest;
	size_t nl, i;
	bool qual = true;

	memset(t, 0, sizeof(*t));
	t->qual = SPF_PASS;
	t->cidr4 = 32;
	t->cidr6 = 128;
	switch (*p) {
	case '+': p++; break;
	case '-': t->qual = SPF_FAIL; p++; break;
	case '~': t->qual = SPF_SOFTFAIL; p++; break;
	case '?': t->qual = SPF_NEUTRAL; p++; break;
	default: qual = false; break;
	}
	nl = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789-_.");
	rest = p + nl;
	if (*rest == '=' && !qual) {
		/* A modifier. */
		if (nl == 0 || !isalpha((unsigned char)p[0])) {
			snprintf(err, errlen, "bad modifier name: %s", tok);
			return -1;
		}
		arg = rest + 1;
		*rest = '\0';
		if (strcasecmp(p, "redirect") == 0 || strcasecmp(p, "exp") == 0) {
			const char **slot = tolower((unsigned char)p[0]) == 'r' ?
			    &rec->redirect : &rec->exp;

			if (*slot != NULL) {
				snprintf(err, errlen, "duplicate %s=", p);
				return -1;
			}
			if (!spf_domspec_ok(arg)) {
				snprintf(err, errlen, "bad domain-spec in %s=",
				    p);
				return -1;
			}
			*slot = arg;
		} else {
			static const struct spf_macro_env env = { 0 };
			char tmp[SPF_EXP_MAX];

			if (spf_macro_expand(&env, arg, 1, tmp,
			    sizeof(tmp)) < 0) {
				snprintf(err, errlen, "bad macro-string in "
				    "modifier %s", p);
				return -1;
			}
		}
		return 0;
	}
	for (i = 0; i < sizeof(spf_mech_names) / sizeof(*spf_mech_names); i++)
		if (strlen(spf_mech_names[i]) == nl &&
		    strncasecmp(p, spf_mech_names[i], nl) == 0)
			break;
	if (i == sizeof(spf_mech_names) / sizeof(*spf_mech_names) ||
	    (*rest != '\0' && *rest != ':' && *rest != '/')) {
		snprintf(err, errlen, "unknown mechanism: %s", tok);
		return -1;
	}
	t->mech = (enum spf_mech)i;
	switch (t->mech) {
	case SPF_M_ALL:
		if (*rest != '\0')
			goto bad;
		rec->has_all = true;
		break;
	case SPF_M_INCLUDE:
	case SPF_M_EXISTS:
		if (*rest != ':' || !spf_domspec_ok(rest + 1))
			goto bad;
		t->spec = rest + 1;
		break;
	case SPF_M_PTR:
		if (*rest == '/')
			goto bad;
		if (*rest == ':') {
			if (!spf_domspec_ok(rest + 1))
				goto bad;
			t->spec = rest + 1;
		}
		break;
	case SPF_M_A:
	case SPF_M_MX:
		if (!spf_dual_cidr(rest, t))
			goto bad;
		if (*rest == ':') {
			if (!spf_domspec_ok(rest + 1))
				goto bad;
			t->spec = rest + 1;
		} else if (*rest != '\0')
			goto bad;
		break;
	case SPF_M_IP4:
		if (*rest != ':')
			goto bad;
		if ((arg = strchr(rest, '/')) != NULL) {
			if (!spf_cidr(arg + 1, 32, &t->cidr4))
				goto bad;
			*arg = '\0';
		}
		if (!spf_ip4(rest + 1, t->ip))
			goto bad;
		break;
	case SPF_M_IP6:
		if (*rest != ':')
			goto bad;
		if ((arg = strchr(rest, '/')) != NULL) {
			if (!spf_cidr(arg + 1, 128, &t->cidr6))
				goto bad;
			*arg = '\0';
		}
		if (inet_pton(AF_INET6, rest + 1, t->ip) != 1)
			goto bad;
		break;
	}
	rec->n++;
	return 0;
bad:
	snprintf(err, errlen, "bad %s mechanism", spf_mech_names[i]);
	return -1;
}

/* txt is a selected record: "v=spf1" then a space or the end. */
static int
spf_rec_parse(const char *txt, struct spf_rec *rec, char *err, size_t errlen)
{
	size_t len = strlen(txt), i, max;
	char *tok, *save = NULL, *o;

	memset(rec, 0, sizeof(*rec));
	if (len < 6 || strncasecmp(txt, "v=spf1", 6) != 0 ||
	    (txt[6] != ' ' && txt[6] != '\0')) {
		snprintf(err, errlen, "not an SPF record");
		goto fail;
	}
	for (i = 0; i < len; i++)
		if ((unsigned char)txt[i] < 0x20 ||
		    (unsigned char)txt[i] > 0x7e) {
			snprintf(err, errlen, "invalid character in record");
			goto fail;
		}
	rec->buf = xstrdup(txt + 6);
	rec->orig = xstrdup(txt + 6);
	max = len / 2 + 1;
	rec->t = xcalloc(max, sizeof(*rec->t));
	for (tok = strtok_r(rec->buf, " ", &save); tok != NULL;
	    tok = strtok_r(NULL, " ", &save)) {
		o = rec->orig + (tok - rec->buf);
		if (rec->n >= max) {
			snprintf(err, errlen, "too many terms");
			goto fail;
		}
		o[strlen(tok)] = '\0';
		if (spf_term_parse(rec, tok, err, errlen) < 0)
			goto fail;
		if (rec->n > 0 && rec->t[rec->n - 1].text == NULL)
			rec->t[rec->n - 1].text = o;
	}
	return 0;
fail:
	spf_rec_free(rec);
	return -1;
}

int
spf_record_check(const char *txt, char *err, size_t errlen)
{
	struct spf_rec rec;

	if (spf_rec_parse(txt, &rec, err, errlen) < 0)
		return -1;
	spf_rec_free(&rec);
	return 0;
}

/* -- the platform's record ----------------------------------------------- */

int
spf_publish(const char *domain, const char *const *mechs, size_t nmech,
    struct spf_pubrec out[SPF_PUBLISH_RECS], size_t *nout, char *err,
    size_t errlen)
{
	char inc[SPF_NAME_MAX + 32];
	size_t i = 0, k, len, reserve;
	int n;

	*nout = 0;
	if (nmech == 0) {
		(void)snprintf(err, errlen, "no address to publish");
		goto fail;
	}
	for (k = 0; i < nmech; k++) {
		struct spf_pubrec *pr = &out[k];

		if (k == SPF_PUBLISH_RECS) {
			(void)snprintf(err, errlen, "the addresses need more "
			    "than %d chained records", SPF_PUBLISH_RECS);
			goto fail;
		}
		n = k == 0 ? snprintf(pr->name, sizeof(pr->name), "%s",
		    domain) : snprintf(pr->name, sizeof(pr->name),
		    "_spf%zu.%s", k, domain);
		if (n < 0 || (size_t)n >= sizeof(pr->name)) {
			(void)snprintf(err, errlen, "%s: name too long",
			    domain);
			goto fail;
		}
		/* The include of the next record, should one be needed. */
		n = snprintf(inc, sizeof(inc), " include:_spf%zu.%s", k + 1,
		    domain);
		if (n < 0 || (size_t)n >= sizeof(inc))
			fatalx("spf_publish: include too long");
		reserve = (size_t)n;
		len = (size_t)snprintf(pr->txt, sizeof(pr->txt), "v=spf1");
		for (; i < nmech; i++) {
			size_t ml = strlen(mechs[i]), rest = 0, j;

			/* Would all the rest fit here, without include? */
			for (j = i; j < nmech; j++)
				rest += 1 + strlen(mechs[j]);
			if (len + rest + 5 <= SPF_PUBLISH_MAX) {
				for (; i < nmech; i++)
					len += (size_t)snprintf(pr->txt + len,
					    sizeof(pr->txt) - len, " %s",
					    mechs[i]);
				break;
			}
			if (len + 1 + ml + reserve + 5 > SPF_PUBLISH_MAX)
				break;
			len += (size_t)snprintf(pr->txt + len,
			    sizeof(pr->txt) - len, " %s", mechs[i]);
		}
		if (i < nmech) {
			if (len == 6) {
				(void)snprintf(err, errlen, "mechanism too "
				    "long: %.64s", mechs[i]);
				goto fail;
			}
			len += (size_t)snprintf(pr->txt + len,
			    sizeof(pr->txt) - len, "%s", inc);
		}
		(void)snprintf(pr->txt + len, sizeof(pr->txt) - len, " -all");
	}
	*nout = k;
	return 0;
fail:
	*nout = 0;
	return -1;
}

/* -- evaluation ------------------------------------------------------------ */

static void spf_run(struct spf_req *);
static void spf_resume(struct spf_req *);
static void spf_exp_step(struct spf_req *);
static void spf_frame_start(struct spf_req *, const char *, bool, bool);

/* One line of the trace, indented by the include depth. */
static void __attribute__((format(printf, 2, 3)))
spf_trace(struct spf_req *r, const char *fmt, ...)
{
	char line[640];
	va_list ap;

	if (r->icb == NULL || r->trace.len > SPF_TRACE_MAX)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	buf_printf(&r->trace, "%*s%s\n", 2 * r->depth, "", line);
	if (r->trace.len > SPF_TRACE_MAX)
		buf_adds(&r->trace, "...\n");
}

static void
spf_finish(struct spf_req *r, enum spf_result res, const char *reason)
{
	if (r->done)
		return;
	r->done = true;
	r->res = res;
	(void)snprintf(r->reason, sizeof(r->reason), "%s", reason);
	spf_trace(r, "=> %s: %s", spf_result_str(res), reason);
	event_active(r->ev, EV_TIMEOUT, 0);
}

static void
spf_env(struct spf_req *r, struct spf_macro_env *env)
{
	memset(env, 0, sizeof(*env));
	env->s = r->sender;
	env->l = r->local;
	env->o = r->odomain;
	env->d = r->fr[r->depth].domain;
	env->i = r->istr;
	env->p = r->pstate == 2 ? r->pstr : "unknown";
	env->v = r->family == AF_INET ? "in-addr" : "ip6";
	env->h = r->helo;
	env->c = r->cstr;
	env->r = "unknown";
	env->t = r->tstr;
}

/* Expands a domain-spec into r->target (left labels dropped over 253). */
static bool
spf_expand_domain(struct spf_req *r, const char *spec)
{
	struct spf_macro_env env;
	char tmp[SPF_EXP_MAX];
	const char *p;
	size_t n;

	spf_env(r, &env);
	if (spec == NULL)
		spec = r->fr[r->depth].domain;
	if (spf_macro_expand(&env, spec, 0, tmp, sizeof(tmp)) < 0)
		return false;
	n = strlen(tmp);
	if (n > 0 && tmp[n - 1] == '.')
		tmp[--n] = '\0';
	p = tmp;
	while (strlen(p) > 253 && (p = strchr(p, '.')) != NULL)
		p++;
	if (p == NULL || *p == '\0')
		return false;
	return strlcpy_ok(r->target, p, sizeof(r->target));
}

static bool
spf_needs_p(const char *s)
{
	return s != NULL && (strstr(s, "%{p") != NULL ||
	    strstr(s, "%{P") != NULL);
}

static bool
spf_prefix_eq(const unsigned char *a, const unsigned char *b, int bits)
{
	int full = bits / 8, rem = bits % 8;
	unsigned char m;

	if (full > 0 && memcmp(a, b, (size_t)full) != 0)
		return false;
	if (rem == 0)
		return true;
	m = (unsigned char)(0xff << (8 - rem));
	return (a[full] & m) == (b[full] & m);
}

/* Does the client address equal addr (a sockaddr from the dns layer)? */
static bool
spf_addr_match(const struct spf_req *r, const struct sockaddr_storage *ss,
    int bits)
{
	if (r->family == AF_INET && ss->ss_family == AF_INET)
		return spf_prefix_eq(r->ip, (const unsigned char *)
		    &((const struct sockaddr_in *)(const void *)ss)->sin_addr,
		    bits);
	if (r->family == AF_INET6 && ss->ss_family == AF_INET6)
		return spf_prefix_eq(r->ip, (const unsigned char *)
		    &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr,
		    bits);
	return false;
}

static const struct spf_term *
spf_cur(const struct spf_req *r)
{
	const struct spf_frame *f = &r->fr[r->depth];

	return &f->rec.t[f->cur];
}

/* The frame's result is known; pass it up (include) or finish. */
static void
spf_frame_result(struct spf_req *r, enum spf_result res, const char *why)
{
	struct spf_frame *f;
	char buf[2][512];
	int k = 0;

	for (;;) {
		f = &r->fr[r->depth];
		if (r->depth == 0 || res == SPF_TEMPERROR ||
		    res == SPF_PERMERROR || (res == SPF_NONE && f->included)) {
			if (res == SPF_NONE && (f->included || f->redirected)) {
				(void)snprintf(buf[k], sizeof(buf[k]),
				    "no SPF record at %s (included or "
				    "redirected)", f->domain);
				spf_finish(r, SPF_PERMERROR, buf[k]);
				return;
			}
			spf_finish(r, res, why);
			return;
		}
		spf_rec_free(&f->rec);
		r->depth--;
		f = &r->fr[r->depth];
		spf_trace(r, "%s: %s, %s", spf_cur(r)->text,
		    spf_result_str(res), res == SPF_PASS ? "match" :
		    "no match");
		if (res != SPF_PASS) {
			f->cur++;
			spf_run(r);
			return;
		}
		(void)snprintf(buf[k], sizeof(buf[k]), "%.100s matched in "
		    "%.253s (%.100s)", spf_cur(r)->text, f->domain, why);
		res = spf_cur(r)->qual;
		why = buf[k];
		k ^= 1;
	}
}

/* A mechanism matched (or not) in the current frame. */
static void
spf_term_done(struct spf_req *r, bool match)
{
	struct spf_frame *f = &r->fr[r->depth];
	char buf[512];

	spf_trace(r, "%s: %s", spf_cur(r)->text, match ? "match" :
	    "no match");
	if (!match) {
		f->cur++;
		spf_run(r);
		return;
	}
	(void)snprintf(buf, sizeof(buf), "%s matched in %s",
	    spf_cur(r)->text, f->domain);
	spf_frame_result(r, spf_cur(r)->qual, buf);
}

static bool
spf_count_lookup(struct spf_req *r)
{
	if (++r->lookups > SPF_MAX_LOOKUPS) {
		spf_finish(r, SPF_PERMERROR, "more than 10 DNS lookups");
		return false;
	}
	return true;
}

static bool
spf_count_void(struct spf_req *r)
{
	if (++r->voids > SPF_MAX_VOID) {
		spf_finish(r, SPF_PERMERROR, "more than 2 void lookups");
		return false;
	}
	return true;
}

static void
spf_addr_cb(void *arg, const struct dns_addr_result *res)
{
	struct spf_req *r = arg;
	const struct spf_term *t;
	enum spf_op op = r->op;
	size_t i;
	int bits;
	bool match = false;

	r->q = NULL;
	r->op = SPF_OP_NONE;
	/* Validating PTR names: a failed lookup skips the name (RFC 7208
	 * 5.5); may run past the last term (redirect=, exp=). */
	if (op == SPF_OP_PTRADDR) {
		if (res->status == DNS_OK)
			for (i = 0; i < res->naddr; i++)
				if (spf_addr_match(r, &res->addr[i],
				    r->family == AF_INET ? 32 : 128)) {
					r->valid[r->nvalid++] =
					    xstrdup(r->ptrn[r->iptr]);
					break;
				}
		r->iptr++;
		spf_resume(r);
		return;
	}
	t = spf_cur(r);
	bits = r->family == AF_INET ? t->cidr4 : t->cidr6;
	/* Also the address of an MX name: section 5's rule, 5.4 makes no
	 * exception. */
	if (res->status == DNS_TEMPFAIL) {
		spf_finish(r, SPF_TEMPERROR, op == SPF_OP_MXADDR ?
		    "DNS failure (address of an MX name)" : "DNS failure");
		return;
	}
	if (res->status == DNS_OK) {
		for (i = 0; i < res->naddr && !match; i++)
			match = op == SPF_OP_EXISTS ||
			    spf_addr_match(r, &res->addr[i], bits);
	} else if (op != SPF_OP_MXADDR && !spf_count_void(r))
		return;
	if (op == SPF_OP_MXADDR && !match) {
		r->imx++;
		if (r->imx < r->nmx) {
			r->op = SPF_OP_MXADDR;
			r->q = dns_lookup_addr_flags(r->d, r->mxn[r->imx],
			    r->family, DNS_F_ANYNAME, spf_addr_cb, r);
			return;
		}
	}
	spf_term_done(r, match);
}

static void
spf_mx_cb(void *arg, const struct dns_mx_result *res)
{
	struct spf_req *r = arg;
	size_t i;

	r->q = NULL;
	r->op = SPF_OP_NONE;
	if (res->status == DNS_TEMPFAIL) {
		spf_finish(r, SPF_TEMPERROR, "DNS failure (MX)");
		return;
	}
	if (res->status != DNS_OK || res->implicit || res->nmx == 0) {
		if (res->status != DNS_NULLMX && !spf_count_void(r))
			return;
		spf_term_done(r, false);
		return;
	}
	if (res->nmx > SPF_MAX_MX) {
		spf_finish(r, SPF_PERMERROR, "more than 10 MX names");
		return;
	}
	for (i = 0; i < r->nmx; i++)
		free(r->mxn[i]);
	r->nmx = 0;
	for (i = 0; i < res->nmx; i++)
		if (res->mx[i].host[0] != '\0')
			r->mxn[r->nmx++] = xstrdup(res->mx[i].host);
	if (r->nmx == 0) {
		spf_term_done(r, false);
		return;
	}
	r->imx = 0;
	r->op = SPF_OP_MXADDR;
	r->q = dns_lookup_addr_flags(r->d, r->mxn[0], r->family,
	    DNS_F_ANYNAME, spf_addr_cb, r);
}

static void
spf_ptr_cb(void *arg, const struct dns_ptr_result *res)
{
	struct spf_req *r = arg;
	size_t i;

	r->q = NULL;
	r->op = SPF_OP_NONE;
	r->ptr_void = res->status == DNS_NXDOMAIN ||
	    res->status == DNS_NODATA;
	if (res->status == DNS_OK)
		for (i = 0; i < res->nname && r->nptrn < SPF_MAX_PTR; i++)
			r->ptrn[r->nptrn++] = xstrdup(res->name[i]);
	r->iptr = 0;
	spf_resume(r);
}

/* The SPF records among TXT records: "v=spf1" then a space or the end
 * (RFC 7208 4.5).  Returns how many; *rec and *len get the first. */
static size_t
spf_select(const struct dns_txt_result *res, const char **rec, size_t *len)
{
	size_t i, n = 0;

	*rec = NULL;
	*len = 0;
	if (res->status != DNS_OK)
		return 0;
	for (i = 0; i < res->ntxt; i++)
		if (res->len[i] >= 6 &&
		    strncasecmp(res->txt[i], "v=spf1", 6) == 0 &&
		    (res->len[i] == 6 || res->txt[i][6] == ' ')) {
			if (n++ == 0) {
				*rec = res->txt[i];
				*len = res->len[i];
			}
		}
	return n;
}

static void
spf_txt_cb(void *arg, const struct dns_txt_result *res)
{
	struct spf_req *r = arg;
	struct spf_frame *f = &r->fr[r->depth];
	const char *rec;
	char err[256], buf[512];
	size_t n, reclen;

	r->q = NULL;
	r->op = SPF_OP_NONE;
	if (res->status == DNS_TEMPFAIL) {
		(void)snprintf(buf, sizeof(buf), "DNS failure for %s",
		    f->domain);
		spf_frame_result(r, SPF_TEMPERROR, buf);
		return;
	}
	n = spf_select(res, &rec, &reclen);
	if (n == 0) {
		(void)snprintf(buf, sizeof(buf), "no SPF record at %s",
		    f->domain);
		spf_trace(r, "%s", buf);
		spf_frame_result(r, SPF_NONE, buf);
		return;
	}
	if (n > 1) {
		(void)snprintf(buf, sizeof(buf), "%zu SPF records at %s", n,
		    f->domain);
		spf_frame_result(r, SPF_PERMERROR, buf);
		return;
	}
	if (strlen(rec) != reclen) {
		/* Not even a macro-string may hold a NUL (RFC 7208 7.1). */
		(void)snprintf(buf, sizeof(buf), "%s: NUL byte in the SPF "
		    "record", f->domain);
		spf_frame_result(r, SPF_PERMERROR, buf);
		return;
	}
	if (spf_rec_parse(rec, &f->rec, err, sizeof(err)) < 0) {
		(void)snprintf(buf, sizeof(buf), "%.253s: %.200s", f->domain,
		    err);
		spf_frame_result(r, SPF_PERMERROR, buf);
		return;
	}
	spf_trace(r, "%s: \"%.400s%s\"", f->domain, rec,
	    reclen > 400 ? "..." : "");
	f->loaded = true;
	f->cur = 0;
	spf_run(r);
}

static void
spf_exp_cb(void *arg, const struct dns_txt_result *res)
{
	struct spf_req *r = arg;

	r->q = NULL;
	r->op = SPF_OP_NONE;
	/* Exactly one record, or no explanation (RFC 7208 6.2). */
	if (res->status == DNS_OK && res->ntxt == 1 &&
	    strlen(res->txt[0]) == res->len[0]) {
		r->exp_txt = xstrdup(res->txt[0]);
		r->exp_stage = SPF_EXP_P;
	} else
		r->exp_stage = SPF_EXP_DONE;
	spf_exp_step(r);
}

static void
spf_frame_start(struct spf_req *r, const char *domain, bool included,
    bool redirected)
{
	struct spf_frame *f = &r->fr[r->depth];

	spf_rec_free(&f->rec);
	memset(f, 0, sizeof(*f));
	(void)snprintf(f->domain, sizeof(f->domain), "%s", domain);
	f->included = included;
	f->redirected = redirected;
	r->op = SPF_OP_TXT;
	r->q = dns_lookup_txt_flags(r->d, f->domain, DNS_F_ANYNAME,
	    spf_txt_cb, r);
}

/* The %{p} value from the validated names (RFC 7208 7.3). */
static void
spf_set_p(struct spf_req *r)
{
	const char *dom = r->fr[r->depth].domain, *best = NULL;
	size_t i, dl = strlen(dom), nl;

	for (i = 0; i < r->nvalid && best == NULL; i++)
		if (strcasecmp(r->valid[i], dom) == 0)
			best = r->valid[i];
	for (i = 0; i < r->nvalid && best == NULL; i++) {
		nl = strlen(r->valid[i]);
		if (nl > dl && r->valid[i][nl - dl - 1] == '.' &&
		    strcasecmp(r->valid[i] + nl - dl, dom) == 0)
			best = r->valid[i];
	}
	if (best == NULL && r->nvalid > 0)
		best = r->valid[0];
	(void)snprintf(r->pstr, sizeof(r->pstr), "%s",
	    best != NULL ? best : "unknown");
}

/* Drives the PTR validation; true once done. */
static bool
spf_ptr_step(struct spf_req *r)
{
	struct sockaddr_storage ss;

	if (r->pstate == 2)
		return true;
	if (r->pstate == 0) {
		r->pstate = 1;
		memset(&ss, 0, sizeof(ss));
		ss.ss_family = (sa_family_t)r->family;
		if (r->family == AF_INET)
			memcpy(&((struct sockaddr_in *)(void *)&ss)->sin_addr,
			    r->ip, 4);
		else
			memcpy(&((struct sockaddr_in6 *)(void *)&ss)->sin6_addr,
			    r->ip, 16);
		r->op = SPF_OP_PTR;
		r->q = dns_lookup_ptr(r->d, (struct sockaddr *)&ss,
		    spf_ptr_cb, r);
		return false;
	}
	if (r->iptr < r->nptrn) {
		r->op = SPF_OP_PTRADDR;
		r->q = dns_lookup_addr(r->d, r->ptrn[r->iptr], r->family,
		    spf_addr_cb, r);
		return false;
	}
	r->pstate = 2;
	return true;
}

static bool
spf_ptr_match(struct spf_req *r)
{
	size_t i, tl = strlen(r->target), nl;

	for (i = 0; i < r->nvalid; i++) {
		nl = strlen(r->valid[i]);
		if (strcasecmp(r->valid[i], r->target) == 0 ||
		    (nl > tl && r->valid[i][nl - tl - 1] == '.' &&
		    strcasecmp(r->valid[i] + nl - tl, r->target) == 0))
			return true;
	}
	return false;
}

/* Evaluate terms of the current frame until one needs DNS or matches. */
static void
spf_run(struct spf_req *r)
{
	struct spf_frame *f;
	const struct spf_term *t;
	char buf[512];
	bool m;

	for (;;) {
		if (r->done)
			return;
		f = &r->fr[r->depth];
		if (f->cur >= f->rec.n)
			break;
		t = spf_cur(r);
		if ((spf_needs_p(t->spec) || t->mech == SPF_M_PTR) &&
		    r->pstate != 2) {
			if (!spf_ptr_step(r))
				return;
			spf_set_p(r);
		}
		switch (t->mech) {
		case SPF_M_ALL:
			spf_term_done(r, true);
			return;
		case SPF_M_IP4:
			m = r->family == AF_INET &&
			    spf_prefix_eq(r->ip, t->ip, t->cidr4);
			if (m) {
				spf_term_done(r, true);
				return;
			}
			spf_trace(r, "%s: no match", t->text);
			f->cur++;
			continue;
		case SPF_M_IP6:
			m = r->family == AF_INET6 &&
			    spf_prefix_eq(r->ip, t->ip, t->cidr6);
			if (m) {
				spf_term_done(r, true);
				return;
			}
			spf_trace(r, "%s: no match", t->text);
			f->cur++;
			continue;
		default:
			break;
		}
		if (!spf_count_lookup(r))
			return;
		if (!spf_expand_domain(r, t->spec)) {
			(void)snprintf(buf, sizeof(buf), "%s: bad macro "
			    "expansion", t->text);
			spf_finish(r, SPF_PERMERROR, buf);
			return;
		}
		spf_trace(r, "%s: DNS lookup %d, %s", t->text, r->lookups,
		    r->target);
		switch (t->mech) {
		case SPF_M_INCLUDE:
			if (r->depth + 1 >= SPF_MAX_DEPTH) {
				spf_finish(r, SPF_PERMERROR, "includes too "
				    "deep");
				return;
			}
			r->depth++;
			spf_frame_start(r, r->target, true, false);
			return;
		case SPF_M_A:
			r->op = SPF_OP_A;
			r->q = dns_lookup_addr_flags(r->d, r->target,
			    r->family, DNS_F_ANYNAME, spf_addr_cb, r);
			return;
		case SPF_M_EXISTS:
			r->op = SPF_OP_EXISTS;
			r->q = dns_lookup_addr_flags(r->d, r->target,
			    AF_INET, DNS_F_ANYNAME, spf_addr_cb, r);
			return;
		case SPF_M_MX:
			r->op = SPF_OP_MX;
			r->q = dns_lookup_mx_flags(r->d, r->target,
			    DNS_F_ANYNAME, spf_mx_cb, r);
			return;
		case SPF_M_PTR:
			if (r->ptr_void && !spf_count_void(r))
				return;
			if (spf_ptr_match(r)) {
				spf_term_done(r, true);
				return;
			}
			spf_trace(r, "%s: no match", t->text);
			f->cur++;
			continue;
		default:
			return;
		}
	}
	/* No mechanism matched. */
	if (f->rec.redirect != NULL && !f->rec.has_all) {
		bool inc = f->included;

		if (!spf_count_lookup(r))
			return;
		if (spf_needs_p(f->rec.redirect) && r->pstate != 2) {
			r->lookups--;
			if (!spf_ptr_step(r))
				return;
			spf_set_p(r);
			r->lookups++;
		}
		if (!spf_expand_domain(r, f->rec.redirect)) {
			spf_finish(r, SPF_PERMERROR, "redirect: bad macro "
			    "expansion");
			return;
		}
		spf_trace(r, "redirect=%s: DNS lookup %d, %s",
		    f->rec.redirect, r->lookups, r->target);
		spf_frame_start(r, r->target, inc, true);
		return;
	}
	(void)snprintf(buf, sizeof(buf), "no mechanism matched in %s",
	    f->domain);
	spf_frame_result(r, SPF_NEUTRAL, buf);
}

static void
spf_req_free(struct spf_req *r)
{
	int i;
	size_t j;

	if (r->q != NULL)
		dns_cancel(r->q);
	for (i = 0; i < SPF_MAX_DEPTH; i++)
		spf_rec_free(&r->fr[i].rec);
	for (j = 0; j < r->nptrn; j++)
		free(r->ptrn[j]);
	for (j = 0; j < r->nvalid; j++)
		free(r->valid[j]);
	for (j = 0; j < r->nmx; j++)
		free(r->mxn[j]);
	free(r->exp);
	free(r->exp_txt);
	buf_free(&r->trace);
	if (r->ev != NULL)
		event_free(r->ev);
	free(r);
}

/* Fetches and expands the exp= of a fail, resolving %{p} first if the
 * domain-spec or the text asks for it; SPF_EXP_DONE when finished
 * (with or without an explanation). */
static void
spf_exp_step(struct spf_req *r)
{
	const struct spf_frame *f = &r->fr[0];
	struct spf_macro_env env;
	char tmp[SPF_EXP_MAX];

	switch (r->exp_stage) {
	case SPF_EXP_DOMAIN:
		if (spf_needs_p(f->rec.exp) && !spf_ptr_step(r))
			return;
		spf_set_p(r);
		if (!spf_expand_domain(r, f->rec.exp))
			break;
		r->exp_stage = SPF_EXP_TEXT;
		r->op = SPF_OP_EXP;
		r->q = dns_lookup_txt_flags(r->d, r->target, DNS_F_ANYNAME,
		    spf_exp_cb, r);
		return;
	case SPF_EXP_P:
		if (spf_needs_p(r->exp_txt) && !spf_ptr_step(r))
			return;
		spf_set_p(r);
		spf_env(r, &env);
		if (spf_macro_expand(&env, r->exp_txt, 1, tmp,
		    sizeof(tmp)) >= 0)
			r->exp = xstrdup(tmp);
		break;
	default:
		break;
	}
	r->exp_stage = SPF_EXP_DONE;
	event_active(r->ev, EV_TIMEOUT, 0);
}

/* A PTR step finished: go on with the evaluation or the explanation. */
static void
spf_resume(struct spf_req *r)
{
	if (r->exp_stage != SPF_EXP_NO)
		spf_exp_step(r);
	else
		spf_run(r);
}

static void
spf_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct spf_req *r = arg;
	const struct spf_frame *f = &r->fr[0];

	/* A fail of the outermost record: its exp=, once. */
	if (r->exp_stage == SPF_EXP_NO && r->res == SPF_FAIL &&
	    r->depth == 0 && f->loaded && f->rec.exp != NULL) {
		r->exp_stage = SPF_EXP_DOMAIN;
		spf_exp_step(r);
		return;
	}
	if (r->q != NULL || (r->exp_stage != SPF_EXP_NO &&
	    r->exp_stage != SPF_EXP_DONE))
		return;
	if (r->icb != NULL) {
		struct spf_info info = {
			.lookups = r->lookups, .voids = r->voids,
			.trace = r->trace.data != NULL ? r->trace.data : "",
		};

		r->icb(r->arg, r->res, r->reason, r->exp, &info);
	} else
		r->cb(r->arg, r->res, r->reason, r->exp);
	spf_req_free(r);
}

/* A valid domain for check_host(): labels of 1..63, two at least. */
static bool
spf_domain_ok(const char *d)
{
	size_t n = strlen(d), lab = 0, labels = 0, i;

	if (n > 0 && d[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return false;
	for (i = 0; i <= n; i++) {
		if (i == n || d[i] == '.') {
			if (lab == 0 || lab > 63)
				return false;
			labels++;
			lab = 0;
		} else if ((unsigned char)d[i] <= 0x20 ||
		    (unsigned char)d[i] > 0x7e)
			return false;
		else
			lab++;
	}
	return labels >= 2;
}

static struct spf_req *
spf_start(struct dns *d, const struct sockaddr *ip, const char *domain,
    const char *sender, const char *helo, spf_cb cb, spf_info_cb icb,
    void *arg)
{
	/* Upper-case nibbles for %{i}, as pyspf (DNS does not care). */
	static const char hex[] = "0123456789ABCDEF";
	struct spf_req *r;
	const unsigned char *b;
	const char *at;
	size_t o = 0;
	int i;

	r = xcalloc(1, sizeof(*r));
	r->d = d;
	r->cb = cb;
	r->icb = icb;
	r->arg = arg;
	buf_init(&r->trace);
	r->ev = event_new(dns_base(d), -1, 0, spf_deliver, r);
	if (r->ev == NULL)
		fatalx("spf: event_new");
	if (ip->sa_family == AF_INET) {
		r->family = AF_INET;
		memcpy(r->ip, &((const struct sockaddr_in *)(const void *)ip)
		    ->sin_addr, 4);
	} else {
		b = (const unsigned char *)&((const struct sockaddr_in6 *)
		    (const void *)ip)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)
		    (const void *)b)) {
			r->family = AF_INET;
			memcpy(r->ip, b + 12, 4);
		} else {
			r->family = AF_INET6;
			memcpy(r->ip, b, 16);
		}
	}
	if (r->family == AF_INET)
		(void)snprintf(r->istr, sizeof(r->istr), "%u.%u.%u.%u",
		    r->ip[0], r->ip[1], r->ip[2], r->ip[3]);
	else
		for (i = 0; i < 16; i++) {
			r->istr[o++] = hex[r->ip[i] >> 4];
			r->istr[o++] = '.';
			r->istr[o++] = hex[r->ip[i] & 0xf];
			r->istr[o++] = i < 15 ? '.' : '\0';
		}
	(void)inet_ntop(r->family, r->ip, r->cstr, sizeof(r->cstr));
	(void)snprintf(r->tstr, sizeof(r->tstr), "%lld",
	    (long long)time(NULL));
	(void)snprintf(r->helo, sizeof(r->helo), "%s", helo ? helo : "");
	(void)snprintf(r->sender, sizeof(r->sender), "%s",
	    sender ? sender : "");
	at = strrchr(r->sender, '@');
	if (at != NULL && at > r->sender)
		(void)snprintf(r->local, sizeof(r->local), "%.*s",
		    (int)(at - r->sender), r->sender);
	else
		(void)snprintf(r->local, sizeof(r->local), "postmaster");
	(void)snprintf(r->odomain, sizeof(r->odomain), "%s",
	    at != NULL ? at + 1 : domain);
	if (domain == NULL || !spf_domain_ok(domain)) {
		spf_finish(r, SPF_NONE, "not a valid domain name");
		return r;
	}
	spf_frame_start(r, domain, false, false);
	return r;
}

struct spf_req *
spf_check(struct dns *d, const struct sockaddr *ip, const char *domain,
    const char *sender, const char *helo, spf_cb cb, void *arg)
{
	if (cb == NULL)
		fatalx("spf_check: no callback");
	return spf_start(d, ip, domain, sender, helo, cb, NULL, arg);
}

struct spf_req *
spf_check_info(struct dns *d, const struct sockaddr *ip, const char *domain,
    const char *sender, const char *helo, spf_info_cb cb, void *arg)
{
	if (cb == NULL)
		fatalx("spf_check_info: no callback");
	return spf_start(d, ip, domain, sender, helo, NULL, cb, arg);
}

void
spf_cancel(struct spf_req *r)
{
	if (r != NULL)
		spf_req_free(r);
}

/* -- domain audit -------------------------------------------------------- */

#define SPF_AUDIT_WALK	32	/* records fetched in the static walk */

struct spf_audit_req {
	struct dns		*d;
	struct event		*ev;
	void			(*cb)(void *, const struct spf_audit *);
	void			*arg;
	struct dns_req		*q;
	struct spf_req		*sr;
	char			 domain[DNS_NAME_MAX + 1];
	char			 incdom[DNS_NAME_MAX + 1];
	char			*record;
	/* the walk: names to fetch (walk[iwalk..nwalk)), fetched or not */
	char			*walk[SPF_AUDIT_WALK];
	size_t			 nwalk, iwalk;
	size_t			 icheck;
	struct spf_audit	 a;
	struct spf_audit_egress	 eg[SPF_AUDIT_EGRESS];
	char			 reasons[SPF_AUDIT_EGRESS][256];
	char			 fbuf[SPF_AUDIT_FINDINGS][SPF_AUDIT_FINDING_MAX];
};

static void spf_audit_next(struct spf_audit_req *);

static void __attribute__((format(printf, 2, 3)))
spf_audit_finding(struct spf_audit_req *r, const char *fmt, ...)
{
	struct spf_audit *a = &r->a;
	va_list ap;

	if (a->nfindings == SPF_AUDIT_FINDINGS)
		return;
	if (a->nfindings == SPF_AUDIT_FINDINGS - 1) {
		(void)snprintf(r->fbuf[a->nfindings], SPF_AUDIT_FINDING_MAX,
		    "(more findings left out)");
	} else {
		va_start(ap, fmt);
		(void)vsnprintf(r->fbuf[a->nfindings], SPF_AUDIT_FINDING_MAX,
		    fmt, ap);
		va_end(ap);
	}
	a->findings[a->nfindings] = r->fbuf[a->nfindings];
	a->nfindings++;
}

/* A name to walk, once; a name seen before is a loop (or a repeat). */
static void
spf_audit_enqueue(struct spf_audit_req *r, const char *name)
{
	size_t i, n = strlen(name);

	if (n > 0 && name[n - 1] == '.')
		n--;
	for (i = 0; i < r->nwalk; i++)
		if (strlen(r->walk[i]) == n &&
		    strncasecmp(r->walk[i], name, n) == 0) {
			r->a.lookups_partial = true;
			return;
		}
	if (r->nwalk == SPF_AUDIT_WALK) {
		r->a.lookups_partial = true;
		return;
	}
	r->walk[r->nwalk++] = xstrndup(name, n);
}

static bool
spf_audit_is_include(const struct spf_audit_req *r, const char *spec)
{
	size_t n = strlen(spec), m = strlen(r->incdom);

	if (n > 0 && spec[n - 1] == '.')
		n--;
	return m > 0 && n == m && strncasecmp(spec, r->incdom, n) == 0;
}

/* Count the DNS-mechanism terms of a parsed record and queue what it
 * includes or redirects to; top: the domain's own record. */
static void
spf_audit_terms(struct spf_audit_req *r, const struct spf_rec *rec, bool top)
{
	const struct spf_term *t;
	size_t i;

	for (i = 0; i < rec->n; i++) {
		t = &rec->t[i];
		switch (t->mech) {
		case SPF_M_ALL:
			if (top && t->qual == SPF_PASS)
				r->a.all_pass = true;
			if (top && t->qual == SPF_NEUTRAL)
				r->a.all_neutral = true;
			continue;
		case SPF_M_IP4:
		case SPF_M_IP6:
			continue;
		case SPF_M_INCLUDE:
			r->a.lookups++;
			if (strchr(t->spec, '%') != NULL) {
				r->a.lookups_partial = true;
				continue;
			}
			if (spf_audit_is_include(r, t->spec))
				r->a.include_found = true;
			spf_audit_enqueue(r, t->spec);
			continue;
		default:
			r->a.lookups++;
			continue;
		}
	}
	if (rec->redirect != NULL && !rec->has_all) {
		r->a.lookups++;
		if (strchr(rec->redirect, '%') != NULL)
			r->a.lookups_partial = true;
		else
			spf_audit_enqueue(r, rec->redirect);
	}
}

static void
spf_audit_txt_cb(void *arg, const struct dns_txt_result *res)
{
	struct spf_audit_req *r = arg;
	const char *name = r->walk[r->iwalk], *rec;
	bool top = r->iwalk == 0;
	struct spf_rec parsed;
	char err[256];
	size_t n, len;

	r->q = NULL;
	r->iwalk++;
	n = spf_select(res, &rec, &len);
	if (res->status == DNS_TEMPFAIL || res->status == DNS_BADNAME) {
		r->a.temperror = res->status == DNS_TEMPFAIL;
		r->a.lookups_partial = true;
		spf_audit_finding(r, "DNS failure looking up %s", name);
		goto next;
	}
	if (top) {
		r->a.nrecords = n;
		if (n > 0)
			r->record = xstrndup(rec, len);
		if (n == 0)
			spf_audit_finding(r, "no SPF record at %s", name);
		else if (n > 1)
			spf_audit_finding(r, "%zu SPF records at %s: permerror",
			    n, name);
	} else if (n != 1) {
		r->a.lookups_partial = true;
		spf_audit_finding(r, "%s SPF record at %s (included or "
		    "redirected to): permerror", n == 0 ? "no" : "more than "
		    "one", name);
	}
	if (n == 0)
		goto next;
	if (strlen(rec) != len || spf_rec_parse(rec, &parsed, err,
	    sizeof(err)) != 0) {
		r->a.lookups_partial = true;
		spf_audit_finding(r, "the SPF record at %s does not parse "
		    "(%s): permerror", name, strlen(rec) != len ?
		    "a NUL byte" : err);
		goto next;
	}
	spf_audit_terms(r, &parsed, top);
	spf_rec_free(&parsed);
next:
	spf_audit_next(r);
}

static void
spf_audit_check_cb(void *arg, enum spf_result res, const char *reason,
    const char *exp)
{
	struct spf_audit_req *r = arg;
	size_t i = r->icheck++;

	r->sr = NULL;
	r->eg[i].result = res;
	(void)snprintf(r->reasons[i], sizeof(r->reasons[i]), "%s", reason);
	r->eg[i].reason = r->reasons[i];
	spf_audit_next(r);
}

/* The conclusions, once the walk and the checks are done. */
static void
spf_audit_conclude(struct spf_audit_req *r)
{
	struct spf_audit *a = &r->a;
	char ip[INET6_ADDRSTRLEN];
	bool pass = true;
	size_t i;

	if (r->incdom[0] != '\0' && a->nrecords > 0 && !a->include_found)
		spf_audit_finding(r, "include:%s is missing%s", r->incdom,
		    a->lookups_partial ? " (or hidden by macros or "
		    "errors)" : "");
	if (a->lookups > SPF_MAX_LOOKUPS)
		spf_audit_finding(r, "too many DNS lookups (%d > %d): "
		    "permerror", a->lookups, SPF_MAX_LOOKUPS);
	if (a->all_pass)
		spf_audit_finding(r, "+all authorises the whole Internet");
	if (a->all_neutral)
		spf_audit_finding(r, "?all: senders not listed are neutral, "
		    "not refused");
	for (i = 0; i < a->negress; i++) {
		const struct sockaddr_storage *ss = &r->eg[i].addr;

		if (r->eg[i].result == SPF_PASS)
			continue;
		pass = false;
		if (r->eg[i].result == SPF_TEMPERROR)
			a->temperror = true;
		(void)inet_ntop(ss->ss_family, ss->ss_family == AF_INET ?
		    (const void *)&((const struct sockaddr_in *)
		    (const void *)ss)->sin_addr : (const void *)
		    &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr,
		    ip, sizeof(ip));
		spf_audit_finding(r, "%s: %s (%s)", ip,
		    spf_result_str(r->eg[i].result), r->eg[i].reason);
	}
	a->ok = pass && a->nrecords == 1 && !a->all_pass;
	a->record = r->record;
	event_active(r->ev, EV_TIMEOUT, 0);
}

/* The next step: walk the tree, then check each egress address. */
static void
spf_audit_next(struct spf_audit_req *r)
{
	char sender[DNS_NAME_MAX + 16];

	if (r->iwalk < r->nwalk) {
		r->q = dns_lookup_txt_flags(r->d, r->walk[r->iwalk],
		    DNS_F_ANYNAME, spf_audit_txt_cb, r);
		return;
	}
	if (r->icheck < r->a.negress) {
		(void)snprintf(sender, sizeof(sender), "postmaster@%s",
		    r->domain);
		r->sr = spf_check(r->d, (const struct sockaddr *)
		    &r->eg[r->icheck].addr, r->domain, sender, r->domain,
		    spf_audit_check_cb, r);
		return;
	}
	spf_audit_conclude(r);
}

static void
spf_audit_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct spf_audit_req *r = arg;

	r->cb(r->arg, &r->a);
	spf_audit_cancel(r);
}

struct spf_audit_req *
spf_audit(struct dns *d, const char *domain, const char *include_domain,
    const struct sockaddr_storage *egress, size_t negress,
    void (*cb)(void *arg, const struct spf_audit *a), void *arg)
{
	struct spf_audit_req *r;
	size_t i;

	if (cb == NULL || domain == NULL || (negress > 0 && egress == NULL))
		fatalx("spf_audit: bad arguments");
	if (negress > SPF_AUDIT_EGRESS)
		fatalx("spf_audit: %zu egress addresses", negress);
	r = xcalloc(1, sizeof(*r));
	r->d = d;
	r->cb = cb;
	r->arg = arg;
	r->ev = event_new(dns_base(d), -1, 0, spf_audit_deliver, r);
	if (r->ev == NULL)
		fatalx("spf_audit: event_new");
	(void)snprintf(r->domain, sizeof(r->domain), "%s", domain);
	(void)snprintf(r->incdom, sizeof(r->incdom), "%s",
	    include_domain != NULL ? include_domain : "");
	i = strlen(r->incdom);
	if (i > 0 && r->incdom[i - 1] == '.')
		r->incdom[i - 1] = '\0';
	for (i = 0; i < negress; i++) {
		r->eg[i].addr = egress[i];
		r->eg[i].result = SPF_NONE;
		r->eg[i].reason = "";
	}
	r->a.domain = r->domain;
	r->a.negress = negress;
	r->a.egress = r->eg;
	spf_audit_enqueue(r, r->domain);
	/* The first lookup answers from the loop, never from here. */
	spf_audit_next(r);
	return r;
}

void
spf_audit_cancel(struct spf_audit_req *r)
{
	size_t i;

	if (r == NULL)
		return;
	if (r->q != NULL)
		dns_cancel(r->q);
	if (r->sr != NULL)
		spf_cancel(r->sr);
	for (i = 0; i < r->nwalk; i++)
		free(r->walk[i]);
	free(r->record);
	if (r->ev != NULL)
		event_free(r->ev);
	free(r);
}

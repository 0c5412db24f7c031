/*
 * dmarc.c - DMARC (RFC 7489): record parsing, organizational domains,
 * alignment, evaluation, and policy discovery on the dns layer.
 *
 * What it does: dmarc_parse() reads a record as a tag list (";"-separated
 * tag=value pairs, WSP around both allowed, empty pairs and a trailing
 * ";" tolerated): v=DMARC1 (exactly that, case-sensitive) must be the
 * first tag; the known tags are checked against the section 6.4 grammar
 * and a known tag twice is an error; unknown tags are ignored (6.3).  A
 * missing or invalid p=, or an invalid sp=, makes the record invalid
 * unless rua= holds at least one valid URI: then it counts as p=none
 * (6.6.3 step 5).  Single invalid report URIs are dropped and counted.
 * dmarc_org_domain() asks libpsl (the system list, else the built-in one)
 * for the registrable domain.  dmarc_lookup() queries _dmarc.<domain>,
 * then _dmarc.<org domain> when the first has no DMARC record; several
 * DMARC records or an invalid one end the discovery with "none".
 *
 * Must never: read past a record's length or write past a buffer (every
 * count and length parsed is bounded); call the lookup callback
 * synchronously or after dmarc_cancel(); call a message aligned unless the
 * names (or their organizational domains) are equal byte for byte after
 * lowercasing and A-label conversion.
 */
#include "auth/dmarc.h"
#include "dns/dns.h"
#include "common/log.h"
#include "common/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <idn2.h>
#include <libpsl.h>
#include <sodium.h>

#define DMARC_NAME_IN_MAX	1024	/* bytes of a name as given (UTF-8) */
#define DMARC_LABEL_MAX		63
#define DMARC_RI_DEFAULT	86400
#define DMARC_SIZE_DIGITS	12	/* "!" size digits before the unit */

enum dmarc_tagid {
	DMARC_T_V, DMARC_T_P, DMARC_T_SP, DMARC_T_ADKIM, DMARC_T_ASPF,
	DMARC_T_PCT, DMARC_T_RUA, DMARC_T_RUF, DMARC_T_FO, DMARC_T_RF,
	DMARC_T_RI, DMARC_T_UNKNOWN,
};

static const char *const dmarc_tag_names[] = {
	"v", "p", "sp", "adkim", "aspf", "pct", "rua", "ruf", "fo", "rf",
	"ri",
};

/* What the tag loop remembers besides the record. */
struct dmarc_pstate {
	unsigned	seen;		/* 1 << enum dmarc_tagid */
	bool		p_bad;
	bool		sp_bad;
};

struct dmarc_req {
	struct dns		*d;
	struct dns_req		*q;
	dmarc_lookup_cb		 cb;
	void			*arg;
	bool			 badname;
	bool			 at_org;
	char			 from[DMARC_DOMAIN_MAX + 1];
	char			 org[DMARC_DOMAIN_MAX + 1];	/* "" if none
								   or = from */
	char			 qname[DMARC_DOMAIN_MAX + 8];
};

static const psl_ctx_t	*dmarc_psl_ctx;
static pthread_once_t	 dmarc_psl_once = PTHREAD_ONCE_INIT;

const char *
dmarc_policy_str(enum dmarc_policy p)
{
	switch (p) {
	case DMARC_POLICY_NONE:		return "none";
	case DMARC_POLICY_QUARANTINE:	return "quarantine";
	case DMARC_POLICY_REJECT:	return "reject";
	}
	return "?";
}

const char *
dmarc_result_str(enum dmarc_result r)
{
	switch (r) {
	case DMARC_RESULT_NONE:		return "none";
	case DMARC_RESULT_PASS:		return "pass";
	case DMARC_RESULT_FAIL:		return "fail";
	case DMARC_RESULT_TEMPERROR:	return "temperror";
	}
	return "?";
}

/* -- records (6.3, 6.4) ------------------------------------------------ */

static bool
dmarc_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool
dmarc_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
dmarc_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * The next sep-separated item of [*p, end) with WSP trimmed from both
 * ends (possibly empty).  false when nothing is left.
 */
static bool
dmarc_next(const char **p, const char *end, char sep, const char **item,
    size_t *ilen)
{
	const char *s = *p, *e;

	if (s >= end)
		return false;
	e = memchr(s, sep, (size_t)(end - s));
	if (e == NULL)
		e = end;
	*p = e < end ? e + 1 : end;
	while (s < e && dmarc_wsp(*s))
		s++;
	while (e > s && dmarc_wsp(e[-1]))
		e--;
	*item = s;
	*ilen = (size_t)(e - s);
	return true;
}

static bool
dmarc_word(const char *s, size_t n, const char *w)
{
	return strlen(w) == n && ascii_strncasecmp(s, w, n) == 0;
}

bool
dmarc_is_record(const char *txt, size_t len)
{
	size_t i = 0;

	if (txt == NULL)
		return false;
	while (i < len && dmarc_wsp(txt[i]))
		i++;
	if (i == len || (txt[i] != 'v' && txt[i] != 'V'))
		return false;
	for (i++; i < len && dmarc_wsp(txt[i]); i++)
		;
	if (i == len || txt[i] != '=')
		return false;
	for (i++; i < len && dmarc_wsp(txt[i]); i++)
		;
	if (len - i < 6 || memcmp(txt + i, "DMARC1", 6) != 0)
		return false;
	for (i += 6; i < len && dmarc_wsp(txt[i]); i++)
		;
	return i == len || txt[i] == ';';
}

static bool
dmarc_policy_word(const char *v, size_t n, enum dmarc_policy *out)
{
	if (dmarc_word(v, n, "none"))
		*out = DMARC_POLICY_NONE;
	else if (dmarc_word(v, n, "quarantine"))
		*out = DMARC_POLICY_QUARANTINE;
	else if (dmarc_word(v, n, "reject"))
		*out = DMARC_POLICY_REJECT;
	else
		return false;
	return true;
}

/* 1..maxdigits decimal digits; the value saturates at limit. */
static bool
dmarc_number(const char *v, size_t n, size_t maxdigits, uint64_t limit,
    uint64_t *out)
{
	uint64_t x = 0;
	size_t i;

	if (n == 0 || n > maxdigits)
		return false;
	for (i = 0; i < n; i++) {
		if (!dmarc_digit(v[i]))
			return false;
		x = x > (limit - (uint64_t)(v[i] - '0')) / 10 ? limit :
		    x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x;
	return true;
}

static bool
dmarc_hex(char c)
{
	return dmarc_digit(c) || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

/*
 * One dmarc-uri: an RFC 3986 URI ("," and "!" must be %-encoded in it)
 * and an optional "!" size with a k/m/g/t unit.
 */
static bool
dmarc_uri_parse(const char *s, size_t n, struct dmarc_uri *out)
{
	const char *bang = memchr(s, '!', n);
	size_t ulen = bang != NULL ? (size_t)(bang - s) : n, i, sn;
	uint64_t size = 0;
	unsigned shift = 0;

	if (ulen == 0 || ulen > DMARC_URI_MAX || !dmarc_alpha(s[0]))
		return false;
	for (i = 1; i < ulen && s[i] != ':'; i++)
		if (!dmarc_alpha(s[i]) && !dmarc_digit(s[i]) &&
		    strchr("+-.", s[i]) == NULL)
			return false;
	if (i + 1 >= ulen)		/* no ':' or nothing after it */
		return false;
	for (i++; i < ulen; i++) {
		if (s[i] == '%') {
			if (i + 2 >= ulen || !dmarc_hex(s[i + 1]) ||
			    !dmarc_hex(s[i + 2]))
				return false;
			i += 2;
		} else if (!dmarc_alpha(s[i]) && !dmarc_digit(s[i]) &&
		    strchr("-._~:/?#[]@$&'()*+=", s[i]) == NULL)
			return false;
	}
	if (bang != NULL) {
		sn = n - ulen - 1;
		if (sn > 0 && !dmarc_digit(bang[sn])) {
			switch (bang[sn] | 0x20) {
			case 'k': shift = 10; break;
			case 'm': shift = 20; break;
			case 'g': shift = 30; break;
			case 't': shift = 40; break;
			default: return false;
			}
			sn--;
		}
		if (!dmarc_number(bang + 1, sn, DMARC_SIZE_DIGITS, UINT64_MAX,
		    &size) || size == 0)
			return false;
		size <<= shift;
	}
	memcpy(out->uri, s, ulen);
	out->uri[ulen] = '\0';
	out->max_size = size;
	return true;
}

static void
dmarc_urilist(const char *v, size_t n, struct dmarc_uri *uris, size_t *nuri,
    size_t *dropped)
{
	const char *p = v, *item;
	size_t ilen;

	while (dmarc_next(&p, v + n, ',', &item, &ilen)) {
		if (*nuri < DMARC_MAX_URIS &&
		    dmarc_uri_parse(item, ilen, &uris[*nuri]))
			(*nuri)++;
		else
			(*dropped)++;
	}
}

/* fo=: "0", "1", "d", "s" separated by ":". */
static bool
dmarc_fo(const char *v, size_t n, unsigned *out)
{
	const char *p = v, *item;
	size_t ilen;
	unsigned fo = 0;

	while (dmarc_next(&p, v + n, ':', &item, &ilen)) {
		if (ilen != 1)
			return false;
		switch (item[0] | 0x20) {
		case '0': fo |= DMARC_FO_0; break;
		case '1': fo |= DMARC_FO_1; break;
		case 'd': fo |= DMARC_FO_D; break;
		case 's': fo |= DMARC_FO_S; break;
		default: return false;
		}
	}
	if (fo == 0)
		return false;
	*out = fo;
	return true;
}

/* rf=: RFC 5321 Keywords (Ldh-str) separated by ":"; only afrf known. */
static bool
dmarc_rf(const char *v, size_t n, bool *afrf)
{
	const char *p = v, *item;
	size_t ilen, i, count = 0;

	*afrf = false;
	while (dmarc_next(&p, v + n, ':', &item, &ilen)) {
		if (ilen == 0 || item[ilen - 1] == '-')
			return false;
		for (i = 0; i < ilen; i++)
			if (!dmarc_alpha(item[i]) && !dmarc_digit(item[i]) &&
			    (i == 0 || item[i] != '-'))
				return false;
		if (dmarc_word(item, ilen, "afrf"))
			*afrf = true;
		count++;
	}
	return count > 0;
}

static enum dmarc_tagid
dmarc_tag_id(const char *name, size_t n)
{
	size_t i;

	for (i = 0; i < nitems(dmarc_tag_names); i++)
		if (dmarc_word(name, n, dmarc_tag_names[i]))
			return (enum dmarc_tagid)i;
	return DMARC_T_UNKNOWN;
}

/* One tag=value.  0, or -1 with err set. */
static int
dmarc_tag(struct dmarc_record *rec, struct dmarc_pstate *st,
    const char *name, size_t nname, const char *v, size_t n, char *err,
    size_t errlen)
{
	enum dmarc_tagid id = dmarc_tag_id(name, nname);
	const char *why = NULL;
	uint64_t x;

	if (id == DMARC_T_UNKNOWN)
		return 0;
	if (st->seen & (1u << id)) {
		why = "appears twice";
		goto fail;
	}
	st->seen |= 1u << id;
	switch (id) {
	case DMARC_T_P:
		st->p_bad = !dmarc_policy_word(v, n, &rec->p);
		break;
	case DMARC_T_SP:
		st->sp_bad = !dmarc_policy_word(v, n, &rec->sp);
		rec->sp_set = !st->sp_bad;
		break;
	case DMARC_T_ADKIM:
	case DMARC_T_ASPF:
		if (n != 1 || ((v[0] | 0x20) != 'r' && (v[0] | 0x20) != 's')) {
			why = "must be r or s";
			goto fail;
		}
		*(id == DMARC_T_ADKIM ? &rec->adkim : &rec->aspf) =
		    (v[0] | 0x20) == 's' ? DMARC_ALIGN_STRICT :
		    DMARC_ALIGN_RELAXED;
		break;
	case DMARC_T_PCT:
		if (!dmarc_number(v, n, 3, 999, &x) || x > 100) {
			why = "must be a number from 0 to 100";
			goto fail;
		}
		rec->pct = (unsigned)x;
		break;
	case DMARC_T_RI:
		if (!dmarc_number(v, n, 32, UINT32_MAX, &x)) {
			why = "must be a number of seconds";
			goto fail;
		}
		rec->ri = (uint32_t)x;
		break;
	case DMARC_T_RUA:
		dmarc_urilist(v, n, rec->rua, &rec->nrua, &rec->rua_dropped);
		break;
	case DMARC_T_RUF:
		dmarc_urilist(v, n, rec->ruf, &rec->nruf, &rec->ruf_dropped);
		break;
	case DMARC_T_FO:
		if (!dmarc_fo(v, n, &rec->fo)) {
			why = "must be 0, 1, d or s separated by ':'";
			goto fail;
		}
		break;
	case DMARC_T_RF:
		if (!dmarc_rf(v, n, &rec->rf_afrf)) {
			why = "must be report formats separated by ':'";
			goto fail;
		}
		break;
	case DMARC_T_V:
	case DMARC_T_UNKNOWN:
		break;
	}
	return 0;
fail:
	(void)snprintf(err, errlen, "%s= %s", dmarc_tag_names[id], why);
	return -1;
}

int
dmarc_parse(const char *txt, size_t len, struct dmarc_record *out,
    char *err, size_t errlen)
{
	struct dmarc_pstate st = { 0 };
	const char *p, *item, *eq, *v;
	size_t ilen, i, nname, ntags = 0;

	memset(out, 0, sizeof(*out));
	out->pct = 100;
	out->ri = DMARC_RI_DEFAULT;
	out->fo = DMARC_FO_0;
	out->rf_afrf = true;
	if (txt == NULL || len > DMARC_RECORD_MAX) {
		(void)snprintf(err, errlen, "record longer than %d bytes",
		    DMARC_RECORD_MAX);
		goto fail;
	}
	for (i = 0; i < len; i++)
		if (txt[i] != '\t' && (txt[i] < 0x20 || txt[i] > 0x7e)) {
			(void)snprintf(err, errlen, "byte 0x%02x at %zu",
			    (unsigned char)txt[i], i);
			goto fail;
		}
	if (!dmarc_is_record(txt, len)) {
		(void)snprintf(err, errlen, "not a DMARC record "
		    "(v=DMARC1 must come first)");
		goto fail;
	}
	p = txt;
	while (dmarc_next(&p, txt + len, ';', &item, &ilen)) {
		if (ilen == 0)
			continue;
		if (++ntags > DMARC_MAX_TAGS) {
			(void)snprintf(err, errlen, "more than %d tags",
			    DMARC_MAX_TAGS);
			goto fail;
		}
		if ((eq = memchr(item, '=', ilen)) == NULL || eq == item ||
		    !dmarc_alpha(item[0])) {
			(void)snprintf(err, errlen, "not a tag=value: "
			    "\"%.*s\"", (int)(ilen > 40 ? 40 : ilen), item);
			goto fail;
		}
		for (nname = (size_t)(eq - item); dmarc_wsp(item[nname - 1]);
		    nname--)
			;
		for (i = 1; i < nname; i++)
			if (!dmarc_alpha(item[i]) && !dmarc_digit(item[i]) &&
			    item[i] != '_') {
				(void)snprintf(err, errlen, "bad tag name "
				    "\"%.*s\"", (int)(nname > 40 ? 40 : nname),
				    item);
				goto fail;
			}
		for (v = eq + 1; v < item + ilen && dmarc_wsp(*v); v++)
			;
		if (dmarc_tag(out, &st, item, nname, v,
		    (size_t)(item + ilen - v), err, errlen) == -1)
			goto fail;
	}
	if (!(st.seen & (1u << DMARC_T_P)) || st.p_bad || st.sp_bad) {
		if (out->nrua == 0) {
			(void)snprintf(err, errlen, "%s, and no valid rua=",
			    !(st.seen & (1u << DMARC_T_P)) ? "no p=" :
			    st.p_bad ? "invalid p=" : "invalid sp=");
			goto fail;
		}
		out->p = DMARC_POLICY_NONE;
		out->sp_set = false;
		out->p_fallback = true;
	}
	if (!out->sp_set)
		out->sp = out->p;
	return 0;
fail:
	return -1;
}

/* -- names and organizational domains (3.1, 3.2) ------------------------ */

static void
dmarc_psl_load(void)
{
	dmarc_psl_ctx = psl_latest(NULL);
	if (dmarc_psl_ctx == NULL)
		dmarc_psl_ctx = psl_builtin();
	if (dmarc_psl_ctx == NULL)
		log_warnx("dmarc: no Public Suffix List (package "
		    "publicsuffix): no organizational domains, relaxed "
		    "alignment works as strict");
}

static const psl_ctx_t *
dmarc_psl(void)
{
	if (pthread_once(&dmarc_psl_once, dmarc_psl_load) != 0)
		fatalx("dmarc: pthread_once");
	return dmarc_psl_ctx;
}

/*
 * An ASCII name: labels of 1..63 printable bytes (no '\\'), at most 253
 * bytes, written in lowercase to out.
 */
static bool
dmarc_ascii_name(const char *s, size_t n, char *out, size_t outlen)
{
	size_t i, lab = 0;

	if (n == 0 || n > DMARC_DOMAIN_MAX || n >= outlen)
		goto fail;
	for (i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (lab == 0)
				goto fail;
			lab = 0;
		} else if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '\\' ||
		    ++lab > DMARC_LABEL_MAX)
			goto fail;
		out[i] = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] | 0x20) :
		    s[i];
	}
	out[n] = '\0';
	if (lab == 0)
		goto fail;
	return true;
fail:
	if (outlen > 0)
		out[0] = '\0';
	return false;
}

/*
 * A name in lowercase without its trailing dot: in its own form (a_labels
 * false: UTF-8 stays UTF-8) or with every U-label as an A-label.  Names
 * with non-ASCII bytes must be valid IDNA2008 (UTS #46) names.
 */
static bool
dmarc_name_norm(const char *in, bool a_labels, char *out, size_t outlen)
{
	char tmp[DMARC_NAME_IN_MAX + 1], *alab = NULL, *ulab = NULL;
	size_t len, i;
	bool ok = false;

	if (in == NULL || (len = strnlen(in, DMARC_NAME_IN_MAX + 2)) >
	    DMARC_NAME_IN_MAX + 1)
		goto fail;
	if (len > 0 && in[len - 1] == '.')
		len--;
	for (i = 0; i < len && (unsigned char)in[i] < 0x80; i++)
		;
	if (i == len)
		return dmarc_ascii_name(in, len, out, outlen);
	if (len > DMARC_NAME_IN_MAX)
		goto fail;
	memcpy(tmp, in, len);
	tmp[len] = '\0';
	if (idn2_to_ascii_8z(tmp, &alab, IDN2_NFC_INPUT |
	    IDN2_NONTRANSITIONAL) != IDN2_OK || !dmarc_ascii_name(alab,
	    strlen(alab), out, outlen))
		goto fail;
	if (!a_labels && (psl_str_to_utf8lower(tmp, "utf-8", NULL, &ulab) !=
	    PSL_SUCCESS || !strlcpy_ok(out, ulab, outlen)))
		goto fail;
	ok = true;
fail:
	idn2_free(alab);
	psl_free_string(ulab);
	if (!ok && outlen > 0)
		out[0] = '\0';
	return ok;
}

int
dmarc_org_domain(const char *domain, char *out, size_t outlen)
{
	const psl_ctx_t *psl = dmarc_psl();
	char name[DMARC_NAME_IN_MAX + 1];
	const char *reg;

	if (outlen > 0)
		out[0] = '\0';
	if (psl == NULL || !dmarc_name_norm(domain, false, name,
	    sizeof(name)) || (reg = psl_registrable_domain(psl, name)) == NULL)
		goto fail;
	if (!strlcpy_ok(out, reg, outlen))
		goto fail;
	return 0;
fail:
	return -1;
}

bool
dmarc_aligned(const char *from_domain, const char *other_domain,
    enum dmarc_align mode)
{
	char a[DMARC_DOMAIN_MAX + 1], b[DMARC_DOMAIN_MAX + 1];
	char oa[DMARC_DOMAIN_MAX + 1], ob[DMARC_DOMAIN_MAX + 1];

	if (!dmarc_name_norm(from_domain, true, a, sizeof(a)) ||
	    !dmarc_name_norm(other_domain, true, b, sizeof(b)))
		return false;
	if (strcmp(a, b) == 0)
		return true;
	if (mode == DMARC_ALIGN_STRICT)
		return false;
	/* A public suffix has no organizational domain: only itself. */
	return dmarc_org_domain(a, oa, sizeof(oa)) == 0 &&
	    dmarc_org_domain(b, ob, sizeof(ob)) == 0 && strcmp(oa, ob) == 0;
}

/* -- evaluation (4.2, 6.6.2, 6.6.4) ------------------------------------ */

unsigned
dmarc_sample(void)
{
	if (sodium_init() < 0)
		fatalx("dmarc: sodium_init");
	return (unsigned)randombytes_uniform(100);
}

void
dmarc_evaluate(const char *from_domain,
    const struct dmarc_lookup_result *lr, const struct dmarc_auth *auth,
    unsigned sample, struct dmarc_verdict *out)
{
	const struct dmarc_record *rec = &lr->rec;
	size_t i;

	memset(out, 0, sizeof(*out));
	if (lr->status == DMARC_LOOKUP_TEMPERROR) {
		out->result = DMARC_RESULT_TEMPERROR;
		return;
	}
	if (lr->status != DMARC_LOOKUP_FOUND) {
		out->result = DMARC_RESULT_NONE;
		return;
	}
	out->spf_aligned = auth->spf == SPF_PASS &&
	    auth->spf_domain != NULL &&
	    dmarc_aligned(from_domain, auth->spf_domain, rec->aspf);
	for (i = 0; i < auth->ndkim && !out->dkim_aligned; i++)
		if (auth->dkim[i].status == DKIM_PASS &&
		    dmarc_aligned(from_domain, auth->dkim[i].domain,
		    rec->adkim)) {
			out->dkim_aligned = true;
			(void)strlcpy_ok(out->dkim_domain,
			    auth->dkim[i].domain, sizeof(out->dkim_domain));
		}
	/* sp= is for subdomains of the domain whose record it is (6.3):
	 * the record came from the organizational domain. */
	out->subdomain = lr->at_org;
	out->requested = lr->at_org ? rec->sp : rec->p;
	if (out->spf_aligned || out->dkim_aligned) {
		out->result = DMARC_RESULT_PASS;
		out->policy = DMARC_POLICY_NONE;
		return;
	}
	out->result = DMARC_RESULT_FAIL;
	out->policy = out->requested;
	/* Not selected by pct: the next milder policy (6.6.4). */
	if (out->policy != DMARC_POLICY_NONE && sample >= rec->pct) {
		out->sampled_out = true;
		out->policy = out->policy == DMARC_POLICY_REJECT ?
		    DMARC_POLICY_QUARANTINE : DMARC_POLICY_NONE;
	}
}

/* -- policy discovery (6.6.3) ------------------------------------------ */

static void dmarc_txt_cb(void *arg, const struct dns_txt_result *res);

static void
dmarc_query(struct dmarc_req *r, const char *domain)
{
	if (r->badname)
		r->qname[0] = '\0';	/* the dns layer answers "badname" */
	else
		(void)snprintf(r->qname, sizeof(r->qname), "_dmarc.%s",
		    domain);
	r->q = dns_lookup_txt(r->d, r->qname, dmarc_txt_cb, r);
}

struct dmarc_req *
dmarc_lookup(struct dns *d, const char *from_domain, dmarc_lookup_cb cb,
    void *arg)
{
	struct dmarc_req *r = xcalloc(1, sizeof(*r));

	r->d = d;
	r->cb = cb;
	r->arg = arg;
	if (!dmarc_name_norm(from_domain, true, r->from, sizeof(r->from)))
		r->badname = true;
	else if (dmarc_org_domain(r->from, r->org, sizeof(r->org)) == -1 ||
	    strcmp(r->org, r->from) == 0)
		r->org[0] = '\0';
	/* _dmarc.<from> too long to exist: as if it had no record. */
	if (!r->badname && strlen(r->from) + 7 > DMARC_DOMAIN_MAX) {
		if (r->org[0] != '\0')
			r->at_org = true;
		else
			r->badname = true;
	}
	dmarc_query(r, r->at_org ? r->org : r->from);
	return r;
}

void
dmarc_cancel(struct dmarc_req *r)
{
	if (r == NULL)
		return;
	if (r->q != NULL)
		dns_cancel(r->q);
	free(r);
}

static void
dmarc_txt_cb(void *arg, const struct dns_txt_result *res)
{
	struct dmarc_req *r = arg;
	struct dmarc_lookup_result lr;
	dmarc_lookup_cb cb = r->cb;
	void *cbarg = r->arg;
	const char *rec = NULL, *dom = r->at_org ? r->org : r->from;
	char err[200];
	size_t i, n = 0, rlen = 0;

	r->q = NULL;
	memset(&lr, 0, sizeof(lr));
	lr.status = DMARC_LOOKUP_NONE;
	lr.at_org = r->at_org;
	(void)strlcpy_ok(lr.domain, dom, sizeof(lr.domain));
	if (r->badname) {
		(void)snprintf(lr.reason, sizeof(lr.reason),
		    "the From domain is no valid domain name");
		goto done;
	}
	if (res->status == DNS_TEMPFAIL) {
		lr.status = DMARC_LOOKUP_TEMPERROR;
		(void)snprintf(lr.reason, sizeof(lr.reason),
		    "DNS failure for _dmarc.%s", dom);
		goto done;
	}
	if (res->status == DNS_OK)
		for (i = 0; i < res->ntxt; i++)
			if (strlen(res->txt[i]) == res->len[i] &&
			    dmarc_is_record(res->txt[i], res->len[i])) {
				rec = res->txt[i];
				rlen = res->len[i];
				n++;
			}
	if (n == 0 && !r->at_org && r->org[0] != '\0') {
		r->at_org = true;
		dmarc_query(r, r->org);
		return;
	}
	if (n == 0)
		(void)snprintf(lr.reason, sizeof(lr.reason),
		    "no DMARC record at _dmarc.%s", dom);
	else if (n > 1)
		(void)snprintf(lr.reason, sizeof(lr.reason),
		    "%zu DMARC records at _dmarc.%s", n, dom);
	else if (dmarc_parse(rec, rlen, &lr.rec, err, sizeof(err)) == -1)
		(void)snprintf(lr.reason, sizeof(lr.reason),
		    "invalid DMARC record at _dmarc.%s: %s", dom, err);
	else {
		lr.status = DMARC_LOOKUP_FOUND;
		(void)snprintf(lr.reason, sizeof(lr.reason),
		    "DMARC record at _dmarc.%s", dom);
	}
done:
	free(r);
	cb(cbarg, &lr);
}

/*
 * smtp_parse.c - parsers for SMTP command lines: the verb, the MAIL FROM
 * and RCPT TO paths with their ESMTP parameters, and the HELO/EHLO name
 * (RFC 5321, 1869, 1870, 6152, 3461, 6531, 4954).
 *
 * What it does: splits a command line into verb and argument; checks a
 * path character by character against the RFC 5321 grammar (with the
 * RFC 6531 UTF-8 extensions), bounds every field to the limits of
 * smtp_parse.h, and fills fixed-size output structures.  Errors are
 * static reply lines the session sends unchanged.
 *
 * What it must never do: read past the terminating NUL of its input,
 * write past a fixed-size field, accept a byte the rest of the gateway
 * could misread (controls, malformed UTF-8, a path the spool could not
 * represent), allocate memory, or perform I/O.
 */
#include "smtp/smtp_parse.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* Replies.  Static strings: the session sends them as they are. */
#define R_UNKNOWN_CMD	"500 5.5.2 Command not recognized"
#define R_BAD_CHAR	"500 5.5.2 Syntax error: NUL, CR or LF in command"
#define R_MAIL_SYNTAX	"501 5.5.4 Syntax: MAIL FROM:<address>"
#define R_RCPT_SYNTAX	"501 5.5.4 Syntax: RCPT TO:<address>"
#define R_BAD_SENDER	"501 5.1.7 Bad sender address syntax"
#define R_BAD_RCPT	"501 5.1.3 Bad recipient address syntax"
#define R_PATH_LONG	"501 5.5.4 Path too long"
#define R_NULL_RCPT	"553 5.1.3 Null recipient address not allowed"
#define R_SENDER_UTF8	"553 5.6.7 Non-ASCII sender address requires SMTPUTF8"
#define R_RCPT_UTF8	"553 5.6.7 Non-ASCII recipient address requires " \
			"SMTPUTF8"
#define R_PARAM_UNKNOWN	"555 5.5.4 Unsupported parameter"
#define R_PARAM_SYNTAX	"501 5.5.4 Bad parameter syntax"
#define R_PARAM_DUP	"501 5.5.4 Duplicate parameter"
#define R_BAD_SIZE	"501 5.5.4 Bad SIZE value"
#define R_BAD_BODY	"501 5.5.4 Bad BODY value (7BIT, 8BITMIME or " \
			"BINARYMIME)"
#define R_BAD_SMTPUTF8	"501 5.5.4 SMTPUTF8 takes no value"
#define R_BAD_RET	"501 5.5.4 Bad RET value (FULL or HDRS)"
#define R_BAD_ENVID	"501 5.5.4 Bad ENVID value"
#define R_BAD_AUTH	"501 5.5.4 Bad AUTH value"
#define R_BAD_NOTIFY	"501 5.5.4 Bad NOTIFY value"
#define R_BAD_ORCPT	"501 5.5.4 Bad ORCPT value"
#define R_HELO_EMPTY	"501 5.5.4 Syntax: HELO/EHLO hostname"
#define R_HELO_BAD	"501 5.5.4 Invalid HELO/EHLO hostname"
#define R_HELO_LONG	"501 5.5.4 HELO/EHLO hostname too long"

#define SMTP_LABEL_MAX	63	/* RFC 1035 2.3.4 */
#define SMTP_SIZE_DIGITS 20	/* RFC 1870: size-value ::= 1*20DIGIT */
#define SMTP_AUTH_MAX	SMTP_ORCPT_MAX	/* xtext-encoded mailbox, generous */

/* Outcome of scanning one syntactic element. */
enum smtp_perr {
	PERR_OK = 0,
	PERR_SYNTAX,
	PERR_LONG,
};

/* Value tables below rely on these orders. */
_Static_assert(SMTP_BODY_8BITMIME == SMTP_BODY_7BIT + 1 &&
    SMTP_BODY_BINARYMIME == SMTP_BODY_7BIT + 2, "smtp_body order");
_Static_assert(SMTP_RET_HDRS == SMTP_RET_FULL + 1, "smtp_ret order");
_Static_assert(SMTP_NOTIFY_NEVER == 1 && SMTP_NOTIFY_SUCCESS == 2 &&
    SMTP_NOTIFY_FAILURE == 4 && SMTP_NOTIFY_DELAY == 8, "notify bits");

/* Domain scanning options. */
#define DOM_UTF8	0x1	/* U-labels (RFC 6531) */
#define DOM_LITERAL	0x2	/* [IPv4] / [IPv6:...] */
#define DOM_UNDERSCORE	0x4	/* '_' in labels (HELO leniency) */

/* Verbs; MAIL and RCPT must go on with a keyword and a colon. */
static const struct {
	const char	*name;
	enum smtp_verb	 verb;
	const char	*prefix;	/* e.g. "FROM:", or NULL */
	const char	*syntax;	/* reply when the prefix is missing */
} smtp_verbs[] = {
	{ "HELO", SMTP_VERB_HELO, NULL, NULL },
	{ "EHLO", SMTP_VERB_EHLO, NULL, NULL },
	{ "MAIL", SMTP_VERB_MAIL, "FROM:", R_MAIL_SYNTAX },
	{ "RCPT", SMTP_VERB_RCPT, "TO:", R_RCPT_SYNTAX },
	{ "DATA", SMTP_VERB_DATA, NULL, NULL },
	{ "BDAT", SMTP_VERB_BDAT, NULL, NULL },
	{ "RSET", SMTP_VERB_RSET, NULL, NULL },
	{ "NOOP", SMTP_VERB_NOOP, NULL, NULL },
	{ "QUIT", SMTP_VERB_QUIT, NULL, NULL },
	{ "VRFY", SMTP_VERB_VRFY, NULL, NULL },
	{ "EXPN", SMTP_VERB_EXPN, NULL, NULL },
	{ "HELP", SMTP_VERB_HELP, NULL, NULL },
	{ "STARTTLS", SMTP_VERB_STARTTLS, NULL, NULL },
	{ "AUTH", SMTP_VERB_AUTH, NULL, NULL },
};

static bool
smtp_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
smtp_is_alnum(unsigned char c)
{
	return smtp_is_digit(c) || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z');
}

/* RFC 5322 atext, ASCII part */
static bool
smtp_is_atext(unsigned char c)
{
	return smtp_is_alnum(c) || (c != '\0' &&
	    strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static bool
smtp_is_hexupper(unsigned char c)
{
	return smtp_is_digit(c) || (c >= 'A' && c <= 'F');
}

/* Case-insensitive comparison of a counted token with a literal. */
static bool
smtp_tok_eq(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && ascii_strncasecmp(p, lit, n) == 0;
}

/* Index of the counted token in names (case-insensitive), or -1. */
static int
smtp_tok_index(const char *p, size_t n, const char *const *names,
    size_t nnames)
{
	size_t i;

	for (i = 0; i < nnames; i++)
		if (smtp_tok_eq(p, n, names[i]))
			return (int)i;
	return -1;
}

/*
 * Length of the well-formed UTF-8 sequence for one non-ASCII code point
 * at p (RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF), or 0.  C1 controls (U+0080..U+009F) are refused as well.
 * p is NUL-terminated: a NUL is never a continuation byte, so this never
 * reads past the end.
 */
static size_t
smtp_utf8_len(const unsigned char *p)
{
	unsigned char c = p[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		if (c == 0xc2 && p[1] < 0xa0)
			return 0;	/* C1 control */
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;	/* overlong */
		else if (c == 0xed)
			hi = 0x9f;	/* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;	/* overlong */
		else if (c == 0xf4)
			hi = 0x8f;	/* > U+10FFFF */
	} else
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

const char *
smtp_parse_command(const char *line, size_t len, struct smtp_cmd *out)
{
	const char *arg;
	size_t vlen, i, plen;

	out->verb = SMTP_VERB_UNKNOWN;
	out->arg = "";
	if (memchr(line, '\0', len) != NULL || memchr(line, '\r', len) !=
	    NULL || memchr(line, '\n', len) != NULL)
		return R_BAD_CHAR;
	for (vlen = 0; vlen < len && line[vlen] != ' '; vlen++)
		;
	for (i = 0; i < nitems(smtp_verbs); i++)
		if (smtp_tok_eq(line, vlen, smtp_verbs[i].name))
			break;
	if (i == nitems(smtp_verbs))
		return R_UNKNOWN_CMD;
	arg = line + vlen;
	while (*arg == ' ')
		arg++;
	if (smtp_verbs[i].prefix != NULL) {
		plen = strlen(smtp_verbs[i].prefix);
		if (ascii_strncasecmp(arg, smtp_verbs[i].prefix, plen) != 0)
			return smtp_verbs[i].syntax;
		arg += plen;
		while (*arg == ' ')	/* tolerated, as Postfix does */
			arg++;
	}
	out->verb = smtp_verbs[i].verb;
	out->arg = arg;
	return NULL;
}

/*
 * Address literal at s ('[' ... ']'): IPv4 dotted quad or "IPv6:" and an
 * IPv6 address, both checked with inet_pton().  General address literals
 * (other tags) are refused.
 */
static enum smtp_perr
smtp_scan_literal(const char *s, size_t *n)
{
	char tmp[INET6_ADDRSTRLEN + 1];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *p = s + 1, *end;
	int af = AF_INET;
	size_t len;

	if (ascii_strncasecmp(p, "IPv6:", 5) == 0) {
		af = AF_INET6;
		p += 5;
	}
	for (end = p; *end != ']' && *end != '\0'; end++)
		if ((size_t)(end - p) >= sizeof(tmp))
			return PERR_SYNTAX;
	len = (size_t)(end - p);
	if (*end != ']' || len == 0 || len >= sizeof(tmp))
		return PERR_SYNTAX;
	memcpy(tmp, p, len);
	tmp[len] = '\0';
	if (inet_pton(af, tmp, bin) != 1)
		return PERR_SYNTAX;
	*n = (size_t)(end + 1 - s);
	return PERR_OK;
}

/*
 * Domain at s: dot-separated labels of letters, digits and hyphens (no
 * hyphen first or last, at most 63 octets), or an address literal when
 * allowed.  Stops at the first octet that cannot continue the domain and
 * sets *n to the length; the caller checks what follows.  Non-ASCII
 * labels (when allowed) must be well-formed UTF-8 and set *utf8; their
 * octet length is bounded only by the whole domain.
 */
static enum smtp_perr
smtp_scan_domain(const char *s, unsigned flags, size_t *n, bool *utf8)
{
	const unsigned char *p = (const unsigned char *)s, *label;
	size_t k;
	bool ascii;

	if (*p == '[') {
		if ((flags & DOM_LITERAL) == 0)
			return PERR_SYNTAX;
		if (smtp_scan_literal(s, n) != PERR_OK)
			return PERR_SYNTAX;
		return *n > SMTP_DOMAIN_MAX ? PERR_LONG : PERR_OK;
	}
	for (;;) {
		label = p;
		ascii = true;
		for (;;) {
			if (*p >= 0x80) {
				if ((flags & DOM_UTF8) == 0 ||
				    (k = smtp_utf8_len(p)) == 0)
					return PERR_SYNTAX;
				*utf8 = true;
				ascii = false;
				p += k;
			} else if (smtp_is_alnum(*p) || *p == '-' ||
			    (*p == '_' && (flags & DOM_UNDERSCORE)))
				p++;
			else
				break;
			if ((size_t)(p - (const unsigned char *)s) >
			    SMTP_DOMAIN_MAX)
				return PERR_LONG;
		}
		if (p == label || label[0] == '-' || p[-1] == '-')
			return PERR_SYNTAX;
		if (ascii && (size_t)(p - label) > SMTP_LABEL_MAX)
			return PERR_SYNTAX;
		if (*p != '.')
			break;
		p++;
	}
	*n = (size_t)(p - (const unsigned char *)s);
	return PERR_OK;
}

/*
 * Local part at s: Dot-string or Quoted-string (RFC 5321 4.1.2), with
 * UTF-8 allowed in atext and qtext (RFC 6531 3.3).  *n is its length as
 * written, quotes and backslashes included.
 */
static enum smtp_perr
smtp_scan_local(const char *s, size_t *n, bool *utf8)
{
	const unsigned char *p = (const unsigned char *)s;
	bool need_atom = true;
	size_t k;

	if (*p == '"') {
		for (p++; *p != '"'; ) {
			if (*p == '\\') {
				if (p[1] < 32 || p[1] > 126)
					return PERR_SYNTAX;
				p += 2;
			} else if (*p >= 0x80) {
				if ((k = smtp_utf8_len(p)) == 0)
					return PERR_SYNTAX;
				*utf8 = true;
				p += k;
			} else if (*p < 32 || *p > 126)
				return PERR_SYNTAX;	/* also NUL */
			else
				p++;
		}
		p++;
	} else {
		for (;;) {
			if (*p == '.') {
				if (need_atom)
					return PERR_SYNTAX;
				need_atom = true;
				p++;
				continue;
			}
			if (*p >= 0x80) {
				if ((k = smtp_utf8_len(p)) == 0)
					return PERR_SYNTAX;
				*utf8 = true;
				p += k;
			} else if (smtp_is_atext(*p))
				p++;
			else
				break;
			need_atom = false;
		}
		if (need_atom)
			return PERR_SYNTAX;	/* empty, or ends with '.' */
	}
	*n = (size_t)(p - (const unsigned char *)s);
	return PERR_OK;
}

/*
 * Path at *pp: "<" [ A-d-l ":" ] Mailbox ">" or the null path "<>".
 * The source route is checked and discarded.  With postmaster (RCPT),
 * "<Postmaster>" without a domain is accepted (at == 0).  On success *pp
 * points after the '>'.
 */
static enum smtp_perr
smtp_parse_path(const char **pp, bool postmaster, struct smtp_path *path)
{
	const char *start = *pp, *p = start + 1, *local, *domain;
	size_t llen, dlen = 0;
	bool route = false;
	enum smtp_perr e;

	memset(path, 0, sizeof(*path));
	if (*start != '<')
		return PERR_SYNTAX;
	if (*p == '>') {
		*pp = p + 1;
		return PERR_OK;
	}
	while (*p == '@') {	/* A-d-l: At-domain *( "," At-domain ) ":" */
		route = true;
		p++;
		/* obsolete and discarded: ASCII only, so that utf8 describes
		 * exactly the address that is kept */
		if ((e = smtp_scan_domain(p, 0, &dlen, &path->utf8)) !=
		    PERR_OK)
			return e;
		p += dlen;
		if ((size_t)(p - start) > SMTP_PATH_MAX)
			return PERR_LONG;
		if (*p == ':') {
			p++;
			break;
		}
		if (*p != ',' || p[1] != '@')
			return PERR_SYNTAX;
		p++;
	}
	local = p;
	if ((e = smtp_scan_local(p, &llen, &path->utf8)) != PERR_OK)
		return e;
	p += llen;
	domain = p + 1;
	if (*p == '@') {
		e = smtp_scan_domain(domain, DOM_UTF8 | DOM_LITERAL, &dlen,
		    &path->utf8);
		if (e != PERR_OK)
			return e;
		p = domain + dlen;
	} else if (!postmaster || route ||
	    !smtp_tok_eq(local, llen, "Postmaster"))
		return PERR_SYNTAX;
	else
		dlen = 0;
	if (*p != '>')
		return PERR_SYNTAX;
	p++;
	if (llen > SMTP_LOCAL_MAX || (size_t)(p - start) > SMTP_PATH_MAX)
		return PERR_LONG;
	/* fits: llen + 1 + dlen < p - start <= SMTP_PATH_MAX */
	memcpy(path->addr, local, llen);
	if (dlen > 0) {
		path->addr[llen] = '@';
		memcpy(path->addr + llen + 1, domain, dlen);
		path->addr[llen + 1 + dlen] = '\0';
		path->at = llen;
	} else
		path->addr[llen] = '\0';
	*pp = p;
	return PERR_OK;
}

/*
 * RFC 3461 4: xtext = *( xchar / hexchar ), xchar = "!".."~" except '+'
 * and '=', hexchar = '+' and two upper-case hexadecimal digits.
 */
static bool
smtp_xtext_valid_n(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '+') {
			if (n - i < 3 || !smtp_is_hexupper(p[i + 1]) ||
			    !smtp_is_hexupper(p[i + 2]))
				return false;
			i += 2;
		} else if (p[i] < 33 || p[i] > 126 || p[i] == '=')
			return false;
	}
	return true;
}

bool
smtp_xtext_valid(const char *s)
{
	return smtp_xtext_valid_n(s, strlen(s));
}

/* One esmtp-param: keyword and optional value, both counted spans. */
struct smtp_param {
	const char	*kw;
	size_t		 kwlen;
	const char	*val;	/* NULL when no "=value" */
	size_t		 vlen;
};

/*
 * Next esmtp-param at *pp (RFC 5321 4.1.2): esmtp-keyword = (ALPHA /
 * DIGIT) *(ALPHA / DIGIT / "-"), esmtp-value = 1*(%d33-60 / %d62-126).
 * Parameters are separated by SP (runs and trailing SP tolerated).
 * Returns 1 with *prm filled, 0 at the end, -1 on a syntax error.
 */
static int
smtp_next_param(const char **pp, struct smtp_param *prm)
{
	const unsigned char *p = (const unsigned char *)*pp, *v;

	while (*p == ' ')
		p++;
	if (*p == '\0')
		return 0;
	prm->kw = (const char *)p;
	if (!smtp_is_alnum(*p))
		return -1;
	while (smtp_is_alnum(*p) || *p == '-')
		p++;
	prm->kwlen = (size_t)((const char *)p - prm->kw);
	prm->val = NULL;
	prm->vlen = 0;
	if (*p == '=') {
		v = ++p;
		while (*p >= 33 && *p <= 126 && *p != '=')
			p++;
		if (p == v)
			return -1;
		prm->val = (const char *)v;
		prm->vlen = (size_t)(p - v);
	}
	if (*p != ' ' && *p != '\0')
		return -1;
	*pp = (const char *)p;
	return 1;
}

/* Index of a parameter's value in names, or -1 (also when no value). */
static int
smtp_val_index(const struct smtp_param *prm, const char *const *names,
    size_t nnames)
{
	if (prm->val == NULL)
		return -1;
	return smtp_tok_index(prm->val, prm->vlen, names, nnames);
}

/* A known parameter: its name and what checks and stores its value. */
struct smtp_kw {
	const char	*name;
	const char	*(*fn)(const struct smtp_param *, void *);
};

/*
 * Parse the parameters in p against the table kw (each keyword at most
 * once); ctx is the parameter structure the handlers fill.
 */
static const char *
smtp_parse_params(const char *p, const struct smtp_kw *kw, size_t nkw,
    void *ctx)
{
	struct smtp_param prm;
	unsigned seen = 0;
	const char *err;
	size_t i;
	int r;

	while ((r = smtp_next_param(&p, &prm)) == 1) {
		for (i = 0; i < nkw; i++)
			if (smtp_tok_eq(prm.kw, prm.kwlen, kw[i].name))
				break;
		if (i == nkw)
			return R_PARAM_UNKNOWN;
		if (seen & (1u << i))
			return R_PARAM_DUP;
		seen |= 1u << i;
		if ((err = kw[i].fn(&prm, ctx)) != NULL)
			return err;
	}
	return r < 0 ? R_PARAM_SYNTAX : NULL;
}

/* RFC 1870: SIZE=1*20DIGIT; values beyond the range saturate, and are
 * then refused by the size check as too big. */
static const char *
smtp_param_size(const struct smtp_param *prm, void *ctx)
{
	struct smtp_mail_params *mp = ctx;
	unsigned long long v = 0;
	unsigned d;
	size_t i;

	if (prm->val == NULL || prm->vlen > SMTP_SIZE_DIGITS)
		return R_BAD_SIZE;
	for (i = 0; i < prm->vlen; i++) {
		if (!smtp_is_digit((unsigned char)prm->val[i]))
			return R_BAD_SIZE;
		d = (unsigned)(prm->val[i] - '0');
		if (v > (~0ULL - d) / 10)
			v = ~0ULL;
		else
			v = v * 10 + d;
	}
	mp->size = v;
	return NULL;
}

static const char *
smtp_param_body(const struct smtp_param *prm, void *ctx)
{
	static const char *const names[] = { "7BIT", "8BITMIME",
	    "BINARYMIME" };
	struct smtp_mail_params *mp = ctx;
	int i;

	if ((i = smtp_val_index(prm, names, nitems(names))) < 0)
		return R_BAD_BODY;
	mp->body = (enum smtp_body)(SMTP_BODY_7BIT + i);
	return NULL;
}

static const char *
smtp_param_smtputf8(const struct smtp_param *prm, void *ctx)
{
	struct smtp_mail_params *mp = ctx;

	if (prm->val != NULL)
		return R_BAD_SMTPUTF8;
	mp->smtputf8 = true;
	return NULL;
}

static const char *
smtp_param_ret(const struct smtp_param *prm, void *ctx)
{
	static const char *const names[] = { "FULL", "HDRS" };
	struct smtp_mail_params *mp = ctx;
	int i;

	if ((i = smtp_val_index(prm, names, nitems(names))) < 0)
		return R_BAD_RET;
	mp->ret = (enum smtp_ret)(SMTP_RET_FULL + i);
	return NULL;
}

static const char *
smtp_param_envid(const struct smtp_param *prm, void *ctx)
{
	struct smtp_mail_params *mp = ctx;

	if (prm->val == NULL || prm->vlen > SMTP_ENVID_MAX ||
	    !smtp_xtext_valid_n(prm->val, prm->vlen))
		return R_BAD_ENVID;
	memcpy(mp->envid, prm->val, prm->vlen);
	mp->envid[prm->vlen] = '\0';
	return NULL;
}

/* RFC 4954 5: AUTH=xtext or AUTH=<>; accepted but not trusted. */
static const char *
smtp_param_auth(const struct smtp_param *prm, void *ctx)
{
	struct smtp_mail_params *mp = ctx;

	if (prm->val == NULL || prm->vlen > SMTP_AUTH_MAX ||
	    (!smtp_tok_eq(prm->val, prm->vlen, "<>") &&
	    !smtp_xtext_valid_n(prm->val, prm->vlen)))
		return R_BAD_AUTH;
	mp->has_auth = true;
	return NULL;
}

/*
 * RFC 3461 4.1: NOTIFY=NEVER or a list of SUCCESS, FAILURE, DELAY.  The
 * names are in the order of the SMTP_NOTIFY_* bits.
 */
static const char *
smtp_param_notify(const struct smtp_param *prm, void *ctx)
{
	static const char *const names[] = { "NEVER", "SUCCESS", "FAILURE",
	    "DELAY" };
	struct smtp_rcpt_params *rp = ctx;
	const char *p, *end, *comma;
	unsigned bits = 0, bit;
	int i;

	if (prm->val == NULL)
		return R_BAD_NOTIFY;
	for (p = prm->val, end = prm->val + prm->vlen; ; p = comma + 1) {
		comma = memchr(p, ',', (size_t)(end - p));
		i = smtp_tok_index(p, (size_t)((comma ? comma : end) - p),
		    names, nitems(names));
		if (i < 0 || (bits & (bit = 1u << i)))
			return R_BAD_NOTIFY;
		bits |= bit;
		if (comma == NULL)
			break;
	}
	if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER)
		return R_BAD_NOTIFY;
	rp->notify = bits;
	return NULL;
}

/* RFC 3461 4.2: ORCPT=addr-type ";" xtext, addr-type an atom. */
static const char *
smtp_param_orcpt(const struct smtp_param *prm, void *ctx)
{
	struct smtp_rcpt_params *rp = ctx;
	const char *semi;
	size_t i, tlen;

	if (prm->val == NULL || prm->vlen > SMTP_ORCPT_MAX ||
	    (semi = memchr(prm->val, ';', prm->vlen)) == NULL)
		return R_BAD_ORCPT;
	tlen = (size_t)(semi - prm->val);
	if (tlen == 0 || tlen + 1 == prm->vlen)
		return R_BAD_ORCPT;
	for (i = 0; i < tlen; i++)
		if (!smtp_is_atext((unsigned char)prm->val[i]))
			return R_BAD_ORCPT;
	if (!smtp_xtext_valid_n(semi + 1, prm->vlen - tlen - 1))
		return R_BAD_ORCPT;
	memcpy(rp->orcpt, prm->val, prm->vlen);
	rp->orcpt[prm->vlen] = '\0';
	return NULL;
}

/* At most 32 entries per table (the duplicate check is a bit mask). */
static const struct smtp_kw smtp_mail_kw[] = {
	{ "SIZE", smtp_param_size },
	{ "BODY", smtp_param_body },
	{ "SMTPUTF8", smtp_param_smtputf8 },
	{ "RET", smtp_param_ret },
	{ "ENVID", smtp_param_envid },
	{ "AUTH", smtp_param_auth },
};

static const struct smtp_kw smtp_rcpt_kw[] = {
	{ "NOTIFY", smtp_param_notify },
	{ "ORCPT", smtp_param_orcpt },
};

const char *
smtp_parse_mail(const char *arg, struct smtp_path *path,
    struct smtp_mail_params *params)
{
	const char *p = arg, *err;

	memset(params, 0, sizeof(*params));
	switch (smtp_parse_path(&p, false, path)) {
	case PERR_OK:
		break;
	case PERR_LONG:
		return R_PATH_LONG;
	default:
		return R_BAD_SENDER;
	}
	if (*p != ' ' && *p != '\0')
		return R_BAD_SENDER;
	if ((err = smtp_parse_params(p, smtp_mail_kw, nitems(smtp_mail_kw),
	    params)) != NULL)
		return err;
	if (path->utf8 && !params->smtputf8)
		return R_SENDER_UTF8;
	return NULL;
}

const char *
smtp_parse_rcpt(const char *arg, bool smtputf8, struct smtp_path *path,
    struct smtp_rcpt_params *params)
{
	const char *p = arg, *err;

	memset(params, 0, sizeof(*params));
	switch (smtp_parse_path(&p, true, path)) {
	case PERR_OK:
		break;
	case PERR_LONG:
		return R_PATH_LONG;
	default:
		return R_BAD_RCPT;
	}
	if (path->addr[0] == '\0')
		return R_NULL_RCPT;
	if (*p != ' ' && *p != '\0')
		return R_BAD_RCPT;
	if ((err = smtp_parse_params(p, smtp_rcpt_kw, nitems(smtp_rcpt_kw),
	    params)) != NULL)
		return err;
	if (path->utf8 && !smtputf8)
		return R_RCPT_UTF8;
	return NULL;
}

const char *
smtp_parse_helo(const char *arg)
{
	size_t n;
	bool utf8 = false;

	if (*arg == '\0')
		return R_HELO_EMPTY;
	switch (smtp_scan_domain(arg, DOM_LITERAL | DOM_UNDERSCORE, &n,
	    &utf8)) {
	case PERR_OK:
		break;
	case PERR_LONG:
		return R_HELO_LONG;
	default:
		return R_HELO_BAD;
	}
	if (arg[n] != '\0')
		return R_HELO_BAD;
	return NULL;
}

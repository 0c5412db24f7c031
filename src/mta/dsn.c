/*
 * dsn.c - builds delivery status notifications: a multipart/report
 * (RFC 6522) with a human-readable part, a message/delivery-status part
 * (RFC 3464) and the original message or its headers (RFC 3461 RET).
 *
 * What it does: validates everything it is given, sanitises what remote
 * servers said (controls out, length bounded, folded), copies the
 * original line by line (CRLF everywhere, no line over 998 octets,
 * truncated at a line boundary), and picks a MIME boundary that it has
 * checked is absent from every part.
 *
 * What it must never do: answer the null reverse-path (no bounce for a
 * bounce); return more of the original than RET allows; let a byte from a
 * remote server or from the original become a bare CR, a bare LF, a new
 * header line or a MIME boundary; write a line longer than 998 octets.
 * On failure it leaves out exactly as it found it.
 */
#include "mta/dsn.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smtp/smtp_parse.h"

#define DSN_WIDTH	78	/* preferred line length (RFC 5322 2.1.1) */
#define DSN_LINE_MAX	998	/* hard line length, without CRLF */
#define DSN_DIAG_MAX	1024	/* bytes of a diagnostic we keep */
#define DSN_DIAG_SCAN	65536	/* bytes of a diagnostic we look at */
#define DSN_HOST_MAX	255	/* reporting and remote MTA names */
#define DSN_SEED_MAX	256	/* bytes of boundary_seed used */
#define DSN_ADDR_ENC_MAX 900	/* an encoded Final-Recipient address */
#define DSN_STATUS_MAX	16	/* "5.123.123" fits */
#define DSN_DATE_LEN	48	/* "Tue, 14 Nov 2023 22:13:20 +0000" */
#define DSN_MAX_TIME	INT64_C(253402300799) /* 9999-12-31 23:59:59 */
#define DSN_BOUNDARY_PREFIX "=_ombud_"
#define DSN_BOUNDARY_TAIL 8	/* hex digits of the collision counter */

enum dsn_kind { DSN_KIND_FAILURE, DSN_KIND_DELAY, DSN_KIND_SUCCESS };

/* What the copy of the original turned out to be. */
struct dsn_orig {
	bool	headers_only;
	bool	truncated;
	bool	eightbit;
	size_t	used;		/* bytes of the original that were copied */
};

static const char *const dsn_wday[] = {
	"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat",
};
static const char *const dsn_month[] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

/*
 * Decode one UTF-8 character from p[0..len).  Returns its length (1-4)
 * and sets *cp, or 0 for an invalid, overlong, surrogate or truncated
 * sequence.  Never reads past len or past a byte that is not a
 * continuation byte (so never past a NUL).
 */
static size_t
dsn_utf8_next(const unsigned char *p, size_t len, uint32_t *cp)
{
	uint32_t c, min;
	size_t n, i;

	if (len == 0)
		return 0;
	c = p[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		c &= 0x1f;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		c &= 0x0f;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		c &= 0x07;
		min = 0x10000;
	} else
		return 0;
	for (i = 1; i < n; i++) {
		if (i >= len || (p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

/*
 * Characters that a diagnostic or an address may not show as they are:
 * C0 and C1 controls, DEL, white space, and the Unicode line separators
 * and bidirectional controls that could make a line read differently
 * from what it says.  They all become a single space.
 */
static bool
dsn_is_blank(uint32_t cp)
{
	if (cp <= 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f))
		return true;
	if (cp == 0x200e || cp == 0x200f || cp == 0x2028 || cp == 0x2029)
		return true;
	if ((cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
		return true;
	return false;
}

/*
 * Append a sanitised copy of the hostile C string in (at most inmax
 * bytes of it are read) to out: blanks (see above) collapse into single
 * spaces and are trimmed at both ends; invalid UTF-8 becomes '?', and so
 * does any non-ASCII character unless utf8 is set.  At most outmax
 * (>= 8) bytes are appended; a longer text is cut at a character
 * boundary and ends with " ...".
 */
static void
dsn_sanitize(struct buf *out, const char *in, size_t inmax, size_t outmax,
    bool utf8)
{
	const unsigned char *p = (const unsigned char *)in;
	const char *rep;
	size_t i = 0, n, replen, added = 0;
	bool space = false;
	uint32_t cp;

	while (i < inmax && p[i] != '\0') {
		n = dsn_utf8_next(p + i, inmax - i, &cp);
		if (n == 0) {
			rep = "?";
			replen = 1;
			n = 1;
		} else if (dsn_is_blank(cp)) {
			space = added > 0;
			i += n;
			continue;
		} else if (cp >= 0x80 && !utf8) {
			rep = "?";
			replen = 1;
		} else {
			rep = (const char *)p + i;
			replen = n;
		}
		if (added + (space ? 1 : 0) + replen > outmax - 4) {
			buf_adds(out, " ...");
			return;
		}
		if (space) {
			buf_addc(out, ' ');
			added++;
			space = false;
		}
		buf_add(out, rep, replen);
		added += replen;
		i += n;
	}
}

/*
 * Append text[0..len) (sanitised: no controls, words separated by
 * spaces) as lines of at most DSN_WIDTH octets where the words allow, and
 * never more than DSN_LINE_MAX.  The first line starts with lead, the
 * others with cont (a single space makes them header continuation lines).
 * A word too long for any line is cut, at a UTF-8 character boundary.
 */
static void
dsn_wrap(struct buf *out, const char *lead, const char *cont,
    const char *text, size_t len)
{
	size_t i = 0, col, wl, take, k;
	bool empty = true;

	buf_adds(out, lead);
	col = strlen(lead);
	while (i < len) {
		if (text[i] == ' ') {
			i++;
			continue;
		}
		for (wl = 0; i + wl < len && text[i + wl] != ' '; wl++)
			;
		if (!empty && col + 1 + wl > DSN_WIDTH) {
			buf_adds(out, "\r\n");
			buf_adds(out, cont);
			col = strlen(cont);
		} else if (!empty) {
			buf_addc(out, ' ');
			col++;
		}
		while (col + wl > DSN_LINE_MAX) {
			take = DSN_LINE_MAX - col;
			for (k = take; k > 0 &&
			    ((unsigned char)text[i + k] & 0xc0) == 0x80; k--)
				;
			if (k > 0)
				take = k;
			buf_add(out, text + i, take);
			buf_adds(out, "\r\n");
			buf_adds(out, cont);
			col = strlen(cont);
			i += take;
			wl -= take;
		}
		buf_add(out, text + i, wl);
		col += wl;
		i += wl;
		empty = false;
	}
	buf_adds(out, "\r\n");
}

/*
 * Format t (unix seconds) as an RFC 5322 date-time in UTC.  Returns false
 * for a time outside 1970..9999, which RFC 5322 cannot (or we will not)
 * express.
 */
static bool
dsn_date(char *dst, size_t dstsz, int64_t t)
{
	struct tm tm;
	time_t tt;

	if (t < 0 || t > DSN_MAX_TIME)
		return false;
	tt = (time_t)t;
	if (gmtime_r(&tt, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 ||
	    tm.tm_mon < 0 || tm.tm_mon > 11)
		return false;
	snprintf(dst, dstsz, "%s, %d %s %04d %02d:%02d:%02d +0000",
	    dsn_wday[tm.tm_wday], tm.tm_mday, dsn_month[tm.tm_mon],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
	return true;
}

/* FNV-1a over the seed, the time and a tag, then a final mix so that the
 * tags give unrelated values: the same report gets the same names,
 * different reports (seeds) different ones. */
static uint64_t
dsn_hash(const char *seed, int64_t now, char tag)
{
	uint64_t h = UINT64_C(14695981039346656037);
	uint64_t t = (uint64_t)now;
	size_t i, n;

	n = seed != NULL ? strnlen(seed, DSN_SEED_MAX) : 0;
	for (i = 0; i < n; i++) {
		h ^= (unsigned char)seed[i];
		h *= UINT64_C(1099511628211);
	}
	for (i = 0; i < 8; i++) {
		h ^= (t >> (8 * i)) & 0xff;
		h *= UINT64_C(1099511628211);
	}
	h ^= (unsigned char)tag;
	h *= UINT64_C(1099511628211);
	h ^= h >> 33;
	h *= UINT64_C(0xff51afd7ed558ccd);
	h ^= h >> 33;
	return h;
}

/* A host name or address literal we can put after "dns;" and "@". */
static bool
dsn_host_ok(const char *s)
{
	size_t i, n;

	if (s == NULL)
		return false;
	n = strnlen(s, DSN_HOST_MAX + 1);
	if (n == 0 || n > DSN_HOST_MAX)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '-' ||
		    c == '_' || c == '[' || c == ']' || c == ':'))
			return false;
	}
	return true;
}

/*
 * A mailbox we can write as "<s>" in a header: at most max bytes, no
 * controls, no angle brackets, valid UTF-8 (RFC 6532 allows it).
 */
static bool
dsn_mailbox_ok(const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i, n, k;
	uint32_t cp;

	if (s == NULL)
		return false;
	n = strnlen(s, max + 1);
	if (n == 0 || n > max)
		return false;
	for (i = 0; i < n; i += k) {
		k = dsn_utf8_next(p + i, n - i, &cp);
		if (k == 0 || cp < 0x20 || cp == 0x7f || cp == '<' ||
		    cp == '>' || (cp >= 0x80 && cp <= 0x9f))
			return false;
	}
	return true;
}

/* Bounded xtext (ENVID=, and ORCPT= after its "type;"). */
static bool
dsn_xtext_ok(const char *s, size_t max)
{
	size_t n;

	if (s == NULL)
		return false;
	n = strnlen(s, max + 1);
	return n > 0 && n <= max && smtp_xtext_valid(s);
}

/* ORCPT: "addr-type;xtext" (RFC 3461 4.2), an atom before the ';'. */
static bool
dsn_orcpt_ok(const char *s)
{
	size_t i;

	if (!dsn_xtext_ok(s, SMTP_ORCPT_MAX))
		return false;
	for (i = 0; s[i] != ';'; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\0' || !((c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-'))
			return false;
	}
	return i > 0 && s[i + 1] != '\0';
}

/* RFC 3463 status: class "." 1*3digit "." 1*3digit, class 2, 4 or 5. */
static bool
dsn_status_ok(const char *s)
{
	size_t i = 2, d, part;

	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') ||
	    s[1] != '.')
		return false;
	for (part = 0; part < 2; part++) {
		for (d = 0; s[i] >= '0' && s[i] <= '9'; d++, i++)
			;
		if (d < 1 || d > 3)
			return false;
		if (part == 0 && s[i++] != '.')
			return false;
	}
	return s[i] == '\0';
}

/* Does the (sanitised) diagnostic look like an SMTP reply ("550 ...")? */
static bool
dsn_is_smtp_reply(const char *s, size_t len)
{
	return len >= 3 && s[0] >= '2' && s[0] <= '5' &&
	    s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9' &&
	    (len == 3 || s[3] == ' ' || s[3] == '-');
}

static const char *
dsn_default_status(enum dsn_action a)
{
	switch (a) {
	case DSN_FAILED:
		return "5.0.0";
	case DSN_DELAYED:
		return "4.0.0";
	case DSN_DELIVERED:
		break;
	}
	return "2.0.0";
}

static const char *
dsn_action_name(enum dsn_action a)
{
	switch (a) {
	case DSN_FAILED:
		return "failed";
	case DSN_DELAYED:
		return "delayed";
	case DSN_DELIVERED:
		break;
	}
	return "delivered";
}

/*
 * Final-Recipient (RFC 3464 2.3.2).  A printable ASCII address is
 * "rfc822;addr".  Anything else is "utf-8;" with the 7-bit
 * utf-8-addr-xtext of RFC 6533 3: non-ASCII characters and SP, '\',
 * '+', '=' as \x{HEX}; controls and invalid bytes, which no address may
 * hold, as \x{FFFD}.  The encoding is bounded by DSN_ADDR_ENC_MAX.
 */
static void
dsn_final_recipient(struct buf *out, const char *addr, size_t len)
{
	const unsigned char *p = (const unsigned char *)addr;
	size_t i, k, start;
	uint32_t cp;
	bool plain = true;

	for (i = 0; i < len; i++)
		if (p[i] < 0x20 || p[i] >= 0x7f)
			plain = false;
	if (plain) {
		buf_printf(out, "Final-Recipient: rfc822;%.*s\r\n",
		    (int)len, addr);
		return;
	}
	buf_adds(out, "Final-Recipient: utf-8;");
	start = out->len;
	for (i = 0; i < len && out->len - start < DSN_ADDR_ENC_MAX; i += k) {
		k = dsn_utf8_next(p + i, len - i, &cp);
		if (k == 0) {
			k = 1;
			cp = 0xfffd;
		} else if (cp < 0x20 || cp == 0x7f)
			cp = 0xfffd;
		if (cp > 0x20 && cp < 0x7f && cp != '\\' && cp != '+' &&
		    cp != '=')
			buf_addc(out, (char)cp);
		else
			buf_printf(out, "\\x{%02" PRIX32 "}", cp);
	}
	buf_adds(out, "\r\n");
}

/*
 * One line of content[pos..len): *ll is its length without terminator.
 * CRLF, a bare LF and a bare CR all end a line.  Returns the position
 * after the terminator.
 */
static size_t
dsn_line(const char *c, size_t len, size_t pos, size_t *ll)
{
	size_t i = pos;

	while (i < len && c[i] != '\r' && c[i] != '\n')
		i++;
	*ll = i - pos;
	if (i < len && c[i] == '\r') {
		i++;
		if (i < len && c[i] == '\n')
			i++;
	} else if (i < len)
		i++;
	return i;
}

/*
 * Append one line of the original with CRLF: NULs dropped, cut every
 * DSN_LINE_MAX octets (as a folded header line when fold is set).
 * Notes any 8-bit byte in *eightbit.
 */
static void
dsn_copy_line(struct buf *out, const char *p, size_t ll, bool fold,
    bool *eightbit)
{
	const char *z;
	size_t col = 0, n, i;

	while (ll > 0) {
		if (*p == '\0') {
			p++;
			ll--;
			continue;
		}
		if (col >= DSN_LINE_MAX) {
			buf_adds(out, fold ? "\r\n " : "\r\n");
			col = fold ? 1 : 0;
		}
		n = ll < DSN_LINE_MAX - col ? ll : DSN_LINE_MAX - col;
		if ((z = memchr(p, '\0', n)) != NULL)
			n = (size_t)(z - p);
		for (i = 0; i < n && !*eightbit; i++)
			if ((unsigned char)p[i] & 0x80)
				*eightbit = true;
		buf_add(out, p, n);
		col += n;
		p += n;
		ll -= n;
	}
	buf_adds(out, "\r\n");
}

/*
 * The body of the third part: the header section (headers_only) or the
 * whole original, line by line, stopping before the first line that
 * would take the copy past max bytes of the original.
 */
static void
dsn_original(struct buf *out, const char *content, size_t len,
    size_t max, struct dsn_orig *o)
{
	size_t pos = 0, next, ll;
	bool in_headers = true;

	while (pos < len) {
		next = dsn_line(content, len, pos, &ll);
		if (o->headers_only && ll == 0)
			break;
		if (next > max) {
			o->truncated = true;
			break;
		}
		dsn_copy_line(out, content + pos, ll, in_headers,
		    &o->eightbit);
		if (ll == 0)
			in_headers = false;
		pos = next;
	}
	o->used = pos;
}

/* Sanitised diagnostic of r into d (ASCII only or UTF-8). */
static void
dsn_diagnostic(struct buf *d, const struct dsn_rcpt *r, bool utf8)
{
	buf_reset(d);
	if (r->diagnostic != NULL)
		dsn_sanitize(d, r->diagnostic, DSN_DIAG_SCAN, DSN_DIAG_MAX,
		    utf8);
}

/* Part 1: text/plain for people. */
static void
dsn_human(struct buf *out, const struct dsn_rcpt *r, size_t n,
    const struct dsn_info *info, enum dsn_kind kind, size_t content_len,
    const struct dsn_orig *o)
{
	struct buf body, t;
	size_t i;
	bool eightbit = false;
	const char *what;

	buf_init(&body);
	buf_init(&t);

	buf_printf(&t, "This is the mail system at host %s.",
	    info->reporting_mta);
	dsn_wrap(&body, "", "", t.data, t.len);
	buf_adds(&body, "\r\n");
	switch (kind) {
	case DSN_KIND_FAILURE:
		what = "Your message could not be delivered to one or more "
		    "of its recipients. The details are below.";
		break;
	case DSN_KIND_DELAY:
		what = "Your message has not been delivered yet to one or "
		    "more of its recipients. Delivery will be retried; you "
		    "do not need to send it again.";
		break;
	default:
		what = "Your message was delivered to the recipients listed "
		    "below.";
		break;
	}
	dsn_wrap(&body, "", "", what, strlen(what));

	for (i = 0; i < n; i++) {
		buf_adds(&body, "\r\n");
		buf_reset(&t);
		buf_addc(&t, '<');
		dsn_sanitize(&t, r[i].addr, SMTP_PATH_MAX, SMTP_PATH_MAX + 8,
		    true);
		buf_printf(&t, ">: %s",
		    r[i].action == DSN_FAILED ? "delivery failed" :
		    r[i].action == DSN_DELAYED ? "delivery delayed, will retry" :
		    "delivered");
		if (dsn_status_ok(r[i].status))
			buf_printf(&t, " (%s)", r[i].status);
		dsn_wrap(&body, "", "    ", t.data, t.len);
		if (dsn_host_ok(r[i].remote_mta)) {
			buf_reset(&t);
			buf_printf(&t, "Remote server: %s", r[i].remote_mta);
			dsn_wrap(&body, "    ", "        ", t.data, t.len);
		}
		dsn_diagnostic(&t, &r[i], true);
		if (t.len > 0)
			dsn_wrap(&body, dsn_is_smtp_reply(t.data, t.len) ?
			    "    Reply: " : "    Reason: ", "        ", t.data,
			    t.len);
	}

	buf_adds(&body, "\r\n");
	buf_reset(&t);
	buf_adds(&t, o->headers_only ? "The headers of your message are "
	    "attached." : "Your message is attached.");
	if (o->truncated)
		buf_printf(&t, " The attached copy was cut to its first %zu "
		    "of %zu bytes.", o->used, content_len);
	dsn_wrap(&body, "", "", t.data, t.len);

	for (i = 0; i < body.len && !eightbit; i++)
		if ((unsigned char)body.data[i] & 0x80)
			eightbit = true;
	buf_adds(out, "Content-Type: text/plain; charset=utf-8\r\n");
	buf_adds(out, "Content-Description: Notification\r\n");
	buf_printf(out, "Content-Transfer-Encoding: %s\r\n\r\n",
	    eightbit ? "8bit" : "7bit");
	buf_add(out, body.data, body.len);

	buf_free(&body);
	buf_free(&t);
}

/* Part 2: message/delivery-status (RFC 3464 2.2, 2.3).  7-bit only. */
static void
dsn_status_part(struct buf *out, const struct envelope *e,
    const struct dsn_rcpt *r, size_t n, const struct dsn_info *info)
{
	char date[DSN_DATE_LEN];
	struct buf d;
	size_t i;

	buf_init(&d);
	buf_adds(out, "Content-Type: message/delivery-status\r\n");
	buf_adds(out, "Content-Description: Delivery report\r\n\r\n");

	buf_printf(out, "Reporting-MTA: dns; %s\r\n", info->reporting_mta);
	if (dsn_xtext_ok(e->envid, SMTP_ENVID_MAX))
		buf_printf(out, "Original-Envelope-Id: %s\r\n", e->envid);
	if (info->arrival > 0 && dsn_date(date, sizeof(date), info->arrival))
		buf_printf(out, "Arrival-Date: %s\r\n", date);

	for (i = 0; i < n; i++) {
		buf_adds(out, "\r\n");
		if (dsn_orcpt_ok(r[i].orcpt))
			buf_printf(out, "Original-Recipient: %s\r\n",
			    r[i].orcpt);
		dsn_final_recipient(out, r[i].addr, strlen(r[i].addr));
		buf_printf(out, "Action: %s\r\n",
		    dsn_action_name(r[i].action));
		buf_printf(out, "Status: %s\r\n",
		    dsn_status_ok(r[i].status) ? r[i].status :
		    dsn_default_status(r[i].action));
		if (dsn_host_ok(r[i].remote_mta))
			buf_printf(out, "Remote-MTA: dns;%s\r\n",
			    r[i].remote_mta);
		dsn_diagnostic(&d, &r[i], false);
		if (d.len > 0)
			dsn_wrap(out, dsn_is_smtp_reply(d.data, d.len) ?
			    "Diagnostic-Code: smtp; " :
			    "Diagnostic-Code: X-ombud; ", " ", d.data, d.len);
		if (r[i].last_attempt > 0 &&
		    dsn_date(date, sizeof(date), r[i].last_attempt))
			buf_printf(out, "Last-Attempt-Date: %s\r\n", date);
	}
	buf_free(&d);
}

/* Count occurrences of pat in b, and mark the collision counters that
 * follow them in seen[0..nseen) when seen is not NULL. */
static size_t
dsn_boundary_scan(const struct buf *b, const char *pat, size_t patlen,
    unsigned char *seen, size_t nseen)
{
	const char *p = b->data, *end = b->data + b->len, *q;
	size_t count = 0, v, k;

	if (b->len == 0)
		return 0;
	while ((q = memmem(p, (size_t)(end - p), pat, patlen)) != NULL) {
		count++;
		p = q + patlen;
		if (seen == NULL || (size_t)(end - p) < DSN_BOUNDARY_TAIL)
			continue;
		for (v = 0, k = 0; k < DSN_BOUNDARY_TAIL; k++) {
			char c = p[k];
			if (c >= '0' && c <= '9')
				v = v * 16 + (size_t)(c - '0');
			else if (c >= 'a' && c <= 'f')
				v = v * 16 + (size_t)(c - 'a' + 10);
			else
				break;
		}
		if (k == DSN_BOUNDARY_TAIL && v < nseen)
			seen[v] = 1;
	}
	return count;
}

/*
 * The boundary: a prefix derived from the seed and the time, then an
 * 8-digit counter.  Every part is scanned for the prefix; with m
 * occurrences at most m counters are taken, so one of 0..m is free and a
 * boundary absent from all parts is found in linear time whatever the
 * original holds.
 */
static void
dsn_boundary(char *dst, size_t dstsz, const struct dsn_info *info,
    const struct buf *parts, size_t nparts)
{
	char pat[64];
	unsigned char *seen;
	size_t patlen, m = 0, i, k;

	snprintf(pat, sizeof(pat), DSN_BOUNDARY_PREFIX "%016" PRIx64 "_",
	    dsn_hash(info->boundary_seed, info->now, 'b'));
	patlen = strlen(pat);
	for (i = 0; i < nparts; i++)
		m += dsn_boundary_scan(&parts[i], pat, patlen, NULL, 0);
	seen = xcalloc(m + 1, 1);
	for (i = 0; i < nparts; i++)
		dsn_boundary_scan(&parts[i], pat, patlen, seen, m + 1);
	for (k = 0; k < m && seen[k]; k++)
		;
	free(seen);
	snprintf(dst, dstsz, "%s%08zx", pat, k);
}

/* Inputs that dsn_build cannot turn into a safe report. */
static bool
dsn_inputs_ok(const struct envelope *e, const struct dsn_rcpt *r, size_t n,
    const struct dsn_info *info, struct buf *out)
{
	size_t i, len;

	if (e == NULL || info == NULL || out == NULL || r == NULL || n == 0)
		return false;
	len = strnlen(e->mail_from, sizeof(e->mail_from));
	if (len == sizeof(e->mail_from) || len == 0 ||
	    strcmp(e->mail_from, "<>") == 0)
		return false;			/* null reverse-path */
	if (!dsn_mailbox_ok(e->mail_from, SMTP_PATH_MAX) ||
	    !dsn_mailbox_ok(info->postmaster, SMTP_PATH_MAX) ||
	    !dsn_host_ok(info->reporting_mta) ||
	    info->now <= 0 || info->now > DSN_MAX_TIME)
		return false;
	for (i = 0; i < n; i++) {
		if (r[i].addr == NULL)
			return false;
		len = strnlen(r[i].addr, SMTP_PATH_MAX + 1);
		if (len == 0 || len > SMTP_PATH_MAX)
			return false;
		if (r[i].action != DSN_FAILED && r[i].action != DSN_DELAYED &&
		    r[i].action != DSN_DELIVERED)
			return false;
	}
	return true;
}

int
dsn_build(const struct envelope *e, const char *content,
    size_t content_len, const struct dsn_rcpt *r, size_t n,
    const struct dsn_info *info, size_t max_original, struct buf *out)
{
	struct buf part[3];
	struct dsn_orig o;
	char date[DSN_DATE_LEN], boundary[96];
	enum dsn_kind kind = DSN_KIND_SUCCESS;
	const char *subject;
	size_t i;
	bool eightbit;

	for (i = 0; i < nitems(part); i++)
		buf_init(&part[i]);
	if (!dsn_inputs_ok(e, r, n, info, out) ||
	    !dsn_date(date, sizeof(date), info->now))
		goto fail;
	if (content == NULL)
		content_len = 0;

	for (i = 0; i < n; i++) {
		if (r[i].action == DSN_FAILED)
			kind = DSN_KIND_FAILURE;
		else if (r[i].action == DSN_DELAYED &&
		    kind == DSN_KIND_SUCCESS)
			kind = DSN_KIND_DELAY;
	}
	switch (kind) {
	case DSN_KIND_FAILURE:
		subject = "Undelivered Mail Returned to Sender";
		break;
	case DSN_KIND_DELAY:
		subject = "Delayed Mail (still being retried)";
		break;
	default:
		subject = "Successful Mail Delivery Report";
		break;
	}

	/* RFC 3461 4.3: without a failure, only the headers go back. */
	memset(&o, 0, sizeof(o));
	o.headers_only = e->ret == SMTP_RET_HDRS || kind != DSN_KIND_FAILURE;
	dsn_original(&part[2], content, content_len, max_original, &o);

	dsn_human(&part[0], r, n, info, kind, content_len, &o);
	dsn_status_part(&part[1], e, r, n, info);
	dsn_boundary(boundary, sizeof(boundary), info, part, nitems(part));

	eightbit = o.eightbit;
	for (i = 0; i < part[0].len && !eightbit; i++)
		if ((unsigned char)part[0].data[i] & 0x80)
			eightbit = true;

	buf_printf(out, "From: \"Mail Delivery System\" <%s>\r\n",
	    info->postmaster);
	buf_printf(out, "To: <%s>\r\n", e->mail_from);
	buf_printf(out, "Subject: %s\r\n", subject);
	buf_printf(out, "Date: %s\r\n", date);
	buf_printf(out, "Message-ID: <%" PRId64 ".%016" PRIx64 ".dsn@%s>\r\n",
	    info->now, dsn_hash(info->boundary_seed, info->now, 'm'),
	    info->reporting_mta);
	buf_adds(out, "MIME-Version: 1.0\r\n");
	buf_adds(out, "Auto-Submitted: auto-replied\r\n");
	buf_printf(out, "Content-Type: multipart/report; "
	    "report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n", boundary);
	if (eightbit)
		buf_adds(out, "Content-Transfer-Encoding: 8bit\r\n");
	buf_adds(out, "\r\nThis is a MIME-encapsulated message.\r\n");

	buf_printf(out, "\r\n--%s\r\n", boundary);
	buf_add(out, part[0].data, part[0].len);
	buf_printf(out, "\r\n--%s\r\n", boundary);
	buf_add(out, part[1].data, part[1].len);
	buf_printf(out, "\r\n--%s\r\n", boundary);
	buf_printf(out, "Content-Type: %s\r\n", o.headers_only ?
	    "text/rfc822-headers" : "message/rfc822");
	buf_printf(out, "Content-Description: %s\r\n", o.headers_only ?
	    "Headers of the original message" : "The original message");
	buf_printf(out, "Content-Transfer-Encoding: %s\r\n\r\n",
	    o.eightbit ? "8bit" : "7bit");
	buf_add(out, part[2].data, part[2].len);
	buf_printf(out, "\r\n--%s--\r\n", boundary);

	for (i = 0; i < nitems(part); i++)
		buf_free(&part[i]);
	return 0;
fail:
	for (i = 0; i < nitems(part); i++)
		buf_free(&part[i]);
	return -1;
}

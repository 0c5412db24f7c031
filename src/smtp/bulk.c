/*
 * bulk.c - origination fields and bulk-sender rules (see bulk.h).
 *
 * One pass over the header section splits it into fields (a field is a
 * name, optional blanks, ':' and its value, continued by lines that
 * start with a blank); the section ends at the empty line, at the first
 * line that is not a field, or at the end of the message.  The fields
 * that matter are unfolded into a bounded buffer and parsed by small
 * recursive-descent parsers that know RFC 5322's CFWS (blanks and nested
 * comments).  What to reject is decided after the pass, in a fixed order,
 * so the reply does not depend on the order of the fields.
 *
 * Must never: read past a length; recurse on input (comments nest by
 * counting, bounded); keep a pointer into the message past a call.
 */
#include "smtp/bulk.h"
#include "common/log.h"

#include <stdio.h>
#include <string.h>

#define BULK_COMMENT_DEPTH	32

enum bulk_single {
	F_DATE, F_FROM, F_SENDER, F_REPLY_TO, F_TO, F_CC, F_BCC, F_MSGID,
	F_IN_REPLY_TO, F_REFERENCES, F_SUBJECT, F_NSINGLE
};

/* RFC 5322 3.6: the fields a message has at most one of. */
static const char *const bulk_single_names[F_NSINGLE] = {
	"Date", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Message-ID",
	"In-Reply-To", "References", "Subject",
};

struct bulk_fld {
	size_t		 start, end;	/* the whole field, line ends too */
	const char	*name;
	size_t		 namelen;
	size_t		 vstart, vend;	/* the value, without the last EOL */
};

static char
bulk_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool
bulk_alpha(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool
bulk_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool
bulk_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* s[0..n) equals the NUL-terminated name, ignoring ASCII case. */
static bool
bulk_is(const char *s, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n && name[i] != '\0'; i++)
		if (bulk_lower(s[i]) != bulk_lower(name[i]))
			return false;
	return i == n && name[i] == '\0';
}

/*
 * Skip CFWS from v[*i]: blanks, folds and comments (nested up to
 * BULK_COMMENT_DEPTH, quoted-pairs inside).  False when a comment does
 * not end or nests too deep.
 */
static bool
bulk_cfws(const char *v, size_t n, size_t *i)
{
	size_t depth = 0;

	while (*i < n) {
		char c = v[*i];

		if (c == '(') {
			if (++depth > BULK_COMMENT_DEPTH)
				return false;
		} else if (depth == 0) {
			if (!bulk_wsp(c) && c != '\r' && c != '\n')
				return true;
		} else if (c == '\\') {
			if (*i + 1 >= n)
				break;
			(*i)++;
		} else if (c == ')')
			depth--;
		(*i)++;
	}
	return depth == 0;
}

/* CFWS that must be there (FWS in the grammar): false if none. */
static bool
bulk_sep(const char *v, size_t n, size_t *i)
{
	size_t at = *i;

	return bulk_cfws(v, n, i) && *i > at;
}

/* min..max digits at v[*i] into *out. */
static bool
bulk_num(const char *v, size_t n, size_t *i, size_t min, size_t max,
    long *out)
{
	size_t k = 0;

	*out = 0;
	while (*i < n && bulk_digit(v[*i]) && k < max) {
		*out = *out * 10 + (v[*i] - '0');
		(*i)++;
		k++;
	}
	return k >= min && (*i >= n || !bulk_digit(v[*i]));
}

/* A name of the table at v[*i] (the whole run of letters). */
static int
bulk_word(const char *v, size_t n, size_t *i, const char *const *tab,
    int ntab)
{
	size_t k = *i;

	while (k < n && bulk_alpha(v[k]))
		k++;
	for (int t = 0; t < ntab; t++)
		if (bulk_is(v + *i, k - *i, tab[t])) {
			*i = k;
			return t;
		}
	return -1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static long
bulk_days(long y, long m, long d)
{
	long era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool
bulk_zone(const char *v, size_t n, size_t *i)
{
	/* obs-zone (RFC 5322 4.3); military letters but J */
	static const char *const names[] = { "UT", "GMT", "EST", "EDT",
	    "CST", "CDT", "MST", "MDT", "PST", "PDT" };
	long z;

	if (*i < n && (v[*i] == '+' || v[*i] == '-')) {
		(*i)++;
		return bulk_num(v, n, i, 4, 4, &z) && z % 100 < 60;
	}
	if (bulk_word(v, n, i, names, (int)nitems(names)) >= 0)
		return true;
	if (*i < n && bulk_alpha(v[*i]) && bulk_lower(v[*i]) != 'j' &&
	    (*i + 1 >= n || !bulk_alpha(v[*i + 1]))) {
		(*i)++;
		return true;
	}
	return false;
}

bool
bulk_date_ok(const char *v, size_t n)
{
	static const char *const wdays[] = { "Thu", "Fri", "Sat", "Sun",
	    "Mon", "Tue", "Wed" };	/* from 1970-01-01, a Thursday */
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr",
	    "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31,
	    30, 31 };
	long day, year, hh, mm, ss = 0;
	size_t i = 0, ydigits;
	int wday = -1, mon;

	if (!bulk_cfws(v, n, &i))
		goto fail;
	if (i < n && bulk_alpha(v[i])) {
		if ((wday = bulk_word(v, n, &i, wdays, 7)) < 0 ||
		    !bulk_cfws(v, n, &i) || i >= n || v[i] != ',')
			goto fail;
		i++;
		if (!bulk_cfws(v, n, &i))
			goto fail;
	}
	if (!bulk_num(v, n, &i, 1, 2, &day) || !bulk_sep(v, n, &i) ||
	    (mon = bulk_word(v, n, &i, months, 12)) < 0 ||
	    !bulk_sep(v, n, &i))
		goto fail;
	ydigits = i;
	if (!bulk_num(v, n, &i, 2, 9, &year))
		goto fail;
	ydigits = i - ydigits;
	if (ydigits == 2)	/* obs-year, RFC 5322 4.3 */
		year += year < 50 ? 2000 : 1900;
	else if (ydigits == 3)
		year += 1900;
	if (!bulk_sep(v, n, &i) || !bulk_num(v, n, &i, 2, 2, &hh) ||
	    !bulk_cfws(v, n, &i) || i >= n || v[i++] != ':' ||
	    !bulk_cfws(v, n, &i) || !bulk_num(v, n, &i, 2, 2, &mm))
		goto fail;
	{
		size_t k = i;

		if (!bulk_cfws(v, n, &k))
			goto fail;
		if (k < n && v[k] == ':') {
			i = k + 1;
			if (!bulk_cfws(v, n, &i) ||
			    !bulk_num(v, n, &i, 2, 2, &ss))
				goto fail;
		}
	}
	if (!bulk_sep(v, n, &i) || !bulk_zone(v, n, &i) ||
	    !bulk_cfws(v, n, &i) || i != n)
		goto fail;
	/* RFC 5322 3.3: the values must make a date */
	if (year < 1900 || day < 1 || day > mdays[mon] || hh > 23 ||
	    mm > 59 || ss > 60)
		goto fail;
	if (mon == 1 && day == 29 &&
	    !(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
		goto fail;
	if (wday >= 0 && (bulk_days(year, mon + 1, day) % 7 + 7) % 7 != wday)
		goto fail;
	return true;
fail:
	return false;
}

/* RFC 5322 3.2.3 atext, with RFC 6532's UTF-8. */
static bool
bulk_atext(char c)
{
	return bulk_alpha(c) || bulk_digit(c) || (unsigned char)c >= 0x80 ||
	    (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static bool
bulk_dot_atom(const char *v, size_t n, size_t *i)
{
	for (;;) {
		size_t at = *i;

		while (*i < n && bulk_atext(v[*i]))
			(*i)++;
		if (*i == at)
			return false;
		if (*i >= n || v[*i] != '.')
			return true;
		(*i)++;
	}
}

/*
 * From the opening '"' or '[' at v[*i] past its closing one: a quoted
 * string (a backslash quotes the next byte) or a literal of dtext (RFC
 * 5322 3.4.1).  No line ends in either.
 */
static bool
bulk_enclosed(const char *v, size_t n, size_t *i, char close)
{
	for ((*i)++; *i < n && v[*i] != close; (*i)++) {
		unsigned char c = (unsigned char)v[*i];

		if (close == '"' && c == '\\') {
			(*i)++;
			continue;
		}
		if (c == '\r' || c == '\n' || (close == ']' && (c <= ' ' ||
		    c == '[' || c == '\\' || c == 0x7f)))
			return false;
	}
	if (*i >= n)
		return false;
	(*i)++;
	return true;
}

bool
bulk_msgid_ok(const char *v, size_t n)
{
	size_t i = 0;

	if (!bulk_cfws(v, n, &i) || i >= n || v[i++] != '<')
		goto fail;
	/* id-left: dot-atom-text, or obs-id-left's quoted local-part */
	if (i < n && v[i] == '"' ? !bulk_enclosed(v, n, &i, '"') :
	    !bulk_dot_atom(v, n, &i))
		goto fail;
	if (i >= n || v[i++] != '@')
		goto fail;
	/* id-right: dot-atom-text or no-fold-literal */
	if (i < n && v[i] == '[' ? !bulk_enclosed(v, n, &i, ']') :
	    !bulk_dot_atom(v, n, &i))
		goto fail;
	if (i >= n || v[i++] != '>' || !bulk_cfws(v, n, &i) || i != n)
		goto fail;
	return true;
fail:
	return false;
}

/* The scheme of uri[0..n) (blanks already dropped). */
static int
bulk_uri_kind(const char *uri, size_t n)
{
	if (n > 8 && bulk_is(uri, 8, "https://"))
		return BULK_URI_HTTPS;
	if (n > 7 && bulk_is(uri, 7, "mailto:"))
		return BULK_URI_MAILTO;
	return BULK_URI_OTHER;
}

int
bulk_unsub_uris(const char *v, size_t n)
{
	char uri[BULK_FIELD_MAX];
	size_t i = 0, nuris = 0;
	int flags = 0;

	for (;;) {
		size_t ul = 0;

		if (!bulk_cfws(v, n, &i) || i >= n || v[i++] != '<')
			goto fail;
		/* RFC 2369 2: blanks inside the brackets are ignored */
		for (; i < n && v[i] != '>'; i++) {
			unsigned char c = (unsigned char)v[i];

			if (bulk_wsp(v[i]) || c == '\r' || c == '\n')
				continue;
			if (c < 0x21 || c >= 0x7f || c == '<' ||
			    ul >= sizeof(uri))
				goto fail;
			uri[ul++] = v[i];
		}
		if (i >= n || ul == 0 || ++nuris > BULK_URIS_MAX)
			goto fail;
		i++;
		flags |= bulk_uri_kind(uri, ul);
		if (!bulk_cfws(v, n, &i))
			goto fail;
		if (i == n)
			break;
		if (v[i++] != ',')
			goto fail;
	}
	return flags;
fail:
	return -1;
}

/*
 * The field at *pos, or false at the end of the header section (*pos is
 * then at its empty line, at a line that is no field, or at len).
 */
static bool
bulk_next_field(const char *msg, size_t len, size_t *pos,
    struct bulk_fld *f)
{
	size_t i = *pos, k;

	if (i >= len || msg[i] == '\n' || bulk_wsp(msg[i]) ||
	    (msg[i] == '\r' && i + 1 < len && msg[i + 1] == '\n'))
		return false;
	for (k = i; k < len && (unsigned char)msg[k] > ' ' &&
	    (unsigned char)msg[k] < 0x7f && msg[k] != ':'; k++)
		;
	f->name = msg + i;
	f->namelen = k - i;
	while (k < len && bulk_wsp(msg[k]))
		k++;
	if (f->namelen == 0 || k >= len || msg[k] != ':')
		return false;
	f->start = i;
	f->vstart = k + 1;
	for (;;) {
		const char *nl = memchr(msg + k, '\n', len - k);

		if (nl == NULL) {
			f->vend = f->end = len;
			break;
		}
		k = (size_t)(nl - msg) + 1;
		f->vend = k - 1;
		f->end = k;
		if (k >= len || !bulk_wsp(msg[k]))
			break;
	}
	if (f->vend > f->vstart && msg[f->vend - 1] == '\r' && f->vend < len)
		f->vend--;
	*pos = f->end;
	return true;
}

/* The value unfolded (line ends dropped) into out; false if too long. */
static bool
bulk_unfold(const char *msg, const struct bulk_fld *f, char *out,
    size_t *outlen)
{
	size_t o = 0;

	for (size_t i = f->vstart; i < f->vend; i++) {
		if (msg[i] == '\r' || msg[i] == '\n')
			continue;
		if (o >= BULK_FIELD_MAX)
			return false;
		out[o++] = msg[i];
	}
	*outlen = o;
	return true;
}

/* "Precedence: bulk" or "list" (a word, comments around it ignored),
 * or NULL. */
static const char *
bulk_precedence(const char *v, size_t n)
{
	static const char *const words[] = { "bulk", "list" };
	static const char *const why[] = { "Precedence: bulk",
	    "Precedence: list" };
	size_t i = 0;
	int w;

	if (!bulk_cfws(v, n, &i) ||
	    (w = bulk_word(v, n, &i, words, 2)) < 0 ||
	    !bulk_cfws(v, n, &i) || i != n)
		return NULL;
	return why[w];
}

/* X-Ombud-Bulk: 1 yes, 0 no, -1 anything else. */
static int
bulk_xbulk(const char *v, size_t n)
{
	while (n > 0 && bulk_wsp(v[n - 1]))
		n--;
	while (n > 0 && bulk_wsp(*v))
		v++, n--;
	if (bulk_is(v, n, "yes"))
		return 1;
	if (bulk_is(v, n, "no"))
		return 0;
	return -1;
}

int
bulk_check(const char *msg, size_t len, bool unsub_warn,
    struct bulk_check *bc)
{
	char val[BULK_FIELD_MAX];
	unsigned count[F_NSINGLE] = { 0 };
	const char *toolong = NULL, *why = NULL;
	bool date_bad = false, msgid_bad = false, xbulk_bad = false;
	bool post = false, removes_over = false;
	int dup = -1, uris = 0;
	struct bulk_fld f;
	size_t pos = 0, vl;

	memset(bc, 0, sizeof(*bc));
	while (bulk_next_field(msg, len, &pos, &f)) {
		int single = -1;

		for (int s = 0; s < F_NSINGLE; s++)
			if (bulk_is(f.name, f.namelen, bulk_single_names[s]))
				single = s;
		if (single >= 0 && ++count[single] == 2 && dup < 0)
			dup = single;
		if (single != F_DATE && single != F_MSGID &&
		    !bulk_is(f.name, f.namelen, "Precedence") &&
		    !bulk_is(f.name, f.namelen, "X-Ombud-Bulk") &&
		    !bulk_is(f.name, f.namelen, "List-Unsubscribe")) {
			if (bulk_is(f.name, f.namelen,
			    "List-Unsubscribe-Post"))
				post = true;
			continue;
		}
		if (!bulk_unfold(msg, &f, val, &vl)) {
			if (toolong == NULL)
				toolong = single >= 0 ?
				    bulk_single_names[single] :
				    "List-Unsubscribe, Precedence or "
				    "X-Ombud-Bulk";
			continue;
		}
		if (single == F_DATE)
			date_bad |= !bulk_date_ok(val, vl);
		else if (single == F_MSGID)
			msgid_bad |= !bulk_msgid_ok(val, vl);
		else if (bulk_is(f.name, f.namelen, "Precedence")) {
			const char *p = bulk_precedence(val, vl);

			if (p != NULL) {
				bc->bulk = true;
				why = p;
			}
		} else if (bulk_is(f.name, f.namelen, "X-Ombud-Bulk")) {
			int x = bulk_xbulk(val, vl);

			xbulk_bad |= x < 0;
			if (x == 1) {
				bc->bulk = true;
				why = why ? why : "X-Ombud-Bulk: yes";
			}
			if (bc->nremove >= BULK_REMOVE_MAX) {
				removes_over = true;
				continue;
			}
			bc->remove[bc->nremove].off = f.start;
			bc->remove[bc->nremove].len = f.end - f.start;
			bc->nremove++;
		} else {
			int u = bulk_unsub_uris(val, vl);

			if (u > 0)
				uris |= u;
		}
	}
	bc->add_separator = pos >= len;
	bc->add_date = count[F_DATE] == 0;
	bc->add_msgid = count[F_MSGID] == 0;
	if (toolong != NULL)
		snprintf(bc->reply, sizeof(bc->reply), "550 5.6.0 The %s header "
		    "field is longer than %d bytes", toolong, BULK_FIELD_MAX);
	else if (dup >= 0)
		snprintf(bc->reply, sizeof(bc->reply), "550 5.6.0 The message "
		    "has more than one %s header field (RFC 5322 3.6 allows "
		    "one)", bulk_single_names[dup]);
	else if (date_bad)
		snprintf(bc->reply, sizeof(bc->reply), "550 5.6.0 The Date "
		    "header field is not a valid RFC 5322 date-time (e.g. "
		    "Mon, 2 Sep 2024 10:00:00 +0200)");
	else if (msgid_bad)
		snprintf(bc->reply, sizeof(bc->reply), "550 5.6.0 The "
		    "Message-ID header field is not a valid RFC 5322 msg-id "
		    "(<left@right>)");
	else if (xbulk_bad || removes_over)
		snprintf(bc->reply, sizeof(bc->reply), "550 5.6.0 "
		    "X-Ombud-Bulk must be yes or no, at most %d times",
		    BULK_REMOVE_MAX);
	if (bc->reply[0] != '\0')
		return -1;
	if (bc->bulk && !(uris & (BULK_URI_HTTPS | BULK_URI_MAILTO))) {
		snprintf(unsub_warn ? bc->warning : bc->reply,
		    sizeof(bc->reply), "550 5.7.1 Bulk mail (%s) must have "
		    "a List-Unsubscribe header field with an https: or mailto: "
		    "URI in angle brackets: Gmail and Yahoo bulk-sender "
		    "requirement (RFC 2369, RFC 8058)", why);
		if (!unsub_warn)
			return -1;
	}
	bc->add_unsub_post = bc->bulk && (uris & BULK_URI_HTTPS) && !post;
	return 0;
}

bool
bulk_changes(const struct bulk_check *bc)
{
	return bc->add_date || bc->add_msgid || bc->add_unsub_post ||
	    bc->add_separator || bc->nremove > 0;
}

void
bulk_added_fields(const struct bulk_check *bc, const char *unique,
    const char *hostname, time_t now, struct buf *out)
{
	char date[64], stamp[32];
	struct tm tm;

	gmtime_r(&now, &tm);
	if (bc->add_date) {
		strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000",
		    &tm);
		buf_printf(out, "Date: %s\r\n", date);
	}
	if (bc->add_msgid) {
		strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
		buf_printf(out, "Message-ID: <%s.%s@%s>\r\n", stamp, unique,
		    hostname);
	}
	if (bc->add_unsub_post)
		buf_adds(out, "List-Unsubscribe-Post: "
		    "List-Unsubscribe=One-Click\r\n");
}

void
bulk_copy_message(const struct bulk_check *bc, const char *msg, size_t len,
    struct buf *out)
{
	size_t at = 0;

	/* the spans are in message order and do not overlap */
	for (size_t r = 0; r < bc->nremove; r++) {
		const struct bulk_span *sp = &bc->remove[r];

		if (sp->off < at || sp->off + sp->len > len)
			fatalx("bulk_copy_message: spans out of order");
		buf_add(out, msg + at, sp->off - at);
		at = sp->off + sp->len;
	}
	buf_add(out, msg + at, len - at);
	if (bc->add_separator) {
		if (len > 0 && msg[len - 1] != '\n')
			buf_adds(out, "\r\n");
		buf_adds(out, "\r\n");
	}
}

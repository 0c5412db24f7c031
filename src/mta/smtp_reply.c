/*
 * smtp_reply.c - what a remote SMTP server says, parsed: replies (RFC 5321
 * 4.2), one line at a time, with the enhanced status code of RFC 3463
 * taken from the first line, and the EHLO keywords (RFC 5321 4.1.1.1,
 * 1869, 1870, 2920, 3207, 3461, 4954, 6152, 6531, 3030) the delivery
 * client acts on.
 *
 * A reply is "NNN-text" continuation lines ended by one "NNN text" or
 * "NNN" line; every line carries the same code, 200..599.  Kept text has
 * the code (and the enhanced code, when a line starts with one of the
 * right class) removed, lines joined by '\n', and every other control
 * character replaced by '?', so a reply can go into a log or a bounce as
 * is.
 *
 * Must never: read beyond len, accept more than SMTP_REPLY_LINE_MAX bytes
 * per line or SMTP_REPLY_LINES_MAX lines, keep more than
 * SMTP_REPLY_TEXT_MAX bytes of text, let a control character other than
 * the '\n' separators into the text, or return DONE with a code outside
 * 200..599.  Pure: no I/O, no allocation.
 */
#include "mta/smtp_reply.h"

#include <string.h>

#include "common/util.h"

void
smtp_reply_init(struct smtp_reply_parser *p)
{
	memset(p, 0, sizeof(*p));
}

static bool
smtp_reply_isdigit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * An enhanced status code "C.S.D" at s[0..len) whose class is cls: C one
 * digit, S and D 1..3 digits, followed by SP or the end.  Returns its
 * length (without the SP), or 0.
 */
static size_t
smtp_reply_enhanced(const char *s, size_t len, char cls)
{
	size_t i = 0;

	if (len < 5 || s[0] != cls || s[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;

		while (i < len && smtp_reply_isdigit(s[i]) && i - start < 3)
			i++;
		if (i == start)
			return 0;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && s[i] != ' ')
		return 0;
	return i;
}

/* Append one line's text to r->text, replacing control characters. */
static void
smtp_reply_add_text(struct smtp_reply *r, const char *s, size_t len)
{
	size_t have = strlen(r->text);

	if (r->nlines > 0) {
		if (have >= SMTP_REPLY_TEXT_MAX)
			return;
		r->text[have++] = '\n';
	}
	for (size_t i = 0; i < len && have < SMTP_REPLY_TEXT_MAX; i++) {
		unsigned char ch = (unsigned char)s[i];

		r->text[have++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	r->text[have] = '\0';
}

enum smtp_reply_rc
smtp_reply_line(struct smtp_reply_parser *p, const char *line, size_t len)
{
	struct smtp_reply *r = &p->r;
	const char *text;
	size_t tlen, elen;
	bool last;
	int code;

	if (!p->started) {
		memset(r, 0, sizeof(*r));
		p->started = true;
	}
	if (len + 2 > SMTP_REPLY_LINE_MAX || r->nlines >= SMTP_REPLY_LINES_MAX)
		goto fail;
	if (len < 3 || line[0] < '2' || line[0] > '5' ||
	    !smtp_reply_isdigit(line[1]) || !smtp_reply_isdigit(line[2]))
		goto fail;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (len == 3)
		last = true;
	else if (line[3] == ' ')
		last = true;
	else if (line[3] == '-')
		last = false;
	else
		goto fail;
	if (r->nlines > 0 && code != r->code)
		goto fail;
	r->code = code;
	text = len > 4 ? line + 4 : "";
	tlen = len > 4 ? len - 4 : 0;
	/* RFC 2034: every line may carry the enhanced code; the first
	 * line's is the reply's. */
	if ((elen = smtp_reply_enhanced(text, tlen, line[0])) != 0) {
		if (r->nlines == 0) {
			memcpy(r->enhanced, text, elen);
			r->enhanced[elen] = '\0';
		}
		text += elen;
		tlen -= elen;
		if (tlen > 0) {		/* the SP after the code */
			text++;
			tlen--;
		}
	}
	smtp_reply_add_text(r, text, tlen);
	r->nlines++;
	if (!last)
		return SMTP_REPLY_MORE;
	p->started = false;	/* the next line starts a new reply */
	return SMTP_REPLY_DONE;
fail:
	p->started = false;
	return SMTP_REPLY_ERROR;
}

int
smtp_reply_class(const struct smtp_reply *r)
{
	if (r->enhanced[0] >= '2' && r->enhanced[0] <= '5')
		return r->enhanced[0] - '0';
	return r->code / 100;
}

/* One word of s[0..len) starting at *pos (skipping spaces); its length. */
static size_t
smtp_ehlo_word(const char *s, size_t len, size_t *pos, const char **word)
{
	size_t i = *pos, start;

	while (i < len && s[i] == ' ')
		i++;
	start = i;
	while (i < len && s[i] != ' ')
		i++;
	*word = s + start;
	*pos = i;
	return i - start;
}

static bool
smtp_ehlo_is(const char *w, size_t wl, const char *kw)
{
	return wl == strlen(kw) && ascii_strncasecmp(w, kw, wl) == 0;
}

/* SIZE's optional argument; 0 when absent, malformed or too large. */
static uint64_t
smtp_ehlo_size(const char *w, size_t wl)
{
	uint64_t n = 0;

	if (wl == 0 || wl > 19)
		return 0;
	for (size_t i = 0; i < wl; i++) {
		if (!smtp_reply_isdigit(w[i]))
			return 0;
		n = n * 10 + (uint64_t)(w[i] - '0');
	}
	return n;
}

/* The mechanisms after "AUTH" or "AUTH=", space separated. */
static unsigned
smtp_ehlo_auth(const char *s, size_t len)
{
	unsigned mechs = 0;
	size_t pos = 0, wl;
	const char *w;

	while ((wl = smtp_ehlo_word(s, len, &pos, &w)) > 0) {
		if (smtp_ehlo_is(w, wl, "PLAIN"))
			mechs |= EHLO_AUTH_PLAIN;
		else if (smtp_ehlo_is(w, wl, "LOGIN"))
			mechs |= EHLO_AUTH_LOGIN;
		else if (smtp_ehlo_is(w, wl, "XOAUTH2"))
			mechs |= EHLO_AUTH_XOAUTH2;
	}
	return mechs;
}

static void
smtp_ehlo_keyword(const char *s, size_t len, struct smtp_ehlo *out)
{
	static const struct {
		const char	*kw;
		unsigned	 bit;
	} simple[] = {
		{ "PIPELINING", EHLO_PIPELINING },
		{ "8BITMIME", EHLO_8BITMIME },
		{ "STARTTLS", EHLO_STARTTLS },
		{ "ENHANCEDSTATUSCODES", EHLO_ENHANCED },
		{ "DSN", EHLO_DSN },
		{ "SMTPUTF8", EHLO_SMTPUTF8 },
		{ "CHUNKING", EHLO_CHUNKING },
	};
	size_t pos = 0, wl, al;
	const char *w, *a;

	/* the old form "AUTH=PLAIN LOGIN" (before RFC 2554 was final) */
	if (len > 5 && ascii_strncasecmp(s, "AUTH=", 5) == 0) {
		out->ext |= EHLO_AUTH;
		out->auth |= smtp_ehlo_auth(s + 5, len - 5);
		return;
	}
	if ((wl = smtp_ehlo_word(s, len, &pos, &w)) == 0)
		return;
	if (smtp_ehlo_is(w, wl, "AUTH")) {
		out->ext |= EHLO_AUTH;
		out->auth |= smtp_ehlo_auth(s + pos, len - pos);
		return;
	}
	if (smtp_ehlo_is(w, wl, "SIZE")) {
		out->ext |= EHLO_SIZE;
		al = smtp_ehlo_word(s, len, &pos, &a);
		out->size = smtp_ehlo_size(a, al);
		return;
	}
	for (size_t i = 0; i < nitems(simple); i++) {
		if (smtp_ehlo_is(w, wl, simple[i].kw)) {
			out->ext |= simple[i].bit;
			return;
		}
	}
}

void
smtp_ehlo_parse(const struct smtp_reply *r, struct smtp_ehlo *out)
{
	const char *nl;

	memset(out, 0, sizeof(*out));
	if (r->code != 250)
		return;
	/* the first line is the server's name and greeting */
	nl = strchr(r->text, '\n');
	while (nl != NULL) {
		const char *line = nl + 1;

		nl = strchr(line, '\n');
		smtp_ehlo_keyword(line, nl ? (size_t)(nl - line) :
		    strlen(line), out);
	}
}

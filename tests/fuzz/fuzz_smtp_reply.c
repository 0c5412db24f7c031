/*
 * fuzz_smtp_reply.c - libFuzzer target for the reply parser: the input is
 * split at CRLF (a bare LF also ends a line, as the client tolerates) and
 * fed line by line into smtp_reply_line(); every complete 250 reply also
 * goes through smtp_ehlo_parse().  Beyond memory safety it checks what
 * smtp_reply.h promises, and abort()s otherwise:
 *  - DONE: code 200..599, the first line's code; 1..LINES_MAX lines;
 *    text NUL-terminated within TEXT_MAX, no control character but the
 *    '\n' separators, exactly nlines - 1 of those unless capped; the
 *    enhanced code empty or "C.S.D" with C the code's class;
 *  - MORE is never returned for a line that is not a continuation line;
 *    no line longer than LINE_MAX - 2 is accepted;
 *  - EHLO: only known bits; auth bits only with EHLO_AUTH; size only with
 *    EHLO_SIZE.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mta/smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define EHLO_ALL	(EHLO_PIPELINING | EHLO_SIZE | EHLO_8BITMIME | \
    EHLO_STARTTLS | EHLO_ENHANCED | EHLO_DSN | EHLO_SMTPUTF8 | EHLO_AUTH | \
    EHLO_CHUNKING)
#define EHLO_AUTH_ALL	(EHLO_AUTH_PLAIN | EHLO_AUTH_LOGIN | EHLO_AUTH_XOAUTH2)

static void
fuzz_check_enhanced(const char *e, int code)
{
	size_t i = 0, n;

	if (e[0] == '\0')
		return;
	if (e[0] != '0' + code / 100 || e[1] != '.')
		abort();
	i = 2;
	for (int part = 0; part < 2; part++) {
		for (n = 0; e[i] >= '0' && e[i] <= '9'; n++)
			i++;
		if (n < 1 || n > 3)
			abort();
		if (part == 0 && e[i++] != '.')
			abort();
	}
	if (e[i] != '\0')
		abort();
}

static void
fuzz_check_reply(const struct smtp_reply *r, int first_code)
{
	size_t len, nl = 0;

	if (r->code < 200 || r->code > 599 || r->code != first_code)
		abort();
	if (r->nlines < 1 || r->nlines > SMTP_REPLY_LINES_MAX)
		abort();
	len = strnlen(r->text, sizeof(r->text));
	if (len > SMTP_REPLY_TEXT_MAX)
		abort();
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)r->text[i];

		if (c == '\n')
			nl++;
		else if (c < 0x20 || c == 0x7f)
			abort();
	}
	if (nl > r->nlines - 1 || (len < SMTP_REPLY_TEXT_MAX &&
	    nl != r->nlines - 1))
		abort();
	if (strnlen(r->enhanced, sizeof(r->enhanced)) >= sizeof(r->enhanced))
		abort();
	fuzz_check_enhanced(r->enhanced, r->code);
	if (smtp_reply_class(r) != r->code / 100)
		abort();
}

static void
fuzz_check_ehlo(const struct smtp_reply *r)
{
	struct smtp_ehlo e;

	memset(&e, 0xa5, sizeof(e));
	smtp_ehlo_parse(r, &e);
	if (e.ext & ~(unsigned)EHLO_ALL || e.auth & ~(unsigned)EHLO_AUTH_ALL)
		abort();
	if (e.auth && !(e.ext & EHLO_AUTH))
		abort();
	if (e.size && !(e.ext & EHLO_SIZE))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply_parser p;
	const char *s = (const char *)data;
	size_t pos = 0;
	int first_code = 0;

	smtp_reply_init(&p);
	while (pos < size) {
		const char *lf = memchr(s + pos, '\n', size - pos);
		size_t end = lf ? (size_t)(lf - s) : size;
		size_t len = end - pos;
		enum smtp_reply_rc rc;

		if (len > 0 && s[pos + len - 1] == '\r')
			len--;
		if (!p.started)
			first_code = len >= 3 ? (s[pos] - '0') * 100 +
			    (s[pos + 1] - '0') * 10 + (s[pos + 2] - '0') : -1;
		rc = smtp_reply_line(&p, s + pos, len);
		if (rc != SMTP_REPLY_ERROR && len + 2 > SMTP_REPLY_LINE_MAX)
			abort();
		switch (rc) {
		case SMTP_REPLY_MORE:
			if (len < 4 || s[pos + 3] != '-' || !p.started)
				abort();
			break;
		case SMTP_REPLY_DONE:
			if (p.started)
				abort();
			fuzz_check_reply(&p.r, first_code);
			if (p.r.code == 250)
				fuzz_check_ehlo(&p.r);
			break;
		case SMTP_REPLY_ERROR:
			if (p.started)
				abort();
			break;
		default:
			abort();
		}
		pos = end + 1;
	}
	return 0;
}

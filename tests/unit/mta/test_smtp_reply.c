/*
 * test_smtp_reply.c - reply parsing as tables: whole replies (lines split
 * at "\r\n") with the expected outcome, code, enhanced code and kept text;
 * line and count bounds; the text cap; restarting after DONE and ERROR;
 * EHLO keywords, SIZE, and both AUTH forms; smtp_reply_class.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mta/smtp_reply.h"

/*
 * Feed "a\r\nb\r\n..." line by line.  Returns the last rc; *nfed is the
 * number of lines fed before the parser stopped asking for more.
 */
static enum smtp_reply_rc
feed(struct smtp_reply_parser *p, const char *s, size_t len, size_t *nfed)
{
	enum smtp_reply_rc rc = SMTP_REPLY_MORE;
	size_t pos = 0;

	*nfed = 0;
	smtp_reply_init(p);
	while (pos < len) {
		const char *e = memchr(s + pos, '\r', len - pos);
		size_t l = e ? (size_t)(e - (s + pos)) : len - pos;

		rc = smtp_reply_line(p, s + pos, l);
		(*nfed)++;
		pos += l + 2;
		if (rc != SMTP_REPLY_MORE)
			break;
	}
	return rc;
}

static const struct {
	const char		*in;
	enum smtp_reply_rc	 rc;
	int			 code;
	const char		*enhanced;
	const char		*text;
	size_t			 nlines;
} replies[] = {
	{ "250 ok\r\n", SMTP_REPLY_DONE, 250, "", "ok", 1 },
	{ "250\r\n", SMTP_REPLY_DONE, 250, "", "", 1 },
	{ "250 \r\n", SMTP_REPLY_DONE, 250, "", "", 1 },
	{ "220 mx.example.org ESMTP\r\n", SMTP_REPLY_DONE, 220, "",
	    "mx.example.org ESMTP", 1 },
	{ "250 2.1.0 Ok\r\n", SMTP_REPLY_DONE, 250, "2.1.0", "Ok", 1 },
	{ "550 5.1.1 <bob@example.org>: Recipient address rejected\r\n",
	    SMTP_REPLY_DONE, 550, "5.1.1",
	    "<bob@example.org>: Recipient address rejected", 1 },
	{ "451 4.123.456 try later\r\n", SMTP_REPLY_DONE, 451, "4.123.456",
	    "try later", 1 },
	{ "250 2.0.0\r\n", SMTP_REPLY_DONE, 250, "2.0.0", "", 1 },
	/* class must match the basic code */
	{ "550 4.1.1 odd\r\n", SMTP_REPLY_DONE, 550, "", "4.1.1 odd", 1 },
	/* subject and detail: 1 to 3 digits */
	{ "550 5.1234.1 x\r\n", SMTP_REPLY_DONE, 550, "", "5.1234.1 x", 1 },
	{ "550 5.1.1234 x\r\n", SMTP_REPLY_DONE, 550, "", "5.1.1234 x", 1 },
	{ "550 5..1 x\r\n", SMTP_REPLY_DONE, 550, "", "5..1 x", 1 },
	{ "550 5.1. x\r\n", SMTP_REPLY_DONE, 550, "", "5.1. x", 1 },
	{ "550 5.1.1x y\r\n", SMTP_REPLY_DONE, 550, "", "5.1.1x y", 1 },
	{ "550 5.1\r\n", SMTP_REPLY_DONE, 550, "", "5.1", 1 },
	/* multiline */
	{ "250-mx.example.org\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
	    SMTP_REPLY_DONE, 250, "", "mx.example.org\nPIPELINING\nSIZE 1000",
	    3 },
	{ "550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n",
	    SMTP_REPLY_DONE, 550, "5.7.1", "first\nsecond\nthird", 3 },
	{ "250-\r\n250 last\r\n", SMTP_REPLY_DONE, 250, "", "\nlast", 2 },
	/* control characters replaced, high bytes kept */
	{ "250 a\tb\x01" "c\x7f\r\n", SMTP_REPLY_DONE, 250, "", "a?b?c?", 1 },
	{ "250 caf\xc3\xa9\r\n", SMTP_REPLY_DONE, 250, "", "caf\xc3\xa9", 1 },
	/* violations */
	{ "250-a\r\n251 b\r\n", SMTP_REPLY_ERROR, 0, NULL, NULL, 0 },
	{ "199 x\r\n", SMTP_REPLY_ERROR, 0, NULL, NULL, 0 },
	{ "600 x\r\n", SMTP_REPLY_ERROR, 0, NULL, NULL, 0 },
	{ "099 x\r\n", SMTP_REPLY_ERROR, 0, NULL, NULL, 0 },
	{ "25 x\r\n", SMTP_REPLY_ERROR, 0, NULL, NULL, 0 },
	{ "25\r\n", SMTP_REPLY_ERROR, 0, NULL, NULL, 0 },
	{ "\r\n", SMTP_REPLY_ERROR, 0, NULL, NULL, 0 },
	{ "2a0 x\r\n", SMTP_REPLY_ERROR, 0, NULL, NULL, 0 },
	{ "250x\r\n", SMTP_REPLY_ERROR, 0, NULL, NULL, 0 },
	{ "250\tx\r\n", SMTP_REPLY_ERROR, 0, NULL, NULL, 0 },
	{ "hello\r\n", SMTP_REPLY_ERROR, 0, NULL, NULL, 0 },
	{ "250-a\r\n", SMTP_REPLY_MORE, 0, NULL, NULL, 0 },
};

static void
test_reply_table(void **state)
{
	for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
		struct smtp_reply_parser p;
		enum smtp_reply_rc rc;
		size_t n;

		rc = feed(&p, replies[i].in, strlen(replies[i].in), &n);
		if (rc != replies[i].rc)
			fail_msg("case %zu (%s): rc %d, want %d", i,
			    replies[i].in, rc, replies[i].rc);
		if (rc != SMTP_REPLY_DONE)
			continue;
		assert_int_equal(p.r.code, replies[i].code);
		assert_string_equal(p.r.enhanced, replies[i].enhanced);
		assert_string_equal(p.r.text, replies[i].text);
		assert_int_equal(p.r.nlines, replies[i].nlines);
	}
}

static void
test_line_bound(void **state)
{
	struct smtp_reply_parser p;
	char line[SMTP_REPLY_LINE_MAX + 8];

	memset(line, 'x', sizeof(line));
	memcpy(line, "250 ", 4);
	smtp_reply_init(&p);
	/* SMTP_REPLY_LINE_MAX counts the CRLF */
	assert_int_equal(smtp_reply_line(&p, line, SMTP_REPLY_LINE_MAX - 2),
	    SMTP_REPLY_DONE);
	assert_int_equal(strlen(p.r.text), SMTP_REPLY_LINE_MAX - 6);
	assert_int_equal(smtp_reply_line(&p, line, SMTP_REPLY_LINE_MAX - 1),
	    SMTP_REPLY_ERROR);
}

static void
test_lines_bound(void **state)
{
	struct smtp_reply_parser p;
	size_t i;

	smtp_reply_init(&p);
	for (i = 0; i < SMTP_REPLY_LINES_MAX - 1; i++)
		assert_int_equal(smtp_reply_line(&p, "250-x", 5),
		    SMTP_REPLY_MORE);
	assert_int_equal(smtp_reply_line(&p, "250 x", 5), SMTP_REPLY_DONE);
	assert_int_equal(p.r.nlines, SMTP_REPLY_LINES_MAX);

	smtp_reply_init(&p);
	for (i = 0; i < SMTP_REPLY_LINES_MAX; i++)
		assert_int_equal(smtp_reply_line(&p, "250-x", 5),
		    SMTP_REPLY_MORE);
	assert_int_equal(smtp_reply_line(&p, "250 x", 5), SMTP_REPLY_ERROR);
}

/* Many long lines: the text stops at SMTP_REPLY_TEXT_MAX, still valid. */
static void
test_text_cap(void **state)
{
	struct smtp_reply_parser p;
	char line[1000];
	size_t i;

	memset(line, 'y', sizeof(line));
	memcpy(line, "554-", 4);
	smtp_reply_init(&p);
	for (i = 0; i < 20; i++)
		assert_int_equal(smtp_reply_line(&p, line, sizeof(line)),
		    SMTP_REPLY_MORE);
	line[3] = ' ';
	assert_int_equal(smtp_reply_line(&p, line, sizeof(line)),
	    SMTP_REPLY_DONE);
	assert_int_equal(strlen(p.r.text), SMTP_REPLY_TEXT_MAX);
	assert_int_equal(p.r.nlines, 21);
}

/* NULs in a line are text (replaced), not the end of it. */
static void
test_nul(void **state)
{
	struct smtp_reply_parser p;

	smtp_reply_init(&p);
	assert_int_equal(smtp_reply_line(&p, "250 a\0b", 7), SMTP_REPLY_DONE);
	assert_string_equal(p.r.text, "a?b");
}

/* After DONE or ERROR the next line starts a new reply. */
static void
test_restart(void **state)
{
	struct smtp_reply_parser p;

	smtp_reply_init(&p);
	assert_int_equal(smtp_reply_line(&p, "250-a", 5), SMTP_REPLY_MORE);
	assert_int_equal(smtp_reply_line(&p, "250 b", 5), SMTP_REPLY_DONE);
	assert_int_equal(smtp_reply_line(&p, "354 go", 6), SMTP_REPLY_DONE);
	assert_int_equal(p.r.code, 354);
	assert_string_equal(p.r.text, "go");
	assert_int_equal(p.r.nlines, 1);
	assert_int_equal(smtp_reply_line(&p, "x", 1), SMTP_REPLY_ERROR);
	assert_int_equal(smtp_reply_line(&p, "221 2.0.0 bye", 13),
	    SMTP_REPLY_DONE);
	assert_int_equal(p.r.code, 221);
	assert_string_equal(p.r.enhanced, "2.0.0");
}

static void
test_class(void **state)
{
	struct smtp_reply_parser p;

	smtp_reply_init(&p);
	assert_int_equal(smtp_reply_line(&p, "421 busy", 8), SMTP_REPLY_DONE);
	assert_int_equal(smtp_reply_class(&p.r), 4);
	assert_int_equal(smtp_reply_line(&p, "550 5.7.1 no", 12),
	    SMTP_REPLY_DONE);
	assert_int_equal(smtp_reply_class(&p.r), 5);
	assert_int_equal(smtp_reply_line(&p, "354 go", 6), SMTP_REPLY_DONE);
	assert_int_equal(smtp_reply_class(&p.r), 3);
}

static void
ehlo(const char *in, struct smtp_ehlo *out)
{
	struct smtp_reply_parser p;
	size_t n;

	assert_int_equal(feed(&p, in, strlen(in), &n), SMTP_REPLY_DONE);
	smtp_ehlo_parse(&p.r, out);
}

static void
test_ehlo(void **state)
{
	struct smtp_ehlo e;

	ehlo("250-mx.example.org Hello\r\n250-PIPELINING\r\n"
	    "250-SIZE 10240000\r\n250-8BITMIME\r\n250-STARTTLS\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-SMTPUTF8\r\n"
	    "250-CHUNKING\r\n250 AUTH PLAIN LOGIN XOAUTH2\r\n", &e);
	assert_int_equal(e.ext, EHLO_PIPELINING | EHLO_SIZE | EHLO_8BITMIME |
	    EHLO_STARTTLS | EHLO_ENHANCED | EHLO_DSN | EHLO_SMTPUTF8 |
	    EHLO_CHUNKING | EHLO_AUTH);
	assert_int_equal(e.size, 10240000);
	assert_int_equal(e.auth, EHLO_AUTH_PLAIN | EHLO_AUTH_LOGIN |
	    EHLO_AUTH_XOAUTH2);

	/* case-insensitive; SIZE without a number; old AUTH= form */
	ehlo("250-x\r\n250-pipelining\r\n250-Size\r\n250-auth=login\r\n"
	    "250 starttls\r\n", &e);
	assert_int_equal(e.ext, EHLO_PIPELINING | EHLO_SIZE | EHLO_AUTH |
	    EHLO_STARTTLS);
	assert_int_equal(e.size, 0);
	assert_int_equal(e.auth, EHLO_AUTH_LOGIN);

	/* both AUTH lines merge; unknown mechanisms ignored */
	ehlo("250-x\r\n250-AUTH CRAM-MD5 PLAIN\r\n250 AUTH=LOGIN\r\n", &e);
	assert_int_equal(e.ext, EHLO_AUTH);
	assert_int_equal(e.auth, EHLO_AUTH_PLAIN | EHLO_AUTH_LOGIN);

	/* the first line is the greeting, not a keyword */
	ehlo("250 PIPELINING\r\n", &e);
	assert_int_equal(e.ext, 0);

	/* near-misses are not keywords */
	ehlo("250-x\r\n250-PIPELININGX\r\n250-XSIZE 5\r\n250-STARTTLS2\r\n"
	    "250-AUTHX PLAIN\r\n250 8BITMIMEX\r\n", &e);
	assert_int_equal(e.ext, 0);
	assert_int_equal(e.auth, 0);

	/* bad or huge SIZE values mean "no limit given" */
	ehlo("250-x\r\n250 SIZE 12abc\r\n", &e);
	assert_int_equal(e.ext, EHLO_SIZE);
	assert_int_equal(e.size, 0);
	ehlo("250-x\r\n250 SIZE 99999999999999999999999\r\n", &e);
	assert_int_equal(e.size, 0);
	ehlo("250-x\r\n250 SIZE    52428800   \r\n", &e);
	assert_int_equal(e.size, 52428800);

	/* keywords with enhanced codes in front (some servers do this) */
	ehlo("250-2.0.0 x\r\n250-2.0.0 PIPELINING\r\n250 2.0.0 DSN\r\n", &e);
	assert_int_equal(e.ext, EHLO_PIPELINING | EHLO_DSN);

	/* not a 250: nothing */
	ehlo("502-x\r\n502 PIPELINING\r\n", &e);
	assert_int_equal(e.ext, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_table),
		cmocka_unit_test(test_line_bound),
		cmocka_unit_test(test_lines_bound),
		cmocka_unit_test(test_text_cap),
		cmocka_unit_test(test_nul),
		cmocka_unit_test(test_restart),
		cmocka_unit_test(test_class),
		cmocka_unit_test(test_ehlo),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_smtp_data.c - tests of the DATA state machine: end-of-data
 * detection (including SMTP smuggling sequences), dot-unstuffing, flags,
 * limits, and that every way of chunking the input gives the same result
 * as feeding it at once.
 *
 * Must never: depend on anything but the public contract of smtp_data.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/util.h"
#include "smtp/smtp_data.h"

#define S(x)	x, sizeof(x) - 1	/* literal with its length (NULs ok) */

#define BARE	(SMTP_DATA_BARE_LF | SMTP_DATA_BARE_CR)

static const struct smtp_data_limits lim_default = {
	.max_size = 1 << 20,
	.max_line = 998,
	.max_header = 1000,
	.max_header_count = 100,
};

/* Everything observable after feeding an input. */
struct result {
	enum smtp_data_rc	rc;
	size_t			consumed;	/* total over all calls */
	struct buf		out;
	struct smtp_data	d;
};

static void
result_free(struct result *r)
{
	buf_free(&r->out);
}

/*
 * Feed in[0..len) cut at the ascending offsets cuts[0..ncut), stopping
 * at DONE.  Checks the per-call contract on the way.
 */
static void
feed_cuts(const char *in, size_t len, const size_t *cuts, size_t ncut,
    const struct smtp_data_limits *lim, struct result *r)
{
	size_t start = 0, i, end, used;

	buf_init(&r->out);
	smtp_data_init(&r->d, lim);
	r->rc = SMTP_DATA_MORE;
	r->consumed = 0;
	for (i = 0; i <= ncut && r->rc == SMTP_DATA_MORE; i++) {
		end = i < ncut ? cuts[i] : len;
		assert_true(end >= start && end <= len);
		used = (size_t)-1;
		r->rc = smtp_data_feed(&r->d, in + start, end - start, &used,
		    &r->out);
		assert_true(used <= end - start);
		if (r->rc == SMTP_DATA_MORE)
			assert_int_equal(used, end - start);
		r->consumed += used;
		start = end;
	}
}

static void
feed_once(const char *in, size_t len, const struct smtp_data_limits *lim,
    struct result *r)
{
	feed_cuts(in, len, NULL, 0, lim, r);
}

static void
assert_same(const struct result *a, const struct result *b, size_t where)
{
	if (a->rc != b->rc || a->consumed != b->consumed ||
	    a->out.len != b->out.len ||
	    memcmp(a->out.data ? a->out.data : "", b->out.data ?
	    b->out.data : "", a->out.len) != 0 ||
	    a->d.flags != b->d.flags || a->d.size != b->d.size ||
	    a->d.in_header != b->d.in_header ||
	    a->d.header_bytes != b->d.header_bytes ||
	    a->d.header_count != b->d.header_count) {
		print_error("chunked feeding differs (cut %zu): rc %d/%d "
		    "consumed %zu/%zu len %zu/%zu flags %#x/%#x\n", where,
		    a->rc, b->rc, a->consumed, b->consumed, a->out.len,
		    b->out.len, a->d.flags, b->d.flags);
		fail();
	}
}

/* Compare one-shot feeding with every 2-way split and 1-byte feeding. */
static void
check_all_chunkings(const char *in, size_t len,
    const struct smtp_data_limits *lim)
{
	struct result once, split;
	size_t cut, *cuts;

	feed_once(in, len, lim, &once);
	for (cut = 0; cut <= len; cut++) {
		feed_cuts(in, len, &cut, 1, lim, &split);
		assert_same(&once, &split, cut);
		result_free(&split);
	}
	cuts = calloc(len + 1, sizeof(*cuts));
	assert_non_null(cuts);
	for (cut = 0; cut < len; cut++)
		cuts[cut] = cut + 1;
	feed_cuts(in, len, cuts, len, lim, &split);
	assert_same(&once, &split, 1);
	result_free(&split);
	free(cuts);
	result_free(&once);
}

static const struct {
	const char	*name;
	const char	*in;
	size_t		 len;
	enum smtp_data_rc rc;
	size_t		 consumed;	/* for DONE */
	const char	*out;
	size_t		 outlen;
	unsigned	 flags;
} cases[] = {
	{ "empty message", S(".\r\n"), SMTP_DATA_DONE, 3, S(""), 0 },
	{ "next command stays", S(".\r\nQUIT\r\n"), SMTP_DATA_DONE, 3, S(""),
	  0 },
	{ "simple", S("Subject: x\r\n\r\nbody\r\n.\r\n"), SMTP_DATA_DONE, 23,
	  S("Subject: x\r\n\r\nbody\r\n"), 0 },
	{ "pipelined after end", S("a\r\n.\r\nMAIL FROM:<x@y>\r\n"),
	  SMTP_DATA_DONE, 6, S("a\r\n"), 0 },
	{ "empty line first", S("\r\n.\r\n"), SMTP_DATA_DONE, 5, S("\r\n"), 0 },
	{ "dot-stuffed", S("a\r\n..b\r\n.\r\n"), SMTP_DATA_DONE, 11,
	  S("a\r\n.b\r\n"), 0 },
	{ "stuffed lone dot", S("..\r\n.\r\n"), SMTP_DATA_DONE, 7,
	  S(".\r\n"), 0 },
	{ "stuffed dots", S("...\r\n.\r\n"), SMTP_DATA_DONE, 8,
	  S("..\r\n"), 0 },
	{ "dot then text", S(".x\r\n.\r\n"), SMTP_DATA_DONE, 7, S("x\r\n"), 0 },
	{ "dot mid-line kept", S("a.b\r\n.\r\n"), SMTP_DATA_DONE, 8,
	  S("a.b\r\n"), 0 },
	{ "dot space", S(". \r\n.\r\n"), SMTP_DATA_DONE, 7, S(" \r\n"), 0 },
	/* smuggling attempts: none of these end the data */
	{ "LF.LF", S("a\n.\nb\r\n.\r\n"), SMTP_DATA_DONE, 10,
	  S("a\n.\nb\r\n"), SMTP_DATA_BARE_LF },
	{ "CR.CR", S("a\r.\rb\r\n.\r\n"), SMTP_DATA_DONE, 10,
	  S("a\r.\rb\r\n"), SMTP_DATA_BARE_CR },
	{ "CRLF.LF", S("a\r\n.\nb\r\n.\r\n"), SMTP_DATA_DONE, 11,
	  S("a\r\n\nb\r\n"), SMTP_DATA_BARE_LF },
	{ "CRLF.CR", S("a\r\n.\rb\r\n.\r\n"), SMTP_DATA_DONE, 11,
	  S("a\r\n\rb\r\n"), SMTP_DATA_BARE_CR },
	{ "LF.CRLF", S("a\n.\r\nb\r\n.\r\n"), SMTP_DATA_DONE, 11,
	  S("a\n.\r\nb\r\n"), SMTP_DATA_BARE_LF },
	{ "CR.CRLF", S("a\r.\r\nb\r\n.\r\n"), SMTP_DATA_DONE, 11,
	  S("a\r.\r\nb\r\n"), SMTP_DATA_BARE_CR },
	{ "CRCRLF", S("a\r\r\n.\r\n"), SMTP_DATA_DONE, 7, S("a\r\r\n"),
	  SMTP_DATA_BARE_CR },
	{ "LFCRLF", S("a\n\r\n.\r\n"), SMTP_DATA_DONE, 7, S("a\n\r\n"),
	  SMTP_DATA_BARE_LF },
	{ "CRLF.CRCRLF", S("a\r\n.\r\r\n.\r\n"), SMTP_DATA_DONE, 10,
	  S("a\r\n\r\r\n"), SMTP_DATA_BARE_CR },
	{ "CRLF.SP CRLF", S("a\r\n. \r\n.\r\n"), SMTP_DATA_DONE, 10,
	  S("a\r\n \r\n"), 0 },
	{ "leading .LF", S(".\n.\r\n.\r\n"), SMTP_DATA_DONE, 8,
	  S("\n.\r\n"), SMTP_DATA_BARE_LF },
	{ "leading .CR.", S(".\r.\r\n.\r\n"), SMTP_DATA_DONE, 8,
	  S("\r.\r\n"), SMTP_DATA_BARE_CR },
	{ "LF only end", S("a\n.\n"), SMTP_DATA_MORE, 0, S("a\n.\n"),
	  SMTP_DATA_BARE_LF },
	{ "CR only end", S("a\r.\r"), SMTP_DATA_MORE, 0, S("a\r."),
	  SMTP_DATA_BARE_CR },
	{ "CRLF.LF end", S("a\r\n.\n"), SMTP_DATA_MORE, 0, S("a\r\n\n"),
	  SMTP_DATA_BARE_LF },
	{ "unfinished", S("abc\r\n."), SMTP_DATA_MORE, 0, S("abc\r\n"), 0 },
	{ "unfinished CR", S("abc\r\n.\r"), SMTP_DATA_MORE, 0, S("abc\r\n"),
	  0 },
	{ "nothing", S(""), SMTP_DATA_MORE, 0, S(""), 0 },
	/* other flags */
	{ "NUL", S("a\0b\r\n.\r\n"), SMTP_DATA_DONE, 8, S("a\0b\r\n"),
	  SMTP_DATA_NUL },
	{ "8bit", S("caf\xc3\xa9\r\n.\r\n"), SMTP_DATA_DONE, 10,
	  S("caf\xc3\xa9\r\n"), SMTP_DATA_8BIT },
	{ "8bit in long run", S("0123456789abcdef0123456789\x80\r\n.\r\n"),
	  SMTP_DATA_DONE, 32, S("0123456789abcdef0123456789\x80\r\n"),
	  SMTP_DATA_8BIT },
	{ "everything", S("\x80\0\n\r\r\n.\r\n"), SMTP_DATA_DONE, 9,
	  S("\x80\0\n\r\r\n"), SMTP_DATA_8BIT | SMTP_DATA_NUL | BARE },
};

static void
test_data_table(void **state)
{
	struct result r;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		feed_once(cases[i].in, cases[i].len, &lim_default, &r);
		if (r.rc != cases[i].rc || r.d.flags != cases[i].flags ||
		    r.out.len != cases[i].outlen ||
		    memcmp(r.out.data ? r.out.data : "", cases[i].out,
		    cases[i].outlen) != 0 ||
		    r.consumed != (cases[i].rc == SMTP_DATA_DONE ?
		    cases[i].consumed : cases[i].len)) {
			print_error("%s: rc %d flags %#x consumed %zu "
			    "outlen %zu\n", cases[i].name, r.rc, r.d.flags,
			    r.consumed, r.out.len);
			fail();
		}
		result_free(&r);
		check_all_chunkings(cases[i].in, cases[i].len, &lim_default);
	}
}

/* Limits: each case sets one limit low. */
static const struct {
	const char	*name;
	struct smtp_data_limits lim;
	const char	*in;
	size_t		 len;
	unsigned	 flags;
	size_t		 header_count;
	size_t		 header_bytes;
} limit_cases[] = {
	{ "line at limit", { 1000, 10, 1000, 100 },
	  S("0123456789\r\n.\r\n"), 0, 1, 12 },
	{ "line over limit", { 1000, 10, 1000, 100 },
	  S("0123456789a\r\n.\r\n"), SMTP_DATA_LONG_LINE, 1, 13 },
	{ "stuffed line counts unstuffed", { 1000, 10, 1000, 100 },
	  S("..123456789\r\n.\r\n"), 0, 1, 12 },
	{ "long body line", { 1000, 10, 1000, 100 },
	  S("a\r\n\r\n0123456789abc\r\n.\r\n"), SMTP_DATA_LONG_LINE, 1, 3 },
	{ "bare LF does not end a line", { 1000, 10, 1000, 100 },
	  S("01234\n56789\r\n.\r\n"), SMTP_DATA_LONG_LINE | SMTP_DATA_BARE_LF,
	  1, 13 },
	{ "size at limit", { 10, 998, 1000, 100 },
	  S("01234567\r\n.\r\n"), 0, 1, 10 },
	{ "size over limit", { 10, 998, 1000, 100 },
	  S("012345678\r\n.\r\n"), SMTP_DATA_TOO_BIG, 1, 11 },
	{ "size zero", { 0, 998, 1000, 100 },
	  S(".\r\n"), 0, 0, 0 },
	{ "size zero over", { 0, 998, 1000, 100 },
	  S("\r\n.\r\n"), SMTP_DATA_TOO_BIG, 0, 0 },
	{ "fields at limit", { 1000, 998, 1000, 2 },
	  S("A: 1\r\nB: 2\r\n\r\nC: 3\r\nD: 4\r\n.\r\n"), 0, 2, 12 },
	{ "fields over limit", { 1000, 998, 1000, 2 },
	  S("A: 1\r\nB: 2\r\nC: 3\r\n\r\n.\r\n"), SMTP_DATA_TOO_MANY_HDRS,
	  3, 18 },
	{ "continuations are not fields", { 1000, 998, 1000, 1 },
	  S("A: 1\r\n 2\r\n\t3\r\n\r\n.\r\n"), 0, 1, 14 },
	{ "no body: all header", { 1000, 998, 1000, 2 },
	  S("A: 1\r\nB: 2\r\nC: 3\r\n.\r\n"), SMTP_DATA_TOO_MANY_HDRS, 3, 18 },
	{ "stuffed header line", { 1000, 998, 1000, 1 },
	  S("..A: 1\r\n. B\r\n\r\n.\r\n"), 0, 1, 11 },
	{ "header at limit", { 1000, 998, 12, 100 },
	  S("A: 1\r\nB: 2\r\n\r\nbody body body\r\n.\r\n"), 0, 2, 12 },
	{ "header over limit", { 1000, 998, 11, 100 },
	  S("A: 1\r\nB: 2\r\n\r\n.\r\n"), SMTP_DATA_HDR_TOO_BIG, 2, 12 },
	{ "header over limit mid-line", { 1000, 998, 5, 100 },
	  S("A: 123\r\n\r\n.\r\n"), SMTP_DATA_HDR_TOO_BIG, 1, 8 },
	{ "bare CR is not the blank line", { 1000, 998, 1000, 1 },
	  S("A: 1\r\n\rB: 2\r\n\r\n.\r\n"),
	  SMTP_DATA_BARE_CR | SMTP_DATA_TOO_MANY_HDRS, 2, 13 },
	{ "bare LF is not the blank line", { 1000, 998, 1000, 1 },
	  S("A: 1\r\n\nB: 2\r\n\r\n.\r\n"),
	  SMTP_DATA_BARE_LF | SMTP_DATA_TOO_MANY_HDRS, 2, 13 },
};

static void
test_data_limits(void **state)
{
	struct result r;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(limit_cases); i++) {
		feed_once(limit_cases[i].in, limit_cases[i].len,
		    &limit_cases[i].lim, &r);
		if (r.rc != SMTP_DATA_DONE || r.consumed != limit_cases[i].len ||
		    r.d.flags != limit_cases[i].flags ||
		    r.d.header_count != limit_cases[i].header_count ||
		    r.d.header_bytes != limit_cases[i].header_bytes ||
		    r.out.len > limit_cases[i].lim.max_size) {
			print_error("%s: rc %d flags %#x count %zu bytes %zu "
			    "outlen %zu\n", limit_cases[i].name, r.rc,
			    r.d.flags, r.d.header_count, r.d.header_bytes,
			    r.out.len);
			fail();
		}
		result_free(&r);
		check_all_chunkings(limit_cases[i].in, limit_cases[i].len,
		    &limit_cases[i].lim);
	}
}

/* Past max_size nothing more is stored, but the end is still found. */
static void
test_data_too_big_bounded(void **state)
{
	struct smtp_data_limits lim = lim_default;
	struct smtp_data d;
	struct buf out;
	char chunk[4096];
	size_t used, i;

	(void)state;
	lim.max_size = 10000;
	smtp_data_init(&d, &lim);
	buf_init(&out);
	buf_adds(&out, "Received: x\r\n");	/* the session's own header */
	memset(chunk, 'x', sizeof(chunk));
	for (i = 60; i < sizeof(chunk); i += 61) {
		chunk[i - 1] = '\r';
		chunk[i] = '\n';
	}
	for (i = 0; i < 1000; i++) {
		assert_int_equal(smtp_data_feed(&d, chunk, sizeof(chunk), &used,
		    &out), SMTP_DATA_MORE);
		assert_int_equal(used, sizeof(chunk));
	}
	assert_int_equal(out.len, 13 + 10000);
	assert_memory_equal(out.data, "Received: x\r\n", 13);
	assert_true(d.flags & SMTP_DATA_TOO_BIG);
	assert_int_equal(d.size, 1000 * sizeof(chunk));
	assert_int_equal(smtp_data_feed(&d, "\r\n.\r\nX", 6, &used, &out),
	    SMTP_DATA_DONE);
	assert_int_equal(used, 5);
	assert_int_equal(out.len, 13 + 10000);
	buf_free(&out);
}

/* A long run of ordinary bytes split in odd places. */
static void
test_data_long_runs(void **state)
{
	struct smtp_data_limits lim = lim_default;
	size_t n = 3000, i;
	char *msg = malloc(n + 16);
	struct result r;

	(void)state;
	assert_non_null(msg);
	for (i = 0; i < n; i++)
		msg[i] = (char)('a' + i % 26);
	memcpy(msg + n, "\r\n.\r\n", 5);
	lim.max_line = n;
	lim.max_header = 2 * n;
	feed_once(msg, n + 5, &lim, &r);
	assert_int_equal(r.rc, SMTP_DATA_DONE);
	assert_int_equal(r.d.flags, 0);
	assert_int_equal(r.out.len, n + 2);
	assert_memory_equal(r.out.data, msg, n + 2);
	result_free(&r);
	lim.max_line = n - 1;
	feed_once(msg, n + 5, &lim, &r);
	assert_int_equal(r.d.flags, SMTP_DATA_LONG_LINE);
	result_free(&r);
	check_all_chunkings(msg, n + 5, &lim);
	free(msg);
}

/* Every 3-way split of a message full of tricky sequences. */
static void
test_data_three_way_splits(void **state)
{
	static const char msg[] =
	    "From: a\r\n ..x\r\n.\r\rX: \n.\n\r\n..\r\n.\n.\r.\r\n"
	    ".\r\r\n\xff\0\r\n.\r\nTRAILER";
	const size_t len = sizeof(msg) - 1;
	struct smtp_data_limits lim = { 60, 8, 20, 2 };
	struct result once, split;
	size_t cuts[2];

	(void)state;
	feed_once(msg, len, &lim, &once);
	assert_int_equal(once.rc, SMTP_DATA_DONE);
	assert_int_equal(once.consumed, len - 7);
	for (cuts[0] = 0; cuts[0] <= len; cuts[0]++) {
		for (cuts[1] = cuts[0]; cuts[1] <= len; cuts[1]++) {
			feed_cuts(msg, len, cuts, 2, &lim, &split);
			assert_same(&once, &split, cuts[0] * 1000 + cuts[1]);
			result_free(&split);
		}
	}
	result_free(&once);
}

static void
test_data_after_done(void **state)
{
	struct smtp_data d;
	struct buf out;
	size_t used = 99;

	(void)state;
	buf_init(&out);
	smtp_data_init(&d, &lim_default);
	assert_int_equal(smtp_data_feed(&d, "a\r\n.\r\n", 6, &used, &out),
	    SMTP_DATA_DONE);
	assert_int_equal(used, 6);
	assert_int_equal(smtp_data_feed(&d, "more\r\n", 6, &used, &out),
	    SMTP_DATA_DONE);
	assert_int_equal(used, 0);
	assert_int_equal(out.len, 3);
	/* zero-length input before the end */
	smtp_data_init(&d, &lim_default);
	used = 99;
	assert_int_equal(smtp_data_feed(&d, "", 0, &used, &out),
	    SMTP_DATA_MORE);
	assert_int_equal(used, 0);
	buf_free(&out);
}

static const struct {
	unsigned	 flags;
	const char	*reply;
} reply_cases[] = {
	{ 0, NULL },
	{ SMTP_DATA_8BIT, NULL },
	{ SMTP_DATA_BARE_LF, "550 5.6.0 Message contains bare CR or LF; only "
	  "CRLF line endings are allowed" },
	{ SMTP_DATA_BARE_CR, "550 5.6.0 Message contains bare CR or LF; only "
	  "CRLF line endings are allowed" },
	{ SMTP_DATA_NUL, "550 5.6.0 Message contains NUL octets" },
	{ SMTP_DATA_TOO_BIG, "552 5.3.4 Message size exceeds fixed maximum "
	  "message size" },
	{ SMTP_DATA_LONG_LINE, "550 5.6.0 Message has a line longer than the "
	  "maximum line length" },
	{ SMTP_DATA_HDR_TOO_BIG, "552 5.3.4 Message header section exceeds "
	  "maximum size" },
	{ SMTP_DATA_TOO_MANY_HDRS, "552 5.3.4 Message has too many header "
	  "fields" },
	/* most important first */
	{ 0xff, "550 5.6.0 Message contains bare CR or LF; only CRLF line "
	  "endings are allowed" },
	{ SMTP_DATA_NUL | SMTP_DATA_TOO_BIG | SMTP_DATA_8BIT,
	  "550 5.6.0 Message contains NUL octets" },
	{ SMTP_DATA_TOO_BIG | SMTP_DATA_LONG_LINE, "552 5.3.4 Message size "
	  "exceeds fixed maximum message size" },
	{ SMTP_DATA_LONG_LINE | SMTP_DATA_HDR_TOO_BIG, "550 5.6.0 Message has "
	  "a line longer than the maximum line length" },
	{ SMTP_DATA_HDR_TOO_BIG | SMTP_DATA_TOO_MANY_HDRS, "552 5.3.4 Message "
	  "header section exceeds maximum size" },
	{ SMTP_DATA_TOO_MANY_HDRS | SMTP_DATA_8BIT, "552 5.3.4 Message has "
	  "too many header fields" },
};

static void
test_data_reject_reply(void **state)
{
	const char *r;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(reply_cases); i++) {
		r = smtp_data_reject_reply(reply_cases[i].flags);
		if (reply_cases[i].reply == NULL)
			assert_null(r);
		else
			assert_string_equal(r, reply_cases[i].reply);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_data_table),
		cmocka_unit_test(test_data_limits),
		cmocka_unit_test(test_data_too_big_bounded),
		cmocka_unit_test(test_data_long_runs),
		cmocka_unit_test(test_data_three_way_splits),
		cmocka_unit_test(test_data_after_done),
		cmocka_unit_test(test_data_reject_reply),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_dsn.c - delivery status notifications: the structure of the
 * report (headers, the three parts, the delivery-status fields), RET=HDRS
 * against FULL, truncation at a line boundary, ORCPT/ENVID passthrough,
 * refusal of the null reverse-path and of unusable inputs, hostile
 * diagnostics and originals, MIME boundary collisions, and an independent
 * reading of generated reports by Python's email package.
 *
 * Must never: depend on anything but the public contract of dsn.h; pass
 * a report without checking that every line ends in CRLF and is at most
 * 998 octets long.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "mta/dsn.h"

#define NOW		INT64_C(1700000000)	/* Tue, 14 Nov 2023 22:13:20 */
#define MTA		"mx.ombud.example"
#define PYTHON		"/usr/bin/python3"

extern char **environ;

/* A MIME part of a built report: its header section and its body. */
struct part {
	const char	*hdr;
	size_t		 hlen;
	const char	*body;
	size_t		 blen;
};

/* One built report with its parts. */
struct report {
	struct buf	out;
	char		boundary[128];
	struct part	p[3];
	size_t		nparts;
};

static const char original[] =
    "Received: from client.example.com by " MTA "\r\n"
    "From: Alice <alice@example.com>\r\n"
    "To: Bob <bob@example.org>\r\n"
    "Subject: lunch\r\n"
    "Message-ID: <1@example.com>\r\n"
    "\r\n"
    "Shall we have lunch?\r\n"
    "SECRET-BODY-LINE\r\n";

static void
env_fill(struct envelope *e, enum smtp_ret ret, const char *envid)
{
	envelope_init(e);
	strcpy(e->mail_from, "alice@example.com");
	e->created = NOW - 3600;
	e->ret = ret;
	strcpy(e->envid, envid);
}

static struct dsn_info
info_fill(const char *seed)
{
	struct dsn_info info = {
		.reporting_mta = MTA,
		.postmaster = "postmaster@ombud.example",
		.arrival = NOW - 3600,
		.now = NOW,
		.boundary_seed = seed,
	};
	return info;
}

static struct dsn_rcpt
rcpt_fill(const char *addr, enum dsn_action a, const char *status,
    const char *diag)
{
	struct dsn_rcpt r = {
		.addr = addr,
		.orcpt = NULL,
		.action = a,
		.status = status,
		.remote_mta = "mx.example.org",
		.diagnostic = diag,
		.last_attempt = NOW - 60,
	};
	return r;
}

/* Every line ends in CRLF, no bare CR or LF, no NUL, none over 998. */
static void
check_lines(const char *s, size_t len)
{
	size_t i, col = 0;

	assert_true(len >= 2);
	assert_memory_equal(s + len - 2, "\r\n", 2);
	for (i = 0; i < len; i++) {
		assert_int_not_equal(s[i], '\0');
		if (s[i] == '\r') {
			assert_true(i + 1 < len && s[i + 1] == '\n');
			assert_true(col <= 998);
			col = 0;
			i++;
		} else {
			assert_int_not_equal(s[i], '\n');
			col++;
		}
	}
}

/* Does "line\r\n" occur at the start of a line of s[0..len)? */
static bool
has_line(const char *s, size_t len, const char *line)
{
	size_t n = strlen(line), i;

	for (i = 0; i + n + 2 <= len; i++) {
		if ((i == 0 || s[i - 1] == '\n') &&
		    memcmp(s + i, line, n) == 0 &&
		    memcmp(s + i + n, "\r\n", 2) == 0)
			return true;
	}
	return false;
}

/* Does a line of s[0..len) start with prefix? */
static bool
has_line_prefix(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix), i;

	for (i = 0; i + n <= len; i++)
		if ((i == 0 || s[i - 1] == '\n') &&
		    memcmp(s + i, prefix, n) == 0)
			return true;
	return false;
}

static size_t
count_of(const char *s, size_t len, const char *needle)
{
	size_t n = strlen(needle), c = 0;
	const char *p = s, *end = s + len, *q;

	while ((q = memmem(p, (size_t)(end - p), needle, n)) != NULL) {
		c++;
		p = q + n;
	}
	return c;
}

/*
 * Find the boundary in the top-level Content-Type and cut the report
 * into its parts; asserts the delimiter structure (3 parts, then the
 * close delimiter, then nothing).
 */
static void
split_report(struct report *rep)
{
	const char *s = rep->out.data, *b, *q, *start, *next, *sep;
	size_t len = rep->out.len, n;
	char delim[160];

	b = strstr(s, "\tboundary=\"");
	assert_non_null(b);
	b += strlen("\tboundary=\"");
	q = strchr(b, '"');
	assert_non_null(q);
	n = (size_t)(q - b);
	assert_true(n > 0 && n < sizeof(rep->boundary));
	memcpy(rep->boundary, b, n);
	rep->boundary[n] = '\0';

	snprintf(delim, sizeof(delim), "\r\n--%s", rep->boundary);
	start = memmem(s, len, delim, strlen(delim));
	assert_non_null(start);
	rep->nparts = 0;
	for (;;) {
		start += strlen(delim);
		if (memcmp(start, "--\r\n", 4) == 0) {
			assert_ptr_equal(start + 4, s + len);
			break;
		}
		assert_memory_equal(start, "\r\n", 2);
		start += 2;
		next = memmem(start, len - (size_t)(start - s), delim,
		    strlen(delim));
		assert_non_null(next);
		assert_true(rep->nparts < 3);
		sep = memmem(start, (size_t)(next - start), "\r\n\r\n", 4);
		assert_non_null(sep);
		rep->p[rep->nparts].hdr = start;
		rep->p[rep->nparts].hlen = (size_t)(sep - start) + 2;
		rep->p[rep->nparts].body = sep + 4;
		rep->p[rep->nparts].blen = (size_t)(next - sep - 4);
		rep->nparts++;
		start = next;
	}
	assert_int_equal(rep->nparts, 3);
}

/*
 * Build into rep (freeing what it held), check every line, split.
 * Returns dsn_build's result.  rep must be zeroed before its first use.
 */
static int
build(struct report *rep, const struct envelope *e, const char *content,
    size_t clen, const struct dsn_rcpt *r, size_t n,
    const struct dsn_info *info, size_t max)
{
	int rc;

	buf_free(&rep->out);
	memset(rep, 0, sizeof(*rep));
	buf_init(&rep->out);
	rc = dsn_build(e, content, clen, r, n, info, max, &rep->out);
	if (rc != 0)
		return rc;
	check_lines(rep->out.data, rep->out.len);
	split_report(rep);
	return 0;
}

static void
report_free(struct report *rep)
{
	buf_free(&rep->out);
}

/* What most tests start from: a failure report about bob, RET=FULL. */
struct fx {
	struct envelope	e;
	struct dsn_info	info;
	struct dsn_rcpt	r[5];
	struct report	rep;
};

static int
fx_setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));

	env_fill(&f->e, SMTP_RET_FULL, "");
	f->info = info_fill("018c2f6a4b1d3e9a0c11");
	f->r[0] = rcpt_fill("bob@example.org", DSN_FAILED, "5.1.1",
	    "550 5.1.1 unknown");
	buf_init(&f->rep.out);
	*state = f;
	return 0;
}

static int
fx_teardown(void **state)
{
	struct fx *f = *state;

	report_free(&f->rep);
	envelope_free(&f->e);
	free(f);
	return 0;
}

/* Build f->rep about f->r[0..n) with the standard original. */
static int
fx_build(struct fx *f, size_t n)
{
	return build(&f->rep, &f->e, original, strlen(original), f->r, n,
	    &f->info, 100000);
}

#define PART_HAS(rep, i, line)						\
	has_line((rep)->p[i].body, (rep)->p[i].blen, (line))
#define HDR_HAS(rep, i, line)						\
	has_line((rep)->p[i].hdr, (rep)->p[i].hlen, (line))

/* The delivery-status part test_structure expects, to the byte. */
static const char status_structure[] =
    "Reporting-MTA: dns; " MTA "\r\n"
    "Arrival-Date: Tue, 14 Nov 2023 21:13:20 +0000\r\n"
    "\r\n"
    "Final-Recipient: rfc822;bob@example.org\r\n"
    "Action: failed\r\n"
    "Status: 5.1.1\r\n"
    "Remote-MTA: dns;mx.example.org\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.org>: Recipient "
    "address rejected\r\n"
    "Last-Attempt-Date: Tue, 14 Nov 2023 22:12:20 +0000\r\n"
    "\r\n"
    "Final-Recipient: rfc822;carol@example.net\r\n"
    "Action: failed\r\n"
    "Status: 5.4.7\r\n"
    "Diagnostic-Code: X-ombud; delivery time expired\r\n";

static void
test_structure(void **state)
{
	struct fx *f = *state;
	struct report *rep = &f->rep;
	const char *s, *hdr_end;
	size_t hlen;

	f->r[0].diagnostic =
	    "550 5.1.1 <bob@example.org>: Recipient address rejected";
	f->r[1] = rcpt_fill("carol@example.net", DSN_FAILED, "5.4.7",
	    "delivery time expired");
	f->r[1].remote_mta = NULL;
	f->r[1].last_attempt = 0;
	assert_int_equal(fx_build(f, 2), 0);
	s = rep->out.data;
	hdr_end = strstr(s, "\r\n\r\n");
	assert_non_null(hdr_end);
	hlen = (size_t)(hdr_end - s) + 2;

	assert_true(has_line(s, hlen,
	    "From: \"Mail Delivery System\" <postmaster@ombud.example>"));
	assert_true(has_line(s, hlen, "To: <alice@example.com>"));
	assert_true(has_line(s, hlen,
	    "Subject: Undelivered Mail Returned to Sender"));
	assert_true(has_line(s, hlen, "Date: Tue, 14 Nov 2023 22:13:20 +0000"));
	assert_true(has_line_prefix(s, hlen, "Message-ID: <1700000000."));
	assert_non_null(strstr(s, ".dsn@" MTA ">\r\n"));
	assert_true(has_line(s, hlen, "MIME-Version: 1.0"));
	assert_true(has_line(s, hlen, "Auto-Submitted: auto-replied"));
	assert_true(has_line(s, hlen, "Content-Type: multipart/report; "
	    "report-type=delivery-status;"));
	assert_false(has_line_prefix(s, hlen, "Content-Transfer-Encoding:"));
	/* The boundary occurs in Content-Type and the 4 delimiters only. */
	assert_int_equal(count_of(s, rep->out.len, rep->boundary), 5);

	/* Part 1: the explanation, naming each recipient and reply. */
	assert_true(HDR_HAS(rep, 0, "Content-Type: text/plain; charset=utf-8"));
	assert_true(HDR_HAS(rep, 0, "Content-Transfer-Encoding: 7bit"));
	assert_true(PART_HAS(rep, 0,
	    "<bob@example.org>: delivery failed (5.1.1)"));
	assert_true(PART_HAS(rep, 0, "    Reply: 550 5.1.1 <bob@example.org>: "
	    "Recipient address rejected"));
	assert_true(PART_HAS(rep, 0,
	    "<carol@example.net>: delivery failed (5.4.7)"));
	assert_true(PART_HAS(rep, 0, "    Reason: delivery time expired"));

	/* Part 2: per-message fields, then one block per recipient. */
	assert_true(HDR_HAS(rep, 1, "Content-Type: message/delivery-status"));
	assert_int_equal(rep->p[1].blen, strlen(status_structure));
	assert_memory_equal(rep->p[1].body, status_structure,
	    rep->p[1].blen);

	/* Part 3: the whole original, unchanged. */
	assert_true(HDR_HAS(rep, 2, "Content-Type: message/rfc822"));
	assert_true(HDR_HAS(rep, 2, "Content-Transfer-Encoding: 7bit"));
	assert_int_equal(rep->p[2].blen, strlen(original));
	assert_memory_equal(rep->p[2].body, original, strlen(original));
}

static void
test_same_input_same_report(void **state)
{
	struct fx *f = *state;
	struct report again = { .out = { NULL, 0, 0 } };

	assert_int_equal(fx_build(f, 1), 0);
	assert_int_equal(build(&again, &f->e, original, strlen(original),
	    f->r, 1, &f->info, 100000), 0);
	assert_int_equal(f->rep.out.len, again.out.len);
	assert_memory_equal(f->rep.out.data, again.out.data, again.out.len);
	/* Another seed: another boundary and Message-ID. */
	f->info.boundary_seed = "another";
	assert_int_equal(fx_build(f, 1), 0);
	assert_string_not_equal(f->rep.boundary, again.boundary);
	assert_null(memmem(f->rep.out.data, f->rep.out.len, again.boundary,
	    strlen(again.boundary)));
	assert_null(strstr(f->rep.out.data, strstr(again.out.data,
	    "Message-ID: ")));
	report_free(&again);
}

/* The report's Subject, one of its Action/Status pairs, part 3's type. */
static void
assert_kind(const struct report *rep, const char *subject,
    const char *action, const char *status, const char *part3)
{
	char line[128];

	snprintf(line, sizeof(line), "Subject: %s", subject);
	assert_true(has_line(rep->out.data, rep->out.len, line));
	snprintf(line, sizeof(line), "Action: %s\r\nStatus: %s\r\n", action,
	    status);
	assert_non_null(memmem(rep->p[1].body, rep->p[1].blen, line,
	    strlen(line)));
	snprintf(line, sizeof(line), "Content-Type: %s", part3);
	assert_true(HDR_HAS(rep, 2, line));
}

static void
test_subjects_and_actions(void **state)
{
	struct fx *f = *state;
	struct report *rep = &f->rep;

	/* RFC 3461 4.3: no failure, headers only, whatever RET says. */
	f->r[0] = rcpt_fill("bob@example.org", DSN_DELAYED, "4.4.1",
	    "421 4.4.1 try later");
	assert_int_equal(fx_build(f, 1), 0);
	assert_kind(rep, "Delayed Mail (still being retried)", "delayed",
	    "4.4.1", "text/rfc822-headers");
	assert_null(memmem(rep->out.data, rep->out.len, "SECRET-BODY", 11));

	f->r[0] = rcpt_fill("bob@example.org", DSN_DELIVERED, NULL, NULL);
	assert_int_equal(fx_build(f, 1), 0);
	assert_kind(rep, "Successful Mail Delivery Report", "delivered",
	    "2.0.0", "text/rfc822-headers");
	assert_false(has_line_prefix(rep->p[1].body, rep->p[1].blen,
	    "Diagnostic-Code:"));

	/* A failure among delays is a failure report; bad status replaced. */
	f->r[0] = rcpt_fill("bob@example.org", DSN_DELAYED, "4.4.1", NULL);
	f->r[1] = rcpt_fill("carol@example.org", DSN_FAILED, "5.1.1\r\nX: y",
	    NULL);
	assert_int_equal(fx_build(f, 2), 0);
	assert_kind(rep, "Undelivered Mail Returned to Sender", "failed",
	    "5.0.0", "message/rfc822");
	assert_true(PART_HAS(rep, 1, "Action: delayed"));
	assert_false(has_line_prefix(rep->out.data, rep->out.len, "X: y"));
}

static void
test_ret_hdrs_vs_full(void **state)
{
	struct fx *f = *state;
	struct report *rep = &f->rep;
	size_t hlen = (size_t)(strstr(original, "\r\n\r\n") + 2 - original);

	f->e.ret = SMTP_RET_HDRS;
	assert_int_equal(fx_build(f, 1), 0);
	assert_true(HDR_HAS(rep, 2, "Content-Type: text/rfc822-headers"));
	assert_int_equal(rep->p[2].blen, hlen);
	assert_memory_equal(rep->p[2].body, original, hlen);
	assert_null(memmem(rep->out.data, rep->out.len, "SECRET-BODY", 11));
	assert_null(memmem(rep->out.data, rep->out.len, "lunch?", 6));
	assert_true(PART_HAS(rep, 0,
	    "The headers of your message are attached."));

	/* RET unset means the whole message, like FULL. */
	f->e.ret = SMTP_RET_UNSET;
	assert_int_equal(fx_build(f, 1), 0);
	assert_true(HDR_HAS(rep, 2, "Content-Type: message/rfc822"));
	assert_true(PART_HAS(rep, 2, "SECRET-BODY-LINE"));
	assert_true(PART_HAS(rep, 0, "Your message is attached."));

	/* A header section without a body: all of it, and nothing else. */
	f->e.ret = SMTP_RET_HDRS;
	assert_int_equal(build(rep, &f->e, "Subject: x\r\nFrom: a@b", 21,
	    f->r, 1, &f->info, 100000), 0);
	assert_int_equal(rep->p[2].blen, 23);
	assert_memory_equal(rep->p[2].body, "Subject: x\r\nFrom: a@b\r\n", 23);
}

static void
test_truncation(void **state)
{
	struct fx *f = *state;
	struct report *rep = &f->rep;
	struct buf orig;
	size_t i, max, cut;

	buf_init(&orig);
	buf_adds(&orig, "Subject: big\r\n\r\n");
	for (i = 0; i < 200; i++)
		buf_printf(&orig, "body line %03zu of the message\r\n", i);

	for (max = 990; max < 1040; max += 7) {
		assert_int_equal(build(rep, &f->e, orig.data, orig.len, f->r,
		    1, &f->info, max), 0);
		/* The longest prefix <= max that ends with a line. */
		for (cut = max; cut > 0 && orig.data[cut - 1] != '\n'; cut--)
			;
		assert_int_equal(rep->p[2].blen, cut);
		assert_memory_equal(rep->p[2].body, orig.data, cut);
		assert_true(HDR_HAS(rep, 2, "Content-Type: message/rfc822"));
		assert_non_null(memmem(rep->p[0].body, rep->p[0].blen,
		    "cut to its first", 16));
	}

	/* Exactly the whole message: not truncated. */
	assert_int_equal(build(rep, &f->e, orig.data, orig.len, f->r, 1,
	    &f->info, orig.len), 0);
	assert_int_equal(rep->p[2].blen, orig.len);
	assert_null(memmem(rep->p[0].body, rep->p[0].blen, "cut to", 6));

	/* A first line longer than the limit: nothing of the original. */
	assert_int_equal(build(rep, &f->e, orig.data, orig.len, f->r, 1,
	    &f->info, 5), 0);
	assert_int_equal(rep->p[2].blen, 0);

	/* RET=HDRS is bounded too. */
	f->e.ret = SMTP_RET_HDRS;
	assert_int_equal(build(rep, &f->e, orig.data, orig.len, f->r, 1,
	    &f->info, 15), 0);
	assert_int_equal(rep->p[2].blen, 14);
	assert_memory_equal(rep->p[2].body, "Subject: big\r\n", 14);
	buf_free(&orig);
}

static void
test_orcpt_envid(void **state)
{
	struct fx *f = *state;
	struct report *rep = &f->rep;

	strcpy(f->e.envid, "QQ314159+2Bx");
	f->r[0].orcpt = "rfc822;b+2Bo@example.org";
	f->r[1] = rcpt_fill("carol@example.org", DSN_FAILED, "5.1.1", "550");
	f->r[2] = rcpt_fill("dave@example.org", DSN_FAILED, "5.1.1", "550");
	f->r[2].orcpt = "rfc822;x\r\nX-Injected: 1";
	assert_int_equal(fx_build(f, 3), 0);
	assert_true(PART_HAS(rep, 1, "Original-Envelope-Id: QQ314159+2Bx"));
	assert_int_equal(count_of(rep->p[1].body, rep->p[1].blen,
	    "Original-Recipient:"), 1);
	/* ORCPT comes right before the Final-Recipient it belongs to. */
	assert_non_null(strstr(rep->p[1].body,
	    "\r\n\r\nOriginal-Recipient: rfc822;b+2Bo@example.org\r\n"
	    "Final-Recipient: rfc822;bob@example.org\r\n"));
	assert_null(strstr(rep->out.data, "X-Injected"));

	/* A hostile ENVID is left out, not passed through. */
	strcpy(f->e.envid, "a\r\nb");
	assert_int_equal(fx_build(f, 1), 0);
	assert_false(has_line_prefix(rep->p[1].body, rep->p[1].blen,
	    "Original-Envelope-Id:"));
}

/* dsn_build refuses and leaves out as it was ("keep"). */
static void
assert_refused(struct fx *f, const struct dsn_rcpt *r, size_t n)
{
	struct buf out;

	buf_init(&out);
	buf_adds(&out, "keep");
	assert_int_equal(dsn_build(&f->e, original, strlen(original), r, n,
	    &f->info, 100000, &out), -1);
	assert_int_equal(out.len, 4);
	assert_string_equal(out.data, "keep");
	buf_free(&out);
}

static void
test_null_sender_refused(void **state)
{
	struct fx *f = *state;

	f->e.mail_from[0] = '\0';
	assert_refused(f, f->r, 1);
	strcpy(f->e.mail_from, "<>");
	assert_refused(f, f->r, 1);
}

static void
test_unusable_inputs_refused(void **state)
{
	struct fx *f = *state;

	assert_refused(f, f->r, 0);
	assert_refused(f, NULL, 1);
	f->info.reporting_mta = "bad host\r\nX: y";
	assert_refused(f, f->r, 1);
	f->info = info_fill("q6");
	f->info.postmaster = NULL;
	assert_refused(f, f->r, 1);
	f->info.postmaster = "post\nmaster@x";
	assert_refused(f, f->r, 1);
	f->info = info_fill("q6");
	f->info.now = -1;
	assert_refused(f, f->r, 1);
	f->info = info_fill("q6");
	strcpy(f->e.mail_from, "alice@example.com\r\nBcc: x@y");
	assert_refused(f, f->r, 1);
	memset(f->e.mail_from, 'a', sizeof(f->e.mail_from)); /* no NUL */
	assert_refused(f, f->r, 1);
	strcpy(f->e.mail_from, "alice@example.com");
	f->r[0].addr = NULL;
	assert_refused(f, f->r, 1);
	f->r[0].addr = "";
	assert_refused(f, f->r, 1);
	f->r[0].addr = "bob@example.org";
	f->r[0].action = (enum dsn_action)42;
	assert_refused(f, f->r, 1);
	f->r[0].action = DSN_FAILED;
	assert_int_equal(fx_build(f, 1), 0);
}

/* The bytes of the delivery-status part are all 7-bit. */
static void
assert_7bit(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		assert_true((unsigned char)s[i] < 0x80);
}

static void
test_hostile_diagnostics(void **state)
{
	static const char nul_diag[] = "550 5.1.1 first\0SECRET-AFTER-NUL";
	struct fx *f = *state;
	struct report *rep = &f->rep;
	char *huge;
	const char *d, *eol;
	size_t i;

	f->e.ret = SMTP_RET_HDRS;
	huge = xmalloc(5001);
	for (i = 0; i < 5000; i++)
		huge[i] = i < 4 ? "550 "[i] : (char)('a' + (i - 4) % 26);
	huge[5000] = '\0';
	f->r[0].diagnostic =
	    "550-5.1.1 first line\r\n550 5.1.1 second\r\nBcc: evil@x\r\n"
	    "\rContent-Type: text/html\n\x01\x1b[31m\x7f end";
	f->r[1] = rcpt_fill("carol@example.org", DSN_FAILED, "5.1.1",
	    nul_diag);
	f->r[2] = rcpt_fill("dave@example.org", DSN_FAILED, "5.1.1", huge);
	f->r[3] = rcpt_fill("erin@example.org", DSN_FAILED, "5.1.1",
	    "550 5.1.1 Postfach unbekannt: j\xc3\xbcrgen \xe2\x80\xae"
	    "txt.exe \xff\xfe bad");
	f->r[4] = rcpt_fill("frank@example.org", DSN_FAILED, "5.1.1", "");
	f->r[4].remote_mta = "mx.example.org\r\nX-Evil: 1";
	assert_int_equal(fx_build(f, 5), 0);

	/* No injected header, MIME field or line anywhere. */
	assert_false(has_line_prefix(rep->out.data, rep->out.len, "Bcc:"));
	assert_false(has_line_prefix(rep->out.data, rep->out.len,
	    "Content-Type: text/html"));
	assert_null(strstr(rep->out.data, "X-Evil"));
	assert_null(strstr(rep->out.data, "\x1b"));
	assert_non_null(strstr(rep->p[1].body, "\r\nDiagnostic-Code: smtp; "
	    "550-5.1.1 first line 550 5.1.1 second Bcc: evil@x\r\n"
	    " Content-Type: text/html [31m end\r\n"));
	/* Text after a NUL is not part of the C string. */
	assert_true(PART_HAS(rep, 1, "Diagnostic-Code: smtp; 550 5.1.1 "
	    "first"));
	assert_null(strstr(rep->out.data, "SECRET-AFTER-NUL"));

	/* 5000 bytes: bounded, cut with " ...", lines still <= 998. */
	d = strstr(rep->p[1].body, "Diagnostic-Code: smtp; 550\r\n abcd");
	assert_non_null(d);
	eol = strstr(d, "\r\nLast-Attempt-Date:");
	assert_non_null(eol);
	assert_true(eol - d < 1200);
	assert_non_null(memmem(d, (size_t)(eol - d), " ...", 4));

	/* UTF-8: kept in the human part, '?' in the 7-bit status part;
	 * the bidi override and invalid bytes never pass. */
	assert_true(PART_HAS(rep, 0, "    Reply: 550 5.1.1 Postfach "
	    "unbekannt: j\xc3\xbcrgen txt.exe ?? bad"));
	assert_true(PART_HAS(rep, 1, "Diagnostic-Code: smtp; 550 5.1.1 "
	    "Postfach unbekannt: j?rgen txt.exe ?? bad"));
	assert_null(strstr(rep->out.data, "\xe2\x80\xae"));
	assert_7bit(rep->p[1].body, rep->p[1].blen);
	assert_true(HDR_HAS(rep, 0, "Content-Transfer-Encoding: 8bit"));
	assert_true(has_line(rep->out.data, rep->out.len,
	    "Content-Transfer-Encoding: 8bit"));

	/* Empty diagnostic: no field; hostile Remote-MTA: left out. */
	d = strstr(rep->p[1].body, "rfc822;frank@example.org\r\n");
	assert_non_null(d);
	assert_null(strstr(d, "Diagnostic-Code:"));
	assert_null(strstr(d, "Remote-MTA:"));

	/* Folding: short words give lines of at most 78 octets. */
	for (d = rep->p[1].body; d < rep->p[1].body + rep->p[1].blen;
	    d = eol + 2) {
		eol = strstr(d, "\r\n");
		assert_non_null(eol);
		if (memmem(d, (size_t)(eol - d), "abcdefgh", 8) == NULL)
			assert_true(eol - d <= 78);
	}
	free(huge);
}

static void
test_utf8_recipient(void **state)
{
	struct fx *f = *state;
	struct report *rep = &f->rep;

	strcpy(f->e.mail_from, "j\xc3\xb6rg@example.de");
	f->e.smtputf8 = true;
	f->r[0].addr = "j\xc3\xbcrgen@ex\xc3\xa4mple.de";
	f->r[1] = rcpt_fill("\"a b+c=d\"@\xe4\xbe\x8b.\xf0\x9f\x98\x80",
	    DSN_FAILED, "5.1.1", "550 no");
	assert_int_equal(fx_build(f, 2), 0);
	assert_true(has_line(rep->out.data, rep->out.len,
	    "To: <j\xc3\xb6rg@example.de>"));
	assert_true(PART_HAS(rep, 1,
	    "Final-Recipient: utf-8;j\\x{FC}rgen@ex\\x{E4}mple.de"));
	assert_true(PART_HAS(rep, 1, "Final-Recipient: utf-8;\"a\\x{20}b"
	    "\\x{2B}c\\x{3D}d\"@\\x{4F8B}.\\x{1F600}"));
	assert_7bit(rep->p[1].body, rep->p[1].blen);
	assert_true(PART_HAS(rep, 0, "<j\xc3\xbcrgen@ex\xc3\xa4mple.de>: "
	    "delivery failed (5.1.1)"));
}

static void
test_hostile_original(void **state)
{
	struct fx *f = *state;
	struct report *rep = &f->rep;
	struct buf orig;
	size_t i;

	buf_init(&orig);
	buf_adds(&orig, "Subject: bare\nX-A: cr\rX-B: n");
	buf_add(&orig, "\0ul\r\n", 5);
	buf_adds(&orig, "X-Long: ");
	for (i = 0; i < 3000; i++)
		buf_addc(&orig, 'h');
	buf_adds(&orig, "\r\n\r\nbody \xc3\xa9\n\r");
	for (i = 0; i < 5000; i++)
		buf_addc(&orig, 'b');
	buf_adds(&orig, "\r\nno final newline");

	assert_int_equal(build(rep, &f->e, orig.data, orig.len, f->r, 1,
	    &f->info, 1000000), 0);
	assert_true(HDR_HAS(rep, 2, "Content-Transfer-Encoding: 8bit"));
	assert_true(has_line(rep->out.data, rep->out.len,
	    "Content-Transfer-Encoding: 8bit"));
	assert_true(PART_HAS(rep, 2, "Subject: bare"));
	assert_true(PART_HAS(rep, 2, "X-A: cr"));
	assert_true(PART_HAS(rep, 2, "X-B: nul"));
	/* The long header is folded, the long body line is cut. */
	assert_true(has_line_prefix(rep->p[2].body, rep->p[2].blen, " hhh"));
	assert_true(has_line_prefix(rep->p[2].body, rep->p[2].blen, "bbb"));
	assert_true(PART_HAS(rep, 2, "no final newline"));

	/* Headers only: stops at the first empty line, bare LF or not. */
	f->e.ret = SMTP_RET_HDRS;
	assert_int_equal(build(rep, &f->e, "A: 1\n\nB: body\r\n", 15, f->r, 1,
	    &f->info, 1000), 0);
	assert_int_equal(rep->p[2].blen, 6);
	assert_memory_equal(rep->p[2].body, "A: 1\r\n", 6);

	/* No content at all. */
	assert_int_equal(build(rep, &f->e, NULL, 0, f->r, 1, &f->info, 1000),
	    0);
	assert_int_equal(rep->p[2].blen, 0);
	buf_free(&orig);
}

static void
test_boundary_collision(void **state)
{
	struct fx *f = *state;
	struct report *rep = &f->rep;
	struct buf orig;
	char first[128], second[128], prefix[128];
	size_t plen, i;

	assert_int_equal(fx_build(f, 1), 0);
	strcpy(first, rep->boundary);
	plen = strlen(first) - 8;		/* without the counter */
	memcpy(prefix, first, plen);
	prefix[plen] = '\0';

	/* The original holds the boundary we would pick, as a delimiter. */
	buf_init(&orig);
	buf_printf(&orig, "Subject: crafted\r\n\r\n--%s\r\nContent-Type: "
	    "text/html\r\n\r\nfake\r\n--%s--\r\n", first, first);
	assert_int_equal(build(rep, &f->e, orig.data, orig.len, f->r, 1,
	    &f->info, 100000), 0);
	assert_string_not_equal(rep->boundary, first);
	assert_int_equal(count_of(rep->out.data, rep->out.len,
	    rep->boundary), 5);
	assert_memory_equal(rep->p[2].body, orig.data, orig.len);

	/* And the next candidates too; one hidden behind a NUL, which the
	 * copy drops. */
	for (i = 1; i < 40; i++)
		buf_printf(&orig, "%s%08zx\r\n", prefix, i);
	buf_add(&orig, prefix, 4);
	buf_addc(&orig, '\0');
	buf_printf(&orig, "%s%08x\r\n", prefix + 4, 40);
	assert_int_equal(build(rep, &f->e, orig.data, orig.len, f->r, 1,
	    &f->info, 100000), 0);
	assert_int_equal(count_of(rep->out.data, rep->out.len,
	    rep->boundary), 5);
	assert_null(memmem(rep->p[2].body, rep->p[2].blen, rep->boundary,
	    strlen(rep->boundary)));

	/* A diagnostic cannot collide either. */
	strcpy(second, rep->boundary);
	f->r[0].diagnostic = second;
	assert_int_equal(build(rep, &f->e, orig.data, orig.len, f->r, 1,
	    &f->info, 100000), 0);
	assert_string_not_equal(rep->boundary, second);
	assert_int_equal(count_of(rep->out.data, rep->out.len,
	    rep->boundary), 5);
	buf_free(&orig);
}

/* Random inputs: whatever they hold, the lines stay valid. */
static void
test_random_inputs_lines(void **state)
{
	struct fx *f = *state;
	struct report *rep = &f->rep;
	char orig[4096], text[6][700];
	unsigned seed = 12345;
	size_t round, i, k;

	for (round = 0; round < 300; round++) {
		for (i = 0; i < sizeof(orig); i++) {
			seed = seed * 1103515245 + 12345;
			orig[i] = (char)(seed >> 16);
			if ((seed >> 8) % 7 == 0)
				orig[i] = "\r\n \0-"[(seed >> 20) % 5];
		}
		/* Three diagnostics and three addresses (the latter cut
		 * to at most 63 bytes). */
		for (k = 0; k < 6; k++) {
			for (i = 0; i + 1 < sizeof(text[k]); i++) {
				seed = seed * 1103515245 + 12345;
				text[k][i] = (char)((seed >> 16) | 1);
			}
			text[k][k < 3 ? i : 63] = '\0';
		}
		for (k = 0; k < 3; k++)
			f->r[k] = rcpt_fill(text[k + 3],
			    (enum dsn_action)(k % 3), "5.1.1", text[k]);
		f->e.ret = round % 2 ? SMTP_RET_HDRS : SMTP_RET_FULL;
		assert_int_equal(build(rep, &f->e, orig, sizeof(orig), f->r,
		    3, &f->info, round * 13), 0);
		assert_7bit(rep->p[1].body, rep->p[1].blen);
		assert_int_equal(count_of(rep->out.data, rep->out.len,
		    rep->boundary), 5);
	}
}

/*
 * An independent reader: Python's email package parses each report
 * written to a file.  argv: PATH:EXPECTED-CONTENT-TYPE-OF-PART-3 ...
 */
static const char py_check[] =
    "import sys, email, email.policy\n"
    "for arg in sys.argv[1:]:\n"
    "    path, want = arg.rsplit(':', 1)\n"
    "    data = open(path, 'rb').read()\n"
    "    assert data.endswith(b'\\r\\n'), path\n"
    "    for ln in data.split(b'\\r\\n'):\n"
    "        assert b'\\r' not in ln and b'\\n' not in ln, path\n"
    "        assert len(ln) <= 998, path\n"
    "    m = email.message_from_bytes(data, policy=email.policy.default)\n"
    "    assert not m.defects, (path, m.defects)\n"
    "    assert m.get_content_type() == 'multipart/report', path\n"
    "    assert m.get_param('report-type') == 'delivery-status', path\n"
    "    assert str(m['Auto-Submitted']) == 'auto-replied', path\n"
    "    assert m['Date'].datetime is not None, path\n"
    "    assert m['Message-ID'] and m['Subject'] and m['From'], path\n"
    "    parts = m.get_payload()\n"
    "    assert len(parts) == 3, (path, len(parts))\n"
    "    for p in parts:\n"
    "        assert not p.defects, (path, p.defects)\n"
    "    assert parts[0].get_content_type() == 'text/plain', path\n"
    "    assert parts[0].get_content_charset() == 'utf-8', path\n"
    "    assert 'mail system' in parts[0].get_content(), path\n"
    "    assert parts[1].get_content_type() == "
    "'message/delivery-status', path\n"
    "    blocks = parts[1].get_payload()\n"
    "    assert len(blocks) >= 2, (path, len(blocks))\n"
    "    assert str(blocks[0]['Reporting-MTA']).startswith('dns;'), path\n"
    "    assert blocks[0]['Final-Recipient'] is None, path\n"
    "    for b in blocks[1:]:\n"
    "        assert b['Final-Recipient'] is not None, path\n"
    "        assert str(b['Action']) in ('failed', 'delayed', "
    "'delivered'), path\n"
    "        assert str(b['Status'])[:1] in '245', path\n"
    "        assert b['Reporting-MTA'] is None, path\n"
    "    assert parts[2].get_content_type() == want, (path, "
    "parts[2].get_content_type())\n"
    "    if want == 'message/rfc822':\n"
    "        inner = parts[2].get_payload()\n"
    "        assert len(inner) == 1 and inner[0]['Subject'], path\n"
    "print('ok', len(sys.argv) - 1)\n";

/* Write rep to DIR/reportN.eml; arg becomes "PATH:want" for py_check. */
static void
write_report(const struct report *rep, const char *dir, size_t n,
    const char *want, char *arg, size_t argsz)
{
	char path[64];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/report%zu.eml", dir, n);
	fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(rep->out.data, 1, rep->out.len, fp),
	    rep->out.len);
	assert_int_equal(fclose(fp), 0);
	snprintf(arg, argsz, "%s:%s", path, want);
}

static void
test_python_email_parser(void **state)
{
	struct fx *f = *state;
	struct report *rep = &f->rep;
	struct buf big;
	const char *eightbit = "Subject: caf\xc3\xa9\r\n\r\nhi\r\n";
	char dir[] = "/tmp/test_dsn.XXXXXX", arg[4][128];
	char *argv[9];
	pid_t pid;
	int status;
	size_t i;

	if (access(PYTHON, X_OK) != 0)
		skip();
	assert_non_null(mkdtemp(dir));

	/* 1: failure, whole 8-bit original. */
	strcpy(f->e.envid, "QQ314159");
	f->r[0].diagnostic = "550 5.1.1 The email account that you tried to "
	    "reach does not exist. Please try double-checking the "
	    "recipient's email address for typos or unnecessary spaces.";
	f->r[0].orcpt = "rfc822;bob@example.org";
	assert_int_equal(build(rep, &f->e, eightbit, strlen(eightbit), f->r,
	    1, &f->info, 100000), 0);
	write_report(rep, dir, 0, "message/rfc822", arg[0], sizeof(arg[0]));

	/* 2: RET=HDRS, two recipients. */
	f->e.ret = SMTP_RET_HDRS;
	f->r[1] = rcpt_fill("carol@example.net", DSN_FAILED, "5.4.7", NULL);
	assert_int_equal(fx_build(f, 2), 0);
	write_report(rep, dir, 1, "text/rfc822-headers", arg[1],
	    sizeof(arg[1]));

	/* 3: delays, a UTF-8 recipient. */
	f->e.ret = SMTP_RET_FULL;
	f->r[0] = rcpt_fill("j\xc3\xbcrgen@ex\xc3\xa4mple.de", DSN_DELAYED,
	    "4.4.1", "421 4.4.1 connection timed out");
	f->r[1] = rcpt_fill("dave@example.org", DSN_DELAYED, "4.2.2",
	    "452 4.2.2 mailbox full \xc3\xbc");
	f->r[2] = rcpt_fill("erin@example.org", DSN_DELIVERED, "2.0.0",
	    "250 2.0.0 ok");
	assert_int_equal(fx_build(f, 3), 0);
	write_report(rep, dir, 2, "text/rfc822-headers", arg[2],
	    sizeof(arg[2]));

	/* 4: hostile diagnostic, truncated original that carries what
	 * looks like our boundary. */
	buf_init(&big);
	buf_adds(&big, "Subject: big\r\n\r\n--" "=_ombud_\r\n");
	for (i = 0; i < 3000; i++)
		buf_printf(&big, "line %zu\r\n", i);
	f->r[0] = rcpt_fill("bob@example.org", DSN_FAILED, "5.1.1",
	    "550\r\nBcc: x\r\n\r\n--=_ombud_\r\nContent-Type: text/html");
	assert_int_equal(build(rep, &f->e, big.data, big.len, f->r, 1,
	    &f->info, 4000), 0);
	buf_free(&big);
	write_report(rep, dir, 3, "message/rfc822", arg[3], sizeof(arg[3]));

	argv[0] = (char *)PYTHON;
	argv[1] = (char *)"-I";
	argv[2] = (char *)"-c";
	argv[3] = (char *)py_check;
	for (i = 0; i < 4; i++)
		argv[4 + i] = arg[i];
	argv[8] = NULL;
	assert_int_equal(posix_spawn(&pid, PYTHON, NULL, NULL, argv, environ),
	    0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	for (i = 0; i < 4; i++)
		unlink(strtok(arg[i], ":"));
	rmdir(dir);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

#define T(fn)	cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_structure),
		T(test_same_input_same_report),
		T(test_subjects_and_actions),
		T(test_ret_hdrs_vs_full),
		T(test_truncation),
		T(test_orcpt_envid),
		T(test_null_sender_refused),
		T(test_unusable_inputs_refused),
		T(test_hostile_diagnostics),
		T(test_utf8_recipient),
		T(test_hostile_original),
		T(test_boundary_collision),
		T(test_random_inputs_lines),
		T(test_python_email_parser),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

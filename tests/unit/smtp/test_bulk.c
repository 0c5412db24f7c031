/*
 * test_bulk.c - bulk.c's parsers and its check, as tables: Date values,
 * Message-ID values, List-Unsubscribe values, and whole headers with the
 * verdict and the changes that must come out (spans removed, fields
 * added, the separator).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "smtp/bulk.h"

struct vcase {
	const char	*v;
	int		 want;
};

static const struct vcase dates[] = {
	{ "Mon, 23 Nov 2026 10:00:00 +0100", 1 },
	{ "23 Nov 2026 10:00 -0000", 1 },
	{ "Tue, 29 Feb 2000 00:00:00 +0000", 1 },	/* 2000 leaps */
	{ "Thu, 1 Jan 1970 00:00:60 UT", 1 },
	{ "Mon,2 Sep 2024 10:00:00 +0200", 1 },
	{ "(c)Mon(c),(c)2(c)Sep(c)2024(c)10(c):(c)00(c)+0200(c)", 1 },
	{ "Wed, 31 Dec 1969 23:59:59 A", 1 },
	{ "Thu, 1 Mar 1900 00:00:00 +0000", 1 },
	{ "Tue, 1 Mar 1900 00:00:00 +0000", 0 },	/* it was Thursday */
	{ "Thu, 29 Feb 1900 00:00:00 +0000", 0 },	/* 1900 does not */
	{ "Mon, 2 Sep 2024 10:00:00 J", 0 },
	{ "Mon, 2 Sep 2024 10:00:00 +0260", 0 },
	{ "Mon, 2 Sep 2024 10:00:00 +00000", 0 },
	{ "Mon, 2 Sep 2024 1:00:00 +0000", 0 },
	{ "Mon, 002 Sep 2024 10:00:00 +0000", 0 },
	{ "Mon, 2 Sep 2024 10:00:00 +0000 (", 0 },
	{ "Mon, 2 Sep 2024 10:00:00 +0000 ((((((((((((((((((((((((((((((("
	  "((((x))))))))))))))))))))))))))))))))))", 0 },	/* too deep */
	{ "", 0 },
};

static const struct vcase msgids[] = {
	{ "<a@b>", 1 },
	{ "  <1.2.3@x.example> (c)", 1 },
	{ "<\"a\\\" b\"@x>", 1 },
	{ "<a@[1.2.3.4]>", 1 },
	{ "<r\xc3\xa4ksm\xc3\xb6rg\xc3\xa5s@x>", 1 },	/* RFC 6532 */
	{ "<a@[1.2 3]>", 0 },
	{ "<a@[x\\]>", 0 },
	{ "<\"a@x>", 0 },
	{ "<a@b> x", 0 },
	{ "<a@b c>", 0 },
	{ "<a(c)@b>", 0 },
	{ "a@b", 0 },
	{ "", 0 },
};

static const struct vcase unsubs[] = {
	{ "<https://x/u>", BULK_URI_HTTPS },
	{ "<mailto:u@x>", BULK_URI_MAILTO },
	{ " <mailto:u@x> , (c) <HTTPS://x/u?a=b> ",
	  BULK_URI_HTTPS | BULK_URI_MAILTO },
	{ "<https://x/\r\n long/path>", BULK_URI_HTTPS },
	{ "<http://x/u>", BULK_URI_OTHER },
	{ "<https://>", BULK_URI_OTHER },
	{ "<ftp://x>,<mailto:a>", BULK_URI_OTHER | BULK_URI_MAILTO },
	{ "https://x/u", -1 },
	{ "<https://x/u>,", -1 },
	{ "<https://x/u> <mailto:a@b>", -1 },
	{ "<>", -1 },
	{ "<https://x/\x01>", -1 },
	{ "", -1 },
};

static void
test_values(void **state)
{
	char many[64 * 17];
	size_t n = 0;

	for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++)
		if (bulk_date_ok(dates[i].v, strlen(dates[i].v)) !=
		    (dates[i].want == 1))
			fail_msg("date %s: want %d", dates[i].v, dates[i].want);
	for (size_t i = 0; i < sizeof(msgids) / sizeof(msgids[0]); i++)
		if (bulk_msgid_ok(msgids[i].v, strlen(msgids[i].v)) !=
		    (msgids[i].want == 1))
			fail_msg("msgid %s: want %d", msgids[i].v,
			    msgids[i].want);
	for (size_t i = 0; i < sizeof(unsubs) / sizeof(unsubs[0]); i++)
		if (bulk_unsub_uris(unsubs[i].v, strlen(unsubs[i].v)) !=
		    unsubs[i].want)
			fail_msg("unsub %s: want %d", unsubs[i].v,
			    unsubs[i].want);
	/* BULK_URIS_MAX URIs, then one more */
	for (int i = 0; i < BULK_URIS_MAX; i++)
		n += (size_t)snprintf(many + n, sizeof(many) - n, "%s<mailto:%d>",
		    i ? "," : "", i);
	assert_int_equal(bulk_unsub_uris(many, n), BULK_URI_MAILTO);
	n += (size_t)snprintf(many + n, sizeof(many) - n, ",<mailto:x>");
	assert_int_equal(bulk_unsub_uris(many, n), -1);
	/* never past the length given */
	assert_false(bulk_date_ok("23 Nov 2026 10:00 +0100", 20));
	assert_false(bulk_msgid_ok("<a@b>", 4));
}

#define H_OK	"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n" \
		"Message-ID: <a@b>\r\n"

static void
test_check(void **state)
{
	struct bulk_check bc;
	struct buf out;
	const char *m;

	/* nothing to do */
	m = H_OK "From: a@b\r\n\r\nbody\r\n";
	assert_int_equal(bulk_check(m, strlen(m), false, &bc), 0);
	assert_false(bulk_changes(&bc));
	/* both added, in that order; the separator of a header-only one */
	m = "From: a@b\r\n";
	assert_int_equal(bulk_check(m, strlen(m), false, &bc), 0);
	assert_true(bc.add_date && bc.add_msgid && bc.add_separator);
	buf_init(&out);
	bulk_added_fields(&bc, "QID", "gw.test", 0, &out);
	assert_string_equal(out.data, "Date: Thu, 01 Jan 1970 00:00:00 +0000"
	    "\r\nMessage-ID: <19700101000000.QID@gw.test>\r\n");
	buf_reset(&out);
	bulk_copy_message(&bc, m, strlen(m), &out);
	assert_string_equal(out.data, "From: a@b\r\n\r\n");
	/* the header ends at a line that is no field: no separator */
	m = H_OK "not a field\r\nFrom: a@b\r\nFrom: c@d\r\n";
	assert_int_equal(bulk_check(m, strlen(m), false, &bc), 0);
	assert_false(bc.add_separator);
	/* X-Ombud-Bulk fields, folded, removed whole; Post added */
	m = "X-Ombud-Bulk: yes\r\n" H_OK "x-ombud-bulk:\r\n  no \r\n"
	    "List-Unsubscribe: <https://x/u>\r\n\r\nb\r\n";
	assert_int_equal(bulk_check(m, strlen(m), false, &bc), 0);
	assert_true(bc.bulk && bc.add_unsub_post && !bc.add_date);
	assert_int_equal(bc.nremove, 2);
	buf_reset(&out);
	bulk_copy_message(&bc, m, strlen(m), &out);
	assert_string_equal(out.data, H_OK
	    "List-Unsubscribe: <https://x/u>\r\n\r\nb\r\n");
	buf_reset(&out);
	bulk_added_fields(&bc, "QID", "gw.test", 0, &out);
	assert_string_equal(out.data, "List-Unsubscribe-Post: "
	    "List-Unsubscribe=One-Click\r\n");
	buf_free(&out);
	/* rejections, the first rule broken decides */
	m = "Date: x\r\nSubject: a\r\nSUBJECT: b\r\n\r\n";
	assert_int_equal(bulk_check(m, strlen(m), false, &bc), -1);
	assert_string_equal(bc.reply, "550 5.6.0 The message has more than "
	    "one Subject header field (RFC 5322 3.6 allows one)");
	m = H_OK "Precedence: bulk\r\n\r\n";
	assert_int_equal(bulk_check(m, strlen(m), false, &bc), -1);
	assert_non_null(strstr(bc.reply, "550 5.7.1 Bulk mail (Precedence: "
	    "bulk) must have a List-Unsubscribe"));
	assert_int_equal(bulk_check(m, strlen(m), true, &bc), 0);
	assert_string_equal(bc.reply, "");
	assert_non_null(strstr(bc.warning, "550 5.7.1 Bulk mail"));
	/* a body line that looks like a field is not one */
	m = H_OK "\r\nDate: y\r\nPrecedence: bulk\r\n";
	assert_int_equal(bulk_check(m, strlen(m), false, &bc), 0);
	assert_false(bc.bulk);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

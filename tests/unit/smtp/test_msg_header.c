/*
 * test_msg_header.c - the From field's domains, as a table of headers and
 * what must come out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "smtp/msg_header.h"

struct from_case {
	const char		*msg;
	enum msg_from_rc	 rc;
	const char		*domains;	/* space separated */
};

static const struct from_case cases[] = {
	{ "From: a@bostadsbolag.se\r\n\r\nbody", MSG_FROM_OK,
	  "bostadsbolag.se" },
	{ "Subject: x\r\nFROM: Felanm\xc3\xa4lan <felanmalan@Bostadsbolag.SE>"
	  "\r\nTo: b@c.d\r\n\r\n", MSG_FROM_OK, "bostadsbolag.se" },
	{ "From: \"Doe, John\" <john@x.se>, jane@y.se (Jane)\r\n\r\n",
	  MSG_FROM_OK, "x.se y.se" },
	{ "From: John Doe\r\n <john@x.se>\r\n\r\n", MSG_FROM_OK, "x.se" },
	{ "From:\r\n\tjohn@x.se\r\n\r\n", MSG_FROM_OK, "x.se" },
	{ "From: \"john doe\"@x.se\r\n\r\n", MSG_FROM_OK, "x.se" },
	{ "From: <@relay.example:john@x.se>\r\n\r\n", MSG_FROM_OK, "x.se" },
	{ "From: team: a@x.se, b@y.se;\r\n\r\n", MSG_FROM_OK, "x.se y.se" },
	{ "From: (comment (nested) \"q\") a@x.se\r\n\r\n", MSG_FROM_OK,
	  "x.se" },
	{ "From: \"<evil@other.se>\" <a@x.se>\r\n\r\n", MSG_FROM_OK, "x.se" },
	{ "From: a@x.se\nTo: b@y.se\n\nbody", MSG_FROM_OK, "x.se" },
	/* the body is not the header */
	{ "Subject: s\r\n\r\nFrom: a@x.se\r\n", MSG_FROM_NONE, "" },
	{ "Subject: s\r\n\r\n", MSG_FROM_NONE, "" },
	{ "From: a@x.se\r\nFrom: b@y.se\r\n\r\n", MSG_FROM_MANY, "" },
	{ "From: nobody\r\n\r\n", MSG_FROM_BAD, "" },
	{ "From: \r\n\r\n", MSG_FROM_BAD, "" },
	{ "From: <a@x.se\r\n\r\n", MSG_FROM_BAD, "" },
	{ "From: \"unterminated a@x.se\r\n\r\n", MSG_FROM_BAD, "" },
	{ "From: (unterminated a@x.se\r\n\r\n", MSG_FROM_BAD, "" },
	{ "From: <a@x.se> b@y.se\r\n\r\n", MSG_FROM_BAD, "" },
	{ "From: <a@x.se><b@y.se>\r\n\r\n", MSG_FROM_BAD, "" },
	{ "From: a@\r\n\r\n", MSG_FROM_BAD, "" },
	{ "From: @x.se\r\n\r\n", MSG_FROM_BAD, "" },
	{ "From: g: a@x.se\r\n\r\n", MSG_FROM_BAD, "" },
	{ "From: a@x.se;\r\n\r\n", MSG_FROM_BAD, "" },
	{ "From: a@x y.se\r\n\r\n", MSG_FROM_BAD, "" },
	/* From-Address is another field */
	{ "From-Address: a@x.se\r\nFrom: b@y.se\r\n\r\n", MSG_FROM_OK,
	  "y.se" },
};

static void
test_table(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char d[MSG_FROM_MAX][MSG_DOMAIN_MAX + 1], got[4096] = "";
		size_t n = 99;
		enum msg_from_rc rc = msg_from_domains(cases[i].msg,
		    strlen(cases[i].msg), d, &n);

		if (rc == MSG_FROM_OK)
			for (size_t k = 0; k < n; k++) {
				if (k)
					strcat(got, " ");
				strcat(got, d[k]);
			}
		if (rc != cases[i].rc || strcmp(got, cases[i].domains) != 0)
			fail_msg("case %zu %s: rc %d want %d, domains '%s' "
			    "want '%s'", i, cases[i].msg, rc, cases[i].rc, got,
			    cases[i].domains);
	}
}

static void
test_bounds(void **state)
{
	char d[MSG_FROM_MAX][MSG_DOMAIN_MAX + 1], msg[40000];
	size_t n, len = 0;

	/* more addresses than MSG_FROM_MAX */
	len = (size_t)snprintf(msg, sizeof(msg), "From: ");
	for (int i = 0; i < MSG_FROM_MAX + 1; i++)
		len += (size_t)snprintf(msg + len, sizeof(msg) - len,
		    "%sa@x%d.se", i ? ", " : "", i);
	len += (size_t)snprintf(msg + len, sizeof(msg) - len, "\r\n\r\n");
	assert_int_equal(msg_from_domains(msg, len, d, &n), MSG_FROM_BAD);
	/* a field longer than the unfolding buffer */
	len = (size_t)snprintf(msg, sizeof(msg), "From: ");
	while (len < 20000)	/* unfolds to over 8 KiB */
		len += (size_t)snprintf(msg + len, sizeof(msg) - len,
		    "\r\n x");
	len += (size_t)snprintf(msg + len, sizeof(msg) - len,
	    " <a@x.se>\r\n\r\n");
	assert_int_equal(msg_from_domains(msg, len, d, &n), MSG_FROM_BAD);
	/* no terminating empty line, no final CRLF: not read past len */
	assert_int_equal(msg_from_domains("From: a@x.se", 12, d, &n),
	    MSG_FROM_OK);
	assert_string_equal(d[0], "x.se");
	assert_int_equal(msg_from_domains("From: a@x.se", 8, d, &n),
	    MSG_FROM_BAD);
	/* a domain too long */
	len = (size_t)snprintf(msg, sizeof(msg), "From: a@");
	memset(msg + len, 'x', 300);
	len += 300;
	memcpy(msg + len, "\r\n\r\n", 4);
	len += 4;
	assert_int_equal(msg_from_domains(msg, len, d, &n), MSG_FROM_BAD);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

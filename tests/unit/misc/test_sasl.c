/*
 * test_sasl.c - SASL PLAIN and LOGIN decoding: tables of raw responses
 * (encoded here, so NULs are explicit) and of bad base64, field bounds,
 * authzid rules, outputs cleared on failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "smtp/sasl.h"
#include "table/credentials.h"

_Static_assert(SASL_USER_MAX == CREDENTIALS_USER_MAX, "user bounds");
_Static_assert(SASL_PASS_MAX == CREDENTIALS_PASS_MAX, "password bounds");

#define RAW(s)	s, sizeof(s) - 1

/* Base64 (standard, padded) of n raw bytes, in a static buffer. */
static const char *
b64(const void *raw, size_t n)
{
	static char out[4096];

	assert_true(sodium_base64_ENCODED_LEN(n,
	    sodium_base64_VARIANT_ORIGINAL) <= sizeof(out));
	return sodium_bin2base64(out, sizeof(out), raw, n,
	    sodium_base64_VARIANT_ORIGINAL);
}

/* "authzid\0authcid\0passwd" with fields of the given lengths. */
static size_t
plain_raw(char *out, size_t zlen, size_t clen, size_t plen)
{
	size_t n = 0;

	memset(out + n, 'u', zlen);
	n += zlen;
	out[n++] = '\0';
	memset(out + n, 'u', clen);
	n += clen;
	out[n++] = '\0';
	memset(out + n, 'p', plen);
	n += plen;
	return n;
}

static const struct {
	const char	*raw;
	size_t		 len;
	const char	*user;		/* NULL: must be rejected */
	const char	*pass;
} plain[] = {
	{ RAW("\0alice\0secret"), "alice", "secret" },
	{ RAW("alice\0alice\0secret"), "alice", "secret" },
	{ RAW("\0alice@example.com\0p\xc3\xa4ss w:rd"), "alice@example.com",
	  "p\xc3\xa4ss w:rd" },
	{ RAW("\0a\0b"), "a", "b" },
	/* authzid must be empty or authcid */
	{ RAW("admin\0alice\0secret"), NULL, NULL },
	{ RAW("alicex\0alice\0secret"), NULL, NULL },
	{ RAW("alic\0alice\0secret"), NULL, NULL },
	{ RAW("Alice\0alice\0secret"), NULL, NULL },
	/* structure */
	{ RAW("alicesecret"), NULL, NULL },
	{ RAW("alice\0secret"), NULL, NULL },
	{ RAW("\0alice"), NULL, NULL },
	{ RAW("\0\0secret"), NULL, NULL },
	{ RAW("\0alice\0"), NULL, NULL },
	{ RAW("\0\0"), NULL, NULL },
	{ RAW("\0"), NULL, NULL },
	{ RAW(""), NULL, NULL },
	/* NULs inside the password, or trailing */
	{ RAW("\0alice\0sec\0ret"), NULL, NULL },
	{ RAW("\0alice\0secret\0"), NULL, NULL },
	{ RAW("\0alice\0\0secret"), NULL, NULL },
	{ RAW("\0\0alice\0secret"), NULL, NULL },
};

static void
test_plain_table(void **state)
{
	char user[SASL_USER_MAX + 1], pass[SASL_PASS_MAX + 1];

	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		const char *in = b64(plain[i].raw, plain[i].len);
		int rc;

		memset(user, 'X', sizeof(user));
		memset(pass, 'X', sizeof(pass));
		rc = sasl_plain_decode(in, user, pass);
		if (plain[i].user == NULL) {
			if (rc != -1)
				fail_msg("case %zu (%s) accepted", i, in);
			/* Nothing decoded is left behind. */
			for (size_t k = 0; k < sizeof(pass); k++)
				assert_int_equal(pass[k], 0);
			for (size_t k = 0; k < sizeof(user); k++)
				assert_int_equal(user[k], 0);
			continue;
		}
		if (rc != 0)
			fail_msg("case %zu (%s) rejected", i, in);
		assert_string_equal(user, plain[i].user);
		assert_string_equal(pass, plain[i].pass);
	}
}

static void
test_plain_bounds(void **state)
{
	char raw[1024], user[SASL_USER_MAX + 1], pass[SASL_PASS_MAX + 1];
	size_t n;

	n = plain_raw(raw, 0, SASL_USER_MAX, SASL_PASS_MAX);
	assert_int_equal(sasl_plain_decode(b64(raw, n), user, pass), 0);
	assert_int_equal(strlen(user), SASL_USER_MAX);
	assert_int_equal(strlen(pass), SASL_PASS_MAX);

	/* The longest valid response: authzid = authcid, both full. */
	n = plain_raw(raw, SASL_USER_MAX, SASL_USER_MAX, SASL_PASS_MAX);
	assert_int_equal(sasl_plain_decode(b64(raw, n), user, pass), 0);

	n = plain_raw(raw, 0, SASL_USER_MAX + 1, 8);
	assert_int_equal(sasl_plain_decode(b64(raw, n), user, pass), -1);
	n = plain_raw(raw, 0, 8, SASL_PASS_MAX + 1);
	assert_int_equal(sasl_plain_decode(b64(raw, n), user, pass), -1);
	n = plain_raw(raw, SASL_USER_MAX + 1, SASL_USER_MAX + 1, 8);
	assert_int_equal(sasl_plain_decode(b64(raw, n), user, pass), -1);
	/* One byte over the longest valid response. */
	n = plain_raw(raw, SASL_USER_MAX, SASL_USER_MAX, SASL_PASS_MAX + 1);
	assert_int_equal(sasl_plain_decode(b64(raw, n), user, pass), -1);
	/* Far over: rejected before decoding. */
	memset(raw, 'A', sizeof(raw) - 1);
	raw[sizeof(raw) - 1] = '\0';
	assert_int_equal(sasl_plain_decode(raw, user, pass), -1);
}

/* Strings that are not strict standard base64. */
static const char *const bad_b64[] = {
	"",
	"=",
	"==",
	"*",
	"AGFsaWNlAHNlY3JldA",		/* missing padding */
	"AGFsaWNlAHNlY3JldA=",		/* short padding */
	"AGFsaWNlAHNlY3JldA===",	/* extra padding */
	"AGFsaWNlAHNlY3JldA==AA==",	/* data after padding */
	"AGFsaWNl AHNlY3JldA==",	/* space */
	"AGFsaWNl\r\nAHNlY3JldA==",	/* line break */
	" AGFsaWNlAHNlY3JldA==",
	"AGFsaWNlAHNlY3JldA== ",
	"AGFsaWNlAHNlY3JldB==",		/* non-zero trailing bits */
	"AGFsaWNl-HNlY3JldA==",		/* URL-safe alphabet */
	"AGFsaWNl_HNlY3JldA==",
	"AGFsaWNlAHNlY3Jld\xc3\xa4==",	/* not ASCII */
	"QQ",
	"Q===",
};

static void
test_bad_base64(void **state)
{
	char user[SASL_USER_MAX + 1], pass[SASL_PASS_MAX + 1];

	/* The reference: "\0alice\0secret" decodes. */
	assert_int_equal(sasl_plain_decode("AGFsaWNlAHNlY3JldA==", user,
	    pass), 0);
	assert_string_equal(user, "alice");
	for (size_t i = 0; i < sizeof(bad_b64) / sizeof(bad_b64[0]); i++) {
		if (sasl_plain_decode(bad_b64[i], user, pass) != -1)
			fail_msg("PLAIN '%s' accepted", bad_b64[i]);
		if (sasl_b64_field(bad_b64[i], pass) != -1)
			fail_msg("LOGIN '%s' accepted", bad_b64[i]);
		assert_string_equal(pass, "");
	}
	assert_int_equal(sasl_plain_decode(NULL, user, pass), -1);
	assert_int_equal(sasl_b64_field(NULL, pass), -1);
}

static void
test_login(void **state)
{
	char out[SASL_PASS_MAX + 1], raw[600];

	assert_int_equal(sasl_b64_field("YWxpY2U=", out), 0);
	assert_string_equal(out, "alice");
	assert_int_equal(sasl_b64_field(b64(RAW("p\xc3\xa4ss w:rd")), out), 0);
	assert_string_equal(out, "p\xc3\xa4ss w:rd");
	assert_int_equal(sasl_b64_field(b64(RAW("a")), out), 0);
	assert_string_equal(out, "a");

	/* NULs anywhere */
	assert_int_equal(sasl_b64_field(b64(RAW("ali\0ce")), out), -1);
	assert_int_equal(sasl_b64_field(b64(RAW("\0alice")), out), -1);
	assert_int_equal(sasl_b64_field(b64(RAW("alice\0")), out), -1);
	assert_int_equal(sasl_b64_field(b64(RAW("\0")), out), -1);

	memset(raw, 'x', sizeof(raw));
	assert_int_equal(sasl_b64_field(b64(raw, SASL_PASS_MAX), out), 0);
	assert_int_equal(strlen(out), SASL_PASS_MAX);
	assert_int_equal(sasl_b64_field(b64(raw, SASL_PASS_MAX + 1), out), -1);
	assert_string_equal(out, "");
	assert_int_equal(sasl_b64_field(b64(raw, sizeof(raw)), out), -1);
}

static void
test_wipe(void **state)
{
	char buf[16];

	memset(buf, 'x', sizeof(buf));
	sasl_wipe(buf, sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);
	sasl_wipe(NULL, 0);
	sasl_wipe(buf, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_table),
		cmocka_unit_test(test_plain_bounds),
		cmocka_unit_test(test_bad_base64),
		cmocka_unit_test(test_login),
		cmocka_unit_test(test_wipe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

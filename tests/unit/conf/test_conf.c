/*
 * test_conf.c - the configuration parser: defaults, every error names
 * file, line and key, networks, and docs/CONFIG.md documents every key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "common/util.h"

static const char base[] =
    "credentials = file:/dev/null\n"
    "[listener sub]\n"
    "address = 127.0.0.1:2525\n"
    "tls = starttls\n"
    "tls_cert = c.pem\n"
    "tls_key = k.pem\n";

static struct conf *
parse(const char *text, char *err, size_t errlen)
{
	return conf_parse("t.conf", text, strlen(text), err, errlen);
}

static void
test_defaults(void **state)
{
	char err[512];
	struct conf *c = parse(base, err, sizeof(err));

	assert_non_null(c);
	assert_int_equal(c->max_message_size, 25 * 1024 * 1024);
	assert_int_equal(c->max_recipients, 1000);
	assert_int_equal(c->max_line_length, 998);
	assert_int_equal(c->timeout_command, 300);
	assert_int_equal(c->timeout_shutdown, 30);
	assert_string_equal(c->spool_dir, "var/spool");
	assert_int_equal(c->nlisteners, 1);
	assert_true(c->listeners[0].auth_requires_tls);
	assert_int_equal(c->listeners[0].tls, LTLS_STARTTLS);
	assert_string_equal(c->listeners[0].tls_min_version, "1.2");
	assert_non_null(c->hostname);
	conf_free(c);
}

static void
test_values(void **state)
{
	char err[512];
	struct conf *c = parse(
	    "# comment\n"
	    "  max_message_size = 10M  \n"
	    "timeout_command=2m\r\n"
	    "log_format = json\n"
	    "credentials = file:x\n"
	    "[listener a]\n"
	    "address = [::1]:25\n"
	    "trusted_networks = 127.0.0.0/8, ::1/128 10.1.2.3\n"
	    "auth = no\n"
	    "[listener b]\n"
	    "address = 127.0.0.1:465\n"
	    "tls = implicit\n"
	    "tls_cert = c.pem\n"
	    "tls_key = k.pem\n", err, sizeof(err));

	assert_non_null(c);
	assert_int_equal(c->max_message_size, 10 * 1024 * 1024);
	assert_int_equal(c->timeout_command, 120);
	assert_int_equal(c->log_format, LOG_FMT_JSON);
	assert_int_equal(c->nlisteners, 2);
	assert_int_equal(c->listeners[0].ntrusted, 3);
	assert_int_equal(c->listeners[1].tls, LTLS_IMPLICIT);
	assert_int_equal(c->listeners[1].line, 10);
	conf_free(c);
}

struct bad {
	const char *text;
	const char *err;	/* expected substring */
};

static const struct bad bads[] = {
	{ "frobnicate = 1\n[listener a]\naddress = 127.0.0.1:1\n",
	  "t.conf:1: key 'frobnicate': unknown key" },
	{ "max_message_size = 10X\ncredentials=file:x\n[listener a]\n"
	  "address = 127.0.0.1:1\n", "t.conf:1: key 'max_message_size'" },
	{ "max_recipients = 0\ncredentials=file:x\n[listener a]\n"
	  "address = 127.0.0.1:1\n", "out of range" },
	{ "max_recipients = -5\n", "t.conf:1: key 'max_recipients'" },
	{ "max_recipients = 99999999999999999999999\n", "max_recipients" },
	{ "credentials=file:x\n[listener a]\naddress = 127.0.0.1:1\n"
	  "auth = maybe\n", "t.conf:4: key 'auth': 'maybe' is not yes or no" },
	{ "credentials=file:x\n[listener a]\ntls = none\n",
	  "t.conf:2: key 'address'" },
	{ "credentials=file:x\n[listener a]\naddress = 127.0.0.1:1\n"
	  "max_recipients = 5\n", "t.conf:4: key 'max_recipients': unknown "
	  "key in a listener section" },
	{ "address = 127.0.0.1:1\n", "t.conf:1: key 'address': unknown key "
	  "outside a [listener] section" },
	{ "credentials=file:x\n[listener a]\naddress = 127.0.0.1:99999\n",
	  "key 'address'" },
	{ "credentials=file:x\n[listener a]\naddress = localhost\n",
	  "key 'address'" },
	{ "credentials=file:x\n[listener a]\naddress = 127.0.0.1:1\n"
	  "tls = starttls\n", "key 'tls_cert'" },
	{ "[listener a]\naddress = 127.0.0.1:1\n",
	  "key 'auth': listener 'a' offers AUTH but no global credentials" },
	{ "credentials=file:x\n[listener a]\naddress = 127.0.0.1:1\n"
	  "auth = no\n", "nobody could ever submit" },
	{ "credentials=file:x\n[listener a]\naddress = 127.0.0.1:1\n"
	  "trusted_networks = 300.1.1.1\n", "key 'trusted_networks'" },
	{ "credentials=file:x\n[listener a]\naddress = 127.0.0.1:1\n"
	  "[listener a]\naddress = 127.0.0.1:2\n", "t.conf:4: duplicate" },
	{ "credentials=file:x\n[listen a]\n", "t.conf:2: bad section" },
	{ "credentials=file:x\n", "no [listener NAME] section" },
	{ "credentials=file:x\njust words\n", "t.conf:2: expected" },
	{ "credentials = \n", "t.conf:1: key 'credentials': empty value" },
	{ "log_format = xml\n", "key 'log_format'" },
	{ "credentials=file:x\n[listener a]\naddress = 127.0.0.1:1\n"
	  "auth_requires_tls = yes\n", "nobody could ever submit" },
};

static void
test_errors(void **state)
{
	for (size_t i = 0; i < nitems(bads); i++) {
		char err[512] = "";
		struct conf *c = parse(bads[i].text, err, sizeof(err));
		if (c != NULL || strstr(err, bads[i].err) == NULL)
			fail_msg("case %zu: got %s / '%s', want '%s'", i,
			    c ? "success" : "error", err, bads[i].err);
	}
}

static void
test_nul_and_long_line(void **state)
{
	char err[512];
	char text[] = "max_recipients = 1\0\n";
	struct conf *c = conf_parse("t.conf", text, sizeof(text) - 1, err,
	    sizeof(err));
	char *big = malloc(10000);

	assert_null(c);
	assert_non_null(strstr(err, "NUL"));
	memset(big, 'a', 9999);
	big[9999] = '\0';
	assert_null(parse(big, err, sizeof(err)));
	assert_non_null(strstr(err, "too long"));
	free(big);
}

static void
test_cidr(void **state)
{
	struct cidr c;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };

	assert_true(cidr_parse("127.0.0.0/8", &c));
	inet_pton(AF_INET, "127.1.2.3", &sin.sin_addr);
	assert_true(cidr_match(&c, (struct sockaddr *)&sin));
	inet_pton(AF_INET, "128.0.0.1", &sin.sin_addr);
	assert_false(cidr_match(&c, (struct sockaddr *)&sin));
	/* IPv4-mapped IPv6 client */
	inet_pton(AF_INET6, "::ffff:127.0.0.9", &sin6.sin6_addr);
	assert_true(cidr_match(&c, (struct sockaddr *)&sin6));
	assert_true(cidr_parse("2001:db8::/33", &c));
	inet_pton(AF_INET6, "2001:db8:7fff::1", &sin6.sin6_addr);
	assert_true(cidr_match(&c, (struct sockaddr *)&sin6));
	inet_pton(AF_INET6, "2001:db8:8000::1", &sin6.sin6_addr);
	assert_false(cidr_match(&c, (struct sockaddr *)&sin6));
	assert_true(cidr_parse("10.0.0.1", &c));
	assert_int_equal(c.prefix, 32);
	assert_false(cidr_parse("10.0.0.0/33", &c));
	assert_false(cidr_parse("10.0.0.0/", &c));
	assert_false(cidr_parse("/8", &c));
	assert_false(cidr_parse("10.0.0.0/8x", &c));
}

/* docs/CONFIG.md must document every key the parser knows. */
static void
test_docs(void **state)
{
	const char *src = getenv("OMBUD_SRCDIR");
	const struct conf_keydoc *k;
	size_t n = conf_keydocs(&k);
	char path[4096], *text;
	FILE *f;
	long len;

	assert_non_null(src);
	snprintf(path, sizeof(path), "%s/docs/CONFIG.md", src);
	f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	text = malloc((size_t)len + 1);
	assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
	text[len] = '\0';
	fclose(f);
	for (size_t i = 0; i < n; i++) {
		char needle[128];
		snprintf(needle, sizeof(needle), "`%s`", k[i].key);
		if (strstr(text, needle) == NULL)
			fail_msg("docs/CONFIG.md does not document %s",
			    k[i].key);
	}
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_nul_and_long_line),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_docs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

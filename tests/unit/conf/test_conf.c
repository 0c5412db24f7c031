/*
 * test_conf.c - the configuration parser: defaults, bounds, every error
 * names file, line and key, networks, [route] sections and their secret
 * files (whose content never shows in an error), and docs/CONFIG.md is
 * exactly the output of `ombud config keys`.
 *
 * Must never: leave its temporary secret files behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
	/* delivery */
	assert_true(c->delivery);
	assert_null(c->dns_servers);
	assert_string_equal(c->default_route, "mx");
	assert_int_equal(c->mx_port, 25);
	assert_int_equal(c->mx_tls, RTLS_OPPORTUNISTIC);
	assert_int_equal(c->retry_min, 300);
	assert_int_equal(c->retry_max, 3600);
	assert_int_equal(c->queue_lifetime, 5 * 86400);
	assert_int_equal(c->delay_warning, 0);
	assert_int_equal(c->dest_max_connections, 10);
	assert_int_equal(c->dest_rate, 0);
	assert_int_equal(c->delivery_max_connections, 200);
	assert_int_equal(c->delivery_max_inflight, 2000);
	assert_int_equal(c->conn_max_messages, 100);
	assert_int_equal(c->conn_idle_timeout, 5);
	assert_int_equal(c->delivery_timeout_connect, 30);
	assert_int_equal(c->delivery_timeout_command, 300);
	assert_int_equal(c->delivery_timeout_data, 600);
	assert_null(c->oauth_ca_file);
	assert_int_equal(c->nroutes, 0);
	assert_null(conf_route_find(c, "mx"));
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
	  "key 'auth_requires_tls': listener 'a' requires AUTH" },
	{ "hostname = gw_1!.example\n[listener a]\naddress = 127.0.0.1:1\n"
	  "auth = no\ntrusted_networks = 127.0.0.0/8\n",
	  "t.conf:1: key 'hostname': 'gw_1!.example' is not a host name" },
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

/* parse() on printf-formatted text. */
static struct conf *
parsef(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static struct conf *
parsef(char *err, size_t errlen, const char *fmt, ...)
{
	char text[8192];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof(text));
	return parse(text, err, errlen);
}

/* One global key: lo and hi are accepted, below and above are refused
 * (NULL: no such value) with "t.conf:1: key 'KEY'"; extra: more global
 * lines the test needs (after line 1). */
struct bound {
	const char *key, *lo, *below, *hi, *above, *extra;
};

static const struct bound bounds[] = {
	{ "mx_port", "1", "0", "65535", "65536", "" },
	{ "retry_min", "1s", "0", "30d", "31d", "retry_max = 30d\n" },
	{ "retry_max", "1", "0", "30d", "31d", "retry_min = 1s\n" },
	{ "queue_lifetime", "1s", "0", "365d", "366d", "" },
	{ "delay_warning", "0", NULL, "4d", "5d", "" },
	{ "dest_max_connections", "1", "0", "1000", "1001", "" },
	{ "dest_rate", "0", "-1", "1000000", "1000001", "" },
	{ "delivery_max_connections", "1", "0", "100000", "100001", "" },
	{ "delivery_max_inflight", "1", "0", "1000000", "1000001", "" },
	{ "conn_max_messages", "1", "0", "100000", "100001", "" },
	{ "conn_idle_timeout", "0", "-1", "1h", "3601", "" },
	{ "delivery_timeout_connect", "1s", "0", "1h", "61m", "" },
	{ "delivery_timeout_command", "1s", "0", "60m", "2h", "" },
	{ "delivery_timeout_data", "1s", "0", "1d", "25h", "" },
	{ "max_recipients", "1", "0", "100000", "100001", "" },
	{ "timeout_command", "1s", "0", "1d", "2d", "" },
};

static void
bound_try(const struct bound *b, const char *v, bool ok)
{
	char err[512] = "", want[128];
	struct conf *c = parsef(err, sizeof(err), "%s = %s\n%s%s", b->key,
	    v, b->extra, base);

	snprintf(want, sizeof(want), "t.conf:1: key '%s': ", b->key);
	if (ok && c == NULL)
		fail_msg("%s = %s refused: %s", b->key, v, err);
	if (!ok && (c != NULL || strstr(err, want) == NULL))
		fail_msg("%s = %s: got %s / '%s', want '%s'", b->key, v,
		    c ? "success" : "error", err, want);
	conf_free(c);
}

static void
test_bounds(void **state)
{
	for (size_t i = 0; i < nitems(bounds); i++) {
		bound_try(&bounds[i], bounds[i].lo, true);
		bound_try(&bounds[i], bounds[i].hi, true);
		if (bounds[i].below)
			bound_try(&bounds[i], bounds[i].below, false);
		bound_try(&bounds[i], bounds[i].above, false);
	}
}

static void
test_delivery_values(void **state)
{
	static const char *const dns_ok[] = { "127.0.0.1:5353,[::1]:53",
	    "127.0.0.1", "::1", "[::1]", "10.0.0.1,10.0.0.2:53",
	    "2001:db8::1,[2001:db8::2]:5353" };
	static const char *const dns_bad[] = { "localhost:53", "127.0.0.1:0",
	    "127.0.0.1:", "[::1", "1.2.3.4 ,5.6.7.8", ",", "127.0.0.1,",
	    "[1.2.3.4]:53", "127.0.0.1:53:53", "[::1]53", "1.2.3.4:65536" };
	static const char *const tls[] = { "none", "opportunistic",
	    "required", "verify" };
	char err[512];
	struct conf *c;

	c = parsef(err, sizeof(err), "delivery = no\nqueue_lifetime = 2d\n"
	    "retry_max = 1d\nconn_idle_timeout = 0\ndelay_warning = 4h\n"
	    "oauth_ca_file = ca.pem\n%s", base);
	assert_non_null(c);
	assert_false(c->delivery);
	assert_int_equal(c->queue_lifetime, 2 * 86400);
	assert_int_equal(c->retry_max, 86400);
	assert_int_equal(c->conn_idle_timeout, 0);
	assert_int_equal(c->delay_warning, 4 * 3600);
	assert_string_equal(c->oauth_ca_file, "ca.pem");
	conf_free(c);
	for (size_t i = 0; i < nitems(dns_ok); i++) {
		c = parsef(err, sizeof(err), "dns_servers = %s\n%s",
		    dns_ok[i], base);
		if (c == NULL)
			fail_msg("dns_servers %s: %s", dns_ok[i], err);
		assert_string_equal(c->dns_servers, dns_ok[i]);
		conf_free(c);
	}
	for (size_t i = 0; i < nitems(dns_bad); i++) {
		c = parsef(err, sizeof(err), "dns_servers = %s\n%s",
		    dns_bad[i], base);
		if (c != NULL || strstr(err, "t.conf:1: key 'dns_servers': "
		    "'") == NULL)
			fail_msg("dns_servers %s: %s", dns_bad[i], c ?
			    "accepted" : err);
	}
	for (size_t i = 0; i < nitems(tls); i++) {
		c = parsef(err, sizeof(err), "mx_tls = %s\n%s", tls[i], base);
		assert_non_null(c);
		assert_int_equal(c->mx_tls, RTLS_NONE + (int)i);
		conf_free(c);
	}
	assert_null(parsef(err, sizeof(err), "mx_tls = implicit\n%s", base));
	assert_non_null(strstr(err, "t.conf:1: key 'mx_tls': 'implicit' is "
	    "not none, opportunistic, required or verify"));
	assert_null(parsef(err, sizeof(err), "queue_lifetime = 5w\n%s",
	    base));
	assert_non_null(strstr(err, "t.conf:1: key 'queue_lifetime': '5w' "
	    "is not a valid duration"));
}

/* Keys between a listener and a route, none of them needing a file. */
static const struct bad route_bads[] = {
	{ "[route r]\nport = 25\n", "t.conf:7: key 'host': route 'r' has "
	  "no host" },
	{ "[route r]\nhost = bad_host\n", "t.conf:8: key 'host': "
	  "'bad_host' is not a host name or IP address" },
	{ "[route r]\nhost = -a.example\n", "key 'host'" },
	{ "[route r]\nhost = a..example\n", "key 'host'" },
	{ "[route r]\nhost = 1.2.3\n", "key 'host'" },
	{ "[route r]\nhost = [10.0.0.1]\n", "key 'host'" },
	{ "[route r]\nhost = a.example\nport = 0\n", "t.conf:9: key 'port': "
	  "0 is out of range 1..65535" },
	{ "[route r]\nhost = a.example\nport = 65536\n", "key 'port'" },
	{ "[route r]\nhost = a.example\nmax_connections = 1001\n",
	  "t.conf:9: key 'max_connections'" },
	{ "[route r]\nhost = a.example\ntls = starttls\n", "t.conf:9: key "
	  "'tls': 'starttls' is not none, opportunistic, required, verify "
	  "or implicit" },
	{ "[route r]\nhost = a.example\nca_file = /nonexistent/ca.pem\n",
	  "t.conf:9: key 'ca_file': cannot open '/nonexistent/ca.pem'" },
	{ "[route r]\nhost = a.example\nca_file = /\n", "t.conf:9: key "
	  "'ca_file': '/' is not a regular file" },
	{ "[route r]\nhost = a.example\n[route r]\nhost = b.example\n",
	  "t.conf:9: duplicate route 'r'" },
	{ "[route mx]\nhost = a.example\n", "t.conf:7: bad route name 'mx':"
	  " mx is reserved" },
	{ "[route a b]\nhost = a.example\n", "t.conf:7: bad route name" },
	{ "[route r/1]\nhost = a.example\n", "t.conf:7: bad route name" },
	{ "[route 0123456789012345678901234567890123456789012345678901234567"
	  "890123]\n", "bad route name" },
	{ "[route]\n", "t.conf:7: bad section header" },
	{ "[route r]\nhost = a.example\naddress = 127.0.0.1:1\n", "t.conf:9: "
	  "key 'address': unknown key in a route section (it belongs in a "
	  "[listener] section)" },
	{ "[route r]\nhost = a.example\nmx_port = 1\n", "t.conf:9: key "
	  "'mx_port': unknown key in a route section (it is global" },
	{ "[route r]\nhost = a.example\nauth_user = u\n", "t.conf:7: key "
	  "'auth_password_file': route 'r' has auth_user but no "
	  "auth_password_file" },
	{ "[route r]\nhost = a.example\nxoauth2_scope = s\n", "t.conf:7: key "
	  "'xoauth2_token_url': route 'r' uses XOAUTH2 but has no "
	  "xoauth2_token_url" },
	{ "[route r]\nhost = a.example\nxoauth2_token_url = https://t.example"
	  "/token\nauth_user = u\n", "t.conf:7: key 'xoauth2_client_id': "
	  "route 'r' uses XOAUTH2" },
	{ "[route r]\nhost = a.example\nxoauth2_token_url = https://t.example"
	  "/token\nxoauth2_client_id = id\nauth_user = u\n", "t.conf:7: key "
	  "'xoauth2_secret_file': route 'r' uses XOAUTH2" },
	{ "[route r]\nhost = a.example\nxoauth2_token_url = http://auth."
	  "example/token\n", "t.conf:9: key 'xoauth2_token_url': "
	  "'http://auth.example/token' uses http:// to a host that is not "
	  "loopback" },
	{ "[route r]\nhost = a.example\nxoauth2_token_url = http://127.0.0.1"
	  ".evil.example/\n", "not loopback" },
	{ "[route r]\nhost = a.example\nxoauth2_token_url = http://evil.exam"
	  "ple@127.0.0.1/\n", "user@" },
	{ "[route r]\nhost = a.example\nxoauth2_token_url = ftp://a.example"
	  "/\n", "must start with https://" },
	{ "[route r]\nhost = a.example\nxoauth2_token_url = https:///x\n",
	  "has a bad host" },
	{ "[route r]\nhost = a.example\nxoauth2_token_url = http://"
	  "localhost:0/\n", "has a bad port" },
	{ "[route r]\nhost = a.example\nxoauth2_token_url = https://a.example"
	  "/ x\n", "white space" },
	{ "default_route = nowhere\n", "t.conf:1: key 'default_route': there "
	  "is no [route nowhere] section" },
	{ "default_route = no/where\n", "t.conf:1: key 'default_route': "
	  "'no/where' is not mx or a route name" },
	{ "host = a.example\n", "t.conf:1: key 'host': unknown key outside "
	  "a [route] section" },
	{ "tls = none\n", "unknown key outside a [listener] or [route] "
	  "section" },
	{ "retry_min = 2h\n", "t.conf:1: key 'retry_min': retry_max (1h) is "
	  "shorter than retry_min (2h)" },
	{ "retry_min = 2h\nretry_max = 90m\n", "t.conf:2: key 'retry_max': "
	  "retry_max (90m) is shorter than retry_min (2h)" },
	{ "delay_warning = 1d\nqueue_lifetime = 1d\n", "t.conf:2: key "
	  "'queue_lifetime': delay_warning (1d) must be shorter than "
	  "queue_lifetime (1d)" },
};

static void
test_route_errors(void **state)
{
	for (size_t i = 0; i < nitems(route_bads); i++) {
		char err[512] = "";
		const char *t = route_bads[i].text;
		struct conf *c;

		/* global lines go first, sections after the listener */
		if (t[0] == '[')
			c = parsef(err, sizeof(err), "%s%s", base, t);
		else
			c = parsef(err, sizeof(err), "%s%s", t, base);
		if (c != NULL || strstr(err, route_bads[i].err) == NULL)
			fail_msg("case %zu: got %s / '%s', want '%s'", i,
			    c ? "success" : "error", err, route_bads[i].err);
	}
}

static void
test_too_many_routes(void **state)
{
	struct buf b;
	char err[512];

	buf_init(&b);
	buf_adds(&b, base);
	for (int i = 0; i <= CONF_MAX_ROUTES; i++)
		buf_printf(&b, "[route r%d]\nhost = h%d.example\n", i, i);
	assert_null(parse(b.data, err, sizeof(err)));
	assert_non_null(strstr(err, "too many routes (max 64)"));
	buf_free(&b);
}

/* A directory of secret files, removed by the teardown. */
struct secrets {
	char	dir[64];
	char	path[16][128];
	size_t	n;
};

#define SECRET	"TOPSECRET-c0rrect-h0rse"

static const char *
secret_file(struct secrets *s, const char *content, size_t len, mode_t mode)
{
	char *p, tmp[sizeof(s->path[0])];
	int fd;

	assert_true(s->n < nitems(s->path));
	p = s->path[s->n];
	snprintf(tmp, sizeof(tmp), "%s/s%zu", s->dir, s->n);
	memcpy(p, tmp, sizeof(tmp));
	s->n++;
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	return p;
}

static int
secrets_setup(void **state)
{
	struct secrets *s = calloc(1, sizeof(*s));
	const char *tmp = getenv("TMPDIR");

	if (s == NULL)
		return -1;
	snprintf(s->dir, sizeof(s->dir), "%s/conftest.XXXXXX",
	    tmp && strlen(tmp) < 40 ? tmp : "/tmp");
	if (mkdtemp(s->dir) == NULL) {
		free(s);
		return -1;
	}
	*state = s;
	return 0;
}

static int
secrets_teardown(void **state)
{
	struct secrets *s = *state;

	for (size_t i = 0; i < s->n; i++)
		unlink(s->path[i]);
	rmdir(s->dir);
	free(s);
	return 0;
}

/* A route with password AUTH reading path; NULL and err on error, which
 * must never show the secret. */
static struct conf *
route_with_password(const char *path, char *err, size_t errlen)
{
	struct conf *c = parsef(err, errlen, "%s[route r]\nhost = a.example\n"
	    "auth_user = u\nauth_password_file = %s\n", base, path);

	if (c == NULL && strstr(err, "TOPSECRET") != NULL)
		fail_msg("the secret shows in '%s'", err);
	return c;
}

static void
test_routes(void **state)
{
	struct secrets *s = *state;
	const char *pw = secret_file(s, SECRET "\n", strlen(SECRET) + 1, 0600);
	const char *cs = secret_file(s, "client-secret\r\n", 15, 0400);
	const char *ca = secret_file(s, "not really PEM\n", 15, 0644);
	const struct conf_route *r;
	char err[512];
	struct conf *c = parsef(err, sizeof(err),
	    "default_route = relay\n"
	    "credentials = file:/dev/null\n"
	    "[route relay]\n"
	    "host = smtp.example.com\n"
	    "port = 465\n"
	    "tls = implicit\n"
	    "ca_file = %s\n"
	    "auth_user = gateway\n"
	    "auth_password_file = %s\n"
	    "max_connections = 3\n"
	    "[listener sub]\n"
	    "address = 127.0.0.1:2525\n"
	    "auth = no\n"
	    "trusted_networks = 127.0.0.0/8\n"
	    "[route o365]\n"
	    "host = [::1]\n"
	    "auth_user = app@example.com\n"
	    "xoauth2_token_url = http://127.0.0.2:8080/token\n"
	    "xoauth2_client_id = client-1\n"
	    "xoauth2_secret_file = %s\n"
	    "xoauth2_scope = https://outlook.office365.com/.default\n"
	    "[route plain]\n"
	    "host = 192.0.2.1\n"
	    "tls = none\n", ca, pw, cs);

	if (c == NULL)
		fail_msg("%s", err);
	assert_int_equal(c->nroutes, 3);
	assert_int_equal(c->nlisteners, 1);
	assert_string_equal(c->default_route, "relay");
	r = conf_route_find(c, "relay");
	assert_non_null(r);
	assert_ptr_equal(r, &c->routes[0]);
	assert_string_equal(r->host, "smtp.example.com");
	assert_int_equal(r->port, 465);
	assert_int_equal(r->tls, RTLS_IMPLICIT);
	assert_string_equal(r->ca_file, ca);
	assert_string_equal(r->auth_user, "gateway");
	assert_string_equal(r->auth_password, SECRET);
	assert_null(r->xoauth2_token_url);
	assert_int_equal(r->max_connections, 3);
	assert_int_equal(r->line, 3);
	r = conf_route_find(c, "o365");
	assert_non_null(r);
	assert_string_equal(r->host, "::1");
	assert_int_equal(r->port, 587);
	assert_int_equal(r->tls, RTLS_VERIFY);
	assert_null(r->ca_file);
	assert_null(r->auth_password);
	assert_string_equal(r->auth_user, "app@example.com");
	assert_string_equal(r->xoauth2_token_url,
	    "http://127.0.0.2:8080/token");
	assert_string_equal(r->xoauth2_client_id, "client-1");
	assert_string_equal(r->xoauth2_secret, "client-secret");
	assert_string_equal(r->xoauth2_scope,
	    "https://outlook.office365.com/.default");
	assert_int_equal(r->max_connections, 0);
	assert_int_equal(r->line, 15);
	r = conf_route_find(c, "plain");
	assert_non_null(r);
	assert_int_equal(r->tls, RTLS_NONE);
	assert_null(r->auth_user);
	assert_null(conf_route_find(c, "mx"));
	assert_null(conf_route_find(c, "nope"));
	conf_free(c);

	/* other loopback and https endpoints */
	static const char *const urls[] = { "http://localhost/t",
	    "HTTP://LOCALHOST:8080/t", "http://[::1]:80/t",
	    "http://127.0.0.1", "https://login.example.com/tenant/token",
	    "https://192.0.2.1:8443/t?x=1", "https://[2001:db8::1]/t" };
	for (size_t i = 0; i < nitems(urls); i++) {
		c = parsef(err, sizeof(err), "%s[route r]\nhost = a.example\n"
		    "auth_user = u\nxoauth2_client_id = i\n"
		    "xoauth2_secret_file = %s\nxoauth2_token_url = %s\n",
		    base, cs, urls[i]);
		if (c == NULL)
			fail_msg("%s: %s", urls[i], err);
		conf_free(c);
	}
}

static void
test_secret_files(void **state)
{
	struct secrets *s = *state;
	char big[CONF_SECRET_MAX + 1], err[512];
	struct conf *c;
	const char *p;

	/* 0600 accepted, one "\n" or "\r\n" stripped, no more */
	c = route_with_password(secret_file(s, SECRET, strlen(SECRET), 0600),
	    err, sizeof(err));
	assert_non_null(c);
	assert_string_equal(c->routes[0].auth_password, SECRET);
	conf_free(c);
	c = route_with_password(secret_file(s, SECRET "\r\n",
	    strlen(SECRET) + 2, 0600), err, sizeof(err));
	assert_non_null(c);
	assert_string_equal(c->routes[0].auth_password, SECRET);
	conf_free(c);
	c = route_with_password(secret_file(s, SECRET "\n\n",
	    strlen(SECRET) + 2, 0600), err, sizeof(err));
	assert_non_null(c);
	assert_string_equal(c->routes[0].auth_password, SECRET "\n");
	conf_free(c);
	/* readable by group or others */
	p = secret_file(s, SECRET "\n", strlen(SECRET) + 1, 0644);
	assert_null(route_with_password(p, err, sizeof(err)));
	assert_non_null(strstr(err, "t.conf:10: key 'auth_password_file': "));
	assert_non_null(strstr(err, "must not be readable by group or others "
	    "(chmod 600)"));
	assert_non_null(strstr(err, p));
	p = secret_file(s, SECRET, strlen(SECRET), 0640);
	assert_null(route_with_password(p, err, sizeof(err)));
	assert_non_null(strstr(err, "(chmod 600)"));
	/* empty, or only the newline */
	assert_null(route_with_password(secret_file(s, "", 0, 0600), err,
	    sizeof(err)));
	assert_non_null(strstr(err, "t.conf:10: key 'auth_password_file': "));
	assert_non_null(strstr(err, "is empty"));
	assert_null(route_with_password(secret_file(s, "\r\n", 2, 0600), err,
	    sizeof(err)));
	assert_non_null(strstr(err, "is empty"));
	/* CONF_SECRET_MAX bytes fit, one more does not */
	memset(big, 'x', sizeof(big));
	memcpy(big, SECRET, strlen(SECRET));
	c = route_with_password(secret_file(s, big, CONF_SECRET_MAX, 0600),
	    err, sizeof(err));
	assert_non_null(c);
	assert_int_equal(strlen(c->routes[0].auth_password), CONF_SECRET_MAX);
	conf_free(c);
	assert_null(route_with_password(secret_file(s, big, sizeof(big),
	    0600), err, sizeof(err)));
	assert_non_null(strstr(err, "is larger than 4096 bytes"));
	/* a NUL byte, a missing file, a directory */
	assert_null(route_with_password(secret_file(s, SECRET "\0x",
	    strlen(SECRET) + 2, 0600), err, sizeof(err)));
	assert_non_null(strstr(err, "contains a NUL byte"));
	assert_null(route_with_password("/nonexistent/pw", err, sizeof(err)));
	assert_non_null(strstr(err, "t.conf:10: key 'auth_password_file': "
	    "cannot open '/nonexistent/pw'"));
	assert_null(route_with_password(s->dir, err, sizeof(err)));
	assert_non_null(strstr(err, "is not a regular file"));
}

static void
test_xoauth2_rules(void **state)
{
	struct secrets *s = *state;
	const char *good = secret_file(s, SECRET "\n", strlen(SECRET) + 1,
	    0600);
	const char *open_ = secret_file(s, SECRET "\n", strlen(SECRET) + 1,
	    0604);
	const char *xo = "xoauth2_token_url = https://t.example/token\n"
	    "xoauth2_client_id = id\n";
	char err[512];
	struct conf *c;

	/* complete */
	c = parsef(err, sizeof(err), "%s[route r]\nhost = a.example\n"
	    "auth_user = u\n%sxoauth2_secret_file = %s\n", base, xo, good);
	if (c == NULL)
		fail_msg("%s", err);
	assert_string_equal(c->routes[0].xoauth2_secret, SECRET);
	assert_null(c->routes[0].xoauth2_scope);
	conf_free(c);
	/* no auth_user */
	assert_null(parsef(err, sizeof(err), "%s[route r]\nhost = a.example\n"
	    "%sxoauth2_secret_file = %s\n", base, xo, good));
	assert_non_null(strstr(err, "t.conf:7: key 'auth_user': route 'r' "
	    "uses XOAUTH2 but has no auth_user"));
	/* and a password as well */
	assert_null(parsef(err, sizeof(err), "%s[route r]\nhost = a.example\n"
	    "auth_user = u\n%sxoauth2_secret_file = %s\n"
	    "auth_password_file = %s\n", base, xo, good, good));
	assert_non_null(strstr(err, "t.conf:7: key 'auth_password_file': "
	    "route 'r' uses XOAUTH2"));
	/* a password without a user */
	assert_null(parsef(err, sizeof(err), "%s[route r]\nhost = a.example\n"
	    "auth_password_file = %s\n", base, good));
	assert_non_null(strstr(err, "t.conf:7: key 'auth_user': route 'r' "
	    "has auth_password_file but no auth_user"));
	/* the client secret file follows the same rules */
	assert_null(parsef(err, sizeof(err), "%s[route r]\nhost = a.example\n"
	    "auth_user = u\n%sxoauth2_secret_file = %s\n", base, xo, open_));
	assert_non_null(strstr(err, "t.conf:12: key 'xoauth2_secret_file': "));
	assert_non_null(strstr(err, "(chmod 600)"));
	assert_null(strstr(err, "TOPSECRET"));
}

/* Policy dates: YYYY-MM-DD or a UTC timestamp, "never" = 0. */
static void
test_dates(void **state)
{
	char err[512];
	struct conf *c = parse(base, err, sizeof(err));

	assert_non_null(c);
	assert_int_equal(c->authentication_required_from, 0);
	assert_int_equal(c->choice_required_from, 0);
	assert_null(c->platform_smarthost_route);
	assert_string_equal(c->store, "sqlite:var/ombud.db");
	conf_free(c);
	c = parsef(err, sizeof(err), "authentication_required_from = "
	    "2026-12-01\nchoice_required_from = 2027-02-03T04:05:06Z\n%s",
	    base);
	assert_non_null(c);
	assert_int_equal(c->authentication_required_from, 1796083200);
	assert_int_equal(c->choice_required_from, 1801627506);
	conf_free(c);
	static const char *const bad[] = { "2026-13-01", "2026-12-1",
	    "tomorrow", "2026-12-01T10:00:00", "2026-12-01x", "1969-12-31",
	    "2026-12-01T25:00:00Z" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_null(parsef(err, sizeof(err), "choice_required_from = "
		    "%s\n%s", bad[i], base));
		assert_non_null(strstr(err, "t.conf:1: key "
		    "'choice_required_from': "));
	}
	/* platform_smarthost_route must name a route */
	assert_null(parsef(err, sizeof(err), "platform_smarthost_route = up\n"
	    "%s", base));
	assert_non_null(strstr(err, "there is no [route up] section"));
	c = parsef(err, sizeof(err), "platform_smarthost_route = up\n%s"
	    "[route up]\nhost = smtp.example.net\n", base);
	assert_non_null(c);
	assert_string_equal(c->platform_smarthost_route, "up");
	conf_free(c);
}

/* docs/CONFIG.md must hold exactly the table `ombud config keys` prints
 * (the same format as cli_config.c), as its last table. */
static void
test_docs(void **state)
{
	const char *src = getenv("OMBUD_SRCDIR");
	const struct conf_keydoc *k;
	size_t n = conf_keydocs(&k);
	char path[4096], *text, *at;
	struct buf want;
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
	buf_init(&want);
	buf_adds(&want, "| section | key | default | meaning |\n"
	    "|---|---|---|---|\n");
	for (size_t i = 0; i < n; i++) {
		char needle[128];
		snprintf(needle, sizeof(needle), "| %s | `%s` |",
		    k[i].section, k[i].key);
		if (strstr(text, needle) == NULL)
			fail_msg("docs/CONFIG.md does not document %s %s",
			    k[i].section, k[i].key);
		buf_printf(&want, "| %s | `%s` | %s%s%s | %s |\n",
		    k[i].section, k[i].key, k[i].def ? "`" : "",
		    k[i].def ? k[i].def : "-", k[i].def ? "`" : "", k[i].doc);
	}
	at = strstr(text, want.data);
	if (at == NULL || at[want.len] == '|')
		fail_msg("docs/CONFIG.md's table is not the output of `ombud "
		    "config keys` (regenerate it)");
	buf_free(&want);
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
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_delivery_values),
		cmocka_unit_test(test_route_errors),
		cmocka_unit_test(test_too_many_routes),
		cmocka_unit_test_setup_teardown(test_routes, secrets_setup,
		    secrets_teardown),
		cmocka_unit_test_setup_teardown(test_secret_files,
		    secrets_setup, secrets_teardown),
		cmocka_unit_test_setup_teardown(test_xoauth2_rules,
		    secrets_setup, secrets_teardown),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_docs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

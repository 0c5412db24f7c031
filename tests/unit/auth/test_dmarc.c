/*
 * test_dmarc.c - the pure parts of src/auth/dmarc.c: record parsing,
 * organizational domains (every case of the Public Suffix List's own
 * test file), alignment and evaluation.
 *
 * The PSL cases come from Debian's publicsuffix package
 * (/usr/share/doc/publicsuffix/examples/test_psl.txt, or $TEST_PSL): each
 * checkPublicSuffix(input, expected) line, expected null meaning "no
 * organizational domain".  Every case must match; the file missing is a
 * failure, not a skip.
 *
 * Must never: touch the network (the lookup is tested by
 * test_dmarc_lookup.py against dnsmasq on loopback).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/dmarc.h"
#include "common/util.h"

#define TEST_PSL_DEFAULT \
	"/usr/share/doc/publicsuffix/examples/test_psl.txt"

static int
parse(const char *txt, struct dmarc_record *rec, char *err, size_t errlen)
{
	return dmarc_parse(txt, strlen(txt), rec, err, errlen);
}

static void
parse_ok(const char *txt, struct dmarc_record *rec)
{
	char err[256] = "";

	if (parse(txt, rec, err, sizeof(err)) != 0)
		fail_msg("\"%s\" rejected: %s", txt, err);
}

static void
parse_bad(const char *txt, const char *why)
{
	struct dmarc_record rec;
	char err[256] = "";

	if (parse(txt, &rec, err, sizeof(err)) != -1)
		fail_msg("\"%s\" accepted", txt);
	if (strstr(err, why) == NULL)
		fail_msg("\"%s\": error \"%s\" lacks \"%s\"", txt, err, why);
}

static void
test_parse_valid(void **state)
{
	struct dmarc_record r;

	parse_ok("v=DMARC1; p=none", &r);
	assert_int_equal(r.p, DMARC_POLICY_NONE);
	assert_int_equal(r.sp, DMARC_POLICY_NONE);
	assert_false(r.sp_set);
	assert_int_equal(r.adkim, DMARC_ALIGN_RELAXED);
	assert_int_equal(r.aspf, DMARC_ALIGN_RELAXED);
	assert_int_equal(r.pct, 100);
	assert_int_equal(r.ri, 86400);
	assert_int_equal(r.fo, DMARC_FO_0);
	assert_true(r.rf_afrf);
	assert_int_equal(r.nrua, 0);
	assert_false(r.p_fallback);

	parse_ok("v=DMARC1;p=reject;sp=quarantine;adkim=s;aspf=S;pct=25;"
	    "rua=mailto:agg@example.com,mailto:x@example.net!10m;"
	    "ruf=mailto:f@example.com!512;fo=1:d:S;rf=afrf;ri=3600", &r);
	assert_int_equal(r.p, DMARC_POLICY_REJECT);
	assert_int_equal(r.sp, DMARC_POLICY_QUARANTINE);
	assert_true(r.sp_set);
	assert_int_equal(r.adkim, DMARC_ALIGN_STRICT);
	assert_int_equal(r.aspf, DMARC_ALIGN_STRICT);
	assert_int_equal(r.pct, 25);
	assert_int_equal(r.ri, 3600);
	assert_int_equal(r.fo, DMARC_FO_1 | DMARC_FO_D | DMARC_FO_S);
	assert_int_equal(r.nrua, 2);
	assert_string_equal(r.rua[0].uri, "mailto:agg@example.com");
	assert_int_equal(r.rua[0].max_size, 0);
	assert_string_equal(r.rua[1].uri, "mailto:x@example.net");
	assert_int_equal(r.rua[1].max_size, 10u << 20);
	assert_int_equal(r.nruf, 1);
	assert_int_equal(r.ruf[0].max_size, 512);

	/* Values and tag names are case-insensitive, DMARC1 is not. */
	parse_ok("V=DMARC1; P=Quarantine; ASPF=r", &r);
	assert_int_equal(r.p, DMARC_POLICY_QUARANTINE);
	assert_int_equal(r.sp, DMARC_POLICY_QUARANTINE);
	parse_ok("v=DMARC1; p=reject; pct=0", &r);
	assert_int_equal(r.pct, 0);
	parse_ok("v=DMARC1; p=reject; pct=100", &r);
	assert_int_equal(r.pct, 100);
	/* ri= saturates (the grammar allows 32 digits). */
	parse_ok("v=DMARC1; p=none; ri=99999999999999999999", &r);
	assert_int_equal(r.ri, UINT32_MAX);
	/* rf= with unknown formats: only afrf counts. */
	parse_ok("v=DMARC1; p=none; rf=iodef", &r);
	assert_false(r.rf_afrf);
	parse_ok("v=DMARC1; p=none; rf=iodef:afrf", &r);
	assert_true(r.rf_afrf);
	/* The order after v= is free. */
	parse_ok("v=DMARC1; rua=mailto:a@b.example; p=reject", &r);
	assert_int_equal(r.p, DMARC_POLICY_REJECT);
}

static void
test_parse_whitespace(void **state)
{
	struct dmarc_record r;

	parse_ok("  v = DMARC1 ;\tp =\treject ; sp= none ;  ", &r);
	assert_int_equal(r.p, DMARC_POLICY_REJECT);
	assert_int_equal(r.sp, DMARC_POLICY_NONE);
	parse_ok("v=DMARC1;p=none;", &r);
	parse_ok("v=DMARC1;;p=none;;;", &r);
	parse_ok("v=DMARC1; p=none; rua = mailto:a@b.example , "
	    "mailto:c@d.example", &r);
	assert_int_equal(r.nrua, 2);
	assert_string_equal(r.rua[1].uri, "mailto:c@d.example");
	parse_ok("v=DMARC1; p=none; fo = 0 : 1", &r);
	assert_int_equal(r.fo, DMARC_FO_0 | DMARC_FO_1);
}

static void
test_parse_unknown_tags(void **state)
{
	struct dmarc_record r;

	parse_ok("v=DMARC1; p=reject; np=none; t=y; psd=n; x_1=any value",
	    &r);
	assert_int_equal(r.p, DMARC_POLICY_REJECT);
	/* Unknown tags twice are nobody's business. */
	parse_ok("v=DMARC1; p=reject; x=1; x=2", &r);
	/* An empty value of an unknown tag is fine too. */
	parse_ok("v=DMARC1; p=reject; x=", &r);
}

static void
test_parse_invalid(void **state)
{
	parse_bad("", "not a DMARC record");
	parse_bad("p=reject", "not a DMARC record");
	parse_bad("p=reject; v=DMARC1", "not a DMARC record");
	parse_bad("v=DMARC2; p=none", "not a DMARC record");
	parse_bad("v=dmarc1; p=none", "not a DMARC record");
	parse_bad("v=DMARC1x; p=none", "not a DMARC record");
	parse_bad("v=DMARC1 p=none", "not a DMARC record");
	parse_bad("v=DMARC1", "no p=");
	parse_bad("v=DMARC1;", "no p=");
	parse_bad("v=DMARC1; p=bogus", "invalid p=");
	parse_bad("v=DMARC1; p=", "invalid p=");
	parse_bad("v=DMARC1; p=none; sp=maybe", "invalid sp=");
	parse_bad("v=DMARC1; p=none; p=reject", "p= appears twice");
	parse_bad("v=DMARC1; p=none; v=DMARC1", "v= appears twice");
	parse_bad("v=DMARC1; p=none; pct=101", "pct=");
	parse_bad("v=DMARC1; p=none; pct=1000", "pct=");
	parse_bad("v=DMARC1; p=none; pct=-1", "pct=");
	parse_bad("v=DMARC1; p=none; pct=", "pct=");
	parse_bad("v=DMARC1; p=none; pct=5%", "pct=");
	parse_bad("v=DMARC1; p=none; adkim=x", "adkim=");
	parse_bad("v=DMARC1; p=none; aspf=relaxed", "aspf=");
	parse_bad("v=DMARC1; p=none; fo=2", "fo=");
	parse_bad("v=DMARC1; p=none; fo=", "fo=");
	parse_bad("v=DMARC1; p=none; fo=0::1", "fo=");
	parse_bad("v=DMARC1; p=none; rf=", "rf=");
	parse_bad("v=DMARC1; p=none; rf=-x", "rf=");
	parse_bad("v=DMARC1; p=none; ri=1h", "ri=");
	parse_bad("v=DMARC1; p=none; novalue", "not a tag=value");
	parse_bad("v=DMARC1; p=none; =x", "not a tag=value");
	parse_bad("v=DMARC1; p=none; 1x=y", "not a tag=value");
	parse_bad("v=DMARC1; p=none; a-b=y", "bad tag name");
	parse_bad("v=DMARC1; p=none\r\n", "byte 0x0d");
	parse_bad("v=DMARC1; p=none; x=\xc3\xa9", "byte 0xc3");
}

/* 6.6.3 step 5: no valid p= (or an invalid sp=) but a valid rua=. */
static void
test_parse_p_fallback(void **state)
{
	struct dmarc_record r;

	parse_ok("v=DMARC1; rua=mailto:d@example.com", &r);
	assert_true(r.p_fallback);
	assert_int_equal(r.p, DMARC_POLICY_NONE);
	assert_int_equal(r.sp, DMARC_POLICY_NONE);
	parse_ok("v=DMARC1; p=bogus; rua=mailto:d@example.com", &r);
	assert_true(r.p_fallback);
	assert_int_equal(r.p, DMARC_POLICY_NONE);
	parse_ok("v=DMARC1; p=reject; sp=x; rua=bad uri, mailto:d@e.example",
	    &r);
	assert_true(r.p_fallback);
	assert_int_equal(r.p, DMARC_POLICY_NONE);
	assert_int_equal(r.sp, DMARC_POLICY_NONE);
	assert_int_equal(r.nrua, 1);
	assert_int_equal(r.rua_dropped, 1);
	/* rua= without a single valid URI does not rescue it. */
	parse_bad("v=DMARC1; p=bogus; rua=notauri", "invalid p=");
	parse_bad("v=DMARC1; rua=", "no p=");
}

static void
test_parse_uris(void **state)
{
	struct dmarc_record r;

	parse_ok("v=DMARC1; p=none; rua=mailto:a%2Cb@example.com!1k,"
	    "https://r.example/x?y=1&z=%41!2G,mailto:c@example.com!3t,"
	    "mailto:d@example.com,mailto:e@example.com", &r);
	assert_int_equal(r.nrua, DMARC_MAX_URIS);
	assert_int_equal(r.rua_dropped, 1);	/* the fifth */
	assert_string_equal(r.rua[0].uri, "mailto:a%2Cb@example.com");
	assert_int_equal(r.rua[0].max_size, 1024);
	assert_int_equal(r.rua[1].max_size, 2ull << 30);
	assert_int_equal(r.rua[2].max_size, 3ull << 40);
	/* Invalid ones are dropped one by one. */
	parse_ok("v=DMARC1; p=none; rua=mailto:, :x, 1a:b, mailto:a b, "
	    "mailto:x%zz, mailto:a@b!, mailto:a@b!k, mailto:a@b!0, "
	    "mailto:a@b!1x, mailto:a@b!9999999999999t, mailto:\"x\"@b, "
	    "mailto:ok@example.com", &r);
	assert_int_equal(r.nrua, 1);
	assert_int_equal(r.rua_dropped, 11);
	assert_string_equal(r.rua[0].uri, "mailto:ok@example.com");
}

static void
test_parse_huge(void **state)
{
	struct dmarc_record r;
	struct buf b;
	char err[256];
	int i;

	/* Too long as a whole. */
	buf_init(&b);
	buf_adds(&b, "v=DMARC1; p=none; x=");
	while (b.len <= DMARC_RECORD_MAX)
		buf_addc(&b, 'a');
	assert_int_equal(dmarc_parse(b.data, b.len, &r, err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "longer than"));
	/* Exactly the maximum is fine. */
	b.len = DMARC_RECORD_MAX;
	b.data[b.len] = '\0';
	assert_int_equal(dmarc_parse(b.data, b.len, &r, err, sizeof(err)), 0);

	/* Too many tags. */
	buf_reset(&b);
	buf_adds(&b, "v=DMARC1; p=none");
	for (i = 0; i < DMARC_MAX_TAGS; i++)
		buf_printf(&b, "; x%d=1", i);
	assert_int_equal(dmarc_parse(b.data, b.len, &r, err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "tags"));

	/* A URI one byte too long is dropped, the maximum is kept. */
	buf_reset(&b);
	buf_adds(&b, "v=DMARC1; p=none; rua=mailto:");
	for (i = 7; i < DMARC_URI_MAX; i++)
		buf_addc(&b, 'a');
	buf_adds(&b, ",mailto:");
	for (i = 7; i <= DMARC_URI_MAX; i++)
		buf_addc(&b, 'b');
	assert_int_equal(dmarc_parse(b.data, b.len, &r, err, sizeof(err)), 0);
	assert_int_equal(r.nrua, 1);
	assert_int_equal(strlen(r.rua[0].uri), DMARC_URI_MAX);
	assert_int_equal(r.rua_dropped, 1);

	/* A record with a NUL inside. */
	assert_int_equal(dmarc_parse("v=DMARC1; p=none\0x", 18, &r, err,
	    sizeof(err)), -1);
	buf_free(&b);
}

static void
test_is_record(void **state)
{
	assert_true(dmarc_is_record("v=DMARC1", 8));
	assert_true(dmarc_is_record("v=DMARC1;p=none", 15));
	assert_true(dmarc_is_record(" v = DMARC1 ; x", 15));
	assert_false(dmarc_is_record("v=DMARC10", 9));
	assert_false(dmarc_is_record("v=spf1 -all", 11));
	assert_false(dmarc_is_record("v=DMARC", 7));
	assert_false(dmarc_is_record("v=DMARC1", 7));
	assert_false(dmarc_is_record(NULL, 0));
}

/* -- the Public Suffix List's test file ---------------------------------- */

/* One argument of checkPublicSuffix(): null or '...'.  NULL on junk. */
static char *
psl_arg(char **pp, bool *isnull)
{
	char *p = *pp, *e;

	while (*p == ' ')
		p++;
	if (strncmp(p, "null", 4) == 0) {
		*isnull = true;
		*pp = p + 4;
		return p;
	}
	*isnull = false;
	if (*p != '\'' || (e = strchr(p + 1, '\'')) == NULL)
		return NULL;
	*e = '\0';
	*pp = e + 1;
	return p + 1;
}

static void
test_psl_file(void **state)
{
	const char *path = getenv("TEST_PSL");
	char line[1024], out[512], *p, *in, *want = NULL;
	bool in_null = false, want_null = false;
	FILE *f;
	int n = 0, bad = 0, lineno = 0, rc;

	if (path == NULL)
		path = TEST_PSL_DEFAULT;
	if ((f = fopen(path, "r")) == NULL)
		fail_msg("%s: cannot open (apt-get install publicsuffix, or "
		    "make test-deps)", path);
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		if (strncmp(line, "checkPublicSuffix(", 18) != 0)
			continue;
		p = line + 18;
		if ((in = psl_arg(&p, &in_null)) == NULL || *p++ != ',' ||
		    (want = psl_arg(&p, &want_null)) == NULL ||
		    strncmp(p, ");", 2) != 0)
			fail_msg("%s:%d: cannot read the line", path, lineno);
		rc = dmarc_org_domain(in_null ? NULL : in, out, sizeof(out));
		n++;
		if (want_null ? rc != -1 :
		    (rc != 0 || strcmp(out, want) != 0)) {
			print_error("%s:%d: %s -> %s, expected %s\n", path,
			    lineno, in_null ? "null" : in,
			    rc == 0 ? out : "null",
			    want_null ? "null" : want);
			bad++;
		}
	}
	fclose(f);
	print_message("test_psl.txt: %d of %d cases match\n", n - bad, n);
	assert_true(n >= 70);	/* the file had 71 active cases */
	assert_int_equal(bad, 0);
}

static void
test_org_domain(void **state)
{
	char out[256];

	assert_int_equal(dmarc_org_domain("Mail.Example.COM.", out,
	    sizeof(out)), 0);
	assert_string_equal(out, "example.com");
	assert_int_equal(dmarc_org_domain("a.b.example.co.uk", out,
	    sizeof(out)), 0);
	assert_string_equal(out, "example.co.uk");
	assert_int_equal(dmarc_org_domain("co.uk", out, sizeof(out)), -1);
	assert_string_equal(out, "");
	assert_int_equal(dmarc_org_domain("ÄÖ.Example.com", out,
	    sizeof(out)), 0);
	assert_string_equal(out, "example.com");
	assert_int_equal(dmarc_org_domain("www.ÄÖ.de", out, sizeof(out)), 0);
	assert_string_equal(out, "äö.de");
	/* Not names. */
	assert_int_equal(dmarc_org_domain("a..example.com", out,
	    sizeof(out)), -1);
	assert_int_equal(dmarc_org_domain("a b.example.com", out,
	    sizeof(out)), -1);
	assert_int_equal(dmarc_org_domain("", out, sizeof(out)), -1);
	assert_int_equal(dmarc_org_domain(".", out, sizeof(out)), -1);
	assert_int_equal(dmarc_org_domain("x\xff.example.com", out,
	    sizeof(out)), -1);
	assert_int_equal(dmarc_org_domain("a.example.com", out, 11), -1);
	assert_int_equal(dmarc_org_domain("a.example.com", out, 12), 0);
}

/* -- alignment ---------------------------------------------------------- */

static void
test_aligned(void **state)
{
	const enum dmarc_align R = DMARC_ALIGN_RELAXED, S = DMARC_ALIGN_STRICT;

	assert_true(dmarc_aligned("example.com", "example.com", S));
	assert_true(dmarc_aligned("Example.COM", "example.com.", S));
	assert_false(dmarc_aligned("example.com", "mail.example.com", S));
	assert_true(dmarc_aligned("example.com", "mail.example.com", R));
	assert_true(dmarc_aligned("a.example.com", "b.c.example.com", R));
	assert_false(dmarc_aligned("example.com", "example.net", R));
	assert_false(dmarc_aligned("example.com", "badexample.com", R));
	/* co.uk-like suffixes: the org domain is one label below. */
	assert_true(dmarc_aligned("a.example.co.uk", "example.co.uk", R));
	assert_false(dmarc_aligned("example.co.uk", "other.co.uk", R));
	assert_false(dmarc_aligned("a.b.kobe.jp", "c.b.kobe.jp", S));
	assert_true(dmarc_aligned("a.b.c.kobe.jp", "x.b.c.kobe.jp", R));
	assert_false(dmarc_aligned("b.c.kobe.jp", "d.c.kobe.jp", R));
	/* Private-section suffixes count too. */
	assert_false(dmarc_aligned("alice.github.io", "bob.github.io", R));
	/* A public suffix aligns only with itself. */
	assert_true(dmarc_aligned("co.uk", "co.uk", R));
	assert_false(dmarc_aligned("co.uk", "example.co.uk", R));
	/* U-labels compare as A-labels. */
	assert_true(dmarc_aligned("bücher.example", "xn--bcher-kva.example",
	    S));
	assert_true(dmarc_aligned("www.Bücher.de", "xn--bcher-kva.de", R));
	/* Not names: never aligned. */
	assert_false(dmarc_aligned("", "", S));
	assert_false(dmarc_aligned(NULL, "example.com", R));
	assert_false(dmarc_aligned("a..b", "a..b", S));
}

/* -- evaluation --------------------------------------------------------- */

static void
found(struct dmarc_lookup_result *lr, const char *txt, bool at_org)
{
	memset(lr, 0, sizeof(*lr));
	lr->status = DMARC_LOOKUP_FOUND;
	lr->at_org = at_org;
	parse_ok(txt, &lr->rec);
}

static void
dkim_res(struct dkim_result *d, enum dkim_status st, const char *domain)
{
	memset(d, 0, sizeof(*d));
	d->status = st;
	d->reason = "";
	(void)strlcpy_ok(d->domain, domain, sizeof(d->domain));
}

static void
test_evaluate(void **state)
{
	struct dmarc_lookup_result lr;
	struct dmarc_verdict v;
	struct dkim_result dk[2];
	struct dmarc_auth a = { SPF_NONE, NULL, dk, 0 };

	/* Nothing authenticated: fail, p applies. */
	found(&lr, "v=DMARC1; p=reject", false);
	dmarc_evaluate("example.com", &lr, &a, 0, &v);
	assert_int_equal(v.result, DMARC_RESULT_FAIL);
	assert_int_equal(v.policy, DMARC_POLICY_REJECT);
	assert_int_equal(v.requested, DMARC_POLICY_REJECT);
	assert_false(v.spf_aligned || v.dkim_aligned || v.subdomain);

	/* SPF pass for a subdomain: aligned when relaxed only. */
	a.spf = SPF_PASS;
	a.spf_domain = "bounces.example.com";
	dmarc_evaluate("example.com", &lr, &a, 0, &v);
	assert_int_equal(v.result, DMARC_RESULT_PASS);
	assert_true(v.spf_aligned);
	assert_int_equal(v.policy, DMARC_POLICY_NONE);
	found(&lr, "v=DMARC1; p=reject; aspf=s", false);
	dmarc_evaluate("example.com", &lr, &a, 0, &v);
	assert_int_equal(v.result, DMARC_RESULT_FAIL);
	/* SPF softfail does not count. */
	a.spf = SPF_SOFTFAIL;
	a.spf_domain = "example.com";
	dmarc_evaluate("example.com", &lr, &a, 0, &v);
	assert_int_equal(v.result, DMARC_RESULT_FAIL);

	/* DKIM: a failing aligned signature and a passing unaligned one do
	 * not make a pass; an aligned pass does. */
	dkim_res(&dk[0], DKIM_FAIL, "example.com");
	dkim_res(&dk[1], DKIM_PASS, "esp.example.net");
	a.ndkim = 2;
	dmarc_evaluate("example.com", &lr, &a, 0, &v);
	assert_int_equal(v.result, DMARC_RESULT_FAIL);
	dkim_res(&dk[1], DKIM_PASS, "mail.example.com");
	dmarc_evaluate("example.com", &lr, &a, 0, &v);
	assert_int_equal(v.result, DMARC_RESULT_PASS);
	assert_true(v.dkim_aligned);
	assert_false(v.spf_aligned);
	assert_string_equal(v.dkim_domain, "mail.example.com");
	found(&lr, "v=DMARC1; p=reject; adkim=s", false);
	dmarc_evaluate("example.com", &lr, &a, 0, &v);
	assert_int_equal(v.result, DMARC_RESULT_FAIL);

	/* sp= for a subdomain whose record came from the org domain. */
	a.ndkim = 0;
	found(&lr, "v=DMARC1; p=reject; sp=quarantine", true);
	dmarc_evaluate("mail.example.com", &lr, &a, 0, &v);
	assert_true(v.subdomain);
	assert_int_equal(v.policy, DMARC_POLICY_QUARANTINE);
	found(&lr, "v=DMARC1; p=reject", true);
	dmarc_evaluate("mail.example.com", &lr, &a, 0, &v);
	assert_int_equal(v.policy, DMARC_POLICY_REJECT);	/* sp = p */
	/* The subdomain's own record: its p=. */
	found(&lr, "v=DMARC1; p=none; sp=reject", false);
	dmarc_evaluate("mail.example.com", &lr, &a, 0, &v);
	assert_false(v.subdomain);
	assert_int_equal(v.policy, DMARC_POLICY_NONE);

	/* pct: selected below pct, else one step milder. */
	found(&lr, "v=DMARC1; p=reject; pct=30", false);
	dmarc_evaluate("example.com", &lr, &a, 29, &v);
	assert_int_equal(v.policy, DMARC_POLICY_REJECT);
	assert_false(v.sampled_out);
	dmarc_evaluate("example.com", &lr, &a, 30, &v);
	assert_int_equal(v.policy, DMARC_POLICY_QUARANTINE);
	assert_true(v.sampled_out);
	assert_int_equal(v.requested, DMARC_POLICY_REJECT);
	found(&lr, "v=DMARC1; p=quarantine; pct=0", false);
	dmarc_evaluate("example.com", &lr, &a, 0, &v);
	assert_int_equal(v.policy, DMARC_POLICY_NONE);
	assert_true(v.sampled_out);
	found(&lr, "v=DMARC1; p=quarantine", false);
	dmarc_evaluate("example.com", &lr, &a, 99, &v);
	assert_int_equal(v.policy, DMARC_POLICY_QUARANTINE);

	/* No policy, temperror. */
	lr.status = DMARC_LOOKUP_NONE;
	dmarc_evaluate("example.com", &lr, &a, 0, &v);
	assert_int_equal(v.result, DMARC_RESULT_NONE);
	lr.status = DMARC_LOOKUP_TEMPERROR;
	dmarc_evaluate("example.com", &lr, &a, 0, &v);
	assert_int_equal(v.result, DMARC_RESULT_TEMPERROR);
	assert_string_equal(dmarc_result_str(v.result), "temperror");
	assert_string_equal(dmarc_policy_str(DMARC_POLICY_QUARANTINE),
	    "quarantine");
}

static void
test_sample(void **state)
{
	unsigned seen[100] = { 0 }, s;
	int i, distinct = 0;

	for (i = 0; i < 2000; i++) {
		s = dmarc_sample();
		assert_true(s < 100);
		seen[s]++;
	}
	for (i = 0; i < 100; i++)
		distinct += seen[i] > 0;
	assert_true(distinct > 80);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_whitespace),
		cmocka_unit_test(test_parse_unknown_tags),
		cmocka_unit_test(test_parse_invalid),
		cmocka_unit_test(test_parse_p_fallback),
		cmocka_unit_test(test_parse_uris),
		cmocka_unit_test(test_parse_huge),
		cmocka_unit_test(test_is_record),
		cmocka_unit_test(test_psl_file),
		cmocka_unit_test(test_org_domain),
		cmocka_unit_test(test_aligned),
		cmocka_unit_test(test_evaluate),
		cmocka_unit_test(test_sample),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

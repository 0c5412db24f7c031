/*
 * test_dkim.c - DKIM: the RFC 8463 Appendix A signatures reproduced byte
 * for byte and verified; body hashes of edge cases (empty body, trailing
 * blank lines and white space, chunked feeding); round trips over a varied
 * corpus with both algorithms and both canonicalizations, each also
 * verified by dkimpy (tests/unit/auth/dkimpy_verify.py) when installed;
 * tampering, over-signing and malformed tag lists.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth/dkim.h"
#include "common/util.h"

/* RFC 8463 A.1: the Ed25519 seed as PKCS#8, and the RSA key. */
static const char ed_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
    "-----END PRIVATE KEY-----\n";
static const char rsa_pem[] =
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIICXQIBAAKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQi\n"
    "Y/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqM\n"
    "KrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB\n"
    "AoGAH0cxOhFZDgzXWhDhnAJDw5s4roOXN4OhjiXa8W7Y3rhX3FJqmJSPuC8N9vQm\n"
    "6SVbaLAE4SG5mLMueHlh4KXffEpuLEiNp9Ss3O4YfLiQpbRqE7Tm5SxKjvvQoZZe\n"
    "zHorimOaChRL2it47iuWxzxSiRMv4c+j70GiWdxXnxe4UoECQQDzJB/0U58W7RZy\n"
    "6enGVj2kWF732CoWFZWzi1FicudrBFoy63QwcowpoCazKtvZGMNlPWnC7x/6o8Gc\n"
    "uSe0ga2xAkEA8C7PipPm1/1fTRQvj1o/dDmZp243044ZNyxjg+/OPN0oWCbXIGxy\n"
    "WvmZbXriOWoSALJTjExEgraHEgnXssuk7QJBALl5ICsYMu6hMxO73gnfNayNgPxd\n"
    "WFV6Z7ULnKyV7HSVYF0hgYOHjeYe9gaMtiJYoo0zGN+L3AAtNP9huqkWlzECQE1a\n"
    "licIeVlo1e+qJ6Mgqr0Q7Aa7falZ448ccbSFYEPD6oFxiOl9Y9se9iYHZKKfIcst\n"
    "o7DUw1/hz2Ck4N5JrgUCQQCyKveNvjzkkd8HjYs0SwM0fPjK16//5qDZ2UiDGnOe\n"
    "uEzxBDAr518Z8VFbR41in3W4Y3yCDgQlLlcETrS+zYcL\n"
    "-----END RSA PRIVATE KEY-----\n";

/* RFC 8463 A.2 */
static const char ed_txt[] =
    "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
static const char rsa_txt[] =
    "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
    "iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"
    "DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"
    "Ip3G+2kryOTIKT+l/K4w3QIDAQAB";

/* RFC 8463 A.3 */
#define RFC_UNSIGNED \
    "From: Joe SixPack <joe@football.example.com>\r\n" \
    "To: Suzie Q <suzie@shopping.example.net>\r\n" \
    "Subject: Is dinner ready?\r\n" \
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n" \
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n" \
    "\r\n" \
    "Hi.\r\n" \
    "\r\n" \
    "We lost the game.  Are you hungry yet?\r\n" \
    "\r\n" \
    "Joe.\r\n"
static const char rfc_signed[] =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    " date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
    " DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
    " dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
    RFC_UNSIGNED;
static const char ed_b[] = "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug"
    "4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==";
static const char rsa_b[] = "F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0I"
    "eIixNTe3DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2JzdA+L1"
    "0TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=";
static const char *const rfc_h[] = { "from", "to", "subject", "date",
    "message-id", "from", "subject", "date", NULL };

/* Key records by selector for the lookup callback. */
struct keys {
	const char	*sel[4];
	const char	*txt[4];
};

static int
lookup(void *arg, const char *selector, const char *domain, struct buf *txt)
{
	struct keys *k = arg;

	(void)domain;
	for (int i = 0; i < 4 && k->sel[i] != NULL; i++)
		if (strcmp(k->sel[i], selector) == 0) {
			buf_adds(txt, k->txt[i]);
			return DKIM_LOOKUP_FOUND;
		}
	return DKIM_LOOKUP_NOTFOUND;
}

static struct dkim_key *
load(const char *pem)
{
	char err[256];
	struct dkim_key *k = dkim_key_load_pem(pem, strlen(pem), err,
	    sizeof(err));

	if (k == NULL)
		fail_msg("%s", err);
	return k;
}

/* The b= value of a signature field, white space removed. */
static void
b_value(const char *field, char *out, size_t cap)
{
	const char *p = strstr(field, " b=");
	size_t o = 0;

	assert_non_null(p);
	for (p += 3; *p != '\0' && *p != ';'; p++)
		if (*p != ' ' && *p != '\r' && *p != '\n' && *p != '\t') {
			assert_true(o + 1 < cap);
			out[o++] = *p;
		}
	out[o] = '\0';
}

static void
test_rfc8463_sign(void **state)
{
	const struct dkim_sign_opts opts = {
		.hcanon = DKIM_CANON_RELAXED, .bcanon = DKIM_CANON_RELAXED,
		.hmode = DKIM_H_VERBATIM, .identity = "@football.example.com",
		.q_tag = true, .h_spaced = true,
	};
	const char *msg = RFC_UNSIGNED;
	struct dkim_key *ed = load(ed_pem), *rsa = load(rsa_pem);
	struct buf out, txt;
	char err[256], b[1024];

	(void)state;
	buf_init(&out);
	buf_init(&txt);
	assert_int_equal(dkim_sign(ed, "football.example.com", "brisbane",
	    rfc_h, 1528637909, &opts, msg, strlen(msg), &out, err,
	    sizeof(err)), 0);
	assert_non_null(strstr(out.data,
	    "bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;"));
	b_value(out.data, b, sizeof(b));
	assert_string_equal(b, ed_b);
	buf_reset(&out);
	assert_int_equal(dkim_sign(rsa, "football.example.com", "test",
	    rfc_h, 1528637909, &opts, msg, strlen(msg), &out, err,
	    sizeof(err)), 0);
	b_value(out.data, b, sizeof(b));
	assert_string_equal(b, rsa_b);
	/* the key records of A.2 */
	assert_int_equal(dkim_key_txt(ed, &txt), 0);
	assert_string_equal(txt.data, ed_txt);
	buf_reset(&txt);
	assert_int_equal(dkim_key_txt(rsa, &txt), 0);
	assert_string_equal(txt.data, rsa_txt);
	dkim_key_free(ed);
	dkim_key_free(rsa);
	buf_free(&out);
	buf_free(&txt);
}

/*
 * RFC 6376 Appendix A.2 with errata 3192 (one space in "game. Are", as
 * the example's bh= was computed) and 4926 (the Appendix C key): the
 * key record is the public half of the Appendix C private key.
 */
static const char rfc6376_txt[] =
    "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/UC3SB"
    "sEmGqZ9ZJW3/DkMoGeLnQg1fWn7/zYtIxN2SnFCjxOCKG9v3b4jYfcTNh5ijSsq631u"
    "BItLa7od+v/RtdC2UzJ1lWT947qR+Rcac2gbto/NMqJ0fzfVjH4OuKhitdY9tf6mcwG"
    "jaNBcWToIMmPSPDdQPNUYckcQ2QIDAQAB";
static const char rfc6376_signed[] =
    "DKIM-Signature: v=1; a=rsa-sha256; s=brisbane; d=example.com;\r\n"
    "      c=simple/simple; q=dns/txt; i=joe@football.example.com;\r\n"
    "      h=Received : From : To : Subject : Date : Message-ID;\r\n"
    "      bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    "      b=AuUoFEfDxTDkHlLXSZEpZj79LICEps6eda7W3deTVFOk4yAUoqOB\r\n"
    "        4nujc7YopdG5dWLSdNg6xNAZpOPr+kHxt1IrE+NahM6L/LbvaHut\r\n"
    "        KVdkLLkpVaVVQPzeRDI009SO2Il5Lu7rDNH6mZckBdrIx0orEtZV\r\n"
    "        4bmp/YzhwvcubU4=;\r\n"
    "Received: from client1.football.example.com  [192.0.2.1]\r\n"
    "      by submitserver.example.com with SUBMISSION;\r\n"
    "      Fri, 11 Jul 2003 21:01:54 -0700 (PDT)\r\n"
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game. Are you hungry yet?\r\n"
    "\r\n"
    "Joe.\r\n";

static void
test_rfc6376_verify(void **state)
{
	struct keys k = { { "brisbane" }, { rfc6376_txt } };
	struct dkim_result r[2];
	char *bad;

	(void)state;
	assert_int_equal(dkim_verify(rfc6376_signed, strlen(rfc6376_signed),
	    lookup, &k, 0, r, 2), 1);
	assert_int_equal(r[0].status, DKIM_PASS);
	assert_string_equal(r[0].domain, "example.com");
	/* the text as first published (two spaces): the body hash fails,
	 * which is what erratum 3192 reports */
	bad = xmalloc(strlen(rfc6376_signed) + 2);
	{
		const char *at = strstr(rfc6376_signed, "game. Are");
		size_t n = (size_t)(at - rfc6376_signed) + 5;

		memcpy(bad, rfc6376_signed, n);
		bad[n] = ' ';
		strcpy(bad + n + 1, at + 5);
	}
	assert_int_equal(dkim_verify(bad, strlen(bad), lookup, &k, 0, r, 2),
	    1);
	assert_int_equal(r[0].status, DKIM_FAIL);
	assert_string_equal(r[0].reason, "body hash mismatch");
	free(bad);
}

/* One key signing from several threads at once (the signer's workers
 * share the snapshot's keys and their signing templates): every
 * signature is the RFC 8463 one (both algorithms are deterministic). */
struct mt_arg {
	const struct dkim_key	*key;
	const char		*sel;
	const char		*want;
	int			 bad;
};

static void *
mt_sign(void *arg)
{
	const struct dkim_sign_opts opts = {
		.hcanon = DKIM_CANON_RELAXED, .bcanon = DKIM_CANON_RELAXED,
		.hmode = DKIM_H_VERBATIM, .identity = "@football.example.com",
		.q_tag = true, .h_spaced = true,
	};
	struct mt_arg *a = arg;
	struct buf out;
	char err[256], b[1024];

	buf_init(&out);
	for (int i = 0; i < 100; i++) {
		buf_reset(&out);
		if (dkim_sign(a->key, "football.example.com", a->sel, rfc_h,
		    1528637909, &opts, RFC_UNSIGNED, strlen(RFC_UNSIGNED), &out,
		    err, sizeof(err)) != 0) {
			a->bad++;
			continue;
		}
		b_value(out.data, b, sizeof(b));
		a->bad += strcmp(b, a->want) != 0;
	}
	buf_free(&out);
	return NULL;
}

static void
test_sign_threads(void **state)
{
	struct dkim_key *ed = load(ed_pem), *rsa = load(rsa_pem);
	struct dkim_key *ed2 = dkim_key_dup(ed);
	struct mt_arg a[6];
	pthread_t t[6];

	(void)state;
	for (int i = 0; i < 6; i++) {
		a[i].key = i % 3 == 0 ? ed : i % 3 == 1 ? rsa : ed2;
		a[i].sel = i % 3 == 1 ? "test" : "brisbane";
		a[i].want = i % 3 == 1 ? rsa_b : ed_b;
		a[i].bad = 0;
		assert_int_equal(pthread_create(&t[i], NULL, mt_sign, &a[i]), 0);
	}
	for (int i = 0; i < 6; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(a[i].bad, 0);
	}
	dkim_key_free(ed2);
	dkim_key_free(ed);
	dkim_key_free(rsa);
}

static void
test_rfc8463_verify(void **state)
{
	struct keys k = { { "brisbane", "test" }, { ed_txt, rsa_txt } };
	struct dkim_result r[4];
	char *bad;

	(void)state;
	assert_int_equal(dkim_verify(rfc_signed, strlen(rfc_signed), lookup,
	    &k, 1528637909, r, 4), 2);
	assert_int_equal(r[0].status, DKIM_PASS);
	assert_string_equal(r[0].selector, "brisbane");
	assert_string_equal(r[0].domain, "football.example.com");
	assert_int_equal(r[1].status, DKIM_PASS);
	/* one changed body byte: both fail on the body hash */
	bad = xstrdup(rfc_signed);
	*strstr(bad, "hungry") = 'H';
	assert_int_equal(dkim_verify(bad, strlen(bad), lookup, &k, 0, r, 4),
	    2);
	assert_int_equal(r[0].status, DKIM_FAIL);
	assert_string_equal(r[0].reason, "body hash mismatch");
	assert_int_equal(r[1].status, DKIM_FAIL);
	free(bad);
	/* one changed header byte: the signatures fail */
	bad = xstrdup(rfc_signed);
	*strstr(bad, "dinner") = 'D';
	assert_int_equal(dkim_verify(bad, strlen(bad), lookup, &k, 0, r, 4),
	    2);
	assert_int_equal(r[0].status, DKIM_FAIL);
	assert_string_equal(r[0].reason, "signature mismatch");
	assert_int_equal(r[1].status, DKIM_FAIL);
	free(bad);
	/* the keys swapped: permerror (key type does not match a=) */
	k.txt[0] = rsa_txt;
	k.txt[1] = ed_txt;
	assert_int_equal(dkim_verify(rfc_signed, strlen(rfc_signed), lookup,
	    &k, 0, r, 4), 2);
	assert_int_equal(r[0].status, DKIM_PERMERROR);
	assert_int_equal(r[1].status, DKIM_PERMERROR);
	/* no key */
	k.sel[0] = "other";
	k.sel[1] = NULL;
	assert_int_equal(dkim_verify(rfc_signed, strlen(rfc_signed), lookup,
	    &k, 0, r, 4), 2);
	assert_int_equal(r[0].status, DKIM_PERMERROR);
	assert_string_equal(r[0].reason, "no key record");
}

static void
b64hash(enum dkim_canon c, const char *body, size_t chunk, char *out)
{
	struct dkim_bodyhash *bh = dkim_bodyhash_new(c, -1);
	unsigned char h[DKIM_HASH_LEN];
	size_t n = strlen(body);

	assert_non_null(bh);
	for (size_t i = 0; i < n; i += chunk)
		dkim_bodyhash_update(bh, body + i, n - i < chunk ? n - i :
		    chunk);
	assert_int_equal(dkim_bodyhash_final(bh, h), 0);
	dkim_bodyhash_free(bh);
	/* hex is enough for comparing */
	for (int i = 0; i < DKIM_HASH_LEN; i++)
		sprintf(out + 2 * i, "%02x", h[i]);
}

static void
check_same(enum dkim_canon c, const char *a, const char *b)
{
	char ha[65], hb[65];

	b64hash(c, a, 1000000, ha);
	b64hash(c, b, 1000000, hb);
	assert_string_equal(ha, hb);
}

static void
test_body_canon(void **state)
{
	char h1[65], h2[65];
	const char *bodies[] = {
		"", "\r\n", "a", "a\r\n\r\n\r\n", "a \t b  \r\n \r\n\t\r\n",
		"x\ry\r\n\r", "\r\n\r\nz\r\n", "8bit: \xc3\xa9\xff\r\n",
	};

	(void)state;
	/* empty: relaxed hashes nothing, simple hashes one CRLF */
	b64hash(DKIM_CANON_RELAXED, "", 1, h1);
	assert_string_equal(h1, "e3b0c44298fc1c149afbf4c8996fb924"
	    "27ae41e4649b934ca495991b7852b855");
	b64hash(DKIM_CANON_SIMPLE, "", 1, h1);
	b64hash(DKIM_CANON_SIMPLE, "\r\n", 1, h2);
	assert_string_equal(h1, h2);
	check_same(DKIM_CANON_SIMPLE, "\r\n\r\n\r\n", "");
	check_same(DKIM_CANON_SIMPLE, "a\r\n\r\n", "a\r\n");
	check_same(DKIM_CANON_SIMPLE, "a", "a\r\n");
	check_same(DKIM_CANON_RELAXED, "a  b \t\r\n \r\n\r\n", "a b\r\n");
	check_same(DKIM_CANON_RELAXED, " \r\n", "");
	check_same(DKIM_CANON_RELAXED, "\tx", " x\r\n");
	/* simple keeps white space */
	b64hash(DKIM_CANON_SIMPLE, "a \r\n", 1000, h1);
	b64hash(DKIM_CANON_SIMPLE, "a\r\n", 1000, h2);
	assert_string_not_equal(h1, h2);
	/* chunking changes nothing, even a CRLF split across chunks */
	for (size_t i = 0; i < nitems(bodies); i++)
		for (size_t ch = 1; ch < 5; ch++) {
			b64hash(DKIM_CANON_RELAXED, bodies[i], ch, h1);
			b64hash(DKIM_CANON_RELAXED, bodies[i], 4096, h2);
			assert_string_equal(h1, h2);
			b64hash(DKIM_CANON_SIMPLE, bodies[i], ch, h1);
			b64hash(DKIM_CANON_SIMPLE, bodies[i], 4096, h2);
			assert_string_equal(h1, h2);
		}
}

static void
test_header_canon(void **state)
{
	struct buf b;
	const char f[] = "SubJect \t:  Is \r\n\t dinner  ready? \t";

	(void)state;
	buf_init(&b);
	dkim_canon_header(DKIM_CANON_RELAXED, f, strlen(f), true, &b);
	assert_string_equal(b.data, "subject:Is dinner ready?\r\n");
	buf_reset(&b);
	dkim_canon_header(DKIM_CANON_SIMPLE, f, strlen(f), false, &b);
	assert_string_equal(b.data, f);
	buf_free(&b);
}

static const char *const corpus[] = {
	/* folded and duplicate headers */
	"Received: from a\r\n\tby b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	"Received: from c by d\r\n"
	"From: \"A, B\" <a@example.org>\r\n"
	"To: x@example.net,\r\n  y@example.net\r\n"
	"Subject: folded\r\n  subject  with   spaces \r\n"
	"Subject: a second subject\r\n"
	"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	"Message-ID: <1@example.org>\r\n"
	"\r\n"
	"body line\r\n",
	/* empty body */
	"From: a@example.org\r\nSubject: empty\r\n\r\n",
	/* no body at all, no empty line */
	"From: a@example.org\r\nSubject: nothing\r\n",
	/* trailing whitespace and blank lines */
	"From: a@example.org\r\nTo: b@example.net\r\n\r\n"
	"  leading\r\ntrailing \t \r\n\r\n \r\n\t\r\n\r\n\r\n",
	/* 8-bit body and header */
	"From: =?utf-8?q?J=C3=B6rg?= <j@example.org>\r\n"
	"Subject: caf\xc3\xa9\r\nContent-Type: text/plain; charset=utf-8\r\n"
	"Content-Transfer-Encoding: 8bit\r\n\r\n"
	"\xc3\xa9t\xc3\xa9 \xe2\x82\xac\r\n\xff\xfe\r\n",
	/* long lines and a body without a final CRLF */
	"From: a@example.org\r\nSubject: long\r\n\r\n"
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	"\r\n.\r\n..dots\r\nlast line without CRLF",
	/* CRLF edge cases: only empty lines, a bare CR inside a line */
	"From: a@example.org\r\nSubject: crlf\r\n\r\n\r\n\r\n",
	"From: a@example.org\r\nSubject: cr\r\n\r\nbare\rcr\r\nend\r\n",
};

/* Run dkimpy on msg with record; skipped (true) when not installed. */
static bool
dkimpy_ok(const char *msg, size_t len, const char *record)
{
	const char *script = getenv("DKIMPY_VERIFY");
	char path[] = "/tmp/ombud-dkim-XXXXXX";
	int fd, st;
	pid_t pid;

	if (script == NULL || access("/usr/bin/python3", X_OK) != 0)
		return true;
	assert_true((fd = mkstemp(path)) >= 0);
	assert_int_equal(write_all(fd, msg, len), 0);
	close(fd);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl("/usr/bin/python3", "python3", script, path, record,
		    (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	unlink(path);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == 2)
		return true;	/* dkimpy not installed */
	return WEXITSTATUS(st) == 0;
}

static void
roundtrip(struct dkim_key *key, const char *txt, enum dkim_canon hc,
    enum dkim_canon bc, enum dkim_hmode hm)
{
	const struct dkim_sign_opts opts = { .hcanon = hc, .bcanon = bc,
	    .hmode = hm };
	struct keys k = { { "sel" }, { txt } };
	struct dkim_result r[2];
	struct buf out;
	char err[256];

	buf_init(&out);
	for (size_t i = 0; i < nitems(corpus); i++) {
		buf_reset(&out);
		assert_int_equal(dkim_sign(key, "example.org", "sel", NULL,
		    1700000000, &opts, corpus[i], strlen(corpus[i]), &out,
		    err, sizeof(err)), 0);
		/* folded at 78 columns */
		for (const char *l = out.data; *l != '\0'; ) {
			const char *e = strstr(l, "\r\n");

			assert_non_null(e);
			assert_true(e - l <= 78);
			l = e + 2;
		}
		buf_adds(&out, corpus[i]);
		assert_int_equal(dkim_verify(out.data, out.len, lookup, &k,
		    1700000000, r, 2), 1);
		if (r[0].status != DKIM_PASS)
			fail_msg("corpus %zu: %s (%s)", i,
			    dkim_status_str(r[0].status), r[0].reason);
		if (!dkimpy_ok(out.data, out.len, txt))
			fail_msg("dkimpy refused corpus %zu:\n%s", i,
			    out.data);
	}
	buf_free(&out);
}

static void
test_roundtrip(void **state)
{
	char err[256];
	struct dkim_key *keys[3];
	struct buf txt;

	(void)state;
	keys[0] = load(ed_pem);
	keys[1] = dkim_keygen(DKIM_KEY_RSA, 0, err, sizeof(err));
	keys[2] = dkim_keygen(DKIM_KEY_ED25519, 0, err, sizeof(err));
	buf_init(&txt);
	for (int i = 0; i < 3; i++) {
		assert_non_null(keys[i]);
		buf_reset(&txt);
		assert_int_equal(dkim_key_txt(keys[i], &txt), 0);
		roundtrip(keys[i], txt.data, DKIM_CANON_RELAXED,
		    DKIM_CANON_RELAXED, DKIM_H_OVERSIGN);
		roundtrip(keys[i], txt.data, DKIM_CANON_SIMPLE,
		    DKIM_CANON_SIMPLE, DKIM_H_PRESENT);
		roundtrip(keys[i], txt.data, DKIM_CANON_RELAXED,
		    DKIM_CANON_SIMPLE, DKIM_H_OVERSIGN);
		roundtrip(keys[i], txt.data, DKIM_CANON_SIMPLE,
		    DKIM_CANON_RELAXED, DKIM_H_PRESENT);
		dkim_key_free(keys[i]);
	}
	buf_free(&txt);
}

static void
test_keys(void **state)
{
	char err[256];
	struct dkim_key *k, *again;
	struct buf pem, t1, t2;

	(void)state;
	buf_init(&pem);
	buf_init(&t1);
	buf_init(&t2);
	assert_null(dkim_keygen(DKIM_KEY_RSA, 512, err, sizeof(err)));
	assert_null(dkim_key_load_pem("junk", 4, err, sizeof(err)));
	k = dkim_keygen(DKIM_KEY_RSA, 1024, err, sizeof(err));
	assert_non_null(k);
	assert_int_equal(dkim_key_pem(k, &pem), 0);
	assert_non_null(strstr(pem.data, "BEGIN PRIVATE KEY"));
	again = load(pem.data);
	assert_int_equal(dkim_key_type(again), DKIM_KEY_RSA);
	assert_int_equal(dkim_key_txt(k, &t1), 0);
	assert_int_equal(dkim_key_txt(again, &t2), 0);
	assert_string_equal(t1.data, t2.data);
	dkim_key_free(k);
	dkim_key_free(again);
	buf_free(&pem);
	buf_free(&t1);
	buf_free(&t2);
}

/* Over-signing: a From or Subject added after signing breaks it. */
static void
test_oversign(void **state)
{
	struct dkim_key *key = load(ed_pem);
	struct keys k = { { "sel" }, { ed_txt } };
	const char *msg = "From: a@example.org\r\nSubject: s\r\n\r\nb\r\n";
	struct dkim_result r[1];
	struct buf out;
	char err[256];
	size_t siglen;

	(void)state;
	buf_init(&out);
	assert_int_equal(dkim_sign(key, "example.org", "sel", NULL,
	    (time_t)-1, NULL, msg, strlen(msg), &out, err, sizeof(err)), 0);
	assert_null(strstr(out.data, "t="));
	assert_non_null(strstr(out.data, "h=from:from:reply-to:subject:subject:"));
	siglen = out.len;
	buf_adds(&out, msg);
	assert_int_equal(dkim_verify(out.data, out.len, lookup, &k, 0, r, 1),
	    1);
	assert_int_equal(r[0].status, DKIM_PASS);
	/* add a second Subject after the signature (bottom-up: last one) */
	out.len = siglen;
	buf_adds(&out, "From: a@example.org\r\nSubject: s\r\n"
	    "Subject: evil\r\n\r\nb\r\n");
	assert_int_equal(dkim_verify(out.data, out.len, lookup, &k, 0, r, 1),
	    1);
	assert_int_equal(r[0].status, DKIM_FAIL);
	/* no From: refused */
	buf_reset(&out);
	assert_int_equal(dkim_sign(key, "example.org", "sel", NULL, 0, NULL,
	    "To: x\r\n\r\n", 9, &out, err, sizeof(err)), -1);
	dkim_key_free(key);
	buf_free(&out);
}

/* Malformed signatures are permerrors, never passes. */
static void
test_malformed(void **state)
{
	static const char *const sigs[] = {
		"v=1; a=ed25519-sha256; a=ed25519-sha256; d=x.org; s=s; "
		    "h=from; bh=AAAA; b=AAAA",		/* duplicate tag */
		"v=2; a=ed25519-sha256; d=x.org; s=s; h=from; bh=AAAA; b=AAAA",
		"v=1; a=rsa-sha1; d=x.org; s=s; h=from; bh=AAAA; b=AAAA",
		"v=1; a=ed25519-sha256; d=x.org; s=s; h=to; bh=AAAA; b=AAAA",
		"v=1; a=ed25519-sha256; d=x.org; s=s; h=from; bh=A!AA; b=AAAA",
		"v=1; a=ed25519-sha256; d=x.org; s=s; h=from; bh=AAAA; b=AAAA",
		"v=1; a=ed25519-sha256; d=x.org; i=a@y.org; s=s; h=from; "
		    "bh=AAAA; b=AAAA",
		"v=1;; a=ed25519-sha256",
		"v=1; 1a=x",
		"v=1; a=ed25519-sha256; d=x.org; s=s; h=from; b=AAAA; c=odd; "
		    "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
		"",
	};
	struct keys k = { { "s" }, { ed_txt } };
	struct dkim_result r[1];
	struct buf m;

	(void)state;
	buf_init(&m);
	for (size_t i = 0; i < nitems(sigs); i++) {
		buf_reset(&m);
		buf_printf(&m, "DKIM-Signature: %s\r\nFrom: a@x.org\r\n\r\n",
		    sigs[i]);
		assert_int_equal(dkim_verify(m.data, m.len, lookup, &k, 0, r,
		    1), 1);
		if (r[0].status != DKIM_PERMERROR)
			fail_msg("sig %zu: %s", i, dkim_status_str(r[0].status));
	}
	/* a header line that is not a field */
	assert_int_equal(dkim_verify("no colon\r\n\r\n", 12, lookup, &k, 0,
	    r, 1), -1);
	assert_int_equal(dkim_verify(" x: y\r\n\r\n", 9, lookup, &k, 0,
	    r, 1), -1);
	buf_free(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc8463_sign),
		cmocka_unit_test(test_rfc8463_verify),
		cmocka_unit_test(test_rfc6376_verify),
		cmocka_unit_test(test_sign_threads),
		cmocka_unit_test(test_body_canon),
		cmocka_unit_test(test_header_canon),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_oversign),
		cmocka_unit_test(test_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * dkim_bench.c - DKIM signatures per second of ombud's dkim_sign(), one
 * thread, for bench/dkim.sh.
 *
 * What it does: makes a fresh key (rsa-2048 or ed25519), builds a typical
 * message of about 4 KiB (nine header fields, a plain-text body of
 * 72-character lines, CRLF), then calls dkim_sign() (relaxed/relaxed,
 * the default header set with over-signing) as often as it can for the
 * given time and prints "mode signatures seconds signatures/s".  With -r
 * it times the bare private-key operation instead, on a copy of the same
 * key, the way `openssl speed` does (one EVP context, a 32-byte input),
 * so that the overhead of dkim_sign() can be told apart from the
 * signature itself.  The first signature is checked with dkim_verify().
 *
 * Must never: write anywhere but stdout/stderr, or run a second thread.
 */
#include "auth/dkim.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#define BENCH_DOMAIN	"example.com"
#define BENCH_SELECTOR	"bench"
#define BENCH_BATCH	64	/* signatures between two clock reads */

struct bench_key {
	struct dkim_key	*key;
	struct buf	 txt;	/* its key record, for the check */
};

static double
bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A message of size bytes: header fields, then text lines. */
static void
bench_message(struct buf *m, size_t size)
{
	static const char words[] = "lorem ipsum dolor sit amet consectetur "
	    "adipiscing elit sed do eiusmod tempor incididunt ut labore et "
	    "dolore magna aliqua ";
	size_t w = 0, line;

	buf_adds(m,
	    "Received: from client.example.org (client.example.org "
	    "[192.0.2.10])\r\n\tby mx.example.com with ESMTPS id 4Xyz12\r\n"
	    "\tfor <bob@example.net>; Mon, 23 Nov 2026 10:00:00 +0000\r\n"
	    "From: Alice Example <alice@example.com>\r\n"
	    "To: Bob Example <bob@example.net>\r\n"
	    "Cc: carol@example.net\r\n"
	    "Subject: The quarterly report, with the figures you asked "
	    "for\r\n"
	    "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
	    "Message-ID: <20261123100000.4Xyz12@example.com>\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "\r\n");
	while (m->len + 2 < size) {
		for (line = 0; line < 72 && m->len + 2 < size; line++) {
			buf_addc(m, words[w]);
			w = (w + 1) % (sizeof(words) - 1);
		}
		buf_adds(m, "\r\n");
	}
}

static int
bench_lookup(void *arg, const char *selector, const char *domain,
    struct buf *txt)
{
	const struct bench_key *bk = arg;

	buf_add(txt, bk->txt.data, bk->txt.len);
	return DKIM_LOOKUP_FOUND;
}

static int
bench_check(struct bench_key *bk, const struct buf *msg)
{
	struct dkim_result res;
	struct buf signed_msg;
	char err[256];
	int rc = -1;

	buf_init(&signed_msg);
	if (dkim_sign(bk->key, BENCH_DOMAIN, BENCH_SELECTOR, NULL, time(NULL),
	    NULL, msg->data, msg->len, &signed_msg, err, sizeof(err)) == -1) {
		fprintf(stderr, "dkim_bench: dkim_sign: %s\n", err);
		goto fail;
	}
	buf_add(&signed_msg, msg->data, msg->len);
	if (dkim_verify(signed_msg.data, signed_msg.len, bench_lookup, bk,
	    time(NULL), &res, 1) != 1 || res.status != DKIM_PASS) {
		fprintf(stderr, "dkim_bench: own signature does not verify\n");
		goto fail;
	}
	rc = 0;
fail:
	buf_free(&signed_msg);
	return rc;
}

/* dkim_sign() for secs seconds; the number of signatures made. */
static unsigned long
bench_sign(const struct bench_key *bk, const struct buf *msg, double secs,
    double *elapsed)
{
	struct buf out;
	char err[256];
	double start = bench_now(), now;
	unsigned long n = 0;
	int i;

	buf_init(&out);
	do {
		for (i = 0; i < BENCH_BATCH; i++) {
			buf_reset(&out);
			if (dkim_sign(bk->key, BENCH_DOMAIN, BENCH_SELECTOR,
			    NULL, (time_t)1795000000, NULL, msg->data,
			    msg->len, &out, err, sizeof(err)) == -1) {
				fprintf(stderr, "dkim_bench: %s\n", err);
				exit(1);
			}
		}
		n += BENCH_BATCH;
		now = bench_now();
	} while (now - start < secs);
	*elapsed = now - start;
	buf_free(&out);
	return n;
}

/* The bare private-key operation on a 32-byte digest, one context. */
static unsigned long
bench_raw(const struct bench_key *bk, double secs, double *elapsed)
{
	struct buf pem;
	BIO *bio = NULL;
	EVP_PKEY *pkey = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_MD_CTX *md = NULL;
	unsigned char dig[DKIM_HASH_LEN] = { 1, 2, 3 }, sig[1024];
	size_t siglen;
	double start, now;
	unsigned long n = 0;
	bool ed = dkim_key_type(bk->key) == DKIM_KEY_ED25519;
	int i, ok = 1;

	buf_init(&pem);
	if (dkim_key_pem(bk->key, &pem) == -1 ||
	    (bio = BIO_new_mem_buf(pem.data, (int)pem.len)) == NULL ||
	    (pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) == NULL)
		goto fail;
	if (ed) {
		if ((md = EVP_MD_CTX_new()) == NULL || EVP_DigestSignInit(md,
		    NULL, NULL, NULL, pkey) != 1)
			goto fail;
	} else if ((pctx = EVP_PKEY_CTX_new(pkey, NULL)) == NULL ||
	    EVP_PKEY_sign_init(pctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()) != 1)
		goto fail;
	start = bench_now();
	do {
		for (i = 0; i < BENCH_BATCH; i++) {
			siglen = sizeof(sig);
			ok &= ed ? EVP_DigestSign(md, sig, &siglen, dig,
			    sizeof(dig)) : EVP_PKEY_sign(pctx, sig, &siglen,
			    dig, sizeof(dig));
		}
		n += BENCH_BATCH;
		now = bench_now();
	} while (now - start < secs);
	*elapsed = now - start;
	if (ok != 1)
		goto fail;
	EVP_MD_CTX_free(md);
	EVP_PKEY_CTX_free(pctx);
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	buf_free(&pem);
	return n;
fail:
	fprintf(stderr, "dkim_bench: raw signing setup failed\n");
	exit(1);
}

static void
bench_usage(void)
{
	fprintf(stderr, "usage: dkim_bench [-r] [-s seconds] [-m bytes] "
	    "rsa|ed25519\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct bench_key bk;
	struct buf msg;
	char err[256];
	double secs = 5, elapsed;
	unsigned long n;
	size_t size = 4096;
	bool raw = false, ed;
	int ch;

	while ((ch = getopt(argc, argv, "rs:m:")) != -1) {
		switch (ch) {
		case 'r':
			raw = true;
			break;
		case 's':
			secs = atof(optarg);
			break;
		case 'm':
			size = (size_t)strtoul(optarg, NULL, 10);
			break;
		default:
			bench_usage();
		}
	}
	if (optind + 1 != argc || secs <= 0 || size < 1024 ||
	    size > 1 << 24)
		bench_usage();
	if (strcmp(argv[optind], "rsa") == 0)
		ed = false;
	else if (strcmp(argv[optind], "ed25519") == 0)
		ed = true;
	else
		bench_usage();

	buf_init(&bk.txt);
	buf_init(&msg);
	if ((bk.key = dkim_keygen(ed ? DKIM_KEY_ED25519 : DKIM_KEY_RSA,
	    2048, err, sizeof(err))) == NULL ||
	    dkim_key_txt(bk.key, &bk.txt) == -1) {
		fprintf(stderr, "dkim_bench: keygen: %s\n", err);
		return 1;
	}
	bench_message(&msg, size);
	if (bench_check(&bk, &msg) == -1)
		return 1;
	n = raw ? bench_raw(&bk, secs, &elapsed) :
	    bench_sign(&bk, &msg, secs, &elapsed);
	printf("%s%s %lu %.3f %.1f\n", ed ? "ed25519" : "rsa-2048",
	    raw ? "-raw" : "", n, elapsed, (double)n / elapsed);
	dkim_key_free(bk.key);
	buf_free(&bk.txt);
	buf_free(&msg);
	return 0;
}

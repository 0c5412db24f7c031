/*
 * test_tls.c - server contexts: protocol floor and options, certificate
 * chains, clear errors for missing files, garbage and mismatched keys,
 * and real handshakes over a BIO pair (tls_describe, the TLS 1.2 cipher
 * policy, the 1.3 floor).  Keys and certificates are made here with the
 * EVP API in a mkdtemp directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls/tls.h"

static char dir[] = "/tmp/ombud-test-tls-XXXXXX";
static char leaf_pem[64], leaf_key[64], other_key[64], chain_pem[64],
    garbage[64], missing[64], ed_key[64], enc_key[64];

static EVP_PKEY *
make_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	assert_non_null(k);
	return k;
}

/* A certificate for key, signed by issuer (self-signed if NULL). */
static X509 *
make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *ikey,
    long serial)
{
	X509 *x = X509_new();
	X509_NAME *n;

	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
	assert_int_equal(X509_set_pubkey(x, key), 1);
	assert_true(X509_sign(x, ikey ? ikey : key, EVP_sha256()) > 0);
	return x;
}

static void
write_pem(const char *path, X509 *x1, X509 *x2, EVP_PKEY *k,
    const char *passphrase)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	if (x1)
		assert_int_equal(PEM_write_X509(f, x1), 1);
	if (x2)
		assert_int_equal(PEM_write_X509(f, x2), 1);
	if (k)
		assert_int_equal(PEM_write_PrivateKey(f, k,
		    passphrase ? EVP_aes_256_cbc() : NULL,
		    (unsigned char *)passphrase,
		    passphrase ? (int)strlen(passphrase) : 0, NULL, NULL), 1);
	assert_int_equal(fclose(f), 0);
}

static int
setup(void **state)
{
	EVP_PKEY *ca_k, *leaf_k, *other_k, *ed_k;
	X509 *ca, *leaf;
	FILE *f;

	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(leaf_pem, sizeof(leaf_pem), "%s/leaf.pem", dir);
	snprintf(leaf_key, sizeof(leaf_key), "%s/leaf.key", dir);
	snprintf(other_key, sizeof(other_key), "%s/other.key", dir);
	snprintf(chain_pem, sizeof(chain_pem), "%s/chain.pem", dir);
	snprintf(garbage, sizeof(garbage), "%s/garbage.pem", dir);
	snprintf(missing, sizeof(missing), "%s/missing.pem", dir);
	snprintf(ed_key, sizeof(ed_key), "%s/ed25519.key", dir);
	snprintf(enc_key, sizeof(enc_key), "%s/encrypted.key", dir);

	ca_k = make_key();
	leaf_k = make_key();
	other_k = make_key();
	ed_k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_non_null(ed_k);
	ca = make_cert(ca_k, "Test CA", NULL, NULL, 1);
	leaf = make_cert(leaf_k, "mail.example.test", ca, ca_k, 2);
	write_pem(leaf_pem, leaf, NULL, NULL, NULL);
	write_pem(chain_pem, leaf, ca, NULL, NULL);
	write_pem(leaf_key, NULL, NULL, leaf_k, NULL);
	write_pem(other_key, NULL, NULL, other_k, NULL);
	write_pem(ed_key, NULL, NULL, ed_k, NULL);
	write_pem(enc_key, NULL, NULL, leaf_k, "secret");
	if ((f = fopen(garbage, "w")) == NULL)
		return -1;
	fputs("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
	    "-----END CERTIFICATE-----\n", f);
	fclose(f);
	X509_free(ca);
	X509_free(leaf);
	EVP_PKEY_free(ca_k);
	EVP_PKEY_free(leaf_k);
	EVP_PKEY_free(other_k);
	EVP_PKEY_free(ed_k);
	return 0;
}

static int
teardown(void **state)
{
	const char *files[] = { leaf_pem, leaf_key, other_key, chain_pem,
	    garbage, ed_key, enc_key };

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		unlink(files[i]);
	rmdir(dir);
	return 0;
}

static void
test_ctx_defaults(void **state)
{
	char err[256] = "";
	SSL_CTX *ctx = tls_server_ctx_new(leaf_pem, leaf_key, "1.2", err,
	    sizeof(err));
	uint64_t want = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE;

	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	assert_true((SSL_CTX_get_options(ctx) & want) == want);
	assert_false(SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET);
	assert_true(SSL_CTX_get_session_cache_mode(ctx) &
	    SSL_SESS_CACHE_SERVER);
	SSL_CTX_free(ctx);

	/* NULL means the default floor, 1.2. */
	ctx = tls_server_ctx_new(leaf_pem, leaf_key, NULL, err, sizeof(err));
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	SSL_CTX_free(ctx);

	ctx = tls_server_ctx_new(leaf_pem, leaf_key, "1.3", err, sizeof(err));
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION);
	SSL_CTX_free(ctx);
}

static void
test_chain(void **state)
{
	char err[256] = "";
	SSL_CTX *ctx = tls_server_ctx_new(chain_pem, leaf_key, "1.2", err,
	    sizeof(err));
	STACK_OF(X509) *chain = NULL;

	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_get0_chain_certs(ctx, &chain), 1);
	assert_non_null(chain);
	assert_int_equal(sk_X509_num(chain), 1);
	SSL_CTX_free(ctx);
}

static void
expect_error(const char *cert, const char *key, const char *minv,
    const char *needle1, const char *needle2)
{
	char err[512] = "";
	SSL_CTX *ctx = tls_server_ctx_new(cert, key, minv, err, sizeof(err));

	assert_null(ctx);
	if (strstr(err, needle1) == NULL ||
	    (needle2 && strstr(err, needle2) == NULL))
		fail_msg("err '%s' lacks '%s' / '%s'", err, needle1,
		    needle2 ? needle2 : "");
	/* Nothing left behind for the next caller to misreport. */
	assert_int_equal(ERR_peek_error(), 0);
}

static void
test_errors(void **state)
{
	expect_error(leaf_pem, other_key, "1.2", "does not match the "
	    "certificate", other_key);
	/* Another key type: not OpenSSL's "no certificate assigned". */
	expect_error(leaf_pem, ed_key, "1.2", "does not match the "
	    "certificate", ed_key);
	/* Never a passphrase prompt. */
	expect_error(leaf_pem, enc_key, "1.2", "encrypted private keys are "
	    "not supported", enc_key);
	expect_error(missing, leaf_key, "1.2", "No such file or directory",
	    missing);
	expect_error(leaf_pem, missing, "1.2", "No such file or directory",
	    missing);
	expect_error(garbage, leaf_key, "1.2", "certificate", garbage);
	expect_error(dir, leaf_key, "1.2", "no PEM data found", dir);
	/* A certificate where the key should be. */
	expect_error(leaf_pem, leaf_pem, "1.2", "no PEM private key found",
	    leaf_pem);
	expect_error(leaf_pem, leaf_key, "1.1", "'1.1' is not 1.2 or 1.3",
	    NULL);
	expect_error(leaf_pem, leaf_key, "", "is not 1.2 or 1.3", NULL);
	expect_error(NULL, leaf_key, "1.2", "required", NULL);
	expect_error(leaf_pem, "", "1.2", "required", NULL);
}

/* One handshake step of one side: 0 (done or waiting), -1 failed. */
static int
handshake_step(SSL *ssl, int *done)
{
	int r;

	if (*done)
		return 0;
	if ((r = SSL_do_handshake(ssl)) == 1)
		*done = 1;
	else if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ)
		return -1;
	return 0;
}

/* Handshake over a BIO pair; 1 when it completes, 0 when it fails. */
static int
handshake(SSL_CTX *sctx, SSL_CTX *cctx, char *desc, size_t desclen)
{
	SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
	BIO *bs, *bc;
	int sdone = 0, cdone = 0, ok = 0;

	assert_non_null(s);
	assert_non_null(c);
	assert_int_equal(BIO_new_bio_pair(&bs, 0, &bc, 0), 1);
	SSL_set_bio(s, bs, bs);
	SSL_set_bio(c, bc, bc);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	tls_describe(s, desc, desclen);
	assert_string_equal(desc, "none");
	for (int i = 0; i < 50 && !(sdone && cdone); i++)
		if (handshake_step(c, &cdone) != 0 ||
		    handshake_step(s, &sdone) != 0)
			goto out;
	ok = sdone && cdone;
	tls_describe(s, desc, desclen);
out:
	ERR_clear_error();
	SSL_free(s);
	SSL_free(c);
	return ok;
}

static SSL_CTX *
client_ctx(int maxv, const char *ciphers)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());

	assert_non_null(c);
	SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
	if (maxv)
		assert_int_equal(SSL_CTX_set_max_proto_version(c, maxv), 1);
	if (ciphers)
		assert_int_equal(SSL_CTX_set_cipher_list(c, ciphers), 1);
	return c;
}

static void
test_handshakes(void **state)
{
	char err[256], desc[96];
	SSL_CTX *s12 = tls_server_ctx_new(chain_pem, leaf_key, "1.2", err,
	    sizeof(err));
	SSL_CTX *s13 = tls_server_ctx_new(chain_pem, leaf_key, "1.3", err,
	    sizeof(err));
	SSL_CTX *c;

	assert_non_null(s12);
	assert_non_null(s13);

	c = client_ctx(0, NULL);
	assert_int_equal(handshake(s12, c, desc, sizeof(desc)), 1);
	assert_string_equal(desc, "TLSv1.3 TLS_AES_256_GCM_SHA384");
	assert_int_equal(handshake(s13, c, desc, sizeof(desc)), 1);
	SSL_CTX_free(c);

	/* TLS 1.2: the server's preference, ECDHE and AEAD. */
	c = client_ctx(TLS1_2_VERSION, NULL);
	assert_int_equal(handshake(s12, c, desc, sizeof(desc)), 1);
	assert_string_equal(desc, "TLSv1.2 ECDHE-ECDSA-AES256-GCM-SHA384");
	/* Below the 1.3 floor. */
	assert_int_equal(handshake(s13, c, desc, sizeof(desc)), 0);
	SSL_CTX_free(c);

	/* No CBC or static-key suites in TLS 1.2. */
	c = client_ctx(TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA256");
	assert_int_equal(handshake(s12, c, desc, sizeof(desc)), 0);
	SSL_CTX_free(c);

	/* Truncated descriptions stay NUL-terminated. */
	c = client_ctx(0, NULL);
	assert_int_equal(handshake(s12, c, desc, 8), 1);
	assert_string_equal(desc, "TLSv1.3");
	SSL_CTX_free(c);

	tls_describe(NULL, desc, sizeof(desc));
	assert_string_equal(desc, "none");
	SSL_CTX_free(s12);
	SSL_CTX_free(s13);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctx_defaults),
		cmocka_unit_test(test_chain),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_handshakes),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

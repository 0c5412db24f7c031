/*
 * tls.c - server SSL_CTX for STARTTLS and implicit TLS listeners: PEM
 * certificate chain and private key, TLS 1.2 (or 1.3) minimum, forward
 * secret AEAD ciphers only for TLS 1.2, no compression, no renegotiation,
 * server cipher preference, server session cache and tickets on.  And the
 * client SSL_CTX of the delivery client: TLS 1.2 minimum, verification on
 * by default, a CA file or the system's CA paths.
 *
 * Must never: accept a key that does not match its certificate, fall back
 * to a protocol below the configured minimum, prompt for a passphrase (an
 * encrypted key is an error), or put key material in an error message
 * (only file names and OpenSSL's reason text).
 */
#include "tls/tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* TLS 1.2 suites: ECDHE key exchange, AEAD, for RSA or ECDSA keys. */
#define TLS_CIPHERS_12	"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"

static const unsigned char tls_sid_ctx[] = "ombud";

/*
 * "what file: reason" from OpenSSL's error queue (its oldest entry, the
 * root cause), which it then empties.  A few reasons are put in words an
 * operator recognises.
 */
static void
tls_error(char *err, size_t errlen, const char *what, const char *file)
{
	unsigned long e = ERR_get_error();
	const char *reason = NULL;
	char buf[256];

	if (e == 0)
		reason = "unknown error";
	else if (ERR_SYSTEM_ERROR(e))
		reason = strerror(ERR_GET_REASON(e));
	else if (ERR_GET_LIB(e) == ERR_LIB_PEM &&
	    ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
		reason = "no PEM data found";
	else if ((reason = ERR_reason_error_string(e)) == NULL) {
		ERR_error_string_n(e, buf, sizeof(buf));
		reason = buf;
	}
	if (file)
		snprintf(err, errlen, "%s %s: %s", what, file, reason);
	else
		snprintf(err, errlen, "%s: %s", what, reason);
	ERR_clear_error();
}

/* A daemon has nobody to ask for a passphrase: never prompt.  u, when
 * set, counts the requests, i.e. tells an encrypted key. */
static int
tls_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	if (u != NULL)
		(*(int *)u)++;
	return -1;
}

/* The PEM private key in path, or NULL with err. */
static EVP_PKEY *
tls_load_key(const char *path, char *err, size_t errlen)
{
	EVP_PKEY *key = NULL;
	BIO *bio;
	int asked = 0;

	if ((bio = BIO_new_file(path, "r")) == NULL) {
		tls_error(err, errlen, "cannot open private key", path);
		goto fail;
	}
	if ((key = PEM_read_bio_PrivateKey(bio, NULL, tls_no_passphrase,
	    &asked)) == NULL) {
		/* OpenSSL's reasons here ("unsupported", "bad password
		 * read") say little: say what the file lacks instead. */
		snprintf(err, errlen, "cannot load private key %s: %s", path,
		    asked ? "encrypted private keys are not supported" :
		    "no PEM private key found");
		ERR_clear_error();
		goto fail;
	}
fail:
	BIO_free(bio);
	return key;
}

SSL_CTX *
tls_server_ctx_new(const char *cert_file, const char *key_file,
    const char *min_version, char *err, size_t errlen)
{
	SSL_CTX *ctx = NULL;
	EVP_PKEY *key = NULL;
	X509 *cert;
	int minv;

	ERR_clear_error();
	if (cert_file == NULL || *cert_file == '\0' || key_file == NULL ||
	    *key_file == '\0') {
		snprintf(err, errlen, "a certificate and a key are required");
		goto fail;
	}
	if (min_version == NULL || strcmp(min_version, "1.2") == 0)
		minv = TLS1_2_VERSION;
	else if (strcmp(min_version, "1.3") == 0)
		minv = TLS1_3_VERSION;
	else {
		snprintf(err, errlen, "TLS minimum version '%.16s' is not "
		    "1.2 or 1.3", min_version);
		goto fail;
	}
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		tls_error(err, errlen, "SSL_CTX_new", NULL);
		goto fail;
	}
	SSL_CTX_set_default_passwd_cb(ctx, tls_no_passphrase);
	if (SSL_CTX_set_min_proto_version(ctx, minv) != 1) {
		tls_error(err, errlen, "cannot set the TLS minimum version",
		    NULL);
		goto fail;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12) != 1) {
		tls_error(err, errlen, "cannot set the TLS 1.2 ciphers", NULL);
		goto fail;
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	if (SSL_CTX_set_session_id_context(ctx, tls_sid_ctx,
	    sizeof(tls_sid_ctx) - 1) != 1) {
		tls_error(err, errlen, "cannot set the session id context",
		    NULL);
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
	    (cert = SSL_CTX_get0_certificate(ctx)) == NULL) {
		tls_error(err, errlen, "cannot load certificate chain",
		    cert_file);
		goto fail;
	}
	if ((key = tls_load_key(key_file, err, errlen)) == NULL)
		goto fail;
	/* Also catches a key of another type, which OpenSSL would file in
	 * another slot and report as "no certificate assigned". */
	if (X509_check_private_key(cert, key) != 1) {
		snprintf(err, errlen, "private key %s does not match the "
		    "certificate %s", key_file, cert_file);
		ERR_clear_error();
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		tls_error(err, errlen, "cannot use private key", key_file);
		goto fail;
	}
	EVP_PKEY_free(key);
	return ctx;
fail:
	EVP_PKEY_free(key);
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *
tls_client_ctx_new(const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX *ctx = NULL;

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		tls_error(err, errlen, "SSL_CTX_new", NULL);
		goto fail;
	}
	SSL_CTX_set_default_passwd_cb(ctx, tls_no_passphrase);
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		tls_error(err, errlen, "cannot set the TLS minimum version",
		    NULL);
		goto fail;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION);
	/* The delivery client keeps its own per-destination cache. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (ca_file != NULL && *ca_file != '\0') {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			tls_error(err, errlen, "cannot load CA file", ca_file);
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		tls_error(err, errlen, "cannot load the default CA paths",
		    NULL);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

void
tls_describe(SSL *ssl, char *out, size_t outlen)
{
	const SSL_CIPHER *c;

	if (out == NULL || outlen == 0)
		return;
	if (ssl == NULL || (c = SSL_get_current_cipher(ssl)) == NULL) {
		snprintf(out, outlen, "none");
		return;
	}
	snprintf(out, outlen, "%s %s", SSL_get_version(ssl),
	    SSL_CIPHER_get_name(c));
}

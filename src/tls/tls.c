/*
 * tls.c - server SSL_CTX for STARTTLS and implicit TLS listeners: PEM
 * certificate chain and private key, TLS 1.2 (or 1.3) minimum, forward
 * secret AEAD ciphers only for TLS 1.2, no compression, no renegotiation,
 * server cipher preference, server session cache and tickets on.
 *
 * Must never: accept a key that does not match its certificate, fall back
 * to a protocol below the configured minimum, or put key material in an
 * error message (only file names and OpenSSL's reason text).
 */
#include "tls/tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

/* TLS 1.2 suites: ECDHE key exchange, AEAD, for RSA or ECDSA keys. */
#define TLS_CIPHERS_12	"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"

static const unsigned char tls_sid_ctx[] = "ombud";

/*
 * "what file: reason" from OpenSSL's error queue (its oldest entry, the
 * root cause), which it then empties.  A mismatched key is named as such
 * rather than with OpenSSL's "key values mismatch".
 */
static void
tls_error(char *err, size_t errlen, const char *what, const char *file)
{
	unsigned long e = ERR_get_error();
	const char *reason = NULL;
	char buf[256];

	if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_X509 &&
	    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
		reason = "private key does not match the certificate";
	else if (e != 0 && (reason = ERR_reason_error_string(e)) == NULL) {
		ERR_error_string_n(e, buf, sizeof(buf));
		reason = buf;
	}
	if (reason == NULL)
		reason = "unknown error";
	if (file)
		snprintf(err, errlen, "%s %s: %s", what, file, reason);
	else
		snprintf(err, errlen, "%s: %s", what, reason);
	ERR_clear_error();
}

SSL_CTX *
tls_server_ctx_new(const char *cert_file, const char *key_file,
    const char *min_version, char *err, size_t errlen)
{
	SSL_CTX *ctx = NULL;
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
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		tls_error(err, errlen, "cannot load certificate chain",
		    cert_file);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) !=
	    1) {
		tls_error(err, errlen, "cannot load private key", key_file);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tls_error(err, errlen, "cannot use private key", key_file);
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

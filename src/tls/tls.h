/*
 * tls.h - OpenSSL 3 contexts for the SMTP server (STARTTLS and implicit
 * TLS).  Modern defaults: TLS 1.2 minimum, no compression, no
 * renegotiation, server cipher preference, session tickets on.  And the
 * client context the delivery client (src/mta) uses.
 */
#ifndef OMBUD_TLS_H
#define OMBUD_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

/* min_version: "1.2" or "1.3".  NULL with a reason in err on failure
 * (unreadable file, key does not match certificate...). */
SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file,
    const char *min_version, char *err, size_t errlen);

/*
 * Client context for outbound SMTP (src/mta): TLS 1.2 minimum, no
 * compression, no renegotiation, peer verification on by default (the
 * client relaxes it per connection for opportunistic TLS), CA store from
 * ca_file (PEM) or, when NULL, OpenSSL's default paths.  NULL with a
 * reason in err on failure.
 */
SSL_CTX *tls_client_ctx_new(const char *ca_file, char *err, size_t errlen);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384" for logs and Received headers. */
void tls_describe(SSL *ssl, char *out, size_t outlen);

#endif

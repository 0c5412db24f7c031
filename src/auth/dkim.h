/*
 * dkim.h - DKIM signatures (RFC 6376) with rsa-sha256 and ed25519-sha256
 * (RFC 8463): canonicalization, signing, verifying.
 *
 * What it does: a pure module.  It canonicalizes header fields and bodies
 * (simple and relaxed; the body is hashed as a stream of chunks), signs a
 * message into a complete, folded "DKIM-Signature:" field, and verifies
 * every DKIM-Signature of a message with key records handed over by a
 * callback (the caller decides where they come from: DNS, a table, a
 * test).
 *
 * What it must never do: I/O of its own, trust any length or count in a
 * message or a key record, or report "pass" for anything it has not
 * checked byte for byte.
 */
#ifndef OMBUD_DKIM_H
#define OMBUD_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/util.h"

#define DKIM_MAX_HEADERS	1000	/* header fields per message */
#define DKIM_MAX_FIELD		65536	/* bytes of one header field */
#define DKIM_MAX_TAGS		32	/* tags of a signature or key record */
#define DKIM_MAX_HNAMES		128	/* names in h= */
#define DKIM_MAX_SIGS		16	/* signatures examined per message */
#define DKIM_DOMAIN_MAX		253
#define DKIM_SELECTOR_MAX	63
#define DKIM_RSA_MIN_BITS	1024
#define DKIM_RSA_MAX_BITS	8192
#define DKIM_HASH_LEN		32

enum dkim_keytype {
	DKIM_KEY_RSA,
	DKIM_KEY_ED25519,
};

enum dkim_canon {
	DKIM_CANON_RELAXED,	/* the default */
	DKIM_CANON_SIMPLE,
};

/* How the names given to dkim_sign become h=. */
enum dkim_hmode {
	DKIM_H_OVERSIGN,	/* each name once per instance, plus once */
	DKIM_H_PRESENT,		/* each name once per instance present */
	DKIM_H_VERBATIM,	/* exactly the list given, in order */
};

enum dkim_status {
	DKIM_PASS,
	DKIM_FAIL,
	DKIM_PERMERROR,
	DKIM_TEMPERROR,
	DKIM_NEUTRAL,
};

struct dkim_key;

/* Keys.  Errors are written to err (never holding key material). */
struct dkim_key *dkim_key_load_pem(const char *pem, size_t len, char *err,
    size_t errsz);
struct dkim_key *dkim_keygen(enum dkim_keytype type, unsigned bits,
    char *err, size_t errsz);	/* bits: RSA only, 0 = 2048 */
void dkim_key_free(struct dkim_key *key);
/* Another handle on the same key (the EVP_PKEY is shared, refcounted):
 * a new snapshot keeps a key without parsing it again. */
struct dkim_key *dkim_key_dup(const struct dkim_key *key);
enum dkim_keytype dkim_key_type(const struct dkim_key *key);
/* The private key as PKCS#8 PEM, appended to out.  0 or -1. */
int dkim_key_pem(const struct dkim_key *key, struct buf *out);
/* The key record to publish ("v=DKIM1; k=rsa; p=..."), appended.  0/-1. */
int dkim_key_txt(const struct dkim_key *key, struct buf *out);

struct dkim_sign_opts {
	enum dkim_canon	 hcanon;
	enum dkim_canon	 bcanon;
	enum dkim_hmode	 hmode;
	const char	*identity;	/* i=, or NULL */
	bool		 q_tag;		/* add q=dns/txt */
	bool		 h_spaced;	/* h=a : b rather than h=a:b */
};

/*
 * Sign msg (header, empty line, body; CRLF line ends) and append the
 * whole "DKIM-Signature: ...\r\n" field to out_header.  headers_to_sign is
 * a NULL-terminated list of field names (NULL: a sensible default set),
 * t is the signature time or (time_t)-1 for no t=, opts may be NULL for
 * relaxed/relaxed with over-signing.  0, or -1 with err set.
 */
int dkim_sign(const struct dkim_key *key, const char *domain,
    const char *selector, const char *const *headers_to_sign, time_t t,
    const struct dkim_sign_opts *opts, const char *msg, size_t len,
    struct buf *out_header, char *err, size_t errsz);

/*
 * Key record lookup for verification: the TXT record of
 * selector._domainkey.domain appended to txt (strings concatenated).
 */
#define DKIM_LOOKUP_FOUND	0
#define DKIM_LOOKUP_NOTFOUND	1
#define DKIM_LOOKUP_TEMPFAIL	(-1)
typedef int (*dkim_lookup_fn)(void *arg, const char *selector,
    const char *domain, struct buf *txt);

struct dkim_result {
	enum dkim_status	 status;
	const char		*reason;	/* static text; "" on pass */
	char			 domain[DKIM_DOMAIN_MAX + 1];
	char			 selector[DKIM_SELECTOR_MAX + 1];
};

/*
 * Verify up to nres DKIM-Signature fields of msg (top first).  Returns
 * how many results were written (0: the message is unsigned), or -1 when
 * the message's header cannot be parsed at all.
 */
int dkim_verify(const char *msg, size_t len, dkim_lookup_fn lookup,
    void *arg, time_t now, struct dkim_result *res, size_t nres);

const char *dkim_status_str(enum dkim_status st);

/* Streaming body hash (SHA-256 of the canonical body, at most limit
 * canonical bytes when limit >= 0). */
struct dkim_bodyhash;
struct dkim_bodyhash *dkim_bodyhash_new(enum dkim_canon canon,
    int64_t limit);
void dkim_bodyhash_update(struct dkim_bodyhash *bh, const char *p,
    size_t n);
/* 0, or -1 when l= asked for more bytes than the body has. */
int dkim_bodyhash_final(struct dkim_bodyhash *bh,
    unsigned char out[DKIM_HASH_LEN]);
void dkim_bodyhash_free(struct dkim_bodyhash *bh);

/* Canonicalize one header field (name ':' value, folds included, no
 * final CRLF) and append it with CRLF (crlf true) to out. */
void dkim_canon_header(enum dkim_canon canon, const char *field, size_t len,
    bool crlf, struct buf *out);

#endif

/*
 * dkim.c - DKIM signing and verifying (see dkim.h).
 *
 * The message's header is split into fields (a line starting with WSP
 * continues the field above; at most DKIM_MAX_HEADERS fields of at most
 * DKIM_MAX_FIELD bytes).  The body is canonicalized as a stream: empty
 * lines are only counted and written once something follows them, so
 * trailing empty lines vanish without buffering the body.  Header fields
 * named in h= are taken bottom-up (RFC 6376 5.4.2); a name listed once
 * more than present selects nothing, which is how over-signing works.
 * Both algorithms sign the SHA-256 of the canonical header data: RSA as
 * PKCS#1 v1.5 over that digest, Ed25519 as PureEdDSA over the 32-byte
 * digest (RFC 8463 3).
 *
 * What it must never do: read outside the message, accept a tag list or
 * a key record that is not well formed, or pass a signature whose body
 * hash or signature it has not checked.
 */
#include "auth/dkim.h"

#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#define DKIM_FOLD_COL	78
#define DKIM_SIG_MAX	1024	/* bytes of b= (RSA 8192 bits) */
#define DKIM_KEY_MAX	2048	/* bytes of a decoded p= */
#define DKIM_HLIST_MAX	4096	/* bytes of h= */
#define DKIM_IDENT_MAX	512

/* SHA-256 fetched once: EVP_sha256() makes every EVP_DigestInit look the
 * algorithm up in the provider tables again, under a lock. */
static EVP_MD *dkim_sha256_md;
static pthread_once_t dkim_sha256_once = PTHREAD_ONCE_INIT;

static void
dkim_sha256_fetch(void)
{
	dkim_sha256_md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
}

static const EVP_MD *
dkim_sha256_alg(void)
{
	pthread_once(&dkim_sha256_once, dkim_sha256_fetch);
	return dkim_sha256_md != NULL ? dkim_sha256_md : EVP_sha256();
}

/* tmpl/ptmpl: a signing context set up once for the key, duplicated per
 * signature (setting one up fetches the algorithm from the provider
 * under a lock); only read after creation, so threads may share it. */
struct dkim_key {
	EVP_PKEY		*pkey;
	enum dkim_keytype	 type;
	EVP_MD_CTX		*tmpl;		/* ed25519 */
	EVP_PKEY_CTX		*ptmpl;		/* rsa */
};

struct dkim_hdr {
	const char	*p;		/* field start (name) */
	size_t		 len;		/* without the final line end */
	size_t		 namelen;
};

struct dkim_msg {
	struct dkim_hdr	*hdr;
	size_t		 nhdr;
	const char	*body;
	size_t		 bodylen;
};

#define DKIM_BH_BUF	4096	/* canonical bytes staged per hash update */

struct dkim_bodyhash {
	EVP_MD_CTX	*md;
	enum dkim_canon	 canon;
	int64_t		 limit;		/* -1: none */
	int64_t		 fed;		/* canonical bytes produced */
	size_t		 empty;		/* pending empty lines */
	bool		 cr;		/* a CR waits for its LF */
	bool		 wsp;		/* relaxed: pending white space */
	bool		 inline_;	/* the current line has content */
	size_t		 nbuf;		/* staged in buf, not yet hashed */
	unsigned char	 buf[DKIM_BH_BUF];
};

static void
dkim_seterr(char *err, size_t errsz, const char *msg)
{
	if (err != NULL && errsz > 0)
		snprintf(err, errsz, "%s", msg);
}

static bool
dkim_iswsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool
dkim_isfws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char
dkim_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

const char *
dkim_status_str(enum dkim_status st)
{
	switch (st) {
	case DKIM_PASS:		return "pass";
	case DKIM_FAIL:		return "fail";
	case DKIM_PERMERROR:	return "permerror";
	case DKIM_TEMPERROR:	return "temperror";
	case DKIM_NEUTRAL:	return "neutral";
	}
	return "neutral";
}

/* ---- base64 --------------------------------------------------------- */

static void
dkim_b64_encode(const unsigned char *in, size_t n, struct buf *out)
{
	size_t need = 4 * ((n + 2) / 3);

	buf_reserve(out, need + 1);
	EVP_EncodeBlock((unsigned char *)out->data + out->len, in, (int)n);
	out->len += need;
	out->data[out->len] = '\0';
}

static int
dkim_b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Strict decoding; FWS anywhere is skipped.  Returns the length or -1. */
static ssize_t
dkim_b64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
	uint32_t acc = 0;
	size_t i, q = 0, o = 0, pad = 0;

	for (i = 0; i < n; i++) {
		int v;

		if (dkim_isfws(in[i]))
			continue;
		if (in[i] == '=') {
			if (++pad > 2)
				return -1;
			acc <<= 6;
			q++;
			continue;
		}
		if (pad > 0 || (v = dkim_b64val(in[i])) < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		q++;
		if (q == 4) {
			if (o + 3 > cap)
				return -1;
			out[o++] = (unsigned char)(acc >> 16);
			out[o++] = (unsigned char)(acc >> 8);
			out[o++] = (unsigned char)acc;
			acc = 0;
			q = 0;
		}
	}
	if (pad > 0) {
		if (q != 4 || o + 3 - pad > cap)
			return -1;
		out[o++] = (unsigned char)(acc >> 16);
		if (pad == 1)
			out[o++] = (unsigned char)(acc >> 8);
		return (ssize_t)o;
	}
	if (q != 0)
		return -1;
	return (ssize_t)o;
}

/* ---- message split -------------------------------------------------- */

static bool
dkim_namechar(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != ':';
}

/* Split msg into header fields and body.  0 or -1. */
static int
dkim_msg_parse(const char *msg, size_t len, struct dkim_msg *m)
{
	size_t i = 0;

	memset(m, 0, sizeof(*m));
	/* Only the first nhdr entries are ever read: no zeroing. */
	m->hdr = xmalloc(DKIM_MAX_HEADERS * sizeof(*m->hdr));
	while (i < len) {
		size_t start = i, end, n;

		/* the empty line ending the header */
		if (msg[i] == '\n' || (msg[i] == '\r' && i + 1 < len &&
		    msg[i + 1] == '\n')) {
			i += msg[i] == '\r' ? 2 : 1;
			break;
		}
		if (dkim_iswsp(msg[i]))
			goto fail;	/* continuation without a field */
		for (;;) {
			const char *nl = memchr(msg + i, '\n', len - i);

			if (nl == NULL) {
				end = i = len;
				break;
			}
			end = (size_t)(nl - msg);
			i = end + 1;
			if (i >= len || !dkim_iswsp(msg[i]))
				break;
		}
		if (end > start && msg[end - 1] == '\r' && end < len)
			end--;
		if (end - start > DKIM_MAX_FIELD ||
		    m->nhdr >= DKIM_MAX_HEADERS)
			goto fail;
		for (n = 0; start + n < end &&
		    dkim_namechar((unsigned char)msg[start + n]); n++)
			;
		if (n == 0)
			goto fail;
		{
			size_t k = n;

			while (start + k < end && dkim_iswsp(msg[start + k]))
				k++;
			if (start + k >= end || msg[start + k] != ':')
				goto fail;
		}
		m->hdr[m->nhdr].p = msg + start;
		m->hdr[m->nhdr].len = end - start;
		m->hdr[m->nhdr].namelen = n;
		m->nhdr++;
	}
	m->body = msg + i;
	m->bodylen = len - i;
	return 0;
fail:
	free(m->hdr);
	m->hdr = NULL;
	return -1;
}

static bool
dkim_hdr_is(const struct dkim_hdr *h, const char *name, size_t n)
{
	return h->namelen == n && ascii_strncasecmp(h->p, name, n) == 0;
}

/* ---- canonicalization ----------------------------------------------- */

void
dkim_canon_header(enum dkim_canon canon, const char *field, size_t len,
    bool crlf, struct buf *out)
{
	size_t i, colon;
	bool wsp = false, any = false;
	char *o;

	if (canon == DKIM_CANON_SIMPLE) {
		buf_add(out, field, len);
		goto done;
	}
	/* The relaxed form is never longer than the field plus ':'. */
	buf_reserve(out, len + 1);
	o = out->data + out->len;
	for (colon = 0; colon < len && field[colon] != ':'; colon++)
		;
	i = colon;
	while (i > 0 && dkim_isfws(field[i - 1]))
		i--;
	for (size_t k = 0; k < i; k++)
		*o++ = dkim_lower(field[k]);
	*o++ = ':';
	for (i = colon + 1; i < len; i++) {
		char c = field[i];

		if (c == '\r' || c == '\n')
			continue;	/* unfold */
		if (dkim_iswsp(c)) {
			wsp = true;
			continue;
		}
		if (wsp && any)
			*o++ = ' ';
		wsp = false;
		any = true;
		*o++ = c;
	}
	out->len = (size_t)(o - out->data);
	out->data[out->len] = '\0';
done:
	if (crlf)
		buf_add(out, "\r\n", 2);
}

struct dkim_bodyhash *
dkim_bodyhash_new(enum dkim_canon canon, int64_t limit)
{
	struct dkim_bodyhash *bh = xmalloc(sizeof(*bh));

	/* Not the staging buffer: zeroing it cost as much as hashing it. */
	memset(bh, 0, offsetof(struct dkim_bodyhash, buf));
	bh->md = EVP_MD_CTX_new();
	if (bh->md == NULL || EVP_DigestInit_ex(bh->md, dkim_sha256_alg(),
	    NULL) != 1)
		goto fail;
	bh->canon = canon;
	bh->limit = limit;
	return bh;
fail:
	EVP_MD_CTX_free(bh->md);
	free(bh);
	return NULL;
}

static void
dkim_bh_flush(struct dkim_bodyhash *bh)
{
	if (bh->nbuf > 0)
		EVP_DigestUpdate(bh->md, bh->buf, bh->nbuf);
	bh->nbuf = 0;
}

/* Canonical output: staged in bh->buf, hashed a buffer at a time (one
 * EVP_DigestUpdate per byte cost more than the signature itself). */
static void
dkim_bh_out(struct dkim_bodyhash *bh, const char *p, size_t n)
{
	size_t take = n;

	if (bh->limit >= 0) {
		int64_t room = bh->limit - bh->fed;

		take = room <= 0 ? 0 : (int64_t)n > room ? (size_t)room : n;
	}
	bh->fed += (int64_t)n;
	if (take > sizeof(bh->buf) - bh->nbuf) {
		dkim_bh_flush(bh);
		if (take >= sizeof(bh->buf)) {
			EVP_DigestUpdate(bh->md, p, take);
			return;
		}
	}
	memcpy(bh->buf + bh->nbuf, p, take);
	bh->nbuf += take;
}

/* A run of n > 0 bytes that are neither CR, LF nor (relaxed) WSP. */
static void
dkim_bh_run(struct dkim_bodyhash *bh, const char *p, size_t n)
{
	for (; bh->empty > 0; bh->empty--)
		dkim_bh_out(bh, "\r\n", 2);
	if (bh->wsp) {
		dkim_bh_out(bh, " ", 1);
		bh->wsp = false;
	}
	dkim_bh_out(bh, p, n);
	bh->inline_ = true;
}

static void
dkim_bh_char(struct dkim_bodyhash *bh, char c)
{
	if (bh->canon == DKIM_CANON_RELAXED && dkim_iswsp(c))
		bh->wsp = true;
	else
		dkim_bh_run(bh, &c, 1);
}

static bool
dkim_bh_plain(const struct dkim_bodyhash *bh, char c)
{
	return c != '\r' && c != '\n' &&
	    (bh->canon != DKIM_CANON_RELAXED || !dkim_iswsp(c));
}

static void
dkim_bh_eol(struct dkim_bodyhash *bh)
{
	bh->wsp = false;
	if (bh->inline_)
		dkim_bh_out(bh, "\r\n", 2);
	else
		bh->empty++;
	bh->inline_ = false;
}

void
dkim_bodyhash_update(struct dkim_bodyhash *bh, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (!bh->cr && dkim_bh_plain(bh, c)) {
			size_t j = i + 1;

			/* Relaxed: one SP between two plain bytes stays as it
			 * is, so a line of words is one run. */
			for (;;) {
				while (j < n && dkim_bh_plain(bh, p[j]))
					j++;
				if (bh->canon != DKIM_CANON_RELAXED ||
				    j + 1 >= n || p[j] != ' ' ||
				    !dkim_bh_plain(bh, p[j + 1]))
					break;
				j += 2;
			}
			dkim_bh_run(bh, p + i, j - i);
			i = j - 1;
			continue;
		}
		if (bh->cr) {
			bh->cr = false;
			if (c == '\n') {
				dkim_bh_eol(bh);
				continue;
			}
			dkim_bh_char(bh, '\r');
		}
		if (c == '\r')
			bh->cr = true;
		else if (c == '\n')
			dkim_bh_eol(bh);
		else
			dkim_bh_char(bh, c);
	}
}

int
dkim_bodyhash_final(struct dkim_bodyhash *bh,
    unsigned char out[DKIM_HASH_LEN])
{
	unsigned int n = 0;

	if (bh->cr) {
		bh->cr = false;
		dkim_bh_char(bh, '\r');
	}
	if (bh->inline_)
		dkim_bh_eol(bh);
	if (bh->fed == 0 && bh->canon == DKIM_CANON_SIMPLE)
		dkim_bh_out(bh, "\r\n", 2);
	dkim_bh_flush(bh);
	if (EVP_DigestFinal_ex(bh->md, out, &n) != 1 || n != DKIM_HASH_LEN)
		return -1;
	if (bh->limit >= 0 && bh->fed < bh->limit)
		return -1;
	return 0;
}

void
dkim_bodyhash_free(struct dkim_bodyhash *bh)
{
	if (bh == NULL)
		return;
	EVP_MD_CTX_free(bh->md);
	free(bh);
}

static int
dkim_body_hash(const struct dkim_msg *m, enum dkim_canon canon,
    int64_t limit, unsigned char *out)
{
	struct dkim_bodyhash *bh;
	int rc;

	if ((bh = dkim_bodyhash_new(canon, limit)) == NULL)
		return -1;
	dkim_bodyhash_update(bh, m->body, m->bodylen);
	rc = dkim_bodyhash_final(bh, out);
	dkim_bodyhash_free(bh);
	return rc;
}

/* Canonical selected header fields for the names in names[0..n), taken
 * bottom-up, appended to out. */
static void
dkim_select_headers(const struct dkim_msg *m, char **names, size_t n,
    enum dkim_canon canon, struct buf *out)
{
	bool *used = xcalloc(m->nhdr + 1, sizeof(*used));

	for (size_t k = 0; k < n; k++) {
		size_t nl = strlen(names[k]);

		for (size_t j = m->nhdr; j > 0; j--) {
			const struct dkim_hdr *h = &m->hdr[j - 1];

			if (used[j - 1] || !dkim_hdr_is(h, names[k], nl))
				continue;
			used[j - 1] = true;
			dkim_canon_header(canon, h->p, h->len, true, out);
			break;
		}
	}
	free(used);
}

/* ---- keys ----------------------------------------------------------- */

/* The signing templates of key; without them (no memory) each signature
 * sets up its own context. */
static void
dkim_key_templates(struct dkim_key *key)
{
	if (key->type == DKIM_KEY_ED25519) {
		if ((key->tmpl = EVP_MD_CTX_new()) != NULL &&
		    EVP_DigestSignInit(key->tmpl, NULL, NULL, NULL,
		    key->pkey) != 1) {
			EVP_MD_CTX_free(key->tmpl);
			key->tmpl = NULL;
		}
		return;
	}
	if ((key->ptmpl = EVP_PKEY_CTX_new(key->pkey, NULL)) != NULL &&
	    (EVP_PKEY_sign_init(key->ptmpl) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(key->ptmpl, RSA_PKCS1_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(key->ptmpl, dkim_sha256_alg()) !=
	    1)) {
		EVP_PKEY_CTX_free(key->ptmpl);
		key->ptmpl = NULL;
	}
}

static struct dkim_key *
dkim_key_wrap(EVP_PKEY *pkey, char *err, size_t errsz)
{
	struct dkim_key *key;
	int id = EVP_PKEY_get_base_id(pkey);

	if (id == EVP_PKEY_RSA) {
		int bits = EVP_PKEY_get_bits(pkey);

		if (bits < DKIM_RSA_MIN_BITS || bits > DKIM_RSA_MAX_BITS) {
			dkim_seterr(err, errsz, "RSA key size out of range");
			goto fail;
		}
	} else if (id != EVP_PKEY_ED25519) {
		dkim_seterr(err, errsz, "key is neither RSA nor Ed25519");
		goto fail;
	}
	key = xcalloc(1, sizeof(*key));
	key->pkey = pkey;
	key->type = id == EVP_PKEY_RSA ? DKIM_KEY_RSA : DKIM_KEY_ED25519;
	dkim_key_templates(key);
	return key;
fail:
	EVP_PKEY_free(pkey);
	return NULL;
}

struct dkim_key *
dkim_key_load_pem(const char *pem, size_t len, char *err, size_t errsz)
{
	EVP_PKEY *pkey = NULL;
	BIO *bio;

	if (len > 65536 || (bio = BIO_new_mem_buf(pem, (int)len)) == NULL)
		goto fail;
	pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (pkey == NULL)
		goto fail;
	return dkim_key_wrap(pkey, err, errsz);
fail:
	dkim_seterr(err, errsz, "not a PEM RSA or Ed25519 private key");
	return NULL;
}

struct dkim_key *
dkim_keygen(enum dkim_keytype type, unsigned bits, char *err, size_t errsz)
{
	EVP_PKEY *pkey;

	if (type == DKIM_KEY_RSA) {
		if (bits == 0)
			bits = 2048;
		if (bits < DKIM_RSA_MIN_BITS || bits > DKIM_RSA_MAX_BITS)
			goto fail;
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
	} else
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (pkey == NULL)
		goto fail;
	return dkim_key_wrap(pkey, err, errsz);
fail:
	dkim_seterr(err, errsz, "key generation failed");
	return NULL;
}

struct dkim_key *
dkim_key_dup(const struct dkim_key *key)
{
	struct dkim_key *k = xcalloc(1, sizeof(*k));

	if (EVP_PKEY_up_ref(key->pkey) != 1)
		abort();	/* a reference count cannot fail: a bug */
	k->pkey = key->pkey;
	k->type = key->type;
	dkim_key_templates(k);
	return k;
}

void
dkim_key_free(struct dkim_key *key)
{
	if (key == NULL)
		return;
	EVP_MD_CTX_free(key->tmpl);
	EVP_PKEY_CTX_free(key->ptmpl);
	EVP_PKEY_free(key->pkey);
	free(key);
}

enum dkim_keytype
dkim_key_type(const struct dkim_key *key)
{
	return key->type;
}

int
dkim_key_pem(const struct dkim_key *key, struct buf *out)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *p;
	long n;

	if (bio == NULL)
		goto fail;
	if (PEM_write_bio_PrivateKey(bio, key->pkey, NULL, NULL, 0, NULL,
	    NULL) != 1)
		goto fail;
	n = BIO_get_mem_data(bio, &p);
	if (n <= 0)
		goto fail;
	buf_add(out, p, (size_t)n);
	BIO_free(bio);
	return 0;
fail:
	BIO_free(bio);
	return -1;
}

int
dkim_key_txt(const struct dkim_key *key, struct buf *out)
{
	unsigned char raw[32], *der = NULL;
	size_t rawlen = sizeof(raw);
	int n;

	if (key->type == DKIM_KEY_ED25519) {
		if (EVP_PKEY_get_raw_public_key(key->pkey, raw, &rawlen) != 1 ||
		    rawlen != sizeof(raw))
			goto fail;
		buf_adds(out, "v=DKIM1; k=ed25519; p=");
		dkim_b64_encode(raw, rawlen, out);
		return 0;
	}
	if ((n = i2d_PUBKEY(key->pkey, &der)) <= 0)
		goto fail;
	buf_adds(out, "v=DKIM1; k=rsa; p=");
	dkim_b64_encode(der, (size_t)n, out);
	OPENSSL_free(der);
	return 0;
fail:
	return -1;
}

/* ---- signatures over the header digest ------------------------------ */

static int
dkim_pk_sign(const struct dkim_key *key, const unsigned char *dig,
    unsigned char *sig, size_t *siglen)
{
	EVP_PKEY *pkey = key->pkey;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_MD_CTX *md = NULL;
	int rc = -1;

	if (key->type == DKIM_KEY_ED25519) {
		if ((md = EVP_MD_CTX_new()) != NULL && (key->tmpl == NULL ||
		    EVP_MD_CTX_copy_ex(md, key->tmpl) != 1) &&
		    EVP_DigestSignInit(md, NULL, NULL, NULL, pkey) != 1)
			goto fail;
		if (md == NULL ||
		    EVP_DigestSign(md, sig, siglen, dig, DKIM_HASH_LEN) != 1)
			goto fail;
	} else {
		if (key->ptmpl != NULL)
			pctx = EVP_PKEY_CTX_dup(key->ptmpl);
		else if ((pctx = EVP_PKEY_CTX_new(pkey, NULL)) != NULL &&
		    (EVP_PKEY_sign_init(pctx) != 1 ||
		    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1 ||
		    EVP_PKEY_CTX_set_signature_md(pctx, dkim_sha256_alg()) != 1))
			goto fail;
		if (pctx == NULL ||
		    EVP_PKEY_sign(pctx, sig, siglen, dig, DKIM_HASH_LEN) != 1)
			goto fail;
	}
	rc = 0;
fail:
	EVP_MD_CTX_free(md);
	EVP_PKEY_CTX_free(pctx);
	return rc;
}

static bool
dkim_pk_verify(EVP_PKEY *pkey, const unsigned char *dig,
    const unsigned char *sig, size_t siglen)
{
	EVP_PKEY_CTX *pctx = NULL;
	EVP_MD_CTX *md = NULL;
	bool ok = false;

	if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_ED25519) {
		if ((md = EVP_MD_CTX_new()) == NULL ||
		    EVP_DigestVerifyInit(md, NULL, NULL, NULL, pkey) != 1)
			goto fail;
		ok = EVP_DigestVerify(md, sig, siglen, dig,
		    DKIM_HASH_LEN) == 1;
	} else {
		if ((pctx = EVP_PKEY_CTX_new(pkey, NULL)) == NULL ||
		    EVP_PKEY_verify_init(pctx) != 1 ||
		    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1 ||
		    EVP_PKEY_CTX_set_signature_md(pctx, dkim_sha256_alg()) != 1)
			goto fail;
		ok = EVP_PKEY_verify(pctx, sig, siglen, dig,
		    DKIM_HASH_LEN) == 1;
	}
fail:
	EVP_MD_CTX_free(md);
	EVP_PKEY_CTX_free(pctx);
	return ok;
}

static int
dkim_sha256(const char *p, size_t n, unsigned char *out)
{
	unsigned int len = 0;

	if (EVP_Digest(p, n, out, &len, dkim_sha256_alg(), NULL) != 1 ||
	    len != DKIM_HASH_LEN)
		return -1;
	return 0;
}

/* ---- signing -------------------------------------------------------- */

/* Append piece; spaced: separated by one space, else glued; either way
 * a fold (CRLF SP) replaces the separation when the line would pass
 * DKIM_FOLD_COL. */
static void
dkim_fold(struct buf *out, size_t *col, const char *p, size_t n,
    bool spaced)
{
	size_t sep = spaced ? 1 : 0;

	if (*col + sep + n > DKIM_FOLD_COL && *col > 1) {
		buf_add(out, "\r\n ", 3);
		*col = 1;
	} else if (spaced) {
		buf_addc(out, ' ');
		(*col)++;
	}
	buf_add(out, p, n);
	*col += n;
}

/* pre, value and post as one piece (tmp is scratch space). */
static void
dkim_tag_piece(struct buf *out, size_t *col, struct buf *tmp,
    const char *pre, const char *val, const char *post, bool spaced)
{
	buf_reset(tmp);
	buf_adds(tmp, pre);
	buf_adds(tmp, val);
	buf_adds(tmp, post);
	dkim_fold(out, col, tmp->data, tmp->len, spaced);
}

/* List-Unsubscribe and List-Unsubscribe-Post must be signed for one-click
 * unsubscription to be honoured (RFC 8058 4). */
static const char *const dkim_default_headers[] = {
	"from", "reply-to", "subject", "date", "to", "cc", "message-id",
	"in-reply-to", "references", "mime-version", "content-type",
	"content-transfer-encoding", "list-unsubscribe",
	"list-unsubscribe-post", "list-id", "sender", NULL
};

static bool
dkim_token_ok(const char *s, size_t max, bool dots)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		    (dots && c == '.')))
			return false;
	}
	return s[0] != '.' && s[n - 1] != '.' && strstr(s, "..") == NULL;
}

int
dkim_sign(const struct dkim_key *key, const char *domain,
    const char *selector, const char *const *headers_to_sign, time_t t,
    const struct dkim_sign_opts *opts, const char *msg, size_t len,
    struct buf *out_header, char *err, size_t errsz)
{
	static const struct dkim_sign_opts defopts;
	struct dkim_msg m = { 0 };
	struct buf hd, sighdr, tmp;
	char *names[DKIM_MAX_HNAMES];
	unsigned char bh[DKIM_HASH_LEN], dig[DKIM_HASH_LEN];
	unsigned char sig[DKIM_SIG_MAX];
	size_t nnames = 0, col, siglen = sizeof(sig), i;
	bool from = false;
	int rc = -1;

	buf_init(&hd);
	buf_init(&sighdr);
	buf_init(&tmp);
	if (opts == NULL)
		opts = &defopts;
	if (headers_to_sign == NULL)
		headers_to_sign = dkim_default_headers;
	if (!dkim_token_ok(domain, DKIM_DOMAIN_MAX, true) ||
	    !dkim_token_ok(selector, DKIM_SELECTOR_MAX, true)) {
		dkim_seterr(err, errsz, "bad domain or selector");
		goto fail;
	}
	if (opts->identity != NULL && (strlen(opts->identity) >
	    DKIM_IDENT_MAX || strchr(opts->identity, '@') == NULL ||
	    strpbrk(opts->identity, "; \t\r\n") != NULL)) {
		dkim_seterr(err, errsz, "bad identity");
		goto fail;
	}
	if (dkim_msg_parse(msg, len, &m) == -1) {
		dkim_seterr(err, errsz, "malformed message header");
		goto fail;
	}
	/* h= */
	for (const char *const *h = headers_to_sign; *h != NULL; h++) {
		size_t nl = strlen(*h), cnt = 0, times;
		bool dup = false;

		if (!dkim_token_ok(*h, 64, true)) {
			dkim_seterr(err, errsz, "bad header name");
			goto fail;
		}
		for (const char *const *p = headers_to_sign; p < h; p++)
			if (ascii_strcasecmp(*p, *h) == 0)
				dup = true;
		for (i = 0; i < m.nhdr; i++)
			if (dkim_hdr_is(&m.hdr[i], *h, nl))
				cnt++;
		if (ascii_strcasecmp(*h, "from") == 0 && cnt > 0)
			from = true;
		if (opts->hmode == DKIM_H_VERBATIM)
			times = 1;
		else if (dup)
			times = 0;
		else
			times = cnt + (opts->hmode == DKIM_H_OVERSIGN);
		while (times-- > 0) {
			if (nnames >= DKIM_MAX_HNAMES) {
				dkim_seterr(err, errsz, "too many headers");
				goto fail;
			}
			names[nnames++] = (char *)(uintptr_t)*h;
		}
	}
	if (!from) {
		dkim_seterr(err, errsz, "no From field to sign");
		goto fail;
	}
	if (dkim_body_hash(&m, opts->bcanon, -1, bh) == -1)
		goto fail;

	/* the field up to b= */
	buf_adds(&sighdr, "DKIM-Signature:");
	col = sighdr.len;
#define PIECE(s, spaced) dkim_fold(&sighdr, &col, (s), strlen(s), spaced)
	PIECE("v=1;", true);
	PIECE(key->type == DKIM_KEY_RSA ? "a=rsa-sha256;" :
	    "a=ed25519-sha256;", true);
	PIECE(opts->hcanon == DKIM_CANON_SIMPLE ?
	    (opts->bcanon == DKIM_CANON_SIMPLE ? "c=simple/simple;" :
	    "c=simple/relaxed;") : (opts->bcanon == DKIM_CANON_SIMPLE ?
	    "c=relaxed/simple;" : "c=relaxed/relaxed;"), true);
	dkim_tag_piece(&sighdr, &col, &tmp, "d=", domain, ";", true);
	if (opts->identity != NULL)
		dkim_tag_piece(&sighdr, &col, &tmp, "i=", opts->identity,
		    ";", true);
	if (opts->q_tag)
		PIECE("q=dns/txt;", true);
	dkim_tag_piece(&sighdr, &col, &tmp, "s=", selector, ";", true);
	if (t != (time_t)-1) {
		buf_reset(&tmp);
		buf_printf(&tmp, "t=%lld;", (long long)t);
		PIECE(tmp.data, true);
	}
	for (i = 0; i < nnames; i++) {
		bool last = i + 1 == nnames;

		if (opts->h_spaced) {
			if (i > 0)
				PIECE(":", true);
			dkim_tag_piece(&sighdr, &col, &tmp, i == 0 ? "h=" : "",
			    names[i], last ? ";" : "", true);
		} else
			dkim_tag_piece(&sighdr, &col, &tmp, i == 0 ? "h=" : "",
			    names[i], last ? ";" : ":", i == 0);
	}
	buf_reset(&tmp);
	buf_adds(&tmp, "bh=");
	dkim_b64_encode(bh, sizeof(bh), &tmp);
	buf_addc(&tmp, ';');
	PIECE(tmp.data, true);
	PIECE("b=", true);
#undef PIECE

	/* header digest: selected fields, then this field without b= */
	dkim_select_headers(&m, names, nnames, opts->hcanon, &hd);
	dkim_canon_header(opts->hcanon, sighdr.data, sighdr.len, false, &hd);
	if (dkim_sha256(hd.data, hd.len, dig) == -1 ||
	    dkim_pk_sign(key, dig, sig, &siglen) == -1) {
		dkim_seterr(err, errsz, "signing failed");
		goto fail;
	}
	buf_reset(&tmp);
	dkim_b64_encode(sig, siglen, &tmp);
	for (i = 0; i < tmp.len; ) {
		size_t room = col < DKIM_FOLD_COL ? DKIM_FOLD_COL - col : 0;
		size_t n;

		if (room < 8) {
			buf_add(&sighdr, "\r\n ", 3);
			col = 1;
			continue;
		}
		n = tmp.len - i < room ? tmp.len - i : room;
		buf_add(&sighdr, tmp.data + i, n);
		col += n;
		i += n;
	}
	buf_add(&sighdr, "\r\n", 2);
	buf_add(out_header, sighdr.data, sighdr.len);
	rc = 0;
fail:
	free(m.hdr);
	buf_free(&hd);
	buf_free(&sighdr);
	buf_free(&tmp);
	return rc;
}

/* ---- tag lists (RFC 6376 3.2) --------------------------------------- */

struct dkim_tag {
	const char	*name;
	size_t		 namelen;
	const char	*val;	/* trimmed of FWS at both ends */
	size_t		 vallen;
	size_t		 rawstart, rawend;	/* after '=', before ';' */
};

struct dkim_tags {
	struct dkim_tag	tag[DKIM_MAX_TAGS];
	size_t		n;
};

static bool
dkim_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
dkim_alnumpunc(char c)
{
	return dkim_alpha(c) || (c >= '0' && c <= '9') || c == '_';
}

/* Parse s[0..n); offsets are relative to s.  0 or -1. */
static int
dkim_tags_parse(const char *s, size_t n, struct dkim_tags *tl)
{
	size_t i = 0;

	tl->n = 0;
	for (;;) {
		struct dkim_tag *tg;
		size_t ns, ve;

		while (i < n && dkim_isfws(s[i]))
			i++;
		if (i == n)
			break;
		if (!dkim_alpha(s[i]) || tl->n >= DKIM_MAX_TAGS)
			return -1;
		ns = i;
		while (i < n && dkim_alnumpunc(s[i]))
			i++;
		tg = &tl->tag[tl->n];
		tg->name = s + ns;
		tg->namelen = i - ns;
		for (size_t k = 0; k < tl->n; k++)
			if (tl->tag[k].namelen == tg->namelen &&
			    memcmp(tl->tag[k].name, tg->name,
			    tg->namelen) == 0)
				return -1;	/* duplicate */
		while (i < n && dkim_isfws(s[i]))
			i++;
		if (i >= n || s[i] != '=')
			return -1;
		i++;
		tg->rawstart = i;
		while (i < n && dkim_isfws(s[i]))
			i++;
		ns = i;
		while (i < n && s[i] != ';') {
			unsigned char c = (unsigned char)s[i];

			if (!dkim_isfws(s[i]) && (c < 0x21 || c > 0x7e))
				return -1;
			i++;
		}
		tg->rawend = i;
		ve = i;
		while (ve > ns && dkim_isfws(s[ve - 1]))
			ve--;
		tg->val = s + ns;
		tg->vallen = ve - ns;
		tl->n++;
		if (i < n)
			i++;	/* ';' */
	}
	return 0;
}

static const struct dkim_tag *
dkim_tag_get(const struct dkim_tags *tl, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < tl->n; i++)
		if (tl->tag[i].namelen == n &&
		    memcmp(tl->tag[i].name, name, n) == 0)
			return &tl->tag[i];
	return NULL;
}

/* Copy a tag value without FWS into out[cap].  false if it does not fit. */
static bool
dkim_tag_copy(const struct dkim_tag *tg, char *out, size_t cap, bool lower)
{
	size_t o = 0;

	for (size_t i = 0; i < tg->vallen; i++) {
		if (dkim_isfws(tg->val[i]))
			continue;
		if (o + 1 >= cap)
			return false;
		out[o++] = lower ? dkim_lower(tg->val[i]) : tg->val[i];
	}
	out[o] = '\0';
	return true;
}

static bool
dkim_tag_is(const struct dkim_tag *tg, const char *v)
{
	return tg->vallen == strlen(v) && memcmp(tg->val, v, tg->vallen) == 0;
}

static int
dkim_tag_num(const struct dkim_tag *tg, int64_t *out)
{
	int64_t v = 0;

	if (tg->vallen == 0 || tg->vallen > 12)
		return -1;
	for (size_t i = 0; i < tg->vallen; i++) {
		if (tg->val[i] < '0' || tg->val[i] > '9')
			return -1;
		v = v * 10 + (tg->val[i] - '0');
	}
	*out = v;
	return 0;
}

/* ---- verifying ------------------------------------------------------ */

struct dkim_sig {
	enum dkim_keytype	 ktype;
	enum dkim_canon		 hcanon, bcanon;
	char			 d[DKIM_DOMAIN_MAX + 1];
	char			 s[DKIM_SELECTOR_MAX + 1];
	char			 idom[DKIM_IDENT_MAX + 1];	/* i= domain */
	char			 hlist[DKIM_HLIST_MAX];
	char			*names[DKIM_MAX_HNAMES];
	size_t			 nnames;
	unsigned char		 b[DKIM_SIG_MAX];
	size_t			 blen;
	unsigned char		 bh[DKIM_HASH_LEN];
	int64_t			 l;
	size_t			 bstart, bend;	/* b= value in the field */
};

#define SIGERR(why) do { *reason = (why); goto fail; } while (0)

static int
dkim_sig_parse(const struct dkim_hdr *h, time_t now, struct dkim_sig *sg,
    const char **reason)
{
	struct dkim_tags tl;
	const struct dkim_tag *tg;
	size_t voff = h->namelen;
	ssize_t n;
	int64_t t = -1, x = -1;
	char *p, *save;

	while (h->p[voff] != ':')
		voff++;
	voff++;
	if (dkim_tags_parse(h->p + voff, h->len - voff, &tl) == -1)
		SIGERR("malformed tag list");
	if ((tg = dkim_tag_get(&tl, "v")) == NULL || !dkim_tag_is(tg, "1"))
		SIGERR("missing or bad v=");
	if ((tg = dkim_tag_get(&tl, "a")) == NULL)
		SIGERR("missing a=");
	if (dkim_tag_is(tg, "rsa-sha256"))
		sg->ktype = DKIM_KEY_RSA;
	else if (dkim_tag_is(tg, "ed25519-sha256"))
		sg->ktype = DKIM_KEY_ED25519;
	else
		SIGERR("unsupported algorithm");
	sg->hcanon = sg->bcanon = DKIM_CANON_SIMPLE;
	if ((tg = dkim_tag_get(&tl, "c")) != NULL) {
		char c[32];

		if (!dkim_tag_copy(tg, c, sizeof(c), false))
			SIGERR("bad c=");
		p = strchr(c, '/');
		if (p != NULL)
			*p++ = '\0';
		if (strcmp(c, "relaxed") == 0)
			sg->hcanon = DKIM_CANON_RELAXED;
		else if (strcmp(c, "simple") != 0)
			SIGERR("bad c=");
		if (p != NULL && strcmp(p, "relaxed") == 0)
			sg->bcanon = DKIM_CANON_RELAXED;
		else if (p != NULL && strcmp(p, "simple") != 0)
			SIGERR("bad c=");
	}
	if ((tg = dkim_tag_get(&tl, "d")) == NULL ||
	    !dkim_tag_copy(tg, sg->d, sizeof(sg->d), true) ||
	    !dkim_token_ok(sg->d, DKIM_DOMAIN_MAX, true))
		SIGERR("missing or bad d=");
	if ((tg = dkim_tag_get(&tl, "s")) == NULL ||
	    !dkim_tag_copy(tg, sg->s, sizeof(sg->s), false) ||
	    !dkim_token_ok(sg->s, DKIM_SELECTOR_MAX, true))
		SIGERR("missing or bad s=");
	if ((tg = dkim_tag_get(&tl, "i")) != NULL) {
		char ident[DKIM_IDENT_MAX + 1];
		size_t dl = strlen(sg->d), il;

		if (!dkim_tag_copy(tg, ident, sizeof(ident), true) ||
		    (p = strrchr(ident, '@')) == NULL)
			SIGERR("bad i=");
		snprintf(sg->idom, sizeof(sg->idom), "%s", p + 1);
		il = strlen(sg->idom);
		if (!(il == dl && strcmp(sg->idom, sg->d) == 0) &&
		    !(il > dl && sg->idom[il - dl - 1] == '.' &&
		    strcmp(sg->idom + il - dl, sg->d) == 0))
			SIGERR("i= not within d=");
	} else
		snprintf(sg->idom, sizeof(sg->idom), "%s", sg->d);
	if ((tg = dkim_tag_get(&tl, "q")) != NULL) {
		char q[128];
		bool ok = false;

		if (!dkim_tag_copy(tg, q, sizeof(q), false))
			SIGERR("bad q=");
		for (p = strtok_r(q, ":", &save); p != NULL;
		    p = strtok_r(NULL, ":", &save))
			if (strcmp(p, "dns/txt") == 0)
				ok = true;
		if (!ok)
			SIGERR("unsupported q=");
	}
	if ((tg = dkim_tag_get(&tl, "h")) == NULL ||
	    !dkim_tag_copy(tg, sg->hlist, sizeof(sg->hlist), false))
		SIGERR("missing or bad h=");
	{
		bool from = false;
		size_t len = strlen(sg->hlist), start = 0;

		sg->nnames = 0;
		for (size_t i = 0; i <= len; i++) {
			if (i < len && sg->hlist[i] != ':')
				continue;
			sg->hlist[i] = '\0';
			if (i == start || sg->nnames >= DKIM_MAX_HNAMES)
				SIGERR("bad h=");
			for (size_t k = start; k < i; k++)
				if (!dkim_namechar(
				    (unsigned char)sg->hlist[k]))
					SIGERR("bad h=");
			if (ascii_strcasecmp(sg->hlist + start, "from") == 0)
				from = true;
			sg->names[sg->nnames++] = sg->hlist + start;
			start = i + 1;
		}
		if (!from)
			SIGERR("From not signed");
	}
	if ((tg = dkim_tag_get(&tl, "bh")) == NULL ||
	    dkim_b64_decode(tg->val, tg->vallen, sg->bh, sizeof(sg->bh)) !=
	    DKIM_HASH_LEN)
		SIGERR("missing or bad bh=");
	if ((tg = dkim_tag_get(&tl, "b")) == NULL ||
	    (n = dkim_b64_decode(tg->val, tg->vallen, sg->b,
	    sizeof(sg->b))) <= 0)
		SIGERR("missing or bad b=");
	sg->blen = (size_t)n;
	sg->bstart = voff + tg->rawstart;
	sg->bend = voff + tg->rawend;
	sg->l = -1;
	if ((tg = dkim_tag_get(&tl, "l")) != NULL &&
	    dkim_tag_num(tg, &sg->l) == -1)
		SIGERR("bad l=");
	if ((tg = dkim_tag_get(&tl, "t")) != NULL &&
	    dkim_tag_num(tg, &t) == -1)
		SIGERR("bad t=");
	if ((tg = dkim_tag_get(&tl, "x")) != NULL) {
		if (dkim_tag_num(tg, &x) == -1 || (t >= 0 && x < t))
			SIGERR("bad x=");
		if ((int64_t)now > x) {
			*reason = "signature expired";
			return 1;
		}
	}
	return 0;
fail:
	return -1;
}

/* Parse a key record for sg.  0, 1 (fail: revoked), -1 (permerror). */
static int
dkim_keyrec_parse(const char *txt, size_t len, const struct dkim_sig *sg,
    EVP_PKEY **pkey, const char **reason)
{
	struct dkim_tags tl;
	const struct dkim_tag *tg;
	unsigned char raw[DKIM_KEY_MAX];
	const unsigned char *rp = raw;
	enum dkim_keytype kt = DKIM_KEY_RSA;
	char v[256], *p, *save;
	ssize_t n;

	*pkey = NULL;
	if (len > 8192 || dkim_tags_parse(txt, len, &tl) == -1)
		SIGERR("malformed key record");
	if ((tg = dkim_tag_get(&tl, "v")) != NULL &&
	    (tg != &tl.tag[0] || !dkim_tag_is(tg, "DKIM1")))
		SIGERR("bad key record version");
	if ((tg = dkim_tag_get(&tl, "k")) != NULL) {
		if (dkim_tag_is(tg, "rsa"))
			kt = DKIM_KEY_RSA;
		else if (dkim_tag_is(tg, "ed25519"))
			kt = DKIM_KEY_ED25519;
		else
			SIGERR("unknown key type");
	}
	if (kt != sg->ktype)
		SIGERR("key type does not match a=");
	if ((tg = dkim_tag_get(&tl, "h")) != NULL) {
		bool ok = false;

		if (!dkim_tag_copy(tg, v, sizeof(v), false))
			SIGERR("bad key record h=");
		for (p = strtok_r(v, ":", &save); p != NULL;
		    p = strtok_r(NULL, ":", &save))
			if (strcmp(p, "sha256") == 0)
				ok = true;
		if (!ok)
			SIGERR("key does not allow sha256");
	}
	if ((tg = dkim_tag_get(&tl, "s")) != NULL) {
		bool ok = false;

		if (!dkim_tag_copy(tg, v, sizeof(v), false))
			SIGERR("bad key record s=");
		for (p = strtok_r(v, ":", &save); p != NULL;
		    p = strtok_r(NULL, ":", &save))
			if (strcmp(p, "*") == 0 || strcmp(p, "email") == 0)
				ok = true;
		if (!ok)
			SIGERR("key not for email");
	}
	if ((tg = dkim_tag_get(&tl, "t")) != NULL) {
		if (!dkim_tag_copy(tg, v, sizeof(v), false))
			SIGERR("bad key record t=");
		for (p = strtok_r(v, ":", &save); p != NULL;
		    p = strtok_r(NULL, ":", &save))
			if (strcmp(p, "s") == 0 &&
			    strcmp(sg->idom, sg->d) != 0)
				SIGERR("i= is not d= and the key says t=s");
	}
	if ((tg = dkim_tag_get(&tl, "p")) == NULL)
		SIGERR("key record without p=");
	if (tg->vallen == 0) {
		*reason = "key revoked";
		return 1;
	}
	if ((n = dkim_b64_decode(tg->val, tg->vallen, raw, sizeof(raw))) <= 0)
		SIGERR("bad key data");
	if (kt == DKIM_KEY_ED25519) {
		if (n != 32 || (*pkey = EVP_PKEY_new_raw_public_key(
		    EVP_PKEY_ED25519, NULL, raw, 32)) == NULL)
			SIGERR("bad Ed25519 key");
		return 0;
	}
	*pkey = d2i_PUBKEY(NULL, &rp, (long)n);
	if (*pkey == NULL) {
		rp = raw;
		*pkey = d2i_PublicKey(EVP_PKEY_RSA, NULL, &rp, (long)n);
	}
	if (*pkey == NULL || EVP_PKEY_get_base_id(*pkey) != EVP_PKEY_RSA)
		SIGERR("bad RSA key");
	if (EVP_PKEY_get_bits(*pkey) < DKIM_RSA_MIN_BITS ||
	    EVP_PKEY_get_bits(*pkey) > DKIM_RSA_MAX_BITS)
		SIGERR("RSA key size out of range");
	return 0;
fail:
	EVP_PKEY_free(*pkey);
	*pkey = NULL;
	return -1;
}

static void
dkim_verify_one(const struct dkim_msg *m, const struct dkim_hdr *h,
    dkim_lookup_fn lookup, void *arg, time_t now, struct dkim_result *r)
{
	struct dkim_sig *sg = xcalloc(1, sizeof(*sg));
	struct buf txt, hd;
	EVP_PKEY *pkey = NULL;
	unsigned char bh[DKIM_HASH_LEN], dig[DKIM_HASH_LEN];
	int rc;

	buf_init(&txt);
	buf_init(&hd);
	r->status = DKIM_PERMERROR;
	r->reason = "";
	rc = dkim_sig_parse(h, now, sg, &r->reason);
	snprintf(r->domain, sizeof(r->domain), "%s", sg->d);
	snprintf(r->selector, sizeof(r->selector), "%s", sg->s);
	if (rc != 0) {
		r->status = rc == 1 ? DKIM_FAIL : DKIM_PERMERROR;
		goto done;
	}
	rc = lookup(arg, sg->s, sg->d, &txt);
	if (rc == DKIM_LOOKUP_TEMPFAIL) {
		r->status = DKIM_TEMPERROR;
		r->reason = "key lookup failed";
		goto done;
	}
	if (rc != DKIM_LOOKUP_FOUND) {
		r->reason = "no key record";
		goto done;
	}
	rc = dkim_keyrec_parse(txt.data, txt.len, sg, &pkey, &r->reason);
	if (rc != 0) {
		r->status = rc == 1 ? DKIM_FAIL : DKIM_PERMERROR;
		goto done;
	}
	r->status = DKIM_FAIL;
	if (dkim_body_hash(m, sg->bcanon, sg->l, bh) == -1) {
		r->reason = "body shorter than l=";
		goto done;
	}
	if (memcmp(bh, sg->bh, sizeof(bh)) != 0) {
		r->reason = "body hash mismatch";
		goto done;
	}
	dkim_select_headers(m, sg->names, sg->nnames, sg->hcanon, &hd);
	{
		struct buf stripped;

		buf_init(&stripped);
		buf_add(&stripped, h->p, sg->bstart);
		buf_add(&stripped, h->p + sg->bend, h->len - sg->bend);
		dkim_canon_header(sg->hcanon, stripped.data, stripped.len,
		    false, &hd);
		buf_free(&stripped);
	}
	if (dkim_sha256(hd.data, hd.len, dig) == -1 ||
	    !dkim_pk_verify(pkey, dig, sg->b, sg->blen)) {
		r->reason = "signature mismatch";
		goto done;
	}
	r->status = DKIM_PASS;
	r->reason = "";
done:
	EVP_PKEY_free(pkey);
	buf_free(&txt);
	buf_free(&hd);
	free(sg);
}

int
dkim_verify(const char *msg, size_t len, dkim_lookup_fn lookup, void *arg,
    time_t now, struct dkim_result *res, size_t nres)
{
	struct dkim_msg m;
	size_t n = 0;

	if (dkim_msg_parse(msg, len, &m) == -1)
		goto fail;
	for (size_t i = 0; i < m.nhdr && n < nres && n < DKIM_MAX_SIGS; i++) {
		if (!dkim_hdr_is(&m.hdr[i], "DKIM-Signature", 14))
			continue;
		memset(&res[n], 0, sizeof(res[n]));
		dkim_verify_one(&m, &m.hdr[i], lookup, arg, now, &res[n]);
		n++;
	}
	free(m.hdr);
	return (int)n;
fail:
	return -1;
}

/*
 * dkim_keys.c - making DKIM key records and rotating them.  See
 * dkim_keys.h for the rules; the store keeps the keys, the domain check
 * (domain_check.c) looks their records up and calls dkimkey_rotate.
 *
 * Must never: activate a key whose record was not seen, keep two active
 * keys of one algorithm, leave private key bytes in freed memory that it
 * allocated itself.
 */
#include "auth/dkim_keys.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "common/log.h"
#include "common/util.h"

const char *
dkimkey_alg_name(enum dkim_keytype t)
{
	return t == DKIM_KEY_ED25519 ? "ed25519-sha256" : "rsa-sha256";
}

int
dkimkey_alg_parse(const char *s, enum dkim_keytype *out)
{
	if (strcmp(s, "rsa-sha256") == 0 || strcmp(s, "rsa") == 0)
		*out = DKIM_KEY_RSA;
	else if (strcmp(s, "ed25519-sha256") == 0 || strcmp(s, "ed25519") == 0)
		*out = DKIM_KEY_ED25519;
	else
		return -1;
	return 0;
}

/* Wipe a buffer that held key material, then free it. */
static void
dkimkey_buf_wipe(struct buf *b)
{
	if (b->data != NULL)
		sodium_memzero(b->data, b->cap);
	buf_free(b);
}

int
dkimkey_generate(const char *domain, enum dkim_keytype type, unsigned bits,
    const char *selector, int64_t now, struct dkim_keyrec *k, char *err,
    size_t errlen)
{
	struct dkim_key *key = NULL;
	struct buf pem, rec;
	struct tm tm;
	time_t t = (time_t)now;
	int rc = -1;

	memset(k, 0, sizeof(*k));
	buf_init(&pem);
	buf_init(&rec);
	buf_reserve(&pem, 8192);	/* no realloc leaving copies behind */
	if (!strlcpy_ok(k->domain, domain, sizeof(k->domain))) {
		snprintf(err, errlen, "domain too long");
		goto fail;
	}
	if (selector != NULL) {
		if (!strlcpy_ok(k->selector, selector, sizeof(k->selector))) {
			snprintf(err, errlen, "selector too long");
			goto fail;
		}
	} else {
		gmtime_r(&t, &tm);
		snprintf(k->selector, sizeof(k->selector), "o%04d%02d%02d%c",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		    type == DKIM_KEY_ED25519 ? 'e' : 'r');
	}
	if ((key = dkim_keygen(type, bits, err, errlen)) == NULL)
		goto fail;
	if (dkim_key_pem(key, &pem) != 0 || dkim_key_txt(key, &rec) != 0 ||
	    rec.len >= sizeof(k->record)) {
		snprintf(err, errlen, "cannot encode the key");
		goto fail;
	}
	memcpy(k->record, rec.data, rec.len + 1);
	strlcpy_ok(k->algorithm, dkimkey_alg_name(type), sizeof(k->algorithm));
	k->bits = type == DKIM_KEY_RSA ? (int)(bits ? bits : 2048) : 0;
	k->private_pem = xstrdup(pem.data);
	k->state = DKIMKEY_PENDING;
	k->created = now;
	rc = 0;
fail:
	dkim_key_free(key);
	dkimkey_buf_wipe(&pem);
	buf_free(&rec);
	return rc;
}

/*
 * The value of tag name in a tag=value list (RFC 6376 3.2), whitespace
 * removed, into out; false if absent or too long.
 */
static bool
dkimkey_tag(const char *rec, size_t len, const char *name, char *out,
    size_t outlen)
{
	size_t i = 0, nlen = strlen(name);

	while (i < len) {
		size_t s, e, o = 0;

		while (i < len && (rec[i] == ' ' || rec[i] == '\t' ||
		    rec[i] == '\r' || rec[i] == '\n'))
			i++;
		s = i;
		while (i < len && rec[i] != '=' && rec[i] != ';')
			i++;
		e = i;
		while (e > s && (rec[e - 1] == ' ' || rec[e - 1] == '\t'))
			e--;
		if (i < len && rec[i] == '=') {
			bool match = e - s == nlen &&
			    strncasecmp(rec + s, name, nlen) == 0;

			for (i++; i < len && rec[i] != ';'; i++) {
				if (!match || rec[i] == ' ' || rec[i] == '\t' ||
				    rec[i] == '\r' || rec[i] == '\n')
					continue;
				if (o + 1 >= outlen)
					return false;
				out[o++] = rec[i];
			}
			if (match) {
				out[o] = '\0';
				return true;
			}
		}
		if (i < len)
			i++;		/* the ';' */
	}
	return false;
}

bool
dkimkey_record_p(const char *record, size_t len, char *out, size_t outlen)
{
	return dkimkey_tag(record, len, "p", out, outlen);
}

bool
dkimkey_published_matches(const struct dkim_keyrec *k, const char *txt,
    size_t len)
{
	char want[STORE_DKIM_RECORD_MAX + 1], got[STORE_DKIM_RECORD_MAX + 1];
	char kw[32], kg[32], v[32];
	size_t rlen = strlen(k->record);

	if (memchr(txt, '\0', len) != NULL)
		return false;
	if (dkimkey_tag(txt, len, "v", v, sizeof(v)) && strcmp(v, "DKIM1"))
		return false;
	if (!dkimkey_tag(k->record, rlen, "k", kw, sizeof(kw)))
		strlcpy_ok(kw, "rsa", sizeof(kw));
	if (!dkimkey_tag(txt, len, "k", kg, sizeof(kg)))
		strlcpy_ok(kg, "rsa", sizeof(kg));
	return strcasecmp(kw, kg) == 0 &&
	    dkimkey_record_p(k->record, rlen, want, sizeof(want)) &&
	    dkimkey_record_p(txt, len, got, sizeof(got)) &&
	    want[0] != '\0' && strcmp(want, got) == 0;
}

size_t
dkimkey_rotate(struct dkim_keyrec *keys, size_t n, const bool *published,
    int64_t now, int64_t grace)
{
	size_t changed = 0;

	for (size_t i = 0; i < n; i++)
		if (published[i])
			keys[i].published_at = now;
	/* per algorithm: the newest published pending key takes over */
	for (size_t i = 0; i < n; i++) {
		struct dkim_keyrec *k = &keys[i];
		bool newest = true;

		if (k->state != DKIMKEY_PENDING || !published[i])
			continue;
		for (size_t j = 0; j < n; j++)
			if (j != i && keys[j].state == DKIMKEY_PENDING &&
			    published[j] && strcmp(keys[j].algorithm,
			    k->algorithm) == 0 && (keys[j].created > k->created ||
			    (keys[j].created == k->created && keys[j].id > k->id)))
				newest = false;
		if (!newest)
			continue;
		for (size_t j = 0; j < n; j++)
			if (keys[j].state == DKIMKEY_ACTIVE &&
			    strcmp(keys[j].algorithm, k->algorithm) == 0) {
				keys[j].state = DKIMKEY_RETIRING;
				keys[j].retire_at = now + grace;
				changed++;
			}
		k->state = DKIMKEY_ACTIVE;
		k->activated_at = now;
		changed++;
	}
	for (size_t i = 0; i < n; i++)
		if (keys[i].state == DKIMKEY_RETIRING &&
		    now >= keys[i].retire_at) {
			keys[i].state = DKIMKEY_RETIRED;
			changed++;
		}
	return changed;
}

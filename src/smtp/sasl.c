/*
 * sasl.c - decoding of SASL PLAIN (RFC 4616) and LOGIN responses carried
 * in base64 by SMTP AUTH (RFC 4954).  Strict: standard alphabet with
 * padding, no whitespace, canonical trailing bits; every field bounded
 * before and after decoding.  Pure functions, fuzzed by fuzz_sasl.
 *
 * Must never: write past the caller's buffers, accept a NUL inside a
 * field, let authzid name anybody but authcid, leave decoded secrets in
 * memory (intermediate buffers and, on failure, outputs are wiped).
 */
#include "smtp/sasl.h"

#include <stdbool.h>
#include <string.h>

#include <sodium.h>

/* authzid NUL authcid NUL passwd, each at most its bound. */
#define SASL_PLAIN_MAX	(SASL_USER_MAX + 1 + SASL_USER_MAX + 1 + \
			    SASL_PASS_MAX)
/* Base64 of n bytes, with padding. */
#define SASL_B64_LEN(n)	(((n) + 2) / 3 * 4)

/* sasl_b64_field() fills LOGIN user names and passwords alike. */
_Static_assert(SASL_USER_MAX == SASL_PASS_MAX, "LOGIN field bounds differ");

void
sasl_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		sodium_memzero(p, n);
}

/*
 * Strict base64 of at most max bytes into out.  Returns the decoded length
 * or -1 (NULL, too long, bad alphabet, padding or trailing bits).
 */
static long
sasl_b64_decode(const char *b64, unsigned char *out, size_t max)
{
	size_t len, outlen = 0;

	if (b64 == NULL)
		return -1;
	len = strnlen(b64, SASL_B64_LEN(max) + 1);
	if (len > SASL_B64_LEN(max))
		return -1;
	if (sodium_base642bin(out, max, b64, len, NULL, &outlen, NULL,
	    sodium_base64_VARIANT_ORIGINAL) != 0 || outlen > max) {
		sasl_wipe(out, max);
		return -1;
	}
	return (long)outlen;
}

/* Copy a field of n bytes (no NUL, 1..max) into out[max + 1]. */
static bool
sasl_field(char *out, size_t max, const unsigned char *p, size_t n)
{
	if (n == 0 || n > max || memchr(p, '\0', n) != NULL)
		return false;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

int
sasl_plain_decode(const char *b64, char user[SASL_USER_MAX + 1],
    char pass[SASL_PASS_MAX + 1])
{
	unsigned char buf[SASL_PLAIN_MAX];
	const unsigned char *authcid, *passwd, *nul;
	size_t zlen, clen, plen;
	long n;
	int rc = -1;

	user[0] = pass[0] = '\0';
	if ((n = sasl_b64_decode(b64, buf, sizeof(buf))) < 0)
		goto fail;
	/* authzid: up to the first NUL. */
	if ((nul = memchr(buf, '\0', (size_t)n)) == NULL)
		goto fail;
	zlen = (size_t)(nul - buf);
	authcid = nul + 1;
	/* authcid: up to the second NUL; passwd: the rest, NUL-free. */
	if ((nul = memchr(authcid, '\0', (size_t)(buf + n - authcid))) ==
	    NULL)
		goto fail;
	clen = (size_t)(nul - authcid);
	passwd = nul + 1;
	plen = (size_t)(buf + n - passwd);
	if (zlen != 0 && (zlen != clen || memcmp(buf, authcid, clen) != 0))
		goto fail;
	if (!sasl_field(user, SASL_USER_MAX, authcid, clen) ||
	    !sasl_field(pass, SASL_PASS_MAX, passwd, plen))
		goto fail;
	rc = 0;
fail:
	sasl_wipe(buf, sizeof(buf));
	if (rc != 0) {
		sasl_wipe(user, SASL_USER_MAX + 1);
		sasl_wipe(pass, SASL_PASS_MAX + 1);
	}
	return rc;
}

int
sasl_b64_field(const char *b64, char out[SASL_PASS_MAX + 1])
{
	unsigned char buf[SASL_PASS_MAX];
	long n;
	int rc = -1;

	out[0] = '\0';
	if ((n = sasl_b64_decode(b64, buf, sizeof(buf))) < 0)
		goto fail;
	if (!sasl_field(out, SASL_PASS_MAX, buf, (size_t)n))
		goto fail;
	rc = 0;
fail:
	sasl_wipe(buf, sizeof(buf));
	if (rc != 0)
		sasl_wipe(out, SASL_PASS_MAX + 1);
	return rc;
}

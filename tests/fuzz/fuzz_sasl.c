/*
 * fuzz_sasl.c - libFuzzer target for the SASL decoders: the input, made a
 * C string, goes to sasl_plain_decode() and sasl_b64_field().  Beyond
 * memory safety it checks what they promise: accepted fields are bounded,
 * non-empty and NUL-free; rejected outputs are empty; an accepted PLAIN
 * response re-encoded without authzid decodes to the same fields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "smtp/sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_check_field(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);

	if (n == 0 || n > max)
		abort();
}

/* "\0user\0pass" encoded again must decode to the same fields. */
static void
fuzz_roundtrip(const char *user, const char *pass)
{
	unsigned char raw[1 + SASL_USER_MAX + 1 + SASL_PASS_MAX];
	char enc[sodium_base64_ENCODED_LEN(sizeof(raw),
	    sodium_base64_VARIANT_ORIGINAL)];
	char u2[SASL_USER_MAX + 1], p2[SASL_PASS_MAX + 1];
	size_t ul = strlen(user), pl = strlen(pass), n = 0;

	raw[n++] = '\0';
	memcpy(raw + n, user, ul);
	n += ul;
	raw[n++] = '\0';
	memcpy(raw + n, pass, pl);
	n += pl;
	sodium_bin2base64(enc, sizeof(enc), raw, n,
	    sodium_base64_VARIANT_ORIGINAL);
	if (sasl_plain_decode(enc, u2, p2) != 0 || strcmp(u2, user) != 0 ||
	    strcmp(p2, pass) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char user[SASL_USER_MAX + 1], pass[SASL_PASS_MAX + 1];
	char *s = malloc(size + 1);

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	if (sasl_plain_decode(s, user, pass) == 0) {
		fuzz_check_field(user, SASL_USER_MAX);
		fuzz_check_field(pass, SASL_PASS_MAX);
		fuzz_roundtrip(user, pass);
	} else if (user[0] != '\0' || pass[0] != '\0')
		abort();

	if (sasl_b64_field(s, pass) == 0)
		fuzz_check_field(pass, SASL_PASS_MAX);
	else if (pass[0] != '\0')
		abort();

	free(s);
	return 0;
}

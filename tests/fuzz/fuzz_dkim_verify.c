/*
 * fuzz_dkim_verify.c - libFuzzer target for dkim_verify: arbitrary bytes
 * as a signed message (header, DKIM-Signature tag lists, body), with the
 * key lookup answering the RFC 8463 Ed25519 key record for every
 * selector.  Must never read past size (exact-size heap copy), crash, or
 * report more results than asked for.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/dkim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
fuzz_lookup(void *arg, const char *selector, const char *domain,
    struct buf *txt)
{
	buf_adds(txt, "v=DKIM1; k=ed25519; "
	    "p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
	return DKIM_LOOKUP_FOUND;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dkim_result res[4];
	char *copy = malloc(size ? size : 1);
	int n;

	if (copy == NULL)
		return 0;
	if (size)
		memcpy(copy, data, size);
	n = dkim_verify(copy, size, fuzz_lookup, NULL, 1528637909, res, 4);
	if (n > 4 || n < -1)
		abort();
	for (int i = 0; i < n; i++)
		if (res[i].reason == NULL)
			abort();
	free(copy);
	return 0;
}

/*
 * fuzz_dkim_keyrec.c - libFuzzer target for the DKIM key record matching
 * of src/auth/dkim_keys.c: what a domain publishes at a selector (hostile
 * DNS data) against a key of ours.
 *
 * The input is a TXT record (an exact-size heap copy, so ASan sees any
 * read past it).  Must never crash or read out of bounds; a record that
 * matches must carry our p= exactly (after white space), and our own
 * record must match itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/dkim_keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char ours[] = "v=DKIM1; k=ed25519; "
	    "p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
	struct dkim_keyrec k;
	char p[STORE_DKIM_RECORD_MAX + 1], *copy = malloc(size ? size : 1);

	if (copy == NULL)
		return 0;
	if (size)
		memcpy(copy, data, size);
	memset(&k, 0, sizeof(k));
	memcpy(k.record, ours, sizeof(ours));
	if (!dkimkey_published_matches(&k, ours, strlen(ours)))
		abort();
	if (dkimkey_published_matches(&k, copy, size) &&
	    (!dkimkey_record_p(copy, size, p, sizeof(p)) ||
	    strcmp(p, "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=") != 0))
		abort();
	if (dkimkey_record_p(copy, size, p, sizeof(p)) &&
	    strlen(p) >= sizeof(p))
		abort();
	free(copy);
	return 0;
}

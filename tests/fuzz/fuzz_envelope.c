/*
 * fuzz_envelope.c - libFuzzer target for envelope_decode.
 *
 * Feeds arbitrary bytes to envelope_decode.  When they decode, the
 * envelope is encoded again and that encoding must (1) decode to an equal
 * envelope using all of it, and (2) be byte for byte the prefix of the
 * input that the first decode consumed, since the codec is canonical.
 * Anything else abort()s.  Must never: read the input past size (it is
 * copied to an exact-size heap block so ASan sees an overrun).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct envelope e1, e2;
	struct buf enc;
	size_t used1 = 0, used2 = 0;
	char *copy = malloc(size ? size : 1);

	if (copy == NULL)
		return 0;
	if (size)
		memcpy(copy, data, size);
	if (envelope_decode(copy, size, &e1, &used1) != 0) {
		free(copy);
		return 0;
	}
	if (used1 == 0 || used1 > size)
		abort();
	buf_init(&enc);
	envelope_encode(&e1, &enc);
	if (enc.len != used1 || memcmp(enc.data, copy, used1) != 0)
		abort();	/* accepted a non-canonical encoding */
	if (envelope_decode(enc.data, enc.len, &e2, &used2) != 0 ||
	    used2 != enc.len || !envelope_equal(&e1, &e2))
		abort();
	envelope_free(&e1);
	envelope_free(&e2);
	buf_free(&enc);
	free(copy);
	return 0;
}

/*
 * fuzz_config.c - conf_parse on arbitrary bytes: never crash, never leak,
 * and any accepted configuration has at least one listener.
 */
#include <stdint.h>
#include <stdlib.h>

#include "conf/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	struct conf *c = conf_parse("fuzz", (const char *)data, size, err,
	    sizeof(err));

	if (c != NULL) {
		if (c->nlisteners == 0)
			abort();
		conf_free(c);
	}
	return 0;
}

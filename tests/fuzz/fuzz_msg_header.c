/*
 * fuzz_msg_header.c - libFuzzer target for msg_from_domains.
 *
 * Arbitrary bytes as a message: must never read past size (an exact-size
 * heap copy lets ASan see it), and what comes out must be sane: at most
 * MSG_FROM_MAX domains on success, each non-empty, lower case, without
 * blanks or angle brackets.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/msg_header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char d[MSG_FROM_MAX][MSG_DOMAIN_MAX + 1];
	char *copy = malloc(size ? size : 1);
	size_t n = 0;

	if (copy == NULL)
		return 0;
	if (size)
		memcpy(copy, data, size);
	if (msg_from_domains(copy, size, d, &n) == MSG_FROM_OK) {
		if (n == 0 || n > MSG_FROM_MAX)
			abort();
		for (size_t i = 0; i < n; i++) {
			size_t l = strnlen(d[i], sizeof(d[i]));
			if (l == 0 || l > MSG_DOMAIN_MAX)
				abort();
			for (size_t k = 0; k < l; k++)
				if (isspace((unsigned char)d[i][k]) ||
				    isupper((unsigned char)d[i][k]) ||
				    d[i][k] == '<' || d[i][k] == '>')
					abort();
		}
	}
	free(copy);
	return 0;
}

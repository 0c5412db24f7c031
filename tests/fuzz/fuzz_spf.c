/*
 * fuzz_spf.c - libFuzzer target for the SPF record parser and the macro
 * expander.  The input's first line is the text; the lines after it, if
 * any, replace the macro values s, l, o, d, i, p, v, h, c, r, t in that
 * order.  The text goes to spf_record_check() and, as a macro-string,
 * to spf_macro_expand() in both modes and into a large and a small
 * buffer.  Beyond memory safety it checks what they promise: an
 * accepted record starts with "v=spf1"; a rejected one has a reason; an
 * expansion's length is that of its NUL-terminated output, a failure
 * leaves the output empty; what expands outside exp= expands the same
 * inside it; a small buffer gives the same output or fails.
 *
 * Must never: look anything up (no DNS: only the pure helpers).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/spf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_OUT_BIG	4096
#define FUZZ_OUT_SMALL	40

/* Expands in into a buffer of outlen; checks the result's shape. */
static int
fuzz_expand(const struct spf_macro_env *env, const char *in, int exp,
    char *out, size_t outlen)
{
	int n = spf_macro_expand(env, in, exp, out, outlen);

	if (n < 0) {
		if (out[0] != '\0')
			abort();
		return n;
	}
	if ((size_t)n >= outlen || strlen(out) != (size_t)n)
		abort();
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spf_macro_env env = {
		.s = "strong-bad@email.example.com", .l = "strong-bad",
		.o = "email.example.com", .d = "email.example.com",
		.i = "192.0.2.3", .p = NULL, .v = "in-addr",
		.h = "mx.example.org", .c = "192.0.2.3", .r = NULL,
		.t = "1700000000",
	};
	const char **slot[] = { &env.s, &env.l, &env.o, &env.d, &env.i,
	    &env.p, &env.v, &env.h, &env.c, &env.r, &env.t };
	char err[256], *big0, *big1, small[FUZZ_OUT_SMALL];
	char *s, *line, *nl;
	size_t i;
	int n0, n1, ns;

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	big0 = malloc(FUZZ_OUT_BIG);
	big1 = malloc(FUZZ_OUT_BIG);
	if (big0 == NULL || big1 == NULL)
		abort();
	/* The first line is the text, the others are macro values. */
	if ((nl = strchr(s, '\n')) != NULL) {
		*nl = '\0';
		line = nl + 1;
		for (i = 0; i < sizeof(slot) / sizeof(*slot) && line != NULL;
		    i++) {
			*slot[i] = line;
			if ((nl = strchr(line, '\n')) != NULL)
				*nl++ = '\0';
			line = nl;
		}
	}

	err[0] = '\0';
	if (spf_record_check(s, err, sizeof(err)) == 0) {
		if (strncasecmp(s, "v=spf1", 6) != 0)
			abort();
	} else if (err[0] == '\0' || strnlen(err, sizeof(err)) ==
	    sizeof(err))
		abort();

	n0 = fuzz_expand(&env, s, 0, big0, FUZZ_OUT_BIG);
	n1 = fuzz_expand(&env, s, 1, big1, FUZZ_OUT_BIG);
	if (n0 >= 0 && (n1 != n0 || strcmp(big0, big1) != 0))
		abort();
	ns = fuzz_expand(&env, s, 1, small, sizeof(small));
	if (ns >= 0 && (ns != n1 || strcmp(small, big1) != 0))
		abort();
	if (ns < 0 && n1 >= 0 && (size_t)n1 < sizeof(small))
		abort();

	free(big0);
	free(big1);
	free(s);
	return 0;
}

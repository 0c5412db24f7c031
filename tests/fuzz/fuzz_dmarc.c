/*
 * fuzz_dmarc.c - libFuzzer target for dmarc_parse() and the name
 * functions of src/auth/dmarc.c.
 *
 * Arbitrary bytes as a DMARC record (an exact-size heap copy, so ASan sees
 * any read past it), then the bytes up to the first NUL or newline as a
 * domain name for dmarc_org_domain() and dmarc_aligned().  Must never
 * crash, read or write out of bounds, or return something insane: a
 * parsed record has values in range and bounded, NUL-terminated URIs; an
 * organizational domain is non-empty, a suffix of the (lowercased) name,
 * its own organizational domain, and aligned with the name.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/dmarc.h"

#define FUZZ_NAME_MAX	600

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_check_uris(const struct dmarc_uri *u, size_t n)
{
	size_t i, l;

	if (n > DMARC_MAX_URIS)
		abort();
	for (i = 0; i < n; i++) {
		l = strnlen(u[i].uri, sizeof(u[i].uri));
		if (l == 0 || l > DMARC_URI_MAX || strchr(u[i].uri, ':') == NULL)
			abort();
	}
}

static void
fuzz_record(const uint8_t *data, size_t size)
{
	struct dmarc_record r;
	char err[256], *copy = malloc(size ? size : 1);

	if (copy == NULL)
		return;
	if (size)
		memcpy(copy, data, size);
	if (dmarc_parse(copy, size, &r, err, sizeof(err)) == 0) {
		if (!dmarc_is_record(copy, size) || r.pct > 100 ||
		    r.p > DMARC_POLICY_REJECT || r.sp > DMARC_POLICY_REJECT ||
		    r.adkim > DMARC_ALIGN_STRICT ||
		    r.aspf > DMARC_ALIGN_STRICT || r.fo == 0 ||
		    (r.p_fallback && (r.nrua == 0 ||
		    r.p != DMARC_POLICY_NONE)))
			abort();
		fuzz_check_uris(r.rua, r.nrua);
		fuzz_check_uris(r.ruf, r.nruf);
	} else if (strnlen(err, sizeof(err)) == 0)
		abort();
	free(copy);
}

static void
fuzz_name(const uint8_t *data, size_t size)
{
	char name[FUZZ_NAME_MAX + 1], org[DMARC_DOMAIN_MAX * 4 + 1];
	char org2[sizeof(org)];
	size_t n = 0, ol;

	while (n < size && n < FUZZ_NAME_MAX && data[n] != '\0' &&
	    data[n] != '\n')
		n++;
	memcpy(name, data, n);
	name[n] = '\0';
	(void)dmarc_aligned(name, "example.com", DMARC_ALIGN_RELAXED);
	if (dmarc_org_domain(name, org, sizeof(org)) != 0) {
		if (org[0] != '\0')
			abort();
		return;
	}
	ol = strlen(org);
	if (ol == 0 || ol >= sizeof(org))
		abort();
	if (dmarc_org_domain(org, org2, sizeof(org2)) != 0 ||
	    strcmp(org, org2) != 0)
		abort();
	if (!dmarc_aligned(name, org, DMARC_ALIGN_RELAXED) ||
	    !dmarc_aligned(name, name, DMARC_ALIGN_STRICT))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_record(data, size);
	fuzz_name(data, size);
	return 0;
}

/*
 * sasl.h - decoding of SASL PLAIN (RFC 4616) and LOGIN exchanges carried
 * in base64 by SMTP AUTH (RFC 4954).  Pure and bounded; fuzzed by
 * tests/fuzz/fuzz_sasl.c.
 */
#ifndef OMBUD_SASL_H
#define OMBUD_SASL_H

#include <stddef.h>

#define SASL_USER_MAX	255
#define SASL_PASS_MAX	255

/*
 * PLAIN: base64 of authzid NUL authcid NUL passwd.  authzid must be empty
 * or equal to authcid.  Returns 0 and fills user/pass (NUL-terminated), or
 * -1 for bad base64, wrong structure, NULs or over-long fields.
 */
int sasl_plain_decode(const char *b64, char user[SASL_USER_MAX + 1],
    char pass[SASL_PASS_MAX + 1]);

/* One LOGIN step: base64 of a single field, no NULs. 0 or -1. */
int sasl_b64_field(const char *b64, char out[SASL_PASS_MAX + 1]);

/* Wipe a secret with sodium_memzero (never optimised away). */
void sasl_wipe(void *p, size_t n);

#endif

/*
 * dkim_keys.h - the life of a domain's DKIM keys: making a key record
 * for the store, and the rotation rules that move keys between pending,
 * active, retiring and retired as their DNS records are seen.
 *
 * What it does: pure functions over struct dkim_keyrec (store.h).  The
 * rotation rule: a key signs only after its record was seen in DNS (it is
 * pending until then); when a new key of an algorithm becomes active, the
 * active key it replaces keeps being published but stops signing
 * (retiring) for a grace period, so that receivers can still verify mail
 * signed before the switch; after the grace it is retired and its record
 * may be removed.
 *
 * What it must never do: activate a key whose record was not seen in
 * DNS, leave a domain with two active keys of one algorithm, or write a
 * private key anywhere but into the heap string it returns (which the
 * caller wipes).
 */
#ifndef OMBUD_DKIM_KEYS_H
#define OMBUD_DKIM_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/dkim.h"
#include "store/store.h"

#define DKIMKEYS_MAX_PER_DOMAIN	16	/* keys looked at per domain */

/* "rsa-sha256" / "ed25519-sha256" for a key type, and back (-1). */
const char *dkimkey_alg_name(enum dkim_keytype t);
int dkimkey_alg_parse(const char *s, enum dkim_keytype *out);

/*
 * A new pending key for domain: generated (bits: RSA only, 0 = 2048),
 * with its record and private PEM (heap, the caller clears k with
 * dkim_keyrec_clear).  selector may be NULL: "o" + YYYYMMDD + "r" or "e"
 * of now (UTC).  0, or -1 with err.
 */
int dkimkey_generate(const char *domain, enum dkim_keytype type,
    unsigned bits, const char *selector, int64_t now, struct dkim_keyrec *k,
    char *err, size_t errlen);

/* The p= value of a key record (without spaces) into out; false if the
 * record has no p= or it does not fit. */
bool dkimkey_record_p(const char *record, size_t len, char *out,
    size_t outlen);

/*
 * Does the TXT published at the key's selector match the key?  The same
 * k= (rsa default) and p= (whitespace ignored); v=DKIM1 if present.
 */
bool dkimkey_published_matches(const struct dkim_keyrec *k,
    const char *txt, size_t len);

/*
 * Apply the rotation rules to the keys of one domain, given which
 * records are published now (published[i] for keys[i]).  Changes state
 * and times in place; returns how many keys changed.  grace: seconds a
 * replaced key stays retiring.
 */
size_t dkimkey_rotate(struct dkim_keyrec *keys, size_t n,
    const bool *published, int64_t now, int64_t grace);

#endif

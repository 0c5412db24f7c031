/*
 * credentials.h - who may submit mail: SASL credential lookup behind a
 * small backend table (OpenSMTPD style), chosen by the scheme of a spec:
 *   "file:/path"   lines "user:$argon2id$..." ('#' comments, blank lines)
 * (issue 4 adds "store:" backed by the tenant database).
 *
 * Passwords are only ever stored as Argon2id hashes (libsodium
 * crypto_pwhash_str).  Verification is deliberately slow: call
 * credentials_check() from a worker thread, never the event loop.
 *
 * Must never: log or keep a clear-text password; tell a peer whether the
 * user or the password was wrong.
 */
#ifndef OMBUD_CREDENTIALS_H
#define OMBUD_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>

struct credentials;

/* Bounds shared with the SMTP AUTH decoder (SASL_USER_MAX/PASS_MAX). */
#define CREDENTIALS_USER_MAX	255
#define CREDENTIALS_PASS_MAX	255

struct credentials *credentials_open(const char *spec, char *err,
    size_t errlen);
void credentials_close(struct credentials *c);

/* 1 = valid, 0 = invalid (unknown user or wrong password), -1 = error.
 * Thread-safe: may be called from several workers at once.  Time taken is
 * about the same for unknown users and wrong passwords. */
int credentials_check(struct credentials *c, const char *user,
    const char *password);

/* The same check against a hash found elsewhere (the tenant database);
 * hash NULL (unknown user) or malformed verifies a dummy hash, taking the
 * same time, and gives 0.  Thread-safe. */
int credentials_verify_hash(const char *hash, const char *password);

/* Argon2id hash for a new password (interactive limits). 0 or -1
 * (empty or longer than CREDENTIALS_PASS_MAX, out too small). */
int credentials_hash(const char *password, char *out, size_t outlen);

/* A user name a credentials file may hold: 1 to CREDENTIALS_USER_MAX
 * bytes, none of them a control character, space, DEL or ':'. */
bool credentials_user_valid(const char *user);

#endif

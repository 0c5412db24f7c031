/*
 * secretbox.h - secrets at rest: a 32-byte key in a file of its own
 * (secret_key_file) and libsodium's crypto_secretbox (XSalsa20-Poly1305)
 * around each secret, as nonce || MAC || ciphertext.
 *
 * What it does: load a key file (exactly 32 raw bytes, a regular file
 * that neither group nor others may access), create one, seal and open
 * one secret.
 *
 * What it must never do: accept a key file others can read, return a
 * plaintext that failed authentication, or leave key or plaintext bytes
 * in memory it frees (sodium_memzero; callers wipe what they get with
 * free_secret and their key copies with secretbox_key_wipe).
 */
#ifndef OMBUD_SECRETBOX_H
#define OMBUD_SECRETBOX_H

#include <stddef.h>

#include "common/util.h"

#define SECRETBOX_KEY_BYTES	32
/* What seal adds to a plaintext: the nonce and the MAC. */
#define SECRETBOX_OVERHEAD	(24 + 16)

/* Read the key from path into key.  0, or -1 with a message naming path
 * (missing file, wrong size, not a regular file, group/other access:
 * "chmod 600 PATH").  key is wiped on failure. */
int secretbox_key_load(const char *path,
    unsigned char key[SECRETBOX_KEY_BYTES], char *err, size_t errlen);

/* Create path (it must not exist) with mode 0600 holding a new random
 * key, flushed to disk.  0, or -1 with a message naming path. */
int secretbox_key_generate(const char *path, char *err, size_t errlen);

/* Wipe a key held by the caller. */
void secretbox_key_wipe(unsigned char key[SECRETBOX_KEY_BYTES]);

/* Append nonce || crypto_secretbox_easy(plaintext) to out (len +
 * SECRETBOX_OVERHEAD bytes). */
void secretbox_seal(const unsigned char key[SECRETBOX_KEY_BYTES],
    const void *plaintext, size_t len, struct buf *out);

/* The plaintext of a sealed blob as a NUL-terminated heap string (its
 * length in *outlen when outlen is not NULL), for free_secret(); NULL if
 * the blob is too short, was made with another key or was altered.
 * free_secret wipes up to the first NUL: a caller that may get one inside
 * wipes *outlen bytes itself. */
char *secretbox_open(const unsigned char key[SECRETBOX_KEY_BYTES],
    const void *sealed, size_t len, size_t *outlen);

#endif

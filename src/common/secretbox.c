/*
 * secretbox.c - the secret key file and crypto_secretbox around single
 * secrets (see secretbox.h).
 *
 * Must never: read a key file that group or others may access, accept a
 * file of any other size than the key's, hand out a plaintext whose MAC
 * did not verify, or free key or plaintext bytes without wiping them.
 */
#include "common/secretbox.h"
#include "common/log.h"
#include "common/util.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

_Static_assert(SECRETBOX_KEY_BYTES == crypto_secretbox_KEYBYTES,
    "secretbox key size");
_Static_assert(SECRETBOX_OVERHEAD == crypto_secretbox_NONCEBYTES +
    crypto_secretbox_MACBYTES, "secretbox overhead");

/* libsodium's own initialisation is thread-safe and idempotent. */
static void
secretbox_init(void)
{
	if (sodium_init() < 0)
		fatalx("secretbox: libsodium cannot be initialised");
}

void
secretbox_key_wipe(unsigned char key[SECRETBOX_KEY_BYTES])
{
	sodium_memzero(key, SECRETBOX_KEY_BYTES);
}

int
secretbox_key_load(const char *path, unsigned char key[SECRETBOX_KEY_BYTES],
    char *err, size_t errlen)
{
	/* One byte more than a key, to notice a longer file. */
	unsigned char tmp[SECRETBOX_KEY_BYTES + 1];
	struct stat sb;
	size_t got = 0;
	ssize_t r;
	int fd = -1, rc = -1;

	secretbox_init();
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		snprintf(err, errlen, "secret key file %s: %s", path,
		    strerror(errno));
		goto fail;
	}
	if (fstat(fd, &sb) != 0) {
		snprintf(err, errlen, "secret key file %s: %s", path,
		    strerror(errno));
		goto fail;
	}
	if (!S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "secret key file %s: not a regular file",
		    path);
		goto fail;
	}
	if ((sb.st_mode & 077) != 0) {
		snprintf(err, errlen, "secret key file %s: mode %03o lets "
		    "group or others access it; refusing (chmod 600 %s)",
		    path, (unsigned)(sb.st_mode & 0777), path);
		goto fail;
	}
	while (got < sizeof(tmp)) {
		r = read(fd, tmp + got, sizeof(tmp) - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "secret key file %s: %s", path,
			    strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	if (got != SECRETBOX_KEY_BYTES) {
		snprintf(err, errlen, "secret key file %s: must hold exactly "
		    "%d raw bytes, not %s%zu (make one with 'ombud "
		    "secret-key generate')", path, SECRETBOX_KEY_BYTES,
		    got > SECRETBOX_KEY_BYTES ? "more than " : "",
		    got > SECRETBOX_KEY_BYTES ? (size_t)SECRETBOX_KEY_BYTES :
		    got);
		goto fail;
	}
	memcpy(key, tmp, SECRETBOX_KEY_BYTES);
	rc = 0;
fail:
	sodium_memzero(tmp, sizeof(tmp));
	if (rc != 0)
		secretbox_key_wipe(key);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* fsync the directory holding path, so that the new entry is durable. */
static int
secretbox_sync_dir(const char *path)
{
	char *copy = xstrdup(path);
	int fd, rc = -1;

	if ((fd = open(dirname(copy), O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) < 0)
		goto fail;
	if (fsync(fd) != 0)
		goto fail;
	rc = 0;
fail:
	if (fd >= 0)
		close(fd);
	free(copy);
	return rc;
}

int
secretbox_key_generate(const char *path, char *err, size_t errlen)
{
	unsigned char key[SECRETBOX_KEY_BYTES];
	bool created = false;
	int fd = -1, rc = -1;

	secretbox_init();
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW |
	    O_NOCTTY, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "secret key file %s: %s%s", path,
		    strerror(errno), errno == EEXIST ?
		    " (a key is never overwritten: the secrets sealed with it "
		    "would be lost)" : "");
		goto fail;
	}
	created = true;
	/* The umask may only have narrowed 0600; make sure of it. */
	if (fchmod(fd, 0600) != 0) {
		snprintf(err, errlen, "secret key file %s: %s", path,
		    strerror(errno));
		goto fail;
	}
	randombytes_buf(key, sizeof(key));
	if (write_all(fd, key, sizeof(key)) != 0 || fsync(fd) != 0) {
		snprintf(err, errlen, "secret key file %s: %s", path,
		    strerror(errno));
		goto fail;
	}
	if (close(fd) != 0) {
		fd = -1;
		snprintf(err, errlen, "secret key file %s: %s", path,
		    strerror(errno));
		goto fail;
	}
	fd = -1;
	if (secretbox_sync_dir(path) != 0) {
		snprintf(err, errlen, "secret key file %s: directory: %s",
		    path, strerror(errno));
		goto fail;
	}
	rc = 0;
fail:
	sodium_memzero(key, sizeof(key));
	if (fd >= 0)
		close(fd);
	if (rc != 0 && created)
		unlink(path);
	return rc;
}

void
secretbox_seal(const unsigned char key[SECRETBOX_KEY_BYTES],
    const void *plaintext, size_t len, struct buf *out)
{
	unsigned char *p;

	secretbox_init();
	if (len > SIZE_MAX / 2)
		fatalx("secretbox_seal: %zu bytes", len);
	buf_reserve(out, len + SECRETBOX_OVERHEAD);
	p = (unsigned char *)out->data + out->len;
	randombytes_buf(p, crypto_secretbox_NONCEBYTES);
	if (crypto_secretbox_easy(p + crypto_secretbox_NONCEBYTES, plaintext,
	    len, p, key) != 0)
		fatalx("secretbox_seal: crypto_secretbox_easy failed");
	out->len += len + SECRETBOX_OVERHEAD;
	out->data[out->len] = '\0';
}

char *
secretbox_open(const unsigned char key[SECRETBOX_KEY_BYTES],
    const void *sealed, size_t len, size_t *outlen)
{
	const unsigned char *s = sealed;
	size_t n;
	char *pt;

	secretbox_init();
	if (sealed == NULL || len < SECRETBOX_OVERHEAD)
		return NULL;
	n = len - SECRETBOX_OVERHEAD;
	pt = xmalloc(n + 1);
	if (crypto_secretbox_open_easy((unsigned char *)pt,
	    s + crypto_secretbox_NONCEBYTES, len - crypto_secretbox_NONCEBYTES,
	    s, key) != 0) {
		sodium_memzero(pt, n + 1);
		free(pt);
		return NULL;
	}
	pt[n] = '\0';
	if (outlen != NULL)
		*outlen = n;
	return pt;
}

/*
 * test_secretbox.c - the secret key file (generated with mode 0600 and
 * never overwritten; refused when group or others may access it, when it
 * has another size than 32 bytes, when it is not a regular file) and
 * seal/open (round trip, a fresh nonce each time, wrong key, altered or
 * short blobs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/secretbox.h"
#include "common/util.h"
#include "tmpdir.h"

static int nfiles;

static void
new_path(char *path, size_t len)
{
	snprintf(path, len, "%s/k%d", dir, nfiles++);
}

/* A file holding n bytes of 'k' with the given mode. */
static void
write_file(const char *path, size_t n, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(fputc('k', f), 'k');
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void
test_generate_and_load(void **state)
{
	unsigned char key[SECRETBOX_KEY_BYTES], again[SECRETBOX_KEY_BYTES];
	char path[128], err[512];
	struct stat sb;

	(void)state;
	new_path(path, sizeof(path));
	assert_int_equal(secretbox_key_generate(path, err, sizeof(err)), 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(sb.st_size, SECRETBOX_KEY_BYTES);
	assert_int_equal(secretbox_key_load(path, key, err, sizeof(err)), 0);
	assert_int_equal(secretbox_key_load(path, again, err, sizeof(err)), 0);
	assert_memory_equal(key, again, sizeof(key));

	/* Never overwritten: the secrets sealed with it would be lost. */
	assert_int_equal(secretbox_key_generate(path, err, sizeof(err)), -1);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "never overwritten"));
	assert_int_equal(secretbox_key_load(path, again, err, sizeof(err)), 0);
	assert_memory_equal(key, again, sizeof(key));
	secretbox_key_wipe(key);
	secretbox_key_wipe(again);
}

static void
test_load_refused(void **state)
{
	unsigned char key[SECRETBOX_KEY_BYTES];
	char path[128], err[512];

	(void)state;
	/* Group or other access. */
	for (size_t i = 0; i < 3; i++) {
		static const mode_t modes[] = { 0644, 0640, 0602 };
		new_path(path, sizeof(path));
		write_file(path, SECRETBOX_KEY_BYTES, modes[i]);
		memset(key, 0xaa, sizeof(key));
		assert_int_equal(secretbox_key_load(path, key, err,
		    sizeof(err)), -1);
		assert_non_null(strstr(err, path));
		assert_non_null(strstr(err, "chmod 600"));
		for (size_t k = 0; k < sizeof(key); k++)
			assert_int_equal(key[k], 0);	/* wiped */
	}
	/* Mode 0400 is fine. */
	new_path(path, sizeof(path));
	write_file(path, SECRETBOX_KEY_BYTES, 0400);
	assert_int_equal(secretbox_key_load(path, key, err, sizeof(err)), 0);

	/* Wrong sizes. */
	for (size_t i = 0; i < 4; i++) {
		static const size_t sizes[] = { 0, 31, 33, 64 };
		new_path(path, sizeof(path));
		write_file(path, sizes[i], 0600);
		assert_int_equal(secretbox_key_load(path, key, err,
		    sizeof(err)), -1);
		assert_non_null(strstr(err, "exactly 32"));
	}
	/* Missing, a directory. */
	new_path(path, sizeof(path));
	assert_int_equal(secretbox_key_load(path, key, err, sizeof(err)), -1);
	assert_non_null(strstr(err, path));
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(secretbox_key_load(path, key, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a regular file"));
	/* Generating into a missing directory fails and leaves nothing. */
	snprintf(path, sizeof(path), "%s/nodir/key", dir);
	assert_int_equal(secretbox_key_generate(path, err, sizeof(err)), -1);
	assert_non_null(strstr(err, path));
}

static void
test_seal_open(void **state)
{
	unsigned char key[SECRETBOX_KEY_BYTES], other[SECRETBOX_KEY_BYTES];
	const char *msg = "Sekret-XYZ-123";
	struct buf a, b;
	size_t n = 0;
	char *pt;

	(void)state;
	memset(key, 1, sizeof(key));
	memset(other, 2, sizeof(other));
	buf_init(&a);
	buf_init(&b);
	secretbox_seal(key, msg, strlen(msg), &a);
	secretbox_seal(key, msg, strlen(msg), &b);
	assert_int_equal(a.len, strlen(msg) + SECRETBOX_OVERHEAD);
	/* A fresh nonce each time; no plaintext in the blob. */
	assert_memory_not_equal(a.data, b.data, a.len);
	assert_null(memmem(a.data, a.len, msg, strlen(msg)));

	pt = secretbox_open(key, a.data, a.len, &n);
	assert_non_null(pt);
	assert_int_equal(n, strlen(msg));
	assert_string_equal(pt, msg);
	free_secret(pt);

	assert_null(secretbox_open(other, a.data, a.len, NULL));
	for (size_t i = 0; i < a.len; i += 7) {
		a.data[i] ^= 0x01;
		assert_null(secretbox_open(key, a.data, a.len, NULL));
		a.data[i] ^= 0x01;
	}
	assert_null(secretbox_open(key, a.data, a.len - 1, NULL));
	assert_null(secretbox_open(key, a.data, SECRETBOX_OVERHEAD - 1,
	    NULL));
	assert_null(secretbox_open(key, NULL, 0, NULL));

	/* Empty plaintext, and a blob appended after other data. */
	buf_reset(&b);
	buf_adds(&b, "xyz");
	secretbox_seal(key, "", 0, &b);
	assert_int_equal(b.len, 3 + SECRETBOX_OVERHEAD);
	pt = secretbox_open(key, b.data + 3, b.len - 3, &n);
	assert_non_null(pt);
	assert_int_equal(n, 0);
	assert_string_equal(pt, "");
	free_secret(pt);
	buf_free(&a);
	buf_free(&b);
}

static int
setup(void **state)
{
	(void)state;
	return tmpdir_make();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generate_and_load),
		cmocka_unit_test(test_load_refused),
		cmocka_unit_test(test_seal_open),
	};

	return cmocka_run_group_tests(tests, setup, tmpdir_remove);
}

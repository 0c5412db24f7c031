/*
 * test_credentials.c - the file: backend and Argon2id checks: hashing,
 * valid and wrong passwords, unknown users (verified against the dummy
 * hash, so not much faster), comments, blank lines, CRLF, malformed files
 * named by line, bad specs, concurrent checks.  Hashing is slow: the whole
 * file makes about twenty Argon2id computations.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/stat.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "table/credentials.h"

#define PASSWORD	"correct horse battery staple"

static char dir[] = "/tmp/ombud-test-cred-XXXXXX";
static char hash[128];
static int nfiles;

/* Write len bytes into a new file of dir; its spec into spec. */
static void
write_file(const char *text, size_t len, char *spec, size_t speclen)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/f%d", dir, nfiles++);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, 0600), 0);
	snprintf(spec, speclen, "file:%s", path);
}

/* A file of tmpl with every %H replaced by the test hash, opened. */
static struct credentials *
open_text(const char *tmpl, char *err, size_t errlen)
{
	char text[8192], spec[160];
	size_t n = 0;

	for (const char *p = tmpl; *p; p++) {
		if (p[0] == '%' && p[1] == 'H') {
			size_t hl = strlen(hash);
			assert_true(n + hl < sizeof(text));
			memcpy(text + n, hash, hl);
			n += hl;
			p++;
			continue;
		}
		assert_true(n + 1 < sizeof(text));
		text[n++] = *p;
	}
	write_file(text, n, spec, sizeof(spec));
	err[0] = '\0';
	return credentials_open(spec, err, errlen);
}

static int
setup(void **state)
{
	if (mkdtemp(dir) == NULL)
		return -1;
	if (credentials_hash(PASSWORD, hash, sizeof(hash)) != 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	char path[128];

	for (int i = 0; i < nfiles; i++) {
		snprintf(path, sizeof(path), "%s/f%d", dir, i);
		unlink(path);
	}
	rmdir(dir);
	return 0;
}

static void
test_hash(void **state)
{
	char small[64], big[300];

	assert_int_equal(strncmp(hash, "$argon2id$v=19$m=65536,t=2,p=1$",
	    31), 0);
	assert_int_equal(credentials_hash("", big, sizeof(big)), -1);
	memset(big, 'a', 256);
	big[256] = '\0';
	assert_int_equal(credentials_hash(big, small, sizeof(small)), -1);
	big[255] = '\0';
	/* Fits no 64-byte buffer. */
	assert_int_equal(credentials_hash(big, small, sizeof(small)), -1);
	assert_int_equal(small[0], '\0');
}

static void
test_check(void **state)
{
	char err[512], longpw[300];
	struct credentials *c = open_text(
	    "# ombud credentials\r\n"
	    "\r\n"
	    "alice:%H\r\n"
	    "   # an indented comment\n"
	    " \t \n"
	    "bob:%H  \t\n"
	    "carol@example.com:%H", err, sizeof(err));

	if (c == NULL)
		fail_msg("open: %s", err);
	assert_int_equal(credentials_check(c, "alice", PASSWORD), 1);
	assert_int_equal(credentials_check(c, "bob", "Correct horse battery "
	    "staple"), 0);
	assert_int_equal(credentials_check(c, "carol@example.com", PASSWORD),
	    1);
	assert_int_equal(credentials_check(c, "mallory", PASSWORD), 0);
	assert_int_equal(credentials_check(c, "Alice", PASSWORD), 0);
	assert_int_equal(credentials_check(c, "alice", ""), 0);
	assert_int_equal(credentials_check(c, "al ice", PASSWORD), 0);
	memset(longpw, 'x', sizeof(longpw) - 1);
	longpw[sizeof(longpw) - 1] = '\0';
	assert_int_equal(credentials_check(c, "alice", longpw), 0);
	credentials_close(c);
}

static double
check_seconds(struct credentials *c, const char *user, const char *pw)
{
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	assert_int_equal(credentials_check(c, user, pw), 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (double)(b.tv_sec - a.tv_sec) +
	    (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

/* An unknown user costs a full verification too (loose bound: a missing
 * dummy verification would be thousands of times faster). */
static void
test_unknown_user_timing(void **state)
{
	char err[512];
	struct credentials *c = open_text("alice:%H\n", err, sizeof(err));
	double wrong = 0, unknown = 0;

	assert_non_null(c);
	for (int i = 0; i < 2; i++) {
		wrong += check_seconds(c, "alice", "wrong");
		unknown += check_seconds(c, "nobody", "wrong");
	}
	if (unknown < wrong * 0.3)
		fail_msg("unknown user %.4fs, wrong password %.4fs", unknown,
		    wrong);
	credentials_close(c);
}

static void
test_empty(void **state)
{
	char err[512];
	struct credentials *c = open_text("# nobody yet\n\n", err,
	    sizeof(err));

	assert_non_null(c);
	assert_int_equal(credentials_check(c, "alice", PASSWORD), 0);
	credentials_close(c);
	c = open_text("", err, sizeof(err));
	assert_non_null(c);
	credentials_close(c);
}

static const struct {
	const char	*text;
	const char	*err;		/* NULL: opens */
} files[] = {
	{ "alice\n", ":1: expected user:hash" },
	{ "# c\n\nalice:%H\nbob\n", ":4: expected user:hash" },
	{ ":%H\n", ":1: bad user name" },
	{ "al ice:%H\n", ":1: bad user name" },
	{ "ali\x01" "ce:%H\n", ":1: bad user name" },
	{ "ali\x7f" "ce:%H\n", ":1: bad user name" },
	{ "alice:\n", ":1: user 'alice': not an $argon2id$v=19$ hash" },
	{ "alice:secret\n", "not an $argon2id$v=19$ hash" },
	{ "alice:$argon2i$v=19$m=65536,t=2,p=1$c2FsdHNhbHQ$aGFzaA\n",
	  ":1: user 'alice': not an $argon2id$v=19$ hash" },
	{ "alice:$argon2id$v=16$m=65536,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaA\n",
	  "not an $argon2id$v=19$ hash" },
	/* Costs that would make every check allocate 4 GiB or loop. */
	{ "alice:$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaA\n",
	  ":1: user 'alice': hash cost missing or too high" },
	{ "alice:$argon2id$v=19$m=65536,t=1000,p=1$c2FsdHNhbHQ$aGFzaA\n",
	  "hash cost missing or too high" },
	{ "alice:$argon2id$v=19$m=65536,t=2,p=4$c2FsdHNhbHQ$aGFzaA\n",
	  "hash cost missing or too high" },
	{ "alice:$argon2id$v=19$m=065536,t=2,p=1$c2FsdHNhbHQ$aGFzaA\n",
	  "hash cost missing or too high" },
	{ "alice:$argon2id$v=19$m=99999999999999999999999,t=2,p=1$x$y\n",
	  "hash cost missing or too high" },
	{ "alice:$argon2id$v=19$m=65536,t=2$c2FsdHNhbHQ$aGFzaA\n",
	  "hash cost missing or too high" },
	{ "alice:$argon2id$v=19$m=65536,t=2,p=1$!!!$!!!\n",
	  ":1: user 'alice': malformed hash" },
	{ "alice:%Hx\n", ":1: user 'alice': malformed hash" },
	{ "alice:%H\r\r\n", ":1: user 'alice': malformed hash" },
	{ "alice:%H:more\n", "malformed hash" },
	{ "alice:$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$"
	  "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI\n", "malformed hash" },
	{ "alice:$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHRzYWx0$"
	  "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI\n", NULL },
	{ "alice:%H\nbob:%H\nalice:%H\n",
	  ":3: duplicate user 'alice' (first on line 1)" },
	/* The earliest repeated line is named, whatever the sort did. */
	{ "a:%H\nb:%H\nb:%H\na:%H\na:%H\n",
	  ":3: duplicate user 'b' (first on line 2)" },
	{ "z:%H\ny:%H\nx:%H\nx:%H\ny:%H\nz:%H\n",
	  ":4: duplicate user 'x' (first on line 3)" },
	{ "alice:%H\nbob:%H\nBob:%H\n", NULL },
};

static void
test_malformed(void **state)
{
	char err[512];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct credentials *c = open_text(files[i].text, err,
		    sizeof(err));
		if (files[i].err == NULL) {
			if (c == NULL)
				fail_msg("file %zu: %s", i, err);
			credentials_close(c);
			continue;
		}
		if (c != NULL) {
			credentials_close(c);
			fail_msg("file %zu opened", i);
		}
		if (strstr(err, files[i].err) == NULL)
			fail_msg("file %zu: '%s' lacks '%s'", i, err,
			    files[i].err);
		/* Errors start with the file name. */
		assert_int_equal(strncmp(err, dir, strlen(dir)), 0);
	}
}

static void
test_bounds(void **state)
{
	char err[512], text[2048], user[300], spec[160];
	struct credentials *c;
	size_t n;

	/* 255-byte user names are fine, 256 are not. */
	memset(user, 'u', 255);
	user[255] = '\0';
	snprintf(text, sizeof(text), "%s:%%H\n", user);
	c = open_text(text, err, sizeof(err));
	if (c == NULL)
		fail_msg("%s", err);
	credentials_close(c);
	snprintf(text, sizeof(text), "u%s:%%H\n", user);
	assert_null(open_text(text, err, sizeof(err)));
	assert_non_null(strstr(err, ":1: bad user name"));

	/* Lines are bounded even when they are comments. */
	n = (size_t)snprintf(text, sizeof(text), "# ok\n#");
	memset(text + n, 'c', 1100);
	strcpy(text + n + 1100, "\n");
	assert_null(open_text(text, err, sizeof(err)));
	assert_non_null(strstr(err, ":2: line longer than 1024 bytes"));

	/* A NUL byte does not cut a line short unnoticed. */
	write_file("alice:x\nbo\0b:x\n", 15, spec, sizeof(spec));
	assert_null(credentials_open(spec, err, sizeof(err)));
	assert_non_null(strstr(err, ":1: user 'alice'"));
	write_file("# a\nbo\0b:x\n", 11, spec, sizeof(spec));
	assert_null(credentials_open(spec, err, sizeof(err)));
	assert_non_null(strstr(err, ":2: NUL byte"));
}

static void
test_specs(void **state)
{
	char err[512], spec[160];

	assert_null(credentials_open("ldap://x", err, sizeof(err)));
	assert_non_null(strstr(err, "unknown credentials scheme 'ldap'"));
	assert_null(credentials_open("/etc/ombud/passwd", err, sizeof(err)));
	assert_non_null(strstr(err, "no scheme"));
	assert_null(credentials_open("file:", err, sizeof(err)));
	assert_non_null(strstr(err, "no file name"));
	assert_null(credentials_open(NULL, err, sizeof(err)));
	snprintf(spec, sizeof(spec), "file:%s/missing", dir);
	assert_null(credentials_open(spec, err, sizeof(err)));
	assert_non_null(strstr(err, "No such file or directory"));
	snprintf(spec, sizeof(spec), "file:%s", dir);
	assert_null(credentials_open(spec, err, sizeof(err)));
	assert_non_null(strstr(err, "not a regular file"));
	/* A short err buffer is still a terminated string. */
	assert_null(credentials_open("file:", err, 8));
	assert_int_equal(strlen(err), 7);
}

struct thr {
	struct credentials	*c;
	const char		*pw;
	int			 rc;
};

static void *
thr_check(void *arg)
{
	struct thr *t = arg;

	t->rc = credentials_check(t->c, "alice", t->pw);
	return NULL;
}

static void
test_threads(void **state)
{
	char err[512];
	struct credentials *c = open_text("bob:%H\nalice:%H\n", err,
	    sizeof(err));
	struct thr t[4];
	pthread_t th[4];

	assert_non_null(c);
	for (int i = 0; i < 4; i++) {
		t[i].c = c;
		t[i].pw = i == 2 ? "wrong" : PASSWORD;
		assert_int_equal(pthread_create(&th[i], NULL, thr_check,
		    &t[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(t[i].rc, i == 2 ? 0 : 1);
	}
	credentials_close(c);
}

static void
test_user_valid(void **state)
{
	assert_true(credentials_user_valid("alice"));
	assert_true(credentials_user_valid("alice@example.com"));
	assert_true(credentials_user_valid("\xc3\xa9lise"));
	assert_false(credentials_user_valid(""));
	assert_false(credentials_user_valid(NULL));
	assert_false(credentials_user_valid("a:b"));
	assert_false(credentials_user_valid("a b"));
	assert_false(credentials_user_valid("a\tb"));
	assert_false(credentials_user_valid("a\r"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hash),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_unknown_user_timing),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_specs),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_user_valid),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

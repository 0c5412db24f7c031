/*
 * dkim_tool.c - a test helper around ombud's DKIM signer, for the
 * black-box tests that check its signatures with other verifiers
 * (test_dkim_tools.py):
 *
 *   dkim_tool keygen rsa|ed25519 KEYFILE   write a PEM key, print its
 *                                           key record (v=DKIM1; ...)
 *   dkim_tool txt KEYFILE                   print the key record of a key
 *   dkim_tool sign KEYFILE DOMAIN SELECTOR ALGORITHM HCANON/BCANON
 *                                           sign stdin (taken as it is);
 *                                           print the signed message
 *
 * Verifying is `ombud dkim verify`'s job (cli_dkim_verify.c).
 *
 * Must never: be installed or used outside the tests; alter the message
 * it signs (the signature field is put in front of the bytes read).
 */
#include "auth/dkim.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define TOOL_IN_MAX	(64u << 20)

static int
tool_read_fd(int fd, struct buf *b)
{
	char chunk[65536];
	ssize_t n;

	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		buf_add(b, chunk, (size_t)n);
		if (b->len > TOOL_IN_MAX)
			goto fail;
	}
	if (n == 0)
		return 0;
fail:
	return -1;
}

static struct dkim_key *
tool_load_key(const char *path)
{
	struct dkim_key *key = NULL;
	struct buf pem;
	char err[256];
	int fd;

	buf_init(&pem);
	if ((fd = open(path, O_RDONLY)) == -1 || tool_read_fd(fd, &pem)) {
		fprintf(stderr, "dkim_tool: %s: %s\n", path, strerror(errno));
		goto fail;
	}
	if ((key = dkim_key_load_pem(pem.data, pem.len, err, sizeof(err)))
	    == NULL)
		fprintf(stderr, "dkim_tool: %s: %s\n", path, err);
fail:
	if (fd != -1)
		close(fd);
	buf_free(&pem);
	return key;
}

static int
tool_print_txt(const struct dkim_key *key)
{
	struct buf txt;
	int rc;

	buf_init(&txt);
	if ((rc = dkim_key_txt(key, &txt)) == 0)
		printf("%s\n", txt.data);
	buf_free(&txt);
	return rc == 0 ? 0 : 1;
}

static int
tool_keygen(const char *type, const char *path)
{
	struct dkim_key *key;
	struct buf pem;
	char err[256];
	int fd = -1, rc = 1;

	buf_init(&pem);
	key = dkim_keygen(strcmp(type, "ed25519") == 0 ? DKIM_KEY_ED25519 :
	    DKIM_KEY_RSA, 0, err, sizeof(err));
	if (key == NULL) {
		fprintf(stderr, "dkim_tool: keygen: %s\n", err);
		goto fail;
	}
	if (dkim_key_pem(key, &pem) != 0 ||
	    (fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1 ||
	    write_all(fd, pem.data, pem.len) != 0) {
		fprintf(stderr, "dkim_tool: %s: cannot write\n", path);
		goto fail;
	}
	rc = tool_print_txt(key);
fail:
	if (fd != -1)
		close(fd);
	dkim_key_free(key);
	buf_free(&pem);
	return rc;
}

static int
tool_canon(const char *s, enum dkim_canon *out)
{
	if (strcmp(s, "relaxed") == 0)
		*out = DKIM_CANON_RELAXED;
	else if (strcmp(s, "simple") == 0)
		*out = DKIM_CANON_SIMPLE;
	else
		return -1;
	return 0;
}

static int
tool_sign(char **argv)
{
	struct dkim_sign_opts opts = { .hmode = DKIM_H_OVERSIGN };
	struct dkim_key *key = NULL;
	struct buf msg, sig;
	char err[256], hc[16], *slash;
	const char *alg;
	int rc = 1;

	buf_init(&msg);
	buf_init(&sig);
	if ((slash = strchr(argv[4], '/')) == NULL ||
	    (size_t)(slash - argv[4]) >= sizeof(hc)) {
		fprintf(stderr, "dkim_tool: canon is HCANON/BCANON\n");
		goto fail;
	}
	memcpy(hc, argv[4], (size_t)(slash - argv[4]));
	hc[slash - argv[4]] = '\0';
	if (tool_canon(hc, &opts.hcanon) || tool_canon(slash + 1,
	    &opts.bcanon)) {
		fprintf(stderr, "dkim_tool: canon: relaxed or simple\n");
		goto fail;
	}
	if ((key = tool_load_key(argv[0])) == NULL)
		goto fail;
	alg = dkim_key_type(key) == DKIM_KEY_ED25519 ? "ed25519-sha256" :
	    "rsa-sha256";
	if (strcmp(alg, argv[3]) != 0) {
		fprintf(stderr, "dkim_tool: the key is for %s\n", alg);
		goto fail;
	}
	if (tool_read_fd(STDIN_FILENO, &msg) != 0) {
		fprintf(stderr, "dkim_tool: stdin unreadable or too large\n");
		goto fail;
	}
	if (dkim_sign(key, argv[1], argv[2], NULL, time(NULL), &opts,
	    msg.data, msg.len, &sig, err, sizeof(err)) != 0) {
		fprintf(stderr, "dkim_tool: sign: %s\n", err);
		goto fail;
	}
	if (write_all(STDOUT_FILENO, sig.data, sig.len) != 0 ||
	    write_all(STDOUT_FILENO, msg.data, msg.len) != 0)
		goto fail;
	rc = 0;
fail:
	dkim_key_free(key);
	buf_free(&msg);
	buf_free(&sig);
	return rc;
}

int
main(int argc, char **argv)
{
	struct dkim_key *key;
	int rc;

	if (argc == 4 && strcmp(argv[1], "keygen") == 0)
		return tool_keygen(argv[2], argv[3]);
	if (argc == 3 && strcmp(argv[1], "txt") == 0) {
		if ((key = tool_load_key(argv[2])) == NULL)
			return 1;
		rc = tool_print_txt(key);
		dkim_key_free(key);
		return rc;
	}
	if (argc == 7 && strcmp(argv[1], "sign") == 0)
		return tool_sign(argv + 2);
	fprintf(stderr, "usage: dkim_tool keygen rsa|ed25519 KEYFILE\n"
	    "       dkim_tool txt KEYFILE\n"
	    "       dkim_tool sign KEYFILE DOMAIN SELECTOR ALGORITHM "
	    "HCANON/BCANON < msg\n");
	return 2;
}

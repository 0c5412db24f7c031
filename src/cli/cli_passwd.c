/*
 * cli_passwd.c - `ombud passwd [USER]`: read a password from the first
 * line of stdin (without echo and with a prompt on a terminal), print
 * "USER:$argon2id$..." (or only the hash without USER) on stdout, ready
 * to append to a credentials file.
 *
 * Must never: print, log or leave in memory the clear-text password;
 * accept a password or user name the server could not use (empty, too
 * long, NUL byte, user name with ':' or a space).
 */
#include "cli/cli.h"
#include "table/credentials.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

static int
passwd_usage(void)
{
	fprintf(stderr, "usage: ombud passwd [USER] < password\n");
	return 2;
}

/*
 * First line of f into pw[CREDENTIALS_PASS_MAX + 1], without "\n" or
 * "\r\n".  0, or -1 with a message on stderr.
 */
static int
passwd_read(FILE *f, char *pw)
{
	size_t n = 0;
	int ch, rc = -1;

	while ((ch = getc(f)) != EOF && ch != '\n') {
		if (n == CREDENTIALS_PASS_MAX + 1) {
			fprintf(stderr, "ombud passwd: password longer than "
			    "%d bytes\n", CREDENTIALS_PASS_MAX);
			goto fail;
		}
		pw[n++] = (char)ch;
	}
	if (ferror(f)) {
		fprintf(stderr, "ombud passwd: stdin: %s\n", strerror(errno));
		goto fail;
	}
	if (n > 0 && pw[n - 1] == '\r')
		n--;
	if (n > CREDENTIALS_PASS_MAX) {
		fprintf(stderr, "ombud passwd: password longer than %d bytes\n",
		    CREDENTIALS_PASS_MAX);
		goto fail;
	}
	if (memchr(pw, '\0', n) != NULL) {
		fprintf(stderr, "ombud passwd: NUL byte in the password\n");
		goto fail;
	}
	if (n == 0) {
		fprintf(stderr, "ombud passwd: empty password\n");
		goto fail;
	}
	pw[n] = '\0';
	rc = 0;
fail:
	return rc;
}

int
cli_passwd(int argc, char **argv)
{
	/* One more byte than a password to tell "too long" from "\r". */
	char pw[CREDENTIALS_PASS_MAX + 2];
	char hash[crypto_pwhash_STRBYTES];
	struct termios saved, noecho;
	const char *user = NULL;
	bool tty = false;
	int rc = 1;

	(void)cli_config_path(&argc, argv);
	if (argc > 1 && (strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "--help") == 0)) {
		printf("usage: ombud passwd [USER] < password\n");
		return 0;
	}
	if (argc > 2 || (argc == 2 && argv[1][0] == '-'))
		return passwd_usage();
	if (argc == 2) {
		user = argv[1];
		if (!credentials_user_valid(user)) {
			fprintf(stderr, "ombud passwd: bad user name (1 to %d "
			    "bytes, no space, control character or ':')\n",
			    CREDENTIALS_USER_MAX);
			return 1;
		}
	}
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
		noecho = saved;
		noecho.c_lflag &= ~(tcflag_t)ECHO;
		tty = tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho) == 0;
		fprintf(stderr, "Password: ");
	}
	/* No stdio buffer of ours keeps a copy of the password. */
	setvbuf(stdin, NULL, _IONBF, 0);
	if (passwd_read(stdin, pw) != 0)
		goto fail;
	if (tty) {
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
		tty = false;
		fprintf(stderr, "\n");
	}
	if (credentials_hash(pw, hash, sizeof(hash)) != 0) {
		fprintf(stderr, "ombud passwd: cannot hash the password\n");
		goto fail;
	}
	if (user)
		printf("%s:%s\n", user, hash);
	else
		printf("%s\n", hash);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "ombud passwd: stdout: %s\n", strerror(errno));
		goto fail;
	}
	rc = 0;
fail:
	if (tty)
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
	sodium_memzero(pw, sizeof(pw));
	return rc;
}

/*
 * fuzz_smtp_command.c - libFuzzer target for the SMTP command parsers.
 *
 * Runs smtp_parse_command on the input, then smtp_parse_mail,
 * smtp_parse_rcpt and smtp_parse_helo on its argument (or on the whole
 * input when it is not a command), and checks with abort() what the
 * contract promises: replies are well-formed, outputs are bounded and
 * NUL-terminated, an accepted path parses again to the same address.
 *
 * Must never: keep state between inputs or read past the copy it makes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_check_reply(const char *r)
{
	if (r == NULL)
		return;
	if (r[0] < '4' || r[0] > '5' || r[1] < '0' || r[1] > '9' ||
	    r[2] < '0' || r[2] > '9' || r[3] != ' ' || r[4] != r[0] ||
	    r[5] != '.' || strlen(r) > 200 || strpbrk(r, "\r\n") != NULL)
		abort();
}

static void
fuzz_check_path(const struct smtp_path *p, bool rcpt)
{
	size_t n = strnlen(p->addr, sizeof(p->addr));

	if (n >= sizeof(p->addr) || n > SMTP_PATH_MAX - 2)
		abort();
	if (n == 0) {
		if (rcpt || p->at != 0 || p->utf8)
			abort();
		return;
	}
	if (p->at == 0) {
		/* only RCPT <Postmaster> has no domain */
		if (!rcpt || strchr(p->addr, '@') != NULL)
			abort();
		return;
	}
	if (p->at > SMTP_LOCAL_MAX || p->addr[p->at] != '@' ||
	    n - p->at - 1 > SMTP_DOMAIN_MAX || n - p->at - 1 == 0)
		abort();
}

/* An accepted address must be accepted again, unchanged, as "<addr>". */
static void
fuzz_reparse(const struct smtp_path *p, bool rcpt)
{
	char arg[SMTP_PATH_MAX + 32];
	struct smtp_path again;
	struct smtp_mail_params mp;
	struct smtp_rcpt_params rp;
	const char *err;

	snprintf(arg, sizeof(arg), "<%s>%s", p->addr,
	    p->utf8 && !rcpt ? " SMTPUTF8" : "");
	if (rcpt)
		err = smtp_parse_rcpt(arg, true, &again, &rp);
	else
		err = smtp_parse_mail(arg, &again, &mp);
	if (err != NULL || strcmp(again.addr, p->addr) != 0 ||
	    again.at != p->at || again.utf8 != p->utf8)
		abort();
}

static void
fuzz_args(const char *arg, bool smtputf8)
{
	struct smtp_path path;
	struct smtp_mail_params mp;
	struct smtp_rcpt_params rp;
	const char *err;

	err = smtp_parse_mail(arg, &path, &mp);
	fuzz_check_reply(err);
	if (err == NULL) {
		fuzz_check_path(&path, false);
		if ((path.utf8 && !mp.smtputf8) ||
		    strnlen(mp.envid, sizeof(mp.envid)) > SMTP_ENVID_MAX ||
		    !smtp_xtext_valid(mp.envid))
			abort();
		fuzz_reparse(&path, false);
	}
	err = smtp_parse_rcpt(arg, smtputf8, &path, &rp);
	fuzz_check_reply(err);
	if (err == NULL) {
		fuzz_check_path(&path, true);
		if ((path.utf8 && !smtputf8) ||
		    strnlen(rp.orcpt, sizeof(rp.orcpt)) > SMTP_ORCPT_MAX ||
		    ((rp.notify & SMTP_NOTIFY_NEVER) &&
		    rp.notify != SMTP_NOTIFY_NEVER) || rp.notify > 0xf)
			abort();
		fuzz_reparse(&path, true);
	}
	err = smtp_parse_helo(arg);
	fuzz_check_reply(err);
	if (err == NULL && (strlen(arg) > SMTP_DOMAIN_MAX ||
	    strpbrk(arg, " \t\r\n") != NULL))
		abort();
	(void)smtp_xtext_valid(arg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_cmd cmd;
	const char *err;
	char *line;

	if (size > 4096)
		return 0;
	if ((line = malloc(size + 1)) == NULL)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	err = smtp_parse_command(line, size, &cmd);
	fuzz_check_reply(err);
	if (err == NULL) {
		if (cmd.verb == SMTP_VERB_UNKNOWN || cmd.arg < line ||
		    cmd.arg > line + size)
			abort();
		fuzz_args(cmd.arg, size & 1);
	} else {
		if (cmd.verb != SMTP_VERB_UNKNOWN)
			abort();
		fuzz_args(line, size & 1);
	}
	free(line);
	return 0;
}

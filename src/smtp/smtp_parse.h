/*
 * smtp_parse.h - pure parsers for SMTP command lines (RFC 5321, 1869,
 * 1870, 6152, 3461, 6531, 4954).  No I/O, no allocation of unbounded
 * size: every input is hostile and every field is bounded.  Fuzzed by
 * tests/fuzz/fuzz_smtp_command.c.
 *
 * Error convention: functions return NULL on success, or a complete reply
 * line (code, enhanced status code, text; no CRLF) that the session sends
 * as is, e.g. "501 5.1.7 Bad sender address syntax".
 */
#ifndef OMBUD_SMTP_PARSE_H
#define OMBUD_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_LOCAL_MAX	64	/* RFC 5321 4.5.3.1.1 */
#define SMTP_DOMAIN_MAX	255	/* RFC 5321 4.5.3.1.2 */
#define SMTP_PATH_MAX	256	/* RFC 5321 4.5.3.1.3, incl. <> */
#define SMTP_ENVID_MAX	100	/* RFC 3461 4.4 */
#define SMTP_ORCPT_MAX	500	/* RFC 3461 4.2: xtext, generous */

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
};

struct smtp_cmd {
	enum smtp_verb	 verb;
	const char	*arg;	/* rest of line after verb and one SP;
				   "" when none; points into the line.
				   For MAIL/RCPT: text after "FROM:"/"TO:" */
};

/*
 * Split a command line (without the CRLF; line[len] == '\0') into verb
 * and argument.  Verbs are case-insensitive.  MAIL must be followed by
 * "FROM:" and RCPT by "TO:" (case-insensitive; RFC 5321 has no space
 * before the colon, but one is tolerated after it).  Returns NULL or a
 * reply line ("500 5.5.2 ..." for unknown, "501 5.5.4 ..." for syntax).
 */
const char *smtp_parse_command(const char *line, size_t len,
    struct smtp_cmd *out);

/* A parsed reverse-path or forward-path. */
struct smtp_path {
	char	addr[SMTP_PATH_MAX + 1];	/* local@domain, no <>;
						   "" for the null path <> */
	size_t	at;				/* index of '@' in addr */
	bool	utf8;				/* contains non-ASCII */
};

enum smtp_body { SMTP_BODY_UNSET = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME,
	SMTP_BODY_BINARYMIME };
enum smtp_ret { SMTP_RET_UNSET = 0, SMTP_RET_FULL, SMTP_RET_HDRS };

struct smtp_mail_params {
	unsigned long long	size;		/* SIZE=, 0 if absent */
	enum smtp_body		body;
	bool			smtputf8;
	enum smtp_ret		ret;
	char			envid[SMTP_ENVID_MAX + 1]; /* xtext as given */
	bool			has_auth;	/* AUTH= given (RFC 4954 5) */
};

#define SMTP_NOTIFY_NEVER	0x1
#define SMTP_NOTIFY_SUCCESS	0x2
#define SMTP_NOTIFY_FAILURE	0x4
#define SMTP_NOTIFY_DELAY	0x8

struct smtp_rcpt_params {
	unsigned	notify;			/* SMTP_NOTIFY_* bits, 0 unset */
	char		orcpt[SMTP_ORCPT_MAX + 1]; /* "rfc822;xtext" as given */
};

/*
 * Parse the argument of MAIL FROM: ("<path> [params]").  The null path
 * <> is allowed.  Unknown parameters give "555 5.5.4 ...".  A non-ASCII
 * address without SMTPUTF8 gives "553 5.6.7 ...".
 */
const char *smtp_parse_mail(const char *arg, struct smtp_path *path,
    struct smtp_mail_params *params);

/*
 * Parse the argument of RCPT TO:.  The null path is refused ("553 5.1.3").
 * "<Postmaster>" (no domain) is accepted with at == 0 and addr
 * "Postmaster".  smtputf8 says whether MAIL had SMTPUTF8.
 */
const char *smtp_parse_rcpt(const char *arg, bool smtputf8,
    struct smtp_path *path, struct smtp_rcpt_params *params);

/* Domain or address-literal of HELO/EHLO; NULL or "501 5.5.4 ..." */
const char *smtp_parse_helo(const char *arg);

/* Validate RFC 3461 xtext: printable ASCII 33..126 except '+' and '=',
 * and "+XX" hex escapes.  */
bool smtp_xtext_valid(const char *s);

#endif

/*
 * test_smtp_parse.c - table-driven tests of the SMTP command parsers:
 * every reply of smtp_parse.c, the RFC 5321 path grammar and its limits,
 * the ESMTP parameters of MAIL and RCPT, and HELO names.
 *
 * Must never: depend on anything but the parser's public contract.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/util.h"
#include "smtp/smtp_parse.h"

#define BAD_SENDER	"501 5.1.7 Bad sender address syntax"
#define BAD_RCPT	"501 5.1.3 Bad recipient address syntax"
#define PATH_LONG	"501 5.5.4 Path too long"
#define NULL_RCPT	"553 5.1.3 Null recipient address not allowed"
#define SENDER_UTF8	"553 5.6.7 Non-ASCII sender address requires SMTPUTF8"
#define RCPT_UTF8	"553 5.6.7 Non-ASCII recipient address requires " \
			"SMTPUTF8"
#define P_UNKNOWN	"555 5.5.4 Unsupported parameter"
#define P_SYNTAX	"501 5.5.4 Bad parameter syntax"
#define P_DUP		"501 5.5.4 Duplicate parameter"
#define BAD_SIZE	"501 5.5.4 Bad SIZE value"
#define BAD_BODY	"501 5.5.4 Bad BODY value (7BIT, 8BITMIME or " \
			"BINARYMIME)"
#define BAD_UTF8P	"501 5.5.4 SMTPUTF8 takes no value"
#define BAD_RET		"501 5.5.4 Bad RET value (FULL or HDRS)"
#define BAD_ENVID	"501 5.5.4 Bad ENVID value"
#define BAD_AUTH	"501 5.5.4 Bad AUTH value"
#define BAD_NOTIFY	"501 5.5.4 Bad NOTIFY value"
#define BAD_ORCPT	"501 5.5.4 Bad ORCPT value"
#define UNKNOWN_CMD	"500 5.5.2 Command not recognized"
#define BAD_CHAR	"500 5.5.2 Syntax error: NUL, CR or LF in command"
#define MAIL_SYNTAX	"501 5.5.4 Syntax: MAIL FROM:<address>"
#define RCPT_SYNTAX	"501 5.5.4 Syntax: RCPT TO:<address>"
#define HELO_EMPTY	"501 5.5.4 Syntax: HELO/EHLO hostname"
#define HELO_BAD	"501 5.5.4 Invalid HELO/EHLO hostname"
#define HELO_LONG	"501 5.5.4 HELO/EHLO hostname too long"

/* A reply is either NULL (success) or the exact expected string. */
static void
check_reply(const char *what, const char *got, const char *want)
{
	if (got == NULL && want == NULL)
		return;
	if (got == NULL || want == NULL || strcmp(got, want) != 0) {
		print_error("%s: got \"%s\", want \"%s\"\n", what,
		    got ? got : "(ok)", want ? want : "(ok)");
		fail();
	}
}

/* "x" repeated n times, into a static buffer (n < 1024) */
static const char *
rep(char c, size_t n)
{
	static char b[4][1024];
	static int i;

	i = (i + 1) % 4;
	assert_true(n < sizeof(b[0]));
	memset(b[i], c, n);
	b[i][n] = '\0';
	return b[i];
}

/* ---- command lines ---- */

static const struct {
	const char	*line;
	const char	*err;
	enum smtp_verb	 verb;
	const char	*arg;
} cmd_cases[] = {
	{ "HELO mx.example.org", NULL, SMTP_VERB_HELO, "mx.example.org" },
	{ "ehlo client", NULL, SMTP_VERB_EHLO, "client" },
	{ "EhLo client", NULL, SMTP_VERB_EHLO, "client" },
	{ "MAIL FROM:<a@b.c>", NULL, SMTP_VERB_MAIL, "<a@b.c>" },
	{ "mail from:<a@b.c> SIZE=10", NULL, SMTP_VERB_MAIL,
	  "<a@b.c> SIZE=10" },
	{ "MAIL FROM: <a@b.c>", NULL, SMTP_VERB_MAIL, "<a@b.c>" },
	{ "MAIL FROM:   <>", NULL, SMTP_VERB_MAIL, "<>" },
	{ "MAIL  FROM:<>", NULL, SMTP_VERB_MAIL, "<>" },
	{ "MAIL FROM:", NULL, SMTP_VERB_MAIL, "" },
	{ "MAIL FROM :<a@b.c>", MAIL_SYNTAX, SMTP_VERB_UNKNOWN, "" },
	{ "MAIL TO:<a@b.c>", MAIL_SYNTAX, SMTP_VERB_UNKNOWN, "" },
	{ "MAIL", MAIL_SYNTAX, SMTP_VERB_UNKNOWN, "" },
	{ "MAIL FRO", MAIL_SYNTAX, SMTP_VERB_UNKNOWN, "" },
	{ "MAILFROM:<a@b.c>", UNKNOWN_CMD, SMTP_VERB_UNKNOWN, "" },
	{ "RCPT TO:<a@b.c>", NULL, SMTP_VERB_RCPT, "<a@b.c>" },
	{ "rcpt to: <a@b.c> NOTIFY=NEVER", NULL, SMTP_VERB_RCPT,
	  "<a@b.c> NOTIFY=NEVER" },
	{ "RCPT FROM:<a@b.c>", RCPT_SYNTAX, SMTP_VERB_UNKNOWN, "" },
	{ "RCPT", RCPT_SYNTAX, SMTP_VERB_UNKNOWN, "" },
	{ "RCPT TO :<a@b.c>", RCPT_SYNTAX, SMTP_VERB_UNKNOWN, "" },
	{ "DATA", NULL, SMTP_VERB_DATA, "" },
	{ "data ", NULL, SMTP_VERB_DATA, "" },
	{ "DATA x", NULL, SMTP_VERB_DATA, "x" },
	{ "BDAT 100 LAST", NULL, SMTP_VERB_BDAT, "100 LAST" },
	{ "RSET", NULL, SMTP_VERB_RSET, "" },
	{ "NOOP hello there", NULL, SMTP_VERB_NOOP, "hello there" },
	{ "QUIT", NULL, SMTP_VERB_QUIT, "" },
	{ "VRFY postmaster", NULL, SMTP_VERB_VRFY, "postmaster" },
	{ "EXPN list", NULL, SMTP_VERB_EXPN, "list" },
	{ "HELP", NULL, SMTP_VERB_HELP, "" },
	{ "StartTLS", NULL, SMTP_VERB_STARTTLS, "" },
	{ "AUTH PLAIN AGZvbwBiYXI=", NULL, SMTP_VERB_AUTH,
	  "PLAIN AGZvbwBiYXI=" },
	{ "", UNKNOWN_CMD, SMTP_VERB_UNKNOWN, "" },
	{ " HELO x", UNKNOWN_CMD, SMTP_VERB_UNKNOWN, "" },
	{ "HELOX x", UNKNOWN_CMD, SMTP_VERB_UNKNOWN, "" },
	{ "HEL", UNKNOWN_CMD, SMTP_VERB_UNKNOWN, "" },
	{ "HELO\tx", UNKNOWN_CMD, SMTP_VERB_UNKNOWN, "" },
	{ "QUIT\r", BAD_CHAR, SMTP_VERB_UNKNOWN, "" },
	{ "DATA\n", BAD_CHAR, SMTP_VERB_UNKNOWN, "" },
	{ "NOOP a\rRSET", BAD_CHAR, SMTP_VERB_UNKNOWN, "" },
	{ "GET / HTTP/1.1", UNKNOWN_CMD, SMTP_VERB_UNKNOWN, "" },
	{ "STARTTLSX", UNKNOWN_CMD, SMTP_VERB_UNKNOWN, "" },
};

static void
test_command_table(void **state)
{
	struct smtp_cmd cmd;
	const char *err;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cmd_cases); i++) {
		const char *line = cmd_cases[i].line;

		err = smtp_parse_command(line, strlen(line), &cmd);
		check_reply(line, err, cmd_cases[i].err);
		if (err != NULL) {
			assert_int_equal(cmd.verb, SMTP_VERB_UNKNOWN);
			continue;
		}
		assert_int_equal(cmd.verb, cmd_cases[i].verb);
		assert_string_equal(cmd.arg, cmd_cases[i].arg);
		/* the argument points into the line */
		assert_true(cmd.arg >= line && cmd.arg <= line + strlen(line));
	}
}

static void
test_command_embedded_nul(void **state)
{
	static const char line[] = "QUIT\0RSET";
	struct smtp_cmd cmd;

	(void)state;
	check_reply("embedded NUL", smtp_parse_command(line, sizeof(line) - 1,
	    &cmd), BAD_CHAR);
	check_reply("NUL first", smtp_parse_command("\0", 1, &cmd),
	    BAD_CHAR);
}

/* ---- MAIL FROM ---- */

static const struct {
	const char	*arg;
	const char	*err;
	const char	*addr;	/* when err == NULL */
	size_t		 at;
} mail_cases[] = {
	/* paths */
	{ "<>", NULL, "", 0 },
	{ "<user@example.org>", NULL, "user@example.org", 4 },
	{ "<User.Name+tag@Sub.Example.ORG>", NULL,
	  "User.Name+tag@Sub.Example.ORG", 13 },
	{ "<!#$%&'*+-/=?^_`{|}~@x.y>", NULL, "!#$%&'*+-/=?^_`{|}~@x.y", 19 },
	{ "<\"john doe\"@example.org>", NULL, "\"john doe\"@example.org", 10 },
	{ "<\"a\\\"b\\\\c\"@x.org>", NULL, "\"a\\\"b\\\\c\"@x.org", 9 },
	{ "<\"\"@x.org>", NULL, "\"\"@x.org", 2 },
	{ "<\"a@b>c\"@x.org>", NULL, "\"a@b>c\"@x.org", 7 },
	{ "<@relay.example:user@example.org>", NULL, "user@example.org", 4 },
	{ "<@a.example,@b.example:u@c.example>", NULL, "u@c.example", 1 },
	{ "<u@[192.0.2.1]>", NULL, "u@[192.0.2.1]", 1 },
	{ "<u@[IPv6:2001:db8::1]>", NULL, "u@[IPv6:2001:db8::1]", 1 },
	{ "<u@[ipv6:::ffff:192.0.2.1]>", NULL, "u@[ipv6:::ffff:192.0.2.1]",
	  1 },
	{ "<u@a-b.c0>", NULL, "u@a-b.c0", 1 },
	{ "<u@1.2.3.4>", NULL, "u@1.2.3.4", 1 },
	{ "<u@xn--bcher-kva.example>", NULL, "u@xn--bcher-kva.example", 1 },
	{ "<a@b.c>   ", NULL, "a@b.c", 1 },
	/* bad syntax */
	{ "", BAD_SENDER, NULL, 0 },
	{ "user@example.org", BAD_SENDER, NULL, 0 },
	{ "<user@example.org", BAD_SENDER, NULL, 0 },
	{ "user@example.org>", BAD_SENDER, NULL, 0 },
	{ "<<a@b.c>>", BAD_SENDER, NULL, 0 },
	{ "<a@b.c>x", BAD_SENDER, NULL, 0 },
	{ "<a@b.c>\tSIZE=1", BAD_SENDER, NULL, 0 },
	{ "< a@b.c>", BAD_SENDER, NULL, 0 },
	{ "<a@b.c >", BAD_SENDER, NULL, 0 },
	{ "<user>", BAD_SENDER, NULL, 0 },
	{ "<Postmaster>", BAD_SENDER, NULL, 0 },
	{ "<@example.org>", BAD_SENDER, NULL, 0 },
	{ "<a@>", BAD_SENDER, NULL, 0 },
	{ "<@b.c:>", BAD_SENDER, NULL, 0 },
	{ "<@b.c,a@d.e>", BAD_SENDER, NULL, 0 },
	{ "<@b.c,:a@d.e>", BAD_SENDER, NULL, 0 },
	{ "<@:a@d.e>", BAD_SENDER, NULL, 0 },
	{ "<@[1.2.3.4]:a@d.e>", BAD_SENDER, NULL, 0 },
	{ "<@b\xc3\xa9.c:a@d.e> SMTPUTF8", BAD_SENDER, NULL, 0 },
	{ "<a@b@c.d>", BAD_SENDER, NULL, 0 },
	{ "<.a@b.c>", BAD_SENDER, NULL, 0 },
	{ "<a.@b.c>", BAD_SENDER, NULL, 0 },
	{ "<a..b@b.c>", BAD_SENDER, NULL, 0 },
	{ "<a(b)@b.c>", BAD_SENDER, NULL, 0 },
	{ "<a,b@b.c>", BAD_SENDER, NULL, 0 },
	{ "<\"a@b.c>", BAD_SENDER, NULL, 0 },
	{ "<\"a\tb\"@b.c>", BAD_SENDER, NULL, 0 },
	{ "<\"a\\\tb\"@b.c>", BAD_SENDER, NULL, 0 },
	{ "<\"a\x01\"@b.c>", BAD_SENDER, NULL, 0 },
	{ "<a\x7f@b.c>", BAD_SENDER, NULL, 0 },
	{ "<a@b..c>", BAD_SENDER, NULL, 0 },
	{ "<a@.b.c>", BAD_SENDER, NULL, 0 },
	{ "<a@b.c.>", BAD_SENDER, NULL, 0 },
	{ "<a@-b.c>", BAD_SENDER, NULL, 0 },
	{ "<a@b-.c>", BAD_SENDER, NULL, 0 },
	{ "<a@b_c.d>", BAD_SENDER, NULL, 0 },
	{ "<a@[1.2.3]>", BAD_SENDER, NULL, 0 },
	{ "<a@[1.2.3.256]>", BAD_SENDER, NULL, 0 },
	{ "<a@[01.2.3.4]>", BAD_SENDER, NULL, 0 },
	{ "<a@[IPv6:1.2.3.4]>", BAD_SENDER, NULL, 0 },
	{ "<a@[IPv6:2001:db8::1%eth0]>", BAD_SENDER, NULL, 0 },
	{ "<a@[2001:db8::1]>", BAD_SENDER, NULL, 0 },
	{ "<a@[x-tag:foo]>", BAD_SENDER, NULL, 0 },
	{ "<a@[]>", BAD_SENDER, NULL, 0 },
	{ "<a@[1.2.3.4>", BAD_SENDER, NULL, 0 },
	{ "<a@[1.2.3.4]x>", BAD_SENDER, NULL, 0 },
	{ "<a@b.c%d>", BAD_SENDER, NULL, 0 },
	{ "<a@b.c\r\n>", BAD_SENDER, NULL, 0 },
	/* malformed UTF-8 is bad syntax even with SMTPUTF8 */
	{ "<\xc3@b.c> SMTPUTF8", BAD_SENDER, NULL, 0 },
	{ "<\xc0\xaf@b.c> SMTPUTF8", BAD_SENDER, NULL, 0 },
	{ "<\xe0\x80\xaf@b.c> SMTPUTF8", BAD_SENDER, NULL, 0 },
	{ "<\xed\xa0\x80@b.c> SMTPUTF8", BAD_SENDER, NULL, 0 },
	{ "<\xf4\x90\x80\x80@b.c> SMTPUTF8", BAD_SENDER, NULL, 0 },
	{ "<\xc2\x85@b.c> SMTPUTF8", BAD_SENDER, NULL, 0 },
	{ "<\xff@b.c> SMTPUTF8", BAD_SENDER, NULL, 0 },
	{ "<a@b\x80.c> SMTPUTF8", BAD_SENDER, NULL, 0 },
	/* UTF-8 needs SMTPUTF8 */
	{ "<j\xc3\xb6rg@example.org>", SENDER_UTF8, NULL, 0 },
	{ "<jorg@b\xc3\xbc" "cher.example>", SENDER_UTF8, NULL, 0 },
	{ "<j\xc3\xb6rg@example.org> SMTPUTF8", NULL,
	  "j\xc3\xb6rg@example.org", 5 },
	{ "<u@b\xc3\xbc" "cher.example> smtputf8", NULL,
	  "u@b\xc3\xbc" "cher.example", 1 },
	{ "<\"\xe2\x82\xac\"@x.y> SMTPUTF8", NULL, "\"\xe2\x82\xac\"@x.y", 5 },
	{ "<\xf0\x9f\x98\x80@x.y> SMTPUTF8", NULL, "\xf0\x9f\x98\x80@x.y", 4 },
	/* parameters */
	{ "<a@b.c> SIZE=12345", NULL, "a@b.c", 1 },
	{ "<a@b.c> size=0", NULL, "a@b.c", 1 },
	{ "<a@b.c> SIZE=", P_SYNTAX, NULL, 0 },
	{ "<a@b.c> SIZE", BAD_SIZE, NULL, 0 },
	{ "<a@b.c> SIZE=12a", BAD_SIZE, NULL, 0 },
	{ "<a@b.c> SIZE=-1", BAD_SIZE, NULL, 0 },
	{ "<a@b.c> SIZE=+1", BAD_SIZE, NULL, 0 },
	{ "<a@b.c> SIZE=123456789012345678901", BAD_SIZE, NULL, 0 },
	{ "<a@b.c> SIZE=1 SIZE=1", P_DUP, NULL, 0 },
	{ "<a@b.c> SIZE=1 size=2", P_DUP, NULL, 0 },
	{ "<a@b.c> BODY=8BITMIME", NULL, "a@b.c", 1 },
	{ "<a@b.c> BODY=xyz", BAD_BODY, NULL, 0 },
	{ "<a@b.c> BODY", BAD_BODY, NULL, 0 },
	{ "<a@b.c> BODY=8BITMIMEX", BAD_BODY, NULL, 0 },
	{ "<a@b.c> BODY=7BIT BODY=7BIT", P_DUP, NULL, 0 },
	{ "<a@b.c> SMTPUTF8=yes", BAD_UTF8P, NULL, 0 },
	{ "<a@b.c> SMTPUTF8 SMTPUTF8", P_DUP, NULL, 0 },
	{ "<a@b.c> RET=FULL", NULL, "a@b.c", 1 },
	{ "<a@b.c> RET=ALL", BAD_RET, NULL, 0 },
	{ "<a@b.c> RET", BAD_RET, NULL, 0 },
	{ "<a@b.c> ENVID=abc+2B+3Dx", NULL, "a@b.c", 1 },
	{ "<a@b.c> ENVID=a+2b", BAD_ENVID, NULL, 0 },
	{ "<a@b.c> ENVID=a+2", BAD_ENVID, NULL, 0 },
	{ "<a@b.c> ENVID=a+", BAD_ENVID, NULL, 0 },
	{ "<a@b.c> ENVID=a+ZZ", BAD_ENVID, NULL, 0 },
	{ "<a@b.c> ENVID=a==b", P_SYNTAX, NULL, 0 },
	{ "<a@b.c> ENVID", BAD_ENVID, NULL, 0 },
	{ "<a@b.c> AUTH=<>", NULL, "a@b.c", 1 },
	{ "<a@b.c> AUTH=user+40example.org", NULL, "a@b.c", 1 },
	{ "<a@b.c> AUTH=", P_SYNTAX, NULL, 0 },
	{ "<a@b.c> AUTH", BAD_AUTH, NULL, 0 },
	{ "<a@b.c> AUTH=a+4", BAD_AUTH, NULL, 0 },
	{ "<a@b.c> AUTH=<> AUTH=<>", P_DUP, NULL, 0 },
	{ "<a@b.c> FOO=bar", P_UNKNOWN, NULL, 0 },
	{ "<a@b.c> FOO", P_UNKNOWN, NULL, 0 },
	{ "<a@b.c> X-FOO-1=2", P_UNKNOWN, NULL, 0 },
	{ "<a@b.c> NOTIFY=NEVER", P_UNKNOWN, NULL, 0 },
	{ "<a@b.c> SIZE=1 FOO", P_UNKNOWN, NULL, 0 },
	{ "<a@b.c> -FOO", P_SYNTAX, NULL, 0 },
	{ "<a@b.c> =1", P_SYNTAX, NULL, 0 },
	{ "<a@b.c> SIZE=1\t", P_SYNTAX, NULL, 0 },
	{ "<a@b.c> SIZE=1,BODY=7BIT", P_SYNTAX, NULL, 0 },
	{ "<a@b.c> SIZE=1,2", BAD_SIZE, NULL, 0 },
	{ "<a@b.c> FOO_BAR", P_SYNTAX, NULL, 0 },
	{ "<a@b.c> BODY=8BIT\xc3\xa9", P_SYNTAX, NULL, 0 },
	{ "<a@b.c>  SIZE=1   BODY=7BIT  ", NULL, "a@b.c", 1 },
};

static void
test_mail_table(void **state)
{
	struct smtp_path path;
	struct smtp_mail_params mp;
	const char *err;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(mail_cases); i++) {
		err = smtp_parse_mail(mail_cases[i].arg, &path, &mp);
		check_reply(mail_cases[i].arg, err, mail_cases[i].err);
		if (err != NULL)
			continue;
		assert_string_equal(path.addr, mail_cases[i].addr);
		assert_int_equal(path.at, mail_cases[i].at);
		if (path.addr[0] != '\0')
			assert_int_equal(path.addr[path.at], '@');
	}
}

static void
test_mail_params_values(void **state)
{
	struct smtp_path path;
	struct smtp_mail_params mp;

	(void)state;
	assert_null(smtp_parse_mail("<a@b.c> SIZE=1000 BODY=8bitmime "
	    "SMTPUTF8 RET=hdrs ENVID=QQ+2B1 AUTH=<>", &path, &mp));
	assert_int_equal(mp.size, 1000);
	assert_int_equal(mp.body, SMTP_BODY_8BITMIME);
	assert_true(mp.smtputf8);
	assert_int_equal(mp.ret, SMTP_RET_HDRS);
	assert_string_equal(mp.envid, "QQ+2B1");
	assert_true(mp.has_auth);
	assert_false(path.utf8);

	assert_null(smtp_parse_mail("<>", &path, &mp));
	assert_int_equal(mp.size, 0);
	assert_int_equal(mp.body, SMTP_BODY_UNSET);
	assert_false(mp.smtputf8);
	assert_int_equal(mp.ret, SMTP_RET_UNSET);
	assert_string_equal(mp.envid, "");
	assert_false(mp.has_auth);

	assert_null(smtp_parse_mail("<a@b.c> BODY=7bit RET=Full", &path, &mp));
	assert_int_equal(mp.body, SMTP_BODY_7BIT);
	assert_int_equal(mp.ret, SMTP_RET_FULL);
	assert_null(smtp_parse_mail("<a@b.c> BODY=BINARYMIME", &path, &mp));
	assert_int_equal(mp.body, SMTP_BODY_BINARYMIME);

	/* SIZE: the largest value, and saturation within 20 digits */
	assert_null(smtp_parse_mail("<a@b.c> SIZE=18446744073709551615",
	    &path, &mp));
	assert_true(mp.size == 18446744073709551615ULL);
	assert_null(smtp_parse_mail("<a@b.c> SIZE=18446744073709551616",
	    &path, &mp));
	assert_true(mp.size == ~0ULL);
	assert_null(smtp_parse_mail("<a@b.c> SIZE=99999999999999999999",
	    &path, &mp));
	assert_true(mp.size == ~0ULL);
	assert_null(smtp_parse_mail("<a@b.c> SIZE=00000000000000000042",
	    &path, &mp));
	assert_int_equal(mp.size, 42);

	/* utf8 flag */
	assert_null(smtp_parse_mail("<\xc3\xa9@b.c> SMTPUTF8", &path, &mp));
	assert_true(path.utf8);
}

static void
test_mail_limits(void **state)
{
	struct smtp_path path;
	struct smtp_mail_params mp;
	char arg[2048], label63[64];

	(void)state;
	memset(label63, 'a', 63);
	label63[63] = '\0';
	/* local part: 64 ok, 65 too long */
	snprintf(arg, sizeof(arg), "<%s@b.c>", rep('x', 64));
	assert_null(smtp_parse_mail(arg, &path, &mp));
	assert_int_equal(path.at, 64);
	snprintf(arg, sizeof(arg), "<%s@b.c>", rep('x', 65));
	check_reply("local 65", smtp_parse_mail(arg, &path, &mp), PATH_LONG);
	/* quoted local part counts as written */
	snprintf(arg, sizeof(arg), "<\"%s\"@b.c>", rep('x', 62));
	assert_null(smtp_parse_mail(arg, &path, &mp));
	snprintf(arg, sizeof(arg), "<\"%s\"@b.c>", rep('x', 63));
	check_reply("quoted 65", smtp_parse_mail(arg, &path, &mp), PATH_LONG);

	/* label: 63 ok, 64 bad */
	snprintf(arg, sizeof(arg), "<a@%s.c>", label63);
	assert_null(smtp_parse_mail(arg, &path, &mp));
	snprintf(arg, sizeof(arg), "<a@%s.c>", rep('a', 64));
	check_reply("label 64", smtp_parse_mail(arg, &path, &mp), BAD_SENDER);

	/* whole path: "<" + 1 + "@" + domain + ">" = 256 ok, 257 too long */
	snprintf(arg, sizeof(arg), "<a@%s.%s.%s.%s>", label63, label63,
	    label63, rep('b', 60));	/* domain 252 */
	assert_int_equal(strlen(arg), 256);
	assert_null(smtp_parse_mail(arg, &path, &mp));
	assert_int_equal(strlen(path.addr), 254);
	snprintf(arg, sizeof(arg), "<ab@%s.%s.%s.%s>", label63, label63,
	    label63, rep('b', 60));
	assert_int_equal(strlen(arg), 257);
	check_reply("path 257", smtp_parse_mail(arg, &path, &mp), PATH_LONG);

	/* domain longer than 255 */
	snprintf(arg, sizeof(arg), "<a@%s.%s.%s.%s.%s>", label63, label63,
	    label63, label63, label63);
	check_reply("domain 319", smtp_parse_mail(arg, &path, &mp),
	    PATH_LONG);

	/* a source route counts in the path length */
	snprintf(arg, sizeof(arg), "<@%s.%s.%s.%s:a@b.c>", label63, label63,
	    label63, label63);
	check_reply("route", smtp_parse_mail(arg, &path, &mp), PATH_LONG);
	snprintf(arg, sizeof(arg), "<@%s:%s@b.c>", label63, rep('x', 64));
	assert_null(smtp_parse_mail(arg, &path, &mp));

	/* ENVID: 100 ok, 101 bad */
	snprintf(arg, sizeof(arg), "<a@b.c> ENVID=%s", rep('e', 100));
	assert_null(smtp_parse_mail(arg, &path, &mp));
	assert_int_equal(strlen(mp.envid), 100);
	snprintf(arg, sizeof(arg), "<a@b.c> ENVID=%s", rep('e', 101));
	check_reply("envid 101", smtp_parse_mail(arg, &path, &mp), BAD_ENVID);

	/* AUTH: 500 ok, 501 bad */
	snprintf(arg, sizeof(arg), "<a@b.c> AUTH=%s", rep('u', 500));
	assert_null(smtp_parse_mail(arg, &path, &mp));
	snprintf(arg, sizeof(arg), "<a@b.c> AUTH=%s", rep('u', 501));
	check_reply("auth 501", smtp_parse_mail(arg, &path, &mp), BAD_AUTH);
}

/* ---- RCPT TO ---- */

static const struct {
	const char	*arg;
	bool		 smtputf8;
	const char	*err;
	const char	*addr;
	unsigned	 notify;
	const char	*orcpt;
} rcpt_cases[] = {
	{ "<u@example.org>", false, NULL, "u@example.org", 0, "" },
	{ "<Postmaster>", false, NULL, "Postmaster", 0, "" },
	{ "<postmaster>", false, NULL, "postmaster", 0, "" },
	{ "<POSTMASTER> NOTIFY=NEVER", false, NULL, "POSTMASTER",
	  SMTP_NOTIFY_NEVER, "" },
	{ "<Postmaster@example.org>", false, NULL, "Postmaster@example.org",
	  0, "" },
	{ "<@r.example:u@example.org>", false, NULL, "u@example.org", 0, "" },
	{ "<>", false, NULL_RCPT, NULL, 0, NULL },
	{ "<> NOTIFY=NEVER", false, NULL_RCPT, NULL, 0, NULL },
	{ "<\"Postmaster\">", false, BAD_RCPT, NULL, 0, NULL },
	{ "<@r.example:Postmaster>", false, BAD_RCPT, NULL, 0, NULL },
	{ "<Postmaster.x>", false, BAD_RCPT, NULL, 0, NULL },
	{ "<user>", false, BAD_RCPT, NULL, 0, NULL },
	{ "u@example.org", false, BAD_RCPT, NULL, 0, NULL },
	{ "<u@example.org", false, BAD_RCPT, NULL, 0, NULL },
	{ "<u@exa mple.org>", false, BAD_RCPT, NULL, 0, NULL },
	{ "<u@example.org>junk", false, BAD_RCPT, NULL, 0, NULL },
	{ "", false, BAD_RCPT, NULL, 0, NULL },
	/* UTF-8 */
	{ "<\xc3\xa9t\xc3\xa9@x.org>", false, RCPT_UTF8, NULL, 0, NULL },
	{ "<\xc3\xa9t\xc3\xa9@x.org>", true, NULL, "\xc3\xa9t\xc3\xa9@x.org",
	  0, "" },
	{ "<u@\xe4\xbe\x8b\xe5\xad\x90.\xe6\xb5\x8b\xe8\xaf\x95>", true, NULL,
	  "u@\xe4\xbe\x8b\xe5\xad\x90.\xe6\xb5\x8b\xe8\xaf\x95", 0, "" },
	{ "<\xc3\xa9@x.org> SMTPUTF8", true, P_UNKNOWN, NULL, 0, NULL },
	{ "<\xc3(@x.org>", true, BAD_RCPT, NULL, 0, NULL },
	/* NOTIFY */
	{ "<u@x.org> NOTIFY=SUCCESS", false, NULL, "u@x.org",
	  SMTP_NOTIFY_SUCCESS, "" },
	{ "<u@x.org> notify=success,failure,delay", false, NULL, "u@x.org",
	  SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY, "" },
	{ "<u@x.org> NOTIFY=DELAY,FAILURE", false, NULL, "u@x.org",
	  SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY, "" },
	{ "<u@x.org> NOTIFY=NEVER,SUCCESS", false, BAD_NOTIFY, NULL, 0, NULL },
	{ "<u@x.org> NOTIFY=FAILURE,NEVER", false, BAD_NOTIFY, NULL, 0, NULL },
	{ "<u@x.org> NOTIFY=SUCCESS,SUCCESS", false, BAD_NOTIFY, NULL, 0,
	  NULL },
	{ "<u@x.org> NOTIFY=SUCCESS,", false, BAD_NOTIFY, NULL, 0, NULL },
	{ "<u@x.org> NOTIFY=,SUCCESS", false, BAD_NOTIFY, NULL, 0, NULL },
	{ "<u@x.org> NOTIFY=SUCCESS,,DELAY", false, BAD_NOTIFY, NULL, 0,
	  NULL },
	{ "<u@x.org> NOTIFY=ALWAYS", false, BAD_NOTIFY, NULL, 0, NULL },
	{ "<u@x.org> NOTIFY", false, BAD_NOTIFY, NULL, 0, NULL },
	{ "<u@x.org> NOTIFY=", false, P_SYNTAX, NULL, 0, NULL },
	{ "<u@x.org> NOTIFY=NEVER NOTIFY=NEVER", false, P_DUP, NULL, 0, NULL },
	/* ORCPT */
	{ "<u@x.org> ORCPT=rfc822;u@x.org", false, NULL, "u@x.org", 0,
	  "rfc822;u@x.org" },
	{ "<u@x.org> ORCPT=rfc822;a+2Bb@x.org NOTIFY=DELAY", false, NULL,
	  "u@x.org", SMTP_NOTIFY_DELAY, "rfc822;a+2Bb@x.org" },
	{ "<u@x.org> ORCPT=utf-8;\\x{E9}@x.org", false, NULL, "u@x.org", 0,
	  "utf-8;\\x{E9}@x.org" },
	{ "<u@x.org> ORCPT=rfc822", false, BAD_ORCPT, NULL, 0, NULL },
	{ "<u@x.org> ORCPT=rfc822;", false, BAD_ORCPT, NULL, 0, NULL },
	{ "<u@x.org> ORCPT=;u@x.org", false, BAD_ORCPT, NULL, 0, NULL },
	{ "<u@x.org> ORCPT=rfc(822);u@x.org", false, BAD_ORCPT, NULL, 0,
	  NULL },
	{ "<u@x.org> ORCPT=rfc822;a+2bb@x.org", false, BAD_ORCPT, NULL, 0,
	  NULL },
	{ "<u@x.org> ORCPT=rfc822;a+b@x.org", false, BAD_ORCPT, NULL, 0,
	  NULL },
	{ "<u@x.org> ORCPT", false, BAD_ORCPT, NULL, 0, NULL },
	{ "<u@x.org> ORCPT=rfc822;a ORCPT=rfc822;b", false, P_DUP, NULL, 0,
	  NULL },
	/* MAIL parameters are not RCPT parameters */
	{ "<u@x.org> SIZE=1", false, P_UNKNOWN, NULL, 0, NULL },
	{ "<u@x.org> RET=FULL", false, P_UNKNOWN, NULL, 0, NULL },
	{ "<u@x.org> NOTIFY=NEVER FOO=1", false, P_UNKNOWN, NULL, 0, NULL },
	{ "<u@x.org> NOTIFY=NEVER!", false, BAD_NOTIFY, NULL, 0, NULL },
	{ "<u@x.org> NOTIFY=NEVER\x01", false, P_SYNTAX, NULL, 0, NULL },
};

static void
test_rcpt_table(void **state)
{
	struct smtp_path path;
	struct smtp_rcpt_params rp;
	const char *err;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(rcpt_cases); i++) {
		err = smtp_parse_rcpt(rcpt_cases[i].arg, rcpt_cases[i].smtputf8,
		    &path, &rp);
		check_reply(rcpt_cases[i].arg, err, rcpt_cases[i].err);
		if (err != NULL)
			continue;
		assert_string_equal(path.addr, rcpt_cases[i].addr);
		assert_int_equal(rp.notify, rcpt_cases[i].notify);
		assert_string_equal(rp.orcpt, rcpt_cases[i].orcpt);
		if (strchr(path.addr, '@') == NULL)
			assert_int_equal(path.at, 0);
		else
			assert_int_equal(path.addr[path.at], '@');
	}
}

static void
test_rcpt_limits(void **state)
{
	struct smtp_path path;
	struct smtp_rcpt_params rp;
	char arg[2048];

	(void)state;
	/* ORCPT: 500 ok, 501 bad */
	snprintf(arg, sizeof(arg), "<u@x.org> ORCPT=rfc822;%s",
	    rep('o', 500 - 7));
	assert_null(smtp_parse_rcpt(arg, false, &path, &rp));
	assert_int_equal(strlen(rp.orcpt), 500);
	snprintf(arg, sizeof(arg), "<u@x.org> ORCPT=rfc822;%s",
	    rep('o', 501 - 7));
	check_reply("orcpt 501", smtp_parse_rcpt(arg, false, &path, &rp),
	    BAD_ORCPT);
	snprintf(arg, sizeof(arg), "<%s@x.org>", rep('l', 65));
	check_reply("rcpt local 65", smtp_parse_rcpt(arg, false, &path, &rp),
	    PATH_LONG);
	/* a very long garbage path is refused without overflow */
	snprintf(arg, sizeof(arg), "<%s>", rep('l', 1000));
	check_reply("rcpt long", smtp_parse_rcpt(arg, false, &path, &rp),
	    BAD_RCPT);
	snprintf(arg, sizeof(arg), "<a@%s>", rep('l', 1000));
	check_reply("rcpt long dom", smtp_parse_rcpt(arg, false, &path, &rp),
	    PATH_LONG);
}

/* ---- HELO ---- */

static const struct {
	const char	*arg;
	const char	*err;
} helo_cases[] = {
	{ "mx.example.org", NULL },
	{ "localhost", NULL },
	{ "MX-1.Example.ORG", NULL },
	{ "my_host.example.org", NULL },	/* real-world underscore */
	{ "_under.example", NULL },
	{ "192.0.2.1", NULL },
	{ "[192.0.2.1]", NULL },
	{ "[IPv6:2001:db8::25]", NULL },
	{ "[IPv6:::1]", NULL },
	{ "", HELO_EMPTY },
	{ "[192.0.2]", HELO_BAD },
	{ "[2001:db8::25]", HELO_BAD },
	{ "[IPv6:2001:db8::g]", HELO_BAD },
	{ "[192.0.2.1", HELO_BAD },
	{ "host name", HELO_BAD },
	{ "host.example.org ", HELO_BAD },
	{ "host\tname", HELO_BAD },
	{ "host\x01", HELO_BAD },
	{ "host\x7f", HELO_BAD },
	{ "host..example", HELO_BAD },
	{ ".host", HELO_BAD },
	{ "host.", HELO_BAD },
	{ "-host", HELO_BAD },
	{ "host-", HELO_BAD },
	{ "h\xc3\xa9llo.example", HELO_BAD },
	{ "user@host", HELO_BAD },
	{ "<host>", HELO_BAD },
	{ "host;rm", HELO_BAD },
};

static void
test_helo_table(void **state)
{
	char arg[1024], label63[64];
	size_t i;

	(void)state;
	memset(label63, 'h', 63);
	label63[63] = '\0';
	for (i = 0; i < nitems(helo_cases); i++)
		check_reply(helo_cases[i].arg, smtp_parse_helo(helo_cases[i].arg),
		    helo_cases[i].err);
	/* length: 255 ok, 256 too long; label 64 bad */
	snprintf(arg, sizeof(arg), "%s.%s.%s.%s", label63, label63, label63,
	    rep('h', 63));
	assert_int_equal(strlen(arg), 255);
	assert_null(smtp_parse_helo(arg));
	snprintf(arg, sizeof(arg), "%s.%s.%s.%s", label63, label63, label63,
	    rep('h', 64));
	check_reply("helo 256", smtp_parse_helo(arg), HELO_LONG);
	snprintf(arg, sizeof(arg), "%s.org", rep('h', 64));
	check_reply("helo label 64", smtp_parse_helo(arg), HELO_BAD);
	snprintf(arg, sizeof(arg), "%s", rep('h', 900));
	check_reply("helo 900", smtp_parse_helo(arg), HELO_LONG);
}

/* ---- xtext ---- */

static const struct {
	const char	*s;
	bool		 ok;
} xtext_cases[] = {
	{ "", true },
	{ "abc", true },
	{ "a+2Bb", true },
	{ "+3D", true },
	{ "!\"#$%&'()*,-./:;<>?@[\\]^_`{|}~", true },
	{ "a+2b", false },
	{ "a+", false },
	{ "a+2", false },
	{ "a+G0", false },
	{ "a=b", false },
	{ "a b", false },
	{ "a\tb", false },
	{ "\x7f", false },
	{ "\xc3\xa9", false },
};

static void
test_xtext_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < nitems(xtext_cases); i++) {
		if (smtp_xtext_valid(xtext_cases[i].s) != xtext_cases[i].ok) {
			print_error("xtext \"%s\": want %d\n", xtext_cases[i].s,
			    xtext_cases[i].ok);
			fail();
		}
	}
}

/* Every reply the parsers give is "ddd d.d.d text" with a 5xx code. */
static void
test_reply_shape(void **state)
{
	const char *r[] = { BAD_SENDER, BAD_RCPT, PATH_LONG, NULL_RCPT,
	    SENDER_UTF8, RCPT_UTF8, P_UNKNOWN, P_SYNTAX, P_DUP, BAD_SIZE,
	    BAD_BODY, BAD_UTF8P, BAD_RET, BAD_ENVID, BAD_AUTH, BAD_NOTIFY,
	    BAD_ORCPT, UNKNOWN_CMD, BAD_CHAR, MAIL_SYNTAX, RCPT_SYNTAX,
	    HELO_EMPTY, HELO_BAD, HELO_LONG };
	size_t i;

	(void)state;
	for (i = 0; i < nitems(r); i++) {
		assert_true(r[i][0] == '5' && r[i][3] == ' ' && r[i][4] == '5' &&
		    r[i][5] == '.');
		assert_true(strlen(r[i]) < 100);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_command_table),
		cmocka_unit_test(test_command_embedded_nul),
		cmocka_unit_test(test_mail_table),
		cmocka_unit_test(test_mail_params_values),
		cmocka_unit_test(test_mail_limits),
		cmocka_unit_test(test_rcpt_table),
		cmocka_unit_test(test_rcpt_limits),
		cmocka_unit_test(test_helo_table),
		cmocka_unit_test(test_xtext_table),
		cmocka_unit_test(test_reply_shape),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

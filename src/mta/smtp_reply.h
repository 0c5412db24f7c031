/*
 * smtp_reply.h - parsing what a remote SMTP server says: (multiline)
 * replies with their enhanced status codes (RFC 5321 4.2, RFC 3463), and
 * the EHLO keywords the delivery client acts on.  Pure and bounded: the
 * remote server is as hostile as any client.  Fuzzed by
 * tests/fuzz/fuzz_smtp_reply.c.
 */
#ifndef OMBUD_SMTP_REPLY_H
#define OMBUD_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_REPLY_LINE_MAX	1024	/* bytes per reply line incl CRLF */
#define SMTP_REPLY_LINES_MAX	128
#define SMTP_REPLY_TEXT_MAX	4096	/* kept text of a whole reply */

struct smtp_reply {
	int	code;			/* 200..599 */
	char	enhanced[16];		/* "5.1.1" or "" */
	char	text[SMTP_REPLY_TEXT_MAX + 1]; /* lines joined by "\n",
					   without code and enhanced code;
					   control characters replaced */
	size_t	nlines;
};

enum smtp_reply_rc {
	SMTP_REPLY_MORE = 0,	/* need another line */
	SMTP_REPLY_DONE,	/* *r is complete */
	SMTP_REPLY_ERROR,	/* protocol violation: drop the connection */
};

/* Incremental: feed one line at a time (without CRLF). */
struct smtp_reply_parser {
	struct smtp_reply	r;
	bool			started;
};
void smtp_reply_init(struct smtp_reply_parser *p);
enum smtp_reply_rc smtp_reply_line(struct smtp_reply_parser *p,
    const char *line, size_t len);

#define EHLO_PIPELINING		0x0001
#define EHLO_SIZE		0x0002
#define EHLO_8BITMIME		0x0004
#define EHLO_STARTTLS		0x0008
#define EHLO_ENHANCED		0x0010
#define EHLO_DSN		0x0020
#define EHLO_SMTPUTF8		0x0040
#define EHLO_AUTH		0x0080
#define EHLO_CHUNKING		0x0100

#define EHLO_AUTH_PLAIN		0x1
#define EHLO_AUTH_LOGIN		0x2
#define EHLO_AUTH_XOAUTH2	0x4

struct smtp_ehlo {
	unsigned	ext;		/* EHLO_* */
	uint64_t	size;		/* SIZE n, 0 = no limit given */
	unsigned	auth;		/* EHLO_AUTH_* */
};

/* Interpret a complete 250 EHLO reply (its text, lines after the first). */
void smtp_ehlo_parse(const struct smtp_reply *r, struct smtp_ehlo *out);

/* The enhanced code's class as a digit: 2, 4 or 5 (from the basic code
 * when there is no enhanced code). */
int smtp_reply_class(const struct smtp_reply *r);

#endif

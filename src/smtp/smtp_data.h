/*
 * smtp_data.h - the DATA phase as a pure state machine.
 *
 * Feeds raw bytes from the wire and produces the message content with
 * dot-stuffing removed (RFC 5321 4.5.2).  Only the exact sequence
 * CRLF "." CRLF ends the data (the leading CRLF may be the one that ended
 * the DATA command line): "\n.\n", "\r.\r", "\r\n.\n" etc. do NOT end it.
 * Any bare CR or bare LF anywhere is remembered in flags; the session then
 * rejects the whole message after the real end (no SMTP smuggling).
 *
 * Limits are counted while streaming; once a limit is exceeded the
 * content is no longer appended (memory stays bounded) but input is
 * still consumed until the end so the session stays in sync.
 *
 * Fuzzed by tests/fuzz/fuzz_smtp_data.c.
 */
#ifndef OMBUD_SMTP_DATA_H
#define OMBUD_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>

#include "common/util.h"

#define SMTP_DATA_BARE_LF	0x01	/* LF not preceded by CR */
#define SMTP_DATA_BARE_CR	0x02	/* CR not followed by LF */
#define SMTP_DATA_TOO_BIG	0x04	/* content > max_size */
#define SMTP_DATA_LONG_LINE	0x08	/* a line > max_line octets */
#define SMTP_DATA_HDR_TOO_BIG	0x10	/* header section > max_header */
#define SMTP_DATA_TOO_MANY_HDRS	0x20	/* > max_header_count fields */
#define SMTP_DATA_NUL		0x40	/* a NUL octet */
#define SMTP_DATA_8BIT		0x80	/* an octet >= 0x80 */

struct smtp_data_limits {
	size_t	max_size;	 /* of the unstuffed content, bytes */
	size_t	max_line;	 /* octets per line, excluding CRLF */
	size_t	max_header;	 /* header section bytes */
	size_t	max_header_count;/* header fields (continuations excluded) */
};

struct smtp_data {
	struct smtp_data_limits lim;
	int		state;		/* private */
	unsigned	flags;		/* SMTP_DATA_* */
	size_t		size;		/* unstuffed bytes seen (even if
					   not stored) */
	size_t		line_len;	/* private */
	bool		in_header;	/* still in the header section */
	size_t		header_bytes;
	size_t		header_count;
};

enum smtp_data_rc {
	SMTP_DATA_MORE = 0,	/* all input consumed, need more */
	SMTP_DATA_DONE,		/* end seen; *consumed says how much */
};

void smtp_data_init(struct smtp_data *d, const struct smtp_data_limits *lim);

/*
 * Consume up to len bytes of in.  Content is appended to out (CRLF line
 * endings preserved, dot-stuffing removed, the final CRLF "." CRLF not
 * included except the CRLF that ends the last line).  *consumed is set to
 * the number of bytes used: all of len for MORE, up to and including the
 * terminating CRLF for DONE (bytes after it belong to the next command).
 */
enum smtp_data_rc smtp_data_feed(struct smtp_data *d, const char *in,
    size_t len, size_t *consumed, struct buf *out);

/* The reply for flags (most important first), or NULL if acceptable. */
const char *smtp_data_reject_reply(unsigned flags);

#endif

/*
 * smtp_data.c - the DATA phase: end-of-data detection, dot-unstuffing and
 * content limits, as a state machine fed with arbitrary chunks.
 *
 * What it does: scans the bytes that follow the 354 reply; ends only on
 * CRLF "." CRLF (the CRLF of the DATA command counts as the first CRLF);
 * removes the leading dot of stuffed lines (RFC 5321 4.5.2); appends the
 * content to the caller's buffer with bulk copies; records in flags what
 * the session must refuse (bare CR or LF, NUL, size, line length, header
 * section size and field count) while still consuming input to the end.
 *
 * Line model: only CRLF ends a line.  A bare CR or bare LF is content (and
 * flagged), so it never starts a new line for dot handling, length
 * counting or the end of the header section.  Lengths are counted on the
 * unstuffed content, which is what is stored and later relayed.
 *
 * What it must never do: end the data on anything but CRLF "." CRLF (SMTP
 * smuggling), give results that depend on how the input was chunked,
 * store more than max_size bytes, or read outside the input given.
 */
#include "smtp/smtp_data.h"
#include "common/log.h"

#include <stdint.h>
#include <string.h>

/* d->state values */
enum {
	D_BOL = 0,	/* at the beginning of a line */
	D_DOT,		/* a '.' began the line (not stored) */
	D_DOT_CR,	/* '.' CR at the beginning of a line */
	D_TEXT,		/* inside a line */
	D_CR,		/* CR inside a line, maybe the end of it */
	D_END,		/* CRLF "." CRLF seen */
};

static size_t
smtp_data_sat_add(size_t a, size_t b)
{
	return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

void
smtp_data_init(struct smtp_data *d, const struct smtp_data_limits *lim)
{
	memset(d, 0, sizeof(*d));
	d->lim = *lim;
	d->state = D_BOL;
	d->in_header = true;
}

/* Append content, never letting the stored part exceed max_size. */
static void
smtp_data_store(struct smtp_data *d, const char *p, size_t n,
    struct buf *out)
{
	size_t room;

	if (d->size < d->lim.max_size) {
		room = d->lim.max_size - d->size;
		buf_add(out, p, n < room ? n : room);
	}
	d->size = smtp_data_sat_add(d->size, n);
	if (d->size > d->lim.max_size)
		d->flags |= SMTP_DATA_TOO_BIG;
}

static bool
smtp_data_has_8bit(const char *p, size_t n)
{
	const uint64_t high = 0x8080808080808080ULL;
	uint64_t w;
	size_t i = 0;

	for (; n - i >= sizeof(w); i += sizeof(w)) {
		memcpy(&w, p + i, sizeof(w));
		if (w & high)
			return true;
	}
	for (; i < n; i++)
		if ((unsigned char)p[i] & 0x80)
			return true;
	return false;
}

/*
 * n > 0 octets of line content (no CRLF).  Counts the header field when
 * they start a line in the header section, the line length and the
 * header size; then stores them.
 */
static void
smtp_data_line(struct smtp_data *d, const char *p, size_t n,
    struct buf *out)
{
	if (d->in_header) {
		if (d->line_len == 0 && p[0] != ' ' && p[0] != '\t') {
			d->header_count++;
			if (d->header_count > d->lim.max_header_count)
				d->flags |= SMTP_DATA_TOO_MANY_HDRS;
		}
		d->header_bytes = smtp_data_sat_add(d->header_bytes, n);
		if (d->header_bytes > d->lim.max_header)
			d->flags |= SMTP_DATA_HDR_TOO_BIG;
	}
	d->line_len = smtp_data_sat_add(d->line_len, n);
	if (d->line_len > d->lim.max_line)
		d->flags |= SMTP_DATA_LONG_LINE;
	smtp_data_store(d, p, n, out);
}

/* A run of line content without CR: flag what it holds, then store. */
static void
smtp_data_run(struct smtp_data *d, const char *p, size_t n, struct buf *out)
{
	if ((d->flags & SMTP_DATA_BARE_LF) == 0 && memchr(p, '\n', n))
		d->flags |= SMTP_DATA_BARE_LF;
	if ((d->flags & SMTP_DATA_NUL) == 0 && memchr(p, '\0', n))
		d->flags |= SMTP_DATA_NUL;
	if ((d->flags & SMTP_DATA_8BIT) == 0 && smtp_data_has_8bit(p, n))
		d->flags |= SMTP_DATA_8BIT;
	smtp_data_line(d, p, n, out);
}

/* A CR that turned out not to be followed by LF. */
static void
smtp_data_bare_cr(struct smtp_data *d, struct buf *out)
{
	d->flags |= SMTP_DATA_BARE_CR;
	smtp_data_line(d, "\r", 1, out);
	d->state = D_TEXT;
}

/* CRLF: the end of a line.  An empty line ends the header section. */
static void
smtp_data_eol(struct smtp_data *d, struct buf *out)
{
	if (d->in_header) {
		if (d->line_len == 0)
			d->in_header = false;
		else {
			d->header_bytes = smtp_data_sat_add(d->header_bytes,
			    2);
			if (d->header_bytes > d->lim.max_header)
				d->flags |= SMTP_DATA_HDR_TOO_BIG;
		}
	}
	d->line_len = 0;
	smtp_data_store(d, "\r\n", 2, out);
	d->state = D_BOL;
}

enum smtp_data_rc
smtp_data_feed(struct smtp_data *d, const char *in, size_t len,
    size_t *consumed, struct buf *out)
{
	const char *p = in, *end = in + len, *cr;

	if (d->state == D_END) {
		*consumed = 0;
		return SMTP_DATA_DONE;
	}
	while (p < end) {
		switch (d->state) {
		case D_BOL:
			if (*p == '.') {
				d->state = D_DOT;
				p++;
			} else
				d->state = D_TEXT;
			break;
		case D_DOT:
			if (*p == '\r') {
				d->state = D_DOT_CR;
				p++;
			} else
				d->state = D_TEXT;	/* dot dropped */
			break;
		case D_DOT_CR:
			if (*p == '\n') {
				d->state = D_END;
				*consumed = (size_t)(p + 1 - in);
				return SMTP_DATA_DONE;
			}
			smtp_data_bare_cr(d, out);	/* dot dropped */
			break;
		case D_CR:
			if (*p == '\n') {
				smtp_data_eol(d, out);
				p++;
			} else
				smtp_data_bare_cr(d, out);
			break;
		case D_TEXT:
			if (*p == '\r') {
				d->state = D_CR;
				p++;
				break;
			}
			cr = memchr(p, '\r', (size_t)(end - p));
			if (cr == NULL)
				cr = end;
			smtp_data_run(d, p, (size_t)(cr - p), out);
			p = cr;
			break;
		default:
			fatalx("smtp_data_feed: bad state %d", d->state);
		}
	}
	*consumed = len;
	return SMTP_DATA_MORE;
}

const char *
smtp_data_reject_reply(unsigned flags)
{
	if (flags & (SMTP_DATA_BARE_LF | SMTP_DATA_BARE_CR))
		return "550 5.6.0 Message contains bare CR or LF; only CRLF "
		    "line endings are allowed";
	if (flags & SMTP_DATA_NUL)
		return "550 5.6.0 Message contains NUL octets";
	if (flags & SMTP_DATA_TOO_BIG)
		return "552 5.3.4 Message size exceeds fixed maximum message "
		    "size";
	if (flags & SMTP_DATA_LONG_LINE)
		return "550 5.6.0 Message has a line longer than the maximum "
		    "line length";
	if (flags & SMTP_DATA_HDR_TOO_BIG)
		return "552 5.3.4 Message header section exceeds maximum size";
	if (flags & SMTP_DATA_TOO_MANY_HDRS)
		return "552 5.3.4 Message has too many header fields";
	return NULL;
}

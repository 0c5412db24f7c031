/*
 * fuzz_smtp_data.c - libFuzzer target for the DATA state machine.
 *
 * Input: byte 0 chooses the chunk sizes, byte 1 the limits, the rest is
 * the data stream.  It is fed once in one piece and once in chunks; the
 * two runs must agree on everything (output, flags, counters, bytes
 * consumed).  Checked with abort(): consumed <= len for every call, all
 * of a chunk consumed unless DONE, stored output bounded by max_size,
 * DONE only right after CRLF "." CRLF, no bare CR/LF or NUL in the
 * output unless flagged.
 *
 * Must never: keep state between inputs.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "smtp/smtp_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_run {
	struct smtp_data	d;
	struct buf		out;
	enum smtp_data_rc	rc;
	size_t			consumed;
};

/* Feed in[0..len) in chunks of 1..max_chunk bytes drawn from seed. */
static void
fuzz_feed(const char *in, size_t len, const struct smtp_data_limits *lim,
    unsigned seed, size_t max_chunk, struct fuzz_run *r)
{
	size_t off = 0, n, used;

	smtp_data_init(&r->d, lim);
	buf_init(&r->out);
	r->rc = SMTP_DATA_MORE;
	r->consumed = 0;
	do {
		seed = seed * 1103515245u + 12345u;
		n = 1 + (size_t)(seed >> 16) % max_chunk;
		if (n > len - off)
			n = len - off;
		used = (size_t)-1;
		r->rc = smtp_data_feed(&r->d, in + off, n, &used, &r->out);
		if (used > n || (r->rc == SMTP_DATA_MORE && used != n))
			abort();
		r->consumed += used;
		off += n;
	} while (r->rc == SMTP_DATA_MORE && off < len);
}

static void
fuzz_check_output(const struct fuzz_run *r)
{
	const char *o = r->out.data;
	size_t i;

	if (r->out.len > r->d.lim.max_size ||
	    r->out.len > r->d.lim.max_size + r->d.lim.max_line)
		abort();
	if (r->out.len != (r->d.size < r->d.lim.max_size ? r->d.size :
	    r->d.lim.max_size))
		abort();
	if (r->d.flags & SMTP_DATA_TOO_BIG)
		return;	/* truncated: may end inside a CRLF */
	for (i = 0; i < r->out.len; i++) {
		if (o[i] == '\n' && (i == 0 || o[i - 1] != '\r') &&
		    !(r->d.flags & SMTP_DATA_BARE_LF))
			abort();
		if (o[i] == '\r' && (i + 1 == r->out.len || o[i + 1] != '\n') &&
		    !(r->d.flags & SMTP_DATA_BARE_CR))
			abort();
		if (o[i] == '\0' && !(r->d.flags & SMTP_DATA_NUL))
			abort();
		if ((o[i] & 0x80) && !(r->d.flags & SMTP_DATA_8BIT))
			abort();
	}
	if (r->rc == SMTP_DATA_DONE && r->out.len > 0 &&
	    (r->out.len < 2 || memcmp(o + r->out.len - 2, "\r\n", 2) != 0))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_data_limits lim;
	struct fuzz_run once, chunked;
	const char *in;
	size_t len, c;

	if (size < 2)
		return 0;
	lim.max_size = 16 + (size_t)(data[1] & 0x3) * 200;
	lim.max_line = 4 + (size_t)((data[1] >> 2) & 0x3) * 40;
	lim.max_header = 8 + (size_t)((data[1] >> 4) & 0x3) * 60;
	lim.max_header_count = 1 + (size_t)(data[1] >> 6) * 3;
	in = (const char *)data + 2;
	len = size - 2;

	fuzz_feed(in, len, &lim, 0, len ? len : 1, &once);
	fuzz_feed(in, len, &lim, data[0], 1 + (data[0] & 0xf), &chunked);

	if (once.rc != chunked.rc || once.consumed != chunked.consumed ||
	    once.out.len != chunked.out.len ||
	    (once.out.len && memcmp(once.out.data, chunked.out.data,
	    once.out.len) != 0) || once.d.flags != chunked.d.flags ||
	    once.d.size != chunked.d.size ||
	    once.d.in_header != chunked.d.in_header ||
	    once.d.header_bytes != chunked.d.header_bytes ||
	    once.d.header_count != chunked.d.header_count)
		abort();
	if (once.rc == SMTP_DATA_MORE && once.consumed != len)
		abort();
	if (once.rc == SMTP_DATA_DONE) {
		/* the end is CRLF "." CRLF, the first CRLF maybe implicit */
		c = once.consumed;
		if (c < 3 || memcmp(in + c - 3, ".\r\n", 3) != 0 ||
		    (c != 3 && (c < 5 || memcmp(in + c - 5, "\r\n", 2) != 0)))
			abort();
	}
	fuzz_check_output(&once);
	fuzz_check_output(&chunked);
	if (smtp_data_reject_reply(once.d.flags & SMTP_DATA_8BIT) != NULL)
		abort();
	if ((once.d.flags & ~SMTP_DATA_8BIT) != 0 &&
	    smtp_data_reject_reply(once.d.flags) == NULL)
		abort();
	buf_free(&once.out);
	buf_free(&chunked.out);
	return 0;
}

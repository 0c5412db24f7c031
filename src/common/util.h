/*
 * util.h - small helpers shared by every module.
 *
 * What it does: allocation that cannot return NULL (out of memory is a
 * broken invariant for a mail gateway: we fatal() rather than limp on),
 * a growable byte buffer, bounded string copies.
 *
 * What it must never do: hide a truncation.  Every bounded copy reports
 * whether it fitted, and callers must check.
 */
#ifndef OMBUD_UTIL_H
#define OMBUD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OMBUD_VERSION "0.1.0"

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Wipe a heap string holding a secret (sodium_memzero), then free it.
 * NULL is fine. */
void free_secret(char *s);

/* Copy src into dst of size dstsz.  Returns false (and leaves dst as an
 * empty string) when src does not fit. */
bool strlcpy_ok(char *dst, const char *src, size_t dstsz);

/* Growable byte buffer.  data is always NUL-terminated (the NUL is not
 * counted in len) so that text held in it can be used as a C string. */
struct buf {
	char	*data;
	size_t	 len;
	size_t	 cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);                  /* len = 0, keeps memory */
void buf_reserve(struct buf *b, size_t extra);  /* room for extra bytes */
void buf_add(struct buf *b, const void *p, size_t n);
void buf_addc(struct buf *b, char c);
void buf_adds(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Monotonic and wall clock helpers. */
/*
 * Host name syntax (RFC 1123): LDH labels of 1..63 bytes, no hyphen at
 * either end of a label, at most 253 bytes, no trailing dot.  *nlabels
 * gets the number of labels, *numeric_tld whether the last one is all
 * digits (then it is no domain name but looks like an address).
 */
bool hostname_syntax_ok(const char *s, size_t n, size_t *nlabels,
    bool *numeric_tld);

int64_t now_usec_wall(void);
int64_t now_msec_mono(void);

/* ASCII-only, locale-independent case-insensitive comparisons. */
int ascii_strcasecmp(const char *a, const char *b);
int ascii_strncasecmp(const char *a, const char *b, size_t n);

/* Write all of buf to fd (retrying on EINTR / short writes). 0 or -1. */
int write_all(int fd, const void *p, size_t n);

#endif

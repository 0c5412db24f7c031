/*
 * log.c - structured logging to stderr, one write(2) per line so that
 * lines from several threads never interleave.
 *
 * Must never: let a peer's bytes end a line or a value early, or make a
 * JSON line that is not valid UTF-8.
 */
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_format	log_fmt = LOG_FMT_TEXT;
static enum log_level	log_min = LOG_LVL_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void
log_init(enum log_format fmt, enum log_level min_level)
{
	log_fmt = fmt;
	log_min = min_level;
}

void log_set_format(enum log_format fmt) { log_fmt = fmt; }
void log_set_level(enum log_level lvl) { log_min = lvl; }
bool log_enabled(enum log_level lvl) { return lvl >= log_min; }

int
log_format_parse(const char *s, enum log_format *out)
{
	if (strcmp(s, "text") == 0)
		*out = LOG_FMT_TEXT;
	else if (strcmp(s, "json") == 0)
		*out = LOG_FMT_JSON;
	else
		return -1;
	return 0;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < nitems(level_names); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

static void
add_timestamp(struct buf *b)
{
	struct timespec ts;
	struct tm tm;
	char tmp[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
	buf_printf(b, "%s.%03ldZ", tmp, ts.tv_nsec / 1000000);
}

/*
 * Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong
 * forms, surrogates or code points past U+10FFFF), or 0.
 */
static size_t
utf8_len(const unsigned char *p)
{
	unsigned char lo = 0x80, hi = 0xbf;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (p[0] >= 0xe0 && p[0] <= 0xef) {
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
		return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ?
		    3 : 0;
	}
	if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
		return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 &&
		    (p[3] & 0xc0) == 0x80 ? 4 : 0;
	}
	return 0;
}

/* JSON string body escaping; also used for text values in quotes. */
static void
add_escaped(struct buf *b, const char *s, bool json)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		if (c == '"' || c == '\\') {
			buf_addc(b, '\\');
			buf_addc(b, (char)c);
		} else if (c == '\n') {
			buf_adds(b, "\\n");
		} else if (c == '\r') {
			buf_adds(b, "\\r");
		} else if (c == '\t') {
			buf_adds(b, "\\t");
		} else if (c < 0x20 || c == 0x7f) {
			buf_printf(b, "\\u%04x", c);
		} else if (c >= 0x80 && json) {
			/* Pass UTF-8 through; a hostile peer's invalid UTF-8
			 * is replaced by its hex so JSON stays valid. */
			size_t n = utf8_len(p);
			if (n == 0) {
				buf_printf(b, "\\\\x%02x", c);
				continue;
			}
			buf_add(b, p, n);
			p += n - 1;
		} else {
			buf_addc(b, (char)c);
		}
	}
}

static bool
text_needs_quotes(const char *s)
{
	if (*s == '\0')
		return true;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' ||
		    *p >= 0x7f)
			return true;
	return false;
}

static void
add_field(struct buf *b, const char *key, const char *val, bool *first)
{
	if (log_fmt == LOG_FMT_JSON) {
		buf_adds(b, ",\"");
		add_escaped(b, key, true);
		buf_adds(b, "\":\"");
		add_escaped(b, val, true);
		buf_addc(b, '"');
	} else {
		if (!*first)
			buf_addc(b, ' ');
		buf_adds(b, key);
		buf_addc(b, '=');
		if (text_needs_quotes(val)) {
			buf_addc(b, '"');
			add_escaped(b, val, false);
			buf_addc(b, '"');
		} else
			buf_adds(b, val);
	}
	*first = false;
}

static void
emit(enum log_level lvl, const char *event, const char *msg, va_list *kv)
{
	struct buf b;
	bool first = true;
	int saved = errno;

	buf_init(&b);
	if (log_fmt == LOG_FMT_JSON) {
		buf_adds(&b, "{\"ts\":\"");
		add_timestamp(&b);
		buf_printf(&b, "\",\"level\":\"%s\"", level_names[lvl]);
		first = false;
	} else {
		add_timestamp(&b);
		buf_printf(&b, " %s ", level_names[lvl]);
	}
	if (event)
		add_field(&b, "event", event, &first);
	if (kv) {
		const char *k, *v;
		while ((k = va_arg(*kv, const char *)) != NULL) {
			v = va_arg(*kv, const char *);
			if (v != NULL)
				add_field(&b, k, v, &first);
		}
	}
	if (msg)
		add_field(&b, "msg", msg, &first);
	if (log_fmt == LOG_FMT_JSON)
		buf_addc(&b, '}');
	buf_addc(&b, '\n');
	(void)write_all(STDERR_FILENO, b.data, b.len);
	buf_free(&b);
	errno = saved;
}

void
log_event(enum log_level lvl, const char *event, ...)
{
	va_list ap;

	if (lvl < log_min)
		return;
	va_start(ap, event);
	emit(lvl, event, NULL, &ap);
	va_end(ap);
}

static void
vlog(enum log_level lvl, bool with_errno, const char *fmt, va_list ap)
{
	char msg[2048];
	int saved = errno;
	int n;

	if (lvl < log_min)
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (with_errno && n >= 0 && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s",
		    strerror(saved));
	emit(lvl, NULL, msg, NULL);
}

#define LOGFN(name, lvl, err)				\
void name(const char *fmt, ...)				\
{							\
	va_list ap;					\
	va_start(ap, fmt);				\
	vlog(lvl, err, fmt, ap);			\
	va_end(ap);					\
}
LOGFN(log_debug, LOG_LVL_DEBUG, false)
LOGFN(log_info, LOG_LVL_INFO, false)
LOGFN(log_warn, LOG_LVL_WARN, true)
LOGFN(log_warnx, LOG_LVL_WARN, false)

void
fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_LVL_ERR, true, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_LVL_ERR, false, fmt, ap);
	va_end(ap);
	exit(1);
}

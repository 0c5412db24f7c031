/*
 * log.h - structured logging: one line per event.
 *
 * Every line carries a timestamp, a level and either an event name with
 * key=value fields (log_event) or a free text message (log_info etc.).
 * Two formats: logfmt-style text (default) and JSON (--log-format=json).
 *
 * Conventions (after OpenSMTPD): log_warn/log_warnx for expected failures
 * that the process survives; fatal/fatalx for broken invariants, which
 * exit.  The *x variants do not append strerror(errno).
 *
 * Must never: log a secret.  Callers pass no password, AUTH payload or key
 * material; values are escaped so a hostile peer cannot forge lines.
 */
#ifndef OMBUD_LOG_H
#define OMBUD_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LVL_DEBUG = 0,
	LOG_LVL_INFO,
	LOG_LVL_WARN,
	LOG_LVL_ERR,
};

enum log_format {
	LOG_FMT_TEXT = 0,
	LOG_FMT_JSON,
};

void log_init(enum log_format fmt, enum log_level min_level);
void log_set_format(enum log_format fmt);
void log_set_level(enum log_level lvl);
int  log_format_parse(const char *s, enum log_format *out);
int  log_level_parse(const char *s, enum log_level *out);
bool log_enabled(enum log_level lvl);

/*
 * log_event(LOG_LVL_INFO, "smtp.accepted", "qid", id, "peer", ip, NULL):
 * key/value pairs of C strings, terminated by a single NULL key.  A NULL
 * value is skipped.
 */
void log_event(enum log_level lvl, const char *event, ...)
    __attribute__((sentinel));

void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

#endif

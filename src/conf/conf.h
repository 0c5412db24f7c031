/*
 * conf.h - ombud.conf: every knob is defined exactly once, in the table
 * in conf.c, with its type, default and one line of documentation
 * (docs/CONFIG.md documents the same keys; a unit test keeps them equal).
 *
 * Syntax: "key = value" lines, '#' comments, and sections
 * "[listener NAME]" that open a listener block.  Keys before the first
 * section are global.  Every error names file, line and key.
 *
 * Must never: accept a value it did not fully parse (no atoi), or start a
 * server with a configuration it reported as broken.
 */
#ifndef OMBUD_CONF_H
#define OMBUD_CONF_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/log.h"

#define CONF_MAX_LISTENERS	16
#define CONF_MAX_NETS		64

enum listener_tls { LTLS_NONE = 0, LTLS_STARTTLS, LTLS_IMPLICIT };

struct cidr {
	int		family;		/* AF_INET or AF_INET6 */
	uint8_t		addr[16];
	unsigned	prefix;
};

struct conf_listener {
	char			name[64];
	char			*address;	/* "host:port", "[v6]:port" */
	enum listener_tls	tls;
	char			*tls_cert;
	char			*tls_key;
	char			*tls_min_version;
	bool			auth;		/* offer AUTH */
	bool			auth_requires_tls;
	size_t			ntrusted;
	struct cidr		trusted[CONF_MAX_NETS];
	int			line;		/* of the [listener] line */
};

struct conf {
	char			*path;
	char			*hostname;
	char			*spool_dir;
	char			*run_dir;
	char			*credentials;
	enum log_format		log_format;
	enum log_level		log_level;
	uint64_t		max_message_size;
	uint64_t		max_recipients;
	uint64_t		max_line_length;
	uint64_t		max_command_line;
	uint64_t		max_header_size;
	uint64_t		max_header_count;
	uint64_t		max_commands;
	uint64_t		max_errors;
	uint64_t		max_sessions;
	uint64_t		max_sessions_per_ip;
	uint64_t		timeout_command;	/* seconds */
	uint64_t		timeout_data;
	uint64_t		timeout_shutdown;
	uint64_t		auth_workers;
	uint64_t		segment_size;
	uint64_t		commit_delay_us;
	size_t			nlisteners;
	struct conf_listener	listeners[CONF_MAX_LISTENERS];
};

/*
 * Parse path.  On success returns a new conf.  On error returns NULL and
 * writes "FILE:LINE: key 'K': reason" into err.
 */
struct conf *conf_load(const char *path, char *err, size_t errlen);
/* The same from memory (used by tests and the fuzzer). */
struct conf *conf_parse(const char *name, const char *text, size_t len,
    char *err, size_t errlen);
void conf_free(struct conf *c);

/* Documentation table, for `ombud config keys` and the docs test. */
struct conf_keydoc {
	const char	*section;	/* "global" or "listener" */
	const char	*key;
	const char	*def;		/* default as text, NULL = none */
	const char	*doc;
};
size_t conf_keydocs(const struct conf_keydoc **out);

bool cidr_parse(const char *s, struct cidr *out);
bool cidr_match(const struct cidr *c, const struct sockaddr *sa);
/* Split "host:port" / "[v6]:port".  0 or -1. */
int conf_split_address(const char *s, char *host, size_t hostlen,
    char *port, size_t portlen);

#endif

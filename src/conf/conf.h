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
#define CONF_MAX_ROUTES		64
#define CONF_SECRET_MAX		4096	/* bytes in a secret file */

enum listener_tls { LTLS_NONE = 0, LTLS_STARTTLS, LTLS_IMPLICIT };

struct cidr {
	int		family;		/* AF_INET or AF_INET6 */
	uint8_t		addr[16];
	unsigned	prefix;
};

/* How an outbound connection uses TLS (mirrors enum mta_tls, which conf
 * does not include to stay free of the delivery code). */
enum route_tls { RTLS_NONE = 0, RTLS_OPPORTUNISTIC, RTLS_REQUIRED,
	RTLS_VERIFY, RTLS_IMPLICIT };

/* A "[route NAME]" section: a smart host that mail can be relayed
 * through (a company's own server, or the platform's upstream). */
struct conf_route {
	char			name[64];
	char			*host;		/* name or IP literal (required) */
	uint64_t		port;		/* default 587 */
	enum route_tls		tls;		/* default verify */
	char			*ca_file;	/* PEM CAs for verify; NULL =
						   the system store */
	char			*auth_user;	/* NULL: no AUTH */
	char			*auth_password;	/* read from auth_password_file
						   at load; wiped on free */
	char			*xoauth2_token_url; /* set: AUTH XOAUTH2 */
	char			*xoauth2_client_id;
	char			*xoauth2_secret;  /* read from
						     xoauth2_secret_file */
	char			*xoauth2_scope;
	uint64_t		max_connections; /* 0: dest_max_connections */
	int			line;		/* of the [route] line */
};

/* Metering and billing (docs/ARCHITECTURE.md, "Metering and billing"). */
enum billing_fee_rule {
	FEE_ANY_DAY = 0,	/* the whole fixed fee for a month with any
				   day on a platform route */
	FEE_PRO_RATA,		/* fixed fee * platform days / days */
};

#define CONF_MAX_PLANS		32

/* A "[plan NAME]" section: the price list in force from month `from`
 * (until the plan with the next later `from`).  Money is in the
 * currency's minor unit (ore for SEK). */
struct conf_plan {
	char			name[64];
	uint64_t		fixed_fee;	/* minor units per month */
	uint64_t		included;	/* emails in the fixed fee */
	uint64_t		extra_price;	/* per extra email, in
						   thousandths of a minor
						   unit (1.2 ore = 1200) */
	char			*currency;	/* ISO 4217, e.g. SEK */
	uint64_t		from;		/* YYYYMM, e.g. 202610 */
	int			line;		/* of the [plan] line */
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

/* bulk_unsubscribe: what bulk mail without List-Unsubscribe gets. */
enum bulk_unsub_mode { BULK_UNSUB_REJECT = 0, BULK_UNSUB_WARN };

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
	enum bulk_unsub_mode	bulk_unsubscribe;
	uint64_t		max_commands;
	uint64_t		max_errors;
	uint64_t		max_sessions;
	uint64_t		max_sessions_per_ip;
	uint64_t		timeout_command;	/* seconds */
	uint64_t		timeout_data;
	uint64_t		timeout_shutdown;
	uint64_t		auth_workers;
	uint64_t		dkim_sign_workers;
	uint64_t		dkim_rotation_grace;	/* seconds */
	uint64_t		domain_check_interval;	/* seconds, 0: never */
	uint64_t		segment_size;
	uint64_t		commit_delay_us;
	/* delivery */
	bool			delivery;	/* no: queue only */
	char			*dns_servers;	/* NULL: resolv.conf */
	/* the platform's SPF record (ombud spf platform-record) */
	size_t			negress;
	struct cidr		egress[CONF_MAX_NETS];
	char			*spf_domain;	/* NULL: not set */
	char			*default_route;	/* "mx" or a route name */
	uint64_t		mx_port;
	enum route_tls		mx_tls;		/* none..verify */
	uint64_t		retry_min;	/* seconds */
	uint64_t		retry_max;
	uint64_t		queue_lifetime;
	uint64_t		delay_warning;	/* 0: never */
	uint64_t		dest_max_connections;
	uint64_t		dest_rate;	/* messages/s, 0: unlimited */
	uint64_t		delivery_max_connections;
	uint64_t		delivery_max_inflight;
	uint64_t		conn_max_messages;
	uint64_t		conn_idle_timeout;
	uint64_t		delivery_timeout_connect;
	uint64_t		delivery_timeout_command;
	uint64_t		delivery_timeout_data;
	char			*oauth_ca_file;	/* NULL: system store */
	/* tenants */
	char			*store;		/* "sqlite:PATH" */
	char			*secret_key_file;
	char			*platform_smarthost_route; /* NULL: none */
	int64_t			authentication_required_from; /* 0: never */
	int64_t			choice_required_from;	/* 0: never */
	size_t			nroutes;
	struct conf_route	routes[CONF_MAX_ROUTES];
	size_t			nlisteners;
	struct conf_listener	listeners[CONF_MAX_LISTENERS];
	/* metering and billing */
	bool			metering;
	uint64_t		metering_backlog_max;
	char			*billing_timezone;
	enum billing_fee_rule	billing_fixed_fee;
	uint64_t		billing_close_after;	/* seconds */
	uint64_t		bulk_sender_threshold;	/* a day, to Gmail */
	size_t			nplans;
	struct conf_plan	plans[CONF_MAX_PLANS];
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
/* The route called name, or NULL. */
const struct conf_route *conf_route_find(const struct conf *c,
    const char *name);

/* The [plan] in force in month (YYYYMM): the one with the latest
 * `from` not after it; NULL if none. */
const struct conf_plan *conf_plan_for(const struct conf *c, uint64_t month);

/* Documentation table, for `ombud config keys` and the docs test. */
struct conf_keydoc {
	const char	*section;	/* "global", "listener", "route" or
					   "plan" */
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

/*
 * conf.c - the configuration file parser and the table of every knob.
 *
 * The table below is the single definition of each key: name, section,
 * type, default and documentation.  Defaults are applied by parsing the
 * default text with the same code as a user's value, so a default can
 * never be something the parser would refuse.  A second, smaller table
 * says where the blocks of each section kind ([listener NAME],
 * [route NAME]) live in struct conf.
 *
 * Must never: put the content of a secret file into an error message (or
 * anywhere but the conf field it belongs to), free a secret without
 * wiping it, or accept a secret file that group or others can read.
 */
#include "conf/conf.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CONF_FILE_MAX	(1024 * 1024)
#define CONF_LINE_MAX	4096
#define CONF_DNS_MAX	1024	/* bytes of dns_servers (dns.c's limit) */
#define DAY		86400

enum ktype { K_STR, K_U64, K_SIZE, K_DURATION, K_BOOL, K_LOGFMT, K_LOGLVL,
	K_TLS, K_NETS,
	K_RTLS,		/* enum route_tls; min..max: the values allowed */
	K_DNS,		/* "127.0.0.1:5353,[::1]:53" */
	K_ROUTEREF,	/* "mx" or the name of a [route] */
	K_HOST,		/* host name or IP address ("[v6]" stored as "v6") */
	K_URL,		/* https://, or http:// to a loopback host */
	K_FILE,		/* path of a readable file */
	K_SECRET,	/* path of a file; the field gets its content */
	K_DATE,		/* int64 unix seconds: YYYY-MM-DD (00:00 UTC) or
			   YYYY-MM-DDTHH:MM:SSZ; "never" = 0 */
	K_UNSUB,	/* enum bulk_unsub_mode: reject or warn */
	K_MONTH,	/* uint64 YYYYMM from "YYYY-MM" */
	K_PRICE,	/* uint64 thousandths from a decimal "1.2" */
	K_FEERULE,	/* enum billing_fee_rule */
	K_TZ,		/* a time zone: tzdata name or POSIX TZ rule */
	K_EGRESS,	/* addresses or CIDR prefixes into conf->egress */
	K_DNSNAME,	/* a DNS name: host name labels that may hold '_' */
};
enum ksect { S_GLOBAL, S_LISTENER, S_ROUTE, S_PLAN };

struct kdef {
	enum ksect	 sect;
	const char	*key;
	enum ktype	 type;
	size_t		 off;
	const char	*def;		/* NULL: no default (required or empty) */
	const char	*doc;
	uint64_t	 min, max;	/* numeric bounds (inclusive) */
};

#define G(k, t, f, d, lo, hi, doc) \
	{ S_GLOBAL, k, t, offsetof(struct conf, f), d, doc, lo, hi }
#define L(k, t, f, d, doc) \
	{ S_LISTENER, k, t, offsetof(struct conf_listener, f), d, doc, 0, 0 }
#define R(k, t, f, d, lo, hi, doc) \
	{ S_ROUTE, k, t, offsetof(struct conf_route, f), d, doc, lo, hi }
#define P(k, t, f, d, lo, hi, doc) \
	{ S_PLAN, k, t, offsetof(struct conf_plan, f), d, doc, lo, hi }

static const struct kdef keys[] = {
	G("hostname", K_STR, hostname, NULL, 0, 0,
	  "Name used in the greeting, EHLO reply and Received headers; "
	  "default: the system host name."),
	G("spool_dir", K_STR, spool_dir, "var/spool", 0, 0,
	  "Directory of the durable message spool."),
	G("run_dir", K_STR, run_dir, "var/run", 0, 0,
	  "Directory of the control socket (ombud.sock) and pid file."),
	G("credentials", K_STR, credentials, NULL, 0, 0,
	  "More SMTP AUTH users besides the tenant database's, without a "
	  "company (the platform's own), e.g. file:var/passwd (lines "
	  "user:argon2id-hash made by `ombud passwd`)."),
	G("log_format", K_LOGFMT, log_format, "text", 0, 0,
	  "text (key=value) or json; --log-format overrides it."),
	G("log_level", K_LOGLVL, log_level, "info", 0, 0,
	  "debug, info, warn or error."),
	G("max_message_size", K_SIZE, max_message_size, "25M", 1024,
	  UINT64_C(1) << 32, "Largest message accepted, in bytes (K, M, G "
	  "suffixes); advertised with SIZE."),
	G("max_recipients", K_U64, max_recipients, "1000", 1, 100000,
	  "Recipients per message; more get 452 4.5.3."),
	G("max_line_length", K_U64, max_line_length, "998", 78, 65536,
	  "Longest line in message content, excluding CRLF (RFC 5322: 998)."),
	G("max_command_line", K_U64, max_command_line, "2048", 512, 65536,
	  "Longest SMTP command line including CRLF."),
	G("max_header_size", K_SIZE, max_header_size, "256K", 1024,
	  UINT64_C(64) << 20, "Largest header section of a message."),
	G("max_header_count", K_U64, max_header_count, "1000", 10, 100000,
	  "Most header fields in a message."),
	G("bulk_unsubscribe", K_UNSUB, bulk_unsubscribe, "reject", 0, 0,
	  "Bulk mail (Precedence: bulk or list, or X-Ombud-Bulk: yes) "
	  "without a List-Unsubscribe field holding an https: or mailto: "
	  "URI: reject (550 5.7.1, Gmail's and Yahoo's bulk-sender rule) or "
	  "warn (accept it, log smtp.bulk_warning)."),
	G("max_commands", K_U64, max_commands, "10000", 10, UINT64_C(1) << 32,
	  "Commands per session before 421 4.7.0 and disconnect."),
	G("max_errors", K_U64, max_errors, "10", 1, 1000,
	  "Error replies per session before 421 4.7.0 and disconnect."),
	G("max_sessions", K_U64, max_sessions, "10000", 1, 1000000,
	  "Concurrent SMTP sessions; more get 421 4.3.2 at connect."),
	G("max_sessions_per_ip", K_U64, max_sessions_per_ip, "500", 1, 1000000,
	  "Concurrent sessions from one client address (IPv6: one /64)."),
	G("timeout_command", K_DURATION, timeout_command, "5m", 1, DAY,
	  "Idle time waiting for a command (s, m, h, d suffixes)."),
	G("timeout_data", K_DURATION, timeout_data, "10m", 1, DAY,
	  "Idle time waiting for more message data."),
	G("timeout_shutdown", K_DURATION, timeout_shutdown, "30s", 0, 3600,
	  "On SIGTERM, how long sessions may finish their transaction."),
	G("auth_workers", K_U64, auth_workers, "2", 1, 64,
	  "Threads verifying passwords (Argon2id is deliberately slow)."),
	G("dkim_sign_workers", K_U64, dkim_sign_workers, "2", 1, 64,
	  "Threads DKIM-signing platform mail before delivery (an RSA-2048 "
	  "signature costs about a millisecond of CPU)."),
	G("dkim_rotation_grace", K_DURATION, dkim_rotation_grace, "7d", 0,
	  365 * DAY, "How long a replaced DKIM key stays published "
	  "(retiring) after its successor starts signing, so that mail "
	  "signed before the switch still verifies."),
	G("domain_check_interval", K_DURATION, domain_check_interval, "1h",
	  0, 30 * DAY, "How often the server checks every domain's SPF, "
	  "DKIM and DMARC records (activating published DKIM keys, marking "
	  "broken domains); 0 = never (only `ombud domain check`)."),
	G("segment_size", K_SIZE, segment_size, "64M", 65536,
	  UINT64_C(16) << 30, "Spool segment file size before rotation."),
	G("commit_delay_us", K_U64, commit_delay_us, "0", 0, 100000,
	  "Microseconds the spool's commit thread waits, when woken from "
	  "idle, for more messages to share one fdatasync (like "
	  "PostgreSQL's commit_delay).  0 = flush at once."),
	G("delivery", K_BOOL, delivery, "yes", 0, 0,
	  "Deliver queued mail; no = accept and queue mail but deliver "
	  "nothing."),
	G("dns_servers", K_DNS, dns_servers, NULL, 0, 0,
	  "Resolvers for MX and address lookups, e.g. "
	  "127.0.0.1:5353,[::1]:53 (port 53 when omitted); default: those "
	  "of /etc/resolv.conf."),
	G("egress_addresses", K_EGRESS, negress, NULL, 0, 0,
	  "IPv4 and IPv6 addresses or CIDR prefixes (comma or space "
	  "separated) the platform relay sends from; `ombud spf "
	  "platform-record` makes the SPF record that authorises them."),
	G("spf_domain", K_DNSNAME, spf_domain, NULL, 0, 0,
	  "The name the platform's SPF record is published at, e.g. "
	  "_spf.mail.example.net (customers then add "
	  "include:_spf.mail.example.net to their own SPF record)."),
	G("default_route", K_ROUTEREF, default_route, "mx", 0, 0,
	  "Where mail goes: mx (straight to the MX hosts of each recipient "
	  "domain) or the name of a [route] section."),
	G("mx_port", K_U64, mx_port, "25", 1, 65535,
	  "TCP port used for MX delivery (tests change it)."),
	G("mx_tls", K_RTLS, mx_tls, "opportunistic", RTLS_NONE, RTLS_VERIFY,
	  "TLS to MX hosts: none, opportunistic (STARTTLS when offered, "
	  "unverified), required (STARTTLS, unverified) or verify (STARTTLS "
	  "and a certificate valid for the MX host name)."),
	G("retry_min", K_DURATION, retry_min, "5m", 1, 30 * DAY,
	  "Delay before the first retry after a temporary failure; each "
	  "later one doubles (with jitter) up to retry_max."),
	G("retry_max", K_DURATION, retry_max, "1h", 1, 30 * DAY,
	  "Longest delay between two delivery attempts (at least "
	  "retry_min)."),
	G("queue_lifetime", K_DURATION, queue_lifetime, "5d", 1, 365 * DAY,
	  "How long a message is retried before it bounces to its sender."),
	G("delay_warning", K_DURATION, delay_warning, "0", 0, 365 * DAY,
	  "Warn the sender when a message has waited this long (shorter "
	  "than queue_lifetime); 0 = never."),
	G("dest_max_connections", K_U64, dest_max_connections, "10", 1, 1000,
	  "Concurrent outbound connections to one destination."),
	G("dest_rate", K_U64, dest_rate, "0", 0, 1000000,
	  "Messages per second to one destination; 0 = unlimited."),
	G("delivery_max_connections", K_U64, delivery_max_connections, "200",
	  1, 100000, "Concurrent outbound connections in all."),
	G("delivery_max_inflight", K_U64, delivery_max_inflight, "2000", 1,
	  1000000, "Messages loaded in memory for delivery at once."),
	G("conn_max_messages", K_U64, conn_max_messages, "100", 1, 100000,
	  "Messages sent over one outbound connection before QUIT."),
	G("conn_idle_timeout", K_DURATION, conn_idle_timeout, "5s", 0, 3600,
	  "How long an idle outbound connection is kept for reuse; 0 = "
	  "close it at once."),
	G("delivery_timeout_connect", K_DURATION, delivery_timeout_connect,
	  "30s", 1, 3600, "Time allowed to connect to a remote server."),
	G("delivery_timeout_command", K_DURATION, delivery_timeout_command,
	  "5m", 1, 3600, "Time allowed for the reply to an outbound SMTP "
	  "command."),
	G("delivery_timeout_data", K_DURATION, delivery_timeout_data, "10m",
	  1, DAY, "Time allowed for the reply to the end of the message "
	  "data."),
	G("oauth_ca_file", K_STR, oauth_ca_file, NULL, 0, 0,
	  "PEM CA file for the OAuth token endpoints (xoauth2_token_url); "
	  "default: the system store."),
	G("store", K_STR, store, "sqlite:var/ombud.db", 0, 0,
	  "The tenant database (companies, domains, users, submission "
	  "credentials): sqlite:PATH."),
	G("secret_key_file", K_STR, secret_key_file, "var/secret.key", 0, 0,
	  "32-byte key (mode 0600, outside the database) that encrypts "
	  "stored secrets such as companies' SMTP passwords; "
	  "`ombud secret-key generate FILE` makes one."),
	G("platform_smarthost_route", K_ROUTEREF, platform_smarthost_route,
	  NULL, 0, 0, "The [route] used by companies whose route is "
	  "platform-smarthost."),
	G("authentication_required_from", K_DATE,
	  authentication_required_from, "never", 0, 0,
	  "From this date (YYYY-MM-DD, UTC), platform-relay mail from a "
	  "domain that does not pass SPF and DKIM is held, not sent."),
	G("choice_required_from", K_DATE, choice_required_from, "never", 0,
	  0, "From this date (YYYY-MM-DD, UTC), companies without a route "
	  "choice cannot submit mail (5.7.1 at RCPT)."),
	G("metering", K_BOOL, metering, "yes", 0, 0,
	  "Count every recipient accepted for delivery on a platform route "
	  "(platform-relay, platform-smarthost) for its company's bill; "
	  "no = count nothing (benchmarks)."),
	G("metering_backlog_max", K_U64, metering_backlog_max, "100000", 1,
	  UINT64_C(100000000), "Accepted messages whose count is not yet "
	  "written (the billing database not answering) at which MAIL gets "
	  "451 4.3.0 until the meter catches up: bounds the meter's memory "
	  "(about 400 bytes a message)."),
	G("billing_timezone", K_TZ, billing_timezone, "Europe/Stockholm", 0,
	  0, "Time zone of the billing day and month (a tzdata name, or a "
	  "POSIX TZ rule such as CET-1CEST,M3.5.0,M10.5.0/3); needs a "
	  "restart."),
	G("billing_fixed_fee", K_FEERULE, billing_fixed_fee, "any-day", 0,
	  0, "any-day: a plan's whole fixed fee for each month in which the "
	  "company was on a platform route on any day; pro-rata: the fee "
	  "times such days over the days of the month."),
	G("billing_close_after", K_DURATION, billing_close_after, "1d", 0,
	  90 * DAY, "How long after a month's end (local midnight) its "
	  "invoices are closed: a report then stores them for good."),
	G("bulk_sender_threshold", K_U64, bulk_sender_threshold, "5000", 1,
	  UINT64_C(1000000000), "Emails a day from one sender domain to "
	  "Gmail (gmail.com, googlemail.com) at which `ombud billing "
	  "usage` flags the domain as a bulk sender."),
	L("address", K_STR, address, NULL,
	  "host:port or [ipv6]:port to listen on (required)."),
	L("tls", K_TLS, tls, "none",
	  "none, starttls (RFC 3207) or implicit (TLS from the first byte)."),
	L("tls_cert", K_STR, tls_cert, NULL,
	  "PEM certificate chain (required when tls is not none)."),
	L("tls_key", K_STR, tls_key, NULL, "PEM private key."),
	L("tls_min_version", K_STR, tls_min_version, "1.2", "1.2 or 1.3."),
	L("auth", K_BOOL, auth, "yes",
	  "Offer SMTP AUTH PLAIN and LOGIN (users: the tenant database's "
	  "submission credentials, and `credentials` if set)."),
	L("auth_requires_tls", K_BOOL, auth_requires_tls, "yes",
	  "Offer and accept AUTH only inside TLS."),
	L("trusted_networks", K_NETS, ntrusted, "",
	  "Client networks (CIDR, comma or space separated) that may submit "
	  "without AUTH, like Postfix's mynetworks.  Everyone else must "
	  "AUTH before MAIL."),
	R("host", K_HOST, host, NULL, 0, 0,
	  "Host name or IP address of the smart host (required)."),
	R("port", K_U64, port, "587", 1, 65535,
	  "TCP port of the smart host."),
	R("tls", K_RTLS, tls, "verify", RTLS_NONE, RTLS_IMPLICIT,
	  "none, opportunistic, required (STARTTLS, unverified), verify "
	  "(STARTTLS and a certificate valid for host) or implicit (TLS "
	  "from the first byte, verified; port 465)."),
	R("ca_file", K_FILE, ca_file, NULL, 0, 0,
	  "PEM CA file to verify the smart host with; default: the system "
	  "store."),
	R("auth_user", K_STR, auth_user, NULL, 0, 0,
	  "User name for AUTH; not set: no AUTH.  AUTH is sent only inside "
	  "TLS unless tls = none."),
	R("auth_password_file", K_SECRET, auth_password, NULL, 0, 0,
	  "File holding the password (read at load; mode 600; one trailing "
	  "newline ignored); required with auth_user unless XOAUTH2 is "
	  "used."),
	R("xoauth2_token_url", K_URL, xoauth2_token_url, NULL, 0, 0,
	  "OAuth 2.0 token endpoint (https://, or http:// to a loopback "
	  "host); set: AUTH XOAUTH2 with a client-credentials token, which "
	  "also needs xoauth2_client_id, xoauth2_secret_file and "
	  "auth_user."),
	R("xoauth2_client_id", K_STR, xoauth2_client_id, NULL, 0, 0,
	  "OAuth client id."),
	R("xoauth2_secret_file", K_SECRET, xoauth2_secret, NULL, 0, 0,
	  "File holding the OAuth client secret (like auth_password_file)."),
	R("xoauth2_scope", K_STR, xoauth2_scope, NULL, 0, 0,
	  "OAuth scope to ask for; default: none."),
	R("max_connections", K_U64, max_connections, "0", 0, 1000,
	  "Concurrent connections to this smart host; 0 = "
	  "dest_max_connections."),
	P("fixed_fee", K_U64, fixed_fee, "0", 0, UINT64_C(1) << 40,
	  "Fixed fee per month in minor units of the currency (50000 = "
	  "500.00 SEK)."),
	P("included", K_U64, included, "0", 0, UINT64_C(1) << 40,
	  "Emails a month included in the fixed fee."),
	P("extra_price", K_PRICE, extra_price, "0", 0, UINT64_C(1) << 40,
	  "Price of each email beyond the included ones, in minor units "
	  "with at most three decimals (1.2 = 1.2 ore), kept exact."),
	P("currency", K_STR, currency, "SEK", 0, 0,
	  "ISO 4217 code of the currency (three capital letters); amounts "
	  "are shown with two decimals."),
	P("from", K_MONTH, from, "1970-01", 0, 0,
	  "First month (YYYY-MM) this plan is in force; it applies until the "
	  "plan with the next later from."),
};

static bool listener_name_ok(const char *name, const char **why);
static bool route_name_ok(const char *name, const char **why);
static bool plan_name_ok(const char *name, const char **why);

/* Where the blocks of each section kind live in struct conf. */
struct sdef {
	const char	*word;		/* "[word NAME]"; the docs' section */
	size_t		 arr;		/* offsetof the array in struct conf */
	size_t		 count;		/* offsetof its size_t count */
	size_t		 size;		/* of one element */
	size_t		 max;
	size_t		 name;		/* offsetof char name[64] in one */
	size_t		 line;		/* offsetof int line in one */
	bool		(*name_ok)(const char *, const char **);
};

static const struct sdef sects[] = {	/* indexed by enum ksect */
	[S_GLOBAL] = { "global", 0, 0, 0, 0, 0, 0, NULL },
	[S_LISTENER] = { "listener", offsetof(struct conf, listeners),
	    offsetof(struct conf, nlisteners), sizeof(struct conf_listener),
	    CONF_MAX_LISTENERS, offsetof(struct conf_listener, name),
	    offsetof(struct conf_listener, line), listener_name_ok },
	[S_ROUTE] = { "route", offsetof(struct conf, routes),
	    offsetof(struct conf, nroutes), sizeof(struct conf_route),
	    CONF_MAX_ROUTES, offsetof(struct conf_route, name),
	    offsetof(struct conf_route, line), route_name_ok },
	[S_PLAN] = { "plan", offsetof(struct conf, plans),
	    offsetof(struct conf, nplans), sizeof(struct conf_plan),
	    CONF_MAX_PLANS, offsetof(struct conf_plan, name),
	    offsetof(struct conf_plan, line), plan_name_ok },
};

#define SECT_NAME_MAX	64
_Static_assert(sizeof(((struct conf_listener *)0)->name) == SECT_NAME_MAX,
    "listener name size");
_Static_assert(sizeof(((struct conf_route *)0)->name) == SECT_NAME_MAX,
    "route name size");
_Static_assert(sizeof(((struct conf_plan *)0)->name) == SECT_NAME_MAX,
    "plan name size");

static const char *const rtls_names[] = { "none", "opportunistic",
    "required", "verify", "implicit" };
_Static_assert(nitems(rtls_names) == RTLS_IMPLICIT + 1, "rtls_names");

struct perr {
	char		*err;
	size_t		 errlen;
	const char	*file;
};

static int
perr_set(struct perr *pe, int line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
perr_set(struct perr *pe, int line, const char *key, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (key)
		snprintf(pe->err, pe->errlen, "%s:%d: key '%s': %s",
		    pe->file, line, key, msg);
	else
		snprintf(pe->err, pe->errlen, "%s:%d: %s", pe->file, line,
		    msg);
	return -1;
}

size_t
conf_keydocs(const struct conf_keydoc **out)
{
	static struct conf_keydoc docs[nitems(keys)];

	for (size_t i = 0; i < nitems(keys); i++) {
		docs[i].section = sects[keys[i].sect].word;
		docs[i].key = keys[i].key;
		docs[i].def = keys[i].def;
		docs[i].doc = keys[i].doc;
	}
	*out = docs;
	return nitems(keys);
}

bool
cidr_parse(const char *s, struct cidr *out)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t hl = slash ? (size_t)(slash - s) : strlen(s);
	unsigned maxp;

	if (hl == 0 || hl >= sizeof(host))
		return false;
	memcpy(host, s, hl);
	host[hl] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, host, out->addr) == 1) {
		out->family = AF_INET;
		maxp = 32;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		out->family = AF_INET6;
		maxp = 128;
	} else
		return false;
	out->prefix = maxp;
	if (slash) {
		char *end;
		unsigned long p;
		if (slash[1] < '0' || slash[1] > '9')
			return false;
		errno = 0;
		p = strtoul(slash + 1, &end, 10);
		if (errno || *end != '\0' || p > maxp)
			return false;
		out->prefix = (unsigned)p;
	}
	return true;
}

static bool
prefix_eq(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
	unsigned bytes = prefix / 8, bits = prefix % 8;

	if (memcmp(a, b, bytes) != 0)
		return false;
	if (bits == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - bits));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

bool
cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	const uint8_t *a;

	if (sa->sa_family == AF_INET) {
		a = (const uint8_t *)&((const struct sockaddr_in *)
		    (const void *)sa)->sin_addr;
		if (c->family == AF_INET)
			return prefix_eq(a, c->addr, c->prefix);
		return false;
	}
	if (sa->sa_family == AF_INET6) {
		a = ((const struct sockaddr_in6 *)(const void *)sa)->
		    sin6_addr.s6_addr;
		if (c->family == AF_INET6)
			return prefix_eq(a, c->addr, c->prefix);
		/* IPv4-mapped IPv6 client against an IPv4 network */
		static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0,
			0, 0, 0xff, 0xff };
		if (c->family == AF_INET && memcmp(a, mapped, 12) == 0)
			return prefix_eq(a + 12, c->addr, c->prefix);
	}
	return false;
}

int
conf_split_address(const char *s, char *host, size_t hostlen, char *port,
    size_t portlen)
{
	const char *colon;
	size_t hl;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || rb[1] != ':')
			return -1;
		hl = (size_t)(rb - s - 1);
		s++;
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || strchr(s, ':') != colon)
			return -1;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= hostlen || strlen(colon + 1) == 0 ||
	    strlen(colon + 1) >= portlen)
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	for (const char *p = port; *p; p++)
		if (*p < '0' || *p > '9')
			return -1;
	if (atol(port) < 1 || atol(port) > 65535)
		return -1;
	return 0;
}

static int
parse_u64(const char *v, uint64_t *out, enum ktype t)
{
	char *end;
	uint64_t n, mul = 1;

	if (*v < '0' || *v > '9')
		return -1;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno)
		return -1;
	if (t == K_SIZE && *end) {
		switch (*end++) {
		case 'k': case 'K': mul = UINT64_C(1) << 10; break;
		case 'm': case 'M': mul = UINT64_C(1) << 20; break;
		case 'g': case 'G': mul = UINT64_C(1) << 30; break;
		default: return -1;
		}
	} else if (t == K_DURATION && *end) {
		switch (*end++) {
		case 's': mul = 1; break;
		case 'm': mul = 60; break;
		case 'h': mul = 3600; break;
		case 'd': mul = 86400; break;
		default: return -1;
		}
	}
	if (*end != '\0' || (n != 0 && mul > UINT64_MAX / n))
		return -1;
	*out = n * mul;
	return 0;
}

/* A list of networks into nets[CONF_MAX_NETS], *n of them. */
static int
parse_nets(const char *v, struct cidr *nets, size_t *n)
{
	char tmp[CONF_LINE_MAX];
	char *save = NULL, *tok;

	if (!strlcpy_ok(tmp, v, sizeof(tmp)))
		return -1;
	*n = 0;
	for (tok = strtok_r(tmp, ", \t", &save); tok;
	    tok = strtok_r(NULL, ", \t", &save)) {
		if (*n == CONF_MAX_NETS)
			return -1;
		if (!cidr_parse(tok, &nets[*n]))
			return -1;
		(*n)++;
	}
	return 0;
}

/* "5d", "1h", "30s": the largest unit that divides n. */
static void
fmt_duration(uint64_t n, char *out, size_t outlen)
{
	if (n != 0 && n % DAY == 0)
		snprintf(out, outlen, "%llud", (unsigned long long)(n / DAY));
	else if (n != 0 && n % 3600 == 0)
		snprintf(out, outlen, "%lluh", (unsigned long long)(n / 3600));
	else if (n != 0 && n % 60 == 0)
		snprintf(out, outlen, "%llum", (unsigned long long)(n / 60));
	else
		snprintf(out, outlen, "%llus", (unsigned long long)n);
}

static void
fmt_bound(const struct kdef *k, uint64_t n, char *out, size_t outlen)
{
	if (k->type == K_DURATION)
		fmt_duration(n, out, outlen);
	else
		snprintf(out, outlen, "%llu", (unsigned long long)n);
}

static bool
is_alnum(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9');
}

static bool
listener_name_ok(const char *name, const char **why)
{
	*why = "1 to 63 characters";
	return name[0] != '\0' && strlen(name) < SECT_NAME_MAX;
}

/* 1 to 63 of A-Z a-z 0-9 _ . - (route and plan names) */
static bool
token_name_ok(const char *name, const char **why)
{
	size_t n = strlen(name);

	*why = "1 to 63 of A-Z a-z 0-9 _ . -";
	if (n == 0 || n >= SECT_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(name[i]) && strchr("_.-", name[i]) == NULL)
			return false;
	return true;
}

static bool
route_name_ok(const char *name, const char **why)
{
	if (!token_name_ok(name, why))
		return false;
	*why = "mx is reserved (default_route = mx: MX delivery)";
	return strcmp(name, "mx") != 0;
}

static bool
plan_name_ok(const char *name, const char **why)
{
	return token_name_ok(name, why);
}

/* LDH labels of 1..63, 253 in all, the last one not all digits. */
static bool
hostname_ok(const char *s, size_t len)
{
	size_t nlabels;
	bool numeric = false;

	return hostname_syntax_ok(s, len, &nlabels, &numeric) && !numeric;
}

/* A host name whose labels may also hold '_' (_spf.example.net). */
static bool
dnsname_ok(const char *s, size_t len)
{
	char tmp[256];

	if (len >= sizeof(tmp))
		return false;
	for (size_t i = 0; i < len; i++)
		tmp[i] = s[i] == '_' ? 'x' : s[i];
	return hostname_ok(tmp, len);
}

/* s[0..len) is an address of family af (v6 bracketed or not). */
static bool
ip_literal(const char *s, size_t len, int af)
{
	char tmp[INET6_ADDRSTRLEN + 2];
	uint8_t a[16];

	if (af == AF_INET6 && len > 2 && s[0] == '[' && s[len - 1] == ']') {
		s++;
		len -= 2;
	}
	if (len == 0 || len >= sizeof(tmp))
		return false;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	return inet_pton(af, tmp, a) == 1;
}

static bool
port_ok(const char *s, size_t len)
{
	uint64_t n = 0;

	if (len == 0 || len > 5)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		n = n * 10 + (uint64_t)(s[i] - '0');
	}
	return n >= 1 && n <= 65535;
}

/* One resolver: ipv4, ipv4:port, ipv6, [ipv6] or [ipv6]:port. */
static bool
dns_server_ok(const char *s, size_t len)
{
	const char *rb, *colon;

	if (len > 0 && s[0] == '[') {
		rb = memchr(s, ']', len);
		if (rb == NULL)
			return false;
		if ((size_t)(rb - s) + 1 == len)
			return ip_literal(s, len, AF_INET6);
		return rb[1] == ':' && ip_literal(s, (size_t)(rb - s) + 1,
		    AF_INET6) && port_ok(rb + 2, len - (size_t)(rb - s) - 2);
	}
	if (ip_literal(s, len, AF_INET6))
		return true;
	colon = memchr(s, ':', len);
	if (colon == NULL)
		return ip_literal(s, len, AF_INET);
	return ip_literal(s, (size_t)(colon - s), AF_INET) &&
	    port_ok(colon + 1, len - (size_t)(colon - s) - 1);
}

static bool
dns_servers_ok(const char *v)
{
	size_t n;

	if (strlen(v) > CONF_DNS_MAX)
		return false;
	for (;;) {
		n = strcspn(v, ",");
		if (!dns_server_ok(v, n))
			return false;
		if (v[n] == '\0')
			return true;
		v += n + 1;
	}
}

static bool
loopback(const char *h, size_t len)
{
	uint8_t a[4];
	char tmp[INET_ADDRSTRLEN];

	if ((len == 9 && ascii_strncasecmp(h, "localhost", 9) == 0) ||
	    (len == 5 && memcmp(h, "[::1]", 5) == 0))
		return true;
	if (len >= sizeof(tmp))
		return false;
	memcpy(tmp, h, len);
	tmp[len] = '\0';
	return inet_pton(AF_INET, tmp, a) == 1 && a[0] == 127;
}

/* NULL if v is an acceptable token endpoint, else why not. */
static const char *
url_problem(const char *v)
{
	const char *h, *rb;
	size_t alen, hlen;
	bool tls;

	for (const char *p = v; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return "contains white space or control characters";
	if (ascii_strncasecmp(v, "https://", 8) == 0)
		h = v + 8, tls = true;
	else if (ascii_strncasecmp(v, "http://", 7) == 0)
		h = v + 7, tls = false;
	else
		return "must start with https:// (or http:// to a loopback "
		    "host)";
	alen = strcspn(h, "/?#");
	if (memchr(h, '@', alen) != NULL)
		return "must not contain user@ or user:password@";
	if (alen > 0 && h[0] == '[') {
		rb = memchr(h, ']', alen);
		hlen = rb ? (size_t)(rb - h) + 1 : 0;
		if (rb == NULL || !ip_literal(h, hlen, AF_INET6))
			return "has a bad host";
	} else {
		hlen = strcspn(h, ":/?#");
		if (!ip_literal(h, hlen, AF_INET) && !hostname_ok(h, hlen))
			return "has a bad host";
	}
	if (hlen < alen && (h[hlen] != ':' ||
	    !port_ok(h + hlen + 1, alen - hlen - 1)))
		return "has a bad port";
	if (!tls && !loopback(h, hlen))
		return "uses http:// to a host that is not loopback (127.x, "
		    "localhost, [::1]): use https://";
	return NULL;
}

/* Opens path for reading, a regular file; -1 with why. */
static int
file_open(const char *path, struct stat *st, char *why, size_t whylen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd == -1) {
		snprintf(why, whylen, "cannot open '%s': %s", path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
		snprintf(why, whylen, "'%s' is not a regular file", path);
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * The content of the secret file path, less one trailing "\n" or "\r\n",
 * into *out.  why never quotes the content.
 */
static int
secret_read(const char *path, char **out, char *why, size_t whylen)
{
	const size_t cap = CONF_SECRET_MAX + 2;
	char *buf = NULL;
	struct stat st;
	size_t n = 0, len;
	ssize_t r;
	int fd;

	if ((fd = file_open(path, &st, why, whylen)) == -1)
		return -1;
	if ((st.st_mode & 077) != 0) {
		snprintf(why, whylen, "'%s' must not be readable by group or "
		    "others (chmod 600)", path);
		goto fail;
	}
	buf = xmalloc(cap);
	while (n <= CONF_SECRET_MAX) {
		r = read(fd, buf + n, CONF_SECRET_MAX + 1 - n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			snprintf(why, whylen, "cannot read '%s': %s", path,
			    strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > CONF_SECRET_MAX) {
		snprintf(why, whylen, "'%s' is larger than %d bytes", path,
		    CONF_SECRET_MAX);
		goto fail;
	}
	len = n;
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && len < n && buf[len - 1] == '\r')
		len--;
	if (len == 0) {
		snprintf(why, whylen, "'%s' is empty", path);
		goto fail;
	}
	if (memchr(buf, '\0', len) != NULL) {
		snprintf(why, whylen, "'%s' contains a NUL byte", path);
		goto fail;
	}
	sodium_memzero(buf + len, n - len);
	buf[len] = '\0';
	close(fd);
	*out = buf;
	return 0;
fail:
	if (buf != NULL) {
		sodium_memzero(buf, cap);
		free(buf);
	}
	close(fd);
	return -1;
}

/* NULL if v names a time zone this system knows, else why not: a tzdata
 * name (a file under $TZDIR or /usr/share/zoneinfo; glibc would fall
 * back to UTC without a word for a missing one) or a POSIX TZ rule
 * ("CET-1CEST,M3.5.0,M10.5.0/3": letters, then an offset). */
static const char *
tz_problem(const char *v)
{
	const char *dir = getenv("TZDIR");
	char path[4096];
	struct stat st;
	size_t n = 0;

	if (strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789_+-/.,:<>") != strlen(v) || strstr(v, "..") != NULL ||
	    v[0] == '/' || v[0] == ':')
		return "is not a time zone name (e.g. Europe/Stockholm)";
	while ((v[n] >= 'A' && v[n] <= 'Z') || (v[n] >= 'a' && v[n] <= 'z'))
		n++;
	if (n >= 3 && (v[n] == '+' || v[n] == '-' || (v[n] >= '0' &&
	    v[n] <= '9')) && strchr(v, '/') == strrchr(v, '/'))
		return NULL;	/* a POSIX rule */
	snprintf(path, sizeof(path), "%s/%s", dir && dir[0] ? dir :
	    "/usr/share/zoneinfo", v);
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return "is not a time zone known to this system (no tzdata "
		    "file; install tzdata or give a POSIX TZ rule)";
	return NULL;
}

/* Checks a text value of type k->type; *out gets what the field holds. */
static int
str_value(const struct kdef *k, const char *v, char **out, char *why,
    size_t whylen)
{
	const char *r = NULL, *rwhy;
	struct stat st;
	size_t len = strlen(v);
	int fd;

	switch (k->type) {
	case K_DNS:
		if (!dns_servers_ok(v))
			r = "is not a list of DNS server addresses (e.g. "
			    "127.0.0.1:5353,[::1]:53)";
		break;
	case K_ROUTEREF:
		if (strcmp(v, "mx") != 0 && !route_name_ok(v, &rwhy))
			r = "is not mx or a route name";
		break;
	case K_HOST:
		if (len > 2 && v[0] == '[' && ip_literal(v, len, AF_INET6)) {
			*out = xstrndup(v + 1, len - 2);
			return 0;
		}
		if (!ip_literal(v, len, AF_INET) &&
		    !ip_literal(v, len, AF_INET6) && !hostname_ok(v, len))
			r = "is not a host name or IP address";
		break;
	case K_URL:
		r = url_problem(v);
		break;
	case K_FILE:
		if ((fd = file_open(v, &st, why, whylen)) == -1)
			return -1;
		close(fd);
		break;
	case K_SECRET:
		return secret_read(v, out, why, whylen);
	case K_TZ:
		r = tz_problem(v);
		break;
	case K_DNSNAME:
		if (!dnsname_ok(v, len))
			r = "is not a domain name";
		break;
	default:
		break;
	}
	if (r != NULL) {
		snprintf(why, whylen, "'%s' %s", v, r);
		return -1;
	}
	*out = xstrdup(v);
	return 0;
}

/* k->type is held in a heap string; K_SECRET ones must be wiped. */
static bool
ktype_string(enum ktype t)
{
	switch (t) {
	case K_STR: case K_DNS: case K_ROUTEREF: case K_HOST: case K_URL:
	case K_FILE: case K_SECRET: case K_TZ: case K_DNSNAME:
		return true;
	default:
		return false;
	}
}

/* "never" (0), "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM:SSZ", UTC. */
static int
parse_date(const char *v, int64_t *out)
{
	struct tm tm;
	const char *end;
	time_t t;

	if (strcmp(v, "never") == 0) {
		*out = 0;
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	end = strptime(v, "%Y-%m-%d", &tm);
	if (end != NULL && *end == 'T')
		end = strptime(end, "T%H:%M:%SZ", &tm);
	if (end == NULL || *end != '\0' || tm.tm_year < 70 ||
	    tm.tm_year > 8099 || strlen(v) < 10 || v[4] != '-' ||
	    v[7] != '-')
		return -1;
	if ((t = timegm(&tm)) == (time_t)-1)
		return -1;
	*out = (int64_t)t;
	return 0;
}

static int
set_rtls(const struct kdef *k, void *field, const char *v, struct perr *pe,
    int line)
{
	char list[128] = "";

	for (uint64_t i = k->min; i <= k->max; i++) {
		if (strcmp(v, rtls_names[i]) == 0) {
			*(enum route_tls *)field = (enum route_tls)i;
			return 0;
		}
		snprintf(list + strlen(list), sizeof(list) - strlen(list),
		    "%s%s", i == k->min ? "" : i == k->max ? " or " : ", ",
		    rtls_names[i]);
	}
	return perr_set(pe, line, k->key, "'%s' is not %s%s", v, list,
	    k->max < RTLS_IMPLICIT && strcmp(v, "implicit") == 0 ?
	    " (implicit TLS is for a [route])" : "");
}

/* "YYYY-MM" as YYYYMM. */
static int
parse_month(const char *v, uint64_t *out)
{
	unsigned y, m;
	char tail;

	if (strlen(v) != 7 || v[4] != '-' || sscanf(v, "%4u-%2u%c", &y, &m,
	    &tail) != 2 || y < 1970 || y > 9999 || m < 1 || m > 12)
		return -1;
	for (int i = 0; i < 7; i++)
		if (i != 4 && (v[i] < '0' || v[i] > '9'))
			return -1;
	*out = (uint64_t)y * 100 + m;
	return 0;
}

/* A decimal with at most three decimals, in thousandths: "1.2" = 1200. */
static int
parse_price(const char *v, uint64_t *out)
{
	const char *dot = strchr(v, '.');
	char whole[24];
	uint64_t n, frac = 0;
	size_t wl = dot ? (size_t)(dot - v) : strlen(v), fl = 0;

	if (wl == 0 || wl >= sizeof(whole))
		return -1;
	memcpy(whole, v, wl);
	whole[wl] = '\0';
	if (parse_u64(whole, &n, K_U64) != 0 || n > (UINT64_C(1) << 40))
		return -1;
	if (dot != NULL) {
		for (fl = 0; dot[1 + fl] != '\0'; fl++) {
			if (fl == 3 || dot[1 + fl] < '0' || dot[1 + fl] > '9')
				return -1;
			frac = frac * 10 + (uint64_t)(dot[1 + fl] - '0');
		}
		if (fl == 0)
			return -1;
	}
	for (; fl < 3; fl++)
		frac *= 10;
	*out = n * 1000 + frac;
	return 0;
}

static int
set_billing_key(const struct kdef *k, void *field, const char *v,
    struct perr *pe, int line)
{
	uint64_t *n = field;

	switch (k->type) {
	case K_MONTH:
		if (parse_month(v, n) != 0)
			return perr_set(pe, line, k->key, "'%s' is not a "
			    "month (YYYY-MM)", v);
		return 0;
	case K_PRICE:
		if (parse_price(v, n) != 0)
			return perr_set(pe, line, k->key, "'%s' is not an "
			    "amount with at most three decimals (e.g. 1.2)",
			    v);
		return 0;
	case K_FEERULE:
		if (strcmp(v, "any-day") == 0)
			*(enum billing_fee_rule *)field = FEE_ANY_DAY;
		else if (strcmp(v, "pro-rata") == 0)
			*(enum billing_fee_rule *)field = FEE_PRO_RATA;
		else
			return perr_set(pe, line, k->key, "'%s' is not "
			    "any-day or pro-rata", v);
		return 0;
	default:
		fatalx("conf: not a billing key type");
	}
}

/* Set one key in obj (a struct conf, conf_listener or conf_route). */
static int
set_key(const struct kdef *k, void *obj, const char *v, struct perr *pe,
    int line)
{
	char *field = (char *)obj + k->off;
	char why[512], lo[32], hi[32], *s;
	char **slot = (char **)(void *)field;
	uint64_t n;
	bool b;

	if (ktype_string(k->type)) {
		if (*v == '\0')
			return perr_set(pe, line, k->key, "empty value");
		if (str_value(k, v, &s, why, sizeof(why)) != 0)
			return perr_set(pe, line, k->key, "%s", why);
		if (k->type == K_SECRET)
			free_secret(*slot);
		else
			free(*slot);
		*slot = s;
		return 0;
	}
	switch (k->type) {
	case K_U64:
	case K_SIZE:
	case K_DURATION:
		if (parse_u64(v, &n, k->type) != 0)
			return perr_set(pe, line, k->key,
			    "'%s' is not a valid %s", v, k->type == K_SIZE ?
			    "size (e.g. 25M)" : k->type == K_DURATION ?
			    "duration (e.g. 30s, 5m, 5d)" : "number");
		if (k->max && (n < k->min || n > k->max)) {
			fmt_bound(k, k->min, lo, sizeof(lo));
			fmt_bound(k, k->max, hi, sizeof(hi));
			return perr_set(pe, line, k->key,
			    "%s is out of range %s..%s", v, lo, hi);
		}
		*(uint64_t *)(void *)field = n;
		return 0;
	case K_BOOL:
		if (!strcmp(v, "yes") || !strcmp(v, "true") ||
		    !strcmp(v, "on"))
			b = true;
		else if (!strcmp(v, "no") || !strcmp(v, "false") ||
		    !strcmp(v, "off"))
			b = false;
		else
			return perr_set(pe, line, k->key,
			    "'%s' is not yes or no", v);
		*(bool *)(void *)field = b;
		return 0;
	case K_LOGFMT:
		if (log_format_parse(v, (enum log_format *)(void *)field))
			return perr_set(pe, line, k->key,
			    "'%s' is not text or json", v);
		return 0;
	case K_LOGLVL:
		if (log_level_parse(v, (enum log_level *)(void *)field))
			return perr_set(pe, line, k->key,
			    "'%s' is not debug, info, warn or error", v);
		return 0;
	case K_TLS:
		if (!strcmp(v, "none"))
			*(enum listener_tls *)(void *)field = LTLS_NONE;
		else if (!strcmp(v, "starttls"))
			*(enum listener_tls *)(void *)field = LTLS_STARTTLS;
		else if (!strcmp(v, "implicit"))
			*(enum listener_tls *)(void *)field = LTLS_IMPLICIT;
		else
			return perr_set(pe, line, k->key,
			    "'%s' is not none, starttls or implicit", v);
		return 0;
	case K_RTLS:
		return set_rtls(k, field, v, pe, line);
	case K_UNSUB:
		if (!strcmp(v, "reject"))
			*(enum bulk_unsub_mode *)(void *)field =
			    BULK_UNSUB_REJECT;
		else if (!strcmp(v, "warn"))
			*(enum bulk_unsub_mode *)(void *)field =
			    BULK_UNSUB_WARN;
		else
			return perr_set(pe, line, k->key,
			    "'%s' is not reject or warn", v);
		return 0;
	case K_DATE:
		if (parse_date(v, (int64_t *)(void *)field) != 0)
			return perr_set(pe, line, k->key,
			    "'%s' is not a date (YYYY-MM-DD or "
			    "YYYY-MM-DDTHH:MM:SSZ, UTC) or never", v);
		return 0;
	case K_MONTH:
	case K_PRICE:
	case K_FEERULE:
		return set_billing_key(k, field, v, pe, line);
	case K_NETS:
	case K_EGRESS:
		if (k->type == K_NETS ? parse_nets(v,
		    ((struct conf_listener *)obj)->trusted,
		    &((struct conf_listener *)obj)->ntrusted) != 0 :
		    parse_nets(v, ((struct conf *)obj)->egress,
		    &((struct conf *)obj)->negress) != 0)
			return perr_set(pe, line, k->key,
			    "'%s' is not a list of networks (e.g. "
			    "127.0.0.0/8, ::1/128), at most %d", v,
			    CONF_MAX_NETS);
		return 0;
	default:
		break;
	}
	fatalx("conf: unknown key type");
}

static void
apply_defaults(void *obj, enum ksect sect)
{
	struct perr pe = { NULL, 0, "default" };
	char err[256];

	pe.err = err;
	pe.errlen = sizeof(err);
	for (size_t i = 0; i < nitems(keys); i++) {
		if (keys[i].sect != sect || keys[i].def == NULL)
			continue;
		if (set_key(&keys[i], obj, keys[i].def, &pe, 0) != 0)
			fatalx("conf: bad built-in default: %s", err);
	}
}

static const struct kdef *
find_key(enum ksect sect, const char *key)
{
	for (size_t i = 0; i < nitems(keys); i++)
		if (keys[i].sect == sect && strcmp(keys[i].key, key) == 0)
			return &keys[i];
	return NULL;
}

/* For "unknown key": where key would have been valid, or "". */
static void
unknown_hint(enum ksect cur, const char *key, char *out, size_t outlen)
{
	char where[64] = "";

	out[0] = '\0';
	if (cur != S_GLOBAL && find_key(S_GLOBAL, key) != NULL) {
		snprintf(out, outlen, " in a %s section (it is global: move "
		    "it above the first section)", sects[cur].word);
		return;
	}
	for (size_t i = S_LISTENER; i < nitems(sects); i++)
		if (i != cur && find_key((enum ksect)i, key) != NULL)
			snprintf(where + strlen(where), sizeof(where) -
			    strlen(where), "%s[%s]", where[0] ? " or " : "",
			    sects[i].word);
	if (where[0] == '\0')
		return;
	if (cur == S_GLOBAL)
		snprintf(out, outlen, " outside a %s section", where);
	else
		snprintf(out, outlen, " in a %s section (it belongs in a %s "
		    "section)", sects[cur].word, where);
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static char *
sect_elem(struct conf *c, const struct sdef *sd, size_t i)
{
	return (char *)c + sd->arr + i * sd->size;
}

/*
 * s is a trimmed line starting with '['.  Opens a new block of its kind
 * (defaults applied) and returns it, its kind in *sect; NULL on error.
 */
static void *
section_open(struct conf *c, char *s, int lineno, struct perr *pe,
    enum ksect *sect)
{
	const struct sdef *sd = NULL;
	char *rb = strchr(s, ']'), *name, *e;
	const char *why;
	size_t *n, wl = 0;

	if (rb != NULL && *trim(rb + 1) == '\0') {
		*rb = '\0';
		for (size_t i = S_LISTENER; i < nitems(sects) && !sd; i++) {
			wl = strlen(sects[i].word);
			if (strncmp(s + 1, sects[i].word, wl) == 0 &&
			    (s[1 + wl] == ' ' || s[1 + wl] == '\t'))
				sd = &sects[i];
		}
	}
	if (sd == NULL) {
		perr_set(pe, lineno, NULL, "bad section header (expected "
		    "[listener NAME], [route NAME] or [plan NAME])");
		return NULL;
	}
	name = trim(s + 1 + wl);
	if (!sd->name_ok(name, &why)) {
		perr_set(pe, lineno, NULL, "bad %s name '%s': %s", sd->word,
		    name, why);
		return NULL;
	}
	n = (size_t *)(void *)((char *)c + sd->count);
	for (size_t i = 0; i < *n; i++)
		if (strcmp(sect_elem(c, sd, i) + sd->name, name) == 0) {
			perr_set(pe, lineno, NULL, "duplicate %s '%s'",
			    sd->word, name);
			return NULL;
		}
	if (*n == sd->max) {
		perr_set(pe, lineno, NULL, "too many %ss (max %zu)",
		    sd->word, sd->max);
		return NULL;
	}
	e = sect_elem(c, sd, (*n)++);
	apply_defaults(e, (enum ksect)(sd - sects));
	strcpy(e + sd->name, name);
	*(int *)(void *)(e + sd->line) = lineno;
	*sect = (enum ksect)(sd - sects);
	return e;
}

static int
check_listener(struct conf *c, struct conf_listener *l, struct perr *pe)
{
	char host[256], port[16];

	if (l->address == NULL)
		return perr_set(pe, l->line, "address",
		    "listener '%s' has no address", l->name);
	if (conf_split_address(l->address, host, sizeof(host), port,
	    sizeof(port)) != 0)
		return perr_set(pe, l->line, "address",
		    "'%s' is not host:port or [ipv6]:port", l->address);
	if (l->tls != LTLS_NONE && (l->tls_cert == NULL ||
	    l->tls_key == NULL))
		return perr_set(pe, l->line, "tls_cert",
		    "listener '%s' uses TLS but has no tls_cert/tls_key",
		    l->name);
	if (strcmp(l->tls_min_version, "1.2") != 0 &&
	    strcmp(l->tls_min_version, "1.3") != 0)
		return perr_set(pe, l->line, "tls_min_version",
		    "'%s' is not 1.2 or 1.3", l->tls_min_version);
	/* AUTH users come from the tenant database (store), and from
	 * `credentials` when set: there is always somewhere to look */
	if (l->auth && l->auth_requires_tls && l->tls == LTLS_NONE &&
	    l->ntrusted == 0)
		return perr_set(pe, l->line, "auth_requires_tls",
		    "listener '%s' requires AUTH, AUTH requires TLS, but "
		    "tls is none: nobody could ever submit", l->name);
	if (!l->auth && l->ntrusted == 0)
		return perr_set(pe, l->line, "auth",
		    "listener '%s' neither offers AUTH nor trusts a "
		    "network: nobody could ever submit", l->name);
	return 0;
}

static int
check_route(const struct conf_route *r, struct perr *pe)
{
	const char *missing;

	if (r->host == NULL)
		return perr_set(pe, r->line, "host", "route '%s' has no host",
		    r->name);
	if (r->xoauth2_token_url || r->xoauth2_client_id ||
	    r->xoauth2_secret || r->xoauth2_scope) {
		missing = !r->xoauth2_token_url ? "xoauth2_token_url" :
		    !r->xoauth2_client_id ? "xoauth2_client_id" :
		    !r->xoauth2_secret ? "xoauth2_secret_file" :
		    !r->auth_user ? "auth_user" : NULL;
		if (missing != NULL)
			return perr_set(pe, r->line, missing, "route '%s' "
			    "uses XOAUTH2 but has no %s", r->name, missing);
		if (r->auth_password != NULL)
			return perr_set(pe, r->line, "auth_password_file",
			    "route '%s' uses XOAUTH2: it takes no "
			    "auth_password_file", r->name);
		return 0;
	}
	if (r->auth_user != NULL && r->auth_password == NULL)
		return perr_set(pe, r->line, "auth_password_file", "route "
		    "'%s' has auth_user but no auth_password_file (or "
		    "xoauth2_*)", r->name);
	if (r->auth_user == NULL && r->auth_password != NULL)
		return perr_set(pe, r->line, "auth_user", "route '%s' has "
		    "auth_password_file but no auth_user", r->name);
	return 0;
}

/* A currency code; no two plans in force from the same month. */
static int
check_plans(const struct conf *c, struct perr *pe)
{
	const struct conf_plan *p;

	for (size_t i = 0; i < c->nplans; i++) {
		p = &c->plans[i];
		if (strlen(p->currency) != 3 || strspn(p->currency,
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3)
			return perr_set(pe, p->line, "currency", "plan '%s': "
			    "'%s' is not a currency code (three capital "
			    "letters, e.g. SEK)", p->name, p->currency);
		for (size_t j = 0; j < i; j++)
			if (c->plans[j].from == p->from)
				return perr_set(pe, p->line, "from", "plans "
				    "'%s' and '%s' are both in force from "
				    "%04u-%02u", c->plans[j].name, p->name,
				    (unsigned)(p->from / 100),
				    (unsigned)(p->from % 100));
	}
	return 0;
}

/* The line where the global key was set, 0 if it was not. */
static int
gline(const int *glines, const char *key)
{
	return glines[find_key(S_GLOBAL, key) - keys];
}

/*
 * Of two global keys that must agree, the one set last in the file (its
 * line in *line; 0 if neither was set).
 */
static const char *
later_key(const int *glines, const char *a, const char *b, int *line)
{
	int la = gline(glines, a), lb = gline(glines, b);

	*line = la > lb ? la : lb;
	return la > lb ? a : b;
}

static int
check_global(const struct conf *c, const int *glines, struct perr *pe)
{
	char a[32], b[32];
	const char *key;
	int line;

	if (!hostname_ok(c->hostname, strlen(c->hostname)))
		return perr_set(pe, gline(glines, "hostname"), "hostname",
		    "'%s' is not a host name (it goes into greetings, EHLO "
		    "and Received headers)", c->hostname);
	if (c->retry_max < c->retry_min) {
		key = later_key(glines, "retry_min", "retry_max", &line);
		fmt_duration(c->retry_max, a, sizeof(a));
		fmt_duration(c->retry_min, b, sizeof(b));
		return perr_set(pe, line, key, "retry_max (%s) is shorter "
		    "than retry_min (%s)", a, b);
	}
	if (c->delay_warning != 0 && c->delay_warning >= c->queue_lifetime) {
		key = later_key(glines, "delay_warning", "queue_lifetime",
		    &line);
		fmt_duration(c->delay_warning, a, sizeof(a));
		fmt_duration(c->queue_lifetime, b, sizeof(b));
		return perr_set(pe, line, key, "delay_warning (%s) must be "
		    "shorter than queue_lifetime (%s)", a, b);
	}
	if (strcmp(c->default_route, "mx") != 0 &&
	    conf_route_find(c, c->default_route) == NULL) {
		return perr_set(pe, gline(glines, "default_route"),
		    "default_route", "there is no "
		    "[route %s] section", c->default_route);
	}
	if (c->platform_smarthost_route != NULL &&
	    conf_route_find(c, c->platform_smarthost_route) == NULL) {
		return perr_set(pe, gline(glines, "platform_smarthost_route"),
		    "platform_smarthost_route", "there is no [route %s] "
		    "section", c->platform_smarthost_route);
	}
	return 0;
}

struct conf *
conf_parse(const char *name, const char *text, size_t len, char *err,
    size_t errlen)
{
	struct conf *c = xcalloc(1, sizeof(*c));
	struct perr pe = { err, errlen, name };
	enum ksect sect = S_GLOBAL;
	void *cur = c;
	int glines[nitems(keys)] = { 0 };
	char line[CONF_LINE_MAX + 1], hint[160];
	size_t pos = 0;
	int lineno = 0;

	c->path = xstrdup(name);
	apply_defaults(c, S_GLOBAL);
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos;
		char *s, *eq, *key, *val;
		const struct kdef *k;

		lineno++;
		if (ll > CONF_LINE_MAX) {
			perr_set(&pe, lineno, NULL, "line too long");
			goto fail;
		}
		memcpy(line, text + pos, ll);
		line[ll] = '\0';
		pos += ll + (nl ? 1 : 0);
		if (memchr(line, '\0', ll) != NULL) {
			perr_set(&pe, lineno, NULL, "NUL byte in line");
			goto fail;
		}
		s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		if (*s == '[') {
			if ((cur = section_open(c, s, lineno, &pe, &sect)) ==
			    NULL)
				goto fail;
			continue;
		}
		eq = strchr(s, '=');
		if (eq == NULL) {
			perr_set(&pe, lineno, NULL,
			    "expected 'key = value'");
			goto fail;
		}
		*eq = '\0';
		key = trim(s);
		val = trim(eq + 1);
		k = find_key(sect, key);
		if (k == NULL) {
			unknown_hint(sect, key, hint, sizeof(hint));
			perr_set(&pe, lineno, key, "unknown key%s", hint);
			goto fail;
		}
		if (set_key(k, cur, val, &pe, lineno) != 0)
			goto fail;
		if (sect == S_GLOBAL)
			glines[k - keys] = lineno;
	}
	if (c->hostname == NULL) {
		char hn[256];
		if (gethostname(hn, sizeof(hn)) != 0)
			strcpy(hn, "localhost");
		hn[sizeof(hn) - 1] = '\0';
		c->hostname = xstrdup(hn);
	}
	if (c->nlisteners == 0) {
		perr_set(&pe, lineno, NULL, "no [listener NAME] section");
		goto fail;
	}
	for (size_t i = 0; i < c->nlisteners; i++)
		if (check_listener(c, &c->listeners[i], &pe) != 0)
			goto fail;
	for (size_t i = 0; i < c->nroutes; i++)
		if (check_route(&c->routes[i], &pe) != 0)
			goto fail;
	if (check_plans(c, &pe) != 0)
		goto fail;
	if (check_global(c, glines, &pe) != 0)
		goto fail;
	return c;
fail:
	conf_free(c);
	return NULL;
}

struct conf *
conf_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	struct conf *c = NULL;
	char *text = NULL;
	size_t n;

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	text = xmalloc(CONF_FILE_MAX + 1);
	n = fread(text, 1, CONF_FILE_MAX + 1, f);
	if (ferror(f)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (n > CONF_FILE_MAX) {
		snprintf(err, errlen, "%s: file larger than %d bytes", path,
		    CONF_FILE_MAX);
		goto fail;
	}
	c = conf_parse(path, text, n, err, errlen);
fail:
	free(text);
	fclose(f);
	return c;
}

static void
free_strings(void *obj, enum ksect sect)
{
	for (size_t i = 0; i < nitems(keys); i++) {
		char **slot = (char **)(void *)((char *)obj + keys[i].off);
		if (keys[i].sect != sect || !ktype_string(keys[i].type))
			continue;
		if (keys[i].type == K_SECRET)
			free_secret(*slot);
		else
			free(*slot);
	}
}

void
conf_free(struct conf *c)
{
	if (c == NULL)
		return;
	for (size_t s = S_LISTENER; s < nitems(sects); s++) {
		size_t n = *(size_t *)(void *)((char *)c + sects[s].count);
		for (size_t i = 0; i < n; i++)
			free_strings(sect_elem(c, &sects[s], i),
			    (enum ksect)s);
	}
	free_strings(c, S_GLOBAL);
	free(c->path);
	free(c);
}

const struct conf_route *
conf_route_find(const struct conf *c, const char *name)
{
	for (size_t i = 0; i < c->nroutes; i++)
		if (strcmp(c->routes[i].name, name) == 0)
			return &c->routes[i];
	return NULL;
}

const struct conf_plan *
conf_plan_for(const struct conf *c, uint64_t month)
{
	const struct conf_plan *best = NULL;

	for (size_t i = 0; i < c->nplans; i++)
		if (c->plans[i].from <= month && (best == NULL ||
		    c->plans[i].from > best->from))
			best = &c->plans[i];
	return best;
}

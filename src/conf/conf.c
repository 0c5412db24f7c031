/*
 * conf.c - the configuration file parser and the table of every knob.
 *
 * The table below is the single definition of each key: name, section,
 * type, default and documentation.  Defaults are applied by parsing the
 * default text with the same code as a user's value, so a default can
 * never be something the parser would refuse.
 */
#include "conf/conf.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONF_FILE_MAX	(1024 * 1024)
#define CONF_LINE_MAX	4096

enum ktype { K_STR, K_U64, K_SIZE, K_DURATION, K_BOOL, K_LOGFMT, K_LOGLVL,
	K_TLS, K_NETS };
enum ksect { S_GLOBAL, S_LISTENER };

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

static const struct kdef keys[] = {
	G("hostname", K_STR, hostname, NULL, 0, 0,
	  "Name used in the greeting, EHLO reply and Received headers; "
	  "default: the system host name."),
	G("spool_dir", K_STR, spool_dir, "var/spool", 0, 0,
	  "Directory of the durable message spool."),
	G("run_dir", K_STR, run_dir, "var/run", 0, 0,
	  "Directory of the control socket (ombud.sock) and pid file."),
	G("credentials", K_STR, credentials, NULL, 0, 0,
	  "Where SMTP AUTH users are looked up, e.g. file:var/passwd "
	  "(lines user:argon2id-hash made by `ombud passwd`)."),
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
	G("max_commands", K_U64, max_commands, "10000", 10, UINT64_C(1) << 32,
	  "Commands per session before 421 4.7.0 and disconnect."),
	G("max_errors", K_U64, max_errors, "10", 1, 1000,
	  "Error replies per session before 421 4.7.0 and disconnect."),
	G("max_sessions", K_U64, max_sessions, "10000", 1, 1000000,
	  "Concurrent SMTP sessions; more get 421 4.3.2 at connect."),
	G("max_sessions_per_ip", K_U64, max_sessions_per_ip, "500", 1, 1000000,
	  "Concurrent sessions from one client address."),
	G("timeout_command", K_DURATION, timeout_command, "5m", 1, 86400,
	  "Idle time waiting for a command (s, m, h suffixes)."),
	G("timeout_data", K_DURATION, timeout_data, "10m", 1, 86400,
	  "Idle time waiting for more message data."),
	G("timeout_shutdown", K_DURATION, timeout_shutdown, "30s", 0, 3600,
	  "On SIGTERM, how long sessions may finish their transaction."),
	G("auth_workers", K_U64, auth_workers, "2", 1, 64,
	  "Threads verifying passwords (Argon2id is deliberately slow)."),
	G("segment_size", K_SIZE, segment_size, "64M", 65536,
	  UINT64_C(16) << 30, "Spool segment file size before rotation."),
	G("commit_delay_us", K_U64, commit_delay_us, "0", 0, 100000,
	  "Microseconds the spool's commit thread waits, when woken from "
	  "idle, for more messages to share one fdatasync (like "
	  "PostgreSQL's commit_delay).  0 = flush at once."),
	L("address", K_STR, address, NULL,
	  "host:port or [ipv6]:port to listen on (required)."),
	L("tls", K_TLS, tls, "none",
	  "none, starttls (RFC 3207) or implicit (TLS from the first byte)."),
	L("tls_cert", K_STR, tls_cert, NULL,
	  "PEM certificate chain (required when tls is not none)."),
	L("tls_key", K_STR, tls_key, NULL, "PEM private key."),
	L("tls_min_version", K_STR, tls_min_version, "1.2", "1.2 or 1.3."),
	L("auth", K_BOOL, auth, "yes",
	  "Offer SMTP AUTH PLAIN and LOGIN (needs global credentials)."),
	L("auth_requires_tls", K_BOOL, auth_requires_tls, "yes",
	  "Offer and accept AUTH only inside TLS."),
	L("trusted_networks", K_NETS, ntrusted, "",
	  "Client networks (CIDR, comma or space separated) that may submit "
	  "without AUTH, like Postfix's mynetworks.  Everyone else must "
	  "AUTH before MAIL."),
};

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
		docs[i].section = keys[i].sect == S_GLOBAL ? "global" :
		    "listener";
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

static int
parse_nets(const char *v, struct conf_listener *l)
{
	char tmp[CONF_LINE_MAX];
	char *save = NULL, *tok;

	if (!strlcpy_ok(tmp, v, sizeof(tmp)))
		return -1;
	l->ntrusted = 0;
	for (tok = strtok_r(tmp, ", \t", &save); tok;
	    tok = strtok_r(NULL, ", \t", &save)) {
		if (l->ntrusted == CONF_MAX_NETS)
			return -1;
		if (!cidr_parse(tok, &l->trusted[l->ntrusted]))
			return -1;
		l->ntrusted++;
	}
	return 0;
}

/* Set one key in obj (a struct conf or struct conf_listener). */
static int
set_key(const struct kdef *k, void *obj, const char *v, struct perr *pe,
    int line)
{
	char *field = (char *)obj + k->off;
	uint64_t n;
	bool b;

	switch (k->type) {
	case K_STR:
		if (*v == '\0')
			return perr_set(pe, line, k->key, "empty value");
		free(*(char **)(void *)field);
		*(char **)(void *)field = xstrdup(v);
		return 0;
	case K_U64:
	case K_SIZE:
	case K_DURATION:
		if (parse_u64(v, &n, k->type) != 0)
			return perr_set(pe, line, k->key,
			    "'%s' is not a valid %s", v, k->type == K_SIZE ?
			    "size (e.g. 25M)" : k->type == K_DURATION ?
			    "duration (e.g. 30s, 5m)" : "number");
		if (k->max && (n < k->min || n > k->max))
			return perr_set(pe, line, k->key,
			    "%s is out of range %llu..%llu", v,
			    (unsigned long long)k->min,
			    (unsigned long long)k->max);
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
	case K_NETS:
		if (parse_nets(v, (struct conf_listener *)obj) != 0)
			return perr_set(pe, line, k->key,
			    "'%s' is not a list of networks (e.g. "
			    "127.0.0.0/8, ::1/128), at most %d", v,
			    CONF_MAX_NETS);
		return 0;
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
	if (l->auth && c->credentials == NULL)
		return perr_set(pe, l->line, "auth",
		    "listener '%s' offers AUTH but no global credentials "
		    "are configured", l->name);
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

struct conf *
conf_parse(const char *name, const char *text, size_t len, char *err,
    size_t errlen)
{
	struct conf *c = xcalloc(1, sizeof(*c));
	struct perr pe = { err, errlen, name };
	struct conf_listener *cur = NULL;
	char line[CONF_LINE_MAX + 1];
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
			char *rb = strchr(s, ']');
			if (rb == NULL || *trim(rb + 1) != '\0' ||
			    strncmp(s, "[listener ", 10) != 0) {
				perr_set(&pe, lineno, NULL, "bad section "
				    "header (expected [listener NAME])");
				goto fail;
			}
			*rb = '\0';
			key = trim(s + 10);
			if (*key == '\0' || strlen(key) >=
			    sizeof(cur->name)) {
				perr_set(&pe, lineno, NULL,
				    "bad listener name");
				goto fail;
			}
			for (size_t i = 0; i < c->nlisteners; i++)
				if (!strcmp(c->listeners[i].name, key)) {
					perr_set(&pe, lineno, NULL,
					    "duplicate listener '%s'", key);
					goto fail;
				}
			if (c->nlisteners == CONF_MAX_LISTENERS) {
				perr_set(&pe, lineno, NULL,
				    "too many listeners (max %d)",
				    CONF_MAX_LISTENERS);
				goto fail;
			}
			cur = &c->listeners[c->nlisteners++];
			apply_defaults(cur, S_LISTENER);
			strcpy(cur->name, key);
			cur->line = lineno;
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
		k = find_key(cur ? S_LISTENER : S_GLOBAL, key);
		if (k == NULL) {
			perr_set(&pe, lineno, key, "unknown key%s",
			    find_key(cur ? S_GLOBAL : S_LISTENER, key) ?
			    (cur ? " in a listener section (it is global: "
			    "move it above the first [listener])" :
			    " outside a [listener] section") : "");
			goto fail;
		}
		if (set_key(k, cur ? (void *)cur : (void *)c, val, &pe,
		    lineno) != 0)
			goto fail;
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
	for (size_t i = 0; i < nitems(keys); i++)
		if (keys[i].sect == sect && keys[i].type == K_STR)
			free(*(char **)(void *)((char *)obj + keys[i].off));
}

void
conf_free(struct conf *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nlisteners; i++)
		free_strings(&c->listeners[i], S_LISTENER);
	free_strings(c, S_GLOBAL);
	free(c->path);
	free(c);
}

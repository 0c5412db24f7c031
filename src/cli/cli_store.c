/*
 * cli_store.c - the parts the tenant administration commands share: one
 * option parser for all of them, the configuration and the store it
 * names (store, secret_key_file), the acting user for the audit log,
 * argument checks with messages that name the option, secrets read from
 * stdin or a file, and text or JSON output.
 *
 * Must never: take a secret from the command line (it would show in ps
 * and the shell history), print one, or leave one in a buffer of ours
 * that is not wiped; print bytes from the database to a terminal
 * without neutralising control characters.
 */
#include "cli/cli.h"
#include "cli/cli_store.h"
#include "common/log.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

static const struct {
	const char	*name;
	bool		 value;		/* takes an argument */
} cli_opts[OPT__COUNT] = {
	[OPT_JSON] = { "json", false },
	[OPT_ACTOR] = { "actor", true },
	[OPT_REFERENCE] = { "reference", true },
	[OPT_NAME] = { "name", true },
	[OPT_COMPANY] = { "company", true },
	[OPT_EMAIL] = { "email", true },
	[OPT_ROUTE] = { "route", true },
	[OPT_FROM] = { "from", true },
	[OPT_HOST] = { "host", true },
	[OPT_PORT] = { "port", true },
	[OPT_TLS] = { "tls", true },
	[OPT_AUTH_USER] = { "auth-user", true },
	[OPT_PASSWORD_STDIN] = { "password-stdin", false },
	[OPT_PASSWORD_FILE] = { "password-file", true },
	[OPT_TOKEN_URL] = { "xoauth2-token-url", true },
	[OPT_CLIENT_ID] = { "xoauth2-client-id", true },
	[OPT_CLIENT_SECRET_STDIN] = { "client-secret-stdin", false },
	[OPT_SCOPE] = { "xoauth2-scope", true },
	[OPT_CSV] = { "csv", true },
	[OPT_DRY_RUN] = { "dry-run", false },
	[OPT_APPLICATION] = { "application", true },
	[OPT_USERNAME] = { "username", true },
	[OPT_GENERATE] = { "generate", false },
	[OPT_SPF] = { "spf", true },
	[OPT_DKIM] = { "dkim", true },
	[OPT_ALGORITHM] = { "algorithm", true },
	[OPT_BITS] = { "bits", true },
	[OPT_SELECTOR] = { "selector", true },
	[OPT_MONTH] = { "month", true },
	[OPT_FORMAT] = { "format", true },
};

static const char *const cli_tls_names[] = {
	[RTLS_NONE] = "none",
	[RTLS_OPPORTUNISTIC] = "opportunistic",
	[RTLS_REQUIRED] = "required",
	[RTLS_VERIFY] = "verify",
	[RTLS_IMPLICIT] = "implicit",
};

static void
cli_vmsg(const struct cli_args *a, const char *fmt, va_list ap)
{
	fprintf(stderr, "ombud %s: ", a->cmd);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

int
cli_usage_error(const struct cli_args *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cli_vmsg(a, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s", a->usage);
	return 2;
}

int
cli_fail(const struct cli_args *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cli_vmsg(a, fmt, ap);
	va_end(ap);
	return 1;
}

bool
cli_has(const struct cli_args *a, enum cli_opt o)
{
	return (a->given & OPTB(o)) != 0;
}

/* The option called name (len bytes), or -1. */
static int
cli_opt_find(const char *name, size_t len)
{
	for (int i = 0; i < OPT__COUNT; i++)
		if (strlen(cli_opts[i].name) == len &&
		    strncmp(cli_opts[i].name, name, len) == 0)
			return i;
	return -1;
}

int
cli_args_parse(struct cli_args *a, const char *cmd, const char *usage,
    unsigned allowed, int minpos, int maxpos, int argc, char **argv)
{
	bool opts = true;

	memset(a, 0, sizeof(*a));
	a->cmd = cmd;
	a->usage = usage;
	allowed |= OPTB(OPT_JSON);
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *eq;
		size_t len;
		int o;

		if (opts && strcmp(arg, "--") == 0) {
			opts = false;
			continue;
		}
		if (opts && (strcmp(arg, "-h") == 0 ||
		    strcmp(arg, "--help") == 0)) {
			printf("%s", usage);
			return -1;
		}
		if (!opts || arg[0] != '-' || arg[1] == '\0') {
			if (a->npos == maxpos || a->npos == CLI_POS_MAX)
				return cli_usage_error(a, "unexpected "
				    "argument '%s'", arg);
			a->pos[a->npos++] = argv[i];
			continue;
		}
		if (arg[1] != '-')
			return cli_usage_error(a, "unknown option '%s'", arg);
		eq = strchr(arg + 2, '=');
		len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
		o = cli_opt_find(arg + 2, len);
		if (o < 0 || !(allowed & OPTB(o)))
			return cli_usage_error(a, "unknown option '%.*s'",
			    (int)len + 2, arg);
		if (a->given & OPTB(o))
			return cli_usage_error(a, "--%s given twice",
			    cli_opts[o].name);
		a->given |= OPTB(o);
		if (!cli_opts[o].value) {
			if (eq)
				return cli_usage_error(a, "--%s takes no "
				    "value", cli_opts[o].name);
			continue;
		}
		if (eq)
			a->val[o] = eq + 1;
		else if (i + 1 < argc)
			a->val[o] = argv[++i];
		else
			return cli_usage_error(a, "--%s needs a value",
			    cli_opts[o].name);
	}
	if (a->npos < minpos)
		return cli_usage_error(a, "missing argument");
	return 0;
}

int
cli_dispatch(const struct cli_verb *verbs, size_t nverbs, const char *usage,
    int argc, char **argv)
{
	const char *conf = cli_config_path(&argc, argv);
	const char *verb = argc > 1 ? argv[1] : "";

	for (size_t i = 0; i < nverbs; i++)
		if (strcmp(verb, verbs[i].name) == 0)
			return verbs[i].fn(conf, argc - 1, argv + 1);
	if (strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0) {
		printf("%s", usage);
		return 0;
	}
	if (*verb != '\0')
		fprintf(stderr, "ombud %s: unknown command '%s'\n", argv[0],
		    verb);
	fprintf(stderr, "%s", usage);
	return 2;
}

int
cli_list(const char *cmd, const char *usage, const char *header,
    bool by_company, cli_list_fn run, const char *conf, int argc,
    char **argv)
{
	struct cli_args a;
	struct cli_store cs;
	json_t *arr = NULL;
	const char *company;
	int rc;

	if ((rc = cli_args_parse(&a, cmd, usage, by_company ?
	    OPTB(OPT_COMPANY) : 0, 0, 0, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	company = a.val[OPT_COMPANY];
	if (company != NULL && !cli_check_id(&a, "--company", company))
		return 1;
	if ((rc = cli_store_open(&cs, &a, conf)) != 0)
		return rc;
	if (cli_has(&a, OPT_JSON))
		arr = json_array();
	else
		printf("%s\n", header);
	if ((rc = run(cs.st, company, arr)) != STORE_OK) {
		rc = rc == STORE_NOTFOUND && company != NULL ? cli_fail(&a,
		    "company '%s' not found", company) :
		    cli_store_fail(&cs, &a, rc, "%s", cmd);
		goto fail;
	}
	cli_json_print(arr);
	arr = NULL;
	rc = 0;
fail:
	json_decref(arr);
	cli_store_close(&cs);
	return rc;
}

/* Length of the valid UTF-8 sequence at s (no overlong forms,
 * surrogates or code points above U+10FFFF), 0 if it is not one. */
static size_t
cli_utf8_len(const unsigned char *s)
{
	uint32_t cp;
	size_t n;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

bool
cli_check_text(const struct cli_args *a, const char *opt, const char *v,
    size_t max, bool empty_ok)
{
	size_t len = strlen(v), n;

	if (len == 0 && !empty_ok) {
		cli_fail(a, "%s: empty", opt);
		return false;
	}
	if (len > max) {
		cli_fail(a, "%s: longer than %zu bytes", opt, max);
		return false;
	}
	for (const unsigned char *p = (const unsigned char *)v; *p; p += n) {
		if (*p < 0x20 || *p == 0x7f) {
			cli_fail(a, "%s: contains a control character", opt);
			return false;
		}
		if ((n = cli_utf8_len(p)) == 0) {
			cli_fail(a, "%s: not valid UTF-8", opt);
			return false;
		}
	}
	return true;
}

bool
cli_check_id(const struct cli_args *a, const char *opt, const char *v)
{
	size_t len = strlen(v);

	if (len == 0 || len > STORE_ID_MAX ||
	    strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-") != len ||
	    v[0] == '-') {
		cli_fail(a, "%s: '%s' is not a company id (1 to %d of a-z, "
		    "0-9 and '-', not starting with '-')", opt, len <=
		    STORE_ID_MAX ? v : "...", STORE_ID_MAX);
		return false;
	}
	return true;
}

/* A DNS name: labels of letters, digits and '-' (not at either end), at
 * most 63 bytes each and 253 in all, the last one not only digits;
 * dots: at least one. */
static bool
cli_dns_name(const char *s, bool need_dot)
{
	size_t len = strlen(s), lab = 0;
	bool digits = true, dot = false;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char ch = i < len ? s[i] : '.';

		if (ch == '.') {
			if (lab == 0 || s[i - 1] == '-')
				return false;
			if (i == len)
				return !digits && (dot || !need_dot);
			dot = true;
			lab = 0;
			digits = true;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-') ||
		    (lab == 0 && ch == '-') || ++lab > 63)
			return false;
		if (ch < '0' || ch > '9')
			digits = false;
	}
	return false;
}

bool
cli_check_domain(const struct cli_args *a, const char *opt, const char *v)
{
	if (cli_dns_name(v, true))
		return true;
	cli_fail(a, "%s: '%.*s' is not a domain name (ASCII labels of "
	    "letters, digits and '-', with a dot, at most 253 bytes)", opt,
	    64, v);
	return false;
}

bool
cli_check_email(const struct cli_args *a, const char *opt, const char *v)
{
	const char *at = strrchr(v, '@');
	size_t len = strlen(v), n;

	if (len > STORE_NAME_MAX || at == NULL || at == v ||
	    at - v > 64 || !cli_dns_name(at + 1, true))
		goto bad;
	for (const unsigned char *p = (const unsigned char *)v;
	    p < (const unsigned char *)at; p += n)
		if (*p <= 0x20 || *p == 0x7f ||
		    strchr("<>()[]\\,;:\"@", *p) != NULL ||
		    (n = cli_utf8_len(p)) == 0)
			goto bad;
	return true;
bad:
	cli_fail(a, "%s: '%.*s' is not an email address (local@domain, "
	    "at most %d bytes)", opt, 80, v, STORE_NAME_MAX);
	return false;
}

bool
cli_check_host(const struct cli_args *a, const char *opt, const char *v)
{
	unsigned char addr[16];

	if (cli_dns_name(v, false) || inet_pton(AF_INET, v, addr) == 1 ||
	    inet_pton(AF_INET6, v, addr) == 1)
		return true;
	cli_fail(a, "%s: '%.*s' is not a host name or IP address", opt, 64,
	    v);
	return false;
}

bool
cli_check_url(const struct cli_args *a, const char *opt, const char *v)
{
	const char *h, *why = NULL;
	size_t alen;

	if (strlen(v) > STORE_URL_MAX)
		why = "too long";
	for (const char *p = v; why == NULL && *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			why = "contains white space, control or non-ASCII "
			    "characters";
	if (why != NULL)
		goto bad;
	if (ascii_strncasecmp(v, "https://", 8) == 0)
		h = v + 8;
	else if (ascii_strncasecmp(v, "http://", 7) == 0) {
		h = v + 7;
		if (strncmp(h, "127.", 4) != 0 &&
		    ascii_strncasecmp(h, "localhost", 9) != 0 &&
		    strncmp(h, "[::1]", 5) != 0) {
			why = "http:// only to a loopback host: use https://";
			goto bad;
		}
	} else {
		why = "must start with https://";
		goto bad;
	}
	alen = strcspn(h, "/?#");
	if (alen == 0)
		why = "has no host";
	else if (memchr(h, '@', alen) != NULL)
		why = "must not contain user@ or user:password@";
	if (why == NULL)
		return true;
bad:
	cli_fail(a, "%s: %s", opt, why);
	return false;
}

bool
cli_parse_int64(const char *v, int64_t *out)
{
	int64_t n = 0;

	if (*v == '\0' || strlen(v) > 18)
		return false;
	for (; *v; v++) {
		if (*v < '0' || *v > '9')
			return false;
		n = n * 10 + (*v - '0');
	}
	*out = n;
	return true;
}

bool
cli_parse_port(const struct cli_args *a, const char *v, uint16_t *out)
{
	int64_t n;

	if (!cli_parse_int64(v, &n) || n < 1 || n > 65535) {
		cli_fail(a, "--port: '%.*s' is not a port (1-65535)", 16, v);
		return false;
	}
	*out = (uint16_t)n;
	return true;
}

const char *
cli_tls_name(enum route_tls t)
{
	if ((size_t)t < nitems(cli_tls_names))
		return cli_tls_names[t];
	return "unknown";
}

bool
cli_parse_tls(const struct cli_args *a, const char *v, enum route_tls *out)
{
	for (size_t i = 0; i < nitems(cli_tls_names); i++)
		if (strcmp(v, cli_tls_names[i]) == 0) {
			*out = (enum route_tls)i;
			return true;
		}
	cli_fail(a, "--tls: '%.*s' is not one of none, opportunistic, "
	    "required, verify, implicit", 32, v);
	return false;
}

bool
cli_parse_route(const struct cli_args *a, const char *v, bool user_ok,
    enum route_kind *out)
{
	enum route_kind k;

	if (route_kind_parse(v, &k) == 0 && (user_ok ?
	    k != ROUTE_NONE : k != USER_ROUTE_COMPANY)) {
		*out = k;
		return true;
	}
	cli_fail(a, "route '%.*s' is not one of %s", 32, v, user_ok ?
	    "company, own-server, platform-relay, platform-smarthost" :
	    "none, own-server, platform-relay, platform-smarthost");
	return false;
}

int
cli_store_open(struct cli_store *cs, const struct cli_args *a,
    const char *conf_path)
{
	char err[1024];
	const char *key;
	struct passwd *pw;
	struct stat sb;

	memset(cs, 0, sizeof(*cs));
	if (cli_has(a, OPT_ACTOR)) {
		if (!cli_check_text(a, "--actor", a->val[OPT_ACTOR],
		    STORE_ACTOR_MAX, false))
			goto fail;
		strlcpy_ok(cs->actor, a->val[OPT_ACTOR], sizeof(cs->actor));
	} else if ((pw = getpwuid(getuid())) != NULL &&
	    strlcpy_ok(cs->actor, pw->pw_name, sizeof(cs->actor)))
		;
	else
		snprintf(cs->actor, sizeof(cs->actor), "uid:%u",
		    (unsigned)getuid());
	if (cli_has(a, OPT_REFERENCE) && !cli_check_text(a, "--reference",
	    a->val[OPT_REFERENCE], STORE_REF_MAX, false))
		goto fail;
	if ((cs->conf = conf_load(conf_path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s\n", err);
		goto fail;
	}
	log_init(LOG_FMT_TEXT, LOG_LVL_WARN);
	/* Without the key, everything but the secrets still works; the
	 * store refuses those and cli_store_fail says why. */
	key = cs->conf->secret_key_file;
	if (key != NULL && stat(key, &sb) != 0 && errno == ENOENT) {
		cs->key_missing = true;
		key = NULL;
	}
	if ((cs->st = store_open(cs->conf->store, key, err,
	    sizeof(err))) == NULL) {
		cli_fail(a, "cannot open the store '%s': %s",
		    cs->conf->store, err);
		goto fail;
	}
	return 0;
fail:
	cli_store_close(cs);
	return 1;
}

void
cli_store_close(struct cli_store *cs)
{
	if (cs->st != NULL)
		store_close(cs->st);
	if (cs->conf != NULL)
		conf_free(cs->conf);
	cs->st = NULL;
	cs->conf = NULL;
}

int
cli_store_fail(const struct cli_store *cs, const struct cli_args *a, int rc,
    const char *fmt, ...)
{
	char what[512];
	const char *why;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	switch (rc) {
	case STORE_NOTFOUND:
		return cli_fail(a, "%s not found", what);
	case STORE_EXISTS:
		return cli_fail(a, "%s already exists", what);
	default:
		why = cs->st ? store_error(cs->st) : NULL;
		cli_fail(a, "%s: %s%s", what, rc == STORE_INVALID ?
		    "invalid: " : "", why && *why ? why : "store error");
		if (rc == STORE_ERROR && cs->key_missing)
			fprintf(stderr, "ombud %s: (secret_key_file '%s' does "
			    "not exist: make it with `ombud secret-key "
			    "generate`)\n", a->cmd,
			    cs->conf->secret_key_file);
		return 1;
	}
}

/* Read one line from fd into buf (cap bytes, the last for the NUL);
 * *n gets its length without the newline.  0, or -1 with the reason. */
static int
cli_read_line(int fd, char *buf, size_t cap, size_t *n, bool whole_file,
    const char **why)
{
	size_t len = 0;
	ssize_t r;
	char ch;

	for (;;) {
		/* one byte at a time: no buffer of ours holds more of the
		 * input than the secret itself */
		if ((r = read(fd, &ch, 1)) < 0) {
			if (errno == EINTR)
				continue;
			*why = strerror(errno);
			return -1;
		}
		if (r == 0 || ch == '\n')
			break;
		if (len + 1 >= cap) {
			*why = "too long";
			return -1;
		}
		buf[len++] = ch;
	}
	if (r == 1 && whole_file) {
		while ((r = read(fd, &ch, 1)) < 0 && errno == EINTR)
			;
		if (r != 0) {
			*why = r < 0 ? strerror(errno) : "more than one line";
			return -1;
		}
	}
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0';
	*n = len;
	return 0;
}

char *
cli_secret_read(const struct cli_args *a, enum cli_opt o)
{
	char buf[STORE_SECRET_MAX + 2];
	const char *src, *why = NULL;
	struct termios saved, noecho;
	bool tty = false, file = o == OPT_PASSWORD_FILE;
	char *out = NULL;
	struct stat sb;
	size_t n = 0;
	int fd = STDIN_FILENO;

	src = file ? a->val[o] : "stdin";
	if (file) {
		if ((fd = open(src, O_RDONLY | O_CLOEXEC | O_NOCTTY |
		    O_NONBLOCK)) == -1) {
			why = strerror(errno);
			goto fail;
		}
		if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
			why = "not a regular file";
			goto fail;
		}
	} else if (isatty(fd) && tcgetattr(fd, &saved) == 0) {
		noecho = saved;
		noecho.c_lflag &= ~(tcflag_t)ECHO;
		tty = tcsetattr(fd, TCSAFLUSH, &noecho) == 0;
		fprintf(stderr, "%s: ", o == OPT_CLIENT_SECRET_STDIN ?
		    "Client secret" : "Password");
	}
	if (cli_read_line(fd, buf, sizeof(buf), &n, file, &why) != 0)
		goto fail;
	if (n == 0)
		why = "empty";
	else if (n > STORE_SECRET_MAX)
		why = "too long";
	for (size_t i = 0; why == NULL && i < n; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			why = "contains a control character";
	if (why == NULL)
		out = xstrndup(buf, n);
fail:
	if (tty) {
		(void)tcsetattr(fd, TCSAFLUSH, &saved);
		fprintf(stderr, "\n");
	}
	if (file && fd != -1)
		close(fd);
	sodium_memzero(buf, sizeof(buf));
	if (why != NULL)
		cli_fail(a, "--%s: %s%s%s", cli_opts[o].name, file ? src : "",
		    file ? ": " : "", why);
	return out;
}

int
cli_smtp_apply(const struct cli_args *a, struct smtp_settings *s,
    unsigned *set)
{
	enum cli_opt so = OPT__COUNT;
	char *secret;

	*set = 0;
	if (cli_has(a, OPT_PASSWORD_STDIN) && cli_has(a, OPT_PASSWORD_FILE))
		return cli_usage_error(a, "give --password-stdin or "
		    "--password-file, not both");
	if (cli_has(a, OPT_CLIENT_SECRET_STDIN) &&
	    (a->given & (OPTB(OPT_PASSWORD_STDIN) | OPTB(OPT_PASSWORD_FILE))))
		return cli_usage_error(a, "a password and an XOAUTH2 client "
		    "secret exclude each other");
	if (cli_has(a, OPT_HOST)) {
		if (!cli_check_host(a, "--host", a->val[OPT_HOST]))
			return 1;
		strlcpy_ok(s->host, a->val[OPT_HOST], sizeof(s->host));
		*set |= USER_SET_HOST;
	}
	if (cli_has(a, OPT_PORT)) {
		if (!cli_parse_port(a, a->val[OPT_PORT], &s->port))
			return 1;
		*set |= USER_SET_PORT;
	}
	if (cli_has(a, OPT_TLS)) {
		if (!cli_parse_tls(a, a->val[OPT_TLS], &s->tls))
			return 1;
		*set |= USER_SET_TLS;
	}
	if (cli_has(a, OPT_AUTH_USER)) {
		if (!cli_check_text(a, "--auth-user", a->val[OPT_AUTH_USER],
		    STORE_NAME_MAX, true))
			return 1;
		strlcpy_ok(s->auth_user, a->val[OPT_AUTH_USER],
		    sizeof(s->auth_user));
		*set |= USER_SET_AUTH_USER;
		if (s->auth_user[0] == '\0') {
			/* no AUTH: no password either */
			free_secret(s->secret);
			s->secret = NULL;
			*set |= USER_SET_SECRET;
		}
	}
	if (cli_has(a, OPT_TOKEN_URL)) {
		if (!cli_check_url(a, "--xoauth2-token-url",
		    a->val[OPT_TOKEN_URL]))
			return 1;
		strlcpy_ok(s->xoauth2_token_url, a->val[OPT_TOKEN_URL],
		    sizeof(s->xoauth2_token_url));
	}
	if (cli_has(a, OPT_CLIENT_ID)) {
		if (!cli_check_text(a, "--xoauth2-client-id",
		    a->val[OPT_CLIENT_ID], STORE_NAME_MAX, false))
			return 1;
		strlcpy_ok(s->xoauth2_client_id, a->val[OPT_CLIENT_ID],
		    sizeof(s->xoauth2_client_id));
	}
	if (cli_has(a, OPT_SCOPE)) {
		if (!cli_check_text(a, "--xoauth2-scope", a->val[OPT_SCOPE],
		    STORE_NAME_MAX, false))
			return 1;
		strlcpy_ok(s->xoauth2_scope, a->val[OPT_SCOPE],
		    sizeof(s->xoauth2_scope));
	}
	if (cli_has(a, OPT_PASSWORD_STDIN))
		so = OPT_PASSWORD_STDIN;
	else if (cli_has(a, OPT_PASSWORD_FILE))
		so = OPT_PASSWORD_FILE;
	else if (cli_has(a, OPT_CLIENT_SECRET_STDIN))
		so = OPT_CLIENT_SECRET_STDIN;
	if (so != OPT__COUNT) {
		if ((secret = cli_secret_read(a, so)) == NULL)
			return 1;
		free_secret(s->secret);
		s->secret = secret;
		*set |= USER_SET_SECRET;
	}
	return 0;
}

void
cli_json_print(json_t *j)
{
	if (j == NULL)
		return;
	json_dumpf(j, stdout, JSON_INDENT(2));
	printf("\n");
	json_decref(j);
}

json_t *
cli_json_text(const char *s)
{
	json_t *j;
	char *copy;

	if (s == NULL || s[0] == '\0')
		return json_null();
	if ((j = json_string(s)) != NULL)
		return j;
	/* not UTF-8: the bytes above ASCII as '?' */
	copy = xstrdup(s);
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j != NULL ? j : json_null();
}

void
cli_put_text(const char *s)
{
	for (; s != NULL && *s; s++) {
		unsigned char c = (unsigned char)*s;

		putchar(c < 0x20 || c == 0x7f ? ' ' : c);
	}
}

void
cli_time(int64_t t, char *out, size_t sz)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == 0 || gmtime_r(&tt, &tm) == NULL ||
	    strftime(out, sz, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, sz, "-");
}

json_t *
cli_smtp_json(const struct smtp_settings *s)
{
	json_t *o = json_object();

	json_object_set_new(o, "host", cli_json_text(s->host));
	json_object_set_new(o, "port", s->port ? json_integer(s->port) :
	    json_null());
	json_object_set_new(o, "tls", json_string(cli_tls_name(s->tls)));
	json_object_set_new(o, "auth_user", cli_json_text(s->auth_user));
	json_object_set_new(o, "secret", s->secret != NULL ?
	    json_string("set") : json_null());
	json_object_set_new(o, "xoauth2_token_url",
	    cli_json_text(s->xoauth2_token_url));
	json_object_set_new(o, "xoauth2_client_id",
	    cli_json_text(s->xoauth2_client_id));
	json_object_set_new(o, "xoauth2_scope",
	    cli_json_text(s->xoauth2_scope));
	return o;
}

void
cli_smtp_print(const char *indent, const struct smtp_settings *s)
{
	bool oauth = s->xoauth2_token_url[0] != '\0';

	if (s->host[0] == '\0')
		return;
	printf("%shost:          ", indent);
	cli_put_text(s->host);
	printf("\n%sport:          %u\n", indent, (unsigned)s->port);
	printf("%stls:           %s\n", indent, cli_tls_name(s->tls));
	printf("%sauth user:     ", indent);
	cli_put_text(s->auth_user[0] ? s->auth_user : "-");
	printf("\n%s%s %s\n", indent, oauth ? "client secret:" :
	    "password:     ", s->secret ? "set" : "-");
	if (oauth) {
		printf("%sxoauth2 url:   ", indent);
		cli_put_text(s->xoauth2_token_url);
		printf("\n%sclient id:     ", indent);
		cli_put_text(s->xoauth2_client_id);
		printf("\n%sscope:         ", indent);
		cli_put_text(s->xoauth2_scope[0] ? s->xoauth2_scope : "-");
		printf("\n");
	}
}

json_t *
cli_domain_json(const struct domain *d)
{
	json_t *o = json_object();

	json_object_set_new(o, "domain", cli_json_text(d->name));
	json_object_set_new(o, "company", cli_json_text(d->company));
	json_object_set_new(o, "created", json_integer(d->created));
	json_object_set_new(o, "spf_ok", json_boolean(d->spf_ok));
	json_object_set_new(o, "dkim_ok", json_boolean(d->dkim_ok));
	json_object_set_new(o, "dmarc_ok", json_boolean(d->dmarc_ok));
	json_object_set_new(o, "checked_at", json_integer(d->checked_at));
	return o;
}

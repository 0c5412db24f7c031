/*
 * cli_store.h - what the tenant administration commands (company,
 * domain, user, credential, secret-key) share: one option parser, the
 * configuration and the store opened from it, the acting user, argument
 * checks, secrets read from stdin or a file, and output as text or JSON.
 *
 * Must never: take a secret from the command line, print one, or leave
 * one in a buffer that is not wiped.
 */
#ifndef OMBUD_CLI_STORE_H
#define OMBUD_CLI_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "conf/conf.h"
#include "store/store.h"

/* Every option of the tenant commands; a command allows a subset. */
enum cli_opt {
	OPT_JSON = 0,
	OPT_ACTOR,
	OPT_REFERENCE,
	OPT_NAME,
	OPT_COMPANY,
	OPT_EMAIL,
	OPT_ROUTE,
	OPT_FROM,
	OPT_HOST,
	OPT_PORT,
	OPT_TLS,
	OPT_AUTH_USER,
	OPT_PASSWORD_STDIN,
	OPT_PASSWORD_FILE,
	OPT_TOKEN_URL,
	OPT_CLIENT_ID,
	OPT_CLIENT_SECRET_STDIN,
	OPT_SCOPE,
	OPT_CSV,
	OPT_DRY_RUN,
	OPT_APPLICATION,
	OPT_USERNAME,
	OPT_GENERATE,
	OPT_SPF,
	OPT_DKIM,
	OPT_ALGORITHM,
	OPT_BITS,
	OPT_SELECTOR,
	OPT_MONTH,
	OPT_FORMAT,
	OPT__COUNT
};
#define OPTB(o)		(1u << (o))

/* The own-server settings a command may take. */
#define OPTS_SMTP	(OPTB(OPT_HOST) | OPTB(OPT_PORT) | OPTB(OPT_TLS) | \
	OPTB(OPT_AUTH_USER) | OPTB(OPT_PASSWORD_STDIN) | \
	OPTB(OPT_PASSWORD_FILE))
#define OPTS_XOAUTH2	(OPTB(OPT_TOKEN_URL) | OPTB(OPT_CLIENT_ID) | \
	OPTB(OPT_CLIENT_SECRET_STDIN) | OPTB(OPT_SCOPE))
#define OPTS_SECRET	(OPTB(OPT_PASSWORD_STDIN) | \
	OPTB(OPT_PASSWORD_FILE) | OPTB(OPT_CLIENT_SECRET_STDIN))

#define CLI_POS_MAX	4

struct cli_args {
	const char	*cmd;		/* "company add", for messages */
	const char	*usage;		/* its usage line(s) */
	unsigned	 given;		/* OPTB() of each option seen */
	const char	*val[OPT__COUNT];	/* values; NULL for flags */
	int		 npos;
	char		*pos[CLI_POS_MAX];
};

/*
 * Parse argv[1..argc-1] (argv[0] is the verb) for the options in
 * allowed (--json always) and between minpos and maxpos positional
 * arguments.  "--opt VALUE" and "--opt=VALUE"; "--" ends the options.
 * 0, or 2 after the message and the usage on stderr.
 */
int cli_args_parse(struct cli_args *a, const char *cmd, const char *usage,
    unsigned allowed, int minpos, int maxpos, int argc, char **argv);
bool cli_has(const struct cli_args *a, enum cli_opt o);
/* A usage error: "ombud CMD: MSG", the usage; returns 2. */
int cli_usage_error(const struct cli_args *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A failure: "ombud CMD: MSG" on stderr; returns 1. */
int cli_fail(const struct cli_args *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* `ombud NOUN VERB ...`: -c FILE taken out, then the verb's fn with
 * argv[0] = the verb; the usage for none, an unknown one or --help. */
struct cli_verb {
	const char	*name;
	int		(*fn)(const char *conf, int argc, char **argv);
};
int cli_dispatch(const struct cli_verb *verbs, size_t nverbs,
    const char *usage, int argc, char **argv);

/* The configuration and the store it names. */
struct cli_store {
	struct conf	*conf;
	struct store	*st;
	bool		 key_missing;	/* opened without secret_key_file */
	char		 actor[STORE_ACTOR_MAX + 1];
};
/* Load conf_path, open the store, settle the actor (--actor or the
 * Unix user).  0 or 1 (message printed). */
int cli_store_open(struct cli_store *cs, const struct cli_args *a,
    const char *conf_path);
void cli_store_close(struct cli_store *cs);
/* Report rc of a store call about what ("company 'acme'"); returns 1. */
int cli_store_fail(const struct cli_store *cs, const struct cli_args *a,
    int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * `NOUN list [--company ID]` (the option only with by_company): header
 * as text, then run, which calls the store's list with a callback that
 * prints a line, or appends to arr with --json (arr is NULL without).
 */
typedef int (*cli_list_fn)(struct store *st, const char *company,
    json_t *arr);
int cli_list(const char *cmd, const char *usage, const char *header,
    bool by_company, cli_list_fn run, const char *conf, int argc,
    char **argv);

/* Argument checks: true if fine, else false after a message naming opt
 * (an option such as "--email", or "COMPANY"). */
bool cli_check_id(const struct cli_args *a, const char *opt, const char *v);
bool cli_check_domain(const struct cli_args *a, const char *opt,
    const char *v);
bool cli_check_email(const struct cli_args *a, const char *opt,
    const char *v);
bool cli_check_host(const struct cli_args *a, const char *opt,
    const char *v);
bool cli_check_url(const struct cli_args *a, const char *opt, const char *v);
/* 1..max bytes (0..max with empty_ok) of UTF-8 without control
 * characters. */
bool cli_check_text(const struct cli_args *a, const char *opt, const char *v,
    size_t max, bool empty_ok);
bool cli_parse_port(const struct cli_args *a, const char *v, uint16_t *out);
bool cli_parse_tls(const struct cli_args *a, const char *v,
    enum route_tls *out);
/* A route name; user_ok allows "company". */
bool cli_parse_route(const struct cli_args *a, const char *v, bool user_ok,
    enum route_kind *out);
bool cli_parse_int64(const char *v, int64_t *out);
const char *cli_tls_name(enum route_tls t);

/* The secret named by --password-stdin, --password-file or
 * --client-secret-stdin: one line (a single trailing newline dropped),
 * 1..STORE_SECRET_MAX bytes, no NUL.  A heap string for free_secret(),
 * or NULL after a message. */
char *cli_secret_read(const struct cli_args *a, enum cli_opt o);

/* Apply the given --host, --port, --tls, --auth-user, the password
 * (--password-stdin/--password-file) and the XOAUTH2 options to s (an
 * --auth-user "" also drops the secret); *set gets the USER_SET_* bits
 * of what was given.  0, or 1 after a message. */
int cli_smtp_apply(const struct cli_args *a, struct smtp_settings *s,
    unsigned *set);

/* Output. */
void cli_json_print(json_t *j);			/* and decref */
json_t *cli_json_text(const char *s);		/* "" and NULL: null */
void cli_put_text(const char *s);		/* control chars as ' ' */
void cli_time(int64_t t, char *out, size_t sz);	/* ISO 8601 UTC or - */
/* The settings without the secret ("secret": "set" or null). */
json_t *cli_smtp_json(const struct smtp_settings *s);
/* Indented "  key: value" lines; nothing when host is unset. */
void cli_smtp_print(const char *indent, const struct smtp_settings *s);
json_t *cli_domain_json(const struct domain *d);

#endif

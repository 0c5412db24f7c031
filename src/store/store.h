/*
 * store.h - the tenant database: companies, their sender domains, their
 * users' SMTP settings, submission credentials and the audit log, behind
 * one interface.  Every SQL statement lives in a backend (store_sqlite.c
 * now; a PostgreSQL backend later for several nodes), chosen by the scheme
 * of a URI ("sqlite:var/ombud.db") from a small table of function
 * pointers, OpenSMTPD style.
 *
 * Secrets that must be used again (a company's own SMTP password, an
 * OAuth client secret) are encrypted at rest with libsodium's secretbox
 * and a key read from a file outside the database (secret_key_file); in
 * memory they are plain text in heap strings that the *_clear functions
 * wipe.  Submission passwords are never stored: only their Argon2id hash.
 *
 * Every change to a company's route or status, and every other write, is
 * recorded in the audit log with who, when and a free-text reference (the
 * support ticket) in the same transaction as the change.
 *
 * Must never: write a secret in clear text to the database or a log;
 * leave a half-applied change (each call is one transaction); let a
 * domain belong to two companies.
 */
#ifndef OMBUD_STORE_H
#define OMBUD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"		/* enum route_tls */

#define STORE_ID_MAX		63	/* company ids: [a-z0-9][a-z0-9-]* */
#define STORE_NAME_MAX		255
#define STORE_HOST_MAX		255
#define STORE_URL_MAX		1024
#define STORE_SECRET_MAX	4096
#define STORE_ACTOR_MAX		127
#define STORE_REF_MAX		255
#define STORE_APP_MAX		63

/* Return codes of every store_* call that can fail. */
enum store_rc {
	STORE_OK = 0,
	STORE_NOTFOUND,		/* no such company, domain, user... */
	STORE_EXISTS,		/* unique key taken (e.g. domain owned) */
	STORE_INVALID,		/* a value out of bounds or malformed */
	STORE_ERROR,		/* database or crypto failure: see err */
};

enum company_status { COMPANY_ACTIVE = 0, COMPANY_SUSPENDED };

/* How a company's mail leaves.  USER_ROUTE_COMPANY is for users only:
 * "whatever the company chose". */
enum route_kind {
	ROUTE_NONE = 0,			/* no choice registered yet */
	ROUTE_OWN_SERVER,		/* the company's own SMTP server */
	ROUTE_PLATFORM_RELAY,		/* direct to MX, DKIM-signed */
	ROUTE_PLATFORM_SMARTHOST,	/* the platform's upstream */
	USER_ROUTE_COMPANY,		/* users: the company's choice */
};

/* "none", "own-server", "platform-relay", "platform-smarthost",
 * "company"; parse returns 0 or -1. */
const char *route_kind_name(enum route_kind k);
int route_kind_parse(const char *s, enum route_kind *out);
const char *company_status_name(enum company_status s);

/* An SMTP server to relay through (a company's own, or a user's). */
struct smtp_settings {
	char		host[STORE_HOST_MAX + 1];	/* "" = unset */
	uint16_t	port;				/* 0 = unset */
	enum route_tls	tls;
	char		auth_user[STORE_NAME_MAX + 1];	/* "" = no AUTH */
	char		*secret;	/* password, or the XOAUTH2 client
					   secret when token_url is set;
					   heap, NULL = none; wiped */
	char		xoauth2_token_url[STORE_URL_MAX + 1];
	char		xoauth2_client_id[STORE_NAME_MAX + 1];
	char		xoauth2_scope[STORE_NAME_MAX + 1];
};

struct company {
	char			id[STORE_ID_MAX + 1];
	char			name[STORE_NAME_MAX + 1];
	enum company_status	status;
	enum route_kind		route;		/* never USER_ROUTE_COMPANY */
	struct smtp_settings	own;		/* route == OWN_SERVER */
	/* the request that registered the current route */
	char			route_actor[STORE_ACTOR_MAX + 1];
	int64_t			route_at;	/* unix seconds, 0 = never */
	char			route_reference[STORE_REF_MAX + 1];
	int64_t			created;
};

struct domain {
	char		name[STORE_HOST_MAX + 1];	/* lower case */
	char		company[STORE_ID_MAX + 1];
	int64_t		created;
	/* set by the authentication checks (issue 5) */
	bool		spf_ok;
	bool		dkim_ok;
	bool		dmarc_ok;
	int64_t		checked_at;			/* 0 = never */
};

struct user {
	int64_t			id;		/* assigned by store_user_add */
	char			company[STORE_ID_MAX + 1];
	char			email[STORE_NAME_MAX + 1]; /* unique per
							      company */
	char			name[STORE_NAME_MAX + 1];
	enum route_kind		route;		/* USER_ROUTE_COMPANY default */
	char			from_address[STORE_NAME_MAX + 1];
	struct smtp_settings	smtp;		/* route == OWN_SERVER */
};

struct credential {
	int64_t		id;
	char		company[STORE_ID_MAX + 1];
	char		application[STORE_APP_MAX + 1];	/* the product */
	char		username[STORE_NAME_MAX + 1];	/* SMTP AUTH user,
							   unique */
	char		hash[256];			/* $argon2id$... */
	int64_t		created;
	int64_t		revoked;			/* 0 = valid */
};

struct audit_entry {
	int64_t		id;
	int64_t		at;
	char		actor[STORE_ACTOR_MAX + 1];
	char		company[STORE_ID_MAX + 1];	/* "" = global */
	char		action[64];	/* "company.add", "route.set"... */
	char		reference[STORE_REF_MAX + 1];
	char		*detail;	/* JSON, heap; never a secret */
};

struct store;

/*
 * Open (creating and migrating the schema as needed) the store named by
 * uri: "sqlite:PATH".  key_file: 32 raw bytes, mode 0600 (group/other
 * access refused); NULL only for a store that will never touch a secret
 * (then writing or reading one fails with STORE_ERROR).  NULL with err
 * filled on failure.  One handle per thread.
 */
struct store *store_open(const char *uri, const char *key_file, char *err,
    size_t errlen);
void store_close(struct store *st);
/* The last error's text (for STORE_ERROR / STORE_INVALID). */
const char *store_error(const struct store *st);
/* A number that changes whenever any connection committed a change to
 * the tenant data (companies, domains, users, credentials, DKIM key
 * states: every such change is audited, so it is the newest audit row's
 * id), so a server can refresh its in-memory view cheaply.  Writes that
 * no snapshot holds (metering, the time a check last saw a record) do
 * not change it. */
uint64_t store_version(struct store *st);
/* Several reads that must see one state of the database (the tenant
 * snapshot): between begin and end no other commit is seen.  A store
 * rc; end also when begin failed. */
int store_read_begin(struct store *st);
void store_read_end(struct store *st);

/*
 * Metering and billing (src/billing/; docs/ARCHITECTURE.md, "Metering
 * and billing").  Usage is counted per company and local day (and, for
 * mail to Gmail, per sender domain), once per queue id: the ids already
 * counted are kept until their month is closed, so counting the same
 * message again (a restart's re-scan of the spool) changes nothing.  A
 * closed month has its invoice lines stored for good; usage for a
 * closed month is no longer added.
 */
#define STORE_QID_MAX		31

/* The billable recipients of one accepted message. */
struct meter_rec {
	char		qid[STORE_QID_MAX + 1];
	char		company[STORE_ID_MAX + 1];
	int32_t		day;			/* YYYYMMDD, local */
	char		sender_domain[STORE_HOST_MAX + 1]; /* lower case */
	uint32_t	emails;			/* recipients counted */
	uint32_t	gmail;			/* of them to Gmail */
};

/* A day's count: the company's total (sender_domain "") or its Gmail
 * recipients from one sender domain. */
struct usage_day {
	char		company[STORE_ID_MAX + 1];
	int32_t		day;			/* YYYYMMDD */
	char		sender_domain[STORE_HOST_MAX + 1];
	uint64_t	emails;
};

/* One closed invoice line (amounts in the currency's minor unit). */
struct invoice {
	char			company[STORE_ID_MAX + 1];
	int32_t			month;		/* YYYYMM */
	enum route_kind		route;		/* at the month's end */
	char			plan[64];	/* "" = none in force */
	char			currency[4];
	uint64_t		emails, included, extra;
	uint64_t		fixed_fee, extra_fee, total;
	int			platform_days, days_in_month;
	enum billing_fee_rule	fee_rule;
	int64_t			closed_at;	/* 0: not closed (computed) */
};

typedef int (*store_usage_fn)(void *arg, const struct usage_day *u);
typedef int (*store_route_fn)(void *arg, int64_t at, enum route_kind route);
typedef int (*store_invoice_fn)(void *arg, const struct invoice *inv);

/*
 * In one transaction: every rec whose qid was never counted is
 * remembered and added to its company's day (and gmail to the sender
 * domain's Gmail day); a known qid is skipped; a rec of a closed month is
 * skipped and counted in *late.  *added gets the recs counted.
 */
int store_meter_add(struct store *st, const struct meter_rec *r, size_t n,
    size_t *added, size_t *late);
/* Days from..to (YYYYMMDD, inclusive) of company (NULL: all), by company
 * and day: the totals, or with gmail the Gmail counts per sender domain. */
int store_usage_list(struct store *st, const char *company, int32_t from,
    int32_t to, bool gmail, store_usage_fn fn, void *arg);
/* The company's route changes, oldest first (from the audit log:
 * company.add and route.set). */
int store_route_history(struct store *st, const char *company,
    store_route_fn fn, void *arg);
/* Close month: its lines (closed_at set by the call), the month marked
 * closed and its counted queue ids forgotten, in one transaction.
 * STORE_EXISTS if it was closed already (nothing written). */
int store_invoice_close(struct store *st, int32_t month,
    const struct invoice *lines, size_t n);
/* When month was closed (0: open). */
int store_month_closed(struct store *st, int32_t month, int64_t *closed_at);
int store_invoice_list(struct store *st, int32_t month, const char *company,
    store_invoice_fn fn, void *arg);	/* company NULL: all */
/* From now on each commit of this handle is on disk when it returns
 * (SQLite: synchronous = FULL), not only at checkpoints: the meter's. */
int store_durable(struct store *st);

/* Wipe and free the secrets inside. */
void smtp_settings_clear(struct smtp_settings *s);
void audit_entry_clear(struct audit_entry *a);

/* Iteration: fn returns 0 to go on, non-zero to stop. */
typedef int (*store_company_fn)(void *arg, const struct company *c);
typedef int (*store_domain_fn)(void *arg, const struct domain *d);
typedef int (*store_user_fn)(void *arg, const struct user *u);
typedef int (*store_credential_fn)(void *arg, const struct credential *c);
typedef int (*store_audit_fn)(void *arg, const struct audit_entry *a);

/* Companies.  add: route must be ROUTE_NONE or given with its settings. */
int store_company_add(struct store *st, const struct company *c,
    const char *actor, const char *reference);
int store_company_get(struct store *st, const char *id, struct company *out);
int store_company_list(struct store *st, store_company_fn fn, void *arg);
/* own: the settings for ROUTE_OWN_SERVER (host required), else NULL.
 * Records the request (actor, now, reference) and the audit entry. */
int store_company_set_route(struct store *st, const char *id,
    enum route_kind route, const struct smtp_settings *own,
    const char *actor, const char *reference);
int store_company_set_status(struct store *st, const char *id,
    enum company_status status, const char *actor, const char *reference);

/* Domains: lower-cased on the way in; EXISTS if another company has it. */
int store_domain_add(struct store *st, const char *domain,
    const char *company, const char *actor);
int store_domain_remove(struct store *st, const char *domain,
    const char *actor);
int store_domain_get(struct store *st, const char *domain,
    struct domain *out);
int store_domain_list(struct store *st, const char *company,
    store_domain_fn fn, void *arg);		/* company NULL: all */
int store_domain_set_auth(struct store *st, const char *domain, bool spf_ok,
    bool dkim_ok, int64_t checked_at);

/* Users. */
int store_user_add(struct store *st, struct user *u, const char *actor);
int store_user_get(struct store *st, int64_t id, struct user *out);
int store_user_list(struct store *st, const char *company, store_user_fn fn,
    void *arg);				/* company NULL: all */
/* Replace the SMTP settings (route, from_address, smtp) of user id. */
int store_user_set_smtp(struct store *st, int64_t id, const struct user *u,
    const char *actor);

/* Mass update: which users, what to set. */
struct user_filter {
	const char	*company;	/* NULL: any */
	const char	**emails;	/* NULL: any; else only these (from a
					   CSV file), matched within company
					   if given */
	size_t		nemails;
};
#define USER_SET_ROUTE		0x01
#define USER_SET_FROM		0x02
#define USER_SET_HOST		0x04
#define USER_SET_PORT		0x08
#define USER_SET_TLS		0x10
#define USER_SET_AUTH_USER	0x20
#define USER_SET_SECRET		0x40
struct user_update {
	unsigned		set;	/* USER_SET_* */
	enum route_kind		route;
	const char		*from_address;
	struct smtp_settings	smtp;	/* the fields named by set */
};
/*
 * Apply upd to every user matching f in ONE transaction (all or
 * nothing); with dry_run nothing is written.  fn (may be NULL) is called
 * per matched user with the before and after state (secrets never passed:
 * smtp.secret is NULL in both).  *matched gets the count; emails in the
 * filter that match no user are reported through missing_fn (may be
 * NULL) and make the call fail with STORE_NOTFOUND unless dry_run.
 * One audit entry for the whole update.
 */
int store_user_mass_update(struct store *st, const struct user_filter *f,
    const struct user_update *upd, bool dry_run,
    void (*fn)(void *arg, const struct user *before, const struct user *after),
    void (*missing_fn)(void *arg, const char *email), void *arg,
    size_t *matched, const char *actor);

/* Submission credentials (hash made by credentials_hash()). */
int store_credential_add(struct store *st, struct credential *c,
    const char *actor);			/* c->id set */
int store_credential_revoke(struct store *st, const char *username,
    const char *actor);
/* A valid (not revoked) credential by user name. */
int store_credential_find(struct store *st, const char *username,
    struct credential *out);
int store_credential_list(struct store *st, const char *company,
    store_credential_fn fn, void *arg);	/* company NULL: all */

/* The audit log, oldest first. */
int store_audit_list(struct store *st, const char *company,
    store_audit_fn fn, void *arg);		/* company NULL: all */

/*
 * DKIM keys of a domain.  A key is made pending (its record must be
 * published), becomes active when the domain check sees its record in
 * DNS (active keys sign: one per algorithm, so rsa + ed25519 sign twice),
 * and a key it replaces becomes retiring (still to be published, no
 * longer signing) until retire_at, then retired.
 */
#define STORE_SELECTOR_MAX	63
#define STORE_DKIM_RECORD_MAX	2047
#define STORE_DKIM_PEM_MAX	16384

enum dkim_key_state {
	DKIMKEY_PENDING = 0,
	DKIMKEY_ACTIVE,
	DKIMKEY_RETIRING,
	DKIMKEY_RETIRED,
};

struct dkim_keyrec {
	int64_t			id;		/* set by store_dkim_add */
	char			domain[STORE_HOST_MAX + 1];
	char			selector[STORE_SELECTOR_MAX + 1];
	char			algorithm[16];	/* rsa-sha256|ed25519-sha256 */
	int			bits;		/* RSA; 0 for ed25519 */
	char			*private_pem;	/* heap, wiped; NULL unless
						   asked for */
	char			record[STORE_DKIM_RECORD_MAX + 1];
	enum dkim_key_state	state;
	int64_t			created;
	int64_t			published_at;	/* last seen in DNS, 0 never */
	int64_t			activated_at;
	int64_t			retire_at;	/* retiring: until */
};
typedef int (*store_dkim_fn)(void *arg, const struct dkim_keyrec *k);

const char *dkim_key_state_name(enum dkim_key_state s);
int dkim_key_state_parse(const char *s, enum dkim_key_state *out);
/* Wipe and free the private key inside. */
void dkim_keyrec_clear(struct dkim_keyrec *k);

/* Add k (private_pem required, sealed on the way in; k->id set). */
int store_dkim_add(struct store *st, struct dkim_keyrec *k,
    const char *actor);
/* Keys of domain (NULL: all), by domain then id; the private keys opened
 * only with_private. */
int store_dkim_list(struct store *st, const char *domain, bool with_private,
    store_dkim_fn fn, void *arg);
/* Write k's state and times (by k->id); audited when the state changes. */
int store_dkim_update(struct store *st, const struct dkim_keyrec *k,
    const char *actor);

/* The domain check's results: detail is its JSON report (bounded text).
 * broken_since is set when a passing domain stops passing and cleared
 * when it passes again. */
int store_domain_set_check(struct store *st, const char *domain,
    bool spf_ok, bool dkim_ok, bool dmarc_ok, int64_t checked_at,
    const char *detail);
/* The last report of the domain check ("" if none), heap. */
int store_domain_check_detail(struct store *st, const char *domain,
    char **detail, int64_t *broken_since);

#endif

/*
 * test_store.c - the tenant database through the sqlite: backend: open
 * (migrations applied once, a newer schema refused, WAL, foreign keys and
 * the other pragmas really set, unknown schemes), companies and their
 * routes and status with audit rows, domains (one company each, lower
 * case), users and their SMTP settings, the mass update (filters, missing
 * addresses, dry run, all or nothing, 10,000 users in well under a
 * second), credentials, secrets (never in clear in the database files or
 * the audit log; the wrong key cannot decrypt; a readable key file is
 * refused; no key, no secrets), argument validation, store_version.
 */
#include <sys/wait.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "common/secretbox.h"
#include "common/util.h"
#include "store/store.h"
#include "store/store_impl.h"
#include "tmpdir.h"

#define COMPANY_SECRET	"Sekret-XYZ-123"
#define USER_SECRET	"User-Pass-987-Zq"
#define HASH		"$argon2id$v=19$m=65536,t=2,p=1$" \
			"NXVHzl0s/uy5XXDxuRzJuw$" \
			"bdmD0DtiURZqZBmAc+EBN3Dz0QiKl0Ein5b+mLP/iqY"

static char key_path[128], other_key_path[128];
static int ndb;

/* A new database path in dir, and its URI. */
static void
new_db(char *path, size_t pathlen, char *uri, size_t urilen)
{
	snprintf(path, pathlen, "%s/db%d.sqlite", dir, ndb++);
	snprintf(uri, urilen, "sqlite:%s", path);
}

static struct store *
open_uri(const char *uri, const char *key)
{
	char err[512];
	struct store *st = store_open(uri, key, err, sizeof(err));

	if (st == NULL)
		fail_msg("store_open %s: %s", uri, err);
	return st;
}

/* A fresh store with the test key; its file path in path. */
static struct store *
open_new(char *path, size_t pathlen)
{
	char uri[300];

	new_db(path, pathlen, uri, sizeof(uri));
	return open_uri(uri, key_path);
}

/* A raw connection to path, beside the store's. */
static sqlite3 *
raw_open(const char *path)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE,
	    NULL), SQLITE_OK);
	return db;
}

static int64_t
raw_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s = NULL;
	int64_t v;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static void
raw_text(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
	sqlite3_stmt *s = NULL;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
}

static void
company_init(struct company *c, const char *id, enum route_kind route)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "%s", id);
	snprintf(c->name, sizeof(c->name), "%s Ltd", id);
	c->route = route;
}

static void
add_company(struct store *st, const char *id)
{
	struct company c;

	company_init(&c, id, ROUTE_NONE);
	assert_int_equal(store_company_add(st, &c, "alice", "T-1"), STORE_OK);
}

static void
own_settings(struct smtp_settings *s, const char *host, char *secret)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->host, sizeof(s->host), "%s", host);
	s->tls = RTLS_VERIFY;
	snprintf(s->auth_user, sizeof(s->auth_user), "relay@%s", host);
	s->secret = secret;
}

static void
user_init(struct user *u, const char *company, const char *email)
{
	memset(u, 0, sizeof(*u));
	snprintf(u->company, sizeof(u->company), "%s", company);
	snprintf(u->email, sizeof(u->email), "%s", email);
	snprintf(u->name, sizeof(u->name), "User %s", email);
}

static int64_t
add_user(struct store *st, const char *company, const char *email)
{
	struct user u;

	user_init(&u, company, email);
	assert_int_equal(store_user_add(st, &u, "alice"), STORE_OK);
	assert_true(u.id > 0);
	return u.id;
}

/* The audit log, collected. */
struct audit_log {
	size_t			n;
	struct audit_entry	e[64];
};

static int
collect_audit(void *arg, const struct audit_entry *a)
{
	struct audit_log *log = arg;

	if (log->n < nitems(log->e)) {
		log->e[log->n] = *a;
		log->e[log->n].detail = xstrdup(a->detail);
	}
	log->n++;
	return 0;
}

static void
audit_get(struct store *st, const char *company, struct audit_log *log)
{
	memset(log, 0, sizeof(*log));
	assert_int_equal(store_audit_list(st, company, collect_audit, log),
	    STORE_OK);
}

static void
audit_free(struct audit_log *log)
{
	for (size_t i = 0; i < log->n && i < nitems(log->e); i++)
		audit_entry_clear(&log->e[i]);
}

/* The value of a JSON path "a.b" in detail, as text ("" if absent). */
static void
detail_get(const char *detail, const char *k1, const char *k2, char *out,
    size_t outlen)
{
	json_error_t jerr;
	json_t *j = json_loads(detail, 0, &jerr), *v;

	assert_non_null(j);
	v = json_object_get(j, k1);
	if (v != NULL && k2 != NULL)
		v = json_object_get(v, k2);
	if (v == NULL)
		snprintf(out, outlen, "%s", "");
	else if (json_is_string(v))
		snprintf(out, outlen, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(out, outlen, "%lld", (long long)json_integer_value(v));
	else
		snprintf(out, outlen, "%s", json_is_null(v) ? "null" : "?");
	json_decref(j);
}

/* ---- open -------------------------------------------------------------- */

static void
test_open_migrations(void **state)
{
	char path[256], uri[300], err[512];
	struct store *st;
	sqlite3 *db;

	(void)state;
	new_db(path, sizeof(path), uri, sizeof(uri));
	st = open_uri(uri, key_path);
	add_company(st, "acme");
	store_close(st);
	/* Again: nothing to migrate, data still there. */
	st = open_uri(uri, key_path);
	{
		struct company c;
		assert_int_equal(store_company_get(st, "acme", &c), STORE_OK);
		smtp_settings_clear(&c.own);
	}
	store_close(st);
	db = raw_open(path);
	/* Every migration once, in order, none twice. */
	assert_true(raw_int(db, "SELECT max(version) FROM "
	    "schema_migrations") >= 2);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM schema_migrations"),
	    raw_int(db, "SELECT max(version) FROM schema_migrations"));
	assert_int_equal(raw_int(db, "SELECT count(*) FROM schema_migrations "
	    "WHERE applied_at <= 0"), 0);
	/* The file is private. */
	{
		struct stat sb;
		assert_int_equal(stat(path, &sb), 0);
		assert_int_equal(sb.st_mode & 077, 0);
	}
	/* A schema from a newer ombud. */
	assert_int_equal(sqlite3_exec(db, "INSERT INTO schema_migrations "
	    "VALUES (999, 0)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_null(store_open(uri, key_path, err, sizeof(err)));
	assert_non_null(strstr(err, "newer"));
	assert_non_null(strstr(err, "999"));
}

static void
test_open_pragmas(void **state)
{
	char path[256], text[32];
	struct store *st = open_new(path, sizeof(path));
	sqlite3 *db = store_sqlite_db(st);

	(void)state;
	assert_non_null(db);
	raw_text(db, "PRAGMA journal_mode", text, sizeof(text));
	assert_string_equal(text, "wal");
	assert_int_equal(raw_int(db, "PRAGMA foreign_keys"), 1);
	assert_int_equal(raw_int(db, "PRAGMA synchronous"), 1);	/* NORMAL */
	assert_int_equal(raw_int(db, "PRAGMA busy_timeout"), 5000);
	/* Foreign keys at work: a domain of no company. */
	assert_int_equal(store_domain_add(st, "example.com", "nobody",
	    "alice"), STORE_NOTFOUND);
	store_close(st);
}

static void
test_open_errors(void **state)
{
	char err[512], path[256];

	(void)state;
	assert_null(store_open("postgres://db/ombud", key_path, err,
	    sizeof(err)));
	assert_non_null(strstr(err, "unknown scheme 'postgres'"));
	assert_non_null(strstr(err, "sqlite:"));
	assert_null(store_open("no-scheme", key_path, err, sizeof(err)));
	assert_null(store_open("sqlite:", key_path, err, sizeof(err)));
	assert_null(store_open("sqlite:/nonexistent-dir/x/db", key_path, err,
	    sizeof(err)));
	/* A key file that others may read is refused, naming it. */
	snprintf(path, sizeof(path), "%s/readable.key", dir);
	{
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		assert_int_equal(fwrite("0123456789abcdef0123456789abcdef", 1,
		    32, f), 32);
		assert_int_equal(fclose(f), 0);
		assert_int_equal(chmod(path, 0644), 0);
	}
	assert_null(store_open("sqlite::memory:", path, err, sizeof(err)));
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "chmod 600"));
	assert_int_equal(chmod(path, 0600), 0);
	store_close(open_uri("sqlite::memory:", path));
}

/* ---- companies --------------------------------------------------------- */

static int
collect_company_ids(void *arg, const struct company *c)
{
	struct buf *b = arg;

	buf_printf(b, "%s%s:%s", b->len ? "," : "", c->id,
	    c->own.secret ? c->own.secret : "-");
	return 0;
}

static void
test_company(void **state)
{
	char path[256], v[256], secret[] = COMPANY_SECRET;
	struct store *st = open_new(path, sizeof(path));
	struct smtp_settings own;
	struct audit_log log;
	struct company c;
	struct buf b;

	(void)state;
	company_init(&c, "acme", ROUTE_NONE);
	assert_int_equal(store_company_add(st, &c, "alice", "T-100"),
	    STORE_OK);
	assert_int_equal(store_company_add(st, &c, "alice", "T-100"),
	    STORE_EXISTS);
	company_init(&c, "beta", ROUTE_PLATFORM_RELAY);
	c.status = COMPANY_SUSPENDED;
	assert_int_equal(store_company_add(st, &c, "bob", NULL), STORE_OK);

	assert_int_equal(store_company_get(st, "acme", &c), STORE_OK);
	assert_string_equal(c.name, "acme Ltd");
	assert_int_equal(c.route, ROUTE_NONE);
	assert_int_equal(c.status, COMPANY_ACTIVE);
	assert_int_equal(c.route_at, 0);
	assert_string_equal(c.route_actor, "");
	assert_true(c.created > 0);
	assert_null(c.own.secret);
	assert_int_equal(store_company_get(st, "beta", &c), STORE_OK);
	assert_int_equal(c.route, ROUTE_PLATFORM_RELAY);
	assert_int_equal(c.status, COMPANY_SUSPENDED);
	assert_string_equal(c.route_actor, "bob");
	assert_true(c.route_at > 0);
	assert_int_equal(store_company_get(st, "gamma", &c), STORE_NOTFOUND);
	assert_non_null(strstr(store_error(st), "gamma"));

	/* Route: own server, then the platform's relay. */
	own_settings(&own, "smtp.acme.example", secret);
	assert_int_equal(store_company_set_route(st, "acme", ROUTE_OWN_SERVER,
	    &own, "carol", "T-200"), STORE_OK);
	assert_int_equal(store_company_get(st, "acme", &c), STORE_OK);
	assert_int_equal(c.route, ROUTE_OWN_SERVER);
	assert_string_equal(c.own.host, "smtp.acme.example");
	assert_int_equal(c.own.port, 587);		/* the default */
	assert_int_equal(c.own.tls, RTLS_VERIFY);
	assert_string_equal(c.own.auth_user, "relay@smtp.acme.example");
	assert_non_null(c.own.secret);
	assert_string_equal(c.own.secret, COMPANY_SECRET);
	assert_string_equal(c.route_actor, "carol");
	assert_string_equal(c.route_reference, "T-200");
	smtp_settings_clear(&c.own);
	assert_null(c.own.secret);

	buf_init(&b);
	assert_int_equal(store_company_list(st, collect_company_ids, &b),
	    STORE_OK);
	assert_string_equal(b.data, "acme:" COMPANY_SECRET ",beta:-");
	buf_free(&b);

	/* own-server needs a host; other routes take no settings. */
	own.host[0] = '\0';
	assert_int_equal(store_company_set_route(st, "acme", ROUTE_OWN_SERVER,
	    &own, "carol", "T-201"), STORE_INVALID);
	assert_int_equal(store_company_set_route(st, "acme", ROUTE_OWN_SERVER,
	    NULL, "carol", "T-201"), STORE_INVALID);
	own_settings(&own, "smtp.acme.example", secret);
	assert_int_equal(store_company_set_route(st, "acme",
	    ROUTE_PLATFORM_RELAY, &own, "carol", "T-201"), STORE_INVALID);
	assert_int_equal(store_company_set_route(st, "acme",
	    USER_ROUTE_COMPANY, NULL, "carol", "T-201"), STORE_INVALID);
	assert_int_equal(store_company_set_route(st, "nobody",
	    ROUTE_PLATFORM_RELAY, NULL, "carol", "T-201"), STORE_NOTFOUND);
	assert_int_equal(store_company_set_route(st, "acme",
	    ROUTE_PLATFORM_SMARTHOST, NULL, "dave", "T-300"), STORE_OK);
	assert_int_equal(store_company_get(st, "acme", &c), STORE_OK);
	assert_int_equal(c.route, ROUTE_PLATFORM_SMARTHOST);
	assert_string_equal(c.own.host, "");		/* cleared */
	assert_null(c.own.secret);
	assert_string_equal(c.route_actor, "dave");
	assert_string_equal(c.route_reference, "T-300");

	assert_int_equal(store_company_set_status(st, "acme",
	    COMPANY_SUSPENDED, "erin", "T-400"), STORE_OK);
	assert_int_equal(store_company_get(st, "acme", &c), STORE_OK);
	assert_int_equal(c.status, COMPANY_SUSPENDED);
	assert_int_equal(store_company_set_status(st, "nobody",
	    COMPANY_ACTIVE, "erin", NULL), STORE_NOTFOUND);

	/* The audit log: every change with who, reference and detail. */
	audit_get(st, "acme", &log);
	assert_int_equal(log.n, 4);
	assert_string_equal(log.e[0].action, "company.add");
	assert_string_equal(log.e[0].actor, "alice");
	assert_string_equal(log.e[0].reference, "T-100");
	assert_string_equal(log.e[1].action, "route.set");
	assert_string_equal(log.e[1].actor, "carol");
	assert_string_equal(log.e[1].reference, "T-200");
	assert_string_equal(log.e[1].company, "acme");
	assert_true(log.e[1].at > 0);
	detail_get(log.e[1].detail, "from", NULL, v, sizeof(v));
	assert_string_equal(v, "none");
	detail_get(log.e[1].detail, "route", NULL, v, sizeof(v));
	assert_string_equal(v, "own-server");
	detail_get(log.e[1].detail, "own", "host", v, sizeof(v));
	assert_string_equal(v, "smtp.acme.example");
	detail_get(log.e[1].detail, "own", "secret", v, sizeof(v));
	assert_string_equal(v, "set");
	assert_null(strstr(log.e[1].detail, COMPANY_SECRET));
	detail_get(log.e[2].detail, "from", NULL, v, sizeof(v));
	assert_string_equal(v, "own-server");
	assert_string_equal(log.e[3].action, "company.status");
	detail_get(log.e[3].detail, "status", NULL, v, sizeof(v));
	assert_string_equal(v, "suspended");
	audit_free(&log);
	audit_get(st, NULL, &log);
	assert_int_equal(log.n, 5);		/* and beta's */
	assert_true(log.e[0].id < log.e[1].id);
	audit_free(&log);
	/* Failed calls left nothing behind. */
	audit_get(st, "nobody", &log);
	assert_int_equal(log.n, 0);
	store_close(st);
}

/* ---- domains ----------------------------------------------------------- */

static int
collect_domains(void *arg, const struct domain *d)
{
	struct buf *b = arg;

	buf_printf(b, "%s%s@%s", b->len ? "," : "", d->name, d->company);
	return 0;
}

static int
stop_at_first(void *arg, const struct domain *d)
{
	(*(int *)arg)++;
	(void)d;
	return 1;
}

static void
test_domain(void **state)
{
	char path[256];
	struct store *st = open_new(path, sizeof(path));
	struct audit_log log;
	struct domain d;
	struct buf b;
	int calls = 0;

	(void)state;
	add_company(st, "acme");
	add_company(st, "beta");
	assert_int_equal(store_domain_add(st, "Example.COM", "acme", "alice"),
	    STORE_OK);
	assert_int_equal(store_domain_add(st, "mail.example.com", "acme",
	    "alice"), STORE_OK);
	/* One company per domain, whatever the case. */
	assert_int_equal(store_domain_add(st, "EXAMPLE.com", "beta", "bob"),
	    STORE_EXISTS);
	assert_non_null(strstr(store_error(st), "acme"));
	assert_int_equal(store_domain_add(st, "example.com", "acme", "bob"),
	    STORE_EXISTS);
	assert_int_equal(store_domain_add(st, "beta.example", "nobody",
	    "bob"), STORE_NOTFOUND);
	assert_int_equal(store_domain_add(st, "beta.example", "beta", "bob"),
	    STORE_OK);

	assert_int_equal(store_domain_get(st, "EXAMPLE.COM", &d), STORE_OK);
	assert_string_equal(d.name, "example.com");
	assert_string_equal(d.company, "acme");
	assert_false(d.spf_ok);
	assert_int_equal(d.checked_at, 0);
	assert_true(d.created > 0);
	assert_int_equal(store_domain_get(st, "other.example", &d),
	    STORE_NOTFOUND);

	buf_init(&b);
	assert_int_equal(store_domain_list(st, NULL, collect_domains, &b),
	    STORE_OK);
	assert_string_equal(b.data, "beta.example@beta,example.com@acme,"
	    "mail.example.com@acme");
	buf_reset(&b);
	assert_int_equal(store_domain_list(st, "acme", collect_domains, &b),
	    STORE_OK);
	assert_string_equal(b.data, "example.com@acme,mail.example.com@acme");
	assert_int_equal(store_domain_list(st, "nobody", collect_domains, &b),
	    STORE_NOTFOUND);
	assert_int_equal(store_domain_list(st, NULL, stop_at_first, &calls),
	    STORE_OK);
	assert_int_equal(calls, 1);

	assert_int_equal(store_domain_set_auth(st, "example.com", true, false,
	    1700000000), STORE_OK);
	assert_int_equal(store_domain_set_auth(st, "example.com", true, false,
	    1700000100), STORE_OK);		/* no change: not audited */
	assert_int_equal(store_domain_set_auth(st, "example.com", true, true,
	    1700000200), STORE_OK);
	assert_int_equal(store_domain_get(st, "example.com", &d), STORE_OK);
	assert_true(d.spf_ok);
	assert_true(d.dkim_ok);
	assert_int_equal(d.checked_at, 1700000200);
	assert_int_equal(store_domain_set_auth(st, "nope.example", true, true,
	    1), STORE_NOTFOUND);

	assert_int_equal(store_domain_remove(st, "Mail.Example.com", "carol"),
	    STORE_OK);
	assert_int_equal(store_domain_remove(st, "mail.example.com", "carol"),
	    STORE_NOTFOUND);
	/* Now free for another company. */
	assert_int_equal(store_domain_add(st, "mail.example.com", "beta",
	    "bob"), STORE_OK);

	audit_get(st, "acme", &log);
	/* company.add, 2 domain.add, 2 domain.auth, domain.remove */
	assert_int_equal(log.n, 6);
	assert_string_equal(log.e[1].action, "domain.add");
	assert_non_null(strstr(log.e[1].detail, "\"example.com\""));
	assert_string_equal(log.e[3].action, "domain.auth");
	assert_string_equal(log.e[4].action, "domain.auth");
	assert_string_equal(log.e[5].action, "domain.remove");
	assert_string_equal(log.e[5].actor, "carol");
	audit_free(&log);

	/* Not domain names. */
	assert_int_equal(store_domain_add(st, "localhost", "acme", "a"),
	    STORE_INVALID);
	assert_int_equal(store_domain_add(st, "1.2.3.4", "acme", "a"),
	    STORE_INVALID);
	assert_int_equal(store_domain_add(st, "a..example", "acme", "a"),
	    STORE_INVALID);
	assert_int_equal(store_domain_add(st, "-a.example", "acme", "a"),
	    STORE_INVALID);
	assert_int_equal(store_domain_add(st, "a_b.example", "acme", "a"),
	    STORE_INVALID);
	assert_int_equal(store_domain_add(st, "example.com.", "acme", "a"),
	    STORE_INVALID);
	assert_int_equal(store_domain_add(st, "exa mple.com", "acme", "a"),
	    STORE_INVALID);
	buf_free(&b);
	store_close(st);
}

/* ---- users ------------------------------------------------------------- */

static int
collect_users(void *arg, const struct user *u)
{
	struct buf *b = arg;

	buf_printf(b, "%s%s/%s/%s", b->len ? "," : "", u->email,
	    route_kind_name(u->route), u->smtp.secret ? u->smtp.secret : "-");
	return 0;
}

static void
test_user(void **state)
{
	char path[256], v[128], secret[] = USER_SECRET;
	struct store *st = open_new(path, sizeof(path));
	struct audit_log log;
	struct user u, got;
	int64_t id;
	struct buf b;

	(void)state;
	add_company(st, "acme");
	add_company(st, "beta");
	id = add_user(st, "acme", "Ann@acme.example");
	assert_int_equal(store_user_get(st, id, &got), STORE_OK);
	assert_int_equal(got.route, USER_ROUTE_COMPANY);	/* default */
	assert_string_equal(got.email, "Ann@acme.example");
	assert_string_equal(got.company, "acme");
	assert_null(got.smtp.secret);
	/* Unique per company, without regard to case. */
	user_init(&u, "acme", "ann@ACME.example");
	assert_int_equal(store_user_add(st, &u, "alice"), STORE_EXISTS);
	user_init(&u, "beta", "ann@acme.example");
	assert_int_equal(store_user_add(st, &u, "alice"), STORE_OK);
	user_init(&u, "nobody", "x@acme.example");
	assert_int_equal(store_user_add(st, &u, "alice"), STORE_NOTFOUND);

	/* Own server at add time. */
	user_init(&u, "acme", "bob@acme.example");
	u.route = ROUTE_OWN_SERVER;
	own_settings(&u.smtp, "mail.bob.example", secret);
	u.smtp.port = 2525;
	snprintf(u.from_address, sizeof(u.from_address), "bob@acme.example");
	assert_int_equal(store_user_add(st, &u, "alice"), STORE_OK);
	assert_int_equal(store_user_get(st, u.id, &got), STORE_OK);
	assert_int_equal(got.route, ROUTE_OWN_SERVER);
	assert_int_equal(got.smtp.port, 2525);
	assert_string_equal(got.smtp.secret, USER_SECRET);
	assert_string_equal(got.from_address, "bob@acme.example");
	smtp_settings_clear(&got.smtp);

	/* Set SMTP: own server needs a host; then back to the company. */
	user_init(&u, "acme", "ann@acme.example");
	u.route = ROUTE_OWN_SERVER;
	assert_int_equal(store_user_set_smtp(st, id, &u, "carol"),
	    STORE_INVALID);
	own_settings(&u.smtp, "smtp.ann.example", secret);
	u.smtp.tls = RTLS_IMPLICIT;
	assert_int_equal(store_user_set_smtp(st, id, &u, "carol"), STORE_OK);
	assert_int_equal(store_user_set_smtp(st, 999999, &u, "carol"),
	    STORE_NOTFOUND);
	assert_int_equal(store_user_get(st, id, &got), STORE_OK);
	assert_int_equal(got.smtp.tls, RTLS_IMPLICIT);
	assert_int_equal(got.smtp.port, 587);
	assert_string_equal(got.smtp.secret, USER_SECRET);
	smtp_settings_clear(&got.smtp);
	/* A password needs an auth user and the other way round. */
	u.smtp.secret = NULL;
	assert_int_equal(store_user_set_smtp(st, id, &u, "carol"),
	    STORE_INVALID);
	u.smtp.auth_user[0] = '\0';
	u.smtp.secret = secret;
	assert_int_equal(store_user_set_smtp(st, id, &u, "carol"),
	    STORE_INVALID);

	buf_init(&b);
	assert_int_equal(store_user_list(st, "acme", collect_users, &b),
	    STORE_OK);
	assert_string_equal(b.data, "Ann@acme.example/own-server/" USER_SECRET
	    ",bob@acme.example/own-server/" USER_SECRET);
	buf_reset(&b);
	assert_int_equal(store_user_list(st, NULL, collect_users, &b),
	    STORE_OK);
	assert_non_null(strstr(b.data, "ann@acme.example/company/-"));
	assert_int_equal(store_user_list(st, "nobody", collect_users, &b),
	    STORE_NOTFOUND);

	memset(&u, 0, sizeof(u));
	u.route = USER_ROUTE_COMPANY;
	assert_int_equal(store_user_set_smtp(st, id, &u, "dave"), STORE_OK);
	assert_int_equal(store_user_get(st, id, &got), STORE_OK);
	assert_int_equal(got.route, USER_ROUTE_COMPANY);
	assert_string_equal(got.smtp.host, "");
	assert_null(got.smtp.secret);
	assert_int_equal(store_user_get(st, 424242, &got), STORE_NOTFOUND);

	audit_get(st, "acme", &log);
	assert_int_equal(log.n, 5);	/* company, 2 users, 2 smtp */
	assert_string_equal(log.e[3].action, "user.smtp");
	assert_string_equal(log.e[3].actor, "carol");
	detail_get(log.e[3].detail, "smtp", "secret", v, sizeof(v));
	assert_string_equal(v, "set");
	detail_get(log.e[3].detail, "smtp", "tls", v, sizeof(v));
	assert_string_equal(v, "implicit");
	detail_get(log.e[4].detail, "route", NULL, v, sizeof(v));
	assert_string_equal(v, "company");
	for (size_t i = 0; i < log.n; i++)
		assert_null(strstr(log.e[i].detail, USER_SECRET));
	audit_free(&log);
	buf_free(&b);
	store_close(st);
}

/* ---- mass update ------------------------------------------------------- */

struct mass_seen {
	size_t		n, nmissing;
	char		missing[8][64];
	char		last_before[STORE_NAME_MAX + 1];
	char		last_after[STORE_NAME_MAX + 1];
	bool		secret_seen;
};

static void
mass_fn(void *arg, const struct user *before, const struct user *after)
{
	struct mass_seen *m = arg;

	m->n++;
	snprintf(m->last_before, sizeof(m->last_before), "%s",
	    before->from_address);
	snprintf(m->last_after, sizeof(m->last_after), "%s",
	    after->from_address);
	if (before->smtp.secret != NULL || after->smtp.secret != NULL)
		m->secret_seen = true;
}

static void
missing_fn(void *arg, const char *email)
{
	struct mass_seen *m = arg;

	if (m->nmissing < nitems(m->missing))
		snprintf(m->missing[m->nmissing], sizeof(m->missing[0]), "%s",
		    email);
	m->nmissing++;
}

static void
user_from(struct store *st, int64_t id, char *out, size_t outlen)
{
	struct user u;

	assert_int_equal(store_user_get(st, id, &u), STORE_OK);
	assert_true(strlcpy_ok(out, u.from_address, outlen));
	smtp_settings_clear(&u.smtp);
}

static void
test_mass_update(void **state)
{
	char path[256], v[128], secret[] = USER_SECRET;
	struct store *st = open_new(path, sizeof(path));
	const char *emails[] = { "a1@acme.example", "A2@ACME.example",
	    "ghost@acme.example", "a1@acme.example" };
	struct user_filter f = { 0 };
	struct user_update upd;
	struct mass_seen m;
	struct audit_log log;
	int64_t a1, a2, a3, b1;
	size_t matched = 99;

	(void)state;
	add_company(st, "acme");
	add_company(st, "beta");
	a1 = add_user(st, "acme", "a1@acme.example");
	a2 = add_user(st, "acme", "a2@acme.example");
	a3 = add_user(st, "acme", "a3@acme.example");
	b1 = add_user(st, "beta", "a1@acme.example");

	memset(&upd, 0, sizeof(upd));
	upd.set = USER_SET_FROM;
	upd.from_address = "noreply@acme.example";

	/* Company filter. */
	f.company = "acme";
	memset(&m, 0, sizeof(m));
	assert_int_equal(store_user_mass_update(st, &f, &upd, false, mass_fn,
	    missing_fn, &m, &matched, "alice"), STORE_OK);
	assert_int_equal(matched, 3);
	assert_int_equal(m.n, 3);
	assert_string_equal(m.last_before, "");
	assert_string_equal(m.last_after, "noreply@acme.example");
	user_from(st, a3, v, sizeof(v));
	assert_string_equal(v, "noreply@acme.example");
	user_from(st, b1, v, sizeof(v));
	assert_string_equal(v, "");

	/* Email list with a missing address: reported, nothing changed. */
	upd.from_address = "list@acme.example";
	f.company = NULL;
	f.emails = emails;
	f.nemails = nitems(emails);
	memset(&m, 0, sizeof(m));
	assert_int_equal(store_user_mass_update(st, &f, &upd, false, mass_fn,
	    missing_fn, &m, &matched, "alice"), STORE_NOTFOUND);
	assert_int_equal(m.nmissing, 1);
	assert_string_equal(m.missing[0], "ghost@acme.example");
	assert_int_equal(m.n, 0);
	user_from(st, a1, v, sizeof(v));
	assert_string_equal(v, "noreply@acme.example");

	/* Dry run: reports matches and the missing one, writes nothing. */
	memset(&m, 0, sizeof(m));
	assert_int_equal(store_user_mass_update(st, &f, &upd, true, mass_fn,
	    missing_fn, &m, &matched, "alice"), STORE_OK);
	assert_int_equal(matched, 3);	/* a1 in acme and beta, a2 */
	assert_int_equal(m.nmissing, 1);
	assert_int_equal(m.n, 3);
	user_from(st, a1, v, sizeof(v));
	assert_string_equal(v, "noreply@acme.example");
	user_from(st, b1, v, sizeof(v));
	assert_string_equal(v, "");

	/* Without the ghost, within acme only. */
	f.nemails = 2;
	f.company = "acme";
	memset(&m, 0, sizeof(m));
	assert_int_equal(store_user_mass_update(st, &f, &upd, false, mass_fn,
	    missing_fn, &m, &matched, "bob"), STORE_OK);
	assert_int_equal(matched, 2);
	user_from(st, a2, v, sizeof(v));
	assert_string_equal(v, "list@acme.example");
	user_from(st, a3, v, sizeof(v));
	assert_string_equal(v, "noreply@acme.example");
	user_from(st, b1, v, sizeof(v));
	assert_string_equal(v, "");

	/* Own server with a password for all of acme. */
	memset(&upd, 0, sizeof(upd));
	upd.set = USER_SET_ROUTE | USER_SET_HOST | USER_SET_AUTH_USER |
	    USER_SET_SECRET | USER_SET_TLS;
	upd.route = ROUTE_OWN_SERVER;
	snprintf(upd.smtp.host, sizeof(upd.smtp.host), "smtp.acme.example");
	snprintf(upd.smtp.auth_user, sizeof(upd.smtp.auth_user), "relay");
	upd.smtp.secret = secret;
	upd.smtp.tls = RTLS_REQUIRED;
	f.emails = NULL;
	f.nemails = 0;
	memset(&m, 0, sizeof(m));
	assert_int_equal(store_user_mass_update(st, &f, &upd, false, mass_fn,
	    NULL, &m, &matched, "carol"), STORE_OK);
	assert_int_equal(matched, 3);
	assert_false(m.secret_seen);	/* never handed to the callback */
	{
		struct user u;
		assert_int_equal(store_user_get(st, a3, &u), STORE_OK);
		assert_int_equal(u.route, ROUTE_OWN_SERVER);
		assert_int_equal(u.smtp.port, 587);
		assert_int_equal(u.smtp.tls, RTLS_REQUIRED);
		assert_string_equal(u.smtp.secret, USER_SECRET);
		smtp_settings_clear(&u.smtp);
	}

	/* All or nothing: a1 goes back to the company route first (by id
	 * order it is written first), then a3's new state is invalid. */
	{
		struct user u;
		memset(&u, 0, sizeof(u));
		u.route = ROUTE_PLATFORM_RELAY;
		assert_int_equal(store_user_set_smtp(st, a3, &u, "dave"),
		    STORE_OK);
	}
	memset(&upd, 0, sizeof(upd));
	upd.set = USER_SET_PORT;
	upd.smtp.port = 465;
	memset(&m, 0, sizeof(m));
	assert_int_equal(store_user_mass_update(st, &f, &upd, false, mass_fn,
	    NULL, &m, &matched, "erin"), STORE_INVALID);
	assert_non_null(strstr(store_error(st), "a3@acme.example"));
	assert_int_equal(m.n, 2);	/* a1 and a2 were planned */
	{
		struct user u;
		assert_int_equal(store_user_get(st, a1, &u), STORE_OK);
		assert_int_equal(u.smtp.port, 587);	/* rolled back */
		smtp_settings_clear(&u.smtp);
	}
	/* Keeping the secret when it is not set; dropping it with the
	 * route. */
	upd.set = USER_SET_ROUTE;
	upd.route = USER_ROUTE_COMPANY;
	f.company = "acme";
	assert_int_equal(store_user_mass_update(st, &f, &upd, false, NULL,
	    NULL, NULL, &matched, "erin"), STORE_OK);
	{
		struct user u;
		assert_int_equal(store_user_get(st, a1, &u), STORE_OK);
		assert_int_equal(u.route, USER_ROUTE_COMPANY);
		assert_null(u.smtp.secret);
		assert_string_equal(u.smtp.host, "");
	}
	/* Unknown company, nothing to set, bad addresses. */
	f.company = "nobody";
	assert_int_equal(store_user_mass_update(st, &f, &upd, false, NULL,
	    NULL, NULL, &matched, "erin"), STORE_NOTFOUND);
	f.company = NULL;
	upd.set = 0;
	assert_int_equal(store_user_mass_update(st, &f, &upd, false, NULL,
	    NULL, NULL, &matched, "erin"), STORE_INVALID);
	{
		const char *bad[] = { "ok@acme.example", "not-an-address" };
		upd.set = USER_SET_ROUTE;
		f.emails = bad;
		f.nemails = 2;
		assert_int_equal(store_user_mass_update(st, &f, &upd, false,
		    NULL, NULL, NULL, &matched, "erin"), STORE_INVALID);
		assert_non_null(strstr(store_error(st), "number 2"));
	}

	audit_get(st, "acme", &log);
	{
		size_t nmass = 0;
		for (size_t i = 0; i < log.n; i++) {
			if (strcmp(log.e[i].action, "user.mass_update") != 0)
				continue;
			nmass++;
			assert_null(strstr(log.e[i].detail, USER_SECRET));
		}
		assert_int_equal(nmass, 4);	/* one per applied update */
	}
	detail_get(log.e[log.n - 1].detail, "set", "secret", v, sizeof(v));
	assert_string_equal(v, "unchanged");
	detail_get(log.e[log.n - 1].detail, "matched", NULL, v, sizeof(v));
	assert_string_equal(v, "3");
	audit_free(&log);
	store_close(st);
}

static void
test_mass_update_10000(void **state)
{
	char path[256], email[64];
	struct store *st = open_new(path, sizeof(path));
	struct user_filter f = { .company = "big" };
	struct user_update upd;
	int64_t t0, t1, t2, last = 0;
	size_t matched = 0;

	(void)state;
	add_company(st, "big");
	add_company(st, "small");
	add_user(st, "small", "u1@small.example");
	/* Setup through the API: 10,000 transactions of their own. */
	t0 = now_msec_mono();
	for (int i = 0; i < 10000; i++) {
		snprintf(email, sizeof(email), "user%05d@big.example", i);
		last = add_user(st, "big", email);
	}
	t1 = now_msec_mono();
	memset(&upd, 0, sizeof(upd));
	upd.set = USER_SET_FROM | USER_SET_ROUTE;
	upd.from_address = "noreply@big.example";
	upd.route = ROUTE_PLATFORM_RELAY;
	assert_int_equal(store_user_mass_update(st, &f, &upd, false, NULL,
	    NULL, NULL, &matched, "alice"), STORE_OK);
	t2 = now_msec_mono();
	print_message("10000 users: added in %lld ms, updated in %lld ms\n",
	    (long long)(t1 - t0), (long long)(t2 - t1));
	assert_int_equal(matched, 10000);
	assert_true(t2 - t1 < 1000);
	user_from(st, last, email, sizeof(email));
	assert_string_equal(email, "noreply@big.example");
	store_close(st);
}

/* ---- credentials ------------------------------------------------------- */

static int
count_creds(void *arg, const struct credential *c)
{
	(*(int *)arg)++;
	(void)c;
	return 0;
}

static void
test_credential(void **state)
{
	char path[256];
	struct store *st = open_new(path, sizeof(path));
	struct credential c, got;
	struct audit_log log;
	int n = 0;

	(void)state;
	add_company(st, "acme");
	memset(&c, 0, sizeof(c));
	snprintf(c.company, sizeof(c.company), "acme");
	snprintf(c.application, sizeof(c.application), "billing");
	snprintf(c.username, sizeof(c.username), "acme-billing");
	snprintf(c.hash, sizeof(c.hash), "%s", HASH);
	assert_int_equal(store_credential_add(st, &c, "alice"), STORE_OK);
	assert_true(c.id > 0);
	assert_true(c.created > 0);
	assert_int_equal(store_credential_add(st, &c, "alice"), STORE_EXISTS);
	snprintf(c.username, sizeof(c.username), "other");
	snprintf(c.company, sizeof(c.company), "nobody");
	assert_int_equal(store_credential_add(st, &c, "alice"),
	    STORE_NOTFOUND);
	snprintf(c.company, sizeof(c.company), "acme");
	snprintf(c.hash, sizeof(c.hash), "plain-text-password");
	assert_int_equal(store_credential_add(st, &c, "alice"), STORE_INVALID);
	snprintf(c.hash, sizeof(c.hash), "%s", HASH);
	snprintf(c.username, sizeof(c.username), "has space");
	assert_int_equal(store_credential_add(st, &c, "alice"), STORE_INVALID);

	assert_int_equal(store_credential_find(st, "acme-billing", &got),
	    STORE_OK);
	assert_string_equal(got.company, "acme");
	assert_string_equal(got.application, "billing");
	assert_string_equal(got.hash, HASH);
	assert_int_equal(got.revoked, 0);
	assert_int_equal(store_credential_find(st, "nobody", &got),
	    STORE_NOTFOUND);

	assert_int_equal(store_credential_revoke(st, "acme-billing", "bob"),
	    STORE_OK);
	assert_int_equal(store_credential_find(st, "acme-billing", &got),
	    STORE_NOTFOUND);
	assert_int_equal(store_credential_revoke(st, "acme-billing", "bob"),
	    STORE_NOTFOUND);
	/* The name stays taken; the list still shows it, revoked. */
	snprintf(c.username, sizeof(c.username), "acme-billing");
	assert_int_equal(store_credential_add(st, &c, "alice"), STORE_EXISTS);
	assert_int_equal(store_credential_list(st, "acme", count_creds, &n),
	    STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(store_credential_list(st, "nobody", count_creds, &n),
	    STORE_NOTFOUND);

	audit_get(st, "acme", &log);
	assert_int_equal(log.n, 3);
	assert_string_equal(log.e[1].action, "credential.add");
	assert_null(strstr(log.e[1].detail, "argon2"));
	assert_string_equal(log.e[2].action, "credential.revoke");
	assert_string_equal(log.e[2].actor, "bob");
	audit_free(&log);
	store_close(st);
}

/* ---- secrets ----------------------------------------------------------- */

/* Whether the file at path (absent: no) contains needle. */
static bool
file_contains(const char *path, const char *needle)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char chunk[65536];
	size_t n;
	bool found;

	if (f == NULL)
		return false;
	buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_add(&b, chunk, n);
	fclose(f);
	found = b.len > 0 && memmem(b.data, b.len, needle, strlen(needle));
	buf_free(&b);
	return found;
}

/* Whether any of the database's files holds needle. */
static bool
db_contains(const char *path, const char *needle)
{
	char side[300];

	if (file_contains(path, needle))
		return true;
	snprintf(side, sizeof(side), "%s-wal", path);
	if (file_contains(side, needle))
		return true;
	snprintf(side, sizeof(side), "%s-shm", path);
	return file_contains(side, needle);
}

static void
test_secrets_at_rest(void **state)
{
	char path[256], uri[300], err[512], wal[300];
	char csecret[] = COMPANY_SECRET, usecret[] = USER_SECRET;
	struct smtp_settings own;
	struct store *st;
	struct company c;
	struct user u;
	struct stat sb;

	(void)state;
	new_db(path, sizeof(path), uri, sizeof(uri));
	st = open_uri(uri, key_path);
	add_company(st, "acme");
	own_settings(&own, "smtp.acme.example", csecret);
	assert_int_equal(store_company_set_route(st, "acme", ROUTE_OWN_SERVER,
	    &own, "alice", "T-1"), STORE_OK);
	user_init(&u, "acme", "ann@acme.example");
	u.route = ROUTE_OWN_SERVER;
	own_settings(&u.smtp, "smtp.ann.example", usecret);
	assert_int_equal(store_user_add(st, &u, "alice"), STORE_OK);
	/* The canaries are in the database (names, hosts), the secrets
	 * are not: while open (the WAL holds the pages) ... */
	snprintf(wal, sizeof(wal), "%s-wal", path);
	assert_int_equal(stat(wal, &sb), 0);
	assert_true(sb.st_size > 0);
	assert_true(db_contains(path, "smtp.acme.example"));
	assert_false(db_contains(path, COMPANY_SECRET));
	assert_false(db_contains(path, USER_SECRET));
	store_close(st);
	/* ... and after the checkpoint at close. */
	assert_true(file_contains(path, "smtp.ann.example"));
	assert_false(db_contains(path, COMPANY_SECRET));
	assert_false(db_contains(path, USER_SECRET));

	/* Another key: no crash, a clear error, secrets stay sealed. */
	st = open_uri(uri, other_key_path);
	assert_int_equal(store_company_get(st, "acme", &c), STORE_ERROR);
	assert_non_null(strstr(store_error(st), "decrypt"));
	assert_null(c.own.secret);
	assert_int_equal(store_user_get(st, u.id, &u), STORE_ERROR);
	assert_null(u.smtp.secret);
	assert_int_equal(store_domain_add(st, "acme.example", "acme", "a"),
	    STORE_OK);				/* no secret involved */
	store_close(st);

	/* No key at all: what holds no secret works, the rest fails. */
	assert_non_null(st = store_open(uri, NULL, err, sizeof(err)));
	assert_int_equal(store_company_get(st, "acme", &c), STORE_ERROR);
	assert_non_null(strstr(store_error(st), "secret_key_file"));
	add_company(st, "beta");
	own_settings(&own, "smtp.beta.example", csecret);
	assert_int_equal(store_company_set_route(st, "beta", ROUTE_OWN_SERVER,
	    &own, "alice", "T-2"), STORE_ERROR);
	own.auth_user[0] = '\0';
	own.secret = NULL;
	assert_int_equal(store_company_set_route(st, "beta", ROUTE_OWN_SERVER,
	    &own, "alice", "T-2"), STORE_OK);
	store_close(st);

	/* The right key still opens them. */
	st = open_uri(uri, key_path);
	assert_int_equal(store_company_get(st, "acme", &c), STORE_OK);
	assert_string_equal(c.own.secret, COMPANY_SECRET);
	smtp_settings_clear(&c.own);
	store_close(st);
}

/* ---- validation -------------------------------------------------------- */

static void
test_validation(void **state)
{
	char path[256];
	struct store *st = open_new(path, sizeof(path));
	char long_secret[STORE_SECRET_MAX + 2];
	struct company c;
	struct user u;
	enum route_kind k;

	(void)state;
	static const char *const bad_ids[] = { "", "-acme", "Acme", "ac me",
	    "acme_1", "a.b" };
	for (size_t i = 0; i < nitems(bad_ids); i++) {
		company_init(&c, bad_ids[i], ROUTE_NONE);
		assert_int_equal(store_company_add(st, &c, "alice", NULL),
		    STORE_INVALID);
	}
	/* 64 characters: too long (and unterminated in the struct). */
	company_init(&c, "x", ROUTE_NONE);
	memset(c.id, 'a', sizeof(c.id));
	assert_int_equal(store_company_add(st, &c, "alice", NULL),
	    STORE_INVALID);
	assert_int_equal(store_company_get(st, "0123456789012345678901234567"
	    "890123456789012345678901234567890123", &c), STORE_INVALID);
	static const char *const good_ids[] = { "a", "0", "acme-1", "acme-",
	    "012345678901234567890123456789012345678901234567890123456789012"
	};
	for (size_t i = 0; i < nitems(good_ids); i++) {
		company_init(&c, good_ids[i], ROUTE_NONE);
		assert_int_equal(store_company_add(st, &c, "alice", NULL),
		    STORE_OK);
	}
	/* Control characters and broken UTF-8 anywhere. */
	company_init(&c, "ctl", ROUTE_NONE);
	snprintf(c.name, sizeof(c.name), "Evil\nLtd");
	assert_int_equal(store_company_add(st, &c, "alice", NULL),
	    STORE_INVALID);
	snprintf(c.name, sizeof(c.name), "Bad \xc3\x28 UTF-8");
	assert_int_equal(store_company_add(st, &c, "alice", NULL),
	    STORE_INVALID);
	snprintf(c.name, sizeof(c.name), "C1 \xc2\x85 NEL");
	assert_int_equal(store_company_add(st, &c, "alice", NULL),
	    STORE_INVALID);
	snprintf(c.name, sizeof(c.name), "Ümlaut GmbH ✓");
	assert_int_equal(store_company_add(st, &c, "alice\t", NULL),
	    STORE_INVALID);
	assert_int_equal(store_company_add(st, &c, "", NULL), STORE_INVALID);
	assert_int_equal(store_company_add(st, &c, "alice", "T\r1"),
	    STORE_INVALID);
	assert_int_equal(store_company_add(st, &c, "alice", NULL), STORE_OK);
	company_init(&c, "unterminated", ROUTE_NONE);
	memset(c.name, 'x', sizeof(c.name));
	assert_int_equal(store_company_add(st, &c, "alice", NULL),
	    STORE_INVALID);

	/* Settings. */
	company_init(&c, "set", ROUTE_OWN_SERVER);
	own_settings(&c.own, "smtp..example", NULL);
	c.own.auth_user[0] = '\0';
	assert_int_equal(store_company_add(st, &c, "alice", NULL),
	    STORE_INVALID);
	snprintf(c.own.host, sizeof(c.own.host), "2001:db8::1");
	c.own.tls = (enum route_tls)7;
	assert_int_equal(store_company_add(st, &c, "alice", NULL),
	    STORE_INVALID);
	c.own.tls = RTLS_NONE;
	memset(long_secret, 'p', sizeof(long_secret) - 1);
	long_secret[sizeof(long_secret) - 1] = '\0';
	snprintf(c.own.auth_user, sizeof(c.own.auth_user), "u");
	c.own.secret = long_secret;
	assert_int_equal(store_company_add(st, &c, "alice", NULL),
	    STORE_INVALID);
	long_secret[STORE_SECRET_MAX] = '\0';
	snprintf(c.own.xoauth2_token_url, sizeof(c.own.xoauth2_token_url),
	    "ftp://token.example/");
	assert_int_equal(store_company_add(st, &c, "alice", NULL),
	    STORE_INVALID);
	snprintf(c.own.xoauth2_token_url, sizeof(c.own.xoauth2_token_url),
	    "https://token.example/oauth2/token");
	assert_int_equal(store_company_add(st, &c, "alice", NULL),
	    STORE_INVALID);		/* no client id */
	snprintf(c.own.xoauth2_client_id, sizeof(c.own.xoauth2_client_id),
	    "client-1");
	assert_int_equal(store_company_add(st, &c, "alice", NULL), STORE_OK);
	assert_int_equal(store_company_get(st, "set", &c), STORE_OK);
	assert_int_equal(strlen(c.own.secret), STORE_SECRET_MAX);
	assert_string_equal(c.own.host, "2001:db8::1");
	smtp_settings_clear(&c.own);

	/* Emails. */
	static const char *const bad_emails[] = { "", "plain", "a@b@c.example",
	    "@acme.example", "ann@", "ann@acme..example", "ann smith@a.example",
	    "<ann>@acme.example", "ann@acme.example\n", "ann@1.2.3.4" };
	for (size_t i = 0; i < nitems(bad_emails); i++) {
		user_init(&u, "acme-1", bad_emails[i]);
		assert_int_equal(store_user_add(st, &u, "alice"),
		    STORE_INVALID);
	}
	user_init(&u, "acme-1", "ann@acme.example");
	snprintf(u.from_address, sizeof(u.from_address), "not an address");
	assert_int_equal(store_user_add(st, &u, "alice"), STORE_INVALID);
	u.from_address[0] = '\0';
	u.route = (enum route_kind)9;
	assert_int_equal(store_user_add(st, &u, "alice"), STORE_INVALID);

	/* Route names. */
	for (int i = ROUTE_NONE; i <= USER_ROUTE_COMPANY; i++) {
		assert_int_equal(route_kind_parse(route_kind_name(
		    (enum route_kind)i), &k), 0);
		assert_int_equal(k, i);
	}
	assert_int_equal(route_kind_parse("Own-Server", &k), -1);
	assert_int_equal(route_kind_parse(NULL, &k), -1);
	assert_string_equal(route_kind_name(ROUTE_PLATFORM_SMARTHOST),
	    "platform-smarthost");
	assert_string_equal(company_status_name(COMPANY_SUSPENDED),
	    "suspended");
	store_close(st);
}

/* ---- version ----------------------------------------------------------- */

static void
test_version(void **state)
{
	char path[256], uri[300];
	struct store *a, *b;
	uint64_t va, vb;

	(void)state;
	new_db(path, sizeof(path), uri, sizeof(uri));
	a = open_uri(uri, key_path);
	b = open_uri(uri, key_path);
	va = store_version(a);
	vb = store_version(b);
	assert_int_equal(store_version(a), va);
	add_company(a, "acme");			/* own commit */
	assert_true(store_version(a) != va);
	va = store_version(a);
	assert_true(store_version(b) != vb);	/* another's commit */
	vb = store_version(b);
	assert_int_equal(store_version(b), vb);
	/* A failed change commits nothing. */
	add_company(b, "beta");
	assert_true(store_version(a) != va);
	va = store_version(a);
	{
		struct company c;
		company_init(&c, "acme", ROUTE_NONE);
		assert_int_equal(store_company_add(a, &c, "x", NULL),
		    STORE_EXISTS);
	}
	assert_int_equal(store_version(a), va);
	store_close(a);
	store_close(b);
}

static int
setup(void **state)
{
	char err[512];

	(void)state;
	if (tmpdir_make() != 0)
		return -1;
	snprintf(key_path, sizeof(key_path), "%s/secret.key", dir);
	snprintf(other_key_path, sizeof(other_key_path), "%s/other.key", dir);
	if (secretbox_key_generate(key_path, err, sizeof(err)) != 0 ||
	    secretbox_key_generate(other_key_path, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	return 0;
}

/* DKIM keys: sealed at rest, listed with and without the private key,
 * state changes audited, removed with their domain. */
static int
dkim_count_cb(void *arg, const struct dkim_keyrec *k)
{
	struct dkim_keyrec *out = arg;

	if (k->private_pem != NULL)
		assert_non_null(strstr(k->private_pem, "PRIVATE KEY"));
	out->id++;			/* a count */
	out->bits = k->private_pem != NULL;
	out->state = k->state;
	return 0;
}

static void
test_dkim_keys(void **state)
{
	char path[256], uri[300];
	struct dkim_keyrec k, seen;
	struct store *st;
	sqlite3 *db;

	(void)state;
	new_db(path, sizeof(path), uri, sizeof(uri));
	st = open_uri(uri, key_path);
	add_company(st, "acme");
	assert_int_equal(store_domain_add(st, "acme.example", "acme", "alice"),
	    STORE_OK);
	memset(&k, 0, sizeof(k));
	strcpy(k.domain, "ACME.example");
	strcpy(k.selector, "s1");
	strcpy(k.algorithm, "ed25519-sha256");
	strcpy(k.record, "v=DKIM1; k=ed25519; p=AAAA");
	k.private_pem = xstrdup("-----BEGIN PRIVATE KEY-----\nSECRETBYTES\n"
	    "-----END PRIVATE KEY-----\n");
	k.created = 1000;
	assert_int_equal(store_dkim_add(st, &k, "alice"), STORE_OK);
	assert_true(k.id > 0);
	/* the same selector twice, a bad selector, an unknown domain */
	assert_int_equal(store_dkim_add(st, &k, "alice"), STORE_EXISTS);
	strcpy(k.selector, "bad selector");
	assert_int_equal(store_dkim_add(st, &k, "alice"), STORE_INVALID);
	strcpy(k.selector, "s2");
	strcpy(k.domain, "other.example");
	assert_int_equal(store_dkim_add(st, &k, "alice"), STORE_NOTFOUND);
	dkim_keyrec_clear(&k);

	memset(&seen, 0, sizeof(seen));
	assert_int_equal(store_dkim_list(st, "acme.example", false,
	    dkim_count_cb, &seen), STORE_OK);
	assert_int_equal(seen.id, 1);
	assert_int_equal(seen.bits, 0);		/* no private key */
	memset(&seen, 0, sizeof(seen));
	if (store_dkim_list(st, NULL, true, dkim_count_cb, &seen) != STORE_OK)
		fail_msg("%s", store_error(st));
	assert_int_equal(seen.id, 1);
	assert_int_equal(seen.bits, 1);
	assert_int_equal(seen.state, DKIMKEY_PENDING);

	memset(&k, 0, sizeof(k));
	k.id = 1;
	strcpy(k.selector, "s1");
	strcpy(k.algorithm, "ed25519-sha256");
	strcpy(k.record, "v=DKIM1; k=ed25519; p=AAAA");
	k.state = DKIMKEY_ACTIVE;
	k.activated_at = k.published_at = 2000;
	assert_int_equal(store_dkim_update(st, &k, "ombud"), STORE_OK);
	k.published_at = 3000;
	assert_int_equal(store_dkim_update(st, &k, "ombud"), STORE_OK);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(store_dkim_list(st, "acme.example", false,
	    dkim_count_cb, &seen), STORE_OK);
	assert_int_equal(seen.state, DKIMKEY_ACTIVE);

	/* the check's state */
	{
		char *detail = NULL;
		int64_t broken = -1;
		struct domain d;

		assert_int_equal(store_domain_set_check(st, "acme.example",
		    true, true, true, 5000, "{\"ok\":true}"), STORE_OK);
		assert_int_equal(store_domain_set_check(st, "acme.example",
		    false, true, true, 6000, "{\"ok\":false}"), STORE_OK);
		assert_int_equal(store_domain_check_detail(st, "acme.example",
		    &detail, &broken), STORE_OK);
		assert_string_equal(detail, "{\"ok\":false}");
		assert_int_equal(broken, 6000);
		free(detail);
		assert_int_equal(store_domain_get(st, "acme.example", &d),
		    STORE_OK);
		assert_false(d.spf_ok);
		assert_true(d.dmarc_ok);
	}
	store_close(st);

	db = raw_open(path);
	/* sealed: the private key's bytes are nowhere in clear */
	assert_int_equal(raw_int(db, "SELECT count(*) FROM dkim_keys WHERE "
	    "instr(private_key, 'SECRETBYTES') > 0"), 0);
	/* one audited state change (the second update changed no state) */
	assert_int_equal(raw_int(db, "SELECT count(*) FROM audit WHERE "
	    "action = 'dkim.state'"), 1);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM audit WHERE "
	    "action = 'domain.check'"), 2);
	sqlite3_close(db);

	st = open_uri(uri, key_path);
	assert_int_equal(store_domain_remove(st, "acme.example", "alice"),
	    STORE_OK);
	store_close(st);
	db = raw_open(path);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM dkim_keys"), 0);
	sqlite3_close(db);
}

/* A second handle on the database in the same process (the server's
 * meter) must not drop the first one's locks: another process's last
 * close would then delete the -wal and -shm under it, and the first
 * would never see another commit. */
static void
test_two_handles_one_process(void **state)
{
	char path[256], uri[300], wal[300];
	struct store *a, *b;
	uint64_t va;
	pid_t pid;
	int status;

	(void)state;
	new_db(path, sizeof(path), uri, sizeof(uri));
	a = open_uri(uri, key_path);
	va = store_version(a);
	b = open_uri(uri, key_path);
	/* another process (not a fork: it would share SQLite's lock
	 * bookkeeping) writes and closes */
	if ((pid = fork()) == 0) {
		execl("/usr/bin/python3", "python3", "-c",
		    "import sqlite3, sys\n"
		    "c = sqlite3.connect(sys.argv[1])\n"
		    "c.execute(\"INSERT INTO audit (at, actor, action, detail) "
		    "VALUES (1, 'other', 'test.write', '{}')\")\n"
		    "c.commit()\n"
		    "c.close()\n", path, (char *)NULL);
		_exit(127);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	snprintf(wal, sizeof(wal), "%s-wal", path);
	assert_int_equal(access(wal, F_OK), 0);	/* not deleted under a */
	assert_true(store_version(a) != va);	/* a sees the commit */
	store_close(b);
	store_close(a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_migrations),
		cmocka_unit_test(test_open_pragmas),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_company),
		cmocka_unit_test(test_domain),
		cmocka_unit_test(test_user),
		cmocka_unit_test(test_mass_update),
		cmocka_unit_test(test_mass_update_10000),
		cmocka_unit_test(test_credential),
		cmocka_unit_test(test_secrets_at_rest),
		cmocka_unit_test(test_validation),
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_dkim_keys),
		cmocka_unit_test(test_two_handles_one_process),
	};

	return cmocka_run_group_tests(tests, setup, tmpdir_remove);
}

/*
 * store_sqlite.c - the "sqlite:PATH" store backend (SQLite 3.37 or
 * later: STRICT tables).  One connection per handle, used by one thread
 * at a time; WAL journal so readers (a server refreshing its view) never
 * wait for a writer (the CLI), a 5 s busy timeout between writers.
 *
 * The schema is an ordered list of migrations, each applied in a
 * transaction of its own with its row in schema_migrations; a database
 * with a migration this binary does not know is refused.  Every change is
 * one BEGIN IMMEDIATE transaction that also inserts its audit row, so the
 * change and its record commit or vanish together.  Secrets are stored
 * as secretbox blobs sealed by store.c's key; audit details only say
 * whether a secret was "set", "none" or "unchanged".
 *
 * Must never: build SQL from a value (every value is a bound parameter;
 * the only SQL text is the constants below), store or log a secret in
 * clear, leave a transaction open when a call returns, or open a
 * database whose schema is newer than it knows.
 */
#include "store/store_impl.h"
#include "common/log.h"
#include "common/util.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#define SQ_BUSY_TIMEOUT_MS	5000
/* The actor of changes ombud makes by itself (authentication checks). */
#define SQ_SYSTEM_ACTOR		"ombud"

struct sq {
	sqlite3		*db;
	sqlite3_stmt	*version_stmt;	/* the newest audit id, kept */
};

#define SQ(st)	((struct sq *)(st)->be)

/*
 * The schema, one migration per element, applied in order; the number
 * of a migration is its index + 1.  Never edit one that was released:
 * append a new one.
 */
static const char *const sq_migrations[] = {
	/* 1: the tenant tables. */
	"CREATE TABLE schema_migrations ("
	"  version INTEGER PRIMARY KEY,"
	"  applied_at INTEGER"
	");"
	"CREATE TABLE companies ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  name TEXT NOT NULL,"
	"  status TEXT NOT NULL CHECK (status IN ('active', 'suspended')),"
	"  route TEXT NOT NULL CHECK (route IN ('none', 'own-server',"
	"    'platform-relay', 'platform-smarthost')),"
	"  own_host TEXT NOT NULL DEFAULT '',"
	"  own_port INTEGER NOT NULL DEFAULT 0"
	"    CHECK (own_port BETWEEN 0 AND 65535),"
	"  own_tls TEXT NOT NULL DEFAULT 'verify',"
	"  own_auth_user TEXT NOT NULL DEFAULT '',"
	"  own_secret BLOB,"			/* secretbox blob or NULL */
	"  own_xoauth2_token_url TEXT NOT NULL DEFAULT '',"
	"  own_xoauth2_client_id TEXT NOT NULL DEFAULT '',"
	"  own_xoauth2_scope TEXT NOT NULL DEFAULT '',"
	"  route_actor TEXT NOT NULL DEFAULT '',"
	"  route_at INTEGER NOT NULL DEFAULT 0,"
	"  route_reference TEXT NOT NULL DEFAULT '',"
	"  created INTEGER NOT NULL"
	") STRICT;"
	"CREATE TABLE domains ("
	"  name TEXT PRIMARY KEY NOT NULL CHECK (name = lower(name)),"
	"  company TEXT NOT NULL REFERENCES companies(id) ON DELETE RESTRICT,"
	"  created INTEGER NOT NULL,"
	"  spf_ok INTEGER NOT NULL DEFAULT 0 CHECK (spf_ok IN (0, 1)),"
	"  dkim_ok INTEGER NOT NULL DEFAULT 0 CHECK (dkim_ok IN (0, 1)),"
	"  checked_at INTEGER NOT NULL DEFAULT 0"
	") STRICT;"
	"CREATE INDEX domains_company ON domains(company);"
	/* UNIQUE (company, email) is also the index of users by company;
	 * users_email serves the mass update's list of addresses. */
	"CREATE TABLE users ("
	"  id INTEGER PRIMARY KEY,"
	"  company TEXT NOT NULL REFERENCES companies(id) ON DELETE RESTRICT,"
	"  email TEXT NOT NULL COLLATE NOCASE,"
	"  name TEXT NOT NULL DEFAULT '',"
	"  route TEXT NOT NULL CHECK (route IN ('own-server',"
	"    'platform-relay', 'platform-smarthost', 'company')),"
	"  from_address TEXT NOT NULL DEFAULT '',"
	"  smtp_host TEXT NOT NULL DEFAULT '',"
	"  smtp_port INTEGER NOT NULL DEFAULT 0"
	"    CHECK (smtp_port BETWEEN 0 AND 65535),"
	"  smtp_tls TEXT NOT NULL DEFAULT 'verify',"
	"  smtp_auth_user TEXT NOT NULL DEFAULT '',"
	"  smtp_secret BLOB,"			/* secretbox blob or NULL */
	"  smtp_xoauth2_token_url TEXT NOT NULL DEFAULT '',"
	"  smtp_xoauth2_client_id TEXT NOT NULL DEFAULT '',"
	"  smtp_xoauth2_scope TEXT NOT NULL DEFAULT '',"
	"  created INTEGER NOT NULL,"
	"  UNIQUE (company, email)"
	") STRICT;"
	"CREATE INDEX users_email ON users(email);"
	/* A revoked user name stays taken: the audit log keeps naming
	 * one credential. */
	"CREATE TABLE credentials ("
	"  id INTEGER PRIMARY KEY,"
	"  company TEXT NOT NULL REFERENCES companies(id) ON DELETE RESTRICT,"
	"  application TEXT NOT NULL,"
	"  username TEXT NOT NULL UNIQUE,"
	"  hash TEXT NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  revoked INTEGER NOT NULL DEFAULT 0"
	") STRICT;"
	"CREATE INDEX credentials_company ON credentials(company);"
	"CREATE TABLE audit ("
	"  id INTEGER PRIMARY KEY,"
	"  at INTEGER NOT NULL,"
	"  actor TEXT NOT NULL,"
	"  company TEXT NOT NULL DEFAULT '',"
	"  action TEXT NOT NULL,"
	"  reference TEXT NOT NULL DEFAULT '',"
	"  detail TEXT NOT NULL"		/* JSON, made by jansson */
	") STRICT;"
	"CREATE INDEX audit_company ON audit(company, id);"
	"CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN"
	"  SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
	"CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN"
	"  SELECT RAISE(ABORT, 'the audit log is append-only'); END;",

	/* 2: DKIM keys per domain and the domain check's state.  A key is
	 * pending until its record is seen in DNS, then active (it signs);
	 * a replaced key is retiring (still published, no longer signing)
	 * until retire_at, then retired.  The private key is sealed. */
	"CREATE TABLE dkim_keys ("
	"  id INTEGER PRIMARY KEY,"
	"  domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,"
	"  selector TEXT NOT NULL,"
	"  algorithm TEXT NOT NULL CHECK (algorithm IN ('rsa-sha256',"
	"    'ed25519-sha256')),"
	"  bits INTEGER NOT NULL DEFAULT 0,"
	"  private_key BLOB NOT NULL,"		/* secretbox of PKCS#8 PEM */
	"  record TEXT NOT NULL,"		/* the TXT to publish */
	"  state TEXT NOT NULL CHECK (state IN ('pending', 'active',"
	"    'retiring', 'retired')),"
	"  created INTEGER NOT NULL,"
	"  published_at INTEGER NOT NULL DEFAULT 0,"	/* last seen in DNS */
	"  activated_at INTEGER NOT NULL DEFAULT 0,"
	"  retire_at INTEGER NOT NULL DEFAULT 0,"
	"  UNIQUE (domain, selector)"
	") STRICT;"
	"CREATE INDEX dkim_keys_domain ON dkim_keys(domain, state);"
	"ALTER TABLE domains ADD COLUMN dmarc_ok INTEGER NOT NULL DEFAULT 0"
	"  CHECK (dmarc_ok IN (0, 1));"
	"ALTER TABLE domains ADD COLUMN check_detail TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE domains ADD COLUMN broken_since INTEGER NOT NULL"
	"  DEFAULT 0;",

	/* 3: metering and billing.  meter_seen: the queue ids counted (the
	 * key that makes counting idempotent), kept until their month is
	 * closed; usage_daily and usage_gmail: the counters, updated in the
	 * same transaction; billing_months and invoices: closed months and
	 * their lines, never changed afterwards. */
	"CREATE TABLE meter_seen ("
	"  qid TEXT PRIMARY KEY NOT NULL,"
	"  month INTEGER NOT NULL"
	") STRICT, WITHOUT ROWID;"
	"CREATE INDEX meter_seen_month ON meter_seen(month);"
	"CREATE TABLE usage_daily ("
	"  company TEXT NOT NULL,"
	"  day INTEGER NOT NULL,"		/* YYYYMMDD, local */
	"  emails INTEGER NOT NULL,"
	"  PRIMARY KEY (company, day)"
	") STRICT, WITHOUT ROWID;"
	"CREATE INDEX usage_daily_day ON usage_daily(day);"
	"CREATE TABLE usage_gmail ("
	"  company TEXT NOT NULL,"
	"  day INTEGER NOT NULL,"
	"  sender_domain TEXT NOT NULL,"
	"  emails INTEGER NOT NULL,"
	"  PRIMARY KEY (company, day, sender_domain)"
	") STRICT, WITHOUT ROWID;"
	"CREATE TABLE billing_months ("
	"  month INTEGER PRIMARY KEY,"		/* YYYYMM */
	"  closed_at INTEGER NOT NULL"
	") STRICT;"
	"CREATE TABLE invoices ("
	"  month INTEGER NOT NULL REFERENCES billing_months(month),"
	"  company TEXT NOT NULL,"
	"  route TEXT NOT NULL,"
	"  plan TEXT NOT NULL,"
	"  currency TEXT NOT NULL,"
	"  emails INTEGER NOT NULL,"
	"  included INTEGER NOT NULL,"
	"  extra INTEGER NOT NULL,"
	"  fixed_fee INTEGER NOT NULL,"
	"  extra_fee INTEGER NOT NULL,"
	"  total INTEGER NOT NULL,"
	"  platform_days INTEGER NOT NULL,"
	"  days_in_month INTEGER NOT NULL,"
	"  fee_rule TEXT NOT NULL CHECK (fee_rule IN ('any-day',"
	"    'pro-rata')),"
	"  closed_at INTEGER NOT NULL,"
	"  PRIMARY KEY (month, company)"
	") STRICT;"
	"CREATE TRIGGER invoices_no_update BEFORE UPDATE ON invoices BEGIN"
	"  SELECT RAISE(ABORT, 'closed invoices never change'); END;"
	"CREATE TRIGGER invoices_no_delete BEFORE DELETE ON invoices BEGIN"
	"  SELECT RAISE(ABORT, 'closed invoices never change'); END;",
};

#define SQ_SMTP_COLS(p) \
	p "host, " p "port, " p "tls, " p "auth_user, " p "secret, " \
	p "xoauth2_token_url, " p "xoauth2_client_id, " p "xoauth2_scope"
#define SQ_COMPANY_COLS \
	"id, name, status, route, " SQ_SMTP_COLS("own_") ", route_actor, " \
	"route_at, route_reference, created"
#define SQ_USER_COLS \
	"id, company, email, name, route, from_address, " \
	SQ_SMTP_COLS("smtp_")
#define SQ_DOMAIN_COLS \
	"name, company, created, spf_ok, dkim_ok, checked_at, dmarc_ok"
#define SQ_CRED_COLS \
	"id, company, application, username, hash, created, revoked"
#define SQ_AUDIT_COLS \
	"id, at, actor, company, action, reference, detail"
#define SQ_DKIM_COLS \
	"id, domain, selector, algorithm, bits, record, state, created, " \
	"published_at, activated_at, retire_at, private_key"

/* ?1 id, ?2 route, ?3 from, ?4..?11 smtp, ?12 whether the secret
 * column is replaced by ?8 (else kept). */
#define SQ_USER_WRITE \
	"UPDATE users SET route = ?2, from_address = ?3, smtp_host = ?4, " \
	"smtp_port = ?5, smtp_tls = ?6, smtp_auth_user = ?7, " \
	"smtp_secret = CASE WHEN ?12 THEN ?8 ELSE smtp_secret END, " \
	"smtp_xoauth2_token_url = ?9, smtp_xoauth2_client_id = ?10, " \
	"smtp_xoauth2_scope = ?11 WHERE id = ?1"

/* ---- statements, errors, transactions ---------------------------------- */

/* The current error of the connection as a store rc with a message:
 * a taken unique key is EXISTS, a missing referenced row NOTFOUND. */
static int
sq_dberr(struct store *st, const char *what)
{
	sqlite3 *db = SQ(st)->db;
	int e = sqlite3_extended_errcode(db), rc = STORE_ERROR;

	if (e == SQLITE_CONSTRAINT_PRIMARYKEY || e == SQLITE_CONSTRAINT_UNIQUE)
		rc = STORE_EXISTS;
	else if (e == SQLITE_CONSTRAINT_FOREIGNKEY)
		rc = STORE_NOTFOUND;
	return store_fail(st, rc, "%s: sqlite: %s", what, sqlite3_errmsg(db));
}

static sqlite3_stmt *
sq_prep(struct store *st, const char *sql)
{
	sqlite3_stmt *s = NULL;

	if (sqlite3_prepare_v2(SQ(st)->db, sql, -1, &s, NULL) != SQLITE_OK) {
		sq_dberr(st, "prepare");
		sqlite3_finalize(s);
		return NULL;
	}
	return s;
}

/* Binding fails only for a wrong index or out of memory: bugs. */
static void
sq_bind_check(sqlite3_stmt *s, int i, int r)
{
	if (r != SQLITE_OK)
		fatalx("store: binding parameter %d of \"%.60s\": %s", i,
		    sqlite3_sql(s), sqlite3_errstr(r));
}

static void
sq_bind_text(sqlite3_stmt *s, int i, const char *v)
{
	sq_bind_check(s, i, sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC));
}

static void
sq_bind_int(sqlite3_stmt *s, int i, int64_t v)
{
	sq_bind_check(s, i, sqlite3_bind_int64(s, i, v));
}

/* Step a statement that returns no row. */
static int
sq_done(struct store *st, sqlite3_stmt *s, const char *what)
{
	if (sqlite3_step(s) != SQLITE_DONE)
		return sq_dberr(st, what);
	return STORE_OK;
}

static int
sq_exec(struct store *st, const char *sql)
{
	char what[48];

	if (sqlite3_exec(SQ(st)->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(what, sizeof(what), "%.40s%s", sql,
		    strlen(sql) > 40 ? "..." : "");
		return sq_dberr(st, what);
	}
	return STORE_OK;
}

/* IMMEDIATE: take the write lock now, so that two writers queue on the
 * busy timeout instead of one failing when it upgrades a read lock. */
static int
sq_begin(struct store *st)
{
	return sq_exec(st, "BEGIN IMMEDIATE");
}

static int
sq_commit(struct store *st)
{
	return sq_exec(st, "COMMIT");
}

/* Undo an open transaction, if any (a failed COMMIT may have ended it). */
static void
sq_rollback(struct store *st)
{
	if (!sqlite3_get_autocommit(SQ(st)->db))
		sqlite3_exec(SQ(st)->db, "ROLLBACK", NULL, NULL, NULL);
}

static json_t *
sq_json(json_t *j)
{
	if (j == NULL)
		fatalx("store: audit detail cannot be built");
	return j;
}

/* Insert the audit row of the change in the current transaction.  Takes
 * detail. */
static int
sq_audit(struct store *st, const char *company, const char *action,
    const char *actor, const char *reference, json_t *detail)
{
	sqlite3_stmt *s = NULL;
	char *text = NULL;
	int rc = STORE_ERROR;

	if ((text = json_dumps(detail, JSON_COMPACT)) == NULL)
		fatalx("store: audit detail cannot be encoded");
	if ((s = sq_prep(st, "INSERT INTO audit (at, actor, company, action, "
	    "reference, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")) == NULL)
		goto fail;
	sq_bind_int(s, 1, (int64_t)time(NULL));
	sq_bind_text(s, 2, actor);
	sq_bind_text(s, 3, company ? company : "");
	sq_bind_text(s, 4, action);
	sq_bind_text(s, 5, reference ? reference : "");
	sq_bind_text(s, 6, text);
	rc = sq_done(st, s, "audit");
fail:
	sqlite3_finalize(s);
	free(text);
	json_decref(detail);
	return rc;
}

/* Step s (a change, bound), insert its audit row (takes detail) and
 * commit. */
static int
sq_apply(struct store *st, sqlite3_stmt *s, const char *company,
    const char *action, const char *actor, const char *reference,
    json_t *detail)
{
	int rc;

	if ((rc = sq_done(st, s, action)) != STORE_OK) {
		json_decref(detail);
		return rc;
	}
	if ((rc = sq_audit(st, company, action, actor, reference, detail)) !=
	    STORE_OK)
		return rc;
	return sq_commit(st);
}

/* The end of a write: roll back unless rc is STORE_OK. */
static int
sq_end(struct store *st, int rc)
{
	if (rc != STORE_OK)
		sq_rollback(st);
	return rc;
}

/* ---- rows -------------------------------------------------------------- */

/* A text column into a char array; false if NULL, too long or holding a
 * NUL. */
static bool
sq_col_text(sqlite3_stmt *s, int c, char *dst, size_t dstsz)
{
	const unsigned char *t = sqlite3_column_text(s, c);
	size_t n = (size_t)sqlite3_column_bytes(s, c);

	dst[0] = '\0';
	if (t == NULL || n >= dstsz || memchr(t, '\0', n) != NULL)
		return false;
	memcpy(dst, t, n);
	dst[n] = '\0';
	return true;
}

static const char *
sq_col_str(sqlite3_stmt *s, int c)
{
	return (const char *)sqlite3_column_text(s, c);
}

/* Bind smtp to ?i..?i+7 (SQ_SMTP_COLS order), the secret sealed into
 * blob, which must live until the statement ran. */
static int
sq_bind_smtp(struct store *st, sqlite3_stmt *s, int i,
    const struct smtp_settings *smtp, struct buf *blob)
{
	int rc;

	sq_bind_text(s, i, smtp->host);
	sq_bind_int(s, i + 1, smtp->port);
	sq_bind_text(s, i + 2, store_tls_name(smtp->tls));
	sq_bind_text(s, i + 3, smtp->auth_user);
	if (smtp->secret != NULL) {
		buf_reset(blob);
		if ((rc = store_seal(st, smtp->secret, blob)) != STORE_OK)
			return rc;
		sq_bind_check(s, i + 4, sqlite3_bind_blob(s, i + 4,
		    blob->data, (int)blob->len, SQLITE_STATIC));
	} else
		sq_bind_check(s, i + 4, sqlite3_bind_null(s, i + 4));
	sq_bind_text(s, i + 5, smtp->xoauth2_token_url);
	sq_bind_text(s, i + 6, smtp->xoauth2_client_id);
	sq_bind_text(s, i + 7, smtp->xoauth2_scope);
	return STORE_OK;
}

/* Columns c..c+7 (SQ_SMTP_COLS) into out; the secret opened only with
 * decrypt.  *has_secret (may be NULL): whether one is stored. */
static int
sq_read_smtp(struct store *st, sqlite3_stmt *s, int c, const char *what,
    bool decrypt, struct smtp_settings *out, bool *has_secret)
{
	int64_t port = sqlite3_column_int64(s, c + 1);
	bool has = sqlite3_column_type(s, c + 4) != SQLITE_NULL;
	const void *blob;

	if (!sq_col_text(s, c, out->host, sizeof(out->host)) ||
	    port < 0 || port > 65535 ||
	    store_tls_parse(sq_col_str(s, c + 2), &out->tls) != 0 ||
	    !sq_col_text(s, c + 3, out->auth_user, sizeof(out->auth_user)) ||
	    !sq_col_text(s, c + 5, out->xoauth2_token_url,
	    sizeof(out->xoauth2_token_url)) ||
	    !sq_col_text(s, c + 6, out->xoauth2_client_id,
	    sizeof(out->xoauth2_client_id)) ||
	    !sq_col_text(s, c + 7, out->xoauth2_scope,
	    sizeof(out->xoauth2_scope)))
		return store_fail(st, STORE_ERROR, "%s: malformed SMTP "
		    "settings in the database", what);
	out->port = (uint16_t)port;
	if (has_secret != NULL)
		*has_secret = has;
	if (!has || !decrypt)
		return STORE_OK;
	blob = sqlite3_column_blob(s, c + 4);
	return store_unseal(st, blob, (size_t)sqlite3_column_bytes(s, c + 4),
	    what, &out->secret);
}

static int
sq_read_company(struct store *st, sqlite3_stmt *s, struct company *out)
{
	char what[STORE_ID_MAX + 16];

	memset(out, 0, sizeof(*out));
	if (!sq_col_text(s, 0, out->id, sizeof(out->id)) ||
	    !sq_col_text(s, 1, out->name, sizeof(out->name)) ||
	    store_status_parse(sq_col_str(s, 2), &out->status) != 0 ||
	    route_kind_parse(sq_col_str(s, 3), &out->route) != 0 ||
	    out->route == USER_ROUTE_COMPANY ||
	    !sq_col_text(s, 12, out->route_actor, sizeof(out->route_actor)) ||
	    !sq_col_text(s, 14, out->route_reference,
	    sizeof(out->route_reference)))
		return store_fail(st, STORE_ERROR, "a companies row in the "
		    "database is malformed");
	out->route_at = sqlite3_column_int64(s, 13);
	out->created = sqlite3_column_int64(s, 15);
	snprintf(what, sizeof(what), "company '%s'", out->id);
	return sq_read_smtp(st, s, 4, what, true, &out->own, NULL);
}

static int
sq_read_user(struct store *st, sqlite3_stmt *s, bool decrypt,
    struct user *out, bool *has_secret)
{
	char what[STORE_NAME_MAX + 16];

	memset(out, 0, sizeof(*out));
	out->id = sqlite3_column_int64(s, 0);
	if (!sq_col_text(s, 1, out->company, sizeof(out->company)) ||
	    !sq_col_text(s, 2, out->email, sizeof(out->email)) ||
	    !sq_col_text(s, 3, out->name, sizeof(out->name)) ||
	    route_kind_parse(sq_col_str(s, 4), &out->route) != 0 ||
	    !sq_col_text(s, 5, out->from_address, sizeof(out->from_address)))
		return store_fail(st, STORE_ERROR, "a users row in the "
		    "database is malformed");
	snprintf(what, sizeof(what), "user %s", out->email);
	return sq_read_smtp(st, s, 6, what, decrypt, &out->smtp, has_secret);
}

static int
sq_read_domain(struct store *st, sqlite3_stmt *s, struct domain *out)
{
	memset(out, 0, sizeof(*out));
	if (!sq_col_text(s, 0, out->name, sizeof(out->name)) ||
	    !sq_col_text(s, 1, out->company, sizeof(out->company)))
		return store_fail(st, STORE_ERROR, "a domains row in the "
		    "database is malformed");
	out->created = sqlite3_column_int64(s, 2);
	out->spf_ok = sqlite3_column_int(s, 3) != 0;
	out->dkim_ok = sqlite3_column_int(s, 4) != 0;
	out->checked_at = sqlite3_column_int64(s, 5);
	out->dmarc_ok = sqlite3_column_int(s, 6) != 0;
	return STORE_OK;
}

/* A dkim_keys row (SQ_DKIM_COLS); the private key opened with_private. */
static int
sq_read_dkim(struct store *st, sqlite3_stmt *s, bool with_private,
    struct dkim_keyrec *out)
{
	char what[STORE_HOST_MAX + STORE_SELECTOR_MAX + 32];

	memset(out, 0, sizeof(*out));
	out->id = sqlite3_column_int64(s, 0);
	if (!sq_col_text(s, 1, out->domain, sizeof(out->domain)) ||
	    !sq_col_text(s, 2, out->selector, sizeof(out->selector)) ||
	    !sq_col_text(s, 3, out->algorithm, sizeof(out->algorithm)) ||
	    !sq_col_text(s, 5, out->record, sizeof(out->record)) ||
	    dkim_key_state_parse(sq_col_str(s, 6), &out->state) != 0 ||
	    sqlite3_column_type(s, 11) != SQLITE_BLOB)
		return store_fail(st, STORE_ERROR, "a dkim_keys row in the "
		    "database is malformed");
	out->bits = sqlite3_column_int(s, 4);
	out->created = sqlite3_column_int64(s, 7);
	out->published_at = sqlite3_column_int64(s, 8);
	out->activated_at = sqlite3_column_int64(s, 9);
	out->retire_at = sqlite3_column_int64(s, 10);
	if (!with_private)
		return STORE_OK;
	snprintf(what, sizeof(what), "DKIM key %s._domainkey.%s",
	    out->selector, out->domain);
	return store_unseal_pem(st, sqlite3_column_blob(s, 11),
	    (size_t)sqlite3_column_bytes(s, 11), what, &out->private_pem);
}

static int
sq_read_cred(struct store *st, sqlite3_stmt *s, struct credential *out)
{
	memset(out, 0, sizeof(*out));
	out->id = sqlite3_column_int64(s, 0);
	if (!sq_col_text(s, 1, out->company, sizeof(out->company)) ||
	    !sq_col_text(s, 2, out->application, sizeof(out->application)) ||
	    !sq_col_text(s, 3, out->username, sizeof(out->username)) ||
	    !sq_col_text(s, 4, out->hash, sizeof(out->hash)))
		return store_fail(st, STORE_ERROR, "a credentials row in the "
		    "database is malformed");
	out->created = sqlite3_column_int64(s, 5);
	out->revoked = sqlite3_column_int64(s, 6);
	return STORE_OK;
}

static int
sq_read_audit(struct store *st, sqlite3_stmt *s, struct audit_entry *out)
{
	memset(out, 0, sizeof(*out));
	out->id = sqlite3_column_int64(s, 0);
	out->at = sqlite3_column_int64(s, 1);
	if (!sq_col_text(s, 2, out->actor, sizeof(out->actor)) ||
	    !sq_col_text(s, 3, out->company, sizeof(out->company)) ||
	    !sq_col_text(s, 4, out->action, sizeof(out->action)) ||
	    !sq_col_text(s, 5, out->reference, sizeof(out->reference)) ||
	    sq_col_str(s, 6) == NULL)
		return store_fail(st, STORE_ERROR, "an audit row in the "
		    "database is malformed");
	out->detail = xstrdup(sq_col_str(s, 6));
	return STORE_OK;
}

/* ---- one row, many rows ----------------------------------------------- */

/* Step s, which must yield a row: NOTFOUND "no WHAT KEY" if it yields
 * none (key, or ikey when key is NULL). */
static int
sq_step_one(struct store *st, sqlite3_stmt *s, const char *what,
    const char *key, int64_t ikey)
{
	int r = sqlite3_step(s);

	if (r == SQLITE_ROW)
		return STORE_OK;
	if (r != SQLITE_DONE)
		return sq_dberr(st, what);
	if (key != NULL)
		return store_fail(st, STORE_NOTFOUND, "no %s '%s'", what, key);
	return store_fail(st, STORE_NOTFOUND, "no %s %lld", what,
	    (long long)ikey);
}

/* The text of column 0 of the row sql (id bound to ?1) selects, into
 * out; NOTFOUND naming what. */
static int
sq_lookup(struct store *st, const char *sql, const char *id,
    const char *what, char *out, size_t outsz)
{
	sqlite3_stmt *s = NULL;
	int rc = STORE_ERROR;

	if ((s = sq_prep(st, sql)) == NULL)
		goto fail;
	sq_bind_text(s, 1, id);
	if ((rc = sq_step_one(st, s, what, id, 0)) != STORE_OK)
		goto fail;
	if (!sq_col_text(s, 0, out, outsz))
		rc = store_fail(st, STORE_ERROR, "%s '%s': malformed row",
		    what, id);
fail:
	sqlite3_finalize(s);
	return rc;
}

/* What a query returns rows of. */
enum sq_kind { SQ_COMPANY, SQ_DOMAIN, SQ_USER, SQ_CRED, SQ_AUDIT, SQ_DKIM,
	SQ_DKIM_PRIVATE };

union sq_row {
	struct company		company;
	struct domain		domain;
	struct user		user;
	struct credential	cred;
	struct audit_entry	audit;
	struct dkim_keyrec	dkim;
};

/* The current row of s as a k, secrets opened. */
static int
sq_row_read(struct store *st, sqlite3_stmt *s, enum sq_kind k,
    union sq_row *r)
{
	switch (k) {
	case SQ_COMPANY:
		return sq_read_company(st, s, &r->company);
	case SQ_DOMAIN:
		return sq_read_domain(st, s, &r->domain);
	case SQ_USER:
		return sq_read_user(st, s, true, &r->user, NULL);
	case SQ_CRED:
		return sq_read_cred(st, s, &r->cred);
	case SQ_AUDIT:
		return sq_read_audit(st, s, &r->audit);
	case SQ_DKIM:
	case SQ_DKIM_PRIVATE:
		return sq_read_dkim(st, s, k == SQ_DKIM_PRIVATE, &r->dkim);
	}
	fatalx("store: row kind %d", (int)k);
}

/* Wipe and free what reading r allocated (r zeroed or read). */
static void
sq_row_clear(enum sq_kind k, union sq_row *r)
{
	if (k == SQ_COMPANY)
		smtp_settings_clear(&r->company.own);
	else if (k == SQ_USER)
		smtp_settings_clear(&r->user.smtp);
	else if (k == SQ_AUDIT)
		audit_entry_clear(&r->audit);
	else if (k == SQ_DKIM || k == SQ_DKIM_PRIVATE)
		dkim_keyrec_clear(&r->dkim);
}

/* The one row of a k that sql (key, or ikey when key is NULL, bound to
 * ?1) selects, into out; NOTFOUND naming what.  out is zeroed on
 * failure. */
static int
sq_get(struct store *st, const char *sql, const char *key, int64_t ikey,
    enum sq_kind k, const char *what, union sq_row *out)
{
	sqlite3_stmt *s = NULL;
	int rc = STORE_ERROR;

	memset(out, 0, sizeof(*out));
	if ((s = sq_prep(st, sql)) == NULL)
		goto fail;
	if (key != NULL)
		sq_bind_text(s, 1, key);
	else
		sq_bind_int(s, 1, ikey);
	if ((rc = sq_step_one(st, s, what, key, ikey)) != STORE_OK)
		goto fail;
	rc = sq_row_read(st, s, k, out);
fail:
	if (rc != STORE_OK) {
		sq_row_clear(k, out);
		memset(out, 0, sizeof(*out));
	}
	sqlite3_finalize(s);
	return rc;
}

/* A list call: the kind of rows and the caller's function. */
struct sq_each {
	enum sq_kind	 kind;
	union {
		store_company_fn	company;
		store_domain_fn		domain;
		store_user_fn		user;
		store_credential_fn	cred;
		store_audit_fn		audit;
		store_dkim_fn		dkim;
	}		 fn;
	void		*arg;
};

/* Hand r to the caller's function; non-zero: stop. */
static int
sq_each_call(const struct sq_each *e, const union sq_row *r)
{
	switch (e->kind) {
	case SQ_COMPANY:
		return e->fn.company(e->arg, &r->company);
	case SQ_DOMAIN:
		return e->fn.domain(e->arg, &r->domain);
	case SQ_USER:
		return e->fn.user(e->arg, &r->user);
	case SQ_CRED:
		return e->fn.cred(e->arg, &r->cred);
	case SQ_AUDIT:
		return e->fn.audit(e->arg, &r->audit);
	case SQ_DKIM:
	case SQ_DKIM_PRIVATE:
		return e->fn.dkim(e->arg, &r->dkim);
	}
	fatalx("store: row kind %d", (int)e->kind);
}

/* Run a query (company bound to ?1 when given), each row to the caller.
 * With must_exist, a given company must exist (else NOTFOUND).  The
 * caller's functions must not call back into the store: the query is
 * still running. */
static int
sq_each_run(struct store *st, const char *sql, const char *company,
    bool must_exist, const struct sq_each *e)
{
	char id[STORE_ID_MAX + 1];
	sqlite3_stmt *s = NULL;
	union sq_row row;
	bool stop = false;
	int rc, r = SQLITE_DONE;

	if (company != NULL && must_exist && (rc = sq_lookup(st,
	    "SELECT id FROM companies WHERE id = ?1", company, "company", id,
	    sizeof(id))) != STORE_OK)
		goto fail;
	rc = STORE_ERROR;
	if ((s = sq_prep(st, sql)) == NULL)
		goto fail;
	if (company != NULL)
		sq_bind_text(s, 1, company);
	while (!stop && (r = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&row, 0, sizeof(row));
		if ((rc = sq_row_read(st, s, e->kind, &row)) == STORE_OK)
			stop = sq_each_call(e, &row) != 0;
		sq_row_clear(e->kind, &row);
		if (rc != STORE_OK)
			goto fail;
	}
	rc = stop || r == SQLITE_DONE ? STORE_OK : sq_dberr(st, "list");
fail:
	sqlite3_finalize(s);
	return rc;
}

/* ---- open, close, version ---------------------------------------------- */

/* The highest migration applied, 0 for an empty database; -1 on error. */
static int64_t
sq_schema_version(struct store *st)
{
	sqlite3_stmt *s = NULL;
	int64_t v = -1;

	if ((s = sq_prep(st, "SELECT count(*) FROM sqlite_master WHERE "
	    "type = 'table' AND name = 'schema_migrations'")) == NULL)
		goto fail;
	if (sqlite3_step(s) != SQLITE_ROW) {
		sq_dberr(st, "schema");
		goto fail;
	}
	if (sqlite3_column_int(s, 0) == 0) {
		v = 0;
		goto fail;
	}
	sqlite3_finalize(s);
	if ((s = sq_prep(st, "SELECT coalesce(max(version), 0) FROM "
	    "schema_migrations")) == NULL)
		goto fail;
	if (sqlite3_step(s) != SQLITE_ROW) {
		sq_dberr(st, "schema_migrations");
		goto fail;
	}
	v = sqlite3_column_int64(s, 0);
fail:
	sqlite3_finalize(s);
	return v;
}

/*
 * Apply the migrations the database lacks, each in its own transaction
 * (the version is read again inside it: another process may be opening
 * the same database).  0, or -1 with err.
 */
static int
sq_migrate(struct store *st, const char *path, char *err, size_t errlen)
{
	const int64_t known = (int64_t)nitems(sq_migrations);
	sqlite3_stmt *s = NULL;
	int64_t v;
	int rc = -1;

	for (;;) {
		if ((v = sq_schema_version(st)) < 0) {
			snprintf(err, errlen, "store %s: %s", path, st->err);
			goto fail;
		}
		if (v > known) {
			snprintf(err, errlen, "store %s: the database has "
			    "schema version %lld, newer than this ombud knows "
			    "(%lld): refusing to open it; use a newer ombud",
			    path, (long long)v, (long long)known);
			goto fail;
		}
		if (v == known)
			break;
		if (sq_begin(st) != STORE_OK) {
			snprintf(err, errlen, "store %s: %s", path, st->err);
			goto fail;
		}
		if ((v = sq_schema_version(st)) < 0) {
			snprintf(err, errlen, "store %s: %s", path, st->err);
			goto fail;
		}
		if (v >= known) {
			sq_rollback(st);
			continue;	/* another process migrated it */
		}
		if (sq_exec(st, sq_migrations[v]) != STORE_OK ||
		    (s = sq_prep(st, "INSERT INTO schema_migrations (version, "
		    "applied_at) VALUES (?1, ?2)")) == NULL) {
			snprintf(err, errlen, "store %s: migration %lld: %s",
			    path, (long long)v + 1, st->err);
			goto fail;
		}
		sq_bind_int(s, 1, v + 1);
		sq_bind_int(s, 2, (int64_t)time(NULL));
		if (sq_done(st, s, "schema_migrations") != STORE_OK ||
		    sq_commit(st) != STORE_OK) {
			snprintf(err, errlen, "store %s: migration %lld: %s",
			    path, (long long)v + 1, st->err);
			goto fail;
		}
		sqlite3_finalize(s);
		s = NULL;
		log_info("store %s: schema migrated to version %lld", path,
		    (long long)v + 1);
	}
	rc = 0;
fail:
	sqlite3_finalize(s);
	sq_rollback(st);
	return rc;
}

/* The single-row, single-column answer of a PRAGMA as text in out. */
static int
sq_pragma(struct store *st, const char *sql, char *out, size_t outsz)
{
	sqlite3_stmt *s = NULL;
	int rc = STORE_ERROR;

	if ((s = sq_prep(st, sql)) == NULL)
		goto fail;
	if (sqlite3_step(s) != SQLITE_ROW) {
		rc = sq_dberr(st, sql);
		goto fail;
	}
	if (!sq_col_text(s, 0, out, outsz)) {
		rc = store_fail(st, STORE_ERROR, "%s: unexpected answer", sql);
		goto fail;
	}
	rc = STORE_OK;
fail:
	sqlite3_finalize(s);
	return rc;
}

/*
 * Create the file with mode 0600 before SQLite does (it would use the
 * umask): it holds password hashes and sealed secrets, and the -wal and
 * -shm files SQLite makes next to it take the same mode.
 *
 * An existing file is only stat()ed, never opened: closing any
 * descriptor of a file drops every POSIX lock the process holds on it,
 * so an open+close here, while another connection of this process (the
 * server's, when the meter opens its own) holds its SHARED lock, let
 * another process's last close take the database's EXCLUSIVE lock and
 * delete the -wal and -shm files under the server, which then never saw
 * another commit.
 */
static int
sq_create_file(const char *path, char *err, size_t errlen)
{
	struct stat sb;
	int fd;

	if (stat(path, &sb) != 0) {
		if (errno != ENOENT)
			goto fail;
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC |
		    O_NOCTTY, 0600);
		if (fd < 0 && errno != EEXIST)
			goto fail;
		if (fd >= 0)
			close(fd);	/* new: no lock of ours on it yet */
		if (stat(path, &sb) != 0)
			goto fail;
	}
	if ((sb.st_mode & 077) != 0)
		log_warnx("store %s: mode %03o lets group or others access "
		    "it (chmod 600 %s)", path, (unsigned)(sb.st_mode & 0777),
		    path);
	return 0;
fail:
	snprintf(err, errlen, "store %s: %s", path, strerror(errno));
	return -1;
}

static void
sq_close(struct store *st)
{
	struct sq *q = SQ(st);

	if (q == NULL)
		return;
	sqlite3_finalize(q->version_stmt);
	if (sqlite3_close(q->db) != SQLITE_OK) {
		log_warnx("store: closing the database: %s",
		    sqlite3_errmsg(q->db));
		sqlite3_close_v2(q->db);
	}
	free(q);
	st->be = NULL;
}

static int
sq_open(struct store *st, const char *path, char *err, size_t errlen)
{
	char mode[32];
	bool memory;
	struct sq *q;
	int rc = -1;

	if (path[0] == '\0') {
		snprintf(err, errlen, "store: sqlite: no database path");
		return -1;
	}
	memory = strcmp(path, ":memory:") == 0;
	if (!memory && sq_create_file(path, err, errlen) != 0)
		return -1;
	st->be = q = xcalloc(1, sizeof(*q));
	/* NOMUTEX: a handle is used by one thread at a time (store.h), so
	 * SQLite's per-connection mutex would only cost. */
	if (sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "store %s: %s", path, q->db ?
		    sqlite3_errmsg(q->db) : "out of memory");
		goto fail;
	}
	sqlite3_extended_result_codes(q->db, 1);
	/* No schema tricks: a database file is data, not code. */
	sqlite3_db_config(q->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	sqlite3_db_config(q->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
	sqlite3_busy_timeout(q->db, SQ_BUSY_TIMEOUT_MS);
	/*
	 * WAL: readers and the one writer do not block each other.
	 * synchronous=NORMAL is safe with WAL: a commit appends to the WAL
	 * without an fsync, which happens at checkpoints; a power loss can
	 * lose the last commits but never corrupts the database, and as
	 * each change commits with its audit row, both are lost or kept
	 * together.  (In rollback-journal mode NORMAL could corrupt.)
	 * secure_delete: freed pages (an old sealed secret, a revoked
	 * hash) are overwritten rather than left in the file.
	 * temp_store: the mass update's address list stays in memory.
	 */
	if (sq_pragma(st, "PRAGMA journal_mode = WAL", mode, sizeof(mode)) !=
	    STORE_OK || sq_exec(st, "PRAGMA synchronous = NORMAL;"
	    "PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;"
	    "PRAGMA temp_store = MEMORY") != STORE_OK) {
		snprintf(err, errlen, "store %s: %s", path, st->err);
		goto fail;
	}
	if (strcmp(mode, memory ? "memory" : "wal") != 0) {
		snprintf(err, errlen, "store %s: journal mode is %s, not WAL",
		    path, mode);
		goto fail;
	}
	if (sq_pragma(st, "PRAGMA foreign_keys", mode, sizeof(mode)) !=
	    STORE_OK || strcmp(mode, "1") != 0) {
		snprintf(err, errlen, "store %s: foreign keys cannot be "
		    "enforced by this SQLite", path);
		goto fail;
	}
	if (sq_migrate(st, path, err, errlen) != 0)
		goto fail;
	if ((q->version_stmt = sq_prep(st, "SELECT coalesce(max(id), 0) FROM "
	    "audit")) == NULL) {
		snprintf(err, errlen, "store %s: %s", path, st->err);
		goto fail;
	}
	rc = 0;
fail:
	if (rc != 0)
		sq_close(st);
	return rc;
}

/*
 * The newest audit row: every change of tenant data writes one in its
 * own transaction.  (PRAGMA version_stmt was used first: it also moves
 * for the meter's writes, reloading the snapshot for nothing, and in
 * WAL mode it was seen to miss another process's commit when the
 * connection's read transactions noticed it first.)  An error reads as
 * 0: the next call's real value differs and reloads.
 */
static uint64_t
sq_version(struct store *st)
{
	struct sq *q = SQ(st);
	uint64_t v = 0;

	sqlite3_reset(q->version_stmt);
	if (sqlite3_step(q->version_stmt) == SQLITE_ROW)
		v = (uint64_t)sqlite3_column_int64(q->version_stmt, 0);
	else
		log_warnx("store: the audit log's newest row: %s",
		    sqlite3_errmsg(q->db));
	sqlite3_reset(q->version_stmt);
	return v;
}

/* A deferred transaction: the first read takes the WAL snapshot that
 * every read until sq_read_end sees. */
static int
sq_read_begin(struct store *st)
{
	return sq_exec(st, "BEGIN DEFERRED");
}

static void
sq_read_end(struct store *st)
{
	sq_rollback(st);	/* nothing was written: ends the snapshot */
}

/* ---- metering and billing ---------------------------------------------- */

/* The end of a loop over rows: r, the last sqlite3_step, is a row (the
 * caller stopped) or done; anything else is the database's error. */
static int
sq_rows_end(struct store *st, int r, const char *what)
{
	return r == SQLITE_ROW || r == SQLITE_DONE ? STORE_OK :
	    sq_dberr(st, what);
}

/* Usage added by one store_meter_add, summed per key before it is
 * written: a batch of many messages costs one upsert per company and day
 * (and sender domain), not one per message. */
#define SQ_METER_KEYS	64

struct sq_delta {
	const char	*company;
	int32_t		 day;
	const char	*domain;		/* NULL: the day's total */
	uint64_t	 emails;
};

static int
sq_meter_flush(struct store *st, struct sq_delta *d, size_t *nd)
{
	static const char *const sql[2] = {
		"INSERT INTO usage_daily (company, day, emails) VALUES "
		"(?1, ?2, ?4) ON CONFLICT (company, day) DO UPDATE SET "
		"emails = emails + excluded.emails",
		"INSERT INTO usage_gmail (company, day, sender_domain, emails) "
		"VALUES (?1, ?2, ?3, ?4) ON CONFLICT (company, day, "
		"sender_domain) DO UPDATE SET emails = emails + "
		"excluded.emails",
	};
	sqlite3_stmt *s[2] = { NULL, NULL };
	int rc = STORE_ERROR;

	if ((s[0] = sq_prep(st, sql[0])) == NULL ||
	    (s[1] = sq_prep(st, sql[1])) == NULL)
		goto fail;
	for (size_t i = 0; i < *nd; i++) {
		sqlite3_stmt *q = s[d[i].domain != NULL];

		sqlite3_reset(q);
		sq_bind_text(q, 1, d[i].company);
		sq_bind_int(q, 2, d[i].day);
		if (d[i].domain != NULL)
			sq_bind_text(q, 3, d[i].domain);
		sq_bind_int(q, 4, (int64_t)d[i].emails);
		if ((rc = sq_done(st, q, "usage")) != STORE_OK)
			goto fail;
	}
	*nd = 0;
	rc = STORE_OK;
fail:
	sqlite3_finalize(s[0]);
	sqlite3_finalize(s[1]);
	return rc;
}

static int
sq_meter_delta(struct store *st, struct sq_delta *d, size_t *nd,
    const char *company, int32_t day, const char *domain, uint64_t n)
{
	int rc;

	for (size_t i = 0; i < *nd; i++)
		if (d[i].day == day && strcmp(d[i].company, company) == 0 &&
		    (domain == NULL ? d[i].domain == NULL : d[i].domain !=
		    NULL && strcmp(d[i].domain, domain) == 0)) {
			d[i].emails += n;
			return STORE_OK;
		}
	if (*nd == SQ_METER_KEYS && (rc = sq_meter_flush(st, d, nd)) !=
	    STORE_OK)
		return rc;
	d[*nd].company = company;
	d[*nd].day = day;
	d[*nd].domain = domain;
	d[*nd].emails = n;
	(*nd)++;
	return STORE_OK;
}

static int
sq_meter_add(struct store *st, const struct meter_rec *r, size_t n,
    size_t *added, size_t *late)
{
	struct sq_delta d[SQ_METER_KEYS];
	sqlite3_stmt *seen = NULL, *closed = NULL;
	int32_t month, cmonth = 0;
	bool cclosed = false;
	size_t nd = 0, nadded = 0, nlate = 0;
	int rc;

	if ((rc = sq_begin(st)) != STORE_OK)
		goto fail;
	rc = STORE_ERROR;
	if ((seen = sq_prep(st, "INSERT INTO meter_seen (qid, month) VALUES "
	    "(?1, ?2) ON CONFLICT (qid) DO NOTHING")) == NULL ||
	    (closed = sq_prep(st, "SELECT 1 FROM billing_months WHERE "
	    "month = ?1")) == NULL)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		month = r[i].day / 100;
		if (month != cmonth) {
			sqlite3_reset(closed);
			sq_bind_int(closed, 1, month);
			if ((rc = sqlite3_step(closed)) != SQLITE_ROW &&
			    rc != SQLITE_DONE) {
				rc = sq_dberr(st, "billing_months");
				goto fail;
			}
			cclosed = rc == SQLITE_ROW;
			cmonth = month;
		}
		if (cclosed) {
			nlate++;
			continue;
		}
		sqlite3_reset(seen);
		sq_bind_text(seen, 1, r[i].qid);
		sq_bind_int(seen, 2, month);
		if ((rc = sq_done(st, seen, "meter_seen")) != STORE_OK)
			goto fail;
		if (sqlite3_changes(SQ(st)->db) == 0)
			continue;		/* counted before */
		nadded++;
		if ((rc = sq_meter_delta(st, d, &nd, r[i].company, r[i].day,
		    NULL, r[i].emails)) != STORE_OK || (r[i].gmail > 0 &&
		    (rc = sq_meter_delta(st, d, &nd, r[i].company, r[i].day,
		    r[i].sender_domain, r[i].gmail)) != STORE_OK))
			goto fail;
	}
	if ((rc = sq_meter_flush(st, d, &nd)) != STORE_OK ||
	    (rc = sq_commit(st)) != STORE_OK)
		goto fail;
	*added = nadded;
	*late = nlate;
fail:
	sqlite3_finalize(seen);
	sqlite3_finalize(closed);
	return sq_end(st, rc);
}

static int
sq_usage_list(struct store *st, const char *company, int32_t from,
    int32_t to, bool gmail, store_usage_fn fn, void *arg)
{
	sqlite3_stmt *s;
	struct usage_day u;
	int rc = STORE_ERROR, r;

	s = sq_prep(st, gmail ? "SELECT company, day, sender_domain, emails "
	    "FROM usage_gmail WHERE day BETWEEN ?1 AND ?2 AND (?3 IS NULL OR "
	    "company = ?3) ORDER BY company, day, sender_domain" :
	    "SELECT company, day, '', emails FROM usage_daily WHERE day "
	    "BETWEEN ?1 AND ?2 AND (?3 IS NULL OR company = ?3) ORDER BY "
	    "company, day");
	if (s == NULL)
		goto fail;
	sq_bind_int(s, 1, from);
	sq_bind_int(s, 2, to);
	if (company != NULL)
		sq_bind_text(s, 3, company);
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&u, 0, sizeof(u));
		if (!sq_col_text(s, 0, u.company, sizeof(u.company)) ||
		    !sq_col_text(s, 2, u.sender_domain,
		    sizeof(u.sender_domain))) {
			rc = store_fail(st, STORE_ERROR, "usage: a value is "
			    "too long");
			goto fail;
		}
		u.day = (int32_t)sqlite3_column_int64(s, 1);
		u.emails = (uint64_t)sqlite3_column_int64(s, 3);
		if (fn(arg, &u) != 0)
			break;
	}
	rc = sq_rows_end(st, r, "usage");
fail:
	sqlite3_finalize(s);
	return rc;
}

static int
sq_route_history(struct store *st, const char *company, store_route_fn fn,
    void *arg)
{
	sqlite3_stmt *s;
	enum route_kind k;
	int rc = STORE_ERROR, r;

	if ((s = sq_prep(st, "SELECT at, json_extract(detail, '$.route') "
	    "FROM audit WHERE company = ?1 AND action IN ('company.add', "
	    "'route.set') ORDER BY id")) == NULL)
		goto fail;
	sq_bind_text(s, 1, company);
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		const char *rt = sq_col_str(s, 1);

		if (rt == NULL || route_kind_parse(rt, &k) != 0 ||
		    k == USER_ROUTE_COMPANY) {
			rc = store_fail(st, STORE_ERROR, "audit: company "
			    "'%s' has a route change without a route",
			    company);
			goto fail;
		}
		if (fn(arg, sqlite3_column_int64(s, 0), k) != 0)
			break;
	}
	rc = sq_rows_end(st, r, "audit");
fail:
	sqlite3_finalize(s);
	return rc;
}

#define SQ_INVOICE_COLS \
	"month, company, route, plan, currency, emails, included, extra, " \
	"fixed_fee, extra_fee, total, platform_days, days_in_month, " \
	"fee_rule, closed_at"

static int
sq_invoice_close(struct store *st, int32_t month, const struct invoice *l,
    size_t n)
{
	const int64_t now = (int64_t)time(NULL);
	sqlite3_stmt *s = NULL;
	int rc;

	if ((rc = sq_begin(st)) != STORE_OK)
		goto fail;
	rc = STORE_ERROR;
	if ((s = sq_prep(st, "INSERT INTO billing_months (month, closed_at) "
	    "VALUES (?1, ?2)")) == NULL)
		goto fail;
	sq_bind_int(s, 1, month);
	sq_bind_int(s, 2, now);
	if ((rc = sq_done(st, s, "billing_months")) != STORE_OK) {
		if (rc == STORE_EXISTS)
			store_fail(st, rc, "month %d is closed already",
			    (int)month);
		goto fail;
	}
	sqlite3_finalize(s);
	if ((s = sq_prep(st, "INSERT INTO invoices (" SQ_INVOICE_COLS ") "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
	    "?14, ?15)")) == NULL) {
		rc = STORE_ERROR;
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		sqlite3_reset(s);
		sq_bind_int(s, 1, month);
		sq_bind_text(s, 2, l[i].company);
		sq_bind_text(s, 3, route_kind_name(l[i].route));
		sq_bind_text(s, 4, l[i].plan);
		sq_bind_text(s, 5, l[i].currency);
		sq_bind_int(s, 6, (int64_t)l[i].emails);
		sq_bind_int(s, 7, (int64_t)l[i].included);
		sq_bind_int(s, 8, (int64_t)l[i].extra);
		sq_bind_int(s, 9, (int64_t)l[i].fixed_fee);
		sq_bind_int(s, 10, (int64_t)l[i].extra_fee);
		sq_bind_int(s, 11, (int64_t)l[i].total);
		sq_bind_int(s, 12, l[i].platform_days);
		sq_bind_int(s, 13, l[i].days_in_month);
		sq_bind_text(s, 14, l[i].fee_rule == FEE_PRO_RATA ?
		    "pro-rata" : "any-day");
		sq_bind_int(s, 15, now);
		if ((rc = sq_done(st, s, "invoices")) != STORE_OK)
			goto fail;
	}
	sqlite3_finalize(s);
	/* the month's usage can no longer change: its keys can go */
	if ((s = sq_prep(st, "DELETE FROM meter_seen WHERE month = ?1")) ==
	    NULL) {
		rc = STORE_ERROR;
		goto fail;
	}
	sq_bind_int(s, 1, month);
	if ((rc = sq_done(st, s, "meter_seen")) != STORE_OK)
		goto fail;
	rc = sq_commit(st);
fail:
	sqlite3_finalize(s);
	return sq_end(st, rc);
}

static int
sq_month_closed(struct store *st, int32_t month, int64_t *closed_at)
{
	sqlite3_stmt *s;
	int rc = STORE_ERROR, r;

	if ((s = sq_prep(st, "SELECT closed_at FROM billing_months WHERE "
	    "month = ?1")) == NULL)
		return rc;
	sq_bind_int(s, 1, month);
	if ((r = sqlite3_step(s)) == SQLITE_ROW)
		*closed_at = sqlite3_column_int64(s, 0);
	rc = r == SQLITE_ROW || r == SQLITE_DONE ? STORE_OK :
	    sq_dberr(st, "billing_months");
	sqlite3_finalize(s);
	return rc;
}

static int
sq_invoice_list(struct store *st, int32_t month, const char *company,
    store_invoice_fn fn, void *arg)
{
	sqlite3_stmt *s;
	struct invoice v;
	int rc = STORE_ERROR, r;

	if ((s = sq_prep(st, "SELECT " SQ_INVOICE_COLS " FROM invoices WHERE "
	    "month = ?1 AND (?2 IS NULL OR company = ?2) ORDER BY "
	    "company")) == NULL)
		goto fail;
	sq_bind_int(s, 1, month);
	if (company != NULL)
		sq_bind_text(s, 2, company);
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&v, 0, sizeof(v));
		v.month = (int32_t)sqlite3_column_int64(s, 0);
		if (!sq_col_text(s, 1, v.company, sizeof(v.company)) ||
		    route_kind_parse(sq_col_str(s, 2), &v.route) != 0 ||
		    !sq_col_text(s, 3, v.plan, sizeof(v.plan)) ||
		    !sq_col_text(s, 4, v.currency, sizeof(v.currency))) {
			rc = store_fail(st, STORE_ERROR, "invoice of month "
			    "%d: a malformed value", (int)month);
			goto fail;
		}
		v.emails = (uint64_t)sqlite3_column_int64(s, 5);
		v.included = (uint64_t)sqlite3_column_int64(s, 6);
		v.extra = (uint64_t)sqlite3_column_int64(s, 7);
		v.fixed_fee = (uint64_t)sqlite3_column_int64(s, 8);
		v.extra_fee = (uint64_t)sqlite3_column_int64(s, 9);
		v.total = (uint64_t)sqlite3_column_int64(s, 10);
		v.platform_days = sqlite3_column_int(s, 11);
		v.days_in_month = sqlite3_column_int(s, 12);
		v.fee_rule = strcmp(sq_col_str(s, 13), "pro-rata") == 0 ?
		    FEE_PRO_RATA : FEE_ANY_DAY;
		v.closed_at = sqlite3_column_int64(s, 14);
		if (fn(arg, &v) != 0)
			break;
	}
	rc = sq_rows_end(st, r, "invoices");
fail:
	sqlite3_finalize(s);
	return rc;
}

/* FULL: the WAL is synced at every commit, so a count that committed
 * survives a power loss too (NORMAL syncs only at checkpoints). */
static int
sq_durable(struct store *st)
{
	return sq_exec(st, "PRAGMA synchronous = FULL");
}

/* ---- companies --------------------------------------------------------- */

static int
sq_company_add(struct store *st, const struct company *c, const char *actor,
    const char *reference)
{
	const bool routed = c->route != ROUTE_NONE;
	const int64_t now = (int64_t)time(NULL);
	sqlite3_stmt *s = NULL;
	struct buf blob;
	json_t *d;
	int rc;

	buf_init(&blob);
	if ((rc = sq_begin(st)) != STORE_OK)
		goto fail;
	rc = STORE_ERROR;
	if ((s = sq_prep(st, "INSERT INTO companies (" SQ_COMPANY_COLS ") "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
	    "?14, ?15, ?16)")) == NULL)
		goto fail;
	sq_bind_text(s, 1, c->id);
	sq_bind_text(s, 2, c->name);
	sq_bind_text(s, 3, company_status_name(c->status));
	sq_bind_text(s, 4, route_kind_name(c->route));
	if ((rc = sq_bind_smtp(st, s, 5, &c->own, &blob)) != STORE_OK)
		goto fail;
	sq_bind_text(s, 13, routed ? actor : "");
	sq_bind_int(s, 14, routed ? now : 0);
	sq_bind_text(s, 15, routed ? reference : "");
	sq_bind_int(s, 16, now);
	d = sq_json(json_pack("{s:s, s:s, s:s}", "name", c->name, "status",
	    company_status_name(c->status), "route",
	    route_kind_name(c->route)));
	if (c->route == ROUTE_OWN_SERVER)
		json_object_set_new(d, "own", store_smtp_json(&c->own,
		    c->own.secret ? "set" : "none"));
	if ((rc = sq_apply(st, s, c->id, "company.add", actor, reference,
	    d)) == STORE_EXISTS)
		store_fail(st, rc, "company '%s' exists", c->id);
fail:
	sqlite3_finalize(s);
	buf_free(&blob);
	return sq_end(st, rc);
}

static int
sq_company_get(struct store *st, const char *id, struct company *out)
{
	union sq_row r;
	int rc;

	rc = sq_get(st, "SELECT " SQ_COMPANY_COLS " FROM companies WHERE "
	    "id = ?1", id, 0, SQ_COMPANY, "company", &r);
	*out = r.company;
	return rc;
}

static int
sq_company_list(struct store *st, store_company_fn fn, void *arg)
{
	struct sq_each e = { .kind = SQ_COMPANY, .fn.company = fn,
	    .arg = arg };

	return sq_each_run(st, "SELECT " SQ_COMPANY_COLS " FROM companies "
	    "ORDER BY id", NULL, false, &e);
}

static int
sq_company_set_route(struct store *st, const char *id, enum route_kind route,
    const struct smtp_settings *own, const char *actor,
    const char *reference)
{
	sqlite3_stmt *s = NULL;
	char old[32];
	struct buf blob;
	json_t *d;
	int rc;

	buf_init(&blob);
	if ((rc = sq_begin(st)) != STORE_OK ||
	    (rc = sq_lookup(st, "SELECT route FROM companies WHERE id = ?1",
	    id, "company", old, sizeof(old))) != STORE_OK)
		goto fail;
	rc = STORE_ERROR;
	if ((s = sq_prep(st, "UPDATE companies SET route = ?2, own_host = ?3, "
	    "own_port = ?4, own_tls = ?5, own_auth_user = ?6, "
	    "own_secret = ?7, own_xoauth2_token_url = ?8, "
	    "own_xoauth2_client_id = ?9, own_xoauth2_scope = ?10, "
	    "route_actor = ?11, route_at = ?12, route_reference = ?13 "
	    "WHERE id = ?1")) == NULL)
		goto fail;
	sq_bind_text(s, 1, id);
	sq_bind_text(s, 2, route_kind_name(route));
	if ((rc = sq_bind_smtp(st, s, 3, own, &blob)) != STORE_OK)
		goto fail;
	sq_bind_text(s, 11, actor);
	sq_bind_int(s, 12, (int64_t)time(NULL));
	sq_bind_text(s, 13, reference);
	d = sq_json(json_pack("{s:s, s:s}", "from", old, "route",
	    route_kind_name(route)));
	if (route == ROUTE_OWN_SERVER)
		json_object_set_new(d, "own", store_smtp_json(own,
		    own->secret ? "set" : "none"));
	rc = sq_apply(st, s, id, "route.set", actor, reference, d);
fail:
	sqlite3_finalize(s);
	buf_free(&blob);
	return sq_end(st, rc);
}

/*
 * The common shape of a change to one existing row: look up column 0 of
 * the row lookup_sql selects by key (NOTFOUND naming what) into old,
 * then run change_sql with key as ?1 and text2 (if not NULL) as ?2 and
 * int3 as ?3, audited as action for company (NULL: the looked-up value)
 * with the detail that detail_fn makes from old.
 */
struct sq_change {
	const char	*lookup_sql;
	const char	*what;
	const char	*change_sql;
	const char	*action;
	const char	*text2;
	int64_t		 int3;
	const char	*company;
	json_t		*(*detail_fn)(const struct sq_change *c,
			    const char *key, const char *old);
};

static int
sq_change_one(struct store *st, const struct sq_change *c, const char *key,
    const char *actor, const char *reference)
{
	sqlite3_stmt *s = NULL;
	char old[STORE_ID_MAX + 1];
	int rc;

	if ((rc = sq_begin(st)) != STORE_OK ||
	    (rc = sq_lookup(st, c->lookup_sql, key, c->what, old,
	    sizeof(old))) != STORE_OK)
		goto fail;
	rc = STORE_ERROR;
	if ((s = sq_prep(st, c->change_sql)) == NULL)
		goto fail;
	sq_bind_text(s, 1, key);
	/* Bind what the statement takes. */
	if (sqlite3_bind_parameter_count(s) >= 2 && c->text2 != NULL)
		sq_bind_text(s, 2, c->text2);
	if (sqlite3_bind_parameter_count(s) >= 3)
		sq_bind_int(s, 3, c->int3);
	rc = sq_apply(st, s, c->company ? c->company : old, c->action, actor,
	    reference, c->detail_fn(c, key, old));
fail:
	sqlite3_finalize(s);
	return sq_end(st, rc);
}

static json_t *
sq_status_detail(const struct sq_change *c, const char *key, const char *old)
{
	return sq_json(json_pack("{s:s, s:s}", "from", old, "status",
	    c->text2));
}

static int
sq_company_set_status(struct store *st, const char *id,
    enum company_status status, const char *actor, const char *reference)
{
	const struct sq_change c = {
		.lookup_sql = "SELECT status FROM companies WHERE id = ?1",
		.what = "company",
		.change_sql = "UPDATE companies SET status = ?2 WHERE id = ?1",
		.action = "company.status",
		.text2 = company_status_name(status),
		.company = id,
		.detail_fn = sq_status_detail,
	};

	return sq_change_one(st, &c, id, actor, reference);
}

/* ---- domains ----------------------------------------------------------- */

static json_t *
sq_domain_detail(const struct sq_change *c, const char *key, const char *old)
{
	return sq_json(json_pack("{s:s}", "domain", key));
}

static int
sq_domain_add(struct store *st, const char *domain, const char *company,
    const char *actor)
{
	sqlite3_stmt *s = NULL;
	char owner[STORE_ID_MAX + 1];
	int rc;

	if ((rc = sq_begin(st)) != STORE_OK)
		goto fail;
	rc = STORE_ERROR;
	if ((s = sq_prep(st, "INSERT INTO domains (name, company, created) "
	    "VALUES (?1, ?2, ?3)")) == NULL)
		goto fail;
	sq_bind_text(s, 1, domain);
	sq_bind_text(s, 2, company);
	sq_bind_int(s, 3, (int64_t)time(NULL));
	rc = sq_apply(st, s, company, "domain.add", actor, NULL,
	    sq_domain_detail(NULL, domain, NULL));
	if (rc == STORE_NOTFOUND)
		store_fail(st, rc, "no company '%s'", company);
	else if (rc == STORE_EXISTS && sq_lookup(st, "SELECT company FROM "
	    "domains WHERE name = ?1", domain, "domain", owner,
	    sizeof(owner)) == STORE_OK)
		store_fail(st, rc, "domain %s belongs to company '%s'", domain,
		    owner);
fail:
	sqlite3_finalize(s);
	return sq_end(st, rc);
}

static int
sq_domain_remove(struct store *st, const char *domain, const char *actor)
{
	const struct sq_change c = {
		.lookup_sql = "SELECT company FROM domains WHERE name = ?1",
		.what = "domain",
		.change_sql = "DELETE FROM domains WHERE name = ?1",
		.action = "domain.remove",
		.detail_fn = sq_domain_detail,
	};

	return sq_change_one(st, &c, domain, actor, NULL);
}

static int
sq_domain_get(struct store *st, const char *domain, struct domain *out)
{
	union sq_row r;
	int rc;

	rc = sq_get(st, "SELECT " SQ_DOMAIN_COLS " FROM domains WHERE "
	    "name = ?1", domain, 0, SQ_DOMAIN, "domain", &r);
	*out = r.domain;
	return rc;
}

static int
sq_domain_list(struct store *st, const char *company, store_domain_fn fn,
    void *arg)
{
	struct sq_each e = { .kind = SQ_DOMAIN, .fn.domain = fn, .arg = arg };

	return sq_each_run(st, company ?
	    "SELECT " SQ_DOMAIN_COLS " FROM domains WHERE company = ?1 "
	    "ORDER BY name" :
	    "SELECT " SQ_DOMAIN_COLS " FROM domains ORDER BY name",
	    company, true, &e);
}

/* The checks run often: only a change of a result (or the first check)
 * is audited, not every checked_at. */
static int
sq_domain_set_auth(struct store *st, const char *domain, bool spf_ok,
    bool dkim_ok, int64_t checked_at)
{
	sqlite3_stmt *s = NULL;
	struct domain old;
	int rc;

	if ((rc = sq_begin(st)) != STORE_OK ||
	    (rc = sq_domain_get(st, domain, &old)) != STORE_OK)
		goto fail;
	rc = STORE_ERROR;
	if ((s = sq_prep(st, "UPDATE domains SET spf_ok = ?2, dkim_ok = ?3, "
	    "checked_at = ?4 WHERE name = ?1")) == NULL)
		goto fail;
	sq_bind_text(s, 1, domain);
	sq_bind_int(s, 2, spf_ok);
	sq_bind_int(s, 3, dkim_ok);
	sq_bind_int(s, 4, checked_at);
	if (old.checked_at != 0 && old.spf_ok == spf_ok &&
	    old.dkim_ok == dkim_ok) {
		if ((rc = sq_done(st, s, "domains")) == STORE_OK)
			rc = sq_commit(st);
		goto fail;
	}
	rc = sq_apply(st, s, old.company, "domain.auth", SQ_SYSTEM_ACTOR, NULL,
	    sq_json(json_pack("{s:s, s:b, s:b, s:I}", "domain", domain,
	    "spf_ok", spf_ok, "dkim_ok", dkim_ok, "checked_at",
	    (json_int_t)checked_at)));
fail:
	sqlite3_finalize(s);
	return sq_end(st, rc);
}

/* ---- users ------------------------------------------------------------- */

/* The audit detail of a user's route, from address and settings. */
static json_t *
sq_user_json(const struct user *u, const char *secret_word)
{
	json_t *d = sq_json(json_pack("{s:I, s:s, s:s, s:s}", "user",
	    (json_int_t)u->id, "email", u->email, "route",
	    route_kind_name(u->route), "from_address", u->from_address));

	if (u->route == ROUTE_OWN_SERVER)
		json_object_set_new(d, "smtp", store_smtp_json(&u->smtp,
		    secret_word));
	return d;
}

/* Bind u's route, from address and settings for row u->id to s
 * (prepared SQ_USER_WRITE); the secret column is replaced by
 * u->smtp.secret (NULL: none) only with replace_secret. */
static int
sq_user_bind(struct store *st, sqlite3_stmt *s, const struct user *u,
    bool replace_secret, struct buf *blob)
{
	sqlite3_reset(s);
	sq_bind_int(s, 1, u->id);
	sq_bind_text(s, 2, route_kind_name(u->route));
	sq_bind_text(s, 3, u->from_address);
	sq_bind_int(s, 12, replace_secret);
	return sq_bind_smtp(st, s, 4, &u->smtp, blob);
}

/* Write user u (its id, company and email set) in the open transaction,
 * audited as action. */
static int
sq_user_write(struct store *st, const struct user *u, const char *action,
    const char *actor)
{
	sqlite3_stmt *s = NULL;
	struct buf blob;
	int rc = STORE_ERROR;

	buf_init(&blob);
	if ((s = sq_prep(st, SQ_USER_WRITE)) == NULL ||
	    (rc = sq_user_bind(st, s, u, true, &blob)) != STORE_OK)
		goto fail;
	rc = sq_apply(st, s, u->company, action, actor, NULL,
	    sq_user_json(u, u->smtp.secret ? "set" : "none"));
fail:
	sqlite3_finalize(s);
	buf_free(&blob);
	return rc;
}

static int
sq_user_add(struct store *st, struct user *u, const char *actor)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if ((rc = sq_begin(st)) != STORE_OK)
		goto fail;
	rc = STORE_ERROR;
	if ((s = sq_prep(st, "INSERT INTO users (company, email, name, "
	    "route, created) VALUES (?1, ?2, ?3, 'company', ?4)")) == NULL)
		goto fail;
	sq_bind_text(s, 1, u->company);
	sq_bind_text(s, 2, u->email);
	sq_bind_text(s, 3, u->name);
	sq_bind_int(s, 4, (int64_t)time(NULL));
	if ((rc = sq_done(st, s, "users")) == STORE_NOTFOUND)
		store_fail(st, rc, "no company '%s'", u->company);
	else if (rc == STORE_EXISTS)
		store_fail(st, rc, "user %s exists in company '%s'", u->email,
		    u->company);
	if (rc != STORE_OK)
		goto fail;
	u->id = sqlite3_last_insert_rowid(SQ(st)->db);
	if ((rc = sq_user_write(st, u, "user.add", actor)) != STORE_OK)
		u->id = 0;
fail:
	sqlite3_finalize(s);
	return sq_end(st, rc);
}

static int
sq_user_get(struct store *st, int64_t id, struct user *out)
{
	union sq_row r;
	int rc;

	rc = sq_get(st, "SELECT " SQ_USER_COLS " FROM users WHERE id = ?1",
	    NULL, id, SQ_USER, "user", &r);
	*out = r.user;
	return rc;
}

static int
sq_user_list(struct store *st, const char *company, store_user_fn fn,
    void *arg)
{
	struct sq_each e = { .kind = SQ_USER, .fn.user = fn, .arg = arg };

	return sq_each_run(st, company ?
	    "SELECT " SQ_USER_COLS " FROM users WHERE company = ?1 "
	    "ORDER BY id" :
	    "SELECT " SQ_USER_COLS " FROM users ORDER BY id",
	    company, true, &e);
}

/* The user's row without opening its secret (it is being replaced, and
 * the store may have no key). */
#define SQ_USER_BY_ID	"SELECT " SQ_USER_COLS " FROM users WHERE id = ?1"

static int
sq_user_set_smtp(struct store *st, int64_t id, const struct user *u,
    const char *actor)
{
	sqlite3_stmt *s = NULL;
	struct user cur;
	int rc;

	if ((rc = sq_begin(st)) != STORE_OK)
		goto fail;
	rc = STORE_ERROR;
	if ((s = sq_prep(st, SQ_USER_BY_ID)) == NULL)
		goto fail;
	sq_bind_int(s, 1, id);
	if ((rc = sq_step_one(st, s, "user", NULL, id)) != STORE_OK ||
	    (rc = sq_read_user(st, s, false, &cur, NULL)) != STORE_OK)
		goto fail;
	cur.route = u->route;
	memcpy(cur.from_address, u->from_address, sizeof(cur.from_address));
	cur.smtp = u->smtp;		/* the caller's secret, not owned */
	rc = sq_user_write(st, &cur, "user.smtp", actor);
fail:
	sqlite3_finalize(s);
	return sq_end(st, rc);
}

/* ---- mass update ------------------------------------------------------- */

/* Fill temp.mass_email with the filter's addresses (in their order;
 * duplicates, in any case, once) and report those that match no user
 * (within the company if given).  *nmissing gets their number. */
static int
sq_mass_emails(struct store *st, const struct user_filter *f,
    void (*missing_fn)(void *arg, const char *email), void *arg,
    size_t *nmissing)
{
	sqlite3_stmt *s = NULL;
	int rc = STORE_ERROR, r;

	*nmissing = 0;
	if ((rc = sq_exec(st, "CREATE TEMP TABLE IF NOT EXISTS mass_email ("
	    "seq INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE COLLATE "
	    "NOCASE); DELETE FROM temp.mass_email")) != STORE_OK)
		goto fail;
	rc = STORE_ERROR;
	if ((s = sq_prep(st, "INSERT OR IGNORE INTO temp.mass_email (email) "
	    "VALUES (?1)")) == NULL)
		goto fail;
	for (size_t i = 0; i < f->nemails; i++) {
		sqlite3_reset(s);
		sq_bind_text(s, 1, f->emails[i]);
		if ((rc = sq_done(st, s, "mass_email")) != STORE_OK)
			goto fail;
	}
	sqlite3_finalize(s);
	rc = STORE_ERROR;
	if ((s = sq_prep(st, "SELECT t.email FROM temp.mass_email t WHERE "
	    "NOT EXISTS (SELECT 1 FROM users u WHERE u.email = t.email AND "
	    "(?1 IS NULL OR u.company = ?1)) ORDER BY t.seq")) == NULL)
		goto fail;
	sq_bind_text(s, 1, f->company);
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		(*nmissing)++;
		if (missing_fn != NULL)
			missing_fn(arg, sq_col_str(s, 0));
	}
	if (r != SQLITE_DONE) {
		rc = sq_dberr(st, "mass_email");
		goto fail;
	}
	rc = STORE_OK;
fail:
	sqlite3_finalize(s);
	return rc;
}

/* The ids of the users f selects, in order, into *ids. */
static int
sq_mass_ids(struct store *st, const struct user_filter *f, int64_t **ids,
    size_t *nids)
{
	/* [emails given][company given]; CROSS JOIN keeps the (short)
	 * address list as the outer loop, looking users up by email. */
	static const char *const sql[2][2] = {
		{ "SELECT id FROM users ORDER BY id",
		  "SELECT id FROM users WHERE company = ?1 ORDER BY id" },
		{ "SELECT u.id FROM temp.mass_email t CROSS JOIN users u "
		  "ON u.email = t.email ORDER BY u.id",
		  "SELECT u.id FROM temp.mass_email t CROSS JOIN users u "
		  "ON u.email = t.email WHERE u.company = ?1 ORDER BY u.id" },
	};
	sqlite3_stmt *s = NULL;
	size_t cap = 0;
	int rc = STORE_ERROR, r;

	if ((s = sq_prep(st, sql[f->emails != NULL][f->company != NULL])) ==
	    NULL)
		goto fail;
	if (f->company != NULL)
		sq_bind_text(s, 1, f->company);
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		if (*nids == cap) {
			cap = cap ? cap * 2 : 256;
			*ids = xrealloc(*ids, cap * sizeof(**ids));
		}
		(*ids)[(*nids)++] = sqlite3_column_int64(s, 0);
	}
	if (r != SQLITE_DONE) {
		rc = sq_dberr(st, "users");
		goto fail;
	}
	rc = STORE_OK;
fail:
	sqlite3_finalize(s);
	return rc;
}

/* The audit detail of a mass update: the filter and what was set. */
static json_t *
sq_mass_json(const struct user_filter *f, const struct user_update *upd,
    size_t matched)
{
	json_t *set = sq_json(json_object()), *d;

	if (upd->set & USER_SET_ROUTE)
		store_json_str(set, "route", route_kind_name(upd->route));
	if (upd->set & USER_SET_FROM)
		store_json_str(set, "from_address", upd->from_address);
	if (upd->set & USER_SET_HOST)
		store_json_str(set, "host", upd->smtp.host);
	if (upd->set & USER_SET_PORT)
		json_object_set_new(set, "port", json_integer(upd->smtp.port));
	if (upd->set & USER_SET_TLS)
		store_json_str(set, "tls", store_tls_name(upd->smtp.tls));
	if (upd->set & USER_SET_AUTH_USER)
		store_json_str(set, "auth_user", upd->smtp.auth_user);
	store_json_str(set, "secret", !(upd->set & USER_SET_SECRET) ?
	    "unchanged" : upd->smtp.secret ? "set" : "none");
	d = sq_json(json_pack("{s:{s:o, s:o}, s:o, s:I}", "filter",
	    "company", f->company ? json_string(f->company) : json_null(),
	    "emails", f->emails ? json_integer((json_int_t)f->nemails) :
	    json_null(), "set", set, "matched", (json_int_t)matched));
	return d;
}

/*
 * One transaction: the filter's addresses, then per matched user (in id
 * order) the new state, checked, shown to fn and written.  fn sees each
 * change before the commit: if the call fails afterwards, nothing it saw
 * was applied.
 */
static int
sq_user_mass_update(struct store *st, const struct user_filter *f,
    const struct user_update *upd, bool dry_run,
    void (*fn)(void *arg, const struct user *before, const struct user *after),
    void (*missing_fn)(void *arg, const char *email), void *arg,
    size_t *matched, const char *actor)
{
	sqlite3_stmt *get = NULL, *put = NULL;
	struct user before, after;
	bool had, has;
	int64_t *ids = NULL;
	size_t nids = 0, nmissing = 0;
	struct buf blob;
	char company[STORE_ID_MAX + 1];
	int rc;

	buf_init(&blob);
	if ((rc = sq_begin(st)) != STORE_OK)
		goto fail;
	if (f->company != NULL && (rc = sq_lookup(st, "SELECT id FROM "
	    "companies WHERE id = ?1", f->company, "company", company,
	    sizeof(company))) != STORE_OK)
		goto fail;
	if (f->emails != NULL && (rc = sq_mass_emails(st, f, missing_fn, arg,
	    &nmissing)) != STORE_OK)
		goto fail;
	if (nmissing > 0 && !dry_run) {
		rc = store_fail(st, STORE_NOTFOUND, "%zu of the addresses "
		    "match no user%s%s: nothing changed", nmissing,
		    f->company ? " of company " : "",
		    f->company ? f->company : "");
		goto fail;
	}
	/* The address list is not kept past the call. */
	if ((rc = sq_mass_ids(st, f, &ids, &nids)) != STORE_OK ||
	    (f->emails != NULL && (rc = sq_exec(st,
	    "DELETE FROM temp.mass_email")) != STORE_OK))
		goto fail;
	*matched = nids;
	rc = STORE_ERROR;
	if ((get = sq_prep(st, SQ_USER_BY_ID)) == NULL ||
	    (put = sq_prep(st, SQ_USER_WRITE)) == NULL)
		goto fail;
	for (size_t i = 0; i < nids; i++) {
		sqlite3_reset(get);
		sq_bind_int(get, 1, ids[i]);
		if ((rc = sq_step_one(st, get, "user", NULL, ids[i])) !=
		    STORE_OK ||
		    (rc = sq_read_user(st, get, false, &before, &had)) !=
		    STORE_OK || (rc = store_user_apply(st, &before, had, upd,
		    &after, &has)) != STORE_OK)
			goto fail;
		if (fn != NULL)
			fn(arg, &before, &after);
		if (dry_run)
			continue;
		/* The secret column changes when one is set, or when the
		 * settings went away with the route. */
		after.smtp.secret = (upd->set & USER_SET_SECRET) && has ?
		    upd->smtp.secret : NULL;
		rc = sq_user_bind(st, put, &after,
		    (upd->set & USER_SET_SECRET) || (had && !has), &blob);
		after.smtp.secret = NULL;
		if (rc != STORE_OK || (rc = sq_done(st, put, "users")) !=
		    STORE_OK)
			goto fail;
	}
	if (dry_run || nids == 0) {
		sq_rollback(st);
		rc = STORE_OK;
		goto fail;
	}
	if ((rc = sq_audit(st, f->company, "user.mass_update", actor, NULL,
	    sq_mass_json(f, upd, nids))) == STORE_OK)
		rc = sq_commit(st);
fail:
	sqlite3_finalize(get);
	sqlite3_finalize(put);
	free(ids);
	buf_free(&blob);
	return sq_end(st, rc);
}

/* ---- credentials ------------------------------------------------------- */

static int
sq_credential_add(struct store *st, struct credential *c, const char *actor)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if ((rc = sq_begin(st)) != STORE_OK)
		goto fail;
	rc = STORE_ERROR;
	if ((s = sq_prep(st, "INSERT INTO credentials (company, application, "
	    "username, hash, created) VALUES (?1, ?2, ?3, ?4, ?5)")) == NULL)
		goto fail;
	c->created = (int64_t)time(NULL);
	sq_bind_text(s, 1, c->company);
	sq_bind_text(s, 2, c->application);
	sq_bind_text(s, 3, c->username);
	sq_bind_text(s, 4, c->hash);
	sq_bind_int(s, 5, c->created);
	if ((rc = sq_done(st, s, "credentials")) == STORE_NOTFOUND)
		store_fail(st, rc, "no company '%s'", c->company);
	else if (rc == STORE_EXISTS)
		store_fail(st, rc, "credential user name %s is taken",
		    c->username);
	if (rc != STORE_OK)
		goto fail;
	c->id = sqlite3_last_insert_rowid(SQ(st)->db);
	if ((rc = sq_audit(st, c->company, "credential.add", actor, NULL,
	    sq_json(json_pack("{s:I, s:s, s:s}", "credential",
	    (json_int_t)c->id, "username", c->username, "application",
	    c->application)))) == STORE_OK)
		rc = sq_commit(st);
fail:
	if (rc != STORE_OK)
		c->id = 0;
	sqlite3_finalize(s);
	return sq_end(st, rc);
}

static json_t *
sq_revoke_detail(const struct sq_change *c, const char *key, const char *old)
{
	return sq_json(json_pack("{s:s}", "username", key));
}

static int
sq_credential_revoke(struct store *st, const char *username,
    const char *actor)
{
	const struct sq_change c = {
		.lookup_sql = "SELECT company FROM credentials WHERE "
		    "username = ?1 AND revoked = 0",
		.what = "valid credential",
		.change_sql = "UPDATE credentials SET revoked = ?3 WHERE "
		    "username = ?1",
		.action = "credential.revoke",
		.int3 = (int64_t)time(NULL),
		.detail_fn = sq_revoke_detail,
	};

	return sq_change_one(st, &c, username, actor, NULL);
}

static int
sq_credential_find(struct store *st, const char *username,
    struct credential *out)
{
	union sq_row r;
	int rc;

	rc = sq_get(st, "SELECT " SQ_CRED_COLS " FROM credentials WHERE "
	    "username = ?1 AND revoked = 0", username, 0, SQ_CRED,
	    "valid credential", &r);
	*out = r.cred;
	return rc;
}

static int
sq_credential_list(struct store *st, const char *company,
    store_credential_fn fn, void *arg)
{
	struct sq_each e = { .kind = SQ_CRED, .fn.cred = fn, .arg = arg };

	return sq_each_run(st, company ?
	    "SELECT " SQ_CRED_COLS " FROM credentials WHERE company = ?1 "
	    "ORDER BY id" :
	    "SELECT " SQ_CRED_COLS " FROM credentials ORDER BY id",
	    company, true, &e);
}

/* ---- audit ------------------------------------------------------------- */

/* The audit log keeps naming what is gone: a company filter needs no
 * existing company. */
static int
sq_audit_list(struct store *st, const char *company, store_audit_fn fn,
    void *arg)
{
	struct sq_each e = { .kind = SQ_AUDIT, .fn.audit = fn, .arg = arg };

	return sq_each_run(st, company ?
	    "SELECT " SQ_AUDIT_COLS " FROM audit WHERE company = ?1 "
	    "ORDER BY id" :
	    "SELECT " SQ_AUDIT_COLS " FROM audit ORDER BY id",
	    company, false, &e);
}

void *
store_sqlite_db(struct store *st)
{
	return st->ops == &store_sqlite_ops ? SQ(st)->db : NULL;
}

/* ---- DKIM keys and the domain check ------------------------------------ */

static int
sq_dkim_add(struct store *st, struct dkim_keyrec *k, const char *actor)
{
	sqlite3_stmt *s = NULL;
	char company[STORE_ID_MAX + 1];
	struct buf blob;
	int rc;

	buf_init(&blob);
	if ((rc = sq_begin(st)) != STORE_OK ||
	    (rc = sq_lookup(st, "SELECT company FROM domains WHERE name = ?1",
	    k->domain, "domain", company, sizeof(company))) != STORE_OK ||
	    (rc = store_seal(st, k->private_pem, &blob)) != STORE_OK)
		goto fail;
	rc = STORE_ERROR;
	if ((s = sq_prep(st, "INSERT INTO dkim_keys (domain, selector, "
	    "algorithm, bits, private_key, record, state, created, "
	    "published_at, activated_at, retire_at) VALUES (?1, ?2, ?3, ?4, "
	    "?5, ?6, ?7, ?8, ?9, ?10, ?11)")) == NULL)
		goto fail;
	sq_bind_text(s, 1, k->domain);
	sq_bind_text(s, 2, k->selector);
	sq_bind_text(s, 3, k->algorithm);
	sq_bind_int(s, 4, k->bits);
	sq_bind_check(s, 5, sqlite3_bind_blob(s, 5, blob.data, (int)blob.len,
	    SQLITE_STATIC));
	sq_bind_text(s, 6, k->record);
	sq_bind_text(s, 7, dkim_key_state_name(k->state));
	sq_bind_int(s, 8, k->created);
	sq_bind_int(s, 9, k->published_at);
	sq_bind_int(s, 10, k->activated_at);
	sq_bind_int(s, 11, k->retire_at);
	rc = sq_apply(st, s, company, "dkim.add", actor, NULL,
	    sq_json(json_pack("{s:s, s:s, s:s, s:i, s:s}", "domain",
	    k->domain, "selector", k->selector, "algorithm", k->algorithm,
	    "bits", k->bits, "state", dkim_key_state_name(k->state))));
	if (rc == STORE_OK)
		k->id = sqlite3_last_insert_rowid(SQ(st)->db);
	else if (rc == STORE_EXISTS)
		store_fail(st, rc, "domain %s already has a key with selector "
		    "%s", k->domain, k->selector);
fail:
	sqlite3_finalize(s);
	buf_free(&blob);
	return sq_end(st, rc);
}

static int
sq_dkim_list(struct store *st, const char *domain, bool with_private,
    store_dkim_fn fn, void *arg)
{
	struct sq_each e = { .kind = with_private ? SQ_DKIM_PRIVATE : SQ_DKIM,
	    .fn.dkim = fn, .arg = arg };

	return sq_each_run(st, domain ?
	    "SELECT " SQ_DKIM_COLS " FROM dkim_keys WHERE domain = ?1 "
	    "ORDER BY id" :
	    "SELECT " SQ_DKIM_COLS " FROM dkim_keys ORDER BY domain, id",
	    domain, false, &e);
}

/* Only a change of state is audited: the check touches published_at
 * every time it runs. */
static int
sq_dkim_update(struct store *st, const struct dkim_keyrec *k,
    const char *actor)
{
	sqlite3_stmt *s = NULL;
	union sq_row old;
	char company[STORE_ID_MAX + 1];
	int rc;

	memset(&old, 0, sizeof(old));
	if ((rc = sq_begin(st)) != STORE_OK ||
	    (rc = sq_get(st, "SELECT " SQ_DKIM_COLS " FROM dkim_keys WHERE "
	    "id = ?1", NULL, k->id, SQ_DKIM, "DKIM key", &old)) != STORE_OK ||
	    (rc = sq_lookup(st, "SELECT company FROM domains WHERE name = ?1",
	    old.dkim.domain, "domain", company, sizeof(company))) != STORE_OK)
		goto fail;
	rc = STORE_ERROR;
	if ((s = sq_prep(st, "UPDATE dkim_keys SET state = ?2, "
	    "published_at = ?3, activated_at = ?4, retire_at = ?5 "
	    "WHERE id = ?1")) == NULL)
		goto fail;
	sq_bind_int(s, 1, k->id);
	sq_bind_text(s, 2, dkim_key_state_name(k->state));
	sq_bind_int(s, 3, k->published_at);
	sq_bind_int(s, 4, k->activated_at);
	sq_bind_int(s, 5, k->retire_at);
	if (old.dkim.state == k->state) {
		if ((rc = sq_done(st, s, "dkim_keys")) == STORE_OK)
			rc = sq_commit(st);
		goto fail;
	}
	rc = sq_apply(st, s, company, "dkim.state", actor, NULL,
	    sq_json(json_pack("{s:s, s:s, s:s, s:s, s:I}", "domain",
	    old.dkim.domain, "selector", old.dkim.selector, "from",
	    dkim_key_state_name(old.dkim.state), "to",
	    dkim_key_state_name(k->state), "retire_at",
	    (json_int_t)k->retire_at)));
fail:
	sqlite3_finalize(s);
	return sq_end(st, rc);
}

static int
sq_domain_check_detail(struct store *st, const char *domain, char **detail,
    int64_t *broken_since)
{
	sqlite3_stmt *s = NULL;
	int rc = STORE_ERROR;

	if ((s = sq_prep(st, "SELECT check_detail, broken_since FROM domains "
	    "WHERE name = ?1")) == NULL)
		goto fail;
	sq_bind_text(s, 1, domain);
	if ((rc = sq_step_one(st, s, "domain", domain, 0)) != STORE_OK)
		goto fail;
	if (sq_col_str(s, 0) == NULL) {
		rc = store_fail(st, STORE_ERROR, "domain %s: malformed row",
		    domain);
		goto fail;
	}
	*detail = xstrdup(sq_col_str(s, 0));
	*broken_since = sqlite3_column_int64(s, 1);
fail:
	sqlite3_finalize(s);
	return rc;
}

/* Like sq_domain_set_auth, audited only when a result changes. */
static int
sq_domain_set_check(struct store *st, const char *domain, bool spf_ok,
    bool dkim_ok, bool dmarc_ok, int64_t checked_at, const char *detail)
{
	sqlite3_stmt *s = NULL;
	struct domain old;
	int64_t broken = 0;
	char *olddetail = NULL;
	int rc;

	if ((rc = sq_begin(st)) != STORE_OK ||
	    (rc = sq_domain_get(st, domain, &old)) != STORE_OK ||
	    (rc = sq_domain_check_detail(st, domain, &olddetail, &broken)) !=
	    STORE_OK)
		goto fail;
	rc = STORE_ERROR;
	if (spf_ok && dkim_ok)
		broken = 0;
	else if (broken == 0 && old.spf_ok && old.dkim_ok)
		broken = checked_at;
	if ((s = sq_prep(st, "UPDATE domains SET spf_ok = ?2, dkim_ok = ?3, "
	    "dmarc_ok = ?4, checked_at = ?5, check_detail = ?6, "
	    "broken_since = ?7 WHERE name = ?1")) == NULL)
		goto fail;
	sq_bind_text(s, 1, domain);
	sq_bind_int(s, 2, spf_ok);
	sq_bind_int(s, 3, dkim_ok);
	sq_bind_int(s, 4, dmarc_ok);
	sq_bind_int(s, 5, checked_at);
	sq_bind_text(s, 6, detail);
	sq_bind_int(s, 7, broken);
	if (old.checked_at != 0 && old.spf_ok == spf_ok &&
	    old.dkim_ok == dkim_ok && old.dmarc_ok == dmarc_ok) {
		if ((rc = sq_done(st, s, "domains")) == STORE_OK)
			rc = sq_commit(st);
		goto fail;
	}
	rc = sq_apply(st, s, old.company, "domain.check", SQ_SYSTEM_ACTOR,
	    NULL, sq_json(json_pack("{s:s, s:b, s:b, s:b, s:I}", "domain",
	    domain, "spf_ok", spf_ok, "dkim_ok", dkim_ok, "dmarc_ok", dmarc_ok,
	    "checked_at", (json_int_t)checked_at)));
fail:
	free(olddetail);
	sqlite3_finalize(s);
	return sq_end(st, rc);
}

const struct store_ops store_sqlite_ops = {
	.scheme = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.version = sq_version,
	.read_begin = sq_read_begin,
	.read_end = sq_read_end,
	.meter_add = sq_meter_add,
	.usage_list = sq_usage_list,
	.route_history = sq_route_history,
	.invoice_close = sq_invoice_close,
	.month_closed = sq_month_closed,
	.invoice_list = sq_invoice_list,
	.durable = sq_durable,
	.company_add = sq_company_add,
	.company_get = sq_company_get,
	.company_list = sq_company_list,
	.company_set_route = sq_company_set_route,
	.company_set_status = sq_company_set_status,
	.domain_add = sq_domain_add,
	.domain_remove = sq_domain_remove,
	.domain_get = sq_domain_get,
	.domain_list = sq_domain_list,
	.domain_set_auth = sq_domain_set_auth,
	.user_add = sq_user_add,
	.user_get = sq_user_get,
	.user_list = sq_user_list,
	.user_set_smtp = sq_user_set_smtp,
	.user_mass_update = sq_user_mass_update,
	.credential_add = sq_credential_add,
	.credential_revoke = sq_credential_revoke,
	.credential_find = sq_credential_find,
	.credential_list = sq_credential_list,
	.audit_list = sq_audit_list,
	.dkim_add = sq_dkim_add,
	.dkim_list = sq_dkim_list,
	.dkim_update = sq_dkim_update,
	.domain_set_check = sq_domain_set_check,
	.domain_check_detail = sq_domain_check_detail,
};

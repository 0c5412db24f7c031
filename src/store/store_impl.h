/*
 * store_impl.h - what store.c shares with the backends (store_sqlite.c;
 * a PostgreSQL backend later): the handle, the table of operations a
 * backend implements, error reporting, sealing and opening secrets with
 * the store's key, and the checks and audit details every backend needs
 * in the same form.
 *
 * store.c validates and normalises every argument before it reaches a
 * backend: ids, names and addresses are well formed, domains lower case,
 * a port is set wherever a host is, settings of a route other than
 * own-server are empty, actor and reference are bounded text.  A backend
 * only has to store, look up and audit.
 *
 * Must never: be included outside src/store/; hand a backend a secret it
 * could store without sealing it.
 */
#ifndef OMBUD_STORE_IMPL_H
#define OMBUD_STORE_IMPL_H

#include <stdarg.h>

#include <jansson.h>

#include "common/secretbox.h"
#include "common/util.h"
#include "store/store.h"

#define STORE_ERR_MAX	512

struct store_ops {
	const char	*scheme;		/* "sqlite" of "sqlite:PATH" */
	/* Set st->be.  0, or -1 with a reason in err. */
	int		 (*open)(struct store *st, const char *arg, char *err,
			    size_t errlen);
	void		 (*close)(struct store *st);
	uint64_t	 (*version)(struct store *st);
	int		 (*read_begin)(struct store *st);
	void		 (*read_end)(struct store *st);
	/* metering and billing */
	int (*meter_add)(struct store *st, const struct meter_rec *r,
	    size_t n, size_t *added, size_t *late);
	int (*usage_list)(struct store *st, const char *company,
	    int32_t from, int32_t to, bool gmail, store_usage_fn fn,
	    void *arg);
	int (*route_history)(struct store *st, const char *company,
	    store_route_fn fn, void *arg);
	int (*invoice_close)(struct store *st, int32_t month,
	    const struct invoice *lines, size_t n);
	int (*month_closed)(struct store *st, int32_t month,
	    int64_t *closed_at);
	int (*invoice_list)(struct store *st, int32_t month,
	    const char *company, store_invoice_fn fn, void *arg);
	int (*durable)(struct store *st);

	int (*company_add)(struct store *st, const struct company *c,
	    const char *actor, const char *reference);
	int (*company_get)(struct store *st, const char *id,
	    struct company *out);
	int (*company_list)(struct store *st, store_company_fn fn, void *arg);
	int (*company_set_route)(struct store *st, const char *id,
	    enum route_kind route, const struct smtp_settings *own,
	    const char *actor, const char *reference);
	int (*company_set_status)(struct store *st, const char *id,
	    enum company_status status, const char *actor,
	    const char *reference);

	int (*domain_add)(struct store *st, const char *domain,
	    const char *company, const char *actor);
	int (*domain_remove)(struct store *st, const char *domain,
	    const char *actor);
	int (*domain_get)(struct store *st, const char *domain,
	    struct domain *out);
	int (*domain_list)(struct store *st, const char *company,
	    store_domain_fn fn, void *arg);
	int (*domain_set_auth)(struct store *st, const char *domain,
	    bool spf_ok, bool dkim_ok, int64_t checked_at);

	int (*user_add)(struct store *st, struct user *u, const char *actor);
	int (*user_get)(struct store *st, int64_t id, struct user *out);
	int (*user_list)(struct store *st, const char *company,
	    store_user_fn fn, void *arg);
	int (*user_set_smtp)(struct store *st, int64_t id,
	    const struct user *u, const char *actor);
	int (*user_mass_update)(struct store *st, const struct user_filter *f,
	    const struct user_update *upd, bool dry_run,
	    void (*fn)(void *arg, const struct user *before,
		const struct user *after),
	    void (*missing_fn)(void *arg, const char *email), void *arg,
	    size_t *matched, const char *actor);

	int (*credential_add)(struct store *st, struct credential *c,
	    const char *actor);
	int (*credential_revoke)(struct store *st, const char *username,
	    const char *actor);
	int (*credential_find)(struct store *st, const char *username,
	    struct credential *out);
	int (*credential_list)(struct store *st, const char *company,
	    store_credential_fn fn, void *arg);

	int (*audit_list)(struct store *st, const char *company,
	    store_audit_fn fn, void *arg);

	int (*dkim_add)(struct store *st, struct dkim_keyrec *k,
	    const char *actor);
	int (*dkim_list)(struct store *st, const char *domain,
	    bool with_private, store_dkim_fn fn, void *arg);
	int (*dkim_update)(struct store *st, const struct dkim_keyrec *k,
	    const char *actor);
	int (*domain_set_check)(struct store *st, const char *domain,
	    bool spf_ok, bool dkim_ok, bool dmarc_ok, int64_t checked_at,
	    const char *detail);
	int (*domain_check_detail)(struct store *st, const char *domain,
	    char **detail, int64_t *broken_since);
};

struct store {
	const struct store_ops	*ops;
	void			*be;		/* the backend's handle */
	bool			 has_key;
	unsigned char		 key[SECRETBOX_KEY_BYTES];
	char			 err[STORE_ERR_MAX];
};

extern const struct store_ops store_sqlite_ops;
/* The SQLite connection of a "sqlite:" store (a sqlite3 *), for tests
 * that look at its pragmas; NULL for another backend. */
void *store_sqlite_db(struct store *st);

/* Set the error text; returns rc. */
int store_fail(struct store *st, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Seal secret (a validated string) with the store's key, appending the
 * blob to out.  STORE_ERROR without a key. */
int store_seal(struct store *st, const char *secret, struct buf *out);
/* Open a sealed blob into *out (free_secret).  what names the owner for
 * the message ("company 'acme'").  STORE_ERROR without a key, with the
 * wrong key, or for a blob that is not a sealed string. */
int store_unseal(struct store *st, const void *blob, size_t len,
    const char *what, char **out);
/* The same for a PEM private key (lines; up to STORE_DKIM_PEM_MAX). */
int store_unseal_pem(struct store *st, const void *blob, size_t len,
    const char *what, char **out);

/* The names kept in the database and the audit log. */
const char *store_tls_name(enum route_tls t);
int store_tls_parse(const char *s, enum route_tls *out);
int store_status_parse(const char *s, enum company_status *out);

/*
 * Mass update: after = before with upd applied (before_secret: whether
 * before has a sealed secret; *after_secret the same for after).  A route
 * other than own-server leaves no SMTP settings.  Then the whole new
 * state is checked as store_user_set_smtp would: STORE_INVALID naming the
 * user if it is not consistent.
 */
int store_user_apply(struct store *st, const struct user *before,
    bool before_secret, const struct user_update *upd, struct user *after,
    bool *after_secret);

/* Audit details: the settings without the secret, which is only ever
 * named by one of the words "set", "none" or "unchanged". */
json_t *store_smtp_json(const struct smtp_settings *s,
    const char *secret_word);
/* Add k: v (a validated UTF-8 string) to object o. */
void store_json_str(json_t *o, const char *k, const char *v);

#endif

/*
 * tenant.h - the server's in-memory view of the tenant database: which
 * company a submission credential belongs to, which company owns a
 * sender domain, and how each company's mail leaves.
 *
 * A snapshot is read from the store in one go and never changes; the
 * server checks store_version() every second and, when the database
 * changed (an `ombud company ...` command, another node), loads a new
 * snapshot and swaps it.  Sessions and jobs that hold the old one keep it
 * (reference counted, loop thread only) until they are done, so a lookup
 * never blocks on SQL and never sees half an update.
 *
 * Must never: let a snapshot change under a reader; keep a company's
 * secret longer than the snapshot that holds it (wiped on free).
 */
#ifndef OMBUD_TENANT_H
#define OMBUD_TENANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/dkim.h"
#include "store/store.h"

struct tenants;

/* An active DKIM key of a domain: one per algorithm (dual signing). */
#define TENANT_DKIM_MAX		2
struct tenant_dkim {
	int64_t		 id;			/* in the store */
	char		 selector[STORE_SELECTOR_MAX + 1];
	struct dkim_key	*key;
};

struct tenant_domain {
	char		 name[STORE_HOST_MAX + 1];
	size_t		 company;		/* index in companies */
	bool		 spf_ok, dkim_ok;
	size_t		 ndkim;
	struct tenant_dkim dkim[TENANT_DKIM_MAX];	/* signing keys */
};

struct tenant_cred {
	char		 username[STORE_NAME_MAX + 1];
	char		 hash[256];
	size_t		 company;
};

/* A user whose SMTP settings differ from the company's: found by its
 * from address, which is the envelope sender of its mail. */
struct tenant_user {
	struct user	 u;			/* smtp.secret owned */
	size_t		 company;
};

struct tenants *tenants_load(struct store *st, char *err, size_t errlen);
/* The same, taking the parsed DKIM keys that prev (may be NULL) has
 * instead of parsing their PEM again. */
struct tenants *tenants_load_from(struct store *st,
    const struct tenants *prev, char *err, size_t errlen);
struct tenants *tenants_ref(struct tenants *t);
void tenants_unref(struct tenants *t);

size_t tenants_count(const struct tenants *t);
const struct company *tenants_company(const struct tenants *t,
    const char *id);
/* The domain entry for a domain name (case-insensitive), or NULL. */
const struct tenant_domain *tenants_domain(const struct tenants *t,
    const char *domain);
const struct company *tenants_domain_company(const struct tenants *t,
    const struct tenant_domain *d);
/* A valid submission credential by user name, or NULL. */
const struct tenant_cred *tenants_cred(const struct tenants *t,
    const char *username);
const struct company *tenants_cred_company(const struct tenants *t,
    const struct tenant_cred *c);

/* The user of company co whose from address is addr (case-insensitive)
 * and who has a route of their own, or NULL. */
const struct tenant_user *tenants_user(const struct tenants *t,
    const struct company *co, const char *addr);
const struct tenant_user *tenants_user_by_id(const struct tenants *t,
    int64_t id);

/* The domain of an address (after the last '@'), or NULL. */
const char *tenant_addr_domain(const char *addr);

/*
 * How mail of company co with envelope sender mail_from leaves: the
 * route of the company's user whose from address is mail_from, when that
 * user has a route of their own (*tu gets the user, NULL if none), else
 * the company's choice.  ROUTE_NONE for no company (co NULL: such mail
 * takes the configuration's default_route).  The one decision shared by
 * delivery (scheduler) and metering (billing/meter): never USER_ROUTE_COMPANY.
 */
enum route_kind tenants_route(const struct tenants *t,
    const struct company *co, const char *mail_from,
    const struct tenant_user **tu);
/* platform-relay or platform-smarthost: the platform's own service,
 * which is metered and billed. */
bool route_is_platform(enum route_kind k);

#endif

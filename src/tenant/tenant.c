/*
 * tenant.c - immutable snapshots of the tenant database (see tenant.h).
 *
 * Sorted arrays (companies by id, domains by name with their active DKIM
 * keys, credentials by user name, users by company and from address)
 * searched with bsearch: a lookup costs a few string compares and no
 * lock.  Loaded on the loop thread in one read transaction (one state of
 * the database); with thousands of companies a load takes milliseconds,
 * and DKIM keys the previous snapshot already parsed are shared, not
 * parsed again.
 *
 * Must never: hand out a pointer into a snapshot that was freed (callers
 * hold a reference); keep secrets after the free (wiped).
 */
#include "tenant/tenant.h"
#include "common/log.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct tenants {
	int			 refs;
	struct company		*companies;
	size_t			 ncompanies, ccompanies;
	struct tenant_domain	*domains;
	size_t			 ndomains, cdomains;
	struct tenant_cred	*creds;
	size_t			 ncreds, ccreds;
	struct tenant_user	*users;		/* by (company, from) */
	size_t			 nusers, cusers;
};

static size_t company_index(const struct tenants *t, const char *id);

static void *
grow(void *v, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return v;
	*cap = *cap ? *cap * 2 : 64;
	if (*cap > SIZE_MAX / size)
		fatalx("tenants: too many entries");
	return xrealloc(v, *cap * size);
}

static int
load_company(void *arg, const struct company *c)
{
	struct tenants *t = arg;
	struct company *dst;

	t->companies = grow(t->companies, &t->ccompanies, t->ncompanies,
	    sizeof(*t->companies));
	dst = &t->companies[t->ncompanies++];
	*dst = *c;
	/* the secret is the iterator's: take a copy */
	dst->own.secret = c->own.secret ? xstrdup(c->own.secret) : NULL;
	return 0;
}

static int
cmp_company(const void *a, const void *b)
{
	return strcmp(((const struct company *)a)->id,
	    ((const struct company *)b)->id);
}

static int
cmp_domain(const void *a, const void *b)
{
	return strcasecmp(((const struct tenant_domain *)a)->name,
	    ((const struct tenant_domain *)b)->name);
}

static int
cmp_user(const void *a, const void *b)
{
	const struct tenant_user *x = a, *y = b;

	if (x->company != y->company)
		return x->company < y->company ? -1 : 1;
	return strcasecmp(x->u.from_address, y->u.from_address);
}

/* Users with a route of their own and a from address; the others send
 * as their company does and need no entry. */
static int
load_user(void *arg, const struct user *u)
{
	struct tenants *t = arg;
	struct tenant_user *dst;
	size_t ci;

	if (u->route == USER_ROUTE_COMPANY || u->from_address[0] == '\0' ||
	    (ci = company_index(t, u->company)) == SIZE_MAX)
		return 0;
	t->users = grow(t->users, &t->cusers, t->nusers, sizeof(*t->users));
	dst = &t->users[t->nusers++];
	dst->u = *u;
	dst->u.smtp.secret = u->smtp.secret ? xstrdup(u->smtp.secret) : NULL;
	dst->company = ci;
	return 0;
}

static int
cmp_cred(const void *a, const void *b)
{
	return strcmp(((const struct tenant_cred *)a)->username,
	    ((const struct tenant_cred *)b)->username);
}

static size_t
company_index(const struct tenants *t, const char *id)
{
	const struct company *c = tenants_company(t, id);

	return c ? (size_t)(c - t->companies) : SIZE_MAX;
}

static int
load_domain_owned(void *arg, const struct domain *d)
{
	struct tenants *t = arg;
	size_t ci = company_index(t, d->company);
	struct tenant_domain *dst;

	if (ci == SIZE_MAX)
		return 0;	/* the foreign key makes this impossible */
	t->domains = grow(t->domains, &t->cdomains, t->ndomains,
	    sizeof(*t->domains));
	dst = &t->domains[t->ndomains++];
	memset(dst, 0, sizeof(*dst));
	strlcpy_ok(dst->name, d->name, sizeof(dst->name));
	dst->spf_ok = d->spf_ok;
	dst->dkim_ok = d->dkim_ok;
	dst->company = ci;
	return 0;
}

static int
load_cred(void *arg, const struct credential *c)
{
	struct tenants *t = arg;
	struct tenant_cred *dst;
	size_t ci;

	if (c->revoked != 0 || (ci = company_index(t, c->company)) ==
	    SIZE_MAX)
		return 0;
	t->creds = grow(t->creds, &t->ccreds, t->ncreds, sizeof(*t->creds));
	dst = &t->creds[t->ncreds++];
	memset(dst, 0, sizeof(*dst));
	strlcpy_ok(dst->username, c->username, sizeof(dst->username));
	strlcpy_ok(dst->hash, c->hash, sizeof(dst->hash));
	dst->company = ci;
	return 0;
}

/* The active keys, as parsed keys on their domains. */
struct load_dkim_ctx {
	struct tenants		*t;
	const struct tenants	*prev;
};

/* The parsed key with this id in prev, or NULL. */
static const struct dkim_key *
prev_dkim_key(const struct tenants *prev, const char *domain, int64_t id)
{
	const struct tenant_domain *pd = tenants_domain(prev, domain);

	for (size_t i = 0; pd != NULL && i < pd->ndkim; i++)
		if (pd->dkim[i].id == id)
			return pd->dkim[i].key;
	return NULL;
}

static int
load_dkim(void *arg, const struct dkim_keyrec *k)
{
	struct load_dkim_ctx *c = arg;
	struct tenant_domain *d;
	const struct dkim_key *old;
	struct dkim_key *key;
	struct tenant_dkim *slot = NULL;
	char err[128];

	if (k->state != DKIMKEY_ACTIVE || k->private_pem == NULL ||
	    (d = (struct tenant_domain *)tenants_domain(c->t, k->domain)) ==
	    NULL)
		return 0;
	if ((old = prev_dkim_key(c->prev, k->domain, k->id)) != NULL)
		key = dkim_key_dup(old);
	else if ((key = dkim_key_load_pem(k->private_pem,
	    strlen(k->private_pem), err, sizeof(err))) == NULL) {
		log_event(LOG_LVL_WARN, "dkim.key_unusable", "domain",
		    k->domain, "selector", k->selector, "error", err, NULL);
		return 0;
	}
	/* one per algorithm; the newest (keys come by id) wins */
	for (size_t i = 0; i < d->ndkim; i++)
		if (dkim_key_type(d->dkim[i].key) == dkim_key_type(key))
			slot = &d->dkim[i];
	if (slot != NULL)
		dkim_key_free(slot->key);
	else if (d->ndkim < TENANT_DKIM_MAX)
		slot = &d->dkim[d->ndkim++];
	else {
		dkim_key_free(key);
		return 0;
	}
	slot->id = k->id;
	strlcpy_ok(slot->selector, k->selector, sizeof(slot->selector));
	slot->key = key;
	return 0;
}

struct tenants *
tenants_load(struct store *st, char *err, size_t errlen)
{
	return tenants_load_from(st, NULL, err, errlen);
}

struct tenants *
tenants_load_from(struct store *st, const struct tenants *prev, char *err,
    size_t errlen)
{
	struct tenants *t = xcalloc(1, sizeof(*t));
	struct load_dkim_ctx dc = { .t = t, .prev = prev };

	t->refs = 1;
	/* one state of the database for all the lists */
	if (store_read_begin(st) != STORE_OK ||
	    store_company_list(st, load_company, t) != STORE_OK)
		goto fail;
	if (t->ncompanies > 0)
		qsort(t->companies, t->ncompanies, sizeof(*t->companies),
		    cmp_company);
	if (store_domain_list(st, NULL, load_domain_owned, t) != STORE_OK)
		goto fail;
	if (t->ndomains > 0)
		qsort(t->domains, t->ndomains, sizeof(*t->domains),
		    cmp_domain);
	if (store_dkim_list(st, NULL, true, load_dkim, &dc) != STORE_OK)
		goto fail;
	if (store_credential_list(st, NULL, load_cred, t) != STORE_OK)
		goto fail;
	if (t->ncreds > 0)
		qsort(t->creds, t->ncreds, sizeof(*t->creds), cmp_cred);
	if (store_user_list(st, NULL, load_user, t) != STORE_OK)
		goto fail;
	if (t->nusers > 0)
		qsort(t->users, t->nusers, sizeof(*t->users), cmp_user);
	store_read_end(st);
	return t;
fail:
	snprintf(err, errlen, "%s", store_error(st));
	store_read_end(st);
	tenants_unref(t);
	return NULL;
}

struct tenants *
tenants_ref(struct tenants *t)
{
	if (t != NULL)
		t->refs++;
	return t;
}

void
tenants_unref(struct tenants *t)
{
	if (t == NULL || --t->refs > 0)
		return;
	for (size_t i = 0; i < t->ncompanies; i++)
		smtp_settings_clear(&t->companies[i].own);
	free(t->companies);
	for (size_t i = 0; i < t->nusers; i++)
		smtp_settings_clear(&t->users[i].u.smtp);
	free(t->users);
	for (size_t i = 0; i < t->ndomains; i++)
		for (size_t j = 0; j < t->domains[i].ndkim; j++)
			dkim_key_free(t->domains[i].dkim[j].key);
	free(t->domains);
	if (t->creds != NULL)
		explicit_bzero(t->creds, t->ncreds * sizeof(*t->creds));
	free(t->creds);
	free(t);
}

size_t
tenants_count(const struct tenants *t)
{
	return t ? t->ncompanies : 0;
}

const struct company *
tenants_company(const struct tenants *t, const char *id)
{
	struct company key;

	if (t == NULL || t->ncompanies == 0 || id == NULL ||
	    !strlcpy_ok(key.id, id, sizeof(key.id)))
		return NULL;
	return bsearch(&key, t->companies, t->ncompanies,
	    sizeof(*t->companies), cmp_company);
}

const struct tenant_domain *
tenants_domain(const struct tenants *t, const char *domain)
{
	struct tenant_domain key;

	if (t == NULL || t->ndomains == 0 || domain == NULL ||
	    !strlcpy_ok(key.name, domain, sizeof(key.name)))
		return NULL;
	return bsearch(&key, t->domains, t->ndomains, sizeof(*t->domains),
	    cmp_domain);
}

const struct company *
tenants_domain_company(const struct tenants *t,
    const struct tenant_domain *d)
{
	return d ? &t->companies[d->company] : NULL;
}

const struct tenant_cred *
tenants_cred(const struct tenants *t, const char *username)
{
	struct tenant_cred key;

	if (t == NULL || t->ncreds == 0 || username == NULL ||
	    !strlcpy_ok(key.username, username, sizeof(key.username)))
		return NULL;
	return bsearch(&key, t->creds, t->ncreds, sizeof(*t->creds),
	    cmp_cred);
}

const struct company *
tenants_cred_company(const struct tenants *t, const struct tenant_cred *c)
{
	return c ? &t->companies[c->company] : NULL;
}

const struct tenant_user *
tenants_user(const struct tenants *t, const struct company *co,
    const char *addr)
{
	struct tenant_user key;

	if (t == NULL || t->nusers == 0 || co == NULL || addr == NULL ||
	    !strlcpy_ok(key.u.from_address, addr,
	    sizeof(key.u.from_address)))
		return NULL;
	key.company = (size_t)(co - t->companies);
	return bsearch(&key, t->users, t->nusers, sizeof(*t->users),
	    cmp_user);
}

const struct tenant_user *
tenants_user_by_id(const struct tenants *t, int64_t id)
{
	/* rare (a connection being set up): a scan is fine */
	for (size_t i = 0; t != NULL && i < t->nusers; i++)
		if (t->users[i].u.id == id)
			return &t->users[i];
	return NULL;
}

const char *
tenant_addr_domain(const char *addr)
{
	const char *at = addr ? strrchr(addr, '@') : NULL;

	return at && at[1] ? at + 1 : NULL;
}

enum route_kind
tenants_route(const struct tenants *t, const struct company *co,
    const char *mail_from, const struct tenant_user **tu)
{
	const struct tenant_user *u;

	*tu = NULL;
	if (co == NULL)
		return ROUTE_NONE;
	u = tenants_user(t, co, mail_from);
	*tu = u;
	return u && u->u.route != USER_ROUTE_COMPANY ? u->u.route :
	    co->route;
}

bool
route_is_platform(enum route_kind k)
{
	return k == ROUTE_PLATFORM_RELAY || k == ROUTE_PLATFORM_SMARTHOST;
}

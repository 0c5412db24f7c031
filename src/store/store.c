/*
 * store.c - the tenant database's front: chooses the backend by the
 * scheme of the URI (a table of struct store_ops), loads the secret key,
 * and checks and normalises every argument before a backend sees it, so
 * that every backend stores the same well-formed data.  Also the names of
 * the enums and the helpers shared by backends (store_impl.h).
 *
 * Must never: pass a backend a value it did not check (bounds, syntax, no
 * control characters, valid UTF-8 so that audit details are always valid
 * JSON); echo an invalid value in an error text (it may hold control
 * characters or a secret); keep the key in memory it frees unwiped.
 */
#include "store/store_impl.h"
#include "common/log.h"
#include "common/secretbox.h"
#include "common/util.h"
#include "table/credentials.h"

#include <arpa/inet.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define STORE_URI_MAX		4096
#define STORE_EMAIL_LOCAL_MAX	64
#define STORE_DOMAIN_MAX	253
#define STORE_LABEL_MAX		63
#define STORE_DEFAULT_PORT	587

static const struct store_ops *const store_backends[] = {
	&store_sqlite_ops,
};

static const char *const store_route_names[] = {
	[ROUTE_NONE] = "none",
	[ROUTE_OWN_SERVER] = "own-server",
	[ROUTE_PLATFORM_RELAY] = "platform-relay",
	[ROUTE_PLATFORM_SMARTHOST] = "platform-smarthost",
	[USER_ROUTE_COMPANY] = "company",
};
_Static_assert(nitems(store_route_names) == USER_ROUTE_COMPANY + 1,
    "store_route_names");

static const char *const store_status_names[] = {
	[COMPANY_ACTIVE] = "active",
	[COMPANY_SUSPENDED] = "suspended",
};

static const char *const store_tls_names[] = {
	[RTLS_NONE] = "none",
	[RTLS_OPPORTUNISTIC] = "opportunistic",
	[RTLS_REQUIRED] = "required",
	[RTLS_VERIFY] = "verify",
	[RTLS_IMPLICIT] = "implicit",
};
_Static_assert(nitems(store_tls_names) == RTLS_IMPLICIT + 1,
    "store_tls_names");

/* The index of s in names[n], or -1. */
static int
store_parse(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; s != NULL && i < n; i++)
		if (strcmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

#define STORE_NAME(names, v) \
	((unsigned)(v) < nitems(names) ? (names)[(v)] : "?")

const char *
route_kind_name(enum route_kind k)
{
	return STORE_NAME(store_route_names, k);
}

const char *
company_status_name(enum company_status s)
{
	return STORE_NAME(store_status_names, s);
}

const char *
store_tls_name(enum route_tls t)
{
	return STORE_NAME(store_tls_names, t);
}

int
route_kind_parse(const char *s, enum route_kind *out)
{
	int i = store_parse(store_route_names, nitems(store_route_names), s);

	*out = i < 0 ? *out : (enum route_kind)i;
	return i < 0 ? -1 : 0;
}

int
store_status_parse(const char *s, enum company_status *out)
{
	int i = store_parse(store_status_names, nitems(store_status_names), s);

	*out = i < 0 ? *out : (enum company_status)i;
	return i < 0 ? -1 : 0;
}

int
store_tls_parse(const char *s, enum route_tls *out)
{
	int i = store_parse(store_tls_names, nitems(store_tls_names), s);

	*out = i < 0 ? *out : (enum route_tls)i;
	return i < 0 ? -1 : 0;
}

void
smtp_settings_clear(struct smtp_settings *s)
{
	if (s == NULL)
		return;
	free_secret(s->secret);
	s->secret = NULL;
}

void
audit_entry_clear(struct audit_entry *a)
{
	if (a == NULL)
		return;
	free(a->detail);
	a->detail = NULL;
}

int
store_fail(struct store *st, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->err, sizeof(st->err), fmt, ap);
	va_end(ap);
	return rc;
}

int
store_read_begin(struct store *st)
{
	return st->ops->read_begin(st);
}

void
store_read_end(struct store *st)
{
	st->ops->read_end(st);
}

const char *
store_error(const struct store *st)
{
	if (st == NULL)
		return "no store";
	return st->err[0] ? st->err : "no error";
}

/* ---- checks ------------------------------------------------------------ */

/*
 * Valid UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF) without control characters (C0, DEL, C1).
 */
static bool
store_utf8_ok(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, len;
	uint32_t cp;

	while (i < n) {
		if (s[i] < 0x80) {
			if (s[i] < 0x20 || s[i] == 0x7f)
				return false;
			i++;
			continue;
		}
		if (s[i] >= 0xc2 && s[i] <= 0xdf) {
			len = 2;
			cp = s[i] & 0x1f;
		} else if (s[i] >= 0xe0 && s[i] <= 0xef) {
			len = 3;
			cp = s[i] & 0x0f;
		} else if (s[i] >= 0xf0 && s[i] <= 0xf4) {
			len = 4;
			cp = s[i] & 0x07;
		} else
			return false;
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp <= 0x9f || (len == 3 && cp < 0x800) ||
		    (cp >= 0xd800 && cp <= 0xdfff) ||
		    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		i += len;
	}
	return true;
}

/* 1..max bytes (0..max with empty_ok) of text. */
static bool
store_text_ok(const char *s, size_t max, bool empty_ok)
{
	size_t n;

	if (s == NULL)
		return false;
	n = strnlen(s, max + 1);
	if (n > max || (n == 0 && !empty_ok))
		return false;
	return store_utf8_ok(s, n);
}

/* A char array field of a caller's struct: terminated inside the array
 * and then text as above. */
#define store_field_ok(f, empty_ok) \
	(memchr((f), '\0', sizeof(f)) != NULL && \
	 store_text_ok((f), sizeof(f) - 1, (empty_ok)))

/* A company id: [a-z0-9][a-z0-9-]{0,62}. */
static bool
store_id_ok(const char *id)
{
	size_t n;

	if (id == NULL || (n = strnlen(id, STORE_ID_MAX + 1)) == 0 ||
	    n > STORE_ID_MAX || id[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') ||
		    (id[i] >= '0' && id[i] <= '9') || id[i] == '-'))
			return false;
	return true;
}

static int
store_check_id(struct store *st, const char *what, const char *id)
{
	if (!store_id_ok(id))
		return store_fail(st, STORE_INVALID, "%s: a company id is 1 "
		    "to %d of a-z, 0-9 and '-', not starting with '-'", what,
		    STORE_ID_MAX);
	return STORE_OK;
}

/* A list's company filter: NULL (all) or a company id. */
static int
store_check_filter(struct store *st, const char *company)
{
	return company == NULL ? STORE_OK :
	    store_check_id(st, "company filter", company);
}

static bool
store_is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

/* A sender domain: host name syntax, at least two labels, the last not
 * numeric (so no IP address).  Lower-cased into out. */
static int
store_domain_norm(struct store *st, const char *in, char *out, size_t outsz)
{
	size_t n, nlabels;
	bool numeric = false;

	if (in == NULL || (n = strnlen(in, STORE_DOMAIN_MAX + 1)) >=
	    outsz || !hostname_syntax_ok(in, n, &nlabels, &numeric) ||
	    nlabels < 2 || numeric)
		return store_fail(st, STORE_INVALID, "domain: not a domain "
		    "name (labels of letters, digits and '-', at most %d "
		    "bytes, like example.com)", STORE_DOMAIN_MAX);
	for (size_t i = 0; i <= n; i++)
		out[i] = (in[i] >= 'A' && in[i] <= 'Z') ? (char)(in[i] + 32) :
		    in[i];
	return STORE_OK;
}

/* An SMTP server: a host name or an IPv4/IPv6 address. */
static bool
store_host_ok(const char *s)
{
	unsigned char addr[16];
	size_t n = strnlen(s, STORE_HOST_MAX + 1), nlabels;
	bool numeric = false;

	if (n == 0 || n > STORE_HOST_MAX)
		return false;
	if (inet_pton(AF_INET, s, addr) == 1 ||
	    inet_pton(AF_INET6, s, addr) == 1)
		return true;
	return hostname_syntax_ok(s, n, &nlabels, &numeric) && !numeric;
}

/* local@domain: one '@', a local part of 1..64 bytes of text without
 * space or any of "<>()[],;:\\\"@", a domain in host name syntax. */
static bool
store_email_ok(const char *s)
{
	const char *at;
	size_t n, local, nlabels;
	bool numeric = false;

	if (s == NULL || !store_text_ok(s, STORE_NAME_MAX, false))
		return false;
	n = strlen(s);
	if ((at = strchr(s, '@')) == NULL || strchr(at + 1, '@') != NULL)
		return false;
	local = (size_t)(at - s);
	if (local == 0 || local > STORE_EMAIL_LOCAL_MAX)
		return false;
	for (size_t i = 0; i < local; i++)
		if (s[i] == ' ' || strchr("<>()[],;:\\\"", s[i]) != NULL)
			return false;
	return hostname_syntax_ok(at + 1, n - local - 1, &nlabels, &numeric) &&
	    !numeric;
}

static bool
store_url_ok(const char *s)
{
	size_t skip;

	if (!store_text_ok(s, STORE_URL_MAX, false) || strchr(s, ' '))
		return false;
	if (strncmp(s, "https://", 8) == 0)
		skip = 8;
	else if (strncmp(s, "http://", 7) == 0)
		skip = 7;
	else
		return false;
	return s[skip] != '\0' && s[skip] != '/';
}

/* A secret: 1..STORE_SECRET_MAX bytes, no control character (it need
 * not be UTF-8: it never goes into JSON). */
static bool
store_secret_ok(const char *s)
{
	size_t n = strnlen(s, STORE_SECRET_MAX + 1);

	if (n == 0 || n > STORE_SECRET_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static int
store_check_actor(struct store *st, const char *actor, const char *reference)
{
	if (!store_text_ok(actor, STORE_ACTOR_MAX, false))
		return store_fail(st, STORE_INVALID, "actor: 1 to %d bytes of "
		    "text without control characters", STORE_ACTOR_MAX);
	if (reference != NULL && !store_text_ok(reference, STORE_REF_MAX,
	    true))
		return store_fail(st, STORE_INVALID, "reference: at most %d "
		    "bytes of text without control characters",
		    STORE_REF_MAX);
	return STORE_OK;
}

static bool
store_smtp_empty(const struct smtp_settings *s)
{
	return s->host[0] == '\0' && s->port == 0 &&
	    s->auth_user[0] == '\0' && s->secret == NULL &&
	    s->xoauth2_token_url[0] == '\0' &&
	    s->xoauth2_client_id[0] == '\0' && s->xoauth2_scope[0] == '\0';
}

/* Each field of s on its own (bounds and syntax; the secret only if
 * present). */
static int
store_check_smtp_fields(struct store *st, const char *what,
    const struct smtp_settings *s)
{
	if (!store_field_ok(s->host, true) ||
	    (s->host[0] != '\0' && !store_host_ok(s->host)))
		return store_fail(st, STORE_INVALID, "%s: host: not a host "
		    "name or IP address", what);
	if ((unsigned)s->tls > RTLS_IMPLICIT)
		return store_fail(st, STORE_INVALID, "%s: tls: not one of "
		    "none, opportunistic, required, verify, implicit", what);
	if (!store_field_ok(s->auth_user, true))
		return store_fail(st, STORE_INVALID, "%s: auth user: at most "
		    "%d bytes of text", what, STORE_NAME_MAX);
	if (s->secret != NULL && !store_secret_ok(s->secret))
		return store_fail(st, STORE_INVALID, "%s: secret: 1 to %d "
		    "bytes without control characters", what,
		    STORE_SECRET_MAX);
	if (!store_field_ok(s->xoauth2_token_url, true) ||
	    (s->xoauth2_token_url[0] != '\0' &&
	    !store_url_ok(s->xoauth2_token_url)))
		return store_fail(st, STORE_INVALID, "%s: XOAUTH2 token URL: "
		    "an http:// or https:// URL of at most %d bytes", what,
		    STORE_URL_MAX);
	if (!store_field_ok(s->xoauth2_client_id, true) ||
	    !store_field_ok(s->xoauth2_scope, true))
		return store_fail(st, STORE_INVALID, "%s: XOAUTH2 client id "
		    "and scope: at most %d bytes of text", what,
		    STORE_NAME_MAX);
	return STORE_OK;
}

/*
 * The settings as a whole, for route (has_secret: whether a secret goes
 * with them, which may be one already sealed in the database).
 */
static int
store_check_smtp(struct store *st, const char *what, enum route_kind route,
    const struct smtp_settings *s, bool has_secret)
{
	if (route != ROUTE_OWN_SERVER) {
		if (!store_smtp_empty(s) || has_secret)
			return store_fail(st, STORE_INVALID, "%s: SMTP "
			    "settings go only with route own-server", what);
		return STORE_OK;
	}
	if (s->host[0] == '\0')
		return store_fail(st, STORE_INVALID, "%s: route own-server "
		    "needs a host", what);
	if (s->port == 0)
		return store_fail(st, STORE_INVALID, "%s: port: 1 to 65535",
		    what);
	if (s->auth_user[0] != '\0' && !has_secret)
		return store_fail(st, STORE_INVALID, "%s: an auth user needs "
		    "a password or XOAUTH2 client secret", what);
	if (s->auth_user[0] == '\0' && has_secret)
		return store_fail(st, STORE_INVALID, "%s: a secret needs an "
		    "auth user", what);
	if (s->xoauth2_token_url[0] != '\0' &&
	    s->xoauth2_client_id[0] == '\0')
		return store_fail(st, STORE_INVALID, "%s: XOAUTH2 needs a "
		    "client id", what);
	if (s->xoauth2_token_url[0] == '\0' &&
	    (s->xoauth2_client_id[0] != '\0' || s->xoauth2_scope[0] != '\0'))
		return store_fail(st, STORE_INVALID, "%s: XOAUTH2 client id "
		    "and scope need a token URL", what);
	return STORE_OK;
}

/* Check settings given by a caller for route and return them normalised
 * in out (port 587 by default). */
static int
store_norm_smtp(struct store *st, const char *what, enum route_kind route,
    const struct smtp_settings *in, struct smtp_settings *out)
{
	int rc;

	if ((rc = store_check_smtp_fields(st, what, in)) != STORE_OK)
		return rc;
	*out = *in;
	if (route == ROUTE_OWN_SERVER && out->port == 0)
		out->port = STORE_DEFAULT_PORT;
	return store_check_smtp(st, what, route, out, out->secret != NULL);
}

/* route, from_address and smtp of a user (USER_ROUTE_COMPANY for
 * ROUTE_NONE), normalised into out. */
static int
store_norm_user_smtp(struct store *st, const struct user *in,
    struct user *out)
{
	if ((unsigned)in->route > USER_ROUTE_COMPANY)
		return store_fail(st, STORE_INVALID, "user: route: not one of "
		    "own-server, platform-relay, platform-smarthost, "
		    "company");
	out->route = in->route == ROUTE_NONE ? USER_ROUTE_COMPANY :
	    in->route;
	if (!store_field_ok(in->from_address, true) ||
	    (in->from_address[0] != '\0' &&
	    !store_email_ok(in->from_address)))
		return store_fail(st, STORE_INVALID, "user: from address: "
		    "not an address");
	memcpy(out->from_address, in->from_address,
	    sizeof(out->from_address));
	return store_norm_smtp(st, "user", out->route, &in->smtp, &out->smtp);
}

int
store_user_apply(struct store *st, const struct user *before,
    bool before_secret, const struct user_update *upd, struct user *after,
    bool *after_secret)
{
	const unsigned smtp_bits = USER_SET_HOST | USER_SET_PORT |
	    USER_SET_TLS | USER_SET_AUTH_USER | USER_SET_SECRET;
	char what[STORE_NAME_MAX + 16];
	int rc;

	*after = *before;
	after->smtp.secret = NULL;
	*after_secret = before_secret;
	if (upd->set & USER_SET_ROUTE)
		after->route = upd->route;
	if (upd->set & USER_SET_FROM)
		strlcpy_ok(after->from_address, upd->from_address,
		    sizeof(after->from_address));
	if (upd->set & USER_SET_HOST)
		memcpy(after->smtp.host, upd->smtp.host,
		    sizeof(after->smtp.host));
	if (upd->set & USER_SET_PORT)
		after->smtp.port = upd->smtp.port;
	if (upd->set & USER_SET_TLS)
		after->smtp.tls = upd->smtp.tls;
	if (upd->set & USER_SET_AUTH_USER)
		memcpy(after->smtp.auth_user, upd->smtp.auth_user,
		    sizeof(after->smtp.auth_user));
	if (upd->set & USER_SET_SECRET)
		*after_secret = upd->smtp.secret != NULL;
	snprintf(what, sizeof(what), "user %s", before->email);
	if (after->route != ROUTE_OWN_SERVER) {
		if (upd->set & smtp_bits)
			return store_fail(st, STORE_INVALID, "%s: SMTP "
			    "settings go only with route own-server", what);
		memset(&after->smtp, 0, sizeof(after->smtp));
		*after_secret = false;
	} else if (after->smtp.port == 0)
		after->smtp.port = STORE_DEFAULT_PORT;
	if ((rc = store_check_smtp(st, what, after->route, &after->smtp,
	    *after_secret)) != STORE_OK)
		return rc;
	return STORE_OK;
}

/* ---- audit helpers ----------------------------------------------------- */

void
store_json_str(json_t *o, const char *k, const char *v)
{
	json_t *s = json_string(v);

	/* Every string reaching here was checked to be UTF-8. */
	if (s == NULL || json_object_set_new(o, k, s) != 0)
		fatalx("store: audit detail: '%s' is not UTF-8", k);
}

json_t *
store_smtp_json(const struct smtp_settings *s, const char *secret_word)
{
	json_t *o = json_object();

	if (o == NULL)
		fatalx("store: out of memory");
	store_json_str(o, "host", s->host);
	json_object_set_new(o, "port", json_integer(s->port));
	store_json_str(o, "tls", store_tls_name(s->tls));
	store_json_str(o, "auth_user", s->auth_user);
	if (s->xoauth2_token_url[0] != '\0') {
		store_json_str(o, "xoauth2_token_url", s->xoauth2_token_url);
		store_json_str(o, "xoauth2_client_id", s->xoauth2_client_id);
		store_json_str(o, "xoauth2_scope", s->xoauth2_scope);
	}
	store_json_str(o, "secret", secret_word);
	return o;
}

/* ---- secrets ----------------------------------------------------------- */

int
store_seal(struct store *st, const char *secret, struct buf *out)
{
	if (!st->has_key)
		return store_fail(st, STORE_ERROR, "a secret cannot be stored: "
		    "the store was opened without secret_key_file");
	secretbox_seal(st->key, secret, strlen(secret), out);
	return STORE_OK;
}

/* A private key in PEM: printable ASCII lines, bounded. */
static bool
store_pem_ok(const char *s)
{
	size_t n = strnlen(s, STORE_DKIM_PEM_MAX + 1);

	if (n == 0 || n > STORE_DKIM_PEM_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((s[i] < 0x20 || s[i] > 0x7e) && s[i] != '\n')
			return false;
	return true;
}

static int store_unseal_as(struct store *st, const void *blob, size_t len,
    const char *what, bool (*ok)(const char *), char **out);

int
store_unseal(struct store *st, const void *blob, size_t len,
    const char *what, char **out)
{
	return store_unseal_as(st, blob, len, what, store_secret_ok, out);
}

int
store_unseal_pem(struct store *st, const void *blob, size_t len,
    const char *what, char **out)
{
	return store_unseal_as(st, blob, len, what, store_pem_ok, out);
}

static int
store_unseal_as(struct store *st, const void *blob, size_t len,
    const char *what, bool (*ok)(const char *), char **out)
{
	size_t n = 0;
	char *pt;

	*out = NULL;
	if (!st->has_key)
		return store_fail(st, STORE_ERROR, "%s: a secret is stored but "
		    "the store was opened without secret_key_file", what);
	if ((pt = secretbox_open(st->key, blob, len, &n)) == NULL)
		return store_fail(st, STORE_ERROR, "%s: the stored secret "
		    "cannot be decrypted (another secret_key_file, or the "
		    "database was altered)", what);
	if (strlen(pt) != n || !ok(pt)) {
		sodium_memzero(pt, n);
		free(pt);
		return store_fail(st, STORE_ERROR, "%s: the stored secret is "
		    "malformed", what);
	}
	*out = pt;
	return STORE_OK;
}

/* ---- open, close ------------------------------------------------------- */

struct store *
store_open(const char *uri, const char *key_file, char *err, size_t errlen)
{
	const struct store_ops *ops = NULL;
	struct store *st = NULL;
	const char *colon;
	char known[128] = "";
	size_t n;

	if (uri == NULL || strnlen(uri, STORE_URI_MAX + 1) > STORE_URI_MAX ||
	    (colon = strchr(uri, ':')) == NULL) {
		snprintf(err, errlen, "store: expected SCHEME:ARGUMENT, such "
		    "as sqlite:/var/lib/ombud/ombud.db");
		goto fail;
	}
	n = (size_t)(colon - uri);
	for (size_t i = 0; i < nitems(store_backends); i++) {
		if (strlen(store_backends[i]->scheme) == n &&
		    strncmp(store_backends[i]->scheme, uri, n) == 0)
			ops = store_backends[i];
		snprintf(known + strlen(known), sizeof(known) - strlen(known),
		    "%s%s:", i ? ", " : "", store_backends[i]->scheme);
	}
	if (ops == NULL) {
		snprintf(err, errlen, "store: unknown scheme '%.*s' (known: "
		    "%s)", (int)(n < 32 ? n : 32), uri, known);
		goto fail;
	}
	st = xcalloc(1, sizeof(*st));
	st->ops = ops;
	if (key_file != NULL) {
		if (secretbox_key_load(key_file, st->key, err, errlen) != 0)
			goto fail;
		st->has_key = true;
	}
	if (ops->open(st, colon + 1, err, errlen) != 0)
		goto fail;
	return st;
fail:
	if (st != NULL) {
		secretbox_key_wipe(st->key);
		free(st);
	}
	return NULL;
}

void
store_close(struct store *st)
{
	if (st == NULL)
		return;
	st->ops->close(st);
	secretbox_key_wipe(st->key);
	free(st);
}

uint64_t
store_version(struct store *st)
{
	return st->ops->version(st);
}

/* ---- metering and billing ---------------------------------------------- */

/* YYYYMMDD / YYYYMM with a real month and day; callers compute them, so
 * a bad one is a bug caught before SQL. */
static bool
store_day_ok(int32_t day)
{
	return day >= 19700101 && day <= 99991231 && day / 100 % 100 >= 1 &&
	    day / 100 % 100 <= 12 && day % 100 >= 1 && day % 100 <= 31;
}

static bool
store_month_ok(int32_t month)
{
	return store_day_ok(month * 100 + 1);
}

int
store_meter_add(struct store *st, const struct meter_rec *r, size_t n,
    size_t *added, size_t *late)
{
	*added = *late = 0;
	for (size_t i = 0; i < n; i++)
		if (r[i].qid[0] == '\0' || !store_id_ok(r[i].company) ||
		    !store_day_ok(r[i].day) || r[i].gmail > r[i].emails)
			return store_fail(st, STORE_INVALID, "meter record "
			    "%zu (%s) is malformed", i, r[i].qid);
	return n == 0 ? STORE_OK : st->ops->meter_add(st, r, n, added, late);
}

int
store_usage_list(struct store *st, const char *company, int32_t from,
    int32_t to, bool gmail, store_usage_fn fn, void *arg)
{
	int rc = store_check_filter(st, company);

	if (rc == STORE_OK && (!store_day_ok(from) || !store_day_ok(to)))
		rc = store_fail(st, STORE_INVALID, "bad day range");
	return rc != STORE_OK ? rc : st->ops->usage_list(st, company, from,
	    to, gmail, fn, arg);
}

int
store_route_history(struct store *st, const char *company,
    store_route_fn fn, void *arg)
{
	int rc = store_check_id(st, "company", company);

	return rc != STORE_OK ? rc : st->ops->route_history(st, company, fn,
	    arg);
}

int
store_invoice_close(struct store *st, int32_t month,
    const struct invoice *lines, size_t n)
{
	if (!store_month_ok(month))
		return store_fail(st, STORE_INVALID, "bad month %d",
		    (int)month);
	for (size_t i = 0; i < n; i++)
		if (lines[i].month != month || !store_id_ok(lines[i].company))
			return store_fail(st, STORE_INVALID, "invoice line "
			    "%zu is not one of month %d", i, (int)month);
	return st->ops->invoice_close(st, month, lines, n);
}

int
store_month_closed(struct store *st, int32_t month, int64_t *closed_at)
{
	*closed_at = 0;
	if (!store_month_ok(month))
		return store_fail(st, STORE_INVALID, "bad month %d",
		    (int)month);
	return st->ops->month_closed(st, month, closed_at);
}

int
store_invoice_list(struct store *st, int32_t month, const char *company,
    store_invoice_fn fn, void *arg)
{
	int rc = store_check_filter(st, company);

	if (rc == STORE_OK && !store_month_ok(month))
		rc = store_fail(st, STORE_INVALID, "bad month %d",
		    (int)month);
	return rc != STORE_OK ? rc : st->ops->invoice_list(st, month,
	    company, fn, arg);
}

int
store_durable(struct store *st)
{
	return st->ops->durable(st);
}

/* ---- companies --------------------------------------------------------- */

int
store_company_add(struct store *st, const struct company *c,
    const char *actor, const char *reference)
{
	struct company n;
	int rc;

	if ((rc = store_check_actor(st, actor, reference)) != STORE_OK ||
	    (rc = store_check_id(st, "company", c->id)) != STORE_OK)
		return rc;
	if (!store_field_ok(c->name, false))
		return store_fail(st, STORE_INVALID, "company name: 1 to %d "
		    "bytes of text", STORE_NAME_MAX);
	if ((unsigned)c->status > COMPANY_SUSPENDED)
		return store_fail(st, STORE_INVALID, "company status: active "
		    "or suspended");
	if ((unsigned)c->route > ROUTE_PLATFORM_SMARTHOST)
		return store_fail(st, STORE_INVALID, "company route: none, "
		    "own-server, platform-relay or platform-smarthost");
	memset(&n, 0, sizeof(n));
	memcpy(n.id, c->id, sizeof(n.id));
	memcpy(n.name, c->name, sizeof(n.name));
	n.status = c->status;
	n.route = c->route;
	if ((rc = store_norm_smtp(st, "company", c->route, &c->own,
	    &n.own)) != STORE_OK)
		return rc;
	return st->ops->company_add(st, &n, actor,
	    reference ? reference : "");
}

int
store_company_get(struct store *st, const char *id, struct company *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = store_check_id(st, "company", id)) != STORE_OK)
		return rc;
	return st->ops->company_get(st, id, out);
}

int
store_company_list(struct store *st, store_company_fn fn, void *arg)
{
	return st->ops->company_list(st, fn, arg);
}

int
store_company_set_route(struct store *st, const char *id,
    enum route_kind route, const struct smtp_settings *own,
    const char *actor, const char *reference)
{
	struct smtp_settings n, empty;
	int rc;

	if ((rc = store_check_actor(st, actor, reference)) != STORE_OK ||
	    (rc = store_check_id(st, "company", id)) != STORE_OK)
		return rc;
	if ((unsigned)route > ROUTE_PLATFORM_SMARTHOST)
		return store_fail(st, STORE_INVALID, "company route: none, "
		    "own-server, platform-relay or platform-smarthost");
	memset(&empty, 0, sizeof(empty));
	if ((rc = store_norm_smtp(st, "company", route,
	    own ? own : &empty, &n)) != STORE_OK)
		return rc;
	return st->ops->company_set_route(st, id, route, &n, actor,
	    reference ? reference : "");
}

int
store_company_set_status(struct store *st, const char *id,
    enum company_status status, const char *actor, const char *reference)
{
	int rc;

	if ((rc = store_check_actor(st, actor, reference)) != STORE_OK ||
	    (rc = store_check_id(st, "company", id)) != STORE_OK)
		return rc;
	if ((unsigned)status > COMPANY_SUSPENDED)
		return store_fail(st, STORE_INVALID, "company status: active "
		    "or suspended");
	return st->ops->company_set_status(st, id, status, actor,
	    reference ? reference : "");
}

/* ---- domains ----------------------------------------------------------- */

int
store_domain_add(struct store *st, const char *domain, const char *company,
    const char *actor)
{
	char d[STORE_HOST_MAX + 1];
	int rc;

	if ((rc = store_check_actor(st, actor, NULL)) != STORE_OK ||
	    (rc = store_check_id(st, "company", company)) != STORE_OK ||
	    (rc = store_domain_norm(st, domain, d, sizeof(d))) != STORE_OK)
		return rc;
	return st->ops->domain_add(st, d, company, actor);
}

int
store_domain_remove(struct store *st, const char *domain, const char *actor)
{
	char d[STORE_HOST_MAX + 1];
	int rc;

	if ((rc = store_check_actor(st, actor, NULL)) != STORE_OK ||
	    (rc = store_domain_norm(st, domain, d, sizeof(d))) != STORE_OK)
		return rc;
	return st->ops->domain_remove(st, d, actor);
}

int
store_domain_get(struct store *st, const char *domain, struct domain *out)
{
	char d[STORE_HOST_MAX + 1];
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = store_domain_norm(st, domain, d, sizeof(d))) != STORE_OK)
		return rc;
	return st->ops->domain_get(st, d, out);
}

int
store_domain_list(struct store *st, const char *company, store_domain_fn fn,
    void *arg)
{
	int rc = store_check_filter(st, company);

	return rc != STORE_OK ? rc : st->ops->domain_list(st, company, fn, arg);
}

int
store_domain_set_auth(struct store *st, const char *domain, bool spf_ok,
    bool dkim_ok, int64_t checked_at)
{
	char d[STORE_HOST_MAX + 1];
	int rc;

	if ((rc = store_domain_norm(st, domain, d, sizeof(d))) != STORE_OK)
		return rc;
	if (checked_at < 0)
		return store_fail(st, STORE_INVALID, "checked_at: negative");
	return st->ops->domain_set_auth(st, d, spf_ok, dkim_ok, checked_at);
}

/* ---- users ------------------------------------------------------------- */

int
store_user_add(struct store *st, struct user *u, const char *actor)
{
	struct user n;
	int rc;

	if ((rc = store_check_actor(st, actor, NULL)) != STORE_OK ||
	    (rc = store_check_id(st, "user company", u->company)) != STORE_OK)
		return rc;
	if (!store_field_ok(u->email, false) || !store_email_ok(u->email))
		return store_fail(st, STORE_INVALID, "user email: not an "
		    "address (local@domain, at most %d bytes)",
		    STORE_NAME_MAX);
	if (!store_field_ok(u->name, true))
		return store_fail(st, STORE_INVALID, "user name: at most %d "
		    "bytes of text", STORE_NAME_MAX);
	memset(&n, 0, sizeof(n));
	memcpy(n.company, u->company, sizeof(n.company));
	memcpy(n.email, u->email, sizeof(n.email));
	memcpy(n.name, u->name, sizeof(n.name));
	if ((rc = store_norm_user_smtp(st, u, &n)) != STORE_OK)
		return rc;
	if ((rc = st->ops->user_add(st, &n, actor)) == STORE_OK)
		u->id = n.id;
	return rc;
}

int
store_user_get(struct store *st, int64_t id, struct user *out)
{
	memset(out, 0, sizeof(*out));
	return st->ops->user_get(st, id, out);
}

int
store_user_list(struct store *st, const char *company, store_user_fn fn,
    void *arg)
{
	int rc = store_check_filter(st, company);

	return rc != STORE_OK ? rc : st->ops->user_list(st, company, fn, arg);
}

int
store_user_set_smtp(struct store *st, int64_t id, const struct user *u,
    const char *actor)
{
	struct user n;
	int rc;

	if ((rc = store_check_actor(st, actor, NULL)) != STORE_OK)
		return rc;
	memset(&n, 0, sizeof(n));
	if ((rc = store_norm_user_smtp(st, u, &n)) != STORE_OK)
		return rc;
	return st->ops->user_set_smtp(st, id, &n, actor);
}

/* The update's own fields (the users' states are checked one by one by
 * the backend through store_user_apply). */
static int
store_check_update(struct store *st, const struct user_update *upd,
    struct user_update *out)
{
	const unsigned all = USER_SET_ROUTE | USER_SET_FROM | USER_SET_HOST |
	    USER_SET_PORT | USER_SET_TLS | USER_SET_AUTH_USER |
	    USER_SET_SECRET;
	struct smtp_settings probe;
	int rc;

	if (upd->set == 0 || (upd->set & ~all) != 0)
		return store_fail(st, STORE_INVALID, "update: nothing (or "
		    "something unknown) to set");
	*out = *upd;
	if (upd->set & USER_SET_ROUTE) {
		if ((unsigned)upd->route > USER_ROUTE_COMPANY)
			return store_fail(st, STORE_INVALID, "update: route: "
			    "not one of own-server, platform-relay, "
			    "platform-smarthost, company");
		if (upd->route == ROUTE_NONE)
			out->route = USER_ROUTE_COMPANY;
	}
	if (upd->set & USER_SET_FROM) {
		if (upd->from_address == NULL)
			out->from_address = "";
		else if (upd->from_address[0] != '\0' &&
		    !store_email_ok(upd->from_address))
			return store_fail(st, STORE_INVALID, "update: from "
			    "address: not an address");
	}
	/* Fields not being set are not looked at: check a copy holding
	 * only those that are. */
	memset(&probe, 0, sizeof(probe));
	if (upd->set & USER_SET_HOST) {
		if (upd->smtp.host[0] == '\0')
			return store_fail(st, STORE_INVALID, "update: host: "
			    "empty");
		memcpy(probe.host, upd->smtp.host, sizeof(probe.host));
	}
	if (upd->set & USER_SET_TLS)
		probe.tls = upd->smtp.tls;
	if (upd->set & USER_SET_AUTH_USER)
		memcpy(probe.auth_user, upd->smtp.auth_user,
		    sizeof(probe.auth_user));
	if (upd->set & USER_SET_SECRET)
		probe.secret = upd->smtp.secret;
	if ((rc = store_check_smtp_fields(st, "update", &probe)) != STORE_OK)
		return rc;
	if ((upd->set & USER_SET_PORT) && upd->smtp.port == 0)
		out->smtp.port = STORE_DEFAULT_PORT;
	return STORE_OK;
}

int
store_user_mass_update(struct store *st, const struct user_filter *f,
    const struct user_update *upd, bool dry_run,
    void (*fn)(void *arg, const struct user *before, const struct user *after),
    void (*missing_fn)(void *arg, const char *email), void *arg,
    size_t *matched, const char *actor)
{
	struct user_update n;
	int rc;

	*matched = 0;
	if ((rc = store_check_actor(st, actor, NULL)) != STORE_OK)
		return rc;
	if (f->company != NULL &&
	    (rc = store_check_id(st, "filter company", f->company)) !=
	    STORE_OK)
		return rc;
	if (f->emails == NULL && f->nemails != 0)
		return store_fail(st, STORE_INVALID, "filter: %zu emails but "
		    "no list", f->nemails);
	for (size_t i = 0; f->emails != NULL && i < f->nemails; i++)
		if (!store_email_ok(f->emails[i]))
			return store_fail(st, STORE_INVALID, "filter: email "
			    "number %zu: not an address", i + 1);
	if ((rc = store_check_update(st, upd, &n)) != STORE_OK)
		return rc;
	return st->ops->user_mass_update(st, f, &n, dry_run, fn, missing_fn,
	    arg, matched, actor);
}

/* ---- credentials ------------------------------------------------------- */

/* What credentials_hash() makes: "$argon2id$" and base64 parts. */
static bool
store_hash_ok(const char *h)
{
	size_t n = strnlen(h, 256);

	if (n == 0 || n >= 256 || strncmp(h, "$argon2id$", 10) != 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!store_is_alnum(h[i]) && strchr("$=,+/", h[i]) == NULL)
			return false;
	return true;
}

int
store_credential_add(struct store *st, struct credential *c,
    const char *actor)
{
	struct credential n;
	int rc;

	if ((rc = store_check_actor(st, actor, NULL)) != STORE_OK ||
	    (rc = store_check_id(st, "credential company", c->company)) !=
	    STORE_OK)
		return rc;
	if (!store_field_ok(c->application, false))
		return store_fail(st, STORE_INVALID, "credential application: "
		    "1 to %d bytes of text", STORE_APP_MAX);
	if (memchr(c->username, '\0', sizeof(c->username)) == NULL ||
	    !credentials_user_valid(c->username) ||
	    !store_utf8_ok(c->username, strlen(c->username)))
		return store_fail(st, STORE_INVALID, "credential user name: "
		    "1 to %d bytes of UTF-8 without spaces, control "
		    "characters or ':'", STORE_NAME_MAX);
	if (memchr(c->hash, '\0', sizeof(c->hash)) == NULL ||
	    !store_hash_ok(c->hash))
		return store_fail(st, STORE_INVALID, "credential hash: not an "
		    "$argon2id$ hash");
	memset(&n, 0, sizeof(n));
	memcpy(n.company, c->company, sizeof(n.company));
	memcpy(n.application, c->application, sizeof(n.application));
	memcpy(n.username, c->username, sizeof(n.username));
	memcpy(n.hash, c->hash, sizeof(n.hash));
	if ((rc = st->ops->credential_add(st, &n, actor)) == STORE_OK) {
		c->id = n.id;
		c->created = n.created;
		c->revoked = 0;
	}
	return rc;
}

static int
store_check_username(struct store *st, const char *username)
{
	if (!credentials_user_valid(username) ||
	    !store_utf8_ok(username, strlen(username)))
		return store_fail(st, STORE_INVALID, "credential user name: "
		    "1 to %d bytes of UTF-8 without spaces, control "
		    "characters or ':'", STORE_NAME_MAX);
	return STORE_OK;
}

int
store_credential_revoke(struct store *st, const char *username,
    const char *actor)
{
	int rc;

	if ((rc = store_check_actor(st, actor, NULL)) != STORE_OK ||
	    (rc = store_check_username(st, username)) != STORE_OK)
		return rc;
	return st->ops->credential_revoke(st, username, actor);
}

int
store_credential_find(struct store *st, const char *username,
    struct credential *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = store_check_username(st, username)) != STORE_OK)
		return rc;
	return st->ops->credential_find(st, username, out);
}

int
store_credential_list(struct store *st, const char *company,
    store_credential_fn fn, void *arg)
{
	int rc = store_check_filter(st, company);

	return rc != STORE_OK ? rc :
	    st->ops->credential_list(st, company, fn, arg);
}

/* ---- audit ------------------------------------------------------------- */

int
store_audit_list(struct store *st, const char *company, store_audit_fn fn,
    void *arg)
{
	int rc = store_check_filter(st, company);

	return rc != STORE_OK ? rc : st->ops->audit_list(st, company, fn, arg);
}

/* ---- DKIM keys and the domain check ------------------------------------ */

static const char *const dkim_key_state_names[] = {
	[DKIMKEY_PENDING] = "pending",
	[DKIMKEY_ACTIVE] = "active",
	[DKIMKEY_RETIRING] = "retiring",
	[DKIMKEY_RETIRED] = "retired",
};

const char *
dkim_key_state_name(enum dkim_key_state s)
{
	if ((size_t)s >= nitems(dkim_key_state_names))
		fatalx("store: DKIM key state %d", (int)s);
	return dkim_key_state_names[s];
}

int
dkim_key_state_parse(const char *s, enum dkim_key_state *out)
{
	for (size_t i = 0; i < nitems(dkim_key_state_names); i++)
		if (s != NULL && strcmp(s, dkim_key_state_names[i]) == 0) {
			*out = (enum dkim_key_state)i;
			return 0;
		}
	return -1;
}

void
dkim_keyrec_clear(struct dkim_keyrec *k)
{
	if (k == NULL || k->private_pem == NULL)
		return;
	free_secret(k->private_pem);
	k->private_pem = NULL;
}

/* A selector: labels of letters, digits and '-' (RFC 6376 3.1). */
static bool
store_selector_ok(const char *sel)
{
	size_t n, nlabels;
	bool numeric = false;

	return sel != NULL && (n = strnlen(sel, STORE_SELECTOR_MAX + 1)) > 0 &&
	    n <= STORE_SELECTOR_MAX &&
	    hostname_syntax_ok(sel, n, &nlabels, &numeric);
}

/* What every written key must satisfy. */
static int
store_check_dkim(struct store *st, const struct dkim_keyrec *k)
{
	if (!store_selector_ok(k->selector))
		return store_fail(st, STORE_INVALID, "selector: 1 to %d "
		    "bytes of letters, digits, '-' and dots",
		    STORE_SELECTOR_MAX);
	if (strcmp(k->algorithm, "rsa-sha256") != 0 &&
	    strcmp(k->algorithm, "ed25519-sha256") != 0)
		return store_fail(st, STORE_INVALID, "algorithm: rsa-sha256 "
		    "or ed25519-sha256");
	if (!store_field_ok(k->record, false) ||
	    strncmp(k->record, "v=DKIM1;", 8) != 0)
		return store_fail(st, STORE_INVALID, "record: a DKIM key "
		    "record (v=DKIM1; ...)");
	if ((size_t)k->state >= nitems(dkim_key_state_names) ||
	    k->created < 0 || k->published_at < 0 || k->activated_at < 0 ||
	    k->retire_at < 0 || k->bits < 0 || k->bits > 16384)
		return store_fail(st, STORE_INVALID, "DKIM key: state or "
		    "times out of range");
	return STORE_OK;
}

int
store_dkim_add(struct store *st, struct dkim_keyrec *k, const char *actor)
{
	char d[STORE_HOST_MAX + 1];
	int rc;

	if ((rc = store_check_actor(st, actor, NULL)) != STORE_OK ||
	    (rc = store_domain_norm(st, k->domain, d, sizeof(d))) != STORE_OK ||
	    (rc = store_check_dkim(st, k)) != STORE_OK)
		return rc;
	if (k->private_pem == NULL ||
	    strnlen(k->private_pem, STORE_DKIM_PEM_MAX + 1) > STORE_DKIM_PEM_MAX)
		return store_fail(st, STORE_INVALID, "DKIM key: a private key "
		    "of at most %d bytes is required", STORE_DKIM_PEM_MAX);
	strlcpy_ok(k->domain, d, sizeof(k->domain));
	return st->ops->dkim_add(st, k, actor);
}

int
store_dkim_list(struct store *st, const char *domain, bool with_private,
    store_dkim_fn fn, void *arg)
{
	char d[STORE_HOST_MAX + 1];
	int rc;

	if (domain != NULL && (rc = store_domain_norm(st, domain, d,
	    sizeof(d))) != STORE_OK)
		return rc;
	return st->ops->dkim_list(st, domain ? d : NULL, with_private, fn,
	    arg);
}

int
store_dkim_update(struct store *st, const struct dkim_keyrec *k,
    const char *actor)
{
	int rc;

	if ((rc = store_check_actor(st, actor, NULL)) != STORE_OK ||
	    (rc = store_check_dkim(st, k)) != STORE_OK)
		return rc;
	return st->ops->dkim_update(st, k, actor);
}

#define STORE_DETAIL_MAX	65536

int
store_domain_set_check(struct store *st, const char *domain, bool spf_ok,
    bool dkim_ok, bool dmarc_ok, int64_t checked_at, const char *detail)
{
	char d[STORE_HOST_MAX + 1];
	int rc;

	if ((rc = store_domain_norm(st, domain, d, sizeof(d))) != STORE_OK)
		return rc;
	if (checked_at < 0)
		return store_fail(st, STORE_INVALID, "checked_at: negative");
	if (!store_text_ok(detail, STORE_DETAIL_MAX, true))
		return store_fail(st, STORE_INVALID, "check detail: at most "
		    "%d bytes of text", STORE_DETAIL_MAX);
	return st->ops->domain_set_check(st, d, spf_ok, dkim_ok, dmarc_ok,
	    checked_at, detail);
}

int
store_domain_check_detail(struct store *st, const char *domain,
    char **detail, int64_t *broken_since)
{
	char d[STORE_HOST_MAX + 1];
	int rc;

	*detail = NULL;
	*broken_since = 0;
	if ((rc = store_domain_norm(st, domain, d, sizeof(d))) != STORE_OK)
		return rc;
	return st->ops->domain_check_detail(st, d, detail, broken_since);
}

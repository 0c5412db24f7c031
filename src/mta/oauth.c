/*
 * oauth.c - OAuth 2.0 access tokens (client-credentials grant, RFC 6749
 * 4.4) for AUTH XOAUTH2, fetched with libcurl's multi_socket API driven
 * by the libevent loop, parsed with jansson, cached per (token_url,
 * client_id, scope).
 *
 * Three objects: an entry per key (the cached token and its expiry, at
 * most one fetch in flight, the requests waiting for it); a fetch (one
 * HTTP POST); a request (what a caller asked for).  A request whose
 * answer is known goes on the done queue, and the work event runs its
 * callback: so no callback runs inside oauth_token() or inside libcurl.
 *
 * Must never: log or put in an error text a client secret or a token;
 * leave them in freed memory (sodium_memzero); follow redirects; send a
 * secret over plain HTTP except to 127.0.0.0/8, localhost or [::1]; accept a
 * response beyond OAUTH_RESP_MAX bytes; turn off TLS verification; call a
 * callback synchronously or after oauth_cancel(); block the loop.
 */
#include "mta/oauth.h"
#include "common/util.h"

#include <sys/queue.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>
#include <sodium.h>

#define OAUTH_RESP_MAX		(64 * 1024)
#define OAUTH_TOKEN_MAX		(16 * 1024)
#define OAUTH_CONNECT_MS	10000L
#define OAUTH_TOTAL_MS		30000L
#define OAUTH_EXPIRES_MAX	86400	/* cache a token a day at most */
#define OAUTH_EXPIRES_LIMIT	315360000 /* larger is refused as bogus */
#define OAUTH_ERR_MAX		256

struct oauth_req;
TAILQ_HEAD(oauth_req_list, oauth_req);

struct oauth_fetch;

struct oauth_entry {
	TAILQ_ENTRY(oauth_entry) link;
	char			*token_url;
	char			*client_id;
	char			*scope;		/* "" when none */
	unsigned char		 secret_hash[crypto_generichash_BYTES];
						/* keyed too: a new secret
						   never gets an old token */
	char			*token;		/* NULL: none cached */
	int64_t			 expires_ms;	/* monotonic */
	struct oauth_fetch	*fetch;		/* in flight, or NULL */
	struct oauth_req_list	 waiters;
};
TAILQ_HEAD(oauth_entry_list, oauth_entry);

struct oauth_fetch {
	struct oauth		*o;
	struct oauth_entry	*e;
	CURL			*easy;
	char			*post;		/* holds the secret */
	size_t			 post_len;
	struct curl_slist	*hdrs;
	char			*resp;		/* [OAUTH_RESP_MAX + 1] */
	size_t			 resp_len;
	bool			 too_big;
	char			 curl_err[CURL_ERROR_SIZE];
};

enum oauth_req_where { OAUTH_REQ_WAITING, OAUTH_REQ_DONE };

struct oauth_req {
	TAILQ_ENTRY(oauth_req)	 link;
	struct oauth		*o;
	struct oauth_entry	*e;
	enum oauth_req_where	 where;
	oauth_cb		 cb;
	void			*arg;
	char			*token;		/* result */
	char			 error[OAUTH_ERR_MAX];
	bool			 permanent;
};

struct oauth_sock {
	struct oauth_sock	*next, *prev;
	struct event		*ev;
	curl_socket_t		 fd;
};

struct oauth {
	struct event_base	*base;
	char			*ca_file;
	CURLM			*multi;
	struct event		*timer;
	struct event		*work;
	struct oauth_entry_list	 entries;
	struct oauth_req_list	 done;
	struct oauth_sock	*socks;
	long			 connect_ms, total_ms;
	unsigned long		 n_http, n_hits;
};

static void oauth_check_done(struct oauth *o);

/* --- requests and the done queue --- */

static void
oauth_req_free(struct oauth_req *r)
{
	free_secret(r->token);
	sodium_memzero(r, sizeof(*r));
	free(r);
}

static void
oauth_req_done(struct oauth_req *r)
{
	struct oauth *o = r->o;

	r->where = OAUTH_REQ_DONE;
	TAILQ_INSERT_TAIL(&o->done, r, link);
	event_active(o->work, EV_TIMEOUT, 0);
}

static void
oauth_work_cb(evutil_socket_t fd, short what, void *arg)
{
	struct oauth *o = arg;
	struct oauth_req *r;

	/* one at a time: a callback may cancel others or ask again */
	while ((r = TAILQ_FIRST(&o->done)) != NULL) {
		TAILQ_REMOVE(&o->done, r, link);
		r->cb(r->arg, r->token, r->token != NULL ? "" : r->error,
		    r->token != NULL ? false : r->permanent);
		oauth_req_free(r);
	}
}

/* --- libcurl <-> libevent --- */

static void
oauth_sock_cb_ev(evutil_socket_t fd, short what, void *arg)
{
	struct oauth *o = arg;
	int flags = 0, running;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(o->multi, fd, flags, &running);
	oauth_check_done(o);
}

static void
oauth_sock_unlink(struct oauth *o, struct oauth_sock *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		o->socks = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	if (s->ev != NULL)
		event_free(s->ev);
	free(s);
}

static int
oauth_socket_fn(CURL *easy, curl_socket_t fd, int what, void *userp,
    void *socketp)
{
	struct oauth *o = userp;
	struct oauth_sock *s = socketp;
	short ev = EV_PERSIST;

	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			oauth_sock_unlink(o, s);
			curl_multi_assign(o->multi, fd, NULL);
		}
		return 0;
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->fd = fd;
		s->next = o->socks;
		if (o->socks != NULL)
			o->socks->prev = s;
		o->socks = s;
		curl_multi_assign(o->multi, fd, s);
	}
	if (s->ev != NULL) {
		event_free(s->ev);
		s->ev = NULL;
	}
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		ev |= EV_READ;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		ev |= EV_WRITE;
	s->ev = event_new(o->base, fd, ev, oauth_sock_cb_ev, o);
	if (s->ev == NULL || event_add(s->ev, NULL) != 0)
		return -1;
	return 0;
}

static void
oauth_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct oauth *o = arg;
	int running;

	curl_multi_socket_action(o->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	oauth_check_done(o);
}

static int
oauth_timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	struct oauth *o = userp;
	struct timeval tv;

	if (timeout_ms < 0) {
		evtimer_del(o->timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	return evtimer_add(o->timer, &tv) == 0 ? 0 : -1;
}

/* --- fetches --- */

static size_t
oauth_write_fn(char *p, size_t size, size_t n, void *arg)
{
	struct oauth_fetch *f = arg;
	size_t len = size * n;

	if (len > OAUTH_RESP_MAX - f->resp_len) {
		f->too_big = true;
		return 0;	/* aborts the transfer */
	}
	memcpy(f->resp + f->resp_len, p, len);
	f->resp_len += len;
	return len;
}

static void
oauth_fetch_free(struct oauth_fetch *f)
{
	if (f == NULL)
		return;
	if (f->easy != NULL) {
		curl_multi_remove_handle(f->o->multi, f->easy);
		curl_easy_cleanup(f->easy);
	}
	curl_slist_free_all(f->hdrs);
	if (f->post != NULL) {
		sodium_memzero(f->post, f->post_len);
		free(f->post);
	}
	if (f->resp != NULL) {
		sodium_memzero(f->resp, OAUTH_RESP_MAX + 1);
		free(f->resp);
	}
	free(f);
}

/* Appends name=escaped(value) to the form; 0 or -1. */
static int
oauth_form_add(CURL *easy, struct buf *b, const char *name,
    const char *value)
{
	char *esc;

	esc = curl_easy_escape(easy, value, 0);
	if (esc == NULL)
		return -1;
	if (b->len > 0)
		buf_addc(b, '&');
	buf_adds(b, name);
	buf_addc(b, '=');
	buf_adds(b, esc);
	sodium_memzero(esc, strlen(esc));
	curl_free(esc);
	return 0;
}

/* http:// only to loopback; https:// anywhere. */
static bool
oauth_url_ok(const char *url)
{
	static const char *const loop[] = { "127.0.0.1", "localhost",
	    "[::1]" };
	const char *h;
	size_t i, n;

	if (ascii_strncasecmp(url, "https://", 8) == 0)
		return url[8] != '\0';
	if (ascii_strncasecmp(url, "http://", 7) != 0)
		return false;
	h = url + 7;
	for (i = 0; i < sizeof(loop) / sizeof(loop[0]); i++) {
		n = strlen(loop[i]);
		if (ascii_strncasecmp(h, loop[i], n) == 0 &&
		    (h[n] == '\0' || h[n] == ':' || h[n] == '/'))
			return true;
	}
	/* all of 127.0.0.0/8, as the configuration parser accepts */
	n = strcspn(h, ":/?#");
	if (n < INET_ADDRSTRLEN) {
		char tmp[INET_ADDRSTRLEN];
		uint8_t a[4];

		memcpy(tmp, h, n);
		tmp[n] = '\0';
		if (inet_pton(AF_INET, tmp, a) == 1 && a[0] == 127)
			return true;
	}
	return false;
}

static struct oauth_fetch *
oauth_fetch_start(struct oauth *o, struct oauth_entry *e,
    const char *secret, char *err, size_t errlen)
{
	struct oauth_fetch *f;
	struct buf b;
	CURL *easy;

	buf_init(&b);
	f = xcalloc(1, sizeof(*f));
	f->o = o;
	f->e = e;
	f->resp = xmalloc(OAUTH_RESP_MAX + 1);
	if ((easy = f->easy = curl_easy_init()) == NULL) {
		snprintf(err, errlen, "oauth: curl_easy_init failed");
		goto fail;
	}
	buf_reserve(&b, 1024 + 3 * (strlen(e->client_id) + strlen(secret) +
	    strlen(e->scope)));
	if (oauth_form_add(easy, &b, "grant_type", "client_credentials") ||
	    oauth_form_add(easy, &b, "client_id", e->client_id) ||
	    oauth_form_add(easy, &b, "client_secret", secret) ||
	    (e->scope[0] != '\0' &&
	    oauth_form_add(easy, &b, "scope", e->scope))) {
		snprintf(err, errlen, "oauth: cannot encode the form");
		goto fail;
	}
	f->post = xstrndup(b.data, b.len);
	f->post_len = b.len;
	f->hdrs = curl_slist_append(NULL,
	    "Content-Type: application/x-www-form-urlencoded");
	if (f->hdrs == NULL ||
	    (f->hdrs = curl_slist_append(f->hdrs,
	    "Accept: application/json")) == NULL) {
		snprintf(err, errlen, "oauth: out of memory");
		goto fail;
	}
	if (curl_easy_setopt(easy, CURLOPT_URL, e->token_url) ||
	    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "https,http") ||
	    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L) ||
	    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) ||
	    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, f->post) ||
	    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long)f->post_len) ||
	    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, f->hdrs) ||
	    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, oauth_write_fn) ||
	    curl_easy_setopt(easy, CURLOPT_WRITEDATA, f) ||
	    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, f->curl_err) ||
	    curl_easy_setopt(easy, CURLOPT_PRIVATE, f) ||
	    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, o->connect_ms) ||
	    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, o->total_ms) ||
	    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L) ||
	    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L) ||
	    curl_easy_setopt(easy, CURLOPT_NOPROXY, "127.0.0.1,localhost,::1") ||
	    curl_easy_setopt(easy, CURLOPT_USERAGENT, "ombud") ||
	    (o->ca_file != NULL &&
	    curl_easy_setopt(easy, CURLOPT_CAINFO, o->ca_file))) {
		snprintf(err, errlen, "oauth: curl_easy_setopt failed");
		goto fail;
	}
	if (curl_multi_add_handle(o->multi, easy) != CURLM_OK) {
		snprintf(err, errlen, "oauth: curl_multi_add_handle failed");
		goto fail;
	}
	o->n_http++;
	sodium_memzero(b.data, b.cap);
	buf_free(&b);
	return f;
fail:
	if (b.data != NULL)
		sodium_memzero(b.data, b.cap);
	buf_free(&b);
	if (f->easy != NULL) {
		curl_easy_cleanup(f->easy);
		f->easy = NULL;
	}
	oauth_fetch_free(f);
	return NULL;
}

/* Printable ASCII of s into dst (at most n bytes of s), for error text. */
static void
oauth_clean_text(char *dst, size_t dstsz, const char *s, size_t n)
{
	size_t i, j = 0;

	for (i = 0; i < n && s[i] != '\0' && j + 1 < dstsz; i++)
		dst[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	dst[j] = '\0';
}

/*
 * Parses a 2xx body: the token (copied into *tokenp) and its lifetime.
 * Returns 0, or -1 with err filled.
 */
static int
oauth_parse_token(const char *body, size_t len, char **tokenp,
    long long *expires, char *err, size_t errlen)
{
	json_t *root, *v;
	json_error_t jerr;
	const char *tok, *s;
	size_t tlen, i;
	long long ex = 0;
	char *end;

	*tokenp = NULL;
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL || !json_is_object(root)) {
		snprintf(err, errlen, "token endpoint: malformed JSON response");
		goto fail;
	}
	v = json_object_get(root, "token_type");
	if (!json_is_string(v) ||
	    ascii_strcasecmp(json_string_value(v), "Bearer") != 0) {
		snprintf(err, errlen, "token endpoint: token_type is not Bearer");
		goto fail;
	}
	v = json_object_get(root, "access_token");
	if (!json_is_string(v)) {
		snprintf(err, errlen, "token endpoint: no access_token");
		goto fail;
	}
	tok = json_string_value(v);
	tlen = json_string_length(v);
	if (tlen == 0 || tlen > OAUTH_TOKEN_MAX) {
		snprintf(err, errlen, "token endpoint: access_token of %zu "
		    "bytes", tlen);
		goto fail;
	}
	for (i = 0; i < tlen; i++)
		if (tok[i] <= 0x20 || tok[i] >= 0x7f) {
			snprintf(err, errlen, "token endpoint: access_token "
			    "with a character that is not printable");
			goto fail;
		}
	v = json_object_get(root, "expires_in");
	if (v == NULL || json_is_null(v))
		ex = 0;		/* unknown: used once, not cached */
	else if (json_is_integer(v))
		ex = json_integer_value(v);
	else if (json_is_string(v)) {
		s = json_string_value(v);
		ex = (*s >= '0' && *s <= '9') ? strtoll(s, &end, 10) : -1;
		if (ex >= 0 && *end != '\0')
			ex = -1;
	} else
		ex = -1;
	if (ex < 0 || ex > OAUTH_EXPIRES_LIMIT) {
		snprintf(err, errlen, "token endpoint: bad expires_in");
		goto fail;
	}
	*expires = ex;
	*tokenp = xstrndup(tok, tlen);
	/* jansson keeps its own copy: wipe it before it is freed */
	sodium_memzero((char *)tok, tlen);
	json_decref(root);
	return 0;
fail:
	if (root != NULL) {
		v = json_object_get(root, "access_token");
		if (json_is_string(v))
			sodium_memzero((char *)json_string_value(v),
			    json_string_length(v));
		json_decref(root);
	}
	return -1;
}

/* The error text for a non-2xx reply: error and error_description. */
static void
oauth_parse_error(long code, const char *body, size_t len, char *err,
    size_t errlen)
{
	json_t *root, *e, *d;
	json_error_t jerr;
	char es[64] = "", ds[160] = "";

	root = json_loadb(body, len, 0, &jerr);
	if (root != NULL && json_is_object(root)) {
		e = json_object_get(root, "error");
		d = json_object_get(root, "error_description");
		if (json_is_string(e))
			oauth_clean_text(es, sizeof(es), json_string_value(e),
			    json_string_length(e));
		if (json_is_string(d))
			oauth_clean_text(ds, sizeof(ds), json_string_value(d),
			    json_string_length(d));
	}
	json_decref(root);
	snprintf(err, errlen, "token endpoint: HTTP %ld%s%s%s%s", code,
	    es[0] ? " " : "", es, ds[0] ? ": " : "", ds);
}

static void
oauth_fetch_finish(struct oauth_fetch *f, CURLcode rc)
{
	struct oauth_entry *e = f->e;
	struct oauth_req *r;
	char err[OAUTH_ERR_MAX] = "";
	char *token = NULL;
	long code = 0;
	long long ex = 0, margin;
	bool permanent = false;

	curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &code);
	if (f->too_big) {
		snprintf(err, sizeof(err), "token endpoint: response larger "
		    "than %d bytes", OAUTH_RESP_MAX);
		permanent = true;
	} else if (rc != CURLE_OK) {
		/* libcurl's texts name hosts and errors, never the body */
		snprintf(err, sizeof(err), "token endpoint: %.200s",
		    f->curl_err[0] ? f->curl_err : curl_easy_strerror(rc));
		permanent = false;
	} else if (code >= 200 && code < 300) {
		if (oauth_parse_token(f->resp, f->resp_len, &token, &ex, err,
		    sizeof(err)) != 0)
			permanent = true;
	} else {
		oauth_parse_error(code, f->resp, f->resp_len, err,
		    sizeof(err));
		/* 408, 429 and 5xx may pass; other 4xx and 3xx will not */
		permanent = !(code == 408 || code == 429 || code >= 500 ||
		    code < 200);
	}

	e->fetch = NULL;
	oauth_fetch_free(f);

	if (token != NULL) {
		free_secret(e->token);
		e->token = NULL;
		if (ex > OAUTH_EXPIRES_MAX)
			ex = OAUTH_EXPIRES_MAX;
		/* 10 %, and at least 60 s unless that is half the lifetime */
		margin = ex / 10;
		if (margin < 60)
			margin = ex / 2 < 60 ? ex / 2 : 60;
		if (ex - margin > 0) {
			e->token = xstrdup(token);
			e->expires_ms = now_msec_mono() + (ex - margin) * 1000;
		}
	}
	while ((r = TAILQ_FIRST(&e->waiters)) != NULL) {
		TAILQ_REMOVE(&e->waiters, r, link);
		if (token != NULL)
			r->token = xstrdup(token);
		else {
			strlcpy_ok(r->error, err, sizeof(r->error));
			r->permanent = permanent;
		}
		oauth_req_done(r);
	}
	free_secret(token);
}

static void
oauth_check_done(struct oauth *o)
{
	CURLMsg *m;
	int left;
	struct oauth_fetch *f;

	while ((m = curl_multi_info_read(o->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		f = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE,
		    (char **)&f);
		if (f != NULL)
			oauth_fetch_finish(f, m->data.result);
	}
}

/* --- entries --- */

static void
oauth_secret_hash(const char *secret, unsigned char *h)
{
	crypto_generichash(h, crypto_generichash_BYTES,
	    (const unsigned char *)secret, strlen(secret), NULL, 0);
}

/* The entry for c (its secret hashed into h), or NULL. */
static struct oauth_entry *
oauth_entry_find(struct oauth *o, const struct oauth_client *c,
    unsigned char *h)
{
	struct oauth_entry *e;
	const char *scope = c->scope != NULL ? c->scope : "";

	oauth_secret_hash(c->client_secret, h);
	TAILQ_FOREACH(e, &o->entries, link)
		if (strcmp(e->token_url, c->token_url) == 0 &&
		    strcmp(e->client_id, c->client_id) == 0 &&
		    strcmp(e->scope, scope) == 0 &&
		    sodium_memcmp(e->secret_hash, h,
		    crypto_generichash_BYTES) == 0)
			return e;
	return NULL;
}

static void
oauth_entry_drop_token(struct oauth_entry *e)
{
	free_secret(e->token);
	e->token = NULL;
	e->expires_ms = 0;
}

/* --- the API --- */

struct oauth *
oauth_new(struct event_base *base, const char *ca_file, char *err,
    size_t errlen)
{
	struct oauth *o;

	if (sodium_init() < 0) {
		snprintf(err, errlen, "oauth: sodium_init failed");
		return NULL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "oauth: curl_global_init failed");
		return NULL;
	}
	o = xcalloc(1, sizeof(*o));
	o->base = base;
	TAILQ_INIT(&o->entries);
	TAILQ_INIT(&o->done);
	o->connect_ms = OAUTH_CONNECT_MS;
	o->total_ms = OAUTH_TOTAL_MS;
	if (ca_file != NULL)
		o->ca_file = xstrdup(ca_file);
	o->timer = evtimer_new(base, oauth_timer_cb, o);
	o->work = event_new(base, -1, 0, oauth_work_cb, o);
	if (o->timer == NULL || o->work == NULL) {
		snprintf(err, errlen, "oauth: event_new failed");
		goto fail;
	}
	if ((o->multi = curl_multi_init()) == NULL ||
	    curl_multi_setopt(o->multi, CURLMOPT_SOCKETFUNCTION,
	    oauth_socket_fn) || curl_multi_setopt(o->multi,
	    CURLMOPT_SOCKETDATA, o) || curl_multi_setopt(o->multi,
	    CURLMOPT_TIMERFUNCTION, oauth_timer_fn) ||
	    curl_multi_setopt(o->multi, CURLMOPT_TIMERDATA, o)) {
		snprintf(err, errlen, "oauth: curl_multi_init failed");
		goto fail;
	}
	return o;
fail:
	oauth_free(o);
	return NULL;
}

void
oauth_set_timeouts(struct oauth *o, long connect_ms, long total_ms)
{
	o->connect_ms = connect_ms > 0 ? connect_ms : OAUTH_CONNECT_MS;
	o->total_ms = total_ms > 0 ? total_ms : OAUTH_TOTAL_MS;
}

struct oauth_req *
oauth_token(struct oauth *o, const struct oauth_client *c, oauth_cb cb,
    void *arg, char *err, size_t errlen)
{
	unsigned char h[crypto_generichash_BYTES];
	struct oauth_entry *e;
	struct oauth_req *r;

	if (c->token_url == NULL || c->client_id == NULL ||
	    c->client_secret == NULL || cb == NULL) {
		snprintf(err, errlen, "oauth: token_url, client_id and "
		    "client_secret are required");
		return NULL;
	}
	if (!oauth_url_ok(c->token_url)) {
		snprintf(err, errlen, "oauth: the token URL must be https:// "
		    "(http:// only to 127.0.0.0/8, localhost or [::1])");
		return NULL;
	}
	if ((e = oauth_entry_find(o, c, h)) == NULL) {
		e = xcalloc(1, sizeof(*e));
		memcpy(e->secret_hash, h, sizeof(e->secret_hash));
		e->token_url = xstrdup(c->token_url);
		e->client_id = xstrdup(c->client_id);
		e->scope = xstrdup(c->scope != NULL ? c->scope : "");
		TAILQ_INIT(&e->waiters);
		TAILQ_INSERT_TAIL(&o->entries, e, link);
	}
	r = xcalloc(1, sizeof(*r));
	r->o = o;
	r->e = e;
	r->cb = cb;
	r->arg = arg;
	if (e->token != NULL && now_msec_mono() < e->expires_ms) {
		o->n_hits++;
		r->token = xstrdup(e->token);
		oauth_req_done(r);
		return r;
	}
	if (e->token != NULL)
		oauth_entry_drop_token(e);
	if (e->fetch == NULL &&
	    (e->fetch = oauth_fetch_start(o, e, c->client_secret, err,
	    errlen)) == NULL) {
		free(r);
		return NULL;
	}
	r->where = OAUTH_REQ_WAITING;
	TAILQ_INSERT_TAIL(&e->waiters, r, link);
	return r;
}

void
oauth_cancel(struct oauth_req *r)
{
	if (r == NULL)
		return;
	if (r->where == OAUTH_REQ_DONE)
		TAILQ_REMOVE(&r->o->done, r, link);
	else
		TAILQ_REMOVE(&r->e->waiters, r, link);
	oauth_req_free(r);
}

void
oauth_invalidate(struct oauth *o, const struct oauth_client *c)
{
	unsigned char h[crypto_generichash_BYTES];
	struct oauth_entry *e;

	if (c->token_url != NULL && c->client_id != NULL &&
	    c->client_secret != NULL &&
	    (e = oauth_entry_find(o, c, h)) != NULL)
		oauth_entry_drop_token(e);
}

void
oauth_free(struct oauth *o)
{
	struct oauth_entry *e;
	struct oauth_req *r;

	if (o == NULL)
		return;
	while ((r = TAILQ_FIRST(&o->done)) != NULL) {
		TAILQ_REMOVE(&o->done, r, link);
		oauth_req_free(r);
	}
	while ((e = TAILQ_FIRST(&o->entries)) != NULL) {
		TAILQ_REMOVE(&o->entries, e, link);
		while ((r = TAILQ_FIRST(&e->waiters)) != NULL) {
			TAILQ_REMOVE(&e->waiters, r, link);
			oauth_req_free(r);
		}
		oauth_fetch_free(e->fetch);
		oauth_entry_drop_token(e);
		free(e->token_url);
		free(e->client_id);
		free(e->scope);
		sodium_memzero(e, sizeof(*e));
		free(e);
	}
	if (o->multi != NULL)
		curl_multi_cleanup(o->multi);
	while (o->socks != NULL)
		oauth_sock_unlink(o, o->socks);
	if (o->timer != NULL)
		event_free(o->timer);
	if (o->work != NULL)
		event_free(o->work);
	free(o->ca_file);
	free(o);
	curl_global_cleanup();
}

unsigned long
oauth_http_requests(const struct oauth *o)
{
	return o->n_http;
}

unsigned long
oauth_cache_hits(const struct oauth *o)
{
	return o->n_hits;
}

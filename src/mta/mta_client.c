/*
 * mta_client.c - the outbound SMTP client (RFC 5321, 3207, 2920, 1870,
 * 6152, 6531, 3461, 4954): one connection to one remote server as a state
 * machine driven by libevent bufferevents, the sibling of smtp_session.c.
 *
 * A connection goes CONNECTING -> [TLS] -> GREETING -> EHLO (or HELO)
 * -> [STARTTLS -> TLS -> EHLO] -> [AUTH] -> IDLE; a transaction goes IDLE
 * -> TX (MAIL, RCPT..., DATA; pipelined when offered) -> CONTENT (the
 * dot-stuffed content and the reply to the dot) -> [RSET] -> IDLE.
 * Replies are read one line at a time through smtp_reply; each stage has
 * its own deadline (ev_timer).  Every callback to the user runs from
 * ev_defer, never from inside an API call or a bufferevent callback, so
 * the user may call anything (mta_send, mta_quit, mta_abort) from inside
 * it; the connection is freed only from ev_defer as well.
 *
 * Content is normalised on the way out: a bare CR or LF becomes CRLF
 * (a remote server must never see a line end the spool did not mean),
 * lines starting with '.' get another '.', the last line is ended with
 * CRLF, then ".\r\n".  It is queued in chunks as the output drains.
 *
 * Must never:
 *  - send AUTH credentials unless inside TLS or the route says tls = none;
 *  - go on after STARTTLS failed or was not offered when TLS is required,
 *    or resume a TLS session made without verification on a verified
 *    connection;
 *  - report a recipient delivered before the 2xx reply to the dot;
 *  - take input pipelined after the 220 to STARTTLS as coming over TLS;
 *  - log a password, a token or an AUTH payload;
 *  - block the event loop, or let a hostile server grow a buffer without
 *    bound (reply lines, lines per reply and input are capped).
 */
#include "mta/mta_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <sodium.h>

#include "common/log.h"
#include "common/util.h"
#include "smtp/sasl.h"
#include "smtp/smtp_parse.h"
#include "tls/tls.h"

#define MTA_READ_HIGHWAT	(64 * 1024)	/* input held at most */
#define MTA_CHUNK		(128 * 1024)	/* content queued per refill */
#define MTA_QUIT_TIMEOUT	10		/* seconds for the QUIT reply */
#define MTA_TOKEN_MAX		4096		/* XOAUTH2 bearer token */
#define MTA_AUTH_STEPS_MAX	3		/* 334 challenges per AUTH */
#define MTA_TLS_CACHE_MAX	64		/* per-destination sessions */

#define MTA_DEFAULT_CONNECT	30
#define MTA_DEFAULT_COMMAND	300
#define MTA_DEFAULT_DATA	600

enum mta_state {
	MTA_S_CONNECTING = 0,	/* TCP connect */
	MTA_S_TLS,		/* TLS handshake (implicit or STARTTLS) */
	MTA_S_GREETING,		/* waiting for the 220 */
	MTA_S_EHLO,
	MTA_S_HELO,		/* EHLO was refused */
	MTA_S_STARTTLS,		/* waiting for the 220 to STARTTLS */
	MTA_S_AUTH,		/* AUTH sent; 334 challenges or the result */
	MTA_S_IDLE,		/* ready for a transaction */
	MTA_S_TX,		/* replies to MAIL, RCPT..., DATA */
	MTA_S_CONTENT,		/* content going out; the reply to the dot */
	MTA_S_RSET,		/* cleaning up after a failed transaction */
	MTA_S_QUIT,		/* QUIT sent: no callbacks; freed at the end */
	MTA_S_DEAD,		/* connection gone, waiting to be freed */
};

static const char *const mta_state_names[] = {
	"connecting", "tls", "greeting", "ehlo", "helo", "starttls", "auth",
	"idle", "tx", "content", "rset", "quit", "dead",
};

static const char *const mta_stage_names[] = {
	"connect", "greeting", "ehlo", "starttls", "tls", "auth", "mail",
	"rcpt", "data", "dot", "rset",
};

enum mta_defer {
	MTA_DEFER_NONE = 0,
	MTA_DEFER_READY,	/* ready_cb with cres */
	MTA_DEFER_SENT,		/* sent_cb with txr */
};

enum mta_mech {
	MTA_MECH_NONE = 0,
	MTA_MECH_PLAIN,
	MTA_MECH_LOGIN,
	MTA_MECH_XOAUTH2,
};

struct mta_conn {
	LIST_ENTRY(mta_conn)	 all;		/* mta_conns */
	struct event_base	*base;
	struct bufferevent	*bev;
	struct event		*ev_timer;	/* this stage's deadline */
	struct event		*ev_defer;	/* user callbacks, the free */
	enum mta_state		 state;
	struct smtp_reply_parser parser;
	struct smtp_ehlo	 ehlo;

	/* the parameters, copied */
	struct sockaddr_storage	 addr;
	socklen_t		 addrlen;
	char			 host[SMTP_DOMAIN_MAX + 1];
	char			 helo[SMTP_DOMAIN_MAX + 1];
	char			 peer[INET6_ADDRSTRLEN + 8];	/* for logs */
	enum mta_tls		 tls;
	SSL_CTX			*ssl_ctx;
	char			*auth_user;	/* secrets: wiped on free */
	char			*auth_pass;
	char			*xoauth2_token;
	unsigned		 timeout_connect;
	unsigned		 timeout_command;
	unsigned		 timeout_data;

	bool			 tls_on;	/* handshake completed */
	bool			 tls_verify;	/* certificate checked */
	bool			 starttls_tried;
	enum mta_mech		 mech;
	unsigned		 auth_steps;
	unsigned		 nmessages;

	bool			 user_gone;	/* the user holds no pointer */
	bool			 aborted;	/* no callback runs any more */
	bool			 free_pending;
	enum mta_defer		 defer;
	mta_ready_cb		 ready_cb;
	void			*ready_arg;
	struct mta_result	 cres;		/* connect result; or why the
						   connection died while
						   idle */

	/* the transaction */
	struct mta_tx		 tx;
	mta_sent_cb		 sent_cb;
	void			*sent_arg;
	struct mta_tx_result	 txr;
	bool			*accepted;	/* [tx.nrcpt] RCPT got 2xx */
	size_t			*sendmap;	/* RCPT n -> index in tx */
	size_t			 nsend;		/* RCPTs to send */
	size_t			 ncmd_sent;	/* MAIL=1, RCPTs, DATA */
	size_t			 ncmd_replied;
	size_t			 naccepted;
	bool			 mail_ok;
	bool			 failed;	/* txr.tx has the cause */
	struct smtp_reply	 last_refusal;	/* of a RCPT */
	bool			 data_discard;	/* unwanted 354: "." only */
	size_t			 content_off;
	bool			 content_bol;	/* at a line's start */
	bool			 content_done;	/* the dot is queued */
	struct buf		 chunk;		/* content being queued */
};

static void mta_read_cb(struct bufferevent *bev, void *arg);
static void mta_write_cb(struct bufferevent *bev, void *arg);
static void mta_event_cb(struct bufferevent *bev, short what, void *arg);
static void mta_lost(struct mta_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void mta_reply(struct mta_conn *c, const struct smtp_reply *r);
static void mta_content_fill(struct mta_conn *c);

/* --- the TLS session cache ----------------------------------------------- */

/*
 * The last session per destination (host, port, context, and whether the
 * certificate was verified: an unverified session must never stand in for
 * a verified one).  The event loop thread is the only user.
 */
struct mta_tls_cache_entry {
	char		 key[SMTP_DOMAIN_MAX + 64];
	SSL_SESSION	*sess;
	uint64_t	 used;
};
static struct mta_tls_cache_entry mta_tls_cache[MTA_TLS_CACHE_MAX];
static uint64_t mta_tls_cache_clock;
static int mta_tls_ctx_index = -1;
static uintptr_t mta_tls_ctx_last;

/*
 * A number for the context, kept in its ex_data: not its address, which
 * a new context (another CA store, after a reload) may get again.
 */
static uintptr_t
mta_tls_ctx_id(SSL_CTX *ctx)
{
	uintptr_t id;

	if (mta_tls_ctx_index < 0 && (mta_tls_ctx_index =
	    SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL)) < 0)
		fatalx("mta: SSL_CTX_get_ex_new_index");
	id = (uintptr_t)SSL_CTX_get_ex_data(ctx, mta_tls_ctx_index);
	if (id == 0) {
		id = ++mta_tls_ctx_last;
		if (SSL_CTX_set_ex_data(ctx, mta_tls_ctx_index, (void *)id) !=
		    1)
			fatalx("mta: SSL_CTX_set_ex_data");
	}
	return id;
}

static void
mta_tls_cache_key(const struct mta_conn *c, char *key, size_t keylen)
{
	unsigned port = 0;

	if (c->addr.ss_family == AF_INET)
		port = ntohs(((const struct sockaddr_in *)
		    (const void *)&c->addr)->sin_port);
	else if (c->addr.ss_family == AF_INET6)
		port = ntohs(((const struct sockaddr_in6 *)
		    (const void *)&c->addr)->sin6_port);
	snprintf(key, keylen, "%ju|%d|%s|%u",
	    (uintmax_t)mta_tls_ctx_id(c->ssl_ctx), c->tls_verify ? 1 : 0,
	    c->host, port);
}

static struct mta_tls_cache_entry *
mta_tls_cache_find(const char *key)
{
	for (size_t i = 0; i < MTA_TLS_CACHE_MAX; i++)
		if (mta_tls_cache[i].sess != NULL &&
		    strcmp(mta_tls_cache[i].key, key) == 0)
			return &mta_tls_cache[i];
	return NULL;
}

/*
 * Remember a copy of ssl's session (TLS 1.3 tickets arrive after the
 * handshake, so this is called again later on).  A copy, because OpenSSL
 * marks the session of an SSL freed without a close_notify as not
 * resumable, and servers rarely wait for one after QUIT.
 */
static void
mta_tls_cache_put(struct mta_conn *c, SSL *ssl)
{
	struct mta_tls_cache_entry *e;
	char key[sizeof(e->key)];
	SSL_SESSION *cur, *sess;

	if ((cur = SSL_get1_session(ssl)) == NULL)
		return;
	sess = SSL_SESSION_is_resumable(cur) ? SSL_SESSION_dup(cur) : NULL;
	SSL_SESSION_free(cur);
	if (sess == NULL)
		return;
	mta_tls_cache_key(c, key, sizeof(key));
	if ((e = mta_tls_cache_find(key)) == NULL) {
		e = &mta_tls_cache[0];
		for (size_t i = 1; i < MTA_TLS_CACHE_MAX && e->sess; i++)
			if (mta_tls_cache[i].sess == NULL ||
			    mta_tls_cache[i].used < e->used)
				e = &mta_tls_cache[i];
		if (!strlcpy_ok(e->key, key, sizeof(e->key))) {
			SSL_SESSION_free(sess);
			return;
		}
	}
	SSL_SESSION_free(e->sess);
	e->sess = sess;
	e->used = ++mta_tls_cache_clock;
}

static void
mta_tls_cache_drop(struct mta_conn *c)
{
	struct mta_tls_cache_entry *e;
	char key[sizeof(e->key)];

	mta_tls_cache_key(c, key, sizeof(key));
	if ((e = mta_tls_cache_find(key)) != NULL) {
		SSL_SESSION_free(e->sess);
		memset(e, 0, sizeof(*e));
	}
}

static SSL_SESSION *
mta_tls_cache_get(struct mta_conn *c)
{
	struct mta_tls_cache_entry *e;
	char key[sizeof(e->key)];

	mta_tls_cache_key(c, key, sizeof(key));
	if ((e = mta_tls_cache_find(key)) == NULL)
		return NULL;
	if ((time_t)(SSL_SESSION_get_time(e->sess) +
	    SSL_SESSION_get_timeout(e->sess)) < time(NULL)) {
		SSL_SESSION_free(e->sess);	/* expired */
		memset(e, 0, sizeof(*e));
		return NULL;
	}
	e->used = ++mta_tls_cache_clock;
	return e->sess;
}

/* --- helpers ------------------------------------------------------------- */

/* True if the content has a byte above 0x7f. */
static bool
mta_has_8bit(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)p[i] & 0x80)
			return true;
	return false;
}

/* A reply of our own ("553 5.6.7 text"), for local failures. */
static void
mta_local_reply(struct smtp_reply *r, const char *line)
{
	struct smtp_reply_parser p;

	smtp_reply_init(&p);
	if (smtp_reply_line(&p, line, strlen(line)) != SMTP_REPLY_DONE)
		fatalx("mta_local_reply: bad reply '%s'", line);
	*r = p.r;
}

/* Printable ASCII (UTF-8 allowed), no space when !spaces, 1..max bytes. */
static bool
mta_text_ok(const char *s, size_t max, bool spaces)
{
	size_t n = 0;

	if (s == NULL)
		return false;
	for (; s[n] != '\0'; n++) {
		unsigned char ch = (unsigned char)s[n];

		if (n >= max || ch < 0x20 || ch == 0x7f ||
		    (ch == ' ' && !spaces))
			return false;
	}
	return n > 0;
}

/* An address from the envelope, to go between < and >. */
static bool
mta_path_ok(const char *addr)
{
	for (size_t n = 0; addr[n] != '\0'; n++) {
		unsigned char ch = (unsigned char)addr[n];

		if (n >= SMTP_PATH_MAX || ch < 0x20 || ch == 0x7f ||
		    ch == '<' || ch == '>')
			return false;
	}
	return true;
}

/* ORCPT: "addr-type;xtext" (RFC 3461 4.2). */
static bool
mta_orcpt_ok(const char *s)
{
	const char *semi = strchr(s, ';');

	if (semi == NULL || semi == s || strlen(s) > SMTP_ORCPT_MAX)
		return false;
	for (const char *p = s; p < semi; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
	return semi[1] != '\0' && smtp_xtext_valid(semi + 1);
}

static bool
mta_is_ip_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 ||
	    inet_pton(AF_INET6, host, buf) == 1;
}

static void
mta_send_line(struct mta_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
mta_send_line(struct mta_conn *c, const char *fmt, ...)
{
	struct buf b;
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatal("mta_send_line");
	buf_init(&b);
	buf_add(&b, s, (size_t)n);
	buf_add(&b, "\r\n", 2);
	evbuffer_add(bufferevent_get_output(c->bev), b.data, b.len);
	buf_free(&b);
	free(s);
}

/* A line that carries a secret: the copies are wiped. */
static void
mta_send_secret(struct mta_conn *c, const char *prefix, const void *raw,
    size_t rawlen)
{
	size_t enclen = sodium_base64_ENCODED_LEN(rawlen,
	    sodium_base64_VARIANT_ORIGINAL);
	size_t plen = strlen(prefix);
	char *line = xmalloc(plen + enclen + 2);

	memcpy(line, prefix, plen);
	sodium_bin2base64(line + plen, enclen, raw, rawlen,
	    sodium_base64_VARIANT_ORIGINAL);
	plen += strlen(line + plen);
	memcpy(line + plen, "\r\n", 2);
	evbuffer_add(bufferevent_get_output(c->bev), line, plen + 2);
	sodium_memzero(line, plen + 2);
	free(line);
}

static enum mta_stage
mta_stage_of(const struct mta_conn *c)
{
	switch (c->state) {
	case MTA_S_CONNECTING:
		return MTA_STAGE_CONNECT;
	case MTA_S_TLS:
		return MTA_STAGE_TLS;
	case MTA_S_GREETING:
		return MTA_STAGE_GREETING;
	case MTA_S_EHLO:
	case MTA_S_HELO:
		return MTA_STAGE_EHLO;
	case MTA_S_STARTTLS:
		return MTA_STAGE_STARTTLS;
	case MTA_S_AUTH:
		return MTA_STAGE_AUTH;
	case MTA_S_TX:
		if (c->ncmd_replied == 0)
			return MTA_STAGE_MAIL;
		if (c->ncmd_replied <= c->nsend)
			return MTA_STAGE_RCPT;
		return MTA_STAGE_DATA;
	case MTA_S_CONTENT:
		return MTA_STAGE_DOT;
	case MTA_S_RSET:
		return MTA_STAGE_RSET;
	default:
		return MTA_STAGE_MAIL;	/* idle, quit, dead */
	}
}

/* --- state, timers, the deferred callbacks ------------------------------- */

static void
mta_arm_timer(struct mta_conn *c, unsigned seconds)
{
	struct timeval tv = { (time_t)seconds, 0 };

	if (seconds == 0)
		evtimer_del(c->ev_timer);
	else
		evtimer_add(c->ev_timer, &tv);
}

static void
mta_enter_state(struct mta_conn *c, enum mta_state st)
{
	struct timeval wtv = { (time_t)c->timeout_command, 0 };
	unsigned t;

	if (log_enabled(LOG_LVL_DEBUG))
		log_event(LOG_LVL_DEBUG, "mta.state", "host", c->host,
		    "peer", c->peer, "from", mta_state_names[c->state],
		    "to", mta_state_names[st], NULL);
	c->state = st;
	switch (st) {
	case MTA_S_CONNECTING:
		t = c->timeout_connect;
		break;
	case MTA_S_CONTENT:
		t = c->timeout_data;	/* re-armed on progress */
		wtv.tv_sec = (time_t)c->timeout_data;
		break;
	case MTA_S_IDLE:
	case MTA_S_DEAD:
		t = 0;
		break;
	case MTA_S_QUIT:
		t = c->timeout_command < MTA_QUIT_TIMEOUT ?
		    c->timeout_command : MTA_QUIT_TIMEOUT;
		break;
	default:
		t = c->timeout_command;
		break;
	}
	mta_arm_timer(c, t);
	if (c->bev != NULL && st != MTA_S_DEAD)
		bufferevent_set_timeouts(c->bev, NULL, &wtv);
}

static void
mta_defer(struct mta_conn *c, enum mta_defer what)
{
	if (what != MTA_DEFER_NONE)
		c->defer = what;
	event_active(c->ev_defer, EV_TIMEOUT, 0);
}

/* Stop all I/O; the connection is freed from ev_defer later. */
static void
mta_close(struct mta_conn *c)
{
	if (c->tls_on && c->bev != NULL) {
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

		if (ssl != NULL)
			mta_tls_cache_put(c, ssl);
	}
	if (c->bev != NULL)
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	evtimer_del(c->ev_timer);
	c->state = MTA_S_DEAD;
}

static void
mta_free_later(struct mta_conn *c)
{
	mta_close(c);
	c->free_pending = true;
	mta_defer(c, MTA_DEFER_NONE);
}

static void
mta_tx_clear(struct mta_conn *c)
{
	free(c->txr.rcpt);
	free(c->txr.rcpt_lost);
	free(c->accepted);
	free(c->sendmap);
	c->txr.rcpt = NULL;
	c->txr.rcpt_lost = NULL;
	c->accepted = NULL;
	c->sendmap = NULL;
	memset(&c->tx, 0, sizeof(c->tx));
}

/* Every connection not yet freed, for mta_shutdown. */
static LIST_HEAD(, mta_conn) mta_conns = LIST_HEAD_INITIALIZER(mta_conns);

static void
mta_free(struct mta_conn *c)
{
	LIST_REMOVE(c, all);
	if (log_enabled(LOG_LVL_DEBUG))
		log_event(LOG_LVL_DEBUG, "mta.free", "host", c->host,
		    "peer", c->peer, NULL);
	if (c->tls_on && c->bev != NULL) {
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

		if (ssl != NULL)
			mta_tls_cache_put(c, ssl);
	}
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	if (c->ev_timer != NULL)
		event_free(c->ev_timer);
	if (c->ev_defer != NULL)
		event_free(c->ev_defer);
	mta_tx_clear(c);
	buf_free(&c->chunk);
	free_secret(c->auth_user);
	free_secret(c->auth_pass);
	free_secret(c->xoauth2_token);
	free(c);
}

static void
mta_defer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mta_conn *c = arg;
	enum mta_defer d = c->defer;
	struct mta_tx_result res;

	c->defer = MTA_DEFER_NONE;
	if (d == MTA_DEFER_READY && !c->aborted) {
		if (c->cres.ok)
			c->ready_cb(c->ready_arg, c, &c->cres);
		else
			c->ready_cb(c->ready_arg, NULL, &c->cres);
	} else if (d == MTA_DEFER_SENT) {
		/* detached: the callback may start the next transaction */
		res = c->txr;
		c->txr.rcpt = NULL;
		c->txr.rcpt_lost = NULL;
		mta_tx_clear(c);
		if (res.tx.conn_lost)
			c->user_gone = true;
		if (!c->aborted)
			c->sent_cb(c->sent_arg, c, &res);
		free(res.rcpt);
		free(res.rcpt_lost);
	}
	if (c->free_pending && c->defer == MTA_DEFER_NONE)
		mta_free(c);
}

static void
mta_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mta_conn *c = arg;

	if (c->state == MTA_S_QUIT) {
		mta_free_later(c);
		return;
	}
	mta_lost(c, "timeout waiting for the server (%s)",
	    mta_state_names[c->state]);
}

/* --- connection setup ---------------------------------------------------- */

static void
mta_log_failure(const struct mta_conn *c, const struct mta_result *res)
{
	char code[8];

	snprintf(code, sizeof(code), "%d", res->reply.code);
	log_event(LOG_LVL_WARN, "mta.failed", "host", c->host,
	    "peer", c->peer, "stage", mta_stage_names[res->stage],
	    "reply", res->reply.code ? code : NULL,
	    "enhanced", res->reply.enhanced[0] ? res->reply.enhanced : NULL,
	    "text", res->reply.code ? res->reply.text : NULL,
	    "error", res->error[0] ? res->error : NULL, NULL);
}

/*
 * The connection could not be made ready.  With a reply (not lost) the
 * server is still there: QUIT in the background.  ready_cb gets NULL.
 */
static void
mta_connect_fail(struct mta_conn *c, enum mta_stage stage,
    const struct smtp_reply *r, bool lost, const char *error)
{
	c->cres.ok = false;
	c->cres.stage = stage;
	c->cres.conn_lost = lost;
	if (r != NULL)
		c->cres.reply = *r;
	else
		memset(&c->cres.reply, 0, sizeof(c->cres.reply));
	strlcpy_ok(c->cres.error, error ? error : "",
	    sizeof(c->cres.error));
	mta_log_failure(c, &c->cres);
	c->user_gone = true;
	if (!lost && r != NULL && r->code != 421 && c->bev != NULL) {
		mta_send_line(c, "QUIT");
		mta_enter_state(c, MTA_S_QUIT);
	} else {
		mta_close(c);
		c->free_pending = true;
	}
	mta_defer(c, MTA_DEFER_READY);
}

static void
mta_ready(struct mta_conn *c, const struct smtp_reply *r)
{
	c->cres.ok = true;
	c->cres.reply = *r;
	log_event(LOG_LVL_INFO, "mta.connected", "host", c->host,
	    "peer", c->peer, "tls", c->tls_on ? mta_tls_version(c) : "none",
	    "resumed", c->tls_on ? (mta_tls_resumed(c) ? "yes" : "no") : NULL,
	    "auth", c->mech != MTA_MECH_NONE ? "yes" : NULL, NULL);
	mta_enter_state(c, MTA_S_IDLE);
	mta_defer(c, MTA_DEFER_READY);
}

static void
mta_setup_bev(struct mta_conn *c, struct bufferevent *bev)
{
	c->bev = bev;
	bufferevent_setcb(bev, mta_read_cb, mta_write_cb, mta_event_cb, c);
	bufferevent_setwatermark(bev, EV_READ, 0, MTA_READ_HIGHWAT);
	bufferevent_setwatermark(bev, EV_WRITE, MTA_CHUNK / 2, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* Wrap the connection in TLS (a filter over the socket's bufferevent). */
static void
mta_start_tls(struct mta_conn *c)
{
	struct bufferevent *nb;
	SSL_SESSION *sess;
	SSL *ssl;

	c->tls_verify = c->tls == MTA_TLS_VERIFY || c->tls == MTA_TLS_IMPLICIT;
	if ((ssl = SSL_new(c->ssl_ctx)) == NULL)
		goto fail;
	SSL_set_verify(ssl, c->tls_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
	    NULL);
	if (!mta_is_ip_literal(c->host) &&
	    SSL_set_tlsext_host_name(ssl, c->host) != 1)
		goto fail;
	if (c->tls_verify) {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(ssl, c->host) != 1)
			goto fail;
	}
	if ((sess = mta_tls_cache_get(c)) != NULL)
		SSL_set_session(ssl, sess);
	/* on failure libevent may have freed ssl and the socket's bev */
	nb = bufferevent_openssl_filter_new(c->base, c->bev, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (nb == NULL)
		fatalx("mta: bufferevent_openssl_filter_new");
	bufferevent_openssl_set_allow_dirty_shutdown(nb, 1);
	/* the filter encrypts only while the socket's output is short, so a
	 * big message is not encrypted into memory all at once */
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, MTA_CHUNK);
	mta_setup_bev(c, nb);
	mta_enter_state(c, MTA_S_TLS);
	return;
fail:
	SSL_free(ssl);
	ERR_clear_error();
	mta_enter_state(c, MTA_S_TLS);
	mta_lost(c, "cannot set up TLS");
}

static void
mta_send_ehlo(struct mta_conn *c)
{
	smtp_reply_init(&c->parser);
	mta_send_line(c, "EHLO %s", c->helo);
	mta_enter_state(c, MTA_S_EHLO);
}

static void
mta_tls_done(struct mta_conn *c)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

	if (ssl == NULL)
		fatalx("mta_tls_done: no SSL");
	if (c->tls_verify && (SSL_get_verify_result(ssl) != X509_V_OK ||
	    SSL_get0_peer_certificate(ssl) == NULL)) {
		mta_lost(c, "TLS: certificate not verified");
		return;
	}
	c->tls_on = true;
	if (log_enabled(LOG_LVL_DEBUG)) {
		char desc[96];

		tls_describe(ssl, desc, sizeof(desc));
		log_event(LOG_LVL_DEBUG, "mta.tls", "host", c->host,
		    "peer", c->peer, "tls", desc, "resumed",
		    SSL_session_reused(ssl) ? "yes" : "no", NULL);
	}
	if (c->tls == MTA_TLS_IMPLICIT)
		mta_enter_state(c, MTA_S_GREETING);
	else
		mta_send_ehlo(c);	/* RFC 3207 4.2: start afresh */
}

static void
mta_auth_fail_local(struct mta_conn *c, const char *line)
{
	struct smtp_reply r;

	mta_local_reply(&r, line);
	mta_connect_fail(c, MTA_STAGE_AUTH, &r, false, r.text);
}

static void
mta_auth_start(struct mta_conn *c, const struct smtp_reply *last)
{
	if (c->auth_user == NULL) {
		mta_ready(c, last);
		return;
	}
	if (!c->tls_on && c->tls != MTA_TLS_NONE) {
		mta_auth_fail_local(c, "454 4.7.10 Credentials are not sent "
		    "without TLS");
		return;
	}
	if (!(c->ehlo.ext & EHLO_AUTH)) {
		mta_auth_fail_local(c, "454 4.7.0 The server does not offer "
		    "AUTH");
		return;
	}
	c->auth_steps = 0;
	if (c->xoauth2_token != NULL) {
		struct buf b;

		if (!(c->ehlo.auth & EHLO_AUTH_XOAUTH2)) {
			mta_auth_fail_local(c, "454 4.7.0 The server does not "
			    "offer AUTH XOAUTH2");
			return;
		}
		c->mech = MTA_MECH_XOAUTH2;
		buf_init(&b);
		buf_printf(&b, "user=%s\001auth=Bearer %s\001\001",
		    c->auth_user, c->xoauth2_token);
		mta_send_secret(c, "AUTH XOAUTH2 ", b.data, b.len);
		sodium_memzero(b.data, b.len);
		buf_free(&b);
	} else if (c->ehlo.auth & EHLO_AUTH_PLAIN) {
		size_t ul = strlen(c->auth_user), pl = strlen(c->auth_pass);
		char raw[1 + SASL_USER_MAX + 1 + SASL_PASS_MAX];

		c->mech = MTA_MECH_PLAIN;
		raw[0] = '\0';
		memcpy(raw + 1, c->auth_user, ul);
		raw[1 + ul] = '\0';
		memcpy(raw + 2 + ul, c->auth_pass, pl);
		mta_send_secret(c, "AUTH PLAIN ", raw, 2 + ul + pl);
		sodium_memzero(raw, sizeof(raw));
	} else if (c->ehlo.auth & EHLO_AUTH_LOGIN) {
		c->mech = MTA_MECH_LOGIN;
		mta_send_line(c, "AUTH LOGIN");
	} else {
		mta_auth_fail_local(c, "454 4.7.0 No common AUTH mechanism "
		    "with the server");
		return;
	}
	mta_enter_state(c, MTA_S_AUTH);
}

/* After EHLO or HELO: STARTTLS if the policy says so, then AUTH. */
static void
mta_after_ehlo(struct mta_conn *c, const struct smtp_reply *r)
{
	if (c->tls_on) {
		/* the TLS 1.3 ticket came before the EHLO reply */
		mta_tls_cache_put(c, bufferevent_openssl_get_ssl(c->bev));
	} else if (c->tls != MTA_TLS_NONE && !c->starttls_tried) {
		if (c->ehlo.ext & EHLO_STARTTLS) {
			c->starttls_tried = true;
			mta_send_line(c, "STARTTLS");
			mta_enter_state(c, MTA_S_STARTTLS);
			return;
		}
		if (c->tls != MTA_TLS_OPPORTUNISTIC) {
			struct smtp_reply lr;

			mta_local_reply(&lr, "454 4.7.4 TLS is required but "
			    "the server does not offer STARTTLS");
			mta_connect_fail(c, MTA_STAGE_STARTTLS, &lr, false,
			    lr.text);
			return;
		}
	}
	mta_auth_start(c, r);
}

static void
mta_connected(struct mta_conn *c)
{
	if (c->tls == MTA_TLS_IMPLICIT)
		mta_start_tls(c);
	else
		mta_enter_state(c, MTA_S_GREETING);
}

static bool
mta_params_ok(const struct mta_conn_params *p, char *err, size_t errlen)
{
	if (p->addrlen == 0 || p->addrlen > sizeof(p->addr) ||
	    (p->addr.ss_family != AF_INET && p->addr.ss_family != AF_INET6)) {
		snprintf(err, errlen, "bad address");
		return false;
	}
	if (!mta_text_ok(p->host, SMTP_DOMAIN_MAX, false)) {
		snprintf(err, errlen, "bad host name");
		return false;
	}
	if (!mta_text_ok(p->helo, SMTP_DOMAIN_MAX, false)) {
		snprintf(err, errlen, "bad HELO name");
		return false;
	}
	if (p->tls != MTA_TLS_NONE && p->ssl_ctx == NULL) {
		snprintf(err, errlen, "TLS wanted but no TLS context");
		return false;
	}
	if (p->tls > MTA_TLS_IMPLICIT) {
		snprintf(err, errlen, "bad TLS policy");
		return false;
	}
	if (p->auth_user == NULL)
		return true;
	if (!mta_text_ok(p->auth_user, SASL_USER_MAX, true) ||
	    (p->xoauth2_token == NULL &&
	    (p->auth_pass == NULL || strlen(p->auth_pass) > SASL_PASS_MAX)) ||
	    (p->xoauth2_token != NULL &&
	    !mta_text_ok(p->xoauth2_token, MTA_TOKEN_MAX, false))) {
		snprintf(err, errlen, "bad AUTH credentials (length or "
		    "characters)");
		return false;
	}
	return true;
}

struct mta_conn *
mta_connect(struct event_base *base, const struct mta_conn_params *p,
    mta_ready_cb cb, void *arg)
{
	struct mta_conn *c = xcalloc(1, sizeof(*c));
	struct bufferevent *bev;
	char err[128], ip[INET6_ADDRSTRLEN];

	LIST_INSERT_HEAD(&mta_conns, c, all);
	c->base = base;
	buf_init(&c->chunk);
	c->ready_cb = cb;
	c->ready_arg = arg;
	c->state = MTA_S_CONNECTING;
	if ((c->ev_defer = event_new(base, -1, 0, mta_defer_cb, c)) == NULL ||
	    (c->ev_timer = evtimer_new(base, mta_timer_cb, c)) == NULL)
		fatalx("mta_connect: event_new");
	c->timeout_connect = p->timeout_connect ? p->timeout_connect :
	    MTA_DEFAULT_CONNECT;
	c->timeout_command = p->timeout_command ? p->timeout_command :
	    MTA_DEFAULT_COMMAND;
	c->timeout_data = p->timeout_data ? p->timeout_data :
	    MTA_DEFAULT_DATA;
	if (!mta_params_ok(p, err, sizeof(err))) {
		strlcpy_ok(c->host, "-", sizeof(c->host));
		mta_connect_fail(c, MTA_STAGE_CONNECT, NULL, false, err);
		return c;
	}
	memcpy(&c->addr, &p->addr, p->addrlen);
	c->addrlen = p->addrlen;
	strlcpy_ok(c->host, p->host, sizeof(c->host));
	strlcpy_ok(c->helo, p->helo, sizeof(c->helo));
	c->tls = p->tls;
	c->ssl_ctx = p->ssl_ctx;
	if (p->auth_user != NULL) {
		c->auth_user = xstrdup(p->auth_user);
		if (p->xoauth2_token != NULL)
			c->xoauth2_token = xstrdup(p->xoauth2_token);
		else
			c->auth_pass = xstrdup(p->auth_pass);
	}
	ip[0] = '\0';
	if (c->addr.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)
		    &c->addr)->sin_addr, ip, sizeof(ip));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)
		    &c->addr)->sin6_addr, ip, sizeof(ip));
	strlcpy_ok(c->peer, ip, sizeof(c->peer));
	smtp_reply_init(&c->parser);

	if ((bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)) ==
	    NULL) {
		mta_connect_fail(c, MTA_STAGE_CONNECT, NULL, true,
		    "cannot create a bufferevent");
		return c;
	}
	mta_setup_bev(c, bev);
	mta_enter_state(c, MTA_S_CONNECTING);
	if (bufferevent_socket_connect(bev, (struct sockaddr *)&c->addr,
	    (int)c->addrlen) != 0)
		mta_lost(c, "connect: %s", strerror(errno));
	return c;
}

/* --- the transaction ----------------------------------------------------- */

/* The first failure of a transaction is its cause. */
static void
mta_tx_fail(struct mta_conn *c, enum mta_stage stage,
    const struct smtp_reply *r)
{
	if (c->failed)
		return;
	c->failed = true;
	c->txr.tx.ok = false;
	c->txr.tx.stage = stage;
	if (r != NULL)
		c->txr.tx.reply = *r;
}

/* Recipients still without a final reply get r. */
static void
mta_tx_settle(struct mta_conn *c, const struct smtp_reply *r, bool only_ok)
{
	for (size_t i = 0; i < c->tx.nrcpt; i++) {
		if (!c->txr.rcpt_lost[i])
			continue;
		if (only_ok && !c->accepted[i])
			continue;
		c->txr.rcpt[i] = *r;
		c->txr.rcpt_lost[i] = false;
	}
}

static void
mta_tx_log(const struct mta_conn *c)
{
	const struct mta_tx_result *t = &c->txr;
	char acc[32], code[8];

	if (t->tx.ok) {
		snprintf(acc, sizeof(acc), "%zu/%zu", c->naccepted,
		    c->tx.nrcpt);
		snprintf(code, sizeof(code), "%d", t->tx.reply.code);
		log_event(LOG_LVL_INFO, "mta.sent", "qid", c->tx.env->id,
		    "host", c->host, "peer", c->peer, "accepted", acc,
		    "reply", code, "text", t->tx.reply.text, NULL);
		return;
	}
	mta_log_failure(c, &t->tx);
}

/*
 * Hand the result to the user from ev_defer.  lost: the connection is
 * gone and is freed after sent_cb.
 */
static void
mta_tx_report(struct mta_conn *c, bool lost, const char *error)
{
	c->txr.tx.conn_lost = lost;
	if (lost) {
		c->txr.tx.ok = false;
		if (!c->failed)
			c->txr.tx.stage = mta_stage_of(c);
		c->failed = true;
		strlcpy_ok(c->txr.tx.error, error ? error : "",
		    sizeof(c->txr.tx.error));
		/* accepted but no final reply: no reply at all */
		for (size_t i = 0; i < c->tx.nrcpt; i++)
			if (c->txr.rcpt_lost[i])
				memset(&c->txr.rcpt[i], 0,
				    sizeof(c->txr.rcpt[i]));
		mta_close(c);
		c->free_pending = true;
	} else
		mta_enter_state(c, MTA_S_IDLE);
	mta_tx_log(c);
	mta_defer(c, MTA_DEFER_SENT);
}

/* The transaction is over: RSET after a failure, then report. */
static void
mta_tx_finish(struct mta_conn *c)
{
	if (c->failed) {
		mta_send_line(c, "RSET");
		mta_enter_state(c, MTA_S_RSET);
		return;
	}
	mta_tx_report(c, false, NULL);
}

static void
mta_cmd_rcpt(struct mta_conn *c, struct buf *b, size_t n)
{
	const struct env_rcpt *r =
	    &c->tx.env->rcpt[c->tx.rcpt_idx[c->sendmap[n]]];

	buf_printf(b, "RCPT TO:<%s>", r->addr);
	if (c->ehlo.ext & EHLO_DSN) {
		if (r->notify & SMTP_NOTIFY_NEVER)
			buf_adds(b, " NOTIFY=NEVER");
		else if (r->notify & (SMTP_NOTIFY_SUCCESS |
		    SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY)) {
			const char *sep = " NOTIFY=";

			if (r->notify & SMTP_NOTIFY_SUCCESS) {
				buf_printf(b, "%sSUCCESS", sep);
				sep = ",";
			}
			if (r->notify & SMTP_NOTIFY_FAILURE) {
				buf_printf(b, "%sFAILURE", sep);
				sep = ",";
			}
			if (r->notify & SMTP_NOTIFY_DELAY)
				buf_printf(b, "%sDELAY", sep);
		}
		if (r->orcpt[0] != '\0') {
			if (mta_orcpt_ok(r->orcpt))
				buf_printf(b, " ORCPT=%s", r->orcpt);
			else
				log_warnx("mta: %s: ORCPT of <%s> is not "
				    "valid, not sent", c->tx.env->id, r->addr);
		}
	}
	buf_add(b, "\r\n", 2);
}

static void
mta_cmd_mail(struct mta_conn *c, struct buf *b)
{
	const struct envelope *e = c->tx.env;

	buf_printf(b, "MAIL FROM:<%s>", e->mail_from);
	if (c->ehlo.ext & EHLO_SIZE)
		buf_printf(b, " SIZE=%zu", c->tx.content_len);
	if (c->ehlo.ext & EHLO_8BITMIME) {
		if (e->body == SMTP_BODY_8BITMIME)
			buf_adds(b, " BODY=8BITMIME");
		else if (e->body == SMTP_BODY_7BIT)
			buf_adds(b, " BODY=7BIT");
	}
	if (e->smtputf8)
		buf_adds(b, " SMTPUTF8");
	if (c->ehlo.ext & EHLO_DSN) {
		if (e->ret == SMTP_RET_FULL)
			buf_adds(b, " RET=FULL");
		else if (e->ret == SMTP_RET_HDRS)
			buf_adds(b, " RET=HDRS");
		if (e->envid[0] != '\0') {
			if (strlen(e->envid) <= SMTP_ENVID_MAX &&
			    smtp_xtext_valid(e->envid))
				buf_printf(b, " ENVID=%s", e->envid);
			else
				log_warnx("mta: %s: ENVID is not valid, not "
				    "sent", e->id);
		}
	}
	buf_add(b, "\r\n", 2);
}

/* Send what comes next when not pipelining (or after the last reply). */
static void
mta_tx_next(struct mta_conn *c)
{
	struct buf b;

	if (c->ncmd_replied < c->ncmd_sent)
		return;			/* more pipelined replies to come */
	if (!c->mail_ok) {
		mta_tx_finish(c);
		return;
	}
	buf_init(&b);
	if (c->ncmd_replied <= c->nsend)
		mta_cmd_rcpt(c, &b, c->ncmd_replied - 1);
	else if (c->naccepted == 0) {
		buf_free(&b);
		mta_tx_fail(c, MTA_STAGE_RCPT, &c->last_refusal);
		mta_tx_finish(c);
		return;
	} else
		buf_adds(&b, "DATA\r\n");
	evbuffer_add(bufferevent_get_output(c->bev), b.data, b.len);
	buf_free(&b);
	c->ncmd_sent++;
}

/* The reply to MAIL, a RCPT or DATA, in order. */
static void
mta_tx_reply(struct mta_conn *c, const struct smtp_reply *r)
{
	size_t n = c->ncmd_replied++;
	int cls = r->code / 100;
	bool ok = cls == 2;

	mta_arm_timer(c, c->timeout_command);	/* per command */
	/* MAIL and RCPT get 2xx, 4xx or 5xx; DATA 354, 4xx or 5xx */
	if (n <= c->nsend ? cls == 3 : (cls == 2 ||
	    (cls == 3 && r->code != 354))) {
		mta_lost(c, "unexpected reply %d to %s", r->code,
		    n == 0 ? "MAIL" : n <= c->nsend ? "RCPT" : "DATA");
		return;
	}

	if (n == 0) {
		if (ok)
			c->mail_ok = true;
		else {
			mta_tx_fail(c, MTA_STAGE_MAIL, r);
			mta_tx_settle(c, r, false);
		}
	} else if (n <= c->nsend) {
		size_t i = c->sendmap[n - 1];

		if (c->mail_ok && ok) {
			c->accepted[i] = true;
			c->naccepted++;
		} else if (c->mail_ok) {
			c->txr.rcpt[i] = *r;
			c->txr.rcpt_lost[i] = false;
			c->last_refusal = *r;
		}
	} else {
		bool want = c->mail_ok && c->naccepted > 0;

		if (r->code == 354) {
			c->data_discard = !want;
			c->content_off = 0;
			c->content_bol = true;
			c->content_done = false;
			mta_enter_state(c, MTA_S_CONTENT);
			mta_content_fill(c);
			return;
		}
		if (want) {
			mta_tx_fail(c, MTA_STAGE_DATA, r);
			mta_tx_settle(c, r, true);
		} else if (c->mail_ok)
			mta_tx_fail(c, MTA_STAGE_RCPT, &c->last_refusal);
		mta_tx_finish(c);
		return;
	}
	mta_tx_next(c);
}

/*
 * Queue more content: up to MTA_CHUNK bytes in the output, line ends
 * normalised to CRLF, dot-stuffed; at the end the last CRLF and ".".
 * Built in c->chunk and added at once: a TLS filter writes a record for
 * every evbuffer_add.
 */
static void
mta_content_fill(struct mta_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	const char *s = c->tx.content;
	size_t len = c->tx.content_len, i = c->content_off;
	size_t have = evbuffer_get_length(out);
	struct buf *b = &c->chunk;

	if (c->content_done)
		return;
	if (c->data_discard)
		i = len;	/* nothing goes out but the dot */
	buf_reset(b);
	while (i < len && have + b->len < MTA_CHUNK) {
		size_t start = i;

		if (c->content_bol && s[i] == '.')
			buf_addc(b, '.');
		while (i < len && s[i] != '\r' && s[i] != '\n')
			i++;
		if (i > start) {
			buf_add(b, s + start, i - start);
			c->content_bol = false;
		}
		if (i == len)
			break;
		/* CRLF, or a bare CR or LF: all end the line as CRLF */
		if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n')
			i += 2;
		else
			i++;
		buf_add(b, "\r\n", 2);
		c->content_bol = true;
	}
	c->content_off = i;
	if (i == len) {
		if (!c->content_bol && !c->data_discard)
			buf_add(b, "\r\n", 2);
		buf_add(b, ".\r\n", 3);
		c->content_done = true;
	}
	evbuffer_add(out, b->data, b->len);
	mta_arm_timer(c, c->timeout_data);	/* progress */
}

/* The reply to the dot (or one that came early, during the content). */
static void
mta_content_reply(struct mta_conn *c, const struct smtp_reply *r)
{
	bool ok = r->code / 100 == 2;

	if (r->code / 100 == 3) {
		mta_lost(c, "unexpected reply %d to the data", r->code);
		return;
	}
	if (!c->content_done) {
		if (ok) {
			mta_lost(c, "the server replied %d before the end of "
			    "the data", r->code);
			return;
		}
		/* the server gave up on the message: so do we */
		mta_tx_fail(c, MTA_STAGE_DOT, r);
		mta_tx_settle(c, r, true);
		mta_tx_report(c, true, "the server refused the message "
		    "before its end");
		return;
	}
	if (c->data_discard) {
		if (c->mail_ok)
			mta_tx_fail(c, MTA_STAGE_RCPT, &c->last_refusal);
		mta_tx_finish(c);
		return;
	}
	mta_tx_settle(c, r, true);
	if (!ok) {
		mta_tx_fail(c, MTA_STAGE_DOT, r);
		mta_tx_finish(c);
		return;
	}
	c->nmessages++;
	c->txr.tx.ok = true;
	c->txr.tx.stage = MTA_STAGE_DOT;
	c->txr.tx.reply = *r;
	mta_tx_report(c, false, NULL);
}

/* Report a transaction refused before anything was sent. */
static void
mta_tx_local_fail(struct mta_conn *c, enum mta_stage stage, const char *line)
{
	struct smtp_reply r;

	mta_local_reply(&r, line);
	mta_tx_fail(c, stage, &r);
	strlcpy_ok(c->txr.tx.error, r.text, sizeof(c->txr.tx.error));
	mta_tx_settle(c, &r, false);
	mta_tx_report(c, false, NULL);
}

int
mta_send(struct mta_conn *c, const struct mta_tx *tx, mta_sent_cb cb,
    void *arg)
{
	const struct envelope *e = tx->env;
	struct smtp_reply bad;
	struct buf b;

	if (c->user_gone || c->defer != MTA_DEFER_NONE ||
	    (c->state != MTA_S_IDLE && c->state != MTA_S_DEAD))
		return -1;
	if (e == NULL || tx->nrcpt == 0 || tx->rcpt_idx == NULL ||
	    (tx->content == NULL && tx->content_len > 0))
		return -1;
	for (size_t i = 0; i < tx->nrcpt; i++)
		if (tx->rcpt_idx[i] >= e->nrcpt)
			fatalx("mta_send: recipient index %zu out of range",
			    tx->rcpt_idx[i]);

	mta_tx_clear(c);
	memset(&c->txr, 0, sizeof(c->txr));
	c->tx = *tx;
	c->sent_cb = cb;
	c->sent_arg = arg;
	c->txr.nrcpt = tx->nrcpt;
	c->txr.rcpt = xcalloc(tx->nrcpt, sizeof(*c->txr.rcpt));
	c->txr.rcpt_lost = xcalloc(tx->nrcpt, sizeof(*c->txr.rcpt_lost));
	c->accepted = xcalloc(tx->nrcpt, sizeof(*c->accepted));
	c->sendmap = xcalloc(tx->nrcpt, sizeof(*c->sendmap));
	for (size_t i = 0; i < tx->nrcpt; i++)
		c->txr.rcpt_lost[i] = true;
	c->nsend = c->ncmd_sent = c->ncmd_replied = c->naccepted = 0;
	c->mail_ok = c->failed = c->data_discard = false;
	memset(&c->last_refusal, 0, sizeof(c->last_refusal));

	if (c->state == MTA_S_DEAD) {
		/* the server closed the connection while it was idle */
		c->txr.tx.stage = MTA_STAGE_MAIL;
		mta_tx_report(c, true, c->cres.error[0] ? c->cres.error :
		    "connection closed while idle");
		return 0;
	}
	if (!mta_path_ok(e->mail_from)) {
		mta_tx_local_fail(c, MTA_STAGE_MAIL, "553 5.1.7 Bad sender "
		    "address in the envelope");
		return 0;
	}
	mta_local_reply(&bad, "553 5.1.3 Bad recipient address in the "
	    "envelope");
	for (size_t i = 0; i < tx->nrcpt; i++) {
		const char *a = e->rcpt[tx->rcpt_idx[i]].addr;

		if (a[0] == '\0' || !mta_path_ok(a)) {
			c->txr.rcpt[i] = bad;
			c->txr.rcpt_lost[i] = false;
			c->last_refusal = bad;
		} else
			c->sendmap[c->nsend++] = i;
	}
	if (c->nsend == 0) {
		mta_tx_fail(c, MTA_STAGE_RCPT, &bad);
		mta_tx_report(c, false, NULL);
		return 0;
	}
	if (e->smtputf8 && !(c->ehlo.ext & EHLO_SMTPUTF8)) {
		mta_tx_local_fail(c, MTA_STAGE_MAIL, "553 5.6.7 The message "
		    "needs SMTPUTF8, which the server does not offer");
		return 0;
	}
	if (!(c->ehlo.ext & EHLO_8BITMIME) && e->body != SMTP_BODY_7BIT &&
	    mta_has_8bit(tx->content, tx->content_len)) {
		/* RFC 6152 wants a 7-bit downgrade here; like Postfix with
		 * content it cannot convert, it goes out as it is (nearly
		 * every server takes it), and the log says so */
		log_event(LOG_LVL_WARN, "mta.8bit_without_8bitmime", "qid",
		    e->id, "host", c->host, NULL);
	}
	if ((c->ehlo.ext & EHLO_SIZE) && c->ehlo.size > 0 &&
	    (uint64_t)tx->content_len > c->ehlo.size) {
		mta_tx_local_fail(c, MTA_STAGE_MAIL, "552 5.3.4 Message size "
		    "exceeds the server's fixed maximum message size");
		return 0;
	}

	buf_init(&b);
	mta_cmd_mail(c, &b);
	c->ncmd_sent = 1;
	if (c->ehlo.ext & EHLO_PIPELINING) {
		for (size_t n = 0; n < c->nsend; n++)
			mta_cmd_rcpt(c, &b, n);
		buf_adds(&b, "DATA\r\n");
		c->ncmd_sent += c->nsend + 1;
	}
	smtp_reply_init(&c->parser);
	evbuffer_add(bufferevent_get_output(c->bev), b.data, b.len);
	buf_free(&b);
	mta_enter_state(c, MTA_S_TX);
	return 0;
}

/* --- replies ------------------------------------------------------------- */

static void
mta_auth_reply(struct mta_conn *c, const struct smtp_reply *r)
{
	if (r->code / 100 == 2) {	/* 235; smtp-sink says 250 */
		mta_ready(c, r);
		return;
	}
	if (r->code != 334) {
		mta_connect_fail(c, MTA_STAGE_AUTH, r, false, NULL);
		return;
	}
	mta_arm_timer(c, c->timeout_command);
	if (++c->auth_steps > MTA_AUTH_STEPS_MAX) {
		mta_lost(c, "AUTH: too many challenges");
		return;
	}
	switch (c->mech) {
	case MTA_MECH_LOGIN:
		if (c->auth_steps == 1) {
			mta_send_secret(c, "", c->auth_user,
			    strlen(c->auth_user));
			return;
		}
		if (c->auth_steps == 2) {
			mta_send_secret(c, "", c->auth_pass,
			    strlen(c->auth_pass));
			return;
		}
		break;
	case MTA_MECH_XOAUTH2:
		/* an error in a challenge: answer empty, get the 5xx */
		if (c->auth_steps == 1) {
			mta_send_line(c, "%s", "");
			return;
		}
		break;
	default:
		break;
	}
	mta_send_line(c, "*");	/* cancel: the server replies 501 */
}

static void
mta_idle_reply(struct mta_conn *c, const struct smtp_reply *r)
{
	if (r->code == 421)
		log_event(LOG_LVL_INFO, "mta.closed", "host", c->host,
		    "peer", c->peer, "text", r->text, NULL);
	else
		log_event(LOG_LVL_WARN, "mta.protocol", "host", c->host,
		    "peer", c->peer, "error", "reply while idle", NULL);
	snprintf(c->cres.error, sizeof(c->cres.error), "the server said "
	    "%d while idle", r->code);
	mta_close(c);
}

static void
mta_reply(struct mta_conn *c, const struct smtp_reply *r)
{
	/* 421: the server is closing the connection, whatever we do */
	if (r->code == 421 && (c->state == MTA_S_TX ||
	    c->state == MTA_S_CONTENT || c->state == MTA_S_RSET)) {
		mta_tx_fail(c, mta_stage_of(c), r);
		mta_tx_settle(c, r, false);
		mta_tx_report(c, true, "the server closed the connection");
		return;
	}
	switch (c->state) {
	case MTA_S_GREETING:
		if (r->code != 220) {
			mta_connect_fail(c, MTA_STAGE_GREETING, r, false,
			    NULL);
			return;
		}
		mta_send_ehlo(c);
		return;
	case MTA_S_EHLO:
		if (r->code == 250) {
			smtp_ehlo_parse(r, &c->ehlo);
			mta_after_ehlo(c, r);
		} else if (r->code / 100 == 5) {
			mta_send_line(c, "HELO %s", c->helo);
			mta_enter_state(c, MTA_S_HELO);
		} else
			mta_connect_fail(c, MTA_STAGE_EHLO, r, false, NULL);
		return;
	case MTA_S_HELO:
		if (r->code != 250) {
			mta_connect_fail(c, MTA_STAGE_EHLO, r, false, NULL);
			return;
		}
		memset(&c->ehlo, 0, sizeof(c->ehlo));
		mta_after_ehlo(c, r);
		return;
	case MTA_S_STARTTLS:
		if (r->code == 220) {
			if (evbuffer_get_length(bufferevent_get_input(c->bev))
			    > 0) {
				mta_lost(c, "the server sent data after the "
				    "reply to STARTTLS");
				return;
			}
			mta_start_tls(c);
		} else if (c->tls == MTA_TLS_OPPORTUNISTIC)
			mta_auth_start(c, r);
		else
			mta_connect_fail(c, MTA_STAGE_STARTTLS, r, false,
			    NULL);
		return;
	case MTA_S_AUTH:
		mta_auth_reply(c, r);
		return;
	case MTA_S_IDLE:
		mta_idle_reply(c, r);
		return;
	case MTA_S_TX:
		mta_tx_reply(c, r);
		return;
	case MTA_S_CONTENT:
		mta_content_reply(c, r);
		return;
	case MTA_S_RSET:
		if (r->code / 100 != 2) {
			mta_tx_report(c, true, "the server refused RSET");
			return;
		}
		mta_tx_report(c, false, NULL);
		return;
	case MTA_S_QUIT:
		mta_free_later(c);
		return;
	default:
		fatalx("mta_reply: reply in state %s",
		    mta_state_names[c->state]);
	}
}

/* Read complete reply lines while the state wants them. */
static void
mta_input(struct mta_conn *c)
{
	char line[SMTP_REPLY_LINE_MAX];

	for (;;) {
		struct evbuffer *in;
		struct evbuffer_ptr p;
		size_t len;

		if (c->free_pending || c->state == MTA_S_DEAD ||
		    c->state == MTA_S_CONNECTING || c->state == MTA_S_TLS)
			return;
		in = bufferevent_get_input(c->bev);
		p = evbuffer_search(in, "\n", 1, NULL);
		if (p.pos < 0) {
			if (evbuffer_get_length(in) >= SMTP_REPLY_LINE_MAX)
				mta_lost(c, "reply line too long");
			return;
		}
		len = (size_t)p.pos;
		if (len + 1 > SMTP_REPLY_LINE_MAX) {
			mta_lost(c, "reply line too long");
			return;
		}
		if (evbuffer_remove(in, line, len + 1) != (int)(len + 1))
			fatalx("mta_input: evbuffer_remove");
		if (len > 0 && line[len - 1] == '\r')
			len--;
		switch (smtp_reply_line(&c->parser, line, len)) {
		case SMTP_REPLY_MORE:
			break;
		case SMTP_REPLY_DONE:
			mta_reply(c, &c->parser.r);
			break;
		case SMTP_REPLY_ERROR:
		default:
			mta_lost(c, "malformed reply from the server");
			return;
		}
	}
}

/* --- bufferevent callbacks ----------------------------------------------- */

static void
mta_read_cb(struct bufferevent *bev, void *arg)
{
	struct mta_conn *c = arg;

	if (c->state == MTA_S_DEAD) {
		evbuffer_drain(bufferevent_get_input(bev),
		    evbuffer_get_length(bufferevent_get_input(bev)));
		return;
	}
	mta_input(c);
}

static void
mta_write_cb(struct bufferevent *bev, void *arg)
{
	struct mta_conn *c = arg;

	if (c->state == MTA_S_CONTENT && !c->content_done)
		mta_content_fill(c);
}

static void
mta_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct mta_conn *c = arg;
	char msg[160];
	unsigned long e;
	SSL *ssl;
	long v;

	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == MTA_S_CONNECTING)
			mta_connected(c);
		else if (c->state == MTA_S_TLS)
			mta_tls_done(c);
		return;
	}
	if (c->state == MTA_S_QUIT || c->state == MTA_S_DEAD) {
		mta_free_later(c);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		mta_lost(c, "timeout sending to the server");
		return;
	}
	if (c->state == MTA_S_TLS) {
		ssl = bufferevent_openssl_get_ssl(bev);
		if (c->tls_verify && ssl != NULL &&
		    (v = SSL_get_verify_result(ssl)) != X509_V_OK) {
			mta_tls_cache_drop(c);
			mta_lost(c, "TLS: certificate verification failed: %s",
			    X509_verify_cert_error_string(v));
			return;
		}
		if ((e = bufferevent_get_openssl_error(bev)) != 0) {
			ERR_error_string_n(e, msg, sizeof(msg));
			while (bufferevent_get_openssl_error(bev) != 0)
				;
			mta_tls_cache_drop(c);
			mta_lost(c, "TLS handshake failed: %s", msg);
			return;
		}
		mta_tls_cache_drop(c);
		mta_lost(c, "TLS handshake failed: connection %s",
		    (what & BEV_EVENT_EOF) ? "closed" : "error");
		return;
	}
	if (what & BEV_EVENT_EOF) {
		mta_lost(c, "connection closed by the server");
		return;
	}
	if ((e = bufferevent_get_openssl_error(bev)) != 0) {
		ERR_error_string_n(e, msg, sizeof(msg));
		while (bufferevent_get_openssl_error(bev) != 0)
			;
		mta_lost(c, "TLS error: %s", msg);
		return;
	}
	if (c->state == MTA_S_CONNECTING)
		mta_lost(c, "connect: %s", evutil_socket_error_to_string(
		    EVUTIL_SOCKET_ERROR()));
	else
		mta_lost(c, "network error: %s", evutil_socket_error_to_string(
		    EVUTIL_SOCKET_ERROR()));
}

/* --- losing the connection ----------------------------------------------- */

/* No (more) replies: network error, timeout, TLS failure, violation. */
static void
mta_lost(struct mta_conn *c, const char *fmt, ...)
{
	char err[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, sizeof(err), fmt, ap);
	va_end(ap);
	switch (c->state) {
	case MTA_S_CONNECTING:
	case MTA_S_TLS:
	case MTA_S_GREETING:
	case MTA_S_EHLO:
	case MTA_S_HELO:
	case MTA_S_STARTTLS:
	case MTA_S_AUTH:
		mta_connect_fail(c, mta_stage_of(c), NULL, true, err);
		break;
	case MTA_S_TX:
	case MTA_S_CONTENT:
	case MTA_S_RSET:
		mta_tx_report(c, true, err);
		break;
	case MTA_S_IDLE:
		log_event(LOG_LVL_INFO, "mta.closed", "host", c->host,
		    "peer", c->peer, "error", err, NULL);
		strlcpy_ok(c->cres.error, err, sizeof(c->cres.error));
		mta_close(c);
		break;
	case MTA_S_QUIT:
	case MTA_S_DEAD:
		mta_free_later(c);
		break;
	}
}

/* --- the rest of the API ------------------------------------------------- */

void
mta_quit(struct mta_conn *c)
{
	if (c == NULL)
		return;
	c->aborted = true;
	c->user_gone = true;
	if (c->state != MTA_S_IDLE) {
		mta_free_later(c);
		return;
	}
	mta_send_line(c, "QUIT");
	mta_enter_state(c, MTA_S_QUIT);
}

void
mta_shutdown(void)
{
	struct mta_conn *c;

	while ((c = LIST_FIRST(&mta_conns)) != NULL)
		mta_free(c);
}

void
mta_abort(struct mta_conn *c)
{
	if (c == NULL)
		return;
	c->aborted = true;
	c->user_gone = true;
	mta_free_later(c);
}

const struct smtp_ehlo *
mta_ehlo(const struct mta_conn *c)
{
	return &c->ehlo;
}

const char *
mta_tls_version(const struct mta_conn *c)
{
	SSL *ssl;

	if (!c->tls_on || c->bev == NULL ||
	    (ssl = bufferevent_openssl_get_ssl(c->bev)) == NULL)
		return "";
	return SSL_get_version(ssl);
}

bool
mta_tls_resumed(const struct mta_conn *c)
{
	SSL *ssl;

	if (!c->tls_on || c->bev == NULL ||
	    (ssl = bufferevent_openssl_get_ssl(c->bev)) == NULL)
		return false;
	return SSL_session_reused(ssl) == 1;
}

unsigned
mta_messages_sent(const struct mta_conn *c)
{
	return c->nmessages;
}

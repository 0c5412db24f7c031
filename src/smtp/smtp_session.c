/*
 * smtp_session.c - one SMTP submission session (RFC 5321, 6409) as a
 * state machine driven by libevent.
 *
 * Input is processed one command at a time from the bufferevent's input
 * buffer, which makes PIPELINING (RFC 2920) free: replies are queued in
 * order and leave in as few packets as the kernel likes.  Whenever the
 * session waits for something asynchronous (password verification on a
 * worker, the spool's group commit) it stops consuming input; the
 * bufferevent's read watermark then pushes back on the client.
 *
 * Must never:
 *  - reply 250 to DATA before the spool reported the message durable;
 *  - accept anything but CRLF "." CRLF as the end of data, or queue a
 *    message that contained a bare CR or LF (SMTP smuggling);
 *  - process input that a client pipelined after STARTTLS in the clear;
 *  - let MAIL through without AUTH on a listener that requires it, unless
 *    the client is in trusted_networks (no open relay);
 *  - log an AUTH payload or password.
 */
#include "smtp/smtp_server.h"
#include "smtp/smtp_parse.h"
#include "smtp/smtp_data.h"
#include "smtp/sasl.h"
#include "smtp/msg_header.h"
#include "smtp/bulk.h"
#include "tenant/tenant.h"
#include "queue/envelope.h"
#include "queue/queue_id.h"
#include "queue/spool.h"
#include "mta/scheduler.h"
#include "billing/meter.h"
#include "table/credentials.h"
#include "tls/tls.h"
#include "common/log.h"
#include "common/util.h"
#include "common/workq.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include <openssl/err.h>

#define SESSION_OUTPUT_MAX	(256 * 1024)	/* stop reading commands */
#define SESSION_READ_HIGHWAT	(256 * 1024)

enum smtp_state {
	S_GREETING = 0,	/* before HELO/EHLO */
	S_HELO,		/* greeted, no transaction */
	S_MAIL,		/* MAIL accepted */
	S_RCPT,		/* at least one RCPT accepted */
	S_DATA,		/* reading message content */
	S_COMMIT,	/* waiting for the spool */
	S_AUTH_PLAIN,	/* waiting for the PLAIN response line */
	S_AUTH_USER,	/* LOGIN: waiting for the user name */
	S_AUTH_PASS,	/* LOGIN: waiting for the password */
	S_AUTH_VERIFY,	/* password being verified on a worker */
	S_CLOSING,	/* flushing the last reply, then free */
};

static const char *const state_names[] = {
	"greeting", "helo", "mail", "rcpt", "data", "commit", "auth-plain",
	"auth-user", "auth-pass", "auth-verify", "closing",
};

struct auth_job;

struct session {
	TAILQ_ENTRY(session)	 entry;
	struct server		*srv;
	struct srv_conf		*cfg;
	const struct conf_listener *lc;
	size_t			 lindex;
	struct bufferevent	*bev;
	enum smtp_state		 state;
	char			 peer[ENV_PEER_MAX + 1];	/* address */
	struct sockaddr_storage	 sa;
	char			 helo[ENV_HELO_MAX + 1];
	bool			 esmtp;
	bool			 tls;
	char			 tls_desc[96];
	bool			 trusted;
	bool			 authenticated;
	char			 user[SASL_USER_MAX + 1];
	char			 login_user[SASL_USER_MAX + 1];
	char			 tenant[STORE_ID_MAX + 1]; /* company of
						   the credential, or "" */
	struct auth_job		*auth_job;
	bool			 shutdown;	/* close at the next idle point */
	bool			 eof;		/* client shut down its sending
						   side: answer, then close */
	bool			 line_overflow;	/* discarding a too long line */
	unsigned long		 ncommands;
	unsigned long		 nerrors;
	unsigned long		 naccepted;
	/* the transaction */
	struct envelope		 env;
	struct smtp_data	 data;
	struct buf		 content;
	size_t			 received_len;	/* Received: header bytes */
	struct spool_commit	*commit;
	struct event		*ev_free;
	time_t			 cur_timeout;	/* set on s->bev; -1 none */
	struct evbuffer_cb_entry *drain_cb;	/* on the TLS filter's
						   underlying output */
};

struct auth_job {
	struct session		*s;		/* NULL once s went away */
	struct srv_conf		*cfg;		/* holds creds: a reload and
						   the end of s may both come
						   before the worker runs */
	struct credentials	*creds;
	bool			 store_user;	/* hash from the tenants */
	char			 hash[256];
	char			 company[STORE_ID_MAX + 1];
	char			 user[SASL_USER_MAX + 1];
	char			 pass[SASL_PASS_MAX + 1];
	int			 result;
};

static void session_process(struct session *s);
static void session_read_cb(struct bufferevent *bev, void *arg);
static void session_write_cb(struct bufferevent *bev, void *arg);
static void session_event_cb(struct bufferevent *bev, short what, void *arg);
static void session_free(struct session *s);
static void session_free_later(struct session *s);

static const struct conf *
session_conf(const struct session *s)
{
	return s->cfg->conf;
}

/* AUTH is possible: the listener offers it and there is somewhere to
 * look users up (a credentials file, or the tenant database). */
static bool
session_auth_available(const struct session *s)
{
	return s->lc->auth && (s->cfg->creds != NULL ||
	    s->srv->tenants != NULL);
}

/* The company behind the session's credential, from the current
 * snapshot (it may have been suspended or deleted since AUTH). */
static const struct company *
session_company(const struct session *s)
{
	return s->tenant[0] ? tenants_company(s->srv->tenants, s->tenant) :
	    NULL;
}

/* The sending policy at MAIL: the company may send, and as this sender.
 * NULL if fine, else the reply. */
static const char *
session_policy_mail(struct session *s, const char *from, char *buf,
    size_t buflen)
{
	const struct company *co = session_company(s);
	const struct tenant_domain *td;
	const char *dom;

	if (!s->tenant[0])
		return NULL;	/* file: user or trusted network: the
				   platform's own, no company */
	if (co == NULL) {
		snprintf(buf, buflen, "550 5.7.1 Company %s is not known "
		    "here any more", s->tenant);
		return buf;
	}
	if (co->status == COMPANY_SUSPENDED) {
		snprintf(buf, buflen, "550 5.7.1 Company %s is suspended: its "
		    "mail is not accepted", co->id);
		return buf;
	}
	if ((dom = tenant_addr_domain(from)) == NULL) {
		snprintf(buf, buflen, "550 5.7.1 Company %s must send from an "
		    "address in one of its domains, not the null sender",
		    co->id);
		return buf;
	}
	td = tenants_domain(s->srv->tenants, dom);
	if (td == NULL || tenants_domain_company(s->srv->tenants, td) != co) {
		snprintf(buf, buflen, "550 5.7.1 Sender domain %s is not a "
		    "domain of company %s", dom, co->id);
		return buf;
	}
	return NULL;
}

/* At RCPT: a company without a route choice cannot send after the
 * deadline.  NULL if fine, else the reply. */
static const char *
session_policy_rcpt(struct session *s, char *buf, size_t buflen)
{
	const struct company *co = session_company(s);
	int64_t from = session_conf(s)->choice_required_from;

	if (co == NULL || co->route != ROUTE_NONE || from == 0 ||
	    (int64_t)time(NULL) < from)
		return NULL;
	snprintf(buf, buflen, "550 5.7.1 Company %s has not chosen how its "
	    "mail is sent (own-server, platform-relay or "
	    "platform-smarthost): no mail until a route is registered",
	    co->id);
	return buf;
}

/* After DATA: every address in the header From must be in the
 * company's domains.  NULL if fine, else the reply. */
static const char *
session_policy_data(struct session *s, char *buf, size_t buflen)
{
	const struct company *co = session_company(s);
	char doms[MSG_FROM_MAX][MSG_DOMAIN_MAX + 1];
	size_t n = 0;

	if (!s->tenant[0])
		return NULL;
	if (co == NULL)
		return session_policy_mail(s, "", buf, buflen);
	switch (msg_from_domains(s->content.data, s->content.len, doms,
	    &n)) {
	case MSG_FROM_OK:
		break;
	case MSG_FROM_NONE:
		return "550 5.6.0 The message has no From header field";
	case MSG_FROM_MANY:
		return "550 5.6.0 The message has more than one From header "
		    "field";
	case MSG_FROM_BAD:
	default:
		return "550 5.6.0 The From header field cannot be parsed";
	}
	for (size_t i = 0; i < n; i++) {
		const struct tenant_domain *td = tenants_domain(
		    s->srv->tenants, doms[i]);
		if (td == NULL || tenants_domain_company(s->srv->tenants,
		    td) != co) {
			snprintf(buf, buflen, "550 5.7.1 Header From domain "
			    "%s is not a domain of company %s", doms[i],
			    co->id);
			return buf;
		}
	}
	return NULL;
}

/*
 * After DATA, for all mail: RFC 5322's origination fields and the
 * bulk-sender rules (bulk.h) on the client's message (after our
 * Received field); the fields it adds go right after Received, so the
 * client's bytes follow unchanged but for removed X-Ombud-Bulk fields.
 * NULL if accepted (s->content possibly rebuilt), else the reply.
 */
static const char *
session_bulk_data(struct session *s, char *buf, size_t buflen)
{
	const struct conf *c = session_conf(s);
	const char *msg = s->content.data + s->received_len;
	size_t len = s->content.len - s->received_len;
	struct bulk_check bc;
	struct buf out;

	if (bulk_check(msg, len, c->bulk_unsubscribe == BULK_UNSUB_WARN,
	    &bc) != 0) {
		snprintf(buf, buflen, "%s", bc.reply);
		return buf;
	}
	if (bc.warning[0] != '\0')
		log_event(LOG_LVL_WARN, "smtp.bulk_warning", "qid", s->env.id,
		    "peer", s->peer, "company", s->tenant[0] ? s->tenant :
		    NULL, "warning", bc.warning, NULL);
	if (!bulk_changes(&bc))
		return NULL;
	buf_init(&out);
	buf_reserve(&out, s->content.len + 512);
	buf_add(&out, s->content.data, s->received_len);
	bulk_added_fields(&bc, s->env.id, c->hostname, time(NULL), &out);
	bulk_copy_message(&bc, msg, len, &out);
	buf_free(&s->content);
	s->content = out;
	return NULL;
}

/*
 * Over STARTTLS the read timeout goes on the filter (which sees commands
 * and data) and the write timeout on the socket underneath (which sees
 * whether the client takes our bytes).  Not both on the filter: its
 * generic write timer stays armed after its output drained and fired in
 * the middle of a DATA that took longer than the timeout; and none left
 * on the socket from before STARTTLS: its read timeout (timeout_command)
 * cut a pause inside DATA shorter than timeout_data.
 */
static void
session_set_timeouts(struct session *s, const struct timeval *rd,
    const struct timeval *wr)
{
	struct bufferevent *u = bufferevent_get_underlying(s->bev);

	if (u) {
		bufferevent_set_timeouts(s->bev, rd, NULL);
		bufferevent_set_timeouts(u, NULL, wr);
	} else
		bufferevent_set_timeouts(s->bev, rd, wr);
}

static void
session_enter_state(struct session *s, enum smtp_state st)
{
	const struct conf *c = session_conf(s);
	struct timeval tv = { (time_t)c->timeout_command, 0 };

	if (log_enabled(LOG_LVL_DEBUG))
		log_event(LOG_LVL_DEBUG, "smtp.state", "peer", s->peer,
		    "from", state_names[s->state], "to", state_names[st],
		    NULL);
	s->state = st;
	if (st == S_DATA)
		tv.tv_sec = (time_t)c->timeout_data;
	/* Only when it changes: bufferevent_set_timeouts re-adds the write
	 * event even with nothing to write, which costs two epoll_ctl calls
	 * and a wake-up per state change. */
	if (st != S_CLOSING && tv.tv_sec != s->cur_timeout) {
		session_set_timeouts(s, &tv, &tv);
		s->cur_timeout = tv.tv_sec;
	}
}

static void
session_reply(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
session_reply(struct session *s, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatalx("session_reply: bad format");
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;	/* replies are ours: bounded */
	line[n++] = '\r';
	line[n++] = '\n';
	evbuffer_add(out, line, (size_t)n);
	if ((line[0] == '4' || line[0] == '5') && strncmp(line, "421", 3))
		s->nerrors++;
}

static void
session_underlying_drained(struct evbuffer *buf,
    const struct evbuffer_cb_info *info, void *arg)
{
	if (evbuffer_get_length(buf) == 0)
		session_free_later(arg);
}

/*
 * Free s once its last reply left.  Over STARTTLS the filter's output
 * moves into the socket's bufferevent at once, which may still hold it:
 * then wait for that one to drain too (write_cb covers the filter).
 */
static void
session_free_when_flushed(struct session *s)
{
	struct bufferevent *u = bufferevent_get_underlying(s->bev);

	if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
		return;
	if (u && evbuffer_get_length(bufferevent_get_output(u)) > 0) {
		if (s->drain_cb == NULL)
			s->drain_cb = evbuffer_add_cb(
			    bufferevent_get_output(u),
			    session_underlying_drained, s);
		return;
	}
	session_free_later(s);
}

/* Send a final reply and close once it has been written. */
static void
session_close(struct session *s, const char *reply)
{
	if (s->state == S_CLOSING)
		return;
	if (reply)
		session_reply(s, "%s", reply);
	if (s->commit) {
		spool_commit_cancel(s->commit);
		s->commit = NULL;
	}
	session_enter_state(s, S_CLOSING);
	bufferevent_disable(s->bev, EV_READ);
	evbuffer_drain(bufferevent_get_input(s->bev),
	    evbuffer_get_length(bufferevent_get_input(s->bev)));
	struct timeval tv = { 10, 0 };
	session_set_timeouts(s, NULL, &tv);
	bufferevent_enable(s->bev, EV_WRITE);
	session_free_when_flushed(s);
}

/* Count an error reply; too many closes the session. */
static bool
session_too_many_errors(struct session *s)
{
	if (s->nerrors <= session_conf(s)->max_errors)
		return false;
	log_event(LOG_LVL_WARN, "smtp.error_limit", "peer", s->peer, NULL);
	session_close(s, "421 4.7.0 Too many errors, closing connection");
	return true;
}

static void
session_reset_transaction(struct session *s)
{
	envelope_free(&s->env);
	buf_free(&s->content);
	s->received_len = 0;
	if (s->state != S_CLOSING)
		session_enter_state(s, s->helo[0] ? S_HELO : S_GREETING);
}

/* At a point where no transaction is open: honour a pending shutdown. */
static bool
session_idle_point(struct session *s)
{
	if (s->shutdown || s->srv->shutting_down) {
		session_close(s, "421 4.3.2 Service shutting down, "
		    "try again later");
		return true;
	}
	return false;
}

static void
session_ehlo_reply(struct session *s)
{
	const struct conf *c = session_conf(s);
	bool auth_ok = session_auth_available(s) &&
	    (s->tls || !s->lc->auth_requires_tls);

	session_reply(s, "250-%s Hello %s [%s]", c->hostname, s->helo,
	    s->peer);
	session_reply(s, "250-PIPELINING");
	session_reply(s, "250-SIZE %llu",
	    (unsigned long long)c->max_message_size);
	session_reply(s, "250-8BITMIME");
	session_reply(s, "250-ENHANCEDSTATUSCODES");
	session_reply(s, "250-SMTPUTF8");
	if (s->lc->tls == LTLS_STARTTLS && !s->tls)
		session_reply(s, "250-STARTTLS");
	if (auth_ok && !s->authenticated)
		session_reply(s, "250-AUTH PLAIN LOGIN");
	session_reply(s, "250 DSN");
}

static void
cmd_helo(struct session *s, const struct smtp_cmd *cmd)
{
	const char *err;

	if (s->state != S_GREETING && s->state != S_HELO) {
		/* RFC 5321 4.1.4: HELO in a transaction resets it */
		session_reset_transaction(s);
	}
	if ((err = smtp_parse_helo(cmd->arg)) != NULL) {
		session_reply(s, "%s", err);
		return;
	}
	if (!strlcpy_ok(s->helo, cmd->arg, sizeof(s->helo))) {
		session_reply(s, "501 5.5.4 HELO name too long");
		return;
	}
	s->esmtp = cmd->verb == SMTP_VERB_EHLO;
	session_enter_state(s, S_HELO);
	if (s->esmtp)
		session_ehlo_reply(s);
	else
		session_reply(s, "250 %s", session_conf(s)->hostname);
}

static void
session_tls_done(struct session *s)
{
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);

	if (ssl)
		tls_describe(ssl, s->tls_desc, sizeof(s->tls_desc));
}

static void
session_setup_bev(struct session *s, struct bufferevent *bev)
{
	s->bev = bev;
	s->cur_timeout = -1;	/* a new bufferevent has none yet */
	bufferevent_setcb(bev, session_read_cb, session_write_cb,
	    session_event_cb, s);
	bufferevent_setwatermark(bev, EV_READ, 0, SESSION_READ_HIGHWAT);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/*
 * Start TLS: over the existing bufferevent (STARTTLS, fd < 0) or directly
 * on a new socket (implicit TLS).
 */
static int
session_start_tls(struct session *s, int fd)
{
	SSL_CTX *ctx = s->cfg->ssl[s->lindex];
	struct bufferevent *nb;
	SSL *ssl;

	if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL)
		return -1;
	if (fd < 0) {
		/* The filter moves its output into the socket's bufferevent
		 * as long as that is below its write high watermark, which is
		 * unlimited by default: then the filter's output is always
		 * empty and SESSION_OUTPUT_MAX never stops a client that
		 * pipelines without reading. */
		bufferevent_setwatermark(s->bev, EV_WRITE, 0,
		    SESSION_OUTPUT_MAX);
		nb = bufferevent_openssl_filter_new(s->srv->base, s->bev, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	} else
		nb = bufferevent_openssl_socket_new(s->srv->base, fd, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (nb == NULL) {
		SSL_free(ssl);
		return -1;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(nb, 1);
	s->tls = true;
	session_setup_bev(s, nb);
	return 0;
}

static void
cmd_starttls(struct session *s, const struct smtp_cmd *cmd)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);

	if (s->lc->tls != LTLS_STARTTLS || s->tls) {
		session_reply(s, "502 5.5.1 STARTTLS not available");
		return;
	}
	if (cmd->arg[0] != '\0') {
		session_reply(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (s->state != S_GREETING && s->state != S_HELO) {
		session_reply(s, "503 5.5.1 STARTTLS not allowed during a "
		    "mail transaction");
		return;
	}
	/* Anything pipelined after STARTTLS arrived in the clear and must
	 * not be taken as if it came over TLS (CVE-2011-0411 class). */
	if (evbuffer_get_length(in) > 0) {
		log_event(LOG_LVL_WARN, "smtp.starttls_injection",
		    "peer", s->peer, NULL);
		evbuffer_drain(in, evbuffer_get_length(in));
	}
	session_reply(s, "220 2.0.0 Ready to start TLS");
	if (session_start_tls(s, -1) != 0) {
		log_event(LOG_LVL_WARN, "smtp.tls_failed", "peer", s->peer,
		    NULL);
		session_close(s, NULL);
		return;
	}
	/* RFC 3207 4.2: forget everything learned before TLS, including
	 * an AUTH a man in the middle could have sent in the clear */
	s->helo[0] = '\0';
	s->esmtp = false;
	s->authenticated = false;
	sasl_wipe(s->user, sizeof(s->user));
	s->tenant[0] = '\0';
	session_enter_state(s, S_GREETING);
}

static bool
session_may_transact(struct session *s)
{
	if (s->state == S_GREETING) {
		session_reply(s, "503 5.5.1 Send HELO/EHLO first");
		return false;
	}
	return true;
}

static void
cmd_mail(struct session *s, const struct smtp_cmd *cmd)
{
	const struct conf *c = session_conf(s);
	struct smtp_path path;
	struct smtp_mail_params mp;
	const char *err;
	char pbuf[512];

	if (!session_may_transact(s))
		return;
	if (s->state != S_HELO) {
		session_reply(s, "503 5.5.1 Nested MAIL command");
		return;
	}
	/* No open relay: outside trusted_networks MAIL needs AUTH. */
	if (!s->authenticated && !s->trusted) {
		session_reply(s, "530 5.7.0 Authentication required");
		return;
	}
	if ((err = smtp_parse_mail(cmd->arg, &path, &mp)) != NULL) {
		session_reply(s, "%s", err);
		return;
	}
	if (!s->esmtp && (mp.size || mp.body || mp.smtputf8 || mp.ret ||
	    mp.envid[0] || mp.has_auth)) {
		session_reply(s, "555 5.5.4 MAIL parameters need EHLO");
		return;
	}
	if (mp.size > c->max_message_size) {
		session_reply(s, "552 5.3.4 Message size exceeds fixed "
		    "maximum message size");
		return;
	}
	/* The billing database is not answering and the counts waiting for
	 * it have reached their bound: no more until it catches up. */
	if (meter_backlog(s->srv->meter) >= c->metering_backlog_max) {
		log_event(LOG_LVL_WARN, "smtp.meter_backlog", "peer", s->peer,
		    "user", s->user, NULL);
		session_reply(s, "451 4.3.0 Usage metering is behind; try "
		    "again later");
		return;
	}
	if ((err = session_policy_mail(s, path.addr, pbuf, sizeof(pbuf))) !=
	    NULL) {
		log_event(LOG_LVL_INFO, "smtp.policy_rejected", "peer",
		    s->peer, "user", s->user, "company", s->tenant, "from",
		    path.addr, "reply", err, NULL);
		session_reply(s, "%s", err);
		return;
	}
	envelope_init(&s->env);
	queue_id_new(s->env.id);
	s->env.created = (int64_t)time(NULL);
	strlcpy_ok(s->env.helo, s->helo, sizeof(s->env.helo));
	strlcpy_ok(s->env.peer, s->peer, sizeof(s->env.peer));
	strlcpy_ok(s->env.user, s->authenticated ? s->user : "",
	    sizeof(s->env.user));
	strlcpy_ok(s->env.tenant, s->tenant, sizeof(s->env.tenant));
	strlcpy_ok(s->env.mail_from, path.addr, sizeof(s->env.mail_from));
	s->env.body = mp.body;
	s->env.smtputf8 = mp.smtputf8;
	s->env.ret = mp.ret;
	strlcpy_ok(s->env.envid, mp.envid, sizeof(s->env.envid));
	session_enter_state(s, S_MAIL);
	session_reply(s, "250 2.1.0 Ok");
}

static void
cmd_rcpt(struct session *s, const struct smtp_cmd *cmd)
{
	struct smtp_path path;
	struct smtp_rcpt_params rp;
	struct env_rcpt *r;
	const char *err;
	char pbuf[512];

	if (!session_may_transact(s))
		return;
	if (s->state != S_MAIL && s->state != S_RCPT) {
		session_reply(s, "503 5.5.1 Need MAIL command");
		return;
	}
	if (s->env.nrcpt >= session_conf(s)->max_recipients) {
		session_reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	if ((err = smtp_parse_rcpt(cmd->arg, s->env.smtputf8, &path, &rp))
	    != NULL) {
		session_reply(s, "%s", err);
		return;
	}
	if ((err = session_policy_rcpt(s, pbuf, sizeof(pbuf))) != NULL) {
		log_event(LOG_LVL_INFO, "smtp.policy_rejected", "peer",
		    s->peer, "company", s->tenant, "rcpt", path.addr,
		    "reply", err, NULL);
		session_reply(s, "%s", err);
		return;
	}
	r = envelope_add_rcpt(&s->env);
	strlcpy_ok(r->addr, path.addr, sizeof(r->addr));
	r->notify = rp.notify;
	strlcpy_ok(r->orcpt, rp.orcpt, sizeof(r->orcpt));
	session_enter_state(s, S_RCPT);
	session_reply(s, "250 2.1.5 Ok");
}

static void
session_add_received(struct session *s)
{
	const struct conf *c = session_conf(s);
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	const char *proto;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	/* RFC 3848 protocol types */
	if (!s->esmtp)
		proto = "SMTP";
	else if (s->tls)
		proto = s->authenticated ? "ESMTPSA" : "ESMTPS";
	else
		proto = s->authenticated ? "ESMTPA" : "ESMTP";
	buf_printf(&s->content, "Received: from %s ([%s])\r\n\tby %s "
	    "(ombud) with %s id %s", s->helo, s->peer, c->hostname, proto,
	    s->env.id);
	if (s->tls && s->tls_desc[0])
		buf_printf(&s->content, "\r\n\t(%s)", s->tls_desc);
	if (s->env.nrcpt == 1)
		buf_printf(&s->content, "\r\n\tfor <%s>", s->env.rcpt[0].addr);
	buf_printf(&s->content, "; %s\r\n", date);
	s->received_len = s->content.len;
}

static void
cmd_data(struct session *s, const struct smtp_cmd *cmd)
{
	const struct conf *c = session_conf(s);
	struct smtp_data_limits lim;

	if (!session_may_transact(s))
		return;
	if (cmd->arg[0] != '\0') {
		session_reply(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (s->state == S_MAIL) {
		session_reply(s, "554 5.5.1 No valid recipients");
		return;
	}
	if (s->state != S_RCPT) {
		session_reply(s, "503 5.5.1 Need RCPT command");
		return;
	}
	lim.max_size = c->max_message_size;
	lim.max_line = c->max_line_length;
	lim.max_header = c->max_header_size;
	lim.max_header_count = c->max_header_count;
	smtp_data_init(&s->data, &lim);
	buf_init(&s->content);
	buf_reserve(&s->content, 8192);
	session_add_received(s);
	session_enter_state(s, S_DATA);
	session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

/* The spool's verdict on the message: the reply to DATA. */
static void
session_commit_result(struct session *s, int err)
{
	char size[32], nrcpt[32];

	s->commit = NULL;
	if (err == 0) {
		snprintf(size, sizeof(size), "%zu", s->content.len);
		snprintf(nrcpt, sizeof(nrcpt), "%zu", s->env.nrcpt);
		log_event(LOG_LVL_INFO, "smtp.accepted", "qid", s->env.id,
		    "peer", s->peer, "user", s->env.user[0] ? s->env.user :
		    NULL, "from", s->env.mail_from, "nrcpt", nrcpt,
		    "size", size, NULL);
		session_reply(s, "250 2.0.0 Ok: queued as %s", s->env.id);
		s->naccepted++;
		s->srv->accepted++;
		/* counted for the bill, then delivered */
		meter_accept(s->srv->meter, s->srv->tenants, &s->env);
	} else {
		log_event(LOG_LVL_WARN, "smtp.store_failed", "qid", s->env.id,
		    "peer", s->peer, "error", strerror(err), NULL);
		if (err == ENOSPC || err == EDQUOT || err == EFBIG)
			session_reply(s, "452 4.3.1 Insufficient system "
			    "storage");
		else
			session_reply(s, "451 4.3.0 Local error: message "
			    "not stored, try again later");
	}
	session_reset_transaction(s);
}

static void
session_commit_cb(void *arg, int err)
{
	struct session *s = arg;

	session_commit_result(s, err);
	if (session_idle_point(s))
		return;
	session_process(s);
}

static void
session_data_done(struct session *s)
{
	const char *rej = smtp_data_reject_reply(s->data.flags);
	char pbuf[512];

	if (rej == NULL)	/* the header's fields, bulk-sender rules */
		rej = session_bulk_data(s, pbuf, sizeof(pbuf));
	if (rej == NULL && (rej = session_policy_data(s, pbuf,
	    sizeof(pbuf))) != NULL)
		log_event(LOG_LVL_INFO, "smtp.policy_rejected", "qid",
		    s->env.id, "peer", s->peer, "company", s->tenant,
		    "reply", rej, NULL);
	if (rej != NULL) {
		log_event(LOG_LVL_INFO, "smtp.rejected", "qid", s->env.id,
		    "peer", s->peer, "reply", rej, NULL);
		session_reply(s, "%s", rej);
		session_reset_transaction(s);
		return;
	}
	s->env.content_size = s->content.len;
	session_enter_state(s, S_COMMIT);
	s->commit = spool_submit(s->srv->spool, &s->env, s->content.data,
	    s->content.len, session_commit_cb, s);
	if (s->commit == NULL) {
		/* the append itself failed: nothing was stored */
		session_commit_result(s, errno ? errno : EIO);
	}
}

/* Feed input to the DATA state machine; true if the data ended. */
static bool
session_data_input(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer_iovec v[16];
	bool done = false;

	while (!done && evbuffer_get_length(in) > 0) {
		size_t used_total = 0;
		int n = evbuffer_peek(in, -1, NULL, v, nitems(v));

		if (n > (int)nitems(v))
			n = nitems(v);
		for (int i = 0; i < n && !done; i++) {
			size_t used = 0;
			if (smtp_data_feed(&s->data, v[i].iov_base,
			    v[i].iov_len, &used, &s->content) ==
			    SMTP_DATA_DONE)
				done = true;
			used_total += used;
		}
		evbuffer_drain(in, used_total);
	}
	if (done)
		session_data_done(s);
	return done;
}

static void
auth_job_work(void *arg)
{
	struct auth_job *j = arg;

	if (j->store_user || j->creds == NULL)
		j->result = credentials_verify_hash(j->store_user ? j->hash :
		    NULL, j->pass);
	else
		j->result = credentials_check(j->creds, j->user, j->pass);
	sasl_wipe(j->pass, sizeof(j->pass));
}

static void
auth_job_done(void *arg)
{
	struct auth_job *j = arg;
	struct session *s = j->s;

	if (s == NULL)
		goto out;
	s->auth_job = NULL;
	/* Closed meanwhile (timeout, forced shutdown) with its last reply
	 * still queued: no 235 after a 421, and no way back out of
	 * S_CLOSING, which would leave the session unfreed. */
	if (s->state == S_CLOSING)
		goto out;
	if (j->result == 1) {
		s->authenticated = true;
		strlcpy_ok(s->user, j->user, sizeof(s->user));
		strlcpy_ok(s->tenant, j->company, sizeof(s->tenant));
		log_event(LOG_LVL_INFO, "smtp.auth", "peer", s->peer,
		    "user", s->user, "company", s->tenant[0] ? s->tenant :
		    NULL, "result", "ok", NULL);
		session_reply(s, "235 2.7.0 Authentication successful");
	} else {
		log_event(LOG_LVL_WARN, "smtp.auth", "peer", s->peer,
		    "user", j->user, "result", j->result == 0 ? "invalid" :
		    "error", NULL);
		if (j->result == 0)
			session_reply(s, "535 5.7.8 Authentication "
			    "credentials invalid");
		else
			session_reply(s, "454 4.7.0 Temporary authentication "
			    "failure");
	}
	session_enter_state(s, s->helo[0] ? S_HELO : S_GREETING);
	if (!session_too_many_errors(s) && !session_idle_point(s))
		session_process(s);
out:
	srv_conf_unref(j->cfg);
	sasl_wipe(j, sizeof(*j));
	free(j);
}

static void
session_auth_verify(struct session *s, const char *user, const char *pass)
{
	struct auth_job *j = xcalloc(1, sizeof(*j));
	const struct tenant_cred *tc = tenants_cred(s->srv->tenants, user);

	j->s = s;
	j->cfg = srv_conf_ref(s->cfg);
	j->creds = j->cfg->creds;
	if (tc != NULL) {
		/* the tenant database first; its hash is copied, so a
		 * snapshot swap while the worker runs is harmless */
		j->store_user = true;
		strlcpy_ok(j->hash, tc->hash, sizeof(j->hash));
		strlcpy_ok(j->company, tenants_cred_company(s->srv->tenants,
		    tc)->id, sizeof(j->company));
	}
	strlcpy_ok(j->user, user, sizeof(j->user));
	strlcpy_ok(j->pass, pass, sizeof(j->pass));
	s->auth_job = j;
	session_enter_state(s, S_AUTH_VERIFY);
	workq_push(s->srv->workq, auth_job_work, auth_job_done, j);
}

static void
session_auth_failed_syntax(struct session *s)
{
	session_reply(s, "501 5.5.2 Cannot decode AUTH response");
	session_enter_state(s, s->helo[0] ? S_HELO : S_GREETING);
}

static void
cmd_auth(struct session *s, const struct smtp_cmd *cmd)
{
	char mech[32], user[SASL_USER_MAX + 1], pass[SASL_PASS_MAX + 1];
	const char *sp = strchr(cmd->arg, ' ');
	const char *initial = sp ? sp + 1 : NULL;
	size_t ml = sp ? (size_t)(sp - cmd->arg) : strlen(cmd->arg);

	if (!session_auth_available(s)) {
		session_reply(s, "503 5.5.1 Authentication not enabled");
		return;
	}
	if (!session_may_transact(s))
		return;
	if (s->authenticated) {
		session_reply(s, "503 5.5.1 Already authenticated");
		return;
	}
	if (s->state != S_HELO) {
		session_reply(s, "503 5.5.1 AUTH not allowed during a mail "
		    "transaction");
		return;
	}
	if (s->lc->auth_requires_tls && !s->tls) {
		session_reply(s, "538 5.7.11 Encryption required for "
		    "requested authentication mechanism");
		return;
	}
	if (ml == 0 || ml >= sizeof(mech)) {
		session_reply(s, "501 5.5.4 Syntax: AUTH mechanism");
		return;
	}
	memcpy(mech, cmd->arg, ml);
	mech[ml] = '\0';
	if (ascii_strcasecmp(mech, "PLAIN") == 0) {
		if (initial == NULL) {
			session_enter_state(s, S_AUTH_PLAIN);
			session_reply(s, "334 ");
			return;
		}
		if (strcmp(initial, "=") == 0 ||
		    sasl_plain_decode(initial, user, pass) != 0) {
			session_reply(s, "501 5.5.2 Cannot decode AUTH "
			    "response");
			return;
		}
		session_auth_verify(s, user, pass);
		sasl_wipe(pass, sizeof(pass));
		return;
	}
	if (ascii_strcasecmp(mech, "LOGIN") == 0) {
		if (initial != NULL) {
			if (sasl_b64_field(initial, s->login_user) != 0) {
				session_reply(s, "501 5.5.2 Cannot decode "
				    "AUTH response");
				return;
			}
			session_enter_state(s, S_AUTH_PASS);
			session_reply(s, "334 UGFzc3dvcmQ6");
			return;
		}
		session_enter_state(s, S_AUTH_USER);
		session_reply(s, "334 VXNlcm5hbWU6");
		return;
	}
	session_reply(s, "504 5.5.4 Unrecognized authentication type");
}

/* A line received while an AUTH exchange waits for the client. */
static void
session_auth_line(struct session *s, const char *line)
{
	char user[SASL_USER_MAX + 1], pass[SASL_PASS_MAX + 1];

	if (strcmp(line, "*") == 0) {
		session_reply(s, "501 5.7.0 Authentication cancelled");
		session_enter_state(s, s->helo[0] ? S_HELO : S_GREETING);
		return;
	}
	switch (s->state) {
	case S_AUTH_PLAIN:
		if (sasl_plain_decode(line, user, pass) != 0) {
			session_auth_failed_syntax(s);
			return;
		}
		session_auth_verify(s, user, pass);
		sasl_wipe(pass, sizeof(pass));
		return;
	case S_AUTH_USER:
		if (sasl_b64_field(line, s->login_user) != 0) {
			session_auth_failed_syntax(s);
			return;
		}
		session_enter_state(s, S_AUTH_PASS);
		session_reply(s, "334 UGFzc3dvcmQ6");
		return;
	case S_AUTH_PASS:
		if (sasl_b64_field(line, pass) != 0) {
			session_auth_failed_syntax(s);
			return;
		}
		session_auth_verify(s, s->login_user, pass);
		sasl_wipe(pass, sizeof(pass));
		return;
	default:
		fatalx("session_auth_line: bad state %d", s->state);
	}
}

static void
session_command(struct session *s, char *line, size_t len)
{
	struct smtp_cmd cmd;
	const char *err;

	if (++s->ncommands > session_conf(s)->max_commands) {
		session_close(s, "421 4.7.0 Too many commands, closing "
		    "connection");
		return;
	}
	if ((err = smtp_parse_command(line, len, &cmd)) != NULL) {
		session_reply(s, "%s", err);
		return;
	}
	switch (cmd.verb) {
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
		cmd_helo(s, &cmd);
		break;
	case SMTP_VERB_MAIL:
		cmd_mail(s, &cmd);
		break;
	case SMTP_VERB_RCPT:
		cmd_rcpt(s, &cmd);
		break;
	case SMTP_VERB_DATA:
		cmd_data(s, &cmd);
		break;
	case SMTP_VERB_RSET:
		if (s->state != S_GREETING)
			session_reset_transaction(s);
		session_reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_NOOP:
		session_reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_QUIT:
		session_close(s, "221 2.0.0 Bye");
		break;
	case SMTP_VERB_VRFY:
		session_reply(s, "252 2.0.0 Cannot VRFY user, but will accept "
		    "message and attempt delivery");
		break;
	case SMTP_VERB_EXPN:
		session_reply(s, "502 5.5.1 EXPN not supported");
		break;
	case SMTP_VERB_HELP:
		session_reply(s, "214 2.0.0 Commands: EHLO HELO STARTTLS "
		    "AUTH MAIL RCPT DATA RSET NOOP QUIT VRFY HELP");
		break;
	case SMTP_VERB_STARTTLS:
		cmd_starttls(s, &cmd);
		break;
	case SMTP_VERB_AUTH:
		cmd_auth(s, &cmd);
		break;
	case SMTP_VERB_BDAT:
	case SMTP_VERB_UNKNOWN:
	default:
		session_reply(s, "502 5.5.1 Command not implemented");
		break;
	}
}

/*
 * Take one CRLF-terminated line from the input.  Returns 1 with the line
 * (NUL-terminated, without CRLF) in a malloc'd *out, 0 if no complete
 * line yet, -1 if a line was refused (reply already sent).
 */
static int
session_getline(struct session *s, char **out, size_t *outlen)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t max = session_conf(s)->max_command_line;
	struct evbuffer_ptr p;
	size_t len;
	char *line;

	p = evbuffer_search(in, "\n", 1, NULL);
	if (p.pos < 0) {
		size_t have = evbuffer_get_length(in);
		if (have > max) {
			/* discard what we have, keep discarding to LF */
			evbuffer_drain(in, have);
			if (!s->line_overflow) {
				s->line_overflow = true;
				session_reply(s, "500 5.5.2 Line too long");
			}
		}
		return 0;
	}
	len = (size_t)p.pos;	/* bytes before LF */
	if (s->line_overflow || len + 1 > max) {
		evbuffer_drain(in, len + 1);
		if (!s->line_overflow)
			session_reply(s, "500 5.5.2 Line too long");
		s->line_overflow = false;
		return -1;
	}
	line = xmalloc(len + 1);
	evbuffer_remove(in, line, len);
	evbuffer_drain(in, 1);
	line[len] = '\0';
	if (len == 0 || line[len - 1] != '\r') {
		free(line);
		session_reply(s, "500 5.5.2 Bare LF received; lines must end "
		    "with CRLF");
		return -1;
	}
	line[--len] = '\0';
	if (memchr(line, '\0', len) != NULL || memchr(line, '\r', len)) {
		free(line);
		session_reply(s, "500 5.5.2 Invalid character in command");
		return -1;
	}
	*out = line;
	*outlen = len;
	return 1;
}

/* Consume as much input as the current state allows. */
static void
session_process(struct session *s)
{
	for (;;) {
		char *line;
		size_t len;
		int rc;

		if (s->state == S_CLOSING || s->state == S_COMMIT ||
		    s->state == S_AUTH_VERIFY)
			return;
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) >
		    SESSION_OUTPUT_MAX)
			return;		/* resumed by the write callback */
		if (s->state == S_DATA) {
			if (!session_data_input(s))
				break;
			if (session_too_many_errors(s))
				return;
			continue;
		}
		rc = session_getline(s, &line, &len);
		if (rc == 0)
			break;
		if (rc < 0) {
			if (session_too_many_errors(s))
				return;
			continue;
		}
		if (s->state == S_AUTH_PLAIN || s->state == S_AUTH_USER ||
		    s->state == S_AUTH_PASS)
			session_auth_line(s, line);
		else
			session_command(s, line, len);
		sasl_wipe(line, len);
		free(line);
		if (s->state == S_CLOSING)
			return;
		if (session_too_many_errors(s))
			return;
		if ((s->state == S_GREETING || s->state == S_HELO) &&
		    session_idle_point(s))
			return;
	}
	/* all input used: after the client's EOF no more will come */
	if (s->eof)
		session_close(s, NULL);
}

static void
session_read_cb(struct bufferevent *bev, void *arg)
{
	session_process(arg);
}


static void
session_write_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (s->state == S_CLOSING) {
		session_free_when_flushed(s);
		return;
	}
	/* output drained: continue with input we stopped on */
	if (evbuffer_get_length(bufferevent_get_input(bev)) > 0 || s->eof)
		session_process(s);
}

static void
session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	if (what & BEV_EVENT_CONNECTED) {
		session_tls_done(s);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (s->state == S_CLOSING) {
			session_free_later(s);
			return;
		}
		log_event(LOG_LVL_INFO, "smtp.timeout", "peer", s->peer,
		    "state", state_names[s->state], NULL);
		session_close(s, "421 4.4.2 Timeout exceeded, closing "
		    "connection");
		return;
	}
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
	    s->state != S_CLOSING) {
		/* A half-close: the client may still read.  Answer what it
		 * sent (a message it pipelined with QUIT may be committing),
		 * then close; a 250 it never sees makes it send a copy. */
		s->eof = true;
		bufferevent_disable(bev, EV_READ);
		session_process(s);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (what & BEV_EVENT_ERROR) {
			unsigned long e = bufferevent_get_openssl_error(bev);
			if (e) {
				char msg[256];
				ERR_error_string_n(e, msg, sizeof(msg));
				log_event(LOG_LVL_INFO, "smtp.tls_error",
				    "peer", s->peer, "error", msg, NULL);
			}
		}
		session_enter_state(s, S_CLOSING);
		bufferevent_disable(bev, EV_READ | EV_WRITE);
		session_free_later(s);
	}
}

void
session_start(struct server *srv, struct listener *l, int fd,
    const struct sockaddr *sa, int salen)
{
	struct session *s = xcalloc(1, sizeof(*s));
	const struct conf_listener *lc;
	char host[INET6_ADDRSTRLEN];

	s->srv = srv;
	s->cfg = srv_conf_ref(srv->cfg);
	s->lindex = l->index;
	s->lc = lc = &s->cfg->conf->listeners[l->index];
	memcpy(&s->sa, sa, (size_t)salen < sizeof(s->sa) ? (size_t)salen :
	    sizeof(s->sa));
	host[0] = '\0';
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)
		    (const void *)sa)->sin_addr, host, sizeof(host));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)
		    (const void *)sa)->sin6_addr, host, sizeof(host));
	strlcpy_ok(s->peer, host[0] ? host : "unknown", sizeof(s->peer));
	for (size_t i = 0; i < lc->ntrusted; i++)
		if (cidr_match(&lc->trusted[i], sa))
			s->trusted = true;
	envelope_init(&s->env);
	buf_init(&s->content);
	TAILQ_INSERT_TAIL(&srv->sessions, s, entry);
	srv->nsessions++;

	log_event(LOG_LVL_INFO, "smtp.connect", "peer", s->peer,
	    "listener", lc->name, NULL);
	if (lc->tls == LTLS_IMPLICIT) {
		if (session_start_tls(s, fd) != 0) {
			log_event(LOG_LVL_WARN, "smtp.tls_failed", "peer",
			    s->peer, NULL);
			close(fd);
			goto fail;
		}
	} else {
		struct bufferevent *bev = bufferevent_socket_new(srv->base,
		    fd, BEV_OPT_CLOSE_ON_FREE);
		if (bev == NULL) {
			log_warnx("session: cannot create bufferevent");
			close(fd);
			goto fail;
		}
		session_setup_bev(s, bev);
	}
	session_enter_state(s, S_GREETING);
	if (srv->shutting_down) {
		session_close(s, "421 4.3.2 Service shutting down");
		return;
	}
	session_reply(s, "220 %s ESMTP ombud", session_conf(s)->hostname);
	return;
fail:
	TAILQ_REMOVE(&srv->sessions, s, entry);
	srv->nsessions--;
	server_session_gone(srv, s);
	srv_conf_unref(s->cfg);
	free(s);
}

static void
session_shutdown(struct session *s, bool force)
{
	s->shutdown = true;
	if (force) {
		session_close(s, "421 4.3.2 Service shutting down");
		return;
	}
	switch (s->state) {
	case S_GREETING:
	case S_HELO:
		session_close(s, "421 4.3.2 Service shutting down, "
		    "try again later");
		break;
	default:
		/* finishes its transaction, then session_idle_point */
		break;
	}
}

void
session_shutdown_all(struct server *srv, bool force)
{
	struct session *s;

	/* session_shutdown never frees synchronously */
	TAILQ_FOREACH(s, &srv->sessions, entry)
		session_shutdown(s, force);
}

static void
session_free_cb(evutil_socket_t fd, short what, void *arg)
{
	session_free(arg);
}

/*
 * Every path that ends a session comes here: the free happens on the next
 * loop iteration, so the caller may still look at s until it returns.
 */
static void
session_free_later(struct session *s)
{
	if (s->state != S_CLOSING)
		session_enter_state(s, S_CLOSING);
	if (s->ev_free == NULL) {
		s->ev_free = evtimer_new(s->srv->base, session_free_cb, s);
		if (s->ev_free == NULL)
			fatalx("session: evtimer_new");
		event_active(s->ev_free, EV_TIMEOUT, 0);
	}
}

static void
session_free(struct session *s)
{
	char cmds[32], acc[32];

	snprintf(cmds, sizeof(cmds), "%lu", s->ncommands);
	snprintf(acc, sizeof(acc), "%lu", s->naccepted);
	log_event(LOG_LVL_INFO, "smtp.disconnect", "peer", s->peer,
	    "commands", cmds, "accepted", acc, NULL);
	if (s->commit)
		spool_commit_cancel(s->commit);
	if (s->auth_job)
		s->auth_job->s = NULL;
	if (s->drain_cb) {
		struct bufferevent *u = bufferevent_get_underlying(s->bev);
		if (u)
			evbuffer_remove_cb_entry(bufferevent_get_output(u),
			    s->drain_cb);
	}
	if (s->bev)
		bufferevent_free(s->bev);
	if (s->ev_free)
		event_free(s->ev_free);
	envelope_free(&s->env);
	buf_free(&s->content);
	sasl_wipe(s->login_user, sizeof(s->login_user));
	TAILQ_REMOVE(&s->srv->sessions, s, entry);
	s->srv->nsessions--;
	server_session_gone(s->srv, s);
	srv_conf_unref(s->cfg);
	free(s);
}

/* Accessors for the server (it does not see struct session). */
const struct sockaddr *session_sockaddr(const struct session *s);
const struct sockaddr *
session_sockaddr(const struct session *s)
{
	return (const struct sockaddr *)&s->sa;
}

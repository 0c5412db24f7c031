/*
 * mta_client.h - the outbound SMTP client: one connection to one remote
 * server (an MX, or a smart host), over which the scheduler delivers one
 * or more messages.
 *
 * A connection is opened with mta_connect(): TCP connect (timeout), the
 * greeting, EHLO (falling back to HELO if EHLO is refused), STARTTLS as
 * the TLS policy says, AUTH if credentials are given; then ready_cb.
 * mta_send() runs one transaction (MAIL, RCPT..., DATA, the dot-stuffed
 * content) with PIPELINING when the server offers it, SIZE/8BITMIME/
 * SMTPUTF8/DSN parameters when offered, and reports a reply for every
 * recipient.  Between transactions the connection may be reused (RSET is
 * sent when a transaction failed half-way).  mta_quit() says QUIT.
 *
 * Must never: send AUTH credentials in the clear unless the route says
 * tls = none explicitly; continue after a STARTTLS failure when TLS is
 * required; treat a message as delivered before the final reply to the
 * data (250 after the dot); block the event loop.
 */
#ifndef OMBUD_MTA_CLIENT_H
#define OMBUD_MTA_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "mta/smtp_reply.h"
#include "queue/envelope.h"

struct event_base;
struct mta_conn;

enum mta_tls {
	MTA_TLS_NONE = 0,	/* never STARTTLS (and AUTH in the clear) */
	MTA_TLS_OPPORTUNISTIC,	/* STARTTLS if offered; no verification;
				   falls back to clear if not offered */
	MTA_TLS_REQUIRED,	/* STARTTLS must succeed; no verification */
	MTA_TLS_VERIFY,		/* STARTTLS must succeed, the certificate
				   must verify for host */
	MTA_TLS_IMPLICIT,	/* TLS from connect (port 465), verified */
};

struct mta_conn_params {
	struct sockaddr_storage	 addr;		/* with port */
	socklen_t		 addrlen;
	const char		*host;		/* name for SNI, verification
						   and logs */
	const char		*helo;		/* our EHLO name */
	enum mta_tls		 tls;
	SSL_CTX			*ssl_ctx;	/* client context (CA store) */
	const char		*auth_user;	/* NULL: no AUTH */
	const char		*auth_pass;	/* for PLAIN/LOGIN */
	const char		*xoauth2_token;	/* if set: AUTH XOAUTH2 */
	unsigned		 timeout_connect; /* seconds */
	unsigned		 timeout_command;
	unsigned		 timeout_data;	/* for the final dot reply */
};

/* Where a failure happened, for logs and the retry decision. */
enum mta_stage {
	MTA_STAGE_CONNECT = 0, MTA_STAGE_GREETING, MTA_STAGE_EHLO,
	MTA_STAGE_STARTTLS, MTA_STAGE_TLS, MTA_STAGE_AUTH, MTA_STAGE_MAIL,
	MTA_STAGE_RCPT, MTA_STAGE_DATA, MTA_STAGE_DOT, MTA_STAGE_RSET,
};

/* The outcome of connecting, or of a whole transaction. */
struct mta_result {
	bool			ok;
	enum mta_stage		stage;		/* where it failed */
	bool			conn_lost;	/* no reply: network error,
						   timeout, TLS failure,
						   protocol violation.  For
						   mta_send: the connection
						   is gone (also after a 421
						   or a refused RSET, with
						   the failing reply) */
	struct smtp_reply	reply;		/* the failing reply when
						   !conn_lost; the final dot
						   reply on success */
	char			error[256];	/* our description when
						   conn_lost or local */
};
/* Local failures (nothing sent, or refused before asking the server)
 * carry a reply of our own in reply, e.g. "454 4.7.4 TLS is required but
 * the server does not offer STARTTLS", "553 5.6.7 ..." (SMTPUTF8 needed,
 * not offered), "552 5.3.4 ..." (over the server's SIZE). */

typedef void (*mta_ready_cb)(void *arg, struct mta_conn *c,
    const struct mta_result *res);

/* Starts connecting; ready_cb runs later (never from inside this call).
 * On failure the connection is already freed when ready_cb runs, and
 * ready_cb gets c == NULL.  Timeouts of 0 mean 30 s (connect), 300 s
 * (command) and 600 s (data). */
struct mta_conn *mta_connect(struct event_base *base,
    const struct mta_conn_params *p, mta_ready_cb cb, void *arg);

/* One transaction: the envelope's sender with its parameters, the
 * recipients rcpt_idx[0..nrcpt) of e, and the content (CRLF lines,
 * not yet dot-stuffed). */
struct mta_tx {
	const struct envelope	*env;
	const size_t		*rcpt_idx;
	size_t			 nrcpt;
	const char		*content;
	size_t			 content_len;
};

/* Per recipient: the RCPT reply if it was refused, else the DATA/dot
 * reply that applies to it (the MAIL reply if MAIL was refused).
 * rcpt_lost[i] is true when no such reply came (connection lost before);
 * then rcpt[i] is zero.  tx.ok is true when the dot got a 2xx (some
 * recipients may still have been refused).  Even with tx.conn_lost,
 * recipients with !rcpt_lost[i] have a definitive reply. */
struct mta_tx_result {
	struct mta_result	 tx;
	size_t			 nrcpt;
	struct smtp_reply	*rcpt;		/* [nrcpt], same order as
						   rcpt_idx */
	bool			*rcpt_lost;	/* [nrcpt]: no final reply */
};

typedef void (*mta_sent_cb)(void *arg, struct mta_conn *c,
    const struct mta_tx_result *res);

/* Returns 0, or -1 if the connection is not idle.  The tx data must stay
 * valid until sent_cb.  If the connection was lost, it is freed after
 * sent_cb returns (res->tx.conn_lost).  sent_cb never runs from inside
 * mta_send; it may call mta_send again.  A connection the server closed
 * while idle reports conn_lost (stage MAIL, nothing sent).  The content
 * goes out with every bare CR or LF made CRLF. */
int mta_send(struct mta_conn *c, const struct mta_tx *tx, mta_sent_cb cb,
    void *arg);

/* Politely QUIT (in the background) and free. */
void mta_quit(struct mta_conn *c);
/* Drop at once and free; no callback runs afterwards. */
void mta_abort(struct mta_conn *c);
/* Free every connection at once, those quitting or being freed in the
 * background included, without callbacks (process exit, after the loop
 * has stopped). */
void mta_shutdown(void);

/* What the server offered, and the TLS in use ("TLSv1.3" or ""). */
const struct smtp_ehlo *mta_ehlo(const struct mta_conn *c);
const char *mta_tls_version(const struct mta_conn *c);
/* Whether the TLS session was resumed (from the client's per-destination
 * cache of the last session). */
bool mta_tls_resumed(const struct mta_conn *c);
unsigned mta_messages_sent(const struct mta_conn *c);

#endif

/*
 * envelope.h - the envelope of a queued message and its on-disk codec.
 *
 * The envelope is everything SMTP told us besides the content: who
 * submitted it (peer, HELO, authenticated user), the reverse-path with its
 * MAIL parameters, and one entry per recipient with its RCPT parameters
 * and delivery state.  It is stored as text lines ("key value\n") so that
 * a human can read a spool record, and decoded by a strict, bounded parser
 * (a corrupted or hostile record is refused, never trusted).  The
 * delivery state (hold, attempts, per-recipient state and last reply)
 * changes after acceptance and has a codec of its own, the payload of the
 * spool's STATE records.
 *
 * Fuzzed by tests/fuzz/fuzz_envelope.c and fuzz_envelope_state.c.
 */
#ifndef OMBUD_ENVELOPE_H
#define OMBUD_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "queue/queue_id.h"
#include "smtp/smtp_parse.h"

#define ENV_MAX_RCPT	100000	/* decoder refuses more */
#define ENV_HELO_MAX	255
#define ENV_PEER_MAX	63	/* textual IPv6 address + port fits */
#define ENV_USER_MAX	255
#define ENV_TENANT_MAX	127
#define ENV_REPLY_MAX	512	/* last remote reply kept per recipient */
#define ENV_REMOTE_MAX	300	/* "host[address]:port" */

enum rcpt_state {
	RCPT_PENDING = 0,	/* not tried yet */
	RCPT_DELIVERED,		/* final: a 2xx after the dot */
	RCPT_BOUNCED,		/* final: 5xx or expired; DSN sent if wanted */
	RCPT_DEFERRED,		/* tried, temporary failure, will retry */
};

struct env_rcpt {
	char		addr[SMTP_PATH_MAX + 1];
	unsigned	notify;				/* SMTP_NOTIFY_* */
	char		orcpt[SMTP_ORCPT_MAX + 1];
	enum rcpt_state	state;
	/* delivery state, from the message's latest STATE record (NULL
	 * and "" mean the same: none; envelope_free frees them): */
	char		*last_reply;	/* heap or NULL; "451 4.3.0 text" */
	char		*remote;	/* heap or NULL; who said it */
	bool		delay_warned;	/* a delay DSN went out */
};

struct envelope {
	char		id[QUEUE_ID_LEN + 1];
	int64_t		created;	/* unix seconds */
	char		helo[ENV_HELO_MAX + 1];
	char		peer[ENV_PEER_MAX + 1];
	char		user[ENV_USER_MAX + 1];	/* SASL user or "" */
	char		tenant[ENV_TENANT_MAX + 1]; /* "" until issue 4 */
	char		mail_from[SMTP_PATH_MAX + 1]; /* "" = null path */
	enum smtp_body	body;
	bool		smtputf8;
	enum smtp_ret	ret;
	char		envid[SMTP_ENVID_MAX + 1];
	uint64_t	content_size;	/* bytes of content after envelope */
	/* delivery state, from the message's latest STATE record (not
	 * part of the MSG record's encoding): */
	bool		hold;		/* not to be delivered until released */
	uint32_t	attempts;	/* delivery attempts so far */
	int64_t		last_attempt;	/* unix seconds, 0 = never */
	int64_t		next_attempt;	/* unix seconds, 0 = now */
	size_t		nrcpt;
	struct env_rcpt	*rcpt;		/* heap array of nrcpt */
	size_t		rcpt_cap;	/* slots allocated in rcpt (private
					   to envelope.c) */
};

void envelope_init(struct envelope *e);
/* Frees rcpt and the recipients' last_reply and remote, re-inits. */
void envelope_free(struct envelope *e);
/* Zeroed slot; more than ENV_MAX_RCPT recipients is a caller bug (fatal):
 * the decoder would refuse the record. */
struct env_rcpt *envelope_add_rcpt(struct envelope *e);

/* True if a and b hold the same envelope (every field, every recipient,
 * the delivery state included; a NULL string equals ""). */
bool envelope_equal(const struct envelope *a, const struct envelope *b);

/*
 * Append the text encoding of e to out (ends with an empty line).  One
 * "key value\n" line per field in a fixed order, then one line per
 * recipient:
 *
 *	id 018c2f6a4b1d3e9a0c11
 *	created 1700000000
 *	helo mail.example.com
 *	peer 192.0.2.7
 *	user alice
 *	tenant
 *	from alice@example.com
 *	body 8bitmime
 *	smtputf8 0
 *	ret unset
 *	envid
 *	size 4096
 *	rcpt addr=bob@example.org notify=6 orcpt=rfc822;b@x.org state=pending
 *
 * Text values escape the bytes 0x00-0x20, 0x7f and '%' as %XX (upper
 * case hex); other bytes, UTF-8 included, are written as they are.  An
 * empty value is written as nothing after the key and its space
 * ("tenant \n").  The encoding is canonical: envelope_decode accepts
 * exactly what this function produces and nothing else.
 */
void envelope_encode(const struct envelope *e, struct buf *out);

/*
 * Decode an envelope from data[0..len).  On success returns 0, fills e
 * (caller frees with envelope_free) and sets *used to the number of bytes
 * of the encoding (content follows).  Returns -1 on any malformed,
 * truncated or over-limit input, with e left freed.
 */
int envelope_decode(const char *data, size_t len, struct envelope *e,
    size_t *used);

/*
 * Append the delivery state of e to out (the payload of a spool STATE
 * record; the MSG encoding above does not carry it): the id, then hold,
 * attempts, last and next attempt, then one line per recipient, in
 * recipient order, with its index:
 *
 *	id 018c2f6a4b1d3e9a0c11
 *	hold 0
 *	attempts 3
 *	last 1700000000
 *	next 1700000300
 *	rcpt 0 state=deferred warned=0 remote=mx.example.net[192.0.2.1]:25 reply=451%204.3.0%20try%20later
 *	rcpt 1 state=delivered warned=0 remote=mx.example.net[192.0.2.1]:25 reply=250%202.0.0%20ok
 *
 * No empty line at the end: the record's length frames it.  Text is
 * escaped as in envelope_encode; a NULL or empty remote / last_reply is
 * written as nothing ("remote= reply=").  A remote longer than
 * ENV_REMOTE_MAX or a reply longer than ENV_REPLY_MAX bytes is cut at the
 * last UTF-8 character boundary within the bound.
 */
void envelope_state_encode(const struct envelope *e, struct buf *out);

/*
 * Apply a STATE payload data[0..len) onto e, an envelope decoded from the
 * message's MSG record: sets hold, attempts, last_attempt, next_attempt
 * and every recipient's state, delay_warned, remote and last_reply.  The
 * payload must be exactly what envelope_state_encode writes, for e's id
 * and e->nrcpt recipients.  0, or -1 with e unchanged.
 */
int envelope_state_decode(const char *data, size_t len, struct envelope *e);

/*
 * Check a STATE payload without an envelope to apply it to (the spool's
 * recovery): 0 with the id it names and its number of recipient lines,
 * or -1 if envelope_state_decode would refuse it for any envelope.
 */
int envelope_state_check(const char *data, size_t len,
    char id[QUEUE_ID_LEN + 1], size_t *nrcpt);

#endif

/*
 * bulk.h - the checks a submitted message's header passes at the end of
 * DATA, before it is made durable: RFC 5322's origination fields and the
 * bulk-sender rules of Gmail and Yahoo (2024).
 *
 * What it does, on the client's message (header first, CRLF lines):
 *  - at most one of each field RFC 5322 3.6 allows once (Date, From,
 *    Sender, Reply-To, To, Cc, Bcc, Message-ID, In-Reply-To, References,
 *    Subject): more is rejected (550 5.6.0);
 *  - a Date that is not an RFC 5322 date-time (3.3, obsolete forms 4.3
 *    accepted; day of month and day of week must fit the date) or a
 *    Message-ID that is not one msg-id (3.6.4) is rejected (550 5.6.0);
 *    a missing one is added, as Postfix does for submission;
 *  - mail marked as bulk (Precedence: bulk or list, or the submission
 *    field X-Ombud-Bulk: yes) must have a List-Unsubscribe field (RFC
 *    2369) with an https: or mailto: URI in angle brackets, else 550
 *    5.7.1 (or, with bulk_unsubscribe = warn, a warning); with an https:
 *    URI and no List-Unsubscribe-Post, "List-Unsubscribe-Post:
 *    List-Unsubscribe=One-Click" (RFC 8058) is added;
 *  - X-Ombud-Bulk fields are removed (yes or no; anything else is 550
 *    5.6.0);
 *  - a message that ends inside its header gets the empty line that
 *    separates header and body.
 * The aligned From (the header From's domains are the company's) is the
 * tenant policy's check (smtp_session.c, msg_header.c).
 *
 * Pure and bounded (every field value it reads is at most BULK_FIELD_MAX
 * bytes unfolded); fuzzed by tests/fuzz/fuzz_bulk.c.
 *
 * Must never: read past the length given; let through a message it
 * could not parse as if it were fine; change the message anywhere but
 * the fields named above.
 */
#ifndef OMBUD_BULK_H
#define OMBUD_BULK_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "common/util.h"

#define BULK_FIELD_MAX		8192	/* unfolded value of a checked field */
#define BULK_REMOVE_MAX		8	/* X-Ombud-Bulk fields */
#define BULK_URIS_MAX		16	/* URIs in one List-Unsubscribe */
#define BULK_REPLY_MAX		320

#define BULK_URI_HTTPS		0x1
#define BULK_URI_MAILTO		0x2
#define BULK_URI_OTHER		0x4

struct bulk_span {
	size_t	off;
	size_t	len;
};

struct bulk_check {
	bool		 bulk;		/* marked as bulk */
	bool		 add_date;
	bool		 add_msgid;
	bool		 add_unsub_post;
	bool		 add_separator;	/* the message ends in its header */
	size_t		 nremove;
	struct bulk_span remove[BULK_REMOVE_MAX];	/* whole fields */
	char		 reply[BULK_REPLY_MAX];		/* the rejection */
	char		 warning[BULK_REPLY_MAX];	/* what warn let by */
};

/*
 * Check msg[0..len).  unsub_warn: bulk mail without List-Unsubscribe is
 * let through with bc->warning set instead of rejected.  0 (accept, with
 * the changes bc describes), or -1 with bc->reply set.
 */
int bulk_check(const char *msg, size_t len, bool unsub_warn,
    struct bulk_check *bc);
/* Whether accepting the message changes it. */
bool bulk_changes(const struct bulk_check *bc);
/* Append the fields to add, each with CRLF.  The Message-ID made is
 * <YYYYMMDDhhmmss.UNIQUE@HOSTNAME>. */
void bulk_added_fields(const struct bulk_check *bc, const char *unique,
    const char *hostname, time_t now, struct buf *out);
/* Append msg without the removed fields, with the separator if due. */
void bulk_copy_message(const struct bulk_check *bc, const char *msg,
    size_t len, struct buf *out);

/* The parsers, on an unfolded field value (what follows the colon). */
bool bulk_date_ok(const char *v, size_t n);
bool bulk_msgid_ok(const char *v, size_t n);
/* BULK_URI_* flags of the URIs of a List-Unsubscribe value, or -1 when
 * it is not a list of <URI> (RFC 2369 3.1) or has more than
 * BULK_URIS_MAX. */
int bulk_unsub_uris(const char *v, size_t n);

#endif

/*
 * dsn.h - delivery status notifications (RFC 3464) that ombud sends to the
 * envelope sender when a recipient bounces (5xx, or lifetime expired) or,
 * optionally, is delayed.
 *
 * Must never: produce a bounce for a bounce (the caller checks for the
 * null reverse-path; dsn_build refuses it too); include more of the
 * original than RET asks for (HDRS: headers only); emit bare CR or LF or
 * lines over 998 octets, whatever the remote servers said.
 */
#ifndef OMBUD_DSN_H
#define OMBUD_DSN_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "queue/envelope.h"

enum dsn_action { DSN_FAILED, DSN_DELAYED, DSN_DELIVERED };

struct dsn_rcpt {
	const char	*addr;		/* final recipient */
	const char	*orcpt;		/* as given in ORCPT=, or NULL */
	enum dsn_action	 action;
	const char	*status;	/* "5.1.1" */
	const char	*remote_mta;	/* "mx.example.net", or NULL */
	const char	*diagnostic;	/* remote reply text "550 5.1.1 ...",
					   or our own reason; may be hostile */
	int64_t		 last_attempt;	/* unix seconds, 0 = none */
};

struct dsn_info {
	const char	*reporting_mta;	/* our hostname */
	const char	*postmaster;	/* From: of the report */
	int64_t		 arrival;	/* e->created */
	int64_t		 now;
	const char	*boundary_seed;	/* unique per report, e.g. queue id */
};

/*
 * Build the complete RFC 5322 message (multipart/report; report-type=
 * delivery-status) to e->mail_from about the recipients in r[0..n):
 * a human-readable part, the message/delivery-status part, and the
 * original (text/rfc822-headers for RET=HDRS, message/rfc822 otherwise,
 * truncated to max_original bytes at a line boundary).  A report without
 * a failed recipient returns the headers only (RFC 3461 4.3).  Returns 0,
 * or -1 (out untouched) if e has the null reverse-path, or if the inputs
 * cannot make a safe report: n == 0, a NULL pointer, a reverse-path or
 * postmaster with controls or angle brackets, reporting_mta not a host
 * name, now outside 1970..9999, a recipient with an empty or over-long
 * (> SMTP_PATH_MAX) address or an unknown action.  Invalid optional
 * fields (status, remote_mta, orcpt, envid) are replaced or left out.
 */
int dsn_build(const struct envelope *e, const char *content,
    size_t content_len, const struct dsn_rcpt *r, size_t n,
    const struct dsn_info *info, size_t max_original, struct buf *out);

#endif

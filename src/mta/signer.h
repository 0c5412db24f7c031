/*
 * signer.h - DKIM signing of outgoing mail off the event loop.
 *
 * What it does: the scheduler hands over a message's content (header
 * and body, CRLF) with the tenant snapshot; a worker thread finds the
 * header From domain, signs with every active key of that domain (one
 * per algorithm: rsa-sha256 and ed25519-sha256 sign twice), and the
 * signed content (DKIM-Signature fields first, then the message as it
 * was) comes back on the loop thread.
 *
 * What it must never do: sign on the event loop thread, sign with a key
 * of a domain other than the header From's, touch the snapshot's
 * reference count off the loop thread, or change a byte of the message
 * other than by prepending the signature fields.
 */
#ifndef OMBUD_SIGNER_H
#define OMBUD_SIGNER_H

#include <stdint.h>

#include "common/util.h"
#include "tenant/tenant.h"

struct event_base;
struct signer;

enum signer_rc {
	SIGNER_SIGNED = 0,	/* content has the signature(s) */
	SIGNER_NO_KEY,		/* the From domain has no active key */
	SIGNER_NO_FROM,		/* no usable header From */
	SIGNER_FAILED,		/* a key failed: see err */
};

struct signer_result {
	enum signer_rc	 rc;
	char		 domain[STORE_HOST_MAX + 1];	/* d= */
	char		 selectors[2 * (STORE_SELECTOR_MAX + 1)]; /* "a,b" */
	char		 err[128];
};

/* content: the message, moved in and handed back (signed or not). */
typedef void (*signer_cb)(void *arg, struct buf *content,
    const struct signer_result *res);

struct signer *signer_new(struct event_base *base, int nthreads);
/* Finishes queued jobs (their callbacks run), then frees. */
void signer_free(struct signer *sg);

/* Sign content (taken: *content is left empty) with the active keys of
 * its From domain in t (a reference is held until cb).  now: t=. */
void signer_sign(struct signer *sg, struct tenants *t, struct buf *content,
    int64_t now, signer_cb cb, void *arg);

#endif

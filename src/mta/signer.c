/*
 * signer.c - DKIM signing on worker threads (see signer.h).
 *
 * A job carries the content (moved, never copied on the loop thread),
 * a reference to the tenant snapshot, and the result.  The snapshot is
 * immutable, so the worker may search it and use its parsed keys (an
 * EVP_PKEY signs from several threads at once); only the loop thread
 * takes and drops the reference.
 *
 * Must never: block the loop on a signature, or sign for a domain the
 * header From does not name.
 */
#include "mta/signer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/workq.h"
#include "smtp/msg_header.h"

struct signer {
	struct workq	*wq;
};

struct sign_job {
	struct tenants		*t;
	struct buf		 content;
	int64_t			 now;
	struct signer_result	 res;
	signer_cb		 cb;
	void			*arg;
};

struct signer *
signer_new(struct event_base *base, int nthreads)
{
	struct signer *sg = xcalloc(1, sizeof(*sg));

	sg->wq = workq_new(base, nthreads > 0 ? nthreads : 1);
	return sg;
}

void
signer_free(struct signer *sg)
{
	if (sg == NULL)
		return;
	workq_free(sg->wq);
	free(sg);
}

/* Worker thread: the signatures, then the message. */
static void
signer_work(void *arg)
{
	struct sign_job *j = arg;
	char doms[MSG_FROM_MAX][MSG_DOMAIN_MAX + 1];
	const struct tenant_domain *td;
	struct buf sigs, out;
	size_t n = 0;

	buf_init(&sigs);
	if (msg_from_domains(j->content.data, j->content.len, doms, &n) !=
	    MSG_FROM_OK || n == 0) {
		j->res.rc = SIGNER_NO_FROM;
		return;
	}
	/* the first author's domain (the session made sure every From
	 * domain is the company's own) */
	if ((td = tenants_domain(j->t, doms[0])) == NULL || td->ndkim == 0) {
		strlcpy_ok(j->res.domain, doms[0], sizeof(j->res.domain));
		j->res.rc = SIGNER_NO_KEY;
		return;
	}
	strlcpy_ok(j->res.domain, td->name, sizeof(j->res.domain));
	for (size_t i = 0; i < td->ndkim; i++) {
		const struct tenant_dkim *k = &td->dkim[i];

		if (dkim_sign(k->key, td->name, k->selector, NULL,
		    (time_t)j->now, NULL, j->content.data, j->content.len,
		    &sigs, j->res.err, sizeof(j->res.err)) != 0) {
			j->res.rc = SIGNER_FAILED;
			buf_free(&sigs);
			return;
		}
		snprintf(j->res.selectors + strlen(j->res.selectors),
		    sizeof(j->res.selectors) - strlen(j->res.selectors),
		    "%s%s", i > 0 ? "," : "", k->selector);
	}
	buf_init(&out);
	buf_reserve(&out, sigs.len + j->content.len);
	buf_add(&out, sigs.data, sigs.len);
	buf_add(&out, j->content.data, j->content.len);
	buf_free(&sigs);
	buf_free(&j->content);
	j->content = out;
	j->res.rc = SIGNER_SIGNED;
}

/* Loop thread. */
static void
signer_done(void *arg)
{
	struct sign_job *j = arg;

	tenants_unref(j->t);
	j->cb(j->arg, &j->content, &j->res);
	buf_free(&j->content);
	free(j);
}

void
signer_sign(struct signer *sg, struct tenants *t, struct buf *content,
    int64_t now, signer_cb cb, void *arg)
{
	struct sign_job *j = xcalloc(1, sizeof(*j));

	j->t = tenants_ref(t);
	j->content = *content;
	buf_init(content);
	j->now = now;
	j->cb = cb;
	j->arg = arg;
	workq_push(sg->wq, signer_work, signer_done, j);
}

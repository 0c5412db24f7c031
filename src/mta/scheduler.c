/*
 * scheduler.c - the delivery engine (see scheduler.h for the model).
 *
 * Objects, from the queue outwards:
 *   smsg      one queued message: id, arrival, attempts, hold; in the id
 *             hash and, when waiting for its next attempt, in the heap.
 *   delivery  a message being attempted: its envelope and content loaded
 *             from the spool, the count of jobs still out.
 *   job       the recipients of one delivery that go to one destination
 *             (at most SCHED_JOB_RCPT of them: one SMTP transaction).
 *   dest      a destination ("mx:example.org" or "route:NAME"): a FIFO of
 *             jobs and the connections that serve them.
 *   sconn     one outbound connection of a destination: first a
 *             connector (MX lookup, address lookup, connect, falling
 *             through the MX hosts and their addresses), then an
 *             mta_client connection that takes jobs until it has sent
 *             conn_max_messages or stayed idle conn_idle_timeout.
 *
 * Recipient results: 2xx after the dot = delivered; 5xx = bounced; 4xx,
 * a lost connection, a DNS or connect failure = deferred and retried
 * with exponential backoff (schedq's retry_delay) until queue_lifetime,
 * then bounced.  When a connection attempt fails outright (every MX and
 * address tried) and the destination has no other connection, every job
 * waiting for it gets that failure: a dead destination does not make a
 * thousand messages wait for a thousand connect timeouts.
 *
 * Must never: write a delivery result for a message that was deleted
 * meanwhile; remove a message before its bounce is durable; bounce a
 * message with the null sender; hand a job to a connection that is not
 * idle.
 */
#include "mta/scheduler.h"
#include "mta/dsn.h"
#include "mta/mta_client.h"
#include "mta/oauth.h"
#include "mta/schedq.h"
#include "mta/signer.h"
#include "auth/dmarc.h"
#include "conf/conf.h"
#include "dns/dns.h"
#include "queue/queue_id.h"
#include "queue/spool.h"
#include "tenant/tenant.h"
#include "tls/tls.h"
#include "common/log.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#define SCHED_JOB_RCPT		100	/* recipients per transaction */
#define SCHED_MAX_TRIES		10	/* addresses per connection attempt */
#define SCHED_DSN_ORIGINAL	(256 * 1024) /* of the original in a DSN */
#define SCHED_KEY_MAX		(DNS_NAME_MAX + 72)

/* conf's route_tls is mta_client's enum mta_tls, value for value */
_Static_assert((int)RTLS_NONE == (int)MTA_TLS_NONE &&
    (int)RTLS_OPPORTUNISTIC == (int)MTA_TLS_OPPORTUNISTIC &&
    (int)RTLS_REQUIRED == (int)MTA_TLS_REQUIRED &&
    (int)RTLS_VERIFY == (int)MTA_TLS_VERIFY &&
    (int)RTLS_IMPLICIT == (int)MTA_TLS_IMPLICIT, "route_tls != mta_tls");

struct scheduler;
struct dest;
struct delivery;

struct smsg {
	char			 id[QUEUE_ID_LEN + 1];
	TAILQ_ENTRY(smsg)	 wentry;	/* s->auth_wait */
	bool			 auth_wait;
	char			 wait_domain[DNS_NAME_MAX + 1];
	struct smsg		*hnext;		/* id hash chain */
	struct schedq_item	 item;		/* .data = this */
	int64_t			 created;
	bool			 hold;
	bool			 deleted;	/* while in flight */
	struct delivery		*dlv;		/* in flight */
};

TAILQ_HEAD(msg_list, smsg);

struct job {
	TAILQ_ENTRY(job)	 entry;
	struct delivery		*d;
	struct dest		*dest;
	size_t			*idx;		/* recipient indexes */
	size_t			 n;
	bool			 retried;	/* once on a fresh connection */
	struct mta_tx		 tx;
};
TAILQ_HEAD(job_list, job);

/* Per recipient, what happened during this attempt. */
enum rcpt_news { NEWS_NONE = 0, NEWS_DELIVERED, NEWS_DEFERRED,
	NEWS_BOUNCED };

struct delivery {
	struct scheduler	*s;
	struct smsg		*m;
	struct envelope		 env;
	struct buf		 content;
	size_t			 njobs;		/* still out */
	uint8_t			*news;		/* [env.nrcpt] rcpt_news */
	struct spool_commit	*dsn_commit;	/* waiting for the bounce */
	char			 dsn_id[QUEUE_ID_LEN + 1];
	bool			 all_final;
	enum route_kind		 rk;		/* the route it takes */
	bool			 signing;	/* content with the signer */
	const char		*kind;		/* dispatch: see delivery_route */
	bool			 has_route;
	char			 route[SCHED_KEY_MAX - 9];
	TAILQ_ENTRY(delivery)	 entry;		/* s->deliveries */
};
TAILQ_HEAD(delivery_list, delivery);

enum sconn_state { SC_CONNECTING, SC_IDLE, SC_BUSY };

struct sconn {
	TAILQ_ENTRY(sconn)	 entry;		/* dest->conns */
	struct dest		*dest;
	enum sconn_state	 state;
	struct mta_conn		*mc;
	struct job		*job;		/* SC_BUSY */
	struct event		*idle_ev;
	unsigned		 nsent;
	/* connector */
	struct dns_req		*dreq;
	struct oauth_req	*oreq;
	char			*token;		/* XOAUTH2, wiped */
	size_t			 nhosts, host_i;
	char			(*hosts)[DNS_NAME_MAX + 1];
	size_t			 naddr, addr_i, tries;
	struct sockaddr_storage	 addr[DNS_MAX_ADDR];
	bool			 have_fail;	/* fail_* describe the last */
	bool			 fail_perm;
	char			 fail_reply[ENV_REPLY_MAX + 1];
	char			 relay[ENV_REMOTE_MAX + 1];
	SSL_CTX			*ssl;		/* our reference */
};
TAILQ_HEAD(sconn_list, sconn);

struct dest {
	struct scheduler	*s;
	char			 key[SCHED_KEY_MAX];	/* mx:DOMAIN, route:N */
	struct dest		*hnext;
	unsigned		 busy;		/* dest_kick depth: not
						   freed while > 0 */
	bool			 is_route;	/* a smart host: route or
						   tenant (not MX) */
	bool			 is_tenant;	/* a company's own server */
	bool			 is_user;	/* a user's own server */
	const char		*name;		/* after the "mx:", "route:"
						   or "tenant:" */
	struct job_list		 jobs;
	size_t			 njobs;
	struct sconn_list	 conns;
	size_t			 nconns, nconnecting;
	int64_t			 next_send_ms;	/* dest_rate */
	struct event		*rate_ev;
	bool			 waiting;	/* in s->waiting */
	TAILQ_ENTRY(dest)	 wentry;
};
TAILQ_HEAD(dest_list, dest);

struct scheduler {
	struct event_base	*base;
	struct spool		*sp;
	const struct conf	*conf;
	struct dns		*dns;
	struct oauth		*oauth;
	SSL_CTX			*mx_ssl;
	SSL_CTX			*route_ssl[CONF_MAX_ROUTES];
	struct retry_policy	 retry;
	struct smsg		**mh;		/* id hash */
	size_t			 mh_size, nmsg;
	struct dest		**dh;		/* dest hash */
	size_t			 dh_size, ndest;
	struct schedq		 q;
	struct event		*tick_ev;
	size_t			 inflight, nconns;
	struct delivery_list	 deliveries;
	struct dest_list	 waiting;	/* dests wanting a connection
						   slot */
	struct tenants		*tenants;	/* companies' routes */
	struct signer		*signer;	/* DKIM, on worker threads */
	struct msg_list		 auth_wait;	/* platform-relay mail held
						   until its domain passes
						   SPF and DKIM */
	bool			 stopping;
	void			(*idle_cb)(void *);	/* stopping, and
							   nothing in flight */
	void			*idle_arg;
	struct scheduler_stats	 st;
};

static void sched_arm(struct scheduler *s);
static void dest_kick(struct dest *dt);
static void sconn_free(struct sconn *c, bool quit);
static void sconn_resolve_host(struct sconn *c);
static void sconn_try_addr(struct sconn *c);
static void delivery_job_done(struct delivery *d);

/* --- small helpers ------------------------------------------------- */

static int64_t
now_ms(void)
{
	return now_usec_wall() / 1000;
}

static int64_t
now_s(void)
{
	return now_usec_wall() / 1000000;
}

static uint32_t
hash_str(const char *p)
{
	uint32_t h = 2166136261u;

	for (; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return h;
}

/* "451 4.4.1 text" from a reply, on one line. */
static void
reply_format(const struct smtp_reply *r, char *out, size_t outlen)
{
	char *p;
	size_t len = strlen(r->text);
	int n = snprintf(out, outlen, "%d%s%s ", r->code, r->enhanced[0] ?
	    " " : "", r->enhanced);

	if (n < 0 || (size_t)n >= outlen)
		return;
	/* a long reply is cut: its start says what matters */
	if (len > outlen - (size_t)n - 1)
		len = outlen - (size_t)n - 1;
	memcpy(out + n, r->text, len);
	out[(size_t)n + len] = '\0';
	for (p = out; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

/* Replace *dst by a copy of at most max bytes of src (NULL: none). */
static void
set_str(char **dst, const char *src, size_t max)
{
	size_t n;

	free(*dst);
	*dst = NULL;
	if (src == NULL)
		return;
	n = strnlen(src, max);
	*dst = xmalloc(n + 1);
	memcpy(*dst, src, n);
	(*dst)[n] = '\0';
}

/* The status code of a one-line reply "451 4.4.1 ..." ("4.4.1"), or a
 * class default. */
static void
reply_status(const char *reply, char *out, size_t outlen, bool perm)
{
	const char *p = reply ? strchr(reply, ' ') : NULL;
	size_t n = 0;

	if (p != NULL) {
		p++;
		while (p[n] && p[n] != ' ' && n < 15)
			n++;
		if (n >= 5 && (p[0] == '4' || p[0] == '5') && p[1] == '.' &&
		    n < outlen) {
			memcpy(out, p, n);
			out[n] = '\0';
			return;
		}
	}
	snprintf(out, outlen, "%s", perm ? "5.0.0" : "4.0.0");
}

/* --- message table ------------------------------------------------- */

static struct smsg **
msg_slot(struct scheduler *s, const char *id)
{
	struct smsg **pp = &s->mh[hash_str(id) & (s->mh_size - 1)];

	for (; *pp; pp = &(*pp)->hnext)
		if (strcmp((*pp)->id, id) == 0)
			break;
	return pp;
}

static struct smsg *
msg_find(struct scheduler *s, const char *id)
{
	return *msg_slot(s, id);
}

static void
msg_grow(struct scheduler *s)
{
	size_t nsize = s->mh_size * 2;
	struct smsg **nh = xcalloc(nsize, sizeof(*nh));

	for (size_t i = 0; i < s->mh_size; i++)
		while (s->mh[i]) {
			struct smsg *m = s->mh[i];
			s->mh[i] = m->hnext;
			m->hnext = nh[hash_str(m->id) & (nsize - 1)];
			nh[hash_str(m->id) & (nsize - 1)] = m;
		}
	free(s->mh);
	s->mh = nh;
	s->mh_size = nsize;
}

static struct smsg *
msg_add(struct scheduler *s, const char *id, int64_t created)
{
	struct smsg **pp = msg_slot(s, id), *m;

	if (*pp)
		return *pp;
	m = xcalloc(1, sizeof(*m));
	strlcpy_ok(m->id, id, sizeof(m->id));
	m->created = created;
	m->item.pos = SCHEDQ_NONE;
	m->item.data = m;
	*pp = m;
	if (++s->nmsg > s->mh_size)
		msg_grow(s);
	return m;
}

static void
msg_drop(struct scheduler *s, struct smsg *m)
{
	struct smsg **pp = msg_slot(s, m->id);

	if (*pp == m)
		*pp = m->hnext;
	if (m->item.pos != SCHEDQ_NONE)
		schedq_remove(&s->q, &m->item);
	if (m->auth_wait)
		TAILQ_REMOVE(&s->auth_wait, m, wentry);
	s->nmsg--;
	free(m);
}

/* --- destinations -------------------------------------------------- */

/* Twice the buckets (many live destinations: a burst to many domains). */
static void
dest_grow(struct scheduler *s)
{
	size_t nsize = s->dh_size * 2;
	struct dest **nh = xcalloc(nsize, sizeof(*nh));

	for (size_t i = 0; i < s->dh_size; i++)
		while (s->dh[i]) {
			struct dest *dt = s->dh[i];
			s->dh[i] = dt->hnext;
			dt->hnext = nh[hash_str(dt->key) & (nsize - 1)];
			nh[hash_str(dt->key) & (nsize - 1)] = dt;
		}
	free(s->dh);
	s->dh = nh;
	s->dh_size = nsize;
}

static struct dest *
dest_get(struct scheduler *s, const char *key, bool is_route, bool is_tenant,
    bool is_user)
{
	uint32_t h = hash_str(key);
	struct dest **pp = &s->dh[h & (s->dh_size - 1)], *dt;

	for (; *pp; pp = &(*pp)->hnext)
		if (strcmp((*pp)->key, key) == 0)
			return *pp;
	dt = xcalloc(1, sizeof(*dt));
	dt->s = s;
	strlcpy_ok(dt->key, key, sizeof(dt->key));
	dt->is_route = is_route || is_tenant || is_user;
	dt->is_tenant = is_tenant;
	dt->is_user = is_user;
	dt->name = strchr(dt->key, ':') + 1;
	TAILQ_INIT(&dt->jobs);
	TAILQ_INIT(&dt->conns);
	*pp = dt;
	if (++s->ndest > s->dh_size)
		dest_grow(s);
	return dt;
}

/* Forget an unused destination (no jobs, no connections). */
static void
dest_gc(struct dest *dt)
{
	struct scheduler *s = dt->s;
	struct dest **pp;

	if (dt->njobs > 0 || dt->nconns > 0 || dt->busy > 0)
		return;
	pp = &s->dh[hash_str(dt->key) & (s->dh_size - 1)];
	for (; *pp; pp = &(*pp)->hnext)
		if (*pp == dt) {
			*pp = dt->hnext;
			break;
		}
	if (dt->waiting)
		TAILQ_REMOVE(&s->waiting, dt, wentry);
	if (dt->rate_ev)
		event_free(dt->rate_ev);
	s->ndest--;
	free(dt);
}

/* A smart host's settings: a [route] of the configuration, or a
 * company's own server from the tenant database. */
struct relay {
	const char	*host;
	uint16_t	 port;
	enum route_tls	 tls;
	const char	*auth_user;		/* NULL: no AUTH */
	const char	*auth_pass;
	bool		 xoauth2;
	struct oauth_client oc;
	SSL_CTX		*ssl;
	unsigned	 max_connections;	/* 0: the default */
};

/* The settings of smart-host destination dt now; false if they are gone
 * (the route left the configuration, the company its own server). */
static bool
dest_relay(const struct dest *dt, struct relay *r)
{
	const struct scheduler *s = dt->s;
	const struct conf_route *rt;
	const struct company *co;

	const struct smtp_settings *own = NULL;

	memset(r, 0, sizeof(*r));
	if (dt->is_tenant) {
		co = tenants_company(s->tenants, dt->name);
		if (co != NULL && co->route == ROUTE_OWN_SERVER)
			own = &co->own;
	} else if (dt->is_user) {
		const struct tenant_user *tu = tenants_user_by_id(s->tenants,
		    strtoll(dt->name, NULL, 10));
		if (tu != NULL && tu->u.route == ROUTE_OWN_SERVER)
			own = &tu->u.smtp;
	}
	if (dt->is_tenant || dt->is_user) {
		if (own == NULL || own->host[0] == '\0')
			return false;
		r->host = own->host;
		r->port = own->port ? own->port : 587;
		r->tls = own->tls;
		r->auth_user = own->auth_user[0] ? own->auth_user : NULL;
		if (own->xoauth2_token_url[0]) {
			r->xoauth2 = true;
			r->oc.token_url = own->xoauth2_token_url;
			r->oc.client_id = own->xoauth2_client_id;
			r->oc.client_secret = own->secret;
			r->oc.scope = own->xoauth2_scope;
		} else
			r->auth_pass = own->secret;
		r->ssl = s->mx_ssl;	/* public servers: system CAs */
		return true;
	}
	if ((rt = conf_route_find(s->conf, dt->name)) == NULL)
		return false;
	r->host = rt->host;
	r->port = (uint16_t)rt->port;
	r->tls = rt->tls;
	r->auth_user = rt->auth_user;
	r->auth_pass = rt->auth_password;
	if (rt->xoauth2_token_url) {
		r->xoauth2 = true;
		r->oc.token_url = rt->xoauth2_token_url;
		r->oc.client_id = rt->xoauth2_client_id;
		r->oc.client_secret = rt->xoauth2_secret;
		r->oc.scope = rt->xoauth2_scope;
	}
	r->ssl = s->route_ssl[rt - s->conf->routes];
	r->max_connections = (unsigned)rt->max_connections;
	return true;
}

static unsigned
dest_conn_limit(const struct dest *dt)
{
	struct relay r;

	if (dt->is_route && dest_relay(dt, &r) && r.max_connections > 0)
		return r.max_connections;
	return (unsigned)dt->s->conf->dest_max_connections;
}

/* --- results ------------------------------------------------------- */

/* Record the outcome of one recipient of a job. */
static void
job_rcpt_result(struct job *j, size_t k, const char *reply, bool perm,
    bool ok, const char *relay, const char *tls)
{
	struct delivery *d = j->d;
	struct scheduler *s = d->s;
	size_t i = j->idx[k];
	struct env_rcpt *r = &d->env.rcpt[i];

	set_str(&r->last_reply, reply, ENV_REPLY_MAX);
	set_str(&r->remote, relay && relay[0] ? relay : NULL, ENV_REMOTE_MAX);
	if (ok) {
		char att[16], delay[32];

		r->state = RCPT_DELIVERED;
		d->news[i] = NEWS_DELIVERED;
		s->st.delivered++;
		snprintf(att, sizeof(att), "%u", d->env.attempts + 1);
		snprintf(delay, sizeof(delay), "%lld", (long long)(now_s() -
		    d->env.created));
		log_event(LOG_LVL_INFO, "delivery.delivered", "qid",
		    d->env.id, "rcpt", r->addr, "relay", relay, "reply", reply,
		    "tls", tls && tls[0] ? tls : "none", "attempts", att,
		    "delay", delay, NULL);
	} else if (perm) {
		r->state = RCPT_BOUNCED;
		d->news[i] = NEWS_BOUNCED;
	} else {
		r->state = RCPT_DEFERRED;
		d->news[i] = NEWS_DEFERRED;
	}
}

/* Every recipient of the job gets the same verdict. */
static void
job_fail(struct job *j, const char *reply, bool perm, const char *relay)
{
	for (size_t k = 0; k < j->n; k++)
		job_rcpt_result(j, k, reply, perm, false, relay, NULL);
}

static void
job_free(struct job *j)
{
	free(j->idx);
	free(j);
}

/* The job has its results: detach it and tell its delivery. */
static void
job_done(struct job *j)
{
	struct delivery *d = j->d;

	job_free(j);
	delivery_job_done(d);
}

static void
dest_unqueue(struct dest *dt, struct job *j)
{
	TAILQ_REMOVE(&dt->jobs, j, entry);
	dt->njobs--;
}

/* The last connection attempt failed and nothing else serves dt: every
 * waiting job gets the failure. */
static void
dest_fail_all(struct dest *dt, const char *reply, bool perm,
    const char *relay)
{
	struct job *j;
	char buf[ENV_REPLY_MAX + 1];

	strlcpy_ok(buf, reply, sizeof(buf));	/* reply may be in a conn */
	while ((j = TAILQ_FIRST(&dt->jobs)) != NULL) {
		dest_unqueue(dt, j);
		job_fail(j, buf, perm, relay);
		job_done(j);
	}
}

/* --- connections --------------------------------------------------- */

static void
sconn_fail_set(struct sconn *c, bool perm, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
sconn_fail_set(struct sconn *c, bool perm, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->fail_reply, sizeof(c->fail_reply), fmt, ap);
	va_end(ap);
	c->have_fail = true;
	c->fail_perm = perm;
}

static void
sconn_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sconn *c = arg;
	struct dest *dt = c->dest;

	sconn_free(c, true);
	dest_kick(dt);		/* forgets dt if it has nothing left */
}

/*
 * Free a connection.  quit: say QUIT politely (an idle, healthy one).
 * A connection lost inside mta_client is freed by it: then c->mc is
 * already NULL.
 */
static void
sconn_free(struct sconn *c, bool quit)
{
	struct dest *dt = c->dest;
	struct scheduler *s = dt->s;
	bool was_full = s->nconns >= s->conf->delivery_max_connections;

	if (c->dreq)
		dns_cancel(c->dreq);
	if (c->oreq)
		oauth_cancel(c->oreq);
	if (c->mc) {
		if (quit)
			mta_quit(c->mc);
		else
			mta_abort(c->mc);
	}
	if (c->state == SC_CONNECTING)
		dt->nconnecting--;
	if (c->idle_ev)
		event_free(c->idle_ev);
	if (c->ssl)
		SSL_CTX_free(c->ssl);
	free_secret(c->token);
	free(c->hosts);
	TAILQ_REMOVE(&dt->conns, c, entry);
	dt->nconns--;
	s->nconns--;
	free(c);
	/* a freed slot may let a waiting destination connect */
	if (was_full && !s->stopping) {
		struct dest *w;
		while ((w = TAILQ_FIRST(&s->waiting)) != NULL &&
		    s->nconns < s->conf->delivery_max_connections) {
			TAILQ_REMOVE(&s->waiting, w, wentry);
			w->waiting = false;
			dest_kick(w);
		}
	}
}

/* The connector ran out of hosts and addresses. */
static void
sconn_give_up(struct sconn *c)
{
	struct dest *dt = c->dest;
	char reply[ENV_REPLY_MAX + 1], relay[ENV_REMOTE_MAX + 1];
	bool perm = c->fail_perm;

	if (!c->have_fail)
		snprintf(c->fail_reply, sizeof(c->fail_reply),
		    "451 4.4.0 No usable address for %s", dt->name);
	strlcpy_ok(reply, c->fail_reply, sizeof(reply));
	strlcpy_ok(relay, c->relay, sizeof(relay));
	log_event(LOG_LVL_INFO, "delivery.connect_failed", "dest", dt->key,
	    "relay", relay[0] ? relay : NULL, "reply", reply, NULL);
	sconn_free(c, false);
	if (dt->nconns == 0)
		dest_fail_all(dt, reply, perm, relay);
	dest_kick(dt);
}

static void
sconn_ready_cb(void *arg, struct mta_conn *mc, const struct mta_result *res)
{
	struct sconn *c = arg;
	struct dest *dt = c->dest;

	if (res->ok) {
		c->mc = mc;
		c->state = SC_IDLE;
		dt->nconnecting--;
		c->have_fail = false;
		dest_kick(dt);
		return;
	}
	/* mc is NULL: mta_client freed it */
	if (res->conn_lost)
		sconn_fail_set(c, false, "451 4.4.1 %s: %s", c->relay,
		    res->error[0] ? res->error : "connection failed");
	else {
		char r[ENV_REPLY_MAX + 1];
		int cls = smtp_reply_class(&res->reply);

		reply_format(&res->reply, r, sizeof(r));
		/* AUTH refused: defer, not bounce (a wrong password is
		 * fixed by an operator, not by the sender) */
		sconn_fail_set(c, cls == 5 && res->stage != MTA_STAGE_AUTH,
		    "%s", r);
		if (res->stage == MTA_STAGE_AUTH && c->token && dt->is_route) {
			struct relay rl;
			if (dest_relay(dt, &rl) && rl.xoauth2 && dt->s->oauth)
				oauth_invalidate(dt->s->oauth, &rl.oc);
		}
	}
	c->addr_i++;
	sconn_try_addr(c);
}

/* The smart host's settings are gone: defer what waits for it. */
static void
sconn_not_configured(struct sconn *c)
{
	struct dest *dt = c->dest;

	if (dt->is_tenant || dt->is_user)
		sconn_fail_set(c, false, "451 4.3.5 %s %s has no own mail "
		    "server configured", dt->is_user ? "User" : "Company",
		    dt->name);
	else
		sconn_fail_set(c, false, "451 4.3.5 Route %s is not "
		    "configured", dt->name);
	sconn_give_up(c);
}

static void
sconn_connect(struct sconn *c)
{
	struct dest *dt = c->dest;
	struct scheduler *s = dt->s;
	const struct conf *cf = s->conf;
	struct relay rl;
	struct mta_conn_params p;
	char ip[INET6_ADDRSTRLEN];
	struct sockaddr_storage *ss = &c->addr[c->addr_i];
	uint16_t port;

	memset(&p, 0, sizeof(p));
	if (dt->is_route) {
		if (!dest_relay(dt, &rl)) {
			sconn_not_configured(c);
			return;
		}
		port = rl.port;
		p.tls = (enum mta_tls)rl.tls;
		p.auth_user = rl.auth_user;
		p.auth_pass = rl.xoauth2 ? NULL : rl.auth_pass;
		p.xoauth2_token = c->token;
		p.ssl_ctx = rl.ssl;
	} else {
		port = (uint16_t)cf->mx_port;
		p.tls = (enum mta_tls)cf->mx_tls;
		p.ssl_ctx = s->mx_ssl;
	}
	if (ss->ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)ss;
		s6->sin6_port = htons(port);
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		p.addrlen = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)ss;
		s4->sin_port = htons(port);
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		p.addrlen = sizeof(*s4);
	}
	memcpy(&p.addr, ss, sizeof(*ss));
	snprintf(c->relay, sizeof(c->relay), "%s[%s]:%u",
	    c->hosts[c->host_i], ip, port);
	p.host = c->hosts[c->host_i];
	p.helo = cf->hostname;
	p.timeout_connect = (unsigned)cf->delivery_timeout_connect;
	p.timeout_command = (unsigned)cf->delivery_timeout_command;
	p.timeout_data = (unsigned)cf->delivery_timeout_data;
	if (c->ssl == NULL && p.ssl_ctx != NULL) {
		SSL_CTX_up_ref(p.ssl_ctx);
		c->ssl = p.ssl_ctx;
	}
	p.ssl_ctx = c->ssl;
	c->tries++;
	if (mta_connect(s->base, &p, sconn_ready_cb, c) == NULL) {
		sconn_fail_set(c, false, "451 4.3.0 Cannot connect to %s",
		    c->relay);
		c->addr_i++;
		sconn_try_addr(c);
	}
}

static void
sconn_token_cb(void *arg, const char *token, const char *error,
    bool permanent)
{
	struct sconn *c = arg;

	c->oreq = NULL;
	if (token == NULL) {
		/* token trouble is the operator's to fix: defer */
		sconn_fail_set(c, false, "454 4.7.0 OAuth token for route "
		    "%s: %s", c->dest->name, error ? error : "failed");
		sconn_give_up(c);
		return;
	}
	c->token = xstrdup(token);
	sconn_connect(c);
}

/* Connect to the current address, or move on to the next one. */
static void
sconn_try_addr(struct sconn *c)
{
	struct dest *dt = c->dest;
	struct scheduler *s = dt->s;

	if (c->tries >= SCHED_MAX_TRIES || s->stopping) {
		sconn_give_up(c);
		return;
	}
	if (c->addr_i >= c->naddr) {
		c->host_i++;
		sconn_resolve_host(c);
		return;
	}
	if (dt->is_route && c->token == NULL) {
		struct relay rl;

		if (dest_relay(dt, &rl) && rl.xoauth2) {
			char err[256];

			if (s->oauth == NULL)
				s->oauth = oauth_new(s->base,
				    s->conf->oauth_ca_file, err, sizeof(err));
			if (s->oauth == NULL || (c->oreq = oauth_token(
			    s->oauth, &rl.oc, sconn_token_cb, c, err,
			    sizeof(err))) == NULL) {
				sconn_fail_set(c, false, "454 4.7.0 OAuth: %s",
				    err);
				sconn_give_up(c);
			}
			return;
		}
	}
	sconn_connect(c);
}

static void
sconn_addr_cb(void *arg, const struct dns_addr_result *r)
{
	struct sconn *c = arg;

	c->dreq = NULL;
	if (r->status == DNS_OK && r->naddr > 0) {
		c->naddr = r->naddr;
		memcpy(c->addr, r->addr, r->naddr * sizeof(r->addr[0]));
		c->addr_i = 0;
		sconn_try_addr(c);
		return;
	}
	/* an MX host that does not resolve is the domain's problem to
	 * fix: deferred, like a host that does not answer */
	if (!c->have_fail || !c->fail_perm)
		sconn_fail_set(c, false, r->status == DNS_TEMPFAIL ?
		    "451 4.4.3 Temporary DNS failure looking up %s" :
		    "451 4.4.4 Host %s not found", c->hosts[c->host_i]);
	c->host_i++;
	sconn_resolve_host(c);
}

static bool
addr_literal(const char *host, struct sockaddr_storage *ss)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)ss;
	char tmp[DNS_NAME_MAX + 1];
	size_t n = strlen(host);

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		return true;
	}
	if (host[0] == '[' && n > 2 && n - 2 < sizeof(tmp)) {
		memcpy(tmp, host + 1, n - 2);
		tmp[n - 2] = '\0';
		host = tmp;
	}
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		return true;
	}
	return false;
}

/* Look up the addresses of the current host, or give up. */
static void
sconn_resolve_host(struct sconn *c)
{
	struct scheduler *s = c->dest->s;

	if (c->host_i >= c->nhosts) {
		sconn_give_up(c);
		return;
	}
	c->naddr = c->addr_i = 0;
	if (addr_literal(c->hosts[c->host_i], &c->addr[0])) {
		c->naddr = 1;
		sconn_try_addr(c);
		return;
	}
	c->dreq = dns_lookup_addr(s->dns, c->hosts[c->host_i], AF_UNSPEC,
	    sconn_addr_cb, c);
	if (c->dreq == NULL) {
		sconn_fail_set(c, false, "451 4.4.3 DNS lookup of %s failed",
		    c->hosts[c->host_i]);
		c->host_i++;
		sconn_resolve_host(c);
	}
}

static void
sconn_mx_cb(void *arg, const struct dns_mx_result *r)
{
	struct sconn *c = arg;
	const char *dom = c->dest->name;

	c->dreq = NULL;
	switch (r->status) {
	case DNS_OK:
		c->nhosts = r->nmx;
		c->hosts = xcalloc(r->nmx, sizeof(*c->hosts));
		for (size_t i = 0; i < r->nmx; i++)
			strlcpy_ok(c->hosts[i], r->mx[i].host,
			    sizeof(c->hosts[i]));
		c->host_i = 0;
		sconn_resolve_host(c);
		return;
	case DNS_NULLMX:
		sconn_fail_set(c, true, "556 5.1.10 Domain %s accepts no mail "
		    "(null MX)", dom);
		break;
	case DNS_NXDOMAIN:
	case DNS_NODATA:
		sconn_fail_set(c, true, "550 5.1.2 Domain %s has no mail "
		    "servers (no MX, A or AAAA)", dom);
		break;
	case DNS_BADNAME:
		sconn_fail_set(c, true, "550 5.1.2 Bad domain name %s", dom);
		break;
	case DNS_TEMPFAIL:
	default:
		sconn_fail_set(c, false, "451 4.4.3 Temporary DNS failure "
		    "looking up the MX of %s", dom);
		break;
	}
	sconn_give_up(c);
}

/* Start one more connection for dt. */
static void
sconn_start(struct dest *dt)
{
	struct scheduler *s = dt->s;
	struct sconn *c = xcalloc(1, sizeof(*c));

	c->dest = dt;
	c->state = SC_CONNECTING;
	TAILQ_INSERT_TAIL(&dt->conns, c, entry);
	dt->nconns++;
	dt->nconnecting++;
	s->nconns++;
	if (dt->is_route) {
		struct relay rl;
		bool ok = dest_relay(dt, &rl);

		c->nhosts = 1;
		c->hosts = xcalloc(1, sizeof(*c->hosts));
		strlcpy_ok(c->hosts[0], ok ? rl.host : dt->name,
		    sizeof(c->hosts[0]));
		if (!ok) {
			sconn_not_configured(c);
			return;
		}
		sconn_resolve_host(c);
		return;
	}
	c->dreq = dns_lookup_mx(s->dns, dt->name, sconn_mx_cb, c);
	if (c->dreq == NULL) {
		sconn_fail_set(c, true, "550 5.1.2 Bad domain name %s",
		    dt->name);
		sconn_give_up(c);
	}
}

static void
sconn_sent_cb(void *arg, struct mta_conn *mc, const struct mta_tx_result *res)
{
	struct sconn *c = arg;
	struct dest *dt = c->dest;
	struct scheduler *s = dt->s;
	struct job *j = c->job;
	const char *tls = mta_tls_version(mc);
	char tlsbuf[32];
	bool lost = res->tx.conn_lost, nothing = true;

	strlcpy_ok(tlsbuf, tls ? tls : "", sizeof(tlsbuf));
	c->job = NULL;
	c->nsent++;
	for (size_t k = 0; k < res->nrcpt; k++)
		if (!res->rcpt_lost[k])
			nothing = false;
	if (lost) {
		c->mc = NULL;		/* mta_client frees it */
		if (nothing && res->tx.stage == MTA_STAGE_MAIL &&
		    c->nsent > 1 && !j->retried) {
			/* a reused connection the server had closed: try
			 * again on a fresh one, not a deferral */
			j->retried = true;
			TAILQ_INSERT_HEAD(&dt->jobs, j, entry);
			dt->njobs++;
			c->state = SC_IDLE;
			sconn_free(c, false);
			dest_kick(dt);
			return;
		}
	}
	for (size_t k = 0; k < j->n && k < res->nrcpt; k++) {
		char r[ENV_REPLY_MAX + ENV_REMOTE_MAX + 300];
		int cls;

		if (res->rcpt_lost[k]) {
			snprintf(r, sizeof(r), "451 4.4.2 %s: %s", c->relay,
			    res->tx.error[0] ? res->tx.error :
			    "connection lost");
			job_rcpt_result(j, k, r, false, false, c->relay, NULL);
			continue;
		}
		reply_format(&res->rcpt[k], r, sizeof(r));
		cls = smtp_reply_class(&res->rcpt[k]);
		job_rcpt_result(j, k, r, cls == 5, cls == 2, c->relay,
		    tlsbuf);
	}
	job_done(j);
	c->state = SC_IDLE;
	if (lost || c->nsent >= s->conf->conn_max_messages || s->stopping)
		sconn_free(c, !lost);
	dest_kick(dt);
}

static void
sconn_send(struct sconn *c, struct job *j)
{
	struct delivery *d = j->d;

	if (c->idle_ev)
		event_del(c->idle_ev);
	c->state = SC_BUSY;
	c->job = j;
	j->tx.env = &d->env;
	j->tx.rcpt_idx = j->idx;
	j->tx.nrcpt = j->n;
	j->tx.content = d->content.data;
	j->tx.content_len = d->content.len;
	if (mta_send(c->mc, &j->tx, sconn_sent_cb, c) != 0) {
		/* not idle after all: a bug, but survivable */
		log_warnx("scheduler: connection %s not idle", c->relay);
		c->job = NULL;
		TAILQ_INSERT_HEAD(&c->dest->jobs, j, entry);
		c->dest->njobs++;
		sconn_free(c, false);
	}
}

static void
dest_rate_cb(evutil_socket_t fd, short what, void *arg)
{
	dest_kick(arg);
}

/* Match waiting jobs with idle connections; open connections as the
 * limits allow; arm idle timers on connections left without work. */
static void
dest_kick1(struct dest *dt)
{
	struct scheduler *s = dt->s;
	const struct conf *cf = s->conf;
	struct sconn *c;

again:
	while (!TAILQ_EMPTY(&dt->jobs)) {
		TAILQ_FOREACH(c, &dt->conns, entry)
			if (c->state == SC_IDLE)
				break;
		if (c != NULL) {
			struct job *j = TAILQ_FIRST(&dt->jobs);
			if (cf->dest_rate > 0) {
				int64_t now = now_ms();
				if (now < dt->next_send_ms) {
					struct timeval tv = { 0, (suseconds_t)
					    (dt->next_send_ms - now) * 1000 };
					if (dt->rate_ev == NULL)
						dt->rate_ev = evtimer_new(
						    s->base, dest_rate_cb, dt);
					if (tv.tv_usec >= 1000000) {
						tv.tv_sec = tv.tv_usec /
						    1000000;
						tv.tv_usec %= 1000000;
					}
					evtimer_add(dt->rate_ev, &tv);
					break;
				}
				dt->next_send_ms = (now > dt->next_send_ms ?
				    now : dt->next_send_ms) +
				    (int64_t)(1000 / cf->dest_rate);
			}
			dest_unqueue(dt, j);
			sconn_send(c, j);
			continue;
		}
		if (s->stopping || dt->nconnecting >= dt->njobs ||
		    dt->nconns >= dest_conn_limit(dt))
			break;
		if (s->nconns >= cf->delivery_max_connections) {
			if (!dt->waiting) {
				dt->waiting = true;
				TAILQ_INSERT_TAIL(&s->waiting, dt, wentry);
			}
			break;
		}
		sconn_start(dt);
		/* sconn_start may have failed every job already */
	}
	TAILQ_FOREACH(c, &dt->conns, entry) {
		if (c->state != SC_IDLE)
			continue;
		if (cf->conn_idle_timeout == 0 || s->stopping) {
			/* freeing inside the loop: restart it */
			sconn_free(c, true);
			goto again;
		}
		if (c->idle_ev == NULL)
			c->idle_ev = evtimer_new(s->base, sconn_idle_cb, c);
		if (!evtimer_pending(c->idle_ev, NULL)) {
			struct timeval tv = { (time_t)cf->conn_idle_timeout,
			    0 };
			evtimer_add(c->idle_ev, &tv);
		}
	}
}

/* dest_kick1, and forget dt afterwards if it has nothing left.  The
 * caller must not use dt after this. */
static void
dest_kick(struct dest *dt)
{
	dt->busy++;
	dest_kick1(dt);
	if (--dt->busy == 0)
		dest_gc(dt);
}

/* --- deliveries ---------------------------------------------------- */

static bool
rcpt_wants(const struct env_rcpt *r, unsigned what)
{
	if (r->notify & SMTP_NOTIFY_NEVER)
		return false;
	if (r->notify == 0)	/* RFC 3461 default: FAILURE (and DELAY) */
		return what != SMTP_NOTIFY_SUCCESS;
	return (r->notify & what) != 0;
}

static void
delivery_free(struct delivery *d)
{
	struct scheduler *s = d->s;

	if (d->dsn_commit)
		spool_commit_cancel(d->dsn_commit);
	TAILQ_REMOVE(&s->deliveries, d, entry);
	envelope_free(&d->env);
	buf_free(&d->content);
	free(d->news);
	if (d->m)
		d->m->dlv = NULL;
	free(d);
	s->inflight--;
	sched_arm(s);
	if (s->stopping && s->inflight == 0 && s->idle_cb != NULL)
		s->idle_cb(s->idle_arg);
}

/* Write the attempt's outcome: log, then remove or update and reschedule. */
static void
delivery_commit(struct delivery *d)
{
	struct scheduler *s = d->s;
	struct smsg *m = d->m;
	struct envelope *e = &d->env;
	int64_t now = now_s(), next = 0;
	char retry[32], att[16];

	e->attempts++;
	e->last_attempt = now;
	if (!d->all_final) {
		int64_t delay = retry_delay(&s->retry, e->attempts,
		    arc4random());
		int64_t end = e->created + s->retry.lifetime;
		next = now + delay;
		if (next > end)
			next = end > now ? end : now + 1;
		e->next_attempt = next;
	}
	snprintf(retry, sizeof(retry), "%lld", (long long)(next - now));
	snprintf(att, sizeof(att), "%u", e->attempts);
	for (size_t i = 0; i < e->nrcpt; i++) {
		struct env_rcpt *r = &e->rcpt[i];

		if (d->news[i] == NEWS_DEFERRED) {
			s->st.deferred++;
			log_event(LOG_LVL_INFO, "delivery.deferred", "qid",
			    e->id, "rcpt", r->addr, "relay", r->remote,
			    "reply", r->last_reply, "attempts", att,
			    "retry_in", retry, NULL);
		} else if (d->news[i] == NEWS_BOUNCED) {
			s->st.bounced++;
			log_event(LOG_LVL_INFO, "delivery.bounced", "qid",
			    e->id, "rcpt", r->addr, "relay", r->remote,
			    "reply", r->last_reply, "attempts", att, "dsn",
			    d->dsn_id[0] ? d->dsn_id : "none", NULL);
		}
	}
	if (d->all_final) {
		if (spool_remove(s->sp, e->id, NULL, NULL) == NULL &&
		    errno != ENOENT)
			log_warn("scheduler: remove %s", e->id);
		log_event(LOG_LVL_INFO, "queue.removed", "qid", e->id, NULL);
		d->m = NULL;
		msg_drop(s, m);
	} else {
		e->hold = m->hold;
		if (spool_update(s->sp, e, NULL, NULL) == NULL)
			log_warn("scheduler: state of %s", e->id);
		if (!m->hold)
			schedq_set(&s->q, &m->item, next * 1000);
	}
	delivery_free(d);
}

/* The message was deleted while in flight: forget the attempt.  True if
 * d is gone. */
static bool
delivery_abandoned(struct delivery *d)
{
	struct scheduler *s = d->s;

	if (d->m != NULL && !d->m->deleted)
		return false;
	if (d->m)
		msg_drop(s, d->m);
	d->m = NULL;
	delivery_free(d);
	return true;
}

static void
delivery_dsn_committed(void *arg, int err)
{
	struct delivery *d = arg;
	struct scheduler *s = d->s;

	d->dsn_commit = NULL;
	if (err != 0) {
		/* the bounce is not stored: keep the recipients deferred,
		 * so the report is attempted again next time */
		log_event(LOG_LVL_WARN, "queue.dsn_failed", "orig", d->env.id,
		    "error", strerror(err), NULL);
		for (size_t i = 0; i < d->env.nrcpt; i++)
			if (d->news[i] == NEWS_BOUNCED) {
				d->env.rcpt[i].state = RCPT_DEFERRED;
				d->news[i] = NEWS_DEFERRED;
			}
		d->all_final = false;
		d->dsn_id[0] = '\0';
	} else {
		s->st.dsns++;
		scheduler_enqueue(s, d->dsn_id, now_s());
	}
	if (delivery_abandoned(d))
		return;
	delivery_commit(d);
}

/*
 * Queue a report about the recipients i with which[i] == news, action (failed
 * or delayed).  Returns true if one is on its way to the spool (then
 * delivery_dsn_committed continues), false if none is needed.
 */
static bool
delivery_report(struct delivery *d, const uint8_t *which,
    enum rcpt_news news, enum dsn_action action)
{
	struct scheduler *s = d->s;
	const struct conf *cf = s->conf;
	struct envelope *e = &d->env, dsn;
	struct dsn_rcpt *dr;
	struct dsn_info info;
	struct env_rcpt *to;
	struct buf out;
	char postmaster[SMTP_PATH_MAX + 1];
	char (*st)[16];
	size_t n = 0;
	bool ok = false;
	if (e->mail_from[0] == '\0')
		return false;	/* never a bounce for a bounce */
	dr = xcalloc(e->nrcpt, sizeof(*dr));
	st = xcalloc(e->nrcpt, sizeof(*st));
	for (size_t i = 0; i < e->nrcpt; i++) {
		struct env_rcpt *r = &e->rcpt[i];

		if (which[i] != news || !rcpt_wants(r, action == DSN_FAILED ?
		    SMTP_NOTIFY_FAILURE : SMTP_NOTIFY_DELAY))
			continue;
		reply_status(r->last_reply, st[n], sizeof(st[n]),
		    action == DSN_FAILED);
		dr[n].addr = r->addr;
		dr[n].orcpt = r->orcpt[0] ? r->orcpt : NULL;
		dr[n].action = action;
		dr[n].status = st[n];
		dr[n].remote_mta = NULL;
		dr[n].diagnostic = r->last_reply;
		dr[n].last_attempt = now_s();
		n++;
	}
	if (n == 0)
		goto out;
	queue_id_new(d->dsn_id);
	snprintf(postmaster, sizeof(postmaster), "MAILER-DAEMON@%s",
	    cf->hostname);
	memset(&info, 0, sizeof(info));
	info.reporting_mta = cf->hostname;
	info.postmaster = postmaster;
	info.arrival = e->created;
	info.now = now_s();
	info.boundary_seed = d->dsn_id;
	buf_init(&out);
	if (dsn_build(e, d->content.data, d->content.len, dr, n, &info,
	    SCHED_DSN_ORIGINAL, &out) != 0) {
		log_event(LOG_LVL_WARN, "queue.dsn_failed", "orig", e->id,
		    "error", "cannot build the report", NULL);
		buf_free(&out);
		d->dsn_id[0] = '\0';
		goto out;
	}
	envelope_init(&dsn);
	strlcpy_ok(dsn.id, d->dsn_id, sizeof(dsn.id));
	dsn.created = now_s();
	strlcpy_ok(dsn.helo, cf->hostname, sizeof(dsn.helo));
	strlcpy_ok(dsn.peer, "local", sizeof(dsn.peer));
	strlcpy_ok(dsn.tenant, e->tenant, sizeof(dsn.tenant));
	dsn.body = e->body;
	dsn.smtputf8 = e->smtputf8;
	dsn.content_size = out.len;
	to = envelope_add_rcpt(&dsn);
	strlcpy_ok(to->addr, e->mail_from, sizeof(to->addr));
	to->notify = SMTP_NOTIFY_NEVER;
	d->dsn_commit = spool_submit(s->sp, &dsn, out.data, out.len,
	    delivery_dsn_committed, d);
	if (d->dsn_commit == NULL) {
		log_event(LOG_LVL_WARN, "queue.dsn_failed", "orig", e->id,
		    "error", strerror(errno), NULL);
		d->dsn_id[0] = '\0';
	} else {
		log_event(LOG_LVL_INFO, "queue.dsn", "qid", d->dsn_id, "orig",
		    e->id, "to", e->mail_from, "type", action == DSN_FAILED ?
		    "failure" : "delay", NULL);
		ok = true;
	}
	envelope_free(&dsn);
	buf_free(&out);
out:
	free(dr);
	free(st);
	return ok;
}

/* Every job has its result: expire, report, then commit the state. */
static void
delivery_finish(struct delivery *d)
{
	struct scheduler *s = d->s;
	struct envelope *e = &d->env;
	int64_t now = now_s();
	bool expired = now >= e->created + s->retry.lifetime;
	bool any_bounce = false, any_delay = false;
	uint8_t *warn;

	if (delivery_abandoned(d))
		return;
	warn = xcalloc(e->nrcpt ? e->nrcpt : 1, 1);
	d->all_final = true;
	for (size_t i = 0; i < e->nrcpt; i++) {
		struct env_rcpt *r = &e->rcpt[i];

		if (r->state == RCPT_DEFERRED || r->state == RCPT_PENDING) {
			if (expired) {
				if (r->last_reply == NULL)
					set_str(&r->last_reply, "447 4.4.7 "
					    "Message expired before a "
					    "delivery attempt", ENV_REPLY_MAX);
				r->state = RCPT_BOUNCED;
				d->news[i] = NEWS_BOUNCED;
			} else {
				d->all_final = false;
				if (s->conf->delay_warning > 0 &&
				    !r->delay_warned && now >= e->created +
				    (int64_t)s->conf->delay_warning &&
				    rcpt_wants(r, SMTP_NOTIFY_DELAY)) {
					r->delay_warned = true;
					warn[i] = NEWS_DEFERRED;
					any_delay = true;
				}
			}
		}
		if (d->news[i] == NEWS_BOUNCED)
			any_bounce = true;
	}
	if (expired && !d->all_final)
		fatalx("scheduler: %s expired but not final", e->id);
	if (any_bounce) {
		free(warn);
		if (delivery_report(d, d->news, NEWS_BOUNCED, DSN_FAILED))
			return;
	} else if (any_delay) {
		/* a delay report names only the recipients warned now */
		bool sent = delivery_report(d, warn, NEWS_DEFERRED,
		    DSN_DELAYED);
		free(warn);
		if (sent)
			return;
	} else
		free(warn);
	delivery_commit(d);
}

static void
delivery_job_done(struct delivery *d)
{
	if (--d->njobs == 0)
		delivery_finish(d);
}

/* The domain of an address, lower-cased; false if it has none. */
static bool
rcpt_domain(const char *addr, char *out, size_t outlen)
{
	const char *at = strrchr(addr, '@');
	size_t n;

	if (at == NULL || at[1] == '\0' || at[1] == '[')
		return false;
	n = strlen(at + 1);
	if (n >= outlen || n > DNS_NAME_MAX)
		return false;
	for (size_t i = 0; i <= n; i++)
		out[i] = (char)tolower((unsigned char)at[1 + i]);
	return true;
}

/* The platform-relay policy: from authentication_required_from on, mail
 * from a domain that does not pass SPF and DKIM waits (not sent, not
 * lost, never expired) until the domain passes.  True if m must wait. */
static bool
delivery_auth_hold(struct scheduler *s, const struct envelope *e,
    const struct company *co, char *dom, size_t domlen)
{
	const struct tenant_domain *td;
	int64_t from = s->conf->authentication_required_from;

	if (from == 0 || now_s() < from || e->mail_from[0] == '\0' ||
	    !rcpt_domain(e->mail_from, dom, domlen))
		return false;
	td = tenants_domain(s->tenants, dom);
	return td == NULL || tenants_domain_company(s->tenants, td) != co ||
	    !td->spf_ok || !td->dkim_ok;
}

/*
 * Where d's message goes: *route NULL for MX, else, by *kind, a [route]
 * name ("route"), a company id ("tenant") or a user id ("user") whose own
 * server it is; a user with a route of their own (found by the envelope
 * sender) goes their way.  By the company's
 * choice; the configuration's default_route for mail without a company
 * or one that has not chosen.  Returns -1 when the message must wait for
 * its domain's authentication (then d was freed).
 */
static int
delivery_route(struct delivery *d, const char **route, const char **kind,
    char *idbuf, size_t idlen)
{
	struct scheduler *s = d->s;
	const struct company *co = tenants_company(s->tenants, d->env.tenant);
	const struct tenant_user *tu;
	struct smsg *m = d->m;
	enum route_kind rk;

	*kind = "route";
	*route = strcmp(s->conf->default_route, "mx") == 0 ? NULL :
	    s->conf->default_route;
	if (co == NULL)
		return 0;
	/* a user with settings of their own, by the envelope sender */
	rk = tenants_route(s->tenants, co, d->env.mail_from, &tu);
	d->rk = rk;
	switch (rk) {
	case ROUTE_OWN_SERVER:
		if (tu && tu->u.route == ROUTE_OWN_SERVER) {
			snprintf(idbuf, idlen, "%lld", (long long)tu->u.id);
			*route = idbuf;
			*kind = "user";
		} else {
			*route = co->id;
			*kind = "tenant";
		}
		break;
	case ROUTE_PLATFORM_SMARTHOST:
		/* conf guarantees the route exists when set */
		*route = s->conf->platform_smarthost_route ?
		    s->conf->platform_smarthost_route : "-";
		break;
	case ROUTE_PLATFORM_RELAY:
		*route = NULL;
		if (delivery_auth_hold(s, &d->env, co, m->wait_domain,
		    sizeof(m->wait_domain))) {
			log_event(LOG_LVL_WARN, "delivery.held_unauthenticated",
			    "qid", m->id, "company", co->id, "domain",
			    m->wait_domain, "reason", "the domain does not "
			    "pass SPF and DKIM verification", NULL);
			if (!m->auth_wait) {
				m->auth_wait = true;
				TAILQ_INSERT_TAIL(&s->auth_wait, m, wentry);
			}
			delivery_free(d);
			return -1;
		}
		break;
	case ROUTE_NONE:
	default:
		break;
	}
	return 0;
}

static void delivery_dispatch(struct delivery *d, const char *fail_reply);

/* The signer is done: dispatch the (signed) content.  Platform mail
 * that cannot be signed because its key failed waits rather than going
 * out unsigned (receivers would refuse or spam-folder it). */
static void
delivery_signed(void *arg, struct buf *content,
    const struct signer_result *res)
{
	struct delivery *d = arg;
	struct scheduler *s = d->s;
	char reply[ENV_REPLY_MAX + 1];
	const char *qid = d->env.id;

	d->signing = false;
	d->content = *content;
	buf_init(content);
	if (s->stopping || d->m == NULL || d->m->deleted) {
		/* nothing is dispatched now: the recipients stay as they
		 * were and the attempt is recorded, or the message was
		 * deleted meanwhile and is forgotten (delivery_abandoned) */
		delivery_finish(d);
		return;
	}
	switch (res->rc) {
	case SIGNER_SIGNED:
		log_event(LOG_LVL_DEBUG, "dkim.signed", "qid", qid, "domain",
		    res->domain, "selectors", res->selectors, NULL);
		break;
	case SIGNER_NO_KEY:
		/* without DKIM, DMARC rests on SPF alone: it passes only if
		 * the envelope domain aligns with the From domain */
		log_event(LOG_LVL_WARN, "dkim.unsigned", "qid", qid, "domain",
		    res->domain, "spf_aligned", tenant_addr_domain(
		    d->env.mail_from) != NULL && dmarc_aligned(res->domain,
		    tenant_addr_domain(d->env.mail_from), DMARC_ALIGN_RELAXED) ?
		    "yes" : "no", "reason", "the domain has no active DKIM key "
		    "(ombud dkim keygen, publish, ombud domain check)", NULL);
		break;
	case SIGNER_NO_FROM:
		log_event(LOG_LVL_WARN, "dkim.unsigned", "qid", qid, "reason",
		    "no usable header From", NULL);
		break;
	case SIGNER_FAILED:
		log_event(LOG_LVL_WARN, "dkim.sign_failed", "qid", qid,
		    "domain", res->domain, "error", res->err, NULL);
		snprintf(reply, sizeof(reply), "451 4.7.0 DKIM signing for %s "
		    "failed: %s", res->domain, res->err);
		delivery_dispatch(d, reply);
		return;
	}
	delivery_dispatch(d, NULL);
}

/* Start an attempt: load the message, sign platform mail, then hand out
 * its jobs. */
static void
delivery_start(struct scheduler *s, struct smsg *m)
{
	struct delivery *d = xcalloc(1, sizeof(*d));
	const char *route, *kind;
	char idbuf[32];

	d->s = s;
	d->m = m;
	m->dlv = d;
	envelope_init(&d->env);
	buf_init(&d->content);
	TAILQ_INSERT_TAIL(&s->deliveries, d, entry);
	s->inflight++;
	if (spool_load(s->sp, m->id, &d->env, &d->content) != 0) {
		if (errno != ENOENT)
			log_warn("scheduler: cannot load %s", m->id);
		else
			log_event(LOG_LVL_INFO, "queue.gone", "qid", m->id,
			    NULL);
		/* not in the spool (deleted offline) or unreadable: a
		 * restart rebuilds from what the spool has */
		d->m = NULL;
		msg_drop(s, m);
		delivery_free(d);
		return;
	}
	if (delivery_route(d, &route, &kind, idbuf, sizeof(idbuf)) != 0)
		return;		/* held: d is gone */
	d->news = xcalloc(d->env.nrcpt ? d->env.nrcpt : 1, 1);
	d->kind = kind;
	d->has_route = route != NULL;
	if (route != NULL)
		strlcpy_ok(d->route, route, sizeof(d->route));
	if (s->signer != NULL && (d->rk == ROUTE_PLATFORM_RELAY ||
	    d->rk == ROUTE_PLATFORM_SMARTHOST)) {
		d->signing = true;
		signer_sign(s->signer, s->tenants, &d->content, now_s(),
		    delivery_signed, d);
		return;
	}
	delivery_dispatch(d, NULL);
}

/* Hand out d's jobs: its pending recipients grouped by destination; with
 * fail_reply, defer them all with it instead. */
static void
delivery_dispatch(struct delivery *d, const char *fail_reply)
{
	struct scheduler *s = d->s;
	const char *route = d->has_route ? d->route : NULL, *kind = d->kind;
	bool mx = route == NULL;
	size_t *todo = NULL, ntodo = 0;

	d->njobs = 1;		/* held while jobs are handed out */
	todo = xcalloc(d->env.nrcpt ? d->env.nrcpt : 1, sizeof(*todo));
	for (size_t i = 0; i < d->env.nrcpt; i++)
		if (d->env.rcpt[i].state == RCPT_PENDING ||
		    d->env.rcpt[i].state == RCPT_DEFERRED)
			todo[ntodo++] = i;
	/* group by destination: runs of the same domain, in order */
	for (size_t a = 0; a < ntodo; a++) {
		char key[SCHED_KEY_MAX], dom[DNS_NAME_MAX + 1];
		struct dest *dt;
		struct job *j;
		size_t first = todo[a];

		if (first == SIZE_MAX)
			continue;
		if (fail_reply != NULL) {
			struct job tmp = { .d = d, .idx = &todo[a], .n = 1 };
			job_rcpt_result(&tmp, 0, fail_reply, false, false, NULL,
			    NULL);
			continue;
		}
		if (mx && !rcpt_domain(d->env.rcpt[first].addr, dom,
		    sizeof(dom))) {
			struct job tmp = { .d = d, .idx = &todo[a], .n = 1 };
			job_rcpt_result(&tmp, 0, "550 5.1.3 Recipient address "
			    "has no usable domain", true, false, NULL, NULL);
			continue;
		}
		if (mx)
			snprintf(key, sizeof(key), "mx:%s", dom);
		else
			snprintf(key, sizeof(key), "%.7s:%s", kind, route);
		dt = dest_get(s, key, !mx && kind[0] == 'r', kind[0] == 't',
		    kind[0] == 'u');
		j = xcalloc(1, sizeof(*j));
		j->d = d;
		j->dest = dt;
		j->idx = xcalloc(SCHED_JOB_RCPT, sizeof(*j->idx));
		for (size_t b = a; b < ntodo && j->n < SCHED_JOB_RCPT; b++) {
			char dom2[DNS_NAME_MAX + 1];
			if (todo[b] == SIZE_MAX)
				continue;
			if (mx && (!rcpt_domain(d->env.rcpt[todo[b]].addr,
			    dom2, sizeof(dom2)) || strcmp(dom, dom2) != 0))
				continue;
			j->idx[j->n++] = todo[b];
			todo[b] = SIZE_MAX;
		}
		d->njobs++;
		TAILQ_INSERT_TAIL(&dt->jobs, j, entry);
		dt->njobs++;
		dest_kick(dt);
	}
	free(todo);
	delivery_job_done(d);	/* drop the hold taken above */
}

/* --- timetable ----------------------------------------------------- */

static void
sched_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct scheduler *s = arg;
	int64_t now = now_ms();
	struct schedq_item *it;

	while (!s->stopping && s->inflight < s->conf->delivery_max_inflight &&
	    (it = schedq_pop_due(&s->q, now)) != NULL)
		delivery_start(s, it->data);
	sched_arm(s);
}

/* Wake up when the earliest message is due (or now). */
static void
sched_arm(struct scheduler *s)
{
	struct schedq_item *it = schedq_peek(&s->q);
	struct timeval tv = { 0, 0 };
	int64_t wait;

	if (it == NULL || s->stopping || !s->conf->delivery ||
	    s->inflight >= s->conf->delivery_max_inflight) {
		evtimer_del(s->tick_ev);
		return;
	}
	wait = it->due - now_ms();
	if (wait > 0) {
		if (wait > 3600 * 1000)
			wait = 3600 * 1000;	/* clock jumps: look again */
		tv.tv_sec = (time_t)(wait / 1000);
		tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
	}
	evtimer_add(s->tick_ev, &tv);
}

void
scheduler_enqueue(struct scheduler *s, const char *id, int64_t created)
{
	struct smsg *m = msg_add(s, id, created);

	if (!m->hold && m->dlv == NULL)
		schedq_set(&s->q, &m->item, now_ms());
	sched_arm(s);
}

static int
rebuild_cb(void *arg, const struct envelope *e)
{
	struct scheduler *s = arg;
	struct smsg *m = msg_add(s, e->id, e->created);
	bool pending = false;

	for (size_t i = 0; i < e->nrcpt; i++)
		if (e->rcpt[i].state == RCPT_PENDING ||
		    e->rcpt[i].state == RCPT_DEFERRED)
			pending = true;
	m->hold = e->hold && pending;
	/* every recipient final (the removal was lost in a crash): an
	 * attempt with nothing to do removes it */
	if (!m->hold || !pending)
		schedq_set(&s->q, &m->item, e->next_attempt > 0 ?
		    e->next_attempt * 1000 : now_ms());
	return 0;
}

int
scheduler_rebuild(struct scheduler *s)
{
	int rc = spool_foreach(s->sp, rebuild_cb, s);

	sched_arm(s);
	return rc;
}

/* --- control ------------------------------------------------------- */

int
scheduler_flush(struct scheduler *s, const char *id)
{
	int64_t now = now_ms();

	if (id != NULL) {
		struct smsg *m = msg_find(s, id);
		if (m == NULL) {
			errno = ENOENT;
			return -1;
		}
		if (!m->hold && m->dlv == NULL)
			schedq_set(&s->q, &m->item, now);
	} else {
		for (size_t i = 0; i < s->mh_size; i++)
			for (struct smsg *m = s->mh[i]; m; m = m->hnext)
				if (!m->hold && m->dlv == NULL)
					schedq_set(&s->q, &m->item, now);
	}
	sched_arm(s);
	return 0;
}

int
scheduler_hold(struct scheduler *s, const char *id, bool hold)
{
	struct smsg *m = msg_find(s, id);
	struct envelope e;

	if (m == NULL) {
		errno = ENOENT;
		return -1;
	}
	m->hold = hold;
	if (m->dlv != NULL)
		return 0;	/* written when the attempt ends */
	if (hold && m->item.pos != SCHEDQ_NONE)
		schedq_remove(&s->q, &m->item);
	envelope_init(&e);
	if (spool_load(s->sp, id, &e, NULL) == 0) {
		e.hold = hold;
		if (spool_update(s->sp, &e, NULL, NULL) == NULL)
			log_warn("scheduler: hold %s", id);
	}
	/* released: back on its old schedule (like Postfix's postsuper
	 * -H, into the deferred queue); `flush` makes it due now */
	if (!hold)
		schedq_set(&s->q, &m->item, e.next_attempt > 0 ?
		    e.next_attempt * 1000 : now_ms());
	envelope_free(&e);
	sched_arm(s);
	return 0;
}

int
scheduler_delete(struct scheduler *s, const char *id)
{
	struct smsg *m = msg_find(s, id);

	if (spool_delete(s->sp, id) != 0)
		return -1;
	if (m != NULL) {
		if (m->dlv != NULL)
			m->deleted = true;	/* dropped when it ends */
		else
			msg_drop(s, m);
	}
	return 0;
}

size_t
scheduler_inflight(const struct scheduler *s)
{
	return s ? s->inflight : 0;
}

void
scheduler_stop(struct scheduler *s, void (*idle_cb)(void *), void *arg)
{
	if (s == NULL)
		return;
	s->stopping = true;
	s->idle_cb = idle_cb;
	s->idle_arg = arg;
	/* jobs still waiting for a connection will not get one: deferred
	 * now, so that their messages' state is written before the exit */
	for (size_t i = 0; i < s->dh_size; i++)
		for (struct dest *dt = s->dh[i]; dt != NULL; dt = dt->hnext) {
			struct job *j;

			while ((j = TAILQ_FIRST(&dt->jobs)) != NULL) {
				dest_unqueue(dt, j);
				job_fail(j, "451 4.3.2 The gateway is shutting "
				    "down; tried again later", false, NULL);
				job_done(j);
			}
		}
	if (s->inflight == 0 && idle_cb != NULL)
		idle_cb(arg);
	evtimer_del(s->tick_ev);
}

struct dns *
scheduler_dns(struct scheduler *s)
{
	return s->dns;
}

void
scheduler_stats(const struct scheduler *s, struct scheduler_stats *out)
{
	*out = s->st;
	out->queued = s->nmsg;
	out->inflight = s->inflight;
	out->connections = s->nconns;
	out->destinations = s->ndest;
}

/* --- life cycle ---------------------------------------------------- */

static void
scheduler_free_ssl(struct scheduler *s)
{
	if (s->mx_ssl)
		SSL_CTX_free(s->mx_ssl);
	s->mx_ssl = NULL;
	for (size_t i = 0; i < CONF_MAX_ROUTES; i++) {
		if (s->route_ssl[i])
			SSL_CTX_free(s->route_ssl[i]);
		s->route_ssl[i] = NULL;
	}
}

int
scheduler_reconfigure(struct scheduler *s, const struct conf *c, char *err,
    size_t errlen)
{
	SSL_CTX *mx = NULL, *rs[CONF_MAX_ROUTES] = { NULL };
	char e[256];

	if ((mx = tls_client_ctx_new(NULL, e, sizeof(e))) == NULL) {
		snprintf(err, errlen, "TLS client: %s", e);
		return -1;
	}
	for (size_t i = 0; i < c->nroutes; i++) {
		rs[i] = tls_client_ctx_new(c->routes[i].ca_file, e,
		    sizeof(e));
		if (rs[i] == NULL) {
			snprintf(err, errlen, "route %s: %s",
			    c->routes[i].name, e);
			SSL_CTX_free(mx);
			for (size_t k = 0; k < i; k++)
				SSL_CTX_free(rs[k]);
			return -1;
		}
	}
	scheduler_free_ssl(s);
	s->mx_ssl = mx;
	memcpy(s->route_ssl, rs, sizeof(rs));
	s->conf = c;
	s->retry.min_backoff = (int64_t)c->retry_min;
	s->retry.max_backoff = (int64_t)c->retry_max;
	s->retry.lifetime = (int64_t)c->queue_lifetime;
	sched_arm(s);
	return 0;
}

struct scheduler *
scheduler_new(struct event_base *base, struct spool *sp, const struct conf *c,
    char *err, size_t errlen)
{
	struct scheduler *s = xcalloc(1, sizeof(*s));
	struct dns_opts dopts;
	char e[256];

	s->base = base;
	s->sp = sp;
	s->conf = c;
	s->mh_size = 1024;
	s->mh = xcalloc(s->mh_size, sizeof(*s->mh));
	s->dh_size = 1024;
	s->dh = xcalloc(s->dh_size, sizeof(*s->dh));
	schedq_init(&s->q);
	TAILQ_INIT(&s->deliveries);
	TAILQ_INIT(&s->waiting);
	TAILQ_INIT(&s->auth_wait);
	s->tick_ev = evtimer_new(base, sched_tick_cb, s);
	memset(&dopts, 0, sizeof(dopts));
	dopts.servers = c->dns_servers;
	if ((s->dns = dns_new(base, &dopts, e, sizeof(e))) == NULL) {
		snprintf(err, errlen, "DNS: %s", e);
		goto fail;
	}
	if (scheduler_reconfigure(s, c, err, errlen) != 0)
		goto fail;
	s->signer = signer_new(base, (int)c->dkim_sign_workers);
	return s;
fail:
	scheduler_free(s);
	return NULL;
}

void
scheduler_free(struct scheduler *s)
{
	struct delivery *d;

	if (s == NULL)
		return;
	s->stopping = true;
	s->idle_cb = NULL;
	/* signatures under way first: their callbacks finish (not
	 * dispatch) their deliveries */
	signer_free(s->signer);
	s->signer = NULL;
	/* connections first: their jobs point into deliveries */
	for (size_t i = 0; i < s->dh_size; i++)
		while (s->dh[i]) {
			struct dest *dt = s->dh[i];
			struct sconn *c;
			struct job *j;

			while ((c = TAILQ_FIRST(&dt->conns)) != NULL) {
				if (c->job)
					job_free(c->job);
				c->job = NULL;
				sconn_free(c, false);
			}
			while ((j = TAILQ_FIRST(&dt->jobs)) != NULL) {
				dest_unqueue(dt, j);
				job_free(j);
			}
			s->dh[i] = dt->hnext;
			if (dt->rate_ev)
				event_free(dt->rate_ev);
			free(dt);
		}
	mta_shutdown();		/* QUITs and frees still in the background */
	while ((d = TAILQ_FIRST(&s->deliveries)) != NULL) {
		d->m = NULL;
		delivery_free(d);
	}
	schedq_free(&s->q);	/* it touches the items: before them */
	for (size_t i = 0; i < s->mh_size; i++)
		while (s->mh[i]) {
			struct smsg *m = s->mh[i];
			s->mh[i] = m->hnext;
			free(m);
		}
	free(s->mh);
	free(s->dh);
	if (s->tick_ev)
		event_free(s->tick_ev);
	if (s->oauth)
		oauth_free(s->oauth);
	if (s->dns)
		dns_free(s->dns);
	scheduler_free_ssl(s);
	tenants_unref(s->tenants);
	free(s);
}

void
scheduler_set_tenants(struct scheduler *s, struct tenants *t)
{
	struct smsg *m, *next;
	char dom[DNS_NAME_MAX + 1];

	tenants_unref(s->tenants);
	s->tenants = tenants_ref(t);
	/* held platform-relay mail whose domain passes now goes out */
	for (m = TAILQ_FIRST(&s->auth_wait); m != NULL; m = next) {
		const struct tenant_domain *td = tenants_domain(t,
		    m->wait_domain);
		next = TAILQ_NEXT(m, wentry);
		strlcpy_ok(dom, m->wait_domain, sizeof(dom));
		if (td == NULL || !td->spf_ok || !td->dkim_ok)
			continue;
		TAILQ_REMOVE(&s->auth_wait, m, wentry);
		m->auth_wait = false;
		log_event(LOG_LVL_INFO, "delivery.released_authenticated",
		    "qid", m->id, "domain", dom, NULL);
		if (!m->hold && m->dlv == NULL)
			schedq_set(&s->q, &m->item, now_ms());
	}
	sched_arm(s);
}

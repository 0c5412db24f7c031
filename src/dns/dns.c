/*
 * dns.c - asynchronous DNS on c-ares, driven by the libevent loop.
 *
 * What it does: MX lookups with the RFC 5321 5.1 rules (implicit MX when
 * the domain has no MX but has an address; RFC 7505 null MX), A/AAAA,
 * TXT and PTR lookups, and a cache.  Three layers:
 *
 *  - a query is one (type, name) question in flight at c-ares; requests
 *    that need the same question while it is in flight share it;
 *  - its reply becomes an answer: immutable, reference counted, parsed and
 *    validated once, kept by the cache (keyed by type and lowercase name,
 *    an LRU list bounded by cache_max, expiring with the smallest TTL of
 *    the reply; NXDOMAIN/NODATA per RFC 2308; TEMPFAIL never);
 *  - a request is what a caller asked for, built from one to three
 *    answers (MX, then AAAA and A for the implicit MX; AAAA and/or A).
 *
 * Every user callback runs from one place, the work event: a request that
 * is created or makes progress goes on a run queue, and the work event
 * steps it.  So no callback runs inside dns_lookup_*(), inside c-ares, or
 * for a cache hit before the loop turns.  c-ares callback arguments only
 * ever point at queries, which live until c-ares is done with them: a
 * cancelled request merely leaves the query's waiter list, and a reply
 * that arrives afterwards only fills the cache.
 *
 * Must never: call a callback synchronously or after dns_cancel(); let the
 * ARES_EDESTRUCTION callbacks of ares_destroy() reach a caller; read a
 * reply beyond its length; pass a name to c-ares or to a caller that has
 * not been validated (LDH and '_' labels of 1..63, at most 253 bytes; with
 * DNS_F_ANYNAME printable ASCII but a backslash in the labels).
 */
#include "dns/dns.h"
#include "common/log.h"
#include "common/util.h"

#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>
#include <event2/event.h>
#include <sodium.h>

/* RR types and class (RFC 1035, RFC 3596). */
#define DNS_T_A		1
#define DNS_T_SOA	6
#define DNS_T_PTR	12
#define DNS_T_MX	15
#define DNS_T_TXT	16
#define DNS_T_AAAA	28
#define DNS_C_IN	1

#define DNS_HOST_MAX		253	/* a name without its trailing dot */
#define DNS_LABEL_MAX		63
#define DNS_TTL_MAX		86400	/* positive answers: a day at most */
#define DNS_NEG_TTL_DEFAULT	300	/* negative answer without an SOA */
#define DNS_EDNS_SIZE		1232
#define DNS_TIMEOUT_MAX		300000	/* ms per try */
#define DNS_TRIES_MAX		20
#define DNS_SERVERS_MAX		1024	/* bytes of the servers option */
#define DNS_HTAB_MIN		64
#define DNS_HTAB_MAX		((size_t)1 << 24)
#define DNS_NSUB		3

#define DNS_CONTAINER(p, type, member)					\
	((type *)(void *)((char *)(p) - offsetof(type, member)))

/* One bucket chain entry, embedded in queries and cached answers. */
struct dns_hnode {
	struct dns_hnode	*next;
	uint64_t		 hash;
	uint16_t		 qtype;
	const char		*name;
};

struct dns_htab {
	struct dns_hnode	**b;
	size_t			  nb;	/* a power of two */
	size_t			  n;
};

struct dns_ans_mx {
	unsigned	 pref;
	char		*host;		/* "" for the root, i.e. a null MX */
};

/* A parsed reply to one question.  Immutable once built. */
struct dns_answer {
	struct dns_hnode	 hn;
	TAILQ_ENTRY(dns_answer)	 lru;
	unsigned		 refs;
	bool			 cached;
	enum dns_status		 status;
	uint32_t		 ttl;
	int64_t			 expire;	/* now_msec_mono() + ttl */
	size_t			 n;
	struct dns_ans_mx	*mx;		/* DNS_T_MX, by preference */
	unsigned char		(*ip)[16];	/* A: 4 bytes used; AAAA */
	char			**txt;		/* DNS_T_TXT; DNS_T_PTR names */
	size_t			*txtlen;
	char			 name[];
};

struct dns_req;

/* A request's interest in one question. */
struct dns_sub {
	struct dns_req		*req;
	struct dns_query	*q;		/* waiting on it, or NULL */
	TAILQ_ENTRY(dns_sub)	 qentry;
	struct dns_answer	*ans;		/* once answered */
	bool			 active;
};

/* One question in flight at c-ares; the c-ares callback argument. */
struct dns_query {
	struct dns_hnode	 hn;
	struct dns		*d;
	TAILQ_HEAD(, dns_sub)	 waiters;
	char			 name[];
};

enum dns_kind {
	DNS_K_MX,
	DNS_K_ADDR,
	DNS_K_TXT,
	DNS_K_PTR,
};

struct dns_req {
	struct dns		*d;
	TAILQ_ENTRY(dns_req)	 entry;		/* d->reqs */
	TAILQ_ENTRY(dns_req)	 runq_entry;	/* d->runq */
	bool			 on_runq;
	unsigned		 runq_pass;
	bool			 delivering;	/* inside its callback */
	bool			 badname;
	bool			 anyname;	/* DNS_F_ANYNAME */
	int			 phase;		/* 0 new, 1 asked, 2 implicit MX */
	enum dns_kind		 kind;
	int			 family;
	union {
		dns_mx_cb	 mx;
		dns_addr_cb	 addr;
		dns_txt_cb	 txt;
		dns_ptr_cb	 ptr;
	}			 cb;
	void			*arg;
	struct dns_sub		 sub[DNS_NSUB];
	char			 name[DNS_NAME_MAX + 1];
};

struct dns_sock {
	LIST_ENTRY(dns_sock)	 entry;
	int			 fd;
	short			 what;
	struct event		*ev;
};

TAILQ_HEAD(dns_lru, dns_answer);

struct dns {
	struct event_base	*base;
	ares_channel		 channel;
	bool			 have_channel;
	struct event		*work_ev;
	struct event		*timer;
	LIST_HEAD(, dns_sock)	 socks;
	TAILQ_HEAD(, dns_req)	 reqs;		/* every live request */
	TAILQ_HEAD(, dns_req)	 runq;		/* to be stepped */
	unsigned		 pass;
	bool			 in_work;
	bool			 free_pending;	/* dns_free() from a callback */
	bool			 destroying;
	struct dns_htab		 queries;
	struct dns_htab		 cache;
	struct dns_lru		 lru;
	size_t			 cache_max;
	uint32_t		 neg_ttl_max;
	unsigned char		 hkey[crypto_shorthash_KEYBYTES];
	struct dns_stats	 st;
};

/* What dns_msg_scan() learns from a raw reply. */
struct dns_msg_info {
	bool		have_ans;
	uint32_t	ans_ttl;	/* smallest TTL in the answer section */
	bool		have_soa;
	uint32_t	soa_ttl;	/* min(SOA TTL, SOA MINIMUM) */
};

static pthread_once_t	dns_once = PTHREAD_ONCE_INIT;
static int		dns_lib_rc = -1;

static void dns_req_free(struct dns_req *);
static void dns_req_step(struct dns_req *);
static void dns_answer_unref(struct dns_answer *);

const char *
dns_status_str(enum dns_status st)
{
	switch (st) {
	case DNS_OK:		return "ok";
	case DNS_NXDOMAIN:	return "nxdomain";
	case DNS_NODATA:	return "nodata";
	case DNS_NULLMX:	return "nullmx";
	case DNS_TEMPFAIL:	return "tempfail";
	case DNS_BADNAME:	return "badname";
	}
	return "unknown";
}

static void
dns_lib_init_once(void)
{
	if (sodium_init() < 0)
		return;
	if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
		return;
	dns_lib_rc = 0;
}

static void
dns_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/*
 * Names.  A valid name has labels of 1..63 bytes of letters, digits, '-'
 * or '_' (TXT owners such as _dmarc need '_'), at most 253 bytes, and an
 * optional trailing dot.  With any, a label may hold any printable ASCII
 * byte but a backslash (names from DNS data or SPF macro expansions,
 * RFC 7208 7.1; c-ares would read a backslash as an escape).  out gets it
 * in lowercase without the dot.
 */
static bool
dns_name_norm(const char *in, char out[DNS_NAME_MAX + 1], bool any)
{
	size_t len, i, lab = 0;

	out[0] = '\0';
	if (in == NULL)
		return false;
	len = strnlen(in, DNS_HOST_MAX + 2);
	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_HOST_MAX)
		return false;
	for (i = 0; i < len; i++) {
		char c = in[i];

		if (c == '.') {
			if (lab == 0)
				return false;
			lab = 0;
			out[i] = c;
			continue;
		}
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		else if (any ? (c < 0x20 || c > 0x7e || c == '\\') :
		    !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_'))
			return false;
		if (++lab > DNS_LABEL_MAX)
			return false;
		out[i] = c;
	}
	if (lab == 0)
		return false;
	out[len] = '\0';
	return true;
}

/* A normalized name that also passes the strict check. */
static bool
dns_name_strict(const char *name)
{
	char tmp[DNS_NAME_MAX + 1];

	return dns_name_norm(name, tmp, false);
}

static uint64_t
dns_hash(const struct dns *d, uint16_t qtype, const char *name)
{
	unsigned char in[2 + DNS_NAME_MAX + 1], out[crypto_shorthash_BYTES];
	size_t len = strlen(name);
	uint64_t h;

	if (len > DNS_NAME_MAX)
		fatalx("dns: name of %zu bytes reached the hash", len);
	in[0] = (unsigned char)(qtype >> 8);
	in[1] = (unsigned char)qtype;
	memcpy(in + 2, name, len);
	crypto_shorthash(out, in, 2 + len, d->hkey);
	memcpy(&h, out, sizeof(h));
	return h;
}

/* Hash table of (type, name) nodes, keyed with SipHash against flooding. */
static void
dns_htab_init(struct dns_htab *t)
{
	t->nb = DNS_HTAB_MIN;
	t->b = xcalloc(t->nb, sizeof(*t->b));
	t->n = 0;
}

static struct dns_hnode *
dns_htab_find(const struct dns_htab *t, uint64_t h, uint16_t qtype,
    const char *name)
{
	struct dns_hnode *hn;

	for (hn = t->b[h & (t->nb - 1)]; hn != NULL; hn = hn->next)
		if (hn->hash == h && hn->qtype == qtype &&
		    strcmp(hn->name, name) == 0)
			return hn;
	return NULL;
}

static void
dns_htab_grow(struct dns_htab *t)
{
	struct dns_hnode **nb, *hn, *next;
	size_t i, n = t->nb * 2;

	nb = xcalloc(n, sizeof(*nb));
	for (i = 0; i < t->nb; i++) {
		for (hn = t->b[i]; hn != NULL; hn = next) {
			next = hn->next;
			hn->next = nb[hn->hash & (n - 1)];
			nb[hn->hash & (n - 1)] = hn;
		}
	}
	free(t->b);
	t->b = nb;
	t->nb = n;
}

static void
dns_htab_insert(struct dns_htab *t, struct dns_hnode *hn)
{
	struct dns_hnode **bp;

	if (t->n >= t->nb && t->nb < DNS_HTAB_MAX)
		dns_htab_grow(t);
	bp = &t->b[hn->hash & (t->nb - 1)];
	hn->next = *bp;
	*bp = hn;
	t->n++;
}

static void
dns_htab_remove(struct dns_htab *t, struct dns_hnode *hn)
{
	struct dns_hnode **pp;

	for (pp = &t->b[hn->hash & (t->nb - 1)]; *pp != NULL;
	    pp = &(*pp)->next) {
		if (*pp == hn) {
			*pp = hn->next;
			hn->next = NULL;
			t->n--;
			return;
		}
	}
	fatalx("dns: hash node for %s not in its table", hn->name);
}

/*
 * Raw replies.  c-ares parses the records; this only walks the sections
 * for what its parsers do not return: TTLs of MX and TXT answers and the
 * SOA of a negative answer.  Bounded by len at every step.
 */
static uint16_t
dns_get16(const unsigned char *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t
dns_get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

/* RFC 2181 8: a TTL with the top bit set is to be taken as zero. */
static uint32_t
dns_ttl_sane(uint32_t ttl)
{
	return ttl > INT32_MAX ? 0 : ttl;
}

static bool
dns_msg_skip_name(const unsigned char *p, size_t end, size_t *off)
{
	size_t o = *off;

	for (;;) {
		unsigned c;

		if (o >= end)
			return false;
		c = p[o];
		if (c == 0) {
			*off = o + 1;
			return true;
		}
		if ((c & 0xc0) == 0xc0) {
			if (end - o < 2)
				return false;
			*off = o + 2;
			return true;
		}
		if ((c & 0xc0) != 0)
			return false;
		o += 1 + c;
	}
}

static void
dns_msg_scan(const unsigned char *p, int alen, struct dns_msg_info *mi)
{
	size_t len, off = 12, i, qd, an, ns;

	memset(mi, 0, sizeof(*mi));
	if (p == NULL || alen < 12)
		return;
	len = (size_t)alen;
	qd = dns_get16(p + 4);
	an = dns_get16(p + 6);
	ns = dns_get16(p + 8);
	for (i = 0; i < qd; i++) {
		if (!dns_msg_skip_name(p, len, &off) || len - off < 4)
			return;
		off += 4;
	}
	for (i = 0; i < an + ns; i++) {
		uint16_t type, cls, rdlen;
		uint32_t ttl;

		if (!dns_msg_skip_name(p, len, &off) || len - off < 10)
			return;
		type = dns_get16(p + off);
		cls = dns_get16(p + off + 2);
		ttl = dns_ttl_sane(dns_get32(p + off + 4));
		rdlen = dns_get16(p + off + 8);
		off += 10;
		if (len - off < rdlen)
			return;
		if (i < an) {
			if (!mi->have_ans || ttl < mi->ans_ttl)
				mi->ans_ttl = ttl;
			mi->have_ans = true;
		} else if (type == DNS_T_SOA && cls == DNS_C_IN &&
		    !mi->have_soa) {
			size_t r = off, end = off + rdlen;
			uint32_t min;

			if (dns_msg_skip_name(p, end, &r) &&
			    dns_msg_skip_name(p, end, &r) && end - r >= 20) {
				min = dns_ttl_sane(dns_get32(p + r + 16));
				mi->soa_ttl = min < ttl ? min : ttl;
				mi->have_soa = true;
			}
		}
		off += rdlen;
	}
}

/* Answers. */
static struct dns_answer *
dns_answer_new(uint16_t qtype, const char *name, uint64_t hash)
{
	size_t nl = strlen(name);
	struct dns_answer *a;

	a = xcalloc(1, sizeof(*a) + nl + 1);
	memcpy(a->name, name, nl + 1);
	a->hn.qtype = qtype;
	a->hn.name = a->name;
	a->hn.hash = hash;
	a->refs = 1;
	a->status = DNS_TEMPFAIL;
	return a;
}

static struct dns_answer *
dns_answer_ref(struct dns_answer *a)
{
	a->refs++;
	return a;
}

static void
dns_answer_unref(struct dns_answer *a)
{
	size_t i;

	if (a == NULL || --a->refs > 0)
		return;
	if (a->mx != NULL)
		for (i = 0; i < a->n; i++)
			free(a->mx[i].host);
	if (a->txt != NULL)
		for (i = 0; i < a->n; i++)
			free(a->txt[i]);
	free(a->mx);
	free(a->ip);
	free(a->txt);
	free(a->txtlen);
	free(a);
}

static uint32_t
dns_answer_ttl_left(const struct dns_answer *a, int64_t now)
{
	int64_t left;

	if (a->expire <= now)
		return 0;
	left = (a->expire - now + 999) / 1000;
	return left < (int64_t)a->ttl ? (uint32_t)left : a->ttl;
}

static int
dns_mx_cmp(const void *x, const void *y)
{
	const struct dns_ans_mx *a = x, *b = y;

	if (a->pref != b->pref)
		return a->pref < b->pref ? -1 : 1;
	return 0;
}

/* MX records, sorted by preference, the lowest DNS_MAX_MX kept; the root
 * ("." or "") kept as "" so that a null MX can be told at delivery. */
static enum dns_status
dns_parse_mx(struct dns_answer *a, const unsigned char *abuf, int alen)
{
	struct ares_mx_reply *list = NULL, *m;
	struct dns_ans_mx *tmp = NULL;
	char host[DNS_NAME_MAX + 1];
	size_t n = 0, cnt = 0, bad = 0, i;
	enum dns_status st = DNS_TEMPFAIL;
	int rc;

	rc = ares_parse_mx_reply(abuf, alen, &list);
	if (rc == ARES_ENODATA) {
		st = DNS_NODATA;
		goto fail;
	}
	if (rc != ARES_SUCCESS)
		goto fail;
	for (m = list; m != NULL; m = m->next)
		cnt++;
	tmp = xcalloc(cnt, sizeof(*tmp));
	for (m = list; m != NULL; m = m->next) {
		if (m->host == NULL) {
			bad++;
			continue;
		}
		if (strcmp(m->host, "") == 0 || strcmp(m->host, ".") == 0)
			host[0] = '\0';
		else if (!dns_name_norm(m->host, host, true)) {
			bad++;
			continue;
		}
		tmp[n].pref = m->priority;
		tmp[n].host = xstrdup(host);
		n++;
	}
	if (bad > 0)
		log_warnx("dns: %s: %zu MX record(s) with an invalid "
		    "exchange ignored", a->name, bad);
	if (n == 0) {
		if (cnt == 0)
			st = DNS_NODATA;
		goto fail;
	}
	qsort(tmp, n, sizeof(*tmp), dns_mx_cmp);
	if (n > DNS_MAX_MX) {
		log_warnx("dns: %s: %zu MX records, the %d most preferred "
		    "kept", a->name, n, DNS_MAX_MX);
		for (i = DNS_MAX_MX; i < n; i++)
			free(tmp[i].host);
		n = DNS_MAX_MX;
	}
	a->mx = tmp;
	a->n = n;
	tmp = NULL;
	st = DNS_OK;
fail:
	if (tmp != NULL)
		for (i = 0; i < n; i++)
			free(tmp[i].host);
	free(tmp);
	if (list != NULL)
		ares_free_data(list);
	return st;
}

/* A or AAAA records; *ttl gets the smallest TTL c-ares reports. */
static enum dns_status
dns_parse_addr(struct dns_answer *a, const unsigned char *abuf, int alen,
    uint32_t *ttl)
{
	struct ares_addrttl v4[DNS_MAX_ADDR];
	struct ares_addr6ttl v6[DNS_MAX_ADDR];
	int i, n = DNS_MAX_ADDR, rc;
	uint32_t t;

	if (a->hn.qtype == DNS_T_A)
		rc = ares_parse_a_reply(abuf, alen, NULL, v4, &n);
	else
		rc = ares_parse_aaaa_reply(abuf, alen, NULL, v6, &n);
	if (rc == ARES_ENODATA || (rc == ARES_SUCCESS && n == 0))
		return DNS_NODATA;
	if (rc != ARES_SUCCESS || n < 0 || n > DNS_MAX_ADDR)
		return DNS_TEMPFAIL;
	a->ip = xcalloc((size_t)n, sizeof(*a->ip));
	*ttl = UINT32_MAX;
	for (i = 0; i < n; i++) {
		int it;

		if (a->hn.qtype == DNS_T_A) {
			memcpy(a->ip[i], &v4[i].ipaddr, 4);
			it = v4[i].ttl;
		} else {
			memcpy(a->ip[i], &v6[i].ip6addr, 16);
			it = v6[i].ttl;
		}
		t = it < 0 ? 0 : (uint32_t)it;
		if (t < *ttl)
			*ttl = t;
	}
	a->n = (size_t)n;
	return DNS_OK;
}

/* Close the TXT record being joined in cur: keep it if it fitted. */
static void
dns_txt_flush(struct dns_answer *a, struct buf *cur, bool *open,
    bool *toolong, size_t *dropped)
{
	char *s;

	if (!*open)
		return;
	if (*toolong) {
		log_warnx("dns: %s: TXT record over %d bytes ignored",
		    a->name, DNS_TXT_MAX);
	} else if (a->n >= DNS_MAX_TXT) {
		(*dropped)++;
	} else {
		s = xmalloc(cur->len + 1);
		if (cur->len > 0)
			memcpy(s, cur->data, cur->len);
		s[cur->len] = '\0';
		a->txt[a->n] = s;
		a->txtlen[a->n] = cur->len;
		a->n++;
	}
	buf_reset(cur);
	*open = false;
	*toolong = false;
}

/* TXT records: the strings of one record joined, records kept apart. */
static enum dns_status
dns_parse_txt(struct dns_answer *a, const unsigned char *abuf, int alen)
{
	struct ares_txt_ext *list = NULL, *t;
	struct buf cur;
	bool open = false, toolong = false;
	size_t dropped = 0;
	enum dns_status st = DNS_TEMPFAIL;
	int rc;

	buf_init(&cur);
	rc = ares_parse_txt_reply_ext(abuf, alen, &list);
	if (rc == ARES_ENODATA || (rc == ARES_SUCCESS && list == NULL)) {
		st = DNS_NODATA;
		goto fail;
	}
	if (rc != ARES_SUCCESS)
		goto fail;
	a->txt = xcalloc(DNS_MAX_TXT, sizeof(*a->txt));
	a->txtlen = xcalloc(DNS_MAX_TXT, sizeof(*a->txtlen));
	for (t = list; t != NULL; t = t->next) {
		if (t->record_start)
			dns_txt_flush(a, &cur, &open, &toolong, &dropped);
		open = true;
		if (toolong)
			continue;
		if (t->length > DNS_TXT_MAX - cur.len) {
			toolong = true;
			continue;
		}
		if (t->length > 0)
			buf_add(&cur, t->txt, t->length);
	}
	dns_txt_flush(a, &cur, &open, &toolong, &dropped);
	if (dropped > 0)
		log_warnx("dns: %s: more than %d TXT records, %zu ignored",
		    a->name, DNS_MAX_TXT, dropped);
	if (a->n > 0)
		st = DNS_OK;
fail:
	buf_free(&cur);
	if (list != NULL)
		ares_free_data(list);
	return st;
}

/* PTR records: the target names, validated and lowercased; invalid
 * ones are skipped, at most DNS_MAX_PTR kept. */
static enum dns_status
dns_parse_ptr(struct dns_answer *a, const unsigned char *p, int alen)
{
	size_t len, off = 12, i, qd, an, bad = 0;
	char norm[DNS_NAME_MAX + 1];

	if (p == NULL || alen < 12)
		return DNS_TEMPFAIL;
	len = (size_t)alen;
	qd = dns_get16(p + 4);
	an = dns_get16(p + 6);
	for (i = 0; i < qd; i++) {
		if (!dns_msg_skip_name(p, len, &off) || len - off < 4)
			return DNS_TEMPFAIL;
		off += 4;
	}
	a->txt = xcalloc(DNS_MAX_PTR, sizeof(*a->txt));
	a->txtlen = xcalloc(DNS_MAX_PTR, sizeof(*a->txtlen));
	for (i = 0; i < an; i++) {
		uint16_t type, cls, rdlen;
		char *name = NULL;
		long enclen = 0;

		if (!dns_msg_skip_name(p, len, &off) || len - off < 10)
			return DNS_TEMPFAIL;
		type = dns_get16(p + off);
		cls = dns_get16(p + off + 2);
		rdlen = dns_get16(p + off + 8);
		off += 10;
		if (len - off < rdlen)
			return DNS_TEMPFAIL;
		if (type == DNS_T_PTR && cls == DNS_C_IN &&
		    a->n < DNS_MAX_PTR) {
			if (ares_expand_name(p + off, p, alen, &name,
			    &enclen) == ARES_SUCCESS && enclen >= 0 &&
			    (size_t)enclen <= rdlen &&
			    dns_name_norm(name, norm, false)) {
				a->txt[a->n] = xstrdup(norm);
				a->txtlen[a->n] = strlen(norm);
				a->n++;
			} else
				bad++;
			ares_free_string(name);
		}
		off += rdlen;
	}
	if (bad > 0)
		log_warnx("dns: %s: %zu invalid PTR record(s) ignored",
		    a->name, bad);
	return a->n > 0 ? DNS_OK : DNS_NODATA;
}

static uint32_t
dns_neg_ttl(const struct dns *d, const struct dns_msg_info *mi)
{
	uint32_t ttl = mi->have_soa ? mi->soa_ttl : DNS_NEG_TTL_DEFAULT;

	/* A NODATA behind a CNAME lasts no longer than the CNAME. */
	if (mi->have_ans && mi->ans_ttl < ttl)
		ttl = mi->ans_ttl;
	return ttl < d->neg_ttl_max ? ttl : d->neg_ttl_max;
}

static struct dns_answer *
dns_answer_from_reply(struct dns *d, const struct dns_query *q, int status,
    const unsigned char *abuf, int alen)
{
	struct dns_answer *a;
	struct dns_msg_info mi;
	uint32_t ttl = 0;

	a = dns_answer_new(q->hn.qtype, q->name, q->hn.hash);
	if (abuf == NULL || alen < 0)
		alen = 0;
	dns_msg_scan(abuf, alen, &mi);
	switch (status) {
	case ARES_SUCCESS:
		if (q->hn.qtype == DNS_T_MX) {
			a->status = dns_parse_mx(a, abuf, alen);
			ttl = mi.ans_ttl;
		} else if (q->hn.qtype == DNS_T_TXT) {
			a->status = dns_parse_txt(a, abuf, alen);
			ttl = mi.ans_ttl;
		} else if (q->hn.qtype == DNS_T_PTR) {
			a->status = dns_parse_ptr(a, abuf, alen);
			ttl = mi.ans_ttl;
		} else
			a->status = dns_parse_addr(a, abuf, alen, &ttl);
		if (a->status == DNS_NODATA)
			ttl = dns_neg_ttl(d, &mi);
		else if (a->status != DNS_OK)
			ttl = 0;
		break;
	case ARES_ENODATA:
		a->status = DNS_NODATA;
		ttl = dns_neg_ttl(d, &mi);
		break;
	case ARES_ENOTFOUND:
		a->status = DNS_NXDOMAIN;
		ttl = dns_neg_ttl(d, &mi);
		break;
	default:
		/* SERVFAIL, REFUSED, FORMERR, NOTIMP, timeout, connection
		 * refused, bad reply... */
		log_debug("dns: %s type %u: %s", q->name, q->hn.qtype,
		    ares_strerror(status));
		a->status = DNS_TEMPFAIL;
		break;
	}
	if (ttl > DNS_TTL_MAX)
		ttl = DNS_TTL_MAX;
	a->ttl = ttl;
	a->expire = now_msec_mono() + (int64_t)ttl * 1000;
	return a;
}

/* Cache. */
static void
dns_cache_drop(struct dns *d, struct dns_answer *a)
{
	dns_htab_remove(&d->cache, &a->hn);
	TAILQ_REMOVE(&d->lru, a, lru);
	a->cached = false;
	dns_answer_unref(a);
}

static struct dns_answer *
dns_cache_get(struct dns *d, uint16_t qtype, const char *name, uint64_t h)
{
	struct dns_hnode *hn;
	struct dns_answer *a;

	if ((hn = dns_htab_find(&d->cache, h, qtype, name)) == NULL)
		return NULL;
	a = DNS_CONTAINER(hn, struct dns_answer, hn);
	if (a->expire <= now_msec_mono()) {
		dns_cache_drop(d, a);
		return NULL;
	}
	TAILQ_REMOVE(&d->lru, a, lru);
	TAILQ_INSERT_HEAD(&d->lru, a, lru);
	return a;
}

static void
dns_cache_put(struct dns *d, struct dns_answer *a)
{
	struct dns_hnode *hn;
	struct dns_answer *old;

	if (a->ttl == 0 || (a->status != DNS_OK &&
	    a->status != DNS_NXDOMAIN && a->status != DNS_NODATA))
		return;
	hn = dns_htab_find(&d->cache, a->hn.hash, a->hn.qtype, a->name);
	if (hn != NULL)
		dns_cache_drop(d, DNS_CONTAINER(hn, struct dns_answer, hn));
	while (d->cache.n >= d->cache_max &&
	    (old = TAILQ_LAST(&d->lru, dns_lru)) != NULL)
		dns_cache_drop(d, old);
	dns_htab_insert(&d->cache, &a->hn);
	TAILQ_INSERT_HEAD(&d->lru, a, lru);
	dns_answer_ref(a);
	a->cached = true;
}

/* Sockets and timer: c-ares tells which sockets it wants watched. */
static void
dns_timer_arm(struct dns *d)
{
	struct timeval tv, *tvp;

	tvp = ares_timeout(d->channel, NULL, &tv);
	if (tvp == NULL)
		evtimer_del(d->timer);
	else if (evtimer_add(d->timer, tvp) == -1)
		fatalx("dns: cannot arm the resolver timer");
}

static void
dns_sock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;

	/* May free this very event (c-ares closing the socket). */
	ares_process_fd(d->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
	    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	dns_timer_arm(d);
}

static void
dns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;

	ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_timer_arm(d);
}

static void
dns_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	struct dns_sock *s;
	short what = (short)((readable ? EV_READ : 0) |
	    (writable ? EV_WRITE : 0));

	LIST_FOREACH(s, &d->socks, entry)
		if (s->fd == fd)
			break;
	if (what == 0) {
		if (s != NULL) {
			event_free(s->ev);
			LIST_REMOVE(s, entry);
			free(s);
		}
		return;
	}
	if (s != NULL && s->what == what)
		return;
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->fd = fd;
		LIST_INSERT_HEAD(&d->socks, s, entry);
	} else
		event_free(s->ev);
	s->what = what;
	s->ev = event_new(d->base, fd, (short)(what | EV_PERSIST),
	    dns_sock_cb, d);
	if (s->ev == NULL || event_add(s->ev, NULL) == -1)
		fatalx("dns: cannot watch a resolver socket");
}

/* Requests. */
static void
dns_req_schedule(struct dns_req *r)
{
	struct dns *d = r->d;

	if (r->on_runq)
		return;
	r->on_runq = true;
	r->runq_pass = d->pass;
	TAILQ_INSERT_TAIL(&d->runq, r, runq_entry);
	if (!d->in_work)
		event_active(d->work_ev, EV_TIMEOUT, 0);
}

static void
dns_query_cb(void *arg, int status, int timeouts, unsigned char *abuf,
    int alen)
{
	struct dns_query *q = arg;
	struct dns *d = q->d;
	struct dns_answer *a;
	struct dns_sub *s;

	dns_htab_remove(&d->queries, &q->hn);
	if (d->destroying || status == ARES_EDESTRUCTION) {
		if (!TAILQ_EMPTY(&q->waiters))
			fatalx("dns: query for %s destroyed with waiters",
			    q->name);
		goto done;
	}
	a = dns_answer_from_reply(d, q, status, abuf, alen);
	dns_cache_put(d, a);
	while ((s = TAILQ_FIRST(&q->waiters)) != NULL) {
		TAILQ_REMOVE(&q->waiters, s, qentry);
		s->q = NULL;
		s->ans = dns_answer_ref(a);
		dns_req_schedule(s->req);
	}
	dns_answer_unref(a);
done:
	free(q);
}

/* Ask one question for r: from the cache, an in-flight query, or c-ares.
 * c-ares may answer before ares_query() returns; the request is then
 * merely scheduled again. */
static void
dns_sub_start(struct dns_req *r, size_t i, uint16_t qtype)
{
	struct dns *d = r->d;
	struct dns_sub *s = &r->sub[i];
	struct dns_answer *a;
	struct dns_hnode *hn;
	struct dns_query *q;
	uint64_t h = dns_hash(d, qtype, r->name);
	size_t nl;

	s->req = r;
	s->active = true;
	if ((a = dns_cache_get(d, qtype, r->name, h)) != NULL) {
		s->ans = dns_answer_ref(a);
		d->st.cache_hits++;
		return;
	}
	if ((hn = dns_htab_find(&d->queries, h, qtype, r->name)) != NULL) {
		q = DNS_CONTAINER(hn, struct dns_query, hn);
		s->q = q;
		TAILQ_INSERT_TAIL(&q->waiters, s, qentry);
		return;
	}
	nl = strlen(r->name);
	q = xcalloc(1, sizeof(*q) + nl + 1);
	memcpy(q->name, r->name, nl + 1);
	q->hn.hash = h;
	q->hn.qtype = qtype;
	q->hn.name = q->name;
	q->d = d;
	TAILQ_INIT(&q->waiters);
	dns_htab_insert(&d->queries, &q->hn);
	s->q = q;
	TAILQ_INSERT_TAIL(&q->waiters, s, qentry);
	d->st.queries++;
	ares_query(d->channel, q->name, DNS_C_IN, qtype, dns_query_cb, q);
}

static bool
dns_req_waiting(const struct dns_req *r)
{
	size_t i;

	for (i = 0; i < DNS_NSUB; i++)
		if (r->sub[i].active && r->sub[i].ans == NULL)
			return true;
	return false;
}

/* Status of a set of address answers: OK if any has records. */
static enum dns_status
dns_addr_status(const struct dns_sub *subs, size_t n, int64_t now,
    uint32_t *ttl)
{
	size_t i, seen = 0, nx = 0;
	bool ok = false, temp = false;

	for (i = 0; i < n; i++) {
		const struct dns_answer *a = subs[i].ans;

		if (!subs[i].active || a == NULL)
			continue;
		seen++;
		if (a->status == DNS_OK)
			ok = true;
		else if (a->status == DNS_TEMPFAIL) {
			temp = true;
			continue;
		} else if (a->status == DNS_NXDOMAIN)
			nx++;
		if (dns_answer_ttl_left(a, now) < *ttl)
			*ttl = dns_answer_ttl_left(a, now);
	}
	if (*ttl == UINT32_MAX)
		*ttl = 0;
	if (ok)
		return DNS_OK;
	if (temp) {
		*ttl = 0;
		return DNS_TEMPFAIL;
	}
	if (seen > 0 && nx == seen)
		return DNS_NXDOMAIN;
	return DNS_NODATA;
}

/* Equal preferences in random order (RFC 5321 5.1). */
static void
dns_mx_shuffle(struct dns_mx_result *res)
{
	size_t lo, hi, i, j;
	struct dns_mx tmp;

	for (lo = 0; lo < res->nmx; lo = hi) {
		for (hi = lo + 1; hi < res->nmx &&
		    res->mx[hi].pref == res->mx[lo].pref; hi++)
			;
		for (i = hi - 1; i > lo; i--) {
			j = lo + randombytes_uniform((uint32_t)(i - lo + 1));
			if (j != i) {
				tmp = res->mx[i];
				res->mx[i] = res->mx[j];
				res->mx[j] = tmp;
			}
		}
	}
}

static void
dns_mx_build(const struct dns_req *r, struct dns_mx_result *res,
    int64_t now)
{
	const struct dns_answer *a = r->sub[0].ans;
	uint32_t ttl;
	size_t i, skipped = 0;
	bool root = false;

	if (r->phase == 2) {
		/* No MX: the domain itself, if it has an address. */
		ttl = dns_answer_ttl_left(a, now);
		res->status = dns_addr_status(&r->sub[1], 2, now, &ttl);
		res->ttl = ttl;
		if (res->status == DNS_OK) {
			res->implicit = true;
			res->nmx = 1;
			res->mx[0].pref = 0;
			if (!strlcpy_ok(res->mx[0].host, r->name,
			    sizeof(res->mx[0].host)))
				fatalx("dns: implicit MX name too long");
		} else if (res->status == DNS_NXDOMAIN)
			res->status = DNS_NODATA;
		return;
	}
	res->status = a->status;
	res->ttl = a->status == DNS_TEMPFAIL ? 0 : dns_answer_ttl_left(a, now);
	if (a->status != DNS_OK)
		return;
	for (i = 0; i < a->n && res->nmx < DNS_MAX_MX; i++) {
		if (a->mx[i].host[0] == '\0') {
			root = true;	/* "." among real exchanges */
			continue;
		}
		if (!r->anyname && !dns_name_strict(a->mx[i].host)) {
			skipped++;
			continue;
		}
		res->mx[res->nmx].pref = a->mx[i].pref;
		if (!strlcpy_ok(res->mx[res->nmx].host, a->mx[i].host,
		    sizeof(res->mx[0].host)))
			fatalx("dns: validated MX name too long");
		res->nmx++;
	}
	if (res->nmx == 0 && skipped > 0 && !root) {
		/* Only exchanges that are no host names. */
		log_warnx("dns: %s: %zu MX record(s) with an invalid "
		    "exchange ignored", a->name, skipped);
		res->status = DNS_TEMPFAIL;
		res->ttl = 0;
		return;
	}
	if (res->nmx == 0) {
		res->status = DNS_NULLMX;	/* RFC 7505 */
		return;
	}
	if (skipped > 0)
		log_debug("dns: %s: %zu MX record(s) with an invalid "
		    "exchange ignored", a->name, skipped);
	dns_mx_shuffle(res);
}

static void
dns_addr_put(struct dns_addr_result *res, const struct dns_answer *a,
    size_t take)
{
	size_t i;

	for (i = 0; i < take && res->naddr < DNS_MAX_ADDR; i++) {
		struct sockaddr_storage *ss = &res->addr[res->naddr++];

		memset(ss, 0, sizeof(*ss));
		if (a->hn.qtype == DNS_T_AAAA) {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

			sin6->sin6_family = AF_INET6;
			memcpy(&sin6->sin6_addr, a->ip[i], 16);
		} else {
			struct sockaddr_in *sin = (struct sockaddr_in *)ss;

			sin->sin_family = AF_INET;
			memcpy(&sin->sin_addr, a->ip[i], 4);
		}
	}
}

static void
dns_addr_build(const struct dns_req *r, struct dns_addr_result *res,
    int64_t now)
{
	const struct dns_answer *a6 = r->sub[0].active ? r->sub[0].ans : NULL;
	const struct dns_answer *a4 = r->sub[1].active ? r->sub[1].ans : NULL;
	size_t n6 = 0, n4 = 0, take6;
	uint32_t ttl = UINT32_MAX;

	res->status = dns_addr_status(r->sub, 2, now, &ttl);
	res->ttl = ttl;
	if (res->status != DNS_OK)
		return;
	if (a6 != NULL && a6->status == DNS_OK)
		n6 = a6->n;
	if (a4 != NULL && a4->status == DNS_OK)
		n4 = a4->n;
	/* IPv6 first, but neither family crowds the other out. */
	if (n4 >= DNS_MAX_ADDR / 2)
		take6 = n6 < DNS_MAX_ADDR / 2 ? n6 : DNS_MAX_ADDR / 2;
	else
		take6 = n6 < DNS_MAX_ADDR - n4 ? n6 : DNS_MAX_ADDR - n4;
	if (n6 > 0)
		dns_addr_put(res, a6, take6);
	if (n4 > 0)
		dns_addr_put(res, a4, n4);
}

static void
dns_txt_build(const struct dns_req *r, struct dns_txt_result *res,
    int64_t now)
{
	const struct dns_answer *a = r->sub[0].ans;
	size_t i;

	res->status = a->status;
	res->ttl = a->status == DNS_TEMPFAIL ? 0 : dns_answer_ttl_left(a, now);
	if (a->status != DNS_OK)
		return;
	for (i = 0; i < a->n && i < DNS_MAX_TXT; i++) {
		res->txt[i] = a->txt[i];
		res->len[i] = a->txtlen[i];
	}
	res->ntxt = i;
}

static void
dns_ptr_build(const struct dns_req *r, struct dns_ptr_result *res,
    int64_t now)
{
	const struct dns_answer *a = r->sub[0].ans;
	size_t i;

	res->status = a->status;
	res->ttl = a->status == DNS_TEMPFAIL ? 0 : dns_answer_ttl_left(a, now);
	if (a->status != DNS_OK)
		return;
	for (i = 0; i < a->n && i < DNS_MAX_PTR; i++)
		res->name[i] = a->txt[i];
	res->nname = i;
}

/* Build the result, run the callback, free the request.  Only ever
 * called from the work event. */
static void
dns_req_finish(struct dns_req *r)
{
	int64_t now = now_msec_mono();
	struct dns_mx_result *mx;
	struct dns_addr_result *ad;
	struct dns_txt_result *tx;
	struct dns_ptr_result *pt;

	r->delivering = true;
	switch (r->kind) {
	case DNS_K_MX:
		mx = xcalloc(1, sizeof(*mx));
		if (r->badname)
			mx->status = DNS_BADNAME;
		else
			dns_mx_build(r, mx, now);
		r->cb.mx(r->arg, mx);
		free(mx);
		break;
	case DNS_K_ADDR:
		ad = xcalloc(1, sizeof(*ad));
		if (r->badname)
			ad->status = DNS_BADNAME;
		else
			dns_addr_build(r, ad, now);
		r->cb.addr(r->arg, ad);
		free(ad);
		break;
	case DNS_K_TXT:
		tx = xcalloc(1, sizeof(*tx));
		if (r->badname)
			tx->status = DNS_BADNAME;
		else
			dns_txt_build(r, tx, now);
		r->cb.txt(r->arg, tx);
		free(tx);
		break;
	case DNS_K_PTR:
		pt = xcalloc(1, sizeof(*pt));
		if (r->badname)
			pt->status = DNS_BADNAME;
		else
			dns_ptr_build(r, pt, now);
		r->cb.ptr(r->arg, pt);
		free(pt);
		break;
	}
	r->delivering = false;
	dns_req_free(r);
}

/* Advance r: ask what it needs, or deliver once everything answered. */
static void
dns_req_step(struct dns_req *r)
{
	if (r->badname) {
		dns_req_finish(r);
		return;
	}
	if (r->phase == 0) {
		r->phase = 1;
		switch (r->kind) {
		case DNS_K_MX:
			dns_sub_start(r, 0, DNS_T_MX);
			break;
		case DNS_K_TXT:
			dns_sub_start(r, 0, DNS_T_TXT);
			break;
		case DNS_K_PTR:
			dns_sub_start(r, 0, DNS_T_PTR);
			break;
		case DNS_K_ADDR:
			if (r->family != AF_INET)
				dns_sub_start(r, 0, DNS_T_AAAA);
			if (r->family != AF_INET6)
				dns_sub_start(r, 1, DNS_T_A);
			break;
		}
	}
	if (dns_req_waiting(r))
		return;
	if (r->kind == DNS_K_MX && r->phase == 1 &&
	    r->sub[0].ans->status == DNS_NODATA) {
		r->phase = 2;
		dns_sub_start(r, 1, DNS_T_AAAA);
		dns_sub_start(r, 2, DNS_T_A);
		if (dns_req_waiting(r))
			return;
	}
	dns_req_finish(r);
}

static void
dns_req_free(struct dns_req *r)
{
	struct dns *d = r->d;
	struct dns_sub *s;
	size_t i;

	for (i = 0; i < DNS_NSUB; i++) {
		s = &r->sub[i];
		if (s->q != NULL) {
			/* The query goes on; its answer still fills the
			 * cache. */
			TAILQ_REMOVE(&s->q->waiters, s, qentry);
			s->q = NULL;
		}
		dns_answer_unref(s->ans);
		s->ans = NULL;
	}
	if (r->on_runq)
		TAILQ_REMOVE(&d->runq, r, runq_entry);
	TAILQ_REMOVE(&d->reqs, r, entry);
	free(r);
}

static void dns_destroy(struct dns *);

/* The only place callbacks run.  A pass steps the requests queued before
 * it started; those queued meanwhile wait for the next pass. */
static void
dns_work_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;
	struct dns_req *r;
	unsigned pass = ++d->pass;

	d->in_work = true;
	while ((r = TAILQ_FIRST(&d->runq)) != NULL && r->runq_pass != pass) {
		TAILQ_REMOVE(&d->runq, r, runq_entry);
		r->on_runq = false;
		dns_req_step(r);
		if (d->free_pending)
			break;
	}
	d->in_work = false;
	if (d->free_pending) {
		dns_destroy(d);
		return;
	}
	dns_timer_arm(d);
	if (!TAILQ_EMPTY(&d->runq))
		event_active(d->work_ev, EV_TIMEOUT, 0);
}

static struct dns_req *
dns_req_new(struct dns *d, enum dns_kind kind, const char *name,
    unsigned flags, void *arg)
{
	struct dns_req *r;

	if (d == NULL || d->free_pending)
		fatalx("dns: lookup on a freed resolver");
	r = xcalloc(1, sizeof(*r));
	r->d = d;
	r->kind = kind;
	r->arg = arg;
	r->anyname = (flags & DNS_F_ANYNAME) != 0;
	if (!dns_name_norm(name, r->name, r->anyname))
		r->badname = true;
	TAILQ_INSERT_TAIL(&d->reqs, r, entry);
	return r;
}

struct dns_req *
dns_lookup_mx_flags(struct dns *d, const char *domain, unsigned flags,
    dns_mx_cb cb, void *arg)
{
	struct dns_req *r;

	if (cb == NULL)
		fatalx("dns_lookup_mx: no callback");
	r = dns_req_new(d, DNS_K_MX, domain, flags, arg);
	r->cb.mx = cb;
	dns_req_schedule(r);
	return r;
}

struct dns_req *
dns_lookup_mx(struct dns *d, const char *domain, dns_mx_cb cb, void *arg)
{
	return dns_lookup_mx_flags(d, domain, 0, cb, arg);
}

struct dns_req *
dns_lookup_addr_flags(struct dns *d, const char *host, int family,
    unsigned flags, dns_addr_cb cb, void *arg)
{
	struct dns_req *r;

	if (cb == NULL)
		fatalx("dns_lookup_addr: no callback");
	if (family != AF_INET && family != AF_INET6 && family != AF_UNSPEC)
		fatalx("dns_lookup_addr: bad family %d", family);
	r = dns_req_new(d, DNS_K_ADDR, host, flags, arg);
	r->family = family;
	r->cb.addr = cb;
	dns_req_schedule(r);
	return r;
}

struct dns_req *
dns_lookup_addr(struct dns *d, const char *host, int family,
    dns_addr_cb cb, void *arg)
{
	return dns_lookup_addr_flags(d, host, family, 0, cb, arg);
}

struct dns_req *
dns_lookup_txt_flags(struct dns *d, const char *name, unsigned flags,
    dns_txt_cb cb, void *arg)
{
	struct dns_req *r;

	if (cb == NULL)
		fatalx("dns_lookup_txt: no callback");
	r = dns_req_new(d, DNS_K_TXT, name, flags, arg);
	r->cb.txt = cb;
	dns_req_schedule(r);
	return r;
}

struct dns_req *
dns_lookup_txt(struct dns *d, const char *name, dns_txt_cb cb, void *arg)
{
	return dns_lookup_txt_flags(d, name, 0, cb, arg);
}

struct dns_req *
dns_lookup_ptr(struct dns *d, const struct sockaddr *sa, dns_ptr_cb cb,
    void *arg)
{
	static const char hex[] = "0123456789abcdef";
	char name[DNS_NAME_MAX + 1];
	const unsigned char *b;
	struct dns_req *r;
	size_t o = 0;
	int i;

	if (cb == NULL || sa == NULL)
		fatalx("dns_lookup_ptr: no callback or address");
	name[0] = '\0';
	if (sa->sa_family == AF_INET) {
		b = (const unsigned char *)
		    &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
		(void)snprintf(name, sizeof(name), "%u.%u.%u.%u.in-addr.arpa",
		    b[3], b[2], b[1], b[0]);
	} else if (sa->sa_family == AF_INET6) {
		b = (const unsigned char *)
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		for (i = 15; i >= 0; i--) {
			name[o++] = hex[b[i] & 0xf];
			name[o++] = '.';
			name[o++] = hex[b[i] >> 4];
			name[o++] = '.';
		}
		memcpy(name + o, "ip6.arpa", sizeof("ip6.arpa"));
	}
	/* An unknown family leaves the name empty: DNS_BADNAME. */
	r = dns_req_new(d, DNS_K_PTR, name, 0, arg);
	r->cb.ptr = cb;
	dns_req_schedule(r);
	return r;
}

struct event_base *
dns_base(const struct dns *d)
{
	return d->base;
}

void
dns_cancel(struct dns_req *r)
{
	if (r == NULL)
		return;
	/* From its own callback: it is freed when the callback returns. */
	if (r->delivering)
		return;
	dns_req_free(r);
}

void
dns_stats(const struct dns *d, struct dns_stats *out)
{
	*out = d->st;
	out->cache_entries = d->cache.n;
}

struct dns *
dns_new(struct event_base *base, const struct dns_opts *opts, char *err,
    size_t errlen)
{
	static const struct dns_opts defaults;
	struct ares_options ao;
	struct ares_addr_port_node *servers = NULL;
	struct dns *d = NULL;
	int rc, mask;

	if (opts == NULL)
		opts = &defaults;
	if (base == NULL)
		fatalx("dns_new: no event base");
	if (pthread_once(&dns_once, dns_lib_init_once) != 0 ||
	    dns_lib_rc == -1) {
		dns_errf(err, errlen, "dns: cannot initialise c-ares");
		goto fail;
	}
	if (opts->timeout_ms > DNS_TIMEOUT_MAX || opts->tries > DNS_TRIES_MAX) {
		dns_errf(err, errlen, "dns: timeout over %u ms or tries over "
		    "%u", DNS_TIMEOUT_MAX, DNS_TRIES_MAX);
		goto fail;
	}
	if (opts->servers != NULL &&
	    strnlen(opts->servers, DNS_SERVERS_MAX + 1) > DNS_SERVERS_MAX) {
		dns_errf(err, errlen, "dns: servers list over %u bytes",
		    DNS_SERVERS_MAX);
		goto fail;
	}

	d = xcalloc(1, sizeof(*d));
	d->base = base;
	LIST_INIT(&d->socks);
	TAILQ_INIT(&d->reqs);
	TAILQ_INIT(&d->runq);
	TAILQ_INIT(&d->lru);
	dns_htab_init(&d->queries);
	dns_htab_init(&d->cache);
	d->cache_max = opts->cache_max ? opts->cache_max : 100000;
	d->neg_ttl_max = opts->negative_ttl_max ? opts->negative_ttl_max :
	    3600;
	crypto_shorthash_keygen(d->hkey);
	d->work_ev = event_new(base, -1, 0, dns_work_cb, d);
	d->timer = evtimer_new(base, dns_timer_cb, d);
	if (d->work_ev == NULL || d->timer == NULL) {
		dns_errf(err, errlen, "dns: cannot create events");
		goto fail;
	}

	memset(&ao, 0, sizeof(ao));
	ao.flags = ARES_FLAG_EDNS;
	ao.ednspsz = DNS_EDNS_SIZE;
	ao.timeout = (int)(opts->timeout_ms ? opts->timeout_ms : 2000);
	ao.tries = (int)(opts->tries ? opts->tries : 3);
	ao.sock_state_cb = dns_sock_state_cb;
	ao.sock_state_cb_data = d;
	mask = ARES_OPT_FLAGS | ARES_OPT_EDNSPSZ | ARES_OPT_TIMEOUTMS |
	    ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
	if ((rc = ares_init_options(&d->channel, &ao, mask)) != ARES_SUCCESS) {
		dns_errf(err, errlen, "dns: c-ares: %s", ares_strerror(rc));
		goto fail;
	}
	d->have_channel = true;
	if (opts->servers != NULL && opts->servers[0] != '\0') {
		rc = ares_set_servers_ports_csv(d->channel, opts->servers);
		if (rc != ARES_SUCCESS) {
			dns_errf(err, errlen, "dns: bad servers \"%s\": %s",
			    opts->servers, ares_strerror(rc));
			goto fail;
		}
	}
	rc = ares_get_servers_ports(d->channel, &servers);
	if (rc != ARES_SUCCESS || servers == NULL) {
		dns_errf(err, errlen, "dns: no DNS server configured");
		goto fail;
	}
	ares_free_data(servers);
	return d;
fail:
	if (d != NULL)
		dns_destroy(d);
	return NULL;
}

/* Free everything now; no callback runs.  Not from inside a callback. */
static void
dns_destroy(struct dns *d)
{
	struct dns_sock *s;
	struct dns_answer *a;
	struct dns_req *r;
	size_t i;

	while ((r = TAILQ_FIRST(&d->reqs)) != NULL)
		dns_req_free(r);
	/* ARES_EDESTRUCTION callbacks free the queries; socket state
	 * callbacks free the socket events. */
	d->destroying = true;
	if (d->have_channel)
		ares_destroy(d->channel);
	d->have_channel = false;
	if (d->queries.n != 0)
		fatalx("dns: %zu queries outlived the channel", d->queries.n);
	while ((s = LIST_FIRST(&d->socks)) != NULL) {
		event_free(s->ev);
		LIST_REMOVE(s, entry);
		free(s);
	}
	while ((a = TAILQ_FIRST(&d->lru)) != NULL)
		dns_cache_drop(d, a);
	for (i = 0; i < d->cache.nb; i++)
		if (d->cache.b[i] != NULL)
			fatalx("dns: cache table not empty");
	free(d->queries.b);
	free(d->cache.b);
	if (d->work_ev != NULL)
		event_free(d->work_ev);
	if (d->timer != NULL)
		event_free(d->timer);
	free(d);
}

void
dns_free(struct dns *d)
{
	struct dns_req *r, *next;

	if (d == NULL)
		return;
	if (!d->in_work) {
		dns_destroy(d);
		return;
	}
	/* From a callback: cancel the others now; the work event frees d
	 * (and the request whose callback is running) when it returns. */
	for (r = TAILQ_FIRST(&d->reqs); r != NULL; r = next) {
		next = TAILQ_NEXT(r, entry);
		if (!r->delivering)
			dns_req_free(r);
	}
	d->free_pending = true;
}

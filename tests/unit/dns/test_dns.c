/*
 * test_dns.c - the resolver against real DNS servers on loopback.
 *
 * The test starts two dnsmasq instances on 127.0.0.1 and kills them at
 * the end: one authoritative for t.test (proper NXDOMAIN/NODATA with an
 * SOA, TTL 60), one with local data for s.test (per-record TTLs of 0 and
 * 1 s, negative answers without an SOA).  Replies dnsmasq cannot give come
 * from a tiny responder inside this process (a UDP socket on the same
 * event loop, fake_cb below): SERVFAIL, 40 MX records, a TTL with the top
 * bit set.  A bound UDP socket that never reads stands for a server that
 * does not answer; a closed port for one that refuses.
 *
 * Must never: send a packet outside 127.0.0.0/8, or leave a dnsmasq
 * running (the children get SIGKILL if this process dies).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/util.h"
#include "dns/dns.h"

#define DNSMASQ		"/usr/sbin/dnsmasq"

static struct event_base	*base;
static pid_t			 auth_pid = -1, local_pid = -1;
static int			 silent_fd = -1, fake_fd = -1;
static struct event		*fake_ev;
static char			 srv_auth[32], srv_local[32], srv_silent[32];
static char			 srv_refused[32], srv_fake[32];
static int			 fake_queries;

/* Data of the authoritative instance (zone t.test, TTL 60). */
static const char *const auth_data[] = {
	"--auth-zone=t.test",
	"--auth-server=ns.t.test,127.0.0.1",
	"--auth-ttl=60",
	"--auth-soa=1,hostmaster.t.test,1200,120,604800",
	"--mx-host=t.test,mx2.t.test,20",
	"--mx-host=t.test,mx1.t.test,10",
	"--mx-host=eq.t.test,a.t.test,10",
	"--mx-host=eq.t.test,last.t.test,20",
	"--mx-host=eq.t.test,b.t.test,10",
	"--mx-host=eq.t.test,first.t.test,5",
	"--mx-host=eq.t.test,c.t.test,10",
	"--mx-host=null.t.test,.,0",
	"--mx-host=mixed.t.test,.,0",
	"--mx-host=mixed.t.test,mx1.t.test,10",
	"--host-record=mx1.t.test,127.0.0.2,::2",
	"--host-record=imp.t.test,127.0.0.3",
	"--host-record=imp6.t.test,::3",
	"--host-record=multi.t.test,127.0.0.7",
	"--host-record=multi.t.test,127.0.0.8",
	"--txt-record=txt.t.test,v=spf1 ,-all",
	"--txt-record=txt.t.test,other",
	"--txt-record=noaddr.t.test,exists",
	NULL,
};

/* Data of the local instance (s.test, not authoritative, no SOA). */
static const char *const local_data[] = {
	"--local=/s.test/",
	"--local-ttl=1",
	"--host-record=short.s.test,127.0.0.4",
	"--host-record=zero.s.test,127.0.0.5,0",
	"--ptr-record=6.0.0.127.in-addr.arpa,Rev.S.test.",
	"--ptr-record=6.0.0.127.in-addr.arpa,two.s.test",
	"--ptr-record=6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa,"
	    "rev6.s.test",
	NULL,
};

/* Results, copied out of the callbacks. */
struct res {
	int			 calls;
	enum dns_status		 st;
	bool			 implicit;
	size_t			 n;
	uint32_t		 ttl;
	struct dns_mx		 mx[DNS_MAX_MX];
	struct sockaddr_storage	 addr[DNS_MAX_ADDR];
	char			*txt[DNS_MAX_TXT];
	size_t			 len[DNS_MAX_TXT];
	struct dns		*free_in_cb;	/* dns_free() from the callback */
};

static int	done_calls, want_calls;
static bool	timed_out;

static void
res_clear(struct res *r)
{
	size_t i;

	for (i = 0; i < DNS_MAX_TXT; i++)
		free(r->txt[i]);
	memset(r, 0, sizeof(*r));
}

static void
res_done(struct res *r, enum dns_status st, size_t n, uint32_t ttl)
{
	r->st = st;
	r->n = n;
	r->ttl = ttl;
	r->calls++;
	if (r->free_in_cb != NULL)
		dns_free(r->free_in_cb);
	if (++done_calls >= want_calls)
		event_base_loopbreak(base);
}

static void
mx_cb(void *arg, const struct dns_mx_result *mr)
{
	struct res *r = arg;

	assert_true(mr->nmx <= DNS_MAX_MX);
	r->implicit = mr->implicit;
	memcpy(r->mx, mr->mx, sizeof(r->mx));
	res_done(r, mr->status, mr->nmx, mr->ttl);
}

static void
addr_cb(void *arg, const struct dns_addr_result *ar)
{
	struct res *r = arg;

	assert_true(ar->naddr <= DNS_MAX_ADDR);
	memcpy(r->addr, ar->addr, sizeof(r->addr));
	res_done(r, ar->status, ar->naddr, ar->ttl);
}

static void
txt_cb(void *arg, const struct dns_txt_result *tr)
{
	struct res *r = arg;
	size_t i;

	assert_true(tr->ntxt <= DNS_MAX_TXT);
	for (i = 0; i < tr->ntxt; i++) {
		assert_true(tr->len[i] <= DNS_TXT_MAX);
		assert_int_equal(tr->txt[i][tr->len[i]], '\0');
		r->txt[i] = malloc(tr->len[i] + 1);
		memcpy(r->txt[i], tr->txt[i], tr->len[i] + 1);
		r->len[i] = tr->len[i];
	}
	res_done(r, tr->status, tr->ntxt, tr->ttl);
}

static void
ptr_cb(void *arg, const struct dns_ptr_result *pr)
{
	struct res *r = arg;
	size_t i;

	assert_true(pr->nname <= DNS_MAX_PTR);
	for (i = 0; i < pr->nname && i < DNS_MAX_TXT; i++) {
		r->txt[i] = strdup(pr->name[i]);
		r->len[i] = strlen(pr->name[i]);
	}
	res_done(r, pr->status, pr->nname, pr->ttl);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	timed_out = true;
	event_base_loopbreak(base);
}

/* Run the loop until want callbacks more have run or ms passed; returns
 * the elapsed milliseconds. */
static int64_t
run(int want, int ms)
{
	struct event *t = evtimer_new(base, deadline_cb, NULL);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	int64_t t0 = now_msec_mono();

	done_calls = 0;
	want_calls = want;
	timed_out = false;
	evtimer_add(t, &tv);
	if (want > 0 || ms > 0)
		event_base_dispatch(base);
	event_free(t);
	return now_msec_mono() - t0;
}

static void
run_for(int ms)
{
	run(1 << 30, ms);
	assert_true(timed_out);
}

/* One turn of the loop: the work event runs and sends the queries of
 * what is queued; no reply can have been read yet.  (EVLOOP_NONBLOCK
 * would go on turning while anything is active, replies included.) */
static void
send_queued(void)
{
	event_base_loop(base, EVLOOP_ONCE);
}

static struct dns *
mk(const char *servers, unsigned timeout_ms, unsigned tries, size_t cache_max,
    uint32_t neg_max)
{
	struct dns_opts o = { .servers = servers, .timeout_ms = timeout_ms,
	    .tries = tries, .cache_max = cache_max,
	    .negative_ttl_max = neg_max };
	char err[256] = "";
	struct dns *d = dns_new(base, &o, err, sizeof(err));

	if (d == NULL)
		fail_msg("dns_new: %s", err);
	return d;
}

static struct dns *
mk_default(const char *servers)
{
	return mk(servers, 1000, 2, 0, 0);
}

/* After a lookup: the callback did not run inside the call, and runs
 * once when the loop turns. */
static void
wait_one(struct res *r, struct dns_req *q)
{
	assert_non_null(q);
	assert_int_equal(r->calls, 0);
	run(1, 5000);
	assert_int_equal(r->calls, 1);
}

static void
mx_wait(struct dns *d, const char *name, struct res *r)
{
	res_clear(r);
	wait_one(r, dns_lookup_mx(d, name, mx_cb, r));
}

static void
addr_wait(struct dns *d, const char *name, int family, struct res *r)
{
	res_clear(r);
	wait_one(r, dns_lookup_addr(d, name, family, addr_cb, r));
}

static void
txt_wait(struct dns *d, const char *name, struct res *r)
{
	res_clear(r);
	wait_one(r, dns_lookup_txt(d, name, txt_cb, r));
}

static void
assert_ip(const struct sockaddr_storage *ss, const char *want)
{
	char buf[INET6_ADDRSTRLEN] = "";

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		assert_int_equal(ntohs(s6->sin6_port), 0);
		inet_ntop(AF_INET6, &s6->sin6_addr, buf, sizeof(buf));
	} else {
		const struct sockaddr_in *s4 = (const void *)ss;

		assert_int_equal(ss->ss_family, AF_INET);
		assert_int_equal(ntohs(s4->sin_port), 0);
		inet_ntop(AF_INET, &s4->sin_addr, buf, sizeof(buf));
	}
	assert_string_equal(buf, want);
}

/* -- MX -------------------------------------------------------------------- */

static void
test_mx_sorted(void **state)
{
	struct dns *d = mk_default(srv_auth);
	struct dns_stats st;
	struct res r = { 0 };

	mx_wait(d, "t.test", &r);
	assert_int_equal(r.st, DNS_OK);
	assert_false(r.implicit);
	assert_int_equal(r.n, 2);
	assert_string_equal(r.mx[0].host, "mx1.t.test");
	assert_int_equal(r.mx[0].pref, 10);
	assert_string_equal(r.mx[1].host, "mx2.t.test");
	assert_int_equal(r.mx[1].pref, 20);
	assert_true(r.ttl > 0 && r.ttl <= 60);

	/* Case and the trailing dot do not matter: the same cache entry. */
	mx_wait(d, "T.Test.", &r);
	assert_int_equal(r.st, DNS_OK);
	assert_int_equal(r.n, 2);
	dns_stats(d, &st);
	assert_int_equal(st.queries, 1);
	assert_int_equal(st.cache_hits, 1);
	res_clear(&r);
	dns_free(d);
}

static void
test_mx_shuffle(void **state)
{
	struct dns *d = mk_default(srv_auth);
	struct dns_stats st;
	struct res r = { 0 };
	char first[3] = "", order[3];
	bool varied = false;
	int i, j;

	for (i = 0; i < 40; i++) {
		mx_wait(d, "eq.t.test", &r);
		assert_int_equal(r.st, DNS_OK);
		assert_int_equal(r.n, 5);
		assert_string_equal(r.mx[0].host, "first.t.test");
		assert_int_equal(r.mx[0].pref, 5);
		for (j = 1; j <= 3; j++) {
			assert_int_equal(r.mx[j].pref, 10);
			assert_int_equal(strlen(r.mx[j].host), strlen("a.t.test"));
			assert_string_equal(r.mx[j].host + 1, ".t.test");
			order[j - 1] = r.mx[j].host[0];
		}
		assert_true(order[0] != order[1] && order[1] != order[2] &&
		    order[0] != order[2]);
		assert_string_equal(r.mx[4].host, "last.t.test");
		assert_int_equal(r.mx[4].pref, 20);
		if (i == 0)
			memcpy(first, order, 3);
		else if (memcmp(first, order, 3) != 0)
			varied = true;
	}
	/* One query; the order of equal preferences is drawn at every
	 * delivery, cache hits included. */
	assert_true(varied);
	dns_stats(d, &st);
	assert_int_equal(st.queries, 1);
	assert_int_equal(st.cache_hits, 39);
	res_clear(&r);
	dns_free(d);
}

static void
test_mx_implicit(void **state)
{
	struct dns *d = mk_default(srv_auth);
	struct dns_stats st;
	struct res r = { 0 };

	/* No MX, an A record: the domain itself. */
	mx_wait(d, "imp.t.test", &r);
	assert_int_equal(r.st, DNS_OK);
	assert_true(r.implicit);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.mx[0].host, "imp.t.test");
	assert_int_equal(r.mx[0].pref, 0);
	assert_true(r.ttl > 0 && r.ttl <= 60);
	dns_stats(d, &st);
	assert_int_equal(st.queries, 3);	/* MX, AAAA, A */

	/* Only AAAA will do too; the name comes back normalised. */
	mx_wait(d, "IMP6.t.test.", &r);
	assert_int_equal(r.st, DNS_OK);
	assert_true(r.implicit);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.mx[0].host, "imp6.t.test");

	/* The name exists (a TXT record) but has no MX and no address. */
	mx_wait(d, "noaddr.t.test", &r);
	assert_int_equal(r.st, DNS_NODATA);
	assert_false(r.implicit);
	assert_int_equal(r.n, 0);

	/* Again, all from the cache (negative answers included). */
	dns_stats(d, &st);
	mx_wait(d, "imp.t.test", &r);
	assert_int_equal(r.st, DNS_OK);
	assert_true(r.implicit);
	mx_wait(d, "noaddr.t.test", &r);
	assert_int_equal(r.st, DNS_NODATA);
	{
		struct dns_stats st2;

		dns_stats(d, &st2);
		assert_int_equal(st2.queries, st.queries);
		assert_int_equal(st2.cache_hits, st.cache_hits + 6);
	}
	res_clear(&r);
	dns_free(d);
}

static void
test_mx_null(void **state)
{
	struct dns *d = mk_default(srv_auth);
	struct res r = { 0 };

	mx_wait(d, "null.t.test", &r);
	assert_int_equal(r.st, DNS_NULLMX);
	assert_int_equal(r.n, 0);
	assert_false(r.implicit);

	/* "." among real exchanges is dropped. */
	mx_wait(d, "mixed.t.test", &r);
	assert_int_equal(r.st, DNS_OK);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.mx[0].host, "mx1.t.test");
	res_clear(&r);
	dns_free(d);
}

static void
test_mx_many(void **state)
{
	struct dns *d = mk_default(srv_fake);
	struct res r = { 0 };
	char want[DNS_NAME_MAX + 1];
	size_t i;

	/* 40 records in reverse order of preference: the 32 best, sorted. */
	mx_wait(d, "many.fake", &r);
	assert_int_equal(r.st, DNS_OK);
	assert_int_equal(r.n, DNS_MAX_MX);
	for (i = 0; i < DNS_MAX_MX; i++) {
		assert_int_equal(r.mx[i].pref, 61 + i);
		snprintf(want, sizeof(want), "m%zu.many.fake", 100 - (61 + i));
		assert_string_equal(r.mx[i].host, want);
	}
	res_clear(&r);
	dns_free(d);
}

/* -- negative answers, addresses, TXT -------------------------------------- */

static void
test_nxdomain(void **state)
{
	struct dns *d = mk_default(srv_auth);
	struct dns *l = mk_default(srv_local);
	struct dns *lc = mk(srv_local, 1000, 2, 0, 100);
	struct res r = { 0 };

	mx_wait(d, "nx.t.test", &r);
	assert_int_equal(r.st, DNS_NXDOMAIN);
	assert_int_equal(r.n, 0);
	/* From the SOA: min(TTL 60, MINIMUM 60). */
	assert_true(r.ttl > 0 && r.ttl <= 60);
	addr_wait(d, "nx.t.test", AF_UNSPEC, &r);
	assert_int_equal(r.st, DNS_NXDOMAIN);
	txt_wait(d, "nx.t.test", &r);
	assert_int_equal(r.st, DNS_NXDOMAIN);

	/* No SOA in the reply: the fixed 300 s, capped by the option. */
	addr_wait(l, "nx.s.test", AF_INET, &r);
	assert_int_equal(r.st, DNS_NXDOMAIN);
	assert_int_equal(r.ttl, 300);
	addr_wait(lc, "nx.s.test", AF_INET, &r);
	assert_int_equal(r.st, DNS_NXDOMAIN);
	assert_int_equal(r.ttl, 100);
	res_clear(&r);
	dns_free(d);
	dns_free(l);
	dns_free(lc);
}

static void
test_addr(void **state)
{
	struct dns *d = mk_default(srv_auth);
	struct res r = { 0 };

	addr_wait(d, "mx1.t.test", AF_INET, &r);
	assert_int_equal(r.st, DNS_OK);
	assert_int_equal(r.n, 1);
	assert_ip(&r.addr[0], "127.0.0.2");
	assert_true(r.ttl > 0 && r.ttl <= 60);

	addr_wait(d, "mx1.t.test", AF_INET6, &r);
	assert_int_equal(r.st, DNS_OK);
	assert_int_equal(r.n, 1);
	assert_ip(&r.addr[0], "::2");

	/* Both, IPv6 first. */
	addr_wait(d, "mx1.t.test", AF_UNSPEC, &r);
	assert_int_equal(r.st, DNS_OK);
	assert_int_equal(r.n, 2);
	assert_ip(&r.addr[0], "::2");
	assert_ip(&r.addr[1], "127.0.0.2");

	/* One family is enough for OK. */
	addr_wait(d, "imp.t.test", AF_UNSPEC, &r);
	assert_int_equal(r.st, DNS_OK);
	assert_int_equal(r.n, 1);
	assert_ip(&r.addr[0], "127.0.0.3");
	addr_wait(d, "imp.t.test", AF_INET6, &r);
	assert_int_equal(r.st, DNS_NODATA);
	assert_int_equal(r.n, 0);

	addr_wait(d, "multi.t.test", AF_INET, &r);
	assert_int_equal(r.st, DNS_OK);
	assert_int_equal(r.n, 2);
	{
		char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &((struct sockaddr_in *)&r.addr[0])->sin_addr,
		    a, sizeof(a));
		inet_ntop(AF_INET, &((struct sockaddr_in *)&r.addr[1])->sin_addr,
		    b, sizeof(b));
		assert_true((strcmp(a, "127.0.0.7") == 0 &&
		    strcmp(b, "127.0.0.8") == 0) ||
		    (strcmp(a, "127.0.0.8") == 0 &&
		    strcmp(b, "127.0.0.7") == 0));
	}
	res_clear(&r);
	dns_free(d);
}

static void
test_txt(void **state)
{
	struct dns *d = mk_default(srv_auth);
	struct res r = { 0 };
	size_t i;
	bool spf = false, other = false;

	txt_wait(d, "txt.t.test", &r);
	assert_int_equal(r.st, DNS_OK);
	assert_int_equal(r.n, 2);
	for (i = 0; i < r.n; i++) {
		if (strcmp(r.txt[i], "v=spf1 -all") == 0) {
			assert_int_equal(r.len[i], 11);
			spf = true;
		} else if (strcmp(r.txt[i], "other") == 0) {
			assert_int_equal(r.len[i], 5);
			other = true;
		}
	}
	assert_true(spf && other);

	txt_wait(d, "mx1.t.test", &r);
	assert_int_equal(r.st, DNS_NODATA);
	assert_int_equal(r.n, 0);
	res_clear(&r);
	dns_free(d);
}

static void
ptr_wait(struct dns *d, const char *ip, struct res *r)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1)
		s4->sin_family = AF_INET;
	else {
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
		s6->sin6_family = AF_INET6;
	}
	res_clear(r);
	wait_one(r, dns_lookup_ptr(d, (struct sockaddr *)&ss, ptr_cb, r));
}

/* PTR: reverse names of IPv4 and IPv6 (nibbles), lowercased, no dot. */
static void
test_ptr(void **state)
{
	struct dns *d = mk_default(srv_local);
	struct res r = { 0 };
	struct sockaddr_storage ss = { .ss_family = AF_UNIX };
	bool rev = false, two = false;
	size_t i;

	ptr_wait(d, "127.0.0.6", &r);
	assert_int_equal(r.st, DNS_OK);
	assert_int_equal(r.n, 2);
	for (i = 0; i < r.n; i++) {
		rev |= strcmp(r.txt[i], "rev.s.test") == 0;
		two |= strcmp(r.txt[i], "two.s.test") == 0;
	}
	assert_true(rev && two);
	ptr_wait(d, "::6", &r);
	assert_int_equal(r.st, DNS_OK);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.txt[0], "rev6.s.test");
	/* Cached: no new query. */
	ptr_wait(d, "127.0.0.6", &r);
	assert_int_equal(r.st, DNS_OK);
	/* An address family without a reverse tree. */
	res_clear(&r);
	wait_one(&r, dns_lookup_ptr(d, (struct sockaddr *)&ss, ptr_cb, &r));
	assert_int_equal(r.st, DNS_BADNAME);
	assert_ptr_equal(dns_base(d), base);
	res_clear(&r);
	dns_free(d);
}

/* -- bad names ------------------------------------------------------------- */

static void
test_badname(void **state)
{
	struct dns *d = mk_default(srv_auth);
	struct dns_stats st;
	struct res r = { 0 };
	char lab64[80], long254[300], ok253[300];
	const char *bad[] = { "", ".", "..", "a..t.test", ".t.test",
	    "t.test..", "a b.t.test", "a\\.b.t.test", "[127.0.0.1]",
	    "x\001.t.test", "\xc3\xa9.t.test", "a/b.t.test", lab64, long254,
	    NULL };
	size_t i;

	memset(lab64, 'a', 64);
	strcpy(lab64 + 64, ".t.test");
	/* 4 labels of 60, then t.test: 4 * 61 + 6 = 250 bytes. */
	for (i = 0; i < 4; i++) {
		memset(ok253 + i * 61, 'b', 60);
		ok253[i * 61 + 60] = '.';
	}
	strcpy(ok253 + 4 * 61, "t.test");
	assert_int_equal(strlen(ok253), 250);
	memcpy(long254, "ccc.", 4);				/* 254 */
	memcpy(long254 + 4, ok253, strlen(ok253) + 1);
	memmove(ok253 + 3, ok253, strlen(ok253) + 1);		/* 253 */
	memcpy(ok253, "bbb", 3);
	assert_int_equal(strlen(ok253), 253);
	assert_int_equal(strlen(long254), 254);

	for (i = 0; i < nitems(bad); i++) {
		mx_wait(d, bad[i], &r);
		assert_int_equal(r.st, DNS_BADNAME);
		addr_wait(d, bad[i], AF_UNSPEC, &r);
		assert_int_equal(r.st, DNS_BADNAME);
		txt_wait(d, bad[i], &r);
		assert_int_equal(r.st, DNS_BADNAME);
	}
	dns_stats(d, &st);
	assert_int_equal(st.queries, 0);

	/* At the limits, a name is asked (and does not exist). */
	addr_wait(d, ok253, AF_INET, &r);
	assert_int_equal(r.st, DNS_NXDOMAIN);
	memset(lab64, 'a', 63);
	strcpy(lab64 + 63, ".t.test.");
	txt_wait(d, lab64, &r);
	assert_int_equal(r.st, DNS_NXDOMAIN);
	txt_wait(d, "_dmarc.t.test", &r);
	assert_int_equal(r.st, DNS_NXDOMAIN);
	res_clear(&r);
	dns_free(d);
}

/* -- temporary failures ---------------------------------------------------- */

static void
test_tempfail(void **state)
{
	struct dns *d;
	struct dns_stats st;
	struct res r = { 0 };
	int64_t ms;

	/* Nobody answers: TEMPFAIL after the tries (c-ares doubles the
	 * timeout at every round: 200 + 400 ms). */
	d = mk(srv_silent, 200, 2, 0, 0);
	res_clear(&r);
	dns_lookup_mx(d, "t.test", mx_cb, &r);
	ms = run(1, 5000);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.st, DNS_TEMPFAIL);
	assert_true(ms >= 150);
	assert_true(ms < 2000);
	dns_stats(d, &st);
	assert_int_equal(st.cache_entries, 0);
	dns_free(d);

	/* Connection refused (ICMP port unreachable on loopback). */
	d = mk(srv_refused, 1000, 2, 0, 0);
	res_clear(&r);
	dns_lookup_addr(d, "t.test", AF_UNSPEC, addr_cb, &r);
	ms = run(1, 5000);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.st, DNS_TEMPFAIL);
	assert_true(ms < 1000);
	dns_free(d);

	/* REFUSED (a name outside dnsmasq's zone); not cached. */
	d = mk_default(srv_auth);
	mx_wait(d, "example.invalid", &r);
	assert_int_equal(r.st, DNS_TEMPFAIL);
	mx_wait(d, "example.invalid", &r);
	assert_int_equal(r.st, DNS_TEMPFAIL);
	dns_stats(d, &st);
	assert_int_equal(st.queries, 2);
	assert_int_equal(st.cache_entries, 0);
	dns_free(d);

	/* SERVFAIL. */
	d = mk_default(srv_fake);
	txt_wait(d, "servfail.fake", &r);
	assert_int_equal(r.st, DNS_TEMPFAIL);
	res_clear(&r);
	dns_free(d);
}

/* -- cache ----------------------------------------------------------------- */

static void
test_cache(void **state)
{
	struct dns *d = mk_default(srv_auth);
	struct dns_stats st;
	struct res r = { 0 }, r2 = { 0 };

	addr_wait(d, "mx1.t.test", AF_INET, &r);
	addr_wait(d, "mx1.t.test", AF_INET, &r);
	assert_int_equal(r.st, DNS_OK);
	assert_ip(&r.addr[0], "127.0.0.2");
	dns_stats(d, &st);
	assert_int_equal(st.queries, 1);
	assert_int_equal(st.cache_hits, 1);
	assert_int_equal(st.cache_entries, 1);

	/* Negative answers are cached too. */
	mx_wait(d, "nx.t.test", &r);
	mx_wait(d, "nx.t.test", &r);
	assert_int_equal(r.st, DNS_NXDOMAIN);
	dns_stats(d, &st);
	assert_int_equal(st.queries, 2);
	assert_int_equal(st.cache_entries, 2);

	/* Two lookups at once share one query. */
	res_clear(&r);
	res_clear(&r2);
	dns_lookup_txt(d, "txt.t.test", txt_cb, &r);
	dns_lookup_txt(d, "TXT.t.test", txt_cb, &r2);
	run(2, 5000);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r2.calls, 1);
	assert_int_equal(r.st, DNS_OK);
	assert_int_equal(r2.st, DNS_OK);
	assert_int_equal(r2.n, 2);
	dns_stats(d, &st);
	assert_int_equal(st.queries, 3);
	res_clear(&r);
	res_clear(&r2);
	dns_free(d);

	/* Bounded: the least recently used entry goes. */
	d = mk(srv_auth, 1000, 2, 2, 0);
	addr_wait(d, "mx1.t.test", AF_INET, &r);
	addr_wait(d, "imp.t.test", AF_INET, &r);
	addr_wait(d, "mx1.t.test", AF_INET, &r);	/* hit, now newest */
	addr_wait(d, "multi.t.test", AF_INET, &r);	/* evicts imp */
	dns_stats(d, &st);
	assert_int_equal(st.cache_entries, 2);
	assert_int_equal(st.queries, 3);
	addr_wait(d, "mx1.t.test", AF_INET, &r);
	addr_wait(d, "multi.t.test", AF_INET, &r);
	dns_stats(d, &st);
	assert_int_equal(st.queries, 3);
	addr_wait(d, "imp.t.test", AF_INET, &r);
	dns_stats(d, &st);
	assert_int_equal(st.queries, 4);
	assert_int_equal(st.cache_entries, 2);
	res_clear(&r);
	dns_free(d);
}

static void
test_ttl_expiry(void **state)
{
	struct dns *l = mk_default(srv_local);
	struct dns *n = mk(srv_auth, 1000, 2, 0, 1);
	struct dns *f = mk_default(srv_fake);
	struct dns_stats st;
	struct res r = { 0 };
	int before;

	/* TTL 1 s positive, and a negative answer capped to 1 s. */
	addr_wait(l, "short.s.test", AF_INET, &r);
	assert_int_equal(r.st, DNS_OK);
	assert_int_equal(r.ttl, 1);
	addr_wait(l, "short.s.test", AF_INET, &r);
	mx_wait(n, "nx.t.test", &r);
	assert_int_equal(r.st, DNS_NXDOMAIN);
	assert_int_equal(r.ttl, 1);
	mx_wait(n, "nx.t.test", &r);
	dns_stats(l, &st);
	assert_int_equal(st.queries, 1);
	dns_stats(n, &st);
	assert_int_equal(st.queries, 1);

	/* TTL 0 and a TTL with the top bit set (RFC 2181: zero) are not
	 * cached. */
	addr_wait(l, "zero.s.test", AF_INET, &r);
	assert_int_equal(r.st, DNS_OK);
	assert_int_equal(r.ttl, 0);
	addr_wait(l, "zero.s.test", AF_INET, &r);
	dns_stats(l, &st);
	assert_int_equal(st.queries, 3);
	before = fake_queries;
	addr_wait(f, "ttlhi.fake", AF_INET, &r);
	assert_int_equal(r.st, DNS_OK);
	assert_int_equal(r.ttl, 0);
	assert_ip(&r.addr[0], "127.0.0.9");
	addr_wait(f, "ttlhi.fake", AF_INET, &r);
	assert_int_equal(fake_queries, before + 2);

	run_for(1100);
	addr_wait(l, "short.s.test", AF_INET, &r);
	assert_int_equal(r.st, DNS_OK);
	mx_wait(n, "nx.t.test", &r);
	assert_int_equal(r.st, DNS_NXDOMAIN);
	dns_stats(l, &st);
	assert_int_equal(st.queries, 4);
	dns_stats(n, &st);
	assert_int_equal(st.queries, 2);
	res_clear(&r);
	dns_free(l);
	dns_free(n);
	dns_free(f);
}

/* -- cancel and free ------------------------------------------------------- */

static void
test_cancel(void **state)
{
	struct dns *d;
	struct dns_stats st;
	struct res r = { 0 }, r2 = { 0 };
	struct dns_req *q;

	/* Before the query is even sent. */
	d = mk_default(srv_auth);
	q = dns_lookup_mx(d, "t.test", mx_cb, &r);
	dns_cancel(q);
	run_for(100);
	assert_int_equal(r.calls, 0);
	dns_stats(d, &st);
	assert_int_equal(st.queries, 0);

	/* In flight: the reply arrives after the cancel and only fills the
	 * cache. */
	q = dns_lookup_mx(d, "t.test", mx_cb, &r);
	send_queued();
	dns_stats(d, &st);
	assert_int_equal(st.queries, 1);
	dns_cancel(q);
	run_for(300);
	assert_int_equal(r.calls, 0);
	mx_wait(d, "t.test", &r);
	assert_int_equal(r.st, DNS_OK);
	dns_stats(d, &st);
	assert_int_equal(st.queries, 1);
	assert_int_equal(st.cache_hits, 1);

	/* A cache hit, cancelled before the loop turns. */
	res_clear(&r);
	q = dns_lookup_mx(d, "t.test", mx_cb, &r);
	dns_cancel(q);
	run_for(50);
	assert_int_equal(r.calls, 0);

	/* Two requests share a query; cancelling one leaves the other. */
	q = dns_lookup_addr(d, "mx1.t.test", AF_UNSPEC, addr_cb, &r);
	dns_lookup_addr(d, "mx1.t.test", AF_UNSPEC, addr_cb, &r2);
	send_queued();
	dns_cancel(q);
	run(1, 5000);
	assert_int_equal(r.calls, 0);
	assert_int_equal(r2.calls, 1);
	assert_int_equal(r2.n, 2);
	dns_stats(d, &st);
	assert_int_equal(st.queries, 3);
	dns_free(d);

	/* Nobody answers: the query times out after the cancel. */
	d = mk(srv_silent, 100, 1, 0, 0);
	q = dns_lookup_txt(d, "t.test", txt_cb, &r);
	send_queued();
	dns_cancel(q);
	run_for(400);
	assert_int_equal(r.calls, 0);
	dns_free(d);
	res_clear(&r);
	res_clear(&r2);
}

static void
test_free_pending(void **state)
{
	struct dns *d;
	struct res r[4] = { 0 };
	size_t i;

	/* Requests in flight at a silent server, and one not yet asked. */
	d = mk(srv_silent, 200, 2, 0, 0);
	dns_lookup_mx(d, "t.test", mx_cb, &r[0]);
	dns_lookup_addr(d, "t.test", AF_UNSPEC, addr_cb, &r[1]);
	dns_lookup_txt(d, "t.test", txt_cb, &r[2]);
	send_queued();
	dns_lookup_mx(d, "imp.t.test", mx_cb, &r[3]);
	dns_free(d);
	run_for(300);
	for (i = 0; i < nitems(r); i++)
		assert_int_equal(r[i].calls, 0);

	/* dns_free() from a callback, with another request in flight and
	 * one queued behind it. */
	d = mk_default(srv_auth);
	addr_wait(d, "mx1.t.test", AF_INET, &r[0]);
	res_clear(&r[0]);
	dns_lookup_mx(d, "t.test", mx_cb, &r[1]);
	send_queued();		/* MX query sent */
	r[0].free_in_cb = d;
	dns_lookup_addr(d, "mx1.t.test", AF_INET, addr_cb, &r[0]); /* hit */
	dns_lookup_txt(d, "txt.t.test", txt_cb, &r[2]);
	run_for(300);
	assert_int_equal(r[0].calls, 1);
	assert_int_equal(r[0].st, DNS_OK);
	assert_int_equal(r[1].calls, 0);
	assert_int_equal(r[2].calls, 0);
	for (i = 0; i < nitems(r); i++)
		res_clear(&r[i]);

	/* A channel with nothing pending, and NULL. */
	dns_free(mk_default(srv_auth));
	dns_free(NULL);
}

static void
test_opts(void **state)
{
	struct dns_opts o = { .servers = "not an address" };
	char err[256] = "";

	assert_null(dns_new(base, &o, err, sizeof(err)));
	assert_true(strlen(err) > 0);
	o.servers = "127.0.0.1:53";
	o.tries = 1000;
	assert_null(dns_new(base, &o, err, sizeof(err)));
	assert_string_equal(dns_status_str(DNS_NULLMX), "nullmx");
	assert_string_equal(dns_status_str(DNS_TEMPFAIL), "tempfail");
}

/* -- the servers ----------------------------------------------------------- */

/* A port free for both UDP and TCP on 127.0.0.1; with keep, the bound UDP
 * socket is returned in *fd. */
static int
free_port(int *fd)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int u, t, port, tries;

	for (tries = 0; tries < 50; tries++) {
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		u = socket(AF_INET, SOCK_DGRAM, 0);
		assert_true(u >= 0);
		assert_int_equal(bind(u, (struct sockaddr *)&sin, sizeof(sin)), 0);
		assert_int_equal(getsockname(u, (struct sockaddr *)&sin, &sl), 0);
		port = ntohs(sin.sin_port);
		t = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(t >= 0);
		if (bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0) {
			close(t);
			if (fd != NULL)
				*fd = u;
			else
				close(u);
			return port;
		}
		close(t);
		close(u);
	}
	fail_msg("no free port on 127.0.0.1");
	return -1;
}

/* A query for probe.invalid: any reply means the server is up. */
static bool
dns_probe(int port)
{
	static const unsigned char q[] = {
		0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
		5, 'p', 'r', 'o', 'b', 'e', 7, 'i', 'n', 'v', 'a', 'l', 'i',
		'd', 0, 0, 1, 0, 1 };
	struct sockaddr_in sin;
	struct pollfd pfd;
	unsigned char buf[512];
	bool ok = false;
	int s;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	if ((s = socket(AF_INET, SOCK_DGRAM, 0)) == -1)
		return false;
	if (connect(s, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    send(s, q, sizeof(q), 0) == (ssize_t)sizeof(q)) {
		pfd.fd = s;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 100) == 1 && recv(s, buf, sizeof(buf), 0) >= 12)
			ok = true;
	}
	close(s);
	return ok;
}

static pid_t
dnsmasq_start(int port, const char *const *data)
{
	char portarg[32], userarg[128], grouparg[128];
	const char *argv[64];
	struct passwd *pw;
	struct group *gr;
	size_t n = 0, i;
	pid_t pid, parent = getpid();
	int status, waited;

	argv[n++] = DNSMASQ;
	argv[n++] = "--no-resolv";
	argv[n++] = "--no-hosts";
	argv[n++] = "--no-daemon";
	argv[n++] = "--conf-file=/dev/null";
	argv[n++] = "--bind-interfaces";
	argv[n++] = "--listen-address=127.0.0.1";
	snprintf(portarg, sizeof(portarg), "--port=%d", port);
	argv[n++] = portarg;
	/* As root dnsmasq drops to user "dnsmasq", which dnsmasq-base does
	 * not create: stay who we are. */
	if (geteuid() == 0 && (pw = getpwuid(geteuid())) != NULL &&
	    (gr = getgrgid(getegid())) != NULL) {
		snprintf(userarg, sizeof(userarg), "--user=%s", pw->pw_name);
		snprintf(grouparg, sizeof(grouparg), "--group=%s", gr->gr_name);
		argv[n++] = userarg;
		argv[n++] = grouparg;
	}
	for (i = 0; data[i] != NULL; i++) {
		assert_true(n < nitems(argv) - 1);
		argv[n++] = data[i];
	}
	argv[n] = NULL;

	if ((pid = fork()) == -1)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		if (null >= 0)
			dup2(null, STDOUT_FILENO);
		execv(DNSMASQ, (char *const *)argv);
		_exit(127);
	}
	for (waited = 0; waited < 5000; waited += 50) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			fail_msg("dnsmasq exited at start (status %d)", status);
		if (dns_probe(port))
			return pid;
		usleep(50 * 1000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	fail_msg("dnsmasq did not answer on 127.0.0.1:%d", port);
	return -1;
}

static void
dnsmasq_stop(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGTERM);
	waitpid(*pid, NULL, 0);
	*pid = -1;
}

/*
 * The in-process responder: SERVFAIL for servfail.fake, 40 MX records for
 * many.fake, an A record with TTL 0xffffffff for ttlhi.fake, NXDOMAIN for
 * anything else.  Replies echo the question; owner names are compression
 * pointers to it.
 */
static size_t
fake_rr(unsigned char *p, uint16_t type, uint32_t ttl, const void *rd,
    uint16_t rdlen)
{
	p[0] = 0xc0;
	p[1] = 12;
	p[2] = (unsigned char)(type >> 8);
	p[3] = (unsigned char)type;
	p[4] = 0;
	p[5] = 1;
	p[6] = (unsigned char)(ttl >> 24);
	p[7] = (unsigned char)(ttl >> 16);
	p[8] = (unsigned char)(ttl >> 8);
	p[9] = (unsigned char)ttl;
	p[10] = (unsigned char)(rdlen >> 8);
	p[11] = (unsigned char)rdlen;
	memcpy(p + 12, rd, rdlen);
	return 12 + (size_t)rdlen;
}

static void
fake_cb(evutil_socket_t fd, short what, void *arg)
{
	unsigned char q[1500], out[2048], rd[64];
	char name[256];
	struct sockaddr_storage from;
	socklen_t fl = sizeof(from);
	size_t off = 12, len, nl = 0, an = 0;
	uint16_t qtype;
	int rcode = 0, i;
	ssize_t n;

	n = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
	if (n < 12)
		return;
	fake_queries++;
	while (off < (size_t)n && q[off] != 0 && q[off] < 64) {
		if (off + 1 + q[off] > (size_t)n || nl + q[off] + 1 >= sizeof(name))
			return;
		if (nl > 0)
			name[nl++] = '.';
		memcpy(name + nl, q + off + 1, q[off]);
		nl += q[off];
		off += 1 + q[off];
	}
	name[nl] = '\0';
	if (off + 5 > (size_t)n)
		return;
	qtype = (uint16_t)(q[off + 1] << 8 | q[off + 2]);
	off += 5;
	memcpy(out, q, off);
	len = off;
	if (strcmp(name, "servfail.fake") == 0)
		rcode = 2;
	else if (strcmp(name, "many.fake") == 0 && qtype == 15) {
		for (i = 0; i < 40; i++) {
			int pref = 100 - i, l;

			rd[0] = 0;
			rd[1] = (unsigned char)pref;
			l = snprintf((char *)rd + 3, sizeof(rd) - 3, "m%d", i);
			rd[2] = (unsigned char)l;
			rd[3 + l] = 0xc0;
			rd[4 + l] = 12;
			len += fake_rr(out + len, 15, 60, rd, (uint16_t)(5 + l));
			an++;
		}
	} else if (strcmp(name, "ttlhi.fake") == 0 && qtype == 1) {
		static const unsigned char ip[4] = { 127, 0, 0, 9 };

		len += fake_rr(out + len, 1, 0xffffffffu, ip, 4);
		an++;
	} else
		rcode = 3;
	out[2] = (unsigned char)(0x84 | (q[2] & 0x01));	/* QR AA RD */
	out[3] = (unsigned char)(0x80 | rcode);		/* RA */
	out[4] = 0;
	out[5] = 1;
	out[6] = (unsigned char)(an >> 8);
	out[7] = (unsigned char)an;
	memset(out + 8, 0, 4);
	(void)sendto(fd, out, len, 0, (struct sockaddr *)&from, fl);
}

static int
setup(void **state)
{
	int port, refused;

	if (access(DNSMASQ, X_OK) != 0) {
		print_error("test_dns needs dnsmasq (%s): apt-get install "
		    "dnsmasq-base, or run `make test`, which installs it\n",
		    DNSMASQ);
		return -1;
	}
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	assert_non_null(base);

	port = free_port(NULL);
	auth_pid = dnsmasq_start(port, auth_data);
	snprintf(srv_auth, sizeof(srv_auth), "127.0.0.1:%d", port);
	port = free_port(NULL);
	local_pid = dnsmasq_start(port, local_data);
	snprintf(srv_local, sizeof(srv_local), "127.0.0.1:%d", port);

	port = free_port(&silent_fd);		/* bound, never read */
	snprintf(srv_silent, sizeof(srv_silent), "127.0.0.1:%d", port);
	refused = free_port(NULL);		/* closed */
	snprintf(srv_refused, sizeof(srv_refused), "127.0.0.1:%d", refused);
	port = free_port(&fake_fd);
	snprintf(srv_fake, sizeof(srv_fake), "127.0.0.1:%d", port);
	evutil_make_socket_nonblocking(fake_fd);
	fake_ev = event_new(base, fake_fd, EV_READ | EV_PERSIST, fake_cb, NULL);
	assert_non_null(fake_ev);
	assert_int_equal(event_add(fake_ev, NULL), 0);
	return 0;
}

static int
teardown(void **state)
{
	dnsmasq_stop(&auth_pid);
	dnsmasq_stop(&local_pid);
	if (fake_ev != NULL)
		event_free(fake_ev);
	if (fake_fd >= 0)
		close(fake_fd);
	if (silent_fd >= 0)
		close(silent_fd);
	if (base != NULL)
		event_base_free(base);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mx_sorted),
		cmocka_unit_test(test_mx_shuffle),
		cmocka_unit_test(test_mx_implicit),
		cmocka_unit_test(test_mx_null),
		cmocka_unit_test(test_mx_many),
		cmocka_unit_test(test_nxdomain),
		cmocka_unit_test(test_addr),
		cmocka_unit_test(test_txt),
		cmocka_unit_test(test_ptr),
		cmocka_unit_test(test_badname),
		cmocka_unit_test(test_tempfail),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_ttl_expiry),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_free_pending),
		cmocka_unit_test(test_opts),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

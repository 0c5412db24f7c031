/*
 * dns.h - asynchronous DNS for the delivery engine (and later SPF, DKIM,
 * DMARC), on c-ares driven by the libevent loop.
 *
 * What it does: MX lookups with the RFC 5321 5.1 rules (no MX records ->
 * the domain itself is the implicit MX; a null MX (RFC 7505) -> permanent
 * failure), address (A/AAAA), TXT and PTR (reverse) lookups, and a cache that respects
 * record TTLs (negative answers cached per RFC 2308, bounded in size).
 * The resolver address and port are configurable so tests can run their
 * own DNS server on loopback.
 *
 * Must never: call a callback synchronously from inside the lookup call
 * (callers may hold state they have not finished setting up); call a
 * cancelled request's callback; trust a reply beyond its stated bounds.
 */
#ifndef OMBUD_DNS_H
#define OMBUD_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct dns;
struct dns_req;

#define DNS_NAME_MAX	255
#define DNS_MAX_MX	32
#define DNS_MAX_ADDR	32
#define DNS_MAX_TXT	32	/* records per answer */
#define DNS_TXT_MAX	4096	/* bytes per record (strings joined) */
#define DNS_MAX_PTR	16	/* names per PTR answer */

enum dns_status {
	DNS_OK = 0,
	DNS_NXDOMAIN,	/* the name does not exist: permanent */
	DNS_NODATA,	/* the name exists, no records of the type */
	DNS_NULLMX,	/* RFC 7505: the domain accepts no mail: permanent */
	DNS_TEMPFAIL,	/* timeout, SERVFAIL, refused...: try again later */
	DNS_BADNAME,	/* not a valid domain name: permanent */
};

const char *dns_status_str(enum dns_status st);

struct dns_mx {
	char		host[DNS_NAME_MAX + 1];
	unsigned	pref;
};

struct dns_mx_result {
	enum dns_status	status;
	bool		implicit;	/* no MX: host is the domain itself */
	size_t		nmx;
	struct dns_mx	mx[DNS_MAX_MX];	/* sorted by preference; equal
					   preferences in random order */
	uint32_t	ttl;
};

struct dns_addr_result {
	enum dns_status		status;
	size_t			naddr;
	struct sockaddr_storage	addr[DNS_MAX_ADDR];	/* port 0 */
	uint32_t		ttl;
};

struct dns_txt_result {
	enum dns_status	status;
	size_t		ntxt;
	char		*txt[DNS_MAX_TXT];	/* NUL-terminated, strings of
						   one record concatenated */
	size_t		len[DNS_MAX_TXT];
	uint32_t	ttl;
};

struct dns_ptr_result {
	enum dns_status	status;
	size_t		nname;
	char		*name[DNS_MAX_PTR];	/* validated, lowercase, no
						   trailing dot */
	uint32_t	ttl;
};

struct dns_opts {
	const char	*servers;	/* "127.0.0.1:5353,[::1]:53"; NULL or
					   "" = /etc/resolv.conf */
	unsigned	timeout_ms;	/* per try; 0 = 2000 */
	unsigned	tries;		/* 0 = 3 */
	size_t		cache_max;	/* entries; 0 = 100000 */
	uint32_t	negative_ttl_max; /* seconds; 0 = 3600 */
};

struct dns *dns_new(struct event_base *base, const struct dns_opts *opts,
    char *err, size_t errlen);
void dns_free(struct dns *d);	/* cancels every pending request */

typedef void (*dns_mx_cb)(void *arg, const struct dns_mx_result *r);
typedef void (*dns_addr_cb)(void *arg, const struct dns_addr_result *r);
typedef void (*dns_txt_cb)(void *arg, const struct dns_txt_result *r);
typedef void (*dns_ptr_cb)(void *arg, const struct dns_ptr_result *r);

/* The result is only valid during the callback.  The returned handle is
 * valid until the callback runs or dns_cancel() is called. */
struct dns_req *dns_lookup_mx(struct dns *d, const char *domain,
    dns_mx_cb cb, void *arg);
/* family: AF_INET, AF_INET6 or AF_UNSPEC (both, IPv6 first). */
struct dns_req *dns_lookup_addr(struct dns *d, const char *host, int family,
    dns_addr_cb cb, void *arg);
struct dns_req *dns_lookup_txt(struct dns *d, const char *name,
    dns_txt_cb cb, void *arg);

/*
 * Names are host names by default: labels of letters, digits, '-' and
 * '_' (anything else is DNS_BADNAME, and MX exchanges that are not host
 * names are left out).  DNS_F_ANYNAME is for names that come from DNS
 * data rather than from mail routing, such as SPF domain-specs, which
 * may hold any visible character (RFC 7208 7.1): a label may then hold
 * any printable ASCII byte but a backslash, and so may the MX exchanges
 * returned.  Labels are 1..63 octets and names 253 octets either way.
 */
#define DNS_F_ANYNAME	0x01u
struct dns_req *dns_lookup_mx_flags(struct dns *d, const char *domain,
    unsigned flags, dns_mx_cb cb, void *arg);
struct dns_req *dns_lookup_addr_flags(struct dns *d, const char *host,
    int family, unsigned flags, dns_addr_cb cb, void *arg);
struct dns_req *dns_lookup_txt_flags(struct dns *d, const char *name,
    unsigned flags, dns_txt_cb cb, void *arg);

/* The reverse name of addr (AF_INET: in-addr.arpa, AF_INET6: ip6.arpa,
 * nibbles; an IPv4-mapped address is asked as IPv6: map it first if that
 * is not wanted). */
struct dns_req *dns_lookup_ptr(struct dns *d, const struct sockaddr *addr,
    dns_ptr_cb cb, void *arg);
void dns_cancel(struct dns_req *r);
/* The loop the resolver runs on (for callers that must defer work). */
struct event_base *dns_base(const struct dns *d);

/* Cache statistics, for tests and `ombud` diagnostics. */
struct dns_stats {
	uint64_t	queries;	/* sent to the server */
	uint64_t	cache_hits;
	size_t		cache_entries;
};
void dns_stats(const struct dns *d, struct dns_stats *out);

#endif

/*
 * dmarc.h - DMARC (RFC 7489): policy records, organizational domains,
 * identifier alignment and the evaluation of a message's SPF and DKIM
 * results, plus the asynchronous policy discovery on the dns layer.
 *
 * What it does: parses a DMARC record (section 6.3/6.4 grammar, bounded),
 * finds the organizational domain of a name with the Public Suffix List
 * (libpsl; section 3.2), decides relaxed/strict alignment (3.1), looks up
 * _dmarc.<From domain> and, when there is none, _dmarc.<org domain>
 * (6.6.3), and computes pass/fail and the policy that applies (p or sp,
 * pct sampling; 6.6.4).
 *
 * Must never: call a lookup's callback synchronously or after
 * dmarc_cancel(); trust any length or count in a record or a name; report
 * "pass" without an aligned SPF or DKIM pass.
 */
#ifndef OMBUD_DMARC_H
#define OMBUD_DMARC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/dkim.h"
#include "auth/spf.h"

#define DMARC_RECORD_MAX	4096	/* bytes of a record */
#define DMARC_MAX_TAGS		32	/* tag=value pairs of a record */
#define DMARC_MAX_URIS		4	/* kept per rua / ruf; more dropped */
#define DMARC_URI_MAX		256	/* bytes of one URI (without !size) */
#define DMARC_DOMAIN_MAX	253

enum dmarc_policy {
	DMARC_POLICY_NONE = 0,
	DMARC_POLICY_QUARANTINE,
	DMARC_POLICY_REJECT,
};

enum dmarc_align {
	DMARC_ALIGN_RELAXED = 0,	/* the default */
	DMARC_ALIGN_STRICT,
};

/* fo= options (bits) */
#define DMARC_FO_0	0x01	/* the default */
#define DMARC_FO_1	0x02
#define DMARC_FO_D	0x04
#define DMARC_FO_S	0x08

struct dmarc_uri {
	char		uri[DMARC_URI_MAX + 1];	/* as written */
	uint64_t	max_size;		/* "!10m"; 0 = no limit */
};

struct dmarc_record {
	enum dmarc_policy p;
	enum dmarc_policy sp;		/* p when there is no sp= */
	bool		 sp_set;
	bool		 p_fallback;	/* p= missing/invalid or sp= invalid,
					   but a valid rua: p=none (6.6.3) */
	enum dmarc_align adkim, aspf;
	unsigned	 pct;		/* 0..100, default 100 */
	uint32_t	 ri;		/* seconds, default 86400 */
	unsigned	 fo;		/* DMARC_FO_*, default DMARC_FO_0 */
	bool		 rf_afrf;	/* rf= names afrf (the default) */
	size_t		 nrua, nruf;
	struct dmarc_uri rua[DMARC_MAX_URIS];
	struct dmarc_uri ruf[DMARC_MAX_URIS];
	size_t		 rua_dropped, ruf_dropped;	/* invalid or beyond
							   DMARC_MAX_URIS */
};

/*
 * Parse a DMARC record of len bytes.  0, or -1 with err set when txt is
 * no valid DMARC record (then no DMARC processing applies).
 */
int dmarc_parse(const char *txt, size_t len, struct dmarc_record *out,
    char *err, size_t errlen);

/* Whether a TXT record is a DMARC record at all ("v=DMARC1" first). */
bool dmarc_is_record(const char *txt, size_t len);

/*
 * The organizational domain of a name (RFC 7489 3.2): the public suffix
 * (longest PSL match, unlisted TLDs as "*") plus one label, in lowercase
 * and in the input's form (U-labels stay UTF-8, A-labels stay ASCII); a
 * trailing dot is ignored.  0, or -1 when the name is a public suffix
 * itself, no valid name, or out is too small.
 */
int dmarc_org_domain(const char *domain, char *out, size_t outlen);

/*
 * Identifier alignment (3.1): strict = the same name, relaxed = the same
 * organizational domain.  Case-insensitive, trailing dot ignored, U-labels
 * compared as A-labels.
 */
bool dmarc_aligned(const char *from_domain, const char *other_domain,
    enum dmarc_align mode);

/* Policy discovery (6.6.3). */
enum dmarc_lookup_status {
	DMARC_LOOKUP_FOUND,
	DMARC_LOOKUP_NONE,	/* no record, several, or an invalid one */
	DMARC_LOOKUP_TEMPERROR,	/* DNS trouble: try again later */
};

struct dmarc_lookup_result {
	enum dmarc_lookup_status status;
	struct dmarc_record	 rec;		/* when FOUND */
	char			 domain[DMARC_DOMAIN_MAX + 1];	/* where the
						   record was (or was looked
						   for last) */
	bool			 at_org;	/* found at the organizational
						   domain, not the From domain */
	char			 reason[512];
};

struct dns;
struct dmarc_req;
typedef void (*dmarc_lookup_cb)(void *arg,
    const struct dmarc_lookup_result *r);

/* The result is valid during the callback only. */
struct dmarc_req *dmarc_lookup(struct dns *d, const char *from_domain,
    dmarc_lookup_cb cb, void *arg);
void dmarc_cancel(struct dmarc_req *r);

/* Evaluation (4.2, 6.6.2, 6.6.4). */
enum dmarc_result {
	DMARC_RESULT_NONE,	/* no policy */
	DMARC_RESULT_PASS,
	DMARC_RESULT_FAIL,
	DMARC_RESULT_TEMPERROR,	/* the policy could not be looked up */
};

struct dmarc_verdict {
	enum dmarc_result result;
	bool		  spf_aligned;	/* SPF passed and aligned */
	bool		  dkim_aligned;	/* a DKIM pass aligned */
	char		  dkim_domain[DMARC_DOMAIN_MAX + 1];	/* its d= */
	enum dmarc_policy requested;	/* p, or sp for a subdomain */
	bool		  subdomain;	/* the record's sp applied */
	bool		  sampled_out;	/* pct spared this message: the
					   policy is one step milder */
	enum dmarc_policy policy;	/* what to do (none on pass) */
};

struct dmarc_auth {
	enum spf_result		 spf;
	const char		*spf_domain;	/* MAIL FROM domain (or HELO
						   for a null sender) */
	const struct dkim_result *dkim;
	size_t			 ndkim;
};

/*
 * from_domain: the RFC 5322.From domain; lr: its policy discovery;
 * sample: a number in 0..99 (dmarc_sample()) that pct is compared with.
 */
void dmarc_evaluate(const char *from_domain,
    const struct dmarc_lookup_result *lr, const struct dmarc_auth *auth,
    unsigned sample, struct dmarc_verdict *out);
unsigned dmarc_sample(void);

const char *dmarc_policy_str(enum dmarc_policy p);
const char *dmarc_result_str(enum dmarc_result r);

#endif

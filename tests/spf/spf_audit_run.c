/*
 * spf_audit_run.c - runs spf_audit() for the audit test (audit.py).
 *
 * What it does: `spf_audit_run SERVER DOMAIN INCLUDE [IP...]` audits
 * DOMAIN against the platform include INCLUDE ("" for none) with the
 * egress addresses IP..., asking only the DNS server SERVER
 * ("127.0.0.1:port"), and prints the struct spf_audit as one JSON
 * object.  A second audit is started and cancelled at once: its
 * callback must never run.
 *
 * Must never: talk to a DNS server other than the one it is given.
 */
#include "auth/spf.h"
#include "dns/dns.h"

#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

static int ndone;

static void
run_cb(void *arg, const struct spf_audit *a)
{
	json_t *j, *eg, *fi;
	char ip[INET6_ADDRSTRLEN], *s;
	size_t i;

	if (arg != NULL) {
		fprintf(stderr, "a cancelled audit called back\n");
		exit(1);
	}
	eg = json_array();
	for (i = 0; i < a->negress; i++) {
		const struct sockaddr_storage *ss = &a->egress[i].addr;

		inet_ntop(ss->ss_family, ss->ss_family == AF_INET ?
		    (const void *)&((const struct sockaddr_in *)
		    (const void *)ss)->sin_addr : (const void *)
		    &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr,
		    ip, sizeof(ip));
		json_array_append_new(eg, json_pack("{s:s, s:s, s:s}", "ip",
		    ip, "result", spf_result_str(a->egress[i].result),
		    "reason", a->egress[i].reason));
	}
	fi = json_array();
	for (i = 0; i < a->nfindings; i++)
		json_array_append_new(fi, json_string(a->findings[i]));
	j = json_pack("{s:s, s:i, s:s?, s:b, s:i, s:b, s:b, s:b, s:b, s:o, "
	    "s:o, s:b}", "domain", a->domain, "nrecords", (int)a->nrecords,
	    "record", a->record, "include_found", a->include_found,
	    "lookups", a->lookups, "lookups_partial", a->lookups_partial,
	    "all_pass", a->all_pass, "all_neutral", a->all_neutral,
	    "temperror", a->temperror, "egress", eg, "findings", fi,
	    "ok", a->ok);
	if (j == NULL || (s = json_dumps(j, JSON_COMPACT)) == NULL)
		exit(1);
	printf("%s\n", s);
	free(s);
	json_decref(j);
	ndone++;
}

int
main(int argc, char **argv)
{
	struct sockaddr_storage eg[SPF_AUDIT_EGRESS];
	struct dns_opts opts = { .timeout_ms = 300, .tries = 1 };
	struct event_base *base;
	struct dns *d;
	char err[256];
	int i, n = 0;

	if (argc < 4 || argc - 4 > SPF_AUDIT_EGRESS)
		return 2;
	for (i = 4; i < argc; i++, n++) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&eg[n];
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&eg[n];

		memset(&eg[n], 0, sizeof(eg[n]));
		if (inet_pton(AF_INET, argv[i], &s4->sin_addr) == 1)
			s4->sin_family = AF_INET;
		else if (inet_pton(AF_INET6, argv[i], &s6->sin6_addr) == 1)
			s6->sin6_family = AF_INET6;
		else
			return 2;
	}
	opts.servers = argv[1];
	if ((base = event_base_new()) == NULL)
		return 1;
	if ((d = dns_new(base, &opts, err, sizeof(err))) == NULL) {
		fprintf(stderr, "dns_new: %s\n", err);
		return 1;
	}
	spf_audit_cancel(spf_audit(d, argv[2], argv[3], eg, (size_t)n,
	    run_cb, &ndone));
	(void)spf_audit(d, argv[2], argv[3], eg, (size_t)n, run_cb, NULL);
	while (ndone == 0)
		event_base_loop(base, EVLOOP_ONCE);
	dns_free(d);
	event_base_free(base);
	return 0;
}

/*
 * spf_run.c - runs spf_check() for the RFC 7208 suite driver (rfc7208.py).
 *
 * What it does: argv[1] is the DNS server ("127.0.0.1:port"); each stdin
 * line "ip<TAB>mailfrom<TAB>helo" is checked with a fresh resolver (no
 * cache shared between cases) and answered with one line
 * "result<TAB>reason<TAB>exp".  An empty mailfrom checks the HELO
 * identity as postmaster@helo.
 *
 * Must never: talk to a DNS server other than the one it is given.
 */
#include "auth/spf.h"
#include "dns/dns.h"

#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

struct out {
	int	done;
};

static void
run_cb(void *arg, enum spf_result res, const char *reason, const char *exp)
{
	struct out *o = arg;

	printf("%s\t%s\t%s\n", spf_result_str(res), reason,
	    exp != NULL ? exp : "");
	fflush(stdout);
	o->done = 1;
}

int
main(int argc, char **argv)
{
	char line[2048], sender[1100], err[256];
	struct dns_opts opts = { .timeout_ms = 300, .tries = 1 };
	struct event_base *base;
	struct dns *d;
	struct out o;

	if (argc != 2)
		return 2;
	opts.servers = argv[1];
	base = event_base_new();
	if (base == NULL)
		return 1;
	while (fgets(line, sizeof(line), stdin) != NULL) {
		struct sockaddr_storage ss = { 0 };
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		char *ip = line, *from, *helo, *dom;

		line[strcspn(line, "\n")] = '\0';
		if ((from = strchr(ip, '\t')) == NULL)
			return 2;
		*from++ = '\0';
		if ((helo = strchr(from, '\t')) == NULL)
			return 2;
		*helo++ = '\0';
		if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1)
			s4->sin_family = AF_INET;
		else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1)
			s6->sin6_family = AF_INET6;
		else
			return 2;
		if (*from == '\0') {
			snprintf(sender, sizeof(sender), "postmaster@%s", helo);
			dom = helo;
		} else {
			snprintf(sender, sizeof(sender), "%s", from);
			dom = strrchr(from, '@');
			dom = dom != NULL ? dom + 1 : from;
		}
		if ((d = dns_new(base, &opts, err, sizeof(err))) == NULL) {
			fprintf(stderr, "dns_new: %s\n", err);
			return 1;
		}
		o.done = 0;
		(void)spf_check(d, (struct sockaddr *)&ss, dom, sender, helo,
		    run_cb, &o);
		while (!o.done)
			event_base_loop(base, EVLOOP_ONCE);
		dns_free(d);
	}
	event_base_free(base);
	return 0;
}

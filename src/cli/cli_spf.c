/*
 * cli_spf.c - `ombud spf check` and `ombud spf platform-record`.
 *
 * What it does: `check --ip IP --sender ADDR [--helo NAME] [--json]`
 * runs check_host() (RFC 7208) with the configuration's dns_servers (or
 * /etc/resolv.conf when there is no configuration) and prints the
 * result, the reason, the explanation of a fail, the DNS lookups counted
 * and a trace of the records and terms evaluated.  A sender that is
 * empty or has no domain is checked as the HELO identity,
 * postmaster@<helo> (RFC 7208 2.3, 2.4).  Exit 0 for any result, 2 for
 * usage, 1 when the check could not run.
 *
 * `platform-record [--json]` prints the TXT record(s) to publish at
 * spf_domain for the configured egress_addresses, split into character
 * strings of at most 255 octets, and the mechanism customers add.
 *
 * Must never: print DNS data unfiltered to a terminal (control bytes
 * become spaces); look anything up for platform-record.
 */
#include "cli/cli.h"
#include "cli/cli_store.h"
#include "auth/spf.h"
#include "conf/conf.h"
#include "dns/dns.h"
#include "common/log.h"
#include "common/util.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#define CLI_SPF_USAGE \
	"usage: ombud spf check --ip IP --sender ADDR [--helo NAME] " \
	"[--json] [-c FILE]\n" \
	"       ombud spf platform-record [--json] [-c FILE]\n"

#define CLI_SPF_ADDR_MAX	512	/* bytes of --sender */
#define CLI_SPF_TXT_STRING	255	/* octets of a TXT character-string */

struct cli_spf_run {
	bool	done;
	bool	json;
	char	identity[16];		/* "mailfrom" or "helo" */
	char	domain[DNS_NAME_MAX + 1];
	char	sender[CLI_SPF_ADDR_MAX + DNS_NAME_MAX + 16];
	char	ip[INET6_ADDRSTRLEN];
};

/* The options of a verb: "--name VALUE", "--name=VALUE", flags.  vals
 * gets each value in the order of names (NULL if not given); *json is
 * set by --json.  0, or 2 after a message. */
static int
cli_spf_opts(int argc, char **argv, const char *const *names, size_t n,
    const char **vals, bool *json)
{
	for (size_t j = 0; j < n; j++)
		vals[j] = NULL;
	*json = false;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *eq;
		size_t len, j;

		if (strcmp(arg, "--json") == 0) {
			*json = true;
			continue;
		}
		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
			printf("%s", CLI_SPF_USAGE);
			return 2;
		}
		if (strncmp(arg, "--", 2) != 0)
			goto bad;
		eq = strchr(arg, '=');
		len = eq != NULL ? (size_t)(eq - arg - 2) : strlen(arg + 2);
		for (j = 0; j < n; j++)
			if (strlen(names[j]) == len &&
			    strncmp(arg + 2, names[j], len) == 0)
				break;
		if (j == n || vals[j] != NULL)
			goto bad;
		if (eq != NULL)
			vals[j] = eq + 1;
		else if (i + 1 < argc)
			vals[j] = argv[++i];
		else
			goto bad;
	}
	return 0;
bad:
	fprintf(stderr, "ombud spf %s: unknown, repeated or incomplete "
	    "option\n%s", argv[0], CLI_SPF_USAGE);
	return 2;
}

/* The configuration at path; none (NULL, 0) when path is the default
 * and does not exist and optional.  0, or 1 after a message. */
static int
cli_spf_conf(const char *path, bool optional, struct conf **c)
{
	char err[1024];

	*c = NULL;
	if (optional && strcmp(path, CLI_DEFAULT_CONF) == 0 &&
	    access(path, F_OK) != 0)
		return 0;
	if ((*c = conf_load(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "ombud spf: %s\n", err);
		return 1;
	}
	return 0;
}

static void
cli_spf_done(void *arg, enum spf_result res, const char *reason,
    const char *exp, const struct spf_info *info)
{
	struct cli_spf_run *run = arg;
	json_t *j, *tr;
	const char *p, *nl;

	run->done = true;
	if (run->json) {
		tr = json_array();
		for (p = info->trace; *p != '\0'; p = nl + 1) {
			if ((nl = strchr(p, '\n')) == NULL)
				break;
			json_array_append_new(tr, json_stringn(p,
			    (size_t)(nl - p)));
		}
		j = json_pack("{s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:i, s:i, "
		    "s:o}", "result", spf_result_str(res), "reason", reason,
		    "explanation", cli_json_text(exp), "identity",
		    run->identity, "domain", run->domain, "sender",
		    run->sender, "ip", run->ip, "lookups", info->lookups,
		    "void_lookups", info->voids, "trace", tr);
		if (j == NULL)
			fatalx("spf check: json_pack");
		cli_json_print(j);
		return;
	}
	printf("result: %s\nreason: ", spf_result_str(res));
	cli_put_text(reason);
	if (exp != NULL) {
		printf("\nexplanation: ");
		cli_put_text(exp);
	}
	printf("\nidentity: %s %s (domain %s), client %s\n", run->identity,
	    run->sender, run->domain, run->ip);
	printf("lookups: %d of 10, void lookups: %d of 2\ntrace:\n",
	    info->lookups, info->voids);
	for (p = info->trace; *p != '\0'; p = nl + 1) {
		char line[1024];

		if ((nl = strchr(p, '\n')) == NULL)
			break;
		(void)snprintf(line, sizeof(line), "%.*s",
		    (int)(nl - p), p);
		printf("  ");
		cli_put_text(line);
		printf("\n");
	}
}

static int
cli_spf_check(const char *path, int argc, char **argv)
{
	static const char *const names[] = { "ip", "sender", "helo" };
	const char *v[3], *at;
	struct cli_spf_run run;
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	struct event_base *base = NULL;
	struct dns *d = NULL;
	struct conf *c = NULL;
	struct dns_opts dopts;
	char err[256];
	int rc;

	memset(&run, 0, sizeof(run));
	if ((rc = cli_spf_opts(argc, argv, names, 3, v, &run.json)) != 0)
		return rc;
	rc = 2;
	memset(&ss, 0, sizeof(ss));
	if (v[0] == NULL || v[1] == NULL) {
		fprintf(stderr, "ombud spf check: --ip and --sender are "
		    "needed (--sender '' for a HELO check)\n%s",
		    CLI_SPF_USAGE);
		goto fail;
	}
	if (inet_pton(AF_INET, v[0], &s4->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, v[0], &s6->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	else {
		fprintf(stderr, "ombud spf check: --ip: '%s' is not an IPv4 "
		    "or IPv6 address\n", v[0]);
		goto fail;
	}
	(void)inet_ntop(ss.ss_family, ss.ss_family == AF_INET ?
	    (void *)&s4->sin_addr : (void *)&s6->sin6_addr, run.ip,
	    sizeof(run.ip));
	if (strlen(v[1]) > CLI_SPF_ADDR_MAX || (v[2] != NULL &&
	    strlen(v[2]) > DNS_NAME_MAX)) {
		fprintf(stderr, "ombud spf check: --sender or --helo too "
		    "long\n");
		goto fail;
	}
	at = strrchr(v[1], '@');
	if (at != NULL && at[1] != '\0') {
		/* MAIL FROM; no local-part is "postmaster" (4.3). */
		(void)snprintf(run.identity, sizeof(run.identity),
		    "mailfrom");
		(void)snprintf(run.domain, sizeof(run.domain), "%s", at + 1);
		(void)snprintf(run.sender, sizeof(run.sender), "%s", v[1]);
	} else {
		/* A null reverse-path or no domain: the HELO identity. */
		if (v[2] == NULL || *v[2] == '\0') {
			fprintf(stderr, "ombud spf check: the sender has no "
			    "domain: --helo NAME is needed\n%s",
			    CLI_SPF_USAGE);
			goto fail;
		}
		(void)snprintf(run.identity, sizeof(run.identity), "helo");
		(void)snprintf(run.domain, sizeof(run.domain), "%s", v[2]);
		(void)snprintf(run.sender, sizeof(run.sender),
		    "postmaster@%s", v[2]);
	}
	rc = 1;
	if (cli_spf_conf(path, true, &c) != 0)
		goto fail;
	if ((base = event_base_new()) == NULL)
		fatalx("event_base_new");
	memset(&dopts, 0, sizeof(dopts));
	dopts.servers = c != NULL ? c->dns_servers : NULL;
	if ((d = dns_new(base, &dopts, err, sizeof(err))) == NULL) {
		fprintf(stderr, "ombud spf check: %s\n", err);
		goto fail;
	}
	(void)spf_check_info(d, (struct sockaddr *)&ss, run.domain,
	    run.sender, v[2] != NULL ? v[2] : "", cli_spf_done, &run);
	while (!run.done)
		if (event_base_loop(base, EVLOOP_ONCE) != 0)
			fatalx("spf check: the event loop stopped");
	rc = 0;
fail:
	if (d != NULL)
		dns_free(d);
	if (base != NULL)
		event_base_free(base);
	conf_free(c);
	return rc;
}

/* The mechanism of an egress network, host bits cleared. */
static void
cli_spf_mech(const struct cidr *n, char *out, size_t outlen)
{
	char a[INET6_ADDRSTRLEN];
	uint8_t b[16];
	unsigned max = n->family == AF_INET ? 32 : 128, i;

	memcpy(b, n->addr, sizeof(b));
	for (i = n->prefix; i < max; i++)
		b[i / 8] &= (uint8_t)~(0x80u >> (i % 8));
	(void)inet_ntop(n->family, b, a, sizeof(a));
	if (n->prefix == max)
		(void)snprintf(out, outlen, "%s:%s", n->family == AF_INET ?
		    "ip4" : "ip6", a);
	else
		(void)snprintf(out, outlen, "%s:%s/%u", n->family ==
		    AF_INET ? "ip4" : "ip6", a, n->prefix);
}

static int
cli_spf_platform(const char *path, int argc, char **argv)
{
	struct spf_pubrec recs[SPF_PUBLISH_RECS];
	char mechs[CONF_MAX_NETS][INET6_ADDRSTRLEN + 16], err[256];
	const char *mp[CONF_MAX_NETS];
	struct conf *c = NULL;
	json_t *j = NULL, *arr, *strs;
	size_t nrec, i, o;
	bool json;
	int rc;

	if ((rc = cli_spf_opts(argc, argv, NULL, 0, NULL, &json)) != 0)
		return rc;
	rc = 1;
	if (cli_spf_conf(path, false, &c) != 0)
		goto fail;
	if (c->spf_domain == NULL || c->negress == 0) {
		fprintf(stderr, "ombud spf platform-record: %s%s%s is not set "
		    "in %s\n", c->spf_domain == NULL ? "spf_domain" : "",
		    c->spf_domain == NULL && c->negress == 0 ? " and " : "",
		    c->negress == 0 ? "egress_addresses" : "", path);
		goto fail;
	}
	for (i = 0; i < c->negress; i++) {
		cli_spf_mech(&c->egress[i], mechs[i], sizeof(mechs[i]));
		mp[i] = mechs[i];
	}
	if (spf_publish(c->spf_domain, mp, c->negress, recs, &nrec, err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "ombud spf platform-record: %s\n", err);
		goto fail;
	}
	if (json)
		j = json_pack("{s:s+, s:i, s:[]}", "include", "include:",
		    c->spf_domain, "lookups", (int)nrec, "records");
	if (json && j == NULL)
		fatalx("spf platform-record: json_pack");
	arr = json ? json_object_get(j, "records") : NULL;
	if (!json)
		printf("; TXT record%s to publish (%zu DNS lookup%s for an "
		    "include):\n", nrec > 1 ? "s" : "", nrec,
		    nrec > 1 ? "s" : "");
	for (i = 0; i < nrec; i++) {
		size_t len = strlen(recs[i].txt);

		strs = json_array();
		if (!json)
			printf("%s. IN TXT", recs[i].name);
		for (o = 0; o < len; o += CLI_SPF_TXT_STRING) {
			size_t n = len - o < CLI_SPF_TXT_STRING ? len - o :
			    CLI_SPF_TXT_STRING;

			json_array_append_new(strs, json_stringn(recs[i].txt +
			    o, n));
			if (!json)
				printf(" \"%.*s\"", (int)n, recs[i].txt + o);
		}
		if (json)
			json_array_append_new(arr, json_pack("{s:s, s:s, s:o}",
			    "name", recs[i].name, "txt", recs[i].txt,
			    "strings", strs));
		else {
			json_decref(strs);
			printf("\n");
		}
	}
	if (json)
		cli_json_print(j);
	else
		printf("; customers add to their SPF record:\ninclude:%s\n",
		    c->spf_domain);
	rc = 0;
fail:
	conf_free(c);
	return rc;
}

int
cli_spf(int argc, char **argv)
{
	static const struct cli_verb verbs[] = {
		{ "check", cli_spf_check },
		{ "platform-record", cli_spf_platform },
	};

	return cli_dispatch(verbs, nitems(verbs), CLI_SPF_USAGE, argc, argv);
}

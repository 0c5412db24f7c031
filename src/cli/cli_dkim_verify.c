/*
 * cli_dkim_verify.c - `ombud dkim verify [--json] [--dns HOST:PORT]
 * [-c FILE] < message`: verify every DKIM-Signature of a message with
 * keys from DNS, one line (or JSON object) per signature, for tests and
 * diagnostics.
 *
 * The message is read from stdin (at most CLI_DKIM_MSG_MAX bytes); a bare
 * LF ends a line like CRLF does (it is turned into CRLF before verifying,
 * so a file saved with Unix line ends verifies as it was sent).  The
 * resolvers are --dns, else the configuration's dns_servers, else those
 * of /etc/resolv.conf.
 *
 * Exit: 0 when at least one signature passes, 1 when none does (or the
 * message is unsigned), 3 when none passes and a key lookup failed
 * temporarily, 2 for usage, configuration or input errors.
 *
 * Must never: print anything but the message's own tags and verdicts;
 * read more input than its bound.
 */
#include "cli/cli.h"
#include "auth/dkim_dns.h"
#include "conf/conf.h"
#include "dns/dns.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#define CLI_DKIM_MSG_MAX	(64u << 20)	/* bytes of stdin */

#define CLI_DKIM_USAGE \
	"usage: ombud dkim verify [--json] [--dns HOST:PORT] [-c FILE] " \
	"< message\n"

struct cli_dkim_run {
	bool	done;
	bool	json;
	int	rc;
};

/* stdin into msg, bare LF turned into CRLF.  0, or -1 with a message. */
static int
cli_dkim_read(struct buf *msg)
{
	char chunk[65536];
	bool cr = false;
	ssize_t n;

	for (;;) {
		n = read(STDIN_FILENO, chunk, sizeof(chunk));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			fprintf(stderr, "ombud dkim verify: stdin: %s\n",
			    strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (chunk[i] == '\n' && !cr)
				buf_addc(msg, '\r');
			buf_addc(msg, chunk[i]);
			cr = chunk[i] == '\r';
		}
		if (msg->len > CLI_DKIM_MSG_MAX) {
			fprintf(stderr, "ombud dkim verify: the message is "
			    "larger than %u bytes\n", CLI_DKIM_MSG_MAX);
			goto fail;
		}
	}
	return 0;
fail:
	return -1;
}

static void
cli_dkim_print_json(int nres, const struct dkim_result *res,
    const struct dkim_sigref *sigs)
{
	json_t *a = json_array();
	char *s;

	for (int i = 0; i < nres; i++)
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:s}",
		    "domain", res[i].domain, "selector", res[i].selector,
		    "algorithm", sigs[i].alg, "result",
		    dkim_status_str(res[i].status), "reason", res[i].reason));
	if ((s = json_dumps(a, JSON_INDENT(2) | JSON_ENSURE_ASCII)) == NULL)
		fatalx("json_dumps");
	printf("%s\n", s);
	free(s);
	json_decref(a);
}

/* A tag value as text: printable ASCII, '?' for anything else, "-" when
 * empty (the values come from a message: no control bytes on a tty). */
static void
cli_dkim_put(const char *tag, const char *v)
{
	printf("%s=", tag);
	if (*v == '\0')
		putchar('-');
	for (; *v; v++)
		putchar(*v > 0x20 && *v < 0x7f ? *v : '?');
}

static void
cli_dkim_done(void *arg, int nres, const struct dkim_result *res,
    const struct dkim_sigref *sigs)
{
	struct cli_dkim_run *run = arg;
	bool pass = false, temp = false;

	run->done = true;
	if (nres < 0) {
		fprintf(stderr, "ombud dkim verify: the message's header "
		    "section cannot be split into fields\n");
		if (run->json)
			printf("[]\n");
		run->rc = 1;
		return;
	}
	for (int i = 0; i < nres; i++) {
		pass |= res[i].status == DKIM_PASS;
		temp |= res[i].status == DKIM_TEMPERROR;
	}
	if (run->json)
		cli_dkim_print_json(nres, res, sigs);
	else if (nres == 0)
		printf("none: the message has no DKIM-Signature field\n");
	for (int i = 0; !run->json && i < nres; i++) {
		cli_dkim_put("d", res[i].domain);
		cli_dkim_put(" s", res[i].selector);
		cli_dkim_put(" a", sigs[i].alg);
		printf(" %s%s%s\n", dkim_status_str(res[i].status),
		    res[i].reason[0] ? " " : "", res[i].reason);
	}
	run->rc = pass ? 0 : temp ? 3 : 1;
}

/* The resolvers: --dns, else the configuration's, else resolv.conf
 * (NULL).  *c gets the configuration, if one was read.  0 or -1. */
static int
cli_dkim_servers(const char *path, const char *dnsopt, struct conf **c,
    const char **servers)
{
	char err[1024];

	*c = NULL;
	*servers = dnsopt;
	if (dnsopt != NULL)
		return 0;
	if (strcmp(path, CLI_DEFAULT_CONF) == 0 && access(path, F_OK) != 0)
		return 0;	/* no configuration at all */
	if ((*c = conf_load(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	*servers = (*c)->dns_servers;
	return 0;
}

int
cli_dkim_verify(int argc, char **argv)
{
	const char *path = cli_config_path(&argc, argv);
	const char *dnsopt = NULL, *servers;
	struct cli_dkim_run run = { .rc = 2 };
	struct event_base *base = NULL;
	struct dns *d = NULL;
	struct conf *c = NULL;
	struct dns_opts dopts;
	struct buf msg;
	char err[256];

	buf_init(&msg);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			run.json = true;
		else if (strcmp(argv[i], "--dns") == 0 && i + 1 < argc)
			dnsopt = argv[++i];
		else if (strncmp(argv[i], "--dns=", 6) == 0)
			dnsopt = argv[i] + 6;
		else {
			fprintf(stderr, CLI_DKIM_USAGE);
			goto fail;
		}
	}
	if (dnsopt != NULL && *dnsopt == '\0') {
		fprintf(stderr, "ombud dkim verify: --dns needs HOST:PORT\n"
		    CLI_DKIM_USAGE);
		goto fail;
	}
	if (cli_dkim_servers(path, dnsopt, &c, &servers) != 0 ||
	    cli_dkim_read(&msg) != 0)
		goto fail;
	if ((base = event_base_new()) == NULL)
		fatalx("event_base_new");
	memset(&dopts, 0, sizeof(dopts));
	dopts.servers = servers;
	if ((d = dns_new(base, &dopts, err, sizeof(err))) == NULL) {
		fprintf(stderr, "ombud dkim verify: DNS: %s\n", err);
		goto fail;
	}
	/* the request frees itself once its callback ran */
	(void)dkim_dns_verify(d, msg.data, msg.len, time(NULL), cli_dkim_done,
	    &run);
	while (!run.done)
		if (event_base_loop(base, EVLOOP_ONCE) != 0)
			fatalx("dkim verify: the event loop stopped");
fail:
	if (d != NULL)
		dns_free(d);
	if (base != NULL)
		event_base_free(base);
	conf_free(c);
	buf_free(&msg);
	return run.rc;
}

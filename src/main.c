/*
 * main.c - `ombud SUBCOMMAND ...`: dispatch to the small programs in
 * src/cli/.  Nothing else lives here.
 */
#include "cli/cli.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char	*name;
	int		(*fn)(int, char **);
	const char	*help;
} commands[] = {
	{ "serve",	cli_serve,	"run the gateway in the foreground" },
	{ "queue",	cli_queue,	"list|show|hold|release|flush|delete queued mail" },
	{ "config",	cli_config,	"check|keys: validate or list config" },
	{ "passwd",	cli_passwd,	"hash a password for the credentials "
					"file" },
	{ "company",	cli_company,	"add|list|show|set-route|suspend|"
					"activate tenant companies" },
	{ "domain",	cli_domain,	"add|list|remove|set-auth a company's "
					"sender domains" },
	{ "user",	cli_user,	"add|import|list|set-smtp|mass-update "
					"users" },
	{ "credential",	cli_credential,	"add|list|revoke SMTP AUTH "
					"credentials" },
	{ "secret-key",	cli_secret_key,	"generate the key that encrypts "
					"stored secrets" },
	{ "billing",	cli_billing,	"report|usage|close: metered mail "
					"and monthly invoices" },
	{ "dkim",	cli_dkim,	"keygen|list|records|verify: DKIM keys "
					"of the sender domains" },
	{ "spf",	cli_spf,	"check|platform-record: SPF checks and "
					"the platform's SPF record" },
};

static int
usage(FILE *f)
{
	fprintf(f, "usage: ombud COMMAND [-c FILE] [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < nitems(commands); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "  %-10s %s\n", "version", "print the version");
	return 2;
}

const char *
cli_config_path(int *argc, char **argv)
{
	const char *path = getenv("OMBUD_CONF");
	int i, j;

	for (i = 1, j = 1; i < *argc; i++) {
		if ((strcmp(argv[i], "-c") == 0 ||
		    strcmp(argv[i], "--config") == 0) && i + 1 < *argc) {
			path = argv[++i];
			continue;
		}
		if (strncmp(argv[i], "--config=", 9) == 0) {
			path = argv[i] + 9;
			continue;
		}
		argv[j++] = argv[i];
	}
	*argc = j;
	argv[j] = NULL;
	return path ? path : CLI_DEFAULT_CONF;
}

int
main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr);
	if (strcmp(argv[1], "version") == 0 ||
	    strcmp(argv[1], "--version") == 0) {
		printf("ombud %s\n", OMBUD_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < nitems(commands); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "ombud: unknown command '%s'\n", argv[1]);
	return usage(stderr);
}

/*
 * cli_serve.c - `ombud serve [-c FILE] [--log-format=text|json]`: run the
 * gateway in the foreground (a service manager supervises it).
 */
#include "cli/cli.h"
#include "smtp/smtp_server.h"

#include <stdio.h>
#include <string.h>

int
cli_serve(int argc, char **argv)
{
	const char *path = cli_config_path(&argc, argv);
	const char *logfmt = NULL;

	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--log-format=", 13) == 0)
			logfmt = argv[i] + 13;
		else if (strcmp(argv[i], "--log-format") == 0 && i + 1 < argc)
			logfmt = argv[++i];
		else if (strcmp(argv[i], "--foreground") == 0 ||
		    strcmp(argv[i], "-d") == 0)
			;	/* always foreground */
		else {
			fprintf(stderr, "usage: ombud serve [-c FILE] "
			    "[--log-format=text|json]\n");
			return 2;
		}
	}
	return server_run(path, logfmt);
}

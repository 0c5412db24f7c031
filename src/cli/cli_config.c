/*
 * cli_config.c - `ombud config check` validates a configuration the way
 * `serve` would load it (including TLS keys, CA files and credentials
 * files) and points at the file, line and key of the first error;
 * `ombud config keys` prints every knob with its default as a Markdown
 * table.
 *
 * Must never: print a secret (routes' passwords and client secrets).
 */
#include "cli/cli.h"
#include "conf/conf.h"
#include "table/credentials.h"
#include "tls/tls.h"

#include <stdio.h>
#include <string.h>

/* A CA file (route ca_file, oauth_ca_file) that OpenSSL can load. */
static int
config_check_ca(const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX *ctx = tls_client_ctx_new(ca_file, err, errlen);

	if (ctx == NULL)
		return -1;
	SSL_CTX_free(ctx);
	return 0;
}

static int
config_check(const char *path)
{
	char err[1024];
	struct conf *c = conf_load(path, err, sizeof(err));
	int rc = 1;

	if (c == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (c->credentials) {
		struct credentials *cr = credentials_open(c->credentials, err,
		    sizeof(err));
		if (cr == NULL) {
			fprintf(stderr, "%s: key 'credentials': %s\n", path,
			    err);
			goto out;
		}
		credentials_close(cr);
	}
	for (size_t i = 0; i < c->nlisteners; i++) {
		struct conf_listener *l = &c->listeners[i];
		SSL_CTX *ctx;
		if (l->tls == LTLS_NONE)
			continue;
		ctx = tls_server_ctx_new(l->tls_cert, l->tls_key,
		    l->tls_min_version, err, sizeof(err));
		if (ctx == NULL) {
			fprintf(stderr, "%s:%d: key 'tls_cert': listener "
			    "'%s': %s\n", path, l->line, l->name, err);
			goto out;
		}
		SSL_CTX_free(ctx);
	}
	for (size_t i = 0; i < c->nroutes; i++) {
		const struct conf_route *r = &c->routes[i];
		if (r->ca_file != NULL &&
		    config_check_ca(r->ca_file, err, sizeof(err)) != 0) {
			fprintf(stderr, "%s:%d: key 'ca_file': route '%s': "
			    "%s\n", path, r->line, r->name, err);
			goto out;
		}
	}
	if (c->oauth_ca_file != NULL &&
	    config_check_ca(c->oauth_ca_file, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: key 'oauth_ca_file': %s\n", path, err);
		goto out;
	}
	printf("config OK\n");
	rc = 0;
out:
	conf_free(c);
	return rc;
}

static int
config_keys(void)
{
	const struct conf_keydoc *k;
	size_t n = conf_keydocs(&k);

	printf("| section | key | default | meaning |\n|---|---|---|---|\n");
	for (size_t i = 0; i < n; i++)
		printf("| %s | `%s` | %s%s%s | %s |\n", k[i].section,
		    k[i].key, k[i].def ? "`" : "", k[i].def ? k[i].def : "-",
		    k[i].def ? "`" : "", k[i].doc);
	return 0;
}

int
cli_config(int argc, char **argv)
{
	const char *path = cli_config_path(&argc, argv);

	if (argc == 2 && strcmp(argv[1], "check") == 0)
		return config_check(path);
	if (argc == 2 && strcmp(argv[1], "keys") == 0)
		return config_keys();
	fprintf(stderr, "usage: ombud config check [-c FILE]\n"
	    "       ombud config keys\n");
	return 2;
}

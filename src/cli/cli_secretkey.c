/*
 * cli_secretkey.c - `ombud secret-key generate [FILE]`: create the
 * 32-byte key that encrypts the secrets in the tenant store (FILE, or
 * secret_key_file of the configuration), mode 0600, through
 * secretbox_key_generate().
 *
 * Must never: overwrite an existing key (every secret sealed with it
 * would be lost), print the key, or create it readable by others.
 */
#include "cli/cli.h"
#include "cli/cli_store.h"
#include "common/secretbox.h"
#include "common/util.h"

#include <stdio.h>
#include <string.h>

static const char secretkey_usage[] =
    "usage: ombud secret-key generate [FILE] [-c CONFIG] [--json]\n"
    "  FILE: default secret_key_file of the configuration\n";

static int
secretkey_generate(const char *conf, int argc, char **argv)
{
	struct cli_args a;
	struct conf *c = NULL;
	const char *path;
	char err[1024];
	json_t *o;
	int rc;

	if ((rc = cli_args_parse(&a, "secret-key generate", secretkey_usage,
	    0, 0, 1, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	if (a.npos == 1)
		path = a.pos[0];
	else if ((c = conf_load(conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	} else
		path = c->secret_key_file;
	if (path == NULL || path[0] == '\0') {
		rc = cli_fail(&a, "no FILE and no secret_key_file in %s",
		    conf);
		goto fail;
	}
	if (secretbox_key_generate(path, err, sizeof(err)) != 0) {
		rc = cli_fail(&a, "%s", err);
		goto fail;
	}
	if (cli_has(&a, OPT_JSON)) {
		o = json_object();
		json_object_set_new(o, "file", cli_json_text(path));
		json_object_set_new(o, "bytes", json_integer(
		    SECRETBOX_KEY_BYTES));
		json_object_set_new(o, "mode", json_string("0600"));
		cli_json_print(o);
	} else {
		printf("secret key written to ");
		cli_put_text(path);
		printf(" (%d bytes, mode 0600): keep it apart from the "
		    "database and its backups\n", SECRETBOX_KEY_BYTES);
	}
	rc = 0;
fail:
	if (c != NULL)
		conf_free(c);
	return rc;
}

int
cli_secret_key(int argc, char **argv)
{
	static const struct cli_verb verbs[] = {
		{ "generate", secretkey_generate },
	};

	return cli_dispatch(verbs, nitems(verbs), secretkey_usage, argc,
	    argv);
}

/*
 * cli_credential.c - `ombud credential add|list|revoke`: the user names
 * and passwords that a company's applications use for SMTP AUTH
 * submission.  The password comes from stdin, or --generate makes a
 * random one (24 characters from libsodium's randombytes) and prints it
 * once; the store keeps only its Argon2id hash (credentials_hash()).
 *
 * Must never: take a password from the command line, print one other
 * than the generated password at the moment it is made, print or store
 * a hash's password, or show a hash in a listing.
 */
#include "cli/cli.h"
#include "cli/cli_store.h"
#include "common/util.h"
#include "table/credentials.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#define CRED_GEN_LEN	24

static const char cred_usage[] =
    "usage: ombud credential add --company ID --application APP "
    "--username U\n"
    "           (--password-stdin | --generate)\n"
    "       ombud credential list [--company ID]\n"
    "       ombud credential revoke USERNAME\n"
    "  every command: [-c FILE] [--json]; changes: [--actor NAME]\n";

static json_t *
cred_json(const struct credential *c)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", json_integer(c->id));
	json_object_set_new(o, "company", cli_json_text(c->company));
	json_object_set_new(o, "application", cli_json_text(c->application));
	json_object_set_new(o, "username", cli_json_text(c->username));
	json_object_set_new(o, "created", json_integer(c->created));
	json_object_set_new(o, "revoked", json_integer(c->revoked));
	json_object_set_new(o, "status", json_string(c->revoked ? "revoked" :
	    "valid"));
	return o;
}

/* A random password: letters and digits, about 143 bits. */
static void
cred_generate(char *out, size_t len)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789";

	for (size_t i = 0; i < len; i++)
		out[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
	out[len] = '\0';
}

static int
cred_add(const char *conf, int argc, char **argv)
{
	char generated[CRED_GEN_LEN + 1];
	struct cli_args a;
	struct cli_store cs = { 0 };
	struct credential c;
	char *pw = NULL;
	json_t *o;
	int rc;

	memset(&c, 0, sizeof(c));
	if ((rc = cli_args_parse(&a, "credential add", cred_usage,
	    OPTB(OPT_ACTOR) | OPTB(OPT_COMPANY) | OPTB(OPT_APPLICATION) |
	    OPTB(OPT_USERNAME) | OPTB(OPT_PASSWORD_STDIN) |
	    OPTB(OPT_GENERATE), 0, 0, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	if (!cli_has(&a, OPT_COMPANY) || !cli_has(&a, OPT_APPLICATION) ||
	    !cli_has(&a, OPT_USERNAME))
		return cli_usage_error(&a, "--company, --application and "
		    "--username are required");
	if (cli_has(&a, OPT_PASSWORD_STDIN) == cli_has(&a, OPT_GENERATE))
		return cli_usage_error(&a, "give one of --password-stdin and "
		    "--generate");
	if (!cli_check_id(&a, "--company", a.val[OPT_COMPANY]) ||
	    !cli_check_text(&a, "--application", a.val[OPT_APPLICATION],
	    STORE_APP_MAX, false))
		return 1;
	if (!credentials_user_valid(a.val[OPT_USERNAME]) ||
	    strlen(a.val[OPT_USERNAME]) > STORE_NAME_MAX)
		return cli_fail(&a, "--username: 1 to %d bytes, no space, "
		    "control character or ':'", CREDENTIALS_USER_MAX);
	strlcpy_ok(c.company, a.val[OPT_COMPANY], sizeof(c.company));
	strlcpy_ok(c.application, a.val[OPT_APPLICATION],
	    sizeof(c.application));
	strlcpy_ok(c.username, a.val[OPT_USERNAME], sizeof(c.username));
	if (sodium_init() < 0) {
		rc = cli_fail(&a, "libsodium cannot start");
		goto fail;
	}
	if (cli_has(&a, OPT_GENERATE))
		cred_generate(generated, CRED_GEN_LEN);
	else if ((pw = cli_secret_read(&a, OPT_PASSWORD_STDIN)) == NULL) {
		rc = 1;
		goto fail;
	}
	if (pw != NULL && strlen(pw) > CREDENTIALS_PASS_MAX) {
		rc = cli_fail(&a, "--password-stdin: longer than %d bytes",
		    CREDENTIALS_PASS_MAX);
		goto fail;
	}
	if (credentials_hash(pw ? pw : generated, c.hash, sizeof(c.hash)) !=
	    0) {
		rc = cli_fail(&a, "cannot hash the password");
		goto fail;
	}
	if ((rc = cli_store_open(&cs, &a, conf)) != 0)
		goto fail;
	if ((rc = store_credential_add(cs.st, &c, cs.actor)) != STORE_OK) {
		if (rc == STORE_NOTFOUND)
			rc = cli_fail(&a, "company '%s' not found", c.company);
		else if (rc == STORE_EXISTS)
			rc = cli_fail(&a, "user name '%s' is taken",
			    c.username);
		else
			rc = cli_store_fail(&cs, &a, rc, "credential '%s'",
			    c.username);
		goto fail;
	}
	if (cli_has(&a, OPT_JSON)) {
		o = cred_json(&c);
		if (pw == NULL)
			json_object_set_new(o, "password",
			    json_string(generated));
		else
			json_object_set_new(o, "secret", json_string("set"));
		cli_json_print(o);
	} else {
		printf("credential %" PRId64 " added: %s (company %s, "
		    "application ", c.id, c.username, c.company);
		cli_put_text(c.application);
		printf(")\n");
		if (pw == NULL)
			printf("password: %s\n(shown this once only: it is "
			    "not stored, only its hash)\n", generated);
	}
	rc = 0;
fail:
	sodium_memzero(generated, sizeof(generated));
	sodium_memzero(c.hash, sizeof(c.hash));
	free_secret(pw);
	cli_store_close(&cs);
	return rc;
}

static int
cred_list_cb(void *arg, const struct credential *c)
{
	json_t *arr = arg;
	char when[32];

	if (arr != NULL) {
		json_array_append_new(arr, cred_json(c));
		return 0;
	}
	cli_time(c->created, when, sizeof(when));
	printf("%-6" PRId64 " %-30s %-20s %-8s %s  ", c->id, c->username,
	    c->company, c->revoked ? "revoked" : "valid", when);
	cli_put_text(c->application);
	printf("\n");
	return 0;
}

static int
cred_list_run(struct store *st, const char *company, json_t *arr)
{
	return store_credential_list(st, company, cred_list_cb, arr);
}

static int
cred_list(const char *conf, int argc, char **argv)
{
	char header[128];

	snprintf(header, sizeof(header), "%-6s %-30s %-20s %-8s %-20s  %s",
	    "ID", "USERNAME", "COMPANY", "STATUS", "CREATED", "APPLICATION");
	return cli_list("credential list", cred_usage, header, true,
	    cred_list_run, conf, argc, argv);
}

static int
cred_revoke(const char *conf, int argc, char **argv)
{
	struct cli_args a;
	struct cli_store cs;
	json_t *o;
	int rc;

	if ((rc = cli_args_parse(&a, "credential revoke", cred_usage,
	    OPTB(OPT_ACTOR), 1, 1, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	if (!credentials_user_valid(a.pos[0]))
		return cli_fail(&a, "USERNAME: not a user name");
	if ((rc = cli_store_open(&cs, &a, conf)) != 0)
		return rc;
	if ((rc = store_credential_revoke(cs.st, a.pos[0], cs.actor)) !=
	    STORE_OK) {
		rc = rc == STORE_NOTFOUND ? cli_fail(&a, "no valid credential "
		    "'%s'", a.pos[0]) : cli_store_fail(&cs, &a, rc,
		    "credential '%s'", a.pos[0]);
		goto fail;
	}
	if (cli_has(&a, OPT_JSON)) {
		o = json_object();
		json_object_set_new(o, "username", json_string(a.pos[0]));
		json_object_set_new(o, "revoked", json_true());
		cli_json_print(o);
	} else
		printf("credential %s revoked\n", a.pos[0]);
	rc = 0;
fail:
	cli_store_close(&cs);
	return rc;
}

int
cli_credential(int argc, char **argv)
{
	static const struct cli_verb verbs[] = {
		{ "add", cred_add },
		{ "list", cred_list },
		{ "revoke", cred_revoke },
	};

	return cli_dispatch(verbs, nitems(verbs), cred_usage, argc, argv);
}

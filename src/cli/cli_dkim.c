/*
 * cli_dkim.c - `ombud dkim keygen|list|records|verify`: a domain's DKIM
 * keys in the tenant store.  keygen makes a pending key per algorithm
 * (rsa-sha256 2048-bit and ed25519-sha256 by default: dual signing) and
 * prints the TXT records to publish; the domain check activates a key
 * once its record is seen in DNS (`ombud domain check`), and retires the
 * key it replaces after the grace period (dkim_rotation_grace).  verify
 * is cli_dkim_verify.c.
 *
 * Must never: print or log a private key, or let a key sign before its
 * record was seen (there is deliberately no "activate" command).
 */
#include "cli/cli.h"
#include "cli/cli_store.h"
#include "auth/dkim_keys.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char dkim_usage[] =
    "usage: ombud dkim keygen DOMAIN [--algorithm rsa|ed25519|both] "
    "[--bits 2048] [--selector NAME]\n"
    "       ombud dkim list [DOMAIN]\n"
    "       ombud dkim records DOMAIN\n"
    "       ombud dkim verify [--json] [--dns HOST:PORT] < MESSAGE\n"
    "  every command: [-c FILE] [--json]; changes: [--actor NAME]\n";

/* The DNS zone line of a key: NAME IN TXT "..." "..." with the record
 * cut into character-strings of at most 255 bytes (RFC 1035 3.3.14). */
static void
dkim_zone_line(const struct dkim_keyrec *k)
{
	size_t len = strlen(k->record);

	printf("%s._domainkey.%s. IN TXT (", k->selector, k->domain);
	for (size_t off = 0; off < len; off += 255)
		printf(" \"%.*s\"", (int)(len - off < 255 ? len - off : 255),
		    k->record + off);
	printf(" )\n");
}

static json_t *
dkim_key_json(const struct dkim_keyrec *k)
{
	char t[4][32];

	cli_time(k->created, t[0], sizeof(t[0]));
	cli_time(k->published_at, t[1], sizeof(t[1]));
	cli_time(k->activated_at, t[2], sizeof(t[2]));
	cli_time(k->retire_at, t[3], sizeof(t[3]));
	return json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:o, s:o, s:o, "
	    "s:o}", "domain", k->domain, "selector", k->selector, "name",
	    "", "algorithm", k->algorithm, "bits", k->bits, "state",
	    dkim_key_state_name(k->state), "record", k->record, "created",
	    cli_json_text(t[0]), "published_at", cli_json_text(t[1]),
	    "activated_at", cli_json_text(t[2]), "retire_at",
	    cli_json_text(t[3]));
}

/* The JSON of k with its DNS name filled in. */
static json_t *
dkim_key_json_named(const struct dkim_keyrec *k)
{
	json_t *o = dkim_key_json(k);
	char name[STORE_SELECTOR_MAX + STORE_HOST_MAX + 16];

	snprintf(name, sizeof(name), "%s._domainkey.%s", k->selector,
	    k->domain);
	json_object_set_new(o, "name", json_string(name));
	return o;
}

static int
dkim_keygen_cmd(const char *conf, int argc, char **argv)
{
	struct dkim_keyrec k[2];
	enum dkim_keytype types[2];
	struct cli_args a;
	struct cli_store cs;
	const char *alg;
	char err[256], sel[STORE_SELECTOR_MAX + 1];
	int64_t bits = 0, now = (int64_t)time(NULL);
	size_t n = 0, made = 0;
	json_t *arr = NULL;
	int rc;

	memset(k, 0, sizeof(k));
	if ((rc = cli_args_parse(&a, "dkim keygen", dkim_usage,
	    OPTB(OPT_ACTOR) | OPTB(OPT_ALGORITHM) | OPTB(OPT_BITS) |
	    OPTB(OPT_SELECTOR), 1, 1, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	if (!cli_check_domain(&a, "DOMAIN", a.pos[0]))
		return 1;
	alg = cli_has(&a, OPT_ALGORITHM) ? a.val[OPT_ALGORITHM] : "both";
	if (strcmp(alg, "both") == 0) {
		types[n++] = DKIM_KEY_RSA;
		types[n++] = DKIM_KEY_ED25519;
	} else if (dkimkey_alg_parse(alg, &types[0]) == 0)
		n = 1;
	else
		return cli_usage_error(&a, "--algorithm: rsa, ed25519 or "
		    "both");
	if (cli_has(&a, OPT_BITS) && (!cli_parse_int64(a.val[OPT_BITS],
	    &bits) || bits < 1024 || bits > 4096))
		return cli_usage_error(&a, "--bits: 1024 to 4096 (2048 is "
		    "the default; receivers may not take more than 4096)");
	if (cli_has(&a, OPT_SELECTOR) && n > 1)
		return cli_usage_error(&a, "--selector names one key: give "
		    "--algorithm too");
	if ((rc = cli_store_open(&cs, &a, conf)) != 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		const char *want = a.val[OPT_SELECTOR];

		/* the default name is by day: a second key the same day
		 * gets a suffix */
		for (int try = 0; try < 10; try++) {
			if (dkimkey_generate(a.pos[0], types[i], (unsigned)bits,
			    want, now, &k[i], err, sizeof(err)) != 0) {
				rc = cli_fail(&a, "%s", err);
				goto fail;
			}
			rc = store_dkim_add(cs.st, &k[i], cs.actor);
			if (rc != STORE_EXISTS || a.val[OPT_SELECTOR] != NULL)
				break;
			snprintf(sel, sizeof(sel), "%.40s%d", k[i].selector,
			    try + 2);
			dkim_keyrec_clear(&k[i]);
			want = sel;
		}
		if (rc != STORE_OK) {
			rc = cli_store_fail(&cs, &a, rc, "domain '%s'",
			    a.pos[0]);
			goto fail;
		}
		dkim_keyrec_clear(&k[i]);	/* the private key: not needed */
		made++;
	}
	if (cli_has(&a, OPT_JSON)) {
		arr = json_array();
		for (size_t i = 0; i < made; i++)
			json_array_append_new(arr, dkim_key_json_named(&k[i]));
		cli_json_print(arr);
		arr = NULL;
	} else {
		printf("; publish, then run `ombud domain check %s`: a key "
		    "signs once its record is seen\n", k[0].domain);
		for (size_t i = 0; i < made; i++)
			dkim_zone_line(&k[i]);
	}
	rc = 0;
fail:
	for (size_t i = 0; i < nitems(k); i++)
		dkim_keyrec_clear(&k[i]);
	json_decref(arr);
	cli_store_close(&cs);
	return rc;
}

struct dkim_list_ctx {
	json_t		*arr;
	bool		 records;	/* zone lines of the published ones */
	size_t		 n;
};

static int
dkim_list_cb(void *arg, const struct dkim_keyrec *k)
{
	struct dkim_list_ctx *c = arg;
	char t[3][32];

	if (c->records && k->state == DKIMKEY_RETIRED)
		return 0;
	c->n++;
	if (c->arr != NULL) {
		json_array_append_new(c->arr, dkim_key_json_named(k));
		return 0;
	}
	if (c->records) {
		dkim_zone_line(k);
		return 0;
	}
	cli_time(k->created, t[0], sizeof(t[0]));
	cli_time(k->activated_at, t[1], sizeof(t[1]));
	cli_time(k->retire_at, t[2], sizeof(t[2]));
	printf("%-32s %-20s %-15s %-9s %-20s %-20s %s\n", k->domain,
	    k->selector, k->algorithm, dkim_key_state_name(k->state), t[0],
	    t[1], k->state == DKIMKEY_RETIRING ? t[2] : "-");
	return 0;
}

static int
dkim_list_cmd(const char *conf, int argc, char **argv, bool records)
{
	struct dkim_list_ctx c = { .records = records };
	struct cli_args a;
	struct cli_store cs;
	const char *dom;
	int rc;

	if ((rc = cli_args_parse(&a, records ? "dkim records" : "dkim list",
	    dkim_usage, 0, records ? 1 : 0, 1, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	dom = a.npos > 0 ? a.pos[0] : NULL;
	if (dom != NULL && !cli_check_domain(&a, "DOMAIN", dom))
		return 1;
	if ((rc = cli_store_open(&cs, &a, conf)) != 0)
		return rc;
	if (cli_has(&a, OPT_JSON))
		c.arr = json_array();
	else if (!records)
		printf("%-32s %-20s %-15s %-9s %-20s %-20s %s\n", "DOMAIN",
		    "SELECTOR", "ALGORITHM", "STATE", "CREATED", "ACTIVATED",
		    "RETIRE AT");
	if ((rc = store_dkim_list(cs.st, dom, false, dkim_list_cb, &c)) !=
	    STORE_OK) {
		rc = cli_store_fail(&cs, &a, rc, "dkim keys");
		goto fail;
	}
	if (records && c.n == 0 && c.arr == NULL) {
		rc = cli_fail(&a, "domain '%s' has no keys: `ombud dkim "
		    "keygen %s`", dom, dom);
		goto fail;
	}
	if (c.arr != NULL)
		cli_json_print(c.arr);
	c.arr = NULL;
	rc = 0;
fail:
	json_decref(c.arr);
	cli_store_close(&cs);
	return rc;
}

static int
dkim_list_verb(const char *conf, int argc, char **argv)
{
	return dkim_list_cmd(conf, argc, argv, false);
}

static int
dkim_records_verb(const char *conf, int argc, char **argv)
{
	return dkim_list_cmd(conf, argc, argv, true);
}

int
cli_dkim(int argc, char **argv)
{
	static const struct cli_verb verbs[] = {
		{ "keygen", dkim_keygen_cmd },
		{ "list", dkim_list_verb },
		{ "records", dkim_records_verb },
	};

	/* verify reads the configuration itself (only dns_servers) */
	if (argc >= 2 && strcmp(argv[1], "verify") == 0)
		return cli_dkim_verify(argc - 1, argv + 1);
	return cli_dispatch(verbs, nitems(verbs), dkim_usage, argc, argv);
}

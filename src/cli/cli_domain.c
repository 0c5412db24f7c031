/*
 * cli_domain.c - `ombud domain add|list|remove|set-auth`: the sender
 * domains of each company in the tenant store (lower case), with the
 * state of their SPF and DKIM checks (set-auth records a result by hand,
 * as the automatic checks will).
 *
 * Must never: let a domain belong to two companies (the store refuses;
 * this says which company has it), or accept something that is not a
 * domain name.
 */
#include "cli/cli.h"
#include "cli/cli_store.h"
#include "common/log.h"
#include "common/util.h"
#include "dns/dns.h"
#include "tenant/domain_watch.h"

#include <event2/event.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char domain_usage[] =
    "usage: ombud domain add DOMAIN --company ID\n"
    "       ombud domain list [--company ID]\n"
    "       ombud domain remove DOMAIN\n"
    "       ombud domain set-auth DOMAIN [--spf pass|fail] "
    "[--dkim pass|fail]\n"
    "       ombud domain check DOMAIN\n"
    "  every command: [-c FILE] [--json]; changes: [--actor NAME]\n";

/* The domain argument, checked and lower-cased into out. */
static bool
domain_arg(const struct cli_args *a, const char *v, char *out, size_t sz)
{
	if (!cli_check_domain(a, "DOMAIN", v) || !strlcpy_ok(out, v, sz))
		return false;
	for (char *p = out; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return true;
}

/* A verb on one DOMAIN: its options parsed, the domain checked into
 * name and the store opened.  0 to go on, else what to return (help: 0). */
static int
domain_verb_open(const char *cmd, unsigned opts, const char *conf,
    int argc, char **argv, struct cli_args *a, struct cli_store *cs,
    char *name, size_t namelen)
{
	int rc;

	if ((rc = cli_args_parse(a, cmd, domain_usage, opts, 1, 1, argc,
	    argv)) != 0)
		return rc < 0 ? -1 : rc;
	if (!domain_arg(a, a->pos[0], name, namelen))
		return 1;
	return cli_store_open(cs, a, conf);
}

static int
domain_add(const char *conf, int argc, char **argv)
{
	char name[STORE_HOST_MAX + 1];
	struct cli_args a;
	struct cli_store cs;
	struct domain d;
	int rc;

	memset(&d, 0, sizeof(d));
	if ((rc = cli_args_parse(&a, "domain add", domain_usage,
	    OPTB(OPT_ACTOR) | OPTB(OPT_COMPANY), 1, 1, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	if (!cli_has(&a, OPT_COMPANY))
		return cli_usage_error(&a, "--company is required");
	if (!domain_arg(&a, a.pos[0], name, sizeof(name)) ||
	    !cli_check_id(&a, "--company", a.val[OPT_COMPANY]))
		return 1;
	if ((rc = cli_store_open(&cs, &a, conf)) != 0)
		return rc;
	rc = store_domain_add(cs.st, name, a.val[OPT_COMPANY], cs.actor);
	if (rc == STORE_EXISTS && store_domain_get(cs.st, name, &d) ==
	    STORE_OK) {
		if (strcmp(d.company, a.val[OPT_COMPANY]) == 0)
			rc = cli_fail(&a, "domain '%s' already belongs to "
			    "company '%s'", name, d.company);
		else
			rc = cli_fail(&a, "domain '%s' belongs to company "
			    "'%s': a domain has one company", name,
			    d.company);
		goto fail;
	}
	if (rc == STORE_NOTFOUND) {
		rc = cli_fail(&a, "company '%s' not found",
		    a.val[OPT_COMPANY]);
		goto fail;
	}
	if (rc != STORE_OK) {
		rc = cli_store_fail(&cs, &a, rc, "domain '%s'", name);
		goto fail;
	}
	if (cli_has(&a, OPT_JSON)) {
		if ((rc = store_domain_get(cs.st, name, &d)) != STORE_OK) {
			rc = cli_store_fail(&cs, &a, rc, "domain '%s'", name);
			goto fail;
		}
		cli_json_print(cli_domain_json(&d));
	} else
		printf("domain %s added to company %s\n", name,
		    a.val[OPT_COMPANY]);
	rc = 0;
fail:
	cli_store_close(&cs);
	return rc;
}

static int
domain_list_cb(void *arg, const struct domain *d)
{
	json_t *arr = arg;
	char when[32];

	if (arr != NULL) {
		json_array_append_new(arr, cli_domain_json(d));
		return 0;
	}
	cli_time(d->checked_at, when, sizeof(when));
	cli_put_text(d->name);
	printf("%*s %-20s %-4s %-4s %s\n", (int)(strlen(d->name) < 40 ?
	    40 - strlen(d->name) : 0), "", d->company,
	    d->spf_ok ? "ok" : "-", d->dkim_ok ? "ok" : "-", when);
	return 0;
}

static int
domain_list_run(struct store *st, const char *company, json_t *arr)
{
	return store_domain_list(st, company, domain_list_cb, arr);
}

static int
domain_list(const char *conf, int argc, char **argv)
{
	char header[96];

	snprintf(header, sizeof(header), "%-40s %-20s %-4s %-4s %s",
	    "DOMAIN", "COMPANY", "SPF", "DKIM", "CHECKED");
	return cli_list("domain list", domain_usage, header, true,
	    domain_list_run, conf, argc, argv);
}

static int
domain_remove(const char *conf, int argc, char **argv)
{
	char name[STORE_HOST_MAX + 1];
	struct cli_args a;
	struct cli_store cs;
	json_t *o;
	int rc;

	if ((rc = domain_verb_open("domain remove", OPTB(OPT_ACTOR), conf,
	    argc, argv, &a, &cs, name, sizeof(name))) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = store_domain_remove(cs.st, name, cs.actor)) != STORE_OK) {
		rc = cli_store_fail(&cs, &a, rc, "domain '%s'", name);
		goto fail;
	}
	if (cli_has(&a, OPT_JSON)) {
		o = json_object();
		json_object_set_new(o, "domain", json_string(name));
		json_object_set_new(o, "removed", json_true());
		cli_json_print(o);
	} else
		printf("domain %s removed\n", name);
	rc = 0;
fail:
	cli_store_close(&cs);
	return rc;
}

/* "pass" or "fail" of --spf/--dkim into *ok; false after a message. */
static bool
domain_auth_arg(const struct cli_args *a, enum cli_opt o, const char *opt,
    bool *ok)
{
	if (!cli_has(a, o))
		return true;
	if (strcmp(a->val[o], "pass") == 0 || strcmp(a->val[o], "fail") == 0) {
		*ok = strcmp(a->val[o], "pass") == 0;
		return true;
	}
	cli_fail(a, "%s: 'pass' or 'fail'", opt);
	return false;
}

static int
domain_set_auth(const char *conf, int argc, char **argv)
{
	char name[STORE_HOST_MAX + 1];
	struct cli_args a;
	struct cli_store cs;
	struct domain d;
	int rc;

	memset(&d, 0, sizeof(d));
	if ((rc = cli_args_parse(&a, "domain set-auth", domain_usage,
	    OPTB(OPT_SPF) | OPTB(OPT_DKIM), 1, 1, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	if (!cli_has(&a, OPT_SPF) && !cli_has(&a, OPT_DKIM))
		return cli_usage_error(&a, "nothing to set: --spf, --dkim");
	if (!domain_arg(&a, a.pos[0], name, sizeof(name)))
		return 1;
	if ((rc = cli_store_open(&cs, &a, conf)) != 0)
		return rc;
	if ((rc = store_domain_get(cs.st, name, &d)) != STORE_OK) {
		rc = cli_store_fail(&cs, &a, rc, "domain '%s'", name);
		goto fail;
	}
	if (!domain_auth_arg(&a, OPT_SPF, "--spf", &d.spf_ok) ||
	    !domain_auth_arg(&a, OPT_DKIM, "--dkim", &d.dkim_ok)) {
		rc = 1;
		goto fail;
	}
	d.checked_at = (int64_t)time(NULL);
	if ((rc = store_domain_set_auth(cs.st, name, d.spf_ok, d.dkim_ok,
	    d.checked_at)) != STORE_OK) {
		rc = cli_store_fail(&cs, &a, rc, "domain '%s'", name);
		goto fail;
	}
	if (cli_has(&a, OPT_JSON))
		cli_json_print(cli_domain_json(&d));
	else
		printf("domain %s: spf %s, dkim %s\n", name,
		    d.spf_ok ? "pass" : "fail", d.dkim_ok ? "pass" : "fail");
	rc = 0;
fail:
	cli_store_close(&cs);
	return rc;
}

/* ---- domain check ---------------------------------------------------- */

struct domain_check_run {
	struct cli_store	*cs;
	struct dkim_keyrec	 keys[DKIMKEYS_MAX_PER_DOMAIN];
	size_t			 nkeys;
	bool			 json, done, ok;
	int			 rc;
};

/* One record of the report as text. */
static void
domain_check_print_record(json_t *e)
{
	const char *type = json_string_value(json_object_get(e, "type"));
	const char *name = json_string_value(json_object_get(e, "name"));
	const char *st = json_string_value(json_object_get(e, "status"));
	json_t *pub = json_object_get(e, "published"), *v;
	const char *exp = json_string_value(json_object_get(e, "expected"));
	size_t i;

	printf("%-11s %-50s %s", type, name, st);
	if (json_object_get(e, "state") != NULL)
		printf(" (key %s)", json_string_value(json_object_get(e,
		    "state")));
	printf("\n");
	if (json_is_string(pub)) {
		printf("    published: ");
		cli_put_text(json_string_value(pub));
		printf("\n");
	} else if (json_is_array(pub))
		json_array_foreach(pub, i, v) {
			printf("    published: ");
			cli_put_text(json_string_value(v));
			printf("\n");
		}
	if (exp != NULL && strcmp(st, "pass") != 0)
		printf("    publish:   %s\n", exp);
	json_array_foreach(json_object_get(e, "reasons"), i, v) {
		printf("    - ");
		cli_put_text(json_string_value(v));
		printf("\n");
	}
}

static void
domain_check_done(void *arg, const struct domain_check_result *r)
{
	struct domain_check_run *run = arg;
	struct cli_store *cs = run->cs;
	bool dkim_ok = false;
	json_t *e;
	size_t i;

	run->done = true;
	if ((run->rc = domain_watch_apply(cs->st, r, run->keys, run->nkeys,
	    (int64_t)time(NULL), (int64_t)cs->conf->dkim_rotation_grace,
	    &dkim_ok)) != STORE_OK)
		return;
	run->ok = r->spf_ok && dkim_ok && r->dmarc_ok && !r->temperror;
	if (run->json) {
		cli_json_print(json_incref(r->report));
		return;
	}
	printf("domain %s: %s (spf %s, dkim %s, dmarc %s)%s\n", r->domain,
	    run->ok ? "ok" : "NOT READY", r->spf_ok ? "pass" : "fail",
	    dkim_ok ? "pass" : "fail", r->dmarc_ok ? "pass" : "fail",
	    r->temperror ? ": DNS lookups failed, try again" : "");
	json_array_foreach(json_object_get(r->report, "records"), i, e)
		domain_check_print_record(e);
	for (i = 0; i < run->nkeys; i++)
		if (run->keys[i].state == DKIMKEY_ACTIVE &&
		    run->keys[i].activated_at == run->keys[i].published_at &&
		    r->published[i])
			printf("DKIM key %s is now active: it signs from now "
			    "on\n", run->keys[i].selector);
}

static int
domain_check_cmd(const char *conf, int argc, char **argv)
{
	char name[STORE_HOST_MAX + 1], err[256];
	struct domain_check_run run;
	struct cli_args a;
	struct cli_store cs;
	struct event_base *base = NULL;
	struct dns *d = NULL;
	struct dns_opts dopts;
	int rc;

	memset(&run, 0, sizeof(run));
	if ((rc = domain_verb_open("domain check", OPTB(OPT_ACTOR), conf,
	    argc, argv, &a, &cs, name, sizeof(name))) != 0)
		return rc < 0 ? 0 : rc;
	run.cs = &cs;
	run.json = cli_has(&a, OPT_JSON);
	if ((rc = domain_watch_keys(cs.st, name, run.keys, nitems(run.keys),
	    &run.nkeys)) != STORE_OK || (rc = store_domain_get(cs.st, name,
	    &(struct domain){ 0 })) != STORE_OK) {
		rc = cli_store_fail(&cs, &a, rc, "domain '%s'", name);
		goto fail;
	}
	if ((base = event_base_new()) == NULL)
		fatalx("event_base_new");
	memset(&dopts, 0, sizeof(dopts));
	dopts.servers = cs.conf->dns_servers;
	if ((d = dns_new(base, &dopts, err, sizeof(err))) == NULL) {
		rc = cli_fail(&a, "DNS: %s", err);
		goto fail;
	}
	(void)domain_check_start(d, cs.conf, name, run.keys, run.nkeys,
	    domain_check_done, &run);
	while (!run.done)
		if (event_base_loop(base, EVLOOP_ONCE) != 0)
			fatalx("domain check: the event loop stopped");
	if (run.rc != STORE_OK)
		rc = cli_store_fail(&cs, &a, run.rc, "domain '%s'", name);
	else
		rc = run.ok ? 0 : 3;
fail:
	if (d != NULL)
		dns_free(d);
	if (base != NULL)
		event_base_free(base);
	cli_store_close(&cs);
	return rc;
}

int
cli_domain(int argc, char **argv)
{
	static const struct cli_verb verbs[] = {
		{ "add", domain_add },
		{ "list", domain_list },
		{ "remove", domain_remove },
		{ "set-auth", domain_set_auth },
		{ "check", domain_check_cmd },
	};

	return cli_dispatch(verbs, nitems(verbs), domain_usage, argc, argv);
}

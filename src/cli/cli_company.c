/*
 * cli_company.c - `ombud company add|list|show|set-route|suspend|
 * activate`: the customer companies in the tenant store, and the one
 * choice each makes of how its mail leaves (its own server, the
 * platform relay, the platform smart host), recorded with who asked,
 * when and the support ticket.  `show` gives a company with its route
 * request, domains, user and credential counts and its audit log.
 *
 * Must never: take a secret (own server password, XOAUTH2 client
 * secret) from the command line or print one; change a route without a
 * --reference saying which request asked for it.
 */
#include "cli/cli.h"
#include "cli/cli_store.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char company_usage[] =
    "usage: ombud company add ID --name NAME [--reference TEXT]\n"
    "       ombud company list\n"
    "       ombud company show ID\n"
    "       ombud company set-route ID "
    "none|own-server|platform-relay|platform-smarthost\n"
    "           [--host H [--port P] [--tls none|opportunistic|required|"
    "verify|implicit]\n"
    "            [--auth-user U (--password-stdin | --password-file F)\n"
    "             | --auth-user U --xoauth2-token-url URL "
    "--xoauth2-client-id ID\n"
    "               --client-secret-stdin [--xoauth2-scope S]]]\n"
    "           --reference TICKET\n"
    "       ombud company suspend|activate ID [--reference TEXT]\n"
    "  every command: [-c FILE] [--json]; changes: [--actor NAME]\n";

#define W_OPTS	(OPTB(OPT_ACTOR) | OPTB(OPT_REFERENCE))

struct company_counts {
	size_t		users;
	size_t		credentials;
	size_t		revoked;
	json_t		*arr;		/* domains or audit entries */
};

static json_t *
company_json(const struct company *c)
{
	json_t *o = json_object(), *rq = json_object();

	json_object_set_new(o, "id", cli_json_text(c->id));
	json_object_set_new(o, "name", cli_json_text(c->name));
	json_object_set_new(o, "status", json_string(
	    company_status_name(c->status)));
	json_object_set_new(o, "route", json_string(
	    route_kind_name(c->route)));
	json_object_set_new(rq, "actor", cli_json_text(c->route_actor));
	json_object_set_new(rq, "at", json_integer(c->route_at));
	json_object_set_new(rq, "reference",
	    cli_json_text(c->route_reference));
	json_object_set_new(o, "route_request", rq);
	json_object_set_new(o, "own_server", c->route == ROUTE_OWN_SERVER ?
	    cli_smtp_json(&c->own) : json_null());
	json_object_set_new(o, "created", json_integer(c->created));
	return o;
}

/* The state after a change: the company as the store has it now. */
static int
company_print_after(struct cli_store *cs, const struct cli_args *a,
    const char *id, const char *done)
{
	struct company c;
	int rc;

	memset(&c, 0, sizeof(c));
	if (!cli_has(a, OPT_JSON)) {
		printf("company %s %s\n", id, done);
		return 0;
	}
	if ((rc = store_company_get(cs->st, id, &c)) != STORE_OK)
		return cli_store_fail(cs, a, rc, "company '%s'", id);
	cli_json_print(company_json(&c));
	smtp_settings_clear(&c.own);
	return 0;
}

static int
company_add(const char *conf, int argc, char **argv)
{
	struct cli_args a;
	struct cli_store cs = { 0 };
	struct company c;
	int rc;

	memset(&c, 0, sizeof(c));
	if ((rc = cli_args_parse(&a, "company add", company_usage,
	    W_OPTS | OPTB(OPT_NAME), 1, 1, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	if (!cli_has(&a, OPT_NAME))
		return cli_usage_error(&a, "--name is required");
	if (!cli_check_id(&a, "ID", a.pos[0]) || !cli_check_text(&a,
	    "--name", a.val[OPT_NAME], STORE_NAME_MAX, false))
		return 1;
	strlcpy_ok(c.id, a.pos[0], sizeof(c.id));
	strlcpy_ok(c.name, a.val[OPT_NAME], sizeof(c.name));
	c.status = COMPANY_ACTIVE;
	c.route = ROUTE_NONE;
	if ((rc = cli_store_open(&cs, &a, conf)) != 0)
		return rc;
	if ((rc = store_company_add(cs.st, &c, cs.actor, a.val[OPT_REFERENCE] ?
	    a.val[OPT_REFERENCE] : "")) != STORE_OK) {
		rc = cli_store_fail(&cs, &a, rc, "company '%s'", c.id);
		goto fail;
	}
	rc = company_print_after(&cs, &a, c.id, "added");
fail:
	cli_store_close(&cs);
	return rc;
}

static int
company_list_cb(void *arg, const struct company *c)
{
	json_t *arr = arg;

	if (arr != NULL) {
		json_array_append_new(arr, company_json(c));
		return 0;
	}
	printf("%-20s %-9s %-18s ", c->id, company_status_name(c->status),
	    route_kind_name(c->route));
	cli_put_text(c->name);
	printf("\n");
	return 0;
}

static int
company_list_run(struct store *st, const char *company, json_t *arr)
{
	return store_company_list(st, company_list_cb, arr);
}

static int
company_list(const char *conf, int argc, char **argv)
{
	char header[80];

	snprintf(header, sizeof(header), "%-20s %-9s %-18s %s", "ID",
	    "STATUS", "ROUTE", "NAME");
	return cli_list("company list", company_usage, header, false,
	    company_list_run, conf, argc, argv);
}

static int
company_count_user(void *arg, const struct user *u)
{
	((struct company_counts *)arg)->users++;
	return 0;
}

static int
company_count_cred(void *arg, const struct credential *c)
{
	struct company_counts *n = arg;

	n->credentials++;
	if (c->revoked != 0)
		n->revoked++;
	return 0;
}

static int
company_domain_cb(void *arg, const struct domain *d)
{
	json_array_append_new(((struct company_counts *)arg)->arr,
	    cli_domain_json(d));
	return 0;
}

static int
company_audit_cb(void *arg, const struct audit_entry *e)
{
	json_t *o = json_object(), *detail = NULL;

	json_object_set_new(o, "id", json_integer(e->id));
	json_object_set_new(o, "at", json_integer(e->at));
	json_object_set_new(o, "actor", cli_json_text(e->actor));
	json_object_set_new(o, "action", cli_json_text(e->action));
	json_object_set_new(o, "reference", cli_json_text(e->reference));
	if (e->detail != NULL && e->detail[0] != '\0' &&
	    (detail = json_loads(e->detail, JSON_DECODE_ANY, NULL)) == NULL)
		detail = cli_json_text(e->detail);
	json_object_set_new(o, "detail", detail ? detail : json_null());
	json_array_append_new(((struct company_counts *)arg)->arr, o);
	return 0;
}

static void
company_show_text(const struct company *c, json_t *domains, json_t *audit,
    const struct company_counts *n)
{
	char when[32];
	size_t i;
	json_t *v;

	printf("id:          %s\nname:        ", c->id);
	cli_put_text(c->name);
	printf("\nstatus:      %s\n", company_status_name(c->status));
	cli_time(c->created, when, sizeof(when));
	printf("created:     %s\n", when);
	printf("route:       %s\n", route_kind_name(c->route));
	if (c->route_at != 0) {
		cli_time(c->route_at, when, sizeof(when));
		printf("  requested: %s by ", when);
		cli_put_text(c->route_actor);
		printf(", reference ");
		cli_put_text(c->route_reference[0] ? c->route_reference :
		    "-");
		printf("\n");
	}
	if (c->route == ROUTE_OWN_SERVER)
		cli_smtp_print("  ", &c->own);
	printf("domains:     %zu\n", json_array_size(domains));
	json_array_foreach(domains, i, v) {
		printf("  ");
		cli_put_text(json_string_value(json_object_get(v, "domain")));
		printf(" (spf %s, dkim %s)\n",
		    json_is_true(json_object_get(v, "spf_ok")) ? "ok" : "-",
		    json_is_true(json_object_get(v, "dkim_ok")) ? "ok" : "-");
	}
	printf("users:       %zu\n", n->users);
	printf("credentials: %zu (%zu revoked)\n", n->credentials,
	    n->revoked);
	printf("audit log:\n");
	json_array_foreach(audit, i, v) {
		json_t *d = json_object_get(v, "detail");
		char *dtext = NULL;

		cli_time(json_integer_value(json_object_get(v, "at")), when,
		    sizeof(when));
		printf("  %s  ", when);
		cli_put_text(json_string_value(json_object_get(v, "actor")));
		printf("  ");
		cli_put_text(json_string_value(json_object_get(v,
		    "action")));
		if (json_is_string(json_object_get(v, "reference"))) {
			printf("  ref ");
			cli_put_text(json_string_value(json_object_get(v,
			    "reference")));
		}
		if (!json_is_null(d) && (dtext = json_dumps(d,
		    JSON_COMPACT | JSON_ENCODE_ANY)) != NULL) {
			printf("  ");
			cli_put_text(dtext);
			free(dtext);
		}
		printf("\n");
	}
}

static int
company_show(const char *conf, int argc, char **argv)
{
	struct company_counts n = { 0 };
	struct cli_args a;
	struct cli_store cs;
	struct company c;
	json_t *domains = json_array(), *audit = json_array(), *o;
	int rc;

	memset(&c, 0, sizeof(c));
	if ((rc = cli_args_parse(&a, "company show", company_usage, 0, 1, 1,
	    argc, argv)) != 0) {
		rc = rc < 0 ? 0 : rc;
		goto out;
	}
	if (!cli_check_id(&a, "ID", a.pos[0])) {
		rc = 1;
		goto out;
	}
	if ((rc = cli_store_open(&cs, &a, conf)) != 0)
		goto out;
	if ((rc = store_company_get(cs.st, a.pos[0], &c)) != STORE_OK) {
		rc = cli_store_fail(&cs, &a, rc, "company '%s'", a.pos[0]);
		goto fail;
	}
	n.arr = domains;
	if ((rc = store_domain_list(cs.st, c.id, company_domain_cb, &n)) !=
	    STORE_OK || (rc = store_user_list(cs.st, c.id, company_count_user,
	    &n)) != STORE_OK || (rc = store_credential_list(cs.st, c.id,
	    company_count_cred, &n)) != STORE_OK) {
		rc = cli_store_fail(&cs, &a, rc, "company '%s'", c.id);
		goto fail;
	}
	n.arr = audit;
	if ((rc = store_audit_list(cs.st, c.id, company_audit_cb, &n)) !=
	    STORE_OK) {
		rc = cli_store_fail(&cs, &a, rc, "audit log of '%s'", c.id);
		goto fail;
	}
	if (cli_has(&a, OPT_JSON)) {
		o = company_json(&c);
		json_object_set(o, "domains", domains);
		json_object_set_new(o, "users", json_integer(
		    (json_int_t)n.users));
		json_object_set_new(o, "credentials", json_integer(
		    (json_int_t)n.credentials));
		json_object_set_new(o, "credentials_revoked", json_integer(
		    (json_int_t)n.revoked));
		json_object_set(o, "audit", audit);
		cli_json_print(o);
	} else
		company_show_text(&c, domains, audit, &n);
	rc = 0;
fail:
	smtp_settings_clear(&c.own);
	cli_store_close(&cs);
out:
	json_decref(domains);
	json_decref(audit);
	return rc;
}

/* The settings of an own-server route from the options; 0 or the exit
 * status. */
static int
company_own_settings(const struct cli_args *a, struct smtp_settings *s)
{
	bool oauth = (a->given & OPTS_XOAUTH2) != 0;
	unsigned set;
	int rc;

	if (!cli_has(a, OPT_HOST))
		return cli_usage_error(a, "the own-server route needs --host");
	s->port = 587;
	s->tls = RTLS_VERIFY;
	if (oauth && !(cli_has(a, OPT_TOKEN_URL) && cli_has(a,
	    OPT_CLIENT_ID) && cli_has(a, OPT_CLIENT_SECRET_STDIN) &&
	    cli_has(a, OPT_AUTH_USER)))
		return cli_usage_error(a, "XOAUTH2 needs --auth-user, "
		    "--xoauth2-token-url, --xoauth2-client-id and "
		    "--client-secret-stdin");
	if (!oauth && cli_has(a, OPT_AUTH_USER) && !(a->given &
	    (OPTB(OPT_PASSWORD_STDIN) | OPTB(OPT_PASSWORD_FILE))))
		return cli_usage_error(a, "--auth-user needs --password-stdin "
		    "or --password-file");
	if (!cli_has(a, OPT_AUTH_USER) && (a->given &
	    (OPTB(OPT_PASSWORD_STDIN) | OPTB(OPT_PASSWORD_FILE))))
		return cli_usage_error(a, "a password needs --auth-user");
	if (cli_has(a, OPT_AUTH_USER) && a->val[OPT_AUTH_USER][0] == '\0')
		return cli_usage_error(a, "--auth-user: empty");
	if ((rc = cli_smtp_apply(a, s, &set)) != 0)
		return rc;
	return 0;
}

static int
company_set_route(const char *conf, int argc, char **argv)
{
	struct smtp_settings own;
	struct cli_args a;
	struct cli_store cs = { 0 };
	enum route_kind route;
	char done[64];
	int rc;

	memset(&own, 0, sizeof(own));
	if ((rc = cli_args_parse(&a, "company set-route", company_usage,
	    W_OPTS | OPTS_SMTP | OPTS_XOAUTH2, 2, 2, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	if (!cli_check_id(&a, "ID", a.pos[0]) ||
	    !cli_parse_route(&a, a.pos[1], false, &route))
		return 1;
	if (!cli_has(&a, OPT_REFERENCE))
		return cli_usage_error(&a, "--reference is required: the "
		    "ticket or request that asked for the change");
	if (route != ROUTE_OWN_SERVER && (a.given & (OPTS_SMTP |
	    OPTS_XOAUTH2)))
		return cli_usage_error(&a, "--host and the other server "
		    "settings belong to the own-server route only");
	/* the secret is read last, after every other argument is known
	 * to be good */
	if (route == ROUTE_OWN_SERVER &&
	    (rc = company_own_settings(&a, &own)) != 0)
		goto fail;
	if ((rc = cli_store_open(&cs, &a, conf)) != 0)
		goto fail;
	if (route == ROUTE_PLATFORM_SMARTHOST &&
	    cs.conf->platform_smarthost_route == NULL)
		fprintf(stderr, "ombud company set-route: warning: the "
		    "configuration sets no platform_smarthost_route\n");
	if ((rc = store_company_set_route(cs.st, a.pos[0], route,
	    route == ROUTE_OWN_SERVER ? &own : NULL, cs.actor,
	    a.val[OPT_REFERENCE])) != STORE_OK) {
		rc = cli_store_fail(&cs, &a, rc, "company '%s'", a.pos[0]);
		goto fail;
	}
	snprintf(done, sizeof(done), "route set to %s",
	    route_kind_name(route));
	rc = company_print_after(&cs, &a, a.pos[0], done);
fail:
	smtp_settings_clear(&own);
	cli_store_close(&cs);
	return rc;
}

static int
company_set_status(const char *conf, int argc, char **argv,
    enum company_status status)
{
	struct cli_args a;
	struct cli_store cs;
	int rc;

	if ((rc = cli_args_parse(&a, status == COMPANY_SUSPENDED ?
	    "company suspend" : "company activate", company_usage, W_OPTS,
	    1, 1, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	if (!cli_check_id(&a, "ID", a.pos[0]))
		return 1;
	if ((rc = cli_store_open(&cs, &a, conf)) != 0)
		return rc;
	if ((rc = store_company_set_status(cs.st, a.pos[0], status, cs.actor,
	    a.val[OPT_REFERENCE] ? a.val[OPT_REFERENCE] : "")) != STORE_OK) {
		rc = cli_store_fail(&cs, &a, rc, "company '%s'", a.pos[0]);
		goto fail;
	}
	rc = company_print_after(&cs, &a, a.pos[0],
	    status == COMPANY_SUSPENDED ? "suspended" : "activated");
fail:
	cli_store_close(&cs);
	return rc;
}

static int
company_suspend(const char *conf, int argc, char **argv)
{
	return company_set_status(conf, argc, argv, COMPANY_SUSPENDED);
}

static int
company_activate(const char *conf, int argc, char **argv)
{
	return company_set_status(conf, argc, argv, COMPANY_ACTIVE);
}

int
cli_company(int argc, char **argv)
{
	static const struct cli_verb verbs[] = {
		{ "add", company_add },
		{ "list", company_list },
		{ "show", company_show },
		{ "set-route", company_set_route },
		{ "suspend", company_suspend },
		{ "activate", company_activate },
	};

	return cli_dispatch(verbs, nitems(verbs), company_usage, argc, argv);
}

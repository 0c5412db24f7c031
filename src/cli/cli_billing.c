/*
 * cli_billing.c - `ombud billing report|usage|close`: the metered usage
 * of the platform's mail service and the monthly invoice lines.
 *
 *   report --month YYYY-MM [--company ID] [--format text|csv|json]
 *       one line per company: route, emails, included, extra, fixed fee,
 *       extra fee, total.  A month that ended billing_close_after ago is
 *       closed first (its lines stored for good, see store.h); a closed
 *       month is read back, never computed again; an open month is
 *       computed from the usage so far, as if the current route held
 *       until its end.
 *   usage [--company ID] [--format text|json]
 *       the current month to date: per day, and per day the Gmail
 *       recipients of each sender domain, flagged at
 *       bulk_sender_threshold.
 *   close --month YYYY-MM
 *       close an ended month now (without waiting for
 *       billing_close_after).
 *
 * The process's time zone is billing_timezone (billing_tz_init, before
 * anything else).  OMBUD_TEST_NOW moves "now" for the tests.
 *
 * Must never: change a closed month's lines; print money through
 * floating point.
 */
#include "cli/cli.h"
#include "cli/cli_store.h"
#include "billing/billing.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static const char billing_usage[] =
    "usage: ombud billing report --month YYYY-MM [--company ID] "
    "[--format text|csv|json]\n"
    "       ombud billing usage [--company ID] [--format text|json]\n"
    "       ombud billing close --month YYYY-MM\n";

enum billing_fmt { FMT_TEXT, FMT_CSV, FMT_JSON };

/* The invoice lines of one month, being built or read back. */
struct billing_lines {
	struct invoice	*v;
	size_t		 n, cap;
};

static struct invoice *
billing_lines_add(struct billing_lines *l)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	memset(&l->v[l->n], 0, sizeof(l->v[l->n]));
	return &l->v[l->n++];
}

static int
billing_company_cb(void *arg, const struct company *c)
{
	struct billing_lines *l = arg;

	strlcpy_ok(billing_lines_add(l)->company, c->id,
	    sizeof(l->v[0].company));
	return 0;
}

/* Usage of a month, summed per line (lines sorted by company id). */
struct billing_usage_sum {
	struct billing_lines	*l;
	uint32_t		*days;		/* per line: used days */
};

static int
billing_usage_cb(void *arg, const struct usage_day *u)
{
	struct billing_usage_sum *s = arg;

	for (size_t i = 0; i < s->l->n; i++)
		if (strcmp(s->l->v[i].company, u->company) == 0) {
			s->l->v[i].emails += u->emails;
			if (u->emails > 0)
				s->days[i] |= UINT32_C(1) << (u->day % 100 -
				    1);
			break;
		}
	return 0;
}

struct billing_hist {
	struct billing_route_change	*h;
	size_t				 n, cap;
};

static int
billing_hist_cb(void *arg, int64_t at, enum route_kind route)
{
	struct billing_hist *bh = arg;

	if (bh->n == bh->cap) {
		bh->cap = bh->cap ? bh->cap * 2 : 8;
		bh->h = xrealloc(bh->h, bh->cap * sizeof(*bh->h));
	}
	bh->h[bh->n].at = at;
	bh->h[bh->n++].route = route;
	return 0;
}

/* Compute month's lines for every company (company: only that one). */
static int
billing_compute(struct cli_store *cs, const struct cli_args *a,
    int32_t month, const char *company, struct billing_lines *l)
{
	const struct conf_plan *plan = conf_plan_for(cs->conf,
	    (uint64_t)month);
	struct billing_usage_sum sum = { .l = l };
	struct billing_hist bh = { 0 };
	int rc;

	if ((rc = store_company_list(cs->st, billing_company_cb, l)) !=
	    STORE_OK)
		return cli_store_fail(cs, a, rc, "companies");
	if (company != NULL) {
		size_t j = 0;
		for (size_t i = 0; i < l->n; i++)
			if (strcmp(l->v[i].company, company) == 0)
				l->v[j++] = l->v[i];
		l->n = j;
		if (j == 0)
			return cli_fail(a, "company '%s' not found",
			    company);
	}
	sum.days = xcalloc(l->n + 1, sizeof(*sum.days));
	if ((rc = store_usage_list(cs->st, company, month * 100 + 1,
	    month * 100 + 31, false, billing_usage_cb, &sum)) != STORE_OK) {
		free(sum.days);
		return cli_store_fail(cs, a, rc, "usage");
	}
	for (size_t i = 0; i < l->n; i++) {
		struct invoice *v = &l->v[i];
		int days;

		bh.n = 0;
		if ((rc = store_route_history(cs->st, v->company,
		    billing_hist_cb, &bh)) != STORE_OK) {
			free(sum.days);
			free(bh.h);
			return cli_store_fail(cs, a, rc, "route history of "
			    "'%s'", v->company);
		}
		v->month = month;
		days = billing_platform_days(bh.h, bh.n, month, sum.days[i],
		    &v->route);
		if (billing_price(plan, cs->conf->billing_fixed_fee,
		    v->emails, days, billing_days_in_month(month), v) != 0) {
			free(sum.days);
			free(bh.h);
			return cli_fail(a, "the amounts of '%s' overflow",
			    v->company);
		}
	}
	free(sum.days);
	free(bh.h);
	return 0;
}

static int
billing_read_cb(void *arg, const struct invoice *inv)
{
	*billing_lines_add(arg) = *inv;
	return 0;
}

/* Close month (now past its end): compute and store every company's
 * line; a concurrent close that won is fine. */
static int
billing_close_month(struct cli_store *cs, const struct cli_args *a,
    int32_t month)
{
	struct billing_lines l = { 0 };
	int rc;

	if ((rc = billing_compute(cs, a, month, NULL, &l)) == 0 &&
	    (rc = store_invoice_close(cs->st, month, l.v, l.n)) != STORE_OK &&
	    rc != STORE_EXISTS)
		rc = cli_store_fail(cs, a, rc, "closing the month");
	else if (rc == STORE_EXISTS)
		rc = 0;
	free(l.v);
	return rc;
}

static const char *
billing_status(const struct invoice *v)
{
	return v->closed_at ? "closed" : "open";
}

static json_t *
billing_line_json(const struct invoice *v)
{
	char m[16], fixed[32], extra[32], total[32], at[32];

	billing_month_text(v->month, m, sizeof(m));
	billing_money(v->fixed_fee, fixed, sizeof(fixed));
	billing_money(v->extra_fee, extra, sizeof(extra));
	billing_money(v->total, total, sizeof(total));
	cli_time(v->closed_at, at, sizeof(at));
	return json_pack("{s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:I, s:I, s:I, "
	    "s:I, s:s, s:s, s:s, s:i, s:i, s:s, s:s, s:o}",
	    "month", m, "company", v->company,
	    "route", route_kind_name(v->route),
	    "plan", cli_json_text(v->plan),
	    "currency", cli_json_text(v->currency),
	    "emails", (json_int_t)v->emails,
	    "included", (json_int_t)v->included,
	    "extra", (json_int_t)v->extra,
	    "fixed_fee", (json_int_t)v->fixed_fee,
	    "extra_fee", (json_int_t)v->extra_fee,
	    "total", (json_int_t)v->total,
	    "fixed_fee_text", fixed, "extra_fee_text", extra,
	    "total_text", total,
	    "platform_days", v->platform_days,
	    "days_in_month", v->days_in_month,
	    "fee_rule", v->fee_rule == FEE_PRO_RATA ? "pro-rata" : "any-day",
	    "status", billing_status(v),
	    "closed_at", v->closed_at ? json_string(at) : json_null());
}

static void
billing_line_print(const struct invoice *v, enum billing_fmt f)
{
	char m[16], fixed[32], extra[32], total[32];

	billing_month_text(v->month, m, sizeof(m));
	billing_money(v->fixed_fee, fixed, sizeof(fixed));
	billing_money(v->extra_fee, extra, sizeof(extra));
	billing_money(v->total, total, sizeof(total));
	if (f == FMT_CSV)
		printf("%s,%s,%s,%s,%s,%llu,%llu,%llu,%s,%s,%s,%d,%d,%s\n", m,
		    v->company, route_kind_name(v->route), v->plan,
		    v->currency, (unsigned long long)v->emails,
		    (unsigned long long)v->included,
		    (unsigned long long)v->extra, fixed, extra, total,
		    v->platform_days, v->days_in_month, billing_status(v));
	else
		printf("%-20s %-18s %10llu %10llu %10llu %12s %12s %12s %s\n",
		    v->company, route_kind_name(v->route),
		    (unsigned long long)v->emails,
		    (unsigned long long)v->included,
		    (unsigned long long)v->extra, fixed, extra, total,
		    v->currency);
}

static void
billing_lines_print(const struct billing_lines *l, enum billing_fmt f,
    int32_t month, int64_t closed_at, const struct conf *c)
{
	char m[16], at[32];
	json_t *arr;

	if (f == FMT_JSON) {
		arr = json_array();
		for (size_t i = 0; i < l->n; i++)
			json_array_append_new(arr, billing_line_json(&l->v[i]));
		cli_json_print(arr);
		return;
	}
	if (f == FMT_CSV) {
		printf("month,company,route,plan,currency,emails,included,"
		    "extra,fixed_fee,extra_fee,total,platform_days,"
		    "days_in_month,status\n");
	} else {
		billing_month_text(month, m, sizeof(m));
		cli_time(closed_at, at, sizeof(at));
		printf("month %s (%s), %s, fixed fee %s\n", m, closed_at ?
		    "closed" : "open", c->billing_timezone,
		    c->billing_fixed_fee == FEE_PRO_RATA ? "pro-rata" :
		    "any-day");
		if (closed_at)
			printf("closed at %s\n", at);
		printf("%-20s %-18s %10s %10s %10s %12s %12s %12s %s\n",
		    "COMPANY", "ROUTE", "EMAILS", "INCLUDED", "EXTRA", "FIXED",
		    "EXTRA FEE", "TOTAL", "CURRENCY");
	}
	for (size_t i = 0; i < l->n; i++)
		billing_line_print(&l->v[i], f);
}

static int
billing_format(const struct cli_args *a, bool csv_ok, enum billing_fmt *f)
{
	const char *v = a->val[OPT_FORMAT];

	*f = cli_has(a, OPT_JSON) ? FMT_JSON : FMT_TEXT;
	if (v == NULL)
		return 0;
	if (strcmp(v, "json") == 0)
		*f = FMT_JSON;
	else if (strcmp(v, "csv") == 0 && csv_ok)
		*f = FMT_CSV;
	else if (strcmp(v, "text") != 0)
		return cli_usage_error(a, "--format: '%.32s' is not text%s or "
		    "json", v, csv_ok ? ", csv" : "");
	return 0;
}

/* Parse --month (required with need), open the store and set the zone. */
static int
billing_open(struct cli_store *cs, struct cli_args *a, const char *conf,
    bool need_month, int32_t *month)
{
	const char *company = a->val[OPT_COMPANY];

	if (need_month && (*month = billing_month_parse(a->val[OPT_MONTH])) <
	    0)
		return cli_usage_error(a, "--month: '%.32s' is not YYYY-MM",
		    a->val[OPT_MONTH] ? a->val[OPT_MONTH] : "");
	if (company != NULL && !cli_check_id(a, "--company", company))
		return 1;
	if (cli_store_open(cs, a, conf) != 0)
		return 1;
	if (billing_tz_init(cs->conf->billing_timezone) != 0) {
		cli_store_close(cs);
		return cli_fail(a, "billing_timezone '%s' does not load",
		    cs->conf->billing_timezone);
	}
	return 0;
}

static int
billing_report(const char *conf, int argc, char **argv)
{
	struct cli_args a;
	struct cli_store cs;
	struct billing_lines l = { 0 };
	enum billing_fmt f;
	int64_t start, end, closed_at = 0;
	int32_t month = 0;
	int rc;

	if ((rc = cli_args_parse(&a, "billing report", billing_usage,
	    OPTB(OPT_MONTH) | OPTB(OPT_COMPANY) | OPTB(OPT_FORMAT), 0, 0,
	    argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = billing_format(&a, true, &f)) != 0 ||
	    (rc = billing_open(&cs, &a, conf, true, &month)) != 0)
		return rc;
	billing_month_bounds(month, &start, &end);
	if ((rc = store_month_closed(cs.st, month, &closed_at)) != STORE_OK) {
		rc = cli_store_fail(&cs, &a, rc, "month");
		goto fail;
	}
	if (closed_at == 0 && billing_now() >= end +
	    (int64_t)cs.conf->billing_close_after) {
		if ((rc = billing_close_month(&cs, &a, month)) != 0)
			goto fail;
		if ((rc = store_month_closed(cs.st, month, &closed_at)) !=
		    STORE_OK) {
			rc = cli_store_fail(&cs, &a, rc, "month");
			goto fail;
		}
	}
	if (closed_at != 0)
		rc = store_invoice_list(cs.st, month, a.val[OPT_COMPANY],
		    billing_read_cb, &l) == STORE_OK ? 0 :
		    cli_store_fail(&cs, &a, STORE_ERROR, "invoices");
	else
		rc = billing_compute(&cs, &a, month, a.val[OPT_COMPANY], &l);
	if (rc == 0)
		billing_lines_print(&l, f, month, closed_at, cs.conf);
fail:
	free(l.v);
	cli_store_close(&cs);
	return rc;
}

static int
billing_close(const char *conf, int argc, char **argv)
{
	struct cli_args a;
	struct cli_store cs;
	int64_t start, end, closed_at = 0;
	int32_t month = 0;
	char m[16];
	int rc;

	if ((rc = cli_args_parse(&a, "billing close", billing_usage,
	    OPTB(OPT_MONTH), 0, 0, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = billing_open(&cs, &a, conf, true, &month)) != 0)
		return rc;
	billing_month_text(month, m, sizeof(m));
	billing_month_bounds(month, &start, &end);
	if (billing_now() < end)
		rc = cli_fail(&a, "month %s has not ended", m);
	else if ((rc = store_month_closed(cs.st, month, &closed_at)) !=
	    STORE_OK)
		rc = cli_store_fail(&cs, &a, rc, "month");
	else if (closed_at != 0)
		rc = cli_fail(&a, "month %s is closed already", m);
	else if ((rc = billing_close_month(&cs, &a, month)) == 0)
		printf("month %s closed\n", m);
	cli_store_close(&cs);
	return rc;
}

/* The usage view: days and Gmail counts, gathered per company. */
struct billing_view {
	json_t		*companies;	/* object: id -> {days, gmail} */
	uint64_t	 threshold;
};

static json_t *
billing_view_company(struct billing_view *bv, const char *id)
{
	json_t *o = json_object_get(bv->companies, id);

	if (o == NULL) {
		o = json_pack("{s:[], s:[]}", "days", "gmail");
		json_object_set_new(bv->companies, id, o);
	}
	return o;
}

static int
billing_view_day_cb(void *arg, const struct usage_day *u)
{
	struct billing_view *bv = arg;
	char d[16];

	billing_day_text(u->day, d, sizeof(d));
	json_array_append_new(json_object_get(billing_view_company(bv,
	    u->company), "days"), json_pack("{s:s, s:I}", "day", d, "emails",
	    (json_int_t)u->emails));
	return 0;
}

static int
billing_view_gmail_cb(void *arg, const struct usage_day *u)
{
	struct billing_view *bv = arg;
	char d[16];

	billing_day_text(u->day, d, sizeof(d));
	json_array_append_new(json_object_get(billing_view_company(bv,
	    u->company), "gmail"), json_pack("{s:s, s:s, s:I, s:b}", "day", d,
	    "sender_domain", u->sender_domain, "emails",
	    (json_int_t)u->emails, "bulk", u->emails >= bv->threshold));
	return 0;
}

static void
billing_view_print(json_t *out)
{
	const char *id;
	json_t *co, *e;
	size_t i;

	printf("usage %s to %s (%s), Gmail bulk-sender threshold %lld a "
	    "day\n", json_string_value(json_object_get(out, "month")),
	    json_string_value(json_object_get(out, "today")),
	    json_string_value(json_object_get(out, "timezone")),
	    (long long)json_integer_value(json_object_get(out, "threshold")));
	json_array_foreach(json_object_get(out, "companies"), i, co) {
		json_t *line = json_object_get(co, "bill");
		size_t j;

		id = json_string_value(json_object_get(co, "company"));
		printf("\ncompany %s: %lld emails, route %s, to date %s %s "
		    "(fixed %s, extra %lld emails %s)\n", id,
		    (long long)json_integer_value(json_object_get(line,
		    "emails")), json_string_value(json_object_get(line,
		    "route")), json_string_value(json_object_get(line,
		    "total_text")), json_string_value(json_object_get(line,
		    "currency")) ? json_string_value(json_object_get(line,
		    "currency")) : "", json_string_value(json_object_get(line,
		    "fixed_fee_text")), (long long)json_integer_value(
		    json_object_get(line, "extra")), json_string_value(
		    json_object_get(line, "extra_fee_text")));
		json_array_foreach(json_object_get(co, "days"), j, e)
			printf("  %s %10lld\n", json_string_value(
			    json_object_get(e, "day")), (long long)
			    json_integer_value(json_object_get(e, "emails")));
		json_array_foreach(json_object_get(co, "gmail"), j, e)
			printf("  %s gmail %-30s %10lld%s\n",
			    json_string_value(json_object_get(e, "day")),
			    json_string_value(json_object_get(e,
			    "sender_domain")), (long long)json_integer_value(
			    json_object_get(e, "emails")),
			    json_is_true(json_object_get(e, "bulk")) ?
			    "  BULK SENDER" : "");
	}
}

static int
billing_usage_view(const char *conf, int argc, char **argv)
{
	struct cli_args a;
	struct cli_store cs;
	struct billing_lines l = { 0 };
	struct billing_view bv = { 0 };
	struct billing_day today;
	enum billing_fmt f;
	json_t *out = NULL, *arr;
	int32_t month = 0;
	char m[16], d[16];
	int rc;

	if ((rc = cli_args_parse(&a, "billing usage", billing_usage,
	    OPTB(OPT_COMPANY) | OPTB(OPT_FORMAT), 0, 0, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = billing_format(&a, false, &f)) != 0 ||
	    (rc = billing_open(&cs, &a, conf, false, &month)) != 0)
		return rc;
	billing_day_of(billing_now(), &today);
	month = today.day / 100;
	bv.companies = json_object();
	bv.threshold = cs.conf->bulk_sender_threshold;
	if ((rc = billing_compute(&cs, &a, month, a.val[OPT_COMPANY], &l)) !=
	    0)
		goto fail;
	if ((rc = store_usage_list(cs.st, a.val[OPT_COMPANY], month * 100 + 1,
	    today.day, false, billing_view_day_cb, &bv)) != STORE_OK ||
	    (rc = store_usage_list(cs.st, a.val[OPT_COMPANY], month * 100 + 1,
	    today.day, true, billing_view_gmail_cb, &bv)) != STORE_OK) {
		rc = cli_store_fail(&cs, &a, rc, "usage");
		goto fail;
	}
	billing_month_text(month, m, sizeof(m));
	billing_day_text(today.day, d, sizeof(d));
	arr = json_array();
	out = json_pack("{s:s, s:s, s:s, s:I, s:o}", "month", m, "today", d,
	    "timezone", cs.conf->billing_timezone, "threshold",
	    (json_int_t)bv.threshold, "companies", arr);
	for (size_t i = 0; i < l.n; i++) {
		json_t *co = json_deep_copy(billing_view_company(&bv,
		    l.v[i].company));

		json_object_set_new(co, "company", json_string(l.v[i].company));
		json_object_set_new(co, "bill", billing_line_json(&l.v[i]));
		json_array_append_new(arr, co);
	}
	if (f == FMT_JSON) {
		cli_json_print(out);
		out = NULL;
	} else
		billing_view_print(out);
fail:
	json_decref(out);
	json_decref(bv.companies);
	free(l.v);
	cli_store_close(&cs);
	return rc;
}

int
cli_billing(int argc, char **argv)
{
	static const struct cli_verb verbs[] = {
		{ "report", billing_report },
		{ "usage", billing_usage_view },
		{ "close", billing_close },
	};

	return cli_dispatch(verbs, nitems(verbs), billing_usage, argc, argv);
}

/*
 * test_billing.c - the billing arithmetic: the seed examples of issue 6
 * exactly (40,000 emails 860.00 SEK, 10,000 500.00, none on own-server
 * 0, 10,001 500.01), the rounding, pro-rata, a plan change from a month,
 * and the calendar in Europe/Stockholm: days and months at local
 * midnight across both DST changes of 2026 and month ends.
 *
 * Must never: depend on the machine's own zone (TZ is set here).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "billing/billing.h"
#include "conf/conf.h"

/* 2026-01-01T00:00:00Z etc., computed once by timegm in the tests */
static int64_t
utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	return (int64_t)timegm(&tm);
}

static struct conf_plan standard = {
	.name = "standard", .fixed_fee = 50000, .included = 10000,
	.extra_price = 1200, .currency = "SEK", .from = 197001,
};

static uint64_t
total(uint64_t emails, int days, int dim, enum billing_fee_rule rule)
{
	struct invoice v;

	memset(&v, 0, sizeof(v));
	assert_int_equal(billing_price(&standard, rule, emails, days, dim,
	    &v), 0);
	assert_int_equal(v.total, v.fixed_fee + v.extra_fee);
	return v.total;
}

static void
test_seed_examples(void **state)
{
	struct invoice v;
	char m[32];

	(void)state;
	memset(&v, 0, sizeof(v));
	assert_int_equal(billing_price(&standard, FEE_ANY_DAY, 40000, 31, 31,
	    &v), 0);
	assert_int_equal(v.included, 10000);
	assert_int_equal(v.extra, 30000);
	assert_int_equal(v.fixed_fee, 50000);
	assert_int_equal(v.extra_fee, 36000);
	assert_int_equal(v.total, 86000);
	billing_money(v.total, m, sizeof(m));
	assert_string_equal(m, "860.00");
	assert_string_equal(v.currency, "SEK");
	assert_string_equal(v.plan, "standard");

	billing_money(total(10000, 31, 31, FEE_ANY_DAY), m, sizeof(m));
	assert_string_equal(m, "500.00");
	/* 1 extra email: 1.2 ore, rounded half up once: 1 ore */
	billing_money(total(10001, 31, 31, FEE_ANY_DAY), m, sizeof(m));
	assert_string_equal(m, "500.01");
	/* own server all month, nothing sent through the platform */
	assert_int_equal(total(0, 0, 31, FEE_ANY_DAY), 0);
	memset(&v, 0, sizeof(v));
	assert_int_equal(billing_price(&standard, FEE_ANY_DAY, 0, 0, 31, &v),
	    0);
	assert_int_equal(v.fixed_fee, 0);
	assert_int_equal(v.included, 0);
	/* a platform month with no email at all still pays the fixed fee */
	assert_int_equal(total(0, 1, 31, FEE_ANY_DAY), 50000);
	/* no plan in force: nothing is charged */
	memset(&v, 0, sizeof(v));
	assert_int_equal(billing_price(NULL, FEE_ANY_DAY, 40000, 31, 31, &v),
	    0);
	assert_int_equal(v.total, 0);
	assert_int_equal(v.emails, 40000);
}

static void
test_rounding(void **state)
{
	(void)state;
	/* 10,002: 2.4 ore -> 2; 10,003: 3.6 -> 4; 10,005: 6.0 */
	assert_int_equal(total(10002, 30, 30, FEE_ANY_DAY), 50002);
	assert_int_equal(total(10003, 30, 30, FEE_ANY_DAY), 50004);
	assert_int_equal(total(10005, 30, 30, FEE_ANY_DAY), 50006);
	/* exactly half: 0.5 ore rounds up */
	standard.extra_price = 500;
	assert_int_equal(total(10001, 30, 30, FEE_ANY_DAY), 50001);
	assert_int_equal(total(10002, 30, 30, FEE_ANY_DAY), 50001);
	standard.extra_price = 1200;
	/* a million extra emails: 1,200,000 ore exactly, no drift */
	assert_int_equal(total(1010000, 30, 30, FEE_ANY_DAY), 50000 +
	    1200000);
}

static void
test_pro_rata(void **state)
{
	(void)state;
	/* any-day: the whole fee for one day */
	assert_int_equal(total(0, 1, 31, FEE_ANY_DAY), 50000);
	/* pro-rata: 15 of 30 days = 250.00; 1 of 31 = 1612.9 -> 1613 */
	assert_int_equal(total(0, 15, 30, FEE_PRO_RATA), 25000);
	assert_int_equal(total(0, 1, 31, FEE_PRO_RATA), 1613);
	assert_int_equal(total(0, 31, 31, FEE_PRO_RATA), 50000);
	/* included emails are not pro-rated */
	assert_int_equal(total(10000, 15, 30, FEE_PRO_RATA), 25000);
	assert_int_equal(total(40000, 15, 30, FEE_PRO_RATA), 25000 + 36000);
}

static void
test_plan_change(void **state)
{
	static const char text[] =
	    "[listener l]\naddress = 127.0.0.1:2525\nauth = no\n"
	    "trusted_networks = 127.0.0.0/8\n"
	    "[plan standard]\nfixed_fee = 50000\nincluded = 10000\n"
	    "extra_price = 1.2\ncurrency = SEK\nfrom = 2026-01\n"
	    "[plan standard-2027]\nfixed_fee = 60000\nincluded = 12000\n"
	    "extra_price = 0.95\ncurrency = SEK\nfrom = 2027-01\n";
	char err[512];
	struct conf *c;
	const struct conf_plan *p;
	struct invoice v;

	(void)state;
	c = conf_parse("t", text, sizeof(text) - 1, err, sizeof(err));
	if (c == NULL)
		fail_msg("%s", err);
	assert_null(conf_plan_for(c, 202512));
	p = conf_plan_for(c, 202612);
	assert_non_null(p);
	assert_string_equal(p->name, "standard");
	assert_int_equal(p->extra_price, 1200);
	p = conf_plan_for(c, 202701);
	assert_string_equal(p->name, "standard-2027");
	assert_int_equal(p->extra_price, 950);
	assert_string_equal(conf_plan_for(c, 209912)->name, "standard-2027");
	memset(&v, 0, sizeof(v));
	assert_int_equal(billing_price(p, FEE_ANY_DAY, 40000, 31, 31, &v), 0);
	assert_int_equal(v.total, 60000 + 28000 * 950 / 1000);
	conf_free(c);
}

static void
test_conf_errors(void **state)
{
	static const char *const bad[] = {
		"[plan p]\nextra_price = 1.2345\n",
		"[plan p]\nextra_price = 1,2\n",
		"[plan p]\nextra_price = .5\n",
		"[plan p]\nfrom = 2026-13\n",
		"[plan p]\nfrom = 2026-1\n",
		"[plan p]\ncurrency = sek\n",
		"[plan a]\nfrom = 2026-01\n[plan b]\nfrom = 2026-01\n",
		"billing_timezone = Europe/Nowhere\n",
		"billing_timezone = ../../etc/passwd\n",
		"billing_fixed_fee = daily\n",
	};
	char text[512], err[512];
	struct conf *c;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *plan = strchr(bad[i], '[');
		/* global keys first, then the listener, then the plans */
		snprintf(text, sizeof(text), "%s[listener l]\naddress = "
		    "127.0.0.1:2525\nauth = no\ntrusted_networks = ::1/128\n"
		    "%s", plan ? "" : bad[i], plan ? bad[i] : "");
		c = conf_parse("t", text, strlen(text), err, sizeof(err));
		if (c != NULL)
			fail_msg("accepted: %s", bad[i]);
	}
	snprintf(text, sizeof(text), "billing_timezone = CET-1CEST,M3.5.0,"
	    "M10.5.0/3\nbilling_fixed_fee = pro-rata\n[listener l]\naddress "
	    "= 127.0.0.1:2525\nauth = no\ntrusted_networks = ::1/128\n");
	c = conf_parse("t", text, strlen(text), err, sizeof(err));
	if (c == NULL)
		fail_msg("%s", err);
	assert_int_equal(c->billing_fixed_fee, FEE_PRO_RATA);
	assert_true(c->metering);
	assert_int_equal(c->bulk_sender_threshold, 5000);
	conf_free(c);
}

static void
check_day(int64_t t, int32_t day, int64_t start, int64_t end)
{
	struct billing_day d;

	billing_day_of(t, &d);
	assert_int_equal(d.day, day);
	assert_int_equal(d.start, start);
	assert_int_equal(d.end, end);
}

/* both zone forms must agree: the tzdata file and the POSIX rule */
static void
calendar(void)
{
	int64_t s, e;

	/* spring forward: 2026-03-29 01:00 UTC is 02:00 CET = 03:00 CEST;
	 * the local day is 23 hours, from 23:00 UTC the day before */
	check_day(utc(2026, 3, 29, 0, 59, 59), 20260329,
	    utc(2026, 3, 28, 23, 0, 0), utc(2026, 3, 29, 22, 0, 0));
	check_day(utc(2026, 3, 29, 1, 0, 0), 20260329,
	    utc(2026, 3, 28, 23, 0, 0), utc(2026, 3, 29, 22, 0, 0));
	check_day(utc(2026, 3, 28, 22, 59, 59), 20260328,
	    utc(2026, 3, 27, 23, 0, 0), utc(2026, 3, 28, 23, 0, 0));
	check_day(utc(2026, 3, 29, 22, 0, 0), 20260330,
	    utc(2026, 3, 29, 22, 0, 0), utc(2026, 3, 30, 22, 0, 0));
	/* fall back: 2026-10-25 01:00 UTC is 03:00 CEST = 02:00 CET; the
	 * local day is 25 hours */
	check_day(utc(2026, 10, 25, 0, 59, 59), 20261025,
	    utc(2026, 10, 24, 22, 0, 0), utc(2026, 10, 25, 23, 0, 0));
	check_day(utc(2026, 10, 25, 1, 0, 0), 20261025,
	    utc(2026, 10, 24, 22, 0, 0), utc(2026, 10, 25, 23, 0, 0));
	check_day(utc(2026, 10, 25, 22, 59, 59), 20261025,
	    utc(2026, 10, 24, 22, 0, 0), utc(2026, 10, 25, 23, 0, 0));
	check_day(utc(2026, 10, 24, 21, 59, 59), 20261024,
	    utc(2026, 10, 23, 22, 0, 0), utc(2026, 10, 24, 22, 0, 0));
	/* month ends at local midnight */
	assert_int_equal(billing_month_of(utc(2026, 10, 31, 22, 59, 59)),
	    202610);
	assert_int_equal(billing_month_of(utc(2026, 10, 31, 23, 0, 0)),
	    202611);
	assert_int_equal(billing_month_of(utc(2026, 10, 31, 23, 30, 0)),
	    202611);
	assert_int_equal(billing_month_of(utc(2026, 3, 31, 21, 59, 59)),
	    202603);
	assert_int_equal(billing_month_of(utc(2026, 3, 31, 22, 0, 0)),
	    202604);
	assert_int_equal(billing_month_of(utc(2026, 12, 31, 23, 0, 0)),
	    202701);
	billing_month_bounds(202610, &s, &e);
	assert_int_equal(s, utc(2026, 9, 30, 22, 0, 0));
	assert_int_equal(e, utc(2026, 10, 31, 23, 0, 0));
	billing_month_bounds(202603, &s, &e);
	assert_int_equal(s, utc(2026, 2, 28, 23, 0, 0));
	assert_int_equal(e, utc(2026, 3, 31, 22, 0, 0));
}

static void
test_calendar(void **state)
{
	(void)state;
	assert_int_equal(billing_tz_init("Europe/Stockholm"), 0);
	calendar();
	assert_int_equal(billing_tz_init("CET-1CEST,M3.5.0,M10.5.0/3"), 0);
	calendar();
	assert_int_equal(billing_days_in_month(202602), 28);
	assert_int_equal(billing_days_in_month(202802), 29);
	assert_int_equal(billing_days_in_month(210002), 28);
	assert_int_equal(billing_days_in_month(200002), 29);
	assert_int_equal(billing_month_parse("2026-10"), 202610);
	assert_int_equal(billing_month_parse("2026-00"), -1);
	assert_int_equal(billing_month_parse("2026-1"), -1);
	assert_int_equal(billing_month_parse("2026/10"), -1);
	assert_int_equal(billing_month_next(202612), 202701);
	assert_int_equal(billing_month_prev(202701), 202612);
}

static void
test_platform_days(void **state)
{
	struct billing_route_change h[] = {
		{ utc(2026, 1, 5, 10, 0, 0), ROUTE_OWN_SERVER },
		/* 2026-10-15 14:00 local: platform from day 15 */
		{ utc(2026, 10, 15, 12, 0, 0), ROUTE_PLATFORM_RELAY },
		/* 2026-10-20 10:00 local: own server again; day 20 counts */
		{ utc(2026, 10, 20, 8, 0, 0), ROUTE_OWN_SERVER },
	};
	struct billing_route_change late[] = {
		/* 2026-10-31 23:30 UTC is 2026-11-01 00:30 local */
		{ utc(2026, 10, 31, 23, 30, 0), ROUTE_PLATFORM_SMARTHOST },
	};
	enum route_kind end;

	(void)state;
	assert_int_equal(billing_tz_init("Europe/Stockholm"), 0);
	assert_int_equal(billing_platform_days(h, 3, 202610, 0, &end), 6);
	assert_int_equal(end, ROUTE_OWN_SERVER);
	/* a day with metered mail (a user's own platform route) counts */
	assert_int_equal(billing_platform_days(h, 3, 202610,
	    UINT32_C(1) << 24, &end), 7);
	assert_int_equal(billing_platform_days(h, 3, 202609, 0, &end), 0);
	assert_int_equal(billing_platform_days(h, 1, 202610, 0, &end), 0);
	assert_int_equal(billing_platform_days(h, 2, 202610, 0, &end), 17);
	assert_int_equal(billing_platform_days(h, 2, 202611, 0, &end), 30);
	assert_int_equal(end, ROUTE_PLATFORM_RELAY);
	assert_int_equal(billing_platform_days(late, 1, 202610, 0, &end), 0);
	assert_int_equal(end, ROUTE_NONE);
	assert_int_equal(billing_platform_days(late, 1, 202611, 0, &end), 30);
	assert_int_equal(end, ROUTE_PLATFORM_SMARTHOST);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_examples),
		cmocka_unit_test(test_rounding),
		cmocka_unit_test(test_pro_rata),
		cmocka_unit_test(test_plan_change),
		cmocka_unit_test(test_conf_errors),
		cmocka_unit_test(test_calendar),
		cmocka_unit_test(test_platform_days),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

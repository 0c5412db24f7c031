/*
 * billing.c - the billing calendar and the price of a month (see
 * billing.h): local days and months by localtime_r/mktime in the zone
 * set once at start, integer money with one half-up rounding per amount.
 *
 * Must never: use floating point for money, or change TZ once threads
 * run.
 */
#include "billing/billing.h"
#include "common/log.h"
#include "common/util.h"
#include "tenant/tenant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int
billing_tz_init(const char *zone)
{
	struct tm tm;
	time_t t = 0;

	if (zone == NULL || zone[0] == '\0' || setenv("TZ", zone, 1) != 0)
		return -1;
	tzset();
	return localtime_r(&t, &tm) == NULL ? -1 : 0;
}

static int64_t billing_fixed_now = -1;	/* -1: not read yet, 0: none */

static void
billing_clock_read(void)
{
	const char *v;
	char *end;
	long long n;

	if (billing_fixed_now != -1)
		return;
	billing_fixed_now = 0;
	if ((v = getenv("OMBUD_TEST_NOW")) == NULL || *v == '\0')
		return;
	n = strtoll(v, &end, 10);
	if (*end != '\0' || n <= 0)
		fatalx("OMBUD_TEST_NOW: '%s' is not unix seconds", v);
	billing_fixed_now = n;
}

int64_t
billing_now(void)
{
	billing_clock_read();
	return billing_fixed_now > 0 ? billing_fixed_now :
	    (int64_t)time(NULL);
}

bool
billing_clock_fixed(void)
{
	billing_clock_read();
	return billing_fixed_now > 0;
}

static void
billing_local(int64_t t, struct tm *tm)
{
	time_t tt = (time_t)t;

	if (localtime_r(&tt, tm) == NULL)
		fatalx("billing: localtime of %lld", (long long)t);
}

int64_t
billing_midnight(int32_t day)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = day / 10000 - 1900;
	tm.tm_mon = day / 100 % 100 - 1;
	tm.tm_mday = day % 100;
	tm.tm_isdst = -1;		/* whatever is in force then */
	return (int64_t)mktime(&tm);
}

void
billing_day_of(int64_t t, struct billing_day *out)
{
	struct tm tm;

	billing_local(t, &tm);
	out->day = (int32_t)((tm.tm_year + 1900) * 10000 +
	    (tm.tm_mon + 1) * 100 + tm.tm_mday);
	out->start = billing_midnight(out->day);
	out->end = billing_midnight(out->day + 1);	/* mday 32: next */
}

int32_t
billing_month_of(int64_t t)
{
	struct tm tm;

	billing_local(t, &tm);
	return (int32_t)((tm.tm_year + 1900) * 100 + tm.tm_mon + 1);
}

int32_t
billing_month_next(int32_t month)
{
	return month % 100 == 12 ? (month / 100 + 1) * 100 + 1 : month + 1;
}

int32_t
billing_month_prev(int32_t month)
{
	return month % 100 == 1 ? (month / 100 - 1) * 100 + 12 : month - 1;
}

void
billing_month_bounds(int32_t month, int64_t *start, int64_t *end)
{
	*start = billing_midnight(month * 100 + 1);
	*end = billing_midnight(billing_month_next(month) * 100 + 1);
}

int
billing_days_in_month(int32_t month)
{
	static const int dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
	    30, 31 };
	int y = month / 100, m = month % 100;

	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return dim[m - 1];
}

int32_t
billing_month_parse(const char *s)
{
	int y = 0, m = 0;

	if (s == NULL || strlen(s) != 7 || s[4] != '-')
		return -1;
	for (int i = 0; i < 7; i++) {
		if (i == 4)
			continue;
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (i < 4)
			y = y * 10 + (s[i] - '0');
		else
			m = m * 10 + (s[i] - '0');
	}
	if (y < 1970 || m < 1 || m > 12)
		return -1;
	return y * 100 + m;
}

int
billing_platform_days(const struct billing_route_change *h, size_t n,
    int32_t month, uint32_t used_days, enum route_kind *route_end)
{
	int ndays = billing_days_in_month(month), count = 0;
	enum route_kind cur = ROUTE_NONE;
	size_t i = 0;

	for (int d = 1; d <= ndays; d++) {
		int64_t ds = billing_midnight(month * 100 + d);
		int64_t de = billing_midnight(month * 100 + d + 1);
		bool platform;

		/* the route in force at the day's start ... */
		while (i < n && h[i].at <= ds)
			cur = h[i++].route;
		platform = route_is_platform(cur);
		/* ... and every change during the day */
		while (i < n && h[i].at < de) {
			cur = h[i++].route;
			platform = platform || route_is_platform(cur);
		}
		if (platform || (used_days & (UINT32_C(1) << (d - 1))))
			count++;
	}
	*route_end = cur;
	return count;
}

/* round-half-up(a * b / div) in 64 bits, or -1. */
static int
billing_muldiv(uint64_t a, uint64_t b, uint64_t div, uint64_t *out)
{
	unsigned __int128 p = (unsigned __int128)a * b;

	p = (p + div / 2) / div;
	if (p > UINT64_MAX)
		return -1;
	*out = (uint64_t)p;
	return 0;
}

int
billing_price(const struct conf_plan *p, enum billing_fee_rule rule,
    uint64_t emails, int platform_days, int days_in_month,
    struct invoice *out)
{
	out->emails = emails;
	out->included = out->extra = 0;
	out->fixed_fee = out->extra_fee = out->total = 0;
	out->platform_days = platform_days;
	out->days_in_month = days_in_month;
	out->fee_rule = rule;
	out->plan[0] = '\0';
	out->currency[0] = '\0';
	if (p == NULL)
		return 0;
	strlcpy_ok(out->plan, p->name, sizeof(out->plan));
	strlcpy_ok(out->currency, p->currency, sizeof(out->currency));
	if (platform_days <= 0)
		return 0;
	if (rule == FEE_PRO_RATA && platform_days < days_in_month) {
		if (billing_muldiv(p->fixed_fee, (uint64_t)platform_days,
		    (uint64_t)days_in_month, &out->fixed_fee) != 0)
			return -1;
	} else
		out->fixed_fee = p->fixed_fee;
	out->included = p->included;
	out->extra = emails > p->included ? emails - p->included : 0;
	if (billing_muldiv(out->extra, p->extra_price, 1000,
	    &out->extra_fee) != 0 ||
	    out->fixed_fee > UINT64_MAX - out->extra_fee)
		return -1;
	out->total = out->fixed_fee + out->extra_fee;
	return 0;
}

void
billing_money(uint64_t minor, char *out, size_t outlen)
{
	snprintf(out, outlen, "%llu.%02u", (unsigned long long)(minor / 100),
	    (unsigned)(minor % 100));
}

void
billing_month_text(int32_t month, char *out, size_t outlen)
{
	snprintf(out, outlen, "%04d-%02d", month / 100, month % 100);
}

void
billing_day_text(int32_t day, char *out, size_t outlen)
{
	snprintf(out, outlen, "%04d-%02d-%02d", day / 10000, day / 100 % 100,
	    day % 100);
}

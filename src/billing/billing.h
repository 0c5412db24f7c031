/*
 * billing.h - the arithmetic of the bill: the billing calendar (the local
 * day and month of an instant in billing_timezone, DST-correct) and the
 * price of a month's usage under a [plan] (fixed fee, included emails,
 * exact sub-öre price per extra email, one documented rounding).
 *
 * Pure functions but for the time zone: billing_tz_init() sets TZ for
 * the whole process once, before any thread starts (`ombud serve` calls
 * it first thing; the CLI too), and every calendar function then uses
 * localtime_r/mktime, which read that zone and never the environment
 * again.  Nothing else in ombud uses local time (logs, Received and DSN
 * dates are UTC), so the process-wide zone changes nothing else.
 *
 * Money is integers in the currency's minor unit (öre), never floating
 * point.  A price per extra email is in thousandths of the minor unit
 * (1.2 öre = 1200), so it is exact; the extra fee is computed exactly
 * and rounded half up to a whole minor unit once, on the invoice line;
 * a pro-rata fixed fee is rounded the same way; total = fixed + extra.
 *
 * Must never: use floating point for money; round more than once per
 * amount; call setenv("TZ") after threads exist.
 */
#ifndef OMBUD_BILLING_H
#define OMBUD_BILLING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "store/store.h"

/* Set the process's zone (conf's billing_timezone, already checked by
 * the parser).  Single-threaded callers only.  0, or -1 if the zone
 * does not load. */
int billing_tz_init(const char *zone);

/*
 * The billing clock: time(NULL), unless the environment variable
 * OMBUD_TEST_NOW holds unix seconds (read once; a test hook so that the
 * black-box tests can bill messages at month and DST edges).  With it
 * set, the meter also counts every message at that instant instead of
 * its acceptance time.
 */
int64_t billing_now(void);
bool billing_clock_fixed(void);

/* The local day holding instant t: YYYYMMDD and its bounds [start, end)
 * in unix seconds (23, 24 or 25 hours long). */
struct billing_day {
	int32_t		day;		/* YYYYMMDD */
	int64_t		start, end;
};
void billing_day_of(int64_t t, struct billing_day *out);

/* YYYYMM of instant t, local. */
int32_t billing_month_of(int64_t t);
/* The local midnight starting day YYYYMMDD (may be given as day 32 of
 * a month etc.: mktime normalises). */
int64_t billing_midnight(int32_t day);
/* [start, end) of month YYYYMM. */
void billing_month_bounds(int32_t month, int64_t *start, int64_t *end);
int billing_days_in_month(int32_t month);
int32_t billing_month_next(int32_t month);
int32_t billing_month_prev(int32_t month);
/* "2026-10" -> 202610; -1 if malformed. */
int32_t billing_month_parse(const char *s);

/* A company's route from an instant on (from the audit log). */
struct billing_route_change {
	int64_t		 at;
	enum route_kind	 route;
};

/*
 * Days of month YYYYMM on which the company was on a platform route at
 * any moment: history (sorted by at) says which route held from when;
 * bit d-1 of used_days marks a day with metered emails, which counts too
 * (a user with a platform route of their own in an own-server company).
 * *route_end gets the route in force at the end of the month (ROUTE_NONE
 * before any).
 */
int billing_platform_days(const struct billing_route_change *h, size_t n,
    int32_t month, uint32_t used_days, enum route_kind *route_end);

/*
 * Price emails (with platform_days of days_in_month on a platform route)
 * under plan p (NULL: no plan, nothing charged) and rule, into the plan,
 * currency, counts and money fields of out.  No platform day: nothing at all.  Else the fixed fee
 * (whole for any-day; round-half-up(fee * platform_days / days) for
 * pro-rata), the plan's included emails (never pro-rated), extra =
 * emails beyond them, extra_fee = round-half-up(extra * extra_price /
 * 1000).  -1 if an amount would not fit in 64 bits.
 */
int billing_price(const struct conf_plan *p, enum billing_fee_rule rule,
    uint64_t emails, int platform_days, int days_in_month,
    struct invoice *out);

/* minor units -> "860.00" (two decimals). */
void billing_money(uint64_t minor, char *out, size_t outlen);
/* YYYYMM -> "2026-10"; YYYYMMDD -> "2026-10-31". */
void billing_month_text(int32_t month, char *out, size_t outlen);
void billing_day_text(int32_t day, char *out, size_t outlen);

#endif

/*
 * test_dkim_keys.c - DKIM key records and the rotation rules
 * (dkim_keys.c): a generated key's record matches itself and nothing
 * else, and keys move pending -> active -> retiring -> retired only as
 * their records are seen and the grace period passes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "auth/dkim_keys.h"

static void
test_generate(void **state)
{
	struct dkim_keyrec r, e;
	char err[128], p[2048];

	(void)state;
	assert_int_equal(dkimkey_generate("acme.example", DKIM_KEY_RSA, 0,
	    NULL, 1795392000 /* 2026-11-23 */, &r, err, sizeof(err)), 0);
	assert_string_equal(r.selector, "o20261123r");
	assert_string_equal(r.algorithm, "rsa-sha256");
	assert_int_equal(r.bits, 2048);
	assert_int_equal(r.state, DKIMKEY_PENDING);
	assert_non_null(strstr(r.private_pem, "BEGIN PRIVATE KEY"));
	assert_true(strncmp(r.record, "v=DKIM1; k=rsa; p=MIIB", 22) == 0);
	assert_int_equal(dkimkey_generate("acme.example", DKIM_KEY_ED25519, 0,
	    "sel-2", 0, &e, err, sizeof(err)), 0);
	assert_string_equal(e.selector, "sel-2");
	assert_string_equal(e.algorithm, "ed25519-sha256");
	assert_true(strncmp(e.record, "v=DKIM1; k=ed25519; p=", 22) == 0);

	/* published as given, or split into strings that DNS joins, with
	 * spaces: matches; another key, another k=, a revoked p=: no */
	assert_true(dkimkey_published_matches(&r, r.record, strlen(r.record)));
	assert_true(dkimkey_record_p(r.record, strlen(r.record), p,
	    sizeof(p)));
	{
		char spaced[2200];

		snprintf(spaced, sizeof(spaced), "v=DKIM1;k=rsa; t=s; p=%.100s "
		    "%s", p, p + 100);
		assert_true(dkimkey_published_matches(&r, spaced,
		    strlen(spaced)));
		snprintf(spaced, sizeof(spaced), "p=%s", p);	/* k=rsa default */
		assert_true(dkimkey_published_matches(&r, spaced,
		    strlen(spaced)));
		snprintf(spaced, sizeof(spaced), "v=DKIM1; k=ed25519; p=%s", p);
		assert_false(dkimkey_published_matches(&r, spaced,
		    strlen(spaced)));
		snprintf(spaced, sizeof(spaced), "v=DKIM2; p=%s", p);
		assert_false(dkimkey_published_matches(&r, spaced,
		    strlen(spaced)));
	}
	assert_false(dkimkey_published_matches(&r, e.record,
	    strlen(e.record)));
	assert_false(dkimkey_published_matches(&r, "v=DKIM1; k=rsa; p=", 18));
	assert_false(dkimkey_published_matches(&r, "", 0));
	dkim_keyrec_clear(&r);
	dkim_keyrec_clear(&e);
	assert_null(r.private_pem);
}

static void
key(struct dkim_keyrec *k, int64_t id, const char *alg,
    enum dkim_key_state st, int64_t created)
{
	memset(k, 0, sizeof(*k));
	k->id = id;
	snprintf(k->algorithm, sizeof(k->algorithm), "%s", alg);
	k->state = st;
	k->created = created;
}

static void
test_rotate(void **state)
{
	struct dkim_keyrec k[4];
	bool pub[4] = { false, false, false, false };
	const int64_t grace = 7 * 86400;

	(void)state;
	/* not published: nothing signs */
	key(&k[0], 1, "rsa-sha256", DKIMKEY_PENDING, 100);
	key(&k[1], 2, "ed25519-sha256", DKIMKEY_PENDING, 100);
	assert_int_equal(dkimkey_rotate(k, 2, pub, 1000, grace), 0);
	assert_int_equal(k[0].state, DKIMKEY_PENDING);
	/* the rsa record appears: only it becomes active */
	pub[0] = true;
	assert_int_equal(dkimkey_rotate(k, 2, pub, 2000, grace), 1);
	assert_int_equal(k[0].state, DKIMKEY_ACTIVE);
	assert_int_equal(k[0].activated_at, 2000);
	assert_int_equal(k[0].published_at, 2000);
	assert_int_equal(k[1].state, DKIMKEY_PENDING);
	pub[1] = true;
	assert_int_equal(dkimkey_rotate(k, 2, pub, 3000, grace), 1);
	assert_int_equal(k[1].state, DKIMKEY_ACTIVE);
	/* an active key whose record went away stays active (the check
	 * reports the domain as failing) */
	pub[0] = false;
	assert_int_equal(dkimkey_rotate(k, 2, pub, 3500, grace), 0);
	assert_int_equal(k[0].state, DKIMKEY_ACTIVE);
	assert_int_equal(k[0].published_at, 3000);
	pub[0] = true;
	/* rotation: a new rsa key, pending until seen */
	key(&k[2], 3, "rsa-sha256", DKIMKEY_PENDING, 4000);
	assert_int_equal(dkimkey_rotate(k, 3, pub, 5000, grace), 0);
	pub[2] = true;
	assert_int_equal(dkimkey_rotate(k, 3, pub, 6000, grace), 2);
	assert_int_equal(k[2].state, DKIMKEY_ACTIVE);
	assert_int_equal(k[0].state, DKIMKEY_RETIRING);
	assert_int_equal(k[0].retire_at, 6000 + grace);
	assert_int_equal(k[1].state, DKIMKEY_ACTIVE);	/* other algorithm */
	/* the grace period */
	assert_int_equal(dkimkey_rotate(k, 3, pub, 6000 + grace - 1, grace),
	    0);
	assert_int_equal(dkimkey_rotate(k, 3, pub, 6000 + grace, grace), 1);
	assert_int_equal(k[0].state, DKIMKEY_RETIRED);
	/* two new rsa keys published at once: the newer one wins, never two
	 * active of one algorithm */
	key(&k[0], 4, "rsa-sha256", DKIMKEY_PENDING, 9000);
	key(&k[3], 5, "rsa-sha256", DKIMKEY_PENDING, 9001);
	pub[0] = pub[3] = true;
	dkimkey_rotate(k, 4, pub, 10000, grace);
	assert_int_equal(k[3].state, DKIMKEY_ACTIVE);
	assert_int_equal(k[0].state, DKIMKEY_PENDING);
	assert_int_equal(k[2].state, DKIMKEY_RETIRING);
	{
		int active = 0;
		for (int i = 0; i < 4; i++)
			active += k[i].state == DKIMKEY_ACTIVE &&
			    strcmp(k[i].algorithm, "rsa-sha256") == 0;
		assert_int_equal(active, 1);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_rotate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_queue_id.c - queue IDs: format, validation, uniqueness, order,
 * and uniqueness across threads and a fork.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "queue/queue_id.h"

#define N_IDS		1000000
#define N_THREADS	4
#define N_PER_THREAD	50000

static int
cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, QUEUE_ID_LEN);
}

/* Sort and check that no two of n ids are equal. */
static void
assert_all_distinct(char (*ids)[QUEUE_ID_LEN + 1], size_t n)
{
	qsort(ids, n, sizeof(*ids), cmp_id);
	for (size_t i = 1; i < n; i++)
		if (memcmp(ids[i - 1], ids[i], QUEUE_ID_LEN) == 0)
			fail_msg("duplicate id %s", ids[i]);
}

static void
test_format(void **state)
{
	char id[QUEUE_ID_LEN + 1];

	(void)state;
	memset(id, 'X', sizeof(id));
	queue_id_new(id);
	assert_int_equal(strlen(id), QUEUE_ID_LEN);
	assert_true(queue_id_valid(id));
	for (size_t i = 0; i < QUEUE_ID_LEN; i++)
		assert_non_null(strchr("0123456789abcdef", id[i]));
}

static void
test_valid_invalid(void **state)
{
	static const char *const good[] = {
		"00000000000000000000",
		"0123456789abcdef0123",
		"ffffffffffffffffffff",
	};
	static const char *const bad[] = {
		"",
		"0123456789abcdef012",		/* 19 */
		"0123456789abcdef01234",	/* 21 */
		"0123456789ABCDEF0123",		/* upper case */
		"0123456789abcdeg0123",		/* not hex */
		"0123456789abcdef012 ",
		" 0123456789abcdef012",
		"0123456789abcdef012\n",
		"../../../etc/passwd0",
		"0123456789abcdef01-3",
	};

	(void)state;
	assert_false(queue_id_valid(NULL));
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(queue_id_valid(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (queue_id_valid(bad[i]))
			fail_msg("accepted '%s'", bad[i]);
}

static void
test_unique_1e6(void **state)
{
	char (*ids)[QUEUE_ID_LEN + 1] = malloc(N_IDS * sizeof(*ids));

	(void)state;
	assert_non_null(ids);
	for (size_t i = 0; i < N_IDS; i++) {
		queue_id_new(ids[i]);
		if (!queue_id_valid(ids[i]))
			fail_msg("invalid id %s", ids[i]);
	}
	/* time-ordered: the 12 time digits never go backwards here */
	for (size_t i = 1; i < N_IDS; i++)
		assert_true(memcmp(ids[i - 1], ids[i], 12) <= 0);
	assert_all_distinct(ids, N_IDS);
	free(ids);
}

static void *
gen_thread(void *arg)
{
	char (*ids)[QUEUE_ID_LEN + 1] = arg;

	for (size_t i = 0; i < N_PER_THREAD; i++)
		queue_id_new(ids[i]);
	return NULL;
}

static void
test_unique_threads(void **state)
{
	size_t n = N_THREADS * N_PER_THREAD;
	char (*ids)[QUEUE_ID_LEN + 1] = malloc(n * sizeof(*ids));
	pthread_t th[N_THREADS];

	(void)state;
	assert_non_null(ids);
	for (int t = 0; t < N_THREADS; t++)
		assert_int_equal(pthread_create(&th[t], NULL, gen_thread,
		    ids + (size_t)t * N_PER_THREAD), 0);
	for (int t = 0; t < N_THREADS; t++)
		pthread_join(th[t], NULL);
	assert_all_distinct(ids, n);
	free(ids);
}

/* Parent and child generating at the same moment must not collide. */
static void
test_unique_fork(void **state)
{
	enum { N = 20000 };
	char (*ids)[QUEUE_ID_LEN + 1] = malloc(2 * N * sizeof(*ids));
	int p[2];
	pid_t pid;
	size_t got = 0;
	int st;

	(void)state;
	assert_non_null(ids);
	queue_id_new(ids[0]);		/* initialise before forking */
	assert_int_equal(pipe(p), 0);
	if ((pid = fork()) == 0) {
		close(p[0]);
		for (int i = 0; i < N; i++) {
			char id[QUEUE_ID_LEN + 1];
			queue_id_new(id);
			if (write(p[1], id, QUEUE_ID_LEN + 1) !=
			    QUEUE_ID_LEN + 1)
				_exit(1);
		}
		_exit(0);
	}
	assert_true(pid > 0);
	close(p[1]);
	for (int i = 0; i < N; i++)
		queue_id_new(ids[i]);
	while (got < (size_t)N * (QUEUE_ID_LEN + 1)) {
		ssize_t r = read(p[0], (char *)ids[N] + got,
		    (size_t)N * (QUEUE_ID_LEN + 1) - got);
		assert_true(r > 0);
		got += (size_t)r;
	}
	close(p[0]);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_all_distinct(ids, 2 * N);
	free(ids);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_valid_invalid),
		cmocka_unit_test(test_unique_1e6),
		cmocka_unit_test(test_unique_threads),
		cmocka_unit_test(test_unique_fork),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_workq.c - the worker pool: work runs on workers, done on the loop
 * thread, every job completes, workq_free drains queued jobs (and jobs
 * their done callbacks push) on the caller's thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "common/workq.h"

#define NJOBS	2000

struct tctx {
	struct event_base	*base;
	struct workq		*wq;
	pthread_t		 loop;		/* the loop thread */
	atomic_int		 worked;
	atomic_int		 off_loop;	/* work ran off the loop thread */
	int			 done;		/* only touched by done() */
	int			 done_off_loop;
	int			 expect;
	int			 chain;		/* jobs left to push from done */
};

struct tjob {
	struct tctx	*t;
	int		 sleep_us;
	bool		 worked;
};

static void
job_work(void *arg)
{
	struct tjob *j = arg;

	if (j->sleep_us)
		usleep((useconds_t)j->sleep_us);
	j->worked = true;
	if (!pthread_equal(pthread_self(), j->t->loop))
		atomic_fetch_add(&j->t->off_loop, 1);
	atomic_fetch_add(&j->t->worked, 1);
}

static void
job_done(void *arg)
{
	struct tjob *j = arg;
	struct tctx *t = j->t;

	assert_true(j->worked);
	if (!pthread_equal(pthread_self(), t->loop))
		t->done_off_loop++;
	t->done++;
	if (t->chain > 0) {
		struct tjob *n = calloc(1, sizeof(*n));
		n->t = t;
		t->chain--;
		workq_push(t->wq, job_work, job_done, n);
	}
	free(j);
	if (t->base && t->done == t->expect)
		event_base_loopbreak(t->base);
}

static void
ctx_init(struct tctx *t, int nthreads)
{
	memset(t, 0, sizeof(*t));
	assert_int_equal(evthread_use_pthreads(), 0);
	t->base = event_base_new();
	assert_non_null(t->base);
	t->loop = pthread_self();
	t->wq = workq_new(t->base, nthreads);
	assert_non_null(t->wq);
}

static void
push_jobs(struct tctx *t, int n, int sleep_us)
{
	for (int i = 0; i < n; i++) {
		struct tjob *j = calloc(1, sizeof(*j));
		assert_non_null(j);
		j->t = t;
		j->sleep_us = sleep_us;
		workq_push(t->wq, job_work, job_done, j);
	}
}

/* A watchdog so that a lost wake-up fails the test instead of hanging. */
static void
watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	fail_msg("timeout: jobs did not complete");
}

static void
dispatch(struct tctx *t)
{
	struct timeval tv = { 60, 0 };
	struct event *ev = evtimer_new(t->base, watchdog_cb, NULL);

	evtimer_add(ev, &tv);
	event_base_dispatch(t->base);
	event_free(ev);
}

static void
test_many_jobs(void **state)
{
	struct tctx t;

	ctx_init(&t, 4);
	t.expect = NJOBS;
	push_jobs(&t, NJOBS, 0);
	dispatch(&t);
	assert_int_equal(t.done, NJOBS);
	assert_int_equal(atomic_load(&t.worked), NJOBS);
	assert_int_equal(atomic_load(&t.off_loop), NJOBS);
	assert_int_equal(t.done_off_loop, 0);
	workq_free(t.wq);
	event_base_free(t.base);
}

/* Jobs pushed from done callbacks, one thread, in several rounds. */
static void
test_push_from_done(void **state)
{
	struct tctx t;

	ctx_init(&t, 1);
	t.chain = 50;
	t.expect = 60;
	push_jobs(&t, 10, 100);
	dispatch(&t);
	assert_int_equal(t.done, 60);
	assert_int_equal(t.chain, 0);
	assert_int_equal(t.done_off_loop, 0);
	workq_free(t.wq);
	event_base_free(t.base);
}

/* workq_free without a running loop still runs every job and done. */
static void
test_free_drains(void **state)
{
	struct tctx t;

	ctx_init(&t, 3);
	t.chain = 5;		/* pushed during the drain: run inline */
	push_jobs(&t, 40, 2000);
	workq_free(t.wq);
	assert_int_equal(atomic_load(&t.worked), 45);
	assert_int_equal(t.done, 45);
	assert_int_equal(t.done_off_loop, 0);
	event_base_free(t.base);
}

static void
count_work(void *arg)
{
	atomic_fetch_add((atomic_int *)arg, 1);
}

/* done may be NULL; an idle pool frees at once. */
static void
test_no_done_and_idle(void **state)
{
	struct tctx t;
	atomic_int n = 0;

	ctx_init(&t, 2);
	workq_free(t.wq);
	t.wq = workq_new(t.base, 2);
	for (int i = 0; i < 100; i++)
		workq_push(t.wq, count_work, NULL, &n);
	workq_free(t.wq);
	assert_int_equal(atomic_load(&n), 100);
	event_base_free(t.base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many_jobs),
		cmocka_unit_test(test_push_from_done),
		cmocka_unit_test(test_free_drains),
		cmocka_unit_test(test_no_done_and_idle),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

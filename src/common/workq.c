/*
 * workq.c - a fixed pool of worker threads fed by a mutex + condition
 * variable job queue.  work(arg) runs on a worker; the finished job goes
 * on a completed list and an eventfd wakes the event loop, whose callback
 * runs done(arg) on the loop thread.  The wake-up does not depend on
 * libevent's thread support: a worker only ever writes to the eventfd.
 *
 * workq_free() stops the pool gracefully: workers finish every queued job
 * before they exit, then the remaining done callbacks run on the caller's
 * thread (which must be the loop thread, with the loop no longer
 * dispatching), including the work of jobs that those callbacks push.
 *
 * Must never: run a done callback on a worker, touch the event base from
 * a worker, drop a queued job, or let a worker take a signal meant for
 * the event loop (workers block every signal).
 */
#include "common/workq.h"
#include "common/log.h"
#include "common/util.h"

#include <sys/eventfd.h>
#include <sys/queue.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#define WORKQ_MAX_THREADS	256

struct workq_job {
	TAILQ_ENTRY(workq_job)	 entry;
	workq_fn		 work;
	workq_fn		 done;
	void			*arg;
};

TAILQ_HEAD(workq_list, workq_job);

struct workq {
	struct event_base	*base;
	struct event		*ev_done;
	int			 efd;
	pthread_mutex_t		 mtx;
	pthread_cond_t		 cv;
	struct workq_list	 pending;	/* waiting for a worker */
	struct workq_list	 completed;	/* waiting for done() */
	bool			 stopping;
	int			 nthreads;
	pthread_t		*threads;
};

static void
workq_lock(struct workq *wq)
{
	int e = pthread_mutex_lock(&wq->mtx);

	if (e != 0)
		fatalx("workq: pthread_mutex_lock: %s", strerror(e));
}

static void
workq_unlock(struct workq *wq)
{
	int e = pthread_mutex_unlock(&wq->mtx);

	if (e != 0)
		fatalx("workq: pthread_mutex_unlock: %s", strerror(e));
}

/* Tell the loop that the completed list went from empty to non-empty. */
static void
workq_wake(struct workq *wq)
{
	uint64_t one = 1;

	while (write(wq->efd, &one, sizeof(one)) < 0) {
		if (errno == EINTR)
			continue;
		/* EAGAIN: the counter is saturated, the loop is woken. */
		if (errno == EAGAIN)
			return;
		fatal("workq: eventfd write");
	}
}

static void *
workq_thread(void *arg)
{
	struct workq *wq = arg;
	struct workq_job *j;
	bool wake;
	int e;

	workq_lock(wq);
	for (;;) {
		while (TAILQ_EMPTY(&wq->pending) && !wq->stopping)
			if ((e = pthread_cond_wait(&wq->cv, &wq->mtx)) != 0)
				fatalx("workq: pthread_cond_wait: %s",
				    strerror(e));
		/* Stopping only ends a worker once the queue is empty. */
		if ((j = TAILQ_FIRST(&wq->pending)) == NULL)
			break;
		TAILQ_REMOVE(&wq->pending, j, entry);
		workq_unlock(wq);

		j->work(j->arg);

		workq_lock(wq);
		wake = TAILQ_EMPTY(&wq->completed);
		TAILQ_INSERT_TAIL(&wq->completed, j, entry);
		workq_unlock(wq);
		/* A wake-up whose job the loop already took is harmless. */
		if (wake)
			workq_wake(wq);
		workq_lock(wq);
	}
	workq_unlock(wq);
	return NULL;
}

/* Run the done callbacks of a list taken off the queue, freeing it. */
static void
workq_run_done(struct workq_list *list)
{
	struct workq_job *j;

	while ((j = TAILQ_FIRST(list)) != NULL) {
		TAILQ_REMOVE(list, j, entry);
		if (j->done)
			j->done(j->arg);
		free(j);
	}
}

static void
workq_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct workq *wq = arg;
	struct workq_list list = TAILQ_HEAD_INITIALIZER(list);
	uint64_t n;

	/* Reset the counter before taking the list: a job completed after
	 * the read either is in the list we take or wakes us again. */
	while (read(fd, &n, sizeof(n)) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			break;
		fatal("workq: eventfd read");
	}
	workq_lock(wq);
	TAILQ_CONCAT(&list, &wq->completed, entry);
	workq_unlock(wq);
	workq_run_done(&list);
}

struct workq *
workq_new(struct event_base *base, int nthreads)
{
	struct workq *wq;
	sigset_t all, old;
	int e;

	if (base == NULL || nthreads < 1 || nthreads > WORKQ_MAX_THREADS)
		fatalx("workq_new: %d threads (1 to %d)", nthreads,
		    WORKQ_MAX_THREADS);
	wq = xcalloc(1, sizeof(*wq));
	wq->base = base;
	TAILQ_INIT(&wq->pending);
	TAILQ_INIT(&wq->completed);
	if ((e = pthread_mutex_init(&wq->mtx, NULL)) != 0 ||
	    (e = pthread_cond_init(&wq->cv, NULL)) != 0)
		fatalx("workq: pthread init: %s", strerror(e));
	if ((wq->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		fatal("workq: eventfd");
	wq->ev_done = event_new(base, wq->efd, EV_READ | EV_PERSIST,
	    workq_done_cb, wq);
	if (wq->ev_done == NULL || event_add(wq->ev_done, NULL) != 0)
		fatalx("workq: cannot register the completion event");

	/* Workers inherit the mask: signals stay with the loop thread. */
	sigfillset(&all);
	if ((e = pthread_sigmask(SIG_SETMASK, &all, &old)) != 0)
		fatalx("workq: pthread_sigmask: %s", strerror(e));
	wq->threads = xcalloc((size_t)nthreads, sizeof(*wq->threads));
	for (wq->nthreads = 0; wq->nthreads < nthreads; wq->nthreads++) {
		e = pthread_create(&wq->threads[wq->nthreads], NULL,
		    workq_thread, wq);
		if (e != 0)
			fatalx("workq: pthread_create: %s", strerror(e));
		(void)pthread_setname_np(wq->threads[wq->nthreads],
		    "ombud-work");
	}
	if ((e = pthread_sigmask(SIG_SETMASK, &old, NULL)) != 0)
		fatalx("workq: pthread_sigmask: %s", strerror(e));
	return wq;
}

void
workq_push(struct workq *wq, workq_fn work, workq_fn done, void *arg)
{
	struct workq_job *j;
	int e;

	if (wq == NULL || work == NULL)
		fatalx("workq_push: no queue or no work");
	j = xcalloc(1, sizeof(*j));
	j->work = work;
	j->done = done;
	j->arg = arg;
	workq_lock(wq);
	TAILQ_INSERT_TAIL(&wq->pending, j, entry);
	if ((e = pthread_cond_signal(&wq->cv)) != 0)
		fatalx("workq: pthread_cond_signal: %s", strerror(e));
	workq_unlock(wq);
}

void
workq_free(struct workq *wq)
{
	struct workq_list list = TAILQ_HEAD_INITIALIZER(list);
	struct workq_job *j;
	int e;

	if (wq == NULL)
		return;
	workq_lock(wq);
	wq->stopping = true;
	if ((e = pthread_cond_broadcast(&wq->cv)) != 0)
		fatalx("workq: pthread_cond_broadcast: %s", strerror(e));
	workq_unlock(wq);
	for (int i = 0; i < wq->nthreads; i++)
		if ((e = pthread_join(wq->threads[i], NULL)) != 0)
			fatalx("workq: pthread_join: %s", strerror(e));

	/* No worker is left: done callbacks may still push jobs, which
	 * then run here, on the caller's thread, until none is left. */
	for (;;) {
		workq_lock(wq);
		TAILQ_CONCAT(&list, &wq->completed, entry);
		if (TAILQ_EMPTY(&list) &&
		    (j = TAILQ_FIRST(&wq->pending)) != NULL) {
			TAILQ_REMOVE(&wq->pending, j, entry);
			TAILQ_INSERT_TAIL(&list, j, entry);
			workq_unlock(wq);
			j->work(j->arg);
		} else
			workq_unlock(wq);
		if (TAILQ_EMPTY(&list))
			break;
		workq_run_done(&list);
	}

	event_free(wq->ev_done);
	close(wq->efd);
	pthread_cond_destroy(&wq->cv);
	pthread_mutex_destroy(&wq->mtx);
	free(wq->threads);
	free(wq);
}

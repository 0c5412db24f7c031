/*
 * workq.h - a small pool of worker threads for CPU-heavy or blocking work
 * (password hashing, later DKIM signing) that must not run on the event
 * loop.  work(arg) runs on a worker; done(arg) then runs on the event loop
 * thread of base.  Jobs are independent; no ordering is promised.
 */
#ifndef OMBUD_WORKQ_H
#define OMBUD_WORKQ_H

struct event_base;
struct workq;

typedef void (*workq_fn)(void *arg);

struct workq *workq_new(struct event_base *base, int nthreads);
void workq_push(struct workq *wq, workq_fn work, workq_fn done, void *arg);
/* Finishes queued jobs (running their done callbacks), joins threads. */
void workq_free(struct workq *wq);

#endif

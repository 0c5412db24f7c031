/*
 * spool.h - the durable message store.
 *
 * Design (docs/ARCHITECTURE.md has the long version): the spool is a
 * directory of append-only segment files.  Each accepted message is one
 * record (envelope + content) appended to the active segment; state
 * changes are small records appended later: DEL (deleted) and STATE (the
 * delivery state: held, attempts, per-recipient state and last reply;
 * the latest one wins).  A commit thread calls fdatasync(2) on the segment and
 * completes every record appended before that call: one disk flush
 * acknowledges all messages submitted meanwhile by all sessions (group
 * commit).  Records carry a length and a CRC so a torn tail after a crash
 * is detected and ignored; a message is either whole or absent.
 *
 * Must never: call a commit callback before the record and everything the
 * reader needs to find it (file size, directory entry) is on stable
 * storage; reuse a segment that recovery found torn.
 */
#ifndef OMBUD_SPOOL_H
#define OMBUD_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "queue/envelope.h"

struct event_base;
struct spool;
struct spool_commit;

struct spool_opts {
	uint64_t	segment_max;	/* rotate after this many bytes */
	uint64_t	commit_delay_us; /* after idle, wait this long for
					    more records before fdatasync */
};

/*
 * Open (creating if needed) the spool in dir for exclusive read-write use
 * by this process: takes an flock(2) on dir/lock (fails with EWOULDBLOCK
 * if another process has it), recovers the index of live messages from
 * all segments, and starts the commit thread.  base may be NULL for
 * offline use by the CLI: then commits are synchronous and callbacks run
 * before spool_submit/update/remove return.  Returns NULL with errno set
 * and a message logged on failure.  With a base, evthread_use_pthreads()
 * must have been called before the base was created: the commit thread
 * wakes the loop with event_active().
 */
struct spool *spool_open(const char *dir, const struct spool_opts *opts,
    struct event_base *base);

/* Flushes and waits for every pending commit (running the callbacks of
 * those not cancelled, from this thread), stops the commit thread,
 * releases the lock.  Not from inside a commit callback. */
void spool_close(struct spool *sp);

/* err is 0 on success or an errno value (ENOSPC, EIO...). */
typedef void (*spool_commit_cb)(void *arg, int err);

/*
 * Append the message (envelope e, whose id must be set and content_size
 * must equal content_len) and arrange for cb(arg, err) on the event loop
 * thread once it is durable.  Returns a handle that can be passed to
 * spool_commit_cancel() until the callback ran, or NULL if the append
 * itself failed (errno set: EINVAL for a bad id or size mismatch, EEXIST
 * for an id already live, EFBIG beyond 1 GiB, or the write's error;
 * nothing was written or it was rolled back).  The callback never runs
 * inside spool_submit in server mode; in offline mode it has run when
 * spool_submit returns and the handle is a placeholder that cancel
 * ignores.
 */
struct spool_commit *spool_submit(struct spool *sp, const struct envelope *e,
    const char *content, size_t content_len, spool_commit_cb cb, void *arg);

/* The callback will not be called; the commit still happens. */
void spool_commit_cancel(struct spool_commit *c);

/* Durably mark a message deleted.  -1/ENOENT if not live. Synchronous. */
int spool_delete(struct spool *sp, const char *id);

/*
 * Like spool_delete, but group-committed like spool_submit: the message
 * leaves the index at once (spool_count drops, spool_load fails), and
 * cb(arg, err) runs on the loop once the DEL record is durable (cb may be
 * NULL).  For the scheduler, which deletes a message after its last
 * recipient became final.  NULL with errno (ENOENT) if not live, or the
 * write's error (the message stays).  A full disk does not stop it (the
 * reserve is given back for DEL records).  If the DEL's fdatasync fails,
 * cb gets the errno and another DEL is appended (best effort).
 */
struct spool_commit *spool_remove(struct spool *sp, const char *id,
    spool_commit_cb cb, void *arg);

/*
 * Append a STATE record with the delivery state of the live message
 * e->id: e->hold, attempts, last_attempt, next_attempt and, for every
 * recipient, state, last_reply, remote and delay_warned (e->nrcpt must
 * equal the stored message's).  The latest STATE record of a message wins;
 * recovery, spool_load, spool_scan, spool_foreach and compaction all apply
 * it.  Group-committed like spool_submit (cb may be NULL); it is the
 * message's state for spool_load at once.  NULL with errno: ENOENT not
 * live, EINVAL recipient count differs, or the write's error (ENOSPC: a
 * full disk; nothing changed).  If the fdatasync fails, cb gets the errno
 * and the caller should write the state again.  Offline mode:
 * synchronous.  A remote or last_reply over ENV_REMOTE_MAX or
 * ENV_REPLY_MAX bytes is stored cut (see envelope_state_encode).
 */
struct spool_commit *spool_update(struct spool *sp, const struct envelope *e,
    spool_commit_cb cb, void *arg);

/*
 * Load a live message from the open spool by id through the in-memory
 * index (pread, no directory scan): the envelope with its latest state
 * applied, and the content if content is not NULL.  0, or -1 with errno
 * (ENOENT).  Caller frees e with envelope_free.
 */
int spool_load(struct spool *sp, const char *id, struct envelope *e,
    struct buf *content);


/* Live messages known to this open spool. */
size_t spool_count(const struct spool *sp);

/*
 * Counters since spool_open, for tests, benchmarks and the control
 * socket.  commits / fsyncs is the group commit batching ratio.
 */
struct spool_stats {
	uint64_t	commits;	/* group commits acknowledged
					   durable: submit, update, remove */
	uint64_t	commit_errors;	/* those whose fdatasync failed */
	uint64_t	fsyncs;		/* fdatasync calls on segments */
	uint64_t	dir_fsyncs;	/* fsync calls on seg/ */
	uint64_t	records;	/* records appended (MSG, STATE and
					   DEL, compaction copies too) */
	uint64_t	bytes;		/* bytes appended, headers included */
	uint64_t	write_errors;	/* failed appends, undone */
	uint64_t	segments_created;
	uint64_t	segments_removed;
	uint64_t	relocated;	/* live messages moved by compaction */
};
void spool_stats(const struct spool *sp, struct spool_stats *out);

/*
 * Read-only scan of a spool directory without the lock (safe while a
 * server is writing it: a record being written is simply not seen yet).
 * Calls fn once per live message, in acceptance order, with its decoded
 * envelope and its latest state applied.  fn returns 0 to continue, non-zero to stop.  Returns 0 or -1
 * with errno.
 */
typedef int (*spool_scan_fn)(void *arg, const struct envelope *e);
int spool_scan(const char *dir, spool_scan_fn fn, void *arg);

/* Every live message of the open spool, in acceptance order, with its
 * state applied (the scheduler's rebuild at start).  Same contract as
 * spool_scan's fn; fn may submit, update or remove messages (one removed
 * before its turn is skipped).  0, or -1 with errno if some message could
 * not be read (logged; fn saw all the others). */
int spool_foreach(struct spool *sp, spool_scan_fn fn, void *arg);

/*
 * spool_load for the read-only side (no lock, like spool_scan): the
 * envelope of a live message with its latest state applied, and its
 * content if content is not NULL, with one pass over the directory.
 * 0, or -1 with errno (ENOENT).  Caller frees e with envelope_free.
 */
int spool_read(const char *dir, const char *id, struct envelope *e,
    struct buf *content);

/* Read the content of a live message by id (read-only, no lock).
 * On success returns 0 and fills out; -1 with errno (ENOENT). */
int spool_read_content(const char *dir, const char *id, struct buf *out);

#endif

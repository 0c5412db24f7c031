/*
 * spool.c - the durable message store: segment log with group commit.
 *
 * What it does.  A spool is a directory:
 *
 *	<dir>/lock		flock(LOCK_EX|LOCK_NB) held while open
 *	<dir>/seg/NNN.seg	segments, NNN = 20-digit zero-padded number
 *
 * A segment is a sequence of records, each a 16-byte header followed by
 * its payload, all integers little-endian and encoded byte by byte:
 *
 *	0  magic	"OMB1"
 *	4  type		u8: 1 MSG, 2 DEL, 3 STATE; 4 is reserved
 *	5  reserved	3 bytes, written as zero
 *	8  length	u32, payload bytes, at most SPOOL_PAYLOAD_MAX
 *	12 crc		u32, zlib crc32 of bytes 4..11 (type, reserved,
 *			length) followed by the payload
 *
 * MSG: envelope_encode() text, then the content (the envelope's size
 * field says how long; it must match).  DEL: the 20-character queue id.
 * STATE: envelope_state_encode() text, the delivery state of a message
 * (hold, attempts, last and next attempt, per recipient its state,
 * delay-warned flag, remote and last reply); the latest STATE of a live
 * message wins over the MSG record's recipient states and over earlier
 * STATEs, which are dead from then on.  Readers skip a well-formed record
 * of a type they do not know, or with non-zero reserved bytes, with a
 * warning; that is not corruption.  The CRC covers the reserved bytes
 * too, so a flipped flag is detected.
 *
 * Writer (event loop thread only): spool_submit appends header, envelope
 * and content with one pwritev(2) at the active segment's end.  A failed
 * or short write is undone with ftruncate(2); if that fails too the
 * segment is sealed and the next record starts a new one.  Segments are
 * created lazily, at the first append after open or rotation, with
 * O_CREAT|O_EXCL followed by an fsync of the directory, so the directory
 * entry is durable before any record in the segment can be acknowledged.
 * A record that would take the segment past segment_max goes to a new
 * segment (a record larger than segment_max gets a segment of its own).
 *
 * Commit thread: sleeps until records are appended, then fdatasyncs every
 * dirty segment (oldest, i.e. sealed, first), publishes the durable
 * offsets and wakes the loop (event_active on an fd-less event; the
 * event_base must have been created after evthread_use_pthreads()).  The
 * loop runs, in submission order, the callbacks of the commits whose
 * records are now durable.  Everything appended while one fdatasync runs
 * is acknowledged by the next one: that is the group commit, measured by
 * spool_stats() (commits / fsyncs).  Only the commit thread calls
 * fdatasync in server mode, so an error is reported to exactly one
 * caller and attributed to the right records: when fdatasync fails, the
 * segment is sealed, every record in it not yet durable fails with that
 * errno, and its messages leave the index.  Because a failed write may
 * still reach the disk later, a DEL record for each such message is
 * appended to the next segment (best effort), so a message whose client
 * was told 4xx is not resurrected at the next start.
 *
 * spool_update (a STATE record) and spool_remove (a DEL record) are
 * group-committed exactly like spool_submit: one pwritev on the loop
 * thread, the callback once the commit thread's fdatasync covered it;
 * they never wait for a disk flush in server mode.  The index changes at
 * once: an update is the latest state for spool_load and compaction
 * before it is durable (and its commit keeps the segment of the STATE it
 * supersedes until then), a removed message is gone from the index at
 * once.  spool_delete appends a DEL record and waits until it is durable
 * (the commit thread syncs it in its next round, or it is synced directly
 * in offline mode).  Offline mode (no event_base): no thread; submit,
 * update, remove and delete fdatasync before returning and callbacks run
 * before return.
 *
 * Index: a hash table of live messages (id -> where its MSG record and
 * its latest STATE record are: segment, offset, length; recipients),
 * kept in acceptance order; per segment the list and count of the live
 * records in it (MSG records of live messages, latest STATE records;
 * superseded STATEs, DELs and deleted messages are dead).  Garbage
 * collection unlinks the oldest segment when it is not the active one,
 * holds no live record, nothing of it is waiting for fdatasync and no
 * commit handle points to it.  Only the oldest: a DEL record in segment
 * N may be all that keeps a message of segment M < N deleted, and a STATE
 * in N all that supersedes one in M.  The directory is fsynced after each
 * unlink so that a crash cannot undo an older unlink while keeping a
 * newer one.  spool_load reads a message through the index with pread
 * (MSG, then the latest STATE applied, both CRC-checked).
 *
 * Recovery (spool_open) reads every segment in numeric order with the
 * same record reader as spool_scan: MSG adds to the index (a second MSG
 * with a live id moves it: compaction; its latest STATE stays where it
 * is), STATE becomes the latest state of a live message whose recipient
 * count it matches (a STATE for an unknown or deleted id is ignored; a
 * malformed one is ignored with a warning), DEL removes.  A
 * record with bad magic, bad CRC or running past the end of the file
 * ends that segment (a warning gives the segment, offset and ignored
 * bytes): nothing after it was ever acknowledged, since an
 * acknowledgement means an fdatasync covered everything before it.
 * Every recovered segment is fdatasynced once (a killed process leaves
 * unsynced pages behind, and we must not act on records that could still
 * vanish), closed, and never appended to again: new records go to a new
 * segment.  Records are read with pread into one reused buffer; a large
 * message is streamed through the CRC in chunks, keeping only its
 * envelope (STATE records are kept whole and checked).
 *
 * spool_scan, spool_read and spool_read_content load the index the same
 * way without the lock and without writing, then read through it like
 * spool_load.  A record being appended concurrently looks torn and is not
 * seen yet; a segment unlinked between listing and opening held nothing
 * live; segments created meanwhile are picked up by listing the
 * directory again.  A message whose STATE segment was collected after
 * the index was read (a newer STATE superseded it meanwhile) is shown
 * without its state rather than not at all.
 *
 * Compaction (an addition to the original design): through the GC rule a
 * single message that stays queued for days would pin its segment and
 * every newer one.  So when the oldest segment is at least 3/4 dead and
 * others follow it, the server copies its live records to the end of the
 * log, a few MiB per step, riding the group commit: a MSG record with the
 * message's latest STATE right after it (wherever that STATE was), a
 * STATE whose MSG is elsewhere alone.  When a copy is durable the index
 * points at it, unless a newer STATE superseded the one copied meanwhile
 * (the newer one comes later in the log, so it also wins at recovery);
 * once the last record moved the segment is collected.  Recovery treats a
 * second MSG record with a live id as a move.  A moved message keeps its
 * place in the acceptance order until the next restart, which orders it
 * by the copy.
 *
 * What it must never do: call a commit callback before the record, the
 * file size and the segment's directory entry are on stable storage;
 * append to a segment after a failed write it could not undo, after a
 * failed fdatasync, or after recovery found it (possibly torn); unlink a
 * segment whose DEL records may still be needed, or that holds a live
 * message's MSG or latest STATE record; trust a length read from disk
 * before bounding it; call fdatasync from more than one thread on a
 * segment, or from the loop thread in server mode for an update or a
 * remove; let a MSG or STATE record eat the reserve kept for DELs.
 */
#include "queue/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/event.h>
#include <zlib.h>

#include "common/log.h"

#define SPOOL_MAGIC		"OMB1"
#define SPOOL_HDR_LEN		16
#define SPOOL_RESERVE		(1024 * 1024)	/* bytes kept for DELs */
#define SPOOL_PAYLOAD_MAX	(UINT32_C(1) << 30)
#define SPOOL_SEGMENT_DEFAULT	(UINT64_C(64) << 20)
#define SPOOL_SEG_DIGITS	20
#define SPOOL_SEG_NAME_LEN	(SPOOL_SEG_DIGITS + 4)	/* + ".seg" */
#define SPOOL_CHUNK		(256 * 1024)
#define SPOOL_RELIST_MAX	16
#define SPOOL_OPEN_RO		(O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
#define SPOOL_COMPACT_BATCH	(UINT64_C(4) << 20)	/* bytes per step */

enum spool_rec_type {
	SPOOL_REC_MSG = 1,
	SPOOL_REC_DEL = 2,
	SPOOL_REC_STATE = 3,	/* delivery state; 4 is reserved */
};

TAILQ_HEAD(spool_ents, spool_ent);
TAILQ_HEAD(spool_locs, spool_loc);

struct spool_seg {
	uint64_t		 num;
	int			 fd;		/* -1 once closed (mtx) */
	uint64_t		 end;		/* end of last record (mtx;
						   only the loop writes) */
	uint64_t		 synced;	/* durable prefix (mtx) */
	int			 err;		/* errno of failed fdatasync */
	bool			 sealed;	/* no more appends (mtx) */
	bool			 failed;	/* fdatasync failed (mtx) */
	bool			 syncing;	/* thread has the fd (mtx) */
	size_t			 live;		/* live records here (loop) */
	uint64_t		 live_bytes;	/* their bytes (loop) */
	struct spool_locs	 locs;		/* those records (loop) */
	size_t			 ncommits;	/* handles to it (loop) */
	TAILQ_ENTRY(spool_seg)	 entry;		/* (mtx) */
};
TAILQ_HEAD(spool_segs, spool_seg);

/* Where a live record is: a message's MSG record or its latest STATE. */
struct spool_loc {
	struct spool_seg	*seg;		/* NULL: none (no STATE yet) */
	uint64_t		 off;		/* of the record header */
	uint32_t		 len;		/* payload length */
	uint8_t			 type;		/* SPOOL_REC_MSG or _STATE */
	struct spool_ent	*ent;		/* whose record it is */
	TAILQ_ENTRY(spool_loc)	 seg_entry;	/* in seg->locs */
};

struct spool_ent {
	char			 id[QUEUE_ID_LEN + 1];
	struct spool_loc	 msg;		/* always placed */
	struct spool_loc	 st;		/* latest STATE, if any */
	uint32_t		 nrcpt;
	struct spool_ent	*hnext;		/* hash chain */
	TAILQ_ENTRY(spool_ent)	 entry;		/* acceptance order */
};

enum spool_commit_kind {
	SPOOL_C_MSG = 0,	/* spool_submit */
	SPOOL_C_STATE,		/* spool_update */
	SPOOL_C_DEL,		/* spool_remove */
	SPOOL_C_RELOC,		/* compaction copy of a MSG or STATE */
};

struct spool_commit {
	struct spool_seg	*seg;
	uint64_t		 end;		/* durable once synced >= end */
	spool_commit_cb		 cb;		/* NULL once cancelled */
	void			*arg;
	int			 err;
	char			 id[QUEUE_ID_LEN + 1];
	struct spool_commit	*next;
	enum spool_commit_kind	 kind;
	/* a segment kept until the record is durable (ncommits reference):
	   SPOOL_C_STATE the one of the STATE record it supersedes,
	   SPOOL_C_RELOC the one it copies */
	struct spool_seg	*from;
	/* SPOOL_C_RELOC: the record is a copy of the one of type at
	   (from, from_off); once durable the index moves to (seg, off) */
	uint8_t			 type;
	uint64_t		 from_off;
	uint64_t		 off;
	uint32_t		 len;
};

struct spool {
	char			*dir;
	char			*segdir;
	int			 lockfd;	/* -1: read-only */
	int			 segdirfd;
	bool			 readonly;
	uint64_t		 segment_max;
	uint64_t		 next_num;	/* of the next new segment */
	struct event_base	*base;
	struct event		*ev;

	/* index (loop thread) */
	struct spool_ent	**buckets;
	size_t			 nbuckets;
	size_t			 count;
	struct spool_ents	 order;

	/* segments: oldest first; active is the last one when not sealed */
	struct spool_segs	 segs;
	size_t			 nsegs;

	/* compaction (loop thread) */
	size_t			 nreloc;	/* copies not yet durable */
	uint64_t		 compact_skip;	/* segment found unreadable */

	/* commits waiting for durability, submission order (loop thread) */
	struct spool_commit	*cq_head, *cq_tail, *cfree;
	size_t			 ncfree;

	pthread_t		 thread;
	bool			 thread_started;
	pthread_mutex_t		 mtx;
	pthread_cond_t		 work_cv;	/* records to sync, or stop */
	pthread_cond_t		 synced_cv;	/* a sync round finished */
	bool			 stop;
	bool			 idle;
	uint64_t		 commit_delay_us;
	bool			 reserve;	/* dir/reserve holds space */

	struct buf		 enc;		/* envelope encoding scratch */

	_Atomic uint64_t	 n_commits, n_commit_errors, n_fsyncs,
				 n_dir_fsyncs, n_records, n_bytes,
				 n_write_errors, n_seg_created, n_seg_removed,
				 n_relocated;
};

/* One record as read from a segment. */
struct spool_rec {
	uint8_t		 type;
	bool		 reserved_set;
	uint64_t	 off;
	uint32_t	 len;
	const char	*data;		/* payload, or its first have bytes */
	size_t		 have;
};

struct spool_reader {
	int		 fd;
	uint64_t	 segnum;	/* of the segment open on fd */
	uint64_t	 off;		/* of the next record */
	struct buf	 data;		/* reused */
	char		*chunk;		/* payload not kept goes here */
};

enum spool_rd {
	SPOOL_RD_OK = 0,
	SPOOL_RD_END,			/* clean end of file */
	SPOOL_RD_BAD,			/* torn, corrupt or being written */
	SPOOL_RD_ERR,			/* I/O error, errno set */
};

/* A segment the commit thread is syncing. */
struct spool_sync {
	struct spool_seg	*seg;
	int			 fd;
	uint64_t		 target;
	int			 err;
};

/* Returned by spool_submit in offline mode: the callback already ran. */
static struct spool_commit spool_offline_done;

static void spool_le32(unsigned char *p, uint32_t v);
static uint32_t spool_get_le32(const unsigned char *p);
static uint32_t spool_crc(uint32_t crc, const void *p, size_t n);
static void spool_seg_name(char out[SPOOL_SEG_NAME_LEN + 1], uint64_t num);
static bool spool_seg_parse(const char *name, uint64_t *num);
static int spool_fdatasync(int fd);
static ssize_t spool_pread_full(int fd, void *p, size_t n, uint64_t off);
static int spool_pwritev_all(int fd, struct iovec *iov, int iovcnt,
    uint64_t off);
static uint64_t spool_hash(const char *id);
static struct spool_ent *spool_index_find(const struct spool *sp,
    const char *id);
static struct spool_ent *spool_index_add(struct spool *sp, const char *id);
static void spool_index_remove(struct spool *sp, struct spool_ent *ent);
static void spool_loc_unplace(struct spool_loc *loc);
static void spool_loc_place(struct spool_loc *loc, struct spool_seg *seg,
    uint64_t off, uint32_t len);
static struct spool *spool_new(const char *dir, bool readonly);
static void spool_free(struct spool *sp);
static void spool_reader_init(struct spool_reader *rd, int fd);
static void spool_reader_free(struct spool_reader *rd);
static void spool_reader_done(struct spool_reader *rd);
static int spool_reader_seg(struct spool *sp, struct spool_reader *rd,
    uint64_t num);
static bool spool_rec_env_end(const struct buf *b, size_t from);
static enum spool_rd spool_read_record(struct spool_reader *rd, bool whole,
    struct spool_rec *rec);
static int spool_rec_envelope(const struct spool_rec *rec,
    struct envelope *e, size_t *used);
static void spool_apply(struct spool *sp, struct spool_seg *seg,
    const char *segname, const struct spool_rec *rec, size_t *unknown);
static int spool_load_segment(struct spool *sp, struct spool_seg *seg);
static int spool_list(struct spool *sp, uint64_t after, uint64_t **nums,
    size_t *n);
static int spool_recover(struct spool *sp);
static struct spool_seg *spool_seg_link(struct spool *sp, uint64_t num,
    int fd);
static struct spool_seg *spool_seg_create(struct spool *sp);
static struct spool_seg *spool_writable(struct spool *sp, uint64_t reclen);
static struct spool_seg *spool_append(struct spool *sp, uint8_t type,
    const struct iovec *pay, int npay, uint64_t *offp, uint64_t *endp);
static void spool_sync_all(struct spool *sp);
static int spool_wait_durable(struct spool *sp, struct spool_seg *seg,
    uint64_t end);
static struct spool_seg *spool_append_del(struct spool *sp, const char *id,
    uint64_t *endp);
static void spool_forget(struct spool *sp, const char *id,
    struct spool_seg *seg);
static void spool_settle(struct spool *sp, struct spool_commit *c);
static void spool_process(struct spool *sp);
static void spool_relocated(struct spool *sp, struct spool_commit *c);
static int spool_copy(struct spool *sp, struct spool_reader *rd,
    struct spool_loc *loc, uint64_t *budget);
static void spool_compact(struct spool *sp);
static struct spool_commit *spool_commit_new(struct spool *sp,
    struct spool_seg *seg, uint64_t end, const char *id);
static struct spool_commit *spool_commit_start(struct spool *sp,
    struct spool_commit *c);
static void spool_close_fds(struct spool *sp);
static void spool_gc(struct spool *sp);
static void spool_reserve_make(struct spool *sp);
static bool spool_reserve_release(struct spool *sp);
static void spool_event_cb(evutil_socket_t fd, short what, void *arg);
static void *spool_commit_main(void *arg);
static int spool_load_readonly(const char *dir, struct spool **out);
static int spool_loc_read(struct spool *sp, const struct spool_loc *loc,
    struct spool_reader *rd, bool whole, struct spool_rec *rec);
static int spool_ent_load(struct spool *sp, const struct spool_ent *ent,
    struct spool_reader *rdm, struct spool_reader *rds, struct envelope *e,
    struct buf *content);

/* ---- encoding and small I/O helpers ---- */

static void
spool_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t
spool_get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static uint32_t
spool_crc(uint32_t crc, const void *p, size_t n)
{
	/* n is at most SPOOL_PAYLOAD_MAX, which fits zlib's uInt */
	return (uint32_t)crc32(crc, p, (uInt)n);
}

static void
spool_seg_name(char out[SPOOL_SEG_NAME_LEN + 1], uint64_t num)
{
	snprintf(out, SPOOL_SEG_NAME_LEN + 1, "%020" PRIu64 ".seg", num);
}

static bool
spool_seg_parse(const char *name, uint64_t *num)
{
	uint64_t n = 0;
	int i;

	if (strlen(name) != SPOOL_SEG_NAME_LEN ||
	    strcmp(name + SPOOL_SEG_DIGITS, ".seg") != 0)
		return false;
	for (i = 0; i < SPOOL_SEG_DIGITS; i++) {
		unsigned d = (unsigned)(unsigned char)name[i] - '0';
		if (d > 9 || n > (UINT64_MAX - d) / 10)
			return false;
		n = n * 10 + d;
	}
	*num = n;
	return n != 0;		/* numbering starts at 1 */
}

/* 0 or an errno value. */
static int
spool_fdatasync(int fd)
{
	while (fdatasync(fd) != 0) {
		if (errno != EINTR)
			return errno ? errno : EIO;
	}
	return 0;
}

/* Bytes read (short only at end of file), or -1 with errno. */
static ssize_t
spool_pread_full(int fd, void *p, size_t n, uint64_t off)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = pread(fd, (char *)p + got, n - got,
		    (off_t)(off + got));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* Write all iovecs at off; 0 or an errno value.  iov is consumed. */
static int
spool_pwritev_all(int fd, struct iovec *iov, int iovcnt, uint64_t off)
{
	while (iovcnt > 0) {
		ssize_t w;
		size_t n;

		if (iov->iov_len == 0) {
			iov++;
			iovcnt--;
			continue;
		}
		if ((w = pwritev(fd, iov, iovcnt, (off_t)off)) < 0) {
			if (errno == EINTR)
				continue;
			return errno ? errno : EIO;
		}
		if (w == 0)
			return EIO;
		off += (uint64_t)w;
		for (n = (size_t)w; n > 0 && iovcnt > 0;) {
			if (n >= iov->iov_len) {
				n -= iov->iov_len;
				iov++;
				iovcnt--;
			} else {
				iov->iov_base = (char *)iov->iov_base + n;
				iov->iov_len -= n;
				n = 0;
			}
		}
	}
	return 0;
}

/* ---- index ---- */

static uint64_t
spool_hash(const char *id)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);	/* FNV-1a */
	size_t i;

	for (i = 0; i < QUEUE_ID_LEN; i++) {
		h ^= (unsigned char)id[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h ^ (h >> 29);
}

static struct spool_ent *
spool_index_find(const struct spool *sp, const char *id)
{
	struct spool_ent *ent;

	if (sp->nbuckets == 0)
		return NULL;
	ent = sp->buckets[spool_hash(id) & (sp->nbuckets - 1)];
	for (; ent != NULL; ent = ent->hnext)
		if (memcmp(ent->id, id, QUEUE_ID_LEN) == 0)
			return ent;
	return NULL;
}

/* New entry at the end of the acceptance order; caller places it. */
static struct spool_ent *
spool_index_add(struct spool *sp, const char *id)
{
	struct spool_ent *ent, **b;
	size_t i;

	if (sp->count >= sp->nbuckets) {
		size_t nb = sp->nbuckets ? sp->nbuckets * 2 : 1024;
		struct spool_ent **nbk = xcalloc(nb, sizeof(*nbk));

		for (i = 0; i < sp->nbuckets; i++) {
			while ((ent = sp->buckets[i]) != NULL) {
				sp->buckets[i] = ent->hnext;
				b = &nbk[spool_hash(ent->id) & (nb - 1)];
				ent->hnext = *b;
				*b = ent;
			}
		}
		free(sp->buckets);
		sp->buckets = nbk;
		sp->nbuckets = nb;
	}
	ent = xcalloc(1, sizeof(*ent));
	memcpy(ent->id, id, QUEUE_ID_LEN);
	ent->id[QUEUE_ID_LEN] = '\0';
	ent->msg.type = SPOOL_REC_MSG;
	ent->msg.ent = ent;
	ent->st.type = SPOOL_REC_STATE;
	ent->st.ent = ent;
	b = &sp->buckets[spool_hash(id) & (sp->nbuckets - 1)];
	ent->hnext = *b;
	*b = ent;
	TAILQ_INSERT_TAIL(&sp->order, ent, entry);
	sp->count++;
	return ent;
}

static void
spool_index_remove(struct spool *sp, struct spool_ent *ent)
{
	struct spool_ent **pp;

	pp = &sp->buckets[spool_hash(ent->id) & (sp->nbuckets - 1)];
	while (*pp != ent) {
		if (*pp == NULL)
			fatalx("spool: index entry %s not in its chain",
			    ent->id);
		pp = &(*pp)->hnext;
	}
	*pp = ent->hnext;
	TAILQ_REMOVE(&sp->order, ent, entry);
	spool_loc_unplace(&ent->msg);
	spool_loc_unplace(&ent->st);
	sp->count--;
	free(ent);
}

/* Take a record out of its segment's live set (it is dead now). */
static void
spool_loc_unplace(struct spool_loc *loc)
{
	struct spool_seg *seg = loc->seg;

	if (seg == NULL)
		return;
	if (seg->live == 0 || seg->live_bytes < SPOOL_HDR_LEN + loc->len)
		fatalx("spool: live count of segment %" PRIu64 " underflows",
		    seg->num);
	seg->live--;
	seg->live_bytes -= SPOOL_HDR_LEN + loc->len;
	TAILQ_REMOVE(&seg->locs, loc, seg_entry);
	loc->seg = NULL;
}

/* Point loc at a record (moving it between segments' live sets). */
static void
spool_loc_place(struct spool_loc *loc, struct spool_seg *seg, uint64_t off,
    uint32_t len)
{
	spool_loc_unplace(loc);
	loc->seg = seg;
	seg->live++;
	seg->live_bytes += SPOOL_HDR_LEN + (uint64_t)len;
	TAILQ_INSERT_TAIL(&seg->locs, loc, seg_entry);
	loc->off = off;
	loc->len = len;
}

/* ---- object lifetime ---- */

static struct spool *
spool_new(const char *dir, bool readonly)
{
	struct spool *sp = xcalloc(1, sizeof(*sp));
	size_t n = strlen(dir);

	sp->dir = xstrdup(dir);
	sp->segdir = xmalloc(n + sizeof("/seg"));
	memcpy(sp->segdir, dir, n);
	memcpy(sp->segdir + n, "/seg", sizeof("/seg"));
	sp->lockfd = -1;
	sp->segdirfd = -1;
	sp->readonly = readonly;
	sp->segment_max = SPOOL_SEGMENT_DEFAULT;
	sp->next_num = 1;
	TAILQ_INIT(&sp->order);
	TAILQ_INIT(&sp->segs);
	buf_init(&sp->enc);
	if (pthread_mutex_init(&sp->mtx, NULL) != 0 ||
	    pthread_cond_init(&sp->work_cv, NULL) != 0 ||
	    pthread_cond_init(&sp->synced_cv, NULL) != 0)
		fatalx("spool: pthread init");
	return sp;
}

static void
spool_free(struct spool *sp)
{
	struct spool_seg *seg;
	struct spool_ent *ent;
	struct spool_commit *c;

	while ((ent = TAILQ_FIRST(&sp->order)) != NULL) {
		TAILQ_REMOVE(&sp->order, ent, entry);
		free(ent);
	}
	free(sp->buckets);
	while ((seg = TAILQ_FIRST(&sp->segs)) != NULL) {
		TAILQ_REMOVE(&sp->segs, seg, entry);
		if (seg->fd >= 0)
			close(seg->fd);
		free(seg);
	}
	while ((c = sp->cq_head) != NULL) {
		sp->cq_head = c->next;
		free(c);
	}
	while ((c = sp->cfree) != NULL) {
		sp->cfree = c->next;
		free(c);
	}
	if (sp->ev)
		event_free(sp->ev);
	if (sp->segdirfd >= 0)
		close(sp->segdirfd);
	if (sp->lockfd >= 0)
		close(sp->lockfd);	/* releases the flock */
	buf_free(&sp->enc);
	pthread_mutex_destroy(&sp->mtx);
	pthread_cond_destroy(&sp->work_cv);
	pthread_cond_destroy(&sp->synced_cv);
	free(sp->segdir);
	free(sp->dir);
	free(sp);
}

/* ---- record reader: recovery, scan and read_content all use it ---- */

static void
spool_reader_init(struct spool_reader *rd, int fd)
{
	rd->fd = fd;
	rd->segnum = 0;
	rd->off = 0;
	buf_init(&rd->data);
	rd->chunk = NULL;
}

static void
spool_reader_free(struct spool_reader *rd)
{
	buf_free(&rd->data);
	free(rd->chunk);
	rd->chunk = NULL;
}

/* spool_reader_free for a reader that opened its own segments. */
static void
spool_reader_done(struct spool_reader *rd)
{
	int err = errno;

	if (rd->fd >= 0)
		close(rd->fd);
	rd->fd = -1;
	spool_reader_free(rd);
	errno = err;
}

/* Have rd read segment num, opening it read-only unless it already
 * does.  0, or -1 with errno (ENOENT: collected). */
static int
spool_reader_seg(struct spool *sp, struct spool_reader *rd, uint64_t num)
{
	char name[SPOOL_SEG_NAME_LEN + 1];

	if (rd->fd >= 0 && rd->segnum == num)
		return 0;
	if (rd->fd >= 0)
		close(rd->fd);
	rd->segnum = num;
	spool_seg_name(name, num);
	rd->fd = openat(sp->segdirfd, name, SPOOL_OPEN_RO);
	return rd->fd < 0 ? -1 : 0;
}

/* Does b hold a whole envelope (up to its empty line)?  New bytes
 * start at from. */
static bool
spool_rec_env_end(const struct buf *b, size_t from)
{
	size_t start = from > 0 ? from - 1 : 0;

	if (b->len > 0 && b->data[0] == '\n')
		return true;
	return b->len - start >= 2 &&
	    memmem(b->data + start, b->len - start, "\n\n", 2) != NULL;
}

/*
 * Read the record at rd->off and verify it.  With whole, rec->data holds
 * the entire payload; otherwise at least the envelope of a MSG record,
 * all of a STATE record and the first chunk of any other.  Memory: the
 * kept bytes plus one chunk, whatever the record length says.
 */
static enum spool_rd
spool_read_record(struct spool_reader *rd, bool whole, struct spool_rec *rec)
{
	unsigned char hdr[SPOOL_HDR_LEN];
	uint32_t len, crc;
	uint64_t pos;
	ssize_t r;
	bool keep = true;

	if ((r = spool_pread_full(rd->fd, hdr, sizeof(hdr), rd->off)) < 0)
		return SPOOL_RD_ERR;
	if (r == 0)
		return SPOOL_RD_END;
	if ((size_t)r < sizeof(hdr) || memcmp(hdr, SPOOL_MAGIC, 4) != 0)
		return SPOOL_RD_BAD;
	len = spool_get_le32(hdr + 8);
	if (len > SPOOL_PAYLOAD_MAX)
		return SPOOL_RD_BAD;
	crc = spool_crc(0, hdr + 4, 8);
	buf_reset(&rd->data);
	for (pos = 0; pos < len;) {
		size_t n = len - pos < SPOOL_CHUNK ? len - pos : SPOOL_CHUNK;
		size_t before = rd->data.len;
		char *dst;

		if (keep) {
			buf_reserve(&rd->data, n);
			dst = rd->data.data + rd->data.len;
		} else {
			if (rd->chunk == NULL)
				rd->chunk = xmalloc(SPOOL_CHUNK);
			dst = rd->chunk;
		}
		r = spool_pread_full(rd->fd, dst, n,
		    rd->off + SPOOL_HDR_LEN + pos);
		if (r < 0)
			return SPOOL_RD_ERR;
		if ((size_t)r < n)
			return SPOOL_RD_BAD;	/* runs past end of file */
		crc = spool_crc(crc, dst, n);
		pos += n;
		if (!keep)
			continue;
		rd->data.len += n;
		rd->data.data[rd->data.len] = '\0';
		if (!whole && hdr[4] != SPOOL_REC_STATE &&
		    (hdr[4] != SPOOL_REC_MSG ||
		    spool_rec_env_end(&rd->data, before)))
			keep = false;
	}
	if (crc != spool_get_le32(hdr + 12))
		return SPOOL_RD_BAD;
	rec->type = hdr[4];
	rec->reserved_set = hdr[5] || hdr[6] || hdr[7];
	rec->off = rd->off;
	rec->len = len;
	rec->data = rd->data.data ? rd->data.data : "";
	rec->have = rd->data.len;
	rd->off += SPOOL_HDR_LEN + (uint64_t)len;
	return SPOOL_RD_OK;
}

/* Decode the envelope of a verified MSG record and check its size. */
static int
spool_rec_envelope(const struct spool_rec *rec, struct envelope *e,
    size_t *used)
{
	if (envelope_decode(rec->data, rec->have, e, used) != 0)
		return -1;
	if (e->content_size != rec->len - *used) {
		envelope_free(e);
		return -1;
	}
	return 0;
}

/*
 * Apply one verified record to the index: MSG adds (or moves), STATE
 * becomes the latest state of a live message (ignored otherwise), DEL
 * removes.
 */
static void
spool_apply(struct spool *sp, struct spool_seg *seg, const char *segname,
    const struct spool_rec *rec, size_t *unknown)
{
	struct spool_ent *ent;
	struct envelope e;
	char id[QUEUE_ID_LEN + 1];
	size_t used, nrcpt;

	if (rec->reserved_set || (rec->type != SPOOL_REC_MSG &&
	    rec->type != SPOOL_REC_DEL && rec->type != SPOOL_REC_STATE)) {
		if ((*unknown)++ == 0)
			log_warnx("spool %s: segment %s: skipping record of "
			    "unknown type %u at offset %" PRIu64
			    " (written by a newer ombud?)", sp->dir, segname,
			    rec->type, rec->off);
		return;
	}
	if (rec->type == SPOOL_REC_DEL) {
		if (rec->len != QUEUE_ID_LEN || rec->have != QUEUE_ID_LEN)
			goto bad;
		memcpy(id, rec->data, QUEUE_ID_LEN);
		id[QUEUE_ID_LEN] = '\0';
		if (!queue_id_valid(id))
			goto bad;
		if ((ent = spool_index_find(sp, id)) != NULL)
			spool_index_remove(sp, ent);
		return;
	}
	if (rec->type == SPOOL_REC_STATE) {
		if (rec->have != rec->len || envelope_state_check(rec->data,
		    rec->len, id, &nrcpt) != 0)
			goto bad;
		if ((ent = spool_index_find(sp, id)) == NULL)
			return;		/* deleted, or never accepted */
		if (nrcpt != ent->nrcpt)
			goto bad;
		spool_loc_place(&ent->st, seg, rec->off, rec->len);
		return;
	}
	if (spool_rec_envelope(rec, &e, &used) != 0)
		goto bad;
	if ((ent = spool_index_find(sp, e.id)) == NULL)
		ent = spool_index_add(sp, e.id);
	/* a second MSG for a live id is a compaction copy: the message
	   moves, its latest STATE stays where it is */
	spool_loc_place(&ent->msg, seg, rec->off, rec->len);
	ent->nrcpt = (uint32_t)e.nrcpt;
	envelope_free(&e);
	return;
bad:
	log_warnx("spool %s: segment %s: ignoring malformed record at offset "
	    "%" PRIu64, sp->dir, segname, rec->off);
}

/* Read a segment's records into the index; sets seg->end.  0 or -1. */
static int
spool_load_segment(struct spool *sp, struct spool_seg *seg)
{
	struct spool_reader rd;
	struct spool_rec rec;
	enum spool_rd r;
	struct stat st;
	char name[SPOOL_SEG_NAME_LEN + 1];
	size_t unknown = 0;
	int fd, err, rc = -1;

	spool_seg_name(name, seg->num);
	if ((fd = openat(sp->segdirfd, name, SPOOL_OPEN_RO)) < 0) {
		if (errno == ENOENT && sp->readonly)
			return 0;	/* collected meanwhile: held nothing */
		log_warn("spool %s: open segment %s", sp->dir, name);
		return -1;
	}
	spool_reader_init(&rd, fd);
	while ((r = spool_read_record(&rd, false, &rec)) == SPOOL_RD_OK)
		spool_apply(sp, seg, name, &rec, &unknown);
	if (r == SPOOL_RD_ERR) {
		log_warn("spool %s: read segment %s at offset %" PRIu64,
		    sp->dir, name, rd.off);
		goto fail;
	}
	if (r == SPOOL_RD_BAD) {
		uint64_t size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
		if (sp->readonly)
			log_debug("spool %s: segment %s ends at offset %"
			    PRIu64 " with an incomplete record", sp->dir,
			    name, rd.off);
		else
			log_warnx("spool %s: segment %s: torn or corrupt "
			    "record at offset %" PRIu64 ", ignoring %" PRIu64
			    " bytes", sp->dir, name, rd.off,
			    size > rd.off ? size - rd.off : 0);
	}
	if (unknown > 1)
		log_warnx("spool %s: segment %s: skipped %zu records of "
		    "unknown type", sp->dir, name, unknown);
	if (!sp->readonly && (err = spool_fdatasync(fd)) != 0) {
		errno = err;
		log_warn("spool %s: fdatasync segment %s", sp->dir, name);
		goto fail;
	}
	if (!sp->readonly)
		atomic_fetch_add(&sp->n_fsyncs, 1);
	seg->end = seg->synced = rd.off;
	rc = 0;
fail:
	err = errno;
	spool_reader_free(&rd);
	close(fd);
	errno = err;
	return rc;
}

static int
spool_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sorted numbers of the segments above after (0: all).  0 or -1. */
static int
spool_list(struct spool *sp, uint64_t after, uint64_t **nums, size_t *n)
{
	DIR *d;
	struct dirent *de;
	size_t cap = 0;
	uint64_t num;
	int fd;

	*nums = NULL;
	*n = 0;
	if ((fd = dup(sp->segdirfd)) < 0)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	rewinddir(d);
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (!spool_seg_parse(de->d_name, &num)) {
			if (de->d_name[0] != '.')
				log_debug("spool %s: ignoring seg/%s",
				    sp->dir, de->d_name);
			continue;
		}
		if (num <= after && after != 0)
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			*nums = xrealloc(*nums, cap * sizeof(**nums));
		}
		(*nums)[(*n)++] = num;
	}
	if (errno != 0) {
		int err = errno;
		closedir(d);
		free(*nums);
		*nums = NULL;
		errno = err;
		return -1;
	}
	closedir(d);
	if (*n > 0)
		qsort(*nums, *n, sizeof(**nums), spool_cmp_u64);
	return 0;
}

/* Load every segment into the index (both recovery and read-only). */
static int
spool_recover(struct spool *sp)
{
	uint64_t *nums = NULL, last = 0;
	size_t n, i;
	int round;

	for (round = 0; round < SPOOL_RELIST_MAX; round++) {
		if (spool_list(sp, last, &nums, &n) != 0) {
			log_warn("spool %s: list segments", sp->dir);
			goto fail;
		}
		if (n == 0)
			break;
		for (i = 0; i < n; i++) {
			struct spool_seg *seg = spool_seg_link(sp, nums[i], -1);
			seg->sealed = true;
			if (spool_load_segment(sp, seg) != 0)
				goto fail;
			last = nums[i];
		}
		free(nums);
		nums = NULL;
		/* a writer may have started new segments meanwhile */
		if (!sp->readonly)
			break;
	}
	if (last == UINT64_MAX) {
		errno = EOVERFLOW;
		goto fail;
	}
	sp->next_num = last + 1;
	return 0;
fail:
	free(nums);
	return -1;
}

/* ---- writer ---- */

static struct spool_seg *
spool_seg_link(struct spool *sp, uint64_t num, int fd)
{
	struct spool_seg *seg = xcalloc(1, sizeof(*seg));

	seg->num = num;
	seg->fd = fd;
	TAILQ_INIT(&seg->locs);
	pthread_mutex_lock(&sp->mtx);
	TAILQ_INSERT_TAIL(&sp->segs, seg, entry);
	sp->nsegs++;
	pthread_mutex_unlock(&sp->mtx);
	return seg;
}

/* Create the next segment; durable directory entry before returning. */
static struct spool_seg *
spool_seg_create(struct spool *sp)
{
	char name[SPOOL_SEG_NAME_LEN + 1];
	uint64_t num = sp->next_num;
	int fd, err;

	if (num == UINT64_MAX) {
		errno = EOVERFLOW;
		return NULL;
	}
	spool_seg_name(name, num);
	fd = openat(sp->segdirfd, name,
	    O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		err = errno;
		log_warn("spool %s: create segment %s", sp->dir, name);
		if (err == EEXIST)
			sp->next_num++;		/* never reuse a name */
		errno = err;
		return NULL;
	}
	atomic_fetch_add(&sp->n_dir_fsyncs, 1);
	if (fsync(sp->segdirfd) != 0) {
		err = errno;
		log_warn("spool %s: fsync seg/ after creating %s", sp->dir,
		    name);
		close(fd);
		(void)unlinkat(sp->segdirfd, name, 0);
		errno = err;
		return NULL;
	}
	sp->next_num = num + 1;
	atomic_fetch_add(&sp->n_seg_created, 1);
	return spool_seg_link(sp, num, fd);
}

/* The segment the next record of reclen bytes goes to. */
static struct spool_seg *
spool_writable(struct spool *sp, uint64_t reclen)
{
	struct spool_seg *seg = TAILQ_LAST(&sp->segs, spool_segs);
	bool usable;

	pthread_mutex_lock(&sp->mtx);
	usable = seg != NULL && !seg->sealed;
	if (usable && seg->end > 0 && seg->end + reclen > sp->segment_max) {
		seg->sealed = true;		/* rotate */
		usable = false;
	}
	pthread_mutex_unlock(&sp->mtx);
	return usable ? seg : spool_seg_create(sp);
}

/*
 * Append one record; returns its segment and sets *offp and *endp, or
 * NULL with errno and nothing left behind (or the segment sealed).
 */
static struct spool_seg *
spool_append(struct spool *sp, uint8_t type, const struct iovec *pay,
    int npay, uint64_t *offp, uint64_t *endp)
{
	unsigned char hdr[SPOOL_HDR_LEN];
	struct iovec iov[4];
	struct spool_seg *seg;
	uint64_t len = 0, off;
	uint32_t crc;
	int i, err;

	if (npay > (int)nitems(iov) - 1)
		fatalx("spool_append: %d payload pieces", npay);
	for (i = 0; i < npay; i++)
		len += pay[i].iov_len;
	if (len > SPOOL_PAYLOAD_MAX) {
		errno = EFBIG;
		return NULL;
	}
	if ((seg = spool_writable(sp, SPOOL_HDR_LEN + len)) == NULL &&
	    (errno != ENOSPC || type != SPOOL_REC_DEL ||
	    !spool_reserve_release(sp) ||
	    (seg = spool_writable(sp, SPOOL_HDR_LEN + len)) == NULL))
		return NULL;
	memcpy(hdr, SPOOL_MAGIC, 4);
	hdr[4] = type;
	hdr[5] = hdr[6] = hdr[7] = 0;
	spool_le32(hdr + 8, (uint32_t)len);
	crc = spool_crc(0, hdr + 4, 8);
	iov[0].iov_base = hdr;
	iov[0].iov_len = sizeof(hdr);
	for (i = 0; i < npay; i++) {
		crc = spool_crc(crc, pay[i].iov_base, pay[i].iov_len);
		iov[i + 1] = pay[i];
	}
	spool_le32(hdr + 12, crc);

	off = seg->end;		/* only this thread changes it */
	err = spool_pwritev_all(seg->fd, iov, npay + 1, off);
	if (err == ENOSPC && type == SPOOL_REC_DEL &&
	    spool_reserve_release(sp)) {
		/* a DEL must get through on a full disk: it is how space
		 * is freed; the reserve exists for exactly this */
		(void)ftruncate(seg->fd, (off_t)off);
		err = spool_pwritev_all(seg->fd, iov, npay + 1, off);
	}
	if (err != 0) {
		atomic_fetch_add(&sp->n_write_errors, 1);
		if (ftruncate(seg->fd, (off_t)off) != 0) {
			log_warn("spool %s: cannot undo a failed write to "
			    "segment %" PRIu64 ", sealing it", sp->dir,
			    seg->num);
			pthread_mutex_lock(&sp->mtx);
			seg->sealed = true;
			pthread_mutex_unlock(&sp->mtx);
		}
		errno = err;
		return NULL;
	}
	pthread_mutex_lock(&sp->mtx);
	seg->end = off + SPOOL_HDR_LEN + len;
	if (sp->idle)
		pthread_cond_signal(&sp->work_cv);
	pthread_mutex_unlock(&sp->mtx);
	atomic_fetch_add(&sp->n_records, 1);
	atomic_fetch_add(&sp->n_bytes, SPOOL_HDR_LEN + len);
	*offp = off;
	*endp = off + SPOOL_HDR_LEN + len;
	return seg;
}

/* Offline mode and close: fdatasync every dirty segment right here. */
static void
spool_sync_all(struct spool *sp)
{
	struct spool_seg *seg;
	uint64_t target;
	int err;

	TAILQ_FOREACH_REVERSE(seg, &sp->segs, spool_segs, entry) {
		if (seg->fd < 0)
			break;		/* older ones are closed and clean */
		if (seg->failed || seg->end <= seg->synced)
			continue;
		target = seg->end;
		err = spool_fdatasync(seg->fd);
		atomic_fetch_add(&sp->n_fsyncs, 1);
		pthread_mutex_lock(&sp->mtx);
		if (err == 0)
			seg->synced = target;
		else {
			seg->failed = seg->sealed = true;
			seg->err = err;
		}
		pthread_mutex_unlock(&sp->mtx);
		if (err != 0) {
			errno = err;
			log_warn("spool %s: fdatasync segment %" PRIu64
			    " failed, sealing it", sp->dir, seg->num);
		}
	}
}

/* Wait until seg is durable up to end.  0 or an errno value. */
static int
spool_wait_durable(struct spool *sp, struct spool_seg *seg, uint64_t end)
{
	int err;

	if (!sp->thread_started)
		spool_sync_all(sp);
	pthread_mutex_lock(&sp->mtx);
	while (seg->synced < end && !seg->failed)
		pthread_cond_wait(&sp->synced_cv, &sp->mtx);
	err = seg->synced >= end ? 0 : seg->err;
	pthread_mutex_unlock(&sp->mtx);
	return err;
}

/* Append a DEL record for id (not waiting for it); its segment, or NULL
 * with errno.  DEL records may use the reserve on a full disk. */
static struct spool_seg *
spool_append_del(struct spool *sp, const char *id, uint64_t *endp)
{
	struct iovec iov;
	uint64_t off;

	iov.iov_base = (void *)id;
	iov.iov_len = QUEUE_ID_LEN;
	return spool_append(sp, SPOOL_REC_DEL, &iov, 1, &off, endp);
}

/*
 * The MSG record of id in seg failed: drop it from the index and append
 * a DEL record elsewhere, so that if the failed write reaches the disk
 * anyway recovery does not bring back a message refused to the client.
 */
static void
spool_forget(struct spool *sp, const char *id, struct spool_seg *seg)
{
	struct spool_ent *ent = spool_index_find(sp, id);
	uint64_t end;

	if (ent == NULL || ent->msg.seg != seg)
		return;
	spool_index_remove(sp, ent);
	if (spool_append_del(sp, id, &end) == NULL)
		log_warn("spool %s: cannot record failed message %s as "
		    "deleted", sp->dir, id);
}

/* A commit is durable (c->err == 0) or failed: act on it. */
static void
spool_settle(struct spool *sp, struct spool_commit *c)
{
	uint64_t end;

	if (c->kind == SPOOL_C_RELOC) {
		spool_relocated(sp, c);
		return;
	}
	if (c->err == 0) {
		atomic_fetch_add(&sp->n_commits, 1);
		return;
	}
	atomic_fetch_add(&sp->n_commit_errors, 1);
	switch (c->kind) {
	case SPOOL_C_MSG:
		spool_forget(sp, c->id, c->seg);
		break;
	case SPOOL_C_STATE:
		/* the index keeps pointing at it: the caller was told and
		   writes the state again (into a healthy segment) */
		errno = c->err;
		log_warn("spool %s: state of %s not durable", sp->dir,
		    c->id);
		break;
	case SPOOL_C_DEL:
		/* the message left the index already; a second DEL in a
		   new segment keeps it from coming back (best effort) */
		if (spool_append_del(sp, c->id, &end) == NULL)
			log_warn("spool %s: cannot record removed message %s "
			    "as deleted", sp->dir, c->id);
		break;
	case SPOOL_C_RELOC:
		break;
	}
}

/* Run the callbacks of every commit that is now durable or failed. */
static void
spool_process(struct spool *sp)
{
	struct spool_commit *ready, *c, **pp;

	pthread_mutex_lock(&sp->mtx);
	ready = sp->cq_head;
	for (pp = &sp->cq_head; (c = *pp) != NULL; pp = &c->next) {
		if (c->seg->synced >= c->end)
			c->err = 0;
		else if (c->seg->failed)
			c->err = c->seg->err ? c->seg->err : EIO;
		else
			break;
	}
	*pp = NULL;		/* ends the ready list (or empties cq) */
	sp->cq_head = c;
	if (c == NULL)
		sp->cq_tail = NULL;
	if (ready == c)
		ready = NULL;
	pthread_mutex_unlock(&sp->mtx);

	while ((c = ready) != NULL) {
		spool_commit_cb cb = c->cb;
		void *arg = c->arg;
		int err = c->err;

		ready = c->next;
		spool_settle(sp, c);
		c->seg->ncommits--;
		if (c->from != NULL)
			c->from->ncommits--;
		c->next = sp->cfree;
		sp->cfree = c;
		sp->ncfree++;
		if (cb != NULL)
			cb(arg, err);
	}
	while (sp->ncfree > 1024 && (c = sp->cfree) != NULL) {
		sp->cfree = c->next;
		sp->ncfree--;
		free(c);
	}
	spool_close_fds(sp);
	spool_gc(sp);
	spool_compact(sp);
}

/* A compaction copy is durable (or failed): move the index to it. */
static void
spool_relocated(struct spool *sp, struct spool_commit *c)
{
	struct spool_ent *ent = spool_index_find(sp, c->id);
	struct spool_loc *loc;

	sp->nreloc--;
	if (c->err != 0 || ent == NULL)
		return;		/* the copy failed, or deleted meanwhile */
	loc = c->type == SPOOL_REC_MSG ? &ent->msg : &ent->st;
	/* a STATE superseded meanwhile stays dead, and so does its copy */
	if (loc->seg != c->from || loc->off != c->from_off)
		return;
	spool_loc_place(loc, c->seg, c->off, c->len);
	if (c->type == SPOOL_REC_MSG)
		atomic_fetch_add(&sp->n_relocated, 1);
}

/*
 * Copy the live record loc to the end of the log for compaction (rd
 * reads it); the index moves when the copy is durable.  0, or -1 if this
 * compaction step has to stop.
 */
static int
spool_copy(struct spool *sp, struct spool_reader *rd, struct spool_loc *loc,
    uint64_t *budget)
{
	struct spool_commit *c;
	struct spool_seg *to;
	struct spool_rec rec;
	struct iovec iov;
	uint64_t off, end;

	if (spool_loc_read(sp, loc, rd, true, &rec) != 0) {
		log_warn("spool %s: compaction: record of %s at offset %"
		    PRIu64 " of segment %" PRIu64 " unreadable, leaving "
		    "segment %" PRIu64, sp->dir, loc->ent->id, loc->off,
		    loc->seg->num, TAILQ_FIRST(&sp->segs)->num);
		sp->compact_skip = TAILQ_FIRST(&sp->segs)->num;
		return -1;
	}
	iov.iov_base = (void *)rec.data;
	iov.iov_len = rec.len;
	if ((to = spool_append(sp, loc->type, &iov, 1, &off, &end)) == NULL) {
		log_warn("spool %s: compaction: copy %s", sp->dir,
		    loc->ent->id);
		return -1;		/* tried again later */
	}
	c = spool_commit_new(sp, to, end, loc->ent->id);
	c->kind = SPOOL_C_RELOC;
	c->type = loc->type;
	c->from = loc->seg;
	c->from_off = loc->off;
	c->off = off;
	c->len = rec.len;
	loc->seg->ncommits++;
	sp->nreloc++;
	*budget -= *budget < rec.len ? *budget : rec.len;
	return 0;
}

/*
 * Compaction: when the oldest segment is mostly dead but still holds a
 * few live records, it pins every newer segment (the GC rule).  Copy
 * them, a batch at a time, to the end of the log (recovery treats a
 * second MSG with a live id as a move, and a later STATE wins anyway); a
 * message's MSG is copied with its latest STATE right after it, wherever
 * that is, and a STATE whose MSG lives elsewhere alone.  Once a copy is
 * durable the index points at it, and when the last one moved the
 * segment is collected.  Server mode only: the copies ride the group
 * commit like any message.
 */
static void
spool_compact(struct spool *sp)
{
	struct spool_seg *seg = TAILQ_FIRST(&sp->segs);
	struct spool_loc *loc, *next;
	struct spool_reader rd, rds;
	uint64_t budget = SPOOL_COMPACT_BATCH;
	bool clean;

	if (!sp->thread_started || sp->nreloc > 0 || seg == NULL ||
	    seg->live == 0 || sp->nsegs < 3 || seg->num == sp->compact_skip)
		return;
	pthread_mutex_lock(&sp->mtx);
	clean = seg->sealed && !seg->failed && seg->synced >= seg->end;
	pthread_mutex_unlock(&sp->mtx);
	/* only a settled segment that is at least 3/4 dead */
	if (!clean || seg->ncommits > 0 || seg->live_bytes > seg->end / 4)
		return;
	spool_reader_init(&rd, -1);		/* seg */
	spool_reader_init(&rds, -1);		/* STATEs elsewhere */
	/* nothing moves in seg->locs until a copy is durable */
	for (loc = TAILQ_FIRST(&seg->locs); loc != NULL && budget > 0;
	    loc = next) {
		struct spool_ent *ent = loc->ent;

		next = TAILQ_NEXT(loc, seg_entry);
		if (loc->type == SPOOL_REC_STATE && ent->msg.seg == seg)
			continue;	/* goes right after its MSG */
		if (spool_copy(sp, &rd, loc, &budget) != 0)
			break;
		if (loc->type == SPOOL_REC_MSG && ent->st.seg != NULL &&
		    spool_copy(sp, &rds, &ent->st, &budget) != 0)
			break;
	}
	spool_reader_done(&rd);
	spool_reader_done(&rds);
}

/* Close the fds of sealed segments that need no more fdatasync. */
static void
spool_close_fds(struct spool *sp)
{
	struct spool_seg *seg;
	int fd;

	pthread_mutex_lock(&sp->mtx);
	TAILQ_FOREACH_REVERSE(seg, &sp->segs, spool_segs, entry) {
		if (seg->fd < 0)
			break;
		if (!seg->sealed || seg->syncing ||
		    (seg->synced < seg->end && !seg->failed))
			continue;
		fd = seg->fd;
		seg->fd = -1;
		close(fd);
		/* closed segments are never visited by the commit thread,
		   which walks back from the newest while fds are open; the
		   ones older than this one are closed too or about to be */
	}
	pthread_mutex_unlock(&sp->mtx);
}

/*
 * The reserve: SPOOL_RESERVE bytes held by dir/reserve, given back when a
 * DEL record (spool_delete, spool_remove, or the DEL of a failed commit)
 * finds the disk full, so that an operator can always free space with
 * `ombud queue delete` and the scheduler can drop delivered messages.
 * MSG and STATE records never use it: on a full disk a message gets
 * 452 4.3.1 and the client keeps it, a STATE append fails with ENOSPC
 * and the scheduler keeps the state in memory.  Made again once segments
 * were removed.
 */
static void
spool_reserve_make(struct spool *sp)
{
	char path[4096];
	int fd;

	if (sp->readonly)
		return;
	snprintf(path, sizeof(path), "%s/reserve", sp->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return;
	if (posix_fallocate(fd, 0, SPOOL_RESERVE) == 0 && fdatasync(fd) == 0)
		sp->reserve = true;
	else
		(void)unlink(path);	/* no room now; try after the next GC */
	close(fd);
}

static bool
spool_reserve_release(struct spool *sp)
{
	char path[4096];

	if (!sp->reserve)
		return false;
	snprintf(path, sizeof(path), "%s/reserve", sp->dir);
	sp->reserve = false;
	if (unlink(path) != 0)
		return false;
	log_event(LOG_LVL_WARN, "spool.reserve_released", "dir", sp->dir,
	    NULL);
	return true;
}

/* Unlink the oldest segments while they hold nothing needed. */
static void
spool_gc(struct spool *sp)
{
	char name[SPOOL_SEG_NAME_LEN + 1];
	struct spool_seg *seg;
	bool ok;

	if (sp->readonly)
		return;
	for (;;) {
		pthread_mutex_lock(&sp->mtx);
		seg = TAILQ_FIRST(&sp->segs);
		ok = seg != NULL &&
		    (seg != TAILQ_LAST(&sp->segs, spool_segs) || seg->sealed) &&
		    seg->live == 0 && seg->ncommits == 0 && !seg->syncing &&
		    (seg->synced >= seg->end || seg->failed);
		pthread_mutex_unlock(&sp->mtx);
		if (!ok) {
			if (!sp->reserve)
				spool_reserve_make(sp);
			return;
		}
		spool_seg_name(name, seg->num);
		if (unlinkat(sp->segdirfd, name, 0) != 0 && errno != ENOENT) {
			log_warn("spool %s: unlink segment %s", sp->dir, name);
			return;
		}
		atomic_fetch_add(&sp->n_dir_fsyncs, 1);
		if (fsync(sp->segdirfd) != 0) {
			log_warn("spool %s: fsync seg/ after unlinking %s",
			    sp->dir, name);
			return;	/* retried next time (unlink: ENOENT) */
		}
		pthread_mutex_lock(&sp->mtx);
		TAILQ_REMOVE(&sp->segs, seg, entry);
		sp->nsegs--;
		pthread_mutex_unlock(&sp->mtx);
		if (seg->fd >= 0)
			close(seg->fd);
		free(seg);
		atomic_fetch_add(&sp->n_seg_removed, 1);
	}
}

static void
spool_event_cb(evutil_socket_t fd, short what, void *arg)
{
	spool_process(arg);
}

/* The commit thread: one fdatasync per dirty segment per round. */
static void *
spool_commit_main(void *arg)
{
	struct spool *sp = arg;
	struct spool_sync *v = NULL;
	struct spool_seg *seg;
	size_t nv, cap = 0, i;

	pthread_mutex_lock(&sp->mtx);
	for (;;) {
		nv = 0;
		TAILQ_FOREACH_REVERSE(seg, &sp->segs, spool_segs, entry) {
			if (seg->fd < 0)
				break;	/* older ones are closed and clean */
			if (seg->failed || seg->end <= seg->synced)
				continue;
			if (nv == cap) {
				cap = cap ? cap * 2 : 4;
				v = xrealloc(v, cap * sizeof(*v));
			}
			v[nv].seg = seg;
			v[nv].fd = seg->fd;
			v[nv].target = seg->end;
			v[nv].err = 0;
			seg->syncing = true;
			nv++;
		}
		if (nv == 0) {
			if (sp->stop)
				break;
			sp->idle = true;
			pthread_cond_wait(&sp->work_cv, &sp->mtx);
			sp->idle = false;
			if (sp->commit_delay_us > 0 && !sp->stop) {
				/* Woken from idle by the first record: give
				 * the sessions that are about to commit too a
				 * moment, so one fdatasync covers them all
				 * (PostgreSQL's commit_delay).  Back to back
				 * rounds need no delay: the previous
				 * fdatasync was the gathering window. */
				struct timespec ts = { 0,
				    (long)sp->commit_delay_us * 1000 };
				pthread_mutex_unlock(&sp->mtx);
				nanosleep(&ts, NULL);
				pthread_mutex_lock(&sp->mtx);
			}
			continue;
		}
		pthread_mutex_unlock(&sp->mtx);
		for (i = nv; i-- > 0;) {	/* oldest (sealed) first */
			v[i].err = spool_fdatasync(v[i].fd);
			atomic_fetch_add(&sp->n_fsyncs, 1);
		}
		pthread_mutex_lock(&sp->mtx);
		for (i = 0; i < nv; i++) {
			seg = v[i].seg;
			seg->syncing = false;
			if (v[i].err == 0) {
				if (v[i].target > seg->synced)
					seg->synced = v[i].target;
			} else {
				seg->failed = seg->sealed = true;
				seg->err = v[i].err;
			}
		}
		pthread_cond_broadcast(&sp->synced_cv);
		pthread_mutex_unlock(&sp->mtx);
		for (i = 0; i < nv; i++) {
			if (v[i].err == 0)
				continue;
			errno = v[i].err;
			log_warn("spool %s: fdatasync segment %" PRIu64
			    " failed, sealing it", sp->dir, v[i].seg->num);
		}
		if (sp->ev)
			event_active(sp->ev, 0, 0);
		pthread_mutex_lock(&sp->mtx);
	}
	pthread_mutex_unlock(&sp->mtx);
	free(v);
	return NULL;
}

/* ---- public interface ---- */

struct spool *
spool_open(const char *dir, const struct spool_opts *opts,
    struct event_base *base)
{
	struct spool *sp = spool_new(dir, false);
	char *path = NULL;
	int dfd = -1, err;
	bool created = false;

	if (opts != NULL && opts->segment_max != 0)
		sp->segment_max = opts->segment_max;
	if (opts != NULL && opts->commit_delay_us <= 100000)
		sp->commit_delay_us = opts->commit_delay_us;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		log_warn("spool %s: mkdir", dir);
		goto fail;
	}
	path = xmalloc(strlen(dir) + sizeof("/lock"));
	strcpy(path, dir);
	strcat(path, "/lock");
	if ((sp->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		log_warn("spool %s: open lock", dir);
		goto fail;
	}
	if (flock(sp->lockfd, LOCK_EX | LOCK_NB) != 0) {
		err = errno;
		if (err == EWOULDBLOCK)
			log_warnx("spool %s is locked by another process",
			    dir);
		else
			log_warn("spool %s: flock", dir);
		errno = err;
		goto fail;
	}
	if (mkdir(sp->segdir, 0700) == 0)
		created = true;
	else if (errno != EEXIST) {
		log_warn("spool %s: mkdir seg", dir);
		goto fail;
	}
	if (created) {
		/* make the new seg/ entry durable before relying on it */
		if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
		    fsync(dfd) != 0) {
			log_warn("spool %s: fsync", dir);
			goto fail;
		}
	}
	if ((sp->segdirfd = open(sp->segdir,
	    O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		log_warn("spool %s: open seg", dir);
		goto fail;
	}
	if (spool_recover(sp) != 0)
		goto fail;
	spool_gc(sp);
	if (base != NULL) {
		sp->base = base;
		if ((sp->ev = event_new(base, -1, 0, spool_event_cb, sp)) ==
		    NULL) {
			log_warnx("spool %s: event_new", dir);
			errno = ENOMEM;
			goto fail;
		}
		if ((err = pthread_create(&sp->thread, NULL,
		    spool_commit_main, sp)) != 0) {
			errno = err;
			log_warn("spool %s: pthread_create", dir);
			goto fail;
		}
		sp->thread_started = true;
	}
	{
		struct spool_seg *seg;
		uint64_t bytes = 0;
		size_t nseg = 0;

		TAILQ_FOREACH(seg, &sp->segs, entry) {
			bytes += seg->end;
			nseg++;
		}
		char nm[32], ns[32], nb[32];

		snprintf(nm, sizeof(nm), "%zu", sp->count);
		snprintf(ns, sizeof(ns), "%zu", nseg);
		snprintf(nb, sizeof(nb), "%" PRIu64, bytes);
		log_event(LOG_LVL_INFO, "spool.opened", "dir", dir,
		    "messages", nm, "segments", ns, "bytes", nb, NULL);
	}
	if (dfd >= 0)
		close(dfd);
	free(path);
	return sp;
fail:
	err = errno;
	if (dfd >= 0)
		close(dfd);
	free(path);
	spool_free(sp);
	errno = err ? err : EIO;
	return NULL;
}

void
spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	if (sp->thread_started) {
		pthread_mutex_lock(&sp->mtx);
		sp->stop = true;
		pthread_cond_signal(&sp->work_cv);
		pthread_mutex_unlock(&sp->mtx);
		pthread_join(sp->thread, NULL);
		sp->thread_started = false;
	}
	/* Every record is now durable or failed: run the last callbacks
	   here, then sync the DEL records that failures may have added. */
	spool_process(sp);
	spool_sync_all(sp);
	spool_gc(sp);
	spool_free(sp);
}

/* A commit for the record ending at end in seg, queued last. */
static struct spool_commit *
spool_commit_new(struct spool *sp, struct spool_seg *seg, uint64_t end,
    const char *id)
{
	struct spool_commit *c;

	if ((c = sp->cfree) != NULL) {
		sp->cfree = c->next;
		sp->ncfree--;
	} else
		c = xmalloc(sizeof(*c));
	memset(c, 0, sizeof(*c));
	c->seg = seg;
	c->end = end;
	memcpy(c->id, id, QUEUE_ID_LEN);
	c->id[QUEUE_ID_LEN] = '\0';
	seg->ncommits++;
	if (sp->cq_tail)
		sp->cq_tail->next = c;
	else
		sp->cq_head = c;
	sp->cq_tail = c;
	return c;
}

struct spool_commit *
spool_submit(struct spool *sp, const struct envelope *e,
    const char *content, size_t content_len, spool_commit_cb cb, void *arg)
{
	struct spool_commit *c;
	struct spool_seg *seg;
	struct spool_ent *ent;
	struct iovec iov[2];
	uint64_t off, end;

	if (sp->readonly || !queue_id_valid(e->id) ||
	    e->content_size != content_len || e->nrcpt > ENV_MAX_RCPT ||
	    (content_len > 0 && content == NULL)) {
		errno = EINVAL;
		return NULL;
	}
	if (spool_index_find(sp, e->id) != NULL) {
		errno = EEXIST;
		return NULL;
	}
	buf_reset(&sp->enc);
	envelope_encode(e, &sp->enc);
	iov[0].iov_base = sp->enc.data;
	iov[0].iov_len = sp->enc.len;
	iov[1].iov_base = (void *)content;
	iov[1].iov_len = content_len;
	if ((seg = spool_append(sp, SPOOL_REC_MSG, iov, 2, &off, &end)) ==
	    NULL)
		return NULL;
	ent = spool_index_add(sp, e->id);
	spool_loc_place(&ent->msg, seg, off,
	    (uint32_t)(end - off - SPOOL_HDR_LEN));
	ent->nrcpt = (uint32_t)e->nrcpt;
	c = spool_commit_new(sp, seg, end, e->id);
	c->kind = SPOOL_C_MSG;
	c->cb = cb;
	c->arg = arg;
	return spool_commit_start(sp, c);
}

/* In server mode c waits for the commit thread; offline, it is made
 * durable and its callback run right here. */
static struct spool_commit *
spool_commit_start(struct spool *sp, struct spool_commit *c)
{
	if (sp->thread_started)
		return c;
	spool_sync_all(sp);
	spool_process(sp);
	return &spool_offline_done;
}

void
spool_commit_cancel(struct spool_commit *c)
{
	if (c == NULL || c == &spool_offline_done)
		return;
	/* freed by spool_process once durable; only the callback goes */
	c->cb = NULL;
	c->arg = NULL;
}

int
spool_delete(struct spool *sp, const char *id)
{
	struct spool_ent *ent;
	struct spool_seg *seg;
	uint64_t end;
	int err;

	if (sp->readonly) {
		errno = EBADF;
		return -1;
	}
	if (!queue_id_valid(id) || (ent = spool_index_find(sp, id)) == NULL) {
		errno = ENOENT;
		return -1;
	}
	if ((seg = spool_append_del(sp, id, &end)) == NULL) {
		log_warn("spool %s: delete %s", sp->dir, id);
		return -1;
	}
	if ((err = spool_wait_durable(sp, seg, end)) != 0) {
		errno = err;
		log_warn("spool %s: delete %s not durable", sp->dir, id);
		return -1;
	}
	/* the loop thread is here: nothing else touched the index */
	spool_index_remove(sp, ent);
	spool_gc(sp);
	spool_compact(sp);
	return 0;
}

struct spool_commit *
spool_remove(struct spool *sp, const char *id, spool_commit_cb cb, void *arg)
{
	struct spool_commit *c;
	struct spool_ent *ent;
	struct spool_seg *seg;
	uint64_t end;

	if (sp->readonly) {
		errno = EBADF;
		return NULL;
	}
	if (!queue_id_valid(id) || (ent = spool_index_find(sp, id)) == NULL) {
		errno = ENOENT;
		return NULL;
	}
	if ((seg = spool_append_del(sp, id, &end)) == NULL)
		return NULL;
	/* gone at once; its records are dead, and a segment they kept is
	   collected no sooner than the oldest-first rule allows, while
	   this DEL's own segment waits for the commit */
	spool_index_remove(sp, ent);
	c = spool_commit_new(sp, seg, end, id);
	c->kind = SPOOL_C_DEL;
	c->cb = cb;
	c->arg = arg;
	return spool_commit_start(sp, c);
}

struct spool_commit *
spool_update(struct spool *sp, const struct envelope *e, spool_commit_cb cb,
    void *arg)
{
	struct spool_commit *c;
	struct spool_ent *ent;
	struct spool_seg *seg, *prev;
	struct iovec iov;
	uint64_t off, end;

	if (sp->readonly) {
		errno = EBADF;
		return NULL;
	}
	if (!queue_id_valid(e->id) ||
	    (ent = spool_index_find(sp, e->id)) == NULL) {
		errno = ENOENT;
		return NULL;
	}
	if (e->nrcpt != ent->nrcpt) {
		errno = EINVAL;
		return NULL;
	}
	buf_reset(&sp->enc);
	envelope_state_encode(e, &sp->enc);
	iov.iov_base = sp->enc.data;
	iov.iov_len = sp->enc.len;
	if ((seg = spool_append(sp, SPOOL_REC_STATE, &iov, 1, &off, &end)) ==
	    NULL)
		return NULL;
	/* the new record is the latest at once (spool_load, compaction);
	   the one it supersedes is dead, but its segment stays until the
	   new one is durable */
	prev = ent->st.seg;
	spool_loc_place(&ent->st, seg, off,
	    (uint32_t)(end - off - SPOOL_HDR_LEN));
	c = spool_commit_new(sp, seg, end, e->id);
	c->kind = SPOOL_C_STATE;
	if (prev != NULL) {
		c->from = prev;
		prev->ncommits++;
	}
	c->cb = cb;
	c->arg = arg;
	return spool_commit_start(sp, c);
}

int
spool_load(struct spool *sp, const char *id, struct envelope *e,
    struct buf *content)
{
	struct spool_reader rdm, rds;
	struct spool_ent *ent;
	int rc;

	envelope_init(e);
	if (!queue_id_valid(id) || (ent = spool_index_find(sp, id)) == NULL) {
		errno = ENOENT;
		return -1;
	}
	spool_reader_init(&rdm, -1);
	spool_reader_init(&rds, -1);
	rc = spool_ent_load(sp, ent, &rdm, &rds, e, content);
	spool_reader_done(&rdm);
	spool_reader_done(&rds);
	return rc;
}

int
spool_foreach(struct spool *sp, spool_scan_fn fn, void *arg)
{
	char (*ids)[QUEUE_ID_LEN + 1] = NULL;
	struct spool_reader rdm, rds;
	struct spool_ent *ent;
	struct envelope e;
	size_t n = 0, i;
	int err = 0, stop;

	/* the ids first: fn may remove, update or submit messages */
	if (sp->count > 0)
		ids = xcalloc(sp->count, sizeof(*ids));
	TAILQ_FOREACH(ent, &sp->order, entry)
		memcpy(ids[n++], ent->id, sizeof(*ids));
	spool_reader_init(&rdm, -1);
	spool_reader_init(&rds, -1);
	for (i = 0; i < n; i++) {
		if ((ent = spool_index_find(sp, ids[i])) == NULL)
			continue;		/* fn removed it */
		if (spool_ent_load(sp, ent, &rdm, &rds, &e, NULL) != 0) {
			/* read-only: deleted since the index was read */
			if (sp->readonly && errno == ENOENT)
				continue;
			err = errno;
			log_warn("spool %s: cannot read message %s", sp->dir,
			    ids[i]);
			continue;
		}
		stop = fn(arg, &e);
		envelope_free(&e);
		if (stop != 0)
			break;
	}
	spool_reader_done(&rdm);
	spool_reader_done(&rds);
	free(ids);
	if (err != 0) {
		errno = err;
		return -1;
	}
	return 0;
}

size_t
spool_count(const struct spool *sp)
{
	return sp->count;
}

void
spool_stats(const struct spool *sp, struct spool_stats *out)
{
	out->commits = atomic_load(&sp->n_commits);
	out->commit_errors = atomic_load(&sp->n_commit_errors);
	out->fsyncs = atomic_load(&sp->n_fsyncs);
	out->dir_fsyncs = atomic_load(&sp->n_dir_fsyncs);
	out->records = atomic_load(&sp->n_records);
	out->bytes = atomic_load(&sp->n_bytes);
	out->write_errors = atomic_load(&sp->n_write_errors);
	out->segments_created = atomic_load(&sp->n_seg_created);
	out->segments_removed = atomic_load(&sp->n_seg_removed);
	out->relocated = atomic_load(&sp->n_relocated);
}

/* Build a read-only index of dir (no lock).  0 or -1 with errno. */
static int
spool_load_readonly(const char *dir, struct spool **out)
{
	struct spool *sp = spool_new(dir, true);
	struct stat st;
	int err;

	*out = NULL;
	if ((sp->segdirfd = open(sp->segdir,
	    O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		err = errno;
		/* a spool that never stored anything has no seg/ yet */
		if (err == ENOENT && stat(dir, &st) == 0 &&
		    S_ISDIR(st.st_mode)) {
			*out = sp;
			return 0;
		}
		goto fail;
	}
	if (spool_recover(sp) != 0) {
		err = errno ? errno : EIO;
		goto fail;
	}
	*out = sp;
	return 0;
fail:
	spool_free(sp);
	errno = err;
	return -1;
}

/*
 * Read and verify the record loc points at.  0, or -1 with errno: ENOENT
 * when its segment is gone or, read-only, the record is not (or not yet)
 * what the index says (deleted since); EIO for that in an open spool; or
 * the read's error.
 */
static int
spool_loc_read(struct spool *sp, const struct spool_loc *loc,
    struct spool_reader *rd, bool whole, struct spool_rec *rec)
{
	if (spool_reader_seg(sp, rd, loc->seg->num) != 0)
		return -1;
	rd->off = loc->off;
	switch (spool_read_record(rd, whole, rec)) {
	case SPOOL_RD_OK:
		if (rec->type == loc->type && rec->len == loc->len)
			return 0;
		break;
	case SPOOL_RD_ERR:
		return -1;
	case SPOOL_RD_END:
	case SPOOL_RD_BAD:
		break;
	}
	errno = sp->readonly ? ENOENT : EIO;
	return -1;
}

/*
 * Decode the envelope of ent from its MSG record (rdm reads it), its
 * content too when content is not NULL, and apply its latest STATE (rds
 * reads it).  The readers keep their segment open across calls.  0, or
 * -1 with errno as spool_loc_read and e freed.
 */
static int
spool_ent_load(struct spool *sp, const struct spool_ent *ent,
    struct spool_reader *rdm, struct spool_reader *rds, struct envelope *e,
    struct buf *content)
{
	struct spool_rec rec;
	size_t used;

	envelope_init(e);
	if (spool_loc_read(sp, &ent->msg, rdm, content != NULL, &rec) != 0)
		goto fail;
	if (spool_rec_envelope(&rec, e, &used) != 0) {
		errno = sp->readonly ? ENOENT : EIO;
		goto fail;
	}
	if (content != NULL) {
		buf_reset(content);
		buf_add(content, rec.data + used, rec.len - used);
	}
	if (ent->st.seg == NULL)
		return 0;
	if (spool_loc_read(sp, &ent->st, rds, true, &rec) != 0) {
		/* read-only: superseded by a STATE written after the index
		   was read, and collected; show the message without it */
		if (sp->readonly && errno == ENOENT) {
			log_debug("spool %s: state of %s changed while "
			    "reading", sp->dir, ent->id);
			return 0;
		}
		goto fail;
	}
	if (envelope_state_decode(rec.data, rec.len, e) != 0) {
		errno = EIO;	/* recovery checked it: cannot happen */
		log_warnx("spool %s: state of %s does not fit its envelope",
		    sp->dir, ent->id);
		goto fail;
	}
	return 0;
fail:
	envelope_free(e);
	return -1;
}

int
spool_scan(const char *dir, spool_scan_fn fn, void *arg)
{
	struct spool *sp;
	int rc, err;

	if (spool_load_readonly(dir, &sp) != 0)
		return -1;
	rc = spool_foreach(sp, fn, arg);
	err = errno;
	spool_free(sp);
	errno = err;
	return rc;
}

int
spool_read(const char *dir, const char *id, struct envelope *e,
    struct buf *content)
{
	struct spool *sp;
	int rc, err;

	envelope_init(e);
	if (!queue_id_valid(id)) {
		errno = ENOENT;
		return -1;
	}
	if (spool_load_readonly(dir, &sp) != 0)
		return -1;
	rc = spool_load(sp, id, e, content);
	err = errno;
	spool_free(sp);
	errno = err;
	return rc;
}

int
spool_read_content(const char *dir, const char *id, struct buf *out)
{
	struct envelope e;

	if (spool_read(dir, id, &e, out) != 0)
		return -1;
	envelope_free(&e);
	return 0;
}

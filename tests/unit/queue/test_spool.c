/*
 * test_spool.c - the segment spool: group commit from an event loop,
 * recovery after a torn tail at every offset of the last record and after
 * garbage, deletes that survive a restart, rotation and garbage
 * collection, write errors (RLIMIT_FSIZE gives EFBIG: the rollback path),
 * fdatasync errors (fdatasync is overridden below), cancel, the lock,
 * unknown record types, and read-only scans while a server appends.
 * Delivery state: STATE records (latest wins, through reopen, torn
 * tails, compaction and GC, ignored for deleted messages), spool_load,
 * spool_foreach, spool_read, and spool_remove's asynchronous DEL.
 *
 * Each test works in its own mkdtemp directory under $TMPDIR or /tmp.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <zlib.h>

#include "common/log.h"
#include "queue/spool.h"

/*
 * fdatasync override: the spool's calls resolve to this definition, so
 * a test can make the next n calls fail with an errno.  It also takes at
 * least SYNC_FLOOR_USEC, like a real disk (about 450 us on the reference
 * machine), so that batching does not depend on TMPDIR being on tmpfs.
 */
#define SYNC_FLOOR_USEC	200

static _Atomic int	fail_sync_errno;
static _Atomic int	fail_sync_count;

int
fdatasync(int fd)
{
	int64_t t0 = now_usec_wall(), dt;
	int rc;

	if (atomic_load(&fail_sync_count) > 0 &&
	    atomic_fetch_sub(&fail_sync_count, 1) > 0) {
		errno = atomic_load(&fail_sync_errno);
		return -1;
	}
	rc = (int)syscall(SYS_fdatasync, fd);
	if ((dt = now_usec_wall() - t0) >= 0 && dt < SYNC_FLOOR_USEC)
		usleep((useconds_t)(SYNC_FLOOR_USEC - dt));
	return rc;
}

static void
fail_next_syncs(int n, int err)
{
	atomic_store(&fail_sync_errno, err);
	atomic_store(&fail_sync_count, n);
}

/* ---- helpers ---- */

struct tdir {
	char	dir[256];	/* the spool */
	char	seg[300];	/* its seg/ */
};

static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static int
setup_dir(void **state)
{
	struct tdir *t = calloc(1, sizeof(*t));
	const char *tmp = getenv("TMPDIR");

	if (t == NULL)
		return -1;
	snprintf(t->dir, sizeof(t->dir), "%s/test_spool.XXXXXX",
	    tmp ? tmp : "/tmp");
	if (mkdtemp(t->dir) == NULL)
		return -1;
	snprintf(t->seg, sizeof(t->seg), "%s/seg", t->dir);
	*state = t;
	return 0;
}

static int
teardown_dir(void **state)
{
	struct tdir *t = *state;

	fail_next_syncs(0, 0);
	nftw(t->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(t);
	return 0;
}

static void
seg_path(const struct tdir *t, uint64_t num, char *out, size_t sz)
{
	snprintf(out, sz, "%s/%020llu.seg", t->seg, (unsigned long long)num);
}

/* Number of segment files, and the highest segment number. */
static int
count_segs(const struct tdir *t, uint64_t *maxnum)
{
	DIR *d = opendir(t->seg);
	struct dirent *de;
	int n = 0;

	if (maxnum)
		*maxnum = 0;
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (strlen(de->d_name) != 24 ||
		    strcmp(de->d_name + 20, ".seg") != 0)
			continue;
		n++;
		if (maxnum && strtoull(de->d_name, NULL, 10) > *maxnum)
			*maxnum = strtoull(de->d_name, NULL, 10);
	}
	closedir(d);
	return n;
}

static off_t
file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/* Deterministic content for message seq, exactly len (>= 64) bytes. */
static void
make_content(struct buf *b, int seq, size_t len)
{
	static const char alpha[] = "abcdefghijklmnopqrstuvwxyz";

	buf_reset(b);
	buf_printf(b, "Subject: message %d\r\n\r\n", seq);
	buf_reserve(b, len);
	while (b->len + 2 < len) {
		size_t n = len - 2 - b->len;
		size_t k = (size_t)seq % 26;
		if (n > 26 - k)
			n = 26 - k;
		buf_add(b, alpha + k, n);
	}
	buf_adds(b, "\r\n");
}

static void
make_env(struct envelope *e, int seq, size_t content_len)
{
	struct env_rcpt *r;

	envelope_init(e);
	queue_id_new(e->id);
	e->created = 1700000000 + seq;
	snprintf(e->helo, sizeof(e->helo), "client%d.example", seq);
	strcpy(e->peer, "192.0.2.1");
	strcpy(e->mail_from, "sender@example.com");
	e->body = SMTP_BODY_8BITMIME;
	e->content_size = content_len;
	r = envelope_add_rcpt(e);
	snprintf(r->addr, sizeof(r->addr), "rcpt%d@example.org", seq);
	r->notify = SMTP_NOTIFY_FAILURE;
}

struct sync_res {
	int	calls;
	int	err;
};

static void
sync_cb(void *arg, int err)
{
	struct sync_res *r = arg;

	r->calls++;
	r->err = err;
}

/* Offline submit of message seq; the callback must have run. */
static void
submit_sync(struct spool *sp, int seq, size_t len, char id[QUEUE_ID_LEN + 1])
{
	struct envelope e;
	struct buf c;
	struct sync_res r = { 0, -1 };

	buf_init(&c);
	make_content(&c, seq, len);
	make_env(&e, seq, c.len);
	assert_non_null(spool_submit(sp, &e, c.data, c.len, sync_cb, &r));
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.err, 0);
	if (id)
		memcpy(id, e.id, QUEUE_ID_LEN + 1);
	envelope_free(&e);
	buf_free(&c);
}

/* spool_scan collecting ids and checking each envelope against seq. */
struct collect {
	char	(*ids)[QUEUE_ID_LEN + 1];
	size_t	 n, cap;
	bool	 bad;
};

static int
collect_cb(void *arg, const struct envelope *e)
{
	struct collect *c = arg;

	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->ids = realloc(c->ids, c->cap * sizeof(*c->ids));
	}
	memcpy(c->ids[c->n++], e->id, QUEUE_ID_LEN + 1);
	if (e->nrcpt != 1 || strcmp(e->mail_from, "sender@example.com") != 0)
		c->bad = true;
	return 0;
}

static size_t
scan_count(const struct tdir *t, struct collect *c)
{
	memset(c, 0, sizeof(*c));
	assert_int_equal(spool_scan(t->dir, collect_cb, c), 0);
	assert_false(c->bad);
	return c->n;
}

static bool
has_id(const struct collect *c, const char *id)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->ids[i], id) == 0)
			return true;
	return false;
}

/* ---- server mode: group commit from an event loop ---- */

struct load {
	struct spool		*sp;
	struct event_base	*base;
	int			 total;		/* messages to submit */
	int			 inflight_max;	/* concurrent "sessions" */
	int			 submitted;
	int			 done;
	int			 errors;
	int			 last_seq;
	bool			 out_of_order;
	size_t			 size;
	char			 (*ids)[QUEUE_ID_LEN + 1];
	struct buf		 content;
	atomic_bool		 finished;
};

struct sub {
	struct load	*l;
	int		 seq;
};

static void load_submit(struct load *l);

static void
load_commit_cb(void *arg, int err)
{
	struct sub *s = arg;
	struct load *l = s->l;

	if (s->seq <= l->last_seq)
		l->out_of_order = true;
	l->last_seq = s->seq;
	free(s);
	l->done++;
	if (err != 0)
		l->errors++;
	if (l->submitted < l->total)
		load_submit(l);
	else if (l->done == l->total)
		event_base_loopbreak(l->base);
}

static void
load_submit(struct load *l)
{
	struct envelope e;
	struct sub *s = malloc(sizeof(*s));

	assert_non_null(s);
	s->l = l;
	s->seq = l->submitted;
	make_content(&l->content, s->seq, l->size);
	make_env(&e, s->seq, l->content.len);
	if (l->ids)
		memcpy(l->ids[s->seq], e.id, QUEUE_ID_LEN + 1);
	l->submitted++;
	if (spool_submit(l->sp, &e, l->content.data, l->content.len,
	    load_commit_cb, s) == NULL)
		fail_msg("spool_submit: %s", strerror(errno));
	envelope_free(&e);
}

static void
load_start_cb(evutil_socket_t fd, short what, void *arg)
{
	struct load *l = arg;

	(void)fd; (void)what;
	for (int i = 0; i < l->inflight_max && l->submitted < l->total; i++)
		load_submit(l);
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what; (void)arg;
	fail_msg("event loop timed out");
}

/*
 * A load of total messages of size bytes, inflight at a time, with a
 * server-mode spool on a new event_base (or on base/sp when given).
 * ids_cap > 0 records the ids of the first ids_cap messages.
 */
static void
load_init(struct load *l, const char *dir, const struct spool_opts *o,
    int total, int inflight, size_t size, size_t ids_cap)
{
	memset(l, 0, sizeof(*l));
	l->base = event_base_new();
	assert_non_null(l->base);
	if (dir != NULL) {
		l->sp = spool_open(dir, o, l->base);
		assert_non_null(l->sp);
	}
	l->total = total;
	l->inflight_max = inflight;
	l->size = size;
	l->last_seq = -1;
	if (ids_cap > 0)
		l->ids = calloc(ids_cap, sizeof(*l->ids));
	buf_init(&l->content);
}

static void
load_free(struct load *l)
{
	if (l->sp != NULL)
		spool_close(l->sp);
	buf_free(&l->content);
	free(l->ids);
	event_base_free(l->base);
}

/* Run the load to completion on base. */
static void
load_run(struct load *l)
{
	struct event *start = event_new(l->base, -1, 0, load_start_cb, l);
	struct event *to = evtimer_new(l->base, timeout_cb, NULL);
	struct timeval tv = { 60, 0 };

	event_active(start, 0, 0);
	evtimer_add(to, &tv);
	event_base_dispatch(l->base);
	event_free(start);
	event_free(to);
}

static void
test_group_commit(void **state)
{
	struct tdir *t = *state;
	struct load l;
	struct spool_stats st;
	struct collect c;
	struct buf content;
	int64_t t0;
	double secs;

	load_init(&l, t->dir, NULL, 5000, 64, 4096, 5000);
	t0 = now_usec_wall();
	load_run(&l);
	secs = (double)(now_usec_wall() - t0) / 1e6;

	assert_int_equal(l.done, l.total);
	assert_int_equal(l.errors, 0);
	assert_false(l.out_of_order);
	assert_int_equal(spool_count(l.sp), (size_t)l.total);
	spool_stats(l.sp, &st);
	print_message("group commit: %d messages of %zu bytes in %.3f s "
	    "(%.0f/s), %llu fdatasync, %.1f commits per fdatasync\n",
	    l.total, l.size, secs, l.total / secs,
	    (unsigned long long)st.fsyncs,
	    (double)st.commits / (double)(st.fsyncs ? st.fsyncs : 1));
	assert_int_equal(st.commits, (uint64_t)l.total);
	assert_int_equal(st.commit_errors, 0);
	assert_true(st.fsyncs > 0);
	assert_true(st.fsyncs < st.commits);	/* the point of it all */
	spool_close(l.sp);
	l.sp = NULL;

	/* a read-only scan and a reopen find them all, in order */
	assert_int_equal(scan_count(t, &c), (size_t)l.total);
	for (int i = 0; i < l.total; i++)
		assert_string_equal(c.ids[i], l.ids[i]);
	free(c.ids);
	buf_init(&content);
	for (int i = 0; i < l.total; i += 997) {
		assert_int_equal(spool_read_content(t->dir, l.ids[i], &content),
		    0);
		make_content(&l.content, i, l.size);
		assert_int_equal(content.len, l.content.len);
		assert_memory_equal(content.data, l.content.data, content.len);
	}
	buf_free(&content);
	l.sp = spool_open(t->dir, NULL, NULL);
	assert_non_null(l.sp);
	assert_int_equal(spool_count(l.sp), (size_t)l.total);
	load_free(&l);
}

/* A cancelled commit still happens; only its callback is dropped. */
static void
test_cancel(void **state)
{
	struct tdir *t = *state;
	struct spool_commit *h;
	struct sync_res r1 = { 0, -1 }, r2 = { 0, -1 };
	struct envelope e1, e2;
	struct buf c;
	struct load l;
	struct spool *sp;

	/* a third, uncancelled message will drive the loop */
	load_init(&l, t->dir, NULL, 1, 1, 100, 0);
	sp = l.sp;
	buf_init(&c);
	make_content(&c, 1, 100);
	make_env(&e1, 1, c.len);
	make_env(&e2, 2, c.len);
	h = spool_submit(sp, &e1, c.data, c.len, sync_cb, &r1);
	assert_non_null(h);
	assert_non_null(spool_submit(sp, &e2, c.data, c.len, sync_cb, &r2));
	spool_commit_cancel(h);
	load_run(&l);
	assert_int_equal(r1.calls, 0);
	assert_int_equal(r2.calls, 1);
	assert_int_equal(r2.err, 0);
	assert_int_equal(spool_count(sp), 3);
	spool_close(sp);
	l.sp = NULL;
	sp = spool_open(t->dir, NULL, NULL);
	assert_int_equal(spool_count(sp), 3);
	spool_close(sp);
	assert_int_equal(r1.calls, 0);

	/* offline: the callback ran already, cancel is harmless */
	sp = spool_open(t->dir, NULL, NULL);
	envelope_free(&e1);
	make_env(&e1, 4, c.len);
	h = spool_submit(sp, &e1, c.data, c.len, sync_cb, &r1);
	assert_non_null(h);
	assert_int_equal(r1.calls, 1);
	spool_commit_cancel(h);
	spool_close(sp);

	envelope_free(&e1);
	envelope_free(&e2);
	buf_free(&c);
	load_free(&l);
}

/* close() with commits in flight runs their callbacks before returning */
static void
test_close_flushes(void **state)
{
	struct tdir *t = *state;
	struct event_base *base = event_base_new();
	struct spool *sp = spool_open(t->dir, NULL, base);
	struct sync_res r[20];
	struct envelope e;
	struct buf c;

	assert_non_null(sp);
	buf_init(&c);
	make_content(&c, 0, 1000);
	for (int i = 0; i < 20; i++) {
		r[i].calls = 0;
		r[i].err = -1;
		make_env(&e, i, c.len);
		assert_non_null(spool_submit(sp, &e, c.data, c.len, sync_cb,
		    &r[i]));
		envelope_free(&e);
	}
	spool_close(sp);	/* the loop never ran */
	for (int i = 0; i < 20; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].err, 0);
	}
	sp = spool_open(t->dir, NULL, NULL);
	assert_int_equal(spool_count(sp), 20);
	spool_close(sp);
	buf_free(&c);
	event_base_free(base);
}

/* ---- recovery ---- */

/*
 * Four whole messages, then a fifth cut at every offset inside its
 * record: recovery keeps the four, ignores the rest, appends to a new
 * segment and leaves the torn one untouched.
 */
static void
test_torn_tail(void **state)
{
	struct tdir *t = *state;
	char ids[5][QUEUE_ID_LEN + 1], path[512], id6[QUEUE_ID_LEN + 1];
	struct spool *sp;
	struct collect c;
	off_t last_off, size;
	char *image;
	int fd;

	sp = spool_open(t->dir, NULL, NULL);
	assert_non_null(sp);
	for (int i = 0; i < 4; i++)
		submit_sync(sp, i, 300, ids[i]);
	seg_path(t, 1, path, sizeof(path));
	last_off = file_size(path);
	submit_sync(sp, 4, 200, ids[4]);
	spool_close(sp);
	size = file_size(path);
	assert_true(size > last_off + 16);
	image = malloc((size_t)size);
	fd = open(path, O_RDONLY);
	assert_int_equal(read(fd, image, (size_t)size), size);
	close(fd);

	log_set_level(LOG_LVL_ERR);	/* one warning per cut otherwise */
	for (off_t cut = last_off; cut <= size; cut++) {
		size_t want = cut == size ? 5 : 4;
		uint64_t maxnum;

		nftw(t->seg, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
		assert_int_equal(mkdir(t->seg, 0700), 0);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_int_equal(write(fd, image, (size_t)cut), cut);
		close(fd);

		assert_int_equal(scan_count(t, &c), want);
		for (size_t i = 0; i < want; i++)
			assert_string_equal(c.ids[i], ids[i]);
		free(c.ids);

		sp = spool_open(t->dir, NULL, NULL);
		assert_non_null(sp);
		assert_int_equal(spool_count(sp), want);
		submit_sync(sp, 6, 100, id6);
		spool_close(sp);
		/* the torn segment was not appended to */
		assert_int_equal(file_size(path), cut);
		assert_int_equal(count_segs(t, &maxnum), 2);
		assert_int_equal(maxnum, 2);
		sp = spool_open(t->dir, NULL, NULL);
		assert_int_equal(spool_count(sp), want + 1);
		spool_close(sp);
		assert_int_equal(scan_count(t, &c), want + 1);
		assert_string_equal(c.ids[want], id6);
		free(c.ids);
	}
	log_set_level(LOG_LVL_WARN);
	free(image);
}

/* Garbage after whole records, and a corrupted byte in the last one. */
static void
test_garbage_tail(void **state)
{
	struct tdir *t = *state;
	char path[512];
	struct spool *sp;
	struct collect c;
	off_t size;
	int fd;
	static const unsigned char huge[16] = {
		'O', 'M', 'B', '1', 1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f,
		0, 0, 0, 0,
	};
	unsigned char junk[100];

	sp = spool_open(t->dir, NULL, NULL);
	for (int i = 0; i < 3; i++)
		submit_sync(sp, i, 500, NULL);
	spool_close(sp);
	seg_path(t, 1, path, sizeof(path));
	size = file_size(path);

	/* random junk */
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 37 + 11);
	fd = open(path, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, junk, sizeof(junk)), sizeof(junk));
	close(fd);
	assert_int_equal(scan_count(t, &c), 3);
	free(c.ids);

	/* a header announcing a payload far beyond the file */
	assert_int_equal(truncate(path, size), 0);
	fd = open(path, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, huge, sizeof(huge)), sizeof(huge));
	close(fd);
	assert_int_equal(scan_count(t, &c), 3);
	free(c.ids);

	/* zeros, as a crash after a size change can leave */
	assert_int_equal(truncate(path, size + 4096), 0);
	sp = spool_open(t->dir, NULL, NULL);
	assert_non_null(sp);
	assert_int_equal(spool_count(sp), 3);
	spool_close(sp);

	/* one flipped byte in the last record's content: CRC */
	assert_int_equal(truncate(path, size), 0);
	fd = open(path, O_RDWR);
	assert_int_equal(pwrite(fd, "X", 1, size - 10), 1);
	close(fd);
	sp = spool_open(t->dir, NULL, NULL);
	assert_non_null(sp);
	assert_int_equal(spool_count(sp), 2);
	spool_close(sp);
}

/* Append a raw record of any type with a correct CRC. */
static void
append_raw(const char *path, uint8_t type, uint8_t reserved,
    const void *payload, uint32_t len)
{
	unsigned char h[16];
	uLong crc;
	int fd;

	memcpy(h, "OMB1", 4);
	h[4] = type;
	h[5] = reserved;
	h[6] = h[7] = 0;
	h[8] = (unsigned char)len;
	h[9] = (unsigned char)(len >> 8);
	h[10] = (unsigned char)(len >> 16);
	h[11] = (unsigned char)(len >> 24);
	crc = crc32(0, h + 4, 8);
	crc = crc32(crc, payload, len);
	h[12] = (unsigned char)crc;
	h[13] = (unsigned char)(crc >> 8);
	h[14] = (unsigned char)(crc >> 16);
	h[15] = (unsigned char)(crc >> 24);
	fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, h, 16), 16);
	assert_int_equal(write(fd, payload, len), (ssize_t)len);
	close(fd);
}

/* Records of unknown types are skipped, not taken for corruption. */
static void
test_unknown_type(void **state)
{
	struct tdir *t = *state;
	char path[512], id[QUEUE_ID_LEN + 1], junkid[QUEUE_ID_LEN + 1];
	struct spool *sp;
	struct collect c;

	sp = spool_open(t->dir, NULL, NULL);
	submit_sync(sp, 0, 100, NULL);
	spool_close(sp);
	seg_path(t, 1, path, sizeof(path));
	append_raw(path, 4, 0, "reserved type", 13);
	append_raw(path, 200, 0, "", 0);
	/* a DEL with reserved bits set is not understood: skipped */
	sp = spool_open(t->dir, NULL, NULL);
	submit_sync(sp, 1, 100, id);
	spool_close(sp);
	seg_path(t, 2, path, sizeof(path));
	append_raw(path, 2, 1, id, QUEUE_ID_LEN);
	/* a malformed DEL (CRC fine, not a queue id) is skipped too */
	memset(junkid, 'Z', QUEUE_ID_LEN);
	append_raw(path, 2, 0, junkid, QUEUE_ID_LEN);
	sp = spool_open(t->dir, NULL, NULL);
	submit_sync(sp, 2, 100, NULL);
	assert_int_equal(spool_count(sp), 3);
	spool_close(sp);
	assert_int_equal(scan_count(t, &c), 3);
	assert_true(has_id(&c, id));
	free(c.ids);
}

/* ---- delete, rotation, garbage collection ---- */

static void
test_delete(void **state)
{
	struct tdir *t = *state;
	char ids[10][QUEUE_ID_LEN + 1];
	struct spool *sp;
	struct collect c;
	struct buf content;

	sp = spool_open(t->dir, NULL, NULL);
	for (int i = 0; i < 10; i++)
		submit_sync(sp, i, 1000, ids[i]);
	for (int i = 0; i < 10; i += 2)
		assert_int_equal(spool_delete(sp, ids[i]), 0);
	assert_int_equal(spool_count(sp), 5);
	errno = 0;
	assert_int_equal(spool_delete(sp, ids[0]), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(spool_delete(sp, "0123456789abcdef0123"), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(spool_delete(sp, "../etc/passwd"), -1);
	spool_close(sp);

	sp = spool_open(t->dir, NULL, NULL);
	assert_int_equal(spool_count(sp), 5);
	spool_close(sp);
	assert_int_equal(scan_count(t, &c), 5);
	for (int i = 0; i < 10; i++)
		assert_int_equal(has_id(&c, ids[i]), i % 2 == 1);
	free(c.ids);
	buf_init(&content);
	assert_int_equal(spool_read_content(t->dir, ids[0], &content), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(spool_read_content(t->dir, ids[1], &content), 0);
	buf_free(&content);
}

/*
 * Small segments: deleting newer messages first must not unlink
 * anything (their DEL records may be needed for older segments), nor
 * resurrect anything after a restart; deleting the oldest then lets
 * every empty segment go.
 */
static void
test_rotation_gc(void **state)
{
	struct tdir *t = *state;
	struct spool_opts o = { .segment_max = 8192 };
	char ids[40][QUEUE_ID_LEN + 1], path[512];
	struct spool_stats st;
	struct spool *sp;
	struct collect c;
	int nseg;

	sp = spool_open(t->dir, &o, NULL);
	for (int i = 0; i < 40; i++)
		submit_sync(sp, i, 1500, ids[i]);
	nseg = count_segs(t, NULL);
	assert_true(nseg >= 8);		/* ~5 per 8 KiB segment */
	for (int i = 10; i < 40; i++)
		assert_int_equal(spool_delete(sp, ids[i]), 0);
	spool_stats(sp, &st);
	assert_int_equal(st.segments_removed, 0);
	assert_true(count_segs(t, NULL) >= nseg);
	spool_close(sp);

	sp = spool_open(t->dir, &o, NULL);
	assert_int_equal(spool_count(sp), 10);
	spool_close(sp);
	assert_int_equal(scan_count(t, &c), 10);
	for (int i = 0; i < 10; i++)
		assert_string_equal(c.ids[i], ids[i]);
	free(c.ids);

	sp = spool_open(t->dir, &o, NULL);
	seg_path(t, 1, path, sizeof(path));
	assert_int_equal(access(path, F_OK), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(spool_delete(sp, ids[i]), 0);
	/* segment 1 held only messages 0-3 (about 1.9 KiB records in 8 KiB
	   segments): it went; segment 2 still holds 5-7 */
	assert_int_equal(access(path, F_OK), -1);
	seg_path(t, 2, path, sizeof(path));
	assert_int_equal(access(path, F_OK), 0);
	for (int i = 5; i < 10; i++)
		assert_int_equal(spool_delete(sp, ids[i]), 0);
	spool_stats(sp, &st);
	assert_true(st.segments_removed > 0);
	assert_true(count_segs(t, NULL) <= 1);	/* at most the active one */
	assert_int_equal(spool_count(sp), 0);
	spool_close(sp);
	sp = spool_open(t->dir, &o, NULL);
	assert_int_equal(spool_count(sp), 0);
	spool_close(sp);
	assert_int_equal(count_segs(t, NULL), 0);
}

/*
 * Compaction: two long-lived messages (0 and 50) would pin every segment
 * after theirs; the server copies them forward and collects the rest.
 */
static void
test_compaction(void **state)
{
	struct tdir *t = *state;
	struct spool_opts o = { .segment_max = 16384 };
	struct spool_stats st;
	struct collect c;
	struct buf got, want;
	struct load l;
	char path[512];
	int keep[] = { 0, 50 };

	load_init(&l, t->dir, &o, 100, 8, 1500, 200);
	load_run(&l);
	assert_int_equal(l.errors, 0);
	assert_true(count_segs(t, NULL) >= 10);
	for (int i = 0; i < 100; i++)
		if (i != keep[0] && i != keep[1])
			assert_int_equal(spool_delete(l.sp, l.ids[i]), 0);
	/* more traffic drives the loop that completes the copies */
	for (int round = 0; round < 10; round++) {
		l.total += 10;
		load_run(&l);
		spool_stats(l.sp, &st);
		if (st.relocated >= 2 && count_segs(t, NULL) <= 3)
			break;
	}
	spool_stats(l.sp, &st);
	print_message("compaction: %llu moved, %llu segments removed, %d "
	    "left\n", (unsigned long long)st.relocated,
	    (unsigned long long)st.segments_removed, count_segs(t, NULL));
	assert_int_equal(st.relocated, 2);
	assert_true(count_segs(t, NULL) <= 3);
	seg_path(t, 1, path, sizeof(path));
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(spool_count(l.sp), 2 + (size_t)l.total - 100);

	buf_init(&got);
	buf_init(&want);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(spool_read_content(t->dir, l.ids[keep[k]],
		    &got), 0);
		make_content(&want, keep[k], l.size);
		assert_int_equal(got.len, want.len);
		assert_memory_equal(got.data, want.data, got.len);
	}
	spool_close(l.sp);
	l.sp = spool_open(t->dir, &o, NULL);
	assert_int_equal(spool_count(l.sp), 2 + (size_t)l.total - 100);
	spool_close(l.sp);
	l.sp = NULL;
	assert_int_equal(scan_count(t, &c), 2 + (size_t)l.total - 100);
	assert_true(has_id(&c, l.ids[keep[0]]));
	assert_true(has_id(&c, l.ids[keep[1]]));
	assert_false(has_id(&c, l.ids[1]));
	free(c.ids);
	buf_free(&got);
	buf_free(&want);
	load_free(&l);
}

/* A record larger than segment_max gets a segment of its own. */
static void
test_large_message(void **state)
{
	struct tdir *t = *state;
	struct spool_opts o = { .segment_max = 65536 };
	char id[QUEUE_ID_LEN + 1];
	struct spool *sp;
	struct buf want, got;

	sp = spool_open(t->dir, &o, NULL);
	submit_sync(sp, 0, 1000, NULL);
	submit_sync(sp, 1, 3 * 1024 * 1024 + 17, id);	/* > chunk size */
	submit_sync(sp, 2, 1000, NULL);
	spool_close(sp);
	assert_int_equal(count_segs(t, NULL), 3);
	buf_init(&want);
	buf_init(&got);
	make_content(&want, 1, 3 * 1024 * 1024 + 17);
	assert_int_equal(spool_read_content(t->dir, id, &got), 0);
	assert_int_equal(got.len, want.len);
	assert_memory_equal(got.data, want.data, got.len);
	buf_free(&want);
	buf_free(&got);
	sp = spool_open(t->dir, &o, NULL);
	assert_int_equal(spool_count(sp), 3);
	spool_close(sp);
}

/* ---- failures ---- */

static void
test_invalid_submit(void **state)
{
	struct tdir *t = *state;
	struct spool *sp = spool_open(t->dir, NULL, NULL);
	struct sync_res r = { 0, -1 };
	struct envelope e;

	make_env(&e, 0, 5);
	assert_null(spool_submit(sp, &e, "abcd", 4, sync_cb, &r));
	assert_int_equal(errno, EINVAL);
	strcpy(e.id, "not-an-id");
	assert_null(spool_submit(sp, &e, "abcde", 5, sync_cb, &r));
	assert_int_equal(errno, EINVAL);
	queue_id_new(e.id);
	assert_non_null(spool_submit(sp, &e, "abcde", 5, sync_cb, &r));
	assert_null(spool_submit(sp, &e, "abcde", 5, sync_cb, &r));
	assert_int_equal(errno, EEXIST);
	assert_int_equal(r.calls, 1);
	assert_int_equal(spool_count(sp), 1);
	envelope_free(&e);
	spool_close(sp);
}

/*
 * RLIMIT_FSIZE makes a write past the limit fail with EFBIG (SIGXFSZ
 * ignored), like ENOSPC: the append must be undone to the byte.
 */
static void
test_write_error_rollback(void **state)
{
	struct tdir *t = *state;
	char path[512];
	struct spool *sp = spool_open(t->dir, NULL, NULL);
	struct spool_stats st;
	struct sync_res r = { 0, -1 };
	struct rlimit old, lim;
	struct envelope e;
	struct buf c;
	off_t before;

	for (int i = 0; i < 3; i++)
		submit_sync(sp, i, 4096, NULL);
	seg_path(t, 1, path, sizeof(path));
	before = file_size(path);

	buf_init(&c);
	make_content(&c, 3, 4096);
	make_env(&e, 3, c.len);
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)before + 1000;	/* half a record fits */
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	errno = 0;
	assert_null(spool_submit(sp, &e, c.data, c.len, sync_cb, &r));
	assert_int_equal(errno, EFBIG);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	assert_int_equal(r.calls, 0);
	assert_int_equal(file_size(path), before);	/* rolled back */
	assert_int_equal(spool_count(sp), 3);
	spool_stats(sp, &st);
	assert_int_equal(st.write_errors, 1);

	/* the same message goes through once there is room */
	assert_non_null(spool_submit(sp, &e, c.data, c.len, sync_cb, &r));
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.err, 0);
	spool_close(sp);
	sp = spool_open(t->dir, NULL, NULL);
	assert_int_equal(spool_count(sp), 4);
	spool_close(sp);
	envelope_free(&e);
	buf_free(&c);
}

/*
 * fdatasync fails once in server mode: the commits of that segment get
 * the errno, the segment is sealed, later messages go to a new segment,
 * and after a restart the failed messages do not come back even though
 * their bytes are in the file (DEL records were appended for them).
 */
struct fail_load {
	struct event_base	*base;
	int			 pending;
	int			 ok, failed;
	char			 ids[33][QUEUE_ID_LEN + 1];
	int			 err[33];
};

struct fail_sub {
	struct fail_load	*fl;
	int			 i;
};

static void
fail_cb(void *arg, int err)
{
	struct fail_sub *s = arg;

	s->fl->err[s->i] = err;
	if (err == 0)
		s->fl->ok++;
	else
		s->fl->failed++;
	if (--s->fl->pending == 0)
		event_base_loopbreak(s->fl->base);
	free(s);
}

static void
test_fdatasync_failure(void **state)
{
	struct tdir *t = *state;
	struct fail_load fl;
	struct spool_stats st;
	struct spool *sp;
	struct collect c;
	struct buf content;
	struct event *to;
	struct timeval tv = { 30, 0 };
	uint64_t maxnum;

	memset(&fl, 0, sizeof(fl));
	fl.base = event_base_new();
	sp = spool_open(t->dir, NULL, fl.base);
	assert_non_null(sp);
	to = evtimer_new(fl.base, timeout_cb, NULL);
	evtimer_add(to, &tv);
	buf_init(&content);
	make_content(&content, 0, 2000);

	/* one good message first keeps segment 1 alive (and collected
	   only once it is deleted), so the failed bytes stay on disk */
	for (int i = 0; i < 33; i++) {
		struct fail_sub *s = malloc(sizeof(*s));
		struct envelope e;

		s->fl = &fl;
		s->i = i;
		make_env(&e, i, content.len);
		memcpy(fl.ids[i], e.id, sizeof(fl.ids[i]));
		assert_non_null(spool_submit(sp, &e, content.data,
		    content.len, fail_cb, s));
		fl.pending++;
		envelope_free(&e);
		if (i == 0) {
			event_base_dispatch(fl.base);
			assert_int_equal(fl.ok, 1);
			fl.ok = 0;
			fail_next_syncs(1, EIO);
		}
	}
	event_base_dispatch(fl.base);
	assert_int_equal(fl.pending, 0);
	assert_true(fl.failed >= 1);
	assert_int_equal(fl.ok + fl.failed, 32);
	for (int i = 1; i < 33; i++)
		assert_true(fl.err[i] == 0 || fl.err[i] == EIO);
	fl.ok++;	/* message 0 */
	spool_stats(sp, &st);
	assert_int_equal(st.commit_errors, (uint64_t)fl.failed);
	assert_int_equal(spool_count(sp), (size_t)fl.ok);
	spool_close(sp);
	evtimer_del(to);

	/* the failed segment was sealed: a newer one holds the DELs */
	assert_true(count_segs(t, &maxnum) >= 2);
	sp = spool_open(t->dir, NULL, NULL);
	assert_int_equal(spool_count(sp), (size_t)fl.ok);
	spool_close(sp);
	assert_int_equal(scan_count(t, &c), (size_t)fl.ok);
	for (int i = 0; i < 33; i++)
		assert_int_equal(has_id(&c, fl.ids[i]), fl.err[i] == 0);
	free(c.ids);

	/* offline delete whose fdatasync fails: -1, message stays */
	sp = spool_open(t->dir, NULL, NULL);
	for (int i = 0; i < 33; i++) {
		if (fl.err[i] != 0)
			continue;
		fail_next_syncs(1, EIO);
		assert_int_equal(spool_delete(sp, fl.ids[i]), -1);
		assert_int_equal(errno, EIO);
		assert_int_equal(spool_count(sp), (size_t)fl.ok);
		assert_int_equal(spool_delete(sp, fl.ids[i]), 0);
		assert_int_equal(spool_count(sp), (size_t)fl.ok - 1);
		break;
	}
	spool_close(sp);
	event_free(to);
	buf_free(&content);
	event_base_free(fl.base);
}

/* ---- lock ---- */

static void
test_lock(void **state)
{
	struct tdir *t = *state;
	struct spool *a, *b;

	a = spool_open(t->dir, NULL, NULL);
	assert_non_null(a);
	errno = 0;
	b = spool_open(t->dir, NULL, NULL);
	assert_null(b);
	assert_int_equal(errno, EWOULDBLOCK);
	spool_close(a);
	b = spool_open(t->dir, NULL, NULL);
	assert_non_null(b);
	spool_close(b);
}

/* ---- read-only scans while a server appends ---- */

struct scanner {
	const struct tdir	*t;
	struct load		*l;
	int			 scans;
	size_t			 last;
	bool			 shrank;
	bool			 failed;
	bool			 bad_content;
};

static void *
scanner_main(void *arg)
{
	struct scanner *s = arg;
	struct buf content, want;

	buf_init(&content);
	buf_init(&want);
	while (!atomic_load(&s->l->finished)) {
		struct collect c;

		memset(&c, 0, sizeof(c));
		if (spool_scan(s->t->dir, collect_cb, &c) != 0 || c.bad)
			s->failed = true;
		if (c.n < s->last)
			s->shrank = true;
		s->last = c.n;
		s->scans++;
		/* the newest message seen can be read whole */
		if (c.n > 0) {
			if (spool_read_content(s->t->dir, c.ids[c.n - 1],
			    &content) != 0)
				s->failed = true;
			else if (content.len != s->l->size)
				s->bad_content = true;
		}
		free(c.ids);
	}
	buf_free(&content);
	buf_free(&want);
	return NULL;
}

static void
test_scan_concurrent(void **state)
{
	struct tdir *t = *state;
	struct spool_opts o = { .segment_max = 256 * 1024 };
	struct scanner s;
	struct collect c;
	pthread_t th;
	struct load l;

	load_init(&l, t->dir, &o, 3000, 16, 3000, 0);
	memset(&s, 0, sizeof(s));
	s.t = t;
	s.l = &l;
	assert_int_equal(pthread_create(&th, NULL, scanner_main, &s), 0);
	load_run(&l);
	atomic_store(&l.finished, true);
	pthread_join(th, NULL);
	assert_int_equal(l.errors, 0);
	print_message("concurrent scan: %d scans during the load\n", s.scans);
	assert_true(s.scans > 0);
	assert_false(s.failed);
	assert_false(s.shrank);
	assert_false(s.bad_content);
	assert_int_equal(scan_count(t, &c), (size_t)l.total);
	free(c.ids);
	load_free(&l);
}

static void
test_scan_missing(void **state)
{
	struct tdir *t = *state;
	struct collect c;
	char path[512];

	/* an empty spool directory: nothing, no error */
	assert_int_equal(scan_count(t, &c), 0);
	snprintf(path, sizeof(path), "%s/nonexistent", t->dir);
	memset(&c, 0, sizeof(c));
	assert_int_equal(spool_scan(path, collect_cb, &c), -1);
	assert_int_equal(errno, ENOENT);
}

/* ---- delivery state ---- */

/* Offline submit of message seq with two recipients; e is kept. */
static void
submit_keep(struct spool *sp, int seq, size_t len, struct envelope *e)
{
	struct buf c;
	struct sync_res r = { 0, -1 };
	struct env_rcpt *rc;

	buf_init(&c);
	make_content(&c, seq, len);
	make_env(e, seq, c.len);
	rc = envelope_add_rcpt(e);
	snprintf(rc->addr, sizeof(rc->addr), "second%d@example.net", seq);
	assert_non_null(spool_submit(sp, e, c.data, c.len, sync_cb, &r));
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.err, 0);
	buf_free(&c);
}

/* Delivery state number k on e (replacing what it had). */
static void
make_state(struct envelope *e, int k)
{
	char s[128];

	e->hold = k % 2 == 1;
	e->attempts = (uint32_t)k;
	e->last_attempt = 1700000000 + k;
	e->next_attempt = 1700000300 + k;
	for (size_t i = 0; i < e->nrcpt; i++) {
		struct env_rcpt *r = &e->rcpt[i];

		free(r->remote);
		free(r->last_reply);
		r->state = i == 0 ? RCPT_DEFERRED : RCPT_DELIVERED;
		r->delay_warned = k % 3 == 0;
		snprintf(s, sizeof(s), "mx%d.example.net[192.0.2.%zu]:25", k, i);
		r->remote = strdup(s);
		snprintf(s, sizeof(s), "451 4.3.0 try later %d", k);
		r->last_reply = strdup(s);
	}
}

/* Number of segment files numbered up to last. */
static int
segs_upto(const struct tdir *t, uint64_t last)
{
	char path[512];
	int n = 0;

	for (uint64_t num = 1; num <= last; num++) {
		seg_path(t, num, path, sizeof(path));
		if (access(path, F_OK) == 0)
			n++;
	}
	return n;
}

/* Offline spool_update; the callback ran. */
static void
update_sync(struct spool *sp, const struct envelope *e)
{
	struct sync_res r = { 0, -1 };

	assert_non_null(spool_update(sp, e, sync_cb, &r));
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.err, 0);
}

/* spool_load of e->id gives e and, if content is wanted, seq's. */
static void
assert_loads(struct spool *sp, const struct envelope *want, int seq,
    size_t len)
{
	struct envelope got;
	struct buf c, wc;

	buf_init(&c);
	buf_init(&wc);
	assert_int_equal(spool_load(sp, want->id, &got, NULL), 0);
	assert_true(envelope_equal(&got, want));
	envelope_free(&got);
	assert_int_equal(spool_load(sp, want->id, &got, &c), 0);
	assert_true(envelope_equal(&got, want));
	make_content(&wc, seq, len);
	assert_int_equal(c.len, wc.len);
	assert_memory_equal(c.data, wc.data, c.len);
	envelope_free(&got);
	buf_free(&c);
	buf_free(&wc);
}

/* spool_read (read-only) of e->id gives e. */
static void
assert_reads(const struct tdir *t, const struct envelope *want)
{
	struct envelope got;
	struct buf c;

	buf_init(&c);
	assert_int_equal(spool_read(t->dir, want->id, &got, &c), 0);
	assert_true(envelope_equal(&got, want));
	assert_int_equal(c.len, want->content_size);
	envelope_free(&got);
	buf_free(&c);
}

/* spool_scan and spool_foreach keeping copies of the state seen. */
struct seen {
	size_t		 n;
	char		 ids[16][QUEUE_ID_LEN + 1];
	bool		 hold[16];
	uint32_t	 attempts[16];
	char		 reply[16][64];
	struct spool	*sp;		/* foreach: remove as we go */
	bool		 remove;
};

static int
seen_cb(void *arg, const struct envelope *e)
{
	struct seen *s = arg;

	assert_true(s->n < 16);
	memcpy(s->ids[s->n], e->id, QUEUE_ID_LEN + 1);
	s->hold[s->n] = e->hold;
	s->attempts[s->n] = e->attempts;
	snprintf(s->reply[s->n], sizeof(s->reply[0]), "%s",
	    e->nrcpt > 0 && e->rcpt[0].last_reply ? e->rcpt[0].last_reply :
	    "");
	s->n++;
	if (s->remove)
		assert_non_null(spool_remove(s->sp, e->id, NULL, NULL));
	return 0;
}

static void
test_state_update_load(void **state)
{
	struct tdir *t = *state;
	struct envelope e[3], other, got;
	struct spool_stats st;
	struct spool *sp;
	struct seen seen;
	struct buf c;

	sp = spool_open(t->dir, NULL, NULL);
	assert_non_null(sp);
	for (int i = 0; i < 3; i++)
		submit_keep(sp, i, 500, &e[i]);
	/* no STATE yet: what was submitted */
	assert_loads(sp, &e[1], 1, 500);
	spool_stats(sp, &st);
	assert_int_equal(st.records, 3);

	make_state(&e[1], 1);
	update_sync(sp, &e[1]);
	assert_loads(sp, &e[1], 1, 500);
	make_state(&e[1], 2);
	update_sync(sp, &e[1]);
	make_state(&e[1], 3);
	update_sync(sp, &e[1]);
	assert_loads(sp, &e[1], 1, 500);	/* the latest wins */
	make_state(&e[2], 4);
	update_sync(sp, &e[2]);
	assert_loads(sp, &e[0], 0, 500);	/* untouched */
	spool_stats(sp, &st);
	assert_int_equal(st.records, 7);
	assert_int_equal(st.commits, 7);

	/* refused */
	make_env(&other, 9, 10);
	errno = 0;
	assert_null(spool_update(sp, &other, NULL, NULL));
	assert_int_equal(errno, ENOENT);
	assert_int_equal(spool_load(sp, other.id, &got, NULL), -1);
	assert_int_equal(errno, ENOENT);
	assert_null(got.rcpt);
	assert_int_equal(spool_load(sp, "../../etc/passwd", &got, NULL), -1);
	assert_int_equal(errno, ENOENT);
	assert_null(spool_remove(sp, other.id, NULL, NULL));
	assert_int_equal(errno, ENOENT);
	memcpy(other.id, e[0].id, sizeof(other.id));	/* 1 recipient */
	assert_null(spool_update(sp, &other, NULL, NULL));
	assert_int_equal(errno, EINVAL);
	envelope_free(&other);
	spool_stats(sp, &st);
	assert_int_equal(st.records, 7);
	spool_close(sp);

	/* read-only side: scan and spool_read apply it too */
	assert_reads(t, &e[1]);
	assert_reads(t, &e[2]);
	assert_reads(t, &e[0]);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(spool_scan(t->dir, seen_cb, &seen), 0);
	assert_int_equal(seen.n, 3);
	assert_string_equal(seen.ids[1], e[1].id);
	assert_true(seen.hold[1]);
	assert_int_equal(seen.attempts[1], 3);
	assert_string_equal(seen.reply[1], "451 4.3.0 try later 3");
	assert_false(seen.hold[0]);
	assert_string_equal(seen.reply[0], "");
	buf_init(&c);
	assert_int_equal(spool_read(t->dir, "0123456789abcdef0123", &got,
	    &c), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(spool_read(t->dir, "../x", &got, &c), -1);
	assert_int_equal(errno, ENOENT);
	buf_free(&c);

	/* recovery: it survives a reopen */
	sp = spool_open(t->dir, NULL, NULL);
	assert_non_null(sp);
	assert_int_equal(spool_count(sp), 3);
	for (int i = 0; i < 3; i++)
		assert_loads(sp, &e[i], i, 500);
	/* foreach: acceptance order, state applied, fn may remove */
	memset(&seen, 0, sizeof(seen));
	seen.sp = sp;
	seen.remove = true;
	assert_int_equal(spool_foreach(sp, seen_cb, &seen), 0);
	assert_int_equal(seen.n, 3);
	for (int i = 0; i < 3; i++)
		assert_string_equal(seen.ids[i], e[i].id);
	assert_int_equal(seen.attempts[2], 4);
	assert_int_equal(spool_count(sp), 0);
	spool_close(sp);
	sp = spool_open(t->dir, NULL, NULL);
	assert_int_equal(spool_count(sp), 0);
	spool_close(sp);
	for (int i = 0; i < 3; i++)
		envelope_free(&e[i]);
}

/* Server mode: updates and removes are group-committed, callbacks run
 * on the loop, never inside the call. */
struct async {
	struct event_base	*base;
	int			 pending;
	int			 calls, errors;
};

static void
async_cb(void *arg, int err)
{
	struct async *a = arg;

	a->calls++;
	if (err != 0)
		a->errors++;
	if (--a->pending == 0)
		event_base_loopbreak(a->base);
}

static void
async_run(struct async *a)
{
	struct event *to = evtimer_new(a->base, timeout_cb, NULL);
	struct timeval tv = { 30, 0 };

	evtimer_add(to, &tv);
	if (a->pending > 0)
		event_base_dispatch(a->base);
	event_free(to);
	assert_int_equal(a->pending, 0);
}

static void
test_state_server(void **state)
{
	struct tdir *t = *state;
	struct envelope e[20], got;
	struct spool_stats st;
	struct async a;
	struct spool *sp;
	struct seen seen;

	memset(&a, 0, sizeof(a));
	a.base = event_base_new();
	sp = spool_open(t->dir, NULL, NULL);
	for (int i = 0; i < 20; i++)
		submit_keep(sp, i, 300, &e[i]);
	spool_close(sp);
	sp = spool_open(t->dir, NULL, a.base);
	assert_non_null(sp);
	for (int round = 1; round <= 5; round++) {
		for (int i = 0; i < 20; i++) {
			make_state(&e[i], round * 100 + i);
			assert_non_null(spool_update(sp, &e[i], async_cb,
			    &a));
			a.pending++;
		}
		assert_int_equal(a.calls, (round - 1) * 20);
		/* visible at once, before it is durable */
		assert_int_equal(spool_load(sp, e[7].id, &got, NULL), 0);
		assert_true(envelope_equal(&got, &e[7]));
		envelope_free(&got);
		async_run(&a);
	}
	assert_int_equal(a.errors, 0);
	/* remove: gone from the index at once, cb may be NULL */
	for (int i = 0; i < 10; i++) {
		assert_non_null(spool_remove(sp, e[i].id, i % 2 ? NULL :
		    async_cb, &a));
		if (i % 2 == 0)
			a.pending++;
		assert_int_equal(spool_count(sp), (size_t)(19 - i));
		assert_int_equal(spool_load(sp, e[i].id, &got, NULL), -1);
		assert_int_equal(errno, ENOENT);
	}
	assert_null(spool_remove(sp, e[0].id, NULL, NULL));
	assert_int_equal(errno, ENOENT);
	assert_null(spool_update(sp, &e[0], NULL, NULL));
	assert_int_equal(errno, ENOENT);
	assert_int_equal(a.calls, 100);
	async_run(&a);
	assert_int_equal(a.calls, 105);
	assert_int_equal(a.errors, 0);
	/* the removes without a callback complete on the commit thread
	 * with nobody waiting: give their accounting a moment */
	for (int w = 0; w < 500; w++) {
		spool_stats(sp, &st);
		if (st.commits >= 110)
			break;
		usleep(10000);
	}
	assert_int_equal(st.records, 100 + 10);	/* since this open */
	assert_int_equal(st.commits, 110);
	print_message("state: 110 updates and removes, %llu fdatasync\n",
	    (unsigned long long)st.fsyncs);
	assert_true(st.fsyncs < 110);
	spool_close(sp);

	sp = spool_open(t->dir, NULL, NULL);
	assert_int_equal(spool_count(sp), 10);
	for (int i = 10; i < 20; i++)
		assert_loads(sp, &e[i], i, 300);
	spool_close(sp);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(spool_scan(t->dir, seen_cb, &seen), 0);
	assert_int_equal(seen.n, 10);
	for (int i = 0; i < 10; i++) {
		assert_string_equal(seen.ids[i], e[10 + i].id);
		assert_int_equal(seen.attempts[i], 500 + 10 + i);
	}
	for (int i = 0; i < 20; i++)
		envelope_free(&e[i]);
	event_base_free(a.base);
}

/* A STATE cut at any offset is ignored: the previous state stands. */
static void
test_state_torn_tail(void **state)
{
	struct tdir *t = *state;
	struct envelope e, prev;
	struct spool *sp;
	char path[512];
	off_t before, size;
	char *image;
	int fd;

	sp = spool_open(t->dir, NULL, NULL);
	submit_keep(sp, 0, 200, &e);
	make_state(&e, 1);
	update_sync(sp, &e);
	spool_close(sp);
	envelope_init(&prev);
	assert_int_equal(spool_read(t->dir, e.id, &prev, NULL), 0);
	assert_true(envelope_equal(&prev, &e));
	seg_path(t, 1, path, sizeof(path));
	before = file_size(path);
	/* the next open appends to a new segment: put the update in 1 */
	sp = spool_open(t->dir, NULL, NULL);
	spool_close(sp);
	make_state(&e, 2);
	{
		struct buf b;

		buf_init(&b);
		envelope_state_encode(&e, &b);
		append_raw(path, 3, 0, b.data, (uint32_t)b.len);
		buf_free(&b);
	}
	size = file_size(path);
	{
		struct envelope got;

		assert_int_equal(spool_read(t->dir, e.id, &got, NULL), 0);
		assert_true(envelope_equal(&got, &e));	/* whole: applies */
		envelope_free(&got);
	}
	image = malloc((size_t)size);
	fd = open(path, O_RDONLY);
	assert_int_equal(read(fd, image, (size_t)size), size);
	close(fd);

	log_set_level(LOG_LVL_ERR);
	for (off_t cut = before; cut < size; cut++) {
		struct envelope got;

		nftw(t->seg, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
		assert_int_equal(mkdir(t->seg, 0700), 0);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_int_equal(write(fd, image, (size_t)cut), cut);
		close(fd);
		assert_int_equal(spool_read(t->dir, e.id, &got, NULL), 0);
		assert_true(envelope_equal(&got, &prev));
		envelope_free(&got);
		sp = spool_open(t->dir, NULL, NULL);
		assert_non_null(sp);
		assert_int_equal(spool_load(sp, e.id, &got, NULL), 0);
		assert_true(envelope_equal(&got, &prev));
		envelope_free(&got);
		spool_close(sp);
	}
	log_set_level(LOG_LVL_WARN);
	free(image);
	envelope_free(&e);
	envelope_free(&prev);
}

/*
 * STATE records that do not apply: for a deleted message, for an id
 * never seen, with the wrong number of recipients, malformed.  All are
 * ignored; the message keeps its latest good state.
 */
static void
test_state_ignored(void **state)
{
	struct tdir *t = *state;
	struct envelope e, gone, stranger, got;
	struct spool *sp;
	struct buf b;
	char path[512];

	sp = spool_open(t->dir, NULL, NULL);
	submit_keep(sp, 0, 100, &e);
	submit_keep(sp, 1, 100, &gone);
	make_state(&e, 1);
	update_sync(sp, &e);
	assert_int_equal(spool_delete(sp, gone.id), 0);
	spool_close(sp);
	seg_path(t, 1, path, sizeof(path));
	buf_init(&b);
	make_state(&gone, 2);
	envelope_state_encode(&gone, &b);
	append_raw(path, 3, 0, b.data, (uint32_t)b.len);
	make_env(&stranger, 3, 10);
	buf_reset(&b);
	envelope_state_encode(&stranger, &b);
	append_raw(path, 3, 0, b.data, (uint32_t)b.len);
	/* e's id with one recipient where it has two */
	memcpy(stranger.id, e.id, sizeof(e.id));
	make_state(&stranger, 4);
	buf_reset(&b);
	envelope_state_encode(&stranger, &b);
	log_set_level(LOG_LVL_ERR);
	append_raw(path, 3, 0, b.data, (uint32_t)b.len);
	append_raw(path, 3, 0, "id x\n", 5);
	append_raw(path, 3, 0, "", 0);

	assert_int_equal(spool_read(t->dir, gone.id, &got, NULL), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(spool_read(t->dir, e.id, &got, NULL), 0);
	assert_true(envelope_equal(&got, &e));
	envelope_free(&got);
	sp = spool_open(t->dir, NULL, NULL);
	log_set_level(LOG_LVL_WARN);
	assert_non_null(sp);
	assert_int_equal(spool_count(sp), 1);
	assert_int_equal(spool_load(sp, e.id, &got, NULL), 0);
	assert_true(envelope_equal(&got, &e));
	envelope_free(&got);
	/* and the records after them were read: a new update still wins */
	make_state(&e, 5);
	update_sync(sp, &e);
	spool_close(sp);
	assert_reads(t, &e);
	buf_free(&b);
	envelope_free(&e);
	envelope_free(&gone);
	envelope_free(&stranger);
}

/*
 * Superseded STATE records are dead: a segment holding only those (and
 * dead messages) is collected.  The latest STATE keeps its segment even
 * when the message's MSG record lives in a newer one (as after a
 * compaction whose STATE copy did not make it): segment 1 holds MSG X,
 * 2 its latest STATE, 3 a copy of MSG X.  Segment 1 goes, 2 stays.
 */
static void
test_state_gc(void **state)
{
	struct tdir *t = *state;
	struct spool_opts o = { .segment_max = 4096 };
	struct envelope a, b, x, got;
	struct spool_stats st;
	struct spool *sp;
	struct buf enc, content;
	char path[512];
	int fd;

	sp = spool_open(t->dir, &o, NULL);
	submit_keep(sp, 0, 1500, &a);
	for (int k = 1; k <= 40; k++) {	/* about 200 bytes each */
		make_state(&a, k);
		update_sync(sp, &a);
	}
	assert_true(count_segs(t, NULL) >= 3);
	submit_keep(sp, 1, 1500, &b);
	spool_stats(sp, &st);
	assert_int_equal(st.segments_removed, 0);
	assert_loads(sp, &a, 0, 1500);
	assert_int_equal(spool_delete(sp, a.id), 0);
	/* everything before b's segment was a's, all dead now */
	spool_stats(sp, &st);
	assert_true(st.segments_removed >= 2);
	assert_int_equal(count_segs(t, NULL), 1);
	assert_loads(sp, &b, 1, 1500);
	assert_int_equal(spool_delete(sp, b.id), 0);
	spool_close(sp);
	nftw(t->seg, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	assert_int_equal(mkdir(t->seg, 0700), 0);

	/* hand-made: 1 = MSG x, 2 = STATE x, 3 = MSG x again */
	buf_init(&enc);
	buf_init(&content);
	make_content(&content, 5, 300);
	make_env(&x, 5, content.len);
	envelope_encode(&x, &enc);
	buf_add(&enc, content.data, content.len);
	for (int n = 1; n <= 3; n++) {
		seg_path(t, (uint64_t)n, path, sizeof(path));
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
		assert_true(fd >= 0);
		close(fd);
	}
	seg_path(t, 1, path, sizeof(path));
	append_raw(path, 1, 0, enc.data, (uint32_t)enc.len);
	seg_path(t, 3, path, sizeof(path));
	append_raw(path, 1, 0, enc.data, (uint32_t)enc.len);
	make_state(&x, 6);
	buf_reset(&enc);
	envelope_state_encode(&x, &enc);
	seg_path(t, 2, path, sizeof(path));
	append_raw(path, 3, 0, enc.data, (uint32_t)enc.len);

	sp = spool_open(t->dir, &o, NULL);
	assert_non_null(sp);
	spool_stats(sp, &st);
	assert_int_equal(st.segments_removed, 1);
	seg_path(t, 1, path, sizeof(path));
	assert_int_equal(access(path, F_OK), -1);
	seg_path(t, 2, path, sizeof(path));
	assert_int_equal(access(path, F_OK), 0);
	assert_int_equal(spool_load(sp, x.id, &got, &content), 0);
	assert_true(envelope_equal(&got, &x));
	envelope_free(&got);
	/* a newer STATE frees segment 2 */
	make_state(&x, 7);
	update_sync(sp, &x);
	spool_close(sp);
	sp = spool_open(t->dir, &o, NULL);
	seg_path(t, 2, path, sizeof(path));
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(spool_load(sp, x.id, &got, NULL), 0);
	assert_true(envelope_equal(&got, &x));
	envelope_free(&got);
	spool_close(sp);
	buf_free(&enc);
	buf_free(&content);
	envelope_free(&a);
	envelope_free(&b);
	envelope_free(&x);
}

/*
 * Compaction moves a long-lived message's MSG and latest STATE; the state
 * is the same after the move, after a reopen and in a scan, and the old
 * segments go.  One message has a STATE updated while copies are under
 * way.
 */
static void
test_state_compaction(void **state)
{
	struct tdir *t = *state;
	struct spool_opts o = { .segment_max = 16384 };
	struct envelope keep[3], got;
	struct spool_stats st;
	struct async a;
	struct load l;
	struct seen seen;
	struct spool *sp;
	char path[512], fill[30][QUEUE_ID_LEN + 1];
	uint64_t last;

	/* three messages a segment apart, two with state, then traffic */
	sp = spool_open(t->dir, &o, NULL);
	for (int k = 0; k < 3; k++) {
		submit_keep(sp, 1000 + k, 1500, &keep[k]);
		if (k < 2) {
			make_state(&keep[k], 10 + k);
			update_sync(sp, &keep[k]);
		}
		for (int i = 0; i < 10; i++)
			submit_sync(sp, 2000 + i, 1500, fill[k * 10 + i]);
	}
	spool_close(sp);
	load_init(&l, t->dir, &o, 100, 8, 1500, 400);
	memset(&a, 0, sizeof(a));
	a.base = l.base;
	load_run(&l);
	assert_int_equal(l.errors, 0);
	/* a newer state for keep[1], in a later segment than its MSG */
	make_state(&keep[1], 20);
	assert_non_null(spool_update(l.sp, &keep[1], async_cb, &a));
	a.pending++;
	async_run(&a);
	assert_true(count_segs(t, &last) >= 10);
	for (int i = 0; i < 100; i++)
		assert_non_null(spool_remove(l.sp, l.ids[i], NULL, NULL));
	for (int i = 0; i < 30; i++)
		assert_non_null(spool_remove(l.sp, fill[i], NULL, NULL));
	for (int round = 0; round < 20; round++) {
		l.total += 10;
		load_run(&l);
		spool_stats(l.sp, &st);
		if (round == 1) {
			/* an update while copies may be in flight */
			make_state(&keep[0], 30);
			assert_non_null(spool_update(l.sp, &keep[0],
			    async_cb, &a));
			a.pending++;
			async_run(&a);
		}
		if (st.relocated >= 3 && segs_upto(t, last - 1) == 0)
			break;
	}
	spool_stats(l.sp, &st);
	print_message("state compaction: %llu moved, %llu segments removed, "
	    "%d left\n", (unsigned long long)st.relocated,
	    (unsigned long long)st.segments_removed, count_segs(t, NULL));
	assert_true(st.relocated >= 3);
	/* every segment sealed before the deletes went (the active one
	   and the rest hold the traffic that drove the loop, still
	   queued) */
	assert_int_equal(segs_upto(t, last - 1), 0);
	seg_path(t, 1, path, sizeof(path));
	assert_int_equal(access(path, F_OK), -1);
	for (int k = 0; k < 3; k++)
		assert_loads(l.sp, &keep[k], 1000 + k, 1500);
	spool_close(l.sp);
	l.sp = NULL;
	for (int k = 0; k < 3; k++)
		assert_reads(t, &keep[k]);
	memset(&seen, 0, sizeof(seen));
	sp = spool_open(t->dir, &o, NULL);
	for (int k = 0; k < 3; k++) {
		assert_int_equal(spool_load(sp, keep[k].id, &got, NULL), 0);
		assert_true(envelope_equal(&got, &keep[k]));
		envelope_free(&got);
	}
	spool_close(sp);
	for (int k = 0; k < 3; k++)
		envelope_free(&keep[k]);
	load_free(&l);
}

/*
 * fdatasync fails under a STATE and under a DEL of spool_remove: the
 * callbacks get the errno; the message with the failed STATE stays; the
 * removed one does not come back after a restart.
 */
static void
test_state_sync_failure(void **state)
{
	struct tdir *t = *state;
	struct envelope e, r, got;
	struct async a;
	struct spool *sp;

	memset(&a, 0, sizeof(a));
	a.base = event_base_new();
	sp = spool_open(t->dir, NULL, NULL);
	submit_keep(sp, 0, 100, &e);
	submit_keep(sp, 1, 100, &r);
	make_state(&e, 1);
	update_sync(sp, &e);
	spool_close(sp);

	sp = spool_open(t->dir, NULL, a.base);
	make_state(&e, 2);
	fail_next_syncs(1, EIO);
	assert_non_null(spool_update(sp, &e, async_cb, &a));
	a.pending++;
	async_run(&a);
	assert_int_equal(a.errors, 1);
	assert_int_equal(spool_count(sp), 2);
	/* written again, into a healthy segment */
	assert_non_null(spool_update(sp, &e, async_cb, &a));
	a.pending++;
	async_run(&a);
	assert_int_equal(a.errors, 1);

	fail_next_syncs(1, EIO);
	assert_non_null(spool_remove(sp, r.id, async_cb, &a));
	a.pending++;
	async_run(&a);
	assert_int_equal(a.errors, 2);
	assert_int_equal(spool_count(sp), 1);
	spool_close(sp);

	sp = spool_open(t->dir, NULL, NULL);
	assert_int_equal(spool_count(sp), 1);
	assert_int_equal(spool_load(sp, e.id, &got, NULL), 0);
	assert_true(envelope_equal(&got, &e));
	envelope_free(&got);
	assert_int_equal(spool_load(sp, r.id, &got, NULL), -1);
	spool_close(sp);
	envelope_free(&e);
	envelope_free(&r);
	event_base_free(a.base);
}

/* Offline spool_remove: the callback has run when it returns. */
static void
test_remove_offline(void **state)
{
	struct tdir *t = *state;
	char ids[3][QUEUE_ID_LEN + 1];
	struct sync_res r = { 0, -1 };
	struct spool_stats st;
	struct spool *sp;
	struct collect c;

	sp = spool_open(t->dir, NULL, NULL);
	for (int i = 0; i < 3; i++)
		submit_sync(sp, i, 100, ids[i]);
	assert_non_null(spool_remove(sp, ids[1], sync_cb, &r));
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.err, 0);
	assert_non_null(spool_remove(sp, ids[2], NULL, NULL));
	assert_int_equal(spool_count(sp), 1);
	spool_stats(sp, &st);
	assert_int_equal(st.records, 5);
	spool_close(sp);
	assert_int_equal(scan_count(t, &c), 1);
	assert_string_equal(c.ids[0], ids[0]);
	free(c.ids);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)
		T(test_group_commit),
		T(test_cancel),
		T(test_close_flushes),
		T(test_torn_tail),
		T(test_garbage_tail),
		T(test_unknown_type),
		T(test_delete),
		T(test_rotation_gc),
		T(test_compaction),
		T(test_large_message),
		T(test_invalid_submit),
		T(test_write_error_rollback),
		T(test_fdatasync_failure),
		T(test_lock),
		T(test_scan_concurrent),
		T(test_scan_missing),
		T(test_state_update_load),
		T(test_state_server),
		T(test_state_torn_tail),
		T(test_state_ignored),
		T(test_state_gc),
		T(test_state_compaction),
		T(test_state_sync_failure),
		T(test_remove_offline),
#undef T
	};

	log_init(LOG_FMT_TEXT, LOG_LVL_WARN);
	if (evthread_use_pthreads() != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}

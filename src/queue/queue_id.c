/*
 * queue_id.c - generation and validation of queue IDs.
 *
 * What it does: builds the 20 hex digit IDs described in queue_id.h.  The
 * first 12 digits are the wall clock in microseconds (so IDs sort by
 * creation time and a human can date them), the last 8 are a per-process
 * random value plus an atomic counter, so that two processes, two threads
 * in the same microsecond or a clock that steps backwards cannot produce
 * the same ID.  The random value is drawn again in a forked child.
 *
 * What it must never do: return an ID that is not valid by
 * queue_id_valid(), take a lock on the hot path, or accept anything but
 * exactly 20 lowercase hex digits as valid (IDs become file names, log
 * fields and control-socket arguments).
 */
#include "queue/queue_id.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "common/util.h"

#define QUEUE_ID_TIME_DIGITS	12
#define QUEUE_ID_TIME_MASK	((UINT64_C(1) << 48) - 1)

static pthread_once_t	 queue_id_once = PTHREAD_ONCE_INIT;
static _Atomic uint32_t	 queue_id_base;
static _Atomic uint32_t	 queue_id_counter;

static void queue_id_seed(void);
static void queue_id_init(void);

static void
queue_id_seed(void)
{
	uint32_t r;

	randombytes_buf(&r, sizeof(r));
	atomic_store(&queue_id_base, r);
	atomic_store(&queue_id_counter, 0);
}

static void
queue_id_init(void)
{
	queue_id_seed();
	/* A forked child must not replay its parent's sequence. */
	(void)pthread_atfork(NULL, NULL, queue_id_seed);
}

void
queue_id_new(char out[QUEUE_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint64_t t;
	uint32_t n;
	int i;

	pthread_once(&queue_id_once, queue_id_init);
	t = (uint64_t)now_usec_wall() & QUEUE_ID_TIME_MASK;
	n = atomic_load_explicit(&queue_id_base, memory_order_relaxed) +
	    atomic_fetch_add_explicit(&queue_id_counter, 1,
	    memory_order_relaxed);
	for (i = QUEUE_ID_TIME_DIGITS - 1; i >= 0; i--) {
		out[i] = hex[t & 0xf];
		t >>= 4;
	}
	for (i = QUEUE_ID_LEN - 1; i >= QUEUE_ID_TIME_DIGITS; i--) {
		out[i] = hex[n & 0xf];
		n >>= 4;
	}
	out[QUEUE_ID_LEN] = '\0';
}

bool
queue_id_valid(const char *s)
{
	size_t i;

	if (s == NULL)
		return false;
	for (i = 0; i < QUEUE_ID_LEN; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;	/* also stops at a short string's NUL */
	}
	return s[QUEUE_ID_LEN] == '\0';
}

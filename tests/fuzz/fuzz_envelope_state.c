/*
 * fuzz_envelope_state.c - libFuzzer target for envelope_state_decode.
 *
 * The STATE payload is applied onto an envelope decoded before, so the
 * target makes one up that fits the input: the id of its first line (when
 * it is one) and as many recipients as the input has "\nrcpt " lines,
 * each with some delivery state already set.  Then:
 *   - envelope_state_check and envelope_state_decode agree;
 *   - a refused input leaves the envelope exactly as it was;
 *   - an accepted one encodes back to exactly the input (the codec is
 *     canonical) and that encoding decodes to an equal envelope.
 * Anything else abort()s.  Must never: read the input past size (it is
 * copied to an exact-size heap block so ASan sees an overrun).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/envelope.h"

#define FUZZ_RCPT_MAX	4096	/* more: only envelope_state_check */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An envelope with n recipients whose state the input has to replace. */
static void
fuzz_base(struct envelope *e, const char *id, size_t n)
{
	envelope_init(e);
	memcpy(e->id, id, QUEUE_ID_LEN + 1);
	e->hold = true;
	e->attempts = 7;
	e->last_attempt = 1;
	e->next_attempt = -1;
	for (size_t i = 0; i < n; i++) {
		struct env_rcpt *r = envelope_add_rcpt(e);
		r->addr[0] = 'a';
		r->state = RCPT_BOUNCED;
		r->delay_warned = true;
		r->last_reply = xstrdup("550 5.1.1 before");
		if (i % 2)
			r->remote = xstrdup("mx.example[192.0.2.1]:25");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char id[QUEUE_ID_LEN + 1] = "0123456789abcdef0123", cid[QUEUE_ID_LEN + 1];
	struct envelope e1, e2;
	struct buf enc;
	size_t n = 0, cn = 0;
	const char *p;
	char *copy = calloc(1, size ? size : 1);
	int checked;

	if (copy == NULL)
		return 0;
	if (size)
		memcpy(copy, data, size);
	if (size >= 3 + QUEUE_ID_LEN && memcmp(copy, "id ", 3) == 0) {
		memcpy(cid, copy + 3, QUEUE_ID_LEN);
		cid[QUEUE_ID_LEN] = '\0';
		if (queue_id_valid(cid))
			memcpy(id, cid, sizeof(id));
	}
	for (p = copy; size > 0 && (p = memmem(p, size - (size_t)(p - copy),
	    "\nrcpt ", 6)) != NULL; p++)
		n++;
	checked = envelope_state_check(copy, size, cid, &cn);
	if (checked == 0 && (!queue_id_valid(cid) || cn > ENV_MAX_RCPT))
		abort();
	if (n > FUZZ_RCPT_MAX) {
		free(copy);
		return 0;
	}
	fuzz_base(&e1, id, n);
	fuzz_base(&e2, id, n);
	if (envelope_state_decode(copy, size, &e1) != 0) {
		if (checked == 0 && strcmp(cid, id) == 0 && cn == n)
			abort();	/* check and decode disagree */
		if (!envelope_equal(&e1, &e2))
			abort();	/* refused but changed */
		goto done;
	}
	if (checked != 0 || strcmp(cid, id) != 0 || cn != n)
		abort();
	buf_init(&enc);
	envelope_state_encode(&e1, &enc);
	if (enc.len != size || memcmp(enc.data, copy, size) != 0)
		abort();	/* accepted a non-canonical encoding */
	if (envelope_state_decode(enc.data, enc.len, &e2) != 0 ||
	    !envelope_equal(&e1, &e2))
		abort();
	buf_free(&enc);
done:
	envelope_free(&e1);
	envelope_free(&e2);
	free(copy);
	return 0;
}

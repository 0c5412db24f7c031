/*
 * fuzz_bulk.c - libFuzzer target for the header checks of bulk.c: the
 * whole check on arbitrary bytes as a message (both bulk_unsubscribe
 * modes), and the Date, Message-ID and List-Unsubscribe parsers on the
 * same bytes as a field value.
 *
 * Must never read past size (an exact-size heap copy lets ASan see it).
 * What comes out must be consistent: a rejection has a 550 reply and
 * nothing else; an acceptance has no reply, removes whole fields in
 * order, and the rebuilt message is the input less exactly those bytes
 * (plus the separator when due).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/bulk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_bulk_one(const char *m, size_t size, bool warn)
{
	struct bulk_check bc;
	struct buf out;
	size_t removed = 0, at = 0;

	if (bulk_check(m, size, warn, &bc) != 0) {
		if (strncmp(bc.reply, "550 5.", 6) != 0)
			abort();
		return;
	}
	if (bc.reply[0] != '\0' || (bc.warning[0] != '\0' && !warn) ||
	    bc.nremove > BULK_REMOVE_MAX)
		abort();
	for (size_t r = 0; r < bc.nremove; r++) {
		if (bc.remove[r].off < at || bc.remove[r].len == 0 ||
		    bc.remove[r].off + bc.remove[r].len > size)
			abort();
		at = bc.remove[r].off + bc.remove[r].len;
		removed += bc.remove[r].len;
	}
	buf_init(&out);
	bulk_copy_message(&bc, m, size, &out);
	if (out.len < size - removed || out.len > size - removed + 4 ||
	    (!bc.add_separator && out.len != size - removed))
		abort();
	buf_reset(&out);
	bulk_added_fields(&bc, "0123456789abcdef0123", "fuzz.test", 0, &out);
	if ((out.len == 0) != !(bc.add_date || bc.add_msgid ||
	    bc.add_unsub_post))
		abort();
	buf_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size ? size : 1);
	int u;

	if (copy == NULL)
		return 0;
	if (size)
		memcpy(copy, data, size);
	fuzz_bulk_one(copy, size, false);
	fuzz_bulk_one(copy, size, true);
	(void)bulk_date_ok(copy, size);
	(void)bulk_msgid_ok(copy, size);
	u = bulk_unsub_uris(copy, size);
	if (u == 0 || u > (BULK_URI_HTTPS | BULK_URI_MAILTO | BULK_URI_OTHER))
		abort();
	free(copy);
	return 0;
}

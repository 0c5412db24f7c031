/*
 * test_envelope.c - the envelope codec: exact round trips (including
 * hostile bytes in every text field and limits), the exact text of a
 * known envelope, and a table of malformed inputs that must be refused
 * without reading past their end.  The same for the delivery state codec
 * (STATE payloads), which must also leave the envelope untouched when it
 * refuses one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/envelope.h"

#define ID	"0123456789abcdef0123"

/* A header for hand-written inputs, with all fields in order. */
#define HDR(size)							\
	"id " ID "\n"							\
	"created 1700000000\n"						\
	"helo mx.example.com\n"						\
	"peer 192.0.2.7\n"						\
	"user \n"							\
	"tenant \n"							\
	"from a@example.com\n"						\
	"body 7bit\n"							\
	"smtputf8 0\n"							\
	"ret unset\n"							\
	"envid \n"							\
	"size " size "\n"

/* The fields before body, with empty values. */
#define PRE	"id " ID "\ncreated 0\nhelo \npeer \nuser \ntenant \nfrom \n"

static void
fill(struct envelope *e)
{
	struct env_rcpt *r;

	envelope_init(e);
	strcpy(e->id, ID);
	e->created = 1700000000;
	strcpy(e->helo, "mx.example.com");
	strcpy(e->peer, "192.0.2.7");
	strcpy(e->user, "alice");
	strcpy(e->mail_from, "alice@example.com");
	e->body = SMTP_BODY_8BITMIME;
	e->ret = SMTP_RET_HDRS;
	strcpy(e->envid, "QQ314159");
	e->content_size = 4096;
	r = envelope_add_rcpt(e);
	strcpy(r->addr, "bob@example.org");
	r->notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE;
	strcpy(r->orcpt, "rfc822;bob@example.org");
	r = envelope_add_rcpt(e);
	strcpy(r->addr, "carol@example.net");
	r->state = RCPT_DELIVERED;
}

/* encode, decode from an exact-size heap copy, compare. */
static void
round_trip(const struct envelope *e)
{
	struct envelope d;
	struct buf b;
	size_t used = 0;
	char *copy;

	buf_init(&b);
	envelope_encode(e, &b);
	copy = malloc(b.len);
	assert_non_null(copy);
	memcpy(copy, b.data, b.len);
	if (envelope_decode(copy, b.len, &d, &used) != 0)
		fail_msg("decode failed:\n%s", b.data);
	assert_int_equal(used, b.len);
	assert_true(envelope_equal(e, &d));
	/* content after the envelope is not consumed */
	envelope_free(&d);
	buf_add(&b, "content\r\n", 9);
	assert_int_equal(envelope_decode(b.data, b.len, &d, &used), 0);
	assert_int_equal(used, b.len - 9);
	envelope_free(&d);
	free(copy);
	buf_free(&b);
}

static void
test_encode_text(void **state)
{
	struct envelope e;
	struct buf b;

	(void)state;
	fill(&e);
	buf_init(&b);
	envelope_encode(&e, &b);
	assert_string_equal(b.data,
	    "id " ID "\n"
	    "created 1700000000\n"
	    "helo mx.example.com\n"
	    "peer 192.0.2.7\n"
	    "user alice\n"
	    "tenant \n"
	    "from alice@example.com\n"
	    "body 8bitmime\n"
	    "smtputf8 0\n"
	    "ret hdrs\n"
	    "envid QQ314159\n"
	    "size 4096\n"
	    "rcpt addr=bob@example.org notify=6 orcpt=rfc822;bob@example.org"
	    " state=pending\n"
	    "rcpt addr=carol@example.net notify=0 orcpt= state=delivered\n"
	    "\n");
	buf_free(&b);
	envelope_free(&e);
}

static void
test_round_trip_simple(void **state)
{
	struct envelope e;

	(void)state;
	fill(&e);
	round_trip(&e);
	envelope_free(&e);
	/* no recipients, empty strings, null reverse-path */
	envelope_init(&e);
	strcpy(e.id, ID);
	round_trip(&e);
	envelope_free(&e);
}

/* Every byte value 1..255 in every text field, at full length. */
static void
test_round_trip_hostile(void **state)
{
	struct envelope e;
	struct env_rcpt *r;
	char all[256];
	struct buf b;

	(void)state;
	for (int i = 1; i < 256; i++)
		all[i - 1] = (char)i;
	all[255] = '\0';
	fill(&e);
	memcpy(e.helo, all, sizeof(e.helo) - 1);	/* 255 bytes */
	e.helo[sizeof(e.helo) - 1] = '\0';
	memset(e.peer, ' ', sizeof(e.peer) - 1);
	memset(e.user, '%', sizeof(e.user) - 1);
	memset(e.tenant, '\n', sizeof(e.tenant) - 1);
	memcpy(e.mail_from, all, 255);
	strcpy(e.envid, "a b\tc%d=e\r\n");
	e.created = INT64_MIN;
	e.content_size = UINT64_MAX;
	e.smtputf8 = true;
	e.body = SMTP_BODY_BINARYMIME;
	e.ret = SMTP_RET_FULL;
	r = envelope_add_rcpt(&e);
	/* UTF-8 */
	strcpy(r->addr, "j\xc3\xb6rg@b\xc3\xbc" "cher.example");
	r->notify = SMTP_NOTIFY_NEVER | SMTP_NOTIFY_DELAY | 6;
	memset(r->orcpt, '=', sizeof(r->orcpt) - 1);
	r->state = RCPT_BOUNCED;
	r = envelope_add_rcpt(&e);
	strcpy(r->addr, "rcpt addr=x notify=1");	/* looks like syntax */
	strcpy(r->orcpt, " state=pending");
	round_trip(&e);

	/* the encoding is one line per field: no raw control bytes */
	buf_init(&b);
	envelope_encode(&e, &b);
	for (size_t i = 0; i < b.len; i++) {
		unsigned char c = (unsigned char)b.data[i];
		assert_true(c >= 0x20 || c == '\n');
		assert_true(c != 0x7f);
	}
	/* UTF-8 is kept as is */
	assert_non_null(strstr(b.data, "j\xc3\xb6rg@"));
	buf_free(&b);
	e.created = INT64_MAX;
	round_trip(&e);
	e.created = -1;
	round_trip(&e);
	envelope_free(&e);
}

static void
test_round_trip_many_rcpts(void **state)
{
	struct envelope e;

	(void)state;
	envelope_init(&e);
	strcpy(e.id, ID);
	for (int i = 0; i < 5000; i++) {
		struct env_rcpt *r = envelope_add_rcpt(&e);
		snprintf(r->addr, sizeof(r->addr), "user%d@example.com", i);
		r->state = (enum rcpt_state)(i % 3);
	}
	assert_int_equal(e.nrcpt, 5000);
	round_trip(&e);
	envelope_free(&e);
	assert_null(e.rcpt);
	assert_int_equal(e.nrcpt, 0);
}

static const struct {
	const char	*name;
	const char	*text;
} malformed[] = {
	{ "empty", "" },
	{ "only terminator", "\n" },
	{ "no terminator", HDR("0") },
	{ "truncated line", HDR("0") "rcpt addr=a notify=0 orcpt= state=pe" },
	{ "missing id",
	  "created 1\nhelo x\npeer x\nuser \ntenant \nfrom \nbody 7bit\n"
	  "smtputf8 0\nret unset\nenvid \nsize 0\n\n" },
	{ "bad id", "id 0123456789ABCDEF0123\n" },
	{ "short id", "id 0123\n" },
	{ "unknown key", "id " ID "\nfoo bar\n\n" },
	{ "unknown trailing key", HDR("0") "foo bar\n\n" },
	{ "duplicate key", "id " ID "\nid " ID "\n\n" },
	{ "fields out of order",
	  "id " ID "\nhelo x\ncreated 1\n\n" },
	{ "key without space", "id " ID "\ncreated\n\n" },
	{ "two spaces", "id  " ID "\n\n" },
	{ "leading zero", "id " ID "\ncreated 01\n\n" },
	{ "plus sign", "id " ID "\ncreated +1\n\n" },
	{ "minus zero", "id " ID "\ncreated -0\n\n" },
	{ "created overflow", "id " ID "\ncreated 9223372036854775808\n\n" },
	{ "created underflow",
	  "id " ID "\ncreated -9223372036854775809\n\n" },
	{ "size overflow", PRE "body 7bit\nsmtputf8 0\nret unset\nenvid \n"
	  "size 18446744073709551616\n\n" },
	{ "empty number", HDR("") "\n" },
	{ "bad body", PRE "body 9bit\n\n" },
	{ "smtputf8 2", PRE "body 7bit\nsmtputf8 2\n\n" },
	{ "bad ret", PRE "body 7bit\nsmtputf8 0\nret FULL\n\n" },
	{ "raw space in value", "id " ID "\ncreated 0\nhelo a b\n\n" },
	{ "raw tab in value", "id " ID "\ncreated 0\nhelo a\tb\n\n" },
	{ "raw CR in value", "id " ID "\ncreated 0\nhelo a\rb\n\n" },
	{ "raw DEL in value", "id " ID "\ncreated 0\nhelo a\x7f\n\n" },
	{ "lower case escape", "id " ID "\ncreated 0\nhelo a%2a\n\n" },
	{ "needless escape", "id " ID "\ncreated 0\nhelo %41\n\n" },
	{ "escaped NUL", "id " ID "\ncreated 0\nhelo a%00b\n\n" },
	{ "short escape", "id " ID "\ncreated 0\nhelo a%2\n\n" },
	{ "escape at end", "id " ID "\ncreated 0\nhelo a%\n\n" },
	{ "peer too long", "id " ID "\ncreated 0\nhelo \npeer "
	  "0123456789012345678901234567890123456789012345678901234567890123"
	  "\n\n" },
	{ "rcpt missing state", HDR("0") "rcpt addr=a notify=0 orcpt=\n\n" },
	{ "rcpt fields swapped",
	  HDR("0") "rcpt notify=0 addr=a orcpt= state=pending\n\n" },
	{ "rcpt trailing space",
	  HDR("0") "rcpt addr=a notify=0 orcpt= state=pending \n\n" },
	{ "rcpt extra field",
	  HDR("0") "rcpt addr=a notify=0 orcpt= state=pending x=1\n\n" },
	{ "rcpt bad notify",
	  HDR("0") "rcpt addr=a notify=16 orcpt= state=pending\n\n" },
	{ "rcpt notify hex",
	  HDR("0") "rcpt addr=a notify=0x1 orcpt= state=pending\n\n" },
	{ "rcpt bad state",
	  HDR("0") "rcpt addr=a notify=0 orcpt= state=lost\n\n" },
	{ "rcpt raw space",
	  HDR("0") "rcpt addr=a  notify=0 orcpt= state=pending\n\n" },
	{ "rcpt without keyword",
	  HDR("0") "addr=a notify=0 orcpt= state=pending\n\n" },
	{ "header after rcpt",
	  HDR("0") "rcpt addr=a notify=0 orcpt= state=pending\nuser x\n\n" },
};

static void
test_malformed(void **state)
{
	struct envelope e;
	size_t used;

	(void)state;
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]);
	    i++) {
		size_t n = strlen(malformed[i].text);
		char *copy = malloc(n ? n : 1);	/* no NUL: ASan guards */

		assert_non_null(copy);
		memcpy(copy, malformed[i].text, n);
		if (envelope_decode(copy, n, &e, &used) == 0)
			fail_msg("accepted malformed input '%s'",
			    malformed[i].name);
		assert_null(e.rcpt);
		assert_int_equal(e.nrcpt, 0);
		/* and every prefix of it */
		for (size_t k = 0; k < n; k++)
			if (envelope_decode(copy, k, &e, &used) == 0)
				fail_msg("accepted prefix %zu of '%s'", k,
				    malformed[i].name);
		free(copy);
	}
	assert_int_equal(envelope_decode(NULL, 0, &e, &used), -1);
}

/* Every proper prefix of a valid encoding is refused. */
static void
test_truncated(void **state)
{
	struct envelope e, d;
	struct buf b;
	size_t used;

	(void)state;
	fill(&e);
	buf_init(&b);
	envelope_encode(&e, &b);
	for (size_t k = 0; k < b.len; k++) {
		char *copy = malloc(k ? k : 1);
		assert_non_null(copy);
		memcpy(copy, b.data, k);
		if (envelope_decode(copy, k, &d, &used) == 0)
			fail_msg("accepted truncation at %zu", k);
		free(copy);
	}
	buf_free(&b);
	envelope_free(&e);
}

/* Field bounds: exactly the array size fits, one more does not. */
static void
test_bounds(void **state)
{
	struct envelope e;
	struct buf b;
	size_t used;

	(void)state;
	for (int extra = 0; extra <= 1; extra++) {
		buf_init(&b);
		buf_printf(&b, "id %s\ncreated 0\nhelo ", ID);
		for (int i = 0; i < ENV_HELO_MAX + extra; i++)
			buf_adds(&b, "%20");
		buf_adds(&b, "\npeer \nuser \ntenant \nfrom \nbody unset\n"
		    "smtputf8 1\nret unset\nenvid \nsize 0\n\n");
		assert_int_equal(envelope_decode(b.data, b.len, &e, &used),
		    extra ? -1 : 0);
		if (!extra) {
			assert_int_equal(strlen(e.helo), ENV_HELO_MAX);
			assert_true(e.smtputf8);
		}
		envelope_free(&e);
		buf_free(&b);
	}
}

/* More than ENV_MAX_RCPT recipient lines are refused before allocating. */
static void
test_too_many_rcpts(void **state)
{
	struct envelope e;
	struct buf b;
	size_t used;

	(void)state;
	buf_init(&b);
	buf_adds(&b, HDR("0"));
	for (int i = 0; i <= ENV_MAX_RCPT; i++)
		buf_adds(&b, "rcpt addr=a notify=0 orcpt= state=pending\n");
	buf_adds(&b, "\n");
	assert_int_equal(envelope_decode(b.data, b.len, &e, &used), -1);
	assert_null(e.rcpt);
	buf_free(&b);
}

/* ---- delivery state (STATE payloads) ---- */

#define SHDR	"id " ID "\nhold 0\nattempts 1\nlast 0\nnext 0\n"
#define SRCPT	"rcpt 0 state=pending warned=0 remote= reply=\n"

/* fill() plus some delivery state. */
static void
fill_state(struct envelope *e)
{
	fill(e);
	e->hold = true;
	e->attempts = 3;
	e->last_attempt = 1700000000;
	e->next_attempt = 1700000300;
	e->rcpt[0].state = RCPT_DEFERRED;
	e->rcpt[0].remote = strdup("mx.example.net[192.0.2.1]:25");
	e->rcpt[0].last_reply = strdup("451 4.3.0 try later");
	e->rcpt[1].delay_warned = true;
}

/* Encode the state of e, apply it from an exact-size copy onto d (the
 * same envelope without state), compare. */
static void
state_round_trip(const struct envelope *e)
{
	struct envelope d;
	struct buf b;
	char *copy;

	buf_init(&b);
	envelope_state_encode(e, &b);
	copy = malloc(b.len ? b.len : 1);
	assert_non_null(copy);
	memcpy(copy, b.data, b.len);
	envelope_init(&d);
	memcpy(d.id, e->id, sizeof(d.id));
	for (size_t i = 0; i < e->nrcpt; i++) {
		struct env_rcpt *r = envelope_add_rcpt(&d);
		memcpy(r->addr, e->rcpt[i].addr, sizeof(r->addr));
		r->notify = e->rcpt[i].notify;
		memcpy(r->orcpt, e->rcpt[i].orcpt, sizeof(r->orcpt));
		r->last_reply = strdup("to be replaced");
	}
	memcpy(d.helo, e->helo, sizeof(d.helo));
	memcpy(d.peer, e->peer, sizeof(d.peer));
	memcpy(d.user, e->user, sizeof(d.user));
	memcpy(d.tenant, e->tenant, sizeof(d.tenant));
	memcpy(d.mail_from, e->mail_from, sizeof(d.mail_from));
	memcpy(d.envid, e->envid, sizeof(d.envid));
	d.created = e->created;
	d.body = e->body;
	d.smtputf8 = e->smtputf8;
	d.ret = e->ret;
	d.content_size = e->content_size;
	if (envelope_state_decode(copy, b.len, &d) != 0)
		fail_msg("state decode failed:\n%s", b.data);
	assert_true(envelope_equal(e, &d));
	envelope_free(&d);
	free(copy);
	buf_free(&b);
}

static void
test_state_encode_text(void **state)
{
	struct envelope e;
	struct buf b;

	(void)state;
	fill_state(&e);
	buf_init(&b);
	envelope_state_encode(&e, &b);
	assert_string_equal(b.data,
	    "id " ID "\n"
	    "hold 1\n"
	    "attempts 3\n"
	    "last 1700000000\n"
	    "next 1700000300\n"
	    "rcpt 0 state=deferred warned=0 "
	    "remote=mx.example.net[192.0.2.1]:25 "
	    "reply=451%204.3.0%20try%20later\n"
	    "rcpt 1 state=delivered warned=1 remote= reply=\n");
	state_round_trip(&e);
	/* the MSG encoding does not carry it */
	buf_reset(&b);
	envelope_encode(&e, &b);
	assert_null(strstr(b.data, "try"));
	buf_free(&b);
	envelope_free(&e);
}

static void
test_state_round_trip(void **state)
{
	struct envelope e;
	char all[256];

	(void)state;
	for (int i = 1; i < 256; i++)
		all[i - 1] = (char)i;
	all[255] = '\0';
	fill_state(&e);
	state_round_trip(&e);
	free(e.rcpt[0].last_reply);
	e.rcpt[0].last_reply = strdup(all);
	free(e.rcpt[0].remote);
	e.rcpt[0].remote = strdup("rcpt 1 state=pending");
	e.rcpt[1].last_reply = strdup("452-4.2.2 full\r\n452 4.2.2 j\xc3\xb6rg");
	e.rcpt[1].state = RCPT_BOUNCED;
	e.hold = false;
	e.attempts = UINT32_MAX;
	e.last_attempt = INT64_MIN;
	e.next_attempt = INT64_MAX;
	state_round_trip(&e);
	envelope_free(&e);
	/* no recipients */
	envelope_init(&e);
	strcpy(e.id, ID);
	state_round_trip(&e);
	/* NULL and "" are both nothing */
	fill(&e);
	e.rcpt[0].remote = strdup("");
	state_round_trip(&e);
	envelope_free(&e);
}

/* Over-long texts are cut to the bound, never inside a UTF-8 character,
 * and what is written is accepted. */
static void
test_state_bounds(void **state)
{
	struct envelope e;
	struct buf b;
	char *longer;

	(void)state;
	fill(&e);
	longer = malloc(ENV_REPLY_MAX + 100);
	assert_non_null(longer);
	/* "é" (2 bytes) straddling the bound */
	memset(longer, 'x', ENV_REPLY_MAX + 99);
	longer[ENV_REPLY_MAX - 1] = (char)0xc3;
	longer[ENV_REPLY_MAX] = (char)0xa9;
	longer[ENV_REPLY_MAX + 99] = '\0';
	e.rcpt[0].last_reply = longer;
	e.rcpt[1].remote = malloc(ENV_REMOTE_MAX + 2);
	memset(e.rcpt[1].remote, 'r', ENV_REMOTE_MAX + 1);
	e.rcpt[1].remote[ENV_REMOTE_MAX + 1] = '\0';
	buf_init(&b);
	envelope_state_encode(&e, &b);
	/* cut: the reply keeps 511 bytes, the remote 300 */
	longer[ENV_REPLY_MAX - 1] = '\0';
	e.rcpt[1].remote[ENV_REMOTE_MAX] = '\0';
	state_round_trip(&e);
	assert_non_null(strstr(b.data, longer));
	/* exactly at the bound is kept */
	memset(longer, 'y', ENV_REPLY_MAX);
	longer[ENV_REPLY_MAX] = '\0';
	state_round_trip(&e);
	buf_free(&b);
	envelope_free(&e);
}

static const struct {
	const char	*name;
	const char	*text;
} state_malformed[] = {
	{ "empty", "" },
	{ "only id", "id " ID "\n" },
	{ "trailing empty line", SHDR "\n" },
	{ "no final newline", SHDR "rcpt 0 state=pending warned=0 remote= "
	  "reply=" },
	{ "other id", "id 0123456789abcdef0124\nhold 0\nattempts 1\nlast 0\n"
	  "next 0\n" SRCPT SRCPT },
	{ "bad id", "id 0123456789ABCDEF0123\nhold 0\nattempts 1\nlast 0\n"
	  "next 0\n" },
	{ "hold 2", "id " ID "\nhold 2\nattempts 1\nlast 0\nnext 0\n" },
	{ "attempts overflow", "id " ID "\nhold 0\nattempts 4294967296\n"
	  "last 0\nnext 0\n" },
	{ "attempts negative", "id " ID "\nhold 0\nattempts -1\nlast 0\n"
	  "next 0\n" },
	{ "leading zero", "id " ID "\nhold 0\nattempts 1\nlast 00\nnext 0\n" },
	{ "minus zero", "id " ID "\nhold 0\nattempts 1\nlast 0\nnext -0\n" },
	{ "out of order", "id " ID "\nattempts 1\nhold 0\nlast 0\nnext 0\n" },
	{ "unknown key", SHDR "foo 1\n" },
	{ "rcpt index skipped", SHDR "rcpt 1 state=pending warned=0 remote= "
	  "reply=\n" },
	{ "rcpt index leading zero", SHDR "rcpt 00 state=pending warned=0 "
	  "remote= reply=\n" },
	{ "rcpt bad state", SHDR "rcpt 0 state=lost warned=0 remote= "
	  "reply=\n" },
	{ "rcpt warned 2", SHDR "rcpt 0 state=pending warned=2 remote= "
	  "reply=\n" },
	{ "rcpt fields swapped", SHDR "rcpt 0 warned=0 state=pending "
	  "remote= reply=\n" },
	{ "rcpt missing reply", SHDR "rcpt 0 state=pending warned=0 "
	  "remote=\n" },
	{ "rcpt extra field", SHDR "rcpt 0 state=pending warned=0 remote= "
	  "reply= x=1\n" },
	{ "rcpt raw space", SHDR "rcpt 0 state=pending warned=0 remote= "
	  "reply=a b\n" },
	{ "rcpt raw CR", SHDR "rcpt 0 state=pending warned=0 remote= "
	  "reply=a\rb\n" },
	{ "rcpt lower case escape", SHDR "rcpt 0 state=pending warned=0 "
	  "remote= reply=a%2a\n" },
	{ "rcpt needless escape", SHDR "rcpt 0 state=pending warned=0 "
	  "remote=%41 reply=\n" },
	{ "rcpt escaped NUL", SHDR "rcpt 0 state=pending warned=0 remote= "
	  "reply=%00\n" },
	/* (cut after its second line, this one is valid) */
	{ "three rcpts", SHDR SRCPT "rcpt 1 state=pending warned=0 remote= "
	  "reply=\nrcpt 2 state=pending warned=0 remote= reply=\n" },
	{ "one rcpt", SHDR SRCPT },
	{ "header after rcpt", SHDR SRCPT "hold 1\n" },
};

/* text[0..len) is refused from an exact-size copy and e stays as ref. */
static void
state_refused(const char *name, const char *text, size_t len,
    struct envelope *e, const struct envelope *ref)
{
	char *copy = malloc(len ? len : 1);

	assert_non_null(copy);
	memcpy(copy, text, len);
	if (envelope_state_decode(copy, len, e) == 0)
		fail_msg("accepted '%s' cut at %zu", name, len);
	assert_true(envelope_equal(e, ref));
	free(copy);
}

/* Refused, whole or cut anywhere, leaving the envelope as it was. */
static void
test_state_malformed(void **state)
{
	struct envelope e, ref;
	char id[QUEUE_ID_LEN + 1];
	size_t n;

	(void)state;
	fill_state(&e);
	fill_state(&ref);
	for (size_t i = 0; i < sizeof(state_malformed) /
	    sizeof(state_malformed[0]); i++) {
		const char *text = state_malformed[i].text;

		for (size_t k = 0; k <= strlen(text); k++) {
			if (k == strlen(SHDR SRCPT) + strlen(SRCPT) &&
			    strcmp(state_malformed[i].name, "three rcpts") == 0)
				continue;
			state_refused(state_malformed[i].name, text, k, &e,
			    &ref);
		}
	}
	assert_int_equal(envelope_state_decode(NULL, 0, &e), -1);
	assert_int_equal(envelope_state_check(NULL, 0, id, &n), -1);
	/* "one rcpt" and "other id" are well-formed, for another envelope */
	assert_int_equal(envelope_state_check(SHDR SRCPT,
	    strlen(SHDR SRCPT), id, &n), 0);
	assert_string_equal(id, ID);
	assert_int_equal(n, 1);
	envelope_free(&e);
	envelope_free(&ref);
}

/* Every proper prefix of a valid encoding with recipients is refused. */
static void
test_state_truncated(void **state)
{
	struct envelope e, ref;
	struct buf b;

	(void)state;
	fill_state(&e);
	fill_state(&ref);
	buf_init(&b);
	envelope_state_encode(&e, &b);
	for (size_t k = 0; k < b.len; k++)
		state_refused("valid", b.data, k, &e, &ref);
	buf_free(&b);
	envelope_free(&e);
	envelope_free(&ref);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_text),
		cmocka_unit_test(test_round_trip_simple),
		cmocka_unit_test(test_round_trip_hostile),
		cmocka_unit_test(test_round_trip_many_rcpts),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_too_many_rcpts),
		cmocka_unit_test(test_state_encode_text),
		cmocka_unit_test(test_state_round_trip),
		cmocka_unit_test(test_state_bounds),
		cmocka_unit_test(test_state_malformed),
		cmocka_unit_test(test_state_truncated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

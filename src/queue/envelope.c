/*
 * envelope.c - the envelope of a queued message and its text codec.
 *
 * What it does: keeps the recipient array of an envelope, encodes an
 * envelope as "key value\n" lines (format in envelope.h) and decodes it
 * back; the same for the delivery state (the spool's STATE record),
 * which is decoded onto an envelope already decoded from its MSG record.
 * The decoders are strict and canonical: fields in one fixed order,
 * each exactly once, numbers without sign or leading zeros unless the
 * encoder writes them, escapes only where the encoder puts them, enum
 * values by name.  So decode(x) succeeding means x is exactly
 * encode(decode(x)) (the fuzzers check the round trips).
 *
 * What it must never do: read data[len] or beyond, trust a length or a
 * count from the input before checking it against the bound of the array
 * it goes into, allocate memory that the input does not pay for (the
 * recipient array is sized by counting recipient lines that are really
 * there, and there can be at most ENV_MAX_RCPT), or leave a partially
 * decoded envelope behind on failure (a STATE payload that does not
 * decode leaves the envelope exactly as it was: it is checked whole
 * before anything is applied).
 */
#include "queue/envelope.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define ENV_NOTIFY_MASK	(SMTP_NOTIFY_NEVER | SMTP_NOTIFY_SUCCESS | \
	SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY)

/* Header fields in the order the encoder writes them. */
enum env_key {
	K_ID = 0, K_CREATED, K_HELO, K_PEER, K_USER, K_TENANT, K_FROM,
	K_BODY, K_SMTPUTF8, K_RET, K_ENVID, K_SIZE, K__COUNT
};

static const char *const envelope_keys[K__COUNT] = {
	"id", "created", "helo", "peer", "user", "tenant", "from",
	"body", "smtputf8", "ret", "envid", "size",
};

static const char *const envelope_body_names[] = {
	[SMTP_BODY_UNSET] = "unset", [SMTP_BODY_7BIT] = "7bit",
	[SMTP_BODY_8BITMIME] = "8bitmime",
	[SMTP_BODY_BINARYMIME] = "binarymime",
};
static const char *const envelope_ret_names[] = {
	[SMTP_RET_UNSET] = "unset", [SMTP_RET_FULL] = "full",
	[SMTP_RET_HDRS] = "hdrs",
};
static const char *const envelope_state_names[] = {
	[RCPT_PENDING] = "pending", [RCPT_DELIVERED] = "delivered",
	[RCPT_BOUNCED] = "bounced", [RCPT_DEFERRED] = "deferred",
};

/* A piece of the input: never NUL-terminated, never read past len. */
struct env_span {
	const char	*p;
	size_t		 len;
};

static bool envelope_must_escape(unsigned char c);
static void envelope_put_text(struct buf *out, const char *s, size_t sz);
static const char *envelope_name(const char *const *names, size_t n,
    unsigned v);
static bool envelope_take_line(struct env_span *in, struct env_span *line);
static bool envelope_take_prefix(struct env_span *s, const char *prefix);
static bool envelope_take_token(struct env_span *s, struct env_span *tok);
static int envelope_hexval(char c);
static bool envelope_get_text(struct env_span v, char *dst, size_t dstsz);
static bool envelope_get_u64(struct env_span v, uint64_t max, uint64_t *out);
static bool envelope_get_i64(struct env_span v, int64_t *out);
static bool envelope_get_name(struct env_span v, const char *const *names,
    size_t n, unsigned *out);
static bool envelope_get_field(struct envelope *e, enum env_key k,
    struct env_span v);
static bool envelope_get_rcpt(struct env_span line, struct env_rcpt *r);
static bool envelope_str_equal(const char *a, const char *b);
static void envelope_put_bounded(struct buf *out, const char *s, size_t max);
static bool envelope_get_line_value(struct env_span *in, const char *key,
    struct env_span *v);
static bool envelope_state_rcpt(struct env_span line, size_t index,
    enum rcpt_state *state, bool *warned, char *remote, char *reply);
static int envelope_state_walk(const char *data, size_t len,
    char id[QUEUE_ID_LEN + 1], size_t *nrcpt, struct envelope *apply);

void
envelope_init(struct envelope *e)
{
	memset(e, 0, sizeof(*e));
	e->rcpt = NULL;
}

void
envelope_free(struct envelope *e)
{
	size_t i;

	for (i = 0; i < e->nrcpt; i++) {
		free(e->rcpt[i].last_reply);
		free(e->rcpt[i].remote);
	}
	free(e->rcpt);
	envelope_init(e);
}

struct env_rcpt *
envelope_add_rcpt(struct envelope *e)
{
	struct env_rcpt *r;

	if (e->nrcpt >= ENV_MAX_RCPT)
		fatalx("envelope %s: more than %d recipients", e->id,
		    ENV_MAX_RCPT);
	if (e->nrcpt == e->rcpt_cap) {
		size_t cap = e->rcpt_cap ? e->rcpt_cap * 2 : 4;
		if (cap > ENV_MAX_RCPT)
			cap = ENV_MAX_RCPT;
		e->rcpt = xrealloc(e->rcpt, cap * sizeof(*e->rcpt));
		e->rcpt_cap = cap;
	}
	r = &e->rcpt[e->nrcpt++];
	memset(r, 0, sizeof(*r));
	return r;
}

bool
envelope_equal(const struct envelope *a, const struct envelope *b)
{
	size_t i;

	if (strcmp(a->id, b->id) != 0 || a->created != b->created ||
	    strcmp(a->helo, b->helo) != 0 || strcmp(a->peer, b->peer) != 0 ||
	    strcmp(a->user, b->user) != 0 ||
	    strcmp(a->tenant, b->tenant) != 0 ||
	    strcmp(a->mail_from, b->mail_from) != 0 || a->body != b->body ||
	    a->smtputf8 != b->smtputf8 || a->ret != b->ret ||
	    strcmp(a->envid, b->envid) != 0 ||
	    a->content_size != b->content_size || a->hold != b->hold ||
	    a->attempts != b->attempts ||
	    a->last_attempt != b->last_attempt ||
	    a->next_attempt != b->next_attempt || a->nrcpt != b->nrcpt)
		return false;
	for (i = 0; i < a->nrcpt; i++) {
		const struct env_rcpt *ra = &a->rcpt[i], *rb = &b->rcpt[i];
		if (strcmp(ra->addr, rb->addr) != 0 ||
		    ra->notify != rb->notify ||
		    strcmp(ra->orcpt, rb->orcpt) != 0 ||
		    ra->state != rb->state ||
		    ra->delay_warned != rb->delay_warned ||
		    !envelope_str_equal(ra->last_reply, rb->last_reply) ||
		    !envelope_str_equal(ra->remote, rb->remote))
			return false;
	}
	return true;
}

/* NULL and "" are the same: both are stored as nothing. */
static bool
envelope_str_equal(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

/* ---- encoder ---- */

static bool
envelope_must_escape(unsigned char c)
{
	return c < 0x21 || c == 0x7f || c == '%';
}

/* A text field of array size sz (bounded even if not NUL-terminated). */
static void
envelope_put_text(struct buf *out, const char *s, size_t sz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strnlen(s, sz), i, run;

	for (i = 0; i < n; i += run) {
		unsigned char c = (unsigned char)s[i];
		if (envelope_must_escape(c)) {
			char esc[3] = { '%', hex[c >> 4], hex[c & 0xf] };
			buf_add(out, esc, sizeof(esc));
			run = 1;
			continue;
		}
		for (run = 1; i + run < n &&
		    !envelope_must_escape((unsigned char)s[i + run]); run++)
			;
		buf_add(out, s + i, run);
	}
}

static const char *
envelope_name(const char *const *names, size_t n, unsigned v)
{
	if (v >= n)
		fatalx("envelope: enum value %u out of range", v);
	return names[v];
}

void
envelope_encode(const struct envelope *e, struct buf *out)
{
	size_t i;

#define PUT_TEXT(key, field) do {					\
	buf_adds(out, key " ");						\
	envelope_put_text(out, (field), sizeof(field));			\
	buf_addc(out, '\n');						\
} while (0)
	PUT_TEXT("id", e->id);
	buf_printf(out, "created %" PRId64 "\n", e->created);
	PUT_TEXT("helo", e->helo);
	PUT_TEXT("peer", e->peer);
	PUT_TEXT("user", e->user);
	PUT_TEXT("tenant", e->tenant);
	PUT_TEXT("from", e->mail_from);
	buf_printf(out, "body %s\n", envelope_name(envelope_body_names,
	    nitems(envelope_body_names), e->body));
	buf_printf(out, "smtputf8 %d\n", e->smtputf8 ? 1 : 0);
	buf_printf(out, "ret %s\n", envelope_name(envelope_ret_names,
	    nitems(envelope_ret_names), e->ret));
	PUT_TEXT("envid", e->envid);
	buf_printf(out, "size %" PRIu64 "\n", e->content_size);
#undef PUT_TEXT
	for (i = 0; i < e->nrcpt; i++) {
		const struct env_rcpt *r = &e->rcpt[i];

		if (r->notify & ~(unsigned)ENV_NOTIFY_MASK)
			fatalx("envelope %s: bad notify bits %#x", e->id,
			    r->notify);
		buf_adds(out, "rcpt addr=");
		envelope_put_text(out, r->addr, sizeof(r->addr));
		buf_printf(out, " notify=%u orcpt=", r->notify);
		envelope_put_text(out, r->orcpt, sizeof(r->orcpt));
		buf_printf(out, " state=%s\n", envelope_name(
		    envelope_state_names, nitems(envelope_state_names),
		    r->state));
	}
	buf_addc(out, '\n');
}

/*
 * A heap string bounded to max bytes: a longer one is cut at the last
 * UTF-8 character boundary at or before max, so that the decoder (which
 * refuses more than max) accepts what is written.
 */
static void
envelope_put_bounded(struct buf *out, const char *s, size_t max)
{
	size_t n;

	if (s == NULL)
		return;
	n = strlen(s);
	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;	/* s[n] continues a character cut in two */
	}
	envelope_put_text(out, s, n);
}

void
envelope_state_encode(const struct envelope *e, struct buf *out)
{
	size_t i;

	buf_adds(out, "id ");
	envelope_put_text(out, e->id, sizeof(e->id));
	buf_printf(out, "\nhold %d\nattempts %" PRIu32 "\nlast %" PRId64
	    "\nnext %" PRId64 "\n", e->hold ? 1 : 0, e->attempts,
	    e->last_attempt, e->next_attempt);
	for (i = 0; i < e->nrcpt; i++) {
		const struct env_rcpt *r = &e->rcpt[i];

		buf_printf(out, "rcpt %zu state=%s warned=%d remote=", i,
		    envelope_name(envelope_state_names,
		    nitems(envelope_state_names), r->state),
		    r->delay_warned ? 1 : 0);
		envelope_put_bounded(out, r->remote, ENV_REMOTE_MAX);
		buf_adds(out, " reply=");
		envelope_put_bounded(out, r->last_reply, ENV_REPLY_MAX);
		buf_addc(out, '\n');
	}
}

/* ---- decoder ---- */

/* Split the next '\n'-terminated line (without the '\n') off in. */
static bool
envelope_take_line(struct env_span *in, struct env_span *line)
{
	const char *nl = memchr(in->p, '\n', in->len);
	size_t n;

	if (nl == NULL)
		return false;		/* truncated */
	n = (size_t)(nl - in->p);
	line->p = in->p;
	line->len = n;
	in->p += n + 1;
	in->len -= n + 1;
	return true;
}

static bool
envelope_take_prefix(struct env_span *s, const char *prefix)
{
	size_t n = strlen(prefix);

	if (s->len < n || memcmp(s->p, prefix, n) != 0)
		return false;
	s->p += n;
	s->len -= n;
	return true;
}

/* Next token up to a space.  True if a space followed it (s holds the
 * rest), false if it was the last one (s is left empty). */
static bool
envelope_take_token(struct env_span *s, struct env_span *tok)
{
	const char *sp = memchr(s->p, ' ', s->len);

	tok->p = s->p;
	if (sp == NULL) {
		tok->len = s->len;
		s->p += s->len;
		s->len = 0;
		return false;
	}
	tok->len = (size_t)(sp - s->p);
	s->p += tok->len + 1;
	s->len -= tok->len + 1;
	return true;
}

static int
envelope_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;			/* lower case is not canonical */
}

/* Unescape v into dst[dstsz]; false if malformed or too long. */
static bool
envelope_get_text(struct env_span v, char *dst, size_t dstsz)
{
	size_t i = 0, o = 0;

	while (i < v.len) {
		unsigned char c = (unsigned char)v.p[i];
		if (o + 1 >= dstsz)
			return false;
		if (c == '%') {
			int hi, lo;
			if (v.len - i < 3 ||
			    (hi = envelope_hexval(v.p[i + 1])) < 0 ||
			    (lo = envelope_hexval(v.p[i + 2])) < 0)
				return false;
			c = (unsigned char)(hi << 4 | lo);
			/* only what the encoder escapes, and never NUL */
			if (c == 0 || !envelope_must_escape(c))
				return false;
			i += 3;
		} else if (envelope_must_escape(c))
			return false;
		else
			i++;
		dst[o++] = (char)c;
	}
	dst[o] = '\0';
	return true;
}

/* Canonical unsigned decimal: "0" or [1-9][0-9]*, at most max. */
static bool
envelope_get_u64(struct env_span v, uint64_t max, uint64_t *out)
{
	uint64_t n = 0;
	size_t i;

	if (v.len == 0 || (v.p[0] == '0' && v.len > 1))
		return false;
	for (i = 0; i < v.len; i++) {
		unsigned d = (unsigned)(unsigned char)v.p[i] - '0';
		if (d > 9 || d > max || n > (max - d) / 10)
			return false;
		n = n * 10 + d;
	}
	*out = n;
	return true;
}

/* Canonical signed decimal as printed by PRId64 ("-0" refused). */
static bool
envelope_get_i64(struct env_span v, int64_t *out)
{
	uint64_t m;

	if (v.len > 0 && v.p[0] == '-') {
		v.p++;
		v.len--;
		if (!envelope_get_u64(v, (uint64_t)INT64_MAX + 1, &m) ||
		    m == 0)
			return false;
		*out = m == (uint64_t)INT64_MAX + 1 ? INT64_MIN :
		    -(int64_t)m;
		return true;
	}
	if (!envelope_get_u64(v, INT64_MAX, &m))
		return false;
	*out = (int64_t)m;
	return true;
}

static bool
envelope_get_name(struct env_span v, const char *const *names, size_t n,
    unsigned *out)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		if (strlen(names[i]) == v.len &&
		    memcmp(names[i], v.p, v.len) == 0) {
			*out = i;
			return true;
		}
	}
	return false;
}

static bool
envelope_get_field(struct envelope *e, enum env_key k, struct env_span v)
{
	uint64_t u;
	unsigned n;

	switch (k) {
	case K_ID:
		return envelope_get_text(v, e->id, sizeof(e->id)) &&
		    queue_id_valid(e->id);
	case K_CREATED:
		return envelope_get_i64(v, &e->created);
	case K_HELO:
		return envelope_get_text(v, e->helo, sizeof(e->helo));
	case K_PEER:
		return envelope_get_text(v, e->peer, sizeof(e->peer));
	case K_USER:
		return envelope_get_text(v, e->user, sizeof(e->user));
	case K_TENANT:
		return envelope_get_text(v, e->tenant, sizeof(e->tenant));
	case K_FROM:
		return envelope_get_text(v, e->mail_from,
		    sizeof(e->mail_from));
	case K_BODY:
		if (!envelope_get_name(v, envelope_body_names,
		    nitems(envelope_body_names), &n))
			return false;
		e->body = (enum smtp_body)n;
		return true;
	case K_SMTPUTF8:
		if (!envelope_get_u64(v, 1, &u))
			return false;
		e->smtputf8 = u == 1;
		return true;
	case K_RET:
		if (!envelope_get_name(v, envelope_ret_names,
		    nitems(envelope_ret_names), &n))
			return false;
		e->ret = (enum smtp_ret)n;
		return true;
	case K_ENVID:
		return envelope_get_text(v, e->envid, sizeof(e->envid));
	case K_SIZE:
		return envelope_get_u64(v, UINT64_MAX, &e->content_size);
	case K__COUNT:
		break;
	}
	return false;
}

/* "rcpt addr=A notify=N orcpt=O state=S" (the "rcpt " already taken). */
static bool
envelope_get_rcpt(struct env_span line, struct env_rcpt *r)
{
	struct env_span tok;
	uint64_t u;
	unsigned n;

	if (!envelope_take_token(&line, &tok) ||
	    !envelope_take_prefix(&tok, "addr=") ||
	    !envelope_get_text(tok, r->addr, sizeof(r->addr)))
		return false;
	if (!envelope_take_token(&line, &tok) ||
	    !envelope_take_prefix(&tok, "notify=") ||
	    !envelope_get_u64(tok, ENV_NOTIFY_MASK, &u) ||
	    (u & ~(uint64_t)ENV_NOTIFY_MASK) != 0)
		return false;
	r->notify = (unsigned)u;
	if (!envelope_take_token(&line, &tok) ||
	    !envelope_take_prefix(&tok, "orcpt=") ||
	    !envelope_get_text(tok, r->orcpt, sizeof(r->orcpt)))
		return false;
	if (envelope_take_token(&line, &tok) ||	/* must be the last */
	    !envelope_take_prefix(&tok, "state=") ||
	    !envelope_get_name(tok, envelope_state_names,
	    nitems(envelope_state_names), &n))
		return false;
	r->state = (enum rcpt_state)n;
	return true;
}

int
envelope_decode(const char *data, size_t len, struct envelope *e,
    size_t *used)
{
	struct env_span in = { data, len }, line, v, scan;
	size_t nrcpt = 0, i;
	int k;

	envelope_init(e);
	if (data == NULL)
		goto fail;
	for (k = 0; k < K__COUNT; k++) {
		if (!envelope_take_line(&in, &line))
			goto fail;
		v = line;
		if (!envelope_take_prefix(&v, envelope_keys[k]) ||
		    !envelope_take_prefix(&v, " ") ||
		    !envelope_get_field(e, (enum env_key)k, v))
			goto fail;
	}
	/* Count the recipient lines up to the empty line before allocating:
	 * the input pays for every slot. */
	scan = in;
	for (;;) {
		if (!envelope_take_line(&scan, &line))
			goto fail;
		if (line.len == 0)
			break;
		if (++nrcpt > ENV_MAX_RCPT)
			goto fail;
	}
	if (nrcpt > 0) {
		e->rcpt = xcalloc(nrcpt, sizeof(*e->rcpt));
		e->rcpt_cap = nrcpt;
	}
	for (i = 0; i < nrcpt; i++) {
		if (!envelope_take_line(&in, &line) ||
		    !envelope_take_prefix(&line, "rcpt ") ||
		    !envelope_get_rcpt(line, &e->rcpt[i]))
			goto fail;
		e->nrcpt++;
	}
	if (!envelope_take_line(&in, &line) || line.len != 0)
		goto fail;		/* cannot happen: counted above */
	*used = len - in.len;
	return 0;
fail:
	envelope_free(e);
	return -1;
}

/* ---- STATE decoder ---- */

/* The next line must be "key value": v is the value. */
static bool
envelope_get_line_value(struct env_span *in, const char *key,
    struct env_span *v)
{
	if (!envelope_take_line(in, v))
		return false;
	return envelope_take_prefix(v, key) && envelope_take_prefix(v, " ");
}

/*
 * "rcpt N state=S warned=W remote=R reply=P" (the "rcpt " already
 * taken), N must be index.  remote and reply have room for
 * ENV_REMOTE_MAX + 1 and ENV_REPLY_MAX + 1 bytes.
 */
static bool
envelope_state_rcpt(struct env_span line, size_t index,
    enum rcpt_state *state, bool *warned, char *remote, char *reply)
{
	struct env_span tok;
	uint64_t u;
	unsigned n;

	if (!envelope_take_token(&line, &tok) ||
	    !envelope_get_u64(tok, ENV_MAX_RCPT - 1, &u) || u != index)
		return false;
	if (!envelope_take_token(&line, &tok) ||
	    !envelope_take_prefix(&tok, "state=") ||
	    !envelope_get_name(tok, envelope_state_names,
	    nitems(envelope_state_names), &n))
		return false;
	*state = (enum rcpt_state)n;
	if (!envelope_take_token(&line, &tok) ||
	    !envelope_take_prefix(&tok, "warned=") ||
	    !envelope_get_u64(tok, 1, &u))
		return false;
	*warned = u == 1;
	if (!envelope_take_token(&line, &tok) ||
	    !envelope_take_prefix(&tok, "remote=") ||
	    !envelope_get_text(tok, remote, ENV_REMOTE_MAX + 1))
		return false;
	return !envelope_take_token(&line, &tok) &&	/* the last one */
	    envelope_take_prefix(&tok, "reply=") &&
	    envelope_get_text(tok, reply, ENV_REPLY_MAX + 1);
}

/*
 * Check a STATE payload whole: 0 with its id and number of recipient
 * lines, or -1.  With apply (whose id and nrcpt the caller has checked
 * against a first, checking walk), also set apply's delivery state.
 */
static int
envelope_state_walk(const char *data, size_t len, char id[QUEUE_ID_LEN + 1],
    size_t *nrcpt, struct envelope *apply)
{
	struct env_span in = { data, len }, v;
	char remote[ENV_REMOTE_MAX + 1], reply[ENV_REPLY_MAX + 1];
	enum rcpt_state state;
	uint64_t hold, attempts;
	bool warned;
	int64_t last, next;
	size_t n = 0;

	if (data == NULL ||
	    !envelope_get_line_value(&in, "id", &v) ||
	    !envelope_get_text(v, id, QUEUE_ID_LEN + 1) ||
	    !queue_id_valid(id) ||
	    !envelope_get_line_value(&in, "hold", &v) ||
	    !envelope_get_u64(v, 1, &hold) ||
	    !envelope_get_line_value(&in, "attempts", &v) ||
	    !envelope_get_u64(v, UINT32_MAX, &attempts) ||
	    !envelope_get_line_value(&in, "last", &v) ||
	    !envelope_get_i64(v, &last) ||
	    !envelope_get_line_value(&in, "next", &v) ||
	    !envelope_get_i64(v, &next))
		goto fail;
	if (apply != NULL) {
		apply->hold = hold == 1;
		apply->attempts = (uint32_t)attempts;
		apply->last_attempt = last;
		apply->next_attempt = next;
	}
	while (in.len > 0) {
		if (n >= ENV_MAX_RCPT || !envelope_take_line(&in, &v) ||
		    !envelope_take_prefix(&v, "rcpt ") ||
		    !envelope_state_rcpt(v, n, &state, &warned, remote,
		    reply))
			goto fail;
		if (apply != NULL) {
			struct env_rcpt *dst = &apply->rcpt[n];

			if (n >= apply->nrcpt)
				fatalx("envelope %s: STATE walk past %zu "
				    "recipients", apply->id, apply->nrcpt);
			dst->state = state;
			dst->delay_warned = warned;
			free(dst->remote);
			free(dst->last_reply);
			dst->remote = remote[0] ? xstrdup(remote) : NULL;
			dst->last_reply = reply[0] ? xstrdup(reply) : NULL;
		}
		n++;
	}
	*nrcpt = n;
	return 0;
fail:
	return -1;
}

int
envelope_state_check(const char *data, size_t len,
    char id[QUEUE_ID_LEN + 1], size_t *nrcpt)
{
	return envelope_state_walk(data, len, id, nrcpt, NULL);
}

int
envelope_state_decode(const char *data, size_t len, struct envelope *e)
{
	char id[QUEUE_ID_LEN + 1];
	size_t n;

	if (envelope_state_walk(data, len, id, &n, NULL) != 0 ||
	    strcmp(id, e->id) != 0 || n != e->nrcpt)
		goto fail;
	/* checked whole: applying it cannot fail half way */
	if (envelope_state_walk(data, len, id, &n, e) != 0)
		fatalx("envelope %s: STATE payload changed under us", e->id);
	return 0;
fail:
	return -1;
}

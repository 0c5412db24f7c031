/*
 * cli_queue.c - `ombud queue list|show|delete|hold|release|flush`.
 *
 * Reading (list, show) reads the spool directly and needs no server: a
 * message is shown with its delivery state (held, attempts, per recipient
 * its state, the remote host and its last reply).  Changing (delete,
 * hold, release, flush) goes through the running server's control
 * socket, one request line per message ("delete ID", "hold ID",
 * "release ID", "flush" or "flush ID"), because the server owns the
 * spool and the scheduler; when no server runs, delete, hold and release
 * open the spool themselves (taking its lock) and flush has nothing to
 * do.
 *
 * Must never: write to the spool while a server answers on the control
 * socket, or print bytes from a remote server (a reply, a host name) to
 * the terminal without neutralising control characters.
 */
#include "cli/cli.h"
#include "cli/cli_store.h"
#include "conf/conf.h"
#include "ctl/control.h"
#include "queue/queue_id.h"
#include "queue/spool.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

struct list_ctx {
	bool		 json;
	json_t		*arr;
	size_t		 count;
};

/* A change made through the server, or offline on the spool. */
enum queue_op {
	QUEUE_DELETE = 0,
	QUEUE_HOLD,
	QUEUE_RELEASE,
};

static const struct {
	const char	*verb;		/* command and control request */
	const char	*done;		/* printed after the id */
} queue_ops[] = {
	[QUEUE_DELETE] = { "delete", "deleted" },
	[QUEUE_HOLD] = { "hold", "held" },
	[QUEUE_RELEASE] = { "release", "released" },
};

static const char *
rcpt_state_name(enum rcpt_state st)
{
	switch (st) {
	case RCPT_PENDING: return "pending";
	case RCPT_DELIVERED: return "delivered";
	case RCPT_BOUNCED: return "bounced";
	case RCPT_DEFERRED: return "deferred";
	}
	return "unknown";
}

/* One word for the message: held, deferred (waiting for a retry after
 * a temporary failure) or queued (waiting for its turn). */
static const char *
queue_status(const struct envelope *e)
{
	if (e->hold)
		return "held";
	for (size_t i = 0; i < e->nrcpt; i++)
		if (e->rcpt[i].state == RCPT_DEFERRED)
			return "deferred";
	return "queued";
}

static json_t *
envelope_json(const struct envelope *e)
{
	json_t *o = json_object(), *rc = json_array();

	json_object_set_new(o, "id", json_string(e->id));
	json_object_set_new(o, "created", json_integer(e->created));
	json_object_set_new(o, "size", json_integer((json_int_t)
	    e->content_size));
	json_object_set_new(o, "from", json_string(e->mail_from));
	json_object_set_new(o, "user", json_string(e->user));
	json_object_set_new(o, "tenant", json_string(e->tenant));
	json_object_set_new(o, "peer", json_string(e->peer));
	json_object_set_new(o, "helo", json_string(e->helo));
	if (e->envid[0])
		json_object_set_new(o, "envid", json_string(e->envid));
	json_object_set_new(o, "status", json_string(queue_status(e)));
	json_object_set_new(o, "hold", json_boolean(e->hold));
	json_object_set_new(o, "attempts", json_integer(e->attempts));
	json_object_set_new(o, "last_attempt", json_integer(
	    e->last_attempt));
	json_object_set_new(o, "next_attempt", json_integer(
	    e->next_attempt));
	for (size_t i = 0; i < e->nrcpt; i++) {
		const struct env_rcpt *r = &e->rcpt[i];
		json_t *jr = json_object();

		json_object_set_new(jr, "address", json_string(r->addr));
		json_object_set_new(jr, "state", json_string(
		    rcpt_state_name(r->state)));
		json_object_set_new(jr, "last_reply", cli_json_text(
		    r->last_reply));
		json_object_set_new(jr, "remote", cli_json_text(r->remote));
		json_array_append_new(rc, jr);
	}
	json_object_set_new(o, "recipients", rc);
	return o;
}

/* queue list: one line per message, one per recipient. */
static void
envelope_print(const struct envelope *e)
{
	char date[32];
	time_t t = (time_t)e->created;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
	printf("%-20s %8llu %s %-8s %s\n", e->id,
	    (unsigned long long)e->content_size, date, queue_status(e),
	    e->mail_from[0] ? e->mail_from : "<>");
	for (size_t i = 0; i < e->nrcpt; i++)
		printf("%60s-> %s (%s)\n", "", e->rcpt[i].addr,
		    rcpt_state_name(e->rcpt[i].state));
}

/* queue show: every field, the delivery state included. */
static void
envelope_print_long(const struct envelope *e)
{
	char when[32];

	printf("id:           %s\n", e->id);
	cli_time(e->created, when, sizeof(when));
	printf("created:      %s\n", when);
	printf("size:         %llu\n", (unsigned long long)e->content_size);
	printf("from:         %s\n", e->mail_from[0] ? e->mail_from : "<>");
	printf("user:         %s\n", e->user[0] ? e->user : "-");
	printf("peer:         %s\n", e->peer);
	printf("helo:         ");
	cli_put_text(e->helo);
	printf("\nstatus:       %s\n", queue_status(e));
	printf("hold:         %s\n", e->hold ? "yes" : "no");
	printf("attempts:     %u\n", (unsigned)e->attempts);
	cli_time(e->last_attempt, when, sizeof(when));
	printf("last attempt: %s\n", when);
	cli_time(e->next_attempt, when, sizeof(when));
	printf("next attempt: %s\n", when);
	for (size_t i = 0; i < e->nrcpt; i++) {
		const struct env_rcpt *r = &e->rcpt[i];

		printf("recipient:    %s\n", r->addr);
		printf("  state:      %s%s\n", rcpt_state_name(r->state),
		    r->delay_warned ? " (delay report sent)" : "");
		printf("  remote:     ");
		cli_put_text(r->remote ? r->remote : "-");
		printf("\n  last reply: ");
		cli_put_text(r->last_reply ? r->last_reply : "-");
		printf("\n");
	}
}

static int
list_cb(void *arg, const struct envelope *e)
{
	struct list_ctx *lc = arg;

	lc->count++;
	if (lc->json)
		json_array_append_new(lc->arr, envelope_json(e));
	else
		envelope_print(e);
	return 0;
}

static int
queue_list(const struct conf *c, bool json)
{
	struct list_ctx lc = { .json = json };

	if (json)
		lc.arr = json_array();
	if (spool_scan(c->spool_dir, list_cb, &lc) != 0) {
		fprintf(stderr, "ombud: cannot read spool %s: %s\n",
		    c->spool_dir, strerror(errno));
		json_decref(lc.arr);
		return 1;
	}
	if (json) {
		json_dumpf(lc.arr, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(lc.arr);
	} else if (lc.count == 0)
		printf("Mail queue is empty\n");
	else
		printf("-- %zu message%s\n", lc.count, lc.count == 1 ? "" :
		    "s");
	return 0;
}

/* True if id is a queue id; says so on stderr if not. */
static bool
queue_id_ok(const char *id)
{
	if (queue_id_valid(id))
		return true;
	fprintf(stderr, "ombud: '%s' is not a queue id\n", id);
	return false;
}

static int
queue_show(const struct conf *c, const char *id, bool json)
{
	struct envelope e;
	struct buf content;
	json_t *o;

	if (!queue_id_ok(id))
		return 1;
	buf_init(&content);
	if (spool_read(c->spool_dir, id, &e, &content) != 0) {
		if (errno == ENOENT)
			fprintf(stderr, "ombud: %s: no such message\n", id);
		else
			fprintf(stderr, "ombud: cannot read spool %s: %s\n",
			    c->spool_dir, strerror(errno));
		buf_free(&content);
		return 1;
	}
	if (json) {
		json_t *text = json_stringn(content.data, content.len);

		o = envelope_json(&e);
		/* JSON strings are UTF-8: 8-bit content in another charset
		 * goes out as base64 instead of silently missing */
		if (text != NULL)
			json_object_set_new(o, "content", text);
		else {
			size_t n = sodium_base64_encoded_len(content.len,
			    sodium_base64_VARIANT_ORIGINAL);
			char *b64 = xmalloc(n);
			sodium_bin2base64(b64, n,
			    (const unsigned char *)content.data, content.len,
			    sodium_base64_VARIANT_ORIGINAL);
			json_object_set_new(o, "content_base64",
			    json_string(b64));
			free(b64);
		}
		json_dumpf(o, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(o);
	} else {
		envelope_print_long(&e);
		printf("\n");
		fwrite(content.data, 1, content.len, stdout);
	}
	envelope_free(&e);
	buf_free(&content);
	return 0;
}

static void
queue_offline_cb(void *arg, int err)
{
	*(int *)arg = err;
}

/* Without a server: op on id in the spool sp (locked by us).  0, or -1
 * with errno. */
static int
queue_offline(struct spool *sp, enum queue_op op, const char *id)
{
	struct envelope e;
	int err = 0, rc = -1;

	if (op == QUEUE_DELETE)
		return spool_delete(sp, id);
	if (spool_load(sp, id, &e, NULL) != 0)
		return -1;
	if (e.hold == (op == QUEUE_HOLD)) {
		rc = 0;			/* already so: nothing to write */
		goto done;
	}
	e.hold = op == QUEUE_HOLD;
	/* offline, the commit (and so the callback) is done on return */
	if (spool_update(sp, &e, queue_offline_cb, &err) == NULL)
		goto done;
	if (err != 0) {
		errno = err;
		goto done;
	}
	rc = 0;
done:
	err = errno;
	envelope_free(&e);
	errno = err;
	return rc;
}

/* delete, hold, release: through the server, else on the spool. */
static int
queue_change(const struct conf *c, enum queue_op op, int n, char **ids)
{
	struct spool *sp = NULL;
	char req[64], reply[256];
	int rc = 0;

	for (int i = 0; i < n; i++) {
		if (!queue_id_ok(ids[i])) {
			rc = 1;
			continue;
		}
		snprintf(req, sizeof(req), "%s %s", queue_ops[op].verb,
		    ids[i]);
		if (sp == NULL && control_request(c->run_dir, req, reply,
		    sizeof(reply)) == 0) {
			if (strncmp(reply, "ok", 2) != 0) {
				fprintf(stderr, "ombud: %s: %s\n", ids[i],
				    reply);
				rc = 1;
			} else
				printf("%s: %s\n", ids[i], queue_ops[op].done);
			continue;
		}
		/* no server: work on the spool directly */
		if (sp == NULL && (sp = spool_open(c->spool_dir, NULL,
		    NULL)) == NULL) {
			fprintf(stderr, "ombud: cannot open spool %s: %s\n",
			    c->spool_dir, strerror(errno));
			return 1;
		}
		if (queue_offline(sp, op, ids[i]) != 0) {
			fprintf(stderr, "ombud: %s: %s\n", ids[i],
			    errno == ENOENT ? "no such message" :
			    strerror(errno));
			rc = 1;
		} else
			printf("%s: %s\n", ids[i], queue_ops[op].done);
	}
	if (sp)
		spool_close(sp);
	return rc;
}

/* flush: everything ("flush") or the messages given ("flush ID"). */
static int
queue_flush(const struct conf *c, int n, char **ids)
{
	char req[64], reply[256];
	int rc = 0;

	for (int i = 0; i < n; i++)
		if (!queue_id_ok(ids[i]))
			return 1;
	for (int i = 0; i < (n > 0 ? n : 1); i++) {
		if (n > 0)
			snprintf(req, sizeof(req), "flush %s", ids[i]);
		else
			snprintf(req, sizeof(req), "flush");
		if (control_request(c->run_dir, req, reply, sizeof(reply)) !=
		    0) {
			fprintf(stderr, "ombud: no running server to flush\n");
			return 1;
		}
		if (n > 0)
			printf("%s: ", ids[i]);
		printf("%s\n", reply);
		if (strncmp(reply, "ok", 2) != 0)
			rc = 1;
	}
	return rc;
}

int
cli_queue(int argc, char **argv)
{
	const char *path = cli_config_path(&argc, argv);
	bool json = false;
	char err[1024];
	struct conf *c;
	int i, j, rc = 2;

	for (i = 1, j = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else
			argv[j++] = argv[i];
	}
	argc = j;
	if (argc < 2)
		goto usage;
	if ((c = conf_load(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	log_init(LOG_FMT_TEXT, LOG_LVL_WARN);
	if (strcmp(argv[1], "list") == 0 && argc == 2)
		rc = queue_list(c, json);
	else if (strcmp(argv[1], "show") == 0 && argc == 3)
		rc = queue_show(c, argv[2], json);
	else if (strcmp(argv[1], "delete") == 0 && argc >= 3)
		rc = queue_change(c, QUEUE_DELETE, argc - 2, argv + 2);
	else if (strcmp(argv[1], "hold") == 0 && argc >= 3)
		rc = queue_change(c, QUEUE_HOLD, argc - 2, argv + 2);
	else if (strcmp(argv[1], "release") == 0 && argc >= 3)
		rc = queue_change(c, QUEUE_RELEASE, argc - 2, argv + 2);
	else if (strcmp(argv[1], "flush") == 0)
		rc = queue_flush(c, argc - 2, argv + 2);
	conf_free(c);
	if (rc != 2)
		return rc;
usage:
	fprintf(stderr, "usage: ombud queue list [--json]\n"
	    "       ombud queue show QID [--json]\n"
	    "       ombud queue delete QID...\n"
	    "       ombud queue hold QID...\n"
	    "       ombud queue release QID...\n"
	    "       ombud queue flush [QID...]\n");
	return 2;
}

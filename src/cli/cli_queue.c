/*
 * cli_queue.c - `ombud queue list|show|delete|flush`.
 *
 * Reading (list, show) scans the spool directly and needs no server.
 * Changing (delete, flush) goes through the running server's control
 * socket, because the server owns the spool; when no server runs, delete
 * opens the spool itself (taking its lock).
 */
#include "cli/cli.h"
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
	const char	*want;		/* show: this id only */
	json_t		*arr;
	size_t		 count;
	bool		 found;
	struct envelope	 copy;		/* show: the envelope found */
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
	json_object_set_new(o, "peer", json_string(e->peer));
	json_object_set_new(o, "helo", json_string(e->helo));
	if (e->envid[0])
		json_object_set_new(o, "envid", json_string(e->envid));
	for (size_t i = 0; i < e->nrcpt; i++) {
		json_t *r = json_object();
		json_object_set_new(r, "address", json_string(
		    e->rcpt[i].addr));
		json_object_set_new(r, "state", json_string(
		    rcpt_state_name(e->rcpt[i].state)));
		json_array_append_new(rc, r);
	}
	json_object_set_new(o, "recipients", rc);
	return o;
}

static void
envelope_print(const struct envelope *e)
{
	char date[32];
	time_t t = (time_t)e->created;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
	printf("%-20s %8llu %s  %s\n", e->id,
	    (unsigned long long)e->content_size, date,
	    e->mail_from[0] ? e->mail_from : "<>");
	for (size_t i = 0; i < e->nrcpt; i++)
		printf("%51s-> %s (%s)\n", "", e->rcpt[i].addr,
		    rcpt_state_name(e->rcpt[i].state));
}

static int
list_cb(void *arg, const struct envelope *e)
{
	struct list_ctx *lc = arg;

	if (lc->want) {
		if (strcmp(lc->want, e->id) != 0)
			return 0;
		lc->found = true;
		if (lc->json)
			lc->arr = envelope_json(e);
		else
			envelope_print(e);
		return 1;
	}
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

static int
queue_show(const struct conf *c, const char *id, bool json)
{
	struct list_ctx lc = { .json = json, .want = id };
	struct buf content;
	int rc = 1;

	buf_init(&content);
	if (!queue_id_valid(id)) {
		fprintf(stderr, "ombud: '%s' is not a queue id\n", id);
		return 1;
	}
	if (spool_scan(c->spool_dir, list_cb, &lc) != 0) {
		fprintf(stderr, "ombud: cannot read spool %s: %s\n",
		    c->spool_dir, strerror(errno));
		goto out;
	}
	if (!lc.found) {
		fprintf(stderr, "ombud: %s: no such message\n", id);
		goto out;
	}
	if (spool_read_content(c->spool_dir, id, &content) != 0) {
		fprintf(stderr, "ombud: %s: cannot read content: %s\n", id,
		    strerror(errno));
		goto out;
	}
	if (json) {
		json_t *text = json_stringn(content.data, content.len);

		/* JSON strings are UTF-8: 8-bit content in another charset
		 * goes out as base64 instead of silently missing */
		if (text != NULL)
			json_object_set_new(lc.arr, "content", text);
		else {
			size_t n = sodium_base64_encoded_len(content.len,
			    sodium_base64_VARIANT_ORIGINAL);
			char *b64 = xmalloc(n);
			sodium_bin2base64(b64, n,
			    (const unsigned char *)content.data, content.len,
			    sodium_base64_VARIANT_ORIGINAL);
			json_object_set_new(lc.arr, "content_base64",
			    json_string(b64));
			free(b64);
		}
		json_dumpf(lc.arr, stdout, JSON_INDENT(2));
		printf("\n");
	} else {
		printf("\n");
		fwrite(content.data, 1, content.len, stdout);
	}
	rc = 0;
out:
	json_decref(lc.arr);
	buf_free(&content);
	return rc;
}

static int
queue_delete(const struct conf *c, int n, char **ids)
{
	struct spool *sp = NULL;
	char req[64], reply[256];
	int rc = 0;

	for (int i = 0; i < n; i++) {
		if (!queue_id_valid(ids[i])) {
			fprintf(stderr, "ombud: '%s' is not a queue id\n",
			    ids[i]);
			rc = 1;
			continue;
		}
		snprintf(req, sizeof(req), "delete %s", ids[i]);
		if (sp == NULL && control_request(c->run_dir, req, reply,
		    sizeof(reply)) == 0) {
			if (strncmp(reply, "ok", 2) != 0) {
				fprintf(stderr, "ombud: %s: %s\n", ids[i],
				    reply);
				rc = 1;
			} else
				printf("%s: deleted\n", ids[i]);
			continue;
		}
		/* no server: work on the spool directly */
		if (sp == NULL && (sp = spool_open(c->spool_dir, NULL,
		    NULL)) == NULL) {
			fprintf(stderr, "ombud: cannot open spool %s: %s\n",
			    c->spool_dir, strerror(errno));
			return 1;
		}
		if (spool_delete(sp, ids[i]) != 0) {
			fprintf(stderr, "ombud: %s: %s\n", ids[i],
			    errno == ENOENT ? "no such message" :
			    strerror(errno));
			rc = 1;
		} else
			printf("%s: deleted\n", ids[i]);
	}
	if (sp)
		spool_close(sp);
	return rc;
}

static int
queue_flush(const struct conf *c)
{
	char reply[256];

	if (control_request(c->run_dir, "flush", reply, sizeof(reply)) != 0) {
		fprintf(stderr, "ombud: no running server to flush\n");
		return 1;
	}
	printf("%s\n", reply);
	return strncmp(reply, "ok", 2) == 0 ? 0 : 1;
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
		rc = queue_delete(c, argc - 2, argv + 2);
	else if (strcmp(argv[1], "flush") == 0 && argc == 2)
		rc = queue_flush(c);
	conf_free(c);
	if (rc != 2)
		return rc;
usage:
	fprintf(stderr, "usage: ombud queue list [--json]\n"
	    "       ombud queue show QID [--json]\n"
	    "       ombud queue delete QID...\n"
	    "       ombud queue flush\n");
	return 2;
}

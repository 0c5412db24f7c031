/*
 * control.c - the server's control socket and its client.
 *
 * Must never: accept a request from another user (the socket is 0600 in
 * run_dir) or block the event loop on a slow client (requests are one
 * bounded line; replies are small).
 */
#include "ctl/control.h"
#include "smtp/smtp_server.h"
#include "queue/queue_id.h"
#include "queue/spool.h"
#include "mta/scheduler.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#define CONTROL_LINE_MAX 512

struct control {
	struct server		*srv;
	struct evconnlistener	*evl;
	char			 path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static int
control_path(const char *run_dir, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s/ombud.sock", run_dir);
	return (n < 0 || (size_t)n >= outlen) ? -1 : 0;
}

/* "VERB ID": the id, or NULL after replying with an error. */
static const char *
control_id(const char *line, size_t verblen, struct evbuffer *out)
{
	const char *id = line + verblen;

	if (!queue_id_valid(id)) {
		evbuffer_add_printf(out, "error bad queue id\n");
		return NULL;
	}
	return id;
}

static void
control_result(struct evbuffer *out, int rc, const char *what,
    const char *event, const char *id)
{
	if (rc != 0) {
		evbuffer_add_printf(out, "error %s\n", errno == ENOENT ?
		    "no such message" : strerror(errno));
		return;
	}
	if (event)
		log_event(LOG_LVL_INFO, event, "qid", id, "by", "control",
		    NULL);
	evbuffer_add_printf(out, "ok %s\n", what);
}

static void
control_handle(struct server *srv, char *line, struct evbuffer *out)
{
	const char *id;

	if (strcmp(line, "stats") == 0) {
		struct scheduler_stats st;

		scheduler_stats(srv->sched, &st);
		evbuffer_add_printf(out, "ok sessions=%zu queued=%zu "
		    "accepted=%llu inflight=%zu connections=%zu "
		    "delivered=%llu deferred=%llu bounced=%llu dsns=%llu\n",
		    srv->nsessions, spool_count(srv->spool), srv->accepted,
		    st.inflight, st.connections,
		    (unsigned long long)st.delivered,
		    (unsigned long long)st.deferred,
		    (unsigned long long)st.bounced,
		    (unsigned long long)st.dsns);
	} else if (strncmp(line, "delete ", 7) == 0) {
		if ((id = control_id(line, 7, out)) != NULL)
			control_result(out, scheduler_delete(srv->sched, id),
			    "deleted", "queue.deleted", id);
	} else if (strncmp(line, "hold ", 5) == 0) {
		if ((id = control_id(line, 5, out)) != NULL)
			control_result(out, scheduler_hold(srv->sched, id,
			    true), "held", "queue.held", id);
	} else if (strncmp(line, "release ", 8) == 0) {
		if ((id = control_id(line, 8, out)) != NULL)
			control_result(out, scheduler_hold(srv->sched, id,
			    false), "released", "queue.released", id);
	} else if (strncmp(line, "flush ", 6) == 0) {
		if ((id = control_id(line, 6, out)) != NULL)
			control_result(out, scheduler_flush(srv->sched, id),
			    "flushed", NULL, id);
	} else if (strcmp(line, "flush") == 0) {
		control_result(out, scheduler_flush(srv->sched, NULL),
		    "flush requested", NULL, NULL);
	} else
		evbuffer_add_printf(out, "error unknown request\n");
}

static void
control_read_cb(struct bufferevent *bev, void *arg)
{
	struct server *srv = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
	if (line == NULL) {
		if (evbuffer_get_length(in) > CONTROL_LINE_MAX)
			bufferevent_free(bev);
		return;
	}
	control_handle(srv, line, bufferevent_get_output(bev));
	free(line);
	bufferevent_disable(bev, EV_READ);
	/* only now: with an empty output the write callback (which frees)
	 * would fire at once */
	bufferevent_enable(bev, EV_WRITE);
}

static void
control_write_cb(struct bufferevent *bev, void *arg)
{
	bufferevent_free(bev);		/* one request per connection */
}

static void
control_event_cb(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		bufferevent_free(bev);
}

static void
control_accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct control *c = arg;
	struct bufferevent *bev;
	struct timeval tv = { 10, 0 };
	struct ucred cred;
	socklen_t clen = sizeof(cred);

	/* the socket is 0600 already; the kernel's word on the peer is the
	 * second lock (a permissive umask, a copied directory) */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 ||
	    (cred.uid != geteuid() && cred.uid != 0)) {
		log_event(LOG_LVL_WARN, "control.refused", "reason",
		    "peer is another user", NULL);
		close(fd);
		return;
	}
	bev = bufferevent_socket_new(c->srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		close(fd);
		return;
	}
	bufferevent_setcb(bev, control_read_cb, control_write_cb,
	    control_event_cb, c->srv);
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_setwatermark(bev, EV_READ, 0, CONTROL_LINE_MAX + 1);
	bufferevent_enable(bev, EV_READ);
}

struct control *
control_start(struct server *srv, const char *run_dir)
{
	struct control *c = xcalloc(1, sizeof(*c));
	struct sockaddr_un sun;
	mode_t old;

	c->srv = srv;
	if (control_path(run_dir, c->path, sizeof(c->path)) != 0) {
		log_warnx("control: run_dir path too long");
		goto fail;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, c->path, strlen(c->path) + 1);
	(void)unlink(c->path);	/* stale; the spool lock proves we own it */
	old = umask(0077);
	c->evl = evconnlistener_new_bind(srv->base, control_accept_cb, c,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
	    (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (c->evl == NULL) {
		log_warn("control: cannot listen on %s", c->path);
		goto fail;
	}
	return c;
fail:
	free(c);
	return NULL;
}

void
control_stop(struct control *c)
{
	if (c == NULL)
		return;
	evconnlistener_free(c->evl);
	(void)unlink(c->path);
	free(c);
}

int
control_request(const char *run_dir, const char *request, char *reply,
    size_t replylen)
{
	struct sockaddr_un sun;
	size_t got = 0;
	struct timeval tmo = { 30, 0 };
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (control_path(run_dir, sun.sun_path, sizeof(sun.sun_path)) != 0) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	/* a wedged server must not hang the CLI forever */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo)) != 0)
		goto fail;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
		goto fail;
	if (write_all(fd, request, strlen(request)) != 0 ||
	    write_all(fd, "\n", 1) != 0)
		goto fail;
	while (got + 1 < replylen) {
		ssize_t n = read(fd, reply + got, replylen - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(reply, '\n', got))
			break;
	}
	reply[got] = '\0';
	reply[strcspn(reply, "\n")] = '\0';
	close(fd);
	return got > 0 ? 0 : (errno = EPROTO, -1);
fail:
	close(fd);
	return -1;
}

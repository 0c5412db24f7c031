/*
 * smtp_server.c - the gateway process: open the spool, bind listeners,
 * accept sessions, handle signals.
 *
 * SIGTERM/SIGINT: stop accepting, tell idle sessions 421, let sessions in
 * a transaction finish (up to timeout_shutdown), wait for the spool's last
 * commit, exit 0.  Nothing acknowledged is lost, nothing half-received is
 * acknowledged.
 * SIGHUP: parse the configuration again; if it is valid, new sessions use
 * it (limits, TLS certificates, credentials, log settings).  Listener
 * addresses, spool_dir and run_dir need a restart.  A broken file keeps
 * the old configuration.
 *
 * Must never: run as an open relay because of a config it could not parse;
 * exit on SIGTERM before the spool's pending commits completed.
 */
#include "smtp/smtp_server.h"
#include "billing/billing.h"
#include "billing/meter.h"
#include "ctl/control.h"
#include "mta/scheduler.h"
#include "store/store.h"
#include "tenant/tenant.h"
#include "tenant/domain_watch.h"
#include "common/secretbox.h"
#include "queue/spool.h"
#include "table/credentials.h"
#include "tls/tls.h"
#include "common/log.h"
#include "common/util.h"
#include "common/workq.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#define IPCOUNT_BUCKETS 1024

struct ipcount {
	struct ipcount	*next;
	uint8_t		 addr[16];
	int		 family;
	unsigned long	 count;
};

const struct sockaddr *session_sockaddr(const struct session *s);

struct srv_conf *
srv_conf_ref(struct srv_conf *sc)
{
	sc->refs++;
	return sc;
}

void
srv_conf_unref(struct srv_conf *sc)
{
	if (sc == NULL || --sc->refs > 0)
		return;
	for (size_t i = 0; i < CONF_MAX_LISTENERS; i++)
		if (sc->ssl[i])
			SSL_CTX_free(sc->ssl[i]);
	if (sc->creds)
		credentials_close(sc->creds);
	conf_free(sc->conf);
	free(sc);
}

/* Build the runtime view of a parsed config: TLS contexts, credentials. */
static struct srv_conf *
srv_conf_new(struct conf *c, char *err, size_t errlen)
{
	struct srv_conf *sc = xcalloc(1, sizeof(*sc));
	char e[512];

	sc->refs = 1;
	sc->conf = c;
	if (c->credentials) {
		sc->creds = credentials_open(c->credentials, e, sizeof(e));
		if (sc->creds == NULL) {
			snprintf(err, errlen, "credentials %s: %s",
			    c->credentials, e);
			goto fail;
		}
	}
	for (size_t i = 0; i < c->nlisteners; i++) {
		struct conf_listener *l = &c->listeners[i];
		if (l->tls == LTLS_NONE)
			continue;
		sc->ssl[i] = tls_server_ctx_new(l->tls_cert, l->tls_key,
		    l->tls_min_version, e, sizeof(e));
		if (sc->ssl[i] == NULL) {
			snprintf(err, errlen, "listener %s: %s", l->name, e);
			goto fail;
		}
	}
	return sc;
fail:
	srv_conf_unref(sc);
	return NULL;
}

static bool
sockaddr_key(const struct sockaddr *sa, uint8_t out[16], int *family)
{
	memset(out, 0, 16);
	*family = sa->sa_family;
	if (sa->sa_family == AF_INET) {
		memcpy(out, &((const struct sockaddr_in *)(const void *)sa)->
		    sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		/* per /64: one IPv6 host usually has a whole /64 to pick
		 * addresses from, so counting per /128 would not limit it */
		memcpy(out, ((const struct sockaddr_in6 *)(const void *)sa)->
		    sin6_addr.s6_addr, 8);
		return true;
	}
	return false;
}

static struct ipcount **
ipcount_slot(struct server *srv, const struct sockaddr *sa, bool create)
{
	uint8_t key[16];
	int family;
	uint32_t h = 2166136261u;
	struct ipcount **pp;

	if (!sockaddr_key(sa, key, &family))
		return NULL;
	for (size_t i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	pp = &srv->ipcounts[h % IPCOUNT_BUCKETS];
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->family == family && !memcmp((*pp)->addr, key, 16))
			return pp;
	if (!create)
		return NULL;
	*pp = xcalloc(1, sizeof(**pp));
	memcpy((*pp)->addr, key, 16);
	(*pp)->family = family;
	return pp;
}

/* Shutting down: exit the loop once the last session and the last
 * delivery attempt in flight are done (or the deadline passed). */
static void
server_maybe_done(struct server *srv)
{
	if (srv->shutting_down && srv->nsessions == 0 &&
	    (scheduler_inflight(srv->sched) == 0 || srv->deadline_passed))
		event_base_loopbreak(srv->base);
}

static void
server_sched_idle(void *arg)
{
	server_maybe_done(arg);
}

void
server_session_gone(struct server *srv, struct session *s)
{
	struct ipcount **pp = ipcount_slot(srv, session_sockaddr(s), false);

	if (pp && --(*pp)->count == 0) {
		struct ipcount *dead = *pp;
		*pp = dead->next;
		free(dead);
	}
	server_maybe_done(srv);
}

static void
server_accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listener *l = arg;
	struct server *srv = l->srv;
	const struct conf *c = srv->cfg->conf;
	struct ipcount **pp;
	static const char busy[] = "421 4.3.2 Too many connections, try "
	    "again later\r\n";

	if (srv->nsessions >= c->max_sessions) {
		(void)!write(fd, busy, sizeof(busy) - 1);
		close(fd);
		log_event(LOG_LVL_WARN, "smtp.session_limit", NULL);
		return;
	}
	pp = ipcount_slot(srv, sa, true);
	if (pp && (*pp)->count >= c->max_sessions_per_ip) {
		(void)!write(fd, busy, sizeof(busy) - 1);
		close(fd);
		log_event(LOG_LVL_WARN, "smtp.ip_session_limit", NULL);
		return;
	}
	if (pp)
		(*pp)->count++;
	session_start(srv, l, fd, sa, salen);
}

static void
server_accept_error_cb(struct evconnlistener *evl, void *arg)
{
	/* EMFILE and friends: log and keep going; libevent retries */
	log_warn("accept");
}

static int
server_listen(struct server *srv, size_t i)
{
	const struct conf_listener *lc = &srv->cfg->conf->listeners[i];
	struct listener *l = &srv->listeners[i];
	struct addrinfo hints, *res = NULL;
	char host[256], port[16];
	int rc;

	if (conf_split_address(lc->address, host, sizeof(host), port,
	    sizeof(port)) != 0)
		fatalx("listener %s: bad address", lc->name);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		log_warnx("listener %s: %s: %s", lc->name, lc->address,
		    gai_strerror(rc));
		return -1;
	}
	l->srv = srv;
	l->index = i;
	l->evl = evconnlistener_new_bind(srv->base, server_accept_cb, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	    1024, res->ai_addr, (int)res->ai_addrlen);
	freeaddrinfo(res);
	if (l->evl == NULL) {
		log_warn("listener %s: cannot listen on %s", lc->name,
		    lc->address);
		return -1;
	}
	evconnlistener_set_error_cb(l->evl, server_accept_error_cb);
	log_event(LOG_LVL_INFO, "listener.ready", "name", lc->name,
	    "address", lc->address, "tls", lc->tls == LTLS_NONE ? "none" :
	    lc->tls == LTLS_STARTTLS ? "starttls" : "implicit", NULL);
	return 0;
}

static void
server_stop_listening(struct server *srv)
{
	for (size_t i = 0; i < srv->nlisteners; i++) {
		if (srv->listeners[i].evl) {
			evconnlistener_free(srv->listeners[i].evl);
			srv->listeners[i].evl = NULL;
		}
	}
}

static void
server_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	log_event(LOG_LVL_WARN, "server.shutdown_timeout", NULL);
	srv->deadline_passed = true;
	session_shutdown_all(srv, true);
	server_maybe_done(srv);
}

static void
server_shutdown(struct server *srv)
{
	const struct conf *c = srv->cfg->conf;
	struct timeval tv = { (time_t)c->timeout_shutdown, 0 };
	char n[32];

	if (srv->shutting_down)
		return;
	srv->shutting_down = true;
	/* deliveries in flight finish (their results are written, so no
	 * duplicate after the restart); nothing new starts */
	scheduler_stop(srv->sched, server_sched_idle, srv);
	snprintf(n, sizeof(n), "%zu", srv->nsessions);
	log_event(LOG_LVL_INFO, "server.shutdown", "sessions", n, NULL);
	server_stop_listening(srv);
	session_shutdown_all(srv, false);
	if (srv->nsessions == 0 && scheduler_inflight(srv->sched) == 0) {
		event_base_loopbreak(srv->base);
		return;
	}
	srv->ev_deadline = evtimer_new(srv->base, server_deadline_cb, srv);
	evtimer_add(srv->ev_deadline, &tv);
}

static void
server_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;

	if (sig == SIGHUP) {
		char err[1024];
		struct conf *c = conf_load(srv->cfg->conf->path, err,
		    sizeof(err));
		struct srv_conf *sc;

		if (c == NULL) {
			log_event(LOG_LVL_WARN, "config.reload_failed",
			    "error", err, NULL);
			return;
		}
		if (c->nlisteners != srv->nlisteners)
			goto listeners_changed;
		for (size_t i = 0; i < c->nlisteners; i++)
			if (strcmp(c->listeners[i].address,
			    srv->cfg->conf->listeners[i].address) != 0 ||
			    strcmp(c->listeners[i].name,
			    srv->cfg->conf->listeners[i].name) != 0)
				goto listeners_changed;
		/* the open spool, the control socket and the pid file stay
		 * where they are: a new place would only mislead the CLI */
		if (strcmp(c->spool_dir, srv->cfg->conf->spool_dir) != 0 ||
		    strcmp(c->run_dir, srv->cfg->conf->run_dir) != 0) {
			log_event(LOG_LVL_WARN, "config.reload_failed", "error",
			    "spool_dir or run_dir changed: restart needed",
			    NULL);
			conf_free(c);
			return;
		}
		if (srv->log_format_fixed)
			c->log_format = srv->log_format;
		if ((sc = srv_conf_new(c, err, sizeof(err))) == NULL) {
			log_event(LOG_LVL_WARN, "config.reload_failed",
			    "error", err, NULL);
			return;
		}
		if (scheduler_reconfigure(srv->sched, sc->conf, err,
		    sizeof(err)) != 0) {
			log_event(LOG_LVL_WARN, "config.reload_failed",
			    "error", err, NULL);
			srv_conf_unref(sc);
			return;
		}
		if (srv->dwatch != NULL)
			domain_watch_set_conf(srv->dwatch, sc->conf);
		srv_conf_unref(srv->cfg);
		srv->cfg = sc;
		log_set_format(c->log_format);
		log_set_level(c->log_level);
		log_event(LOG_LVL_INFO, "config.reloaded", "path", c->path,
		    NULL);
		return;
listeners_changed:
		log_event(LOG_LVL_WARN, "config.reload_failed", "error",
		    "listener names or addresses changed: restart needed",
		    NULL);
		conf_free(c);
		return;
	}
	server_shutdown(srv);
}

/* Load the tenant snapshot again if the database changed (an `ombud
 * company ...` command, another node).  A failed load keeps the old. */
static void
server_tenants_refresh(struct server *srv, bool force)
{
	uint64_t v = store_version(srv->store);
	struct tenants *t;
	char err[512], n[32];

	if (!force && v == srv->store_version)
		return;
	if ((t = tenants_load_from(srv->store, srv->tenants, err,
	    sizeof(err))) == NULL) {
		log_event(LOG_LVL_WARN, "tenants.load_failed", "error", err,
		    NULL);
		return;
	}
	srv->store_version = v;
	tenants_unref(srv->tenants);
	srv->tenants = t;
	scheduler_set_tenants(srv->sched, t);
	snprintf(n, sizeof(n), "%zu", tenants_count(t));
	log_event(LOG_LVL_INFO, "tenants.loaded", "companies", n, NULL);
}

static void
server_tenants_cb(evutil_socket_t fd, short what, void *arg)
{
	server_tenants_refresh(arg, false);
}

/* Open the tenant database; the key that encrypts its secrets is made
 * on first start (the embedded default; a cluster provisions one). */
static int
server_store_open(struct server *srv, const struct conf *c)
{
	struct timeval tv = { 1, 0 };
	char err[512];

	if (access(c->secret_key_file, F_OK) != 0 && errno == ENOENT) {
		if (secretbox_key_generate(c->secret_key_file, err,
		    sizeof(err)) != 0) {
			log_warnx("secret_key_file: %s", err);
			return -1;
		}
		log_event(LOG_LVL_INFO, "secret_key.generated", "path",
		    c->secret_key_file, NULL);
	}
	srv->store = store_open(c->store, c->secret_key_file, err,
	    sizeof(err));
	if (srv->store == NULL) {
		log_warnx("store %s: %s", c->store, err);
		return -1;
	}
	server_tenants_refresh(srv, true);
	if (srv->tenants == NULL)
		return -1;
	srv->ev_tenants = event_new(srv->base, -1, EV_PERSIST,
	    server_tenants_cb, srv);
	evtimer_add(srv->ev_tenants, &tv);
	return 0;
}

static int
server_write_pidfile(const char *run_dir)
{
	char path[4096], pid[32];
	int fd;

	snprintf(path, sizeof(path), "%s/ombud.pid", run_dir);
	snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write_all(fd, pid, strlen(pid)) != 0) {
		log_warn("%s", path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static int
mkdir_p(const char *path)
{
	char tmp[4096];

	if (!strlcpy_ok(tmp, path, sizeof(tmp)))
		return -1;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

int
server_run(const char *conf_path, const char *log_format_override)
{
	struct server srv;
	struct conf *c;
	struct spool_opts so;
	enum log_format lf;
	char err[1024];
	bool pid_written = false;
	int rc = 1;

	memset(&srv, 0, sizeof(srv));
	TAILQ_INIT(&srv.sessions);
	if ((c = conf_load(conf_path, err, sizeof(err))) == NULL) {
		log_warnx("%s", err);
		return 1;
	}
	if (log_format_override) {
		if (log_format_parse(log_format_override, &lf) != 0) {
			log_warnx("--log-format: '%s' is not text or json",
			    log_format_override);
			conf_free(c);
			return 2;
		}
		c->log_format = lf;
		srv.log_format_fixed = true;
		srv.log_format = lf;
	}
	log_init(c->log_format, c->log_level);
	/* before any thread: the process's zone is set once (billing.h) */
	if (billing_tz_init(c->billing_timezone) != 0) {
		log_warnx("billing_timezone '%s' does not load",
		    c->billing_timezone);
		conf_free(c);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	if (evthread_use_pthreads() != 0)
		fatalx("libevent without pthreads support");
	if ((srv.cfg = srv_conf_new(c, err, sizeof(err))) == NULL) {
		log_warnx("%s", err);
		return 1;
	}
	{
		/* The changelist folds the many enable/disable pairs of one
		 * loop iteration (a reply written, a read resumed) into at
		 * most one epoll_ctl per socket. */
		struct event_config *ec = event_config_new();
		event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
		srv.base = event_base_new_with_config(ec);
		event_config_free(ec);
		if (srv.base == NULL)
			fatalx("event_base_new");
	}
	srv.ipcounts = xcalloc(IPCOUNT_BUCKETS, sizeof(*srv.ipcounts));
	if (mkdir_p(c->spool_dir) != 0 || mkdir_p(c->run_dir) != 0) {
		log_warn("cannot create %s or %s", c->spool_dir, c->run_dir);
		goto out;
	}
	memset(&so, 0, sizeof(so));
	so.segment_max = c->segment_size;
	so.commit_delay_us = c->commit_delay_us;
	if ((srv.spool = spool_open(c->spool_dir, &so, srv.base)) == NULL) {
		if (errno == EWOULDBLOCK)
			log_warnx("spool %s is in use by another ombud",
			    c->spool_dir);
		goto out;
	}
	if ((srv.sched = scheduler_new(srv.base, srv.spool, c, err,
	    sizeof(err))) == NULL) {
		log_warnx("%s", err);
		goto out;
	}
	if (server_store_open(&srv, c) != 0)
		goto out;
	/* every queued message is counted before any is delivered */
	if ((srv.meter = meter_new(srv.base, c, srv.sched, err,
	    sizeof(err))) == NULL) {
		log_warnx("%s", err);
		goto out;
	}
	if (meter_recover(srv.meter, srv.spool, srv.tenants) != 0)
		goto out;
	srv.dwatch = domain_watch_new(srv.base, scheduler_dns(srv.sched),
	    srv.store, c);
	if (scheduler_rebuild(srv.sched) != 0)
		log_warn("scheduler: rebuilding from the spool");
	srv.workq = workq_new(srv.base, (int)c->auth_workers);
	srv.nlisteners = c->nlisteners;
	for (size_t i = 0; i < c->nlisteners; i++)
		if (server_listen(&srv, i) != 0)
			goto out;
	srv.control = control_start(&srv, c->run_dir);
	pid_written = server_write_pidfile(c->run_dir) == 0;
	srv.ev_term = evsignal_new(srv.base, SIGTERM, server_signal_cb, &srv);
	srv.ev_int = evsignal_new(srv.base, SIGINT, server_signal_cb, &srv);
	srv.ev_hup = evsignal_new(srv.base, SIGHUP, server_signal_cb, &srv);
	evsignal_add(srv.ev_term, NULL);
	evsignal_add(srv.ev_int, NULL);
	evsignal_add(srv.ev_hup, NULL);
	{
		char n[32];
		snprintf(n, sizeof(n), "%zu", spool_count(srv.spool));
		log_event(LOG_LVL_INFO, "server.ready", "version",
		    OMBUD_VERSION, "queued", n, NULL);
	}
	event_base_dispatch(srv.base);
	rc = 0;
out:
	server_stop_listening(&srv);
	if (srv.control)
		control_stop(srv.control);
	if (srv.workq)
		workq_free(srv.workq);
	meter_free(srv.meter);		/* enqueues: before the scheduler */
	domain_watch_free(srv.dwatch);	/* uses the scheduler's DNS */
	scheduler_free(srv.sched);	/* before the spool it uses */
	if (srv.ev_tenants)
		event_free(srv.ev_tenants);
	tenants_unref(srv.tenants);
	if (srv.store)
		store_close(srv.store);
	if (srv.spool)
		spool_close(srv.spool);	/* waits for pending commits */
	if (pid_written) {
		char pidpath[4096];
		/* not c: a reload may have replaced (and freed) it */
		snprintf(pidpath, sizeof(pidpath), "%s/ombud.pid",
		    srv.cfg->conf->run_dir);
		(void)unlink(pidpath);
	}
	if (rc == 0) {
		char n[32];
		snprintf(n, sizeof(n), "%llu", srv.accepted);
		log_event(LOG_LVL_INFO, "server.stopped", "accepted", n, NULL);
	}
	if (srv.ev_term) event_free(srv.ev_term);
	if (srv.ev_int) event_free(srv.ev_int);
	if (srv.ev_hup) event_free(srv.ev_hup);
	if (srv.ev_deadline) event_free(srv.ev_deadline);
	for (size_t i = 0; i < IPCOUNT_BUCKETS; i++)
		while (srv.ipcounts[i]) {
			struct ipcount *n = srv.ipcounts[i];
			srv.ipcounts[i] = n->next;
			free(n);
		}
	free(srv.ipcounts);
	srv_conf_unref(srv.cfg);
	if (srv.base)
		event_base_free(srv.base);
	return rc;
}

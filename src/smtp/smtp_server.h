/*
 * smtp_server.h - the submission server: listeners, the set of sessions,
 * signals (SIGTERM graceful shutdown, SIGHUP reload) and the resources
 * sessions share (spool, worker pool, credentials, TLS contexts).
 *
 * Configuration that can change on reload lives in a reference-counted
 * struct srv_conf: a session keeps the one it started with until it ends,
 * so a reload never pulls settings from under a transaction.
 */
#ifndef OMBUD_SMTP_SERVER_H
#define OMBUD_SMTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/queue.h>

#include <openssl/ssl.h>

#include "conf/conf.h"

struct event_base;
struct evconnlistener;
struct event;
struct spool;
struct workq;
struct credentials;
struct meter;
struct session;
struct scheduler;
struct store;
struct tenants;

struct srv_conf {
	int			 refs;
	struct conf		*conf;
	struct credentials	*creds;			/* NULL: no AUTH */
	SSL_CTX			*ssl[CONF_MAX_LISTENERS];/* by listener index */
};

struct listener {
	struct server		*srv;
	size_t			 index;		/* in conf->listeners */
	struct evconnlistener	*evl;
};

TAILQ_HEAD(session_list, session);

struct ipcount;

struct server {
	struct event_base	*base;
	struct srv_conf		*cfg;		/* current */
	struct spool		*spool;
	struct scheduler	*sched;		/* delivery */
	struct meter		*meter;		/* counts for the bill */
	struct store		*store;		/* tenant database */
	struct tenants		*tenants;	/* its current snapshot */
	struct domain_watch	*dwatch;	/* periodic domain checks */
	uint64_t		 store_version;
	struct event		*ev_tenants;	/* refresh check */
	struct workq		*workq;
	size_t			 nlisteners;
	struct listener		 listeners[CONF_MAX_LISTENERS];
	struct session_list	 sessions;
	size_t			 nsessions;
	struct ipcount		**ipcounts;	/* hash buckets */
	bool			 shutting_down;
	bool			 deadline_passed; /* timeout_shutdown */
	struct event		*ev_term, *ev_int, *ev_hup, *ev_deadline;
	struct control		*control;
	unsigned long long	 accepted;	/* messages, for stats */
	bool			 log_format_fixed; /* --log-format: beats
						      the file, on reload
						      too */
	enum log_format		 log_format;
};

/* Runs the gateway until SIGTERM/SIGINT.  0 on clean exit. */
int server_run(const char *conf_path, const char *log_format_override);

struct srv_conf *srv_conf_ref(struct srv_conf *sc);
void srv_conf_unref(struct srv_conf *sc);

/* Session lifecycle hooks used by smtp_session.c. */
void server_session_gone(struct server *srv, struct session *s);

/* smtp_session.c */
void session_start(struct server *srv, struct listener *l, int fd,
    const struct sockaddr *sa, int salen);
/* Graceful shutdown: idle sessions are told 421 and closed now, busy ones
 * after their transaction (force: close everything now). */
void session_shutdown_all(struct server *srv, bool force);

#endif

/*
 * test_mta_client.c - the delivery client against real peers on
 * 127.0.0.1 (never any other address): Postfix's smtp-sink and its fault
 * modes, ombud's own server (STARTTLS, implicit TLS, AUTH, and what it
 * stored, read back with `ombud queue show --json`), and peer.py for what
 * neither can play (XOAUTH2, LOGIN only, strict pipelining, hostile
 * replies, a 421 while idle, a refusal in the middle of the content).
 *
 * Every test has its own directory and its own peers, stopped at its end;
 * every wait is bounded.  Environment (meson sets it): OMBUD_BIN, MTA_PEER
 * (peer.py), SMTP_SINK (default /usr/sbin/smtp-sink).  Tests needing a
 * missing program are skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "common/log.h"
#include "common/util.h"
#include "mta/mta_client.h"
#include "queue/envelope.h"
#include "tls/tls.h"

#define PYTHON		"/usr/bin/python3"
#define MAXRCPT		8

static char root[] = "/tmp/ombud-test-mta-XXXXXX";
static char cert_pem[256], key_pem[256], passwd_line[512];
static const char *ombud_bin, *peer_py, *sink_bin;
static int seq;
static struct event_base *base;
static SSL_CTX *ctx_default;	/* system CA paths */
static SSL_CTX *ctx_ca;		/* trusts the test certificate */
static pid_t kids[64];		/* peers still running: a failed test's
				   are stopped by its teardown */

/* --- processes ----------------------------------------------------------- */

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool
executable(const char *path)
{
	return path != NULL && access(path, X_OK) == 0;
}

/* fork+exec; stdout and stderr to log (or /dev/null); keep_fd -> fd 3. */
static pid_t
spawn(char *const argv[], const char *log, int keep_fd)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log ? log : "/dev/null",
		    O_WRONLY | O_CREAT | O_APPEND, 0600);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (keep_fd >= 0) {
			if (keep_fd != 3) {
				dup2(keep_fd, 3);
				close(keep_fd);
			}
		}
		execv(argv[0], argv);
		_exit(127);
	}
	for (size_t i = 0; i < nitems(kids); i++)
		if (kids[i] == 0) {
			kids[i] = pid;
			break;
		}
	return pid;
}

static void
forget(pid_t pid)
{
	for (size_t i = 0; i < nitems(kids); i++)
		if (kids[i] == pid)
			kids[i] = 0;
}

static void
stop(pid_t pid)
{
	int64_t deadline = now_ms() + 5000;
	int status;

	if (pid <= 0)
		return;
	forget(pid);
	kill(pid, SIGTERM);
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return;
		}
		usleep(10000);
	}
}

/* Wait for pid to exit by itself (bounded). */
static void
reap(pid_t pid, int ms)
{
	int64_t deadline = now_ms() + ms;
	int status;

	if (pid <= 0)
		return;
	forget(pid);
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (now_ms() > deadline) {
			stop(pid);
			return;
		}
		usleep(10000);
	}
}

/* Run argv with input on stdin; stdout into out.  Exit status. */
static int
run(char *const argv[], const char *input, struct buf *out)
{
	int in[2], outp[2], status;
	int64_t deadline = now_ms() + 30000;
	pid_t pid;

	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(outp), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);

		dup2(in[0], 0);
		dup2(outp[1], 1);
		if (devnull >= 0)
			dup2(devnull, 2);
		close(in[1]);
		close(outp[0]);
		execv(argv[0], argv);
		_exit(127);
	}
	close(in[0]);
	close(outp[1]);
	if (input != NULL)
		assert_int_equal(write_all(in[1], input, strlen(input)), 0);
	close(in[1]);
	for (;;) {
		struct pollfd pfd = { outp[0], POLLIN, 0 };
		char chunk[4096];
		ssize_t n;

		assert_true(now_ms() < deadline);
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		if ((n = read(outp[0], chunk, sizeof(chunk))) <= 0)
			break;
		if (out != NULL)
			buf_add(out, chunk, (size_t)n);
	}
	close(outp[0]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int
free_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* A listening socket on 127.0.0.1 (port into *port). */
static int
listener(int backlog, int *port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, backlog), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static int
connect_to(int port)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void
read_file(const char *path, struct buf *b)
{
	char chunk[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		buf_add(b, chunk, (size_t)n);
	close(fd);
}

/* Wait for pid (0: none) to listen on port; its log says why not. */
static void
wait_listen(int port, pid_t pid, const char *log)
{
	int64_t deadline = now_ms() + 15000;
	int fd, status;

	while ((fd = connect_to(port)) < 0) {
		if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid) {
			struct buf b;

			forget(pid);
			buf_init(&b);
			read_file(log, &b);
			fail_msg("%s exited: %.500s", log,
			    b.data ? b.data : "");
		}
		assert_true(now_ms() < deadline);
		usleep(20000);
	}
	close(fd);
}

static void
test_dir(char *out, size_t outlen)
{
	snprintf(out, outlen, "%s/t%02d", root, ++seq);
	assert_int_equal(mkdir(out, 0700), 0);
}


static void
write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, text, strlen(text)), 0);
	close(fd);
}

/* --- peers --------------------------------------------------------------- */

struct peer {
	pid_t	pid;
	int	port;
	char	dir[256];
	char	file[300];	/* sink: dump prefix; peer.py: transcript */
};

/* smtp-sink with extra options (NULL-terminated), dumping messages. */
static void
sink_start(struct peer *p, const char *const *opts)
{
	char *argv[32], addr[64], log[300];
	size_t n = 0;

	test_dir(p->dir, sizeof(p->dir));
	snprintf(p->file, sizeof(p->file), "%s/m.", p->dir);
	snprintf(log, sizeof(log), "%s/sink.log", p->dir);
	p->port = free_port();
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", p->port);
	argv[n++] = (char *)sink_bin;
	argv[n++] = "-v";	/* the commands go to sink.log */
	if (geteuid() == 0) {
		argv[n++] = "-u";
		argv[n++] = "root";
	}
	for (; opts && *opts && n < 24; opts++)
		argv[n++] = (char *)*opts;
	argv[n++] = "-d";
	argv[n++] = p->file;
	argv[n++] = addr;
	argv[n++] = "10";
	argv[n] = NULL;
	p->pid = spawn(argv, log, -1);
	wait_listen(p->port, p->pid, log);
}

/* The messages smtp-sink stored, concatenated; their number. */
static size_t
sink_dumps(const struct peer *p, struct buf *all)
{
	DIR *d = opendir(p->dir);
	struct dirent *de;
	size_t n = 0;
	char path[600];

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "m.", 2) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", p->dir, de->d_name);
		if (all)
			read_file(path, all);
		n++;
	}
	closedir(d);
	return n;
}

/* Whether smtp-sink saw a command line starting with cmd. */
static bool
sink_saw(const struct peer *p, const char *cmd)
{
	char path[400], pat[64];
	struct buf log;
	bool found;

	snprintf(path, sizeof(path), "%s/sink.log", p->dir);
	snprintf(pat, sizeof(pat), "smtp-sink: %s", cmd);
	buf_init(&log);
	read_file(path, &log);
	found = strstr(log.data ? log.data : "", pat) != NULL;
	buf_free(&log);
	return found;
}

/* peer.py MODE on a socket made here. */
static void
script_start(struct peer *p, const char *mode)
{
	char *argv[8];
	int fd;

	test_dir(p->dir, sizeof(p->dir));
	snprintf(p->file, sizeof(p->file), "%s/transcript", p->dir);
	fd = listener(4, &p->port);
	argv[0] = PYTHON;
	argv[1] = (char *)peer_py;
	argv[2] = (char *)mode;
	argv[3] = "3";
	argv[4] = p->file;
	argv[5] = NULL;
	p->pid = spawn(argv, NULL, fd);
	close(fd);
}

static void
script_transcript(struct peer *p, struct buf *b)
{
	reap(p->pid, 10000);
	p->pid = 0;
	read_file(p->file, b);
}

struct gw {
	pid_t	pid;
	char	dir[256];
	char	conf[300];
	int	port_sub;	/* STARTTLS, AUTH required */
	int	port_smtps;	/* implicit TLS */
	int	port_relay;	/* clear, trusted */
};

static void
gw_start(struct gw *g, const char *extra)
{
	char text[4096], path[400], log[300];
	char *argv[6];

	test_dir(g->dir, sizeof(g->dir));
	snprintf(path, sizeof(path), "%s/passwd", g->dir);
	write_file(path, passwd_line);
	g->port_sub = free_port();
	g->port_smtps = free_port();
	g->port_relay = free_port();
	snprintf(text, sizeof(text),
	    "hostname = gw.test\n"
	    "spool_dir = %s/spool\n"
	    "run_dir = %s/run\n"
	    "credentials = file:%s\n"
	    "delivery = no\n"		/* a receiving peer: keeps what it gets */
	    "dns_servers = 127.0.0.1:9\n"
	    "store = sqlite:%s/ombud.db\n"
	    "secret_key_file = %s/secret.key\n"
	    "%s\n"
	    "[listener sub]\naddress = 127.0.0.1:%d\ntls = starttls\n"
	    "tls_cert = %s\ntls_key = %s\nauth = yes\n\n"
	    "[listener smtps]\naddress = 127.0.0.1:%d\ntls = implicit\n"
	    "tls_cert = %s\ntls_key = %s\nauth = yes\n"
	    "trusted_networks = 127.0.0.0/8\n\n"
	    "[listener relay]\naddress = 127.0.0.1:%d\ntls = none\n"
	    "auth = no\ntrusted_networks = 127.0.0.0/8\n",
	    g->dir, g->dir, path, g->dir, g->dir, extra ? extra : "",
	    g->port_sub, cert_pem,
	    key_pem, g->port_smtps, cert_pem, key_pem, g->port_relay);
	snprintf(g->conf, sizeof(g->conf), "%s/ombud.conf", g->dir);
	write_file(g->conf, text);
	snprintf(log, sizeof(log), "%s/serve.log", g->dir);
	argv[0] = (char *)ombud_bin;
	argv[1] = "serve";
	argv[2] = "-c";
	argv[3] = g->conf;
	argv[4] = NULL;
	g->pid = spawn(argv, log, -1);
	wait_listen(g->port_sub, g->pid, log);
	wait_listen(g->port_smtps, g->pid, log);
	wait_listen(g->port_relay, g->pid, log);
}

/* The stored message: its envelope's user and its content. */
static void
gw_show(struct gw *g, const char *qid, struct buf *content, char *user,
    size_t userlen)
{
	char *argv[] = { (char *)ombud_bin, "queue", "show", "-c", g->conf,
	    "--json", (char *)qid, NULL };
	struct buf out;
	json_error_t jerr;
	json_t *j, *c, *u;

	buf_init(&out);
	assert_int_equal(run(argv, NULL, &out), 0);
	j = json_loadb(out.data, out.len, 0, &jerr);
	if (j == NULL)
		fail_msg("queue show: %s: %.200s", jerr.text, out.data);
	c = json_object_get(j, "content");
	assert_true(json_is_string(c));
	buf_add(content, json_string_value(c), json_string_length(c));
	if (user != NULL) {
		u = json_object_get(j, "user");
		assert_true(json_is_string(u));
		assert_true(strlcpy_ok(user, json_string_value(u), userlen));
	}
	json_decref(j);
	buf_free(&out);
}

/* "250 2.0.0 Ok: queued as QID" -> QID */
static void
qid_of(const struct smtp_reply *r, char qid[QUEUE_ID_LEN + 1])
{
	const char *p = strstr(r->text, "queued as ");

	assert_non_null(p);
	assert_true(strlcpy_ok(qid, p + 10, QUEUE_ID_LEN + 1));
	assert_int_equal(strlen(qid), QUEUE_ID_LEN);
}

/* --- the client under test ----------------------------------------------- */

enum action {
	ACT_NONE = 0,
	ACT_ABORT,	/* mta_abort from inside the callback */
	ACT_QUIT,	/* mta_quit from inside the callback */
	ACT_SEND,	/* mta_send the same tx again from inside sent_cb */
};

struct cb {
	int			 nready, nsent;
	struct mta_conn		*c;
	struct mta_result	 ready;
	struct mta_result	 tx;
	size_t			 nrcpt;
	struct smtp_reply	 rcpt[MAXRCPT];
	bool			 lost[MAXRCPT];
	enum action		 on_ready, on_sent;
	const struct mta_tx	*again;		/* ACT_SEND */
	const char		*bad;		/* a check failed in a
						   callback (checked after:
						   no longjmp out of libevent) */
};

static void
on_ready(void *arg, struct mta_conn *c, const struct mta_result *r)
{
	struct cb *cb = arg;

	cb->nready++;
	event_base_loopbreak(base);
	cb->c = c;
	cb->ready = *r;
	if (r->ok != (c != NULL))
		cb->bad = "ready_cb: c is NULL exactly when !ok";
	if (c != NULL && cb->on_ready == ACT_ABORT) {
		mta_abort(c);
		cb->c = NULL;
	} else if (c != NULL && cb->on_ready == ACT_QUIT) {
		mta_quit(c);
		cb->c = NULL;
	}
}

static void
on_sent(void *arg, struct mta_conn *c, const struct mta_tx_result *r)
{
	struct cb *cb = arg;

	cb->nsent++;
	event_base_loopbreak(base);
	cb->tx = r->tx;
	cb->nrcpt = r->nrcpt;
	if (r->nrcpt > MAXRCPT) {
		cb->bad = "sent_cb: too many recipients";
		return;
	}
	for (size_t i = 0; i < r->nrcpt; i++) {
		cb->rcpt[i] = r->rcpt[i];
		cb->lost[i] = r->rcpt_lost[i];
	}
	if (r->tx.conn_lost) {
		cb->c = NULL;	/* freed after we return */
		return;
	}
	switch (cb->on_sent) {
	case ACT_ABORT:
		mta_abort(c);
		cb->c = NULL;
		break;
	case ACT_QUIT:
		mta_quit(c);
		cb->c = NULL;
		break;
	case ACT_SEND:
		cb->on_sent = ACT_NONE;
		if (mta_send(c, cb->again, on_sent, cb) != 0)
			cb->bad = "mta_send from inside sent_cb";
		break;
	default:
		break;
	}
}

static void
spin_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(base);
}

/* Run the loop for up to ms milliseconds (less if a callback ran). */
static void
spin(int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	struct event *ev = evtimer_new(base, spin_cb, NULL);

	assert_non_null(ev);
	evtimer_add(ev, &tv);
	event_base_dispatch(base);
	event_free(ev);
}

static void
wait_for(const int *counter, int want, int seconds)
{
	int64_t deadline = now_ms() + seconds * 1000;

	while (*counter < want) {
		if (now_ms() > deadline)
			fail_msg("timed out waiting for a callback");
		spin(50);
	}
}

static void
cb_wait(struct cb *cb, const int *counter, int want, int seconds)
{
	wait_for(counter, want, seconds);
	if (cb->bad != NULL)
		fail_msg("%s", cb->bad);
}

/* Run until no connection is left (all freed), bounded. */
static void
settle(void)
{
	int64_t deadline = now_ms() + 15000;

	while (event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED |
	    EVENT_BASE_COUNT_ACTIVE) > 0) {
		if (now_ms() > deadline)
			fail_msg("connections still alive");
		spin(20);
	}
}

static void
params(struct mta_conn_params *p, int port, enum mta_tls tls, SSL_CTX *ctx)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&p->addr;

	memset(p, 0, sizeof(*p));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin->sin_port = htons((uint16_t)port);
	p->addrlen = sizeof(*sin);
	p->host = "localhost";
	p->helo = "client.test";
	p->tls = tls;
	p->ssl_ctx = ctx;
	p->timeout_connect = 5;
	p->timeout_command = 10;
	p->timeout_data = 20;
}

static struct mta_conn *
connect_ok(struct cb *cb, const struct mta_conn_params *p)
{
	memset(cb, 0, sizeof(*cb));
	mta_connect(base, p, on_ready, cb);
	cb_wait(cb, &cb->nready, 1, 20);
	if (!cb->ready.ok)
		fail_msg("connect failed at stage %d: %d %s / %s",
		    cb->ready.stage, cb->ready.reply.code, cb->ready.reply.text,
		    cb->ready.error);
	return cb->c;
}

static void
connect_fails(struct cb *cb, const struct mta_conn_params *p,
    enum mta_stage stage, bool lost)
{
	memset(cb, 0, sizeof(*cb));
	mta_connect(base, p, on_ready, cb);
	cb_wait(cb, &cb->nready, 1, 20);
	assert_false(cb->ready.ok);
	if (cb->ready.stage != stage || cb->ready.conn_lost != lost)
		fail_msg("want stage %d lost %d, got stage %d lost %d: "
		    "%d %s / %s", stage, lost, cb->ready.stage,
		    cb->ready.conn_lost, cb->ready.reply.code,
		    cb->ready.reply.text, cb->ready.error);
}

static void
env_make(struct envelope *e, const char *from, const char *const *rcpts)
{
	envelope_init(e);
	assert_true(strlcpy_ok(e->id, "0123456789abcdef0123", sizeof(e->id)));
	assert_true(strlcpy_ok(e->mail_from, from, sizeof(e->mail_from)));
	for (; *rcpts; rcpts++) {
		struct env_rcpt *r = envelope_add_rcpt(e);

		assert_true(strlcpy_ok(r->addr, *rcpts, sizeof(r->addr)));
	}
}

static const char msg_small[] = "From: <a@example.com>\r\nTo: "
    "<b@example.org>\r\nSubject: test\r\n\r\nHello.\r\n";

static size_t idx_all[MAXRCPT] = { 0, 1, 2, 3, 4, 5, 6, 7 };

static void
tx_make(struct mta_tx *tx, const struct envelope *e, const char *content,
    size_t len)
{
	tx->env = e;
	tx->rcpt_idx = idx_all;
	tx->nrcpt = e->nrcpt;
	tx->content = content;
	tx->content_len = len;
}

/* One transaction; waits for sent_cb. */
static void
deliver(struct cb *cb, const struct envelope *e, const char *content,
    size_t len)
{
	struct mta_tx tx;
	int before = cb->nsent;

	tx_make(&tx, e, content, len);
	assert_int_equal(mta_send(cb->c, &tx, on_sent, cb), 0);
	cb_wait(cb, &cb->nsent, before + 1, 60);
}

static void
assert_tx(const struct cb *cb, bool ok, enum mta_stage stage, int cls,
    bool lost)
{
	if (cb->tx.ok != ok || (!ok && cb->tx.stage != stage) ||
	    (cls && smtp_reply_class(&cb->tx.reply) != cls) ||
	    cb->tx.conn_lost != lost)
		fail_msg("want ok %d stage %d class %d lost %d; got ok %d "
		    "stage %d reply '%d %s %s' lost %d error '%s'", ok, stage,
		    cls, lost, cb->tx.ok, cb->tx.stage, cb->tx.reply.code,
		    cb->tx.reply.enhanced, cb->tx.reply.text,
		    cb->tx.conn_lost, cb->tx.error);
}

/* The small message, delivered (ok) or refused with nothing to check. */
static void
deliver_small(struct cb *cb, const struct envelope *e, bool ok)
{
	deliver(cb, e, msg_small, sizeof(msg_small) - 1);
	if (ok)
		assert_tx(cb, true, 0, 2, false);
}

static void
quit(struct cb *cb)
{
	if (cb->c != NULL)
		mta_quit(cb->c);
	cb->c = NULL;
	settle();
}

/* QUIT, stop the sink, and check how many messages it stored (into
 * dump, initialised here, when not NULL). */
static void
sink_finish(struct cb *cb, struct peer *sink, size_t want, struct buf *dump)
{
	quit(cb);
	stop(sink->pid);
	if (dump != NULL)
		buf_init(dump);
	assert_int_equal(sink_dumps(sink, dump), want);
}

/* A program a test needs; false (the test is skipped) if missing. */
static bool
have(bool ok, const char *what)
{
	if (!ok)
		print_message("%s missing: skipped\n", what);
	return ok;
}

static bool
have_python(void)
{
	return have(executable(PYTHON) && peer_py != NULL,
	    "python3 or MTA_PEER");
}

/* --- tests: the client context ------------------------------------------ */

static void
test_tls_client_ctx(void **state)
{
	char err[256], path[300];
	SSL_CTX *ctx;

	snprintf(path, sizeof(path), "%s/missing.pem", root);
	err[0] = '\0';
	assert_null(tls_client_ctx_new(path, err, sizeof(err)));
	assert_non_null(strstr(err, path));
	/* a file that is no certificate */
	snprintf(path, sizeof(path), "%s/garbage.pem", root);
	write_file(path, "not a certificate\n");
	assert_null(tls_client_ctx_new(path, err, sizeof(err)));
	assert_non_null(strstr(err, path));

	ctx = tls_client_ctx_new(cert_pem, err, sizeof(err));
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_COMPRESSION);
	SSL_CTX_free(ctx);
}

/* --- tests: smtp-sink ---------------------------------------------------- */


static void
test_sink_plain(void **state)
{
	const char *rcpts[] = { "b@example.org", "c@example.org", NULL };
	struct mta_conn_params p;
	struct envelope e;
	struct peer sink;
	struct buf dump;
	struct cb cb;

	if (!have(executable(sink_bin), "smtp-sink"))
		skip();
	sink_start(&sink, NULL);
	params(&p, sink.port, MTA_TLS_NONE, NULL);
	connect_ok(&cb, &p);
	assert_true(mta_ehlo(cb.c)->ext & EHLO_PIPELINING);
	assert_string_equal(mta_tls_version(cb.c), "");
	env_make(&e, "a@example.com", rcpts);
	e.body = SMTP_BODY_8BITMIME;
	e.ret = SMTP_RET_HDRS;
	assert_true(strlcpy_ok(e.envid, "env+2D1", sizeof(e.envid)));
	e.rcpt[0].notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE;
	assert_true(strlcpy_ok(e.rcpt[0].orcpt, "rfc822;b@example.org",
	    sizeof(e.rcpt[0].orcpt)));
	e.rcpt[1].notify = SMTP_NOTIFY_NEVER;
	deliver_small(&cb, &e, true);
	assert_int_equal(cb.tx.reply.code, 250);
	assert_int_equal(cb.nrcpt, 2);
	for (size_t i = 0; i < 2; i++) {
		assert_false(cb.lost[i]);
		assert_int_equal(cb.rcpt[i].code, 250);
	}
	assert_int_equal(mta_messages_sent(cb.c), 1);
	sink_finish(&cb, &sink, 1, &dump);
	/* (smtp-sink offers no SIZE: peer.py checks that one) */
	assert_non_null(strstr(dump.data, "X-Mail-Args: <a@example.com> "
	    "BODY=8BITMIME RET=HDRS ENVID=env+2D1\n"));
	assert_non_null(strstr(dump.data, "X-Rcpt-Args: <b@example.org> "
	    "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org\n"));
	assert_non_null(strstr(dump.data, "X-Rcpt-Args: <c@example.org> "
	    "NOTIFY=NEVER\n"));
	assert_non_null(strstr(dump.data, "Subject: test\n\nHello.\n"));
	buf_free(&dump);
	envelope_free(&e);
}

/* Several messages on one connection, with and without PIPELINING; the
 * second message is sent from inside sent_cb. */
static void
test_sink_several(void **state)
{
	const char *rcpts[] = { "b@example.org", NULL };
	const char *nopipe[] = { "-p", NULL };
	struct mta_conn_params p;
	struct envelope e;
	struct mta_tx again;
	struct peer sink;
	struct cb cb;

	if (!have(executable(sink_bin), "smtp-sink"))
		skip();
	env_make(&e, "a@example.com", rcpts);
	for (int run_ = 0; run_ < 2; run_++) {
		sink_start(&sink, run_ ? nopipe : NULL);
		params(&p, sink.port, MTA_TLS_NONE, NULL);
		connect_ok(&cb, &p);
		assert_int_equal(!!(mta_ehlo(cb.c)->ext & EHLO_PIPELINING),
		    run_ == 0);
		tx_make(&again, &e, msg_small, sizeof(msg_small) - 1);
		cb.on_sent = ACT_SEND;
		cb.again = &again;
		deliver_small(&cb, &e, false);
		cb_wait(&cb, &cb.nsent, 2, 20);
		assert_tx(&cb, true, 0, 2, false);
		deliver_small(&cb, &e, true);
		assert_int_equal(mta_messages_sent(cb.c), 3);
		sink_finish(&cb, &sink, 3, NULL);
	}
	envelope_free(&e);
}

/*
 * Faults at every stage, replies and disconnects.  With a reply, every
 * recipient has a reply of that class; without, none has a final reply.
 */
static void
test_sink_faults(void **state)
{
	static const struct {
		const char	*opts[5];
		bool		 ready;		/* connect succeeds */
		enum mta_stage	 stage;
		int		 cls;		/* 0: no reply */
		bool		 lost;
	} t[] = {
		{ { "-f", "CONNECT" }, false, MTA_STAGE_GREETING, 5, false },
		{ { "-r", "CONNECT" }, false, MTA_STAGE_GREETING, 4, false },
		{ { "-q", "CONNECT" }, false, MTA_STAGE_GREETING, 0, true },
		{ { "-q", "EHLO" }, false, MTA_STAGE_EHLO, 0, true },
		{ { "-r", "EHLO" }, false, MTA_STAGE_EHLO, 4, false },
		{ { "-r", "MAIL" }, true, MTA_STAGE_MAIL, 4, false },
		{ { "-f", "MAIL" }, true, MTA_STAGE_MAIL, 5, false },
		{ { "-r", "RCPT" }, true, MTA_STAGE_RCPT, 4, false },
		{ { "-f", "RCPT" }, true, MTA_STAGE_RCPT, 5, false },
		{ { "-f", "DATA" }, true, MTA_STAGE_DATA, 5, false },
		{ { "-r", "." }, true, MTA_STAGE_DOT, 4, false },
		{ { "-f", "." }, true, MTA_STAGE_DOT, 5, false },
		{ { "-q", "MAIL" }, true, MTA_STAGE_MAIL, 0, true },
		{ { "-q", "RCPT" }, true, MTA_STAGE_RCPT, 0, true },
		{ { "-q", "DATA" }, true, MTA_STAGE_DATA, 0, true },
		{ { "-q", "." }, true, MTA_STAGE_DOT, 0, true },
		{ { "-Q", "MAIL" }, true, MTA_STAGE_MAIL, 4, true },
		{ { "-Q", "RCPT" }, true, MTA_STAGE_RCPT, 4, true },
		{ { "-Q", "." }, true, MTA_STAGE_DOT, 4, true },
		/* refused RCPTs, then the RSET: the connection goes, the
		 * recipients keep their replies */
		{ { "-f", "RCPT,RSET" }, true, MTA_STAGE_RCPT, 5, true },
		{ { "-f", "RCPT", "-q", "RSET" }, true, MTA_STAGE_RCPT, 5,
		    true },
	};
	const char *rcpts[] = { "b@example.org", "c@example.org", NULL };
	struct mta_conn_params p;
	struct envelope e;
	struct peer sink;
	struct cb cb;

	if (!have(executable(sink_bin), "smtp-sink"))
		skip();
	env_make(&e, "a@example.com", rcpts);
	for (size_t i = 0; i < nitems(t); i++) {
		print_message("  smtp-sink %s %s %s %s\n", t[i].opts[0],
		    t[i].opts[1], t[i].opts[2] ? t[i].opts[2] : "",
		    t[i].opts[3] ? t[i].opts[3] : "");
		sink_start(&sink, t[i].opts);
		params(&p, sink.port, MTA_TLS_NONE, NULL);
		if (!t[i].ready) {
			connect_fails(&cb, &p, t[i].stage, t[i].lost);
			if (t[i].cls)
				assert_int_equal(
				    smtp_reply_class(&cb.ready.reply),
				    t[i].cls);
			else
				assert_int_equal(cb.ready.reply.code, 0);
			settle();
			stop(sink.pid);
			continue;
		}
		connect_ok(&cb, &p);
		deliver_small(&cb, &e, false);
		assert_tx(&cb, false, t[i].stage, t[i].cls, t[i].lost);
		for (size_t r = 0; r < 2; r++) {
			assert_int_equal(cb.lost[r], t[i].cls == 0);
			if (t[i].cls)
				assert_int_equal(smtp_reply_class(
				    &cb.rcpt[r]), t[i].cls);
		}
		if (!t[i].lost) {
			/* RSET went out; the connection is idle again */
			assert_non_null(cb.c);
			deliver_small(&cb, &e, false);
			assert_tx(&cb, false, t[i].stage, t[i].cls, false);
			quit(&cb);
		} else {
			assert_null(cb.c);
			settle();
		}
		stop(sink.pid);
		if (t[i].stage != MTA_STAGE_DOT)
			assert_int_equal(sink_dumps(&sink, NULL), 0);
		/* no RCPT after a refused MAIL, no DATA without a
		 * recipient (-r and -f turn PIPELINING off) */
		if (t[i].opts[0][1] != 'q' && t[i].opts[0][1] != 'Q') {
			if (t[i].stage == MTA_STAGE_MAIL)
				assert_false(sink_saw(&sink, "RCPT"));
			if (t[i].stage <= MTA_STAGE_RCPT)
				assert_false(sink_saw(&sink, "DATA"));
			if (!t[i].lost)
				assert_true(sink_saw(&sink, "RSET"));
		}
	}
	envelope_free(&e);
}

/* EHLO refused: HELO, no extensions, no MAIL parameters. */
static void
test_sink_helo(void **state)
{
	const char *opts[] = { "-f", "EHLO", NULL };
	const char *rcpts[] = { "b@example.org", NULL };
	struct mta_conn_params p;
	struct envelope e;
	struct peer sink;
	struct buf dump;
	struct cb cb;

	if (!have(executable(sink_bin), "smtp-sink"))
		skip();
	sink_start(&sink, opts);
	params(&p, sink.port, MTA_TLS_OPPORTUNISTIC, ctx_default);
	connect_ok(&cb, &p);
	assert_int_equal(mta_ehlo(cb.c)->ext, 0);
	env_make(&e, "a@example.com", rcpts);
	e.body = SMTP_BODY_8BITMIME;
	e.rcpt[0].notify = SMTP_NOTIFY_NEVER;
	deliver_small(&cb, &e, true);
	sink_finish(&cb, &sink, 1, &dump);
	assert_non_null(strstr(dump.data, "X-Client-Proto: SMTP\n"));
	assert_non_null(strstr(dump.data, "X-Mail-Args: <a@example.com>\n"));
	assert_non_null(strstr(dump.data, "X-Rcpt-Args: <b@example.org>\n"));
	buf_free(&dump);
	envelope_free(&e);
}

/* smtp-sink offers no STARTTLS (and AUTH in the clear). */
static void
test_sink_tls_policy(void **state)
{
	const char *rcpts[] = { "b@example.org", NULL };
	struct mta_conn_params p;
	struct envelope e;
	struct peer sink;
	struct cb cb;

	if (!have(executable(sink_bin), "smtp-sink"))
		skip();
	sink_start(&sink, NULL);
	params(&p, sink.port, MTA_TLS_REQUIRED, ctx_default);
	connect_fails(&cb, &p, MTA_STAGE_STARTTLS, false);
	assert_int_equal(cb.ready.reply.code, 454);
	assert_string_equal(cb.ready.reply.enhanced, "4.7.4");
	params(&p, sink.port, MTA_TLS_VERIFY, ctx_ca);
	connect_fails(&cb, &p, MTA_STAGE_STARTTLS, false);

	/* opportunistic: clear, but no credentials in the clear */
	params(&p, sink.port, MTA_TLS_OPPORTUNISTIC, ctx_default);
	p.auth_user = "alice";
	p.auth_pass = "secret";
	connect_fails(&cb, &p, MTA_STAGE_AUTH, false);
	assert_int_equal(cb.ready.reply.code, 454);
	p.auth_user = NULL;
	connect_ok(&cb, &p);
	assert_string_equal(mta_tls_version(cb.c), "");
	env_make(&e, "a@example.com", rcpts);
	deliver_small(&cb, &e, true);

	/* SMTPUTF8 needed, not offered: refused here, nothing sent, the
	 * connection stays usable */
	e.smtputf8 = true;
	deliver_small(&cb, &e, false);
	assert_tx(&cb, false, MTA_STAGE_MAIL, 5, false);
	assert_string_equal(cb.tx.reply.enhanced, "5.6.7");
	assert_false(cb.lost[0]);
	assert_string_equal(cb.rcpt[0].enhanced, "5.6.7");
	e.smtputf8 = false;
	deliver_small(&cb, &e, true);
	quit(&cb);

	/* tls = none: AUTH in the clear is what the route asked for */
	params(&p, sink.port, MTA_TLS_NONE, NULL);
	p.auth_user = "alice";
	p.auth_pass = "secret";
	connect_ok(&cb, &p);
	sink_finish(&cb, &sink, 2, NULL);
	envelope_free(&e);
}

/* A 16 MB message queued in chunks while the output drains. */
static void
test_sink_big(void **state)
{
	const char *rcpts[] = { "b@example.org", NULL };
	size_t len = 16u << 20, got = 0;
	struct mta_conn_params p;
	struct envelope e;
	struct peer sink;
	struct buf dump;
	struct cb cb;
	char *big;

	if (!have(executable(sink_bin), "smtp-sink"))
		skip();
	big = xmalloc(len);
	for (size_t i = 0; i < len; i += 64) {
		memset(big + i, 'a' + (int)(i / 64 % 26), 62);
		memcpy(big + i + 62, "\r\n", 2);
	}
	sink_start(&sink, NULL);
	params(&p, sink.port, MTA_TLS_NONE, NULL);
	connect_ok(&cb, &p);
	env_make(&e, "a@example.com", rcpts);
	deliver(&cb, &e, big, len);
	assert_tx(&cb, true, 0, 2, false);
	sink_finish(&cb, &sink, 1, &dump);
	/* LF line ends in the dump: 63 bytes per line */
	for (size_t i = 0; i + 1 < dump.len; i++)
		if (dump.data[i] == '\n' && dump.data[i + 1] != '\n' &&
		    dump.data[i + 1] >= 'a' && dump.data[i + 1] <= 'z')
			got++;
	assert_true(got >= len / 64 - 1);
	buf_free(&dump);
	free(big);
	envelope_free(&e);
}

/* --- tests: timeouts ----------------------------------------------------- */

static void
test_timeouts(void **state)
{
	struct mta_conn_params p;
	int fd, filler, port;
	int64_t t0;
	struct cb cb;

	/* closed port: refused at once */
	fd = listener(1, &port);
	close(fd);
	params(&p, port, MTA_TLS_NONE, NULL);
	t0 = now_ms();
	connect_fails(&cb, &p, MTA_STAGE_CONNECT, true);
	assert_true(now_ms() - t0 < 3000);
	assert_non_null(strstr(cb.ready.error, "refused"));

	/* a listener that never speaks: no greeting */
	fd = listener(4, &port);
	params(&p, port, MTA_TLS_NONE, NULL);
	p.timeout_command = 1;
	t0 = now_ms();
	connect_fails(&cb, &p, MTA_STAGE_GREETING, true);
	assert_true(now_ms() - t0 >= 900);
	assert_non_null(strstr(cb.ready.error, "timeout"));
	settle();
	close(fd);

	/* a full accept queue: SYNs are dropped, connect never ends */
	fd = listener(0, &port);
	filler = connect_to(port);
	assert_true(filler >= 0);
	params(&p, port, MTA_TLS_NONE, NULL);
	p.timeout_connect = 1;
	t0 = now_ms();
	connect_fails(&cb, &p, MTA_STAGE_CONNECT, true);
	assert_true(now_ms() - t0 >= 900);
	assert_non_null(strstr(cb.ready.error, "timeout"));
	settle();
	close(filler);
	close(fd);
}

/* mta_abort and mta_quit from anywhere. */
static void
test_abort(void **state)
{
	const char *rcpts[] = { "b@example.org", NULL };
	struct mta_conn_params p;
	struct envelope e;
	struct mta_conn *c;
	struct peer sink;
	struct cb cb;

	if (!have(executable(sink_bin), "smtp-sink"))
		skip();
	sink_start(&sink, NULL);
	params(&p, sink.port, MTA_TLS_NONE, NULL);
	env_make(&e, "a@example.com", rcpts);

	/* at once: no callback ever */
	memset(&cb, 0, sizeof(cb));
	c = mta_connect(base, &p, on_ready, &cb);
	mta_abort(c);
	spin(300);
	settle();
	assert_int_equal(cb.nready, 0);

	/* quit before ready: no callback either */
	memset(&cb, 0, sizeof(cb));
	c = mta_connect(base, &p, on_ready, &cb);
	mta_quit(c);
	settle();
	assert_int_equal(cb.nready, 0);

	/* from inside ready_cb */
	memset(&cb, 0, sizeof(cb));
	cb.on_ready = ACT_ABORT;
	mta_connect(base, &p, on_ready, &cb);
	cb_wait(&cb, &cb.nready, 1, 10);
	settle();
	memset(&cb, 0, sizeof(cb));
	cb.on_ready = ACT_QUIT;
	mta_connect(base, &p, on_ready, &cb);
	cb_wait(&cb, &cb.nready, 1, 10);
	settle();

	/* from inside sent_cb */
	connect_ok(&cb, &p);
	cb.on_sent = ACT_ABORT;
	deliver_small(&cb, &e, true);
	settle();

	stop(sink.pid);

	/* in the middle of a transaction (the sink waits before its reply
	 * to DATA) */
	{
		const char *slow[] = { "-w", "1", NULL };
		struct mta_tx tx;

		sink_start(&sink, slow);
		params(&p, sink.port, MTA_TLS_NONE, NULL);
		connect_ok(&cb, &p);
		tx_make(&tx, &e, msg_small, sizeof(msg_small) - 1);
		assert_int_equal(mta_send(cb.c, &tx, on_sent, &cb), 0);
		assert_int_equal(mta_send(cb.c, &tx, on_sent, &cb), -1);
		spin(300);
		mta_abort(cb.c);
		settle();
		assert_int_equal(cb.nsent, 0);
		stop(sink.pid);
	}
	envelope_free(&e);
}

/* --- tests: ombud as the peer -------------------------------------------- */


static void
test_ombud_tls(void **state)
{
	struct mta_conn_params p;
	struct gw g;
	struct cb cb;

	if (!have(executable(ombud_bin), "OMBUD_BIN"))
		skip();
	gw_start(&g, NULL);

	/* self-signed: not verified with the system's CAs */
	params(&p, g.port_sub, MTA_TLS_VERIFY, ctx_default);
	connect_fails(&cb, &p, MTA_STAGE_TLS, true);
	assert_non_null(strstr(cb.ready.error, "certificate"));
	/* the name must match too */
	params(&p, g.port_sub, MTA_TLS_VERIFY, ctx_ca);
	p.host = "wrong.test";
	connect_fails(&cb, &p, MTA_STAGE_TLS, true);
	/* the certificate as CA: verified */
	params(&p, g.port_sub, MTA_TLS_VERIFY, ctx_ca);
	connect_ok(&cb, &p);
	assert_string_equal(mta_tls_version(cb.c), "TLSv1.3");
	assert_true(mta_ehlo(cb.c)->ext & EHLO_AUTH);
	assert_false(mta_ehlo(cb.c)->ext & EHLO_STARTTLS);
	quit(&cb);
	/* and resumed the second time (the ticket came after the
	 * handshake) */
	connect_ok(&cb, &p);
	assert_true(mta_tls_resumed(cb.c));
	quit(&cb);

	/* required: no verification */
	params(&p, g.port_sub, MTA_TLS_REQUIRED, ctx_default);
	connect_ok(&cb, &p);
	assert_string_equal(mta_tls_version(cb.c), "TLSv1.3");
	assert_false(mta_tls_resumed(cb.c));
	quit(&cb);
	/* an unverified session never resumes a verified connection */
	params(&p, g.port_sub, MTA_TLS_VERIFY, ctx_default);
	connect_fails(&cb, &p, MTA_STAGE_TLS, true);

	/* opportunistic, offered: TLS */
	params(&p, g.port_sub, MTA_TLS_OPPORTUNISTIC, ctx_default);
	connect_ok(&cb, &p);
	assert_string_equal(mta_tls_version(cb.c), "TLSv1.3");
	quit(&cb);

	/* implicit TLS (verified) */
	params(&p, g.port_smtps, MTA_TLS_IMPLICIT, ctx_ca);
	connect_ok(&cb, &p);
	assert_string_equal(mta_tls_version(cb.c), "TLSv1.3");
	quit(&cb);
	params(&p, g.port_smtps, MTA_TLS_IMPLICIT, ctx_default);
	connect_fails(&cb, &p, MTA_STAGE_TLS, true);
	/* implicit TLS to a clear port: the handshake fails */
	params(&p, g.port_relay, MTA_TLS_IMPLICIT, ctx_ca);
	connect_fails(&cb, &p, MTA_STAGE_TLS, true);
	settle();
	stop(g.pid);
}

/* A message of about size bytes whose lines start with dots of every
 * count, so that chunk boundaries fall everywhere. */
static void
dotty_message(struct buf *b, const char *hdr, size_t size)
{
	buf_init(b);
	buf_adds(b, hdr);
	for (size_t i = 0; b->len < size; i++) {
		buf_add(b, "....................", i % 19 + 1);
		buf_adds(b, "x\r\n.\r\n");
	}
}

/* The stored content ends with hdr and then want[0..wl). */
static void
assert_stored(struct gw *g, const char *qid, const char *hdr,
    const char *want, size_t wl)
{
	struct buf content;
	size_t hl = strlen(hdr);

	buf_init(&content);
	gw_show(g, qid, &content, NULL, 0);
	/* ombud put its Received header in front */
	assert_true(content.len >= wl + hl);
	assert_memory_equal(content.data + content.len - wl - hl, hdr, hl);
	if (memcmp(content.data + content.len - wl, want, wl) != 0)
		fail_msg("%s: stored '%.60s'", qid,
		    content.data + content.len - wl);
	buf_free(&content);
}

static void
test_ombud_auth(void **state)
{
	const char *rcpts[] = { "b@example.org", NULL };
	char qid[QUEUE_ID_LEN + 1], qid_big[QUEUE_ID_LEN + 1], user[64];
	const char hdr[] = "Subject: big\r\n\r\n";
	struct mta_conn_params p;
	struct envelope e;
	struct buf content, big;
	struct gw g;
	struct cb cb;

	if (!have(executable(ombud_bin), "OMBUD_BIN"))
		skip();
	gw_start(&g, NULL);
	env_make(&e, "a@example.com", rcpts);

	params(&p, g.port_sub, MTA_TLS_REQUIRED, ctx_default);
	p.auth_user = "alice";
	p.auth_pass = "wrong";
	connect_fails(&cb, &p, MTA_STAGE_AUTH, false);
	assert_int_equal(cb.ready.reply.code, 535);

	p.auth_pass = "pw";
	connect_ok(&cb, &p);
	deliver_small(&cb, &e, true);
	qid_of(&cb.tx.reply, qid);
	/* a big one over TLS: the output drains through the TLS filter */
	dotty_message(&big, hdr, 6 * 1024 * 1024);
	deliver(&cb, &e, big.data, big.len);
	assert_tx(&cb, true, 0, 2, false);
	qid_of(&cb.tx.reply, qid_big);
	quit(&cb);

	/* without AUTH, ombud's submission listener refuses MAIL */
	params(&p, g.port_sub, MTA_TLS_REQUIRED, ctx_default);
	connect_ok(&cb, &p);
	deliver_small(&cb, &e, false);
	assert_tx(&cb, false, MTA_STAGE_MAIL, 5, false);
	assert_int_equal(cb.tx.reply.code, 530);
	quit(&cb);
	stop(g.pid);

	buf_init(&content);
	gw_show(&g, qid, &content, user, sizeof(user));
	assert_string_equal(user, "alice");
	buf_free(&content);
	assert_stored(&g, qid_big, hdr, big.data + strlen(hdr),
	    big.len - strlen(hdr));
	buf_free(&big);
	envelope_free(&e);
}

/* What the peer stored is exactly the content, dot-stuffing undone. */
static void
test_ombud_dots(void **state)
{
	static const struct {
		const char	*in, *stored;
	} t[] = {
		{ ".\r\n..\r\n.x\r\nx.\r\n...\r\n",
		    ".\r\n..\r\n.x\r\nx.\r\n...\r\n" },
		{ "a\r\n.", "a\r\n.\r\n" },
		{ "a\r\n.\r\n.", "a\r\n.\r\n.\r\n" },
		{ "no final line end", "no final line end\r\n" },
		{ "bare\nlf\n.dot\n", "bare\r\nlf\r\n.dot\r\n" },
		{ "bare\rcr\r.\r", "bare\r\ncr\r\n.\r\n" },
		{ "x\r\n.\r\n\r\n.\r\nrest\r\n",
		    "x\r\n.\r\n\r\n.\r\nrest\r\n" },
		{ "\r\n.\r\n", "\r\n.\r\n" },
	};
	const char *rcpts[] = { "b@example.org", NULL };
	struct mta_conn_params p;
	struct envelope e;
	struct buf big;
	char qid[nitems(t) + 1][QUEUE_ID_LEN + 1];
	char hdr[] = "Subject: dots\r\n\r\n";
	struct gw g;
	struct cb cb;

	if (!have(executable(ombud_bin), "OMBUD_BIN"))
		skip();
	gw_start(&g, NULL);
	env_make(&e, "a@example.com", rcpts);
	params(&p, g.port_relay, MTA_TLS_NONE, NULL);
	connect_ok(&cb, &p);
	for (size_t i = 0; i < nitems(t); i++) {
		struct buf m;

		buf_init(&m);
		buf_adds(&m, hdr);
		buf_adds(&m, t[i].in);
		deliver(&cb, &e, m.data, m.len);
		assert_tx(&cb, true, 0, 2, false);
		qid_of(&cb.tx.reply, qid[i]);
		buf_free(&m);
	}
	/* a big one: dots at every place a chunk could end */
	dotty_message(&big, hdr, 3 * 1024 * 1024);
	deliver(&cb, &e, big.data, big.len);
	assert_tx(&cb, true, 0, 2, false);
	qid_of(&cb.tx.reply, qid[nitems(t)]);
	quit(&cb);
	stop(g.pid);

	for (size_t i = 0; i < nitems(t); i++)
		assert_stored(&g, qid[i], hdr, t[i].stored,
		    strlen(t[i].stored));
	assert_stored(&g, qid[nitems(t)], hdr, big.data + strlen(hdr),
	    big.len - strlen(hdr));
	buf_free(&big);
	envelope_free(&e);
}

/* Some recipients refused, then all; the connection stays in step. */
static void
test_ombud_rcpts(void **state)
{
	const char *three[] = { "b@example.org", "c@example.org",
	    "d@example.org", NULL };
	const char *bad[] = { "b\xc3\xb6@example.org", "c\xc3\xb6@example.org",
	    NULL };
	struct mta_conn_params p;
	struct envelope e3, ebad;
	struct gw g;
	struct cb cb;
	char big[3000];

	if (!have(executable(ombud_bin), "OMBUD_BIN"))
		skip();
	gw_start(&g, "max_recipients = 2\nmax_message_size = 2048\n");
	params(&p, g.port_relay, MTA_TLS_NONE, NULL);
	connect_ok(&cb, &p);
	assert_int_equal(mta_ehlo(cb.c)->size, 2048);

	env_make(&e3, "a@example.com", three);
	deliver_small(&cb, &e3, false);
	assert_tx(&cb, true, 0, 2, false);
	assert_int_equal(cb.rcpt[0].code, 250);
	assert_int_equal(cb.rcpt[1].code, 250);
	assert_int_equal(cb.rcpt[2].code, 452);
	assert_false(cb.lost[2]);

	/* non-ASCII without SMTPUTF8: ombud refuses both RCPTs, the
	 * pipelined DATA too; RSET; then a good message */
	env_make(&ebad, "a@example.com", bad);
	deliver_small(&cb, &ebad, false);
	assert_tx(&cb, false, MTA_STAGE_RCPT, 5, false);
	assert_false(cb.lost[0] || cb.lost[1]);
	assert_int_equal(cb.rcpt[0].code, 553);
	/* with SMTPUTF8 (which ombud offers) they are fine */
	ebad.smtputf8 = true;
	deliver_small(&cb, &ebad, false);
	assert_tx(&cb, true, 0, 2, false);

	/* over the advertised SIZE: refused before sending */
	memset(big, 'x', sizeof(big));
	deliver(&cb, &e3, big, sizeof(big));
	assert_tx(&cb, false, MTA_STAGE_MAIL, 5, false);
	assert_int_equal(cb.tx.reply.code, 552);

	deliver_small(&cb, &e3, false);
	assert_tx(&cb, true, 0, 2, false);
	assert_int_equal(mta_messages_sent(cb.c), 3);
	quit(&cb);
	stop(g.pid);
	envelope_free(&e3);
	envelope_free(&ebad);
}

/* --- tests: scripted peers ----------------------------------------------- */


static void
test_peer_xoauth2(void **state)
{
	struct mta_conn_params p;
	struct peer peer;
	struct buf tr;
	struct cb cb;
	const char raw[] = "user=alice@example.com\001auth=Bearer tok-good"
	    "\001\001";
	char want[256];

	if (!have_python())
		skip();
	snprintf(want, sizeof(want), "AUTH XOAUTH2 ");
	sodium_bin2base64(want + strlen(want), sizeof(want) - strlen(want),
	    (const unsigned char *)raw, sizeof(raw) - 1,
	    sodium_base64_VARIANT_ORIGINAL);
	strcat(want, "\r\n");

	script_start(&peer, "xoauth2");
	params(&p, peer.port, MTA_TLS_NONE, NULL);
	p.auth_user = "alice@example.com";
	p.xoauth2_token = "tok-good";
	connect_ok(&cb, &p);
	quit(&cb);
	buf_init(&tr);
	script_transcript(&peer, &tr);
	assert_non_null(strstr(tr.data, want));
	assert_non_null(strstr(tr.data, "QUIT\r\n"));
	buf_free(&tr);

	/* refused: the error challenge gets an empty answer, then 535 */
	script_start(&peer, "xoauth2");
	params(&p, peer.port, MTA_TLS_NONE, NULL);
	p.auth_user = "alice@example.com";
	p.xoauth2_token = "tok-bad";
	connect_fails(&cb, &p, MTA_STAGE_AUTH, false);
	assert_int_equal(cb.ready.reply.code, 535);
	settle();
	buf_init(&tr);
	script_transcript(&peer, &tr);
	assert_non_null(strstr(tr.data, "\r\n\r\nQUIT\r\n"));
	buf_free(&tr);

	/* a token with a space or control character is never sent */
	params(&p, 9, MTA_TLS_NONE, NULL);
	p.auth_user = "alice@example.com";
	p.xoauth2_token = "tok\001x";
	connect_fails(&cb, &p, MTA_STAGE_CONNECT, false);
	settle();
}

static void
test_peer_login(void **state)
{
	struct mta_conn_params p;
	struct peer peer;
	struct buf tr;
	struct cb cb;

	if (!have_python())
		skip();
	script_start(&peer, "login");
	params(&p, peer.port, MTA_TLS_NONE, NULL);
	p.auth_user = "alice";
	p.auth_pass = "s3cret";
	connect_ok(&cb, &p);
	quit(&cb);
	buf_init(&tr);
	script_transcript(&peer, &tr);
	assert_non_null(strstr(tr.data, "AUTH LOGIN\r\nYWxpY2U=\r\n"
	    "czNjcmV0\r\n"));
	buf_free(&tr);
}

/* STARTTLS refused, or a handshake that fails, per policy. */
static void
test_peer_starttls(void **state)
{
	const char *rcpts[] = { "b@example.org", NULL };
	struct mta_conn_params p;
	struct envelope e;
	struct peer peer;
	struct cb cb;

	if (!have_python())
		skip();
	env_make(&e, "a@example.com", rcpts);
	/* 454 to STARTTLS: required fails with that reply... */
	script_start(&peer, "tls-refused");
	params(&p, peer.port, MTA_TLS_REQUIRED, ctx_default);
	connect_fails(&cb, &p, MTA_STAGE_STARTTLS, false);
	assert_int_equal(cb.ready.reply.code, 454);
	settle();
	reap(peer.pid, 5000);
	/* ...opportunistic goes on in the clear */
	script_start(&peer, "tls-refused");
	params(&p, peer.port, MTA_TLS_OPPORTUNISTIC, ctx_default);
	connect_ok(&cb, &p);
	assert_string_equal(mta_tls_version(cb.c), "");
	deliver_small(&cb, &e, true);
	quit(&cb);
	reap(peer.pid, 5000);

	/* a failed handshake loses the connection, even when
	 * opportunistic: the caller may try again without TLS */
	script_start(&peer, "tls-garbage");
	params(&p, peer.port, MTA_TLS_OPPORTUNISTIC, ctx_default);
	connect_fails(&cb, &p, MTA_STAGE_TLS, true);
	assert_non_null(strstr(cb.ready.error, "TLS"));
	settle();
	reap(peer.pid, 5000);
	script_start(&peer, "tls-garbage");
	params(&p, peer.port, MTA_TLS_NONE, NULL);
	connect_ok(&cb, &p);
	deliver_small(&cb, &e, true);
	quit(&cb);
	reap(peer.pid, 5000);
	envelope_free(&e);
}

/* The peer answers nothing before MAIL, the RCPTs and DATA are in. */
static void
test_peer_pipelining(void **state)
{
	const char *rcpts[] = { "b@example.org", "c@example.org",
	    "d@example.org", NULL };
	struct mta_conn_params p;
	struct envelope e;
	struct peer peer;
	struct buf tr;
	struct cb cb;

	if (!have_python())
		skip();
	script_start(&peer, "strict-pipe");
	params(&p, peer.port, MTA_TLS_NONE, NULL);
	connect_ok(&cb, &p);
	env_make(&e, "a@example.com", rcpts);
	deliver_small(&cb, &e, true);
	quit(&cb);
	buf_init(&tr);
	script_transcript(&peer, &tr);
	assert_non_null(strstr(tr.data, "MAIL FROM:<a@example.com> SIZE=69\r\n"
	    "RCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\n"
	    "RCPT TO:<d@example.org>\r\nDATA\r\n"));
	buf_free(&tr);
	envelope_free(&e);
}

static void
test_peer_hostile(void **state)
{
	static const struct {
		const char	*mode;
		enum mta_tls	 tls;
		enum mta_stage	 stage;
		const char	*error;
	} t[] = {
		{ "bad-reply", MTA_TLS_NONE, MTA_STAGE_EHLO, "malformed" },
		{ "long-line", MTA_TLS_NONE, MTA_STAGE_EHLO, "too long" },
		{ "tls-inject", MTA_TLS_REQUIRED, MTA_STAGE_STARTTLS,
		    "after the reply to STARTTLS" },
	};
	struct mta_conn_params p;
	struct peer peer;
	struct cb cb;

	if (!have_python())
		skip();
	for (size_t i = 0; i < nitems(t); i++) {
		script_start(&peer, t[i].mode);
		params(&p, peer.port, t[i].tls, ctx_default);
		connect_fails(&cb, &p, t[i].stage, true);
		assert_non_null(strstr(cb.ready.error, t[i].error));
		settle();
		reap(peer.pid, 5000);
	}
}

/* 421 while idle: the next mta_send reports the connection lost. */
static void
test_peer_idle_close(void **state)
{
	const char *rcpts[] = { "b@example.org", "c@example.org", NULL };
	struct mta_conn_params p;
	struct envelope e;
	struct peer peer;
	struct cb cb;

	if (!have_python())
		skip();
	script_start(&peer, "idle-close");
	params(&p, peer.port, MTA_TLS_NONE, NULL);
	connect_ok(&cb, &p);
	env_make(&e, "a@example.com", rcpts);
	deliver_small(&cb, &e, true);
	spin(800);
	deliver_small(&cb, &e, false);
	assert_tx(&cb, false, MTA_STAGE_MAIL, 0, true);
	assert_true(cb.lost[0] && cb.lost[1]);
	assert_null(cb.c);
	settle();
	reap(peer.pid, 5000);
	envelope_free(&e);
}

/* A refusal in the middle of a big content. */
static void
test_peer_early_reject(void **state)
{
	const char *rcpts[] = { "b@example.org", NULL };
	size_t len = 16u << 20;
	struct mta_conn_params p;
	struct envelope e;
	struct peer peer;
	struct cb cb;
	char *big;

	if (!have_python())
		skip();
	big = xmalloc(len);
	memset(big, 'y', len);
	for (size_t i = 78; i < len; i += 80)
		memcpy(big + i, "\r\n", 2);
	script_start(&peer, "early-reject");
	params(&p, peer.port, MTA_TLS_NONE, NULL);
	connect_ok(&cb, &p);
	env_make(&e, "a@example.com", rcpts);
	deliver(&cb, &e, big, len);
	assert_tx(&cb, false, MTA_STAGE_DOT, 5, true);
	assert_int_equal(cb.tx.reply.code, 554);
	assert_false(cb.lost[0]);
	assert_int_equal(cb.rcpt[0].code, 554);
	settle();
	reap(peer.pid, 5000);
	free(big);
	envelope_free(&e);
}

/* --- tests: a random peer --------------------------------------------- */

/*
 * An in-process server that answers every command with a reply picked at
 * random (good, 4xx, 5xx, 421, multiline, malformed, or closing), over
 * many connections with random policies, credentials, transactions and
 * aborts from inside callbacks.  Fixed seeds.  What must hold: nothing
 * crashes (ASan), every mta_send gets exactly one sent_cb unless aborted,
 * results are consistent, and every connection is freed in the end.
 */
struct chaos_peer {
	struct bufferevent	*bev;
	uint32_t		 rng;
	bool			 in_data;
	bool			 closing;
};

struct chaos {
	uint32_t		 rng;
	int			 fd;
	struct event		*ev_accept;
	int			 live;		/* connections not yet ended */
	int			 npeers;
	int			 nsend, nsent;
	const char		*bad;		/* a failed check */
	char			 bad_reply[400];
};

/* One client connection's transaction data. */
struct chaos_conn {
	struct chaos		*ch;
	struct envelope		 env;
	struct mta_tx		 tx;
	int			 sends_left;
};

/* Static: connections may outlive a failed test's stack frame. */
static struct chaos chaos;

/* Checked inside a libevent callback: remember, fail outside. */
#define CHAOS_CHECK(ch, cond) do {					\
	if (!(cond) && (ch)->bad == NULL)				\
		(ch)->bad = #cond;					\
} while (0)

static uint32_t
chaos_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void
chaos_peer_free(struct chaos_peer *pp)
{
	bufferevent_free(pp->bev);
	free(pp);
}

static void
chaos_peer_write_cb(struct bufferevent *bev, void *arg)
{
	struct chaos_peer *pp = arg;

	if (pp->closing)
		chaos_peer_free(pp);
}

static void
chaos_peer_event_cb(struct bufferevent *bev, short what, void *arg)
{
	chaos_peer_free(arg);
}

static void
chaos_say(struct chaos_peer *pp, const char *s)
{
	evbuffer_add(bufferevent_get_output(pp->bev), s, strlen(s));
}

/* A reply to a command (or to the dot): mostly ok, sometimes not. */
static void
chaos_reply(struct chaos_peer *pp, const char *ok)
{
	static const char *const bad[] = {
		"450 4.2.0 busy\r\n", "550 5.1.1 no\r\n",
		"421 4.3.2 closing\r\n", "250-a\r\n251 b\r\n", "hello\r\n",
		"250-x\r\n250-y\r\n250 2.0.0 z\r\n", "354 go on\r\n",
		"503 5.5.1 sequence\r\n", "", "334 VXNlcm5hbWU6\r\n",
	};
	uint32_t r = chaos_rand(&pp->rng) % 64;

	if (r >= nitems(bad)) {
		chaos_say(pp, ok);
		return;
	}
	chaos_say(pp, bad[r]);
	if (bad[r][0] == '\0' || strncmp(bad[r], "421", 3) == 0)
		pp->closing = true;
}

static void
chaos_peer_read_cb(struct bufferevent *bev, void *arg)
{
	struct chaos_peer *pp = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t n;

	while (!pp->closing &&
	    (line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
		if (pp->in_data) {
			if (strcmp(line, ".") == 0) {
				pp->in_data = false;
				chaos_reply(pp, "250 2.0.0 Ok: queued\r\n");
			}
		} else if (ascii_strncasecmp(line, "EHLO", 4) == 0) {
			uint32_t r = chaos_rand(&pp->rng);

			if (r % 8 == 0)
				chaos_say(pp, "502 5.5.1 no EHLO\r\n");
			else {
				chaos_say(pp, "250-chaos\r\n");
				if (r & 0x10)
					chaos_say(pp, "250-PIPELINING\r\n");
				if (r & 0x20)
					chaos_say(pp, "250-SIZE 100000\r\n");
				if (r & 0x40)
					chaos_say(pp, "250-AUTH PLAIN LOGIN\r\n");
				if (r & 0x80)
					chaos_say(pp, "250-STARTTLS\r\n");
				if (r & 0x100)
					chaos_say(pp, "250-SMTPUTF8\r\n");
				chaos_reply(pp, "250 DSN\r\n");
			}
		} else if (ascii_strncasecmp(line, "DATA", 4) == 0) {
			if (chaos_rand(&pp->rng) % 4) {
				chaos_say(pp, "354 go\r\n");
				pp->in_data = true;
			} else
				chaos_reply(pp, "554 5.5.1 no\r\n");
		} else if (ascii_strncasecmp(line, "AUTH", 4) == 0)
			chaos_reply(pp, "235 2.7.0 ok\r\n");
		else if (ascii_strncasecmp(line, "QUIT", 4) == 0) {
			chaos_say(pp, "221 bye\r\n");
			pp->closing = true;
		} else if (ascii_strncasecmp(line, "STARTTLS", 8) == 0) {
			/* a TLS that never comes: garbage instead */
			chaos_reply(pp, "220 go\r\nnot a TLS record\r\n");
		} else
			chaos_reply(pp, "250 2.0.0 Ok\r\n");
		free(line);
	}
	if (pp->closing &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		chaos_peer_free(pp);
}

static void
chaos_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct chaos *ch = arg;
	struct chaos_peer *pp;
	int fd = accept(lfd, NULL, NULL);

	if (fd < 0)
		return;
	evutil_make_socket_nonblocking(fd);
	pp = xcalloc(1, sizeof(*pp));
	pp->rng = chaos_rand(&ch->rng) | 1;
	pp->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (pp->bev == NULL)
		fatalx("chaos: bufferevent_socket_new");
	bufferevent_setcb(pp->bev, chaos_peer_read_cb, chaos_peer_write_cb,
	    chaos_peer_event_cb, pp);
	bufferevent_enable(pp->bev, EV_READ | EV_WRITE);
	ch->npeers++;
	switch (chaos_rand(&pp->rng) % 16) {
	case 0:
		chaos_say(pp, "554 5.7.1 go away\r\n");
		break;
	case 1:
		pp->closing = true;
		chaos_peer_free(pp);
		break;
	default:
		chaos_say(pp, "220 chaos ESMTP\r\n");
		break;
	}
}

static void chaos_sent(void *arg, struct mta_conn *c,
    const struct mta_tx_result *r);

static void
chaos_conn_end(struct chaos_conn *cc)
{
	cc->ch->live--;
	envelope_free(&cc->env);
	free(cc);
}

/* The next transaction, or an end (quit or abort), at random. */
static void
chaos_next(struct chaos_conn *cc, struct mta_conn *c)
{
	struct chaos *ch = cc->ch;
	uint32_t r = chaos_rand(&ch->rng) % 8;

	if (cc->sends_left-- <= 0 || r == 0) {
		if (r & 1)
			mta_abort(c);
		else
			mta_quit(c);
		chaos_conn_end(cc);
		return;
	}
	cc->tx.nrcpt = 1 + chaos_rand(&ch->rng) % cc->env.nrcpt;
	cc->env.smtputf8 = chaos_rand(&ch->rng) % 4 == 0;
	CHAOS_CHECK(ch, mta_send(c, &cc->tx, chaos_sent, cc) == 0);
	ch->nsend++;
}

static void
chaos_sent(void *arg, struct mta_conn *c, const struct mta_tx_result *r)
{
	struct chaos_conn *cc = arg;
	struct chaos *ch = cc->ch;
	bool any_ok = false;

	ch->nsent++;
	CHAOS_CHECK(ch, r->nrcpt == cc->tx.nrcpt);
	for (size_t i = 0; i < r->nrcpt; i++) {
		if (r->rcpt_lost[i])
			CHAOS_CHECK(ch, r->rcpt[i].code == 0);
		else
			CHAOS_CHECK(ch, r->rcpt[i].code >= 200 &&
			    r->rcpt[i].code <= 599 &&
			    r->rcpt[i].code / 100 != 3);
		if (!r->rcpt_lost[i] && r->rcpt[i].code / 100 == 2)
			any_ok = true;
	}
	CHAOS_CHECK(ch, r->tx.ok || r->tx.conn_lost ||
	    r->tx.reply.code / 100 == 4 || r->tx.reply.code / 100 == 5);
	if (r->tx.ok) {
		CHAOS_CHECK(ch, !r->tx.conn_lost);
		CHAOS_CHECK(ch, any_ok);
		CHAOS_CHECK(ch, r->tx.reply.code / 100 == 2);
	} else
		CHAOS_CHECK(ch, !any_ok);
	if (ch->bad != NULL && ch->bad_reply[0] == '\0')
		snprintf(ch->bad_reply, sizeof(ch->bad_reply), "ok %d lost %d "
		    "stage %d reply %d %.100s error %.100s", r->tx.ok,
		    r->tx.conn_lost, r->tx.stage, r->tx.reply.code,
		    r->tx.reply.text, r->tx.error);
	if (r->tx.conn_lost) {
		chaos_conn_end(cc);
		return;
	}
	chaos_next(cc, c);
}

static void
chaos_ready(void *arg, struct mta_conn *c, const struct mta_result *r)
{
	struct chaos_conn *cc = arg;

	if (!r->ok) {
		CHAOS_CHECK(cc->ch, c == NULL);
		chaos_conn_end(cc);
		return;
	}
	cc->sends_left = (int)(chaos_rand(&cc->ch->rng) % 4);
	chaos_next(cc, c);
}

static void
test_chaos(void **state)
{
	const char *rcpts[] = { "b@example.org", "c@example.org",
	    "d@example.org", NULL };
	static const enum mta_tls pol[] = { MTA_TLS_NONE, MTA_TLS_NONE,
	    MTA_TLS_OPPORTUNISTIC, MTA_TLS_REQUIRED };
	struct chaos *ch = &chaos;
	struct mta_conn_params p;
	int port, nconn = 500;

	memset(ch, 0, sizeof(*ch));
	ch->rng = 0x2545f491;
	/* for longer runs by hand: other seeds, more connections */
	if (getenv("MTA_CHAOS_SEED") != NULL)
		ch->rng = (uint32_t)strtoul(getenv("MTA_CHAOS_SEED"), NULL,
		    0) | 1;
	if (getenv("MTA_CHAOS_N") != NULL)
		nconn = atoi(getenv("MTA_CHAOS_N"));
	ch->fd = listener(64, &port);
	evutil_make_socket_nonblocking(ch->fd);
	ch->ev_accept = event_new(base, ch->fd, EV_READ | EV_PERSIST,
	    chaos_accept_cb, ch);
	event_add(ch->ev_accept, NULL);
	for (int i = 0; i < nconn; i++) {
		struct chaos_conn *cc = xcalloc(1, sizeof(*cc));
		struct mta_conn *c;

		cc->ch = ch;
		env_make(&cc->env, "a@example.com", rcpts);
		tx_make(&cc->tx, &cc->env, msg_small, sizeof(msg_small) - 1);
		params(&p, port, pol[chaos_rand(&ch->rng) % nitems(pol)],
		    ctx_default);
		p.timeout_command = 2;
		if (chaos_rand(&ch->rng) % 3 == 0) {
			p.auth_user = "alice";
			p.auth_pass = "pw";
		}
		ch->live++;
		c = mta_connect(base, &p, chaos_ready, cc);
		if (chaos_rand(&ch->rng) % 50 == 0) {
			mta_abort(c);
			chaos_conn_end(cc);
		}
		/* a few at a time */
		while (ch->live >= 8 && ch->bad == NULL)
			spin(10);
	}
	while (ch->live > 0 && ch->bad == NULL)
		spin(10);
	if (ch->bad != NULL)
		fail_msg("check failed: %s (%s)", ch->bad, ch->bad_reply);
	assert_int_equal(ch->nsend, ch->nsent);
	event_free(ch->ev_accept);
	close(ch->fd);
	settle();
	print_message("  %d connections, %d transactions\n", ch->npeers,
	    ch->nsent);
}

/* --- setup --------------------------------------------------------------- */

static int
setup_each(void **state)
{
	base = event_base_new();
	return base == NULL ? -1 : 0;
}

static int
teardown_each(void **state)
{
	for (size_t i = 0; i < nitems(kids); i++)
		stop(kids[i]);
	settle();
	event_base_free(base);
	base = NULL;
	return 0;
}

static int
group_setup(void **state)
{
	char subj_alt[] = "subjectAltName=DNS:localhost,IP:127.0.0.1";
	char err[256];
	struct buf out;

	signal(SIGPIPE, SIG_IGN);
	ombud_bin = getenv("OMBUD_BIN");
	peer_py = getenv("MTA_PEER");
	sink_bin = getenv("SMTP_SINK") ? getenv("SMTP_SINK") :
	    "/usr/sbin/smtp-sink";
	if (sodium_init() < 0 || mkdtemp(root) == NULL)
		return -1;
	snprintf(cert_pem, sizeof(cert_pem), "%s/cert.pem", root);
	snprintf(key_pem, sizeof(key_pem), "%s/key.pem", root);
	{
		char *argv[] = { "/usr/bin/openssl", "req", "-x509",
		    "-newkey", "ec", "-pkeyopt",
		    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
		    "-subj", "/CN=localhost", "-addext", subj_alt,
		    "-keyout", key_pem, "-out", cert_pem, NULL };

		if (run(argv, NULL, NULL) != 0)
			return -1;
	}
	if (executable(ombud_bin)) {
		char *argv[] = { (char *)ombud_bin, "passwd", "alice", NULL };

		buf_init(&out);
		if (run(argv, "pw\n", &out) != 0 || out.len == 0 ||
		    out.len >= sizeof(passwd_line))
			return -1;
		memcpy(passwd_line, out.data, out.len);
		buf_free(&out);
	}
	if ((ctx_default = tls_client_ctx_new(NULL, err, sizeof(err))) ==
	    NULL || (ctx_ca = tls_client_ctx_new(cert_pem, err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "tls_client_ctx_new: %s\n", err);
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	char *argv[] = { "/bin/rm", "-rf", root, NULL };

	SSL_CTX_free(ctx_default);
	SSL_CTX_free(ctx_ca);
	if (getenv("OMBUD_KEEP_TMP") == NULL)
		run(argv, NULL, NULL);
	return 0;
}

#define T(f)	cmocka_unit_test_setup_teardown(f, setup_each, teardown_each)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_tls_client_ctx),
		T(test_sink_plain),
		T(test_sink_several),
		T(test_sink_faults),
		T(test_sink_helo),
		T(test_sink_tls_policy),
		T(test_sink_big),
		T(test_timeouts),
		T(test_abort),
		T(test_ombud_tls),
		T(test_ombud_auth),
		T(test_ombud_dots),
		T(test_ombud_rcpts),
		T(test_peer_xoauth2),
		T(test_peer_login),
		T(test_peer_starttls),
		T(test_peer_pipelining),
		T(test_peer_hostile),
		T(test_peer_idle_close),
		T(test_peer_early_reject),
		T(test_chaos),
	};

	if (getenv("MTA_TEST_DEBUG") != NULL)
		log_set_level(LOG_LVL_DEBUG);
	if (getenv("MTA_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("MTA_TEST_FILTER"));
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

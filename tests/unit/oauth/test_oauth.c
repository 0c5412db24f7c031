/*
 * test_oauth.c - the OAuth token fetcher against a token endpoint on
 * 127.0.0.1: a small Python server (embedded below, run with
 * /usr/bin/python3) serving good tokens, errors, slow, oversized and
 * malformed responses, over HTTP and over HTTPS with a self-signed
 * certificate.  It counts the POSTs per path in files, so the tests can
 * assert cache hits and request sharing.
 *
 * Must never: send traffic anywhere but loopback; take more than ~20 s.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/stat.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "common/util.h"
#include "mta/oauth.h"

#define PY	"/usr/bin/python3"
#define SECRET	"s3cr&t=+ %x"
#define SCOPE	"https://outlook.office365.com/.default"

static const char server_py[] =
"import http.server, json, os, ssl, sys, threading, time, urllib.parse\n"
"d, mode = sys.argv[1], sys.argv[2]\n"
"lock = threading.Lock()\n"
"counts = {}\n"
"class H(http.server.BaseHTTPRequestHandler):\n"
"    protocol_version = 'HTTP/1.1'\n"
"    def log_message(self, *a): pass\n"
"    def reply(self, code, body, ctype='application/json'):\n"
"        b = body.encode() if isinstance(body, str) else body\n"
"        self.send_response(code)\n"
"        self.send_header('Content-Type', ctype)\n"
"        self.send_header('Content-Length', str(len(b)))\n"
"        self.end_headers()\n"
"        try: self.wfile.write(b)\n"
"        except OSError: pass\n"
"    def do_POST(self):\n"
"        p = self.path.strip('/')\n"
"        n = int(self.headers.get('Content-Length', '0'))\n"
"        f = urllib.parse.parse_qs(self.rfile.read(n).decode(), strict_parsing=True)\n"
"        with lock:\n"
"            counts[p] = counts.get(p, 0) + 1\n"
"            c = counts[p]\n"
"            with open(os.path.join(d, mode + '.' + p + '.tmp'), 'w') as o: o.write(str(c))\n"
"            os.rename(os.path.join(d, mode + '.' + p + '.tmp'), os.path.join(d, mode + '.' + p))\n"
"        want = {'grant_type': ['client_credentials'], 'client_id': ['app-1'],\n"
"                'client_secret': ['" SECRET "'], 'scope': ['" SCOPE "']}\n"
"        if f != want or self.headers.get('Content-Type') != 'application/x-www-form-urlencoded':\n"
"            return self.reply(400, json.dumps({'error': 'invalid_request', 'error_description': 'bad form'}))\n"
"        tok = {'access_token': 'tok-%s-%d' % (p, c), 'token_type': 'Bearer', 'expires_in': 3600}\n"
"        if p == 'good':\n"
"            time.sleep(0.3)\n"
"            return self.reply(200, json.dumps(tok))\n"
"        if p == 'short':\n"
"            tok['expires_in'] = '2'; tok['token_type'] = 'bearer'\n"
"            return self.reply(200, json.dumps(tok))\n"
"        if p == 'bad':\n"
"            return self.reply(400, json.dumps({'error': 'invalid_client', 'error_description': 'AADSTS7000215: Invalid client secret\\r\\n'}))\n"
"        if p == 'fail':\n"
"            return self.reply(500, 'oops', 'text/plain')\n"
"        if p == 'slow':\n"
"            time.sleep(4)\n"
"            return self.reply(200, json.dumps(tok))\n"
"        if p == 'big':\n"
"            return self.reply(200, '{\"x\": \"' + 'a' * 200000 + '\"}')\n"
"        if p == 'malformed':\n"
"            return self.reply(200, '{\"access_token\": \"abc\", ')\n"
"        if p == 'notbearer':\n"
"            tok['token_type'] = 'mac'\n"
"            return self.reply(200, json.dumps(tok))\n"
"        if p == 'badtoken':\n"
"            tok['access_token'] = 'a b'\n"
"            return self.reply(200, json.dumps(tok))\n"
"        self.reply(404, '{}')\n"
"class S(http.server.ThreadingHTTPServer):\n"
"    daemon_threads = True\n"
"s = S(('127.0.0.1', 0), H)\n"
"if mode == 'https':\n"
"    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
"    ctx.load_cert_chain(os.path.join(d, 'cert.pem'), os.path.join(d, 'key.pem'))\n"
"    s.socket = ctx.wrap_socket(s.socket, server_side=True)\n"
"with open(os.path.join(d, mode + '.port.tmp'), 'w') as o: o.write(str(s.server_address[1]))\n"
"os.rename(os.path.join(d, mode + '.port.tmp'), os.path.join(d, mode + '.port'))\n"
"s.serve_forever()\n";

static char dir[] = "/tmp/test_oauth.XXXXXX";
static char cert_pem[300];
static pid_t srv_http, srv_https;
static int port_http, port_https;
static struct event_base *base;

static pid_t
start_server(const char *mode, int *port)
{
	char path[300];
	pid_t pid;
	int i, fd;
	FILE *f;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fd = open("/dev/null", O_WRONLY);
		if (fd >= 0 && getenv("OAUTH_TEST_DEBUG") == NULL) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(PY, PY, "-c", server_py, dir, mode, (char *)NULL);
		_exit(127);
	}
	snprintf(path, sizeof(path), "%s/%s.port", dir, mode);
	for (i = 0; i < 500; i++) {
		if ((f = fopen(path, "r")) != NULL) {
			assert_int_equal(fscanf(f, "%d", port), 1);
			fclose(f);
			return pid;
		}
		usleep(10000);
	}
	fail_msg("the %s token server did not start", mode);
	return -1;
}

static int
count(const char *mode, const char *path)
{
	char p[300];
	FILE *f;
	int n = 0;

	snprintf(p, sizeof(p), "%s/%s.%s", dir, mode, path);
	if ((f = fopen(p, "r")) == NULL)
		return 0;
	if (fscanf(f, "%d", &n) != 1)
		n = -1;
	fclose(f);
	return n;
}

struct result {
	bool	 done;
	int	 calls;
	char	 token[256];
	char	 error[256];
	bool	 permanent;
	bool	 ok;
};

static void
token_cb(void *arg, const char *token, const char *error, bool permanent)
{
	struct result *r = arg;

	r->calls++;
	r->done = true;
	r->ok = token != NULL;
	snprintf(r->token, sizeof(r->token), "%s", token ? token : "");
	snprintf(r->error, sizeof(r->error), "%s", error ? error : "");
	r->permanent = permanent;
}

static void
run_until(struct result *r, size_t n)
{
	int64_t deadline = now_msec_mono() + 15000;
	size_t i;

	for (;;) {
		for (i = 0; i < n; i++)
			if (!r[i].done)
				break;
		if (i == n)
			return;
		assert_true(now_msec_mono() < deadline);
		event_base_loop(base, EVLOOP_ONCE);
	}
}

/* Turns the loop for ms milliseconds. */
static void
run_for(int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static void
client(struct oauth_client *c, char *url, size_t urlsz, const char *scheme,
    int port, const char *path)
{
	snprintf(url, urlsz, "%s://%s:%d/%s", scheme,
	    strcmp(scheme, "https") == 0 ? "localhost" : "127.0.0.1", port,
	    path);
	c->token_url = url;
	c->client_id = "app-1";
	c->client_secret = SECRET;
	c->scope = SCOPE;
}

static struct oauth *
new_oauth(const char *ca)
{
	char err[256];
	struct oauth *o = oauth_new(base, ca, err, sizeof(err));

	if (o == NULL)
		fail_msg("oauth_new: %s", err);
	oauth_set_timeouts(o, 2000, 1500);
	return o;
}

/* One request on a fresh fetcher; the result in *r. */
static void
fetch_one(const char *scheme, const char *path, const char *ca,
    struct result *r)
{
	struct oauth *o = new_oauth(ca);
	struct oauth_client c;
	char url[256], err[256];

	memset(r, 0, sizeof(*r));
	client(&c, url, sizeof(url), scheme,
	    strcmp(scheme, "https") == 0 ? port_https : port_http, path);
	assert_non_null(oauth_token(o, &c, token_cb, r, err, sizeof(err)));
	run_until(r, 1);
	assert_int_equal(r->calls, 1);
	oauth_free(o);
}

static void
test_good_shared_and_cached(void **state)
{
	struct oauth *o = new_oauth(NULL);
	struct oauth_client c;
	struct result r[4];
	struct oauth_req *req[4];
	char url[256], err[256];
	int i;

	memset(r, 0, sizeof(r));
	client(&c, url, sizeof(url), "http", port_http, "good");
	for (i = 0; i < 3; i++) {
		req[i] = oauth_token(o, &c, token_cb, &r[i], err, sizeof(err));
		assert_non_null(req[i]);
	}
	/* never synchronously */
	assert_false(r[0].done);
	run_until(r, 3);
	for (i = 0; i < 3; i++) {
		assert_true(r[i].ok);
		assert_string_equal(r[i].token, "tok-good-1");
		assert_int_equal(r[i].calls, 1);
	}
	assert_int_equal(count("http", "good"), 1);	/* shared */
	assert_int_equal(oauth_http_requests(o), 1);

	/* a cache hit: no request, still not synchronous */
	req[3] = oauth_token(o, &c, token_cb, &r[3], err, sizeof(err));
	assert_non_null(req[3]);
	assert_false(r[3].done);
	run_until(&r[3], 1);
	assert_string_equal(r[3].token, "tok-good-1");
	assert_int_equal(count("http", "good"), 1);
	assert_int_equal(oauth_cache_hits(o), 1);

	/* invalidated: fetched again */
	oauth_invalidate(o, &c);
	memset(&r[3], 0, sizeof(r[3]));
	assert_non_null(oauth_token(o, &c, token_cb, &r[3], err,
	    sizeof(err)));
	run_until(&r[3], 1);
	assert_string_equal(r[3].token, "tok-good-2");
	assert_int_equal(count("http", "good"), 2);

	/* another secret never gets the cached token */
	c.client_secret = "rotated";
	memset(&r[3], 0, sizeof(r[3]));
	assert_non_null(oauth_token(o, &c, token_cb, &r[3], err,
	    sizeof(err)));
	run_until(&r[3], 1);
	assert_false(r[3].ok);
	assert_int_equal(count("http", "good"), 3);
	c.client_secret = SECRET;

	/* another scope is another key (and a form the server refuses) */
	c.scope = "other";
	memset(&r[3], 0, sizeof(r[3]));
	assert_non_null(oauth_token(o, &c, token_cb, &r[3], err,
	    sizeof(err)));
	run_until(&r[3], 1);
	assert_false(r[3].ok);
	assert_true(r[3].permanent);
	assert_non_null(strstr(r[3].error, "invalid_request"));
	oauth_free(o);
}

static void
test_cancel(void **state)
{
	struct oauth *o = new_oauth(NULL);
	struct oauth_client c;
	struct result r[2];
	struct oauth_req *a, *b;
	char url[256], err[256];
	int before = count("http", "good");

	memset(r, 0, sizeof(r));
	client(&c, url, sizeof(url), "http", port_http, "good");
	c.client_id = "app-1";
	a = oauth_token(o, &c, token_cb, &r[0], err, sizeof(err));
	b = oauth_token(o, &c, token_cb, &r[1], err, sizeof(err));
	assert_non_null(a);
	assert_non_null(b);
	oauth_cancel(a);
	run_until(&r[1], 1);
	assert_false(r[0].done);
	assert_true(r[1].ok);
	assert_int_equal(count("http", "good"), before + 1);

	/* a cancelled cache hit never calls back */
	memset(r, 0, sizeof(r));
	a = oauth_token(o, &c, token_cb, &r[0], err, sizeof(err));
	oauth_cancel(a);
	run_for(100);
	assert_false(r[0].done);

	/* freed with a request in flight: no callback */
	oauth_invalidate(o, &c);
	a = oauth_token(o, &c, token_cb, &r[0], err, sizeof(err));
	assert_non_null(a);
	run_for(50);
	oauth_free(o);
	run_for(50);
	assert_false(r[0].done);
}

static void
test_expiry(void **state)
{
	struct oauth *o = new_oauth(NULL);
	struct oauth_client c;
	struct result r;
	char url[256], err[256];

	/* expires_in "2" (a string), token_type "bearer": cached 1 s */
	client(&c, url, sizeof(url), "http", port_http, "short");
	memset(&r, 0, sizeof(r));
	assert_non_null(oauth_token(o, &c, token_cb, &r, err, sizeof(err)));
	run_until(&r, 1);
	assert_string_equal(r.token, "tok-short-1");
	memset(&r, 0, sizeof(r));
	assert_non_null(oauth_token(o, &c, token_cb, &r, err, sizeof(err)));
	run_until(&r, 1);
	assert_string_equal(r.token, "tok-short-1");
	run_for(1100);
	memset(&r, 0, sizeof(r));
	assert_non_null(oauth_token(o, &c, token_cb, &r, err, sizeof(err)));
	run_until(&r, 1);
	assert_string_equal(r.token, "tok-short-2");
	assert_int_equal(count("http", "short"), 2);
	oauth_free(o);
}

static void
test_errors(void **state)
{
	/* path, text the error must contain, permanent */
	static const struct {
		const char	*path, *text;
		bool		 permanent;
	} t[] = {
		{ "bad", "HTTP 400 invalid_client: AADSTS7000215: Invalid "
		    "client secret??", true },
		{ "fail", "HTTP 500", false },
		{ "slow", "timed out", false },
		{ "big", "larger than 65536", true },
		{ "malformed", "malformed JSON", true },
		{ "notbearer", "not Bearer", true },
		{ "badtoken", "not printable", true },
	};
	struct result r;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		fetch_one("http", t[i].path, NULL, &r);
		if (r.ok || strstr(r.error, t[i].text) == NULL ||
		    r.permanent != t[i].permanent ||
		    strstr(r.error, SECRET) != NULL)
			fail_msg("%s: ok %d permanent %d: %s", t[i].path,
			    r.ok, r.permanent, r.error);
	}
	/* errors are not cached */
	fetch_one("http", "fail", NULL, &r);
	assert_int_equal(count("http", "fail"), 2);
}

static void
test_refused_urls(void **state)
{
	struct oauth *o = new_oauth(NULL);
	struct oauth_client c;
	struct result r;
	char err[256];
	static const char *const bad[] = {
		"http://example.com/token",
		"http://127.0.0.1@example.com/token",
		"http://localhost.example.com/token",
		"ftp://127.0.0.1/token",
		"",
	};
	size_t i;

	memset(&r, 0, sizeof(r));
	client(&c, err, sizeof(err), "http", 1, "x");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c.token_url = bad[i];
		err[0] = '\0';
		assert_null(oauth_token(o, &c, token_cb, &r, err,
		    sizeof(err)));
		assert_non_null(strstr(err, "https"));
	}
	c.token_url = "http://127.0.0.1:1/token";
	c.client_secret = NULL;
	assert_null(oauth_token(o, &c, token_cb, &r, err, sizeof(err)));
	run_for(50);
	assert_false(r.done);
	oauth_free(o);
}

static void
test_https(void **state)
{
	struct result r;

	fetch_one("https", "good", cert_pem, &r);
	assert_true(r.ok);
	assert_string_equal(r.token, "tok-good-1");

	/* the self-signed certificate does not verify without it */
	fetch_one("https", "good", NULL, &r);
	assert_false(r.ok);
	assert_false(r.permanent);
	assert_int_equal(count("https", "good"), 1);
}

static int
setup(void **state)
{
	char cmd[1024];

	if (sodium_init() < 0 || mkdtemp(dir) == NULL)
		return -1;
	snprintf(cert_pem, sizeof(cert_pem), "%s/cert.pem", dir);
	snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey ec "
	    "-pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
	    "-subj /CN=localhost -addext subjectAltName=DNS:localhost "
	    "-keyout %s/key.pem -out %s >/dev/null 2>&1", dir, cert_pem);
	if (system(cmd) != 0)
		return -1;
	base = event_base_new();
	srv_http = start_server("http", &port_http);
	srv_https = start_server("https", &port_https);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[300];
	int status;

	if (srv_http > 0) {
		kill(srv_http, SIGTERM);
		waitpid(srv_http, &status, 0);
	}
	if (srv_https > 0) {
		kill(srv_https, SIGTERM);
		waitpid(srv_https, &status, 0);
	}
	if (base != NULL)
		event_base_free(base);
	if (getenv("OAUTH_KEEP_TMP") == NULL) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			return -1;
	}
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_shared_and_cached),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_refused_urls),
		cmocka_unit_test(test_https),
	};

	unsetenv("http_proxy");
	unsetenv("https_proxy");
	unsetenv("HTTPS_PROXY");
	unsetenv("ALL_PROXY");
	unsetenv("all_proxy");
	return cmocka_run_group_tests(tests, setup, teardown);
}

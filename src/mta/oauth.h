/*
 * oauth.h - OAuth 2.0 access tokens for AUTH XOAUTH2 to a smart host:
 * the client-credentials grant (RFC 6749 4.4) against a configurable
 * token endpoint, asynchronously on the libevent loop, with a cache.
 *
 * Tokens are cached per (token_url, client_id, scope, and a hash of the
 * client secret) until expires_in minus a safety margin (10 %, and at
 * least 60 s unless that is half the lifetime; a day at most); requests
 * for the same key while one is in flight share its HTTP request.
 * Failures are not cached.  Not thread-safe: one loop thread.
 *
 * Must never: log a client secret or a token; call a callback from
 * inside oauth_token() or after oauth_cancel(); talk HTTP in the clear to
 * anything but 127.0.0.1/localhost; block the event loop.
 */
#ifndef OMBUD_OAUTH_H
#define OMBUD_OAUTH_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct oauth;
struct oauth_req;

struct oauth_client {
	const char	*token_url;	/* https://... (http only on loopback) */
	const char	*client_id;
	const char	*client_secret;
	const char	*scope;		/* may be NULL or "" */
};

/*
 * token: the access token (valid only during the callback; copy it), or
 * NULL on failure; then error describes it (never containing secrets) and
 * permanent says whether retrying is pointless (a 4xx such as
 * invalid_client, a malformed answer to a 2xx) or not (timeout, network,
 * TLS, 5xx, 429).
 */
typedef void (*oauth_cb)(void *arg, const char *token, const char *error,
    bool permanent);

/* ca_file NULL: the system CA store.  Returns NULL with err filled. */
struct oauth *oauth_new(struct event_base *base, const char *ca_file,
    char *err, size_t errlen);

/* Overrides (tests): connect and total timeouts in ms (0: 10 s, 30 s). */
void oauth_set_timeouts(struct oauth *o, long connect_ms, long total_ms);

/* Starts getting a token; cb runs later, from the loop, exactly once
 * unless cancelled.  Returns NULL only on allocation failure or invalid
 * arguments (err filled). The client strings are copied. */
struct oauth_req *oauth_token(struct oauth *o, const struct oauth_client *c,
    oauth_cb cb, void *arg, char *err, size_t errlen);

/* No callback runs for req afterwards (not valid once cb has run).  The HTTP request goes on for the
 * others sharing it (or just to fill the cache). */
void oauth_cancel(struct oauth_req *req);

/* Drops the cached token for c (e.g. the server refused it). */
void oauth_invalidate(struct oauth *o, const struct oauth_client *c);

/* Cancels everything silently, wipes secrets and tokens.  Not from
 * inside an oauth_cb. */
void oauth_free(struct oauth *o);

/* Counters (tests, stats): HTTP requests started, cache hits. */
unsigned long oauth_http_requests(const struct oauth *o);
unsigned long oauth_cache_hits(const struct oauth *o);

#endif

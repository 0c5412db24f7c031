/*
 * control.h - the control socket (run_dir/ombud.sock, mode 0600) through
 * which `ombud queue ...` talks to a running server: the server owns the
 * spool while it runs, so changes must go through it.
 *
 * Protocol: one request line, one reply line.  Requests: "stats",
 * "delete QID", "flush".  Replies start with "ok" or "error".
 */
#ifndef OMBUD_CONTROL_H
#define OMBUD_CONTROL_H

#include <stddef.h>

struct server;
struct control;

struct control *control_start(struct server *srv, const char *run_dir);
void control_stop(struct control *c);

/* Client side: send one request, read one reply line into reply.
 * 0 on success, -1 if no server answers (errno set). */
int control_request(const char *run_dir, const char *request, char *reply,
    size_t replylen);

#endif

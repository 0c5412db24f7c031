#!/usr/bin/python3
"""Delivery policy, end to end: delay reports, connection reuse and the
per-destination limits, the rate limit, XOAUTH2 smart-host routes, and the
queue state surviving a restart.

Same layout as test_delivery.py: dnsmasq serves dest.test (MX
mx1.dest.test -> 127.0.0.2) and src.test (MX mx.src.test -> 127.0.0.4,
the sender's sink, where reports arrive).
"""
import base64
import http.server
import json
import threading
import time
import unittest

from ombudtest import QID_RE, main, message, queue_id_of
from peers import (DeliveryTestCase, dsn_report, free_common_port, have,
                   SMTP_SINK, DNSMASQ)

DEST = "127.0.0.2"
SRC = "127.0.0.4"
RCPT = "rcpt@dest.test"


def records():
    return {"mx": [("dest.test", 10, "mx1.dest.test"),
                   ("src.test", 10, "mx.src.test")],
            "a": [("mx1.dest.test", DEST), ("mx.src.test", SRC),
                  ("smarthost.test", DEST)]}


@unittest.skipUnless(have(SMTP_SINK, DNSMASQ),
                     "needs smtp-sink (postfix) and dnsmasq (dnsmasq-base)")
class Policy(DeliveryTestCase):

    def setup(self, dest_flags=(), scripted=None):
        port = free_common_port([DEST, SRC])
        dns = self.dns(records())
        if scripted is not None:
            dest = self.scripted(DEST, port, rules=scripted)
        else:
            dest = self.sink(DEST, port, flags=list(dest_flags),
                             name="dest sink")
        src = self.sink(SRC, port, name="sender's sink")
        return dns, port, dest, src

    def submit_many(self, gw, n, tag):
        qids = []
        with gw.connect("relay") as c:
            c.ehlo("client.test")
            for i in range(n):
                qids.append(c.submit(message(
                    subject=f"{tag} {i}", sender=self.SENDER, rcpt=RCPT,
                    headers=[f"X-Seq: {i}"]), sender=self.SENDER,
                    rcpts=[RCPT]))
            c.cmd("QUIT", "221")
        return qids

    # --- delay reports ------------------------------------------------------

    def test_delay_warning_once_then_delivered(self):
        dns, port, dest, src = self.setup(
            ["-r", "RCPT", "-b", "451 4.3.0 Try again later"])
        gw = self.delivery_gateway(dns, port, overrides={
            "delay_warning": "2s", "queue_lifetime": "1h"})
        qid = self.submit(gw, message(sender=self.SENDER, rcpt=RCPT))
        d = self.wait_event(gw, "queue.dsn", orig=qid, type="delay",
                            peers=[dest, src])[0]
        self.assertRegex(d["qid"], QID_RE)
        got = src.wait_count(1)
        self.assertEqual(got[0].mail_from, "")
        self.assertEqual(got[0].rcpts, [self.SENDER])
        _, _, per_rcpt = dsn_report(got[0].content)
        self.assertEqual(len(per_rcpt), 1, per_rcpt)
        self.assertEqual(per_rcpt[0]["action"], "delayed", per_rcpt)
        self.assertIn(RCPT, per_rcpt[0]["final-recipient"])
        self.assertRegex(per_rcpt[0]["status"], r"^4\.")
        # still deferred, still queued; no second warning on later tries
        self.wait_event(gw, "delivery.deferred", qid=qid, count=4,
                        timeout=20)
        self.assertEqual(len(self.events(gw, "queue.dsn")), 1)
        self.assertTrue(self.rcpt_state(gw, qid, RCPT)[1])
        dest.restart([])
        self.wait_event(gw, "delivery.delivered", qid=qid)
        self.wait_gone(gw, [qid])
        self.assertEqual(len(self.events(gw, "queue.dsn")), 1)
        self.assertEqual(src.count(), 1)

    def test_notify_never_gets_no_report(self):
        reply = "550 5.1.1 No such user"
        dns, port, dest, src = self.setup(["-f", "RCPT", "-B", reply])
        gw = self.delivery_gateway(dns, port)
        with gw.connect("relay") as c:
            c.ehlo("client.test")
            c.cmd(f"MAIL FROM:<{self.SENDER}>", "250")
            c.cmd(f"RCPT TO:<{RCPT}> NOTIFY=NEVER", "250")
            c.cmd("DATA", "354")
            c.send(message(sender=self.SENDER, rcpt=RCPT) + b".\r\n")
            r = c.expect("250")
            c.cmd("QUIT", "221")
        qid = queue_id_of(r)
        e = self.wait_event(gw, "delivery.bounced", qid=qid)[0]
        self.assertEqual(e["dsn"], "none", e)
        self.wait_gone(gw, [qid])
        time.sleep(1)
        self.assertEqual(self.events(gw, "queue.dsn"), [])
        self.assertEqual(src.count(), 0)

    # --- connections -----------------------------------------------------------

    def test_connection_reuse_under_one_connection_limit(self):
        dns, port, dest, src = self.setup(scripted=[])
        gw = self.delivery_gateway(dns, port, overrides={
            "dest_max_connections": "1", "conn_idle_timeout": "10s"})
        qids = self.submit_many(gw, 20, "reuse")
        dest.wait_count(20)
        self.wait_gone(gw, qids)
        # one connection carried them all (a second one at most, if the
        # first went idle between two bursts)
        self.assertLessEqual(dest.sessions, 2, dest.describe())
        self.assertEqual(dest.counts.get("EHLO"), dest.sessions)
        self.assertEqual(sorted(int(m.header("X-Seq")[0])
                                for m in dest.messages()),
                         list(range(20)))

    def test_conn_max_messages_opens_new_connections(self):
        dns, port, dest, src = self.setup(scripted=[])
        gw = self.delivery_gateway(dns, port, overrides={
            "dest_max_connections": "1", "conn_max_messages": "3",
            "conn_idle_timeout": "10s"})
        qids = self.submit_many(gw, 9, "max")
        dest.wait_count(9)
        self.wait_gone(gw, qids)
        self.assertGreaterEqual(dest.sessions, 3, dest.describe())
        self.assertIn(b"QUIT", dest.received())

    def test_dest_rate_spreads_deliveries(self):
        dns, port, dest, src = self.setup()
        gw = self.delivery_gateway(dns, port, overrides={
            "dest_rate": "4", "delivery": "no"})
        qids = self.submit_many(gw, 9, "rate")
        # submitted while delivery was off: all due at once when it starts
        gw.write_config({"delivery": "yes", "dest_rate": "4",
                         "dns_servers": dns.servers, "mx_port": port,
                         **self.RETRY})
        gw.hup()
        gw.wait_log(r"event=config\.reloaded")
        ev = self.wait_event(gw, "delivery.delivered", count=9, timeout=30)
        stamps = sorted(e["_line"][:23] for e in ev)
        t0 = time.strptime(stamps[0][:19], "%Y-%m-%dT%H:%M:%S")
        t1 = time.strptime(stamps[-1][:19], "%Y-%m-%dT%H:%M:%S")
        span = (time.mktime(t1) + float("0" + stamps[-1][19:23])) - \
            (time.mktime(t0) + float("0" + stamps[0][19:23]))
        # 9 messages at 4/s: the last at least 2 s after the first
        self.assertGreaterEqual(span, 1.8, stamps)
        self.wait_gone(gw, qids)

    def test_8bit_to_a_server_without_8bitmime(self):
        """Declared 8BITMIME goes out with BODY=8BITMIME where offered;
        where not, it goes out as it is and the log says so."""
        port = free_common_port([DEST])
        dns = self.dns(records())
        peer = self.scripted(DEST, port, rules=[], ehlo=(
            "PIPELINING", "ENHANCEDSTATUSCODES"))
        gw = self.delivery_gateway(dns, port)
        body = "Felanmälan: kylskåpet är trasigt.\r\n".encode()
        msg = message(sender=self.SENDER, rcpt=RCPT).replace(
            b"Hello.\r\n", body)
        self.assertIn(body, msg)
        with gw.connect("relay") as c:
            c.ehlo("client.test")
            c.cmd(f"MAIL FROM:<{self.SENDER}> BODY=8BITMIME", "250")
            c.cmd(f"RCPT TO:<{RCPT}>", "250")
            c.cmd("DATA", "354")
            c.send(msg + b".\r\n")
            qid = queue_id_of(c.expect("250"))
            c.cmd("QUIT", "221")
        got = peer.wait_count(1)
        self.assertTrue(got[0].content.endswith(body), got[0].content)
        self.assertNotIn("BODY=", got[0].mail_args or "")
        self.wait_event(gw, "mta.8bit_without_8bitmime", qid=qid)
        self.wait_gone(gw, [qid])

    # --- XOAUTH2 smart host ---------------------------------------------------

    def token_endpoint(self, token):
        seen = []

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                seen.append(self.rfile.read(n).decode())
                body = json.dumps({"access_token": token,
                                   "token_type": "Bearer",
                                   "expires_in": 3600}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        return f"http://127.0.0.1:{srv.server_port}/token", seen

    def test_xoauth2_route(self):
        port = free_common_port([DEST])
        dns = self.dns(records())
        peer = self.scripted(DEST, port, rules=[], ehlo=(
            "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES",
            "AUTH XOAUTH2 PLAIN LOGIN"))
        token = "tok-" + "ab12" * 8
        url, seen = self.token_endpoint(token)
        d = self.tmpdir()
        secret = d + "/client-secret"
        with open(secret, "w") as f:
            f.write("client-secret-value\n")
        import os
        os.chmod(secret, 0o600)
        gw = self.delivery_gateway(dns, None, overrides={
            "default_route": "o365"}, routes={"o365": {
                "host": "smarthost.test", "port": port, "tls": "none",
                "auth_user": "felanmalan@bostadsbolag.test",
                "xoauth2_token_url": url,
                "xoauth2_client_id": "client-1",
                "xoauth2_secret_file": secret,
                "xoauth2_scope": "https://outlook.office365.com/.default"}})
        qids = self.submit_many(gw, 2, "xoauth2")
        peer.wait_count(2)
        self.wait_gone(gw, qids)
        # the token endpoint saw the client credentials grant
        self.assertTrue(seen, "no token request")
        self.assertIn("grant_type=client_credentials", seen[0])
        self.assertIn("client_id=client-1", seen[0])
        # the peer saw AUTH XOAUTH2 with user and bearer token
        auths = [l for l in peer.received().split(b"\r\n")
                 if l.upper().startswith(b"AUTH ")]
        self.assertTrue(auths, peer.describe())
        parts = auths[0].split()
        self.assertEqual(parts[1].upper(), b"XOAUTH2", auths)
        decoded = base64.b64decode(parts[2])
        self.assertEqual(decoded, b"user=felanmalan@bostadsbolag.test"
                         b"\x01auth=Bearer " + token.encode() + b"\x01\x01")
        # neither the secret nor the token is in the log
        log = gw.log_text(all_runs=True)
        self.assertNotIn("client-secret-value", log)
        self.assertNotIn(token, log)

    # --- restart ----------------------------------------------------------------

    def test_sigterm_lets_deliveries_finish(self):
        """SIGTERM while the remote server takes its time with the DATA
        reply: the attempt finishes and is recorded before the exit, so
        the restart sends nothing twice; a message waiting for a
        connection is deferred, not lost."""
        dns, port, dest, src = self.setup(["-w", "3"])
        gw = self.delivery_gateway(dns, port, overrides={
            "dest_max_connections": "1"})
        a = self.submit(gw, message(sender=self.SENDER, rcpt=RCPT,
                                    subject="first"))
        b = self.submit(gw, message(sender=self.SENDER, rcpt=RCPT,
                                    subject="second"))
        self.wait_event(gw, "mta.connected")
        time.sleep(0.5)             # inside the transaction of a
        t = time.monotonic()
        gw.stop()                   # exit 0 and a clean log
        self.assertLess(time.monotonic() - t, 25)
        ev = self.events(gw, "delivery.delivered", qid=a)
        self.assertEqual(len(ev), 1, gw.log_tail(30))
        self.assertEqual(dest.count(), 1)
        # the second waited for the connection: deferred, kept
        gw.start()
        self.assertNotIn(a, gw.queue_ids())
        self.assertIn(b, gw.queue_ids())
        self.ctl(gw, "flush")
        self.wait_event(gw, "delivery.delivered", qid=b, timeout=30)
        self.wait_gone(gw, [b])
        self.assertEqual(sorted(m.header("Subject")[0]
                                for m in dest.messages()),
                         ["first", "second"])

    def test_deferred_state_survives_restart(self):
        dns, port, dest, src = self.setup(
            ["-r", "RCPT", "-b", "452 4.2.2 Mailbox full"])
        gw = self.delivery_gateway(dns, port, overrides={
            "retry_min": "1h", "retry_max": "2h"})
        qid = self.submit(gw, message(sender=self.SENDER, rcpt=RCPT))
        self.wait_event(gw, "delivery.deferred", qid=qid)
        time.sleep(0.5)
        before = gw.queue_show(qid)
        self.assertEqual(before["attempts"], 1, before)
        gw.stop()
        dest.restart([])
        gw.start()
        after = gw.queue_show(qid)
        for k in ("attempts", "next_attempt", "last_attempt"):
            self.assertEqual(after[k], before[k], (before, after))
        self.assertEqual(after["recipients"][0]["last_reply"],
                         "452 4.2.2 Mailbox full")
        # the retry is an hour away: nothing goes out by itself...
        time.sleep(1.5)
        self.assertEqual(dest.count(), 0)
        # ...until flushed
        self.ctl(gw, "flush")
        self.wait_event(gw, "delivery.delivered", qid=qid)
        self.wait_gone(gw, [qid])
        self.assertEqual(dest.count(), 1)


if __name__ == "__main__":
    main()

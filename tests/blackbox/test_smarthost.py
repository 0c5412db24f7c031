#!/usr/bin/python3
"""Delivery through a smart host ([route NAME]) with TLS and AUTH.

The smart host is a private Postfix instance on 127.0.0.1 (peers.py:
STARTTLS with a self-signed certificate, smtpd_tls_auth_only = yes, AUTH
PLAIN/LOGIN against a Cyrus sasldb, relaying for authenticated clients
only) that relays everything to an smtp-sink, where the test looks at what
arrived.  The gateway's default_route is the route under test; its
password is in a 0600 file (auth_password_file).

- AUTH PLAIN over STARTTLS, certificate verified against the test's CA
  (tls = verify, ca_file), and unverified (tls = required); implicit TLS
  (tls = implicit, Postfix's wrapper mode): the message arrives behind the
  smart host, which logged ESMTPSA (TLS + AUTH).
- A wrong password: the server's 535 5.7.8 defers the recipient (like
  Postfix's smtp_sasl_auth_soft_bounce: the operator fixes the password,
  the sender can do nothing); no bounce, and after the password file is
  fixed and the gateway reloaded the message goes out.
- tls = verify with a certificate the gateway does not trust: deferred,
  and the credentials never leave in the clear (Postfix's log shows no
  AUTH; a scripted peer offering AUTH without STARTTLS never sees it).

Needs root (Postfix's master), postfix, sasl2-bin, libsasl2-modules,
dnsmasq-base and swaks (for the peer's own check).
"""
import os
import re
import shutil
import subprocess
import time
import unittest

from ombudtest import main, message
from peers import (DNSMASQ, SASLPASSWD2, SMTP_SINK, DeliveryTestCase,
                   Smarthost, have, make_cert)

SWAKS = shutil.which("swaks")
CAN_RUN = (os.geteuid() == 0 and have(SMTP_SINK, DNSMASQ, SASLPASSWD2,
                                      "/usr/lib/postfix/sbin/master"))
WHY = "needs root, postfix, sasl2-bin, libsasl2-modules and dnsmasq-base"
USER, PASSWORD = "relayuser", "Relay-Pw-7f3e9a"
RCPT = "rcpt@remote.test"


@unittest.skipUnless(CAN_RUN and SWAKS, WHY + " and swaks")
class Peers(DeliveryTestCase):
    """The smart host itself, driven by swaks."""

    def swaks(self, sh, *extra, to=RCPT):
        p = subprocess.run(
            [SWAKS, "--server", "127.0.0.1", "--port", str(sh.port),
             "--ehlo", "client.test", "--from", "a@src.test", "--to", to,
             "--timeout", "20"] + list(extra),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        return p.returncode, p.stdout.decode("utf-8", "replace")

    def test_smarthost_auth_tls_and_relay_rules(self):
        sink = self.sink("127.0.0.1")
        sh = self.peer(Smarthost((sink.host, sink.port),
                                 users={USER: PASSWORD}))
        # AUTH PLAIN after STARTTLS with a verified certificate: relayed
        rc, out = self.swaks(sh, "--tls", "--tls-verify", "--tls-ca-path",
                             sh.cert, "--tls-sni", "localhost",
                             "--auth", "PLAIN", "--auth-user", USER,
                             "--auth-password", PASSWORD)
        self.assertEqual(rc, 0, out)
        self.assertIn("235 2.7.0 Authentication successful", out)
        got = sink.wait_count(1, timeout=20)
        self.assertEqual(got[0].rcpts, [RCPT])
        self.assertIn("with ESMTPSA", " ".join(got[0].header("Received")))
        # no AUTH offered (nor accepted) before STARTTLS
        rc, out = self.swaks(sh, "--auth", "PLAIN", "--auth-user", USER,
                             "--auth-password", PASSWORD)
        self.assertNotEqual(rc, 0, out)
        self.assertNotRegex(out, r"<-  250[ -]AUTH")
        # TLS without AUTH: relaying refused
        rc, out = self.swaks(sh, "--tls")
        self.assertNotEqual(rc, 0, out)
        self.assertRegex(out, r"<~\* 554 5\.7\.1 <rcpt@remote\.test>: "
                         r"Recipient address rejected: Access denied")
        # a wrong password: 535
        rc, out = self.swaks(sh, "--tls", "--auth", "LOGIN", "--auth-user",
                             USER, "--auth-password", "wrong")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("535 5.7.8", out)
        time.sleep(1)
        self.assertEqual(sink.count(), 1)

    def test_smarthost_implicit_tls(self):
        sink = self.sink("127.0.0.1")
        sh = self.peer(Smarthost((sink.host, sink.port),
                                 users={USER: PASSWORD}, implicit=True))
        p = subprocess.run(
            [SWAKS, "--server", "127.0.0.1", "--port",
             str(sh.port_implicit), "--tlsc", "--tls-verify",
             "--tls-ca-path", sh.cert, "--tls-sni", "localhost",
             "--from", "a@src.test", "--to", RCPT, "--auth", "PLAIN",
             "--auth-user", USER, "--auth-password", PASSWORD],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertEqual(len(sink.wait_count(1, timeout=20)), 1)


@unittest.skipUnless(CAN_RUN, WHY)
class SmartHostRoute(DeliveryTestCase):

    def setup_route(self, implicit=False):
        d = self.tmpdir()
        pwfile = os.path.join(d, "route.pw")
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, PASSWORD.encode())
        os.close(fd)
        sink = self.sink("127.0.0.1", name="sink behind the smart host")
        sh = self.peer(Smarthost((sink.host, sink.port),
                                 users={USER: PASSWORD}, implicit=implicit))
        # the route's host by name: dnsmasq knows smarthost.test
        dns = self.dns({"a": [("smarthost.test", "127.0.0.1")]})
        return d, pwfile, sink, sh, dns

    def route_gateway(self, dns, route, **overrides):
        o = {"default_route": "smarthost"}
        o.update(overrides)
        return self.delivery_gateway(dns, overrides=o,
                                     routes={"smarthost": route})

    def assert_same_message(self, arrived, msg):
        """msg as sent to the gateway, after two relays: Postfix adds a
        Date header where one is missing, and both add Received."""
        head, body = msg.split(b"\r\n\r\n", 1)
        got_head, got_body = arrived.content.split(b"\r\n\r\n", 1)
        self.assertEqual(got_body, body)
        for line in head.split(b"\r\n"):
            self.assertIn(line + b"\r\n", got_head + b"\r\n")

    def check_relayed(self, gw, sh, sink, qid, msg):
        e = self.wait_event(gw, "delivery.delivered", qid=qid, rcpt=RCPT,
                            peers=[sh, sink])[-1]
        self.assertRegex(e["reply"], r"^250 2\.0\.0 Ok: queued as ", e)
        self.assertTrue(e["relay"].endswith(f"[127.0.0.1]:{sh.port}"), e)
        self.assertRegex(e.get("tls", ""), r"^TLSv1\.[23]$", e)
        got = sink.wait_count(1, timeout=20)
        self.assertEqual(len(got), 1, got)
        a = got[0]
        self.assertEqual(a.rcpts, [RCPT])
        self.assertEqual(a.mail_from, self.SENDER)
        self.assert_same_message(a, msg)
        received = " ".join(a.header("Received"))
        self.assertIn("by smarthost.test (Postfix) with ESMTPSA", received)
        self.assertIn("by gw.test (ombud)", received)
        log = sh.log_text()
        self.assertRegex(log, rf"sasl_method=PLAIN, sasl_username={USER}")
        self.wait_gone(gw, qid)
        return e

    def test_auth_plain_starttls_verified(self):
        d, pwfile, sink, sh, dns = self.setup_route()
        gw = self.route_gateway(dns, {
            "host": "smarthost.test", "port": sh.port, "tls": "verify",
            "ca_file": sh.cert, "auth_user": USER,
            "auth_password_file": pwfile})
        msg = message(subject="via smarthost", sender=self.SENDER,
                      rcpt=RCPT, body="relayed.\r\n.dot line\r\n")
        qid = self.submit(gw, msg, rcpts=[RCPT])
        e = self.check_relayed(gw, sh, sink, qid, msg)
        self.assertEqual(e["relay"], f"smarthost.test[127.0.0.1]:{sh.port}")
        # the password is nowhere in the gateway's log
        self.assertNotIn(PASSWORD, gw.log_text(all_runs=True))

    def test_auth_plain_starttls_required_ip_literal(self):
        d, pwfile, sink, sh, dns = self.setup_route()
        gw = self.route_gateway(dns, {
            "host": "127.0.0.1", "port": sh.port, "tls": "required",
            "auth_user": USER, "auth_password_file": pwfile})
        msg = message(subject="required", sender=self.SENDER, rcpt=RCPT)
        qid = self.submit(gw, msg, rcpts=[RCPT])
        self.check_relayed(gw, sh, sink, qid, msg)

    def test_implicit_tls(self):
        d, pwfile, sink, sh, dns = self.setup_route(implicit=True)
        gw = self.route_gateway(dns, {
            "host": "smarthost.test", "port": sh.port_implicit,
            "tls": "implicit", "ca_file": sh.cert, "auth_user": USER,
            "auth_password_file": pwfile})
        msg = message(subject="implicit", sender=self.SENDER, rcpt=RCPT)
        qid = self.submit(gw, msg, rcpts=[RCPT])
        e = self.wait_event(gw, "delivery.delivered", qid=qid,
                            peers=[sh, sink])[-1]
        self.assertEqual(e["relay"],
                         f"smarthost.test[127.0.0.1]:{sh.port_implicit}")
        self.assertRegex(e.get("tls", ""), r"^TLSv1\.[23]$", e)
        got = sink.wait_count(1, timeout=20)
        self.assert_same_message(got[0], msg)
        self.wait_gone(gw, qid)

    def test_wrong_password_deferred_until_fixed(self):
        """A refused AUTH (535) defers instead of bouncing, like Postfix's
        smtp_sasl_auth_soft_bounce: a wrong password is the operator's to
        fix, not the sender's.  Fixed password + reload: delivered."""
        d, pwfile, sink, sh, dns = self.setup_route()
        with open(pwfile, "w") as f:
            f.write("not-the-password")
        gw = self.route_gateway(dns, {
            "host": "smarthost.test", "port": sh.port, "tls": "verify",
            "ca_file": sh.cert, "auth_user": USER,
            "auth_password_file": pwfile})
        qid = self.submit(gw, message(sender=self.SENDER, rcpt=RCPT),
                          rcpts=[RCPT])
        e = self.wait_event(gw, "delivery.deferred", qid=qid, rcpt=RCPT,
                            count=2, peers=[sh])[-1]
        self.assertRegex(e["reply"], r"^535 5\.7\.8 ", e)
        self.assertEqual(self.events(gw, "delivery.bounced"), [])
        self.assertEqual(self.events(gw, "queue.dsn"), [])
        self.assertEqual(gw.queue_show(qid)["recipients"][0]["state"],
                         "deferred")
        self.assertIn("authentication failed", sh.log_text())
        self.assertEqual(sink.count(), 0)
        # the operator fixes the password file and reloads
        with open(pwfile, "w") as f:
            f.write(PASSWORD + "\n")
        gw.hup()
        gw.wait_log(r"event=config\.reloaded")
        self.wait_event(gw, "delivery.delivered", qid=qid, rcpt=RCPT,
                        peers=[sh])
        self.wait_gone(gw, [qid])
        self.assertEqual(len(sink.wait_count(1, timeout=20)), 1)
        self.assertNotIn(PASSWORD, gw.log_text(all_runs=True))

    def test_untrusted_certificate_deferred_no_auth(self):
        d, pwfile, sink, sh, dns = self.setup_route()
        other_ca, _ = make_cert(d, "other-ca.test", ["DNS:other-ca.test"],
                                name="other")
        gw = self.route_gateway(dns, {
            "host": "smarthost.test", "port": sh.port, "tls": "verify",
            "ca_file": other_ca, "auth_user": USER,
            "auth_password_file": pwfile})
        qid = self.submit(gw, message(sender=self.SENDER, rcpt=RCPT),
                          rcpts=[RCPT])
        e = self.wait_event(gw, "delivery.deferred", qid=qid, rcpt=RCPT,
                            peers=[sh])[0]
        self.assertRegex(e.get("reply", ""), r"^4\d\d ", e)
        # retried (1-2 s), deferred again, never delivered
        self.wait_event(gw, "delivery.deferred", qid=qid, count=2,
                        timeout=15)
        self.assert_no_event(gw, "delivery.delivered")
        self.assert_no_event(gw, "delivery.bounced")
        show, r = self.rcpt_state(gw, qid, RCPT)
        self.assertIn(r.get("state"), ("deferred", "pending"), r)
        self.assertTrue(r.get("last_reply"), r)
        log = sh.log_text()
        self.assertNotIn("sasl_method", log)
        self.assertNotRegex(log, r"disconnect from .* auth=")
        self.assertNotRegex(log, r"disconnect from .* mail=")
        self.assertEqual(sink.count(), 0)
        self.assertNotIn(PASSWORD, gw.log_text(all_runs=True))

    def test_never_auth_in_the_clear(self):
        """A server that offers AUTH but no STARTTLS: with tls = required
        and with tls = opportunistic the credentials stay home (and the
        message waits); the scripted peer would accept any AUTH."""
        d = self.tmpdir()
        pwfile = os.path.join(d, "route.pw")
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, PASSWORD.encode())
        os.close(fd)
        dns = self.dns({"a": [("smarthost.test", "127.0.0.1")]})
        for tls in ("required", "opportunistic"):
            with self.subTest(tls=tls):
                peer = self.scripted("127.0.0.1", ehlo=(
                    "PIPELINING", "AUTH PLAIN LOGIN", "8BITMIME"))
                gw = self.route_gateway(dns, {
                    "host": "smarthost.test", "port": peer.port,
                    "tls": tls, "auth_user": USER,
                    "auth_password_file": pwfile})
                qid = self.submit(gw, message(sender=self.SENDER,
                                              rcpt=RCPT), rcpts=[RCPT])
                self.wait_event(gw, "delivery.deferred", qid=qid,
                                peers=[peer])
                time.sleep(1)
                seen = peer.received()
                self.assertNotRegex(seen, rb"(?im)^AUTH\b", seen[:2000])
                self.assertNotIn(PASSWORD.encode(), seen)
                import base64
                self.assertNotIn(base64.b64encode(
                    f"\0{USER}\0{PASSWORD}".encode()), seen)
                self.assertNotRegex(seen, rb"(?im)^MAIL FROM")
                self.assertEqual(peer.messages(), [])
                self.assertIn(qid, gw.queue_ids())
                gw.stop()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""STARTTLS, implicit TLS, SMTP AUTH and relay control.

Listeners: submission (STARTTLS, AUTH required), smtps (implicit TLS),
relay (plain, trusts 127.0.0.0/8), trusted2 (STARTTLS + AUTH required,
but trusts only 127.0.0.2/32) and clear (no TLS, AUTH allowed in the
clear, AUTH required).
"""
import smtplib

from ombudtest import DEFAULT_LISTENERS, GatewayTestCase, b64, main, message

LISTENERS = dict(DEFAULT_LISTENERS)
LISTENERS["trusted2"] = {"tls": "starttls", "auth": "yes",
                         "trusted_networks": "127.0.0.2/32"}
LISTENERS["clear"] = {"tls": "none", "auth": "yes",
                      "auth_requires_tls": "no"}


class AuthTLS(GatewayTestCase):

    def setUp(self):
        self.gw = self.gateway(listeners=LISTENERS)

    def plain(self, user=None, password=None):
        return "AUTH PLAIN " + b64("\0%s\0%s" % (user or self.gw.user,
                                                 password or
                                                 self.gw.password))

    def tls_client(self, listener="submission"):
        c = self.client(self.gw, listener)
        c.ehlo()
        c.cmd("STARTTLS", "220 2.0.0")
        c.starttls(self.gw.tls_context())
        return c

    def test_auth_not_advertised_before_starttls(self):
        c = self.client(self.gw, "submission")
        kw, _ = c.ehlo()
        self.assertIn("STARTTLS", kw)
        self.assertNotIn("AUTH", kw)
        c.cmd("STARTTLS", "220")
        c.starttls(self.gw.tls_context())
        kw, _ = c.ehlo()
        self.assertNotIn("STARTTLS", kw)
        self.assertIn("AUTH", kw)
        (auth,) = [l for l in c.transcript[-1][1] if "AUTH" in l]
        self.assertEqual(sorted(auth.split()[1:]), ["LOGIN", "PLAIN"])
        c.cmd("STARTTLS", "5")                # no second STARTTLS

    def test_auth_before_tls_is_538(self):
        c = self.client(self.gw, "submission")
        c.dialogue([
            ("EHLO client.test", "250"),
            (self.plain(), "538 5.7.11"),
            ("AUTH LOGIN", "538 5.7.11"),
            ("MAIL FROM:<a@example.com>", "530 5.7.0"),
        ])

    def test_no_open_relay(self):
        # no AUTH: MAIL is refused before and after TLS, on both listeners
        c = self.client(self.gw, "submission")
        c.dialogue([("EHLO client.test", "250"),
                    ("MAIL FROM:<a@example.com>", "530 5.7.0"),
                    ("RCPT TO:<b@example.net>", "503"),
                    ("DATA", "503")])
        c = self.tls_client()
        c.ehlo()
        c.dialogue([("MAIL FROM:<a@example.com>", "530 5.7.0"),
                    ("MAIL FROM:<>", "530 5.7.0"),
                    ("RCPT TO:<b@example.net>", "503")])
        c = self.client(self.gw, "smtps")
        c.ehlo()
        c.cmd("MAIL FROM:<a@example.com>", "530 5.7.0")
        c = self.client(self.gw, "clear")
        c.ehlo()
        c.cmd("MAIL FROM:<a@example.com>", "530 5.7.0")
        self.assertEqual(self.gw.queue_list(), [])

    def test_wrong_password_535(self):
        c = self.tls_client()
        c.ehlo()
        c.dialogue([
            (self.plain(password="wrong-" + self.gw.password), "535 5.7.8"),
            (self.plain(user="mallory"), "535 5.7.8"),
            ("AUTH LOGIN", "334"), (b64(self.gw.user), "334"),
            (b64("nope"), "535 5.7.8"),
            ("MAIL FROM:<a@example.com>", "530 5.7.0"),
            (self.plain(), "235 2.7.0"),
            (self.plain(), "503"),                       # already done
            ("MAIL FROM:<a@example.com>", "250 2.1.0"),
        ])

    def test_auth_cancel_and_bad_base64(self):
        c = self.tls_client()
        c.ehlo()
        c.dialogue([
            ("AUTH PLAIN", "334"), ("*", "501"),
            ("AUTH PLAIN !!!notbase64", "501"),
            ("AUTH CRAM-MD5", "504"),
            ("AUTH LOGIN", "334"), ("*", "501"),
            ("NOOP", "250"),
        ])

    def test_starttls_submission_plain_and_login(self):
        ids = []
        for mech in ("PLAIN", "LOGIN"):
            c = self.gw.connect_auth("submission", mech)
            self.addCleanup(c.close)
            ids.append(c.submit(message(subject=mech)))
        entries = {e["id"]: e for e in self.gw.queue_list()}
        self.assertEqual(set(entries), set(ids))
        for qid in ids:
            self.assertEqual(entries[qid]["user"], self.gw.user)
            content = self.gw.queue_show(qid)["content"]
            self.assertTrue(content.startswith("Received: from "), content)
            self.assertIn(f"with ESMTPSA id {qid}", content)

    def test_implicit_tls(self):
        c = self.client(self.gw, "smtps")        # TLS from the first byte
        kw, _ = c.ehlo()
        self.assertNotIn("STARTTLS", kw)
        self.assertIn("AUTH", kw)
        c.dialogue([("AUTH LOGIN", "334 VXNlcm5hbWU6"),
                    (b64(self.gw.user), "334 UGFzc3dvcmQ6"),
                    (b64(self.gw.password), "235 2.7.0")])
        qid = c.submit(message(subject="implicit"))
        self.assertEqual(self.gw.queue_ids(), {qid})
        self.assertIn(f"with ESMTPSA id {qid}",
                      self.gw.queue_show(qid)["content"])

    def test_plaintext_on_implicit_tls_port_fails(self):
        from ombudtest import Client
        c = Client("127.0.0.1", self.gw.port("smtps"), timeout=5)
        self.addCleanup(c.close)
        c.send("EHLO client.test")
        # the server speaks TLS only: no SMTP reply to a clear command
        try:
            r = c.reply(timeout=3)
        except AssertionError:
            return
        self.fail(f"got an SMTP reply in the clear: {r!r}")

    def test_trusted_networks_bypass(self):
        # 127.0.0.2 is trusted on listener trusted2: MAIL without AUTH
        c = self.client(self.gw, "trusted2", source="127.0.0.2")
        c.ehlo()
        qid = c.submit(message(subject="trusted"))
        # 127.0.0.1 is not
        c1 = self.client(self.gw, "trusted2", source="127.0.0.1")
        c1.ehlo()
        c1.cmd("MAIL FROM:<a@example.com>", "530 5.7.0")
        (e,) = self.gw.queue_list()
        self.assertEqual((e["id"], e["peer"], e["user"]),
                         (qid, "127.0.0.2", ""))

    def test_starttls_pipelining_injection(self):
        # commands pipelined after STARTTLS arrived in the clear and must
        # be discarded, not executed inside the TLS session
        c = self.client(self.gw, "submission")
        c.ehlo()
        c.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<inject@evil.example>\r\n")
        c.expect("220 2.0.0")
        c.starttls(self.gw.tls_context())
        c.send("EHLO client.test")
        c.expect("250 gw.test")          # the EHLO reply comes first
        c.cmd("NOOP", "250 2.0.0")
        self.assertNotIn("evil.example", self.gw.log_text())

    def test_clear_auth_when_allowed(self):
        c = self.client(self.gw, "clear")
        kw, _ = c.ehlo()
        self.assertIn("AUTH", kw)
        self.assertNotIn("STARTTLS", kw)
        c.cmd(self.plain(), "235 2.7.0")
        qid = c.submit()
        content = self.gw.queue_show(qid)["content"]
        self.assertIn(f"with ESMTPA id {qid}", content)

    def test_auth_on_listener_without_auth(self):
        c = self.client(self.gw, "relay")
        c.ehlo()
        c.cmd(self.plain(), "503")

    def test_quit_over_starttls_gets_221(self):
        c = self.tls_client()
        c.ehlo()
        c.cmd("QUIT", "221 2.0.0")
        c.expect_closed()

    def test_quit_over_implicit_tls_gets_221(self):
        c = self.client(self.gw, "smtps")
        c.ehlo()
        c.cmd("QUIT", "221 2.0.0")
        c.expect_closed()

    def test_smtplib_client(self):
        # an ordinary client library: STARTTLS + login + sendmail + quit
        s = smtplib.SMTP("127.0.0.1", self.gw.port("submission"),
                         timeout=10)
        self.addCleanup(s.close)
        s.starttls(context=self.gw.tls_context())   # SAN has 127.0.0.1
        s.login(self.gw.user, self.gw.password)
        refused = s.sendmail("a@example.com", ["b@example.net"],
                             message(subject="smtplib"))
        self.assertEqual(refused, {})
        code, _ = s.quit()
        self.assertEqual(code, 221)
        (e,) = self.gw.queue_list()
        self.assertEqual(e["user"], self.gw.user)


class TLSClose(GatewayTestCase):
    """The last reply before a close must get out through TLS too."""

    def test_idle_timeout_over_starttls(self):
        gw = self.gateway(overrides={"timeout_command": "2s"})
        c = self.client(gw, "submission")
        c.ehlo()
        c.cmd("STARTTLS", "220")
        c.starttls(gw.tls_context())
        c.expect("421 4.4.2", timeout=10)
        c.expect_closed()

    def test_shutdown_421_over_tls(self):
        gw = self.gateway()
        a = self.client(gw, "submission")
        a.ehlo()
        a.cmd("STARTTLS", "220")
        a.starttls(gw.tls_context())
        a.ehlo()
        b = self.client(gw, "smtps")
        b.ehlo()
        gw.signal(15)
        a.expect("421 4.3.2")
        b.expect("421 4.3.2")
        a.expect_closed()
        b.expect_closed()
        self.assertEqual(gw.proc.wait(30), 0)
        gw.assert_clean_log()


if __name__ == "__main__":
    main()

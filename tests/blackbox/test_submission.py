#!/usr/bin/python3
"""End-to-end submission with a real client (swaks), and the queue CLI.

swaks submits over STARTTLS with AUTH PLAIN and AUTH LOGIN and over
implicit TLS, verifying the gateway's certificate; the queue id of each
250 reply must appear in `ombud queue list`, and `ombud queue show` must
have the content with a Received header prepended.
"""
import base64
import re
import shutil
import unittest

from ombudtest import GatewayTestCase, QID_RE, main, message, run

SWAKS = shutil.which("swaks")


@unittest.skipUnless(SWAKS, "swaks is not installed (apt-get install swaks)")
class Swaks(GatewayTestCase):

    def setUp(self):
        self.gw = self.gateway()

    def swaks(self, listener, *extra, subject="swaks test",
              body="Hello from swaks.\nSecond line.\n"):
        args = [SWAKS, "--server", "127.0.0.1",
                "--port", str(self.gw.port(listener)),
                "--ehlo", "client.test",
                "--from", "sender@example.com",
                "--to", "rcpt@example.net",
                "--header", f"Subject: {subject}",
                "--body", body,
                "--tls-verify", "--tls-ca-path", self.gw.cert,
                "--tls-sni", "localhost",
                "--timeout", "20"] + list(extra)
        p = run(args, timeout=60)
        out = p.stdout + p.stderr
        ids = re.findall(r"<~\s+250 2\.0\.0 Ok: queued as (\S+)", out)
        self.assertEqual(len(ids), 1, f"swaks exit {p.returncode}:\n{out}")
        self.assertRegex(ids[0], QID_RE)
        return ids[0], p.returncode, out

    def check_queued(self, qid, proto, subject):
        entries = {e["id"]: e for e in self.gw.queue_list()}
        self.assertIn(qid, entries)
        e = entries[qid]
        self.assertEqual(e["from"], "sender@example.com")
        self.assertEqual([r["address"] for r in e["recipients"]],
                         ["rcpt@example.net"])
        self.assertEqual(e["user"], self.gw.user)
        self.assertEqual(e["peer"], "127.0.0.1")
        # human-readable list mentions it too
        p = self.gw.ombud("queue", "list", "-c", self.gw.conf_path)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(qid, p.stdout)
        # queue show: Received header first, then the message as sent
        p = self.gw.ombud("queue", "show", "-c", self.gw.conf_path, qid)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("Received: from client.test", p.stdout)
        content = self.gw.queue_show(qid)["content"]
        self.assertTrue(content.startswith("Received: from client.test "
                                           "([127.0.0.1])"), content)
        received = content.split("\r\n\t(")[0]
        self.assertIn(f"by gw.test (ombud) with {proto} id {qid}",
                      received)
        self.assertIn(f"Subject: {subject}\r\n", content)
        self.assertIn("\r\n\r\nHello from swaks.\r\nSecond line.\r\n",
                      content)
        self.assertEqual(e["size"], len(content.encode()))

    def test_starttls_auth_plain(self):
        qid, rc, out = self.swaks("submission", "--tls", "--auth", "PLAIN",
                                  "--auth-user", self.gw.user,
                                  "--auth-password", self.gw.password,
                                  subject="plain")
        self.check_queued(qid, "ESMTPSA", "plain")
        self.assertEqual(rc, 0, f"swaks failed after the 250 (QUIT?):\n"
                         f"{out[-600:]}")

    def test_starttls_auth_login(self):
        qid, rc, out = self.swaks("submission", "--tls", "--auth", "LOGIN",
                                  "--auth-user", self.gw.user,
                                  "--auth-password", self.gw.password,
                                  subject="login")
        self.check_queued(qid, "ESMTPSA", "login")
        self.assertEqual(rc, 0, f"swaks failed after the 250 (QUIT?):\n"
                         f"{out[-600:]}")

    def test_implicit_tls_auth(self):
        qid, rc, out = self.swaks("smtps", "--tls-on-connect", "--auth",
                                  "PLAIN", "--auth-user", self.gw.user,
                                  "--auth-password", self.gw.password,
                                  subject="tlsc")
        self.check_queued(qid, "ESMTPSA", "tlsc")
        self.assertEqual(rc, 0, out[-600:])

    def test_pipelining_client(self):
        qid, rc, out = self.swaks("submission", "--tls", "--pipeline",
                                  "--auth", "PLAIN",
                                  "--auth-user", self.gw.user,
                                  "--auth-password", self.gw.password,
                                  subject="pipelined")
        self.check_queued(qid, "ESMTPSA", "pipelined")

    def test_no_auth_is_refused(self):
        p = run([SWAKS, "--server", "127.0.0.1",
                 "--port", str(self.gw.port("submission")), "--tls",
                 "--from", "a@example.com", "--to", "b@example.net",
                 "--timeout", "20"], timeout=60)
        out = p.stdout + p.stderr
        self.assertRegex(out, r"<[*~]\*\s+530 5\.7\.0")
        self.assertEqual(p.returncode, 23, out)      # error in MAIL
        self.assertEqual(self.gw.queue_list(), [])


class QueueCLI(GatewayTestCase):

    def test_show_json_8bit_not_utf8(self):
        # Latin-1 content cannot be a JSON string: it must come out
        # byte-exact as content_base64, not silently missing
        gw = self.gateway()
        c = self.client(gw)
        c.ehlo()
        body = "Hyresg\u00e4st: v\u00e4lkommen\r\n".encode("latin-1")
        msg = (b"From: <a@example.com>\r\nTo: <b@example.net>\r\n"
               b"Subject: latin1\r\n\r\n" + body)
        qid = c.submit(msg)
        shown = gw.queue_show(qid)
        self.assertNotIn("content", shown)
        raw = base64.b64decode(shown["content_base64"])
        self.assertTrue(raw.endswith(b"\r\n\r\n" + body), raw)
        self.assertEqual(shown["size"], len(raw))

    def test_list_show_delete(self):
        gw = self.gateway()
        c = self.client(gw)
        c.ehlo()
        ids = [c.submit(message(subject=f"m{i}")) for i in range(3)]
        self.assertEqual(gw.queue_ids(), set(ids))
        p = gw.ombud("queue", "list", "-c", gw.conf_path)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("-- 3 messages", p.stdout)
        # show of an unknown / malformed id fails
        p = gw.ombud("queue", "show", "-c", gw.conf_path, "0" * 20)
        self.assertEqual(p.returncode, 1, p.stdout)
        p = gw.ombud("queue", "show", "-c", gw.conf_path, "not-an-id")
        self.assertEqual(p.returncode, 1, p.stdout)
        # delete while the server runs (through its control socket)
        p = gw.ombud("queue", "delete", "-c", gw.conf_path, ids[0])
        self.assertEqual((p.returncode, p.stdout.strip()),
                         (0, f"{ids[0]}: deleted"),
                         f"queue delete with a running server: {p.stderr}")
        self.assertEqual(gw.queue_ids(), set(ids[1:]))

    def test_delete_without_server(self):
        gw = self.gateway()
        c = self.client(gw)
        c.ehlo()
        ids = [c.submit(message(subject=f"m{i}")) for i in range(2)]
        c.cmd("QUIT", "221")
        gw.stop()
        p = gw.ombud("queue", "delete", "-c", gw.conf_path, ids[0])
        self.assertEqual((p.returncode, p.stdout.strip()),
                         (0, f"{ids[0]}: deleted"), p.stderr)
        self.assertEqual(gw.queue_ids(), {ids[1]})
        p = gw.ombud("queue", "delete", "-c", gw.conf_path, ids[0])
        self.assertEqual(p.returncode, 1, p.stdout)   # already gone
        p = gw.ombud("queue", "list", "-c", gw.conf_path)
        self.assertIn("-- 1 message\n", p.stdout)
        # deletion survives a restart
        gw.start()
        self.assertEqual(gw.queue_ids(), {ids[1]})

    def test_empty_queue_and_version(self):
        gw = self.gateway()
        p = gw.ombud("queue", "list", "-c", gw.conf_path)
        self.assertEqual((p.returncode, p.stdout), (0,
                                                    "Mail queue is empty\n"))
        self.assertEqual(gw.queue_list(), [])
        p = gw.ombud("version")
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout, r"^ombud \d+\.\d+\.\d+")


if __name__ == "__main__":
    main()

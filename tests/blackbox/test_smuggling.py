#!/usr/bin/python3
"""SMTP smuggling: only CRLF "." CRLF ends DATA.

A message that contains a bare-LF / bare-CR variant of the end-of-data
sequence followed by a smuggled transaction must not end there: the
server keeps reading until the real CRLF.CRLF, then rejects the whole
message with 550 5.6.0, queues nothing, and never executes the smuggled
commands (no reply for them, nothing in the log, nothing in the spool).
"""
from ombudtest import GatewayTestCase, data_block, main, message

SEPARATORS = {
    "lf-dot-lf": b"\n.\n",
    "cr-dot-cr": b"\r.\r",
    "crlf-dot-lf": b"\r\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-cr": b"\r\n.\r",
}

SMUGGLED = (b"MAIL FROM:<smuggled@evil.example>\r\n"
            b"RCPT TO:<victim@example.org>\r\n"
            b"DATA\r\n"
            b"From: <ceo@example.com>\r\n"
            b"Subject: smuggled\r\n"
            b"\r\n"
            b"pay the invoice\r\n")


class Smuggling(GatewayTestCase):

    def setUp(self):
        self.gw = self.gateway()
        self.clean = set()      # ids of the clean messages queued so far

    def open_data(self, listener="relay"):
        c = self.client(self.gw, listener)
        c.dialogue([("EHLO client.test", "250"),
                    ("MAIL FROM:<a@example.com>", "250"),
                    ("RCPT TO:<b@example.net>", "250"),
                    ("DATA", "354")])
        return c

    def check_variant(self, name, sep, listener="relay"):
        c = self.open_data(listener)
        c.send(b"From: <a@example.com>\r\nSubject: innocent\r\n\r\n"
               b"hello" + sep + SMUGGLED)
        # the data has not ended: no reply to anything yet
        c.expect_silence(0.7)
        c.send(b".\r\n")                      # the real end of data
        c.expect("550 5.6.0")
        # the smuggled MAIL/RCPT/DATA were content: the next reply is ours
        c.cmd("NOOP", "250 2.0.0")
        # and the session is usable: a clean message is accepted
        c.cmd("MAIL FROM:<a@example.com>", "250 2.1.0")
        c.cmd("RCPT TO:<b@example.net>", "250 2.1.5")
        c.cmd("DATA", "354")
        c.send(data_block(message(subject=f"clean after {name}")))
        qid = c.expect("250 2.0.0 Ok: queued as ").last.split()[-1]
        c.cmd("QUIT", "221")
        self.clean.add(qid)
        entries = self.gw.queue_list()
        self.assertEqual({e["id"] for e in entries}, self.clean,
                         f"{name}: only the clean messages may be queued")
        for e in entries:
            self.assertEqual(e["from"], "a@example.com")
            self.assertEqual([r["address"] for r in e["recipients"]],
                             ["b@example.net"])
        self.assertNotIn("evil.example", self.gw.log_text())
        self.assertNotIn("victim@", self.gw.log_text())

    def test_variants(self):
        for name, sep in SEPARATORS.items():
            with self.subTest(name):
                self.check_variant(name, sep)

    def test_variants_over_tls(self):
        for name, sep in [("lf-dot-lf", b"\n.\n"),
                          ("crlf-dot-lf", b"\r\n.\n")]:
            with self.subTest(name):
                c = self.gw.connect_auth("smtps")
                self.addCleanup(c.close)
                c.dialogue([("MAIL FROM:<a@example.com>", "250"),
                            ("RCPT TO:<b@example.net>", "250"),
                            ("DATA", "354")])
                c.send(b"Subject: x\r\n\r\nhello" + sep + SMUGGLED)
                c.expect_silence(0.7)
                c.send(b".\r\n")
                c.expect("550 5.6.0")
                c.cmd("NOOP", "250")
                self.assertEqual(self.gw.queue_list(), [])

    def test_separator_at_start_of_data(self):
        # ".\n" right after 354 is no end either
        c = self.open_data()
        c.send(b".\n" + SMUGGLED)
        c.expect_silence(0.7)
        c.send(b".\r\n")
        c.expect("550 5.6.0")
        c.cmd("NOOP", "250")
        self.assertEqual(self.gw.queue_list(), [])

    def test_bare_lf_anywhere_rejects(self):
        c = self.open_data()
        c.send(b"Subject: lf\r\n\r\nline one\nline two\r\n.\r\n")
        c.expect("550 5.6.0")
        c.cmd("NOOP", "250")
        self.assertEqual(self.gw.queue_list(), [])

    def test_bare_cr_anywhere_rejects(self):
        c = self.open_data()
        c.send(b"Subject: cr\r\n\r\nline one\rline two\r\n.\r\n")
        c.expect("550 5.6.0")
        c.cmd("NOOP", "250")
        self.assertEqual(self.gw.queue_list(), [])

    def test_end_split_across_packets(self):
        # CRLF.CRLF delivered one byte at a time still ends the data
        c = self.open_data()
        c.send(b"Subject: split\r\n\r\nbody")
        for b in (b"\r", b"\n", b".", b"\r", b"\n"):
            c.expect_silence(0.05)
            c.send(b)
        c.expect("250 2.0.0 Ok: queued as ")
        self.assertEqual(len(self.gw.queue_list()), 1)


if __name__ == "__main__":
    main()

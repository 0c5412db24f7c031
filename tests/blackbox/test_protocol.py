#!/usr/bin/python3
"""SMTP protocol behaviour of `ombud serve`, as scripted dialogues.

Each dialogue is data: a list of (send, expected reply prefix) pairs run
against the plain `relay` listener (trusted 127.0.0.0/8, no AUTH), unless
a test says otherwise.  Replies are matched on 'CODE enhanced-code ...'.
"""
import time

from ombudtest import (GatewayTestCase, data_block, main, message,
                       queue_id_of)

EHLO = ("EHLO client.test", "250")
MAIL = ("MAIL FROM:<a@example.com>", "250 2.1.0")
RCPT = ("RCPT TO:<b@example.net>", "250 2.1.5")
DATA = ("DATA", "354")


class Protocol(GatewayTestCase):

    def setUp(self):
        self.gw = self.gateway(overrides={"max_recipients": 5,
                                          "max_message_size": "64K",
                                          "max_errors": 3})

    def run_dialogue(self, steps, listener="relay"):
        c = self.client(self.gw, listener)
        return c, c.dialogue(steps)

    def test_greeting_and_ehlo_keywords(self):
        c, (r,) = self.run_dialogue([EHLO])
        self.assertEqual(r.lines[0].split()[0], "gw.test")
        kw = [l.upper() for l in r.lines[1:]]
        for k in ("PIPELINING", "SIZE 65536", "8BITMIME",
                  "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN"):
            self.assertIn(k, kw)
        # plain listener without AUTH: neither STARTTLS nor AUTH
        self.assertFalse([k for k in kw if k.startswith(("STARTTLS",
                                                         "AUTH"))], kw)

    def test_helo(self):
        self.run_dialogue([
            ("HELO client.test", "250 gw.test"),
            MAIL, RCPT, DATA,
            (data_block(message()), "250 2.0.0 Ok: queued as "),
            ("QUIT", "221 2.0.0"),
        ])

    def test_pipelined_transaction_in_one_packet(self):
        c, _ = self.run_dialogue([EHLO])
        c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\n"
               b"RCPT TO:<c@example.net>\r\nDATA\r\n")
        for want in ("250 2.1.0", "250 2.1.5", "250 2.1.5", "354"):
            c.expect(want)
        c.send(data_block(message(subject="pipelined")))
        qid = queue_id_of(c.expect("250 2.0.0 Ok: queued as "))
        # the whole transaction, content and QUIT in a single write
        c.send(b"RSET\r\nMAIL FROM:<x@example.com>\r\n"
               b"RCPT TO:<y@example.net>\r\nDATA\r\n"
               + data_block(message(subject="one packet")) + b"QUIT\r\n")
        replies = [c.reply() for _ in range(6)]
        self.assertEqual([r.code for r in replies],
                         [250, 250, 250, 354, 250, 221], replies)
        qid2 = queue_id_of(replies[4])
        c.expect_closed()
        entries = {e["id"]: e for e in self.gw.queue_list()}
        self.assertEqual(set(entries), {qid, qid2})
        self.assertEqual([r["address"] for r in entries[qid]["recipients"]],
                         ["b@example.net", "c@example.net"])
        self.assertEqual(entries[qid2]["from"], "x@example.com")

    def test_rset_noop_help_vrfy(self):
        self.run_dialogue([
            ("NOOP", "250 2.0.0"),
            EHLO, MAIL, RCPT,
            ("RSET", "250 2.0.0"),
            ("RCPT TO:<b@example.net>", "503 5.5.1"),   # RSET ended it
            ("DATA", "503 5.5.1"),
            ("NOOP", "250 2.0.0"),
            ("HELP", "214"),
            ("VRFY b@example.net", "252"),
            MAIL,                                       # RSET kept EHLO
            ("QUIT", "221"),
        ])
        self.assertEqual(self.gw.queue_list(), [])

    def test_unknown_commands(self):
        c, _ = self.run_dialogue([
            ("FROB", "500 5.5.2"),
            ("EHLO client.test", "250"),
            ("MAIL TO:<a@example.com>", "501 5.5.4"),   # syntax
            ("NOOP", "250"),
        ])

    def test_bad_sequences(self):
        self.run_dialogue([
            ("MAIL FROM:<a@example.com>", "503 5.5.1"),  # before EHLO
            ("RCPT TO:<b@example.net>", "503 5.5.1"),
            ("DATA", "503 5.5.1"),
        ])
        self.run_dialogue([
            EHLO,
            ("RCPT TO:<b@example.net>", "503 5.5.1"),    # before MAIL
            ("DATA", "503 5.5.1"),                       # before MAIL
            MAIL,
            ("MAIL FROM:<a@example.com>", "503 5.5.1"),  # nested MAIL
        ])
        # DATA after MAIL without RCPT: RFC 5321 allows 503 or 554
        c, _ = self.run_dialogue([EHLO, MAIL])
        r = c.cmd("DATA", "5")
        self.assertIn(r.code, (503, 554), r)
        c.dialogue([("DATA x", "501"), ("NOOP", "250")])

    def test_mail_parameters(self):
        self.run_dialogue([
            EHLO,
            ("MAIL FROM:<a@example.com> SIZE=65537", "552 5.3.4"),
            ("MAIL FROM:<a@example.com> FROB=yes", "555 5.5.4"),
            ("MAIL FROM:<a@example.com> SIZE=65536 BODY=8BITMIME",
             "250 2.1.0"),
            ("RSET", "250"),
            ("MAIL FROM:<a@example.com> SIZE=x", "501 5.5.4"),
            ("MAIL FROM:<a@example.com> RET=HDRS ENVID=abc", "250 2.1.0"),
            ("RCPT TO:<b@example.net> NOTIFY=NEVER", "250 2.1.5"),
            ("RCPT TO:<c@example.net> FROB=1", "555 5.5.4"),
        ])
        # ESMTP parameters after plain HELO are refused
        self.run_dialogue([
            ("HELO client.test", "250"),
            ("MAIL FROM:<a@example.com> SIZE=100", "555"),
        ])

    def test_recipient_limit(self):
        steps = [EHLO, MAIL]
        steps += [(f"RCPT TO:<r{i}@example.net>", "250 2.1.5")
                  for i in range(5)]
        steps += [("RCPT TO:<r5@example.net>", "452 4.5.3"),
                  ("RCPT TO:<r6@example.net>", "452 4.5.3"), DATA,
                  (data_block(message()), "250 2.0.0 Ok: queued as ")]
        c, replies = self.run_dialogue(steps)
        qid = queue_id_of(replies[-1])
        (e,) = self.gw.queue_list()
        self.assertEqual(e["id"], qid)
        self.assertEqual([r["address"] for r in e["recipients"]],
                         [f"r{i}@example.net" for i in range(5)])

    def test_null_sender_and_recipient(self):
        c, replies = self.run_dialogue([
            EHLO,
            ("MAIL FROM:<>", "250 2.1.0"),
            ("RCPT TO:<>", "553"),                       # null recipient
            ("RCPT TO:<postmaster@example.net>", "250"),
            DATA,
            (data_block(message(sender="")), "250 2.0.0 Ok: queued as "),
        ])
        (e,) = self.gw.queue_list()
        self.assertEqual(e["id"], queue_id_of(replies[-1]))
        self.assertEqual(e["from"], "")

    def test_message_too_big(self):
        big = message(body=("x" * 78 + "\r\n") * 1000)   # ~80 KB > 64K
        c, _ = self.run_dialogue([
            EHLO, MAIL, RCPT, DATA,
            (data_block(big), "552 5.3.4"),
            ("NOOP", "250"),                  # session goes on
            MAIL, RCPT, DATA,
            (data_block(message()), "250 2.0.0 Ok: queued as "),
        ])
        self.assertEqual(len(self.gw.queue_list()), 1)

    def test_dot_stuffing_roundtrip(self):
        body = ".leading dot\r\n..two dots\r\n.\tdot tab\r\nend\r\n"
        c, replies = self.run_dialogue([
            EHLO, MAIL, RCPT, DATA,
            (data_block(message(body=body)), "250 2.0.0 Ok: queued as "),
        ])
        content = self.gw.queue_show(queue_id_of(replies[-1]))["content"]
        self.assertTrue(content.endswith("\r\n\r\n" + body), content)

    def test_max_errors_disconnect(self):
        # max_errors = 3: three errors are tolerated, then 421 and close
        c, _ = self.run_dialogue([
            ("FROB1", "500"), ("FROB2", "500"), ("FROB3", "500"),
            ("NOOP", "250"),
        ])
        c.send("FROB4")
        r = c.reply()
        if r.code == 500:         # the error itself, then the 421
            r = c.reply()
        self.assertEqual(r.code, 421, r)
        self.assertTrue(r.text.startswith("421 4."), r)
        c.expect_closed()

    def test_command_line_too_long(self):
        c, _ = self.run_dialogue([
            EHLO,
            ("NOOP " + "x" * 3000, "500 5.5.2"),
            ("NOOP", "250"),                   # the session survives
            ("MAIL FROM:<%s@example.com>" % ("a" * 2100), "500 5.5.2"),
            MAIL,
        ])
        # a long line that arrives in pieces, without CRLF for a while
        c.send(b"NOOP " + b"y" * 2500)
        time.sleep(0.2)
        c.send(b"y" * 2500 + b"\r\nRSET\r\n")
        c.expect("500 5.5.2")
        c.expect("250")

    def test_bare_lf_command(self):
        self.run_dialogue([
            (b"EHLO client.test\n", "500 5.5.2"),
            ("NOOP", "250"),
        ])

    def test_quit(self):
        c, _ = self.run_dialogue([EHLO, ("QUIT", "221 2.0.0")])
        c.expect_closed()

    def test_starttls_not_offered_on_plain_listener(self):
        self.run_dialogue([EHLO, ("STARTTLS", "502"), ("NOOP", "250")])


class IdleTimeout(GatewayTestCase):

    def test_idle_timeout(self):
        gw = self.gateway(overrides={"timeout_command": "2s"})
        c = self.client(gw)
        c.cmd("EHLO client.test", "250")
        t0 = time.monotonic()
        r = c.expect("421 4.4.2", timeout=10)
        elapsed = time.monotonic() - t0
        c.expect_closed()
        self.assertGreater(elapsed, 1.5, r)
        self.assertLess(elapsed, 6, r)

    def test_idle_timeout_before_greeting_reply(self):
        gw = self.gateway(overrides={"timeout_command": "2s"})
        c = self.client(gw)
        c.expect("421 4.4.2", timeout=10)
        c.expect_closed()

    def test_timeout_in_data(self):
        gw = self.gateway(overrides={"timeout_command": "2s",
                                     "timeout_data": "2s"})
        c = self.client(gw)
        c.dialogue([EHLO, MAIL, RCPT, DATA])
        c.send(b"Subject: half\r\n\r\nnot finished\r\n")
        c.expect("421 4.4.2", timeout=10)
        c.expect_closed()
        self.assertEqual(gw.queue_list(), [])


class Limits(GatewayTestCase):

    def test_sessions_per_ip(self):
        gw = self.gateway(overrides={"max_sessions_per_ip": 2})
        a = self.client(gw)
        b = self.client(gw)
        c = self.client(gw, greeting=False)
        c.expect("421 4.3.2")
        c.expect_closed()
        # another loopback address is another client
        d = self.client(gw, source="127.0.0.2")
        d.cmd("NOOP", "250")
        a.cmd("QUIT", "221")
        a.expect_closed()
        gw.wait_log(r"event=smtp\.disconnect")
        e = self.client(gw)          # a slot is free again
        e.cmd("NOOP", "250")
        b.cmd("NOOP", "250")

    def test_max_sessions(self):
        gw = self.gateway(overrides={"max_sessions": 2})
        a = self.client(gw, source="127.0.0.2")
        b = self.client(gw, source="127.0.0.3")
        c = self.client(gw, source="127.0.0.4", greeting=False)
        c.expect("421 4.3.2")
        c.expect_closed()
        a.cmd("NOOP", "250")
        b.cmd("NOOP", "250")

    def test_max_commands(self):
        gw = self.gateway(overrides={"max_commands": 10})   # the minimum
        c = self.client(gw)
        c.dialogue([("NOOP", "250")] * 10)
        c.send("NOOP")
        c.expect("421 4.7.0")
        c.expect_closed()

    def test_long_content_line(self):
        gw = self.gateway(overrides={"max_line_length": 100})
        c = self.client(gw)
        c.dialogue([EHLO, MAIL, RCPT, DATA,
                    (data_block(message(body="x" * 100 + "\r\n")),
                     "250 2.0.0 Ok: queued as "),
                    MAIL, RCPT, DATA,
                    (data_block(message(body="x" * 101 + "\r\n")), "5"),
                    ("NOOP", "250")])
        self.assertEqual(len(gw.queue_list()), 1)

    def test_header_count(self):
        gw = self.gateway(overrides={"max_header_count": 10})
        c = self.client(gw)
        many = [f"X-H{i}: v" for i in range(20)]
        c.dialogue([EHLO, MAIL, RCPT, DATA,
                    (data_block(message(headers=many)), "552 5.3.4"),
                    ("NOOP", "250")])
        self.assertEqual(gw.queue_list(), [])


if __name__ == "__main__":
    main()

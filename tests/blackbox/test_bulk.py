#!/usr/bin/python3
"""The header checks at the end of DATA (src/smtp/bulk.c), on the real
server: each rule with its exact SMTP reply, and the fields ombud adds or
removes as they are spooled (`ombud queue show`) and as they arrive at an
MX (smtp-sink):

- a missing Date or Message-ID is added (right after Received; the
  client's bytes follow unchanged); a present but invalid one is 550
  5.6.0; more than one of a field RFC 5322 3.6 allows once is 550 5.6.0;
- mail marked as bulk (Precedence: bulk|list, X-Ombud-Bulk: yes) needs a
  List-Unsubscribe with an https: or mailto: URI (550 5.7.1 naming the
  Gmail/Yahoo requirement, or a logged warning with bulk_unsubscribe =
  warn); with an https: URI, List-Unsubscribe-Post: List-Unsubscribe=
  One-Click is added (RFC 8058); X-Ombud-Bulk never leaves the gateway;
- the header From of a company's mail must be one of its domains (the
  tenant policy, issue 4) also for bulk mail.
"""
import email.utils
import os
import re
import time
import unittest

from ombudtest import (GatewayTestCase, QID_RE, data_block, main,
                       queue_id_of)
from peers import (DNSMASQ, SMTP_SINK, DeliveryTestCase, have,
                   parse_events)

DATE = "Date: Mon, 23 Nov 2026 10:00:00 +0100"
MSGID = "Message-ID: <bulk-test.1@example.com>"
BASE = ["From: News <news@example.com>", "To: <b@example.net>",
        "Subject: bulk test"]
UNSUB_HTTPS = ("List-Unsubscribe: <https://example.com/u?id=42>,\r\n"
               " <mailto:unsub@example.com?subject=unsubscribe>")

BAD_DATE = ("550 5.6.0 The Date header field is not a valid RFC 5322 "
            "date-time (e.g. Mon, 2 Sep 2024 10:00:00 +0200)")
BAD_MSGID = ("550 5.6.0 The Message-ID header field is not a valid RFC "
             "5322 msg-id (<left@right>)")
NO_UNSUB = ("550 5.7.1 Bulk mail ({why}) must have a List-Unsubscribe "
            "header field with an https: or mailto: URI in angle brackets: "
            "Gmail and Yahoo bulk-sender requirement (RFC 2369, RFC 8058)")


def dup(field):
    return (f"550 5.6.0 The message has more than one {field} header "
            "field (RFC 5322 3.6 allows one)")


def msg(fields, body="Hello.\r\n"):
    return ("\r\n".join(fields) + "\r\n\r\n" + body).encode()


def header_of(content):
    """The header section of a spooled message as [(name, value)], the
    values unfolded."""
    head = content.split("\r\n\r\n", 1)[0]
    head = re.sub(r"\r\n[ \t]", " ", head)
    return [(k, v.strip()) for k, _, v in
            (line.partition(":") for line in head.split("\r\n"))]


class Bulk(GatewayTestCase):

    def setUp(self):
        self.gw = self.gateway()

    def submit(self, m, gw=None):
        """DATA with m; the reply to the end of data."""
        gw = gw or self.gw
        with gw.connect("relay") as c:
            c.ehlo("client.test")
            c.cmd("MAIL FROM:<news@example.com>", "250")
            c.cmd("RCPT TO:<b@example.net>", "250")
            c.cmd("DATA", "354")
            c.send(data_block(m))
            r = c.reply()
            c.cmd("QUIT", "221")
        return r

    def accepted(self, m, gw=None):
        """Submit m, expect 250; the spooled content."""
        gw = gw or self.gw
        r = self.submit(m, gw)
        self.assertTrue(r.text.startswith("250 2.0.0 Ok: queued as "), r)
        qid = queue_id_of(r)
        content = gw.queue_show(qid)["content"]
        return qid, content

    def rejected(self, m, reply, gw=None):
        gw = gw or self.gw
        before = gw.queue_ids()
        r = self.submit(m, gw)
        self.assertEqual(r.raw, [reply], m)
        self.assertEqual(gw.queue_ids(), before, "a rejected message "
                         "was queued")

    # --- Date and Message-ID --------------------------------------------

    def test_missing_date_and_message_id_are_added(self):
        m = msg(BASE)
        t0 = time.time()
        qid, content = self.accepted(m)
        self.assertTrue(content.endswith(m.decode()), content)
        added = content[:len(content) - len(m)]
        lines = added.split("\r\n")
        self.assertTrue(lines[0].startswith("Received: from client.test"))
        h = dict(header_of(added + "\r\n"))
        self.assertRegex(h["Message-ID"],
                         rf"^<\d{{14}}\.{qid}@gw\.test>$")
        when = email.utils.parsedate_to_datetime(h["Date"]).timestamp()
        self.assertLess(abs(when - t0), 120, h["Date"])
        self.assertRegex(h["Date"], r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} "
                         r"\d{4} \d\d:\d\d:\d\d \+0000$")
        # each once, Date before Message-ID, right after Received
        names = [k for k, _ in header_of(content)]
        self.assertEqual(names[names.index("Received") + 1:][:2],
                         ["Date", "Message-ID"])
        self.assertEqual(names.count("Date"), 1)
        self.assertEqual(names.count("Message-ID"), 1)

    def test_present_fields_are_kept(self):
        m = msg(BASE + [DATE, MSGID])
        _, content = self.accepted(m)
        received, rest = content.split("\r\n", 1)[0], content
        self.assertTrue(received.startswith("Received: "))
        # nothing but the Received field in front of the client's bytes
        added = rest[:len(rest) - len(m)]
        self.assertTrue(rest.endswith(m.decode()))
        self.assertEqual([k for k, _ in header_of(added + "\r\n")],
                         ["Received"])

    def test_valid_date_forms(self):
        for d in ("Mon, 23 Nov 2026 10:00:00 +0100",
                  "23 Nov 2026 10:00 -0000",
                  "Sun, 29 Feb 2032 23:59:60 +1400",
                  " Mon (Monday) , 2 Sep 2024 10:00:00 +0200 (CEST)",
                  "Thu, 1 Jan 70 00:00:00 GMT",
                  "Fri, 13 Sep 24 10:00:00 EDT",
                  "mon, 2 sep 2024 10:00:00 Z",
                  "Mon, 02 Sep 2024 10:00:00\r\n +0200"):
            with self.subTest(date=d):
                self.accepted(msg(BASE + ["Date: " + d, MSGID]))

    def test_invalid_date_rejected(self):
        for d in ("", "yesterday", "2024-09-02T10:00:00Z",
                  "Mon, 2 Sep 2024 10:00:00",            # no zone
                  "Mon, 2 Sep 2024 10:00:00 +02",        # short zone
                  "Mon, 2 Sep 2024 10:00:00 UTC",        # not RFC 5322
                  "Mon, 2 Sep 2024 24:00:00 +0000",
                  "Mon, 2 Sep 2024 10:60:00 +0000",
                  "Mon, 31 Sep 2024 10:00:00 +0000",
                  "Fri, 29 Feb 2024 10:00:00 +0000",     # it was Thursday
                  "Sat, 29 Feb 2025 10:00:00 +0000",     # no 29 Feb
                  "Tue, 2 Sep 2024 10:00:00 +0000",      # it was Monday
                  "Mon, 2 Sept 2024 10:00:00 +0000",
                  "Mon 2 Sep 2024 10:00:00 +0000",       # no comma
                  "Mon, 2Sep 2024 10:00:00 +0000",
                  "Mon, 2 Sep 1899 10:00:00 +0000",
                  "Mon, 2 Sep 2024 10:00:00 +0000 extra",
                  "Mon, 2 Sep 2024 10:00:00 +0000 (open comment"):
            with self.subTest(date=d):
                self.rejected(msg(BASE + ["Date: " + d, MSGID]), BAD_DATE)

    def test_message_ids(self):
        for good in ("<a.b.c@example.com>", " <x@[192.0.2.1]> (comment)",
                     '<"quoted local"@example.com>',
                     "<!#$%&'*+-/=?^_`{|}~@x>"):
            with self.subTest(msgid=good):
                self.accepted(msg(BASE + [DATE, "Message-ID: " + good]))
        for bad in ("", "abc@example.com", "<abc>", "<abc@>", "<@example>",
                    "<a b@example.com>", "<a@b> <c@d>", "<a..b@example>",
                    "<a@b", "<a@b>>", "<.a@b>", "<a@b.>", "<a@[b c]>"):
            with self.subTest(msgid=bad):
                self.rejected(msg(BASE + [DATE, "Message-ID: " + bad]),
                              BAD_MSGID)

    def test_more_than_one_rejected(self):
        for field, extra in (("From", "From: other@example.com"),
                             ("Date", DATE),
                             ("Message-ID", MSGID.replace("1@", "2@")),
                             ("Subject", "subject: again"),
                             ("To", "To: c@example.net"),
                             ("Reply-To", "Reply-To: r@example.com")):
            fields = BASE + [DATE, MSGID]
            if field == "Reply-To":
                fields.append(extra)
            with self.subTest(field=field):
                self.rejected(msg(fields + [extra]), dup(field))
        # fields that may repeat
        self.accepted(msg(BASE + [DATE, MSGID, "Received: from a",
                                  "Received: from b", "Comments: 1",
                                  "Comments: 2", "X-Any: 1", "X-Any: 2"]))

    def test_too_long_field_rejected(self):
        long_id = "Message-ID: <" + "\r\n ".join(["x" * 900] * 10) + \
            "@example.com>"
        self.rejected(msg(BASE + [DATE, long_id]),
                      "550 5.6.0 The Message-ID header field is longer "
                      "than 8192 bytes")

    def test_header_only_gets_its_empty_line(self):
        m = msg(BASE + [DATE, MSGID])[:-len(b"\r\nHello.\r\n")]
        self.assertTrue(m.endswith(b"bulk-test.1@example.com>\r\n"))
        _, content = self.accepted(m)
        self.assertTrue(content.endswith(m.decode() + "\r\n"), content)

    # --- bulk mail ------------------------------------------------------

    def test_bulk_without_list_unsubscribe_rejected(self):
        cases = [("Precedence: bulk", "Precedence: bulk", []),
                 ("Precedence: LIST (a mailing list)", "Precedence: list",
                  []),
                 ("X-Ombud-Bulk: yes", "X-Ombud-Bulk: yes", []),
                 ("Precedence: bulk", "Precedence: bulk",
                  ["List-Unsubscribe: <http://example.com/u>"]),
                 ("Precedence: bulk", "Precedence: bulk",
                  ["List-Unsubscribe: https://example.com/u"]),
                 ("Precedence: bulk", "Precedence: bulk",
                  ["List-Unsubscribe: <https://example.com/u"]),
                 ("Precedence: bulk", "Precedence: bulk",
                  ["List-Unsubscribe: <mailto:>"])]
        for mark, why, extra in cases:
            with self.subTest(mark=mark, extra=extra):
                self.rejected(msg(BASE + [DATE, MSGID, mark] + extra),
                              NO_UNSUB.format(why=why))

    def test_bulk_https_gets_one_click_post(self):
        m = msg(BASE + [DATE, MSGID, "X-Ombud-Bulk: YES", UNSUB_HTTPS])
        _, content = self.accepted(m)
        h = header_of(content)
        names = [k for k, _ in h]
        self.assertNotIn("X-Ombud-Bulk", names)
        self.assertEqual(names.count("List-Unsubscribe-Post"), 1)
        self.assertIn(("List-Unsubscribe-Post",
                       "List-Unsubscribe=One-Click"), h)
        # the rest of the client's message is as it was sent
        self.assertTrue(content.endswith(
            m.decode().replace("X-Ombud-Bulk: YES\r\n", "")), content)

    def test_bulk_mailto_only_gets_no_post(self):
        m = msg(BASE + [DATE, MSGID, "Precedence: bulk",
                        "List-Unsubscribe: (c) <mailto:u@example.com>"])
        _, content = self.accepted(m)
        self.assertTrue(content.endswith(m.decode()))
        self.assertNotIn("List-Unsubscribe-Post",
                         [k for k, _ in header_of(content)])

    def test_bulk_post_already_there_is_not_doubled(self):
        m = msg(BASE + [DATE, MSGID, "Precedence: list",
                        "List-Unsubscribe: <https://example.com/u>",
                        "List-Unsubscribe-Post: List-Unsubscribe=One-Click"])
        _, content = self.accepted(m)
        self.assertEqual([k for k, _ in header_of(content)].count(
            "List-Unsubscribe-Post"), 1)

    def test_not_bulk(self):
        # no mark, or another Precedence: no List-Unsubscribe needed
        for extra in ([], ["Precedence: junk"], ["Precedence: bulky"]):
            with self.subTest(extra=extra):
                self.accepted(msg(BASE + [DATE, MSGID] + extra))
        # X-Ombud-Bulk: no is removed too; anything else is refused
        m = msg(BASE + [DATE, MSGID, "X-Ombud-Bulk: no"])
        _, content = self.accepted(m)
        self.assertNotIn("X-Ombud-Bulk", content)
        self.rejected(msg(BASE + [DATE, MSGID, "X-Ombud-Bulk: maybe"]),
                      "550 5.6.0 X-Ombud-Bulk must be yes or no, at most 8 "
                      "times")
        # an https URI without the bulk mark: no List-Unsubscribe-Post
        m = msg(BASE + [DATE, MSGID, "List-Unsubscribe: <https://e.x/u>"])
        _, content = self.accepted(m)
        self.assertNotIn("List-Unsubscribe-Post", content)

    def test_warn_mode(self):
        gw = self.gateway(overrides={"bulk_unsubscribe": "warn"})
        m = msg(BASE + [DATE, MSGID, "X-Ombud-Bulk: yes"])
        qid, content = self.accepted(m, gw)
        self.assertNotIn("X-Ombud-Bulk", content)
        ev = parse_events(gw.log_text(), "smtp.bulk_warning")
        self.assertEqual(len(ev), 1, gw.log_tail())
        self.assertEqual(ev[0]["qid"], qid)
        self.assertEqual(ev[0]["warning"],
                         NO_UNSUB.format(why="X-Ombud-Bulk: yes"))
        # the other rules still reject
        self.rejected(msg(BASE + [DATE, MSGID, MSGID]), dup("Message-ID"),
                      gw)

    def test_config_knob(self):
        gw = self.gateway(start=False)
        p = gw.ombud("config", "check", "-c", gw.conf_path)
        self.assertEqual(p.returncode, 0, p.stderr)
        gw.write_config(overrides={"bulk_unsubscribe": "maybe"})
        p = gw.ombud("config", "check", "-c", gw.conf_path)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"ombud\.conf:\d+: key "
                         r"'bulk_unsubscribe': 'maybe' is not reject or "
                         r"warn")
        p = gw.ombud("config", "keys")
        self.assertIn("| global | `bulk_unsubscribe` | `reject` |",
                      p.stdout)


@unittest.skipUnless(have(SMTP_SINK, DNSMASQ),
                     "needs smtp-sink (postfix) and dnsmasq (dnsmasq-base)")
class BulkDelivered(DeliveryTestCase):
    """What leaves the gateway: the added fields, no X-Ombud-Bulk; and
    the aligned From of a company's bulk mail."""

    def test_added_fields_are_delivered(self):
        from peers import free_common_port
        port = free_common_port(["127.0.0.2"])
        dest = self.sink("127.0.0.2", port)
        dns = self.dns({"mx": [("dest.test", 10, "mx1.dest.test")],
                        "a": [("mx1.dest.test", "127.0.0.2")]})
        gw = self.delivery_gateway(dns, port)
        m = msg(["From: <sender@src.test>", "To: <rcpt@dest.test>",
                 "Subject: news", "X-Ombud-Bulk: yes", UNSUB_HTTPS])
        qid = self.submit(gw, m)
        self.assertRegex(qid, QID_RE)
        got = dest.wait_count(1, timeout=30)[0]
        self.assertEqual(got.header("List-Unsubscribe-Post"),
                         ["List-Unsubscribe=One-Click"])
        self.assertEqual(got.header("X-Ombud-Bulk"), [])
        self.assertEqual(len(got.header("Date")), 1)
        self.assertRegex(got.header("Message-ID")[0],
                         rf"^<\d{{14}}\.{qid}@gw\.test>$")
        self.assertEqual(got.header("List-Unsubscribe"),
                         ["<https://example.com/u?id=42>, "
                          "<mailto:unsub@example.com?subject=unsubscribe>"])

    def test_company_bulk_mail_needs_its_own_from(self):
        gw = self.delivery_gateway(overrides={"delivery": "no"})
        pw = "Pw-Bulk-1"
        for args in (["company", "add", "nyhetsbrev", "--name", "N"],
                     ["domain", "add", "nyhet.test", "--company",
                      "nyhetsbrev"],
                     ["company", "set-route", "nyhetsbrev",
                      "platform-relay", "--reference", "T-1"]):
            p = gw.ombud(*args, "-c", gw.conf_path)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = gw.ombud("credential", "add", "--company", "nyhetsbrev",
                     "--application", "news", "--username", "news-app",
                     "--password-stdin", "-c", gw.conf_path,
                     input=pw + "\n")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        gw.wait_log(r"event=tenants\.loaded companies=1\b", timeout=10)
        with gw.connect_auth_as("news-app", pw) as c:
            for hfrom, want in (("other@elsewhere.test",
                                 "550 5.7.1 Header From domain "
                                 "elsewhere.test is not a domain of "
                                 "company nyhetsbrev"),
                                ("news@nyhet.test", "250 2.0.0")):
                c.cmd("MAIL FROM:<news@nyhet.test>", "250")
                c.cmd("RCPT TO:<rcpt@dest.test>", "250")
                c.cmd("DATA", "354")
                c.send(data_block(msg([f"From: <{hfrom}>",
                                       "To: <rcpt@dest.test>",
                                       "Subject: s", "Precedence: bulk",
                                       UNSUB_HTTPS])))
                r = c.reply()
                self.assertTrue(r.text.startswith(want), r)


if __name__ == "__main__":
    main()

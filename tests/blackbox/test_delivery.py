#!/usr/bin/python3
"""Delivery to MX hosts, end to end, against real peers on loopback.

Every scenario starts its own dnsmasq (MX and A records for *.test, no
upstream), its own smtp-sink(s) on 127.0.0.x:<mx_port> (Postfix's test
server with its fault flags) or a scripted peer, and its own gateway with
delivery = yes, dns_servers = the dnsmasq, mx_port = the sinks' port and
retries after 1 to 2 s.  Messages go in through the relay listener and
must come out at the right sink, byte for byte apart from the headers
ombud adds; the gateway's log events (delivery.delivered / deferred /
bounced, queue.dsn), `ombud queue show --json` and the queue's emptying
are checked, and so are the reports (RFC 3464) that bounces produce.

Layout used throughout: recipients @dest.test (MX mx1.dest.test ->
127.0.0.2), the sender sender@src.test (MX mx.src.test -> 127.0.0.4, a
sink that receives the bounces), the gateway's hostname gw.test.

The class Peers checks the peers themselves (no ombud delivery needed).
"""
import re
import signal
import smtplib
import threading
import time
import unittest

from ombudtest import QID_RE, Gateway, main, message
from peers import (DeliveryTestCase, DnsServer, ScriptedPeer, SmtpSink,
                   dns_query, dsn_report, free_common_port, have,
                   SMTP_SINK, DNSMASQ)

DEST = "127.0.0.2"
DEST2 = "127.0.0.3"
SRC = "127.0.0.4"
RCPT = "rcpt@dest.test"


def base_records(extra=None):
    r = {"mx": [("dest.test", 10, "mx1.dest.test"),
                ("src.test", 10, "mx.src.test")],
         "a": [("mx1.dest.test", DEST), ("mx.src.test", SRC)],
         "nullmx": ["nomail.test"]}
    for k, v in (extra or {}).items():
        r[k] = r.get(k, []) + list(v)
    return r


def tricky_message(token, sender="sender@src.test", rcpt=RCPT):
    """Content that tests transparency: leading dots, a lone dot, a line
    of 998 octets, trailing blanks, an empty last line."""
    body = (f"token {token}\r\n"
            ".leading dot\r\n"
            "..two dots\r\n"
            ".\r\n"
            "a line with trailing blanks   \r\n"
            "\tindented\r\n"
            + "x" * 998 + "\r\n"
            "\r\n"
            "last line\r\n")
    return message(subject=f"delivery {token}", body=body, sender=sender,
                   rcpt=rcpt, headers=[f"X-Token: {token}"])


def split_added(testcase, arrived, original):
    """Assert arrived = headers ombud added + original, byte for byte;
    return the added header block."""
    testcase.assertTrue(arrived.content.endswith(original),
                        f"content changed in transit:\nsent "
                        f"{original[:300]!r}\ngot {arrived.content[:600]!r}")
    added = arrived.content[:len(arrived.content) - len(original)]
    for line in added.split(b"\r\n")[:-1]:
        testcase.assertRegex(line, rb"^([\x21-\x39\x3b-\x7e]+:|[ \t])",
                             f"not a header line before the original "
                             f"content: {line!r}")
    testcase.assertTrue(added == b"" or added.endswith(b"\r\n"))
    return added


@unittest.skipUnless(have(SMTP_SINK, DNSMASQ),
                     "needs smtp-sink (postfix) and dnsmasq (dnsmasq-base)")
class Peers(DeliveryTestCase):
    """The peers themselves, with Python's smtplib and a stdlib DNS
    client: if these fail, the delivery tests below mean nothing."""

    def test_dnsmasq_answers_only_its_records(self):
        dns = self.dns(base_records({"a": [("implicit.test", "127.0.0.5")]}))
        self.assertEqual(dns_query(dns.servers, "dest.test", "MX"),
                         ("NOERROR", [("MX", (10, "mx1.dest.test"))]))
        self.assertEqual(dns_query(dns.servers, "mx1.dest.test", "A"),
                         ("NOERROR", [("A", DEST)]))
        # null MX (RFC 7505): one MX, preference 0, the root as host
        self.assertEqual(dns_query(dns.servers, "nomail.test", "MX"),
                         ("NOERROR", [("MX", (0, ""))]))
        # no MX but an address: NOERROR without answers (implicit MX)
        self.assertEqual(dns_query(dns.servers, "implicit.test", "MX"),
                         ("NOERROR", []))
        self.assertEqual(dns_query(dns.servers, "nothere.test", "MX"),
                         ("NXDOMAIN", []))
        self.assertEqual(dns_query(dns.servers, "nothere.test", "A"),
                         ("NXDOMAIN", []))
        # outside the local domains: refused here, never forwarded
        self.assertEqual(dns_query(dns.servers, "example.com", "MX")[0],
                         "REFUSED")
        self.assertIn(("MX", "example.com"), dns.queries())
        with open(dns.log) as f:
            log = f.read()
        self.assertNotIn("forwarded", log)

    def test_sink_dump_and_faults(self):
        port = free_common_port([DEST, DEST2])
        sink = self.sink(DEST, port)
        bad = self.sink(DEST2, port, flags=[
            "-f", "RCPT", "-B", "550 5.1.1 No such user"])
        msg = tricky_message("peer")
        with smtplib.SMTP(DEST, port, local_hostname="client.test") as c:
            c.sendmail("a@src.test", [RCPT, "two@dest.test"], msg)
        got = sink.wait_count(1, timeout=10)
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0].mail_from, "a@src.test")
        self.assertEqual(got[0].rcpts, [RCPT, "two@dest.test"])
        self.assertEqual(got[0].helo, "client.test")
        self.assertEqual(got[0].content, msg)
        with smtplib.SMTP(DEST2, port) as c:
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                c.sendmail("a@src.test", [RCPT], msg)
        self.assertEqual(cm.exception.recipients[RCPT][0], 550)
        # a restart with other flags keeps what arrived; -r: 4xx
        sink.restart(["-r", "RCPT", "-b", "451 4.3.0 Try again later"])
        with smtplib.SMTP(DEST, port) as c:
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                c.sendmail("a@src.test", [RCPT], msg)
        self.assertEqual(cm.exception.recipients[RCPT],
                         (451, b"4.3.0 Try again later"))
        self.assertEqual(sink.count(), 1)
        self.assertTrue(sink.saw("RCPT TO:<two@dest.test>"))
        # the null sender
        sink.restart([])
        with smtplib.SMTP(DEST, port) as c:
            c.sendmail("", [RCPT], b"Subject: n\r\n\r\nnull\r\n")
        self.assertEqual(sink.wait_count(2, timeout=10)[-1].mail_from, "")

    def test_scripted_peer(self):
        p = self.scripted(DEST, rules=[({0}, "RCPT", "451 4.3.0 later"),
                                       ({0}, "CONTENT", "drop")])
        msg = tricky_message("scripted")
        with smtplib.SMTP(DEST, p.port) as c:
            with self.assertRaises(smtplib.SMTPRecipientsRefused):
                c.sendmail("a@src.test", [RCPT], msg)
        with self.assertRaises(smtplib.SMTPServerDisconnected):
            with smtplib.SMTP(DEST, p.port) as c:
                c.sendmail("a@src.test", [RCPT], msg)
        with smtplib.SMTP(DEST, p.port) as c:
            c.sendmail("a@src.test", [RCPT], msg)
        got = p.wait_count(1, timeout=5)
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0].content, msg)
        self.assertEqual(p.sessions, 3)
        self.assertEqual(p.errors, [])


@unittest.skipUnless(have(SMTP_SINK, DNSMASQ),
                     "needs smtp-sink (postfix) and dnsmasq (dnsmasq-base)")
class Delivery(DeliveryTestCase):

    def setup_mx(self, flags=(), extra=None, src_sink=False, hosts=()):
        """dnsmasq with base_records, the dest sink on DEST:port (flags),
        optionally the sender's sink on SRC:port.  Returns (dns, port,
        dest sink, src sink or None)."""
        port = free_common_port([DEST, DEST2, SRC] + list(hosts))
        dns = self.dns(base_records(extra))
        dest = self.sink(DEST, port, flags=flags, name="dest sink")
        src = self.sink(SRC, port, name="sender's sink") if src_sink \
            else None
        return dns, port, dest, src

    def assert_delivered_event(self, gw, qid, rcpt, relay_host, relay_ip,
                               port):
        ev = self.wait_event(gw, "delivery.delivered", qid=qid, rcpt=rcpt)
        e = ev[-1]
        self.assertEqual(e["relay"], f"{relay_host}[{relay_ip}]:{port}", e)
        self.assertRegex(e["reply"], r"^250[ -]", e)
        self.assertIn("tls", e)
        self.assertRegex(e.get("attempts", ""), r"^[1-9]\d*$", e)
        self.assertIn("delay", e)
        return e

    def check_dsn(self, arrived, sender, rcpt, status_class,
                  diagnostic=None):
        """A bounce: null envelope sender, to the original sender, from
        MAILER-DAEMON@gw.test, RFC 3464 report naming rcpt as failed."""
        self.assertEqual(arrived.mail_from, "", "a DSN needs MAIL FROM:<>")
        self.assertEqual(arrived.rcpts, [sender])
        msg, per_msg, per_rcpt = dsn_report(arrived.content)
        self.assertIn("MAILER-DAEMON@gw.test", msg["From"] or "")
        self.assertIn(sender, msg["To"] or "")
        self.assertIn("gw.test", per_msg.get("reporting-mta", ""))
        mine = [r for r in per_rcpt
                if rcpt in r.get("final-recipient", "")]
        self.assertEqual(len(mine), 1, per_rcpt)
        r = mine[0]
        self.assertRegex(r["final-recipient"], r"(?i)^rfc822;\s*" +
                         re.escape(rcpt) + "$")
        self.assertEqual(r.get("action", "").lower(), "failed", r)
        self.assertRegex(r.get("status", ""), rf"^{status_class}\.\d+\.\d+$",
                         r)
        if diagnostic:
            self.assertIn(diagnostic, r.get("diagnostic-code", ""), r)
        return msg, r

    # --- success ---------------------------------------------------------

    def test_delivered(self):
        dns, port, dest, _ = self.setup_mx()
        gw = self.delivery_gateway(dns, port)
        msg = tricky_message("delivered")
        qid = self.submit(gw, msg)
        e = self.assert_delivered_event(gw, qid, RCPT, "mx1.dest.test",
                                        DEST, port)
        self.assertEqual(e["tls"], "none")       # smtp-sink: no STARTTLS
        self.assertEqual(e["attempts"], "1")
        got = dest.wait_count(1, timeout=10)
        self.assertEqual(len(got), 1, got)
        a = got[0]
        self.assertEqual(a.mail_from, self.SENDER)
        self.assertEqual(a.rcpts, [RCPT])
        self.assertEqual(a.helo, "gw.test")
        added = split_added(self, a, msg)
        self.assertTrue(added.startswith(b"Received: from client.test "),
                        added)
        self.assertIn(f"id {qid}".encode(), added)
        self.wait_gone(gw, qid)
        self.assertIn(("MX", "dest.test"), dns.queries())
        self.assert_no_event(gw, "delivery.deferred")
        self.assert_no_event(gw, "delivery.bounced")
        time.sleep(0.5)
        self.assertEqual(dest.count(), 1, "delivered twice")

    def test_two_domains_each_to_its_own_mx(self):
        dns, port, d1, _ = self.setup_mx(extra={
            "mx": [("other.test", 10, "mx.other.test")],
            "a": [("mx.other.test", DEST2)]})
        d2 = self.sink(DEST2, port, name="other.test sink")
        gw = self.delivery_gateway(dns, port)
        rcpts = ["a@dest.test", "b@dest.test", "c@other.test"]
        msg = tricky_message("two-domains", rcpt=rcpts[0])
        qid = self.submit(gw, msg, rcpts=rcpts)
        self.assert_delivered_event(gw, qid, "a@dest.test",
                                    "mx1.dest.test", DEST, port)
        self.assert_delivered_event(gw, qid, "b@dest.test",
                                    "mx1.dest.test", DEST, port)
        self.assert_delivered_event(gw, qid, "c@other.test",
                                    "mx.other.test", DEST2, port)
        self.wait_gone(gw, qid)
        at1 = sorted(r for m in d1.messages() for r in m.rcpts)
        at2 = sorted(r for m in d2.messages() for r in m.rcpts)
        self.assertEqual(at1, ["a@dest.test", "b@dest.test"])
        self.assertEqual(at2, ["c@other.test"])
        for m in d1.messages() + d2.messages():
            split_added(self, m, msg)

    def test_dead_mx_falls_through_to_next(self):
        # MX 10 -> 127.0.0.3 where nothing listens; MX 20 -> the sink
        port = free_common_port([DEST, DEST2, SRC])
        dns = self.dns({"mx": [("dest.test", 10, "mx1.dest.test"),
                               ("dest.test", 20, "mx2.dest.test")],
                        "a": [("mx1.dest.test", DEST2),
                              ("mx2.dest.test", DEST)]})
        dest = self.sink(DEST, port)
        gw = self.delivery_gateway(dns, port)
        qid = self.submit(gw)
        self.assert_delivered_event(gw, qid, RCPT, "mx2.dest.test", DEST,
                                    port)
        self.assertEqual(len(dest.wait_count(1)), 1)
        self.wait_gone(gw, qid)
        self.assertIn(("A", "mx1.dest.test"), dns.queries())

    def test_slow_data_reply_still_delivers(self):
        dns, port, dest, _ = self.setup_mx(flags=["-w", "3"])
        gw = self.delivery_gateway(dns, port)
        msg = tricky_message("slow")
        t0 = time.monotonic()
        qid = self.submit(gw, msg)
        self.assert_delivered_event(gw, qid, RCPT, "mx1.dest.test", DEST,
                                    port)
        self.assertGreaterEqual(time.monotonic() - t0, 2.9)
        got = dest.wait_count(1)
        split_added(self, got[0], msg)
        self.wait_gone(gw, qid)
        self.assert_no_event(gw, "delivery.deferred")

    def test_no_pipelining_delivers(self):
        dns, port, dest, _ = self.setup_mx(flags=["-p"])
        gw = self.delivery_gateway(dns, port)
        msg = tricky_message("nopipe")
        rcpts = ["a@dest.test", "b@dest.test", "c@dest.test"]
        qid = self.submit(gw, msg, rcpts=rcpts)
        for r in rcpts:
            self.assert_delivered_event(gw, qid, r, "mx1.dest.test", DEST,
                                        port)
        got = dest.wait_count(1)
        self.assertEqual(sorted(r for m in got for r in m.rcpts), rcpts)
        split_added(self, got[0], msg)
        self.wait_gone(gw, qid)

    # --- temporary failures ------------------------------------------------

    def test_tempfail_then_delivered(self):
        dns, port, dest, _ = self.setup_mx(
            flags=["-r", "RCPT", "-b", "451 4.3.0 Try again later"])
        gw = self.delivery_gateway(dns, port)
        msg = tricky_message("tempfail")
        qid = self.submit(gw, msg)
        e = self.wait_event(gw, "delivery.deferred", qid=qid, rcpt=RCPT,
                            peers=[dest])[0]
        self.assertEqual(e["reply"], "451 4.3.0 Try again later", e)
        self.assertEqual(e["relay"], f"mx1.dest.test[{DEST}]:{port}", e)
        self.assertRegex(e.get("retry_in", ""), r"^\d+$", e)
        self.assertLessEqual(int(e["retry_in"]), 2, e)
        self.assertEqual(e.get("attempts"), "1", e)
        # the queue knows why
        show, r = self.rcpt_state(gw, qid, RCPT)
        if r.get("state") == "pending":     # being retried right now
            time.sleep(0.3)
            show, r = self.rcpt_state(gw, qid, RCPT)
        self.assertIn(r.get("state"), ("deferred", "pending"), r)
        self.assertEqual(r.get("last_reply"), "451 4.3.0 Try again later",
                         r)
        self.assertIn("mx1.dest.test", r.get("remote") or "", r)
        self.assertGreaterEqual(show.get("attempts", 0), 1, show)
        self.assertIs(show.get("hold"), False, show)
        self.assertGreater(show.get("last_attempt", 0), 0, show)
        self.assertIn("next_attempt", show)
        # retried every 1-2 s while the sink refuses
        self.wait_event(gw, "delivery.deferred", qid=qid, count=2,
                        timeout=10)
        self.assertEqual(dest.count(), 0)
        dest.restart([])
        e = self.assert_delivered_event(gw, qid, RCPT, "mx1.dest.test",
                                        DEST, port)
        self.assertGreaterEqual(int(e["attempts"]), 2, e)
        # never longer apart than retry_max
        for d in self.events(gw, "delivery.deferred", qid=qid):
            self.assertLessEqual(int(d["retry_in"]), 2, d)
        self.wait_gone(gw, qid)
        got = dest.messages()
        self.assertEqual(len(got), 1, got)
        split_added(self, got[0], msg)

    def test_scripted_first_attempt_451_then_250(self):
        port = free_common_port([DEST, SRC])
        dns = self.dns(base_records())
        p = self.scripted(DEST, port, rules=[
            ({0}, "RCPT", "451 4.7.1 Greylisted, come back later")])
        gw = self.delivery_gateway(dns, port)
        msg = tricky_message("greylist")
        qid = self.submit(gw, msg)
        self.wait_event(gw, "delivery.deferred", qid=qid, peers=[p],
                        reply="451 4.7.1 Greylisted, come back later")
        self.assert_delivered_event(gw, qid, RCPT, "mx1.dest.test", DEST,
                                    port)
        self.wait_gone(gw, qid)
        got = p.messages()
        self.assertEqual(len(got), 1, got)
        split_added(self, got[0], msg)
        self.assertEqual(p.errors, [])

    def test_disconnect_at_every_stage_defers_then_delivers(self):
        """The connection drops (no reply, or 421) after each command,
        or in the middle of the content: deferred, then delivered once
        the peer behaves; never lost.  A drop after the final dot may
        deliver twice (allowed: at least once)."""
        modes = [("-q", "EHLO"), ("-q", "MAIL"), ("-q", "RCPT"),
                 ("-q", "DATA"), ("-q", "."), ("-Q", "MAIL"),
                 ("-Q", "RCPT"), ("-Q", "DATA"), ("-Q", "."),
                 ("scripted", "CONTENT")]
        for flag, stage in modes:
            with self.subTest(mode=f"{flag} {stage}"):
                self._disconnect_case(flag, stage)

    def _disconnect_case(self, flag, stage):
        # its own peers and gateway, stopped before the next mode starts
        port = free_common_port([DEST, SRC])
        peers, gw, ok = [], None, False
        try:
            dns = DnsServer(base_records())
            peers.append(dns)
            if flag == "scripted":
                peer = ScriptedPeer(DEST, port, rules=[
                    ({0}, stage, "drop")])
            else:
                peer = SmtpSink(DEST, port, flags=[flag, stage])
            peers.append(peer)
            o = {"delivery": "yes", "dns_servers": dns.servers,
                 "mx_port": port}
            o.update(self.RETRY)
            gw = Gateway(overrides=o)
            token = f"drop-{flag}-{stage}"
            msg = tricky_message(token)
            qid = self.submit(gw, msg)
            self.wait_event(gw, "delivery.deferred", qid=qid, rcpt=RCPT,
                            peers=[peer])
            if flag != "scripted":
                peer.restart([])
            self.assert_delivered_event(gw, qid, RCPT, "mx1.dest.test",
                                        DEST, port)
            self.wait_gone(gw, qid)
            got = [m for m in peer.messages()
                   if m.header("X-Token") == [token]]
            self.assertGreaterEqual(len(got), 1)
            if stage != ".":
                self.assertEqual(len(got), 1, "delivered twice")
            for m in got:
                split_added(self, m, msg)
            self.assert_no_event(gw, "delivery.bounced")
            gw.stop()                   # exit 0, no sanitizer report
            ok = True
        finally:
            if not ok:
                for p in peers:
                    print(p.describe())
            if gw is not None:
                gw.close(failed=not ok)
            for p in reversed(peers):
                p.close(failed=not ok)

    # --- permanent failures and bounces -----------------------------------

    def test_permfail_bounced_with_dsn(self):
        reply = "550 5.1.1 <rcpt@dest.test>: Recipient address rejected"
        dns, port, dest, src = self.setup_mx(
            flags=["-f", "RCPT", "-B", reply], src_sink=True)
        gw = self.delivery_gateway(dns, port)
        msg = tricky_message("bounce")
        qid = self.submit(gw, msg)
        e = self.wait_event(gw, "delivery.bounced", qid=qid, rcpt=RCPT,
                            peers=[dest, src])[0]
        self.assertEqual(e["reply"], reply, e)
        self.assertEqual(e["relay"], f"mx1.dest.test[{DEST}]:{port}", e)
        dsn_qid = e.get("dsn", "")
        self.assertRegex(dsn_qid, QID_RE, e)
        d = self.wait_event(gw, "queue.dsn", qid=dsn_qid)[0]
        self.assertEqual(d.get("orig"), qid, d)
        self.assertEqual(d.get("type"), "failure", d)
        # the report arrives at the sender's MX
        self.assert_delivered_event(gw, dsn_qid, self.SENDER,
                                    "mx.src.test", SRC, port)
        got = src.wait_count(1)
        self.assertEqual(len(got), 1, got)
        report, r = self.check_dsn(got[0], self.SENDER, RCPT, 5,
                                   diagnostic="550 5.1.1")
        self.assertEqual(r["status"], "5.1.1")
        # the original (RET not given: the whole message) is attached
        self.assertIn(b"X-Token: bounce", got[0].content)
        self.wait_gone(gw, [qid, dsn_qid])
        self.assertEqual(dest.count(), 0)
        self.assertFalse(dest.saw("DATA"), "DATA without a recipient")
        self.assertEqual(len(self.events(gw, "queue.dsn")), 1)

    def test_null_sender_never_bounced(self):
        dns, port, dest, src = self.setup_mx(
            flags=["-f", "RCPT", "-B", "550 5.1.1 No such user"],
            src_sink=True)
        gw = self.delivery_gateway(dns, port)
        qid = self.submit(gw, tricky_message("nullsender"), sender="")
        e = self.wait_event(gw, "delivery.bounced", qid=qid, rcpt=RCPT,
                            peers=[dest])[0]
        self.assertEqual(e.get("dsn"), "none", e)
        self.wait_gone(gw, qid)
        time.sleep(2)
        self.assert_no_event(gw, "queue.dsn")
        self.assertEqual(src.count(), 0)
        self.assertEqual(gw.queue_ids(), set())

    def test_null_mx_bounced(self):
        dns, port, dest, src = self.setup_mx(src_sink=True)
        gw = self.delivery_gateway(dns, port)
        rcpt = "someone@nomail.test"
        qid = self.submit(gw, tricky_message("nullmx", rcpt=rcpt),
                          rcpts=[rcpt])
        e = self.wait_event(gw, "delivery.bounced", qid=qid, rcpt=rcpt,
                            peers=[src])[0]
        self.assertRegex(e.get("reply", ""), r"^5\d\d 5\.\d+\.\d+ ", e)
        dsn_qid = e.get("dsn", "")
        self.assertRegex(dsn_qid, QID_RE, e)
        got = src.wait_count(1)
        self.check_dsn(got[0], self.SENDER, rcpt, 5)
        self.wait_gone(gw, [qid, dsn_qid])
        self.assertEqual(dest.count(), 0)
        self.assert_no_event(gw, "delivery.deferred")

    def test_lifetime_expired_bounced(self):
        dns, port, dest, src = self.setup_mx(
            flags=["-r", "RCPT", "-b", "452 4.2.2 Mailbox full"],
            src_sink=True)
        gw = self.delivery_gateway(dns, port,
                                   overrides={"queue_lifetime": "3s"})
        t0 = time.monotonic()
        qid = self.submit(gw, tricky_message("expire"))
        self.wait_event(gw, "delivery.deferred", qid=qid, peers=[dest])
        e = self.wait_event(gw, "delivery.bounced", qid=qid, rcpt=RCPT,
                            peers=[dest, src])[0]
        took = time.monotonic() - t0
        # the lifetime counts from the arrival time, kept in seconds
        self.assertGreaterEqual(took, 1.9, "bounced before the lifetime")
        self.assertLess(took, 20)
        dsn_qid = e.get("dsn", "")
        self.assertRegex(dsn_qid, QID_RE, e)
        got = src.wait_count(1)
        # the last reply was temporary; the report still says failed
        self.check_dsn(got[0], self.SENDER, RCPT, "[45]")
        self.wait_gone(gw, [qid, dsn_qid])
        self.assertEqual(dest.count(), 0)

    # --- crash during delivery -----------------------------------------

    def test_kill9_during_delivery_at_least_once(self):
        n = 20
        dns, port, dest, _ = self.setup_mx(flags=["-w", "1"])
        gw = self.delivery_gateway(dns, port, overrides={
            "dest_max_connections": 2})
        tokens = {}
        for i in range(n):
            token = f"crash-{i:02d}"
            tokens[token] = self.submit(gw, tricky_message(token))
        self.wait_event(gw, "delivery.delivered", count=3, timeout=30,
                        peers=[dest])
        gw.kill9()
        before = dest.count()
        self.assertLess(before, n, "all delivered before the kill: the "
                        "test proves nothing")
        gw.start()
        deadline = time.monotonic() + 60
        while True:
            seen = {}
            for m in dest.messages():
                for t in m.header("X-Token"):
                    seen[t] = seen.get(t, 0) + 1
            if set(seen) >= set(tokens) and not gw.queue_ids():
                break
            if time.monotonic() > deadline:
                missing = sorted(set(tokens) - set(seen))
                raise AssertionError(
                    f"after kill -9 and restart: missing {missing}, queue "
                    f"{sorted(gw.queue_ids())}:\n{gw.log_tail(40)}")
            time.sleep(0.2)
        dups = sum(c - 1 for c in seen.values())
        print(f"{before} arrived before the kill; {dups} duplicates",
              flush=True)
        self.assertLessEqual(dups, n)
        gw.assert_clean_log()

    # --- queue control -----------------------------------------------------

    def test_delivery_no_keeps_mail_queued(self):
        dns, port, dest, _ = self.setup_mx()
        gw = self.delivery_gateway(dns, port,
                                   overrides={"delivery": "no"})
        qid = self.submit(gw, tricky_message("nodelivery"))
        time.sleep(3)
        self.assertEqual(dest.count(), 0)
        self.assertIn(qid, gw.queue_ids())
        self.assert_no_event(gw, "delivery.")
        show, r = self.rcpt_state(gw, qid, RCPT)
        self.assertEqual(r.get("state"), "pending", r)
        self.assertEqual(show.get("attempts"), 0, show)
        self.assertEqual(dns.queries().count(("MX", "dest.test")), 0)
        # turned on (restart): the queued message goes out
        gw.stop()
        gw.overrides["delivery"] = "yes"
        gw.write_config()
        gw.start()
        self.assert_delivered_event(gw, qid, RCPT, "mx1.dest.test", DEST,
                                    port)
        self.wait_gone(gw, qid)
        self.assertEqual(dest.count(), 1)

    def test_hold_release_flush(self):
        """Retries an hour apart: only flush brings a deferred message
        back early; a held message stays even through flush, until
        released."""
        port = free_common_port([DEST, SRC])
        dns = self.dns(base_records())
        gw = self.delivery_gateway(dns, port, overrides={
            "retry_min": "1h", "retry_max": "2h"})
        # nothing listens at the MX yet: connection refused, deferred
        a = self.submit(gw, tricky_message("held"))
        b = self.submit(gw, tricky_message("flushed"))
        for q in (a, b):
            e = self.wait_event(gw, "delivery.deferred", qid=q)[0]
            self.assertGreaterEqual(int(e["retry_in"]), 2700, e)
        dest = self.sink(DEST, port)
        time.sleep(2)
        self.assertEqual(dest.count(), 0, "retried before retry_min")
        self.ctl(gw, "hold", a)
        self.assertIs(gw.queue_show(a).get("hold"), True)
        self.assertIs(gw.queue_show(b).get("hold"), False)
        self.ctl(gw, "flush")
        self.assert_delivered_event(gw, b, RCPT, "mx1.dest.test", DEST,
                                    port)
        self.ctl(gw, "flush", a)
        time.sleep(2)
        self.assertEqual([m.header("X-Token") for m in dest.messages()],
                         [["flushed"]])
        self.assertIn(a, gw.queue_ids())
        self.assertIs(gw.queue_show(a).get("hold"), True)
        self.assertEqual(len(self.events(gw, "delivery.deferred",
                                         qid=a)), 1)
        self.ctl(gw, "release", a)
        # released: due again, at once or at the next flush (it may be
        # gone by the time we look)
        p = self.ctl(gw, "flush", a, ok=False)
        if p.returncode != 0:
            self.assertIn("no such message", p.stdout + p.stderr)
        self.assert_delivered_event(gw, a, RCPT, "mx1.dest.test", DEST,
                                    port)
        self.wait_gone(gw, [a, b])
        # unknown ids are errors
        p = self.ctl(gw, "hold", "0" * 20, ok=False)
        self.assertNotEqual(p.returncode, 0)


if __name__ == "__main__":
    main()

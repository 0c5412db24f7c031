#!/usr/bin/python3
"""Tenants end to end: companies, their domains and submission
credentials made with the `ombud company|domain|credential` CLI against
the gateway's database, then SMTP submissions checked against the sending
policy, and delivery by each company's route choice:

- own-server: a private Postfix with STARTTLS and SASL AUTH (the
  company's own mail server) relaying to a sink;
- platform-relay: straight to the recipient's MX (dnsmasq + smtp-sink);
- platform-smarthost: the configured [route] of the platform.

Also: a company cannot send as another's domain (envelope or header
From), a suspended company cannot send, a company without a route choice
is refused after choice_required_from and accepted before it, and
platform-relay mail from a domain that does not pass SPF+DKIM is held
after authentication_required_from and released once it passes.
Secrets never appear in the log or the database files.
"""
import glob
import os
import sqlite3
import subprocess
import time
import unittest

from ombudtest import main, message, queue_id_of
from peers import (DeliveryTestCase, Smarthost, free_common_port, have,
                   make_cert, SMTP_SINK, DNSMASQ)

DEST = "127.0.0.2"
UP = "127.0.0.3"
RCPT = "hyresgast@dest.test"


def records():
    return {"mx": [("dest.test", 10, "mx1.dest.test")],
            "a": [("mx1.dest.test", DEST)]}


@unittest.skipUnless(have(SMTP_SINK, DNSMASQ),
                     "needs smtp-sink (postfix) and dnsmasq (dnsmasq-base)")
class Tenants(DeliveryTestCase):

    def company(self, gw, cid, domains, password, route=None):
        """A company with domains and a submission credential cid-app."""
        self.cli(gw, "company", "add", cid, "--name", f"Company {cid}")
        for d in domains:
            self.cli(gw, "domain", "add", d, "--company", cid)
        self.cli(gw, "credential", "add", "--company", cid,
                 "--application", "hyra", "--username", f"{cid}-app",
                 "--password-stdin", input=password + "\n")
        if route:
            self.cli(gw, "company", "set-route", cid, route,
                     "--reference", "TICKET-1")

    def wait_loaded(self, gw, n):
        gw.wait_log(rf"event=tenants\.loaded companies={n}\b",
                    timeout=10)

    def cli_then_reload(self, gw, *args, **kw):
        """Run a CLI change and wait until the server loaded it."""
        before = len(self.events(gw, "tenants.loaded"))
        p = self.cli(gw, *args, **kw)
        self.wait_event(gw, "tenants.loaded", count=before + 1,
                        timeout=10)
        return p

    def session(self, gw, user, password):
        c = gw.connect_auth_as(user, password)
        return c

    def setup_gw(self, dns=None, port=None, overrides=None, routes=None):
        o = {"delivery": "yes"}
        o.update(overrides or {})
        return self.delivery_gateway(dns, port, overrides=o,
                                     routes=routes)

    def submit_as(self, c, sender, header_from=None, rcpt=RCPT,
                  expect="250"):
        """MAIL/RCPT/DATA; returns the final reply (or the first
        refusal)."""
        r = c.cmd(f"MAIL FROM:<{sender}>", "")
        if not r.last.startswith("250"):
            return r
        r = c.cmd(f"RCPT TO:<{rcpt}>", "")
        if not r.last.startswith("250"):
            c.cmd("RSET", "250")
            return r
        c.cmd("DATA", "354")
        c.send(message(sender=header_from or sender, rcpt=rcpt) +
               b".\r\n")
        return c.reply()

    # --- the sending policy ---------------------------------------------

    def test_no_company_sends_as_another(self):
        gw = self.setup_gw(overrides={"delivery": "no"})
        self.company(gw, "bostadsbolag", ["bostadsbolag.test"], "Pw-A-1",
                     route="platform-relay")
        self.company(gw, "hyresvard", ["hyresvard.test"], "Pw-B-2",
                     route="platform-relay")
        self.wait_loaded(gw, 2)
        with gw.connect_auth_as("bostadsbolag-app", "Pw-A-1") as c:
            r = self.submit_as(c, "felanmalan@hyresvard.test")
            self.assertTrue(r.last.startswith("550 5.7.1"), r)
            self.assertIn("hyresvard.test", r.text)
            # own envelope domain, the other's header From
            r = self.submit_as(c, "felanmalan@bostadsbolag.test",
                               header_from="x@hyresvard.test")
            self.assertTrue(r.last.startswith("550 5.7.1"), r)
            self.assertIn("Header From", r.text)
            # an unknown domain and the null sender
            r = self.submit_as(c, "x@elsewhere.test")
            self.assertTrue(r.last.startswith("550 5.7.1"), r)
            r = c.cmd("MAIL FROM:<>", "")
            self.assertTrue(r.last.startswith("550 5.7.1"), r)
            # its own domain (any case) in both: accepted
            r = self.submit_as(c, "felanmalan@BostadsBolag.test",
                               header_from="felanmalan@Bostadsbolag.TEST")
            self.assertTrue(r.last.startswith("250"), r)
            qid = queue_id_of(r)
        self.assertEqual(gw.queue_show(qid).get("tenant"),
                         "bostadsbolag")
        # the other company's credential cannot either
        with gw.connect_auth_as("hyresvard-app", "Pw-B-2") as c:
            r = self.submit_as(c, "a@bostadsbolag.test")
            self.assertTrue(r.last.startswith("550 5.7.1"), r)

    def test_suspended_company_refused(self):
        gw = self.setup_gw(overrides={"delivery": "no"})
        self.company(gw, "acme", ["acme.test"], "Pw-S-1",
                     route="platform-relay")
        self.wait_loaded(gw, 1)
        self.cli_then_reload(gw, "company", "suspend", "acme",
                             "--reference", "T-9")
        with gw.connect_auth_as("acme-app", "Pw-S-1") as c:
            r = self.submit_as(c, "a@acme.test")
            self.assertTrue(r.last.startswith("550 5.7.1"), r)
            self.assertIn("suspended", r.text)

    def test_route_none_refused_after_the_date(self):
        gw = self.setup_gw(overrides={"delivery": "no",
                                      "choice_required_from": "2020-01-01"})
        self.company(gw, "late", ["late.test"], "Pw-N-1")
        self.wait_loaded(gw, 1)
        with gw.connect_auth_as("late-app", "Pw-N-1") as c:
            r = self.submit_as(c, "a@late.test")
            self.assertTrue(r.last.startswith("550 5.7.1"), r)
            self.assertIn("has not chosen", r.text)
        # before the date: accepted
        gw.write_config({"delivery": "no",
                         "choice_required_from": "2099-01-01"})
        gw.hup()
        gw.wait_log(r"event=config\.reloaded")
        with gw.connect_auth_as("late-app", "Pw-N-1") as c:
            r = self.submit_as(c, "a@late.test")
            self.assertTrue(r.last.startswith("250"), r)

    # --- routes ------------------------------------------------------------

    def test_every_route_delivers(self):
        port = free_common_port([DEST, UP])
        dns = self.dns(records())
        mx = self.sink(DEST, port, name="recipient MX")
        up = self.sink(UP, port, name="platform upstream")
        behind = self.sink("127.0.0.5", port, name="behind own server")
        own = self.peer(Smarthost(
            relay_to=("127.0.0.5", port), users={"it@own.test":
                                                  "Own-Srv-Pw-77"}))
        gw = self.setup_gw(dns, port, overrides={
            "platform_smarthost_route": "up"}, routes={"up": {
                "host": UP, "port": port, "tls": "none"}})
        self.company(gw, "relay", ["relay.test"], "Pw-R-1",
                     route="platform-relay")
        self.company(gw, "smart", ["smart.test"], "Pw-M-1",
                     route="platform-smarthost")
        self.company(gw, "own", ["own.test"], "Pw-O-1")
        self.cli_then_reload(gw, "company", "set-route", "own",
                             "own-server", "--host", "127.0.0.1", "--port",
                             str(own.port), "--tls", "required",
                             "--auth-user", "it@own.test",
                             "--password-stdin", "--reference", "T-3",
                             input="Own-Srv-Pw-77\n")
        qids = {}
        pw = {"relay": "Pw-R-1", "smart": "Pw-M-1", "own": "Pw-O-1"}
        for cid in ("relay", "smart", "own"):
            with gw.connect_auth_as(f"{cid}-app", pw[cid]) as c:
                r = self.submit_as(c, f"noreply@{cid}.test")
                self.assertTrue(r.last.startswith("250"), r)
                qids[cid] = queue_id_of(r)
        self.assertEqual(len(mx.wait_count(1)), 1)
        self.assertEqual(len(up.wait_count(1)), 1)
        self.assertEqual(len(behind.wait_count(1, timeout=30)), 1)
        self.assertEqual(mx.messages()[0].mail_from, "noreply@relay.test")
        self.assertEqual(up.messages()[0].mail_from, "noreply@smart.test")
        self.assertEqual(behind.messages()[0].mail_from,
                         "noreply@own.test")
        e = self.wait_event(gw, "delivery.delivered", qid=qids["own"])[0]
        self.assertIn(f"127.0.0.1]:{own.port}", e["relay"])
        self.assertNotEqual(e.get("tls"), "none", e)
        self.wait_gone(gw, list(qids.values()))
        # no secret in the log or the database files
        log = gw.log_text(all_runs=True)
        blobs = b"".join(open(f, "rb").read()
                         for f in glob.glob(gw.dir + "/ombud.db*"))
        for secret in ("Own-Srv-Pw-77", "Pw-R-1", "Pw-M-1", "Pw-O-1"):
            self.assertNotIn(secret, log)
            self.assertNotIn(secret.encode(), blobs)

    def test_user_with_own_server(self):
        """A user's own SMTP settings beat the company's route for mail
        with that user's from address as the envelope sender."""
        port = free_common_port([DEST, "127.0.0.6"])
        dns = self.dns(records())
        mx = self.sink(DEST, port, name="recipient MX")
        users_server = self.sink("127.0.0.6", port, name="user's server")
        gw = self.setup_gw(dns, port)
        self.company(gw, "relay", ["relay.test"], "Pw-R-1",
                     route="platform-relay")
        self.cli_then_reload(gw, "user", "add", "--company", "relay",
                             "--email", "pm@relay.test", "--route",
                             "own-server", "--from", "PM@relay.test",
                             "--host", "127.0.0.6", "--port", str(port),
                             "--tls", "none")
        with gw.connect_auth_as("relay-app", "Pw-R-1") as c:
            a = queue_id_of(self.submit_as(c, "pm@relay.test"))
            b = queue_id_of(self.submit_as(c, "other@relay.test"))
        self.assertEqual([m.mail_from for m in users_server.wait_count(1)],
                         ["pm@relay.test"])
        self.assertEqual([m.mail_from for m in mx.wait_count(1)],
                         ["other@relay.test"])
        e = self.wait_event(gw, "delivery.delivered", qid=a)[0]
        self.assertIn("127.0.0.6", e["relay"])
        self.wait_gone(gw, [a, b])

    def test_unauthenticated_domain_held_until_it_passes(self):
        port = free_common_port([DEST])
        dns = self.dns(records())
        mx = self.sink(DEST, port, name="recipient MX")
        gw = self.setup_gw(dns, port, overrides={
            "authentication_required_from": "2020-01-01"})
        self.company(gw, "relay", ["relay.test"], "Pw-R-1",
                     route="platform-relay")
        self.wait_loaded(gw, 1)
        with gw.connect_auth_as("relay-app", "Pw-R-1") as c:
            r = self.submit_as(c, "noreply@relay.test")
            self.assertTrue(r.last.startswith("250"), r)
            qid = queue_id_of(r)
        self.wait_event(gw, "delivery.held_unauthenticated", qid=qid,
                        domain="relay.test")
        time.sleep(1)
        self.assertEqual(mx.count(), 0)
        self.assertIn(qid, gw.queue_ids())      # not lost
        # the domain passes SPF and DKIM (as the checks of the
        # authentication issue will record it)
        self.cli(gw, "domain", "set-auth", "relay.test", "--spf", "pass",
                 "--dkim", "pass")
        self.wait_event(gw, "delivery.released_authenticated", qid=qid)
        self.assertEqual(len(mx.wait_count(1)), 1)
        self.wait_gone(gw, [qid])


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Metering and billing end to end: companies on each route submit mail
through a real `ombud serve`; `ombud billing usage|report` must show
exactly the recipients accepted on a platform route (platform-relay and
platform-smarthost; not own-server, not mail without a company), per
local day in Europe/Stockholm, with Gmail recipients per sender domain.

The billing clock is moved with OMBUD_TEST_NOW (billing.h): a message
accepted at 2026-10-31 22:30 UTC counts on 2026-10-31, one at 23:30 UTC
on 2026-11-01 (local midnight).  A message deferred and retried is
counted once; `kill -9` right after the 250s (while the meter's batch is
being written) neither loses nor doubles a count, and restarts do not
either.  A month that ended is closed by the report and then read back
unchanged.
"""
import csv
import io
import json
import os
import re
import sqlite3
import time
import unittest

from ombudtest import Gateway, main, message, run, OMBUD, free_port

NOW_OCT = 1793485800        # 2026-10-31T22:30:00Z = 23:30 local, Oct 31
NOW_NOV = 1793489400        # 2026-10-31T23:30:00Z = 00:30 local, Nov 1
NOW_CLOSE = 1793620800      # 2026-11-02T12:00:00Z: October can close

PLAN = """
[plan standard]
fixed_fee = 50000
included = 10000
extra_price = 1.2
currency = SEK
from = 2026-01
"""


class Billing(unittest.TestCase):

    def setUp(self):
        self.gws = []

    def tearDown(self):
        for gw in self.gws:
            gw.close()

    def gateway(self, now, companies, overrides=None, routes=None):
        """A server started after the companies (cid, route, *args) were
        made with the CLI: its first snapshot has them all."""
        o = {"delivery": "no"}
        o.update(overrides or {})
        gw = Gateway(overrides=o, routes=routes, start=False,
                     env={"OMBUD_TEST_NOW": str(now)})
        self.gws.append(gw)
        gw.write_config(text=gw.config_text() + PLAN)
        for c in companies:
            self.company(gw, *c)
        gw.start()
        return gw

    def restart(self, gw, now, kill=False):
        if kill:
            gw.kill9()
        else:
            gw.stop()
        gw.env["OMBUD_TEST_NOW"] = str(now)
        gw.start()

    def cli(self, gw, *args, now=None, input=None):
        env = dict(os.environ)
        if now is not None:
            env["OMBUD_TEST_NOW"] = str(now)
        p = run([OMBUD] + list(args) + ["-c", gw.conf_path], input=input,
                cwd=gw.dir, env=env)
        if p.returncode != 0:
            raise AssertionError(f"ombud {' '.join(args)} exited "
                                 f"{p.returncode}: {p.stdout}{p.stderr}")
        return p.stdout

    def company(self, gw, cid, route, *extra):
        self.cli(gw, "company", "add", cid, "--name", cid)
        self.cli(gw, "domain", "add", f"{cid}.test", "--company", cid)
        self.cli(gw, "credential", "add", "--company", cid,
                 "--application", "app", "--username", f"{cid}-app",
                 "--password-stdin", input=f"Pw-{cid}-1\n")
        self.cli(gw, "company", "set-route", cid, route, *extra,
                 "--reference", "T-1")

    def send(self, gw, cid, rcpts, n=1):
        ids = []
        with gw.connect_auth_as(f"{cid}-app", f"Pw-{cid}-1") as c:
            for _ in range(n):
                ids.append(c.submit(message(sender=f"news@{cid}.test",
                                            rcpt=rcpts[0]),
                                    sender=f"news@{cid}.test",
                                    rcpts=rcpts))
        return ids

    def usage(self, gw, now):
        out = json.loads(self.cli(gw, "billing", "usage", "--format",
                                  "json", now=now))
        return {c["company"]: c for c in out["companies"]}, out

    def wait_emails(self, gw, now, want, timeout=15):
        """Wait until the month-to-date counts are want {company: n}."""
        deadline = time.monotonic() + timeout
        while True:
            u, _ = self.usage(gw, now)
            have = {k: v["bill"]["emails"] for k, v in u.items()}
            if all(have.get(k) == n for k, n in want.items()):
                return u
            if time.monotonic() > deadline:
                raise AssertionError(f"usage {have}, want {want}:\n"
                                     f"{gw.log_tail(30)}")
            time.sleep(0.1)

    COMPANIES = [("plat", "platform-relay"),
                 ("smart", "platform-smarthost"),
                 ("own", "own-server", "--host", "127.0.0.1", "--port", "9",
                  "--tls", "none")]

    def test_routes_days_and_report(self):
        routes = {"up": {"host": "127.0.0.1", "port": "9", "tls": "none"}}
        gw = self.gateway(NOW_OCT, self.COMPANIES,
                          {"platform_smarthost_route": "up"}, routes)
        self.send(gw, "plat", ["a@gmail.com", "b@GoogleMail.com",
                               "c@dest.test"])
        self.send(gw, "plat", ["d@dest.test"])
        self.send(gw, "smart", ["e@gmail.com", "f@dest.test"])
        self.send(gw, "own", [f"g{i}@dest.test" for i in range(5)])
        # mail without a company (trusted network): default_route, free
        with gw.connect("relay") as c:
            c.ehlo()
            c.submit(message(), sender="x@other.test",
                     rcpts=["h@gmail.com"])
        u = self.wait_emails(gw, NOW_OCT, {"plat": 4, "smart": 2,
                                           "own": 0})
        self.assertEqual(u["plat"]["days"],
                         [{"day": "2026-10-31", "emails": 4}])
        self.assertEqual(u["plat"]["gmail"],
                         [{"day": "2026-10-31", "sender_domain": "plat.test",
                           "emails": 2, "bulk": False}])
        self.assertEqual(u["own"]["days"], [])
        self.assertEqual(u["own"]["bill"]["total"], 0)
        self.assertEqual(u["plat"]["bill"]["total_text"], "500.00")

        # local midnight: 23:30 UTC is already November 1st
        self.restart(gw, NOW_NOV)
        self.send(gw, "plat", ["i@dest.test", "j@gmail.com"])
        u = self.wait_emails(gw, NOW_NOV, {"plat": 2})
        self.assertEqual(u["plat"]["days"],
                         [{"day": "2026-11-01", "emails": 2}])
        # restarts recount the queued (never tried) messages: no change
        self.restart(gw, NOW_NOV)
        self.restart(gw, NOW_NOV, kill=True)
        self.wait_emails(gw, NOW_NOV, {"plat": 2, "smart": 0})

        # October: open until billing_close_after past its end
        rows = list(csv.DictReader(io.StringIO(self.cli(
            gw, "billing", "report", "--month", "2026-10", "--format",
            "csv", now=NOW_NOV))))
        byc = {r["company"]: r for r in rows}
        self.assertEqual(set(byc), {"plat", "smart", "own"})
        self.assertEqual(byc["plat"]["emails"], "4")
        # the route was chosen (audit time: the real clock) after the
        # test's October: the day with metered mail is what makes it a
        # platform month
        self.assertEqual(byc["plat"]["route"], "none")
        self.assertEqual(byc["plat"]["platform_days"], "1")
        self.assertEqual(byc["plat"]["fixed_fee"], "500.00")
        self.assertEqual(byc["plat"]["total"], "500.00")
        self.assertEqual(byc["plat"]["status"], "open")
        self.assertEqual(byc["own"]["total"], "0.00")
        self.assertEqual(byc["own"]["emails"], "0")
        # closed by the report once October is over
        out = json.loads(self.cli(gw, "billing", "report", "--month",
                                  "2026-10", "--format", "json",
                                  now=NOW_CLOSE))
        byc = {r["company"]: r for r in out}
        self.assertEqual(byc["plat"]["status"], "closed")
        self.assertEqual(byc["plat"]["emails"], 4)
        self.assertEqual(byc["plat"]["total"], 50000)
        self.assertEqual(byc["smart"]["emails"], 2)
        self.assertEqual(byc["own"]["total"], 0)
        one = json.loads(self.cli(gw, "billing", "report", "--month",
                                  "2026-10", "--company", "plat",
                                  "--format", "json", now=NOW_CLOSE))
        self.assertEqual(one, [byc["plat"]])
        gw.stop()

    def test_kill9_counts_exact(self):
        gw = self.gateway(NOW_OCT, [("plat", "platform-relay")])
        total = 0
        for rnd in range(3):
            n = 40
            # kill -9 right after the last 250: the batch may be in
            # flight, written, or not begun
            self.send(gw, "plat", ["a@gmail.com", "b@dest.test"], n=n)
            total += 2 * n
            self.restart(gw, NOW_OCT, kill=True)
            u = self.wait_emails(gw, NOW_OCT, {"plat": total})
            self.assertEqual(u["plat"]["gmail"][0]["emails"], total // 2)
        self.restart(gw, NOW_OCT)
        time.sleep(0.5)
        u, _ = self.usage(gw, NOW_OCT)
        self.assertEqual(u["plat"]["bill"]["emails"], total)
        self.assertTrue(gw.wait_log(r"event=meter\.recovered", timeout=5))
        gw.stop()

    def test_retry_counted_once(self):
        port = free_port()
        routes = {"up": {"host": "127.0.0.1", "port": str(port),
                         "tls": "none"}}
        gw = self.gateway(NOW_OCT, [("smart", "platform-smarthost")],
                          {"delivery": "yes",
                                    "platform_smarthost_route": "up",
                                    "retry_min": "1s", "retry_max": "1s"},
                          routes)
        self.send(gw, "smart", ["a@dest.test", "b@dest.test"])
        # nobody listens on the route's port: deferred, tried again
        gw.wait_log(r"event=delivery\.deferred", timeout=30, count=4)
        self.restart(gw, NOW_OCT, kill=True)
        gw.wait_log(r"event=delivery\.deferred", timeout=30, count=2)
        u, _ = self.usage(gw, NOW_OCT)
        self.assertEqual(u["smart"]["bill"]["emails"], 2)
        gw.stop()

    def test_store_busy_retried(self):
        """A batch that fails (the database locked by another writer for
        longer than the busy timeout) is retried by the meter's timer
        until it is written: counted once, the server still up.  (The
        retry timer used to call meter_kick with the timer's fd as the
        meter: a crash.)"""
        gw = self.gateway(NOW_OCT, [("plat", "platform-relay")])
        db = sqlite3.connect(os.path.join(gw.dir, "ombud.db"),
                             isolation_level=None, timeout=10)
        db.execute("BEGIN IMMEDIATE")       # the write lock, held
        try:
            self.send(gw, "plat", ["a@gmail.com", "b@dest.test"], n=3)
            gw.wait_log(r"event=meter\.failed", timeout=30)
        finally:
            db.execute("ROLLBACK")
            db.close()
        u = self.wait_emails(gw, NOW_OCT, {"plat": 6}, timeout=30)
        self.assertEqual(u["plat"]["gmail"][0]["emails"], 3)
        self.assertTrue(gw.running())
        gw.stop()
        self.assertRegex(gw.log_text(), r"event=meter\.stopped counted=3 "
                         r"duplicates=0 batches=\d+ failures=[1-9]")

    def test_backlog_bound(self):
        """While the billing database does not answer, the counts waiting
        for it are bounded (metering_backlog_max): MAIL then gets 451
        4.3.0, and is accepted again once the meter caught up."""
        gw = self.gateway(NOW_OCT, [("plat", "platform-relay")],
                          overrides={"metering_backlog_max": "2"})
        db = sqlite3.connect(os.path.join(gw.dir, "ombud.db"),
                             isolation_level=None, timeout=10)
        db.execute("BEGIN IMMEDIATE")       # the write lock, held
        try:
            self.send(gw, "plat", ["a@dest.test"], n=2)
            with gw.connect_auth_as("plat-app", "Pw-plat-1") as c:
                r = c.cmd("MAIL FROM:<news@plat.test>", "")
                self.assertTrue(r.last.startswith("451 4.3.0"), r)
        finally:
            db.execute("ROLLBACK")
            db.close()
        self.wait_emails(gw, NOW_OCT, {"plat": 2}, timeout=30)
        self.send(gw, "plat", ["b@dest.test"], n=1)
        self.wait_emails(gw, NOW_OCT, {"plat": 3}, timeout=30)


if __name__ == "__main__":
    main()

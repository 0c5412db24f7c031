#!/usr/bin/python3
"""DKIM signing in the delivery path and domain onboarding, end to end.

A company on the platform relay gets keys from `ombud dkim keygen`
(rsa-sha256 and ed25519-sha256); until their records are published and
seen by `ombud domain check`, its mail leaves unsigned; once they are,
every message reaching the recipient's MX (smtp-sink behind dnsmasq)
carries two signatures that dkimpy and `ombud dkim verify` accept.  A new
key waits until it is published, then takes over while the old one
retires for dkim_rotation_grace.  `ombud domain check` reports every
record with its reason (SPF include missing, DKIM key mismatch, no
DMARC), and the server's periodic check marks a domain that breaks.
"""
import json
import os
import time
import unittest

from ombudtest import main, message, queue_id_of
from peers import DeliveryTestCase, free_common_port, have, SMTP_SINK, DNSMASQ

try:
    import dkim
except ImportError:		# python3-dkim is in TEST_PKGS
    dkim = None

DEST = "127.0.0.2"
DOMAIN = "acme.test"
SPF_DOMAIN = "_spf.platform.test"
RCPT = "hyresgast@dest.test"


def txt(text):
    """A TXT record for dnsmasq: character-strings of at most 250 bytes
    (it splits on commas)."""
    return ",".join(text[i:i + 250] for i in range(0, len(text), 250))


@unittest.skipUnless(have(SMTP_SINK, DNSMASQ),
                     "needs smtp-sink (postfix) and dnsmasq (dnsmasq-base)")
class DkimSigning(DeliveryTestCase):

    def records(self, spf=None, dkim_keys=(), dmarc=True, extra=()):
        r = {"mx": [("dest.test", 10, "mx1.dest.test")],
             "a": [("mx1.dest.test", DEST)],
             "txt": [(SPF_DOMAIN, "v=spf1 ip4:127.0.0.1 -all")]}
        if spf is None:
            spf = f"v=spf1 include:{SPF_DOMAIN} -all"
        if spf:
            r["txt"].append((DOMAIN, spf))
        if dmarc:
            r["txt"].append((f"_dmarc.{DOMAIN}", "v=DMARC1; p=none"))
        for k in dkim_keys:
            r["txt"].append((k["name"], txt(k["record"])))
        r["txt"] += list(extra)
        return r

    def check(self, gw):
        p = self.cli(gw, "domain", "check", DOMAIN, "--json", ok=False)
        self.assertIn(p.returncode, (0, 3), p.stderr)
        return p.returncode, json.loads(p.stdout)

    def record(self, report, type_, name=None):
        for r in report["records"]:
            if r["type"] == type_ and (name is None or r["name"] == name):
                return r
        raise AssertionError(f"no {type_} {name} in {report}")

    def setup(self, overrides=None):
        port = free_common_port([DEST])
        self.dnssrv = self.dns(self.records())
        self.mx = self.sink(DEST, port, name="recipient MX")
        o = {"egress_addresses": "127.0.0.1", "spf_domain": SPF_DOMAIN,
             "dkim_rotation_grace": "2s"}
        o.update(overrides or {})
        gw = self.delivery_gateway(self.dnssrv, port, overrides=o)
        self.cli(gw, "company", "add", "acme", "--name", "Acme")
        self.cli(gw, "domain", "add", DOMAIN, "--company", "acme")
        self.cli(gw, "credential", "add", "--company", "acme",
                 "--application", "hyra", "--username", "acme-app",
                 "--password-stdin", input="Pw-Acme-1\n")
        self.cli(gw, "company", "set-route", "acme", "platform-relay",
                 "--reference", "T-1")
        gw.wait_log(r"event=tenants\.loaded companies=1\b", timeout=10)
        return gw

    def send(self, gw, n_before):
        with gw.connect_auth_as("acme-app", "Pw-Acme-1") as c:
            r = c.cmd(f"MAIL FROM:<felanmalan@{DOMAIN}>", "250")
            c.cmd(f"RCPT TO:<{RCPT}>", "250")
            c.cmd("DATA", "354")
            c.send(message(sender=f"felanmalan@{DOMAIN}", rcpt=RCPT) +
                   b".\r\n")
            r = c.reply()
            self.assertTrue(r.last.startswith("250"), r)
            qid = queue_id_of(r)
        msgs = self.mx.wait_count(n_before + 1)
        self.wait_gone(gw, [qid])
        return qid, msgs[n_before].content

    def signatures(self, data):
        return [l for l in data.split(b"\r\n")
                if l.lower().startswith(b"dkim-signature:")]

    def dkimpy_verify_all(self, data, keys):
        """Every signature of data verifies with dkimpy (keys from the
        published records, not from DNS)."""
        table = {k["name"].encode() + b".": k["record"].encode()
                 for k in keys}
        n = len(self.signatures(data))
        d = dkim.DKIM(data)
        for i in range(n):
            ok = d.verify(idx=i, dnsfunc=lambda name, timeout=5:
                          table.get(name if name.endswith(b".")
                                    else name + b"."))
            self.assertTrue(ok, f"dkimpy: signature {i} does not verify")
        return n

    def ombud_verify(self, gw, data):
        p = gw.ombud("dkim", "verify", "--json", "--dns",
                     self.dnssrv.servers, input=data)
        return p.returncode, p.stdout

    # --- the tests --------------------------------------------------------

    @unittest.skipIf(dkim is None, "needs python3-dkim")
    def test_sign_after_publish_and_rotate(self):
        gw = self.setup()
        # no key yet: DKIM fails with the reason, SPF and DMARC pass
        rc, rep = self.check(gw)
        self.assertEqual(rc, 3)
        self.assertTrue(rep["spf_ok"], rep)
        self.assertTrue(rep["dmarc_ok"], rep)
        self.assertFalse(rep["dkim_ok"])
        self.assertIn("no DKIM key", json.dumps(rep))

        keys = json.loads(self.cli(gw, "dkim", "keygen", DOMAIN,
                                   "--json").stdout)
        self.assertEqual(sorted(k["algorithm"] for k in keys),
                         ["ed25519-sha256", "rsa-sha256"])
        self.assertTrue(all(k["state"] == "pending" for k in keys))
        # pending keys do not sign: unsigned, with a warning
        qid, data = self.send(gw, 0)
        self.assertEqual(self.signatures(data), [])
        self.wait_event(gw, "dkim.unsigned", qid=qid, spf_aligned="yes")

        # published and seen: active, and the mail is signed twice
        self.dnssrv.reload(self.records(dkim_keys=keys))
        rc, rep = self.check(gw)
        self.assertEqual(rc, 0, rep)
        for k in keys:
            r = self.record(rep, "DKIM", k["name"])
            self.assertEqual(r["status"], "pass", r)
        states = {k["selector"]: k["state"] for k in json.loads(
            self.cli(gw, "dkim", "list", DOMAIN, "--json").stdout)}
        self.assertEqual(set(states.values()), {"active"})
        gw.wait_log(r"event=tenants\.loaded", timeout=10)
        time.sleep(1.5)		# the snapshot with the active keys
        qid, data = self.send(gw, 1)
        self.assertEqual(len(self.signatures(data)), 2, data[:2000])
        self.assertEqual(self.dkimpy_verify_all(data, keys), 2)
        rc, out = self.ombud_verify(gw, data)
        self.assertEqual(rc, 0, out)
        self.assertEqual(out.count('"pass"'), 2, out)
        for k in keys:
            self.assertIn(f"s={k['selector']}".encode(), data)
        self.assertIn(f"d={DOMAIN}".encode(), data)
        # RFC 8058 4: the one-click unsubscribe fields are always signed
        # (over-signed when absent, so they cannot be added later)
        unfolded = data.replace(b"\r\n\t", b"").replace(b"\r\n ", b"")
        self.assertIn(b"list-unsubscribe:list-unsubscribe-post", unfolded)

        # rotation: a new rsa key is pending until published
        new = json.loads(self.cli(gw, "dkim", "keygen", DOMAIN,
                                  "--algorithm", "rsa", "--selector",
                                  "next", "--json").stdout)[0]
        self.check(gw)
        qid, data = self.send(gw, 2)
        old_rsa = [k for k in keys if k["algorithm"] == "rsa-sha256"][0]
        self.assertIn(f"s={old_rsa['selector']}".encode(), data)
        self.assertNotIn(b"s=next;", data)
        allkeys = keys + [new]
        self.dnssrv.reload(self.records(dkim_keys=allkeys))
        rc, rep = self.check(gw)
        self.assertEqual(rc, 0, rep)
        states = {k["selector"]: k["state"] for k in json.loads(
            self.cli(gw, "dkim", "list", DOMAIN, "--json").stdout)}
        self.assertEqual(states["next"], "active")
        self.assertEqual(states[old_rsa["selector"]], "retiring")
        time.sleep(1.5)
        qid, data = self.send(gw, 3)
        self.assertIn(b"s=next;", data)
        self.assertNotIn(f"s={old_rsa['selector']};".encode(), data)
        self.assertEqual(self.dkimpy_verify_all(data, allkeys), 2)
        # after the grace period the old key is retired
        time.sleep(2.5)
        self.check(gw)
        states = {k["selector"]: k["state"] for k in json.loads(
            self.cli(gw, "dkim", "list", DOMAIN, "--json").stdout)}
        self.assertEqual(states[old_rsa["selector"]], "retired")
        audit = [e for e in gw.log_text(all_runs=True).splitlines()
                 if "PRIVATE KEY" in e]
        self.assertEqual(audit, [], "a private key in the log")

    def test_check_reasons(self):
        gw = self.setup()
        keys = json.loads(self.cli(gw, "dkim", "keygen", DOMAIN,
                                   "--algorithm", "ed25519",
                                   "--json").stdout)
        other = json.loads(self.cli(gw, "dkim", "keygen", DOMAIN,
                                    "--algorithm", "rsa", "--selector",
                                    "other", "--json").stdout)[0]
        # the include missing, the wrong key at the selector, no DMARC
        wrong = dict(keys[0], record=other["record"].replace(
            "k=rsa", "k=ed25519"))
        self.dnssrv.reload(self.records(spf="v=spf1 mx -all",
                                        dkim_keys=[wrong], dmarc=False))
        rc, rep = self.check(gw)
        self.assertEqual(rc, 3)
        spf = self.record(rep, "SPF")
        self.assertEqual(spf["status"], "fail")
        self.assertIn(f"include:{SPF_DOMAIN}", " ".join(spf["reasons"]))
        self.assertEqual(spf["expected"],
                         f"v=spf1 include:{SPF_DOMAIN} mx -all")
        d = self.record(rep, "DKIM", keys[0]["name"])
        self.assertEqual(d["status"], "fail")
        self.assertIn("mismatch", " ".join(d["reasons"]))
        self.assertEqual(self.record(rep, "DMARC")["status"], "fail")
        self.assertIn("no DMARC record",
                      " ".join(self.record(rep, "DMARC")["reasons"]))
        # +all and two SPF records
        self.dnssrv.reload(self.records(spf="v=spf1 +all"))
        rc, rep = self.check(gw)
        self.assertEqual(self.record(rep, "SPF")["status"], "fail")
        self.assertIn("+all", json.dumps(self.record(rep, "SPF")))
        self.dnssrv.reload(self.records(extra=[(DOMAIN, "v=spf1 -all")]))
        rc, rep = self.check(gw)
        self.assertEqual(self.record(rep, "SPF")["records_found"], 2)
        self.assertFalse(rep["spf_ok"])
        # the text report names every record
        p = self.cli(gw, "domain", "check", DOMAIN, ok=False)
        self.assertEqual(p.returncode, 3)
        for word in ("SPF", "DKIM", "DMARC", "NOT READY", "publish:"):
            self.assertIn(word, p.stdout)
        # the verdicts are stored
        d = [x for x in json.loads(self.cli(gw, "domain", "list",
                                            "--json").stdout)
             if x["domain"] == DOMAIN][0]
        self.assertFalse(d["spf_ok"])

    def test_periodic_check_marks_a_broken_domain(self):
        gw = self.setup({"domain_check_interval": "1s"})
        keys = json.loads(self.cli(gw, "dkim", "keygen", DOMAIN,
                                   "--json").stdout)
        self.dnssrv.reload(self.records(dkim_keys=keys))
        # the server's own check activates the keys and passes the domain
        self.wait_event(gw, "domain.checked", domain=DOMAIN, spf="pass",
                        dkim="pass", dmarc="pass", timeout=30)
        states = {k["state"] for k in json.loads(
            self.cli(gw, "dkim", "list", DOMAIN, "--json").stdout)}
        self.assertEqual(states, {"active"})
        # the include is removed: the next round marks SPF failing
        self.dnssrv.reload(self.records(spf="v=spf1 -all",
                                        dkim_keys=keys))
        self.wait_event(gw, "domain.checked", domain=DOMAIN, spf="fail",
                        timeout=30)
        d = [x for x in json.loads(self.cli(gw, "domain", "list",
                                            "--json").stdout)
             if x["domain"] == DOMAIN][0]
        self.assertFalse(d["spf_ok"])
        self.assertTrue(d["dkim_ok"])

    def test_held_until_the_check_passes(self):
        """From authentication_required_from, platform-relay mail of a
        domain that does not pass waits; the server's own periodic check
        sees the records published, activates the keys and passes the
        domain, and the held message leaves signed."""
        gw = self.setup({"authentication_required_from": "2020-01-01",
                         "domain_check_interval": "1s"})
        keys = json.loads(self.cli(gw, "dkim", "keygen", DOMAIN,
                                   "--json").stdout)
        with gw.connect_auth_as("acme-app", "Pw-Acme-1") as c:
            c.cmd(f"MAIL FROM:<felanmalan@{DOMAIN}>", "250")
            c.cmd(f"RCPT TO:<{RCPT}>", "250")
            c.cmd("DATA", "354")
            c.send(message(sender=f"felanmalan@{DOMAIN}", rcpt=RCPT) +
                   b".\r\n")
            r = c.reply()
            self.assertTrue(r.last.startswith("250"), r)
            qid = queue_id_of(r)
        self.wait_event(gw, "delivery.held_unauthenticated", qid=qid,
                        domain=DOMAIN)
        self.assertEqual(self.mx.count(), 0)
        self.assertIn(qid, gw.queue_ids())      # held, not lost
        self.dnssrv.reload(self.records(dkim_keys=keys))
        self.wait_event(gw, "delivery.released_authenticated", qid=qid,
                        timeout=30)
        data = self.mx.wait_count(1)[0].content
        self.wait_gone(gw, [qid])
        self.assertEqual(len(self.signatures(data)), 2, data[:1500])
        if dkim is not None:
            self.assertEqual(self.dkimpy_verify_all(data, keys), 2)


if __name__ == "__main__":
    main()

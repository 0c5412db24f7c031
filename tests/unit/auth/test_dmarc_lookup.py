#!/usr/bin/python3
# test_dmarc_lookup.py - dmarc_lookup() (policy discovery, RFC 7489 6.6.3)
# against dnsmasq on loopback.
#
# What it does: serves _dmarc TXT records from peers.DnsServer (dnsmasq,
# local zones answer NXDOMAIN for unknown names, other names are REFUSED,
# which the dns layer reports as a temporary failure), runs the
# dmarc_lookup_run driver (argv[1]) over a list of From domains and checks
# each line: the record found and where, the fallback to the
# organizational domain, several records = none, invalid records, DNS
# trouble = temperror, U-labels, cancellation; and from dnsmasq's log that
# exactly the expected names were asked.
#
# Must never: use a DNS server other than the dnsmasq it starts on
# 127.0.0.1.
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "blackbox"))
from peers import DnsServer  # noqa: E402

RUN = None

RECORDS = [
    ("_dmarc.example.test", "v=DMARC1; p=reject; sp=quarantine; pct=50"),
    ("_dmarc.own.example.test", "v=DMARC1; p=none"),
    ("_dmarc.multi.test", "v=DMARC1; p=reject"),
    ("_dmarc.multi.test", "v=DMARC1; p=none"),
    ("_dmarc.sub.multi2.test", "v=DMARC1; p=reject"),
    ("_dmarc.sub.multi2.test", "v=DMARC1; p=quarantine"),
    ("_dmarc.multi2.test", "v=DMARC1; p=none"),
    ("_dmarc.mixed.test", "v=spf1 -all"),
    ("_dmarc.mixed.test", "v=DMARC1; p=quarantine"),
    ("_dmarc.mixed.test", "v=DMARC10; p=reject"),
    ("_dmarc.bad.test", "v=DMARC1; p=bogus"),
    ("_dmarc.fallback.test", "v=DMARC1; p=bogus; rua=mailto:d@fallback.test"),
    ("_dmarc.notdmarc.test", "v=DMARC2; p=reject"),
    ("_dmarc.xn--bcher-kva.test", "v=DMARC1; p=reject"),
]
LOCAL = ("example.test", "multi.test", "multi2.test", "mixed.test",
         "bad.test", "fallback.test", "notdmarc.test", "xn--bcher-kva.test",
         "nothing.test", "sub.gone.test")


class DmarcLookup(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dns = DnsServer({"txt": RECORDS}, local=LOCAL)

    @classmethod
    def tearDownClass(cls):
        cls.dns.close()

    def run_lookups(self, *domains):
        p = subprocess.run([RUN, self.dns.servers] + list(domains),
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = {}
        for line in p.stdout.splitlines():
            f = line.split("\t")
            out[f[0]] = f[1:]
        self.assertEqual(len(out), len(domains), p.stdout)
        return out

    def check(self, domain, status, where, at_org, p="-", sp="-", pct=0,
              fallback=0, reason=None):
        got = self.run_lookups(domain)[domain]
        self.assertEqual(got[:7], [status, where, str(at_org), p, sp,
                                   str(pct), str(fallback)], got)
        if reason is not None:
            self.assertIn(reason, got[7])
        return got

    def asked(self, name):
        return sum(1 for t, n in self.dns.queries() if n == name)

    def test_found_at_from_domain(self):
        self.check("example.test", "found", "example.test", 0,
                   "reject", "quarantine", 50)
        self.check("EXAMPLE.Test.", "found", "example.test", 0,
                   "reject", "quarantine", 50)

    def test_found_at_org_domain(self):
        self.check("a.b.example.test", "found", "example.test", 1,
                   "reject", "quarantine", 50)
        # _dmarc.b.example.test is not asked: the org domain comes from
        # the PSL, not from walking up the tree
        self.assertEqual(self.asked("_dmarc.a.b.example.test"), 1)
        self.assertEqual(self.asked("_dmarc.b.example.test"), 0)

    def test_subdomain_own_record(self):
        self.check("own.example.test", "found", "own.example.test", 0,
                   "none", "none", 100)

    def test_several_records_are_none(self):
        self.check("multi.test", "none", "multi.test", 0,
                   reason="2 DMARC records")
        # several at the From domain: no fallback to the org domain
        before = self.asked("_dmarc.multi2.test")
        self.check("sub.multi2.test", "none", "sub.multi2.test", 0,
                   reason="2 DMARC records")
        self.assertEqual(self.asked("_dmarc.multi2.test"), before)

    def test_other_txt_records_discarded(self):
        self.check("mixed.test", "found", "mixed.test", 0,
                   "quarantine", "quarantine", 100)

    def test_invalid_record(self):
        self.check("bad.test", "none", "bad.test", 0, reason="invalid p=")
        self.check("fallback.test", "found", "fallback.test", 0,
                   "none", "none", 100, fallback=1)

    def test_no_record(self):
        self.check("nothing.test", "none", "nothing.test", 0,
                   reason="no DMARC record at _dmarc.nothing.test")
        self.check("x.nothing.test", "none", "nothing.test", 1,
                   reason="no DMARC record at _dmarc.nothing.test")
        # a non-DMARC record is no record: v=DMARC2 is discarded
        self.check("notdmarc.test", "none", "notdmarc.test", 0,
                   reason="no DMARC record")

    def test_temperror(self):
        # REFUSED (outside dnsmasq's local zones) at the From domain
        self.check("x.refused.example", "temperror", "x.refused.example",
                   0, reason="DNS failure")
        # NXDOMAIN at the From domain, REFUSED at the org domain
        self.check("a.sub.gone.test", "temperror", "gone.test", 1,
                   reason="DNS failure for _dmarc.gone.test")

    def test_idna(self):
        self.check("www.Bücher.test", "found", "xn--bcher-kva.test", 1,
                   "reject", "reject", 100)

    def test_bad_names(self):
        for name in ("a..b.test", "", "x y.test", "-" * 64 + ".test"):
            got = self.run_lookups(name)[name]
            self.assertEqual(got[0], "none", got)
            self.assertIn("no valid domain name", got[7])

    def test_cancel(self):
        out = self.run_lookups("cancel:example.test", "multi.test")
        self.assertEqual(out["example.test"], ["cancelled"])
        self.assertEqual(out["multi.test"][0], "none")


if __name__ == "__main__":
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        sys.exit("usage: test_dmarc_lookup.py DMARC_LOOKUP_RUN [unittest "
                 "args]")
    RUN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)

#!/usr/bin/python3
"""ombud's DKIM signatures checked by independent verifiers, and
`ombud dkim verify`.

A varied corpus (folded and duplicate header fields, lines of 998
bytes, 8-bit bodies, an empty body, trailing blanks and empty lines, a
header section without a body, a lone CR inside a line...) is signed by
ombud's signer (dkim_tool sign: dkim_sign, with over-signing) with
rsa-sha256 and ed25519-sha256, relaxed/relaxed and simple/simple, the
keys published by dnsmasq on loopback, and every signed message is
verified by

  dkimpy      python3-dkim's DKIM.verify, its key records fetched from
              the same dnsmasq (peers.dns_query as its dnsfunc)
  OpenDKIM    opendkim-testmsg (opendkim-tools), which only knows
              /etc/resolv.conf: it runs in a mount+net+pid namespace made
              by unshare, with a resolv.conf bind-mounted over the real
              one and a dnsmasq on 127.0.0.1:53 inside (root only)
  ombud       `ombud dkim verify --dns 127.0.0.1:PORT`, and once more
              inside the namespace without --dns (the /etc/resolv.conf
              path)

Negative cases must fail in all three: a changed body, a changed signed
header field, the wrong key published under the selector, a revoked key
(empty p=).  The CLI's own behaviour (exit codes, --json, bare LF input,
two signatures, temperror, usage) is tested with ombud alone.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ombudtest import OMBUD, need_binary, run  # noqa: E402
from peers import DNSMASQ, DnsServer, dns_query, have  # noqa: E402

TOOL = os.environ.get("OMBUD_DKIM_TOOL", "")
TESTMSG = "/usr/sbin/opendkim-testmsg"
DOMAIN = "dkim.test"
ALGS = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}
CANONS = ("relaxed/relaxed", "simple/simple")

HDR = (b"From: Alice Example <alice@dkim.test>\r\n"
       b"To: bob@example.test\r\n"
       b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
       b"Message-ID: <corpus.1@dkim.test>\r\n")


# Messages OpenDKIM is not asked about, and why: none of them is ever
# signed by the gateway, which refuses or completes them at DATA.
NOT_OPENDKIM = {
    # libopendkim refuses a duplicate To/Subject/... (RFC 5322 3.6) as a
    # syntax error; the gateway rejects such a message (550 5.6.0)
    "duplicate-singletons": "OpenDKIM: Syntax error",
    # libopendkim does not hash a lone CR inside a line as the byte RFC
    # 6376 takes it for (dkimpy and ombud agree); the gateway never queues
    # one (SMTP smuggling defence: 550 5.6.0 at DATA)
    "lone-cr": "OpenDKIM: Bad signature",
    # no empty line after the header: libopendkim hashes the empty simple
    # body as "" where RFC 6376 3.4.3 says CRLF (dkimpy and ombud agree);
    # the gateway adds the empty line at DATA
    "header-only": "OpenDKIM: Bad signature with simple body canon",
}


def corpus():
    """(name, message bytes); every one of them is signed and verified."""
    long_word = b"x" * 990
    c = [
        ("plain", HDR + b"Subject: plain\r\n\r\nHello.\r\n"),
        ("folded", HDR + b"Subject: a subject\r\n folded\r\n\tover three"
         b" lines\r\nX-Folded: one\r\n  two   three \t \r\n\r\nBody.\r\n"),
        ("duplicate", HDR + b"Subject: dup\r\nReceived: from a\r\n"
         b"Received: from b\r\nComments: one\r\nComments: two\r\n"
         b"Keywords: k1\r\nKeywords: k2\r\nX-Dup: 1\r\nX-Dup: 2\r\n"
         b"X-Dup: 3\r\n\r\nSeveral of each.\r\n"),
        ("duplicate-singletons", HDR + b"Subject: first\r\n"
         b"Subject: second\r\nCc: c1@example.test\r\n"
         b"Cc: c2@example.test\r\n\r\nTwo of each.\r\n"),
        ("long-lines", HDR + b"Subject: " + b"s" * 989 + b"\r\n"
         b"X-Long: " + long_word + b"\r\n\r\n" + b"y" * 998 + b"\r\n" +
         (b"word " * 199)[:998] + b"\r\n"),
        ("8bit-utf8", HDR + b"Subject: 8bit\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\n"
         b"Content-Transfer-Encoding: 8bit\r\n\r\n" +
         "Grüße, naïve café — ∑ 日本語\r\n".encode()),
        ("8bit-latin1", HDR + b"Subject: latin1\r\n\r\n"
         b"caf\xe9 \xff\xfe\x80 bytes\r\n"),
        ("empty-body", HDR + b"Subject: empty\r\n\r\n"),
        ("only-empty-lines", HDR + b"Subject: blank\r\n\r\n\r\n\r\n\r\n"),
        ("trailing-ws", HDR + b"Subject:   spaced   out  \t \r\n\r\n"
         b"line with blanks   \r\n\tindented\t \r\n  \r\nend \t\r\n"
         b"\r\n\r\n\r\n"),
        ("no-final-crlf", HDR + b"Subject: no crlf\r\n\r\nlast line"),
        ("header-only", HDR + b"Subject: no body\r\n"),
        ("lone-cr", HDR + b"Subject: cr\r\n\r\nbefore\rafter\r\n"),
        ("lone-lf", HDR + b"Subject: lf\r\n\r\nbefore\nafter\r\n"),
        ("dot-lines", HDR + b"Subject: dots\r\n\r\n.\r\n..\r\n. x\r\n"),
    ]
    return c


def dkimpy_verify(msg, dns):
    """True if dkimpy verifies the first signature of msg."""
    import dkim

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        rcode, answers = dns_query(dns.servers, name.rstrip("."), "TXT")
        txt = [a for t, a in answers if t == "TXT"]
        return txt[0].encode() if txt else None

    try:
        return bool(dkim.DKIM(msg).verify(idx=0, dnsfunc=dnsfunc))
    except dkim.DKIMException:
        return False


# --- inside the namespace -------------------------------------------------


def netns_main(job_path):
    """Run in a fresh mount+net+pid namespace: loopback up, our own
    resolv.conf, dnsmasq on 127.0.0.1:53, then each verifier over each
    file.  Results go to the job's "out" file as JSON."""
    with open(job_path) as f:
        job = json.load(f)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    resolv = os.path.join(job["dir"], "resolv.conf")
    with open(resolv, "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    subprocess.run(["mount", "--bind", resolv, "/etc/resolv.conf"],
                   check=True)
    dm = subprocess.Popen(job["dnsmasq"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                dns_query("127.0.0.1:53", "probe.invalid", "A", 0.1)
                break
            except (OSError, AssertionError):
                if dm.poll() is not None:
                    raise SystemExit("dnsmasq exited in the namespace")
        out = {}
        for path in job["files"]:
            res = {}
            with open(path, "rb") as f:
                msg = f.read()
            p = subprocess.run([TESTMSG], input=msg, capture_output=True,
                               timeout=30)
            res["opendkim"] = [p.returncode, p.stderr.decode("utf-8",
                                                             "replace")]
            p = subprocess.run(job["verify"], input=msg,
                               capture_output=True, timeout=60,
                               cwd=job["dir"])
            res["ombud"] = [p.returncode, p.stdout.decode("utf-8",
                                                          "replace") +
                            p.stderr.decode("utf-8", "replace")]
            out[path] = res
        with open(job["out"], "w") as f:
            json.dump(out, f)
    finally:
        dm.terminate()
        dm.wait()


# --- the tests ------------------------------------------------------------


class DkimTools(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        need_binary()
        if not TOOL or not os.access(TOOL, os.X_OK):
            raise AssertionError("OMBUD_DKIM_TOOL is not set to dkim_tool "
                                 f"(got {TOOL!r})")
        if not have(DNSMASQ):
            raise AssertionError("dnsmasq-base is not installed")
        cls.dir = tempfile.mkdtemp(prefix="ombud-dkimtools-")
        cls.keys = {}
        records = []
        for kt in ALGS:
            for sel in (kt, "wrong-" + kt):
                path = os.path.join(cls.dir, sel + ".pem")
                p = run([TOOL, "keygen", kt, path], check=True)
                cls.keys[sel] = (path, p.stdout.strip())
            # the key of "wrong-KT" signs; the record of KT is published
            # under it (a key that does not match)
            records.append((f"{kt}._domainkey.{DOMAIN}", cls.keys[kt][1]))
            records.append((f"wrong-{kt}._domainkey.{DOMAIN}",
                            cls.keys[kt][1]))
            records.append((f"revoked-{kt}._domainkey.{DOMAIN}",
                            f"v=DKIM1; k={kt}; p="))
        cls.records = records
        cls.dns = DnsServer({"txt": records}, local=("test",))
        cls.verify = [os.path.abspath(OMBUD), "dkim", "verify"]

    @classmethod
    def tearDownClass(cls):
        cls.dns.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def sign(self, msg, kt="rsa", canon="relaxed/relaxed", key=None,
             selector=None):
        key = key or kt
        selector = selector or kt
        p = subprocess.run([TOOL, "sign", self.keys[key][0], DOMAIN,
                            selector, ALGS[kt], canon], input=msg,
                           capture_output=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError(f"dkim_tool sign: {p.stderr!r}")
        self.assertTrue(p.stdout.endswith(msg))
        return p.stdout

    def ombud_verify(self, msg, *args):
        p = subprocess.run(self.verify + ["--dns", self.dns.servers] +
                           list(args), input=msg, capture_output=True,
                           timeout=60)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def netns_run(self, files):
        """{file: {"opendkim": [rc, stderr], "ombud": [rc, output]}}."""
        if os.geteuid() != 0:
            self.skipTest("opendkim-testmsg runs in a namespace that "
                          "needs root (dnsmasq's setgroups)")
        if not have(TESTMSG):
            raise AssertionError("opendkim-testmsg is not installed "
                                 "(apt-get install opendkim-tools)")
        d = tempfile.mkdtemp(prefix="netns-", dir=self.dir)
        dns = DnsServer({"txt": self.records}, local=("test",),
                        directory=d, start=False)
        dns.port = 53
        job = {"dir": d, "files": files, "out": os.path.join(d, "out"),
               "dnsmasq": dns.args(), "verify": self.verify}
        with open(os.path.join(d, "job"), "w") as f:
            json.dump(job, f)
        p = run(["unshare", "--mount", "--net", "--pid", "--fork",
                 "--kill-child", "--mount-proc", sys.executable, os.path.abspath(__file__),
                 "--in-netns", os.path.join(d, "job")], timeout=600)
        self.assertEqual(p.returncode, 0, f"namespace run: {p.stderr}")
        with open(job["out"]) as f:
            return json.load(f)

    def test_corpus_verifies_everywhere(self):
        signed = {}
        for name, msg in corpus():
            for kt in ALGS:
                for canon in CANONS:
                    path = os.path.join(self.dir, f"{name}.{kt}."
                                        f"{canon.replace('/', '-')}")
                    sm = self.sign(msg, kt, canon)
                    with open(path, "wb") as f:
                        f.write(sm)
                    signed[path] = sm
        self.assertEqual(len(signed), len(corpus()) * 4)
        failures = []
        for path, sm in signed.items():
            rc, out, err = self.ombud_verify(sm)
            if rc != 0 or " pass" not in out:
                failures.append(f"ombud {path}: {rc} {out}{err}")
            if not dkimpy_verify(sm, self.dns):
                failures.append(f"dkimpy {path}")
        ns = self.netns_run(sorted(signed))
        for path in signed:
            rc, err = ns[path]["opendkim"]
            if os.path.basename(path).split(".")[0] in NOT_OPENDKIM:
                continue
            if rc != 0:
                failures.append(f"opendkim {path}: {rc} {err}")
            rc, out = ns[path]["ombud"]
            if rc != 0 or " pass" not in out:
                failures.append(f"ombud (resolv.conf) {path}: {rc} {out}")
        self.assertEqual(failures, [], "\n".join(failures))

    def negatives(self):
        """(name, message) pairs that no verifier may pass."""
        base = HDR + b"Subject: the original\r\n\r\nThe body.\r\n"
        out = []
        for kt in ALGS:
            for canon in CANONS:
                sm = self.sign(base, kt, canon)
                tag = f"{kt}.{canon.replace('/', '-')}"
                out.append((f"body.{tag}", sm.replace(b"The body.",
                                                      b"The b0dy.")))
                out.append((f"added-line.{tag}", sm + b"more\r\n"))
                out.append((f"header.{tag}", sm.replace(
                    b"Subject: the original", b"Subject: the 0riginal")))
                out.append((f"wrong-key.{tag}", self.sign(
                    base, kt, canon, key="wrong-" + kt,
                    selector="wrong-" + kt)))
                out.append((f"revoked.{tag}", self.sign(
                    base, kt, canon, selector="revoked-" + kt)))
        return out

    def test_negatives_fail_everywhere(self):
        cases = self.negatives()
        passed = []
        files = []
        for name, sm in cases:
            path = os.path.join(self.dir, "neg." + name)
            with open(path, "wb") as f:
                f.write(sm)
            files.append(path)
            rc, out, err = self.ombud_verify(sm)
            if rc != 1 or " pass" in out or not (" fail " in out or
                                                 " permerror " in out):
                passed.append(f"ombud {name}: {rc} {out}{err}")
            if dkimpy_verify(sm, self.dns):
                passed.append(f"dkimpy {name}")
        ns = self.netns_run(files)
        for path in files:
            if ns[path]["opendkim"][0] == 0:
                passed.append(f"opendkim {path}")
            if ns[path]["ombud"][0] != 1:
                passed.append(f"ombud (resolv.conf) {path}: "
                              f"{ns[path]['ombud']}")
        self.assertEqual(passed, [], "\n".join(passed))

    def test_negative_reasons(self):
        base = HDR + b"Subject: the original\r\n\r\nThe body.\r\n"
        sm = self.sign(base, "rsa")
        rc, out, _ = self.ombud_verify(sm.replace(b"The body.", b"Other."))
        self.assertEqual((rc, out), (1, f"d={DOMAIN} s=rsa a=rsa-sha256 "
                                        "fail body hash mismatch\n"))
        rc, out, _ = self.ombud_verify(sm.replace(b"the original",
                                                  b"the forgery"))
        self.assertEqual((rc, out), (1, f"d={DOMAIN} s=rsa a=rsa-sha256 "
                                        "fail signature mismatch\n"))
        rc, out, _ = self.ombud_verify(self.sign(base, "ed25519",
                                                 selector="nokey"))
        self.assertEqual((rc, out), (1, f"d={DOMAIN} s=nokey "
                                        "a=ed25519-sha256 permerror no key "
                                        "record\n"))

    # --- the CLI itself -----------------------------------------------

    def test_cli_exit_codes_and_output(self):
        base = HDR + b"Subject: cli\r\n\r\nBody.\r\n"
        sm = self.sign(base, "ed25519")
        rc, out, err = self.ombud_verify(sm)
        self.assertEqual((rc, out), (0, f"d={DOMAIN} s=ed25519 "
                                        "a=ed25519-sha256 pass\n"), err)
        # unsigned
        rc, out, _ = self.ombud_verify(base)
        self.assertEqual(rc, 1)
        self.assertIn("no DKIM-Signature", out)
        # two signatures, the top one broken: one passes, exit 0
        two = self.sign(sm, "rsa")
        bad = two.replace(b"s=rsa;", b"s=wrong-rsa;", 1)
        self.assertNotEqual(bad, two)
        rc, out, _ = self.ombud_verify(bad, "--json")
        self.assertEqual(rc, 0, out)
        res = json.loads(out)
        self.assertEqual([(r["selector"], r["algorithm"], r["result"])
                          for r in res],
                         [("wrong-rsa", "rsa-sha256", "fail"),
                          ("ed25519", "ed25519-sha256", "pass")])
        # LF line ends are taken as CRLF
        rc, out, _ = self.ombud_verify(sm.replace(b"\r\n", b"\n"))
        self.assertEqual(rc, 0, out)
        # nothing answers on port 9: temperror, exit 3
        p = subprocess.run(self.verify + ["--dns", "127.0.0.1:9"],
                           input=sm, capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        self.assertIn(b"temperror key lookup failed", p.stdout)
        # usage
        p = subprocess.run(self.verify + ["--bogus"], input=b"",
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"usage: ombud dkim verify", p.stderr)
        # a header section that is not one
        rc, out, err = self.ombud_verify(b" folded first\r\n\r\nx\r\n")
        self.assertEqual(rc, 1)
        self.assertIn("cannot be split", err)

    def test_cli_servers_from_config(self):
        sm = self.sign(HDR + b"Subject: conf\r\n\r\nBody.\r\n", "rsa")
        conf = os.path.join(self.dir, "verify.conf")
        with open(conf, "w") as f:
            f.write(f"dns_servers = {self.dns.servers}\n"
                    "[listener relay]\naddress = 127.0.0.1:2525\n"
                    "auth = no\ntrusted_networks = 127.0.0.0/8\n")
        env = dict(os.environ, OMBUD_CONF=conf)
        p = subprocess.run(self.verify, input=sm, capture_output=True,
                           timeout=60, env=env)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # a configuration that cannot be read is an error, not resolv.conf
        env = dict(os.environ, OMBUD_CONF=conf + ".missing")
        p = subprocess.run(self.verify, input=sm, capture_output=True,
                           timeout=60, env=env)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--in-netns":
        netns_main(sys.argv[2])
        sys.exit(0)
    unittest.main(verbosity=2)

#!/usr/bin/python3
"""The tenant administration CLI against the real store, no server:
`ombud secret-key|company|domain|user|credential`.

Each command with and without --json; set-route records who, when and
the ticket and shows in `company show`'s audit log; a domain belongs to
one company; a mass update of 10,000 users from a CSV file in one store
transaction (and --dry-run changes nothing); an unknown email in the CSV
is listed and nothing is written; secrets given on stdin or in a file
never appear in the database files or in any output; the key file is
created 0600 and never overwritten.
"""
import csv
import glob
import json
import os
import re
import shutil
import stat
import tempfile
import time
import unittest

from ombudtest import OMBUD, main, need_binary, run

# the commands run in a temporary directory: a relative OMBUD_BIN is
# relative to where the test was started
BIN = os.path.abspath(OMBUD) if OMBUD else OMBUD

CONF = """hostname = gw.test
spool_dir = spool
run_dir = run
store = sqlite:var/ombud.db
secret_key_file = var/secret.key

[listener relay]
address = 127.0.0.1:2525
auth = no
trusted_networks = 127.0.0.0/8
"""


class TenantCLI(unittest.TestCase):
    """A configuration in a temporary directory (relative paths, as an
    operator would have them) and a secret key."""

    def setUp(self):
        need_binary()
        self.dir = tempfile.mkdtemp(prefix="ombudtest-tenantcli-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        os.mkdir(os.path.join(self.dir, "var"))
        with open(os.path.join(self.dir, "ombud.conf"), "w") as f:
            f.write(CONF)
        self.outputs = []       # every stdout and stderr, for the secrets
        self.ok("secret-key", "generate")

    def ombud(self, *args, input=None, timeout=120):
        p = run([BIN, *args, "-c", "ombud.conf"], input=input,
                cwd=self.dir, timeout=timeout)
        self.outputs += [p.stdout, p.stderr]
        self.assertNotRegex(p.stderr, r"Sanitizer|runtime error:")
        return p

    def ok(self, *args, input=None):
        p = self.ombud(*args, input=input)
        self.assertEqual(p.returncode, 0,
                         f"ombud {' '.join(args)}: {p.stdout}{p.stderr}")
        return p

    def js(self, *args, input=None):
        return json.loads(self.ok(*args, "--json", input=input).stdout)

    def fails(self, code, *args, input=None, msg=None):
        p = self.ombud(*args, input=input)
        self.assertEqual(p.returncode, code,
                         f"ombud {' '.join(args)}: {p.stdout}{p.stderr}")
        self.assertTrue(p.stderr.startswith("ombud"), p.stderr)
        if msg:
            self.assertRegex(p.stderr, msg)
        return p

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def company(self, cid="acme", name="Acme AB"):
        self.ok("company", "add", cid, "--name", name)

    def write_csv(self, name, rows, header=("name", "email", "phone")):
        with open(self.path(name), "w", newline="") as f:
            w = csv.writer(f)      # RFC 4180 quoting, CRLF
            w.writerow(header)
            w.writerows(rows)
        return name


class SecretKey(TenantCLI):

    def test_generate_0600_and_no_overwrite(self):
        key = self.path("var", "secret.key")
        st = os.stat(key)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(st.st_size, 32)
        with open(key, "rb") as f:
            before = f.read()
        self.fails(1, "secret-key", "generate")
        with open(key, "rb") as f:
            self.assertEqual(f.read(), before)
        # a file named on the command line; --json
        j = self.js("secret-key", "generate", "other.key")
        self.assertEqual(j["file"], "other.key")
        self.assertEqual(stat.S_IMODE(os.stat(self.path("other.key"))
                                      .st_mode), 0o600)
        p = self.ok("secret-key", "generate", "third.key")
        self.assertIn("third.key", p.stdout)
        self.assertNotIn(before.hex(), "".join(self.outputs))

    def test_secret_needs_the_key(self):
        os.unlink(self.path("var", "secret.key"))
        self.company()      # no secret: works without the key
        self.fails(1, "company", "set-route", "acme", "own-server",
                   "--host", "smtp.acme.test", "--auth-user", "u",
                   "--password-stdin", "--reference", "T-1",
                   input="Pw-nokey-1\n", msg=r"secret-key generate")


class Companies(TenantCLI):

    def test_add_list_show(self):
        p = self.ok("company", "add", "acme", "--name", "Acme AB")
        self.assertIn("acme", p.stdout)
        j = self.js("company", "add", "beta", "--name", "Beta Bostäder")
        self.assertEqual((j["id"], j["name"], j["status"], j["route"]),
                         ("beta", "Beta Bostäder", "active", "none"))
        self.fails(1, "company", "add", "acme", "--name", "Again",
                   msg="already exists")
        self.fails(1, "company", "add", "Bad_Id", "--name", "X",
                   msg="not a company id")
        self.fails(2, "company", "add", "gamma")            # no --name
        self.fails(2, "company", "add", "gamma", "--name")  # no value
        self.fails(2, "company", "add", "gamma", "--name", "G",
                   "--bogus")
        p = self.ok("company", "list")
        self.assertRegex(p.stdout, r"(?m)^acme\s+active\s+none\s+Acme AB$")
        self.assertIn("Beta Bostäder", p.stdout)
        j = self.js("company", "list")
        self.assertEqual(sorted(c["id"] for c in j), ["acme", "beta"])
        p = self.ok("company", "show", "acme")
        self.assertRegex(p.stdout, r"(?m)^status:\s+active$")
        self.assertRegex(p.stdout, r"(?m)^route:\s+none$")
        self.assertIn("company.add", p.stdout)
        j = self.js("company", "show", "acme")
        self.assertEqual(j["users"], 0)
        self.assertEqual(j["credentials"], 0)
        self.assertEqual(j["domains"], [])
        self.assertEqual(j["audit"][0]["action"], "company.add")
        self.fails(1, "company", "show", "nosuch", msg="not found")

    def test_suspend_activate(self):
        self.company()
        p = self.ok("company", "suspend", "acme", "--reference", "T-7")
        self.assertIn("suspended", p.stdout)
        self.assertEqual(self.js("company", "show", "acme")["status"],
                         "suspended")
        j = self.js("company", "activate", "acme", "--actor", "bob")
        self.assertEqual(j["status"], "active")
        audit = self.js("company", "show", "acme")["audit"]
        self.assertEqual([a["actor"] for a in audit][-1], "bob")
        self.assertIn("T-7", [a["reference"] for a in audit])
        self.fails(1, "company", "suspend", "nosuch", msg="not found")

    def test_set_route_records_request_and_audit(self):
        self.company()
        self.fails(2, "company", "set-route", "acme", "platform-relay",
                   msg="--reference")
        self.fails(1, "company", "set-route", "acme", "carrier-pigeon",
                   "--reference", "T-1", msg="not one of")
        self.fails(2, "company", "set-route", "acme", "platform-relay",
                   "--host", "x.test", "--reference", "T-1",
                   msg="own-server")
        self.fails(2, "company", "set-route", "acme", "own-server",
                   "--reference", "T-1", msg="--host")
        self.fails(2, "company", "set-route", "acme", "own-server",
                   "--host", "smtp.acme.test", "--auth-user", "u",
                   "--reference", "T-1", msg="password")
        t0 = int(time.time())
        p = self.ok("company", "set-route", "acme", "platform-relay",
                    "--reference", "SUP-1234", "--actor", "alice")
        self.assertIn("platform-relay", p.stdout)
        j = self.js("company", "show", "acme")
        self.assertEqual(j["route"], "platform-relay")
        rq = j["route_request"]
        self.assertEqual((rq["actor"], rq["reference"]),
                         ("alice", "SUP-1234"))
        self.assertLessEqual(abs(rq["at"] - t0), 5)
        last = j["audit"][-1]
        self.assertEqual((last["actor"], last["reference"]),
                         ("alice", "SUP-1234"))
        self.assertEqual(last["action"], "route.set")
        p = self.ok("company", "show", "acme")
        self.assertRegex(p.stdout, r"requested: \S+ by alice, reference "
                         r"SUP-1234")
        self.assertRegex(p.stdout, r"(?m)^  \S+  alice  route\.set  ref "
                         r"SUP-1234")
        # own server, then XOAUTH2, --json
        j = self.js("company", "set-route", "acme", "own-server",
                    "--host", "smtp.acme.test", "--port", "2525",
                    "--tls", "required", "--reference", "SUP-1235")
        self.assertEqual(j["own_server"]["host"], "smtp.acme.test")
        self.assertEqual(j["own_server"]["port"], 2525)
        self.assertEqual(j["own_server"]["secret"], None)
        j = self.js("company", "set-route", "acme", "own-server",
                    "--host", "smtp.office365.com", "--auth-user",
                    "noreply@acme.test", "--xoauth2-token-url",
                    "https://login.example.test/token",
                    "--xoauth2-client-id", "cid-1", "--client-secret-stdin",
                    "--xoauth2-scope", "https://outlook.office.com/.default",
                    "--reference", "SUP-1236", input="Oauth-Secret-55\n")
        own = j["own_server"]
        self.assertEqual((own["port"], own["tls"], own["secret"],
                          own["xoauth2_client_id"]),
                         (587, "verify", "set", "cid-1"))
        refs = [a["reference"] for a in
                self.js("company", "show", "acme")["audit"]]
        self.assertEqual(refs[-3:], ["SUP-1234", "SUP-1235", "SUP-1236"])


class Domains(TenantCLI):

    def test_domains(self):
        self.company("acme")
        self.company("beta", "Beta")
        p = self.ok("domain", "add", "Acme.Test", "--company", "acme")
        self.assertIn("acme.test", p.stdout)
        j = self.js("domain", "add", "mail.acme.test", "--company", "acme")
        self.assertEqual((j["domain"], j["company"]),
                         ("mail.acme.test", "acme"))
        self.ok("domain", "add", "beta.test", "--company", "beta")
        # one company per domain
        self.fails(1, "domain", "add", "acme.test", "--company", "beta",
                   msg="belongs to company 'acme'")
        self.fails(1, "domain", "add", "ACME.test", "--company", "acme",
                   msg="already belongs")
        self.fails(1, "domain", "add", "x.test", "--company", "nosuch",
                   msg="not found")
        self.fails(1, "domain", "add", "not a domain", "--company", "acme")
        self.fails(1, "domain", "add", "localhost", "--company", "acme")
        self.fails(2, "domain", "add", "x.test")
        p = self.ok("domain", "list")
        self.assertRegex(p.stdout, r"(?m)^acme\.test\s+acme\s")
        self.assertRegex(p.stdout, r"(?m)^beta\.test\s+beta\s")
        j = self.js("domain", "list", "--company", "acme")
        self.assertEqual(sorted(d["domain"] for d in j),
                         ["acme.test", "mail.acme.test"])
        j = self.js("domain", "set-auth", "acme.test", "--spf", "pass",
                    "--dkim", "pass")
        self.assertEqual((j["spf_ok"], j["dkim_ok"]), (True, True))
        self.assertEqual(len(self.js("company", "show", "acme")
                             ["domains"]), 2)
        self.ok("domain", "remove", "mail.acme.test")
        j = self.js("domain", "remove", "beta.test")
        self.assertTrue(j["removed"])
        self.fails(1, "domain", "remove", "beta.test", msg="not found")
        self.assertEqual([d["domain"] for d in self.js("domain", "list")],
                         ["acme.test"])
        # now free for another company
        self.ok("domain", "add", "beta.test", "--company", "acme")


class Users(TenantCLI):

    def test_users(self):
        self.company()
        p = self.ok("user", "add", "--company", "acme", "--email",
                    "anna@acme.test", "--name", "Anna")
        uid = int(re.search(r"user (\d+) added", p.stdout).group(1))
        j = self.js("user", "add", "--company", "acme", "--email",
                    "bo@acme.test", "--route", "platform-relay", "--from",
                    "noreply@acme.test")
        self.assertEqual((j["route"], j["from"]),
                         ("platform-relay", "noreply@acme.test"))
        self.fails(1, "user", "add", "--company", "acme", "--email",
                   "anna@acme.test", msg="already exists")
        self.fails(1, "user", "add", "--company", "acme", "--email",
                   "not-an-address", msg="not an email")
        self.fails(1, "user", "add", "--company", "nosuch", "--email",
                   "x@acme.test", msg="not found")
        self.fails(2, "user", "add", "--company", "acme")
        self.fails(2, "user", "add", "--company", "acme", "--email",
                   "c@acme.test", "--host", "smtp.test")
        p = self.ok("user", "list")
        self.assertRegex(p.stdout, rf"(?m)^{uid}\s+acme\s+anna@acme\.test"
                         r"  company  -  Anna$")
        j = self.js("user", "list", "--company", "acme")
        self.assertEqual(len(j), 2)
        p = self.ok("user", "set-smtp", str(uid), "--route", "own-server",
                    "--host", "smtp.acme.test", "--port", "465", "--tls",
                    "implicit")
        self.assertIn("route company -> own-server", p.stdout)
        self.assertIn("host - -> smtp.acme.test", p.stdout)
        j = self.js("user", "set-smtp", str(uid), "--auth-user",
                    "anna", "--password-stdin", input="User-Pw-9\n")
        self.assertEqual(j["changes"]["auth_user"],
                         {"before": None, "after": "anna"})
        self.assertEqual(j["changes"]["password"], "changed")
        self.assertEqual(j["smtp"]["secret"], "set")
        self.fails(2, "user", "set-smtp", str(uid), msg="nothing")
        self.fails(1, "user", "set-smtp", "abc", "--route", "company")
        self.fails(1, "user", "set-smtp", "999999", "--route", "company",
                   msg="not found")
        self.fails(2, "user", "set-smtp", str(uid), "--route",
                   "platform-relay", "--host", "x.test")
        # back to the company's choice: the server settings go
        j = self.js("user", "set-smtp", str(uid), "--route", "company")
        self.assertEqual(j["route"], "company")
        self.assertIsNone(j["smtp"])
        self.assertEqual(j["changes"]["password"], "removed")

    def import_users(self, n):
        rows = [(f"User {i}", f"user{i}@acme.test", "") for i in range(n)]
        name = self.write_csv(f"users{n}.csv", rows)
        t = time.monotonic()
        j = self.js("user", "import", "--company", "acme", "--csv", name)
        self.assertEqual((j["added"], j["existing"]), (n, 0))
        return name, time.monotonic() - t

    def test_mass_update_10000(self):
        self.company()
        name, took = self.import_users(10000)
        # dry run: every user listed, nothing written
        p = self.ok("user", "mass-update", "--csv", name, "--route",
                    "own-server", "--host", "smtp.acme.test", "--port",
                    "2525", "--tls", "required", "--dry-run")
        lines = p.stdout.splitlines()
        self.assertEqual(len(lines), 10001, lines[-3:])
        self.assertIn("route company -> own-server", lines[0])
        self.assertRegex(lines[-1], r"^dry run: 10000 users matched, "
                         r"10000 would change; nothing written$")
        users = self.js("user", "list", "--company", "acme")
        self.assertEqual(len(users), 10000)
        self.assertEqual({u["route"] for u in users}, {"company"})
        # the real run: one transaction, the store well under a second
        t = time.monotonic()
        p = self.ok("user", "mass-update", "--csv", name, "--company",
                    "acme", "--route", "own-server", "--host",
                    "smtp.acme.test", "--port", "2525", "--tls",
                    "required")
        wall = time.monotonic() - t
        m = re.search(r"(?m)^10000 users matched, 10000 changed in "
                      r"([0-9.]+) s$", p.stdout)
        self.assertIsNotNone(m, p.stdout[-300:])
        # < 1 s is the requirement: asserted by test_store (unit) and
        # about 0.13 s in a release build; this ASan build shares two
        # cores with another test, so it gets some slack here
        self.assertLess(float(m.group(1)), 1.5)
        self.assertLess(wall, 5.0)
        users = self.js("user", "list", "--company", "acme")
        self.assertEqual({(u["route"], u["smtp"]["host"], u["smtp"]["port"])
                          for u in users},
                         {("own-server", "smtp.acme.test", 2525)})
        # --json, a whole company; unchanged users counted as such
        j = self.js("user", "mass-update", "--company", "acme", "--tls",
                    "required")
        self.assertEqual((j["matched"], j["changed"], j["written"]),
                         (10000, 0, True))
        self.assertLess(j["elapsed_ms"], 1000)
        print(f"\n  import 10,000: {took:.2f} s; mass update: store "
              f"{float(m.group(1)):.3f} s, CLI {wall:.2f} s", end=" ")

    def test_mass_update_unknown_email(self):
        self.company()
        self.company("beta", "Beta")
        self.ok("user", "add", "--company", "acme", "--email",
                "a@acme.test")
        self.ok("user", "add", "--company", "acme", "--email",
                "b@acme.test")
        self.ok("user", "add", "--company", "beta", "--email",
                "c@beta.test")
        # quoting: a comma and a quote in a quoted field, a line break
        with open(self.path("u.csv"), "w", newline="") as f:
            f.write('\ufeffName,"E-mail",Email\r\n'
                    '"Svensson, ""Kalle""",x,a@acme.test\r\n'
                    '"two\r\nlines",y, b@acme.test \r\n'
                    '\r\n'
                    'Nobody,z,nobody@acme.test\r\n'
                    'Beta,w,c@beta.test\r\n')
        before = self.js("user", "list")
        for dry in ([], ["--dry-run"]):
            p = self.fails(1, "user", "mass-update", "--csv", "u.csv",
                           "--company", "acme", "--route",
                           "platform-relay", *dry)
            self.assertIn("not found: nobody@acme.test", p.stderr)
            self.assertIn("not found: c@beta.test", p.stderr)
            self.assertIn("2 emails not found: nothing written", p.stderr)
        self.assertEqual(self.js("user", "list"), before)
        p = self.ombud("user", "mass-update", "--csv", "u.csv", "--route",
                       "platform-relay", "--json")
        self.assertEqual(p.returncode, 1, p.stderr)
        j = json.loads(p.stdout)
        self.assertEqual((j["missing"], j["written"]),
                         (["nobody@acme.test"], False))
        self.assertEqual(self.js("user", "list"), before)
        # without the unknown one: all three change
        with open(self.path("u.csv"), "w", newline="") as f:
            f.write('email\na@acme.test\nb@acme.test\nc@beta.test\n')
        j = self.js("user", "mass-update", "--csv", "u.csv", "--route",
                    "platform-relay")
        self.assertEqual((j["matched"], j["changed"]), (3, 3))
        self.assertEqual({u["route"] for u in self.js("user", "list")},
                         {"platform-relay"})

    def test_csv_errors(self):
        self.company()
        self.ok("user", "add", "--company", "acme", "--email",
                "a@acme.test")
        cases = {
            "name\nanna\n": r"no 'email' column",
            "": r"empty file",
            'email\n"a@acme.test\n': r"u\.csv:2: a quoted field is not "
                                     r"closed",
            'email\na@ac"me.test\n': r"u\.csv:2: a quote inside",
            'email\n"a@acme.test"x\n': r"text after a closing quote",
            'email\nnot-an-email\n': r"u\.csv:2: email: 'not-an-email'",
            'email\n' + "x" * 9000 + "\n": r"longer than 8192",
        }
        for text, msg in cases.items():
            with open(self.path("u.csv"), "w") as f:
                f.write(text)
            self.fails(1, "user", "mass-update", "--csv", "u.csv",
                       "--route", "platform-relay", msg=msg)
        self.fails(1, "user", "mass-update", "--csv", "nosuch.csv",
                   "--route", "platform-relay", msg="nosuch.csv")
        self.fails(2, "user", "mass-update", "--route", "platform-relay")
        self.fails(2, "user", "mass-update", "--company", "acme")


class Credentials(TenantCLI):

    def test_credentials(self):
        self.company()
        p = self.ok("credential", "add", "--company", "acme",
                    "--application", "hyra", "--username", "acme-hyra",
                    "--password-stdin", input="Cred-Pw-1\n")
        self.assertIn("acme-hyra", p.stdout)
        self.assertNotIn("password", p.stdout)
        p = self.ok("credential", "add", "--company", "acme",
                    "--application", "felanmalan", "--username",
                    "acme-fel", "--generate")
        pw = re.search(r"(?m)^password: (\S+)$", p.stdout).group(1)
        self.assertRegex(pw, r"^[A-Za-z0-9]{24}$")
        self.assertIn("shown this once", p.stdout)
        j = self.js("credential", "add", "--company", "acme",
                    "--application", "hyra", "--username", "acme-2",
                    "--generate")
        self.assertRegex(j["password"], r"^[A-Za-z0-9]{24}$")
        self.assertNotEqual(j["password"], pw)
        j = self.js("credential", "add", "--company", "acme",
                    "--application", "hyra", "--username", "acme-3",
                    "--password-stdin", input="Cred-Pw-3\n")
        self.assertEqual(j["secret"], "set")
        self.assertNotIn("password", j)
        self.fails(1, "credential", "add", "--company", "acme",
                   "--application", "hyra", "--username", "acme-hyra",
                   "--generate", msg="taken")
        self.fails(2, "credential", "add", "--company", "acme",
                   "--application", "hyra", "--username", "x",
                   "--generate", "--password-stdin")
        self.fails(1, "credential", "add", "--company", "acme",
                   "--application", "hyra", "--username", "bad name",
                   "--generate")
        self.fails(1, "credential", "add", "--company", "acme",
                   "--application", "hyra", "--username", "e",
                   "--password-stdin", input="\n", msg="empty")
        self.fails(1, "credential", "add", "--company", "nosuch",
                   "--application", "hyra", "--username", "n",
                   "--generate", msg="not found")
        p = self.ok("credential", "list")
        self.assertRegex(p.stdout, r"(?m)^\d+\s+acme-hyra\s+acme\s+valid")
        self.assertNotIn("argon2", p.stdout)
        j = self.js("credential", "list", "--company", "acme")
        self.assertEqual(len(j), 4)
        self.assertNotIn("argon2", json.dumps(j))
        self.assertNotIn("hash", j[0])
        p = self.ok("credential", "revoke", "acme-hyra")
        self.assertIn("revoked", p.stdout)
        self.assertTrue(self.js("credential", "revoke", "acme-fel")
                        ["revoked"])
        self.fails(1, "credential", "revoke", "acme-hyra")
        st = {c["username"]: c["status"] for c in
              self.js("credential", "list")}
        self.assertEqual(st["acme-hyra"], "revoked")
        self.assertEqual(st["acme-2"], "valid")
        j = self.js("company", "show", "acme")
        self.assertEqual((j["credentials"], j["credentials_revoked"]),
                         (4, 2))
        # the generated password is not printed again
        self.assertEqual(sum(o.count(pw) for o in self.outputs), 1)


class Secrets(TenantCLI):

    def test_secrets_never_stored_or_shown(self):
        secrets = {
            "company": "Own-Srv-Pw-4711",
            "file": "File-Pw-0815",
            "oauth": "Oauth-Client-Secret-9",
            "user": "User-Smtp-Pw-3131",
            "user2": "Mass-Pw-2718",
            "cred": "Submission-Pw-1618",
        }
        with open(self.path("pw.txt"), "w") as f:
            f.write(secrets["file"] + "\n")
        self.company()
        self.ok("company", "set-route", "acme", "own-server", "--host",
                "smtp.acme.test", "--auth-user", "it@acme.test",
                "--password-stdin", "--reference", "T-1",
                input=secrets["company"] + "\n")
        self.ok("company", "add", "beta", "--name", "Beta")
        self.ok("company", "set-route", "beta", "own-server", "--host",
                "smtp.beta.test", "--auth-user", "it@beta.test",
                "--password-file", "pw.txt", "--reference", "T-2")
        self.ok("company", "add", "gamma", "--name", "Gamma")
        self.ok("company", "set-route", "gamma", "own-server", "--host",
                "smtp.office365.com", "--auth-user", "it@gamma.test",
                "--xoauth2-token-url", "https://login.example.test/t",
                "--xoauth2-client-id", "c1", "--client-secret-stdin",
                "--reference", "T-3", input=secrets["oauth"] + "\n")
        p = self.ok("user", "add", "--company", "acme", "--email",
                    "u@acme.test", "--route", "own-server", "--host",
                    "smtp.acme.test", "--auth-user", "u",
                    "--password-stdin", input=secrets["user"] + "\n")
        uid = re.search(r"user (\d+) added", p.stdout).group(1)
        self.ok("user", "set-smtp", uid, "--auth-user", "u2",
                "--password-stdin", input=secrets["user"] + "\n")
        self.ok("user", "mass-update", "--company", "acme",
                "--auth-user", "u3", "--password-stdin",
                input=secrets["user2"] + "\n")
        self.ok("user", "mass-update", "--company", "acme",
                "--password-stdin", "--dry-run", "--json",
                input=secrets["user2"] + "\n")
        self.ok("credential", "add", "--company", "acme", "--application",
                "hyra", "--username", "acme-hyra", "--password-stdin",
                input=secrets["cred"] + "\n")
        # everything there is to read
        for cid in ("acme", "beta", "gamma"):
            j = self.js("company", "show", cid)
            self.assertEqual(j["own_server"]["secret"], "set")
            self.ok("company", "show", cid)
        self.assertEqual(self.js("user", "list")[0]["smtp"]["secret"],
                         "set")
        for cmd in (("company", "list"), ("user", "list"),
                    ("credential", "list"), ("domain", "list")):
            self.ok(*cmd)
            self.js(*cmd)
        out = "".join(self.outputs)
        files = glob.glob(self.path("var", "ombud.db*"))
        self.assertIn(self.path("var", "ombud.db"), files)
        for what, s in secrets.items():
            self.assertNotIn(s, out, what)
            for fn in files:
                with open(fn, "rb") as f:
                    data = f.read()
                self.assertNotIn(s.encode(), data, f"{what} in {fn}")
        # no secret on the command line: no option takes one
        self.fails(2, "company", "set-route", "acme", "own-server",
                   "--host", "h.test", "--auth-user", "u", "--password",
                   "x", "--reference", "T")
        # a secret is one line, without control characters
        self.fails(1, "credential", "add", "--company", "acme",
                   "--application", "a", "--username", "tab",
                   "--password-stdin", input="a\tb\n",
                   msg="control character")


class Usage(TenantCLI):

    def test_usage(self):
        for cmd in ("company", "domain", "user", "credential",
                    "secret-key"):
            p = self.ombud(cmd)
            self.assertEqual(p.returncode, 2, cmd)
            self.assertIn(f"usage: ombud {cmd}", p.stderr)
            p = self.ombud(cmd, "--help")
            self.assertEqual(p.returncode, 0, cmd)
            self.assertIn(f"usage: ombud {cmd}", p.stdout)
            self.assertEqual(self.ombud(cmd, "frobnicate").returncode, 2)
        p = self.fails(2, "company", "list", "--name", "x",
                       msg="unknown option '--name'")
        self.assertIn("usage:", p.stderr)
        self.fails(2, "company", "list", "extra")
        self.fails(2, "company", "add", "a", "--name", "x", "--name", "y",
                   msg="twice")
        self.fails(1, "company", "add", "a", "--name", "x", "--actor", "",
                   msg="--actor: empty")
        p = run([BIN, "company", "list", "-c", "nosuch.conf"],
                cwd=self.dir)
        self.assertEqual(p.returncode, 1, p.stderr)
        p = run([BIN, "help"])
        for cmd in ("company", "domain", "user", "credential",
                    "secret-key"):
            self.assertRegex(p.stdout, rf"(?m)^  {cmd}\s")

    def test_default_actor_is_the_unix_user(self):
        import pwd
        me = pwd.getpwuid(os.getuid()).pw_name
        self.company()
        self.assertEqual(self.js("company", "show", "acme")["audit"][0]
                         ["actor"], me)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""`ombud config check` and SIGHUP reload.

Errors must read "FILE:LINE: key 'KEY': reason" and exit 1; the sample
configuration must pass; a SIGHUP with a valid file changes the limits of
new sessions, a SIGHUP with a broken file keeps the old configuration.
"""
import os
import re
import shutil
import tempfile
import unittest

from ombudtest import (OMBUD, SRCDIR, GatewayTestCase, main, message,
                       need_binary, run)


class ConfigCheck(unittest.TestCase):

    def setUp(self):
        need_binary()
        self.dir = tempfile.mkdtemp(prefix="ombudtest-conf-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def check(self, text, name="test.conf"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        p = run([OMBUD, "config", "check", "-c", path], cwd=self.dir)
        return path, p

    def assert_error(self, text, line, key, reason=None):
        path, p = self.check(text)
        out = (p.stdout + p.stderr).strip()
        self.assertEqual(p.returncode, 1, out)
        self.assertNotIn("config OK", out)
        m = re.match(r"^(.*?):(\d+): key '([^']*)': (.+)$", out)
        self.assertIsNotNone(m, f"not FILE:LINE: key 'K': reason: {out!r}")
        self.assertEqual((m.group(1), int(m.group(2)), m.group(3)),
                         (path, line, key), out)
        if reason:
            self.assertRegex(m.group(4), reason)
        return out

    GOOD = ("hostname = gw.test\n"                          # 1
            "spool_dir = spool\n"                           # 2
            "run_dir = run\n"                               # 3
            "\n"                                            # 4
            "[listener relay]\n"                            # 5
            "address = 127.0.0.1:2525\n"                    # 6
            "auth = no\n"                                   # 7
            "# no AUTH here: trusted clients only\n"       # 8
            "trusted_networks = 127.0.0.0/8\n")             # 9

    def test_minimal_ok(self):
        path, p = self.check(self.GOOD)
        self.assertEqual((p.returncode, p.stdout), (0, "config OK\n"),
                         p.stderr)

    def test_sample_config_ok(self):
        # etc/ombud.dev.conf with what etc/dev-setup.sh makes beside it
        shutil.copy(SRCDIR / "etc" / "ombud.dev.conf", self.dir)
        p = run(["sh", str(SRCDIR / "etc" / "dev-setup.sh"), OMBUD],
                cwd=self.dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = run([OMBUD, "config", "check", "-c", "ombud.dev.conf"],
                cwd=self.dir)
        self.assertEqual((p.returncode, p.stdout), (0, "config OK\n"),
                         p.stderr)

    def test_unknown_key(self):
        self.assert_error(self.GOOD.replace("run_dir = run\n",
                                            "frobnicate = yes\n"),
                          3, "frobnicate", r"unknown")

    def test_bad_size(self):
        self.assert_error("max_message_size = 10X\n" + self.GOOD, 1,
                          "max_message_size", r"10X")

    def test_bad_duration(self):
        self.assert_error("max_errors = 3\ntimeout_command = soon\n"
                          + self.GOOD, 2, "timeout_command", r"soon")

    def test_bad_number(self):
        self.assert_error("max_recipients = many\n" + self.GOOD, 1,
                          "max_recipients", r"many")

    def test_bad_bool(self):
        self.assert_error(self.GOOD.replace("auth = no", "auth = maybe", 1),
                          7, "auth", r"maybe")

    def test_bad_enum(self):
        self.assert_error(self.GOOD + "tls = sometimes\n", 10, "tls",
                          r"sometimes")

    def test_listener_without_address(self):
        text = self.GOOD + ("\n"                             # 10
                            "[listener other]\n"             # 11
                            "auth = no\n"                    # 12
                            "# trusted clients only\n"      # 13
                            "trusted_networks = ::1/128\n")  # 14
        self.assert_error(text, 11, "address", r"other|address")

    def test_global_key_inside_listener(self):
        self.assert_error(self.GOOD + "max_recipients = 5\n", 10,
                          "max_recipients", r"global|listener")

    def test_listener_key_outside_listener(self):
        self.assert_error("tls = none\n" + self.GOOD, 1, "tls",
                          r"listener")

    def test_open_relay_refused(self):
        self.assert_error(self.GOOD.replace(
            "trusted_networks = 127.0.0.0/8\n", ""), 5, "auth",
            r"nobody could ever submit")

    def test_bad_network(self):
        self.assert_error(self.GOOD.replace("127.0.0.0/8", "127.0.0.0/33"),
                          9, "trusted_networks", r"127\.0\.0\.0/33")

    def test_missing_file(self):
        p = run([OMBUD, "config", "check", "-c",
                 os.path.join(self.dir, "nope.conf")])
        self.assertEqual(p.returncode, 1)
        self.assertIn("nope.conf", p.stderr + p.stdout)

    def test_missing_tls_key_file(self):
        text = self.GOOD.replace("auth = no\n", "tls = starttls\n"
                                 "tls_cert = missing-cert.pem\n"
                                 "tls_key = missing-key.pem\nauth = no\n", 1)
        path, p = self.check(text)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("missing-cert.pem", p.stderr + p.stdout)

    def test_serve_refuses_broken_config(self):
        path, _ = self.check("max_message_size = 10X\n" + self.GOOD)
        p = run([OMBUD, "serve", "-c", path], cwd=self.dir, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("max_message_size", p.stderr)


class Reload(GatewayTestCase):

    def rcpt_limit_dialogue(self, c, allowed):
        c.cmd("MAIL FROM:<a@example.com>", "250")
        for i in range(allowed):
            c.cmd(f"RCPT TO:<r{i}@example.net>", "250 2.1.5")
        c.cmd(f"RCPT TO:<r{allowed}@example.net>", "452 4.5.3")
        c.cmd("RSET", "250")

    def session(self, gw):
        c = self.client(gw)
        c.ehlo()
        return c

    def test_sighup_reload(self):
        gw = self.gateway(overrides={"max_recipients": 3})
        old = self.session(gw)
        self.rcpt_limit_dialogue(old, 3)

        gw.write_config({"max_recipients": 5})
        gw.hup()
        gw.wait_log(r"event=config\.reloaded")
        self.rcpt_limit_dialogue(self.session(gw), 5)
        # a session that started before the reload keeps its settings
        self.rcpt_limit_dialogue(old, 3)

        # a broken file: warning, old configuration kept, server alive
        gw.write_config({"max_recipients": "lots"})
        gw.hup()
        (line,) = gw.wait_log(r".*\bwarn\b.*reload.*")
        self.assertIn("max_recipients", line)
        self.assertEqual(len(re.findall(r"event=config\.reloaded",
                                        gw.log_text())), 1)
        self.assertTrue(gw.running())
        self.rcpt_limit_dialogue(self.session(gw), 5)

        # and a good file again is taken
        gw.write_config({"max_recipients": 2})
        gw.hup()
        gw.wait_log(r"event=config\.reloaded", count=2)
        c = self.session(gw)
        self.rcpt_limit_dialogue(c, 2)
        qid = c.submit(message(), rcpts=("b@example.net", "c@example.net"))
        self.assertEqual(gw.queue_ids(), {qid})

    def test_reload_with_changed_listener_address_is_refused(self):
        gw = self.gateway(overrides={"max_recipients": 3})
        old_port = gw.port("relay")
        gw.ports["relay"] = old_port + 1 if old_port < 65000 else 1025
        gw.write_config({"max_recipients": 7})
        gw.hup()
        gw.wait_log(r".*\bwarn\b.*reload.*")
        gw.ports["relay"] = old_port
        self.assertTrue(gw.running())
        self.rcpt_limit_dialogue(self.session(gw), 3)

    def test_reload_message_size(self):
        gw = self.gateway(overrides={"max_message_size": "1M"})
        kw, r = self.session(gw).ehlo()
        self.assertIn("SIZE 1048576", r.lines)
        gw.write_config({"max_message_size": "2K"})
        gw.hup()
        gw.wait_log(r"event=config\.reloaded")
        c = self.session(gw)
        kw, r = c.ehlo()
        self.assertIn("SIZE 2048", r.lines)
        c.cmd("MAIL FROM:<a@example.com> SIZE=4096", "552 5.3.4")


if __name__ == "__main__":
    main()

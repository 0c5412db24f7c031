#!/usr/bin/python3
"""Logging: one parseable line per event, queue ids on accepted mail, and
never a password (in clear or base64), even at log_level = debug."""
import json
import re

from ombudtest import GatewayTestCase, b64, main, message, run, OMBUD

TS_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
LEVELS = {"debug", "info", "warn", "error"}
TEXT_RE = re.compile(rf"^{TS_RE} (debug|info|warn|error) "
                     r"(event=[a-z_.]+|msg=)")


def secrets_of(gw, *extra):
    """Every form a password could leak in."""
    out = []
    for pw in (gw.password,) + extra:
        out += [pw, b64(pw), b64(f"\0{gw.user}\0{pw}"),
                b64(f"{gw.user}\0{gw.user}\0{pw}")]
    return out


class Logging(GatewayTestCase):

    def traffic(self, gw, wrong):
        """AUTH (good and bad, PLAIN and LOGIN), two accepted messages,
        one rejected; returns the accepted queue ids."""
        ids = []
        c = gw.connect_auth("submission", "PLAIN")
        self.addCleanup(c.close)
        ids.append(c.submit(message(subject="one")))
        c.cmd("MAIL FROM:<a@example.com>", "250")
        c.cmd("RCPT TO:<b@example.net>", "250")
        c.cmd("DATA", "354")
        c.send(b"Subject: bare lf\r\n\r\nbad\nline\r\n.\r\n")
        c.expect("550 5.6.0")
        c.cmd("NOOP", "250")
        c.close()       # (QUIT over STARTTLS is covered in test_auth_tls)
        c = self.client(gw, "smtps")
        c.ehlo()
        c.dialogue([("AUTH PLAIN " + b64(f"\0{gw.user}\0{wrong}"),
                     "535 5.7.8"),
                    ("AUTH LOGIN", "334"), (b64(gw.user), "334"),
                    (b64(wrong), "535 5.7.8"),
                    ("AUTH LOGIN " + b64(gw.user), "334"),
                    (b64(gw.password), "235")])
        ids.append(c.submit(message(subject="two")))
        return ids

    def assert_no_secrets(self, gw, wrong):
        text = gw.log_text(all_runs=True)
        for s in secrets_of(gw, wrong):
            self.assertNotIn(s, text, "a password leaked into the log")

    def test_json_log(self):
        wrong = "WrongPw-" + gw_token()
        gw = self.gateway(overrides={"log_level": "debug"},
                          log_format="json")
        ids = self.traffic(gw, wrong)
        gw.wait_log(r'"event":"smtp\.accepted"', count=2)
        gw.stop()
        records = []
        for line in gw.log_lines():
            try:
                rec = json.loads(line)
            except ValueError as e:
                self.fail(f"log line is not JSON ({e}): {line!r}")
            self.assertIsInstance(rec, dict, line)
            self.assertRegex(rec.get("ts", ""), "^" + TS_RE + "$", line)
            self.assertIn(rec.get("level"), LEVELS, line)
            self.assertTrue("event" in rec or "msg" in rec, line)
            for k, v in rec.items():
                self.assertIsInstance(v, str, f"{k} in {line}")
            records.append(rec)
        events = [r.get("event") for r in records]
        for ev in ("server.ready", "smtp.connect", "smtp.auth",
                   "smtp.accepted", "smtp.disconnect", "server.stopped"):
            self.assertIn(ev, events)
        accepted = [r for r in records if r.get("event") == "smtp.accepted"]
        self.assertEqual([r.get("qid") for r in accepted], ids)
        for r in accepted:
            self.assertEqual(r.get("from"), "a@example.com")
            self.assertEqual(r.get("user"), gw.user)
            self.assertEqual(r.get("peer"), "127.0.0.1")
        auth = [r for r in records if r.get("event") == "smtp.auth"]
        self.assertEqual([r.get("result") for r in auth],
                         ["ok", "invalid", "invalid", "ok"])
        self.assert_no_secrets(gw, wrong)

    def test_text_log(self):
        wrong = "WrongPw-" + gw_token()
        gw = self.gateway(overrides={"log_level": "debug"})
        ids = self.traffic(gw, wrong)
        gw.wait_log(r"event=smtp\.accepted", count=2)
        gw.stop()
        lines = gw.log_lines()
        for line in lines:
            self.assertRegex(line, TEXT_RE)
        for qid in ids:
            acc = [l for l in lines if "event=smtp.accepted" in l
                   and f" qid={qid} " in l]
            self.assertEqual(len(acc), 1, qid)
            self.assertRegex(acc[0], rf"^{TS_RE} info event=smtp\.accepted"
                                     rf" qid={qid} peer=127\.0\.0\.1 ")
        self.assert_no_secrets(gw, wrong)

    def test_log_format_from_config_and_override(self):
        gw = self.gateway(overrides={"log_format": "json"})
        gw.stop()
        for line in gw.log_lines():
            json.loads(line)
        gw.log_format = "text"          # --log-format=text wins
        gw.start()
        gw.stop()
        for line in gw.log_lines():
            self.assertRegex(line, TEXT_RE)

    def test_bad_log_format_flag(self):
        gw = self.gateway(start=False)
        p = run([OMBUD, "serve", "-c", gw.conf_path, "--log-format=xml"],
                timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("xml", p.stderr)

    def test_hostile_user_name_stays_one_line(self):
        gw = self.gateway(log_format="json")
        c = self.client(gw, "smtps")
        c.ehlo()
        evil = 'bob\r\n{"event":"smtp.accepted","qid":"x"}\n'
        c.cmd("AUTH PLAIN " + b64(f"\0{evil}\0whatever"), "535")
        c.cmd("AUTH PLAIN " + b64("\0bob\"\\\x01\x7f\xff\0x"), "5")
        c.cmd("QUIT", "221")
        gw.wait_log(r"smtp\.auth", count=1)
        gw.stop()
        for line in gw.log_lines():
            rec = json.loads(line)
            self.assertNotEqual(rec.get("event"), "smtp.accepted", line)
        # the text format quotes and escapes it as well
        gw.log_format = "text"
        gw.start()
        c = self.client(gw, "smtps")
        c.ehlo()
        c.cmd("AUTH PLAIN " + b64(f"\0{evil}\0whatever"), "535")
        gw.wait_log(r"event=smtp\.auth")
        gw.stop()
        for line in gw.log_lines():
            self.assertRegex(line, TEXT_RE)
            self.assertNotIn("event=smtp.accepted", line)


def gw_token():
    import secrets
    return secrets.token_hex(8)


if __name__ == "__main__":
    main()

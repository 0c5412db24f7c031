#!/usr/bin/python3
"""Regression tests from a security review of the session, server, control
and configuration code: open-relay paths, lifetimes across reload, memory
bounds, logging."""
import base64
import json
import os
import socket
import threading
import time

from ombudtest import (DEFAULT_LISTENERS, GatewayTestCase, b64, main,
                       message)


def vmrss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Review(GatewayTestCase):

    def tls_client(self, gw, listener="submission"):
        c = self.client(gw, listener)
        c.ehlo()
        c.cmd("STARTTLS", "220 2.0.0")
        c.starttls(gw.tls_context())
        return c

    # --- open relay ------------------------------------------------------

    def test_no_auth_listener_still_needs_trusted_network(self):
        """A listener without AUTH serves only its trusted_networks: a
        client outside them must not submit (no open relay)."""
        listeners = dict(DEFAULT_LISTENERS)
        listeners["lan"] = {"tls": "none", "auth": "no",
                            "trusted_networks": "127.0.0.2/32"}
        gw = self.gateway(listeners=listeners)
        c = self.client(gw, "lan")                    # from 127.0.0.1
        c.ehlo()
        c.cmd("MAIL FROM:<a@example.com>", "530 5.7.0")
        c = self.client(gw, "lan", source="127.0.0.2")
        c.ehlo()
        c.submit(message())

    # --- lifetimes -------------------------------------------------------

    def test_auth_job_outlives_session_and_reload(self):
        """A queued password check must not use the credentials of a
        configuration freed by a reload plus the end of its session."""
        gw = self.gateway(overrides={"auth_workers": 1})
        clients = []
        for _ in range(12):
            c = gw.connect("smtps")
            clients.append(c)
            c.ehlo()
            c.send("AUTH PLAIN " + b64(f"\0{gw.user}\0wrong"))
        gw.write_config()
        gw.hup()
        gw.wait_log(r"event=config\.reloaded")
        for c in clients:
            c.close()
        gw.wait_log(r"event=smtp\.disconnect", count=12)
        time.sleep(2)           # let the worker get through the queue
        self.assertTrue(gw.running(), gw.log_tail())
        gw.stop()

    # --- memory bounds ---------------------------------------------------

    def test_output_bounded_over_starttls(self):
        """A client that pipelines commands over STARTTLS and never reads
        must not make the server buffer its replies without bound."""
        # (no ASan quarantine: freed memory must not count as growth)
        gw = self.gateway(overrides={"max_commands": 1000000},
                          env={"ASAN_OPTIONS": "detect_leaks=1:"
                               "quarantine_size_mb=0"})
        pid = gw.pid
        clients = [self.tls_client(gw) for _ in range(4)]
        before = vmrss_kib(pid)
        chunk = b"EHLO client.test\r\n" * 2000

        def flood(c):
            c.sock.settimeout(3)
            try:
                for _ in range(100):            # 200000 EHLO, ~40 MB out
                    c.sock.sendall(chunk)
            except (socket.timeout, OSError):
                pass                            # the server pushed back

        threads = [threading.Thread(target=flood, args=(c,))
                   for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(1)
        grown = vmrss_kib(pid) - before
        self.assertLess(grown, 24 * 1024,
                        f"server grew by {grown} KiB of unread replies")
        for c in clients:
            c.close()
        # and a client that reads late still gets every reply, in order
        c = self.tls_client(gw)
        n = 40000
        t = threading.Thread(target=c.sock.sendall,
                             args=(b"NOOP\r\n" * n + b"QUIT\r\n",))
        t.start()
        time.sleep(1)
        for _ in range(n):
            c.expect("250 2.0.0")
        c.expect("221")
        t.join()

    # --- STARTTLS --------------------------------------------------------

    def test_starttls_forgets_auth(self):
        """RFC 3207 4.2: nothing learned in the clear survives STARTTLS,
        including an AUTH (a man in the middle could have sent it)."""
        listeners = dict(DEFAULT_LISTENERS)
        listeners["sub2"] = {"tls": "starttls", "auth": "yes",
                             "auth_requires_tls": "no"}
        gw = self.gateway(listeners=listeners)
        c = self.client(gw, "sub2")
        c.ehlo()
        c.cmd("AUTH PLAIN " + b64(f"\0{gw.user}\0{gw.password}"),
              "235 2.7.0")
        c.cmd("STARTTLS", "220 2.0.0")
        c.starttls(gw.tls_context())
        kw, _ = c.ehlo()
        self.assertIn("AUTH", kw)
        c.cmd("MAIL FROM:<a@example.com>", "530 5.7.0")

    # --- reload ----------------------------------------------------------

    def test_reload_keeps_log_format_flag(self):
        """--log-format overrides the file, also after SIGHUP."""
        gw = self.gateway(log_format="json")
        gw.hup()
        gw.wait_log(r"config\.reloaded")
        c = self.client(gw)
        c.cmd("QUIT", "221")
        gw.wait_log(r"smtp\.disconnect")
        gw.stop()
        for line in gw.log_lines():
            json.loads(line)

    def test_reload_refuses_new_run_dir(self):
        """The spool and the control socket stay where they are until a
        restart: a reload that moves them is refused, and the pid file
        is still removed at exit."""
        gw = self.gateway()
        pidfile = os.path.join(gw.run_dir, "ombud.pid")
        self.assertTrue(os.path.exists(pidfile))
        gw.write_config({"run_dir": gw.run_dir + "2",
                         "spool_dir": gw.spool_dir + "2"})
        gw.hup()
        gw.wait_log(r".*\bwarn\b.*reload.*")
        gw.stop()
        self.assertFalse(os.path.exists(pidfile))

    # --- logging ---------------------------------------------------------

    def test_json_log_stays_utf8(self):
        """Invalid UTF-8 from a peer (an AUTH user name) must not make the
        JSON log undecodable."""
        gw = self.gateway(log_format="json")
        c = self.client(gw, "smtps")
        c.ehlo()
        for user in (b"\xff\xbf\xbf\xbf", b"\xc0\x80x", b"\xed\xa0\x80",
                     b"\xf4\x90\x80\x80", b"\xe0\x80\xaf"):
            raw = b"\0" + user + b"\0whatever"
            c.cmd("AUTH PLAIN " + base64.b64encode(raw).decode(), "535")
        c.cmd("QUIT", "221")
        gw.wait_log(r"smtp\.disconnect")
        gw.stop()
        with open(gw.logs[-1], "rb") as f:
            for line in f.read().splitlines():
                json.loads(line.decode("utf-8"))

    # --- timeouts and half-close ------------------------------------------

    def test_timeout_data_over_starttls(self):
        """Inside DATA the idle limit is timeout_data, over STARTTLS too
        (the socket under the TLS filter kept timeout_command)."""
        gw = self.gateway(overrides={"timeout_command": "1s",
                                     "timeout_data": "6s"})
        c = self.tls_client(gw)
        c.ehlo()
        c.cmd("AUTH PLAIN " + b64(f"\0{gw.user}\0{gw.password}"), "235")
        c.cmd("MAIL FROM:<a@example.com>", "250")
        c.cmd("RCPT TO:<b@example.net>", "250")
        c.cmd("DATA", "354")
        c.send(b"Subject: slow\r\n\r\n")
        time.sleep(2.5)
        c.send(b"body\r\n.\r\n")
        c.expect("250 2.0.0 Ok: queued as ")
        # the limits still hold: idle in DATA, then idle between commands
        c.cmd("MAIL FROM:<a@example.com>", "250")
        c.cmd("RCPT TO:<b@example.net>", "250")
        c.cmd("DATA", "354")
        c.expect("421 4.4.2", timeout=15)
        c = self.tls_client(gw)
        c.expect("421 4.4.2", timeout=10)

    def test_long_data_over_starttls(self):
        """A message that takes longer than timeout_data to arrive, but
        never pauses that long, is accepted (over STARTTLS the filter's
        write timer stayed armed after the 354 left)."""
        gw = self.gateway(overrides={"timeout_data": "2s"})
        c = self.tls_client(gw)
        c.ehlo()
        c.cmd("AUTH PLAIN " + b64(f"\0{gw.user}\0{gw.password}"), "235")
        c.cmd("MAIL FROM:<a@example.com>", "250")
        c.cmd("RCPT TO:<b@example.net>", "250")
        c.cmd("DATA", "354")
        c.send(b"Subject: slow\r\n\r\n")
        for _ in range(8):
            time.sleep(0.5)
            c.send(b"more\r\n")
        c.send(b".\r\n")
        c.expect("250 2.0.0 Ok: queued as ")

    def test_shutdown_with_client_not_reading_over_starttls(self):
        """SIGTERM with a STARTTLS client that never reads: the server
        still exits (write timeout on the 421), exit 0."""
        gw = self.gateway(overrides={"timeout_shutdown": "1s",
                                     "max_commands": 1000000})
        c = self.tls_client(gw)
        c.sock.settimeout(3)
        try:
            c.sock.sendall(b"NOOP\r\n" * 400000)
        except (socket.timeout, OSError):
            pass
        time.sleep(3)           # until its replies fill every buffer
        t0 = time.monotonic()
        gw.stop(timeout=30)
        self.assertLess(time.monotonic() - t0, 20)

    def test_half_close_after_pipelined_transaction(self):
        """A client that pipelines a whole transaction and QUIT, then
        shuts down its sending side, still gets every reply: the message
        is stored, so a missing 250 would only make it send a copy."""
        gw = self.gateway()
        c = self.client(gw)
        c.ehlo()
        c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\n"
               b"DATA\r\n")
        c.expect("250")
        c.expect("250")
        c.expect("354")
        c.send(b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        c.expect("250 2.0.0 Ok: queued as ")
        c.expect("221")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""auth_source.py - an SMTP submission load with AUTH, for bench/billing.sh.

smtp-source cannot authenticate; this client can.  SESSIONS connections
(threads) each log in once with AUTH PLAIN (no TLS: the listener has
auth_requires_tls = no, loopback only) and then submit their share of
MESSAGES messages back to back on that connection, each with RCPTS
recipients, with PIPELINING (RFC 2920): MAIL, every RCPT and DATA go in
one write, their replies are read afterwards, then the message and its
dot.  A session that would exceed the server's max_commands (10000)
is ended with QUIT and a new one logs in.  Every reply must be the
expected one; the script exits 1 otherwise.

    auth_source.py --port P --user U --password PW --from news@acme.test \
        --messages 1000 --rcpts 50 --sessions 8 --gmail 10

Recipient n of message m is r<m>-<n>@dest.test, except that the first
--gmail percent of each message's recipients are at gmail.com (so the
meter's per-sender-domain Gmail counter has work too).  Prints one line,
"messages=M recipients=R seconds=S".
"""
import argparse
import base64
import socket
import sys
import threading
import time


class Fail(Exception):
    pass


class Conn:
    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), 30)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise Fail("connection closed by the server")
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l

    def reply(self, want):
        """One (multiline) reply; its code must start with want."""
        while True:
            l = self.line()
            if len(l) < 4 or l[3:4] != b"-":
                break
        if not l.startswith(want):
            raise Fail(f"expected {want.decode()}, got {l!r}")
        return l

    def send(self, data):
        self.s.sendall(data)


def body(sender, size):
    head = (f"From: <{sender}>\r\nTo: <undisclosed-recipients:;>\r\n"
            f"Subject: bench\r\n\r\n").encode()
    line = b"x" * 70 + b"\r\n"
    n = max(1, (size - len(head)) // len(line))
    return head + line * n + b".\r\n"


def login(a):
    c = Conn(a.host, a.port)
    c.reply(b"220")
    c.send(b"EHLO bench.test\r\n")
    c.reply(b"250")
    cred = base64.b64encode(f"\0{a.user}\0{a.password}".encode())
    c.send(b"AUTH PLAIN " + cred + b"\r\n")
    c.reply(b"235")
    return c


def logout(c):
    c.send(b"QUIT\r\n")
    c.reply(b"221")
    c.s.close()


def session(a, count, first, out, errors):
    try:
        c = login(a)
        cmds_used = 2
        data = body(a.sender, a.size)
        ng = a.rcpts * a.gmail // 100
        for m in range(first, first + count):
            # the server's max_commands per session: a new one in time
            if cmds_used + a.rcpts + 3 > a.max_commands:
                logout(c)
                c = login(a)
                cmds_used = 2
            cmds_used += a.rcpts + 2
            cmds = [f"MAIL FROM:<{a.sender}>\r\n".encode()]
            for n in range(a.rcpts):
                dom = "gmail.com" if n < ng else "dest.test"
                cmds.append(f"RCPT TO:<r{m}-{n}@{dom}>\r\n".encode())
            cmds.append(b"DATA\r\n")
            c.send(b"".join(cmds))
            c.reply(b"250")
            for _ in range(a.rcpts):
                c.reply(b"250")
            c.reply(b"354")
            c.send(data)
            c.reply(b"250")
            out[0] += 1
            out[1] += a.rcpts
        logout(c)
    except (OSError, Fail) as e:
        errors.append(str(e))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--rcpts", type=int, default=50)
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--gmail", type=int, default=10,
                   help="percent of each message's recipients at gmail.com")
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--max-commands", type=int, default=10000,
                   help="the server's max_commands: reconnect before it")
    a = p.parse_args()

    per, extra = divmod(a.messages, a.sessions)
    threads, outs, errors, first = [], [], [], 0
    t0 = time.monotonic()
    for i in range(a.sessions):
        n = per + (i < extra)
        out = [0, 0]
        outs.append(out)
        t = threading.Thread(target=session,
                             args=(a, n, first, out, errors))
        first += n
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    msgs = sum(o[0] for o in outs)
    rcpts = sum(o[1] for o in outs)
    print(f"messages={msgs} recipients={rcpts} seconds={secs:.3f}")
    if errors:
        print("auth_source.py: " + "; ".join(errors[:5]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

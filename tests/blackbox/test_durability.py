#!/usr/bin/python3
"""Durability: a 250 reply to DATA means the message survives anything.

The acceptance test of the issue: 20 client threads submit as fast as
they can; every queue id that got "250 2.0.0 Ok: queued as" is recorded;
the server is killed with SIGKILL in the middle of the load, restarted on
the same spool, and every acknowledged id must be in `ombud queue list`,
intact.  This is repeated at three different moments on the same spool.
A graceful SIGTERM under load must exit 0 and lose nothing either.
"""
import os
import random
import re
import shutil
import signal
import threading
import time
import unittest

from ombudtest import (Client, ClosedError, GatewayTestCase, QID_RE,
                       QUEUED_RE, data_block, main)

THREADS = 20
SENDER = "load@example.com"
RCPT = "rcpt@example.net"
SEED = int(os.environ.get("OMBUD_TEST_SEED", time.time_ns() % 100000))


def load_message(token, size):
    body = "".join(f"{token} line {i:04d} " + "x" * 50 + "\r\n"
                   for i in range(max(1, size // 70)))
    return (f"From: <{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: load {token}\r\n"
            f"X-Load-Token: {token}\r\n\r\n{body}").encode()


class Load:
    """THREADS clients submitting in a loop until stopped."""

    def __init__(self, gw, listener="relay", rng=None):
        self.gw = gw
        self.port = gw.port(listener)
        self.rng = rng or random.Random(SEED)
        self.lock = threading.Lock()
        self.acked = {}             # qid -> (token, message bytes)
        self.unexpected = []        # replies that should not happen
        self.refused = 0
        self.stopping = threading.Event()
        self.threads = []
        self.expect_shutdown = False
        self.sizes = [self.rng.choice((300, 1500, 4096, 9000, 40000))
                      for _ in range(997)]

    def start(self):
        for i in range(THREADS):
            t = threading.Thread(target=self.worker, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(30)
            if t.is_alive():
                raise AssertionError("a load thread hangs")

    def count(self):
        with self.lock:
            return len(self.acked)

    def worker(self, i):
        n = 0
        while not self.stopping.is_set():
            try:
                c = Client("127.0.0.1", self.port, timeout=20)
            except OSError:
                with self.lock:
                    self.refused += 1
                time.sleep(0.05)         # server down: wait for stop
                continue
            try:
                r = c.reply()
                if r.code == 220:
                    c.send(b"EHLO load.test\r\n")
                    r = c.reply()
                if r.code != 250:
                    self.note([r])
                    continue
                # a few messages per connection, then a new connection
                for _ in range(1 + n % 7):
                    if self.stopping.is_set():
                        break
                    token = f"t{i}-{n}-{os.getpid()}-{time.monotonic_ns()}"
                    msg = load_message(token, self.sizes[(i * 31 + n) %
                                                         len(self.sizes)])
                    n += 1
                    c.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RCPT}>\r\n"
                           f"DATA\r\n".encode())
                    replies = [c.reply(), c.reply(), c.reply()]
                    if [r.code for r in replies] != [250, 250, 354]:
                        self.note(replies)
                        break
                    c.send(data_block(msg))
                    r = c.reply()
                    m = QUEUED_RE.match(r.last)
                    if m:
                        with self.lock:
                            self.acked[m.group(1)] = (token, msg)
                    else:
                        self.note([r])
                        break
                c.send(b"QUIT\r\n")
            except (ClosedError, OSError):
                pass                      # killed or shutting down
            except AssertionError as e:   # malformed reply, timeout
                self.note([str(e)])
            finally:
                c.close()

    def note(self, replies):
        # 421 is the right answer while shutting down
        if self.expect_shutdown and all(
                getattr(r, "code", 0) == 421 for r in replies[-1:]):
            return
        with self.lock:
            self.unexpected.append(replies)


class Durability(GatewayTestCase):

    def check_spool(self, gw, load, max_unacked):
        """Every acknowledged message is listed and intact."""
        entries = gw.queue_list()
        ids = [e["id"] for e in entries]
        self.assertEqual(len(ids), len(set(ids)), "duplicate queue ids")
        listed = {e["id"]: e for e in entries}
        acked = dict(load.acked)
        lost = sorted(set(acked) - set(listed))
        self.assertEqual(lost, [], f"{len(lost)} of {len(acked)} "
                         f"acknowledged messages lost (seed {SEED})")
        for e in entries:
            self.assertRegex(e["id"], QID_RE)
            self.assertEqual(e["from"], SENDER, e)
            self.assertEqual([r["address"] for r in e["recipients"]],
                             [RCPT], e)
        # unacknowledged extras can only be the transactions in flight
        extra = set(listed) - set(acked)
        self.assertLessEqual(len(extra), max_unacked,
                             f"{len(extra)} messages nobody acknowledged")
        # content: the last acknowledged message of each thread (the most
        # at risk) and a random sample
        by_thread = {}
        for qid, (token, _) in acked.items():
            by_thread[token.split("-")[0]] = qid
        rng = random.Random(SEED)
        sample = set(by_thread.values()) | set(
            rng.sample(sorted(acked), min(10, len(acked))))
        for qid in sorted(sample):
            token, msg = acked[qid]
            show = gw.queue_show(qid)
            content = show["content"].encode("utf-8")
            self.assertTrue(content.startswith(b"Received: "), qid)
            self.assertTrue(content.endswith(msg), f"{qid} ({token}): "
                            f"content differs from what was sent")
            self.assertIn(f"id {qid}".encode(), content.split(b"\r\n\r\n")
                          [0])
            self.assertEqual(show["size"], len(content))
        return listed

    def test_kill9_under_load(self):
        rng = random.Random(SEED)
        print(f"seed {SEED}", flush=True)
        gw = self.gateway()
        load = Load(gw, rng=rng)
        total_acked = 0
        for cycle, base in enumerate((1.0, 2.5, 4.0)):
            at = base + rng.uniform(0, 0.5)
            load.start()
            time.sleep(at)
            before = load.count()
            gw.kill9()
            load.stop()
            self.assertEqual(load.unexpected, [], f"cycle {cycle}")
            n = len(load.acked)
            print(f"cycle {cycle}: SIGKILL at {at:.2f}s, {n - total_acked} "
                  f"acknowledged this cycle ({before} before the kill)",
                  flush=True)
            self.assertGreater(n - total_acked, 50,
                               "load too small to mean anything")
            total_acked = n
            gw.assert_clean_log()
            gw.start()                       # same spool, recovery
            listed = self.check_spool(gw, load,
                                      max_unacked=THREADS * (cycle + 1))
            self.assertGreaterEqual(len(listed), n)
            # fresh worker threads for the next cycle, same records
            load.threads = []
            load.stopping = threading.Event()
        # after three crashes the server still works normally
        c = self.client(gw)
        c.ehlo()
        qid = c.submit(load_message("final", 500), sender=SENDER,
                       rcpts=(RCPT,))
        self.assertIn(qid, gw.queue_ids())

    def test_sigterm_under_load(self):
        gw = self.gateway(overrides={"timeout_shutdown": "15s"})
        # an idle session and a session in the middle of DATA
        idle = self.client(gw)
        idle.ehlo()
        busy = self.client(gw)
        busy.ehlo()
        busy.dialogue([(f"MAIL FROM:<{SENDER}>", "250"),
                       (f"RCPT TO:<{RCPT}>", "250"), ("DATA", "354")])
        msg = load_message("in-flight", 3000)
        block = data_block(msg)
        busy.send(block[:1000])

        load = Load(gw).start()
        time.sleep(2.0)
        load.expect_shutdown = True
        gw.signal(signal.SIGTERM)
        # the idle session is told 421 and closed
        idle.expect("421 4.3.2")
        idle.expect_closed()
        # the transaction in progress may finish, and is acknowledged
        busy.send(block[1000:])
        r = busy.expect("250 2.0.0 Ok: queued as ")
        busy_qid = QUEUED_RE.match(r.last).group(1)
        # then the session is closed (421 at its next idle point)
        try:
            busy.send("NOOP")
            busy.expect("421")
        except (ClosedError, OSError):
            pass
        try:
            rc = gw.proc.wait(30)
        except Exception:
            self.fail("no exit within 30 s of SIGTERM")
        load.stop()
        self.assertEqual(rc, 0, gw.log_tail())
        self.assertEqual(load.unexpected, [])
        gw.assert_clean_log()
        n = len(load.acked)
        print(f"SIGTERM after 2 s: {n} acknowledged", flush=True)
        self.assertGreater(n, 50)
        # nothing acknowledged is lost; after a graceful stop there is
        # nothing unacknowledged either, except what was cut mid-DATA
        listed = self.check_spool(gw, load, max_unacked=1 + THREADS)
        self.assertIn(busy_qid, listed)
        gw.start()
        self.check_spool(gw, load, max_unacked=1 + THREADS)


STRACE = shutil.which("strace")


def sync_before_ack(trace, qid):
    """From an strace -f log: the line numbers of the spool write holding
    qid, of the first fdatasync/fsync of that fd completed after it, and
    of the write of the 250 reply for qid (None where missing)."""
    pending = {}
    write_at = fd = sync_at = ack_at = None
    for i, line in enumerate(trace.splitlines()):
        m = re.match(r"^(\d+) +(pwritev2?|pwrite64|write|writev)\((\d+),",
                     line)
        if m and write_at is None and f"id {qid}" in line and \
                "queued as" not in line:
            write_at, fd = i, m.group(3)
            continue
        m = re.match(r"^(\d+) +(fdatasync|fsync)\((\d+)(\)\s*= 0| <unf)",
                     line)
        if m:
            if m.group(4).startswith(")"):
                done = m.group(3)
            else:
                pending[m.group(1)] = m.group(3)
                continue
        else:
            m = re.match(r"^(\d+) +<\.\.\. (fdatasync|fsync) resumed>"
                         r"\)\s*= 0", line)
            done = pending.pop(m.group(1), None) if m else None
        if done is not None and write_at is not None and \
                sync_at is None and done == fd:
            sync_at = i
        if f"250 2.0.0 Ok: queued as {qid}" in line and ack_at is None \
                and re.match(r"^\d+ +(write|writev|sendmsg|sendto)\(",
                             line):
            ack_at = i
    return write_at, sync_at, ack_at


@unittest.skipUnless(STRACE, "strace is not installed")
class SyncOrder(GatewayTestCase):

    def test_fdatasync_before_250(self):
        # syscall order seen by strace: spool write, its fdatasync, then
        # the 250 reply; never the reply first
        trace_path = None
        gw = self.gateway(start=False,
                          env={"ASAN_OPTIONS": "detect_leaks=0"})
        trace_path = os.path.join(gw.dir, "trace.txt")
        gw.wrapper = [STRACE, "-f", "-qq", "-s", "120", "-o", trace_path,
                      "-e", "trace=pwrite64,pwritev,pwritev2,write,writev,"
                      "sendmsg,sendto,fsync,fdatasync"]
        gw.start(timeout=60)
        ids = []
        c = self.client(gw)
        c.ehlo()
        for size in (200, 5000, 70000):
            ids.append(c.submit(load_message(f"sync{size}", size),
                                sender=SENDER, rcpts=(RCPT,)))
        c.cmd("QUIT", "221")
        gw.stop(check=False)
        with open(trace_path, errors="replace") as f:
            trace = f.read()
        for qid in ids:
            w, s, a = sync_before_ack(trace, qid)
            self.assertIsNotNone(w, f"{qid}: no spool write seen")
            self.assertIsNotNone(a, f"{qid}: no 250 reply seen")
            self.assertIsNotNone(s, f"{qid}: no fdatasync after the "
                                 f"spool write")
            self.assertLess(w, s)
            self.assertLess(s, a, f"{qid}: 250 sent before fdatasync")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Disk full: the spool lives on a 3 MiB tmpfs that the test mounts.

Submissions go on until the disk is full.  Every message that got
"250 ... queued as" must survive a restart; once the disk is full the
replies must be 452 4.3.1 (a temporary failure: the client keeps the
message), never a 250 for something not stored, and the session must stay
usable.  After space is freed (queue delete), submissions succeed again.

Needs root (mount); make test runs as root, as does CI.
"""
import os
import subprocess
import tempfile
import unittest

from ombudtest import GatewayTestCase, QUEUED_RE, data_block, main, message

SIZE = "3m"


class DiskFull(GatewayTestCase):
    def setUp(self):
        self.mnt = tempfile.mkdtemp(prefix="ombud-diskfull-")
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}",
                            "tmpfs", self.mnt], capture_output=True,
                           text=True)
        if p.returncode != 0:
            # a test that cannot run must not pass silently
            self.fail(f"cannot mount a tmpfs (need root): {p.stderr}")
        self.addCleanup(self._unmount)

    def _unmount(self):
        subprocess.run(["umount", "-l", self.mnt])
        os.rmdir(self.mnt)

    def test_fill_reject_recover(self):
        spool = os.path.join(self.mnt, "spool")
        # small segments, so that deleting messages frees whole segments
        # (space in a segment with live messages comes back only through
        # compaction, which itself needs room to copy them forward)
        gw = self.gateway({"spool_dir": spool, "segment_size": "64K"})
        c = self.client(gw)
        c.ehlo()
        body = ("x" * 76 + "\r\n") * 400            # ~31 KiB a message
        acked, refused = [], 0
        for i in range(400):
            c.cmd("MAIL FROM:<a@example.com>", "250")
            c.cmd("RCPT TO:<b@example.net>", "250")
            c.cmd("DATA", "354")
            c.send(data_block(message(subject=f"fill {i}", body=body)))
            r = c.reply()
            m = QUEUED_RE.match(r.last)
            if m:
                self.assertEqual(refused, 0,
                                 "a 250 after the disk was full: " + r.last)
                acked.append(m.group(1))
                continue
            self.assertTrue(r.last.startswith("452 4.3.1"), r.last)
            refused += 1
            if refused == 3:
                break
        self.assertGreater(len(acked), 20)
        self.assertEqual(refused, 3, "the disk never filled up")
        # the session is still in sync and usable after the refusals
        c.cmd("NOOP", "250")
        c.cmd("RSET", "250")

        # everything acknowledged is there, also after a crash
        gw.kill9()
        gw.start()
        ids = {m["id"] for m in gw.queue_list()}
        self.assertEqual(set(acked) - ids, set())

        # free space: delete most messages, then mail flows again
        out = gw.ombud("queue", "delete", "-c", gw.conf_path, *acked[:-5])
        self.assertEqual(out.returncode, 0, out.stderr)
        c2 = self.client(gw)
        c2.ehlo()
        qid = c2.submit(message(subject="after", body=body))
        ids = {m["id"] for m in gw.queue_list()}
        self.assertIn(qid, ids)
        self.assertEqual(set(acked[-5:]) - ids, set())


if __name__ == "__main__":
    main()

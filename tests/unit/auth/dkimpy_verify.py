#!/usr/bin/python3
# dkimpy_verify.py MESSAGE-FILE KEY-RECORD - verify every DKIM-Signature of
# the message with dkimpy, the key record standing in for DNS.  Exit 0 when
# all signatures pass, 1 when one fails, 2 when dkimpy is not installed.
import sys

try:
    import dkim
except ImportError:
    sys.exit(2)

with open(sys.argv[1], "rb") as f:
    msg = f.read()
record = sys.argv[2].encode()


def dnsfunc(name, timeout=5):
    return record


d = dkim.DKIM(msg)
n = 0
for line in msg.split(b"\r\n"):
    if line == b"":
        break
    if line.lower().startswith(b"dkim-signature:"):
        n += 1
ok = n > 0
for idx in range(n):
    try:
        if not d.verify(idx=idx, dnsfunc=dnsfunc):
            ok = False
    except dkim.DKIMException as e:
        print("dkimpy:", e, file=sys.stderr)
        ok = False
sys.exit(0 if ok else 1)

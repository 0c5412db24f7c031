#!/usr/bin/python3
"""Print the closing line of `make test` from meson's testlog.json:
'N passed, N failed, N skipped', and each failure's name above it."""
import json
import sys

passed = failed = skipped = 0
for line in open(sys.argv[1], encoding="utf-8"):
    t = json.loads(line)
    r = t.get("result")
    if r in ("OK", "EXPECTEDFAIL"):
        passed += 1
    elif r == "SKIP":
        skipped += 1
    else:
        failed += 1
        print(f"FAILED: {t.get('name')} ({r})")
print(f"{passed} passed, {failed} failed, {skipped} skipped")

#!/usr/bin/env bash
# dkim.sh [DKIM_BENCH] - DKIM signatures per second per core of ombud's
# dkim_sign() for rsa-2048 and ed25519, next to `openssl speed` for the
# same algorithms measured in the same run on this machine.
#
#   make bench-dkim                            # release build + this script
#   bench/dkim.sh build-release/bench/dkim_bench
#   ROUNDS=5 SECS=10 bench/dkim.sh /tmp/build-rel/bench/dkim_bench
#
# Each round measures, one after the other on one core (taskset when it is
# there) and in an order that alternates between rounds:
#   ours      dkim_bench ALG: dkim_sign() of a ~4 KiB message (relaxed/
#             relaxed, default header set): body hash, header
#             canonicalization and hash, the signature, base64, folding
#   raw       dkim_bench -r ALG: the bare private-key operation on the same
#             key in the same process (one EVP context, a 32-byte input)
#   openssl   openssl speed -seconds SECS rsa2048 / ed25519 (sign/s)
# and once per round `openssl speed -evp sha256 -bytes SIZE`, the hash that
# DKIM needs on top of the signature.  It prints every round, then the
# medians and the ratio ours/openssl (the target is 0.90 or more), and
# ours/(openssl sign + SHA-256 of the message), the least work a DKIM
# signature needs.
#
# Environment: SECS (5 seconds per measurement), ROUNDS (3), SIZE (4096
# bytes of message), CPU (the core to pin to, default 0).
# Needs: openssl(1), a release build of dkim_bench, nothing else; no
# network, no root.
set -euo pipefail

BENCH=${1:-build-release/bench/dkim_bench}
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-4096}
CPU=${CPU:-0}

die() { echo "dkim.sh: $*" >&2; exit 1; }

[ -x "$BENCH" ] || die "no dkim_bench at '$BENCH' (make release, or pass its path)"
command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
PIN=()
if command -v taskset >/dev/null && taskset -c "$CPU" true 2>/dev/null; then
	PIN=(taskset -c "$CPU")
fi

# ours ALG [-r] -> signatures/s
ours() {
	local alg=$1; shift
	"${PIN[@]}" "$BENCH" "$@" -s "$SECS" -m "$SIZE" "$alg" | awk '{print $4}'
}

# openssl_sign rsa2048|ed25519 -> sign/s (openssl speed -mr output:
# "+F2:k:bits:sign/s:verify/s", "+F6:k:bits:name:sign/s:verify/s")
openssl_sign() {
	local out
	out=$("${PIN[@]}" openssl speed -seconds "$SECS" -mr "$1" 2>/dev/null)
	case $1 in
	rsa2048) echo "$out" | awk -F: '/^\+F2:/ && $3 == 2048 {print $4}' ;;
	ed25519) echo "$out" | awk -F: '/^\+F6:/ {print $5}' ;;
	esac
}

# openssl_sha -> SHA-256 of SIZE bytes per second
openssl_sha() {
	"${PIN[@]}" openssl speed -seconds "$SECS" -bytes "$SIZE" -mr -evp sha256 \
	    2>/dev/null | awk -F: -v size="$SIZE" '/^\+F:/ {printf "%.1f\n", $4 / size}'
}

median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }

declare -A R
echo "dkim.sh: $("$BENCH" -s 0.01 ed25519 >/dev/null && echo ok) $BENCH," \
    "$(openssl version | cut -d' ' -f1-2), ${SECS}s per measurement," \
    "$ROUNDS rounds, ${SIZE}-byte message, ${PIN[*]:-not pinned}"
for round in $(seq 1 "$ROUNDS"); do
	if [ $((round % 2)) = 1 ]; then order="rsa ed25519"; else order="ed25519 rsa"; fi
	for alg in $order; do
		oalg=$([ "$alg" = rsa ] && echo rsa2048 || echo ed25519)
		if [ $((round % 2)) = 1 ]; then
			o=$(ours "$alg"); s=$(openssl_sign "$oalg")
		else
			s=$(openssl_sign "$oalg"); o=$(ours "$alg")
		fi
		r=$(ours "$alg" -r)
		[ -n "$o" ] && [ -n "$s" ] && [ -n "$r" ] || die "a measurement failed ($alg)"
		R[$alg.ours]+="$o "; R[$alg.openssl]+="$s "; R[$alg.raw]+="$r "
		printf "round %d %-8s ours %9.1f/s  raw %9.1f/s  openssl %9.1f/s  ours/openssl %s\n" \
		    "$round" "$alg" "$o" "$r" "$s" "$(ratio "$o" "$s")"
	done
	h=$(openssl_sha)
	[ -n "$h" ] || die "openssl speed sha256 failed"
	R[sha]+="$h "
	printf "round %d sha256   openssl %.1f messages/s of %d bytes\n" "$round" "$h" "$SIZE"
done

sha=$(echo "${R[sha]}" | tr ' ' '\n' | grep . | median)
echo
printf "%-9s %12s %12s %12s %14s %16s %14s\n" alg "ours sig/s" "raw sig/s" \
    "openssl" "ours/openssl" "openssl+sha256" "ours/(o+sha)"
for alg in rsa ed25519; do
	o=$(echo "${R[$alg.ours]}" | tr ' ' '\n' | grep . | median)
	r=$(echo "${R[$alg.raw]}" | tr ' ' '\n' | grep . | median)
	s=$(echo "${R[$alg.openssl]}" | tr ' ' '\n' | grep . | median)
	both=$(awk -v s="$s" -v h="$sha" 'BEGIN {printf "%.1f", 1 / (1 / s + 1 / h)}')
	printf "%-9s %12.1f %12.1f %12.1f %14s %16.1f %14s\n" \
	    "$([ "$alg" = rsa ] && echo rsa-2048 || echo ed25519)" "$o" "$r" "$s" \
	    "$(ratio "$o" "$s")" "$both" "$(ratio "$o" "$both")"
done

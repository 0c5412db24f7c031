# bench/lib.sh - what the benchmark scripts share, sourced by accept.sh,
# deliver.sh and billing.sh (after they set PY to a python3).
#
# Every helper here is side-effect free or stops only what its caller
# started: none may run inside a command substitution that starts a
# server (the caller's EXIT trap must know every process it started).

die() { echo "${0##*/}: $*" >&2; exit 1; }

# free_port VAR [IP]: a TCP port free on IP (127.0.0.1) a moment ago
free_port() {
	local p
	p=$("$PY" -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "${2:-127.0.0.1}")
	printf -v "$1" '%s' "$p"
}

# wait_port [IP] PORT: until something accepts there (10 s); IP
# defaults to 127.0.0.1
wait_port() {
	local ip=127.0.0.1
	if [ $# -ge 2 ]; then ip=$1; shift; fi
	"$PY" -c '
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)' "$ip" "$1"
}

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# ombud_stop: SIGTERM to OMBUD_PID; its exit status must be 0
ombud_stop() {
	local rc=0
	kill -TERM "$OMBUD_PID"
	wait "$OMBUD_PID" || rc=$?
	OMBUD_PID=
	[ "$rc" = 0 ] || die "ombud exited $rc after SIGTERM"
}

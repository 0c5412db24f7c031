#!/usr/bin/env bash
# billing.sh [OMBUD] - what counting recipients for the bill (metering)
# adds to the cost of delivering them: ombud's own CPU seconds per 1 000
# recipients, end to end, with metering = yes and with metering = no,
# alternately in the same run.
#
#   bench/billing.sh build-release/ombud
#   PAIRS=5 RECIPIENTS=50000 RCPTS=100 bench/billing.sh build-release/ombud
#
# The workload: a company on the platform relay (company, domain,
# credential and route made with the ombud CLI, as an operator would)
# submits RECIPIENTS recipients as messages of RCPTS recipients each over
# SESSIONS SMTP connections with AUTH PLAIN and PIPELINING
# (bench/auth_source.py; smtp-source cannot authenticate); ombud delivers
# them to the recipients' MX, an smtp-sink found through a private
# dnsmasq (dest.test and gmail.com, MX mx1.dest.test = 127.0.0.2, on
# mx_port).  A measurement ends when ombud has logged a delivery.delivered
# for every recipient.
#
# The measure is ombud's CPU time (utime + stime of every thread, from
# /proc/PID/stat) from just before the load starts to the last delivery,
# so the client, the sink and dnsmasq, which share the machine, are not
# in it.  The meter's worker thread (the SQLite transactions) is reported
# on its own: its CPU time as measured by the meter itself
# (CLOCK_THREAD_CPUTIME_ID around every batch, logged at shutdown in
# event=meter.stopped with the number of batches).  A metered run is refused unless `ombud billing
# usage` shows every recipient counted; an unmetered one unless it shows
# none.
#
# Environment: RECIPIENTS (100000 per run), RCPTS (50 recipients per
# message), SESSIONS (8 connections), GMAIL (10: percent of each message's
# recipients at gmail.com), SIZE (4096 bytes per message), PAIRS (5:
# each a metered and an unmetered run, the order alternating),
# PREFILL (0: rows put in meter_seen before every run, as if that many
# messages had been counted this month already), TIMEOUT (600 s per run),
# OMBUD_CONF_EXTRA (more global lines), KEEP (1: keep the work
# directory), BENCH_DIR (parent of the work directory).
#
# Needs smtp-sink (postfix), dnsmasq (dnsmasq-base) and python3; root is
# not needed (as root, both run as root instead of their usual users).
# Everything listens on 127.0.0.1/127.0.0.2 and free ports; ombud's
# resolver is the private dnsmasq, which answers nothing else.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

OMBUD=${1:-build-release/ombud}
RECIPIENTS=${RECIPIENTS:-100000}
RCPTS=${RCPTS:-50}
SESSIONS=${SESSIONS:-8}
GMAIL=${GMAIL:-10}
SIZE=${SIZE:-4096}
PAIRS=${PAIRS:-5}
PREFILL=${PREFILL:-0}
TIMEOUT=${TIMEOUT:-600}
KEEP=${KEEP:-0}
OMBUD_CONF_EXTRA=${OMBUD_CONF_EXTRA:-}
MX_IP=127.0.0.2
HERE=$(cd "$(dirname "$0")" && pwd)

[ -x "$OMBUD" ] || die "no ombud binary at '$OMBUD' (make release, or pass its path)"
OMBUD=$(cd "$(dirname "$OMBUD")" && pwd)/$(basename "$OMBUD")
PATH=$PATH:/usr/sbin
command -v smtp-sink >/dev/null || die "smtp-sink not found (apt-get install postfix)"
command -v dnsmasq >/dev/null || die "dnsmasq not found (apt-get install dnsmasq-base)"
PY=$(command -v python3) || die "python3 not found"
[ $((RECIPIENTS % RCPTS)) = 0 ] || die "RECIPIENTS must be a multiple of RCPTS"
MESSAGES=$((RECIPIENTS / RCPTS))
HZ=$(getconf CLK_TCK)
ROOT=()
[ "$(id -u)" = 0 ] && ROOT=(1)

WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/ombud-billing.XXXXXX")
chmod 755 "$WORK"
OMBUD_PID= SINK_PID= DNS_PID=

cleanup() {
	set +e
	[ -n "$OMBUD_PID" ] && { kill "$OMBUD_PID"; wait "$OMBUD_PID"; } 2>/dev/null
	[ -n "$SINK_PID" ] && { kill "$SINK_PID"; wait "$SINK_PID"; } 2>/dev/null
	[ -n "$DNS_PID" ] && { kill "$DNS_PID"; wait "$DNS_PID"; } 2>/dev/null
	if [ "$KEEP" = 1 ]; then
		echo "work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# cpu_ticks PID: utime + stime of the whole process (all threads)
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# meter_field DIR KEY: a field of event=meter.stopped (0: none)
meter_field() {
	sed -n "s/.*event=meter\.stopped.* $2=\([0-9]*\).*/\1/p" "$1/serve.log" |
	    tail -1 | grep . || echo 0
}

# ------------------------------------------------------------ the peers

dns_start() {	# dest.test and gmail.com: MX mx1.dest.test = MX_IP
	local a
	for _ in 1 2 3 4 5; do
		free_port DNS_PORT
		a=(--keep-in-foreground --no-resolv --no-hosts --no-poll
		   --conf-file=/dev/null --bind-interfaces
		   --listen-address=127.0.0.1 "--port=$DNS_PORT" --pid-file=
		   --local-ttl=0 --local=/test/ --local=/gmail.com/
		   --mx-host=dest.test,mx1.dest.test,10
		   --mx-host=gmail.com,mx1.dest.test,10
		   "--host-record=mx1.dest.test,$MX_IP")
		[ ${#ROOT[@]} = 1 ] && a+=(--user=root --group=root)
		dnsmasq "${a[@]}" > "$WORK/dnsmasq.out" 2>&1 &
		DNS_PID=$!
		sleep 0.2
		kill -0 "$DNS_PID" 2>/dev/null && return 0
		DNS_PID=
	done
	cat "$WORK/dnsmasq.out" >&2
	die "dnsmasq did not start"
}

sink_start() {	# a fresh sink on MX_IP:SINK_PORT (mx_port)
	local u=()
	[ ${#ROOT[@]} = 1 ] && u=(-u root)
	free_port SINK_PORT "$MX_IP"
	smtp-sink "${u[@]}" -c "$MX_IP:$SINK_PORT" 1024 > "$WORK/sink.out" 2>&1 &
	SINK_PID=$!
	wait_port "$MX_IP" "$SINK_PORT" || die "smtp-sink is not listening on $MX_IP:$SINK_PORT"
}

sink_stop() {
	kill "$SINK_PID" 2>/dev/null || true
	wait "$SINK_PID" 2>/dev/null || true
	SINK_PID=
}

# ------------------------------------------------------------------ ombud

# ombud_setup DIR METERING: configuration, store with the company
ombud_setup() {
	local dir=$1 metering=$2
	mkdir -p "$dir"
	free_port OMB_PORT
	cat > "$dir/ombud.conf" <<-EOF
	hostname = bench.localhost
	spool_dir = $dir/spool
	run_dir = $dir/run
	store = sqlite:$dir/ombud.db
	secret_key_file = $dir/secret.key
	log_format = text
	delivery = yes
	dns_servers = 127.0.0.1:$DNS_PORT
	mx_port = $SINK_PORT
	domain_check_interval = 0
	metering = $metering
	$OMBUD_CONF_EXTRA

	[listener submission]
	address = 127.0.0.1:$OMB_PORT
	tls = none
	auth = yes
	auth_requires_tls = no
	EOF
	cli "$dir" company add bench --name Bench
	cli "$dir" domain add bench.test --company bench
	echo "Pw-Bench-1" | cli "$dir" credential add --company bench \
	    --application app --username bench-app --password-stdin
	cli "$dir" company set-route bench platform-relay --reference B-1
	[ "$PREFILL" -gt 0 ] && prefill "$dir/ombud.db"
	return 0
}

cli() {	# DIR ARGS...: an ombud CLI command on DIR's configuration
	local dir=$1
	shift
	"$OMBUD" "$@" -c "$dir/ombud.conf" >> "$dir/cli.out" 2>&1 ||
	    { cat "$dir/cli.out" >&2; die "ombud $* failed"; }
}

prefill() {	# PREFILL queue ids of this month in meter_seen
	"$PY" - "$1" "$PREFILL" <<-'EOF'
	import sqlite3, sys, time
	db = sqlite3.connect(sys.argv[1])
	month = int(time.strftime("%Y%m"))
	db.executemany("INSERT INTO meter_seen (qid, month) VALUES (?, ?)",
	               ((f"PREFILL{i:012d}", month) for i in range(int(sys.argv[2]))))
	db.commit()
	EOF
}

ombud_start() {	# DIR
	local dir=$1
	"$OMBUD" serve -c "$dir/ombud.conf" 2> "$dir/serve.log" &
	OMBUD_PID=$!
	for _ in $(seq 200); do
		grep -q 'server.ready' "$dir/serve.log" && return 0
		kill -0 "$OMBUD_PID" 2>/dev/null || break
		sleep 0.05
	done
	cat "$dir/serve.log" >&2
	die "ombud did not start"
}

delivered() { grep -c 'event=delivery.delivered' "$1/serve.log" || true; }

# counted DIR: recipients in `ombud billing usage` (this month, company bench)
counted() {
	"$OMBUD" billing usage --format json -c "$1/ombud.conf" 2>>"$1/cli.out" |
	    "$PY" -c 'import json, sys
u = json.load(sys.stdin)
print(sum(d["emails"] for c in u["companies"] if c["company"] == "bench"
          for d in c["days"]))'
}

# measure NAME METERING N: one run; sets CPU, MCPU (seconds), BATCHES, WALL
measure() {
	local name=$1 metering=$2 n=$3 dir=$WORK/$1 c0 t0 c1 d=0 \
	    deadline out want=0
	sink_start
	ombud_setup "$dir" "$metering"
	ombud_start "$dir"
	c0=$(cpu_ticks "$OMBUD_PID")
	t0=$(date +%s.%N)
	out=$("$PY" "$HERE/auth_source.py" --port "$OMB_PORT" \
	    --user bench-app --password Pw-Bench-1 --from news@bench.test \
	    --messages $((n / RCPTS)) --rcpts "$RCPTS" --sessions "$SESSIONS" \
	    --gmail "$GMAIL" --size "$SIZE") ||
	    die "$name: the client failed: $out"
	deadline=$(( $(date +%s) + TIMEOUT ))
	while [ "$d" -lt "$n" ]; do
		[ "$(date +%s)" -lt "$deadline" ] ||
		    die "$name: $d of $n recipients delivered in ${TIMEOUT}s"
		sleep 0.2
		d=$(delivered "$dir")
	done
	c1=$(cpu_ticks "$OMBUD_PID")
	WALL=$(calc "$(date +%s.%N) - $t0")
	[ "$d" = "$n" ] || die "$name: $d deliveries logged for $n recipients"
	[ "$metering" = yes ] && want=$n
	d=$(counted "$dir")
	[ "$d" = "$want" ] || die "$name: billing usage counted $d recipients, not $want (metering = $metering)"
	ombud_stop
	sink_stop
	grep -q 'event=meter.failed' "$dir/serve.log" && die "$name: meter.failed in the log"
	CPU=$(calc "($c1 - $c0) / $HZ")
	MCPU=$(calc "$(meter_field "$dir" worker_cpu_us) / 1000000")
	BATCHES=$(meter_field "$dir" batches)
	[ "$metering" = no ] || [ "$(meter_field "$dir" counted)" = "$((n / RCPTS))" ] ||
	    die "$name: the meter counted $(meter_field "$dir" counted) messages, not $((n / RCPTS))"
	[ "$KEEP" = 1 ] || rm -rf "$dir"
}

echo "metering overhead: ombud CPU per 1000 recipients, metering = yes vs no"
echo "  $("$OMBUD" version), $(nproc) cores, $(uname -sr), work directory on $(df -PT "$WORK" | awk 'NR==2 {print $2}')"
echo "  $RECIPIENTS recipients per run = $MESSAGES messages x $RCPTS recipients ($GMAIL % at gmail.com), $SIZE bytes, $SESSIONS AUTH sessions with PIPELINING"
echo "  platform-relay company -> ombud -> MX (smtp-sink via dnsmasq); $PAIRS pairs, order alternating; meter_seen prefilled with $PREFILL rows"

dns_start
measure warmup-yes yes $((RCPTS * 100))
measure warmup-no no $((RCPTS * 100))

Y=() N=() MY=() R=()
printf '%-5s %-9s %8s %10s %12s %12s %8s %7s\n' pair metering "cpu s" "meter s" "cpu s/1000" "meter s/1000" batches "wall s"
for p in $(seq "$PAIRS"); do
	if [ $((p % 2)) = 1 ]; then order="yes no"; else order="no yes"; fi
	for mode in $order; do
		measure "pair$p-$mode" "$mode" "$RECIPIENTS"
		per=$(calc "$CPU * 1000 / $RECIPIENTS")
		mper=$(calc "$MCPU * 1000 / $RECIPIENTS")
		if [ "$mode" = yes ]; then y=$per; Y+=("$per"); MY+=("$mper")
		else u=$per; N+=("$per"); fi
		printf '%-5s %-9s %8.2f %10.4f %12.4f %12.5f %8d %7.1f\n' \
		    "$p" "$mode" "$CPU" "$MCPU" "$per" "$mper" "$BATCHES" "$WALL"
	done
	R+=("$(calc "$y / $u - 1")")
	printf '      pair %d: overhead %+.2f %%\n' "$p" "$(calc "($y / $u - 1) * 100")"
done
my=$(median "${Y[@]}") mn=$(median "${N[@]}") mm=$(median "${MY[@]}")
printf 'median CPU per 1000 recipients: metering = yes %.4f s, no %.4f s; meter thread %.5f s\n' "$my" "$mn" "$mm"
printf 'overhead (yes/no - 1 of the medians): %+.2f %%   median of the pairs: %+.2f %%   meter thread alone: %.2f %% of the unmetered cost\n' \
    "$(calc "($my / $mn - 1) * 100")" "$(median "${R[@]}" | awk '{printf "%.6f", $1 * 100}')" \
    "$(calc "$mm / $mn * 100")"
printf '1 million recipients (%d messages of %d): about %.1f s of ombud CPU unmetered, %.1f s metered, of which the meter thread %.2f s\n' \
    $((1000000 / RCPTS)) "$RCPTS" "$(calc "$mn * 1000")" "$(calc "$my * 1000")" "$(calc "$mm * 1000")"

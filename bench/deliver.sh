#!/usr/bin/env bash
# deliver.sh [OMBUD] - how many messages per second ombud and Postfix get
# through: accepted from smtp-source AND delivered to an smtp-sink, timed
# from the first submission until the sink has counted every message.
# Both relay the same workload to the same kind of sink, alternately, in
# the same run.
#
#   bench/deliver.sh build-release/ombud
#   ROUNDS=5 MESSAGES=50000 bench/deliver.sh /tmp/build-rel/ombud
#
# Everything listens on free 127.0.0.1 ports; nothing goes anywhere else
# (ombud: dns_servers = 127.0.0.1:9 and a route to an IP literal; Postfix:
# relayhost = an IP literal, smtp_dns_support_level = disabled).
#
# ombud: a release build, one listener (tls = none, auth = no,
# trusted_networks = 127.0.0.0/8), delivery = yes, default_route = a
# [route sink] to the sink (tls = none, max_connections = CONNS), a fresh
# spool and process per round.
# Postfix: a private instance (own config_directory, queue_directory,
# data_directory under the work directory; master.cf without chroot),
# smtpd on a free port, mynetworks = 127.0.0.0/8, relayhost = [the
# sink], default_destination_concurrency_limit = CONNS, a fresh queue per
# round.
# The sink: Postfix's smtp-sink -c (running counters; no dump files, so
# the sink is not the bottleneck), restarted per measurement; "delivered"
# = its mesg= counter (the dot received and answered 250).
#
# Environment: MESSAGES (40000 per run), SESSIONS (20), SIZE (4096 bytes
# of payload), ROUNDS (3), CONNS (20 connections to the sink, for both),
# REUSE (0: smtp-source opens a connection per message; 1: -d),
# KEEP (1: keep the work directory), BENCH_DIR (parent of the work
# directory), OMBUD_CONF_EXTRA (more global ombud.conf lines),
# TIMEOUT (seconds a run may take to deliver everything; 600).
#
# Needs root (Postfix's master), the postfix package (postfix, postconf,
# smtp-source, smtp-sink) and python3.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

OMBUD=${1:-build-release/ombud}
MESSAGES=${MESSAGES:-40000}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-4096}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-20}
REUSE=${REUSE:-0}
KEEP=${KEEP:-0}
TIMEOUT=${TIMEOUT:-600}
OMBUD_CONF_EXTRA=${OMBUD_CONF_EXTRA:-}
FROM=a@example.com
TO=b@example.net

[ -x "$OMBUD" ] || die "no ombud binary at '$OMBUD' (make release, or pass its path)"
OMBUD=$(cd "$(dirname "$OMBUD")" && pwd)/$(basename "$OMBUD")
for p in smtp-source smtp-sink postfix postconf; do
	command -v $p >/dev/null || PATH=$PATH:/usr/sbin
	command -v $p >/dev/null || die "$p not found (apt-get install postfix)"
done
PY=$(command -v python3) || die "python3 not found"
[ "$(id -u)" = 0 ] || die "must run as root (Postfix's master needs it)"
id postfix >/dev/null 2>&1 || die "no 'postfix' user (apt-get install postfix)"
getent group postdrop >/dev/null || die "no 'postdrop' group"

WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/ombud-deliver.XXXXXX")
chmod 755 "$WORK"		# the postfix user must reach its queue
PFX=$WORK/postfix
OMB=$WORK/ombud
OMBUD_PID= SINK_PID= PFX_PID=

cleanup() {
	set +e
	[ -n "$OMBUD_PID" ] && { kill "$OMBUD_PID"; wait "$OMBUD_PID"; } 2>/dev/null
	postfix_stop
	sink_stop
	if [ "$KEEP" = 1 ]; then
		echo "work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ sink

sink_start() {	# a fresh counter each time
	free_port SINK_PORT
	smtp-sink -u root -c "127.0.0.1:$SINK_PORT" 1024 > "$WORK/sink.out" 2>&1 &
	SINK_PID=$!
	wait_port "$SINK_PORT" || die "smtp-sink is not listening on $SINK_PORT"
}

sink_stop() {
	[ -n "$SINK_PID" ] || return 0
	kill "$SINK_PID" 2>/dev/null || true
	wait "$SINK_PID" 2>/dev/null || true
	SINK_PID=
}

# messages the sink has received (its last "mesg=N" counter)
sink_count() {
	tail -c 200 "$WORK/sink.out" 2>/dev/null | tr '\r' '\n' |
	    sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1 | grep . || echo 0
}

# wait_delivered N: until the sink counted N messages; sets T_DONE
wait_delivered() {
	local n=$1 c=0 deadline
	deadline=$(( $(date +%s) + TIMEOUT ))
	while :; do
		c=$(sink_count)
		[ "$c" -ge "$n" ] && break
		[ "$(date +%s)" -lt "$deadline" ] ||
		    die "the sink got $c of $n messages in ${TIMEOUT}s"
		sleep 0.02
	done
	T_DONE=$(now)
}

# run_load PORT N: smtp-source, then wait for the sink; sets ELAPSED
# (first submission to last delivery) and ACCEPT (smtp-source's time)
run_load() {
	local port=$1 n=$2 t0 t1 opts=()
	[ "$REUSE" = 1 ] && opts+=(-d)
	t0=$(now)
	smtp-source -s "$SESSIONS" -l "$SIZE" -m "$n" "${opts[@]}" \
	    -f "$FROM" -t "$TO" "127.0.0.1:$port" >/dev/null ||
	    die "smtp-source failed against port $port"
	t1=$(now)
	wait_delivered "$n"
	ACCEPT=$(calc "$t1 - $t0")
	ELAPSED=$(calc "$T_DONE - $t0")
}

# ---------------------------------------------------------------- Postfix

postfix_config() {	# relayhost = the current sink
	PFX_PORT=${PFX_PORT:-}
	[ -n "$PFX_PORT" ] || free_port PFX_PORT
	mkdir -p "$PFX/conf"
	cat > "$PFX/conf/main.cf" <<-EOF
	# private benchmark instance written by bench/deliver.sh
	compatibility_level = 3.6
	queue_directory = $PFX/queue
	data_directory = $PFX/data
	mail_owner = postfix
	setgid_group = postdrop
	myhostname = bench.localhost
	mydomain = localhost
	mydestination =
	mynetworks = 127.0.0.0/8
	inet_interfaces = loopback-only
	inet_protocols = ipv4
	smtpd_relay_restrictions = permit_mynetworks, reject
	# everything to the sink; no DNS
	relayhost = [127.0.0.1]:$SINK_PORT
	smtp_dns_support_level = disabled
	default_destination_concurrency_limit = $CONNS
	# as in accept.sh: ombud does neither reverse DNS nor flow control
	smtpd_peername_lookup = no
	in_flow_delay = 0
	notify_classes =
	alias_maps =
	alias_database =
	local_recipient_maps =
	maillog_file = $PFX/maillog
	maillog_file_prefixes = $PFX
	EOF
	cat > "$PFX/conf/master.cf" <<-EOF
	127.0.0.1:$PFX_PORT inet n - n - - smtpd
	cleanup   unix n - n - 0 cleanup
	qmgr      unix n - n 300 1 qmgr
	rewrite   unix - - n - - trivial-rewrite
	bounce    unix - - n - 0 bounce
	defer     unix - - n - 0 bounce
	trace     unix - - n - 0 bounce
	verify    unix - - n - 1 verify
	flush     unix n - n 1000? 0 flush
	proxymap  unix - - n - - proxymap
	smtp      unix - - n - - smtp
	relay     unix - - n - - smtp
	showq     unix n - n - - showq
	error     unix - - n - - error
	retry     unix - - n - - error
	discard   unix - - n - - discard
	anvil     unix - - n - 1 anvil
	scache    unix - - n - 1 scache
	postlog   unix-dgram n - n - 1 postlogd
	EOF
}

postfix_start() {	# fresh queue; the master in the foreground, our child
	rm -rf "$PFX/queue" "$PFX/data"
	mkdir -p "$PFX/queue" "$PFX/data"
	chown postfix:postfix "$PFX/data"
	chmod 700 "$PFX/data"
	postfix_config
	postfix -c "$PFX/conf" check >/dev/null 2>&1 ||
	    postfix -c "$PFX/conf" set-permissions >/dev/null 2>&1 || true
	MAIL_CONFIG=$PFX/conf "$(postconf -h daemon_directory)/master" \
	    -c "$PFX/conf" > "$PFX/master.out" 2>&1 &
	PFX_PID=$!
	wait_port "$PFX_PORT" || {
		tail -20 "$PFX/maillog" >&2 2>/dev/null
		die "postfix is not listening on $PFX_PORT"
	}
}

postfix_stop() {
	[ -n "$PFX_PID" ] || return 0
	kill "$PFX_PID" 2>/dev/null || true	# the master stops its children
	wait "$PFX_PID" 2>/dev/null || true
	PFX_PID=
}

postfix_queued() { find "$PFX/queue/incoming" "$PFX/queue/active" \
	"$PFX/queue/deferred" -type f 2>/dev/null | wc -l; }

# ------------------------------------------------------------------ ombud

ombud_start() {	# fresh spool each time; delivery to the current sink
	local dir=$OMB/$1
	free_port OMB_PORT
	mkdir -p "$dir"
	cat > "$dir/ombud.conf" <<-EOF
	hostname = bench.localhost
	spool_dir = $dir/spool
	run_dir = $dir/run
	store = sqlite:$dir/ombud.db
	secret_key_file = $dir/secret.key
	log_format = text
	delivery = yes
	dns_servers = 127.0.0.1:9
	default_route = sink
	$OMBUD_CONF_EXTRA

	[listener bench]
	address = 127.0.0.1:$OMB_PORT
	tls = none
	auth = no
	trusted_networks = 127.0.0.0/8

	[route sink]
	host = 127.0.0.1
	port = $SINK_PORT
	tls = none
	max_connections = $CONNS
	EOF
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

ombud_count() { grep -c "event=$2" "$OMB/$1/serve.log" || true; }

# ------------------------------------------------------------------ runs

measure_ombud() {	# ROUND: sets RATE, ARATE
	local n d
	sink_start
	ombud_start "round$1"
	run_load "$OMB_PORT" "$MESSAGES"
	# every delivery logged (the sink may count the dot first)
	for _ in $(seq 100); do
		d=$(ombud_count "round$1" delivery.delivered)
		[ "$d" -ge "$MESSAGES" ] && break
		sleep 0.05
	done
	ombud_stop
	n=$(ombud_count "round$1" smtp.accepted)
	[ "$n" = "$MESSAGES" ] || die "ombud accepted $n of $MESSAGES"
	[ "$d" = "$MESSAGES" ] || die "ombud logged $d deliveries of $MESSAGES"
	n=$(sink_count)
	[ "$n" = "$MESSAGES" ] || die "the sink got $n messages from ombud, not $MESSAGES"
	sink_stop
	rm -rf "$OMB/round$1/spool"
	RATE=$(calc "$MESSAGES / $ELAPSED") ARATE=$(calc "$MESSAGES / $ACCEPT")
}

measure_postfix() {	# sets RATE, ARATE
	local n
	sink_start
	postfix_start
	run_load "$PFX_PORT" "$MESSAGES"
	n=$(sink_count)
	[ "$n" = "$MESSAGES" ] || die "the sink got $n messages from postfix, not $MESSAGES"
	for _ in $(seq 100); do		# queue files removed after the 250
		[ "$(postfix_queued)" = 0 ] && break
		sleep 0.05
	done
	postfix_stop
	sink_stop
	RATE=$(calc "$MESSAGES / $ELAPSED") ARATE=$(calc "$MESSAGES / $ACCEPT")
}

echo "ombud vs Postfix: messages per second accepted and delivered to a sink"
echo "  $("$OMBUD" version), Postfix $(postconf -h mail_version)"
echo "  $(nproc) cores, $(uname -sr), work directory on $(df -PT "$WORK" | awk 'NR==2 {print $2}')"
echo "  smtp-source -s $SESSIONS -l $SIZE -m $MESSAGES$([ "$REUSE" = 1 ] && echo ' -d') -> server -> smtp-sink (up to $CONNS connections)"

# warm-up, not timed
sink_start
ombud_start warmup
run_load "$OMB_PORT" 1000
ombud_stop
sink_stop
rm -rf "$OMB/warmup"
sink_start
postfix_start
run_load "$PFX_PORT" 1000
postfix_stop
sink_stop

O=() P=() OA=() PA=()
for r in $(seq "$ROUNDS"); do
	if [ $((r % 2)) = 1 ]; then	# alternate which one goes first
		measure_ombud "$r"; o=$RATE oa=$ARATE
		measure_postfix; p=$RATE pa=$ARATE
	else
		measure_postfix; p=$RATE pa=$ARATE
		measure_ombud "$r"; o=$RATE oa=$ARATE
	fi
	O+=("$o") P+=("$p") OA+=("$oa") PA+=("$pa")
	printf 'round %d: ombud %9.1f msg/s   postfix %9.1f msg/s   ratio %.2f   (accepted: %.1f / %.1f msg/s)\n' \
	    "$r" "$o" "$p" "$(calc "$o / $p")" "$oa" "$pa"
done
mo=$(median "${O[@]}") mp=$(median "${P[@]}")
printf 'median:  ombud %9.1f msg/s   postfix %9.1f msg/s   delivered end to end\n' "$mo" "$mp"
printf 'median accepted (smtp-source done): ombud %.1f msg/s   postfix %.1f msg/s\n' \
    "$(median "${OA[@]}")" "$(median "${PA[@]}")"
printf 'ratio ombud/postfix: %.2f (median of %d rounds)\n' \
    "$(calc "$mo / $mp")" "$ROUNDS"

#!/usr/bin/env bash
# accept.sh [OMBUD] - how many messages per second ombud and Postfix accept
# (250 after DATA, durably queued), measured alternately on this machine
# with Postfix's own load generator smtp-source(1).
#
#   bench/accept.sh build-release/ombud
#   ROUNDS=5 MESSAGES=50000 bench/accept.sh /tmp/build-rel/ombud
#
# Both servers listen on a free 127.0.0.1 port; no traffic goes anywhere
# else.  ombud: a release build, one listener with tls=none, auth=no,
# trusted_networks=127.0.0.0/8, a fresh spool per round.
# Postfix: a private instance configured here (own config_directory,
# queue_directory and data_directory under the work directory), smtpd on
# the free port, mynetworks=127.0.0.0/8, every message put on hold so that
# nothing is delivered (only acceptance is measured), default fsync
# behaviour.  It is started once, its hold queue emptied before each round,
# and stopped and removed at the end.
#
# Environment: MESSAGES (20000 per run), SESSIONS (20), SIZE (4096 bytes of
# payload), ROUNDS (3), REUSE (0: a new connection per message, as
# smtp-source does by default; 1: smtp-source -d, one connection per
# session), KEEP (1: keep the work directory), BENCH_DIR (parent of the
# work directory, default $TMPDIR or /tmp; put it on the disk to measure).
#
# Needs root (Postfix's master runs as root and drops to mail_owner), the
# postfix package (postfix, postconf, postsuper, smtp-source) and python3.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

OMBUD=${1:-build-release/ombud}
MESSAGES=${MESSAGES:-20000}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-4096}
ROUNDS=${ROUNDS:-3}
REUSE=${REUSE:-0}
KEEP=${KEEP:-0}
OMBUD_CONF_EXTRA=${OMBUD_CONF_EXTRA:-}	# e.g. "commit_delay_us = 200"
FROM=a@example.com
TO=b@example.net

[ -x "$OMBUD" ] || die "no ombud binary at '$OMBUD' (make release, or pass its path)"
OMBUD=$(cd "$(dirname "$OMBUD")" && pwd)/$(basename "$OMBUD")
for p in smtp-source postfix postconf postsuper; do
	command -v $p >/dev/null || PATH=$PATH:/usr/sbin
	command -v $p >/dev/null || die "$p not found (apt-get install postfix)"
done
PY=$(command -v python3) || die "python3 not found"
[ "$(id -u)" = 0 ] || die "must run as root (Postfix's master needs it)"
id postfix >/dev/null 2>&1 || die "no 'postfix' user (apt-get install postfix)"
getent group postdrop >/dev/null || die "no 'postdrop' group"

WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/ombud-bench.XXXXXX")
chmod 755 "$WORK"		# the postfix user must reach its queue
PFX=$WORK/postfix
OMB=$WORK/ombud
OMBUD_PID=

cleanup() {
	set +e
	if [ -n "$OMBUD_PID" ]; then
		kill "$OMBUD_PID" 2>/dev/null
		wait "$OMBUD_PID" 2>/dev/null
	fi
	postfix_stop
	if [ "$KEEP" = 1 ]; then
		echo "work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rate() { awk "BEGIN { printf \"%.1f\", $1 / $2 }"; }

# run_source PORT [COUNT]: one timed smtp-source run; sets ELAPSED (s).
# No command substitution around anything that starts or stops a server:
# the EXIT trap must know every process this script started.
run_source() {
	local port=$1 n=${2:-$MESSAGES} t0 t1 opts=()
	[ "$REUSE" = 1 ] && opts+=(-d)
	t0=$(now)
	smtp-source -s "$SESSIONS" -l "$SIZE" -m "$n" "${opts[@]}" \
	    -f "$FROM" -t "$TO" "127.0.0.1:$port" >/dev/null ||
	    die "smtp-source failed against port $port"
	t1=$(now)
	ELAPSED=$(calc "$t1 - $t0")
}

# ---------------------------------------------------------------- Postfix

postfix_setup() {
	free_port PFX_PORT
	mkdir -p "$PFX/conf"
	cat > "$PFX/conf/main.cf" <<-EOF
	# private benchmark instance written by bench/accept.sh
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
	# acceptance only: every message goes to the hold queue, never to
	# delivery; should anything reach delivery it is deferred, and the
	# relay is a closed loopback port
	smtpd_data_restrictions = check_client_access static:HOLD
	defer_transports = smtp, relay
	relayhost = [127.0.0.1]:9
	# ombud does neither reverse DNS nor flow control
	smtpd_peername_lookup = no
	in_flow_delay = 0
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
	pickup    unix n - n 60 1 pickup
	EOF
}

postfix_start() {	# a fresh queue and data directory each time
	rm -rf "$PFX/queue" "$PFX/data"
	mkdir -p "$PFX/queue" "$PFX/data"
	chown postfix:postfix "$PFX/data"
	chmod 700 "$PFX/data"
	# postfix check creates the queue directories with their owners
	postfix -c "$PFX/conf" check >/dev/null 2>&1 ||
	    postfix -c "$PFX/conf" set-permissions >/dev/null 2>&1 || true
	postfix -c "$PFX/conf" start >/dev/null 2>&1 || {
		tail -20 "$PFX/maillog" >&2 2>/dev/null
		die "postfix -c $PFX/conf start failed"
	}
	wait_port "$PFX_PORT" || die "postfix is not listening on $PFX_PORT"
}

postfix_stop() {
	local pid
	[ -f "$PFX/queue/pid/master.pid" ] || return 0
	pid=$(tr -d ' ' < "$PFX/queue/pid/master.pid")
	postfix -c "$PFX/conf" stop >/dev/null 2>&1 || true
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	echo "accept.sh: postfix (master pid $pid) did not stop" >&2
	kill "$pid" 2>/dev/null		# the master this script started
	return 1
}

postfix_held() { find "$PFX/queue/hold" -type f | wc -l; }

# ------------------------------------------------------------------ ombud

ombud_start() {	# fresh spool each time
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
	delivery = no
	dns_servers = 127.0.0.1:9
	$OMBUD_CONF_EXTRA

	[listener bench]
	address = 127.0.0.1:$OMB_PORT
	tls = none
	auth = no
	trusted_networks = 127.0.0.0/8
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

ombud_accepted() { grep -c 'event=smtp.accepted' "$OMB/$1/serve.log" || true; }

# ------------------------------------------------------------------ runs

measure_ombud() {	# ROUND: sets RATE; a fresh spool and process
	local n
	ombud_start "round$1"
	run_source "$OMB_PORT"
	ombud_stop
	n=$(ombud_accepted "round$1")
	[ "$n" = "$MESSAGES" ] || die "ombud accepted $n of $MESSAGES"
	rm -rf "$OMB/round$1/spool"
	RATE=$(rate "$MESSAGES" "$ELAPSED")
}

measure_postfix() {	# sets RATE; a fresh queue and instance
	local n
	postfix_start
	run_source "$PFX_PORT"
	for _ in $(seq 50); do	# held files are in place before the 250
		n=$(postfix_held)
		[ "$n" -ge "$MESSAGES" ] && break
		sleep 0.1
	done
	[ "$n" = "$MESSAGES" ] || die "postfix held $n of $MESSAGES"
	postfix_stop || die "cannot stop postfix"
	RATE=$(rate "$MESSAGES" "$ELAPSED")
}

postfix_setup

echo "ombud vs Postfix: accepted messages per second"
echo "  $("$OMBUD" version), Postfix $(postconf -h mail_version)"
echo "  $(nproc) cores, $(uname -sr), work directory on $(df -PT "$WORK" | awk 'NR==2 {print $2}')"
echo "  smtp-source -s $SESSIONS -l $SIZE -m $MESSAGES$([ "$REUSE" = 1 ] && echo ' -d'): $MESSAGES messages of $SIZE bytes, $SESSIONS sessions, $([ "$REUSE" = 1 ] && echo 'one connection per session' || echo 'a new connection per message')"

# warm-up, not timed: Postfix spawns its smtpd/cleanup processes, both
# binaries and libraries get into the page cache
ombud_start warmup
run_source "$OMB_PORT" 1000
ombud_stop
rm -rf "$OMB/warmup"
postfix_start
run_source "$PFX_PORT" 1000
postfix_stop || die "cannot stop postfix"

O=() P=()
for r in $(seq "$ROUNDS"); do
	# alternate which one goes first
	if [ $((r % 2)) = 1 ]; then
		measure_ombud "$r"; o=$RATE
		measure_postfix; p=$RATE
	else
		measure_postfix; p=$RATE
		measure_ombud "$r"; o=$RATE
	fi
	O+=("$o") P+=("$p")
	printf 'round %d: ombud %9.1f msg/s   postfix %9.1f msg/s   ratio %.2f\n' \
	    "$r" "$o" "$p" "$(calc "$o / $p")"
done
mo=$(median "${O[@]}") mp=$(median "${P[@]}")
printf 'median:  ombud %9.1f msg/s   postfix %9.1f msg/s\n' "$mo" "$mp"
printf 'ratio ombud/postfix: %.2f (median of %d rounds)\n' \
    "$(calc "$mo / $mp")" "$ROUNDS"

#!/usr/bin/env bash
# Relay benchmark: smtp-source -> smx -> smtp-sink beside
# smtp-source -> Postfix -> smtp-sink, in the same run, both with durable
# queues (each MTA commits a message to disk before it answers 250).
#
# For each case (4 KiB x 1 recipient, 4 KiB x 10 recipients,
# 100 KiB x 1 recipient) it prints messages/s for
#   - smtp-source straight into smtp-sink (the load tool's ceiling),
#   - Postfix relaying to smtp-sink,
#   - smx relaying to smtp-sink,
# and the ratio smx / Postfix.
#
# A measurement starts when smtp-source starts and ends when smtp-source has
# exited AND the sink has received every recipient of every message, so a
# system that only queues fast is not mistaken for one that relays fast.
#
# Usage: bench/relay.sh            (run as root: Postfix needs its users)
# Environment:
#   SMX         path of the smx binary (default: cargo build --release -p smx
#               in this repository, binary from ${CARGO_TARGET_DIR:-target})
#   BENCH_DIR   parent of the temporary directory holding both queues
#               (default /var/tmp; must be a real disk, not tmpfs)
#   SESSIONS    parallel smtp-source sessions (default 20)
#   ROUNDS      runs of each case, alternating the three paths; the median
#               time of each path is printed (default 3)
#
# Postfix (Debian package postfix) is configured in the temporary directory
# on its own ports: relayhost is the sink, no local delivery, DNS lookups
# off, no TLS, mynetworks 127.0.0.0/8, logging to a file. Its master daemon
# runs in the foreground under this script; nothing in /etc/postfix is
# touched. Every process started here is stopped and the temporary
# directories are removed when the script ends, on error too.

set -eu
set -o pipefail

SESSIONS=${SESSIONS:-20}
ROUNDS=${ROUNDS:-3}  # each case is run this many times; medians are printed
# Cases: payload bytes, recipients per message, messages.
CASES="4096:1:2000 4096:10:1000 102400:1:1000"
WARMUP=200           # untimed messages through each path before measuring
TIMEOUT=300          # seconds allowed for one measurement

SMTP_SOURCE=/usr/sbin/smtp-source
SMTP_SINK=/usr/sbin/smtp-sink
POSTFIX=/usr/sbin/postfix
MASTER=/usr/lib/postfix/sbin/master

die() {
    echo "relay.sh: $*" >&2
    exit 1
}

for tool in "$SMTP_SOURCE" "$SMTP_SINK" "$POSTFIX" "$MASTER"; do
    [ -x "$tool" ] || die "$tool not found (install the Debian package postfix)"
done
[ "$(id -u)" = 0 ] || die "run as root (Postfix runs its daemons as user postfix)"
getent passwd postfix >/dev/null || die "user postfix missing"
getent group postdrop >/dev/null || die "group postdrop missing"

# --- smx binary -------------------------------------------------------------

repo=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${SMX:-}" ]; then
    echo "building smx (cargo build --release -p smx)..."
    (cd "$repo" && cargo build --release -p smx)
    SMX=${CARGO_TARGET_DIR:-$repo/target}/release/smx
    case $SMX in /*) ;; *) SMX=$repo/$SMX ;; esac
fi
[ -x "$SMX" ] || die "smx binary $SMX not found"

# --- temporary directories and cleanup ---------------------------------------

parent=${BENCH_DIR:-/var/tmp}
[ "$(stat -f -c %T "$parent")" != tmpfs ] ||
    die "$parent is tmpfs; set BENCH_DIR to a directory on a real disk"
work=$(mktemp -d "$parent/smx-relay.XXXXXX")
# The sinks' dump files only count what arrived; they are not what is
# measured, so they go to memory when /dev/shm is there.
if [ -d /dev/shm ] && [ "$(stat -f -c %T /dev/shm)" = tmpfs ]; then
    dumps=$(mktemp -d /dev/shm/smx-relay-dumps.XXXXXX)
else
    dumps=$work/dumps
    mkdir "$dumps"
fi
# Postfix's daemons (user postfix) must reach the queue inside $work.
chmod 755 "$work" "$dumps"

# Process ids of everything started in the background. smx and the Postfix
# master run in their own sessions (setsid), so that a child left behind by
# its parent is still found by session id.
session_leaders=""
sink_pids=""

# Live (not zombie) processes in session $1.
session_alive() {
    ps -o stat= --sid "$1" 2>/dev/null | grep -qv '^Z'
}

# Sends signal $2 to session leader $1 and waits up to $3 seconds for its
# session to end; then kills whatever is left in it.
stop_session() {
    local leader=$1 i=0
    kill "-$2" "$leader" 2>/dev/null || true
    while session_alive "$leader" && [ "$i" -lt $(($3 * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if session_alive "$leader"; then
        echo "relay.sh: session $leader did not stop on SIG$2; killing it" >&2
        ps -o pid= --sid "$leader" | xargs -r kill -KILL 2>/dev/null || true
    fi
}

cleanup() {
    local status=$?
    set +e
    # smx stops cleanly on SIGINT (Ctrl-C), Postfix's master on SIGTERM;
    # whatever is left after 15 s is killed.
    for leader in $session_leaders; do
        if [ "$(ps -o comm= -p "$leader")" = master ]; then
            stop_session "$leader" TERM 15
        else
            stop_session "$leader" INT 15
        fi
    done
    for pid in $sink_pids; do
        kill "$pid" 2>/dev/null
    done
    wait 2>/dev/null
    if [ "$status" != 0 ]; then
        for log in "$work/postfix/maillog" "$work/smx/smx.log"; do
            [ -s "$log" ] || continue
            echo "--- last lines of $log" >&2
            tail -n 20 "$log" >&2
        done
    fi
    rm -rf "$work" "$dumps"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ------------------------------------------------------------------

# Prints a free 127.0.0.1 TCP port not handed out before in this run.
used_ports=""
free_port() {
    local port i
    for i in $(seq 1 200); do
        port=$((20000 + RANDOM % 40000))
        case " $used_ports " in *" $port "*) continue ;; esac
        if ! ss -Htln "sport = :$port" | grep -q .; then
            used_ports="$used_ports $port"
            echo "$port"
            return 0
        fi
    done
    die "no free port found"
}

# Waits up to $2 seconds for an SMTP 220 greeting on 127.0.0.1:$1.
wait_greeting() {
    local port=$1 deadline=$((SECONDS + $2)) line
    while [ "$SECONDS" -lt "$deadline" ]; do
        # The braces keep the 2>/dev/null from applying to the whole shell.
        if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
            line=""
            read -r -t 10 line <&3 || true
            printf 'QUIT\r\n' >&3 2>/dev/null || true
            exec 3<&- 3>&-
            case $line in 220*) return 0 ;; esac
        fi
        sleep 0.2
    done
    die "no 220 greeting on port $1 within $2 s"
}

# Starts an smtp-sink on port $1 named $2: it dumps each transaction into
# $dumps/$2/ (to count recipients) and writes its running counters (to count
# completed transactions) to $work/sink-$2.count.
start_sink() {
    local port=$1 name=$2
    mkdir -p "$dumps/$name"
    chmod 777 "$dumps/$name"
    "$SMTP_SINK" -u nobody -c -d "$dumps/$name/%Y%m%d%H%M%S." \
        "127.0.0.1:$port" 1000 >"$work/sink-$name.count" 2>&1 &
    sink_pids="$sink_pids $!"
    wait_greeting "$port" 10
}

# Transactions sink $1 has completed (received the final ".") so far.
sink_completed() {
    local n
    n=$(tail -c 200 "$work/sink-$1.count" | tr '\r' '\n' |
        sed -n 's/.*mesg=\([0-9][0-9]*\).*/\1/p' | tail -n 1)
    echo "${n:-0}"
}

# Transactions started and recipients received in sink $1's dumps.
sink_files() {
    find "$dumps/$1" -type f | wc -l
}
sink_recipients() {
    find "$dumps/$1" -type f -exec head -q -n 24 {} + 2>/dev/null |
        grep -c '^X-Rcpt-Args:' || true
}

# Sends $4 messages of $2 bytes to $3 recipients each into 127.0.0.1:$1 and
# waits until sink $5 has all of them. Prints the elapsed seconds.
run_load() {
    local port=$1 size=$2 rcpts=$3 count=$4 sink=$5
    local before start end deadline want files
    find "$dumps/$sink" -type f -delete
    before=$(sink_completed "$sink")
    want=$((count * rcpts))
    start=$(date +%s.%N)
    "$SMTP_SOURCE" -s "$SESSIONS" -m "$count" -l "$size" -r "$rcpts" \
        -f sender@bench.test -t rcpt@bench.test -M client.bench.test \
        "127.0.0.1:$port" >"$work/source.out" 2>&1 ||
        die "smtp-source into port $port failed: $(cat "$work/source.out")"
    deadline=$((SECONDS + TIMEOUT))
    # Every message is at least one transaction: wait for that many on the
    # cheap counter first, then for every recipient with no transaction
    # still open.
    while [ $(($(sink_completed "$sink") - before)) -lt "$count" ]; do
        [ "$SECONDS" -lt "$deadline" ] ||
            die "sink $sink: $(($(sink_completed "$sink") - before)) of $count messages after $TIMEOUT s"
        sleep 0.05
    done
    while :; do
        files=$(sink_files "$sink")
        if [ "$(sink_recipients "$sink")" -ge "$want" ] &&
            [ $(($(sink_completed "$sink") - before)) -ge "$files" ]; then
            break
        fi
        [ "$SECONDS" -lt "$deadline" ] ||
            die "sink $sink: $(sink_recipients "$sink") of $want recipients after $TIMEOUT s"
        sleep 0.05
    done
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }'
}

# --- sinks --------------------------------------------------------------------

direct_port=$(free_port)
postfix_sink_port=$(free_port)
smx_sink_port=$(free_port)
start_sink "$direct_port" direct
start_sink "$postfix_sink_port" postfix
start_sink "$smx_sink_port" smx

# --- Postfix --------------------------------------------------------------------

postfix_port=$(free_port)
pf=$work/postfix
mkdir -p "$pf/conf" "$pf/queue" "$pf/data"
chown postfix "$pf/data"
cat >"$pf/conf/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.local
mydomain = bench.local
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
# No local delivery: every recipient is relayed to the sink.
mydestination =
local_recipient_maps =
local_transport = error:no local delivery
alias_maps =
alias_database =
relayhost = [127.0.0.1]:$postfix_sink_port
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
# No DNS, no TLS.
smtp_dns_support_level = disabled
smtpd_tls_security_level = none
smtp_tls_security_level = none
maillog_file_prefixes = $pf
maillog_file = $pf/maillog
EOF
# Only the services a relay needs; no chroot (the queue directory has no
# copies of /etc files).
cat >"$pf/conf/master.cf" <<EOF
127.0.0.1:$postfix_port inet n - n - - smtpd
cleanup    unix      n - n -    0 cleanup
qmgr       unix      n - n 300  1 qmgr
rewrite    unix      - - n -    - trivial-rewrite
bounce     unix      - - n -    0 bounce
defer      unix      - - n -    0 bounce
trace      unix      - - n -    0 bounce
verify     unix      - - n -    1 verify
flush      unix      n - n 1000? 0 flush
proxymap   unix      - - n -    - proxymap
proxywrite unix      - - n -    1 proxymap
smtp       unix      - - n -    - smtp
relay      unix      - - n -    - smtp
showq      unix      n - n -    - showq
error      unix      - - n -    - error
retry      unix      - - n -    - error
discard    unix      - - n -    - discard
anvil      unix      - - n -    1 anvil
scache     unix      - - n -    1 scache
postlog    unix-dgram n - n -   1 postlogd
EOF
# "check" creates the queue directories with their owners (postfix,
# postdrop) and reports configuration errors.
"$POSTFIX" -c "$pf/conf" check >"$work/postfix-check.out" 2>&1 ||
    die "postfix check failed: $(cat "$work/postfix-check.out" "$pf/maillog" 2>/dev/null)"
MAIL_CONFIG=$pf/conf setsid "$MASTER" -c "$pf/conf" -d \
    >"$work/master.out" 2>&1 </dev/null &
session_leaders="$session_leaders $!"
wait_greeting "$postfix_port" 20

# --- smx --------------------------------------------------------------------------

smx_port=$(free_port)
mkdir -p "$work/smx"
cat >"$work/smx/smx.conf" <<EOF
queue_directory = "$work/smx/queue";
hostname = "smx.bench.local";
smtps {
    listen_socket { type = inet; address = 127.0.0.1; port = $smx_port; }
    flags = { access };
    max_connections_per_ip = 1000;
}
smar {
    mailertable { entries = { "bench.test $smx_sink_port:esmtp:[127.0.0.1]" }; }
    access_map { entries = { "cltaddr:127.0.0.1 relay" }; }
}
qmgr {
    smtps { max_connection_rate = 1000000; max_connections = 1000; }
    min_disk_space = 1MB;
    ok_disk_space = 2MB;
}
EOF
"$SMX" conf-check -f "$work/smx/smx.conf" >"$work/smx/conf-check.out" 2>&1 ||
    die "smx conf-check failed: $(cat "$work/smx/conf-check.out")"
setsid "$SMX" run -f "$work/smx/smx.conf" >"$work/smx/smx.log" 2>&1 </dev/null &
session_leaders="$session_leaders $!"
wait_greeting "$smx_port" 30

# --- measurements -------------------------------------------------------------------

echo "relay benchmark: smtp-source -s $SESSIONS, smx $SMX, queues in $work"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"

# Warm-up: process start-up and first connections are not measured.
run_load "$direct_port" 4096 1 "$WARMUP" direct >/dev/null
run_load "$postfix_port" 4096 1 "$WARMUP" postfix >/dev/null
run_load "$smx_port" 4096 1 "$WARMUP" smx >/dev/null

rate() {
    awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / t }'
}

# Median of the numbers given as arguments.
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

printf '\n%-18s %8s %14s %10s %10s %12s\n' \
    case messages "source->sink" postfix smx smx/postfix
for spec in $CASES; do
    size=${spec%%:*}
    rest=${spec#*:}
    rcpts=${rest%%:*}
    count=${rest#*:}
    label="$((size / 1024)) KiB x $rcpts rcpt"
    # The three paths take turns, so that a burst of load from elsewhere on
    # the machine does not fall on one of them only.
    t_direct="" t_postfix="" t_smx=""
    for round in $(seq 1 "$ROUNDS"); do
        t_direct="$t_direct $(run_load "$direct_port" "$size" "$rcpts" "$count" direct)"
        t_postfix="$t_postfix $(run_load "$postfix_port" "$size" "$rcpts" "$count" postfix)"
        t_smx="$t_smx $(run_load "$smx_port" "$size" "$rcpts" "$count" smx)"
    done
    # Word splitting of the lists is intended.
    # shellcheck disable=SC2086
    {
        m_direct=$(median $t_direct)
        m_postfix=$(median $t_postfix)
        m_smx=$(median $t_smx)
    }
    printf '%-18s %8s %14s %10s %10s %12s\n' "$label" "$count" \
        "$(rate "$count" "$m_direct")" "$(rate "$count" "$m_postfix")" \
        "$(rate "$count" "$m_smx")" \
        "$(awk -v p="$m_postfix" -v s="$m_smx" 'BEGIN { printf "%.2fx", p / s }')"
done
echo
echo "msgs/s, median of $ROUNDS runs; a run lasts until the sink has every"
echo "recipient. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

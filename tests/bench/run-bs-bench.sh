#!/usr/bin/env bash
# Same beanstalk-protocol load against beanstalkd and leaseqd (its --beanstalk-listen port), in
# one run; prints each result and the leaseqd/beanstalkd ratio. $1 = build folder.
#   tests/bench/run-bs-bench.sh build [JOBS] [CONNS] [DEPTH]
set -eu
build=${1:-build}; jobs=${2:-100000}; conns=${3:-16}; depth=${4:-16}
cd "$(dirname "$0")/../.."
load="$build/bench/bs_load"
tmp=$(mktemp -d /tmp/lq-bs-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
run() { # name cmd...
    local port=$(free_port) name=$1; shift
    "$@" "$port" >"$tmp/$name.log" 2>&1 &
    pids+=($!)
    wait_port "$port"
    local out; out=$("$load" "127.0.0.1:$port" --jobs "$jobs" --conns "$conns" --depth "$depth")
    kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
    echo "$name: $out" >&2
    echo "$out"
}
bs() { beanstalkd -l 127.0.0.1 -p "$1"; }
bs_fsync() { mkdir -p "$tmp/binlog"; beanstalkd -l 127.0.0.1 -p "$1" -b "$tmp/binlog" -f 0; }
lq() { rm -rf "$tmp/lq-$sync"; leaseqd_bin="$build/bin/leaseqd"; "$leaseqd_bin" --listen 127.0.0.1:0 \
        --beanstalk-listen "127.0.0.1:$1" --data-dir "$tmp/lq-$sync" --sync "$sync" --log-level warn; }
field() { sed -n "s/.*$2=\([0-9]*\).*/\1/p" <<<"$1"; }
a=$(run beanstalkd bs)
b=$(run "beanstalkd-binlog-fsync-always" bs_fsync)
sync=full; c=$(run leaseqd-sync-full lq)
sync=none; d=$(run leaseqd-sync-none lq)
ratio() { python3 -c "print('%.2f' % ($1/$2))"; }
echo "leaseqd(full)/beanstalkd(memory): puts $(ratio "$(field "$c" put_per_s)" "$(field "$a" put_per_s)")x takes $(ratio "$(field "$c" take_per_s)" "$(field "$a" take_per_s)")x"
echo "leaseqd(full)/beanstalkd(binlog, fsync always): puts $(ratio "$(field "$c" put_per_s)" "$(field "$b" put_per_s)")x takes $(ratio "$(field "$c" take_per_s)" "$(field "$b" take_per_s)")x"
echo "leaseqd(none)/beanstalkd(memory): puts $(ratio "$(field "$d" put_per_s)" "$(field "$a" put_per_s)")x takes $(ratio "$(field "$d" take_per_s)" "$(field "$a" take_per_s)")x"

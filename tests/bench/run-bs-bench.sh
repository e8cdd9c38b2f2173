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
# Each server runs in the background of this shell (exec: the pid is the daemon's own), so the
# EXIT trap kills whatever is still up.
run() { # name cmd... ; the result line goes to $tmp/$name.out
    local port name=$1; shift
    port=$(free_port)
    "$@" "$port" >"$tmp/$name.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    wait_port "$port"
    "$load" "127.0.0.1:$port" --jobs "$jobs" --conns "$conns" --depth "$depth" >"$tmp/$name.out"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$name: $(cat "$tmp/$name.out")"
}
bs() { exec beanstalkd -l 127.0.0.1 -p "$1"; }
bs_fsync() { mkdir -p "$tmp/binlog"; exec beanstalkd -l 127.0.0.1 -p "$1" -b "$tmp/binlog" -f 0; }
lq() { rm -rf "$tmp/lq-$sync"; exec "$build/bin/leaseqd" --listen 127.0.0.1:0 \
        --beanstalk-listen "127.0.0.1:$1" --data-dir "$tmp/lq-$sync" --sync "$sync" --log-level warn; }
field() { sed -n "s/.*$2=\([0-9]*\).*/\1/p" "$tmp/$1.out"; }
run beanstalkd bs
run beanstalkd-binlog bs_fsync
sync=full; run leaseqd-full lq
sync=none; run leaseqd-none lq
ratio() { python3 -c "print('%.2f' % ($1/$2))"; }
cmp() { # a b label
    echo "$3: puts $(ratio "$(field "$1" put_per_s)" "$(field "$2" put_per_s)")x" \
         "takes $(ratio "$(field "$1" take_per_s)" "$(field "$2" take_per_s)")x"
}
cmp leaseqd-full beanstalkd "leaseqd(full)/beanstalkd(memory)"
cmp leaseqd-full beanstalkd-binlog "leaseqd(full)/beanstalkd(binlog, fsync always)"
cmp leaseqd-none beanstalkd "leaseqd(none)/beanstalkd(memory)"

# shellcheck shell=bash
# Sourced by run-bench.sh and run-commit.sh: one leaseqd on a free loopback port with its data in
# a temporary folder, stopped (SIGTERM, then SIGKILL after 10 s) and the folder deleted on exit.
# The caller, from the repository's root, calls bench_init NAME BUILD first (it sets $NAME for
# messages, $LEASEQD, $LOADGEN and $PROBE from the build folder, checks they are built, and makes
# $tmp); then start_broker [--http] ARGS... sets $pid and $port (and $hport, the /metrics port,
# with --http).

bench_init() {
    NAME=$1
    LEASEQD=$2/bin/leaseqd
    LOADGEN=$2/bench/loadgen
    PROBE=$2/bench/fsync_probe
    for f in "$LEASEQD" "$LOADGEN" "$PROBE"; do
        [ -x "$f" ] || { echo "$NAME: $f is missing (make BUILD=$2 all tests)" >&2; exit 2; }
    done
    tmp=$(mktemp -d "/tmp/leaseq-$NAME-XXXXXX")
    pid=
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_broker() {
    local http=0 listen=()
    if [ "${1:-}" = --http ]; then
        http=1
        shift
    fi
    for _ in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 40000))
        hport=$((port + 1))
        port_in_use "$port" && continue
        listen=(--listen "127.0.0.1:$port")
        if [ $http = 1 ]; then
            port_in_use "$hport" && continue
            listen+=(--http-listen "127.0.0.1:$hport")
        fi
        "$LEASEQD" "${listen[@]}" --data-dir "$tmp/data" "$@" >>"$tmp/leaseqd.log" 2>&1 &
        pid=$!
        for _ in $(seq 200); do
            if port_in_use "$port" && { [ $http = 0 ] || port_in_use "$hport"; }; then return 0; fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=
    done
    echo "$NAME: leaseqd did not start; its log:" >&2
    tail -n 20 "$tmp/leaseqd.log" >&2
    exit 1
}

# jget JSON KEY -> the number (flat JSON as loadgen prints it)
jget() { printf '%s\n' "$1" | awk -v k="\"$2\":" '{ i = index($0, k); if (i) { s = substr($0, i + length(k)); sub(/[,}].*/, "", s); print s } }'; }

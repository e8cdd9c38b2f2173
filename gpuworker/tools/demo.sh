#!/usr/bin/env bash
# make demo: a broker, one GPU worker (CPU backend when there is no GPU), sample images on the
# api and app lanes, results in $BUILD/demo-out, a summary, then everything stops.
#   gpuworker/tools/demo.sh [BUILD] [COUNT]
set -euo pipefail
build=${1:-build}
count=${2:-24}
cd "$(dirname "$0")/../.."
bin=$build/bin
out=$build/demo-out
for f in "$bin/leaseqd" "$bin/leaseqctl" "$bin/leaseq-gpuworker" "$build/gpuworker/mkimages" "$build/gpuworker/demo_producer"; do
    [ -x "$f" ] || { echo "demo: $f is missing (make BUILD=$build all tests)" >&2; exit 1; }
done
tmp=$(mktemp -d /tmp/leaseq-demo-XXXXXX)
broker=; worker=
cleanup() {
    [ -n "$worker" ] && kill -TERM "$worker" 2>/dev/null && wait "$worker" 2>/dev/null || true
    [ -n "$broker" ] && kill -TERM "$broker" 2>/dev/null && wait "$broker" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# A free loopback port: one nobody answers on.
port=
for p in $(shuf -i 20000-60000 -n 50); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "demo: no free port" >&2; exit 1; }
addr=127.0.0.1:$port

"$build/gpuworker/mkimages" "$tmp/in" "$count"
mkdir -p "$tmp/data"
"$bin/leaseqd" --listen "$addr" --data-dir "$tmp/data" --lanes images=api:9,app:1 >"$tmp/leaseqd.log" 2>&1 &
broker=$!
for _ in $(seq 100); do
    "$bin/leaseqctl" --addr "$addr" --timeout 500 stats >/dev/null 2>&1 && break
    kill -0 "$broker" 2>/dev/null || { cat "$tmp/leaseqd.log" >&2; exit 1; }
    sleep 0.1
done
echo "demo: leaseqd on $addr (lanes images=api:9,app:1)"

"$bin/leaseq-gpuworker" --addr "$addr" --queue images --backend auto --stats-ms 2000 --worker-id demo-worker \
    2>"$tmp/worker.log" &
worker=$!

rm -rf "$out" && mkdir -p "$out"
rc=0
"$build/gpuworker/demo_producer" --addr "$addr" --queue images --in "$tmp/in" --out "$out" --concurrency 8 || rc=$?

kill -TERM "$worker" 2>/dev/null; wait "$worker" 2>/dev/null || true; worker=
echo "demo: worker log (backend, stats):"
grep -E 'msg="(started|no usable GPU, using the cpu backend|stats)"' "$tmp/worker.log" | grep -v ' jobs=0 ' | sed 's/^/  /' | tail -n 6
"$bin/leaseqctl" --addr "$addr" stats 2>/dev/null | sed 's/^/  /' || true
exit $rc

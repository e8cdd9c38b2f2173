#!/usr/bin/env bash
# `make test` smoke test of the load generator's native driver and its modes (a few seconds):
# a fresh leaseqd on a free loopback port, then enqueue, lease-ack, open-loop cycle, prio
# (lanes), redeliver (heartbeat 200 ms) and probe, each asserted to have done its work; then
# fsync_probe's write layouts (make bench-commit's disk table) each give a line of percentiles.
# The beanstalk and Redis drivers are exercised by `make bench-peers` (they need the peers).
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/../.."
LEASEQD=$build/bin/leaseqd
LG=$build/bench/loadgen
PROBE=$build/bench/fsync_probe
for f in "$LEASEQD" "$LG" "$PROBE"; do [ -x "$f" ] || { echo "missing $f" >&2; exit 2; }; done
tmp=$(mktemp -d /tmp/leaseq-lgtest-XXXXXX)
pid=
cleanup() {
    [ -z "$pid" ] || { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    rm -rf "$tmp"
}
trap cleanup EXIT
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    port_in_use "$port" && continue
    "$LEASEQD" --listen "127.0.0.1:$port" --data-dir "$tmp/data" --map-size 1G --lanes lgp=api:9,app:1 \
        >"$tmp/log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do port_in_use "$port" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    port_in_use "$port" && kill -0 "$pid" 2>/dev/null && break
    wait "$pid" 2>/dev/null || true
    pid=
done
[ -n "$pid" ] || { echo "leaseqd did not start" >&2; cat "$tmp/log" >&2; exit 1; }
A=(--addr "127.0.0.1:$port" --json)
# make bench-commit traces the committer by its thread name
grep -qx lq-committer /proc/"$pid"/task/*/comm || { echo "FAIL: no lq-committer thread in leaseqd" >&2; exit 1; }
echo "ok: committer thread named lq-committer"
jget() { printf '%s\n' "$1" | tail -n 1 | grep -o "\"$2\":[^,}]*" | cut -d: -f2; }
check() { # check WHAT VALUE MIN
    awk -v v="$2" -v m="$3" 'BEGIN { exit !(v + 0 >= m + 0) }' || { echo "FAIL: $1 = $2 (want >= $3)" >&2; exit 1; }
    echo "ok: $1 = $2"
}
out=$("$LG" "${A[@]}" --mode enqueue --count 2000 --connections 4 --depth 4 --queue q)
check "enqueued" "$(jget "$out" enq_ok)" 2000
out=$("$LG" "${A[@]}" --mode lease-ack --connections 4 --depth 4 --queue q)
check "acked" "$(jget "$out" ack_ok)" 2000
out=$("$LG" "${A[@]}" --mode cycle --rate 2000 --duration 1 --wait-ms 500 --connections 4 --depth 4 --queue c)
check "open-loop enqueues" "$(jget "$out" enq_ok)" 1500
check "queue-wait samples" "$(jget "$out" wait_n)" 1500
# Every 100-byte payload carries its send time too: the wait from the send is measured for each
# job, and it is never longer than the wait from the schedule (the send comes after it).
check "queue-wait-from-the-send samples" "$(jget "$out" waitsent_n)" "$(jget "$out" wait_n)"
awk -v s="$(jget "$out" waitsent_p50_us)" -v w="$(jget "$out" wait_p50_us)" 'BEGIN { exit !(s > 0 && s <= w) }' ||
    { echo "FAIL: queue wait from the send p50 $(jget "$out" waitsent_p50_us) us, from the schedule $(jget "$out" wait_p50_us) us" >&2; exit 1; }
echo "ok: queue wait from the send p50 $(jget "$out" waitsent_p50_us) us <= from the schedule $(jget "$out" wait_p50_us) us"
# The pacer must put a due enqueue on the wire at once: at 20/s a send left in the buffer until
# the loop's next wake is 20 ms late (its longest sleep); normal is well under 1 ms.
out=$("$LG" "${A[@]}" --mode enqueue --rate 20 --duration 1 --connections 1 --depth 1 --queue p)
check "paced enqueues" "$(jget "$out" pace_n)" 15
pace_us=$(jget "$out" pace_p50_us)
awk -v u="$pace_us" 'BEGIN { exit !(u < 10000) }' || { echo "FAIL: pacer lateness p50 $pace_us us (want < 10 ms)" >&2; exit 1; }
echo "ok: pacer lateness p50 $pace_us us"
out=$("$LG" "${A[@]}" --mode enqueue --count 3000 --lanes --class app --batch 100 --connections 2 --depth 2 --queue lgp)
out=$("$LG" "${A[@]}" --mode prio --lanes --rate 100 --work-ms 5 --duration 1 --connections 5 --depth 2 --wait-ms 500 --queue lgp)
check "api jobs seen by workers" "$(jget "$out" waitapi_n)" 80
out=$("$LG" "${A[@]}" --mode enqueue --count 1 --connections 1 --depth 1 --queue r)
out=$("$LG" "${A[@]}" --mode redeliver --count 1 --hb-ms 200 --wait-ms 1000 --duration 20 --queue r)
check "redelivered" "$(jget "$out" redeliver_n)" 1
redeliver_ms=$(awk -v u="$(jget "$out" redeliver_max_us)" 'BEGIN { printf "%d", u / 1000 }')
[ "$redeliver_ms" -lt 5000 ] || { echo "FAIL: redelivery took $redeliver_ms ms" >&2; exit 1; }
echo "ok: redelivery after $redeliver_ms ms"
out=$("$LG" "${A[@]}" --mode probe --queue lgp --duration 10)
echo "ok: probe"
for layout in same contig scattered append log; do
    line=$("$PROBE" --pages 4 --layout "$layout" "$tmp" 5)
    printf '%s\n' "$line" | grep -Eq "^4 x 4 KiB $layout \+ fdatasync in .*: p50 [0-9]+ us, p90 [0-9]+ us, p99 [0-9]+ us, max [0-9]+ us$" ||
        { echo "FAIL: fsync_probe --layout $layout printed: $line" >&2; exit 1; }
done
"$PROBE" --layout sideways "$tmp" 5 2>/dev/null && { echo "FAIL: fsync_probe took an unknown layout" >&2; exit 1; }
echo "ok: fsync_probe layouts"

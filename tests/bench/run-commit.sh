#!/usr/bin/env bash
# `make bench-commit` runs this with the build folder as $1. It shows where a durable commit's
# time goes on this machine, which is what sets leaseq's durable rates (docs/PERFORMANCE.md,
# "Where a commit's time goes"):
#   1. the disk: fsync_probe for K pages of 4 KiB written in place (one extent, or K scattered
#      ones) or appended past the end of the file, then fdatasync;
#   2. the broker: one fresh `leaseqd --sync full` per row, enqueue of 100-byte jobs with C
#      connections x 16 in flight for COMMIT_DURATION seconds (default 3), commits counted on
#      /metrics: jobs per commit and time per commit as the requests in flight grow;
#   3. what a write-ahead log's flush would cost: fsync_probe --layout log (K pages in one
#      sequential write, the size of one group commit's record) on an idle machine, then while
#      a leaseqd serves the 16 x 16 enqueue load, with --sync none (CPUs busy, no flushes of
#      its own) and with --sync full (its commits flushing too);
#   4. one commit's system calls (strace on the committer thread for 1 s, when strace is
#      installed): LMDB writes the pages, fdatasyncs the file, then writes the meta page through
#      a second descriptor opened O_DSYNC.
# Nothing is left running; the data folders are deleted.
set -euo pipefail

build=${1:-build}
cd "$(dirname "$0")/../.."
DURATION=${COMMIT_DURATION:-3}

# shellcheck source=tests/bench/broker-lib.sh
. tests/bench/broker-lib.sh
bench_init run-commit "$build"

stop_broker() {
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
}

# metric NAME -> its value on /metrics (bash's /dev/tcp: no curl needed)
metric() {
    local resp
    exec 4<>"/dev/tcp/127.0.0.1/$hport"
    printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&4
    resp=$(cat <&4)
    exec 4>&-
    printf '%s\n' "$resp" | awk -v m="$1" '$1 == m { print $2 }'
}


echo "# Where a durable commit's time goes"
echo
echo "$(nproc) cores, Linux $(uname -r), $(df -T "$tmp" | awk 'NR == 2 { print $2 }') on $(df "$tmp" | awk 'NR == 2 { print $1 }');" \
     "$(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "## 1. The disk: K pages of 4 KiB, then fdatasync (\`fsync_probe --pages K --layout L DIR 200\`), p50 / p99 µs"
echo
echo "| K pages | same place | one extent | K scattered extents | appended (file grows) |"
echo "| ---: | ---: | ---: | ---: | ---: |"
for k in 1 4 12 25; do
    line="| $k"
    for l in same contig scattered append; do
        out=$("$PROBE" --pages "$k" --layout "$l" "$tmp" 200)
        line+=" | $(printf '%s\n' "$out" | sed -E 's/.*p50 ([0-9]+) us, p90 [0-9]+ us, p99 ([0-9]+) us.*/\1 \/ \2/')"
    done
    echo "$line |"
done

echo
echo "## 2. The broker: enqueue, 100 B jobs, C connections × 16 in flight, ${DURATION} s, a fresh leaseqd --sync full each"
echo
echo "| in flight | jobs/s | jobs per commit | ms per commit (mean) | committer busy |"
echo "| ---: | ---: | ---: | ---: | ---: |"
for c in 4 16 32 64; do
    rm -rf "$tmp/data"
    start_broker --http --sync full --map-size 16G
    s0=$(metric leaseq_commit_duration_seconds_sum); n0=$(metric leaseq_commit_duration_seconds_count)
    json=$("$LOADGEN" --addr "127.0.0.1:$port" --json --mode enqueue --connections "$c" --depth 16 --size 100 \
        --duration "$DURATION" --queue commit | tail -n 1)
    s1=$(metric leaseq_commit_duration_seconds_sum); n1=$(metric leaseq_commit_duration_seconds_count)
    stop_broker
    awk -v f=$((c * 16)) -v r="$(jget "$json" enq_per_s)" -v ok="$(jget "$json" enq_ok)" -v s="$s0" -v S="$s1" \
        -v n="$n0" -v N="$n1" -v d="$DURATION" \
        'BEGIN { c = N - n; printf "| %d | %.0f | %.0f | %.3f | %.0f %% |\n", f, r, ok / c, (S - s) / c * 1000, (S - s) / d * 100 }'
done

echo
echo "## 3. A log append's flush: 9 pages in one sequential write + fdatasync (\`fsync_probe --pages 9 --layout log\`), µs"
echo
echo "36 KiB is one group commit's worth of 100-byte jobs (about 125 jobs with their records)."
echo
echo "| while | p50 | p90 | p99 | enqueue jobs/s meanwhile |"
echo "| --- | ---: | ---: | ---: | ---: |"
probe_log() {
    "$PROBE" --pages 9 --layout log "$tmp" 300 |
        sed -E 's/.*p50 ([0-9]+) us, p90 ([0-9]+) us, p99 ([0-9]+) us.*/\1 | \2 | \3/'
}
echo "| the machine is idle | $(probe_log) | - |"
for mode in none full; do
    rm -rf "$tmp/data"
    start_broker --sync "$mode" --map-size 16G
    "$LOADGEN" --addr "127.0.0.1:$port" --json --mode enqueue --connections 16 --depth 16 --size 100 \
        --duration $((DURATION + 2)) --queue commit >"$tmp/lg.json" &
    lg=$!
    sleep 1
    row=$(probe_log)
    wait "$lg" || true
    stop_broker
    echo "| leaseqd --sync $mode serves 16 × 16 enqueue | $row | $(jget "$(tail -n 1 "$tmp/lg.json")" enq_per_s | cut -d. -f1) |"
done

echo
echo "## 4. One second of the committer thread's system calls (16 × 16 enqueue)"
echo
if ! command -v strace >/dev/null 2>&1; then
    echo "strace is not installed: skipped (apt-get install strace to see it)."
    exit 0
fi
rm -rf "$tmp/data"
start_broker --http --sync full --map-size 16G
"$LOADGEN" --addr "127.0.0.1:$port" --mode enqueue --connections 16 --depth 16 --size 100 \
    --duration $((DURATION + 2)) --queue commit >/dev/null &
lg=$!
sleep 1
tid=
for t in /proc/"$pid"/task/*; do
    [ "$(cat "$t/comm" 2>/dev/null)" = lq-committer ] && tid=${t##*/}
done
[ -n "$tid" ] || { echo "run-commit: no lq-committer thread in leaseqd $pid" >&2; exit 1; }
timeout 1 strace -T -p "$tid" -o "$tmp/strace.txt" 2>/dev/null || true
wait "$lg" || true
stop_broker
# Tracing stops the thread at every call: lseek, which costs well under a microsecond untraced,
# shows that overhead, and the last column takes it off every call's mean.
echo "| call | count | mean µs, traced | less the tracing overhead (lseek's mean) |"
echo "| --- | ---: | ---: | ---: |"
awk '/^[a-z_0-9]+\(/ && /<[0-9.]+>$/ {
        n = $1; sub(/\(.*/, "", n)
        if (n == "pwrite64" && $0 ~ /, 120, [0-9]+\) = 120/) n = "pwrite64 of the meta page (O_DSYNC)"
        else if (n == "write" && $0 ~ /= 8 </) n = "write (eventfd: batch done)"
        if (n == "restart_syscall") next
        t = $NF; gsub(/[<>]/, "", t); s[n] += t; c[n]++ }
     END { o = c["lseek"] ? s["lseek"] / c["lseek"] : 0
           for (k in s) { m = s[k] / c[k]; printf "| %s | %d | %.0f | %.0f |\n", k, c[k], m * 1e6, (m > o ? m - o : 0) * 1e6 } }' \
    "$tmp/strace.txt" | sort -t'|' -k4 -rn
echo
echo "(strace slows the committer several times over, so the counts are not the untraced rate.)"

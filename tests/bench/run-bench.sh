#!/usr/bin/env bash
# `make bench` runs this with the build folder as $1: a fresh leaseqd (sync full, temp data dir,
# free port), then the load generator:
#   enqueue    100-byte jobs, 16 connections x 16 requests in flight, one job per request
#   lease+ack  16 connections x 16 in flight, dequeue max_jobs=1 then ack, on a queue pre-filled
#              with BENCH_PREFILL jobs before each run (the pre-fill itself is reported too:
#              batched enqueue, 256 jobs per request)
#   cycle      8 producer + 8 worker connections on one queue at the same time
# Each is run BENCH_REPEATS times (default 3); the table shows medians (each column separately)
# and every run's rate. Knobs: BENCH_DURATION seconds per run (default 8), BENCH_PREFILL (default
# 1000000), BENCH_THREADS loadgen threads (default 1), BENCH_SYNC (default full).
set -euo pipefail

build=${1:-build}
cd "$(dirname "$0")/../.."
DURATION=${BENCH_DURATION:-8}
REPEATS=${BENCH_REPEATS:-3}
PREFILL=${BENCH_PREFILL:-1000000}
THREADS=${BENCH_THREADS:-1}
SYNC=${BENCH_SYNC:-full}
CONNS=16
DEPTH=16
SIZE=100

# shellcheck source=tests/bench/broker-lib.sh
. tests/bench/broker-lib.sh
bench_init run-bench "$build"

# median of the numbers given as arguments
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# loadgen ARGS... -> prints the human line to stderr, sets $json
run_loadgen() {
    local out
    if ! out=$("$LOADGEN" --addr "127.0.0.1:$port" --threads "$THREADS" --json "$@"); then
        echo "run-bench: loadgen $* failed:" >&2
        printf '%s\n' "$out" >&2
        tail -n 20 "$tmp/leaseqd.log" >&2
        exit 1
    fi
    printf '%s\n' "$out" | head -n 1 | sed 's/^/  /' >&2
    json=$(printf '%s\n' "$out" | tail -n 1)
    total_ops=$((total_ops + $(jget "$json" enq_ok) + $(jget "$json" ack_ok)))
    kill -0 "$pid" 2>/dev/null || { echo "run-bench: leaseqd died" >&2; tail -n 20 "$tmp/leaseqd.log" >&2; exit 1; }
}

# CPU accounting (clock ticks), so the report can say how busy the machine was with other work:
# busy ticks of all CPUs, of leaseqd, and of this script's reaped children (the loadgen runs).
cpu_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
proc_cpu() { sed 's/^.*) //' "/proc/$1/stat" | awk -v f="$2" '{ print $f + $(f + 1) }'; }

declare -A R
total_ops=0
t_begin=$SECONDS
probe_before=$("$PROBE" "$tmp" 300)
start_broker --sync "$SYNC" --map-size 16G
cpu_b0=$(cpu_busy); cpu_d0=$(proc_cpu "$pid" 12); cpu_l0=$(proc_cpu $$ 14); wall0=$(date +%s.%N)
echo "leaseqd pid $pid on 127.0.0.1:$port, sync $SYNC, data in $tmp/data; $REPEATS runs of ${DURATION} s each" >&2

for r in $(seq "$REPEATS"); do
    echo "enqueue run $r:" >&2
    run_loadgen --mode enqueue --connections $CONNS --depth $DEPTH --size $SIZE --duration "$DURATION" --queue bench-enq
    R[enq_rate_$r]=$(jget "$json" enq_per_s); R[enq_p50_$r]=$(jget "$json" enq_p50_us)
    R[enq_p99_$r]=$(jget "$json" enq_p99_us); R[enq_p999_$r]=$(jget "$json" enq_p999_us)
    R[enq_err_$r]=$(jget "$json" errors)
done
for r in $(seq "$REPEATS"); do
    echo "pre-fill $PREFILL jobs, run $r:" >&2
    run_loadgen --mode enqueue --connections 4 --depth 4 --batch 256 --size $SIZE --count "$PREFILL" --queue bench-la
    R[fill_rate_$r]=$(jget "$json" enq_per_s); R[fill_p50_$r]=$(jget "$json" enq_p50_us)
    R[fill_p99_$r]=$(jget "$json" enq_p99_us); R[fill_p999_$r]=$(jget "$json" enq_p999_us)
    R[fill_err_$r]=$(jget "$json" errors)
    echo "lease+ack run $r:" >&2
    run_loadgen --mode lease-ack --connections $CONNS --depth $DEPTH --max-jobs 1 --duration "$DURATION" --queue bench-la
    R[la_rate_$r]=$(jget "$json" la_per_s); R[la_p50_$r]=$(jget "$json" la_p50_us)
    R[la_p99_$r]=$(jget "$json" la_p99_us); R[la_p999_$r]=$(jget "$json" la_p999_us)
    R[la_err_$r]=$(jget "$json" errors)
done
for r in $(seq "$REPEATS"); do
    echo "cycle run $r:" >&2
    run_loadgen --mode cycle --connections $CONNS --depth $DEPTH --size $SIZE --duration "$DURATION" --queue bench-cycle
    R[cyc_rate_$r]=$(jget "$json" enq_per_s); R[cyc_p50_$r]=$(jget "$json" enq_p50_us)
    R[cyc_p99_$r]=$(jget "$json" enq_p99_us); R[cyc_p999_$r]=$(jget "$json" enq_p999_us)
    R[cla_rate_$r]=$(jget "$json" la_per_s); R[cla_p50_$r]=$(jget "$json" la_p50_us)
    R[cla_p99_$r]=$(jget "$json" la_p99_us); R[cla_p999_$r]=$(jget "$json" la_p999_us)
    R[cyc_err_$r]=$(jget "$json" errors); R[cla_err_$r]=0
done
cpu_b1=$(cpu_busy); cpu_d1=$(proc_cpu "$pid" 12); cpu_l1=$(proc_cpu $$ 14); wall1=$(date +%s.%N)
cpu_line=$(awk -v b="$((cpu_b1 - cpu_b0))" -v d="$((cpu_d1 - cpu_d0))" -v l="$((cpu_l1 - cpu_l0))" \
    -v w="$(awk -v a="$wall0" -v z="$wall1" 'BEGIN { print z - a }')" -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" \
    'BEGIN { t = w * hz; o = b - d - l; if (o < 0) o = 0;
             printf "CPU during the runs, in cores: leaseqd %.2f, loadgen %.2f, everything else %.2f (of %d)", d / t, l / t, o / t, n }')
rss_kb=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
hwm_kb=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
data_mb=$(du -sm "$tmp/data" | cut -f1)
probe_after=$("$PROBE" "$tmp" 300)
kill -TERM "$pid"
stop_rc=0
wait "$pid" || stop_rc=$?
pid=

# row KEY LABEL
row() {
    local k=$1 label=$2 rates=() p50=() p99=() p999=() errs=0
    for r in $(seq "$REPEATS"); do
        rates+=("${R[${k}_rate_$r]}"); p50+=("${R[${k}_p50_$r]}"); p99+=("${R[${k}_p99_$r]}")
        p999+=("${R[${k}_p999_$r]}"); errs=$((errs + ${R[${k}_err_$r]%.*}))
    done
    printf '| %s | %.0f | %.0f | %.0f | %.0f | %s | %d |\n' "$label" "$(median "${rates[@]}")" \
        "$(median "${p50[@]}")" "$(median "${p99[@]}")" "$(median "${p999[@]}")" \
        "$(printf '%.0f ' "${rates[@]}" | sed 's/ $//; s/ / \/ /g')" "$errs"
}

echo
echo "leaseq benchmark: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r)"
echo "leaseqd --sync $SYNC, loopback, loadgen with $THREADS thread(s), ${DURATION} s per run, median of $REPEATS runs"
echo "($(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty'), $(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "| workload | jobs/s | p50 µs | p99 µs | p99.9 µs | each run, jobs/s | errors |"
echo "| --- | ---: | ---: | ---: | ---: | --- | ---: |"
row enq "enqueue, ${SIZE} B, $CONNS conn × $DEPTH in flight, 1 job/request"
row la "lease+ack, $CONNS conn × $DEPTH in flight, max_jobs 1 (latency: dequeue sent → ack answered)"
row fill "batched enqueue, ${SIZE} B, 4 conn × 4 in flight, 256 jobs/request (pre-fill of $PREFILL)"
row cyc "cycle: enqueue side (8 producer conn × $DEPTH)"
row cla "cycle: lease+ack side (8 worker conn × $DEPTH)"
echo
# The broker logs its commit count at shutdown: jobs per commit shows how well group commit batches.
commits=$(grep -o 'commits=[0-9]*' "$tmp/leaseqd.log" | tail -n 1 | cut -d= -f2 || true)
echo "leaseqd after the runs: RSS $((rss_kb / 1024)) MiB (peak $((hwm_kb / 1024)) MiB), data dir ${data_mb} MB;" \
     "SIGTERM exit status $stop_rc; $total_ops durable operations (enqueues + acks) in ${commits:-?} commits" \
     "($(awk -v o="$total_ops" -v c="${commits:-0}" 'BEGIN { if (c > 0) printf "%.0f", o / c; else printf "?" }') per commit); total $((SECONDS - t_begin)) s"
echo "$cpu_line"
echo "disk before the runs: ${probe_before#fdatasync of 4 KiB in "$tmp" }"
echo "disk after the runs:  ${probe_after#fdatasync of 4 KiB in "$tmp" }"

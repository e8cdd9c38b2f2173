#!/usr/bin/env bash
# `make bench-peers` runs this with the build folder as $1: leaseq side by side with the brokers a
# team would pick instead, under one load generator (build/bench/loadgen), same payloads, same
# connections and depth. Every broker runs as our own process on 127.0.0.1, a free port and its
# own data folder under one temp folder; nothing depends on system services, and everything
# started here is stopped (trap) and deleted at the end.
#
#   lq            leaseqd --sync full (durable: acknowledged after fsync)
#   lq-early      leaseqd --sync full --dispatch early (leased before the commit, producers still
#                 answered after the fsync); only in the full-cycle and queue-wait scenarios
#   lq-bs         leaseqd's beanstalk port, when leaseqd has --beanstalk-listen
#   bs-mem        beanstalkd without a binlog (in memory)
#   bs-f50        beanstalkd -b DIR -f 50 (binlog, fsync at most every 50 ms)
#   bs-f0         beanstalkd -b DIR -f 0 (binlog, fsync on every write)
#   rl-always / rl-everysec   Redis 7 list queue (LPUSH / BLMOVE / LREM), appendfsync always / everysec
#   rs-always / rs-everysec   Redis 7 stream (XADD / XREADGROUP / XACK), appendfsync always / everysec
#
# Scenarios run in turn; inside each, the systems take turns run by run (A B A B ...), so that
# a noisy minute hits all of them, and the tables show medians and leaseq/peer ratios of the same
# run. Results: $OUT (default BUILD/bench-peers)/results.md, the raw JSON lines, and the latency
# plots docs/perf-*.png. Knobs: BENCH_PEERS_DURATION (s per run, default 2), BENCH_PEERS_REPEATS
# (default 3), BENCH_PEERS_SCENARIOS (default "enq100 enq100k la cycle lat prio redeliver mem conn10k"),
# BENCH_PEERS_SYSTEMS (default: all of the above).
set -euo pipefail

build=${1:-build}
cd "$(dirname "$0")/../.."
root=$PWD
LEASEQD=$root/$build/bin/leaseqd
LOADGEN=$root/$build/bench/loadgen
PROBE=$root/$build/bench/fsync_probe
OUT=${BENCH_PEERS_OUT:-$root/$build/bench-peers}
DUR=${BENCH_PEERS_DURATION:-2}
REPEATS=${BENCH_PEERS_REPEATS:-3}
SCENARIOS=${BENCH_PEERS_SCENARIOS:-enq100 enq100k la cycle lat prio redeliver mem conn10k}
MEM_JOBS=${BENCH_PEERS_MEM_JOBS:-1000000}
for f in "$LEASEQD" "$LOADGEN" "$PROBE"; do
    [ -x "$f" ] || { echo "run-peers: $f is missing (make BUILD=$build all tests)" >&2; exit 2; }
done
for b in beanstalkd redis-server; do
    command -v "$b" >/dev/null || { echo "run-peers: $b is missing (make bench-peers installs it)" >&2; exit 2; }
done
has_bs_port=0
if "$LEASEQD" --help 2>&1 | grep -- --beanstalk-listen >/dev/null; then has_bs_port=1; fi
bs_sys=; [ $has_bs_port = 0 ] || bs_sys=lq-bs
has_early=0
if "$LEASEQD" --help 2>&1 | grep -- --dispatch >/dev/null; then has_early=1; fi
early_sys=; [ $has_early = 0 ] || early_sys=lq-early
ALL_SYSTEMS="lq $early_sys $bs_sys bs-mem bs-f50 bs-f0 rl-always rl-everysec rs-always rs-everysec"
SYSTEMS=${BENCH_PEERS_SYSTEMS:-$ALL_SYSTEMS}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"
: >"$OUT/runs.jsonl"
: >"$OUT/failed.txt"
tmp=$(mktemp -d /tmp/leaseq-peers-XXXXXX)
declare -A PID PORT
cleanup() {
    local k
    for k in "${!PID[@]}"; do stop_proc "$k"; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % 40000))
        port_in_use "$p" || { echo "$p"; return; }
    done
    return 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# The process behind a system: the Redis list and stream systems share one redis-server per
# fsync mode (different keys); lq-bs is leaseqd's second port.
proc_of() {
    case $1 in
    lq | lq-bs) echo lq ;;
    rl-always | rs-always) echo rd-always ;;
    rl-everysec | rs-everysec) echo rd-everysec ;;
    *) echo "$1" ;;
    esac
}
proto_of() {
    case $1 in
    lq | lq-early) echo native ;;
    lq-bs | bs-*) echo beanstalk ;;
    rl-*) echo redis-list ;;
    rs-*) echo redis-stream ;;
    esac
}
addr_of() {
    if [ "$1" = lq-bs ]; then echo "127.0.0.1:${PORT[lq-bs]}"; else echo "127.0.0.1:${PORT[$(proc_of "$1")]}"; fi
}

# start_proc KEY [keep-data]: starts the process KEY on a free port with data in $tmp/KEY. The
# machine is shared: a port found free may be taken before the server binds it, so a server that
# exits at once is tried again on another port.
start_proc() {
    local k=$1 keep=${2:-} d=$tmp/$1 p try
    [ -n "$keep" ] || rm -rf "$d"
    mkdir -p "$d"
    for try in 1 2 3 4 5; do
        if [ -n "$keep" ] && [ -n "${PORT[$k]:-}" ] && [ "$try" = 1 ]; then p=${PORT[$k]}; else p=$(free_port); fi
        PORT[$k]=$p
        case $k in
        lq)
            local extra=()
            if [ $has_bs_port = 1 ]; then
                { [ -n "$keep" ] && [ -n "${PORT[lq-bs]:-}" ] && [ "$try" = 1 ]; } || PORT[lq-bs]=$(free_port)
                # beanstalk priorities below 1000 (the load generator's api class) go to the api lane,
                # the rest to app: the prio scenario's two classes, as in beanstalkd
                extra=(--beanstalk-listen "127.0.0.1:${PORT[lq-bs]}" --beanstalk-max-job-size 200000
                    --beanstalk-lanes 0-999:api,1000-:app)
            fi
            "$LEASEQD" --listen "127.0.0.1:$p" --data-dir "$d/data" --sync full --map-size 32G \
                --max-connections 20000 --lanes bprio=api:9,app:1 "${extra[@]}" >>"$d/log" 2>&1 &
            ;;
        lq-early)
            "$LEASEQD" --listen "127.0.0.1:$p" --data-dir "$d/data" --sync full --dispatch early --map-size 32G \
                --max-connections 20000 --http-listen off >>"$d/log" 2>&1 &
            ;;
        bs-mem) beanstalkd -l 127.0.0.1 -p "$p" -z 200000 >>"$d/log" 2>&1 & ;;
        bs-f50) beanstalkd -l 127.0.0.1 -p "$p" -z 200000 -b "$d" -f 50 >>"$d/log" 2>&1 & ;;
        bs-f0) beanstalkd -l 127.0.0.1 -p "$p" -z 200000 -b "$d" -f 0 >>"$d/log" 2>&1 & ;;
        rd-always | rd-everysec)
            (cd "$d" && exec redis-server --port "$p" --bind 127.0.0.1 --dir "$d" --appendonly yes \
                --appendfsync "${k#rd-}" --save '' --maxclients 20000 --protected-mode no --daemonize no \
                --logfile "$d/log") &
            ;;
        esac
        PID[$k]=$!
        for _ in $(seq 1200); do
            if port_in_use "$p"; then
                sleep 0.05
                kill -0 "${PID[$k]}" 2>/dev/null && return 0 # still alive: it is ours
                break
            fi
            kill -0 "${PID[$k]}" 2>/dev/null || break
            sleep 0.025
        done
        wait "${PID[$k]}" 2>/dev/null || true
        unset "PID[$k]"
    done
    echo "run-peers: $k did not start:" >&2
    tail -n 20 "$d/log" >&2 || true
    exit 1
}

stop_proc() {
    local k=$1 pid=${PID[$1]:-}
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    unset "PID[$k]"
}

start_all() { local s; for s in $(for s in $SYSTEMS; do proc_of "$s"; done | sort -u); do start_proc "$s"; done; }
stop_all() { local k; for k in "${!PID[@]}"; do stop_proc "$k"; done; }
rss_kb() { awk -v f="$2" '$1 == f":" { print $2 }' "/proc/${PID[$1]}/status" 2>/dev/null || echo 0; }

# (no `| head` anywhere: with pipefail, a writer cut off by head's exit fails the script)
jget() { if [[ $1 =~ \"$2\":\"?([^,}\"]*) ]]; then echo "${BASH_REMATCH[1]}"; fi; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A R
STALE=()
RETRIED=() # runs that failed once and were run again
LG_RC=0
# Every queue wait is shorter than the run that measured it, unless the workers were handed jobs
# enqueued before it: a queue shared with an earlier run (lq and lq-bs are one leaseqd, so every
# scenario's queue is named after the system as well as the run). Such a run is reported.
stale_check() { # stale_check SCEN SYS RUN JSON (the waits of jobs enqueued during the run only)
    local n max el
    case $1 in
    cycle | lat) n=$(jget "$4" wait_n); max=$(jget "$4" wait_max_us) ;;
    prio) n=$(jget "$4" waitapi_n); max=$(jget "$4" waitapi_max_us) ;; # the app backlog is pre-filled, the API jobs are not
    *) return 0 ;;
    esac
    el=$(jget "$4" elapsed_s)
    [ -n "$n" ] && [ "$n" != 0 ] && [ -n "$max" ] || return 0
    if awk -v m="$max" -v e="$el" 'BEGIN { exit !(m > (e + 0.25) * 1e6) }'; then
        echo "run-peers: $1 $2 run $3: a queue wait of $max us, longer than the run itself (${el} s)" >&2
        STALE+=("$1 $2 run $3 (queue wait max $max µs in a ${el} s run)")
    fi
}
# lg SCEN SYS RUN ARGS...: one loadgen run against system SYS; its JSON fields land in R[SCEN,SYS,RUN,key].
lg() {
    local scen=$1 sys=$2 run=$3 out rc=0
    shift 3
    out=$("$LOADGEN" --proto "$(proto_of "$sys")" --addr "$(addr_of "$sys")" --json "$@" 2>"$tmp/lg.err") || rc=$?
    # A drain that finds the queue already empty acks nothing, which loadgen reports as a failure.
    if [ "$rc" -ne 0 ] && [ "$scen" = prio-drain ] && [[ $out == *'"errors":0,'* && $out == *'"ack_ok":0,'* ]]; then
        rc=0
    fi
    LG_RC=$rc
    if [ "$rc" -ne 0 ]; then
        echo "run-peers: $scen $sys run $run failed: loadgen $*" >&2
        # A file: runs in the background count too. LG_SOFT=1: the caller decides (a retry).
        [ "${LG_SOFT:-0}" = 1 ] || echo "$scen $sys run $run" >>"$OUT/failed.txt"
        cat "$tmp/lg.err" >&2
        printf '%s\n' "$out" >&2
        R[$scen,$sys,$run,ok]=0
        return 0
    fi
    local human=${out%%$'\n'*} json=${out##*$'\n'}
    printf '  %-12s %s\n' "$sys" "${human#loadgen }" >&2
    printf '{"scenario":"%s","system":"%s","run":%s,%s\n' "$scen" "$sys" "$run" "${json#\{}" >>"$OUT/runs.jsonl"
    R[$scen,$sys,$run,ok]=1
    stale_check "$scen" "$sys" "$run" "$json"
    local key
    for key in enq_per_s la_per_s enq_p50_us enq_p99_us enq_p999_us la_p50_us la_p99_us la_p999_us \
        wait_p50_us wait_p99_us wait_p999_us waitapi_p50_us waitapi_p99_us waitapi_p999_us waitapi_max_us \
        redeliver_max_us errors elapsed_s late_sends pace_p50_us pace_p99_us waitsent_p50_us waitsent_p99_us \
        waitsent_p999_us; do
        R[$scen,$sys,$run,$key]=$(jget "$json" "$key")
    done
}

# med SCEN SYS KEY: the median over the runs that worked ("" if none did)
med() {
    local v=() r
    for r in $(seq "$REPEATS"); do
        [ "${R[$1,$2,$r,ok]:-0}" = 1 ] && v+=("${R[$1,$2,$r,$3]}")
    done
    [ ${#v[@]} -gt 0 ] && median "${v[@]}" || echo ""
}
each() {
    local v=() r
    for r in $(seq "$REPEATS"); do
        [ "${R[$1,$2,$r,ok]:-0}" = 1 ] && v+=("$(printf '%.0f' "${R[$1,$2,$r,$3]}")") || v+=("failed")
    done
    local IFS=/
    echo "${v[*]}" | sed 's|/| / |g'
}
fmt() { [ -n "$1" ] && printf "%'.0f" "$1" || printf -- '-'; }
ratio() { # ratio A B -> A/B with 2 decimals
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f×", a / b }'
}

md() { printf '%s\n' "$*" >>"$OUT/results.md"; }
kept_up() { # kept_up SYS: median over the latency runs of jobs finished / jobs enqueued
    local v=() r
    for r in $(seq "$REPEATS"); do
        [ "${R[lat,$1,$r,ok]:-0}" = 1 ] && v+=("$(awk -v a="${R[lat,$1,$r,la_per_s]}" -v b="${R[lat,$1,$r,enq_per_s]}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')")
    done
    [ ${#v[@]} -gt 0 ] || { echo -; return; }
    awk -v x="$(median "${v[@]}")" 'BEGIN { r = sprintf("%.2f", x); printf "%s%s", r, (r + 0 < 0.98 ? " (fell behind)" : "") }'
}
CMD_PREFIX="$(basename "$LOADGEN") --proto P --addr A"

# table SCEN TITLE KEY_RATE KEY_P50 KEY_P99 KEY_P999 CMD: one markdown table of one scenario.
table() {
    local scen=$1 title=$2 kr=$3 k50=$4 k99=$5 k999=$6 cmd=$7 lqv s
    lqv=$(med "$scen" lq "$kr")
    md ""
    md "### $title"
    md ""
    md "Command (per system): \`loadgen --proto P --addr A $cmd\`"
    md ""
    md "| system | jobs/s (median) | leaseq ÷ this | each run | p50 µs | p99 µs | p99.9 µs |"
    md "| --- | ---: | ---: | --- | ---: | ---: | ---: |"
    for s in $SYSTEMS; do
        md "| $s | $(fmt "$(med "$scen" "$s" "$kr")") | $(ratio "$lqv" "$(med "$scen" "$s" "$kr")") | $(each "$scen" "$s" "$kr") |" \
            "$(fmt "$(med "$scen" "$s" "$k50")") | $(fmt "$(med "$scen" "$s" "$k99")") | $(fmt "$(med "$scen" "$s" "$k999")") |"
    done
}

# A B A B: each run of a scenario goes through all systems before the next run.
rounds() { # rounds SCEN FN: calls FN SYS RUN for every run and system
    local scen=$1 fn=$2 r s
    for r in $(seq "$REPEATS"); do
        echo "$scen, run $r of $REPEATS (+$((SECONDS - t_begin)) s):" >&2
        for s in $SYSTEMS; do "$fn" "$s" "$r"; done
    done
}

# Pre-fill sizes for lease+ack: more than the system drains in one run (the fastest runs so far:
# leaseq 189k/s, Redis everysec 118k/s, beanstalkd -f 0 7.3k/s), so that no run ends dry.
prefill_of() {
    case $1 in
    bs-f0) echo $((10000 * DUR)) ;;
    *) echo $((200000 * DUR)) ;;
    esac
}
fill() { # fill SCEN SYS RUN QUEUE N [CLASS]
    local args=(--mode enqueue --count "$5" --queue "$4" --class "${6:-app}")
    case $(proto_of "$2") in
    native) args+=(--connections 4 --depth 4 --batch 256) ;;
    *) args+=(--connections 16 --depth 64) ;;
    esac
    [ "$4" != bprio ] || args+=(--lanes)
    lg "$1-fill" "$2" "$3" "${args[@]}"
}

# ---- scenarios ------------------------------------------------------------------------------
s_enq100() { lg enq100 "$1" "$2" --mode enqueue --connections 16 --depth 16 --size 100 --duration "$DUR" --queue "e100-$1-$2"; }
s_enq100k() { lg enq100k "$1" "$2" --mode enqueue --connections 16 --depth 4 --size 102400 --duration "$DUR" --queue "e100k-$1-$2"; }
s_la() {
    fill la "$1" "$2" "la-$1-$2" "$(prefill_of "$1")"
    lg la "$1" "$2" --mode lease-ack --connections 16 --depth 16 --duration "$DUR" --queue "la-$1-$2"
}
s_cycle() { lg cycle "$1" "$2" --mode cycle --connections 16 --depth 16 --wait-ms 1000 --duration "$DUR" --queue "cy-$1-$2"; }
s_lat() {
    local peak rate
    # The peak is the rate jobs are finished at in the full cycle (acks), not the producers'
    # rate: where producers outrun workers, half the enqueue rate can be all the workers can do.
    peak=$(med cycle "$1" la_per_s)
    [ -n "$peak" ] || peak=$(med enq100 "$1" enq_per_s)
    [ -n "$peak" ] || peak=20000
    rate=$(awk -v p="$peak" 'BEGIN { printf "%.0f", p / 2 }')
    R[lat,$1,rate]=$rate
    lg lat "$1" "$2" --mode cycle --connections 16 --depth 16 --wait-ms 1000 --rate "$rate" \
        --duration "$DUR" --queue "lat-$1-$2" --hist-out "$OUT/lat-$1-$2.dat"
}
s_prio() {
    fill prio "$1" "$2" bprio 40000 app
    lg prio "$1" "$2" --mode prio --lanes --rate 200 --work-ms 10 --connections 17 --depth 4 --wait-ms 1000 \
        --duration "$DUR" --queue bprio --hist-out "$OUT/prio-$1-$2.dat"
    # What is left of the backlog is drained, so that the next run starts from the same state:
    # until a take finds nothing (bounded by 60 s: beanstalkd -f 0 needs 5-10 s for 40,000 jobs).
    lg prio-drain "$1" "$2" --mode lease-ack --connections 8 --depth 16 --queue bprio --duration 60 >/dev/null
}
s_redeliver() {
    local a=()
    case $1 in
    lq) a=(--hb-ms 200) ;;
    bs-* | lq-bs) a=(--ttr 1) ;;
    rs-*) a=(--lease-ms 1000 --poll-ms 100) ;;
    esac
    # One retry, on a fresh queue, named in results.md: a redelivery run once failed against
    # beanstalkd -f 0 in 39 (the job redelivered on time, the generator stopped with an error).
    local try
    for try in 1 2; do
        lg redeliver-fill "$1" "$2" --mode enqueue --count 1 --connections 1 --depth 1 --queue "rd-$1-$2-$try" "${a[@]}"
        LG_SOFT=$((try == 1)) lg redeliver "$1" "$2" --mode redeliver --count 1 --wait-ms 1000 --duration 30 \
            --queue "rd-$1-$2-$try" "${a[@]}"
        [ "$LG_RC" = 0 ] && break
        [ "$try" = 1 ] && RETRIED+=("redeliver $1 run $2")
    done
}

# ---- run ------------------------------------------------------------------------------------
t_begin=$SECONDS
{
    echo "# leaseq side by side with beanstalkd and Redis"
    echo
    echo "$(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r);"
    echo "leaseq $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty'), $(beanstalkd -v 2>&1 || true), $(redis-server --version | awk '{ print $1, $2, $3 }');"
    echo "$(date -u +%Y-%m-%dT%H:%MZ); $REPEATS runs of ${DUR} s per system and scenario, taken in turns (A B A B); loadgen 1 thread, 100-byte jobs unless said."
    echo "disk before: $("$PROBE" "$tmp" 200 | sed 's/^fdatasync of 4 KiB in [^ ]* //')"
} >"$OUT/results.md"

# Early dispatch changes when a job can be leased, not how fast jobs go in or out of a full queue.
no_early() { printf '%s\n' $SYSTEMS | grep -vx lq-early | tr '\n' ' '; }

for scen in $SCENARIOS; do
    case $scen in
    enq100 | enq100k | la | cycle | lat | prio)
        BASE_SYSTEMS=$SYSTEMS
        [ "$scen" = cycle ] || [ "$scen" = lat ] || SYSTEMS=$(no_early)
        [ "$scen" = prio ] && SYSTEMS=$(printf '%s\n' $SYSTEMS | grep -E '^(lq|lq-bs|bs-f50|bs-f0|rl-always)$' | tr '\n' ' ') &&
            PRIO_SYSTEMS=$SYSTEMS
        start_all
        rounds "$scen" "s_$scen"
        stop_all
        SYSTEMS=$BASE_SYSTEMS
        ;;
    redeliver)
        SAVE_SYSTEMS=$SYSTEMS
        SYSTEMS=$(printf '%s\n' $SYSTEMS | grep -E '^(lq|lq-bs|bs-f0|rs-always)$' | tr '\n' ' ')
        start_all
        rounds redeliver s_redeliver
        stop_all
        REDELIVER_SYSTEMS=$SYSTEMS
        SYSTEMS=$SAVE_SYSTEMS
        ;;
    mem)
        # RAM per queued job and recovery time, one system at a time (1M jobs each).
        for s in $(printf '%s\n' $SYSTEMS | grep -E '^(lq|bs-f50|rl-always|rs-always)$'); do
            k=$(proc_of "$s")
            echo "mem/recovery: $s, $MEM_JOBS jobs" >&2
            start_proc "$k"
            sleep 1
            R[mem,$s,rss0]=$(rss_kb "$k" VmRSS); R[mem,$s,anon0]=$(rss_kb "$k" RssAnon)
            fill mem "$s" 1 "mem" "$MEM_JOBS"
            sleep 1
            R[mem,$s,rss1]=$(rss_kb "$k" VmRSS); R[mem,$s,anon1]=$(rss_kb "$k" RssAnon)
            R[mem,$s,fill]=${R[mem-fill,$s,1,enq_per_s]:-}
            R[mem,$s,disk]=$(du -sm "$tmp/$k" | cut -f1)
            t0=$(now_ms); stop_proc "$k"; R[mem,$s,stop_ms]=$(($(now_ms) - t0))
            t0=$(now_ms)
            start_proc "$k" keep
            lg recover "$s" 1 --mode probe --queue mem --duration 120 || true
            R[mem,$s,recover_ms]=$(($(now_ms) - t0))
            sleep 0.5
            R[mem,$s,rss2]=$(rss_kb "$k" VmRSS); R[mem,$s,anon2]=$(rss_kb "$k" RssAnon)
            stop_proc "$k"
            rm -rf "${tmp:?}/$k"
        done
        ;;
    conn10k)
        SAVE_SYSTEMS=$SYSTEMS
        SYSTEMS=$(printf '%s\n' $SYSTEMS | grep -E '^(lq|lq-bs|bs-f50|bs-mem|rl-always)$' | tr '\n' ' ')
        start_all
        # First what the connections themselves cost: 10,000 open, a paced 500 enqueues/s over
        # all of them (a few thousand jobs stored), RSS read near the end while all are open.
        idle_s=$((DUR + 3))
        for s in $SYSTEMS; do
            k=$(proc_of "$s")
            r0=$(rss_kb "$k" VmRSS)
            lg conn10k-idle "$s" 1 --mode enqueue --connections 10000 --depth 1 --rate 500 --duration "$idle_s" \
                --queue "c10k-idle-$s" >/dev/null &
            lgpid=$!
            sleep "$((idle_s - 1))"
            R[conn10k,$s,idle]=$(($(rss_kb "$k" VmRSS) - r0))
            wait "$lgpid" || true
        done
        for r in $(seq 2); do
            for s in $SYSTEMS; do
                k=$(proc_of "$s")
                r0=$(rss_kb "$k" VmRSS)
                lg conn10k "$s" "$r" --mode enqueue --connections 10000 --depth 1 --duration "$DUR" --queue "c10k-$s-$r" &
                lgpid=$!
                sleep "$(awk -v d="$DUR" 'BEGIN { print d / 2 + 2 }')"
                R[conn10k,$s,$r,rss]=$(($(rss_kb "$k" VmRSS) - r0))
                wait "$lgpid" || true
            done
        done
        stop_all
        CONN_SYSTEMS=$SYSTEMS
        SYSTEMS=$SAVE_SYSTEMS
        ;;
    esac
done
echo "disk after: $("$PROBE" "$tmp" 200 | sed 's/^fdatasync of 4 KiB in [^ ]* //')" >>"$OUT/results.md"
# Runs in a background subshell cannot hand R back: their JSON lines are in runs.jsonl.
if [[ " $SCENARIOS " == *" conn10k "* ]]; then
    while IFS= read -r line; do
        s=$(jget "$line" system); r=$(jget "$line" run)
        R[conn10k,$s,$r,ok]=1
        for key in enq_per_s enq_p50_us enq_p99_us enq_p999_us; do R[conn10k,$s,$r,$key]=$(jget "$line" "$key"); done
    done < <(grep '"scenario":"conn10k"' "$OUT/runs.jsonl" || true)
fi

# ---- tables and plots -----------------------------------------------------------------------
BASE_SYSTEMS=$SYSTEMS
for scen in $SCENARIOS; do
    SYSTEMS=$BASE_SYSTEMS
    [ "$scen" = cycle ] || [ "$scen" = lat ] || SYSTEMS=$(no_early)
    case $scen in
    enq100) table enq100 "Enqueue, 100-byte jobs, 16 connections × 16 in flight" enq_per_s enq_p50_us enq_p99_us enq_p999_us \
        "--mode enqueue --connections 16 --depth 16 --size 100 --duration $DUR" ;;
    enq100k) table enq100k "Enqueue, 100 KiB jobs, 16 connections × 4 in flight" enq_per_s enq_p50_us enq_p99_us enq_p999_us \
        "--mode enqueue --connections 16 --depth 4 --size 102400 --duration $DUR" ;;
    la) table la "Lease + ack, 16 connections × 16 in flight (pre-filled queue; latency: take sent → ack answered)" la_per_s la_p50_us la_p99_us la_p999_us \
        "--mode lease-ack --connections 16 --depth 16 --duration $DUR (after --mode enqueue --count N)" ;;
    cycle)
        # The rate that counts is the jobs finished (acked): producers that outrun their workers
        # only build a backlog, and the queue wait of a closed loop is that backlog's age.
        md ""
        md "### Full cycle: 8 producer + 8 worker connections × 16 in flight (rate: jobs finished)"
        md ""
        md "Command (per system): \`loadgen --proto P --addr A --mode cycle --connections 16 --depth 16 --wait-ms 1000 --duration $DUR\`. Jobs finished: acks (delete, LREM, XACK) per second. Where the producers enqueue faster than the workers finish, the difference piles up: the queue wait of this closed loop is the age of that backlog, and grows with the run's length; the open-loop table below is the latency figure."
        md ""
        md "| system | jobs finished/s (median) | leaseq ÷ this | each run | jobs enqueued/s (median) | backlog age p50 / p99 µs |"
        md "| --- | ---: | ---: | --- | ---: | ---: |"
        lqv=$(med cycle lq la_per_s)
        for s in $SYSTEMS; do
            md "| $s | $(fmt "$(med cycle "$s" la_per_s)") | $(ratio "$lqv" "$(med cycle "$s" la_per_s)") | $(each cycle "$s" la_per_s) |" \
                "$(fmt "$(med cycle "$s" enq_per_s)") | $(fmt "$(med cycle "$s" wait_p50_us)") / $(fmt "$(med cycle "$s" wait_p99_us)") |"
        done
        ;;
    lat)
        md ""
        md "### Queue-wait latency at 50 % of each system's own full-cycle peak (open loop)"
        md ""
        md "Command: \`loadgen --proto P --addr A --mode cycle --connections 16 --depth 16 --wait-ms 1000 --rate R --duration $DUR\`, R = half the median rate at which that system finished jobs in the full-cycle run above. Kept up: jobs finished ÷ jobs enqueued in the run (a system under 0.98 fell behind the rate offered, and its waits grew with the run). Queue wait: enqueue's scheduled send → job received by a worker. Pacer lateness: how late the load generator itself put the enqueues on the wire (scheduled → written), a share of every queue wait. From the send: the same wait counted from the moment the enqueue was put in the connection's output buffer (flushed before the generator waits), i.e. without the generator's own lateness. Plot: docs/perf-queue-wait.png (run 1)."
        md ""
        md "| system | rate offered | kept up | p50 µs | p99 µs | p99.9 µs | leaseq p99 ÷ this p99 | each run p99 µs | pacer lateness p50 / p99 µs | from the send p50 / p99 / p99.9 µs |"
        md "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"
        lqp=$(med lat lq wait_p99_us)
        for s in $SYSTEMS; do
            md "| $s | $(fmt "${R[lat,$s,rate]:-}") | $(kept_up "$s") | $(fmt "$(med lat "$s" wait_p50_us)") | $(fmt "$(med lat "$s" wait_p99_us)") |" \
                "$(fmt "$(med lat "$s" wait_p999_us)") | $(ratio "$lqp" "$(med lat "$s" wait_p99_us)") | $(each lat "$s" wait_p99_us) |" \
                "$(fmt "$(med lat "$s" pace_p50_us)") / $(fmt "$(med lat "$s" pace_p99_us)") |" \
                "$(fmt "$(med lat "$s" waitsent_p50_us)") / $(fmt "$(med lat "$s" waitsent_p99_us)") / $(fmt "$(med lat "$s" waitsent_p999_us)") |"
        done
        ;;
    prio)
        md ""
        md "### Priority isolation: API trickle (200/s) behind an app backlog (40,000 jobs), workers hold each job 10 ms"
        md ""
        md "leaseq: lanes api:9, app:1 (through its beanstalk port, lq-bs: \`--beanstalk-lanes 0-999:api,1000-:app\`); beanstalkd: priority 0 (api) vs 1000 (app); Redis: two lists, workers try LMOVE on the api list, then BLMOVE on the app list. 16 worker connections × 4 in flight (≈ 6,400 jobs/s of capacity). Command: \`loadgen --proto P --addr A --mode prio --lanes --rate 200 --work-ms 10 --connections 17 --depth 4 --wait-ms 1000 --duration $DUR\` after filling the backlog. Plot: docs/perf-prio-api-wait.png."
        md ""
        md "| system | API wait p50 µs | p99 µs | p99.9 µs | max µs | leaseq p99 ÷ this p99 | app jobs/s meanwhile |"
        md "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        lqp=$(med prio lq waitapi_p99_us)
        for s in ${PRIO_SYSTEMS:-}; do
            md "| $s | $(fmt "$(med prio "$s" waitapi_p50_us)") | $(fmt "$(med prio "$s" waitapi_p99_us)") | $(fmt "$(med prio "$s" waitapi_p999_us)") |" \
                "$(fmt "$(med prio "$s" waitapi_max_us)") | $(ratio "$lqp" "$(med prio "$s" waitapi_p99_us)") | $(fmt "$(med prio "$s" la_per_s)") |"
        done
        ;;
    redeliver)
        md ""
        md "### Redelivery after a frozen worker"
        md ""
        md "One worker connection leases a job and goes silent (socket open, nothing sent: a hung process); a second worker waits for it. Delay: from the moment the frozen worker held the job to the moment the other got it. leaseq: worker session with --hb-ms 200 (heartbeat timeout = 3 × 200 ms); beanstalkd: TTR 1 s (its minimum); Redis stream: XAUTOCLAIM min-idle 1000 ms, polled every 100 ms. Command: \`loadgen --proto P --addr A --mode redeliver --count 1 --wait-ms 1000 [--hb-ms 200 | --ttr 1 | --lease-ms 1000 --poll-ms 100]\`."
        md ""
        md "| system | delay ms (median) | each run ms |"
        md "| --- | ---: | --- |"
        for s in ${REDELIVER_SYSTEMS:-}; do
            v=(); for r in $(seq "$REPEATS"); do v+=("$(awk -v x="${R[redeliver,$s,$r,redeliver_max_us]:-0}" 'BEGIN { printf "%.0f", x / 1000 }')"); done
            md "| $s | $(median "${v[@]}") | $(echo "${v[*]}" | sed 's/ / \/ /g') |"
        done
        ;;
    mem)
        md ""
        md "### RAM per queued job and recovery of $MEM_JOBS jobs"
        md ""
        md "Fresh process; $MEM_JOBS 100-byte jobs enqueued (leaseq: batches of 256; others: 16 connections × 64 pipelined); RSS before and after (RssAnon: heap, without leaseq's LMDB file pages, which the kernel may drop); then SIGTERM, restart on the same data, and the time from the restart to the first job leased (\`loadgen --mode probe\`)."
        md ""
        md "| system | fill jobs/s | RSS B/job | RssAnon B/job | data on disk MB | stop ms | restart → first job ms | RSS after restart MiB |"
        md "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        for s in $(printf '%s\n' $SYSTEMS | grep -E '^(lq|bs-f50|rl-always|rs-always)$'); do
            [ -n "${R[mem,$s,rss1]:-}" ] || continue
            md "| $s | $(fmt "${R[mem,$s,fill]}") | $(((R[mem,$s,rss1] - R[mem,$s,rss0]) * 1024 / MEM_JOBS)) |" \
                "$(((R[mem,$s,anon1] - R[mem,$s,anon0]) * 1024 / MEM_JOBS)) | ${R[mem,$s,disk]} | ${R[mem,$s,stop_ms]} |" \
                "${R[mem,$s,recover_ms]} | $((R[mem,$s,rss2] / 1024)) |"
        done
        ;;
    conn10k)
        SAVE_REPEATS=$REPEATS; REPEATS=2; SAVE_SYSTEMS=$SYSTEMS; SYSTEMS=${CONN_SYSTEMS:-}
        table conn10k "10,000 connections, 1 request in flight each (enqueue)" enq_per_s enq_p50_us enq_p99_us enq_p999_us \
            "--mode enqueue --connections 10000 --depth 1 --duration $DUR"
        md ""
        md "Server RSS growth with the 10,000 connections open and nearly idle (500 enqueues/s over all of them; KiB; lq-bs on the process lq used just before): $(for s in $SYSTEMS; do printf '%s %s; ' "$s" "${R[conn10k,$s,idle]:-?}"; done)"
        md ""
        md "Server RSS growth during each run (KiB, run 1 / run 2): the 10,000 connections and the jobs they stored (a few hundred thousand of 100 B; beanstalkd keeps them in memory too), on the same process in both runs, sampled at the same time after the start whatever the connects took; a bound, not the connections' cost alone: $(for s in $SYSTEMS; do printf '%s %s / %s; ' "$s" "${R[conn10k,$s,1,rss]:-?}" "${R[conn10k,$s,2,rss]:-?}"; done)"
        REPEATS=$SAVE_REPEATS; SYSTEMS=$SAVE_SYSTEMS
        ;;
    esac
done
SYSTEMS=$BASE_SYSTEMS

# Latency plots (gnuplot from Debian): latency by percentile, log-log, run 1 of each system.
plot() { # plot PNG TITLE PREFIX SYSTEMS...
    local png=$1 title=$2 prefix=$3 s spec=()
    shift 3
    command -v gnuplot >/dev/null || { echo "run-peers: no gnuplot, no $png" >&2; return 0; }
    for s in "$@"; do
        [ "$(grep -vc '^#' "$OUT/$prefix-$s-1.dat" 2>/dev/null)" -gt 1 ] && spec+=("'$OUT/$prefix-$s-1.dat' using 3:1 with linespoints title '$s'")
    done
    [ ${#spec[@]} -gt 0 ] || return 0
    gnuplot <<EOF
set terminal pngcairo size 900,560 noenhanced
set output '$png'
set title '$title'
set logscale xy
set xlabel 'percentile'
set ylabel 'latency (µs)'
set xtics ('50%%' 2, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000)
set grid
set key left top
plot $(IFS=,; echo "${spec[*]}")
EOF
}
if [[ " $SCENARIOS " == *" lat "* ]]; then
    # shellcheck disable=SC2086
    plot "$root/docs/perf-queue-wait.png" "Queue wait at 50 % of each system own peak (open loop)" lat $SYSTEMS
fi
if [[ " $SCENARIOS " == *" prio "* ]]; then
    # shellcheck disable=SC2086
    plot "$root/docs/perf-prio-api-wait.png" "API job wait behind an app backlog" prio $SYSTEMS
fi
# This run against the targets of issue 8 (docs/PERFORMANCE.md keeps them over all runs).
verdict() { # verdict WHAT VALUE OP LIMIT UNIT: one row; VALUE "" = not measured in this run
    local v
    if [ -z "$2" ]; then md "| $1 | not measured | $3 $4$5 | - |"; return; fi
    v=$(awk -v x="$2" -v op="$3" -v l="$4" 'BEGIN { print ((op == ">=" ? x >= l : x <= l) ? "met" : "**not met**") }')
    md "| $1 | $2$5 | $3 $4$5 | $v |"
}
quot() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print ""; else printf "%.2f", a / b }'; }
per_job() { # per_job SYS AFTER_KEY BEFORE_KEY: bytes per queued job in the mem scenario
    [ -n "${R[mem,$1,$2]:-}" ] && echo $(((R[mem,$1,$2] - R[mem,$1,$3]) * 1024 / MEM_JOBS)) || echo ""
}
md ""
md "### This run against the targets of issue 8"
md ""
md "| target | this run | wanted | |"
md "| --- | ---: | ---: | --- |"
verdict "enqueue, lq ÷ rl-always" "$(quot "$(med enq100 lq enq_per_s)" "$(med enq100 rl-always enq_per_s)")" ">=" 1 "×"
verdict "enqueue, lq ÷ bs-f0" "$(quot "$(med enq100 lq enq_per_s)" "$(med enq100 bs-f0 enq_per_s)")" ">=" 30 "×"
verdict "lease+ack, lq ÷ rl-always" "$(quot "$(med la lq la_per_s)" "$(med la rl-always la_per_s)")" ">=" 2 "×"
verdict "queue wait p99 at 50 % load, lq" "$(quot "$(med lat lq wait_p99_us)" 1000)" "<=" 1 " ms"
verdict "queue wait p99 at 50 % load, lq-early" "$(quot "$(med lat lq-early wait_p99_us)" 1000)" "<=" 1 " ms"
verdict "RAM per queued job, lq (RssAnon)" "$(per_job lq anon1 anon0)" "<=" 150 " B"
verdict "recovery of $MEM_JOBS jobs, lq" "$(quot "${R[mem,lq,recover_ms]:-}" 1000)" "<=" 2 " s"
verdict "this script's run (the build not counted)" "$((SECONDS - t_begin))" "<=" 900 " s"
md ""
md "Whole run: $((SECONDS - t_begin)) s."
if [ ${#STALE[@]} -gt 0 ]; then
    md ""
    md "**Not valid:** these runs' workers were served jobs enqueued before the run (a queue wait longer than the run): ${STALE[*]}."
fi
# A request that failed is not a slow one: every run must have none. The recovery probe is the
# exception, it retries while the server is still loading (Redis answers LOADING).
mapfile -t ERRS < <(grep -v '"scenario":"recover"' "$OUT/runs.jsonl" | grep -E '"errors":[1-9]' |
    sed -E 's/.*"scenario":"([^"]*)","system":"([^"]*)","run":([0-9]+).*"errors":([0-9]+).*/\1 \2 run \3 (\4 errors)/' || true)
if [ ${#ERRS[@]} -gt 0 ]; then
    md ""
    md "**Not valid:** these runs had failed requests: ${ERRS[*]}."
fi
if [ ${#RETRIED[@]} -gt 0 ]; then
    md ""
    md "Run again after a failed first try (the second try's figures are in the tables): $(printf '%s; ' "${RETRIED[@]}")"
fi
mapfile -t FAILED <"$OUT/failed.txt"
if [ ${#FAILED[@]} -gt 0 ]; then
    md ""
    md "**Not valid:** the load generator failed in: ${FAILED[*]} (its output is in the log)."
fi
echo >&2
cat "$OUT/results.md"
# Figures measured on a queue left over from another run are wrong, not slow: fail loudly.
[ ${#STALE[@]} -eq 0 ] || { echo "run-peers: ${#STALE[@]} run(s) measured jobs from before them (see results.md)" >&2; exit 1; }
[ ${#ERRS[@]} -eq 0 ] || { echo "run-peers: ${#ERRS[@]} run(s) had failed requests (see results.md)" >&2; exit 1; }
[ ${#FAILED[@]} -eq 0 ] || { echo "run-peers: the load generator failed in ${#FAILED[@]} run(s) (see results.md)" >&2; exit 1; }

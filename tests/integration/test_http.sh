#!/usr/bin/env bash
# The HTTP listener: promtool accepts a live /metrics; counters move when jobs flow; /healthz
# answers while the broker is loaded to saturation; /readyz flips when storage crosses the high
# watermark (a small map, filled) and back after a purge; other paths and methods get 404/405.
source "$(dirname "$0")/../ops/lib.sh"

PROMTOOL=$(command -v promtool || echo /usr/bin/promtool)
[ -x "$PROMTOOL" ] || { log "promtool not installed (Debian package prometheus; make deps)"; exit 1; }

start_broker || exit 1
C() { "$BIN/leaseqctl" --addr "$ADDR" "$@"; }
metric() { # name{labels} -> value (0 when absent)
    curl -s -m 5 "http://$HTTP/metrics" | awk -v k="$1" '$1 == k { v = $2 } END { print v == "" ? 0 : v }'
}

# ---- promtool on a live page with some traffic in it
C enqueue m --data x >/dev/null
curl -s -m 5 "http://$HTTP/metrics" >"$TMP/metrics.txt"
if "$PROMTOOL" check metrics <"$TMP/metrics.txt" >"$TMP/promtool.out" 2>&1; then
    log "ok: promtool check metrics"
else
    fail "promtool check metrics: $(cat "$TMP/promtool.out")"
fi

# ---- counters move when jobs flow
L='{queue="m",lane="default"}'
e0=$(metric "leaseq_jobs_enqueued_total$L"); l0=$(metric "leaseq_jobs_leased_total$L")
a0=$(metric "leaseq_jobs_acked_total$L"); n0=$(metric 'leaseq_requeues_total{reason="nack"}')
c0=$(metric leaseq_commit_duration_seconds_count); w0=$(metric leaseq_queue_wait_seconds_count)
d0=$(metric leaseq_lease_duration_seconds_count)
for i in 1 2 3; do C enqueue m --data "j$i" >/dev/null; done
while read -r id tok _; do
    if [ "$((id % 2))" -eq 0 ]; then C nack "$id" "$tok" --delay 60000 >/dev/null; else C ack "$id" "$tok"; fi
done < <(C lease m --max 4)
e1=$(metric "leaseq_jobs_enqueued_total$L"); l1=$(metric "leaseq_jobs_leased_total$L")
a1=$(metric "leaseq_jobs_acked_total$L"); n1=$(metric 'leaseq_requeues_total{reason="nack"}')
c1=$(metric leaseq_commit_duration_seconds_count); w1=$(metric leaseq_queue_wait_seconds_count)
d1=$(metric leaseq_lease_duration_seconds_count)
eq "enqueued_total moved" "$((e1 - e0))" 3
eq "leased_total moved" "$((l1 - l0))" 4
eq "acked + nacked = leased" "$((a1 - a0 + n1 - n0))" 4
[ "$((n1 - n0))" -ge 1 ] && log "ok: requeues{nack} moved" || fail "requeues nack did not move"
[ "$c1" -gt "$c0" ] && log "ok: commit histogram moved ($c0 -> $c1)" || fail "commit histogram"
eq "queue wait observations" "$((w1 - w0))" 4
eq "lease duration observations" "$((d1 - d0))" 4
eq "jobs gauge: delayed after the nack" "$(metric 'leaseq_jobs{queue="m",lane="default",state="delayed"}')" "$((n1 - n0))"

# ---- anything else: 404 / 405, bounded requests
eq "404" "$(curl -s -o /dev/null -w '%{http_code}' "http://$HTTP/nope")" 404
eq "405" "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$HTTP/metrics")" 405
big=$(head -c 10000 /dev/zero | tr '\0' a)
eq "oversized request" "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Big: $big" "http://$HTTP/healthz")" 431

# ---- /healthz while the broker is saturated
LOADGEN=$BIN/../bench/loadgen
if [ -x "$LOADGEN" ]; then
    "$LOADGEN" --addr "$ADDR" --mode cycle --connections 16 --depth 16 --batch 16 --size 16 --duration 4 --queue load \
        >"$TMP/loadgen.out" 2>&1 &
    lpid=$!
    sleep 1
    worst=0; bad=0; n=0
    while kill -0 "$lpid" 2>/dev/null && [ $n -lt 40 ]; do
        t=$(curl -s -o /dev/null -m 2 -w '%{http_code} %{time_total}' "http://$HTTP/healthz")
        [ "${t%% *}" == 200 ] || bad=$((bad + 1))
        ms=$(awk -v s="${t#* }" 'BEGIN { printf "%d", s * 1000 }')
        [ "$ms" -gt "$worst" ] && worst=$ms
        n=$((n + 1)); sleep 0.1
    done
    wait "$lpid"
    log "load: $(head -1 "$TMP/loadgen.out")"
    log "healthz under load: $n probes, $bad failed, slowest ${worst} ms"
    [ $n -ge 10 ] && [ $bad -eq 0 ] && log "ok: /healthz answers under saturation" || fail "/healthz under load: $bad of $n failed"
else
    fail "loadgen not built at $LOADGEN (make tests)"
fi
stop_broker

# ---- /readyz flips at the high watermark (small map) and back after a purge
rm -rf "$TMP/data"
start_broker --map-size 4M --sync none || exit 1
eq "readyz before" "$(curl -s -o /dev/null -w '%{http_code}' "http://$HTTP/readyz")" 200
head -c 65536 /dev/urandom >"$TMP/blob"
flipped=0
for i in $(seq 200); do
    out=$(C enqueue fill --file "$TMP/blob" 2>&1) || true
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://$HTTP/readyz")
    if [ "$code" == 503 ]; then flipped=1; break; fi
    [[ $out == *STORAGE_FULL* ]] && break
done
log "readyz after $i enqueues of 64 KiB: $code (fill ratio $(metric leaseq_storage_fill_ratio))"
eq "readyz flipped to 503" "$flipped" 1
eq "storage_high gauge" "$(metric leaseq_storage_high)" 1
eq "healthz still 200" "$(curl -s -o /dev/null -w '%{http_code}' "http://$HTTP/healthz")" 200
C purge fill >/dev/null || fail "purge fill"
for _ in $(seq 50); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$HTTP/readyz")" == 200 ] && break; sleep 0.1
done
eq "readyz back to 200 after the purge" "$(curl -s -o /dev/null -w '%{http_code}' "http://$HTTP/readyz")" 200
for _ in $(seq 40); do grep -q 'storage below the high watermark again' "$TMP/leaseqd.log" && break; sleep 0.1; done
grep -q 'msg="storage above the high watermark: not ready"' "$TMP/leaseqd.log" && log "ok: crossing logged" || fail "no log of the crossing"
grep -q 'msg="storage below the high watermark again: ready"' "$TMP/leaseqd.log" && log "ok: recovery logged" || fail "no log of the way back"

finish

#!/usr/bin/env bash
# Access control: a producer token cannot lease or purge, a worker token cannot enqueue or purge,
# a wrong (or missing) token cannot do anything; every refusal is PERMISSION_DENIED or
# UNAUTHENTICATED and is logged. Without --auth a non-loopback --listen is refused.
source "$(dirname "$0")/../ops/lib.sh"

cat >"$TMP/tokens" <<'TOK'
# token              role
prod-secret-1        producer
work-secret-2        worker
admin-secret-3       admin
TOK
start_broker --auth "$TMP/tokens" --sync none || exit 1
as() { local tok=$1; shift; "$BIN/leaseqctl" --addr "$ADDR" --token "$tok" "$@"; }
refused() { # description code command...
    local what=$1 code=$2; shift 2
    local out rc
    out=$("$@" 2>&1); rc=$?
    if [ $rc -ne 0 ] && [[ $out == *"$code"* ]]; then log "ok: $what refused ($code)"; else fail "$what: rc=$rc $out"; fi
}

# producer
id=$(as prod-secret-1 enqueue q --data p1) && log "ok: producer enqueues ($id)" || fail "producer enqueue"
refused "producer lease" PERMISSION_DENIED as prod-secret-1 lease q
refused "producer purge" PERMISSION_DENIED as prod-secret-1 purge q
refused "producer stats" PERMISSION_DENIED as prod-secret-1 stats
check "producer ping" as prod-secret-1 ping

# worker
read -r lid tok _ < <(as work-secret-2 lease q)
eq "worker leases" "$lid" "$id"
check "worker acks" as work-secret-2 ack "$lid" "$tok"
refused "worker enqueue" PERMISSION_DENIED as work-secret-2 enqueue q --data w
refused "worker purge" PERMISSION_DENIED as work-secret-2 purge q
refused "worker dlq purge" PERMISSION_DENIED as work-secret-2 dlq purge q

# wrong and missing tokens
for t in wrong-token prod-secret-11 ""; do
    refused "token '$t' ping" UNAUTHENTICATED as "$t" ping
    refused "token '$t' enqueue" UNAUTHENTICATED as "$t" enqueue q --data x
    refused "token '$t' lease" UNAUTHENTICATED as "$t" lease q
    refused "token '$t' purge" UNAUTHENTICATED as "$t" purge q
done

# admin does everything
as admin-secret-3 enqueue q --data a >/dev/null && log "ok: admin enqueues" || fail "admin enqueue"
eq "admin purges" "$(as admin-secret-3 purge q)" 1
check "admin stats" as admin-secret-3 stats

grep -q 'msg="permission denied"' "$TMP/leaseqd.log" && log "ok: denial logged" || fail "denial not logged"
grep -q 'msg="authentication failed: unknown token"' "$TMP/leaseqd.log" && log "ok: auth failure logged" || fail "auth failure not logged"
grep -q 'secret' "$TMP/leaseqd.log" && fail "a token appears in the log" || log "ok: no token in the log"
af=$(curl -s "http://$HTTP/metrics" | awk '$1 == "leaseq_auth_failures_total" { print $2 }')
pd=$(curl -s "http://$HTTP/metrics" | awk '$1 == "leaseq_permission_denied_total" { print $2 }')
[ "${af:-0}" -ge 12 ] && [ "${pd:-0}" -ge 6 ] && log "ok: metrics count refusals ($af, $pd)" || fail "metrics: $af $pd"
stop_broker

# no tokens file: a non-loopback address is refused (before anything is bound)
"$BIN/leaseqd" --listen 0.0.0.0:0 --http-listen off --data-dir "$TMP/data2" >"$TMP/insecure.log" 2>&1
rc=$?
eq "non-loopback without --auth exits 2" "$rc" 2
grep -q 'refusing to listen on a non-loopback address' "$TMP/insecure.log" && log "ok: refusal logged" || fail "no refusal log"
"$BIN/leaseqd" --listen 127.0.0.1:0 --http-listen off --auth "$TMP/missing" --data-dir "$TMP/data2" >"$TMP/missing.log" 2>&1
eq "missing tokens file exits 2" "$?" 2

finish

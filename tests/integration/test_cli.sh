#!/usr/bin/env bash
# Every leaseqctl command against a real leaseqd, checking its effect (counts before and after),
# in table form and with --json (parsed with jq).
source "$(dirname "$0")/../ops/lib.sh"

start_broker --sync none || exit 1
C() { "$BIN/leaseqctl" --addr "$ADDR" "$@"; }
J() { "$BIN/leaseqctl" --addr "$ADDR" --json "$@"; }
ready() { J stats "$1" | jq -r --arg l "$2" '.queues[0].lanes[] | select(.name == $l) | .ready'; }
field() { J stats "$1" | jq -r --arg l "$2" --arg f "$3" '.queues[0].lanes[] | select(.name == $l) | .[$f]'; }

# --help on every command
for cmd in enqueue lease ack nack extend wait ping stats workers clear-suspect queues pause resume drain purge \
    dlq peek cancel config; do
    out=$(C "$cmd" --help 2>&1) && [[ $out == usage:* ]] || fail "$cmd --help"
done
log "ok: --help on every command"

check "ping" C ping
eq "ping --json" "$(J ping | jq -r .ok)" true

# enqueue / stats / queues
for i in 1 2 3 4 5; do C enqueue q1 --data "job$i" >/dev/null || fail "enqueue $i"; done
for i in 1 2 3; do C enqueue q1 --lane api --data "api$i" >/dev/null || fail "enqueue api $i"; done
eq "stats ready default" "$(ready q1 default)" 5
eq "stats ready api" "$(ready q1 api)" 3
eq "stats enqueued_total" "$(field q1 default enqueued_total)" 5
C stats q1 | grep -qE '^q1 +api +1 +3 ' && log "ok: stats table" || fail "stats table: $(C stats q1)"
C queues | grep -qE '^q1 +active +2 +8 ' && log "ok: queues table" || fail "queues table: $(C queues)"
eq "queues --json ready" "$(J queues | jq -r '.queues[] | select(.name=="q1") | .ready')" 8

# pause / resume
eq "pause --json lanes" "$(J pause q1 | jq -r .lanes)" 2
eq "lease while paused gets nothing" "$(C lease q1 | wc -l)" 0
C queues | grep -qE '^q1 +paused ' && log "ok: queues shows paused" || fail "queues paused: $(C queues)"
eq "stats paused" "$(field q1 api paused)" true
eq "resume one lane" "$(C resume q1 --lane api)" "resumed 1 lane"
eq "lease after resuming api comes from api" "$(C lease q1 | cut -f3)" api
C resume q1 >/dev/null || fail "resume q1"
eq "stats not paused" "$(field q1 default paused)" false
eq "stats leased" "$(field q1 api leased)" 1

# drain
C enqueue q2 --data a >/dev/null && C enqueue q2 --data b >/dev/null || fail "enqueue q2"
eq "drain --json remaining" "$(J drain q2 | jq -r .remaining)" 2
err=$(C enqueue q2 --data c 2>&1); rc=$?
[ $rc -eq 1 ] && [[ $err == *DRAINING* ]] && log "ok: enqueue while draining refused" || fail "enqueue while draining: rc=$rc $err"
eq "queues shows draining" "$(J queues | jq -r '.queues[] | select(.name=="q2") | .state')" draining
while read -r id tok _; do C ack "$id" "$tok" || fail "ack $id"; done < <(C lease q2 --max 2)
out=$(C drain q2 --wait --timeout 10000) && [[ $out == *"drained q2"* ]] && log "ok: drain --wait" || fail "drain --wait: $out"
for _ in $(seq 50); do grep -q 'msg="drain done: queue is empty" queue="q2"' "$TMP/leaseqd.log" && break; sleep 0.05; done
grep -q 'msg="drain done: queue is empty" queue="q2"' "$TMP/leaseqd.log" && log "ok: drain done logged" || fail "drain done log"
out=$(C resume q2 2>&1 && C enqueue q2 --data d 2>&1) && log "ok: resume ends the drain" || fail "resume ends drain: $out"

# purge (a waiter learns purged); --older-than spares young jobs
id=$(C enqueue q1 --data waited)
C wait "$id" --timeout 10000 >"$TMP/wait.out" 2>&1 &
wpid=$!
sleep 0.3
eq "purge --older-than 1h purges nothing" "$(C purge q1 --older-than 1h)" 0
before=$(ready q1 default)
eq "purge default lane prints the count" "$(C purge q1 --lane default)" "$before"
eq "ready after purge" "$(ready q1 default)" 0
eq "api untouched by a lane purge" "$(ready q1 api)" 2
wait $wpid
eq "waiter learns purged" "$(cut -f1 "$TMP/wait.out")" purged
eq "purge --json" "$(J purge q1 | jq -r .purged)" 2
eq "purged_total" "$(field q1 default purged_total)" "$before"

# dead letters: list, peek, redrive, purge
C enqueue q3 --max-attempts 1 --data d1 >/dev/null && C enqueue q3 --max-attempts 1 --data d2 >/dev/null
while read -r id tok _; do C nack "$id" "$tok" --error "boom $id" >/dev/null; done < <(C lease q3 --max 2)
eq "dead after the delivery limit" "$(field q3 default dead)" 2
eq "dlq list total" "$(C dlq list q3 | tail -1)" "total 2"
eq "dlq list --json" "$(J dlq list q3 | jq -r '.jobs | length')" 2
C dlq peek q3 | grep -q '^last_error: boom' && log "ok: dlq peek shows errors" || fail "dlq peek: $(C dlq peek q3)"
first=$(J dlq list q3 | jq -r '.jobs[0].id')
eq "dlq redrive one" "$(C dlq redrive q3 "$first")" 1
eq "redriven job is ready" "$(ready q3 default)" 1
eq "redriven attempts reset" "$(J peek "$first" | jq -r .attempts)" 0
eq "dlq redrive all --json" "$(J dlq redrive q3 | jq -r .redriven)" 1
eq "dead after redrive" "$(field q3 default dead)" 0
while read -r id tok _; do C nack "$id" "$tok" --dead --error again >/dev/null; done < <(C lease q3 --max 2)
eq "dlq purge" "$(C dlq purge q3)" 2
eq "dead after dlq purge" "$(field q3 default dead)" 0

# peek and cancel
id=$(C enqueue q4 --data hello --header k=v --priority 3)
eq "peek state" "$(J peek "$id" | jq -r .state)" ready
eq "peek payload size" "$(J peek "$id" | jq -r .payload_size)" 5
eq "peek header" "$(J peek "$id" | jq -r .headers.k)" v
C peek "$id" | grep -q '^queue: q4$' && log "ok: peek table" || fail "peek table"
eq "peek --payload -" "$(C peek "$id" --payload - 2>/dev/null)" hello
check "cancel" C cancel "$id"
eq "cancelled job's result" "$(J peek "$id" | jq -r '.state + " " + (.finished|tostring)')" "cancelled true"
eq "cancelled_total" "$(field q4 default cancelled_total)" 1
id=$(C enqueue q4 --data x); C lease q4 >/dev/null
err=$(C cancel "$id" 2>&1); rc=$?
[ $rc -eq 1 ] && [[ $err == *INVALID_ARGUMENT* ]] && log "ok: cancel of a leased job refused" || fail "cancel leased: $rc $err"
eq "cancel --json" "$(J cancel 999999 2>&1 | grep -c NOT_FOUND)" 1

# expired
C enqueue q5 --deadline 1 --data late >/dev/null; sleep 0.05
eq "lease skips the expired job" "$(C lease q5 | wc -l)" 0
eq "expired_total" "$(field q5 default expired_total)" 1

# config: applied at once, persisted across a restart
check "config set lane" C config set q1 --lane api weight=7 sheddable=true max_queued=100
check "config set queue" C config set q1 max_attempts=4 lease_ms=60000
eq "config get --json weight" "$(J config get q1 | jq -r .lanes.api.weight)" 7
C config get q1 | grep -qP '^lane:api\tsheddable\ttrue$' && log "ok: config get table" || fail "config get: $(C config get q1)"
eq "stats shows the weight" "$(field q1 api weight)" 7
id=$(C enqueue q1 --lane api --data m)
eq "queue max_attempts applies to new jobs" "$(J peek "$id" | jq -r .max_attempts)" 4
err=$(C config set q1 bogus=1 2>&1); [[ $err == *INVALID_ARGUMENT* ]] && log "ok: unknown key refused" || fail "bogus key: $err"
# retention per queue: q6 keeps results 300 ms, q7 the broker's default (10 min)
check "config set retention" C config set q6 retention_ms=300
for q in q6 q7; do
    id=$(C enqueue $q --data r)
    read -r lid tok _ < <(C lease $q)
    C ack "$lid" "$tok" >/dev/null
    eq "wait $q right after the ack" "$(C wait "$id" --timeout 1000 | cut -f1)" done
    eval "rid_$q=$id"
done
sleep 0.5
err=$(C wait "$rid_q6" --timeout 100 2>&1); [[ $err == *NOT_FOUND* ]] && log "ok: q6 result gone after its retention" || fail "q6 wait: $err"
eq "q7 result kept (broker default)" "$(C wait "$rid_q7" --timeout 100 | cut -f1)" done
C pause q1 --lane default >/dev/null
stop_broker
start_broker --sync none || exit 1
eq "weight after restart" "$(J config get q1 | jq -r .lanes.api.weight)" 7
eq "max_queued after restart" "$(J config get q1 | jq -r .lanes.api.max_queued)" 100
eq "queue max_attempts after restart" "$(J config get q1 | jq -r .queue.max_attempts)" 4
eq "retention after restart" "$(J config get q6 | jq -r .queue.retention_ms)" 300
eq "pause after restart" "$(field q1 default paused)" true

# workers, clear-suspect
C workers | head -1 | grep -q '^SESSION' && log "ok: workers table" || fail "workers"
eq "workers --json" "$(J workers | jq -r 'type')" array
err=$(C clear-suspect nobody 2>&1); [[ $err == *NOT_FOUND* ]] && log "ok: clear-suspect unknown" || fail "clear-suspect: $err"

finish

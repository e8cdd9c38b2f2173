# Shared helpers of the operations shell tests (tests/integration/test_*.sh source this file).
# shellcheck shell=bash

set -u
BIN=${LEASEQ_BIN:-$PWD/build/bin}
TMP=$(mktemp -d /tmp/leaseq-ops-test.XXXXXX)
BROKER_PID=
FAILS=0

cleanup() {
    [ -n "$BROKER_PID" ] && kill -9 "$BROKER_PID" 2>/dev/null
    [ -n "$BROKER_PID" ] && wait "$BROKER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

log() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*"; }
fail() { log "FAIL: $*"; FAILS=$((FAILS + 1)); }
check() { # description, then a command that must succeed
    local what=$1; shift
    if "$@"; then log "ok: $what"; else fail "$what"; fi
}
eq() { # description actual expected
    if [ "$2" == "$3" ]; then log "ok: $1 ($2)"; else fail "$1: got '$2', want '$3'"; fi
}

# A port nobody listens on right now (a guess; the broker's start retries on failure).
free_port() {
    local p
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
    echo 0
}

# start_broker EXTRA_FLAGS...: sets ADDR, HTTP, BROKER_PID; data in $TMP/data.
start_broker() {
    for _ in 1 2 3; do
        PORT=$(free_port); HPORT=$(free_port)
        ADDR=127.0.0.1:$PORT; HTTP=127.0.0.1:$HPORT
        mkdir -p "$TMP/data"
        "$BIN/leaseqd" --listen "$ADDR" --http-listen "$HTTP" --data-dir "$TMP/data" "$@" >>"$TMP/leaseqd.log" 2>&1 &
        BROKER_PID=$!
        for _ in $(seq 100); do
            if curl -sf -m 1 "http://$HTTP/healthz" >/dev/null 2>&1; then return 0; fi
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.05
        done
        kill -9 "$BROKER_PID" 2>/dev/null; wait "$BROKER_PID" 2>/dev/null; BROKER_PID=
    done
    log "broker did not start"; tail -20 "$TMP/leaseqd.log"; return 1
}

# SIGTERM; a clean stop exits 0 (under ASan a leak or a UB report would make it fail).
stop_broker() {
    [ -n "$BROKER_PID" ] || return 0
    kill -TERM "$BROKER_PID"
    for _ in $(seq 200); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$BROKER_PID" 2>/dev/null
    wait "$BROKER_PID" 2>/dev/null
    local rc=$?
    BROKER_PID=
    [ $rc -eq 0 ] || fail "leaseqd exited with status $rc after SIGTERM"
}

finish() {
    stop_broker
    if [ "$FAILS" -ne 0 ]; then
        log "$FAILS check(s) failed; broker log tail:"; tail -30 "$TMP/leaseqd.log"
        exit 1
    fi
    log "all checks passed"
    exit 0
}

#!/usr/bin/env bash
# Runs every test program of one build (build/ or build-asan/) and prints one summary line:
#   "tests: N passed, N failed"
# Each program runs under a time limit; a program that exceeds it counts as failed.
# Integration tests find the daemon and CLI through LEASEQ_BIN (the build's bin/ folder).
set -u
build=${1:-build}
cd "$(dirname "$0")/.." || exit 2
export LEASEQ_BIN="$PWD/$build/bin"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0; failed=0; failures=()

run() { # name limit_s cmd...
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    if timeout -k 5 "$limit" "$@" >"/tmp/leaseq-test-$$.log" 2>&1; then
        passed=$((passed + 1)); echo "PASS $name ($((SECONDS - t0)) s)"
    else
        local rc=$?
        failed=$((failed + 1)); failures+=("$name"); echo "FAIL $name (exit $rc, $((SECONDS - t0)) s)"
        tail -n 60 "/tmp/leaseq-test-$$.log" | sed 's/^/    | /'
    fi
    rm -f "/tmp/leaseq-test-$$.log"
}

for t in "$build"/tests/unit/test_*; do
    [ -x "$t" ] && run "unit/$(basename "$t")" 120 "$t"
done
if [ -x "$build/tests/sim/sim" ]; then
    # Fixed seeds keep CI reproducible; a fresh seed each run widens the search over time.
    run "sim (seed 1)" 240 "$build/tests/sim/sim" --seed 1 --ops 100000
    # --dispatch early with a small map: leases of jobs whose commit then fails get revoked
    run "sim (seed 36, early dispatch)" 240 "$build/tests/sim/sim" --seed 36 --ops 100000 --dispatch early
    run "sim (seed $$)" 240 "$build/tests/sim/sim" --seed $$ --ops 100000
fi
for t in "$build"/tests/integration/*; do
    [ -x "$t" ] && run "integration/$(basename "$t")" 300 "$t"
done
for t in tests/integration/*.sh; do
    [ -f "$t" ] && run "integration/$(basename "$t")" 300 bash "$t"
done
# Components with their own test drivers (fuzz short runs, differential tests) put a script
# tests/<component>/run-in-make-test.sh that takes the build folder.
for t in tests/*/run-in-make-test.sh; do
    [ -f "$t" ] && run "$(basename "$(dirname "$t")")/run-in-make-test.sh" 300 bash "$t" "$build"
done

echo "tests ($build): $passed passed, $failed failed"
[ "$failed" -eq 0 ] || { printf '  failed: %s\n' "${failures[@]}"; exit 1; }

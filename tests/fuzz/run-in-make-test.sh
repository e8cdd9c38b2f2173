#!/usr/bin/env bash
# Short fuzz run inside `make test`: each libFuzzer target for FUZZ_SHORT_SECONDS (default: 60 s
# shared among the targets, at least 15 s each), starting from its committed corpus; new inputs
# go to a temp dir. The targets are built in the normal pass only (they carry their own ASan and
# UBSan), so the ASan pass skips. A crash, leak or sanitizer report fails the run.
set -u
build=${1:-build}
cd "$(dirname "$0")/../.." || exit 2
shopt -s nullglob
targets=("$build"/fuzz/fuzz_*)
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz: no targets in $build/fuzz (built in the normal pass, with clang); skipped"
    exit 0
fi
total=${FUZZ_SHORT_SECONDS:-60}
per=$(( total / ${#targets[@]} ))
[ "$per" -lt 15 ] && per=15
tmp=$(mktemp -d /tmp/leaseq-fuzz-run-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
rc=0
for t in "${targets[@]}"; do
    name=$(basename "$t"); name=${name#fuzz_}
    mkdir -p "$tmp/$name" "$tmp/artifacts"
    corpus=tests/fuzz/corpus/$name
    [ -d "$corpus" ] || corpus=
    if "$t" -max_total_time="$per" -print_final_stats=1 -artifact_prefix="$tmp/artifacts/$name-" \
        "$tmp/$name" $corpus >"$tmp/$name.log" 2>&1; then
        echo "fuzz: $name ok ($per s): $(grep -E '^stat::number_of_executed_units' "$tmp/$name.log" | awk '{print $2}') runs"
    else
        echo "fuzz: $name FAILED"; tail -n 60 "$tmp/$name.log"; rc=1
        ls "$tmp/artifacts" 2>/dev/null
    fi
done
exit $rc

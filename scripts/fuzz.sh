#!/usr/bin/env bash
# A long fuzzing campaign over every parser and decoder that takes outside input
# (supervisor/tests/fuzz.rs): 20 000 cases per target by default, or the number
# given as the first argument (or in OORT_FUZZ_CASES). Prints one row per
# target: cases, failures and time. CI runs the same targets with a few hundred
# cases each as part of `cargo test`.
#
#   bash scripts/fuzz.sh            # 20 000 cases per target
#   bash scripts/fuzz.sh 100000     # longer
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

cases="${1:-${OORT_FUZZ_CASES:-20000}}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

status=0
OORT_FUZZ_CASES="$cases" cargo test --release -p oort-tests --test fuzz -- --nocapture --test-threads=1 \
    >"$log" 2>&1 || status=$?

printf '%-18s %10s %9s %10s\n' target cases failures seconds
# The harness prints "test <name> ... " before each target's own line, hence -o.
grep -o 'FUZZ target=[^ ]* cases=[^ ]* failures=[^ ]* secs=[0-9.]*' "$log" |
    sed -E 's/^FUZZ target=([^ ]+) cases=([^ ]+) failures=([^ ]+) secs=([^ ]+)$/\1 \2 \3 \4/' |
    while read -r target n failures secs; do
        printf '%-18s %10s %9s %10s\n' "$target" "$n" "$failures" "$secs"
    done
if [ "$status" -ne 0 ]; then
    echo "== failures (full output below)"
    cat "$log"
fi
exit "$status"

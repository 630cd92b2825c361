#!/usr/bin/env bash
# Runs Oort's benchmarks (tests/bench, crate oort-bench) on this machine: installs
# what is missing, builds the workspace, the hashicorp/go-plugin baseline
# (tests/bench/goplugin) and, when their scripts exist, the Go and Python
# plugins, then prints one table per scenario and writes every number to
# bench-results.json. See BENCHMARKS.md for what each scenario measures.
#
#   scripts/bench.sh                       every scenario, full length (a few minutes)
#   scripts/bench.sh --quick               a reduced run (CI smoke, under a minute)
#   scripts/bench.sh --only e2e            one scenario: function, latency, e2e,
#                                          steady, coldstart, memory, recovery,
#                                          windows, scale, mqtt, upgrade, cluster (or a-l)
#   scripts/bench.sh --out results.json    where the JSON goes
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
bash scripts/setup.sh

cargo build --release --workspace --bins
# The bundled plugins as a plugin author builds one, on its own: inside the
# workspace build, cargo unifies tokio's features with the daemon's, and the
# multi-threaded scheduler it brings makes every plugin process load libm
# (0.3 MB of the RSS that table f measures).
cargo build --release -p oort-plugins
# The hashicorp/go-plugin baseline of scenarios a, b, e and f (tests/bench/goplugin).
if command -v go >/dev/null 2>&1; then
  (cd tests/bench/goplugin && GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false" \
    go build -trimpath -o "$OORT_BIN/goplugin/" ./cmd/echo-host ./cmd/echo-plugin) \
    || echo "bench: warning: building tests/bench/goplugin failed; the go-plugin columns will say not measured" >&2
else
  echo "bench: warning: go is not on PATH; the go-plugin columns will say not measured" >&2
fi
for lang in go python; do
  if [ -f "scripts/build-$lang.sh" ]; then
    bash "scripts/build-$lang.sh" || echo "bench: warning: scripts/build-$lang.sh failed; the $lang cold-start row will say not measured" >&2
  fi
done
cargo run --release -p oort-bench -- "$@"

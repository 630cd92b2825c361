#!/usr/bin/env bash
# Installs what is missing, then runs every check and test. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh

echo "== format"
cargo fmt --all -- --check
echo "== crate graph"
bash scripts/check-crates.sh
echo "== build (release profile: shared by tests, demo and benches)"
# Integration tests start the real binaries of every workspace crate.
cargo build --release --workspace --bins
echo "== lint"
cargo clippy --release --workspace --all-targets -- -D warnings
echo "== Go SDK and plugins"
bash scripts/build-go.sh --test
echo "== Python SDK and plugins"
bash scripts/build-python.sh --test
echo "== tests"
cargo test --release --workspace

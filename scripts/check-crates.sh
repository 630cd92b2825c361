#!/usr/bin/env bash
# Checks the supervisor's crate graph, which is where its architecture
# invariants live (see ARCHITECTURE.md, "supervisor/"): only oort-store
# depends on rocksdb and object_store, only oort-cluster on etcd-client; the pure crates (oort-core, oort-sql) depend on no async
# runtime, process or storage crate; the API's crates (axum) only in `oort`
# among the supervisor's crates (the bundled plugins are executables of their
# own: the `httppush` source serves HTTP with it).
# Run by scripts/test.sh; needs no network once Cargo.lock's crates are fetched.
set -euo pipefail
cd "$(dirname "$0")/.."

# The workspace crates that depend directly (normal or build edges) on `dep`.
direct_dependents() {
  local tree
  tree=$(cargo tree --workspace -e normal,build -i "$1" --depth 1 --prefix none --format '{p}')
  tail -n +2 <<<"$tree" | awk '$1 ~ /^oort/ {print $1}' | sort -u
}

fail=0
expect_only() {
  local dep=$1; shift
  local got want
  got=$(direct_dependents "$dep" | tr '\n' ' ' | sed 's/ $//')
  want=$(printf '%s\n' "$@" | sort -u | tr '\n' ' ' | sed 's/ $//')
  if [ "$got" != "$want" ]; then
    echo "crate graph: $dep is a direct dependency of [$got]; only [$want] may depend on it" >&2
    fail=1
  fi
}
forbid() {
  local dep=$1; shift
  local got
  got=$(direct_dependents "$dep")
  for crate in "$@"; do
    if grep -qx "$crate" <<<"$got"; then
      echo "crate graph: $crate must not depend on $dep" >&2
      fail=1
    fi
  done
}

expect_only rocksdb oort-store
expect_only object_store oort-store
# The bench measures etcd itself, beside the daemon's one etcd client crate.
expect_only etcd-client oort-cluster oort-bench
expect_only axum oort oort-plugins
for dep in tokio tonic rocksdb libc oort-host oort-store oort-engine; do
  forbid "$dep" oort-core oort-sql
done
forbid oort-engine oort-host oort-store
forbid oort-host oort-store
if [ "$fail" -ne 0 ]; then
  exit 1
fi
echo "crate graph: rocksdb and object_store only in oort-store, etcd-client only in oort-cluster (and the bench), axum only in oort (and the httppush plugin), oort-core and oort-sql pure"

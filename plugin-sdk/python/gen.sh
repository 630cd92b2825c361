#!/usr/bin/env bash
# Regenerates oort_plugin/_pb from proto/oort/{plugin,state}/v1/*.proto.
#
# Needs grpcio-tools (it bundles protoc) and mypy-protobuf (the .pyi stubs) in
# the Python that runs it: $PYTHON, else the Oort venv, else python3. The
# output is committed; run this after changing a .proto file.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/oort/venv"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$venv/bin/python" ]; then py="$venv/bin/python"; else py=python3; fi
fi
bindir="$(dirname "$py")"
out="$here/oort_plugin/_pb"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$py" -m grpc_tools.protoc -I"$root/proto" \
  --python_out="$tmp" --grpc_python_out="$tmp" \
  --plugin=protoc-gen-mypy="$bindir/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$bindir/protoc-gen-mypy_grpc" \
  --mypy_out=quiet:"$tmp" --mypy_grpc_out=quiet:"$tmp" \
  oort/plugin/v1/plugin.proto oort/state/v1/state.proto

rm -f "$out"/*_pb2*.py "$out"/*_pb2*.pyi
for f in "$tmp"/oort/plugin/v1/* "$tmp"/oort/state/v1/*; do
  # protoc writes imports for a top-level `oort` package; inside oort_plugin the
  # four modules sit side by side, so make them relative. The descriptors keep
  # their proto file names (oort/plugin/v1/plugin.proto), which is what
  # reflection reports.
  sed -e 's/^from oort\.\(plugin\|state\)\.v1 import /from . import /' \
      -e "s/'oort\.\(plugin\|state\)\.v1\.\([a-z_]*_pb2\)'/'oort_plugin._pb.\2'/" \
      "$f" > "$out/$(basename "$f")"
done
cat > "$out/__init__.py" <<'PY'
"""Generated protobuf and gRPC code for the Oort protocol (see gen.sh). Do not edit."""
PY
if grep -rn '^from oort\.\|^import oort\.' "$out"; then
  echo "gen.sh: unrewritten imports left in $out" >&2
  exit 1
fi
echo "gen.sh: wrote $(ls "$out" | wc -l) files to $out"

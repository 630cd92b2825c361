#!/usr/bin/env bash
# Installs whatever this machine is missing to build and test Oort, and nothing else.
# Idempotent: every step checks first, so a second run costs a few hundred milliseconds.
set -euo pipefail

need_apt=()
# librocksdb-sys generates its bindings with bindgen, which loads libclang at build time.
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
  need_apt+=(libclang-dev)
fi
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
# The Go and Python SDKs need their toolchains; their scripts install the
# modules and packages (Go module proxy, PyPI into a virtual environment).
if ! command -v go >/dev/null 2>&1; then
  need_apt+=(golang-go)
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
# The MQTT connector's tests start their own mosquitto broker (never the
# system service) and use its clients.
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  need_apt+=(mosquitto)
fi
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
# The cluster tests start their own etcd (never the system service).
if ! command -v etcd >/dev/null 2>&1 && [ ! -x /usr/bin/etcd ]; then
  need_apt+=(etcd-server)
fi
# The etcd client's build compiles etcd's .proto files with protoc.
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
# Its TLS tests make their certificates with the openssl command.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${need_apt[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: Rust's cargo is not on PATH; install a Rust toolchain (rustup, 1.85 or newer) first" >&2
  exit 1
fi

# Tools the tests run, from the Go module proxy, into one cache folder.
# grpcurl, for introspection and for the tests that use it.
TOOLS_BIN="${XDG_CACHE_HOME:-$HOME/.cache}/oort/bin"
if [ ! -x "$TOOLS_BIN/grpcurl" ] || [ "$(cat "$TOOLS_BIN/grpcurl.version" 2>/dev/null)" != v1.9.4 ]; then
  echo "setup: installing grpcurl into $TOOLS_BIN" >&2
  mkdir -p "$TOOLS_BIN"
  GOBIN="$TOOLS_BIN" go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
  echo v1.9.4 > "$TOOLS_BIN/grpcurl.version"
fi

# An S3-compatible server for the tests of the S3 checkpoint store (Debian
# packages none: MinIO is not in Debian), from the Go module proxy.
if [ ! -x "$TOOLS_BIN/gofakes3" ] || [ "$(cat "$TOOLS_BIN/gofakes3.version" 2>/dev/null)" != v1.2.0 ]; then
  echo "setup: installing gofakes3 into $TOOLS_BIN" >&2
  mkdir -p "$TOOLS_BIN"
  GOBIN="$TOOLS_BIN" go install github.com/johannesboyne/gofakes3/cmd/gofakes3@v1.2.0
  echo v1.2.0 > "$TOOLS_BIN/gofakes3.version"
fi

#!/usr/bin/env bash
# Builds the Go SDK's plugins into $OORT_BIN/go/: the executables geohash,
# conformance and countersink, the eKuiper-style examples of
# plugins/go/ekuiper (ek1funcs, ek1random, ek1file on the 1.x layer; ek2funcs,
# ek2poll, ek2push, ek2file, ek2bytes, ek2bytesrc on the 2.x layer; ekmirror,
# an eKuiper portable plugin), and the metadata files geohash.json,
# conformance.json, ek1funcs.json and ek2funcs.json (printed by
# `<plugin> --metadata`) next to them, which list every function the function
# plugins export. Also packages the portable plugin as eKuiper does,
# $OORT_BIN/go/ekmirror.zip: at its root ekmirror.json (the manifest),
# ekmirror (the executable, mode 0755), functions/ekmirror.json and
# sinks/ekmirrorsink.json. The zip is reproducible: fixed entry order, times
# and modes.
#
#   scripts/build-go.sh          build
#   scripts/build-go.sh --test   also gofmt -l (fails on any output), go vet and
#                                go test for plugin-sdk/go and plugins/go
#
# Needs Go (see plugin-sdk/go/go.mod for the version) and python3 (its zipfile
# makes the zip): modules come from the Go module proxy and are pinned by the
# committed go.sum files. A second run with nothing changed takes a second or
# two (Go's build cache).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

run_tests=0
for arg in "$@"; do
  case "$arg" in
    --test) run_tests=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build-go: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

if ! command -v go >/dev/null 2>&1; then
  echo "build-go: go is not on PATH; install Go (https://go.dev/dl/) first" >&2
  exit 1
fi
# python3's zipfile packages ekmirror.zip: a zip CLI is often missing, and
# zipfile lets the entries' times and modes be fixed.
if ! command -v python3 >/dev/null 2>&1; then
  echo "build-go: python3 is not on PATH; it is needed to package ekmirror.zip" >&2
  exit 1
fi
# No VCS stamping: it fails where .git exists but git does not, and the
# binaries need none.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"

modules=(plugin-sdk/go plugins/go)
plugins=(geohash conformance countersink)
# The eKuiper-compatibility examples, by folder under plugins/go/ekuiper.
ekuiper_plugins=(ek1funcs ek1random ek1file ek2funcs ek2poll ek2push ek2file ek2bytes ek2bytesrc ekmirror)
started=$SECONDS

if [ "$run_tests" = 1 ]; then
  echo "== go: gofmt -l" >&2
  unformatted="$(gofmt -l "${modules[@]}")"
  if [ -n "$unformatted" ]; then
    echo "build-go: these files are not gofmt-formatted (run gofmt -w):" >&2
    echo "$unformatted" >&2
    exit 1
  fi
  for m in "${modules[@]}"; do
    echo "== go: go vet ($m)" >&2
    (cd "$m" && go vet ./...)
  done
fi

out="$OORT_BIN/go"
mkdir -p "$out"
# Build next to the destination, then rename: a running plugin keeps its
# file, and a half-written executable is never visible.
tmp="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
(cd plugins/go && go build -trimpath -ldflags="-s -w" -o "$tmp/" "${plugins[@]/#/./}" "${ekuiper_plugins[@]/#/./ekuiper/}")
with_functions=(geohash conformance ek1funcs ek2funcs)
for p in "${with_functions[@]}"; do
  "$tmp/$p" --metadata > "$tmp/$p.json"
done
# The portable package: its manifest and metadata files are committed next to
# its code, laid out as in the zip; the executable is the one just built.
# Fixed times (the zip epoch), Unix modes and entry order make the same
# inputs give the same bytes, so a rebuild does not look like a new package.
python3 - "$tmp/ekmirror.zip" plugins/go/ekuiper/ekmirror "$tmp/ekmirror" <<'PY'
import sys, zipfile
dest, src, exe = sys.argv[1:]
entries = [
    ("ekmirror.json", f"{src}/ekmirror.json", 0o644),
    ("ekmirror", exe, 0o755),
    ("functions/ekmirror.json", f"{src}/functions/ekmirror.json", 0o644),
    ("sinks/ekmirrorsink.json", f"{src}/sinks/ekmirrorsink.json", 0o644),
]
with zipfile.ZipFile(dest, "w") as z:
    for name, path, mode in entries:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.create_system = 3  # Unix, so that unzip applies the mode
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as f:
            z.writestr(info, f.read(), compresslevel=9)
PY
for f in "${plugins[@]}" "${ekuiper_plugins[@]}" "${with_functions[@]/%/.json}" ekmirror.zip; do
  mv -f "$tmp/$f" "$out/$f"
done
echo "build-go: built in $out: ${plugins[*]} ${ekuiper_plugins[*]} (+ ${with_functions[*]/%/.json}, ekmirror.zip) in $((SECONDS - started))s" >&2

if [ "$run_tests" = 1 ]; then
  for m in "${modules[@]}"; do
    echo "== go: go test ($m)" >&2
    (cd "$m" && go test ./...)
  done
  echo "build-go: checks and tests passed in $((SECONDS - started))s" >&2
fi

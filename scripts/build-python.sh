#!/usr/bin/env bash
# Builds the Python SDK's plugins: a virtual environment with the SDK and the
# plugins installed (editable), and one launcher per plugin in $OORT_BIN/python/.
#
#   scripts/build-python.sh          venv + launchers
#   scripts/build-python.sh --test   also mypy --strict and the SDK's pytest suite
#
# The venv lives at ${XDG_CACHE_HOME:-$HOME/.cache}/oort/venv (override with
# OORT_VENV). pip runs only when the venv is new or a pyproject.toml (or this
# clone's location) changed: a second run takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
. scripts/env.sh

run_tests=0
for arg in "$@"; do
  case "$arg" in
    --test) run_tests=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "build-python: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

venv="${OORT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/oort/venv}"
py="$venv/bin/python"
sdk="plugin-sdk/python"
plugins="plugins/python"

if ! command -v python3 >/dev/null 2>&1 && [ ! -x "$py" ]; then
  echo "build-python: python3 (3.10 or newer) is not on PATH" >&2
  exit 1
fi

# The SDK's extras: dev (test tools) and arrow (pyarrow, for VectorizedFunction
# and the benchmarks' pyecho).
extras="dev,arrow"
# What the installed venv must match: the two pyproject files, the extras and
# where this clone is (editable installs point into it).
want="$(cat "$sdk/pyproject.toml" "$plugins/pyproject.toml" | sha256sum | cut -d' ' -f1) compat [$extras] $root"
stamp="$venv/.oort-python-stamp"
if [ ! -x "$py" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  if [ ! -x "$py" ]; then
    echo "build-python: creating the venv $venv" >&2
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
  fi
  echo "build-python: installing the SDK, the plugins and the test tools into $venv" >&2
  # Editable installs in "compat" mode are a plain path in a .pth file: no
  # import hook to load at every plugin start, and mypy can follow them.
  # pip and setuptools are chatty even with -q: show their output only on failure.
  log="$venv/.oort-pip.log"
  if ! { "$py" -m pip install -q --disable-pip-version-check --upgrade pip &&
         "$py" -m pip install -q --disable-pip-version-check \
           --config-settings editable_mode=compat -e "$sdk[$extras]" -e "$plugins"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "build-python: pip install failed (log above, also in $log)" >&2
    exit 1
  fi
  printf '%s' "$want" > "$stamp"
fi

# Launchers: `exec` keeps the pid, so the supervisor's signals reach Python.
# -P (3.11+) keeps the inherited working directory off sys.path.
safe=""
if "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then safe=" -P"; fi
out="$OORT_BIN/python"
mkdir -p "$out"
for name in textstats csvsink conformance pyecho; do
  tmp="$out/.$name.tmp"
  printf '#!/bin/sh\n# Written by scripts/build-python.sh: the Oort Python plugin %s.\nexec "%s"%s -m oort_plugins.%s "$@"\n' \
    "$name" "$py" "$safe" "$name" > "$tmp"
  chmod 755 "$tmp"
  mv -f "$tmp" "$out/$name"
done
cp -f "$plugins/oort_plugins/textstats.json" "$out/textstats.json"
# pyecho: the benchmarks' echo functions (echo columnar, echo_rows row API).
cp -f "$plugins/oort_plugins/pyecho.json" "$out/pyecho.json"
# raw_conformance: the conformance functions written on the generated stubs
# alone (plugins/python/raw); the suite installs it under the name conformance.
printf '#!/bin/sh\n# Written by scripts/build-python.sh: the SDK-free Python plugin raw_conformance.\nexec "%s"%s "%s" "$@"\n' \
  "$py" "$safe" "$root/$plugins/raw/raw_conformance.py" > "$out/.raw_conformance.tmp"
chmod 755 "$out/.raw_conformance.tmp"
mv -f "$out/.raw_conformance.tmp" "$out/raw_conformance"
printf '{"functions":[{"name":"cf_agg"},{"name":"cf_count"},{"name":"cf_echo"},{"name":"cf_fail"},{"name":"cf_pid"},{"name":"cf_state"}]}\n' \
  > "$out/raw_conformance.json"
# ekpy: an eKuiper portable-style plugin (plugins/python/oort_plugins/portable)
# run through oort_plugin.ekuiper. One program, installed under the name of
# each part it serves: functions/ekpy (+ ekpy.json), sources/ekticker and
# sinks/eklines and sinks/ekbytes; it serves the part named by OORT_PLUGIN_NAME.
for name in ekpy ekticker eklines ekbytes; do
  tmp="$out/.$name.tmp"
  printf '#!/bin/sh\n# Written by scripts/build-python.sh: the eKuiper portable-style Python plugin ekpy, as %s.\nexec "%s"%s -m oort_plugins.portable "$@"\n' \
    "$name" "$py" "$safe" > "$tmp"
  chmod 755 "$tmp"
  mv -f "$tmp" "$out/$name"
done
cp -f "$plugins/oort_plugins/portable/ekpy.json" "$out/ekpy.json"
# The venv's Python, for the daemon's --python: portable Python packages
# (eKuiper's zips) are scripts it runs with the SDK importable.
printf '#!/bin/sh\n# Written by scripts/build-python.sh: the Oort venv'"'"'s Python (a symlink would lose the venv).\nexec "%s" "$@"\n' "$py" > "$out/.python3.tmp"
chmod 755 "$out/.python3.tmp"
mv -f "$out/.python3.tmp" "$out/python3"
echo "build-python: launchers in $out: textstats csvsink conformance pyecho ekpy ekticker eklines ekbytes (+ textstats.json, pyecho.json, ekpy.json, python3)" >&2

if [ "$run_tests" = 1 ]; then
  echo "== python: mypy --strict" >&2
  (cd "$sdk" && "$venv/bin/mypy" --strict oort_plugin tests)
  (cd "$plugins" && "$venv/bin/mypy" --strict oort_plugins tests raw/raw_conformance.py)
  for suite in "$sdk/tests" "$plugins/tests"; do
    echo "== python: pytest $suite" >&2
    rc=0
    "$venv/bin/pytest" -q -p no:cacheprovider "$suite" || rc=$?
    if [ "$rc" = 5 ]; then
      echo "build-python: pytest ran no test in $suite" >&2
      exit 1
    elif [ "$rc" != 0 ]; then
      exit "$rc"
    fi
  done
fi

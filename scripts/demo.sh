#!/usr/bin/env bash
# Installs what is missing, builds Oort and its bundled plugins, installs the
# plugins into ./data/plugins and runs the daemon in the foreground (Ctrl-C stops
# it and every plugin process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh

cargo build --release --workspace --bins
DATA="${OORT_DATA_DIR:-$PWD/data}"
PLUGINS="$DATA/plugins"
mkdir -p "$PLUGINS/functions" "$PLUGINS/sources" "$PLUGINS/sinks"
for f in echo countPlusOne accumulateWordCount; do install -m 0755 "$OORT_BIN/$f" "$PLUGINS/functions/$f"; done
install -m 0755 "$OORT_BIN/random" "$PLUGINS/sources/random"
for s in log file; do install -m 0755 "$OORT_BIN/$s" "$PLUGINS/sinks/$s"; done

ADDR="${OORT_REST_ADDR:-127.0.0.1:9081}"
echo "oort: serving on http://$ADDR with the plugins in $PLUGINS; try, in another shell:"
echo "  $OORT_BIN/oort plugin list function --server http://$ADDR"
echo "  $OORT_BIN/oort plugin describe function accumulateWordCount --server http://$ADDR"
exec "$OORT_BIN/oort" serve --data-dir "$DATA/db" --plugins-dir "$PLUGINS" --rest-addr "$ADDR"

#!/usr/bin/env bash
# The main job: installs what is missing, builds Oort and its bundled plugins,
# installs the plugins into ./data/plugins, starts the daemon on its embedded
# RocksDB (./data/db) and creates the demo stream and rule, so records flow
# within seconds. Ctrl-C stops the daemon and every plugin process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh

cargo build --release --workspace --bins
DATA="${OORT_DATA_DIR:-$PWD/data}"
PLUGINS="$DATA/plugins"
mkdir -p "$PLUGINS/functions" "$PLUGINS/sources" "$PLUGINS/sinks"
for f in echo countPlusOne accumulateWordCount; do install -m 0755 "$OORT_BIN/$f" "$PLUGINS/functions/$f"; done
for s in random file mqtt httppull httppush; do install -m 0755 "$OORT_BIN/$s" "$PLUGINS/sources/$s"; done
for s in log file mqtt rest; do install -m 0755 "$OORT_BIN/$s" "$PLUGINS/sinks/$s"; done

ADDR="${OORT_REST_ADDR:-127.0.0.1:9081}"
OORT="$OORT_BIN/oort"
export OORT_SERVER="http://$ADDR"
"$OORT" serve --data-dir "$DATA" --plugins-dir "$PLUGINS" --rest-addr "$ADDR" &
DAEMON=$!
trap 'kill -TERM $DAEMON 2>/dev/null; wait $DAEMON' INT TERM
for _ in $(seq 1 100); do
  "$OORT" stream list >/dev/null 2>&1 && break
  kill -0 $DAEMON 2>/dev/null || { echo "demo: the daemon did not start" >&2; exit 1; }
  sleep 0.1
done

# The demo stream and rule, created once; a restarted daemon resumes them.
if ! "$OORT" stream describe demo >/dev/null 2>&1; then
  "$OORT" stream create "CREATE STREAM demo () WITH (TYPE=\"random\", DATASOURCE=\"demo\", FORMAT=\"json\", interval=\"500\", pattern='{\"sentence\": [\"the quick brown fox\", \"jumps over\", \"the lazy dog\"], \"temperature\": 0}', seed=\"40\")"
fi
if ! "$OORT" rule describe demo >/dev/null 2>&1; then
  "$OORT" rule create '{"id": "demo", "sql": "SELECT sentence, accumulateWordCount(sentence, '"' '"') AS words_so_far, temperature FROM demo WHERE temperature > 10", "actions": [{"log": {}}]}'
fi
echo "demo: rule 'demo' runs; its results appear below as 'sink result' lines. In another shell:"
echo "  $OORT rule status demo"
echo "  $OORT plugin describe function accumulateWordCount"
echo "Ctrl-C stops the daemon and every plugin process."
wait $DAEMON

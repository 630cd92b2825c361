# Sourced by the other scripts: one cargo profile and one target folder outside
# the clone, so that every command (tests, demo, benches) reuses one build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/oort/target}"
export OORT_PROFILE=release
export OORT_BIN="$CARGO_TARGET_DIR/$OORT_PROFILE"

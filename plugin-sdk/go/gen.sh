#!/usr/bin/env bash
# Regenerates the Go protobuf and gRPC code under internal/pb from ../../proto
# with the protoc that the Rust build vendors (protoc-bin-vendored), so that no
# system protoc is needed. Override with PROTOC=/path/to/protoc.
#
# The generators are pinned: protoc-gen-go at the google.golang.org/protobuf
# version in go.mod, protoc-gen-go-grpc at PROTOC_GEN_GO_GRPC_VERSION.
set -euo pipefail
cd "$(dirname "$0")"
here=$PWD
proto_root=$here/../../proto

PROTOC_GEN_GO_GRPC_VERSION=${PROTOC_GEN_GO_GRPC_VERSION:-v1.6.2}

if [[ -z "${PROTOC:-}" ]]; then
    shopt -s nullglob
    candidates=("${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/protoc-bin-vendored-linux-x86_64-*/bin/protoc)
    shopt -u nullglob
    if ((${#candidates[@]} == 0)); then
        echo "gen.sh: no protoc found; run 'cargo fetch' in the workspace or set PROTOC" >&2
        exit 1
    fi
    PROTOC=${candidates[-1]}
fi

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
# Inside the module, a version-less install builds the version go.mod pins.
GOBIN=$bin go install google.golang.org/protobuf/cmd/protoc-gen-go
GOBIN=$bin go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"

rm -rf internal/pb/pluginv1 internal/pb/statev1
PATH=$bin:$PATH "$PROTOC" \
    -I "$proto_root" \
    --go_out=. --go_opt=module=github.com/oort-dev/oort/plugin-sdk/go \
    --go-grpc_out=. --go-grpc_opt=module=github.com/oort-dev/oort/plugin-sdk/go \
    oort/plugin/v1/plugin.proto oort/state/v1/state.proto
echo "generated: $(cd "$here" && ls internal/pb/*/*.go | tr '\n' ' ')"

// Command echo-plugin is the plugin side of the hashicorp/go-plugin baseline
// of Oort's benchmarks: a gRPC plugin whose Echo call returns its rows.
package main

import (
	"context"

	"github.com/hashicorp/go-plugin"

	"github.com/oort-dev/oort/tests/bench/goplugin/shared"
)

type echo struct{}

func (echo) Echo(_ context.Context, rows [][]byte) ([][]byte, error) {
	out := make([][]byte, len(rows))
	copy(out, rows)
	return out, nil
}

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: shared.Handshake,
		Plugins:         map[string]plugin.Plugin{"echo": &shared.EchoPlugin{Impl: echo{}}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

// Package shared holds what the go-plugin host and plugin of the benchmark
// baseline agree on: the handshake, the plugin map and the gRPC glue.
package shared

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/oort-dev/oort/tests/bench/goplugin/echopb"
)

// Handshake is checked by the host and the plugin before anything else.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "OORT_BENCH_GOPLUGIN",
	MagicCookieValue: "echo",
}

// Echoer is the interface the plugin implements and the host calls.
type Echoer interface {
	Echo(ctx context.Context, rows [][]byte) ([][]byte, error)
}

// EchoPlugin is the go-plugin glue for Echoer over gRPC.
type EchoPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Echoer
}

// GRPCServer registers the Echo service in the plugin process.
func (p *EchoPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	echopb.RegisterEchoServer(s, &server{impl: p.Impl})
	return nil
}

// GRPCClient returns the host-side Echoer.
func (p *EchoPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &client{c: echopb.NewEchoClient(c)}, nil
}

// PluginMap is the plugin set of both sides.
var PluginMap = map[string]plugin.Plugin{"echo": &EchoPlugin{}}

type server struct {
	echopb.UnimplementedEchoServer
	impl Echoer
}

func (s *server) Echo(ctx context.Context, req *echopb.EchoRequest) (*echopb.EchoReply, error) {
	rows, err := s.impl.Echo(ctx, req.GetRows())
	if err != nil {
		return nil, err
	}
	return &echopb.EchoReply{Rows: rows}, nil
}

type client struct{ c echopb.EchoClient }

func (c *client) Echo(ctx context.Context, rows [][]byte) ([][]byte, error) {
	reply, err := c.c.Echo(ctx, &echopb.EchoRequest{Rows: rows})
	if err != nil {
		return nil, err
	}
	return reply.GetRows(), nil
}

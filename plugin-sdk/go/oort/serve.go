package oort

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	// Linked for server reflection: `grpcurl describe` resolves the
	// supervisor's State types too.
	_ "github.com/oort-dev/oort/plugin-sdk/go/internal/pb/statev1"
)

const (
	// SDKName is the SDK's name as reported in Describe.
	SDKName = "oort-plugin-go"
	// SDKVersion is the SDK's version as reported in Describe.
	SDKVersion = "0.1.0"
	// ProtocolVersion is the one Oort plugin protocol version this SDK speaks.
	ProtocolVersion = 1
)

// exitHandshake is the exit code for a handshake the plugin cannot take part
// in (missing environment, no common protocol version): sysexits' EX_CONFIG.
const exitHandshake = 78

// drain is how long a stopping plugin lets in-flight calls finish before it
// cuts the batch streams, which stay open for as long as the supervisor keeps
// them.
const drain = 500 * time.Millisecond

// served are the gRPC services every plugin process reports as SERVING,
// besides "".
var served = []string{
	"grpc.health.v1.Health",
	"oort.plugin.v1.Plugin",
	"oort.plugin.v1.Function",
	"oort.plugin.v1.Source",
	"oort.plugin.v1.Sink",
}

// osExit is os.Exit, replaced in tests.
var osExit = os.Exit

// Serve runs the plugin until the supervisor stops it, then exits the
// process; it never returns.
//
// It does the whole handshake of docs/protocol.md: it reads
// OORT_PLUGIN_SOCKET and OORT_PROTOCOL_VERSIONS (exiting with status 78 and
// one stderr line when the socket is not named or version 1 is not offered),
// binds the socket (exiting with status 1 if a live process listens there;
// a stale file is removed), and serves the Plugin, Function, Source and Sink
// services, grpc.health.v1 and server reflection on it. On the Shutdown RPC,
// SIGTERM or SIGINT it stops within about half a second even while batch
// streams are open, closes every instance, removes the socket and exits 0.
//
// Run by hand, without the supervisor's environment, it prints what it is
// and exits with status 78. Run with the single argument --metadata
// (MetadataFlag), it prints the plugin's metadata file (see Plugin.Metadata)
// to stdout and exits 0.
func Serve(p Plugin) {
	if printMetadata(p, os.Args[1:]) {
		osExit(0)
		return
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	osExit(serveEnv(p, os.LookupEnv, signals))
}

// serveEnv is Serve with its environment and signals passed in; it returns
// the exit code.
func serveEnv(p Plugin, getenv func(string) (string, bool), signals <-chan os.Signal) int {
	if err := p.Check(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: the plugin's description is invalid: %s\n", p.Name, strings.ReplaceAll(err.Error(), "\n", "; "))
		return 1
	}
	socket, ok := getenv("OORT_PLUGIN_SOCKET")
	if !ok || socket == "" {
		fmt.Fprintf(os.Stderr, "%s is an Oort plugin: it is started by the `oort` supervisor, not by hand "+
			"(OORT_PLUGIN_SOCKET is not set; see docs/protocol.md)\n", p.Name)
		return exitHandshake
	}
	offered, _ := getenv("OORT_PROTOCOL_VERSIONS")
	version, ok := negotiate(offered)
	if !ok {
		fmt.Fprintf(os.Stderr, "%s: the supervisor offers protocol versions %q, this plugin speaks only %d\n",
			p.Name, offered, ProtocolVersion)
		return exitHandshake
	}
	ln, err := bind(socket)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot listen on %s: %v\n", socket, err)
		return 1
	}
	return run(p, version, ln, socket, signals)
}

// negotiate picks the highest offered version this SDK speaks. Parts that
// are not unsigned integers are ignored.
func negotiate(offered string) (uint32, bool) {
	best, found := uint32(0), false
	for _, part := range strings.Split(offered, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(part), 10, 32)
		if err != nil {
			continue
		}
		if v == ProtocolVersion && (!found || uint32(v) > best) {
			best, found = uint32(v), true
		}
	}
	return best, found
}

// errInUse is bind's refusal to steal a path a live process listens on.
var errInUse = errors.New("another process is listening there")

// bind listens on path, refusing to steal it from a live listener and
// removing a stale socket file.
func bind(path string) (net.Listener, error) {
	if _, err := os.Lstat(path); err == nil {
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = conn.Close()
			return nil, errInUse
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	return net.Listen("unix", path)
}

// run serves on ln until a stop is asked for, and returns the exit code.
func run(p Plugin, version uint32, ln net.Listener, socket string, signals <-chan os.Signal) int {
	root, cancelRoot := context.WithCancel(context.Background())
	defer cancelRoot()
	s := newServer(p, version, root)

	g := grpc.NewServer(
		// Unix sockets have no bandwidth-delay product to speak of: large
		// windows let one batch stream run without waiting for updates.
		grpc.InitialWindowSize(8<<20),
		grpc.InitialConnWindowSize(16<<20),
		// The supervisor may send batches larger than gRPC's usual 4 MiB.
		grpc.MaxRecvMsgSize(64<<20),
	)
	h := health.NewServer()
	healthpb.RegisterHealthServer(g, h)
	s.register(g)
	reflection.Register(g)
	for _, name := range append([]string{""}, served...) {
		h.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- g.Serve(ln) }()

	code := 0
	select {
	case err := <-serveErr:
		// The server ended without being asked to: a crash.
		processLogger.Errorf("plugin server failed: %v", err)
		code = 1
	case <-s.stop:
	case <-signals:
	}

	// A second signal while stopping means "now".
	go func() {
		if _, ok := <-signals; ok {
			_ = os.Remove(socket)
			osExit(1)
		}
	}()

	h.Shutdown()
	wait := drain
	if grace := time.Duration(s.graceMs.Load()) * time.Millisecond; grace > 0 && grace/2 < wait {
		wait = grace / 2
	}
	// Ending the instances' contexts ends their Read streams; in-flight
	// Exec and Write batches get until the deadline to be answered.
	cancelRoot()
	stopped := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(wait):
		g.Stop()
		<-stopped
	}
	s.closeAll()
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		processLogger.Warnf("cannot remove the socket %s: %v", socket, err)
	}
	return code
}

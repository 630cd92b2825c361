// Command echo-host is the host side of the hashicorp/go-plugin baseline of
// Oort's benchmarks (tests/bench, BENCHMARKS.md scenarios a, b, e and f). It
// starts echo-plugin (from the same folder unless -plugin says otherwise) with
// plugin.NewClient over gRPC, then measures one unary Echo call per batch:
//
//	echo-host -mode throughput -batch N -payload int|string100 -duration 1s
//	    prints {"rows_per_s":…}
//	echo-host -mode latency -n 20000
//	    prints {"p50_us":…,"p99_us":…} for one-row calls
//	echo-host -mode startup -n 10
//	    starts the plugin n+1 times (the first untimed), each time timing
//	    NewClient → Client (spawn, handshake, connect) → Dispense → one Echo
//	    call, and prints {"runs_ms":[…],"plugin_rss_kb":…}, the RSS of the
//	    last plugin process after its call
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/oort-dev/oort/tests/bench/goplugin/shared"
)

// text100 is the 100-byte string payload, the same as Oort's scenario sends.
const text100 = "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs, said the sphinx"

func rows(payload string, n int) ([][]byte, error) {
	out := make([][]byte, n)
	for i := range out {
		switch payload {
		case "int":
			b := make([]byte, 8)
			binary.LittleEndian.PutUint64(b, uint64(int64(i)*7919))
			out[i] = b
		case "string100":
			out[i] = []byte(text100)
		default:
			return nil, fmt.Errorf("unknown -payload %q (int or string100)", payload)
		}
	}
	return out, nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "echo-host:", err)
		os.Exit(1)
	}
}

func run() error {
	mode := flag.String("mode", "throughput", "throughput, latency or startup")
	batch := flag.Int("batch", 1, "rows per call (throughput)")
	payload := flag.String("payload", "int", "int (8 bytes per row) or string100 (100 bytes per row)")
	duration := flag.Duration("duration", time.Second, "measuring time (throughput)")
	warmup := flag.Duration("warmup", 200*time.Millisecond, "time of untimed calls before measuring")
	n := flag.Int("n", 20000, "number of timed one-row calls (latency) or of timed starts (startup)")
	pluginPath := flag.String("plugin", "", "the plugin executable (default: echo-plugin next to this one)")
	flag.Parse()

	if *pluginPath == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		*pluginPath = filepath.Join(filepath.Dir(self), "echo-plugin")
	}
	ctx := context.Background()
	if *mode == "startup" {
		return startup(ctx, *pluginPath, *n)
	}
	client, echo, err := start(*pluginPath)
	if err != nil {
		return err
	}
	defer client.Kill()

	call := func(in [][]byte) error {
		out, err := echo.Echo(ctx, in)
		if err != nil {
			return err
		}
		if len(out) != len(in) {
			return fmt.Errorf("echo answered %d rows with %d", len(in), len(out))
		}
		return nil
	}
	loop := func(in [][]byte, d time.Duration) (int, time.Duration, error) {
		start := time.Now()
		calls := 0
		for time.Since(start) < d {
			if err := call(in); err != nil {
				return 0, 0, err
			}
			calls++
		}
		return calls, time.Since(start), nil
	}

	var result any
	switch *mode {
	case "throughput":
		in, err := rows(*payload, *batch)
		if err != nil {
			return err
		}
		if _, _, err := loop(in, *warmup); err != nil {
			return err
		}
		calls, took, err := loop(in, *duration)
		if err != nil {
			return err
		}
		result = map[string]float64{"rows_per_s": float64(calls**batch) / took.Seconds()}
	case "latency":
		in, err := rows("int", 1)
		if err != nil {
			return err
		}
		if _, _, err := loop(in, *warmup); err != nil {
			return err
		}
		samples := make([]time.Duration, *n)
		for i := range samples {
			t := time.Now()
			if err := call(in); err != nil {
				return err
			}
			samples[i] = time.Since(t)
		}
		sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
		q := func(p float64) float64 {
			rank := int(math.Ceil(p * float64(len(samples))))
			rank = max(1, min(rank, len(samples)))
			return float64(samples[rank-1].Nanoseconds()) / 1e3
		}
		result = map[string]float64{"p50_us": q(0.5), "p99_us": q(0.99)}
	default:
		return fmt.Errorf("unknown -mode %q (throughput, latency or startup)", *mode)
	}
	return printJSON(result)
}

func printJSON(result any) error {
	line, err := json.Marshal(result)
	if err != nil {
		return err
	}
	fmt.Println(string(line))
	return nil
}

// start launches the plugin and dispenses its Echo service, as go-plugin hosts do.
func start(pluginPath string) (*plugin.Client, shared.Echoer, error) {
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  shared.Handshake,
		Plugins:          shared.PluginMap,
		Cmd:              exec.Command(pluginPath),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Off}),
	})
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, nil, fmt.Errorf("start plugin: %w", err)
	}
	raw, err := rpc.Dispense("echo")
	if err != nil {
		client.Kill()
		return nil, nil, fmt.Errorf("dispense: %w", err)
	}
	return client, raw.(shared.Echoer), nil
}

// startup times n+1 fresh plugin starts up to their first answered call and
// reports the RSS of the last plugin process.
func startup(ctx context.Context, pluginPath string, n int) error {
	runs := make([]float64, 0, n)
	var rssKB int64
	for i := 0; i <= n; i++ {
		t := time.Now()
		client, echo, err := start(pluginPath)
		if err != nil {
			return err
		}
		if _, err := echo.Echo(ctx, [][]byte{[]byte("x")}); err != nil {
			client.Kill()
			return fmt.Errorf("first call: %w", err)
		}
		took := time.Since(t)
		if i > 0 {
			runs = append(runs, float64(took.Microseconds())/1e3)
		}
		if i == n {
			if rc := client.ReattachConfig(); rc != nil {
				rssKB, err = vmRSS(rc.Pid)
				if err != nil {
					client.Kill()
					return err
				}
			}
		}
		client.Kill()
	}
	return printJSON(map[string]any{"runs_ms": runs, "plugin_rss_kb": rssKB})
}

// vmRSS reads VmRSS (kB) from /proc/<pid>/status.
func vmRSS(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

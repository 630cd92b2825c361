// Package oort writes Oort plugins in Go.
//
// An Oort plugin is an executable that the `oort` supervisor starts and talks
// to over a Unix socket (docs/protocol.md). This package does the whole
// handshake; you write the extension the way you would write an eKuiper Go
// plugin, against interfaces with eKuiper's names and shapes:
//
//	package main
//
//	import "github.com/oort-dev/oort/plugin-sdk/go/oort"
//
//	type echo struct{}
//
//	func (echo) Validate(args []oort.ArgSpec) error { return nil }
//	func (echo) IsAggregate() bool                { return false }
//	func (echo) Exec(args []any, _ oort.FunctionContext) (any, bool) {
//		return args[0], true
//	}
//
//	func main() {
//		oort.Serve(oort.Plugin{
//			Name:      "echo",
//			Version:   "1.0.0",
//			Functions: map[string]oort.Export{"echo": oort.Singleton(echo{})},
//		})
//	}
//
// # Layout
//
//   - Function, Source (plus Rewindable), Sink (plus TwoPhaseCommit and
//     PayloadSink): the three extension kinds. A sink's Collect may return
//     ItemErrors to acknowledge the items of a batch one by one.
//   - ColumnFunction: a Function that also computes whole batches on Apache
//     Arrow arrays, when the supervisor sends them as columns (see below);
//     RowErrors fails some rows of such a batch. ColumnSource and ColumnSink:
//     a Source that can read, and a Sink that can take, batches as Arrow
//     columns.
//   - StreamContext / FunctionContext: rule and instance identity, a logger,
//     eKuiper's five state calls (PutState, GetState, DeleteState,
//     IncrCounter, GetCounter), and ReportException for problems a source
//     went past.
//   - Plugin and Export: what the executable exports, each symbol as a
//     Constructor (a fresh object per instance, one process per rule), as a
//     Singleton (one shared object, one shared process) or as Shared (a fresh
//     object per instance, all in one shared process). The process is shared
//     only when every symbol of the plugin is a Singleton or Shared.
//   - Serve: the one entry point.
//   - NewTestContext and ReopenTestContext: contexts for unit tests, the
//     second one as a restarted process would see the state.
//   - StateMigration, StateSlot (ValueSlot, CounterSlot): what
//     Plugin.MigrateState converts when the state's layout changes between
//     releases (see State versions below).
//
// # Values
//
// Values cross the wire as Oort's dynamic Value. Going out (function results,
// record fields, state, offsets, handles), Go values convert as follows: nil →
// null; bool → bool; every signed integer type → int (int64); every unsigned
// integer type (uint, uint64, uint32, uint16, and uint8 outside []byte) →
// uint (uint64, so values above math.MaxInt64 are carried exactly);
// float32/float64 → float; string → string; []byte → bytes; slices and arrays
// → list; maps with string keys → map; json.Number → int, uint (integral,
// above int64's range) or float; time.Time → an RFC 3339 string; named types
// convert as their underlying kind and pointers as what they point to.
// Anything else (structs, channels, functions) is an error, which for a
// function result becomes that row's error.
//
// Coming in (arguments, record fields, properties, state), values are always
// nil, bool, int64, uint64, float64, string, []byte, []any or map[string]any.
// ToInt and ToFloat help with numbers of any of these types.
//
// # Columnar batches
//
// The SDK tells the supervisor it reads Exec batches as Arrow IPC columns
// (docs/protocol.md, "Columnar batches"), so a batch may arrive as one array
// per argument. A plain Function never sees the difference: the SDK converts
// each row to the Go values above, calls Exec per row and answers in rows. A
// ColumnFunction gets the arrays themselves in ExecColumns and answers with
// one array; batches that come as rows still go to its Exec.
//
// Sources and sinks opt in (docs/protocol.md, "Columnar sources and sinks"):
// a ColumnSource's ReadColumns is called instead of Read when the supervisor
// accepts columns on the Read stream, and a ColumnSink answers Open with
// takes_arrow and gets columnar batches in CollectColumns. Any other source
// or sink never sees Arrow.
//
// # Sinks that take bytes
//
// A sink that implements PayloadSink asks the supervisor for payloads: the
// supervisor encodes every item as eKuiper's runtime does (the action's
// format, dataTemplate, sendSingle, fields and delimiter properties) and the
// SDK calls CollectPayloads with them instead of Collect.
//
// # State
//
// State calls never leave the process: each instance's state is loaded when
// it opens, served from memory, and every change is shipped to the supervisor
// with the batch it was made in (a change made in Open goes with the next
// batch). A stateful function therefore costs about as much as a stateless
// one, and after a crash the restarted process sees the state as of the last
// batch the supervisor accepted.
//
// # State versions
//
// The state outlives the process, and so it outlives the build that wrote
// it: an upgraded plugin opens instances with state its previous release
// wrote. A plugin that changes the layout of its state (renames a key, turns
// a plain value into a counter) declares a new Plugin.StateVersion and
// converts older state in Plugin.MigrateState, which receives every key as a
// StateSlot and returns the state in the new layout. The supervisor asks for
// the migration before it opens an instance with state of another version;
// a refusal (an error, or no MigrateState at all) stops the upgrade and
// keeps the rule on the build it runs, with its state intact.
package oort

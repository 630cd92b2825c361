// Command conformance is the Go reference plugin of Oort's cross-language
// conformance suite. The Rust and Python SDKs ship a plugin with exactly the
// same behaviour.
//
// Functions (all constructor-exported, or all singleton when
// OORT_CONFORMANCE_SINGLETON=1; the source and sink stay constructors, as in
// the Rust reference plugin):
//
//	cf_echo(x)                → x (null without arguments); Validate: exactly 1 argument, else
//	                            "cf_echo expects 1 argument, got N". The one
//	                            columnar function (oort.ColumnFunction): a
//	                            columnar batch is answered with its argument
//	                            column itself, a row batch row by row
//	cf_fail(x)                → row error "cf_fail: <x>" when x is a string
//	                            starting with "bad", else x
//	cf_count(key)             → IncrCounter(key, 1), then GetCounter(key)
//	cf_state(op, key[, value])→ "put": PutState(key, value) → true;
//	                            "get": GetState(key) (null when absent);
//	                            "delete": DeleteState(key) → true;
//	                            "incr": IncrCounter(key, value) → GetCounter(key);
//	                            "counter": GetCounter(key) (row error for a
//	                            non-counter value)
//	cf_pid()                  → the process id
//	cf_agg(values)            → aggregate (IsAggregate true): one row per group,
//	                            values the group's list; {"n": items, nulls
//	                            included; "sum": sum of the int64 items, every
//	                            other item skipped (wrapping)}, then
//	                            IncrCounter("groups", 1); a non-list is the row
//	                            error "cf_agg expects a list, got <type>";
//	                            Validate: exactly 1 argument
//
// Source `conformance`: property count (int, default 100). Emits {"n": i}
// for i = next … count-1 in batches of at most max, then idles (returns
// nothing, sleeping 50 ms per call). Rewindable: the offset is Int(next);
// Rewind(Int k) sets next = k, an error when k < 0 or k > count.
//
// The source and sink keep their per-instance data keyed by instance id, so
// they would also work as singletons shared by several rules.
//
// Sink `conformance`: property path (required). Collect appends each
// record's fields to path as one JSON object per line (keys sorted, compact,
// serde_json's number format; flushed at the end of every batch).
// Transactional: PreCommit(id) flushes and fsyncs and returns Int(file length
// in bytes); Commit(id, handle) appends "commit <id> <handle>" to
// <path>.commits, Abort appends "abort <id> <handle>" (handle as JSON).
package main

import (
	"os"

	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

func main() {
	oort.Serve(plugin(os.Getenv("OORT_CONFORMANCE_SINGLETON") == "1"))
}

// export exports a fresh object per instance, or one shared object.
func export[T any](singleton bool, newObject func() T) oort.Export {
	if singleton {
		return oort.Singleton(newObject())
	}
	return oort.Constructor(newObject)
}

func plugin(singleton bool) oort.Plugin {
	return oort.Plugin{
		Name:    "conformance",
		Version: "1.0.0",
		Functions: map[string]oort.Export{
			"cf_echo":  export(singleton, func() echo { return echo{} }),
			"cf_fail":  export(singleton, func() fail { return fail{} }),
			"cf_count": export(singleton, func() count { return count{} }),
			"cf_state": export(singleton, func() state { return state{} }),
			"cf_pid":   export(singleton, func() pid { return pid{} }),
			"cf_agg":   export(singleton, func() agg { return agg{} }),
		},
		Source: oort.Constructor(newSource),
		Sink:   oort.Constructor(newSink),
		About: oort.About{
			Author:      oort.Author{Name: "Oort"},
			Description: map[string]string{"en_US": "Reference plugin of the cross-language conformance suite"},
		},
	}
}

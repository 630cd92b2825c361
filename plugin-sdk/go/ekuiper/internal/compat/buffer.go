package compat

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// DefaultBufferLength is the capacity of a push-style source's buffer when the
// stream sets no bufferLength: eKuiper's default buffer length.
const DefaultBufferLength = 1024

// ReadWait is how long Read waits for the first buffered item.
const ReadWait = 50 * time.Millisecond

// BufferLength is the bufferLength property, or DefaultBufferLength.
func BufferLength(props map[string]any) int {
	if n, ok := Number(props["bufferLength"]); ok && n >= 1 {
		return int(n)
	}
	return DefaultBufferLength
}

// Number reads a number given as a number or as a numeric string.
func Number(v any) (float64, bool) {
	switch x := v.(type) {
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil
	default:
		return oort.ToFloat(v)
	}
}

// Drain answers an Oort Read from a push source's buffer: it waits up to
// ReadWait for the first item, then takes what is buffered, at most max
// items, converting each with conv (which may yield several records, or none).
// The buffer is a bounded channel: a producer blocks when it is full, which is
// the back-pressure eKuiper's consumer channel gives.
func Drain[T any](ctx context.Context, ch <-chan T, max int, conv func(T, []oort.Record) []oort.Record) []oort.Record {
	var out []oort.Record
	timer := time.NewTimer(ReadWait)
	defer timer.Stop()
	select {
	case item := <-ch:
		out = conv(item, out)
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return nil
	}
	for len(out) < max {
		select {
		case item := <-ch:
			out = conv(item, out)
		default:
			return out
		}
	}
	return out
}

// Pending holds the records that did not fit in the last Read (an ingest of a
// list may yield more than the batch limit).
type Pending struct{ rest []oort.Record }

// Take returns up to max records: the pending ones first, then drained ones.
func (p *Pending) Take(max int, fill func(max int) []oort.Record) []oort.Record {
	if len(p.rest) == 0 {
		p.rest = fill(max)
	}
	n := min(max, len(p.rest))
	out := p.rest[:n:n]
	p.rest = p.rest[n:]
	if len(p.rest) == 0 {
		p.rest = nil
	}
	return out
}

// Interval reads eKuiper's interval property: a number of milliseconds, a
// numeric string, or a Go duration string ("10s"); def when absent.
func Interval(v any, def time.Duration) (time.Duration, error) {
	switch x := v.(type) {
	case nil:
		return def, nil
	case string:
		if f, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
			return time.Duration(f * float64(time.Millisecond)), nil
		}
		return time.ParseDuration(strings.TrimSpace(x))
	default:
		if f, ok := oort.ToFloat(v); ok {
			return time.Duration(f * float64(time.Millisecond)), nil
		}
	}
	return 0, &intervalError{v}
}

type intervalError struct{ v any }

func (e *intervalError) Error() string {
	return "interval must be milliseconds or a duration such as \"10s\", got " + strconv.Quote(strings.TrimSpace(toString(e.v)))
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := jsonMarshal(v)
	return string(b)
}

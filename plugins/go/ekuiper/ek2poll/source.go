// A pull source written against eKuiper 2.x's plugin contract: Provision,
// Connect, then Pull at every interval (the stream's interval property).
// Only the import path differs from an eKuiper plugin; main.go is the
// Oort-specific part.
package main

import (
	"fmt"
	"time"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/api"
)

type pollSource struct {
	start float64
	step  float64
	next  float64
}

func (s *pollSource) Provision(ctx api.StreamContext, configs map[string]any) error {
	s.step = 1
	switch v := configs["start"].(type) {
	case nil:
	case int:
		s.start = float64(v)
	case float64:
		s.start = v
	default:
		return fmt.Errorf("start must be a number, got %T", v)
	}
	if v, ok := configs["step"].(int); ok {
		s.step = float64(v)
	}
	return nil
}

func (s *pollSource) Connect(ctx api.StreamContext, sch api.StatusChangeHandler) error {
	s.next = s.start
	sch(api.ConnectionConnected, "")
	return nil
}

func (s *pollSource) Pull(ctx api.StreamContext, trigger time.Time, ingest api.TupleIngest, ingestError api.ErrorIngest) {
	seq := s.next
	s.next += s.step
	ingest(ctx, map[string]any{"seq": seq, "at": trigger.UnixMilli()}, map[string]any{"source": "ek2poll"}, trigger)
}

func (s *pollSource) Close(ctx api.StreamContext) error { return nil }

func GetSource() api.Source { return &pollSource{} }

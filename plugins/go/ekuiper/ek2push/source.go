// A push source written against eKuiper 2.x's plugin contract: Provision,
// Connect, then Subscribe with an ingest callback, fed from its own goroutine
// until Close. Only the import path differs from an eKuiper plugin; main.go
// is the Oort-specific part.
package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/api"
)

type pushSource struct {
	every  time.Duration
	batch  int
	cancel func()
	done   chan struct{}
}

func (s *pushSource) Provision(ctx api.StreamContext, configs map[string]any) error {
	s.every = 20 * time.Millisecond
	s.batch = 2
	if v, ok := configs["batch"]; ok {
		n, ok := v.(int)
		if !ok || n < 1 {
			return fmt.Errorf("batch must be a positive integer, got %v", v)
		}
		s.batch = n
	}
	return nil
}

func (s *pushSource) Connect(ctx api.StreamContext, sch api.StatusChangeHandler) error {
	sch(api.ConnectionConnected, "")
	return nil
}

func (s *pushSource) Subscribe(ctx api.StreamContext, ingest api.TupleIngest, ingestError api.ErrorIngest) error {
	sub, cancel := ctx.WithCancel()
	s.cancel = cancel
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		k := 0
		ticker := time.NewTicker(s.every)
		defer ticker.Stop()
		for {
			select {
			case <-sub.Done():
				return
			case now := <-ticker.C:
				rows := make([]map[string]any, 0, s.batch)
				for range s.batch {
					k++
					rows = append(rows, map[string]any{"k": k, "label": fmt.Sprintf("item-%d", k)})
				}
				ingest(sub, rows, nil, now)
				if k%10 == 0 {
					ingestError(sub, errors.New("every tenth item is a reported problem"))
				}
			}
		}
	}()
	return nil
}

func (s *pushSource) Close(ctx api.StreamContext) error {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	return nil
}

func GetSource() api.Source { return &pushSource{} }

// A bytes source written against eKuiper 2.x's plugin contract: Provision,
// Connect, then Subscribe with a BytesIngest. It ingests each string of the
// `payloads` property once, as raw bytes and in order (the first at once,
// then one every `interval` ms), and then nothing until Close: a finite,
// predictable stream whose payloads the runtime decodes per the stream's
// FORMAT (json, binary or delimited). Only the import path differs from an
// eKuiper plugin; main.go is the Oort-specific part.
package main

import (
	"fmt"
	"time"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/api"
)

type bytesSource struct {
	payloads [][]byte
	interval time.Duration
	cancel   func()
	done     chan struct{}
}

func (s *bytesSource) Provision(ctx api.StreamContext, configs map[string]any) error {
	payloads, err := stringsProp(configs, "payloads")
	if err != nil {
		return err
	}
	ms, err := intProp(configs, "interval", 10)
	if err != nil {
		return err
	}
	if ms < 0 {
		return fmt.Errorf("interval must not be negative, got %d", ms)
	}
	s.payloads = make([][]byte, len(payloads))
	for i, p := range payloads {
		s.payloads[i] = []byte(p)
	}
	s.interval = time.Duration(ms) * time.Millisecond
	return nil
}

// stringsProp reads a required list of strings. A YAML or JSON list reaches
// Provision as []any, so each element is checked; []string is taken too, for
// callers that build the configs in Go.
func stringsProp(configs map[string]any, key string) ([]string, error) {
	switch v := configs[key].(type) {
	case nil:
		return nil, fmt.Errorf("property %s is required: a list of strings", key)
	case []string:
		return v, nil
	case []any:
		out := make([]string, len(v))
		for i, e := range v {
			str, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%s must be a list of strings, element %d is a %T", key, i, e)
			}
			out[i] = str
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%s must be a list of strings, got a %T", key, v)
	}
}

// intProp reads an integral property. Source properties come as eKuiper's
// YAML configuration gives them (integers as int), but an int64 or an
// integral float64 is taken too, in case the value went through JSON.
func intProp(configs map[string]any, key string, def int) (int, error) {
	switch v := configs[key].(type) {
	case nil:
		return def, nil
	case int:
		return v, nil
	case int64:
		return int(v), nil
	case float64:
		if v != float64(int(v)) {
			return 0, fmt.Errorf("%s must be an integer, got %v", key, v)
		}
		return int(v), nil
	default:
		return 0, fmt.Errorf("%s must be an integer, got a %T", key, v)
	}
}

func (s *bytesSource) Connect(ctx api.StreamContext, sch api.StatusChangeHandler) error {
	sch(api.ConnectionConnected, "")
	return nil
}

func (s *bytesSource) Subscribe(ctx api.StreamContext, ingest api.BytesIngest, ingestError api.ErrorIngest) error {
	// Subscribe must return for the rule to start, so the payloads are
	// ingested from a goroutine, stopped through its own cancel at Close.
	sub, cancel := ctx.WithCancel()
	s.cancel = cancel
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		for i, p := range s.payloads {
			if i > 0 && s.interval > 0 {
				select {
				case <-time.After(s.interval):
				case <-sub.Done():
					return
				}
			}
			// ingest blocks while the rule's buffer is full and drops the
			// payload once the source is closed, so the order holds and
			// nothing is lost before Close.
			ingest(sub, p, nil, time.Now())
		}
		if sub.Err() == nil {
			ctx.GetLogger().Infof("ek2bytesrc: all %d payloads ingested; quiet until closed", len(s.payloads))
		}
	}()
	return nil
}

func (s *bytesSource) Close(ctx api.StreamContext) error {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	return nil
}

func GetSource() api.Source { return &bytesSource{} }

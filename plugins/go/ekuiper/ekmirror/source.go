// A portable plugin written as eKuiper's portable Go SDK has it: one
// executable with a source, a sink and two functions, against the eKuiper
// 1.x api (the portable SDK's interfaces are the same). Only the imports and
// main differ from an eKuiper portable plugin.
package main

import (
	"fmt"
	"time"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/api"
)

// mirrorSource emits {"seq": n, "text": "m<n>"} for n = 0 … count-1, the
// first at once and then one every interval, and then nothing more: a finite,
// predictable stream to check a rule's output against.
type mirrorSource struct {
	count    int
	interval time.Duration
}

// intProp reads an integral property. Source properties come as eKuiper's
// YAML configuration gives them (integers as int), but a float64 is taken
// too, in case the value went through JSON on its way.
func intProp(props map[string]interface{}, key string, def int) (int, error) {
	switch v := props[key].(type) {
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
		return 0, fmt.Errorf("%s must be an integer, got %T", key, v)
	}
}

func (s *mirrorSource) Configure(_ string, props map[string]interface{}) error {
	count, err := intProp(props, "count", 10)
	if err != nil {
		return err
	}
	ms, err := intProp(props, "interval", 1000)
	if err != nil {
		return err
	}
	if count < 0 || ms < 0 {
		return fmt.Errorf("count and interval must not be negative, got %d and %d", count, ms)
	}
	s.count, s.interval = count, time.Duration(ms)*time.Millisecond
	return nil
}

func (s *mirrorSource) Open(ctx api.StreamContext, consumer chan<- api.SourceTuple, _ chan<- error) {
	ctx.GetLogger().Infof("ekmirrorsrc emits %d tuples every %v", s.count, s.interval)
	for n := range s.count {
		if n > 0 && s.interval > 0 {
			select {
			case <-time.After(s.interval):
			case <-ctx.Done():
				return
			}
		}
		message := map[string]interface{}{"seq": n, "text": fmt.Sprintf("m%d", n)}
		select {
		case consumer <- api.NewDefaultSourceTuple(message, nil):
		case <-ctx.Done():
			return
		}
	}
	// Done emitting: stay open (the rule keeps running) until closed.
	<-ctx.Done()
}

func (s *mirrorSource) Close(api.StreamContext) error { return nil }

// EkMirrorSrc is the source's constructor (eKuiper's NewSourceFunc).
func EkMirrorSrc() api.Source { return &mirrorSource{} }

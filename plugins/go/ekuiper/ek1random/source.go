// A source written against eKuiper 1.x's native plugin API (pkg/api): push
// style, Configure then Open with a consumer channel. Only the import path
// differs from an eKuiper plugin; main.go is the Oort-specific part.
package main

import (
	"fmt"
	"time"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/api"
)

type randomSource struct {
	interval   time.Duration
	word       []string
	datasource string
}

func (s *randomSource) Configure(datasource string, props map[string]interface{}) error {
	s.datasource = datasource
	s.interval = time.Second
	switch i := props["interval"].(type) {
	case nil:
	case int: // from the YAML configuration
		s.interval = time.Duration(i) * time.Millisecond
	case float64:
		s.interval = time.Duration(i * float64(time.Millisecond))
	default:
		return fmt.Errorf("interval must be a number, got %T", i)
	}
	s.word = []string{"alpha", "beta", "gamma", "delta"}
	if w, ok := props["words"].([]interface{}); ok && len(w) > 0 {
		s.word = s.word[:0]
		for _, v := range w {
			s.word = append(s.word, fmt.Sprint(v))
		}
	}
	return nil
}

func (s *randomSource) Open(ctx api.StreamContext, consumer chan<- api.SourceTuple, errCh chan<- error) {
	logger := ctx.GetLogger()
	logger.Infof("ek1random %s opened, every %v", s.datasource, s.interval)
	ticker := time.NewTicker(s.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			if err := ctx.IncrCounter("n", 1); err != nil {
				errCh <- err
				return
			}
			n, err := ctx.GetCounter("n")
			if err != nil {
				errCh <- err
				return
			}
			message := map[string]interface{}{"n": n, "one": 1, "word": s.word[(n-1)%len(s.word)]}
			meta := map[string]interface{}{"datasource": s.datasource}
			select {
			case consumer <- api.NewDefaultSourceTuple(message, meta):
			case <-ctx.Done():
				return
			}
		case <-ctx.Done():
			logger.Infof("ek1random %s done", s.datasource)
			return
		}
	}
}

func (s *randomSource) Close(ctx api.StreamContext) error {
	ctx.GetLogger().Infof("ek1random %s closing", s.datasource)
	return nil
}

func Ek1Random() api.Source { return &randomSource{} }

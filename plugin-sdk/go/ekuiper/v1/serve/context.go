package serve

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/internal/compat"
	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/api"
	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// streamContext implements api.StreamContext and api.FunctionContext on an
// Oort instance context.
type streamContext struct {
	compat.Core
	// dataTemplate is a sink's dataTemplate property, used by TransformOutput.
	dataTemplate string
}

func newContext(o oort.StreamContext) *streamContext {
	return &streamContext{Core: compat.NewCore(o)}
}

// NewTestContext returns a context for unit-testing eKuiper-style extensions
// outside the supervisor (see oort.NewTestContext).
func NewTestContext(ruleID, opID string) api.FunctionContext {
	return newContext(oort.NewTestContext(ruleID, opID))
}

// Wrap returns the eKuiper 1.x context of an Oort instance context.
func Wrap(o oort.StreamContext) api.FunctionContext { return newContext(o) }

func (c *streamContext) GetLogger() api.Logger { return c.Core.GetLogger() }

func (c *streamContext) WithCancel() (api.StreamContext, context.CancelFunc) {
	ctx, cancel := context.WithCancel(c.Core.Context)
	return &streamContext{Core: c.Derive(ctx), dataTemplate: c.dataTemplate}, cancel
}

func (c *streamContext) TransformOutput(data any) ([]byte, bool, error) {
	if c.dataTemplate != "" {
		s, err := c.ParseTemplate(c.dataTemplate, data)
		if err != nil {
			return nil, false, fmt.Errorf("dataTemplate: %w", err)
		}
		return []byte(s), true, nil
	}
	p, err := compat.Plain(data)
	if err != nil {
		return nil, false, err
	}
	b, err := json.Marshal(p)
	return b, false, err
}

func (c *streamContext) Decode(data []byte) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decode json: %w", err)
	}
	return m, nil
}

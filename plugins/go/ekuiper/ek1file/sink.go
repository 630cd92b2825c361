// A sink written against eKuiper 1.x's native plugin API (pkg/api):
// Configure, Open, Collect(ctx, data) and Close. It appends each row as a
// JSON line. Only the import path differs from an eKuiper plugin; main.go is
// the Oort-specific part.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/api"
)

type fileSink struct {
	path    string
	limit   int
	written int
	file    *os.File
}

func (m *fileSink) Configure(props map[string]interface{}) error {
	p, ok := props["path"].(string)
	if !ok || p == "" {
		return fmt.Errorf("property path is required")
	}
	m.path = p
	if l, ok := props["limit"]; ok {
		f, ok := l.(float64)
		if !ok {
			return fmt.Errorf("limit must be a number, got %T", l)
		}
		m.limit = int(f)
	}
	return nil
}

func (m *fileSink) Open(ctx api.StreamContext) error {
	f, err := os.OpenFile(m.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	m.file = f
	ctx.GetLogger().Infof("ek1file writes to %s", m.path)
	return nil
}

func (m *fileSink) write(row map[string]interface{}) error {
	if m.limit > 0 && m.written >= m.limit {
		return nil
	}
	b, err := json.Marshal(row)
	if err != nil {
		return err
	}
	m.written++
	_, err = m.file.Write(append(b, '\n'))
	return err
}

func (m *fileSink) Collect(ctx api.StreamContext, data interface{}) error {
	switch d := data.(type) {
	case map[string]interface{}:
		return m.write(d)
	case []map[string]interface{}:
		for _, row := range d {
			if err := m.write(row); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("unexpected data %T", data)
	}
}

func (m *fileSink) Close(ctx api.StreamContext) error {
	if m.file == nil {
		return nil
	}
	return m.file.Close()
}

func Ek1File() api.Sink { return &fileSink{} }

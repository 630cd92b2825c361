package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/api"
)

// mirrorSink appends what it collects to the file at path, as JSON lines: a
// batch ([]map[string]interface{}) one line per row, anything else (a single
// row with sendSingle) one line.
type mirrorSink struct {
	path string
	file *os.File
}

func (m *mirrorSink) Configure(props map[string]interface{}) error {
	p, ok := props["path"].(string)
	if !ok || p == "" {
		return fmt.Errorf("property path is required")
	}
	m.path = p
	return nil
}

func (m *mirrorSink) Open(ctx api.StreamContext) error {
	f, err := os.OpenFile(m.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	m.file = f
	ctx.GetLogger().Infof("ekmirrorsink appends to %s", m.path)
	return nil
}

func (m *mirrorSink) Collect(_ api.StreamContext, data interface{}) error {
	var buf []byte
	appendLine := func(v interface{}) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		buf = append(append(buf, b...), '\n')
		return nil
	}
	if rows, ok := data.([]map[string]interface{}); ok {
		for _, row := range rows {
			if err := appendLine(row); err != nil {
				return err
			}
		}
	} else if err := appendLine(data); err != nil {
		return err
	}
	// Encode the whole batch before writing: a row that cannot be encoded
	// fails the batch without leaving part of it in the file.
	_, err := m.file.Write(buf)
	return err
}

func (m *mirrorSink) Close(api.StreamContext) error {
	if m.file == nil {
		return nil
	}
	return m.file.Close()
}

// EkMirrorSink is the sink's constructor (eKuiper's NewSinkFunc).
func EkMirrorSink() api.Sink { return &mirrorSink{} }

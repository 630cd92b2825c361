// A sink written against eKuiper 2.x's plugin contract as a BytesCollector:
// Provision, Connect, Collect of a RawTuple, Close. The supervisor encodes
// the rule's output (per the action's format, dataTemplate and sendSingle)
// and each payload arrives in one Collect, which appends it and a newline to
// the file at `path`. A payload containing the text "fail" (with the quotes,
// e.g. {"word":"fail"}) is refused: Collect returns an error, which becomes
// that payload's error while the others are written. Only the import path
// differs from an eKuiper plugin; main.go is the Oort-specific part.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/api"
)

type bytesFileSink struct {
	path string
	file *os.File
}

func (f *bytesFileSink) Provision(ctx api.StreamContext, configs map[string]any) error {
	p, ok := configs["path"].(string)
	if !ok || p == "" {
		return errors.New("property path is required")
	}
	f.path = p
	return nil
}

func (f *bytesFileSink) Connect(ctx api.StreamContext, sch api.StatusChangeHandler) error {
	file, err := os.OpenFile(f.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		sch(api.ConnectionDisconnected, err.Error())
		return err
	}
	f.file = file
	sch(api.ConnectionConnected, "")
	return nil
}

func (f *bytesFileSink) Collect(ctx api.StreamContext, item api.RawTuple) error {
	payload := item.Raw()
	if bytes.Contains(payload, []byte(`"fail"`)) {
		return fmt.Errorf("refused payload %s", payload)
	}
	// One write per payload, so that a line is never split between two
	// writers of the same file.
	_, err := f.file.Write(append(append(make([]byte, 0, len(payload)+1), payload...), '\n'))
	return err
}

func (f *bytesFileSink) Close(ctx api.StreamContext) error {
	if f.file == nil {
		return nil
	}
	return f.file.Close()
}

func GetSink() api.Sink { return &bytesFileSink{} }

// A sink written against eKuiper 2.x's plugin contract: Provision, Connect,
// Collect of a MessageTuple (and CollectList), Close. It appends each row as
// a JSON line. Only the import path differs from an eKuiper plugin; main.go
// is the Oort-specific part.
package main

import (
	"encoding/json"
	"errors"
	"os"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/api"
)

type fileSink struct {
	path string
	file *os.File
}

func (f *fileSink) Provision(ctx api.StreamContext, configs map[string]any) error {
	p, ok := configs["path"].(string)
	if !ok || p == "" {
		return errors.New("property path is required")
	}
	f.path = p
	return nil
}

func (f *fileSink) Connect(ctx api.StreamContext, sch api.StatusChangeHandler) error {
	file, err := os.OpenFile(f.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		sch(api.ConnectionDisconnected, err.Error())
		return err
	}
	f.file = file
	sch(api.ConnectionConnected, "")
	return nil
}

func (f *fileSink) Collect(ctx api.StreamContext, item api.MessageTuple) error {
	b, err := json.Marshal(item.ToMap())
	if err != nil {
		return err
	}
	_, err = f.file.Write(append(b, '\n'))
	return err
}

func (f *fileSink) CollectList(ctx api.StreamContext, items api.MessageTupleList) error {
	var err error
	items.RangeOfTuples(func(_ int, tuple api.MessageTuple) bool {
		err = f.Collect(ctx, tuple)
		return err == nil
	})
	return err
}

func (f *fileSink) Close(ctx api.StreamContext) error {
	if f.file == nil {
		return nil
	}
	return f.file.Close()
}

func GetSink() api.Sink { return &fileSink{} }

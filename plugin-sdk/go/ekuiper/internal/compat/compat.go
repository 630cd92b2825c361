// Package compat holds what the eKuiper 1.x and 2.x layers share: the value
// conversions eKuiper's runtime does, the context core on top of an Oort
// instance context, the bounded buffer of push-style sources, and the plugin
// name taken from the executable.
package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// Plain turns v into values the Oort SDK converts: structs (and maps with
// non-string keys) go through encoding/json, so their JSON tags name the map
// keys, as eKuiper's runtime sees them; maps and slices are walked.
func Plain(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool, string, []byte, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64,
		float32, float64, json.Number, time.Time:
		return v, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			p, err := Plain(e)
			if err != nil {
				return nil, err
			}
			out[k] = p
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			p, err := Plain(e)
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
		return out, nil
	case []map[string]any:
		out := make([]any, len(x))
		for i, e := range x {
			p, err := Plain(e)
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
		return out, nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return nil, nil
		}
		if rv.Kind() == reflect.Pointer && rv.Elem().Kind() == reflect.Struct {
			return viaJSON(v)
		}
		return Plain(rv.Elem().Interface())
	case reflect.Struct:
		return viaJSON(v)
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return viaJSON(v)
		}
		out := make(map[string]any, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			p, err := Plain(it.Value().Interface())
			if err != nil {
				return nil, err
			}
			out[it.Key().String()] = p
		}
		return out, nil
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return nil, nil
		}
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			return v, nil // bytes, as the SDK converts them
		}
		out := make([]any, rv.Len())
		for i := range rv.Len() {
			p, err := Plain(rv.Index(i).Interface())
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
		return out, nil
	}
	return v, nil
}

// viaJSON encodes v with encoding/json and decodes it back into plain values,
// keeping numbers exact (json.Number).
func viaJSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("cannot convert a %T: %w", v, err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out any
	if err := d.Decode(&out); err != nil {
		return nil, fmt.Errorf("cannot convert a %T: %w", v, err)
	}
	return out, nil
}

// PlainMap is Plain for a map result that must stay a map.
func PlainMap(v any) (map[string]any, error) {
	p, err := Plain(v)
	if err != nil {
		return nil, err
	}
	switch m := p.(type) {
	case map[string]any:
		return m, nil
	case nil:
		return nil, nil
	default:
		return nil, fmt.Errorf("expected a map (or a struct), got a %T", v)
	}
}

// SinkProps returns a sink's properties as eKuiper's runtime hands them to
// Configure/Provision: decoded from the rule's JSON, so every number is a
// float64.
func SinkProps(props map[string]any) map[string]any {
	return convertNumbers(props, numbers{
		ints:  func(i int64) any { return float64(i) },
		uints: func(u uint64) any { return float64(u) },
	})
}

// SourceProps returns a source's properties as eKuiper's runtime hands them
// to Configure/Provision: decoded from its YAML configuration, so integral
// numbers are int (uint64 above int's range, as YAML decoders give them) and
// the others float64; and with "format" ("json" unless the properties name
// one), which eKuiper adds from the stream's FORMAT.
func SourceProps(props map[string]any) map[string]any {
	out := convertNumbers(props, numbers{
		ints: func(i int64) any { return int(i) },
		uints: func(u uint64) any {
			if u <= math.MaxInt {
				return int(u)
			}
			return u
		},
	})
	if _, ok := out["format"]; !ok {
		out["format"] = "json"
	}
	return out
}

// numbers says what the integers of the wire become.
type numbers struct {
	ints  func(int64) any
	uints func(uint64) any
}

func convertNumbers(props map[string]any, conv numbers) map[string]any {
	out := make(map[string]any, len(props))
	for k, v := range props {
		out[k] = convertNumber(v, conv)
	}
	return out
}

func convertNumber(v any, conv numbers) any {
	switch x := v.(type) {
	case int64:
		return conv.ints(x)
	case uint64:
		return conv.uints(x)
	case map[string]any:
		return convertNumbers(x, conv)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = convertNumber(e, conv)
		}
		return out
	}
	return v
}

// PluginNameEnv is the environment variable in which the supervisor passes
// the name it expects the plugin's Describe to report.
const PluginNameEnv = "OORT_PLUGIN_NAME"

// PluginName is the plugin name the supervisor expects: OORT_PLUGIN_NAME when
// it is set and non-empty, since the supervisor sets it to exactly the name it
// will check (the executable may be a copy or link under another name, as an
// eKuiper portable package's executable is), else the executable's file name
// without its "@version" suffix, which is how the supervisor names a plugin
// file (and what a run by hand, e.g. with --metadata, has to go by).
func PluginName() string {
	if name := os.Getenv(PluginNameEnv); name != "" {
		return name
	}
	name := filepath.Base(os.Args[0])
	if i := strings.IndexByte(name, '@'); i > 0 {
		name = name[:i]
	}
	return name
}

// typedState remembers the values as they were put (or as GetState rebuilt
// them after a restart), so that GetState returns them typed, as eKuiper
// keeps them in memory; the Oort state holds their plain form and the
// companion keys, which is what survives a restart.
type typedState struct {
	mu     sync.Mutex
	values map[string]any
}

// Core is the part of eKuiper's StreamContext that both versions share, on
// top of one Oort instance context. Derived contexts (WithCancel) share the
// instance, its state and its logger.
type Core struct {
	context.Context
	O     oort.StreamContext
	typed *typedState
}

// NewCore wraps an Oort instance context.
func NewCore(o oort.StreamContext) Core {
	return Core{Context: o, O: o, typed: &typedState{values: map[string]any{}}}
}

// Derive returns the core with another context.Context (same instance).
func (c Core) Derive(ctx context.Context) Core {
	return Core{Context: ctx, O: c.O, typed: c.typed}
}

func (c Core) GetLogger() oort.Logger { return c.O.GetLogger() }
func (c Core) GetRuleId() string      { return c.O.GetRuleId() }
func (c Core) GetOpId() string        { return c.O.GetOpId() }

// GetInstanceId is eKuiper's parallel-instance number: Oort runs one instance
// per operator, number 0.
func (c Core) GetInstanceId() int { return 0 }

// GetFuncId is eKuiper's call-site number; Oort's call sites are separate
// instances, each seeing 0.
func (c Core) GetFuncId() int { return 0 }

// GetRootPath is the plugin process's working folder.
func (c Core) GetRootPath() string {
	wd, _ := os.Getwd()
	return wd
}

// SetError reports err as an exception of the instance.
func (c Core) SetError(err error) {
	if err != nil {
		c.O.ReportException(err.Error())
	}
}

// PutState stores the value's plain form (see Plain) and, when the plain form
// would read back as another Go type, the type's description under the
// companion key (key + TypeKeySuffix), so that GetState returns the value
// typed also after a restart.
func (c Core) PutState(key string, value any) error {
	if reservedKey(key) {
		return errReservedKey(key)
	}
	p, err := Plain(value)
	if err != nil {
		return fmt.Errorf("state key %q: %w", key, err)
	}
	if err := c.O.PutState(key, p); err != nil {
		return err
	}
	t := reflect.TypeOf(value)
	if d, ok := describe(t); ok && needsType(t) {
		// Most puts repeat the type of the last one: ship the companion only
		// when it changes.
		if old, _ := c.O.GetState(key + TypeKeySuffix); old != d {
			err = c.O.PutState(key+TypeKeySuffix, d)
		}
	} else {
		// The plain form is all there is to know (or all that can be
		// rebuilt): no companion, and none left from an earlier value.
		err = c.O.DeleteState(key + TypeKeySuffix)
	}
	if err != nil {
		return err
	}
	c.typed.mu.Lock()
	c.typed.values[key] = value
	c.typed.mu.Unlock()
	return nil
}

// GetState returns the value as it was put: from memory, or, in a process
// that did not put it (after a restart), converted back from its plain form
// into the type its companion key records. A type that is not registered in
// this process (see RegisterStateType) reads back in its plain form, a struct
// as a map[string]any.
func (c Core) GetState(key string) (any, error) {
	if reservedKey(key) {
		return nil, errReservedKey(key)
	}
	c.typed.mu.Lock()
	v, ok := c.typed.values[key]
	c.typed.mu.Unlock()
	if ok {
		return v, nil
	}
	plain, err := c.O.GetState(key)
	if err != nil {
		return nil, err
	}
	d, err := c.O.GetState(key + TypeKeySuffix)
	if err != nil {
		return nil, err
	}
	desc, _ := d.(string)
	t, ok := typeOf(desc)
	if !ok {
		return plain, nil
	}
	typed, err := restore(plain, t)
	if err != nil {
		return nil, fmt.Errorf("state key %q: cannot read the value back as a %s: %w", key, t, err)
	}
	v = typed.Interface()
	c.typed.mu.Lock()
	c.typed.values[key] = v
	c.typed.mu.Unlock()
	return v, nil
}

func (c Core) DeleteState(key string) error {
	if reservedKey(key) {
		return errReservedKey(key)
	}
	c.forget(key)
	if err := c.O.DeleteState(key); err != nil {
		return err
	}
	return c.O.DeleteState(key + TypeKeySuffix)
}

func (c Core) IncrCounter(key string, amount int) error {
	if reservedKey(key) {
		return errReservedKey(key)
	}
	if err := c.O.IncrCounter(key, amount); err != nil {
		return err
	}
	c.forget(key)
	return c.O.DeleteState(key + TypeKeySuffix)
}

func (c Core) GetCounter(key string) (int, error) {
	if reservedKey(key) {
		return 0, errReservedKey(key)
	}
	return c.O.GetCounter(key)
}

func (c Core) forget(key string) {
	c.typed.mu.Lock()
	delete(c.typed.values, key)
	c.typed.mu.Unlock()
}

// ParseTemplate renders a Go text/template with data, as eKuiper's
// dataTemplate does.
func (c Core) ParseTemplate(tmpl string, data any) (string, error) {
	t, err := template.New("t").Parse(tmpl)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// ContextCache maps each Oort instance context to its eKuiper context, for
// singleton functions whose Exec gets a context per call. An entry is dropped
// when its instance closes.
type ContextCache[T any] struct {
	m    sync.Map
	make func(oort.StreamContext) T
}

// NewContextCache makes a cache that builds contexts with make.
func NewContextCache[T any](make func(oort.StreamContext) T) *ContextCache[T] {
	return &ContextCache[T]{make: make}
}

// Get returns the context for o, building it on first use.
func (c *ContextCache[T]) Get(o oort.StreamContext) T {
	if v, ok := c.m.Load(o); ok {
		return v.(T)
	}
	v, loaded := c.m.LoadOrStore(o, c.make(o))
	if !loaded {
		go func() {
			<-o.Done()
			c.m.Delete(o)
		}()
	}
	return v.(T)
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

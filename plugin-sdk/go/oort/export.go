package oort

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"sync"
)

// Plugin is everything one plugin executable exports. Pass it to Serve.
//
//	oort.Serve(oort.Plugin{
//		Name:    "geohash",
//		Version: "1.0.0",
//		Functions: map[string]oort.Export{
//			"geohashEncode": oort.Singleton(&encode{}),
//			"geohashDecode": oort.Constructor(NewDecode),
//		},
//	})
type Plugin struct {
	// Name is the plugin's name, which must equal the executable's file name
	// (first letter in either case) and follow eKuiper's rule
	// ^[A-Za-z0-9_-]+$.
	Name string
	// Version is informational: the supervisor reports the version in the
	// file name instead.
	Version string
	// Functions maps SQL function names to the Function they call. List
	// them all in the plugin's metadata file <name>.json as well.
	Functions map[string]Export
	// Source, when set, exports a Source named after the plugin.
	Source Export
	// Sink, when set, exports a Sink named after the plugin.
	Sink Export

	// About and FunctionHelp only feed Metadata, the plugin's metadata file.
	About        About
	FunctionHelp map[string]FunctionHelp

	// StateVersion is the version of the state layout this plugin's
	// instances write: the keys they use and what each holds. Describe
	// reports it, and the supervisor records it with the state it keeps, so
	// that a newer (or older) build of the plugin is never handed state it
	// would misread. Raise it whenever a release changes how its state is
	// laid out, and give MigrateState the conversion. 0, the zero value,
	// means undeclared, which suits a plugin that keeps no state or has never
	// changed its layout.
	StateVersion uint32
	// MigrateState converts the state of one instance written under another
	// state version into StateVersion's layout. The supervisor calls it
	// before it opens an instance with state of another version (after an
	// upgrade or a rollback), and before an upgrade moves a rule, to learn
	// whether the new build accepts the rule's state; the instance is then
	// opened with what MigrateState returned, which replaces the old state
	// entirely (keys it leaves out are dropped).
	//
	// Return an error to refuse state the plugin cannot read (its message is
	// the refusal the supervisor reports, so say what is wrong): the
	// supervisor then stops the upgrade and the rule keeps running on the version it
	// has, so its state is never lost. A panic counts as a refusal. Without
	// MigrateState every such state is refused, which is the safe default
	// for a plugin that raised StateVersion without saying how to convert.
	// The supervisor never asks to migrate state already in StateVersion's
	// layout, nor empty state.
	//
	// MigrateState may run concurrently for several instances and while
	// other instances serve batches; it sees only the state it is given.
	MigrateState func(m StateMigration) (map[string]StateSlot, error)
}

// Export is how one symbol is exported, after eKuiper's two export styles
// plus Shared. Make one with Constructor, Singleton or Shared; the zero Export
// exports nothing.
//
// The supervisor runs one shared process for every rule only when every
// symbol of the plugin is reported as a singleton (exported with Singleton or
// Shared); otherwise each rule gets its own process.
type Export struct {
	// singleton: Describe reports the symbol as a singleton, so that one
	// process may serve every rule (Singleton and Shared).
	singleton bool
	// make returns the object for a newly opened instance: the one object of
	// a Singleton, a fresh one for Constructor and Shared.
	make func() any
	typ  reflect.Type
	// lock serializes the calls on a singleton source or sink object; nil
	// when every instance has an object of its own (Constructor, Shared).
	lock *sync.Mutex
}

// Constructor exports a factory: every opened instance (every rule, and for
// functions every call site) gets a fresh object from newObject. This is the
// recommended style, and eKuiper's `func MySource() api.Source`.
func Constructor[T any](newObject func() T) Export {
	if newObject == nil {
		return Export{}
	}
	return Export{make: func() any { return newObject() }, typ: reflect.TypeFor[T]()}
}

// Singleton exports one object shared by every rule, served by one shared
// process. Use it for stateless, performance-critical functions; keep
// per-rule data in the context's state.
func Singleton(object any) Export {
	if object == nil {
		return Export{}
	}
	return Export{singleton: true, make: func() any { return object }, typ: reflect.TypeOf(object), lock: &sync.Mutex{}}
}

// Shared exports a factory whose objects all live in one shared process:
// every opened instance (every rule, and for functions every call site) gets
// a fresh object from newObject, as with Constructor, but Describe reports the
// symbol as a singleton, so the supervisor runs one process for every rule
// (when every symbol of the plugin is a Singleton or Shared) instead of one
// per rule. The cheap way to serve many rules with per-rule objects (a
// reader, a file, a counter); a crash of that process restarts every rule's
// instance on it (each reopened with its state), so keep Constructor for
// plugins that need isolation per rule.
func Shared[T any](newObject func() T) Export {
	if newObject == nil {
		return Export{}
	}
	return Export{singleton: true, make: func() any { return newObject() }, typ: reflect.TypeFor[T]()}
}

// IsSet reports whether the Export exports anything.
func (e Export) IsSet() bool { return e.make != nil }

// IsSingleton reports whether Describe reports the symbol as a singleton,
// which is what the supervisor shares one process among rules by: true for
// Singleton and Shared. Whether the instances share one object is
// SharesObject.
func (e Export) IsSingleton() bool { return e.singleton }

// SharesObject reports whether every opened instance gets the same object:
// true for Singleton only (Constructor and Shared make one per instance).
func (e Export) SharesObject() bool { return e.lock != nil }

var (
	nameRule     = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	functionType = reflect.TypeFor[Function]()
	sourceType   = reflect.TypeFor[Source]()
	sinkType     = reflect.TypeFor[Sink]()
)

// Check reports what is wrong with the plugin's description, if anything:
// an invalid name, no symbol at all, or an object that does not implement
// the interface of the slot it is exported in. Serve runs it first.
func (p Plugin) Check() error {
	var errs []error
	if !nameRule.MatchString(p.Name) {
		errs = append(errs, fmt.Errorf("plugin name %q does not match ^[A-Za-z0-9_-]+$", p.Name))
	}
	if len(p.Functions) == 0 && !p.Source.IsSet() && !p.Sink.IsSet() {
		errs = append(errs, errors.New("it exports no function, source or sink"))
	}
	for _, name := range p.functionNames() {
		e := p.Functions[name]
		switch {
		case name == "":
			errs = append(errs, errors.New("a function has an empty name"))
		case !e.IsSet():
			errs = append(errs, fmt.Errorf("function %q is exported as nothing (use oort.Constructor, oort.Singleton or oort.Shared)", name))
		default:
			errs = append(errs, implements(fmt.Sprintf("function %q", name), e, functionType))
		}
	}
	if p.Source.IsSet() {
		errs = append(errs, implements("the source", p.Source, sourceType))
	}
	if p.Sink.IsSet() {
		errs = append(errs, implements("the sink", p.Sink, sinkType))
	}
	return errors.Join(errs...)
}

func implements(what string, e Export, iface reflect.Type) error {
	if e.typ.Implements(iface) {
		return nil
	}
	// Name the first missing method, as the compiler would.
	for i := range iface.NumMethod() {
		m := iface.Method(i)
		if _, ok := e.typ.MethodByName(m.Name); !ok {
			return fmt.Errorf("%s is a %s, which does not implement oort.%s (missing method %s)", what, e.typ, iface.Name(), m.Name)
		}
	}
	return fmt.Errorf("%s is a %s, which does not implement oort.%s (a method has the wrong signature)", what, e.typ, iface.Name())
}

// functionNames returns the exported function names in order.
func (p Plugin) functionNames() []string {
	names := make([]string, 0, len(p.Functions))
	for name := range p.Functions {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

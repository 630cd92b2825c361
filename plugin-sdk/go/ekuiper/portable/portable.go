// Package portable runs an eKuiper portable plugin written in Go on Oort.
//
// An eKuiper portable plugin is one executable exporting any number of
// sources, sinks and functions, whose main is
//
//	sdk.Start(os.Args, &context.PluginConfig{Name: "mirror", Sources: …, Sinks: …, Functions: …})
//
// A ported one changes only its imports (the extensions use the eKuiper 1.x
// api package, github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/api, whose
// interfaces are the ones eKuiper's portable SDK declares) and calls
//
//	portable.Start(os.Args, &portable.PluginConfig{Name: "mirror", Sources: …, Sinks: …, Functions: …})
//
// Oort runs a plugin process per source, per sink and per function set, so
// the package's one executable is installed under several names and started
// once per part, with OORT_PLUGIN_NAME set to the part's name: a source's or
// sink's name, or the package's name for its functions. Start serves that
// part, and Describe reports it under that name:
//
//   - a source and/or a sink of that name: that source and/or sink, one
//     object per rule from its constructor;
//   - otherwise every function, each through its constructor, one object per
//     call site of each rule (serve.PerInstance), so the process runs per rule.
//
// The extensions are adapted by package serve
// (github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/serve): everything its
// documentation says about 1.x sources, sinks, functions and contexts applies.
package portable

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/internal/compat"
	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/api"
	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/serve"
	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// PluginConfig is what an eKuiper portable plugin exports, as eKuiper's
// context.PluginConfig: each map goes from symbol name to a constructor
// (eKuiper's NewSourceFunc, NewSinkFunc and NewFunctionFunc).
type PluginConfig struct {
	// Name is the package's name: the name its functions are served under,
	// and the name used when OORT_PLUGIN_NAME is not set.
	Name string
	// Version is Oort's addition, reported by Describe (informational);
	// serve.Version when empty.
	Version   string
	Sources   map[string]func() api.Source
	Sinks     map[string]func() api.Sink
	Functions map[string]func() api.Function
}

// Start serves the part of the plugin that the supervisor started the
// process as (OORT_PLUGIN_NAME; conf.Name when it is not set) until the
// supervisor stops it; it never returns. args is ignored: it is there so
// that eKuiper's `sdk.Start(os.Args, conf)` ports unchanged (Oort passes no
// arguments; oort.Serve reads --metadata from os.Args itself). A
// configuration that cannot serve that name exits with status 1 and one
// stderr line, as an invalid oort.Plugin does.
func Start(args []string, conf *PluginConfig) {
	start(conf, oort.Serve, os.Exit)
}

// start is Start with oort.Serve and os.Exit passed in, for the tests.
func start(conf *PluginConfig, serveFn func(oort.Plugin), exit func(int)) {
	p, err := Build(conf, "")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %s\n", StartedAs(conf, ""), strings.ReplaceAll(err.Error(), "\n", "; "))
		exit(1)
		return
	}
	serveFn(p)
}

// StartedAs is the name the process serves: asName if not empty, else
// OORT_PLUGIN_NAME if set and not empty, else conf.Name. (Not the
// executable's name, unlike serve.Functions: the package has one executable
// for all its parts, and run by hand, e.g. with --metadata, it is the
// package.)
func StartedAs(conf *PluginConfig, asName string) string {
	if asName != "" {
		return asName
	}
	if name := os.Getenv(compat.PluginNameEnv); name != "" {
		return name
	}
	if conf == nil {
		return ""
	}
	return conf.Name
}

// Build returns the oort.Plugin that serves conf when started as asName (see
// StartedAs for an empty asName): the source and/or sink named asName, or
// else every function under the name asName. It fails when asName is none of
// the sources or sinks and conf exports no function, and on a configuration
// that is wrong whatever the part (a nil constructor, or functions that no
// part could serve); the returned Plugin is checked (oort.Plugin.Check).
func Build(conf *PluginConfig, asName string) (oort.Plugin, error) {
	if conf == nil {
		return oort.Plugin{}, errors.New("portable: the PluginConfig is nil")
	}
	if err := check(conf); err != nil {
		return oort.Plugin{}, err
	}
	name := StartedAs(conf, asName)
	version := conf.Version
	if version == "" {
		version = serve.Version
	}
	newSource, isSource := conf.Sources[name]
	newSink, isSink := conf.Sinks[name]
	var p oort.Plugin
	switch {
	case isSource || isSink:
		// A source and a sink may share a name (they are separate kinds in
		// eKuiper, and separate plugin files in Oort): one process then
		// serves either.
		p = oort.Plugin{Name: name}
		if isSource {
			p.Source = serve.SourcePlugin(name, newSource).Source
		}
		if isSink {
			p.Sink = serve.SinkPlugin(name, newSink).Sink
		}
	case len(conf.Functions) > 0:
		functions := make(map[string]api.Function, len(conf.Functions))
		for fname, newFunction := range conf.Functions {
			// eKuiper's portable SDK takes constructors; PerInstance keeps
			// that per call site, so no object is shared between rules.
			functions[fname] = serve.PerInstance(newFunction)
		}
		p = serve.FunctionsPlugin(name, functions)
	default:
		return oort.Plugin{}, fmt.Errorf("plugin %s was started as %q, which is none of its sources (%s) or sinks (%s), and it exports no function",
			conf.Name, name, list(conf.Sources), list(conf.Sinks))
	}
	p.Version = version
	if err := p.Check(); err != nil {
		return oort.Plugin{}, err
	}
	return p, nil
}

// check finds what is wrong with conf whichever part is started, so that
// every part reports it (and a plugin's own unit test of Build catches it).
func check(conf *PluginConfig) error {
	var errs []error
	for _, s := range names(conf.Sources) {
		if conf.Sources[s] == nil {
			errs = append(errs, fmt.Errorf("source %q has a nil constructor", s))
		}
	}
	for _, s := range names(conf.Sinks) {
		if conf.Sinks[s] == nil {
			errs = append(errs, fmt.Errorf("sink %q has a nil constructor", s))
		}
	}
	for _, f := range names(conf.Functions) {
		if conf.Functions[f] == nil {
			errs = append(errs, fmt.Errorf("function %q has a nil constructor", f))
		}
	}
	// The functions are served under the package's name; a source or sink of
	// that name would take the part over (the supervisor starts both plugin
	// files with the same OORT_PLUGIN_NAME), leaving the functions unserved.
	if len(conf.Functions) > 0 {
		_, src := conf.Sources[conf.Name]
		_, snk := conf.Sinks[conf.Name]
		if src || snk {
			errs = append(errs, fmt.Errorf("a source or sink is named %q like the plugin, whose functions are served under that name: rename one", conf.Name))
		}
	}
	return errors.Join(errs...)
}

func names[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func list[T any](m map[string]T) string {
	if len(m) == 0 {
		return "none"
	}
	return strings.Join(names(m), ", ")
}

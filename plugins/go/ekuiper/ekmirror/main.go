package main

import (
	"os"

	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/portable"
	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/api"
)

// config is eKuiper's PluginConfig of the package; a function so that the
// tests check the manifest against the very same symbols.
func config() *portable.PluginConfig {
	return &portable.PluginConfig{
		Name:    "ekmirror",
		Version: "1.0.0",
		Sources: map[string]func() api.Source{
			"ekmirrorsrc": EkMirrorSrc,
		},
		Sinks: map[string]func() api.Sink{
			"ekmirrorsink": EkMirrorSink,
		},
		Functions: map[string]func() api.Function{
			"ekreverse": EkReverse,
			"ekdouble":  EkDouble,
		},
	}
}

// The supervisor runs this one executable once per part (OORT_PLUGIN_NAME
// ekmirrorsrc, ekmirrorsink, or ekmirror for the functions); Start serves
// that part, as eKuiper's sdk.Start serves the symbol it is asked for.
func main() { portable.Start(os.Args, config()) }

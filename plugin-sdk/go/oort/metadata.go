package oort

import (
	"encoding/json"
	"fmt"
	"os"
)

// About is the "about" block of a plugin's metadata file <name>.json, in
// eKuiper's format. Every field is optional.
type About struct {
	Trial       bool              `json:"trial"`
	Author      Author            `json:"author"`
	HelpURL     map[string]string `json:"helpUrl,omitempty"`
	Description map[string]string `json:"description,omitempty"`
}

// Author names who wrote a plugin.
type Author struct {
	Name    string `json:"name"`
	Email   string `json:"email"`
	Company string `json:"company"`
	Website string `json:"website"`
}

// FunctionHelp documents one exported function in the metadata file.
type FunctionHelp struct {
	// Example is a call as written in SQL, e.g. "geohashEncode(lat, lon)".
	Example string
	// Hint is a short description per language, e.g. {"en_US": "…"}.
	Hint map[string]string
}

// MetadataFlag is the command-line argument on which Serve prints the
// plugin's metadata file instead of serving: `./geohash --metadata >
// geohash.json`. The supervisor always runs plugins with no arguments.
const MetadataFlag = "--metadata"

type metadataFunction struct {
	Name    string            `json:"name"`
	Example string            `json:"example,omitempty"`
	Hint    map[string]string `json:"hint,omitempty"`
}

type metadataFile struct {
	About     About              `json:"about"`
	Libs      []string           `json:"libs"`
	Functions []metadataFunction `json:"functions,omitempty"`
}

// Metadata returns the plugin's metadata file <name>.json in eKuiper's
// format: About, and one entry per exported function (sorted by name) with
// its FunctionHelp. The supervisor only reads the function names: a plugin
// exporting several functions must ship this file so that the supervisor
// knows, before any process runs, which plugin owns which SQL function.
func (p Plugin) Metadata() []byte {
	m := metadataFile{About: p.About, Libs: []string{}}
	for _, name := range p.functionNames() {
		help := p.FunctionHelp[name]
		m.Functions = append(m.Functions, metadataFunction{Name: name, Example: help.Example, Hint: help.Hint})
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		// Only strings, bools and maps of strings: this cannot fail.
		panic(fmt.Sprintf("oort: cannot encode the metadata: %v", err))
	}
	return append(b, '\n')
}

// printMetadata handles MetadataFlag; it reports whether it did.
func printMetadata(p Plugin, args []string) bool {
	if len(args) != 1 || args[0] != MetadataFlag {
		return false
	}
	_, _ = os.Stdout.Write(p.Metadata())
	return true
}

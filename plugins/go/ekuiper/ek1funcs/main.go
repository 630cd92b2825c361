package main

import (
	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/api"
	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/serve"
)

func main() {
	serve.Functions(map[string]api.Function{
		"ek1Point":     Ek1Point,
		"ek1Sum":       serve.PerInstance(Ek1Sum), // eKuiper's constructor export
		"ek1LastWords": Ek1LastWords(),
		"ek1Hash":      Ek1Hash,
		"ek1HashHex":   Ek1HashHex,
	})
}

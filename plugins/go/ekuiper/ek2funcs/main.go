package main

import (
	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/api"
	"github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/serve"
)

func main() {
	serve.Functions(map[string]api.Function{"ek2Scale": scaleFunc{}, "ek2Tag": tagFunc{}})
}

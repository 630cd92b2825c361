package main

import "github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/serve"

func main() { serve.Source("ek1random", Ek1Random) }

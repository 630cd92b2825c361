package main

import "github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v1/serve"

func main() { serve.Sink("ek1file", Ek1File) }

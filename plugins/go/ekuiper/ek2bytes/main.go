package main

import "github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/serve"

func main() { serve.Sink("ek2bytes", GetSink) }

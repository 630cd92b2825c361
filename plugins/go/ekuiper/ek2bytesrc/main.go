package main

import "github.com/oort-dev/oort/plugin-sdk/go/ekuiper/v2/serve"

func main() { serve.Source("ek2bytesrc", GetSource) }

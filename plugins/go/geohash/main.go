// Command geohash is an Oort function plugin with two SQL functions:
//
//	geohashEncode(lat, lon[, precision]) → string   (precision 1…12, default 12)
//	geohashDecode(hash)                   → {"lat": float, "lon": float}
//
// geohashDecode returns the centre of the hash's cell. A null argument gives
// a null result; any other bad argument is that row's error.
//
// Both functions are stateless singletons, so the supervisor runs one shared
// process for every rule. `geohash --metadata` prints geohash.json, which
// lists both functions so that the supervisor knows this plugin owns them.
package main

import (
	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

func main() {
	oort.Serve(plugin())
}

func plugin() oort.Plugin {
	return oort.Plugin{
		Name:    "geohash",
		Version: "1.0.0",
		Functions: map[string]oort.Export{
			"geohashEncode": oort.Singleton(encode{}),
			"geohashDecode": oort.Singleton(decode{}),
		},
		About: oort.About{
			Author: oort.Author{Name: "Oort", Website: "https://github.com/oort-dev/oort"},
			Description: map[string]string{
				"en_US": "Encode positions as geohashes and decode geohashes to positions",
				"zh_CN": "地理位置与 geohash 的相互转换",
			},
		},
		FunctionHelp: map[string]oort.FunctionHelp{
			"geohashEncode": {
				Example: "geohashEncode(lat, lon, 7)",
				Hint:    map[string]string{"en_US": "Encode a latitude and longitude as a geohash of 1-12 characters (default 12)"},
			},
			"geohashDecode": {
				Example: "geohashDecode(hash)",
				Hint:    map[string]string{"en_US": "Decode a geohash to the centre of its cell, {\"lat\": …, \"lon\": …}"},
			},
		},
	}
}

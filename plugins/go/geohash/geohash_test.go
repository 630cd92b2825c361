package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/oort-dev/oort/plugin-sdk/go/oort"
)

// Reference hashes from the original geohash.org examples and common test
// suites.
var known = []struct {
	lat, lon float64
	hash     string
}{
	{57.64911, 10.40744, "u4pruydqqvj"},
	{42.6, -5.6, "ezs42"},
	{-25.382708, -49.265506, "6gkzwgjzn820"},
	{0, 0, "s0000"},
	{90, 180, "zzzzzz"},
	{-90, -180, "000000"},
}

func TestEncodeKnownHashes(t *testing.T) {
	for _, k := range known {
		got, err := Encode(k.lat, k.lon, len(k.hash))
		if err != nil || got != k.hash {
			t.Errorf("Encode(%v, %v, %d) = %q, %v; want %q", k.lat, k.lon, len(k.hash), got, err, k.hash)
		}
	}
}

func TestDecodeIsTheCellCentre(t *testing.T) {
	for _, k := range known {
		latLo, latHi, lonLo, lonHi, err := Bounds(k.hash)
		if err != nil {
			t.Fatal(err)
		}
		if k.lat < latLo || k.lat > latHi || k.lon < lonLo || k.lon > lonHi {
			t.Errorf("%q: (%v, %v) is outside its cell", k.hash, k.lat, k.lon)
		}
		lat, lon, _ := Decode(strings.ToUpper(k.hash))
		if again, _ := Encode(lat, lon, len(k.hash)); again != k.hash {
			t.Errorf("%q: the centre re-encodes as %q", k.hash, again)
		}
	}
	lat, lon, _ := Decode("ezs42")
	if math.Abs(lat-42.605) > 0.001 || math.Abs(lon+5.603) > 0.001 {
		t.Errorf("Decode(ezs42) = %v, %v", lat, lon)
	}
	for _, bad := range []string{"", "ezs4a", "u4!"} {
		if _, _, err := Decode(bad); err == nil {
			t.Errorf("Decode(%q) must fail", bad)
		}
	}
}

func TestEncodeRefusesOutOfRange(t *testing.T) {
	for _, c := range []struct {
		lat, lon float64
		p        int
	}{{91, 0, 5}, {0, -181, 5}, {math.NaN(), 0, 5}, {0, 0, 0}, {0, 0, 13}} {
		if _, err := Encode(c.lat, c.lon, c.p); err == nil {
			t.Errorf("Encode(%v, %v, %d) must fail", c.lat, c.lon, c.p)
		}
	}
}

func TestFunctions(t *testing.T) {
	ctx := oort.NewTestContext("r1", "op_1")
	if v, ok := (encode{}).Exec([]any{42.6, -5.6, int64(5)}, ctx); !ok || v != "ezs42" {
		t.Errorf("geohashEncode = %v, %v", v, ok)
	}
	if v, ok := (encode{}).Exec([]any{57.64911, 10.40744}, ctx); !ok || len(v.(string)) != 12 || v.(string)[:11] != "u4pruydqqvj" {
		t.Errorf("default precision: %v, %v", v, ok)
	}
	if v, ok := (encode{}).Exec([]any{nil, 1.0}, ctx); !ok || v != nil {
		t.Errorf("null: %v, %v", v, ok)
	}
	if v, ok := (encode{}).Exec([]any{"x", 1.0}, ctx); ok {
		t.Errorf("a string latitude must fail: %v", v)
	}
	v, ok := (decode{}).Exec([]any{"ezs42"}, ctx)
	m, _ := v.(map[string]any)
	if !ok || m["lat"] == nil || m["lon"] == nil {
		t.Errorf("geohashDecode = %v, %v", v, ok)
	}
	if v, ok := (decode{}).Exec([]any{"ezs4a"}, ctx); ok || !strings.Contains(v.(error).Error(), "invalid geohash character") {
		t.Errorf("bad hash: %v", v)
	}

	lit := func(v any) oort.ArgSpec { return oort.ArgSpec{Expression: "lit", IsLiteral: true, Literal: v} }
	col := oort.ArgSpec{Expression: "c", Column: "c"}
	for _, c := range []struct {
		fn   oort.Function
		args []oort.ArgSpec
		ok   bool
	}{
		{encode{}, []oort.ArgSpec{col, col}, true},
		{encode{}, []oort.ArgSpec{col, col, lit(int64(7))}, true},
		{encode{}, []oort.ArgSpec{col}, false},
		{encode{}, []oort.ArgSpec{col, col, col, col}, false},
		{encode{}, []oort.ArgSpec{col, col, lit(int64(13))}, false},
		{encode{}, []oort.ArgSpec{lit("north"), col}, false},
		{decode{}, []oort.ArgSpec{col}, true},
		{decode{}, []oort.ArgSpec{lit(int64(1))}, false},
		{decode{}, []oort.ArgSpec{}, false},
	} {
		if err := c.fn.Validate(c.args); (err == nil) != c.ok {
			t.Errorf("%T.Validate(%d args) = %v", c.fn, len(c.args), err)
		}
	}
}

func TestMetadataListsBothFunctions(t *testing.T) {
	p := plugin()
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	var m struct {
		About     map[string]any `json:"about"`
		Functions []struct {
			Name string `json:"name"`
		} `json:"functions"`
	}
	if err := json.Unmarshal(p.Metadata(), &m); err != nil {
		t.Fatal(err)
	}
	if m.About == nil || len(m.Functions) != 2 || m.Functions[0].Name != "geohashDecode" || m.Functions[1].Name != "geohashEncode" {
		t.Errorf("metadata: %s", p.Metadata())
	}
}

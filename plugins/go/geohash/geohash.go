package main

import (
	"errors"
	"fmt"
	"strings"
)

// alphabet is the geohash base-32 alphabet: digits and lower-case letters
// without a, i, l and o.
const alphabet = "0123456789bcdefghjkmnpqrstuvwxyz"

// MaxPrecision is the longest hash geohashEncode produces: 12 characters
// (60 bits) already resolve a few centimetres.
const MaxPrecision = 12

// Encode returns the geohash of (lat, lon) with precision characters.
// Bits alternate between longitude (first) and latitude, each halving its
// interval; every 5 bits make one character.
func Encode(lat, lon float64, precision int) (string, error) {
	switch {
	case lat != lat || lat < -90 || lat > 90:
		return "", fmt.Errorf("latitude %v is outside -90…90", lat)
	case lon != lon || lon < -180 || lon > 180:
		return "", fmt.Errorf("longitude %v is outside -180…180", lon)
	case precision < 1 || precision > MaxPrecision:
		return "", fmt.Errorf("precision %d is outside 1…%d", precision, MaxPrecision)
	}
	latLo, latHi := -90.0, 90.0
	lonLo, lonHi := -180.0, 180.0
	var b strings.Builder
	b.Grow(precision)
	even := true // longitude bit
	for b.Len() < precision {
		ch := 0
		for range 5 {
			ch <<= 1
			if even {
				if mid := (lonLo + lonHi) / 2; lon >= mid {
					ch |= 1
					lonLo = mid
				} else {
					lonHi = mid
				}
			} else {
				if mid := (latLo + latHi) / 2; lat >= mid {
					ch |= 1
					latLo = mid
				} else {
					latHi = mid
				}
			}
			even = !even
		}
		b.WriteByte(alphabet[ch])
	}
	return b.String(), nil
}

// Bounds returns the cell of a geohash: its latitude and longitude intervals.
// Upper-case letters are accepted.
func Bounds(hash string) (latLo, latHi, lonLo, lonHi float64, err error) {
	if hash == "" {
		return 0, 0, 0, 0, errors.New("the geohash is empty")
	}
	latLo, latHi = -90, 90
	lonLo, lonHi = -180, 180
	even := true
	for i, r := range strings.ToLower(hash) {
		ch := strings.IndexRune(alphabet, r)
		if ch < 0 {
			return 0, 0, 0, 0, fmt.Errorf("invalid geohash character %q at position %d in %q", r, i, hash)
		}
		for bit := 4; bit >= 0; bit-- {
			on := ch>>bit&1 == 1
			if even {
				mid := (lonLo + lonHi) / 2
				if on {
					lonLo = mid
				} else {
					lonHi = mid
				}
			} else {
				mid := (latLo + latHi) / 2
				if on {
					latLo = mid
				} else {
					latHi = mid
				}
			}
			even = !even
		}
	}
	return latLo, latHi, lonLo, lonHi, nil
}

// Decode returns the centre of the geohash's cell.
func Decode(hash string) (lat, lon float64, err error) {
	latLo, latHi, lonLo, lonHi, err := Bounds(hash)
	if err != nil {
		return 0, 0, err
	}
	return (latLo + latHi) / 2, (lonLo + lonHi) / 2, nil
}

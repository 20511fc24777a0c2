package wsproto

import (
	"reflect"
	"testing"

	"github.com/lonelypsd/lonelypsd/api/wire/wiretest"
)

// Both fuzz targets are seeded with every vector of both directions (each
// parser must survive the other's messages) and the hand-built error cases,
// so that under plain `go test` the seeds run as ordinary test cases.
func addSeeds(f *testing.F) {
	for _, c := range allEncodedCases(f) {
		f.Add(wiretest.Hex(f, c.hex))
	}
	for _, c := range badHeaderCases() {
		f.Add(c.b)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 7, 0xff, 0xff})
}

// checkRoundTrip parses b; when that succeeds, the value re-encoded in
// either header form must parse back to the same value, and a failure must
// come with a nil value.
func checkRoundTrip(t *testing.T, b []byte, parse func([]byte) (any, error)) {
	m, err := parse(b)
	if err != nil {
		if m != nil {
			t.Fatalf("error %v came with a value %#v", err, m)
		}
		return
	}
	msg, ok := m.(Message)
	if !ok {
		t.Fatalf("parsed %T, which is not a Message", m)
	}
	for _, minimal := range []bool{true, false} {
		out, err := appendMode(msg, nil, minimal)
		if err != nil {
			t.Fatalf("re-encoding %#v%s: %v", m, modeSuffix(minimal), err)
		}
		m2, err := parse(out)
		if err != nil {
			t.Fatalf("parsing the re-encoded %x: %v", out, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip%s changed the value\nfirst  %#v\nsecond %#v", modeSuffix(minimal), m, m2)
		}
	}
}

func FuzzParseS2B(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRoundTrip(t, b, ParseS2B)
	})
}

func FuzzParseB2S(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRoundTrip(t, b, ParseB2S)
	})
}

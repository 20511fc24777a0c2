// Package wiretest holds what the codec packages' tests share: their
// reference vectors are written in hex.
package wiretest

import (
	"encoding/hex"
	"testing"
)

// Hex decodes a hex vector, failing the test on bad hex.
func Hex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatalf("bad hex in test: %v", err)
	}
	return b
}

// Hex64 decodes a hex vector of exactly 64 bytes (a SHA-512 or an etag).
func Hex64(tb testing.TB, s string) [64]byte {
	tb.Helper()
	b := Hex(tb, s)
	if len(b) != 64 {
		tb.Fatalf("hex %q is %d bytes, want 64", s, len(b))
	}
	return [64]byte(b)
}

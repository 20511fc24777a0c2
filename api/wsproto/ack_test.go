package wsproto

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lonelypsd/lonelypsd/api/wire/wiretest"
)

// checkAckAgrees is the differential check of ParseAck against ParseS2B:
// whatever ParseAck takes, ParseS2B takes with the same values; whatever
// ParseS2B takes as a minimal-form acknowledgement, ParseAck takes too (it
// falls back only for the expanded form and refusals).
func checkAckAgrees(t *testing.T, b []byte) {
	t.Helper()
	a, ok := ParseAck(b)
	m, err := ParseS2B(b)
	minimalAck := len(b) >= 4 && b[1]&1 == 1 && b[2] == 0 && (b[3] == 8 || b[3] == 9)
	if !ok {
		if err == nil && minimalAck {
			t.Fatalf("ParseAck refused %x, which ParseS2B parses as %#v", b, m)
		}
		if a.Final || a.PartID != 0 || a.NumSubscribers != 0 || a.Identifier != nil || a.Authorization != nil || a.Tracing != nil {
			t.Fatalf("refusal of %x came with a value %#v", b, a)
		}
		return
	}
	if err != nil {
		t.Fatalf("ParseAck took %x, which ParseS2B refuses: %v", b, err)
	}
	var want Ack
	switch m := m.(type) {
	case ContinueReceive:
		want = Ack{Identifier: m.Identifier, PartID: m.PartID, Authorization: []byte(m.Authorization), Tracing: m.Tracing}
	case ConfirmReceive:
		want = Ack{Final: true, Identifier: m.Identifier, Authorization: []byte(m.Authorization), Tracing: m.Tracing, NumSubscribers: m.NumSubscribers}
	default:
		t.Fatalf("ParseAck took %x, which ParseS2B parses as %T", b, m)
	}
	if a.Final != want.Final || a.PartID != want.PartID || a.NumSubscribers != want.NumSubscribers ||
		!bytes.Equal(a.Identifier, want.Identifier) || !bytes.Equal(a.Authorization, want.Authorization) ||
		!bytes.Equal(a.Tracing, want.Tracing) {
		t.Fatalf("%x: ParseAck %#v, ParseS2B %#v", b, a, want)
	}
	for _, v := range [][]byte{a.Identifier, a.Authorization, a.Tracing} {
		if v != nil && len(v) == 0 {
			t.Fatalf("%x: an empty value is not nil in %#v", b, a)
		}
	}
}

func TestParseAckVectors(t *testing.T) {
	// nil: ParseAck leaves the message to ParseS2B.
	cases := map[string]*Ack{
		"stateful_continue_receive_part0_minimal":  {Identifier: []byte{1, 2, 3, 4}},
		"stateful_confirm_receive_minimal":         {Final: true, Identifier: []byte{1, 2, 3, 4}, NumSubscribers: 1},
		"stateful_continue_receive_part0_expanded": nil,
		"stateful_confirm_receive_expanded":        nil,
		"stateful_notify_uncompressed_minimal":     nil,
		"stateful_configure_minimal":               nil,
	}
	for vector, want := range cases {
		t.Run(vector, func(t *testing.T) {
			b := wiretest.Hex(t, stateVectors[vector])
			a, ok := ParseAck(b)
			if ok != (want != nil) {
				t.Fatalf("ParseAck ok = %t, want %t", ok, want != nil)
			}
			if ok && (a.Final != want.Final || !bytes.Equal(a.Identifier, want.Identifier) ||
				a.PartID != want.PartID || a.NumSubscribers != want.NumSubscribers) {
				t.Fatalf("ParseAck = %#v, want %#v", a, *want)
			}
			checkAckAgrees(t, b)
		})
	}
}

func TestParseAckEdges(t *testing.T) {
	long := strings.Repeat("i", MaxIdentifier)
	cases := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"longest identifier", minimal(S2BConfirmReceive, "", long, "", "", "\x00\x00\x00\x02"), true},
		{"identifier too long", minimal(S2BConfirmReceive, "", long+"i", "", "", "\x00\x00\x00\x02"), false},
		{"num subscribers 5 bytes", minimal(S2BConfirmReceive, "", "id", "", "", "\x00\x00\x00\x00\x02"), false},
		{"num subscribers empty", minimal(S2BConfirmReceive, "", "id", "", "", ""), true},
		{"num subscribers missing", minimal(S2BConfirmReceive, "", "id", "", ""), false},
		{"part id 8 bytes", minimal(S2BContinueReceive, "", "id", "\xff\xff\xff\xff\xff\xff\xff\xff", "", ""), true},
		{"part id 9 bytes", minimal(S2BContinueReceive, "", "id", "\x01\xff\xff\xff\xff\xff\xff\xff\xff", "", ""), false},
		{"authorization not UTF-8", minimal(S2BContinueReceive, "", "id", "\x01", "\xff\xfe", ""), false},
		{"authorization and tracing", minimal(S2BContinueReceive, "", "id", "\x01", "bearer x", "trace"), true},
		{"bytes after the headers", minimal(S2BContinueReceive, "trailing", "id", "\x01", "", ""), true},
		{"tracing truncated", minimal(S2BContinueReceive, "", "id", "\x01", "", "trace")[:18], false},
		{"other flag bits", append([]byte{0xff, 0xff}, minimal(S2BConfirmReceive, "", "id", "", "", "\x00\x00\x00\x01")[2:]...), true},
		{"three bytes", []byte{0, 1, 0}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, ok := ParseAck(c.b); ok != c.ok {
				t.Fatalf("ParseAck(%x) ok = %t, want %t", c.b, ok, c.ok)
			}
			checkAckAgrees(t, c.b)
		})
	}
}

// TestParseAckDifferential compares ParseAck with ParseS2B on random
// acknowledgements and on every way of cutting or corrupting one byte of
// them.
func TestParseAckDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 3))
	field := func(max int) string {
		n := r.IntN(max + 2)
		if r.IntN(4) == 0 {
			n = 0
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
			if r.IntN(3) > 0 {
				b[i] &= 0x7f // mostly ASCII, so authorizations are often valid UTF-8
			}
		}
		return string(b)
	}
	for range 2000 {
		var b []byte
		if r.IntN(2) == 0 {
			b = minimal(S2BContinueReceive, field(3), field(MaxIdentifier), field(9), field(20), field(20))
		} else {
			b = minimal(S2BConfirmReceive, field(3), field(MaxIdentifier), field(20), field(20), field(5))
		}
		checkAckAgrees(t, b)
		for i := range len(b) {
			checkAckAgrees(t, b[:i])
		}
		c := bytes.Clone(b)
		c[r.IntN(len(c))] ^= byte(1 + r.IntN(255))
		checkAckAgrees(t, c)
	}
}

func TestParseAckDoesNotAllocate(t *testing.T) {
	msgs := [][]byte{
		minimal(S2BConfirmReceive, "", "abcd", "", "", "\x00\x00\x00\x01"),
		minimal(S2BContinueReceive, "", "abcd", "\x02", "hmac", "trace"),
	}
	for _, b := range msgs {
		if n := testing.AllocsPerRun(100, func() {
			if _, ok := ParseAck(b); !ok {
				t.Fatalf("ParseAck refused %x", b)
			}
		}); n != 0 {
			t.Fatalf("ParseAck(%x) allocates %.0f times", b, n)
		}
	}
}

func FuzzParseAck(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		checkAckAgrees(t, b)
	})
}

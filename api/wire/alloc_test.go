package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
)

// allocated is the bytes allocated by one call of f.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// setSubscriptionsPrefix is a valid body up to and including the exact
// count.
func setSubscriptionsPrefix(t *testing.T, exactCount uint32) []byte {
	t.Helper()
	b, err := AppendSetSubscriptions(nil, SetSubscriptions{URL: "http://127.0.0.1:1/x"})
	if err != nil {
		t.Fatal(err)
	}
	// Drop the two empty counts and put the claimed one in their place.
	b = b[:len(b)-8]
	return binary.BigEndian.AppendUint32(b, exactCount)
}

// A body claiming far more entries than it holds must cost memory in
// proportion to its bytes, not to its claim.
func TestSetSubscriptionsClaimedCountDoesNotAllocate(t *testing.T) {
	cases := []struct {
		name  string
		count uint32
		// filler is the bytes of entries actually present.
		filler int
	}{
		{"max count, no entries", 1<<32 - 1, 0},
		{"count fits body of empty entries, body ends early", 4 << 20, 1 << 10},
		{"count just fits body", 1 << 18, 1 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := setSubscriptionsPrefix(t, tc.count)
			// Entries of two empty strings, all equal: the second is
			// refused as unsorted, so the decoder stops early.
			body = append(body, make([]byte, tc.filler)...)
			var err error
			got := allocated(func() { _, err = ParseSetSubscriptions(body) })
			if err == nil {
				t.Fatal("a body with fewer entries than its count was accepted")
			}
			// A few KiB of error text and bookkeeping; never the claim.
			if limit := uint64(64 << 10); got > limit {
				t.Errorf("decoding a %d-byte body claiming %d entries allocated %d bytes, want at most %d", len(body), tc.count, got, limit)
			}
			t.Logf("%d-byte body claiming %d entries: %d bytes allocated (%v)", len(body), tc.count, got, err)
		})
	}
}

// A full list costs a small multiple of its bytes.
func TestSetSubscriptionsAllocationProportionalToBody(t *testing.T) {
	var m SetSubscriptions
	m.URL = "http://127.0.0.1:1/x"
	for i := range 20000 {
		m.Exact = append(m.Exact, ExactEntry{Topic: binary.BigEndian.AppendUint32(nil, uint32(i))})
	}
	body, err := AppendSetSubscriptions(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	got := allocated(func() { _, err = ParseSetSubscriptions(body) })
	if err != nil {
		t.Fatal(err)
	}
	// Each 8-byte entry (the smallest real one) becomes a 40-byte struct
	// plus its 4-byte topic (rounded to 8), and append doubles (the
	// total counts every discarded array): a bounded multiple.
	if limit := uint64(len(body)) * 32; got > limit {
		t.Errorf("decoding %d bytes allocated %d, want at most %d", len(body), got, limit)
	}
}

func TestReadSetSubscriptionsHeader(t *testing.T) {
	m := SetSubscriptions{Tracing: []byte("tr"), URL: "http://127.0.0.1:1/x", Etag: [64]byte{1, 2, 3},
		Exact: []ExactEntry{{Topic: []byte("a")}}}
	body, err := AppendSetSubscriptions(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(body)
	h, err := ReadSetSubscriptionsHeader(r)
	if err != nil {
		t.Fatal(err)
	}
	if h.URL != m.URL || h.Etag != m.Etag || string(h.Tracing) != "tr" {
		t.Errorf("header %+v, want the body's fields", h)
	}
	if rest := len(body) - r.Len(); rest != 2+2+2+len(m.URL)+1+64 {
		t.Errorf("read %d bytes, want exactly the header", rest)
	}
	bad := append([]byte(nil), body...)
	bad[2+2+2+len(m.URL)] = 1
	if _, err := ReadSetSubscriptionsHeader(bytes.NewReader(bad)); !errors.Is(err, ErrEtagFormat) {
		t.Errorf("etag format 1: %v, want ErrEtagFormat", err)
	}
	if _, err := ReadSetSubscriptionsHeader(bytes.NewReader(body[:10])); !errors.Is(err, ErrTruncated) {
		t.Errorf("truncated: %v, want ErrTruncated", err)
	}
}

func TestParseSetSubscriptionsMax(t *testing.T) {
	var m SetSubscriptions
	m.URL = "http://127.0.0.1:1/x"
	m.Exact = []ExactEntry{{Topic: []byte("a")}, {Topic: []byte("b")}}
	m.Globs = []GlobEntry{{Glob: "c*"}}
	body, err := AppendSetSubscriptions(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		max     int
		wantErr bool
	}{{3, false}, {2, true}, {1, true}, {0, true}} {
		_, err := ParseSetSubscriptionsMax(body, tc.max)
		if got := errors.Is(err, ErrTooManyEntries); got != tc.wantErr {
			t.Errorf("limit %d: err %v, want ErrTooManyEntries %v", tc.max, err, tc.wantErr)
		}
	}
}

// TestNotifyHeaderLen: HeaderLen is what AppendNotifyHeader writes, and
// MaxNotifyHeaderLen what the largest fields make.
func TestNotifyHeaderLen(t *testing.T) {
	for _, n := range []Notify{
		{},
		{Topic: []byte("t"), Tracing: []byte("tr"), Identifier: []byte("id"), Length: 5},
		{Topic: make([]byte, MaxStr16), Tracing: make([]byte, MaxStr16), Identifier: make([]byte, MaxIdentifier)},
	} {
		b, err := AppendNotifyHeader(nil, n)
		if err != nil {
			t.Fatal(err)
		}
		if n.HeaderLen() != int64(len(b)) {
			t.Errorf("HeaderLen %d, encoded %d bytes", n.HeaderLen(), len(b))
		}
		if len(n.Topic) == MaxStr16 && int64(len(b)) != MaxNotifyHeaderLen {
			t.Errorf("largest header %d bytes, MaxNotifyHeaderLen %d", len(b), MaxNotifyHeaderLen)
		}
	}
}

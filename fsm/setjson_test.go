package fsm

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// setCommands are set_subscriptions as proposers write them, and the
// shapes encoding/json writes differently (escapes), which the fast
// decoder leaves to it.
func setCommands() []struct {
	name string
	cmd  Command
	fast bool // the fast decoder must take it
} {
	code := &AuthCode{Code: []byte(strings.Repeat("k", AuthCodeSize)), ExpiresMs: 1700000000000}
	return []struct {
		name string
		cmd  Command
		fast bool
	}{
		{"a table row", setOf(u1, "", []string{"t/000001/000", "t/000001/001"}, []string{"*/000001/00/x", "p/000001/00/*"}), true},
		{"everything", Command{Op: OpSetSubscriptions, ID: "req-1", URL: u1, AuthCode: code, MaxPerURL: 120,
			Exact: []ExactEntry{{Topic: []byte("a"), Recovery: rec}, {Topic: []byte("b"), Recovery: rec}, {Topic: []byte("c")}},
			Globs: []GlobEntry{{Glob: "g/*", Recovery: u2}}}, true},
		{"no rows", Command{Op: OpSetSubscriptions, URL: u1}, true},
		{"empty lists", Command{Op: OpSetSubscriptions, URL: u1, Exact: []ExactEntry{}, Globs: []GlobEntry{}}, true},
		{"empty topic", Command{Op: OpSetSubscriptions, URL: u1, Exact: []ExactEntry{{Topic: []byte{}}}}, true},
		{"binary topic, UTF-8 glob", Command{Op: OpSetSubscriptions, URL: u1,
			Exact: []ExactEntry{{Topic: []byte{0, 0xff, '"', '\\'}}}, Globs: []GlobEntry{{Glob: "ü/€/*"}}}, true},
		{"escaped glob", setOf(u1, "", nil, []string{`a"b/*`, "a<b&c>/*"}), false},
		{"escaped recovery URL", setOf(u1, "http://127.0.0.1:9/?a=1&b=2", []string{"x"}, nil), false},
		{"negative cap", Command{Op: OpSetSubscriptions, URL: u1, MaxPerURL: -3}, true},
		{"another op", sub("a"), false},
	}
}

func TestDecodeSetFast(t *testing.T) {
	for _, tt := range setCommands() {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.cmd.Encode()
			if err != nil {
				t.Fatal(err)
			}
			var want Command
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			got, ok := decodeSetFast(b)
			if ok != tt.fast {
				t.Fatalf("fast decoder took %s: %v, want %v", b, ok, tt.fast)
			}
			if ok && !reflect.DeepEqual(got, want) {
				t.Fatalf("fast decoder: %+v, encoding/json: %+v", got, want)
			}
		})
	}
}

// FuzzDecodeSetFast: whatever the fast decoder accepts, encoding/json
// decodes to the same command.
func FuzzDecodeSetFast(f *testing.F) {
	for _, tt := range setCommands() {
		b, err := tt.cmd.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"op":5,"url":"u","max_per_url":007}`))
	f.Add([]byte(`{"op":5,"exact":[{"t":"YQ=="},]}`))
	f.Add([]byte(`{"op":5,"exact":[{"t":"YQ"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := decodeSetFast(b)
		if !ok {
			return
		}
		var want Command
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("fast decoder took %q, which encoding/json refuses: %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: fast decoder %+v, encoding/json %+v", b, got, want)
		}
	})
}

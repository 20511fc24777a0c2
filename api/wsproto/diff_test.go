package wsproto

import (
	"bytes"
	"reflect"
	"testing"
)

// sameOutcome fails unless two results are the same value, or the same
// error text.
func sameOutcome(t *testing.T, what string, oldV, newV any, oldErr, newErr error) {
	t.Helper()
	switch {
	case (oldErr == nil) != (newErr == nil):
		t.Fatalf("%s: old error %v, new error %v", what, oldErr, newErr)
	case oldErr != nil && oldErr.Error() != newErr.Error():
		t.Fatalf("%s: old error %q, new error %q", what, oldErr, newErr)
	case oldErr == nil && !reflect.DeepEqual(oldV, newV):
		t.Fatalf("%s: old %#v, new %#v", what, oldV, newV)
	}
}

// sameEncoding encodes m with the old and the new encoders in both header
// forms.
func sameEncoding(t *testing.T, m Message) {
	t.Helper()
	for _, minimal := range []bool{true, false} {
		oldB, oldErr := oldAppend(m, minimal)
		newB, newErr := appendMode(m, []byte{}, minimal)
		if oldErr == nil && newErr == nil && !bytes.Equal(oldB, newB) {
			t.Fatalf("%T%s: old %x, new %x", m, modeSuffix(minimal), oldB, newB)
		}
		sameOutcome(t, "encoding", nil, nil, oldErr, newErr)
	}
}

// FuzzOldAndNewAgree checks the layout-based codec against the one it
// replaced (old_test.go): the same values or error texts from parsing any
// input, in both directions, and the same bytes from encoding what parsed.
func FuzzOldAndNewAgree(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, dir := range []struct {
			name     string
			old, new func([]byte) (any, error)
		}{{"S2B", oldParseS2B, ParseS2B}, {"B2S", oldParseB2S, ParseB2S}} {
			oldV, oldErr := dir.old(b)
			newV, newErr := dir.new(b)
			sameOutcome(t, "parsing "+dir.name, oldV, newV, oldErr, newErr)
			if m, ok := newV.(Message); ok {
				sameEncoding(t, m)
			}
		}
	})
}

// TestOldAndNewEncodeAgree encodes every vector message with each pair of
// faults applied, so that the first error reported is the same too.
func TestOldAndNewEncodeAgree(t *testing.T) {
	set := func(m Message, field string, f func(v reflect.Value)) Message {
		v := reflect.New(reflect.TypeOf(m)).Elem()
		v.Set(reflect.ValueOf(m))
		if fv := v.FieldByName(field); fv.IsValid() {
			f(fv)
		}
		return v.Interface().(Message)
	}
	faults := []func(Message) Message{
		func(m Message) Message { return m },
		func(m Message) Message {
			return set(m, "Authorization", func(v reflect.Value) { v.SetString("\xff") })
		},
		func(m Message) Message {
			return set(m, "Glob", func(v reflect.Value) { v.SetString("\xfe") })
		},
		func(m Message) Message {
			return set(m, "Tracing", func(v reflect.Value) { v.SetBytes(make([]byte, MaxHeaderValue+1)) })
		},
		func(m Message) Message {
			return set(m, "Identifier", func(v reflect.Value) {
				if v.Kind() == reflect.Slice {
					v.SetBytes(make([]byte, MaxIdentifier+1))
				}
			})
		},
		func(m Message) Message { return withPayload(m, append(bytes.Clone(payloadOf(m)), 'x')).(Message) },
		func(m Message) Message {
			return set(m, "DecompressedLength", func(v reflect.Value) { v.SetUint(v.Uint() + 1) })
		},
		func(m Message) Message {
			return set(m, "First", func(v reflect.Value) {
				if !v.IsNil() {
					f := *v.Interface().(*StreamFirst)
					f.DecompressedLength++
					v.Set(reflect.ValueOf(&f))
				}
			})
		},
		func(m Message) Message { return set(m, "PartID", func(v reflect.Value) { v.SetUint(v.Uint() ^ 1) }) },
	}
	for _, c := range vectorCases(t) {
		for i := range faults {
			for j := i; j < len(faults); j++ {
				sameEncoding(t, faults[j](faults[i](c.msg)))
			}
		}
	}
}

package wire

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/lonelypsd/lonelypsd/api/wire/wiretest"
)

// Every fuzz target is seeded with every vector body (each parser should also
// survive the others' bodies) plus a few hand-made extras, so that under plain
// `go test` the seed corpus runs as ordinary test cases.
func addSeeds(f *testing.F, extra ...[]byte) {
	for _, v := range bodyVectors(f) {
		f.Add(wiretest.Hex(f, v.hex))
	}
	for _, b := range extra {
		f.Add(b)
	}
}

// checkRoundTrip parses b; when that succeeds, the canonical encoding of the
// parsed value must be exactly the prefix of b the parser consumed (trailing
// bytes aside, the wire format has one encoding per value) and must parse
// back to the same value.
func checkRoundTrip[T any](t *testing.T, b []byte, parse func([]byte) (T, error), encode func([]byte, T) ([]byte, error)) {
	t.Helper()
	m, err := parse(b)
	if err != nil {
		return
	}
	out, err := encode(nil, m)
	if err != nil {
		t.Fatalf("re-encoding %#v: %v", m, err)
	}
	if !bytes.HasPrefix(b, out) {
		t.Fatalf("re-encoded %x is not a prefix of the input %x", out, b)
	}
	m2, err := parse(out)
	if err != nil {
		t.Fatalf("parsing the re-encoded %x: %v", out, err)
	}
	if !reflect.DeepEqual(m, m2) {
		t.Fatalf("round trip changed the value\nfirst  %#v\nsecond %#v", m, m2)
	}
}

func FuzzParseSubscribeExact(f *testing.F) {
	addSeeds(f, body{}.s16(vecURL).s16("\xff\x00").s16(vecRecovery).s16("trace"))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRoundTrip(t, b, ParseSubscribeExact, AppendSubscribeExact)
	})
}

func FuzzParseSubscribeGlob(f *testing.F) {
	addSeeds(f, body{}.s16(vecURL).s16("foo/[^a]*").s16(vecRecovery).s16("trace"))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRoundTrip(t, b, ParseSubscribeGlob, AppendSubscribeGlob)
	})
}

func FuzzParseUnsubscribeExact(f *testing.F) {
	addSeeds(f, body{}.s16(vecURL).s16("\xff\x00").s16("trace"))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRoundTrip(t, b, ParseUnsubscribeExact, AppendUnsubscribeExact)
	})
}

func FuzzParseUnsubscribeGlob(f *testing.F) {
	addSeeds(f, body{}.s16(vecURL).s16("é*").s16("trace"))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRoundTrip(t, b, ParseUnsubscribeGlob, AppendUnsubscribeGlob)
	})
}

func FuzzParseCheckSubscriptions(f *testing.F) {
	addSeeds(f, body{}.s16("trace").s16(vecURL))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRoundTrip(t, b, ParseCheckSubscriptions, AppendCheckSubscriptions)
	})
}

func FuzzParseSetSubscriptions(f *testing.F) {
	addSeeds(f,
		setBody([][2]string{{"", ""}, {"a", vecRecovery}, {"\xff", ""}}, [][2]string{{"*", ""}, {"é", vecRecovery}}),
		setBody([][2]string{{"b", ""}, {"a", ""}}, nil),
		body{}.s16("").s16(vecURL).u8(0).raw(strings.Repeat("\x00", 64)).u32(0xffffffff),
	)
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRoundTrip(t, b, ParseSetSubscriptions, AppendSetSubscriptions)
		m, err := ParseSetSubscriptions(b)
		if err != nil {
			return
		}
		// Anything the parser accepts is a valid etag input.
		if got, want := Etag(m.URL, m.Exact, m.Globs), sha512Sum(etagDocument(m.URL, m.Exact, m.Globs)); got != want {
			t.Fatalf("Etag %x differs from the sha512 of its document %x", got, want)
		}
	})
}

func FuzzReadNotifyHeader(f *testing.F) {
	addSeeds(f, body{}.s16("t").raw(strings.Repeat("\x01", 64)).s16("tr").s8("id").u64(1<<63).raw("m"))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRoundTrip(t, b, consumingHeader(t, ReadNotifyHeader, AppendNotifyHeader), AppendNotifyHeader)
	})
}

func FuzzReadReceiveHeader(f *testing.F) {
	addSeeds(f, body{}.s16("tr").s16("t").s8("12345678").u64(0))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRoundTrip(t, b, consumingHeader(t, ReadReceiveHeader, AppendReceiveHeader), AppendReceiveHeader)
	})
}

// consumingHeader parses with a stream reader and checks that it consumed
// exactly the header: its own encoding says how long that is.
func consumingHeader[T any](t *testing.T, read func(io.Reader) (T, error), enc func([]byte, T) ([]byte, error)) func([]byte) (T, error) {
	return func(b []byte) (T, error) {
		r := bytes.NewReader(b)
		m, err := read(r)
		if err == nil {
			e, _ := enc(nil, m)
			if consumed := len(b) - r.Len(); consumed != len(e) {
				t.Fatalf("consumed %d bytes for a %d-byte header", consumed, len(e))
			}
		}
		return m, err
	}
}

func FuzzParseMissed(f *testing.F) {
	addSeeds(f, body{}.s16("tr").s16("\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRoundTrip(t, b, ParseMissed, AppendMissed)
	})
}

func FuzzParseReceiveReply(f *testing.F) {
	addSeeds(f, body{}.u16(8).s16("X-HMAC 1:n:c").s16("tr").s8("id").u32(3), body{}.u16(10).raw("junk"), body{0})
	type reply struct {
		Kind ReplyKind
		Msg  ConfirmReceive
	}
	parse := func(b []byte) (reply, error) {
		k, m, err := ParseReceiveReply(b)
		return reply{k, m}, err
	}
	encode := func(dst []byte, r reply) ([]byte, error) {
		switch r.Kind {
		case ReplyUnsubscribeImmediate:
			return AppendUnsubscribeImmediate(dst), nil
		case ReplyConfirmReceive:
			return AppendConfirmReceive(dst, r.Msg)
		}
		return nil, fmt.Errorf("no encoding for reply kind %v", r.Kind)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parse(b)
		if err != nil && !reflect.DeepEqual(r, reply{}) {
			t.Fatalf("error %v came with a non-zero result %#v", err, r)
		}
		if err == nil && r.Kind != ReplyUnsubscribeImmediate && r.Kind != ReplyConfirmReceive {
			t.Fatalf("success with kind %v", r.Kind)
		}
		checkRoundTrip(t, b, parse, encode)
	})
}

func FuzzParseMissedReply(f *testing.F) {
	addSeeds(f, body{}.u16(9).s16("X-HMAC 1:n:c").s16("tr"))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRoundTrip(t, b, ParseMissedReply, AppendConfirmMissed)
	})
}

func FuzzParseResponseGeneric(f *testing.F) {
	addSeeds(f, body{}.u16(3).s16("Bearer x").s16("tr"))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRoundTrip(t, b, ParseResponseGeneric, func(dst []byte, m ResponseGeneric) ([]byte, error) {
			return AppendResponseGeneric(dst, m.Authorization, m.Tracing)
		})
	})
}

func FuzzParseResponseNotify(f *testing.F) {
	addSeeds(f, body{}.u16(4).s16("X-HMAC 1:n:c").s16("\x00\x00\x00").u32(1<<31).s8("abcd"))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRoundTrip(t, b, ParseResponseNotify, func(dst []byte, m ResponseNotify) ([]byte, error) {
			return AppendResponseNotify(dst, m.Authorization, m.Tracing, m.Count, m.Identifier)
		})
	})
}

func FuzzParseResponseCheckSubscriptions(f *testing.F) {
	addSeeds(f, body{}.u16(5).s16("").s16("").u8(1).raw(strings.Repeat("\x00", 64)))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRoundTrip(t, b, ParseResponseCheckSubscriptions, func(dst []byte, m ResponseCheckSubscriptions) ([]byte, error) {
			return AppendResponseCheckSubscriptions(dst, m.Authorization, m.Tracing, m.Etag)
		})
	})
}

func FuzzParseReprDigest(f *testing.F) {
	f.Add(vecReprDigest)
	f.Add("sha-256=abc, sha-512=" + vecMessageB64)
	f.Add("sha-512=:" + vecMessageB64 + ":")
	f.Add("sha-512=" + strings.TrimRight(vecMessageB64, "="))
	f.Add("sha512=" + vecMessageB64)
	f.Add("")
	f.Fuzz(func(t *testing.T, h string) {
		sum, err := ParseReprDigest(h)
		if err == nil {
			again, err := ParseReprDigest(ReprDigest(sum))
			if err != nil || again != sum {
				t.Fatalf("ReprDigest(%x) does not parse back: %x, %v", sum, again, err)
			}
		}
		// Where Go's strict decoder accepts a single entry, the lenient one
		// must agree with it.
		if v, ok := strings.CutPrefix(h, "sha-512="); ok && !strings.Contains(v, ",") {
			if strict, serr := base64.StdEncoding.Strict().DecodeString(v); serr == nil && len(strict) == 64 {
				if err != nil || !bytes.Equal(sum[:], strict) {
					t.Fatalf("%q: lenient %x, %v; strict %x", h, sum, err, strict)
				}
			}
		}
	})
}

package wsproto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/lonelypsd/lonelypsd/api/wire/wiretest"
)

// Every strict prefix of a vector that cuts into the flags, type or headers
// is ErrTruncated. A prefix that cuts into the payload is ErrPayload for
// NOTIFY (its length is checked) and, for the other payload-carrying
// messages, a valid message with a shorter payload.
func TestParseTruncated(t *testing.T) {
	for _, c := range allEncodedCases(t) {
		t.Run(c.name, func(t *testing.T) {
			full := wiretest.Hex(t, c.hex)
			parse := parserFor(c.msg)
			headerEnd := len(full) - len(payloadOf(c.msg))
			for n := 0; n < len(full); n++ {
				prefix := bytes.Clone(full[:n])
				got, err := parse(prefix)
				switch {
				case n < headerEnd:
					if !errors.Is(err, ErrTruncated) || got != nil {
						t.Fatalf("prefix of %d bytes: %#v, %v; want ErrTruncated", n, got, err)
					}
				case reflect.TypeOf(c.msg) == reflect.TypeOf(Notify{}):
					if !errors.Is(err, ErrPayload) {
						t.Fatalf("prefix of %d bytes: %v; want ErrPayload", n, err)
					}
				default:
					var p []byte
					if n > headerEnd {
						p = full[headerEnd:n]
					}
					if want := withPayload(c.msg, p); err != nil || !reflect.DeepEqual(got, want) {
						t.Fatalf("prefix of %d bytes: %#v, %v; want %#v", n, got, err, want)
					}
				}
			}
		})
	}
}

func TestParseUnknownType(t *testing.T) {
	for _, flags := range []uint16{0, FlagMinimalHeaders} {
		for _, c := range []struct {
			name  string
			parse func([]byte) (any, error)
			typ   uint16
		}{
			{"s2b 0", ParseS2B, 0},
			{"s2b 10", ParseS2B, 10},
			{"s2b 12", ParseS2B, 12},
			{"s2b ffff", ParseS2B, 0xffff},
			{"b2s 0", ParseB2S, 0},
			{"b2s 13", ParseB2S, 13},
			{"b2s 256", ParseB2S, 256},
		} {
			b := []byte{byte(flags >> 8), byte(flags), byte(c.typ >> 8), byte(c.typ), 0, 0, 0, 0}
			got, err := c.parse(b)
			if !errors.Is(err, ErrUnknownType) || got != nil {
				t.Errorf("%s flags %d: %#v, %v; want ErrUnknownType", c.name, flags, got, err)
			}
		}
	}
}

// badCase is a hand-built message that must fail with a given sentinel.
type badCase struct {
	name  string
	parse func([]byte) (any, error)
	b     []byte
	want  error
}

func badHeaderCases() []badCase {
	id64 := strings.Repeat("i", 64)
	id65 := strings.Repeat("i", 65)
	sha := sum512(vecMessage)
	u9 := "\x00\x00\x00\x00\x00\x00\x00\x00\x01"
	n32, n31, n33 := strings.Repeat("\x11", 32), strings.Repeat("\x11", 31), strings.Repeat("\x11", 33)
	notify := func(payload string, ident, comp, clen, dlen, hash string) []byte {
		return minimal(S2BNotify, payload, "", "", ident, vecTopic, comp, clen, dlen, hash)
	}
	stream := func(typ uint16, ident, part string, first ...string) []byte {
		return minimal(typ, "data", append([]string{"", "", ident, part}, first...)...)
	}
	zstd := func(typ uint16, id, level, minSize, maxSize string, extra ...string) []byte {
		return minimal(typ, "", append([]string{id, level, minSize, maxSize, "", ""}, extra...)...)
	}
	return []badCase{
		// Identifiers: 64 bytes is the limit.
		{"notify identifier 64 ok", ParseS2B, notify(vecMessage, id64, "\x00", "\x0b", "\x0b", sha), nil},
		{"notify identifier 65", ParseS2B, notify(vecMessage, id65, "\x00", "\x0b", "\x0b", sha), ErrHeader},
		{"notify stream identifier 65", ParseS2B, stream(S2BNotifyStream, id65, "\x01"), ErrHeader},
		{"notify stream identifier 64 ok", ParseS2B, stream(S2BNotifyStream, id64, "\x01"), nil},
		{"receive stream identifier 65", ParseB2S, stream(B2SReceiveStream, id65, "\x01"), ErrHeader},
		{"continue receive identifier 65", ParseS2B, minimal(S2BContinueReceive, "", id65, "", "", ""), ErrHeader},
		{"confirm receive identifier 65", ParseS2B, minimal(S2BConfirmReceive, "", id65, "", "", "\x00\x00\x00\x01"), ErrHeader},
		{"confirm notify identifier 65", ParseB2S, minimal(B2SConfirmNotify, "", id65, "", "", ""), ErrHeader},
		{"continue notify identifier 65", ParseB2S, minimal(B2SContinueNotify, "", id65, "", "", ""), ErrHeader},

		// Nonces: exactly 32 bytes.
		{"configure nonce 32 ok", ParseS2B, minimal(S2BConfigure, "", n32, "\x01", "\x01", "\x00\x00", "", ""), nil},
		{"configure nonce 31", ParseS2B, minimal(S2BConfigure, "", n31, "\x01", "\x01", "\x00\x00", "", ""), ErrHeader},
		{"configure nonce 33", ParseS2B, minimal(S2BConfigure, "", n33, "\x01", "\x01", "\x00\x00", "", ""), ErrHeader},
		{"confirm configure nonce 31", ParseB2S, minimal(B2SConfirmConfigure, "", n31, "", ""), ErrHeader},
		{"confirm configure nonce empty", ParseB2S, minimal(B2SConfirmConfigure, "", "", "", ""), ErrHeader},

		// Unsigned widths.
		{"configure initial dict 3 bytes", ParseS2B, minimal(S2BConfigure, "", n32, "\x01", "\x01", "\x00\x00\x01", "", ""), ErrHeader},
		{"notify compressor 9 bytes", ParseS2B, notify(vecMessage, "id", u9, "\x0b", "\x0b", sha), ErrHeader},
		{"notify compressed length 9 bytes", ParseS2B, notify(vecMessage, "id", "\x00", "\x00"+u9[1:8]+"\x0b", "\x0b", sha), ErrHeader},
		{"notify decompressed length 9 bytes", ParseS2B, notify(vecMessage, "id", "\x00", "\x0b", "\x00"+u9[1:8]+"\x0b", sha), ErrHeader},
		{"notify stream part id 9 bytes", ParseS2B, stream(S2BNotifyStream, "id", u9), ErrHeader},
		{"notify stream part id 8 bytes ok", ParseS2B, stream(S2BNotifyStream, "id", u9[1:]), nil},
		{"receive stream part id 9 bytes", ParseB2S, stream(B2SReceiveStream, "id", u9), ErrHeader},
		{"receive stream first compressor 9 bytes", ParseB2S, stream(B2SReceiveStream, "id", "\x00", vecTopic, u9, "\x01", "\x01", sha), ErrHeader},
		{"continue receive part id 9 bytes", ParseS2B, minimal(S2BContinueReceive, "", "id", u9, "", ""), ErrHeader},
		{"confirm receive num subscribers 5 bytes", ParseS2B, minimal(S2BConfirmReceive, "", "id", "", "", "\x00\x00\x00\x00\x01"), ErrHeader},
		{"confirm receive num subscribers 1 byte ok", ParseS2B, minimal(S2BConfirmReceive, "", "id", "", "", "\x01"), nil},
		{"confirm notify subscribers 9 bytes", ParseB2S, minimal(B2SConfirmNotify, "", "id", u9, "", ""), ErrHeader},
		{"continue notify part id 9 bytes", ParseB2S, minimal(B2SContinueNotify, "", "id", u9, "", ""), ErrHeader},
		{"enable zstd preset identifier 9 bytes", ParseB2S, zstd(B2SEnableZstdPreset, u9, "\x00\x03", "", ""), ErrHeader},
		{"enable zstd preset level 3 bytes", ParseB2S, zstd(B2SEnableZstdPreset, "\x01", "\x00\x00\x03", "", ""), ErrHeader},
		{"enable zstd preset min size 5 bytes", ParseB2S, zstd(B2SEnableZstdPreset, "\x01", "\x03", "\x00\x00\x00\x00\x01", ""), ErrHeader},
		{"enable zstd preset max size 9 bytes", ParseB2S, zstd(B2SEnableZstdPreset, "\x01", "\x03", "", u9), ErrHeader},
		{"enable zstd custom level 3 bytes", ParseB2S, zstd(B2SEnableZstdCustom, "\x01", "\x00\x00\x03", "", "", sha), ErrHeader},
		{"disable zstd custom identifier 9 bytes", ParseB2S, minimal(B2SDisableZstdCustom, "", u9, "", ""), ErrHeader},

		// Hash widths.
		{"notify sha512 63 bytes", ParseS2B, notify(vecMessage, "id", "\x00", "\x0b", "\x0b", sha[:63]), ErrHeader},
		{"notify stream first sha512 65 bytes", ParseS2B, stream(S2BNotifyStream, "id", "\x00", vecTopic, "\x00", "\x01", "\x01", sha+"x"), ErrHeader},
		{"enable zstd custom sha512 63 bytes", ParseB2S, zstd(B2SEnableZstdCustom, "\x01", "\x03", "", "", sha[:63]), ErrHeader},

		// Length consistency with compressor 0.
		{"notify uncompressed lengths differ", ParseS2B, notify(vecMessage, "id", "\x00", "\x0b", "\x0c", sha), ErrHeader},
		{"notify compressed lengths differ ok", ParseS2B, notify(vecMessage, "id", "\x01", "\x0b", "\x0c", sha), nil},
		{"notify stream uncompressed lengths differ", ParseS2B, stream(S2BNotifyStream, "id", "\x00", vecTopic, "", "\x05", "\x06", sha), ErrHeader},
		{"receive stream uncompressed lengths differ", ParseB2S, stream(B2SReceiveStream, "id", "", vecTopic, "\x00", "\x05", "\x06", sha), ErrHeader},

		// NOTIFY payload checks.
		{"notify payload hash mismatch", ParseS2B, notify("hello worle", "id", "\x00", "\x0b", "\x0b", sha), ErrPayload},
		{"notify payload longer", ParseS2B, notify(vecMessage+"!", "id", "\x00", "\x0b", "\x0b", sha), ErrPayload},
		{"notify payload shorter", ParseS2B, notify(vecMessage[:10], "id", "\x00", "\x0b", "\x0b", sha), ErrPayload},
		{"notify empty payload wrong hash", ParseS2B, notify("", "id", "\x00", "", "", sha), ErrPayload},
		{"notify compressed payload hash mismatch", ParseS2B, notify("abd", "id", "\x01", "\x03", "\x0b", sum512("abc")), ErrPayload},

		// Invalid UTF-8 globs.
		{"subscribe glob invalid utf-8", ParseS2B, minimal(S2BSubscribeGlob, "", "", "", "foo/\xff"), ErrInvalidUTF8},
		{"unsubscribe glob invalid utf-8", ParseS2B, minimal(S2BUnsubscribeGlob, "", "", "", "\xc0\xaf"), ErrInvalidUTF8},
		{"confirm subscribe glob invalid utf-8", ParseB2S, minimal(B2SConfirmSubscribeGlob, "", "\xed\xa0\x80", "", ""), ErrInvalidUTF8},
		{"confirm unsubscribe glob invalid utf-8", ParseB2S, minimal(B2SConfirmUnsubscribeGlob, "", "a\xe2\x82", "", ""), ErrInvalidUTF8},
		// Topics, tracing and identifiers are arbitrary bytes.
		{"subscribe exact binary topic ok", ParseS2B, minimal(S2BSubscribeExact, "", "", "\xff", "\xff\xfe"), nil},
	}
}

func TestParseBadHeaders(t *testing.T) {
	for _, c := range badHeaderCases() {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.parse(c.b)
			if c.want == nil {
				if err != nil {
					t.Fatalf("control case failed: %v", err)
				}
				return
			}
			if !errors.Is(err, c.want) || got != nil {
				t.Fatalf("got %#v, %v; want %v", got, err, c.want)
			}
		})
	}
}

// Every message carries an authorization, which must be UTF-8, in either
// header form; the encoders refuse to produce an invalid one.
func TestInvalidUTF8Authorization(t *testing.T) {
	forEachExpanded(t, func(t *testing.T, c encodedCase, flags, typ uint16, hs []header, payload []byte) {
		// The vectors list expanded headers in minimal order, so the
		// values alone are the minimal form.
		var values []string
		for i := range hs {
			if hs[i].name == hAuthorization {
				hs[i].value = "valid \xc0\xaf"
			}
			values = append(values, hs[i].value)
		}
		if _, err := parserFor(c.msg)(expanded(flags, typ, hs, payload)); !errors.Is(err, ErrInvalidUTF8) {
			t.Errorf("expanded: %v; want ErrInvalidUTF8", err)
		}
		if _, err := parserFor(c.msg)(minimal(typ, string(payload), values...)); !errors.Is(err, ErrInvalidUTF8) {
			t.Errorf("minimal: %v; want ErrInvalidUTF8", err)
		}
		m := setAuthorization(c.msg, "\xff")
		if out, err := AppendMinimal(nil, m); !errors.Is(err, ErrInvalidUTF8) || len(out) != 0 {
			t.Errorf("AppendMinimal: %x, %v; want ErrInvalidUTF8", out, err)
		}
		if out, err := AppendExpanded(nil, m); !errors.Is(err, ErrInvalidUTF8) || len(out) != 0 {
			t.Errorf("AppendExpanded: %x, %v; want ErrInvalidUTF8", out, err)
		}
	})
}

func setAuthorization(m Message, auth string) Message {
	v := reflect.New(reflect.TypeOf(m)).Elem()
	v.Set(reflect.ValueOf(m))
	v.FieldByName("Authorization").SetString(auth)
	return v.Interface().(Message)
}

// Removing any header from the expanded form of a vector is an error, except
// x-initial-dict, which defaults to 0.
func TestParseExpandedMissingHeader(t *testing.T) {
	forEachExpanded(t, func(t *testing.T, c encodedCase, flags, typ uint16, hs []header, payload []byte) {
		for i := range hs {
			rest := append(append([]header(nil), hs[:i]...), hs[i+1:]...)
			got, err := parserFor(c.msg)(expanded(flags, typ, rest, payload))
			if hs[i].name == hInitialDict {
				if err != nil || got.(Configure).InitialDict != 0 {
					t.Errorf("without %s: %#v, %v; want InitialDict 0", hs[i].name, got, err)
				}
				continue
			}
			if !errors.Is(err, ErrHeader) || got != nil {
				t.Errorf("without %s: %#v, %v; want ErrHeader", hs[i].name, got, err)
			}
		}
	})
}

// Expanded headers: names are case-insensitive, order is free, a repeated
// name keeps its last value and unknown names are ignored.
func TestParseExpandedFlexibility(t *testing.T) {
	forEachExpanded(t, func(t *testing.T, c encodedCase, flags, typ uint16, hs []header, payload []byte) {
		var mixed []header
		mixed = append(mixed, header{"X-Unknown-Header", "whatever"})
		for i := len(hs) - 1; i >= 0; i-- { // reversed order
			mixed = append(mixed, header{strings.ToUpper(hs[i].name), "stale value, replaced below"})
		}
		for i := len(hs) - 1; i >= 0; i-- {
			name := hs[i].name
			if i%2 == 0 {
				name = strings.ToUpper(name[:1]) + name[1:]
			}
			mixed = append(mixed, header{name, hs[i].value})
		}
		mixed = append(mixed, header{"", ""}, header{"x-another", strings.Repeat("z", 300)})
		got, err := parserFor(c.msg)(expanded(flags, typ, mixed, payload))
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		if !reflect.DeepEqual(got, any(c.msg)) {
			t.Fatalf("got %#v\nwant %#v", got, c.msg)
		}
	})
}

func TestParseExpandedNonASCIIName(t *testing.T) {
	b := expanded(0, S2BSubscribeExact, []header{
		{hAuthorization, ""}, {hTracing, ""}, {hTopic, "t"}, {"x-caf\xc3\xa9", "v"},
	}, nil)
	if _, err := ParseS2B(b); !errors.Is(err, ErrHeader) {
		t.Fatalf("non-ASCII header name: %v; want ErrHeader", err)
	}
}

// In expanded form a continuation part may carry first-part headers; they
// are ignored, as in the reference.
func TestParseStreamContinuationIgnoresFirstHeaders(t *testing.T) {
	b := expanded(0, S2BNotifyStream, []header{
		{hAuthorization, ""}, {hTracing, ""}, {hIdentifier, "id"}, {hPartID, "\x03"},
		{hTopic, "t"}, {hCompressor, "\xff"},
	}, []byte("data"))
	got, err := ParseS2B(b)
	want := NotifyStream{Identifier: []byte("id"), PartID: 3, Payload: []byte("data")}
	if err != nil || !reflect.DeepEqual(got, any(want)) {
		t.Fatalf("got %#v, %v; want %#v", got, err, want)
	}
}

// Flag bits other than bit 0 are tolerated.
func TestParseUnknownFlagBits(t *testing.T) {
	for _, c := range allEncodedCases(t) {
		b := wiretest.Hex(t, c.hex)
		b[0] |= 0x80
		b[1] |= 0xf0
		got, err := parserFor(c.msg)(b)
		if err != nil || !reflect.DeepEqual(got, any(c.msg)) {
			t.Errorf("%s with extra flag bits: %#v, %v", c.name, got, err)
		}
	}
}

// Bytes after the headers of a message without a payload are ignored.
func TestParseTrailingBytesIgnored(t *testing.T) {
	for _, c := range allEncodedCases(t) {
		if payloadOf(c.msg) != nil || hasPayloadField(c.msg) {
			continue
		}
		b := append(wiretest.Hex(t, c.hex), "trailing"...)
		got, err := parserFor(c.msg)(b)
		if err != nil || !reflect.DeepEqual(got, any(c.msg)) {
			t.Errorf("%s with trailing bytes: %#v, %v", c.name, got, err)
		}
	}
}

func hasPayloadField(m Message) bool {
	switch m.(type) {
	case Notify, NotifyStream, ReceiveStream, EnableZstdCustom:
		return true
	}
	return false
}

func TestEncodeErrors(t *testing.T) {
	id65 := []byte(strings.Repeat("i", 65))
	helloSHA := wiretest.Hex64(t, vecSHA512)
	big := make([]byte, MaxHeaderValue+1)
	first := &StreamFirst{Topic: []byte(vecTopic), CompressedLength: 11, DecompressedLength: 11, CompressedSHA512: helloSHA}
	cases := []struct {
		name string
		msg  Message
		want error
	}{
		{"notify identifier 65", Notify{Identifier: id65, CompressedSHA512: wiretest.Hex64(t, vecEmptySHA)}, ErrHeader},
		{"notify length mismatch", Notify{CompressedLength: 3, DecompressedLength: 3, CompressedSHA512: helloSHA, Payload: []byte(vecMessage)}, ErrPayload},
		{"notify hash mismatch", Notify{CompressedLength: 11, DecompressedLength: 11, Payload: []byte(vecMessage)}, ErrPayload},
		{"notify uncompressed lengths differ", Notify{CompressedLength: 11, DecompressedLength: 12, CompressedSHA512: helloSHA, Payload: []byte(vecMessage)}, ErrHeader},
		{"notify stream part 0 without first", NotifyStream{Identifier: vecIdent4}, ErrHeader},
		{"receive stream part 2 with first", ReceiveStream{PartID: 2, First: first}, ErrHeader},
		{"receive stream first uncompressed lengths differ", ReceiveStream{First: &StreamFirst{CompressedLength: 1, DecompressedLength: 2}}, ErrHeader},
		{"receive stream identifier 65", ReceiveStream{PartID: 1, Identifier: id65}, ErrHeader},
		{"continue receive identifier 65", ContinueReceive{Identifier: id65}, ErrHeader},
		{"confirm receive identifier 65", ConfirmReceive{Identifier: id65}, ErrHeader},
		{"confirm notify identifier 65", ConfirmNotify{Identifier: id65}, ErrHeader},
		{"continue notify identifier 65", ContinueNotify{Identifier: id65}, ErrHeader},
		{"subscribe exact topic too long", SubscribeExact{Topic: big}, ErrHeader},
		{"missed tracing too long", Missed{Tracing: big}, ErrHeader},
		{"configure authorization too long", Configure{Authorization: string(big)}, ErrHeader},
		{"subscribe glob invalid utf-8", SubscribeGlob{Glob: "\xff"}, ErrInvalidUTF8},
		{"unsubscribe glob invalid utf-8", UnsubscribeGlob{Glob: "\xff"}, ErrInvalidUTF8},
		{"confirm subscribe glob invalid utf-8", ConfirmSubscribeGlob{Glob: "\xff"}, ErrInvalidUTF8},
		{"confirm unsubscribe glob invalid utf-8", ConfirmUnsubscribeGlob{Glob: "\xff"}, ErrInvalidUTF8},
		{"missed authorization invalid utf-8", Missed{Authorization: "\xff"}, ErrInvalidUTF8},
	}
	for _, c := range cases {
		for _, minimal := range []bool{true, false} {
			dst := []byte("keep")
			out, err := appendMode(c.msg, dst, minimal)
			if !errors.Is(err, c.want) {
				t.Errorf("%s%s: %v; want %v", c.name, modeSuffix(minimal), err, c.want)
			}
			if string(out) != "keep" {
				t.Errorf("%s%s: dst changed to %q", c.name, modeSuffix(minimal), out)
			}
		}
	}
}

func TestParseUnsigned(t *testing.T) {
	cases := []struct {
		in   string
		max  int
		want uint64
		ok   bool
	}{
		{"", 8, 0, true},
		{"", 1, 0, true},
		{"\x00", 8, 0, true},
		{"\x00\x00\x00\x01", 4, 1, true},
		{"\x00\x00\x00\x00\x01", 4, 0, false},
		{"\x01\x02", 2, 0x0102, true},
		{"\x01\x02\x03", 2, 0, false},
		{"\xff\xff\xff\xff\xff\xff\xff\xff", 8, 1<<64 - 1, true},
		{"\x00\xff\xff\xff\xff\xff\xff\xff\xff", 8, 0, false},
		{"\x00\xff\xff\xff\xff\xff\xff\xff\xff", 9, 0, false}, // max clamps to 8
		{"\x01", 0, 1, true},                                  // max clamps to 1
		{"\x01\x01", 0, 0, false},
	}
	for _, c := range cases {
		got, err := ParseUnsigned([]byte(c.in), c.max)
		if c.ok && (err != nil || got != c.want) {
			t.Errorf("ParseUnsigned(%x, %d) = %d, %v; want %d", c.in, c.max, got, err, c.want)
		}
		if !c.ok && !errors.Is(err, ErrHeader) {
			t.Errorf("ParseUnsigned(%x, %d) = %d, %v; want ErrHeader", c.in, c.max, got, err)
		}
	}
	for _, v := range []uint64{0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffffff, 1 << 32, 1<<56 - 1, 1 << 56, 1<<64 - 1} {
		b := MinimalUnsigned(v)
		if len(b) > 0 && b[0] == 0 {
			t.Errorf("MinimalUnsigned(%d) = %x has a leading zero", v, b)
		}
		if got, err := ParseUnsigned(b, 8); err != nil || got != v {
			t.Errorf("round trip of %d: %d, %v", v, got, err)
		}
	}
}

// The protocol's fixed-width exceptions, checked on values the vectors
// do not cover.
func TestFixedWidths(t *testing.T) {
	sha := wiretest.Hex64(t, vecSHA512)
	cases := []struct {
		name string
		msg  Message
		want string // minimal form, hex
	}{
		{"configure initial dict 0x0102", Configure{InitialDict: 0x0102},
			"00010001" + "0020" + strings.Repeat("00", 32) + "000100" + "000100" + "00020102" + "0000" + "0000"},
		{"confirm receive 0 subscribers is 4 bytes", ConfirmReceive{}, "00010009" + "0000" + "0000" + "0000" + "000400000000"},
		{"confirm receive max subscribers", ConfirmReceive{NumSubscribers: 1<<32 - 1}, "00010009" + "0000" + "0000" + "0000" + "0004ffffffff"},
		{"enable zstd preset level -5", EnableZstdPreset{Identifier: 2, CompressionLevel: -5},
			"00010009" + "000102" + "0002fffb" + "0000" + "0000" + "0000" + "0000"},
		{"enable zstd preset level min", EnableZstdPreset{CompressionLevel: -32768},
			"00010009" + "0000" + "00028000" + "0000" + "0000" + "0000" + "0000"},
		{"enable zstd preset min size max", EnableZstdPreset{MinSize: 1<<32 - 1},
			"00010009" + "0000" + "00020000" + "0004ffffffff" + "0000" + "0000" + "0000"},
		{"notify stream part 256", NotifyStream{PartID: 256}, "00010007" + "0000" + "0000" + "0000" + "00020100"},
		{"continue receive part 1", ContinueReceive{PartID: 1}, "00010008" + "0000" + "000101" + "0000" + "0000"},
		{"confirm notify 256 subscribers", ConfirmNotify{Subscribers: 256}, "00010006" + "0000" + "00020100" + "0000" + "0000"},
		{"receive stream first compressor 65536", ReceiveStream{First: &StreamFirst{Compressor: 65536, CompressedLength: 0, DecompressedLength: 300, CompressedSHA512: sha}},
			"00010008" + "0000" + "0000" + "0000" + "000100" + "0000" + "0003010000" + "0000" + "0002012c" + "0040" + vecSHA512},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := AppendMinimal(nil, c.msg)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(b); got != c.want {
				t.Fatalf("encoding\n got %s\nwant %s", got, c.want)
			}
			back, err := parserFor(c.msg)(b)
			if err != nil || !reflect.DeepEqual(back, any(c.msg)) {
				t.Fatalf("parse back: %#v, %v", back, err)
			}
		})
	}
}

// Shorter-than-fixed values still parse, the signed level sign-extending
// from its own width like the reference's int.from_bytes(signed=True).
func TestParseNarrowValues(t *testing.T) {
	got, err := ParseB2S(minimal(B2SEnableZstdPreset, "", "\x01", "\xff", "\x01", "", "", ""))
	want := EnableZstdPreset{Identifier: 1, CompressionLevel: -1, MinSize: 1}
	if err != nil || !reflect.DeepEqual(got, any(want)) {
		t.Errorf("one-byte level: %#v, %v; want %#v", got, err, want)
	}
	got, err = ParseB2S(minimal(B2SEnableZstdPreset, "", "", "", "", "", "", ""))
	if err != nil || !reflect.DeepEqual(got, any(EnableZstdPreset{})) {
		t.Errorf("empty values: %#v, %v", got, err)
	}
	got, err = ParseS2B(minimal(S2BConfigure, "", strings.Repeat("\x11", 32), "\x01\x00", "", "\x05", "", ""))
	wantC := Configure{SubscriberNonce: nonce(0x11), InitialDict: 5}
	if err != nil || !reflect.DeepEqual(got, any(wantC)) {
		t.Errorf("configure: %#v, %v; want %#v (only a single 01 byte enables)", got, err, wantC)
	}
	got, err = ParseS2B(minimal(S2BNotifyStream, "", "", "", "id", "\x00\x00\x00\x02"))
	wantS := NotifyStream{Identifier: []byte("id"), PartID: 2}
	if err != nil || !reflect.DeepEqual(got, any(wantS)) {
		t.Errorf("padded part id: %#v, %v; want %#v", got, err, wantS)
	}
	// A part id of empty or 00 both mean the first part.
	for _, part := range []string{"", "\x00", "\x00\x00"} {
		got, err = ParseS2B(minimal(S2BNotifyStream, "", "", "", "id", part, "t", "", "", "", sum512("")))
		if err != nil || got.(NotifyStream).First == nil {
			t.Errorf("part id %x: %#v, %v; want a first part", part, got, err)
		}
	}
}

// Header values are private copies; payloads alias the parsed buffer with
// their capacity capped.
func TestParseAliasing(t *testing.T) {
	b := wiretest.Hex(t, stateVectors["stateful_notify_uncompressed_minimal"])
	got, err := ParseS2B(b)
	if err != nil {
		t.Fatal(err)
	}
	m := got.(Notify)
	if cap(m.Payload) != len(m.Payload) {
		t.Errorf("payload capacity %d exceeds its length %d", cap(m.Payload), len(m.Payload))
	}
	for i := range b {
		b[i] ^= 0xff
	}
	if string(m.Identifier) != "\x01\x02\x03\x04" || string(m.Topic) != vecTopic {
		t.Errorf("header values alias the input: %+v", m)
	}
	if string(m.Payload) == vecMessage {
		t.Errorf("payload was copied; the documented behaviour is to alias the input")
	}
}

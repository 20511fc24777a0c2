package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/lonelypsd/lonelypsd/api/wire/wiretest"
)

var badUTF8 = []struct{ name, s string }{
	{"invalid byte", "\xff"},
	{"overlong slash", "\xc0\xaf"},
	{"surrogate", "\xed\xa0\x80"},
	{"cut multibyte", "http://\xe2\x82"},
}

func TestParseInvalidUTF8(t *testing.T) {
	zeroEtag := strings.Repeat("\x00", 64)
	type parser func([]byte) error
	subExact := func(b []byte) error { _, err := ParseSubscribeExact(b); return err }
	subGlob := func(b []byte) error { _, err := ParseSubscribeGlob(b); return err }
	unsubExact := func(b []byte) error { _, err := ParseUnsubscribeExact(b); return err }
	unsubGlob := func(b []byte) error { _, err := ParseUnsubscribeGlob(b); return err }
	check := func(b []byte) error { _, err := ParseCheckSubscriptions(b); return err }
	set := func(b []byte) error { _, err := ParseSetSubscriptions(b); return err }
	generic := func(b []byte) error { _, err := ParseResponseGeneric(b); return err }
	notify := func(b []byte) error { _, err := ParseResponseNotify(b); return err }
	checkResp := func(b []byte) error { _, err := ParseResponseCheckSubscriptions(b); return err }
	confirmReceive := func(b []byte) error { _, _, err := ParseReceiveReply(b); return err }
	confirmMissed := func(b []byte) error { _, err := ParseMissedReply(b); return err }

	cases := []struct {
		name  string
		parse parser
		build func(bad string) body
	}{
		{"subscribe exact url", subExact, func(s string) body { return body{}.s16(s).s16("t").s16("").s16("") }},
		{"subscribe exact recovery", subExact, func(s string) body { return body{}.s16(vecURL).s16("t").s16(s).s16("") }},
		{"subscribe glob url", subGlob, func(s string) body { return body{}.s16(s).s16("g").s16("").s16("") }},
		{"subscribe glob glob", subGlob, func(s string) body { return body{}.s16(vecURL).s16(s).s16("").s16("") }},
		{"subscribe glob recovery", subGlob, func(s string) body { return body{}.s16(vecURL).s16("g").s16(s).s16("") }},
		{"unsubscribe exact url", unsubExact, func(s string) body { return body{}.s16(s).s16("t").s16("") }},
		{"unsubscribe glob url", unsubGlob, func(s string) body { return body{}.s16(s).s16("g").s16("") }},
		{"unsubscribe glob glob", unsubGlob, func(s string) body { return body{}.s16(vecURL).s16(s).s16("") }},
		{"check subscriptions url", check, func(s string) body { return body{}.s16("").s16(s) }},
		{"set subscriptions url", set, func(s string) body {
			return body{}.s16("").s16(s).u8(0).raw(zeroEtag).u32(0).u32(0)
		}},
		{"set subscriptions exact recovery", set, func(s string) body {
			return body{}.s16("").s16(vecURL).u8(0).raw(zeroEtag).u32(1).s16("t").s16(s).u32(0)
		}},
		{"set subscriptions glob", set, func(s string) body {
			return body{}.s16("").s16(vecURL).u8(0).raw(zeroEtag).u32(0).u32(1).s16(s).s16("")
		}},
		{"set subscriptions glob recovery", set, func(s string) body {
			return body{}.s16("").s16(vecURL).u8(0).raw(zeroEtag).u32(0).u32(1).s16("g").s16(s)
		}},
		{"generic response authorization", generic, func(s string) body { return body{}.u16(3).s16(s).s16("") }},
		{"notify response authorization", notify, func(s string) body { return body{}.u16(4).s16(s).s16("").u32(0).s8("") }},
		{"check subscriptions response authorization", checkResp, func(s string) body {
			return body{}.u16(5).s16(s).s16("").u8(0).raw(zeroEtag)
		}},
		{"confirm receive authorization", confirmReceive, func(s string) body { return body{}.u16(8).s16(s).s16("").s8("").u32(1) }},
		{"confirm missed authorization", confirmMissed, func(s string) body { return body{}.u16(9).s16(s).s16("") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.parse(c.build("valid")); err != nil {
				t.Fatalf("control body with valid text: %v", err)
			}
			for _, bad := range badUTF8 {
				err := c.parse(c.build(bad.s))
				if !errors.Is(err, ErrInvalidUTF8) {
					t.Errorf("%s: err = %v, want ErrInvalidUTF8", bad.name, err)
				}
			}
		})
	}
}

// Topics and tracing are arbitrary bytes: invalid UTF-8 there is fine.
func TestParseArbitraryBytes(t *testing.T) {
	b := body{}.s16(vecURL).s16("\xff\xfe").s16("").s16("\xc0\xaf")
	m, err := ParseSubscribeExact(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Topic) != "\xff\xfe" || string(m.Tracing) != "\xc0\xaf" {
		t.Errorf("got %+v", m)
	}
	b = body{}.s16("").s16(vecURL).u8(0).raw(strings.Repeat("\x00", 64)).u32(2).s16("\x80").s16("").s16("\xff").s16("").u32(0)
	if _, err := ParseSetSubscriptions(b); err != nil {
		t.Errorf("set subscriptions with binary topics: %v", err)
	}
}

func setBody(exact [][2]string, globs [][2]string) body {
	b := body{}.s16("").s16(vecURL).u8(0).raw(strings.Repeat("\x00", 64)).u32(uint32(len(exact)))
	for _, x := range exact {
		b = b.s16(x[0]).s16(x[1])
	}
	b = b.u32(uint32(len(globs)))
	for _, g := range globs {
		b = b.s16(g[0]).s16(g[1])
	}
	return b
}

func TestParseSetSubscriptionsOrder(t *testing.T) {
	tests := []struct {
		name  string
		exact [][2]string
		globs [][2]string
		ok    bool
	}{
		{"empty", nil, nil, true},
		{"ascending", [][2]string{{"a", ""}, {"b", vecRecovery}}, [][2]string{{"a*", ""}, {"b*", ""}}, true},
		{"prefix first", [][2]string{{"a", ""}, {"ab", ""}}, [][2]string{{"a", ""}, {"a*", ""}}, true},
		{"empty topic first", [][2]string{{"", ""}, {"a", ""}}, nil, true},
		{"bytewise not signed", [][2]string{{"\x7f", ""}, {"\x80", ""}}, [][2]string{{"z", ""}, {"é", ""}}, true},
		{"same key in both lists", [][2]string{{"a", ""}}, [][2]string{{"a", ""}}, true},
		{"exact descending", [][2]string{{"b", ""}, {"a", ""}}, nil, false},
		{"exact duplicate", [][2]string{{"a", ""}, {"a", ""}}, nil, false},
		{"exact duplicate other recovery", [][2]string{{"a", ""}, {"a", vecRecovery}}, nil, false},
		{"exact prefix after", [][2]string{{"ab", ""}, {"a", ""}}, nil, false},
		{"exact high byte first", [][2]string{{"\x80", ""}, {"\x7f", ""}}, nil, false},
		{"exact late violation", [][2]string{{"a", ""}, {"b", ""}, {"c", ""}, {"b", ""}}, nil, false},
		{"glob descending", nil, [][2]string{{"b*", ""}, {"a*", ""}}, false},
		{"glob duplicate", nil, [][2]string{{"a*", ""}, {"a*", ""}}, false},
		{"glob non-ascii first", nil, [][2]string{{"é", ""}, {"z", ""}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSetSubscriptions(setBody(tt.exact, tt.globs))
			if tt.ok && err != nil {
				t.Errorf("unexpected error: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrUnsorted) {
				t.Errorf("err = %v, want ErrUnsorted", err)
			}
		})
	}
}

func TestEtagFormat(t *testing.T) {
	b := wiretest.Hex(t, vecSetSubscriptionsBody)
	formatAt := 2 + 2 + len(vecURL)
	for _, format := range []byte{1, 2, 0xff} {
		bad := bytes.Clone(b)
		bad[formatAt] = format
		if _, err := ParseSetSubscriptions(bad); !errors.Is(err, ErrEtagFormat) {
			t.Errorf("set subscriptions format %d: err = %v, want ErrEtagFormat", format, err)
		}
		resp := wiretest.Hex(t, vecResponseCheckSubscriptions)
		resp[6] = format
		if _, err := ParseResponseCheckSubscriptions(resp); !errors.Is(err, ErrEtagFormat) {
			t.Errorf("check subscriptions response format %d: err = %v, want ErrEtagFormat", format, err)
		}
	}
}

// A u32 count claiming billions of entries must be rejected from the body
// length alone, without allocating for them.
func TestSetSubscriptionsHugeCount(t *testing.T) {
	head := body{}.s16("").s16(vecURL).u8(0).raw(strings.Repeat("\x00", 64))
	cases := map[string]body{
		"exact count max":            head.u32(0xffffffff),
		"exact count max with data":  head.u32(0xffffffff).s16("a").s16("").s16("b").s16(""),
		"exact count 2^30":           head.u32(1 << 30).raw(strings.Repeat("\x00", 1000)),
		"glob count max":             head.u32(0).u32(0xffffffff),
		"glob count max after exact": head.u32(1).s16("a").s16("").u32(0xffffffff).s16("g").s16(""),
		"exact count one too many":   head.u32(2).s16("a").s16(""),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := ParseSetSubscriptions(b)
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrTruncated) {
				t.Errorf("err = %v, want ErrTruncated", err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
				t.Errorf("allocated %d bytes for a %d-byte body", alloc, len(b))
			}
			if elapsed > time.Second {
				t.Errorf("took %v", elapsed)
			}
		})
	}
}

func TestUnexpectedType(t *testing.T) {
	generic := wiretest.Hex(t, vecResponseGeneric)
	if _, err := ParseResponseNotify(generic); !errors.Is(err, ErrUnexpectedType) {
		t.Errorf("notify response from generic: %v", err)
	}
	if _, err := ParseResponseCheckSubscriptions(generic); !errors.Is(err, ErrUnexpectedType) {
		t.Errorf("check subscriptions response from generic: %v", err)
	}
	if _, err := ParseResponseGeneric(wiretest.Hex(t, vecResponseNotify)); !errors.Is(err, ErrUnexpectedType) {
		t.Errorf("generic response from notify: %v", err)
	}
	if _, err := ParseMissedReply(wiretest.Hex(t, vecResponseUnsubscribeImmediate)); !errors.Is(err, ErrUnexpectedType) {
		t.Errorf("missed reply 000a: %v", err)
	}
	if _, err := ParseMissedReply(wiretest.Hex(t, vecResponseConfirmReceive)); !errors.Is(err, ErrUnexpectedType) {
		t.Errorf("missed reply from confirm receive: %v", err)
	}
}

func TestParseReceiveReply(t *testing.T) {
	tests := []struct {
		name string
		b    body
		kind ReplyKind
		err  error // nil = success
	}{
		{"empty", body{}, ReplyUnknown, ErrTruncated},
		{"one byte", body{0}, ReplyUnknown, ErrTruncated},
		{"unsubscribe immediate", body{}.u16(10), ReplyUnsubscribeImmediate, nil},
		{"unsubscribe immediate with junk", body{}.u16(10).raw("whatever"), ReplyUnsubscribeImmediate, nil},
		{"confirm receive", body{}.u16(8).s16("X-HMAC a").s16("tr").s8("id").u32(7), ReplyConfirmReceive, nil},
		{"confirm receive truncated", body{}.u16(8).s16("X-HMAC a").s16("tr").s8("id").u16(0), ReplyUnknown, ErrTruncated},
		{"confirm missed", wiretest.Hex(t, vecResponseConfirmMissed), ReplyUnknown, ErrUnexpectedType},
		{"generic response", wiretest.Hex(t, vecResponseGeneric), ReplyUnknown, ErrUnexpectedType},
		{"json error body", body(`{"unsubscribe": true}`), ReplyUnknown, ErrUnexpectedType},
		{"type 0", body{0, 0}, ReplyUnknown, ErrUnexpectedType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, m, err := ParseReceiveReply(tt.b)
			if kind != tt.kind {
				t.Errorf("kind = %v, want %v", kind, tt.kind)
			}
			if tt.err == nil && err != nil {
				t.Errorf("unexpected error: %v", err)
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Errorf("err = %v, want %v", err, tt.err)
			}
			if kind == ReplyConfirmReceive && (m.Authorization != "X-HMAC a" || string(m.Tracing) != "tr" ||
				string(m.Identifier) != "id" || m.NumSubscribers != 7) {
				t.Errorf("confirm receive = %+v", m)
			}
		})
	}
}

func TestErrorMessages(t *testing.T) {
	tests := []struct {
		name string
		err  func() error
		want string
	}{
		{"overrun", func() error {
			_, err := ParseSubscribeExact(body{}.s16("http://x").u16(300).raw("abc"))
			return err
		}, "subscribe exact body: topic length 300 at offset 12 overruns body of 15 bytes: truncated"},
		{"fixed field", func() error {
			_, err := ParseResponseNotify(body{}.u16(4).s16("").s16("").u16(0))
			return err
		}, "notify response: count needs 4 bytes at offset 6 but the body is only 8 bytes: truncated"},
		{"list entry", func() error {
			b := body{}.s16("").s16(vecURL).u8(0).raw(strings.Repeat("\x00", 64)).u32(2).s16("a").s16("").u16(10).raw("xy")
			_, err := ParseSetSubscriptions(b)
			return err
		}, "set subscriptions body: exact entry 1 of 2: topic length 10 at offset 112 overruns body of 114 bytes: truncated"},
		{"unsorted", func() error {
			_, err := ParseSetSubscriptions(setBody([][2]string{{"b", ""}, {"a", ""}}, nil))
			return err
		}, `set subscriptions body: exact entry 1 topic "a" sorts before the previous entry "b": not strictly ascending`},
		{"duplicate", func() error {
			_, err := ParseSetSubscriptions(setBody(nil, [][2]string{{"a*", ""}, {"a*", ""}}))
			return err
		}, `set subscriptions body: glob entry 1 glob "a*" duplicates the previous entry "a*": not strictly ascending`},
		{"utf8", func() error {
			_, err := ParseSubscribeGlob(body{}.s16(vecURL).s16("\xff").s16("").s16(""))
			return err
		}, "subscribe glob body: glob at offset 36 is not valid UTF-8: invalid utf-8"},
		{"stream", func() error {
			_, err := ReadNotifyHeader(bytes.NewReader(body{}.s16("t").raw("short")))
			return err
		}, "notify body: body ended after 8 bytes, 5 bytes into the 64-byte sha-512: truncated"},
		{"encode too long", func() error {
			_, err := AppendSubscribeExact(nil, SubscribeExact{URL: strings.Repeat("u", 70000)})
			return err
		}, "subscribe exact body: url is 70000 bytes, more than the 65535 its length prefix allows: too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err()
			if err == nil || err.Error() != tt.want {
				t.Errorf("error\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

var errNetwork = errors.New("connection reset")

// Read errors other than a short body must come through as themselves, so a
// server can answer 400 for truncation but not for a dropped connection.
func TestReadHeaderReaderErrors(t *testing.T) {
	readers := map[string]func(r io.Reader) error{
		"notify":  func(r io.Reader) error { _, err := ReadNotifyHeader(r); return err },
		"receive": func(r io.Reader) error { _, err := ReadReceiveHeader(r); return err },
	}
	bodies := map[string]string{"notify": vecNotifyBody, "receive": vecReceiveBody}
	for name, read := range readers {
		t.Run(name, func(t *testing.T) {
			full := wiretest.Hex(t, bodies[name])
			for n := range 20 {
				r := io.MultiReader(bytes.NewReader(full[:n]), iotest.ErrReader(errNetwork))
				err := read(r)
				if !errors.Is(err, errNetwork) || errors.Is(err, ErrTruncated) {
					t.Errorf("after %d bytes: err = %v, want the reader's error and not ErrTruncated", n, err)
				}
			}
			// A reader that returns data together with io.EOF is fine.
			if err := read(iotest.DataErrReader(bytes.NewReader(full))); err != nil {
				t.Errorf("DataErrReader: %v", err)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	long := strings.Repeat("x", MaxStr16+1)
	longB := []byte(long)
	id := bytes.Repeat([]byte{1}, MaxIdentifier+1)
	unsortedExact := []ExactEntry{{Topic: []byte("b")}, {Topic: []byte("a")}}
	dupGlobs := []GlobEntry{{Glob: "a"}, {Glob: "a"}}
	tests := []struct {
		name string
		enc  func(dst []byte) ([]byte, error)
		want error
	}{
		{"notify topic", appending(AppendNotifyHeader, Notify{Topic: longB}), ErrTooLong},
		{"notify tracing", appending(AppendNotifyHeader, Notify{Tracing: longB}), ErrTooLong},
		{"notify identifier", appending(AppendNotifyHeader, Notify{Identifier: id}), ErrTooLong},
		{"subscribe exact url", appending(AppendSubscribeExact, SubscribeExact{URL: long}), ErrTooLong},
		{"subscribe exact topic", appending(AppendSubscribeExact, SubscribeExact{Topic: longB}), ErrTooLong},
		{"subscribe exact recovery", appending(AppendSubscribeExact, SubscribeExact{Recovery: long}), ErrTooLong},
		{"subscribe exact tracing", appending(AppendSubscribeExact, SubscribeExact{Tracing: longB}), ErrTooLong},
		{"subscribe exact bad url", appending(AppendSubscribeExact, SubscribeExact{URL: "\xff"}), ErrInvalidUTF8},
		{"subscribe glob glob", appending(AppendSubscribeGlob, SubscribeGlob{Glob: long}), ErrTooLong},
		{"subscribe glob bad glob", appending(AppendSubscribeGlob, SubscribeGlob{Glob: "\xc0\xaf"}), ErrInvalidUTF8},
		{"subscribe glob bad recovery", appending(AppendSubscribeGlob, SubscribeGlob{Recovery: "\xff"}), ErrInvalidUTF8},
		{"unsubscribe exact topic", appending(AppendUnsubscribeExact, SubscribeExact{Topic: longB}), ErrTooLong},
		{"unsubscribe glob url", appending(AppendUnsubscribeGlob, SubscribeGlob{URL: long}), ErrTooLong},
		{"check subscriptions url", appending(AppendCheckSubscriptions, CheckSubscriptions{URL: long}), ErrTooLong},
		{"set subscriptions url", appending(AppendSetSubscriptions, SetSubscriptions{URL: long}), ErrTooLong},
		{"set subscriptions topic", appending(AppendSetSubscriptions, SetSubscriptions{Exact: []ExactEntry{{Topic: longB}}}), ErrTooLong},
		{"set subscriptions glob recovery", appending(AppendSetSubscriptions, SetSubscriptions{Globs: []GlobEntry{{Glob: "g", Recovery: long}}}), ErrTooLong},
		{"set subscriptions unsorted", appending(AppendSetSubscriptions, SetSubscriptions{Exact: unsortedExact}), ErrUnsorted},
		{"set subscriptions duplicate glob", appending(AppendSetSubscriptions, SetSubscriptions{Globs: dupGlobs}), ErrUnsorted},
		{"response generic authorization", func(d []byte) ([]byte, error) { return AppendResponseGeneric(d, long, nil) }, ErrTooLong},
		{"response generic tracing", func(d []byte) ([]byte, error) { return AppendResponseGeneric(d, "", longB) }, ErrTooLong},
		{"response notify identifier", func(d []byte) ([]byte, error) { return AppendResponseNotify(d, "", nil, 0, id) }, ErrTooLong},
		{"response check subscriptions bad authorization", func(d []byte) ([]byte, error) {
			return AppendResponseCheckSubscriptions(d, "\xff", nil, [64]byte{})
		}, ErrInvalidUTF8},
		{"receive topic", appending(AppendReceiveHeader, Receive{Topic: longB}), ErrTooLong},
		{"receive identifier", appending(AppendReceiveHeader, Receive{Identifier: id}), ErrTooLong},
		{"missed tracing", appending(AppendMissed, Missed{Tracing: longB}), ErrTooLong},
		{"confirm receive identifier", appending(AppendConfirmReceive, ConfirmReceive{Identifier: id}), ErrTooLong},
		{"confirm missed authorization", appending(AppendConfirmMissed, ConfirmMissed{Authorization: long}), ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			got, err := tt.enc(dst)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if string(got) != "keep" {
				t.Errorf("dst changed to %d bytes on error", len(got))
			}
		})
	}
}

// The maximum lengths themselves must encode and parse.
func TestEncodeAtLimits(t *testing.T) {
	max := strings.Repeat("x", MaxStr16)
	m := SubscribeExact{URL: max, Topic: []byte(max), Recovery: max, Tracing: []byte(max)}
	b, err := AppendSubscribeExact(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseSubscribeExact(b)
	if err != nil || got.URL != max || string(got.Topic) != max || got.Recovery != max || string(got.Tracing) != max {
		t.Errorf("round trip at 65535 bytes failed: %v", err)
	}
	id := bytes.Repeat([]byte{7}, MaxIdentifier)
	b, err = AppendNotifyHeader(nil, Notify{Identifier: id, Length: 1<<64 - 1})
	if err != nil {
		t.Fatal(err)
	}
	n, err := ReadNotifyHeader(bytes.NewReader(b))
	if err != nil || !bytes.Equal(n.Identifier, id) || n.Length != 1<<64-1 {
		t.Errorf("notify round trip at limits: %+v, %v", n, err)
	}
}

// Parsed values must not alias the input, so callers can reuse buffers.
func TestParseDoesNotAlias(t *testing.T) {
	b := wiretest.Hex(t, vecSetSubscriptionsBody)
	m, err := ParseSetSubscriptions(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0xee
	}
	if string(m.Exact[0].Topic) != "a/b" || m.URL != vecURL {
		t.Errorf("parsed value changed with the input: %+v", m)
	}
}

func TestEtagBuilderMisuse(t *testing.T) {
	tests := []struct {
		name   string
		misuse func(b *EtagBuilder)
	}{
		{"AddExact after StartGlobs", func(b *EtagBuilder) { b.StartGlobs(); b.AddExact([]byte("t"), "") }},
		{"AddExact after AddGlob", func(b *EtagBuilder) { b.AddGlob("g", ""); b.AddExact([]byte("t"), "") }},
		{"AddExact after Sum", func(b *EtagBuilder) { b.Sum(); b.AddExact([]byte("t"), "") }},
		{"AddGlob after Sum", func(b *EtagBuilder) { b.Sum(); b.AddGlob("g", "") }},
		{"StartGlobs after Sum", func(b *EtagBuilder) { b.Sum(); b.StartGlobs() }},
		{"oversize topic", func(b *EtagBuilder) { b.AddExact(make([]byte, MaxStr16+1), "") }},
		{"oversize url", func(*EtagBuilder) { NewEtagBuilder(strings.Repeat("u", MaxStr16+1)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tt.misuse(NewEtagBuilder(vecURL))
		})
	}

	// StartGlobs twice is harmless.
	b := NewEtagBuilder(vecURL)
	b.StartGlobs()
	b.StartGlobs()
	if got, want := b.Sum(), wiretest.Hex64(t, vecEtagEmpty); got != want {
		t.Errorf("double StartGlobs: %x, want %x", got, want)
	}
}

// Values larger than the builder's buffer take the other write path; both
// must give the same document as plain concatenation.
func TestEtagLargeValues(t *testing.T) {
	big := strings.Repeat("é", 20000) // 40000 bytes
	exact := []ExactEntry{{Topic: []byte("a"), Recovery: big}, {Topic: []byte(big)}}
	globs := []GlobEntry{{Glob: big, Recovery: big}}
	var want bytes.Buffer
	want.WriteString("URL")
	want.Write(body{}.s16(big))
	want.WriteString("\nEXACT")
	want.Write(body{}.s16("a").s16(big).s16(big).s16(""))
	want.WriteString("\nGLOB")
	want.Write(body{}.s16(big).s16(big))
	want.WriteString("\n")
	if got := etagDocument(big, exact, globs); !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("document of %d bytes differs from expected %d bytes", len(got), want.Len())
	}
	if Etag(big, exact, globs) != sha512Sum(want.Bytes()) {
		t.Error("Etag differs from sha512 of the document")
	}
}

func TestParseReprDigest(t *testing.T) {
	want := wiretest.Hex64(t, vecMessageSHA512)
	unpadded := strings.TrimRight(vecMessageB64, "=")
	tests := []struct {
		name   string
		header string
		err    bool
	}{
		{"reference", vecReprDigest, false},
		{"no padding", "sha-512=" + unpadded, false},
		{"one pad", "sha-512=" + unpadded + "=", false},
		{"extra padding and junk after", "sha-512=" + vecMessageB64 + "==garbage", false},
		{"rfc 9530 colons", "sha-512=:" + vecMessageB64 + ":", false},
		{"whitespace inside value", "sha-512= " + vecMessageB64[:40] + "\t" + vecMessageB64[40:], false},
		{"other digests first", "sha-256=abc,sha-512=" + vecMessageB64, false},
		{"space after comma", "sha-256=abc, sha-512=" + vecMessageB64, false},
		{"item without equals skipped", "junk,sha-512=" + vecMessageB64, false},
		{"last sha-512 wins", "sha-512=AAAA,sha-512=" + vecMessageB64, false},
		{"url-safe chars skipped", "sha-512=" + vecMessageB64[:10] + "-_" + vecMessageB64[10:], false},
		{"last one invalid", "sha-512=" + vecMessageB64 + ",sha-512=AAAA", true},
		{"empty", "", true},
		{"no sha-512", "sha-256=" + vecMessageB64, true},
		{"docstring token", "sha512=" + vecMessageB64, true},
		{"upper case token", "SHA-512=" + vecMessageB64, true},
		{"token without equals", "sha-512", true},
		{"empty value", "sha-512=", true},
		{"short digest", "sha-512=AAAA", true},
		{"dangling data char", "sha-512=" + unpadded + "A", true},
		{"non-ascii", "sha-512=" + vecMessageB64[:10] + "é" + vecMessageB64[10:], true},
		{"padding inside a quantum cuts early", "sha-512=" + vecMessageB64[:42] + "==" + vecMessageB64[42:], true},
		{"padding between quanta is skipped", "sha-512=" + vecMessageB64[:40] + "==" + vecMessageB64[40:], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseReprDigest(tt.header)
			if tt.err {
				if !errors.Is(err, ErrReprDigest) {
					t.Errorf("err = %v, want ErrReprDigest", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got != want {
				t.Errorf("got %x, want %x", got, want)
			}
		})
	}
}

// Spot checks of the Python base64 emulation against CPython 3.11's
// base64.b64decode(s + "=="), recorded by running it.
func TestPythonB64Decode(t *testing.T) {
	tests := []struct {
		in   string
		want string
		err  bool
	}{
		{"", "", false},
		{"QQ", "A", false},
		{"QUI", "AB", false},
		{"QUJD", "ABC", false},
		{"QUJDRA", "ABCD", false},
		{"Q", "", true},
		{"QUJDR", "", true},
		{"=QQ", "A", false},
		{"Q=Q", "A", false},
		{"QR==", "A", false},
		{"QQ=QQ", "A\x04\x10", false},
		{"Q Q", "A", false},
		{"Q\nQ", "A", false},
		{"QQ==QUJD", "A", false},
		{"QQ=Q=Q", "A\x04", false},
		{"QQ=", "A", false},
		{"QUJ=RA", "AB", false},
		{"-_QQ", "A", false},
		{":QUJD:", "ABC", false},
		{"QQ\x00QQ", "A\x04\x10", false},
	}
	for _, tt := range tests {
		got, err := pythonB64Decode(tt.in + "==")
		if tt.err != (err != nil) {
			t.Errorf("%q: err = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if err == nil && string(got) != tt.want {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSimpleTracing(t *testing.T) {
	recv := time.Unix(1700000000, 5)
	sent := time.Unix(1700000001, 0)
	got := SimpleTracing(recv, sent)
	want := body{0}.u16(0).u64(1700000000000000005).u64(1700000001000000000)
	if !bytes.Equal(got, want) {
		t.Errorf("got %x, want %x", got, want)
	}
	if len(got) != 19 {
		t.Errorf("length %d, want 19", len(got))
	}
	at := time.Unix(1700000000, 500000000)
	got = SimpleTracing(recv, sent, Trace{Name: "auth_accepted", ExtraJSON: "{}", At: at})
	want = body{0}.u16(1).s16("auth_accepted").s16("{}").u64(math.Float64bits(1700000000.5)).u64(1700000000000000005).u64(1700000001000000000)
	if !bytes.Equal(got, want) {
		t.Errorf("with a trace: got %x, want %x", got, want)
	}
	big := Trace{Name: "x", ExtraJSON: strings.Repeat("a", 40000), At: at}
	if got := SimpleTracing(recv, sent, big, big); got[0] != 1 || binary.BigEndian.Uint16(got[1:]) != 1 {
		t.Errorf("oversized traces not truncated: flag %d, count %d", got[0], binary.BigEndian.Uint16(got[1:]))
	}
}

func TestReplyKindString(t *testing.T) {
	for k, want := range map[ReplyKind]string{
		ReplyUnknown: "unknown", ReplyConfirmReceive: "confirm receive",
		ReplyConfirmMissed: "confirm missed", ReplyUnsubscribeImmediate: "unsubscribe immediate",
		ReplyKind(42): "ReplyKind(42)",
	} {
		if k.String() != want {
			t.Errorf("%d: %q, want %q", int(k), k.String(), want)
		}
	}
}

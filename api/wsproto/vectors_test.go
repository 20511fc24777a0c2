package wsproto

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"reflect"
	"testing"

	"github.com/lonelypsd/lonelypsd/api/wire/wiretest"
)

// vectorCase is one message of the reference vectors built from the inputs they
// states; key names its two vectors, key+"_minimal" and key+"_expanded".
type vectorCase struct {
	key string
	msg Message
}

func vectorCases(tb testing.TB) []vectorCase {
	helloSHA := wiretest.Hex64(tb, vecSHA512)
	return []vectorCase{
		{"stateful_configure", Configure{
			SubscriberNonce: nonce(0x11), EnableZstd: true, EnableTraining: true, InitialDict: 0,
		}},
		{"stateful_confirm_configure", ConfirmConfigure{BroadcasterNonce: nonce(0x22)}},
		{"stateful_subscribe_exact", SubscribeExact{Authorization: vecDummyAuth, Topic: []byte(vecTopic)}},
		{"stateful_subscribe_glob", SubscribeGlob{Glob: "foo/*"}},
		{"stateful_unsubscribe_exact", UnsubscribeExact{Topic: []byte(vecTopic)}},
		{"stateful_confirm_subscribe_exact", ConfirmSubscribeExact{Topic: []byte(vecTopic)}},
		{"stateful_confirm_unsubscribe_glob", ConfirmUnsubscribeGlob{Glob: "foo/*"}},
		{"stateful_notify_uncompressed", Notify{
			Identifier: vecIdent4, Topic: []byte(vecTopic), Compressor: 0,
			CompressedLength: 11, DecompressedLength: 11, CompressedSHA512: helloSHA,
			Payload: []byte(vecMessage),
		}},
		{"stateful_notify_empty_message", Notify{
			Identifier: vecIdent4, Topic: []byte(vecTopic), CompressedSHA512: wiretest.Hex64(tb, vecEmptySHA),
		}},
		{"stateful_confirm_notify_2", ConfirmNotify{Identifier: vecIdent4, Subscribers: 2}},
		{"stateful_confirm_notify_0", ConfirmNotify{Identifier: vecIdent4, Subscribers: 0}},
		{"stateful_notify_stream_first_uncompressed", NotifyStream{
			Identifier: vecIdent4, PartID: 0,
			First: &StreamFirst{
				Topic: []byte(vecTopic), CompressedLength: 11, DecompressedLength: 11, CompressedSHA512: helloSHA,
			},
			Payload: []byte("hello"),
		}},
		{"stateful_notify_stream_part1", NotifyStream{Identifier: vecIdent4, PartID: 1, Payload: []byte(" world")}},
		{"stateful_continue_notify_part0", ContinueNotify{Identifier: vecIdent4, PartID: 0}},
		{"stateful_receive_stream_first_uncompressed", ReceiveStream{
			Identifier: vecIdent4,
			First: &StreamFirst{
				Topic: []byte(vecTopic), CompressedLength: 11, DecompressedLength: 11, CompressedSHA512: helloSHA,
			},
			Payload: []byte(vecMessage),
		}},
		{"stateful_receive_stream_first_compressed_id1", ReceiveStream{
			Identifier: vecIdent4,
			First: &StreamFirst{
				Topic: []byte(vecTopic), Compressor: 1, CompressedLength: 3, DecompressedLength: 11,
				CompressedSHA512: wiretest.Hex64(tb, vecABCSHA),
			},
			Payload: []byte("abc"),
		}},
		{"stateful_receive_stream_part2", ReceiveStream{Identifier: vecIdent4, PartID: 2, Payload: []byte("xyz")}},
		{"stateful_continue_receive_part0", ContinueReceive{Identifier: vecIdent4, PartID: 0}},
		{"stateful_confirm_receive", ConfirmReceive{Identifier: vecIdent4, NumSubscribers: 1}},
		{"stateful_missed", Missed{Topic: []byte(vecTopic)}},
		{"stateful_enable_zstd_preset_id1", EnableZstdPreset{
			Identifier: 1, CompressionLevel: 3, MinSize: 16384, MaxSize: 1<<64 - 1,
		}},
		{"stateful_enable_zstd_custom_65536", EnableZstdCustom{
			Identifier: 65536, CompressionLevel: 3, MinSize: 32, MaxSize: 16384,
			SHA512: wiretest.Hex64(tb, vecDictSHA512), Dictionary: vecDictionary,
		}},
		{"stateful_disable_zstd_custom_65536", DisableZstdCustom{Identifier: 65536}},
	}
}

// derivedCases are the three message types the reference vectors lack.
// Their layouts equal a sibling's (in the protocol's header tables), so their expected
// bytes are the sibling's vector with the type word replaced.
func derivedCases() []struct {
	key, sibling string
	typ          uint16
	msg          Message
} {
	return []struct {
		key, sibling string
		typ          uint16
		msg          Message
	}{
		{"unsubscribe_glob", "stateful_subscribe_glob", S2BUnsubscribeGlob, UnsubscribeGlob{Glob: "foo/*"}},
		{"confirm_subscribe_glob", "stateful_confirm_unsubscribe_glob", B2SConfirmSubscribeGlob, ConfirmSubscribeGlob{Glob: "foo/*"}},
		{"confirm_unsubscribe_exact", "stateful_confirm_subscribe_exact", B2SConfirmUnsubscribeExact, ConfirmUnsubscribeExact{Topic: []byte(vecTopic)}},
	}
}

// encodedCase is one message in one header mode with its expected bytes.
type encodedCase struct {
	name    string
	msg     Message
	minimal bool
	hex     string
}

// allEncodedCases lists every reference vector plus the derived ones, in
// both header modes.
func allEncodedCases(tb testing.TB) []encodedCase {
	var out []encodedCase
	for _, c := range vectorCases(tb) {
		for _, minimal := range []bool{true, false} {
			name := c.key + modeSuffix(minimal)
			h, ok := stateVectors[name]
			if !ok {
				tb.Fatalf("no vector %s", name)
			}
			out = append(out, encodedCase{name, c.msg, minimal, h})
		}
	}
	for _, c := range derivedCases() {
		for _, minimal := range []bool{true, false} {
			b := wiretest.Hex(tb, stateVectors[c.sibling+modeSuffix(minimal)])
			binary.BigEndian.PutUint16(b[2:], c.typ)
			out = append(out, encodedCase{"derived_" + c.key + modeSuffix(minimal), c.msg, minimal, hex.EncodeToString(b)})
		}
	}
	return out
}

func modeSuffix(minimal bool) string {
	if minimal {
		return "_minimal"
	}
	return "_expanded"
}

func appendMode(m Message, dst []byte, minimal bool) ([]byte, error) {
	if minimal {
		return AppendMinimal(dst, m)
	}
	return AppendExpanded(dst, m)
}

func TestVectorsCoverEverySpecVector(t *testing.T) {
	used := map[string]bool{}
	for _, c := range vectorCases(t) {
		used[c.key+"_minimal"] = true
		used[c.key+"_expanded"] = true
	}
	for name := range stateVectors {
		if !used[name] {
			t.Errorf("vector %s is not tested", name)
		}
	}
}

func TestVectorInputsAreConsistent(t *testing.T) {
	for _, c := range []struct{ data, sum string }{
		{vecMessage, vecSHA512}, {"", vecEmptySHA}, {"abc", vecABCSHA}, {string(vecDictionary), vecDictSHA512},
	} {
		if got := sha512.Sum512([]byte(c.data)); hex.EncodeToString(got[:]) != c.sum {
			t.Errorf("sha512(%q) = %x, want %s", c.data, got, c.sum)
		}
	}
}

func TestVectorsEncode(t *testing.T) {
	for _, c := range allEncodedCases(t) {
		t.Run(c.name, func(t *testing.T) {
			got, err := appendMode(c.msg, nil, c.minimal)
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			if hex.EncodeToString(got) != c.hex {
				t.Fatalf("encoding\n got %x\nwant %s", got, c.hex)
			}
			// Appending after existing bytes leaves them alone.
			prefix := []byte("prefix")
			got2, err := appendMode(c.msg, bytes.Clone(prefix), c.minimal)
			if err != nil || !bytes.Equal(got2, append(prefix, got...)) {
				t.Fatalf("append after a prefix: %x, %v", got2, err)
			}
		})
	}
}

func TestVectorsParse(t *testing.T) {
	for _, c := range allEncodedCases(t) {
		t.Run(c.name, func(t *testing.T) {
			got, err := parserFor(c.msg)(wiretest.Hex(t, c.hex))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if !reflect.DeepEqual(got, any(c.msg)) {
				t.Fatalf("parse\n got %#v\nwant %#v", got, c.msg)
			}
		})
	}
}

// The other direction's parser reads the same type number as a different
// message, which must fail or at least not panic; for most vectors it fails.
func TestVectorsWrongDirectionDoesNotPanic(t *testing.T) {
	for _, c := range allEncodedCases(t) {
		b := wiretest.Hex(t, c.hex)
		_, _ = ParseS2B(b)
		_, _ = ParseB2S(b)
	}
}

// the reference vector "int_to_minimal_unsigned".
func TestMinimalUnsignedVectors(t *testing.T) {
	for _, c := range []struct {
		v   uint64
		hex string
	}{
		{0, ""},
		{1, "01"},
		{255, "ff"},
		{256, "0100"},
		{65535, "ffff"},
		{65536, "010000"},
		{18446744073709551615, "ffffffffffffffff"},
	} {
		got := MinimalUnsigned(c.v)
		if hex.EncodeToString(got) != c.hex {
			t.Errorf("MinimalUnsigned(%d) = %x, want %s", c.v, got, c.hex)
		}
		back, err := ParseUnsigned(got, 8)
		if err != nil || back != c.v {
			t.Errorf("ParseUnsigned(%x, 8) = %d, %v; want %d", got, back, err, c.v)
		}
	}
}

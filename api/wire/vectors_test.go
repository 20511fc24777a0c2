package wire

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"

	"github.com/lonelypsd/lonelypsd/api/wire/wiretest"
)

// Inputs and expected bytes copied from the reference's test vectors, which the
// Python reference produced.
const (
	vecURL      = "http://127.0.0.1:3002/v1/receive"
	vecRecovery = "http://127.0.0.1:3002/v1/recover"
	vecTopic    = "foo/bar"
	vecMessage  = "hello world"

	// the reference vector "message"
	vecMessageSHA512 = "309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee511a7c7a9bcd3ca86d4cd86f989dd35bc5ff499670da34255b45b0cfd830e81f605dcf7dc5542e93ae9cd76f"
	vecMessageB64    = "MJ7MSJwS1utMxA9QyQLytNDtd+5RGnx6m808qG1M2G+YndNbxf9JlnDaNCVbRbDP2DDoH2Bdz33FVC6TrpzXbw=="
	vecReprDigest    = "sha-512=MJ7MSJwS1utMxA9QyQLytNDtd+5RGnx6m808qG1M2G+YndNbxf9JlnDaNCVbRbDP2DDoH2Bdz33FVC6TrpzXbw=="

	// the reference vector "Strong etag"
	vecEtagSampleDocument = "55524c0020687474703a2f2f3132372e302e302e313a333030322f76312f726563656976650a45584143540003612f620020687474703a2f2f3132372e302e302e313a333030322f76312f7265636f7665720007666f6f2f62617200000a474c4f420005666f6f2f2a0020687474703a2f2f3132372e302e302e313a333030322f76312f7265636f7665720a"
	vecEtagSample         = "36b180aca5aeb782a94035cf43ce93764c55d78d75d08d7e9454da187e2e66aab2c558c5d6b91480fc08d9185d8e9dc4b3b90f543422b38882a7fa8893943547"
	vecEtagEmptyDocument  = "55524c0020687474703a2f2f3132372e302e302e313a333030322f76312f726563656976650a45584143540a474c4f420a"
	vecEtagEmpty          = "d0b76f2d339993edef37e17e43dc693e5fbef471e9fd019da05cbde56f4f2ae8d1d42fdd734e456e6cb6a3838b4e08f415a47cb14563308f2051b6e8429ab0ae"
	vecEtagOneTopic       = "3c62863d7e8c20c8d36b5aa8d22b629e5662b448ce52b71c8b43771019c7109f2174acf974d9848b2c6f305a332d82bbffc4d97b005a4a096ea424915471c5f0"

	// the reference vector "Stateless (HTTP) bodies"
	vecNotifyBody                   = "0007666f6f2f626172309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee511a7c7a9bcd3ca86d4cd86f989dd35bc5ff499670da34255b45b0cfd830e81f605dcf7dc5542e93ae9cd76f00000401020304000000000000000b68656c6c6f20776f726c64"
	vecSubscribeExactBody           = "0020687474703a2f2f3132372e302e302e313a333030322f76312f726563656976650007666f6f2f6261720020687474703a2f2f3132372e302e302e313a333030322f76312f7265636f7665720000"
	vecSubscribeGlobBody            = "0020687474703a2f2f3132372e302e302e313a333030322f76312f726563656976650005666f6f2f2a00000000"
	vecUnsubscribeExactBody         = "0020687474703a2f2f3132372e302e302e313a333030322f76312f726563656976650007666f6f2f6261720000"
	vecCheckSubscriptionsBody       = "00000020687474703a2f2f3132372e302e302e313a333030322f76312f72656365697665"
	vecSetSubscriptionsBody         = "00000020687474703a2f2f3132372e302e302e313a333030322f76312f726563656976650036b180aca5aeb782a94035cf43ce93764c55d78d75d08d7e9454da187e2e66aab2c558c5d6b91480fc08d9185d8e9dc4b3b90f543422b38882a7fa8893943547000000020003612f620020687474703a2f2f3132372e302e302e313a333030322f76312f7265636f7665720007666f6f2f6261720000000000010005666f6f2f2a0020687474703a2f2f3132372e302e302e313a333030322f76312f7265636f766572"
	vecResponseGeneric              = "000300000000"
	vecResponseNotify               = "000400000000000000020401020304"
	vecResponseCheckSubscriptions   = "0005000000000036b180aca5aeb782a94035cf43ce93764c55d78d75d08d7e9454da187e2e66aab2c558c5d6b91480fc08d9185d8e9dc4b3b90f543422b38882a7fa8893943547"
	vecReceiveBody                  = "00000007666f6f2f626172080102030405060708000000000000000b68656c6c6f20776f726c64"
	vecMissedBody                   = "00000007666f6f2f626172"
	vecResponseConfirmReceive       = "00080000000008010203040506070800000001"
	vecResponseConfirmMissed        = "000900000000"
	vecResponseUnsubscribeImmediate = "000a"
)

var (
	vecIdent4 = []byte{1, 2, 3, 4}
	vecIdent8 = []byte{1, 2, 3, 4, 5, 6, 7, 8}

	// etag_sample inputs, also the lists of stateless_set_subscriptions_body.
	vecSampleExact = []ExactEntry{{Topic: []byte("a/b"), Recovery: vecRecovery}, {Topic: []byte(vecTopic)}}
	vecSampleGlobs = []GlobEntry{{Glob: "foo/*", Recovery: vecRecovery}}
)

func TestVectorMessageReprDigest(t *testing.T) {
	sum := sha512.Sum512([]byte(vecMessage))
	if got := hex.EncodeToString(sum[:]); got != vecMessageSHA512 {
		t.Fatalf("sha512(message) = %s, want %s", got, vecMessageSHA512)
	}
	if got := ReprDigest(sum); got != vecReprDigest {
		t.Errorf("ReprDigest = %q, want %q", got, vecReprDigest)
	}
	if got := ReprDigest(sum); got != "sha-512="+vecMessageB64 {
		t.Errorf("ReprDigest value differs from sha512_b64 %q", vecMessageB64)
	}
	parsed, err := ParseReprDigest(vecReprDigest)
	if err != nil {
		t.Fatalf("ParseReprDigest: %v", err)
	}
	if parsed != sum {
		t.Errorf("ParseReprDigest = %x, want %x", parsed, sum)
	}
}

func TestVectorEtag(t *testing.T) {
	tests := []struct {
		name     string
		exact    []ExactEntry
		globs    []GlobEntry
		document string // "" when the spec gives only the hash
		etag     string
	}{
		{"etag_sample", vecSampleExact, vecSampleGlobs, vecEtagSampleDocument, vecEtagSample},
		{"etag_empty", nil, nil, vecEtagEmptyDocument, vecEtagEmpty},
		{"etag_one_topic", []ExactEntry{{Topic: []byte(vecTopic), Recovery: vecRecovery}}, nil, "", vecEtagOneTopic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := etagDocument(vecURL, tt.exact, tt.globs)
			if tt.document != "" && hex.EncodeToString(doc) != tt.document {
				t.Errorf("document\n got %x\nwant %s", doc, tt.document)
			}
			if sum := sha512.Sum512(doc); hex.EncodeToString(sum[:]) != tt.etag {
				t.Errorf("sha512(document) = %x, want %s", sum, tt.etag)
			}
			got := Etag(vecURL, tt.exact, tt.globs)
			if hex.EncodeToString(got[:]) != tt.etag {
				t.Errorf("Etag = %x, want %s", got, tt.etag)
			}

			// The builder without an explicit StartGlobs gives the same
			// result, as does calling Sum twice.
			b := NewEtagBuilder(vecURL)
			for _, x := range tt.exact {
				b.AddExact(x.Topic, x.Recovery)
			}
			for _, g := range tt.globs {
				b.AddGlob(g.Glob, g.Recovery)
			}
			if s1, s2 := b.Sum(), b.Sum(); s1 != got || s2 != got {
				t.Errorf("builder Sum = %x / %x, want %x", s1, s2, got)
			}
		})
	}
}

// bodyVector is one "Stateless (HTTP) bodies" vector: encode builds it from
// the vector's stated inputs, decode parses it back into want.
type bodyVector struct {
	name   string
	hex    string
	encode func(dst []byte) ([]byte, error)
	decode func(b []byte) (any, error)
	want   any
	// header is the length of the part a Read*Header function consumes, for
	// bodies whose message follows; 0 when decode consumes the whole body.
	header int
}

// replyResult lets ParseReceiveReply's two values sit in a bodyVector.
type replyResult struct {
	Kind ReplyKind
	Msg  ConfirmReceive
}

func bodyVectors(tb testing.TB) []bodyVector {
	sha := wiretest.Hex64(tb, vecMessageSHA512)
	etag := wiretest.Hex64(tb, vecEtagSample)
	notify := Notify{Topic: []byte(vecTopic), SHA512: sha, Identifier: vecIdent4, Length: uint64(len(vecMessage))}
	receive := Receive{Topic: []byte(vecTopic), Identifier: vecIdent8, Length: uint64(len(vecMessage))}
	return []bodyVector{
		{
			name: "stateless_notify_body", hex: vecNotifyBody, want: notify,
			header: len(vecNotifyBody)/2 - len(vecMessage),
			encode: withMessage(AppendNotifyHeader, notify),
			decode: func(b []byte) (any, error) { return ReadNotifyHeader(bytes.NewReader(b)) },
		},
		{
			name: "stateless_subscribe_exact_body", hex: vecSubscribeExactBody,
			want:   SubscribeExact{URL: vecURL, Topic: []byte(vecTopic), Recovery: vecRecovery},
			encode: appending(AppendSubscribeExact, SubscribeExact{URL: vecURL, Topic: []byte(vecTopic), Recovery: vecRecovery, Tracing: []byte{}}),
			decode: parsing(ParseSubscribeExact),
		},
		{
			name: "stateless_subscribe_glob_body", hex: vecSubscribeGlobBody,
			want:   SubscribeGlob{URL: vecURL, Glob: "foo/*"},
			encode: appending(AppendSubscribeGlob, SubscribeGlob{URL: vecURL, Glob: "foo/*"}),
			decode: parsing(ParseSubscribeGlob),
		},
		{
			name: "stateless_unsubscribe_exact_body", hex: vecUnsubscribeExactBody,
			want: SubscribeExact{URL: vecURL, Topic: []byte(vecTopic)},
			// Recovery is not part of an unsubscribe body and must not leak in.
			encode: appending(AppendUnsubscribeExact, SubscribeExact{URL: vecURL, Topic: []byte(vecTopic), Recovery: vecRecovery}),
			decode: parsing(ParseUnsubscribeExact),
		},
		{
			name: "stateless_check_subscriptions_body", hex: vecCheckSubscriptionsBody,
			want:   CheckSubscriptions{URL: vecURL},
			encode: appending(AppendCheckSubscriptions, CheckSubscriptions{URL: vecURL}),
			decode: parsing(ParseCheckSubscriptions),
		},
		{
			name: "stateless_set_subscriptions_body", hex: vecSetSubscriptionsBody,
			want: SetSubscriptions{URL: vecURL, Etag: etag, Exact: vecSampleExact, Globs: vecSampleGlobs},
			encode: appending(AppendSetSubscriptions, SetSubscriptions{
				URL: vecURL, Etag: Etag(vecURL, vecSampleExact, vecSampleGlobs),
				Exact: vecSampleExact, Globs: vecSampleGlobs,
			}),
			decode: parsing(ParseSetSubscriptions),
		},
		{
			name: "stateless_response_generic_noauth", hex: vecResponseGeneric,
			want:   ResponseGeneric{},
			encode: func(dst []byte) ([]byte, error) { return AppendResponseGeneric(dst, "", nil) },
			decode: parsing(ParseResponseGeneric),
		},
		{
			name: "stateless_response_notify_noauth", hex: vecResponseNotify,
			want:   ResponseNotify{Count: 2, Identifier: vecIdent4},
			encode: func(dst []byte) ([]byte, error) { return AppendResponseNotify(dst, "", nil, 2, vecIdent4) },
			decode: parsing(ParseResponseNotify),
		},
		{
			name: "stateless_response_check_subscriptions_noauth", hex: vecResponseCheckSubscriptions,
			want: ResponseCheckSubscriptions{Etag: etag},
			encode: func(dst []byte) ([]byte, error) {
				return AppendResponseCheckSubscriptions(dst, "", nil, Etag(vecURL, vecSampleExact, vecSampleGlobs))
			},
			decode: parsing(ParseResponseCheckSubscriptions),
		},
		{
			name: "stateless_receive_body", hex: vecReceiveBody, want: receive,
			header: len(vecReceiveBody)/2 - len(vecMessage),
			encode: withMessage(AppendReceiveHeader, receive),
			decode: func(b []byte) (any, error) { return ReadReceiveHeader(bytes.NewReader(b)) },
		},
		{
			name: "stateless_missed_body", hex: vecMissedBody,
			want:   Missed{Topic: []byte(vecTopic)},
			encode: appending(AppendMissed, Missed{Topic: []byte(vecTopic)}),
			decode: parsing(ParseMissed),
		},
		{
			name: "stateless_response_confirm_receive_noauth", hex: vecResponseConfirmReceive,
			want:   replyResult{ReplyConfirmReceive, ConfirmReceive{Identifier: vecIdent8, NumSubscribers: 1}},
			encode: appending(AppendConfirmReceive, ConfirmReceive{Identifier: vecIdent8, NumSubscribers: 1}),
			decode: func(b []byte) (any, error) {
				k, m, err := ParseReceiveReply(b)
				return replyResult{k, m}, err
			},
		},
		{
			name: "stateless_response_confirm_missed_noauth", hex: vecResponseConfirmMissed,
			want:   ConfirmMissed{},
			encode: appending(AppendConfirmMissed, ConfirmMissed{}),
			decode: parsing(ParseMissedReply),
		},
		{
			name: "stateless_response_unsubscribe_immediate", hex: vecResponseUnsubscribeImmediate,
			want:   replyResult{Kind: ReplyUnsubscribeImmediate},
			encode: func(dst []byte) ([]byte, error) { return AppendUnsubscribeImmediate(dst), nil },
			decode: func(b []byte) (any, error) {
				k, m, err := ParseReceiveReply(b)
				return replyResult{k, m}, err
			},
		},
	}
}

func TestVectorBodiesEncode(t *testing.T) {
	for _, v := range bodyVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			got, err := v.encode(nil)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if hex.EncodeToString(got) != v.hex {
				t.Errorf("encode\n got %x\nwant %s", got, v.hex)
			}
			// Appending keeps what dst already holds.
			prefix := []byte("prefix")
			got, err = v.encode(prefix)
			if err != nil {
				t.Fatalf("encode after prefix: %v", err)
			}
			if !bytes.HasPrefix(got, prefix) || hex.EncodeToString(got[len(prefix):]) != v.hex {
				t.Errorf("encode after prefix\n got %x\nwant %x%s", got, prefix, v.hex)
			}
		})
	}
}

func TestVectorBodiesDecode(t *testing.T) {
	for _, v := range bodyVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			b := wiretest.Hex(t, v.hex)
			got, err := v.decode(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, v.want) {
				t.Errorf("decode\n got %#v\nwant %#v", got, v.want)
			}
			// Trailing bytes are ignored, as by the reference.
			got, err = v.decode(append(b, 0xde, 0xad, 0xbe, 0xef))
			if err != nil {
				t.Fatalf("decode with trailing bytes: %v", err)
			}
			if !reflect.DeepEqual(got, v.want) {
				t.Errorf("decode with trailing bytes\n got %#v\nwant %#v", got, v.want)
			}
		})
	}
}

// TestVectorBodiesTruncated cuts every vector at every length. Every prefix
// must fail with ErrTruncated, except for bodies whose message follows a
// header: once the header is complete, reading it succeeds, because the
// message length is checked by whoever streams the message.
func TestVectorBodiesTruncated(t *testing.T) {
	for _, v := range bodyVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			full := wiretest.Hex(t, v.hex)
			for n := range len(full) {
				prefix := bytes.Clone(full[:n]) // exact capacity, so overreads would panic
				got, err := v.decode(prefix)
				if v.header > 0 && n >= v.header {
					if err != nil {
						t.Errorf("prefix of %d bytes (header complete): %v", n, err)
					} else if !reflect.DeepEqual(got, v.want) {
						t.Errorf("prefix of %d bytes: got %#v, want %#v", n, got, v.want)
					}
					continue
				}
				if !errors.Is(err, ErrTruncated) {
					t.Errorf("prefix of %d bytes: err = %v, want ErrTruncated", n, err)
				}
			}
		})
	}
}

// TestReadHeaderStopsAtMessage checks that the streaming readers leave the
// reader exactly at the message, even when it delivers one byte per call.
func TestReadHeaderStopsAtMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		read func(r *bytes.Reader) error
	}{
		{"notify", vecNotifyBody, func(r *bytes.Reader) error { _, err := ReadNotifyHeader(oneByteReader{r}); return err }},
		{"receive", vecReceiveBody, func(r *bytes.Reader) error { _, err := ReadReceiveHeader(oneByteReader{r}); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bytes.NewReader(wiretest.Hex(t, tc.hex))
			if err := tc.read(r); err != nil {
				t.Fatal(err)
			}
			rest := make([]byte, r.Len())
			r.Read(rest)
			if string(rest) != vecMessage {
				t.Errorf("left %q unread, want the message %q", rest, vecMessage)
			}
		})
	}
}

type oneByteReader struct{ r *bytes.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

package auth

import (
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// Inputs of the reference vectors: now 1700000000, nonce AbCdEf, to-broadcaster
// secret 0x00..0x3f, to-subscriber secret 0x40..0x7f, empty tracing.
var (
	vectorNow = time.Unix(1700000000, 0)
	subURL    = "http://127.0.0.1:3002/v1/receive"
	recURL    = "http://127.0.0.1:3002/v1/recover"
	topic     = []byte("foo/bar")
	id4       = []byte{1, 2, 3, 4}
	id8       = []byte{1, 2, 3, 4, 5, 6, 7, 8}
	msgSum    = sha512.Sum512([]byte("hello world"))
	subNonce  = [32]byte(bytesOf(0x11, 32))
	broNonce  = [32]byte(bytesOf(0x22, 32))
	dictSum   = sha512.Sum512([]byte(strings.Repeat("example dictionary bytes ", 4)))
	// The strong etag of {exact foo/bar -> recovery url; glob foo/* ->
	// recovery url} for the subscriber url, as the reference vectors use it. Its
	// computation belongs to package wire, which checks its own vectors.
	etag = [64]byte(mustHex("5fabb2fb42110ee1e3aaad6d15239b434aa322d79b7cb3e1ae7161059d1fa0699d9296e35930523e0b6cf9252eebc43a110afe54bf6daac11ee2bca4753fbde6"))
)

func bytesOf(b byte, n int) []byte { return []byte(strings.Repeat(string([]byte{b}), n)) }

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// seq is 64 bytes counting up from from: the vector secrets.
func seq(from byte) []byte {
	b := make([]byte, 64)
	for i := range b {
		b[i] = from + byte(i)
	}
	return b
}

func wsURL(ctr int64) string { return WebsocketURL(ConnectionNonce(subNonce, broNonce), ctr) }

type vector struct {
	name   string
	msg    Message
	toSign string
	header string
}

func vectors() []vector {
	return []vector{
		{"hmac_notify", Notify{Topic: topic, Identifier: id4, SHA512: msgSum}, "03000000006553f1000641624364456600000007666f6f2f6261720401020304309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee511a7c7a9bcd3ca86d4cd86f989dd35bc5ff499670da34255b45b0cfd830e81f605dcf7dc5542e93ae9cd76f", "X-HMAC 1700000000:AbCdEf:pA8OsFcvfynzBFzk4bU+454Ip3CrU0qvzeRU79BDGDx9xJ5BgbJDgWnuGRmj/ypC3bwxrSDwM4uVo+wIyD7mZQ=="},
		{"hmac_subscribe_exact", SubscribeExact{URL: subURL, Recovery: recURL, Topic: topic}, "01000000006553f1000641624364456600000020687474703a2f2f3132372e302e302e313a333030322f76312f726563656976650020687474703a2f2f3132372e302e302e313a333030322f76312f7265636f7665720007666f6f2f626172", "X-HMAC 1700000000:AbCdEf:xjZdFVvNJfVJk1QYQX17rPFIr0R3x8ThfJV0CP52IzpZhJ+ga21YX5LXPoT0caeyRdBh8XlDu0kDMSUdNPtjCQ=="},
		{"hmac_unsubscribe_exact(recovery=None)", SubscribeExact{URL: subURL, Topic: topic}, "01000000006553f1000641624364456600000020687474703a2f2f3132372e302e302e313a333030322f76312f7265636569766500000007666f6f2f626172", "X-HMAC 1700000000:AbCdEf:LiwS5VANQ2w9XKKSMdnKN3YJYxGifbKKm0ZAulhD1SoWWAzfy6HKhP39yJXejzrBzSaQPiBpqof36GR7ARmaNQ=="},
		{"hmac_subscribe_glob", SubscribeGlob{URL: subURL, Recovery: recURL, Glob: "foo/*"}, "02000000006553f1000641624364456600000020687474703a2f2f3132372e302e302e313a333030322f76312f726563656976650020687474703a2f2f3132372e302e302e313a333030322f76312f7265636f7665720005666f6f2f2a", "X-HMAC 1700000000:AbCdEf:w1KmDlJHVHHZ1k6fSHatd6jQ9r+WtrVRzN1G7tKsv76tOCCgG7uSLDFwTuaa579uAq9kBMf/hPKTCBtrrh0dUA=="},
		{"hmac_check_subscriptions", CheckSubscriptions{URL: subURL}, "05000000006553f1000641624364456600000020687474703a2f2f3132372e302e302e313a333030322f76312f72656365697665", "X-HMAC 1700000000:AbCdEf:ikc2K0CY8lgn4dfVG9tm/5kZkrre4aOMoMGWDBxDCbnp8oIZCIdy7ML54ORVx8pFJsISl3MPU7gIvadP+dlyHg=="},
		{"hmac_set_subscriptions", SetSubscriptions{URL: subURL, Etag: etag}, "06000000006553f1000641624364456600000020687474703a2f2f3132372e302e302e313a333030322f76312f72656365697665005fabb2fb42110ee1e3aaad6d15239b434aa322d79b7cb3e1ae7161059d1fa0699d9296e35930523e0b6cf9252eebc43a110afe54bf6daac11ee2bca4753fbde6", "X-HMAC 1700000000:AbCdEf:HzNito5ZzAnDDv8hTDBTy6XxxYWxx3i/ADDC7y589Cu6N6Gj03wIcEe+eCq0i8413fCmOxhlbltINwBP5uVhZw=="},
		{"hmac_confirm_receive(stateless)", ConfirmReceive{Identifier: id8, NumSubscribers: 1, URL: subURL}, "08000000006553f100064162436445660000080102030405060708000000010020687474703a2f2f3132372e302e302e313a333030322f76312f72656365697665", "X-HMAC 1700000000:AbCdEf:XV5+jl97VWuFZVc7Tf4dZuqGmDSOW5Nc3rNDt9JggE2VGxsDDUmvkM2AL98YtPloTsaUVXq1UPyNtIu3WZdbEQ=="},
		{"hmac_confirm_missed", ConfirmMissed{Topic: topic, URL: recURL}, "09000000006553f1000641624364456600000007666f6f2f6261720020687474703a2f2f3132372e302e302e313a333030322f76312f7265636f766572", "X-HMAC 1700000000:AbCdEf:4kGbOwObSl8xVNkgKhSfJ8aU3BEarRBTzcLYa4ydVemcfWpDmzD0PcPWfp0DN9llG68ks/hOeHQuyH+9fUDNmQ=="},
		{"hmac_stateful_continue_receive", StatefulContinueReceive{Identifier: id4, PartID: 0, URL: wsURL(-1)}, "07000000006553f1000641624364456600000401020304000039776562736f636b65743a55596e4866536e2b5856527142463745615961464a34582b706345367839716345562f312b3237666758773d3a2d31", "X-HMAC 1700000000:AbCdEf:wTmaqF1iU7QZOzaPNsQHDv+LIrjjwAp+sKlaBgmTVpDddVVZYj7r1a2msHKHJg0Y69AwXZ6T2eOYgnaArNzUGw=="},
		{"hmac_stateful_configure", StatefulConfigure{SubscriberNonce: subNonce, EnableZstd: true, EnableTraining: true}, "04000000006553f10006416243644566000020111111111111111111111111111111111111111111111111111111111111111101010000", "X-HMAC 1700000000:AbCdEf:d9cz7RMCD8t93KJbPfoBQsUxz1CU52ke4zUY7foUc9ng1aODKVVDivIXEYzwE543zlm9RPaG1uyKto6wfnPzwA=="},
		{"hmac_receive(stateless)", Receive{URL: subURL, Topic: topic, Identifier: id8, SHA512: msgSum}, "0a000000006553f1000641624364456600000020687474703a2f2f3132372e302e302e313a333030322f76312f726563656976650007666f6f2f626172080102030405060708309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee511a7c7a9bcd3ca86d4cd86f989dd35bc5ff499670da34255b45b0cfd830e81f605dcf7dc5542e93ae9cd76f", "X-HMAC 1700000000:AbCdEf:ebYJSewZ8VEANQl6eIxQPlskehHBX3jSG65hZMuO8UJzsMxk+1HTL2RFLsJeXSBfHy3+fj6n595zY+RLrk1fsw=="},
		{"hmac_receive(websocket first part)", Receive{URL: wsURL(1), Topic: topic, Identifier: id4, SHA512: msgSum}, "0a000000006553f1000641624364456600000038776562736f636b65743a55596e4866536e2b5856527142463745615961464a34582b706345367839716345562f312b3237666758773d3a310007666f6f2f6261720401020304309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee511a7c7a9bcd3ca86d4cd86f989dd35bc5ff499670da34255b45b0cfd830e81f605dcf7dc5542e93ae9cd76f", "X-HMAC 1700000000:AbCdEf:YpVBfrASr0ZdoD7aRY3oET5N6/JSro46YTu6pdOup5CQyWmhvCdELEAeCTwIePhQXAzA/3P71IsmT+ZG+fxVUg=="},
		{"hmac_missed", Missed{Recovery: recURL, Topic: topic}, "0b000000006553f1000641624364456600000020687474703a2f2f3132372e302e302e313a333030322f76312f7265636f7665720007666f6f2f626172", "X-HMAC 1700000000:AbCdEf:hgrO+sFzZOxSRMKsxm6Z/u8WXMULWU/bvGq9V9Wy68vgZHBlswIKqstG3QN1VE9008jWqkC00wwJ9WrDMYsaBw=="},
		{"hmac_confirm_subscribe_exact", ConfirmSubscribeExact{URL: subURL, Recovery: recURL, Topic: topic}, "0c000000006553f1000641624364456600000020687474703a2f2f3132372e302e302e313a333030322f76312f726563656976650020687474703a2f2f3132372e302e302e313a333030322f76312f7265636f7665720007666f6f2f626172", "X-HMAC 1700000000:AbCdEf:V+F+ht3t0NevBd21opycJ7FoOfRyzI6Vq+A8v16SDSieHCyAMyTx2xJnWG+Gvs7BsfMjHosjoTjUI1e0D9peGQ=="},
		{"hmac_confirm_subscribe_glob", ConfirmSubscribeGlob{URL: subURL, Recovery: recURL, Glob: "foo/*"}, "0d000000006553f1000641624364456600000020687474703a2f2f3132372e302e302e313a333030322f76312f726563656976650020687474703a2f2f3132372e302e302e313a333030322f76312f7265636f7665720005666f6f2f2a", "X-HMAC 1700000000:AbCdEf:FgF1Soq6h6kZMpfBG6xlQuqcEfkdQIHIBiG9yKhIUYvmQwj2j1SDag0UK/22PkHgp8OGcC+NcpfFjKt5EzvYzQ=="},
		{"hmac_confirm_notify", ConfirmNotify{Identifier: id4, Subscribers: 2, Topic: topic, SHA512: msgSum}, "0e000000006553f1000641624364456600000401020304000000020007666f6f2f626172309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee511a7c7a9bcd3ca86d4cd86f989dd35bc5ff499670da34255b45b0cfd830e81f605dcf7dc5542e93ae9cd76f", "X-HMAC 1700000000:AbCdEf:FoeBSBmBkeDsQs8jdy9+3HwI5bPaBTAH6iPJCpTlD8zxM0hraMHn8qFqUY9s276RnZ5J4B7ZnwryapJULn/7QQ=="},
		{"hmac_check_subscriptions_response", CheckSubscriptionsResponse{Etag: etag}, "0f000000006553f100064162436445660000005fabb2fb42110ee1e3aaad6d15239b434aa322d79b7cb3e1ae7161059d1fa0699d9296e35930523e0b6cf9252eebc43a110afe54bf6daac11ee2bca4753fbde6", "X-HMAC 1700000000:AbCdEf:hPAKEdRITQThScRjh7wsYs9dVTtU0q4Y/02yi016s9nfoZ7PB38nR9TNe3/WfXzxysll0Cyu49BVmNebPHoeMQ=="},
		{"hmac_set_subscriptions_response", SetSubscriptionsResponse{Etag: etag}, "10000000006553f100064162436445660000005fabb2fb42110ee1e3aaad6d15239b434aa322d79b7cb3e1ae7161059d1fa0699d9296e35930523e0b6cf9252eebc43a110afe54bf6daac11ee2bca4753fbde6", "X-HMAC 1700000000:AbCdEf:5SLJ4SXLCkm5ucy6v77/Ncr8XgZUbv+9PK+gS6DDRj2mQsYDAx8CboQut3ley2wHjZhOiA42pPAMQGO4JRFJyw=="},
		{"hmac_stateful_confirm_configure", StatefulConfirmConfigure{BroadcasterNonce: broNonce}, "11000000006553f100064162436445660000202222222222222222222222222222222222222222222222222222222222222222", "X-HMAC 1700000000:AbCdEf:JHaV6eN5TvAh/dZeDoYO/89XOEkmdNerrAAR4s9sYjh5vdNvAWtKbd+e6MkcYLNWxQa2EpMLBGAWnPkmETs0SQ=="},
		{"hmac_stateful_enable_zstd_preset", StatefulEnableZstdPreset{URL: wsURL(1), CompressorID: 1, Level: 3, MinSize: 16384, MaxSize: 1<<64 - 1}, "12000000006553f1000641624364456600000038776562736f636b65743a55596e4866536e2b5856527142463745615961464a34582b706345367839716345562f312b3237666758773d3a3100000001000000030000000000004000ffffffffffffffff", "X-HMAC 1700000000:AbCdEf:zIAchv0PWjYIWa3YIASqPXJl7NDAt8AEMk3FXdgGQOjt97rGaqO5rkK26ZZB0SVhWlMlidq8h6bRAD4G2oUp4g=="},
		{"hmac_stateful_enable_zstd_custom", StatefulEnableZstdCustom{URL: wsURL(1), CompressorID: 65536, Level: 3, MinSize: 32, MaxSize: 16384, DictSHA512: dictSum}, "13000000006553f1000641624364456600000038776562736f636b65743a55596e4866536e2b5856527142463745615961464a34582b706345367839716345562f312b3237666758773d3a310001000000000003000000000000002000000000000040005957b896c8a75560282cff08891ac1e3df6179c182a32246647719fb65065287ef0135896aa971f768822b9c405fa8cf755de8246997ad38e2d9bfaf8f41ef9e", "X-HMAC 1700000000:AbCdEf:H53XhR2bkpdb0IYIFJMV/670iKDB1X3qDxpuyTKElwnnZ8kmpzLrIeTcwMMqg4VmBgZIpuaoA0tecYGeUPMiRw=="},
		{"hmac_stateful_disable_zstd_custom", StatefulDisableZstdCustom{CompressorID: 65536, URL: wsURL(1)}, "14000000006553f100064162436445660000000100000038776562736f636b65743a55596e4866536e2b5856527142463745615961464a34582b706345367839716345562f312b3237666758773d3a31", "X-HMAC 1700000000:AbCdEf:YGGHU/w5opoK6MbjfuK3KaO17sIpnaU2wtj3CkN3ndpt7XguhhUjeDr6nFSRtYkABhcM2B+F7oqlFVnSBBXpQQ=="},
		{"hmac_stateful_continue_notify", StatefulContinueNotify{Identifier: id4, PartID: 0}, "15000000006553f100064162436445660000040102030400000000", "X-HMAC 1700000000:AbCdEf:1CJ1n1/SvTeRrP3bMtDCe8maz2vr4cSQcKFI/Q7qvMphCw0HZ5ixfJwUwi6j/m9i1HI6hOsEIBqyNrJswu1/Vg=="},
	}
}

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// vectorPair signs and verifies like the reference did for the vectors:
// both directions HMAC, one shared replay store.
func vectorPair(t testing.TB, clock func() time.Time, store ReplayStore) Pair {
	t.Helper()
	if store == nil {
		store = NewMemoryReplayStore(clock)
	}
	opts := []HMACOption{WithClock(clock), WithNonce(func() string { return "AbCdEf" })}
	tb, err := HMAC(seq(0x00), store, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := HMAC(seq(0x40), store, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return Pair{ToBroadcaster: tb, ToSubscriber: ts}
}

func TestHMACVectors(t *testing.T) {
	ctx := context.Background()
	seen := map[Kind]bool{}
	for _, v := range vectors() {
		t.Run(v.name, func(t *testing.T) {
			seen[v.msg.Kind()] = true
			p := vectorPair(t, fixedClock(vectorNow), nil)
			got, err := ToSign(v.msg, 1700000000, "AbCdEf")
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != v.toSign {
				t.Fatalf("to_sign\n got %x\nwant %s", got, v.toSign)
			}
			header, err := p.Authorize(v.msg)
			if err != nil {
				t.Fatal(err)
			}
			if header != v.header {
				t.Fatalf("authorization\n got %s\nwant %s", header, v.header)
			}
			if r := p.Verify(ctx, v.msg, v.header); r != OK {
				t.Fatalf("verify: %s", r)
			}
			if r := p.Verify(ctx, v.msg, v.header); r != Forbidden {
				t.Fatalf("replayed header: %s, want forbidden", r)
			}
		})
	}
	if len(seen) != 21 {
		t.Fatalf("vectors cover %d message kinds, want 21", len(seen))
	}
}

func TestKindsAndDirections(t *testing.T) {
	for _, v := range vectors() {
		k := v.msg.Kind()
		if k < 1 || k > 21 || mustHex(v.toSign)[0] != byte(k) {
			t.Errorf("%s: kind %d", v.name, k)
		}
		// The protocol: types 1-9 are signed by subscribers, 10-21 by the
		// broadcaster.
		want := ToSubscriber
		if k <= 9 {
			want = ToBroadcaster
		}
		if v.msg.Kind().Direction() != want {
			t.Errorf("%s: direction %s, want %s", v.name, v.msg.Kind().Direction(), want)
		}
	}
	if KindStatefulContinueReceive.String() != "STATEFUL_CONTINUE_RECEIVE" || Kind(0).String() != "kind(0)" || Kind(22).String() != "kind(22)" {
		t.Fatal("kind names")
	}
}

func TestConnectionNonceVector(t *testing.T) {
	n := ConnectionNonce(subNonce, broNonce)
	if got := hex.EncodeToString(n[:]); got != "5189c77d29fe5d546a045ec46986852785fea5c13ac7da9c115ff5fb6edf817c" {
		t.Fatalf("nonce %s", got)
	}
	if got := base64.StdEncoding.EncodeToString(n[:]); got != "UYnHfSn+XVRqBF7EaYaFJ4X+pcE6x9qcEV/1+27fgXw=" {
		t.Fatalf("nonce_b64 %s", got)
	}
	const prefix = "websocket:UYnHfSn+XVRqBF7EaYaFJ4X+pcE6x9qcEV/1+27fgXw=:"
	for _, tc := range []struct {
		ctr  int64
		want string
	}{{1, "1"}, {2, "2"}, {10, "a"}, {255, "ff"}, {4096, "1000"}, {-1, "-1"}, {-2, "-2"}, {-10, "-a"}, {-255, "-ff"}} {
		if got := WebsocketURL(n, tc.ctr); got != prefix+tc.want {
			t.Errorf("url(%d) = %s", tc.ctr, got)
		}
	}
}

func TestSecretEncodingVector(t *testing.T) {
	for _, tc := range []struct {
		raw  []byte
		want string
	}{
		{seq(0x00), "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-Pw"},
		{seq(0x40), "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl9gYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1-fw"},
	} {
		// The encoding GenerateSecret uses.
		if got := base64.RawURLEncoding.EncodeToString(tc.raw); got != tc.want {
			t.Fatalf("encoded %s", got)
		}
		for _, spelling := range []string{tc.want, tc.want + "==", strings.NewReplacer("-", "+", "_", "/").Replace(tc.want)} {
			dec, err := DecodeHMACSecret(spelling)
			if err != nil || string(dec) != string(tc.raw) {
				t.Fatalf("decode %s: %v", spelling, err)
			}
		}
	}
}

func TestTokenVector(t *testing.T) {
	const secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-Pw"
	const want = "Bearer " + secret
	p := Pair{ToBroadcaster: Token(secret), ToSubscriber: None()}
	// The same value on every message of the direction.
	for _, v := range vectors() {
		got, err := p.Authorize(v.msg)
		if err != nil {
			t.Fatal(err)
		}
		if v.msg.Kind().Direction() == ToBroadcaster && got != want {
			t.Fatalf("%s: token %q", v.name, got)
		}
		if v.msg.Kind().Direction() == ToSubscriber && got != "" {
			t.Fatalf("%s: none sent %q", v.name, got)
		}
	}
}

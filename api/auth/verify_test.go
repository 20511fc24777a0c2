package auth

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingStore wraps a store and counts calls, or fails when err is set.
type countingStore struct {
	inner   ReplayStore
	err     error
	calls   atomic.Int64
	expires time.Time
}

func (s *countingStore) Seen(ctx context.Context, code [64]byte, expires time.Time) (bool, error) {
	s.calls.Add(1)
	s.expires = expires
	if s.err != nil {
		return false, s.err
	}
	return s.inner.Seen(ctx, code, expires)
}

var receiveMsg = Receive{URL: subURL, Topic: topic, Identifier: id8, SHA512: msgSum}

// signAt returns the header the to-subscriber vector secret produces for
// m at second ts.
func signAt(t *testing.T, m Message, ts int64) string {
	t.Helper()
	h, err := vectorPair(t, fixedClock(time.Unix(ts, 0)), nil).Authorize(m)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHMACVerifyRefusals(t *testing.T) {
	const now = 1700000000
	good := signAt(t, receiveMsg, now)
	code := good[strings.LastIndex(good, ":")+1:]
	rest := strings.TrimPrefix(good, "X-HMAC ")
	tests := []struct {
		name   string
		msg    Message
		header string
		clock  time.Time
		want   Result
	}{
		{"valid", receiveMsg, good, vectorNow, OK},
		{"missing", receiveMsg, "", vectorNow, Unauthorized},
		{"lower-case prefix", receiveMsg, "x-hmac " + rest, vectorNow, Forbidden},
		{"prefix without space", receiveMsg, "X-HMAC" + rest, vectorNow, Forbidden},
		{"two spaces", receiveMsg, "X-HMAC  " + rest, vectorNow, Forbidden},
		{"leading space", receiveMsg, " " + good, vectorNow, Forbidden},
		{"bearer", receiveMsg, "Bearer abc", vectorNow, Forbidden},
		{"prefix only", receiveMsg, "X-HMAC ", vectorNow, Forbidden},
		{"no colon at all", receiveMsg, "X-HMAC 1700000000", vectorNow, Forbidden},
		{"timestamp not a number", receiveMsg, "X-HMAC abc:AbCdEf:" + code, vectorNow, Forbidden},
		{"timestamp float", receiveMsg, "X-HMAC 1700000000.0:AbCdEf:" + code, vectorNow, Forbidden},
		{"timestamp empty", receiveMsg, "X-HMAC :AbCdEf:" + code, vectorNow, Forbidden},
		{"timestamp negative", receiveMsg, "X-HMAC -1:AbCdEf:" + code, time.Unix(0, 0), Forbidden},
		{"timestamp overflows", receiveMsg, "X-HMAC 99999999999999999999:AbCdEf:" + code, vectorNow, Forbidden},
		{"timestamp with plus sign (python int accepts it)", receiveMsg, "X-HMAC +" + rest, vectorNow, OK},
		{"no second colon", receiveMsg, "X-HMAC 1700000000:AbCdEf", vectorNow, Forbidden},
		{"bad base64", receiveMsg, "X-HMAC 1700000000:AbCdEf:!!!!", vectorNow, Forbidden},
		{"url-safe alphabet code", receiveMsg, strings.NewReplacer("+", "-", "/", "_").Replace(good), vectorNow, Forbidden},
		{"empty code", receiveMsg, "X-HMAC 1700000000:AbCdEf:", vectorNow, Forbidden},
		{"63-byte code", receiveMsg, "X-HMAC 1700000000:AbCdEf:" + code[:84], vectorNow, Forbidden},
		{"65-byte code", receiveMsg, "X-HMAC 1700000000:AbCdEf:" + code[:86] + "AAAA", vectorNow, Forbidden},
		{"padding dropped (python appends ==)", receiveMsg, strings.TrimRight(good, "="), vectorNow, OK},
		{"surplus padding", receiveMsg, good + "==", vectorNow, OK},
		{"other nonce", receiveMsg, strings.Replace(good, "AbCdEf", "AbCdEg", 1), vectorNow, Forbidden},
		{"other timestamp", receiveMsg, strings.Replace(good, "1700000000", "1700000001", 1), vectorNow, Forbidden},
		{"code of another message", receiveMsg, signAt(t, Missed{Recovery: recURL, Topic: topic}, now), vectorNow, Forbidden},
		{"121 s old", receiveMsg, signAt(t, receiveMsg, now-121), vectorNow, Forbidden},
		{"121 s ahead", receiveMsg, signAt(t, receiveMsg, now+121), vectorNow, Forbidden},
		{"120 s old is accepted", receiveMsg, signAt(t, receiveMsg, now-120), vectorNow, OK},
		{"120 s ahead is accepted", receiveMsg, signAt(t, receiveMsg, now+120), vectorNow, OK},
		// The reference compares with its float now.
		{"120.5 s old", receiveMsg, good, vectorNow.Add(120*time.Second + 500*time.Millisecond), Forbidden},
		{"119.5 s ahead", receiveMsg, good, vectorNow.Add(-119*time.Second - 500*time.Millisecond), OK},
		{"tampered tracing", Receive{Tracing: []byte{1}, URL: subURL, Topic: topic, Identifier: id8, SHA512: msgSum}, good, vectorNow, Forbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := fixedClock(tc.clock)
			store := &countingStore{inner: NewMemoryReplayStore(clock)}
			v, err := HMAC(seq(0x40), store, WithClock(clock))
			if err != nil {
				t.Fatal(err)
			}
			if got := v.Verify(context.Background(), tc.msg, tc.header); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			// Only a valid signature reaches the store: forged headers
			// cannot fill it.
			if calls := store.calls.Load(); (tc.want == OK) != (calls == 1) {
				t.Fatalf("store called %d times", calls)
			}
		})
	}
}

func TestHMACVerifyStoreOutcomes(t *testing.T) {
	ctx := context.Background()
	clock := fixedClock(vectorNow)
	good := signAt(t, receiveMsg, 1700000000)

	// Replay, including the same code spelled without padding.
	v, _ := HMAC(seq(0x40), NewMemoryReplayStore(clock), WithClock(clock))
	for i, want := range []Result{OK, Forbidden, Forbidden} {
		h := good
		if i == 2 {
			h = strings.TrimRight(good, "=")
		}
		if got := v.Verify(ctx, receiveMsg, h); got != want {
			t.Fatalf("attempt %d: %s, want %s", i, got, want)
		}
	}

	// A failing store makes a valid signature Unavailable (503, retried),
	// an invalid one stays Forbidden.
	failing := &countingStore{err: errors.New("store down")}
	v, _ = HMAC(seq(0x40), failing, WithClock(clock))
	if got := v.Verify(ctx, receiveMsg, good); got != Unavailable {
		t.Fatalf("store down: %s", got)
	}
	if got := v.Verify(ctx, Missed{}, good); got != Forbidden {
		t.Fatalf("store down, bad signature: %s", got)
	}

	// No store at all: fail closed.
	v, _ = HMAC(seq(0x40), nil, WithClock(clock))
	if got := v.Verify(ctx, receiveMsg, good); got != Unavailable {
		t.Fatalf("nil store: %s", got)
	}

	// The wrong secret (the other direction's) never verifies.
	v, _ = HMAC(seq(0x00), NewMemoryReplayStore(clock), WithClock(clock))
	if got := v.Verify(ctx, receiveMsg, good); got != Forbidden {
		t.Fatalf("wrong secret: %s", got)
	}
}

// A code must be remembered while its timestamp is acceptable: at least
// skew+60 s from now, and from its timestamp when that is in the future.
func TestHMACReplayRetention(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		ts      int64
		skew    time.Duration
		atLeast time.Time
	}{
		{"now", 1700000000, 0, vectorNow.Add(180 * time.Second)},
		{"past", 1700000000 - 120, 0, vectorNow.Add(180 * time.Second)},
		{"future", 1700000000 + 120, 0, vectorNow.Add(300 * time.Second)},
		{"custom skew", 1700000000, 10 * time.Second, vectorNow.Add(70 * time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := fixedClock(vectorNow)
			store := &countingStore{inner: NewMemoryReplayStore(clock)}
			opts := []HMACOption{WithClock(clock)}
			if tc.skew != 0 {
				opts = append(opts, WithSkew(tc.skew))
			}
			v, _ := HMAC(seq(0x40), store, opts...)
			if got := v.Verify(ctx, receiveMsg, signAt(t, receiveMsg, tc.ts)); got != OK {
				t.Fatalf("verify: %s", got)
			}
			if store.expires.Before(tc.atLeast) {
				t.Fatalf("expires %s, want at least %s", store.expires, tc.atLeast)
			}
		})
	}
	// End to end: replayed at the last acceptable second, still refused.
	now := vectorNow
	clock := func() time.Time { return now }
	v, _ := HMAC(seq(0x40), NewMemoryReplayStore(clock), WithClock(clock))
	h := signAt(t, receiveMsg, 1700000000+120)
	if got := v.Verify(ctx, receiveMsg, h); got != OK {
		t.Fatal(got)
	}
	now = vectorNow.Add(240 * time.Second)
	if got := v.Verify(ctx, receiveMsg, h); got != Forbidden {
		t.Fatalf("replay at the edge of the window: %s", got)
	}
}

// mutate returns copies of m with one field changed each, for every field.
func mutate(t *testing.T, m Message) map[string]Message {
	t.Helper()
	orig := reflect.ValueOf(m)
	out := map[string]Message{}
	for i := range orig.NumField() {
		c := reflect.New(orig.Type()).Elem()
		c.Set(orig)
		f := c.Field(i)
		switch f.Kind() {
		case reflect.Slice:
			f.SetBytes(append(append([]byte(nil), f.Bytes()...), 'x'))
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Array:
			f.Index(0).SetUint(f.Index(0).Uint() ^ 1)
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f.SetUint(f.Uint() + 1)
		case reflect.Int32:
			f.SetInt(f.Int() + 1)
		default:
			t.Fatalf("%T.%s: no mutation for %s", m, orig.Type().Field(i).Name, f.Kind())
		}
		out[orig.Type().Field(i).Name] = c.Interface().(Message)
	}
	return out
}

// Every signed field of every message type is covered by the signature.
func TestTamperedFieldsRefused(t *testing.T) {
	ctx := context.Background()
	for _, v := range vectors() {
		for field, m := range mutate(t, v.msg) {
			t.Run(v.name+"/"+field, func(t *testing.T) {
				p := vectorPair(t, fixedClock(vectorNow), nil)
				if got := p.Verify(ctx, m, v.header); got != Forbidden {
					t.Fatalf("tampered %s verified: %s", field, got)
				}
				if got := p.Verify(ctx, v.msg, v.header); got != OK {
					t.Fatalf("original refused: %s", got)
				}
			})
		}
	}
}

func TestFreshNoncePerSignature(t *testing.T) {
	s, err := HMAC(seq(0), NewMemoryReplayStore(time.Now))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 200 {
		h, err := s.Authorize(Missed{Recovery: recURL, Topic: topic})
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(h, ":")
		if len(parts) != 3 || len(parts[1]) != 6 || strings.Trim(parts[1], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			t.Fatalf("nonce of %q is not 6 url-safe characters", h)
		}
		if seen[h] {
			t.Fatal("the same signature was produced twice")
		}
		seen[h] = true
	}
}

func TestHMACConstructorAndSigningErrors(t *testing.T) {
	if _, err := HMAC(seq(0)[:63], nil); !errors.Is(err, ErrBadSecret) {
		t.Fatalf("63-byte secret: %v", err)
	}
	if _, err := HMAC(append(seq(0), 0), nil); !errors.Is(err, ErrBadSecret) {
		t.Fatalf("65-byte secret: %v", err)
	}
	if _, err := HMAC(seq(0), nil, WithSkew(-time.Second)); err == nil {
		t.Fatal("negative skew accepted")
	}
	s, _ := HMAC(seq(0), nil, WithNonce(func() string { return "a:b" }))
	if _, err := s.Authorize(Notify{}); !errors.Is(err, ErrUnsignable) {
		t.Fatalf("nonce with a colon: %v", err)
	}
	s, _ = HMAC(seq(0), nil, WithClock(fixedClock(time.Unix(-5, 0))))
	if _, err := s.Authorize(Notify{}); !errors.Is(err, ErrUnsignable) {
		t.Fatalf("clock before 1970: %v", err)
	}
	// The secret is copied: changing the caller's slice changes nothing.
	key := seq(0x40)
	s, _ = HMAC(key, nil, WithClock(fixedClock(vectorNow)), WithNonce(func() string { return "AbCdEf" }))
	key[0] ^= 1
	if h, _ := s.Authorize(receiveMsg); h != vectorHeader(t, "hmac_receive(stateless)") {
		t.Fatal("secret not copied")
	}
}

func vectorHeader(t *testing.T, name string) string {
	for _, v := range vectors() {
		if v.name == name {
			return v.header
		}
	}
	t.Fatalf("no vector %s", name)
	return ""
}

func TestUnsignableValues(t *testing.T) {
	ctx := context.Background()
	clock := fixedClock(vectorNow)
	for _, tc := range []struct {
		name     string
		ok, over Message // over is ok with a value that does not fit
	}{
		{"continue_receive part 256", StatefulContinueReceive{PartID: 0}, StatefulContinueReceive{PartID: 256}},
		{"continue_receive part 2^64-1", StatefulContinueReceive{PartID: 255}, StatefulContinueReceive{PartID: 1<<64 - 1}},
		{"negative preset level", StatefulEnableZstdPreset{Level: 3}, StatefulEnableZstdPreset{Level: -3}},
		{"negative custom level", StatefulEnableZstdCustom{Level: 0}, StatefulEnableZstdCustom{Level: -1}},
		{"identifier of 256 bytes", Notify{Identifier: make([]byte, 255)}, Notify{Identifier: make([]byte, 256)}},
		{"topic of 65536 bytes", Notify{Topic: make([]byte, 65535)}, Notify{Topic: make([]byte, 65536)}},
		{"tracing of 65536 bytes", Missed{Tracing: make([]byte, 65535)}, Missed{Tracing: make([]byte, 65536)}},
		{"url of 65536 bytes", CheckSubscriptions{URL: strings.Repeat("u", 65535)}, CheckSubscriptions{URL: strings.Repeat("u", 65536)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := vectorPair(t, clock, nil)
			if _, err := ToSign(tc.over, 1, "n"); !errors.Is(err, ErrUnsignable) {
				t.Fatalf("ToSign: %v", err)
			}
			if _, err := p.Authorize(tc.over); !errors.Is(err, ErrUnsignable) {
				t.Fatalf("Authorize: %v", err)
			}
			h, err := p.Authorize(tc.ok)
			if err != nil {
				t.Fatal(err)
			}
			// A header valid for the largest value never verifies the
			// value that would truncate onto it.
			if got := p.Verify(ctx, tc.over, h); got != Forbidden {
				t.Fatalf("verify: %s", got)
			}
			if got := p.Verify(ctx, tc.ok, h); got != OK {
				t.Fatalf("verify in range: %s", got)
			}
		})
	}
	if _, err := ToSign(Notify{}, 1, strings.Repeat("n", 256)); !errors.Is(err, ErrUnsignable) {
		t.Fatalf("long nonce: %v", err)
	}
	// A continue_receive part id of 256 must not reuse part 0's signature.
	p := vectorPair(t, clock, nil)
	h, _ := p.Authorize(StatefulContinueReceive{PartID: 0})
	if got := p.Verify(ctx, StatefulContinueReceive{PartID: 256}, h); got != Forbidden {
		t.Fatalf("part 256 verified with part 0's header: %s", got)
	}
}

func TestTokenAndNone(t *testing.T) {
	tok := Token("s3cret")
	ctx := context.Background()
	for _, tc := range []struct {
		header string
		want   Result
	}{
		{"", Unauthorized},
		{"Bearer s3cret", OK},
		{"Bearer s3cre", Forbidden},
		{"Bearer s3cretx", Forbidden},
		{"bearer s3cret", Forbidden},
		{"Bearer  s3cret", Forbidden},
		{"Bearer s3cret ", Forbidden},
		{"s3cret", Forbidden},
		{"X-HMAC 1:a:b", Forbidden},
	} {
		if got := tok.Verify(ctx, Notify{}, tc.header); got != tc.want {
			t.Errorf("token %q: %s, want %s", tc.header, got, tc.want)
		}
	}
	// Token has no time or replay component.
	for range 3 {
		if got := tok.Verify(ctx, Receive{}, "Bearer s3cret"); got != OK {
			t.Fatalf("repeated token: %s", got)
		}
	}
	for _, h := range []string{"", "anything", "Bearer x", "X-HMAC 1:2:3"} {
		if got := None().Verify(ctx, Notify{}, h); got != OK {
			t.Fatalf("none refused %q: %s", h, got)
		}
	}
	for _, v := range vectors() {
		if h, err := None().Authorize(v.msg); h != "" || err != nil {
			t.Fatalf("none signed %s: %q %v", v.name, h, err)
		}
	}
	if h, _ := Token("").Authorize(Notify{}); h != "Bearer " {
		t.Fatalf("empty token: %q", h)
	}
}

func TestPairDirections(t *testing.T) {
	ctx := context.Background()
	p := Pair{ToBroadcaster: Token("b"), ToSubscriber: Token("s")}
	for _, v := range vectors() {
		h, err := p.Authorize(v.msg)
		if err != nil {
			t.Fatal(err)
		}
		want, other := "Bearer b", "Bearer s"
		if v.msg.Kind().Direction() == ToSubscriber {
			want, other = other, want
		}
		if h != want {
			t.Fatalf("%s signed with %q", v.name, h)
		}
		if r := p.Verify(ctx, v.msg, other); r != Forbidden {
			t.Fatalf("%s accepted the other direction's token: %s", v.name, r)
		}
	}

	// HMAC: a header made with the other direction's secret is refused.
	clock := fixedClock(vectorNow)
	hp := vectorPair(t, clock, nil)
	for _, m := range []Message{receiveMsg, Notify{Topic: topic, Identifier: id4, SHA512: msgSum}} {
		wrong := hp.ToBroadcaster
		if m.Kind().Direction() == ToBroadcaster {
			wrong = hp.ToSubscriber
		}
		h, err := wrong.Authorize(m)
		if err != nil {
			t.Fatal(err)
		}
		if r := hp.Verify(ctx, m, h); r != Forbidden {
			t.Fatalf("%s signed with the wrong direction's secret: %s", m.Kind(), r)
		}
	}

	// A zero Pair fails closed.
	if _, err := (Pair{}).Authorize(receiveMsg); !errors.Is(err, ErrNoScheme) {
		t.Fatalf("zero pair authorize: %v", err)
	}
	if r := (Pair{}).Verify(ctx, receiveMsg, "x"); r != Forbidden {
		t.Fatalf("zero pair verify: %s", r)
	}
	np := NonePair()
	if r := np.Verify(ctx, receiveMsg, ""); r != OK {
		t.Fatalf("none pair: %s", r)
	}
}

func TestResult(t *testing.T) {
	for _, tc := range []struct {
		r      Result
		status int
		name   string
	}{{OK, 200, "ok"}, {Unauthorized, 401, "unauthorized"}, {Forbidden, 403, "forbidden"}, {Unavailable, 503, "unavailable"}} {
		if tc.r.HTTPStatus() != tc.status || tc.r.String() != tc.name {
			t.Errorf("%d: %d %s", tc.r, tc.r.HTTPStatus(), tc.r)
		}
	}
	if ToBroadcaster.String() != "to-broadcaster" || ToSubscriber.String() != "to-subscriber" {
		t.Fatal("direction names")
	}
}

func FuzzVerifyHeader(f *testing.F) {
	for _, v := range vectors() {
		f.Add(v.header)
	}
	f.Add("X-HMAC 1700000000:AbCdEf:")
	f.Add("X-HMAC ::")
	f.Add("X-HMAC 1700000000::" + strings.Repeat("A", 86) + "==")
	f.Add("X-HMAC -0:" + strings.Repeat("n", 300) + ":x")
	clock := fixedClock(vectorNow)
	f.Fuzz(func(t *testing.T, header string) {
		_, _, _, _ = parseHMAC(header, vectorNow, DefaultSkew)
		s, _ := HMAC(seq(0x40), NewMemoryReplayStore(clock), WithClock(clock))
		// No vector signs this message, so no header can be valid.
		msg := Receive{URL: subURL, Topic: []byte("fuzz"), Identifier: id8, SHA512: msgSum}
		if r := s.Verify(context.Background(), msg, header); r == OK || r == Unavailable {
			t.Fatalf("random header: %s for %q", r, header)
		}
	})
}

// nopStore accepts every code, so Verify can be timed on one header.
type nopStore struct{}

func (nopStore) Seen(context.Context, [64]byte, time.Time) (bool, error) { return false, nil }

func BenchmarkHMACReceive(b *testing.B) {
	ctx := context.Background()
	b.Run("authorize", func(b *testing.B) {
		s, _ := HMAC(seq(0x40), nil)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Authorize(receiveMsg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		s, _ := HMAC(seq(0x40), nopStore{})
		h, _ := s.Authorize(receiveMsg)
		b.ReportAllocs()
		for b.Loop() {
			if s.Verify(ctx, receiveMsg, h) != OK {
				b.Fatal("refused")
			}
		}
	})
	b.Run("authorize+verify with memory store", func(b *testing.B) {
		s, _ := HMAC(seq(0x40), NewMemoryReplayStore(time.Now))
		b.ReportAllocs()
		for b.Loop() {
			h, _ := s.Authorize(receiveMsg)
			if s.Verify(ctx, receiveMsg, h) != OK {
				b.Fatal("refused")
			}
		}
	})
}

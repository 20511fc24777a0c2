package auth

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type failingStore struct{}

func (failingStore) Seen(context.Context, [64]byte, time.Time) (bool, error) {
	return false, errors.New("store down")
}

func TestHMACVerifyRefusals(t *testing.T) {
	msg := Receive{URL: subURL, Topic: topic, Identifier: id8, SHA512: msgSum}
	clock := func() time.Time { return vectorNow }
	signer := vectorPair(t, clock)
	good, err := signer.Authorize(msg)
	if err != nil {
		t.Fatal(err)
	}
	at := func(ts int64) string {
		p := vectorPair(t, func() time.Time { return time.Unix(ts, 0) })
		h, err := p.Authorize(msg)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	code := good[strings.LastIndex(good, ":")+1:]
	tests := []struct {
		name   string
		msg    Message
		header string
		store  ReplayStore
		want   Result
	}{
		{"missing", msg, "", nil, Unauthorized},
		{"lower-case prefix", msg, "x-hmac" + good[6:], nil, Forbidden},
		{"bearer", msg, "Bearer abc", nil, Forbidden},
		{"timestamp not a number", msg, "X-HMAC abc:AbCdEf:" + code, nil, Forbidden},
		{"no second colon", msg, "X-HMAC 1700000000:AbCdEf", nil, Forbidden},
		{"bad base64", msg, "X-HMAC 1700000000:AbCdEf:!!!!", nil, Forbidden},
		{"63-byte code", msg, "X-HMAC 1700000000:AbCdEf:" + code[:84], nil, Forbidden},
		{"121 s old", msg, at(1700000000 - 121), nil, Forbidden},
		{"121 s ahead", msg, at(1700000000 + 121), nil, Forbidden},
		{"120 s old is accepted", msg, at(1700000000 - 120), nil, OK},
		{"120 s ahead is accepted", msg, at(1700000000 + 120), nil, OK},
		{"tampered topic", Receive{URL: subURL, Topic: []byte("foo/baz"), Identifier: id8, SHA512: msgSum}, good, nil, Forbidden},
		{"tampered url", Receive{URL: recURL, Topic: topic, Identifier: id8, SHA512: msgSum}, good, nil, Forbidden},
		{"tampered tracing", Receive{Tracing: []byte{1}, URL: subURL, Topic: topic, Identifier: id8, SHA512: msgSum}, good, nil, Forbidden},
		{"other nonce", msg, strings.Replace(good, "AbCdEf", "AbCdEg", 1), nil, Forbidden},
		{"replay store down", msg, good, failingStore{}, Unavailable},
		{"padding dropped", msg, strings.TrimRight(good, "="), nil, OK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := tc.store
			if store == nil {
				store = NewMemoryReplayStore(clock)
			}
			v, err := HMAC(seq(0x40), store, WithClock(clock))
			if err != nil {
				t.Fatal(err)
			}
			if got := v.Verify(context.Background(), tc.msg, tc.header); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
	// The wrong secret (the other direction's) never verifies.
	other, _ := HMAC(seq(0x00), NewMemoryReplayStore(clock), WithClock(clock))
	if got := other.Verify(context.Background(), msg, good); got != Forbidden {
		t.Fatalf("wrong secret: %s", got)
	}
}

func TestFreshNoncePerSignature(t *testing.T) {
	s, err := HMAC(seq(0), NewMemoryReplayStore(time.Now))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 100 {
		h, err := s.Authorize(Missed{Recovery: recURL, Topic: topic})
		if err != nil {
			t.Fatal(err)
		}
		if seen[h] {
			t.Fatal("the same signature was produced twice")
		}
		seen[h] = true
	}
}

func TestTokenAndNone(t *testing.T) {
	tok := Token("s3cret")
	ctx := context.Background()
	for header, want := range map[string]Result{"": Unauthorized, "Bearer s3cret": OK, "Bearer s3cre": Forbidden, "bearer s3cret": Forbidden, "Bearer s3cret ": Forbidden} {
		if got := tok.Verify(ctx, Notify{}, header); got != want {
			t.Errorf("token %q: %s, want %s", header, got, want)
		}
	}
	if got := None().Verify(ctx, Notify{}, "anything"); got != OK {
		t.Fatalf("none refused: %s", got)
	}
	if h, _ := None().Authorize(Notify{}); h != "" {
		t.Fatalf("none signed: %q", h)
	}
}

func TestPairPicksDirection(t *testing.T) {
	p := Pair{ToBroadcaster: Token("b"), ToSubscriber: Token("s")}
	if h, _ := p.Authorize(Receive{}); h != "Bearer s" {
		t.Fatalf("receive signed with %q", h)
	}
	if h, _ := p.Authorize(Notify{}); h != "Bearer b" {
		t.Fatalf("notify signed with %q", h)
	}
	if r := p.Verify(context.Background(), ConfirmReceive{}, "Bearer s"); r != Forbidden {
		t.Fatalf("confirm_receive accepted the to-subscriber token: %s", r)
	}
}

func TestContinueReceivePartIDLimit(t *testing.T) {
	s, _ := HMAC(seq(0), NewMemoryReplayStore(time.Now))
	if _, err := s.Authorize(StatefulContinueReceive{PartID: 256}); err == nil {
		t.Fatal("part 256 was signed")
	}
	h, err := s.Authorize(StatefulContinueReceive{PartID: 255})
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Verify(context.Background(), StatefulContinueReceive{PartID: 255 + 256}, h); r != Forbidden {
		t.Fatalf("part 511 verified with part 255's signature: %s", r)
	}
}

func TestMemoryReplayStoreExpires(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := NewMemoryReplayStore(clock)
	ctx := context.Background()
	for i := range 1000 {
		var code [64]byte
		code[0], code[1] = byte(i), byte(i>>8)
		if replay, _ := s.Seen(ctx, code, now.Add(180*time.Second)); replay {
			t.Fatal("fresh code reported as replay")
		}
	}
	if replay, _ := s.Seen(ctx, [64]byte{}, now.Add(time.Minute)); !replay {
		t.Fatal("replay not detected")
	}
	if s.Len() != 1000 {
		t.Fatalf("len %d", s.Len())
	}
	mu.Lock()
	now = now.Add(181 * time.Second)
	mu.Unlock()
	if s.Len() != 0 {
		t.Fatalf("expired codes kept: %d", s.Len())
	}
	// Concurrent use.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				var code [64]byte
				code[0], code[1], code[2] = byte(g), byte(i), 1
				if replay, err := s.Seen(ctx, code, clock().Add(time.Minute)); replay || err != nil {
					t.Error("unexpected replay")
				}
			}
		}()
	}
	wg.Wait()
}

func TestSecretsFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	hm, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(hm) != 86 {
		t.Fatalf("secret of %d chars", len(hm))
	}
	in := Secrets{ToBroadcaster: SecretSpec{"hmac", hm}, ToSubscriber: SecretSpec{"token", "tok"}, Cluster: "c"}
	b := filepath.Join(dir, "b.json")
	s := filepath.Join(dir, "s.json")
	if err := WriteSecretsFile(b, in, true); err != nil {
		t.Fatal(err)
	}
	if err := WriteSecretsFile(s, in, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteSecretsFile(s, in, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite: %v", err)
	}
	st, _ := os.Stat(b)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	got, err := LoadSecrets(b)
	if err != nil || got != in {
		t.Fatalf("loaded %+v, %v", got, err)
	}
	got, err = LoadSecrets(s)
	if err != nil || got.Cluster != "" || got.ToSubscriber != in.ToSubscriber {
		t.Fatalf("subscriber file %+v, %v", got, err)
	}
	raw, _ := os.ReadFile(s)
	if strings.Contains(string(raw), "cluster") || !strings.HasPrefix(string(raw), "{\n  \"version\": \"2\",\n  \"to-broadcaster\": {\"type\":\"hmac\"") {
		t.Fatalf("subscriber file:\n%s", raw)
	}
	if _, err := got.NewPair(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadSecretsErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, content, want string }{
		{"not json", "{", "not a JSON object"},
		{"version number", `{"version": 2}`, `"version" must be the string "2"`},
		{"no version", `{}`, `"version"`},
		{"unknown type", `{"version":"2","to-broadcaster":{"type":"rsa","secret":"x"}}`, "unknown type"},
		{"short hmac", `{"version":"2","to-subscriber":{"type":"hmac","secret":"AAAA"}}`, "want 64"},
		{"bad base64", `{"version":"2","to-subscriber":{"type":"hmac","secret":"***"}}`, "base64"},
		{"empty token", `{"version":"2","to-subscriber":{"type":"token","secret":""}}`, "empty"},
		{"direction not object", `{"version":"2","to-subscriber":"hmac"}`, "must be an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadSecrets(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %v, want one naming %s and %q", err, p, tc.want)
			}
		})
	}
	if _, err := LoadSecrets(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	// Missing directions mean none; unknown keys are ignored.
	p := filepath.Join(dir, "min")
	_ = os.WriteFile(p, []byte(`{"version":"2","incoming":{"type":"token","secret":"x"}}`), 0o600)
	s, err := LoadSecrets(p)
	if err != nil || s.ToBroadcaster.Type != "none" || s.ToSubscriber.Type != "none" {
		t.Fatalf("%+v %v", s, err)
	}
}

func FuzzVerifyHeader(f *testing.F) {
	for _, v := range vectors() {
		f.Add(v.header)
	}
	f.Add("X-HMAC 1:a:")
	f.Add("X-HMAC ::")
	clock := func() time.Time { return vectorNow }
	f.Fuzz(func(t *testing.T, header string) {
		s, _ := HMAC(seq(0x40), NewMemoryReplayStore(clock), WithClock(clock))
		msg := Receive{URL: subURL, Topic: []byte("fuzz"), Identifier: id8, SHA512: msgSum}
		if r := s.Verify(context.Background(), msg, header); r == OK {
			t.Fatalf("random header verified: %q", header)
		}
	})
}

func BenchmarkHMACReceive(b *testing.B) {
	s, _ := HMAC(seq(0x40), NewMemoryReplayStore(time.Now))
	msg := Receive{URL: subURL, Topic: topic, Identifier: id8, SHA512: msgSum}
	b.Run("authorize", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Authorize(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("authorize+verify", func(b *testing.B) {
		for b.Loop() {
			h, _ := s.Authorize(msg)
			if s.Verify(context.Background(), msg, h) != OK {
				b.Fatal("refused")
			}
		}
	})
}

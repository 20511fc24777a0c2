package auth

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestBoltReplayStoreSurvivesRestartAndExpires(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replay.db")
	now := time.Unix(1700000000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, err := OpenBoltReplayStore(path, clock)
	if err != nil {
		t.Fatal(err)
	}
	if s.Unclean() {
		t.Fatal("a new file reported an unclean shutdown")
	}
	ctx := context.Background()
	for i := range 100 {
		var code [64]byte
		code[0] = byte(i)
		if replay, err := s.Seen(ctx, code, now.Add(3*time.Minute)); replay || err != nil {
			t.Fatalf("fresh code %d: %v %v", i, replay, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenBoltReplayStore(path, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Unclean() {
		t.Fatal("a clean shutdown reported as unclean")
	}
	if replay, _ := s.Seen(ctx, [64]byte{5}, now.Add(3*time.Minute)); !replay {
		t.Fatal("a code seen before the restart was accepted again")
	}
	mu.Lock()
	now = now.Add(4 * time.Minute)
	mu.Unlock()
	if err := s.Prune(); err != nil {
		t.Fatal(err)
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("%d expired codes kept", n)
	}
	if replay, _ := s.Seen(ctx, [64]byte{5}, now.Add(3*time.Minute)); replay {
		t.Fatal("an expired code still refused")
	}
}

func TestBoltReplayStoreReportsUncleanShutdown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replay.db")
	s, err := OpenBoltReplayStore(path, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seen(context.Background(), [64]byte{1}, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash: close the file without the clean marker.
	close(s.stop)
	s.wg.Wait()
	_ = s.db.Sync()
	_ = s.db.Close()
	s2, err := OpenBoltReplayStore(path, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if !s2.Unclean() {
		t.Fatal("an unclean shutdown went unnoticed")
	}
}

func TestNotBeforeRefusesOlderSignatures(t *testing.T) {
	now := time.Unix(1700000000, 0)
	signer, _ := HMAC(seq(0x40), nil, WithClock(func() time.Time { return now.Add(-time.Second) }))
	h, err := signer.Authorize(Missed{Recovery: recURL, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := HMAC(seq(0x40), NewMemoryReplayStore(func() time.Time { return now }),
		WithClock(func() time.Time { return now }), WithNotBefore(now))
	if r := v.Verify(context.Background(), Missed{Recovery: recURL, Topic: topic}, h); r != Forbidden {
		t.Fatalf("signature from before the start: %s", r)
	}
}

func TestVerifyDeferredLeavesReplayToCaller(t *testing.T) {
	clock := func() time.Time { return vectorNow }
	p := vectorPair(t, clock, NewMemoryReplayStore(clock))
	m := SubscribeExact{URL: subURL, Recovery: recURL, Topic: topic}
	h, _ := p.Authorize(m)
	for range 2 {
		r, rep := p.VerifyDeferred(context.Background(), m, h)
		if r != OK || rep == nil || rep.Expires.Before(vectorNow.Add(DefaultSkew)) {
			t.Fatalf("deferred: %s %+v", r, rep)
		}
	}
	if r, rep := p.VerifyDeferred(context.Background(), SubscribeExact{URL: subURL, Topic: topic}, h); r != Forbidden || rep != nil {
		t.Fatalf("tampered: %s %+v", r, rep)
	}
	if r, rep := NonePair().VerifyDeferred(context.Background(), m, ""); r != OK || rep != nil {
		t.Fatalf("none: %s %+v", r, rep)
	}
}

// A damaged file (a power loss without fsync) does not keep the node
// down: it is set aside, a new store starts, and the start counts as
// unclean, so signatures dated before it are refused.
func TestBoltReplayStoreSetsADamagedFileAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replay.db")
	garbage := bytes.Repeat([]byte("not a bbolt file "), 2000)
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenBoltReplayStore(path, time.Now)
	if err != nil {
		t.Fatalf("open over a damaged file: %v", err)
	}
	defer s.Close()
	if !s.Unclean() || s.SetAside() == "" {
		t.Fatalf("unclean %t, set aside at %q", s.Unclean(), s.SetAside())
	}
	if b, err := os.ReadFile(s.SetAside()); err != nil || !bytes.Equal(b, garbage) {
		t.Fatalf("the damaged file was not kept as it was: %v", err)
	}
	var code [64]byte
	code[0] = 7
	if replay, err := s.Seen(t.Context(), code, time.Now().Add(time.Minute)); err != nil || replay {
		t.Fatalf("new store: replay %t, %v", replay, err)
	}
	if replay, err := s.Seen(t.Context(), code, time.Now().Add(time.Minute)); err != nil || !replay {
		t.Fatalf("new store does not remember: replay %t, %v", replay, err)
	}
}

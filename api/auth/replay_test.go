package auth

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock safe for concurrent reads.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func codeOf(i int, tag byte) [64]byte {
	var c [64]byte
	c[0], c[1], c[2], c[63] = byte(i), byte(i>>8), byte(i>>16), tag
	return c
}

func TestMemoryReplayStoreExpires(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{now: time.Unix(1000, 0)}
	s := NewMemoryReplayStore(clk.Now)
	start := clk.Now()
	// Three generations with different expiries.
	for i := range 3000 {
		exp := start.Add(time.Duration(60*(1+i/1000)) * time.Second) // 60, 120, 180 s
		if replay, err := s.Seen(ctx, codeOf(i, 0), exp); replay || err != nil {
			t.Fatalf("fresh code %d: %v %v", i, replay, err)
		}
	}
	if replay, _ := s.Seen(ctx, codeOf(5, 0), start.Add(time.Hour)); !replay {
		t.Fatal("replay not detected")
	}
	for _, step := range []struct {
		advance time.Duration
		want    int
	}{
		{60 * time.Second, 3000}, // expiring exactly now is kept
		{time.Second, 2000},
		{60 * time.Second, 1000},
		{60 * time.Second, 0},
	} {
		clk.Advance(step.advance)
		if got := s.Len(); got != step.want {
			t.Fatalf("after %s: len %d, want %d", clk.Now().Sub(start), got, step.want)
		}
	}
	// An expired code is new again (its timestamp is out of the window by
	// then, so the signature would be refused before reaching the store).
	if replay, _ := s.Seen(ctx, codeOf(5, 0), clk.Now().Add(time.Minute)); replay {
		t.Fatal("expired code still remembered")
	}
	// Memory follows the load: the map was rebuilt after the burst.
	s.mu.Lock()
	peak := s.peak
	s.mu.Unlock()
	if peak > 1024 {
		t.Fatalf("map not rebuilt after draining: peak %d", peak)
	}
}

func TestMemoryReplayStoreSweepsOnInsert(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{now: time.Unix(0, 0)}
	s := NewMemoryReplayStore(clk.Now)
	// A steady stream: one code per second, each kept 180 s. The store
	// never holds more than the codes of the last 180 s.
	for i := range 2000 {
		_, _ = s.Seen(ctx, codeOf(i, 1), clk.Now().Add(180*time.Second))
		clk.Advance(time.Second)
		s.mu.Lock()
		n := len(s.codes)
		s.mu.Unlock()
		if n > 182 {
			t.Fatalf("after %d inserts the store holds %d codes", i, n)
		}
	}
}

func TestMemoryReplayStoreConcurrent(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{now: time.Unix(0, 0)}
	s := NewMemoryReplayStore(clk.Now)
	const goroutines, per = 8, 500
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh := 0
	for g := range goroutines {
		wg.Go(func() {
			for i := range per {
				// Every code is offered by two goroutines: exactly one
				// of them may see it as fresh.
				replay, err := s.Seen(ctx, codeOf(i, byte(g/2)), clk.Now().Add(time.Minute))
				if err != nil {
					t.Error(err)
				}
				if !replay {
					mu.Lock()
					fresh++
					mu.Unlock()
				}
				if i%100 == 0 {
					clk.Advance(time.Millisecond)
					_ = s.Len()
				}
			}
		})
	}
	wg.Wait()
	if fresh != goroutines/2*per {
		t.Fatalf("%d codes seen as fresh, want %d", fresh, goroutines/2*per)
	}
	if s.Len() != goroutines/2*per {
		t.Fatalf("len %d", s.Len())
	}
}

func TestMemoryReplayStoreNilClock(t *testing.T) {
	s := NewMemoryReplayStore(nil)
	if replay, err := s.Seen(context.Background(), [64]byte{}, time.Now().Add(time.Minute)); replay || err != nil {
		t.Fatal(replay, err)
	}
	if s.Len() != 1 {
		t.Fatal("len")
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

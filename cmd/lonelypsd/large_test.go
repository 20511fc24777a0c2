package main

import (
	"crypto/sha512"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/lonelypsd/lonelypsd/api/client"
)

// patternReader yields n bytes: one pseudo-random 1 MiB block, repeated,
// so a multi-GiB message costs no memory in the test either.
type patternReader struct {
	block []byte
	left  int64
	off   int
}

func newPattern(n int64) *patternReader {
	block := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range block {
		block[i] = byte(r.Uint32())
	}
	return &patternReader{block: block, left: n}
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	n := copy(b, p.block[p.off:])
	p.off = (p.off + n) % len(p.block)
	p.left -= int64(n)
	return n, nil
}

func TestOneGiBMessageToThreeSubscribers(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 4 GiB over loopback")
	}
	const size = 1 << 30
	node := startNode(t, t.TempDir())
	ctx := ctxT(t)
	c := node.Client()
	var subs []*subscriberServer
	for range 3 {
		s := startSubscriber(t, client.NewSubscriber())
		if err := c.SubscribeExact(ctx, s.Receive, []byte("big"), ""); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	h := sha512.New()
	if _, err := io.Copy(h, newPattern(size)); err != nil {
		t.Fatal(err)
	}
	var sum [64]byte
	h.Sum(sum[:0])

	rssBefore, _ := node.RSS()
	node.resetPeakRSS()
	n, err := c.NotifyStream(ctx, []byte("big"), newPattern(size), size, sum)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("count %d, want 3", n)
	}
	_, peak := node.RSS()
	growth := peak - rssBefore
	t.Logf("server RSS before %d MiB, peak during the 1 GiB notify %d MiB, growth %d MiB",
		rssBefore>>20, peak>>20, growth>>20)
	if growth > 200<<20 {
		t.Fatalf("server RSS grew by %d MiB for a 1 GiB message; it must stream", growth>>20)
	}
	for i, s := range subs {
		r := s.Received()
		if len(r) != 1 || r[0].Length != size || r[0].SHA512 != sum {
			t.Fatalf("subscriber %d did not get the message intact: %+v", i, r)
		}
	}
}

package main

import (
	"crypto/sha512"
	"io"
	"testing"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

func TestOneGiBMessageToThreeSubscribers(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 4 GiB over loopback")
	}
	const size = 1 << 30
	node, ctx, c := startNodeClient(t, t.TempDir())
	var subs []*lonelypsdtest.Subscriber
	for range 3 {
		s := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())
		if err := c.SubscribeExact(ctx, s.Receive, []byte("big"), ""); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	h := sha512.New()
	if _, err := io.Copy(h, lonelypsdtest.NewPattern(size)); err != nil {
		t.Fatal(err)
	}
	var sum [64]byte
	h.Sum(sum[:0])

	rssBefore, _ := node.RSS()
	node.ResetPeakRSS()
	n, err := c.NotifyStream(ctx, []byte("big"), lonelypsdtest.NewPattern(size), size, sum)
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

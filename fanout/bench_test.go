package fanout

import (
	"context"
	"testing"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// BenchmarkDeliver100Subscribers measures one notify of a 32-byte message
// to 100 subscribers, each its own local HTTP server, over keep-alive
// connections.
func BenchmarkDeliver100Subscribers(b *testing.B) {
	const n = 100
	table := newTable()
	for range n {
		sub := client.NewSubscriber()
		sub.Discard = true
		srv := serve(b, sub)
		table.add(fsm.Subscription{Kind: fsm.Exact, URL: srv.URL + "/v1/receive", Key: "bench"})
	}
	f := newFanout(b, Config{}, table, nil, auth.NonePair(), nil)
	m := bytesMessage("bench", []byte("0123456789abcdef0123456789abcdef"))
	ctx := context.Background()
	// Warm the connection pool so the loop measures steady state.
	if got := f.Deliver(ctx, m); got != n {
		b.Fatalf("Deliver = %d, want %d", got, n)
	}
	b.ReportAllocs()
	for b.Loop() {
		if got := f.Deliver(ctx, m); got != n {
			b.Fatalf("Deliver = %d, want %d", got, n)
		}
	}
}

package fanout

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
	"github.com/lonelypsd/lonelypsd/fanout/egress"
	"github.com/lonelypsd/lonelypsd/fanout/fanouttest"
	"github.com/lonelypsd/lonelypsd/fsm"
)

func (f *Fanout) hostRefs(host string) int {
	f.hosts.mu.Lock()
	defer f.hosts.mu.Unlock()
	if h := f.hosts.hosts[host]; h != nil {
		return h.refs
	}
	return 0
}

// TestSlowHostDoesNotDelayOtherNotifies: notifies to a host that accepts
// connections and never answers use at most MaxPerHost of the node's
// delivery slots, so a notify to a healthy subscriber completes while
// every one of those deliveries is still pending (before their deadline
// could free a slot). Without the per-host limit the slow notifies would
// hold all MaxInFlight slots and the healthy one would wait for them.
func TestSlowHostDoesNotDelayOtherNotifies(t *testing.T) {
	const (
		perHost      = 4
		inFlight     = 16
		concurrency  = 8
		slowNotifies = 4 // 4 × 8 workers: twice the node's slots
		timeout      = 30 * time.Second
	)
	tp := fanouttest.StartTarpit(t)
	healthy := &confirmer{numSubscribers: 1}
	hs := serve(t, healthy)
	table := newTable(fsm.Subscription{Kind: fsm.Exact, URL: hs.URL + "/v1/receive", Key: "fast"})
	for i := range 100 {
		table.add(fsm.Subscription{Kind: fsm.Exact, URL: fmt.Sprintf("http://%s/s/%d", tp.Addr(), i), Key: "slow"})
	}
	f := newFanout(t, Config{
		Concurrency: concurrency, MaxInFlight: inFlight, MaxPerHost: perHost,
		Timeout: timeout, ResponseHeaderTimeout: timeout,
	}, table, nil, auth.NonePair(), nil)

	slowCtx, stopSlow := context.WithCancel(context.Background())
	var slow sync.WaitGroup
	slowDone := make(chan struct{})
	for range slowNotifies {
		slow.Add(1)
		go func() {
			defer slow.Done()
			f.Deliver(slowCtx, bytesMessage("slow", []byte("x")))
		}()
	}
	go func() { slow.Wait(); close(slowDone) }()
	t.Cleanup(func() {
		stopSlow()
		select {
		case <-slowDone:
		case <-time.After(10 * time.Second):
			t.Error("slow notifies did not end within 10s of their cancellation")
		}
	})

	// The tarpit holds its share of connections, and every worker of the
	// slow notifies is parked: holding or awaiting a slot of the tarpit,
	// or (were the order of the slots wrong) the node's slots are full.
	lonelypsdtest.WaitFor(t, "slow notifies to fill the tarpit's slots", 10*time.Second, func() bool {
		open, _, _ := tp.Counts()
		return open == perHost && (f.hostRefs(tp.Addr()) == slowNotifies*concurrency || len(f.sem) == inFlight)
	})

	start := time.Now()
	done := make(chan uint32, 1)
	go func() { done <- f.Deliver(context.Background(), bytesMessage("fast", []byte("y"))) }()
	select {
	case n := <-done:
		if n != 1 {
			t.Fatalf("healthy notify counted %d, want 1", n)
		}
	case <-time.After(timeout):
		t.Fatalf("healthy notify still waiting after the slow deliveries' %v deadline", timeout)
	}
	elapsed := time.Since(start)
	select {
	case <-slowDone:
		t.Fatal("slow notifies ended: the healthy one was not measured against pending deliveries")
	default:
	}
	if failed := f.Stats().Failed.Load(); failed != 0 {
		t.Fatalf("%d deliveries failed before the healthy notify finished: it waited for them", failed)
	}
	_, most, closed := tp.Counts()
	if most > perHost || closed != 0 {
		t.Fatalf("tarpit saw %d connections at once (limit %d), %d closed", most, perHost, closed)
	}
	t.Logf("healthy notify took %v with %d slow deliveries pending", elapsed, slowNotifies*concurrency)
}

// TestReplyHeadersAreBounded: a subscriber that never sends reply headers
// is given up after ResponseHeaderTimeout, long before the delivery's
// deadline; one that sends more than 16 KiB of headers is a failure.
func TestReplyHeadersAreBounded(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		tp := fanouttest.StartTarpit(t)
		const timeout = 30 * time.Second
		sub := fsm.Subscription{Kind: fsm.Exact, URL: "http://" + tp.Addr() + "/x", Key: "t"}
		f := newFanout(t, Config{Timeout: timeout, ResponseHeaderTimeout: 100 * time.Millisecond}, newTable(sub), nil, auth.NonePair(), nil)
		start := time.Now()
		if n := f.Deliver(context.Background(), bytesMessage("t", []byte("x"))); n != 0 {
			t.Fatalf("Deliver = %d", n)
		}
		if el := time.Since(start); el >= timeout || f.Stats().Failed.Load() != 1 {
			t.Fatalf("delivery ended after %v (deadline %v) with %d failures", el, timeout, f.Stats().Failed.Load())
		}
		if _, _, closed := tp.Counts(); closed == 0 {
			// The connection is closed when the wait is given up.
			lonelypsdtest.WaitFor(t, "the silent connection to be closed", 10*time.Second, func() bool {
				_, _, closed := tp.Counts()
				return closed == 1
			})
		}
	})
	for _, tc := range []struct {
		name   string
		header int
		want   uint32
	}{{"small headers", 1 << 10, 1}, {"oversized headers", 20 << 10, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			c := &confirmer{numSubscribers: 1}
			srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Padding", strings.Repeat("a", tc.header))
				c.ServeHTTP(w, r)
			}))
			sub := fsm.Subscription{Kind: fsm.Exact, URL: srv.URL + "/x", Key: "t"}
			f := newFanout(t, Config{}, newTable(sub), nil, auth.NonePair(), nil)
			if n := f.Deliver(context.Background(), bytesMessage("t", []byte("x"))); n != tc.want {
				t.Fatalf("Deliver = %d, want %d", n, tc.want)
			}
		})
	}
}

// TestPolicyRefusesAtConnect: a subscription whose host name resolves to
// the node's own listener is refused when the delivery connects, for the
// RECEIVE and the MISSED notice alike, and nothing reaches the listener;
// the node's own internal rows on that listener are still delivered.
func TestPolicyRefusesAtConnect(t *testing.T) {
	own := &confirmer{numSubscribers: 1}
	srv := serve(t, own)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	internal := srv.URL + "/v1/receive_for_websockets?node=n1"
	pol, err := egress.New(context.Background(), egress.Config{
		OwnListeners: []string{u.Host},
		Exempt:       func(raw string) bool { return raw == internal },
		LookupIP: func(_ context.Context, host string) ([]netip.Addr, error) {
			if host != "own.test" {
				return nil, fmt.Errorf("no such host %q", host)
			}
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	byName := "http://own.test:" + u.Port()
	hostile := fsm.Subscription{Kind: fsm.Exact, URL: byName + "/v1/notify", Key: "t", Recovery: byName + "/v1/recover"}
	row := fsm.Subscription{Kind: fsm.Exact, URL: internal, Key: "t"}
	table := newTable(hostile, row)
	store := openStore(t, tinyPolicy)
	var logs lonelypsdtest.SyncBuffer
	f := New(Config{Policy: pol}, table, nil, auth.NonePair(), store, slog.New(slog.NewTextHandler(&logs, nil)))
	t.Cleanup(f.CloseIdleConnections)

	if err := pol.CheckURL(hostile.URL); err != nil {
		t.Fatalf("a host name is refused at subscribe time: %v", err)
	}
	if n := f.Deliver(context.Background(), bytesMessage("t", []byte("x"))); n != 1 {
		t.Fatalf("Deliver = %d, want 1 (the internal row only)", n)
	}
	for _, r := range own.requests() {
		if r.RequestURI != "/v1/receive_for_websockets?node=n1" {
			t.Fatalf("the own listener received %s", r.RequestURI)
		}
	}
	if len(own.requests()) != 1 || f.Stats().Failed.Load() != 1 {
		t.Fatalf("%d requests received, %d failures; want 1 and 1", len(own.requests()), f.Stats().Failed.Load())
	}
	if !strings.Contains(logs.String(), "own API or Raft listener") {
		t.Fatalf("refusal not logged clearly:\n%s", logs.String())
	}

	waitUntilDue(t, store)
	f.NewSweeper(time.Hour).Sweep(context.Background())
	recs := pendingRecords(t, store)
	if len(recs) != 1 || recs[0].Attempts != 1 {
		t.Fatalf("missed records %+v, want the notice kept for a retry", recs)
	}
	if len(own.requests()) != 1 {
		t.Fatalf("the MISSED notice reached the own listener")
	}
	if !strings.Contains(logs.String(), "missed notice not accepted") {
		t.Fatalf("refused MISSED not logged:\n%s", logs.String())
	}
}

// TestHostLimiterForgetsIdleHosts: entries exist only while a delivery
// holds or awaits a slot, and a cancelled wait gives its place back.
func TestHostLimiterForgetsIdleHosts(t *testing.T) {
	l := newHostLimiter(1)
	release, err := l.acquire(context.Background(), "a:80")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() {
		_, err := l.acquire(ctx, "a:80")
		waited <- err
	}()
	lonelypsdtest.WaitFor(t, "a waiter", 5*time.Second, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.hosts["a:80"].refs == 2
	})
	cancel()
	if err := <-waited; err == nil {
		t.Fatal("a cancelled wait got a slot that was taken")
	}
	release()
	l.mu.Lock()
	n := len(l.hosts)
	l.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d hosts remembered with nothing in flight", n)
	}
}

func TestHostKey(t *testing.T) {
	for raw, want := range map[string]string{
		"http://Example.COM/x":     "example.com:80",
		"https://example.com/x":    "example.com:443",
		"http://127.0.0.1:8080/":   "127.0.0.1:8080",
		"http://[::1]:9000/hook":   "[::1]:9000",
		"HTTPS://[fe80::1%25a]/x":  "[fe80::1%a]:443",
		"http://user@host:1/?q=1":  "host:1",
		"http://host.example.:81/": "host.example.:81",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := hostKey(u); got != want {
			t.Errorf("hostKey(%s) = %q, want %q", raw, got, want)
		}
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
	"github.com/lonelypsd/lonelypsd/fanout/fanouttest"
)

// TestSubscribeToLinkLocalAddressIsRefused: the cloud metadata address is
// refused at subscribe time with a message naming the flag that would
// allow it, and nothing is stored.
func TestSubscribeToLinkLocalAddressIsRefused(t *testing.T) {
	_, ctx, c := startNodeClient(t, t.TempDir())
	for _, u := range []string{"http://169.254.169.254/x", "http://[fe80::1]:8080/x"} {
		err := c.SubscribeExact(ctx, u, []byte("t"), "")
		var se *client.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusBadRequest ||
			!strings.Contains(se.Body, "link-local") || !strings.Contains(se.Body, "--subscriber-allow-cidr") {
			t.Fatalf("subscribe %s: %v, want 400 naming link-local and --subscriber-allow-cidr", u, err)
		}
	}
	if n, err := c.Notify(ctx, []byte("t"), []byte("x")); err != nil || n != 0 {
		t.Fatalf("notify after refused subscriptions: %d, %v", n, err)
	}
}

// TestDeliveryToOwnListenerByNameIsRefused: subscriptions that reach the
// node's own API and Raft listeners through a host name pass the
// subscribe-time check (a name is judged when it is connected to), but
// the deliveries and MISSED notices are refused when connecting: the
// notify counts nothing, the refusal is logged, and the API never sees
// the request (it logs every request it refuses, as it would this one).
func TestDeliveryToOwnListenerByNameIsRefused(t *testing.T) {
	node, ctx, c := startNodeClient(t, t.TempDir())
	_, apiPort, _ := net.SplitHostPort(node.Addr())
	_, raftPort, _ := net.SplitHostPort(node.Arg("--raft-addr"))
	probe := fmt.Sprintf("/probe-%d", time.Now().UnixNano())
	apiURL := "http://localhost:" + apiPort + probe
	raftURL := "http://localhost:" + raftPort + probe
	if err := c.SubscribeExact(ctx, apiURL, []byte("self"), apiURL+"-missed"); err != nil {
		t.Fatalf("subscribe by host name: %v", err)
	}
	if err := c.SubscribeExact(ctx, raftURL, []byte("self"), ""); err != nil {
		t.Fatalf("subscribe by host name: %v", err)
	}
	n, err := c.Notify(ctx, []byte("self"), []byte("hello me"))
	if err != nil || n != 0 {
		t.Fatalf("notify: %d, %v; want 0", n, err)
	}
	lonelypsdtest.WaitFor(t, "the refusals to be logged", 10*time.Second, func() bool {
		logs := node.Logs()
		return strings.Count(logs, "own API or Raft listener") >= 3 &&
			strings.Contains(logs, "missed notice not accepted")
	})
	if strings.Contains(node.Logs(), "path="+probe) {
		t.Fatalf("a delivery reached the node's own API:\n%s", node.Logs())
	}
	// The same request sent directly is seen and logged: the check above
	// would notice a delivery that got through.
	resp, err := http.Post(node.HTTP+probe+"-direct", "application/octet-stream", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	lonelypsdtest.WaitFor(t, "the direct request to be logged", 10*time.Second, func() bool {
		return strings.Contains(node.Logs(), "path="+probe+"-direct")
	})
}

// TestTarpitHostDoesNotDelayHealthyNotifies reproduces the stall: 600
// subscriptions at a host that accepts connections and never answers, 16
// notifies to them at once (1,024 delivery workers for 512 node-wide
// slots), then 50 notifies to a healthy subscriber on another topic. Each
// healthy notify must complete while every tarpit delivery is still
// pending: none may have been given up (which would free a slot) before
// the last healthy notify returns. The latencies go to the test log.
func TestTarpitHostDoesNotDelayHealthyNotifies(t *testing.T) {
	const (
		subs      = 600
		notifiers = 16
		perHost   = 64 // --delivery-max-per-host default
		healthy   = 50
	)
	_, ctx, c := startNodeClient(t, t.TempDir(), "--delivery-response-header-timeout", "30s", "--delivery-timeout", "60s")
	tp := fanouttest.StartTarpit(t)
	sub := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())
	if err := c.SubscribeExact(ctx, sub.Receive, []byte("fast"), ""); err != nil {
		t.Fatal(err)
	}
	subscribeMany(t, ctx, c, subs, func(i int) string { return fmt.Sprintf("http://%s/s/%d", tp.Addr(), i) })

	slowCtx, stopSlow := context.WithCancel(ctx)
	var slow sync.WaitGroup
	for range notifiers {
		slow.Add(1)
		go func() {
			defer slow.Done()
			_, _ = c.Notify(slowCtx, []byte("slow"), []byte("x"))
		}()
	}
	t.Cleanup(func() { stopSlow(); slow.Wait() })
	lonelypsdtest.WaitFor(t, "the tarpit to hold its share of connections", 20*time.Second, func() bool {
		open, _, _ := tp.Counts()
		return open >= perHost
	})

	lat := make([]time.Duration, 0, healthy)
	for i := range healthy {
		start := time.Now()
		n, err := c.Notify(ctx, []byte("fast"), []byte(fmt.Sprintf("m%d", i)))
		lat = append(lat, time.Since(start))
		if err != nil || n != 1 {
			t.Fatalf("healthy notify %d: %d, %v", i, n, err)
		}
	}
	_, most, closed := tp.Counts()
	if closed != 0 {
		t.Fatalf("%d tarpit deliveries ended before the healthy notifies did: they waited for slots", closed)
	}
	if most > perHost {
		t.Fatalf("the tarpit held %d connections at once, limit %d", most, perHost)
	}
	slices.Sort(lat)
	t.Logf("healthy notify latency with %d tarpit subscriptions and %d stuck notifies: p50 %v, p99 %v, max %v (n=%d); tarpit held %d connections",
		subs, notifiers, lat[len(lat)/2], lat[(len(lat)*99+99)/100-1], lat[len(lat)-1], len(lat), most)
}

// subscribeMany subscribes n URLs to "slow", a few at a time.
func subscribeMany(t *testing.T, ctx context.Context, c *client.Client, n int, url func(int) string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := c.SubscribeExact(ctx, url(i), []byte("slow"), ""); err != nil {
					errs <- fmt.Errorf("subscribe %d: %w", i, err)
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestMisbehavingSubscribers: one that never answers, one that answers
// garbage, one that closes the connection. Each is a failed delivery;
// the healthy subscriber is counted and the node stays up.
func TestMisbehavingSubscribers(t *testing.T) {
	node, ctx, c := startNodeClient(t, t.TempDir(), "--delivery-timeout", "500ms")
	good := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())

	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	handlers := map[string]http.HandlerFunc{
		"silent":  func(w http.ResponseWriter, r *http.Request) { <-hang },
		"garbage": func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("\x00\x08\xff")) },
		"hangup": func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		},
		"html": func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "<html>oops</html>", http.StatusBadGateway)
		},
	}
	for name, h := range handlers {
		if err := c.SubscribeExact(ctx, lonelypsdtest.Serve(t, h)+"/"+name, []byte("t"), ""); err != nil {
			t.Fatal(err)
		}
	}
	// A subscriber on a port where nobody listens.
	if err := c.SubscribeExact(ctx, "http://127.0.0.1:1/v1/receive", []byte("t"), ""); err != nil {
		t.Fatal(err)
	}
	if err := c.SubscribeExact(ctx, good.Receive, []byte("t"), ""); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, err := c.Notify(ctx, []byte("t"), []byte("m"))
	if err != nil || n != 1 {
		t.Fatalf("notify: %d, %v; want 1", n, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("notify took %s: the silent subscriber was not cut off", d)
	}
	if code, _ := lonelypsdtest.Get(t, node.HTTP+"/healthz"); code != http.StatusOK {
		t.Fatalf("node unhealthy after bad subscribers: %d", code)
	}
}

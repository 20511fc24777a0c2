package main

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
)

// nextWSEvent returns the next event of kind want from s, failing on a
// message or MISSED of another kind, or after d.
func nextWSEvent(t *testing.T, s *wsclient.Subscriber, want wsclient.EventKind, d time.Duration) wsclient.Event {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case e, ok := <-s.Events():
			if !ok {
				t.Fatalf("events closed while waiting for %s", want)
			}
			if e.Kind == want {
				return e
			}
			if e.Kind == wsclient.EventMessage || e.Kind == wsclient.EventMissed {
				t.Fatalf("got %s on %q while waiting for %s", e.Kind, e.Message.Topic, want)
			}
		case <-timer.C:
			t.Fatalf("no %s event within %s", want, d)
		}
	}
}

// TestWebsocketSubscriberSeesMissed: a websocket subscriber's node is
// frozen while another node publishes to it; the delivery times out, and
// once the node runs again the publisher's MISSED reaches the subscriber
// as an EventMissed.
func TestWebsocketSubscriberSeesMissed(t *testing.T) {
	c := startCluster(t, 3, "--delivery-timeout", "500ms")
	pubNode, subNode := c.nodes[0], c.nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := wsclient.NewSubscriber(wsclient.SubscriberOptions{URLs: []string{wsURL(subNode)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SubscribeExact(ctx, []byte("m")); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Run(ctx) }()
	nextWSEvent(t, s, wsclient.EventConnected, 20*time.Second)
	pub := pubNode.Client()
	if n, err := pub.Notify(ctx, []byte("m"), []byte("delivered")); err != nil || n != 1 {
		t.Fatalf("notify while the subscriber's node runs: %d, %v", n, err)
	}
	if e := nextWSEvent(t, s, wsclient.EventMessage, 10*time.Second); string(e.Message.Data) != "delivered" {
		t.Fatalf("received %q", e.Message.Data)
	}

	if err := subNode.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	n, err := pub.Notify(ctx, []byte("m"), []byte("lost"))
	_ = subNode.cmd.Process.Signal(syscall.SIGCONT)
	if err != nil || n != 0 {
		t.Fatalf("notify while the subscriber's node is frozen: %d, %v (want 0 confirmations)", n, err)
	}
	// The frozen node may still hand over the message it had read before
	// the publisher gave up on it; what matters is the MISSED.
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case e := <-s.Events():
			switch {
			case e.Kind == wsclient.EventMissed && string(e.Message.Topic) == "m":
				return
			case e.Kind == wsclient.EventMessage && string(e.Message.Data) == "lost":
			case e.Kind == wsclient.EventMessage || e.Kind == wsclient.EventMissed:
				t.Fatalf("unexpected %s on %q: %q", e.Kind, e.Message.Topic, e.Message.Data)
			}
		case <-deadline.C:
			t.Fatal("no MISSED within 30s")
		}
	}
}

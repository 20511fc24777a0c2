package main

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

// TestWebsocketSubscriberSeesMissed: a websocket subscriber's node is
// frozen while another node publishes to it; the delivery times out, and
// once the node runs again the publisher's MISSED reaches the subscriber
// as an EventMissed.
func TestWebsocketSubscriberSeesMissed(t *testing.T) {
	c := startCluster(t, 3, "--delivery-timeout", "500ms")
	pubNode, subNode := c.nodes[0], c.nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, _ := lonelypsdtest.RunSubscriber(t, ctx, wsclient.SubscriberOptions{URLs: []string{subNode.WebsocketURL()}}, "m")
	pub := pubNode.Client()
	if n, err := pub.Notify(ctx, []byte("m"), []byte("delivered")); err != nil || n != 1 {
		t.Fatalf("notify while the subscriber's node runs: %d, %v", n, err)
	}
	if e := lonelypsdtest.NextEvent(t, s, wsclient.EventMessage, 10*time.Second); string(e.Message.Data) != "delivered" {
		t.Fatalf("received %q", e.Message.Data)
	}

	if err := subNode.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	n, err := pub.Notify(ctx, []byte("m"), []byte("lost"))
	_ = subNode.Signal(syscall.SIGCONT)
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

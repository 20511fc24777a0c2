package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
	"github.com/lonelypsd/lonelypsd/cluster"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

func dialWS(t *testing.T, p *lonelypsdtest.Proc, o wsclient.Options) *wsclient.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := wsclient.Dial(ctx, p.WebsocketURL(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var receiveURLLog = regexp.MustCompile(`receive_url="?([^"\s]+)`)

// receiveURLs waits until a node has logged n websocket receive URLs (one
// per process it ran) and returns them.
func receiveURLs(t *testing.T, p *lonelypsdtest.Proc, n int) []string {
	t.Helper()
	var out []string
	lonelypsdtest.WaitFor(t, "receive URLs in the log", 10*time.Second, func() bool {
		out = out[:0]
		for _, m := range receiveURLLog.FindAllStringSubmatch(p.Logs(), -1) {
			out = append(out, m[1])
		}
		return len(out) >= n
	})
	return out
}

// notifyUntil publishes until the count is want: a node's replica may
// apply a subscription made at another node a moment later. A notify that
// reached nobody delivered nothing, so retrying does not duplicate.
func notifyUntil(t *testing.T, c *client.Client, topic, msg []byte, want uint32) {
	t.Helper()
	ctx := ctxT(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := c.Notify(ctx, topic, msg)
		if err != nil {
			t.Fatal(err)
		}
		if got == want {
			return
		}
		if got != 0 || time.Now().After(deadline) {
			t.Fatalf("notify %q counted %d, want %d", topic, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A websocket subscriber on one node receives what is published on
// another, over HTTP or over a websocket, small or large.
func TestWebsocketSubscriberAcrossCluster(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t)
	a, b, cn := c.nodes[0], c.nodes[1], c.nodes[2]

	sub := dialWS(t, a, wsclient.Options{EnableZstd: true})
	if err := sub.SubscribeExact(ctx, []byte("deploy/api")); err != nil {
		t.Fatal(err)
	}
	if err := sub.SubscribeGlob(ctx, "cache/*"); err != nil {
		t.Fatal(err)
	}

	notifyUntil(t, cn.Client(), []byte("deploy/api"), []byte("restart"), 1)
	if m := lonelypsdtest.NextMessage(t, sub, 5*time.Second); string(m.Topic) != "deploy/api" || string(m.Data) != "restart" {
		t.Fatalf("received %q on %q", m.Data, m.Topic)
	}
	notifyUntil(t, cn.Client(), []byte("cache/users"), []byte("bust"), 1)
	if m := lonelypsdtest.NextMessage(t, sub, 5*time.Second); string(m.Topic) != "cache/users" || string(m.Data) != "bust" {
		t.Fatalf("received %q on %q", m.Data, m.Topic)
	}

	// A websocket notifier on C; an HTTP subscriber registered at B
	// counts too.
	hs := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())
	if err := b.Client().SubscribeExact(ctx, hs.Receive, []byte("deploy/api"), hs.Recover); err != nil {
		t.Fatal(err)
	}
	lonelypsdtest.WaitFor(t, "C's replica has B's subscription", 5*time.Second, func() bool {
		return len(c.topics(cn, hs.Receive)) == 1
	})
	notifier := dialWS(t, cn, wsclient.Options{EnableZstd: true, CompressNotifies: true})
	if got, err := notifier.Notify(ctx, []byte("deploy/api"), []byte("again")); err != nil || got != 2 {
		t.Fatalf("websocket notify counted %d (%v), want 2", got, err)
	}
	if m := lonelypsdtest.NextMessage(t, sub, 5*time.Second); string(m.Data) != "again" {
		t.Fatalf("received %q", m.Data)
	}

	// 24 MiB from C's websocket to A's: parts both ways, zstd on.
	big := make([]byte, 24<<20)
	if _, err := rand.Read(big[:12<<20]); err != nil {
		t.Fatal(err)
	}
	copy(big[12<<20:], bytes.Repeat([]byte("compressible "), 1<<20))
	if n, err := notifier.Notify(ctx, []byte("cache/blob"), big); err != nil || n != 1 {
		t.Fatalf("large notify: %d, %v", n, err)
	}
	m := lonelypsdtest.NextMessage(t, sub, 20*time.Second)
	if !bytes.Equal(m.Data, big) || m.Parts < 2 || m.MaxPart > 3670016 {
		t.Fatalf("large message: equal %t, %d parts, largest %d", bytes.Equal(m.Data, big), m.Parts, m.MaxPart)
	}

	// Closing the socket removes A's rows, seen from C's replica.
	urls := receiveURLs(t, a, 1)
	if rows := c.topics(cn, urls[0]); len(rows) != 1 {
		t.Fatalf("exact rows %q of A's receive URL, want 1", rows)
	}
	_ = sub.Close()
	lonelypsdtest.WaitFor(t, "A's rows removed", 10*time.Second, func() bool { return len(c.topics(cn, urls[0])) == 0 })
}

// A node killed with websocket subscriptions leaves rows behind; the next
// process of the node removes them, and websockets work again.
func TestWebsocketRowsOfCrashedProcessRemoved(t *testing.T) {
	p := startNode(t, t.TempDir())
	ctx := ctxT(t)
	ws := dialWS(t, p, wsclient.Options{})
	if err := ws.SubscribeExact(ctx, []byte("crash")); err != nil {
		t.Fatal(err)
	}
	old := receiveURLs(t, p, 1)
	// The node has no configured cluster secret: it generated one.
	secret, err := cluster.GeneratedSecret(p.DataDir)
	if err != nil || secret == "" {
		t.Fatalf("generated cluster secret: %q, %v", secret, err)
	}
	rows := func(url string) int { return len(tableKeys(t, secret, p, url)) }
	if rows(old[0]) != 1 {
		t.Fatal("no row for the websocket subscription")
	}
	p.Kill()
	p.Start()
	lonelypsdtest.WaitFor(t, "rows of the killed process removed", 10*time.Second, func() bool { return rows(old[0]) == 0 })

	ws = dialWS(t, p, wsclient.Options{})
	if err := ws.SubscribeExact(ctx, []byte("crash")); err != nil {
		t.Fatal(err)
	}
	notifyUntil(t, p.Client(), []byte("crash"), []byte("back"), 1)
	if m := lonelypsdtest.NextMessage(t, ws, 5*time.Second); string(m.Data) != "back" {
		t.Fatalf("received %q", m.Data)
	}
	// A clean stop removes this process's rows too.
	cur := receiveURLs(t, p, 2)[1]
	p.Stop()
	p.Start()
	lonelypsdtest.WaitFor(t, "rows of the stopped process gone", 10*time.Second, func() bool { return rows(cur) == 0 })
}

// TestWebsocketSubscriberSeesMissed: a websocket subscriber's node is
// frozen while another node publishes to it; the delivery times out, and
// once the node runs again the publisher's MISSED reaches the subscriber
// as an EventMissed.
func TestWebsocketSubscriberSeesMissed(t *testing.T) {
	// Long enough for a delivery on a busy machine under -race, short
	// enough for the frozen node's to fail soon.
	c := startCluster(t, 3, "--delivery-timeout", "2s")
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

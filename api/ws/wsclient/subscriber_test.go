package wsclient_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

// binPath is the lonelypsd binary, built once: the Subscriber is tested
// against the real node, killed and started again.
var binPath string

func TestMain(m *testing.M) { lonelypsdtest.Main(m, &binPath) }

// TestSubscriberSurvivesANodeRestart: the node is killed and started again
// on the same port and data; the Subscriber reports the loss and the
// reconnection, subscribes again by itself, and receives what is published
// after the restart, on a topic and on a glob.
func TestSubscriberSurvivesANodeRestart(t *testing.T) {
	n := lonelypsdtest.StartNode(t, binPath, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, runErr := lonelypsdtest.RunSubscriber(t, ctx, wsclient.SubscriberOptions{URLs: []string{n.WebsocketURL()},
		Backoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Jitter: 50 * time.Millisecond}, "before")
	// Subscribed while connected: applied at once, and again after the
	// restart.
	if err := s.SubscribeGlob(ctx, "after/*"); err != nil {
		t.Fatal(err)
	}
	pub := client.New(n.HTTP)
	if c, err := pub.Notify(ctx, []byte("before"), []byte("one")); err != nil || c != 1 {
		t.Fatalf("notify before the restart: %d, %v", c, err)
	}
	if e := lonelypsdtest.NextEvent(t, s, wsclient.EventMessage, 10*time.Second); string(e.Message.Topic) != "before" || string(e.Message.Data) != "one" {
		t.Fatalf("received %q %q", e.Message.Topic, e.Message.Data)
	}

	n.Kill()
	lonelypsdtest.NextEvent(t, s, wsclient.EventDisconnected, 10*time.Second)
	n.Start()
	if e := lonelypsdtest.NextEvent(t, s, wsclient.EventConnected, 30*time.Second); !e.Reconnect {
		t.Fatal("the connection after the restart is not reported as a reconnection")
	}
	for _, topic := range []string{"before", "after/x"} {
		if c, err := pub.Notify(ctx, []byte(topic), []byte("two")); err != nil || c != 1 {
			t.Fatalf("notify %s after the restart: %d, %v", topic, c, err)
		}
		if e := lonelypsdtest.NextEvent(t, s, wsclient.EventMessage, 10*time.Second); string(e.Message.Topic) != topic || string(e.Message.Data) != "two" {
			t.Fatalf("received %q %q, want %s", e.Message.Topic, e.Message.Data, topic)
		}
	}
	cancel()
	if err := <-runErr; err != context.Canceled {
		t.Fatalf("run ended with %v", err)
	}
}

// TestSubscriberSpoolsLargeMessages: messages past SpoolAbove arrive as a
// file holding the whole message (decompressed when the broadcaster
// compressed it), smaller ones in memory.
func TestSubscriberSpoolsLargeMessages(t *testing.T) {
	n := lonelypsdtest.StartNode(t, binPath, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spool := t.TempDir()
	s, _ := lonelypsdtest.RunSubscriber(t, ctx, wsclient.SubscriberOptions{URLs: []string{n.WebsocketURL()},
		Options: wsclient.Options{EnableZstd: true, SpoolAbove: 64 << 10, SpoolDir: spool}}, "t")
	random := make([]byte, 3<<20)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		msg    []byte
		inFile bool
	}{
		{"small", []byte("small"), false},
		{"compressible", bytes.Repeat([]byte("a line of text that compresses well\n"), 100_000), true},
		{"random", random, true},
	}
	pub := client.New(n.HTTP)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := pub.Notify(ctx, []byte("t"), tc.msg); err != nil || c != 1 {
				t.Fatalf("notify: %d, %v", c, err)
			}
			m := lonelypsdtest.NextEvent(t, s, wsclient.EventMessage, 20*time.Second).Message
			got := m.Data
			if m.File != nil {
				defer m.File.Close()
				var err error
				if got, err = io.ReadAll(m.File); err != nil {
					t.Fatal(err)
				}
			}
			if (m.File != nil) != tc.inFile || m.Size != uint64(len(tc.msg)) || !bytes.Equal(got, tc.msg) {
				t.Fatalf("in a file %t (want %t), size %d, %d bytes equal %t; want %d bytes",
					m.File != nil, tc.inFile, m.Size, len(got), bytes.Equal(got, tc.msg), len(tc.msg))
			}
			if left, err := os.ReadDir(spool); err != nil || len(left) != 0 {
				t.Fatalf("spool folder holds %v (%v): files must be unlinked", left, err)
			}
		})
	}
}

// TestSubscriberHoldsBackInsteadOfBuffering: with room for one event and
// one message, a reader that falls behind loses nothing: the connection
// stops reading, the broadcaster queues, and every message arrives in
// order once the reader catches up.
func TestSubscriberHoldsBackInsteadOfBuffering(t *testing.T) {
	n := lonelypsdtest.StartNode(t, binPath, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, _ := lonelypsdtest.RunSubscriber(t, ctx, wsclient.SubscriberOptions{URLs: []string{n.WebsocketURL()}, Events: 1,
		Options: wsclient.Options{Buffer: 1}}, "t")
	const count = 200
	pub := client.New(n.HTTP)
	for i := range count {
		if c, err := pub.Notify(ctx, []byte("t"), []byte(fmt.Sprint(i))); err != nil || c != 1 {
			t.Fatalf("notify %d: %d, %v", i, c, err)
		}
	}
	for i := range count {
		if e := lonelypsdtest.NextEvent(t, s, wsclient.EventMessage, 10*time.Second); string(e.Message.Data) != fmt.Sprint(i) {
			t.Fatalf("message %d is %q", i, e.Message.Data)
		}
	}
}

// TestSubscriberUnsubscribesAndNotifies: an unsubscribed topic or glob no
// longer reaches the Subscriber, on this connection and after it would
// resubscribe; Notify publishes over the Subscriber's own connection and
// fails without one.
func TestSubscriberUnsubscribesAndNotifies(t *testing.T) {
	n := lonelypsdtest.StartNode(t, binPath, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := wsclient.NewSubscriber(wsclient.SubscriberOptions{URLs: []string{n.WebsocketURL()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Notify(ctx, []byte("x"), []byte("y")); err != wsclient.ErrNotConnected {
		t.Fatalf("Notify before Run: %v, want ErrNotConnected", err)
	}
	for _, err := range []error{s.SubscribeExact(ctx, []byte("a")), s.SubscribeGlob(ctx, "g/*"), s.SubscribeExact(ctx, []byte("keep"))} {
		if err != nil {
			t.Fatal(err)
		}
	}
	go func() { _ = s.Run(ctx) }()
	lonelypsdtest.NextEvent(t, s, wsclient.EventConnected, 20*time.Second)
	if err := s.UnsubscribeExact(ctx, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.UnsubscribeGlob(ctx, "g/*"); err != nil {
		t.Fatal(err)
	}
	// Through its own connection: the unsubscribed topics reach nobody,
	// the one kept reaches this Subscriber.
	for _, tc := range []struct {
		topic string
		want  uint64
	}{{"a", 0}, {"g/1", 0}, {"keep", 1}} {
		if c, err := s.Notify(ctx, []byte(tc.topic), []byte(tc.topic)); err != nil || c != tc.want {
			t.Fatalf("notify %s: %d subscribers, %v; want %d", tc.topic, c, err, tc.want)
		}
	}
	if e := lonelypsdtest.NextEvent(t, s, wsclient.EventMessage, 10*time.Second); string(e.Message.Topic) != "keep" {
		t.Fatalf("received %q, want only keep", e.Message.Topic)
	}
}

package lonelypsdtest

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
)

// WaitFor polls cond until it holds, failing the test after d. It is for
// effects that announce nothing (a removal through Raft, a goroutine
// parked on a semaphore); wait on an event where there is one.
func WaitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitEvent waits until cond holds, checking it each time the subscriber
// records something, and fails the test after d.
func WaitEvent(t testing.TB, s *client.Subscriber, what string, d time.Duration, cond func() bool) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		ch := s.Changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}

// NextEvent returns the websocket subscriber's next event of kind want,
// failing the test on a message or MISSED event of another kind, or
// after d. Connection events of other kinds are passed over.
func NextEvent(t testing.TB, s *wsclient.Subscriber, want wsclient.EventKind, d time.Duration) wsclient.Event {
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

// NextMessage returns the next message of the websocket connection c,
// failing the test if it ends or after d.
func NextMessage(t testing.TB, c *wsclient.Conn, d time.Duration) wsclient.Message {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case m, ok := <-c.Messages():
		if ok {
			return m
		}
		t.Fatalf("websocket ended: %v", c.Err())
	case <-timer.C:
		t.Fatalf("nothing received within %s", d)
	}
	return wsclient.Message{}
}

// RunSubscriber creates a websocket Subscriber with opts, subscribed to
// the exact topics, runs it until ctx ends and waits for its first
// connection, which must not be reported as a reconnection. The channel
// yields what Run returned.
func RunSubscriber(t testing.TB, ctx context.Context, opts wsclient.SubscriberOptions, topics ...string) (*wsclient.Subscriber, <-chan error) {
	t.Helper()
	s, err := wsclient.NewSubscriber(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range topics {
		if err := s.SubscribeExact(ctx, []byte(topic)); err != nil {
			t.Fatal(err)
		}
	}
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()
	if e := NextEvent(t, s, wsclient.EventConnected, 20*time.Second); e.Reconnect {
		t.Fatal("the first connection is reported as a reconnection")
	}
	return s, runErr
}

// Subscriber is a client.Subscriber served on a real loopback listener
// until the test ends.
type Subscriber struct {
	*client.Subscriber
	Receive string // its RECEIVE URL
	Recover string // its MISSED URL
}

// StartSubscriber serves sub on a free loopback port.
func StartSubscriber(t testing.TB, sub *client.Subscriber) *Subscriber {
	t.Helper()
	base := Serve(t, sub)
	return &Subscriber{Subscriber: sub, Receive: base + "/v1/receive", Recover: base + "/v1/recover"}
}

// SyncBuffer is a bytes.Buffer that a process or handler writes while the
// test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Replying returns a client.Subscriber that answers every RECEIVE with
// reply (client.Fail, client.Unsubscribe ...).
func Replying(reply client.Reply) *client.Subscriber {
	s := client.NewSubscriber()
	s.Decide = func(client.Received) client.Reply { return reply }
	return s
}

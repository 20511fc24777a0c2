package wsclient_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
)

// binPath is the lonelypsd binary, built once: the Subscriber is tested
// against the real node, killed and started again.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wsclient-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "lonelypsd")
	out, err := exec.Command("go", "build", "-o", binPath, "github.com/lonelypsd/lonelypsd/cmd/lonelypsd").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build lonelypsd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// node is a single-node lonelypsd process on fixed ports and data dir, so
// it can be killed and started again where its clients expect it.
type node struct {
	t                  *testing.T
	httpAddr, raftAddr string
	dataDir            string
	cmd                *exec.Cmd
	logs               bytes.Buffer
	exited             chan struct{}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startNode(t *testing.T) *node {
	n := &node{t: t, httpAddr: freeAddr(t), raftAddr: freeAddr(t), dataDir: t.TempDir()}
	n.start()
	t.Cleanup(n.kill)
	return n
}

func (n *node) base() string  { return "http://" + n.httpAddr }
func (n *node) wsURL() string { return "ws://" + n.httpAddr + "/v1/websocket" }

func (n *node) start() {
	n.t.Helper()
	n.logs.Reset()
	n.cmd = exec.Command(binPath, "serve", "--node-id", "n1", "--bootstrap",
		"--http-addr", n.httpAddr, "--raft-addr", n.raftAddr, "--data-dir", n.dataDir)
	n.cmd.Stderr = &n.logs
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(n.cmd, n.exited)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(n.base() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-n.exited:
			n.t.Fatalf("lonelypsd exited during start-up\n%s", n.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("lonelypsd not ready in 20s")
		}
		time.Sleep(20 * time.Millisecond) // polling readiness: the process offers no event
	}
}

// kill ends the process at once (SIGKILL), as a crash does.
func (n *node) kill() {
	select {
	case <-n.exited:
		return
	default:
	}
	_ = n.cmd.Process.Kill()
	<-n.exited
}

// nextEvent returns the next event of kind want, failing on a message
// event of another kind or after d.
func nextEvent(t *testing.T, s *wsclient.Subscriber, want wsclient.EventKind, d time.Duration) wsclient.Event {
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

// TestSubscriberSurvivesANodeRestart: the node is killed and started again
// on the same port and data; the Subscriber reports the loss and the
// reconnection, subscribes again by itself, and receives what is published
// after the restart, on a topic and on a glob.
func TestSubscriberSurvivesANodeRestart(t *testing.T) {
	n := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := wsclient.NewSubscriber(wsclient.SubscriberOptions{URLs: []string{n.wsURL()},
		Backoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Jitter: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SubscribeExact(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()
	if e := nextEvent(t, s, wsclient.EventConnected, 20*time.Second); e.Reconnect {
		t.Fatal("the first connection is reported as a reconnection")
	}
	// Subscribed while connected: applied at once, and again after the
	// restart.
	if err := s.SubscribeGlob(ctx, "after/*"); err != nil {
		t.Fatal(err)
	}
	pub := client.New(n.base())
	if c, err := pub.Notify(ctx, []byte("before"), []byte("one")); err != nil || c != 1 {
		t.Fatalf("notify before the restart: %d, %v", c, err)
	}
	if e := nextEvent(t, s, wsclient.EventMessage, 10*time.Second); string(e.Message.Topic) != "before" || string(e.Message.Data) != "one" {
		t.Fatalf("received %q %q", e.Message.Topic, e.Message.Data)
	}

	n.kill()
	nextEvent(t, s, wsclient.EventDisconnected, 10*time.Second)
	n.start()
	if e := nextEvent(t, s, wsclient.EventConnected, 30*time.Second); !e.Reconnect {
		t.Fatal("the connection after the restart is not reported as a reconnection")
	}
	for _, topic := range []string{"before", "after/x"} {
		if c, err := pub.Notify(ctx, []byte(topic), []byte("two")); err != nil || c != 1 {
			t.Fatalf("notify %s after the restart: %d, %v", topic, c, err)
		}
		if e := nextEvent(t, s, wsclient.EventMessage, 10*time.Second); string(e.Message.Topic) != topic || string(e.Message.Data) != "two" {
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
	n := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spool := t.TempDir()
	s, err := wsclient.NewSubscriber(wsclient.SubscriberOptions{URLs: []string{n.wsURL()},
		Options: wsclient.Options{EnableZstd: true, SpoolAbove: 64 << 10, SpoolDir: spool}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SubscribeExact(ctx, []byte("t")); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Run(ctx) }()
	nextEvent(t, s, wsclient.EventConnected, 20*time.Second)
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
	pub := client.New(n.base())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := pub.Notify(ctx, []byte("t"), tc.msg); err != nil || c != 1 {
				t.Fatalf("notify: %d, %v", c, err)
			}
			m := nextEvent(t, s, wsclient.EventMessage, 20*time.Second).Message
			got := m.Data
			if m.File != nil {
				defer m.File.Close()
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
	n := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := wsclient.NewSubscriber(wsclient.SubscriberOptions{URLs: []string{n.wsURL()}, Events: 1,
		Options: wsclient.Options{Buffer: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SubscribeExact(ctx, []byte("t")); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Run(ctx) }()
	nextEvent(t, s, wsclient.EventConnected, 20*time.Second)
	const count = 200
	pub := client.New(n.base())
	for i := range count {
		if c, err := pub.Notify(ctx, []byte("t"), []byte(fmt.Sprint(i))); err != nil || c != 1 {
			t.Fatalf("notify %d: %d, %v", i, c, err)
		}
	}
	for i := range count {
		if e := nextEvent(t, s, wsclient.EventMessage, 10*time.Second); string(e.Message.Data) != fmt.Sprint(i) {
			t.Fatalf("message %d is %q", i, e.Message.Data)
		}
	}
}

// TestSubscriberUnsubscribesAndNotifies: an unsubscribed topic or glob no
// longer reaches the Subscriber, on this connection and after it would
// resubscribe; Notify publishes over the Subscriber's own connection and
// fails without one.
func TestSubscriberUnsubscribesAndNotifies(t *testing.T) {
	n := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := wsclient.NewSubscriber(wsclient.SubscriberOptions{URLs: []string{n.wsURL()}})
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
	nextEvent(t, s, wsclient.EventConnected, 20*time.Second)
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
	if e := nextEvent(t, s, wsclient.EventMessage, 10*time.Second); string(e.Message.Topic) != "keep" {
		t.Fatalf("received %q, want only keep", e.Message.Topic)
	}
}

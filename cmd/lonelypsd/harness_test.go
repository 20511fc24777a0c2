package main

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

// binPath is the lonelypsd binary built once for the end-to-end tests.
var binPath string

func TestMain(m *testing.M) { lonelypsdtest.Main(m, &binPath) }

// startNode starts a single bootstrapped node with data in dataDir; its
// MISSED sweeper runs every 100 ms so that notices are not waited for.
func startNode(t testing.TB, dataDir string, extra ...string) *lonelypsdtest.Proc {
	t.Helper()
	return lonelypsdtest.StartNode(t, binPath, dataDir, append([]string{"--missed-sweep-interval", "100ms"}, extra...)...)
}

// startNodeClient is startNode with a context for the test and a client of
// the node.
func startNodeClient(t testing.TB, dataDir string, extra ...string) (*lonelypsdtest.Proc, context.Context, *client.Client) {
	t.Helper()
	p := startNode(t, dataDir, extra...)
	return p, ctxT(t), p.Client()
}

// deliverOnce subscribes a fresh subscriber to topic and notifies msg,
// which must reach it: the node has then done one delivery.
func deliverOnce(t testing.TB, ctx context.Context, node *lonelypsdtest.Proc, topic, msg string) *lonelypsdtest.Subscriber {
	t.Helper()
	sub := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())
	if err := node.Client().SubscribeExact(ctx, sub.Receive, []byte(topic), ""); err != nil {
		t.Fatal(err)
	}
	if n, err := node.Client().Notify(ctx, []byte(topic), []byte(msg)); err != nil || n != 1 {
		t.Fatalf("notify %s: %d, %v; want 1", topic, n, err)
	}
	return sub
}

// refusedStart runs `lonelypsd command` on free ports with a fresh data
// folder and the extra flags, which must make it exit with an error within
// 20 s, and returns what it printed.
func refusedStart(t *testing.T, command string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append([]string{command, "--http-addr", lonelypsdtest.FreeAddr(t), "--raft-addr", lonelypsdtest.FreeAddr(t),
		"--data-dir", t.TempDir()}, extra...)
	out, err := exec.CommandContext(ctx, binPath, args...).CombinedOutput()
	if err == nil {
		t.Fatalf("lonelypsd %s started with %q\n%s", command, extra, out)
	}
	return string(out)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

package main

import (
	"context"
	"errors"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/cluster"
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

// cli runs `lonelypsd args...` to its end, within 60 s, and returns what
// it printed on stdout and stderr and its exit code.
func cli(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("lonelypsd %q did not end within 60 s\n%s%s", args, out.String(), errb.String())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

// refusedStart runs `lonelypsd command` on free ports with a fresh data
// folder and the extra flags, which must make it exit with an error, and
// returns what it printed.
func refusedStart(t *testing.T, command string, extra ...string) string {
	t.Helper()
	args := append([]string{command, "--http-addr", lonelypsdtest.FreeAddr(t), "--raft-addr", lonelypsdtest.FreeAddr(t),
		"--data-dir", t.TempDir()}, extra...)
	out, errs, code := cli(t, args...)
	if code == 0 {
		t.Fatalf("lonelypsd %s started with %q\n%s%s", command, extra, out, errs)
	}
	return out + errs
}

// setupDir runs `lonelypsd setup` for the schemes toB (to the
// broadcaster) and toS (to subscribers) and returns the folder holding
// broadcaster-secrets.json and subscriber-secrets.json.
func setupDir(t *testing.T, toB, toS string) string {
	t.Helper()
	dir := t.TempDir()
	out, errs, code := cli(t, "setup", "--dir", dir, "--to-broadcaster-auth", toB, "--to-subscriber-auth", toS)
	if code != 0 {
		t.Fatalf("setup: exit %d\n%s%s", code, out, errs)
	}
	return dir
}

// statusOf is the HTTP status of a refusal, 200 for success.
func statusOf(err error) int {
	if err == nil {
		return http.StatusOK
	}
	var se *client.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return -1
}

// notifyBody is a notify request body for msg on topic, claiming the
// digest claimed and the length length.
func notifyBody(t testing.TB, topic, msg []byte, claimed [64]byte, length uint64) []byte {
	t.Helper()
	head, err := wire.AppendNotifyHeader(nil, wire.Notify{Topic: topic, SHA512: claimed, Identifier: []byte{1, 2, 3, 4}, Length: length})
	if err != nil {
		t.Fatal(err)
	}
	return append(head, msg...)
}

// tableKeys lists, from node p's replica read with the cluster secret,
// the keys of url's subscriptions, sorted.
func tableKeys(t testing.TB, secret string, p *lonelypsdtest.Proc, url string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	subs, err := cluster.NewClient(secret).Subscriptions(ctx, p.Addr(), url)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range subs {
		out = append(out, s.Key)
	}
	sort.Strings(out)
	return out
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

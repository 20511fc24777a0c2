package main

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

func TestNotifyDeliversToExactAndGlobSubscribers(t *testing.T) {
	_, ctx, c := startNodeClient(t, t.TempDir())
	a := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())
	b := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())

	if err := c.SubscribeExact(ctx, a.Receive, []byte("foo/bar"), a.Recover); err != nil {
		t.Fatal(err)
	}
	if err := c.SubscribeGlob(ctx, b.Receive, "foo/*", ""); err != nil {
		t.Fatal(err)
	}
	// b also holds an exact subscription on the same topic: one copy per
	// matching subscription, as in the reference.
	if err := c.SubscribeExact(ctx, b.Receive, []byte("foo/bar"), ""); err != nil {
		t.Fatal(err)
	}
	if err := c.SubscribeExact(ctx, a.Receive, []byte("foo/bar"), a.Recover); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("duplicate subscribe: got %v, want 409", err)
	}

	msg := []byte("hello world")
	n, err := c.Notify(ctx, []byte("foo/bar"), msg)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("notify count = %d, want 3", n)
	}
	ra, rb := a.Received(), b.Received()
	if len(ra) != 1 || len(rb) != 2 {
		t.Fatalf("received a=%d b=%d, want 1 and 2", len(ra), len(rb))
	}
	got := ra[0]
	if !bytes.Equal(got.Message, msg) || string(got.Topic) != "foo/bar" {
		t.Fatalf("delivered %q on %q", got.Message, got.Topic)
	}
	sum := sha512.Sum512(msg)
	if h := got.Header.Get("Repr-Digest"); h != wire.ReprDigest(sum) {
		t.Fatalf("Repr-Digest = %q", h)
	}
	if ct := got.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	if len(got.Identifier) != 8 {
		t.Fatalf("receive identifier %x, want 8 fresh bytes", got.Identifier)
	}
	if bytes.Equal(rb[0].Identifier, rb[1].Identifier) {
		t.Fatal("two deliveries shared an identifier")
	}

	// Topics that only the glob matches, and none at all.
	if n, err := c.Notify(ctx, []byte("foo/baz/qux"), []byte("x")); err != nil || n != 1 {
		t.Fatalf("glob-only notify: %d, %v", n, err)
	}
	if n, err := c.Notify(ctx, []byte("other"), nil); err != nil || n != 0 {
		t.Fatalf("unmatched notify: %d, %v", n, err)
	}
	// Invalid UTF-8 topics reach exact subscribers only.
	if err := c.SubscribeExact(ctx, a.Receive, []byte("foo/\xff"), ""); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Notify(ctx, []byte("foo/\xff"), []byte("y")); err != nil || n != 1 {
		t.Fatalf("invalid UTF-8 topic notify: %d, %v", n, err)
	}

	// Unsubscribe, then the same again is a 409.
	if err := c.UnsubscribeGlob(ctx, b.Receive, "foo/*"); err != nil {
		t.Fatal(err)
	}
	if err := c.UnsubscribeGlob(ctx, b.Receive, "foo/*"); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("second unsubscribe: %v, want 409", err)
	}
	if n, err := c.Notify(ctx, []byte("foo/bar"), msg); err != nil || n != 2 {
		t.Fatalf("after unsubscribe: %d, %v; want 2", n, err)
	}
}

func TestCheckAndSetSubscriptions(t *testing.T) {
	node, ctx, c := startNodeClient(t, t.TempDir())
	sub := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())

	empty, err := c.CheckSubscriptions(ctx, sub.Receive)
	if err != nil {
		t.Fatal(err)
	}
	if empty != wire.Etag(sub.Receive, nil, nil) {
		t.Fatal("etag of no subscriptions differs from the empty etag")
	}
	if err := c.SubscribeExact(ctx, sub.Receive, []byte("a"), sub.Recover); err != nil {
		t.Fatal(err)
	}
	if err := c.SubscribeExact(ctx, sub.Receive, []byte("old"), ""); err != nil {
		t.Fatal(err)
	}
	exact := []wire.ExactEntry{{Topic: []byte("a"), Recovery: sub.Recover}, {Topic: []byte("b"), Recovery: sub.Recover}}
	globs := []wire.GlobEntry{{Glob: "g/*", Recovery: sub.Recover}}
	if err := c.SetSubscriptions(ctx, sub.Receive, exact, globs); err != nil {
		t.Fatal(err)
	}
	got, err := c.CheckSubscriptions(ctx, sub.Receive)
	if err != nil {
		t.Fatal(err)
	}
	if got != wire.Etag(sub.Receive, exact, globs) {
		t.Fatal("check_subscriptions after set_subscriptions reports a different etag")
	}
	for topic, want := range map[string]uint32{"a": 1, "b": 1, "old": 0, "g/x": 1} {
		if n, err := c.Notify(ctx, []byte(topic), []byte("m")); err != nil || n != want {
			t.Fatalf("notify %q: %d, %v; want %d", topic, n, err, want)
		}
	}

	// An etag that does not match the lists is refused and changes nothing.
	body, err := wire.AppendSetSubscriptions(nil, wire.SetSubscriptions{URL: sub.Receive, Etag: wire.Etag(sub.Receive, nil, nil), Exact: exact})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := lonelypsdtest.Post(t, node.HTTP+"/v1/set_subscriptions", "", body); code != http.StatusBadRequest {
		t.Fatalf("mismatched etag: status %d, want 400", code)
	}
	// Unsorted lists are refused.
	unsorted := []wire.ExactEntry{{Topic: []byte("b")}, {Topic: []byte("a")}}
	body = setBody(sub.Receive, wire.Etag(sub.Receive, unsorted, nil), unsorted)
	if code, _ := lonelypsdtest.Post(t, node.HTTP+"/v1/set_subscriptions", "", body); code != http.StatusBadRequest {
		t.Fatalf("unsorted: status %d, want 400", code)
	}
	if again, _ := c.CheckSubscriptions(ctx, sub.Receive); again != got {
		t.Fatal("a refused set_subscriptions changed the subscriptions")
	}

	// Empty lists (what the Python client sends on shutdown).
	if err := c.SetSubscriptions(ctx, sub.Receive, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.CheckSubscriptions(ctx, sub.Receive); got != empty {
		t.Fatal("subscriptions left after set_subscriptions with empty lists")
	}
}

// setBody builds a set_subscriptions body by hand, so that unsorted lists
// (which the encoder refuses) can be sent.
func setBody(url string, etag [64]byte, exact []wire.ExactEntry) []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 0})
	b.Write([]byte{byte(len(url) >> 8), byte(len(url))})
	b.WriteString(url)
	b.WriteByte(0)
	b.Write(etag[:])
	b.Write([]byte{0, 0, 0, byte(len(exact))})
	for _, e := range exact {
		b.Write([]byte{byte(len(e.Topic) >> 8), byte(len(e.Topic))})
		b.Write(e.Topic)
		b.Write([]byte{0, 0})
	}
	b.Write([]byte{0, 0, 0, 0})
	return b.Bytes()
}

func TestUnsubscribeImmediateRemovesSubscription(t *testing.T) {
	_, ctx, c := startNodeClient(t, t.TempDir())
	sub := lonelypsdtest.Replying(client.Unsubscribe)
	s := lonelypsdtest.StartSubscriber(t, sub)
	if err := c.SubscribeExact(ctx, s.Receive, []byte("t"), s.Recover); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if n, err := c.Notify(ctx, []byte("t"), []byte("m")); err != nil || n != 0 {
		t.Fatalf("notify: %d, %v; want 0 (an unsubscribe is not a confirmation)", n, err)
	}
	empty := wire.Etag(s.Receive, nil, nil)
	lonelypsdtest.WaitFor(t, "the subscription to be removed", 5*time.Second, func() bool {
		got, err := c.CheckSubscriptions(ctx, s.Receive)
		return err == nil && got == empty
	})
	// Not a failure: no MISSED notice follows. An absence has no event to
	// wait for, so a control subscriber that fails a delivery gets its
	// MISSED notice (proof that the sweeper runs), and the wait lasts
	// until a notice for the first delivery would have been due too (at
	// most 4 s after it, plus one sweep).
	control := lonelypsdtest.Replying(client.Fail)
	cs := lonelypsdtest.StartSubscriber(t, control)
	if err := c.SubscribeExact(ctx, cs.Receive, []byte("control"), cs.Recover); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Notify(ctx, []byte("control"), []byte("m")); err != nil || n != 0 {
		t.Fatalf("control notify: %d, %v; want 0", n, err)
	}
	lonelypsdtest.WaitEvent(t, control, "the control's MISSED notice", 10*time.Second, func() bool { return len(control.Missed()) > 0 })
	// Nothing announces that a notice was not scheduled: outlive the
	// latest time one would have been due.
	time.Sleep(time.Until(sent.Add(5 * time.Second)))
	if len(sub.Missed()) != 0 {
		t.Fatal("unsubscribe-immediate produced a MISSED notice")
	}
}

func TestFailedDeliverySendsMissed(t *testing.T) {
	_, ctx, c := startNodeClient(t, t.TempDir(), "--delivery-timeout", "1s")
	sub := lonelypsdtest.Replying(client.Fail)
	s := lonelypsdtest.StartSubscriber(t, sub)
	if err := c.SubscribeGlob(ctx, s.Receive, "jobs/*", s.Recover); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Notify(ctx, []byte("jobs/1"), []byte("m")); err != nil || n != 0 {
		t.Fatalf("notify: %d, %v; want 0", n, err)
	}
	// The first retry is due 2 to 4 s after the failure.
	lonelypsdtest.WaitEvent(t, sub, "a MISSED notice", 10*time.Second, func() bool { return len(sub.Missed()) > 0 })
	if got := sub.Missed()[0]; string(got) != "jobs/1" {
		t.Fatalf("missed topic %q", got)
	}
	// Accepted: the subscription stays and no second notice follows.
	if n, err := c.Notify(ctx, []byte("other"), []byte("m")); err != nil || n != 0 {
		t.Fatal(n, err)
	}
	exact := []wire.GlobEntry{{Glob: "jobs/*", Recovery: s.Recover}}
	if got, _ := c.CheckSubscriptions(ctx, s.Receive); got != wire.Etag(s.Receive, nil, exact) {
		t.Fatal("subscription changed after the MISSED notice was accepted")
	}
}

func TestMissedSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	node, ctx, c := startNodeClient(t, dir)
	sub := lonelypsdtest.Replying(client.Fail)
	s := lonelypsdtest.StartSubscriber(t, sub)
	if err := c.SubscribeExact(ctx, s.Receive, []byte("t"), s.Recover); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Notify(ctx, []byte("t"), []byte("m")); n != 0 {
		t.Fatalf("count %d, want 0", n)
	}
	// Restart before the notice is due: it must still be sent.
	node.Restart()
	lonelypsdtest.WaitEvent(t, sub, "a MISSED notice after restart", 10*time.Second, func() bool { return len(sub.Missed()) > 0 })
}

func TestRestartKeepsSubscriptions(t *testing.T) {
	node, ctx, c := startNodeClient(t, t.TempDir())
	s := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())
	for i := range 20 {
		if err := c.SubscribeExact(ctx, s.Receive, []byte(fmt.Sprintf("t%d", i)), s.Recover); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SubscribeGlob(ctx, s.Receive, "g*", ""); err != nil {
		t.Fatal(err)
	}
	before, err := c.CheckSubscriptions(ctx, s.Receive)
	if err != nil {
		t.Fatal(err)
	}
	node.Restart()
	if !strings.Contains(node.Logs(), "stopped cleanly") {
		t.Fatalf("no clean stop logged:\n%s", node.Logs())
	}
	after, err := c.CheckSubscriptions(ctx, s.Receive)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatal("subscriptions differ after restart")
	}
	// Resubscribing is a conflict (nothing was applied twice or lost),
	// and delivery works from the rebuilt index.
	if err := c.SubscribeExact(ctx, s.Receive, []byte("t7"), s.Recover); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("resubscribe after restart: %v, want 409", err)
	}
	if n, err := c.Notify(ctx, []byte("t7"), []byte("m")); err != nil || n != 1 {
		t.Fatalf("notify after restart: %d, %v", n, err)
	}
	if n, err := c.Notify(ctx, []byte("gx"), []byte("m")); err != nil || n != 1 {
		t.Fatalf("glob notify after restart: %d, %v", n, err)
	}
}

// TestListenAndNotifyCommands drives the binary the way the README shows.
func TestListenAndNotifyCommands(t *testing.T) {
	node := startNode(t, t.TempDir())
	// Returns once the listener says it is subscribed.
	listen := startListen(t, "--addr", node.HTTP, "--glob", "deploy/*", "--topic", "cache/bust")
	notify := func(topic, msg string) string {
		t.Helper()
		out, errs, code := cli(t, "notify", "--addr", node.HTTP, "--topic", topic, "--message", msg)
		if code != 0 {
			t.Fatalf("notify: exit %d\n%s%s", code, out, errs)
		}
		return strings.TrimSpace(out + errs)
	}
	if got := notify("deploy/api", "restart please"); got != "delivered to 1 subscriber(s)" {
		t.Fatalf("notify printed %q", got)
	}
	if got := notify("elsewhere", "x"); got != "delivered to 0 subscriber(s)" {
		t.Fatalf("notify printed %q", got)
	}
	if !strings.Contains(listen.out.String(), "deploy/api\t\"restart please\"") {
		t.Fatalf("listener printed %q", listen.out.String())
	}
	// Ctrl-C unsubscribes.
	listen.stop(t)
	if got := notify("deploy/api", "again"); got != "delivered to 0 subscriber(s)" {
		t.Fatalf("after the listener left: %q", got)
	}
}

func TestOneGiBMessageToThreeSubscribers(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 4 GiB over loopback")
	}
	const size = 1 << 30
	node, ctx, c := startNodeClient(t, t.TempDir())
	var subs []*lonelypsdtest.Subscriber
	for range 3 {
		s := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())
		if err := c.SubscribeExact(ctx, s.Receive, []byte("big"), ""); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	h := sha512.New()
	if _, err := io.Copy(h, lonelypsdtest.NewPattern(size)); err != nil {
		t.Fatal(err)
	}
	var sum [64]byte
	h.Sum(sum[:0])

	rssBefore, _ := node.RSS()
	node.ResetPeakRSS()
	n, err := c.NotifyStream(ctx, []byte("big"), lonelypsdtest.NewPattern(size), size, sum)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("count %d, want 3", n)
	}
	_, peak := node.RSS()
	growth := peak - rssBefore
	t.Logf("server RSS before %d MiB, peak during the 1 GiB notify %d MiB, growth %d MiB",
		rssBefore>>20, peak>>20, growth>>20)
	if growth > 200<<20 {
		t.Fatalf("server RSS grew by %d MiB for a 1 GiB message; it must stream", growth>>20)
	}
	for i, s := range subs {
		r := s.Received()
		if len(r) != 1 || r[0].Length != size || r[0].SHA512 != sum {
			t.Fatalf("subscriber %d did not get the message intact: %+v", i, r)
		}
	}
}

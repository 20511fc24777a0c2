package fanout

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
	"github.com/lonelypsd/lonelypsd/fsm"
)

func TestDeliverCountsNumSubscribersFromConfirmations(t *testing.T) {
	// Three subscribers reporting different num_subscribers; B has both an
	// exact and a glob row matching, so it is delivered to twice.
	a := &confirmer{numSubscribers: 1}
	b := &confirmer{numSubscribers: 2}
	c := &confirmer{numSubscribers: 5}
	d := &confirmer{numSubscribers: 100} // matches nothing
	sa, sb, sc, sd := serve(t, a), serve(t, b), serve(t, c), serve(t, d)
	table := newTable(
		fsm.Subscription{Kind: fsm.Exact, URL: sa.URL + "/v1/receive", Key: "news/sport"},
		fsm.Subscription{Kind: fsm.Exact, URL: sb.URL + "/v1/receive?who=b", Key: "news/sport"},
		fsm.Subscription{Kind: fsm.Glob, URL: sb.URL + "/v1/receive?who=b", Key: "news/*"},
		fsm.Subscription{Kind: fsm.Glob, URL: sc.URL + "/hook", Key: "*sport"},
		fsm.Subscription{Kind: fsm.Exact, URL: sd.URL + "/v1/receive", Key: "news/weather"},
		fsm.Subscription{Kind: fsm.Glob, URL: sd.URL + "/v1/receive", Key: "weather/*"},
	)
	f := newFanout(t, Config{}, table, &recordingRemover{}, auth.NonePair(), nil)

	msg := []byte("goal! 1-0")
	m := bytesMessage("news/sport", msg)
	m.Tracing = []byte("trace-42")

	if got, want := f.Deliver(context.Background(), m), uint32(1+2+2+5); got != want {
		t.Fatalf("Deliver = %d, want %d", got, want)
	}
	if n := len(d.requests()); n != 0 {
		t.Errorf("non-matching subscriber got %d requests", n)
	}
	if got := f.Stats().Delivered.Load(); got != 4 {
		t.Errorf("Stats.Delivered = %d, want 4", got)
	}

	type delivery struct {
		c   *confirmer
		uri string
		n   int
	}
	for _, want := range []delivery{{a, "/v1/receive", 1}, {b, "/v1/receive?who=b", 2}, {c, "/hook", 1}} {
		reqs := want.c.requests()
		if len(reqs) != want.n {
			t.Fatalf("%s: %d requests, want %d", want.uri, len(reqs), want.n)
		}
		for _, r := range reqs {
			if r.Method != http.MethodPost || r.RequestURI != want.uri {
				t.Errorf("request %s %s, want POST %s (the URL exactly as stored)", r.Method, r.RequestURI, want.uri)
			}
		}
	}
}

func TestDeliverSendsReceiveHeadersAndBodyExactly(t *testing.T) {
	subs := make([]*confirmer, 4)
	table := newTable()
	for i := range subs {
		subs[i] = &confirmer{numSubscribers: 1}
		kind, key := fsm.Exact, "t"
		if i%2 == 1 {
			kind, key = fsm.Glob, "?"
		}
		table.add(fsm.Subscription{Kind: kind, URL: serve(t, subs[i]).URL + "/v1/receive", Key: key})
	}
	f := newFanout(t, Config{}, table, nil, auth.NonePair(), nil)

	seen := map[string]bool{}
	// Both sides of the in-memory/streamed split (inMemoryBody) included.
	rounds := [][]byte{
		[]byte("first message"), {}, bytes.Repeat([]byte{0, 0xff}, 3000),
		bytes.Repeat([]byte{'a'}, inMemoryBody), bytes.Repeat([]byte{'b'}, inMemoryBody+1), bytes.Repeat([]byte{'c'}, 3<<20),
	}
	for round, msg := range rounds {
		m := bytesMessage("t", msg)
		m.Tracing = []byte{1, 2, 3}
		if got := f.Deliver(context.Background(), m); got != uint32(len(subs)) {
			t.Fatalf("round %d: Deliver = %d, want %d", round, got, len(subs))
		}
		sum := sha512.Sum512(msg)
		for i, c := range subs {
			reqs := c.requests()
			if len(reqs) != round+1 {
				t.Fatalf("subscriber %d: %d requests after round %d", i, len(reqs), round)
			}
			r := reqs[round]
			head, err := wire.ReadReceiveHeader(bytes.NewReader(r.Body))
			if err != nil {
				t.Fatalf("subscriber %d: %v", i, err)
			}
			if len(head.Identifier) != 8 {
				t.Errorf("identifier is %d bytes, want 8", len(head.Identifier))
			}
			if seen[string(head.Identifier)] {
				t.Errorf("identifier %x reused", head.Identifier)
			}
			seen[string(head.Identifier)] = true

			want, err := wire.AppendReceiveHeader(nil, wire.Receive{
				Tracing: m.Tracing, Topic: m.Topic, Identifier: head.Identifier, Length: uint64(len(msg)),
			})
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, msg...)
			if !bytes.Equal(r.Body, want) {
				t.Errorf("subscriber %d: body\n%x\nwant\n%x", i, r.Body, want)
			}
			for _, h := range []struct{ name, want string }{
				{"Content-Type", "application/octet-stream"},
				{"Content-Length", strconv.Itoa(len(want))},
				{"Repr-Digest", "sha-512=" + base64.StdEncoding.EncodeToString(sum[:])},
			} {
				if got := r.Header.Get(h.name); got != h.want {
					t.Errorf("subscriber %d: %s = %q, want %q", i, h.name, got, h.want)
				}
			}
			if r.ContentLength != int64(len(want)) {
				t.Errorf("subscriber %d: ContentLength = %d, want %d", i, r.ContentLength, len(want))
			}
			if te := r.Header.Get("Transfer-Encoding"); te != "" {
				t.Errorf("subscriber %d: Transfer-Encoding %q, want none", i, te)
			}
			if _, ok := r.Header["Authorization"]; ok {
				t.Errorf("subscriber %d: Authorization header sent with auth none", i)
			}
		}
	}
	if len(seen) != len(rounds)*len(subs) {
		t.Errorf("%d distinct identifiers, want %d", len(seen), len(rounds)*len(subs))
	}
}

func TestDeliverWithNoMatchingSubscriptionReturnsZero(t *testing.T) {
	c := &confirmer{numSubscribers: 1}
	table := newTable(fsm.Subscription{Kind: fsm.Exact, URL: serve(t, c).URL, Key: "other"})
	f := newFanout(t, Config{}, table, nil, auth.NonePair(), nil)
	if got := f.Deliver(context.Background(), bytesMessage("topic", []byte("x"))); got != 0 {
		t.Errorf("Deliver = %d, want 0", got)
	}
	if n := len(c.requests()); n != 0 {
		t.Errorf("%d requests, want 0", n)
	}
}

func TestDeliverClampsCountToUint32(t *testing.T) {
	table := newTable()
	for range 3 {
		table.add(fsm.Subscription{Kind: fsm.Exact, URL: serve(t, &confirmer{numSubscribers: 1<<32 - 1}).URL, Key: "t"})
	}
	f := newFanout(t, Config{}, table, nil, auth.NonePair(), nil)
	if got := f.Deliver(context.Background(), bytesMessage("t", []byte("x"))); got != 1<<32-1 {
		t.Errorf("Deliver = %d, want %d", got, uint32(1<<32-1))
	}
}

func TestDeliverReplyKinds(t *testing.T) {
	confirmMissed, err := wire.AppendConfirmMissed(nil, wire.ConfirmMissed{})
	if err != nil {
		t.Fatal(err)
	}
	validConfirm, err := wire.AppendConfirmReceive(nil, wire.ConfirmReceive{Identifier: []byte("12345678"), NumSubscribers: 1})
	if err != nil {
		t.Fatal(err)
	}
	unsub := wire.AppendUnsubscribeImmediate(nil)

	type stats struct{ delivered, failed, unsubscribed uint64 }
	cases := []struct {
		name string
		// handler serves the subscription; nil means nothing listens.
		handler     func() http.Handler
		timeout     time.Duration
		wantCount   uint32
		wantRemoved bool
		wantMissed  bool
		wantStats   stats
	}{
		{
			name:      "CONFIRM_RECEIVE from client.Subscriber counts",
			handler:   func() http.Handler { return client.NewSubscriber() },
			wantCount: 1, wantStats: stats{delivered: 1},
		},
		{
			name:      "CONFIRM_RECEIVE with status 202 counts",
			handler:   func() http.Handler { return &confirmer{status: http.StatusAccepted, numSubscribers: 3} },
			wantCount: 3, wantStats: stats{delivered: 1},
		},
		{
			name:      "CONFIRM_RECEIVE with status 500 still counts",
			handler:   func() http.Handler { return &confirmer{status: http.StatusInternalServerError, numSubscribers: 1} },
			wantCount: 1, wantStats: stats{delivered: 1},
		},
		{
			name:        "UNSUBSCRIBE_IMMEDIATE with status 400 removes the subscription",
			handler:     func() http.Handler { return lonelypsdtest.Replying(client.Unsubscribe) },
			wantRemoved: true, wantStats: stats{unsubscribed: 1},
		},
		{
			name:        "UNSUBSCRIBE_IMMEDIATE with status 200 removes the subscription",
			handler:     func() http.Handler { return replyWith(http.StatusOK, unsub) },
			wantRemoved: true, wantStats: stats{unsubscribed: 1},
		},
		{
			name:        "UNSUBSCRIBE_IMMEDIATE with status 403 and trailing bytes removes the subscription",
			handler:     func() http.Handler { return replyWith(http.StatusForbidden, append(unsub, "ignored"...)) },
			wantRemoved: true, wantStats: stats{unsubscribed: 1},
		},
		{
			name:       "500 without a confirmation fails",
			handler:    func() http.Handler { return lonelypsdtest.Replying(client.Fail) },
			wantMissed: true, wantStats: stats{failed: 1},
		},
		{
			name:       "garbage body with status 200 fails",
			handler:    func() http.Handler { return replyWith(http.StatusOK, []byte("hello, world")) },
			wantMissed: true, wantStats: stats{failed: 1},
		},
		{
			name:       "empty body with status 200 fails",
			handler:    func() http.Handler { return replyWith(http.StatusOK, nil) },
			wantMissed: true, wantStats: stats{failed: 1},
		},
		{
			name:       "one-byte body fails",
			handler:    func() http.Handler { return replyWith(http.StatusOK, []byte{0}) },
			wantMissed: true, wantStats: stats{failed: 1},
		},
		{
			name:       "truncated CONFIRM_RECEIVE fails",
			handler:    func() http.Handler { return replyWith(http.StatusOK, validConfirm[:len(validConfirm)-2]) },
			wantMissed: true, wantStats: stats{failed: 1},
		},
		{
			name:       "CONFIRM_MISSED in reply to RECEIVE fails",
			handler:    func() http.Handler { return replyWith(http.StatusOK, confirmMissed) },
			wantMissed: true, wantStats: stats{failed: 1},
		},
		{
			name:       "503 with empty body (subscriber auth unavailable) fails",
			handler:    func() http.Handler { return replyWith(http.StatusServiceUnavailable, nil) },
			wantMissed: true, wantStats: stats{failed: 1},
		},
		{
			name:       "connection refused fails",
			wantMissed: true, wantStats: stats{failed: 1},
		},
		{
			name: "subscriber that never answers fails at the timeout",
			handler: func() http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					// Read the body so the server notices the client
					// giving up, then hang until it does.
					_, _ = io.Copy(io.Discard, r.Body)
					<-r.Context().Done()
				})
			},
			timeout:    200 * time.Millisecond,
			wantMissed: true, wantStats: stats{failed: 1},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := refusedURL(t) + "/v1/receive"
			if tc.handler != nil {
				url = serve(t, tc.handler()).URL + "/v1/receive"
			}
			recovery := "http://127.0.0.1:1/v1/recover"
			sub := fsm.Subscription{Kind: fsm.Glob, URL: url, Key: "orders/*", Recovery: recovery}
			rem := &recordingRemover{}
			store := openStore(t, DefaultRetryPolicy)
			f := newFanout(t, Config{Timeout: tc.timeout}, newTable(sub), rem, auth.NonePair(), store)

			start := time.Now()
			got := f.Deliver(context.Background(), bytesMessage("orders/17", []byte("payload")))
			elapsed := time.Since(start)
			f.Wait()

			if got != tc.wantCount {
				t.Errorf("Deliver = %d, want %d", got, tc.wantCount)
			}
			if tc.timeout > 0 && elapsed > tc.timeout+3*time.Second {
				t.Errorf("Deliver took %v with a %v timeout", elapsed, tc.timeout)
			}
			removed := rem.Removed()
			if tc.wantRemoved {
				if len(removed) != 1 || removed[0] != sub {
					t.Errorf("removed %+v, want exactly %+v", removed, sub)
				}
			} else if len(removed) != 0 {
				t.Errorf("removed %+v, want nothing", removed)
			}
			recs := pendingRecords(t, store)
			if tc.wantMissed {
				want := MissedRecord{Kind: fsm.Glob, URL: url, Key: "orders/*", Recovery: recovery, Topic: []byte("orders/17")}
				if len(recs) != 1 {
					t.Fatalf("missed records %+v, want one", recs)
				}
				r := recs[0]
				if r.Kind != want.Kind || r.URL != want.URL || r.Key != want.Key || r.Recovery != want.Recovery ||
					!bytes.Equal(r.Topic, want.Topic) || r.Attempts != 0 {
					t.Errorf("missed record %+v, want %+v", r, want)
				}
				// DefaultRetryPolicy: first notice 2 s to 4 s after the failure.
				due := time.UnixMilli(r.DueMs)
				if lo, hi := start.Add(2*time.Second-time.Millisecond), time.Now().Add(4*time.Second); due.Before(lo) || due.After(hi) {
					t.Errorf("due %v, want within [%v, %v]", due, lo, hi)
				}
			} else if len(recs) != 0 {
				t.Errorf("missed records %+v, want none", recs)
			}
			st := f.Stats()
			if g := (stats{st.Delivered.Load(), st.Failed.Load(), st.Unsubscribed.Load()}); g != tc.wantStats {
				t.Errorf("stats %+v, want %+v", g, tc.wantStats)
			}
		})
	}
}

func TestDeliverFailureWithoutRecoveryURLIsNotRecorded(t *testing.T) {
	store := openStore(t, DefaultRetryPolicy)
	table := newTable(fsm.Subscription{Kind: fsm.Exact, URL: refusedURL(t), Key: "t"})
	f := newFanout(t, Config{}, table, nil, auth.NonePair(), store)
	if got := f.Deliver(context.Background(), bytesMessage("t", []byte("x"))); got != 0 {
		t.Errorf("Deliver = %d, want 0", got)
	}
	if got := f.Stats().Failed.Load(); got != 1 {
		t.Errorf("Stats.Failed = %d, want 1", got)
	}
	if recs := pendingRecords(t, store); len(recs) != 0 {
		t.Errorf("missed records %+v, want none", recs)
	}
}

func TestDeliverUnsubscribeWithoutRemoverIsIgnored(t *testing.T) {
	srv := serve(t, replyWith(http.StatusBadRequest, wire.AppendUnsubscribeImmediate(nil)))
	store := openStore(t, DefaultRetryPolicy)
	table := newTable(fsm.Subscription{Kind: fsm.Exact, URL: srv.URL, Key: "t", Recovery: srv.URL + "/recover"})
	f := newFanout(t, Config{}, table, nil, auth.NonePair(), store)
	if got := f.Deliver(context.Background(), bytesMessage("t", []byte("x"))); got != 0 {
		t.Errorf("Deliver = %d, want 0", got)
	}
	f.Wait()
	if got := f.Stats().Unsubscribed.Load(); got != 1 {
		t.Errorf("Stats.Unsubscribed = %d, want 1", got)
	}
	if recs := pendingRecords(t, store); len(recs) != 0 {
		t.Errorf("missed records %+v, want none", recs)
	}
}

func TestDeliverMixedRepliesCountOnlyConfirmations(t *testing.T) {
	good := client.NewSubscriber()
	leaving := lonelypsdtest.Replying(client.Unsubscribe)
	failing := lonelypsdtest.Replying(client.Fail)
	gs, ls, fs := serve(t, good), serve(t, leaving), serve(t, failing)
	subs := []fsm.Subscription{
		{Kind: fsm.Exact, URL: gs.URL + "/v1/receive", Key: "t", Recovery: gs.URL + "/v1/recover"},
		{Kind: fsm.Glob, URL: gs.URL + "/v1/receive", Key: "t*", Recovery: gs.URL + "/v1/recover"},
		{Kind: fsm.Exact, URL: ls.URL + "/v1/receive", Key: "t", Recovery: ls.URL + "/v1/recover"},
		{Kind: fsm.Exact, URL: fs.URL + "/v1/receive", Key: "t", Recovery: fs.URL + "/v1/recover"},
		{Kind: fsm.Exact, URL: refusedURL(t) + "/v1/receive", Key: "t"},
	}
	rem := &recordingRemover{}
	store := openStore(t, DefaultRetryPolicy)
	f := newFanout(t, Config{Concurrency: 3}, newTable(subs...), rem, auth.NonePair(), store)

	if got := f.Deliver(context.Background(), bytesMessage("t", []byte("m"))); got != 2 {
		t.Errorf("Deliver = %d, want 2", got)
	}
	f.Wait()
	if removed := rem.Removed(); len(removed) != 1 || removed[0] != subs[2] {
		t.Errorf("removed %+v, want %+v", removed, subs[2])
	}
	recs := pendingRecords(t, store)
	if len(recs) != 1 || recs[0].URL != subs[3].URL {
		t.Errorf("missed records %+v, want one for %s", recs, subs[3].URL)
	}
	st := f.Stats()
	if st.Delivered.Load() != 2 || st.Failed.Load() != 2 || st.Unsubscribed.Load() != 1 {
		t.Errorf("stats delivered=%d failed=%d unsubscribed=%d, want 2/2/1",
			st.Delivered.Load(), st.Failed.Load(), st.Unsubscribed.Load())
	}
}

func TestDeliverDoesNotFollowRedirects(t *testing.T) {
	target := &confirmer{numSubscribers: 1}
	ts := serve(t, target)
	redirect := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		http.Redirect(w, r, ts.URL+"/v1/receive", http.StatusTemporaryRedirect)
	}))
	store := openStore(t, DefaultRetryPolicy)
	table := newTable(fsm.Subscription{Kind: fsm.Exact, URL: redirect.URL + "/v1/receive", Key: "t", Recovery: ts.URL + "/r"})
	f := newFanout(t, Config{}, table, nil, auth.NonePair(), store)
	if got := f.Deliver(context.Background(), bytesMessage("t", []byte("x"))); got != 0 {
		t.Errorf("Deliver = %d, want 0", got)
	}
	if n := len(target.requests()); n != 0 {
		t.Errorf("redirect target got %d requests, want 0", n)
	}
	if recs := pendingRecords(t, store); len(recs) != 1 {
		t.Errorf("missed records %+v, want one", recs)
	}
}

// checkUnsent checks a Deliver that sent nothing: it counted got, hits
// requests reached the subscriber, and each of its n subscriptions is
// counted failed with a MISSED record pending.
func checkUnsent(t *testing.T, f *Fanout, store *MissedStore, got uint32, hits int32, n int) {
	t.Helper()
	if got != 0 {
		t.Errorf("Deliver = %d, want 0", got)
	}
	if hits != 0 {
		t.Errorf("%d requests reached the subscriber", hits)
	}
	if failed := f.Stats().Failed.Load(); failed != uint64(n) {
		t.Errorf("Stats.Failed = %d, want %d", failed, n)
	}
	if recs := pendingRecords(t, store); len(recs) != n {
		t.Errorf("pending %+v, want %d records", recs, n)
	}
}

func TestDeliverWithCanceledContextFailsEverySubscription(t *testing.T) {
	var hits atomic.Int32
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		replyWith(http.StatusOK, nil)(w, r)
	}))
	table := newTable()
	for i := range 5 {
		table.add(fsm.Subscription{Kind: fsm.Exact, URL: srv.URL + "/s" + strconv.Itoa(i), Key: "t", Recovery: srv.URL + "/r"})
	}
	store := openStore(t, DefaultRetryPolicy)
	f := newFanout(t, Config{Concurrency: 2}, table, nil, auth.NonePair(), store)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	checkUnsent(t, f, store, f.Deliver(ctx, bytesMessage("t", []byte("x"))), hits.Load(), 5)
}

func TestDeliverReusesKeepAliveConnections(t *testing.T) {
	var conns atomic.Int32
	sub := client.NewSubscriber()
	srv := httpServerCountingConns(t, sub, &conns)
	table := newTable(fsm.Subscription{Kind: fsm.Exact, URL: srv + "/v1/receive", Key: "t"})
	f := newFanout(t, Config{}, table, nil, auth.NonePair(), nil)
	for i := range 10 {
		if got := f.Deliver(context.Background(), bytesMessage("t", []byte("message "+strconv.Itoa(i)))); got != 1 {
			t.Fatalf("Deliver %d = %d, want 1", i, got)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 10 sequential deliveries, want 1", n)
	}
}

// httpServerCountingConns starts a server that counts the connections it
// accepts.
func httpServerCountingConns(t *testing.T, h http.Handler, conns *atomic.Int32) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestDeliverHMAC(t *testing.T) {
	toBroadcaster, toSubscriber := newSecret(t), newSecret(t)
	cases := []struct {
		name        string
		subscriber  func() auth.Pair
		wantCount   uint32
		wantRemoved bool
		wantMissed  bool
	}{
		{
			name:       "same secrets: RECEIVE and confirmation verify",
			subscriber: func() auth.Pair { return hmacPair(t, toBroadcaster, toSubscriber) },
			wantCount:  1,
		},
		{
			name:       "subscriber confirms with the wrong secret: not counted, missed",
			subscriber: func() auth.Pair { return hmacPair(t, newSecret(t), toSubscriber) },
			wantMissed: true,
		},
		{
			name: "subscriber confirms without authorization: not counted, missed",
			subscriber: func() auth.Pair {
				p := hmacPair(t, toBroadcaster, toSubscriber)
				p.ToBroadcaster = auth.None()
				return p
			},
			wantMissed: true,
		},
		{
			name: "subscriber confirms with a token: not counted, missed",
			subscriber: func() auth.Pair {
				p := hmacPair(t, toBroadcaster, toSubscriber)
				p.ToBroadcaster = auth.Token("tok")
				return p
			},
			wantMissed: true,
		},
		{
			name:        "subscriber refuses the RECEIVE signature (403 000a): removed",
			subscriber:  func() auth.Pair { return hmacPair(t, toBroadcaster, newSecret(t)) },
			wantRemoved: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sub := &client.Subscriber{Auth: tc.subscriber(), KeepBodies: 1 << 20}
			srv := serve(t, sub)
			s := fsm.Subscription{Kind: fsm.Exact, URL: srv.URL + "/v1/receive", Key: "secret/topic", Recovery: srv.URL + "/v1/recover"}
			rem := &recordingRemover{}
			store := openStore(t, DefaultRetryPolicy)
			f := newFanout(t, Config{}, newTable(s), rem, hmacPair(t, toBroadcaster, toSubscriber), store)

			// Twice: every delivery is signed afresh, so the replay
			// stores on both sides accept the second one too.
			for round := range 2 {
				msg := []byte("signed payload " + strconv.Itoa(round))
				got := f.Deliver(context.Background(), bytesMessage("secret/topic", msg))
				if got != tc.wantCount {
					t.Errorf("round %d: Deliver = %d, want %d", round, got, tc.wantCount)
				}
			}
			f.Wait()
			received := sub.Received()
			if tc.wantRemoved {
				if len(received) != 0 {
					t.Errorf("subscriber accepted %d RECEIVEs signed with another secret", len(received))
				}
			} else {
				if len(received) != 2 {
					t.Fatalf("subscriber accepted %d RECEIVEs, want 2", len(received))
				}
				for i, r := range received {
					if a := r.Header.Get("Authorization"); len(a) < 7 || a[:7] != "X-HMAC " {
						t.Errorf("RECEIVE %d: Authorization %q, want X-HMAC", i, a)
					}
					if want := "signed payload " + strconv.Itoa(i); string(r.Message) != want {
						t.Errorf("RECEIVE %d: message %q, want %q", i, r.Message, want)
					}
				}
			}
			if got := len(rem.Removed()); (got > 0) != tc.wantRemoved {
				t.Errorf("%d removals, want removal=%v", got, tc.wantRemoved)
			}
			if got := len(pendingRecords(t, store)); (got > 0) != tc.wantMissed {
				t.Errorf("%d missed records, want missed=%v", got, tc.wantMissed)
			}
		})
	}
}

func TestDeliverStreamsLargeFileToConcurrentSubscribers(t *testing.T) {
	const size = 20 << 20
	path := filepath.Join(t.TempDir(), "spool")
	w, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha512.New()
	rng := rand.NewChaCha8([32]byte{7})
	if _, err := io.CopyN(io.MultiWriter(w, h), rng, size); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var sum [64]byte
	h.Sum(sum[:0])

	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()

	// Each subscriber holds its reply until all three are streaming, so
	// the three deliveries read the file at the same time.
	var arrived sync.WaitGroup
	arrived.Add(3)
	allIn := make(chan struct{})
	go func() { arrived.Wait(); close(allIn) }()
	subs := make([]*client.Subscriber, 3)
	table := newTable()
	for i := range subs {
		subs[i] = client.NewSubscriber()
		inner := subs[i]
		srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived.Done()
			select {
			case <-allIn:
			case <-r.Context().Done():
				return
			}
			inner.ServeHTTP(w, r)
		}))
		table.add(fsm.Subscription{Kind: fsm.Glob, URL: srv.URL + "/v1/receive", Key: "big/*"})
	}
	f := newFanout(t, Config{Timeout: 10 * time.Second}, table, nil, auth.NonePair(), nil)

	m := Message{Topic: []byte("big/file"), Body: file, Length: size, SHA512: sum}
	if got := f.Deliver(context.Background(), m); got != 3 {
		t.Fatalf("Deliver = %d, want 3", got)
	}
	for i, s := range subs {
		rec := s.Received()
		if len(rec) != 1 {
			t.Fatalf("subscriber %d: %d RECEIVEs, want 1", i, len(rec))
		}
		if rec[0].Length != size || rec[0].SHA512 != sum {
			t.Errorf("subscriber %d: length %d sha512 %x, want %d %x", i, rec[0].Length, rec[0].SHA512[:8], size, sum[:8])
		}
	}
}

// slowGate is a subscriber wrapper that counts the requests in flight and
// holds each one until released.
type slowGate struct {
	inner    http.Handler
	inFlight atomic.Int32
	maxSeen  atomic.Int32
	entered  chan struct{}
	release  chan struct{}
	once     sync.Once
}

// open releases every held request, now and later.
func (g *slowGate) open() { g.once.Do(func() { close(g.release) }) }

func newSlowGate(inner http.Handler, capacity int) *slowGate {
	return &slowGate{inner: inner, entered: make(chan struct{}, capacity), release: make(chan struct{})}
}

func (g *slowGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := g.inFlight.Add(1)
	defer g.inFlight.Add(-1)
	for {
		m := g.maxSeen.Load()
		if n <= m || g.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-r.Context().Done():
		return
	}
	// The response is flushed when the handler returns, after the
	// deferred decrement, so the fan-out cannot start a request early.
	g.inner.ServeHTTP(w, r)
}

func waitEntered(t *testing.T, g *slowGate, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for i := range n {
		select {
		case <-g.entered:
		case <-timeout:
			t.Fatalf("only %d of %d requests arrived", i, n)
		}
	}
}

// TestDeliverBoundsRequestsInFlight: Concurrency bounds the requests of
// one Deliver, MaxInFlight those of all Delivers at once; both bounds are
// reached and never passed.
func TestDeliverBoundsRequestsInFlight(t *testing.T) {
	type bounded struct {
		name     string
		cfg      Config
		topics   []string // one Deliver each, at once
		perTopic int      // subscribers of each topic
		bound    int32    // requests in flight at most
	}
	for _, tc := range []bounded{
		{"Concurrency 2, one notify", Config{Concurrency: 2}, []string{"t"}, 10, 2},
		{"MaxInFlight 3, three notifies", Config{Concurrency: 4, MaxInFlight: 3}, []string{"a", "b", "c"}, 4, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			total := len(tc.topics) * tc.perTopic
			gate := newSlowGate(client.NewSubscriber(), total)
			srv := serve(t, gate)
			t.Cleanup(gate.open) // before srv.Close, should the test stop early
			table := newTable()
			for i := range tc.perTopic {
				for _, topic := range tc.topics {
					table.add(fsm.Subscription{Kind: fsm.Exact, URL: srv.URL + "/v1/receive?t=" + topic + "&n=" + strconv.Itoa(i), Key: topic})
				}
			}
			f := newFanout(t, tc.cfg, table, nil, auth.NonePair(), nil)

			results := make(chan uint32, len(tc.topics))
			for _, topic := range tc.topics {
				go func() { results <- f.Deliver(context.Background(), bytesMessage(topic, []byte("slow"))) }()
			}
			waitEntered(t, gate, int(tc.bound))
			if n := gate.inFlight.Load(); n != tc.bound {
				t.Errorf("%d requests in flight, want %d", n, tc.bound)
			}
			gate.open()
			waitEntered(t, gate, total-int(tc.bound))
			for range tc.topics {
				select {
				case got := <-results:
					if got != uint32(tc.perTopic) {
						t.Errorf("Deliver = %d, want %d", got, tc.perTopic)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("Deliver did not return")
				}
			}
			if m := gate.maxSeen.Load(); m != tc.bound {
				t.Errorf("at most %d requests in flight, want exactly %d", m, tc.bound)
			}
		})
	}
}

func TestDeliverDeadlineGrowsWithMessageSize(t *testing.T) {
	f := New(Config{Timeout: 5 * time.Second}, newTable(), nil, auth.NonePair(), nil, quietLog())
	for _, tc := range []struct {
		length uint64
		want   time.Duration
	}{
		{0, 5 * time.Second},
		{1<<20 - 1, 5 * time.Second},
		{1 << 20, 6 * time.Second},
		{24 << 20, 29 * time.Second},
		{5 << 30, 5*time.Second + 5120*time.Second},
	} {
		if got := f.deadline(tc.length); got != tc.want {
			t.Errorf("deadline(%d) = %v, want %v", tc.length, got, tc.want)
		}
	}
}

func TestNewAppliesConfigDefaults(t *testing.T) {
	f := New(Config{}, newTable(), nil, auth.NonePair(), nil, nil)
	c := f.cfg
	if c.Concurrency != DefaultConcurrency || c.MaxInFlight != DefaultMaxInFlight ||
		c.Timeout != DefaultTimeout || c.MaxReplyBytes != DefaultMaxReplyBytes ||
		c.MaxPerHost != DefaultMaxPerHost || c.ResponseHeaderTimeout != DefaultResponseHeaderTimeout || f.client == nil {
		t.Errorf("defaults not applied: %+v", c)
	}
	if cap(f.sem) != DefaultMaxInFlight {
		t.Errorf("in-flight semaphore of %d, want %d", cap(f.sem), DefaultMaxInFlight)
	}
	tr, ok := f.client.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport %T", f.client.Transport)
	}
	if tr.MaxIdleConnsPerHost != DefaultMaxPerHost || tr.MaxConnsPerHost != DefaultMaxPerHost || tr.MaxIdleConns != 0 ||
		!tr.DisableCompression || tr.Proxy != nil {
		t.Errorf("transport: MaxIdleConnsPerHost=%d MaxConnsPerHost=%d MaxIdleConns=%d DisableCompression=%v proxy set=%v, want %d, %d, 0 (no cap), true, false",
			tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost, tr.MaxIdleConns, tr.DisableCompression, tr.Proxy != nil, DefaultMaxPerHost, DefaultMaxPerHost)
	}
	if tr.ResponseHeaderTimeout != DefaultResponseHeaderTimeout || tr.MaxResponseHeaderBytes != 16<<10 {
		t.Errorf("transport: ResponseHeaderTimeout=%v MaxResponseHeaderBytes=%d", tr.ResponseHeaderTimeout, tr.MaxResponseHeaderBytes)
	}
	if err := f.client.CheckRedirect(nil, nil); !errors.Is(err, http.ErrUseLastResponse) {
		t.Errorf("CheckRedirect = %v, want ErrUseLastResponse", err)
	}
	// The reply-header wait never outlasts the delivery's deadline.
	if h := New(Config{Timeout: time.Second}, newTable(), nil, auth.NonePair(), nil, nil); h.cfg.ResponseHeaderTimeout != time.Second {
		t.Errorf("ResponseHeaderTimeout %v with a 1s Timeout", h.cfg.ResponseHeaderTimeout)
	}

	own := &http.Client{}
	g := New(Config{Concurrency: 3, MaxInFlight: 7, Timeout: time.Second, MaxReplyBytes: 10, Client: own}, newTable(), nil, auth.NonePair(), nil, nil)
	if g.cfg.Concurrency != 3 || g.cfg.MaxInFlight != 7 || g.cfg.Timeout != time.Second || g.cfg.MaxReplyBytes != 10 || g.client != own || g.own != own {
		t.Errorf("explicit config overridden: %+v", g.cfg)
	}
}

func TestDeliverFailsWithoutSendingWhenRequestCannotBeBuilt(t *testing.T) {
	var hits atomic.Int32
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		replyWith(http.StatusOK, nil)(w, r)
	}))
	longTopic := string(bytes.Repeat([]byte("t"), 1<<16)) // u16 length prefix overflows
	for _, tc := range []struct {
		name  string
		sub   fsm.Subscription
		topic string
		trace []byte
	}{
		// A glob row, so that the missed record's key stays short.
		{"topic longer than 65535 bytes", fsm.Subscription{Kind: fsm.Glob, URL: srv.URL, Key: "t*"}, longTopic, nil},
		{"tracing longer than 65535 bytes", fsm.Subscription{Kind: fsm.Exact, URL: srv.URL, Key: "t"}, "t", make([]byte, 1<<16)},
		{"unparseable subscription URL", fsm.Subscription{Kind: fsm.Exact, URL: "http://[::1", Key: "t"}, "t", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits.Store(0)
			tc.sub.Recovery = srv.URL + "/v1/recover"
			store := openStore(t, DefaultRetryPolicy)
			f := newFanout(t, Config{}, newTable(tc.sub), nil, auth.NonePair(), store)
			m := bytesMessage(tc.topic, []byte("x"))
			m.Tracing = tc.trace
			checkUnsent(t, f, store, f.Deliver(context.Background(), m), hits.Load(), 1)
		})
	}
}

// failingRemover always fails, as a Raft proposal can.
type failingRemover struct{ calls atomic.Int32 }

func (r *failingRemover) Remove(context.Context, fsm.Subscription) error {
	r.calls.Add(1)
	return errors.New("not the leader")
}

func TestDeliverSurvivesRemoverAndStoreErrors(t *testing.T) {
	leaving := serve(t, replyWith(http.StatusBadRequest, wire.AppendUnsubscribeImmediate(nil)))
	failing := serve(t, replyWith(http.StatusOK, []byte("no")))
	store := openStore(t, DefaultRetryPolicy)
	if err := store.Close(); err != nil { // Record now fails
		t.Fatal(err)
	}
	rem := &failingRemover{}
	good := &confirmer{numSubscribers: 1}
	table := newTable(
		fsm.Subscription{Kind: fsm.Exact, URL: leaving.URL, Key: "t", Recovery: leaving.URL + "/r"},
		fsm.Subscription{Kind: fsm.Exact, URL: failing.URL, Key: "t", Recovery: failing.URL + "/r"},
		fsm.Subscription{Kind: fsm.Exact, URL: serve(t, good).URL, Key: "t"},
	)
	f := newFanout(t, Config{}, table, rem, auth.NonePair(), store)
	if got := f.Deliver(context.Background(), bytesMessage("t", []byte("x"))); got != 1 {
		t.Errorf("Deliver = %d, want 1", got)
	}
	f.Wait()
	if n := rem.calls.Load(); n != 1 {
		t.Errorf("Remove called %d times, want 1", n)
	}
	st := f.Stats()
	if st.Delivered.Load() != 1 || st.Failed.Load() != 1 || st.Unsubscribed.Load() != 1 {
		t.Errorf("stats delivered=%d failed=%d unsubscribed=%d, want 1/1/1",
			st.Delivered.Load(), st.Failed.Load(), st.Unsubscribed.Load())
	}
}

// eofAtEndReaderAt is a valid io.ReaderAt that, as the io.ReaderAt contract
// allows, returns io.EOF together with the last bytes of its input.
type eofAtEndReaderAt []byte

func (b eofAtEndReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if off+int64(n) == int64(len(b)) {
		return n, io.EOF
	}
	return n, nil
}

// io.ReaderAt allows "n == len(p), err == io.EOF" when a read ends at the
// end of the input; a small message read that way is delivered, not
// failed.
func TestDeliverSmallBodyFromReaderAtReturningEOFWithLastBytes(t *testing.T) {
	for _, size := range []int{1, 100, inMemoryBody, inMemoryBody + 1} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			sub := client.NewSubscriber()
			srv := serve(t, sub)
			f := newFanout(t, Config{}, newTable(fsm.Subscription{Kind: fsm.Exact, URL: srv.URL + "/v1/receive", Key: "t"}),
				nil, auth.NonePair(), nil)
			msg := bytes.Repeat([]byte{'z'}, size)
			m := Message{Topic: []byte("t"), Body: eofAtEndReaderAt(msg), Length: uint64(size), SHA512: sha512.Sum512(msg)}
			if got := f.Deliver(context.Background(), m); got != 1 {
				t.Errorf("Deliver of %d bytes = %d, want 1", size, got)
			}
		})
	}
}

// catchUp is a read barrier that brings the table up to date when it runs
// (as a replica catching up with the leader does), or fails.
type catchUp struct {
	table *memTable
	late  []fsm.Subscription
	err   error
	calls int
}

func (c *catchUp) ReadBarrier(context.Context) error {
	c.calls++
	if c.err != nil {
		return c.err
	}
	c.table.add(c.late...)
	c.late = nil
	return nil
}

// Deliver runs the barrier before it matches: a subscription the barrier
// brings in is delivered to. A failed barrier does not stop the notify:
// what the replica holds is delivered.
func TestDeliverRunsTheReadBarrierFirst(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		wantOld bool
		wantNew bool
	}{
		{"barrier succeeds", nil, true, true},
		{"barrier fails", errors.New("no leader"), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, late := &confirmer{numSubscribers: 1}, &confirmer{numSubscribers: 1}
			so, sl := serve(t, old), serve(t, late)
			table := newTable(fsm.Subscription{Kind: fsm.Exact, URL: so.URL + "/v1/receive", Key: "t"})
			b := &catchUp{table: table, err: tc.err, late: []fsm.Subscription{{Kind: fsm.Exact, URL: sl.URL + "/v1/receive", Key: "t"}}}
			f := newFanout(t, Config{Barrier: b}, table, &recordingRemover{}, auth.NonePair(), nil)
			want := uint32(0)
			for _, w := range []bool{tc.wantOld, tc.wantNew} {
				if w {
					want++
				}
			}
			if got := f.Deliver(context.Background(), bytesMessage("t", []byte("m"))); got != want || b.calls != 1 {
				t.Fatalf("Deliver = %d with %d barrier calls, want %d with 1", got, b.calls, want)
			}
			if got := len(late.requests()) == 1; got != tc.wantNew {
				t.Fatalf("subscription brought in by the barrier delivered: %t, want %t", got, tc.wantNew)
			}
		})
	}
}

// localRows answers for the URLs it holds as a process's own websocket
// rows would, and leaves the rest to HTTP.
type localRows map[string]LocalResult

func (l localRows) DeliverLocal(_ Message, s fsm.Subscription) (LocalResult, bool) {
	r, ok := l[s.URL]
	return r, ok
}

// The deliveries a process makes to itself count as the replies they
// stand for: confirmed subscribers, a removal, a failure with its MISSED
// record; any other URL still goes over HTTP.
func TestDeliverToOwnURLsInProcess(t *testing.T) {
	good := client.NewSubscriber()
	gs := serve(t, good)
	own := "http://127.0.0.1:1/v1/receive_for_websockets?node=n1&inc=1"
	subs := []fsm.Subscription{
		{Kind: fsm.Exact, URL: own, Key: "t", Recovery: own + "&missed"},
		{Kind: fsm.Glob, URL: own + "&glob=a", Key: "t*", Recovery: own + "&glob=a&missed"},
		{Kind: fsm.Glob, URL: own + "&glob=b", Key: "*", Recovery: own + "&glob=b&missed"},
		{Kind: fsm.Exact, URL: gs.URL + "/v1/receive", Key: "t", Recovery: gs.URL + "/v1/recover"},
	}
	local := localRows{
		subs[0].URL: {Subscribers: 3},
		subs[1].URL: {Unsubscribe: true},
		subs[2].URL: {Err: errors.New("spool full")},
	}
	rem := &recordingRemover{}
	store := openStore(t, DefaultRetryPolicy)
	f := newFanout(t, Config{}, newTable(subs...), rem, auth.NonePair(), store)
	f.SetLocal(local)

	if got := f.Deliver(context.Background(), bytesMessage("t", []byte("m"))); got != 4 {
		t.Errorf("Deliver = %d, want 4 (3 in process, 1 over HTTP)", got)
	}
	f.Wait()
	if removed := rem.Removed(); len(removed) != 1 || removed[0] != subs[1] {
		t.Errorf("removed %+v, want %+v", removed, subs[1])
	}
	if recs := pendingRecords(t, store); len(recs) != 1 || recs[0].URL != subs[2].URL {
		t.Errorf("missed records %+v, want one for %s", recs, subs[2].URL)
	}
	if got := len(good.Received()); got != 1 {
		t.Errorf("HTTP subscriber received %d messages, want 1", got)
	}
	st := f.Stats()
	if st.Delivered.Load() != 2 || st.Failed.Load() != 1 || st.Unsubscribed.Load() != 1 {
		t.Errorf("stats delivered=%d failed=%d unsubscribed=%d, want 2/1/1",
			st.Delivered.Load(), st.Failed.Load(), st.Unsubscribed.Load())
	}
}

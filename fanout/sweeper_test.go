package fanout

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// tinyPolicy schedules notices tens of milliseconds apart, so tests can
// wait for real due times.
var tinyPolicy = RetryPolicy{
	Factor: 10 * time.Millisecond, Base: 2, MaxExponent: 10,
	Constant: 10 * time.Millisecond, Jitter: 10 * time.Millisecond, MaxRetries: 20,
}

// failingSubscriber refuses every RECEIVE (500) but confirms MISSED: one
// server for a subscription and its recovery URL.
func failingSubscriber(pair auth.Pair) *client.Subscriber {
	s := &client.Subscriber{Auth: pair, KeepBodies: 1 << 20}
	s.Decide = func(client.Received) client.Reply { return client.Fail }
	return s
}

// recordedFanout is a fan-out over table with a clocked MISSED store that
// holds a failed delivery to s on topic: where a sweep starts from.
func recordedFanout(t *testing.T, cfg Config, table Table, rem Remover, s fsm.Subscription, topic string) (*Fanout, *MissedStore, *fakeClock) {
	t.Helper()
	store, clk := openClockedStore(t, fixedPolicy)
	f := newFanout(t, cfg, table, rem, auth.NonePair(), store)
	if err := store.Record(s, []byte(topic)); err != nil {
		t.Fatal(err)
	}
	return f, store, clk
}

// countingHandler counts the requests that reach h.
type countingHandler struct {
	h    http.Handler
	hits atomic.Int32
}

func (c *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.hits.Add(1)
	c.h.ServeHTTP(w, r)
}

func TestSweepPostsMissedAfterFailedDelivery(t *testing.T) {
	toBroadcaster, toSubscriber := newSecret(t), newSecret(t)
	for _, tc := range []struct {
		name      string
		kind      fsm.Kind
		key       string
		topics    []string
		wantTopic string
	}{
		{"exact", fsm.Exact, "orders", []string{"orders"}, "orders"},
		{"glob keeps only the latest missed topic", fsm.Glob, "orders/*", []string{"orders/1", "orders/2", "orders/3"}, "orders/3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := failingSubscriber(hmacPair(t, toBroadcaster, toSubscriber))
			var verified atomic.Int32 // Decide runs only for RECEIVEs that verified
			sub.Decide = func(client.Received) client.Reply { verified.Add(1); return client.Fail }
			srv := serve(t, sub)
			s := fsm.Subscription{Kind: tc.kind, URL: srv.URL + "/v1/receive", Key: tc.key, Recovery: srv.URL + "/v1/recover"}
			table := newTable(s)
			rem := &recordingRemover{}
			store := openStore(t, tinyPolicy)
			f := newFanout(t, Config{}, table, rem, hmacPair(t, toBroadcaster, toSubscriber), store)

			for _, topic := range tc.topics {
				if got := f.Deliver(context.Background(), bytesMessage(topic, []byte("lost"))); got != 0 {
					t.Fatalf("Deliver(%s) = %d, want 0", topic, got)
				}
			}
			if recs := pendingRecords(t, store); len(recs) != 1 {
				t.Fatalf("pending %+v, want one record", recs)
			}
			if n := int(verified.Load()); n != len(tc.topics) {
				t.Fatalf("subscriber verified %d RECEIVEs, want %d", n, len(tc.topics))
			}

			waitUntilDue(t, store)
			f.NewSweeper(time.Hour).Sweep(context.Background())

			// client.Subscriber accepts a MISSED only with a valid
			// HMAC authorization, and the sweep keeps the record
			// unless the CONFIRM_MISSED verified.
			missed := sub.Missed()
			if len(missed) != 1 || string(missed[0]) != tc.wantTopic {
				t.Errorf("MISSED topics %q, want [%q]", missed, tc.wantTopic)
			}
			if recs := pendingRecords(t, store); len(recs) != 0 {
				t.Errorf("pending %+v after a confirmed MISSED, want none", recs)
			}
			if rec, ok := table.Lookup(s.Kind, s.URL, s.Key); !ok || rec != s.Recovery {
				t.Errorf("subscription changed: Lookup = %q, %v", rec, ok)
			}
			f.Wait()
			if removed := rem.Removed(); len(removed) != 0 {
				t.Errorf("removed %+v after a MISSED, want nothing", removed)
			}

			// Nothing left to send.
			f.NewSweeper(time.Hour).Sweep(context.Background())
			if n := len(sub.Missed()); n != 1 {
				t.Errorf("%d MISSED after a second sweep, want 1", n)
			}
		})
	}
}

func TestSweepSendsMissedRequestExactly(t *testing.T) {
	type got struct {
		method, uri, contentType string
		hasAuth                  bool
		body                     []byte
	}
	reqs := make(chan got, 1)
	reply, err := wire.AppendConfirmMissed(nil, wire.ConfirmMissed{})
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, hasAuth := r.Header["Authorization"]
		reqs <- got{r.Method, r.RequestURI, r.Header.Get("Content-Type"), hasAuth, body}
		_, _ = w.Write(reply)
	}))
	s := fsm.Subscription{Kind: fsm.Glob, URL: "http://127.0.0.1:1/v1/receive", Key: "a*", Recovery: srv.URL + "/missed?x=1"}
	f, store, clk := recordedFanout(t, Config{}, newTable(s), nil, s, "abc")
	clk.advance(time.Hour)
	f.NewSweeper(time.Hour).Sweep(context.Background())

	select {
	case r := <-reqs:
		want, err := wire.AppendMissed(nil, wire.Missed{Topic: []byte("abc")})
		if err != nil {
			t.Fatal(err)
		}
		if r.method != http.MethodPost || r.uri != "/missed?x=1" || r.contentType != "application/octet-stream" || r.hasAuth {
			t.Errorf("request %s %s Content-Type=%q auth=%v", r.method, r.uri, r.contentType, r.hasAuth)
		}
		if !bytes.Equal(r.body, want) {
			t.Errorf("body %x, want %x", r.body, want)
		}
	default:
		t.Fatal("no MISSED request")
	}
	if recs := pendingRecords(t, store); len(recs) != 0 {
		t.Errorf("pending %+v, want none", recs)
	}
}

func TestSweepKeepsRecordWhenRecoveryAnswerIsUnusable(t *testing.T) {
	toBroadcaster, toSubscriber := newSecret(t), newSecret(t)
	confirmReceive, err := wire.AppendConfirmReceive(nil, wire.ConfirmReceive{Identifier: []byte("x"), NumSubscribers: 1})
	if err != nil {
		t.Fatal(err)
	}
	unsignedConfirm, err := wire.AppendConfirmMissed(nil, wire.ConfirmMissed{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		handler func() http.Handler // nil: nothing listens
	}{
		{"garbage body", func() http.Handler { return replyWith(http.StatusOK, []byte("thanks!")) }},
		{"empty 200", func() http.Handler { return replyWith(http.StatusOK, nil) }},
		{"empty 500", func() http.Handler { return replyWith(http.StatusInternalServerError, nil) }},
		{"CONFIRM_RECEIVE instead of CONFIRM_MISSED", func() http.Handler { return replyWith(http.StatusOK, confirmReceive) }},
		{"UNSUBSCRIBE_IMMEDIATE", func() http.Handler { return replyWith(http.StatusOK, wire.AppendUnsubscribeImmediate(nil)) }},
		{"truncated CONFIRM_MISSED", func() http.Handler { return replyWith(http.StatusOK, unsignedConfirm[:3]) }},
		{"CONFIRM_MISSED without authorization", func() http.Handler { return replyWith(http.StatusOK, unsignedConfirm) }},
		{"CONFIRM_MISSED signed with the wrong secret", func() http.Handler {
			return &client.Subscriber{Auth: hmacPair(t, newSecret(t), toSubscriber)}
		}},
		{"subscriber refuses the MISSED signature (403)", func() http.Handler {
			return &client.Subscriber{Auth: hmacPair(t, toBroadcaster, newSecret(t))}
		}},
		{"connection refused", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			recovery := refusedURL(t) + "/v1/recover"
			var counter *countingHandler
			if tc.handler != nil {
				counter = &countingHandler{h: tc.handler()}
				recovery = serve(t, counter).URL + "/v1/recover"
			}
			s := fsm.Subscription{Kind: fsm.Exact, URL: "http://127.0.0.1:1/v1/receive", Key: "t", Recovery: recovery}
			table := newTable(s)
			store := openStore(t, tinyPolicy)
			f := newFanout(t, Config{}, table, nil, hmacPair(t, toBroadcaster, toSubscriber), store)
			if err := store.Record(s, []byte("t")); err != nil {
				t.Fatal(err)
			}
			before := pendingRecords(t, store)[0]
			waitUntilDue(t, store)
			sweptAt := time.Now()
			f.NewSweeper(time.Hour).Sweep(context.Background())

			if counter != nil && counter.hits.Load() != 1 {
				t.Errorf("%d MISSED requests, want 1", counter.hits.Load())
			}
			recs := pendingRecords(t, store)
			if len(recs) != 1 {
				t.Fatalf("pending %+v, want the record kept", recs)
			}
			r := recs[0]
			if r.Attempts != before.Attempts+1 {
				t.Errorf("attempts %d, want %d", r.Attempts, before.Attempts+1)
			}
			// delay(1) = 20 ms + 10 ms + U(0, 10 ms) after the attempt.
			if earliest := sweptAt.Add(30 * time.Millisecond).UnixMilli(); r.DueMs < earliest-1 {
				t.Errorf("rescheduled at %d, want at least %d", r.DueMs, earliest)
			}
			if !bytes.Equal(r.Topic, before.Topic) || r.Recovery != before.Recovery {
				t.Errorf("record changed: %+v, was %+v", r, before)
			}
			if _, ok := table.Lookup(s.Kind, s.URL, s.Key); !ok {
				t.Error("subscription gone")
			}
		})
	}
}

func TestSweepDropsRecordWithoutPostingWhenSubscriptionChanged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(table *memTable, s fsm.Subscription)
	}{
		{"subscription removed", func(table *memTable, s fsm.Subscription) { table.remove(s) }},
		{"recovery URL changed", func(table *memTable, s fsm.Subscription) {
			table.remove(s)
			s.Recovery += "-new"
			table.add(s)
		}},
		{"recovery URL dropped", func(table *memTable, s fsm.Subscription) {
			table.remove(s)
			s.Recovery = ""
			table.add(s)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			counter := &countingHandler{h: client.NewSubscriber()}
			srv := serve(t, counter)
			s := fsm.Subscription{Kind: fsm.Glob, URL: srv.URL + "/v1/receive", Key: "g*", Recovery: srv.URL + "/v1/recover"}
			table := newTable(s)
			f, store, clk := recordedFanout(t, Config{}, table, nil, s, "gone")
			tc.change(table, s)
			clk.advance(time.Hour)
			f.NewSweeper(time.Hour).Sweep(context.Background())
			if n := counter.hits.Load(); n != 0 {
				t.Errorf("%d requests, want none", n)
			}
			if recs := pendingRecords(t, store); len(recs) != 0 {
				t.Errorf("pending %+v, want none", recs)
			}
		})
	}
}

func TestSweepWaitsForDueTime(t *testing.T) {
	sub := client.NewSubscriber()
	srv := serve(t, sub)
	s := fsm.Subscription{Kind: fsm.Exact, URL: srv.URL + "/v1/receive", Key: "t", Recovery: srv.URL + "/v1/recover"}
	f, _, clk := recordedFanout(t, Config{}, newTable(s), nil, s, "t")
	sw := f.NewSweeper(time.Hour)
	clk.advance(2*time.Second - time.Millisecond)
	sw.Sweep(context.Background())
	if n := len(sub.Missed()); n != 0 {
		t.Fatalf("%d MISSED before the due time", n)
	}
	clk.advance(time.Millisecond)
	sw.Sweep(context.Background())
	if n := len(sub.Missed()); n != 1 {
		t.Fatalf("%d MISSED at the due time, want 1", n)
	}
}

func TestSweepGivesUpAfterMaxRetriesAndKeepsSubscription(t *testing.T) {
	counter := &countingHandler{h: replyWith(http.StatusOK, []byte("nope"))}
	srv := serve(t, counter)
	s := fsm.Subscription{Kind: fsm.Exact, URL: srv.URL + "/v1/receive", Key: "t", Recovery: srv.URL + "/v1/recover"}
	table := newTable(s)
	rem := &recordingRemover{}
	f, store, clk := recordedFanout(t, Config{}, table, rem, s, "t")
	sw := f.NewSweeper(time.Hour)
	for i := 0; i < 10 && len(pendingRecords(t, store)) > 0; i++ {
		clk.advance(time.Hour)
		sw.Sweep(context.Background())
	}
	if n := counter.hits.Load(); n != int32(fixedPolicy.MaxRetries) {
		t.Errorf("%d MISSED attempts, want MaxRetries = %d", n, fixedPolicy.MaxRetries)
	}
	if recs := pendingRecords(t, store); len(recs) != 0 {
		t.Errorf("pending %+v after exhaustion", recs)
	}
	if _, ok := table.Lookup(s.Kind, s.URL, s.Key); !ok {
		t.Error("subscription removed after exhaustion")
	}
	f.Wait()
	if removed := rem.Removed(); len(removed) != 0 {
		t.Errorf("removed %+v", removed)
	}
}

func TestSweepDrainsMoreThanOneBatch(t *testing.T) {
	sub := client.NewSubscriber()
	srv := serve(t, sub)
	table := newTable()
	store, clk := openClockedStore(t, fixedPolicy)
	const n = sweepBatch + 44
	// Concurrent failures, as a fan-out to a dead host records them: Batch
	// coalesces their transactions.
	var wg sync.WaitGroup
	for i := range n {
		s := fsm.Subscription{Kind: fsm.Exact, URL: srv.URL + "/v1/receive?n=" + strconv.Itoa(i), Key: "t", Recovery: srv.URL + "/v1/recover"}
		table.add(s)
		wg.Go(func() {
			if err := store.Record(s, []byte("t"+strconv.Itoa(i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := len(pendingRecords(t, store)); got != n {
		t.Fatalf("%d records, want %d", got, n)
	}
	f := newFanout(t, Config{}, table, nil, auth.NonePair(), store)
	clk.advance(time.Hour)
	f.NewSweeper(time.Hour).Sweep(context.Background())
	if got := len(sub.Missed()); got != n {
		t.Errorf("%d MISSED in one sweep, want %d", got, n)
	}
	if recs := pendingRecords(t, store); len(recs) != 0 {
		t.Errorf("%d records left", len(recs))
	}
}

func TestSweepKeepsNewerFailureRecordedDuringAttempt(t *testing.T) {
	inner := client.NewSubscriber()
	store := openStore(t, tinyPolicy)
	var s fsm.Subscription
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A delivery on another topic fails while the notice is in flight.
		if err := store.Record(s, []byte("g/new")); err != nil {
			t.Error(err)
		}
		inner.ServeHTTP(w, r)
	}))
	base := "http://" + srv.Listener.Addr().String()
	s = fsm.Subscription{Kind: fsm.Glob, URL: base + "/v1/receive", Key: "g/*", Recovery: base + "/v1/recover"}
	srv.Start()
	t.Cleanup(srv.Close)
	f := newFanout(t, Config{}, newTable(s), nil, auth.NonePair(), store)
	if err := store.Record(s, []byte("g/old")); err != nil {
		t.Fatal(err)
	}
	waitUntilDue(t, store)
	f.NewSweeper(time.Hour).Sweep(context.Background())

	if missed := inner.Missed(); len(missed) != 1 || string(missed[0]) != "g/old" {
		t.Errorf("MISSED %q, want [g/old]", missed)
	}
	recs := pendingRecords(t, store)
	if len(recs) != 1 || string(recs[0].Topic) != "g/new" || recs[0].Attempts != 0 {
		t.Errorf("pending %+v, want the newer failure (g/new, attempts 0)", recs)
	}
}

func TestSweepStopsWhenContextIsCanceled(t *testing.T) {
	counter := &countingHandler{h: client.NewSubscriber()}
	srv := serve(t, counter)
	s := fsm.Subscription{Kind: fsm.Exact, URL: srv.URL + "/v1/receive", Key: "t", Recovery: srv.URL + "/v1/recover"}
	f, store, clk := recordedFanout(t, Config{}, newTable(s), nil, s, "t")
	clk.advance(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.NewSweeper(time.Hour).Sweep(ctx)
	if n := counter.hits.Load(); n != 0 {
		t.Errorf("%d MISSED sent with a canceled context", n)
	}
	if recs := pendingRecords(t, store); len(recs) != 1 || recs[0].Attempts != 0 {
		t.Errorf("pending %+v, want the record untouched", recs)
	}
}

func TestSweeperRunSendsDueNoticesUntilCanceled(t *testing.T) {
	toBroadcaster, toSubscriber := newSecret(t), newSecret(t)
	sub := failingSubscriber(hmacPair(t, toBroadcaster, toSubscriber))
	srv := serve(t, sub)
	s := fsm.Subscription{Kind: fsm.Exact, URL: srv.URL + "/v1/receive", Key: "t", Recovery: srv.URL + "/v1/recover"}
	store := openStore(t, tinyPolicy)
	f := newFanout(t, Config{}, newTable(s), nil, hmacPair(t, toBroadcaster, toSubscriber), store)

	changed := sub.Changed() // before the failing delivery, which is no event
	if got := f.Deliver(context.Background(), bytesMessage("t", []byte("x"))); got != 0 {
		t.Fatalf("Deliver = %d, want 0", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.NewSweeper(5 * time.Millisecond).Run(ctx)
	}()
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no MISSED within 10 s")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// Cancelling may have cut the confirmation short, in which case the
	// notice is rightly pending again; at least one MISSED went out.
	if missed := sub.Missed(); len(missed) != 1 || string(missed[0]) != "t" {
		t.Errorf("MISSED %q, want [t]", missed)
	}
}

func TestSweepTimesOutOnSilentRecoveryEndpoint(t *testing.T) {
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	s := fsm.Subscription{Kind: fsm.Exact, URL: "http://127.0.0.1:1/v1/receive", Key: "t", Recovery: srv.URL + "/v1/recover"}
	f, store, clk := recordedFanout(t, Config{Timeout: 200 * time.Millisecond}, newTable(s), nil, s, "t")
	clk.advance(time.Hour)
	start := time.Now()
	f.NewSweeper(time.Hour).Sweep(context.Background())
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Sweep took %v with a 200ms timeout", d)
	}
	if recs := pendingRecords(t, store); len(recs) != 1 || recs[0].Attempts != 1 {
		t.Errorf("pending %+v, want the record with attempts 1", recs)
	}
}

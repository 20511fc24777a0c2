package fanout

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/fsm"
	"github.com/lonelypsd/lonelypsd/fsm/globmatch"
)

// memTable is a Table over a slice. Like fsm.FSM.Match it lists exact rows
// first, then glob rows, once per matching subscription.
type memTable struct {
	mu   sync.Mutex
	subs []fsm.Subscription
}

func newTable(subs ...fsm.Subscription) *memTable { return &memTable{subs: subs} }

func (t *memTable) add(subs ...fsm.Subscription) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.subs = append(t.subs, subs...)
}

func (t *memTable) remove(s fsm.Subscription) {
	t.mu.Lock()
	defer t.mu.Unlock()
	kept := t.subs[:0]
	for _, x := range t.subs {
		if x.Kind != s.Kind || x.URL != s.URL || x.Key != s.Key {
			kept = append(kept, x)
		}
	}
	t.subs = kept
}

func (t *memTable) Match(topic []byte) []fsm.Subscription {
	t.mu.Lock()
	defer t.mu.Unlock()
	var exact, globs []fsm.Subscription
	for _, s := range t.subs {
		switch s.Kind {
		case fsm.Exact:
			if s.Key == string(topic) {
				exact = append(exact, s)
			}
		case fsm.Glob:
			if globmatch.MustCompile(s.Key).Match(topic) {
				globs = append(globs, s)
			}
		}
	}
	return append(exact, globs...)
}

func (t *memTable) Lookup(kind fsm.Kind, url, key string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.subs {
		if s.Kind == kind && s.URL == url && s.Key == key {
			return s.Recovery, true
		}
	}
	return "", false
}

// recordingRemover records the subscriptions it was asked to remove.
type recordingRemover struct {
	mu      sync.Mutex
	removed []fsm.Subscription
}

func (r *recordingRemover) Remove(_ context.Context, s fsm.Subscription) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed = append(r.removed, s)
	return nil
}

func (r *recordingRemover) Removed() []fsm.Subscription {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]fsm.Subscription(nil), r.removed...)
}

// fakeClock is a settable clock for MissedStore.now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.UnixMilli(1_700_000_000_000)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newFanout builds a Fanout whose idle connections are closed before the
// test's servers shut down (cleanups run last-registered first, so build
// the fan-out after starting its servers).
func newFanout(t testing.TB, cfg Config, table Table, rem Remover, pair auth.Pair, missed *MissedStore) *Fanout {
	t.Helper()
	f := New(cfg, table, rem, pair, missed, quietLog())
	t.Cleanup(func() {
		f.Wait()
		f.CloseIdleConnections()
	})
	return f
}

func openStore(t testing.TB, policy RetryPolicy) *MissedStore {
	t.Helper()
	s, err := OpenMissedStore(filepath.Join(t.TempDir(), "missed.db"), policy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func pendingRecords(t testing.TB, s *MissedStore) []MissedRecord {
	t.Helper()
	recs, err := s.Pending()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// refusedURL is the address of a server that has been closed: connecting
// to it is refused.
func refusedURL(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	return url
}

func bytesMessage(topic string, body []byte) Message {
	return Message{
		Topic:  []byte(topic),
		Body:   bytes.NewReader(body),
		Length: uint64(len(body)),
		SHA512: sha512.Sum512(body),
	}
}

func newSecret(t testing.TB) []byte {
	t.Helper()
	b := make([]byte, 64)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// hmacPair builds both directions with HMAC and one replay store per pair,
// as a broadcaster or a subscriber holds them.
func hmacPair(t testing.TB, toBroadcaster, toSubscriber []byte) auth.Pair {
	t.Helper()
	store := auth.NewMemoryReplayStore(time.Now)
	tb, err := auth.HMAC(toBroadcaster, store)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := auth.HMAC(toSubscriber, store)
	if err != nil {
		t.Fatal(err)
	}
	return auth.Pair{ToBroadcaster: tb, ToSubscriber: ts}
}

// capturedRequest is one request as a raw handler saw it.
type capturedRequest struct {
	Method        string
	RequestURI    string
	Header        http.Header
	ContentLength int64
	Body          []byte
}

// confirmer is a subscriber written directly against the wire format, with
// auth none: it keeps every request as received and confirms with the
// given status and num_subscribers.
type confirmer struct {
	status         int
	numSubscribers uint32

	mu   sync.Mutex
	reqs []capturedRequest
}

func (c *confirmer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.reqs = append(c.reqs, capturedRequest{
		Method: r.Method, RequestURI: r.RequestURI, Header: r.Header.Clone(),
		ContentLength: r.ContentLength, Body: body,
	})
	c.mu.Unlock()
	head, err := wire.ReadReceiveHeader(bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	reply, err := wire.AppendConfirmReceive(nil, wire.ConfirmReceive{Identifier: head.Identifier, NumSubscribers: c.numSubscribers})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	status := c.status
	if status == 0 {
		status = http.StatusOK
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(status)
	_, _ = w.Write(reply)
}

func (c *confirmer) requests() []capturedRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]capturedRequest(nil), c.reqs...)
}

// replyWith reads the whole request and answers status with body.
func replyWith(status int, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}
}

// waitUntilDue blocks until the wall clock has passed the due time of
// every pending record (Due compares whole milliseconds). It waits on a
// timer for a known instant; there is no event to wait for instead.
func waitUntilDue(t testing.TB, s *MissedStore) {
	t.Helper()
	var latest int64
	for _, r := range pendingRecords(t, s) {
		latest = max(latest, r.DueMs)
	}
	if d := time.Until(time.UnixMilli(latest + 1)); d > 0 {
		if d > 5*time.Second {
			t.Fatalf("record due in %v: policy is not tiny", d)
		}
		<-time.After(d)
	}
}

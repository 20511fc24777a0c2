// Package health keeps the delivery health of subscriber URLs: when a
// node last reached each one, when it last failed and how many attempts
// in a row have failed. Each node keeps its own, in memory, for the
// deliveries it makes; Merge combines the records of several nodes into
// the cluster's view, which listing and pruning use.
package health

import (
	"encoding/json"
	"sort"
	"sync"
	"time"
)

// Record is one URL's delivery health.
type Record struct {
	LastSuccess time.Time `json:"last_success"`
	LastFailure time.Time `json:"last_failure"`
	// ConsecutiveFailures counts the failed attempts since the last
	// success; FailingSince is when the first of them happened.
	ConsecutiveFailures int       `json:"consecutive_failures"`
	FailingSince        time.Time `json:"failing_since"`
	LastError           string    `json:"last_error"`
}

// Failing reports whether the latest attempt failed.
func (r Record) Failing() bool { return r.ConsecutiveFailures > 0 }

// DeadSince reports whether every attempt since t failed, with at least
// one failure before it: the URL has been unreachable for all of now-t.
func (r Record) DeadSince(t time.Time) bool {
	return r.Failing() && !r.FailingSince.After(t) && r.LastSuccess.Before(r.FailingSince)
}

// Merge combines records of one URL kept by different nodes. A node's
// failures count only when they came after the latest success any node
// saw: a streak that began before it counts as one failure starting at
// the node's last failure (the first failure after the success is not
// known, and the later time never overstates how long the URL has been
// down).
func Merge(rs ...Record) Record {
	var out Record
	for _, r := range rs {
		if r.LastSuccess.After(out.LastSuccess) {
			out.LastSuccess = r.LastSuccess
		}
		if r.LastFailure.After(out.LastFailure) {
			out.LastFailure, out.LastError = r.LastFailure, r.LastError
		}
	}
	for _, r := range rs {
		if !r.Failing() || !r.LastFailure.After(out.LastSuccess) {
			continue
		}
		n, since := r.ConsecutiveFailures, r.FailingSince
		if !since.After(out.LastSuccess) {
			n, since = 1, r.LastFailure
		}
		out.ConsecutiveFailures += n
		if out.FailingSince.IsZero() || since.Before(out.FailingSince) {
			out.FailingSince = since
		}
	}
	return out
}

// maxErrorLen bounds the error text kept per URL: a subscriber's reply
// can end up in it.
const maxErrorLen = 256

// Tracker records the outcome of every delivery. Its methods are safe for
// concurrent use; a nil Tracker records nothing and logs every failure.
type Tracker struct {
	mu       sync.RWMutex
	urls     map[string]*entry
	max      int
	logEvery time.Duration
	now      func() time.Time
}

type entry struct {
	Record
	lastLog    time.Time
	suppressed int
}

// DefaultMaxURLs bounds the URLs a Tracker holds (a few hundred bytes
// each); past it, URLs that are healthy are forgotten first.
const DefaultMaxURLs = 1 << 20

// NewTracker returns a Tracker of at most maxURLs URLs (<= 0: the
// default) that lets a URL's failures be logged once per logEvery.
func NewTracker(maxURLs int, logEvery time.Duration) *Tracker {
	if maxURLs <= 0 {
		maxURLs = DefaultMaxURLs
	}
	return &Tracker{urls: map[string]*entry{}, max: maxURLs, logEvery: logEvery, now: time.Now}
}

// get returns url's entry, making room for it. Callers hold mu.
func (t *Tracker) get(url string) *entry {
	if e, ok := t.urls[url]; ok {
		return e
	}
	if len(t.urls) >= t.max {
		t.evict()
	}
	e := &entry{}
	t.urls[url] = e
	return e
}

// evict forgets one URL, a healthy one if the first few looked at are.
func (t *Tracker) evict() {
	var victim string
	looked := 0
	for u, e := range t.urls {
		victim = u
		if !e.Failing() || looked > 64 {
			break
		}
		looked++
	}
	delete(t.urls, victim)
}

// successGrain: a healthy URL's last success is rewritten at most this
// often. Success runs on every delivery; most find their URL healthy and
// recently reached, and pass under the shared lock without writing.
const successGrain = time.Second

// Success records a delivery that reached url.
func (t *Tracker) Success(url string) {
	if t == nil {
		return
	}
	now := t.now()
	t.mu.RLock()
	e, ok := t.urls[url]
	fresh := ok && !e.Failing() && now.Sub(e.LastSuccess) < successGrain
	t.mu.RUnlock()
	if fresh {
		return
	}
	t.mu.Lock()
	e = t.get(url)
	e.LastSuccess, e.ConsecutiveFailures, e.FailingSince = now, 0, time.Time{}
	e.suppressed = 0
	t.mu.Unlock()
}

// Failure records a failed delivery to url. It reports whether this
// failure should be logged, and how many failures of url went unlogged
// since the last one that was: a URL's first failure in a row is always
// logged, later ones once per logEvery.
func (t *Tracker) Failure(url string, err error) (logIt bool, suppressed int) {
	if t == nil {
		return true, 0
	}
	msg := ""
	if err != nil {
		msg = err.Error()
		if len(msg) > maxErrorLen {
			msg = msg[:maxErrorLen]
		}
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.get(url)
	if !e.Failing() {
		e.FailingSince = now
	}
	e.ConsecutiveFailures++
	e.LastFailure, e.LastError = now, msg
	if e.ConsecutiveFailures == 1 || now.Sub(e.lastLog) >= t.logEvery {
		e.lastLog, suppressed, e.suppressed = now, e.suppressed, 0
		return true, suppressed
	}
	e.suppressed++
	return false, 0
}

// Get returns the records of urls this node knows, or of every URL when
// urls is nil.
func (t *Tracker) Get(urls []string) map[string]Record {
	out := map[string]Record{}
	if t == nil {
		return out
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if urls == nil {
		for u, e := range t.urls {
			out[u] = e.Record
		}
		return out
	}
	for _, u := range urls {
		if e, ok := t.urls[u]; ok {
			out[u] = e.Record
		}
	}
	return out
}

// DeadSince lists, sorted, the URLs this node has seen fail on every
// attempt since before cutoff.
func (t *Tracker) DeadSince(cutoff time.Time) []string {
	if t == nil {
		return nil
	}
	t.mu.RLock()
	var out []string
	for u, e := range t.urls {
		if e.DeadSince(cutoff) {
			out = append(out, u)
		}
	}
	t.mu.RUnlock()
	sort.Strings(out)
	return out
}

// Forget drops what is known of url (its subscriptions are gone).
func (t *Tracker) Forget(url string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	delete(t.urls, url)
	t.mu.Unlock()
}

// Keep forgets every URL for which keep returns false. keep runs without
// the Tracker's lock held.
func (t *Tracker) Keep(keep func(url string) bool) {
	if t == nil {
		return
	}
	t.mu.Lock()
	urls := make([]string, 0, len(t.urls))
	for u := range t.urls {
		urls = append(urls, u)
	}
	t.mu.Unlock()
	for _, u := range urls {
		if !keep(u) {
			t.Forget(u)
		}
	}
}

// wireRecord is Record as JSON: a time never seen is null.
type wireRecord struct {
	LastSuccess         *time.Time `json:"last_success"`
	LastFailure         *time.Time `json:"last_failure"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	FailingSince        *time.Time `json:"failing_since"`
	LastError           string     `json:"last_error"`
}

func orNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func orZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// MarshalJSON writes times never seen as null.
func (r Record) MarshalJSON() ([]byte, error) {
	return json.Marshal(wireRecord{orNil(r.LastSuccess), orNil(r.LastFailure), r.ConsecutiveFailures, orNil(r.FailingSince), r.LastError})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Record) UnmarshalJSON(b []byte) error {
	var w wireRecord
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = Record{orZero(w.LastSuccess), orZero(w.LastFailure), w.ConsecutiveFailures, orZero(w.FailingSince), w.LastError}
	return nil
}

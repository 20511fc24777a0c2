package fanout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lonelypsd/lonelypsd/fsm"
	"github.com/lonelypsd/lonelypsd/fsm/expiring/expiringtest"
)

// fixedPolicy has no jitter, so due times are exact: delay(n) = 2^n s + 1 s.
var fixedPolicy = RetryPolicy{
	Factor: time.Second, Base: 2, MaxExponent: 10,
	Constant: time.Second, Jitter: 0, MaxRetries: 3,
}

func openClockedStore(t *testing.T, policy RetryPolicy) (*MissedStore, *fakeClock) {
	t.Helper()
	s := openStore(t, policy)
	clk := newFakeClock()
	s.now = clk.now
	return s, clk
}

func dueRecords(t *testing.T, s *MissedStore, limit int) []MissedRecord {
	t.Helper()
	recs, err := s.Due(limit)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestRetryPolicyDelayBounds(t *testing.T) {
	p := DefaultRetryPolicy
	for _, tc := range []struct {
		n    int
		base time.Duration // 1 s · 2^min(n, 10) + 1 s
	}{
		{0, 2 * time.Second},
		{1, 3 * time.Second},
		{5, 33 * time.Second},
		{10, 1025 * time.Second},
		{15, 1025 * time.Second},
		{19, 1025 * time.Second},
	} {
		lo, hi := tc.base, tc.base+2*time.Second
		var smallest, largest time.Duration = hi, 0
		for range 500 {
			d, ok := p.Delay(tc.n)
			if !ok {
				t.Fatalf("Delay(%d) gave up before MaxRetries", tc.n)
			}
			if d < lo || d >= hi {
				t.Fatalf("Delay(%d) = %v, want in [%v, %v)", tc.n, d, lo, hi)
			}
			smallest, largest = min(smallest, d), max(largest, d)
		}
		// 500 draws of U(0, 2 s): the jitter is really there.
		if largest-smallest < time.Second {
			t.Errorf("Delay(%d) spread only %v over 500 draws", tc.n, largest-smallest)
		}
	}
	for _, n := range []int{20, 21, 100} {
		if d, ok := p.Delay(n); ok {
			t.Errorf("Delay(%d) = %v, true; want false at MaxRetries", n, d)
		}
	}
}

func TestRetryPolicyDelayWithoutJitterIsExact(t *testing.T) {
	p := RetryPolicy{Factor: 10 * time.Millisecond, Base: 3, MaxExponent: 2, Constant: 5 * time.Millisecond, MaxRetries: 4}
	for _, tc := range []struct {
		n    int
		want time.Duration
		ok   bool
	}{
		{0, 15 * time.Millisecond, true},
		{1, 35 * time.Millisecond, true},
		{2, 95 * time.Millisecond, true},
		{3, 95 * time.Millisecond, true},
		{4, 0, false},
	} {
		d, ok := p.Delay(tc.n)
		if d != tc.want || ok != tc.ok {
			t.Errorf("Delay(%d) = %v, %v; want %v, %v", tc.n, d, ok, tc.want, tc.ok)
		}
	}
}

func TestMissedStoreDueRespectsStoreClock(t *testing.T) {
	s, clk := openClockedStore(t, fixedPolicy)
	start := clk.now()
	sub := fsm.Subscription{Kind: fsm.Exact, URL: "http://sub/v1/receive", Key: "a/b", Recovery: "http://sub/v1/recover"}
	if err := s.Record(sub, []byte("a/b")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   time.Duration
		want int
	}{
		{0, 0},
		{time.Second, 0},
		{2*time.Second - time.Millisecond, 0},
		{2 * time.Second, 1},
		{time.Hour, 1},
	} {
		clk.mu.Lock()
		clk.t = start.Add(tc.at)
		clk.mu.Unlock()
		if got := dueRecords(t, s, 10); len(got) != tc.want {
			t.Errorf("at +%v: %d due, want %d", tc.at, len(got), tc.want)
		}
	}
	got := dueRecords(t, s, 10)[0]
	want := MissedRecord{Kind: fsm.Exact, URL: sub.URL, Key: sub.Key, Recovery: sub.Recovery, Topic: []byte("a/b"),
		DueMs: start.Add(2 * time.Second).UnixMilli()}
	if !sameRecord(got, want) {
		t.Errorf("record %+v, want %+v", got, want)
	}
}

func sameRecord(a, b MissedRecord) bool {
	return a.Kind == b.Kind && a.URL == b.URL && a.Key == b.Key && a.Recovery == b.Recovery &&
		bytes.Equal(a.Topic, b.Topic) && a.Attempts == b.Attempts && a.DueMs == b.DueMs
}

func TestMissedStoreDueReturnsEarliestFirstUpToLimit(t *testing.T) {
	s, clk := openClockedStore(t, fixedPolicy)
	urls := []string{"http://e/1", "http://d/2", "http://c/3", "http://b/4", "http://a/5"}
	for _, u := range urls {
		if err := s.Record(fsm.Subscription{Kind: fsm.Exact, URL: u, Key: "k", Recovery: u + "/r"}, []byte("k")); err != nil {
			t.Fatal(err)
		}
		clk.advance(time.Second)
	}
	clk.advance(time.Hour)
	got := dueRecords(t, s, 3)
	if len(got) != 3 {
		t.Fatalf("Due(3) returned %d records", len(got))
	}
	for i, r := range got {
		if r.URL != urls[i] {
			t.Errorf("Due[%d] = %s, want %s (earliest due first)", i, r.URL, urls[i])
		}
	}
	if n := len(dueRecords(t, s, 100)); n != 5 {
		t.Errorf("Due(100) returned %d, want 5", n)
	}
}

func TestMissedStoreFinish(t *testing.T) {
	sub := fsm.Subscription{Kind: fsm.Glob, URL: "http://sub/v1/receive", Key: "a/*", Recovery: "http://sub/v1/recover"}
	// recorded is a store holding a failure of sub on a/1 with its clock
	// at the record's first due time, and the record as Due reads it.
	recorded := func(t *testing.T) (*MissedStore, *fakeClock, MissedRecord) {
		t.Helper()
		s, clk := openClockedStore(t, fixedPolicy)
		if err := s.Record(sub, []byte("a/1")); err != nil {
			t.Fatal(err)
		}
		clk.advance(2 * time.Second)
		return s, clk, dueRecords(t, s, 1)[0]
	}
	t.Run("success drops the record", func(t *testing.T) {
		s, clk, rec := recorded(t)
		dropped, err := s.finish(rec, true)
		if err != nil || dropped {
			t.Fatalf("finish(ok) = %v, %v; want false, nil", dropped, err)
		}
		if recs := pendingRecords(t, s); len(recs) != 0 {
			t.Errorf("pending %+v after success, want none", recs)
		}
		clk.advance(time.Hour)
		if due := dueRecords(t, s, 10); len(due) != 0 {
			t.Errorf("due %+v after success, want none", due)
		}
	})
	t.Run("failure reschedules with attempts+1", func(t *testing.T) {
		s, clk, rec := recorded(t)
		clk.advance(500 * time.Millisecond) // the attempt took a while
		dropped, err := s.finish(rec, false)
		if err != nil || dropped {
			t.Fatalf("finish(failed) = %v, %v; want false, nil", dropped, err)
		}
		recs := pendingRecords(t, s)
		if len(recs) != 1 {
			t.Fatalf("pending %+v, want one", recs)
		}
		want := rec
		want.Attempts = 1
		want.DueMs = clk.now().Add(3 * time.Second).UnixMilli() // delay(1) from now
		if !sameRecord(recs[0], want) {
			t.Errorf("rescheduled %+v, want %+v", recs[0], want)
		}
		if due := dueRecords(t, s, 10); len(due) != 0 {
			t.Errorf("due right after a failure: %+v", due)
		}
		clk.advance(3*time.Second - time.Millisecond)
		if due := dueRecords(t, s, 10); len(due) != 0 {
			t.Errorf("due before delay(1): %+v", due)
		}
		clk.advance(time.Millisecond)
		if due := dueRecords(t, s, 10); len(due) != 1 || due[0].Attempts != 1 {
			t.Errorf("due at delay(1): %+v, want the record with attempts 1", due)
		}
	})
	t.Run("exhaustion after MaxRetries attempts drops", func(t *testing.T) {
		s, clk := openClockedStore(t, fixedPolicy)
		if err := s.Record(sub, []byte("a/1")); err != nil {
			t.Fatal(err)
		}
		var attempts int
		for attempts = 1; attempts <= 10; attempts++ {
			clk.advance(time.Hour)
			due := dueRecords(t, s, 10)
			if len(due) != 1 || due[0].Attempts != attempts-1 {
				t.Fatalf("attempt %d: due %+v", attempts, due)
			}
			dropped, err := s.finish(due[0], false)
			if err != nil {
				t.Fatal(err)
			}
			if dropped {
				break
			}
		}
		if attempts != fixedPolicy.MaxRetries {
			t.Errorf("dropped after %d attempts, want MaxRetries = %d", attempts, fixedPolicy.MaxRetries)
		}
		if recs := pendingRecords(t, s); len(recs) != 0 {
			t.Errorf("pending %+v after exhaustion", recs)
		}
	})
	t.Run("a record replaced since it was read is left alone", func(t *testing.T) {
		s, clk, old := recorded(t)
		clk.advance(time.Second)
		if err := s.Record(sub, []byte("a/2")); err != nil {
			t.Fatal(err)
		}
		for _, ok := range []bool{true, false} {
			if _, err := s.finish(old, ok); err != nil {
				t.Fatal(err)
			}
			recs := pendingRecords(t, s)
			if len(recs) != 1 || string(recs[0].Topic) != "a/2" || recs[0].Attempts != 0 {
				t.Errorf("finish(stale, %v) changed the newer record: %+v", ok, recs)
			}
		}
	})
	t.Run("a record already gone is a no-op", func(t *testing.T) {
		s, _, rec := recorded(t)
		if _, err := s.finish(rec, true); err != nil {
			t.Fatal(err)
		}
		if dropped, err := s.finish(rec, false); err != nil || dropped {
			t.Errorf("second finish = %v, %v; want false, nil", dropped, err)
		}
		if recs := pendingRecords(t, s); len(recs) != 0 {
			t.Errorf("pending %+v", recs)
		}
	})
}

func TestMissedStoreNewerRecordReplacesOlder(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sub    fsm.Subscription
		topics []string
	}{
		{"glob keeps the latest topic", fsm.Subscription{Kind: fsm.Glob, URL: "http://s/r", Key: "news/*", Recovery: "http://s/m"},
			[]string{"news/a", "news/b", "news/c"}},
		{"exact restarts its schedule", fsm.Subscription{Kind: fsm.Exact, URL: "http://s/r", Key: "news", Recovery: "http://s/m"},
			[]string{"news", "news"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, clk := openClockedStore(t, fixedPolicy)
			first := clk.now()
			for _, topic := range tc.topics {
				if err := s.Record(tc.sub, []byte(topic)); err != nil {
					t.Fatal(err)
				}
				clk.advance(time.Second)
			}
			lastAt := clk.now().Add(-time.Second)
			recs := pendingRecords(t, s)
			want := MissedRecord{Kind: tc.sub.Kind, URL: tc.sub.URL, Key: tc.sub.Key, Recovery: tc.sub.Recovery,
				Topic: []byte(tc.topics[len(tc.topics)-1]), DueMs: lastAt.Add(2 * time.Second).UnixMilli()}
			if len(recs) != 1 || !sameRecord(recs[0], want) {
				t.Fatalf("pending %+v, want only %+v", recs, want)
			}
			// The first record's due time no longer yields anything: its
			// due entry went with it.
			clk.mu.Lock()
			clk.t = first.Add(2 * time.Second)
			clk.mu.Unlock()
			if due := dueRecords(t, s, 10); len(due) != 0 {
				t.Errorf("due at the replaced record's time: %+v", due)
			}
			clk.mu.Lock()
			clk.t = lastAt.Add(2 * time.Second)
			clk.mu.Unlock()
			if due := dueRecords(t, s, 10); len(due) != 1 || !sameRecord(due[0], want) {
				t.Errorf("due %+v, want %+v", due, want)
			}
		})
	}
}

func TestMissedStoreKeepsDistinctSubscriptionsApart(t *testing.T) {
	s, _ := openClockedStore(t, fixedPolicy)
	subs := []fsm.Subscription{
		{Kind: fsm.Exact, URL: "http://s/ab", Key: "c", Recovery: "http://r/1"},
		{Kind: fsm.Exact, URL: "http://s/a", Key: "bc", Recovery: "http://r/2"},
		{Kind: fsm.Glob, URL: "http://s/ab", Key: "c", Recovery: "http://r/3"},
		{Kind: fsm.Exact, URL: "http://s/ab", Key: "d", Recovery: "http://r/4"},
		{Kind: fsm.Exact, URL: "http://t/ab", Key: "c", Recovery: "http://r/5"},
	}
	for _, sub := range subs {
		if err := s.Record(sub, []byte(sub.Key)); err != nil {
			t.Fatal(err)
		}
	}
	recs := pendingRecords(t, s)
	if len(recs) != len(subs) {
		t.Fatalf("%d records for %d subscriptions: %+v", len(recs), len(subs), recs)
	}
	byRecovery := map[string]MissedRecord{}
	for _, r := range recs {
		byRecovery[r.Recovery] = r
	}
	for _, sub := range subs {
		r, ok := byRecovery[sub.Recovery]
		if !ok || r.Kind != sub.Kind || r.URL != sub.URL || r.Key != sub.Key {
			t.Errorf("record for %+v: %+v", sub, r)
		}
	}
}

func TestMissedStoreRecordsNothingWhenPolicyAllowsNoRetry(t *testing.T) {
	s, _ := openClockedStore(t, RetryPolicy{Factor: time.Second, Base: 2, MaxRetries: 0})
	if err := s.Record(fsm.Subscription{Kind: fsm.Exact, URL: "http://s", Key: "k", Recovery: "http://r"}, []byte("k")); err != nil {
		t.Fatal(err)
	}
	if recs := pendingRecords(t, s); len(recs) != 0 {
		t.Errorf("pending %+v, want none", recs)
	}
}

func TestMissedStorePersistsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missed.db")
	clk := newFakeClock()
	s, err := OpenMissedStore(path, fixedPolicy)
	if err != nil {
		t.Fatal(err)
	}
	s.now = clk.now
	subs := []fsm.Subscription{
		{Kind: fsm.Exact, URL: "http://s/1", Key: "x", Recovery: "http://r/1"},
		{Kind: fsm.Glob, URL: "http://s/2", Key: "y*", Recovery: "http://r/2"},
	}
	for i, sub := range subs {
		if err := s.Record(sub, []byte(sub.Key+"-topic")); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			// Leave the second one rescheduled once.
			clk.advance(2 * time.Second)
			rec := dueRecords(t, s, 10)
			for _, r := range rec {
				if r.URL == sub.URL {
					if _, err := s.finish(r, false); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	before := pendingRecords(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := OpenMissedStore(path, fixedPolicy)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	s2.now = clk.now
	after := pendingRecords(t, s2)
	if len(after) != len(before) || len(after) != 2 {
		t.Fatalf("after reopen %+v, before %+v", after, before)
	}
	for i := range before {
		if !sameRecord(before[i], after[i]) {
			t.Errorf("record %d: %+v after reopen, %+v before", i, after[i], before[i])
		}
	}
	clk.advance(time.Hour)
	if due := dueRecords(t, s2, 10); len(due) != 2 {
		t.Errorf("due after reopen: %+v, want both", due)
	}
}

func TestOpenMissedStoreFailsOnUnusablePath(t *testing.T) {
	if _, err := OpenMissedStore(filepath.Join(t.TempDir(), "missing-dir", "missed.db"), fixedPolicy); err == nil {
		t.Error("OpenMissedStore in a missing directory succeeded")
	}
}

// A subscription's URL and key together may exceed bbolt's 32 KiB key
// limit (topics and globs are up to 65535 bytes on the wire): records are
// keyed by a digest, so such a subscription still gets its MISSED notice.
func TestMissedStoreRecordsLongSubscriptionKeys(t *testing.T) {
	const url = "http://127.0.0.1:9/v1/receive"
	for _, tc := range []struct {
		name   string
		keyLen int
	}{
		{"within bbolt key limit (url+key = 32757)", 32757 - len(url)},
		{"longest row the fsm table accepts (url+key = 32766)", 32766 - len(url)},
		{"40000-byte topic, valid on the wire", 40000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, clk := openClockedStore(t, fixedPolicy)
			key := string(bytes.Repeat([]byte("k"), tc.keyLen))
			sub := fsm.Subscription{Kind: fsm.Exact, URL: url, Key: key, Recovery: "http://127.0.0.1:9/v1/recover"}
			if err := s.Record(sub, []byte(key)); err != nil {
				t.Fatalf("Record(url+key = %d bytes): %v", len(url)+len(key), err)
			}
			clk.advance(time.Hour)
			if due := dueRecords(t, s, 1); len(due) != 1 || due[0].Key != key {
				t.Errorf("due %d records, want the long one", len(due))
			}
		})
	}
}

// A store written when records were keyed by the raw subscription (kind,
// URL, key) rather than its digest: on open its records move to their
// digest key, so a success settles them instead of leaving a notice sent
// every sweep forever.
func TestMissedStoreRekeysOldRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missed.db")
	rec := MissedRecord{Kind: fsm.Exact, URL: "http://sub/v1/receive", Key: "t", Recovery: "http://sub/v1/recover",
		Topic: []byte("t"), DueMs: time.Now().Add(-time.Second).UnixMilli()}
	old := append([]byte{byte(rec.Kind)}, rec.URL+"\x00"+rec.Key...)
	v, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	expiringtest.WriteFile(t, path,
		expiringtest.Entry{Bucket: bucketPending, Key: old, Value: v},
		expiringtest.Entry{Bucket: bucketDue, Key: dueKey(rec.DueMs, old)},
	)
	s, err := OpenMissedStore(path, fixedPolicy)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	due := dueRecords(t, s, 10)
	if len(due) != 1 || !sameRecord(due[0], rec) {
		t.Fatalf("due after reopening: %+v", due)
	}
	if _, err := s.finish(due[0], true); err != nil {
		t.Fatal(err)
	}
	if left := pendingRecords(t, s); len(left) != 0 {
		t.Fatalf("still pending after success: %+v", left)
	}
	if again := dueRecords(t, s, 10); len(again) != 0 {
		t.Fatalf("still due after success: %+v", again)
	}
}

// A missed.db written by hand, as the store has always laid it out
// (pending: recordKey -> JSON record; due: u64 due ms · recordKey ->
// nothing), reads as it did and is rescheduled in the same layout. Damaged
// due entries (too short to name a record) sorting first are passed over
// instead of hiding what is due.
func TestMissedStoreReadsAFileWrittenByHand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missed.db")
	now := time.Unix(1700000000, 0)
	sub := fsm.Subscription{Kind: fsm.Exact, URL: "http://127.0.0.1:1/v1/receive", Key: "t", Recovery: "http://127.0.0.1:1/v1/recover"}
	rk := recordKey(sub.Kind, sub.URL, sub.Key)
	dueMs := now.Add(-time.Second).UnixMilli()
	record := fmt.Sprintf(`{"kind":1,"url":%q,"key":"t","recovery":%q,"topic":"dA==","attempts":1,"due_ms":%d}`,
		sub.URL, sub.Recovery, dueMs)
	damaged := []string{"\x00", "\x00\x00\x00\x00\x00\x00\x00\x00"}
	raw := []expiringtest.Entry{{Bucket: []byte("pending"), Key: rk, Value: []byte(record)}}
	for _, k := range damaged {
		raw = append(raw, expiringtest.Entry{Bucket: []byte("due"), Key: []byte(k)})
	}
	raw = append(raw, expiringtest.Entry{Bucket: []byte("due"), Key: append(expiringtest.Stamp(dueMs), rk...)})
	expiringtest.WriteFile(t, path, raw...)

	s, err := OpenMissedStore(path, fixedPolicy)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.now = func() time.Time { return now }
	want := MissedRecord{Kind: sub.Kind, URL: sub.URL, Key: sub.Key, Recovery: sub.Recovery, Topic: []byte("t"), Attempts: 1, DueMs: dueMs}
	due := dueRecords(t, s, 10)
	if len(due) != 1 || !sameRecord(due[0], want) {
		t.Fatalf("due from the file: %+v, want %+v", due, want)
	}
	if _, err := s.finish(due[0], false); err != nil {
		t.Fatal(err)
	}
	// A failed attempt moves the record to its next due time (delay(2) = 5 s).
	nextMs := now.Add(5 * time.Second).UnixMilli()
	var pending map[string]any
	var index []string
	err = s.db.View(func(tx *bolt.Tx) error {
		if err := json.Unmarshal(tx.Bucket([]byte("pending")).Get(rk), &pending); err != nil {
			return err
		}
		return tx.Bucket([]byte("due")).ForEach(func(k, _ []byte) error {
			index = append(index, string(k))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if pending["attempts"] != 2.0 || pending["due_ms"] != float64(nextMs) {
		t.Errorf("rescheduled record %v, want attempts 2, due_ms %d", pending, nextMs)
	}
	wantIndex := append(slices.Clone(damaged), string(append(expiringtest.Stamp(nextMs), rk...)))
	if !slices.Equal(index, wantIndex) {
		t.Errorf("due index %q, want %q", index, wantIndex)
	}
}

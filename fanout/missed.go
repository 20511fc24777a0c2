package fanout

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/metrics"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/fsm"
	"github.com/lonelypsd/lonelypsd/fsm/expiring"
)

// Missed-message bookkeeping is local to the node that failed the
// delivery: it is not replicated, since only this node knows it failed.
// It is durable (bbolt), so a restart does not forget a pending notice.
//
// Layout: bucket "pending" maps recordKey (a digest of the subscription)
// to its record (JSON); bucket "due" maps u64 due-time (unix ms) ||
// recordKey to nothing (an index of package expiring), so the sweeper
// reads only what is due instead of scanning every record. The records
// are JSON rather than a stamp and a value, so only the index is an
// expiring one: the due time lives in the record.
var (
	bucketPending = []byte("pending")
	bucketDue     = []byte("due")
)

// MissedRecord is one pending MISSED notice.
type MissedRecord struct {
	Kind     fsm.Kind `json:"kind"`
	URL      string   `json:"url"`
	Key      string   `json:"key"`
	Recovery string   `json:"recovery"`
	// Topic is the topic of the latest failed delivery: a glob
	// subscription keeps only its latest missed topic.
	Topic    []byte `json:"topic"`
	Attempts int    `json:"attempts"`
	DueMs    int64  `json:"due_ms"`
}

// RetryPolicy is the schedule of MISSED attempts:
// delay(n) = Factor * Base^min(n, MaxExponent) + Constant + U(0, Jitter),
// giving up after MaxRetries attempts.
type RetryPolicy struct {
	Factor      time.Duration
	Base        float64
	MaxExponent int
	Constant    time.Duration
	Jitter      time.Duration
	MaxRetries  int
}

// DefaultRetryPolicy is the reference schedule: 1 s * 2^min(n,10) + 1 s +
// up to 2 s of jitter, 20 attempts.
var DefaultRetryPolicy = RetryPolicy{
	Factor: time.Second, Base: 2, MaxExponent: 10,
	Constant: time.Second, Jitter: 2 * time.Second, MaxRetries: 20,
}

// Delay returns the wait before attempt n, and false when there is none.
func (p RetryPolicy) Delay(n int) (time.Duration, bool) {
	if n >= p.MaxRetries {
		return 0, false
	}
	exp := 1.0
	for range min(n, p.MaxExponent) {
		exp *= p.Base
	}
	d := time.Duration(float64(p.Factor)*exp) + p.Constant
	if p.Jitter > 0 {
		d += time.Duration(rand.Int64N(int64(p.Jitter)))
	}
	return d, true
}

// MissedStore keeps pending MISSED notices in a bbolt file.
type MissedStore struct {
	db     *bolt.DB
	policy RetryPolicy
	now    func() time.Time
}

// OpenMissedStore opens (or creates) the store at path.
func OpenMissedStore(path string, policy RetryPolicy) (*MissedStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open missed store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketPending, bucketDue} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return rekey(tx)
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialise missed store %s: %w", path, err)
	}
	return &MissedStore{db: db, policy: policy, now: time.Now}, nil
}

// rekey moves records stored under another key than recordKey's (files
// written before records were keyed by digest) to their key, so that
// settling them finds them.
func rekey(tx *bolt.Tx) error {
	pending, due := tx.Bucket(bucketPending), tx.Bucket(bucketDue)
	var moved []MissedRecord
	var stale [][]byte
	err := pending.ForEach(func(k, v []byte) error {
		var rec MissedRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("corrupt missed record: %w", err)
		}
		if !bytes.Equal(k, recordKey(rec.Kind, rec.URL, rec.Key)) {
			moved = append(moved, rec)
			stale = append(stale, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, k := range stale {
		if err := due.Delete(dueKey(moved[i].DueMs, k)); err != nil {
			return err
		}
		if err := pending.Delete(k); err != nil {
			return err
		}
	}
	for _, rec := range moved {
		if err := putRecord(tx, rec); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the file.
func (s *MissedStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close missed store: %w", err)
	}
	return nil
}

// recordKey is a digest of the subscription's identity: URL and key
// together may be far longer than bbolt's 32 KiB key limit, and the record
// itself keeps them in full.
func recordKey(kind fsm.Kind, url, key string) []byte {
	h := sha256.New()
	h.Write([]byte{byte(kind)})
	var n [2]byte
	binary.BigEndian.PutUint16(n[:], uint16(len(url)))
	h.Write(n[:])
	h.Write([]byte(url))
	h.Write([]byte(key))
	return h.Sum(nil)
}

// dueKey is the "due" index key of the record under rk.
func dueKey(dueMs int64, rk []byte) []byte { return expiring.IndexKey(dueMs, rk) }

// Record notes that a delivery of topic to s failed. A record already
// pending for s starts its schedule over with the newest topic.
func (s *MissedStore) Record(sub fsm.Subscription, topic []byte) error {
	delay, ok := s.policy.Delay(0)
	if !ok {
		return nil
	}
	rec := MissedRecord{
		Kind: sub.Kind, URL: sub.URL, Key: sub.Key, Recovery: sub.Recovery,
		Topic: bytes.Clone(topic), DueMs: s.now().Add(delay).UnixMilli(),
	}
	// Batch coalesces the fsyncs of many concurrent failures (a whole
	// fan-out to a dead host) into a few transactions.
	err := s.db.Batch(func(tx *bolt.Tx) error { return putRecord(tx, rec) })
	if err != nil {
		return fmt.Errorf("record missed message for %s: %w", sub.URL, err)
	}
	return nil
}

func putRecord(tx *bolt.Tx, rec MissedRecord) error {
	rk := recordKey(rec.Kind, rec.URL, rec.Key)
	pending, due := tx.Bucket(bucketPending), tx.Bucket(bucketDue)
	if old := pending.Get(rk); old != nil {
		var prev MissedRecord
		if err := json.Unmarshal(old, &prev); err == nil {
			if err := due.Delete(dueKey(prev.DueMs, rk)); err != nil {
				return err
			}
		}
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := pending.Put(rk, v); err != nil {
		return err
	}
	return due.Put(dueKey(rec.DueMs, rk), nil)
}

func deleteRecord(tx *bolt.Tx, rec MissedRecord) error {
	rk := recordKey(rec.Kind, rec.URL, rec.Key)
	if err := tx.Bucket(bucketDue).Delete(dueKey(rec.DueMs, rk)); err != nil {
		return err
	}
	return tx.Bucket(bucketPending).Delete(rk)
}

// Due returns up to limit records whose time has come.
func (s *MissedStore) Due(limit int) ([]MissedRecord, error) {
	nowMs := s.now().UnixMilli()
	var out []MissedRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		pending := tx.Bucket(bucketPending)
		c := tx.Bucket(bucketDue).Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			dueMs, rk, ok := expiring.SplitIndexKey(k)
			if !ok {
				continue // damaged: names no record
			}
			if dueMs > nowMs {
				break
			}
			v := pending.Get(rk)
			if v == nil {
				continue
			}
			var rec MissedRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("corrupt missed record: %w", err)
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read due missed records: %w", err)
	}
	return out, nil
}

// Pending returns every pending record (operators and tests).
func (s *MissedStore) Pending() ([]MissedRecord, error) {
	var out []MissedRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPending).ForEach(func(_, v []byte) error {
			var rec MissedRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			out = append(out, rec)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read missed records: %w", err)
	}
	return out, nil
}

// PendingCount is the number of notices waiting to be sent or retried.
func (s *MissedStore) PendingCount() (int, error) {
	var n int
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketPending).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count missed records: %w", err)
	}
	return n, nil
}

// finish settles an attempt: success or no more retries drops the record;
// otherwise it is rescheduled. A record that changed since it was read (a
// newer failure) is left alone.
func (s *MissedStore) finish(rec MissedRecord, ok bool) (dropped bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		rk := recordKey(rec.Kind, rec.URL, rec.Key)
		cur := tx.Bucket(bucketPending).Get(rk)
		if cur == nil {
			return nil
		}
		var now MissedRecord
		if err := json.Unmarshal(cur, &now); err != nil {
			return err
		}
		if now.DueMs != rec.DueMs || now.Attempts != rec.Attempts {
			return nil
		}
		if ok {
			return deleteRecord(tx, rec)
		}
		delay, more := s.policy.Delay(rec.Attempts + 1)
		if !more {
			dropped = true
			return deleteRecord(tx, rec)
		}
		if err := deleteRecord(tx, rec); err != nil {
			return err
		}
		rec.Attempts++
		rec.DueMs = s.now().Add(delay).UnixMilli()
		return putRecord(tx, rec)
	})
	if err != nil {
		return false, fmt.Errorf("update missed record for %s: %w", rec.URL, err)
	}
	return dropped, nil
}

// Sweeper posts MISSED notices that are due.
type Sweeper struct {
	store    *MissedStore
	table    Table
	auth     auth.Pair
	route    func(ctx context.Context, u *url.URL, rawURL string) (context.Context, *http.Client, bool)
	hosts    *hostLimiter
	interval time.Duration
	timeout  time.Duration
	metrics  *metrics.Missed
	log      interface {
		Info(string, ...any)
		Warn(string, ...any)
	}
}

// NewSweeper returns a sweeper that looks for due notices every interval.
func (f *Fanout) NewSweeper(interval time.Duration) *Sweeper {
	return &Sweeper{
		store: f.missed, table: f.table, auth: f.auth, route: f.route, hosts: f.hosts,
		interval: interval, timeout: f.cfg.Timeout, metrics: f.cfg.MissedMetrics, log: f.log,
	}
}

// Run sweeps until ctx ends.
func (sw *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(sw.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sw.Sweep(ctx)
		}
	}
}

const sweepBatch = 256

// Sweep sends every notice that is due now, a bounded batch at a time.
func (sw *Sweeper) Sweep(ctx context.Context) {
	for ctx.Err() == nil {
		due, err := sw.store.Due(sweepBatch)
		if err != nil {
			sw.log.Warn("missed sweep failed", "err", err)
			return
		}
		if len(due) == 0 {
			return
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for _, rec := range due {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				sw.attempt(ctx, rec)
			}()
		}
		wg.Wait()
		if len(due) < sweepBatch {
			return
		}
	}
}

func (sw *Sweeper) attempt(ctx context.Context, rec MissedRecord) {
	// The subscription may have gone, or changed its recovery URL, since
	// the delivery failed: nobody wants a notice for it any more.
	if recovery, ok := sw.table.Lookup(rec.Kind, rec.URL, rec.Key); !ok || recovery != rec.Recovery {
		_, _ = sw.store.finish(rec, true)
		return
	}
	err := sw.post(ctx, rec)
	if err == nil {
		sw.metrics.Sent()
	} else {
		sw.metrics.Failed()
		sw.log.Info("missed notice not accepted", "recovery", rec.Recovery, "attempt", rec.Attempts+1, "err", err)
	}
	dropped, ferr := sw.store.finish(rec, err == nil)
	if ferr != nil {
		sw.log.Warn("missed bookkeeping failed", "err", ferr)
	}
	if dropped {
		sw.log.Warn("giving up on missed notice after retries", "recovery", rec.Recovery, "url", rec.URL)
	}
}

func (sw *Sweeper) post(ctx context.Context, rec MissedRecord) error {
	ctx, cancel := context.WithTimeout(ctx, sw.timeout)
	defer cancel()
	body, err := wire.AppendMissed(nil, wire.Missed{Topic: rec.Topic})
	if err != nil {
		return err
	}
	authz, err := sw.auth.Authorize(auth.Missed{Recovery: rec.Recovery, Topic: rec.Topic})
	if err != nil {
		return fmt.Errorf("sign missed: %w", err)
	}
	u, err := url.Parse(rec.Recovery)
	if err != nil {
		return fmt.Errorf("recovery URL: %w", err)
	}
	ctx, client, own := sw.route(ctx, u, rec.Recovery)
	if !own {
		// Notices share the host's slots with deliveries, so that together
		// they never need more connections than the transport allows one
		// host: a delivery holding a node-wide slot never waits for one.
		release, err := sw.hosts.acquire(ctx, hostKey(u))
		if err != nil {
			return fmt.Errorf("waiting for a slot of %s: %w", u.Host, err)
		}
		defer release()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rec.Recovery, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, DefaultMaxReplyBytes))
	if err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	confirm, err := wire.ParseMissedReply(reply)
	if err != nil {
		return fmt.Errorf("reply (status %d): %w", resp.StatusCode, err)
	}
	res := sw.auth.Verify(ctx, auth.ConfirmMissed{Tracing: confirm.Tracing, Topic: rec.Topic, URL: rec.Recovery}, confirm.Authorization)
	if res != auth.OK {
		return fmt.Errorf("confirmation refused: %s", res)
	}
	return nil
}

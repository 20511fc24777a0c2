// Package fsm holds the replicated subscription table: the Raft commands
// that change it, the state machine that applies them to a bbolt file, and
// the in-memory index that notify uses to find the subscribers of a topic.
//
// bbolt is the source of truth and memory is the index (see DESIGN.md in
// this folder). Every batch of log entries is applied in one bbolt
// transaction that also records the last applied log index, so a restart
// neither loses an entry nor applies one twice, and concurrent writers
// share one fsync.
package fsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketMeta     = []byte("meta")
	bucketExact    = []byte("exact")
	bucketGlob     = []byte("glob")
	bucketNodes    = []byte("nodes")
	bucketRequests = []byte("requests")        // request id -> u64 log time (ms) || outcome
	bucketReqTimes = []byte("request_times")   // u64 log time (ms) || request id -> nil
	bucketCodes    = []byte("auth_codes")      // HMAC code -> u64 expiry (ms)
	bucketCodeExp  = []byte("auth_code_times") // u64 expiry (ms) || code -> nil
	keyApplied     = []byte("applied")
	// keyClock is the log clock: the newest AppendedAt (ms) of the
	// commands applied so far. Leaders' clocks differ, so AppendedAt can go
	// backwards across a leader change; expiry is judged against this
	// running maximum, which every replica computes alike from the log
	// alone, whatever batches it applied the log in.
	keyClock = []byte("clock")
)

// RequestRetention is how long (in log time) a request id is remembered.
// A client retries a write for seconds, so minutes are ample; the bound
// keeps the table from growing with every write ever made.
const RequestRetention = 10 * time.Minute

// ErrClosed is returned by reads after Close.
var ErrClosed = errors.New("fsm: store closed")

// MaxRowKey is the longest URL plus topic (or glob) a row can hold: bbolt
// keys are at most 32 KiB and a row key is u16 len(url) · url · key.
const MaxRowKey = bolt.MaxKeySize - 2

// ErrRowTooLong refuses a row whose URL and key exceed MaxRowKey. The API
// checks this before proposing; the FSM checks again so that no entry can
// ever make Apply fail (which would stop every node).
var ErrRowTooLong = fmt.Errorf("fsm: url and topic together exceed %d bytes", MaxRowKey)

// FSM is the replicated subscription table. It implements
// raft.BatchingFSM; reads (Match, Lookup, List) may run concurrently with
// Apply from any goroutine.
type FSM struct {
	path string
	log  *slog.Logger

	// dbMu guards the db pointer, which Restore swaps. Apply and reads
	// take it shared; Restore and Close take it exclusively.
	dbMu sync.RWMutex
	db   *bolt.DB

	// idxMu guards idx. Writers hold it only to apply the effects of a
	// committed transaction, never across disk I/O.
	idxMu sync.RWMutex
	idx   *index

	applied uint64              // guarded by idxMu
	nodes   map[string]NodeInfo // guarded by idxMu
	// advanced is closed and replaced whenever applied grows, so
	// WaitApplied can block without polling. Guarded by idxMu.
	advanced chan struct{}
}

// Open opens (or creates) the table at path and rebuilds the in-memory
// index from it.
func Open(path string, log *slog.Logger) (*FSM, error) {
	if log == nil {
		log = slog.Default()
	}
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	f := &FSM{path: path, log: log, db: db}
	if err := f.rebuild(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return f, nil
}

func openDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: 2 * time.Second,
		// A snapshot holds a read transaction while it streams; a write that
		// must grow the mmap waits for it. Reserving address space up front
		// keeps ordinary growth from stalling behind a snapshot.
		InitialMmapSize: 64 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("open subscription table %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketExact, bucketGlob, bucketNodes, bucketRequests, bucketReqTimes, bucketCodes, bucketCodeExp} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialise subscription table %s: %w", path, err)
	}
	return db, nil
}

// rebuild reloads the index from bbolt. Callers hold dbMu (or own f).
func (f *FSM) rebuild() error {
	idx := newIndex()
	nodes := map[string]NodeInfo{}
	var applied uint64
	err := f.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyApplied); len(v) == 8 {
			applied = binary.BigEndian.Uint64(v)
		}
		err := tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			var n NodeInfo
			if err := json.Unmarshal(v, &n); err != nil {
				return fmt.Errorf("corrupt node record %q: %w", k, err)
			}
			nodes[n.ID] = n
			return nil
		})
		if err != nil {
			return err
		}
		for _, kind := range []Kind{Exact, Glob} {
			err := tx.Bucket(kind.bucket()).ForEach(func(k, v []byte) error {
				url, key, err := splitKey(k)
				if err != nil {
					return err
				}
				return idx.add(kind, url, key, string(v))
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuild index from %s: %w", f.path, err)
	}
	f.idxMu.Lock()
	f.idx, f.applied, f.nodes = idx, applied, nodes
	if f.advanced != nil {
		close(f.advanced)
	}
	f.advanced = make(chan struct{})
	f.idxMu.Unlock()
	return nil
}

// AppliedIndex is the index of the last Raft log entry reflected in the
// table.
func (f *FSM) AppliedIndex() uint64 {
	f.idxMu.RLock()
	defer f.idxMu.RUnlock()
	return f.applied
}

// WaitApplied blocks until the table reflects the log entry at index:
// the node that accepted a write answers only after its own replica shows
// it, so a subscriber always sees its own subscription at that node.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		f.idxMu.RLock()
		applied, ch := f.applied, f.advanced
		f.idxMu.RUnlock()
		if applied >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d (applied %d): %w", index, applied, ctx.Err())
		}
	}
}

// Close closes the bbolt file. Apply must not be called afterwards.
func (f *FSM) Close() error {
	f.dbMu.Lock()
	defer f.dbMu.Unlock()
	if f.db == nil {
		return nil
	}
	err := f.db.Close()
	f.db = nil
	if err != nil {
		return fmt.Errorf("close subscription table: %w", err)
	}
	return nil
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM: the whole batch is one bbolt
// transaction, hence one fsync however many subscribers were waiting.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	f.dbMu.RLock()
	defer f.dbMu.RUnlock()
	if f.db == nil {
		for i := range out {
			out[i] = Result{Err: ErrClosed}
		}
		return out
	}

	applied := f.AppliedIndex()
	var effects []effect
	last := applied
	err := f.db.Update(func(tx *bolt.Tx) error {
		effects = effects[:0]
		meta := tx.Bucket(bucketMeta)
		var clock int64
		if v := meta.Get(keyClock); len(v) == 8 {
			clock = int64(binary.BigEndian.Uint64(v))
		}
		for i, l := range logs {
			if l.Index <= applied {
				// Already in bbolt: Raft replays entries after its last
				// snapshot on restart, and applying them twice would turn a
				// subscribe into a conflict.
				out[i] = Result{Outcome: Applied}
				continue
			}
			last = l.Index
			if l.Type != raft.LogCommand {
				continue
			}
			cmd, err := DecodeCommand(l.Data)
			if err != nil {
				f.log.Error("skipping undecodable raft entry", "index", l.Index, "err", err)
				out[i] = Result{Err: err}
				continue
			}
			if !l.AppendedAt.IsZero() {
				clock = max(clock, l.AppendedAt.UnixMilli())
			}
			if prev, ok := seenRequest(tx, cmd.ID, clock); ok {
				out[i] = Result{Outcome: prev}
				continue
			}
			var res Result
			var eff []effect
			fresh, err := recordCode(tx, cmd.AuthCode, clock)
			if err != nil {
				return fmt.Errorf("record auth code at index %d: %w", l.Index, err)
			}
			if fresh {
				if res, eff, err = applyCommand(tx, cmd); err != nil {
					return fmt.Errorf("apply %s at index %d: %w", cmd.Op, l.Index, err)
				}
			} else {
				res = Result{Outcome: Replayed}
			}
			if err := rememberRequest(tx, cmd.ID, clock, res.Outcome); err != nil {
				return err
			}
			out[i] = res
			effects = append(effects, eff...)
		}
		// Garbage collection only: what it drops, every later entry
		// would judge expired anyway (the clock never goes back), so
		// when it runs does not change any outcome.
		if err := forgetRequests(tx, clock-RequestRetention.Milliseconds()); err != nil {
			return err
		}
		if err := forgetCodes(tx, clock); err != nil {
			return err
		}
		if last == applied {
			return nil
		}
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], uint64(clock))
		if err := meta.Put(keyClock, buf[:]); err != nil {
			return err
		}
		binary.BigEndian.PutUint64(buf[:], last)
		return meta.Put(keyApplied, buf[:])
	})
	if err != nil {
		// The replica can no longer follow the log (disk full, I/O error).
		// Carrying on would let this node serve a table that silently
		// diverges from its peers; stopping lets an operator repair it and
		// the node catch up from the log or a snapshot on restart.
		f.log.Error("subscription table write failed; stopping", "err", err)
		panic(fmt.Sprintf("fsm: %v", err))
	}

	f.idxMu.Lock()
	for _, e := range effects {
		if e.node != nil {
			if e.remove {
				delete(f.nodes, e.node.ID)
			} else {
				f.nodes[e.node.ID] = *e.node
			}
			continue
		}
		if e.remove {
			f.idx.remove(e.kind, e.url, e.key)
		} else if err := f.idx.add(e.kind, e.url, e.key, e.recovery); err != nil {
			// Globs are validated before they are proposed; a bad one here
			// is in bbolt but cannot match anything.
			f.log.Error("glob not indexed", "glob", e.key, "err", err)
		}
	}
	if last > f.applied {
		f.applied = last
		close(f.advanced)
		f.advanced = make(chan struct{})
	}
	f.idxMu.Unlock()
	return out
}

// effect is one change to the in-memory index, applied after the bbolt
// transaction that made it durable has committed.
type effect struct {
	remove   bool
	node     *NodeInfo // set for member changes
	kind     Kind
	url      string
	key      string
	recovery string
}

func applyCommand(tx *bolt.Tx, c Command) (Result, []effect, error) {
	switch c.Op {
	case OpSubscribeExact:
		return subscribe(tx, Exact, c.URL, string(c.Topic), c.Recovery)
	case OpSubscribeGlob:
		return subscribe(tx, Glob, c.URL, c.Glob, c.Recovery)
	case OpUnsubscribeExact:
		return unsubscribe(tx, Exact, c.URL, string(c.Topic))
	case OpUnsubscribeGlob:
		return unsubscribe(tx, Glob, c.URL, c.Glob)
	case OpSetSubscriptions:
		for _, e := range c.Exact {
			if len(c.URL)+len(e.Topic) > MaxRowKey {
				return Result{Err: ErrRowTooLong}, nil, nil
			}
		}
		for _, g := range c.Globs {
			if len(c.URL)+len(g.Glob) > MaxRowKey {
				return Result{Err: ErrRowTooLong}, nil, nil
			}
		}
		exact := make([]entry, len(c.Exact))
		for i, e := range c.Exact {
			exact[i] = entry{string(e.Topic), e.Recovery}
		}
		globs := make([]entry, len(c.Globs))
		for i, e := range c.Globs {
			globs[i] = entry{e.Glob, e.Recovery}
		}
		var effects []effect
		for _, part := range []struct {
			kind Kind
			want []entry
		}{{Exact, exact}, {Glob, globs}} {
			eff, err := reconcile(tx, part.kind, c.URL, part.want)
			if err != nil {
				return Result{}, nil, err
			}
			effects = append(effects, eff...)
		}
		return Result{Outcome: Applied}, effects, nil
	case OpSetNode:
		v, err := json.Marshal(c.Node)
		if err != nil {
			return Result{}, nil, err
		}
		if err := tx.Bucket(bucketNodes).Put([]byte(c.Node.ID), v); err != nil {
			return Result{}, nil, err
		}
		n := *c.Node
		return Result{Outcome: Applied}, []effect{{node: &n}}, nil
	case OpRemoveNode:
		b := tx.Bucket(bucketNodes)
		if b.Get([]byte(c.Node.ID)) == nil {
			return Result{Outcome: Conflict}, nil, nil
		}
		if err := b.Delete([]byte(c.Node.ID)); err != nil {
			return Result{}, nil, err
		}
		return Result{Outcome: Applied}, []effect{{remove: true, node: &NodeInfo{ID: c.Node.ID}}}, nil
	}
	return Result{Err: fmt.Errorf("unknown op %d", c.Op)}, nil, nil
}

// recordCode notes an HMAC code and reports whether it was fresh. Expiry
// is judged by the log clock, so every replica decides alike.
func recordCode(tx *bolt.Tx, c *AuthCode, clock int64) (bool, error) {
	if c == nil || len(c.Code) == 0 {
		return true, nil
	}
	codes := tx.Bucket(bucketCodes)
	if v := codes.Get(c.Code); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) >= clock {
		return false, nil
	}
	var exp [8]byte
	binary.BigEndian.PutUint64(exp[:], uint64(c.ExpiresMs))
	if err := codes.Put(c.Code, exp[:]); err != nil {
		return false, err
	}
	return true, tx.Bucket(bucketCodeExp).Put(append(exp[:], c.Code...), nil)
}

// forgetCodes drops codes expired at log clock nowMs.
func forgetCodes(tx *bolt.Tx, nowMs int64) error {
	if nowMs <= 0 {
		return nil
	}
	codes, exp := tx.Bucket(bucketCodes), tx.Bucket(bucketCodeExp)
	c := exp.Cursor()
	for k, _ := c.First(); k != nil && len(k) > 8 && int64(binary.BigEndian.Uint64(k)) < nowMs; k, _ = c.First() {
		if v := codes.Get(k[8:]); len(v) == 8 && binary.BigEndian.Uint64(v) == binary.BigEndian.Uint64(k) {
			if err := codes.Delete(k[8:]); err != nil {
				return err
			}
		}
		if err := exp.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// seenRequest returns the outcome of a request id applied within
// RequestRetention of the log clock.
func seenRequest(tx *bolt.Tx, id string, clock int64) (Outcome, bool) {
	if id == "" {
		return 0, false
	}
	v := tx.Bucket(bucketRequests).Get([]byte(id))
	if len(v) != 9 || int64(binary.BigEndian.Uint64(v)) < clock-RequestRetention.Milliseconds() {
		return 0, false
	}
	return Outcome(v[8]), true
}

func rememberRequest(tx *bolt.Tx, id string, clock int64, o Outcome) error {
	if id == "" {
		return nil
	}
	var v [9]byte
	binary.BigEndian.PutUint64(v[:], uint64(clock))
	v[8] = byte(o)
	if err := tx.Bucket(bucketRequests).Put([]byte(id), v[:]); err != nil {
		return err
	}
	k := binary.BigEndian.AppendUint64(nil, uint64(clock))
	return tx.Bucket(bucketReqTimes).Put(append(k, id...), nil)
}

// forgetRequests drops request ids recorded before cutoffMs (log time, so
// every replica forgets the same ids at the same entry).
func forgetRequests(tx *bolt.Tx, cutoffMs int64) error {
	if cutoffMs <= 0 {
		return nil
	}
	times, reqs := tx.Bucket(bucketReqTimes), tx.Bucket(bucketRequests)
	c := times.Cursor()
	for k, _ := c.First(); k != nil && len(k) >= 8 && int64(binary.BigEndian.Uint64(k)) < cutoffMs; k, _ = c.First() {
		// The id may have been recorded again since (this record expired
		// and the id came back): only its own record goes.
		if v := reqs.Get(k[8:]); len(v) == 9 && binary.BigEndian.Uint64(v) == binary.BigEndian.Uint64(k) {
			if err := reqs.Delete(k[8:]); err != nil {
				return err
			}
		}
		if err := times.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func subscribe(tx *bolt.Tx, kind Kind, url, key, recovery string) (Result, []effect, error) {
	if len(url)+len(key) > MaxRowKey {
		return Result{Err: ErrRowTooLong}, nil, nil
	}
	b := tx.Bucket(kind.bucket())
	k := makeKey(url, key)
	if b.Get(k) != nil {
		return Result{Outcome: Conflict}, nil, nil
	}
	if err := b.Put(k, []byte(recovery)); err != nil {
		return Result{}, nil, err
	}
	return Result{Outcome: Applied}, []effect{{kind: kind, url: url, key: key, recovery: recovery}}, nil
}

func unsubscribe(tx *bolt.Tx, kind Kind, url, key string) (Result, []effect, error) {
	if len(url)+len(key) > MaxRowKey {
		return Result{Outcome: Conflict}, nil, nil
	}
	b := tx.Bucket(kind.bucket())
	k := makeKey(url, key)
	if b.Get(k) == nil {
		return Result{Outcome: Conflict}, nil, nil
	}
	if err := b.Delete(k); err != nil {
		return Result{}, nil, err
	}
	return Result{Outcome: Applied}, []effect{{remove: true, kind: kind, url: url, key: key}}, nil
}

type entry struct{ key, recovery string }

// reconcile makes the rows of url in one bucket equal to want (sorted,
// unique). Rows in both keep existing and take want's recovery URL, so
// check_subscriptions reports the etag that was just set.
func reconcile(tx *bolt.Tx, kind Kind, url string, want []entry) ([]effect, error) {
	b := tx.Bucket(kind.bucket())
	prefix := makeKey(url, "")
	var have []entry
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		have = append(have, entry{string(k[len(prefix):]), string(v)})
	}
	var effects []effect
	put := func(e entry) error {
		effects = append(effects, effect{kind: kind, url: url, key: e.key, recovery: e.recovery})
		return b.Put(makeKey(url, e.key), []byte(e.recovery))
	}
	del := func(e entry) error {
		effects = append(effects, effect{remove: true, kind: kind, url: url, key: e.key})
		return b.Delete(makeKey(url, e.key))
	}
	i, j := 0, 0
	for i < len(want) || j < len(have) {
		var err error
		switch {
		case j == len(have) || (i < len(want) && want[i].key < have[j].key):
			err = put(want[i])
			i++
		case i == len(want) || want[i].key > have[j].key:
			err = del(have[j])
			j++
		default:
			if want[i].recovery != have[j].recovery {
				err = put(want[i])
			}
			i++
			j++
		}
		if err != nil {
			return nil, err
		}
	}
	return effects, nil
}

// makeKey lays rows out as u16 len(url) || url || key so that one URL's
// rows are contiguous and ordered by key bytes: exactly the order the
// strong etag hashes them in.
func makeKey(url, key string) []byte {
	k := make([]byte, 2+len(url)+len(key))
	binary.BigEndian.PutUint16(k, uint16(len(url)))
	copy(k[2:], url)
	copy(k[2+len(url):], key)
	return k
}

func splitKey(k []byte) (url, key string, err error) {
	if len(k) < 2 {
		return "", "", fmt.Errorf("corrupt row key %x", k)
	}
	n := int(binary.BigEndian.Uint16(k))
	if len(k) < 2+n {
		return "", "", fmt.Errorf("corrupt row key %x", k)
	}
	return string(k[2 : 2+n]), string(k[2+n:]), nil
}

// Snapshot implements raft.FSM. The snapshot is the bbolt file as seen by
// one read transaction, so it is consistent with the applied index stored
// inside it, and Apply can go on while it is written out.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.dbMu.RLock()
	defer f.dbMu.RUnlock()
	if f.db == nil {
		return nil, ErrClosed
	}
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("begin snapshot: %w", err)
	}
	return &snapshot{tx: tx}, nil
}

type snapshot struct{ tx *bolt.Tx }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	// The read transaction ends here, not only in Release: raft's
	// RecoverCluster never calls Release, and an open read transaction
	// would block bbolt's Close forever.
	defer func() { _ = s.tx.Rollback() }()
	if _, err := s.tx.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("close snapshot: %w", err)
	}
	return nil
}

func (s *snapshot) Release() { _ = s.tx.Rollback() }

// Restore implements raft.FSM: it replaces the table with a snapshot's
// bbolt file. The new file is written and synced beside the old one and
// renamed over it, so a crash leaves one complete table or the other.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp, err := os.CreateTemp(filepath.Dir(f.path), filepath.Base(f.path)+".restore-*")
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, rc); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("restore snapshot: copy: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("restore snapshot: sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	// Check the snapshot opens before the live table is touched.
	check, err := openDB(tmp.Name())
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if err := check.Close(); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}

	f.dbMu.Lock()
	defer f.dbMu.Unlock()
	if f.db != nil {
		if err := f.db.Close(); err != nil {
			return fmt.Errorf("restore snapshot: close table: %w", err)
		}
		f.db = nil
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	db, err := openDB(f.path)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.db = db
	return f.rebuild()
}

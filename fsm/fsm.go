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
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/lonelypsd/lonelypsd/fsm/expiring"
	"github.com/lonelypsd/lonelypsd/fsm/globmatch"
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
	// The rows of a restore in progress, and its id (meta/restore).
	bucketStageExact = []byte("restore_exact")
	bucketStageGlob  = []byte("restore_glob")
	keyRestore       = []byte("restore")
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
// checks this before proposing; Validate checks again, so that no entry
// can make a bbolt write fail.
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

	// idxMu guards idx (not the sets stored in it, which are never
	// changed once stored). Writers hold it only to install the effects
	// of a committed transaction, readers only to look sets up and name
	// their subscribers: neither holds it across disk I/O or glob
	// matching.
	idxMu sync.RWMutex
	idx   *index

	applied uint64              // guarded by idxMu
	nodes   map[string]NodeInfo // guarded by idxMu
	// advanced is closed and replaced whenever applied grows, so
	// WaitApplied can block without polling. Guarded by idxMu.
	advanced chan struct{}
	// trie holds the glob patterns of idx.globs. Each batch publishes a
	// new one and never changes a published one, so Match walks it with
	// no lock held: a slow match cannot delay Apply.
	trie atomic.Pointer[globmatch.Index]

	// writeErr is the failure of the table write being retried, if any.
	writeErr  atomic.Pointer[writeFailure]
	closing   chan struct{} // closed by StopRetrying
	closeOnce sync.Once
	// retryMin and retryMax bound the delay between tries of a failing
	// write (tests shorten them).
	retryMin, retryMax time.Duration
	// matchHook, when set (by tests), runs in Match for every glob
	// pattern matched, while Match walks the glob tree.
	matchHook func()
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
	f := &FSM{path: path, log: log, db: db, closing: make(chan struct{}), retryMin: retryMin, retryMax: retryMax}
	if err := f.load(); err != nil {
		if f.db != nil {
			_ = f.db.Close()
		}
		return nil, err
	}
	return f, nil
}

// load rebuilds the index from the open table, then opens the table
// afresh. The rebuild read every page through bbolt's memory map, and
// those pages would stay in the node's resident memory (as much again as
// the file) until the kernel needs them; a new map holds only the pages
// later reads touch. Callers hold dbMu (or own f); f.db is nil after a
// failed reopen.
func (f *FSM) load() error {
	if err := f.rebuild(); err != nil {
		return err
	}
	err := f.db.Close()
	f.db = nil
	if err != nil {
		return fmt.Errorf("reopen subscription table: %w", err)
	}
	db, err := openDB(f.path)
	if err != nil {
		return err
	}
	f.db = db
	return nil
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
		for _, b := range [][]byte{bucketMeta, bucketExact, bucketGlob, bucketNodes, bucketRequests, bucketReqTimes, bucketCodes, bucketCodeExp, bucketStageExact, bucketStageGlob} {
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
	var (
		idx     *index
		trie    *globmatch.Index
		nodes   = map[string]NodeInfo{}
		applied uint64
	)
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
		idx, trie, err = f.loadRows(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("rebuild index from %s: %w", f.path, err)
	}
	f.idxMu.Lock()
	f.idx, f.applied, f.nodes = idx, applied, nodes
	f.trie.Store(trie)
	if f.advanced != nil {
		close(f.advanced)
	}
	f.advanced = make(chan struct{})
	f.idxMu.Unlock()
	return nil
}

// loadRows builds the index and glob tree of the rows in tx. The maps
// are sized for one key a row up front (a page walk, far cheaper than
// growing them row by row), which overestimates only where rows share
// keys.
func (f *FSM) loadRows(tx *bolt.Tx) (*index, *globmatch.Index, error) {
	exact, glob := tx.Bucket(bucketExact), tx.Bucket(bucketGlob)
	l := &loader{x: newIndex(exact.Stats().KeyN, glob.Stats().KeyN)}
	trie := globmatch.NewIndex()
	err := eachRowIn(tx, func(kind Kind, url, key, recovery []byte) error {
		if l.add(kind, url, key, recovery) && kind == Glob {
			if err := trie.AddNew(string(key)); err != nil {
				// Validate refuses such globs; one stored by an older
				// version is kept but cannot match.
				f.log.Error("glob not indexed", "glob", string(key), "err", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	l.done()
	return l.x, trie, nil
}

// eachRowIn calls fn for every row in tx in table order (kind, URL, key);
// url, key and recovery are bbolt's memory, valid only during tx. A
// damaged row key, or an error from fn, stops the walk and is returned.
func eachRowIn(tx *bolt.Tx, fn func(kind Kind, url, key, recovery []byte) error) error {
	for _, kind := range []Kind{Exact, Glob} {
		err := tx.Bucket(kind.bucket()).ForEach(func(k, v []byte) error {
			url, key, err := splitKeyBytes(k)
			if err != nil {
				return err
			}
			return fn(kind, url, key, v)
		})
		if err != nil {
			return err
		}
	}
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

// StopRetrying makes a table write that fails give up instead of being
// retried: its batch is answered with ErrClosed and, not being in bbolt,
// applied again on the next start. Call it before shutting Raft down,
// whose shutdown waits for the batch being applied. Close calls it.
func (f *FSM) StopRetrying() {
	f.closeOnce.Do(func() { close(f.closing) })
}

// Close closes the bbolt file. Apply must not be called afterwards.
func (f *FSM) Close() error {
	f.StopRetrying()
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

// isContentError reports whether err is bbolt (or the expiring sets)
// refusing a key or value for its size or emptiness: a verdict on the
// data written, not on the disk.
func isContentError(err error) bool {
	return errors.Is(err, berrors.ErrKeyTooLarge) || errors.Is(err, berrors.ErrValueTooLarge) ||
		errors.Is(err, berrors.ErrKeyRequired) || errors.Is(err, expiring.ErrKey)
}

// ApplyBatch implements raft.BatchingFSM: the whole batch is one bbolt
// transaction, hence one fsync however many subscribers were waiting.
//
// An entry that is invalid (see Command.Validate), or that bbolt refuses
// to store, is answered with an error and skipped; the verdict depends
// only on the entry and the table, so every replica skips the same
// entries. A write that fails otherwise (disk full, I/O error) is retried
// with backoff until it succeeds or the FSM is closed: the replica must
// not skip an entry its peers applied, and the table on disk is as the
// last committed batch left it, so the retry decides exactly as the first
// try would have. Reads go on meanwhile; WriteErr reports the failure.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	f.dbMu.RLock()
	defer f.dbMu.RUnlock()
	if f.db == nil {
		return refuseAll(len(logs), ErrClosed)
	}
	applied := f.AppliedIndex()
	cmds := decodeAll(logs, applied)
	refused := map[int]error{}
	delay := time.Duration(0)
	for {
		a, err := f.try(logs, cmds, applied, refused)
		if err == nil {
			f.writeRecovered()
			if a.replaced {
				if err := f.rebuild(); err != nil {
					// bbolt holds the batch; the next start rebuilds from it.
					f.log.Error("rebuilding the index after a restore failed", "err", err)
				}
			} else {
				f.publish(a.st, a.last)
			}
			f.logRefused(logs, a.out)
			return a.out
		}
		var ee *entryError
		if errors.As(err, &ee) && isContentError(ee.err) {
			// bbolt refused what this entry asked to store; Validate keeps
			// this from happening, and should it anyway, the entry is
			// refused rather than the batch.
			refused[ee.i] = fmt.Errorf("%w: %w", ErrInvalidCommand, ee.err)
			continue
		}
		if !f.waitRetry(err, &delay) {
			// Closed: nothing of the batch is in bbolt, so the next start
			// applies it again.
			return refuseAll(len(logs), ErrClosed)
		}
	}
}

func refuseAll(n int, err error) []interface{} {
	out := make([]interface{}, n)
	for i := range out {
		out[i] = Result{Err: err}
	}
	return out
}

func (f *FSM) logRefused(logs []*raft.Log, out []interface{}) {
	for i, o := range out {
		if r, ok := o.(Result); ok && r.Err != nil {
			f.log.Warn("refused raft entry; it changes nothing", "index", logs[i].Index, "err", r.Err)
		}
	}
}

// Retry delays of a failing table write.
const (
	retryMin = 50 * time.Millisecond
	retryMax = 5 * time.Second
)

// waitRetry records a failed write, waits before the next try and reports
// false when the FSM was closed meanwhile.
func (f *FSM) waitRetry(err error, delay *time.Duration) bool {
	if *delay == 0 {
		*delay = f.retryMin
	} else {
		*delay = min(2**delay, f.retryMax)
	}
	since := time.Now()
	if prev := f.writeErr.Load(); prev != nil {
		since = prev.since
	} else {
		f.log.Error("subscription table write failed; retrying until it succeeds", "err", err)
	}
	f.writeErr.Store(&writeFailure{err: err, since: since})
	t := time.NewTimer(*delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-f.closing:
		return false
	}
}

func (f *FSM) writeRecovered() {
	if prev := f.writeErr.Swap(nil); prev != nil {
		f.log.Info("subscription table writes succeed again", "failing_for", time.Since(prev.since).Round(time.Millisecond))
	}
}

type writeFailure struct {
	err   error
	since time.Time
}

// ErrWriteFailing is wrapped by WriteErr.
var ErrWriteFailing = errors.New("fsm: subscription table cannot be written")

// WriteErr returns why the table cannot be written at the moment (disk
// full, I/O error), or nil when the last write succeeded. While it is
// non-nil, applying is stalled and retried; reads still work.
func (f *FSM) WriteErr() error {
	p := f.writeErr.Load()
	if p == nil {
		return nil
	}
	return fmt.Errorf("%w since %s: %w", ErrWriteFailing, p.since.UTC().Format(time.RFC3339), p.err)
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
	return f.load()
}

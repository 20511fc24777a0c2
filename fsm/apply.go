package fsm

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/lonelypsd/lonelypsd/fsm/expiring"
)

// attempt is one try at applying a batch of log entries in one bbolt
// transaction. A failed try is thrown away whole (bbolt rolled the
// transaction back) and the next starts afresh from the same state, so
// every try of a batch decides alike.
type attempt struct {
	f        *FSM
	tx       *bolt.Tx
	requests expiring.Set
	codes    expiring.Set
	// clock is the log clock (see keyClock) as of the entry being applied.
	clock int64

	out []interface{}
	// st is what the try changes in the index, staged as it goes and
	// published once the transaction commits.
	st *staged
	// last is the index of the last entry of the batch (or the applied
	// index before it, when every entry was applied already).
	last uint64
	// rows is the change this try made to each URL's row count, on top
	// of the index's count (the index learns of it only after commit).
	rows map[string]int
	// replaced is set once a restore swapped the table in this try: the
	// index is then rebuilt from bbolt instead of patched with effects,
	// and rows are counted in bbolt.
	replaced bool
	// key is the row key being read or written (see rowKey).
	key []byte
	// at is the position in the batch of the entry being applied.
	at int
	// runs are row writes deferred to be made in key order (see flush),
	// one run a URL and bucket, their rows in puts; putURLs are the URLs
	// they belong to.
	runs    []putRun
	puts    []entry
	putURLs map[string]struct{}
}

// putRun is the deferred writes of one URL's rows in one bucket:
// puts[from:to], ascending by key.
type putRun struct {
	kind     Kind
	bucket   *bolt.Bucket
	url      string
	from, to int
	at       int // the entry that asked for them
}

// entryError is a failure applying one entry, as opposed to committing.
type entryError struct {
	i   int // position in the batch
	err error
}

func (e *entryError) Error() string { return fmt.Sprintf("entry %d of the batch: %v", e.i, e.err) }
func (e *entryError) Unwrap() error { return e.err }

// effect is one change to the in-memory index. It is staged as the
// transaction makes it, and readers see it only once the transaction has
// committed.
type effect struct {
	remove   bool
	node     *NodeInfo // set for member changes
	kind     Kind
	url      string
	key      string
	recovery string
}

var (
	requestSet = expiring.Buckets{Keys: bucketRequests, Index: bucketReqTimes}
	codeSet    = expiring.Buckets{Keys: bucketCodes, Index: bucketCodeExp}
)

// try applies logs in one transaction. Entries at or below applied are in
// bbolt already: Raft replays the entries after its last snapshot on
// every start, and applying them twice would turn a subscribe into a
// conflict. refused holds the entries an earlier try found bbolt refuses
// to store; they are answered with their error and otherwise skipped.
func (f *FSM) try(logs []*raft.Log, cmds []decoded, applied uint64, refused map[int]error) (*attempt, error) {
	rows := rowsOf(cmds)
	a := &attempt{f: f, out: make([]interface{}, len(logs)), last: applied, rows: map[string]int{}, st: newStaged(rows), puts: make([]entry, 0, rows)}
	err := f.db.Update(func(tx *bolt.Tx) error {
		if err := a.begin(tx); err != nil {
			return err
		}
		for i, l := range logs {
			if l.Index <= applied {
				a.out[i] = Result{Outcome: Applied}
				continue
			}
			a.last = l.Index
			if l.Type != raft.LogCommand {
				continue
			}
			if err, ok := refused[i]; ok {
				a.out[i] = Result{Err: err}
				continue
			}
			a.at = i
			res, err := a.entry(l, cmds[i])
			var ee *entryError
			if errors.As(err, &ee) {
				return ee
			}
			if err != nil {
				return &entryError{i: i, err: err}
			}
			a.out[i] = res
		}
		return a.finish(applied)
	})
	return a, err
}

func (a *attempt) begin(tx *bolt.Tx) error {
	a.tx = tx
	var err error
	if a.requests, err = requestSet.In(tx); err != nil {
		return err
	}
	if a.codes, err = codeSet.In(tx); err != nil {
		return err
	}
	if v := tx.Bucket(bucketMeta).Get(keyClock); len(v) == 8 {
		a.clock = int64(binary.BigEndian.Uint64(v))
	}
	for _, name := range [][]byte{bucketExact, bucketGlob} {
		tx.Bucket(name).FillPercent = rowFill
	}
	return nil
}

// rowFill is how full bbolt fills the row buckets' pages when it splits
// them. A URL's rows are keyed together and loads come URL by URL, so
// most inserts append at the right edge of the tree, and bbolt's default
// (half) would leave every page it splits there half empty for good: a
// table twice its size, twice the pages to write per commit and to copy
// per snapshot. The rest is room for rows inserted among existing ones.
const rowFill = 0.9

// rowKey is makeKey into the attempt's scratch buffer: bbolt copies the
// key it stores and keeps none it reads or deletes, so one buffer serves
// every row.
func (a *attempt) rowKey(url, key string) []byte {
	a.key = appendKey(a.key[:0], url, key)
	return a.key
}

// finish drops expired request ids and codes and records the batch's
// clock and last index. Dropping is garbage collection only: what it
// drops, every later entry would judge expired anyway (the clock never
// goes back), so when it runs does not change any outcome.
func (a *attempt) finish(applied uint64) error {
	if err := a.flush(); err != nil {
		return err
	}
	if cutoff := a.clock - RequestRetention.Milliseconds(); cutoff > 0 {
		if err := a.requests.DropBefore(cutoff); err != nil {
			return err
		}
	}
	if a.clock > 0 {
		if err := a.codes.DropBefore(a.clock); err != nil {
			return err
		}
	}
	if a.last == applied {
		return nil
	}
	meta := a.tx.Bucket(bucketMeta)
	if err := meta.Put(keyClock, binary.BigEndian.AppendUint64(nil, uint64(a.clock))); err != nil {
		return err
	}
	return meta.Put(keyApplied, binary.BigEndian.AppendUint64(nil, a.last))
}

// decoded is a log entry's command, decoded once per batch however many
// tries the batch takes.
type decoded struct {
	cmd Command
	err error
}

// decodeAll decodes the command entries of logs after applied.
func decodeAll(logs []*raft.Log, applied uint64) []decoded {
	out := make([]decoded, len(logs))
	for i, l := range logs {
		if l.Index > applied && l.Type == raft.LogCommand {
			out[i].cmd, out[i].err = DecodeCommand(l.Data)
		}
	}
	return out
}

// rowsOf is how many rows cmds name, which sizes a batch's staging.
func rowsOf(cmds []decoded) int {
	n := 0
	for _, d := range cmds {
		n += 1 + len(d.cmd.Exact) + len(d.cmd.Globs)
	}
	return n
}

// entry applies one command entry. An invalid entry is an error result
// and changes nothing, not even the clock; the returned error is for a
// store failure.
func (a *attempt) entry(l *raft.Log, d decoded) (Result, error) {
	cmd, err := d.cmd, d.err
	if err != nil {
		return Result{Err: err}, nil
	}
	if !l.AppendedAt.IsZero() {
		a.clock = max(a.clock, l.AppendedAt.UnixMilli())
	}
	if prev, ok := a.seenRequest(cmd.ID); ok {
		return Result{Outcome: prev}, nil
	}
	res := Result{Outcome: Replayed}
	fresh, err := a.recordCode(cmd.AuthCode)
	if err != nil {
		return Result{}, fmt.Errorf("record auth code: %w", err)
	}
	if fresh {
		if res, err = a.apply(cmd); err != nil {
			return Result{}, fmt.Errorf("apply %s: %w", cmd.Op, err)
		}
	}
	if cmd.ID != "" {
		if err := a.requests.Put([]byte(cmd.ID), a.clock, []byte{byte(res.Outcome)}); err != nil {
			return Result{}, fmt.Errorf("record request id: %w", err)
		}
	}
	return res, nil
}

// seenRequest returns the outcome of a request id applied within
// RequestRetention of the log clock.
func (a *attempt) seenRequest(id string) (Outcome, bool) {
	if id == "" {
		return 0, false
	}
	at, v, ok := a.requests.Get([]byte(id))
	if !ok || len(v) != 1 || at < a.clock-RequestRetention.Milliseconds() {
		return 0, false
	}
	return Outcome(v[0]), true
}

// recordCode notes an HMAC code and reports whether it was fresh. Expiry
// is judged by the log clock, so every replica decides alike.
func (a *attempt) recordCode(c *AuthCode) (bool, error) {
	if c == nil || len(c.Code) == 0 {
		return true, nil
	}
	if exp, _, ok := a.codes.Get(c.Code); ok && exp >= a.clock {
		return false, nil
	}
	return true, a.codes.Put(c.Code, c.ExpiresMs, nil)
}

func (a *attempt) apply(c Command) (Result, error) {
	if err := a.flushFor(c); err != nil {
		return Result{}, err
	}
	switch c.Op {
	case OpSubscribeExact:
		return a.subscribe(Exact, c.URL, string(c.Topic), c.Recovery, c.MaxPerURL)
	case OpSubscribeGlob:
		return a.subscribe(Glob, c.URL, c.Glob, c.Recovery, c.MaxPerURL)
	case OpUnsubscribeExact:
		return a.unsubscribe(Exact, c.URL, string(c.Topic))
	case OpUnsubscribeGlob:
		return a.unsubscribe(Glob, c.URL, c.Glob)
	case OpSetSubscriptions:
		return a.setSubscriptions(c)
	case OpSetNode:
		return a.setNode(*c.Node)
	case OpRemoveNode:
		return a.removeNode(c.Node.ID)
	case OpRestoreBegin:
		return a.restoreBegin(c.Restore)
	case OpRestoreRows:
		return a.restoreRows(c.Restore, c.Rows)
	case OpRestoreCommit:
		return a.restoreCommit(c.Restore, c.Count)
	}
	// Validate admits no other op.
	return Result{Err: fmt.Errorf("%w: unknown op %d", ErrInvalidCommand, c.Op)}, nil
}

// rowCount is how many rows url holds at this point of the batch. The
// index is rebuilt from bbolt and follows every commit, so every replica
// counts alike.
func (a *attempt) rowCount(url string) int {
	if a.replaced {
		return a.countRows(url)
	}
	a.f.idxMu.RLock()
	n := a.f.idx.strs.rowsOf(url)
	a.f.idxMu.RUnlock()
	return n + a.rows[url]
}

func (a *attempt) subscribe(kind Kind, url, key, recovery string, maxPerURL int) (Result, error) {
	b := a.tx.Bucket(kind.bucket())
	k := a.rowKey(url, key)
	if b.Get(k) != nil {
		return Result{Outcome: Conflict}, nil
	}
	if maxPerURL > 0 && a.rowCount(url) >= maxPerURL {
		return Result{Outcome: TooMany}, nil
	}
	if err := b.Put(k, []byte(recovery)); err != nil {
		return Result{}, err
	}
	a.rows[url]++
	a.effect(effect{kind: kind, url: url, key: key, recovery: recovery})
	return Result{Outcome: Applied}, nil
}

func (a *attempt) unsubscribe(kind Kind, url, key string) (Result, error) {
	b := a.tx.Bucket(kind.bucket())
	k := a.rowKey(url, key)
	if b.Get(k) == nil {
		return Result{Outcome: Conflict}, nil
	}
	if err := b.Delete(k); err != nil {
		return Result{}, err
	}
	a.rows[url]--
	a.effect(effect{remove: true, kind: kind, url: url, key: key})
	return Result{Outcome: Applied}, nil
}

type entry struct{ key, recovery string }

func (a *attempt) setSubscriptions(c Command) (Result, error) {
	if c.MaxPerURL > 0 && len(c.Exact)+len(c.Globs) > c.MaxPerURL {
		return Result{Outcome: TooMany}, nil
	}
	exact := make([]entry, len(c.Exact))
	for i, e := range c.Exact {
		exact[i] = entry{string(e.Topic), e.Recovery}
	}
	globs := make([]entry, len(c.Globs))
	for i, e := range c.Globs {
		globs[i] = entry{e.Glob, e.Recovery}
	}
	if err := a.reconcile(Exact, c.URL, exact); err != nil {
		return Result{}, err
	}
	if err := a.reconcile(Glob, c.URL, globs); err != nil {
		return Result{}, err
	}
	return Result{Outcome: Applied}, nil
}

// reconcile makes the rows of url in one bucket equal to want (strictly
// ascending, as Validate checks). Rows in both keep existing and take
// want's recovery URL, so check_subscriptions reports the etag that was
// just set.
func (a *attempt) reconcile(kind Kind, url string, want []entry) error {
	b := a.tx.Bucket(kind.bucket())
	prefix := makeKey(url, "")
	var have []entry
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		have = append(have, entry{string(k[len(prefix):]), string(v)})
	}
	put := func(e entry) {
		a.effect(effect{kind: kind, url: url, key: e.key, recovery: e.recovery})
		a.puts = append(a.puts, e)
	}
	rows, from := 0, len(a.puts)
	defer func() {
		a.rows[url] += rows
		a.endRun(kind, b, url, from)
	}()
	i, j := 0, 0
	for i < len(want) || j < len(have) {
		switch {
		case j == len(have) || (i < len(want) && want[i].key < have[j].key):
			rows++
			put(want[i])
			i++
		case i == len(want) || want[i].key > have[j].key:
			rows--
			a.effect(effect{remove: true, kind: kind, url: url, key: have[j].key})
			if err := b.Delete(a.rowKey(url, have[j].key)); err != nil {
				return err
			}
			j++
		default:
			if want[i].recovery != have[j].recovery {
				put(want[i])
			}
			i++
			j++
		}
	}
	return nil
}

func (a *attempt) setNode(n NodeInfo) (Result, error) {
	v, err := json.Marshal(n)
	if err != nil {
		return Result{}, err
	}
	if err := a.tx.Bucket(bucketNodes).Put([]byte(n.ID), v); err != nil {
		return Result{}, err
	}
	a.effect(effect{node: &n})
	return Result{Outcome: Applied}, nil
}

func (a *attempt) removeNode(id string) (Result, error) {
	b := a.tx.Bucket(bucketNodes)
	if b.Get([]byte(id)) == nil {
		return Result{Outcome: Conflict}, nil
	}
	if err := b.Delete([]byte(id)); err != nil {
		return Result{}, err
	}
	a.effect(effect{remove: true, node: &NodeInfo{ID: id}})
	return Result{Outcome: Applied}, nil
}

// makeKey lays rows out as u16 len(url) || url || key so that one URL's
// rows are contiguous and ordered by key bytes: exactly the order the
// strong etag hashes them in.
func makeKey(url, key string) []byte {
	return appendKey(make([]byte, 0, 2+len(url)+len(key)), url, key)
}

// appendKey appends makeKey(url, key) to k.
func appendKey(k []byte, url, key string) []byte {
	k = binary.BigEndian.AppendUint16(k, uint16(len(url)))
	k = append(k, url...)
	return append(k, key...)
}

// splitKeyBytes returns the URL and key of a row key; both share k's
// memory.
func splitKeyBytes(k []byte) (url, key []byte, err error) {
	if len(k) < 2 {
		return nil, nil, fmt.Errorf("corrupt row key %x", k)
	}
	n := int(binary.BigEndian.Uint16(k))
	if len(k) < 2+n {
		return nil, nil, fmt.Errorf("corrupt row key %x", k)
	}
	return k[2 : 2+n], k[2+n:], nil
}

// A batch's set_subscriptions come in the order their requests arrived,
// not in key order; bbolt inserts each key into the node of its page,
// which grows to hold all the batch's new rows of that page, and an
// insert before keys already there moves them all. So their new and
// changed rows are queued in a.puts and written in key order (flush).

// endRun closes the run of url's writes to b deferred since puts[from].
func (a *attempt) endRun(kind Kind, b *bolt.Bucket, url string, from int) {
	if from == len(a.puts) {
		return
	}
	a.runs = append(a.runs, putRun{kind: kind, bucket: b, url: url, from: from, to: len(a.puts), at: a.at})
	if a.putURLs == nil {
		a.putURLs = map[string]struct{}{}
	}
	a.putURLs[url] = struct{}{}
}

// flushFor makes the deferred writes c could read: those of its URL (a
// URL's rows share a key prefix no other URL's rows have), or all of
// them before a restore moves the row buckets.
func (a *attempt) flushFor(c Command) error {
	switch c.Op {
	case OpRestoreBegin, OpRestoreRows, OpRestoreCommit:
		return a.flush()
	case OpSetNode, OpRemoveNode:
		return nil
	}
	if _, ok := a.putURLs[c.URL]; ok {
		return a.flush()
	}
	return nil
}

// flush makes the deferred writes, in bucket and key order: runs of
// one bucket hold different URLs, and a row key starts with its URL's
// length and bytes, so ordering the runs by those orders every write. A
// write bbolt refuses is the failure of the entry that asked for it.
func (a *attempt) flush() error {
	slices.SortFunc(a.runs, func(x, y putRun) int {
		if c := cmp.Compare(x.kind, y.kind); c != 0 {
			return c
		}
		if c := cmp.Compare(len(x.url), len(y.url)); c != 0 {
			return c
		}
		return strings.Compare(x.url, y.url)
	})
	for _, r := range a.runs {
		for _, e := range a.puts[r.from:r.to] {
			// bbolt copies the key; the value it keeps until the commit.
			if err := r.bucket.Put(a.rowKey(r.url, e.key), []byte(e.recovery)); err != nil {
				return &entryError{i: r.at, err: err}
			}
		}
	}
	a.runs, a.puts = a.runs[:0], a.puts[:0]
	clear(a.putURLs)
	return nil
}

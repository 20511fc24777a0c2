package fsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lonelypsd/lonelypsd/fsm/globmatch"
)

// Kind tells exact subscriptions from glob subscriptions.
type Kind uint8

const (
	Exact Kind = iota + 1
	Glob
)

func (k Kind) String() string {
	if k == Glob {
		return "glob"
	}
	return "exact"
}

func (k Kind) bucket() []byte {
	if k == Glob {
		return bucketGlob
	}
	return bucketExact
}

// Subscription is one row of the table.
type Subscription struct {
	Kind Kind
	URL  string
	// Key is the topic bytes of an exact subscription or the pattern of a
	// glob subscription.
	Key string
	// Recovery is the MISSED target; empty means none.
	Recovery string
}

// Unsubscribe is the command that removes s.
func (s Subscription) Unsubscribe() Command {
	if s.Kind == Glob {
		return Command{Op: OpUnsubscribeGlob, URL: s.URL, Glob: s.Key}
	}
	return Command{Op: OpUnsubscribeExact, URL: s.URL, Topic: []byte(s.Key)}
}

type setKey struct {
	kind Kind
	key  string
}

// staged is what one committed batch changes in the index, prepared
// without holding idxMu.
type staged struct {
	// sets are the changed sets: copies this batch owns (an empty one
	// removes its key).
	sets map[setKey]stagedSet
	// spare is where sets new to the index take their first pair from
	// (see one)
	spare []pair
	// fresh are the strings new to the table, in the order their ids
	// were reserved; freshIDs maps them to those ids.
	fresh    []string
	freshIDs map[string]uint32
	// refs and rows are the changes to the string table's counts.
	refs, rows    map[uint32]int32
	nExact, nGlob int
	nodes         []effect
	// lastURL and lastRec are the URL and recovery URL looked up last: a
	// command's effects name one URL, mostly with one recovery URL.
	lastURL, lastRec lastID
}

// stagedSet is a batch's copy of one key's set, and the slot the index
// held for the key when the batch began: publishing then stores the key
// without looking it up again.
type stagedSet struct {
	set subs
	old slot
	had bool
}

// one returns an empty set with room for one pair, cut from a block the
// batch shares instead of allocated alone. The index never keeps the
// block: a set left with one pair is stored inline, and one that grows
// past a pair is reallocated by the insert.
func (st *staged) one() subs {
	if len(st.spare) == 0 {
		st.spare = make([]pair, 256)
	}
	s := st.spare[:0:1]
	st.spare = st.spare[1:]
	return s
}

type lastID struct {
	s  string
	id uint32
}

// cachedID is id, remembering the last answer in c.
func (st *staged) cachedID(c *lastID, t *strTable, s string) uint32 {
	if s != c.s {
		c.s, c.id = s, st.id(t, s)
	}
	return c.id
}

// id returns the id s has or will have once the batch is published.
func (st *staged) id(t *strTable, s string) uint32 {
	if id, ok := t.lookup(s); ok {
		return id
	}
	if id, ok := st.freshIDs[s]; ok {
		return id
	}
	id := t.reserve(len(st.fresh))
	st.fresh = append(st.fresh, s)
	st.freshIDs[s] = id
	st.refs[id] += 0 // freed again at publish should no row keep it
	return id
}

func (st *staged) ref(id uint32, d int32) {
	if id != 0 {
		st.refs[id] += d
	}
}

func newStaged(rows int) *staged {
	return &staged{sets: make(map[setKey]stagedSet, rows), freshIDs: map[string]uint32{}, refs: map[uint32]int32{}, rows: map[uint32]int32{}}
}

// effect stages e: it copies the subscriber set e touches (once per
// batch) and changes the copy. Only the applying goroutine changes
// f.idx, so it is read here without the lock. Once a restore replaced
// the table, the index is rebuilt from bbolt instead.
func (a *attempt) effect(e effect) {
	st := a.st
	switch {
	case a.replaced:
	case e.node != nil:
		st.nodes = append(st.nodes, e)
	case e.kind == Glob:
		st.nGlob += st.change(a.f.idx, e)
	default:
		st.nExact += st.change(a.f.idx, e)
	}
}

// change applies one effect to the batch's copy of its set and returns
// the change in rows.
func (st *staged) change(x *index, e effect) (n int) {
	k := setKey{e.kind, e.key}
	ss, owned := st.sets[k]
	if !owned {
		ss.old, ss.had = x.of(e.kind)[e.key]
		if ss.had {
			ss.set = x.copySet(ss.old)
		} else {
			ss.set = st.one()
		}
	}
	set := ss.set
	u := st.cachedID(&st.lastURL, x.strs, e.url)
	i, had := set.find(u)
	switch {
	case e.remove && had:
		st.ref(set[i].rec, -1)
		set = slices.Delete(set, i, i+1)
		n = -1
	case e.remove:
		// bbolt held the row, so the index does too.
	case had:
		st.ref(set[i].rec, -1)
		set[i].rec = st.cachedID(&st.lastRec, x.strs, e.recovery)
		st.ref(set[i].rec, 1)
	default:
		r := st.cachedID(&st.lastRec, x.strs, e.recovery)
		st.ref(r, 1)
		set = slices.Insert(set, i, pair{u, r})
		n = 1
	}
	st.ref(u, int32(n))
	st.rows[u] += int32(n)
	ss.set = set
	st.sets[k] = ss
	return n
}

// nextTrie returns the glob tree after st, or nil when no pattern came or
// went. The published tree is cloned, never changed.
func (f *FSM) nextTrie(st *staged) *globmatch.Index {
	var next *globmatch.Index
	for k, ss := range st.sets {
		if k.kind != Glob {
			continue
		}
		had, has := ss.had, len(ss.set) > 0
		if had == has {
			continue
		}
		if next == nil {
			next = f.trie.Load().Clone()
		}
		if !has {
			next.Remove(k.key)
		} else if err := next.AddNew(k.key); err != nil {
			// Validate refuses such globs: this one is in bbolt but cannot
			// match anything.
			f.log.Error("glob not indexed", "glob", k.key, "err", err)
		}
	}
	return next
}

// publish makes a committed batch visible to readers. The work that
// grows with the table (copying sets, building the next glob tree) is
// done before taking idxMu; under it, only map stores and the string
// table's counts.
func (f *FSM) publish(st *staged, last uint64) {
	trie := f.nextTrie(st)
	f.idxMu.Lock()
	defer f.idxMu.Unlock()
	x := f.idx
	for k, ss := range st.sets {
		x.store(k.kind, k.key, ss)
	}
	x.strs.publish(st.fresh, st.refs, st.rows)
	x.nExact += st.nExact
	x.nGlob += st.nGlob
	for _, e := range st.nodes {
		if e.remove {
			delete(f.nodes, e.node.ID)
		} else {
			f.nodes[e.node.ID] = *e.node
		}
	}
	if trie != nil {
		f.trie.Store(trie)
	}
	if last > f.applied {
		f.applied = last
		close(f.advanced)
		f.advanced = make(chan struct{})
	}
}

// Match returns every subscription whose topic or glob matches topic:
// exact rows first, then glob rows, as the reference delivers them. A URL
// with several matching subscriptions appears once per subscription.
//
// Match holds idxMu only to look sets up and name their URLs; the glob
// patterns are tested on the published tree with no lock held, so however
// many patterns a topic is tested against, Apply and other matches go on
// meanwhile.
func (f *FSM) Match(topic []byte) []Subscription {
	var out []Subscription
	f.idxMu.RLock()
	if s, ok := f.idx.exact[string(topic)]; ok {
		out = f.idx.resolve(make([]Subscription, 0, f.idx.setLen(s)), Exact, string(topic), s)
	}
	f.idxMu.RUnlock()
	trie := f.trie.Load()
	if trie == nil || trie.Len() == 0 {
		return out
	}
	var patterns []string
	trie.Match(topic, func(pattern string) {
		if f.matchHook != nil {
			f.matchHook()
		}
		patterns = append(patterns, pattern)
	})
	if len(patterns) == 0 {
		return out
	}
	f.idxMu.RLock()
	defer f.idxMu.RUnlock()
	for _, p := range patterns {
		if s, ok := f.idx.globs[p]; ok {
			out = f.idx.resolve(out, Glob, p, s)
		}
	}
	return out
}

// Lookup reports whether a subscription exists and its recovery URL.
func (f *FSM) Lookup(kind Kind, url, key string) (recovery string, ok bool) {
	f.idxMu.RLock()
	defer f.idxMu.RUnlock()
	u, ok := f.idx.strs.lookup(url)
	if !ok {
		return "", false
	}
	s, ok := f.idx.of(kind)[key]
	if !ok {
		return "", false
	}
	rec, ok := f.idx.find(s, u)
	return f.idx.strs.strs[rec], ok
}

// Counts returns the number of exact and glob subscriptions.
func (f *FSM) Counts() (exact, globs int) {
	f.idxMu.RLock()
	defer f.idxMu.RUnlock()
	return f.idx.nExact, f.idx.nGlob
}

// URLRows is how many rows url holds, exact and glob together, and
// whether it holds any.
func (f *FSM) URLRows(url string) (int, bool) {
	f.idxMu.RLock()
	defer f.idxMu.RUnlock()
	n := f.idx.strs.rowsOf(url)
	return n, n > 0
}

// List returns the subscriptions of url, each kind ascending by key bytes:
// the order of the strong etag. It reads bbolt, so it sees exactly what
// has been applied.
func (f *FSM) List(url string) (exact, globs []Subscription, err error) {
	exact, globs, seen, err := f.listDB(url)
	if err != nil {
		return nil, nil, err
	}
	// bbolt commits before the in-memory index is updated. Whatever List
	// shows, Match must show too (a subscriber that saw its subscription
	// listed expects deliveries), so wait out that short window.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.WaitApplied(ctx, seen); err != nil {
		return nil, nil, err
	}
	return exact, globs, nil
}

// listDB reads url's rows and the applied index of the same transaction.
func (f *FSM) listDB(url string) (exact, globs []Subscription, seen uint64, err error) {
	f.dbMu.RLock()
	defer f.dbMu.RUnlock()
	if f.db == nil {
		return nil, nil, 0, ErrClosed
	}
	prefix := makeKey(url, "")
	err = f.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyApplied); len(v) == 8 {
			seen = binary.BigEndian.Uint64(v)
		}
		for _, kind := range []Kind{Exact, Glob} {
			var rows []Subscription
			c := tx.Bucket(kind.bucket()).Cursor()
			for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				rows = append(rows, Subscription{Kind: kind, URL: url, Key: string(k[len(prefix):]), Recovery: string(v)})
			}
			if kind == Exact {
				exact = rows
			} else {
				globs = rows
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("list subscriptions of %q: %w", url, err)
	}
	return exact, globs, seen, nil
}

// All returns every subscription, ordered by kind, URL and key; for
// operators and tests, not for the request path.
func (f *FSM) All() []Subscription {
	f.idxMu.RLock()
	defer f.idxMu.RUnlock()
	var out []Subscription
	for _, kind := range []Kind{Exact, Glob} {
		for key, set := range f.idx.of(kind) {
			out = f.idx.resolve(out, kind, key, set)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.URL != b.URL {
			return a.URL < b.URL
		}
		return a.Key < b.Key
	})
	return out
}

// Node returns one member's record.
func (f *FSM) Node(id string) (NodeInfo, bool) {
	f.idxMu.RLock()
	defer f.idxMu.RUnlock()
	n, ok := f.nodes[id]
	return n, ok
}

// Nodes returns the cluster members the table knows, by id.
func (f *FSM) Nodes() map[string]NodeInfo {
	f.idxMu.RLock()
	defer f.idxMu.RUnlock()
	out := make(map[string]NodeInfo, len(f.nodes))
	for id, n := range f.nodes {
		out[id] = n
	}
	return out
}

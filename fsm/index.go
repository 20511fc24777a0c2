package fsm

import (
	"bytes"
	"cmp"
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

// index is the read side used by notify: exact topics and glob patterns
// in maps, each to the set of its subscribers, and the interned URLs.
// A set, once stored in a map, is never changed: a batch that changes it
// stores a changed copy. The maps and the string table are guarded by
// FSM.idxMu; readers hold it to look a set up and to turn its ids into
// strings. The glob patterns are also in FSM.trie, which finds the ones
// matching a topic.
type index struct {
	exact map[string]subs // topic -> subscribers
	globs map[string]subs // pattern -> subscribers
	// strs holds the URLs and recovery URLs the sets name, and each URL's
	// row count (exact and glob together) for the per-URL cap.
	strs          *strTable
	nExact, nGlob int
}

// pair is one row of a subscriber set: the ids of its URL and recovery
// URL in index.strs.
type pair struct{ url, rec uint32 }

// subs is a subscriber set, ascending by URL id.
type subs []pair

// find returns where url's pair is or would be.
func (s subs) find(url uint32) (int, bool) {
	return slices.BinarySearchFunc(s, url, func(p pair, u uint32) int { return cmp.Compare(p.url, u) })
}

func newIndex() *index {
	return &index{exact: make(map[string]subs), globs: make(map[string]subs), strs: newStrTable()}
}

func (x *index) of(kind Kind) map[string]subs {
	if kind == Glob {
		return x.globs
	}
	return x.exact
}

// addRow adds a row read from bbolt to an index nobody else sees yet
// (rebuild) and reports whether key is new to the index. A row's key
// string is allocated only for a key new to the index, its URLs only
// when new to the table.
func (x *index) addRow(kind Kind, url, key, rec []byte) (newKey bool) {
	m := x.of(kind)
	u, r := x.strs.internBytes(url), x.strs.internBytes(rec)
	set, ok := m[string(key)]
	i, had := set.find(u)
	if had {
		// bbolt keys are unique, so a rebuild meets each row once.
		return false
	}
	x.strs.addRow(u, r)
	if kind == Glob {
		x.nGlob++
	} else {
		x.nExact++
	}
	set = slices.Insert(set, i, pair{u, r})
	if ok {
		m[string(key)] = set
	} else {
		m[string(key)] = slices.Clip(set)
	}
	return !ok
}

// resolve turns a set's pairs into subscriptions. Callers hold idxMu.
func (x *index) resolve(out []Subscription, kind Kind, key string, set subs) []Subscription {
	for _, p := range set {
		out = append(out, Subscription{Kind: kind, URL: x.strs.strs[p.url], Key: key, Recovery: x.strs.strs[p.rec]})
	}
	return out
}

// perURL is every URL's row count, for tests.
func (x *index) perURL() map[string]int {
	out := map[string]int{}
	for id, n := range x.strs.rows {
		if n > 0 {
			out[x.strs.strs[id]] = int(n)
		}
	}
	return out
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
	sets map[setKey]subs
	// fresh are the strings new to the table, in the order their ids
	// were reserved; freshIDs maps them to those ids.
	fresh    []string
	freshIDs map[string]uint32
	// refs and rows are the changes to the string table's counts.
	refs, rows    map[uint32]int32
	nExact, nGlob int
	nodes         []effect
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

// stage copies every subscriber set the effects touch (once per batch)
// and applies the effects to the copies. Only the applying goroutine
// changes f.idx, so it reads it here without the lock.
func (f *FSM) stage(effects []effect) *staged {
	st := &staged{sets: map[setKey]subs{}, freshIDs: map[string]uint32{}, refs: map[uint32]int32{}, rows: map[uint32]int32{}}
	for _, e := range effects {
		if e.node != nil {
			st.nodes = append(st.nodes, e)
			continue
		}
		n := st.change(f.idx, e)
		if e.kind == Glob {
			st.nGlob += n
		} else {
			st.nExact += n
		}
	}
	return st
}

// change applies one effect to the batch's copy of its set and returns
// the change in rows.
func (st *staged) change(x *index, e effect) (n int) {
	k := setKey{e.kind, e.key}
	set, owned := st.sets[k]
	if !owned {
		published := x.of(e.kind)[e.key]
		set = make(subs, len(published), len(published)+1)
		copy(set, published)
	}
	u := st.id(x.strs, e.url)
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
		set[i].rec = st.id(x.strs, e.recovery)
		st.ref(set[i].rec, 1)
	default:
		r := st.id(x.strs, e.recovery)
		st.ref(r, 1)
		set = slices.Insert(set, i, pair{u, r})
		n = 1
	}
	st.ref(u, int32(n))
	st.rows[u] += int32(n)
	st.sets[k] = set
	return n
}

// nextTrie returns the glob tree after st, or nil when no pattern came or
// went. The published tree is cloned, never changed.
func (f *FSM) nextTrie(st *staged) *globmatch.Index {
	var next *globmatch.Index
	for k, set := range st.sets {
		if k.kind != Glob {
			continue
		}
		had, has := len(f.idx.globs[k.key]) > 0, len(set) > 0
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
func (f *FSM) publish(effects []effect, last uint64) {
	st := f.stage(effects)
	trie := f.nextTrie(st)
	f.idxMu.Lock()
	defer f.idxMu.Unlock()
	x := f.idx
	for k, set := range st.sets {
		if len(set) == 0 {
			delete(x.of(k.kind), k.key)
		} else {
			x.of(k.kind)[k.key] = set
		}
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
	if set := f.idx.exact[string(topic)]; len(set) > 0 {
		out = f.idx.resolve(make([]Subscription, 0, len(set)), Exact, string(topic), set)
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
		out = f.idx.resolve(out, Glob, p, f.idx.globs[p])
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
	set := f.idx.of(kind)[key]
	i, ok := set.find(u)
	if !ok {
		return "", false
	}
	return f.idx.strs.strs[set[i].rec], true
}

// Counts returns the number of exact and glob subscriptions.
func (f *FSM) Counts() (exact, globs int) {
	f.idxMu.RLock()
	defer f.idxMu.RUnlock()
	return f.idx.nExact, f.idx.nGlob
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

package fsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
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
// in maps, each to the set of its subscribers (url -> recovery), and the
// row count of every URL. A set, once stored in a map, is never changed:
// a batch that changes it stores a changed copy, so a reader may use a set
// it looked up after letting go of FSM.idxMu. The glob patterns are also
// in FSM.trie, which finds the ones matching a topic.
type index struct {
	exact map[string]map[string]string // topic -> url -> recovery
	globs map[string]map[string]string // pattern -> url -> recovery
	// perURL counts each URL's rows, exact and glob together, for the
	// per-URL cap.
	perURL        map[string]int
	nExact, nGlob int
}

func newIndex() *index {
	return &index{
		exact:  make(map[string]map[string]string),
		globs:  make(map[string]map[string]string),
		perURL: make(map[string]int),
	}
}

func (x *index) of(kind Kind) map[string]map[string]string {
	if kind == Glob {
		return x.globs
	}
	return x.exact
}

// add adds a row to an index nobody else sees yet (rebuild) and reports
// whether key is new to the index.
func (x *index) add(kind Kind, url, key, recovery string) (newKey bool) {
	m := x.of(kind)
	urls := m[key]
	if urls == nil {
		urls = make(map[string]string, 1)
		m[key] = urls
		newKey = true
	}
	if _, ok := urls[url]; !ok {
		x.perURL[url]++
		if kind == Glob {
			x.nGlob++
		} else {
			x.nExact++
		}
	}
	urls[url] = recovery
	return newKey
}

type setKey struct {
	kind Kind
	key  string
}

// staged is what one committed batch changes in the index, prepared
// without holding idxMu.
type staged struct {
	sets          map[setKey]map[string]string // changed copies of subscriber sets
	rows          map[string]int               // per-URL row count changes
	nExact, nGlob int
	nodes         []effect
}

// stage copies every subscriber set the effects touch (once per batch)
// and applies the effects to the copies. Only the applying goroutine
// changes f.idx, so it reads it here without the lock.
func (f *FSM) stage(effects []effect) *staged {
	st := &staged{sets: map[setKey]map[string]string{}, rows: map[string]int{}}
	for _, e := range effects {
		if e.node != nil {
			st.nodes = append(st.nodes, e)
			continue
		}
		k := setKey{e.kind, e.key}
		set, ok := st.sets[k]
		if !ok {
			set = maps.Clone(f.idx.of(e.kind)[e.key])
			if set == nil {
				set = make(map[string]string, 1)
			}
			st.sets[k] = set
		}
		_, had := set[e.url]
		n := 0
		switch {
		case e.remove && had:
			delete(set, e.url)
			n = -1
		case !e.remove:
			set[e.url] = e.recovery
			if !had {
				n = 1
			}
		}
		st.rows[e.url] += n
		if e.kind == Glob {
			st.nGlob += n
		} else {
			st.nExact += n
		}
	}
	return st
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
// done before taking idxMu; under it, only map stores.
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
	for url, n := range st.rows {
		if n += x.perURL[url]; n > 0 {
			x.perURL[url] = n
		} else {
			delete(x.perURL, url)
		}
	}
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
// Match holds idxMu only for map lookups; the glob patterns are tested on
// the published tree with no lock held, so however many patterns a topic
// is tested against, Apply and other matches go on meanwhile.
func (f *FSM) Match(topic []byte) []Subscription {
	f.idxMu.RLock()
	urls := f.idx.exact[string(topic)]
	f.idxMu.RUnlock()
	var out []Subscription
	if len(urls) > 0 {
		out = make([]Subscription, 0, len(urls))
		for url, rec := range urls {
			out = append(out, Subscription{Kind: Exact, URL: url, Key: string(topic), Recovery: rec})
		}
	}
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
	sets := make([]map[string]string, len(patterns))
	f.idxMu.RLock()
	for i, p := range patterns {
		sets[i] = f.idx.globs[p]
	}
	f.idxMu.RUnlock()
	for i, p := range patterns {
		for url, rec := range sets[i] {
			out = append(out, Subscription{Kind: Glob, URL: url, Key: p, Recovery: rec})
		}
	}
	return out
}

// Lookup reports whether a subscription exists and its recovery URL.
func (f *FSM) Lookup(kind Kind, url, key string) (recovery string, ok bool) {
	f.idxMu.RLock()
	defer f.idxMu.RUnlock()
	m := f.idx.exact
	if kind == Glob {
		m = f.idx.globs
	}
	recovery, ok = m[key][url]
	return recovery, ok
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
	n, ok := f.idx.perURL[url]
	return n, ok
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
	for _, part := range []struct {
		kind Kind
		m    map[string]map[string]string
	}{{Exact, f.idx.exact}, {Glob, f.idx.globs}} {
		for key, urls := range part.m {
			for url, rec := range urls {
				out = append(out, Subscription{Kind: part.kind, URL: url, Key: key, Recovery: rec})
			}
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

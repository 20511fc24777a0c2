package fsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
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

// index is the read side used by notify: exact topics in a map, globs in
// a prefix trie so a topic is tested only against patterns whose literal
// prefix it starts with.
type index struct {
	exact map[string]map[string]string // topic -> url -> recovery
	globs map[string]map[string]string // pattern -> url -> recovery
	trie  *globmatch.Index
}

func newIndex() *index {
	return &index{
		exact: make(map[string]map[string]string),
		globs: make(map[string]map[string]string),
		trie:  globmatch.NewIndex(),
	}
}

func (x *index) add(kind Kind, url, key, recovery string) error {
	m := x.exact
	if kind == Glob {
		m = x.globs
		if _, ok := m[key]; !ok {
			if err := x.trie.Add(key); err != nil {
				return fmt.Errorf("index glob: %w", err)
			}
		}
	}
	urls := m[key]
	if urls == nil {
		urls = make(map[string]string, 1)
		m[key] = urls
	}
	urls[url] = recovery
	return nil
}

func (x *index) remove(kind Kind, url, key string) {
	m := x.exact
	if kind == Glob {
		m = x.globs
	}
	urls := m[key]
	delete(urls, url)
	if len(urls) == 0 {
		delete(m, key)
		if kind == Glob {
			x.trie.Remove(key)
		}
	}
}

// Match returns every subscription whose topic or glob matches topic:
// exact rows first, then glob rows, as the reference delivers them. A URL
// with several matching subscriptions appears once per subscription.
func (f *FSM) Match(topic []byte) []Subscription {
	f.idxMu.RLock()
	defer f.idxMu.RUnlock()
	var out []Subscription
	if urls, ok := f.idx.exact[string(topic)]; ok {
		out = make([]Subscription, 0, len(urls))
		for url, rec := range urls {
			out = append(out, Subscription{Kind: Exact, URL: url, Key: string(topic), Recovery: rec})
		}
	}
	if len(f.idx.globs) == 0 {
		return out
	}
	f.idx.trie.Match(topic, func(pattern string) {
		for url, rec := range f.idx.globs[pattern] {
			out = append(out, Subscription{Kind: Glob, URL: url, Key: pattern, Recovery: rec})
		}
	})
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
	for _, urls := range f.idx.exact {
		exact += len(urls)
	}
	for _, urls := range f.idx.globs {
		globs += len(urls)
	}
	return exact, globs
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

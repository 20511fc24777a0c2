package globmatch

import (
	"slices"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"
)

// Index is a set of distinct glob patterns that finds the ones matching a
// topic without testing the patterns that cannot match it.
//
// Each pattern is filed under one literal run it requires of a matching
// topic (see candidates and choose): its literal prefix in a front tree,
// its literal suffix in a back tree, or its longest inner literal in a
// front tree walked from every offset of the topic. Patterns without a literal sit at the root of
// the prefix tree and are tested for every topic; a pattern with no
// wildcard is filed under itself. Match tests
// only the patterns whose key it meets on its walks, and caches the result
// of a topic that took many tests.
//
// The trees are persistent: Clone returns a copy in O(1) that shares
// every node, and Add and Remove copy the nodes they change unless the
// Index made them itself since its last Clone. So a copy can be changed
// while other goroutines match on the original, which never changes again
// once nobody mutates it; the fsm publishes each batch's Index this way
// and notifies match on it without a lock. A run of changes between two
// Clones copies each node at most once.
//
// The zero Index is empty and ready to use. One Index must not be changed
// by two goroutines at once, nor changed while another goroutine matches
// on that same Index.
type Index struct {
	prefix, suffix, infix *node
	n                     int
	// owner marks the nodes this Index may change in place: the ones it
	// created or copied since its last Clone.
	owner *owner
	// cache holds the results of expensive topics; nil until one comes,
	// dropped by every change.
	cache atomic.Pointer[resultCache]
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{}
}

// Len returns the number of distinct patterns in the index.
func (x *Index) Len() int { return x.n }

// Clone returns an Index holding the same patterns, in O(1). Later
// changes to either one leave the other as it is, so the receiver may be
// matched by other goroutines while the clone is changed.
func (x *Index) Clone() *Index {
	// The receiver gets a fresh token too: the nodes it owned are shared
	// from now on, and it must copy them before changing them. Its cache
	// stays valid: its patterns do not change.
	x.owner = &owner{}
	return &Index{prefix: x.prefix, suffix: x.suffix, infix: x.infix, n: x.n, owner: &owner{}}
}

// tree returns the root of the tree in and the side it reads.
func (x *Index) tree(in where) (**node, side) {
	switch in {
	case inSuffix:
		return &x.suffix, back
	case inInfix:
		return &x.infix, front
	default:
		return &x.prefix, front
	}
}

// Has reports whether pattern is in the set.
func (x *Index) Has(pattern string) bool {
	_, ok := x.locate(pattern)
	return ok
}

// locate returns where pattern is filed, if it is in the set.
func (x *Index) locate(pattern string) (placement, bool) {
	c, k := candidates(pattern)
	for _, pl := range c[:k] {
		root, d := x.tree(pl.in)
		n := lookup(*root, pl.key, d)
		if n != nil && slices.ContainsFunc(n.globs, func(p *Pattern) bool { return p.src == pattern }) {
			return pl, true
		}
	}
	return placement{}, false
}

// choose returns where AddNew files pattern: under the candidate key whose
// node holds the fewest patterns now, the best one on a tie. The longest
// key is not always the best: "tenant/acme/*/<id>" for many ids would pile
// up under their common prefix and be tested for every topic under it,
// while their suffixes part them.
func (x *Index) choose(pattern string) placement {
	c, k := candidates(pattern)
	best, least := 0, -1
	for i, pl := range c[:k] {
		root, d := x.tree(pl.in)
		load := 0
		if n := lookup(*root, pl.key, d); n != nil {
			load = len(n.globs)
		}
		if least < 0 || load < least {
			best, least = i, load
		}
		if least == 0 {
			break
		}
	}
	return c[best]
}

// Add adds pattern to the set; adding a pattern already present does
// nothing. The only error is a pattern that is not valid UTF-8
// (ErrInvalidUTF8), which leaves the index unchanged.
func (x *Index) Add(pattern string) error {
	if x.Has(pattern) {
		return nil
	}
	return x.AddNew(pattern)
}

// AddNew is Add for a pattern the caller knows is absent: it skips the
// check for a duplicate, which scans the patterns filed under the same key
// (all the patterns without a literal, for one of those), so that a caller
// keeping its own set of patterns builds an index in linear time. A
// pattern added twice this way is yielded twice by Match.
func (x *Index) AddNew(pattern string) error {
	p, err := Compile(pattern)
	if err != nil {
		return err
	}
	pl := x.choose(pattern)
	root, d := x.tree(pl.in)
	n := x.insert(x.ownRoot(root), pl.key, d)
	n.globs = append(n.globs, p)
	x.n++
	x.cache.Store(nil)
	return nil
}

// Remove removes pattern from the set; removing a pattern that is absent
// does nothing. Tree nodes left without patterns are pruned.
func (x *Index) Remove(pattern string) {
	pl, ok := x.locate(pattern)
	if !ok {
		return
	}
	root, d := x.tree(pl.in)
	x.remove(x.ownRoot(root), pl.key, pattern, d)
	x.n--
	x.cache.Store(nil)
}

// Match calls yield once for every distinct pattern in the index that
// topic matches, in no particular order. A topic that is not valid UTF-8
// matches no pattern: yield is not called. yield must not modify the
// index. Match changes nothing but the result cache, which is safe for
// concurrent use, so any number of goroutines may match on one Index at
// once.
func (x *Index) Match(topic []byte, yield func(pattern string)) {
	if x.n == 0 || !utf8.Valid(topic) {
		return
	}
	cache := x.cache.Load()
	if cache != nil {
		if found, ok := cache.get(topic); ok {
			for _, p := range found {
				yield(p)
			}
			return
		}
	}
	// Viewed without copying: nothing keeps the string past the call but
	// the cache, which copies it.
	m := matcher{topic: unsafe.String(unsafe.SliceData(topic), len(topic))}
	x.run(&m, yield)
	if m.tests >= cacheMinTests && m.found.n <= cacheMaxResults {
		if cache == nil {
			cache = x.newCache()
		}
		cache.put(topic, m.found.all())
	}
}

// run walks the topic down every tree. yield is a parameter rather than
// a field of the matcher so that it does not escape: a closure passed to
// Match stays on its caller's stack.
func (x *Index) run(m *matcher, yield func(string)) {
	m.walk(x.prefix, m.topic, front, false, yield)
	m.walk(x.suffix, m.topic, back, false, yield)
	if x.infix != nil {
		for i := range len(m.topic) {
			m.walk(x.infix, m.topic[i:], front, true, yield)
		}
	}
}

// matcher is the state of one Match.
type matcher struct {
	topic string
	// tests counts the patterns tested, the cost a cache entry saves.
	tests int
	// found collects the patterns yielded, for the cache; it stops
	// growing past cacheMaxResults + 1.
	found small[string]
	// seen holds the inner-literal nodes already tested: a literal found
	// at several offsets of the topic is tested once.
	seen small[*node]
}

// small is a list that holds its first elements in place, so that a
// matcher on the stack allocates nothing until it finds many.
type small[T comparable] struct {
	n    int
	head [8]T
	tail []T
}

func (l *small[T]) add(v T) {
	if l.n < len(l.head) {
		l.head[l.n] = v
	} else {
		l.tail = append(l.tail, v)
	}
	l.n++
}

func (l *small[T]) contains(v T) bool {
	return slices.Contains(l.head[:min(l.n, len(l.head))], v) || slices.Contains(l.tail, v)
}

// all returns a copy of the list.
func (l *small[T]) all() []T {
	return append(slices.Clone(l.head[:min(l.n, len(l.head))]), l.tail...)
}

// walk reads s down the tree under n from side d, testing the globs of
// every node on the way. With dedup, a node's globs are tested only the
// first time a walk of this Match meets it.
func (m *matcher) walk(n *node, s string, d side, dedup bool, yield func(string)) {
	for n != nil {
		if len(n.globs) > 0 && !(dedup && m.met(n)) {
			m.test(n.globs, yield)
		}
		if s == "" {
			return
		}
		i, found := n.find(d.lead(s))
		if !found {
			return
		}
		c := n.children[i]
		if !d.has(s, c.label) {
			return
		}
		n = c
		s = d.cut(s, len(c.label))
	}
}

// met reports whether n was met before, and records it.
func (m *matcher) met(n *node) bool {
	if m.seen.contains(n) {
		return true
	}
	m.seen.add(n)
	return false
}

func (m *matcher) test(globs []*Pattern, yield func(string)) {
	m.tests += len(globs)
	for _, g := range globs {
		if g.matchString(m.topic) {
			m.emit(g.src, yield)
		}
	}
}

func (m *matcher) emit(pattern string, yield func(string)) {
	if m.found.n <= cacheMaxResults {
		m.found.add(pattern)
	}
	yield(pattern)
}

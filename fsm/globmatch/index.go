package globmatch

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// Index is a set of distinct glob patterns that finds the ones matching a
// topic without testing every pattern.
//
// Each pattern is filed under its literal prefix, the bytes before its
// first '*', '?' or '[' (SQLite GLOB has no escape character, so every
// other byte is a literal), in a radix tree keyed by bytes. Match walks the
// topic down the tree and tests only the patterns whose literal prefix is a
// prefix of the topic; a pattern with no wildcard at all is its own prefix
// and matches by the walk alone, with no test.
//
// The tree is persistent: Clone returns a copy in O(1) that shares every
// node, and Add and Remove copy the nodes they change unless the Index
// made them itself since its last Clone. So a copy can be changed while
// other goroutines match on the original, which never changes again once
// nobody mutates it; the fsm publishes each batch's Index this way and
// notifies match on it without a lock. A run of changes between two
// Clones copies each node at most once.
//
// The zero Index is empty and ready to use. One Index must not be changed
// by two goroutines at once, nor changed while another goroutine matches
// on that same Index.
type Index struct {
	root *node
	n    int
	// owner marks the nodes this Index may change in place: the ones it
	// created or copied since its last Clone.
	owner *owner
}

// owner is a token compared by address; the field gives it a size, so
// that two tokens never share an address.
type owner struct{ _ byte }

// node is a node of the radix tree. The key of a node is the concatenation
// of the labels from the root down to it.
type node struct {
	owner *owner
	// label is the edge from the parent; empty only for the root.
	label string
	// children, sorted by the first byte of their labels, which are
	// distinct.
	children []*node
	// exact is the pattern equal to the key, free of wildcards, when it is
	// in the set.
	exact *Pattern
	// globs are the patterns with a wildcard whose literal prefix is the
	// key.
	globs []*Pattern
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
	// from now on, and it must copy them before changing them.
	x.owner = &owner{}
	return &Index{root: x.root, n: x.n, owner: &owner{}}
}

// own returns n itself if x may change it, or a copy that x may change.
func (x *Index) own(n *node) *node {
	if x.owner == nil {
		x.owner = &owner{}
	}
	if n.owner == x.owner {
		return n
	}
	c := *n
	c.owner = x.owner
	c.children = slices.Clone(n.children)
	c.globs = slices.Clone(n.globs)
	return &c
}

// ownRoot makes the root changeable, creating it in a zero Index.
func (x *Index) ownRoot() *node {
	if x.root == nil {
		x.root = &node{}
	}
	x.root = x.own(x.root)
	return x.root
}

// literalPrefix returns the bytes of pattern before its first wildcard
// character and whether there is one.
func literalPrefix(pattern string) (prefix string, wild bool) {
	if i := strings.IndexAny(pattern, "*?["); i >= 0 {
		return pattern[:i], true
	}
	return pattern, false
}

// lookup returns the node whose key is key, or nil.
func (x *Index) lookup(key string) *node {
	n := x.root
	for n != nil && key != "" {
		i, found := n.find(key[0])
		if !found || !strings.HasPrefix(key, n.children[i].label) {
			return nil
		}
		n = n.children[i]
		key = key[len(n.label):]
	}
	return n
}

// Has reports whether pattern is in the set.
func (x *Index) Has(pattern string) bool {
	prefix, wild := literalPrefix(pattern)
	n := x.lookup(prefix)
	if n == nil {
		return false
	}
	if !wild {
		return n.exact != nil
	}
	return slices.IndexFunc(n.globs, func(p *Pattern) bool { return p.src == pattern }) >= 0
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
// check for a duplicate, which scans the patterns sharing the literal
// prefix (all of them, when every pattern starts with a wildcard), so that
// a caller keeping its own set of patterns builds an index in linear time.
// A pattern added twice this way is yielded twice by Match.
func (x *Index) AddNew(pattern string) error {
	p, err := Compile(pattern)
	if err != nil {
		return err
	}
	prefix, wild := literalPrefix(pattern)
	n := x.insert(x.ownRoot(), prefix)
	if wild {
		n.globs = append(n.globs, p)
	} else {
		n.exact = p
	}
	x.n++
	return nil
}

// insert returns the node whose key is n's key + key, owned by x, creating
// it (and splitting an edge) if needed. n is owned by x.
func (x *Index) insert(n *node, key string) *node {
	for key != "" {
		i, found := n.find(key[0])
		if !found {
			c := &node{owner: x.owner, label: key}
			n.children = slices.Insert(n.children, i, c)
			return c
		}
		c := x.own(n.children[i])
		n.children[i] = c
		common := commonPrefixLen(key, c.label)
		if common < len(c.label) {
			// Split the edge: n -> mid -> c.
			mid := &node{owner: x.owner, label: c.label[:common], children: []*node{c}}
			c.label = c.label[common:]
			n.children[i] = mid
			c = mid
		}
		n = c
		key = key[common:]
	}
	return n
}

// Remove removes pattern from the set; removing a pattern that is absent
// does nothing. Tree nodes left without patterns are pruned.
func (x *Index) Remove(pattern string) {
	if !x.Has(pattern) {
		return
	}
	prefix, wild := literalPrefix(pattern)
	x.remove(x.ownRoot(), prefix, pattern, wild)
	x.n--
}

// remove removes pattern (a glob when wild, else the exact pattern) from
// the node at n's key + key, which holds it, and prunes the nodes left
// empty on the way back up. n is owned by x. It reports whether n itself
// is now empty and may be dropped by its parent.
func (x *Index) remove(n *node, key, pattern string, wild bool) (empty bool) {
	if key == "" {
		if wild {
			n.globs = slices.DeleteFunc(n.globs, func(p *Pattern) bool { return p.src == pattern })
			if len(n.globs) == 0 {
				n.globs = nil
			}
		} else {
			n.exact = nil
		}
	} else {
		i, _ := n.find(key[0])
		c := x.own(n.children[i])
		n.children[i] = c
		if x.remove(c, key[len(c.label):], pattern, wild) {
			n.children = slices.Delete(n.children, i, i+1)
			if len(n.children) == 0 {
				n.children = nil
			}
		} else if c.exact == nil && len(c.globs) == 0 && len(c.children) == 1 {
			// c only relays to its single child: merge the two edges.
			gc := x.own(c.children[0])
			gc.label = c.label + gc.label
			n.children[i] = gc
		}
	}
	return n.label != "" && n.exact == nil && len(n.globs) == 0 && len(n.children) == 0
}

// find returns the index of the child whose label starts with b, or the
// index it would be inserted at.
func (n *node) find(b byte) (int, bool) {
	lo, hi := 0, len(n.children)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if n.children[m].label[0] < b {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(n.children) && n.children[lo].label[0] == b
}

func commonPrefixLen(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// Match calls yield once for every distinct pattern in the index that
// topic matches, in no particular order. A topic that is not valid UTF-8
// matches no pattern: yield is not called. yield must not modify the
// index. Match only reads, so any number of goroutines may match on one
// Index at once.
func (x *Index) Match(topic []byte, yield func(pattern string)) {
	if x.n == 0 || !utf8.Valid(topic) {
		return
	}
	n := x.root
	rest := topic
	for {
		for _, g := range n.globs {
			if g.matchValid(topic) {
				yield(g.src)
			}
		}
		if len(rest) == 0 {
			if n.exact != nil {
				yield(n.exact.src)
			}
			return
		}
		i, found := n.find(rest[0])
		if !found {
			return
		}
		c := n.children[i]
		if len(rest) < len(c.label) || string(rest[:len(c.label)]) != c.label {
			return
		}
		rest = rest[len(c.label):]
		n = c
	}
}

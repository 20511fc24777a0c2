package globmatch

import (
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
// The zero Index is empty and ready to use.
//
// Index is not safe for concurrent mutation: the caller serialises Add and
// Remove (the fsm holds a sync.RWMutex for writing around them). Concurrent
// Match calls are safe as long as no Add or Remove runs at the same time.
type Index struct {
	root node
	// all maps every pattern in the set to its compiled form.
	all map[string]*Pattern
}

// node is a node of the radix tree. The key of a node is the concatenation
// of the labels from the root down to it.
type node struct {
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
	return &Index{all: make(map[string]*Pattern)}
}

// Len returns the number of distinct patterns in the index.
func (x *Index) Len() int { return len(x.all) }

// literalPrefix returns the bytes of pattern before its first wildcard
// character and whether there is one.
func literalPrefix(pattern string) (prefix string, wild bool) {
	if i := strings.IndexAny(pattern, "*?["); i >= 0 {
		return pattern[:i], true
	}
	return pattern, false
}

// Add adds pattern to the set; adding a pattern already present does
// nothing. The only error is a pattern that is not valid UTF-8
// (ErrInvalidUTF8), which leaves the index unchanged.
func (x *Index) Add(pattern string) error {
	if _, ok := x.all[pattern]; ok {
		return nil
	}
	p, err := Compile(pattern)
	if err != nil {
		return err
	}
	if x.all == nil {
		x.all = make(map[string]*Pattern)
	}
	x.all[pattern] = p
	prefix, wild := literalPrefix(pattern)
	n := x.root.insert(prefix)
	if wild {
		n.globs = append(n.globs, p)
	} else {
		n.exact = p
	}
	return nil
}

// insert returns the node whose key is n's key + key, creating it (and
// splitting an edge) if needed.
func (n *node) insert(key string) *node {
	for key != "" {
		i, found := n.find(key[0])
		if !found {
			c := &node{label: key}
			n.children = append(n.children, nil)
			copy(n.children[i+1:], n.children[i:])
			n.children[i] = c
			return c
		}
		c := n.children[i]
		common := commonPrefixLen(key, c.label)
		if common < len(c.label) {
			// Split the edge: n -> mid -> c.
			mid := &node{label: c.label[:common], children: []*node{c}}
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
	p, ok := x.all[pattern]
	if !ok {
		return
	}
	delete(x.all, pattern)
	prefix, wild := literalPrefix(pattern)
	x.root.remove(prefix, p, wild)
}

// remove removes p (or the exact pattern, when !wild) from the node at
// n's key + key and prunes the nodes left empty on the way back up. It
// reports whether n itself is now empty and may be dropped by its parent.
func (n *node) remove(key string, p *Pattern, wild bool) (empty bool) {
	if key == "" {
		if wild {
			for k, g := range n.globs {
				if g == p {
					last := len(n.globs) - 1
					n.globs[k] = n.globs[last]
					n.globs[last] = nil
					n.globs = n.globs[:last]
					break
				}
			}
			if len(n.globs) == 0 {
				n.globs = nil
			}
		} else {
			n.exact = nil
		}
	} else {
		i, found := n.find(key[0])
		if !found || !strings.HasPrefix(key, n.children[i].label) {
			return false // Not reachable for a pattern in the set.
		}
		c := n.children[i]
		if c.remove(key[len(c.label):], p, wild) {
			n.children = append(n.children[:i], n.children[i+1:]...)
			if len(n.children) == 0 {
				n.children = nil
			}
		} else if c.exact == nil && len(c.globs) == 0 && len(c.children) == 1 {
			// c only relays to its single child: merge the two edges.
			gc := c.children[0]
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
// index.
func (x *Index) Match(topic []byte, yield func(pattern string)) {
	if len(x.all) == 0 || !utf8.Valid(topic) {
		return
	}
	n := &x.root
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

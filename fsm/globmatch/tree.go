package globmatch

import (
	"slices"
	"strings"
)

// This file is the persistent radix tree the Index files patterns in. A
// tree is read from the front (a node's key is a prefix of the strings
// walked through it) or from the back (a suffix): a back tree stores each
// label as its bytes appear in the pattern and strips labels from the end
// of what it looks up, so both kinds share the patterns' memory and a walk
// never reverses a string.

// side is the end of a string a tree reads from.
type side bool

const (
	front side = false
	back  side = true
)

// lead returns the byte of s a tree reads first, which orders siblings.
func (d side) lead(s string) byte {
	if d == back {
		return s[len(s)-1]
	}
	return s[0]
}

// has reports whether s starts (at its read end) with label.
func (d side) has(s, label string) bool {
	if d == back {
		return strings.HasSuffix(s, label)
	}
	return strings.HasPrefix(s, label)
}

// cut drops k bytes from the read end of s.
func (d side) cut(s string, k int) string {
	if d == back {
		return s[:len(s)-k]
	}
	return s[k:]
}

// take returns the k bytes at the read end of s.
func (d side) take(s string, k int) string {
	if d == back {
		return s[len(s)-k:]
	}
	return s[:k]
}

// common returns the length of the longest run a and b share at their
// read ends.
func (d side) common(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if d == back && a[len(a)-1-i] != b[len(b)-1-i] || d == front && a[i] != b[i] {
			return i
		}
	}
	return n
}

// owner marks the nodes an Index may change in place: a token compared by
// address; the field gives it a size, so that two tokens never share one.
type owner struct{ _ byte }

// node is a node of a radix tree. The key of a node is the concatenation
// of the labels from the root down to it, in reading order.
type node struct {
	owner *owner
	// label is the edge from the parent; empty only for the root.
	label string
	// leads holds the lead byte of each child's label, in the order of
	// children: sorted and distinct. A walk searches them here, in one
	// small string, rather than through every child's label.
	leads    string
	children []*node
	// globs are the patterns filed under the key; in the prefix tree, a
	// pattern without a wildcard is filed under itself.
	globs []*Pattern
}

// empty reports whether a non-root node holds nothing and may be pruned.
func (n *node) empty() bool {
	return len(n.globs) == 0 && len(n.children) == 0
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

// ownRoot makes the root *r changeable, creating it if needed.
func (x *Index) ownRoot(r **node) *node {
	if *r == nil {
		*r = &node{}
	}
	*r = x.own(*r)
	return *r
}

// find returns the index of the child whose label leads with b, or the
// index it would be inserted at.
func (n *node) find(b byte) (int, bool) {
	lo, hi := 0, len(n.leads)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if n.leads[m] < b {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(n.leads) && n.leads[lo] == b
}

// addChild inserts c as the i-th child of n.
func (n *node) addChild(i int, c *node, d side) {
	n.children = slices.Insert(n.children, i, c)
	n.leads = n.leads[:i] + string([]byte{d.lead(c.label)}) + n.leads[i:]
}

// dropChild removes the i-th child of n.
func (n *node) dropChild(i int) {
	n.children = slices.Delete(n.children, i, i+1)
	n.leads = n.leads[:i] + n.leads[i+1:]
	if len(n.children) == 0 {
		n.children, n.leads = nil, ""
	}
}

// lookup returns the node under n whose key is key, or nil.
func lookup(n *node, key string, d side) *node {
	for n != nil && key != "" {
		i, found := n.find(d.lead(key))
		if !found || !d.has(key, n.children[i].label) {
			return nil
		}
		n = n.children[i]
		key = d.cut(key, len(n.label))
	}
	return n
}

// insert returns the node whose key is n's key followed by key, owned by
// x, creating it (and splitting an edge) if needed. n is owned by x.
func (x *Index) insert(n *node, key string, d side) *node {
	for key != "" {
		i, found := n.find(d.lead(key))
		if !found {
			c := &node{owner: x.owner, label: key}
			n.addChild(i, c, d)
			return c
		}
		c := x.own(n.children[i])
		n.children[i] = c
		common := d.common(key, c.label)
		if common < len(c.label) {
			// Split the edge: n -> mid -> c.
			mid := &node{owner: x.owner, label: d.take(c.label, common), children: []*node{c}}
			c.label = d.cut(c.label, common)
			mid.leads = string([]byte{d.lead(c.label)})
			n.children[i] = mid
			c = mid
		}
		n = c
		key = d.cut(key, common)
	}
	return n
}

// remove removes pattern from the node under n at key, which holds it,
// and prunes the nodes left useless on the way back up. n is owned by x.
// It reports whether n itself is now empty and may be dropped by its
// parent.
func (x *Index) remove(n *node, key, pattern string, d side) (empty bool) {
	if key == "" {
		n.globs = slices.DeleteFunc(n.globs, func(p *Pattern) bool { return p.src == pattern })
		if len(n.globs) == 0 {
			n.globs = nil
		}
		return n.label != "" && n.empty()
	}
	i, _ := n.find(d.lead(key))
	c := x.own(n.children[i])
	n.children[i] = c
	if x.remove(c, d.cut(key, len(c.label)), pattern, d) {
		n.dropChild(i)
	} else if len(c.globs) == 0 && len(c.children) == 1 {
		// c only relays to its single child: merge the two edges. The
		// merged label leads with c's lead byte, so n.leads holds.
		gc := x.own(c.children[0])
		if d == back {
			gc.label += c.label
		} else {
			gc.label = c.label + gc.label
		}
		n.children[i] = gc
	}
	return n.label != "" && n.empty()
}

package globmatch

import "strings"

// where names the part of an Index a pattern is filed in.
type where uint8

const (
	// inPrefix: the front tree, under the literal prefix (the whole
	// pattern when it has no wildcard; the root when it has no literal).
	inPrefix where = iota
	// inSuffix: the back tree, under the literal suffix.
	inSuffix
	// inInfix: the front tree of inner literals, under the longest literal
	// run between two wildcards, which a walk looks for at every offset of
	// the topic.
	inInfix
)

// placement is where an Index may file a pattern.
type placement struct {
	in  where
	key string
}

// candidates returns the keys pattern may be filed under, best first: the
// non-empty ones among its literal prefix, its literal suffix and its
// longest inner literal run, longest first, the anchored ones first on a
// tie (a prefix or suffix is one walk of the topic; an inner run is a walk
// from every offset). A pattern without wildcard has one, itself in the
// prefix tree; one without literal has one, the prefix root. Every topic
// the pattern matches contains its literal runs (SQLite GLOB has no
// escape, and a literal matches only itself), so a walk that finds the key
// finds every pattern that may match.
func candidates(pattern string) (c [3]placement, n int) {
	first, last := -1, 0 // the first wildcard, the end of the last one
	var inner string
	for i := 0; i < len(pattern); {
		end := i + 1
		switch pattern[i] {
		case '*', '?':
		case '[':
			if end = classEnd(pattern, i); end < 0 {
				// An unterminated class: the pattern matches nothing, and
				// the literals before it are as good a key as any.
				end = len(pattern)
			}
		default:
			i++
			continue
		}
		if first < 0 {
			first = i
		} else if i-last > len(inner) {
			inner = pattern[last:i]
		}
		i, last = end, end
	}
	if first < 0 {
		c[0] = placement{inPrefix, pattern}
		return c, 1
	}
	for _, pl := range []placement{{inPrefix, pattern[:first]}, {inSuffix, pattern[last:]}, {inInfix, inner}} {
		if pl.key == "" {
			continue
		}
		// Insertion by length, after the equal ones.
		i := n
		for ; i > 0 && len(c[i-1].key) < len(pl.key); i-- {
			c[i] = c[i-1]
		}
		c[i] = pl
		n++
	}
	if n == 0 {
		c[0] = placement{inPrefix, ""}
		n = 1
	}
	return c, n
}

// classEnd returns the position right after the ']' closing the class
// that opens at pattern[open] == '[', or -1 when there is none. A ']'
// right after the '[' or the "[^" is a member (see matchClass).
func classEnd(pattern string, open int) int {
	i := open + 1
	if i < len(pattern) && pattern[i] == '^' {
		i++
	}
	if i < len(pattern) && pattern[i] == ']' {
		i++
	}
	if j := strings.IndexByte(pattern[i:], ']'); j >= 0 {
		return i + j + 1
	}
	return -1
}

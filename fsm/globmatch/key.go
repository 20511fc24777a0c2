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

// placement is where an Index files a pattern.
type placement struct {
	in  where
	key string
}

// place returns where the Index files pattern: under the longest of its
// literal prefix, its literal suffix and its longest inner literal run,
// preferring the anchored ones on a tie (a prefix or suffix is one walk of
// the topic; an inner run is a walk from every offset). Every topic the
// pattern matches contains its literal runs (SQLite GLOB has no escape,
// and a literal matches only itself), so a walk that finds the key finds
// every pattern that may match.
func place(pattern string) placement {
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
		return placement{inPrefix, pattern}
	}
	prefix, suffix := pattern[:first], pattern[last:]
	switch {
	case len(prefix) >= len(suffix) && len(prefix) >= len(inner):
		return placement{inPrefix, prefix}
	case len(suffix) >= len(inner):
		return placement{inSuffix, suffix}
	default:
		return placement{inInfix, inner}
	}
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

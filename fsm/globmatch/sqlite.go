package globmatch

import "unicode/utf8"

// This file is the reference implementation of SQLite's GLOB operator
// (func.c patternCompare with matchSet == '['), written from its semantics:
//
//   - it is the oracle the gobwas translation is tested against, and
//   - it is the engine of the patterns the translation cannot express
//     (Engine() == "fallback").
//
// It differs from SQLite in two deliberate ways, both documented in the
// package comment: a NUL byte is an ordinary character (SQLite stops at it,
// its strings being NUL-terminated), and the caller guarantees valid UTF-8
// (SQLite decodes invalid sequences leniently; this package never asks,
// since a glob never matches an invalid topic).
//
// SQLite's own algorithm recurses on every '*' and prunes with its
// SQLITE_NOWILDCARDMATCH return. This one is the classic iterative wildcard
// matcher that keeps a single backtrack point, the most recent '*': every
// element between two stars ('?', a class or a literal) consumes exactly one
// character, so the leftmost placement of the segment after a star is
// always the best one and an earlier star never needs to be revisited. The
// cost is O(len(pattern) * len(topic)) in the worst case, whatever the
// number of stars.

// sqliteGlob reports whether topic matches pattern with SQLite GLOB
// semantics, under this package's rules: false when either is not valid
// UTF-8.
func sqliteGlob(pattern string, topic []byte) bool {
	if !utf8.ValidString(pattern) || !utf8.Valid(topic) {
		return false
	}
	ok, _ := globSteps(pattern, string(topic))
	return ok
}

// globMatch is sqliteGlob for a pattern and a topic already known to be
// valid UTF-8.
func globMatch(p, s string) bool {
	ok, _ := globSteps(p, s)
	return ok
}

// globSteps is the matcher. It also reports the number of pattern bytes it
// examined, a time-independent measure of its cost for the tests.
func globSteps(p, s string) (matched bool, steps int) {
	var (
		pi, si = 0, 0
		// The backtrack point: the pattern position right after the most
		// recent '*' (-1 when none yet) and the topic position that star's
		// match currently ends at.
		starP, starS = -1, 0
	)
	for {
		steps++
		if pi < len(p) {
			switch p[pi] {
			case '*':
				pi++
				starP, starS = pi, si
				continue
			case '?':
				if si < len(s) {
					_, w := utf8.DecodeRuneInString(s[si:])
					pi++
					si += w
					continue
				}
			case '[':
				if si < len(s) {
					r, w := utf8.DecodeRuneInString(s[si:])
					in, next, n := matchClass(p, pi, r)
					steps += n
					if next < 0 {
						// An unterminated class swallows the rest of the
						// pattern and never matches: no placement of the
						// stars before it can change that.
						return false, steps
					}
					if in {
						pi = next
						si += w
						continue
					}
				}
			default:
				// A literal character: with both sides valid UTF-8, equal
				// code points are equal byte sequences.
				_, w := utf8.DecodeRuneInString(p[pi:])
				if si+w <= len(s) && p[pi:pi+w] == s[si:si+w] {
					pi += w
					si += w
					continue
				}
			}
		} else if si == len(s) {
			return true, steps
		}
		// Mismatch: let the most recent star swallow one more character
		// and retry the rest of the pattern from there.
		if starP < 0 || starS >= len(s) {
			return false, steps
		}
		_, w := utf8.DecodeRuneInString(s[starS:])
		starS += w
		pi, si = starP, starS
	}
}

// matchClass evaluates the class that opens at p[open] == '[' against the
// character c. It returns whether c is in the class, the position right
// after the closing ']' (-1 when the class is unterminated) and the number
// of pattern bytes examined.
//
// The grammar is SQLite's: an optional '^' negates; a ']' right after the
// '[' or the '^' is a member; 'x-y' is a range when the '-' follows a
// member that is not itself the end of a range or that leading ']', and
// does not precede the closing ']' or the end of the pattern; otherwise '-'
// is a member. The low end of a range is also a member in its own right, so
// a reversed range '[z-a]' matches 'z' and nothing else: SQLite compares
// each character as a single member before it knows a '-' follows.
func matchClass(p string, open int, c rune) (in bool, next, steps int) {
	i := open + 1
	invert := false
	if i < len(p) && p[i] == '^' {
		invert = true
		i++
	}
	if i < len(p) && p[i] == ']' {
		in = c == ']'
		i++
	}
	// prior is the previous member that can start a range, -1 for none.
	// NUL can (it is an ordinary character here), hence not SQLite's 0.
	prior := rune(-1)
	for i < len(p) && p[i] != ']' {
		steps++
		r, w := utf8.DecodeRuneInString(p[i:])
		i += w
		if r == '-' && prior >= 0 && i < len(p) && p[i] != ']' {
			hi, w := utf8.DecodeRuneInString(p[i:])
			i += w
			if prior <= c && c <= hi {
				in = true
			}
			prior = -1
			continue
		}
		if c == r {
			in = true
		}
		prior = r
	}
	if i >= len(p) {
		return false, -1, steps
	}
	return in != invert, i + 1, steps
}

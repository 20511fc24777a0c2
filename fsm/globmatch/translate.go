package globmatch

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// This file translates SQLite GLOB syntax into gobwas/glob (v1.1.0) syntax.
//
// gobwas/glob v1.1.0, compiled with no separators, reads:
//
//	*  **  ?        any run, any run, one character
//	[...] [!...]    a class: either one range lo-hi (the bounds are read raw,
//	                unescaped) or a set of members (backslash escapes,
//	                '-' literal); a leading '!' negates
//	{a,b}           alternatives
//	\c              the character c
//
// SQLite GLOB has no escape character, no alternatives and negates with
// '^', so the translation is:
//
//	*, ?            unchanged ('**' is '*' without separators, as in SQLite)
//	other literal   escaped when it is one of * ? \ [ ] { } , (the ',' and '}'
//	                are special only inside {...}; escaping them anyway keeps
//	                the translation context-free)
//	[...]           parsed with SQLite's grammar (see matchClass) into single
//	                members and ranges; reversed ranges dropped (their low
//	                end stays a member), ranges merged, members covered by a
//	                range dropped, then (with [! for a negated class):
//	                  members only        [\m\e\m\b\e\r\s]
//	                  one range           [lo-hi]
//	                  anything else       the set of its code points, if
//	                                      there are at most maxExpand of
//	                                      them; otherwise ok=false
//	                  nothing, negated    ?   ('[^z-a]' is any character)
//	                  nothing, positive   the pattern never matches
//	unterminated    the whole pattern never matches
//
// The result never contains '{': gobwas alternatives make its matching
// exponential after stars (see sqliteClass.write).
//
// The gobwas lexer has two traps inside a class, which the encoding avoids:
//
//   - whatever follows the '[' (or the '[!') is read as a range low bound
//     whenever the next rune is '-', even a backslash: '[\-a]' is the range
//     '\'..'a', not the members '-' and 'a'. So '-' is always written last,
//     and a set consisting of '-' alone is written '[-]' / '[!-]'.
//   - a '!' right after the '[' negates; escaped as '\!' it is a member. A
//     positive range whose low bound is '!' can not be written at all
//     ('[!-x]' reads as a negated set), so it is split into the member '!'
//     and the range '"'..hi, and expanded. ('[!!-x]' reads right.)
//
// A pattern that can never match (an unterminated class, or a class that
// is empty once the reversed ranges are dropped) is translated to
// neverPattern, a negated class of every code point.

// neverPattern matches no valid UTF-8 string: one character that is not in
// U+0000..U+10FFFF.
const neverPattern = "[!\x00-\U0010FFFF]"

// gobwasSpecial lists the characters escaped outside a class.
const gobwasSpecial = `*?\[]{},`

// rangeSpan is an inclusive range of code points, lo <= hi.
type rangeSpan struct{ lo, hi rune }

// sqliteClass is a parsed SQLite class.
type sqliteClass struct {
	invert  bool
	members []rune      // single members, in pattern order, maybe repeated
	ranges  []rangeSpan // non-reversed ranges
}

// parseClass parses the class that opens at p[open] == '['. It returns the
// position right after its closing ']', or -1 when it is unterminated. The
// grammar is the one of matchClass.
func parseClass(p string, open int) (c sqliteClass, next int) {
	i := open + 1
	if i < len(p) && p[i] == '^' {
		c.invert = true
		i++
	}
	if i < len(p) && p[i] == ']' {
		c.members = append(c.members, ']')
		i++
	}
	prior := rune(-1)
	for i < len(p) && p[i] != ']' {
		r, w := utf8.DecodeRuneInString(p[i:])
		i += w
		if r == '-' && prior >= 0 && i < len(p) && p[i] != ']' {
			hi, w := utf8.DecodeRuneInString(p[i:])
			i += w
			// prior is already a member; a reversed range adds nothing.
			if prior < hi {
				c.ranges = append(c.ranges, rangeSpan{prior, hi})
			}
			prior = -1
			continue
		}
		c.members = append(c.members, r)
		prior = r
	}
	if i >= len(p) {
		return c, -1
	}
	return c, i + 1
}

// translate returns the gobwas/glob v1.1.0 pattern (to be compiled with no
// separators) that matches exactly the valid UTF-8 strings the SQLite GLOB
// pattern p matches, or ok=false when gobwas cannot express it. p must be
// valid UTF-8.
func translate(p string) (g string, ok bool) {
	var b strings.Builder
	b.Grow(len(p) + 8)
	for i := 0; i < len(p); {
		switch c := p[i]; c {
		case '*', '?':
			b.WriteByte(c)
			i++
		case '[':
			cls, next := parseClass(p, i)
			if next < 0 {
				return neverPattern, true
			}
			switch cls.write(&b) {
			case classNever:
				return neverPattern, true
			case classUnsupported:
				return "", false
			}
			i = next
		default:
			if strings.IndexByte(gobwasSpecial, c) >= 0 {
				b.WriteByte('\\')
			}
			_, w := utf8.DecodeRuneInString(p[i:])
			b.WriteString(p[i : i+w])
			i += w
		}
	}
	return b.String(), true
}

// classResult tells how a class was written.
type classResult int

const (
	classWritten classResult = iota
	classNever
	classUnsupported
)

// maxExpand is the largest number of code points a class that is neither
// a plain set nor a single range may have to be written as a gobwas set.
// Beyond it the pattern goes to the fallback engine. The bound keeps the
// compiled set (a map in gobwas) small for patterns that come from the
// network: '[a-zA-Z0-9_]' (63) is a set, '[^a-zĀ-ӿ]' (1050) is not.
const maxExpand = 256

// write appends the gobwas rendering of c to b.
//
// gobwas classes are a single range or a set, so a class mixing a range
// with other members or ranges is expanded into the set of its code
// points, when there are at most maxExpand of them. It is deliberately not
// written as a '{[set],[lo-hi]}' alternation: gobwas backtracks into every
// alternative after every star, which is exponential in the number of
// such groups ('*[a-cx]*[a-cx]*[a-cx]*y?' against 200 bytes took 0.5s,
// with four groups 28s), while its stars and classes alone stay linear.
func (c sqliteClass) write(b *strings.Builder) classResult {
	ranges := mergeRanges(c.ranges)
	// Members that a range covers are redundant.
	members := slices.DeleteFunc(slices.Clone(c.members), func(m rune) bool {
		for _, r := range ranges {
			if r.lo <= m && m <= r.hi {
				return true
			}
		}
		return false
	})
	slices.Sort(members)
	members = slices.Compact(members)
	// A range starting at '!' can not open a positive gobwas class: '[!-x]'
	// reads as a negated set. Make '!' a member and start the range at '"'
	// (then it is no longer a single range and gets expanded). A negated
	// class has no such problem: '[!!-x]' reads right.
	if !c.invert && len(ranges) > 0 && ranges[0].lo == '!' {
		members = append([]rune{'!'}, members...)
		ranges[0].lo = '"'
	}

	if len(ranges) == 0 && len(members) == 0 {
		if c.invert {
			// '[^z-a]': any character.
			b.WriteByte('?')
			return classWritten
		}
		return classNever
	}
	var set []rune
	switch {
	case len(ranges) == 0:
		set = members
	case len(ranges) == 1 && len(members) == 0:
	default:
		var ok bool
		if set, ok = expand(members, ranges); !ok {
			return classUnsupported
		}
	}
	if c.invert {
		b.WriteString("[!")
	} else {
		b.WriteByte('[')
	}
	if set != nil {
		writeMembers(b, set)
	} else {
		writeRange(b, ranges[0])
	}
	b.WriteByte(']')
	return classWritten
}

// mergeRanges returns the ranges sorted and merged into disjoint,
// non-adjacent ones.
func mergeRanges(in []rangeSpan) []rangeSpan {
	rs := slices.Clone(in)
	slices.SortFunc(rs, func(a, b rangeSpan) int { return int(a.lo - b.lo) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && r.lo <= out[n-1].hi+1 {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// expand returns the sorted code points of members and ranges, or false
// when there are more than maxExpand of them. The ranges are disjoint and
// cover none of the members.
func expand(members []rune, ranges []rangeSpan) ([]rune, bool) {
	n := len(members)
	for _, r := range ranges {
		n += int(r.hi-r.lo) + 1
		if n > maxExpand {
			return nil, false
		}
	}
	set := make([]rune, 0, n)
	set = append(set, members...)
	for _, r := range ranges {
		for c := r.lo; c <= r.hi; c++ {
			if utf8.ValidRune(c) { // Skip the surrogates, never in a topic.
				set = append(set, c)
			}
		}
	}
	slices.Sort(set)
	return set, true
}

// writeMembers writes the members of a gobwas set class (without the
// brackets): every member escaped, '-' last so that the first one is never
// followed by a '-' (which would make the lexer read a range), and a lone
// '-' unescaped (an escaped one, '\-]', would read as the range '\'..']').
func writeMembers(b *strings.Builder, members []rune) {
	if len(members) == 1 && members[0] == '-' {
		b.WriteByte('-')
		return
	}
	dash := false
	for _, m := range members {
		if m == '-' {
			dash = true
			continue
		}
		b.WriteByte('\\')
		b.WriteRune(m)
	}
	if dash {
		b.WriteString(`\-`)
	}
}

// writeRange writes a gobwas range (without the brackets). The bounds are
// read raw by the gobwas lexer, so they are written unescaped; lo is never
// '!' (see write), so it can not be taken for a negation.
func writeRange(b *strings.Builder, r rangeSpan) {
	b.WriteRune(r.lo)
	b.WriteByte('-')
	b.WriteRune(r.hi)
}

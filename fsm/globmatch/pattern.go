package globmatch

import (
	"errors"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/gobwas/glob"
)

// ErrInvalidUTF8 is returned by Compile (and Index.Add) for a pattern that
// is not valid UTF-8.
var ErrInvalidUTF8 = errors.New("glob pattern is not valid UTF-8")

// Engine names, as returned by Pattern.Engine.
const (
	// EngineGobwas: the pattern was translated to gobwas/glob syntax and is
	// matched by gobwas/glob.
	EngineGobwas = "gobwas"
	// EngineFallback: gobwas/glob cannot express the pattern (for example
	// a negated class mixing a range with other members, "[^a-cx]"); it is
	// matched by this package's port of SQLite's algorithm.
	EngineFallback = "fallback"
	// EngineStars: the pattern has no wildcard but '*' (no '?', no
	// class); its literal runs are found in the topic directly, with
	// nothing compiled.
	EngineStars = "stars"
)

// Pattern is a compiled SQLite GLOB pattern. It is immutable and safe for
// concurrent use.
type Pattern struct {
	src string
	// g is the gobwas matcher; nil means the stars or the fallback engine.
	g *glob.Pattern
	// stars: src has no wildcard but '*'.
	stars bool
}

// Compile compiles a SQLite GLOB pattern. The only error is a pattern that
// is not valid UTF-8 (ErrInvalidUTF8): every valid UTF-8 string is a
// pattern, including the ones that can never match (an unterminated '[').
func Compile(pattern string) (*Pattern, error) {
	if !utf8.ValidString(pattern) {
		return nil, ErrInvalidUTF8
	}
	p := &Pattern{src: pattern}
	if !strings.ContainsAny(pattern, "?[") {
		// Nothing to compile: a gobwas matcher would take ~200 bytes for
		// what matchStars reads from the pattern itself.
		p.stars = true
		return p, nil
	}
	if t, ok := translate(pattern); ok {
		if g, err := glob.Compile(t); err == nil {
			p.g = g
		}
		// A gobwas syntax error would be a translation bug; the
		// differential tests make sure there is none, and the fallback
		// is exact anyway.
	}
	return p, nil
}

// MustCompile is Compile that panics on error, for tests and constants.
func MustCompile(pattern string) *Pattern {
	p, err := Compile(pattern)
	if err != nil {
		panic(err)
	}
	return p
}

// String returns the pattern as given to Compile.
func (p *Pattern) String() string { return p.src }

// Engine reports which engine matches the pattern: EngineStars,
// EngineGobwas or EngineFallback. It is meant for tests and diagnostics.
func (p *Pattern) Engine() string {
	switch {
	case p.stars:
		return EngineStars
	case p.g != nil:
		return EngineGobwas
	}
	return EngineFallback
}

// Match reports whether topic matches the pattern. A topic that is not
// valid UTF-8 matches no pattern.
func (p *Pattern) Match(topic []byte) bool {
	if !utf8.Valid(topic) {
		return false
	}
	return p.matchValid(topic)
}

// matchValid is Match for a topic already known to be valid UTF-8.
func (p *Pattern) matchValid(topic []byte) bool {
	// The topic is viewed as a string without copying it. This is sound
	// because neither engine keeps the string beyond the call (gobwas's
	// Match pools only offsets and paths between calls, never the input)
	// and because the caller does not modify topic while Match runs, which
	// any []byte API requires of its callers anyway. A copy would be one
	// allocation per pattern tested for every published message.
	return p.matchString(unsafe.String(unsafe.SliceData(topic), len(topic)))
}

// matchString is matchValid for a topic viewed as a string.
func (p *Pattern) matchString(s string) bool {
	switch {
	case p.stars:
		return matchStars(p.src, s)
	case p.g != nil:
		return p.g.Match(s)
	}
	return globMatch(p.src, s)
}

// matchStars matches a pattern of literal runs and '*'. The first run
// must begin the topic and the last must end it; each run between stars is
// taken at its leftmost place in what is left between them, which is
// never worse than a later one (every later run still has all the room
// after it). Runs are compared as bytes: in valid UTF-8 on both sides, a
// run found at any byte offset starts at a character boundary.
func matchStars(p, s string) bool {
	first, rest, found := strings.Cut(p, "*")
	if !found {
		return p == s
	}
	if !strings.HasPrefix(s, first) {
		return false
	}
	s = s[len(first):]
	i := strings.LastIndexByte(rest, '*')
	last := rest[i+1:]
	if !strings.HasSuffix(s, last) {
		return false
	}
	s = s[:len(s)-len(last)]
	for mid := rest[:max(i, 0)]; mid != ""; {
		var run string
		run, mid, _ = strings.Cut(mid, "*")
		k := strings.Index(s, run)
		if k < 0 {
			return false
		}
		s = s[k+len(run):]
	}
	return true
}

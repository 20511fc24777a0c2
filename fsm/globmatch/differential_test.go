package globmatch

import (
	"bufio"
	"encoding/json"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/glob"
)

// The alphabets of the random tests: every character with a meaning in
// SQLite GLOB or in gobwas/glob, the neighbours of '!' (a range starting at
// '!' is a special case of the translation), multi-byte characters and NUL.
var (
	patternAlphabet = []string{
		"-", "^", "!", "]", "[", "*", "?", "/", `\`, "{", "}", ",",
		"é", "a", "b", "c", `"`, "#", "ü", "😀", "\x00",
	}
	topicAlphabet = []string{
		"-", "^", "!", "]", "[", "*", "?", "/", `\`, "{", "}", ",",
		"é", "a", "b", "c", "x", `"`, "ü", "😀", "\x00",
	}
)

func randomString(rng *rand.Rand, alphabet []string, maxLen int) string {
	var b strings.Builder
	for range rng.IntN(maxLen + 1) {
		b.WriteString(alphabet[rng.IntN(len(alphabet))])
	}
	return b.String()
}

func randomPattern(rng *rand.Rand) string {
	return randomString(rng, patternAlphabet, 10)
}

// instantiate returns a topic likely to (nearly) match pattern.
func instantiate(rng *rand.Rand, pattern string) string {
	var b strings.Builder
	for _, r := range pattern {
		switch x := rng.IntN(20); {
		case r == '*':
			b.WriteString(randomString(rng, topicAlphabet, 2))
		case r == '?' || r == '[' || x == 0:
			b.WriteString(topicAlphabet[rng.IntN(len(topicAlphabet))])
		case x == 1:
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// wantEngine is the engine of a pattern that has a gobwas translation.
func wantEngine(pattern string) string {
	if strings.ContainsAny(pattern, "?[") {
		return EngineGobwas
	}
	return EngineStars
}

// checkAgainstPort checks every engine on one (pattern, topic) pair
// against the SQLite port, and the translation against gobwas's parser.
func checkAgainstPort(t *testing.T, pattern, topic string) {
	t.Helper()
	p, err := Compile(pattern)
	if !utf8.ValidString(pattern) {
		if err != ErrInvalidUTF8 {
			t.Fatalf("Compile(%q) error = %v, want ErrInvalidUTF8", pattern, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Compile(%q): %v", pattern, err)
	}
	if tr, ok := translate(pattern); ok {
		if _, err := glob.Compile(tr); err != nil {
			t.Fatalf("translate(%q) = %q, which gobwas rejects: %v", pattern, tr, err)
		}
		if want := wantEngine(pattern); p.Engine() != want {
			t.Fatalf("Compile(%q).Engine() = %s, want %s (translation %q)", pattern, p.Engine(), want, tr)
		}
	}
	want := sqliteGlob(pattern, []byte(topic))
	if got := p.Match([]byte(topic)); got != want {
		tr, _ := translate(pattern)
		t.Fatalf("Compile(%q).Match(%q) = %v, port says %v (engine %s, translation %q)",
			pattern, topic, got, want, p.Engine(), tr)
	}
	x := NewIndex()
	if err := x.Add(pattern); err != nil {
		t.Fatal(err)
	}
	calls := 0
	x.Match([]byte(topic), func(got string) {
		calls++
		if got != pattern {
			t.Fatalf("Index{%q}.Match(%q) yielded %q", pattern, topic, got)
		}
	})
	if want && calls != 1 || !want && calls != 0 {
		t.Fatalf("Index{%q}.Match(%q): %d calls, port says %v", pattern, topic, calls, want)
	}
}

// TestDifferentialRandom checks Compile+Match and Index against the SQLite
// port on random pairs over an alphabet of the characters that matter.
func TestDifferentialRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	matched := 0
	for range n {
		pattern := randomPattern(rng)
		topic := randomString(rng, topicAlphabet, 8)
		if rng.IntN(3) > 0 {
			topic = instantiate(rng, pattern)
		}
		checkAgainstPort(t, pattern, topic)
		if sqliteGlob(pattern, []byte(topic)) {
			matched++
		}
	}
	// The test is worth something only if both outcomes are common.
	if matched < n/10 || matched > n*9/10 {
		t.Errorf("%d of %d random pairs match: generator is unbalanced", matched, n)
	}
}

// TestSQLiteVectors checks the port and Compile+Match against GLOB cases
// evaluated by real SQLite (testdata/gen_sqlite_vectors.py). Another file
// of the same format can be given in $GLOBMATCH_SQLITE_VECTORS.
func TestSQLiteVectors(t *testing.T) {
	files := []string{"testdata/sqlite_vectors.jsonl"}
	if extra := os.Getenv("GLOBMATCH_SQLITE_VECTORS"); extra != "" {
		files = append(files, extra)
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		n := 0
		for sc.Scan() {
			var v [3]any
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			pattern, topic, want := v[0].(string), v[1].(string), v[2].(float64) == 1
			n++
			if got := sqliteGlob(pattern, []byte(topic)); got != want {
				t.Errorf("%s: sqliteGlob(%q, %q) = %v, SQLite says %v", name, pattern, topic, got, want)
			}
			if got := MustCompile(pattern).Match([]byte(topic)); got != want {
				t.Errorf("%s: Compile(%q).Match(%q) = %v, SQLite says %v", name, pattern, topic, got, want)
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if n < 1000 {
			t.Errorf("%s: only %d vectors", name, n)
		}
	}
}

// FuzzMatchAgreesWithPort is the differential check of
// TestDifferentialRandom driven by the fuzzer:
//
//	go test -run='^$' -fuzz=FuzzMatchAgreesWithPort -fuzztime=60s ./fsm/globmatch
func FuzzMatchAgreesWithPort(f *testing.F) {
	for _, c := range tableCases {
		f.Add(c.pattern, c.topic)
	}
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		checkAgainstPort(t, pattern, topic)
	})
}

// The pieces of the mixed-shape patterns: literal runs (never a wildcard
// character) and wildcards, including classes with a leading ']', a
// negation, a reversed range, multi-byte ranges, and an unterminated '['.
var (
	literalPieces  = []string{"a", "b", "/", "ab", "/a/", "é", "\x00", "-", "]", "^", "{", `\`, "😀"}
	wildcardPieces = []string{"*", "?", "[ab]", "[^a]", "[]a]", "[z-a]", "[a-c]", "[é-ü]", "[^]/]", "*?"}
)

func randomPiece(rng *rand.Rand, pieces []string, maxN int) string {
	var b strings.Builder
	for range 1 + rng.IntN(maxN) {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return b.String()
}

// mixedPattern returns a random pattern of one of the shapes the Index
// files differently: literal prefix, literal suffix (leading wildcard),
// wildcard in the middle, literal only inside, no literal at all, no
// wildcard at all, an unterminated class, or anything.
func mixedPattern(rng *rand.Rand) string {
	lit := func() string { return randomPiece(rng, literalPieces, 3) }
	wild := func() string { return randomPiece(rng, wildcardPieces, 2) }
	switch rng.IntN(8) {
	case 0:
		return lit() + wild()
	case 1:
		return wild() + lit()
	case 2:
		return lit() + wild() + lit()
	case 3:
		return wild() + lit() + wild()
	case 4:
		return wild()
	case 5:
		return lit()
	case 6:
		return lit() + "[" + lit()
	default:
		return randomPattern(rng)
	}
}

// mixedTopic returns a topic likely to match one of patterns, or a random
// one, or now and then one that is not valid UTF-8.
func mixedTopic(rng *rand.Rand, patterns []string) string {
	switch x := rng.IntN(10); {
	case x == 0:
		return randomString(rng, topicAlphabet, 8) + "\xff"
	case x < 4 || len(patterns) == 0:
		return randomString(rng, topicAlphabet, 8)
	default:
		return instantiate(rng, patterns[rng.IntN(len(patterns))])
	}
}

// bruteForce returns the sorted patterns of set that topic matches,
// testing every one with Pattern.Match.
func bruteForce(set map[string]*Pattern, topic string) []string {
	out := []string{}
	for s, p := range set {
		if p.Match([]byte(topic)) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// version is an Index and the patterns it must hold.
type version struct {
	x   *Index
	set map[string]*Pattern
}

// check compares v.x with brute force on topics, each matched twice so
// that the second may come from the cache.
func (v version) check(t *testing.T, topics []string) {
	t.Helper()
	if v.x.Len() != len(v.set) {
		t.Fatalf("Len() = %d, want %d", v.x.Len(), len(v.set))
	}
	for _, topic := range topics {
		want := bruteForce(v.set, topic)
		for range 2 {
			if got := collect(v.x, topic); !slices.Equal(got, want) {
				t.Fatalf("Match(%q) = %q, brute force %q", topic, got, want)
			}
		}
	}
}

// TestIndexAgreesWithBruteForce changes a chain of clones with Add,
// AddNew and Remove of random patterns of mixed shapes and checks every
// version against brute force after each round: the newest, and every
// older one, which must keep its answers while its clones change (and
// while a goroutine matches on it, for the race detector).
func TestIndexAgreesWithBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	rounds, perRound := 16, 80
	if testing.Short() {
		rounds = 8
	}
	cur := version{NewIndex(), map[string]*Pattern{}}
	var old []version
	var topics []string
	for round := range rounds {
		if round%4 == 3 {
			// The same Index changed again, after matches filled its
			// cache: the topics it cached must see the changes.
			for range perRound {
				changeRandomly(t, rng, cur)
			}
			checkInvariants(t, cur.x)
			cur.check(t, append(topics, topicsFor(rng, cur.set)...))
			continue
		}
		next := version{cur.x.Clone(), maps.Clone(cur.set)}
		done := make(chan struct{})
		go func(v version, rng *rand.Rand) {
			defer close(done)
			for range 50 {
				v.x.Match([]byte(mixedTopic(rng, nil)), func(string) {})
			}
		}(cur, rand.New(rand.NewPCG(uint64(round), 11)))
		for range perRound {
			changeRandomly(t, rng, next)
		}
		<-done
		checkInvariants(t, next.x)
		old = append(old, cur)
		cur = next
		topics = topicsFor(rng, cur.set)
		cur.check(t, topics)
		for _, v := range old[max(0, len(old)-3):] {
			v.check(t, topics[:30])
		}
	}
	for _, v := range old {
		checkInvariants(t, v.x)
	}
}

// topicsFor returns 60 random topics, most of them near the patterns
// of set.
func topicsFor(rng *rand.Rand, set map[string]*Pattern) []string {
	patterns := slices.Sorted(maps.Keys(set))
	topics := make([]string, 60)
	for i := range topics {
		topics[i] = mixedTopic(rng, patterns)
	}
	return topics
}

// changeRandomly applies one random change to v: Add of a random or
// present pattern (a no-op), AddNew of an absent one, or Remove of a
// present or absent one.
func changeRandomly(t *testing.T, rng *rand.Rand, v version) {
	t.Helper()
	p := mixedPattern(rng)
	present := v.set[p] != nil
	switch op := rng.IntN(10); {
	case op < 4:
		if err := v.x.Add(p); err != nil {
			t.Fatal(err)
		}
		v.set[p] = MustCompile(p)
	case op < 7:
		if present {
			return
		}
		if err := v.x.AddNew(p); err != nil {
			t.Fatal(err)
		}
		v.set[p] = MustCompile(p)
	default:
		for q := range v.set {
			if rng.IntN(2) == 0 {
				p = q // A present pattern, most of the time.
				break
			}
		}
		v.x.Remove(p)
		delete(v.set, p)
	}
	if v.x.Has(p) != (v.set[p] != nil) {
		t.Fatalf("Has(%q) = %v after the change", p, v.x.Has(p))
	}
}

// TestIndexCache checks that an expensive topic is cached, that the cache
// answers as the trees do, that a change drops it, and that a clone starts
// without one while the original keeps its own.
func TestIndexCache(t *testing.T) {
	x := NewIndex()
	for i := range cacheMinTests + 1 {
		// No literal: every one is tested for every topic.
		if err := x.Add(strings.Repeat("?", i+1) + "*"); err != nil {
			t.Fatal(err)
		}
	}
	topic := []byte("abc")
	want := []string{"?*", "??*", "???*"}
	if got := collect(x, string(topic)); !slices.Equal(got, want) {
		t.Fatalf("Match = %q, want %q", got, want)
	}
	c := x.cache.Load()
	if c == nil {
		t.Fatal("an expensive topic was not cached")
	}
	if got, ok := c.get(topic); !ok || !slices.Equal(got, want) {
		t.Fatalf("cached %q, %v; want %q", got, ok, want)
	}
	if got := collect(x, string(topic)); !slices.Equal(got, want) {
		t.Fatalf("Match from the cache = %q, want %q", got, want)
	}
	y := x.Clone()
	if y.cache.Load() != nil || x.cache.Load() != c {
		t.Fatal("Clone shares or drops the cache")
	}
	if err := y.Add("*c"); err != nil {
		t.Fatal(err)
	}
	if got, want := collect(y, string(topic)), []string{"*c", "?*", "??*", "???*"}; !slices.Equal(got, want) {
		t.Fatalf("after Add: Match = %q, want %q", got, want)
	}
	if got := collect(x, string(topic)); !slices.Equal(got, want) {
		t.Fatalf("the original after its clone changed: Match = %q, want %q", got, want)
	}
	x.Remove("???*")
	if x.cache.Load() != nil {
		t.Fatal("Remove kept the cache")
	}
	if got := collect(x, string(topic)); !slices.Equal(got, want[:2]) {
		t.Fatalf("after Remove: Match = %q, want %q", got, want[:2])
	}
	if err := x.Add("a*"); err != nil {
		t.Fatal(err)
	}
	if got, want := collect(x, string(topic)), []string{"?*", "??*", "a*"}; !slices.Equal(got, want) {
		t.Fatalf("after Add: Match = %q, want %q", got, want)
	}
}

// FuzzIndexAgreesWithBruteForce builds an index of the lines of patterns,
// removes every third, and compares its matches for topic with brute
// force:
//
//	go test -run='^$' -fuzz=FuzzIndexAgreesWithBruteForce -fuzztime=60s ./fsm/globmatch
func FuzzIndexAgreesWithBruteForce(f *testing.F) {
	f.Add("*/1/x\np/*\na*b*c\n?[ab]c*\n[^]x]*y", "p/1/x")
	f.Add("*ab*\n*b\n[z-a]\n*\x00*\né*", "éab\x00b")
	f.Fuzz(func(t *testing.T, patterns, topic string) {
		v := version{NewIndex(), map[string]*Pattern{}}
		for i, p := range strings.Split(patterns, "\n") {
			if err := v.x.Add(p); err != nil {
				continue // Not UTF-8.
			}
			v.set[p] = MustCompile(p)
			if i%3 == 2 {
				v.x.Remove(p)
				delete(v.set, p)
			}
		}
		v.check(t, []string{topic})
	})
}

package globmatch

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// collect returns the sorted patterns x yields for topic, failing on a
// pattern yielded twice.
func collect(x *Index, topic string) []string {
	got := []string{}
	x.Match([]byte(topic), func(p string) { got = append(got, p) })
	slices.Sort(got)
	return got
}

// checkIndex checks that x yields for topic exactly the patterns among
// patterns that the SQLite port matches, once each.
func checkIndex(t *testing.T, x *Index, patterns []string, topic string) {
	t.Helper()
	want := []string{}
	for _, p := range patterns {
		if sqliteGlob(p, []byte(topic)) {
			want = append(want, p)
		}
	}
	slices.Sort(want)
	if got := collect(x, topic); !slices.Equal(got, want) {
		t.Errorf("Index.Match(%q) = %q, want %q", topic, got, want)
	}
}

// checkInvariants checks the shape of the trees: every pattern is at the
// node of one of its candidate keys, in the tree of that key, labels are
// non-empty and children sorted by distinct lead bytes, and no node is
// useless (a non-root node holds a pattern or at least two children).
func checkInvariants(t *testing.T, x *Index) {
	t.Helper()
	count := 0
	var walk func(in where, d side, n *node, key string)
	walk = func(in where, d side, n *node, key string) {
		if key != "" {
			if n.label == "" {
				t.Errorf("tree %d node %q: empty label", in, key)
			}
			if len(n.globs) == 0 && len(n.children) < 2 {
				t.Errorf("tree %d node %q: no pattern and %d children", in, key, len(n.children))
			}
		}
		if len(n.leads) != len(n.children) {
			t.Errorf("tree %d node %q: %d leads for %d children", in, key, len(n.leads), len(n.children))
		}
		for _, g := range n.globs {
			count++
			if c, k := candidates(g.src); !slices.Contains(c[:k], placement{in, key}) {
				t.Errorf("tree %d node %q holds glob %q, candidates %+v", in, key, g.src, c[:k])
			}
		}
		for i, c := range n.children {
			if i > 0 && d.lead(n.children[i-1].label) >= d.lead(c.label) {
				t.Errorf("tree %d node %q: children out of order", in, key)
			}
			if i < len(n.leads) && n.leads[i] != d.lead(c.label) {
				t.Errorf("tree %d node %q: lead %q for child %q", in, key, n.leads[i], c.label)
			}
			if d == back {
				walk(in, d, c, c.label+key)
			} else {
				walk(in, d, c, key+c.label)
			}
		}
	}
	for _, in := range []where{inPrefix, inSuffix, inInfix} {
		if root, d := x.tree(in); *root != nil {
			walk(in, d, *root, "")
		}
	}
	if count != x.Len() {
		t.Errorf("trees hold %d patterns, Len() = %d", count, x.Len())
	}
}

// isEmpty reports whether every tree of x is empty.
func isEmpty(x *Index) bool {
	for _, r := range []*node{x.prefix, x.suffix, x.infix} {
		if r != nil && !(r.empty()) {
			return false
		}
	}
	return x.Len() == 0
}

func TestIndexAddRemove(t *testing.T) {
	x := NewIndex()
	for _, p := range []string{"svc/*", "svc/a", "svc/a", "svc/*", "s*", "", "svc/ab?", "*"} {
		if err := x.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	if x.Len() != 6 {
		t.Fatalf("Len() = %d, want 6 (Add is idempotent)", x.Len())
	}
	checkInvariants(t, x)
	if got, want := collect(x, "svc/a"), []string{"*", "s*", "svc/*", "svc/a"}; !slices.Equal(got, want) {
		t.Errorf("Match(svc/a) = %q, want %q", got, want)
	}
	if got, want := collect(x, ""), []string{"", "*"}; !slices.Equal(got, want) {
		t.Errorf("Match(\"\") = %q, want %q", got, want)
	}
	if got := collect(x, "svc/\xff"); len(got) != 0 {
		t.Errorf("Match(invalid UTF-8) = %q, want nothing", got)
	}
	x.Remove("svc/a")
	x.Remove("svc/a")
	x.Remove("absent")
	x.Remove("svc/ab*") // Absent, but shares a node with svc/ab?.
	if x.Len() != 5 {
		t.Fatalf("Len() = %d, want 5", x.Len())
	}
	checkInvariants(t, x)
	if got, want := collect(x, "svc/a"), []string{"*", "s*", "svc/*"}; !slices.Equal(got, want) {
		t.Errorf("Match(svc/a) = %q, want %q", got, want)
	}
	for _, p := range []string{"svc/*", "s*", "", "svc/ab?", "*"} {
		x.Remove(p)
		checkInvariants(t, x)
	}
	if !isEmpty(x) {
		t.Errorf("index not empty after removing everything: Len()=%d", x.Len())
	}
}

// TestIndexDifferential fills an index with random patterns, many sharing
// prefixes, and checks random topics against the SQLite port, while
// patterns are added and removed.
func TestIndexDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	x := NewIndex()
	set := map[string]bool{}
	patterns := func() []string {
		var ps []string
		for p := range set {
			ps = append(ps, p)
		}
		return ps
	}
	check := func(round int) {
		checkInvariants(t, x)
		if x.Len() != len(set) {
			t.Fatalf("round %d: Len() = %d, want %d", round, x.Len(), len(set))
		}
		ps := patterns()
		for range 300 {
			var topic string
			if len(ps) > 0 && rng.IntN(2) == 0 {
				topic = instantiate(rng, ps[rng.IntN(len(ps))])
			} else {
				topic = randomString(rng, topicAlphabet, 8)
			}
			checkIndex(t, x, ps, topic)
		}
	}
	for round := range 12 {
		for range 150 {
			p := randomPattern(rng)
			if rng.IntN(4) == 0 {
				// Literal patterns, exact topics.
				p = strings.Map(func(r rune) rune {
					if strings.ContainsRune("*?[", r) {
						return 'a'
					}
					return r
				}, p)
			}
			if err := x.Add(p); err != nil {
				t.Fatal(err)
			}
			set[p] = true
		}
		check(round)
		for _, p := range patterns() {
			if rng.IntN(3) == 0 {
				x.Remove(p)
				delete(set, p)
			}
		}
		check(round)
	}
	for _, p := range patterns() {
		x.Remove(p)
	}
	checkInvariants(t, x)
	if !isEmpty(x) {
		t.Errorf("index not empty after removing everything")
	}
}

// tested returns the number of patterns Match tests for topic.
func tested(x *Index, topic string) int {
	m := matcher{topic: topic}
	x.run(&m, func(string) {})
	return m.tests
}

// TestIndexTestsOnlyKeyMatches checks that Match tests only the patterns
// whose key the topic holds where place anchors it, for each kind of key.
func TestIndexTestsOnlyKeyMatches(t *testing.T) {
	x := NewIndex()
	for i := range 1000 {
		s := strconv.Itoa(i)
		for _, p := range []string{"svc/" + s + "/*", "*/" + s + "/end", "?*/" + s + "/in/*", "[ab]-" + s + "-?"} {
			if err := x.Add(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, p := range []string{"*", "?*?", "[xy]"} {
		if err := x.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	checkInvariants(t, x)
	// Every topic tests the 3 patterns without a literal, and the one
	// filed under a key it holds, if any: an inner literal met twice is
	// tested once.
	for _, c := range []struct {
		topic string
		tests int
		want  []string
	}{
		{"svc/42/events", 4, []string{"*", "?*?", "svc/42/*"}},
		{"a/42/end", 4, []string{"*", "*/42/end", "?*?"}},
		{"x/42/in/42/in/y", 4, []string{"*", "?*/42/in/*", "?*?"}},
		{"b-42-x", 4, []string{"*", "?*?", "[ab]-42-?"}},
		{"nothing/here", 3, []string{"*", "?*?"}},
	} {
		if n := tested(x, c.topic); n != c.tests {
			t.Errorf("Match(%q) tests %d patterns, want %d", c.topic, n, c.tests)
		}
		if got := collect(x, c.topic); !slices.Equal(got, c.want) {
			t.Errorf("Match(%q) = %q, want %q", c.topic, got, c.want)
		}
	}
}

// TestIndexCloneIsIndependent changes clones while a goroutine matches
// on the original: every original keeps matching exactly its own patterns
// (run with -race, this also shows that Match reads nothing a change
// writes).
func TestIndexCloneIsIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	type frozen struct {
		x        *Index
		patterns []string
	}
	x := NewIndex()
	var versions []frozen
	for range 8 {
		versions = append(versions, frozen{x, allPatterns(x)})
		done := make(chan struct{})
		go func(v *Index) {
			defer close(done)
			for range 200 {
				for _, topic := range []string{"a", "ab", "svc/1", ""} {
					v.Match([]byte(topic), func(string) {})
				}
			}
		}(x)
		next := x.Clone()
		for range 60 {
			if err := next.Add(randomPattern(rng)); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range allPatterns(x) {
			if rng.IntN(3) == 0 {
				next.Remove(p)
			}
		}
		checkInvariants(t, next)
		<-done
		x = next
	}
	for i, v := range versions {
		checkInvariants(t, v.x)
		if v.x.Len() != len(v.patterns) {
			t.Fatalf("version %d: Len() = %d, want %d", i, v.x.Len(), len(v.patterns))
		}
		if !slices.Equal(allPatterns(v.x), v.patterns) {
			t.Fatalf("version %d changed after it was cloned", i)
		}
		for range 100 {
			checkIndex(t, v.x, v.patterns, randomString(rng, topicAlphabet, 6))
		}
	}
}

// allPatterns returns the patterns of x, read from its trees.
func allPatterns(x *Index) []string {
	var out []string
	var walk func(n *node)
	walk = func(n *node) {
		for _, g := range n.globs {
			out = append(out, g.src)
		}
		for _, c := range n.children {
			walk(c)
		}
	}
	for _, r := range []*node{x.prefix, x.suffix, x.infix} {
		if r != nil {
			walk(r)
		}
	}
	return out
}

// TestIndexAddNew builds the same set with AddNew (no duplicate check) and
// with Add, and both match alike.
func TestIndexAddNew(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	seen := map[string]bool{}
	var patterns []string
	for len(patterns) < 300 {
		if p := randomPattern(rng); !seen[p] {
			seen[p] = true
			patterns = append(patterns, p)
		}
	}
	x, y := NewIndex(), NewIndex()
	for _, p := range patterns {
		if err := x.AddNew(p); err != nil {
			t.Fatal(err)
		}
		if err := y.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	checkInvariants(t, x)
	if x.Len() != y.Len() || x.Len() != len(patterns) {
		t.Fatalf("Len() = %d and %d, want %d", x.Len(), y.Len(), len(patterns))
	}
	for range 300 {
		topic := instantiate(rng, patterns[rng.IntN(len(patterns))])
		if a, b := collect(x, topic), collect(y, topic); !slices.Equal(a, b) {
			t.Fatalf("Match(%q): AddNew %q, Add %q", topic, a, b)
		}
		checkIndex(t, x, patterns, topic)
	}
}

// TestIndexSpreadsSharedKeys checks that patterns whose longest literal is
// shared by all of them are filed under another one, so that a topic does
// not test them all: "tenant/acme/*/<i>" share their prefix, not their
// suffix.
func TestIndexSpreadsSharedKeys(t *testing.T) {
	x := NewIndex()
	for i := range 1000 {
		if err := x.Add("tenant/acme/*/" + strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	checkInvariants(t, x)
	// At most the one filed under the prefix, and the one ending "/42".
	topic := "tenant/acme/x/42"
	if n := tested(x, topic); n > 2 {
		t.Errorf("Match(%q) tests %d patterns, want at most 2", topic, n)
	}
	if got, want := collect(x, topic), []string{"tenant/acme/*/42"}; !slices.Equal(got, want) {
		t.Errorf("Match(%q) = %q, want %q", topic, got, want)
	}
	for i := range 1000 {
		x.Remove("tenant/acme/*/" + strconv.Itoa(i))
	}
	if !isEmpty(x) {
		t.Errorf("index not empty after removing everything")
	}
}

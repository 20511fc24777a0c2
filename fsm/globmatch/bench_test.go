package globmatch

import (
	"runtime"
	"strconv"
	"testing"
)

// benchPatterns returns n patterns sharing literal prefixes, the way
// per-service subscriptions look: "svc/<i>/*", with every tenth one an
// exact topic and every hundredth one a class.
func benchPatterns(n int) []string {
	ps := make([]string, 0, n)
	for i := range n {
		switch {
		case i%100 == 0:
			ps = append(ps, "svc/"+strconv.Itoa(i)+"/[a-m]*")
		case i%10 == 0:
			ps = append(ps, "svc/"+strconv.Itoa(i)+"/events")
		default:
			ps = append(ps, "svc/"+strconv.Itoa(i)+"/*")
		}
	}
	return ps
}

var benchTopic = []byte("svc/4242/events/created")

// BenchmarkIndexMatch finds the patterns matching one topic among 10,000
// with the index.
func BenchmarkIndexMatch(b *testing.B) {
	x := NewIndex()
	for _, p := range benchPatterns(10000) {
		if err := x.Add(p); err != nil {
			b.Fatal(err)
		}
	}
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		x.Match(benchTopic, func(string) { n++ })
	}
	if n == 0 {
		b.Fatal("no match")
	}
}

// BenchmarkNaiveMatch is BenchmarkIndexMatch testing every pattern.
func BenchmarkNaiveMatch(b *testing.B) {
	var ps []*Pattern
	for _, p := range benchPatterns(10000) {
		ps = append(ps, MustCompile(p))
	}
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range ps {
			if p.Match(benchTopic) {
				n++
			}
		}
	}
	if n == 0 {
		b.Fatal("no match")
	}
}

// BenchmarkIndexMatchWildcardHeavy adds 1,000 patterns with no literal
// prefix to the index of BenchmarkIndexMatch: they are tested for every
// topic, the index cannot help with them.
func BenchmarkIndexMatchWildcardHeavy(b *testing.B) {
	x := NewIndex()
	for _, p := range benchPatterns(10000) {
		if err := x.Add(p); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 1000 {
		if err := x.Add("*/" + strconv.Itoa(i) + "/*"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		x.Match(benchTopic, func(string) {})
	}
}

func BenchmarkPatternMatch(b *testing.B) {
	for _, c := range []struct{ name, pattern, topic string }{
		{"literal", "svc/4242/events/created", "svc/4242/events/created"},
		{"prefix", "svc/4242/*", "svc/4242/events/created"},
		{"suffix", "*/created", "svc/4242/events/created"},
		{"stars", "svc/*/events/*", "svc/4242/events/created"},
		{"class", "svc/[0-9]*/[a-m]*", "svc/4242/events/created"},
		{"mixed-class", "svc/[0-9a-f]*/*", "svc/4242/events/created"},
		{"fallback", "svc/[^Ā-ӿx]*/*", "svc/4242/events/created"},
		{"port-only", "svc/*/events/*", "svc/4242/events/created"},
	} {
		b.Run(c.name, func(b *testing.B) {
			topic := []byte(c.topic)
			p := MustCompile(c.pattern)
			match := p.Match
			if c.name == "port-only" {
				match = func(topic []byte) bool { return sqliteGlob(c.pattern, topic) }
			}
			b.ReportAllocs()
			for b.Loop() {
				if !match(topic) {
					b.Fatal("no match")
				}
			}
		})
	}
}

// mixedPatterns returns n distinct globs of the shapes a large table
// holds, i numbering them: literal prefixes ("p/<i>/x/*"), leading
// wildcards ("*/<i>/x"), wildcards in the middle ("m/<i>/*/c", and
// "acme/t/*/<i>", whose longest literal all of them share), a literal
// only inside ("*/<i>/in/*", "?q<i>*"), classes
// and '?' ("[ab]*/<i>/y", "p?/<i>/*"), and a handful with no literal at
// all that match none of the benchmark topics.
func mixedPatterns(n int) []string {
	ps := []string{"[A-Z]*", "??", "?", "[#]*", "[^a-z]*?"}
	for i := 0; len(ps) < n; i++ {
		s := strconv.Itoa(i)
		switch i % 10 {
		case 0, 1, 2:
			ps = append(ps, "p/"+s+"/x/*")
		case 3, 4, 5:
			ps = append(ps, "*/"+s+"/x")
		case 6:
			ps = append(ps, "m/"+s+"/*/c")
		case 7:
			ps = append(ps, "acme/t/*/"+s)
		case 8:
			ps = append(ps, "*/"+s+"/in/*", "?q"+s+"*")
		default:
			ps = append(ps, "[ab]*/"+s+"/y", "p?/"+s+"/*")
		}
	}
	return ps[:n]
}

// mixedTopics returns k distinct topics of a kind: "few" match a few of
// mixedPatterns (a literal-prefix and a leading-wildcard glob), "shared"
// match one of the globs sharing the prefix "acme/t/", "none" match none.
func mixedTopics(k int, kind string) [][]byte {
	out := make([][]byte, k)
	for j := range out {
		s := strconv.Itoa(j * 10)
		switch kind {
		case "few":
			out[j] = []byte("p/" + s + "/x/" + strconv.Itoa(j*10+3) + "/x")
		case "shared":
			out[j] = []byte("acme/t/x/" + strconv.Itoa(j*10+7))
		default:
			out[j] = []byte("zz/" + s + "/q/none")
		}
	}
	return out
}

func mixedIndex(b *testing.B, n int) *Index {
	b.Helper()
	x := NewIndex()
	for _, p := range mixedPatterns(n) {
		if err := x.AddNew(p); err != nil {
			b.Fatal(err)
		}
	}
	return x
}

// BenchmarkMixedMatch matches topics against 100,000 globs of mixed
// shapes. "distinct" cycles through 4,096 topics, "repeat" matches one
// topic again and again.
func BenchmarkMixedMatch(b *testing.B) {
	x := mixedIndex(b, 100000)
	for _, kind := range []string{"few", "shared", "none"} {
		for _, k := range []int{4096, 1} {
			name := kind + "/distinct"
			if k == 1 {
				name = kind + "/repeat"
			}
			b.Run(name, func(b *testing.B) {
				topics := mixedTopics(k, kind)
				n, i := 0, 0
				b.ReportAllocs()
				for b.Loop() {
					x.Match(topics[i%len(topics)], func(string) { n++ })
					i++
				}
				if got := n > 0; got != (kind != "none") {
					b.Fatalf("%d matches", n)
				}
			})
		}
	}
}

// BenchmarkMixedChange measures what one batch of the fsm costs at
// 100,000 globs of mixed shapes: Clone, then Add (with its duplicate
// check) or Remove of one glob of each shape.
func BenchmarkMixedChange(b *testing.B) {
	x := mixedIndex(b, 100000)
	for _, c := range []struct{ name, pattern string }{
		{"prefix", "p/30/x/*"},
		{"leading", "*/33/x"},
		{"middle", "m/36/*/c"},
		{"shared", "acme/t/*/37"},
		{"inner", "*/38/in/*"},
	} {
		b.Run("clone+add/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := x.Clone().Add(c.pattern + "z"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("clone+remove/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				y := x.Clone()
				y.Remove(c.pattern)
				if y.Len() != x.Len()-1 {
					b.Fatal("not removed")
				}
			}
		})
	}
}

// BenchmarkMixedBuild builds the index of 100,000 globs of mixed shapes
// with AddNew, as the fsm does on start, and reports the heap it holds
// per pattern (the patterns' own strings excluded).
func BenchmarkMixedBuild(b *testing.B) {
	ps := mixedPatterns(100000)
	b.ReportAllocs()
	var before, after runtime.MemStats
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := NewIndex()
		for _, p := range ps {
			if err := x.AddNew(p); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(x)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(ps)), "B/pattern")
}

// BenchmarkNoLiteralMatch matches against 256 globs without a literal
// ("?*", "??*", ...), which every topic tests: "repeat" shows the result
// cache, "distinct" (4,096 topics, more than the cache holds) its cost
// when it misses.
func BenchmarkNoLiteralMatch(b *testing.B) {
	x := NewIndex()
	q := ""
	for range 256 {
		q += "?"
		if err := x.Add(q + "*"); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		k    int
	}{{"distinct", 4096}, {"repeat", 1}} {
		b.Run(c.name, func(b *testing.B) {
			topics := mixedTopics(c.k, "few")
			n, i := 0, 0
			b.ReportAllocs()
			for b.Loop() {
				x.Match(topics[i%len(topics)], func(string) { n++ })
				i++
			}
			if n == 0 {
				b.Fatal("no match")
			}
		})
	}
}

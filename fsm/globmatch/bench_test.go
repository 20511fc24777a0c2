package globmatch

import (
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

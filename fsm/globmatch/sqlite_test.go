package globmatch

import (
	"strings"
	"testing"
	"time"
)

// TestPortCostIsBounded checks, without a clock, that the port does at
// most O(len(pattern) * len(topic)) work on star-heavy patterns against a
// 65535-byte topic: a recursive matcher that revisits every star placement
// would take billions of steps on these.
func TestPortCostIsBounded(t *testing.T) {
	topic := strings.Repeat("a", 65535)
	for _, c := range []struct {
		pattern string
		topic   string
		want    bool
	}{
		{strings.Repeat("*a", 30) + "*b", topic, false},
		{strings.Repeat("*a", 30), topic, true},
		{strings.Repeat("*", 30) + "b", topic, false},
		{strings.Repeat("*?", 30) + "b", topic, false},
		{strings.Repeat("*[a-c]", 30) + "*b", topic, false},
		{strings.Repeat("*[^b-c]", 29) + "*[b]", topic, false},
		{"*" + strings.Repeat("a", 28) + "b", topic, false},
		{strings.Repeat("*a", 29) + "*b", topic[1:] + "b", true},
		{strings.Repeat("*aa", 15) + "*b*", topic, false},
	} {
		got, steps := globSteps(c.pattern, c.topic)
		if got != c.want {
			t.Errorf("globSteps(%.40q…, %d bytes) = %v, want %v", c.pattern, len(c.topic), got, c.want)
		}
		// Each star restart moves the restart point one character on, and
		// costs at most one pass over the pattern.
		bound := (len(c.topic) + 2) * (len(c.pattern) + 2)
		if steps > bound {
			t.Errorf("globSteps(%.40q…, %d bytes) took %d steps, bound %d", c.pattern, len(c.topic), steps, bound)
		}
		t.Logf("%.30q…: %d steps", c.pattern, steps)
	}
}

// TestEnginesStayFastOnStarHeavyPatterns runs the compiled patterns (both
// engines) on the inputs of TestPortCostIsBounded and on classes that a
// '{...}' translation would make exponential in gobwas. The limit is two
// orders of magnitude above the expected time (milliseconds), so only an
// exponential regression trips it.
func TestEnginesStayFastOnStarHeavyPatterns(t *testing.T) {
	topic := []byte(strings.Repeat("a", 65535))
	patterns := []string{
		strings.Repeat("*a", 30) + "*b",
		strings.Repeat("*?", 30) + "b",
		strings.Repeat("*[a-cx]", 30) + "*y?",
		strings.Repeat("*[^Ā-ӿx]", 30) + "*y?", // fallback engine
		strings.Repeat("*[a-c]", 30) + "*b",
		"*" + strings.Repeat("a", 28) + "b",
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, pat := range patterns {
			p := MustCompile(pat)
			if p.Match(topic) {
				t.Errorf("%.30q… (%s) matches", pat, p.Engine())
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("matching star-heavy patterns takes more than 30s")
	}
}

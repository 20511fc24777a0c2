package globmatch

import (
	"bufio"
	"encoding/json"
	"math/rand/v2"
	"os"
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
		if p.Engine() != EngineGobwas {
			t.Fatalf("Compile(%q).Engine() = %s with translation %q", pattern, p.Engine(), tr)
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

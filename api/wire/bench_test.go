package wire

import (
	"fmt"
	"testing"
)

// benchSet is a realistic large set_subscriptions body: 1000 entries, half
// exact topics and half globs, each with the client's recovery URL.
func benchSet() SetSubscriptions {
	m := SetSubscriptions{URL: vecURL}
	for i := range 500 {
		m.Exact = append(m.Exact, ExactEntry{Topic: fmt.Appendf(nil, "topic/%06d", i), Recovery: vecRecovery})
		m.Globs = append(m.Globs, GlobEntry{Glob: fmt.Sprintf("glob/%06d/*", i), Recovery: vecRecovery})
	}
	m.Etag = Etag(m.URL, m.Exact, m.Globs)
	return m
}

func BenchmarkParseSetSubscriptions1000(b *testing.B) {
	body, err := AppendSetSubscriptions(nil, benchSet())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseSetSubscriptions(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEtag1000(b *testing.B) {
	m := benchSet()
	b.SetBytes(int64(len(etagDocument(m.URL, m.Exact, m.Globs))))
	b.ReportAllocs()
	for b.Loop() {
		Etag(m.URL, m.Exact, m.Globs)
	}
}

func BenchmarkEtagEmpty(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Etag(vecURL, nil, nil)
	}
}

package wire

import (
	"crypto/sha512"
	"encoding/binary"
	"hash"
	"io"
)

// Etag returns the strong etag (format 0) of a URL's subscription set: the
// SHA-512 of the document
//
//	"URL" str16(url) "\nEXACT" {str16(topic) str16(recovery)}* "\nGLOB" {str16(glob) str16(recovery)}* "\n"
//
// where a missing recovery is written as length 0. Both lists must already be
// strictly ascending bytewise; sorting is the caller's duty because the order
// is part of what the etag fingerprints. Values longer than MaxStr16 panic
// (see EtagBuilder).
func Etag(url string, exact []ExactEntry, globs []GlobEntry) [64]byte {
	b := NewEtagBuilder(url)
	for _, x := range exact {
		b.AddExact(x.Topic, x.Recovery)
	}
	b.StartGlobs()
	for _, g := range globs {
		b.AddGlob(g.Glob, g.Recovery)
	}
	return b.Sum()
}

type etagPhase uint8

const (
	etagExact etagPhase = iota
	etagGlobs
	etagDone
)

// EtagBuilder computes a strong etag incrementally, for callers that walk a
// store in order instead of holding the whole set. It streams the document
// into the hash and never builds it. Only NewEtagBuilder makes a usable
// builder; the zero value is not.
//
// Call AddExact for every exact subscription in ascending order, then
// StartGlobs, then AddGlob for every glob in ascending order, then Sum.
// AddGlob implies StartGlobs, Sum implies both, and Sum may be called
// repeatedly. Getting the order wrong would silently produce a wrong etag, so
// the builder panics instead, as on any other programming error: AddExact
// after StartGlobs or AddGlob, any Add or StartGlobs after Sum, and any value
// longer than MaxStr16 bytes (which cannot come from the wire). The order of
// entries within a list is not checked: that is the caller's duty.
type EtagBuilder struct {
	w     io.Writer // the hash, or a buffer when tests want the document itself
	h     hash.Hash // nil when only the document is wanted
	phase etagPhase
	sum   [64]byte
	n     int
	buf   [512]byte // batches the many tiny writes; strings are copied without allocating
}

// NewEtagBuilder starts the etag document for url.
func NewEtagBuilder(url string) *EtagBuilder {
	h := sha512.New()
	b := &EtagBuilder{w: h, h: h}
	b.start(url)
	return b
}

func (b *EtagBuilder) start(url string) {
	b.writeString("URL")
	b.str16(url)
	b.writeString("\nEXACT")
}

// AddExact adds one exact subscription; recovery "" means none.
func (b *EtagBuilder) AddExact(topic []byte, recovery string) {
	if b.phase != etagExact {
		panic("wire: EtagBuilder.AddExact called after StartGlobs, AddGlob or Sum")
	}
	b.bytes16(topic)
	b.str16(recovery)
}

// StartGlobs ends the exact list; calling it again before Sum has no effect.
func (b *EtagBuilder) StartGlobs() {
	switch b.phase {
	case etagExact:
		b.writeString("\nGLOB")
		b.phase = etagGlobs
	case etagDone:
		panic("wire: EtagBuilder.StartGlobs called after Sum")
	}
}

// AddGlob adds one glob subscription; recovery "" means none.
func (b *EtagBuilder) AddGlob(glob, recovery string) {
	if b.phase == etagDone {
		panic("wire: EtagBuilder.AddGlob called after Sum")
	}
	b.StartGlobs()
	b.str16(glob)
	b.str16(recovery)
}

// Sum finishes the document and returns its SHA-512.
func (b *EtagBuilder) Sum() [64]byte {
	if b.phase != etagDone {
		b.finish()
		b.h.Sum(b.sum[:0])
	}
	return b.sum
}

func (b *EtagBuilder) finish() {
	b.StartGlobs()
	b.writeString("\n")
	b.flush()
	b.phase = etagDone
}

func (b *EtagBuilder) str16(s string) {
	if len(s) > MaxStr16 {
		panic("wire: etag value longer than 65535 bytes")
	}
	b.u16(uint16(len(s)))
	b.writeString(s)
}

func (b *EtagBuilder) bytes16(p []byte) {
	if len(p) > MaxStr16 {
		panic("wire: etag value longer than 65535 bytes")
	}
	b.u16(uint16(len(p)))
	b.write(p)
}

func (b *EtagBuilder) u16(v uint16) {
	if len(b.buf)-b.n < 2 {
		b.flush()
	}
	binary.BigEndian.PutUint16(b.buf[b.n:], v)
	b.n += 2
}

func (b *EtagBuilder) writeString(s string) { buffered(b, s) }

func (b *EtagBuilder) write(p []byte) {
	if len(p) >= len(b.buf) {
		// Large values go straight to the hash instead of through the buffer.
		b.flush()
		b.w.Write(p) //nolint:errcheck // hash and bytes.Buffer writes never fail
		return
	}
	buffered(b, p)
}

// buffered copies s into b's buffer, flushing it whenever it fills; a
// string is copied without being converted, so without allocating.
func buffered[S string | []byte](b *EtagBuilder, s S) {
	for len(s) > 0 {
		if b.n == len(b.buf) {
			b.flush()
		}
		k := copy(b.buf[b.n:], s)
		b.n += k
		s = s[k:]
	}
}

func (b *EtagBuilder) flush() {
	if b.n > 0 {
		b.w.Write(b.buf[:b.n]) //nolint:errcheck // hash and bytes.Buffer writes never fail
		b.n = 0
	}
}

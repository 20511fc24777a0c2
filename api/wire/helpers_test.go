package wire

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
)

// etagDocument builds the document Etag hashes, through the same builder
// code, so the worked example in the spec can be compared byte for byte.
func etagDocument(url string, exact []ExactEntry, globs []GlobEntry) []byte {
	var buf bytes.Buffer
	b := &EtagBuilder{w: &buf}
	b.start(url)
	for _, x := range exact {
		b.AddExact(x.Topic, x.Recovery)
	}
	b.StartGlobs()
	for _, g := range globs {
		b.AddGlob(g.Glob, g.Recovery)
	}
	b.finish()
	return buf.Bytes()
}

// body assembles hand-made bodies for error cases the encoders refuse to
// produce.
type body []byte

func (b body) u8(v uint8) body   { return append(b, v) }
func (b body) u16(v uint16) body { return binary.BigEndian.AppendUint16(b, v) }
func (b body) u32(v uint32) body { return binary.BigEndian.AppendUint32(b, v) }
func (b body) u64(v uint64) body { return binary.BigEndian.AppendUint64(b, v) }
func (b body) raw(p string) body { return append(b, p...) }
func (b body) s16(p string) body { return b.u16(uint16(len(p))).raw(p) }
func (b body) s8(p string) body  { return b.u8(uint8(len(p))).raw(p) }

func sha512Sum(p []byte) [64]byte { return sha512.Sum512(p) }

// appending binds m to an Append function, for tables of encoders.
func appending[M any](f func([]byte, M) ([]byte, error), m M) func([]byte) ([]byte, error) {
	return func(dst []byte) ([]byte, error) { return f(dst, m) }
}

// parsing makes a Parse function's result an any, for tables of decoders.
func parsing[M any](f func([]byte) (M, error)) func([]byte) (any, error) {
	return func(b []byte) (any, error) { return f(b) }
}

// withMessage is appending for a header the vector's message follows.
func withMessage[M any](f func([]byte, M) ([]byte, error), m M) func([]byte) ([]byte, error) {
	return func(dst []byte) ([]byte, error) {
		b, err := f(dst, m)
		return append(b, vecMessage...), err
	}
}

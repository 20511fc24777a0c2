package lonelypsdtest

import (
	"io"
	"math/rand/v2"
)

// patternReader yields n bytes of a repeated pseudo-random block.
type patternReader struct {
	block []byte
	left  int64
	off   int
}

// NewPattern returns a reader of n bytes that neither compress nor cost
// memory: one pseudo-random 1 MiB block, repeated, the same on every call.
func NewPattern(n int64) io.Reader {
	block := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range block {
		block[i] = byte(r.Uint32())
	}
	return &patternReader{block: block, left: n}
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	n := copy(b, p.block[p.off:])
	p.off = (p.off + n) % len(p.block)
	p.left -= int64(n)
	return n, nil
}

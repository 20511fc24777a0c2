package ws

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// body is one message body shared by every connection it is queued on:
// in memory (data) or in an unlinked temporary file (f). It is
// reference-counted; the last release frees the memory charge or closes
// the file, so a 5 GiB message delivered to a hundred sockets exists once.
type body struct {
	data []byte
	f    *os.File
	n    uint64
	sum  [64]byte // SHA-512 of the content

	// charged is what the body counts against the hub's memory budget.
	charged int64
	hub     *Hub
	refs    atomic.Int32

	// The forms compressed with shared compressors (1 and the presets),
	// made once by the first writer that needs one: every connection
	// would produce the same bytes.
	zmu sync.Mutex
	zs  map[uint64]*zform
}

// ReadAt reads from the body.
func (b *body) ReadAt(p []byte, off int64) (int, error) {
	if b.f != nil {
		return b.f.ReadAt(p, off)
	}
	if off >= int64(len(b.data)) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, b.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (b *body) retain() { b.refs.Add(1) }

func (b *body) release() {
	if b.refs.Add(-1) != 0 {
		return
	}
	if b.f != nil {
		_ = b.f.Close()
	}
	if b.hub != nil && b.charged > 0 {
		b.hub.buffered.Add(-b.charged)
	}
	b.data = nil
	b.zmu.Lock()
	for _, f := range b.zs {
		if f.b != nil {
			f.b.release()
		}
	}
	b.zs = nil
	b.zmu.Unlock()
}

// spool collects a body being written: in memory while small, in an
// unlinked temporary file past the threshold, hashing as it goes.
type spool struct {
	hub  *Hub
	mem  bytes.Buffer
	f    *os.File
	n    uint64
	h    hash.Hash
	done bool
}

// newSpool starts a body of about expect bytes: it goes to a file at once
// when expect is over the threshold or the hub's memory budget is spent.
func (h *Hub) newSpool(expect uint64) (*spool, error) {
	s := &spool{hub: h, h: sha512.New()}
	// The budget check races with other spools (they are charged when
	// finished); the overshoot is at most one threshold per concurrent
	// request, which is the point of the threshold.
	if expect > uint64(h.cfg.SpoolThreshold) || h.buffered.Load()+int64(expect) > h.cfg.MaxBufferedBytes {
		if err := s.toFile(); err != nil {
			return nil, err
		}
		return s, nil
	}
	s.mem.Grow(int(expect))
	return s, nil
}

func (s *spool) toFile() error {
	f, err := os.CreateTemp(s.hub.cfg.SpoolDir, "lonelypsd-ws-*")
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	// Unlinked at once: the descriptor keeps the data readable and the
	// kernel frees it when the last reader closes, even after a crash.
	if err := os.Remove(f.Name()); err != nil {
		s.hub.log.Warn("spool file not unlinked", "path", f.Name(), "err", err)
	}
	if s.mem.Len() > 0 {
		if _, err := f.Write(s.mem.Bytes()); err != nil {
			_ = f.Close()
			return fmt.Errorf("spool: %w", err)
		}
	}
	s.mem = bytes.Buffer{}
	s.f = f
	return nil
}

func (s *spool) Write(p []byte) (int, error) {
	if s.f == nil && int64(s.mem.Len()+len(p)) > s.hub.cfg.SpoolThreshold {
		if err := s.toFile(); err != nil {
			return 0, err
		}
	}
	s.h.Write(p)
	s.n += uint64(len(p))
	if s.f != nil {
		return s.f.Write(p)
	}
	return s.mem.Write(p)
}

// finish turns the spool into a body with one reference.
func (s *spool) finish() *body {
	s.done = true
	b := &body{n: s.n, hub: s.hub, f: s.f}
	s.h.Sum(b.sum[:0])
	if s.f == nil {
		b.data = s.mem.Bytes()
		b.charged = int64(cap(b.data))
		s.hub.buffered.Add(b.charged)
	}
	b.refs.Store(1)
	return b
}

// discard drops an unfinished spool.
func (s *spool) discard() {
	if s.done {
		return
	}
	s.done = true
	if s.f != nil {
		_ = s.f.Close()
	}
	s.mem = bytes.Buffer{}
}

var errLength = errors.New("body length differs from the declared length")

// readBody reads exactly n bytes of r into a body, checking the SHA-512
// against want. Too few or too many bytes, or a wrong hash, is an error
// wrapping errLength or errDigest.
func (h *Hub) readBody(r io.Reader, n uint64, want [64]byte) (*body, error) {
	s, err := h.newSpool(n)
	if err != nil {
		return nil, err
	}
	got, err := io.CopyBuffer(s, io.LimitReader(r, int64(n)), make([]byte, 64<<10))
	if err != nil {
		s.discard()
		return nil, fmt.Errorf("read body: %w", err)
	}
	if uint64(got) != n {
		s.discard()
		return nil, fmt.Errorf("%w: %d of %d bytes", errLength, got, n)
	}
	var one [1]byte
	if k, _ := io.ReadFull(r, one[:]); k > 0 {
		s.discard()
		return nil, fmt.Errorf("%w: more than %d bytes", errLength, n)
	}
	b := s.finish()
	if b.sum != want {
		b.release()
		return nil, errDigest
	}
	return b, nil
}

var errDigest = errors.New("body does not match its SHA-512")

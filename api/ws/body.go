package ws

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	msgspool "github.com/lonelypsd/lonelypsd/api/spool"
)

// body is one message body shared by every connection it is queued on.
// The bytes live in the node's spool (memory within the node-wide budget,
// or an unlinked file); body adds what websockets keep per message: the
// compressed forms. It is reference-counted; the last release frees the
// spooled bytes, so a 5 GiB message delivered to a hundred sockets exists
// once.
type body struct {
	sb   *msgspool.Body // nil for a body built in memory (compressSmall)
	data []byte         // the content when it is in memory
	// f is non-nil when the content is in a file (not charged to a
	// connection's queue as memory).
	f   io.ReaderAt
	n   uint64
	sum [64]byte // SHA-512 of the content

	refs atomic.Int32

	// The forms compressed with shared compressors (1 and the presets),
	// made once by the first writer that needs one: every connection
	// would produce the same bytes.
	zmu sync.Mutex
	zs  map[uint64]*zform

	frame sharedFrame // its deliveries' identifier and encoded RECEIVE_STREAM
}

func newBody(sb *msgspool.Body) *body {
	b := &body{sb: sb, n: sb.Len(), sum: sb.Sum()}
	if data, ok := sb.Bytes(); ok {
		b.data = data
	} else {
		b.f = sb
	}
	b.refs.Store(1)
	return b
}

// ReadAt reads from the body.
func (b *body) ReadAt(p []byte, off int64) (int, error) {
	if b.sb != nil {
		return b.sb.ReadAt(p, off)
	}
	return bytes.NewReader(b.data).ReadAt(p, off)
}

func (b *body) retainN(n int) { b.refs.Add(int32(n)) }

func (b *body) release() {
	if b.refs.Add(-1) != 0 {
		return
	}
	if b.sb != nil {
		b.sb.Release()
	}
	b.sb, b.data, b.f = nil, nil, nil
	b.zmu.Lock()
	for _, f := range b.zs {
		if f.b != nil {
			f.b.release()
		}
	}
	b.zs = nil
	b.zmu.Unlock()
	b.frame.mu.Lock()
	b.frame.out = nil
	b.frame.mu.Unlock()
}

// spool collects a body being written into the node's spool.
type spool struct {
	w    *msgspool.Writer
	n    uint64
	done bool
}

// errTooLarge refuses a message over Config.MaxMessageSize.
var errTooLarge = errors.New("message exceeds the size limit")

// checkSize refuses a message longer than Config.MaxMessageSize.
func (h *Hub) checkSize(n uint64) error {
	if limit := h.cfg.MaxMessageSize; limit > 0 && n > uint64(limit) {
		return fmt.Errorf("%w: %d bytes, limit %d", errTooLarge, n, limit)
	}
	return nil
}

// spoolFailure is how a connection ends when its message cannot be held:
// 1009 for a message over the size limit, 1013 (try again later) when
// the node's disk is almost full; anything else is the notifier's fault
// (a compressed message that does not decode to its declared length).
func spoolFailure(what string, err error) error {
	switch {
	case errors.Is(err, errTooLarge):
		return closeErr(statusTooBig, what+": message exceeds the node's size limit", err)
	case msgspool.IsNoSpace(err):
		return closeErr(statusTryAgainLater, what+": the node's disk is almost full", err)
	case errors.Is(err, msgspool.ErrStore):
		return closeErr(statusInternal, what+": cannot spool message", err)
	}
	return protocolErr("%s: %w", what, err)
}

// newSpool starts a body of about expect bytes.
func (h *Hub) newSpool(expect uint64) (*spool, error) {
	if err := h.checkSize(expect); err != nil {
		return nil, err
	}
	w, err := h.bodies.NewWriter(expect)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return &spool{w: w}, nil
}

func (s *spool) Write(p []byte) (int, error) {
	k, err := s.w.Write(p)
	s.n += uint64(k)
	return k, err
}

// finish turns the spool into a body with one reference.
func (s *spool) finish() *body {
	s.done = true
	return newBody(s.w.Finish())
}

// discard drops an unfinished spool.
func (s *spool) discard() {
	if s.done {
		return
	}
	s.done = true
	s.w.Discard()
}

var (
	errLength = msgspool.ErrLength
	errDigest = msgspool.ErrDigest
)

// readBody reads exactly n bytes of r into a body, checking the SHA-512
// against want. Too few or too many bytes, or a wrong hash, is an error
// wrapping errLength or errDigest.
func (h *Hub) readBody(r io.Reader, n uint64, want [64]byte) (*body, error) {
	sb, err := h.bodies.ReadBody(r, n, want)
	if err != nil {
		return nil, err
	}
	return newBody(sb), nil
}

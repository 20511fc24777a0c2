// Package spool holds message bodies while they are delivered: in memory
// within one node-wide byte budget, and past that budget (or past the
// per-message threshold) in unlinked temporary files. HTTP notifies,
// websocket messages and receive_for_websockets bodies share one Spool, so
// concurrent messages cost disk, not memory, however they arrive.
package spool

import (
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"
)

// Config tunes a Spool. Zero values take the defaults.
type Config struct {
	// Dir holds the temporary files; empty means the system temp folder.
	Dir string
	// Threshold: a body longer than this always goes to a file.
	Threshold int64
	// MaxBuffered bounds the bytes all bodies of the node hold in memory
	// together; a body that would pass it goes to a file.
	MaxBuffered int64
	// DiskReserve is the free space a new file must leave on Dir's volume
	// (counting the body's declared length); below it the body is refused
	// with ErrNoSpace instead of filling the disk the Raft log lives on.
	// Negative disables the check.
	DiskReserve int64
}

// Defaults.
const (
	DefaultThreshold   = 10 << 20
	DefaultMaxBuffered = 64 << 20
	DefaultDiskReserve = 64 << 20
)

// ErrNoSpace: the spool's volume is (nearly) full. The node cannot hold the
// message now; callers answer 503 (retry later), never 500.
var ErrNoSpace = noSpaceError{}

type noSpaceError struct{}

func (noSpaceError) Error() string     { return "spool: not enough free disk space" }
func (noSpaceError) Unavailable() bool { return true }

// ErrStore: the spool's file could not be created or written for another
// reason than space (permissions, I/O). The node's fault: 503, not 400.
var ErrStore = storeError{}

type storeError struct{}

func (storeError) Error() string     { return "spool: cannot store the message" }
func (storeError) Unavailable() bool { return true }

// ErrLength and ErrDigest are what ReadBody returns for a body of the wrong
// length or content: the sender's fault.
var (
	ErrLength = errors.New("body length differs from the declared length")
	ErrDigest = errors.New("body does not match its SHA-512")
)

// Spool is safe for concurrent use.
type Spool struct {
	cfg      Config
	log      *slog.Logger
	buffered atomic.Int64
	// freeBytes reports the free bytes of Dir's volume; replaced in tests.
	freeBytes func(dir string) (int64, error)
}

// New makes a spool; it does not create Dir.
func New(cfg Config, log *slog.Logger) *Spool {
	if cfg.Dir == "" {
		cfg.Dir = os.TempDir()
	}
	if cfg.Threshold <= 0 {
		cfg.Threshold = DefaultThreshold
	}
	if cfg.MaxBuffered <= 0 {
		cfg.MaxBuffered = DefaultMaxBuffered
	}
	if cfg.DiskReserve == 0 {
		cfg.DiskReserve = DefaultDiskReserve
	}
	if log == nil {
		log = slog.Default()
	}
	return &Spool{cfg: cfg, log: log, freeBytes: FreeBytes}
}

// Config returns the configuration in effect (defaults filled in).
func (s *Spool) Config() Config { return s.cfg }

// Buffered is the bytes bodies hold in memory now.
func (s *Spool) Buffered() int64 { return s.buffered.Load() }

// NewWriter starts a body of about expect bytes (its declared length). It
// is kept in memory when expect is within the threshold and the budget has
// room for it: the budget is charged expect at once, so concurrent bodies
// never overshoot it. Otherwise it goes to a file, checked against the disk
// reserve first (ErrNoSpace).
func (s *Spool) NewWriter(expect uint64) (*Writer, error) {
	w := &Writer{sp: s, h: sha512.New()}
	if expect <= uint64(s.cfg.Threshold) {
		if s.buffered.Add(int64(expect)) <= s.cfg.MaxBuffered {
			w.charge = int64(expect)
			return w, nil
		}
		s.buffered.Add(-int64(expect))
	}
	if err := w.toFile(expect); err != nil {
		return nil, err
	}
	return w, nil
}

// checkReserve refuses a file of need more bytes that would leave less than
// the reserve free.
func (s *Spool) checkReserve(need uint64) error {
	if s.cfg.DiskReserve < 0 {
		return nil
	}
	free, err := s.freeBytes(s.cfg.Dir)
	if err != nil {
		// Unknown free space is no reason to refuse; a write that fails
		// for lack of space is still ErrNoSpace.
		s.log.Debug("spool: free space unknown", "dir", s.cfg.Dir, "err", err)
		return nil
	}
	if need > uint64(max(free-s.cfg.DiskReserve, 0)) {
		return fmt.Errorf("%w: %d bytes free on the spool volume, %d needed plus a reserve of %d",
			ErrNoSpace, free, need, s.cfg.DiskReserve)
	}
	return nil
}

// Writer collects one body, hashing it as it goes. It is used by one
// goroutine.
type Writer struct {
	sp     *Spool
	mem    []byte
	charge int64 // budget held for mem
	f      *os.File
	n      uint64
	h      hash.Hash
	done   bool
}

// Len is the bytes written so far.
func (w *Writer) Len() uint64 { return w.n }

func (w *Writer) toFile(expect uint64) error {
	if err := w.sp.checkReserve(max(expect, w.n)); err != nil {
		return err
	}
	f, err := os.CreateTemp(w.sp.cfg.Dir, "lonelypsd-spool-*")
	if err != nil {
		return spaceErr(fmt.Errorf("spool: %w", err))
	}
	// Unlinked at once: the descriptor keeps the data readable and the
	// kernel frees it when the last reader closes, even after a crash.
	if err := os.Remove(f.Name()); err != nil {
		w.sp.log.Warn("spool file not unlinked", "path", f.Name(), "err", err)
	}
	if len(w.mem) > 0 {
		if _, err := f.Write(w.mem); err != nil {
			_ = f.Close()
			return spaceErr(fmt.Errorf("spool: %w", err))
		}
	}
	w.release()
	w.f = f
	return nil
}

// release gives back the memory and its charge.
func (w *Writer) release() {
	w.mem = nil
	if w.charge > 0 {
		w.sp.buffered.Add(-w.charge)
		w.charge = 0
	}
}

// Write appends p. Memory never passes the charge: a body longer than it
// declared moves to a file.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("spool: write after finish")
	}
	if w.f == nil && int64(len(w.mem)+len(p)) > w.charge {
		if err := w.toFile(w.n + uint64(len(p))); err != nil {
			return 0, err
		}
	}
	w.h.Write(p)
	w.n += uint64(len(p))
	if w.f != nil {
		k, err := w.f.Write(p)
		return k, spaceErr(err)
	}
	if w.mem == nil {
		// The whole charge at once: it is within the budget already, and
		// growing by doubling would make as much garbage again.
		w.mem = make([]byte, 0, w.charge)
	}
	w.mem = append(w.mem, p...)
	return len(p), nil
}

// Finish turns the writer into a Body holding one reference. The unused
// part of the charge goes back to the budget.
func (w *Writer) Finish() *Body {
	w.done = true
	b := &Body{sp: w.sp, f: w.f, n: w.n}
	w.h.Sum(b.sum[:0])
	if w.f == nil {
		b.data = w.mem
		b.charge = int64(cap(w.mem))
		if extra := w.charge - b.charge; extra > 0 {
			w.sp.buffered.Add(-extra)
		}
		w.charge, w.mem = 0, nil
	}
	w.f = nil
	b.refs.Store(1)
	return b
}

// Discard drops an unfinished writer; after Finish it does nothing.
func (w *Writer) Discard() {
	if w.done {
		return
	}
	w.done = true
	if w.f != nil {
		_ = w.f.Close()
		w.f = nil
	}
	w.release()
}

// Body is a finished message body, shared by every delivery of it and freed
// by the last Release.
type Body struct {
	sp     *Spool
	data   []byte
	f      *os.File
	n      uint64
	sum    [64]byte
	charge int64
	refs   atomic.Int32
}

// Len is the body's length.
func (b *Body) Len() uint64 { return b.n }

// Sum is the body's SHA-512.
func (b *Body) Sum() [64]byte { return b.sum }

// Bytes returns the content of a body held in memory, and false for one in
// a file.
func (b *Body) Bytes() ([]byte, bool) {
	if b.f != nil {
		return nil, false
	}
	return b.data, true
}

// ReadAt reads from the body; deliveries read it concurrently.
func (b *Body) ReadAt(p []byte, off int64) (int, error) {
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

// Retain adds a reference.
func (b *Body) Retain() { b.refs.Add(1) }

// Release drops a reference; the last one frees the memory (and its budget)
// or closes the file.
func (b *Body) Release() {
	if b.refs.Add(-1) != 0 {
		return
	}
	if b.f != nil {
		_ = b.f.Close()
	}
	if b.charge > 0 {
		b.sp.buffered.Add(-b.charge)
	}
	b.data = nil
}

// ReadBody reads exactly n bytes of r into a body and checks its SHA-512
// against want. Too few or too many bytes is an error wrapping ErrLength, a
// wrong hash ErrDigest, a full disk ErrNoSpace; other errors are from r.
func (s *Spool) ReadBody(r io.Reader, n uint64, want [64]byte) (*Body, error) {
	w, err := s.NewWriter(n)
	if err != nil {
		return nil, err
	}
	// The copy buffer is sized to the message: most are a few bytes, and a
	// 64 KiB buffer each would cost more than the rest of a notify.
	buf := make([]byte, max(min(n, 64<<10), 1))
	got, err := io.CopyBuffer(w, io.LimitReader(r, int64(min(n, 1<<62))), buf)
	if err != nil {
		w.Discard()
		if errors.Is(err, ErrNoSpace) {
			return nil, err
		}
		return nil, fmt.Errorf("read body: %w", err)
	}
	if uint64(got) != n {
		w.Discard()
		return nil, fmt.Errorf("%w: %d of %d bytes", ErrLength, got, n)
	}
	var one [1]byte
	if k, _ := io.ReadFull(r, one[:]); k > 0 {
		w.Discard()
		return nil, fmt.Errorf("%w: more than %d bytes", ErrLength, n)
	}
	b := w.Finish()
	if b.sum != want {
		b.Release()
		return nil, ErrDigest
	}
	return b, nil
}

// spaceErr marks a full disk or quota as ErrNoSpace, any other failure of
// the spool's own file as ErrStore.
func spaceErr(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrNoSpace), errors.Is(err, ErrStore):
		return err
	case IsNoSpace(err):
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return fmt.Errorf("%w: %w", ErrStore, err)
}

// IsNoSpace reports a full disk or quota (ENOSPC, EDQUOT) or ErrNoSpace.
func IsNoSpace(err error) bool {
	return errors.Is(err, ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

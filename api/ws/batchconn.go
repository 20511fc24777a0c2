package ws

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// The socket under the websocket library. The writer corks it while it
// writes what is ready (replies, up to MaxUnackedParts deliveries, control
// messages): the frames collect in memory and leave with one system call
// when it uncorks, instead of one call each. Every system call on the
// socket is made under one mutex, so frames written by the library from
// other goroutines (pongs, the close frame) never interleave with a batch,
// and each is bounded by WriteTimeout through the socket's deadline rather
// than a timer per message.
//
// The node's messages do not go through the library's writer, whose locks
// and per-message state cost more than the frame itself: writeMessage
// frames them here. The library still writes the control frames (pings,
// pongs, the close frame), each with one Write of the whole frame (they
// are at most 127 bytes and its buffer holds 512), and once it has written
// a close frame no message may follow it.

const (
	// batchDirect is the size from which a write bypasses the batch: big
	// payloads go straight to the socket after what is batched, instead
	// of being copied.
	batchDirect = 64 << 10
	// wsWriteBuffer is the library's write buffer per connection. Small:
	// batches are collected in batchConn, which holds memory only while
	// corked.
	wsWriteBuffer = 512
	// wsReadBuffer is the library's read buffer per connection, in place
	// of the HTTP server's 4 KiB.
	wsReadBuffer = 1024
)

type batchConn struct {
	net.Conn
	timeout time.Duration
	pool    *sync.Pool // *[]byte batch buffers, shared by the hub

	mu       sync.Mutex
	corked   bool
	buf      *[]byte // the batch, from pool while corked
	deadline time.Time
	closing  bool // a close frame is written: no message may follow
}

// Server frames: FIN set, not masked (RFC 6455 5.1, 5.2).
const (
	frameBinary = 0x82 // FIN, opcode 2
	frameClose  = 0x88 // FIN, opcode 8
)

// appendFrameHeader appends the header of a final, unmasked binary frame
// of n payload bytes.
func appendFrameHeader(dst []byte, n int) []byte {
	switch {
	case n < 126:
		return append(dst, frameBinary, byte(n))
	case n <= 0xffff:
		return append(dst, frameBinary, 126, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, frameBinary, 127), uint64(n))
}

// writeMessage sends p as one binary message, or adds it to the batch
// while corked. After a close frame it drops p: the connection is closing,
// and the peer would take a message after the close frame as an error.
func (b *batchConn) writeMessage(p []byte) error {
	var hb [10]byte
	h := appendFrameHeader(hb[:0], len(p))
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return nil
	}
	if b.corked && len(p) < batchDirect {
		*b.buf = append(append(*b.buf, h...), p...)
		return nil
	}
	if b.corked {
		// The header leaves with the batch; the long payload follows it
		// without a copy.
		*b.buf = append(*b.buf, h...)
		if err := b.flushLocked(); err != nil {
			return err
		}
		_, err := b.writeLocked(p)
		return err
	}
	// Uncorked (CONFIRM_CONFIGURE, once a connection): header and payload
	// with one system call.
	out := make([]byte, 0, len(h)+len(p))
	_, err := b.writeLocked(append(append(out, h...), p...))
	return err
}

// Write sends p, or adds it to the batch while corked. Only the library
// calls it, with one whole control frame per call.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(p) > 0 && p[0] == frameClose {
		b.closing = true
	}
	if b.corked && len(p) < batchDirect {
		*b.buf = append(*b.buf, p...)
		return len(p), nil
	}
	if err := b.flushLocked(); err != nil {
		return 0, err
	}
	return b.writeLocked(p)
}

// writeLocked writes p with a deadline between half the timeout and the
// timeout from now: moving the deadline costs about as much as a small
// write, so it moves only once it is closer than half the timeout.
func (b *batchConn) writeLocked(p []byte) (int, error) {
	now := time.Now()
	if b.deadline.Sub(now) < b.timeout/2 {
		b.deadline = now.Add(b.timeout)
		if err := b.Conn.SetWriteDeadline(b.deadline); err != nil {
			return 0, fmt.Errorf("set write deadline: %w", err)
		}
	}
	return b.Conn.Write(p)
}

// flushLocked writes the batch, if any.
func (b *batchConn) flushLocked() error {
	if b.buf == nil || len(*b.buf) == 0 {
		return nil
	}
	_, err := b.writeLocked(*b.buf)
	*b.buf = (*b.buf)[:0]
	return err
}

// cork starts a batch.
func (b *batchConn) cork() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.corked = true
	if b.buf == nil {
		if p, ok := b.pool.Get().(*[]byte); ok {
			b.buf = p
		} else {
			s := make([]byte, 0, 4096)
			b.buf = &s
		}
	}
}

// uncork writes the batch with one system call and gives its buffer back,
// so an idle connection holds none.
func (b *batchConn) uncork() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.corked = false
	err := b.flushLocked()
	if b.buf != nil {
		if cap(*b.buf) <= 4*batchDirect {
			b.pool.Put(b.buf)
		}
		b.buf = nil
	}
	return err
}

// batchResponse hands websocket.Accept a batchConn when it hijacks the
// request's connection.
type batchResponse struct {
	http.ResponseWriter
	conn *batchConn
}

func (w *batchResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("response writer cannot hijack")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	w.conn.Conn = nc
	r := brw.Reader
	if r.Buffered() == 0 {
		// Nothing read ahead: the protocol's messages from a subscriber
		// are short, and long ones are read past the buffer anyway.
		r = bufio.NewReaderSize(w.conn, wsReadBuffer)
	}
	return w.conn, bufio.NewReadWriter(r, bufio.NewWriterSize(w.conn, wsWriteBuffer)), nil
}

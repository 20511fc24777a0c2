package ws

import (
	"bufio"
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
}

// Write sends p, or adds it to the batch while corked.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
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

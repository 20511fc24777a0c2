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

// The socket of a websocket once the handshake is over. The writer corks
// it while it writes what is ready (replies, the deliveries the
// unacknowledged limits allow, control frames): the frames collect in
// memory and leave with one system call when it uncorks, instead of one
// call each. Every system call that writes to the socket is made under one
// mutex, so control frames written from other goroutines (pongs, pings,
// the close frame) never interleave with a batch, and each is bounded by
// WriteTimeout through the socket's deadline rather than a timer per
// message.
//
// The websocket library only makes the handshake: every frame is framed
// here (server frames are short headers before the payload), and once a
// close frame is written no frame may follow it.

const (
	// batchDirect is the size from which a write bypasses the batch: big
	// payloads go straight to the socket after what is batched, instead
	// of being copied.
	batchDirect = 64 << 10
	// wsReadBuffer is the frame reader's buffer per connection, in place
	// of the HTTP server's 4 KiB: the protocol's messages from a
	// subscriber are short, and long ones are read past the buffer.
	wsReadBuffer = 1024
	// libBuffer is the size of the buffers the library is handed for a
	// connection it never reads from nor writes to.
	libBuffer = 16
)

type batchConn struct {
	net.Conn
	timeout time.Duration
	pool    *sync.Pool // *[]byte batch buffers, shared by the hub
	// raw writes short batches when the socket allows (rawwrite_linux.go).
	raw func([]byte) (int, error)

	mu       sync.Mutex
	corked   bool
	buf      *[]byte // the batch, from pool while corked
	deadline time.Time
	closing  bool // a close frame is written: no frame may follow
}

// appendFrameHeader appends the header of a final, unmasked (RFC 6455
// 5.1, 5.2: server frames are not) frame of opcode op and n payload bytes.
func appendFrameHeader(dst []byte, op byte, n int) []byte {
	b0 := finBit | op
	switch {
	case n < 126:
		return append(dst, b0, byte(n))
	case n <= 0xffff:
		return append(dst, b0, 126, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, b0, 127), uint64(n))
}

// writeMessage sends p as one binary message, or adds it to the batch
// while corked. After a close frame it drops p: the connection is closing,
// and the peer would take a message after the close frame as an error.
func (b *batchConn) writeMessage(p []byte) error {
	var hb [10]byte
	h := appendFrameHeader(hb[:0], opBinary, len(p))
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

// writeControl sends a ping, pong or close frame of payload p (at most
// 125 bytes), or adds it to the batch while corked. Nothing follows a
// close frame.
func (b *batchConn) writeControl(op byte, p []byte) error {
	var fb [2 + maxControlPayload]byte
	f := append(appendFrameHeader(fb[:0], op, len(p)), p...)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return nil
	}
	b.closing = op == opClose
	if b.corked {
		*b.buf = append(*b.buf, f...)
		return nil
	}
	_, err := b.writeLocked(f)
	return err
}

// writeLocked writes p with a deadline between half the timeout and the
// timeout from now: moving the deadline costs about as much as a small
// write, so it moves only once it is closer than half the timeout. Short
// writes are raw where the socket allows (rawwrite_linux.go).
func (b *batchConn) writeLocked(p []byte) (int, error) {
	now := time.Now()
	if b.deadline.Sub(now) < b.timeout/2 {
		b.deadline = now.Add(b.timeout)
		if err := b.Conn.SetWriteDeadline(b.deadline); err != nil {
			return 0, fmt.Errorf("set write deadline: %w", err)
		}
	}
	if b.raw != nil && len(p) < batchDirect {
		return b.raw(p)
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
// request's connection, keeping what the server read ahead for the frame
// reader.
type batchResponse struct {
	http.ResponseWriter
	conn *batchConn
	// pre is what the HTTP server read past the upgrade request, the
	// first bytes of the frame reader.
	pre []byte
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
	if n := brw.Reader.Buffered(); n > 0 {
		pre, _ := brw.Reader.Peek(n)
		w.pre = append([]byte(nil), pre...)
	}
	// The library reads and writes nothing after the handshake: tiny
	// buffers, so the server's 4 KiB ones are freed.
	return w.conn, bufio.NewReadWriter(bufio.NewReaderSize(w.conn, libBuffer), bufio.NewWriterSize(w.conn, libBuffer)), nil
}

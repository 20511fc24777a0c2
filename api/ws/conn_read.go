package ws

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/lonelypsd/lonelypsd/api/wsproto"
)

// The reader goroutine of a conn: reads frames (readframe.go), answers
// pings, hands messages to the processor (conn_process.go), or handles an
// acknowledgement itself when the processor is idle.

// readLoop reads messages and hands them to the processor. Reading goes on
// while the processor is busy (a NOTIFY's fan-out can take seconds), so
// pings and close frames are answered; it stops only when the backlog is
// over MaxPendingBytes. Acknowledgements of deliveries that arrive while
// the processor is idle are handled here, in order all the same (nothing
// is before them), which spares a goroutine hand-off per delivery. Once
// the connection is closing it reads on, dropping messages, until the
// peer's close frame or the end of the stream.
//
// The caller closes c.in after it has recorded readLoop's error: the
// processor ends when c.in closes, and the connection must close with
// the reader's reason, not the processor's normal closure.
func (c *conn) readLoop() error {
	var buf []byte
	limit := c.hub.cfg.IncomingMaxMessage
	closing := false
	// Messages read since the metrics were last told: they are told when
	// the frame reader has nothing left buffered, before it goes to the
	// socket again.
	received := 0
	defer func() { c.hub.cfg.Metrics.Received(received) }()
	for {
		b, err := c.fr.readMessage(buf, limit)
		if err != nil {
			if errors.Is(err, errTooBig) {
				return closeErr(statusTooBig, fmt.Sprintf("message over %d bytes", limit), err)
			}
			return c.readErr(err)
		}
		if closing {
			buf = b
			continue
		}
		if received++; c.fr.buffered() == 0 {
			c.hub.cfg.Metrics.Received(received)
			received = 0
		}
		if isAck(b) && c.handedOver.Load() == 0 {
			if err := c.process(b); err != nil {
				return err
			}
			buf = b
			continue
		}
		buf = nil // the processor owns b now
		closing = !c.handOver(b)
	}
}

// readErr is how a read that failed ends the connection: nil for the
// peer's close frame (answered here) or the end of the stream, a
// protocol error otherwise.
func (c *conn) readErr(err error) error {
	var pc *peerClose
	var ce *closeError
	switch {
	case errors.As(err, &pc):
		// Echo the peer's code, or none when it gave none.
		var p []byte
		if pc.code != 1005 {
			p = binary.BigEndian.AppendUint16(nil, pc.code)
		}
		_ = c.bc.writeControl(opClose, p)
		return nil
	case errors.As(err, &ce):
		return ce
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || c.ctx.Err() != nil:
		return nil
	}
	return closeErr(statusProtocolError, "read failed", err)
}

// control answers a ping with a pong and records a pong.
func (c *conn) control(op byte, p []byte) error {
	if op == opPing {
		if err := c.bc.writeControl(opPong, p); err != nil {
			return closeErr(statusTryAgainLater, "write failed", err)
		}
		return nil
	}
	// Only this goroutine stores pongSeq.
	if len(p) == 8 {
		if seq := binary.BigEndian.Uint64(p); seq > c.pongSeq.Load() {
			c.pongSeq.Store(seq)
		}
		select {
		case c.pongWake <- struct{}{}:
		default:
		}
	}
	return nil
}

// isAck reports whether a message is a CONTINUE_RECEIVE or
// CONFIRM_RECEIVE (the type follows the two bytes of flags in both
// forms); anything else is parsed by process.
func isAck(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	t := binary.BigEndian.Uint16(b[2:])
	return t == wsproto.S2BContinueReceive || t == wsproto.S2BConfirmReceive
}

// handOver queues b for the processor, first waiting while the backlog is
// over MaxPendingBytes; false when the connection is closing.
func (c *conn) handOver(b []byte) bool {
	n := int64(len(b))
	for p := c.pending.Load(); p > 0 && p+n > c.hub.cfg.MaxPendingBytes; p = c.pending.Load() {
		c.readerWaits.Store(true)
		c.readerWaited.Add(1)
		select {
		case <-c.pendWake:
		case <-c.stop:
			return false
		}
	}
	c.pending.Add(n)
	c.handedOver.Add(1)
	select {
	case c.in <- b:
		c.readerWaits.Store(false)
		return true
	default:
	}
	// A full queue of small messages holds the reader back too.
	c.readerWaits.Store(true)
	c.readerWaited.Add(1)
	defer c.readerWaits.Store(false)
	select {
	case c.in <- b:
		return true
	case <-c.stop:
		return false
	}
}

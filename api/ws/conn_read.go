package ws

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"

	"github.com/coder/websocket"

	"github.com/lonelypsd/lonelypsd/api/wsproto"
)

// The reader goroutine of a conn: reads messages and hands them to the
// processor (conn_process.go), or handles an acknowledgement itself when
// the processor is idle.

// readLoop reads messages and hands them to the processor. Reading goes on
// while the processor is busy (a NOTIFY's fan-out can take seconds), so
// pings and close frames are answered; it stops only when the backlog is
// over MaxPendingBytes. Acknowledgements of deliveries that arrive while
// the processor is idle are handled here, in order all the same (nothing
// is before them), which spares a goroutine hand-off per delivery.
//
// The caller closes c.in after it has recorded readLoop's error: the
// processor ends when c.in closes, and the connection must close with
// the reader's reason, not the processor's normal closure.
func (c *conn) readLoop() error {
	// No deadline on reads: a close (ours, the peer's, the handshake's
	// timeout) ends them, and a context with one costs a timer per read.
	rctx := context.WithoutCancel(c.ctx)
	var buf bytes.Buffer
	for {
		typ, r, err := c.ws.Reader(rctx)
		if err != nil {
			if websocket.CloseStatus(err) != -1 || c.ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return closeErr(statusProtocolError, "read failed", err)
		}
		if typ != websocket.MessageBinary {
			return protocolErr("text message; the protocol is binary")
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			if websocket.CloseStatus(err) != -1 || c.ctx.Err() != nil {
				return nil
			}
			return closeErr(statusProtocolError, "read failed", err)
		}
		c.hub.cfg.Metrics.Received()
		if isAck(buf.Bytes()) && c.handedOver.Load() == 0 {
			if err := c.process(buf.Bytes()); err != nil {
				return err
			}
			continue
		}
		b := buf.Bytes()
		buf = bytes.Buffer{} // the processor owns b now
		if !c.handOver(b) {
			return nil
		}
	}
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
// over MaxPendingBytes; false when the connection closes meanwhile.
func (c *conn) handOver(b []byte) bool {
	n := int64(len(b))
	for p := c.pending.Load(); p > 0 && p+n > c.hub.cfg.MaxPendingBytes; p = c.pending.Load() {
		c.readerWaits.Store(true)
		c.readerWaited.Add(1)
		select {
		case <-c.pendWake:
		case <-c.ctx.Done():
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
	case <-c.ctx.Done():
		return false
	}
}

package ws

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// The subscriber's frames (RFC 6455 section 5), read here rather than
// through the websocket library once the handshake is over: for the short
// acknowledgements that follow every delivery, the library's per-call
// locks, byte-at-a-time header reads and per-message reader state cost
// more than the system call that brings the frame in. The node answers
// pings, takes pongs and runs the close handshake itself (conn_read.go,
// conn_ping.go, conn.go).

// Client frame opcodes and header bits.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa

	finBit  = 0x80
	rsvBits = 0x70
	maskBit = 0x80

	// maxControlPayload is the longest payload a control frame may carry.
	maxControlPayload = 125
)

// errTooBig is a message over the reader's limit; the connection closes
// with 1009.
var errTooBig = errors.New("message too big")

// peerClose is the subscriber's close frame: its code (1005 when it gave
// none) and reason.
type peerClose struct {
	code   uint16
	reason string
}

func (p *peerClose) Error() string {
	return fmt.Sprintf("peer closed the websocket (%d %q)", p.code, p.reason)
}

// frameReader reads frames from the socket through a buffer of its own
// (the bytes the HTTP server read ahead first). Only the reader goroutine
// uses it.
type frameReader struct {
	src  io.Reader
	buf  []byte
	r, w int
	// control handles a ping or pong; payload is only valid during the
	// call.
	control func(op byte, payload []byte) error
}

// newFrameReader reads pre (already read from the socket) then src, through
// a buffer of size bytes (at least 14, a whole frame header).
func newFrameReader(src io.Reader, pre []byte, size int) *frameReader {
	size = max(size, len(pre))
	f := &frameReader{src: src, buf: make([]byte, size)}
	f.w = copy(f.buf, pre)
	return f
}

// buffered is the number of bytes read from the socket and not yet
// returned.
func (f *frameReader) buffered() int { return f.w - f.r }

// settle leaves the socket as if every byte returned had been read from
// it (peekReader), once reading has stopped.
func (f *frameReader) settle() {
	if s, ok := f.src.(interface{ settle() }); ok {
		s.settle()
	}
}

// fill makes at least n bytes available in the buffer (n at most its size).
func (f *frameReader) fill(n int) error {
	if f.w-f.r >= n {
		return nil
	}
	if f.r > 0 {
		f.w = copy(f.buf, f.buf[f.r:f.w])
		f.r = 0
	}
	for f.w < n {
		m, err := f.src.Read(f.buf[f.w:])
		f.w += m
		if err != nil {
			if f.w >= n {
				return nil
			}
			if errors.Is(err, io.EOF) && f.w > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// readFull reads len(p) bytes: from the buffer first, then, for payloads
// longer than what it holds, from the socket directly. The stream ending
// first is io.ErrUnexpectedEOF: p is part of a frame.
func (f *frameReader) readFull(p []byte) error {
	n := copy(p, f.buf[f.r:f.w])
	f.r += n
	if n == len(p) {
		return nil
	}
	var err error
	if len(p)-n < len(f.buf) {
		if err = f.fill(len(p) - n); err == nil {
			f.r += copy(p[n:], f.buf[f.r:f.w])
		}
	} else {
		_, err = io.ReadFull(f.src, p[n:])
	}
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// frameHeader is what a frame's header says.
type frameHeader struct {
	fin bool
	op  byte
	n   int64
	key [4]byte
}

// readHeader reads one frame header; a header that breaks the protocol
// (reserved bits, no mask, a 64-bit length with its top bit set, an
// unknown opcode, a long or fragmented control frame) is a *closeError.
func (f *frameReader) readHeader() (frameHeader, error) {
	if err := f.fill(2); err != nil {
		return frameHeader{}, err
	}
	b0, b1 := f.buf[f.r], f.buf[f.r+1]
	h := frameHeader{fin: b0&finBit != 0, op: b0 & 0x0f}
	switch {
	case b0&rsvBits != 0:
		return h, protocolErr("frame with reserved bits set")
	case b1&maskBit == 0:
		return h, protocolErr("unmasked frame from the subscriber")
	case h.op > opBinary && h.op < opClose || h.op > opPong:
		return h, protocolErr("unknown opcode %#x", h.op)
	}
	hl := 6
	switch b1 & 0x7f {
	case 126:
		hl = 8
	case 127:
		hl = 14
	}
	if err := f.fill(hl); err != nil {
		return h, err
	}
	p := f.buf[f.r : f.r+hl]
	switch hl {
	case 6:
		h.n = int64(b1 & 0x7f)
	case 8:
		h.n = int64(binary.BigEndian.Uint16(p[2:]))
	default:
		u := binary.BigEndian.Uint64(p[2:])
		if u>>63 != 0 {
			return h, protocolErr("frame length with its top bit set")
		}
		h.n = int64(u)
	}
	copy(h.key[:], p[hl-4:])
	f.r += hl
	if h.op >= opClose && (!h.fin || h.n > maxControlPayload) {
		return h, protocolErr("control frame fragmented or over %d bytes", maxControlPayload)
	}
	return h, nil
}

// readMessage reads the next data message into dst[:0] and returns it,
// answering the control frames on the way. A message over limit bytes is
// errTooBig (checked before its bytes are read); the peer's close frame is
// a *peerClose; a text message or a broken frame sequence a *closeError.
func (f *frameReader) readMessage(dst []byte, limit int64) ([]byte, error) {
	dst = dst[:0]
	started := false
	for {
		h, err := f.readHeader()
		if err != nil {
			return dst, err
		}
		if h.op >= opClose {
			if err := f.readControl(h); err != nil {
				return dst, err
			}
			continue
		}
		switch {
		case h.op == opText:
			return dst, protocolErr("text message; the protocol is binary")
		case h.op == opBinary && started:
			return dst, protocolErr("new message before the last one ended")
		case h.op == opContinuation && !started:
			return dst, protocolErr("continuation frame outside a message")
		}
		started = true
		if h.n > limit-int64(len(dst)) {
			return dst, errTooBig
		}
		n := len(dst)
		dst = append(dst, make([]byte, h.n)...)
		if err := f.readFull(dst[n:]); err != nil {
			return dst, err
		}
		unmask(dst[n:], h.key)
		if h.fin {
			return dst, nil
		}
	}
}

// readControl reads a control frame's payload and hands a ping or pong to
// f.control; a close frame is returned as a *peerClose.
func (f *frameReader) readControl(h frameHeader) error {
	var b [maxControlPayload]byte
	p := b[:h.n]
	if err := f.readFull(p); err != nil {
		return err
	}
	unmask(p, h.key)
	if h.op != opClose {
		return f.control(h.op, p)
	}
	switch {
	case len(p) == 0:
		return &peerClose{code: 1005}
	case len(p) == 1:
		return protocolErr("close frame of one byte")
	case !utf8.Valid(p[2:]):
		return protocolErr("close reason not UTF-8")
	}
	code := binary.BigEndian.Uint16(p)
	if !sendableCloseCode(code) {
		return protocolErr("close code %d may not be sent", code)
	}
	return &peerClose{code: code, reason: string(p[2:])}
}

// sendableCloseCode reports whether a peer may put code in a close frame
// (RFC 6455 7.4: the defined codes that are not reserved for reporting,
// and those of libraries and applications).
func sendableCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	}
	return code >= 3000 && code <= 4999
}

// unmask applies a frame's masking key to its payload, eight bytes at a
// time: the key repeats every four, so every eight-byte step starts on it.
func unmask(b []byte, key [4]byte) {
	k := uint64(binary.LittleEndian.Uint32(key[:]))
	k |= k << 32
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k)
		b = b[8:]
	}
	for i := range b {
		b[i] ^= key[i&3]
	}
}

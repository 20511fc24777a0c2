package wsproto

import (
	"encoding/binary"
	"unicode/utf8"
)

// Ack is a CONTINUE_RECEIVE or CONFIRM_RECEIVE read in place by ParseAck:
// the acknowledgement a subscriber sends for every RECEIVE_STREAM part, so
// the one message a busy websocket reads most. Unlike ParseS2B's values,
// its byte fields alias the parsed buffer.
type Ack struct {
	Final          bool   // CONFIRM_RECEIVE; else CONTINUE_RECEIVE
	Identifier     []byte // at most MaxIdentifier bytes; nil when empty
	PartID         uint64 // CONTINUE_RECEIVE only
	Authorization  []byte // valid UTF-8; nil when empty
	Tracing        []byte // nil when empty
	NumSubscribers uint32 // CONFIRM_RECEIVE only
}

// ParseAck reads b as a CONTINUE_RECEIVE or CONFIRM_RECEIVE in minimal
// form without allocating. It reports false for anything else, including
// an acknowledgement in expanded form or one ParseS2B would refuse: the
// caller then parses b with ParseS2B, which decodes the former and
// explains the latter. When it reports true, ParseS2B accepts b and
// decodes the same values (copies of them).
func ParseAck(b []byte) (Ack, bool) {
	if len(b) < 4 || binary.BigEndian.Uint16(b)&FlagMinimalHeaders == 0 {
		return Ack{}, false
	}
	var a Ack
	switch binary.BigEndian.Uint16(b[2:]) {
	case S2BContinueReceive:
	case S2BConfirmReceive:
		a.Final = true
	default:
		return Ack{}, false
	}
	r := ackReader{b: b, off: 4, ok: true}
	a.Identifier = r.next(MaxIdentifier)
	if !a.Final {
		a.PartID = r.uint(8)
	}
	a.Authorization = r.next(MaxHeaderValue)
	a.Tracing = r.next(MaxHeaderValue)
	if a.Final {
		a.NumSubscribers = uint32(r.uint(4))
	}
	if !r.ok || !utf8.Valid(a.Authorization) {
		return Ack{}, false
	}
	return a, true
}

// ackReader walks minimal-form header values; ok turns false at the first
// value that is missing or too long, and later reads return nil.
type ackReader struct {
	b   []byte
	off int
	ok  bool
}

// next returns the next value, of at most max bytes, nil when empty.
func (r *ackReader) next(max int) []byte {
	if !r.ok || len(r.b)-r.off < 2 {
		r.ok = false
		return nil
	}
	n := int(binary.BigEndian.Uint16(r.b[r.off:]))
	r.off += 2
	if n > max || len(r.b)-r.off < n {
		r.ok = false
		return nil
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	if n == 0 {
		return nil
	}
	return v
}

// uint returns the next value as an unsigned integer of at most width
// bytes.
func (r *ackReader) uint(width int) uint64 {
	var v uint64
	for _, c := range r.next(width) {
		v = v<<8 | uint64(c)
	}
	return v
}

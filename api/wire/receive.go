package wire

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Receive is the prefix of a RECEIVE body, which a broadcaster POSTs to a
// subscription's URL (no type prefix); the message follows it on the wire.
type Receive struct {
	Tracing    []byte
	Topic      []byte
	Identifier []byte // fresh per delivery, echoed in CONFIRM_RECEIVE
	Length     uint64 // message length
}

// AppendReceiveHeader appends the prefix of a RECEIVE body; the caller writes
// the m.Length message bytes after it.
func AppendReceiveHeader(dst []byte, m Receive) ([]byte, error) {
	e := encoder{what: "receive body", b: dst}
	e.bytes16("tracing", m.Tracing)
	e.bytes16("topic", m.Topic)
	e.bytes8("identifier", m.Identifier)
	e.u64(m.Length)
	return e.finish(dst)
}

// ReadReceiveHeader reads exactly the prefix of a RECEIVE body and nothing
// more, leaving r at the first message byte. A body that ends early yields an
// error wrapping ErrTruncated; other read errors are wrapped as they are.
func ReadReceiveHeader(r io.Reader) (Receive, error) {
	s := streamDecoder{what: "receive body", r: r}
	var m Receive
	m.Tracing = s.bytes16("tracing")
	m.Topic = s.bytes16("topic")
	m.Identifier = s.bytes8("identifier")
	m.Length = s.u64("message length")
	return parsed(m, s.err)
}

// Missed is a MISSED body, POSTed to a recovery URL (no type prefix) to say
// that messages on Topic may have been lost.
type Missed struct {
	Tracing []byte
	Topic   []byte
}

// AppendMissed appends a MISSED body.
func AppendMissed(dst []byte, m Missed) ([]byte, error) {
	e := encoder{what: "missed body", b: dst}
	e.bytes16("tracing", m.Tracing)
	e.bytes16("topic", m.Topic)
	return e.finish(dst)
}

// ParseMissed parses a MISSED body.
func ParseMissed(b []byte) (Missed, error) {
	d := decoder{what: "missed body", b: b}
	var m Missed
	m.Tracing = d.bytes16("tracing")
	m.Topic = d.bytes16("topic")
	return parsed(m, d.err)
}

// ConfirmReceive is a subscriber's successful reply to RECEIVE.
type ConfirmReceive struct {
	Authorization  string // "" = none
	Tracing        []byte
	Identifier     []byte
	NumSubscribers uint32 // added to the notifier's count
}

// ConfirmMissed is a subscriber's successful reply to MISSED.
type ConfirmMissed struct {
	Authorization string
	Tracing       []byte
}

// ReplyKind classifies a subscriber's reply to RECEIVE.
type ReplyKind int

const (
	// ReplyUnknown is anything the broadcaster cannot use: a delivery failure.
	// It is the zero value so an ignored error cannot pass for success.
	ReplyUnknown ReplyKind = iota
	// ReplyConfirmReceive carries a ConfirmReceive whose authorization the
	// caller must still verify.
	ReplyConfirmReceive
	// ReplyConfirmMissed is never returned by ParseReceiveReply; it exists so
	// callers can name every reply type with one enum.
	ReplyConfirmMissed
	// ReplyUnsubscribeImmediate asks the broadcaster to delete the subscription.
	ReplyUnsubscribeImmediate
)

func (k ReplyKind) String() string {
	if names := [...]string{"unknown", "confirm receive", "confirm missed", "unsubscribe immediate"}; k >= 0 && int(k) < len(names) {
		return names[k]
	}
	return fmt.Sprintf("ReplyKind(%d)", int(k))
}

// ParseReceiveReply classifies a subscriber's reply to RECEIVE by its body
// alone, as the reference does: subscribers reject deliveries with a 4xx
// status whose body still asks to be unsubscribed, so the status says nothing.
//
// Type 10 is UNSUBSCRIBE_IMMEDIATE (anything after the type is ignored); type 8
// is parsed as CONFIRM_RECEIVE. Everything else, including a CONFIRM_RECEIVE
// that does not parse, returns ReplyUnknown with an error saying why.
func ParseReceiveReply(b []byte) (ReplyKind, ConfirmReceive, error) {
	if len(b) < 2 {
		return ReplyUnknown, ConfirmReceive{}, fmt.Errorf(
			"receive reply: body of %d bytes is too short for a message type: %w", len(b), ErrTruncated)
	}
	switch t := binary.BigEndian.Uint16(b); t {
	case TypeUnsubscribeImmediate:
		return ReplyUnsubscribeImmediate, ConfirmReceive{}, nil
	case TypeConfirmReceive:
		m, err := parseConfirmReceive(b)
		if err != nil {
			return ReplyUnknown, ConfirmReceive{}, err
		}
		return ReplyConfirmReceive, m, nil
	default:
		return ReplyUnknown, ConfirmReceive{}, fmt.Errorf(
			"receive reply: message type %d is neither confirm receive (%d) nor unsubscribe immediate (%d): %w",
			t, TypeConfirmReceive, TypeUnsubscribeImmediate, ErrUnexpectedType)
	}
}

func parseConfirmReceive(b []byte) (ConfirmReceive, error) {
	d := decoder{what: "confirm receive reply", b: b}
	var m ConfirmReceive
	d.typed(TypeConfirmReceive, &m.Authorization, &m.Tracing)
	m.Identifier = d.bytes8("identifier")
	m.NumSubscribers = d.u32("num subscribers")
	return parsed(m, d.err)
}

// ParseMissedReply parses a subscriber's reply to MISSED, which must be a
// CONFIRM_MISSED (type 9); anything else is an error.
func ParseMissedReply(b []byte) (ConfirmMissed, error) {
	d := decoder{what: "confirm missed reply", b: b}
	var m ConfirmMissed
	d.typed(TypeConfirmMissed, &m.Authorization, &m.Tracing)
	return parsed(m, d.err)
}

// AppendConfirmReceive appends a CONFIRM_RECEIVE reply.
func AppendConfirmReceive(dst []byte, m ConfirmReceive) ([]byte, error) {
	e := encoder{what: "confirm receive reply", b: dst}
	e.typed(TypeConfirmReceive, m.Authorization, m.Tracing)
	e.bytes8("identifier", m.Identifier)
	e.u32(m.NumSubscribers)
	return e.finish(dst)
}

// AppendConfirmMissed appends a CONFIRM_MISSED reply.
func AppendConfirmMissed(dst []byte, m ConfirmMissed) ([]byte, error) {
	e := encoder{what: "confirm missed reply", b: dst}
	e.typed(TypeConfirmMissed, m.Authorization, m.Tracing)
	return e.finish(dst)
}

// AppendUnsubscribeImmediate appends the two-byte UNSUBSCRIBE_IMMEDIATE reply.
func AppendUnsubscribeImmediate(dst []byte) []byte {
	return binary.BigEndian.AppendUint16(dst, TypeUnsubscribeImmediate)
}

// Package wsproto encodes and decodes the messages of the websocket
// ("stateful") side of the lonelypss protocol. One binary websocket message
// carries exactly one protocol message:
//
//	u16 flags    bit 0 (FlagMinimalHeaders) selects the header form
//	u16 type     message type, numbered separately per direction
//	headers      minimal or expanded form, below
//	payload      the rest of the websocket message (may be empty)
//
// Minimal headers are the header values only, each a u16 length and the
// value, in an order fixed per message type. Expanded headers are a u16 count
// followed by that many (u16 name length, ASCII name, u16 value length, value)
// entries in any order. The bytes must match the Python reference
// (lonelypsp) exactly; vectors_test.go holds messages the reference
// produced.
//
// Header values:
//   - Unsigned integers are big-endian and written with as few bytes as
//     possible, so 0 is an empty value (MinimalUnsigned); parsers accept
//     leading zeros up to a per-header width (ParseUnsigned). The reference
//     fixes a few widths, and so does this package: part id 0 of the first
//     NOTIFY_STREAM / RECEIVE_STREAM part and compressor 0 (none) are one 00
//     byte, x-num-subscribers is 4 bytes, x-initial-dict 2 bytes and
//     x-compression-level 2 bytes, signed.
//   - authorization is a UTF-8 string and "" means none (the wire cannot tell
//     them apart); x-glob is UTF-8; tracing, topics and identifiers are
//     arbitrary bytes.
//
// Decoding rules shared by ParseS2B and ParseB2S:
//   - They never panic and never allocate from an attacker-chosen count
//     before checking that the bytes are present.
//   - Flag bits other than FlagMinimalHeaders are ignored, as the reference's
//     IntFlag tolerates them.
//   - Expanded header names are ASCII, compared case-insensitively; a repeated
//     name keeps its last value and unknown names are ignored. A required
//     header that is missing is an error (ErrHeader).
//   - Bytes after the last header of a message without a payload are ignored,
//     as the reference ignores them.
//   - Header values never alias the input; empty byte values decode as nil.
//   - Payloads (Notify.Payload, NotifyStream.Payload, ReceiveStream.Payload,
//     EnableZstdCustom.Dictionary) DO alias the input, to avoid copying
//     message parts of several MiB: they are sub-slices of the parsed buffer,
//     with their capacity capped so appending to them never overwrites it.
//     A caller that reuses the buffer must copy them first. An empty payload
//     decodes as nil.
//
// Every error returned by this package wraps one of the sentinel errors
// below, so callers can branch with errors.Is.
//
// Encoders check everything a parser would check (for Notify that includes
// hashing the payload), so whatever an Append method produces, the matching
// Parse function accepts and decodes back to the same value, empty byte
// slices coming back as nil. On error an Append method returns dst
// unchanged. Both directions come from one description per message type: its
// layout method lists its headers in order, and the encoder and the parser
// walk that list (layout.go).
package wsproto

import "errors"

// FlagMinimalHeaders is bit 0 of the flags word: set, the headers are in
// minimal form; clear, in expanded form.
const FlagMinimalHeaders uint16 = 0x0001

// Subscriber-to-broadcaster message types.
const (
	S2BConfigure        uint16 = 1
	S2BSubscribeExact   uint16 = 2
	S2BSubscribeGlob    uint16 = 3
	S2BUnsubscribeExact uint16 = 4
	S2BUnsubscribeGlob  uint16 = 5
	S2BNotify           uint16 = 6
	S2BNotifyStream     uint16 = 7
	S2BContinueReceive  uint16 = 8
	S2BConfirmReceive   uint16 = 9
)

// Broadcaster-to-subscriber message types.
const (
	B2SConfirmConfigure        uint16 = 1
	B2SConfirmSubscribeExact   uint16 = 2
	B2SConfirmSubscribeGlob    uint16 = 3
	B2SConfirmUnsubscribeExact uint16 = 4
	B2SConfirmUnsubscribeGlob  uint16 = 5
	B2SConfirmNotify           uint16 = 6
	B2SContinueNotify          uint16 = 7
	B2SReceiveStream           uint16 = 8
	B2SEnableZstdPreset        uint16 = 9
	B2SEnableZstdCustom        uint16 = 10
	B2SDisableZstdCustom       uint16 = 11
	B2SMissed                  uint16 = 12
)

const (
	// MaxHeaderValue is the longest header value (or expanded header name)
	// its u16 length prefix can describe.
	MaxHeaderValue = 1<<16 - 1
	// MaxIdentifier is the longest byte identifier (x-identifier of NOTIFY,
	// streams and their acknowledgements) the reference accepts.
	MaxIdentifier = 64
	// NonceSize is the exact length of x-subscriber-nonce and
	// x-broadcaster-nonce.
	NonceSize = 32
)

// Sentinel errors; every error returned by this package wraps one of them.
var (
	// ErrTruncated means the message ended before its prefix or a header its
	// own lengths (or header count) announce.
	ErrTruncated = errors.New("truncated")
	// ErrUnknownType means the message type is not defined for the direction
	// being parsed.
	ErrUnknownType = errors.New("unknown message type")
	// ErrHeader means a header is missing or has a bad value or width: an
	// integer wider than allowed, a nonce or hash of the wrong length, an
	// identifier over MaxIdentifier bytes, a value over MaxHeaderValue bytes,
	// a non-ASCII expanded header name, inconsistent lengths, or a part id
	// that disagrees with the presence of the first-part headers.
	ErrHeader = errors.New("bad header")
	// ErrInvalidUTF8 means an authorization or glob is not valid UTF-8.
	ErrInvalidUTF8 = errors.New("invalid utf-8")
	// ErrPayload means a NOTIFY payload does not match its declared
	// x-compressed-length or x-compressed-sha512.
	ErrPayload = errors.New("payload mismatch")
)

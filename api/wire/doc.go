// Package wire encodes and decodes every body of the stateless (HTTP) side of
// the lonelypss protocol: the requests subscribers send to a broadcaster
// (notify, subscribe, unsubscribe, check and set subscriptions), the
// broadcaster's typed responses, the RECEIVE and MISSED bodies a broadcaster
// POSTs to subscribers, the subscribers' replies to those, the strong etag of a
// URL's subscription set and the Repr-Digest header.
//
// The bytes must match the Python reference (lonelypsp) exactly, field for
// field; vectors_test.go holds bytes the reference produced. All
// integers are big-endian; "str16" below means a u16 length followed by that
// many bytes.
//
// Decoding rules shared by every parser:
//   - Parsers never panic and never allocate from an attacker-chosen count
//     before checking that the bytes are present.
//   - Bytes after the last field are ignored, as the reference ignores them.
//   - Returned values never alias the input, so callers may reuse buffers.
//     Empty byte fields decode as nil.
//   - URLs, globs, recovery URLs and authorization strings must be valid
//     UTF-8 (the reference decodes them as strict UTF-8); topics, tracing and
//     identifiers are arbitrary bytes.
//
// Encoders check everything a parser would check, so whatever an Append
// function produces, the matching Parse function accepts. On error an Append
// function returns dst unchanged.
package wire

import "errors"

// Sentinel errors; every error returned by this package wraps at least one of
// them, so callers can map failures to HTTP status codes with errors.Is.
var (
	// ErrTruncated means the body ended before a field its own lengths announce.
	ErrTruncated = errors.New("truncated")
	// ErrInvalidUTF8 means a URL, glob, recovery URL or authorization string is
	// not valid UTF-8.
	ErrInvalidUTF8 = errors.New("invalid utf-8")
	// ErrTooLong means a value cannot be described by its length prefix
	// (more than 65535 bytes for str16 fields, 255 for identifiers).
	ErrTooLong = errors.New("too long")
	// ErrUnsorted means a set_subscriptions list is not in strictly ascending
	// bytewise order (out of order or duplicated).
	ErrUnsorted = errors.New("not strictly ascending")
	// ErrEtagFormat means the etag format byte is not 0, the only format defined.
	ErrEtagFormat = errors.New("unknown etag format")
	// ErrUnexpectedType means a typed body starts with a message type other
	// than the one(s) expected where it was received.
	ErrUnexpectedType = errors.New("unexpected message type")
	// ErrTooManyEntries means a set_subscriptions body claims more list
	// entries than the caller's limit.
	ErrTooManyEntries = errors.New("too many entries")
	// ErrReprDigest means a Repr-Digest header has no usable sha-512 entry.
	ErrReprDigest = errors.New("invalid repr-digest")
)

const (
	// MaxStr16 is the longest value a u16 length prefix can describe: the limit
	// for URLs, topics, globs, recovery URLs, tracing and authorization.
	MaxStr16 = 1<<16 - 1
	// MaxIdentifier is the longest identifier a u8 length prefix can describe.
	MaxIdentifier = 1<<8 - 1
)

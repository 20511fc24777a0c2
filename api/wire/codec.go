package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// decoder walks an in-memory body. Like encoder it remembers the first error
// and then reads nothing more, so parsing functions read as a plain list of
// fields. Field names are passed as constants so the happy path does no
// formatting; errors are built only when something fails.
type decoder struct {
	what string // names the body in error messages, e.g. "subscribe exact body"
	b    []byte
	off  int
	err  error

	// list, index and count locate the current set_subscriptions entry in
	// error messages; list is "" outside the lists.
	list         string
	index, count uint32
	// entries counts the list entries claimed so far, maxEntries bounds
	// them (set_subscriptions).
	entries, maxEntries uint64
	// zeros is what fixed-width reads get once the body has failed (64
	// bytes: the widest, an etag's).
	zeros [64]byte
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// parsed returns m, or T's zero value with the first error.
func parsed[T any](m T, err error) (T, error) {
	if err != nil {
		var zero T
		return zero, err
	}
	return m, nil
}

func (d *decoder) field(name string) string {
	if d.list == "" {
		return name
	}
	return fmt.Sprintf("%s entry %d of %d: %s", d.list, d.index, d.count, name)
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

// fixed returns the next n bytes, aliasing the input, or n zero bytes once
// the body has failed, so fixed-width reads need no check of their own.
func (d *decoder) fixed(n int, name string) []byte {
	if d.err == nil && d.remaining() < n {
		d.fail(fmt.Errorf("%s: %s needs %d bytes at offset %d but the body is only %d bytes: %w",
			d.what, d.field(name), n, d.off, len(d.b), ErrTruncated))
	}
	if d.err != nil {
		return d.zeros[:n:n]
	}
	return d.take(n)
}

// take returns the next n bytes, which the caller checked are there.
func (d *decoder) take(n int) []byte {
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u8(name string) uint8   { return d.fixed(1, name)[0] }
func (d *decoder) u16(name string) uint16 { return binary.BigEndian.Uint16(d.fixed(2, name)) }
func (d *decoder) u32(name string) uint32 { return binary.BigEndian.Uint32(d.fixed(4, name)) }

// prefixed reads a value of the given length, whose prefix has just been read.
func (d *decoder) prefixed(n int, name string) []byte {
	if d.remaining() < n {
		d.fail(fmt.Errorf("%s: %s length %d at offset %d overruns body of %d bytes: %w",
			d.what, d.field(name), n, d.off, len(d.b), ErrTruncated))
		return nil
	}
	return d.take(n)
}

// raw16 reads a str16 value, aliasing the input. The length prefix's field
// name is only built when an error needs it.
func (d *decoder) raw16(name string) []byte {
	if d.err == nil && d.remaining() < 2 {
		d.fixed(2, name+" length")
	}
	if d.err != nil {
		return nil
	}
	n := int(binary.BigEndian.Uint16(d.b[d.off:]))
	d.off += 2
	return d.prefixed(n, name)
}

// bytes16 reads a str16 value as a private copy.
func (d *decoder) bytes16(name string) []byte { return clone(d.raw16(name)) }

// bytes8 reads a u8-prefixed value (identifiers) as a private copy.
func (d *decoder) bytes8(name string) []byte {
	if d.err == nil && d.remaining() < 1 {
		d.fixed(1, name+" length")
	}
	if d.err != nil {
		return nil
	}
	n := int(d.b[d.off])
	d.off++
	return clone(d.prefixed(n, name))
}

// text16 reads a str16 value that must be UTF-8.
func (d *decoder) text16(name string) string {
	return d.text16Reuse(name, "")
}

// text16Reuse is text16 returning prev itself when the value equals it:
// set_subscriptions lists usually repeat one recovery URL on every entry, and
// sharing it saves an allocation per entry.
func (d *decoder) text16Reuse(name, prev string) string {
	p := d.raw16(name)
	switch {
	case d.err != nil:
		return ""
	case string(p) == prev:
		return prev
	case !utf8.Valid(p):
		d.fail(fmt.Errorf("%s: %s at offset %d is not valid UTF-8: %w",
			d.what, d.field(name), d.off-len(p), ErrInvalidUTF8))
		return ""
	}
	return string(p)
}

// typed reads what every typed body (responses and replies) opens with: its
// u16 type, which must be want, then authorization and tracing.
func (d *decoder) typed(want uint16, authorization *string, tracing *[]byte) {
	if t := d.u16("message type"); d.err == nil && t != want {
		d.fail(fmt.Errorf("%s: message type %d, expected %d: %w", d.what, t, want, ErrUnexpectedType))
	}
	*authorization = d.text16("authorization")
	*tracing = d.bytes16("tracing")
}

// etag reads an etag: its format byte, which must be 0, the only format
// defined, then its 64 bytes.
func (d *decoder) etag(dst *[64]byte) {
	if format := d.u8("etag format"); d.err == nil && format != 0 {
		d.fail(etagFormatError(d.what, format, int64(d.off-1)))
	}
	copy(dst[:], d.fixed(64, "etag"))
}

func etagFormatError(what string, format uint8, off int64) error {
	return fmt.Errorf("%s: etag format %d at offset %d, only 0 is defined: %w", what, format, off, ErrEtagFormat)
}

func clone(p []byte) []byte {
	if len(p) == 0 {
		return nil
	}
	return bytes.Clone(p)
}

// encoder appends fields and remembers the first error, so encoding functions
// read as a plain list of fields.
type encoder struct {
	what string
	b    []byte
	err  error
}

func (e *encoder) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

func (e *encoder) u8(v uint8) {
	if e.err == nil {
		e.b = append(e.b, v)
	}
}

func (e *encoder) u16(v uint16) {
	if e.err == nil {
		e.b = binary.BigEndian.AppendUint16(e.b, v)
	}
}

func (e *encoder) u32(v uint32) {
	if e.err == nil {
		e.b = binary.BigEndian.AppendUint32(e.b, v)
	}
}

func (e *encoder) u64(v uint64) {
	if e.err == nil {
		e.b = binary.BigEndian.AppendUint64(e.b, v)
	}
}

func (e *encoder) raw(p []byte) {
	if e.err == nil {
		e.b = append(e.b, p...)
	}
}

func (e *encoder) tooLong(name string, n, max int) {
	e.fail(fmt.Errorf("%s: %s is %d bytes, more than the %d its length prefix allows: %w",
		e.what, name, n, max, ErrTooLong))
}

func (e *encoder) bytes16(name string, p []byte) {
	if e.err != nil {
		return
	}
	if len(p) > MaxStr16 {
		e.tooLong(name, len(p), MaxStr16)
		return
	}
	e.b = binary.BigEndian.AppendUint16(e.b, uint16(len(p)))
	e.b = append(e.b, p...)
}

func (e *encoder) text16(name string, s string) {
	if e.err != nil {
		return
	}
	if len(s) > MaxStr16 {
		e.tooLong(name, len(s), MaxStr16)
		return
	}
	if !utf8.ValidString(s) {
		e.fail(fmt.Errorf("%s: %s is not valid UTF-8: %w", e.what, name, ErrInvalidUTF8))
		return
	}
	e.b = binary.BigEndian.AppendUint16(e.b, uint16(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) bytes8(name string, p []byte) {
	if e.err != nil {
		return
	}
	if len(p) > MaxIdentifier {
		e.tooLong(name, len(p), MaxIdentifier)
		return
	}
	e.b = append(e.b, uint8(len(p)))
	e.b = append(e.b, p...)
}

// typed appends what every typed body opens with: its type, authorization
// and tracing.
func (e *encoder) typed(t uint16, authorization string, tracing []byte) {
	e.u16(t)
	e.text16("authorization", authorization)
	e.bytes16("tracing", tracing)
}

// finish returns the appended bytes, or the caller's original dst on error so
// a failed append never leaves half a body behind.
func (e *encoder) finish(orig []byte) ([]byte, error) {
	if e.err != nil {
		return orig, e.err
	}
	return e.b, nil
}

// streamDecoder reads a header field by field from a stream without reading
// past it, so the caller can go on streaming the (possibly huge) message. It
// remembers the first error, like decoder.
type streamDecoder struct {
	what string
	r    io.Reader
	n    int64 // bytes consumed so far, for error messages
	tmp  [8]byte
	err  error
}

func (s *streamDecoder) full(p []byte, name string) {
	s.fullField(p, name, "")
}

// fullField reads len(p) bytes; the field is named name+suffix, joined only
// when an error message needs it.
func (s *streamDecoder) fullField(p []byte, name, suffix string) {
	if s.err != nil {
		return
	}
	k, err := io.ReadFull(s.r, p)
	s.n += int64(k)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		s.err = fmt.Errorf("%s: body ended after %d bytes, %d bytes into the %d-byte %s%s: %w",
			s.what, s.n, k, len(p), name, suffix, ErrTruncated)
	default:
		// Not a protocol error (e.g. a network failure or a body size
		// limit): keep the reader's error so the caller can tell it apart
		// from a short body.
		s.err = fmt.Errorf("%s: reading %s%s: %w", s.what, name, suffix, err)
	}
}

func (s *streamDecoder) u64(name string) uint64 {
	s.full(s.tmp[:8], name)
	return binary.BigEndian.Uint64(s.tmp[:8])
}

// bytesN reads an n-byte value. n comes from a u16 or u8 prefix, so the
// allocation made before the bytes arrive is bounded by 64 KiB.
func (s *streamDecoder) bytesN(n int, name string) []byte {
	if n == 0 || s.err != nil {
		return nil
	}
	p := make([]byte, n)
	if s.full(p, name); s.err != nil {
		return nil
	}
	return p
}

func (s *streamDecoder) bytes16(name string) []byte {
	s.fullField(s.tmp[:2], name, " length")
	return s.bytesN(int(binary.BigEndian.Uint16(s.tmp[:2])), name)
}

func (s *streamDecoder) bytes8(name string) []byte {
	s.fullField(s.tmp[:1], name, " length")
	return s.bytesN(int(s.tmp[0]), name)
}

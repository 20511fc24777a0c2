package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// decoder walks an in-memory body. Field names are passed as constants so the
// happy path does no formatting; errors are built only when something fails.
type decoder struct {
	what string // names the body in error messages, e.g. "subscribe exact body"
	b    []byte
	off  int

	// list, index and count locate the current set_subscriptions entry in
	// error messages; list is "" outside the lists.
	list         string
	index, count uint32
	// entries counts the list entries claimed so far, maxEntries bounds
	// them (set_subscriptions).
	entries, maxEntries uint64
}

func (d *decoder) field(name string) string {
	if d.list == "" {
		return name
	}
	return fmt.Sprintf("%s entry %d of %d: %s", d.list, d.index, d.count, name)
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

// fixed returns the next n bytes, aliasing the input.
func (d *decoder) fixed(n int, name string) ([]byte, error) {
	if d.remaining() < n {
		return nil, d.short(n, name)
	}
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p, nil
}

func (d *decoder) short(n int, name string) error {
	return fmt.Errorf("%s: %s needs %d bytes at offset %d but the body is only %d bytes: %w",
		d.what, d.field(name), n, d.off, len(d.b), ErrTruncated)
}

func (d *decoder) u8(name string) (uint8, error) {
	p, err := d.fixed(1, name)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

func (d *decoder) u16(name string) (uint16, error) {
	p, err := d.fixed(2, name)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint16(p), nil
}

func (d *decoder) u32(name string) (uint32, error) {
	p, err := d.fixed(4, name)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(p), nil
}

// prefixed reads a value of the given length, whose prefix has just been read.
func (d *decoder) prefixed(n int, name string) ([]byte, error) {
	if d.remaining() < n {
		return nil, fmt.Errorf("%s: %s length %d at offset %d overruns body of %d bytes: %w",
			d.what, d.field(name), n, d.off, len(d.b), ErrTruncated)
	}
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p, nil
}

// raw16 reads a str16 value, aliasing the input. The length prefix is read
// inline so that its field name is only built when an error needs it.
func (d *decoder) raw16(name string) ([]byte, error) {
	if d.remaining() < 2 {
		return nil, d.short(2, name+" length")
	}
	n := int(binary.BigEndian.Uint16(d.b[d.off:]))
	d.off += 2
	return d.prefixed(n, name)
}

// bytes16 reads a str16 value as a private copy.
func (d *decoder) bytes16(name string) ([]byte, error) {
	p, err := d.raw16(name)
	return clone(p), err
}

// bytes8 reads a u8-prefixed value (identifiers) as a private copy.
func (d *decoder) bytes8(name string) ([]byte, error) {
	if d.remaining() < 1 {
		return nil, d.short(1, name+" length")
	}
	n := int(d.b[d.off])
	d.off++
	p, err := d.prefixed(n, name)
	return clone(p), err
}

// text16 reads a str16 value that must be UTF-8.
func (d *decoder) text16(name string) (string, error) {
	return d.text16Reuse(name, "")
}

// text16Reuse is text16 returning prev itself when the value equals it:
// set_subscriptions lists usually repeat one recovery URL on every entry, and
// sharing it saves an allocation per entry.
func (d *decoder) text16Reuse(name, prev string) (string, error) {
	p, err := d.raw16(name)
	if err != nil {
		return "", err
	}
	if string(p) == prev {
		return prev, nil
	}
	if !utf8.Valid(p) {
		return "", fmt.Errorf("%s: %s at offset %d is not valid UTF-8: %w",
			d.what, d.field(name), d.off-len(p), ErrInvalidUTF8)
	}
	return string(p), nil
}

// messageType reads the u16 type prefix of a typed body and checks it.
func (d *decoder) messageType(want uint16) error {
	t, err := d.u16("message type")
	if err != nil {
		return err
	}
	if t != want {
		return fmt.Errorf("%s: message type %d, expected %d: %w", d.what, t, want, ErrUnexpectedType)
	}
	return nil
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

// finish returns the appended bytes, or the caller's original dst on error so
// a failed append never leaves half a body behind.
func (e *encoder) finish(orig []byte) ([]byte, error) {
	if e.err != nil {
		return orig, e.err
	}
	return e.b, nil
}

// streamDecoder reads a header field by field from a stream without reading
// past it, so the caller can go on streaming the (possibly huge) message.
type streamDecoder struct {
	what string
	r    io.Reader
	n    int64 // bytes consumed so far, for error messages
	tmp  [8]byte
}

func (s *streamDecoder) full(p []byte, name string) error {
	return s.fullField(p, name, "")
}

// fullField reads len(p) bytes; the field is named name+suffix, joined only
// when an error message needs it.
func (s *streamDecoder) fullField(p []byte, name, suffix string) error {
	k, err := io.ReadFull(s.r, p)
	s.n += int64(k)
	if err == nil {
		return nil
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: body ended after %d bytes, %d bytes into the %d-byte %s%s: %w",
			s.what, s.n, k, len(p), name, suffix, ErrTruncated)
	}
	// Not a protocol error (e.g. a network failure or a body size limit): keep
	// the reader's error so the caller can tell it apart from a short body.
	return fmt.Errorf("%s: reading %s%s: %w", s.what, name, suffix, err)
}

func (s *streamDecoder) u64(name string) (uint64, error) {
	err := s.full(s.tmp[:8], name)
	return binary.BigEndian.Uint64(s.tmp[:8]), err
}

// bytesN reads an n-byte value. n comes from a u16 or u8 prefix, so the
// allocation made before the bytes arrive is bounded by 64 KiB.
func (s *streamDecoder) bytesN(n int, name string) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	p := make([]byte, n)
	if err := s.full(p, name); err != nil {
		return nil, err
	}
	return p, nil
}

func (s *streamDecoder) bytes16(name string) ([]byte, error) {
	if err := s.fullField(s.tmp[:2], name, " length"); err != nil {
		return nil, err
	}
	return s.bytesN(int(binary.BigEndian.Uint16(s.tmp[:2])), name)
}

func (s *streamDecoder) bytes8(name string) ([]byte, error) {
	if err := s.fullField(s.tmp[:1], name, " length"); err != nil {
		return nil, err
	}
	return s.bytesN(int(s.tmp[0]), name)
}

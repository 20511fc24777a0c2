package wsproto

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"unicode/utf8"
)

// Header names, exactly as the reference writes them in expanded form.
const (
	hAuthorization      = "authorization"
	hTracing            = "x-tracing"
	hTopic              = "x-topic"
	hGlob               = "x-glob"
	hIdentifier         = "x-identifier"
	hPartID             = "x-part-id"
	hCompressor         = "x-compressor"
	hCompressedLength   = "x-compressed-length"
	hDecompressedLength = "x-decompressed-length"
	hCompressedSHA512   = "x-compressed-sha512"
	hSubscriberNonce    = "x-subscriber-nonce"
	hBroadcasterNonce   = "x-broadcaster-nonce"
	hEnableZstd         = "x-enable-zstd"
	hEnableTraining     = "x-enable-training"
	hInitialDict        = "x-initial-dict"
	hNumSubscribers     = "x-num-subscribers"
	hSubscribers        = "x-subscribers"
	hCompressionLevel   = "x-compression-level"
	hMinSize            = "x-min-size"
	hMaxSize            = "x-max-size"
	hSHA512             = "x-sha512"
)

// maxHeaders is the most headers any message type has (the first part of a
// stream); headers.have is a bit set over that many slots.
const maxHeaders = 9

// MinimalUnsigned returns v big-endian in as few bytes as possible: 0 is no
// bytes at all, 1..255 one byte, 256..65535 two bytes, and so on up to 8.
func MinimalUnsigned(v uint64) []byte {
	return appendMinimalUnsigned(nil, v)
}

func minimalLen(v uint64) int { return (bits.Len64(v) + 7) / 8 }

func appendMinimalUnsigned(dst []byte, v uint64) []byte {
	for i := minimalLen(v) - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}

// ParseUnsigned decodes a big-endian unsigned header value of at most max
// bytes (max is clamped to 1..8); the empty value is 0 and leading zero bytes
// are allowed. A longer value yields an error wrapping ErrHeader.
func ParseUnsigned(b []byte, max int) (uint64, error) {
	if max > 8 {
		max = 8
	}
	if max < 1 {
		max = 1
	}
	if len(b) > max {
		return 0, fmt.Errorf("unsigned value of %d bytes, at most %d allowed: %w", len(b), max, ErrHeader)
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

// Message is implemented by every message type of this package (the values
// ParseS2B and ParseB2S return).
type Message interface {
	encoding() (*spec, layout)
}

// AppendMinimal appends m with minimal headers, the form the broadcaster
// sends.
func AppendMinimal(dst []byte, m Message) ([]byte, error) {
	s, l := m.encoding()
	return s.append(dst, true, l)
}

// AppendExpanded appends m with expanded headers.
func AppendExpanded(dst []byte, m Message) ([]byte, error) {
	s, l := m.encoding()
	return s.append(dst, false, l)
}

// ParseS2B parses one subscriber-to-broadcaster message and returns it as a
// value of its concrete type: Configure, SubscribeExact, SubscribeGlob,
// UnsubscribeExact, UnsubscribeGlob, Notify, NotifyStream, ContinueReceive
// or ConfirmReceive. Payload fields alias b (see the package comment).
func ParseS2B(b []byte) (any, error) {
	d, typ, err := newDecoder(b, "subscriber message")
	if err != nil {
		return nil, err
	}
	switch typ {
	case S2BConfigure:
		return parseAs[Configure](d, &configureSpec)
	case S2BSubscribeExact:
		return parseAs[SubscribeExact](d, &subscribeExactSpec)
	case S2BSubscribeGlob:
		return parseAs[SubscribeGlob](d, &subscribeGlobSpec)
	case S2BUnsubscribeExact:
		return parseAs[UnsubscribeExact](d, &unsubscribeExactSpec)
	case S2BUnsubscribeGlob:
		return parseAs[UnsubscribeGlob](d, &unsubscribeGlobSpec)
	case S2BNotify:
		return parseAs[Notify](d, &notifySpec)
	case S2BNotifyStream:
		m, err := parseStream(d, &notifyStreamSpec)
		return ret(m, err)
	case S2BContinueReceive:
		return parseAs[ContinueReceive](d, &continueReceiveSpec)
	case S2BConfirmReceive:
		return parseAs[ConfirmReceive](d, &confirmReceiveSpec)
	}
	return nil, fmt.Errorf("%s: type %d: %w", d.what, typ, ErrUnknownType)
}

// ParseB2S parses one broadcaster-to-subscriber message and returns it as a
// value of its concrete type: ConfirmConfigure, ConfirmSubscribeExact,
// ConfirmSubscribeGlob, ConfirmUnsubscribeExact, ConfirmUnsubscribeGlob,
// ConfirmNotify, ContinueNotify, ReceiveStream, EnableZstdPreset,
// EnableZstdCustom, DisableZstdCustom or Missed. Payload fields alias b (see
// the package comment).
func ParseB2S(b []byte) (any, error) {
	d, typ, err := newDecoder(b, "broadcaster message")
	if err != nil {
		return nil, err
	}
	switch typ {
	case B2SConfirmConfigure:
		return parseAs[ConfirmConfigure](d, &confirmConfigureSpec)
	case B2SConfirmSubscribeExact:
		return parseAs[ConfirmSubscribeExact](d, &confirmSubscribeExactSpec)
	case B2SConfirmSubscribeGlob:
		return parseAs[ConfirmSubscribeGlob](d, &confirmSubscribeGlobSpec)
	case B2SConfirmUnsubscribeExact:
		return parseAs[ConfirmUnsubscribeExact](d, &confirmUnsubscribeExactSpec)
	case B2SConfirmUnsubscribeGlob:
		return parseAs[ConfirmUnsubscribeGlob](d, &confirmUnsubscribeGlobSpec)
	case B2SConfirmNotify:
		return parseAs[ConfirmNotify](d, &confirmNotifySpec)
	case B2SContinueNotify:
		return parseAs[ContinueNotify](d, &continueNotifySpec)
	case B2SReceiveStream:
		m, err := parseStream(d, &receiveStreamSpec)
		return ret(ReceiveStream(m), err)
	case B2SEnableZstdPreset:
		return parseAs[EnableZstdPreset](d, &enableZstdPresetSpec)
	case B2SEnableZstdCustom:
		return parseAs[EnableZstdCustom](d, &enableZstdCustomSpec)
	case B2SDisableZstdCustom:
		return parseAs[DisableZstdCustom](d, &disableZstdCustomSpec)
	case B2SMissed:
		return parseAs[Missed](d, &missedSpec)
	}
	return nil, fmt.Errorf("%s: type %d: %w", d.what, typ, ErrUnknownType)
}

// ret turns a (value, error) pair into the (any, error) of the Parse
// functions, so that a failed parse returns a nil interface.
func ret[T any](m T, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return m, nil
}

// decoder walks one message. what names the message type in errors.
type decoder struct {
	what    string
	b       []byte
	off     int
	minimal bool
}

func newDecoder(b []byte, what string) (*decoder, uint16, error) {
	if len(b) < 4 {
		return nil, 0, fmt.Errorf("%s: %d bytes, the flags and type need 4: %w", what, len(b), ErrTruncated)
	}
	d := &decoder{
		what:    what,
		b:       b,
		off:     4,
		minimal: binary.BigEndian.Uint16(b)&FlagMinimalHeaders != 0,
	}
	return d, binary.BigEndian.Uint16(b[2:]), nil
}

func (d *decoder) mode() string {
	if d.minimal {
		return "minimal"
	}
	return "expanded"
}

// u16 reads a length or count; name is only used to build an error.
func (d *decoder) u16(name string, index int) (int, error) {
	if len(d.b)-d.off < 2 {
		return 0, d.short(2, name, index)
	}
	v := int(binary.BigEndian.Uint16(d.b[d.off:]))
	d.off += 2
	return v, nil
}

// str16 reads a u16 length and that many bytes, aliasing the input.
func (d *decoder) str16(name string, index int) ([]byte, error) {
	n, err := d.u16(name, index)
	if err != nil {
		return nil, err
	}
	if len(d.b)-d.off < n {
		return nil, d.short(n, name, index)
	}
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p, nil
}

func (d *decoder) short(n int, name string, index int) error {
	if index >= 0 {
		name = fmt.Sprintf("%s of expanded header %d", name, index)
	}
	return fmt.Errorf("%s (%s headers): %s needs %d bytes at offset %d but the message is %d bytes: %w",
		d.what, d.mode(), name, n, d.off, len(d.b), ErrTruncated)
}

// payload returns the rest of the message, aliasing the input with its
// capacity capped; nil when empty.
func (d *decoder) payload() []byte {
	if d.off >= len(d.b) {
		return nil
	}
	p := d.b[d.off:len(d.b):len(d.b)]
	d.off = len(d.b)
	return p
}

// headers holds the raw values of one message's headers, aliasing the input,
// in slots matching names (the minimal-form order).
type headers struct {
	d     *decoder
	names []string
	vals  [maxHeaders][]byte
	have  uint16
}

// readHeaders reads the headers of a message whose header set is fixed. In
// minimal form all names are read in order; in expanded form the names
// present are collected and required (every name but those listed in
// optional) is checked.
func (d *decoder) readHeaders(names []string, optional ...string) (*headers, error) {
	h := &headers{d: d, names: names}
	if d.minimal {
		return h, h.readMinimal(0, len(names))
	}
	if err := h.readExpanded(); err != nil {
		return nil, err
	}
	for i, name := range names {
		if h.have&(1<<i) == 0 && !contains(optional, name) {
			return nil, h.missing(name)
		}
	}
	return h, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// readMinimal reads the values of names[from:to] in order.
func (h *headers) readMinimal(from, to int) error {
	for i := from; i < to; i++ {
		v, err := h.d.str16(h.names[i], -1)
		if err != nil {
			return err
		}
		h.vals[i] = v
		h.have |= 1 << i
	}
	return nil
}

// readExpanded reads a u16 count of (name, value) pairs; names are ASCII,
// matched case-insensitively against h.names, the last of repeated names
// wins and unknown names are skipped. Each pair consumes at least 4 bytes,
// so an absurd count ends in ErrTruncated without allocating.
func (h *headers) readExpanded() error {
	d := h.d
	count, err := d.u16("header count", -1)
	if err != nil {
		return err
	}
	for k := 0; k < count; k++ {
		name, err := d.str16("name", k)
		if err != nil {
			return err
		}
		val, err := d.str16("value", k)
		if err != nil {
			return err
		}
		for _, c := range name {
			if c >= utf8.RuneSelf {
				return fmt.Errorf("%s: expanded header %d has a non-ASCII name %q: %w", d.what, k, name, ErrHeader)
			}
		}
		for i, want := range h.names {
			if asciiEqualFold(name, want) {
				h.vals[i] = val
				h.have |= 1 << i
				break
			}
		}
	}
	return nil
}

// asciiEqualFold reports whether name, lower-cased, equals want (which is
// already lower case).
func asciiEqualFold(name []byte, want string) bool {
	if len(name) != len(want) {
		return false
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

func (h *headers) missing(name string) error {
	return fmt.Errorf("%s: missing header %s: %w", h.d.what, name, ErrHeader)
}

func (h *headers) bad(name, format string, args ...any) error {
	return headerErr(h.d.what, name, format, args...)
}

// headerErr is the error for a header value the protocol does not allow.
func headerErr(what, name, format string, args ...any) error {
	return fmt.Errorf("%s: %s %s: %w", what, name, fmt.Sprintf(format, args...), ErrHeader)
}

// raw returns the value of a header, aliasing the input.
func (h *headers) raw(name string) ([]byte, error) {
	for i, n := range h.names {
		if n == name {
			if h.have&(1<<i) == 0 {
				return nil, h.missing(name)
			}
			return h.vals[i], nil
		}
	}
	// Only reachable through a programming error in this package; an error
	// rather than a panic keeps the parsers panic-free regardless.
	return nil, h.missing(name)
}

// has reports whether a header was present.
func (h *headers) has(name string) bool {
	for i, n := range h.names {
		if n == name {
			return h.have&(1<<i) != 0
		}
	}
	return false
}

// bytes returns a private copy of a header value; nil when empty.
func (h *headers) bytes(name string) ([]byte, error) {
	v, err := h.raw(name)
	if err != nil || len(v) == 0 {
		return nil, err
	}
	return bytes.Clone(v), nil
}

// text returns a header value that must be UTF-8 (authorization, glob).
func (h *headers) text(name string) (string, error) {
	v, err := h.raw(name)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(v) {
		return "", fmt.Errorf("%s: %s is not valid UTF-8: %w", h.d.what, name, ErrInvalidUTF8)
	}
	return string(v), nil
}

// identifier returns a copy of a byte identifier of at most MaxIdentifier
// bytes.
func (h *headers) identifier(name string) ([]byte, error) {
	v, err := h.raw(name)
	if err != nil {
		return nil, err
	}
	if len(v) > MaxIdentifier {
		return nil, h.bad(name, "is %d bytes, at most %d allowed", len(v), MaxIdentifier)
	}
	return h.bytes(name)
}

// uint decodes an unsigned header of at most width bytes.
func (h *headers) uint(name string, width int) (uint64, error) {
	v, err := h.raw(name)
	if err != nil {
		return 0, err
	}
	if len(v) > width {
		return 0, h.bad(name, "is %d bytes, at most %d allowed", len(v), width)
	}
	return ParseUnsigned(v, width)
}

// exact copies a header of exactly len(dst) bytes into dst.
func (h *headers) exact(name string, dst []byte) error {
	v, err := h.raw(name)
	if err != nil {
		return err
	}
	if len(v) != len(dst) {
		return h.bad(name, "is %d bytes, exactly %d required", len(v), len(dst))
	}
	copy(dst, v)
	return nil
}

// encoder appends one message and remembers the first error, so a
// message's layout reads as a list of headers. It implements fields.
type encoder struct {
	what    string
	minimal bool
	b       []byte
	countAt int // offset of the expanded form's header count
	count   int
	err     error
}

// newEncoder writes the flags, the type and, in expanded form, room for the
// count of headers, which finish fills in.
func newEncoder(dst []byte, what string, typ uint16, minimal bool) *encoder {
	var flags uint16
	if minimal {
		flags = FlagMinimalHeaders
	}
	dst = binary.BigEndian.AppendUint16(dst, flags)
	dst = binary.BigEndian.AppendUint16(dst, typ)
	e := &encoder{what: what, minimal: minimal, countAt: len(dst)}
	if !minimal {
		dst = append(dst, 0, 0)
	}
	e.b = dst
	return e
}

// fail keeps the first error; nil is no error.
func (e *encoder) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

func (e *encoder) bad(name, format string, args ...any) {
	e.fail(headerErr(e.what, name, format, args...))
}

// head writes the name (expanded form) and the length of a value of n bytes;
// the caller appends the value.
func (e *encoder) head(name string, n int) bool {
	if e.err != nil {
		return false
	}
	if n > MaxHeaderValue {
		e.bad(name, "is %d bytes, more than the %d a header value can hold", n, MaxHeaderValue)
		return false
	}
	if !e.minimal {
		e.b = binary.BigEndian.AppendUint16(e.b, uint16(len(name)))
		e.b = append(e.b, name...)
	}
	e.b = binary.BigEndian.AppendUint16(e.b, uint16(n))
	e.count++
	return true
}

func (e *encoder) putBytes(name string, v []byte) {
	if e.head(name, len(v)) {
		e.b = append(e.b, v...)
	}
}

// putUint writes v in minimal form (0 is an empty value).
func (e *encoder) putUint(name string, v uint64) {
	if e.head(name, minimalLen(v)) {
		e.b = appendMinimalUnsigned(e.b, v)
	}
}

// putFixed writes the low width bytes of v, big-endian.
func (e *encoder) putFixed(name string, v uint64, width int) {
	if e.head(name, width) {
		for i := width - 1; i >= 0; i-- {
			e.b = append(e.b, byte(v>>(8*i)))
		}
	}
}

func (e *encoder) bytes(name string, p *[]byte) { e.putBytes(name, *p) }

func (e *encoder) text(name string, p *string) {
	if e.err == nil && !utf8.ValidString(*p) {
		e.fail(fmt.Errorf("%s: %s is not valid UTF-8: %w", e.what, name, ErrInvalidUTF8))
	}
	if e.head(name, len(*p)) {
		e.b = append(e.b, *p...)
	}
}

func (e *encoder) identifier(name string, p *[]byte) {
	if len(*p) > MaxIdentifier {
		e.bad(name, "is %d bytes, at most %d allowed", len(*p), MaxIdentifier)
	}
	e.putBytes(name, *p)
}

func (e *encoder) uint(name string, p *uint64) { e.putUint(name, *p) }

// uintOrZeroByte writes 0 as one 00 byte, as the reference writes part id 0
// of a stream's first part and compressor 0.
func (e *encoder) uintOrZeroByte(name string, p *uint64) {
	if *p == 0 {
		e.putBytes(name, []byte{0})
		return
	}
	e.putUint(name, *p)
}

func (e *encoder) uint32(name string, p *uint32)  { e.putUint(name, uint64(*p)) }
func (e *encoder) fixed16(name string, p *uint16) { e.putFixed(name, uint64(*p), 2) }
func (e *encoder) fixed32(name string, p *uint32) { e.putFixed(name, uint64(*p), 4) }
func (e *encoder) level(name string, p *int16)    { e.putFixed(name, uint64(uint16(*p)), 2) }
func (e *encoder) exact(name string, v []byte)    { e.putBytes(name, v) }

func (e *encoder) flag(name string, p *bool) {
	if *p {
		e.putBytes(name, []byte{1})
	} else {
		e.putBytes(name, []byte{0})
	}
}

func (e *encoder) payload(p *[]byte) {
	if e.err == nil {
		e.b = append(e.b, *p...)
	}
}

// finish returns the appended bytes, or the caller's original dst on error so
// a failed append never leaves half a message behind.
func (e *encoder) finish(orig []byte) ([]byte, error) {
	if e.err != nil {
		return orig, e.err
	}
	if !e.minimal {
		binary.BigEndian.PutUint16(e.b[e.countAt:], uint16(e.count))
	}
	return e.b, nil
}

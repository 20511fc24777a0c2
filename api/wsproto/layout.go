package wsproto

// fields is what a message's layout calls once per header, in minimal-form
// order, with a pointer to the struct field holding the value: the encoder
// writes each value, the parser reads each one, and a nameList collects the
// names. One layout per message thus serves both directions.
type fields interface {
	text(name string, p *string)       // UTF-8 (authorization, glob)
	bytes(name string, p *[]byte)      // any bytes; parsed as a copy, nil when empty
	identifier(name string, p *[]byte) // at most MaxIdentifier bytes
	uint(name string, p *uint64)       // minimal form, at most 8 bytes
	// uintOrZeroByte is uint, but 0 is written as one 00 byte.
	uintOrZeroByte(name string, p *uint64)
	uint32(name string, p *uint32)  // minimal form, at most 4 bytes
	fixed16(name string, p *uint16) // written as 2 bytes, parsed from at most 2
	fixed32(name string, p *uint32) // written as 4 bytes, parsed from at most 4
	level(name string, p *int16)    // 2 bytes, signed
	flag(name string, p *bool)      // one byte, 01 or 00
	exact(name string, v []byte)    // exactly len(v) bytes
	payload(p *[]byte)              // the rest of the message, after the headers
}

// layout is implemented by every message type (on its pointer). Streams,
// whose header set depends on the part id, are parsed by parseStream
// rather than parseAs.
type layout interface{ layout(f fields) }

// checker is implemented by the messages with a rule across headers (or
// headers and payload), checked before encoding and after parsing (by
// parseAs; parseStream checks First itself).
type checker interface{ check(what string) error }

// spec describes one message type: its name in errors, its type code and
// its header names in minimal-form order, taken from its layout.
type spec struct {
	what     string
	typ      uint16
	names    []string
	optional []string // may be absent in expanded form
}

func newSpec(what string, typ uint16, l layout, optional ...string) spec {
	var n nameList
	l.layout(&n)
	return spec{what: what, typ: typ, names: n, optional: optional}
}

// append encodes m in the given header form.
func (s *spec) append(dst []byte, minimal bool, m layout) ([]byte, error) {
	e := newEncoder(dst, s.what, s.typ, minimal)
	if c, ok := m.(checker); ok {
		e.fail(c.check(s.what))
	}
	m.layout(e)
	return e.finish(dst)
}

// parseAs parses a message of type T, whose layout is on *T.
func parseAs[T any, P interface {
	*T
	layout
}](d *decoder, s *spec) (any, error) {
	d.what = s.what
	h, err := d.readHeaders(s.names, s.optional...)
	if err != nil {
		return nil, err
	}
	var m T
	p := parser{h: h}
	P(&m).layout(&p)
	if c, ok := any(P(&m)).(checker); ok && p.err == nil {
		p.err = c.check(s.what)
	}
	return ret(m, p.err)
}

// parser reads header values into a message's fields. The first error
// sticks and later reads are skipped, so errors come in layout order.
type parser struct {
	h   *headers
	err error
}

func (p *parser) text(name string, v *string) {
	if p.err == nil {
		*v, p.err = p.h.text(name)
	}
}

func (p *parser) bytes(name string, v *[]byte) {
	if p.err == nil {
		*v, p.err = p.h.bytes(name)
	}
}

func (p *parser) identifier(name string, v *[]byte) {
	if p.err == nil {
		*v, p.err = p.h.identifier(name)
	}
}

func (p *parser) uint(name string, v *uint64) {
	if p.err == nil {
		*v, p.err = p.h.uint(name, 8)
	}
}

func (p *parser) uintOrZeroByte(name string, v *uint64) { p.uint(name, v) }

// narrow reads an unsigned value of at most width bytes into a narrower
// field.
func narrow[T uint16 | uint32](p *parser, name string, width int, v *T) {
	if p.err == nil {
		var u uint64
		u, p.err = p.h.uint(name, width)
		*v = T(u)
	}
}

func (p *parser) uint32(name string, v *uint32)  { narrow(p, name, 4, v) }
func (p *parser) fixed32(name string, v *uint32) { narrow(p, name, 4, v) }

// fixed16 is x-initial-dict, the one header that may be absent: the
// reference reads it with a default when expanded headers leave it out, and
// absent here means 0 (no preset dictionary).
func (p *parser) fixed16(name string, v *uint16) {
	if p.h.has(name) {
		narrow(p, name, 2, v)
	}
}

// level is signed, at most 2 bytes, sign-extended from its own width (a
// one-byte ff is -1), as the reference's int.from_bytes(signed=True).
func (p *parser) level(name string, v *int16) {
	if p.err != nil {
		return
	}
	b, err := p.h.raw(name)
	switch {
	case err != nil:
		p.err = err
	case len(b) == 0:
	case len(b) == 1:
		*v = int16(int8(b[0]))
	case len(b) == 2:
		*v = int16(uint16(b[0])<<8 | uint16(b[1]))
	default:
		p.err = p.h.bad(name, "is %d bytes, at most 2 allowed", len(b))
	}
}

// flag is true only for the single byte 01, as in the reference.
func (p *parser) flag(name string, v *bool) {
	if p.err == nil {
		var b []byte
		b, p.err = p.h.raw(name)
		*v = len(b) == 1 && b[0] == 1
	}
}

func (p *parser) exact(name string, v []byte) {
	if p.err == nil {
		p.err = p.h.exact(name, v)
	}
}

func (p *parser) payload(v *[]byte) {
	if p.err == nil {
		*v = p.h.d.payload()
	}
}

// nameList collects the header names of a layout.
type nameList []string

func (n *nameList) add(name string)                       { *n = append(*n, name) }
func (n *nameList) text(name string, _ *string)           { n.add(name) }
func (n *nameList) bytes(name string, _ *[]byte)          { n.add(name) }
func (n *nameList) identifier(name string, _ *[]byte)     { n.add(name) }
func (n *nameList) uint(name string, _ *uint64)           { n.add(name) }
func (n *nameList) uintOrZeroByte(name string, _ *uint64) { n.add(name) }
func (n *nameList) uint32(name string, _ *uint32)         { n.add(name) }
func (n *nameList) fixed16(name string, _ *uint16)        { n.add(name) }
func (n *nameList) fixed32(name string, _ *uint32)        { n.add(name) }
func (n *nameList) level(name string, _ *int16)           { n.add(name) }
func (n *nameList) flag(name string, _ *bool)             { n.add(name) }
func (n *nameList) exact(name string, _ []byte)           { n.add(name) }
func (n *nameList) payload(*[]byte)                       {}

// authTracing lists the authorization and tracing headers, which nearly
// every message carries, in that order.
func authTracing(f fields, authorization *string, tracing *[]byte) {
	f.text(hAuthorization, authorization)
	f.bytes(hTracing, tracing)
}

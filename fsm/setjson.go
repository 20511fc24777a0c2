package fsm

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"unicode/utf8"
)

// decodeSetFast decodes a set_subscriptions entry exactly as Encode
// writes it (encoding/json's field order, no spaces, strings without
// escapes) without reflection: every replica decodes the largest entries
// of the log, a row at a time. It reports false for anything else,
// which encoding/json then decodes; what it accepts it decodes to the
// very Command encoding/json would (FuzzDecodeSetFast), so a replica's
// verdict on an entry does not depend on which decoder read it.
func decodeSetFast(b []byte) (Command, bool) {
	d := setDecoder{b: b, ok: true}
	c := Command{Op: OpSetSubscriptions}
	if !d.lit(`{"op":5`) {
		return Command{}, false
	}
	if d.lit(`,"id":`) {
		c.ID, d.ok = d.str()
	}
	if d.ok && d.lit(`,"url":`) {
		c.URL, d.ok = d.str()
	}
	if d.ok && d.lit(`,"exact":[`) {
		c.Exact = d.exact()
	}
	if d.ok && d.lit(`,"globs":[`) {
		c.Globs = d.globs()
	}
	if d.ok && d.lit(`,"auth":{"code":`) {
		c.AuthCode = d.auth()
	}
	if d.ok && d.lit(`,"max_per_url":`) {
		var n int64
		n, d.ok = d.int()
		c.MaxPerURL = int(n)
	}
	if !d.ok || !d.lit("}") || len(d.b) != 0 {
		return Command{}, false
	}
	return c, true
}

// setDecoder consumes b; ok turns false at the first byte it does not
// expect, and the decoding stops there.
type setDecoder struct {
	b   []byte
	ok  bool
	rec string // the last recovery URL decoded, shared by the rows naming it
}

// lit consumes s if b starts with it.
func (d *setDecoder) lit(s string) bool {
	if len(d.b) < len(s) || string(d.b[:len(s)]) != s {
		return false
	}
	d.b = d.b[len(s):]
	return true
}

// raw consumes a JSON string with no escapes and returns its bytes.
// encoding/json reads such a string as exactly its bytes when they are
// valid UTF-8 (it would replace invalid bytes); the rest goes to it.
func (d *setDecoder) raw() ([]byte, bool) {
	if len(d.b) == 0 || d.b[0] != '"' {
		return nil, false
	}
	ascii := true
	for i := 1; i < len(d.b); i++ {
		switch c := d.b[i]; {
		case c == '"':
			s := d.b[1:i]
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			d.b = d.b[i+1:]
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

func (d *setDecoder) str() (string, bool) {
	s, ok := d.raw()
	return string(s), ok
}

// bytes decodes a []byte field: base64 in a string, as encoding/json
// writes and reads it.
func (d *setDecoder) bytes() ([]byte, bool) {
	s, ok := d.raw()
	if !ok {
		return nil, false
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(out, s)
	return out[:n], err == nil
}

// int decodes an integer as encoding/json writes it: an optional minus
// and digits without leading zeros, few enough never to overflow.
func (d *setDecoder) int() (int64, bool) {
	i := 0
	if i < len(d.b) && d.b[i] == '-' {
		i++
	}
	start := i
	for i < len(d.b) && d.b[i] >= '0' && d.b[i] <= '9' {
		i++
	}
	digits := d.b[start:i]
	if len(digits) == 0 || len(digits) > 18 || (len(digits) > 1 && digits[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseInt(string(d.b[:i]), 10, 64)
	d.b = d.b[i:]
	return n, err == nil
}

// recovery decodes an optional `,"r":"…"` and the closing brace of an
// entry.
func (d *setDecoder) recovery() string {
	rec := ""
	if d.lit(`,"r":`) {
		var s []byte
		if s, d.ok = d.raw(); !d.ok {
			return ""
		}
		if string(s) != d.rec {
			d.rec = string(s)
		}
		rec = d.rec
	}
	d.ok = d.lit("}")
	return rec
}

// list decodes the entries of a JSON array whose opening bracket was
// consumed, each with entry, which starts after the entry's `{`.
func (d *setDecoder) list(entry func()) {
	if d.lit("]") {
		return
	}
	for d.ok {
		if d.ok = d.lit("{"); !d.ok {
			return
		}
		if entry(); !d.ok || d.lit("]") {
			return
		}
		d.ok = d.lit(",")
	}
}

// entries decodes the entries `{"<name>":<value>(,"r":"…")?}` of a JSON
// array whose opening bracket was consumed: value decodes the value,
// and entry makes an entry of it and its recovery URL.
func entries[V, E any](d *setDecoder, name string, value func() (V, bool), entry func(V, string) E) []E {
	out := make([]E, 0, bytes.Count(d.b, []byte("{"+name)))
	d.list(func() {
		if d.ok = d.lit(name); !d.ok {
			return
		}
		var v V
		if v, d.ok = value(); !d.ok {
			return
		}
		if rec := d.recovery(); d.ok {
			out = append(out, entry(v, rec))
		}
	})
	return out
}

func (d *setDecoder) exact() []ExactEntry {
	return entries(d, `"t":`, d.bytes, func(t []byte, rec string) ExactEntry { return ExactEntry{Topic: t, Recovery: rec} })
}

func (d *setDecoder) globs() []GlobEntry {
	return entries(d, `"g":`, d.str, func(g, rec string) GlobEntry { return GlobEntry{Glob: g, Recovery: rec} })
}

// auth decodes an auth code after its `{"code":`.
func (d *setDecoder) auth() *AuthCode {
	var a AuthCode
	if a.Code, d.ok = d.bytes(); d.ok {
		d.ok = d.lit(`,"expires_ms":`)
	}
	if d.ok {
		a.ExpiresMs, d.ok = d.int()
	}
	if d.ok {
		d.ok = d.lit("}")
	}
	return &a
}

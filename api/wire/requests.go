package wire

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"unicode/utf8"
)

// Notify is the prefix of a /v1/notify body; the message itself follows it on
// the wire and is never held here, since it may be larger than memory.
type Notify struct {
	Topic      []byte
	SHA512     [64]byte // claimed hash of the message, to be re-verified
	Tracing    []byte
	Identifier []byte // chosen by the notifier, echoed in RESPONSE_NOTIFY
	Length     uint64 // message length
}

// ReadNotifyHeader reads exactly the prefix of a /v1/notify body (topic up to
// and including the u64 message length) and nothing more, leaving r at the
// first message byte. A body that ends early yields an error wrapping
// ErrTruncated; other read errors are wrapped as they are.
func ReadNotifyHeader(r io.Reader) (Notify, error) {
	s := streamDecoder{what: "notify body", r: r}
	var n Notify
	n.Topic = s.bytes16("topic")
	s.full(n.SHA512[:], "sha-512")
	n.Tracing = s.bytes16("tracing")
	n.Identifier = s.bytes8("identifier")
	n.Length = s.u64("message length")
	return parsed(n, s.err)
}

// HeaderLen is the size of a notify body before its message.
func (n Notify) HeaderLen() int64 {
	return int64(2 + len(n.Topic) + 64 + 2 + len(n.Tracing) + 1 + len(n.Identifier) + 8)
}

// MaxNotifyHeaderLen is the longest notify header: a 64 KiB topic and
// tracing, a 255-byte identifier.
const MaxNotifyHeaderLen = 2 + MaxStr16 + 64 + 2 + MaxStr16 + 1 + MaxIdentifier + 8

// AppendNotifyHeader appends the prefix of a /v1/notify body; the caller
// writes the n.Length message bytes after it.
func AppendNotifyHeader(dst []byte, n Notify) ([]byte, error) {
	e := encoder{what: "notify body", b: dst}
	e.bytes16("topic", n.Topic)
	e.raw(n.SHA512[:])
	e.bytes16("tracing", n.Tracing)
	e.bytes8("identifier", n.Identifier)
	e.u64(n.Length)
	return e.finish(dst)
}

// SubscribeExact is the body of /v1/subscribe/exact and, without Recovery, of
// /v1/unsubscribe/exact.
type SubscribeExact struct {
	URL      string
	Topic    []byte
	Recovery string // "" = none; the wire cannot tell none from empty
	Tracing  []byte
}

// SubscribeGlob is the body of /v1/subscribe/glob and, without Recovery, of
// /v1/unsubscribe/glob.
type SubscribeGlob struct {
	URL      string
	Glob     string
	Recovery string // "" = none
	Tracing  []byte
}

// ParseSubscribeExact parses a /v1/subscribe/exact body.
func ParseSubscribeExact(b []byte) (SubscribeExact, error) {
	return parseExact(b, "subscribe exact body", true)
}

// ParseUnsubscribeExact parses a /v1/unsubscribe/exact body, which has no
// recovery field; Recovery is always "".
func ParseUnsubscribeExact(b []byte) (SubscribeExact, error) {
	return parseExact(b, "unsubscribe exact body", false)
}

func parseExact(b []byte, what string, withRecovery bool) (SubscribeExact, error) {
	d := decoder{what: what, b: b}
	var m SubscribeExact
	m.URL = d.text16("url")
	m.Topic = d.bytes16("topic")
	if withRecovery {
		m.Recovery = d.text16("recovery")
	}
	m.Tracing = d.bytes16("tracing")
	return parsed(m, d.err)
}

// ParseSubscribeGlob parses a /v1/subscribe/glob body.
func ParseSubscribeGlob(b []byte) (SubscribeGlob, error) {
	return parseGlob(b, "subscribe glob body", true)
}

// ParseUnsubscribeGlob parses a /v1/unsubscribe/glob body, which has no
// recovery field; Recovery is always "".
func ParseUnsubscribeGlob(b []byte) (SubscribeGlob, error) {
	return parseGlob(b, "unsubscribe glob body", false)
}

func parseGlob(b []byte, what string, withRecovery bool) (SubscribeGlob, error) {
	d := decoder{what: what, b: b}
	var m SubscribeGlob
	m.URL = d.text16("url")
	m.Glob = d.text16("glob")
	if withRecovery {
		m.Recovery = d.text16("recovery")
	}
	m.Tracing = d.bytes16("tracing")
	return parsed(m, d.err)
}

// AppendSubscribeExact appends a /v1/subscribe/exact body.
func AppendSubscribeExact(dst []byte, m SubscribeExact) ([]byte, error) {
	return appendExact(dst, m, "subscribe exact body", true)
}

// AppendUnsubscribeExact appends a /v1/unsubscribe/exact body. m.Recovery is
// not part of that body and is ignored, so one value can serve both calls.
func AppendUnsubscribeExact(dst []byte, m SubscribeExact) ([]byte, error) {
	return appendExact(dst, m, "unsubscribe exact body", false)
}

func appendExact(dst []byte, m SubscribeExact, what string, withRecovery bool) ([]byte, error) {
	e := encoder{what: what, b: dst}
	e.text16("url", m.URL)
	e.bytes16("topic", m.Topic)
	if withRecovery {
		e.text16("recovery", m.Recovery)
	}
	e.bytes16("tracing", m.Tracing)
	return e.finish(dst)
}

// AppendSubscribeGlob appends a /v1/subscribe/glob body.
func AppendSubscribeGlob(dst []byte, m SubscribeGlob) ([]byte, error) {
	return appendGlob(dst, m, "subscribe glob body", true)
}

// AppendUnsubscribeGlob appends a /v1/unsubscribe/glob body. m.Recovery is
// not part of that body and is ignored.
func AppendUnsubscribeGlob(dst []byte, m SubscribeGlob) ([]byte, error) {
	return appendGlob(dst, m, "unsubscribe glob body", false)
}

func appendGlob(dst []byte, m SubscribeGlob, what string, withRecovery bool) ([]byte, error) {
	e := encoder{what: what, b: dst}
	e.text16("url", m.URL)
	e.text16("glob", m.Glob)
	if withRecovery {
		e.text16("recovery", m.Recovery)
	}
	e.bytes16("tracing", m.Tracing)
	return e.finish(dst)
}

// CheckSubscriptions is the body of /v1/check_subscriptions. Unlike subscribe
// bodies, tracing comes first on the wire.
type CheckSubscriptions struct {
	Tracing []byte
	URL     string
}

// ParseCheckSubscriptions parses a /v1/check_subscriptions body.
func ParseCheckSubscriptions(b []byte) (CheckSubscriptions, error) {
	d := decoder{what: "check subscriptions body", b: b}
	var m CheckSubscriptions
	m.Tracing = d.bytes16("tracing")
	m.URL = d.text16("url")
	return parsed(m, d.err)
}

// AppendCheckSubscriptions appends a /v1/check_subscriptions body.
func AppendCheckSubscriptions(dst []byte, m CheckSubscriptions) ([]byte, error) {
	e := encoder{what: "check subscriptions body", b: dst}
	e.bytes16("tracing", m.Tracing)
	e.text16("url", m.URL)
	return e.finish(dst)
}

// ExactEntry is one exact subscription in a set_subscriptions list or etag.
type ExactEntry struct {
	Topic    []byte
	Recovery string // "" = none
}

// GlobEntry is one glob subscription in a set_subscriptions list or etag.
type GlobEntry struct {
	Glob     string
	Recovery string // "" = none
}

// SetSubscriptions is the body of /v1/set_subscriptions: the complete desired
// subscription set of one URL, with the etag the subscriber computed for it.
type SetSubscriptions struct {
	Tracing []byte
	URL     string
	Etag    [64]byte // claimed by the subscriber; compare with Etag(URL, Exact, Globs)
	Exact   []ExactEntry
	Globs   []GlobEntry
}

// minEntrySize is the smallest encoding of a list entry (two empty str16s);
// it bounds how many entries a body of a given size can really hold.
const minEntrySize = 4

// ParseSetSubscriptions parses a /v1/set_subscriptions body. Beyond the
// layout it enforces the etag format byte (ErrEtagFormat) and that both lists
// are strictly ascending bytewise (ErrUnsorted), because the etag is only
// defined over sorted unique lists. It does not compare the claimed etag: the
// caller does, with Etag.
func ParseSetSubscriptions(b []byte) (SetSubscriptions, error) {
	return ParseSetSubscriptionsMax(b, math.MaxInt)
}

// ParseSetSubscriptionsMax is ParseSetSubscriptions refusing, with an error
// wrapping ErrTooManyEntries, a body whose two lists claim more than
// maxEntries entries together, before decoding any entry.
func ParseSetSubscriptionsMax(b []byte, maxEntries int) (SetSubscriptions, error) {
	d := decoder{what: "set subscriptions body", b: b, maxEntries: uint64(max(maxEntries, 0))}
	var m SetSubscriptions
	m.Tracing = d.bytes16("tracing")
	m.URL = d.text16("url")
	d.etag(&m.Etag)

	// The lists grow as entries are decoded, never from the claimed count:
	// a body claiming millions of entries costs what it actually holds.
	var prev []byte
	var recovery string
	n := d.listCount("exact")
	for i := uint32(0); i < n && d.err == nil; i++ {
		d.index = i
		topic := d.raw16("topic")
		recovery = d.text16Reuse("recovery", recovery)
		if d.err == nil && i > 0 && bytes.Compare(prev, topic) >= 0 {
			d.fail(unsortedError(d.what, "exact", "topic", i, prev, topic))
		}
		prev = topic
		m.Exact = append(m.Exact, ExactEntry{Topic: clone(topic), Recovery: recovery})
	}
	d.list = ""

	n = d.listCount("glob")
	for i := uint32(0); i < n && d.err == nil; i++ {
		d.index = i
		glob := d.text16("glob")
		recovery = d.text16Reuse("recovery", recovery)
		if d.err == nil && i > 0 && m.Globs[i-1].Glob >= glob {
			d.fail(unsortedError(d.what, "glob", "glob", i, []byte(m.Globs[i-1].Glob), []byte(glob)))
		}
		m.Globs = append(m.Globs, GlobEntry{Glob: glob, Recovery: recovery})
	}
	d.list = ""
	return parsed(m, d.err)
}

// SetSubscriptionsHeader is what precedes the lists of a set_subscriptions
// body: everything its signature covers.
type SetSubscriptionsHeader struct {
	Tracing []byte
	URL     string
	Etag    [64]byte
}

// ReadSetSubscriptionsHeader reads the fields before the lists of a
// /v1/set_subscriptions body from a stream, without reading past them, so
// the request can be authenticated before its (up to many MiB of) lists
// are read. Parse the whole body with ParseSetSubscriptions afterwards.
func ReadSetSubscriptionsHeader(r io.Reader) (SetSubscriptionsHeader, error) {
	s := streamDecoder{what: "set subscriptions body", r: r}
	var h SetSubscriptionsHeader
	h.Tracing = s.bytes16("tracing")
	url := s.bytes16("url")
	if s.err == nil && !utf8.Valid(url) {
		s.err = fmt.Errorf("%s: url is not valid UTF-8: %w", s.what, ErrInvalidUTF8)
	}
	h.URL = string(url)
	if s.full(s.tmp[:1], "etag format"); s.err == nil && s.tmp[0] != 0 {
		s.err = etagFormatError(s.what, s.tmp[0], s.n-1)
	}
	s.full(h.Etag[:], "etag")
	return parsed(h, s.err)
}

// listCount reads a u32 entry count and rejects counts the rest of the body
// cannot hold, before anything is allocated for them.
func (d *decoder) listCount(list string) uint32 {
	n := d.u32(list + " count")
	if d.err != nil {
		return 0
	}
	if need := uint64(n) * minEntrySize; need > uint64(d.remaining()) {
		d.fail(fmt.Errorf("%s: %s count %d needs at least %d more bytes but only %d remain: %w",
			d.what, list, n, need, d.remaining(), ErrTruncated))
		return 0
	}
	if d.entries += uint64(n); d.entries > d.maxEntries {
		d.fail(fmt.Errorf("%s: %d entries, more than the limit of %d: %w", d.what, d.entries, d.maxEntries, ErrTooManyEntries))
		return 0
	}
	d.list, d.count = list, n
	return n
}

func unsortedError(what, list, name string, i uint32, prev, cur []byte) error {
	how := "sorts before"
	if bytes.Equal(prev, cur) {
		how = "duplicates"
	}
	return fmt.Errorf("%s: %s entry %d %s %q %s the previous entry %q: %w",
		what, list, i, name, abbreviate(cur), how, abbreviate(prev), ErrUnsorted)
}

// abbreviate keeps error messages readable when values are up to 64 KiB.
func abbreviate(p []byte) []byte {
	const max = 64
	if len(p) <= max {
		return p
	}
	return append(p[:max:max], "..."...)
}

// AppendSetSubscriptions appends a /v1/set_subscriptions body with etag
// format 0 and m.Etag as given. The lists must be strictly ascending
// (ErrUnsorted otherwise), as the broadcaster rejects anything else.
func AppendSetSubscriptions(dst []byte, m SetSubscriptions) ([]byte, error) {
	e := encoder{what: "set subscriptions body", b: dst}
	e.bytes16("tracing", m.Tracing)
	e.text16("url", m.URL)
	e.u8(0)
	e.raw(m.Etag[:])
	if uint64(len(m.Exact)) > math.MaxUint32 || uint64(len(m.Globs)) > math.MaxUint32 {
		e.fail(fmt.Errorf("%s: more list entries than a u32 count allows: %w", e.what, ErrTooLong))
	}
	e.u32(uint32(len(m.Exact)))
	for i, x := range m.Exact {
		if i > 0 && bytes.Compare(m.Exact[i-1].Topic, x.Topic) >= 0 {
			e.fail(unsortedError(e.what, "exact", "topic", uint32(i), m.Exact[i-1].Topic, x.Topic))
		}
		e.bytes16("exact topic", x.Topic)
		e.text16("exact recovery", x.Recovery)
	}
	e.u32(uint32(len(m.Globs)))
	for i, g := range m.Globs {
		if i > 0 && m.Globs[i-1].Glob >= g.Glob {
			e.fail(unsortedError(e.what, "glob", "glob", uint32(i), []byte(m.Globs[i-1].Glob), []byte(g.Glob)))
		}
		e.text16("glob", g.Glob)
		e.text16("glob recovery", g.Recovery)
	}
	return e.finish(dst)
}

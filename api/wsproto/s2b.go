package wsproto

import (
	"crypto/sha512"
	"fmt"
)

// Configure (S2B type 1) opens a websocket session.
type Configure struct {
	SubscriberNonce [NonceSize]byte
	// EnableZstd and EnableTraining are written as one byte, 01 or 00; on
	// parse only the single byte 01 means true, as in the reference.
	EnableZstd     bool
	EnableTraining bool
	// InitialDict is the preset dictionary the subscriber suggests, 0 for
	// none; written as 2 fixed bytes.
	InitialDict   uint16
	Authorization string
	Tracing       []byte
}

// SubscribeExact (S2B type 2) asks to receive messages on Topic.
type SubscribeExact struct {
	Authorization string
	Tracing       []byte
	Topic         []byte
}

// SubscribeGlob (S2B type 3) asks to receive messages on topics matching Glob.
type SubscribeGlob struct {
	Authorization string
	Tracing       []byte
	Glob          string
}

// UnsubscribeExact (S2B type 4) undoes a SubscribeExact.
type UnsubscribeExact SubscribeExact

// UnsubscribeGlob (S2B type 5) undoes a SubscribeGlob.
type UnsubscribeGlob SubscribeGlob

// Notify (S2B type 6) publishes a message that fits in one websocket
// message. Payload is the (possibly compressed) message: its length must be
// CompressedLength and its SHA-512 CompressedSHA512, which parsing and
// encoding both verify. Compressor 0 means uncompressed, and then
// DecompressedLength must equal CompressedLength.
type Notify struct {
	Authorization      string
	Tracing            []byte
	Identifier         []byte // at most MaxIdentifier bytes
	Topic              []byte
	Compressor         uint64
	CompressedLength   uint64
	DecompressedLength uint64
	CompressedSHA512   [64]byte
	Payload            []byte // aliases the parsed buffer
}

// StreamFirst holds the headers only the first part (part id 0) of a
// NOTIFY_STREAM or RECEIVE_STREAM carries. The lengths and hash describe the
// whole (possibly compressed) message, not the part; with Compressor 0,
// DecompressedLength must equal CompressedLength.
type StreamFirst struct {
	Topic              []byte
	Compressor         uint64
	CompressedLength   uint64
	DecompressedLength uint64
	CompressedSHA512   [64]byte
}

// NotifyStream (S2B type 7) is one part of a message published in several
// parts. First is non-nil exactly when PartID is 0.
type NotifyStream struct {
	Authorization string
	Tracing       []byte
	Identifier    []byte // at most MaxIdentifier bytes
	PartID        uint64
	First         *StreamFirst
	Payload       []byte // this part's bytes; aliases the parsed buffer
}

// ContinueReceive (S2B type 8) acknowledges the non-final RECEIVE_STREAM
// part PartID.
type ContinueReceive struct {
	Identifier    []byte // at most MaxIdentifier bytes
	PartID        uint64
	Authorization string
	Tracing       []byte
}

// ConfirmReceive (S2B type 9) acknowledges the final RECEIVE_STREAM part.
// NumSubscribers is written as 4 fixed bytes.
type ConfirmReceive struct {
	Identifier     []byte // at most MaxIdentifier bytes
	Authorization  string
	Tracing        []byte
	NumSubscribers uint32
}

// The subscriber-to-broadcaster message types.
var (
	configureSpec        = newSpec("configure", S2BConfigure, &Configure{}, hInitialDict)
	subscribeExactSpec   = newSpec("subscribe exact", S2BSubscribeExact, &SubscribeExact{})
	subscribeGlobSpec    = newSpec("subscribe glob", S2BSubscribeGlob, &SubscribeGlob{})
	unsubscribeExactSpec = newSpec("unsubscribe exact", S2BUnsubscribeExact, &UnsubscribeExact{})
	unsubscribeGlobSpec  = newSpec("unsubscribe glob", S2BUnsubscribeGlob, &UnsubscribeGlob{})
	notifySpec           = newSpec("notify", S2BNotify, &Notify{})
	notifyStreamSpec     = newSpec("notify stream", S2BNotifyStream, &NotifyStream{First: &StreamFirst{}})
	continueReceiveSpec  = newSpec("continue receive", S2BContinueReceive, &ContinueReceive{})
	confirmReceiveSpec   = newSpec("confirm receive", S2BConfirmReceive, &ConfirmReceive{})
)

// streamBasicHeaders is how many of a stream's headers every part carries
// (authorization, tracing, identifier, part id); part 0 adds the five of
// StreamFirst.
const streamBasicHeaders = 4

func (m *Configure) layout(f fields) {
	f.exact(hSubscriberNonce, m.SubscriberNonce[:])
	f.flag(hEnableZstd, &m.EnableZstd)
	f.flag(hEnableTraining, &m.EnableTraining)
	f.fixed16(hInitialDict, &m.InitialDict)
	authTracing(f, &m.Authorization, &m.Tracing)
}

func (m *SubscribeExact) layout(f fields) {
	authTracing(f, &m.Authorization, &m.Tracing)
	f.bytes(hTopic, &m.Topic)
}

func (m *SubscribeGlob) layout(f fields) {
	authTracing(f, &m.Authorization, &m.Tracing)
	f.text(hGlob, &m.Glob)
}

// Message types with the same headers in the same order share a layout
// through conversion.
func (m *UnsubscribeExact) layout(f fields) { (*SubscribeExact)(m).layout(f) }
func (m *UnsubscribeGlob) layout(f fields)  { (*SubscribeGlob)(m).layout(f) }

// layout lists the five headers of StreamFirst, which NOTIFY carries too.
func (m *StreamFirst) layout(f fields) {
	firstPartLayout(f, &m.Topic, &m.Compressor, &m.CompressedLength, &m.DecompressedLength, &m.CompressedSHA512)
}

func firstPartLayout(f fields, topic *[]byte, compressor, compressed, decompressed *uint64, sum *[64]byte) {
	f.bytes(hTopic, topic)
	f.uintOrZeroByte(hCompressor, compressor)
	f.uint(hCompressedLength, compressed)
	f.uint(hDecompressedLength, decompressed)
	f.exact(hCompressedSHA512, sum[:])
}

// check is the rule that compressor 0 (none) means equal lengths.
func (m *StreamFirst) check(what string) error {
	if m.Compressor == 0 && m.DecompressedLength != m.CompressedLength {
		return headerErr(what, hDecompressedLength, "is %d but must equal %s %d when %s is 0",
			m.DecompressedLength, hCompressedLength, m.CompressedLength, hCompressor)
	}
	return nil
}

func (m *Notify) layout(f fields) {
	authTracing(f, &m.Authorization, &m.Tracing)
	f.identifier(hIdentifier, &m.Identifier)
	firstPartLayout(f, &m.Topic, &m.Compressor, &m.CompressedLength, &m.DecompressedLength, &m.CompressedSHA512)
	f.payload(&m.Payload)
}

// check verifies the payload against its length and hash, then the
// compressor rule.
func (m *Notify) check(what string) error {
	if uint64(len(m.Payload)) != m.CompressedLength {
		return fmt.Errorf("%s: payload is %d bytes but x-compressed-length is %d: %w",
			what, len(m.Payload), m.CompressedLength, ErrPayload)
	}
	if sha512.Sum512(m.Payload) != m.CompressedSHA512 {
		return fmt.Errorf("%s: payload does not match x-compressed-sha512: %w", what, ErrPayload)
	}
	first := StreamFirst{Compressor: m.Compressor, CompressedLength: m.CompressedLength, DecompressedLength: m.DecompressedLength}
	return first.check(what)
}

// layout is the layout of an encoded part: part 0 carries First.
func (m *NotifyStream) layout(f fields) {
	authTracing(f, &m.Authorization, &m.Tracing)
	f.identifier(hIdentifier, &m.Identifier)
	if m.First == nil {
		f.uint(hPartID, &m.PartID)
	} else {
		f.uintOrZeroByte(hPartID, &m.PartID)
		m.First.layout(f)
	}
	f.payload(&m.Payload)
}

// check ties First to part 0, as the layout has it.
func (m *NotifyStream) check(what string) error {
	switch {
	case m.PartID == 0 && m.First == nil:
		return headerErr(what, hPartID, "is 0 but the first-part headers (First) are missing")
	case m.PartID != 0 && m.First != nil:
		return headerErr(what, hPartID, "is %d but first-part headers (First) are only sent on part 0", m.PartID)
	case m.First != nil:
		return m.First.check(what)
	}
	return nil
}

// parseStream parses NOTIFY_STREAM and RECEIVE_STREAM, which share a layout:
// four headers on every part, five more on part 0 only. In minimal form the
// part id decides whether the five follow; in expanded form they are
// required on part 0 and ignored on later parts.
func parseStream(d *decoder, s *spec) (NotifyStream, error) {
	d.what = s.what
	h := &headers{d: d, names: s.names}
	var err error
	if d.minimal {
		err = h.readMinimal(0, streamBasicHeaders)
	} else {
		err = h.readExpanded()
		for _, name := range s.names[:streamBasicHeaders] {
			if err == nil && !h.has(name) {
				err = h.missing(name)
			}
		}
	}
	if err != nil {
		return NotifyStream{}, err
	}
	var m NotifyStream
	p := parser{h: h}
	p.uint(hPartID, &m.PartID)
	if p.err == nil && m.PartID == 0 {
		if d.minimal {
			p.err = h.readMinimal(streamBasicHeaders, len(s.names))
		}
		m.First = new(StreamFirst)
		m.First.layout(&p)
		if p.err == nil {
			p.err = m.First.check(s.what)
		}
	}
	authTracing(&p, &m.Authorization, &m.Tracing)
	p.identifier(hIdentifier, &m.Identifier)
	p.payload(&m.Payload)
	return m, p.err
}

// layout is CONTINUE_RECEIVE's and CONTINUE_NOTIFY's; part id 0 is an empty
// value there, unlike on a stream's first part.
func (m *ContinueReceive) layout(f fields) {
	f.identifier(hIdentifier, &m.Identifier)
	f.uint(hPartID, &m.PartID)
	authTracing(f, &m.Authorization, &m.Tracing)
}

func (m *ConfirmReceive) layout(f fields) {
	f.identifier(hIdentifier, &m.Identifier)
	authTracing(f, &m.Authorization, &m.Tracing)
	f.fixed32(hNumSubscribers, &m.NumSubscribers)
}

// encoding makes every message type a Message.
func (m Configure) encoding() (*spec, layout)        { return &configureSpec, &m }
func (m SubscribeExact) encoding() (*spec, layout)   { return &subscribeExactSpec, &m }
func (m SubscribeGlob) encoding() (*spec, layout)    { return &subscribeGlobSpec, &m }
func (m UnsubscribeExact) encoding() (*spec, layout) { return &unsubscribeExactSpec, &m }
func (m UnsubscribeGlob) encoding() (*spec, layout)  { return &unsubscribeGlobSpec, &m }
func (m Notify) encoding() (*spec, layout)           { return &notifySpec, &m }
func (m NotifyStream) encoding() (*spec, layout)     { return &notifyStreamSpec, &m }
func (m ContinueReceive) encoding() (*spec, layout)  { return &continueReceiveSpec, &m }
func (m ConfirmReceive) encoding() (*spec, layout)   { return &confirmReceiveSpec, &m }

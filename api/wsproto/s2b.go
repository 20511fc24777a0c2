package wsproto

import (
	"crypto/sha512"
	"fmt"
)

// Header layouts (minimal-form order) of the subscriber-to-broadcaster
// messages; the broadcaster's replies reuse some of them.
var (
	configureHeaders = []string{hSubscriberNonce, hEnableZstd, hEnableTraining, hInitialDict, hAuthorization, hTracing}
	authTopicHeaders = []string{hAuthorization, hTracing, hTopic}
	authGlobHeaders  = []string{hAuthorization, hTracing, hGlob}
	notifyHeaders    = []string{hAuthorization, hTracing, hIdentifier, hTopic, hCompressor, hCompressedLength, hDecompressedLength, hCompressedSHA512}
	// streamHeaders: the first four on every part, all nine on part 0.
	streamHeaders         = []string{hAuthorization, hTracing, hIdentifier, hPartID, hTopic, hCompressor, hCompressedLength, hDecompressedLength, hCompressedSHA512}
	identPartHeaders      = []string{hIdentifier, hPartID, hAuthorization, hTracing}
	confirmReceiveHeaders = []string{hIdentifier, hAuthorization, hTracing, hNumSubscribers}
)

// streamBasicHeaders is how many of streamHeaders every part carries.
const streamBasicHeaders = 4

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
type UnsubscribeExact struct {
	Authorization string
	Tracing       []byte
	Topic         []byte
}

// UnsubscribeGlob (S2B type 5) undoes a SubscribeGlob.
type UnsubscribeGlob struct {
	Authorization string
	Tracing       []byte
	Glob          string
}

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

// Shapes shared by several message types: the exported types convert to and
// from them, so each layout is encoded and parsed in one place.
type (
	authTopic struct {
		Authorization string
		Tracing       []byte
		Topic         []byte
	}
	authGlob struct {
		Authorization string
		Tracing       []byte
		Glob          string
	}
	stream struct {
		Authorization string
		Tracing       []byte
		Identifier    []byte
		PartID        uint64
		First         *StreamFirst
		Payload       []byte
	}
	identPart struct {
		Identifier    []byte
		PartID        uint64
		Authorization string
		Tracing       []byte
	}
)

// AppendMinimal appends the message with minimal headers.
func (m Configure) AppendMinimal(dst []byte) ([]byte, error) { return m.append(dst, true) }

// AppendExpanded appends the message with expanded headers.
func (m Configure) AppendExpanded(dst []byte) ([]byte, error) { return m.append(dst, false) }

func (m Configure) append(dst []byte, minimal bool) ([]byte, error) {
	e := newEncoder(dst, "configure", S2BConfigure, minimal, len(configureHeaders))
	e.bytes(hSubscriberNonce, m.SubscriberNonce[:])
	e.bytes(hEnableZstd, boolByte(m.EnableZstd))
	e.bytes(hEnableTraining, boolByte(m.EnableTraining))
	e.fixed(hInitialDict, uint64(m.InitialDict), 2)
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	return e.finish(dst)
}

func boolByte(v bool) []byte {
	if v {
		return []byte{1}
	}
	return []byte{0}
}

func parseConfigure(d *decoder) (any, error) {
	d.what = "configure"
	// The reference reads x-initial-dict with a default when it is absent
	// from expanded headers; absent here means 0 (no preset dictionary).
	h, err := d.readHeaders(configureHeaders, hInitialDict)
	if err != nil {
		return nil, err
	}
	var m Configure
	if err = h.exact(hSubscriberNonce, m.SubscriberNonce[:]); err != nil {
		return nil, err
	}
	z, err := h.raw(hEnableZstd)
	if err != nil {
		return nil, err
	}
	t, err := h.raw(hEnableTraining)
	if err != nil {
		return nil, err
	}
	m.EnableZstd = len(z) == 1 && z[0] == 1
	m.EnableTraining = len(t) == 1 && t[0] == 1
	if h.has(hInitialDict) {
		v, err := h.uint(hInitialDict, 2)
		if err != nil {
			return nil, err
		}
		m.InitialDict = uint16(v)
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return nil, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return nil, err
	}
	return m, nil
}

// AppendMinimal appends the message with minimal headers.
func (m SubscribeExact) AppendMinimal(dst []byte) ([]byte, error) {
	return authTopic(m).append(dst, "subscribe exact", S2BSubscribeExact, true)
}

// AppendExpanded appends the message with expanded headers.
func (m SubscribeExact) AppendExpanded(dst []byte) ([]byte, error) {
	return authTopic(m).append(dst, "subscribe exact", S2BSubscribeExact, false)
}

// AppendMinimal appends the message with minimal headers.
func (m SubscribeGlob) AppendMinimal(dst []byte) ([]byte, error) {
	return authGlob(m).append(dst, "subscribe glob", S2BSubscribeGlob, true)
}

// AppendExpanded appends the message with expanded headers.
func (m SubscribeGlob) AppendExpanded(dst []byte) ([]byte, error) {
	return authGlob(m).append(dst, "subscribe glob", S2BSubscribeGlob, false)
}

// AppendMinimal appends the message with minimal headers.
func (m UnsubscribeExact) AppendMinimal(dst []byte) ([]byte, error) {
	return authTopic(m).append(dst, "unsubscribe exact", S2BUnsubscribeExact, true)
}

// AppendExpanded appends the message with expanded headers.
func (m UnsubscribeExact) AppendExpanded(dst []byte) ([]byte, error) {
	return authTopic(m).append(dst, "unsubscribe exact", S2BUnsubscribeExact, false)
}

// AppendMinimal appends the message with minimal headers.
func (m UnsubscribeGlob) AppendMinimal(dst []byte) ([]byte, error) {
	return authGlob(m).append(dst, "unsubscribe glob", S2BUnsubscribeGlob, true)
}

// AppendExpanded appends the message with expanded headers.
func (m UnsubscribeGlob) AppendExpanded(dst []byte) ([]byte, error) {
	return authGlob(m).append(dst, "unsubscribe glob", S2BUnsubscribeGlob, false)
}

func (m authTopic) append(dst []byte, what string, typ uint16, minimal bool) ([]byte, error) {
	e := newEncoder(dst, what, typ, minimal, len(authTopicHeaders))
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	e.bytes(hTopic, m.Topic)
	return e.finish(dst)
}

func parseAuthTopic(d *decoder, what string) (authTopic, error) {
	d.what = what
	var m authTopic
	h, err := d.readHeaders(authTopicHeaders)
	if err != nil {
		return m, err
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return authTopic{}, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return authTopic{}, err
	}
	if m.Topic, err = h.bytes(hTopic); err != nil {
		return authTopic{}, err
	}
	return m, nil
}

func (m authGlob) append(dst []byte, what string, typ uint16, minimal bool) ([]byte, error) {
	e := newEncoder(dst, what, typ, minimal, len(authGlobHeaders))
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	e.text(hGlob, m.Glob)
	return e.finish(dst)
}

func parseAuthGlob(d *decoder, what string) (authGlob, error) {
	d.what = what
	var m authGlob
	h, err := d.readHeaders(authGlobHeaders)
	if err != nil {
		return m, err
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return authGlob{}, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return authGlob{}, err
	}
	if m.Glob, err = h.text(hGlob); err != nil {
		return authGlob{}, err
	}
	return m, nil
}

// AppendMinimal appends the message with minimal headers.
func (m Notify) AppendMinimal(dst []byte) ([]byte, error) { return m.append(dst, true) }

// AppendExpanded appends the message with expanded headers.
func (m Notify) AppendExpanded(dst []byte) ([]byte, error) { return m.append(dst, false) }

func (m Notify) append(dst []byte, minimal bool) ([]byte, error) {
	e := newEncoder(dst, "notify", S2BNotify, minimal, len(notifyHeaders))
	if uint64(len(m.Payload)) != m.CompressedLength {
		e.fail(fmt.Errorf("notify: payload is %d bytes but x-compressed-length is %d: %w",
			len(m.Payload), m.CompressedLength, ErrPayload))
	} else if sha512.Sum512(m.Payload) != m.CompressedSHA512 {
		e.fail(fmt.Errorf("notify: payload does not match x-compressed-sha512: %w", ErrPayload))
	}
	checkUncompressedLengths(e, m.Compressor, m.CompressedLength, m.DecompressedLength)
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	e.identifier(hIdentifier, m.Identifier)
	e.bytes(hTopic, m.Topic)
	e.uintOrZeroByte(hCompressor, m.Compressor)
	e.uint(hCompressedLength, m.CompressedLength)
	e.uint(hDecompressedLength, m.DecompressedLength)
	e.bytes(hCompressedSHA512, m.CompressedSHA512[:])
	e.payload(m.Payload)
	return e.finish(dst)
}

func checkUncompressedLengths(e *encoder, compressor, compressed, decompressed uint64) {
	if compressor == 0 && compressed != decompressed {
		e.bad(hDecompressedLength, "is %d but must equal %s %d when %s is 0",
			decompressed, hCompressedLength, compressed, hCompressor)
	}
}

func parseNotify(d *decoder) (any, error) {
	d.what = "notify"
	h, err := d.readHeaders(notifyHeaders)
	if err != nil {
		return nil, err
	}
	var m Notify
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return nil, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return nil, err
	}
	if m.Identifier, err = h.identifier(hIdentifier); err != nil {
		return nil, err
	}
	if m.Topic, err = h.bytes(hTopic); err != nil {
		return nil, err
	}
	if m.Compressor, err = h.uint(hCompressor, 8); err != nil {
		return nil, err
	}
	if m.CompressedLength, err = h.uint(hCompressedLength, 8); err != nil {
		return nil, err
	}
	if m.DecompressedLength, err = h.uint(hDecompressedLength, 8); err != nil {
		return nil, err
	}
	if err = h.exact(hCompressedSHA512, m.CompressedSHA512[:]); err != nil {
		return nil, err
	}
	m.Payload = d.payload()
	if uint64(len(m.Payload)) != m.CompressedLength {
		return nil, fmt.Errorf("notify: payload is %d bytes but x-compressed-length is %d: %w",
			len(m.Payload), m.CompressedLength, ErrPayload)
	}
	if sha512.Sum512(m.Payload) != m.CompressedSHA512 {
		return nil, fmt.Errorf("notify: payload does not match x-compressed-sha512: %w", ErrPayload)
	}
	if m.Compressor == 0 && m.DecompressedLength != m.CompressedLength {
		return nil, h.bad(hDecompressedLength, "is %d but must equal %s %d when %s is 0",
			m.DecompressedLength, hCompressedLength, m.CompressedLength, hCompressor)
	}
	return m, nil
}

// AppendMinimal appends the message with minimal headers.
func (m NotifyStream) AppendMinimal(dst []byte) ([]byte, error) {
	return stream(m).append(dst, "notify stream", S2BNotifyStream, true)
}

// AppendExpanded appends the message with expanded headers.
func (m NotifyStream) AppendExpanded(dst []byte) ([]byte, error) {
	return stream(m).append(dst, "notify stream", S2BNotifyStream, false)
}

func (m stream) append(dst []byte, what string, typ uint16, minimal bool) ([]byte, error) {
	count := streamBasicHeaders
	if m.First != nil {
		count = len(streamHeaders)
	}
	e := newEncoder(dst, what, typ, minimal, count)
	switch {
	case m.PartID == 0 && m.First == nil:
		e.bad(hPartID, "is 0 but the first-part headers (First) are missing")
	case m.PartID != 0 && m.First != nil:
		e.bad(hPartID, "is %d but first-part headers (First) are only sent on part 0", m.PartID)
	case m.First != nil:
		checkUncompressedLengths(e, m.First.Compressor, m.First.CompressedLength, m.First.DecompressedLength)
	}
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	e.identifier(hIdentifier, m.Identifier)
	if f := m.First; f != nil {
		e.uintOrZeroByte(hPartID, 0)
		e.bytes(hTopic, f.Topic)
		e.uintOrZeroByte(hCompressor, f.Compressor)
		e.uint(hCompressedLength, f.CompressedLength)
		e.uint(hDecompressedLength, f.DecompressedLength)
		e.bytes(hCompressedSHA512, f.CompressedSHA512[:])
	} else {
		e.uint(hPartID, m.PartID)
	}
	e.payload(m.Payload)
	return e.finish(dst)
}

// parseStream parses NOTIFY_STREAM and RECEIVE_STREAM, which share a layout:
// four headers on every part, five more on part 0 only. In minimal form the
// part id decides whether the five follow; in expanded form they are
// required on part 0 and ignored on later parts.
func parseStream(d *decoder, what string) (stream, error) {
	d.what = what
	h := &headers{d: d, names: streamHeaders}
	var err error
	if d.minimal {
		err = h.readMinimal(0, streamBasicHeaders)
	} else {
		err = h.readExpanded()
		for _, name := range streamHeaders[:streamBasicHeaders] {
			if err == nil && !h.has(name) {
				err = h.missing(name)
			}
		}
	}
	if err != nil {
		return stream{}, err
	}
	var m stream
	if m.PartID, err = h.uint(hPartID, 8); err != nil {
		return stream{}, err
	}
	if m.PartID == 0 {
		if d.minimal {
			err = h.readMinimal(streamBasicHeaders, len(streamHeaders))
		}
		if err != nil {
			return stream{}, err
		}
		f := new(StreamFirst)
		if f.Topic, err = h.bytes(hTopic); err != nil {
			return stream{}, err
		}
		if f.Compressor, err = h.uint(hCompressor, 8); err != nil {
			return stream{}, err
		}
		if f.CompressedLength, err = h.uint(hCompressedLength, 8); err != nil {
			return stream{}, err
		}
		if f.DecompressedLength, err = h.uint(hDecompressedLength, 8); err != nil {
			return stream{}, err
		}
		if err = h.exact(hCompressedSHA512, f.CompressedSHA512[:]); err != nil {
			return stream{}, err
		}
		if f.Compressor == 0 && f.DecompressedLength != f.CompressedLength {
			return stream{}, h.bad(hDecompressedLength, "is %d but must equal %s %d when %s is 0",
				f.DecompressedLength, hCompressedLength, f.CompressedLength, hCompressor)
		}
		m.First = f
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return stream{}, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return stream{}, err
	}
	if m.Identifier, err = h.identifier(hIdentifier); err != nil {
		return stream{}, err
	}
	m.Payload = d.payload()
	return m, nil
}

// AppendMinimal appends the message with minimal headers.
func (m ContinueReceive) AppendMinimal(dst []byte) ([]byte, error) {
	return identPart(m).append(dst, "continue receive", S2BContinueReceive, true)
}

// AppendExpanded appends the message with expanded headers.
func (m ContinueReceive) AppendExpanded(dst []byte) ([]byte, error) {
	return identPart(m).append(dst, "continue receive", S2BContinueReceive, false)
}

// identPart is CONTINUE_RECEIVE and CONTINUE_NOTIFY; part id 0 is an empty
// value there, unlike on a stream's first part.
func (m identPart) append(dst []byte, what string, typ uint16, minimal bool) ([]byte, error) {
	e := newEncoder(dst, what, typ, minimal, len(identPartHeaders))
	e.identifier(hIdentifier, m.Identifier)
	e.uint(hPartID, m.PartID)
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	return e.finish(dst)
}

func parseIdentPart(d *decoder, what string) (identPart, error) {
	d.what = what
	var m identPart
	h, err := d.readHeaders(identPartHeaders)
	if err != nil {
		return m, err
	}
	if m.Identifier, err = h.identifier(hIdentifier); err != nil {
		return identPart{}, err
	}
	if m.PartID, err = h.uint(hPartID, 8); err != nil {
		return identPart{}, err
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return identPart{}, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return identPart{}, err
	}
	return m, nil
}

// AppendMinimal appends the message with minimal headers.
func (m ConfirmReceive) AppendMinimal(dst []byte) ([]byte, error) { return m.append(dst, true) }

// AppendExpanded appends the message with expanded headers.
func (m ConfirmReceive) AppendExpanded(dst []byte) ([]byte, error) { return m.append(dst, false) }

func (m ConfirmReceive) append(dst []byte, minimal bool) ([]byte, error) {
	e := newEncoder(dst, "confirm receive", S2BConfirmReceive, minimal, len(confirmReceiveHeaders))
	e.identifier(hIdentifier, m.Identifier)
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	e.fixed(hNumSubscribers, uint64(m.NumSubscribers), 4)
	return e.finish(dst)
}

func parseConfirmReceive(d *decoder) (any, error) {
	d.what = "confirm receive"
	h, err := d.readHeaders(confirmReceiveHeaders)
	if err != nil {
		return nil, err
	}
	var m ConfirmReceive
	if m.Identifier, err = h.identifier(hIdentifier); err != nil {
		return nil, err
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return nil, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return nil, err
	}
	n, err := h.uint(hNumSubscribers, 4)
	if err != nil {
		return nil, err
	}
	m.NumSubscribers = uint32(n)
	return m, nil
}

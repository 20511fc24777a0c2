package wsproto

// The codec as it was before messages were described by one layout each,
// kept to check the new one against: FuzzOldAndNewAgree.

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

func oldParseS2B(b []byte) (any, error) {
	d, typ, err := newDecoder(b, "subscriber message")
	if err != nil {
		return nil, err
	}
	switch typ {
	case S2BConfigure:
		return oldParseConfigure(d)
	case S2BSubscribeExact:
		m, err := oldParseAuthTopic(d, "subscribe exact")
		return ret(SubscribeExact(m), err)
	case S2BSubscribeGlob:
		m, err := oldParseAuthGlob(d, "subscribe glob")
		return ret(SubscribeGlob(m), err)
	case S2BUnsubscribeExact:
		m, err := oldParseAuthTopic(d, "unsubscribe exact")
		return ret(UnsubscribeExact(m), err)
	case S2BUnsubscribeGlob:
		m, err := oldParseAuthGlob(d, "unsubscribe glob")
		return ret(UnsubscribeGlob(m), err)
	case S2BNotify:
		return oldParseNotify(d)
	case S2BNotifyStream:
		m, err := oldParseStream(d, "notify stream")
		return ret(NotifyStream(m), err)
	case S2BContinueReceive:
		m, err := oldParseIdentPart(d, "continue receive")
		return ret(ContinueReceive(m), err)
	case S2BConfirmReceive:
		return oldParseConfirmReceive(d)
	}
	return nil, fmt.Errorf("%s: type %d: %w", d.what, typ, ErrUnknownType)
}

func oldParseB2S(b []byte) (any, error) {
	d, typ, err := newDecoder(b, "broadcaster message")
	if err != nil {
		return nil, err
	}
	switch typ {
	case B2SConfirmConfigure:
		return oldParseConfirmConfigure(d)
	case B2SConfirmSubscribeExact:
		m, err := oldParseTopicAuth(d, "confirm subscribe exact")
		return ret(ConfirmSubscribeExact(m), err)
	case B2SConfirmSubscribeGlob:
		m, err := oldParseGlobAuth(d, "confirm subscribe glob")
		return ret(ConfirmSubscribeGlob(m), err)
	case B2SConfirmUnsubscribeExact:
		m, err := oldParseTopicAuth(d, "confirm unsubscribe exact")
		return ret(ConfirmUnsubscribeExact(m), err)
	case B2SConfirmUnsubscribeGlob:
		m, err := oldParseGlobAuth(d, "confirm unsubscribe glob")
		return ret(ConfirmUnsubscribeGlob(m), err)
	case B2SConfirmNotify:
		return oldParseConfirmNotify(d)
	case B2SContinueNotify:
		m, err := oldParseIdentPart(d, "continue notify")
		return ret(ContinueNotify(m), err)
	case B2SReceiveStream:
		m, err := oldParseStream(d, "receive stream")
		return ret(ReceiveStream(m), err)
	case B2SEnableZstdPreset:
		return oldParseEnableZstdPreset(d)
	case B2SEnableZstdCustom:
		return oldParseEnableZstdCustom(d)
	case B2SDisableZstdCustom:
		return oldParseDisableZstdCustom(d)
	case B2SMissed:
		m, err := oldParseAuthTopic(d, "missed")
		return ret(Missed(m), err)
	}
	return nil, fmt.Errorf("%s: type %d: %w", d.what, typ, ErrUnknownType)
}

// Header layouts (minimal-form order) of the subscriber-to-broadcaster
// messages; the broadcaster's replies reuse some of them.
var (
	oldConfigureHeaders = []string{hSubscriberNonce, hEnableZstd, hEnableTraining, hInitialDict, hAuthorization, hTracing}
	oldAuthTopicHeaders = []string{hAuthorization, hTracing, hTopic}
	oldAuthGlobHeaders  = []string{hAuthorization, hTracing, hGlob}
	oldNotifyHeaders    = []string{hAuthorization, hTracing, hIdentifier, hTopic, hCompressor, hCompressedLength, hDecompressedLength, hCompressedSHA512}
	// oldStreamHeaders: the first four on every part, all nine on part 0.
	oldStreamHeaders         = []string{hAuthorization, hTracing, hIdentifier, hPartID, hTopic, hCompressor, hCompressedLength, hDecompressedLength, hCompressedSHA512}
	oldIdentPartHeaders      = []string{hIdentifier, hPartID, hAuthorization, hTracing}
	oldConfirmReceiveHeaders = []string{hIdentifier, hAuthorization, hTracing, hNumSubscribers}
)

// oldStreamBasicHeaders is how many of oldStreamHeaders every part carries.
const oldStreamBasicHeaders = 4

// Shapes shared by several message types: the exported types convert to and
// from them, so each layout is encoded and parsed in one place.
type (
	oldAuthTopic struct {
		Authorization string
		Tracing       []byte
		Topic         []byte
	}
	oldAuthGlob struct {
		Authorization string
		Tracing       []byte
		Glob          string
	}
	oldStream struct {
		Authorization string
		Tracing       []byte
		Identifier    []byte
		PartID        uint64
		First         *StreamFirst
		Payload       []byte
	}
	oldIdentPart struct {
		Identifier    []byte
		PartID        uint64
		Authorization string
		Tracing       []byte
	}
)

func oldAppendConfigure(m Configure, dst []byte, minimal bool) ([]byte, error) {
	e := oldNewEncoder(dst, "configure", S2BConfigure, minimal, len(oldConfigureHeaders))
	e.bytes(hSubscriberNonce, m.SubscriberNonce[:])
	e.bytes(hEnableZstd, oldBoolByte(m.EnableZstd))
	e.bytes(hEnableTraining, oldBoolByte(m.EnableTraining))
	e.fixed(hInitialDict, uint64(m.InitialDict), 2)
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	return e.finish(dst)
}

func oldBoolByte(v bool) []byte {
	if v {
		return []byte{1}
	}
	return []byte{0}
}

func oldParseConfigure(d *decoder) (any, error) {
	d.what = "configure"
	// The reference reads x-initial-dict with a default when it is absent
	// from expanded headers; absent here means 0 (no preset dictionary).
	h, err := d.readHeaders(oldConfigureHeaders, hInitialDict)
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

func (m oldAuthTopic) append(dst []byte, what string, typ uint16, minimal bool) ([]byte, error) {
	e := oldNewEncoder(dst, what, typ, minimal, len(oldAuthTopicHeaders))
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	e.bytes(hTopic, m.Topic)
	return e.finish(dst)
}

func oldParseAuthTopic(d *decoder, what string) (oldAuthTopic, error) {
	d.what = what
	var m oldAuthTopic
	h, err := d.readHeaders(oldAuthTopicHeaders)
	if err != nil {
		return m, err
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return oldAuthTopic{}, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return oldAuthTopic{}, err
	}
	if m.Topic, err = h.bytes(hTopic); err != nil {
		return oldAuthTopic{}, err
	}
	return m, nil
}

func (m oldAuthGlob) append(dst []byte, what string, typ uint16, minimal bool) ([]byte, error) {
	e := oldNewEncoder(dst, what, typ, minimal, len(oldAuthGlobHeaders))
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	e.text(hGlob, m.Glob)
	return e.finish(dst)
}

func oldParseAuthGlob(d *decoder, what string) (oldAuthGlob, error) {
	d.what = what
	var m oldAuthGlob
	h, err := d.readHeaders(oldAuthGlobHeaders)
	if err != nil {
		return m, err
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return oldAuthGlob{}, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return oldAuthGlob{}, err
	}
	if m.Glob, err = h.text(hGlob); err != nil {
		return oldAuthGlob{}, err
	}
	return m, nil
}

func oldAppendNotify(m Notify, dst []byte, minimal bool) ([]byte, error) {
	e := oldNewEncoder(dst, "notify", S2BNotify, minimal, len(oldNotifyHeaders))
	if uint64(len(m.Payload)) != m.CompressedLength {
		e.fail(fmt.Errorf("notify: payload is %d bytes but x-compressed-length is %d: %w",
			len(m.Payload), m.CompressedLength, ErrPayload))
	} else if sha512.Sum512(m.Payload) != m.CompressedSHA512 {
		e.fail(fmt.Errorf("notify: payload does not match x-compressed-sha512: %w", ErrPayload))
	}
	oldCheckUncompressedLengths(e, m.Compressor, m.CompressedLength, m.DecompressedLength)
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

func oldCheckUncompressedLengths(e *oldEncoder, compressor, compressed, decompressed uint64) {
	if compressor == 0 && compressed != decompressed {
		e.bad(hDecompressedLength, "is %d but must equal %s %d when %s is 0",
			decompressed, hCompressedLength, compressed, hCompressor)
	}
}

func oldParseNotify(d *decoder) (any, error) {
	d.what = "notify"
	h, err := d.readHeaders(oldNotifyHeaders)
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

func (m oldStream) append(dst []byte, what string, typ uint16, minimal bool) ([]byte, error) {
	count := oldStreamBasicHeaders
	if m.First != nil {
		count = len(oldStreamHeaders)
	}
	e := oldNewEncoder(dst, what, typ, minimal, count)
	switch {
	case m.PartID == 0 && m.First == nil:
		e.bad(hPartID, "is 0 but the first-part headers (First) are missing")
	case m.PartID != 0 && m.First != nil:
		e.bad(hPartID, "is %d but first-part headers (First) are only sent on part 0", m.PartID)
	case m.First != nil:
		oldCheckUncompressedLengths(e, m.First.Compressor, m.First.CompressedLength, m.First.DecompressedLength)
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
func oldParseStream(d *decoder, what string) (oldStream, error) {
	d.what = what
	h := &headers{d: d, names: oldStreamHeaders}
	var err error
	if d.minimal {
		err = h.readMinimal(0, oldStreamBasicHeaders)
	} else {
		err = h.readExpanded()
		for _, name := range oldStreamHeaders[:oldStreamBasicHeaders] {
			if err == nil && !h.has(name) {
				err = h.missing(name)
			}
		}
	}
	if err != nil {
		return oldStream{}, err
	}
	var m oldStream
	if m.PartID, err = h.uint(hPartID, 8); err != nil {
		return oldStream{}, err
	}
	if m.PartID == 0 {
		if d.minimal {
			err = h.readMinimal(oldStreamBasicHeaders, len(oldStreamHeaders))
		}
		if err != nil {
			return oldStream{}, err
		}
		f := new(StreamFirst)
		if f.Topic, err = h.bytes(hTopic); err != nil {
			return oldStream{}, err
		}
		if f.Compressor, err = h.uint(hCompressor, 8); err != nil {
			return oldStream{}, err
		}
		if f.CompressedLength, err = h.uint(hCompressedLength, 8); err != nil {
			return oldStream{}, err
		}
		if f.DecompressedLength, err = h.uint(hDecompressedLength, 8); err != nil {
			return oldStream{}, err
		}
		if err = h.exact(hCompressedSHA512, f.CompressedSHA512[:]); err != nil {
			return oldStream{}, err
		}
		if f.Compressor == 0 && f.DecompressedLength != f.CompressedLength {
			return oldStream{}, h.bad(hDecompressedLength, "is %d but must equal %s %d when %s is 0",
				f.DecompressedLength, hCompressedLength, f.CompressedLength, hCompressor)
		}
		m.First = f
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return oldStream{}, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return oldStream{}, err
	}
	if m.Identifier, err = h.identifier(hIdentifier); err != nil {
		return oldStream{}, err
	}
	m.Payload = d.payload()
	return m, nil
}

// oldIdentPart is CONTINUE_RECEIVE and CONTINUE_NOTIFY; part id 0 is an empty
// value there, unlike on a stream's first part.
func (m oldIdentPart) append(dst []byte, what string, typ uint16, minimal bool) ([]byte, error) {
	e := oldNewEncoder(dst, what, typ, minimal, len(oldIdentPartHeaders))
	e.identifier(hIdentifier, m.Identifier)
	e.uint(hPartID, m.PartID)
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	return e.finish(dst)
}

func oldParseIdentPart(d *decoder, what string) (oldIdentPart, error) {
	d.what = what
	var m oldIdentPart
	h, err := d.readHeaders(oldIdentPartHeaders)
	if err != nil {
		return m, err
	}
	if m.Identifier, err = h.identifier(hIdentifier); err != nil {
		return oldIdentPart{}, err
	}
	if m.PartID, err = h.uint(hPartID, 8); err != nil {
		return oldIdentPart{}, err
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return oldIdentPart{}, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return oldIdentPart{}, err
	}
	return m, nil
}

func oldAppendConfirmReceive(m ConfirmReceive, dst []byte, minimal bool) ([]byte, error) {
	e := oldNewEncoder(dst, "confirm receive", S2BConfirmReceive, minimal, len(oldConfirmReceiveHeaders))
	e.identifier(hIdentifier, m.Identifier)
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	e.fixed(hNumSubscribers, uint64(m.NumSubscribers), 4)
	return e.finish(dst)
}

func oldParseConfirmReceive(d *decoder) (any, error) {
	d.what = "confirm receive"
	h, err := d.readHeaders(oldConfirmReceiveHeaders)
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

// Header layouts (minimal-form order) of the broadcaster-to-subscriber
// messages not shared with the other direction.
var (
	oldConfirmConfigureHeaders = []string{hBroadcasterNonce, hAuthorization, hTracing}
	oldTopicAuthHeaders        = []string{hTopic, hAuthorization, hTracing}
	oldGlobAuthHeaders         = []string{hGlob, hAuthorization, hTracing}
	oldConfirmNotifyHeaders    = []string{hIdentifier, hSubscribers, hAuthorization, hTracing}
	oldEnableZstdPresetHeaders = []string{hIdentifier, hCompressionLevel, hMinSize, hMaxSize, hAuthorization, hTracing}
	oldEnableZstdCustomHeaders = []string{hIdentifier, hCompressionLevel, hMinSize, hMaxSize, hAuthorization, hTracing, hSHA512}
	oldDisableZstdHeaders      = []string{hIdentifier, hAuthorization, hTracing}
)

type (
	oldTopicAuth struct {
		Topic         []byte
		Authorization string
		Tracing       []byte
	}
	oldGlobAuth struct {
		Glob          string
		Authorization string
		Tracing       []byte
	}
	// oldZstdSettings is what ENABLE_ZSTD_PRESET and ENABLE_ZSTD_CUSTOM share.
	oldZstdSettings struct {
		Identifier       uint64
		CompressionLevel int16
		MinSize          uint32
		MaxSize          uint64
		Authorization    string
		Tracing          []byte
	}
)

func oldAppendConfirmConfigure(m ConfirmConfigure, dst []byte, minimal bool) ([]byte, error) {
	e := oldNewEncoder(dst, "confirm configure", B2SConfirmConfigure, minimal, len(oldConfirmConfigureHeaders))
	e.bytes(hBroadcasterNonce, m.BroadcasterNonce[:])
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	return e.finish(dst)
}

func oldParseConfirmConfigure(d *decoder) (any, error) {
	d.what = "confirm configure"
	h, err := d.readHeaders(oldConfirmConfigureHeaders)
	if err != nil {
		return nil, err
	}
	var m ConfirmConfigure
	if err = h.exact(hBroadcasterNonce, m.BroadcasterNonce[:]); err != nil {
		return nil, err
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return nil, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return nil, err
	}
	return m, nil
}

func (m oldTopicAuth) append(dst []byte, what string, typ uint16, minimal bool) ([]byte, error) {
	e := oldNewEncoder(dst, what, typ, minimal, len(oldTopicAuthHeaders))
	e.bytes(hTopic, m.Topic)
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	return e.finish(dst)
}

func oldParseTopicAuth(d *decoder, what string) (oldTopicAuth, error) {
	d.what = what
	var m oldTopicAuth
	h, err := d.readHeaders(oldTopicAuthHeaders)
	if err != nil {
		return m, err
	}
	if m.Topic, err = h.bytes(hTopic); err != nil {
		return oldTopicAuth{}, err
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return oldTopicAuth{}, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return oldTopicAuth{}, err
	}
	return m, nil
}

func (m oldGlobAuth) append(dst []byte, what string, typ uint16, minimal bool) ([]byte, error) {
	e := oldNewEncoder(dst, what, typ, minimal, len(oldGlobAuthHeaders))
	e.text(hGlob, m.Glob)
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	return e.finish(dst)
}

func oldParseGlobAuth(d *decoder, what string) (oldGlobAuth, error) {
	d.what = what
	var m oldGlobAuth
	h, err := d.readHeaders(oldGlobAuthHeaders)
	if err != nil {
		return m, err
	}
	if m.Glob, err = h.text(hGlob); err != nil {
		return oldGlobAuth{}, err
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return oldGlobAuth{}, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return oldGlobAuth{}, err
	}
	return m, nil
}

func oldAppendConfirmNotify(m ConfirmNotify, dst []byte, minimal bool) ([]byte, error) {
	e := oldNewEncoder(dst, "confirm notify", B2SConfirmNotify, minimal, len(oldConfirmNotifyHeaders))
	e.identifier(hIdentifier, m.Identifier)
	e.uint(hSubscribers, m.Subscribers)
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	return e.finish(dst)
}

func oldParseConfirmNotify(d *decoder) (any, error) {
	d.what = "confirm notify"
	h, err := d.readHeaders(oldConfirmNotifyHeaders)
	if err != nil {
		return nil, err
	}
	var m ConfirmNotify
	if m.Identifier, err = h.identifier(hIdentifier); err != nil {
		return nil, err
	}
	if m.Subscribers, err = h.uint(hSubscribers, 8); err != nil {
		return nil, err
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return nil, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return nil, err
	}
	return m, nil
}

func oldAppendEnableZstdCustom(m EnableZstdCustom, dst []byte, minimal bool) ([]byte, error) {
	s := oldZstdSettings{m.Identifier, m.CompressionLevel, m.MinSize, m.MaxSize, m.Authorization, m.Tracing}
	return s.append(dst, "enable zstd custom", B2SEnableZstdCustom, minimal, &m)
}

// append writes the settings headers and, for ENABLE_ZSTD_CUSTOM (custom !=
// nil), the x-sha512 header and the dictionary.
func (m oldZstdSettings) append(dst []byte, what string, typ uint16, minimal bool, custom *EnableZstdCustom) ([]byte, error) {
	names := oldEnableZstdPresetHeaders
	if custom != nil {
		names = oldEnableZstdCustomHeaders
	}
	e := oldNewEncoder(dst, what, typ, minimal, len(names))
	e.uint(hIdentifier, m.Identifier)
	e.fixed(hCompressionLevel, uint64(uint16(m.CompressionLevel)), 2)
	e.uint(hMinSize, uint64(m.MinSize))
	e.uint(hMaxSize, m.MaxSize)
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	if custom != nil {
		e.bytes(hSHA512, custom.SHA512[:])
		e.payload(custom.Dictionary)
	}
	return e.finish(dst)
}

func oldParseZstdSettings(h *headers) (oldZstdSettings, error) {
	var m oldZstdSettings
	var err error
	if m.Identifier, err = h.uint(hIdentifier, 8); err != nil {
		return oldZstdSettings{}, err
	}
	// Signed, at most 2 bytes, sign-extended from its own width (a one-byte
	// ff is -1), as the reference's int.from_bytes(signed=True).
	level, err := h.raw(hCompressionLevel)
	if err != nil {
		return oldZstdSettings{}, err
	}
	switch len(level) {
	case 0:
	case 1:
		m.CompressionLevel = int16(int8(level[0]))
	case 2:
		m.CompressionLevel = int16(uint16(level[0])<<8 | uint16(level[1]))
	default:
		return oldZstdSettings{}, h.bad(hCompressionLevel, "is %d bytes, at most 2 allowed", len(level))
	}
	minSize, err := h.uint(hMinSize, 4)
	if err != nil {
		return oldZstdSettings{}, err
	}
	m.MinSize = uint32(minSize)
	if m.MaxSize, err = h.uint(hMaxSize, 8); err != nil {
		return oldZstdSettings{}, err
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return oldZstdSettings{}, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return oldZstdSettings{}, err
	}
	return m, nil
}

func oldParseEnableZstdPreset(d *decoder) (any, error) {
	d.what = "enable zstd preset"
	h, err := d.readHeaders(oldEnableZstdPresetHeaders)
	if err != nil {
		return nil, err
	}
	s, err := oldParseZstdSettings(h)
	if err != nil {
		return nil, err
	}
	return EnableZstdPreset(s), nil
}

func oldParseEnableZstdCustom(d *decoder) (any, error) {
	d.what = "enable zstd custom"
	h, err := d.readHeaders(oldEnableZstdCustomHeaders)
	if err != nil {
		return nil, err
	}
	s, err := oldParseZstdSettings(h)
	if err != nil {
		return nil, err
	}
	m := EnableZstdCustom{
		Identifier:       s.Identifier,
		CompressionLevel: s.CompressionLevel,
		MinSize:          s.MinSize,
		MaxSize:          s.MaxSize,
		Authorization:    s.Authorization,
		Tracing:          s.Tracing,
	}
	if err = h.exact(hSHA512, m.SHA512[:]); err != nil {
		return nil, err
	}
	m.Dictionary = d.payload()
	return m, nil
}

func oldAppendDisableZstdCustom(m DisableZstdCustom, dst []byte, minimal bool) ([]byte, error) {
	e := oldNewEncoder(dst, "disable zstd custom", B2SDisableZstdCustom, minimal, len(oldDisableZstdHeaders))
	e.uint(hIdentifier, m.Identifier)
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	return e.finish(dst)
}

func oldParseDisableZstdCustom(d *decoder) (any, error) {
	d.what = "disable zstd custom"
	h, err := d.readHeaders(oldDisableZstdHeaders)
	if err != nil {
		return nil, err
	}
	var m DisableZstdCustom
	if m.Identifier, err = h.uint(hIdentifier, 8); err != nil {
		return nil, err
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return nil, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return nil, err
	}
	return m, nil
}

// oldEncoder appends one message and remembers the first error, so encoding
// methods read as a list of headers.
type oldEncoder struct {
	what    string
	minimal bool
	b       []byte
	err     error
}

// oldNewEncoder writes the flags, the type and, in expanded form, the count of
// headers that will follow.
func oldNewEncoder(dst []byte, what string, typ uint16, minimal bool, count int) *oldEncoder {
	var flags uint16
	if minimal {
		flags = FlagMinimalHeaders
	}
	dst = binary.BigEndian.AppendUint16(dst, flags)
	dst = binary.BigEndian.AppendUint16(dst, typ)
	if !minimal {
		dst = binary.BigEndian.AppendUint16(dst, uint16(count))
	}
	return &oldEncoder{what: what, minimal: minimal, b: dst}
}

func (e *oldEncoder) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

func (e *oldEncoder) bad(name, format string, args ...any) {
	e.fail(fmt.Errorf("%s: %s %s: %w", e.what, name, fmt.Sprintf(format, args...), ErrHeader))
}

// head writes the name (expanded form) and the length of a value of n bytes;
// the caller appends the value.
func (e *oldEncoder) head(name string, n int) bool {
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
	return true
}

func (e *oldEncoder) bytes(name string, v []byte) {
	if e.head(name, len(v)) {
		e.b = append(e.b, v...)
	}
}

func (e *oldEncoder) text(name, s string) {
	if e.err == nil && !utf8.ValidString(s) {
		e.fail(fmt.Errorf("%s: %s is not valid UTF-8: %w", e.what, name, ErrInvalidUTF8))
	}
	if e.head(name, len(s)) {
		e.b = append(e.b, s...)
	}
}

func (e *oldEncoder) identifier(name string, v []byte) {
	if len(v) > MaxIdentifier {
		e.bad(name, "is %d bytes, at most %d allowed", len(v), MaxIdentifier)
	}
	e.bytes(name, v)
}

// uint writes v in minimal form (0 is an empty value).
func (e *oldEncoder) uint(name string, v uint64) {
	if e.head(name, minimalLen(v)) {
		e.b = appendMinimalUnsigned(e.b, v)
	}
}

// uintOrZeroByte writes v in minimal form except that 0 is one 00 byte, as
// the reference writes part id 0 of a stream's first part and compressor 0.
func (e *oldEncoder) uintOrZeroByte(name string, v uint64) {
	if v == 0 {
		e.bytes(name, []byte{0})
		return
	}
	e.uint(name, v)
}

// fixed writes the low width bytes of v, big-endian.
func (e *oldEncoder) fixed(name string, v uint64, width int) {
	if e.head(name, width) {
		for i := width - 1; i >= 0; i-- {
			e.b = append(e.b, byte(v>>(8*i)))
		}
	}
}

func (e *oldEncoder) payload(p []byte) {
	if e.err == nil {
		e.b = append(e.b, p...)
	}
}

// finish returns the appended bytes, or the caller's original dst on error so
// a failed append never leaves half a message behind.
func (e *oldEncoder) finish(orig []byte) ([]byte, error) {
	if e.err != nil {
		return orig, e.err
	}
	return e.b, nil
}

// oldAppend encodes m with the old encoders.
func oldAppend(m Message, minimal bool) ([]byte, error) {
	switch m := m.(type) {
	case Configure:
		return oldAppendConfigure(m, nil, minimal)
	case SubscribeExact:
		return oldAuthTopic(m).append(nil, "subscribe exact", S2BSubscribeExact, minimal)
	case SubscribeGlob:
		return oldAuthGlob(m).append(nil, "subscribe glob", S2BSubscribeGlob, minimal)
	case UnsubscribeExact:
		return oldAuthTopic(m).append(nil, "unsubscribe exact", S2BUnsubscribeExact, minimal)
	case UnsubscribeGlob:
		return oldAuthGlob(m).append(nil, "unsubscribe glob", S2BUnsubscribeGlob, minimal)
	case Notify:
		return oldAppendNotify(m, nil, minimal)
	case NotifyStream:
		return oldStream(m).append(nil, "notify stream", S2BNotifyStream, minimal)
	case ContinueReceive:
		return oldIdentPart(m).append(nil, "continue receive", S2BContinueReceive, minimal)
	case ConfirmReceive:
		return oldAppendConfirmReceive(m, nil, minimal)
	case ConfirmConfigure:
		return oldAppendConfirmConfigure(m, nil, minimal)
	case ConfirmSubscribeExact:
		return oldTopicAuth(m).append(nil, "confirm subscribe exact", B2SConfirmSubscribeExact, minimal)
	case ConfirmSubscribeGlob:
		return oldGlobAuth(m).append(nil, "confirm subscribe glob", B2SConfirmSubscribeGlob, minimal)
	case ConfirmUnsubscribeExact:
		return oldTopicAuth(m).append(nil, "confirm unsubscribe exact", B2SConfirmUnsubscribeExact, minimal)
	case ConfirmUnsubscribeGlob:
		return oldGlobAuth(m).append(nil, "confirm unsubscribe glob", B2SConfirmUnsubscribeGlob, minimal)
	case ConfirmNotify:
		return oldAppendConfirmNotify(m, nil, minimal)
	case ContinueNotify:
		return oldIdentPart(m).append(nil, "continue notify", B2SContinueNotify, minimal)
	case ReceiveStream:
		return oldStream(m).append(nil, "receive stream", B2SReceiveStream, minimal)
	case EnableZstdPreset:
		return oldZstdSettings(m).append(nil, "enable zstd preset", B2SEnableZstdPreset, minimal, nil)
	case EnableZstdCustom:
		return oldAppendEnableZstdCustom(m, nil, minimal)
	case DisableZstdCustom:
		return oldAppendDisableZstdCustom(m, nil, minimal)
	case Missed:
		return oldAuthTopic(m).append(nil, "missed", B2SMissed, minimal)
	}
	return nil, fmt.Errorf("no old encoder for %T", m)
}

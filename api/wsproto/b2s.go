package wsproto

// Header layouts (minimal-form order) of the broadcaster-to-subscriber
// messages not shared with the other direction.
var (
	confirmConfigureHeaders = []string{hBroadcasterNonce, hAuthorization, hTracing}
	topicAuthHeaders        = []string{hTopic, hAuthorization, hTracing}
	globAuthHeaders         = []string{hGlob, hAuthorization, hTracing}
	confirmNotifyHeaders    = []string{hIdentifier, hSubscribers, hAuthorization, hTracing}
	enableZstdPresetHeaders = []string{hIdentifier, hCompressionLevel, hMinSize, hMaxSize, hAuthorization, hTracing}
	enableZstdCustomHeaders = []string{hIdentifier, hCompressionLevel, hMinSize, hMaxSize, hAuthorization, hTracing, hSHA512}
	disableZstdHeaders      = []string{hIdentifier, hAuthorization, hTracing}
)

// ConfirmConfigure (B2S type 1) answers Configure.
type ConfirmConfigure struct {
	BroadcasterNonce [NonceSize]byte
	Authorization    string
	Tracing          []byte
}

// ConfirmSubscribeExact (B2S type 2) answers SubscribeExact.
type ConfirmSubscribeExact struct {
	Topic         []byte
	Authorization string
	Tracing       []byte
}

// ConfirmSubscribeGlob (B2S type 3) answers SubscribeGlob.
type ConfirmSubscribeGlob struct {
	Glob          string
	Authorization string
	Tracing       []byte
}

// ConfirmUnsubscribeExact (B2S type 4) answers UnsubscribeExact.
type ConfirmUnsubscribeExact struct {
	Topic         []byte
	Authorization string
	Tracing       []byte
}

// ConfirmUnsubscribeGlob (B2S type 5) answers UnsubscribeGlob.
type ConfirmUnsubscribeGlob struct {
	Glob          string
	Authorization string
	Tracing       []byte
}

// ConfirmNotify (B2S type 6) answers Notify and the last part of a
// NotifyStream. Subscribers 0 is an empty value.
type ConfirmNotify struct {
	Identifier    []byte // at most MaxIdentifier bytes
	Subscribers   uint64
	Authorization string
	Tracing       []byte
}

// ContinueNotify (B2S type 7) acknowledges the non-final NotifyStream part
// PartID. Part id 0 is an empty value here.
type ContinueNotify struct {
	Identifier    []byte // at most MaxIdentifier bytes
	PartID        uint64
	Authorization string
	Tracing       []byte
}

// ReceiveStream (B2S type 8) is one part of a message delivered to the
// subscriber; same layout as NotifyStream. First is non-nil exactly when
// PartID is 0.
type ReceiveStream struct {
	Authorization string
	Tracing       []byte
	Identifier    []byte // at most MaxIdentifier bytes
	PartID        uint64
	First         *StreamFirst
	Payload       []byte // this part's bytes; aliases the parsed buffer
}

// EnableZstdPreset (B2S type 9) announces a zstd compressor known to both
// sides: Identifier 1 is zstd without a dictionary, 2..65535 are preset
// dictionaries. It may be used for messages with MinSize <= length < MaxSize
// (MaxSize 2^64-1 = unbounded). CompressionLevel is written as 2 fixed
// bytes, signed. The identifier range is not checked here: it is a rule for
// the receiver, and the reference parser does not check it either.
type EnableZstdPreset struct {
	Identifier       uint64
	CompressionLevel int16
	MinSize          uint32
	MaxSize          uint64
	Authorization    string
	Tracing          []byte
}

// EnableZstdCustom (B2S type 10) announces a dictionary trained on this
// connection (Identifier >= 65536 by convention, not checked). Dictionary is
// the payload; SHA512 is its claimed hash, which the parser does not verify
// (as in the reference): the receiver does, if it cares.
type EnableZstdCustom struct {
	Identifier       uint64
	CompressionLevel int16
	MinSize          uint32
	MaxSize          uint64
	Authorization    string
	Tracing          []byte
	SHA512           [64]byte
	Dictionary       []byte // aliases the parsed buffer
}

// DisableZstdCustom (B2S type 11) withdraws a custom dictionary.
type DisableZstdCustom struct {
	Identifier    uint64
	Authorization string
	Tracing       []byte
}

// Missed (B2S type 12) tells the subscriber it may have missed messages on
// Topic.
type Missed struct {
	Authorization string
	Tracing       []byte
	Topic         []byte
}

type (
	topicAuth struct {
		Topic         []byte
		Authorization string
		Tracing       []byte
	}
	globAuth struct {
		Glob          string
		Authorization string
		Tracing       []byte
	}
	// zstdSettings is what ENABLE_ZSTD_PRESET and ENABLE_ZSTD_CUSTOM share.
	zstdSettings struct {
		Identifier       uint64
		CompressionLevel int16
		MinSize          uint32
		MaxSize          uint64
		Authorization    string
		Tracing          []byte
	}
)

// AppendMinimal appends the message with minimal headers.
func (m ConfirmConfigure) AppendMinimal(dst []byte) ([]byte, error) { return m.append(dst, true) }

// AppendExpanded appends the message with expanded headers.
func (m ConfirmConfigure) AppendExpanded(dst []byte) ([]byte, error) { return m.append(dst, false) }

func (m ConfirmConfigure) append(dst []byte, minimal bool) ([]byte, error) {
	e := newEncoder(dst, "confirm configure", B2SConfirmConfigure, minimal, len(confirmConfigureHeaders))
	e.bytes(hBroadcasterNonce, m.BroadcasterNonce[:])
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	return e.finish(dst)
}

func parseConfirmConfigure(d *decoder) (any, error) {
	d.what = "confirm configure"
	h, err := d.readHeaders(confirmConfigureHeaders)
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

// AppendMinimal appends the message with minimal headers.
func (m ConfirmSubscribeExact) AppendMinimal(dst []byte) ([]byte, error) {
	return topicAuth(m).append(dst, "confirm subscribe exact", B2SConfirmSubscribeExact, true)
}

// AppendExpanded appends the message with expanded headers.
func (m ConfirmSubscribeExact) AppendExpanded(dst []byte) ([]byte, error) {
	return topicAuth(m).append(dst, "confirm subscribe exact", B2SConfirmSubscribeExact, false)
}

// AppendMinimal appends the message with minimal headers.
func (m ConfirmSubscribeGlob) AppendMinimal(dst []byte) ([]byte, error) {
	return globAuth(m).append(dst, "confirm subscribe glob", B2SConfirmSubscribeGlob, true)
}

// AppendExpanded appends the message with expanded headers.
func (m ConfirmSubscribeGlob) AppendExpanded(dst []byte) ([]byte, error) {
	return globAuth(m).append(dst, "confirm subscribe glob", B2SConfirmSubscribeGlob, false)
}

// AppendMinimal appends the message with minimal headers.
func (m ConfirmUnsubscribeExact) AppendMinimal(dst []byte) ([]byte, error) {
	return topicAuth(m).append(dst, "confirm unsubscribe exact", B2SConfirmUnsubscribeExact, true)
}

// AppendExpanded appends the message with expanded headers.
func (m ConfirmUnsubscribeExact) AppendExpanded(dst []byte) ([]byte, error) {
	return topicAuth(m).append(dst, "confirm unsubscribe exact", B2SConfirmUnsubscribeExact, false)
}

// AppendMinimal appends the message with minimal headers.
func (m ConfirmUnsubscribeGlob) AppendMinimal(dst []byte) ([]byte, error) {
	return globAuth(m).append(dst, "confirm unsubscribe glob", B2SConfirmUnsubscribeGlob, true)
}

// AppendExpanded appends the message with expanded headers.
func (m ConfirmUnsubscribeGlob) AppendExpanded(dst []byte) ([]byte, error) {
	return globAuth(m).append(dst, "confirm unsubscribe glob", B2SConfirmUnsubscribeGlob, false)
}

func (m topicAuth) append(dst []byte, what string, typ uint16, minimal bool) ([]byte, error) {
	e := newEncoder(dst, what, typ, minimal, len(topicAuthHeaders))
	e.bytes(hTopic, m.Topic)
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	return e.finish(dst)
}

func parseTopicAuth(d *decoder, what string) (topicAuth, error) {
	d.what = what
	var m topicAuth
	h, err := d.readHeaders(topicAuthHeaders)
	if err != nil {
		return m, err
	}
	if m.Topic, err = h.bytes(hTopic); err != nil {
		return topicAuth{}, err
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return topicAuth{}, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return topicAuth{}, err
	}
	return m, nil
}

func (m globAuth) append(dst []byte, what string, typ uint16, minimal bool) ([]byte, error) {
	e := newEncoder(dst, what, typ, minimal, len(globAuthHeaders))
	e.text(hGlob, m.Glob)
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	return e.finish(dst)
}

func parseGlobAuth(d *decoder, what string) (globAuth, error) {
	d.what = what
	var m globAuth
	h, err := d.readHeaders(globAuthHeaders)
	if err != nil {
		return m, err
	}
	if m.Glob, err = h.text(hGlob); err != nil {
		return globAuth{}, err
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return globAuth{}, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return globAuth{}, err
	}
	return m, nil
}

// AppendMinimal appends the message with minimal headers.
func (m ConfirmNotify) AppendMinimal(dst []byte) ([]byte, error) { return m.append(dst, true) }

// AppendExpanded appends the message with expanded headers.
func (m ConfirmNotify) AppendExpanded(dst []byte) ([]byte, error) { return m.append(dst, false) }

func (m ConfirmNotify) append(dst []byte, minimal bool) ([]byte, error) {
	e := newEncoder(dst, "confirm notify", B2SConfirmNotify, minimal, len(confirmNotifyHeaders))
	e.identifier(hIdentifier, m.Identifier)
	e.uint(hSubscribers, m.Subscribers)
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	return e.finish(dst)
}

func parseConfirmNotify(d *decoder) (any, error) {
	d.what = "confirm notify"
	h, err := d.readHeaders(confirmNotifyHeaders)
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

// AppendMinimal appends the message with minimal headers.
func (m ContinueNotify) AppendMinimal(dst []byte) ([]byte, error) {
	return identPart(m).append(dst, "continue notify", B2SContinueNotify, true)
}

// AppendExpanded appends the message with expanded headers.
func (m ContinueNotify) AppendExpanded(dst []byte) ([]byte, error) {
	return identPart(m).append(dst, "continue notify", B2SContinueNotify, false)
}

// AppendMinimal appends the message with minimal headers.
func (m ReceiveStream) AppendMinimal(dst []byte) ([]byte, error) {
	return stream(m).append(dst, "receive stream", B2SReceiveStream, true)
}

// AppendExpanded appends the message with expanded headers.
func (m ReceiveStream) AppendExpanded(dst []byte) ([]byte, error) {
	return stream(m).append(dst, "receive stream", B2SReceiveStream, false)
}

// AppendMinimal appends the message with minimal headers.
func (m EnableZstdPreset) AppendMinimal(dst []byte) ([]byte, error) {
	return zstdSettings(m).append(dst, "enable zstd preset", B2SEnableZstdPreset, true, nil)
}

// AppendExpanded appends the message with expanded headers.
func (m EnableZstdPreset) AppendExpanded(dst []byte) ([]byte, error) {
	return zstdSettings(m).append(dst, "enable zstd preset", B2SEnableZstdPreset, false, nil)
}

// AppendMinimal appends the message with minimal headers.
func (m EnableZstdCustom) AppendMinimal(dst []byte) ([]byte, error) { return m.append(dst, true) }

// AppendExpanded appends the message with expanded headers.
func (m EnableZstdCustom) AppendExpanded(dst []byte) ([]byte, error) { return m.append(dst, false) }

func (m EnableZstdCustom) append(dst []byte, minimal bool) ([]byte, error) {
	s := zstdSettings{m.Identifier, m.CompressionLevel, m.MinSize, m.MaxSize, m.Authorization, m.Tracing}
	return s.append(dst, "enable zstd custom", B2SEnableZstdCustom, minimal, &m)
}

// append writes the settings headers and, for ENABLE_ZSTD_CUSTOM (custom !=
// nil), the x-sha512 header and the dictionary.
func (m zstdSettings) append(dst []byte, what string, typ uint16, minimal bool, custom *EnableZstdCustom) ([]byte, error) {
	names := enableZstdPresetHeaders
	if custom != nil {
		names = enableZstdCustomHeaders
	}
	e := newEncoder(dst, what, typ, minimal, len(names))
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

func parseZstdSettings(h *headers) (zstdSettings, error) {
	var m zstdSettings
	var err error
	if m.Identifier, err = h.uint(hIdentifier, 8); err != nil {
		return zstdSettings{}, err
	}
	// Signed, at most 2 bytes, sign-extended from its own width (a one-byte
	// ff is -1), as the reference's int.from_bytes(signed=True).
	level, err := h.raw(hCompressionLevel)
	if err != nil {
		return zstdSettings{}, err
	}
	switch len(level) {
	case 0:
	case 1:
		m.CompressionLevel = int16(int8(level[0]))
	case 2:
		m.CompressionLevel = int16(uint16(level[0])<<8 | uint16(level[1]))
	default:
		return zstdSettings{}, h.bad(hCompressionLevel, "is %d bytes, at most 2 allowed", len(level))
	}
	minSize, err := h.uint(hMinSize, 4)
	if err != nil {
		return zstdSettings{}, err
	}
	m.MinSize = uint32(minSize)
	if m.MaxSize, err = h.uint(hMaxSize, 8); err != nil {
		return zstdSettings{}, err
	}
	if m.Authorization, err = h.text(hAuthorization); err != nil {
		return zstdSettings{}, err
	}
	if m.Tracing, err = h.bytes(hTracing); err != nil {
		return zstdSettings{}, err
	}
	return m, nil
}

func parseEnableZstdPreset(d *decoder) (any, error) {
	d.what = "enable zstd preset"
	h, err := d.readHeaders(enableZstdPresetHeaders)
	if err != nil {
		return nil, err
	}
	s, err := parseZstdSettings(h)
	if err != nil {
		return nil, err
	}
	return EnableZstdPreset(s), nil
}

func parseEnableZstdCustom(d *decoder) (any, error) {
	d.what = "enable zstd custom"
	h, err := d.readHeaders(enableZstdCustomHeaders)
	if err != nil {
		return nil, err
	}
	s, err := parseZstdSettings(h)
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

// AppendMinimal appends the message with minimal headers.
func (m DisableZstdCustom) AppendMinimal(dst []byte) ([]byte, error) { return m.append(dst, true) }

// AppendExpanded appends the message with expanded headers.
func (m DisableZstdCustom) AppendExpanded(dst []byte) ([]byte, error) { return m.append(dst, false) }

func (m DisableZstdCustom) append(dst []byte, minimal bool) ([]byte, error) {
	e := newEncoder(dst, "disable zstd custom", B2SDisableZstdCustom, minimal, len(disableZstdHeaders))
	e.uint(hIdentifier, m.Identifier)
	e.text(hAuthorization, m.Authorization)
	e.bytes(hTracing, m.Tracing)
	return e.finish(dst)
}

func parseDisableZstdCustom(d *decoder) (any, error) {
	d.what = "disable zstd custom"
	h, err := d.readHeaders(disableZstdHeaders)
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

// AppendMinimal appends the message with minimal headers.
func (m Missed) AppendMinimal(dst []byte) ([]byte, error) {
	return authTopic(m).append(dst, "missed", B2SMissed, true)
}

// AppendExpanded appends the message with expanded headers.
func (m Missed) AppendExpanded(dst []byte) ([]byte, error) {
	return authTopic(m).append(dst, "missed", B2SMissed, false)
}

// Every message type is a Message.
var (
	_ Message = Configure{}
	_ Message = SubscribeExact{}
	_ Message = SubscribeGlob{}
	_ Message = UnsubscribeExact{}
	_ Message = UnsubscribeGlob{}
	_ Message = Notify{}
	_ Message = NotifyStream{}
	_ Message = ContinueReceive{}
	_ Message = ConfirmReceive{}
	_ Message = ConfirmConfigure{}
	_ Message = ConfirmSubscribeExact{}
	_ Message = ConfirmSubscribeGlob{}
	_ Message = ConfirmUnsubscribeExact{}
	_ Message = ConfirmUnsubscribeGlob{}
	_ Message = ConfirmNotify{}
	_ Message = ContinueNotify{}
	_ Message = ReceiveStream{}
	_ Message = EnableZstdPreset{}
	_ Message = EnableZstdCustom{}
	_ Message = DisableZstdCustom{}
	_ Message = Missed{}
)

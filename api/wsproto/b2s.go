package wsproto

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
type ConfirmUnsubscribeExact ConfirmSubscribeExact

// ConfirmUnsubscribeGlob (B2S type 5) answers UnsubscribeGlob.
type ConfirmUnsubscribeGlob ConfirmSubscribeGlob

// ConfirmNotify (B2S type 6) answers Notify and the last part of a
// NotifyStream. Subscribers 0 is an empty value.
type ConfirmNotify struct {
	Identifier    []byte // at most MaxIdentifier bytes
	Subscribers   uint64
	Authorization string
	Tracing       []byte
}

// ContinueNotify (B2S type 7) acknowledges the non-final NotifyStream part
// PartID, laid out as ContinueReceive. Part id 0 is an empty value here.
type ContinueNotify ContinueReceive

// ReceiveStream (B2S type 8) is one part of a message delivered to the
// subscriber, laid out as NotifyStream. First is non-nil exactly when
// PartID is 0.
type ReceiveStream NotifyStream

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

// The broadcaster-to-subscriber message types.
var (
	confirmConfigureSpec        = newSpec("confirm configure", B2SConfirmConfigure, &ConfirmConfigure{})
	confirmSubscribeExactSpec   = newSpec("confirm subscribe exact", B2SConfirmSubscribeExact, &ConfirmSubscribeExact{})
	confirmSubscribeGlobSpec    = newSpec("confirm subscribe glob", B2SConfirmSubscribeGlob, &ConfirmSubscribeGlob{})
	confirmUnsubscribeExactSpec = newSpec("confirm unsubscribe exact", B2SConfirmUnsubscribeExact, &ConfirmUnsubscribeExact{})
	confirmUnsubscribeGlobSpec  = newSpec("confirm unsubscribe glob", B2SConfirmUnsubscribeGlob, &ConfirmUnsubscribeGlob{})
	confirmNotifySpec           = newSpec("confirm notify", B2SConfirmNotify, &ConfirmNotify{})
	continueNotifySpec          = newSpec("continue notify", B2SContinueNotify, &ContinueNotify{})
	receiveStreamSpec           = newSpec("receive stream", B2SReceiveStream, &ReceiveStream{First: &StreamFirst{}})
	enableZstdPresetSpec        = newSpec("enable zstd preset", B2SEnableZstdPreset, &EnableZstdPreset{})
	enableZstdCustomSpec        = newSpec("enable zstd custom", B2SEnableZstdCustom, &EnableZstdCustom{})
	disableZstdCustomSpec       = newSpec("disable zstd custom", B2SDisableZstdCustom, &DisableZstdCustom{})
	missedSpec                  = newSpec("missed", B2SMissed, &Missed{})
)

func (m *ConfirmConfigure) layout(f fields) {
	f.exact(hBroadcasterNonce, m.BroadcasterNonce[:])
	authTracing(f, &m.Authorization, &m.Tracing)
}

func (m *ConfirmSubscribeExact) layout(f fields) {
	f.bytes(hTopic, &m.Topic)
	authTracing(f, &m.Authorization, &m.Tracing)
}

func (m *ConfirmSubscribeGlob) layout(f fields) {
	f.text(hGlob, &m.Glob)
	authTracing(f, &m.Authorization, &m.Tracing)
}

func (m *ConfirmUnsubscribeExact) layout(f fields) { (*ConfirmSubscribeExact)(m).layout(f) }
func (m *ConfirmUnsubscribeGlob) layout(f fields)  { (*ConfirmSubscribeGlob)(m).layout(f) }

func (m *ConfirmNotify) layout(f fields) {
	f.identifier(hIdentifier, &m.Identifier)
	f.uint(hSubscribers, &m.Subscribers)
	authTracing(f, &m.Authorization, &m.Tracing)
}

func (m *ContinueNotify) layout(f fields)        { (*ContinueReceive)(m).layout(f) }
func (m *ReceiveStream) layout(f fields)         { (*NotifyStream)(m).layout(f) }
func (m *ReceiveStream) check(what string) error { return (*NotifyStream)(m).check(what) }

// zstdLayout lists the headers ENABLE_ZSTD_PRESET and ENABLE_ZSTD_CUSTOM
// share.
func zstdLayout(f fields, id *uint64, level *int16, minSize *uint32, maxSize *uint64, authz *string, tracing *[]byte) {
	f.uint(hIdentifier, id)
	f.level(hCompressionLevel, level)
	f.uint32(hMinSize, minSize)
	f.uint(hMaxSize, maxSize)
	authTracing(f, authz, tracing)
}

func (m *EnableZstdPreset) layout(f fields) {
	zstdLayout(f, &m.Identifier, &m.CompressionLevel, &m.MinSize, &m.MaxSize, &m.Authorization, &m.Tracing)
}

func (m *EnableZstdCustom) layout(f fields) {
	zstdLayout(f, &m.Identifier, &m.CompressionLevel, &m.MinSize, &m.MaxSize, &m.Authorization, &m.Tracing)
	f.exact(hSHA512, m.SHA512[:])
	f.payload(&m.Dictionary)
}

func (m *DisableZstdCustom) layout(f fields) {
	f.uint(hIdentifier, &m.Identifier)
	authTracing(f, &m.Authorization, &m.Tracing)
}

func (m *Missed) layout(f fields) { (*SubscribeExact)(m).layout(f) }

// encoding makes every message type a Message.
func (m ConfirmConfigure) encoding() (*spec, layout)        { return &confirmConfigureSpec, &m }
func (m ConfirmSubscribeExact) encoding() (*spec, layout)   { return &confirmSubscribeExactSpec, &m }
func (m ConfirmSubscribeGlob) encoding() (*spec, layout)    { return &confirmSubscribeGlobSpec, &m }
func (m ConfirmUnsubscribeExact) encoding() (*spec, layout) { return &confirmUnsubscribeExactSpec, &m }
func (m ConfirmUnsubscribeGlob) encoding() (*spec, layout)  { return &confirmUnsubscribeGlobSpec, &m }
func (m ConfirmNotify) encoding() (*spec, layout)           { return &confirmNotifySpec, &m }
func (m ContinueNotify) encoding() (*spec, layout)          { return &continueNotifySpec, &m }
func (m ReceiveStream) encoding() (*spec, layout)           { return &receiveStreamSpec, &m }
func (m EnableZstdPreset) encoding() (*spec, layout)        { return &enableZstdPresetSpec, &m }
func (m EnableZstdCustom) encoding() (*spec, layout)        { return &enableZstdCustomSpec, &m }
func (m DisableZstdCustom) encoding() (*spec, layout)       { return &disableZstdCustomSpec, &m }
func (m Missed) encoding() (*spec, layout)                  { return &missedSpec, &m }

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

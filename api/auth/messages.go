package auth

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Kind is the AuthMessageType byte that starts every HMAC to_sign. The
// values are part of the protocol.
type Kind uint8

// The 21 AuthMessageType values (the reference vector "hmac_auth_message_type_values").
const (
	KindSubscribeExact             Kind = 1
	KindSubscribeGlob              Kind = 2
	KindNotify                     Kind = 3
	KindStatefulConfigure          Kind = 4
	KindCheckSubscriptions         Kind = 5
	KindSetSubscriptions           Kind = 6
	KindStatefulContinueReceive    Kind = 7
	KindConfirmReceive             Kind = 8
	KindConfirmMissed              Kind = 9
	KindReceive                    Kind = 10
	KindMissed                     Kind = 11
	KindConfirmSubscribeExact      Kind = 12
	KindConfirmSubscribeGlob       Kind = 13
	KindConfirmNotify              Kind = 14
	KindCheckSubscriptionsResponse Kind = 15
	KindSetSubscriptionsResponse   Kind = 16
	KindStatefulConfirmConfigure   Kind = 17
	KindStatefulEnableZstdPreset   Kind = 18
	KindStatefulEnableZstdCustom   Kind = 19
	KindStatefulDisableZstdCustom  Kind = 20
	KindStatefulContinueNotify     Kind = 21
)

// kinds holds each kind's reference enum name and whose secret signs it.
var kinds = [...]struct {
	name string
	dir  Direction
}{
	KindSubscribeExact:             {"SUBSCRIBE_EXACT", ToBroadcaster},
	KindSubscribeGlob:              {"SUBSCRIBE_GLOB", ToBroadcaster},
	KindNotify:                     {"NOTIFY", ToBroadcaster},
	KindStatefulConfigure:          {"STATEFUL_CONFIGURE", ToBroadcaster},
	KindCheckSubscriptions:         {"CHECK_SUBSCRIPTIONS", ToBroadcaster},
	KindSetSubscriptions:           {"SET_SUBSCRIPTIONS", ToBroadcaster},
	KindStatefulContinueReceive:    {"STATEFUL_CONTINUE_RECEIVE", ToBroadcaster},
	KindConfirmReceive:             {"CONFIRM_RECEIVE", ToBroadcaster},
	KindConfirmMissed:              {"CONFIRM_MISSED", ToBroadcaster},
	KindReceive:                    {"RECEIVE", ToSubscriber},
	KindMissed:                     {"MISSED", ToSubscriber},
	KindConfirmSubscribeExact:      {"CONFIRM_SUBSCRIBE_EXACT", ToSubscriber},
	KindConfirmSubscribeGlob:       {"CONFIRM_SUBSCRIBE_GLOB", ToSubscriber},
	KindConfirmNotify:              {"CONFIRM_NOTIFY", ToSubscriber},
	KindCheckSubscriptionsResponse: {"CHECK_SUBSCRIPTIONS_RESPONSE", ToSubscriber},
	KindSetSubscriptionsResponse:   {"SET_SUBSCRIPTIONS_RESPONSE", ToSubscriber},
	KindStatefulConfirmConfigure:   {"STATEFUL_CONFIRM_CONFIGURE", ToSubscriber},
	KindStatefulEnableZstdPreset:   {"STATEFUL_ENABLE_ZSTD_PRESET", ToSubscriber},
	KindStatefulEnableZstdCustom:   {"STATEFUL_ENABLE_ZSTD_CUSTOM", ToSubscriber},
	KindStatefulDisableZstdCustom:  {"STATEFUL_DISABLE_ZSTD_CUSTOM", ToSubscriber},
	KindStatefulContinueNotify:     {"STATEFUL_CONTINUE_NOTIFY", ToSubscriber},
}

// String is the reference's enum name, for logs.
func (k Kind) String() string {
	if int(k) < len(kinds) && kinds[k].name != "" {
		return kinds[k].name
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Direction says whose secret signs messages of this kind; an unknown kind
// is to-broadcaster.
func (k Kind) Direction() Direction {
	if int(k) < len(kinds) && kinds[k].dir != 0 {
		return kinds[k].dir
	}
	return ToBroadcaster
}

// ErrUnsignable is wrapped by the error ToSign (and so Authorize) returns
// for a value the signed layout cannot represent: a field longer than its
// length prefix, a continue_receive part id above 255, a negative
// compression level, a nonce over 255 bytes. The reference cannot sign
// such values either (its int.to_bytes raises), so truncating or wrapping
// them would only produce signatures no peer can check.
var ErrUnsignable = errors.New("value cannot be signed")

// Message is a message that carries an authorization. The set is closed:
// only this package's 21 structs implement it, one per AuthMessageType.
type Message interface {
	// Kind is the AuthMessageType, the first signed byte.
	Kind() Kind
	tracing() []byte
	// appendFields appends the type-specific suffix of to_sign, as append
	// does; it fails f (wrapping ErrUnsignable) only for values the layout
	// cannot hold.
	appendFields(f fields) fields
}

// ToSign returns the exact bytes HMAC-SHA512 is computed over: kind,
// u64 timestamp, u8 nonce length and UTF-8 nonce, u16 tracing length and
// tracing, then the message's own fields. It returns an error wrapping
// ErrUnsignable instead of truncating a value that does not fit.
func ToSign(m Message, timestamp uint64, nonce string) ([]byte, error) {
	if len(nonce) > 255 {
		return nil, fmt.Errorf("auth: nonce of %d bytes: %w", len(nonce), ErrUnsignable)
	}
	tr := m.tracing()
	if len(tr) > 65535 {
		return nil, fmt.Errorf("auth: tracing of %d bytes: %w", len(tr), ErrUnsignable)
	}
	f := fields{b: make([]byte, 0, 160+len(tr))}
	f.u8(byte(m.Kind()))
	f.u64(timestamp)
	f.u8(uint8(len(nonce)))
	f.b = append(f.b, nonce...)
	f.str16(tr)
	f = m.appendFields(f)
	out, err := f.done()
	if err != nil {
		return nil, fmt.Errorf("auth: %s: %w", m.Kind(), err)
	}
	return out, nil
}

// fields accumulates the length-prefixed fields of a message and the
// first error: a field too long for its prefix.
type fields struct {
	b   []byte
	err error
}

func (f *fields) fail(err error) {
	if f.err == nil {
		f.err = err
	}
}

// str16 writes a u16 length then the bytes (urls, topics, globs).
func (f *fields) str16(s []byte) {
	if len(s) > 65535 {
		f.fail(fmt.Errorf("field of %d bytes exceeds 65535: %w", len(s), ErrUnsignable))
	}
	f.b = binary.BigEndian.AppendUint16(f.b, uint16(len(s)))
	f.b = append(f.b, s...)
}

// str8 writes a u8 length then the bytes (identifiers, nonces).
func (f *fields) str8(s []byte) {
	if len(s) > 255 {
		f.fail(fmt.Errorf("field of %d bytes exceeds 255: %w", len(s), ErrUnsignable))
	}
	f.b = append(f.b, byte(len(s)))
	f.b = append(f.b, s...)
}

func (f *fields) u8(v uint8)            { f.b = append(f.b, v) }
func (f *fields) u16(v uint16)          { f.b = binary.BigEndian.AppendUint16(f.b, v) }
func (f *fields) u32(v uint32)          { f.b = binary.BigEndian.AppendUint32(f.b, v) }
func (f *fields) u64(v uint64)          { f.b = binary.BigEndian.AppendUint64(f.b, v) }
func (f *fields) raw(p []byte)          { f.b = append(f.b, p...) }
func (f *fields) done() ([]byte, error) { return f.b, f.err }

// etag writes a strong etag: format byte 0, then the 64 bytes.
func (f *fields) etag(e [64]byte) {
	f.u8(0)
	f.raw(e[:])
}

func boolByte(v bool) uint8 {
	if v {
		return 1
	}
	return 0
}

// SubscribeExact signs subscribe/exact; unsubscribe/exact reuses it with
// an empty Recovery. The reference encodes a missing recovery and an
// empty one identically (length 0), so "" stands for both.
type SubscribeExact struct {
	Tracing  []byte
	URL      string
	Recovery string // "" = none
	Topic    []byte
}

func (SubscribeExact) Kind() Kind        { return KindSubscribeExact }
func (m SubscribeExact) tracing() []byte { return m.Tracing }
func (m SubscribeExact) appendFields(f fields) fields {
	f.str16([]byte(m.URL))
	f.str16([]byte(m.Recovery))
	f.str16(m.Topic)
	return f
}

// SubscribeGlob signs subscribe/glob and unsubscribe/glob.
type SubscribeGlob struct {
	Tracing  []byte
	URL      string
	Recovery string
	Glob     string
}

func (SubscribeGlob) Kind() Kind        { return KindSubscribeGlob }
func (m SubscribeGlob) tracing() []byte { return m.Tracing }
func (m SubscribeGlob) appendFields(f fields) fields {
	f.str16([]byte(m.URL))
	f.str16([]byte(m.Recovery))
	f.str16([]byte(m.Glob))
	return f
}

// Notify signs a notification. SHA512 is of the bytes on the wire: of the
// compressed payload when a websocket NOTIFY names a compressor.
type Notify struct {
	Tracing    []byte
	Topic      []byte
	Identifier []byte
	SHA512     [64]byte
}

func (Notify) Kind() Kind        { return KindNotify }
func (m Notify) tracing() []byte { return m.Tracing }
func (m Notify) appendFields(f fields) fields {
	f.str16(m.Topic)
	f.str8(m.Identifier)
	f.raw(m.SHA512[:])
	return f
}

// StatefulConfigure signs a websocket CONFIGURE. The nonce is signed with
// a one-byte length (always 32) in front.
type StatefulConfigure struct {
	Tracing         []byte
	SubscriberNonce [32]byte
	EnableZstd      bool
	EnableTraining  bool
	InitialDict     uint16
}

func (StatefulConfigure) Kind() Kind        { return KindStatefulConfigure }
func (m StatefulConfigure) tracing() []byte { return m.Tracing }
func (m StatefulConfigure) appendFields(f fields) fields {
	f.str8(m.SubscriberNonce[:])
	f.u8(boolByte(m.EnableZstd))
	f.u8(boolByte(m.EnableTraining))
	f.u16(m.InitialDict)
	return f
}

// CheckSubscriptions signs check_subscriptions.
type CheckSubscriptions struct {
	Tracing []byte
	URL     string
}

func (CheckSubscriptions) Kind() Kind        { return KindCheckSubscriptions }
func (m CheckSubscriptions) tracing() []byte { return m.Tracing }
func (m CheckSubscriptions) appendFields(f fields) fields {
	f.str16([]byte(m.URL))
	return f
}

// SetSubscriptions signs set_subscriptions: the url and the strong etag
// (format byte 0 then 64 bytes) only, not the lists; the broadcaster
// recomputes the etag from the lists to bind them.
type SetSubscriptions struct {
	Tracing []byte
	URL     string
	Etag    [64]byte
}

func (SetSubscriptions) Kind() Kind        { return KindSetSubscriptions }
func (m SetSubscriptions) tracing() []byte { return m.Tracing }
func (m SetSubscriptions) appendFields(f fields) fields {
	f.str16([]byte(m.URL))
	f.etag(m.Etag)
	return f
}

// StatefulContinueReceive signs a websocket CONTINUE_RECEIVE. The
// reference signs the part id as ONE byte (CONTINUE_NOTIFY uses four), so
// a part id above 255 cannot be signed: Authorize returns an error
// wrapping ErrUnsignable and Verify answers Forbidden, rather than
// truncating to a byte, which would let part 256's acknowledgement be
// replayed as part 0's. PartID is wide so callers pass the wire value
// unchanged and this check sees it.
type StatefulContinueReceive struct {
	Tracing    []byte
	Identifier []byte
	PartID     uint64
	URL        string // websocket:<nonce>:<subscriber counter>
}

func (StatefulContinueReceive) Kind() Kind        { return KindStatefulContinueReceive }
func (m StatefulContinueReceive) tracing() []byte { return m.Tracing }
func (m StatefulContinueReceive) appendFields(f fields) fields {
	if m.PartID > 255 {
		f.fail(fmt.Errorf("part id %d does not fit the one signed byte: %w", m.PartID, ErrUnsignable))
	}
	f.str8(m.Identifier)
	f.u8(uint8(m.PartID))
	f.str16([]byte(m.URL))
	return f
}

// ConfirmReceive signs a subscriber's confirmation of a RECEIVE.
type ConfirmReceive struct {
	Tracing        []byte
	Identifier     []byte
	NumSubscribers uint32
	URL            string
}

func (ConfirmReceive) Kind() Kind        { return KindConfirmReceive }
func (m ConfirmReceive) tracing() []byte { return m.Tracing }
func (m ConfirmReceive) appendFields(f fields) fields {
	f.str8(m.Identifier)
	f.u32(m.NumSubscribers)
	f.str16([]byte(m.URL))
	return f
}

// ConfirmMissed signs a subscriber's confirmation of a MISSED; URL is the
// recovery URL.
type ConfirmMissed struct {
	Tracing []byte
	Topic   []byte
	URL     string
}

func (ConfirmMissed) Kind() Kind        { return KindConfirmMissed }
func (m ConfirmMissed) tracing() []byte { return m.Tracing }
func (m ConfirmMissed) appendFields(f fields) fields {
	f.str16(m.Topic)
	f.str16([]byte(m.URL))
	return f
}

// Receive signs a RECEIVE. SHA512 is of the bytes on the wire (compressed
// when compressed). Over HTTP, URL is the stored subscription URL, which
// the subscriber compares with str(request.url): the strings must match
// byte for byte.
type Receive struct {
	Tracing    []byte
	URL        string
	Topic      []byte
	Identifier []byte
	SHA512     [64]byte
}

func (Receive) Kind() Kind        { return KindReceive }
func (m Receive) tracing() []byte { return m.Tracing }
func (m Receive) appendFields(f fields) fields {
	f.str16([]byte(m.URL))
	f.str16(m.Topic)
	f.str8(m.Identifier)
	f.raw(m.SHA512[:])
	return f
}

// Missed signs a MISSED notice.
type Missed struct {
	Tracing  []byte
	Recovery string
	Topic    []byte
}

func (Missed) Kind() Kind        { return KindMissed }
func (m Missed) tracing() []byte { return m.Tracing }
func (m Missed) appendFields(f fields) fields {
	f.str16([]byte(m.Recovery))
	f.str16(m.Topic)
	return f
}

// ConfirmSubscribeExact signs the answer to (un)subscribe/exact.
type ConfirmSubscribeExact struct {
	Tracing  []byte
	URL      string
	Recovery string
	Topic    []byte
}

func (ConfirmSubscribeExact) Kind() Kind        { return KindConfirmSubscribeExact }
func (m ConfirmSubscribeExact) tracing() []byte { return m.Tracing }
func (m ConfirmSubscribeExact) appendFields(f fields) fields {
	return SubscribeExact(m).appendFields(f)
}

// ConfirmSubscribeGlob signs the answer to (un)subscribe/glob.
type ConfirmSubscribeGlob struct {
	Tracing  []byte
	URL      string
	Recovery string
	Glob     string
}

func (ConfirmSubscribeGlob) Kind() Kind        { return KindConfirmSubscribeGlob }
func (m ConfirmSubscribeGlob) tracing() []byte { return m.Tracing }
func (m ConfirmSubscribeGlob) appendFields(f fields) fields {
	return SubscribeGlob(m).appendFields(f)
}

// ConfirmNotify signs the answer to a notify. The HTTP client verifies
// it with the SHA-512 of the body it sent.
type ConfirmNotify struct {
	Tracing     []byte
	Identifier  []byte
	Subscribers uint32
	Topic       []byte
	SHA512      [64]byte
}

func (ConfirmNotify) Kind() Kind        { return KindConfirmNotify }
func (m ConfirmNotify) tracing() []byte { return m.Tracing }
func (m ConfirmNotify) appendFields(f fields) fields {
	f.str8(m.Identifier)
	f.u32(m.Subscribers)
	f.str16(m.Topic)
	f.raw(m.SHA512[:])
	return f
}

// CheckSubscriptionsResponse signs the answer to check_subscriptions
// (etag format byte 0, then the etag).
type CheckSubscriptionsResponse struct {
	Tracing []byte
	Etag    [64]byte
}

func (CheckSubscriptionsResponse) Kind() Kind        { return KindCheckSubscriptionsResponse }
func (m CheckSubscriptionsResponse) tracing() []byte { return m.Tracing }
func (m CheckSubscriptionsResponse) appendFields(f fields) fields {
	f.etag(m.Etag)
	return f
}

// SetSubscriptionsResponse signs the answer to set_subscriptions.
type SetSubscriptionsResponse struct {
	Tracing []byte
	Etag    [64]byte
}

func (SetSubscriptionsResponse) Kind() Kind        { return KindSetSubscriptionsResponse }
func (m SetSubscriptionsResponse) tracing() []byte { return m.Tracing }
func (m SetSubscriptionsResponse) appendFields(f fields) fields {
	return CheckSubscriptionsResponse(m).appendFields(f)
}

// StatefulConfirmConfigure signs a websocket CONFIRM_CONFIGURE.
type StatefulConfirmConfigure struct {
	Tracing          []byte
	BroadcasterNonce [32]byte
}

func (StatefulConfirmConfigure) Kind() Kind        { return KindStatefulConfirmConfigure }
func (m StatefulConfirmConfigure) tracing() []byte { return m.Tracing }
func (m StatefulConfirmConfigure) appendFields(f fields) fields {
	f.str8(m.BroadcasterNonce[:])
	return f
}

// StatefulEnableZstdPreset signs ENABLE_ZSTD_PRESET. The compression
// level travels as a signed 2-byte header but is signed as an unsigned
// u32: the reference calls to_bytes(4, "big") without signed=True, which
// raises for a negative level. So a negative Level cannot be signed
// (error wrapping ErrUnsignable; Verify answers Forbidden) instead of
// being sent as a two's complement no Python peer would compute.
type StatefulEnableZstdPreset struct {
	Tracing      []byte
	URL          string // websocket:<nonce>:<broadcaster counter>
	CompressorID uint32
	Level        int32
	MinSize      uint64
	MaxSize      uint64 // 2^64-1 = unbounded
}

func (StatefulEnableZstdPreset) Kind() Kind        { return KindStatefulEnableZstdPreset }
func (m StatefulEnableZstdPreset) tracing() []byte { return m.Tracing }
func (m StatefulEnableZstdPreset) appendFields(f fields) fields {
	if m.Level < 0 {
		f.fail(fmt.Errorf("compression level %d is signed unsigned: %w", m.Level, ErrUnsignable))
	}
	f.str16([]byte(m.URL))
	f.u32(m.CompressorID)
	f.u32(uint32(m.Level))
	f.u64(m.MinSize)
	f.u64(m.MaxSize)
	return f
}

// StatefulEnableZstdCustom signs ENABLE_ZSTD_CUSTOM: the preset layout
// (same Level rule) followed by the SHA-512 of the dictionary.
type StatefulEnableZstdCustom struct {
	Tracing      []byte
	URL          string
	CompressorID uint32
	Level        int32
	MinSize      uint64
	MaxSize      uint64
	DictSHA512   [64]byte
}

func (StatefulEnableZstdCustom) Kind() Kind        { return KindStatefulEnableZstdCustom }
func (m StatefulEnableZstdCustom) tracing() []byte { return m.Tracing }
func (m StatefulEnableZstdCustom) appendFields(f fields) fields {
	f = StatefulEnableZstdPreset{URL: m.URL, CompressorID: m.CompressorID, Level: m.Level,
		MinSize: m.MinSize, MaxSize: m.MaxSize}.appendFields(f)
	f.raw(m.DictSHA512[:])
	return f
}

// StatefulDisableZstdCustom signs DISABLE_ZSTD_CUSTOM.
type StatefulDisableZstdCustom struct {
	Tracing      []byte
	CompressorID uint32
	URL          string
}

func (StatefulDisableZstdCustom) Kind() Kind        { return KindStatefulDisableZstdCustom }
func (m StatefulDisableZstdCustom) tracing() []byte { return m.Tracing }
func (m StatefulDisableZstdCustom) appendFields(f fields) fields {
	f.u32(m.CompressorID)
	f.str16([]byte(m.URL))
	return f
}

// StatefulContinueNotify signs CONTINUE_NOTIFY (part id on four bytes).
type StatefulContinueNotify struct {
	Tracing    []byte
	Identifier []byte
	PartID     uint32
}

func (StatefulContinueNotify) Kind() Kind        { return KindStatefulContinueNotify }
func (m StatefulContinueNotify) tracing() []byte { return m.Tracing }
func (m StatefulContinueNotify) appendFields(f fields) fields {
	f.str8(m.Identifier)
	f.u32(m.PartID)
	return f
}

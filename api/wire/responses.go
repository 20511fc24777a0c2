package wire

// Message types: the first u16 of every typed body. Request bodies and the
// RECEIVE and MISSED bodies carry no type; only responses and replies do.
const (
	// Broadcaster -> subscriber responses.
	TypeResponseGeneric            uint16 = 3 // subscribe, unsubscribe, set_subscriptions
	TypeResponseNotify             uint16 = 4 // /v1/notify
	TypeResponseCheckSubscriptions uint16 = 5 // /v1/check_subscriptions

	// Subscriber -> broadcaster replies to RECEIVE and MISSED.
	TypeConfirmReceive       uint16 = 8
	TypeConfirmMissed        uint16 = 9
	TypeUnsubscribeImmediate uint16 = 10
)

// ResponseGeneric is the body answering subscribe, unsubscribe and
// set_subscriptions.
type ResponseGeneric struct {
	Authorization string // "" = none
	Tracing       []byte
}

// ResponseNotify is the body answering /v1/notify. The Python client parses
// it whatever the HTTP status and insists that Identifier echoes its own.
type ResponseNotify struct {
	Authorization string
	Tracing       []byte
	Count         uint32 // subscribers that confirmed the message
	Identifier    []byte
}

// ResponseCheckSubscriptions is the body answering /v1/check_subscriptions.
type ResponseCheckSubscriptions struct {
	Authorization string
	Tracing       []byte
	Etag          [64]byte // format 0, the only format defined
}

// AppendResponseGeneric appends a RESPONSE_GENERIC body.
func AppendResponseGeneric(dst []byte, authorization string, tracing []byte) ([]byte, error) {
	e := encoder{what: "generic response", b: dst}
	e.typed(TypeResponseGeneric, authorization, tracing)
	return e.finish(dst)
}

// AppendResponseNotify appends a RESPONSE_NOTIFY body. identifier must be the
// one the notifier sent, byte for byte.
func AppendResponseNotify(dst []byte, authorization string, tracing []byte, count uint32, identifier []byte) ([]byte, error) {
	e := encoder{what: "notify response", b: dst}
	e.typed(TypeResponseNotify, authorization, tracing)
	e.u32(count)
	e.bytes8("identifier", identifier)
	return e.finish(dst)
}

// AppendResponseCheckSubscriptions appends a RESPONSE_CHECK_SUBSCRIPTIONS
// body carrying a format-0 etag.
func AppendResponseCheckSubscriptions(dst []byte, authorization string, tracing []byte, etag [64]byte) ([]byte, error) {
	e := encoder{what: "check subscriptions response", b: dst}
	e.typed(TypeResponseCheckSubscriptions, authorization, tracing)
	e.u8(0)
	e.raw(etag[:])
	return e.finish(dst)
}

// ParseResponseGeneric parses a RESPONSE_GENERIC body.
func ParseResponseGeneric(b []byte) (ResponseGeneric, error) {
	d := decoder{what: "generic response", b: b}
	var m ResponseGeneric
	d.typed(TypeResponseGeneric, &m.Authorization, &m.Tracing)
	return parsed(m, d.err)
}

// ParseResponseNotify parses a RESPONSE_NOTIFY body.
func ParseResponseNotify(b []byte) (ResponseNotify, error) {
	d := decoder{what: "notify response", b: b}
	var m ResponseNotify
	d.typed(TypeResponseNotify, &m.Authorization, &m.Tracing)
	m.Count = d.u32("count")
	m.Identifier = d.bytes8("identifier")
	return parsed(m, d.err)
}

// ParseResponseCheckSubscriptions parses a RESPONSE_CHECK_SUBSCRIPTIONS body;
// an etag format other than 0 yields ErrEtagFormat.
func ParseResponseCheckSubscriptions(b []byte) (ResponseCheckSubscriptions, error) {
	d := decoder{what: "check subscriptions response", b: b}
	var m ResponseCheckSubscriptions
	d.typed(TypeResponseCheckSubscriptions, &m.Authorization, &m.Tracing)
	d.etag(&m.Etag)
	return parsed(m, d.err)
}

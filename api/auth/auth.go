// Package auth implements the three authorization schemes of the lonelypss
// protocol (none, token, HMAC) in both directions: to-broadcaster (what
// subscribers send, verified by the broadcaster) and to-subscriber (what the
// broadcaster sends, verified by subscribers). A broadcaster holds both
// secrets: it also signs and verifies in the subscriber's role when it
// forwards messages for its websocket clients, so it uses a Pair, which
// picks the scheme from the message and cannot sign with the wrong secret.
//
// Every signed message type is a struct implementing Message; its fields
// are exactly what the reference signs, in the order it signs them (see
// ToSign). Compatibility with the Python client is byte for byte: the
// signed layouts, the header syntax and the secrets file are those of
// lonelypsp / lonelypsc (vectors_test.go holds values they produced).
package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
)

// Result is the outcome of verifying an authorization.
type Result int

const (
	// OK: accepted.
	OK Result = iota
	// Unauthorized: the scheme requires an authorization and none (or an
	// empty one) was given.
	Unauthorized
	// Forbidden: an authorization was given but is wrong, expired,
	// replayed or malformed.
	Forbidden
	// Unavailable: the replay store failed; the request may be retried.
	Unavailable
)

func (r Result) String() string {
	if names := [...]string{"ok", "unauthorized", "forbidden", "unavailable"}; r >= 0 && int(r) < len(names) {
		return names[r]
	}
	return fmt.Sprintf("result(%d)", int(r))
}

// HTTPStatus is the status a broadcaster endpoint answers with: 200 for
// OK (nothing to refuse), 401, 403, 503. The Python client retries 503
// only, which is why a replay-store failure must not look like a 403.
func (r Result) HTTPStatus() int {
	switch r {
	case Unauthorized:
		return http.StatusUnauthorized
	case Forbidden:
		return http.StatusForbidden
	case Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}

// Direction names who signs a message.
type Direction int

const (
	// ToBroadcaster: subscribers sign, the broadcaster verifies.
	ToBroadcaster Direction = iota + 1
	// ToSubscriber: the broadcaster signs, subscribers verify.
	ToSubscriber
)

func (d Direction) String() string {
	if d == ToSubscriber {
		return "to-subscriber"
	}
	return "to-broadcaster"
}

// Scheme signs and verifies the messages of one direction.
type Scheme interface {
	// Authorize returns the authorization to send with m; "" when the
	// scheme sends none.
	Authorize(m Message) (string, error)
	// Verify checks a received authorization ("" = missing).
	Verify(ctx context.Context, m Message, authorization string) Result
}

// ErrNoScheme is returned by Pair.Authorize when the Pair has no scheme
// for the message's direction (a zero Pair); Pair.Verify answers
// Forbidden then, failing closed.
var ErrNoScheme = errors.New("no scheme configured for this direction")

// Pair holds one scheme per direction and picks the right one for each
// message from its kind's Direction, so a caller can never sign a RECEIVE
// with the subscribers' secret nor accept a NOTIFY checked against the
// broadcaster's.
type Pair struct {
	ToBroadcaster Scheme
	ToSubscriber  Scheme
}

// NonePair accepts everything and signs nothing, both ways.
func NonePair() Pair { return Pair{ToBroadcaster: None(), ToSubscriber: None()} }

func (p Pair) scheme(m Message) Scheme {
	if m.Kind().Direction() == ToSubscriber {
		return p.ToSubscriber
	}
	return p.ToBroadcaster
}

// Authorize signs m with the scheme of its direction.
func (p Pair) Authorize(m Message) (string, error) {
	s := p.scheme(m)
	if s == nil {
		return "", fmt.Errorf("auth: %s: %w", m.Kind().Direction(), ErrNoScheme)
	}
	return s.Authorize(m)
}

// Verify checks m with the scheme of its direction.
func (p Pair) Verify(ctx context.Context, m Message, authorization string) Result {
	s := p.scheme(m)
	if s == nil {
		return Forbidden
	}
	return s.Verify(ctx, m, authorization)
}

type none struct{}

// None sends no authorization and accepts anything.
func None() Scheme { return none{} }

func (none) Authorize(Message) (string, error)              { return "", nil }
func (none) Verify(context.Context, Message, string) Result { return OK }

type token struct{ want string }

// Token sends "Bearer <secret>" (the secret from the file verbatim, not
// decoded) with every message of its direction and accepts exactly that.
// It proves nothing about the message itself, so it is only meaningful
// over https. The comparison is constant-time; only the length leaks, as
// with the reference's compare.
func Token(secret string) Scheme { return token{want: "Bearer " + secret} }

func (t token) Authorize(Message) (string, error) { return t.want, nil }

func (t token) Verify(_ context.Context, _ Message, authorization string) Result {
	if authorization == "" {
		return Unauthorized
	}
	if subtle.ConstantTimeCompare([]byte(authorization), []byte(t.want)) != 1 {
		return Forbidden
	}
	return OK
}

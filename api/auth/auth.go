// Package auth implements the three authorization schemes of the lonelypss
// protocol (none, token, HMAC) in both directions: to-broadcaster (what
// subscribers send, verified by the broadcaster) and to-subscriber (what the
// broadcaster sends, verified by subscribers). A broadcaster holds both
// secrets: it signs and verifies in both roles when it forwards messages for
// its websocket clients.
//
// Every signed message type is a struct implementing Message; its fields are
// exactly what the reference signs, in the order it signs them (see ToSign).
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
	switch r {
	case OK:
		return "ok"
	case Unauthorized:
		return "unauthorized"
	case Forbidden:
		return "forbidden"
	case Unavailable:
		return "unavailable"
	}
	return fmt.Sprintf("result(%d)", int(r))
}

// HTTPStatus is the status a broadcaster endpoint answers with.
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

// ErrDirection is returned for a message signed with the other
// direction's scheme.
var ErrDirection = errors.New("auth: message belongs to the other direction")

// Pair holds one scheme per direction and picks the right one for each
// message, so a caller can never sign a RECEIVE with the subscribers'
// secret.
type Pair struct {
	ToBroadcaster Scheme
	ToSubscriber  Scheme
}

// NonePair accepts everything and signs nothing, both ways.
func NonePair() Pair { return Pair{ToBroadcaster: None(), ToSubscriber: None()} }

func (p Pair) scheme(m Message) Scheme {
	if m.Direction() == ToSubscriber {
		return p.ToSubscriber
	}
	return p.ToBroadcaster
}

// Authorize signs m with the scheme of its direction.
func (p Pair) Authorize(m Message) (string, error) { return p.scheme(m).Authorize(m) }

// Verify checks m with the scheme of its direction.
func (p Pair) Verify(ctx context.Context, m Message, authorization string) Result {
	return p.scheme(m).Verify(ctx, m, authorization)
}

type none struct{}

// None sends no authorization and accepts anything.
func None() Scheme { return none{} }

func (none) Authorize(Message) (string, error)              { return "", nil }
func (none) Verify(context.Context, Message, string) Result { return OK }

type token struct{ want string }

// Token sends "Bearer <secret>" with every message and accepts exactly
// that. It proves nothing about the message itself, so it is only
// meaningful over https.
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

package auth

import (
	"context"
	"time"
)

// Replay is the part of an HMAC verification left to the caller by
// VerifyDeferred: the code to record and until when.
type Replay struct {
	Code    [64]byte
	Expires time.Time
}

// deferredVerifier is implemented by schemes whose verification has a
// replay step (HMAC).
type deferredVerifier interface {
	verifyDeferred(m Message, authorization string) (Result, *Replay)
}

// VerifyDeferred checks m like Verify but does not consult the replay
// store: it returns the code instead, so the caller can record it where
// the check must hold — subscription changes record it inside their Raft
// command, which refuses a replay on every node of a cluster. Schemes
// without replay protection return a nil Replay.
func (p Pair) VerifyDeferred(ctx context.Context, m Message, authorization string) (Result, *Replay) {
	s := p.scheme(m)
	if s == nil {
		return Forbidden, nil
	}
	if d, ok := s.(deferredVerifier); ok {
		return d.verifyDeferred(m, authorization)
	}
	return s.Verify(ctx, m, authorization), nil
}

func (h *hmacScheme) verifyDeferred(m Message, authorization string) (Result, *Replay) {
	code, ts, r := h.check(m, authorization)
	if r != OK {
		return r, nil
	}
	return OK, &Replay{Code: code, Expires: h.expires(ts)}
}

// WithNotBefore refuses signatures whose timestamp is before t. A node
// that did not shut down cleanly may have lost the last codes its replay
// store saw; refusing what was signed before it started closes that gap.
func WithNotBefore(t time.Time) HMACOption {
	return func(h *hmacScheme) { h.notBefore = t.Unix() }
}

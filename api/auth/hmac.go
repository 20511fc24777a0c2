package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultSkew is how far a signature's timestamp may be from now, either
// way, as in the reference.
const DefaultSkew = 120 * time.Second

// replayMargin is added to the skew to get how long a code is remembered:
// a code must outlive the window in which its timestamp is acceptable
// (the reference keeps codes 180 s for a 120 s skew).
const replayMargin = 60 * time.Second

const hmacPrefix = "X-HMAC "

// ReplayStore remembers codes already accepted.
type ReplayStore interface {
	// Seen records code until expires and reports whether it was already
	// recorded (a replay).
	Seen(ctx context.Context, code [64]byte, expires time.Time) (replay bool, err error)
}

type hmacScheme struct {
	secret []byte
	replay ReplayStore
	clock  func() time.Time
	skew   time.Duration
	nonce  func() string
}

// HMACOption configures HMAC.
type HMACOption func(*hmacScheme)

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) HMACOption { return func(h *hmacScheme) { h.clock = now } }

// WithSkew sets the accepted clock skew (default 120 s).
func WithSkew(d time.Duration) HMACOption { return func(h *hmacScheme) { h.skew = d } }

// WithNonce replaces the random nonce (tests).
func WithNonce(f func() string) HMACOption { return func(h *hmacScheme) { h.nonce = f } }

// HMAC signs with HMAC-SHA512 over the message, a timestamp and a fresh
// nonce, and verifies with a skew window and replay protection keyed on
// the code. replay may be nil only for a scheme that never verifies.
func HMAC(secret []byte, replay ReplayStore, opts ...HMACOption) (Scheme, error) {
	if len(secret) != 64 {
		return nil, fmt.Errorf("auth: hmac secret must be 64 bytes, got %d", len(secret))
	}
	h := &hmacScheme{secret: append([]byte(nil), secret...), replay: replay, clock: time.Now, skew: DefaultSkew, nonce: randomNonce}
	for _, o := range opts {
		o(h)
	}
	return h, nil
}

// randomNonce draws 4 random bytes as 6 url-safe characters, like the
// reference's token_urlsafe(4). Freshness matters: Python clients keep a
// replay store too and refuse a repeated signature.
func randomNonce() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("auth: no randomness: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (h *hmacScheme) code(m Message, ts uint64, nonce string) ([64]byte, error) {
	msg, err := ToSign(m, ts, nonce)
	if err != nil {
		return [64]byte{}, err
	}
	mac := hmac.New(sha512.New, h.secret)
	mac.Write(msg)
	var out [64]byte
	mac.Sum(out[:0])
	return out, nil
}

func (h *hmacScheme) Authorize(m Message) (string, error) {
	ts := h.clock().Unix()
	nonce := h.nonce()
	code, err := h.code(m, uint64(ts), nonce)
	if err != nil {
		return "", err
	}
	return hmacPrefix + strconv.FormatInt(ts, 10) + ":" + nonce + ":" + base64.StdEncoding.EncodeToString(code[:]), nil
}

func (h *hmacScheme) Verify(ctx context.Context, m Message, authorization string) Result {
	if authorization == "" {
		return Unauthorized
	}
	ts, nonce, code, ok := parseHMAC(authorization)
	if !ok {
		return Forbidden
	}
	now := h.clock()
	if d := now.Sub(time.Unix(ts, 0)); d > h.skew || d < -h.skew {
		return Forbidden
	}
	want, err := h.code(m, uint64(ts), nonce)
	if err != nil || !hmac.Equal(want[:], code[:]) {
		return Forbidden
	}
	if h.replay == nil {
		return Unavailable
	}
	replay, err := h.replay.Seen(ctx, code, now.Add(h.skew+replayMargin))
	if err != nil {
		return Unavailable
	}
	if replay {
		return Forbidden
	}
	return OK
}

// parseHMAC splits "X-HMAC <ts>:<nonce>:<code>".
func parseHMAC(s string) (ts int64, nonce string, code [64]byte, ok bool) {
	rest, found := strings.CutPrefix(s, hmacPrefix)
	if !found {
		return 0, "", code, false
	}
	tsStr, rest, found := strings.Cut(rest, ":")
	if !found {
		return 0, "", code, false
	}
	ts, err := strconv.ParseInt(tsStr, 10, 64)
	if err != nil || ts < 0 {
		return 0, "", code, false
	}
	nonce, codeStr, found := strings.Cut(rest, ":")
	if !found || len(nonce) > 255 {
		return 0, "", code, false
	}
	raw, err := base64.StdEncoding.DecodeString(codeStr)
	if err != nil {
		// Python appends "==" and decodes leniently; accept a code that
		// lost its padding.
		raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(codeStr, "="))
	}
	if err != nil || len(raw) != 64 {
		return 0, "", code, false
	}
	copy(code[:], raw)
	return ts, nonce, code, true
}

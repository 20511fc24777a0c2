package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultSkew is how far a signature's timestamp may be from now, either
// way, inclusive: the reference's token_lifetime of 120 s.
const DefaultSkew = 120 * time.Second

// ReplayMargin is added to the skew to get how long a code is remembered
// past the later of now and its timestamp. The reference keeps codes
// 180 s after first use for a 120 s skew; remembering a code until its
// timestamp leaves the window, plus this margin, guarantees a code can
// never be replayed while its timestamp is still acceptable, even one
// signed up to a skew in the future (which the reference's fixed 180 s
// does not quite cover).
const ReplayMargin = 60 * time.Second

const hmacPrefix = "X-HMAC "

// ErrBadSecret is wrapped by the errors for an HMAC secret that is not
// 64 bytes (or, in a secrets file, not url-safe base64).
var ErrBadSecret = errors.New("invalid hmac secret")

// ReplayStore remembers codes already accepted. One store may serve both
// directions: a code is an HMAC under one secret of one message, so codes
// of the two directions never collide in practice.
type ReplayStore interface {
	// Seen records code until expires and reports whether it was already
	// recorded (a replay). An error makes the verification Unavailable.
	Seen(ctx context.Context, code [64]byte, expires time.Time) (replay bool, err error)
}

type hmacScheme struct {
	secret []byte
	replay ReplayStore
	clock  func() time.Time
	skew   time.Duration
	nonce  func() string
	// notBefore: signatures older than this (unix seconds) are refused.
	notBefore int64
}

// HMACOption configures HMAC.
type HMACOption func(*hmacScheme)

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) HMACOption { return func(h *hmacScheme) { h.clock = now } }

// WithSkew sets the accepted clock skew (default 120 s, as the reference).
// Codes are then remembered for the skew plus ReplayMargin.
func WithSkew(d time.Duration) HMACOption { return func(h *hmacScheme) { h.skew = d } }

// WithNonce replaces the random nonce (tests). Production must keep the
// default: Python peers run a replay store too and refuse a signature they
// have seen, so every header must be fresh.
func WithNonce(f func() string) HMACOption { return func(h *hmacScheme) { h.nonce = f } }

// HMAC returns the scheme signing with HMAC-SHA512 over the message, a
// timestamp and a fresh nonce, and verifying with a skew window and replay
// protection keyed on the 64-byte code. secret is the decoded secret and
// must be 64 bytes, as the reference requires. replay may be nil only for
// a scheme that never verifies: Verify then answers Unavailable.
func HMAC(secret []byte, replay ReplayStore, opts ...HMACOption) (Scheme, error) {
	if len(secret) != 64 {
		return nil, fmt.Errorf("auth: %w: %d bytes, want 64", ErrBadSecret, len(secret))
	}
	h := &hmacScheme{
		secret: append([]byte(nil), secret...),
		replay: replay,
		clock:  time.Now,
		skew:   DefaultSkew,
		nonce:  randomNonce,
	}
	for _, o := range opts {
		o(h)
	}
	if h.skew < 0 {
		return nil, fmt.Errorf("auth: negative hmac skew %s", h.skew)
	}
	if h.clock == nil || h.nonce == nil {
		return nil, errors.New("auth: nil hmac clock or nonce option")
	}
	return h, nil
}

// randomNonce draws 4 random bytes as 6 url-safe characters, like the
// reference's token_urlsafe(4). crypto/rand.Read never fails (it aborts
// the program instead), so there is no error to return.
func randomNonce() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
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

// Authorize returns "X-HMAC <ts>:<nonce>:<code>" with ts the current
// second (truncated, as int(time.time())), a fresh nonce and the standard
// base64 of the code.
func (h *hmacScheme) Authorize(m Message) (string, error) {
	ts := h.clock().Unix()
	if ts < 0 {
		return "", fmt.Errorf("auth: clock before 1970 (%d): %w", ts, ErrUnsignable)
	}
	nonce := h.nonce()
	if strings.Contains(nonce, ":") {
		// The verifier splits at the first colon after the timestamp.
		return "", fmt.Errorf("auth: nonce %q contains a colon: %w", nonce, ErrUnsignable)
	}
	code, err := h.code(m, uint64(ts), nonce)
	if err != nil {
		return "", err
	}
	return hmacPrefix + strconv.FormatInt(ts, 10) + ":" + nonce + ":" + base64.StdEncoding.EncodeToString(code[:]), nil
}

// Verify follows the reference's steps in order: missing → Unauthorized;
// prefix, timestamp, skew, nonce/code split, code decoding, signature →
// Forbidden on failure; then the replay store (Forbidden on a replay,
// Unavailable on a store error). The store is consulted only for a valid
// signature, so forged headers cannot fill it.
func (h *hmacScheme) Verify(ctx context.Context, m Message, authorization string) Result {
	code, ts, r := h.check(m, authorization)
	if r != OK {
		return r
	}
	// Replay check, keyed on the code (not the nonce).
	if h.replay == nil {
		return Unavailable
	}
	replay, err := h.replay.Seen(ctx, code, h.expires(ts))
	if err != nil {
		return Unavailable
	}
	if replay {
		return Forbidden
	}
	return OK
}

// check verifies a header as far as it can without the replay store.
func (h *hmacScheme) check(m Message, authorization string) ([64]byte, int64, Result) {
	// An empty header counts as missing.
	if authorization == "" {
		return [64]byte{}, 0, Unauthorized
	}
	// 2-6.
	ts, nonce, code, ok := parseHMAC(authorization, h.clock(), h.skew)
	if !ok || ts < h.notBefore {
		return [64]byte{}, 0, Forbidden
	}
	// Recompute over the received fields with the header's timestamp
	// and nonce. Values the layout cannot hold (part id > 255...) were not
	// signed by any correct peer.
	want, err := h.code(m, uint64(ts), nonce)
	if err != nil || !hmac.Equal(want[:], code[:]) {
		return [64]byte{}, 0, Forbidden
	}
	return code, ts, OK
}

// expires is when a code with timestamp ts may be forgotten: once ts is
// out of the window, plus a margin, and never sooner than skew+margin from
// now (the reference's 180 s).
func (h *hmacScheme) expires(ts int64) time.Time {
	now := h.clock()
	at := time.Unix(ts, 0)
	if at.Before(now) {
		at = now
	}
	return at.Add(h.skew + ReplayMargin)
}

// parseHMAC checks the form of "X-HMAC <ts>:<nonce>:<code>":
// prefix (case-sensitive), integer timestamp, |now-ts| <= skew, nonce up
// to the second colon, 64-byte standard-base64 code.
func parseHMAC(s string, now time.Time, skew time.Duration) (ts int64, nonce string, code [64]byte, ok bool) {
	rest, found := strings.CutPrefix(s, hmacPrefix)
	if !found {
		return 0, "", code, false
	}
	// A negative timestamp cannot be signed (u64), so refuse it here.
	tsStr, rest, found := strings.Cut(rest, ":")
	if !found {
		return 0, "", code, false
	}
	ts, err := strconv.ParseInt(tsStr, 10, 64)
	if err != nil || ts < 0 {
		return 0, "", code, false
	}
	// Inclusive window, compared at full clock precision like the
	// reference's float now. Sub saturates, so a huge ts cannot overflow.
	if d := now.Sub(time.Unix(ts, 0)); d > skew || d < -skew {
		return 0, "", code, false
	}
	nonce, codeStr, found := strings.Cut(rest, ":")
	if !found || len(nonce) > 255 {
		return 0, "", code, false
	}
	// The reference appends "==" and decodes leniently, so a code
	// without its padding, or with surplus padding, is accepted too.
	// Leniency costs nothing: the decoded bytes must still match, and the
	// replay key is the decoded code, not its spelling.
	raw, err := base64.StdEncoding.DecodeString(codeStr)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(codeStr, "="))
	}
	if err != nil || len(raw) != 64 {
		return 0, "", code, false
	}
	copy(code[:], raw)
	return ts, nonce, code, true
}

package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
)

// Retry is how a Client moves between broadcasters, after the Python
// client (lonelypsc's outgoing_retries_per_broadcaster and
// outgoing_retry_ambiguous):
//
//   - A request makes up to Rounds passes over the broadcasters, each pass
//     in a fresh random order, so load spreads and a dead broadcaster is
//     not always tried first.
//   - Before pass k (k = 1, 2, ...; none before the first) it waits
//     Backoff·2^(k-1) plus a uniform jitter in [0, Jitter).
//   - An answer 502, 503 or 504 moves on to the next broadcaster.
//   - A connection error (no answer at all) is ambiguous: the broadcaster
//     may have acted on the request. It moves on too, unless
//     NoRetryAmbiguous is set; then it is returned at once.
//   - Any other answer, success or refusal, is final.
//
// When every attempt failed, the last failure is returned. A body that
// cannot be read again (a plain io.Reader already partly sent) ends the
// request at its first failure.
type Retry struct {
	// Rounds is how many passes over the broadcasters a request makes;
	// 0 or 1 is a single pass without waiting.
	Rounds int
	// Backoff is the wait before the second pass, doubled before each
	// later one.
	Backoff time.Duration
	// MaxBackoff caps the doubling (0: an hour, past any sensible number
	// of rounds).
	MaxBackoff time.Duration
	// Jitter is the upper bound of the random wait added to each backoff.
	Jitter time.Duration
	// NoRetryAmbiguous returns a connection error instead of trying the
	// next broadcaster (the Python client's outgoing_retry_ambiguous
	// false): for requests that must not run twice.
	NoRetryAmbiguous bool
}

// DefaultRetry is what New configures: three passes, waits of 1 s and 2 s
// plus up to 1 s of jitter, as the Python client waits.
var DefaultRetry = Retry{Rounds: 3, Backoff: time.Second, Jitter: time.Second}

// Wait is the pause before pass round (1 for the second pass):
// Backoff·2^(round-1), at most MaxBackoff, plus the jitter.
func (r Retry) Wait(round int) time.Duration {
	limit := r.MaxBackoff
	if limit <= 0 {
		limit = time.Hour
	}
	d := r.Backoff
	for i := 1; i < round && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	if r.Jitter > 0 {
		d += rand.N(r.Jitter)
	}
	return d
}

// errFinal marks a failure no other broadcaster can fix (a request that
// cannot be built, a body that cannot be read again).
type errFinal struct{ err error }

func (e errFinal) Error() string { return e.err.Error() }
func (e errFinal) Unwrap() error { return e.err }

// errNoRewind: the body was partly sent and cannot be read again.
var errNoRewind = errors.New("the message body was partly sent and cannot be sent again: pass an io.ReadSeeker or a file to retry")

// bodySource returns the body of one attempt and its length.
type bodySource func() (io.Reader, int64, error)

func bytesBody(b []byte) bodySource {
	return func() (io.Reader, int64, error) { return bytes.NewReader(b), int64(len(b)), nil }
}

// broadcasters returns the base URLs in a fresh random order.
func (c *Client) broadcasters() []string {
	bs := c.Broadcasters
	if len(bs) == 0 && c.Base != "" {
		bs = []string{strings.TrimRight(c.Base, "/")}
	}
	out := append([]string(nil), bs...)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// retryable reports a status after which another broadcaster is tried.
func retryable(code int) bool {
	return code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

// send runs try against the broadcasters by c.Retry and returns the first
// final answer (any status but 502/503/504), or the last failure.
func (c *Client) send(ctx context.Context, try func(ctx context.Context, base string) (*http.Response, error)) (*http.Response, error) {
	rounds := max(c.Retry.Rounds, 1)
	var last error
	for round := range rounds {
		if round > 0 {
			if err := c.Retry.Pause(ctx, round); err != nil {
				return nil, fmt.Errorf("%w (waiting to retry after: %w)", err, last)
			}
		}
		bs := c.broadcasters()
		if len(bs) == 0 {
			return nil, errors.New("client: no broadcaster configured")
		}
		for _, base := range bs {
			resp, err := try(ctx, base)
			if err == nil && !retryable(resp.StatusCode) {
				return resp, nil
			}
			if err == nil {
				last = drainStatus(resp, base)
				continue
			}
			var final errFinal
			if errors.As(err, &final) && last != nil {
				return nil, fmt.Errorf("%w; then: %w", last, err)
			}
			if errors.As(err, &final) || ctx.Err() != nil || c.Retry.NoRetryAmbiguous {
				return nil, err
			}
			last = err
		}
	}
	return nil, last
}

// drainStatus reads the start of a retryable answer for the error and
// closes it.
func drainStatus(resp *http.Response, base string) error {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Errorf("%s: %w", base, &StatusError{Code: resp.StatusCode, Body: string(b)})
}

// Pause waits Wait(round), or until ctx ends (its error).
func (r Retry) Pause(ctx context.Context, round int) error {
	t := time.NewTimer(r.Wait(round))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

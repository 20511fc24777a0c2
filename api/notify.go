package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/spool"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/fanout"
)

func (s *Server) notify(c echo.Context) error {
	received := time.Now()
	req := c.Request()
	if limit := s.cfg.MaxMessageSize; limit > 0 && req.ContentLength > limit+wire.MaxNotifyHeaderLen {
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("notify: body of %d bytes exceeds the message size limit of %d", req.ContentLength, limit))
	}
	n, err := wire.ReadNotifyHeader(req.Body)
	if err != nil {
		return badRequest("notify", err)
	}
	// A Content-Length that disagrees with the declared message length is
	// refused before anything is read or authorised.
	if req.ContentLength >= 0 {
		if want := n.HeaderLen() + int64(n.Length); n.Length > 1<<62 || req.ContentLength != want {
			return badRequest("notify", fmt.Errorf("message length %d disagrees with Content-Length %d", n.Length, req.ContentLength))
		}
	}
	if limit := s.cfg.MaxMessageSize; limit > 0 && n.Length > uint64(limit) {
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("notify: message of %d bytes exceeds the limit of %d", n.Length, limit))
	}
	if r := s.auth.Verify(req.Context(), auth.Notify{
		Tracing: n.Tracing, Topic: n.Topic, Identifier: n.Identifier, SHA512: n.SHA512,
	}, req.Header.Get("Authorization")); r != auth.OK {
		return authError(r, "notify")
	}

	authorized := time.Now()

	body, err := s.readMessage(req.Body, n)
	if err != nil {
		return err
	}
	defer body.Release()

	// Deliveries finish even if the notifier hangs up: half a fan-out is
	// worse than a whole one nobody hears about. Each delivery has its
	// own deadline.
	ctx := context.WithoutCancel(req.Context())
	s.cfg.Metrics.HTTP()
	count := s.fanout.Deliver(ctx, fanout.Message{
		Topic: n.Topic, Body: body, Length: n.Length, SHA512: n.SHA512,
	})

	done := time.Now()
	tracing := wire.SimpleTracing(received, done,
		wire.Trace{Name: "auth_accepted", ExtraJSON: "{}", At: authorized},
		wire.Trace{Name: "no_more_subscribers", ExtraJSON: fmt.Sprintf(`{"confirmed":%d}`, count), At: done})
	authz, err := s.auth.Authorize(auth.ConfirmNotify{
		Tracing: tracing, Identifier: n.Identifier, Subscribers: count, Topic: n.Topic, SHA512: n.SHA512,
	})
	if err != nil {
		return fmt.Errorf("sign notify response: %w", err)
	}
	out, err := wire.AppendResponseNotify(nil, authz, tracing, count, n.Identifier)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, octetStream, out)
}

// readMessage reads the message that follows a notify header into the
// node's spool and checks its length and SHA-512: in memory within the
// node-wide budget, otherwise in an unlinked temporary file, so memory stays
// flat however many notifies arrive and nothing is left on disk even after
// a crash.
func (s *Server) readMessage(r io.Reader, n wire.Notify) (*spool.Body, error) {
	b, err := s.bodies.ReadBody(r, n.Length, n.SHA512)
	switch {
	case err == nil:
		return b, nil
	case spool.IsNoSpace(err), errors.Is(err, spool.ErrStore):
		return nil, echo.NewHTTPError(http.StatusServiceUnavailable, "cannot spool message, retry later: "+err.Error()).SetInternal(err)
	case errors.Is(err, spool.ErrLength), errors.Is(err, spool.ErrDigest):
		return nil, badRequest("notify", err)
	case errors.Is(err, errTooSlow):
		return nil, echo.NewHTTPError(http.StatusRequestTimeout, "notify: "+err.Error()).SetInternal(err)
	}
	return nil, badRequest("notify", fmt.Errorf("reading message: %w", err))
}

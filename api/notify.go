package api

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/fanout"
)

// notifyHeaderLen is the size of a notify body before its message.
func notifyHeaderLen(n wire.Notify) int64 {
	return int64(2 + len(n.Topic) + 64 + 2 + len(n.Tracing) + 1 + len(n.Identifier) + 8)
}

func (s *Server) notify(c echo.Context) error {
	received := time.Now()
	req := c.Request()
	n, err := wire.ReadNotifyHeader(req.Body)
	if err != nil {
		return badRequest("notify", err)
	}
	// A Content-Length that disagrees with the declared message length is
	// refused before anything is read or authorised.
	if req.ContentLength >= 0 {
		if want := notifyHeaderLen(n) + int64(n.Length); n.Length > 1<<62 || req.ContentLength != want {
			return badRequest("notify", fmt.Errorf("message length %d disagrees with Content-Length %d", n.Length, req.ContentLength))
		}
	}
	if r := s.auth.Verify(req.Context(), auth.Notify{
		Tracing: n.Tracing, Topic: n.Topic, Identifier: n.Identifier, SHA512: n.SHA512,
	}, req.Header.Get("Authorization")); r != auth.OK {
		return authError(r, "notify")
	}

	authorized := time.Now()

	body, cleanup, err := s.readMessage(req.Body, n)
	if err != nil {
		return err
	}
	defer cleanup()

	// Deliveries finish even if the notifier hangs up: half a fan-out is
	// worse than a whole one nobody hears about. Each delivery has its
	// own deadline.
	ctx := context.WithoutCancel(req.Context())
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

var (
	errMessageShort = errors.New("body ended before the declared message length")
	errMessageLong  = errors.New("body continues past the declared message length")
	errDigest       = errors.New("message does not match its SHA-512")
)

// readMessage reads the message that follows a notify header and checks
// its length and SHA-512. Small messages stay in memory; larger ones are
// spooled to an unlinked temporary file, so memory stays flat with
// message size and nothing is left on disk even after a crash.
func (s *Server) readMessage(r io.Reader, n wire.Notify) (io.ReaderAt, func(), error) {
	h := sha512.New()
	var (
		ra      io.ReaderAt
		cleanup = func() {}
		got     int64
		err     error
	)
	if n.Length <= uint64(s.cfg.SpoolThreshold) {
		buf := make([]byte, n.Length)
		var read int
		read, err = io.ReadFull(r, buf)
		got = int64(read)
		h.Write(buf[:read])
		ra = bytes.NewReader(buf)
	} else {
		f, ferr := os.CreateTemp(s.cfg.SpoolDir, "lonelypsd-notify-*")
		if ferr != nil {
			return nil, nil, echo.NewHTTPError(http.StatusServiceUnavailable, "cannot spool message").SetInternal(ferr)
		}
		// Unlinked at once: the open descriptor keeps the data readable
		// for the deliveries, and the kernel frees it when it closes.
		if rerr := os.Remove(f.Name()); rerr != nil {
			s.log.Warn("spool file not unlinked", "path", f.Name(), "err", rerr)
		}
		cleanup = func() { _ = f.Close() }
		got, err = io.CopyBuffer(io.MultiWriter(f, h), io.LimitReader(r, int64(n.Length)), make([]byte, 256<<10))
		ra = f
	}
	fail := func(e error) (io.ReaderAt, func(), error) {
		cleanup()
		return nil, nil, e
	}
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		if isSpaceErr(err) {
			return fail(echo.NewHTTPError(http.StatusServiceUnavailable, "cannot spool message: "+err.Error()).SetInternal(err))
		}
		return fail(badRequest("notify", fmt.Errorf("reading message: %w", err)))
	}
	if uint64(got) != n.Length {
		return fail(badRequest("notify", fmt.Errorf("%w (%d of %d bytes)", errMessageShort, got, n.Length)))
	}
	var one [1]byte
	if k, _ := io.ReadFull(r, one[:]); k > 0 {
		return fail(badRequest("notify", errMessageLong))
	}
	var sum [64]byte
	h.Sum(sum[:0])
	if sum != n.SHA512 {
		return fail(badRequest("notify", errDigest))
	}
	return ra, cleanup, nil
}

// isSpaceErr reports a full disk or quota: the spool could not hold the
// message, which is the server's problem, not the notifier's.
func isSpaceErr(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/fsm"
	"github.com/lonelypsd/lonelypsd/fsm/globmatch"
)

const octetStream = "application/octet-stream"

// readBody reads a whole request body of at most limit bytes.
func readBody(c echo.Context, limit int64) ([]byte, error) {
	r := c.Request()
	if r.ContentLength > limit {
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("body of %d bytes exceeds the limit of %d", r.ContentLength, limit))
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, bodyError("reading body", err)
	}
	if int64(len(b)) > limit {
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("body exceeds the limit of %d bytes", limit))
	}
	return b, nil
}

func badRequest(what string, err error) error {
	return echo.NewHTTPError(http.StatusBadRequest, what+": "+err.Error()).SetInternal(err)
}

// checkURL refuses URLs the broadcaster could never POST to. The reference
// stores any UTF-8 string and fails every delivery to it later; refusing
// up front tells the subscriber at once.
func checkURL(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s %q is not a URL: %w", field, raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s %q must be an absolute http or https URL", field, raw)
	}
	return nil
}

// checkURLPolicy is checkURL and then the node's URL policy, if any.
func (s *Server) checkURLPolicy(field, raw string) error {
	if err := checkURL(field, raw); err != nil {
		return err
	}
	if s.cfg.URLPolicy != nil {
		if err := s.cfg.URLPolicy.CheckURL(raw); err != nil {
			return fmt.Errorf("%s %q refused: %w", field, raw, err)
		}
	}
	return nil
}

func (s *Server) checkURLs(url, recovery string) error {
	if err := s.checkURLPolicy("url", url); err != nil {
		return err
	}
	if recovery != "" {
		return s.checkURLPolicy("recovery url", recovery)
	}
	return nil
}

// checkRowLen refuses what the table cannot store: the protocol allows
// 64 KiB URLs and topics, the table at most fsm.MaxRowKey bytes of both.
func checkRowLen(url string, keyLen int) error {
	if len(url)+keyLen > fsm.MaxRowKey {
		return fmt.Errorf("url (%d bytes) and topic or glob (%d bytes) together exceed the limit of %d bytes", len(url), keyLen, fsm.MaxRowKey)
	}
	return nil
}

func (s *Server) checkGlob(glob string) error {
	if len(glob) > s.cfg.MaxGlobLength {
		return fmt.Errorf("glob of %d bytes exceeds the limit of %d bytes (--max-glob-length)", len(glob), s.cfg.MaxGlobLength)
	}
	if _, err := globmatch.Compile(glob); err != nil {
		return fmt.Errorf("glob %q: %w", glob, err)
	}
	return nil
}

// authCode carries a verified HMAC code into the Raft command, where the
// replay check holds for the whole cluster.
func authCode(r *auth.Replay) *fsm.AuthCode {
	if r == nil {
		return nil
	}
	return &fsm.AuthCode{Code: r.Code[:], ExpiresMs: r.Expires.UnixMilli()}
}

// apply commits cmd within the write timeout.
func (s *Server) apply(c echo.Context, cmd fsm.Command) (fsm.Outcome, error) {
	ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.WriteTimeout)
	defer cancel()
	res, err := s.writer.Apply(ctx, cmd)
	if err != nil {
		return 0, writeError(err)
	}
	if res.Outcome == fsm.TooMany {
		return 0, echo.NewHTTPError(http.StatusBadRequest,
			fmt.Sprintf("%s: too many subscriptions for this URL (limit %d)", cmd.Op, s.cfg.MaxSubscriptionsPerURL))
	}
	return res.Outcome, nil
}

// respondChange answers a subscription change: RESPONSE_GENERIC signed
// with confirm on success, 409 with no body on conflict.
func (s *Server) respondChange(c echo.Context, outcome fsm.Outcome, confirm auth.Message) error {
	switch outcome {
	case fsm.Conflict:
		return c.NoContent(http.StatusConflict)
	case fsm.Replayed:
		return authError(auth.Forbidden, "subscription change (replayed authorization)")
	}
	return s.respondGeneric(c, "confirmation", confirm)
}

// respondGeneric answers 200 with a RESPONSE_GENERIC carrying the
// authorization of confirm (what names it in an error).
func (s *Server) respondGeneric(c echo.Context, what string, confirm auth.Message) error {
	authz, err := s.auth.Authorize(confirm)
	if err != nil {
		return fmt.Errorf("sign %s: %w", what, err)
	}
	body, err := wire.AppendResponseGeneric(nil, authz, nil)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, octetStream, body)
}

// changeRoute serves one of the four subscribe and unsubscribe endpoints:
// the body parsed by parse, the command it asks for (and the tracing the
// client signed) made by command.
func changeRoute[M any](s *Server, op fsm.Op, parse func([]byte) (M, error), command func(M) (fsm.Command, []byte)) echo.HandlerFunc {
	return func(c echo.Context) error {
		body, err := readBody(c, s.cfg.MaxSmallBody)
		if err != nil {
			return err
		}
		m, err := parse(body)
		if err != nil {
			return badRequest(op.String(), err)
		}
		cmd, tracing := command(m)
		cmd.Op = op
		return s.change(c, cmd, tracing)
	}
}

func exactCommand(m wire.SubscribeExact) (fsm.Command, []byte) {
	return fsm.Command{URL: m.URL, Topic: m.Topic, Recovery: m.Recovery}, m.Tracing
}

func globCommand(m wire.SubscribeGlob) (fsm.Command, []byte) {
	return fsm.Command{URL: m.URL, Glob: m.Glob, Recovery: m.Recovery}, m.Tracing
}

func isGlobChange(op fsm.Op) bool { return op == fsm.OpSubscribeGlob || op == fsm.OpUnsubscribeGlob }

// changeMessages returns what the client asking for cmd signed and what
// the answer to it signs.
func changeMessages(cmd fsm.Command, tracing []byte) (signed, confirm auth.Message) {
	if isGlobChange(cmd.Op) {
		return auth.SubscribeGlob{Tracing: tracing, URL: cmd.URL, Recovery: cmd.Recovery, Glob: cmd.Glob},
			auth.ConfirmSubscribeGlob{URL: cmd.URL, Recovery: cmd.Recovery, Glob: cmd.Glob}
	}
	return auth.SubscribeExact{Tracing: tracing, URL: cmd.URL, Recovery: cmd.Recovery, Topic: cmd.Topic},
		auth.ConfirmSubscribeExact{URL: cmd.URL, Recovery: cmd.Recovery, Topic: cmd.Topic}
}

// change checks a subscribe or unsubscribe (its glob, URLs and row size),
// verifies the client's signature (over tracing and cmd) and applies cmd
// through Raft.
func (s *Server) change(c echo.Context, cmd fsm.Command, tracing []byte) error {
	op := cmd.Op.String()
	if isGlobChange(cmd.Op) {
		if err := s.checkGlob(cmd.Glob); err != nil {
			return badRequest(op, err)
		}
	}
	subscribe := cmd.Op == fsm.OpSubscribeExact || cmd.Op == fsm.OpSubscribeGlob
	if subscribe {
		if err := s.checkURLs(cmd.URL, cmd.Recovery); err != nil {
			return badRequest(op, err)
		}
	} else if err := checkURL("url", cmd.URL); err != nil {
		return badRequest(op, err)
	}
	if err := checkRowLen(cmd.URL, len(cmd.Topic)+len(cmd.Glob)); err != nil {
		return badRequest(op, err)
	}
	signed, confirm := changeMessages(cmd, tracing)
	r, replay := s.auth.VerifyDeferred(c.Request().Context(), signed, c.Request().Header.Get("Authorization"))
	if r != auth.OK {
		return authError(r, op)
	}
	cmd.AuthCode = authCode(replay)
	if subscribe {
		cmd.MaxPerURL = s.cfg.MaxSubscriptionsPerURL
	}
	outcome, err := s.apply(c, cmd)
	if err != nil {
		return err
	}
	return s.respondChange(c, outcome, confirm)
}

func (s *Server) checkSubscriptions(c echo.Context) error {
	body, err := readBody(c, s.cfg.MaxSmallBody)
	if err != nil {
		return err
	}
	m, err := wire.ParseCheckSubscriptions(body)
	if err != nil {
		return badRequest("check_subscriptions", err)
	}
	if r := s.auth.Verify(c.Request().Context(), auth.CheckSubscriptions{
		Tracing: m.Tracing, URL: m.URL,
	}, c.Request().Header.Get("Authorization")); r != auth.OK {
		return authError(r, "check_subscriptions")
	}
	exact, globs, err := s.table.List(m.URL)
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "subscription table unavailable").SetInternal(err)
	}
	b := wire.NewEtagBuilder(m.URL)
	for _, e := range exact {
		b.AddExact([]byte(e.Key), e.Recovery)
	}
	b.StartGlobs()
	for _, g := range globs {
		b.AddGlob(g.Key, g.Recovery)
	}
	etag := b.Sum()
	authz, err := s.auth.Authorize(auth.CheckSubscriptionsResponse{Etag: etag})
	if err != nil {
		return fmt.Errorf("sign check_subscriptions response: %w", err)
	}
	out, err := wire.AppendResponseCheckSubscriptions(nil, authz, nil, etag)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, octetStream, out)
}

var errEtagMismatch = errors.New("the etag does not match the listed subscriptions")

// setSubscriptions authenticates the request from the fields before the
// lists (all the signature covers) and only then reads the lists, so an
// unauthenticated client cannot make the node hold megabytes of them.
func (s *Server) setSubscriptions(c echo.Context) error {
	req := c.Request()
	limit := s.cfg.MaxSetSubscriptionsBody
	if req.ContentLength > limit {
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("body of %d bytes exceeds the limit of %d", req.ContentLength, limit))
	}
	var head bytes.Buffer
	body := io.LimitReader(req.Body, limit+1)
	h, err := wire.ReadSetSubscriptionsHeader(io.TeeReader(body, &head))
	if err != nil {
		return bodyError("set_subscriptions", err)
	}
	r, replay := s.auth.VerifyDeferred(req.Context(), auth.SetSubscriptions{
		Tracing: h.Tracing, URL: h.URL, Etag: h.Etag,
	}, req.Header.Get("Authorization"))
	if r != auth.OK {
		return authError(r, "set_subscriptions")
	}
	if err := s.checkURLPolicy("url", h.URL); err != nil {
		return badRequest("set_subscriptions", err)
	}
	raw, err := readRest(head.Bytes(), body, limit)
	if err != nil {
		return err
	}
	m, err := wire.ParseSetSubscriptionsMax(raw, s.cfg.MaxSubscriptionsPerURL)
	if errors.Is(err, wire.ErrTooManyEntries) {
		return echo.NewHTTPError(http.StatusBadRequest,
			fmt.Sprintf("set_subscriptions: too many subscriptions for this URL (limit %d)", s.cfg.MaxSubscriptionsPerURL)).SetInternal(err)
	}
	if err != nil {
		return badRequest("set_subscriptions", err)
	}
	// The signature covers only the etag; recomputing it from the lists
	// is what binds the lists to the signature.
	etag := wire.Etag(m.URL, m.Exact, m.Globs)
	if etag != m.Etag {
		return badRequest("set_subscriptions", errEtagMismatch)
	}
	cmd, err := s.setSubscriptionsCommand(m)
	if err != nil {
		return badRequest("set_subscriptions", err)
	}
	cmd.AuthCode = authCode(replay)
	cmd.MaxPerURL = s.cfg.MaxSubscriptionsPerURL
	outcome, err := s.apply(c, cmd)
	if err != nil {
		return err
	}
	if outcome == fsm.Replayed {
		return authError(auth.Forbidden, "set_subscriptions (replayed authorization)")
	}
	return s.respondGeneric(c, "set_subscriptions response", auth.SetSubscriptionsResponse{Etag: etag})
}

// readRest reads the rest of a body of at most limit bytes after head,
// growing the buffer as bytes arrive (never from Content-Length).
func readRest(head []byte, r io.Reader, limit int64) ([]byte, error) {
	b := bytes.NewBuffer(head)
	if _, err := b.ReadFrom(r); err != nil {
		return nil, bodyError("set_subscriptions", err)
	}
	if int64(b.Len()) > limit {
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("body exceeds the limit of %d bytes", limit))
	}
	return b.Bytes(), nil
}

// bodyError maps a failure to read a body: too slow is 408, the rest 400.
func bodyError(what string, err error) error {
	if errors.Is(err, errTooSlow) {
		return echo.NewHTTPError(http.StatusRequestTimeout, what+": "+err.Error()).SetInternal(err)
	}
	return badRequest(what, err)
}

// setSubscriptionsCommand checks every entry of m and builds its command.
func (s *Server) setSubscriptionsCommand(m wire.SetSubscriptions) (fsm.Command, error) {
	cmd := fsm.Command{Op: fsm.OpSetSubscriptions, URL: m.URL}
	if len(m.Exact) > 0 {
		cmd.Exact = make([]fsm.ExactEntry, 0, len(m.Exact))
	}
	for _, e := range m.Exact {
		if err := s.checkEntry(m.URL, e.Recovery, len(e.Topic)); err != nil {
			return fsm.Command{}, err
		}
		cmd.Exact = append(cmd.Exact, fsm.ExactEntry{Topic: e.Topic, Recovery: e.Recovery})
	}
	if len(m.Globs) > 0 {
		cmd.Globs = make([]fsm.GlobEntry, 0, len(m.Globs))
	}
	for _, g := range m.Globs {
		if err := s.checkGlob(g.Glob); err != nil {
			return fsm.Command{}, err
		}
		if err := s.checkEntry(m.URL, g.Recovery, len(g.Glob)); err != nil {
			return fsm.Command{}, err
		}
		cmd.Globs = append(cmd.Globs, fsm.GlobEntry{Glob: g.Glob, Recovery: g.Recovery})
	}
	return cmd, nil
}

// checkEntry checks one entry of a set_subscriptions of url: its recovery
// URL, if any, and the size of its row.
func (s *Server) checkEntry(url, recovery string, keyLen int) error {
	if recovery != "" {
		if err := s.checkURLPolicy("recovery url", recovery); err != nil {
			return err
		}
	}
	return checkRowLen(url, keyLen)
}

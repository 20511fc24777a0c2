// Package api serves the broadcaster's HTTP protocol: the endpoints of the
// lonelypss stateless protocol (notify, subscribe, unsubscribe,
// check_subscriptions, set_subscriptions) and the health endpoints (the
// websocket endpoints live in api/ws). Bodies are decoded by
// api/wire and authorised by api/auth; subscription changes go to the
// cluster, deliveries to fanout.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/cluster"
	"github.com/lonelypsd/lonelypsd/fanout"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// Writer commits subscription changes: the local Raft node, which forwards
// to the leader when it is not the leader itself.
type Writer interface {
	Apply(ctx context.Context, cmd fsm.Command) (fsm.Result, error)
}

// Readiness reports whether this node can serve writes and up-to-date
// reads.
type Readiness interface {
	Ready() error
}

// Reader is the local replica of the subscription table.
type Reader interface {
	List(url string) (exact, globs []fsm.Subscription, err error)
}

// Config tunes request handling. Zero values take the defaults.
type Config struct {
	// SpoolThreshold: notify messages longer than this are written to a
	// temporary file instead of memory.
	SpoolThreshold int64
	// SpoolDir holds those files; empty means the system temp folder.
	SpoolDir string
	// MaxSmallBody bounds subscribe, unsubscribe and check bodies; their
	// fields are at most four 64 KiB strings.
	MaxSmallBody int64
	// MaxSetSubscriptionsBody bounds set_subscriptions bodies, which are
	// applied as one Raft entry.
	MaxSetSubscriptionsBody int64
	// WriteTimeout bounds how long a subscription change waits for Raft
	// before answering 503.
	WriteTimeout time.Duration
}

const (
	DefaultSpoolThreshold          = 10 << 20
	DefaultMaxSmallBody            = 4*65535 + 64
	DefaultMaxSetSubscriptionsBody = 16 << 20
	DefaultWriteTimeout            = 5 * time.Second
)

func (c *Config) setDefaults() {
	if c.SpoolThreshold <= 0 {
		c.SpoolThreshold = DefaultSpoolThreshold
	}
	if c.SpoolDir == "" {
		c.SpoolDir = os.TempDir()
	}
	if c.MaxSmallBody <= 0 {
		c.MaxSmallBody = DefaultMaxSmallBody
	}
	if c.MaxSetSubscriptionsBody <= 0 {
		c.MaxSetSubscriptionsBody = DefaultMaxSetSubscriptionsBody
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
}

// Server holds the handlers' dependencies.
type Server struct {
	cfg    Config
	writer Writer
	ready  Readiness
	table  Reader
	fanout *fanout.Fanout
	auth   auth.Pair
	log    *slog.Logger
	echo   *echo.Echo
}

// New builds the HTTP handler of a broadcaster node.
func New(cfg Config, writer Writer, ready Readiness, table Reader, fan *fanout.Fanout, pair auth.Pair, log *slog.Logger) *Server {
	cfg.setDefaults()
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, writer: writer, ready: ready, table: table, fanout: fan, auth: pair, log: log}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.POST("/v1/notify", s.notify)
	e.POST("/v1/subscribe/exact", s.subscribeExact)
	e.POST("/v1/subscribe/glob", s.subscribeGlob)
	e.POST("/v1/unsubscribe/exact", s.unsubscribeExact)
	e.POST("/v1/unsubscribe/glob", s.unsubscribeGlob)
	e.POST("/v1/check_subscriptions", s.checkSubscriptions)
	e.POST("/v1/set_subscriptions", s.setSubscriptions)
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	s.echo = e
	return s
}

// Echo exposes the router so other packages can add routes (websocket,
// cluster endpoints).
func (s *Server) Echo() *echo.Echo { return s.echo }

// Handler is the http.Handler to serve.
func (s *Server) Handler() http.Handler { return s.echo }

// NewHTTPServer wraps h with the timeouts a long-lived broadcaster needs:
// headers must arrive promptly, but bodies may stream for as long as a
// multi-GiB message takes, so there is no read or write timeout.
func NewHTTPServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// handleError writes errors as text a person can read. Protocol clients
// only look at the status code of a refusal.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, msg := http.StatusInternalServerError, "internal error"
	var he *echo.HTTPError
	if errors.As(err, &he) {
		status = he.Code
		msg = fmt.Sprint(he.Message)
	}
	req := c.Request()
	if status >= 500 && status != http.StatusServiceUnavailable {
		s.log.Error("request failed", "method", req.Method, "path", req.URL.Path, "status", status, "err", err)
	} else {
		s.log.Info("request refused", "method", req.Method, "path", req.URL.Path, "status", status, "reason", msg)
	}
	if req.Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	_ = c.String(status, msg+"\n")
}

func (s *Server) healthz(c echo.Context) error {
	return c.String(http.StatusOK, "ok\n")
}

func (s *Server) readyz(c echo.Context) error {
	if err := s.ready.Ready(); err != nil {
		// Answered directly, not through handleError: probes poll this
		// every few seconds and a not-ready node is no news for the log.
		return c.String(http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
	}
	return c.String(http.StatusOK, "ready\n")
}

// writeError maps a failed subscription change to a status: every
// "try again" condition is 503, which the Python client retries.
func writeError(err error) error {
	switch {
	case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrNotLeader),
		errors.Is(err, cluster.ErrTimeout), errors.Is(err, cluster.ErrShutdown),
		errors.Is(err, context.DeadlineExceeded):
		return echo.NewHTTPError(http.StatusServiceUnavailable, "subscription store unavailable, retry: "+err.Error()).SetInternal(err)
	}
	return echo.NewHTTPError(http.StatusInternalServerError, "subscription change failed").SetInternal(err)
}

// authError maps a refused authorisation to its status.
func authError(r auth.Result, what string) error {
	switch r {
	case auth.Unauthorized:
		return echo.NewHTTPError(http.StatusUnauthorized, what+": authorization required")
	case auth.Unavailable:
		return echo.NewHTTPError(http.StatusServiceUnavailable, what+": authorization backend unavailable, retry")
	}
	return echo.NewHTTPError(http.StatusForbidden, what+": authorization refused")
}

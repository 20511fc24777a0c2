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
	"github.com/labstack/echo/v4/middleware"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/metrics"
	"github.com/lonelypsd/lonelypsd/api/spool"
	"github.com/lonelypsd/lonelypsd/api/wire"
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

// URLPolicy decides which subscriber and recovery URLs may be stored; the
// error's message is the 400 answer's reason.
type URLPolicy interface {
	CheckURL(rawURL string) error
}

// Config tunes request handling. Zero values take the defaults.
type Config struct {
	// Metrics counts the notifies received; nil counts nothing.
	Metrics *metrics.Notifies
	// Spool holds notify message bodies within the node-wide memory
	// budget it shares with the websockets. Nil makes one of the
	// server's own from SpoolDir, SpoolThreshold, MaxBufferedBytes and
	// DiskReserve.
	Spool *spool.Spool
	// SpoolThreshold: notify messages longer than this are written to a
	// temporary file instead of memory.
	SpoolThreshold int64
	// SpoolDir holds those files; empty means the system temp folder.
	SpoolDir string
	// MaxBufferedBytes bounds the message bodies held in memory.
	MaxBufferedBytes int64
	// DiskReserve is the free space a spooled message must leave on the
	// spool's volume (503 otherwise); negative turns the check off.
	DiskReserve int64
	// MaxMessageSize refuses (413) notifies whose message is longer,
	// before reading it; 0 means no limit.
	MaxMessageSize int64
	// MaxGlobLength refuses (400) longer glob patterns.
	MaxGlobLength int
	// MaxSubscriptionsPerURL bounds the subscriptions of one URL; it goes
	// into every subscribe command, and a set_subscriptions with more
	// entries is refused before it is proposed.
	MaxSubscriptionsPerURL int
	// URLPolicy, when set, vets every subscriber and recovery URL of a
	// subscribe or set_subscriptions.
	URLPolicy URLPolicy
	// ConnLimits are passed to NewHTTPServer; MaxConnections to
	// LimitListener.
	ConnLimits     ConnLimits
	MaxConnections int
	// MaxSmallBody bounds subscribe, unsubscribe and check bodies; their
	// fields are at most four 64 KiB strings.
	MaxSmallBody int64
	// MaxSetSubscriptionsBody bounds set_subscriptions bodies, which are
	// applied as one Raft entry.
	MaxSetSubscriptionsBody int64
	// WriteTimeout bounds how long a subscription change waits for Raft
	// before answering 503.
	WriteTimeout time.Duration
	// AccessLog logs every request (method, path, status, bytes,
	// duration, remote address) at info level; off, only failures are
	// logged.
	AccessLog bool
}

const (
	DefaultSpoolThreshold          = 10 << 20
	DefaultMaxSmallBody            = 4*65535 + 64
	DefaultMaxSetSubscriptionsBody = 16 << 20
	DefaultWriteTimeout            = 5 * time.Second
	DefaultMaxGlobLength           = 4096
	DefaultMaxSubscriptionsPerURL  = 10000
)

// WithDefaults returns c with every field left zero set to its default.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	positive(&c.SpoolThreshold, DefaultSpoolThreshold)
	if c.SpoolDir == "" {
		c.SpoolDir = os.TempDir()
	}
	positive(&c.MaxSmallBody, DefaultMaxSmallBody)
	positive(&c.MaxSetSubscriptionsBody, DefaultMaxSetSubscriptionsBody)
	positive(&c.WriteTimeout, DefaultWriteTimeout)
	positive(&c.MaxGlobLength, DefaultMaxGlobLength)
	positive(&c.MaxSubscriptionsPerURL, DefaultMaxSubscriptionsPerURL)
	positive(&c.MaxBufferedBytes, spool.DefaultMaxBuffered)
	orDefault(&c.ConnLimits.MinBodyRate, DefaultMinBodyRate)
	orDefault(&c.ConnLimits.BodyRateWindow, DefaultBodyRateWindow)
}

// Server holds the handlers' dependencies.
type Server struct {
	cfg    Config
	bodies *spool.Spool
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
	s := &Server{cfg: cfg, bodies: cfg.Spool, writer: writer, ready: ready, table: table, fanout: fan, auth: pair, log: log}
	if s.bodies == nil {
		s.bodies = spool.New(spool.Config{
			Dir: cfg.SpoolDir, Threshold: cfg.SpoolThreshold, MaxBuffered: cfg.MaxBufferedBytes, DiskReserve: cfg.DiskReserve,
		}, log)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	if cfg.AccessLog {
		e.Use(accessLog(log))
	}
	e.POST("/v1/notify", s.notify)
	e.POST("/v1/subscribe/exact", changeRoute(s, fsm.OpSubscribeExact, wire.ParseSubscribeExact, exactCommand))
	e.POST("/v1/subscribe/glob", changeRoute(s, fsm.OpSubscribeGlob, wire.ParseSubscribeGlob, globCommand))
	e.POST("/v1/unsubscribe/exact", changeRoute(s, fsm.OpUnsubscribeExact, wire.ParseUnsubscribeExact, exactCommand))
	e.POST("/v1/unsubscribe/glob", changeRoute(s, fsm.OpUnsubscribeGlob, wire.ParseUnsubscribeGlob, globCommand))
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

// NewHTTPServer wraps h with the limits a long-lived broadcaster needs:
// headers must arrive promptly, and bodies keep arriving at lim's minimum
// rate, but they may stream for as long as a multi-GiB message takes, so
// there is no overall read or write timeout. Serve it on a listener from
// LimitListener to cap the connections.
func NewHTTPServer(addr string, h http.Handler, lim ConnLimits, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.Default()
	}
	orDefault(&lim.MinBodyRate, DefaultMinBodyRate)
	orDefault(&lim.BodyRateWindow, DefaultBodyRateWindow)
	orDefault(&lim.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	orDefault(&lim.IdleTimeout, DefaultIdleTimeout)
	return &http.Server{
		Addr:              addr,
		Handler:           minRate(h, lim.MinBodyRate, lim.BodyRateWindow),
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// orDefault sets *v to def when it is zero; negative values stay (off).
func orDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// positive sets *v to def unless it is already positive.
func positive[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
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

// Spool is the store of message bodies in use, for sharing with the
// websocket hub.
func (s *Server) Spool() *spool.Spool { return s.bodies }

// unavailable is implemented by errors of a store that is temporarily
// unable to serve (no leader, shutting down, disk full); errors.As finds
// it anywhere in a chain.
type unavailable interface {
	Unavailable() bool
}

// isUnavailable reports a "try again" condition: the Python client retries
// on 503.
func isUnavailable(err error) bool {
	var u unavailable
	return (errors.As(err, &u) && u.Unavailable()) ||
		errors.Is(err, context.DeadlineExceeded) || spool.IsNoSpace(err)
}

// clientFault is implemented by errors that are the client's fault (a
// command the state machine would refuse as malformed).
type clientFault interface{ BadRequest() bool }

func isBadRequest(err error) bool {
	var b clientFault
	return (errors.As(err, &b) && b.BadRequest()) || errors.Is(err, fsm.ErrInvalidCommand)
}

// writeError maps a failed subscription change to a status: 503 for every
// "try again" condition, 400 for a command the state machine refused as
// malformed, 500 otherwise.
func writeError(err error) error {
	switch {
	case isUnavailable(err):
		return echo.NewHTTPError(http.StatusServiceUnavailable, "subscription store unavailable, retry: "+err.Error()).SetInternal(err)
	case isBadRequest(err):
		return echo.NewHTTPError(http.StatusBadRequest, "subscription change refused: "+err.Error()).SetInternal(err)
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

// accessLog logs each request once it is answered. The query is left
// out: subscriber URLs and internal parameters can travel in it.
func accessLog(log *slog.Logger) echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogMethod: true, LogURIPath: true, LogStatus: true, LogLatency: true,
		LogRemoteIP: true, LogResponseSize: true, LogContentLength: true, LogError: true,
		LogValuesFunc: func(_ echo.Context, v middleware.RequestLoggerValues) error {
			log.Info("request", "method", v.Method, "path", v.URIPath, "status", v.Status,
				"request_bytes", v.ContentLength, "response_bytes", v.ResponseSize,
				"duration", v.Latency, "remote", v.RemoteIP)
			return nil
		},
	})
}

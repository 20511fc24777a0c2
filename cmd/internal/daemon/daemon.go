// Package daemon assembles one broadcaster node from its parts (Raft node,
// subscription table, fan-out, missed-message sweeper, HTTP API) and runs
// it until its context ends, then shuts it down in order.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lonelypsd/lonelypsd/api"
	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/metrics"
	"github.com/lonelypsd/lonelypsd/api/ws"
	"github.com/lonelypsd/lonelypsd/cluster"
	"github.com/lonelypsd/lonelypsd/fanout"
	"github.com/lonelypsd/lonelypsd/fanout/egress"
	"github.com/lonelypsd/lonelypsd/fanout/health"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// Config is everything a node needs; cmd/lonelypsd fills it from flags.
type Config struct {
	Cluster cluster.Config
	API     api.Config
	Fanout  fanout.Config
	// Egress is the subscriber address policy (allowed and denied ranges,
	// token over http); Run adds the node's own listeners, its internal
	// websocket URLs and whether subscribers get a token.
	Egress egress.Config
	// WS tunes the websocket endpoint; the node's identity, advertised
	// address, TLS and spool settings are filled in by Run.
	WS ws.Config

	HTTPAddr string
	// MetricsAddr, when set, serves GET /metrics on its own listener
	// instead of on the API port.
	MetricsAddr string
	// NoMetrics turns metrics off: nothing is counted and nothing
	// serves /metrics (what their cost is measured against).
	NoMetrics bool
	// Build labels lonelypsd_build_info.
	Build metrics.BuildInfo
	// DebugAddr, when set, serves net/http/pprof on its own listener.
	DebugAddr string
	// SecretsFile is a broadcaster-secrets.json; empty means auth none in
	// both directions.
	SecretsFile string
	// ClusterSecretFile holds the cluster secret when the secrets file
	// does not (or there is none).
	ClusterSecretFile string
	// HMACSkew is the accepted clock skew of HMAC signatures (0: 120 s).
	HMACSkew time.Duration
	// TLSCert and TLSKey (PEM files) serve the API over https.
	TLSCert, TLSKey string
	// TLSCA (PEM file) adds certificate authorities trusted when calling
	// subscribers and peers over https, beyond the system's.
	TLSCA string
	// MissedSweepInterval is how often due MISSED notices are looked for.
	MissedSweepInterval time.Duration
	// MissedRetry is the MISSED schedule.
	MissedRetry fanout.RetryPolicy
	// ShutdownTimeout bounds how long in-flight requests may take to
	// finish after a stop signal.
	ShutdownTimeout time.Duration

	Logger *slog.Logger
	// Ready, when set, is called once the node serves HTTP and the
	// cluster has a leader (or after 30 s without one, with a warning
	// logged), with the address actually bound.
	Ready func(httpAddr string)
}

// failureLogEvery: a subscriber that keeps failing is logged once a
// minute, with the count of failures not logged.
const failureLogEvery = time.Minute

// Run starts the node and blocks until ctx ends, then stops it cleanly:
// the listener closes, in-flight requests (notifies with their
// deliveries) finish within ShutdownTimeout, and the stores close.
func Run(ctx context.Context, cfg Config) error {
	n := &node{cfg: withDefaults(cfg)}
	n.log = n.cfg.Logger
	n.metrics = metrics.New(n.cfg.Build)
	if !n.cfg.NoMetrics {
		n.cfg.API.Metrics = n.metrics.Notifies
		n.cfg.WS.Metrics, n.cfg.WS.Notifies = n.metrics.Websocket, n.metrics.Notifies
		n.cfg.Fanout.Metrics, n.cfg.Fanout.MissedMetrics = n.metrics.Deliveries, n.metrics.Missed
	}
	// One record of delivery health: fanout writes it, the cluster's
	// operator endpoints and pruner read it.
	n.cfg.Fanout.Health = health.NewTracker(0, failureLogEvery)
	n.cfg.Cluster.Health = n.cfg.Fanout.Health
	n.cfg.Cluster.Pruned = func(_ string, rows int) { n.metrics.Pruned.Add(float64(rows)) }
	defer n.closeAll()
	if err := n.prepare(); err != nil {
		return err
	}
	if err := n.openStores(); err != nil {
		return err
	}
	if err := n.wire(ctx); err != nil {
		return err
	}
	return n.serve(ctx)
}

// node is one running broadcaster, assembled step by step by Run.
type node struct {
	cfg       Config
	log       *slog.Logger
	serverTLS *tls.Config
	pair      auth.Pair
	// closers undo what the steps opened, run last first.
	closers []func()

	ln      net.Listener
	metrics *metrics.Node
	raft    *cluster.Node
	missed  *fanout.MissedStore
	fan     *fanout.Fanout
	hub     *ws.Hub
	httpSrv *http.Server
}

func (n *node) onClose(f func()) { n.closers = append(n.closers, f) }

func (n *node) closeAll() {
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
}

// withDefaults fills what the flags leave empty.
func withDefaults(cfg Config) Config {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Cluster.Logger = cfg.Logger
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.MissedSweepInterval <= 0 {
		cfg.MissedSweepInterval = time.Second
	}
	if cfg.MissedRetry.MaxRetries == 0 {
		cfg.MissedRetry = fanout.DefaultRetryPolicy
	}
	if cfg.Cluster.AdvertiseHTTP == "" {
		cfg.Cluster.AdvertiseHTTP = cfg.HTTPAddr
	}
	cfg.Cluster.InternalURLNode = ws.InternalURLNode
	if cfg.API.SpoolDir == "" {
		cfg.API.SpoolDir = filepath.Join(cfg.Cluster.DataDir, "spool")
	}
	return cfg
}

// prepare creates the data folders and loads TLS and the secrets.
func (n *node) prepare() error {
	for _, dir := range []string{n.cfg.Cluster.DataDir, n.cfg.API.SpoolDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create folder %s: %w", dir, err)
		}
	}
	serverTLS, clientTLS, err := loadTLS(n.cfg)
	if err != nil {
		return err
	}
	n.serverTLS = serverTLS
	if clientTLS != nil {
		n.cfg.Fanout.TLS = clientTLS
	}
	if serverTLS != nil {
		n.cfg.Cluster.TLS = clientTLS
		if n.cfg.Cluster.TLS == nil {
			n.cfg.Cluster.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	}
	pair, clusterSecret, closeAuth, err := openAuth(n.cfg, n.log)
	if err != nil {
		return err
	}
	n.onClose(closeAuth)
	n.pair, n.cfg.Cluster.Secret = pair, clusterSecret
	return nil
}

// openStores binds the API port and opens the Raft node (with the table)
// and the missed-notice store.
func (n *node) openStores() error {
	ln, err := net.Listen("tcp", n.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen for http on %s: %w", n.cfg.HTTPAddr, err)
	}
	n.onClose(func() { _ = ln.Close() })
	n.ln = api.LimitListener(ln, n.cfg.API.MaxConnections, n.log)

	// Before Raft opens, so that what it emits while starting is kept.
	if !n.cfg.NoMetrics {
		if err := n.metrics.CaptureRaftMetrics(); err != nil {
			return err
		}
	}
	if n.raft, err = cluster.Open(n.cfg.Cluster); err != nil {
		return err
	}
	n.onClose(func() {
		if err := n.raft.Close(); err != nil {
			n.log.Error("closing raft node", "err", err)
		}
	})
	if n.missed, err = fanout.OpenMissedStore(filepath.Join(n.cfg.Cluster.DataDir, "missed.db"), n.cfg.MissedRetry); err != nil {
		return err
	}
	n.onClose(func() {
		if err := n.missed.Close(); err != nil {
			n.log.Error("closing missed store", "err", err)
		}
	})
	return nil
}

// wire builds the fan-out, the API, the websocket hub and the HTTP server
// over the stores.
func (n *node) wire(ctx context.Context) error {
	cfg := &n.cfg
	var err error
	if cfg.Fanout.Policy, err = subscriberPolicy(ctx, *cfg, n.ln.Addr()); err != nil {
		return err
	}
	// The same policy refuses, at subscribe time, URLs naming an address
	// it would never connect to.
	cfg.API.URLPolicy = cfg.Fanout.Policy
	table := n.raft.FSM()
	// Notifies (HTTP and websocket) pass the node's read barrier before
	// matching: see docs/consistency.md.
	cfg.Fanout.Barrier = n.raft
	n.fan = fanout.New(cfg.Fanout, table, remover{n.raft}, n.pair, n.missed, n.log)
	n.onClose(func() {
		n.fan.Wait()
		n.fan.CloseIdleConnections()
	})

	srv := api.New(cfg.API, n.raft, n.raft, table, n.fan, n.pair, n.log)
	srv.Echo().Any("/cluster/*", echo.WrapHandler(n.raft.Handler()))
	if n.hub, err = ws.New(n.wsConfig(srv), n.raft, table, n.fan, n.pair, n.log); err != nil {
		return err
	}
	n.hub.Register(srv.Echo())
	if !cfg.NoMetrics {
		n.registerGauges(table)
	}
	if cfg.MetricsAddr == "" && !cfg.NoMetrics {
		srv.Echo().GET("/metrics", echo.WrapHandler(n.metrics.Handler()))
	}
	n.onClose(func() {
		// For early returns; after the orderly shutdown this is a no-op.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.hub.Shutdown(ctx)
	})
	n.httpSrv = api.NewHTTPServer(cfg.HTTPAddr, srv.Handler(), cfg.API.ConnLimits, n.log)
	n.httpSrv.TLSConfig = n.serverTLS
	// For early returns: requests still running must end before the
	// stores close. After the orderly shutdown this is a no-op.
	n.onClose(func() { _ = n.httpSrv.Close() })
	return nil
}

// registerGauges adds the metrics read from the node's parts at scrape
// time.
func (n *node) registerGauges(table *fsm.FSM) {
	n.metrics.RegisterSubscriptions(table.Counts)
	n.metrics.RegisterMissedPending(n.missed.PendingCount)
	n.metrics.RegisterWebsocketConnections(n.hub.Connections)
	n.metrics.RegisterRaft(func() metrics.RaftStats {
		s := n.raft.RaftStats()
		return metrics.RaftStats{
			State: strings.ToLower(s.State), Term: s.Term,
			CommitIndex: s.CommitIndex, AppliedIndex: s.AppliedIndex, LeaderChanges: s.LeaderChanges,
		}
	})
}

func (n *node) wsConfig(srv *api.Server) ws.Config {
	c := n.cfg.WS
	c.NodeID = n.cfg.Cluster.NodeID
	if c.AdvertiseHTTP == "" {
		c.AdvertiseHTTP = n.cfg.Cluster.AdvertiseHTTP
	}
	c.TLS = n.serverTLS != nil
	c.Spool, c.MaxMessageSize = srv.Spool(), n.cfg.API.MaxMessageSize
	if c.SpoolDir == "" {
		c.SpoolDir = n.cfg.API.SpoolDir
	}
	if c.SpoolThreshold == 0 {
		c.SpoolThreshold = n.cfg.API.SpoolThreshold
	}
	return c
}

// serve runs the HTTP server, the missed-notice sweeper and the debug
// endpoints until ctx ends, then shuts down in order.
func (n *node) serve(ctx context.Context) error {
	bg, stopBG := context.WithCancel(context.Background())
	sweeper := n.fan.NewSweeper(n.cfg.MissedSweepInterval)
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		sweeper.Run(bg)
	}()
	// The sweeper uses the missed store: it must be gone before the store
	// closes, also when serve returns early.
	n.onClose(func() {
		stopBG()
		<-sweepDone
	})
	if n.cfg.DebugAddr != "" {
		dbg, err := startDebug(n.cfg.DebugAddr, n.log)
		if err != nil {
			return err
		}
		n.onClose(func() { _ = dbg.Close() })
	}
	if n.cfg.MetricsAddr != "" && !n.cfg.NoMetrics {
		msrv, err := startSide("metrics", n.cfg.MetricsAddr, n.metricsMux(), n.log)
		if err != nil {
			return err
		}
		n.onClose(func() { _ = msrv.Close() })
	}
	serveErr := make(chan error, 1)
	go func() {
		if n.serverTLS != nil {
			serveErr <- n.httpSrv.ServeTLS(n.ln, "", "")
			return
		}
		serveErr <- n.httpSrv.Serve(n.ln)
	}()
	n.becomeReady(ctx)

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	}
	n.shutdown()
	stopBG()
	<-sweepDone
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}

// becomeReady waits (30 s at most) for a leader, starts the hub and tells
// the caller the node is up.
func (n *node) becomeReady(ctx context.Context) {
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := n.raft.WaitForLeader(waitCtx)
	cancel()
	if err != nil && ctx.Err() == nil {
		n.log.Warn("no leader yet; writes answer 503 until there is one", "err", err)
	}
	// Rows a crashed earlier process of this node left behind are removed
	// in the background, retrying until there is a leader.
	n.hub.Start()
	if n.cfg.Ready != nil && ctx.Err() == nil {
		n.cfg.Ready(n.ln.Addr().String())
	}
}

// shutdown ends the websockets and the HTTP requests within
// ShutdownTimeout.
func (n *node) shutdown() {
	n.log.Info("shutting down", "timeout", n.cfg.ShutdownTimeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
	defer cancel()
	// Websockets first, while Raft is open: their in-flight notifies end,
	// then this process's rows are removed. http.Server.Shutdown would not
	// wait for them (they are hijacked connections).
	if err := n.hub.Shutdown(ctx); err != nil {
		n.log.Warn("websocket shutdown incomplete", "err", err)
	}
	if err := n.httpSrv.Shutdown(ctx); err != nil {
		n.log.Warn("requests still running at shutdown deadline", "err", err)
		_ = n.httpSrv.Close()
	}
}

// subscriberPolicy builds the address policy of deliveries: the node's own
// API and Raft listeners are refused, except for its internal websocket
// URLs, and a token to subscribers needs https unless allowed otherwise.
func subscriberPolicy(ctx context.Context, cfg Config, api net.Addr) (*egress.Policy, error) {
	ec := cfg.Egress
	ec.OwnListeners = append(slices.Clone(ec.OwnListeners), api.String(), cfg.Cluster.RaftAddr)
	// Advertised addresses reach this node too (through NAT, say); names
	// are left out, as they may not resolve yet at start-up.
	for _, a := range []string{cfg.Cluster.AdvertiseHTTP, cfg.Cluster.AdvertiseRaft} {
		if host, _, err := net.SplitHostPort(a); err == nil {
			if _, err := netip.ParseAddr(host); err == nil {
				ec.OwnListeners = append(ec.OwnListeners, a)
			}
		}
	}
	advertiseWS := cfg.WS.AdvertiseHTTP // as Run gives it to the hub
	if advertiseWS == "" {
		advertiseWS = cfg.Cluster.AdvertiseHTTP
	}
	ec.Exempt = ws.OwnInternalURL(advertiseWS, cfg.Cluster.NodeID)
	ec.ClusterRow = ws.IsInternalURL
	if cfg.SecretsFile != "" {
		secrets, err := auth.LoadSecrets(cfg.SecretsFile)
		if err != nil {
			return nil, err
		}
		ec.TokenAuth = secrets.ToSubscriber.Type == auth.TypeToken
	}
	p, err := egress.New(ctx, ec)
	if err != nil {
		return nil, fmt.Errorf("subscriber address policy: %w", err)
	}
	return p, nil
}

// remover removes subscriptions whose subscriber answered
// UNSUBSCRIBE_IMMEDIATE, through Raft like any other change.
type remover struct{ node *cluster.Node }

func (r remover) Remove(ctx context.Context, s fsm.Subscription) error {
	_, err := r.node.Apply(ctx, s.Unsubscribe())
	return err
}

// startDebug serves the pprof endpoints, separate from the API so they are
// never exposed where the API is.
func startDebug(addr string, log *slog.Logger) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return startSide("debug", addr, mux, log)
}

func (n *node) metricsMux() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", n.metrics.Handler())
	return mux
}

// startSide serves h on a listener of its own, apart from the API.
func startSide(what, addr string, h http.Handler, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for %s on %s: %w", what, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info(what+" endpoints listening", "addr", ln.Addr().String())
	return srv, nil
}

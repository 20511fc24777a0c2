// Package broadcaster assembles one broadcaster node from its parts (Raft
// node, subscription table, fan-out, missed-message sweeper, HTTP API and
// websockets). Run serves it on a listener of its own until its context
// ends, as cmd/lonelypsd does; Open gives a node whose Handler a Go
// program mounts in its own HTTP server, under a prefix if it likes.
package broadcaster

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
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lonelypsd/lonelypsd/api"
	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/metrics"
	"github.com/lonelypsd/lonelypsd/api/spool"
	"github.com/lonelypsd/lonelypsd/api/ws"
	"github.com/lonelypsd/lonelypsd/cluster"
	"github.com/lonelypsd/lonelypsd/fanout"
	"github.com/lonelypsd/lonelypsd/fanout/egress"
	"github.com/lonelypsd/lonelypsd/fanout/health"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// Config is everything a node needs; cmd/lonelypsd fills it from flags.
// The zero value of every field but Cluster.NodeID, Cluster.RaftAddr and
// Cluster.DataDir takes the default the flags document.
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

	// HTTPAddr is the HOST:PORT the API listens on: Run binds it; an
	// embedded node is told the address of the server it is mounted in,
	// which its subscriber address policy refuses to deliver to.
	HTTPAddr string
	// BasePath is the path prefix the API is mounted under (embedded:
	// e.g. "/pubsub"; Run serves at the root). Every member of a cluster
	// must use the same.
	BasePath string
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

// Run starts the node on its own listener (HTTPAddr) and blocks until ctx
// ends, then stops it cleanly: the listener closes, in-flight requests
// (notifies with their deliveries) finish within ShutdownTimeout, and the
// stores close.
func Run(ctx context.Context, cfg Config) error {
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen for http on %s: %w", cfg.HTTPAddr, err)
	}
	cfg.HTTPAddr = ln.Addr().String()
	b, err := Open(ctx, cfg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer b.closeAll()
	b.ln = api.LimitListener(ln, max(b.cfg.API.MaxConnections, 0), b.log)
	b.httpSrv = api.NewHTTPServer(b.cfg.HTTPAddr, b.handler, b.cfg.API.ConnLimits, b.log)
	b.httpSrv.TLSConfig = b.serverTLS
	// For early returns: requests still running must end before the
	// stores close. After the orderly shutdown this is a no-op.
	b.onClose(func() { _ = b.httpSrv.Close() })
	return b.serve(ctx)
}

// Open starts a node without serving its API: mount Handler in an HTTP
// server (under BasePath) and call Close after that server has shut
// down. It returns once the stores are open and Raft runs; the node
// answers 503 to writes until the cluster has a leader.
func Open(ctx context.Context, cfg Config) (*Broadcaster, error) {
	b := &Broadcaster{cfg: withDefaults(cfg), ready: make(chan struct{}), readyDone: make(chan struct{})}
	b.log = b.cfg.Logger
	b.metrics = metrics.New(b.cfg.Build)
	if !b.cfg.NoMetrics {
		b.cfg.API.Metrics = b.metrics.Notifies
		b.cfg.WS.Metrics, b.cfg.WS.Notifies = b.metrics.Websocket, b.metrics.Notifies
		b.cfg.Fanout.Metrics, b.cfg.Fanout.MissedMetrics = b.metrics.Deliveries, b.metrics.Missed
	}
	// One record of delivery health: fanout writes it, the cluster's
	// operator endpoints and pruner read it.
	b.cfg.Fanout.Health = health.NewTracker(0, failureLogEvery)
	b.cfg.Cluster.Health = b.cfg.Fanout.Health
	b.cfg.Cluster.Pruned = func(_ string, rows int) { b.metrics.Pruned.Add(float64(rows)) }
	steps := []func() error{b.prepare, b.openStores, func() error { return b.wire(ctx) }, b.startBackground}
	for _, step := range steps {
		if err := step(); err != nil {
			b.closeAll()
			return nil, err
		}
	}
	return b, nil
}

// Handler serves the node's API: the protocol's /v1 endpoints, the
// websocket, /cluster (peers and operators), /healthz, /readyz and
// /metrics (unless MetricsAddr or NoMetrics). Strip BasePath before it,
// e.g. http.StripPrefix("/pubsub", b.Handler()).
func (b *Broadcaster) Handler() http.Handler { return b.handler }

// Close ends the websockets within ctx, waits for deliveries under way,
// and closes Raft and the stores. Shut down the HTTP server the handler
// is mounted in first: a request still running when the stores close
// fails.
func (b *Broadcaster) Close(ctx context.Context) error {
	b.shutdownOnce.Do(func() {
		b.stopBackground()
		if err := b.hub.Shutdown(ctx); err != nil {
			b.log.Warn("websocket shutdown incomplete", "err", err)
		}
		b.closeAll()
	})
	return nil
}

// Broadcaster is one running node, assembled step by step by Open.
type Broadcaster struct {
	cfg       Config
	log       *slog.Logger
	serverTLS *tls.Config
	pair      auth.Pair
	// closers undo what the steps opened, run last first; closeAll runs
	// them once.
	closers      []func()
	closed       bool
	shutdownOnce sync.Once
	handler      http.Handler
	// ready is closed once the cluster has a leader and the hub runs;
	// stopBG stops the background work, readyDone is closed when the wait
	// for readiness has ended.
	ready     chan struct{}
	stopBG    context.CancelFunc
	readyDone chan struct{}

	ln      net.Listener
	metrics *metrics.Node
	raft    *cluster.Node
	missed  *fanout.MissedStore
	fan     *fanout.Fanout
	hub     *ws.Hub
	httpSrv *http.Server
}

func (n *Broadcaster) onClose(f func()) { n.closers = append(n.closers, f) }

func (n *Broadcaster) closeAll() {
	if n.closed {
		return
	}
	n.closed = true
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
	if cfg.HMACSkew <= 0 {
		cfg.HMACSkew = auth.DefaultSkew
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
	cfg.Cluster.BasePath = cfg.BasePath
	if cfg.API.SpoolDir == "" {
		cfg.API.SpoolDir = filepath.Join(cfg.Cluster.DataDir, "spool")
	}
	// Where a zero field of a part means "none" rather than its default,
	// it takes the default the flags give; a negative value means none.
	if cfg.Cluster.DiskReserve == 0 {
		cfg.Cluster.DiskReserve = spool.DefaultDiskReserve
	}
	if cfg.API.DiskReserve == 0 {
		cfg.API.DiskReserve = cfg.Cluster.DiskReserve
	}
	if cfg.API.MaxConnections == 0 {
		cfg.API.MaxConnections = api.DefaultMaxConnections
	}
	return cfg
}

// Defaults returns cfg with every field left zero set to its default,
// its parts' included: what a node runs with, and what lonelypsd's flags
// default to.
func Defaults(cfg Config) (Config, error) {
	cfg = withDefaults(cfg)
	cfg.Cluster = cfg.Cluster.WithDefaults()
	cfg.API = cfg.API.WithDefaults()
	cfg.Fanout = cfg.Fanout.WithDefaults()
	b := &Broadcaster{cfg: cfg}
	ws, err := b.wsConfig(nil).WithDefaults()
	cfg.WS = ws
	return cfg, err
}

// prepare creates the data folders and loads TLS and the secrets.
func (n *Broadcaster) prepare() error {
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

// openStores opens the Raft node (with the table) and the missed-notice
// store.
func (n *Broadcaster) openStores() error {
	var err error
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
func (n *Broadcaster) wire(ctx context.Context) error {
	cfg := &n.cfg
	var err error
	if cfg.Fanout.Policy, err = subscriberPolicy(ctx, *cfg); err != nil {
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
	n.handler = srv.Handler()
	srv.Echo().Any("/cluster/*", echo.WrapHandler(n.raft.Handler()))
	if n.hub, err = ws.New(n.wsConfig(srv), n.raft, table, n.fan, n.pair, n.log); err != nil {
		return err
	}
	n.hub.Register(srv.Echo())
	n.fan.SetLocal(n.hub)
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
	return nil
}

// registerGauges adds the metrics read from the node's parts at scrape
// time.
func (n *Broadcaster) registerGauges(table *fsm.FSM) {
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

func (n *Broadcaster) wsConfig(srv *api.Server) ws.Config {
	c := n.cfg.WS
	c.NodeID, c.BasePath = n.cfg.Cluster.NodeID, n.cfg.BasePath
	if c.AdvertiseHTTP == "" {
		c.AdvertiseHTTP = n.cfg.Cluster.AdvertiseHTTP
	}
	c.TLS = n.serverTLS != nil
	c.MaxMessageSize = n.cfg.API.MaxMessageSize
	if srv != nil {
		c.Spool = srv.Spool()
	}
	if c.SpoolDir == "" {
		c.SpoolDir = n.cfg.API.SpoolDir
	}
	if c.SpoolThreshold == 0 {
		c.SpoolThreshold = n.cfg.API.SpoolThreshold
	}
	return c
}

// startBackground starts the missed-notice sweeper, the side listeners
// (debug, metrics) and, in the background, the wait for a leader after
// which the hub starts.
func (n *Broadcaster) startBackground() error {
	bg, stopBG := context.WithCancel(context.Background())
	n.stopBG = stopBG
	sweeper := n.fan.NewSweeper(n.cfg.MissedSweepInterval)
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		sweeper.Run(bg)
	}()
	go func() {
		defer close(n.readyDone)
		n.becomeReady(bg)
	}()
	// The sweeper uses the missed store: it must be gone before the store
	// closes.
	n.onClose(func() {
		n.stopBackground()
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
	return nil
}

// stopBackground stops the sweeper and the wait for readiness, so the hub
// is not started once its shutdown has begun.
func (n *Broadcaster) stopBackground() {
	n.stopBG()
	<-n.readyDone
}

// serve runs the HTTP server until ctx ends, then shuts down in order.
func (n *Broadcaster) serve(ctx context.Context) error {
	serveErr := make(chan error, 1)
	go func() {
		if n.serverTLS != nil {
			serveErr <- n.httpSrv.ServeTLS(n.ln, "", "")
			return
		}
		serveErr <- n.httpSrv.Serve(n.ln)
	}()
	if n.cfg.Ready != nil {
		go func() {
			select {
			case <-n.ready:
				n.cfg.Ready(n.ln.Addr().String())
			case <-ctx.Done():
			}
		}()
	}
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	}
	n.shutdown()
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}

// becomeReady waits (30 s at most) for a leader, starts the hub and tells
// the caller the node is up.
func (n *Broadcaster) becomeReady(ctx context.Context) {
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := n.raft.WaitForLeader(waitCtx)
	cancel()
	if err != nil && ctx.Err() == nil {
		n.log.Warn("no leader yet; writes answer 503 until there is one", "err", err)
	}
	if ctx.Err() != nil {
		return
	}
	// Rows a crashed earlier process of this node left behind are removed
	// in the background, retrying until there is a leader.
	n.hub.Start()
	close(n.ready)
}

// shutdown ends the websockets and the HTTP requests within
// ShutdownTimeout.
func (n *Broadcaster) shutdown() {
	n.log.Info("shutting down", "timeout", n.cfg.ShutdownTimeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
	defer cancel()
	n.stopBackground()
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
func subscriberPolicy(ctx context.Context, cfg Config) (*egress.Policy, error) {
	ec := cfg.Egress
	ec.OwnListeners = append(slices.Clone(ec.OwnListeners), cfg.HTTPAddr, cfg.Cluster.RaftAddr)
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

func (n *Broadcaster) metricsMux() http.Handler {
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

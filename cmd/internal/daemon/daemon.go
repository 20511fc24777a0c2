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
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lonelypsd/lonelypsd/api"
	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/ws"
	"github.com/lonelypsd/lonelypsd/cluster"
	"github.com/lonelypsd/lonelypsd/fanout"
	"github.com/lonelypsd/lonelypsd/fanout/egress"
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

// Run starts the node and blocks until ctx ends, then stops it cleanly:
// the listener closes, in-flight requests (notifies with their
// deliveries) finish within ShutdownTimeout, and the stores close.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg.Cluster.Logger = log
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.MissedSweepInterval <= 0 {
		cfg.MissedSweepInterval = time.Second
	}
	if cfg.MissedRetry.MaxRetries == 0 {
		cfg.MissedRetry = fanout.DefaultRetryPolicy
	}

	if err := os.MkdirAll(cfg.Cluster.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data folder: %w", err)
	}
	serverTLS, clientTLS, err := loadTLS(cfg)
	if err != nil {
		return err
	}
	if clientTLS != nil {
		cfg.Fanout.TLS = clientTLS
	}
	if serverTLS != nil {
		cfg.Cluster.TLS = clientTLS
		if cfg.Cluster.TLS == nil {
			cfg.Cluster.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	}
	pair, clusterSecret, closeAuth, err := openAuth(cfg, log)
	if err != nil {
		return err
	}
	defer closeAuth()
	cfg.Cluster.Secret = clusterSecret
	if cfg.Cluster.AdvertiseHTTP == "" {
		cfg.Cluster.AdvertiseHTTP = cfg.HTTPAddr
	}
	cfg.Cluster.InternalURLNode = ws.InternalURLNode
	if cfg.API.SpoolDir == "" {
		cfg.API.SpoolDir = filepath.Join(cfg.Cluster.DataDir, "spool")
	}
	if err := os.MkdirAll(cfg.API.SpoolDir, 0o700); err != nil {
		return fmt.Errorf("create spool folder: %w", err)
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen for http on %s: %w", cfg.HTTPAddr, err)
	}
	defer ln.Close()
	ln = api.LimitListener(ln, cfg.API.MaxConnections, log)

	node, err := cluster.Open(cfg.Cluster)
	if err != nil {
		return err
	}
	defer func() {
		if err := node.Close(); err != nil {
			log.Error("closing raft node", "err", err)
		}
	}()

	missed, err := fanout.OpenMissedStore(filepath.Join(cfg.Cluster.DataDir, "missed.db"), cfg.MissedRetry)
	if err != nil {
		return err
	}
	defer func() {
		if err := missed.Close(); err != nil {
			log.Error("closing missed store", "err", err)
		}
	}()

	if cfg.Fanout.Policy, err = subscriberPolicy(ctx, cfg, ln.Addr()); err != nil {
		return err
	}
	// The same policy refuses, at subscribe time, URLs naming an address
	// it would never connect to.
	cfg.API.URLPolicy = cfg.Fanout.Policy
	table := node.FSM()
	// Notifies (HTTP and websocket) pass the node's read barrier before
	// matching: see docs/consistency.md.
	cfg.Fanout.Barrier = node
	fan := fanout.New(cfg.Fanout, table, remover{node}, pair, missed, log)
	defer fan.Wait()

	srv := api.New(cfg.API, node, node, table, fan, pair, log)
	srv.Echo().Any("/cluster/*", echo.WrapHandler(node.Handler()))

	wsCfg := cfg.WS
	wsCfg.NodeID = cfg.Cluster.NodeID
	if wsCfg.AdvertiseHTTP == "" {
		wsCfg.AdvertiseHTTP = cfg.Cluster.AdvertiseHTTP
	}
	wsCfg.TLS = serverTLS != nil
	wsCfg.Spool, wsCfg.MaxMessageSize = srv.Spool(), cfg.API.MaxMessageSize
	if wsCfg.SpoolDir == "" {
		wsCfg.SpoolDir = cfg.API.SpoolDir
	}
	if wsCfg.SpoolThreshold == 0 {
		wsCfg.SpoolThreshold = cfg.API.SpoolThreshold
	}
	hub, err := ws.New(wsCfg, node, table, fan, pair, log)
	if err != nil {
		return err
	}
	hub.Register(srv.Echo())
	defer func() {
		// For the early returns below; after the orderly shutdown this is
		// a no-op.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hub.Shutdown(ctx)
	}()
	httpSrv := api.NewHTTPServer(cfg.HTTPAddr, srv.Handler(), cfg.API.ConnLimits, log)
	httpSrv.TLSConfig = serverTLS

	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	sweeper := fan.NewSweeper(cfg.MissedSweepInterval)
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		sweeper.Run(bg)
	}()

	if cfg.DebugAddr != "" {
		dbg, err := startDebug(cfg.DebugAddr, log)
		if err != nil {
			return err
		}
		defer dbg.Close()
	}

	serveErr := make(chan error, 1)
	go func() {
		if serverTLS != nil {
			serveErr <- httpSrv.ServeTLS(ln, "", "")
			return
		}
		serveErr <- httpSrv.Serve(ln)
	}()

	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = node.WaitForLeader(waitCtx)
	cancel()
	if err != nil && ctx.Err() == nil {
		log.Warn("no leader yet; writes answer 503 until there is one", "err", err)
	}
	// Rows a crashed earlier process of this node left behind are removed
	// in the background, retrying until there is a leader.
	hub.Start()
	if cfg.Ready != nil && ctx.Err() == nil {
		cfg.Ready(ln.Addr().String())
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	}
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// Websockets first, while Raft is open: their in-flight notifies end,
	// then this process's rows are removed. http.Server.Shutdown would not
	// wait for them (they are hijacked connections).
	if err := hub.Shutdown(shutCtx); err != nil {
		log.Warn("websocket shutdown incomplete", "err", err)
	}
	if err := httpSrv.Shutdown(shutCtx); err != nil {
		log.Warn("requests still running at shutdown deadline", "err", err)
		_ = httpSrv.Close()
	}
	stopBG()
	<-sweepDone
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
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
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for debug on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("profiling endpoints listening", "addr", ln.Addr().String())
	return srv, nil
}

// Command lonelypsd is a clustered broadcaster for pub/sub over HTTP,
// wire-compatible with the Python lonelypss.
//
//	lonelypsd dev                 single node on 127.0.0.1:3003, data in ./lonelypsd-data
//	lonelypsd serve --node-id ... a cluster node
//	lonelypsd setup               write broadcaster and subscriber secrets files
//	lonelypsd listen, notify      subscribe and print, publish
//	lonelypsd cluster             status of a cluster, remove a member
//	lonelypsd train-dict          build a zstd dictionary for --ws-preset-dict
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lonelypsd/lonelypsd/api"
	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/broadcaster"
	"github.com/lonelypsd/lonelypsd/api/metrics"
	"github.com/lonelypsd/lonelypsd/api/spool"
	"github.com/lonelypsd/lonelypsd/api/ws"
	"github.com/lonelypsd/lonelypsd/cluster"
	"github.com/lonelypsd/lonelypsd/fanout"
	"github.com/lonelypsd/lonelypsd/fanout/egress"
)

const usage = `lonelypsd: pub/sub over HTTP, wire-compatible with lonelypss.

Usage:
  lonelypsd dev   [flags]   run a single-node broadcaster with embedded defaults
  lonelypsd serve [flags]   run a node of a broadcaster cluster
  lonelypsd setup [flags]   write broadcaster-secrets.json and subscriber-secrets.json
  lonelypsd listen --topic T | --glob G   subscribe (HTTP or --websocket) and print what arrives
  lonelypsd notify --topic T --message M  publish a message (or --file F, or stdin of any size)
  lonelypsd cluster status|remove         inspect or shrink a cluster
  lonelypsd subs list|remove              list (with delivery health) or remove subscriptions
  lonelypsd snapshot save|restore         back up or restore the subscription table online
  lonelypsd train-dict --out F SAMPLES... build a zstd dictionary for --ws-preset-dict
  lonelypsd version                       version, revision, build date, Go version
  lonelypsd help  [command] show the flags of a command

Every flag of dev and serve may also be given as an environment variable:
--http-addr is LONELYPSD_HTTP_ADDR, --data-dir is LONELYPSD_DATA_DIR, and so
on. A flag on the command line wins over the environment.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev", "serve":
		return runNode(ctx, cmd, rest, stdout, stderr)
	case "setup":
		return runSetup(rest, stdout, stderr)
	case "notify":
		return runNotify(ctx, rest, stdout, stderr)
	case "listen":
		return runListen(ctx, rest, stdout, stderr)
	case "cluster":
		return runCluster(ctx, rest, stdout, stderr)
	case "subs":
		return runSubs(ctx, rest, stdout, stderr)
	case "snapshot":
		return runSnapshot(ctx, rest, stdout, stderr)
	case "train-dict":
		return runTrainDict(rest, stdout, stderr)
	case "version", "--version":
		return runVersion(rest, stdout, stderr)
	case "help", "-h", "--help":
		if len(rest) > 0 {
			return run(ctx, []string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "lonelypsd: unknown command %q\n\n%s", cmd, usage)
	return 2
}

// newFlagSet is the flag set of `lonelypsd name`: refused flags and the
// usage (usage, then each flag with its default) go to stderr.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("lonelypsd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; stop reports that the command ends at once with
// code: 0 after --help, 2 for a refused flag (the flag package has printed
// the usage or the error).
func parseFlags(fs *flag.FlagSet, args []string) (code int, stop bool) {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0, true
	case err != nil:
		return 2, true
	}
	return 0, false
}

// flagAliases pairs each deprecated flag name with the one it stands for,
// both ways.
var flagAliases = map[string]string{
	"ws-max-buffered-bytes": "max-buffered-bytes",
	"max-buffered-bytes":    "ws-max-buffered-bytes",
}

// nodeFlags are the flags of dev and serve.
type nodeFlags struct {
	nodeID, httpAddr, raftAddr, advertiseRaft, dataDir, secrets string
	bootstrap                                                   bool
	logLevel, logFormat, raftLogLevel                           string
	debugAddr, metricsAddr                                      string
	metrics                                                     bool
	advertiseHTTP, join, clusterSecretFile                      string
	bootstrapExpect                                             int
	hmacSkew                                                    time.Duration
	tlsCert, tlsKey, tlsCA                                      string
	ws                                                          ws.Config
	wsCompression, wsTraining                                   bool
	wsPresets                                                   presetFlag

	api                 api.Config // the limits set by flags
	spoolThreshold      int64
	maxSetSubscriptions int64
	writeTimeout        time.Duration
	deliveryTimeout     time.Duration
	deliveryConcurrency int
	deliveryMaxInFlight int
	deliveryMaxPerHost  int
	deliveryHeaderWait  time.Duration
	subscriberAllow     egress.Prefixes
	subscriberDeny      egress.Prefixes
	tokenOverHTTP       bool
	missedSweepInterval time.Duration
	shutdownTimeout     time.Duration
	heartbeatTimeout    time.Duration
	electionTimeout     time.Duration
	leaderLeaseTimeout  time.Duration
	snapshotThreshold   uint64
	trailingLogs        uint64
	snapshotInterval    time.Duration
	readBarrierTimeout  time.Duration
	diskReserve         int64
	pruneAfter          time.Duration
}

func (f *nodeFlags) register(fs *flag.FlagSet, dev bool) {
	defHTTP, defData := "", ""
	if dev {
		defHTTP, defData = "127.0.0.1:3003", "./lonelypsd-data"
	}
	if !dev {
		fs.StringVar(&f.nodeID, "node-id", "", "unique, stable id of this node (required)")
		fs.BoolVar(&f.bootstrap, "bootstrap", false, "form a new single-node cluster if this node has no Raft state yet")
		fs.StringVar(&f.join, "join", "", "other nodes' HTTP API addresses, HOST:PORT[,HOST:PORT...]; a name with several addresses (a headless Service) counts as each")
		fs.IntVar(&f.bootstrapExpect, "bootstrap-expect", 0, "form a new cluster once this many nodes of --join (this one included) know each other")
		fs.StringVar(&f.clusterSecretFile, "cluster-secret-file", "", "file holding the cluster secret (default: the \"cluster\" key of --secrets)")
	}
	fs.StringVar(&f.httpAddr, "http-addr", defHTTP, "HOST:PORT the HTTP API listens on")
	fs.StringVar(&f.advertiseHTTP, "advertise-http", "", "HOST:PORT peers use to reach this node's HTTP API (default: --http-addr)")
	fs.StringVar(&f.raftAddr, "raft-addr", "", "HOST:PORT the Raft transport listens on (dev: the HTTP port + 1)")
	fs.StringVar(&f.advertiseRaft, "advertise-raft", "", "HOST:PORT peers use to reach this node's Raft transport (default: --raft-addr)")
	fs.StringVar(&f.dataDir, "data-dir", defData, "folder for the Raft log, snapshots, subscription table and spool")
	fs.StringVar(&f.secrets, "secrets", "", "broadcaster-secrets.json written by 'lonelypsd setup' (default: auth none both ways)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate (chain) to serve the API over https; with --tls-key")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM file of certificate authorities to trust, besides the system's, when calling https subscribers and peers")
	fs.IntVar(&f.ws.MaxConnections, "ws-max-connections", ws.DefaultMaxConnections, "websocket connections this node accepts at once (503 beyond)")
	fs.IntVar(&f.ws.MaxQueuedMessages, "ws-max-queued-messages", ws.DefaultMaxQueuedMessages, "messages waiting for one slow websocket before it is closed")
	fs.Int64Var(&f.ws.MaxQueuedBytes, "ws-max-queued-bytes", ws.DefaultMaxQueuedBytes, "bytes waiting for one slow websocket before it is closed")
	fs.Int64Var(&f.api.MaxBufferedBytes, "max-buffered-bytes", spool.DefaultMaxBuffered, "message bodies (HTTP notify, websocket, forwarded) all requests may hold in memory together; beyond, bodies go to the spool")
	fs.Int64Var(&f.api.MaxBufferedBytes, "ws-max-buffered-bytes", spool.DefaultMaxBuffered, "deprecated alias of --max-buffered-bytes")
	fs.Int64Var(&f.api.MaxMessageSize, "max-message-size", 0, "longest message accepted by notify, in bytes; longer ones get 413 (a websocket is closed) (0: no limit)")
	fs.IntVar(&f.api.MaxGlobLength, "max-glob-length", api.DefaultMaxGlobLength, "longest glob pattern a subscription may use, in bytes")
	fs.IntVar(&f.api.MaxSubscriptionsPerURL, "max-subscriptions-per-url", api.DefaultMaxSubscriptionsPerURL, "subscriptions one subscriber URL may hold")
	fs.IntVar(&f.api.MaxConnections, "max-connections", api.DefaultMaxConnections, "connections the HTTP API holds open at once, websockets included; beyond, 503 (0: no cap)")
	fs.Int64Var(&f.api.ConnLimits.MinBodyRate, "min-body-rate", api.DefaultMinBodyRate, "slowest a request body may arrive, in bytes per second averaged over 10 s; slower bodies are cut off (negative: no limit)")
	fs.Int64Var(&f.ws.MaxPendingBytes, "ws-max-pending-bytes", ws.DefaultMaxPendingBytes, "unprocessed incoming bytes per websocket before reading pauses")
	fs.IntVar(&f.ws.OutgoingMaxMessage, "ws-outgoing-max-message", ws.DefaultOutgoingMaxMessage, "largest websocket message sent (RECEIVE_STREAM parts); the Python client refuses more than 4 MiB")
	fs.Int64Var(&f.ws.IncomingMaxMessage, "ws-incoming-max-message", ws.DefaultIncomingMaxMessage, "largest websocket message accepted")
	fs.DurationVar(&f.ws.PingInterval, "ws-ping-interval", ws.DefaultPingInterval, "how often idle websockets are pinged")
	fs.DurationVar(&f.ws.PingTimeout, "ws-ping-timeout", ws.DefaultPingTimeout, "how long a ping may go unanswered before the websocket is closed")
	fs.DurationVar(&f.ws.WriteTimeout, "ws-write-timeout", ws.DefaultWriteTimeout, "how long one websocket write may take")
	fs.BoolVar(&f.wsCompression, "ws-compression", true, "compress websocket messages of 16 KiB and more with zstd when the client allows it")
	fs.BoolVar(&f.wsTraining, "ws-training", true, "train zstd dictionaries on the small messages of websockets that ask for it")
	fs.Var(&f.wsPresets, "ws-preset-dict", "ID:LEVEL:FILE, a zstd dictionary known to clients out of band, used for websockets whose CONFIGURE names ID (2..65535); repeat the flag or separate with commas")
	fs.Int64Var(&f.ws.TrainingLowWatermark, "ws-training-low-watermark", ws.DefaultTrainingLowWatermark, "bytes of small messages a websocket passes before its first dictionary (16 KiB) is trained")
	fs.Int64Var(&f.ws.TrainingHighWatermark, "ws-training-high-watermark", ws.DefaultTrainingHighWatermark, "bytes of small messages before its second dictionary (64 KiB) is trained")
	fs.DurationVar(&f.ws.RetrainInterval, "ws-retrain-interval", ws.DefaultRetrainInterval, "how long after its second dictionary a websocket collects messages for a new one")
	fs.IntVar(&f.ws.MaxConcurrentTraining, "ws-max-concurrent-training", 0, "dictionaries built at once on this node (default: half the CPUs, at least 1)")
	fs.Int64Var(&f.ws.MaxTrainingMemory, "ws-max-training-memory", ws.DefaultMaxTrainingMemory, "training samples all websockets keep in memory together; beyond, they go to unlinked files in the spool folder")
	fs.DurationVar(&f.hmacSkew, "hmac-skew", auth.DefaultSkew, "how far an HMAC signature's timestamp may be from this node's clock")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "HOST:PORT serving GET /metrics (Prometheus) on its own listener; empty serves it on the API port")
	fs.BoolVar(&f.metrics, "metrics", true, "count and serve Prometheus metrics (false: nothing counted, no /metrics)")
	fs.BoolVar(&f.api.AccessLog, "access-log", false, "log every HTTP request (method, path, status, sizes, duration, remote address) at info level")
	fs.DurationVar(&f.pruneAfter, "prune-unhealthy-after", 0, "remove every subscription of a URL that every node has failed to reach on every delivery for this long, e.g. 168h (0: never)")
	fs.StringVar(&f.debugAddr, "debug-addr", "", "HOST:PORT for Go's /debug/pprof profiling endpoints (off when empty; keep it on loopback)")
	fs.StringVar(&f.raftLogLevel, "raft-log-level", "error", "level of the Raft library's own log: trace, debug, info, warn, error")
	fs.Int64Var(&f.spoolThreshold, "spool-threshold", api.DefaultSpoolThreshold, "notify messages longer than this many bytes are spooled to a temporary file")
	fs.Int64Var(&f.maxSetSubscriptions, "max-set-subscriptions-body", api.DefaultMaxSetSubscriptionsBody, "largest set_subscriptions body accepted, in bytes")
	fs.DurationVar(&f.writeTimeout, "write-timeout", api.DefaultWriteTimeout, "how long a subscription change may wait for Raft before answering 503")
	fs.DurationVar(&f.deliveryTimeout, "delivery-timeout", fanout.DefaultTimeout, "deadline of one delivery, plus one second per MiB of message")
	fs.IntVar(&f.deliveryConcurrency, "delivery-concurrency", fanout.DefaultConcurrency, "deliveries one notify runs at once")
	fs.IntVar(&f.deliveryMaxInFlight, "delivery-max-in-flight", fanout.DefaultMaxInFlight, "deliveries all notifies together run at once")
	fs.IntVar(&f.deliveryMaxPerHost, "delivery-max-per-host", fanout.DefaultMaxPerHost, "deliveries to one subscriber HOST:PORT in flight at once (and connections to it); more wait without holding a --delivery-max-in-flight slot")
	fs.DurationVar(&f.deliveryHeaderWait, "delivery-response-header-timeout", fanout.DefaultResponseHeaderTimeout, "how long a subscriber may take to start its reply once a delivery is sent (at most --delivery-timeout)")
	fs.Var(&f.subscriberAllow, "subscriber-allow-cidr", "address ranges subscribers may be at although the defaults refuse them (link-local, unspecified, multicast, broadcast), e.g. 169.254.169.254/32; repeat or separate with commas. The longest matching allow or deny range decides (deny on a tie); the node's own API and Raft listeners stay refused")
	fs.Var(&f.subscriberDeny, "subscriber-deny-cidr", "address ranges subscribers may not be at, checked on every resolved address when connecting, e.g. 0.0.0.0/0,::/0 with --subscriber-allow-cidr 10.20.0.0/16 to allow one network only; repeat or separate with commas")
	fs.BoolVar(&f.tokenOverHTTP, "allow-token-over-http", false, "with token auth to subscribers, also send the token over http:// to hosts that are not loopback (in clear)")
	fs.DurationVar(&f.missedSweepInterval, "missed-sweep-interval", time.Second, "how often due MISSED notices are sent")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight requests may run after SIGTERM")
	fs.DurationVar(&f.heartbeatTimeout, "raft-heartbeat-timeout", cluster.DefaultHeartbeatTimeout, "Raft heartbeat timeout")
	fs.DurationVar(&f.electionTimeout, "raft-election-timeout", cluster.DefaultElectionTimeout, "Raft election timeout")
	fs.DurationVar(&f.leaderLeaseTimeout, "raft-leader-lease-timeout", cluster.DefaultLeaderLeaseTimeout, "Raft leader lease timeout")
	fs.Uint64Var(&f.snapshotThreshold, "raft-snapshot-threshold", cluster.DefaultSnapshotThreshold, "log entries between snapshots")
	fs.Uint64Var(&f.trailingLogs, "raft-trailing-logs", cluster.DefaultTrailingLogs, "log entries kept after a snapshot, for followers that lag")
	fs.DurationVar(&f.snapshotInterval, "raft-snapshot-interval", cluster.DefaultSnapshotInterval, "how often the snapshot threshold is checked")
	fs.Int64Var(&f.diskReserve, "disk-reserve", spool.DefaultDiskReserve,
		"bytes kept free on the data volume: a notify whose message would spool into them answers 503, and subscription changes answer 503 while less than half of them is free (0: no reserve)")
	fs.DurationVar(&f.readBarrierTimeout, "notify-read-barrier-timeout", cluster.DefaultReadBarrierTimeout,
		"how long a notify may wait for this node's replica to catch up with the leader before it matches the replica as it is (negative: off)")
}

// applyEnv fills every flag not given on the command line from
// LONELYPSD_<NAME>, with dashes as underscores.
func applyEnv(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		set[f.Name] = true
		// A flag and its alias set one value: given either on the
		// command line, the environment sets neither.
		if other, ok := flagAliases[f.Name]; ok {
			set[other] = true
		}
	})
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		name := "LONELYPSD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// runNode runs dev or serve until ctx ends and returns the exit code.
func runNode(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) int {
	f, code := parseNodeFlags(cmd, args, stderr)
	if f == nil {
		return code
	}
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "lonelypsd %s: %v\n", cmd, err)
		return 2
	}
	cfg, err := f.daemonConfig(cmd, log)
	if err != nil {
		fmt.Fprintf(stderr, "lonelypsd %s: %v\n", cmd, err)
		return 2
	}
	if err := broadcaster.Run(ctx, cfg); err != nil {
		log.Error("lonelypsd stopped", "err", err)
		return 1
	}
	log.Info("lonelypsd stopped cleanly")
	return 0
}

// parseNodeFlags reads dev's or serve's flags and the environment; a nil
// result means stop with the exit code (0 after --help).
func parseNodeFlags(cmd string, args []string, stderr io.Writer) (*nodeFlags, int) {
	dev := cmd == "dev"
	usage := "Usage: lonelypsd serve --node-id ID --http-addr HOST:PORT --raft-addr HOST:PORT --data-dir DIR [--bootstrap] [flags]\n\nFlags:\n"
	if dev {
		usage = "Usage: lonelypsd dev [flags]\n\nA single-node broadcaster: bootstraps itself, keeps its data in ./lonelypsd-data, auth none unless --secrets.\n\nFlags:\n"
	}
	fs := newFlagSet(cmd, usage, stderr)
	var f nodeFlags
	f.register(fs, dev)
	if code, stop := parseFlags(fs, args); stop {
		return nil, code
	}
	fail := func(format string, a ...any) (*nodeFlags, int) {
		fmt.Fprintf(stderr, "lonelypsd %s: %s\n", cmd, fmt.Sprintf(format, a...))
		return nil, 2
	}
	if err := applyEnv(fs); err != nil {
		return fail("%v", err)
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	if dev {
		f.nodeID, f.bootstrap = "dev", true
		if f.raftAddr == "" {
			addr, err := nextPort(f.httpAddr)
			if err != nil {
				return fail("%v", err)
			}
			f.raftAddr = addr
		}
	}
	var missing []string
	for name, v := range map[string]string{"--node-id": f.nodeID, "--http-addr": f.httpAddr, "--raft-addr": f.raftAddr, "--data-dir": f.dataDir} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fail("missing %s (see lonelypsd %s --help)", strings.Join(missing, ", "), cmd)
	}
	return &f, 0
}

// daemonConfig is the node's configuration from its flags.
func (f *nodeFlags) daemonConfig(cmd string, log *slog.Logger) (broadcaster.Config, error) {
	wsCfg, err := f.wsConfig()
	if err != nil {
		return broadcaster.Config{}, err
	}
	build := currentBuild()
	return broadcaster.Config{
		Cluster: cluster.Config{
			NodeID: f.nodeID, RaftAddr: f.raftAddr, AdvertiseRaft: f.advertiseRaft, DataDir: f.dataDir,
			AdvertiseHTTP: f.advertiseHTTP, Join: splitList(f.join), BootstrapExpect: f.bootstrapExpect,
			Bootstrap: f.bootstrap, HeartbeatTimeout: f.heartbeatTimeout, ElectionTimeout: f.electionTimeout,
			LeaderLeaseTimeout: f.leaderLeaseTimeout, SnapshotThreshold: f.snapshotThreshold,
			TrailingLogs: f.trailingLogs, SnapshotInterval: f.snapshotInterval, RaftLogLevel: f.raftLogLevel,
			ReadBarrierTimeout: f.readBarrierTimeout, DiskReserve: noneIfZero(f.diskReserve),
			Version: build.Version, PruneAfter: f.pruneAfter,
		},
		API: f.apiConfig(),
		Fanout: fanout.Config{
			Concurrency: f.deliveryConcurrency, MaxInFlight: f.deliveryMaxInFlight, Timeout: f.deliveryTimeout,
			MaxPerHost: f.deliveryMaxPerHost, ResponseHeaderTimeout: f.deliveryHeaderWait,
		},
		Egress:              egress.Config{Allow: f.subscriberAllow, Deny: f.subscriberDeny, AllowTokenOverHTTP: f.tokenOverHTTP},
		HTTPAddr:            f.httpAddr,
		DebugAddr:           f.debugAddr,
		MetricsAddr:         f.metricsAddr,
		NoMetrics:           !f.metrics,
		Build:               metrics.BuildInfo{Version: build.Version, Revision: build.Revision, GoVersion: build.GoVersion},
		SecretsFile:         f.secrets,
		ClusterSecretFile:   f.clusterSecretFile,
		HMACSkew:            f.hmacSkew,
		WS:                  wsCfg,
		TLSCert:             f.tlsCert,
		TLSKey:              f.tlsKey,
		TLSCA:               f.tlsCA,
		MissedSweepInterval: f.missedSweepInterval,
		ShutdownTimeout:     f.shutdownTimeout,
		Logger:              log,
		Ready:               func(addr string) { f.logListening(log, cmd, addr) },
	}, nil
}

// logListening is the start-up line saying where the node listens.
func (f *nodeFlags) logListening(log *slog.Logger, cmd, addr string) {
	authDesc := "auth none"
	if f.secrets != "" {
		authDesc = "auth from " + f.secrets
	}
	scheme := "http"
	if f.tlsCert != "" {
		scheme = "https"
	}
	log.Info(fmt.Sprintf("lonelypsd %s listening on %s://%s (node %s, raft %s, data in %s, %s)",
		cmd, scheme, addr, f.nodeID, f.raftAddr, f.dataDir, authDesc), "version", currentBuild().String())
}

// nextPort returns addr with its port plus one: dev mode's Raft port.
func nextPort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--http-addr %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p >= 65535 {
		return "", fmt.Errorf("--http-addr %q: dev mode needs a fixed port (or give --raft-addr)", addr)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+1)), nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (f *nodeFlags) apiConfig() api.Config {
	c := f.api
	c.SpoolThreshold, c.MaxSetSubscriptionsBody, c.WriteTimeout = f.spoolThreshold, f.maxSetSubscriptions, f.writeTimeout
	c.DiskReserve = noneIfZero(f.diskReserve)
	c.MaxConnections = noneIfZero(c.MaxConnections)
	return c
}

// noneIfZero turns a flag's 0 ("none") into the negative value that
// means none in broadcaster.Config, where 0 takes the default.
func noneIfZero[T int | int64](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

func (f *nodeFlags) wsConfig() (ws.Config, error) {
	c := f.ws
	c.DisableCompression = !f.wsCompression
	c.DisableTraining = !f.wsTraining
	for _, p := range f.wsPresets {
		b, err := os.ReadFile(p.path)
		if err != nil {
			return c, fmt.Errorf("--ws-preset-dict %d: %w", p.id, err)
		}
		c.PresetDicts = append(c.PresetDicts, ws.PresetDict{ID: p.id, Level: p.level, Dict: b})
	}
	if err := ws.CheckPresets(c.PresetDicts); err != nil {
		return c, fmt.Errorf("--ws-preset-dict: %w", err)
	}
	return c, nil
}

// presetFlag is --ws-preset-dict: ID:LEVEL:FILE, repeatable.
type presetFlag []presetSpec

type presetSpec struct {
	id    uint64
	level int
	path  string
}

func (p *presetFlag) String() string {
	if p == nil {
		return ""
	}
	var parts []string
	for _, s := range *p {
		parts = append(parts, fmt.Sprintf("%d:%d:%s", s.id, s.level, s.path))
	}
	return strings.Join(parts, ",")
}

func (p *presetFlag) Set(v string) error {
	for _, item := range splitList(v) {
		fields := strings.SplitN(item, ":", 3)
		if len(fields) != 3 || fields[2] == "" {
			return fmt.Errorf("%q: want ID:LEVEL:FILE", item)
		}
		id, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil || id < 2 || id > 65535 {
			return fmt.Errorf("%q: the id must be 2..65535", item)
		}
		level, err := strconv.Atoi(fields[1])
		if err != nil || level < -131072 || level > 22 {
			return fmt.Errorf("%q: the level must be a zstd level, up to 22", item)
		}
		*p = append(*p, presetSpec{id: id, level: level, path: fields[2]})
	}
	return nil
}

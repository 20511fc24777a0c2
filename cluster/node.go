// Package cluster runs the Raft node that replicates the subscription
// table: it opens the log, stable and snapshot stores in the data folder,
// bootstraps or rejoins the cluster, and turns subscription changes into
// log entries whose application the caller can wait for.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/lonelypsd/lonelypsd/fanout/health"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// unavailableError is a refusal worth retrying later: the API answers it
// with 503 (it classifies errors through Unavailable, with errors.As).
type unavailableError struct{ msg string }

func (e *unavailableError) Error() string { return e.msg }

// Unavailable reports that the node cannot serve the request now.
func (e *unavailableError) Unavailable() bool { return true }

// Sentinel errors; each implements Unavailable() bool (true).
var (
	// ErrNotLeader: this node cannot commit the write itself.
	ErrNotLeader error = &unavailableError{"cluster: this node is not the leader"}
	// ErrNoLeader: the cluster has no leader right now; retry later.
	ErrNoLeader error = &unavailableError{"cluster: no leader"}
	// ErrTimeout: the entry was not known to be applied in time; it may
	// still be applied later.
	ErrTimeout error = &unavailableError{"cluster: timed out waiting for the write to apply"}
	// ErrShutdown: the node is closing.
	ErrShutdown error = &unavailableError{"cluster: node is shutting down"}
	// ErrDiskFull: the leader refuses new writes while the data volume has
	// less than half of Config.DiskReserve free, or its log store ran out
	// of space.
	ErrDiskFull error = &unavailableError{"cluster: the data volume is almost full; writes are refused until space is freed"}
)

// Config says where a node keeps its state and how its Raft behaves.
type Config struct {
	NodeID   string
	RaftAddr string // bind address of the Raft transport
	// AdvertiseRaft is the address peers dial; defaults to RaftAddr,
	// which then must not be a wildcard address.
	AdvertiseRaft string
	DataDir       string
	// AdvertiseHTTP is the address peers (and forwarded writes) use to
	// reach this node's HTTP API.
	AdvertiseHTTP string
	// BasePath is the path the HTTP API is mounted under ("" or, for a
	// node embedded in another server, e.g. "/pubsub"). Every member of
	// a cluster must use the same: peers are called at HOST:PORT plus it.
	BasePath string
	// Bootstrap makes a node with no Raft state form a cluster of itself.
	Bootstrap bool
	// Join lists other nodes' HTTP API addresses (HOST:PORT). A host name
	// that resolves to several addresses (a Kubernetes headless Service)
	// stands for each of them. This node's own address may appear.
	Join []string
	// BootstrapExpect: when no node of Join has a cluster yet, the nodes
	// form one as soon as this many of them (this one included) know each
	// other. 0 means only join an existing cluster.
	BootstrapExpect int
	// Secret authenticates nodes to each other. Empty, a node that forms
	// a cluster with others (Join, BootstrapExpect) refuses to start; a
	// lone node generates one in DataDir (GeneratedSecretFile) and keeps
	// it, so its /cluster endpoints are never open.
	Secret string
	// DiskReserve: the leader refuses new writes (ErrDiskFull) while the
	// data folder's volume has less than half of this many bytes free.
	// 0 turns the check off.
	DiskReserve int64
	// InternalURLNode names the node whose internal websocket rows a
	// subscription URL belongs to ("" for any other URL); when a member
	// is removed, its rows are removed too. Nil removes none.
	InternalURLNode func(url string) (nodeID string)
	// HTTPClient calls peers; nil uses a default with short timeouts.
	HTTPClient *http.Client
	// TLS, when set, makes peers' APIs https and configures the default
	// client's trust.
	TLS *tls.Config

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotThreshold  uint64
	TrailingLogs       uint64
	SnapshotInterval   time.Duration
	// RaftLogLevel is the level of the Raft library's own log (hclog
	// names: trace, debug, info, warn, error).
	RaftLogLevel string
	// ReadBarrierTimeout bounds the read barrier a notify passes before
	// it matches (see ReadBarrier): 0 means DefaultReadBarrierTimeout, a
	// negative value turns the barrier off (notifies match the local
	// replica as it is).
	ReadBarrierTimeout time.Duration
	// Version is this node's build, reported by GET /cluster/status.
	Version string
	// Health is this node's record of its deliveries, which operators'
	// listings merge across the cluster; nil keeps none.
	Health *health.Tracker
	// PruneAfter, when positive, removes every subscription of a URL
	// that every member has failed to reach on every attempt for this
	// long (see prune.go). InternalURLNode's rows are never pruned.
	PruneAfter time.Duration
	// Pruned, when set, is told of every URL this node pruned.
	Pruned func(url string, rows int)
	// MaxRestoreSize bounds a backup uploaded for restore (0: 4 GiB).
	MaxRestoreSize int64

	Logger *slog.Logger
}

// Defaults tuned for a LAN: failover in well under a second on loopback
// (see docs/benchmarks.md), batches large enough that concurrent
// subscribers share one log write and one FSM transaction.
const (
	DefaultHeartbeatTimeout   = 200 * time.Millisecond
	DefaultElectionTimeout    = 200 * time.Millisecond
	DefaultLeaderLeaseTimeout = 100 * time.Millisecond
	DefaultCommitTimeout      = 5 * time.Millisecond
	DefaultSnapshotThreshold  = 8192
	DefaultTrailingLogs       = 10240
	DefaultSnapshotInterval   = 30 * time.Second
	maxAppendEntries          = 256
	snapshotsRetained         = 2
	transportPool             = 5
	transportTimeout          = 5 * time.Second
)

// orDefault sets *v to def when it is the zero value.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// WithDefaults returns c with every field left zero set to its default.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	orDefault(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	orDefault(&c.ElectionTimeout, DefaultElectionTimeout)
	orDefault(&c.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	orDefault(&c.CommitTimeout, DefaultCommitTimeout)
	orDefault(&c.SnapshotThreshold, DefaultSnapshotThreshold)
	orDefault(&c.TrailingLogs, DefaultTrailingLogs)
	orDefault(&c.SnapshotInterval, DefaultSnapshotInterval)
	orDefault(&c.ReadBarrierTimeout, DefaultReadBarrierTimeout)
	orDefault(&c.RaftLogLevel, "error")
	orDefault(&c.AdvertiseRaft, c.RaftAddr)
	if c.HTTPClient == nil {
		// Followers forward every write of their clients: keep enough
		// connections to the leader open for that concurrency.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 128
		if c.TLS != nil {
			tr.TLSClientConfig = c.TLS.Clone()
		}
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: tr}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Node is one member of the Raft cluster with its replica of the table.
type Node struct {
	cfg       Config
	log       *slog.Logger
	raft      *raft.Raft
	fsm       *fsm.FSM
	store     *raftboltdb.BoltStore
	transport *guardedTransport
	peers     *peerClient
	verify    *peerVerifier
	disk      *diskGuard
	self      fsm.NodeInfo

	// bootMu guards candidates: nodes without a cluster that contacted
	// this one while forming the first cluster.
	bootMu     sync.Mutex
	candidates map[string]fsm.NodeInfo

	// reads is the notify read barrier's state (readindex.go).
	reads readState

	// leaderChanges counts the leaders this node has seen (stats.go).
	leaderChanges atomic.Uint64

	stop chan struct{}
	wg   sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Open starts a node. The data folder is created if missing.
func Open(cfg Config) (*Node, error) {
	started := time.Now()
	cfg.setDefaults()
	if cfg.NodeID == "" {
		return nil, errors.New("cluster: node id is required")
	}
	if cfg.AdvertiseHTTP == "" {
		return nil, errors.New("cluster: the advertised HTTP address is required")
	}
	if err := checkAdvertise("http advertise address", cfg.AdvertiseHTTP); err != nil {
		return nil, err
	}
	raftDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data folder: %w", err)
	}
	if err := cfg.resolveSecret(); err != nil {
		return nil, err
	}
	hlog := hclog.New(&hclog.LoggerOptions{
		Name:       "raft",
		Level:      hclog.LevelFromString(cfg.RaftLogLevel),
		Output:     os.Stderr,
		JSONFormat: true,
	})
	n := &Node{
		cfg: cfg, log: cfg.Logger, stop: make(chan struct{}),
		peers:      &peerClient{http: cfg.HTTPClient, secret: []byte(cfg.Secret), tls: cfg.TLS != nil, basePath: cfg.BasePath},
		verify:     newPeerVerifier([]byte(cfg.Secret), cfg.NodeID, started),
		disk:       &diskGuard{dir: cfg.DataDir, reserve: cfg.DiskReserve},
		self:       fsm.NodeInfo{ID: cfg.NodeID, HTTP: cfg.AdvertiseHTTP, Raft: cfg.AdvertiseRaft},
		candidates: map[string]fsm.NodeInfo{},
	}
	ok := false
	defer func() {
		if !ok {
			n.closeStores()
		}
	}()
	snaps, err := n.openStores(raftDir, hlog)
	if err != nil {
		return nil, err
	}
	if n.transport, err = newTransport(cfg.RaftAddr, cfg.AdvertiseRaft, hlog); err != nil {
		return nil, err
	}
	rc, err := raftConfig(cfg, hlog)
	if err != nil {
		return nil, err
	}
	if err := recoverFromPeersJSON(raftDir, rc, n.fsm, n.store, snaps, n.transport, n.log); err != nil {
		return nil, err
	}
	hasState, err := raft.HasExistingState(n.store, n.store, snaps)
	if err != nil {
		return nil, fmt.Errorf("inspect raft state: %w", err)
	}
	if n.raft, err = raft.NewRaft(rc, n.fsm, n.store, n.store, snaps, n.transport); err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	ok = true
	if err := n.start(hasState); err != nil {
		_ = n.Close()
		return nil, err
	}
	return n, nil
}

// openStores opens the table, the Raft log and the snapshot store, and
// brings the table up to the newest snapshot.
func (n *Node) openStores(raftDir string, hlog hclog.Logger) (*raft.FileSnapshotStore, error) {
	var err error
	if n.fsm, err = fsm.Open(filepath.Join(n.cfg.DataDir, "subscriptions.db"), n.cfg.Logger); err != nil {
		return nil, err
	}
	if n.store, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(raftDir, "raft.db")}); err != nil {
		return nil, fmt.Errorf("open raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, snapshotsRetained, hlog)
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	if err := catchUpFromSnapshot(n.fsm, snaps, n.log); err != nil {
		return nil, err
	}
	return snaps, nil
}

func raftConfig(cfg Config, hlog hclog.Logger) (*raft.Config, error) {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.MaxAppendEntries = maxAppendEntries
	rc.BatchApplyCh = true
	// The table is a durable bbolt file that records its applied index;
	// copying the snapshot over it on every start would only cost time.
	rc.NoSnapshotRestoreOnStart = true
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	return rc, nil
}

// start runs the node's background work and, without Raft state,
// bootstraps or joins as configured.
func (n *Node) start(hasState bool) error {
	n.countLeaderChanges()
	n.wg.Add(2)
	go func() { defer n.wg.Done(); n.observeLeadership() }()
	go func() { defer n.wg.Done(); n.registerSelf() }()
	if n.cfg.PruneAfter > 0 && n.cfg.Health != nil {
		n.wg.Add(1)
		go n.runPruner()
	}
	switch {
	case hasState:
		n.log.Info("restarting with existing raft state", "node", n.cfg.NodeID)
	case n.cfg.Bootstrap:
		err := n.raft.BootstrapCluster(raft.Configuration{
			Servers: []raft.Server{{ID: raft.ServerID(n.cfg.NodeID), Address: n.transport.LocalAddr()}},
		}).Error()
		if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("bootstrap cluster: %w", err)
		}
		n.log.Info("bootstrapped a new cluster", "node", n.cfg.NodeID, "raft", string(n.transport.LocalAddr()))
	case len(n.cfg.Join) > 0:
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.joinLoop() }()
	default:
		n.log.Warn("no raft state, no --bootstrap and no --join: waiting for a leader to add this node", "node", n.cfg.NodeID)
	}
	return nil
}

// recoverFromPeersJSON implements Raft's manual recovery from a lost
// quorum: an operator writes <data>/raft/peers.json (the servers that
// remain) on every surviving node, stopped; at start the node rewrites its
// Raft configuration to exactly those servers and renames the file, so the
// recovery happens once.
func recoverFromPeersJSON(raftDir string, rc *raft.Config, table *fsm.FSM, store *raftboltdb.BoltStore,
	snaps raft.SnapshotStore, trans raft.Transport, log *slog.Logger) error {
	path := filepath.Join(raftDir, "peers.json")
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	conf, err := raft.ReadConfigJSON(path)
	if err != nil {
		return fmt.Errorf("recovery file %s: %w", path, err)
	}
	log.Warn("recovering the cluster configuration from peers.json", "path", path, "servers", len(conf.Servers))
	if err := raft.RecoverCluster(rc, table, store, store, snaps, trans, conf); err != nil {
		return fmt.Errorf("recover from %s: %w", path, err)
	}
	if err := os.Rename(path, filepath.Join(raftDir, "peers.info")); err != nil {
		return fmt.Errorf("recovery done, but %s could not be renamed (remove it before the next start): %w", path, err)
	}
	return nil
}

// catchUpFromSnapshot restores the newest snapshot when the table is
// behind it, which happens when the table file was lost but the Raft
// folder was not: with NoSnapshotRestoreOnStart Raft would otherwise skip
// every entry the snapshot covers.
func catchUpFromSnapshot(table *fsm.FSM, snaps *raft.FileSnapshotStore, log *slog.Logger) error {
	list, err := snaps.List()
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	if len(list) == 0 || list[0].Index <= table.AppliedIndex() {
		return nil
	}
	log.Warn("subscription table is behind the newest snapshot; restoring it",
		"table_index", table.AppliedIndex(), "snapshot_index", list[0].Index)
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", list[0].ID, err)
	}
	if err := table.Restore(rc); err != nil {
		return err
	}
	return nil
}

func (n *Node) observeLeadership() {
	ch := n.raft.LeaderCh()
	for {
		select {
		case isLeader := <-ch:
			if isLeader {
				n.log.Info("this node is now the leader", "node", n.cfg.NodeID)
				if n.cfg.ReadBarrierTimeout >= 0 {
					// Settled now rather than by the term's first notify,
					// which would otherwise wait for a Raft round.
					n.startTermBarrier(n.raft.CurrentTerm())
				}
			} else {
				n.log.Info("this node is no longer the leader", "node", n.cfg.NodeID)
			}
		case <-n.stop:
			return
		}
	}
}

// FSM is this node's replica of the table.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// ID is this node's id.
func (n *Node) ID() string { return n.cfg.NodeID }

// IsLeader reports whether this node is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's id and Raft address, empty when unknown.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// State is the Raft state of this node (Follower, Candidate, Leader,
// Shutdown).
func (n *Node) State() string { return n.raft.State().String() }

// WaitForLeader blocks until some node is the leader.
func (n *Node) WaitForLeader(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if id, _ := n.Leader(); id != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func mapRaftErr(err error) error {
	switch {
	case isNoSpace(err):
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrShutdown, err)
	}
	return fmt.Errorf("raft apply: %w", err)
}

// Snapshot asks Raft for a snapshot now (tests and operators).
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// Close stops Raft and closes every store. A leader first hands its
// leadership to a peer, if it has one, so writes resume quickly.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Node) close() error {
	if n.raft == nil {
		return n.closeStores()
	}
	if n.raft.State() == raft.Leader && len(n.otherServers()) > 0 {
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			n.log.Warn("leadership transfer before shutdown failed", "err", err)
		}
	}
	close(n.stop)
	// Raft's shutdown waits for the batch being applied, which a failing
	// disk would keep retrying for ever.
	n.fsm.StopRetrying()
	err := n.raft.Shutdown().Error()
	n.wg.Wait()
	if cerr := n.closeStores(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close node: %w", err)
	}
	return nil
}

func (n *Node) otherServers() []raft.Server {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var out []raft.Server
	for _, s := range f.Configuration().Servers {
		if s.ID != raft.ServerID(n.cfg.NodeID) {
			out = append(out, s)
		}
	}
	return out
}

func (n *Node) closeStores() error {
	var errs []error
	if n.transport != nil {
		n.transport.stopHeartbeats()
		errs = append(errs, n.transport.Close())
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	if n.fsm != nil {
		errs = append(errs, n.fsm.Close())
	}
	return errors.Join(errs...)
}

// Ready reports whether the node belongs to a cluster with a leader and
// has applied everything it knows to be committed.
func (n *Node) Ready() error {
	if id, _ := n.Leader(); id == "" {
		return ErrNoLeader
	}
	if err := n.fsm.WriteErr(); err != nil {
		return fmt.Errorf("cluster: the subscription table cannot be written: %w", err)
	}
	if applied, committed := n.raft.AppliedIndex(), n.raft.CommitIndex(); applied < committed {
		return fmt.Errorf("cluster: applied index %d behind commit index %d", applied, committed)
	}
	return nil
}

// untilStop returns ctx ending also when the node stops, for work the node
// starts on its own.
func (n *Node) untilStop(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

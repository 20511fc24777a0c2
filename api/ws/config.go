package ws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"time"

	"github.com/lonelypsd/lonelypsd/api/metrics"
	msgspool "github.com/lonelypsd/lonelypsd/api/spool"
	"github.com/lonelypsd/lonelypsd/fanout"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// Writer commits subscription changes cluster-wide: the local Raft node
// (cluster.Node), which forwards to the leader when it is not the leader.
type Writer interface {
	Apply(ctx context.Context, cmd fsm.Command) (fsm.Result, error)
}

// Table is the local replica of the subscription table; the hub reads it
// only to find rows of its own internal URLs (start-up and shutdown).
type Table interface {
	All() []fsm.Subscription
}

// Deliverer fans a message out to every matching subscription of the
// replicated table, this node's own internal URLs included (fanout.Fanout).
type Deliverer interface {
	Deliver(ctx context.Context, m fanout.Message) uint32
}

// Config tunes the hub. Zero values take the defaults below, except the
// identity fields NodeID and AdvertiseHTTP, which are required.
type Config struct {
	// Metrics counts websocket messages and body bytes; Notifies counts
	// the notifies received. Nil counts nothing.
	Metrics  *metrics.Websocket
	Notifies *metrics.Notifies
	// NodeID is this node's cluster id; it goes into the internal URLs so a
	// restarted node recognises (and removes) rows of its previous life.
	NodeID string
	// AdvertiseHTTP is the HOST:PORT other nodes reach this node's API at;
	// the internal URLs are built on it. A wildcard or empty host is
	// replaced by 127.0.0.1, which only works for a single node.
	AdvertiseHTTP string
	// BasePath is the path the node's API is mounted under ("" unless
	// embedded in another server); the internal URLs include it.
	BasePath string
	// TLS makes the internal URLs https.
	TLS bool
	// Incarnation distinguishes this process from earlier ones of the same
	// node; empty means a random one (the normal case, set for tests).
	Incarnation string

	// OutgoingMaxMessage is the largest websocket message sent, headers
	// included; RECEIVE_STREAM bodies are split to fit. The Python client
	// refuses messages over 4 MiB; the reference uses 3.5 MiB.
	OutgoingMaxMessage int
	// IncomingMaxMessage is the largest websocket message accepted.
	IncomingMaxMessage int64
	// MaxUnackedParts bounds the RECEIVE_STREAM parts sent but not yet
	// acknowledged on one connection while a long message (over 64 KiB)
	// is sent (the reference's 3): each part can be megabytes.
	MaxUnackedParts int
	// MaxUnackedShort bounds the unacknowledged messages on one
	// connection before a short one (one part of at most 64 KiB) is sent.
	// Their bytes are few and the Python client acknowledges a message as
	// soon as it has it, so a wider window than MaxUnackedParts costs the
	// peer little, and lets a busy peer's deliveries leave more per system
	// call. At least MaxUnackedParts.
	MaxUnackedShort int

	// Spool holds message bodies, within the node-wide memory budget it
	// shares with HTTP notifies. Nil makes one of the hub's own from
	// SpoolDir, SpoolThreshold and MaxBufferedBytes.
	Spool *msgspool.Spool
	// SpoolThreshold: message bodies longer than this go to an unlinked
	// temporary file in SpoolDir instead of memory.
	SpoolThreshold int64
	SpoolDir       string
	// MaxMessageSize refuses NOTIFY messages longer than this (the
	// connection is closed before their body is held); 0 means no limit.
	MaxMessageSize int64

	// MaxConnections bounds the open websockets of this node; the next
	// upgrade is answered 503.
	MaxConnections int
	// MaxQueuedMessages and MaxQueuedBytes bound what waits to be sent to
	// one connection (each message is charged its in-memory size plus a
	// fixed overhead, a spooled message only the overhead). A connection
	// whose queue is full is closed (code 1013, "send queue full"): a slow
	// consumer never holds back the others nor grows memory without bound.
	MaxQueuedMessages int
	MaxQueuedBytes    int64
	// MaxBufferedBytes bounds the message bodies held in memory by all
	// queues of the node together (when Spool is nil); past it, received
	// bodies are spooled to disk whatever their size.
	MaxBufferedBytes int64
	// MaxPendingBytes bounds the messages read from one connection and not
	// yet processed; past it the connection is not read until the backlog
	// shrinks (TCP back-pressure on the sender).
	MaxPendingBytes int64

	// PingInterval is how often an idle connection is pinged; a ping not
	// answered within PingTimeout closes it (half-open connections).
	PingInterval time.Duration
	PingTimeout  time.Duration
	// ConfigureTimeout bounds the wait for the first message, CONFIGURE.
	ConfigureTimeout time.Duration
	// WriteTimeout bounds writing one websocket message; a peer that does
	// not read for that long is closed.
	WriteTimeout time.Duration
	// RegisterTimeout bounds how long a SUBSCRIBE waits for this node's row
	// to be committed through Raft before the connection is closed (the
	// client reconnects and subscribes again).
	RegisterTimeout time.Duration

	// DisableCompression never announces zstd: messages go uncompressed
	// and compressed NOTIFYs are refused.
	DisableCompression bool
	// CompressionLevel is the zstd level of compressor 1 (reference: 3).
	CompressionLevel int
	// DecompressionMaxWindow bounds the zstd window of client frames.
	DecompressionMaxWindow int
	// MaxCompressSize: bodies longer than this are sent uncompressed even
	// when compressor 1 is enabled, so one huge message does not cost
	// minutes of CPU per node.
	MaxCompressSize uint64
	// PresetDicts are the dictionaries known out of band (ids 2..65535); a
	// CONFIGURE naming one as its initial dictionary gets it announced.
	PresetDicts []PresetDict

	// DisableTraining never trains dictionaries, even for connections that
	// ask for it (train.go).
	DisableTraining bool
	// TrainingLowWatermark is how many bytes of samples (messages of 32
	// bytes up to 16 KiB through the connection) make the first, 16 KiB
	// dictionary; TrainingHighWatermark the second, 64 KiB one. After that
	// the connection collects again RetrainInterval later.
	TrainingLowWatermark  int64
	TrainingHighWatermark int64
	RetrainInterval       time.Duration
	// MaxConcurrentTraining bounds the dictionaries built at once on the
	// node (each holds its samples in memory and takes a CPU); connections
	// whose turn has not come wait.
	MaxConcurrentTraining int
	// MaxTrainingMemory bounds the training samples all connections keep
	// in memory together; past it (or past 256 KiB for one connection)
	// samples go to unlinked temporary files in SpoolDir.
	MaxTrainingMemory int64
}

// Defaults.
const (
	DefaultOutgoingMaxMessage     = 3*1024*1024 + 512*1024 // 3,670,016
	DefaultIncomingMaxMessage     = 16<<20 + 128<<10       // 16 MiB of payload plus headers
	DefaultMaxUnackedParts        = 3
	DefaultMaxUnackedShort        = 16
	DefaultSpoolThreshold         = 10 << 20
	DefaultMaxConnections         = 10000
	DefaultMaxQueuedMessages      = 65536
	DefaultMaxQueuedBytes         = 64 << 20
	DefaultMaxBufferedBytes       = msgspool.DefaultMaxBuffered
	DefaultMaxPendingBytes        = 32 << 20
	DefaultPingInterval           = 30 * time.Second
	DefaultPingTimeout            = 20 * time.Second
	DefaultConfigureTimeout       = 10 * time.Second
	DefaultWriteTimeout           = 30 * time.Second
	DefaultRegisterTimeout        = 10 * time.Second
	DefaultCompressionLevel       = 3
	DefaultDecompressionMaxWindow = 8 << 20
	DefaultMaxCompressSize        = 256 << 20
	DefaultTrainingLowWatermark   = 100 << 10
	DefaultTrainingHighWatermark  = 10 << 20
	DefaultRetrainInterval        = 60 * time.Hour
	DefaultMaxTrainingMemory      = 64 << 20

	// minOutgoingMaxMessage leaves room for the largest part-0 headers (a
	// 64 KiB topic) and the 512 payload bytes every part must carry.
	minOutgoingMaxMessage = 128 << 10
	// queueOverhead is what one queued message costs beyond its body.
	queueOverhead = 256
)

// positive sets *v to def unless it is above zero: for the limits, where
// zero and below mean "not set".
func positive[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// WithDefaults returns c with every field left zero set to its default,
// or why c cannot be used.
func (c Config) WithDefaults() (Config, error) {
	err := c.setDefaults()
	return c, err
}

func (c *Config) setDefaults() error {
	if c.NodeID == "" {
		return errors.New("ws: NodeID is required")
	}
	if _, _, err := net.SplitHostPort(c.AdvertiseHTTP); err != nil {
		return fmt.Errorf("ws: AdvertiseHTTP %q: %w", c.AdvertiseHTTP, err)
	}
	c.AdvertiseHTTP = internalHost(c.AdvertiseHTTP)
	positive(&c.OutgoingMaxMessage, DefaultOutgoingMaxMessage)
	if c.OutgoingMaxMessage < minOutgoingMaxMessage {
		return fmt.Errorf("ws: OutgoingMaxMessage %d is below the minimum %d", c.OutgoingMaxMessage, minOutgoingMaxMessage)
	}
	positive(&c.IncomingMaxMessage, DefaultIncomingMaxMessage)
	positive(&c.MaxUnackedParts, DefaultMaxUnackedParts)
	positive(&c.MaxUnackedShort, DefaultMaxUnackedShort)
	c.MaxUnackedShort = max(c.MaxUnackedShort, c.MaxUnackedParts)
	positive(&c.SpoolThreshold, DefaultSpoolThreshold)
	if c.SpoolDir == "" {
		c.SpoolDir = os.TempDir()
	}
	positive(&c.MaxConnections, DefaultMaxConnections)
	positive(&c.MaxQueuedMessages, DefaultMaxQueuedMessages)
	positive(&c.MaxQueuedBytes, DefaultMaxQueuedBytes)
	positive(&c.MaxBufferedBytes, DefaultMaxBufferedBytes)
	positive(&c.MaxPendingBytes, DefaultMaxPendingBytes)
	positive(&c.PingInterval, DefaultPingInterval)
	positive(&c.PingTimeout, DefaultPingTimeout)
	positive(&c.ConfigureTimeout, DefaultConfigureTimeout)
	positive(&c.WriteTimeout, DefaultWriteTimeout)
	positive(&c.RegisterTimeout, DefaultRegisterTimeout)
	if c.CompressionLevel == 0 {
		c.CompressionLevel = DefaultCompressionLevel
	}
	positive(&c.DecompressionMaxWindow, DefaultDecompressionMaxWindow)
	if c.MaxCompressSize == 0 {
		c.MaxCompressSize = DefaultMaxCompressSize
	}
	positive(&c.TrainingLowWatermark, DefaultTrainingLowWatermark)
	positive(&c.TrainingHighWatermark, DefaultTrainingHighWatermark)
	if c.TrainingHighWatermark < c.TrainingLowWatermark {
		return fmt.Errorf("ws: TrainingHighWatermark %d is below TrainingLowWatermark %d", c.TrainingHighWatermark, c.TrainingLowWatermark)
	}
	positive(&c.RetrainInterval, DefaultRetrainInterval)
	positive(&c.MaxTrainingMemory, DefaultMaxTrainingMemory)
	if c.MaxConcurrentTraining <= 0 {
		c.MaxConcurrentTraining = max(1, runtime.GOMAXPROCS(0)/2)
	}
	return nil
}

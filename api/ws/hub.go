package ws

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lonelypsd/lonelypsd/api/auth"
	msgspool "github.com/lonelypsd/lonelypsd/api/spool"
	"github.com/lonelypsd/lonelypsd/fsm"
	"github.com/lonelypsd/lonelypsd/fsm/globmatch"
)

// Paths of the endpoints this package serves.
const (
	PathWebsocket = "/v1/websocket"
	PathReceive   = "/v1/receive_for_websockets"
	PathMissed    = "/v1/missed_for_websockets"
)

// Query parameters of the internal URLs.
const (
	paramNode = "node"
	paramInc  = "inc"
	paramGlob = "glob"
)

// shutdownSweepTimeout bounds the removal of this process's rows at
// shutdown.
const shutdownSweepTimeout = 3 * time.Second

// ErrClosing is returned for work refused because the hub is shutting
// down.
var ErrClosing = errors.New("ws: hub is shutting down")

// Hub holds the websocket connections of one node, the index of what they
// subscribe to, and the registration of the node's internal URLs in the
// replicated table. It is safe for concurrent use.
type Hub struct {
	cfg    Config
	writer Writer
	table  Table
	fan    Deliverer
	auth   auth.Pair
	log    *slog.Logger
	// signs and verifies are false for auth none in that direction: a
	// delivery then costs no signature, url or check at all.
	signs, verifies bool

	// receiveBase and missedBase are the internal endpoints' URLs without
	// query; query is "node=...&inc=..." shared by every row of this
	// process.
	receiveBase, missedBase, query string
	receiveURL                     string // of the exact-topic rows

	plain    *compressor            // compressor 1
	presets  map[uint64]*compressor // by id
	trainSem chan struct{}          // one token per dictionary being built
	// sampleMem is the training samples all connections hold in memory.
	sampleMem atomic.Int64
	training  trainingStats
	bufs      sync.Pool       // *[]byte of cap cfg.OutgoingMaxMessage
	batches   sync.Pool       // *[]byte, batchConn's write batches
	bodies    *msgspool.Spool // message bodies, shared with the rest of the node
	nconns    atomic.Int64
	nextID    atomic.Uint64

	ctx    context.Context // ends at Shutdown: stops reconcilers and clean-up
	cancel context.CancelFunc
	wg     sync.WaitGroup // reconcilers and the start-up clean-up
	connWG sync.WaitGroup // websocket handlers

	mu          sync.Mutex
	closing     bool
	conns       map[*conn]struct{}
	exact       map[string]*reg // by topic
	globs       map[string]*reg // by pattern
	globsByHash map[string]*reg // by globHash(pattern), the id in row URLs
}

// reg is one exact topic or glob held by at least one local connection,
// or whose row in the replicated table is still being added or removed.
//
// The row is reconciled by at most one goroutine at a time (busy), which
// applies subscribe or unsubscribe until applied matches "some connection
// holds it". Serialising per key is what keeps a quick unsubscribe then
// subscribe from committing in the wrong order and leaving no row.
type reg struct {
	kind    fsm.Kind
	key     string
	hash    string             // globs only
	pattern *globmatch.Pattern // globs only
	conns   map[*conn]struct{}
	applied bool // the row is committed (as far as this node's writes go)
	busy    bool
	err     error         // last failed attempt, for waiters
	changed chan struct{} // closed and replaced when applied or err changes
}

// New builds a hub. Call Register to mount its endpoints, Start once the
// node serves, and Shutdown when it stops.
func New(cfg Config, writer Writer, table Table, fan Deliverer, pair auth.Pair, log *slog.Logger) (*Hub, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	if cfg.Incarnation == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("ws: incarnation: %w", err)
		}
		cfg.Incarnation = hex.EncodeToString(b[:])
	}
	scheme := "http"
	if cfg.TLS {
		scheme = "https"
	}
	h := &Hub{
		cfg: cfg, writer: writer, table: table, fan: fan, auth: pair,
		log:         log.With("component", "ws"),
		receiveBase: scheme + "://" + cfg.AdvertiseHTTP + cfg.BasePath + PathReceive,
		missedBase:  scheme + "://" + cfg.AdvertiseHTTP + cfg.BasePath + PathMissed,
		query:       paramNode + "=" + url.QueryEscape(cfg.NodeID) + "&" + paramInc + "=" + url.QueryEscape(cfg.Incarnation),
		trainSem:    make(chan struct{}, cfg.MaxConcurrentTraining),
		conns:       make(map[*conn]struct{}),
		exact:       make(map[string]*reg),
		globs:       make(map[string]*reg),
		globsByHash: make(map[string]*reg),
	}
	h.receiveURL = h.receiveBase + "?" + h.query
	h.signs, h.verifies = !isNone(pair.ToSubscriber), !isNone(pair.ToBroadcaster)
	h.bodies = cfg.Spool
	if h.bodies == nil {
		h.bodies = msgspool.New(msgspool.Config{Dir: cfg.SpoolDir, Threshold: cfg.SpoolThreshold, MaxBuffered: cfg.MaxBufferedBytes}, log)
	}
	var err error
	if h.plain, h.presets, err = newCompressors(&cfg); err != nil {
		return nil, err
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h, nil
}

// isNone reports whether s is auth.None (compared by type: a scheme's
// value may not be comparable).
func isNone(s auth.Scheme) bool {
	return s != nil && reflect.TypeOf(s) == reflect.TypeOf(auth.None())
}

// Register mounts GET /v1/websocket and the two internal endpoints.
func (h *Hub) Register(e *echo.Echo) {
	e.GET(PathWebsocket, h.serveWebsocket)
	e.POST(PathReceive, h.receiveForWebsockets)
	e.POST(PathMissed, h.missedForWebsockets)
}

// ReceiveURL is the URL of this process's exact-topic rows; glob rows add
// a glob parameter.
func (h *Hub) ReceiveURL() string { return h.receiveURL }

// MissedURL is the recovery URL of this process's exact-topic rows.
func (h *Hub) MissedURL() string { return h.missedBase + "?" + h.query }

// Connections returns the number of open websockets.
func (h *Hub) Connections() int { return int(h.nconns.Load()) }

// globHash names a glob in row URLs: a glob can be 64 KiB, a URL is at
// most that, so the URL carries 96 bits of its SHA-256 instead.
func globHash(pattern string) string {
	sum := sha256.Sum256([]byte(pattern))
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// rowURLs returns the subscriber and recovery URLs of a row: hash is the
// glob's globHash, "" for exact rows. Exact rows
// share one URL; each glob row has its own, so that when one topic
// matches a connection through several rows, the node can deliver it to
// that connection once (see targets).
func (h *Hub) rowURLs(hash string) (receive, missed string) {
	q := h.query
	if hash != "" {
		q += "&" + paramGlob + "=" + hash
	}
	return h.receiveBase + "?" + q, h.missedBase + "?" + q
}

// ownQuery reports whether a request to an internal endpoint is meant for
// this process (node and incarnation match) and which glob row it names
// ("" for exact rows).
func (h *Hub) ownQuery(q url.Values) (glob string, ok bool) {
	if q.Get(paramNode) != h.cfg.NodeID || q.Get(paramInc) != h.cfg.Incarnation {
		return "", false
	}
	return q.Get(paramGlob), true
}

// rowOwner tells whether a stored subscription URL is one of this node's
// internal receive URLs, and whether it belongs to this process.
func (h *Hub) rowOwner(raw string) (ours, current bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Path != PathReceive {
		return false, false
	}
	q := u.Query()
	if q.Get(paramNode) != h.cfg.NodeID {
		return false, false
	}
	return true, q.Get(paramInc) == h.cfg.Incarnation
}

// subscribe adds key to c's subscriptions and returns its registration;
// the caller waits for it with waitApplied. A key c already holds is a
// protocol error.
func (h *Hub) subscribe(c *conn, kind fsm.Kind, key string) (*reg, error) {
	var pattern *globmatch.Pattern
	if kind == fsm.Glob {
		p, err := globmatch.Compile(key)
		if err != nil {
			return nil, fmt.Errorf("glob %q: %w", key, err)
		}
		pattern = p
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return nil, ErrClosing
	}
	m := h.exact
	if kind == fsm.Glob {
		m = h.globs
	}
	r := m[key]
	if r != nil {
		if _, dup := r.conns[c]; dup {
			return nil, errDuplicate
		}
	} else {
		r = &reg{kind: kind, key: key, pattern: pattern, conns: make(map[*conn]struct{}), changed: make(chan struct{})}
		if kind == fsm.Glob {
			r.hash = globHash(key)
			h.globsByHash[r.hash] = r
		}
		m[key] = r
	}
	r.conns[c] = struct{}{}
	if kind == fsm.Glob {
		c.globs[key] = r
	} else {
		c.exact[key] = struct{}{}
	}
	h.kick(r)
	return r, nil
}

var (
	errDuplicate  = errors.New("already subscribed on this connection")
	errNotHeld    = errors.New("not subscribed on this connection")
	errRegTimeout = errors.New("subscription not registered in time")
)

// unsubscribe removes key from c's subscriptions; the row goes once no
// connection holds it, in the background.
func (h *Hub) unsubscribe(c *conn, kind fsm.Kind, key string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.exact
	if kind == fsm.Glob {
		m = h.globs
	}
	r := m[key]
	if r == nil {
		return errNotHeld
	}
	if _, ok := r.conns[c]; !ok {
		return errNotHeld
	}
	h.dropLocked(c, r)
	return nil
}

// dropLocked removes c from r; h.mu is held.
func (h *Hub) dropLocked(c *conn, r *reg) {
	delete(r.conns, c)
	if r.kind == fsm.Glob {
		delete(c.globs, r.key)
	} else {
		delete(c.exact, r.key)
	}
	h.kick(r)
}

// kick starts reconciling r's row if it differs from what is wanted and
// nobody is on it, and forgets r once it is neither wanted nor present.
// h.mu is held.
func (h *Hub) kick(r *reg) {
	if r.busy {
		return
	}
	want := len(r.conns) > 0
	if want == r.applied || h.closing {
		if !want && !r.applied {
			h.forget(r)
		}
		return
	}
	r.busy = true
	h.wg.Add(1)
	go h.reconcile(r)
}

func (h *Hub) forget(r *reg) {
	if r.kind == fsm.Glob {
		if h.globs[r.key] == r {
			delete(h.globs, r.key)
			delete(h.globsByHash, r.hash)
		}
	} else if h.exact[r.key] == r {
		delete(h.exact, r.key)
	}
}

// reconcile applies subscribe or unsubscribe for r's row until the table
// matches what the local connections want, retrying failures with
// backoff until the hub shuts down (its clean-up then removes the rows of
// this process in one sweep).
func (h *Hub) reconcile(r *reg) {
	defer h.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		h.mu.Lock()
		want := len(r.conns) > 0
		if want == r.applied || h.closing || h.ctx.Err() != nil {
			r.busy = false
			if !want && !r.applied {
				h.forget(r)
			}
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()

		receive, missed := h.rowURLs(r.hash)
		row := fsm.Subscription{Kind: r.kind, URL: receive, Key: r.key}
		cmd := row.Unsubscribe()
		if want {
			cmd = fsm.Command{Op: fsm.OpSubscribeExact, URL: receive, Topic: []byte(r.key), Recovery: missed}
			if r.kind == fsm.Glob {
				cmd = fsm.Command{Op: fsm.OpSubscribeGlob, URL: receive, Glob: r.key, Recovery: missed}
			}
		}
		ctx, cancel := context.WithTimeout(h.ctx, h.cfg.RegisterTimeout)
		// Conflict is success either way: the row was already there (a
		// subscribe) or already gone (an unsubscribe, e.g. after a
		// publisher removed it on our UNSUBSCRIBE_IMMEDIATE).
		_, err := h.writer.Apply(ctx, cmd)
		cancel()

		h.mu.Lock()
		if err == nil {
			r.applied, r.err = want, nil
		} else {
			r.err = fmt.Errorf("%s %q: %w", cmd.Op, r.key, err)
		}
		close(r.changed)
		r.changed = make(chan struct{})
		h.mu.Unlock()
		if err == nil {
			backoff = 50 * time.Millisecond
			continue
		}
		if h.ctx.Err() != nil {
			continue // shutting down: the loop ends above
		}
		h.log.Warn("registering websocket subscription failed, will retry", "op", cmd.Op.String(), "key", r.key, "err", err)
		select {
		case <-h.ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// waitApplied waits until r's row is committed, for a SUBSCRIBE to be
// confirmed only once a publisher on this node would reach it.
func (h *Hub) waitApplied(ctx context.Context, r *reg) error {
	for {
		h.mu.Lock()
		applied, ch, lastErr := r.applied, r.changed, r.err
		h.mu.Unlock()
		if applied {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w: %w", errRegTimeout, lastErr)
			}
			return fmt.Errorf("%w: %w", errRegTimeout, ctx.Err())
		}
	}
}

// targets returns the connections a RECEIVE or MISSED for topic, sent to
// the row named by glob ("" = the exact row), must go to, and whether the
// row is one this process has (false: the sender should delete it).
//
// A connection can match a topic through its exact subscription and any
// number of globs, and each matching row gets its own POST; the
// connection takes the message from one row only, in a fixed order: the
// exact row if it holds the topic, else its smallest matching glob. So it
// receives each message once, as the protocol promises per connection.
func (h *Hub) targets(topic []byte, glob string) ([]*conn, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if glob == "" {
		r := h.exact[string(topic)]
		if r == nil {
			return nil, false
		}
		out := make([]*conn, 0, len(r.conns))
		for c := range r.conns {
			out = append(out, c)
		}
		return out, true
	}
	r := h.globsByHash[glob]
	if r == nil {
		return nil, false
	}
	if !r.pattern.Match(topic) {
		// The publisher's matcher is this package's too; kept as a
		// guard, without asking for the row's removal.
		return nil, true
	}
	out := make([]*conn, 0, len(r.conns))
	for c := range r.conns {
		if _, ok := c.exact[string(topic)]; ok {
			continue
		}
		first := true
		for other, or := range c.globs {
			if other < r.key && or.pattern.Match(topic) {
				first = false
				break
			}
		}
		if first {
			out = append(out, c)
		}
	}
	return out, true
}

// addConn records a connection; false when shutting down.
func (h *Hub) addConn(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.conns[c] = struct{}{}
	h.connWG.Add(1)
	return true
}

// removeConn forgets a closed connection and everything it held.
func (h *Hub) removeConn(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for key := range c.exact {
		if r := h.exact[key]; r != nil {
			h.dropLocked(c, r)
		}
	}
	for _, r := range c.globs {
		h.dropLocked(c, r)
	}
	delete(h.conns, c)
	h.connWG.Done()
}

// Start removes, in the background, the rows a previous process of this
// node left behind (a crash skips the clean-up of Shutdown): rows of its
// receive URL with another incarnation. Publishers would remove them on
// their own (this process answers them UNSUBSCRIBE_IMMEDIATE), but only
// after a failed delivery each.
func (h *Hub) Start() {
	h.log.Info("websocket endpoint ready", "receive_url", h.ReceiveURL(), "missed_url", h.MissedURL())
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		backoff := 200 * time.Millisecond
		for h.ctx.Err() == nil {
			if h.removeRows(h.ctx, func(current bool) bool { return !current }) == nil {
				return
			}
			select {
			case <-h.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 10*time.Second)
		}
	}()
}

// removeRows unsubscribes, through Raft, every row of this node's receive
// URL for which pick(row is of this process) holds. It stops at the first
// failure: without a leader the others would fail too, each after a full
// timeout.
func (h *Hub) removeRows(ctx context.Context, pick func(current bool) bool) error {
	removed := 0
	defer func() {
		if removed > 0 {
			h.log.Info("removed internal websocket subscriptions", "count", removed)
		}
	}()
	for _, s := range h.table.All() {
		ours, current := h.rowOwner(s.URL)
		if !ours || !pick(current) {
			continue
		}
		cmd := s.Unsubscribe()
		actx, cancel := context.WithTimeout(ctx, h.cfg.RegisterTimeout)
		_, err := h.writer.Apply(actx, cmd)
		cancel()
		if err != nil {
			err = fmt.Errorf("removing internal websocket subscription %s %q: %w", s.Kind, s.Key, err)
			h.log.Warn("clean-up of internal websocket subscriptions incomplete", "err", err)
			return err
		}
		removed++
	}
	return nil
}

// Shutdown closes every websocket (code 1001), waits for their handlers,
// stops registering, and removes this process's rows from the table. Call
// it while the Raft node is still open; ctx bounds the whole.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return nil
	}
	h.closing = true
	conns := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.fail(closeErr(statusGoingAway, "broadcaster shutting down", nil))
	}
	done := make(chan struct{})
	go func() {
		h.connWG.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("websockets still open at shutdown deadline: %w", ctx.Err())
	}
	h.cancel()
	h.wg.Wait()
	// Bounded on its own: without a quorum the rows cannot go, and the
	// next process of this node removes them anyway (Start).
	sweepCtx, cancel := context.WithTimeout(ctx, shutdownSweepTimeout)
	defer cancel()
	if rerr := h.removeRows(sweepCtx, func(current bool) bool { return current }); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// Package fanout delivers a published message to every matching
// subscription: it POSTs RECEIVE requests with bounded concurrency and a
// per-delivery deadline, reuses keep-alive connections, streams large
// bodies from one spooled file to every subscriber, interprets the
// subscribers' replies, and records failed deliveries for MISSED notices.
package fanout

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/metrics"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/fanout/egress"
	"github.com/lonelypsd/lonelypsd/fanout/health"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// Table is the read side of the replicated subscription table.
type Table interface {
	Match(topic []byte) []fsm.Subscription
	Lookup(kind fsm.Kind, url, key string) (recovery string, ok bool)
}

// Remover deletes a subscription cluster-wide, for subscribers that answer
// UNSUBSCRIBE_IMMEDIATE.
type Remover interface {
	Remove(ctx context.Context, s fsm.Subscription) error
}

// ReadBarrier makes the local replica current before a notify matches:
// the cluster node waits until its table holds every change acknowledged
// anywhere (cluster.Node.ReadBarrier). It is bounded; an error means the
// replica is used as it is.
type ReadBarrier interface {
	ReadBarrier(ctx context.Context) error
}

// Local takes the deliveries to subscriber URLs that are this process's
// own (the node's websocket rows, api/ws) without an HTTP request to
// itself.
type Local interface {
	// DeliverLocal delivers m to s when s.URL is one of this process's
	// URLs; ok false sends it over HTTP like any other. It must not block
	// on a subscriber.
	DeliverLocal(m Message, s fsm.Subscription) (r LocalResult, ok bool)
}

// LocalResult is how a local delivery went, as a subscriber's reply would
// tell it.
type LocalResult struct {
	Subscribers uint32 // the subscribers it reached (CONFIRM_RECEIVE)
	Unsubscribe bool   // nobody holds the row any more (UNSUBSCRIBE_IMMEDIATE)
	Err         error  // it failed, and a MISSED is due
}

// Config tunes delivery. Zero values take the defaults below.
type Config struct {
	// Barrier, when set, runs before every Deliver matches the topic, so
	// a notify reaches subscriptions acknowledged by other nodes just
	// before; nil matches the replica as it is.
	Barrier ReadBarrier
	// Concurrency bounds the deliveries one notify runs at once.
	Concurrency int
	// MaxInFlight bounds the deliveries of all notifies together, so a
	// burst of notifies cannot open an unbounded number of connections.
	MaxInFlight int
	// Timeout is the deadline of one delivery of a small message; larger
	// messages get one more second per MiB (see deadline).
	Timeout time.Duration
	// MaxReplyBytes bounds how much of a subscriber's reply is read: a
	// confirmation is a few hundred bytes, anything longer is garbage.
	MaxReplyBytes int64
	// Client sends the requests; nil builds one tuned for many
	// subscribers behind keep-alive connections.
	Client *http.Client
	// TLS configures the built client's https connections (extra CAs);
	// nil verifies subscribers against the system's roots.
	TLS *tls.Config
	// Policy decides which addresses the built client may connect to
	// (RECEIVE and MISSED alike); nil allows every address. URLs it
	// exempts (the node's own websocket rows) go through a second client
	// without the policy, so that no connection one opens is reused by
	// the other.
	Policy *egress.Policy
	// MaxPerHost bounds the deliveries in flight to one host:port, across
	// all notifies. A delivery waits for its host's slot before it takes
	// one of MaxInFlight, so a host that never answers holds at most this
	// many of them. The node's own websocket rows are not limited.
	MaxPerHost int
	// ResponseHeaderTimeout bounds the wait for a reply's headers once
	// the request is sent; never more than Timeout.
	ResponseHeaderTimeout time.Duration
	// Metrics counts and times deliveries; MissedMetrics counts MISSED
	// notices. Nil counts nothing.
	Metrics       *metrics.Deliveries
	MissedMetrics *metrics.Missed
	// Health records every delivery's outcome per subscriber URL and
	// decides which failures are logged (a dead subscriber's every
	// notify would otherwise be a log line). Nil logs every failure.
	Health *health.Tracker
}

const (
	DefaultConcurrency   = 64
	DefaultMaxInFlight   = 512
	DefaultTimeout       = 30 * time.Second
	DefaultMaxReplyBytes = 64 << 10
	DefaultMaxPerHost    = 64
	// DefaultResponseHeaderTimeout is generous for a subscriber that
	// acknowledges before it processes, as the protocol expects.
	DefaultResponseHeaderTimeout = 10 * time.Second
	// maxResponseHeaderBytes: a reply's headers are a few hundred bytes.
	maxResponseHeaderBytes = 16 << 10
	receiveIDLen           = 8
	// inMemoryBody: messages up to this size are copied into each
	// request's buffer instead of streamed from the spooled body.
	inMemoryBody = 64 << 10
)

// WithDefaults returns c with every field left zero set to its default.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	positive(&c.Concurrency, DefaultConcurrency)
	positive(&c.MaxInFlight, DefaultMaxInFlight)
	positive(&c.Timeout, DefaultTimeout)
	positive(&c.MaxReplyBytes, DefaultMaxReplyBytes)
	positive(&c.MaxPerHost, DefaultMaxPerHost)
	positive(&c.ResponseHeaderTimeout, DefaultResponseHeaderTimeout)
	c.ResponseHeaderTimeout = min(c.ResponseHeaderTimeout, c.Timeout)
}

// positive sets *v to def unless it is already positive.
func positive[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// newClient returns an HTTP client for deliveries. perHost bounds its
// connections to one host (0: no bound), and as many stay idle for reuse;
// dial, when set, replaces the dialer (the address policy). It never
// follows redirects (a subscriber's URL is used exactly as registered)
// and never uses a proxy: the policy judges the address actually dialled,
// which through a proxy would be the proxy's.
func newClient(c *Config, perHost int, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if dial != nil {
		tr.DialContext = dial
	}
	if c.TLS != nil {
		tr.TLSClientConfig = c.TLS.Clone()
	}
	// No cap on idle connections in total: with one subscriber per host
	// (the common shape) any cap below the number of subscribers makes
	// every delivery dial a new connection.
	tr.MaxIdleConns = 0
	tr.MaxConnsPerHost = perHost
	tr.MaxIdleConnsPerHost = c.MaxInFlight
	if perHost > 0 {
		tr.MaxIdleConnsPerHost = perHost
	}
	tr.IdleConnTimeout = 90 * time.Second
	tr.DisableCompression = true
	tr.ResponseHeaderTimeout = c.ResponseHeaderTimeout
	tr.MaxResponseHeaderBytes = maxResponseHeaderBytes
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Message is one published message. Body is read with ReadAt so that any
// number of deliveries can stream it at once from one file.
type Message struct {
	Topic   []byte
	Tracing []byte
	Body    io.ReaderAt
	Length  uint64
	SHA512  [64]byte
}

// Fanout delivers messages. It is safe for concurrent use.
type Fanout struct {
	cfg     Config
	table   Table
	remover Remover
	auth    auth.Pair
	missed  *MissedStore
	log     *slog.Logger
	sem     chan struct{}
	hosts   *hostLimiter
	wg      sync.WaitGroup

	// client calls subscribers; own calls the URLs the policy exempts.
	client, own *http.Client
	local       Local // set before the first delivery

	stats Stats
}

// Stats counts deliveries since start.
type Stats struct {
	Delivered    atomic.Uint64
	Failed       atomic.Uint64
	Unsubscribed atomic.Uint64
}

// New returns a Fanout. missed may be nil to disable missed bookkeeping.
func New(cfg Config, table Table, remover Remover, pair auth.Pair, missed *MissedStore, log *slog.Logger) *Fanout {
	cfg.setDefaults()
	if log == nil {
		log = slog.Default()
	}
	f := &Fanout{
		cfg: cfg, table: table, remover: remover, auth: pair, missed: missed, log: log,
		sem:    make(chan struct{}, cfg.MaxInFlight),
		hosts:  newHostLimiter(cfg.MaxPerHost),
		client: cfg.Client, own: cfg.Client,
	}
	if f.client == nil {
		var dial func(context.Context, string, string) (net.Conn, error)
		if cfg.Policy != nil {
			dial = cfg.Policy.DialContext
		}
		f.client = newClient(&f.cfg, cfg.MaxPerHost, dial)
		f.own = f.client
		if cfg.Policy != nil {
			f.own = newClient(&f.cfg, 0, nil)
		}
	}
	return f
}

// SetLocal makes l take the deliveries to this process's own URLs. Call it
// before the first Deliver.
func (f *Fanout) SetLocal(l Local) { f.local = l }

// CloseIdleConnections closes the keep-alive connections to subscribers.
func (f *Fanout) CloseIdleConnections() {
	f.client.CloseIdleConnections()
	f.own.CloseIdleConnections()
}

// route picks the client for rawURL and marks ctx for the policy's
// dialer; own reports a URL of the node itself, which the policy exempts.
func (f *Fanout) route(ctx context.Context, u *url.URL, rawURL string) (_ context.Context, _ *http.Client, own bool) {
	p := f.cfg.Policy
	if p == nil {
		return ctx, f.client, false
	}
	if p.Exempt(rawURL) {
		return ctx, f.own, true
	}
	return p.Context(ctx, u), f.client, false
}

// Stats returns the delivery counters.
func (f *Fanout) Stats() *Stats { return &f.stats }

// Wait blocks until background work started by deliveries (removals of
// subscribers that asked to leave) has finished.
func (f *Fanout) Wait() { f.wg.Wait() }

// Deliver sends m to every subscription matching its topic and returns
// the number of subscribers that confirmed (each confirmation counts the
// num_subscribers it reports). It returns when every delivery has ended.
//
// With a Barrier configured it first waits (bounded) for the replica to
// catch up with the cluster; if that fails it logs at debug level (the
// barrier warns, rate-limited) and matches the replica as it is: a notify
// is never refused or held for want of a leader.
func (f *Fanout) Deliver(ctx context.Context, m Message) uint32 {
	if f.cfg.Barrier != nil {
		if err := f.cfg.Barrier.ReadBarrier(ctx); err != nil {
			f.log.Debug("notify matches the local replica without a read barrier", "err", err)
		}
	}
	return f.DeliverTo(ctx, m, f.table.Match(m.Topic))
}

// DeliverTo sends m to the given subscriptions.
func (f *Fanout) DeliverTo(ctx context.Context, m Message, subs []fsm.Subscription) uint32 {
	if len(subs) == 0 {
		return 0
	}
	var count atomic.Uint64
	if len(subs) == 1 {
		count.Add(uint64(f.deliverOne(ctx, m, subs[0])))
		return clampU32(count.Load())
	}
	workers := min(f.cfg.Concurrency, len(subs))
	next := atomic.Int64{}
	var wg sync.WaitGroup
	wg.Add(workers)
	for range workers {
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(subs) {
					return
				}
				count.Add(uint64(f.deliverOne(ctx, m, subs[i])))
			}
		}()
	}
	wg.Wait()
	return clampU32(count.Load())
}

func clampU32(v uint64) uint32 {
	if v > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(v)
}

// deadline gives large bodies time to stream: Timeout plus a second per
// MiB, so a 5 GiB message is not cut off by a deadline sized for a ping.
func (f *Fanout) deadline(length uint64) time.Duration {
	return f.cfg.Timeout + time.Duration(length>>20)*time.Second
}

// deliverOne returns the subscribers the delivery counts for. It waits
// for a slot of the subscriber's host first and only then for one of the
// node's: a delivery queued behind a slow host holds nothing other
// notifies need.
func (f *Fanout) deliverOne(ctx context.Context, m Message, s fsm.Subscription) uint32 {
	start, outcome := time.Now(), metrics.Failure
	defer func() { f.cfg.Metrics.Observe(outcome, time.Since(start)) }()
	if f.local != nil {
		if r, ok := f.local.DeliverLocal(m, s); ok {
			var n uint32
			n, outcome = f.tookLocal(m, s, r)
			return n
		}
	}
	u, err := url.Parse(s.URL)
	if err != nil {
		f.failed(m, s, fmt.Errorf("subscriber URL: %w", err))
		return 0
	}
	rctx, client, own := f.route(ctx, u, s.URL)
	if !own {
		release, err := f.hosts.acquire(ctx, hostKey(u))
		if err != nil {
			f.failed(m, s, fmt.Errorf("waiting for a delivery slot of %s: %w", u.Host, err))
			return 0
		}
		defer release()
	}
	select {
	case f.sem <- struct{}{}:
	case <-ctx.Done():
		f.failed(m, s, ctx.Err())
		return 0
	}
	defer func() { <-f.sem }()

	n, outcome, err := f.receive(rctx, client, m, s)
	if err != nil {
		f.failed(m, s, err)
		return 0
	}
	f.cfg.Health.Success(s.URL)
	return n
}

// tookLocal accounts for a delivery the process made to itself as for one
// made over HTTP.
func (f *Fanout) tookLocal(m Message, s fsm.Subscription, r LocalResult) (uint32, metrics.Outcome) {
	switch {
	case r.Err != nil:
		f.failed(m, s, r.Err)
		return 0, metrics.Failure
	case r.Unsubscribe:
		f.leave(s, 0)
		return 0, metrics.Unsubscribed
	}
	f.stats.Delivered.Add(1)
	f.cfg.Health.Success(s.URL)
	return r.Subscribers, metrics.Success
}

// leave removes a subscriber that answered UNSUBSCRIBE_IMMEDIATE (with
// status; 0 in process).
func (f *Fanout) leave(s fsm.Subscription, status int) {
	f.stats.Unsubscribed.Add(1)
	f.log.Info("subscriber asked to unsubscribe", "url", s.URL, "kind", s.Kind.String(), "status", status)
	f.unsubscribe(s)
}

// receive posts one RECEIVE; the outcome is Failure whenever err is set.
func (f *Fanout) receive(ctx context.Context, client *http.Client, m Message, s fsm.Subscription) (uint32, metrics.Outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, f.deadline(m.Length))
	defer cancel()

	var id [receiveIDLen]byte
	if _, err := rand.Read(id[:]); err != nil {
		return 0, metrics.Failure, fmt.Errorf("identifier: %w", err)
	}
	head, err := wire.AppendReceiveHeader(nil, wire.Receive{
		Tracing: m.Tracing, Topic: m.Topic, Identifier: id[:], Length: m.Length,
	})
	if err != nil {
		return 0, metrics.Failure, err
	}
	authz, err := f.auth.Authorize(auth.Receive{
		Tracing: m.Tracing, URL: s.URL, Topic: m.Topic, Identifier: id[:], SHA512: m.SHA512,
	})
	if err != nil {
		return 0, metrics.Failure, fmt.Errorf("sign receive: %w", err)
	}
	var body io.Reader
	if m.Length <= inMemoryBody {
		// One in-memory buffer: net/http then writes headers and body in
		// one syscall, where a streaming body costs a flush of the headers
		// first. Small messages are the common case.
		buf := make([]byte, len(head)+int(m.Length))
		copy(buf, head)
		// io.ReaderAt may report io.EOF with a full read of the last bytes.
		if k, err := m.Body.ReadAt(buf[len(head):], 0); err != nil && !(errors.Is(err, io.EOF) && uint64(k) == m.Length) {
			return 0, metrics.Failure, fmt.Errorf("read message: %w", err)
		}
		body = bytes.NewReader(buf)
	} else {
		body = io.MultiReader(bytes.NewReader(head), io.NewSectionReader(m.Body, 0, int64(m.Length)))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, body)
	if err != nil {
		return 0, metrics.Failure, fmt.Errorf("build request: %w", err)
	}
	req.ContentLength = int64(len(head)) + int64(m.Length)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Repr-Digest", wire.ReprDigest(m.SHA512))
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, metrics.Failure, fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, f.cfg.MaxReplyBytes))
	if err != nil {
		return 0, metrics.Failure, fmt.Errorf("read reply (status %d): %w", resp.StatusCode, err)
	}
	// The reply's body decides, never its status: subscribers answer
	// UNSUBSCRIBE_IMMEDIATE with 400 or 403.
	kind, confirm, perr := wire.ParseReceiveReply(reply)
	switch kind {
	case wire.ReplyUnsubscribeImmediate:
		f.leave(s, resp.StatusCode)
		return 0, metrics.Unsubscribed, nil
	case wire.ReplyConfirmReceive:
		res := f.auth.Verify(ctx, auth.ConfirmReceive{
			Tracing: confirm.Tracing, Identifier: confirm.Identifier,
			NumSubscribers: confirm.NumSubscribers, URL: s.URL,
		}, confirm.Authorization)
		if res != auth.OK {
			return 0, metrics.Failure, fmt.Errorf("confirmation refused: %s", res)
		}
		f.stats.Delivered.Add(1)
		return confirm.NumSubscribers, metrics.Success, nil
	}
	return 0, metrics.Failure, fmt.Errorf("unusable reply (status %d, %d bytes): %w", resp.StatusCode, len(reply), perr)
}

// unsubscribe removes s in the background: the notify that found the
// subscriber gone need not wait for a Raft round trip.
func (f *Fanout) unsubscribe(s fsm.Subscription) {
	if f.remover == nil {
		return
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.remover.Remove(ctx, s); err != nil {
			f.log.Warn("removing subscription after UNSUBSCRIBE_IMMEDIATE failed", "url", s.URL, "err", err)
		}
	}()
}

// hostKey names the host:port a URL connects to, as the per-host limit
// counts it.
func hostKey(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if strings.EqualFold(u.Scheme, "https") {
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// hostLimiter bounds the deliveries in flight to each host. Entries exist
// only while some delivery holds or awaits a slot, so hosts seen once do
// not accumulate.
type hostLimiter struct {
	max   int
	mu    sync.Mutex
	hosts map[string]*hostSlots
}

type hostSlots struct {
	sem  chan struct{}
	refs int // holders and waiters
}

func newHostLimiter(max int) *hostLimiter {
	return &hostLimiter{max: max, hosts: map[string]*hostSlots{}}
}

func (l *hostLimiter) acquire(ctx context.Context, host string) (release func(), err error) {
	l.mu.Lock()
	h := l.hosts[host]
	if h == nil {
		h = &hostSlots{sem: make(chan struct{}, l.max)}
		l.hosts[host] = h
	}
	h.refs++
	l.mu.Unlock()
	select {
	case h.sem <- struct{}{}:
		return func() {
			<-h.sem
			l.leave(host, h)
		}, nil
	case <-ctx.Done():
		l.leave(host, h)
		return nil, ctx.Err()
	}
}

func (l *hostLimiter) leave(host string, h *hostSlots) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h.refs--; h.refs == 0 {
		delete(l.hosts, host)
	}
}

func (f *Fanout) failed(m Message, s fsm.Subscription, err error) {
	f.stats.Failed.Add(1)
	if logIt, suppressed := f.cfg.Health.Failure(s.URL, err); logIt {
		f.log.Info("delivery failed", "url", s.URL, "kind", s.Kind.String(), "err", err, "failures_not_logged", suppressed)
	}
	if f.missed == nil || s.Recovery == "" {
		return
	}
	if err := f.missed.Record(s, m.Topic); err != nil {
		f.log.Error("recording missed message failed", "url", s.URL, "err", err)
	}
}

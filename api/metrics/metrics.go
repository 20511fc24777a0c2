// Package metrics holds one node's Prometheus instruments. Each node builds
// its own registry (nothing is registered on client_golang's default one),
// and hands the small instrument structs below to the packages that count
// things. Every method is safe on a nil receiver, so those packages run
// without metrics (as their tests construct them).
package metrics

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "lonelypsd"

// BuildInfo labels lonelypsd_build_info.
type BuildInfo struct {
	Version, Revision, GoVersion string
}

// Node is one node's registry with the instruments counted as work
// happens; the gauges read at scrape time are added with the Register
// methods once their sources exist.
type Node struct {
	Registry   *prometheus.Registry
	Notifies   *Notifies
	Deliveries *Deliveries
	Missed     *Missed
	Websocket  *Websocket
	// Pruned counts subscriptions removed because their URL was dead
	// (--prune-unhealthy-after).
	Pruned prometheus.Counter
}

// New builds a registry with the Go and process collectors, build info
// and the node's counters.
func New(b BuildInfo) *Node {
	reg := prometheus.NewRegistry()
	n := &Node{
		Registry:   reg,
		Notifies:   newNotifies(),
		Deliveries: newDeliveries(),
		Missed:     newMissed(),
		Websocket:  newWebsocket(),
		Pruned:     counter("subscriptions_pruned_total", "Subscriptions this node removed because every delivery to their URL failed for --prune-unhealthy-after.", nil),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "go_version": b.GoVersion},
	})
	build.Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		build,
		n.Notifies.http, n.Notifies.websocket,
		n.Deliveries.success, n.Deliveries.failure, n.Deliveries.unsubscribed, n.Deliveries.duration,
		n.Missed.sent, n.Missed.failed, n.Pruned,
		n.Websocket.received, n.Websocket.sent,
		n.Websocket.compressedIn, n.Websocket.compressedOut,
		n.Websocket.uncompressedIn, n.Websocket.uncompressedOut,
	)
	return n
}

// Handler serves the registry in the Prometheus exposition formats.
func (n *Node) Handler() http.Handler {
	return promhttp.HandlerFor(n.Registry, promhttp.HandlerOpts{Registry: n.Registry})
}

func counter(name, help string, labels prometheus.Labels) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help, ConstLabels: labels})
}

// Notifies counts accepted notifies by transport.
type Notifies struct {
	http, websocket prometheus.Counter
}

func newNotifies() *Notifies {
	const name, help = "notifies_total", "Notifies accepted for fan-out, by transport."
	return &Notifies{
		http:      counter(name, help, prometheus.Labels{"transport": "http"}),
		websocket: counter(name, help, prometheus.Labels{"transport": "websocket"}),
	}
}

// HTTP counts a notify received over HTTP.
func (n *Notifies) HTTP() {
	if n != nil {
		n.http.Inc()
	}
}

// Websocket counts a notify received over a websocket.
func (n *Notifies) Websocket() {
	if n != nil {
		n.websocket.Inc()
	}
}

// Outcome is how one delivery to a subscriber ended.
type Outcome int

const (
	// Success: the subscriber confirmed.
	Success Outcome = iota
	// Failure: no usable confirmation (error, timeout, bad reply).
	Failure
	// Unsubscribed: the subscriber answered UNSUBSCRIBE_IMMEDIATE.
	Unsubscribed
)

// Deliveries counts deliveries to subscribers and times them.
type Deliveries struct {
	success, failure, unsubscribed prometheus.Counter
	duration                       prometheus.Histogram
}

func newDeliveries() *Deliveries {
	const name, help = "deliveries_total", "Deliveries of a message to one subscription, by outcome."
	return &Deliveries{
		success:      counter(name, help, prometheus.Labels{"outcome": "success"}),
		failure:      counter(name, help, prometheus.Labels{"outcome": "failure"}),
		unsubscribed: counter(name, help, prometheus.Labels{"outcome": "unsubscribed"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "delivery_duration_seconds",
			Help: "Time from the start of a delivery (including waiting for a slot) to its outcome.",
			// 1 ms to about 33 s: local subscribers answer in a
			// millisecond, the default delivery timeout is 30 s.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
	}
}

// Observe records one delivery's outcome and how long it took.
func (d *Deliveries) Observe(o Outcome, took time.Duration) {
	if d == nil {
		return
	}
	switch o {
	case Success:
		d.success.Inc()
	case Failure:
		d.failure.Inc()
	case Unsubscribed:
		d.unsubscribed.Inc()
	}
	d.duration.Observe(took.Seconds())
}

// Missed counts MISSED notices posted to recovery URLs.
type Missed struct {
	sent, failed prometheus.Counter
}

func newMissed() *Missed {
	return &Missed{
		sent:   counter("missed_sent_total", "MISSED notices a recovery URL accepted.", nil),
		failed: counter("missed_failed_total", "MISSED notice attempts that failed (each retry counts).", nil),
	}
}

// Sent counts an accepted MISSED notice.
func (m *Missed) Sent() {
	if m != nil {
		m.sent.Inc()
	}
}

// Failed counts a failed MISSED attempt.
func (m *Missed) Failed() {
	if m != nil {
		m.failed.Inc()
	}
}

// Direction of websocket traffic, seen from the node.
type Direction int

const (
	// In: from the websocket client to the node.
	In Direction = iota
	// Out: from the node to the websocket client.
	Out
)

// Websocket counts websocket messages and the bytes of notified and
// delivered message bodies before and after compression.
type Websocket struct {
	received, sent                  prometheus.Counter
	compressedIn, compressedOut     prometheus.Counter
	uncompressedIn, uncompressedOut prometheus.Counter
}

func newWebsocket() *Websocket {
	const (
		comp   = "websocket_compressed_bytes_total"
		compH  = "Bytes of message bodies on the websocket wire (compressed or not), by direction; divided by websocket_uncompressed_bytes_total it is the compression ratio."
		plain  = "websocket_uncompressed_bytes_total"
		plainH = "Bytes of message bodies before compression (after decompression), by direction."
	)
	in, out := prometheus.Labels{"direction": "in"}, prometheus.Labels{"direction": "out"}
	return &Websocket{
		received:        counter("websocket_messages_received_total", "Websocket messages received from clients.", nil),
		sent:            counter("websocket_messages_sent_total", "Websocket messages sent to clients.", nil),
		compressedIn:    counter(comp, compH, in),
		compressedOut:   counter(comp, compH, out),
		uncompressedIn:  counter(plain, plainH, in),
		uncompressedOut: counter(plain, plainH, out),
	}
}

// Received counts n messages read from a websocket client. Callers count
// a batch at a time: the counter is shared by every connection, and an
// atomic add per message is a cache line moved between cores per message.
func (w *Websocket) Received(n int) {
	if w != nil && n > 0 {
		w.received.Add(float64(n))
	}
}

// Sent counts n messages written to a websocket client, a batch at a time.
func (w *Websocket) Sent(n int) {
	if w != nil && n > 0 {
		w.sent.Add(float64(n))
	}
}

// Body counts a message body crossing a websocket: wire bytes as sent and
// plain bytes as the message is; equal when it was not compressed.
func (w *Websocket) Body(d Direction, wire, plain uint64) {
	if w == nil {
		return
	}
	if d == In {
		w.compressedIn.Add(float64(wire))
		w.uncompressedIn.Add(float64(plain))
		return
	}
	w.compressedOut.Add(float64(wire))
	w.uncompressedOut.Add(float64(plain))
}

// RegisterSubscriptions adds lonelypsd_subscriptions, read from counts at
// scrape time.
func (n *Node) RegisterSubscriptions(counts func() (exact, glob int)) {
	opts := func(kind string) prometheus.GaugeOpts {
		return prometheus.GaugeOpts{
			Namespace: namespace, Name: "subscriptions",
			Help:        "Subscriptions in this node's replica of the table, by kind.",
			ConstLabels: prometheus.Labels{"kind": kind},
		}
	}
	n.Registry.MustRegister(
		prometheus.NewGaugeFunc(opts("exact"), func() float64 { e, _ := counts(); return float64(e) }),
		prometheus.NewGaugeFunc(opts("glob"), func() float64 { _, g := counts(); return float64(g) }),
	)
}

// RegisterMissedPending adds lonelypsd_missed_pending, read from pending
// at scrape time (-1 when it cannot be read).
func (n *Node) RegisterMissedPending(pending func() (int, error)) {
	n.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "missed_pending",
		Help: "MISSED notices waiting to be sent or retried by this node (-1: the store could not be read).",
	}, func() float64 {
		p, err := pending()
		if err != nil {
			return -1
		}
		return float64(p)
	}))
}

// RegisterWebsocketConnections adds lonelypsd_websocket_connections.
func (n *Node) RegisterWebsocketConnections(conns func() int) {
	n.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "websocket_connections",
		Help: "Open websocket connections to this node.",
	}, func() float64 { return float64(conns()) }))
}

// RaftStats is what a scrape reads of the node's Raft state.
type RaftStats struct {
	// State is follower, candidate, leader or shutdown.
	State                                          string
	Term, CommitIndex, AppliedIndex, LeaderChanges uint64
}

// RegisterRaft adds the lonelypsd_raft_* families, read from stats at
// scrape time. lonelypsd_raft_state is one-hot: 1 for the label of the
// current state (follower, candidate, leader, shutdown), 0 for the others.
func (n *Node) RegisterRaft(stats func() RaftStats) {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_raft_"+name, help, labels, nil)
	}
	n.Registry.MustRegister(&raftCollector{
		stats:   stats,
		state:   d("state", "Raft state of this node, one-hot: 1 for the current state.", "state"),
		term:    d("term", "Current Raft term."),
		commit:  d("commit_index", "Highest Raft log index known committed."),
		applied: d("applied_index", "Highest Raft log index applied to this node's table."),
		changes: d("leader_changes_total", "Times this node saw a new leader."),
	})
}

type raftCollector struct {
	stats                                 func() RaftStats
	state, term, commit, applied, changes *prometheus.Desc
}

func (c *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.term, c.commit, c.applied, c.changes} {
		ch <- d
	}
}

func (c *raftCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	for _, st := range []string{"follower", "candidate", "leader", "shutdown"} {
		v := 0.0
		if strings.EqualFold(s.State, st) {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, st)
	}
	ch <- prometheus.MustNewConstMetric(c.term, prometheus.GaugeValue, float64(s.Term))
	ch <- prometheus.MustNewConstMetric(c.commit, prometheus.GaugeValue, float64(s.CommitIndex))
	ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(s.AppliedIndex))
	ch <- prometheus.MustNewConstMetric(c.changes, prometheus.CounterValue, float64(s.LeaderChanges))
}

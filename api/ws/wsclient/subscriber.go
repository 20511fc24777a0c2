package wsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
)

// EventKind says what an Event reports.
type EventKind int

const (
	// EventMessage is a message received on a subscribed topic or glob.
	EventMessage EventKind = iota
	// EventMissed is a MISSED notice: the broadcaster could not deliver a
	// message on Message.Topic. Resynchronise that topic by your own means.
	EventMissed
	// EventConnected: a connection is configured and every subscription
	// is in place on it. Reconnect is set after the first one: messages
	// published while there was no connection were not received, so a
	// subscriber that cares resynchronises as after EventMissed.
	EventConnected
	// EventDisconnected: the connection ended (Err says why), or a pass
	// over the URLs found no broadcaster (Broadcaster is then empty); the
	// Subscriber tries again after its backoff.
	EventDisconnected
)

func (k EventKind) String() string {
	if names := [...]string{"message", "missed", "connected", "disconnected"}; k >= 0 && int(k) < len(names) {
		return names[k]
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is what a Subscriber reports, in order.
type Event struct {
	Kind EventKind
	// Message is set for EventMessage and EventMissed (Message.Missed).
	Message Message
	// Broadcaster is the URL of the connection the event is about.
	Broadcaster string
	// Reconnect marks an EventConnected that follows an earlier
	// connection.
	Reconnect bool
	// Err is why the connection ended (EventDisconnected), or why a dial
	// failed.
	Err error
}

// SubscriberOptions configure a Subscriber. URLs is required; the rest
// have defaults.
type SubscriberOptions struct {
	// Options configure each connection (auth, zstd, presets, TLS through
	// DialOptions). Here Buffer defaults to 16 and SpoolAbove to 16 MiB
	// (negative: every message in memory).
	Options
	// URLs are broadcaster websocket URLs (ws://host:port/v1/websocket);
	// each (re)connection tries them in a fresh random order.
	URLs []string
	// Events is the capacity of the Events channel (default 64). A full
	// channel stops the connection from reading (back-pressure): at most
	// Events + Options.Buffer messages wait, each in memory only up to
	// SpoolAbove.
	Events int
	// Backoff, doubled after each pass over URLs that found no broadcaster
	// (up to MaxBackoff), plus a uniform jitter below Jitter, is the wait
	// before the next pass. Defaults: 1 s, 30 s, 1 s.
	Backoff, MaxBackoff, Jitter time.Duration
	// StableAfter: a connection that lasted this long resets the backoff,
	// so the next reconnection is immediate (default 10 s). A connection
	// that keeps ending sooner backs off as failed dials do.
	StableAfter time.Duration
	// DialTimeout bounds one attempt: dialing, configuring and
	// subscribing everything (default 10 s).
	DialTimeout time.Duration
	// MaxPasses, if positive, makes Run give up after that many
	// consecutive passes over URLs without a stable connection; 0 retries
	// for ever.
	MaxPasses int
	// Log, if set, gets a line per connection and disconnection.
	Log *slog.Logger
}

// Subscriber keeps a set of subscriptions alive over a websocket,
// reconnecting to the broadcasters as needed. Create it with
// NewSubscriber, subscribe, and call Run once; read Events until it is
// closed. Its methods are safe for concurrent use.
type Subscriber struct {
	opts   SubscriberOptions
	events chan Event

	mu    sync.Mutex
	conn  *Conn // nil while disconnected
	exact map[string]struct{}
	globs map[string]struct{}
}

// ErrNotConnected: the Subscriber has no connection right now.
var ErrNotConnected = errors.New("wsclient: not connected")

// NewSubscriber returns a Subscriber of opts.URLs with no subscription.
func NewSubscriber(opts SubscriberOptions) (*Subscriber, error) {
	if len(opts.URLs) == 0 {
		return nil, errors.New("wsclient: no broadcaster URL")
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 16
	}
	if opts.SpoolAbove == 0 {
		opts.SpoolAbove = 16 << 20
	}
	if opts.Events <= 0 {
		opts.Events = 64
	}
	defaults := []struct {
		d   *time.Duration
		def time.Duration
	}{{&opts.Backoff, time.Second}, {&opts.MaxBackoff, 30 * time.Second}, {&opts.Jitter, time.Second}, {&opts.StableAfter, 10 * time.Second}, {&opts.DialTimeout, 10 * time.Second}}
	for _, d := range defaults {
		if *d.d <= 0 {
			*d.d = d.def
		}
	}
	return &Subscriber{opts: opts, events: make(chan Event, opts.Events),
		exact: make(map[string]struct{}), globs: make(map[string]struct{})}, nil
}

// Events returns the channel of events, closed when Run returns.
func (s *Subscriber) Events() <-chan Event { return s.events }

// SubscribeExact adds topic to the subscriptions: at once on the current
// connection (waiting for the broadcaster's confirmation), and on every
// later one. Without a connection it is only recorded.
func (s *Subscriber) SubscribeExact(ctx context.Context, topic []byte) error {
	return s.change(ctx, s.exact, string(topic), true, func(c *Conn) error { return c.SubscribeExact(ctx, topic) })
}

// SubscribeGlob adds a glob pattern, as SubscribeExact does a topic.
func (s *Subscriber) SubscribeGlob(ctx context.Context, glob string) error {
	return s.change(ctx, s.globs, glob, true, func(c *Conn) error { return c.SubscribeGlob(ctx, glob) })
}

// UnsubscribeExact removes topic from the subscriptions.
func (s *Subscriber) UnsubscribeExact(ctx context.Context, topic []byte) error {
	return s.change(ctx, s.exact, string(topic), false, func(c *Conn) error { return c.UnsubscribeExact(ctx, topic) })
}

// UnsubscribeGlob removes a glob pattern from the subscriptions.
func (s *Subscriber) UnsubscribeGlob(ctx context.Context, glob string) error {
	return s.change(ctx, s.globs, glob, false, func(c *Conn) error { return c.UnsubscribeGlob(ctx, glob) })
}

// change records a subscription change and applies it to the current
// connection. Recording and reading the connection happen under one lock,
// so a change either precedes a reconnection's snapshot (and is applied by
// it) or follows it (and is applied here). A connection that ends meanwhile
// is no error: the next one applies the set.
func (s *Subscriber) change(ctx context.Context, set map[string]struct{}, key string, add bool, apply func(*Conn) error) error {
	s.mu.Lock()
	_, had := set[key]
	if add {
		set[key] = struct{}{}
	} else {
		delete(set, key)
	}
	c := s.conn
	s.mu.Unlock()
	if c == nil || had == add {
		return nil
	}
	err := apply(c)
	if err != nil && ctx.Err() == nil && isDone(c) {
		return nil
	}
	return err
}

func isDone(c *Conn) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}

// Notify publishes on the current connection.
func (s *Subscriber) Notify(ctx context.Context, topic, message []byte) (uint64, error) {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c == nil {
		return 0, ErrNotConnected
	}
	return c.Notify(ctx, topic, message)
}

// Run connects and keeps connecting until ctx ends (or MaxPasses is
// reached), reporting on Events, which it closes when it returns.
func (s *Subscriber) Run(ctx context.Context) error {
	defer close(s.events)
	passes, connectedBefore := 0, false
	for {
		c, url, err := s.connect(ctx)
		if err == nil {
			start := time.Now()
			err = s.serve(ctx, c, url, connectedBefore)
			connectedBefore = true
			if time.Since(start) >= s.opts.StableAfter {
				passes = 0
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.emit(ctx, Event{Kind: EventDisconnected, Broadcaster: url, Err: err})
		passes++
		if s.opts.MaxPasses > 0 && passes >= s.opts.MaxPasses {
			return fmt.Errorf("wsclient: gave up after %d passes over the broadcasters: %w", passes, err)
		}
		// A first loss after a stable connection reconnects at once, as the
		// Python client moves on to the next broadcaster.
		if url == "" || passes > 1 {
			if err := s.retry().Pause(ctx, passes); err != nil {
				return err
			}
		}
	}
}

// wait is the pause after pass n (1-based) without a stable connection.
// retry is the reconnection schedule of the options.
func (s *Subscriber) retry() client.Retry {
	return client.Retry{Backoff: s.opts.Backoff, MaxBackoff: s.opts.MaxBackoff, Jitter: s.opts.Jitter}
}

// connect makes one pass over the URLs in random order and returns the
// first connection that configures and takes every subscription.
func (s *Subscriber) connect(ctx context.Context) (*Conn, string, error) {
	urls := append([]string(nil), s.opts.URLs...)
	rand.Shuffle(len(urls), func(i, j int) { urls[i], urls[j] = urls[j], urls[i] })
	var errs []error
	for _, u := range urls {
		c, err := s.attempt(ctx, u)
		if err == nil {
			return c, u, nil
		}
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
	}
	return nil, "", errors.Join(errs...)
}

// attempt dials u and subscribes the connection to the set, within
// DialTimeout.
func (s *Subscriber) attempt(ctx context.Context, u string) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	c, err := Dial(ctx, u, s.opts.Options)
	if err != nil {
		return nil, err
	}
	if err := s.resubscribe(ctx, c); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// resubscribe makes c the current connection and subscribes it to the
// set as it is at that moment (see change).
func (s *Subscriber) resubscribe(ctx context.Context, c *Conn) error {
	s.mu.Lock()
	s.conn = c
	exact := make([]string, 0, len(s.exact))
	for k := range s.exact {
		exact = append(exact, k)
	}
	globs := make([]string, 0, len(s.globs))
	for k := range s.globs {
		globs = append(globs, k)
	}
	s.mu.Unlock()
	err := func() error {
		for _, t := range exact {
			if err := c.SubscribeExact(ctx, []byte(t)); err != nil {
				return fmt.Errorf("subscribe %q: %w", t, err)
			}
		}
		for _, g := range globs {
			if err := c.SubscribeGlob(ctx, g); err != nil {
				return fmt.Errorf("subscribe glob %q: %w", g, err)
			}
		}
		return nil
	}()
	if err != nil {
		s.drop(c)
	}
	return err
}

// drop forgets c as the current connection.
func (s *Subscriber) drop(c *Conn) {
	s.mu.Lock()
	if s.conn == c {
		s.conn = nil
	}
	s.mu.Unlock()
}

// serve reports c's messages until it ends or ctx does, and closes it.
func (s *Subscriber) serve(ctx context.Context, c *Conn, url string, reconnect bool) error {
	defer func() {
		s.drop(c)
		_ = c.Close()
	}()
	if s.opts.Log != nil {
		s.opts.Log.Info("websocket connected", "broadcaster", url, "reconnect", reconnect)
	}
	if !s.emit(ctx, Event{Kind: EventConnected, Broadcaster: url, Reconnect: reconnect}) {
		return ctx.Err()
	}
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				err := c.Err()
				if s.opts.Log != nil {
					s.opts.Log.Warn("websocket ended", "broadcaster", url, "err", err)
				}
				return err
			}
			kind := EventMessage
			if m.Missed {
				kind = EventMissed
			}
			if !s.emit(ctx, Event{Kind: kind, Message: m, Broadcaster: url}) {
				return ctx.Err()
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// emit waits for room on Events; false when ctx ended first.
func (s *Subscriber) emit(ctx context.Context, e Event) bool {
	select {
	case s.events <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

package ws

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/wsproto"
	"github.com/lonelypsd/lonelypsd/fanout"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// Close codes. The Python client treats every close alike (it reconnects
// and subscribes again); the codes and reasons are for people reading
// logs and packet captures.
const (
	statusGoingAway      = websocket.StatusGoingAway       // shutdown
	statusProtocolError  = websocket.StatusProtocolError   // a message that breaks the protocol
	statusPolicy         = websocket.StatusPolicyViolation // authorization refused, ping unanswered
	statusInternal       = websocket.StatusInternalError   // this node failed
	statusTryAgainLater  = websocket.StatusTryAgainLater   // slow consumer, registration or auth backend unavailable
	receiveIdentifierLen = 4                               // the reference's RECEIVE_STREAM identifiers
	ctrlQueue            = 64
	// maxConfigureMessage bounds the first message, read before anything
	// about the peer is known. A CONFIGURE is 52 bytes of fixed headers
	// plus its authorization and tracing: 16 KiB leaves room for long
	// bearer tokens and tracing, and keeps the default 10,000 peers that
	// never finish CONFIGURE within 160 MiB.
	maxConfigureMessage = 16 << 10
)

// closeError is why a connection ends: the code and reason sent in the
// close frame, and the cause for the log.
type closeError struct {
	code   websocket.StatusCode
	reason string
	err    error
}

func (e *closeError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%s (%d): %v", e.reason, e.code, e.err)
	}
	return fmt.Sprintf("%s (%d)", e.reason, e.code)
}

func (e *closeError) Unwrap() error { return e.err }

func closeErr(code websocket.StatusCode, reason string, err error) *closeError {
	// A close reason is at most 123 bytes.
	if len(reason) > 120 {
		reason = reason[:120]
	}
	return &closeError{code: code, reason: reason, err: err}
}

func protocolErr(format string, args ...any) *closeError {
	err := fmt.Errorf(format, args...)
	return closeErr(statusProtocolError, err.Error(), err)
}

// authErr closes for a refused authorization: a replay store that is down
// is worth a retry, anything else is a refusal.
func authErr(what string, r auth.Result) *closeError {
	if r == auth.Unavailable {
		return closeErr(statusTryAgainLater, what+": authorization unavailable", nil)
	}
	return closeErr(statusPolicy, what+": authorization "+r.String(), nil)
}

type itemKind uint8

const (
	itemReceive itemKind = iota + 1
	itemMissed
	itemEnableZstd  // ENABLE_ZSTD_PRESET or ENABLE_ZSTD_CUSTOM of comp
	itemDisableZstd // DISABLE_ZSTD_CUSTOM of comp
)

// item is one message waiting to be sent to the connection in order.
type item struct {
	kind   itemKind
	topic  []byte
	body   *body       // itemReceive
	comp   *compressor // itemEnableZstd, itemDisableZstd
	charge int64
}

// pendingAck is a RECEIVE_STREAM part sent and not yet acknowledged.
type pendingAck struct {
	id    [receiveIdentifierLen]byte
	part  uint64
	final bool
}

// sending is the RECEIVE_STREAM being written.
type sending struct {
	src        *body // the bytes on the wire (compressed or not)
	orig       *body // the message, which holds src alive
	compressor uint64
	declen     uint64
	topic      []byte
	id         [receiveIdentifierLen]byte
	url        string // websocket:<nonce>:<broadcaster counter>, one per message
	part       uint64
	off        uint64
	done       bool // every part written
}

// notifyStream is a NOTIFY_STREAM being received.
type notifyStream struct {
	ident   []byte
	tracing []byte
	first   wsproto.StreamFirst
	next    uint64
	sp      *spool
}

// conn is one websocket. Four goroutines work on it: the reader (reads
// messages, hands them over), the processor (the handler's goroutine:
// handles them strictly in order, one at a time, as the protocol's
// counters require), the writer (owns every write and the broadcaster
// counter) and the pinger.
type conn struct {
	hub    *Hub
	ws     *websocket.Conn
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	// Set during CONFIGURE, before the writer starts; read-only after.
	nonce   [32]byte
	zstd    bool     // compression enabled on this connection
	trainer *trainer // nil: no dictionary training

	// Processor only.
	subCounter int64
	stream     *notifyStream
	usedIn     map[uint64]bool // compressors the peer has used, for the log

	// Writer only.
	broCounter int64
	usedOut    map[uint64]bool // compressors used to send, for the log
	announced  []*compressor   // oldest first
	cur        *sending

	// The compressors the peer may use, by id; customs are the trained
	// ones in use (oldest first) and retired the last one withdrawn.
	zmu      sync.Mutex
	decoders map[uint64]*compressor
	customs  []*compressor
	retired  *compressor

	// Guarded by hub.mu.
	exact map[string]struct{}
	globs map[string]*reg

	ctrl chan []byte // encoded replies, written before queued deliveries

	qmu     sync.Mutex
	queue   []item
	qhead   int
	qbytes  int64
	qclosed bool
	qwake   chan struct{}

	amu     sync.Mutex
	acks    []pendingAck
	ackWake chan struct{}

	in           chan []byte
	pending      atomic.Int64
	pendWake     chan struct{}
	readerWaits  atomic.Bool
	readerWaited atomic.Uint64

	closeOnce sync.Once
	why       atomic.Pointer[closeError]
	closed    chan struct{} // the close handshake is over
}

// serveWebsocket is GET /v1/websocket.
func (h *Hub) serveWebsocket(c echo.Context) error {
	if n := h.nconns.Add(1); n > int64(h.cfg.MaxConnections) {
		h.nconns.Add(-1)
		h.log.Warn("websocket refused: connection limit reached", "limit", h.cfg.MaxConnections)
		return c.String(http.StatusServiceUnavailable, "too many websocket connections, retry later\n")
	}
	defer h.nconns.Add(-1)
	ws, err := websocket.Accept(c.Response(), c.Request(), &websocket.AcceptOptions{
		// The protocol compresses with zstd itself; permessage-deflate on
		// top would cost CPU for nothing.
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		// Accept has answered the request already.
		h.log.Info("websocket upgrade failed", "remote", c.RealIP(), "err", err)
		return nil
	}
	// Until CONFIGURE is verified the peer is unknown: its first message
	// may only be as large as a CONFIGURE can reasonably be.
	ws.SetReadLimit(min(maxConfigureMessage, h.cfg.IncomingMaxMessage))
	cn := &conn{
		hub:      h,
		ws:       ws,
		log:      h.log.With("conn", h.nextID.Add(1), "remote", c.RealIP()),
		exact:    make(map[string]struct{}),
		globs:    make(map[string]*reg),
		ctrl:     make(chan []byte, ctrlQueue),
		qwake:    make(chan struct{}, 1),
		ackWake:  make(chan struct{}, 1),
		in:       make(chan []byte, 256),
		pendWake: make(chan struct{}, 1),
		closed:   make(chan struct{}),
		decoders: make(map[uint64]*compressor),
	}
	cn.ctx, cn.cancel = context.WithCancel(context.Background())
	if !h.addConn(cn) {
		_ = ws.Close(statusGoingAway, "broadcaster shutting down")
		cn.cancel()
		return nil
	}
	cn.run()
	return nil
}

// run serves the connection until it closes, then unregisters it.
func (c *conn) run() {
	defer c.teardown()
	if err := c.configure(); err != nil {
		c.fail(err)
		return
	}
	var wg sync.WaitGroup
	if c.trainer != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.trainLoop()
		}()
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := c.readLoop(); err != nil {
			c.fail(err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := c.writeLoop(); err != nil {
			c.fail(err)
		}
	}()
	go func() {
		defer wg.Done()
		c.pingLoop()
	}()
	for buf := range c.in {
		err := c.process(buf)
		c.pending.Add(-int64(len(buf)))
		select {
		case c.pendWake <- struct{}{}:
		default:
		}
		if err != nil {
			c.fail(err)
			break
		}
	}
	// The reader ended (the peer closed, or fail was called): make sure
	// the others stop too.
	c.fail(closeErr(websocket.StatusNormalClosure, "", nil))
	wg.Wait()
}

// fail closes the connection once, with the first reason given; later
// calls only wait. It does not block the caller beyond starting the close.
func (c *conn) fail(err error) {
	c.closeOnce.Do(func() {
		ce, ok := err.(*closeError)
		if !ok {
			ce = closeErr(statusInternal, "internal error", err)
		}
		c.why.Store(ce)
		c.qmu.Lock()
		c.qclosed = true
		c.qmu.Unlock()
		go func() {
			// The close handshake waits (a few seconds at most) for the
			// peer's close frame, read by the reader goroutine; the
			// context ends afterwards, stopping the writer and pinger.
			_ = c.ws.Close(ce.code, ce.reason)
			c.cancel()
			close(c.closed)
		}()
	})
}

// teardown runs when every goroutine of the connection has ended.
func (c *conn) teardown() {
	<-c.closed
	c.hub.removeConn(c)
	c.qmu.Lock()
	for i := c.qhead; i < len(c.queue); i++ {
		if b := c.queue[i].body; b != nil {
			b.release()
		}
	}
	c.queue, c.qhead = nil, 0
	c.qmu.Unlock()
	if c.cur != nil {
		c.cur.orig.release()
		c.cur = nil
	}
	if c.stream != nil {
		c.stream.sp.discard()
		c.stream = nil
	}
	why := c.why.Load()
	switch {
	case why == nil:
	case why.code == websocket.StatusNormalClosure || why.code == statusGoingAway:
		c.log.Debug("websocket closed", "reason", why.Error())
	default:
		c.log.Info("websocket closed", "code", int(why.code), "reason", why.Error())
	}
}

// configure waits for CONFIGURE and answers CONFIRM_CONFIGURE; nothing
// else may come first.
func (c *conn) configure() error {
	// The timer closes with a close frame (the peer learns why), which a
	// read deadline would not send.
	late := closeErr(statusPolicy, "no CONFIGURE within "+c.hub.cfg.ConfigureTimeout.String(), nil)
	timer := time.AfterFunc(c.hub.cfg.ConfigureTimeout, func() { c.fail(late) })
	typ, buf, err := c.ws.Read(c.ctx)
	if !timer.Stop() {
		return late
	}
	switch {
	case errors.Is(err, websocket.ErrMessageTooBig):
		// The library has sent the close frame (1009) already.
		return closeErr(websocket.StatusMessageTooBig,
			fmt.Sprintf("first message over the %d bytes a CONFIGURE may take", maxConfigureMessage), err)
	case err != nil:
		return closeErr(statusProtocolError, "no configure", err)
	}
	if typ != websocket.MessageBinary {
		return protocolErr("text message; the protocol is binary")
	}
	m, err := wsproto.ParseS2B(buf)
	if err != nil {
		return protocolErr("parse: %w", err)
	}
	cfg, ok := m.(wsproto.Configure)
	if !ok {
		return protocolErr("first message is %T, not CONFIGURE", m)
	}
	if r := c.hub.auth.Verify(c.ctx, auth.StatefulConfigure{
		Tracing: cfg.Tracing, SubscriberNonce: cfg.SubscriberNonce, EnableZstd: cfg.EnableZstd,
		EnableTraining: cfg.EnableTraining, InitialDict: cfg.InitialDict,
	}, cfg.Authorization); r != auth.OK {
		return authErr("configure", r)
	}
	c.zstd = cfg.EnableZstd && !c.hub.cfg.DisableCompression
	var enable []*compressor
	if c.zstd {
		enable = append(enable, c.hub.plain)
		if cfg.InitialDict > 1 {
			p := c.hub.presets[uint64(cfg.InitialDict)]
			if p == nil {
				// The reference closes for an id it does not know too.
				return protocolErr("unknown preset dictionary %d", cfg.InitialDict)
			}
			enable = append(enable, p)
		}
		if cfg.EnableTraining && !c.hub.cfg.DisableTraining {
			c.trainer = newTrainer(c.hub)
		}
	}
	for _, z := range enable {
		c.decoders[z.id] = z
	}
	c.ws.SetReadLimit(c.hub.cfg.IncomingMaxMessage)
	var bro [32]byte
	if _, err := rand.Read(bro[:]); err != nil {
		return closeErr(statusInternal, "nonce", err)
	}
	c.nonce = auth.ConnectionNonce(cfg.SubscriberNonce, bro)
	c.subCounter, c.broCounter = -1, 1
	authz, err := c.hub.auth.Authorize(auth.StatefulConfirmConfigure{BroadcasterNonce: bro})
	if err != nil {
		return closeErr(statusInternal, "sign", err)
	}
	out, err := wsproto.ConfirmConfigure{BroadcasterNonce: bro, Authorization: authz}.AppendMinimal(nil)
	if err != nil {
		return closeErr(statusInternal, "encode", err)
	}
	if err := c.write(out); err != nil {
		return err
	}
	// The first things the writer sends: ENABLE_ZSTD_PRESET for
	// compressor 1 and the preset (each takes a broadcaster counter value).
	for _, z := range enable {
		c.enqueueControl(item{kind: itemEnableZstd, comp: z})
	}
	return nil
}

func (c *conn) write(b []byte) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.hub.cfg.WriteTimeout)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageBinary, b); err != nil {
		return closeErr(statusTryAgainLater, "write failed", err)
	}
	return nil
}

// reply queues an encoded confirmation for the writer. It blocks when the
// peer does not read its confirmations, which in turn stops reading from
// it: back-pressure onto the only party that can relieve it.
func (c *conn) reply(m wsproto.Message) error {
	out, err := m.AppendMinimal(nil)
	if err != nil {
		return closeErr(statusInternal, "encode", err)
	}
	select {
	case c.ctrl <- out:
		return nil
	case <-c.ctx.Done():
		return closeErr(statusGoingAway, "closed", c.ctx.Err())
	}
}

// readLoop reads messages and hands them to the processor. Reading goes on
// while the processor is busy (a NOTIFY's fan-out can take seconds), so
// pings and close frames are answered; it stops only when the backlog is
// over MaxPendingBytes.
func (c *conn) readLoop() error {
	defer close(c.in)
	for {
		typ, r, err := c.ws.Reader(c.ctx)
		if err != nil {
			if websocket.CloseStatus(err) != -1 || c.ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return closeErr(statusProtocolError, "read failed", err)
		}
		if typ != websocket.MessageBinary {
			return protocolErr("text message; the protocol is binary")
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(r); err != nil {
			if websocket.CloseStatus(err) != -1 || c.ctx.Err() != nil {
				return nil
			}
			return closeErr(statusProtocolError, "read failed", err)
		}
		b := buf.Bytes()
		n := int64(len(b))
		for p := c.pending.Load(); p > 0 && p+n > c.hub.cfg.MaxPendingBytes; p = c.pending.Load() {
			c.readerWaits.Store(true)
			c.readerWaited.Add(1)
			select {
			case <-c.pendWake:
			case <-c.ctx.Done():
				return nil
			}
		}
		c.readerWaits.Store(false)
		c.pending.Add(n)
		select {
		case c.in <- b:
		case <-c.ctx.Done():
			return nil
		}
	}
}

// pingLoop pings the peer; one not answered in time is a half-open or
// hung connection and is closed. A ping cannot be answered while the
// reader is held back by the backlog, so those rounds do not count.
func (c *conn) pingLoop() {
	t := time.NewTicker(c.hub.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		if c.readerWaits.Load() {
			continue
		}
		gen := c.readerWaited.Load()
		ctx, cancel := context.WithTimeout(c.ctx, c.hub.cfg.PingTimeout)
		err := c.ws.Ping(ctx)
		cancel()
		if err != nil && c.ctx.Err() == nil && !c.readerWaits.Load() && c.readerWaited.Load() == gen {
			c.fail(closeErr(statusPolicy, "ping not answered", err))
			return
		}
	}
}

// process handles one message from the subscriber.
func (c *conn) process(buf []byte) error {
	m, err := wsproto.ParseS2B(buf)
	if err != nil {
		return protocolErr("parse: %w", err)
	}
	switch m := m.(type) {
	case wsproto.Configure:
		return protocolErr("second CONFIGURE")
	case wsproto.SubscribeExact:
		return c.subscribe(fsm.Exact, m.Topic, "", m.Authorization, m.Tracing)
	case wsproto.SubscribeGlob:
		return c.subscribe(fsm.Glob, nil, m.Glob, m.Authorization, m.Tracing)
	case wsproto.UnsubscribeExact:
		return c.unsubscribe(fsm.Exact, m.Topic, "", m.Authorization, m.Tracing)
	case wsproto.UnsubscribeGlob:
		return c.unsubscribe(fsm.Glob, nil, m.Glob, m.Authorization, m.Tracing)
	case wsproto.Notify:
		return c.notify(m)
	case wsproto.NotifyStream:
		return c.notifyStream(m)
	case wsproto.ContinueReceive:
		url := c.nextSubscriberURL()
		if r := c.hub.auth.Verify(c.ctx, auth.StatefulContinueReceive{
			Tracing: m.Tracing, Identifier: m.Identifier, PartID: m.PartID, URL: url,
		}, m.Authorization); r != auth.OK {
			return authErr("continue receive", r)
		}
		return c.acked(m.Identifier, m.PartID, false)
	case wsproto.ConfirmReceive:
		url := c.nextSubscriberURL()
		if r := c.hub.auth.Verify(c.ctx, auth.ConfirmReceive{
			Tracing: m.Tracing, Identifier: m.Identifier, NumSubscribers: m.NumSubscribers, URL: url,
		}, m.Authorization); r != auth.OK {
			return authErr("confirm receive", r)
		}
		return c.acked(m.Identifier, 0, true)
	}
	return protocolErr("unexpected message %T", m)
}

// nextSubscriberURL returns the url of the subscriber's next
// counter-bearing message and advances the counter (-1, -2, ...).
func (c *conn) nextSubscriberURL() string {
	u := auth.WebsocketURL(c.nonce, c.subCounter)
	c.subCounter--
	return u
}

// verifyChange takes a (un)subscribe's counter value and checks its
// authorization (subscribe and unsubscribe are signed alike, in the
// SUBSCRIBE_* layout); it returns the url signed and the registration key.
func (c *conn) verifyChange(what string, kind fsm.Kind, topic []byte, glob, authz string, tracing []byte) (url, key string, err error) {
	url = c.nextSubscriberURL()
	var am auth.Message = auth.SubscribeExact{Tracing: tracing, URL: url, Topic: topic}
	key = string(topic)
	if kind == fsm.Glob {
		am, key = auth.SubscribeGlob{Tracing: tracing, URL: url, Glob: glob}, glob
	}
	if r := c.hub.auth.Verify(c.ctx, am, authz); r != auth.OK {
		return "", "", authErr(what, r)
	}
	return url, key, nil
}

func (c *conn) subscribe(kind fsm.Kind, topic []byte, glob, authz string, tracing []byte) error {
	url, key, err := c.verifyChange("subscribe", kind, topic, glob, authz, tracing)
	if err != nil {
		return err
	}
	r, err := c.hub.subscribe(c, kind, key)
	switch {
	case errors.Is(err, errDuplicate):
		return protocolErr("subscribe %s %q: %w", kind, key, err)
	case errors.Is(err, ErrClosing):
		return closeErr(statusGoingAway, "broadcaster shutting down", err)
	case err != nil:
		return protocolErr("subscribe %s: %w", kind, err)
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.hub.cfg.RegisterTimeout)
	err = c.hub.waitApplied(ctx, r)
	cancel()
	if err != nil {
		return closeErr(statusTryAgainLater, "subscription store unavailable", err)
	}
	return c.confirmChange(kind, url, topic, glob, false)
}

func (c *conn) unsubscribe(kind fsm.Kind, topic []byte, glob, authz string, tracing []byte) error {
	url, key, err := c.verifyChange("unsubscribe", kind, topic, glob, authz, tracing)
	if err != nil {
		return err
	}
	// Local delivery stops at once; the row goes in the background.
	if err := c.hub.unsubscribe(c, kind, key); err != nil {
		return protocolErr("unsubscribe %s %q: %w", kind, key, err)
	}
	return c.confirmChange(kind, url, topic, glob, true)
}

// confirmChange answers a (un)subscribe. Both are signed as
// CONFIRM_SUBSCRIBE_* with the request's url, as the reference does.
func (c *conn) confirmChange(kind fsm.Kind, url string, topic []byte, glob string, unsubscribe bool) error {
	var m auth.Message = auth.ConfirmSubscribeExact{URL: url, Topic: topic}
	if kind == fsm.Glob {
		m = auth.ConfirmSubscribeGlob{URL: url, Glob: glob}
	}
	a, err := c.hub.auth.Authorize(m)
	if err != nil {
		return closeErr(statusInternal, "sign", err)
	}
	switch {
	case kind == fsm.Glob && unsubscribe:
		return c.reply(wsproto.ConfirmUnsubscribeGlob{Glob: glob, Authorization: a})
	case kind == fsm.Glob:
		return c.reply(wsproto.ConfirmSubscribeGlob{Glob: glob, Authorization: a})
	case unsubscribe:
		return c.reply(wsproto.ConfirmUnsubscribeExact{Topic: topic, Authorization: a})
	}
	return c.reply(wsproto.ConfirmSubscribeExact{Topic: topic, Authorization: a})
}

// compressorFor returns the compressor id names among those this
// connection may use (nil for none).
func (c *conn) compressorFor(id uint64) (*compressor, error) {
	if id == compressorNone {
		return nil, nil
	}
	c.zmu.Lock()
	z := c.decoders[id]
	c.zmu.Unlock()
	if z == nil {
		return nil, protocolErr("compressor %d was not enabled on this connection", id)
	}
	if !c.usedIn[id] {
		if c.usedIn == nil {
			c.usedIn = make(map[uint64]bool)
		}
		c.usedIn[id] = true
		c.log.Debug("peer compresses with a compressor for the first time", "compressor", id)
	}
	return z, nil
}

func (c *conn) notify(m wsproto.Notify) error {
	if r := c.hub.auth.Verify(c.ctx, auth.Notify{
		Tracing: m.Tracing, Topic: m.Topic, Identifier: m.Identifier, SHA512: m.CompressedSHA512,
	}, m.Authorization); r != auth.OK {
		return authErr("notify", r)
	}
	z, err := c.compressorFor(m.Compressor)
	if err != nil {
		return err
	}
	msg := fanout.Message{Topic: m.Topic, Body: bytes.NewReader(m.Payload), Length: uint64(len(m.Payload)), SHA512: m.CompressedSHA512}
	if z == nil {
		c.sample(m.Payload)
	} else {
		b, err := c.hub.decompress(z, bytes.NewReader(m.Payload), m.DecompressedLength)
		if err != nil {
			return protocolErr("notify: %w", err)
		}
		defer b.release()
		c.sampleBody(b)
		msg.Body, msg.Length, msg.SHA512 = b, b.n, b.sum
	}
	return c.publish(msg, m.Identifier, m.CompressedSHA512)
}

// publish fans the message out and answers CONFIRM_NOTIFY. The fan-out
// does not stop if the notifier hangs up: half a delivery is worse than a
// whole one nobody hears about (as for HTTP notifies).
func (c *conn) publish(msg fanout.Message, identifier []byte, wireSHA [64]byte) error {
	count := c.hub.fan.Deliver(context.WithoutCancel(c.ctx), msg)
	// Signed over the SHA-512 of the bytes the notifier sent and signed
	// (compressed if compressed): the websocket client does not verify
	// it, and this binds the answer to what was asked.
	a, err := c.hub.auth.Authorize(auth.ConfirmNotify{Identifier: identifier, Subscribers: count, Topic: msg.Topic, SHA512: wireSHA})
	if err != nil {
		return closeErr(statusInternal, "sign", err)
	}
	return c.reply(wsproto.ConfirmNotify{Identifier: identifier, Subscribers: uint64(count), Authorization: a})
}

func (c *conn) notifyStream(m wsproto.NotifyStream) error {
	s := c.stream
	if m.PartID == 0 {
		if s != nil {
			return protocolErr("notify stream: a new stream began while %x was open", s.ident)
		}
		f := m.First
		if r := c.hub.auth.Verify(c.ctx, auth.Notify{
			Tracing: m.Tracing, Topic: f.Topic, Identifier: m.Identifier, SHA512: f.CompressedSHA512,
		}, m.Authorization); r != auth.OK {
			return authErr("notify stream", r)
		}
		if _, err := c.compressorFor(f.Compressor); err != nil {
			return err
		}
		if f.Compressor != compressorNone && f.CompressedLength == 0 {
			return protocolErr("notify stream: empty compressed message")
		}
		sp, err := c.hub.newSpool(f.CompressedLength)
		if err != nil {
			return closeErr(statusInternal, "cannot spool message", err)
		}
		s = &notifyStream{ident: bytes.Clone(m.Identifier), tracing: bytes.Clone(m.Tracing), first: *f, next: 1, sp: sp}
		s.first.Topic = bytes.Clone(f.Topic)
		c.stream = s
	} else {
		if s == nil {
			return protocolErr("notify stream: part %d without a first part", m.PartID)
		}
		if !bytes.Equal(m.Identifier, s.ident) || m.PartID != s.next {
			return protocolErr("notify stream: got part %d of %x, want part %d of %x", m.PartID, m.Identifier, s.next, s.ident)
		}
		// Every part is authorized with the first part's fields and its
		// own (fresh) signature.
		if r := c.hub.auth.Verify(c.ctx, auth.Notify{
			Tracing: s.tracing, Topic: s.first.Topic, Identifier: s.ident, SHA512: s.first.CompressedSHA512,
		}, m.Authorization); r != auth.OK {
			return authErr("notify stream", r)
		}
		s.next++
	}
	if s.sp.n+uint64(len(m.Payload)) > s.first.CompressedLength {
		return protocolErr("notify stream: more than the declared %d bytes", s.first.CompressedLength)
	}
	if _, err := s.sp.Write(m.Payload); err != nil {
		return closeErr(statusInternal, "cannot spool message", err)
	}
	if s.sp.n < s.first.CompressedLength {
		if m.PartID > 1<<32-1 {
			return protocolErr("notify stream: part id %d cannot be acknowledged", m.PartID)
		}
		a, err := c.hub.auth.Authorize(auth.StatefulContinueNotify{Identifier: s.ident, PartID: uint32(m.PartID)})
		if err != nil {
			return closeErr(statusInternal, "sign", err)
		}
		return c.reply(wsproto.ContinueNotify{Identifier: s.ident, PartID: m.PartID, Authorization: a})
	}
	c.stream = nil
	b := s.sp.finish()
	defer b.release()
	if b.sum != s.first.CompressedSHA512 {
		return protocolErr("notify stream: message does not match x-compressed-sha512")
	}
	msg := fanout.Message{Topic: s.first.Topic, Body: b, Length: b.n, SHA512: b.sum}
	z, err := c.compressorFor(s.first.Compressor)
	if err != nil {
		// Withdrawn while the stream came in (and no longer decodable).
		return err
	}
	if z == nil {
		c.sampleBody(b)
	} else {
		d, err := c.hub.decompress(z, io.NewSectionReader(b, 0, int64(b.n)), s.first.DecompressedLength)
		if err != nil {
			return protocolErr("notify stream: %w", err)
		}
		defer d.release()
		c.sampleBody(d)
		msg.Body, msg.Length, msg.SHA512 = d, d.n, d.sum
	}
	return c.publish(msg, s.ident, s.first.CompressedSHA512)
}

// acked checks an acknowledgement against the oldest unacknowledged part:
// CONTINUE_RECEIVE for a non-final part (same identifier and part id),
// CONFIRM_RECEIVE for a final one.
func (c *conn) acked(id []byte, part uint64, final bool) error {
	c.amu.Lock()
	if len(c.acks) == 0 {
		c.amu.Unlock()
		return protocolErr("acknowledgement of %x with nothing outstanding", id)
	}
	head := c.acks[0]
	if head.final != final || !bytes.Equal(head.id[:], id) || (!final && head.part != part) {
		c.amu.Unlock()
		return protocolErr("acknowledgement of %x part %d (final %t), expected %x part %d (final %t)",
			id, part, final, head.id, head.part, head.final)
	}
	c.acks = c.acks[1:]
	c.amu.Unlock()
	select {
	case c.ackWake <- struct{}{}:
	default:
	}
	return nil
}

func (c *conn) unacked() int {
	c.amu.Lock()
	defer c.amu.Unlock()
	return len(c.acks)
}

// enqueue queues a delivery without ever blocking the caller (a publisher
// serving many connections). A connection whose queue is full is too slow
// for the traffic it asked for: it is closed, and its client reconnects.
func (c *conn) enqueue(it item) bool {
	it.charge = queueOverhead
	if it.body != nil && it.body.f == nil {
		it.charge += int64(it.body.n)
	}
	c.qmu.Lock()
	if c.qclosed {
		c.qmu.Unlock()
		return false
	}
	if len(c.queue)-c.qhead >= c.hub.cfg.MaxQueuedMessages || c.qbytes+it.charge > c.hub.cfg.MaxQueuedBytes {
		c.qmu.Unlock()
		c.fail(closeErr(statusTryAgainLater, "send queue full: subscriber too slow", nil))
		return false
	}
	if it.body != nil {
		it.body.retain()
	}
	c.queue = append(c.queue, it)
	c.qbytes += it.charge
	c.qmu.Unlock()
	c.wakeWriter()
	return true
}

// enqueueControl queues an ENABLE or DISABLE in order with the deliveries;
// a handful per connection, so the delivery limits do not apply.
func (c *conn) enqueueControl(it item) {
	c.qmu.Lock()
	if c.qclosed {
		c.qmu.Unlock()
		return
	}
	it.charge = queueOverhead
	c.queue = append(c.queue, it)
	c.qbytes += it.charge
	c.qmu.Unlock()
	c.wakeWriter()
}

// sampleBody offers a short message to the dictionary trainer.
func (c *conn) sampleBody(b *body) {
	if c.trainer == nil || b.n < minCompressSize || b.n >= trainedMaxSize {
		return
	}
	p, err := b.bytes()
	if err != nil {
		c.log.Warn("training sample unreadable", "err", err)
		return
	}
	c.sample(p)
}

func (c *conn) wakeWriter() {
	select {
	case c.qwake <- struct{}{}:
	default:
	}
}

// peek returns the next queued item without removing it.
func (c *conn) peek() (item, bool) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.qhead >= len(c.queue) {
		return item{}, false
	}
	return c.queue[c.qhead], true
}

func (c *conn) pop() {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	c.qbytes -= c.queue[c.qhead].charge
	c.queue[c.qhead] = item{}
	c.qhead++
	// Compact once the consumed prefix dominates, so a long-lived queue
	// does not keep growing its backing array.
	if c.qhead == len(c.queue) {
		c.queue, c.qhead = c.queue[:0], 0
	} else if c.qhead > 1024 && c.qhead*2 > len(c.queue) {
		n := copy(c.queue, c.queue[c.qhead:])
		clear(c.queue[n:])
		c.queue, c.qhead = c.queue[:n], 0
	}
}

// writeLoop owns the socket's write side. Replies go first; deliveries
// follow in queue order, one RECEIVE_STREAM at a time (never interleaved,
// and never a MISSED or ENABLE between its parts, which the client cannot
// take), with at most MaxUnackedParts parts unacknowledged.
func (c *conn) writeLoop() error {
	for {
		select {
		case m := <-c.ctrl:
			if err := c.write(m); err != nil {
				return err
			}
			continue
		case <-c.ctx.Done():
			return nil
		default:
		}
		progressed, err := c.sendStep()
		if err != nil {
			return err
		}
		if progressed {
			continue
		}
		select {
		case m := <-c.ctrl:
			if err := c.write(m); err != nil {
				return err
			}
		case <-c.qwake:
		case <-c.ackWake:
		case <-c.ctx.Done():
			return nil
		}
	}
}

// sendStep writes at most one delivery message; false when there is
// nothing it may send now.
func (c *conn) sendStep() (bool, error) {
	max := c.hub.cfg.MaxUnackedParts
	if c.cur != nil {
		if !c.cur.done {
			if c.unacked() >= max {
				return false, nil
			}
			return true, c.sendPart()
		}
		// Every part is out: the body is no longer needed here (the
		// acknowledgements only name the identifier and part).
		c.cur.orig.release()
		c.cur = nil
	}
	it, ok := c.peek()
	if !ok {
		return false, nil
	}
	switch it.kind {
	case itemReceive:
		if c.unacked() >= max {
			return false, nil
		}
		c.pop()
		if err := c.startReceive(it); err != nil {
			return false, err
		}
		return true, c.sendPart()
	case itemMissed:
		c.pop()
		return true, c.sendMissed(it.topic)
	case itemEnableZstd:
		c.pop()
		return true, c.sendEnableZstd(it.comp)
	case itemDisableZstd:
		c.pop()
		return true, c.sendDisableZstd(it.comp)
	}
	c.pop()
	return true, nil
}

// nextBroadcasterURL returns the url of the next message the subscriber
// verifies and advances the counter (1, 2, ...). Counters are taken in
// the order messages are written, which is the order the client counts.
func (c *conn) nextBroadcasterURL() string {
	u := auth.WebsocketURL(c.nonce, c.broCounter)
	c.broCounter++
	return u
}

func (c *conn) sendMissed(topic []byte) error {
	a, err := c.hub.auth.Authorize(auth.Missed{Recovery: c.nextBroadcasterURL(), Topic: topic})
	if err != nil {
		return closeErr(statusInternal, "sign", err)
	}
	out, err := wsproto.Missed{Authorization: a, Topic: topic}.AppendMinimal(nil)
	if err != nil {
		return closeErr(statusInternal, "encode", err)
	}
	return c.write(out)
}

// sendEnableZstd announces a compressor: ENABLE_ZSTD_PRESET for 1 and the
// presets, ENABLE_ZSTD_CUSTOM with the dictionary for a trained one. From
// then on outgoing messages may use it.
func (c *conn) sendEnableZstd(z *compressor) error {
	level := int16(max(min(z.level, 1<<15-1), -1<<15))
	var m wsproto.Message
	if z.id < firstCustomID {
		a, err := c.hub.auth.Authorize(auth.StatefulEnableZstdPreset{
			URL: c.nextBroadcasterURL(), CompressorID: uint32(z.id), Level: int32(level), MinSize: z.min, MaxSize: z.max,
		})
		if err != nil {
			return closeErr(statusInternal, "sign", err)
		}
		m = wsproto.EnableZstdPreset{Identifier: z.id, CompressionLevel: level, MinSize: uint32(z.min), MaxSize: z.max, Authorization: a}
	} else {
		d := z.codec.Dict()
		a, err := c.hub.auth.Authorize(auth.StatefulEnableZstdCustom{
			URL: c.nextBroadcasterURL(), CompressorID: uint32(z.id), Level: int32(level), MinSize: z.min, MaxSize: z.max,
			DictSHA512: d.SHA512(),
		})
		if err != nil {
			return closeErr(statusInternal, "sign", err)
		}
		m = wsproto.EnableZstdCustom{Identifier: z.id, CompressionLevel: level, MinSize: uint32(z.min), MaxSize: z.max,
			Authorization: a, SHA512: d.SHA512(), Dictionary: d.Bytes()}
	}
	out, err := m.AppendMinimal(nil)
	if err != nil {
		return closeErr(statusInternal, "encode", err)
	}
	if err := c.write(out); err != nil {
		return err
	}
	c.announced = append(c.announced, z)
	return nil
}

// sendDisableZstd withdraws a trained dictionary; outgoing messages stop
// using it first.
func (c *conn) sendDisableZstd(z *compressor) error {
	c.announced = slices.DeleteFunc(c.announced, func(x *compressor) bool { return x == z })
	a, err := c.hub.auth.Authorize(auth.StatefulDisableZstdCustom{URL: c.nextBroadcasterURL(), CompressorID: uint32(z.id)})
	if err != nil {
		return closeErr(statusInternal, "sign", err)
	}
	out, err := wsproto.DisableZstdCustom{Identifier: z.id, Authorization: a}.AppendMinimal(nil)
	if err != nil {
		return closeErr(statusInternal, "encode", err)
	}
	return c.write(out)
}

// startReceive prepares the RECEIVE_STREAM of a queued message: the
// compressor, a fresh identifier, and the one broadcaster counter value
// the whole message consumes (the Python client counts messages, not
// parts; the reference server's per-part counting desynchronises it).
func (c *conn) startReceive(it item) error {
	s := &sending{src: it.body, orig: it.body, declen: it.body.n, topic: it.topic}
	c.sampleBody(it.body)
	if z := pick(c.announced, it.body.n, c.hub.cfg.MaxCompressSize); z != nil {
		var zb *body
		var err error
		if z.shared {
			zb, err = c.hub.compressedShared(z, it.body)
		} else {
			// Trained dictionaries belong to this connection: short
			// messages, compressed here and dropped once sent.
			zb, err = compressSmall(z, it.body)
		}
		if err != nil {
			c.log.Warn("compression failed, sending uncompressed", "compressor", z.id, "err", err)
		} else if zb != nil {
			s.src, s.compressor = zb, z.id
			if !c.usedOut[z.id] {
				if c.usedOut == nil {
					c.usedOut = make(map[uint64]bool)
				}
				c.usedOut[z.id] = true
				c.log.Debug("sending with a compressor for the first time", "compressor", z.id)
			}
		}
	}
	if _, err := rand.Read(s.id[:]); err != nil {
		it.body.release()
		return closeErr(statusInternal, "identifier", err)
	}
	s.url = c.nextBroadcasterURL()
	c.cur = s
	return nil
}

// sendPart writes the next part of the current RECEIVE_STREAM: headers,
// then as much of the body as fits in OutgoingMaxMessage.
func (c *conn) sendPart() error {
	s := c.cur
	// Continuation parts are signed too (same url, fresh nonce): the
	// Python client ignores them, a stricter peer can check them.
	a, err := c.hub.auth.Authorize(auth.Receive{URL: s.url, Topic: s.topic, Identifier: s.id[:], SHA512: s.src.sum})
	if err != nil {
		return closeErr(statusInternal, "sign", err)
	}
	m := wsproto.ReceiveStream{Authorization: a, Identifier: s.id[:], PartID: s.part}
	if s.part == 0 {
		m.First = &wsproto.StreamFirst{
			Topic: s.topic, Compressor: s.compressor, CompressedLength: s.src.n,
			DecompressedLength: s.declen, CompressedSHA512: s.src.sum,
		}
	}
	remaining := s.src.n - s.off
	bufp := c.hub.getBuf()
	defer c.hub.putBuf(bufp)
	// The payload is the rest of the message, so the headers encoded
	// without one are exactly the bytes that precede it.
	out, err := m.AppendMinimal((*bufp)[:0])
	if err != nil {
		return closeErr(statusInternal, "encode", err)
	}
	room := uint64(c.hub.cfg.OutgoingMaxMessage - len(out))
	n := min(room, remaining)
	out = out[:len(out)+int(n)]
	if n > 0 {
		if k, err := s.src.ReadAt(out[len(out)-int(n):], int64(s.off)); uint64(k) != n {
			return closeErr(statusInternal, "read message", err)
		}
	}
	s.off += n
	final := s.off == s.src.n
	c.amu.Lock()
	c.acks = append(c.acks, pendingAck{id: s.id, part: s.part, final: final})
	c.amu.Unlock()
	s.part++
	s.done = final
	return c.write(out)
}

func (h *Hub) getBuf() *[]byte {
	if p, ok := h.bufs.Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, 0, h.cfg.OutgoingMaxMessage)
	return &b
}

func (h *Hub) putBuf(p *[]byte) { h.bufs.Put(p) }

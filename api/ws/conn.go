package ws

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/wsproto"
)

// Close codes. The Python client treats every close alike (it reconnects
// and subscribes again); the codes and reasons are for people reading
// logs and packet captures.
const (
	statusGoingAway      = websocket.StatusGoingAway       // shutdown
	statusProtocolError  = websocket.StatusProtocolError   // a message that breaks the protocol
	statusPolicy         = websocket.StatusPolicyViolation // authorization refused, ping unanswered
	statusInternal       = websocket.StatusInternalError   // this node failed
	statusTryAgainLater  = websocket.StatusTryAgainLater   // slow consumer, registration or auth backend unavailable, disk almost full
	statusTooBig         = websocket.StatusMessageTooBig   // a message over a size limit
	receiveIdentifierLen = 4                               // the reference's RECEIVE_STREAM identifiers
	// ctrlQueue and inQueue are the replies and received messages a
	// connection buffers between its goroutines; allocated with it, so
	// kept small (the byte limits are elsewhere).
	ctrlQueue = 16
	inQueue   = 32
	// closeWait bounds the close handshake: how long a close frame sent
	// waits for the peer's before the socket is closed anyway.
	closeWait = 5 * time.Second
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

// conn is one websocket. Three goroutines work on it: the reader (reads
// frames, answers pings, hands messages over), the processor (handles
// them strictly in order, one at a time, as the protocol's counters
// require), the writer (owns every write and the broadcaster counter); a
// timer pings it. This file holds its lifecycle; conn_read.go the reader;
// conn_process.go the processor; conn_write.go the writer and its queue;
// conn_ping.go the pings.
type conn struct {
	hub *Hub
	// ws made the handshake and is not used since; held so that its
	// finalizer, which closes the socket, cannot run while the connection
	// lives.
	ws     *websocket.Conn
	bc     *batchConn   // the socket: every frame is written there
	fr     *frameReader // the reader's only
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

	// Writer only: whoever holds wmu, the writer goroutine or, when an
	// acknowledgement frees a slot, the goroutine that handled it.
	wmu        sync.Mutex
	broCounter int64
	usedOut    map[uint64]bool // compressors used to send, for the log
	announced  []*compressor   // oldest first
	cur        *sending        // &sendState while a message is being sent
	sendState  sending
	// What the batch being written sent, for the metrics once it is out.
	sent                int
	sentWire, sentPlain uint64

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
	// wake tells the writer to look again: something was queued, or an
	// acknowledgement lifted the unacknowledged limit.
	wake chan struct{}

	amu  sync.Mutex
	acks []pendingAck
	// owed is len(acks), written under amu: a publisher queuing a
	// delivery reads it without taking amu, whose cache line the reader
	// keeps writing.
	owed atomic.Int32

	in           chan []byte
	handedOver   atomic.Int64 // messages on in or being processed
	pending      atomic.Int64
	pendWake     chan struct{}
	readerWaits  atomic.Bool   // the reader is held back by the backlog
	readerWaited atomic.Uint64 // times it was

	pmu          sync.Mutex
	pingTimer    *time.Timer
	pingsStopped bool
	pingSeq      atomic.Uint64 // the last ping's payload
	pongSeq      atomic.Uint64 // the highest pong payload received
	pongWake     chan struct{}

	closeOnce  sync.Once
	why        atomic.Pointer[closeError]
	stop       chan struct{} // closed by fail: hand nothing more over
	configured atomic.Bool   // CONFIGURE is done and the reader runs
	readDone   chan struct{} // the reader has stopped reading
	closed     chan struct{} // the close handshake is over
}

// serveWebsocket is GET /v1/websocket.
func (h *Hub) serveWebsocket(c echo.Context) error {
	if n := h.nconns.Add(1); n > int64(h.cfg.MaxConnections) {
		h.nconns.Add(-1)
		h.log.Warn("websocket refused: connection limit reached", "limit", h.cfg.MaxConnections)
		return c.String(http.StatusServiceUnavailable, "too many websocket connections, retry later\n")
	}
	started := false
	defer func() {
		if !started {
			h.nconns.Add(-1)
		}
	}()
	bc := &batchConn{timeout: h.cfg.WriteTimeout, pool: &h.batches}
	br := &batchResponse{ResponseWriter: c.Response(), conn: bc}
	ws, err := websocket.Accept(br, c.Request(), &websocket.AcceptOptions{
		// The protocol compresses with zstd itself; permessage-deflate on
		// top would cost CPU for nothing.
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		// Accept has answered the request already.
		h.log.Info("websocket upgrade failed", "remote", c.RealIP(), "err", err)
		return nil
	}
	cn := &conn{
		hub:      h,
		ws:       ws,
		bc:       bc,
		fr:       newFrameReader(bc.Conn, br.pre, wsReadBuffer),
		log:      h.log.With("conn", h.nextID.Add(1), "remote", c.RealIP()),
		exact:    make(map[string]struct{}),
		globs:    make(map[string]*reg),
		ctrl:     make(chan []byte, ctrlQueue),
		wake:     make(chan struct{}, 1),
		in:       make(chan []byte, inQueue),
		pendWake: make(chan struct{}, 1),
		pongWake: make(chan struct{}, 1),
		stop:     make(chan struct{}),
		readDone: make(chan struct{}),
		closed:   make(chan struct{}),
		decoders: make(map[uint64]*compressor),
	}
	cn.fr.control = cn.control
	bc.raw = newRawWriter(bc.Conn)
	if pr := newPeekReader(bc.Conn, wsReadBuffer); pr != nil {
		cn.fr.src = pr
	}
	cn.ctx, cn.cancel = context.WithCancel(context.Background())
	if !h.addConn(cn) {
		_ = bc.writeControl(opClose, closePayload(statusGoingAway, "broadcaster shutting down"))
		_ = bc.Close()
		cn.cancel()
		return nil
	}
	// The connection outlives the request: the handler's goroutine, the
	// deepest stack of the connection, and the request itself are freed
	// rather than held for the connection's lifetime.
	started = true
	go func() {
		defer h.nconns.Add(-1)
		cn.run()
	}()
	return nil
}

// run serves the connection until it closes, then unregisters it.
func (c *conn) run() {
	defer c.teardown()
	if err := c.configure(); err != nil {
		c.fr.settle()
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
	wg.Add(2)
	c.configured.Store(true)
	go func() {
		defer wg.Done()
		if err := c.readLoop(); err != nil {
			c.fail(err)
		}
		c.fr.settle()
		close(c.readDone)
		close(c.in)
	}()
	go func() {
		defer wg.Done()
		if err := c.writeLoop(); err != nil {
			c.fail(err)
		}
	}()
	c.startPings()
	c.processLoop()
	c.stopPings()
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
		close(c.stop)
		c.qmu.Lock()
		c.qclosed = true
		c.qmu.Unlock()
		go func() {
			c.closeHandshake(ce)
			// The context ends afterwards, stopping the writer and a
			// ping under way.
			c.cancel()
			close(c.closed)
		}()
	})
}

// closeHandshake sends the close frame (unless the peer's came first and
// was answered) and waits, closeWait at most, for the reader to see the
// peer's close frame or the end of the stream, then closes the socket. A
// peer that has not finished CONFIGURE, or broke the protocol, is not
// waited for.
func (c *conn) closeHandshake(ce *closeError) {
	wait := c.configured.Load() && ce.code != statusProtocolError && ce.code != statusTooBig
	if err := c.bc.writeControl(opClose, closePayload(ce.code, ce.reason)); err == nil && wait {
		t := time.NewTimer(closeWait)
		select {
		case <-c.readDone:
		case <-t.C:
		}
		t.Stop()
	}
	_ = c.bc.Close()
}

// closePayload is a close frame's payload: the code, then the reason.
func closePayload(code websocket.StatusCode, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// teardown runs when every goroutine of the connection has ended.
func (c *conn) teardown() {
	<-c.closed
	c.hub.removeConn(c)
	c.qmu.Lock()
	for _, it := range c.queue[c.qhead:] {
		it.release()
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
	// Until CONFIGURE is verified the peer is unknown: its first message
	// may only be as large as a CONFIGURE can reasonably be.
	buf, err := c.fr.readMessage(nil, min(maxConfigureMessage, c.hub.cfg.IncomingMaxMessage))
	if !timer.Stop() {
		return late
	}
	if err != nil {
		if errors.Is(err, errTooBig) {
			return closeErr(statusTooBig,
				fmt.Sprintf("first message over the %d bytes a CONFIGURE may take", maxConfigureMessage), err)
		}
		if err := c.readErr(err); err != nil {
			return err
		}
		return closeErr(websocket.StatusNormalClosure, "closed before CONFIGURE", err)
	}
	c.hub.cfg.Metrics.Received(1)
	m, err := wsproto.ParseS2B(buf)
	if err != nil {
		return protocolErr("parse: %w", err)
	}
	cfg, ok := m.(wsproto.Configure)
	if !ok {
		return protocolErr("first message is %T, not CONFIGURE", m)
	}
	if err := c.verify("configure", auth.StatefulConfigure{
		Tracing: cfg.Tracing, SubscriberNonce: cfg.SubscriberNonce, EnableZstd: cfg.EnableZstd,
		EnableTraining: cfg.EnableTraining, InitialDict: cfg.InitialDict,
	}, cfg.Authorization); err != nil {
		return err
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
	out, err := wsproto.AppendMinimal(nil, wsproto.ConfirmConfigure{BroadcasterNonce: bro, Authorization: authz})
	if err != nil {
		return closeErr(statusInternal, "encode", err)
	}
	if err := c.write(out); err != nil {
		return err
	}
	c.countSent()
	// The first things the writer sends: ENABLE_ZSTD_PRESET for
	// compressor 1 and the preset (each takes a broadcaster counter value).
	for _, z := range enable {
		c.enqueueControl(item{kind: itemEnableZstd, comp: z})
	}
	return nil
}

func (c *conn) write(b []byte) error {
	if err := c.bc.writeMessage(b); err != nil {
		return closeErr(statusTryAgainLater, "write failed", err)
	}
	c.sent++
	return nil
}

func (h *Hub) getBuf() *[]byte {
	if p, ok := h.bufs.Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, 0, h.cfg.OutgoingMaxMessage)
	return &b
}

func (h *Hub) putBuf(p *[]byte) { h.bufs.Put(p) }

// Package wsclient is a Go client of the websocket ("stateful") side of
// the lonelypss protocol.
//
// Conn is one connection: it configures it, subscribes and unsubscribes,
// publishes (NOTIFY, or NOTIFY_STREAM in parts), and receives
// RECEIVE_STREAM and MISSED, acknowledging every part and checking every
// authorization with the connection's counters, as the Python client
// does, with zstd as the broadcaster enables it. It ends with its socket.
//
// Subscriber stays subscribed: it keeps one Conn to one of several
// broadcasters, reconnects with backoff and jitter when it ends,
// subscribes everything again, and reports messages, MISSED notices and
// reconnections as Events on a bounded channel.
//
// A received message is assembled before it is handed over: in memory,
// or past Options.SpoolAbove in an unlinked temporary file
// (Message.File), so messages of any size cost no memory.
package wsclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/coder/websocket"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/ws/zstddict"
	"github.com/lonelypsd/lonelypsd/api/wsproto"
)

// Options configure a connection. The zero value is auth none, no
// compression, minimal headers, 3.5 MiB messages.
type Options struct {
	// Auth signs what the client sends (to-broadcaster) and verifies what
	// the broadcaster sends (to-subscriber); zero means none both ways.
	Auth auth.Pair
	// EnableZstd asks for compression in CONFIGURE; the client then
	// accepts the compressors the broadcaster enables and decompresses
	// what comes with them.
	EnableZstd bool
	// NoTraining clears enable_training in CONFIGURE (the Python client
	// sets it), so the broadcaster trains no dictionary for it.
	NoTraining bool
	// InitialDict names a preset dictionary in CONFIGURE; PresetDicts holds
	// the presets this client knows, by id (an ENABLE_ZSTD_PRESET for
	// another id ends the connection, as in the Python client).
	InitialDict uint16
	PresetDicts map[uint64][]byte
	// CompressNotifies compresses published messages with the enabled
	// compressors, choosing as the Python client does: among those whose
	// size window holds the message, the one with the smallest minimum
	// size, the first enabled on a tie.
	CompressNotifies bool
	// Expanded sends expanded headers instead of minimal ones.
	Expanded bool
	// MaxMessage is the largest websocket message sent (default 3.5 MiB);
	// longer notifications go as NOTIFY_STREAM parts.
	MaxMessage int
	// ReadLimit is the largest websocket message accepted (default 4 MiB,
	// aiohttp's default, which the Python client runs with).
	ReadLimit int64
	// DialOptions are passed to websocket.Dial (an HTTPClient trusting a
	// private CA for wss, headers).
	DialOptions *websocket.DialOptions
	// SpoolAbove: messages longer than this (as sent, compressed or not)
	// are assembled in a temporary file in SpoolDir ("" for the system's)
	// instead of memory, and handed over as Message.File. 0 keeps every
	// message in memory.
	SpoolAbove int64
	SpoolDir   string
	// Buffer is how many received messages wait for the reader of
	// Messages (default 65,536). When it is full the connection stops
	// reading, so the broadcaster waits too (back-pressure); memory stays
	// within Buffer messages.
	Buffer int
}

// Message is a message received on the connection, or a MISSED notice
// when Missed is set.
type Message struct {
	Topic []byte
	// Data is the message, unless it was longer than Options.SpoolAbove:
	// then File holds it (at its start, unlinked: close it when done).
	Data []byte
	File *os.File
	// Size is the message's length (decompressed).
	Size   uint64
	Missed bool
	// Compressor is the compressor it arrived with (0: none).
	Compressor uint64
	// Parts is how many RECEIVE_STREAM parts carried it; MaxPart the size
	// of the largest of those websocket messages.
	Parts   int
	MaxPart int
}

// Conn is one configured websocket connection. Its methods are safe for
// concurrent use; Notify calls run one at a time.
type Conn struct {
	ws   *websocket.Conn
	opts Options
	auth auth.Pair

	nonce [32]byte

	// wmu serialises writes with the subscriber counter: the counter of a
	// message is the order it is written in.
	wmu        sync.Mutex
	subCounter int64

	// Reader goroutine only.
	broCounter int64
	recv       *receiving

	mu       sync.Mutex
	comps    []*comp    // enabled, by ascending min size, then enabling order
	pending  []*request // subscribe/unsubscribe requests awaiting confirmation, in order
	notifies map[string]*notifyWait
	msgs     chan Message
	err      error
	done     chan struct{}

	closeOnce sync.Once
	closing   chan struct{} // closed by Close: stops a reader waiting on msgs

	notifyMu sync.Mutex
}

// comp is a compressor the broadcaster enabled.
type comp struct {
	id       uint64
	min, max uint64
	codec    *zstddict.Codec
}

type request struct {
	typ  uint16 // the confirmation expected
	key  string
	url  string // what the request was signed with; so is its confirmation
	done chan struct{}
}

// notifyWait is a notification in flight: its replies, and what its
// CONFIRM_NOTIFY must be signed over.
type notifyWait struct {
	replies chan notifyReply
	topic   []byte
	sum     [64]byte
}

type notifyReply struct {
	cont  bool
	part  uint64
	count uint64
}

type receiving struct {
	first   wsproto.StreamFirst
	id      []byte
	next    uint64
	body    *body
	maxPart int
}

// Dial connects to url (ws://host:port/v1/websocket) and configures the
// connection.
func Dial(ctx context.Context, url string, opts Options) (*Conn, error) {
	if opts.MaxMessage <= 0 {
		opts.MaxMessage = 3*1024*1024 + 512*1024
	}
	if opts.ReadLimit <= 0 {
		opts.ReadLimit = 4 << 20
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 1 << 16
	}
	if opts.Auth.ToBroadcaster == nil || opts.Auth.ToSubscriber == nil {
		opts.Auth = auth.NonePair()
	}
	ws, _, err := websocket.Dial(ctx, url, opts.DialOptions)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	ws.SetReadLimit(opts.ReadLimit)
	c := &Conn{ws: ws, opts: opts, auth: opts.Auth, subCounter: -1, broCounter: 1,
		notifies: make(map[string]*notifyWait), msgs: make(chan Message, opts.Buffer), done: make(chan struct{}),
		closing: make(chan struct{})}
	if err := c.configure(ctx); err != nil {
		_ = ws.CloseNow()
		return nil, err
	}
	go c.readLoop()
	return c, nil
}

func (c *Conn) encode(m wsproto.Message) ([]byte, error) {
	if c.opts.Expanded {
		return wsproto.AppendExpanded(nil, m)
	}
	return wsproto.AppendMinimal(nil, m)
}

func (c *Conn) configure(ctx context.Context) error {
	var sub [32]byte
	if _, err := rand.Read(sub[:]); err != nil {
		return err
	}
	train := c.opts.EnableZstd && !c.opts.NoTraining
	a, err := c.auth.Authorize(auth.StatefulConfigure{SubscriberNonce: sub, EnableZstd: c.opts.EnableZstd,
		EnableTraining: train, InitialDict: c.opts.InitialDict})
	if err != nil {
		return err
	}
	out, err := c.encode(wsproto.Configure{SubscriberNonce: sub, EnableZstd: c.opts.EnableZstd,
		EnableTraining: train, InitialDict: c.opts.InitialDict, Authorization: a})
	if err != nil {
		return err
	}
	if err := c.ws.Write(ctx, websocket.MessageBinary, out); err != nil {
		return fmt.Errorf("send configure: %w", err)
	}
	_, b, err := c.ws.Read(ctx)
	if err != nil {
		return fmt.Errorf("read confirm configure: %w", err)
	}
	m, err := wsproto.ParseB2S(b)
	if err != nil {
		return err
	}
	cc, ok := m.(wsproto.ConfirmConfigure)
	if !ok {
		return fmt.Errorf("got %T before confirm configure", m)
	}
	if r := c.auth.Verify(ctx, auth.StatefulConfirmConfigure{BroadcasterNonce: cc.BroadcasterNonce}, cc.Authorization); r != auth.OK {
		return fmt.Errorf("confirm configure: authorization %s", r)
	}
	c.nonce = auth.ConnectionNonce(sub, cc.BroadcasterNonce)
	return nil
}

// Messages returns the channel of received messages and MISSED notices,
// in arrival order. It is closed when the connection ends.
func (c *Conn) Messages() <-chan Message { return c.msgs }

// Done is closed when the connection has ended; Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection ended (a websocket.CloseError when the
// broadcaster closed it), nil while it is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection normally.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() { close(c.closing) })
	err := c.ws.Close(websocket.StatusNormalClosure, "")
	<-c.done
	return err
}

// sendCounted signs and writes a message that consumes a subscriber
// counter value; build gets the url to sign with.
func (c *Conn) sendCounted(ctx context.Context, before func(), build func(url string) (wsproto.Message, error)) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	url := auth.WebsocketURL(c.nonce, c.subCounter)
	c.subCounter--
	m, err := build(url)
	if err != nil {
		return err
	}
	out, err := c.encode(m)
	if err != nil {
		return err
	}
	if before != nil {
		before()
	}
	return c.ws.Write(ctx, websocket.MessageBinary, out)
}

func (c *Conn) send(ctx context.Context, m wsproto.Message) error {
	out, err := c.encode(m)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.Write(ctx, websocket.MessageBinary, out)
}

// SubscribeExact subscribes to topic and waits for the confirmation.
func (c *Conn) SubscribeExact(ctx context.Context, topic []byte) error {
	return c.manage(ctx, wsproto.B2SConfirmSubscribeExact, string(topic), func(url string) (wsproto.Message, error) {
		a, err := c.auth.Authorize(auth.SubscribeExact{URL: url, Topic: topic})
		return wsproto.SubscribeExact{Authorization: a, Topic: topic}, err
	})
}

// SubscribeGlob subscribes to a glob pattern.
func (c *Conn) SubscribeGlob(ctx context.Context, glob string) error {
	return c.manage(ctx, wsproto.B2SConfirmSubscribeGlob, glob, func(url string) (wsproto.Message, error) {
		a, err := c.auth.Authorize(auth.SubscribeGlob{URL: url, Glob: glob})
		return wsproto.SubscribeGlob{Authorization: a, Glob: glob}, err
	})
}

// UnsubscribeExact undoes SubscribeExact; the request signs the same
// fields as the subscription.
func (c *Conn) UnsubscribeExact(ctx context.Context, topic []byte) error {
	return c.manage(ctx, wsproto.B2SConfirmUnsubscribeExact, string(topic), func(url string) (wsproto.Message, error) {
		a, err := c.auth.Authorize(auth.SubscribeExact{URL: url, Topic: topic})
		return wsproto.UnsubscribeExact{Authorization: a, Topic: topic}, err
	})
}

// UnsubscribeGlob undoes SubscribeGlob.
func (c *Conn) UnsubscribeGlob(ctx context.Context, glob string) error {
	return c.manage(ctx, wsproto.B2SConfirmUnsubscribeGlob, glob, func(url string) (wsproto.Message, error) {
		a, err := c.auth.Authorize(auth.SubscribeGlob{URL: url, Glob: glob})
		return wsproto.UnsubscribeGlob{Authorization: a, Glob: glob}, err
	})
}

// manage sends the request build makes for the url it is signed for, and
// waits for the confirmation want of key (a topic or a glob).
func (c *Conn) manage(ctx context.Context, want uint16, key string, build func(url string) (wsproto.Message, error)) error {
	req := &request{typ: want, key: key, done: make(chan struct{})}
	err := c.sendCounted(ctx, func() {
		c.mu.Lock()
		c.pending = append(c.pending, req)
		c.mu.Unlock()
	}, func(url string) (wsproto.Message, error) {
		req.url = url
		return build(url)
	})
	if err != nil {
		return err
	}
	select {
	case <-req.done:
		return nil
	case <-c.done:
		return fmt.Errorf("connection closed before confirmation: %w", c.Err())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Notify publishes message on topic and returns the number of subscribers
// the broadcaster reports.
func (c *Conn) Notify(ctx context.Context, topic, message []byte) (uint64, error) {
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return 0, err
	}
	payload, compressor := message, uint64(0)
	if z := c.compressorFor(uint64(len(message))); z != nil && c.opts.CompressNotifies {
		p, err := z.codec.EncodeAll(message, nil)
		if err != nil {
			return 0, err
		}
		payload, compressor = p, z.id
	}
	sum := sha512.Sum512(payload)
	replies := make(chan notifyReply, 16)
	c.mu.Lock()
	c.notifies[string(id[:])] = &notifyWait{replies: replies, topic: topic, sum: sum}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.notifies, string(id[:]))
		c.mu.Unlock()
	}()
	sign := func() (string, error) {
		return c.auth.Authorize(auth.Notify{Topic: topic, Identifier: id[:], SHA512: sum})
	}
	wait := func() (notifyReply, error) {
		select {
		case r := <-replies:
			return r, nil
		case <-c.done:
			return notifyReply{}, fmt.Errorf("connection closed: %w", c.Err())
		case <-ctx.Done():
			return notifyReply{}, ctx.Err()
		}
	}
	// The Python client's rule: one NOTIFY when it fits with room for
	// the headers, else parts.
	if len(payload)+1024+len(topic) < c.opts.MaxMessage {
		a, err := sign()
		if err != nil {
			return 0, err
		}
		err = c.send(ctx, wsproto.Notify{Authorization: a, Identifier: id[:], Topic: topic, Compressor: compressor,
			CompressedLength: uint64(len(payload)), DecompressedLength: uint64(len(message)), CompressedSHA512: sum, Payload: payload})
		if err != nil {
			return 0, err
		}
		r, err := wait()
		if err != nil {
			return 0, err
		}
		if r.cont {
			return 0, errors.New("continue notify for a single notify")
		}
		return r.count, nil
	}
	chunk := c.opts.MaxMessage - 1024 - len(topic)
	for part, off := uint64(0), 0; ; part++ {
		end := min(off+chunk, len(payload))
		a, err := sign()
		if err != nil {
			return 0, err
		}
		m := wsproto.NotifyStream{Authorization: a, Identifier: id[:], PartID: part, Payload: payload[off:end]}
		if part == 0 {
			m.First = &wsproto.StreamFirst{Topic: topic, Compressor: compressor, CompressedLength: uint64(len(payload)),
				DecompressedLength: uint64(len(message)), CompressedSHA512: sum}
		}
		if err := c.send(ctx, m); err != nil {
			return 0, err
		}
		off = end
		r, err := wait()
		if err != nil {
			return 0, err
		}
		if off == len(payload) {
			if r.cont {
				return 0, errors.New("continue notify after the last part")
			}
			return r.count, nil
		}
		if !r.cont || r.part != part {
			return 0, fmt.Errorf("expected continue notify for part %d, got %+v", part, r)
		}
	}
}

func (c *Conn) end(err error) {
	if c.recv != nil {
		c.recv.body.discard()
	}
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	close(c.msgs)
	close(c.done)
}

// readLoop handles everything the broadcaster sends; any violation closes
// the connection, as the Python client does.
func (c *Conn) readLoop() {
	ctx := context.Background()
	for {
		_, b, err := c.ws.Read(ctx)
		if err != nil {
			c.end(err)
			return
		}
		if err := c.handle(ctx, b); err != nil {
			select {
			case <-c.closing: // Close is already ending it normally
			default:
				_ = c.ws.Close(websocket.StatusProtocolError, "client: "+trim(err.Error()))
			}
			c.end(err)
			return
		}
	}
}

func trim(s string) string {
	if len(s) > 100 {
		return s[:100]
	}
	return s
}

func (c *Conn) nextBroadcasterURL() string {
	u := auth.WebsocketURL(c.nonce, c.broCounter)
	c.broCounter++
	return u
}

func (c *Conn) handle(ctx context.Context, b []byte) error {
	m, err := wsproto.ParseB2S(b)
	if err != nil {
		return err
	}
	switch m := m.(type) {
	// Confirmations are signed with the url of the request they answer.
	// (The Python client does not check them; this client does.)
	case wsproto.ConfirmSubscribeExact:
		return c.confirmed(ctx, wsproto.B2SConfirmSubscribeExact, string(m.Topic), m.Authorization)
	case wsproto.ConfirmSubscribeGlob:
		return c.confirmed(ctx, wsproto.B2SConfirmSubscribeGlob, m.Glob, m.Authorization)
	case wsproto.ConfirmUnsubscribeExact:
		return c.confirmed(ctx, wsproto.B2SConfirmUnsubscribeExact, string(m.Topic), m.Authorization)
	case wsproto.ConfirmUnsubscribeGlob:
		return c.confirmed(ctx, wsproto.B2SConfirmUnsubscribeGlob, m.Glob, m.Authorization)
	case wsproto.ConfirmNotify:
		return c.confirmNotify(ctx, m)
	case wsproto.ContinueNotify:
		if r := c.auth.Verify(ctx, auth.StatefulContinueNotify{Identifier: m.Identifier, PartID: uint32(m.PartID)}, m.Authorization); r != auth.OK {
			return fmt.Errorf("continue notify: authorization %s", r)
		}
		return c.notifyReply(m.Identifier, notifyReply{cont: true, part: m.PartID})
	case wsproto.EnableZstdPreset:
		return c.enablePreset(ctx, m)
	case wsproto.EnableZstdCustom:
		return c.enableCustom(ctx, m)
	case wsproto.DisableZstdCustom:
		return c.disableCustom(ctx, m)
	case wsproto.Missed:
		return c.missed(ctx, m)
	case wsproto.ReceiveStream:
		return c.receive(ctx, m, len(b))
	}
	return fmt.Errorf("unexpected %T", m)
}

// betweenParts refuses a broadcaster-counted message sent in the middle of
// a RECEIVE_STREAM, which the protocol does not allow.
func (c *Conn) betweenParts(what string) error {
	if c.recv != nil {
		return fmt.Errorf("%s between receive parts", what)
	}
	return nil
}

// confirmNotify checks CONFIRM_NOTIFY's signature over the SHA-512 of the
// bytes sent (the Python client does not check it) and hands the count to
// the waiting Notify.
func (c *Conn) confirmNotify(ctx context.Context, m wsproto.ConfirmNotify) error {
	c.mu.Lock()
	w := c.notifies[string(m.Identifier)]
	c.mu.Unlock()
	if w == nil {
		return fmt.Errorf("confirm notify for unknown notification %x", m.Identifier)
	}
	if r := c.auth.Verify(ctx, auth.ConfirmNotify{Identifier: m.Identifier, Subscribers: uint32(m.Subscribers),
		Topic: w.topic, SHA512: w.sum}, m.Authorization); r != auth.OK {
		return fmt.Errorf("confirm notify: authorization %s", r)
	}
	return c.notifyReply(m.Identifier, notifyReply{count: m.Subscribers})
}

func (c *Conn) enablePreset(ctx context.Context, m wsproto.EnableZstdPreset) error {
	if err := c.betweenParts("enable zstd"); err != nil {
		return err
	}
	if r := c.auth.Verify(ctx, auth.StatefulEnableZstdPreset{URL: c.nextBroadcasterURL(), CompressorID: uint32(m.Identifier),
		Level: int32(m.CompressionLevel), MinSize: uint64(m.MinSize), MaxSize: m.MaxSize}, m.Authorization); r != auth.OK {
		return fmt.Errorf("enable zstd preset: authorization %s", r)
	}
	if !c.opts.EnableZstd {
		return errors.New("enable zstd preset without compression asked for")
	}
	var d *zstddict.Dict
	if m.Identifier != 1 {
		raw, ok := c.opts.PresetDicts[m.Identifier]
		if !ok {
			return fmt.Errorf("unknown preset dictionary %d", m.Identifier)
		}
		var err error
		if d, err = zstddict.Parse(raw); err != nil {
			return fmt.Errorf("preset dictionary %d: %w", m.Identifier, err)
		}
	}
	return c.enable(m.Identifier, d, int(m.CompressionLevel), uint64(m.MinSize), m.MaxSize)
}

func (c *Conn) enableCustom(ctx context.Context, m wsproto.EnableZstdCustom) error {
	if err := c.betweenParts("enable zstd"); err != nil {
		return err
	}
	if r := c.auth.Verify(ctx, auth.StatefulEnableZstdCustom{URL: c.nextBroadcasterURL(), CompressorID: uint32(m.Identifier),
		Level: int32(m.CompressionLevel), MinSize: uint64(m.MinSize), MaxSize: m.MaxSize, DictSHA512: m.SHA512}, m.Authorization); r != auth.OK {
		return fmt.Errorf("enable zstd custom: authorization %s", r)
	}
	if !c.opts.EnableZstd || c.opts.NoTraining {
		return errors.New("trained dictionary without training asked for")
	}
	if sha512.Sum512(m.Dictionary) != m.SHA512 {
		return fmt.Errorf("enable zstd custom %d: dictionary does not match its SHA-512", m.Identifier)
	}
	d, err := zstddict.Parse(m.Dictionary)
	if err != nil {
		return fmt.Errorf("enable zstd custom %d: %w", m.Identifier, err)
	}
	return c.enable(m.Identifier, d, int(m.CompressionLevel), uint64(m.MinSize), m.MaxSize)
}

func (c *Conn) disableCustom(ctx context.Context, m wsproto.DisableZstdCustom) error {
	if err := c.betweenParts("disable zstd"); err != nil {
		return err
	}
	if r := c.auth.Verify(ctx, auth.StatefulDisableZstdCustom{URL: c.nextBroadcasterURL(), CompressorID: uint32(m.Identifier)},
		m.Authorization); r != auth.OK {
		return fmt.Errorf("disable zstd custom: authorization %s", r)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.comps)
	c.comps = slices.DeleteFunc(c.comps, func(z *comp) bool { return z.id == m.Identifier })
	if len(c.comps) == n {
		return fmt.Errorf("disable zstd custom %d: not enabled", m.Identifier)
	}
	return nil
}

func (c *Conn) missed(ctx context.Context, m wsproto.Missed) error {
	if err := c.betweenParts("missed"); err != nil {
		return err
	}
	if r := c.auth.Verify(ctx, auth.Missed{Recovery: c.nextBroadcasterURL(), Topic: m.Topic}, m.Authorization); r != auth.OK {
		return fmt.Errorf("missed: authorization %s", r)
	}
	return c.deliver(Message{Topic: bytes.Clone(m.Topic), Missed: true})
}

// deliver hands m to the reader of Messages, waiting while the buffer is
// full (which is the back-pressure on the broadcaster) unless the
// connection is being closed.
func (c *Conn) deliver(m Message) error {
	select {
	case c.msgs <- m:
		return nil
	case <-c.closing:
		return errors.New("connection closed by the client")
	}
}

func (c *Conn) confirmed(ctx context.Context, typ uint16, key, authorization string) error {
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.mu.Unlock()
		return fmt.Errorf("confirmation type %d of %q with nothing pending", typ, key)
	}
	head := c.pending[0]
	if head.typ != typ || head.key != key {
		c.mu.Unlock()
		return fmt.Errorf("confirmation type %d of %q, expected type %d of %q", typ, key, head.typ, head.key)
	}
	c.pending = c.pending[1:]
	c.mu.Unlock()
	var m auth.Message = auth.ConfirmSubscribeExact{URL: head.url, Topic: []byte(key)}
	if typ == wsproto.B2SConfirmSubscribeGlob || typ == wsproto.B2SConfirmUnsubscribeGlob {
		m = auth.ConfirmSubscribeGlob{URL: head.url, Glob: key}
	}
	if r := c.auth.Verify(ctx, m, authorization); r != auth.OK {
		return fmt.Errorf("confirmation of %q: authorization %s", key, r)
	}
	close(head.done)
	return nil
}

func (c *Conn) notifyReply(id []byte, r notifyReply) error {
	c.mu.Lock()
	w := c.notifies[string(id)]
	c.mu.Unlock()
	if w == nil {
		return fmt.Errorf("reply for unknown notification %x", id)
	}
	w.replies <- r
	return nil
}

func (c *Conn) receive(ctx context.Context, m wsproto.ReceiveStream, size int) error {
	if m.PartID == 0 {
		if c.recv != nil {
			return fmt.Errorf("new message %x while %x is incomplete", m.Identifier, c.recv.id)
		}
		f := *m.First
		// One broadcaster counter value per message, on its first part.
		if r := c.auth.Verify(ctx, auth.Receive{URL: c.nextBroadcasterURL(), Topic: f.Topic, Identifier: m.Identifier,
			SHA512: f.CompressedSHA512}, m.Authorization); r != auth.OK {
			return fmt.Errorf("receive: authorization %s", r)
		}
		if f.Compressor != 0 && c.compressor(f.Compressor) == nil {
			return fmt.Errorf("receive with compressor %d, which is not enabled", f.Compressor)
		}
		f.Topic = bytes.Clone(f.Topic)
		b, err := newBody(f.CompressedLength, c.opts)
		if err != nil {
			return err
		}
		c.recv = &receiving{first: f, id: bytes.Clone(m.Identifier), body: b}
	}
	r := c.recv
	if r == nil || !bytes.Equal(m.Identifier, r.id) || m.PartID != r.next {
		return fmt.Errorf("receive part %d of %x out of order", m.PartID, m.Identifier)
	}
	r.next++
	r.maxPart = max(r.maxPart, size)
	if err := r.body.write(m.Payload); err != nil {
		return err
	}
	if r.body.n > r.first.CompressedLength {
		return errors.New("receive: more data than declared")
	}
	if r.body.n < r.first.CompressedLength {
		return c.sendCounted(ctx, nil, func(url string) (wsproto.Message, error) {
			a, err := c.auth.Authorize(auth.StatefulContinueReceive{Identifier: r.id, PartID: m.PartID, URL: url})
			return wsproto.ContinueReceive{Identifier: r.id, PartID: m.PartID, Authorization: a}, err
		})
	}
	c.recv = nil
	return c.received(ctx, r)
}

// received checks, decompresses, confirms and hands over a complete
// message.
func (c *Conn) received(ctx context.Context, r *receiving) error {
	var z *comp
	if r.first.Compressor != 0 {
		if z = c.compressor(r.first.Compressor); z == nil {
			r.body.discard()
			return fmt.Errorf("receive: compressor %d was disabled mid-message", r.first.Compressor)
		}
	}
	data, file, err := r.body.finish(r.first.CompressedSHA512, z, r.first.DecompressedLength, c.opts)
	if err != nil {
		return err
	}
	if err := c.sendCounted(ctx, nil, func(url string) (wsproto.Message, error) {
		a, err := c.auth.Authorize(auth.ConfirmReceive{Identifier: r.id, NumSubscribers: 1, URL: url})
		return wsproto.ConfirmReceive{Identifier: r.id, NumSubscribers: 1, Authorization: a}, err
	}); err != nil {
		closeFile(file)
		return err
	}
	m := Message{Topic: r.first.Topic, Data: data, File: file, Size: r.first.DecompressedLength,
		Compressor: r.first.Compressor, Parts: int(r.next), MaxPart: r.maxPart}
	if err := c.deliver(m); err != nil {
		closeFile(file)
		return err
	}
	return nil
}

func closeFile(f *os.File) {
	if f != nil {
		_ = f.Close()
	}
}

// enable adds a compressor the broadcaster announced.
func (c *Conn) enable(id uint64, d *zstddict.Dict, level int, minSize, maxSize uint64) error {
	codec, err := zstddict.NewCodec(d, level, 8<<20)
	if err != nil {
		return fmt.Errorf("compressor %d: %w", id, err)
	}
	z := &comp{id: id, min: minSize, max: maxSize, codec: codec}
	c.mu.Lock()
	defer c.mu.Unlock()
	if slices.ContainsFunc(c.comps, func(x *comp) bool { return x.id == id }) {
		return fmt.Errorf("compressor %d enabled twice", id)
	}
	i := len(c.comps)
	for j, x := range c.comps {
		if x.min > z.min {
			i = j
			break
		}
	}
	c.comps = slices.Insert(c.comps, i, z)
	return nil
}

func (c *Conn) compressor(id uint64) *comp {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, z := range c.comps {
		if z.id == id {
			return z
		}
	}
	return nil
}

// compressorFor is the compressor a notification of n bytes would use.
func (c *Conn) compressorFor(n uint64) *comp {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, z := range c.comps {
		if z.min <= n && n < z.max {
			return z
		}
	}
	return nil
}

// Compressors returns the ids of the compressors the broadcaster has
// enabled and not withdrawn, in the order the client prefers them.
func (c *Conn) Compressors() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]uint64, len(c.comps))
	for i, z := range c.comps {
		ids[i] = z.id
	}
	return ids
}

package ws

import (
	"bytes"
	"context"
	"errors"
	"io"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/metrics"
	"github.com/lonelypsd/lonelypsd/api/wsproto"
	"github.com/lonelypsd/lonelypsd/fanout"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// The processor of a conn (the goroutine that runs it): the protocol's state
// machine for what the subscriber sends, one message at a time in arrival
// order, and the replies handed to the writer.

// notifyStream is a NOTIFY_STREAM being received.
type notifyStream struct {
	ident   []byte
	tracing []byte
	first   wsproto.StreamFirst
	next    uint64
	sp      *spool
}

// reply queues an encoded confirmation for the writer. It blocks when the
// peer does not read its confirmations, which in turn stops reading from
// it: back-pressure onto the only party that can relieve it.
func (c *conn) reply(m wsproto.Message) error {
	out, err := wsproto.AppendMinimal(nil, m)
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

// processLoop handles what the reader hands over until it stops (the peer
// closed, or fail was called) or a message closes the connection.
func (c *conn) processLoop() {
	for buf := range c.in {
		err := c.process(buf)
		c.pending.Add(-int64(len(buf)))
		c.handedOver.Add(-1)
		select {
		case c.pendWake <- struct{}{}:
		default:
		}
		if err != nil {
			c.fail(err)
			return
		}
	}
}

// process handles one message from the subscriber.
func (c *conn) process(buf []byte) error {
	// Acknowledgements, one per delivery, are read in place; the rest,
	// and acknowledgements in expanded form, take the generic parser.
	if a, ok := wsproto.ParseAck(buf); ok {
		return c.ack(a)
	}
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
		return c.ack(wsproto.Ack{Identifier: m.Identifier, PartID: m.PartID, Authorization: []byte(m.Authorization), Tracing: m.Tracing})
	case wsproto.ConfirmReceive:
		return c.ack(wsproto.Ack{Final: true, Identifier: m.Identifier, Authorization: []byte(m.Authorization), Tracing: m.Tracing, NumSubscribers: m.NumSubscribers})
	}
	return protocolErr("unexpected message %T", m)
}

// ack takes a CONTINUE_RECEIVE or CONFIRM_RECEIVE: its counter value, its
// authorization, and the part it acknowledges. a's byte fields may alias
// the read buffer: nothing here keeps them.
func (c *conn) ack(a wsproto.Ack) error {
	url := c.nextSubscriberURL()
	if c.hub.verifies {
		what, am := "continue receive", auth.Message(auth.StatefulContinueReceive{
			Tracing: a.Tracing, Identifier: a.Identifier, PartID: a.PartID, URL: url})
		if a.Final {
			what, am = "confirm receive", auth.ConfirmReceive{
				Tracing: a.Tracing, Identifier: a.Identifier, NumSubscribers: a.NumSubscribers, URL: url}
		}
		if err := c.verify(what, am, string(a.Authorization)); err != nil {
			return err
		}
	}
	return c.acked(a.Identifier, a.PartID, a.Final)
}

// verify checks a message's authorization; a refusal closes the
// connection.
func (c *conn) verify(what string, m auth.Message, authz string) error {
	if r := c.hub.auth.Verify(c.ctx, m, authz); r != auth.OK {
		return authErr(what, r)
	}
	return nil
}

// nextSubscriberURL returns the url of the subscriber's next
// counter-bearing message and advances the counter (-1, -2, ...); "" with
// auth none both ways, which never reads it (a confirmation of a
// subscribe is signed with it too).
func (c *conn) nextSubscriberURL() string {
	n := c.subCounter
	c.subCounter--
	if !c.hub.verifies && !c.hub.signs {
		return ""
	}
	return auth.WebsocketURL(c.nonce, n)
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
	if err := c.verify(what, am, authz); err != nil {
		return "", "", err
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
	if err := c.verify("notify", auth.Notify{
		Tracing: m.Tracing, Topic: m.Topic, Identifier: m.Identifier, SHA512: m.CompressedSHA512,
	}, m.Authorization); err != nil {
		return err
	}
	z, err := c.compressorFor(m.Compressor)
	if err != nil {
		return err
	}
	msg := fanout.Message{Topic: m.Topic, Body: bytes.NewReader(m.Payload), Length: uint64(len(m.Payload)), SHA512: m.CompressedSHA512}
	if z == nil {
		if err := c.hub.checkSize(msg.Length); err != nil {
			return spoolFailure("notify", err)
		}
		c.sample(m.Payload)
	} else {
		b, err := c.hub.decompress(z, bytes.NewReader(m.Payload), m.DecompressedLength)
		if err != nil {
			return spoolFailure("notify", err)
		}
		defer b.release()
		c.sampleBody(b)
		msg.Body, msg.Length, msg.SHA512 = b, b.n, b.sum
	}
	return c.publish(msg, uint64(len(m.Payload)), m.Identifier, m.CompressedSHA512)
}

// publish fans the message out and answers CONFIRM_NOTIFY. The fan-out
// does not stop if the notifier hangs up: half a delivery is worse than a
// whole one nobody hears about (as for HTTP notifies).
func (c *conn) publish(msg fanout.Message, wireLen uint64, identifier []byte, wireSHA [64]byte) error {
	c.hub.cfg.Notifies.Websocket()
	c.hub.cfg.Metrics.Body(metrics.In, wireLen, msg.Length)
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
		if err := c.verify("notify stream", auth.Notify{
			Tracing: m.Tracing, Topic: f.Topic, Identifier: m.Identifier, SHA512: f.CompressedSHA512,
		}, m.Authorization); err != nil {
			return err
		}
		if _, err := c.compressorFor(f.Compressor); err != nil {
			return err
		}
		if f.Compressor != compressorNone && f.CompressedLength == 0 {
			return protocolErr("notify stream: empty compressed message")
		}
		sp, err := c.hub.newSpool(f.CompressedLength)
		if err != nil {
			return spoolFailure("notify stream", err)
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
		if err := c.verify("notify stream", auth.Notify{
			Tracing: s.tracing, Topic: s.first.Topic, Identifier: s.ident, SHA512: s.first.CompressedSHA512,
		}, m.Authorization); err != nil {
			return err
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
			return spoolFailure("notify stream", err)
		}
		defer d.release()
		c.sampleBody(d)
		msg.Body, msg.Length, msg.SHA512 = d, d.n, d.sum
	}
	return c.publish(msg, b.n, s.ident, s.first.CompressedSHA512)
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
	// Shifted down rather than resliced, so the few slots (at most
	// MaxUnackedParts) are reused instead of reallocated.
	c.acks = c.acks[:copy(c.acks, c.acks[1:])]
	n := len(c.acks)
	c.owed.Store(int32(n))
	c.amu.Unlock()
	if n <= refillAt(c.hub.cfg.MaxUnackedParts) {
		c.sendFreed(n)
	}
	return nil
}

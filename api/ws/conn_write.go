package ws

import (
	"slices"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/metrics"
	"github.com/lonelypsd/lonelypsd/api/wsproto"
)

// The writer goroutine of a conn and the queue it drains: deliveries,
// MISSED and compressor announcements, written in order.

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

// release gives back the item's reference to its body, if any.
func (it item) release() {
	if it.body != nil {
		it.body.release()
	}
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

func (c *conn) unacked() int { return int(c.owed.Load()) }

// enqueue queues a delivery without ever blocking the caller (a publisher
// serving many connections). A connection whose queue is full is too slow
// for the traffic it asked for: it is closed, and its client reconnects.
// It takes over a reference to it.body the caller holds for it, released
// when the delivery is dropped or sent: the caller takes them for all its
// connections at once (retainN), one contended atomic add instead of one
// per connection.
func (c *conn) enqueue(it item) bool {
	it.charge = queueOverhead
	if it.body != nil && it.body.f == nil {
		it.charge += int64(it.body.n)
	}
	c.qmu.Lock()
	if c.qclosed {
		c.qmu.Unlock()
		it.release()
		return false
	}
	if len(c.queue)-c.qhead >= c.hub.cfg.MaxQueuedMessages || c.qbytes+it.charge > c.hub.cfg.MaxQueuedBytes {
		c.qmu.Unlock()
		it.release()
		c.fail(closeErr(statusTryAgainLater, "send queue full: subscriber too slow", nil))
		return false
	}
	c.queue = append(c.queue, it)
	c.qbytes += it.charge
	c.qmu.Unlock()
	// While the peer owes an acknowledgement, the delivery waits for it:
	// the goroutine that reads the last one sends what queued up
	// meanwhile, with one system call and no switch to the writer (see
	// sendFreed). unacked is read after the append, as acked reads the
	// queue after it removes an acknowledgement, so one of the two always
	// sees the other.
	if c.unacked() == 0 {
		c.wakeWriter()
	}
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

// refillAt is the number of unacknowledged parts from which an
// acknowledgement lets the parts of a long message follow. Not as soon as
// one slot is free: the peer still has max-1 parts to take, and waiting
// for a second slot sends two parts with one system call instead of one
// each, without letting the peer run dry.
func refillAt(maxUnacked int) int { return max(maxUnacked-2, 0) }

// sendFreed is called by the goroutine that handled an acknowledgement
// leaving unacked (at most refillAt) parts unacknowledged. Short
// deliveries wait until the peer owes nothing (enqueue does not wake the
// writer for them meanwhile), so that what queued up leaves together, up
// to MaxUnackedShort of it with one system call: Nagle's algorithm at the
// protocol's level. The caller then writes them itself when the writer is
// not busy, which spares a switch to the writer per delivery. The parts of
// a long message are the writer's, woken from refillAt on to keep the
// peer's pipe full.
func (c *conn) sendFreed(unacked int) {
	if c.wmu.TryLock() {
		if !c.hasWork() {
			c.wmu.Unlock()
			return
		}
		if !c.shortNext() {
			// A long write could block this goroutine, which must keep
			// reading: the writer sends it.
			c.wmu.Unlock()
			c.wakeWriter()
			return
		}
		if unacked > 0 {
			c.wmu.Unlock()
			return
		}
		more, err := c.writeBatch(nil)
		c.wmu.Unlock()
		if err != nil {
			c.fail(err)
			return
		}
		if !more {
			return
		}
	}
	c.wakeWriter()
}

// hasWork reports whether anything waits to be written: a part of the
// current message, a queued item or a reply. c.wmu is held.
func (c *conn) hasWork() bool {
	if c.cur != nil && !c.cur.done || len(c.ctrl) > 0 {
		return true
	}
	_, ok := c.peek()
	return ok
}

// shortNext reports whether the next delivery to send is a short one
// (or none): a write that fits the socket's buffer and so does not wait
// for a peer that reads. c.wmu is held.
func (c *conn) shortNext() bool {
	if c.cur != nil && !c.cur.done {
		return false
	}
	it, ok := c.peek()
	return !ok || it.body == nil || short(it.body)
}

// short reports whether a message is sent as one part that fits the
// socket's buffer: the messages MaxUnackedShort applies to.
func short(b *body) bool { return b.n <= maxSharedFrame }

func (c *conn) wakeWriter() {
	select {
	case c.wake <- struct{}{}:
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
// take), with at most MaxUnackedParts parts unacknowledged. What is ready
// at one wake-up leaves in one batch (batchConn).
func (c *conn) writeLoop() error {
	for {
		var first []byte
		select {
		case first = <-c.ctrl:
		case <-c.wake:
		case <-c.ctx.Done():
			return nil
		}
		for more := true; more; {
			var err error
			c.wmu.Lock()
			more, err = c.writeBatch(first)
			c.wmu.Unlock()
			if err != nil {
				return err
			}
			first = nil
			if c.ctx.Err() != nil {
				return nil
			}
		}
	}
}

// maxBatch bounds the messages of one batch, so a long queue of MISSED
// notices is written in pieces rather than gathered whole in memory.
const maxBatch = 64

// writeBatch writes first (a reply, or nil) and then whatever may be sent
// now, up to maxBatch messages, with one system call; more reports that
// the limit cut it short. c.wmu is held.
func (c *conn) writeBatch(first []byte) (more bool, err error) {
	c.bc.cork()
	defer func() {
		if uerr := c.bc.uncork(); err == nil && uerr != nil {
			err = closeErr(statusTryAgainLater, "write failed", uerr)
		}
		c.countSent()
	}()
	if first != nil {
		if err := c.write(first); err != nil {
			return false, err
		}
	}
	for range maxBatch {
		select {
		case m := <-c.ctrl:
			if err := c.write(m); err != nil {
				return false, err
			}
			continue
		default:
		}
		progressed, err := c.sendStep()
		if err != nil || !progressed {
			return false, err
		}
	}
	return true, nil
}

// sendStep writes at most one delivery message; false when there is
// nothing it may send now.
func (c *conn) sendStep() (bool, error) {
	limit := c.hub.cfg.MaxUnackedParts
	if c.cur != nil {
		if !c.cur.done {
			if c.unacked() >= limit {
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
		if short(it.body) {
			limit = c.hub.cfg.MaxUnackedShort
		}
		if c.unacked() >= limit {
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
// verifies and advances the counter (1, 2, ...); "" when the node signs
// nothing (auth none). Counters are taken in the order messages are
// written, which is the order the client counts.
func (c *conn) nextBroadcasterURL() string {
	n := c.broCounter
	c.broCounter++
	if !c.hub.signs {
		return ""
	}
	return auth.WebsocketURL(c.nonce, n)
}

func (c *conn) sendMissed(topic []byte) error {
	a, err := c.hub.auth.Authorize(auth.Missed{Recovery: c.nextBroadcasterURL(), Topic: topic})
	if err != nil {
		return closeErr(statusInternal, "sign", err)
	}
	out, err := wsproto.AppendMinimal(nil, wsproto.Missed{Authorization: a, Topic: topic})
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
	out, err := wsproto.AppendMinimal(nil, m)
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
	out, err := wsproto.AppendMinimal(nil, wsproto.DisableZstdCustom{Identifier: z.id, Authorization: a})
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
	// One message is sent at a time: its state reuses the connection's.
	c.sendState = sending{src: it.body, orig: it.body, declen: it.body.n, topic: it.topic}
	s := &c.sendState
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
	s.id = s.src.identifier()
	s.url = c.nextBroadcasterURL()
	c.cur = s
	c.sentWire += s.src.n
	c.sentPlain += s.declen
	return nil
}

// countSent adds what the batch sent to the metrics, once per batch
// rather than per message. c.wmu is held (or the writer has not started).
func (c *conn) countSent() {
	c.hub.cfg.Metrics.Sent(c.sent)
	if c.sentWire > 0 {
		c.hub.cfg.Metrics.Body(metrics.Out, c.sentWire, c.sentPlain)
	}
	c.sent, c.sentWire, c.sentPlain = 0, 0, 0
}

// sendPart writes the next part of the current RECEIVE_STREAM: headers,
// then as much of the body as fits in OutgoingMaxMessage.
func (c *conn) sendPart() error {
	s := c.cur
	// Continuation parts are signed too (same url, fresh nonce): the
	// Python client ignores them, a stricter peer can check them.
	var a string
	if c.hub.signs {
		var err error
		if a, err = c.hub.auth.Authorize(auth.Receive{URL: s.url, Topic: s.topic, Identifier: s.id[:], SHA512: s.src.sum}); err != nil {
			return closeErr(statusInternal, "sign", err)
		}
	}
	if s.part == 0 {
		out, err := s.wholeFrame(a, c.hub.cfg.OutgoingMaxMessage)
		if err != nil {
			return closeErr(statusInternal, "encode", err)
		}
		if out != nil {
			s.off, s.part, s.done = s.src.n, 1, true
			c.expectAck(s.id, 0, true)
			return c.write(out)
		}
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
	out, err := wsproto.AppendMinimal((*bufp)[:0], m)
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
	c.expectAck(s.id, s.part, final)
	s.part++
	s.done = final
	return c.write(out)
}

// expectAck records a part written and not yet acknowledged.
func (c *conn) expectAck(id [receiveIdentifierLen]byte, part uint64, final bool) {
	c.amu.Lock()
	c.acks = append(c.acks, pendingAck{id: id, part: part, final: final})
	c.owed.Store(int32(len(c.acks)))
	c.amu.Unlock()
}

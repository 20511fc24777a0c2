package ws

import (
	"encoding/binary"
	"fmt"
	"time"
)

// The pings of a conn. Between pings it holds a timer, not a goroutine, so
// an idle connection keeps no stack for them; each ping runs on the
// timer's own goroutine. A ping not answered in time is a half-open or
// hung connection and is closed. A ping cannot be answered while the
// reader is held back by the backlog, so those rounds do not count.

// startPings arms the first ping.
func (c *conn) startPings() { c.armPing() }

func (c *conn) armPing() {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.pingsStopped {
		return
	}
	c.pingTimer = time.AfterFunc(c.hub.cfg.PingInterval, c.ping)
}

// stopPings disarms the timer; a ping under way ends with the
// connection's context.
func (c *conn) stopPings() {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	c.pingsStopped = true
	if c.pingTimer != nil {
		c.pingTimer.Stop()
	}
}

// ping pings once and arms the next.
func (c *conn) ping() {
	if c.ctx.Err() != nil {
		return
	}
	if !c.readerWaits.Load() {
		gen := c.readerWaited.Load()
		err := c.pingOnce()
		if err != nil && c.ctx.Err() == nil && !c.readerWaits.Load() && c.readerWaited.Load() == gen {
			c.fail(closeErr(statusPolicy, "ping not answered", err))
			return
		}
	}
	c.armPing()
}

// pingOnce sends a ping carrying the next sequence number and waits
// PingTimeout at most for the reader to see a pong carrying it (or a later
// one).
func (c *conn) pingOnce() error {
	seq := c.pingSeq.Add(1)
	if err := c.bc.writeControl(opPing, binary.BigEndian.AppendUint64(nil, seq)); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	t := time.NewTimer(c.hub.cfg.PingTimeout)
	defer t.Stop()
	for c.pongSeq.Load() < seq {
		select {
		case <-c.pongWake:
		case <-t.C:
			return fmt.Errorf("no pong within %v", c.hub.cfg.PingTimeout)
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
	}
	return nil
}

//go:build linux

package ws

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// A connection between acknowledgements waits in a poller instead of in
// its reader goroutine: one epoll set per poller holds the sockets of many
// connections, and the poller reads and handles the acknowledgements of
// every connection that has some with one wake-up, where each reader
// would have woken on its own and then read once more to find its socket
// empty before parking again. Anything but a whole acknowledgement (a
// SUBSCRIBE, a NOTIFY, a ping or pong, a frame cut by the network, the
// end of the stream) hands the socket back to the connection's reader,
// which reads it as it would without a poller and returns it to the
// poller once its buffer is empty. The epoll set is level-triggered, so a
// socket returned with bytes already waiting is reported at once.

// poller is one epoll set and the goroutine that waits on it.
type poller struct {
	epfd int
	file *os.File // epfd, so the goroutine parks in Go's netpoller
	rc   syscall.RawConn

	mu    sync.Mutex
	conns map[uint64]*conn
	next  uint64

	scratch [wsReadBuffer]byte // an acknowledgement unmasked, the goroutine's
}

// newPoller makes an epoll set and starts its goroutine; nil (the readers
// wait themselves) when the system refuses.
func newPoller() (*poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("epoll set non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(fd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("epoll raw conn: %w", err)
	}
	p := &poller{epfd: fd, file: f, rc: rc, conns: make(map[uint64]*conn)}
	go p.run()
	return p, nil
}

// close stops the goroutine; connections still parked must have been
// released first.
func (p *poller) close() { _ = p.file.Close() }

// run waits for sockets with bytes and serves them until close.
func (p *poller) run() {
	events := make([]syscall.EpollEvent, 256)
	for {
		var n int
		err := p.rc.Read(func(fd uintptr) bool {
			var werr error
			n, werr = syscall.EpollWait(int(fd), events, 0)
			if werr != nil {
				n = 0 // EINTR: look again
				return true
			}
			return n > 0
		})
		if err != nil {
			return // closed
		}
		for _, ev := range events[:n] {
			p.mu.Lock()
			c := p.conns[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]
			p.mu.Unlock()
			if c != nil {
				p.serve(c)
			}
		}
	}
}

// park adds c's socket to the set: from now on the poller reads it, until
// it hands it back (c.unpark) or c's reader takes it back (release).
func (p *poller) park(c *conn) error {
	c.pollMu.Lock()
	defer c.pollMu.Unlock()
	p.mu.Lock()
	if c.pollID == 0 {
		p.next++
		c.pollID = p.next
	}
	p.conns[c.pollID] = c
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(uint32(c.pollID)), Pad: int32(uint32(c.pollID >> 32))}
	var err error
	if cerr := c.rc.Control(func(fd uintptr) { err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev) }); cerr != nil {
		err = cerr
	}
	if err != nil {
		p.forget(c)
		return fmt.Errorf("epoll add: %w", err)
	}
	c.polled = true
	return nil
}

// release takes c's socket back from the poller for its reader; after it
// returns the poller no longer touches c.
func (p *poller) release(c *conn) {
	c.pollMu.Lock()
	defer c.pollMu.Unlock()
	p.unparkLocked(c)
}

// unparkLocked removes c's socket from the set. c.pollMu is held.
func (p *poller) unparkLocked(c *conn) {
	if !c.polled {
		return
	}
	c.polled = false
	// A socket already closed has left the set by itself.
	_ = c.rc.Control(func(fd uintptr) { _ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil) })
	p.forget(c)
}

func (p *poller) forget(c *conn) {
	p.mu.Lock()
	delete(p.conns, c.pollID)
	p.mu.Unlock()
}

// serve reads what c's socket holds and handles the whole
// acknowledgements at the front of the buffer; anything else goes back to
// c's reader.
func (p *poller) serve(c *conn) {
	c.pollMu.Lock()
	defer c.pollMu.Unlock()
	if !c.polled {
		return
	}
	n, err := c.fr.readNow(c.rc)
	if errors.Is(err, syscall.EAGAIN) {
		return
	}
	if err == nil && n > 0 {
		for c.handedOver.Load() == 0 {
			a, ok := c.fr.nextAck(p.scratch[:])
			if !ok {
				break
			}
			c.hub.cfg.Metrics.Received()
			if err := c.ack(a, false); err != nil {
				c.fail(err)
				break
			}
		}
		select {
		case <-c.stop:
		default:
			if c.fr.r == c.fr.w {
				return
			}
		}
	}
	// The end of the stream, an error, or bytes the reader must handle.
	p.unparkLocked(c)
	select {
	case c.unpark <- struct{}{}:
	default:
	}
}

// readNow reads what the socket holds into the buffer with one system
// call that does not wait: syscall.EAGAIN when it holds nothing, (0, nil)
// at the end of the stream or when the buffer is full.
func (f *frameReader) readNow(rc syscall.RawConn) (int, error) {
	if f.r > 0 {
		f.w = copy(f.buf, f.buf[f.r:f.w])
		f.r = 0
	}
	if f.w == len(f.buf) {
		return 0, nil
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), f.buf[f.w:])
		return true
	}); err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	f.w += n
	return n, nil
}

// writeNow writes p with one system call that does not wait, returning
// how much of it the socket took.
func writeNow(rc syscall.RawConn, p []byte) (int, error) {
	var n int
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), p)
		return true
	}); err != nil {
		return 0, err
	}
	switch {
	case errors.Is(werr, syscall.EAGAIN) || errors.Is(werr, syscall.EINTR):
		return 0, nil
	case werr != nil:
		return 0, werr
	}
	return n, nil
}

// rawConnOf returns the socket's raw access, or nil (TLS, or a listener
// of the embedding program that hides it): then the reader waits itself.
func rawConnOf(nc any) syscall.RawConn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// Package fanouttest holds hostile subscribers for tests of deliveries:
// servers on 127.0.0.1 that misbehave the way real hosts do.
package fanouttest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Tarpit accepts TCP connections on 127.0.0.1 and never answers. It reads
// what it is sent, so it notices when the other side gives up.
type Tarpit struct {
	ln net.Listener

	mu                 sync.Mutex
	open, most, closed int
	conns              []net.Conn
}

// StartTarpit listens until the test ends.
func StartTarpit(t testing.TB) *Tarpit {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &Tarpit{ln: ln}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tp.mu.Lock()
			tp.open++
			tp.most = max(tp.most, tp.open)
			tp.conns = append(tp.conns, c)
			tp.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(io.Discard, c)
				tp.mu.Lock()
				tp.open--
				tp.closed++
				tp.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		tp.mu.Lock()
		for _, c := range tp.conns {
			_ = c.Close()
		}
		tp.mu.Unlock()
		wg.Wait()
	})
	return tp
}

// Addr is the tarpit's HOST:PORT.
func (tp *Tarpit) Addr() string { return tp.ln.Addr().String() }

// Counts returns the connections open now, the most open at once, and
// those the other side closed.
func (tp *Tarpit) Counts() (open, most, closed int) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.open, tp.most, tp.closed
}

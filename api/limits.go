package api

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// LimitListener caps the connections open at once on ln. Past maxConns a
// new connection gets a short 503 and is closed, from its own goroutine so
// the accept loop never waits on a client. A connection counts until it
// is closed, including after an HTTP handler hijacked it (websockets).
// maxConns <= 0 means no cap.
func LimitListener(ln net.Listener, maxConns int, log *slog.Logger) net.Listener {
	if maxConns <= 0 {
		return ln
	}
	if log == nil {
		log = slog.Default()
	}
	return &limitListener{Listener: ln, max: int64(maxConns), log: log}
}

type limitListener struct {
	net.Listener
	max      int64
	open     atomic.Int64
	refusing atomic.Int64 // refusals being written
	lastWarn atomic.Int64 // unix seconds of the last warning logged
	log      *slog.Logger
}

// busyResponse is complete HTTP/1.1, so a client sees a status it can
// retry on rather than a reset.
const busyResponse = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Content-Length: 21\r\nRetry-After: 1\r\nConnection: close\r\n\r\ntoo many connections\n"

// maxRefusing bounds the goroutines writing refusals; past it a
// connection is closed without one.
const maxRefusing = 256

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &countedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.refuse(c)
	}
}

func (l *limitListener) refuse(c net.Conn) {
	if now := time.Now().Unix(); l.lastWarn.Swap(now) != now {
		l.log.Warn("connection refused: too many open", "max", l.max, "remote", c.RemoteAddr().String())
	}
	if l.refusing.Add(1) > maxRefusing {
		l.refusing.Add(-1)
		_ = c.Close()
		return
	}
	go func() {
		defer l.refusing.Add(-1)
		defer c.Close()
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(c, busyResponse)
	}()
}

type countedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

// CloseWrite lets net/http half-close the connection after an early
// answer (a 413 before the body is read), as it does on a bare TCP
// connection, so the client reads the answer instead of a reset.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SyscallConn gives the websocket reader the socket itself
// (api/ws/peekread_linux.go), as a bare TCP connection would.
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("connection has no raw socket")
	}
	return sc.SyscallConn()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}

// Defaults of the body rate limit.
const (
	DefaultMinBodyRate    = 4 << 10
	DefaultBodyRateWindow = 10 * time.Second
)

// errTooSlow ends a request body arriving slower than the minimum rate.
var errTooSlow = errors.New("request body arrives slower than the minimum rate")

// minRate wraps h so that a request body must keep arriving at rate bytes
// per second, averaged over window: each window (the first one starts at
// the first read) must bring at least rate*window bytes, or the
// connection's read deadline ends the body. A body at any normal speed
// renews its window long before the deadline, however long it is.
func minRate(h http.Handler, rate int64, window time.Duration) http.Handler {
	if rate <= 0 || window <= 0 {
		return h
	}
	need := max(rate*int64(window)/int64(time.Second), 1)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		rb := &rateBody{ReadCloser: r.Body, rc: rc, need: need, window: window}
		if err := rb.renew(); err != nil {
			// The connection cannot take deadlines (e.g. a test
			// recorder); serve without the limit.
			h.ServeHTTP(w, r)
			return
		}
		// A handler that returns before the end of the body leaves the
		// deadline: the server's discarding of the rest stays bounded.
		r.Body = rb
		h.ServeHTTP(w, r)
	})
}

// rateBody is read by the handler's goroutine only.
type rateBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	need   int64
	window time.Duration
	got    int64 // bytes in the current window
	ended  bool
}

func (b *rateBody) renew() error {
	b.got = 0
	return b.rc.SetReadDeadline(time.Now().Add(b.window))
}

// clear lifts the deadline once the body has ended: the server's
// background read, which watches for the client going away while the
// handler works, must not trip over it.
func (b *rateBody) clear() {
	b.ended = true
	_ = b.rc.SetReadDeadline(time.Time{})
}

func (b *rateBody) Read(p []byte) (int, error) {
	if b.ended {
		return b.ReadCloser.Read(p)
	}
	n, err := b.ReadCloser.Read(p)
	b.got += int64(n)
	if b.got >= b.need {
		_ = b.renew()
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return n, errTooSlow
		}
		if errors.Is(err, io.EOF) {
			b.clear()
		}
	}
	return n, err
}

// ConnLimits are what NewHTTPServer enforces per connection.
type ConnLimits struct {
	// MinBodyRate is the slowest a request body may arrive, in bytes per
	// second averaged over BodyRateWindow; 0 takes the default, negative
	// turns the limit off.
	MinBodyRate    int64
	BodyRateWindow time.Duration
	// ReadHeaderTimeout bounds the arrival of a request's headers,
	// IdleTimeout a kept-alive connection between requests.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
}

// Defaults of the connection limits.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 64 << 10
	// DefaultMaxConnections leaves room for the default 10,000
	// websockets (--ws-max-connections) and the HTTP clients beside them.
	DefaultMaxConnections = 16384
)

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/wsproto"
)

// wsOptions sizes the websocket scenarios.
type wsOptions struct {
	subscribers int // fan-out: websocket subscribers, and as many HTTP ones
	idle        int // idle connections held for the memory figure
}

// register adds the websocket flags; call prepare once they are parsed.
func (w *wsOptions) register(fs *flag.FlagSet) {
	fs.IntVar(&w.subscribers, "ws-subscribers", 1000, "websocket fan-out: subscribers of one topic (websocket, then HTTP)")
	fs.IntVar(&w.idle, "ws-idle", 10000, "idle websocket connections for the memory figure (0 skips it)")
}

// prepare raises the open-file limit for the idle connections before the
// server starts, so that it inherits the raised limit too.
func (w *wsOptions) prepare() error {
	if w.idle <= 0 {
		return nil
	}
	return raiseFileLimit(w.idle + 1024)
}

// cpuTicks is the server's user+system CPU time so far, in clock ticks
// (fields 14 and 15 of /proc/<pid>/stat).
func (s *server) cpuTicks() (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it do not.
	i := strings.LastIndexByte(string(raw), ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return u + st, nil
}

// clockTick is the length of a /proc clock tick (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// fanoutResult is one fan-out measurement: deliveries per second, and the
// server's CPU time per delivery.
type fanoutResult struct {
	deliveries  int64
	perSecond   float64
	cpuPerDeliv time.Duration
}

func (r fanoutResult) row(name string) string {
	return fmt.Sprintf("| %s | %d | %.0f | %.1f µs |", name, r.deliveries, r.perSecond,
		float64(r.cpuPerDeliv.Nanoseconds())/1e3)
}

// runWebsocket runs the websocket scenarios: fan-out to websocket
// subscribers against as many HTTP subscribers in the same run, and the
// memory of idle connections.
func runWebsocket(ctx context.Context, o options, srv *server, c *client.Client, want func(string) bool) error {
	n := o.ws.subscribers
	wsName, httpName := fmt.Sprintf("ws fan-out: %d websocket subscribers", n), fmt.Sprintf("ws fan-out: %d HTTP subscribers", n)
	if n > 0 && (want(wsName) || want(httpName)) && ctx.Err() == nil {
		fmt.Printf("\n| fan-out to one topic | deliveries | deliveries/s | server CPU per delivery |\n|---|---|---|---|\n")
		ws, err := wsFanout(ctx, c, srv, o, n)
		if err != nil {
			return fmt.Errorf("%s: %w", wsName, err)
		}
		fmt.Println(ws.row(wsName))
		h, err := httpFanout(ctx, c, srv, o, n)
		if err != nil {
			return fmt.Errorf("%s: %w", httpName, err)
		}
		fmt.Println(h.row(httpName))
		fmt.Printf("| websocket / HTTP per delivery | | | %.3f |\n", float64(ws.cpuPerDeliv)/float64(h.cpuPerDeliv))
	}
	idleName := fmt.Sprintf("ws idle: %d connections", o.ws.idle)
	if o.ws.idle > 0 && want(idleName) && ctx.Err() == nil {
		per, total, err := wsIdle(ctx, srv, o.ws.idle)
		if err != nil {
			return fmt.Errorf("%s: %w", idleName, err)
		}
		fmt.Printf("\n| idle websockets | server RSS growth | per connection |\n|---|---|---|\n| %d | %d MiB | %.1f KiB |\n",
			o.ws.idle, total>>20, float64(per)/1024)
	}
	return nil
}

// measure runs work and returns the server CPU time it took. (System
// calls are not counted: /proc/<pid>/io counts read(2) and write(2), not
// the recvfrom(2) the websocket reader uses; perf measures them.)
func measure(srv *server, work func() error) (time.Duration, error) {
	t0, err := srv.cpuTicks()
	if err != nil {
		return 0, err
	}
	if err := work(); err != nil {
		return 0, err
	}
	t1, err := srv.cpuTicks()
	if err != nil {
		return 0, err
	}
	return time.Duration(t1-t0) * clockTick, nil
}

func httpFanout(ctx context.Context, c *client.Client, srv *server, o options, n int) (fanoutResult, error) {
	pool, err := startSubscribers(n)
	if err != nil {
		return fanoutResult{}, err
	}
	defer pool.close()
	topic := []byte("bench/ws/http")
	for _, u := range pool.urls {
		if err := c.SubscribeExact(ctx, u, topic, ""); err != nil {
			return fanoutResult{}, err
		}
	}
	defer func() {
		for _, u := range pool.urls {
			_ = c.UnsubscribeExact(ctx, u, topic)
		}
	}()
	if _, err := c.Notify(ctx, topic, make([]byte, o.msgSize)); err != nil { // warms the connection pool
		return fanoutResult{}, err
	}
	start := pool.received()
	var elapsed time.Duration
	cost, err := measure(srv, func() error {
		clients := make([]*client.Client, o.concurrency)
		for i := range clients {
			clients[i] = c
		}
		var err error
		_, _, elapsed, err = notifyLoop(ctx, clients, o.duration, uint32(n), func(*rand.Rand) []byte { return topic }, make([]byte, o.msgSize))
		return err
	})
	if err != nil {
		return fanoutResult{}, err
	}
	return newFanoutResult(pool.received()-start, elapsed, cost), nil
}

func newFanoutResult(deliveries int64, elapsed, cpu time.Duration) fanoutResult {
	r := fanoutResult{deliveries: deliveries}
	if deliveries > 0 {
		r.perSecond = float64(deliveries) / elapsed.Seconds()
		r.cpuPerDeliv = cpu / time.Duration(deliveries)
	}
	return r
}

// wsFanout connects n websocket subscribers of one topic and notifies it
// over HTTP, keeping at most o.concurrency messages undelivered, until
// o.duration has passed and every delivery has arrived.
func wsFanout(ctx context.Context, c *client.Client, srv *server, o options, n int) (fanoutResult, error) {
	topic := []byte("bench/ws/ws")
	subs, err := dialSubscribers(ctx, srv.base, n, topic)
	defer func() {
		for _, s := range subs {
			s.close()
		}
	}()
	if err != nil {
		return fanoutResult{}, err
	}
	var received atomic.Int64
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(subs))
	for _, s := range subs {
		go func() { errs <- s.confirmLoop(runCtx, &received) }()
	}
	msg := make([]byte, o.msgSize)
	var notifies int64
	var elapsed time.Duration
	cost, err := measure(srv, func() error {
		var err error
		notifies, elapsed, err = wsNotifyLoop(ctx, c, topic, msg, o, n, &received)
		return err
	})
	if err != nil {
		return fanoutResult{}, err
	}
	cancel()
	for range subs {
		if err := <-errs; err != nil && runCtx.Err() == nil {
			return fanoutResult{}, err
		}
	}
	return newFanoutResult(notifies*int64(n), elapsed, cost), nil
}

// wsNotifyLoop notifies topic from o.concurrency goroutines; a notify is
// answered once it is queued on the connections, so each notifier waits
// for the deliveries of all but the last o.concurrency notifies before
// sending the next. It returns once every delivery has arrived.
func wsNotifyLoop(ctx context.Context, c *client.Client, topic, msg []byte, o options, n int, received *atomic.Int64) (int64, time.Duration, error) {
	var sent atomic.Int64
	deadline := time.Now().Add(o.duration)
	start := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, o.concurrency)
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				k, err := c.Notify(ctx, topic, msg)
				if err != nil {
					errc <- err
					return
				}
				if int(k) != n {
					errc <- fmt.Errorf("notify counted %d subscribers, want %d", k, n)
					return
				}
				ahead := (sent.Add(1) - int64(o.concurrency)) * int64(n)
				if err := waitCount(ctx, received, ahead, 30*time.Second); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return 0, 0, err
	}
	if err := waitCount(ctx, received, sent.Load()*int64(n), 30*time.Second); err != nil {
		return 0, 0, err
	}
	return sent.Load(), time.Since(start), nil
}

// waitCount waits until *v reaches want, polling (the load generator's
// CPU is not what is measured), for at most limit.
func waitCount(ctx context.Context, v *atomic.Int64, want int64, limit time.Duration) error {
	end := time.Now().Add(limit)
	for v.Load() < want {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(end) {
			return fmt.Errorf("%d deliveries of %d after %s", v.Load(), want, limit)
		}
		time.Sleep(200 * time.Microsecond)
	}
	return nil
}

// wsSubscriber is a minimal websocket subscriber (auth none): CONFIGURE,
// subscribe, then confirm every RECEIVE_STREAM part.
type wsSubscriber struct {
	ws *websocket.Conn
}

func (s *wsSubscriber) close() { _ = s.ws.CloseNow() }

// dialSubscribers opens n websockets, 32 at a time; with a topic each
// subscribes to it and waits for the confirmation.
func dialSubscribers(ctx context.Context, base string, n int, topic []byte) ([]*wsSubscriber, error) {
	url := "ws" + strings.TrimPrefix(base, "http") + "/v1/websocket"
	subs := make([]*wsSubscriber, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			subs[i], errs[i] = dialSubscriber(ctx, hc, url, topic)
		}()
	}
	wg.Wait()
	out := subs[:0]
	for _, s := range subs {
		if s != nil {
			out = append(out, s)
		}
	}
	return out, errors.Join(errs...)
}

func dialSubscriber(ctx context.Context, hc *http.Client, url string, topic []byte) (*wsSubscriber, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, url, &websocket.DialOptions{HTTPClient: hc, CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	ws.SetReadLimit(8 << 20)
	s := &wsSubscriber{ws: ws}
	if err := s.handshake(dctx, topic); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *wsSubscriber) send(ctx context.Context, m wsproto.Message) error {
	out, err := wsproto.AppendMinimal(nil, m)
	if err != nil {
		return err
	}
	return s.ws.Write(ctx, websocket.MessageBinary, out)
}

// handshake configures the connection (zstd on, no training: what a
// browser-side subscriber of short messages would ask) and subscribes.
func (s *wsSubscriber) handshake(ctx context.Context, topic []byte) error {
	if err := s.send(ctx, wsproto.Configure{EnableZstd: true}); err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	if err := s.await(ctx, func(m any) bool { _, ok := m.(wsproto.ConfirmConfigure); return ok }); err != nil {
		return fmt.Errorf("confirm configure: %w", err)
	}
	if topic == nil {
		return nil
	}
	if err := s.send(ctx, wsproto.SubscribeExact{Topic: topic}); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	return s.await(ctx, func(m any) bool { _, ok := m.(wsproto.ConfirmSubscribeExact); return ok })
}

// await reads messages until done accepts one.
func (s *wsSubscriber) await(ctx context.Context, done func(any) bool) error {
	for {
		_, b, err := s.ws.Read(ctx)
		if err != nil {
			return err
		}
		m, err := wsproto.ParseB2S(b)
		if err != nil {
			return err
		}
		if done(m) {
			return nil
		}
	}
}

// confirmLoop answers every RECEIVE_STREAM part until ctx ends, counting
// complete messages.
func (s *wsSubscriber) confirmLoop(ctx context.Context, received *atomic.Int64) error {
	var have, want uint64
	var sendErr error
	err := s.await(ctx, func(m any) bool {
		r, ok := m.(wsproto.ReceiveStream)
		if !ok {
			return false
		}
		if r.First != nil {
			have, want = 0, r.First.CompressedLength
		}
		have += uint64(len(r.Payload))
		var reply wsproto.Message = wsproto.ContinueReceive{Identifier: r.Identifier, PartID: r.PartID}
		if have >= want {
			reply = wsproto.ConfirmReceive{Identifier: r.Identifier, NumSubscribers: 1}
		}
		if sendErr = s.send(ctx, reply); sendErr != nil {
			return true
		}
		if have >= want {
			received.Add(1)
		}
		return false
	})
	if sendErr != nil {
		return sendErr
	}
	return err
}

// wsIdle opens n configured websockets that then stay idle and returns the
// server's RSS growth per connection and in total.
func wsIdle(ctx context.Context, srv *server, n int) (int64, int64, error) {
	before, _ := srv.rss()
	subs, err := dialSubscribers(ctx, srv.base, n, nil)
	defer func() {
		for _, s := range subs {
			s.close()
		}
	}()
	if err != nil {
		return 0, 0, err
	}
	after, _ := srv.rss()
	total := after - before
	return total / int64(n), total, nil
}

// raiseFileLimit lifts this process's open-file limit to at least n when
// the hard limit allows; the server, started earlier, needs as many and
// inherited the limit it was started with.
func raiseFileLimit(n int) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur >= uint64(n) {
		return nil
	}
	if l.Max < uint64(n) {
		return fmt.Errorf("open-file hard limit %d is below the %d connections asked for", l.Max, n)
	}
	l.Cur = uint64(n)
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

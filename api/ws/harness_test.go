package ws

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/lonelypsd/lonelypsd/api"
	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
	"github.com/lonelypsd/lonelypsd/api/wsproto"
	"github.com/lonelypsd/lonelypsd/cluster"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
	"github.com/lonelypsd/lonelypsd/fanout"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// testNode is a whole single-node broadcaster in this process: a real
// Raft node on disk, fan-out, the HTTP API and the hub, on 127.0.0.1.
type testNode struct {
	t     *testing.T
	base  string // http://127.0.0.1:port
	wsURL string
	hub   *Hub
	node  *cluster.Node
	fan   *fanout.Fanout
	srv   *http.Server
	// receives counts the POSTs to the node's receive_for_websockets.
	receives atomic.Int64
	// clientAuth is what a client of this node signs and verifies with:
	// the same secrets, its own replay store.
	clientAuth func() auth.Pair
	stopped    bool
}

type nodeOptions struct {
	hmac bool
	ws   func(*Config)
	// overHTTP makes the node reach its own websockets by POSTing to
	// itself, as a peer does, instead of in process.
	overHTTP bool
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("WS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// pairs returns the broadcaster's pair and a factory of client pairs.
func pairs(t *testing.T, hmac bool) (auth.Pair, func() auth.Pair) {
	t.Helper()
	if !hmac {
		return auth.NonePair(), auth.NonePair
	}
	tb, err := auth.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	ts, err := auth.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	s := auth.Secrets{
		ToBroadcaster: auth.SecretSpec{Type: auth.TypeHMAC, Secret: tb},
		ToSubscriber:  auth.SecretSpec{Type: auth.TypeHMAC, Secret: ts}}
	mk := func() auth.Pair {
		p, err := s.NewPair()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	return mk(), mk
}

type remover struct{ node *cluster.Node }

func (r remover) Remove(ctx context.Context, s fsm.Subscription) error {
	cmd := fsm.Command{Op: fsm.OpUnsubscribeExact, URL: s.URL, Topic: []byte(s.Key)}
	if s.Kind == fsm.Glob {
		cmd = fsm.Command{Op: fsm.OpUnsubscribeGlob, URL: s.URL, Glob: s.Key}
	}
	_, err := r.node.Apply(ctx, cmd)
	return err
}

func startTestNode(t *testing.T, o nodeOptions) *testNode {
	t.Helper()
	log := testLogger(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	dir := t.TempDir()
	node, err := cluster.Open(cluster.Config{NodeID: "n1", RaftAddr: lonelypsdtest.FreeAddr(t), DataDir: filepath.Join(dir, "data"),
		AdvertiseHTTP: addr, Bootstrap: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := node.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	pair, clientAuth := pairs(t, o.hmac)
	fan := fanout.New(fanout.Config{Timeout: 10 * time.Second}, node.FSM(), remover{node}, pair, nil, log)
	srv := api.New(api.Config{SpoolDir: dir}, node, node, node.FSM(), fan, pair, log)
	cfg := Config{NodeID: "n1", AdvertiseHTTP: addr, SpoolDir: dir}
	if o.ws != nil {
		o.ws(&cfg)
	}
	hub, err := New(cfg, node, node.FSM(), fan, pair, log)
	if err != nil {
		t.Fatal(err)
	}
	hub.Register(srv.Echo())
	if !o.overHTTP {
		fan.SetLocal(hub)
	}
	n := &testNode{t: t, base: "http://" + addr, wsURL: "ws://" + addr + PathWebsocket, hub: hub, node: node,
		fan: fan, clientAuth: clientAuth}
	srv.Echo().Pre(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if c.Request().URL.Path == PathReceive {
				n.receives.Add(1)
			}
			return next(c)
		}
	})
	hub.Start()
	n.srv = &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = n.srv.Serve(ln) }()
	t.Cleanup(n.stop)
	return n
}

func (n *testNode) stop() {
	if n.stopped {
		return
	}
	n.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.hub.Shutdown(ctx); err != nil {
		n.t.Errorf("hub shutdown: %v", err)
	}
	_ = n.srv.Close()
	n.fan.Wait()
	_ = n.node.Close()
}

// rows returns the table rows of the hub's node id.
func (n *testNode) rows() []fsm.Subscription {
	var out []fsm.Subscription
	for _, s := range n.node.FSM().All() {
		if ours, _ := n.hub.rowOwner(s.URL); ours {
			out = append(out, s)
		}
	}
	return out
}

func (n *testNode) client() *client.Client {
	c := client.New(n.base)
	c.Auth = n.clientAuth()
	return c
}

func (n *testNode) dial(o wsclient.Options) *wsclient.Conn {
	n.t.Helper()
	if o.Auth.ToBroadcaster == nil {
		o.Auth = n.clientAuth()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := wsclient.Dial(ctx, n.wsURL, o)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { _ = c.Close() })
	return c
}

// httpSubscriber runs a client.Subscriber on a loopback listener.
func httpSubscriber(t *testing.T, pair auth.Pair) (*client.Subscriber, string) {
	t.Helper()
	sub := client.NewSubscriber()
	sub.Auth = pair
	sub.KeepBodies = 64 << 20
	srv := httptest.NewServer(sub)
	t.Cleanup(srv.Close)
	return sub, srv.URL + "/v1/receive"
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// next returns the next message of c or fails after d.
func next(t *testing.T, c *wsclient.Conn, d time.Duration) wsclient.Message {
	t.Helper()
	return lonelypsdtest.NextMessage(t, c, d)
}

// none asserts that c receives nothing for a short while.
func none(t *testing.T, c *wsclient.Conn) {
	t.Helper()
	select {
	case m := <-c.Messages():
		t.Fatalf("unexpected message on %q (missed %t)", m.Topic, m.Missed)
	case <-time.After(150 * time.Millisecond):
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// rawConn speaks the protocol by hand, for the tests that break it or
// stop reading.
type rawConn struct {
	t     *testing.T
	ws    *websocket.Conn
	pair  auth.Pair
	nonce [32]byte
	sub   int64
}

func (n *testNode) dialRaw(enableZstd bool) *rawConn {
	t := n.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, n.wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(64 << 20)
	t.Cleanup(func() { _ = ws.CloseNow() })
	r := &rawConn{t: t, ws: ws, pair: n.clientAuth(), sub: -1}
	var sub [32]byte
	copy(sub[:], randomBytes(t, 32))
	a, err := r.pair.Authorize(auth.StatefulConfigure{SubscriberNonce: sub, EnableZstd: enableZstd})
	if err != nil {
		t.Fatal(err)
	}
	r.send(wsproto.Configure{SubscriberNonce: sub, EnableZstd: enableZstd, Authorization: a})
	cc, ok := r.read().(wsproto.ConfirmConfigure)
	if !ok {
		t.Fatal("no confirm configure")
	}
	r.nonce = auth.ConnectionNonce(sub, cc.BroadcasterNonce)
	return r
}

func (r *rawConn) send(m wsproto.Message) {
	r.t.Helper()
	b, err := wsproto.AppendMinimal(nil, m)
	if err != nil {
		r.t.Fatal(err)
	}
	r.sendBytes(b)
}

func (r *rawConn) sendBytes(b []byte) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.ws.Write(ctx, websocket.MessageBinary, b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) read() any {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := r.ws.Read(ctx)
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	m, err := wsproto.ParseB2S(b)
	if err != nil {
		r.t.Fatal(err)
	}
	return m
}

// subURL returns the url of the next counter-bearing message.
func (r *rawConn) subURL() string {
	u := auth.WebsocketURL(r.nonce, r.sub)
	r.sub--
	return u
}

func (r *rawConn) subscribe(topic string) {
	r.t.Helper()
	a, err := r.pair.Authorize(auth.SubscribeExact{URL: r.subURL(), Topic: []byte(topic)})
	if err != nil {
		r.t.Fatal(err)
	}
	r.send(wsproto.SubscribeExact{Authorization: a, Topic: []byte(topic)})
}

// expectClose reads until the connection ends and checks the close code.
func (r *rawConn) expectClose(code websocket.StatusCode) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		_, _, err := r.ws.Read(ctx)
		if err == nil {
			continue
		}
		if got := websocket.CloseStatus(err); got != code {
			r.t.Fatalf("connection ended with %v (status %d), want status %d", err, got, code)
		}
		return
	}
}

package broadcaster

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
	"github.com/lonelypsd/lonelypsd/cluster"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

// embedded is a node mounted under /pubsub in a plain net/http server
// that also serves a route of its own.
type embedded struct {
	cfg  Config
	b    *Broadcaster
	srv  *http.Server
	base string // the server's root URL
}

func startEmbedded(t *testing.T) *embedded {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Cluster:  cluster.Config{NodeID: "embedded", RaftAddr: lonelypsdtest.FreeAddr(t), DataDir: filepath.Join(t.TempDir(), "data"), Bootstrap: true},
		HTTPAddr: ln.Addr().String(), BasePath: "/pubsub",
		MissedSweepInterval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	}
	b, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello from the app") })
	mux.Handle("/pubsub/", http.StripPrefix("/pubsub", b.Handler()))
	e := &embedded{cfg: cfg, b: b, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, base: "http://" + ln.Addr().String()}
	go func() { _ = e.srv.Serve(ln) }()
	t.Cleanup(func() { e.stop(t) })
	if err := lonelypsdtest.WaitReady(t.Context(), nil, e.base+"/pubsub", nil); err != nil {
		t.Fatalf("embedded node: %v", err)
	}
	return e
}

func (e *embedded) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Errorf("server shutdown: %v", err)
	}
	if err := e.b.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestEmbeddedUnderAPrefix(t *testing.T) {
	e := startEmbedded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The application's own route is untouched.
	resp, err := http.Get(e.base + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from the app" {
		t.Fatalf("own route answered %q", body)
	}

	// The protocol's endpoints, under the prefix.
	c := client.New(e.base + "/pubsub")
	sub := client.NewSubscriber()
	subLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	subSrv := &http.Server{Handler: sub, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = subSrv.Serve(subLn) }()
	defer subSrv.Close()
	recv := "http://" + subLn.Addr().String() + "/v1/receive"
	if err := c.SubscribeExact(ctx, recv, []byte("a"), ""); err != nil {
		t.Fatal(err)
	}
	if err := c.SubscribeGlob(ctx, recv, "g/*", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.SetSubscriptions(ctx, "http://127.0.0.1:9/other", []wire.ExactEntry{{Topic: []byte("x")}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CheckSubscriptions(ctx, recv); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"a", "g/1"} {
		if n, err := c.Notify(ctx, []byte(topic), []byte("m")); err != nil || n != 1 {
			t.Fatalf("notify %s: %d subscribers, %v", topic, n, err)
		}
	}

	// A websocket subscriber: its rows are internal URLs of this node,
	// which must carry the prefix to reach it through the app's server.
	ws, err := wsclient.Dial(ctx, "ws://"+strings.TrimPrefix(e.base, "http://")+"/pubsub/v1/websocket", wsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.SubscribeExact(ctx, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Notify(ctx, []byte("a"), []byte("to both")); err != nil || n != 2 {
		t.Fatalf("notify to an HTTP and a websocket subscriber: %d, %v", n, err)
	}
	select {
	case m := <-ws.Messages():
		if string(m.Data) != "to both" {
			t.Fatalf("websocket got %q", m.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the websocket subscriber got nothing")
	}

	// The operator endpoints answer at the prefixed URL.
	st, err := cluster.NewClient("").Status(ctx, e.base+"/pubsub")
	if err != nil || st.ID != "embedded" || st.Subscriptions.Exact < 2 {
		t.Fatalf("status under the prefix: %+v %v", st, err)
	}
}

func TestEmbeddedCloseReleasesTheStores(t *testing.T) {
	e := startEmbedded(t)
	e.stop(t)
	if err := e.b.Close(context.Background()); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	// Reopening the same folder and Raft port works only if Close let go
	// of the files (bbolt's lock) and the listener.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Open(ctx, e.cfg)
	if err != nil {
		t.Fatalf("reopen after Close: %v", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/spool"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
	"github.com/lonelypsd/lonelypsd/fanout"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// fakeWriter records the commands proposed and answers with res or err.
type fakeWriter struct {
	mu   sync.Mutex
	cmds []fsm.Command
	res  fsm.Result
	err  error
}

func (w *fakeWriter) Apply(_ context.Context, cmd fsm.Command) (fsm.Result, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cmds = append(w.cmds, cmd)
	if w.err != nil {
		return fsm.Result{}, w.err
	}
	if w.res.Outcome == 0 {
		return fsm.Result{Outcome: fsm.Applied}, nil
	}
	return w.res, nil
}

func (w *fakeWriter) proposed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.cmds)
}

type readyFunc func() error

func (f readyFunc) Ready() error { return f() }

// emptyTable has no subscriptions.
type emptyTable struct{}

func (emptyTable) List(string) ([]fsm.Subscription, []fsm.Subscription, error) { return nil, nil, nil }
func (emptyTable) Match([]byte) []fsm.Subscription                             { return nil }
func (emptyTable) Lookup(fsm.Kind, string, string) (string, bool)              { return "", false }

type noRemover struct{}

func (noRemover) Remove(context.Context, fsm.Subscription) error { return nil }

// unavailableErr is what the cluster's "retry" errors look like to api.
type unavailableErr struct{}

func (unavailableErr) Error() string     { return "no leader" }
func (unavailableErr) Unavailable() bool { return true }

type policyFunc func(string) error

func (f policyFunc) CheckURL(u string) error { return f(u) }

type testServer struct {
	url    string
	writer *fakeWriter
	srv    *Server
	// bodyRead counts the request body bytes handlers read.
	bodyRead atomic.Int64
}

// startServer runs a Server on 127.0.0.1 behind NewHTTPServer, with a real
// fan-out over an empty table.
func startServer(t *testing.T, cfg Config, pair auth.Pair) *testServer {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	missed, err := fanout.OpenMissedStore(filepath.Join(t.TempDir(), "missed.db"), fanout.RetryPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = missed.Close() })
	fan := fanout.New(fanout.Config{}, emptyTable{}, noRemover{}, pair, missed, log)
	t.Cleanup(fan.Wait)
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = t.TempDir()
	}
	ts := &testServer{writer: &fakeWriter{}}
	ts.srv = New(cfg, ts.writer, readyFunc(func() error { return nil }), emptyTable{}, fan, pair, log)
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = &countingBody{ReadCloser: r.Body, n: &ts.bodyRead}
		ts.srv.Handler().ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := NewHTTPServer("", counted, cfg.ConnLimits, log)
	go func() { _ = hs.Serve(LimitListener(ln, cfg.MaxConnections, log)) }()
	t.Cleanup(func() { _ = hs.Close() })
	ts.url = "http://" + ln.Addr().String()
	return ts
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	k, err := c.ReadCloser.Read(p)
	c.n.Add(int64(k))
	return k, err
}

func (ts *testServer) post(t *testing.T, path string, body []byte, authz string) (int, string) {
	t.Helper()
	return lonelypsdtest.Post(t, ts.url+path, authz, body)
}

// mustBody unwraps an encoder's result; the inputs are the test's own.
func mustBody(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

const subURL = "http://127.0.0.1:1/sub"

func subscribeExact(t *testing.T, url, recovery string) []byte {
	return mustBody(wire.AppendSubscribeExact(nil, wire.SubscribeExact{URL: url, Topic: []byte("t"), Recovery: recovery}))
}

func subscribeGlob(t *testing.T, glob string) []byte {
	return mustBody(wire.AppendSubscribeGlob(nil, wire.SubscribeGlob{URL: subURL, Glob: glob}))
}

func setSubscriptions(t *testing.T, url string, n int, recovery string) []byte {
	m := wire.SetSubscriptions{URL: url}
	for i := range n {
		m.Exact = append(m.Exact, wire.ExactEntry{Topic: fmt.Appendf(nil, "t%06d", i), Recovery: recovery})
	}
	m.Etag = wire.Etag(m.URL, m.Exact, m.Globs)
	return mustBody(wire.AppendSetSubscriptions(nil, m))
}

func notifyBody(t *testing.T, msg []byte) []byte {
	b := mustBody(wire.AppendNotifyHeader(nil, wire.Notify{
		Topic: []byte("t"), SHA512: sha512.Sum512(msg), Identifier: []byte("id"), Length: uint64(len(msg)),
	}))
	return append(b, msg...)
}

func TestHandlerStatuses(t *testing.T) {
	denied := errors.New("link-local addresses are not allowed")
	policy := policyFunc(func(u string) error {
		if strings.Contains(u, "169.254.") {
			return denied
		}
		return nil
	})
	cases := []struct {
		name     string
		cfg      Config
		writeErr error
		path     string
		body     func(t *testing.T) []byte
		want     int
		wantText string
		// proposed is whether the command must reach the writer.
		proposed bool
	}{
		{name: "garbage subscribe", path: "/v1/subscribe/exact", body: func(*testing.T) []byte { return []byte{0, 9, 'x'} }, want: 400},
		{name: "garbage set_subscriptions", path: "/v1/set_subscriptions", body: func(*testing.T) []byte { return []byte{0, 0, 0, 3, 'h'} }, want: 400},
		{name: "garbage notify", path: "/v1/notify", body: func(*testing.T) []byte { return []byte{0, 1} }, want: 400},
		{name: "notify wrong digest", path: "/v1/notify", body: func(t *testing.T) []byte {
			b := notifyBody(t, []byte("hello"))
			b[len(b)-1] ^= 1
			return b
		}, want: 400},
		{name: "not a URL", path: "/v1/subscribe/exact", body: func(t *testing.T) []byte { return subscribeExact(t, "ftp://x/", "") }, want: 400},
		{name: "subscribe ok", path: "/v1/subscribe/exact", body: func(t *testing.T) []byte { return subscribeExact(t, subURL, "") }, want: 200, proposed: true},
		{name: "no leader is 503", writeErr: unavailableErr{}, path: "/v1/subscribe/exact",
			body: func(t *testing.T) []byte { return subscribeExact(t, subURL, "") }, want: 503, proposed: true},
		{name: "wrapped unavailable is 503", writeErr: fmt.Errorf("forward: %w", unavailableErr{}), path: "/v1/subscribe/exact",
			body: func(t *testing.T) []byte { return subscribeExact(t, subURL, "") }, want: 503, proposed: true},
		{name: "deadline is 503", writeErr: fmt.Errorf("apply: %w", context.DeadlineExceeded), path: "/v1/subscribe/exact",
			body: func(t *testing.T) []byte { return subscribeExact(t, subURL, "") }, want: 503, proposed: true},
		{name: "disk full is 503", writeErr: fmt.Errorf("bolt: %w", syscall.ENOSPC), path: "/v1/set_subscriptions",
			body: func(t *testing.T) []byte { return setSubscriptions(t, subURL, 1, "") }, want: 503, proposed: true},
		{name: "quota is 503", writeErr: &net.OpError{Op: "write", Err: syscall.EDQUOT}, path: "/v1/subscribe/exact",
			body: func(t *testing.T) []byte { return subscribeExact(t, subURL, "") }, want: 503, proposed: true},
		{name: "other failure is 500", writeErr: errors.New("boom"), path: "/v1/subscribe/exact",
			body: func(t *testing.T) []byte { return subscribeExact(t, subURL, "") }, want: 500, proposed: true},
		{name: "message over max size is 413", cfg: Config{MaxMessageSize: 4}, path: "/v1/notify",
			body: func(t *testing.T) []byte { return notifyBody(t, []byte("hello")) }, want: 413, wantText: "exceeds"},
		{name: "message at max size", cfg: Config{MaxMessageSize: 5}, path: "/v1/notify",
			body: func(t *testing.T) []byte { return notifyBody(t, []byte("hello")) }, want: 200},
		{name: "spool volume short of its reserve is 503", cfg: Config{SpoolThreshold: 10, DiskReserve: 1 << 60}, path: "/v1/notify",
			body: func(t *testing.T) []byte { return notifyBody(t, bytes.Repeat([]byte{'m'}, 100)) }, want: 503, wantText: "disk space"},
		{name: "small message stays in memory whatever the disk", cfg: Config{SpoolThreshold: 10, DiskReserve: 1 << 60}, path: "/v1/notify",
			body: func(t *testing.T) []byte { return notifyBody(t, []byte("hello")) }, want: 200},
		{name: "set_subscriptions body over limit is 413", cfg: Config{MaxSetSubscriptionsBody: 200}, path: "/v1/set_subscriptions",
			body: func(t *testing.T) []byte { return setSubscriptions(t, subURL, 20, "") }, want: 413},
		{name: "glob too long", cfg: Config{MaxGlobLength: 8}, path: "/v1/subscribe/glob",
			body: func(t *testing.T) []byte { return subscribeGlob(t, "abcdefghi*") }, want: 400, wantText: "--max-glob-length"},
		{name: "glob at limit", cfg: Config{MaxGlobLength: 8}, path: "/v1/subscribe/glob",
			body: func(t *testing.T) []byte { return subscribeGlob(t, "abcdefg*") }, want: 200, proposed: true},
		{name: "policy refuses url", cfg: Config{URLPolicy: policy}, path: "/v1/subscribe/exact",
			body: func(t *testing.T) []byte { return subscribeExact(t, "http://169.254.169.254/x", "") }, want: 400, wantText: denied.Error()},
		{name: "policy refuses recovery", cfg: Config{URLPolicy: policy}, path: "/v1/subscribe/exact",
			body: func(t *testing.T) []byte { return subscribeExact(t, subURL, "http://169.254.1.1/r") }, want: 400, wantText: denied.Error()},
		{name: "policy refuses set_subscriptions url", cfg: Config{URLPolicy: policy}, path: "/v1/set_subscriptions",
			body: func(t *testing.T) []byte { return setSubscriptions(t, "http://169.254.1.1/", 1, "") }, want: 400, wantText: denied.Error()},
		{name: "policy refuses set_subscriptions recovery", cfg: Config{URLPolicy: policy}, path: "/v1/set_subscriptions",
			body: func(t *testing.T) []byte { return setSubscriptions(t, subURL, 2, "http://169.254.1.1/") }, want: 400, wantText: denied.Error()},
		{name: "policy does not stop unsubscribing", cfg: Config{URLPolicy: policy}, path: "/v1/unsubscribe/exact",
			body: func(t *testing.T) []byte {
				return mustBody(wire.AppendUnsubscribeExact(nil, wire.SubscribeExact{URL: "http://169.254.1.1/", Topic: []byte("t")}))
			}, want: 200, proposed: true},
		{name: "set_subscriptions over the per-URL cap", cfg: Config{MaxSubscriptionsPerURL: 5}, path: "/v1/set_subscriptions",
			body: func(t *testing.T) []byte { return setSubscriptions(t, subURL, 6, "") }, want: 400, wantText: "too many subscriptions for this URL (limit 5)"},
		{name: "set_subscriptions at the per-URL cap", cfg: Config{MaxSubscriptionsPerURL: 5}, path: "/v1/set_subscriptions",
			body: func(t *testing.T) []byte { return setSubscriptions(t, subURL, 5, "") }, want: 200, proposed: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, tc.cfg, auth.NonePair())
			ts.writer.err = tc.writeErr
			status, text := ts.post(t, tc.path, tc.body(t), "")
			if status != tc.want {
				t.Errorf("status %d (%q), want %d", status, text, tc.want)
			}
			if !strings.Contains(text, tc.wantText) {
				t.Errorf("answer %q does not say %q", text, tc.wantText)
			}
			if got := ts.writer.proposed() > 0; got != tc.proposed {
				t.Errorf("command proposed: %v, want %v", got, tc.proposed)
			}
		})
	}
}

func hmacPair(t *testing.T) auth.Pair {
	t.Helper()
	secret := func() string {
		b := make([]byte, 64)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	p, err := auth.Secrets{
		ToBroadcaster: auth.SecretSpec{Type: auth.TypeHMAC, Secret: secret()},
		ToSubscriber:  auth.SecretSpec{Type: auth.TypeHMAC, Secret: secret()},
	}.NewPair()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// An unsigned set_subscriptions is refused after its header: the lists
// behind it are never read.
func TestSetSubscriptionsAuthenticatedBeforeLists(t *testing.T) {
	ts := startServer(t, Config{}, hmacPair(t))
	body := setSubscriptions(t, subURL, 50000, "")
	status, text := ts.post(t, "/v1/set_subscriptions", body, "")
	if status != http.StatusUnauthorized {
		t.Fatalf("unsigned set_subscriptions: %d %q, want 401", status, text)
	}
	// The header is ~100 bytes; the transport may have buffered up to a
	// few reads past it, but not the megabyte of lists.
	if got := ts.bodyRead.Load(); got > 256<<10 {
		t.Errorf("handler read %d of %d body bytes before refusing", got, len(body))
	}
	if ts.writer.proposed() != 0 {
		t.Error("an unsigned command was proposed")
	}
}

// Notify bodies go through the shared spool and leave no charge behind.
func TestNotifyUsesSpoolBudget(t *testing.T) {
	sp := spool.New(spool.Config{Dir: t.TempDir(), MaxBuffered: 1 << 20}, nil)
	ts := startServer(t, Config{Spool: sp}, auth.NonePair())
	for _, size := range []int{0, 100, 2 << 20} {
		msg := bytes.Repeat([]byte{'m'}, size)
		if status, text := ts.post(t, "/v1/notify", notifyBody(t, msg), ""); status != 200 {
			t.Fatalf("notify of %d bytes: %d %q", size, status, text)
		}
	}
	if b := sp.Buffered(); b != 0 {
		t.Errorf("%d bytes still charged to the budget after the notifies", b)
	}
	if ts.srv.Spool() != sp {
		t.Error("Spool() is not the configured spool")
	}
}

// A body trickling slower than the minimum rate is cut within about one
// window; a fast one of many windows' worth of time is not.
func TestMinBodyRate(t *testing.T) {
	ts := startServer(t, Config{ConnLimits: ConnLimits{MinBodyRate: 1000, BodyRateWindow: 300 * time.Millisecond}}, auth.NonePair())
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A valid header announcing 100,000 bytes, then a byte every 50 ms.
	head := mustBody(wire.AppendNotifyHeader(nil, wire.Notify{Topic: []byte("t"), Length: 100000}))
	if _, err := fmt.Fprintf(conn, "POST /v1/notify HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(head)+100000, head); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, conn)
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Second)
trickle:
	for {
		select {
		case <-closed:
			break trickle
		case <-deadline:
			t.Fatal("trickling connection still open after 5 s")
		case <-tick.C:
			_, _ = conn.Write([]byte{0})
		}
	}
	cut := time.Since(start)
	t.Logf("trickling body cut after %v", cut)
	if cut > 2*time.Second {
		t.Errorf("trickling body cut after %v, want about one 300 ms window", cut)
	}

	// 1 MiB at about 100 KiB/s: 10 s worth of 1,000 B/s windows.
	msg := bytes.Repeat([]byte{'x'}, 1<<20)
	body := notifyBody(t, msg)
	req, err := http.NewRequest(http.MethodPost, ts.url+"/v1/notify", &pacedReader{r: bytes.NewReader(body), chunk: 10 << 10, every: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("paced upload: %d, want 200", resp.StatusCode)
	}
}

type pacedReader struct {
	r     io.Reader
	chunk int
	every time.Duration
}

func (p *pacedReader) Read(b []byte) (int, error) {
	time.Sleep(p.every) // pacing the client, not synchronisation
	return p.r.Read(b[:min(len(b), p.chunk)])
}

// Past the cap, a connection gets a 503 at once; once one closes, a new
// one is served.
func TestMaxConnections(t *testing.T) {
	ts := startServer(t, Config{MaxConnections: 2}, auth.NonePair())
	addr := strings.TrimPrefix(ts.url, "http://")
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// The held connections are accepted in order; wait until the third
	// is refused.
	status := func() (int, error) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if got, err := status(); err != nil || got != http.StatusServiceUnavailable {
		t.Fatalf("third connection: %d %v, want 503", got, err)
	}
	held[0].Close()
	lonelypsdtest.WaitFor(t, "a 200 after closing one connection", 5*time.Second, func() bool {
		got, err := status()
		return err == nil && got == http.StatusOK
	})
}

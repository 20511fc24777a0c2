package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// countingListener counts the bytes the server reads from its connections.
type countingListener struct {
	net.Listener
	read *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, read: l.read}, nil
}

type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// single is a one-node cluster serving its /cluster endpoints over real
// HTTP, with the secret given (or, empty, the one it generates).
type single struct {
	*inProcess
	dir  string
	read *atomic.Int64 // bytes the HTTP server read
}

func startSingle(t *testing.T, secret string, mod func(*Config)) *single {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	cfg := Config{
		NodeID: "solo", RaftAddr: lonelypsdtest.FreeAddr(t), DataDir: dir, AdvertiseHTTP: l.Addr().String(),
		Bootstrap: true, Secret: secret, Logger: slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	node, err := Open(cfg)
	if err != nil {
		_ = l.Close()
		t.Fatal(err)
	}
	read := &atomic.Int64{}
	srv := &http.Server{Handler: node.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(countingListener{Listener: l, read: read}) }()
	t.Cleanup(func() {
		_ = srv.Close()
		_ = node.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := node.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	// The node registers its addresses through Raft right after start;
	// wait for it so that it does not count as a test's write.
	waitUntil(t, "the node's own registration", func() bool { _, ok := node.FSM().Node("solo"); return ok })
	return &single{inProcess: &inProcess{node: node, srv: srv, http: l.Addr().String()}, dir: dir, read: read}
}

// waitUntil waits up to 10 s for cond, which nothing announces.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	lonelypsdtest.WaitFor(t, what, 10*time.Second, cond)
}

// peerRequest builds a request to path on s; sign, when set, signs it.
func (s *single) peerRequest(t *testing.T, path string, body []byte, sign func(http.Header)) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+s.http+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if sign != nil {
		sign(req.Header)
	}
	return req
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func signFor(secret, target string, path string, body []byte, at time.Time) func(http.Header) {
	return func(h http.Header) { signPeer(h, []byte(secret), http.MethodPost, path, target, body, at) }
}

// peerCalls are valid bodies for every signed endpoint: accepted, each
// would change or reveal something.
func peerCalls(t *testing.T) []struct {
	path string
	body []byte
} {
	return []struct {
		path string
		body []byte
	}{
		{"/cluster/apply", mustJSON(t, fsm.Command{Op: fsm.OpSubscribeExact, ID: "x1", URL: "http://127.0.0.1:9/r", Topic: []byte("t")})},
		{"/cluster/join", mustJSON(t, fsm.NodeInfo{ID: "intruder", HTTP: "127.0.0.1:9", Raft: "127.0.0.1:9"})},
		{"/cluster/remove", mustJSON(t, removeRequest{ID: "solo"})},
		{"/cluster/boot", mustJSON(t, fsm.NodeInfo{ID: "intruder", HTTP: "127.0.0.1:9", Raft: "127.0.0.1:9"})},
		{"/cluster/read_index", []byte("{}")},
		{"/cluster/subscriptions", mustJSON(t, subscriptionsRequest{URL: "http://127.0.0.1:9/r"})},
	}
}

// unchanged fails the test when s's table or membership moved.
func (s *single) unchanged(t *testing.T) {
	t.Helper()
	if e, g := s.node.FSM().Counts(); e != 0 || g != 0 {
		t.Fatalf("table changed: %d exact, %d globs", e, g)
	}
	st := s.node.Status()
	if len(st.Members) != 1 || st.Members[0].ID != "solo" || len(s.node.FSM().Nodes()) != 1 {
		t.Fatalf("membership changed: %+v", st.Members)
	}
	s.node.bootMu.Lock()
	defer s.node.bootMu.Unlock()
	if len(s.node.candidates) != 0 {
		t.Fatalf("boot candidates recorded: %v", s.node.candidates)
	}
}

// TestPeerEndpointsRefuseUnsignedRequests: with a configured secret and
// with none (the node generates one), every /cluster endpoint but the
// status refuses unsigned and wrongly signed requests, and nothing is
// applied; a request signed with the node's secret is accepted.
func TestPeerEndpointsRefuseUnsignedRequests(t *testing.T) {
	for _, secret := range []string{"configured-secret", ""} {
		name := "configured secret"
		if secret == "" {
			name = "generated secret"
		}
		t.Run(name, func(t *testing.T) {
			s := startSingle(t, secret, nil)
			for _, c := range peerCalls(t) {
				for _, sign := range []struct {
					name string
					fn   func(http.Header)
				}{
					{"unsigned", nil},
					{"other secret", signFor("not-the-secret", "solo", c.path, c.body, time.Now())},
					{"empty secret", signFor("", "solo", c.path, c.body, time.Now())},
				} {
					code, body := do(t, s.peerRequest(t, c.path, c.body, sign.fn))
					if code != http.StatusForbidden {
						t.Errorf("%s %s: %d %s, want 403", sign.name, c.path, code, body)
					}
				}
			}
			s.unchanged(t)
			resp, err := http.Get("http://" + s.http + "/cluster/status")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status: %d", resp.StatusCode)
			}
			// The node's own secret works, the generated one read from
			// its data folder as the operator command does.
			if secret == "" {
				if secret, err = GeneratedSecret(s.dir); err != nil || secret == "" {
					t.Fatalf("generated secret: %q, %v", secret, err)
				}
			}
			apply := peerCalls(t)[0]
			if code, body := do(t, s.peerRequest(t, apply.path, apply.body, signFor(secret, "solo", apply.path, apply.body, time.Now()))); code != http.StatusOK {
				t.Fatalf("signed apply: %d %s", code, body)
			}
			if _, ok := s.node.FSM().Lookup(fsm.Exact, "http://127.0.0.1:9/r", "t"); !ok {
				t.Fatal("the signed apply was not applied")
			}
		})
	}
}

// TestSignedPeerRequestIsAcceptedOnce: a captured request cannot be
// replayed, sent to another node, or used outside its time window, and a
// request must carry the body it was signed for.
func TestSignedPeerRequestIsAcceptedOnce(t *testing.T) {
	const secret = "s3cret"
	s := startSingle(t, secret, nil)
	sub := mustJSON(t, fsm.Command{Op: fsm.OpSubscribeExact, ID: "replayed", URL: "http://127.0.0.1:9/r", Topic: []byte("t")})
	signed := signFor(secret, "solo", "/cluster/apply", sub, time.Now())
	var captured http.Header = http.Header{}
	signed(captured)
	if code, body := do(t, s.peerRequest(t, "/cluster/apply", sub, func(h http.Header) { copyHeader(h, captured) })); code != http.StatusOK {
		t.Fatalf("first request: %d %s", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	unsub := fsm.Subscription{Kind: fsm.Exact, URL: "http://127.0.0.1:9/r", Key: "t"}.Unsubscribe()
	if _, err := s.node.Apply(ctx, unsub); err != nil {
		t.Fatal(err)
	}
	remove := mustJSON(t, removeRequest{ID: "ghost"})
	// A body other than the signed one, of the same length.
	forged := bytes.Repeat([]byte(" "), len(sub))
	copy(forged, `{"op":1,"id":"forged","url":"http://127.0.0.1:9/r","topic":"dA=="}`)
	tests := []struct {
		name string
		path string
		body []byte
		sign func(http.Header)
		want int
	}{
		{"replayed apply", "/cluster/apply", sub, func(h http.Header) { copyHeader(h, captured) }, 403},
		{"meant for another node", "/cluster/apply", sub, signFor(secret, "n2", "/cluster/apply", sub, time.Now()), 403},
		{"meant for no node", "/cluster/apply", sub, signFor(secret, "", "/cluster/apply", sub, time.Now()), 403},
		{"signed for another path", "/cluster/apply", remove, signFor(secret, "solo", "/cluster/remove", remove, time.Now()), 403},
		{"stale", "/cluster/apply", sub, signFor(secret, "solo", "/cluster/apply", sub, time.Now().Add(-3*time.Minute)), 403},
		{"from the future", "/cluster/apply", sub, signFor(secret, "solo", "/cluster/apply", sub, time.Now().Add(3*time.Minute)), 403},
		{"dated before the node started", "/cluster/apply", sub,
			signFor(secret, "solo", "/cluster/apply", sub, s.node.verify.startedAt().Add(-time.Millisecond)), 403},
		{"another body of the signed length", "/cluster/apply", forged, signFor(secret, "solo", "/cluster/apply", sub, time.Now()), 403},
	}
	for _, tc := range tests {
		code, body := do(t, s.peerRequest(t, tc.path, tc.body, tc.sign))
		if code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
	}
	s.unchanged(t)
	// A remove, then its replay.
	removeHeaders := http.Header{}
	signFor(secret, "solo", "/cluster/remove", remove, time.Now())(removeHeaders)
	for i, want := range []int{http.StatusOK, http.StatusForbidden} {
		code, body := do(t, s.peerRequest(t, "/cluster/remove", remove, func(h http.Header) { copyHeader(h, removeHeaders) }))
		if code != want {
			t.Fatalf("remove #%d: %d %s, want %d", i+1, code, body, want)
		}
	}
}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = append([]string(nil), v...)
	}
}

// TestReplayedJoinIsRefused: in a real three-node cluster, a member added
// by a signed join and then removed does not come back when the captured
// join is sent again, to the same node or another.
func TestReplayedJoinIsRefused(t *testing.T) {
	nodes := startInProcess(t, 3)
	// A member that is not the leader forwards the join: it needs the
	// leader's address, replicated just after start.
	for _, p := range nodes {
		waitUntil(t, "every member's address", func() bool { return len(p.node.FSM().Nodes()) == 3 })
	}
	join := mustJSON(t, fsm.NodeInfo{ID: "extra", HTTP: "127.0.0.1:9", Raft: lonelypsdtest.FreeAddr(t)})
	target := nodes[0]
	captured := http.Header{}
	signPeer(captured, []byte("test-secret"), http.MethodPost, "/cluster/join", target.node.ID(), join, time.Now())
	send := func(p *inProcess) int {
		req, err := http.NewRequest(http.MethodPost, "http://"+p.http+"/cluster/join", bytes.NewReader(join))
		if err != nil {
			t.Fatal(err)
		}
		copyHeader(req.Header, captured)
		code, _ := do(t, req)
		return code
	}
	if code := send(target); code != http.StatusOK {
		t.Fatalf("join: %d", code)
	}
	members := func() int { return len(target.node.Status().Members) }
	waitUntil(t, "four members", func() bool { return members() == 4 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := NewClient("test-secret").Remove(ctx, target.http, "extra"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "three members", func() bool { return members() == 3 })
	for _, p := range nodes {
		if code := send(p); code != http.StatusForbidden {
			t.Errorf("replayed join at %s: %d, want 403", p.node.ID(), code)
		}
	}
	for _, p := range nodes {
		if n := len(p.node.Status().Members); n != 3 {
			t.Errorf("%s has %d members after the replay", p.node.ID(), n)
		}
	}
}

// TestLargeBodyRefusedBeforeRead: a 64 MiB body that is unsigned, wrongly
// signed, or signed but over its endpoint's limit is answered without
// being read: the server reads a few KiB and closes the connection.
func TestLargeBodyRefusedBeforeRead(t *testing.T) {
	const secret = "s3cret"
	const size = 64 << 20
	s := startSingle(t, secret, nil)
	overLimit := func(path string) http.Header {
		h := http.Header{}
		setPeerHeaders(h, []byte(secret), peerStamp{
			method: http.MethodPost, path: path, target: "solo", ms: time.Now().UnixMilli(), nonce: newNonce(),
			length: size, digest: sha256.Sum256(nil),
		})
		return h
	}
	badMAC := http.Header{}
	signPeer(badMAC, []byte("wrong"), http.MethodPost, "/cluster/apply", "solo", nil, time.Now())
	badMAC.Set(peerBodyHeader, fmt.Sprintf("%d:%x", size, sha256.Sum256(nil)))
	tests := []struct {
		name   string
		path   string
		header http.Header
		want   int
	}{
		{"unsigned apply", "/cluster/apply", http.Header{}, http.StatusForbidden},
		{"wrongly signed apply", "/cluster/apply", badMAC, http.StatusForbidden},
		{"signed join over its limit", "/cluster/join", overLimit("/cluster/join"), http.StatusRequestEntityTooLarge},
		{"signed subscriptions over its limit", "/cluster/subscriptions", overLimit("/cluster/subscriptions"), http.StatusRequestEntityTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := s.read.Load()
			code, written := lonelypsdtest.SendLarge(t, s.http, tc.path, tc.header, size)
			if code != tc.want {
				t.Fatalf("answer %d, want %d", code, tc.want)
			}
			if read := s.read.Load() - before; read > 1<<20 {
				t.Fatalf("the server read %d bytes of the request", read)
			}
			if written >= size {
				t.Fatalf("the whole body was sent (%d bytes): the connection stayed open", written)
			}
		})
	}
	s.unchanged(t)
}

// TestSecretlessNodeGeneratesAndKeepsItsSecret: a lone node without a
// configured secret writes one (0600) in its data folder and uses the
// same one after a restart.
func TestSecretlessNodeGeneratesAndKeepsItsSecret(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := Config{
		NodeID: "solo", DataDir: dir, Bootstrap: true, Logger: slog.New(slog.DiscardHandler),
	}
	var secrets []string
	for range 2 {
		cfg.RaftAddr, cfg.AdvertiseHTTP = lonelypsdtest.FreeAddr(t), lonelypsdtest.FreeAddr(t)
		node, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, node.cfg.Secret)
		if err := node.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if secrets[0] == "" || secrets[0] != secrets[1] {
		t.Fatalf("secrets of the two runs: %q", secrets)
	}
	if len(secrets[0]) != 86 {
		t.Fatalf("secret of %d characters, want 86 (64 bytes of url-safe base64)", len(secrets[0]))
	}
	fi, err := os.Stat(filepath.Join(dir, GeneratedSecretFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v", fi.Mode().Perm())
	}
	if got, err := GeneratedSecret(dir); err != nil || got != secrets[0] {
		t.Fatalf("GeneratedSecret: %q, %v", got, err)
	}
}

// TestClusterWithoutSecretRefusesToStart: a node that forms a cluster
// with others has no secret to generate; it says where to put one.
func TestClusterWithoutSecretRefusesToStart(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"join", func(c *Config) { c.Join = []string{lonelypsdtest.FreeAddr(t)} }},
		{"bootstrap-expect", func(c *Config) { c.BootstrapExpect = 3 }},
	}
	for _, tc := range tests {
		dir := t.TempDir()
		cfg := Config{NodeID: "n1", RaftAddr: lonelypsdtest.FreeAddr(t), DataDir: dir, AdvertiseHTTP: lonelypsdtest.FreeAddr(t), Logger: slog.New(slog.DiscardHandler)}
		tc.mod(&cfg)
		node, err := Open(cfg)
		if err == nil {
			node.Close()
			t.Fatalf("%s: started without a secret", tc.name)
		}
		if !errors.Is(err, ErrNoClusterSecret) {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for _, want := range []string{`"cluster" key`, "--cluster-secret-file", "lonelypsd setup"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: the message %q does not name %s", tc.name, err, want)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, GeneratedSecretFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: a secret was generated: %v", tc.name, err)
		}
	}
}

func TestNonceCache(t *testing.T) {
	c := newNonceCache(3, 1000)
	steps := []struct {
		nonce     string
		ms, now   int64
		fresh     bool
		wantFloor int64
	}{
		{"a", 100, 100, true, -1 << 62},
		{"a", 100, 200, false, -1 << 62}, // replay
		{"b", 150, 200, true, -1 << 62},
		{"c", 160, 200, true, -1 << 62},
		{"d", 170, 200, true, 100},    // full: "a" forgotten, the floor rises to its time
		{"e", 100, 200, false, 100},   // at the floor: refused although never seen
		{"a", 100, 200, false, 100},   // the forgotten nonce stays refused
		{"f", 900, 1200, true, 100},   // "a".."d" are past the window and go
		{"b", 150, 1200, true, 100},   // fresh to the cache; the time check refuses it
		{"f", 900, 1300, false, 100},  // still remembered
		{"g", 2000, 2500, true, 100},  // window slides on
		{"f", 900, 2500, true, 100},   // forgotten past the window
		{"h", 2001, 2500, true, 100},  //
		{"i", 2002, 2500, true, 2000}, // full again: "g" forgotten
		{"j", 2003, 2500, true, 2000}, // "f" forgotten, the floor stays
	}
	for i, s := range steps {
		if got := c.use(s.nonce, s.ms, s.now); got != s.fresh {
			t.Fatalf("step %d (%s at %d): fresh %v, want %v", i, s.nonce, s.ms, got, s.fresh)
		}
		if c.floor != s.wantFloor {
			t.Fatalf("step %d: floor %d, want %d", i, c.floor, s.wantFloor)
		}
		if len(c.seen) > 3 {
			t.Fatalf("step %d: %d nonces kept", i, len(c.seen))
		}
	}
}

// TestPeerVerifierRefusesMalformedHeaders: every way a signature's
// headers can be malformed is a refusal, never a panic.
func TestPeerVerifierRefusesMalformedHeaders(t *testing.T) {
	secret := []byte("s3cret")
	now := time.Now()
	good := func() http.Header {
		h := http.Header{}
		signPeer(h, secret, http.MethodPost, "/cluster/join", "solo", []byte("{}"), now)
		return h
	}
	tests := []struct {
		name string
		edit func(h http.Header)
		ok   bool
	}{
		{"valid", func(http.Header) {}, true},
		{"no signature", func(h http.Header) { h.Del(peerAuthHeader) }, false},
		{"no target", func(h http.Header) { h.Del(peerTargetHeader) }, false},
		{"no body header", func(h http.Header) { h.Del(peerBodyHeader) }, false},
		{"time not a number", func(h http.Header) { h.Set(peerAuthHeader, "x"+h.Get(peerAuthHeader)) }, false},
		{"nonce too short", func(h http.Header) {
			p := strings.SplitN(h.Get(peerAuthHeader), ":", 3)
			h.Set(peerAuthHeader, p[0]+":ab:"+p[2])
		}, false},
		{"mac not base64", func(h http.Header) { h.Set(peerAuthHeader, h.Get(peerAuthHeader)+"!") }, false},
		{"mac truncated", func(h http.Header) { v := h.Get(peerAuthHeader); h.Set(peerAuthHeader, v[:len(v)-8]) }, false},
		{"negative length", func(h http.Header) { h.Set(peerBodyHeader, "-1:"+strings.Repeat("0", 64)) }, false},
		{"digest not hex", func(h http.Header) { h.Set(peerBodyHeader, "2:"+strings.Repeat("z", 64)) }, false},
		{"digest short", func(h http.Header) { h.Set(peerBodyHeader, "2:abcd") }, false},
		{"other length", func(h http.Header) {
			_, d, _ := strings.Cut(h.Get(peerBodyHeader), ":")
			h.Set(peerBodyHeader, "3:"+d)
		}, false},
	}
	for _, tc := range tests {
		v := newPeerVerifier(secret, "solo", now.Add(-time.Second))
		h := good()
		tc.edit(h)
		if _, err := v.check(h, http.MethodPost, "/cluster/join", now); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func prefixes(t *testing.T, s string) []netip.Prefix {
	t.Helper()
	var p Prefixes
	if err := p.Set(s); err != nil {
		t.Fatal(err)
	}
	return p
}

// fixedAddrs stands in for the machine's interface addresses.
func fixedAddrs(addrs ...string) func() ([]netip.Addr, error) {
	return func() ([]netip.Addr, error) {
		out := make([]netip.Addr, 0, len(addrs))
		for _, a := range addrs {
			out = append(out, netip.MustParseAddr(a))
		}
		return out, nil
	}
}

// names resolves a fixed set of host names; any other name fails.
func names(m map[string][]string) func(context.Context, string) ([]netip.Addr, error) {
	return func(_ context.Context, host string) ([]netip.Addr, error) {
		as, ok := m[host]
		if !ok {
			return nil, fmt.Errorf("no such host %q", host)
		}
		out := make([]netip.Addr, 0, len(as))
		for _, a := range as {
			out = append(out, netip.MustParseAddr(a))
		}
		return out, nil
	}
}

func isInternal(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Host == "127.0.0.1:3003" && u.Path == "/v1/receive_for_websockets" && u.Query().Has("node")
}

func TestCheckURL(t *testing.T) {
	base := func() Config {
		return Config{
			OwnListeners:   []string{"127.0.0.1:3003", ":3004", "[::]:3005"},
			Exempt:         isInternal,
			InterfaceAddrs: fixedAddrs("127.0.0.1", "::1", "10.9.9.9"),
		}
	}
	withAllow := func(s string) func(*Config) { return func(c *Config) { c.Allow = prefixes(t, s) } }
	withDeny := func(s string) func(*Config) { return func(c *Config) { c.Deny = prefixes(t, s) } }
	token := func(c *Config) { c.TokenAuth = true }
	both := func(fs ...func(*Config)) func(*Config) {
		return func(c *Config) {
			for _, f := range fs {
				f(c)
			}
		}
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		url  string
		want string // substring of the error; "" = allowed
	}{
		{"cloud metadata", nil, "http://169.254.169.254/latest/meta-data", "link-local address 169.254.169.254 is not allowed (--subscriber-allow-cidr"},
		{"link-local v6", nil, "http://[fe80::1]:8080/x", "link-local"},
		{"link-local v6 with zone", nil, "http://[fe80::1%25eth0]:8080/x", "link-local"},
		{"v4-mapped link-local", nil, "http://[::ffff:169.254.169.254]/", "link-local address 169.254.169.254"},
		{"unspecified v4", nil, "http://0.0.0.0:8080/", "unspecified"},
		{"unspecified v6", nil, "http://[::]:8080/", "unspecified"},
		{"this network", nil, "http://0.1.2.3/", "unspecified"},
		{"multicast v4", nil, "http://224.0.0.1/", "multicast"},
		{"multicast v6", nil, "http://[ff02::1]/", "multicast"},
		{"broadcast", nil, "http://255.255.255.255/", "broadcast"},
		{"own API listener", nil, "http://127.0.0.1:3003/v1/notify", "own API or Raft listener"},
		{"own wildcard listener on loopback", nil, "http://127.0.0.1:3004/", "own API or Raft listener"},
		{"own wildcard listener on v6 loopback", nil, "http://[::1]:3004/", "own API or Raft listener"},
		{"own wildcard listener on an interface", nil, "http://10.9.9.9:3004/", "own API or Raft listener"},
		{"own v6 wildcard listener", nil, "http://10.9.9.9:3005/", "own API or Raft listener"},
		{"wildcard port on another host", nil, "http://10.9.9.8:3004/", ""},
		{"default port of own listener", nil, "http://127.0.0.1/", ""},
		{"own internal websocket row", nil, "http://127.0.0.1:3003/v1/receive_for_websockets?node=n1&inc=ab", ""},
		{"own listener, internal path without node", nil, "http://127.0.0.1:3003/v1/receive_for_websockets", "own API or Raft listener"},
		{"loopback", nil, "http://127.0.0.1:9000/hook", ""},
		{"loopback v6", nil, "http://[::1]:9000/hook", ""},
		{"private", nil, "http://10.1.2.3/hook", ""},
		{"private 192.168", nil, "http://192.168.1.1:8080/hook", ""},
		{"public https", nil, "https://203.0.113.5/hook", ""},
		{"host name passes until connect", nil, "http://metadata.google.internal/computeMetadata/v1/", ""},
		{"not a URL", nil, "::::", ""},

		{"allow re-opens one address", withAllow("169.254.169.254"), "http://169.254.169.254/", ""},
		{"allow of one address leaves the rest", withAllow("169.254.169.254"), "http://169.254.1.1/", "link-local"},
		{"allow range", withAllow("169.254.0.0/16,fe80::/10"), "http://[fe80::1]/", ""},
		{"allow never opens own listener", withAllow("127.0.0.0/8"), "http://127.0.0.1:3003/", "own API or Raft listener"},
		{"deny a private range", withDeny("10.0.0.0/8"), "http://10.1.2.3/", "10.1.2.3 is in --subscriber-deny-cidr 10.0.0.0/8"},
		{"deny loopback", withDeny("127.0.0.0/8,::1"), "http://[::1]:9000/", "--subscriber-deny-cidr ::1/128"},
		{"deny with longer allow", both(withDeny("10.0.0.0/8"), withAllow("10.1.0.0/16")), "http://10.1.2.3/", ""},
		{"deny with longer allow, outside it", both(withDeny("10.0.0.0/8"), withAllow("10.1.0.0/16")), "http://10.2.0.1/", "--subscriber-deny-cidr 10.0.0.0/8"},
		{"locked down: allowed subnet", both(withDeny("0.0.0.0/0,::/0"), withAllow("10.20.0.0/16")), "http://10.20.3.4/", ""},
		{"locked down: loopback", both(withDeny("0.0.0.0/0,::/0"), withAllow("10.20.0.0/16")), "http://127.0.0.1:9000/", "--subscriber-deny-cidr 0.0.0.0/0"},
		{"same range allowed and denied", both(withDeny("10.0.0.0/8"), withAllow("10.0.0.0/8")), "http://10.1.2.3/", "--subscriber-deny-cidr"},
		{"longer deny inside allow", both(withAllow("169.254.0.0/16"), withDeny("169.254.169.254/32")), "http://169.254.169.254/", "--subscriber-deny-cidr 169.254.169.254/32"},
		{"v4-mapped deny range", withDeny("::ffff:10.0.0.0/104"), "http://10.1.2.3/", "--subscriber-deny-cidr 10.0.0.0/8"},

		{"token over http to private", token, "http://10.1.2.3/hook", "token in clear"},
		{"token over http to a name", token, "http://sub.example/hook", "--allow-token-over-http"},
		{"token over http to loopback", token, "http://127.0.0.1:9000/hook", ""},
		{"token over http to localhost", token, "http://LocalHost.:9000/hook", ""},
		{"token over http to v6 loopback", token, "http://[::1]:9000/hook", ""},
		{"token over https", token, "https://sub.example/hook", ""},
		{"token over http opted in", both(token, func(c *Config) { c.AllowTokenOverHTTP = true }), "http://10.1.2.3/hook", ""},
		{"token over https still checks addresses", token, "https://169.254.169.254/", "link-local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			if tc.mod != nil {
				tc.mod(&cfg)
			}
			p, err := New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = p.CheckURL(tc.url)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("CheckURL(%s) = %v, want allowed", tc.url, err)
			case tc.want != "" && err == nil:
				t.Fatalf("CheckURL(%s) allowed, want refusal with %q", tc.url, tc.want)
			case tc.want != "":
				if !errors.Is(err, ErrDenied) {
					t.Errorf("error %v does not wrap ErrDenied", err)
				}
				if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "subscriber URL ") {
					t.Errorf("error %q, want it to name the URL and contain %q", err, tc.want)
				}
			}
		})
	}
}

func TestNilPolicyAllows(t *testing.T) {
	var p *Policy
	var checker interface{ CheckURL(string) error } = p
	if err := checker.CheckURL("http://169.254.169.254/"); err != nil || p.Exempt("http://x/") {
		t.Fatalf("nil policy: %v", err)
	}
}

func TestCheckURLShortensLongURLs(t *testing.T) {
	p, err := New(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	err = p.CheckURL("http://169.254.169.254/" + strings.Repeat("a", 60000))
	if err == nil || len(err.Error()) > 400 {
		t.Fatalf("error of %d bytes: %.100v", len(fmt.Sprint(err)), err)
	}
}

func TestNewRefusesBadListeners(t *testing.T) {
	for _, l := range []string{"no-port", "127.0.0.1:99999", "unknown.test:80"} {
		_, err := New(context.Background(), Config{OwnListeners: []string{l}, LookupIP: names(nil)})
		if err == nil || !strings.Contains(err.Error(), l) {
			t.Errorf("listener %q: err %v, want one naming it", l, err)
		}
	}
}

func TestPrefixesFlag(t *testing.T) {
	var p Prefixes
	for _, v := range []string{"10.0.0.0/8, 169.254.169.254", "fd00::/8", "10.1.2.3/16"} {
		if err := p.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := p.String(), "10.0.0.0/8,169.254.169.254/32,fd00::/8,10.1.0.0/16"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "fe80::1%eth0"} {
		if err := p.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}

// countingServer counts the requests that reach it.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// TestDialChecksResolvedAddresses connects through real sockets: names
// resolve (through the injected lookup) to the node's own listener, to a
// link-local address, or to both an allowed and a denied address; only
// the allowed name may connect, and the own listener never sees a request.
func TestDialChecksResolvedAddresses(t *testing.T) {
	own, ownHits := countingServer(t)
	other, otherHits := countingServer(t)
	ownAddr := own.Listener.Addr().String()
	_, ownPort, _ := net.SplitHostPort(ownAddr)
	_, otherPort, _ := net.SplitHostPort(other.Listener.Addr().String())

	for _, tc := range []struct {
		name    string
		token   bool
		url     string
		want    string // "" = connects and is answered
		reaches *atomic.Int32
	}{
		{"name of own listener", false, "http://own.test:" + ownPort + "/x", "own API or Raft listener", nil},
		{"literal own listener", false, "http://" + ownAddr + "/x", "own API or Raft listener", nil},
		{"name of link-local address", false, "http://meta.test:" + otherPort + "/", "link-local", nil},
		{"one of several addresses denied", false, "http://mixed.test:" + otherPort + "/", "link-local", nil},
		{"allowed name", false, "http://ok.test:" + otherPort + "/", "", otherHits},
		{"token: name of a non-loopback address", true, "http://far.test:" + otherPort + "/", "token in clear", nil},
		{"token: name of loopback", true, "http://ok.test:" + otherPort + "/", "", otherHits},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(context.Background(), Config{
				OwnListeners: []string{ownAddr},
				TokenAuth:    tc.token,
				LookupIP: names(map[string][]string{
					"own.test":   {"127.0.0.1"},
					"meta.test":  {"169.254.169.254"},
					"mixed.test": {"127.0.0.1", "169.254.169.254"},
					"ok.test":    {"127.0.0.1"},
					"far.test":   {"192.0.2.10"},
				}),
			})
			if err != nil {
				t.Fatal(err)
			}
			tr := &http.Transport{DialContext: p.DialContext}
			defer tr.CloseIdleConnections()
			before := otherHits.Load()
			u, _ := url.Parse(tc.url)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(p.Context(ctx, u), http.MethodPost, tc.url, strings.NewReader("body"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("request refused: %v", err)
				}
				resp.Body.Close()
				if got := tc.reaches.Load() - before; got != 1 {
					t.Fatalf("server saw %d requests, want 1", got)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatalf("request to %s went through", tc.url)
			}
			if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrDenied with %q", err, tc.want)
			}
			if ownHits.Load() != 0 || otherHits.Load() != before {
				t.Fatalf("a refused request reached a server (own %d, other %d)", ownHits.Load(), otherHits.Load()-before)
			}
		})
	}
}

// TestControlChecksTheDialledAddress: the last check runs on the socket's
// destination, whatever resolved it; a dial without the request's mark is
// taken for plain http.
func TestControlChecksTheDialledAddress(t *testing.T) {
	p, err := New(context.Background(), Config{OwnListeners: []string{"127.0.0.1:3003"}, TokenAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	https, _ := url.Parse("https://sub.example/")
	for _, tc := range []struct {
		ctx  context.Context
		addr string
		ok   bool
	}{
		{context.Background(), "169.254.169.254:80", false},
		{context.Background(), "127.0.0.1:3003", false},
		{context.Background(), "[::ffff:127.0.0.1]:3003", false},
		{context.Background(), "127.0.0.1:9000", true},
		{context.Background(), "192.0.2.10:80", false}, // unmarked: plain http with a token
		{p.Context(context.Background(), https), "192.0.2.10:443", true},
		{context.Background(), "not an address", false},
	} {
		err := p.control(tc.ctx, "tcp", tc.addr, nil)
		if (err == nil) != tc.ok {
			t.Errorf("control(%s) = %v, want ok=%v", tc.addr, err, tc.ok)
		}
	}
}

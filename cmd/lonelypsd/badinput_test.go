package main

import (
	"crypto/sha512"
	"encoding/binary"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

func TestBadInputIsRefusedAndNodeStaysUp(t *testing.T) {
	node, ctx, c := startNodeClient(t, t.TempDir())
	s := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())
	if err := c.SubscribeExact(ctx, s.Receive, []byte("t"), ""); err != nil {
		t.Fatal(err)
	}
	msg := []byte("hello")
	sum := sha512.Sum512(msg)
	good := notifyBody(t, []byte("t"), msg, sum, uint64(len(msg)))
	sub, err := wire.AppendSubscribeExact(nil, wire.SubscribeExact{URL: s.Receive, Topic: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	badUTF8 := []byte{0, 4, 'h', 0xff, 0xfe, 'x', 0, 1, 'x', 0, 0, 0, 0}
	glob := func(url, g string) []byte {
		var b []byte
		b = binary.BigEndian.AppendUint16(b, uint16(len(url)))
		b = append(b, url...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(g)))
		b = append(b, g...)
		return append(b, 0, 0, 0, 0)
	}

	tests := []struct {
		name   string
		method string
		path   string
		body   []byte
		want   int
	}{
		{"notify truncated header", "POST", "/v1/notify", good[:10], 400},
		{"notify empty body", "POST", "/v1/notify", nil, 400},
		{"notify message shorter than declared", "POST", "/v1/notify", good[:len(good)-2], 400},
		{"notify message longer than declared", "POST", "/v1/notify", append(append([]byte(nil), good...), 'x'), 400},
		{"notify wrong sha512", "POST", "/v1/notify", notifyBody(t, []byte("t"), msg, sha512.Sum512([]byte("other")), uint64(len(msg))), 400},
		{"notify length overruns body", "POST", "/v1/notify", notifyBody(t, []byte("t"), msg, sum, 1<<40), 400},
		{"notify topic length overruns body", "POST", "/v1/notify", []byte{0xff, 0xff, 'a'}, 400},
		{"subscribe truncated", "POST", "/v1/subscribe/exact", sub[:len(sub)-3], 400},
		{"subscribe invalid utf-8 url", "POST", "/v1/subscribe/exact", badUTF8, 400},
		{"subscribe url not http", "POST", "/v1/subscribe/exact", glob("ftp://x/y", "a"), 400},
		{"subscribe glob invalid utf-8", "POST", "/v1/subscribe/glob", glob(s.Receive, "a\xff*"), 400},
		{"subscribe relative url", "POST", "/v1/subscribe/glob", glob("/v1/receive", "a*"), 400},
		{"subscribe oversized body", "POST", "/v1/subscribe/exact", make([]byte, 1<<20), 413},
		{"subscribe url and topic beyond what the table can key", "POST", "/v1/subscribe/exact", glob(s.Receive, strings.Repeat("t", 40000)), 400},
		{"subscribe glob beyond what the table can key", "POST", "/v1/subscribe/glob", glob(s.Receive, strings.Repeat("g", 40000)+"*"), 400},
		{"check truncated", "POST", "/v1/check_subscriptions", []byte{0, 5, 1}, 400},
		{"set wrong etag format", "POST", "/v1/set_subscriptions", append([]byte{0, 0, 0, 1, 'h', 1}, make([]byte, 72)...), 400},
		{"unknown path", "POST", "/v1/nope", nil, 404},
		{"trailing slash", "POST", "/v1/notify/", good, 404},
		{"wrong method", "GET", "/v1/notify", nil, 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, _ := lonelypsdtest.Request(t, tc.method, node.HTTP+tc.path, "", tc.body); code != tc.want {
				t.Fatalf("status %d, want %d", code, tc.want)
			}
		})
	}
	if got := len(s.Received()); got != 0 {
		t.Fatalf("refused notifies delivered %d messages", got)
	}
	// Still up, and the store intact.
	if n, err := c.Notify(ctx, []byte("t"), msg); err != nil || n != 1 {
		t.Fatalf("good notify after bad input: %d, %v", n, err)
	}
	if !strings.Contains(node.Logs(), "disagrees with Content-Length") {
		t.Errorf("no readable reason logged for the length mismatch:\n%s", node.Logs())
	}
}

// TestMisbehavingSubscribers: one that never answers, one that answers
// garbage, one that closes the connection. Each is a failed delivery;
// the healthy subscriber is counted and the node stays up.
func TestMisbehavingSubscribers(t *testing.T) {
	node, ctx, c := startNodeClient(t, t.TempDir(), "--delivery-timeout", "500ms")
	good := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())

	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	handlers := map[string]http.HandlerFunc{
		"silent":  func(w http.ResponseWriter, r *http.Request) { <-hang },
		"garbage": func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("\x00\x08\xff")) },
		"hangup": func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		},
		"html": func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "<html>oops</html>", http.StatusBadGateway)
		},
	}
	for name, h := range handlers {
		if err := c.SubscribeExact(ctx, lonelypsdtest.Serve(t, h)+"/"+name, []byte("t"), ""); err != nil {
			t.Fatal(err)
		}
	}
	// A subscriber on a port where nobody listens.
	if err := c.SubscribeExact(ctx, "http://127.0.0.1:1/v1/receive", []byte("t"), ""); err != nil {
		t.Fatal(err)
	}
	if err := c.SubscribeExact(ctx, good.Receive, []byte("t"), ""); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, err := c.Notify(ctx, []byte("t"), []byte("m"))
	if err != nil || n != 1 {
		t.Fatalf("notify: %d, %v; want 1", n, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("notify took %s: the silent subscriber was not cut off", d)
	}
	if code, _ := lonelypsdtest.Get(t, node.HTTP+"/healthz"); code != http.StatusOK {
		t.Fatalf("node unhealthy after bad subscribers: %d", code)
	}
}

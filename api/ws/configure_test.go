package ws

import (
	"context"
	"crypto/sha512"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
	"github.com/lonelypsd/lonelypsd/api/wsproto"
)

// TestFirstMessageBounded checks what a peer that has not configured yet
// can make the node hold: a first message past maxConfigureMessage is
// refused with 1009 as soon as the limit is crossed, and a peer that sends
// nothing is closed when ConfigureTimeout ends.
func TestFirstMessageBounded(t *testing.T) {
	const short = 300 * time.Millisecond
	cases := []struct {
		name    string
		timeout time.Duration
		// send writes the first message, or part of it, and returns.
		send func(ctx context.Context, t *testing.T, ws *websocket.Conn)
		want websocket.StatusCode
		// minAge is how long the node must keep the connection open.
		minAge time.Duration
	}{
		{name: "1 MiB first message", timeout: time.Minute, want: websocket.StatusMessageTooBig,
			send: func(ctx context.Context, t *testing.T, ws *websocket.Conn) {
				// The node stops reading part-way, so the write may fail.
				go func() { _ = ws.Write(ctx, websocket.MessageBinary, make([]byte, 1<<20)) }()
			}},
		{name: "first message never finished", timeout: time.Minute, want: websocket.StatusMessageTooBig,
			// Four times the limit is sent and the message is left open: a
			// node that buffered the whole message would wait for the rest
			// until the (one-minute) CONFIGURE timeout.
			send: func(ctx context.Context, t *testing.T, ws *websocket.Conn) {
				w, err := ws.Writer(ctx, websocket.MessageBinary)
				if err != nil {
					t.Fatal(err)
				}
				// The node refuses the frame on its header, so the write
				// may fail.
				_, _ = w.Write(make([]byte, 4*maxConfigureMessage))
			}},
		{name: "silent peer", timeout: short, want: websocket.StatusPolicyViolation, minAge: short,
			send: func(context.Context, *testing.T, *websocket.Conn) {}},
	}
	nodes := map[time.Duration]*testNode{}
	for _, tc := range cases {
		if nodes[tc.timeout] == nil {
			nodes[tc.timeout] = startTestNode(t, nodeOptions{ws: func(c *Config) { c.ConfigureTimeout = tc.timeout }})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := nodes[tc.timeout]
			ctx := ctxT(t)
			start := time.Now()
			ws, _, err := websocket.Dial(ctx, n.wsURL, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = ws.CloseNow() })
			tc.send(ctx, t, ws)
			(&rawConn{t: t, ws: ws}).expectClose(tc.want)
			if age := time.Since(start); age < tc.minAge {
				t.Errorf("closed after %v, before the %v timeout", age, tc.minAge)
			}
			waitFor(t, "the node to drop the connection", func() bool { return n.hub.Connections() == 0 })
		})
	}
}

// TestConfiguredConnectionTakesLargeMessages checks that CONFIGURE lifts
// the first-message limit and stops the CONFIGURE timer.
func TestConfiguredConnectionTakesLargeMessages(t *testing.T) {
	const timeout = 200 * time.Millisecond
	n := startTestNode(t, nodeOptions{hmac: true, ws: func(c *Config) { c.ConfigureTimeout = timeout }})
	r := n.dialRaw(false)
	// Outliving the CONFIGURE timer is the point here: nothing to wait on.
	time.Sleep(3 * timeout)
	p := randomBytes(t, 8*maxConfigureMessage)
	sum := sha512.Sum512(p)
	a, err := r.pair.Authorize(auth.Notify{Topic: []byte("big"), Identifier: []byte{7}, SHA512: sum})
	if err != nil {
		t.Fatal(err)
	}
	r.send(wsproto.Notify{Authorization: a, Identifier: []byte{7}, Topic: []byte("big"),
		CompressedLength: uint64(len(p)), DecompressedLength: uint64(len(p)), CompressedSHA512: sum, Payload: p})
	got, ok := r.read().(wsproto.ConfirmNotify)
	if !ok || string(got.Identifier) != "\x07" {
		t.Fatalf("answer to a %d-byte NOTIFY: %#v", len(p), got)
	}
}

// TestMaxMessageSize: a NOTIFY over Config.MaxMessageSize ends the
// connection with 1009, whether it arrives as it is or compressed (its
// declared decompressed length counts); one at the limit is delivered.
func TestMaxMessageSize(t *testing.T) {
	const limit = 64 << 10
	n := startTestNode(t, nodeOptions{ws: func(c *Config) { c.MaxMessageSize = limit }})
	cases := []struct {
		name     string
		opts     wsclient.Options
		size     int
		wantFail bool
	}{
		{"at the limit", wsclient.Options{}, limit, false},
		{"one byte over", wsclient.Options{}, limit + 1, true},
		{"compressed, over once decompressed", wsclient.Options{EnableZstd: true, CompressNotifies: true}, 4 * limit, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			c := n.dial(tc.opts)
			_, err := c.Notify(ctx, []byte("t"), make([]byte, tc.size))
			if !tc.wantFail {
				if err != nil {
					t.Fatalf("notify of %d bytes: %v", tc.size, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("notify of %d bytes accepted over a limit of %d", tc.size, limit)
			}
			select {
			case <-c.Done():
			case <-ctx.Done():
				t.Fatal("connection still open")
			}
			if got := websocket.CloseStatus(c.Err()); got != websocket.StatusMessageTooBig {
				t.Fatalf("closed with %v (%v), want 1009", got, c.Err())
			}
		})
	}
}

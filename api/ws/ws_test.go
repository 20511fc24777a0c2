package ws

import (
	"bytes"
	"crypto/sha512"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/klauspost/compress/zstd"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
	"github.com/lonelypsd/lonelypsd/api/wsproto"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
	"github.com/lonelypsd/lonelypsd/fsm"
)

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	lonelypsdtest.WaitFor(t, what, 10*time.Second, cond)
}

// paths are the two ways a node reaches its own websockets: in process,
// and by POSTing to itself as a peer does.
var paths = []struct {
	name     string
	overHTTP bool
}{{"in process", false}, {"over HTTP", true}}

// checkPath fails unless the node took the way o asks for to reach its
// own websockets.
func (n *testNode) checkPath(o nodeOptions) {
	n.t.Helper()
	if got := n.receives.Load(); (got > 0) != o.overHTTP {
		n.t.Fatalf("%d POSTs to %s; over HTTP: %t", got, PathReceive, o.overHTTP)
	}
}

// eachPath runs f with and without HMAC, for each of the paths.
func eachPath(t *testing.T, f func(*testing.T, nodeOptions)) {
	for _, hmac := range []bool{false, true} {
		for _, path := range paths {
			t.Run(fmt.Sprintf("hmac=%t/%s", hmac, path.name), func(t *testing.T) {
				f(t, nodeOptions{hmac: hmac, overHTTP: path.overHTTP})
			})
		}
	}
}

func TestSubscribeAndReceiveFromHTTPNotifier(t *testing.T) { eachPath(t, subscribeAndReceive) }

func subscribeAndReceive(t *testing.T, o nodeOptions) {
	n := startTestNode(t, o)
	ctx := ctxT(t)
	c := n.dial(wsclient.Options{})
	hc := n.client()

	if err := c.SubscribeExact(ctx, []byte("a/b")); err != nil {
		t.Fatal(err)
	}
	if err := c.SubscribeGlob(ctx, "a/*"); err != nil {
		t.Fatal(err)
	}
	// Confirmed means registered: one row per key of this process.
	if rows := n.rows(); len(rows) != 2 {
		t.Fatalf("rows after subscribing: %+v", rows)
	}

	// The topic matches the exact and the glob row: two deliveries
	// reach the hub, the connection takes it once, counted once.
	if got, err := hc.Notify(ctx, []byte("a/b"), []byte("one")); err != nil || got != 1 {
		t.Fatalf("notify a/b: %d, %v", got, err)
	}
	if m := next(t, c, 5*time.Second); string(m.Topic) != "a/b" || string(m.Data) != "one" || m.Parts != 1 {
		t.Fatalf("received %+v", m)
	}
	none(t, c)
	if got, err := hc.Notify(ctx, []byte("a/c/d"), []byte("two")); err != nil || got != 1 {
		t.Fatalf("notify a/c/d: %d, %v", got, err)
	}
	if m := next(t, c, 5*time.Second); string(m.Topic) != "a/c/d" || string(m.Data) != "two" {
		t.Fatalf("received %+v", m)
	}
	// A topic nobody holds.
	if got, err := hc.Notify(ctx, []byte("b"), []byte("x")); err != nil || got != 0 {
		t.Fatalf("notify b: %d, %v", got, err)
	}

	if err := c.UnsubscribeExact(ctx, []byte("a/b")); err != nil {
		t.Fatal(err)
	}
	if got, err := hc.Notify(ctx, []byte("a/b"), []byte("three")); err != nil || got != 1 {
		t.Fatalf("notify a/b after unsubscribing the exact topic: %d, %v", got, err)
	}
	if m := next(t, c, 5*time.Second); string(m.Data) != "three" {
		t.Fatalf("received %+v", m)
	}
	if err := c.UnsubscribeGlob(ctx, "a/*"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rows removed", func() bool { return len(n.rows()) == 0 })
	if got, err := hc.Notify(ctx, []byte("a/b"), []byte("four")); err != nil || got != 0 {
		t.Fatalf("notify after unsubscribing all: %d, %v", got, err)
	}
	none(t, c)

	// A closed connection gives its rows up.
	if err := c.SubscribeExact(ctx, []byte("z")); err != nil {
		t.Fatal(err)
	}
	if len(n.rows()) != 1 {
		t.Fatal("no row for z")
	}
	_ = c.Close()
	waitFor(t, "rows of a closed connection removed", func() bool { return len(n.rows()) == 0 })

	// A row of this process that no connection holds is removed
	// by the first notify that reaches it.
	orphan := fsm.Command{Op: fsm.OpSubscribeExact, URL: n.hub.ReceiveURL(), Topic: []byte("orphan")}
	if _, err := n.node.Apply(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	if got, err := hc.Notify(ctx, []byte("orphan"), []byte("x")); err != nil || got != 0 {
		t.Fatalf("notify orphan: %d, %v", got, err)
	}
	waitFor(t, "orphan row removed", func() bool { return len(n.rows()) == 0 })
	n.checkPath(o)
}

func TestWebsocketNotifier(t *testing.T) { eachPath(t, websocketNotifier) }

func websocketNotifier(t *testing.T, o nodeOptions) {
	n := startTestNode(t, o)
	ctx := ctxT(t)
	notifier := n.dial(wsclient.Options{Expanded: true})
	sub := n.dial(wsclient.Options{})
	hsub, hurl := httpSubscriber(t, n.clientAuth())

	if got, err := notifier.Notify(ctx, []byte("t"), nil); err != nil || got != 0 {
		t.Fatalf("notify with no subscriber: %d, %v", got, err)
	}
	if err := sub.SubscribeExact(ctx, []byte("t")); err != nil {
		t.Fatal(err)
	}
	if err := n.client().SubscribeExact(ctx, hurl, []byte("t"), ""); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		msg := []byte(fmt.Sprintf("message %d", i))
		if got, err := notifier.Notify(ctx, []byte("t"), msg); err != nil || got != 2 {
			t.Fatalf("notify: %d, %v; want 2 (one HTTP, one websocket)", got, err)
		}
		if m := next(t, sub, 5*time.Second); !bytes.Equal(m.Data, msg) {
			t.Fatalf("websocket received %q, want %q", m.Data, msg)
		}
	}
	got := hsub.Received()
	if len(got) != 5 || string(got[4].Message) != "message 4" {
		t.Fatalf("HTTP subscriber received %d messages", len(got))
	}
	// A notifier subscribed to its own topic receives its message.
	if err := notifier.SubscribeExact(ctx, []byte("t")); err != nil {
		t.Fatal(err)
	}
	if got, err := notifier.Notify(ctx, []byte("t"), []byte("self")); err != nil || got != 3 {
		t.Fatalf("notify: %d, %v; want 3", got, err)
	}
	if m := next(t, notifier, 5*time.Second); string(m.Data) != "self" {
		t.Fatalf("notifier received %q", m.Data)
	}
	n.checkPath(o)
}

// Large messages both ways: NOTIFY_STREAM in, RECEIVE_STREAM out in parts
// no larger than the configured message size, acknowledged part by part.
func TestLargeMessagesInParts(t *testing.T) {
	for _, tc := range []struct {
		name         string
		hmac, zstd   bool
		compressible bool
		overHTTP     bool
	}{
		{"none", false, false, false, false},
		{"hmac", true, false, false, false},
		{"hmac+zstd", true, true, true, false},
		{"zstd-incompressible", false, true, false, false},
		{"none over HTTP", false, false, false, true},
		{"hmac+zstd over HTTP", true, true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := nodeOptions{hmac: tc.hmac, overHTTP: tc.overHTTP}
			n := startTestNode(t, o)
			ctx := ctxT(t)
			opts := wsclient.Options{EnableZstd: tc.zstd, CompressNotifies: tc.zstd}
			notifier := n.dial(opts)
			sub := n.dial(opts)
			if err := sub.SubscribeExact(ctx, []byte("big")); err != nil {
				t.Fatal(err)
			}
			msg := randomBytes(t, 24<<20)
			if tc.compressible {
				// Half the bytes repeat: zstd shrinks it, not to nothing.
				copy(msg[len(msg)/2:], bytes.Repeat([]byte("lonelypsd "), len(msg)/20))
			}
			start := time.Now()
			if got, err := notifier.Notify(ctx, []byte("big"), msg); err != nil || got != 1 {
				t.Fatalf("websocket notify: %d, %v", got, err)
			}
			m := next(t, sub, 20*time.Second)
			t.Logf("24 MiB websocket to websocket in %s, %d parts, compressor %d", time.Since(start), m.Parts, m.Compressor)
			if !bytes.Equal(m.Data, msg) {
				t.Fatal("websocket received different bytes")
			}
			if m.MaxPart > DefaultOutgoingMaxMessage {
				t.Fatalf("a part of %d bytes exceeds %d", m.MaxPart, DefaultOutgoingMaxMessage)
			}
			if tc.compressible != (m.Compressor == compressorZstd) {
				t.Fatalf("compressor %d", m.Compressor)
			}
			if m.Compressor == 0 && m.Parts < 7 {
				t.Fatalf("%d parts for 24 MiB", m.Parts)
			}

			// From an HTTP notifier, twice, then a small message: the
			// counters stay in step after multi-part messages.
			for i := range 2 {
				msg[0] = byte(i)
				if got, err := n.client().Notify(ctx, []byte("big"), msg); err != nil || got != 1 {
					t.Fatalf("HTTP notify: %d, %v", got, err)
				}
				if m := next(t, sub, 20*time.Second); !bytes.Equal(m.Data, msg) {
					t.Fatal("websocket received different bytes")
				}
			}
			if got, err := n.client().Notify(ctx, []byte("big"), []byte("small")); err != nil || got != 1 {
				t.Fatalf("HTTP notify: %d, %v", got, err)
			}
			if m := next(t, sub, 5*time.Second); string(m.Data) != "small" {
				t.Fatalf("received %q", m.Data)
			}
			// The writer lets go of a body once its last part is written,
			// which can be just after the client has it.
			waitFor(t, "every body released from the memory budget", func() bool { return n.hub.bodies.Buffered() == 0 })
			n.checkPath(o)
		})
	}
}

// A 16 MiB message fits in one incoming websocket message; it goes out
// in parts of at most 3.5 MiB.
func TestSixteenMiBSingleNotify(t *testing.T) {
	n := startTestNode(t, nodeOptions{})
	ctx := ctxT(t)
	notifier := n.dial(wsclient.Options{MaxMessage: 17 << 20})
	sub := n.dial(wsclient.Options{})
	if err := sub.SubscribeExact(ctx, []byte("sixteen")); err != nil {
		t.Fatal(err)
	}
	msg := randomBytes(t, 16<<20)
	if got, err := notifier.Notify(ctx, []byte("sixteen"), msg); err != nil || got != 1 {
		t.Fatalf("notify: %d, %v", got, err)
	}
	m := next(t, sub, 20*time.Second)
	if !bytes.Equal(m.Data, msg) || m.Parts != 5 || m.MaxPart > DefaultOutgoingMaxMessage {
		t.Fatalf("received %d bytes in %d parts, largest %d", len(m.Data), m.Parts, m.MaxPart)
	}
}

func TestAuthFailuresClose(t *testing.T) {
	n := startTestNode(t, nodeOptions{hmac: true})
	ctx := ctxT(t)

	// A client with other secrets: CONFIGURE is refused.
	_, wrong := pairs(t, true)
	if c, err := wsclient.Dial(ctx, n.wsURL, wsclient.Options{Auth: wrong()}); err == nil {
		c.Close()
		t.Fatal("configure with the wrong secret accepted")
	}
	// No authorization at all.
	if c, err := wsclient.Dial(ctx, n.wsURL, wsclient.Options{Auth: auth.NonePair()}); err == nil {
		c.Close()
		t.Fatal("configure without authorization accepted")
	}

	// A subscribe signed for the wrong counter value.
	r := n.dialRaw(false)
	a, err := r.pair.Authorize(auth.SubscribeExact{URL: auth.WebsocketURL(r.nonce, -2), Topic: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	r.send(wsproto.SubscribeExact{Authorization: a, Topic: []byte("x")})
	r.expectClose(websocket.StatusPolicyViolation)

	// A replayed subscribe: the first is confirmed, the same bytes again
	// are refused (and would carry the wrong counter anyway).
	r = n.dialRaw(false)
	a, err = r.pair.Authorize(auth.SubscribeExact{URL: r.subURL(), Topic: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := wsproto.AppendMinimal(nil, wsproto.SubscribeExact{Authorization: a, Topic: []byte("x")})
	r.sendBytes(b)
	if _, ok := r.read().(wsproto.ConfirmSubscribeExact); !ok {
		t.Fatal("no confirmation")
	}
	r.sendBytes(b)
	r.expectClose(websocket.StatusPolicyViolation)

	// A notify whose signature covers another message.
	r = n.dialRaw(false)
	a, err = r.pair.Authorize(auth.Notify{Topic: []byte("x"), Identifier: []byte{1}, SHA512: sha512.Sum512([]byte("other"))})
	if err != nil {
		t.Fatal(err)
	}
	r.send(wsproto.Notify{Authorization: a, Identifier: []byte{1}, Topic: []byte("x"), CompressedLength: 2,
		DecompressedLength: 2, CompressedSHA512: sha512.Sum512([]byte("hi")), Payload: []byte("hi")})
	r.expectClose(websocket.StatusPolicyViolation)
}

func TestProtocolViolationsClose(t *testing.T) {
	n := startTestNode(t, nodeOptions{})
	ctx := ctxT(t)
	dial := func() *websocket.Conn {
		ws, _, err := websocket.Dial(ctx, n.wsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ws.CloseNow() })
		return ws
	}
	expect := func(ws *websocket.Conn, code websocket.StatusCode) {
		t.Helper()
		(&rawConn{t: t, ws: ws}).expectClose(code)
	}

	ws := dial()
	_ = ws.Write(ctx, websocket.MessageText, []byte("hello"))
	expect(ws, websocket.StatusProtocolError)

	ws = dial()
	b, _ := wsproto.AppendMinimal(nil, wsproto.SubscribeExact{Topic: []byte("x")})
	_ = ws.Write(ctx, websocket.MessageBinary, b)
	expect(ws, websocket.StatusProtocolError)

	ws = dial()
	_ = ws.Write(ctx, websocket.MessageBinary, []byte{0, 1})
	expect(ws, websocket.StatusProtocolError)

	cases := []struct {
		name string
		run  func(r *rawConn)
	}{
		{"duplicate subscribe", func(r *rawConn) {
			r.subscribe("x")
			r.read()
			r.subscribe("x")
		}},
		{"unsubscribe not held", func(r *rawConn) {
			a, _ := r.pair.Authorize(auth.SubscribeGlob{URL: r.subURL(), Glob: "x*"})
			r.send(wsproto.UnsubscribeGlob{Authorization: a, Glob: "x*"})
		}},
		{"second configure", func(r *rawConn) {
			r.send(wsproto.Configure{})
		}},
		{"acknowledgement of nothing", func(r *rawConn) {
			a, _ := r.pair.Authorize(auth.ConfirmReceive{Identifier: []byte{1, 2, 3, 4}, NumSubscribers: 1, URL: r.subURL()})
			r.send(wsproto.ConfirmReceive{Identifier: []byte{1, 2, 3, 4}, NumSubscribers: 1, Authorization: a})
		}},
		{"compressed notify without zstd", func(r *rawConn) {
			p := []byte("abc")
			sum := sha512.Sum512(p)
			a, _ := r.pair.Authorize(auth.Notify{Topic: []byte("x"), Identifier: []byte{1}, SHA512: sum})
			r.send(wsproto.Notify{Authorization: a, Identifier: []byte{1}, Topic: []byte("x"), Compressor: 1,
				CompressedLength: 3, DecompressedLength: 10, CompressedSHA512: sum, Payload: p})
		}},
		{"stream part out of order", func(r *rawConn) {
			p := []byte("abc")
			sum := sha512.Sum512([]byte("abcdef"))
			a, _ := r.pair.Authorize(auth.Notify{Topic: []byte("x"), Identifier: []byte{1}, SHA512: sum})
			r.send(wsproto.NotifyStream{Authorization: a, Identifier: []byte{1}, Payload: p,
				First: &wsproto.StreamFirst{Topic: []byte("x"), CompressedLength: 6, DecompressedLength: 6, CompressedSHA512: sum}})
			if _, ok := r.read().(wsproto.ContinueNotify); !ok {
				t.Error("no continue notify")
			}
			r.send(wsproto.NotifyStream{Authorization: a, Identifier: []byte{1}, PartID: 2, Payload: p})
		}},
		{"stream longer than declared", func(r *rawConn) {
			sum := sha512.Sum512([]byte("ab"))
			a, _ := r.pair.Authorize(auth.Notify{Topic: []byte("x"), Identifier: []byte{1}, SHA512: sum})
			r.send(wsproto.NotifyStream{Authorization: a, Identifier: []byte{1}, Payload: []byte("abc"),
				First: &wsproto.StreamFirst{Topic: []byte("x"), CompressedLength: 2, DecompressedLength: 2, CompressedSHA512: sum}})
		}},
		{"stream with a wrong hash", func(r *rawConn) {
			sum := sha512.Sum512([]byte("xyz"))
			a, _ := r.pair.Authorize(auth.Notify{Topic: []byte("x"), Identifier: []byte{1}, SHA512: sum})
			r.send(wsproto.NotifyStream{Authorization: a, Identifier: []byte{1}, Payload: []byte("abc"),
				First: &wsproto.StreamFirst{Topic: []byte("x"), CompressedLength: 3, DecompressedLength: 3, CompressedSHA512: sum}})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := n.dialRaw(false)
			r.t = t
			tc.run(r)
			r.expectClose(websocket.StatusProtocolError)
		})
	}
}

func TestExpandedHeadersAndZeroLengthValues(t *testing.T) {
	n := startTestNode(t, nodeOptions{hmac: true})
	ctx := ctxT(t)
	c := n.dial(wsclient.Options{Expanded: true})
	if err := c.SubscribeExact(ctx, []byte("e")); err != nil {
		t.Fatal(err)
	}
	// The empty message: one part with an empty payload, lengths 0 as
	// empty header values.
	if got, err := c.Notify(ctx, []byte("e"), nil); err != nil || got != 1 {
		t.Fatalf("notify: %d, %v", got, err)
	}
	if m := next(t, c, 5*time.Second); len(m.Data) != 0 || m.Parts != 1 {
		t.Fatalf("received %+v", m)
	}

	// Hand-made: CONFIRM_NOTIFY for no subscriber carries x-subscribers
	// as an empty value, CONTINUE_NOTIFY for part 0 an empty part id.
	r := n.dialRaw(false)
	p := []byte("abcdef")
	sum := sha512.Sum512(p)
	a, _ := r.pair.Authorize(auth.Notify{Topic: []byte("nobody"), Identifier: []byte{9}, SHA512: sum})
	r.send(wsproto.NotifyStream{Authorization: a, Identifier: []byte{9}, Payload: p[:3],
		First: &wsproto.StreamFirst{Topic: []byte("nobody"), CompressedLength: 6, DecompressedLength: 6, CompressedSHA512: sum}})
	_, raw, err := r.ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// flags, type 7, identifier 09, empty part id, auth, tracing
	if !bytes.HasPrefix(raw, []byte{0, 1, 0, 7, 0, 1, 9, 0, 0}) {
		t.Fatalf("continue notify %x", raw)
	}
	a, _ = r.pair.Authorize(auth.Notify{Topic: []byte("nobody"), Identifier: []byte{9}, SHA512: sum})
	r.send(wsproto.NotifyStream{Authorization: a, Identifier: []byte{9}, PartID: 1, Payload: p[3:]})
	_, raw, err = r.ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte{0, 1, 0, 6, 0, 1, 9, 0, 0}) {
		t.Fatalf("confirm notify %x", raw)
	}
}

func TestMissedNotices(t *testing.T) {
	for _, hmac := range []bool{false, true} {
		t.Run(fmt.Sprintf("hmac=%t", hmac), func(t *testing.T) {
			n := startTestNode(t, nodeOptions{hmac: hmac})
			ctx := ctxT(t)
			c := n.dial(wsclient.Options{})
			other := n.dial(wsclient.Options{})
			if err := c.SubscribeExact(ctx, []byte("m")); err != nil {
				t.Fatal(err)
			}
			if err := c.SubscribeGlob(ctx, "g/*"); err != nil {
				t.Fatal(err)
			}
			if err := other.SubscribeExact(ctx, []byte("o")); err != nil {
				t.Fatal(err)
			}
			pair := n.clientAuth() // holds both secrets, as a publishing node does
			post := func(recovery string, topic string) (int, []byte) {
				t.Helper()
				a, err := pair.Authorize(auth.Missed{Recovery: recovery, Topic: []byte(topic)})
				if err != nil {
					t.Fatal(err)
				}
				body, _ := wire.AppendMissed(nil, wire.Missed{Topic: []byte(topic)})
				status, reply := lonelypsdtest.Post(t, recovery, a, body)
				return status, []byte(reply)
			}
			// The recovery URLs are those of the rows, as the sweeper
			// would use them.
			recovery := map[string]string{}
			for _, s := range n.node.FSM().All() {
				recovery[s.Key] = s.Recovery
			}
			status, reply := post(recovery["m"], "m")
			if status != http.StatusOK {
				t.Fatalf("missed: status %d", status)
			}
			cm, err := wire.ParseMissedReply(reply)
			if err != nil {
				t.Fatal(err)
			}
			if r := pair.Verify(ctx, auth.ConfirmMissed{Topic: []byte("m"), URL: recovery["m"]}, cm.Authorization); r != auth.OK {
				t.Fatalf("confirm missed authorization: %s", r)
			}
			if m := next(t, c, 5*time.Second); !m.Missed || string(m.Topic) != "m" {
				t.Fatalf("received %+v", m)
			}
			if status, _ := post(recovery["g/*"], "g/1"); status != http.StatusOK {
				t.Fatalf("missed via glob: status %d", status)
			}
			if m := next(t, c, 5*time.Second); !m.Missed || string(m.Topic) != "g/1" {
				t.Fatalf("received %+v", m)
			}
			none(t, other)
			// After a MISSED, a delivery: the broadcaster counter advanced
			// once per MISSED on both sides.
			if got, err := n.client().Notify(ctx, []byte("m"), []byte("after")); err != nil || got != 1 {
				t.Fatalf("notify: %d, %v", got, err)
			}
			if m := next(t, c, 5*time.Second); string(m.Data) != "after" {
				t.Fatalf("received %+v", m)
			}
			// Another process's URL: unsubscribe immediate.
			stale := strings.Replace(recovery["m"], "inc=", "inc=x", 1)
			if status, body := post(stale, "m"); status != http.StatusBadRequest || !bytes.Equal(body, []byte{0, 10}) {
				t.Fatalf("stale missed URL: %d %x", status, body)
			}
		})
	}
}

// A subscriber that stops reading fills its queue and is closed; the
// other subscriber of the same topic gets every message meanwhile.
func TestSlowConsumerIsClosedFastOneIsServed(t *testing.T) {
	n := startTestNode(t, nodeOptions{ws: func(c *Config) { c.MaxQueuedBytes = 512 << 10 }})
	ctx := ctxT(t)
	slow := n.dialRaw(false)
	slow.subscribe("s")
	if _, ok := slow.read().(wsproto.ConfirmSubscribeExact); !ok {
		t.Fatal("no confirmation")
	}
	fast := n.dial(wsclient.Options{})
	if err := fast.SubscribeExact(ctx, []byte("s")); err != nil {
		t.Fatal(err)
	}
	hc := n.client()
	msg := randomBytes(t, 64<<10)
	counts := map[uint32]int{}
	for i := range 64 {
		msg[0] = byte(i)
		got, err := hc.Notify(ctx, []byte("s"), msg)
		if err != nil {
			t.Fatal(err)
		}
		counts[got]++
		m := next(t, fast, 5*time.Second)
		if m.Data[0] != byte(i) {
			t.Fatalf("message %d arrived as %d", i, m.Data[0])
		}
	}
	// The slow one never acknowledges: it was sent what queued before
	// its writer first ran (one message, up to MaxUnackedShort on a
	// loaded machine), the rest waited for an acknowledgement on the
	// queue until 512 KiB filled it, and every later notify counts only
	// the fast one.
	if most := DefaultMaxUnackedShort + 512<<10/(64<<10); counts[2] == 0 || counts[1] == 0 || counts[2] > most {
		t.Fatalf("notify counts %v, want at most %d for both", counts, most)
	}
	slow.expectClose(websocket.StatusTryAgainLater)
	waitFor(t, "queued bodies released", func() bool { return n.hub.bodies.Buffered() == 0 })
}

func TestCompressedNotifies(t *testing.T) {
	n := startTestNode(t, nodeOptions{})
	ctx := ctxT(t)
	hsub, hurl := httpSubscriber(t, n.clientAuth())
	if err := n.client().SubscribeExact(ctx, hurl, []byte("z"), ""); err != nil {
		t.Fatal(err)
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(false))
	defer enc.Close()

	// Compressor 1 after ENABLE_ZSTD_PRESET: decompressed before fan-out.
	r := n.dialRaw(true)
	en, ok := r.read().(wsproto.EnableZstdPreset)
	if !ok || en.Identifier != 1 || en.CompressionLevel != 3 || en.MinSize != 16384 || en.MaxSize != 1<<64-1 {
		t.Fatalf("enable zstd: %+v", en)
	}
	plain := bytes.Repeat([]byte("compress me "), 10000)
	z := enc.EncodeAll(plain, nil)
	sum := sha512.Sum512(z)
	a, _ := r.pair.Authorize(auth.Notify{Topic: []byte("z"), Identifier: []byte{1}, SHA512: sum})
	r.send(wsproto.Notify{Authorization: a, Identifier: []byte{1}, Topic: []byte("z"), Compressor: 1,
		CompressedLength: uint64(len(z)), DecompressedLength: uint64(len(plain)), CompressedSHA512: sum, Payload: z})
	if cn, ok := r.read().(wsproto.ConfirmNotify); !ok || cn.Subscribers != 1 {
		t.Fatalf("confirm notify: %+v", cn)
	}
	if got := hsub.Received(); len(got) != 1 || !bytes.Equal(got[0].Message, plain) {
		t.Fatal("HTTP subscriber did not get the decompressed message")
	}

	// A frame that expands past its declared length (a bomb) closes.
	big := enc.EncodeAll(make([]byte, 64<<20), nil)
	sum = sha512.Sum512(big)
	a, _ = r.pair.Authorize(auth.Notify{Topic: []byte("z"), Identifier: []byte{2}, SHA512: sum})
	r.send(wsproto.Notify{Authorization: a, Identifier: []byte{2}, Topic: []byte("z"), Compressor: 1,
		CompressedLength: uint64(len(big)), DecompressedLength: 1 << 20, CompressedSHA512: sum, Payload: big})
	r.expectClose(websocket.StatusProtocolError)
	if len(hsub.Received()) != 1 {
		t.Fatal("the bomb was delivered")
	}
}

func TestStaleRowsRemovedAndShutdownCleansUp(t *testing.T) {
	n := startTestNode(t, nodeOptions{})
	ctx := ctxT(t)
	// Rows of an earlier process of this node, and one of another node.
	stale := strings.Replace(n.hub.ReceiveURL(), "inc="+n.hub.cfg.Incarnation, "inc=0123456789abcdef", 1)
	foreign := strings.Replace(n.hub.ReceiveURL(), "node=n1", "node=n2", 1)
	gone := func(url, topic string) func() bool {
		return func() bool { _, ok := n.node.FSM().Lookup(fsm.Exact, url, topic); return !ok }
	}
	apply := func(url, topic string) {
		if _, err := n.node.Apply(ctx, fsm.Command{Op: fsm.OpSubscribeExact, URL: url, Topic: []byte(topic)}); err != nil {
			t.Fatal(err)
		}
	}
	// A publisher reaching a stale row is told to drop it.
	apply(stale, "reached")
	if got, err := n.client().Notify(ctx, []byte("reached"), []byte("x")); err != nil || got != 0 {
		t.Fatalf("notify: %d, %v", got, err)
	}
	waitFor(t, "stale row dropped by its publisher", gone(stale, "reached"))
	// The start-up sweep removes this node's leftovers, and only those.
	apply(stale, "old")
	apply(foreign, "foreign")
	n.hub.Start()
	waitFor(t, "stale row removed", gone(stale, "old"))
	if _, ok := n.node.FSM().Lookup(fsm.Exact, foreign, "foreign"); !ok {
		t.Fatal("another node's row was removed")
	}

	c := n.dial(wsclient.Options{})
	if err := c.SubscribeExact(ctx, []byte("live")); err != nil {
		t.Fatal(err)
	}
	if err := c.SubscribeGlob(ctx, "li*"); err != nil {
		t.Fatal(err)
	}
	if len(n.rows()) != 2 {
		t.Fatalf("rows: %+v", n.rows())
	}
	if err := n.hub.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open after shutdown")
	}
	if websocket.CloseStatus(c.Err()) != websocket.StatusGoingAway {
		t.Fatalf("closed with %v", c.Err())
	}
	if rows := n.rows(); len(rows) != 0 {
		t.Fatalf("rows after shutdown: %+v", rows)
	}
}

func TestConnectionLimit(t *testing.T) {
	n := startTestNode(t, nodeOptions{ws: func(c *Config) { c.MaxConnections = 1 }})
	ctx := ctxT(t)
	n.dial(wsclient.Options{})
	_, resp, err := websocket.Dial(ctx, n.wsURL, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second connection: %v", err)
	}
}

func TestUnansweredPingCloses(t *testing.T) {
	n := startTestNode(t, nodeOptions{ws: func(c *Config) {
		c.PingInterval, c.PingTimeout = 50*time.Millisecond, 100*time.Millisecond
	}})
	r := n.dialRaw(false)
	// Not reading means not answering pings either.
	waitFor(t, "connection closed", func() bool { return n.hub.Connections() == 0 })
	_ = r
}

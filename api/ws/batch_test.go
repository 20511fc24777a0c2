package ws

import (
	"bytes"
	"context"
	"crypto/sha512"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
	"github.com/lonelypsd/lonelypsd/api/wsproto"
)

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestBatchConnWritesABatchWithOneSystemCall(t *testing.T) {
	for _, tc := range []struct {
		name       string
		corked     bool
		sizes      []int
		wantWrites int64
	}{
		{"uncorked: one write each", false, []int{10, 20, 30}, 3},
		{"corked: one write for all", true, []int{10, 20, 30}, 1},
		{"corked: a long payload goes after the batch", true, []int{10, batchDirect, 30}, 3},
		{"corked, nothing written: no write", true, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			cc := &countingConn{Conn: server}
			var pool sync.Pool
			b := &batchConn{Conn: cc, timeout: 5 * time.Second, pool: &pool}
			var want []byte
			if tc.corked {
				b.cork()
			}
			for i, n := range tc.sizes {
				p := bytes.Repeat([]byte{byte('a' + i)}, n)
				want = append(appendFrameHeader(want, opBinary, n), p...)
				if err := b.writeMessage(p); err != nil {
					t.Fatal(err)
				}
			}
			if tc.corked {
				if err := b.uncork(); err != nil {
					t.Fatal(err)
				}
			}
			if got := cc.writes.Load(); got != tc.wantWrites {
				t.Errorf("%d writes reached the socket, want %d", got, tc.wantWrites)
			}
			got := make([]byte, len(want))
			if err := client.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(client, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Error("the peer read other bytes than were written, or in another order")
			}
			if b.buf != nil {
				t.Error("the batch buffer is still held after uncork")
			}
		})
	}
}

func TestSharedFrameIsTheEncodedMessage(t *testing.T) {
	data := []byte("a short message fanned out to every connection")
	for _, tc := range []struct {
		name       string
		authz      string
		compressor uint64
	}{
		{"auth none", "", 0},
		{"token", "Bearer s3cret", 0},
		{"compressed with a shared compressor", "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &body{data: data, n: uint64(len(data)), sum: sha512.Sum512(data)}
			declen := b.n
			if tc.compressor != 0 {
				declen = 99
			}
			s := &sending{src: b, orig: b, declen: declen, topic: []byte("t/1"), compressor: tc.compressor, id: b.identifier()}
			got, err := s.wholeFrame(tc.authz, DefaultOutgoingMaxMessage)
			if err != nil {
				t.Fatal(err)
			}
			want, err := wsproto.AppendMinimal(nil, wsproto.ReceiveStream{Authorization: tc.authz, Identifier: s.id[:], First: &wsproto.StreamFirst{
				Topic: s.topic, Compressor: tc.compressor, CompressedLength: b.n, DecompressedLength: declen, CompressedSHA512: b.sum,
			}, Payload: data})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("shared frame\n%x\nwant\n%x", got, want)
			}
			// A second connection signing alike gets the same bytes; one
			// signing otherwise encodes its own.
			again, _ := (&sending{src: b, orig: b, declen: declen, topic: s.topic, compressor: tc.compressor, id: b.identifier()}).wholeFrame(tc.authz, DefaultOutgoingMaxMessage)
			if &again[0] != &got[0] {
				t.Error("the frame was encoded twice for the same authorization")
			}
			if other, _ := s.wholeFrame(tc.authz+"x", DefaultOutgoingMaxMessage); other != nil {
				t.Error("a frame signed otherwise was shared")
			}
		})
	}
}

func TestSharedFrameOnlyForOnePartInMemory(t *testing.T) {
	long := bytes.Repeat([]byte{1}, maxSharedFrame+1)
	for _, tc := range []struct {
		name       string
		data       []byte
		maxMessage int
	}{
		{"longer than kept", long, DefaultOutgoingMaxMessage},
		{"needs several parts", []byte("0123456789"), 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &body{data: tc.data, n: uint64(len(tc.data)), sum: sha512.Sum512(tc.data)}
			s := &sending{src: b, orig: b, declen: b.n, topic: []byte("t"), id: b.identifier()}
			out, err := s.wholeFrame("", tc.maxMessage)
			if err != nil || out != nil {
				t.Fatalf("wholeFrame = %d bytes, %v; want none", len(out), err)
			}
		})
	}
}

func TestIsNone(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scheme auth.Scheme
		want   bool
	}{
		{"none", auth.None(), true},
		{"token", auth.Token("x"), false},
		{"no scheme", nil, false},
	} {
		if got := isNone(tc.scheme); got != tc.want {
			t.Errorf("%s: isNone = %t, want %t", tc.name, got, tc.want)
		}
	}
}

func TestRefillAt(t *testing.T) {
	for _, tc := range []struct{ max, want int }{{1, 0}, {2, 0}, {3, 1}, {8, 6}} {
		if got := refillAt(tc.max); got != tc.want {
			t.Errorf("refillAt(%d) = %d, want %d", tc.max, got, tc.want)
		}
	}
}

// Every connection of a topic receives every message in order, each
// checked by the client against its own counters (HMAC) or unsigned (auth
// none, where they share one encoded frame), with more messages queued than
// may be unacknowledged, so writes are batched and refilled.
func TestFanOutToSeveralConnectionsInOrder(t *testing.T) {
	const conns, messages = 4, 12
	for _, hmac := range []bool{false, true} {
		t.Run(fmt.Sprintf("hmac=%t", hmac), func(t *testing.T) {
			n := startTestNode(t, nodeOptions{hmac: hmac})
			ctx := ctxT(t)
			var cs []*wsclient.Conn
			for range conns {
				c := n.dial(wsclient.Options{})
				if err := c.SubscribeExact(ctx, []byte("fan")); err != nil {
					t.Fatal(err)
				}
				cs = append(cs, c)
			}
			hc := n.client()
			for i := range messages {
				if got, err := hc.Notify(ctx, []byte("fan"), []byte(strconv.Itoa(i))); err != nil || got != conns {
					t.Fatalf("notify %d: counted %d, %v; want %d", i, got, err, conns)
				}
			}
			for ci, c := range cs {
				for i := range messages {
					if m := next(t, c, 5*time.Second); string(m.Data) != strconv.Itoa(i) {
						t.Fatalf("connection %d: message %d is %q", ci, i, m.Data)
					}
				}
				none(t, c)
			}
		})
	}
}

// acceptBatched serves one websocket upgrade the way serveWebsocket does
// (the library over a batchConn) and returns the server's batchConn and
// the client's end.
func acceptBatched(t *testing.T) (*batchConn, *websocket.Conn, *websocket.Conn) {
	t.Helper()
	type accepted struct {
		bc *batchConn
		ws *websocket.Conn
	}
	got := make(chan accepted, 1)
	var pool sync.Pool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bc := &batchConn{timeout: 5 * time.Second, pool: &pool}
		ws, err := websocket.Accept(&batchResponse{ResponseWriter: w, conn: bc}, r, nil)
		if err != nil {
			t.Error(err)
		}
		got <- accepted{bc, ws}
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	client.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = client.CloseNow() })
	a := <-got
	if a.ws == nil {
		t.FailNow()
	}
	t.Cleanup(func() { _ = a.ws.CloseNow() })
	return a.bc, a.ws, client
}

// TestWriteMessageFramesForTheLibrary has the websocket library's client
// read what writeMessage frames: every payload length form, batched and
// not, and long payloads that bypass the batch.
func TestWriteMessageFramesForTheLibrary(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 127, 0xffff, 0x10000, batchDirect + 1, 200_000}
	for _, corked := range []bool{false, true} {
		t.Run(fmt.Sprintf("corked=%t", corked), func(t *testing.T) {
			bc, _, client := acceptBatched(t)
			var want [][]byte
			if corked {
				bc.cork()
			}
			for i, n := range sizes {
				p := bytes.Repeat([]byte{byte('a' + i)}, n)
				want = append(want, p)
				if err := bc.writeMessage(p); err != nil {
					t.Fatal(err)
				}
			}
			if corked {
				if err := bc.uncork(); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i, w := range want {
				typ, p, err := client.Read(ctx)
				if err != nil {
					t.Fatalf("message %d (%d bytes): %v", i, len(w), err)
				}
				if typ != websocket.MessageBinary || !bytes.Equal(p, w) {
					t.Fatalf("message %d: %v of %d bytes, want binary of %d", i, typ, len(p), len(w))
				}
			}
		})
	}
}

// TestNoMessageAfterTheCloseFrame checks that once a close frame is
// written, neither writeMessage nor writeControl sends anything: the peer
// reads the close frame last.
func TestNoMessageAfterTheCloseFrame(t *testing.T) {
	for _, corked := range []bool{false, true} {
		t.Run(fmt.Sprintf("corked=%t", corked), func(t *testing.T) {
			client, server := tcpPair(t)
			var pool sync.Pool
			b := &batchConn{Conn: server, timeout: 5 * time.Second, pool: &pool}
			closeFrame := []byte{finBit | opClose, 2, 0x03, 0xe8}
			if err := b.writeMessage([]byte("before")); err != nil {
				t.Fatal(err)
			}
			if err := b.writeControl(opClose, closeFrame[2:]); err != nil {
				t.Fatal(err)
			}
			if corked {
				b.cork()
			}
			if err := b.writeMessage([]byte("after")); err != nil {
				t.Fatal(err)
			}
			if err := b.writeControl(opPong, []byte("after")); err != nil {
				t.Fatal(err)
			}
			if corked {
				if err := b.uncork(); err != nil {
					t.Fatal(err)
				}
			}
			server.Close()
			if err := client.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(client)
			if err != nil {
				t.Fatal(err)
			}
			want := append(appendFrameHeader(nil, opBinary, 6), "before"...)
			want = append(want, closeFrame...)
			if !bytes.Equal(got, want) {
				t.Fatalf("the peer read %x, want %x", got, want)
			}
		})
	}
}

// onlyConn returns the node's only connection.
func onlyConn(t *testing.T, h *Hub) *conn {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.conns) != 1 {
		t.Fatalf("%d connections, want 1", len(h.conns))
	}
	for c := range h.conns {
		return c
	}
	return nil
}

// queued is the number of items waiting on the node's only connection.
func queued(t *testing.T, h *Hub) int {
	t.Helper()
	c := onlyConn(t, h)
	c.qmu.Lock()
	defer c.qmu.Unlock()
	return len(c.queue) - c.qhead
}

// holds checks that the node's only connection comes to want items
// queued and owed unacknowledged parts (acknowledgements sent may still
// be on their way), then keeps them for a while: long enough that a
// writer woken by the queue would have sent them.
func holds(t *testing.T, h *Hub, want, owed int) {
	t.Helper()
	c := onlyConn(t, h)
	for end := time.Now().Add(5 * time.Second); queued(t, h) != want || c.unacked() != owed; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			break
		}
	}
	for end := time.Now().Add(150 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if q, u := queued(t, h), c.unacked(); q != want || u != owed {
			t.Fatalf("%d deliveries queued and %d parts unacknowledged, want %d and %d", q, u, want, owed)
		}
	}
}

// TestDeliveriesWaitForTheOwedAcknowledgement checks the two windows:
// short deliveries queued while the peer owes an acknowledgement stay
// queued until it owes none, then leave in order, up to MaxUnackedShort;
// the parts of a long message stop at MaxUnackedParts.
func TestDeliveriesWaitForTheOwedAcknowledgement(t *testing.T) {
	const window = 4
	n := startTestNode(t, nodeOptions{ws: func(c *Config) {
		c.MaxUnackedShort = window
		c.OutgoingMaxMessage = minOutgoingMaxMessage
	}})
	ctx := ctxT(t)
	r := n.dialRaw(false)
	r.subscribe("held")
	if _, ok := r.read().(wsproto.ConfirmSubscribeExact); !ok {
		t.Fatal("no confirmation")
	}
	hc := n.client()
	notify := func(body []byte) {
		t.Helper()
		if got, err := hc.Notify(ctx, []byte("held"), body); err != nil || got != 1 {
			t.Fatalf("notify: %d subscribers, %v", got, err)
		}
	}
	receive := func(want []byte) wsproto.ReceiveStream {
		t.Helper()
		rs, ok := r.read().(wsproto.ReceiveStream)
		if !ok || !bytes.HasPrefix(want, rs.Payload) {
			t.Fatalf("got %#v, want a part of %x", rs, want[:min(len(want), 8)])
		}
		return rs
	}
	confirm := func(rs wsproto.ReceiveStream) {
		t.Helper()
		a, err := r.pair.Authorize(auth.ConfirmReceive{Identifier: rs.Identifier, NumSubscribers: 1, URL: r.subURL()})
		if err != nil {
			t.Fatal(err)
		}
		r.send(wsproto.ConfirmReceive{Identifier: rs.Identifier, NumSubscribers: 1, Authorization: a})
	}

	notify([]byte{0})
	first := receive([]byte{0})
	// A notify is answered once queued: these are on the queue now, and
	// nothing but the acknowledgement may send them.
	for i := 1; i <= window+2; i++ {
		notify([]byte{byte(i)})
	}
	holds(t, n.hub, window+2, 1)
	confirm(first)
	var got []wsproto.ReceiveStream
	for i := 1; i <= window; i++ {
		got = append(got, receive([]byte{byte(i)}))
	}
	holds(t, n.hub, 2, window)
	for _, rs := range got[:window-1] {
		confirm(rs)
	}
	// Owing one, the peer still gets nothing: the two wait for it.
	holds(t, n.hub, 2, 1)
	confirm(got[window-1])
	last := []wsproto.ReceiveStream{receive([]byte{window + 1}), receive([]byte{window + 2})}

	confirm(last[0])
	confirm(last[1])
	holds(t, n.hub, 0, 0)

	// A long message starts only while fewer than MaxUnackedParts are
	// unacknowledged, the short ones before it included; then its parts
	// keep it at MaxUnackedParts.
	long := randomBytes(t, 6*minOutgoingMaxMessage)
	notify([]byte{10})
	head := receive([]byte{10})
	for i := byte(11); i <= 13; i++ {
		notify([]byte{i})
	}
	notify(long)
	holds(t, n.hub, 4, 1)
	confirm(head)
	got = got[:0]
	for i := byte(11); i <= 13; i++ {
		got = append(got, receive([]byte{i}))
	}
	holds(t, n.hub, 1, 3)
	confirm(got[0])
	confirm(got[1])
	off := len(receive(long).Payload)
	receive(long[off:])
	holds(t, n.hub, 0, DefaultMaxUnackedParts)
}

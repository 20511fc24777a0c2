package ws

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/wsproto"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

// clientFrame is a frame as a subscriber sends it: masked with a fixed
// key unless unmasked is set.
type clientFrame struct {
	b0       byte // FIN, reserved bits and opcode
	payload  []byte
	unmasked bool
	n        int64 // the length the header states, when not len(payload)
}

func (f clientFrame) bytes() []byte {
	n := f.n
	if n == 0 {
		n = int64(len(f.payload))
	}
	out := []byte{f.b0}
	mask := byte(maskBit)
	if f.unmasked {
		mask = 0
	}
	switch {
	case n < 126:
		out = append(out, mask|byte(n))
	case n <= 0xffff:
		out = binary.BigEndian.AppendUint16(append(out, mask|126), uint16(n))
	default:
		out = binary.BigEndian.AppendUint64(append(out, mask|127), uint64(n))
	}
	if f.unmasked {
		return append(out, f.payload...)
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	p := append([]byte(nil), f.payload...)
	unmask(p, key) // masking and unmasking are the same XOR
	return append(append(out, key[:]...), p...)
}

func frames(fs ...clientFrame) []byte {
	var out []byte
	for _, f := range fs {
		out = append(out, f.bytes()...)
	}
	return out
}

func bin(p []byte) clientFrame  { return clientFrame{b0: finBit | opBinary, payload: p} }
func ping(p []byte) clientFrame { return clientFrame{b0: finBit | opPing, payload: p} }

func TestFrameReaderReadsMessages(t *testing.T) {
	long := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80,000 bytes: the 64-bit length form
	mid := bytes.Repeat([]byte{0xa5}, 300)                 // the 16-bit length form
	type want struct {
		msgs    [][]byte
		pings   []string
		errIs   error  // errors.Is
		errText string // a *closeError whose reason holds this
		close   *peerClose
	}
	for _, tc := range []struct {
		name  string
		in    []byte
		pre   int // bytes of in given as read ahead
		limit int64
		want  want
	}{
		{name: "short", in: frames(bin([]byte("ack"))), want: want{msgs: [][]byte{[]byte("ack")}}},
		{name: "empty", in: frames(bin(nil)), want: want{msgs: [][]byte{{}}}},
		{name: "16-bit length", in: frames(bin(mid)), want: want{msgs: [][]byte{mid}}},
		{name: "64-bit length, past the buffer", in: frames(bin(long)), want: want{msgs: [][]byte{long}}},
		{name: "several in one read", in: frames(bin([]byte("a")), bin([]byte("bc")), bin([]byte("def"))),
			want: want{msgs: [][]byte{[]byte("a"), []byte("bc"), []byte("def")}}},
		{name: "read ahead by the server first", in: frames(bin([]byte("first")), bin([]byte("second"))), pre: 5,
			want: want{msgs: [][]byte{[]byte("first"), []byte("second")}}},
		{name: "fragmented, a ping in between", in: frames(
			clientFrame{b0: opBinary, payload: []byte("frag")},
			ping([]byte("p1")),
			clientFrame{b0: opContinuation, payload: []byte("men")},
			clientFrame{b0: finBit | opContinuation, payload: []byte("ted")},
		), want: want{msgs: [][]byte{[]byte("fragmented")}, pings: []string{"p1"}}},
		{name: "exactly the limit", in: frames(bin(mid)), limit: 300, want: want{msgs: [][]byte{mid}}},
		{name: "over the limit", in: frames(bin(mid)), limit: 299, want: want{errIs: errTooBig}},
		{name: "over the limit across fragments", in: frames(
			clientFrame{b0: opBinary, payload: mid}, clientFrame{b0: finBit | opContinuation, payload: mid},
		), limit: 500, want: want{errIs: errTooBig}},
		{name: "a huge stated length is refused unread", in: frames(clientFrame{b0: finBit | opBinary, n: 1 << 40}),
			limit: 1 << 20, want: want{errIs: errTooBig}},
		{name: "length with the top bit", in: []byte{finBit | opBinary, maskBit | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4},
			want: want{errText: "top bit"}},
		{name: "text", in: frames(clientFrame{b0: finBit | opText, payload: []byte("hi")}), want: want{errText: "text message"}},
		{name: "unmasked", in: frames(clientFrame{b0: finBit | opBinary, payload: []byte("x"), unmasked: true}),
			want: want{errText: "unmasked"}},
		{name: "reserved bit", in: frames(clientFrame{b0: finBit | 0x40 | opBinary, payload: []byte("x")}),
			want: want{errText: "reserved bits"}},
		{name: "unknown opcode", in: frames(clientFrame{b0: finBit | 0x3}), want: want{errText: "unknown opcode"}},
		{name: "continuation outside a message", in: frames(clientFrame{b0: finBit | opContinuation, payload: []byte("x")}),
			want: want{errText: "continuation frame outside"}},
		{name: "new message inside one", in: frames(clientFrame{b0: opBinary, payload: []byte("x")}, bin([]byte("y"))),
			want: want{errText: "before the last one ended"}},
		{name: "fragmented control frame", in: frames(clientFrame{b0: opPing, payload: []byte("x")}),
			want: want{errText: "control frame"}},
		{name: "long control frame", in: frames(clientFrame{b0: finBit | opPing, payload: make([]byte, 126)}),
			want: want{errText: "control frame"}},
		{name: "close with code and reason", in: frames(clientFrame{b0: finBit | opClose, payload: append([]byte{0x0f, 0xa0}, "bye"...)}),
			want: want{close: &peerClose{code: 4000, reason: "bye"}}},
		{name: "close without a code", in: frames(clientFrame{b0: finBit | opClose}), want: want{close: &peerClose{code: 1005}}},
		{name: "close of one byte", in: frames(clientFrame{b0: finBit | opClose, payload: []byte{3}}), want: want{errText: "one byte"}},
		{name: "close with a reserved code", in: frames(clientFrame{b0: finBit | opClose, payload: []byte{0x03, 0xed}}),
			want: want{errText: "close code 1005"}},
		{name: "close with an undefined code", in: frames(clientFrame{b0: finBit | opClose, payload: []byte{0x07, 0xd0}}),
			want: want{errText: "close code 2000"}},
		{name: "close reason not UTF-8", in: frames(clientFrame{b0: finBit | opClose, payload: []byte{3, 0xe8, 0xff}}),
			want: want{errText: "UTF-8"}},
		{name: "cut inside a header", in: frames(bin(mid))[:3], want: want{errIs: io.ErrUnexpectedEOF}},
		{name: "cut inside a payload", in: frames(bin(long))[:5000], want: want{errIs: io.ErrUnexpectedEOF}},
		{name: "cut inside a short payload, at the end of what was read", in: frames(bin([]byte("0123456789")))[:10],
			pre: 10, want: want{errIs: io.ErrUnexpectedEOF}},
		{name: "end between messages", in: nil, want: want{errIs: io.EOF}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pings []string
			f := newFrameReader(bytes.NewReader(tc.in[tc.pre:]), tc.in[:tc.pre], 64)
			f.control = func(op byte, p []byte) error {
				if op != opPing {
					t.Errorf("control opcode %#x, want a ping", op)
				}
				pings = append(pings, string(p))
				return nil
			}
			limit := tc.limit
			if limit == 0 {
				limit = 1 << 20
			}
			var got [][]byte
			var err error
			for {
				var m []byte
				if m, err = f.readMessage(nil, limit); err != nil {
					break
				}
				got = append(got, m)
			}
			if fmt.Sprint(pings) != fmt.Sprint(tc.want.pings) {
				t.Errorf("pings %q, want %q", pings, tc.want.pings)
			}
			if len(got) != len(tc.want.msgs) {
				t.Fatalf("%d messages, want %d (then %v)", len(got), len(tc.want.msgs), err)
			}
			for i := range got {
				if !bytes.Equal(got[i], tc.want.msgs[i]) {
					t.Errorf("message %d: %d bytes %.20q, want %d bytes %.20q", i, len(got[i]), got[i], len(tc.want.msgs[i]), tc.want.msgs[i])
				}
			}
			var ce *closeError
			var pc *peerClose
			switch w := tc.want; {
			case w.errIs != nil:
				if !errors.Is(err, w.errIs) {
					t.Errorf("ended with %v, want %v", err, w.errIs)
				}
			case w.errText != "":
				if !errors.As(err, &ce) || ce.code != statusProtocolError || !strings.Contains(ce.reason, w.errText) {
					t.Errorf("ended with %v, want a protocol error about %q", err, w.errText)
				}
			case w.close != nil:
				if !errors.As(err, &pc) || *pc != *w.close {
					t.Errorf("ended with %v, want %v", err, w.close)
				}
			case !errors.Is(err, io.EOF):
				t.Errorf("ended with %v, want io.EOF", err)
			}
		})
	}
}

// FuzzFrameReader feeds arbitrary bytes: the reader must end with an error
// or messages, never panic, and never return a message over its limit.
func FuzzFrameReader(f *testing.F) {
	f.Add(frames(bin([]byte("ack"))))
	f.Add(frames(clientFrame{b0: opBinary, payload: []byte("a")}, ping(nil), clientFrame{b0: finBit, payload: []byte("b")}))
	f.Add(frames(clientFrame{b0: finBit | opClose, payload: []byte{3, 0xe8}}))
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := newFrameReader(bytes.NewReader(in), nil, 16)
		fr.control = func(byte, []byte) error { return nil }
		for range 1000 {
			m, err := fr.readMessage(nil, 512)
			if err != nil {
				return
			}
			if len(m) > 512 {
				t.Fatalf("message of %d bytes over the limit", len(m))
			}
		}
	})
}

// rawSocket is a websocket to the node made by hand over TCP, to send
// frames no library would.
type rawSocket struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func (n *testNode) rawSocket(t *testing.T) *rawSocket {
	t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if err := nc.SetDeadline(time.Now().Add(15 * time.Second)); err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(randomBytes(t, 16))
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", PathWebsocket, strings.TrimPrefix(n.base, "http://"), key)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Fatalf("handshake answered %s %v", resp.Status, resp.Header)
	}
	return &rawSocket{t: t, nc: nc, br: br}
}

func (s *rawSocket) send(b []byte) {
	s.t.Helper()
	if _, err := s.nc.Write(b); err != nil {
		s.t.Fatal(err)
	}
}

// frame reads one server frame: its first byte and payload.
func (s *rawSocket) frame() (byte, []byte) {
	s.t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(s.br, h[:]); err != nil {
		s.t.Fatalf("read a frame: %v", err)
	}
	if h[1]&maskBit != 0 {
		s.t.Fatal("masked frame from the node")
	}
	n := uint64(h[1] & 0x7f)
	if n >= 126 {
		b := make([]byte, 2+6*(n-126))
		if _, err := io.ReadFull(s.br, b); err != nil {
			s.t.Fatalf("read a frame length: %v", err)
		}
		n = binary.BigEndian.Uint64(append(make([]byte, 8-len(b)), b...))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(s.br, p); err != nil {
		s.t.Fatalf("read a payload: %v", err)
	}
	return h[0], p
}

// configure sends CONFIGURE split over frames with a ping among them and
// expects the pong, then CONFIRM_CONFIGURE.
func (s *rawSocket) configure(pair auth.Pair) {
	s.t.Helper()
	var nonce [32]byte
	a, err := pair.Authorize(auth.StatefulConfigure{SubscriberNonce: nonce})
	if err != nil {
		s.t.Fatal(err)
	}
	m, err := wsproto.AppendMinimal(nil, wsproto.Configure{SubscriberNonce: nonce, Authorization: a})
	if err != nil {
		s.t.Fatal(err)
	}
	s.send(frames(clientFrame{b0: opBinary, payload: m[:10]}, ping([]byte("are you there")),
		clientFrame{b0: opContinuation, payload: m[10:20]}, clientFrame{b0: finBit | opContinuation, payload: m[20:]}))
	if b0, p := s.frame(); b0 != finBit|opPong || string(p) != "are you there" {
		s.t.Fatalf("got frame %#x %q, want the pong", b0, p)
	}
	b0, p := s.frame()
	if b0 != finBit|opBinary {
		s.t.Fatalf("got frame %#x, want CONFIRM_CONFIGURE", b0)
	}
	if _, ok := mustParseB2S(s.t, p).(wsproto.ConfirmConfigure); !ok {
		s.t.Fatal("no CONFIRM_CONFIGURE")
	}
}

func mustParseB2S(t *testing.T, p []byte) any {
	t.Helper()
	m, err := wsproto.ParseB2S(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// closeFrame reads frames until the close frame and returns its code and
// reason; then the node must end the stream.
func (s *rawSocket) closeFrame() (uint16, string) {
	s.t.Helper()
	for {
		b0, p := s.frame()
		if b0 != finBit|opClose {
			continue
		}
		if len(p) < 2 {
			return 1005, ""
		}
		return binary.BigEndian.Uint16(p), string(p[2:])
	}
}

// expectEnd checks that nothing follows the close frame: the stream ends
// (or is reset, when the node closed at once and the peer wrote on).
// expectEnd reads the end of the stream; graceful: a FIN (io.EOF), not a
// reset.
func (s *rawSocket) expectEnd(graceful bool) {
	s.t.Helper()
	b, err := s.br.ReadByte()
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		s.t.Fatalf("after the close frame: byte %#x, %v; want the end of the stream", b, err)
	}
	if graceful && !errors.Is(err, io.EOF) {
		s.t.Fatalf("after the close handshake: %v, want the stream closed (io.EOF)", err)
	}
}

// TestFramesFromAHandMadeClient drives the node's frame reading and close
// handshake with frames written byte by byte: fragments and pings are
// taken, broken frames close with 1002 and the reason, an oversized one
// with 1009 before its bytes arrive, and the peer's close frame is
// answered with its code; the node then ends the stream.
func TestFramesFromAHandMadeClient(t *testing.T) {
	n := startTestNode(t, nodeOptions{ws: func(c *Config) { c.IncomingMaxMessage = 64 << 10 }})
	for _, tc := range []struct {
		name       string
		send       []byte
		wantCode   uint16
		wantReason string
	}{
		{"unmasked frame", frames(clientFrame{b0: finBit | opBinary, payload: []byte("x"), unmasked: true}), 1002, "unmasked"},
		{"text frame", frames(clientFrame{b0: finBit | opText, payload: []byte("hello")}), 1002, "text message"},
		{"reserved bits", frames(clientFrame{b0: finBit | 0x20 | opBinary, payload: []byte("x")}), 1002, "reserved bits"},
		{"over IncomingMaxMessage", frames(clientFrame{b0: finBit | opBinary, n: 1 << 30}), 1009, "message over 65536 bytes"},
		{"peer closes", frames(clientFrame{b0: finBit | opClose, payload: append([]byte{0x0f, 0xa1}, "done"...)}), 4001, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := n.rawSocket(t)
			s.configure(n.clientAuth())
			s.send(tc.send)
			code, reason := s.closeFrame()
			if code != tc.wantCode || !strings.Contains(reason, tc.wantReason) {
				t.Fatalf("closed with %d %q, want %d and a reason with %q", code, reason, tc.wantCode, tc.wantReason)
			}
			// The handshake the peer started ends with a FIN: every byte
			// it sent was read, none left for the kernel to reset over.
			s.expectEnd(tc.wantCode == 4001)
		})
	}
}

// TestPingsAndCloseWithTheLibraryClient checks the node's pings and the
// close handshake against the websocket library's client: its pongs are
// taken, and its close frame is answered with its code at once.
func TestPingsAndCloseWithTheLibraryClient(t *testing.T) {
	n := startTestNode(t, nodeOptions{ws: func(c *Config) {
		c.PingInterval, c.PingTimeout = 20*time.Millisecond, 2*time.Second
	}})
	r := n.dialRaw(false)
	// The library answers pings while it reads.
	ctx := r.ws.CloseRead(context.Background())
	pongs := func() uint64 {
		n.hub.mu.Lock()
		defer n.hub.mu.Unlock()
		for c := range n.hub.conns {
			return c.pongSeq.Load()
		}
		return 0
	}
	lonelypsdtest.WaitFor(t, "three pongs", 10*time.Second, func() bool { return pongs() >= 3 })
	start := time.Now()
	if err := r.ws.Close(websocket.StatusCode(4002), "leaving"); err != nil {
		t.Fatalf("close handshake: %v", err)
	}
	if d := time.Since(start); d > closeWait/2 {
		t.Fatalf("close handshake took %v", d)
	}
	<-ctx.Done()
}

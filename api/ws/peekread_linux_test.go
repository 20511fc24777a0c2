package ws

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rawFD runs f on c's descriptor.
func rawFD(t *testing.T, c net.Conn, f func(fd int)) {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(fd uintptr) { f(int(fd)) }); err != nil {
		t.Fatal(err)
	}
}

// socketQueue is the number of bytes in c's receive buffer.
func socketQueue(t *testing.T, c net.Conn) int {
	t.Helper()
	var n int
	rawFD(t, c, func(fd int) {
		var err error
		if n, err = unix.IoctlGetInt(fd, unix.SIOCINQ); err != nil {
			t.Fatal(err)
		}
	})
	return n
}

// segmentsOut is the number of TCP segments c has sent.
func segmentsOut(t *testing.T, c net.Conn) uint32 {
	t.Helper()
	var n uint32
	rawFD(t, c, func(fd int) {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			t.Fatal(err)
		}
		n = info.Segs_out
	})
	return n
}

func newTestPeekReader(t *testing.T, c net.Conn) io.Reader {
	t.Helper()
	r := newPeekReader(c, wsReadBuffer)
	if r == nil {
		t.Fatal("no peek reader for a TCP connection")
	}
	return r
}

// readWithin reads once from r in a goroutine, failing the test if that
// takes longer than d.
func readWithin(t *testing.T, r io.Reader, p []byte, d time.Duration) (int, error) {
	t.Helper()
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := r.Read(p)
		done <- result{n, err}
	}()
	select {
	case res := <-done:
		return res.n, res.err
	case <-time.After(d):
		t.Fatalf("read still waiting after %s", d)
		return 0, nil
	}
}

// A short read peeks: its bytes stay in the socket until the next read,
// which drops them and returns only what came after; nothing peeked stays
// while a read waits.
func TestPeekReaderLeavesBytesUntilTheNextRead(t *testing.T) {
	client, server := tcpPair(t)
	r := newTestPeekReader(t, server)
	p := make([]byte, 64)
	if _, err := client.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(p); err != nil || string(p[:n]) != "abc" {
		t.Fatalf("read %q, %v", p[:n], err)
	}
	if q := socketQueue(t, server); q != 3 {
		t.Fatalf("%d bytes left in the socket after the peek, want 3", q)
	}
	if _, err := client.Write([]byte("de")); err != nil {
		t.Fatal(err)
	}
	for socketQueue(t, server) != 5 {
		time.Sleep(time.Millisecond)
	}
	if n, err := r.Read(p); err != nil || string(p[:n]) != "de" {
		t.Fatalf("read %q, %v", p[:n], err)
	}
	if q := socketQueue(t, server); q != 2 {
		t.Fatalf("%d bytes left in the socket, want the 2 just peeked", q)
	}
	// A read that has to wait drops them first: held while the reader
	// waits, they (and the segment they came in) could keep the receive
	// window from opening for a peer with more to send.
	done := make(chan struct{})
	go func() {
		defer close(done)
		if n, err := r.Read(p); err != nil || string(p[:n]) != "x" {
			t.Errorf("read %q, %v", p[:n], err)
		}
	}()
	for socketQueue(t, server) != 0 {
		time.Sleep(time.Millisecond)
	}
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	<-done
	// A read longer than the peek size consumes.
	if _, err := client.Write([]byte("fgh")); err != nil {
		t.Fatal(err)
	}
	long := make([]byte, wsReadBuffer+1)
	if n, err := readWithin(t, r, long, 5*time.Second); err != nil || string(long[:n]) != "fgh" {
		t.Fatalf("read %q, %v", long[:n], err)
	}
	if q := socketQueue(t, server); q != 0 {
		t.Fatalf("%d bytes left after a plain read", q)
	}
}

// Whatever the sizes of the writes and reads, the reader returns the
// stream the peer wrote, then io.EOF.
func TestPeekReaderReturnsTheStream(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name     string
		readSize func() int
	}{
		{"short reads", func() int { return 1 + rng.IntN(64) }},
		{"buffer-sized reads", func() int { return wsReadBuffer }},
		{"reads shorter than the last peek", func() int { return 1 + rng.IntN(8) }},
		{"short and long reads", func() int { return 1 + rng.IntN(3*wsReadBuffer) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			r := newTestPeekReader(t, server)
			want := make([]byte, 256<<10)
			for i := range want {
				want[i] = byte(rng.Uint32())
			}
			wrng := rand.New(rand.NewPCG(3, 4)) // the writer's own
			go func() {
				for rest := want; len(rest) > 0; {
					n := min(len(rest), 1+wrng.IntN(3000))
					if _, err := client.Write(rest[:n]); err != nil {
						return
					}
					rest = rest[n:]
					if wrng.IntN(8) == 0 {
						time.Sleep(time.Millisecond)
					}
				}
				client.Close()
			}()
			var got []byte
			for {
				p := make([]byte, tc.readSize())
				n, err := readWithin(t, r, p, 10*time.Second)
				got = append(got, p[:n]...)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes that differ from the %d written", len(got), len(want))
			}
		})
	}
}

// The end of the stream, or a reset, that comes after a peek is seen by
// the next read: it neither waits nor returns the peeked bytes again.
func TestPeekReaderSeesTheEndAfterAPeek(t *testing.T) {
	for _, reset := range []bool{false, true} {
		client, server := tcpPair(t)
		r := newTestPeekReader(t, server)
		if _, err := client.Write([]byte("last")); err != nil {
			t.Fatal(err)
		}
		p := make([]byte, 64)
		if n, err := readWithin(t, r, p, 5*time.Second); err != nil || string(p[:n]) != "last" {
			t.Fatalf("read %q, %v", p[:n], err)
		}
		if reset {
			if err := client.(*net.TCPConn).SetLinger(0); err != nil {
				t.Fatal(err)
			}
		}
		client.Close()
		n, err := readWithin(t, r, p, 5*time.Second)
		switch {
		case n != 0:
			t.Fatalf("reset=%t: read %q again", reset, p[:n])
		case !reset && !errors.Is(err, io.EOF):
			t.Fatalf("after the peer's FIN: %v, want io.EOF", err)
		case reset && !errors.Is(err, syscall.ECONNRESET):
			t.Fatalf("after the peer's reset: %v, want ECONNRESET", err)
		}
	}
}

// A read waits for bytes, and ends when the connection is closed here.
func TestPeekReaderWaitsAndStopsOnClose(t *testing.T) {
	client, server := tcpPair(t)
	r := newTestPeekReader(t, server)
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = client.Write([]byte("late"))
	}()
	p := make([]byte, 64)
	if n, err := readWithin(t, r, p, 5*time.Second); err != nil || string(p[:n]) != "late" {
		t.Fatalf("read %q, %v", p[:n], err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		server.Close()
	}()
	if _, err := readWithin(t, r, p, 5*time.Second); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

// What peeking is for: acknowledgements read before a reply cost the
// node no TCP segment of their own, the reply carries the ACK. Read
// plainly, the read that empties the socket after two small segments
// sends a bare ACK first.
func TestPeekedAcknowledgementsTakeNoSegment(t *testing.T) {
	const rounds = 50
	run := func(t *testing.T, peek bool) uint32 {
		client, server := tcpPair(t)
		var r io.Reader = server
		if peek {
			r = newTestPeekReader(t, server)
		}
		p := make([]byte, 256)
		round := func() {
			// The subscriber's three acknowledgements, a segment each.
			for range 3 {
				if _, err := client.Write([]byte("ack")); err != nil {
					t.Fatal(err)
				}
			}
			for got := 0; got < 9; {
				n, err := readWithin(t, r, p, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				got += n
			}
			if _, err := server.Write([]byte("next deliveries")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(client, make([]byte, 15)); err != nil {
				t.Fatal(err)
			}
		}
		// Past the connection's first segments, which Linux acknowledges
		// at once whatever the reads.
		for range 20 {
			round()
		}
		before := segmentsOut(t, server)
		for range rounds {
			round()
		}
		return segmentsOut(t, server) - before
	}
	plain := run(t, false)
	peeked := run(t, true)
	t.Logf("segments sent in %d rounds: %d reading plainly, %d peeking", rounds, plain, peeked)
	// A delayed-ACK timer may fire in a slow round; a bare ACK per round
	// may not.
	if peeked > rounds+rounds/10 {
		t.Fatalf("peeking, %d segments for %d replies", peeked, rounds)
	}
}

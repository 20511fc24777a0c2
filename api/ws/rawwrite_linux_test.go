package ws

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

func newTestRawWriter(t *testing.T, c net.Conn) func([]byte) (int, error) {
	t.Helper()
	w := newRawWriter(c)
	if w == nil {
		t.Fatal("no raw writer for a TCP connection")
	}
	return w
}

// Writes far larger than the socket's buffers wait for the reader through
// the poller, and the reader gets the stream exactly.
func TestRawWriterWaitsForRoomAndWritesTheStream(t *testing.T) {
	client, server := tcpPair(t)
	w := newTestRawWriter(t, server)
	rng := rand.New(rand.NewPCG(3, 4))
	want := make([]byte, 16<<20)
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	got := make(chan []byte, 1)
	go func() {
		// A slow reader: the writer finds the buffers full many times.
		var b bytes.Buffer
		p := make([]byte, 4096)
		for {
			n, err := client.Read(p)
			b.Write(p[:n])
			if err != nil {
				got <- b.Bytes()
				return
			}
		}
	}()
	for off := 0; off < len(want); {
		n := min(1+rng.IntN(2<<20), len(want)-off)
		if k, err := w(want[off : off+n]); err != nil || k != n {
			t.Fatalf("write of %d bytes at %d: %d, %v", n, off, k, err)
		}
		off += n
	}
	_ = server.Close()
	select {
	case b := <-got:
		if !bytes.Equal(b, want) {
			t.Fatalf("read %d bytes, not the %d written", len(b), len(want))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("reader did not finish")
	}
}

// A peer that stops reading makes a write end at the connection's
// deadline, with what it wrote.
func TestRawWriterKeepsTheWriteDeadline(t *testing.T) {
	_, server := tcpPair(t)
	w := newTestRawWriter(t, server)
	if err := server.SetWriteDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p := make([]byte, 64<<20)
	n, err := w(p)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n <= 0 || n >= len(p) {
		t.Fatalf("write to a peer that does not read: %d of %d bytes, %v", n, len(p), err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("write ended after %s", d)
	}
}

// A write to a peer that is gone fails with the reason, and the process
// is sent no SIGPIPE.
func TestRawWriterToAPeerThatIsGone(t *testing.T) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGPIPE)
	defer signal.Stop(sig)
	client, server := tcpPair(t)
	w := newTestRawWriter(t, server)
	_ = client.Close()
	var err error
	for range 100 {
		if _, err = w([]byte("after the close")); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("write to a closed peer: %v, want EPIPE or ECONNRESET", err)
	}
	if _, err := w([]byte("again")); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("second write: %v", err)
	}
	select {
	case s := <-sig:
		t.Fatalf("process got %v", s)
	case <-time.After(100 * time.Millisecond):
	}
}

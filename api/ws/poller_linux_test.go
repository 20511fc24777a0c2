//go:build linux

package ws

import (
	"bytes"
	"io"
	"sync"
	"testing"
	"time"
)

// TestBatchThatMayNotWaitLeavesTheRestToTheWriter fills a socket whose
// peer does not read: the attempt that may not wait returns at once with
// what the socket did not take left over, nothing after it may overtake
// it, and once the peer reads, the writer's next write sends it all in
// order.
func TestBatchThatMayNotWaitLeavesTheRestToTheWriter(t *testing.T) {
	client, server := tcpPair(t)
	rc := rawConnOf(server)
	var pool sync.Pool
	b := &batchConn{Conn: server, timeout: 10 * time.Second, pool: &pool, rc: rc}
	var want []byte
	left := false
	for i := 0; !left; i++ {
		if i == 10_000 {
			t.Fatal("the socket took 10,000 batches of 64 KiB from a peer that reads nothing")
		}
		p := bytes.Repeat([]byte{byte(i)}, 64<<10)
		want = append(appendFrameHeader(want, opBinary, len(p)), p...)
		b.cork(false)
		if err := b.writeMessage(p); err != nil {
			t.Fatal(err)
		}
		var err error
		if left, err = b.uncork(); err != nil {
			t.Fatal(err)
		}
	}
	want = append(append(want, finBit|opPong, 4), "last"...)
	got := make(chan []byte, 1)
	go func() {
		_ = client.SetReadDeadline(time.Now().Add(20 * time.Second))
		all, _ := io.ReadAll(io.LimitReader(client, int64(len(want))))
		got <- all
	}()
	// A pong written now, as the reader would, goes after the rest.
	if err := b.writeControl(opPong, []byte("last")); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(<-got, want) {
		t.Fatal("the peer read other bytes than were written, in order")
	}
}

package ws

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peekReader reads the subscriber's socket so that the TCP acknowledgement
// of what the subscriber sent rides on the node's next delivery instead of
// a packet of its own.
//
// A subscriber answers each delivery with a short message, each in a TCP
// segment of its own. When a read empties the socket's buffer after two or
// more such segments, Linux sends a bare ACK at once, from inside the read.
// Yet the node usually writes the next deliveries right after it has read
// the acknowledgements, and that write carries the ACK anyway.
//
// So the frame reader's short reads peek: the bytes are copied but stay in
// the socket's buffer, which is not emptied, so no ACK is due. The next read
// first drops them (MSG_TRUNC: no copy) and then peeks again. By then the
// deliveries the acknowledgements freed are written and their packet has
// carried the ACK: nothing is left to acknowledge. Long reads (message
// payloads past the buffer) are plain reads.
//
// Where the kernel keeps a peek offset for TCP (SO_PEEK_OFF, Linux 6.10
// on), a peek returns what follows the bytes peeked before, and the peeked
// bytes are dropped only once keepPeeked of them have gathered, or when
// the socket is found empty while the peer owes nothing (it may stay
// quiet: its bytes should not stay with the kernel). Elsewhere they are
// dropped by the next read, one system call more per wake-up.
type peekReader struct {
	rc   syscall.RawConn
	peek int // reads of at most this many bytes peek
	fn   func(fd uintptr) bool
	// offset: the kernel keeps a peek offset (SO_PEEK_OFF).
	offset bool
	// expecting reports whether the peer is expected to send more soon
	// (it owes acknowledgements): peeked bytes may wait for them.
	expecting func() bool

	// peeked is what was peeked and handed out, still in the socket's
	// buffer.
	peeked int

	// The read in progress, for fn.
	p   []byte
	n   int
	err error
}

// keepPeeked is how many peeked bytes may stay in the socket's buffer
// with a peek offset: a few batches of acknowledgements.
const keepPeeked = 512

// newPeekReader returns a reader of nc's socket that peeks reads of at most
// peek bytes, or nil when nc has no socket to read that way. expecting
// (nil: never) tells it the peer will send more soon.
func newPeekReader(nc any, peek int, expecting func() bool) io.Reader {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	if expecting == nil {
		expecting = func() bool { return false }
	}
	r := &peekReader{rc: rc, peek: peek, expecting: expecting}
	r.fn = r.read
	if cerr := rc.Control(func(fd uintptr) {
		r.offset = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0) == nil
	}); cerr != nil {
		return nil
	}
	return r
}

// Read reads into p what arrived after the bytes it returned before. Within
// one call the socket's poller is only asked to wait after a read that
// found nothing, as a plain read does: nothing that arrives is missed.
func (r *peekReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.p, r.n, r.err = p, 0, nil
	err := r.rc.Read(r.fn)
	r.p = nil
	if err != nil {
		return 0, err
	}
	return r.n, r.err
}

// read runs under the socket's poller: at once, then each time the socket
// became readable after it returned false to wait. True means done, with
// r.n and r.err set.
func (r *peekReader) read(fd uintptr) bool {
	flags := 0
	if len(r.p) <= r.peek {
		flags = syscall.MSG_PEEK
	}
	if r.peeked > 0 && (!r.offset || flags == 0 || r.peeked >= keepPeeked) && !r.drop(fd) {
		return true
	}
	n, err := recv(fd, r.p, len(r.p), flags)
	switch {
	case errors.Is(err, syscall.EAGAIN):
		if r.peeked > 0 && !r.expecting() && !r.drop(fd) {
			return true
		}
		return false
	case err != nil:
		r.err = os.NewSyscallError("recvfrom", err)
	case n == 0:
		r.err = io.EOF
	case flags != 0:
		r.peeked += n
	}
	r.n = max(n, 0)
	return true
}

// drop takes the peeked bytes out of the socket's buffer without copying
// them; false, with r.err set, if that failed.
func (r *peekReader) drop(fd uintptr) bool {
	n, err := recv(fd, nil, r.peeked, syscall.MSG_TRUNC)
	switch {
	case err != nil:
		r.err = os.NewSyscallError("recvfrom", err)
		return false
	case n != r.peeked:
		r.err = fmt.Errorf("dropped %d of the %d bytes peeked before", n, r.peeked)
		return false
	}
	r.peeked = 0
	return true
}

// recv is recvfrom(2) of n bytes into p (nil with MSG_TRUNC: dropped), not
// waiting, without the address syscall.Recvfrom allocates for. EINTR is
// retried.
func recv(fd uintptr, p []byte, n int, flags int) (int, error) {
	var base unsafe.Pointer
	if len(p) > 0 {
		base = unsafe.Pointer(&p[0])
	}
	for {
		m, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(base), uintptr(n),
			uintptr(flags|syscall.MSG_DONTWAIT), 0, 0)
		switch errno {
		case 0:
			return int(m), nil
		case syscall.EINTR:
			continue
		}
		return -1, errno
	}
}

package ws

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"unsafe"
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
// carried the ACK: nothing is left to acknowledge. The cost is one system
// call per wake-up, which takes no packet. Nothing peeked stays in the
// socket while a read waits: held bytes count against the receive window,
// and a peer with more to send could wait for it forever (api/ws/DESIGN.md
// says how that was found). Long reads (message payloads past the buffer)
// are plain reads.
type peekReader struct {
	rc   syscall.RawConn
	peek int // reads of at most this many bytes peek
	fn   func(fd uintptr) bool

	// peeked is what the last read peeked: handed out, still in the
	// socket's buffer.
	peeked int

	// The read in progress, for fn.
	p   []byte
	n   int
	err error
}

// newPeekReader returns a reader of nc's socket that peeks reads of at most
// peek bytes, or nil when nc has no socket to read that way.
func newPeekReader(nc any, peek int) io.Reader {
	rc := socketOf(nc)
	if rc == nil {
		return nil
	}
	r := &peekReader{rc: rc, peek: peek}
	r.fn = r.read
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
	if r.peeked > 0 {
		n, err := recv(fd, nil, r.peeked, syscall.MSG_TRUNC)
		switch {
		case err != nil:
			r.err = os.NewSyscallError("recvfrom", err)
			return true
		case n != r.peeked:
			r.err = fmt.Errorf("dropped %d of the %d bytes peeked before", n, r.peeked)
			return true
		}
		r.peeked = 0
	}
	flags := 0
	if len(r.p) <= r.peek {
		flags = syscall.MSG_PEEK
	}
	n, err := recv(fd, r.p, len(r.p), flags)
	switch {
	case errors.Is(err, syscall.EAGAIN):
		return false
	case err != nil:
		r.err = os.NewSyscallError("recvfrom", err)
	case n == 0:
		r.err = io.EOF
	case flags != 0:
		r.peeked = n
	}
	r.n = max(n, 0)
	return true
}

// settle takes the peeked bytes out of the socket once the reader has
// stopped, so that closing it sends a FIN: Linux answers the close of a
// socket holding unread bytes with a reset, which a peer that closed
// gracefully would take for an error.
func (r *peekReader) settle() {
	if r.peeked == 0 {
		return
	}
	_ = r.rc.Control(func(fd uintptr) {
		if n, err := recv(fd, nil, r.peeked, syscall.MSG_TRUNC); err == nil && n == r.peeked {
			r.peeked = 0
		}
	})
}

// recv is recvfrom(2) of n bytes into p (nil with MSG_TRUNC: dropped), not
// waiting, without the address syscall.Recvfrom allocates for. EINTR is
// retried. The call is raw, as rawWriter's is: it cannot block.
func recv(fd uintptr, p []byte, n int, flags int) (int, error) {
	var base unsafe.Pointer
	if len(p) > 0 {
		base = unsafe.Pointer(&p[0])
	}
	for {
		m, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(base), uintptr(n),
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

package ws

import (
	"os"
	"syscall"
	"unsafe"
)

// rawWriter writes to a socket with raw system calls, which keep the
// goroutine's processor.
//
// A write made the usual way tells the scheduler that the goroutine is in
// a system call: if the call lasts, the runtime's monitor hands the
// processor to another thread, waking one. A write to a subscriber on
// loopback lasts long enough, since it delivers the segment to the
// receiver within the call; with a thousand connections the hand-offs
// woke threads all the time and kept the monitor polling every 20 µs. Yet
// the write never waits: the socket is non-blocking and sendto is told not
// to (MSG_DONTWAIT), and a full socket buffer (EAGAIN) is waited for by
// the poller as for any write. So it is raw, as a short computation would
// be. MSG_NOSIGNAL makes a write to a peer that is gone EPIPE without a
// SIGPIPE. The caller keeps long writes (payloads of batchDirect and more)
// on the usual path: copying megabytes is not a short call.
type rawWriter struct {
	rc syscall.RawConn
	fn func(fd uintptr) bool

	// The write in progress, for fn.
	p   []byte
	n   int
	err error
}

// newRawWriter returns a raw writer of nc's socket, or nil when nc has no
// socket to write that way.
func newRawWriter(nc any) func([]byte) (int, error) {
	rc := socketOf(nc)
	if rc == nil {
		return nil
	}
	w := &rawWriter{rc: rc}
	w.fn = w.write
	return w.Write
}

// socketOf returns nc's socket, or nil when it has none. A TLS connection
// has none: its bytes go through TLS (cmd/lonelypsd's
// TestWebsocketOverTLS).
func socketOf(nc any) syscall.RawConn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// Write writes all of p, waiting for room in the socket's buffer through
// the poller, within the connection's write deadline.
func (w *rawWriter) Write(p []byte) (int, error) {
	w.p, w.n, w.err = p, 0, nil
	err := w.rc.Write(w.fn)
	w.p = nil
	if err != nil {
		return w.n, err
	}
	return w.n, w.err
}

// write runs under the socket's poller: at once, then each time the socket
// became writable after it returned false to wait.
func (w *rawWriter) write(fd uintptr) bool {
	for w.n < len(w.p) {
		m, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&w.p[w.n])), uintptr(len(w.p)-w.n),
			syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL, 0, 0)
		switch errno {
		case 0:
			w.n += int(m)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			w.err = os.NewSyscallError("sendto", errno)
			return true
		}
	}
	return true
}

//go:build !linux

package ws

import (
	"errors"
	"syscall"
)

// Without epoll every reader waits for its own socket.

type poller struct{}

func newPoller() (*poller, error) { return nil, errors.New("no poller on this system") }

func (p *poller) close()            {}
func (p *poller) park(*conn) error  { return errors.New("no poller on this system") }
func (p *poller) release(*conn)     {}
func rawConnOf(any) syscall.RawConn { return nil }

func writeNow(syscall.RawConn, []byte) (int, error) {
	return 0, errors.New("no poller on this system")
}

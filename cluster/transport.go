package cluster

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// advertisedAddr is a Raft address kept as written: a stable DNS name (a
// Kubernetes pod's) must stay a name in the cluster configuration, not
// become the IP it resolved to when the node started.
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }

// streamLayer is raft's TCP stream layer with an advertised address that
// may be a host name.
type streamLayer struct {
	net.Listener
	advertise advertisedAddr
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func checkAdvertise(flag, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flag, addr, err)
	}
	if port == "0" || port == "" {
		return fmt.Errorf("%s %q needs a fixed port", flag, addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("%s %q must name a reachable host, not a wildcard address", flag, addr)
	}
	return nil
}

// guardedTransport is the network transport with a heartbeat fast path
// that can be stopped. Raft runs heartbeats on the transport's connection
// goroutines, which its Shutdown does not wait for: one that began just
// before the shutdown would write the term to a store already closed (and
// panic). Close stops them, waiting for any under way, before the stores
// close.
type guardedTransport struct {
	*raft.NetworkTransport
	mu      sync.RWMutex
	stopped bool
}

func (t *guardedTransport) SetHeartbeatHandler(cb func(raft.RPC)) {
	if cb == nil {
		t.NetworkTransport.SetHeartbeatHandler(nil)
		return
	}
	t.NetworkTransport.SetHeartbeatHandler(func(rpc raft.RPC) {
		t.mu.RLock()
		defer t.mu.RUnlock()
		if t.stopped {
			rpc.Respond(nil, raft.ErrTransportShutdown)
			return
		}
		cb(rpc)
	})
}

// stopHeartbeats returns once no heartbeat runs and none will.
func (t *guardedTransport) stopHeartbeats() {
	t.mu.Lock()
	t.stopped = true
	t.mu.Unlock()
}

func newTransport(bind, advertise string, log hclog.Logger) (*guardedTransport, error) {
	if err := checkAdvertise("raft advertise address", advertise); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen for raft on %s: %w", bind, err)
	}
	return &guardedTransport{NetworkTransport: raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: ln, advertise: advertisedAddr(advertise)},
		MaxPool: transportPool,
		Timeout: transportTimeout,
		Logger:  log,
	})}, nil
}

package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"github.com/lonelypsd/lonelypsd/fsm"
)

// applyResult is the answer of /cluster/apply.
type applyResult struct {
	Outcome fsm.Outcome `json:"outcome"`
	Index   uint64      `json:"index"`
	Error   string      `json:"error,omitempty"`
}

// retryPause is the wait between attempts to reach a leader: short, since
// a failover on a LAN completes in well under a second.
const retryPause = 50 * time.Millisecond

// Apply commits cmd through Raft from any node: the leader applies it
// itself, a follower forwards it to the leader over the HTTP API port.
// Either way it returns once this node's own table has applied the entry.
//
// A write gets a request id before its first attempt; retries (after a
// leader change, a lost connection) carry the same id, and the FSM applies
// an id at most once. Without a leader Apply keeps trying until ctx ends,
// then returns ErrNoLeader.
func (n *Node) Apply(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	if cmd.ID == "" {
		cmd.ID = newRequestID()
	}
	data, err := encodeChecked(cmd)
	if err != nil {
		return fsm.Result{}, err
	}
	var lastErr error = ErrNoLeader
	for {
		res, index, err := n.applyOnce(ctx, cmd.Op, data)
		if err == nil {
			if werr := n.fsm.WaitApplied(ctx, index); werr != nil {
				return fsm.Result{}, fmt.Errorf("%w: %w", ErrTimeout, werr)
			}
			return res, nil
		}
		if !retryable(err) {
			return fsm.Result{}, err
		}
		lastErr = err
		select {
		case <-ctx.Done():
			if errors.Is(lastErr, ErrNoLeader) || errors.Is(lastErr, ErrNotLeader) {
				return fsm.Result{}, fmt.Errorf("%w: %w", ErrNoLeader, lastErr)
			}
			return fsm.Result{}, fmt.Errorf("%w: %w", ErrTimeout, lastErr)
		case <-n.stop:
			return fsm.Result{}, ErrShutdown
		case <-time.After(retryPause):
		}
	}
}

func newRequestID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("cluster: no randomness: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// errForward marks a failure to reach the leader, worth another attempt.
var errForward error = &unavailableError{"cluster: forwarding to the leader failed"}

// leaderHTTP returns the current leader's id and API address. The address
// is replicated state: a node that has just joined, or a leader just
// elected, may not have it yet (ErrNotLeader, worth a retry).
func (n *Node) leaderHTTP() (id, addr string, err error) {
	id, _ = n.Leader()
	if id == "" {
		return "", "", ErrNoLeader
	}
	leader, ok := n.fsm.Node(id)
	if !ok || leader.HTTP == "" {
		return id, "", fmt.Errorf("%w: no http address known for leader %s", ErrNotLeader, id)
	}
	return id, leader.HTTP, nil
}

func retryable(err error) bool {
	return errors.Is(err, ErrNoLeader) || errors.Is(err, ErrNotLeader) || errors.Is(err, errForward)
}

func (n *Node) applyOnce(ctx context.Context, op fsm.Op, data []byte) (fsm.Result, uint64, error) {
	if n.raft.State() == raft.Leader {
		return n.propose(ctx, op, data)
	}
	id, addr, err := n.leaderHTTP()
	if err != nil {
		return fsm.Result{}, 0, err
	}
	var out applyResult
	err = n.peers.send(ctx, http.MethodPost, addr, id, "/cluster/apply", data, &out)
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.Code == http.StatusInsufficientStorage {
			return fsm.Result{}, 0, fmt.Errorf("%w: leader %s: %w", ErrDiskFull, id, err)
		}
		if errors.As(err, &se) && se.Code != http.StatusServiceUnavailable {
			return fsm.Result{}, 0, fmt.Errorf("leader %s refused the write: %w", id, err)
		}
		return fsm.Result{}, 0, fmt.Errorf("%w: %w", errForward, err)
	}
	return fsm.Result{Outcome: out.Outcome}, out.Index, nil
}

// applyLocal proposes cmd on this node, which must be the leader.
func (n *Node) applyLocal(ctx context.Context, cmd fsm.Command) (fsm.Result, uint64, error) {
	data, err := encodeChecked(cmd)
	if err != nil {
		return fsm.Result{}, 0, err
	}
	return n.propose(ctx, cmd.Op, data)
}

// propose appends an encoded command to the log on this node, which must
// be the leader. New subscription writes are refused while the data
// volume is almost full; membership changes still go through, so a
// cluster can be repaired on a full disk.
func (n *Node) propose(ctx context.Context, op fsm.Op, data []byte) (fsm.Result, uint64, error) {
	if op != fsm.OpSetNode && op != fsm.OpRemoveNode {
		if n.disk.full(time.Now()) {
			return fsm.Result{}, 0, ErrDiskFull
		}
		// The table cannot take the entries already committed: a new one
		// would only wait behind them until the caller's deadline.
		if err := n.fsm.WriteErr(); err != nil {
			if isNoSpace(err) {
				return fsm.Result{}, 0, fmt.Errorf("%w: %w", ErrDiskFull, err)
			}
			return fsm.Result{}, 0, fmt.Errorf("%w: %w", ErrTimeout, err)
		}
	}
	enqueue := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		enqueue = time.Until(dl)
	}
	fut := n.raft.Apply(data, enqueue)
	done := make(chan error, 1)
	go func() { done <- fut.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return fsm.Result{}, 0, mapRaftErr(err)
		}
	case <-ctx.Done():
		return fsm.Result{}, 0, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
	res, _ := fut.Response().(fsm.Result)
	if res.Err != nil {
		if errors.Is(res.Err, fsm.ErrClosed) {
			// The node stopped while the entry waited for a failing disk:
			// it is in the log and applies on the next start.
			return res, 0, fmt.Errorf("apply %s: %w: %w", op, ErrShutdown, res.Err)
		}
		return res, 0, fmt.Errorf("apply %s: %w", op, res.Err)
	}
	return res, fut.Index(), nil
}

// Limits a command must meet before it is proposed: a log entry the
// replicas cannot store would be retried on every start.
const (
	// maxEntrySize bounds an encoded command (the largest is a
	// set_subscriptions list); it is also the /cluster/apply body limit.
	maxEntrySize = 64 << 20
)

// invalidError is a refusal of the request itself: the API answers it
// with 400 (it classifies errors through BadRequest, with errors.As).
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

// BadRequest reports that the request, not the node, is at fault.
func (e *invalidError) BadRequest() bool { return true }

// ErrInvalidCommand: a command was refused before it was proposed; it
// implements BadRequest() bool (true).
var ErrInvalidCommand error = &invalidError{"cluster: invalid command"}

// validateCommand checks cmd's fields before it is proposed.
func validateCommand(cmd fsm.Command) error {
	if err := cmd.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidCommand, err)
	}
	return nil
}

// encodeChecked validates cmd and encodes it as a log entry within
// maxEntrySize.
func encodeChecked(cmd fsm.Command) ([]byte, error) {
	if err := validateCommand(cmd); err != nil {
		return nil, err
	}
	data, err := cmd.Encode()
	if err != nil {
		return nil, err
	}
	if len(data) > maxEntrySize {
		return nil, fmt.Errorf("%w: %d bytes encoded (at most %d)", ErrInvalidCommand, len(data), maxEntrySize)
	}
	return data, nil
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// The notify read barrier.
//
// A change is acknowledged by the node that accepted it once that node's
// replica has applied it, but the other nodes learn the new commit index
// only with the leader's next AppendEntries, a few milliseconds later. A
// notify sent to another node in that window would match against a
// replica without the subscription. ReadBarrier closes the window with
// Raft's read-index technique: before matching, a node learns an index
// that covers every acknowledged change from the leader and waits until
// its own table has applied it.
//
// The index is the leader's *table* applied index, not Raft's commit
// index: no-op and barrier entries never reach the table (Raft keeps them
// from a batching FSM), so a table could wait forever for a commit index
// that ends on one of them. Every acknowledged change is in the leader's
// table: the leader answers its own writes and forwarded ones only after
// applying them, and a new leader applies everything of earlier terms
// before it answers (one Raft barrier per term, below).

// ErrReadBarrier: the notify read barrier could not complete in time;
// the notify goes on with the local replica.
var ErrReadBarrier = errors.New("cluster: notify read barrier failed")

// DefaultReadBarrierTimeout bounds how long a notify waits for the read
// barrier: on a healthy LAN cluster it takes one round trip to the leader
// plus at most one replication interval (CommitTimeout); a leader that is
// unreachable costs at most this much before the local replica is used.
const DefaultReadBarrierTimeout = 300 * time.Millisecond

// readBarrierWarnEvery spaces the warnings of a node that cannot complete
// its read barriers (a minority partition would otherwise log one line
// per notify).
const readBarrierWarnEvery = 10 * time.Second

// readIndexResult is the answer of /cluster/read_index.
type readIndexResult struct {
	Index uint64 `json:"index"`
}

// readState is the node's read-barrier machinery.
type readState struct {
	// termReady is the term in which this node, as leader, has applied
	// every entry of earlier terms (its Raft barrier completed).
	termReady atomic.Uint64

	gateMu sync.Mutex
	gate   *termBarrier // the barrier in flight, if any

	batchMu sync.Mutex
	// next is the read-index request not sent yet: every notify that
	// arrives before it goes out joins it, so one round trip serves a
	// burst of notifies, and each notify's request is sent after the
	// notify arrived (what makes the answer cover earlier acknowledgements).
	next    *readCall
	sending bool

	lastWarn atomic.Int64 // unix nanoseconds of the last warning
}

type termBarrier struct {
	term uint64
	done chan struct{}
	err  error
}

type readCall struct {
	done  chan struct{}
	index uint64
	err   error
}

// ReadBarrier returns once this node's table has applied every change
// the cluster acknowledged before the call, so that a notify matched
// afterwards reaches every subscription acknowledged by any node. It waits
// at most Config.ReadBarrierTimeout (also when ctx has no deadline) and
// returns an error wrapping ErrReadBarrier when it cannot tell (no leader,
// leader unreachable, replica behind): the caller then uses the local
// replica as it is. A negative ReadBarrierTimeout turns it off.
func (n *Node) ReadBarrier(ctx context.Context) error {
	if n.cfg.ReadBarrierTimeout < 0 {
		return nil
	}
	if n.raft.State() == raft.Leader && n.reads.termReady.Load() == n.raft.CurrentTerm() {
		// The leader's read index is its own applied index: nothing to
		// wait for. Skipping the timer keeps a single node's notify path
		// free of any barrier cost.
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ReadBarrierTimeout)
	defer cancel()
	index, err := n.readIndex(ctx)
	if err == nil {
		err = n.fsm.WaitApplied(ctx, index)
	}
	if err != nil {
		n.warnReadBarrier(err)
		return fmt.Errorf("%w: %w", ErrReadBarrier, err)
	}
	return nil
}

func (n *Node) warnReadBarrier(err error) {
	now := time.Now().UnixNano()
	last := n.reads.lastWarn.Load()
	if now-last < int64(readBarrierWarnEvery) || !n.reads.lastWarn.CompareAndSwap(last, now) {
		return
	}
	n.log.Warn("notify read barrier failed; notifies match the local replica, which may miss changes acknowledged elsewhere in the last moments (logged at most every 10s)",
		"err", err)
}

// readIndex returns an index that covers every change acknowledged
// anywhere before the call: the leader's own, or asked of the leader.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	if n.raft.State() == raft.Leader {
		return n.leaderReadIndex(ctx)
	}
	return n.followerReadIndex(ctx)
}

// leaderReadIndex is the leader's table applied index, once the leader
// has applied everything of earlier terms.
func (n *Node) leaderReadIndex(ctx context.Context) (uint64, error) {
	term := n.raft.CurrentTerm()
	if n.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	if n.reads.termReady.Load() != term {
		b := n.startTermBarrier(term)
		select {
		case <-b.done:
			if b.err != nil {
				return 0, b.err
			}
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: wait for the leader's barrier of term %d: %w", ErrTimeout, term, ctx.Err())
		}
	}
	return n.fsm.AppliedIndex(), nil
}

// startTermBarrier commits a Raft barrier in term (at most one in flight
// per term): when it completes this leader's table holds every entry
// committed by earlier leaders, some of which a previous leader may have
// acknowledged while this node had not applied them yet.
func (n *Node) startTermBarrier(term uint64) *termBarrier {
	n.reads.gateMu.Lock()
	defer n.reads.gateMu.Unlock()
	if b := n.reads.gate; b != nil && b.term == term {
		return b
	}
	b := &termBarrier{term: term, done: make(chan struct{})}
	n.reads.gate = b
	timeout := n.barrierTimeout()
	// Not tied to a caller: the barrier's outcome serves every notify of
	// the term. Raft answers the future when it commits, when leadership
	// is lost or at shutdown, so the goroutine always ends.
	go func() {
		err := n.raft.Barrier(timeout).Error()
		if err != nil {
			err = mapRaftErr(err)
		} else if n.reads.termReady.Load() < term {
			n.reads.termReady.Store(term)
		}
		n.reads.gateMu.Lock()
		b.err = err
		if n.reads.gate == b {
			n.reads.gate = nil
		}
		n.reads.gateMu.Unlock()
		close(b.done)
	}()
	return b
}

// followerReadIndex asks the leader for its read index, sharing one
// request among the notifies that arrive while the previous one is out.
func (n *Node) followerReadIndex(ctx context.Context) (uint64, error) {
	r := &n.reads
	r.batchMu.Lock()
	if r.next == nil {
		r.next = &readCall{done: make(chan struct{})}
	}
	c := r.next
	if !r.sending {
		r.sending = true
		go n.sendReadIndexRequests()
	}
	r.batchMu.Unlock()
	select {
	case <-c.done:
		return c.index, c.err
	case <-ctx.Done():
		return 0, fmt.Errorf("wait for the leader's read index: %w", ctx.Err())
	}
}

// sendReadIndexRequests sends the pending read-index request, then the
// one that filled up meanwhile, until none is pending. One request is out
// at a time; a batch grows with the load instead of the request count.
func (n *Node) sendReadIndexRequests() {
	r := &n.reads
	for {
		r.batchMu.Lock()
		c := r.next
		r.next = nil
		if c == nil {
			r.sending = false
			r.batchMu.Unlock()
			return
		}
		r.batchMu.Unlock()
		c.index, c.err = n.askReadIndex()
		close(c.done)
	}
}

// barrierTimeout is the read barrier's bound also where the barrier runs
// although it is off (a negative ReadBarrierTimeout): a leader's term
// barrier and the answer to a follower that has it on.
func (n *Node) barrierTimeout() time.Duration {
	if n.cfg.ReadBarrierTimeout <= 0 {
		return DefaultReadBarrierTimeout
	}
	return n.cfg.ReadBarrierTimeout
}

// readRetryPause spaces the attempts of askReadIndex while the leader's
// address is not replicated yet or the leader has just changed.
const readRetryPause = 10 * time.Millisecond

// askReadIndex asks the current leader (or answers itself, if this node
// has become the leader) within the barrier's time bound. Two transient
// conditions are retried until then: the leader's HTTP address not yet
// replicated (the first moments of a cluster or of a new leader), and a
// node that answers it no longer leads. Without any leader it gives up at
// once: a minority partition must not slow every notify down.
func (n *Node) askReadIndex() (uint64, error) {
	timeout := n.barrierTimeout()
	// A node that shuts down does not keep its last batch waiting.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ctx, stop := n.untilStop(ctx)
	defer stop()
	for {
		index, err := n.askReadIndexOnce(ctx)
		if err == nil || !errors.Is(err, ErrNotLeader) {
			return index, err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-time.After(readRetryPause):
		}
	}
}

func (n *Node) askReadIndexOnce(ctx context.Context) (uint64, error) {
	if n.raft.State() == raft.Leader {
		return n.leaderReadIndex(ctx)
	}
	id, addr, err := n.leaderHTTP()
	if err != nil {
		return 0, err
	}
	var out readIndexResult
	if err := n.peers.call(ctx, http.MethodPost, addr, id, "/cluster/read_index", struct{}{}, &out); err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.Code == http.StatusServiceUnavailable && ctx.Err() == nil {
			// Most likely a leader change under way: ask again.
			return 0, fmt.Errorf("%w: read index from %s: %w", ErrNotLeader, id, err)
		}
		return 0, fmt.Errorf("read index from leader %s: %w", id, err)
	}
	return out.Index, nil
}

// serveReadIndex answers a follower's read-index request: only the
// leader knows an index that covers every acknowledged change.
func (n *Node) serveReadIndex(w http.ResponseWriter, r *http.Request, _ []byte) {
	if n.raft.State() != raft.Leader {
		writeErr(w, ErrNotLeader)
		return
	}
	timeout := n.barrierTimeout()
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	index, err := n.leaderReadIndex(ctx)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, readIndexResult{Index: index})
}

package cluster

import (
	"github.com/hashicorp/raft"
)

// RaftStats is a reading of the node's Raft state for metrics.
type RaftStats struct {
	// State is follower, candidate, leader or shutdown.
	State                                          string
	Term, CommitIndex, AppliedIndex, LeaderChanges uint64
}

// RaftStats reads the node's Raft state now.
func (n *Node) RaftStats() RaftStats {
	return RaftStats{
		State:         n.raft.State().String(),
		Term:          n.raft.CurrentTerm(),
		CommitIndex:   n.raft.CommitIndex(),
		AppliedIndex:  n.raft.AppliedIndex(),
		LeaderChanges: n.leaderChanges.Load(),
	}
}

// countLeaderChanges counts every new leader this node learns of (a
// leader lost, with no successor yet, is not counted). The count is kept
// by the observer's filter, which raft calls for every observation, so
// none is lost to a full channel and no goroutine is needed.
func (n *Node) countLeaderChanges() {
	n.raft.RegisterObserver(raft.NewObserver(nil, false, func(o *raft.Observation) bool {
		if lo, ok := o.Data.(raft.LeaderObservation); ok && lo.LeaderID != "" {
			n.leaderChanges.Add(1)
		}
		return false
	}))
}

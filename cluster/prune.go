package cluster

import (
	"context"
	"time"
)

// Pruning: a subscriber that has been gone for a month would otherwise
// cost a connection attempt on every notify forever. Every node looks at
// its own deliveries; a URL it has failed to reach on every attempt for
// PruneAfter is a candidate, and is pruned only if the merged view of
// every member agrees (no member reached it since this streak began).
// A member that does not answer stops that round: pruning acts on the
// whole cluster's view or not at all. Several nodes may prune one URL at
// once; the removal is idempotent.

// pruneInterval is how often candidates are looked for: a tenth of
// PruneAfter, within [1 s, 1 min].
func pruneInterval(after time.Duration) time.Duration {
	return min(max(after/10, time.Second), time.Minute)
}

// runPruner prunes until the node stops.
func (n *Node) runPruner() {
	defer n.wg.Done()
	t := time.NewTicker(pruneInterval(n.cfg.PruneAfter))
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		ctx, stop := n.untilStop(ctx)
		n.pruneOnce(ctx)
		stop()
		cancel()
	}
}

// pruneOnce runs one round and returns the URLs it pruned.
func (n *Node) pruneOnce(ctx context.Context) []string {
	tracker := n.cfg.Health
	// URLs whose rows are gone (unsubscribed, pruned elsewhere) are
	// forgotten, which also bounds the tracker by the table.
	tracker.Keep(func(url string) bool {
		_, ok := n.fsm.URLRows(url)
		return ok
	})
	now := time.Now()
	cutoff := now.Add(-n.cfg.PruneAfter)
	var candidates []string
	for _, u := range tracker.DeadSince(cutoff) {
		if n.cfg.InternalURLNode == nil || n.cfg.InternalURLNode(u) == "" {
			candidates = append(candidates, u)
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	merged, err := n.clusterHealth(ctx, candidates)
	if err != nil {
		n.log.Warn("not pruning: a member's delivery health is unknown", "candidates", len(candidates), "err", err)
		return nil
	}
	var pruned []string
	for _, u := range candidates {
		h := merged[u]
		if !h.DeadSince(cutoff) {
			continue
		}
		rows, err := n.RemoveSubscriptions(ctx, RemoveRequest{URL: u})
		if err != nil {
			n.log.Warn("pruning a dead subscriber failed", "url", u, "err", err)
			continue
		}
		tracker.Forget(u)
		if rows == 0 {
			continue
		}
		pruned = append(pruned, u)
		n.log.Warn("pruned a dead subscriber: every delivery failed",
			"url", u, "rows", rows, "failing_since", h.FailingSince, "failures", h.ConsecutiveFailures, "last_error", h.LastError)
		if n.cfg.Pruned != nil {
			n.cfg.Pruned(u, rows)
		}
	}
	return pruned
}

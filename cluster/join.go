package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/lonelypsd/lonelypsd/fsm"
)

// bootInfo is what a node without a cluster tells the nodes of its join
// list, and what they answer.
type bootInfo struct {
	fsm.NodeInfo
	// HasCluster: the answering node already belongs to a cluster, so the
	// asker should join rather than bootstrap.
	HasCluster bool `json:"has_cluster"`
}

const joinRetry = 500 * time.Millisecond

// resolvePeers expands the join list: every address of every host name,
// without this node's own advertised address.
func (n *Node) resolvePeers(ctx context.Context) []string {
	var out []string
	seen := map[string]bool{n.self.HTTP: true}
	for _, j := range n.cfg.Join {
		j = strings.TrimSpace(j)
		host, port, err := net.SplitHostPort(j)
		if err != nil {
			n.log.Warn("ignoring malformed --join address", "addr", j, "err", err)
			continue
		}
		addrs := []string{host}
		if net.ParseIP(host) == nil {
			if ips, err := net.DefaultResolver.LookupHost(ctx, host); err == nil {
				addrs = ips
			}
		}
		for _, a := range addrs {
			hp := net.JoinHostPort(a, port)
			if !seen[hp] {
				seen[hp] = true
				out = append(out, hp)
			}
		}
	}
	return out
}

// joinLoop runs on a node that starts with no Raft state: it asks the
// nodes of its join list to add it to their cluster and, when none has a
// cluster yet and BootstrapExpect nodes know each other, forms one with
// them. The same command line thus works for the first start of every
// node, for a node added later, and for a node whose data was wiped.
func (n *Node) joinLoop() {
	ctx, cancel := n.untilStop(context.Background())
	defer cancel()
	for attempt := 0; ; attempt++ {
		if n.hasConfiguration() {
			n.log.Info("joined the cluster", "node", n.cfg.NodeID)
			return
		}
		peers := n.resolvePeers(ctx)
		if n.tryJoin(ctx, peers) {
			n.log.Info("added to the cluster by its leader", "node", n.cfg.NodeID)
			return
		}
		if n.cfg.BootstrapExpect > 0 && n.tryBootstrap(ctx, peers) {
			return
		}
		if attempt%20 == 0 {
			n.log.Info("waiting for the cluster to form", "peers", peers, "bootstrap_expect", n.cfg.BootstrapExpect)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(joinRetry):
		}
	}
}

func (n *Node) hasConfiguration() bool {
	f := n.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

func (n *Node) tryJoin(ctx context.Context, peers []string) bool {
	for _, p := range peers {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.peers.callAt(cctx, http.MethodPost, p, "/cluster/join", n.self, nil)
		cancel()
		if err == nil {
			return true
		}
		var se *StatusError
		if errors.As(err, &se) && se.Code == http.StatusForbidden {
			n.log.Error("a peer refused to add this node: check the cluster secret", "peer", p, "err", err)
		}
	}
	return false
}

func (n *Node) tryBootstrap(ctx context.Context, peers []string) bool {
	known := map[string]fsm.NodeInfo{n.self.ID: n.self}
	for _, p := range peers {
		var out bootInfo
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.peers.callAt(cctx, http.MethodPost, p, "/cluster/boot", n.self, &out)
		cancel()
		if err != nil || out.ID == "" {
			continue
		}
		if out.HasCluster {
			// Someone has a cluster already: joining it is the way in.
			return false
		}
		known[out.ID] = out.NodeInfo
	}
	n.bootMu.Lock()
	for id, c := range n.candidates {
		known[id] = c
	}
	n.bootMu.Unlock()
	if len(known) < n.cfg.BootstrapExpect {
		return false
	}
	ids := make([]string, 0, len(known))
	for id := range known {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var servers []raft.Server
	for _, id := range ids {
		servers = append(servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(known[id].Raft), Suffrage: raft.Voter})
	}
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		n.log.Error("bootstrapping the cluster failed", "err", err)
		return false
	}
	n.log.Info("formed a new cluster", "members", ids)
	return true
}

// noteCandidate records a node without a cluster that contacted this one.
func (n *Node) noteCandidate(info fsm.NodeInfo) bootInfo {
	n.bootMu.Lock()
	n.candidates[info.ID] = info
	n.bootMu.Unlock()
	return bootInfo{NodeInfo: n.self, HasCluster: n.hasConfiguration()}
}

// addMember makes info a voter, replacing a stale entry with the same id
// or the same Raft address (a node whose data was wiped, or that came back
// under another name). Runs on the leader.
func (n *Node) addMember(ctx context.Context, info fsm.NodeInfo) error {
	if info.ID == "" || info.Raft == "" || info.HTTP == "" {
		return errors.New("cluster: a member needs an id, a raft address and an http address")
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return mapRaftErr(err)
	}
	present := false
	for _, s := range f.Configuration().Servers {
		sameID, sameAddr := string(s.ID) == info.ID, string(s.Address) == info.Raft
		switch {
		case sameID && sameAddr:
			present = true
		case sameID || sameAddr:
			n.log.Info("replacing a stale cluster member", "old_id", s.ID, "old_raft", s.Address, "new_id", info.ID, "new_raft", info.Raft)
			if err := n.raft.RemoveServer(s.ID, 0, 0).Error(); err != nil {
				return mapRaftErr(err)
			}
		}
	}
	if !present {
		if err := n.raft.AddVoter(raft.ServerID(info.ID), raft.ServerAddress(info.Raft), 0, 0).Error(); err != nil {
			return mapRaftErr(err)
		}
		n.log.Info("added a cluster member", "id", info.ID, "raft", info.Raft, "http", info.HTTP)
	}
	_, _, err := n.applyLocal(ctx, fsm.Command{Op: fsm.OpSetNode, ID: newRequestID(), Node: &info})
	return err
}

// RemoveMember takes a node out of the cluster and forgets it. Runs on
// the leader (the /cluster/remove endpoint forwards it there).
func (n *Node) removeMember(ctx context.Context, id string) error {
	if id == n.cfg.NodeID && len(n.otherServers()) == 0 {
		return errors.New("cluster: cannot remove the only member")
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, 0).Error(); err != nil {
		return mapRaftErr(err)
	}
	_, _, err := n.applyLocal(ctx, fsm.Command{Op: fsm.OpRemoveNode, ID: newRequestID(), Node: &fsm.NodeInfo{ID: id}})
	if err != nil {
		return fmt.Errorf("forget node %s: %w", id, err)
	}
	n.log.Info("removed a cluster member", "id", id)
	return n.removeRowsOf(ctx, id)
}

// removeRowsOf removes the internal subscriptions a removed member held
// for its websocket clients: nobody is left to deliver to.
func (n *Node) removeRowsOf(ctx context.Context, id string) error {
	if n.cfg.InternalURLNode == nil {
		return nil
	}
	removed := 0
	for _, s := range n.fsm.All() {
		if n.cfg.InternalURLNode(s.URL) != id {
			continue
		}
		cmd := s.Unsubscribe()
		cmd.ID = newRequestID()
		if _, _, err := n.applyLocal(ctx, cmd); err != nil {
			return fmt.Errorf("remove subscriptions of node %s: %w", id, err)
		}
		removed++
	}
	if removed > 0 {
		n.log.Info("removed the internal subscriptions of a removed member", "id", id, "count", removed)
	}
	return nil
}

// registerSelf makes sure the replicated member table holds this node's
// current addresses, so that followers can forward writes to it when it
// leads. It runs at every start and waits for a leader.
func (n *Node) registerSelf() {
	for {
		if cur, ok := n.fsm.Node(n.self.ID); ok && cur == n.self {
			return
		}
		if n.hasConfiguration() {
			if id, _ := n.Leader(); id != "" {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := n.Apply(ctx, fsm.Command{Op: fsm.OpSetNode, Node: &n.self})
				cancel()
				if err == nil {
					return
				}
				n.log.Debug("registering this node's addresses failed; retrying", "err", err)
			}
		}
		select {
		case <-n.stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// inProcess is a node of a test cluster running in this process: real
// TCP for Raft and for its /cluster endpoints, real files.
type inProcess struct {
	node *Node
	srv  *http.Server
	http string
}

// startInProcess forms an n-node cluster the way production does: every
// node gets the same join list and bootstrap-expect.
func startInProcess(t *testing.T, n int) []*inProcess {
	t.Helper()
	return startInProcessWith(t, n, nil)
}

// startInProcessWith is startInProcess with mod applied to every node's
// configuration.
func startInProcessWith(t *testing.T, n int, mod func(*Config)) []*inProcess {
	t.Helper()
	var lns []net.Listener
	var join []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, l)
		join = append(join, l.Addr().String())
	}
	nodes := make([]*inProcess, n)
	for i := range n {
		dir := t.TempDir()
		cfg := Config{
			NodeID: fmt.Sprintf("n%d", i+1), RaftAddr: lonelypsdtest.FreeAddr(t), DataDir: filepath.Join(dir, "data"),
			AdvertiseHTTP: join[i], Join: join, BootstrapExpect: n, Secret: "test-secret",
			Logger: slog.New(slog.DiscardHandler),
		}
		if mod != nil {
			mod(&cfg)
		}
		node, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: node.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(lns[i]) }()
		nodes[i] = &inProcess{node: node, srv: srv, http: join[i]}
	}
	t.Cleanup(func() {
		for _, p := range nodes {
			_ = p.srv.Close()
			_ = p.node.Close()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, p := range nodes {
		if err := p.node.WaitForLeader(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

func subscribeCmd(topic string) fsm.Command {
	return fsm.Command{Op: fsm.OpSubscribeExact, URL: "http://127.0.0.1:9/r", Topic: []byte(topic)}
}

func TestInProcessClusterAppliesFromEveryNode(t *testing.T) {
	nodes := startInProcess(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Concurrent writes through every node, followers forwarding.
	var wg sync.WaitGroup
	errs := make(chan error, 90)
	for i, p := range nodes {
		for j := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := p.node.Apply(ctx, subscribeCmd(fmt.Sprintf("t%d-%d", i, j)))
				if err == nil && res.Outcome != fsm.Applied {
					err = fmt.Errorf("outcome %d", res.Outcome)
				}
				if err != nil {
					errs <- err
					return
				}
				// Read-your-writes at the accepting node.
				if _, ok := p.node.FSM().Lookup(fsm.Exact, "http://127.0.0.1:9/r", fmt.Sprintf("t%d-%d", i, j)); !ok {
					errs <- fmt.Errorf("node %d does not see its own write", i)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// A retry of a write (same request id) reports its first outcome.
	cmd := subscribeCmd("once")
	cmd.ID = "fixed-request-id"
	for range 2 {
		res, err := nodes[1].node.Apply(ctx, cmd)
		if err != nil || res.Outcome != fsm.Applied {
			t.Fatalf("retried write: %+v, %v", res, err)
		}
	}
	// Every replica converges and knows every member's address.
	for _, p := range nodes {
		lonelypsdtest.WaitFor(t, p.node.ID()+" to hold 91 rows and 3 members", 5*time.Second, func() bool {
			e, _ := p.node.FSM().Counts()
			return e == 91 && len(p.node.FSM().Nodes()) == 3
		})
		if err := p.node.Ready(); err != nil {
			t.Fatalf("%s not ready: %v", p.node.ID(), err)
		}
	}
}

func TestInProcessClusterSurvivesLeaderShutdown(t *testing.T) {
	nodes := startInProcess(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var leader *inProcess
	for _, p := range nodes {
		if p.node.IsLeader() {
			leader = p
		}
	}
	if leader == nil {
		t.Fatal("no leader")
	}
	// A clean shutdown hands leadership over first.
	_ = leader.srv.Close()
	if err := leader.node.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range nodes {
		if p == leader {
			continue
		}
		if _, err := p.node.Apply(ctx, subscribeCmd("after-"+p.node.ID())); err != nil {
			t.Fatalf("write at %s after the leader left: %v", p.node.ID(), err)
		}
	}
}

func TestApplyWithoutLeaderAnswersWithinTheDeadline(t *testing.T) {
	// A node told to join nobody reachable never gets a leader.
	node, err := Open(Config{
		NodeID: "alone", RaftAddr: lonelypsdtest.FreeAddr(t), DataDir: t.TempDir(), AdvertiseHTTP: lonelypsdtest.FreeAddr(t),
		Join: []string{lonelypsdtest.FreeAddr(t)}, Secret: "test-secret", Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = node.Apply(ctx, subscribeCmd("x"))
	if err == nil || !isNoLeader(err) {
		t.Fatalf("apply without a leader: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s", d)
	}
	if node.Ready() == nil {
		t.Fatal("ready without a leader")
	}
}

func isNoLeader(err error) bool { return errors.Is(err, ErrNoLeader) }

// TestRecoverFromPeersJSON: after losing quorum for good, an operator
// writes peers.json on a survivor; it restarts as a cluster of the
// servers listed, with every row it had.
func TestRecoverFromPeersJSON(t *testing.T) {
	nodes := startInProcess(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 10 {
		if _, err := nodes[0].node.Apply(ctx, subscribeCmd(fmt.Sprintf("r%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	survivor := nodes[2]
	if err := survivor.node.FSM().WaitApplied(ctx, nodes[0].node.raft.LastIndex()); err != nil {
		t.Fatal(err)
	}
	cfg := survivor.node.cfg
	for _, p := range nodes {
		_ = p.srv.Close()
		_ = p.node.Close()
	}
	peers := fmt.Sprintf(`[{"id": %q, "address": %q, "non_voter": false}]`, cfg.NodeID, cfg.AdvertiseRaft)
	raftDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.WriteFile(filepath.Join(raftDir, "peers.json"), []byte(peers), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Join, cfg.BootstrapExpect = nil, 0
	node, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if err := node.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := node.FSM().Counts(); n != 10 {
		t.Fatalf("%d rows after recovery, want 10", n)
	}
	if _, err := node.Apply(ctx, subscribeCmd("after-recovery")); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
	if _, err := os.Stat(filepath.Join(raftDir, "peers.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("peers.json still there: %v", err)
	}
}

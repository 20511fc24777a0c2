package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/api/auth"
	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/wire"
	"github.com/lonelypsd/lonelypsd/cluster"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

// testCluster is N real lonelypsd processes forming one cluster with the
// same command line each, as deploy/local/cluster.sh starts them.
type testCluster struct {
	t       *testing.T
	nodes   []*lonelypsdtest.Proc
	secret  string
	secrets string
}

func startCluster(t *testing.T, n int, extra ...string) *testCluster {
	t.Helper()
	dir := setupDir(t, "none", "none")
	secretsPath := filepath.Join(dir, "broadcaster-secrets.json")
	s, err := auth.LoadSecrets(secretsPath)
	if err != nil || s.Cluster == "" {
		t.Fatalf("setup wrote no cluster secret: %+v %v", s, err)
	}
	c := &testCluster{t: t, secret: s.Cluster, secrets: secretsPath}
	var https, join []string
	for range n {
		port := lonelypsdtest.FreePort(t)
		https = append(https, fmt.Sprintf("127.0.0.1:%d", port))
		// Names, not addresses: discovery resolves them (localhost may
		// also give ::1, where nobody listens).
		join = append(join, fmt.Sprintf("localhost:%d", port))
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range c.nodes {
				if p != nil {
					t.Logf("log of %s:\n%s", p.Args[2], p.Logs())
				}
			}
		}
	})
	var wg sync.WaitGroup
	c.nodes = make([]*lonelypsdtest.Proc, n)
	for i := range n {
		args := []string{"serve", "--node-id", fmt.Sprintf("n%d", i+1),
			"--http-addr", https[i], "--raft-addr", fmt.Sprintf("127.0.0.1:%d", lonelypsdtest.FreePort(t)),
			"--data-dir", filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			"--join", strings.Join(join, ","), "--bootstrap-expect", fmt.Sprint(n),
			"--secrets", secretsPath, "--missed-sweep-interval", "100ms"}
		args = append(args, extra...)
		p := lonelypsdtest.NewProc(t, binPath, "http://"+https[i], args[8], args)
		c.nodes[i] = p
		wg.Add(1)
		// Started together: each waits for the others to form the cluster.
		go func() {
			defer wg.Done()
			if err := p.Launch(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, p := range c.nodes {
		p.WaitReady()
	}
	return c
}

func (c *testCluster) status(p *lonelypsdtest.Proc) (cluster.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return cluster.NewClient(c.secret).Status(ctx, p.Addr())
}

// leader returns the node that is leader according to a live node.
func (c *testCluster) leader() (int, *lonelypsdtest.Proc) {
	c.t.Helper()
	li := -1
	lonelypsdtest.WaitFor(c.t, "a leader", 5*time.Second, func() bool {
		for i, p := range c.nodes {
			if !p.Alive() {
				continue
			}
			if st, err := c.status(p); err == nil && st.State == "Leader" {
				li = i
				return true
			}
		}
		return false
	})
	return li, c.nodes[li]
}

func (c *testCluster) followers() []*lonelypsdtest.Proc {
	li, _ := c.leader()
	var out []*lonelypsdtest.Proc
	for i, p := range c.nodes {
		if i != li && p.Alive() {
			out = append(out, p)
		}
	}
	return out
}

// topics lists, from node p's replica, the exact topics of url.
func (c *testCluster) topics(p *lonelypsdtest.Proc, url string) []string {
	c.t.Helper()
	return tableKeys(c.t, c.secret, p, url)
}

func TestClusterForwardsWritesAndDeliversFromAnyNode(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t)
	f := c.followers()
	s := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())

	// Subscribe at one follower, notify at the other.
	if err := f[0].Client().SubscribeExact(ctx, s.Receive, []byte("a"), s.Recover); err != nil {
		t.Fatal(err)
	}
	lonelypsdtest.WaitFor(t, "replication to the other follower", 5*time.Second, func() bool {
		return len(c.topics(f[1], s.Receive)) == 1
	})
	if n, err := f[1].Client().Notify(ctx, []byte("a"), []byte("hello")); err != nil || n != 1 {
		t.Fatalf("notify at the other follower: %d, %v", n, err)
	}
	// Read-your-writes at the accepting node, every time.
	for i := range 30 {
		p := c.nodes[i%3]
		topic := []byte(fmt.Sprintf("ryw-%d", i))
		if err := p.Client().SubscribeExact(ctx, s.Receive, topic, ""); err != nil {
			t.Fatal(err)
		}
		if n, err := p.Client().Notify(ctx, topic, []byte("m")); err != nil || n != 1 {
			t.Fatalf("subscribe-then-notify at node %d: %d, %v", i%3+1, n, err)
		}
	}
	// 409 from a follower too, and the same etag everywhere once caught up.
	if err := f[0].Client().SubscribeExact(ctx, s.Receive, []byte("a"), s.Recover); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("duplicate at a follower: %v", err)
	}
	var etags [][64]byte
	lonelypsdtest.WaitFor(t, "equal etags on every node", 5*time.Second, func() bool {
		etags = etags[:0]
		for _, p := range c.nodes {
			e, err := p.Client().CheckSubscriptions(ctx, s.Receive)
			if err != nil {
				return false
			}
			etags = append(etags, e)
		}
		return etags[0] == etags[1] && etags[1] == etags[2]
	})
	// An UNSUBSCRIBE_IMMEDIATE seen by a follower's delivery removes the
	// subscription cluster-wide.
	bye := lonelypsdtest.Replying(client.Unsubscribe)
	b := lonelypsdtest.StartSubscriber(t, bye)
	if err := f[0].Client().SubscribeGlob(ctx, b.Receive, "bye/*", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f[0].Client().Notify(ctx, []byte("bye/now"), nil); err != nil {
		t.Fatal(err)
	}
	empty := wire.Etag(b.Receive, nil, nil)
	for _, p := range c.nodes {
		lonelypsdtest.WaitFor(t, "removal on every node", 5*time.Second, func() bool {
			e, err := p.Client().CheckSubscriptions(ctx, b.Receive)
			return err == nil && e == empty
		})
	}
}

func TestClusterKillLeaderDuringSubscribes(t *testing.T) {
	c := startCluster(t, 3)
	li, leader := c.leader()
	url := "http://127.0.0.1:9/v1/receive"

	var (
		mu    sync.Mutex
		acked []string
	)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	stopAt := make(chan struct{})
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stopAt:
					return
				default:
				}
				// Spread over all nodes; the killed one's requests fail.
				p := c.nodes[(w+i)%3]
				topic := fmt.Sprintf("w%d-%d", w, i)
				rctx, rcancel := context.WithTimeout(ctx, 6*time.Second)
				err := p.Client().SubscribeExact(rctx, url, []byte(topic), "")
				rcancel()
				if err == nil || errors.Is(err, client.ErrConflict) {
					mu.Lock()
					acked = append(acked, topic)
					mu.Unlock()
				}
			}
		}()
	}
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	lonelypsdtest.WaitFor(t, "subscribes acknowledged before the kill", 20*time.Second, func() bool { return ackedCount() >= 40 })
	killed := time.Now()
	leader.Kill()
	// Writes resume at a new leader, within a bounded time.
	survivor := c.nodes[(li+1)%3]
	var probeErr error
	defer func() {
		if t.Failed() && probeErr != nil {
			t.Logf("last write error after the leader died: %v", probeErr)
		}
	}()
	lonelypsdtest.WaitFor(t, "a successful write after the leader died", 10*time.Second, func() bool {
		probeErr = survivor.Client().SubscribeExact(ctx, url, []byte(fmt.Sprintf("probe-%d", time.Now().UnixNano())), "")
		return probeErr == nil
	})
	t.Logf("leader killed to first successful write: %s", time.Since(killed))
	before := ackedCount()
	lonelypsdtest.WaitFor(t, "subscribes acknowledged by the new leader", 20*time.Second, func() bool { return ackedCount() >= before+20 })
	close(stopAt)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 50 {
		t.Fatalf("only %d subscribes acknowledged; the test did not exercise much", len(acked))
	}
	for _, p := range c.nodes {
		if !p.Alive() {
			continue
		}
		lonelypsdtest.WaitFor(t, "survivors to converge", 5*time.Second, func() bool {
			have := map[string]bool{}
			for _, k := range c.topics(p, url) {
				have[k] = true
			}
			for _, a := range acked {
				if !have[a] {
					return false
				}
			}
			return true
		})
	}
	// The killed node restarts and catches up.
	leader.Start()
	want := c.topics(c.nodes[(li+1)%3], url)
	lonelypsdtest.WaitFor(t, "the restarted node to catch up", 10*time.Second, func() bool {
		return slices.Equal(c.topics(leader, url), want)
	})
	t.Logf("%d acknowledged subscribes, all present on every node", len(acked))
}

func TestClusterWipedNodeRejoins(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t)
	url := "http://127.0.0.1:9/v1/receive"
	for i := range 20 {
		if err := c.nodes[i%3].Client().SubscribeExact(ctx, url, []byte(fmt.Sprintf("t%d", i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	victim := c.followers()[0]
	victim.Stop()
	if err := os.RemoveAll(victim.DataDir); err != nil {
		t.Fatal(err)
	}
	// Writes go on while it is away.
	if err := c.followers()[0].Client().SubscribeExact(ctx, url, []byte("while-away"), ""); err != nil {
		t.Fatal(err)
	}
	victim.Start()
	lonelypsdtest.WaitFor(t, "the wiped node to converge", 10*time.Second, func() bool {
		return len(c.topics(victim, url)) == 21
	})
	if st, err := c.status(victim); err != nil || len(st.Members) != 3 {
		t.Fatalf("members after rejoin: %+v, %v", st, err)
	}
	e0, err0 := c.nodes[0].Client().CheckSubscriptions(ctx, url)
	ev, errv := victim.Client().CheckSubscriptions(ctx, url)
	if err0 != nil || errv != nil || e0 != ev {
		t.Fatalf("etags: %x (%v) at n1, %x (%v) at the rejoined node", e0, err0, ev, errv)
	}
}

func TestClusterMinorityServesNotifiesAndRefusesWrites(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t)
	s := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())
	if err := c.nodes[0].Client().SubscribeExact(ctx, s.Receive, []byte("t"), ""); err != nil {
		t.Fatal(err)
	}
	lone := c.nodes[2]
	lonelypsdtest.WaitFor(t, "replication", 5*time.Second, func() bool { return len(c.topics(lone, s.Receive)) == 1 })
	// Freeze the two others: lone is a minority of one.
	for _, p := range c.nodes[:2] {
		_ = p.Signal(syscall.SIGSTOP)
	}
	defer func() {
		for _, p := range c.nodes[:2] {
			_ = p.Signal(syscall.SIGCONT)
		}
	}()
	if n, err := lone.Client().Notify(ctx, []byte("t"), []byte("still here")); err != nil || n != 1 {
		t.Fatalf("notify in the minority: %d, %v\n%s", n, err, lone.Logs())
	}
	start := time.Now()
	if err := lone.Client().SubscribeExact(ctx, s.Receive, []byte("minority"), ""); statusOf(err) != http.StatusServiceUnavailable {
		t.Fatalf("write in the minority: %v, want 503", err)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("the 503 took %s", d)
	}
	if code, text := lonelypsdtest.Get(t, lone.HTTP+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz in the minority: %d %s", code, text)
	}
	for _, p := range c.nodes[:2] {
		_ = p.Signal(syscall.SIGCONT)
	}
	// Healed: writes work again at the same node and converge.
	lonelypsdtest.WaitFor(t, "writes to work after healing", 10*time.Second, func() bool {
		err := lone.Client().SubscribeExact(ctx, s.Receive, []byte("healed"), "")
		return err == nil || errors.Is(err, client.ErrConflict)
	})
	for _, p := range c.nodes {
		lonelypsdtest.WaitFor(t, "convergence", 5*time.Second, func() bool {
			ts := c.topics(p, s.Receive)
			return slices.Contains(ts, "t") && slices.Contains(ts, "healed")
		})
	}
}

// TestClusterCompactsLogAndCatchesUpFromSnapshot: under a steady stream of
// changes the Raft log is compacted into snapshots, and a node that was
// away for the whole stream catches up from a snapshot.
func TestClusterCompactsLogAndCatchesUpFromSnapshot(t *testing.T) {
	c := startCluster(t, 3, "--raft-snapshot-threshold", "100", "--raft-trailing-logs", "20", "--raft-snapshot-interval", "100ms")
	ctx := ctxT(t)
	url := "http://127.0.0.1:9/v1/receive"
	away := c.followers()[0]
	away.Stop()
	var live []*lonelypsdtest.Proc
	for _, p := range c.nodes {
		if p.Alive() {
			live = append(live, p)
		}
	}
	for i := range 600 {
		if err := live[i%2].Client().SubscribeExact(ctx, url, []byte(fmt.Sprintf("t%04d", i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		if err := live[i%2].Client().UnsubscribeExact(ctx, url, []byte(fmt.Sprintf("t%04d", i*2))); err != nil {
			t.Fatal(err)
		}
	}
	_, leader := c.leader()
	lonelypsdtest.WaitFor(t, "a snapshot on the leader", 10*time.Second, func() bool {
		snaps, _ := filepath.Glob(filepath.Join(leader.DataDir, "raft", "snapshots", "*", "meta.json"))
		return len(snaps) > 0
	})
	snaps, _ := filepath.Glob(filepath.Join(leader.DataDir, "raft", "snapshots", "*"))
	if len(snaps) > 2 {
		t.Fatalf("%d snapshots retained, want at most 2", len(snaps))
	}
	away.Start()
	lonelypsdtest.WaitFor(t, "the returning node to catch up", 30*time.Second, func() bool {
		return len(c.topics(away, url)) == 300
	})
	e1, _ := leader.Client().CheckSubscriptions(ctx, url)
	e2, _ := away.Client().CheckSubscriptions(ctx, url)
	if e1 != e2 {
		t.Fatal("the node that caught up reports another etag")
	}
}

// TestClusterRemoveMember: `lonelypsd cluster remove` shrinks the cluster
// and drops the removed node's internal websocket subscriptions.
func TestClusterRemoveMember(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t)
	gone := c.followers()[0]
	st, err := c.status(gone)
	if err != nil {
		t.Fatal(err)
	}
	internal := gone.HTTP + "/v1/receive_for_websockets?node=" + st.ID + "&inc=abc"
	other := "http://127.0.0.1:9/v1/receive_for_websockets?node=elsewhere&inc=abc"
	for _, u := range []string{internal, other} {
		if err := c.nodes[0].Client().SubscribeExact(ctx, u, []byte("t"), ""); err != nil {
			t.Fatal(err)
		}
	}
	gone.Stop()
	if out, errs, code := cli(t, "cluster", "remove", st.ID, "--addr", c.followers()[0].Addr(), "--secrets", c.secrets); code != 0 {
		t.Fatalf("cluster remove: exit %d\n%s%s", code, out, errs)
	}
	var live *lonelypsdtest.Proc
	for _, p := range c.nodes {
		if p.Alive() {
			live = p
		}
	}
	lonelypsdtest.WaitFor(t, "two members", 5*time.Second, func() bool {
		s, err := c.status(live)
		return err == nil && len(s.Members) == 2
	})
	lonelypsdtest.WaitFor(t, "the removed node's subscriptions to go", 5*time.Second, func() bool {
		return len(c.topics(live, internal)) == 0
	})
	if len(c.topics(live, other)) != 1 {
		t.Fatal("another node's subscription was removed")
	}
	// Without the cluster secret the request is refused.
	if out, errs, code := cli(t, "cluster", "remove", "n1", "--addr", live.Addr()); code == 0 || !strings.Contains(out+errs, "403") {
		t.Fatalf("unsigned remove: exit %d\n%s%s", code, out, errs)
	}
	// Writes still work with two of three.
	if err := live.Client().SubscribeExact(ctx, other, []byte("after"), ""); err != nil {
		t.Fatal(err)
	}
	// The status command prints the leader and both members.
	out, errs, code := cli(t, "cluster", "status", "--addr", live.Addr())
	if code != 0 || !strings.Contains(out, "leader: n") || strings.Contains(out+errs, st.ID+" ") {
		t.Fatalf("cluster status: exit %d\n%s%s", code, out, errs)
	}
}

// TestAdvertisedAddressesSeparateFromBind: bound on every interface, a
// node tells peers the addresses it was given to advertise.
func TestAdvertisedAddressesSeparateFromBind(t *testing.T) {
	hp, rp := lonelypsdtest.FreePort(t), lonelypsdtest.FreePort(t)
	dir := t.TempDir()
	args := []string{"serve", "--node-id", "a1", "--bootstrap",
		"--http-addr", fmt.Sprintf("0.0.0.0:%d", hp), "--advertise-http", fmt.Sprintf("127.0.0.1:%d", hp),
		"--raft-addr", fmt.Sprintf("0.0.0.0:%d", rp), "--advertise-raft", fmt.Sprintf("localhost:%d", rp),
		"--data-dir", dir}
	lonelypsdtest.StartProc(t, binPath, fmt.Sprintf("http://127.0.0.1:%d", hp), dir, args)
	want := cluster.Member{ID: "a1", HTTP: fmt.Sprintf("127.0.0.1:%d", hp), Raft: fmt.Sprintf("localhost:%d", rp), Voter: true}
	// The node records its HTTP address through Raft just after start.
	lonelypsdtest.WaitFor(t, "the advertised addresses in the member list", 5*time.Second, func() bool {
		st, err := cluster.NewClient("").Status(ctxT(t), fmt.Sprintf("127.0.0.1:%d", hp))
		return err == nil && len(st.Members) == 1 && st.Members[0] == want
	})
	// Without an advertised address a wildcard bind is refused with a reason.
	out, errs, code := cli(t, "serve", "--node-id", "a2", "--bootstrap", "--http-addr", fmt.Sprintf("0.0.0.0:%d", lonelypsdtest.FreePort(t)),
		"--raft-addr", fmt.Sprintf("127.0.0.1:%d", lonelypsdtest.FreePort(t)), "--data-dir", t.TempDir())
	if code == 0 || !strings.Contains(out+errs, "wildcard") {
		t.Fatalf("wildcard without --advertise-http: exit %d\n%s%s", code, out, errs)
	}
}

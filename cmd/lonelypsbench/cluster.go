package main

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/cluster"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

// benchCluster is three lonelypsd processes started as deploy/local/cluster.sh
// starts them: the same --join list and --bootstrap-expect 3 on each.
type benchCluster struct {
	nodes []*server
	dir   string
}

// startCluster starts the cluster and returns it with the index of its
// leader once every node is ready.
func startCluster(ctx context.Context, bin string, extra ...string) (*benchCluster, int, error) {
	dir, err := os.MkdirTemp("", "lonelypsbench-cluster-")
	if err != nil {
		return nil, 0, err
	}
	var https []string
	for range 3 {
		a, err := lonelypsdtest.PickAddr()
		if err != nil {
			return nil, 0, err
		}
		https = append(https, a)
	}
	c := &benchCluster{dir: dir}
	// Nodes that form a cluster refuse to start without a shared secret.
	secret := make([]byte, 48)
	if _, err := crand.Read(secret); err != nil {
		c.stop()
		return nil, 0, err
	}
	secretFile := filepath.Join(dir, "cluster-secret")
	if err := os.WriteFile(secretFile, []byte(base64.URLEncoding.EncodeToString(secret)), 0o600); err != nil {
		c.stop()
		return nil, 0, err
	}
	for i := range 3 {
		raftAddr, err := lonelypsdtest.PickAddr()
		if err != nil {
			c.stop()
			return nil, 0, err
		}
		args := []string{"serve", "--node-id", fmt.Sprintf("n%d", i+1),
			"--http-addr", https[i], "--raft-addr", raftAddr, "--data-dir", filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			"--join", strings.Join(https, ","), "--bootstrap-expect", "3", "--cluster-secret-file", secretFile, "--log-level", "warn"}
		s, err := launch(bin, "", https[i], append(args, extra...)...)
		if err != nil {
			c.stop()
			return nil, 0, err
		}
		c.nodes = append(c.nodes, s)
	}
	for _, s := range c.nodes {
		if err := s.waitReady(ctx); err != nil {
			c.stop()
			return nil, 0, err
		}
	}
	li, err := c.leader(ctx)
	if err != nil {
		c.stop()
		return nil, 0, err
	}
	return c, li, nil
}

func (c *benchCluster) stop() {
	for _, s := range c.nodes {
		if s.alive() {
			s.stop()
		}
	}
	_ = os.RemoveAll(c.dir)
}

func (s *server) alive() bool { return !lonelypsdtest.Ended(s.done) }

func (c *benchCluster) leader(ctx context.Context) (int, error) {
	cl := cluster.NewClient("")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, s := range c.nodes {
			if !s.alive() {
				continue
			}
			st, err := cl.Status(ctx, strings.TrimPrefix(s.base, "http://"))
			if err == nil && st.State == "Leader" {
				return i, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("no leader")
}

// benchClient sends every request once: a refusal is counted, not
// retried out of sight.
func benchClient(base string) *client.Client {
	c := client.New(base)
	c.HTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxIdleConns: 256}}
	c.Retry = client.Retry{}
	return c
}

// runCluster measures a three-node cluster: subscribes at the leader and
// at a follower, notifies on all three nodes at once, and failover.
func runCluster(ctx context.Context, o options) error {
	// At the size of the large table, only when asked for.
	if o.only != "" && strings.Contains("snapshot", o.only) {
		return runSnapshotAtSize(ctx, o)
	}
	c, li, err := startCluster(ctx, o.server)
	if err != nil {
		return err
	}
	defer c.stop()
	fi := (li + 1) % 3

	fmt.Printf("| three-node cluster | subscribes/s | p50 | p99 |\n|---|---|---|---|\n")
	for _, t := range []struct {
		name string
		node int
	}{{"subscribe at the leader, 64 in flight", li}, {"subscribe at a follower, 64 in flight", fi}} {
		rate, p50, p99, err := subscribeWorkload(ctx, benchClient(c.nodes[t.node].base), o.subCount, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		fmt.Printf("| %s | %.0f | %s | %s |\n", t.name, rate, p50.Round(time.Microsecond), p99.Round(time.Microsecond))
	}

	// Notifies on all three nodes at once: 10 subscribers on one topic,
	// o.concurrency notifiers per node.
	pool, err := startSubscribers(10)
	if err != nil {
		return err
	}
	defer pool.close()
	for _, u := range pool.urls {
		if err := benchClient(c.nodes[li].base).SubscribeExact(ctx, u, []byte("all"), ""); err != nil {
			return err
		}
	}
	// Every node must see the subscriptions before it is measured.
	time.Sleep(200 * time.Millisecond)
	msg := make([]byte, o.msgSize)
	var clients []*client.Client
	for _, s := range c.nodes {
		cl := benchClient(s.base)
		for range o.concurrency {
			clients = append(clients, cl)
		}
	}
	before := pool.received()
	notifies, lat, elapsed, err := notifyLoop(ctx, clients, o.duration, 10, func(*rand.Rand) []byte { return []byte("all") }, msg)
	if err != nil {
		return err
	}
	if len(lat) == 0 {
		return fmt.Errorf("no notify completed in %s", o.duration)
	}
	fmt.Printf("\n| notify on all three nodes at once (10 subscribers, %d notifiers per node) | notifies/s | deliveries/s | p50 | p99 |\n|---|---|---|---|---|\n", o.concurrency)
	fmt.Printf("| cluster total | %.0f | %.0f | %s | %s |\n", float64(notifies)/elapsed.Seconds(),
		float64(pool.received()-before)/elapsed.Seconds(), lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond))

	failovers, err := c.failovers(ctx, o.server)
	if err != nil {
		return err
	}
	fmt.Printf("\n| failover (leader killed with SIGKILL to first successful write) | round 1 | round 2 | round 3 |\n|---|---|---|---|\n")
	fmt.Printf("| default Raft timeouts (200 ms heartbeat and election) | %s | %s | %s |\n",
		failovers[0].Round(time.Millisecond), failovers[1].Round(time.Millisecond), failovers[2].Round(time.Millisecond))
	return nil
}

// failovers kills the leader with SIGKILL three times and returns, for
// each round, the time until a write succeeded at a survivor; the killed
// node is started again between rounds.
func (c *benchCluster) failovers(ctx context.Context, bin string) ([]time.Duration, error) {
	var failovers []time.Duration
	for round := range 3 {
		li, err := c.leader(ctx)
		if err != nil {
			return nil, err
		}
		survivor := benchClient(c.nodes[(li+1)%3].base)
		_ = c.nodes[li].cmd.Process.Kill()
		<-c.nodes[li].done
		killed := time.Now()
		for i := 0; ; i++ {
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
			err := survivor.SubscribeExact(wctx, "http://127.0.0.1:9/failover", []byte("r"+strconv.Itoa(round)+"-"+strconv.Itoa(i)), "")
			wcancel()
			if err == nil {
				break
			}
			if time.Since(killed) > 15*time.Second {
				return nil, fmt.Errorf("no write 15s after killing the leader: %w", err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		failovers = append(failovers, time.Since(killed))
		// Bring the node back for the next round.
		args := c.nodes[li].cmd.Args[1:]
		s, err := launch(bin, "", c.nodes[li].base[len("http://"):], args...)
		if err != nil {
			return nil, err
		}
		c.nodes[li] = s
		if err := s.waitReady(ctx); err != nil {
			return nil, err
		}
	}
	return failovers, nil
}

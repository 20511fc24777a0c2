package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/lonelypsd/lonelypsd/cluster"
)

// snapshotFlags make the three nodes snapshot soon after the table is
// loaded and keep few entries behind it, so a wiped follower can only
// catch up from a snapshot, as one that lagged far would.
var snapshotFlags = []string{"--raft-snapshot-threshold", "1024", "--raft-snapshot-interval", "2s", "--raft-trailing-logs", "256"}

// runSnapshotAtSize loads the large table into a three-node cluster,
// waits for the leader's snapshot covering it, then wipes a follower and
// times its catch-up from that snapshot.
func runSnapshotAtSize(ctx context.Context, o options) error {
	c, li, err := startCluster(ctx, o.server, snapshotFlags...)
	if err != nil {
		return err
	}
	defer c.stop()
	leader := c.nodes[li]
	start := time.Now()
	rows, err := loadTable(ctx, benchClient(leader.base), o.tableURLs)
	if err != nil {
		return err
	}
	load := time.Since(start)
	last, err := c.waitApplied(ctx, leader)
	if err != nil {
		return err
	}
	snap, err := waitSnapshot(ctx, leader, last-1024)
	if err != nil {
		return err
	}
	persist := raftMetric(leader, "lonelypsd_raft_snapshot_persist")
	fmt.Printf("| three-node cluster, %d rows | value |\n|---|---|\n", rows)
	fmt.Printf("| load through set_subscriptions at the leader | %.0f rows/s (%s) |\n", float64(rows)/load.Seconds(), load.Round(time.Millisecond))
	fmt.Printf("| leader's snapshot (index %d of %d) | %d MiB |\n", snap.index, last, snap.size>>20)
	fmt.Printf("| writing a snapshot (raft.snapshot.persist, mean) | %s |\n", persist)
	lr, _ := leader.rss()
	fmt.Printf("| leader RSS | %d MiB |\n", lr>>20)

	fi := (li + 1) % 3
	catchUp, ready, err := c.wipeAndRejoin(ctx, fi, last)
	if err != nil {
		return err
	}
	fr, _ := c.nodes[fi].rss()
	fmt.Printf("| wiped follower: start to ready | %s |\n", ready.Round(time.Millisecond))
	fmt.Printf("| wiped follower: start to the table applied (snapshot installed) | %s |\n", catchUp.Round(time.Millisecond))
	fmt.Printf("| follower RSS after catching up | %d MiB |\n", fr>>20)
	return nil
}

// waitApplied waits until every node has applied the leader's last
// index, and returns it.
func (c *benchCluster) waitApplied(ctx context.Context, leader *server) (uint64, error) {
	cl := cluster.NewClient("")
	st, err := cl.Status(ctx, strings.TrimPrefix(leader.base, "http://"))
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for _, s := range c.nodes {
		for {
			ns, err := cl.Status(ctx, strings.TrimPrefix(s.base, "http://"))
			if err == nil && ns.AppliedIndex >= st.LastIndex {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return 0, fmt.Errorf("node %s did not apply index %d in time (%v)", s.base, st.LastIndex, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return st.LastIndex, nil
}

type snapshotInfo struct {
	index uint64
	size  int64
}

// waitSnapshot waits for a complete snapshot of index at least min in the
// node's data folder.
func waitSnapshot(ctx context.Context, s *server, min uint64) (snapshotInfo, error) {
	dir := filepath.Join(snapshotDataDir(s), "raft", "snapshots")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if info, ok := newestSnapshot(dir); ok && info.index >= min {
			return info, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			info, _ := newestSnapshot(dir)
			return snapshotInfo{}, fmt.Errorf("no snapshot of index %d in %s (newest: %d)", min, dir, info.index)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// snapshotDataDir is the --data-dir the node was started with.
func snapshotDataDir(s *server) string {
	for i, a := range s.args {
		if a == "--data-dir" && i+1 < len(s.args) {
			return s.args[i+1]
		}
	}
	return ""
}

func newestSnapshot(dir string) (snapshotInfo, bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return snapshotInfo{}, false
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for i := len(names) - 1; i >= 0; i-- {
		var meta struct{ Index uint64 }
		b, err := os.ReadFile(filepath.Join(dir, names[i], "meta.json"))
		if err != nil || json.Unmarshal(b, &meta) != nil {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, names[i], "state.bin"))
		if err != nil {
			continue
		}
		return snapshotInfo{index: meta.Index, size: fi.Size()}, true
	}
	return snapshotInfo{}, false
}

// raftMetric reads the mean of a summary the node exports (milliseconds,
// as hashicorp/raft measures) from its /metrics page.
func raftMetric(s *server, name string) string {
	resp, err := http.Get(s.base + "/metrics")
	if err != nil {
		return "-"
	}
	defer resp.Body.Close()
	var sum, count float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var v float64
		line := sc.Text()
		if _, err := fmt.Sscanf(line, name+"_sum %g", &v); err == nil {
			sum = v
		}
		if _, err := fmt.Sscanf(line, name+"_count %g", &v); err == nil {
			count = v
		}
	}
	if count == 0 {
		return "-"
	}
	return (time.Duration(sum / count * float64(time.Millisecond))).Round(time.Millisecond).String()
}

// wipeAndRejoin stops node i, deletes its data and starts it again with
// the same command line; it returns the time from the start until the
// node has applied index, and until it was ready.
func (c *benchCluster) wipeAndRejoin(ctx context.Context, i int, index uint64) (catchUp, ready time.Duration, err error) {
	s := c.nodes[i]
	s.stop()
	if err := os.RemoveAll(snapshotDataDir(s)); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	next, err := launch(s.bin, "", strings.TrimPrefix(s.base, "http://"), s.args...)
	if err != nil {
		return 0, 0, err
	}
	c.nodes[i] = next
	if err := next.waitReady(ctx); err != nil {
		return 0, 0, err
	}
	ready = time.Since(start)
	cl := cluster.NewClient("")
	deadline := time.Now().Add(5 * time.Minute)
	for {
		st, err := cl.Status(ctx, strings.TrimPrefix(next.base, "http://"))
		if err == nil && st.AppliedIndex >= index {
			return time.Since(start), ready, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, 0, fmt.Errorf("wiped follower did not catch up to %d (%v)", index, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package cluster

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/fanout/health"
	"github.com/lonelypsd/lonelypsd/fsm"
)

const deadURL = "http://127.0.0.1:9/dead"

func listAll(t *testing.T, c *Client, addr string, f ListFilter) ([]Row, string) {
	t.Helper()
	var rows []Row
	incomplete, err := c.ListSubscriptions(context.Background(), addr, f, func(r Row) error {
		rows = append(rows, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows, incomplete
}

func TestHealthIsMergedAndPruningNeedsEveryMember(t *testing.T) {
	nodes := startInProcessWith(t, 3, func(c *Config) { c.Health = health.NewTracker(0, time.Minute) })
	ctx := context.Background()
	for _, p := range nodes {
		waitUntil(t, "every member's address", func() bool { return len(p.node.fsm.Nodes()) == 3 })
	}
	for _, topic := range []string{"a", "b"} {
		cmd := fsm.Command{Op: fsm.OpSubscribeExact, URL: deadURL, Topic: []byte(topic)}
		if _, err := nodes[0].node.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	nodes[0].node.cfg.Health.Failure(deadURL, errors.New("refused"))
	nodes[0].node.cfg.Health.Failure(deadURL, errors.New("refused"))
	nodes[1].node.cfg.Health.Failure(deadURL, errors.New("timeout"))
	c := NewClient("test-secret")
	rows, incomplete := listAll(t, c, nodes[2].http, ListFilter{Unhealthy: true})
	if len(rows) != 2 || incomplete != "" {
		t.Fatalf("listed %+v (incomplete %q), want both rows of the dead URL", rows, incomplete)
	}
	if h := rows[0].Health; h.ConsecutiveFailures != 3 || h.LastError != "timeout" {
		t.Fatalf("merged health %+v, want 3 failures, the latest error", h)
	}

	// Every member's streak is older than the cutoff now.
	time.Sleep(20 * time.Millisecond)
	for _, p := range nodes {
		p.node.cfg.PruneAfter = 10 * time.Millisecond
	}
	// A member that does not answer stops pruning.
	_ = nodes[1].srv.Close()
	if pruned := nodes[0].node.pruneOnce(ctx); len(pruned) != 0 {
		t.Fatalf("pruned %v with a member's view unknown", pruned)
	}
	if _, incomplete := listAll(t, c, nodes[2].http, ListFilter{}); incomplete == "" {
		t.Fatal("a listing missing a member's health does not say so")
	}
	// A success seen by another member since the streaks began stops it.
	nodes[2].node.cfg.Health.Success(deadURL)
	nodes[1].srv = restartServer(t, nodes[1])
	if pruned := nodes[0].node.pruneOnce(ctx); len(pruned) != 0 {
		t.Fatalf("pruned %v although a member reached it", pruned)
	}
	// Failing everywhere for longer than the cutoff: pruned.
	nodes[2].node.cfg.Health.Forget(deadURL)
	time.Sleep(20 * time.Millisecond)
	var prunedRows int
	nodes[0].node.cfg.Pruned = func(_ string, rows int) { prunedRows += rows }
	if pruned := nodes[0].node.pruneOnce(ctx); len(pruned) != 1 || prunedRows != 2 {
		t.Fatalf("pruned %v (%d rows), want the dead URL's 2 rows", pruned, prunedRows)
	}
	for _, p := range nodes {
		if err := p.node.fsm.WaitApplied(ctx, nodes[0].node.fsm.AppliedIndex()); err != nil {
			t.Fatal(err)
		}
		if n, ok := p.node.fsm.URLRows(deadURL); ok {
			t.Fatalf("%s still holds %d rows of the pruned URL", p.node.ID(), n)
		}
	}
}

// restartServer serves p's handler again on its address.
func restartServer(t *testing.T, p *inProcess) *http.Server {
	t.Helper()
	srv := &http.Server{Addr: p.http, Handler: p.node.Handler(), ReadHeaderTimeout: 5 * time.Second}
	ready := make(chan error, 1)
	go func() { ready <- srv.ListenAndServe() }()
	waitUntil(t, "the restarted server", func() bool {
		_, err := NewClient("").Status(context.Background(), p.http)
		return err == nil
	})
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func TestRestoreThroughAFollowerAndRefusals(t *testing.T) {
	nodes := startInProcess(t, 3)
	ctx := context.Background()
	for _, topic := range []string{"a", "b", "c"} {
		if _, err := nodes[0].node.Apply(ctx, subscribeCmd(topic)); err != nil {
			t.Fatal(err)
		}
	}
	c := NewClient("test-secret")
	var backup bytes.Buffer
	info, err := c.Backup(ctx, nodes[1].http, &backup)
	if err != nil || info.Exact != 3 {
		t.Fatalf("backup: %+v %v", info, err)
	}
	if _, err := nodes[0].node.Apply(ctx, subscribeCmd("after the backup")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The server checks the file whole too, whoever uploads it.
	corrupt := bytes.Clone(backup.Bytes())
	corrupt[len(corrupt)-40] ^= 1
	f, err := os.Open(write("corrupt", corrupt))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := nodes[2].node.Restore(ctx, f); !errors.Is(err, fsm.ErrBadBackup) {
		t.Fatalf("Restore of a corrupt file: %v", err)
	}
	if _, err := c.Restore(ctx, nodes[2].http, write("good", backup.Bytes())); err != nil {
		t.Fatal(err)
	}
	for _, p := range nodes {
		waitUntil(t, "the restored table", func() bool {
			_, ok := p.node.fsm.Lookup(fsm.Exact, "http://127.0.0.1:9/r", "after the backup")
			n, _ := p.node.fsm.Counts()
			return !ok && n == 3
		})
	}
	// An unsigned upload is refused before it is read.
	resp, err := http.Post("http://"+nodes[0].http+pathAdminRestore, "application/octet-stream", bytes.NewReader(backup.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unsigned restore answered %d", resp.StatusCode)
	}
}

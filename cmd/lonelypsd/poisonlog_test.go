package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// appendToRaftLog writes commands at the end of a stopped node's Raft log,
// as a peer's replication would: the node applies them when it next
// commits (a single node does so at its first election).
func appendToRaftLog(t *testing.T, dataDir string, data ...[]byte) {
	t.Helper()
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dataDir, "raft", "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	last, err := store.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	var prev raft.Log
	if err := store.GetLog(last, &prev); err != nil {
		t.Fatal(err)
	}
	for i, d := range data {
		l := &raft.Log{Index: last + 1 + uint64(i), Term: prev.Term, Type: raft.LogCommand, Data: d}
		if err := store.StoreLog(l); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPoisonedLogEntryDoesNotBrickTheNode: entries no valid node would
// propose (a 40,000-byte request id, past bbolt's key limit; an unknown
// op; bytes that are not a command) sit in the Raft log of a real node.
// It starts, refuses each as an error result, applies the valid entry
// between them, serves, and starts again cleanly; before, the first of
// them panicked the node on every start.
func TestPoisonedLogEntryDoesNotBrickTheNode(t *testing.T) {
	dir := t.TempDir()
	node, ctx, c := startNodeClient(t, dir)
	s := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())
	if err := c.SubscribeExact(ctx, s.Receive, []byte("before"), s.Recover); err != nil {
		t.Fatal(err)
	}
	node.Stop()

	encode := func(cmd fsm.Command) []byte {
		b, err := cmd.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	huge := encode(fsm.Command{Op: fsm.OpSubscribeExact, ID: strings.Repeat("x", 40000), URL: s.Receive, Topic: []byte("poison")})
	valid := encode(fsm.Command{Op: fsm.OpSubscribeExact, ID: "valid-after-poison", URL: s.Receive, Topic: []byte("after")})
	unknownOp := []byte(`{"op":200,"url":"http://127.0.0.1:1/r"}`)
	appendToRaftLog(t, dir, huge, valid, unknownOp, []byte("\x00not json"))

	for round := range 2 {
		node.Start()
		for _, topic := range []string{"before", "after"} {
			if n, err := c.Notify(ctx, []byte(topic), []byte("m")); err != nil || n != 1 {
				t.Fatalf("start %d: notify %s: %d, %v; want 1", round+1, topic, n, err)
			}
		}
		if n, err := c.Notify(ctx, []byte("poison"), []byte("m")); err != nil || n != 0 {
			t.Fatalf("start %d: the refused entry's subscription exists: %d, %v", round+1, n, err)
		}
		if err := c.SubscribeExact(ctx, s.Receive, []byte("new"+string(rune('a'+round))), s.Recover); err != nil {
			t.Fatalf("start %d: a write after the poisoned entries: %v", round+1, err)
		}
		node.Stop()
		if node.Err() != nil {
			t.Fatalf("start %d: lonelypsd exited with %v\n%s", round+1, node.Err(), node.Logs())
		}
	}
	if logs := node.Logs(); strings.Contains(logs, "panic") || strings.Count(logs, "refused raft entry") < 3 {
		t.Fatalf("want the entries refused without a panic, logs:\n%s", logs)
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
	"github.com/lonelypsd/lonelypsd/fsm"
)

// inMountNamespace is set in the environment of a test binary re-executed
// under `unshare -Urm`, where it may mount a tmpfs without being root.
const inMountNamespace = "LONELYPSD_TEST_IN_MOUNT_NS"

// smallVolume mounts a tmpfs of size bytes at a fresh folder and returns
// it. Root mounts it directly; anyone else re-executes the test in a user
// and mount namespace (the node processes the test starts inherit it),
// which reports done=true: the caller returns, as the child ran the test.
func smallVolume(t *testing.T, size int64) (dir string, done bool) {
	t.Helper()
	if os.Geteuid() != 0 && os.Getenv(inMountNamespace) == "" {
		if err := exec.Command("unshare", "-Urm", "true").Run(); err != nil {
			// Nothing else gives a test a volume it can fill without
			// filling the machine's own disk.
			t.Skipf("mounting a small tmpfs needs root or user namespaces, and unshare -Urm failed: %v", err)
		}
		cmd := exec.Command("unshare", "-Urm", "--propagation", "private", os.Args[0],
			"-test.run", "^"+t.Name()+"$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), inMountNamespace+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in a mount namespace:\n%s", out)
		if err != nil {
			t.Fatalf("the test failed in its mount namespace: %v", err)
		}
		return "", true
	}
	dir = t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Fatalf("mount a %d-byte tmpfs: %v", size, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir, false
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fillTo grows the filler file until the volume has at most leave bytes
// free (0: full).
func fillTo(t *testing.T, dir string, leave int64) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "filler"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		free := freeBytes(t, dir)
		if free <= leave {
			return
		}
		n := min(int64(len(chunk)), free-leave)
		if _, err := f.Write(chunk[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}

// TestFullDisk: with the data folder on a small volume, a notify that
// would eat into the free-space reserve and a subscription change once
// the volume is almost full answer 503 with a reason, never 500; the node
// stays up and takes writes again as soon as space returns, without a
// restart.
func TestFullDisk(t *testing.T) {
	vol, done := smallVolume(t, 96<<20)
	if done {
		return
	}
	const reserve = 16 << 20
	data := filepath.Join(vol, "data")
	node, ctx, c := startNodeClient(t, data, "--disk-reserve", fmt.Sprint(reserve), "--spool-threshold", "65536")
	sub := client.NewSubscriber()
	s := lonelypsdtest.StartSubscriber(t, sub)
	if err := c.SubscribeExact(ctx, s.Receive, []byte("t"), s.Recover); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 4<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	notifyBig := func() (uint32, error) {
		return c.NotifyStream(ctx, []byte("t"), bytes.NewReader(big), uint64(len(big)), sha512.Sum512(big))
	}
	if n, err := notifyBig(); err != nil || n != 1 {
		t.Fatalf("notify with room: %d, %v", n, err)
	}

	// Between the reserve and half of it: messages that would spool into
	// the reserve are refused, subscription changes still work.
	fillTo(t, vol, reserve*3/4)
	_, err := notifyBig()
	if statusOf(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "disk") {
		t.Fatalf("notify into the reserve: %v; want 503 naming the disk", err)
	}
	if err := c.SubscribeExact(ctx, s.Receive, []byte("u"), s.Recover); err != nil {
		t.Fatalf("subscribe with half the reserve left: %v", err)
	}

	// Under half the reserve, and then full: subscription changes are 503
	// (once the node has read the free space again: it does so at most
	// once a second).
	for _, leave := range []int64{reserve / 4, 0} {
		fillTo(t, vol, leave)
		i := 0
		subscribe := func() error {
			i++
			return c.SubscribeExact(ctx, s.Receive, []byte(fmt.Sprintf("full-%d-%d", leave, i)), s.Recover)
		}
		lonelypsdtest.WaitFor(t, "subscription changes to be refused", 5*time.Second, func() bool {
			return statusOf(subscribe()) == http.StatusServiceUnavailable
		})
		for range 3 {
			if err := subscribe(); statusOf(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "almost full") {
				t.Fatalf("subscribe with %d bytes free: %v; want 503 saying the volume is almost full", freeBytes(t, vol), err)
			}
		}
		if n, err := c.Notify(ctx, []byte("t"), []byte("small")); err != nil || n != 1 {
			t.Fatalf("small notify on a full volume: %d, %v; want delivered from memory", n, err)
		}
	}
	if code, _ := lonelypsdtest.Get(t, node.HTTP+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz on a full volume: %d", code)
	}

	if err := os.Remove(filepath.Join(vol, "filler")); err != nil {
		t.Fatal(err)
	}
	lonelypsdtest.WaitFor(t, "subscription changes to succeed again", 30*time.Second, func() bool {
		return c.SubscribeExact(ctx, s.Receive, []byte("after"), s.Recover) == nil
	})
	if n, err := notifyBig(); err != nil || n != 1 {
		t.Fatalf("large notify after space returned: %d, %v", n, err)
	}
	if strings.Contains(node.Logs(), "panic") {
		t.Fatalf("the node panicked:\n%s", node.Logs())
	}
}

// TestFullDiskWithoutReserve: with no reserve the Raft log and the table
// themselves hit ENOSPC. Writes answer 503 (never 500) within the write
// timeout, nothing crashes, and writes resume once space returns, without
// a restart; every acknowledged subscription is still there.
func TestFullDiskWithoutReserve(t *testing.T) {
	vol, done := smallVolume(t, 96<<20)
	if done {
		return
	}
	data := filepath.Join(vol, "data")
	node, ctx, c := startNodeClient(t, data, "--disk-reserve", "0")
	s := lonelypsdtest.StartSubscriber(t, client.NewSubscriber())
	acked := map[string]bool{}
	fillTo(t, vol, 0)
	for i := range 4 {
		topic := fmt.Sprintf("t%d", i)
		// The node cannot even record a new term, so it has no leader
		// and each write waits out --write-timeout (5 s) before its 503.
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.SubscribeExact(wctx, s.Receive, []byte(topic), s.Recover)
		cancel()
		switch statusOf(err) {
		case http.StatusOK:
			acked[topic] = true
		case http.StatusServiceUnavailable:
		default:
			t.Fatalf("subscribe on a full volume: %v; want 200 or 503", err)
		}
	}
	if err := os.Remove(filepath.Join(vol, "filler")); err != nil {
		t.Fatal(err)
	}
	lonelypsdtest.WaitFor(t, "subscription changes to succeed again", 30*time.Second, func() bool {
		err := c.SubscribeExact(ctx, s.Receive, []byte("after"), s.Recover)
		return err == nil
	})
	acked["after"] = true
	for topic := range acked {
		if n, err := c.Notify(ctx, []byte(topic), []byte("m")); err != nil || n != 1 {
			t.Fatalf("acknowledged subscription %s: notify %d, %v", topic, n, err)
		}
	}
	node.Restart()
	for topic := range acked {
		if n, err := c.Notify(ctx, []byte(topic), []byte("m")); err != nil || n != 1 {
			t.Fatalf("after restart, acknowledged subscription %s: notify %d, %v", topic, n, err)
		}
	}
	if strings.Contains(node.Logs(), "panic") {
		t.Fatalf("the node panicked:\n%s", node.Logs())
	}
}

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
// between them, serves, and starts again cleanly, none of them a panic at
// start-up.
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

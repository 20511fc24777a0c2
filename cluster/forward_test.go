package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lonelypsd/lonelypsd/fsm"
)

// TestClusterErrorsAreUnavailable: the API classifies refusals worth a
// retry through Unavailable(), also when they are wrapped.
func TestClusterErrorsAreUnavailable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"not leader", ErrNotLeader, true},
		{"no leader", ErrNoLeader, true},
		{"timeout", ErrTimeout, true},
		{"shutdown", ErrShutdown, true},
		{"disk full", ErrDiskFull, true},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", ErrNoLeader)), true},
		{"raft's no space", mapRaftErr(fmt.Errorf("store logs: %w", syscall.ENOSPC)), true},
		{"invalid command", ErrInvalidCommand, false},
		{"forwarding failed", errForward, true},
		{"anything else", errors.New("boom"), false},
	}
	for _, tc := range tests {
		var u interface{ Unavailable() bool }
		if got := errors.As(tc.err, &u) && u.Unavailable(); got != tc.want {
			t.Errorf("%s: unavailable %v, want %v", tc.name, got, tc.want)
		}
	}
	if !errors.Is(mapRaftErr(fmt.Errorf("store logs: %w", syscall.ENOSPC)), ErrDiskFull) {
		t.Error("a full log store is not ErrDiskFull")
	}
}

// TestApplyRefusesOversizedFields: a command the replicas could not store
// is refused before it is proposed, by Apply and by /cluster/apply.
func TestApplyRefusesOversizedFields(t *testing.T) {
	const secret = "s3cret"
	s := startSingle(t, secret, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	last := s.node.raft.LastIndex()
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"request id of 40,000 bytes", strings.Repeat("x", 40000), false},
		{"request id of 129 bytes", strings.Repeat("x", 129), false},
		{"request id of 128 bytes", strings.Repeat("y", 128), true},
	}
	for _, tc := range tests {
		cmd := subscribeCmd(tc.name)
		cmd.ID = tc.id
		_, err := s.node.Apply(ctx, cmd)
		if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrInvalidCommand)) {
			t.Errorf("Apply, %s: %v", tc.name, err)
		}
		body := mustJSON(t, cmd)
		code, answer := do(t, s.peerRequest(t, "/cluster/apply", body, signFor(secret, "solo", "/cluster/apply", body, time.Now())))
		if want := map[bool]int{true: http.StatusOK, false: http.StatusBadRequest}[tc.ok]; code != want {
			t.Errorf("/cluster/apply, %s: %d %s, want %d", tc.name, code, answer, want)
		}
	}
	if e, _ := s.node.FSM().Counts(); e != 1 {
		t.Fatalf("%d rows, want only the valid one", e)
	}
	// The valid command twice (Apply, then the endpoint, the same id).
	if got := s.node.raft.LastIndex(); got != last+2 {
		t.Fatalf("log grew from %d to %d: a refused command was proposed", last, got)
	}
}

// TestDiskReserveRefusesWrites: while the data volume has less than half
// the reserve free, the leader proposes no new write and says why; a
// follower forwarding to it gets the same answer.
func TestDiskReserveRefusesWrites(t *testing.T) {
	s := startSingle(t, "s3cret", func(c *Config) { c.DiskReserve = math.MaxInt64 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	last := s.node.raft.LastIndex()
	start := time.Now()
	_, err := s.node.Apply(ctx, subscribeCmd("t"))
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "almost full") {
		t.Fatalf("write on a full volume: %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("the refusal took %s", time.Since(start))
	}
	body := mustJSON(t, fsm.Command{Op: fsm.OpSubscribeExact, ID: "fwd", URL: "http://127.0.0.1:9/r", Topic: []byte("t")})
	code, answer := do(t, s.peerRequest(t, "/cluster/apply", body, signFor("s3cret", "solo", "/cluster/apply", body, time.Now())))
	if code != http.StatusInsufficientStorage {
		t.Fatalf("forwarded write: %d %s", code, answer)
	}
	if e, _ := s.node.FSM().Counts(); e != 0 || s.node.raft.LastIndex() != last {
		t.Fatal("a write was proposed on a full volume")
	}
	// With room to spare writes go through.
	roomy := startSingle(t, "s3cret", func(c *Config) { c.DiskReserve = 1 << 10 })
	if _, err := roomy.node.Apply(ctx, subscribeCmd("t")); err != nil {
		t.Fatal(err)
	}
}

// TestFollowerGetsTheLeadersDiskRefusal: a write forwarded to a leader
// whose volume is almost full fails at once with ErrDiskFull, rather than
// being retried until it times out.
func TestFollowerGetsTheLeadersDiskRefusal(t *testing.T) {
	nodes := startInProcessWith(t, 3, func(c *Config) { c.DiskReserve = math.MaxInt64 })
	var follower *inProcess
	for _, p := range nodes {
		waitUntil(t, "every member's address", func() bool { return len(p.node.FSM().Nodes()) == 3 })
		if !p.node.IsLeader() {
			follower = p
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := follower.node.Apply(ctx, subscribeCmd("t"))
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("forwarded write on a full volume: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the refusal took %s", d)
	}
}

func TestInvalidCommandIsABadRequest(t *testing.T) {
	var b interface{ BadRequest() bool }
	err := fmt.Errorf("apply: %w", ErrInvalidCommand)
	if !errors.As(err, &b) || !b.BadRequest() {
		t.Fatal("ErrInvalidCommand is not a bad request")
	}
	var u interface{ Unavailable() bool }
	if errors.As(err, &u) {
		t.Fatal("ErrInvalidCommand is unavailable")
	}
}
